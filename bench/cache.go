package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// Targets of the cache section (besides direct and sluice).
const (
	// targetSluiceCache is sluice with the cache plugin (plugins/cache) on a redis-server the
	// bench starts.
	targetSluiceCache = "sluice-cache"
	// targetPgpool is pgpool-II with its query cache in shared memory.
	targetPgpool = "pgpool"
)

// cacheTargets are the targets the cache section knows, in the order they run.
var cacheTargets = []string{targetDirect, targetSluice, targetSluiceCache, targetPgpool}

// cacheRows is how many rows the read-heavy workload reads from: pgbench_accounts at scale 1.
const (
	cacheScale = 1
	cacheRows  = 100_000 * cacheScale
)

// cacheStatsInterval is the cache plugin's stats_interval in the bench: how often it logs the
// counters the hit ratio is read from.
const cacheStatsInterval = 500 * time.Millisecond

// A cacheWorkload is one mix of the read-heavy workload: point reads by key on the 100,000
// rows of pgbench_accounts, and a share of updates.
type cacheWorkload struct {
	name  string
	write string // the update script
	about string // one line for the report
}

// The update scripts. Both caches invalidate by table: a write to pgbench_accounts makes every
// cached read of it a miss, a write to pgbench_tellers none of them.
var cacheWorkloads = []cacheWorkload{
	{
		name: "same-table",
		write: `\set aid random(1, ` + strconv.Itoa(cacheRows) + `)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
`,
		about: "the updates change the rows the reads read (UPDATE pgbench_accounts by aid)",
	},
	{
		name: "other-table",
		write: `\set tid random(1, ` + strconv.Itoa(10*cacheScale) + `)
\set delta random(-5000, 5000)
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
`,
		about: "the updates change another table (UPDATE pgbench_tellers by tid)",
	},
}

func findCacheWorkload(name string) (cacheWorkload, bool) {
	for _, w := range cacheWorkloads {
		if w.name == name {
			return w, true
		}
	}
	return cacheWorkload{}, false
}

// readScript is the point read, 95 % of transactions.
var readScript = `\set aid random(1, ` + strconv.Itoa(cacheRows) + `)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
`

// warmScript reads every row once, client c reading rows c*per+1 ... (c+1)*per, with the same
// SELECT text as readScript (the caches key on the text), so the measured runs start with a
// full cache. It needs -D n=0 and -t per.
const warmScript = `\set n :n + 1
\set aid :client_id * :per + :n
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
`

// cacheScripts writes the scripts into dir and returns their paths by name: "read", "warm" and
// each workload's name.
func cacheScripts(dir string) (map[string]string, error) {
	files := map[string]string{"read": readScript, "warm": warmScript}
	for _, w := range cacheWorkloads {
		files[w.name] = w.write
	}
	paths := map[string]string{}
	for name, text := range files {
		p := filepath.Join(dir, name+".sql")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return nil, err
		}
		paths[name] = p
	}
	return paths, nil
}

// cacheMix is the pgbench script options of workload w: the read at 100-writePct, the update at
// writePct.
func cacheMix(paths map[string]string, w cacheWorkload, writePct int) []string {
	return []string{"-f", fmt.Sprintf("%s@%d", paths["read"], 100-writePct),
		"-f", fmt.Sprintf("%s@%d", paths[w.name], writePct)}
}

// hitCounts are a cache's counters at one moment: lookups that hit and that missed.
type hitCounts struct {
	hits, misses int64
	bypassed     int64 // sluice's cache: reads it did not look up (why: its bypass counts)
	redisErrors  int64 // sluice's cache: failed Redis calls (a failed invalidation empties the cache)
}

func (h hitCounts) sub(o hitCounts) hitCounts {
	return hitCounts{hits: h.hits - o.hits, misses: h.misses - o.misses, bypassed: h.bypassed - o.bypassed,
		redisErrors: h.redisErrors - o.redisErrors}
}

// ratio is hits over all reads the cache saw (hits, misses and bypassed ones).
func (h hitCounts) ratio() float64 {
	n := h.hits + h.misses + h.bypassed
	if n == 0 {
		return 0
	}
	return float64(h.hits) / float64(n)
}

var (
	cacheStatsRE = regexp.MustCompile(`msg="cache stats" .*\bhits=(\d+) misses=(\d+) .*\bbypassed=(\d+)`)
	redisErrRE   = regexp.MustCompile(`\bredis_errors=(\d+)`)
)

// lastCacheStats returns the counters of the last "cache stats" line in sluice's log.
func lastCacheStats(logPath string) (hitCounts, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return hitCounts{}, err
	}
	defer f.Close()
	var h hitCounts
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := cacheStatsRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		h.hits, _ = strconv.ParseInt(m[1], 10, 64)
		h.misses, _ = strconv.ParseInt(m[2], 10, 64)
		h.bypassed, _ = strconv.ParseInt(m[3], 10, 64)
		if m := redisErrRE.FindStringSubmatch(sc.Text()); m != nil {
			h.redisErrors, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
	// No line yet is all zeros: the plugin logs only once its counters move.
	return h, sc.Err()
}

// waitCacheReady runs one eligible read through the sluice at t until the cache plugin has
// looked it up (its catalog is loaded and Redis reached), so that the warm-up fills every row.
func waitCacheReady(ctx context.Context, t target, logPath string) error {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable default_query_exec_mode=simple_protocol",
		t.host, t.port, benchUser, benchPassword, t.database()))
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var v int
		if err := conn.QueryRow(ctx, "SELECT abalance FROM pgbench_accounts WHERE aid = 0 OR aid = 1").Scan(&v); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		time.Sleep(cacheStatsInterval + 100*time.Millisecond)
		h, err := lastCacheStats(logPath)
		if err != nil {
			return err
		}
		if h.hits+h.misses > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the cache looked nothing up in 30s (catalog not loaded, or Redis not reached?)", t.name)
		}
	}
}

// cacheSection is what the cache section measured.
type cacheSection struct {
	opts    options
	started time.Time
	elapsed time.Duration
	results []pgbenchResult // workload, mode and target set; hit counts for the caches
	notes   []string        // targets left out, and why
	warm    []string        // how long each warm-up took
	redis   string          // redis-server's version
	pgpool  string          // pgpool-II's version, "" when it was left out

	machine       machine
	command       string
	load, loadEnd string
}

// benchCache runs the cache section: a Postgres with pgbench_accounts at scale 1, and in front
// of it sluice, sluice with the cache on a redis-server, and pgpool-II with its query cache;
// then, for each mode, a warm-up of both caches and the workloads on every target.
func benchCache(ctx context.Context, o options) (*cacheSection, error) {
	sec := &cacheSection{opts: o, started: time.Now()}
	pg, err := startBenchPostgres(ctx, o, "bench-cache", cacheScale)
	if err != nil {
		return nil, err
	}
	defer pg.Stop()

	var targets []target
	if has(o.cacheTargets, targetDirect) {
		targets = append(targets, target{name: targetDirect, host: pg.Host, port: pg.Port})
	}
	if has(o.cacheTargets, targetSluice) {
		sl, err := startSluice(ctx, pg, o, targetSluice, authMD5)
		if err != nil {
			return nil, err
		}
		defer sl.stop()
		targets = append(targets, sl.target)
	}
	var cacheProc *process
	redisPID := 0
	if has(o.cacheTargets, targetSluiceCache) {
		r, err := pgtest.StartRedis()
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		defer r.Stop()
		sec.redis = redisVersion()
		redisPID = pidByCmdline("redis-server", r.Addr)
		o.redisAddr = r.Addr
		cacheProc, err = startSluice(ctx, pg, o, targetSluiceCache, authMD5)
		if err != nil {
			return nil, err
		}
		defer cacheProc.stop()
		if err := waitCacheReady(ctx, cacheProc.target, cacheProc.logPath); err != nil {
			return nil, err
		}
		targets = append(targets, cacheProc.target)
	}
	var pgpool *process
	if has(o.cacheTargets, targetPgpool) {
		pgpool, err = startPgpool(ctx, pg, o)
		switch {
		case errors.Is(err, errNoPgpool):
			fmt.Println("pgpool: skipped:", err)
			sec.notes = append(sec.notes, "pgpool-II was left out: "+err.Error()+".")
		case err != nil:
			return nil, err
		default:
			defer pgpool.stop()
			sec.pgpool = pgpoolVersion()
			targets = append(targets, pgpool.target)
		}
	}

	dir, err := os.MkdirTemp("", "sluice-bench-cache-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	paths, err := cacheScripts(dir)
	if err != nil {
		return nil, err
	}

	counts := func(t target) (hitCounts, bool, error) {
		switch {
		case cacheProc != nil && t.name == targetSluiceCache:
			time.Sleep(cacheStatsInterval + 300*time.Millisecond) // the plugin's next line
			h, err := lastCacheStats(cacheProc.logPath)
			return h, true, err
		case pgpool != nil && t.name == targetPgpool:
			s, err := pgpoolCache(ctx, t)
			return hitCounts{hits: s.hits, misses: s.selects}, true, err
		}
		return hitCounts{}, false, nil
	}

	per := (cacheRows + o.clients - 1) / o.clients
	for _, mode := range o.cacheModes {
		for _, t := range targets {
			if t.name != targetSluiceCache && t.name != targetPgpool {
				continue
			}
			// Two passes: the first fills the cache (misses), the second reads every row
			// from it, which also fills sluice's in-process cache (l1_size) as a cache
			// that has been running a while would have it.
			for pass := 1; pass <= 2; pass++ {
				fmt.Printf("warm-up %d/2: every row read once through %s, -M %s\n", pass, t.name, mode)
				began := time.Now()
				r := runWorkload(ctx, t, mode, workload{script: []string{"-f", paths["warm"]},
					clients: o.clients, threads: o.threads, transactions: per,
					extra: []string{"-D", "n=0", "-D", "per=" + strconv.Itoa(per)}})
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if r.failed {
					return nil, fmt.Errorf("warm-up of %s -M %s: %s", t.name, mode, r.reason)
				}
				held := ""
				if t.name == targetPgpool {
					// pgpool-II may decline to store results (it does under -M prepared):
					// say how many it holds.
					if st, err := pgpoolCache(ctx, t); err == nil {
						held = fmt.Sprintf(", %d results held", st.entries)
					}
				}
				sec.warm = append(sec.warm, fmt.Sprintf("%s -M %s pass %d: %s (%.0f reads/s%s)", t.name, mode, pass,
					time.Since(began).Round(100*time.Millisecond), r.tps, held))
			}
		}
		for _, name := range o.cacheWorkloads {
			w, _ := findCacheWorkload(name)
			runs := map[string][]pgbenchResult{}
			for i := 0; i < o.runs; i++ {
				for _, t := range targets {
					before, isCache, err := counts(t)
					if err != nil {
						return nil, err
					}
					fmt.Printf("pgbench %s (%d%% updates) -M %s -c %d -j %d -T %d on %s (run %d/%d)\n",
						w.name, o.cacheWritePct, mode, o.clients, o.threads, o.seconds, t.name, i+1, o.runs)
					meter := cpuMeter{pooler: t.pid, postgres: postmasterPID(pg.DataDir)}
					if t.name == targetSluiceCache {
						meter.redis = redisPID
					}
					profile := ""
					if o.profileDir != "" {
						profile = filepath.Join(o.profileDir, fmt.Sprintf("cache-%s-%s-%s-%d.pprof", t.name, w.name, mode, i+1))
					}
					r := measuredRun(ctx, t, mode, workload{script: cacheMix(paths, w, o.cacheWritePct),
						clients: o.clients, threads: o.threads, seconds: o.seconds}, meter, profile)
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					r.workload = w.name
					if isCache {
						after, _, err := counts(t)
						if err != nil {
							return nil, err
						}
						r.cache = after.sub(before)
						if t.name == targetPgpool {
							r.cache = pgpoolLookups(mode, r.cache)
						}
						r.cacheKnown = true
					}
					fmt.Printf("  %s\n", r)
					runs[t.name] = append(runs[t.name], r)
				}
			}
			for _, t := range targets {
				sec.results = append(sec.results, median(runs[t.name]))
			}
		}
	}
	sec.elapsed = time.Since(sec.started)
	return sec, nil
}

// startBenchPostgres starts a Postgres for one section, with the bench user and database, and
// the pgbench tables at scale (none when scale is 0).
func startBenchPostgres(ctx context.Context, o options, name string, scale int) (*pgtest.Postgres, error) {
	maxConns := max(300, 4*o.poolSize+o.clients+50)
	fmt.Printf("postgres (%s): starting (max_connections=%d)\n", name, maxConns)
	pg, err := pgtest.StartPostgres(pgtest.Options{
		Name: name,
		Auth: "md5", // pgpool-II and PgBouncer log in with the md5 hash
		Conf: map[string]string{
			"max_connections": fmt.Sprint(maxConns),
			"shared_buffers":  "256MB",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := pg.CreateUser(ctx, benchUser, benchPassword); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("create user %s: %w", benchUser, err)
	}
	if err := pg.CreateDatabase(ctx, benchDB, benchUser); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("create database %s: %w", benchDB, err)
	}
	if scale > 0 {
		fmt.Printf("postgres (%s): %s:%d, pgbench -i -s %d\n", name, pg.Host, pg.Port, scale)
		if err := pgbenchInit(ctx, target{name: targetDirect, host: pg.Host, port: pg.Port}, scale); err != nil {
			pg.Stop()
			return nil, err
		}
	}
	return pg, nil
}

// redisVersion is redis-server's version, e.g. "7.0.15".
func redisVersion() string {
	out, err := execOutput("redis-server", "--version")
	if err != nil {
		return "unknown"
	}
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(out)
}
