package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// The sharding section's pools (the database names pgbench gives sluice) and targets.
const (
	// poolSharded spreads the items table over three databases by pg_bigint_hash of its id.
	poolSharded = "sharded"
	// poolUnsharded holds the whole items table in one database.
	poolUnsharded = "unsharded"

	shardCount = 3
	shardRows  = 100_000
)

// shardDatabase is the Postgres database of shard i of poolSharded.
func shardDatabase(i int) string { return fmt.Sprintf("shard_%d", i) }

// shardingConfig is the pgcat.toml of the sharding section's sluice: poolSharded with
// shardCount shards, each a database on the one Postgres at pgHost:pgPort, the sharding key
// items.id hashed with pg_bigint_hash, reads without a key sent to every shard and merged; and
// poolUnsharded, a plain pool of the database that holds every row. Both are transaction-mode
// pools for the bench user: o.poolSize servers for poolUnsharded, and shardPoolSize per shard
// for poolSharded.
func shardingConfig(port int, pgHost string, pgPort int, o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[general]
host = "127.0.0.1"
port = %d
max_client_conn = %d
auth_type = "md5"

[pools.%s]
pool_mode = "transaction"
sharding_function = "pg_bigint_hash"
automatic_sharding_key = "items.id"
cross_shard_reads = "all"

[pools.%s.users.0]
username = %q
password = %q
pool_size = %d
`, port, o.clients+1000, poolSharded, poolSharded, benchUser, benchPassword, o.shardPoolSize())
	for i := 0; i < shardCount; i++ {
		fmt.Fprintf(&b, "\n[pools.%s.shards.%d]\ndatabase = %q\nservers = [[%q, %d, \"primary\"]]\n",
			poolSharded, i, shardDatabase(i), pgHost, pgPort)
	}
	fmt.Fprintf(&b, `
[pools.%s]
pool_mode = "transaction"

[pools.%s.users.0]
username = %q
password = %q
pool_size = %d

[pools.%s.shards.0]
database = %q
servers = [[%q, %d, "primary"]]
`, poolUnsharded, poolUnsharded, benchUser, benchPassword, o.poolSize, poolUnsharded, poolUnsharded, pgHost, pgPort)
	return b.String()
}

// itemsTable creates and fills items in a database: rows 1..shardRows, or, when shard >= 0,
// only those that Postgres' own hash partitioning with shardCount partitions puts in partition
// shard, which is the shard pg_bigint_hash names (docs: sharding).
func itemsTable(shard int) string {
	where := ""
	if shard >= 0 {
		where = fmt.Sprintf("WHERE satisfies_hash_partition('items_hash'::regclass, %d, %d, g::bigint)", shardCount, shard)
	}
	return fmt.Sprintf(`CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL, v text NOT NULL);
CREATE TABLE items_hash (id bigint) PARTITION BY HASH (id);
INSERT INTO items SELECT g, (g * 7919) %% 1000, md5(g::text) FROM generate_series(1, %d) g %s;
DROP TABLE items_hash;
ALTER TABLE items OWNER TO %s;`, shardRows, where, benchUser)
}

// pointScript is the single-shard point read.
var pointScript = `\set id random(1, ` + strconv.Itoa(shardRows) + `)
SELECT id, n, v FROM items WHERE id = :id;
`

// fanoutQuery is a query without a sharding key: through poolSharded it runs on every shard
// and the results are merged.
type fanoutQuery struct{ name, sql string }

var fanoutQueries = []fanoutQuery{
	{"count", "SELECT count(*) FROM items"},
	{"order-by-limit", "SELECT id, n FROM items ORDER BY id LIMIT 10"},
	{"top-n", "SELECT id, n FROM items ORDER BY n DESC, id LIMIT 10"},
}

// latencyResult is one fan-out latency run: the query through one pool.
type latencyResult struct {
	query, target string
	n             int     // transactions
	avg, p50, p99 float64 // milliseconds
	failed        bool
	reason        string
}

// shardingSection is what the sharding section measured.
type shardingSection struct {
	opts          options
	started       time.Time
	elapsed       time.Duration
	point         []pgbenchResult
	fanout        []latencyResult
	rowsPerShard  []int64
	machine       machine
	command       string
	load, loadEnd string
}

// runShardingSection runs the sharding section, prints its figures and writes them into o.out.
func runShardingSection(ctx context.Context, o options) error {
	if _, err := sluiceBinary(o); err != nil {
		return err
	}
	load := loadAverage()
	sec, err := benchSharding(ctx, o)
	if err != nil {
		return err
	}
	sec.load, sec.loadEnd, sec.machine, sec.command = load, loadAverage(), describeMachine(o.out), commandLine()
	fmt.Println()
	fmt.Print(sec.text())
	if o.out != "" {
		if err := writeSection(o.out, sectionSharding, sec.markdown()); err != nil {
			return err
		}
		fmt.Printf("\nwrote the sharding section of %s\n", o.out)
	}
	return nil
}

// benchSharding runs the sharding section: one Postgres with the three shard databases and the
// unsharded one, one sluice with a pool for each, point reads through both pools in each mode,
// then the fan-out queries' latency through both.
func benchSharding(ctx context.Context, o options) (*shardingSection, error) {
	sec := &shardingSection{opts: o, started: time.Now()}
	pg, err := startBenchPostgres(ctx, o, "bench-sharding", 0)
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	fmt.Printf("postgres (bench-sharding): %d rows in %s, split over %d shard databases\n", shardRows, poolUnsharded, shardCount)
	for i := -1; i < shardCount; i++ {
		db := poolUnsharded
		if i >= 0 {
			db = shardDatabase(i)
		}
		if err := pg.CreateDatabase(ctx, db, benchUser); err != nil {
			return nil, err
		}
		if err := pg.Exec(ctx, db, itemsTable(i)); err != nil {
			return nil, err
		}
		if err := pg.Exec(ctx, db, "VACUUM ANALYZE items"); err != nil {
			return nil, err
		}
		if i >= 0 {
			n, err := countRows(ctx, pg.DSN(db, pgtest.SuperUser, pgtest.SuperPassword))
			if err != nil {
				return nil, err
			}
			sec.rowsPerShard = append(sec.rowsPerShard, n)
		}
	}

	sl, err := startSluiceWith(ctx, o, "sluice", func(port int) string { return shardingConfig(port, pg.Host, pg.Port, o) })
	if err != nil {
		return nil, err
	}
	defer sl.stop()
	unsharded, sharded := sl.target, sl.target
	unsharded.name, unsharded.db = poolUnsharded, poolUnsharded
	sharded.name, sharded.db = poolSharded, poolSharded
	if err := checkSharding(ctx, sharded); err != nil {
		return nil, err
	}
	targets := []target{unsharded, sharded}

	dir, err := os.MkdirTemp("", "sluice-bench-sharding-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	point := filepath.Join(dir, "point.sql")
	if err := os.WriteFile(point, []byte(pointScript), 0o644); err != nil {
		return nil, err
	}

	meter := cpuMeter{pooler: sl.pid, postgres: postmasterPID(pg.DataDir)}
	for _, mode := range o.shardModes {
		runs := map[string][]pgbenchResult{}
		for i := 0; i < o.runs; i++ {
			for _, t := range targets {
				fmt.Printf("pgbench point reads -M %s -c %d -j %d -T %d through %s (run %d/%d)\n",
					mode, o.clients, o.threads, o.seconds, t.name, i+1, o.runs)
				profile := ""
				if o.profileDir != "" {
					profile = filepath.Join(o.profileDir, fmt.Sprintf("sharding-%s-%s-%d.pprof", t.name, mode, i+1))
				}
				r := measuredRun(ctx, t, mode, workload{script: []string{"-f", point}, clients: o.clients,
					threads: o.threads, seconds: o.seconds}, meter, profile)
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				r.workload = "point"
				fmt.Printf("  %s\n", r)
				runs[t.name] = append(runs[t.name], r)
			}
		}
		for _, t := range targets {
			sec.point = append(sec.point, median(runs[t.name]))
		}
	}

	for _, q := range fanoutQueries {
		script := filepath.Join(dir, q.name+".sql")
		if err := os.WriteFile(script, []byte(q.sql+";\n"), 0o644); err != nil {
			return nil, err
		}
		for _, t := range targets {
			fmt.Printf("fan-out %s -c %d -T %d through %s\n", q.name, o.fanoutClients, o.fanoutSeconds, t.name)
			r := runLatency(ctx, t, q, script, dir, o)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if r.failed {
				fmt.Printf("  FAILED: %s\n", r.reason)
			} else {
				fmt.Printf("  avg %.3f ms, p50 %.3f, p99 %.3f (%d queries)\n", r.avg, r.p50, r.p99, r.n)
			}
			sec.fanout = append(sec.fanout, r)
		}
	}
	sec.elapsed = time.Since(sec.started)
	return sec, nil
}

// countRows is the number of rows of items in the database at dsn.
func countRows(ctx context.Context, dsn string) (int64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n)
	return n, err
}

// checkSharding makes sure the rows are where sluice looks for them: a point read through the
// sharded pool finds each of the first 300 keys (a key routed to the wrong shard finds nothing,
// which pgbench would not notice), and the merged count is every row.
func checkSharding(ctx context.Context, t target) error {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable default_query_exec_mode=simple_protocol",
		t.host, t.port, benchUser, benchPassword, t.database()))
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	defer conn.Close(ctx)
	for id := 1; id <= 300; id++ {
		var n int64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM items WHERE id = %d", id)).Scan(&n); err != nil {
			return fmt.Errorf("%s: point read of id %d: %w", t.name, id, err)
		}
		if n != 1 {
			return fmt.Errorf("%s: id %d: sluice's shard for it holds %d rows, want 1 (pg_bigint_hash and hash partitioning disagree?)", t.name, id, n)
		}
	}
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
		return fmt.Errorf("%s: count over all shards: %w", t.name, err)
	}
	if n != shardRows {
		return fmt.Errorf("%s: count(*) over all shards is %d, want %d", t.name, n, shardRows)
	}
	return nil
}

// runLatency runs q through t with pgbench -M simple for o.fanoutSeconds, logging every
// transaction, and reads the latencies from the log.
func runLatency(ctx context.Context, t target, q fanoutQuery, script, dir string, o options) latencyResult {
	r := latencyResult{query: q.name, target: t.name}
	prefix := filepath.Join(dir, "log-"+q.name+"-"+t.name)
	res := runWorkload(ctx, t, "simple", workload{script: []string{"-f", script}, clients: o.fanoutClients,
		threads: 1, seconds: o.fanoutSeconds, extra: []string{"-l", "--log-prefix=" + prefix}})
	if res.failed {
		r.failed, r.reason = true, res.reason
		return r
	}
	logs, _ := filepath.Glob(prefix + ".*")
	var lat []float64
	for _, path := range logs {
		l, err := readLatencies(path)
		if err != nil {
			r.failed, r.reason = true, err.Error()
			return r
		}
		lat = append(lat, l...)
		os.Remove(path)
	}
	if len(lat) == 0 {
		r.failed, r.reason = true, "pgbench logged no transactions"
		return r
	}
	r.n = len(lat)
	r.avg, r.p50, r.p99 = latencyStats(lat)
	return r
}

// readLatencies reads the latency column (the third, in microseconds) of a pgbench -l log and
// returns the latencies in milliseconds.
func readLatencies(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		us, err := strconv.ParseFloat(fields[2], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
		}
		out = append(out, us/1000)
	}
	return out, sc.Err()
}

// latencyStats returns the mean, median and 99th percentile (nearest rank) of lat.
func latencyStats(lat []float64) (avg, p50, p99 float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), lat...)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return sum / float64(len(s)), rank(0.50), rank(0.99)
}

// shardPoolSize is the sharded pool's servers per shard: by default the unsharded pool's servers
// shared out over the shards, so that both pools keep as many Postgres backends on this one
// machine. Deployed, each shard is a machine of its own with its own pool; here the three are
// databases of one cluster, and three full pools would triple the backends the two CPUs switch
// between, which costs Postgres more per query than the sharding costs sluice.
func (o options) shardPoolSize() int {
	if o.shardPool > 0 {
		return o.shardPool
	}
	return (o.poolSize + shardCount - 1) / shardCount
}
