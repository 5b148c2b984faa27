package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// cluster is a primary with streaming replicas, owned by one test: the routing tests stop,
// promote and pause its servers.
type cluster struct {
	primary  *pgtest.Postgres
	replicas []*pgtest.Postgres
}

func startCluster(t *testing.T, replicas int) *cluster {
	t.Helper()
	ctx := context.Background()
	p, err := pgtest.StartPostgres(pgtest.Options{Name: t.Name(), Auth: "md5"})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{primary: p}
	t.Cleanup(func() {
		for _, r := range c.replicas {
			r.Stop()
		}
		p.Stop()
	})
	if err := p.CreateUser(ctx, appUser, appPass); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateDatabase(ctx, appDB, appUser); err != nil {
		t.Fatal(err)
	}
	for i := range replicas {
		r, err := p.StartReplica(fmt.Sprintf("%s-r%d", t.Name(), i+1))
		if err != nil {
			t.Fatal(err)
		}
		c.replicas = append(c.replicas, r)
	}
	return c
}

// servers is the shard's servers list for the cluster.
func (c *cluster) servers() string {
	parts := []string{fmt.Sprintf(`["127.0.0.1", %d, "primary"]`, c.primary.Port)}
	for _, r := range c.replicas {
		parts = append(parts, fmt.Sprintf(`["127.0.0.1", %d, "replica"]`, r.Port))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// waitReplicated waits until every replica has replayed everything the primary wrote so far.
func (c *cluster) waitReplicated(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	conn, err := c.primary.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	for _, r := range c.replicas {
		checkFor(t, 30*time.Second, func() error {
			rc, err := r.Connect(ctx, "postgres")
			if err != nil {
				return err
			}
			defer rc.Close(ctx)
			var done bool
			if err := rc.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
				return err
			}
			if !done {
				return fmt.Errorf("%s has not replayed %s yet", r, lsn)
			}
			return nil
		})
	}
}

// routingPool is the [pools.app] configuration the routing tests share: read/write splitting
// with the parser, reads on the replicas only.
const routingPool = `query_parser_enabled = true
query_parser_read_write_splitting = true
`

// fastHealth makes the health checker and bans quick enough for a test.
const fastHealth = `healthcheck_interval = 100
ban_time = 2
connect_timeout = 1000
`

func serverPort(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql string) (int, error) {
	var port int
	err := q.QueryRow(ctx, sql).Scan(&port)
	return port, err
}

// TestReadWriteSplitSpreadsReads: reads spread evenly over the replicas in round_robin and random
// mode; every write (and every read that locks or calls a writing function) lands on the primary.
func TestReadWriteSplitSpreadsReads(t *testing.T) {
	c := startCluster(t, 2)
	ctx := context.Background()
	if err := c.primary.Exec(ctx, appDB, "CREATE TABLE rw (id serial PRIMARY KEY, v int); ALTER TABLE rw OWNER TO app; CREATE SEQUENCE rw_seq; ALTER SEQUENCE rw_seq OWNER TO app"); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(t)
	for _, mode := range []string{"round_robin", "random"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{PoolSize: 8, Servers: c.servers(), General: fastHealth,
				Pool: routingPool + fmt.Sprintf("load_balancing_mode = %q\n", mode)})
			const clients, reads = 4, 10000
			var mu sync.Mutex
			counts := map[int]int{}
			var wg sync.WaitGroup
			for range clients {
				conn := connect(t, s)
				wg.Add(1)
				go func() {
					defer wg.Done()
					local := map[int]int{}
					for range reads / clients {
						port, err := serverPort(ctx, conn, "SELECT inet_server_port()")
						if err != nil {
							t.Error(err)
							return
						}
						local[port]++
					}
					mu.Lock()
					for p, n := range local {
						counts[p] += n
					}
					mu.Unlock()
				}()
			}
			wg.Wait()
			if counts[c.primary.Port] != 0 {
				t.Errorf("the primary took %d reads; want none (primary_reads_enabled is off)", counts[c.primary.Port])
			}
			for _, r := range c.replicas {
				n := counts[r.Port]
				if n < reads/2*85/100 || n > reads/2*115/100 {
					t.Errorf("replica %d took %d of %d reads; want %d ±15%% (counts %v)", r.Port, n, reads, reads/2, counts)
				}
			}

			conn := connect(t, s)
			writes := []string{
				"INSERT INTO rw (v) VALUES (1) RETURNING inet_server_port()",
				"UPDATE rw SET v = v + 1 WHERE id = 1 RETURNING inet_server_port()",
				"WITH w AS (INSERT INTO rw (v) VALUES (2) RETURNING id) SELECT inet_server_port() FROM w",
				"SELECT inet_server_port() FROM rw FOR NO KEY UPDATE LIMIT 1",
				"SELECT inet_server_port() FROM rw FOR UPDATE LIMIT 1",
				"SELECT inet_server_port() FROM (SELECT nextval('rw_seq')) s",
				"DELETE FROM rw WHERE id = (SELECT max(id) FROM rw) RETURNING inet_server_port()",
			}
			for range 20 {
				for _, w := range writes {
					port, err := serverPort(ctx, conn, w)
					if err != nil {
						t.Fatalf("%s: %v", w, err)
					}
					if port != c.primary.Port {
						t.Fatalf("%s ran on %d; want the primary %d", w, port, c.primary.Port)
					}
				}
			}
			// A plain BEGIN may write: the primary. BEGIN READ ONLY: a replica.
			for _, tc := range []struct {
				mode    pgx.TxAccessMode
				primary bool
			}{{"", true}, {pgx.ReadWrite, true}, {pgx.ReadOnly, false}} {
				tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: tc.mode})
				if err != nil {
					t.Fatal(err)
				}
				port, err := serverPort(ctx, tx, "SELECT inet_server_port()")
				if err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if (port == c.primary.Port) != tc.primary {
					t.Errorf("BEGIN %q ran on %d; primary %d, want primary: %v", tc.mode, port, c.primary.Port, tc.primary)
				}
			}
		})
	}
}

// readLoad runs reads through s from several clients until stop is closed, counting failures.
type readLoad struct {
	failed, done atomic.Int64
	mu           sync.Mutex
	lastErr      error
	firstErr     error
	ports        map[int]int
	wg           sync.WaitGroup
	stop         chan struct{}
}

func startReadLoad(t *testing.T, s *Sluice, clients int) *readLoad {
	l := &readLoad{stop: make(chan struct{}), ports: map[int]int{}}
	ctx := context.Background()
	for range clients {
		conn := connect(t, s)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				port, err := serverPort(ctx, conn, "SELECT inet_server_port()")
				l.mu.Lock()
				if err != nil {
					if l.failed.Add(1) == 1 {
						l.firstErr = err
					}
					l.lastErr = err
				} else {
					l.ports[port]++
				}
				l.mu.Unlock()
				l.done.Add(1)
			}
		}()
	}
	return l
}

// since returns the reads per server port from now until d has passed.
func (l *readLoad) over(d time.Duration) map[int]int {
	l.mu.Lock()
	clear(l.ports)
	l.mu.Unlock()
	time.Sleep(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for p, n := range l.ports {
		out[p] = n
	}
	return out
}

func (l *readLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// TestReplicaDownUnderLoad: a replica killed under a read load costs no query (those in flight
// are retried elsewhere), is banned, and takes reads again once it is back and ban_time passed.
func TestReplicaDownUnderLoad(t *testing.T) {
	c := startCluster(t, 2)
	s := startSluice(t, poolConfig{PoolSize: 8, Servers: c.servers(), General: fastHealth,
		Pool: routingPool + `load_balancing_mode = "round_robin"` + "\n"})
	load := startReadLoad(t, s, 4)
	defer load.end()
	r1, r2 := c.replicas[0], c.replicas[1]
	checkFor(t, 10*time.Second, func() error {
		if got := load.over(300 * time.Millisecond); got[r1.Port] == 0 || got[r2.Port] == 0 {
			return fmt.Errorf("reads before the kill: %v; want both replicas", got)
		}
		return nil
	})
	if err := r1.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := load.over(time.Second); got[r1.Port] != 0 || got[r2.Port] == 0 {
		t.Errorf("reads after the kill: %v; want all on %d", got, r2.Port)
	}
	if n := load.failed.Load(); n != 0 {
		t.Fatalf("%d of %d reads failed after a replica went down; want none (first: %v; last: %v)", n, load.done.Load(), load.firstErr, load.lastErr)
	}
	if err := r1.Start(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 15*time.Second, func() error {
		if got := load.over(300 * time.Millisecond); got[r1.Port] == 0 {
			return fmt.Errorf("reads: %v; the restarted replica %d takes none yet", got, r1.Port)
		}
		return nil
	})
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d reads failed; want none (last: %v)", n, load.lastErr)
	}
}

// TestFailoverToPromotedReplica: the primary dies and a replica is promoted with no change to
// sluice's configuration; writes go to the new primary within ban_time + 2 s.
func TestFailoverToPromotedReplica(t *testing.T) {
	c := startCluster(t, 2)
	ctx := context.Background()
	if err := c.primary.Exec(ctx, appDB, "CREATE TABLE fo (id serial PRIMARY KEY, v int); ALTER TABLE fo OWNER TO app"); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(t)
	s := startSluice(t, poolConfig{PoolSize: 4, Servers: c.servers(), General: fastHealth, Pool: routingPool})
	conn := connect(t, s)
	const write = "INSERT INTO fo (v) VALUES (1) RETURNING inet_server_port()"
	if port, err := serverPort(ctx, conn, write); err != nil || port != c.primary.Port {
		t.Fatalf("write before the failover: port %d, %v; want the primary %d", port, err, c.primary.Port)
	}
	if err := c.primary.Kill(); err != nil {
		t.Fatal(err)
	}
	newPrimary := c.replicas[0]
	if err := newPrimary.Promote(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	var port int
	for {
		// A connection may be lost to the dead primary: connect again as an application would.
		if conn.IsClosed() {
			conn = connect(t, s)
		}
		var err error
		port, err = serverPort(ctx, conn, write)
		if err == nil {
			break
		}
		if time.Since(promoted) > 4*time.Second { // ban_time (2 s) + 2 s
			t.Fatalf("writes still fail %s after the promotion: %v", time.Since(promoted), err)
		}
		if conn.IsClosed() || strings.Contains(err.Error(), "conn closed") {
			conn.Close(ctx)
			conn = connect(t, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if port != newPrimary.Port {
		t.Fatalf("the write after the failover ran on %d; want the promoted replica %d", port, newPrimary.Port)
	}
	t.Logf("writes resumed %s after the promotion", time.Since(promoted).Round(time.Millisecond))
	// The console shows the roles as they are now: the promoted replica is the primary (once
	// the checker has seen it: a write may find the promoted server first).
	admin := connectAdmin(t, s, "pgcat")
	checkFor(t, 5*time.Second, func() error {
		cols, rows := adminQuery(t, admin, "SHOW DATABASES")
		roles := map[string]string{}
		for _, row := range rows {
			roles[column(t, cols, row, "port")] = column(t, cols, row, "role")
		}
		if got := roles[fmt.Sprint(newPrimary.Port)]; got != "primary" {
			return fmt.Errorf("SHOW DATABASES gives the promoted replica role %q; want primary (roles by port: %v)", got, roles)
		}
		return nil
	})
	// Reads go on: the other replica still follows the dead primary, which is fine for reads.
	if _, err := serverPort(ctx, conn, "SELECT inet_server_port()"); err != nil {
		t.Fatal(err)
	}
}

// TestLaggingReplicaLeavesRotation: a replica whose replay is paused falls behind past
// max_replica_lag_bytes and takes no reads until replay resumes and it catches up.
func TestLaggingReplicaLeavesRotation(t *testing.T) {
	c := startCluster(t, 2)
	ctx := context.Background()
	if err := c.primary.Exec(ctx, appDB, "CREATE TABLE lag (id int, pad text); ALTER TABLE lag OWNER TO app"); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(t)
	s := startSluice(t, poolConfig{PoolSize: 8, Servers: c.servers(), General: fastHealth,
		Pool: routingPool + "load_balancing_mode = \"round_robin\"\nmax_replica_lag_bytes = 65536\n"})
	load := startReadLoad(t, s, 2)
	defer load.end()
	r1 := c.replicas[0]
	if err := r1.Exec(ctx, "postgres", "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	if err := c.primary.Exec(ctx, appDB, "INSERT INTO lag SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if got := load.over(300 * time.Millisecond); got[r1.Port] != 0 {
			return fmt.Errorf("reads: %v; the paused replica %d still takes some", got, r1.Port)
		}
		return nil
	})
	if err := r1.Exec(ctx, "postgres", "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if got := load.over(300 * time.Millisecond); got[r1.Port] == 0 {
			return fmt.Errorf("reads: %v; the resumed replica %d takes none yet", got, r1.Port)
		}
		return nil
	})
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d reads failed; want none (last: %v)", n, load.lastErr)
	}
}

// TestPgcatRoutingCommands: SET/SHOW SERVER ROLE and PRIMARY READS per client, answered by
// sluice in and out of transactions, and read_your_writes_ms.
func TestPgcatRoutingCommands(t *testing.T) {
	c := startCluster(t, 1)
	ctx := context.Background()
	if err := c.primary.Exec(ctx, appDB, "CREATE TABLE ryw (id int); CREATE TABLE other (id int); ALTER TABLE ryw OWNER TO app; ALTER TABLE other OWNER TO app"); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(t)
	s := startSluice(t, poolConfig{Servers: c.servers(), General: fastHealth, Pool: routingPool + "read_your_writes_ms = 1500\n"})
	conn := connectConfig(t, s, func(cc *pgx.ConnConfig) { cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	primary, replica := c.primary.Port, c.replicas[0].Port
	show := func(what string) string {
		t.Helper()
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+what).Scan(&v); err != nil {
			t.Fatalf("SHOW %s: %v", what, err)
		}
		return v
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	readPort := func() int {
		t.Helper()
		p, err := serverPort(ctx, conn, "SELECT inet_server_port() FROM (SELECT 1) s")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := show("SERVER ROLE"); got != "auto" {
		t.Errorf("SHOW SERVER ROLE = %q; want auto (parser on)", got)
	}
	if got := show("PRIMARY READS"); got != "off" {
		t.Errorf("SHOW PRIMARY READS = %q; want off", got)
	}
	if p := readPort(); p != replica {
		t.Errorf("read on %d; want the replica %d", p, replica)
	}
	exec("SET SERVER ROLE TO 'primary'")
	if got := show("SERVER ROLE"); got != "primary" {
		t.Errorf("after SET SERVER ROLE TO 'primary': %q", got)
	}
	if p := readPort(); p != primary {
		t.Errorf("read with role primary on %d; want %d", p, primary)
	}
	exec("set server role = 'replica';")
	if p := readPort(); p != replica {
		t.Errorf("read with role replica on %d; want %d", p, replica)
	}
	exec("SET SERVER ROLE TO 'default'")
	exec("SET PRIMARY READS TO 'on'")
	if got := show("PRIMARY READS"); got != "on" {
		t.Errorf("SHOW PRIMARY READS = %q after SET ... 'on'", got)
	}
	exec("SET PRIMARY READS TO 'default'")
	if _, err := conn.Exec(ctx, "SET SERVER ROLE TO 'bogus'"); codeOf(err) != "22023" {
		t.Errorf("SET SERVER ROLE TO 'bogus': %v; want 22023", err)
	}
	// Inside a transaction the answer comes in order, with the transaction's status.
	exec("BEGIN")
	if got := show("SERVER ROLE"); got != "auto" {
		t.Errorf("SHOW SERVER ROLE in a transaction = %q", got)
	}
	exec("COMMIT")

	// read_your_writes_ms: the table written reads from the primary for a while; others don't.
	exec("INSERT INTO ryw VALUES (1)")
	if p, err := serverPort(ctx, conn, "SELECT inet_server_port() FROM ryw LIMIT 1"); err != nil || p != primary {
		t.Errorf("read of a table just written: port %d, %v; want the primary %d", p, err, primary)
	}
	if p, err := serverPort(ctx, conn, "SELECT inet_server_port() FROM other UNION ALL SELECT inet_server_port() LIMIT 1"); err != nil || p != replica {
		t.Errorf("read of another table: port %d, %v; want the replica %d", p, err, replica)
	}
	time.Sleep(1600 * time.Millisecond)
	c.waitReplicated(t)
	if p, err := serverPort(ctx, conn, "SELECT inet_server_port() FROM ryw LIMIT 1"); err != nil || p != replica {
		t.Errorf("read after read_your_writes_ms: port %d, %v; want the replica %d", p, err, replica)
	}
}
