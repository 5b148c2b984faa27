package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// These tests drive sluice with pgx v5, the way Go applications use it: its statement cache
// (named prepared statements), batches (pipelined extended protocol), COPY, cancellation and
// every QueryExecMode.

// againstPostgres is set by E2E_AGAINST_POSTGRES=1: the client tests then connect straight to
// Postgres instead of through sluice, which shows that what they expect is what Postgres does.
// Only the checks of how many server connections sluice opens are skipped then.
var againstPostgres = os.Getenv("E2E_AGAINST_POSTGRES") != ""

// startPooler starts sluice with pc; with againstPostgres it returns a stand-in whose address is
// Postgres' own.
func startPooler(t testing.TB, pc poolConfig) *Sluice {
	t.Helper()
	if againstPostgres {
		return &Sluice{Port: pg.Port, SocketDir: pg.SocketDir}
	}
	return startSluice(t, pc)
}

// codeOf returns the SQLSTATE of a server error, or "" when err is not one.
func codeOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mustExec runs sql on c and fails the test on error.
func mustExec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// firstErrors collects the errors of concurrent workers and reports up to a few of them.
type firstErrors struct {
	mu   sync.Mutex
	errs []error
	n    int
}

func (f *firstErrors) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.errs) < 10 {
		f.errs = append(f.errs, fmt.Errorf(format, args...))
	}
}

func (f *firstErrors) report(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, err := range f.errs {
		t.Error(err)
	}
	if f.n > len(f.errs) {
		t.Errorf("... and %d more errors", f.n-len(f.errs))
	}
}

// TestPgxHundredClientsShareFourServers runs 100 pgx clients with the default statement cache
// (every query becomes a named prepared statement) over 4 server connections in transaction mode.
// Each client runs many different parameterized queries, some shared with other clients and some
// its own, writes rows and runs transactions; every result must be the client's own.
func TestPgxHundredClientsShareFourServers(t *testing.T) {
	const (
		clients = 100
		rounds  = 25
		servers = 4
	)
	s := startPooler(t, poolConfig{Mode: "transaction", PoolSize: servers})
	setup := connect(t, s)
	mustExec(t, setup, "DROP TABLE IF EXISTS pgx_many")
	mustExec(t, setup, "CREATE TABLE pgx_many (client int, round int, note text)")

	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connect(t, s)
	}
	peak := watchServerBackends(t)

	var errs firstErrors
	var wg sync.WaitGroup
	for id, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for r := 0; r < rounds; r++ {
				if err := manyClientsRound(ctx, c, id, r); err != nil {
					errs.add("client %d round %d: %v", id, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	errs.report(t)

	if got := peak(); got > servers && !againstPostgres {
		t.Errorf("%d server connections at once, want at most pool_size %d", got, servers)
	}
	var rows, perClient int
	err := direct(t).QueryRow(context.Background(), `SELECT count(*),
		(SELECT count(*) FROM (SELECT client FROM pgx_many GROUP BY client HAVING count(*) = $1) x)
		FROM pgx_many`, rounds).Scan(&rows, &perClient)
	if err != nil {
		t.Fatal(err)
	}
	if rows != clients*rounds || perClient != clients {
		t.Errorf("pgx_many has %d rows, %d clients with %d rows each; want %d rows, %d clients",
			rows, perClient, rounds, clients*rounds, clients)
	}
}

// manyClientsRound is one round of TestPgxHundredClientsShareFourServers for client id.
func manyClientsRound(ctx context.Context, c *pgx.Conn, id, r int) error {
	var sum int
	if err := c.QueryRow(ctx, "SELECT $1::int + $2::int", id, r).Scan(&sum); err != nil {
		return err
	}
	if sum != id+r {
		return fmt.Errorf("SELECT %d + %d = %d", id, r, sum)
	}
	var text string
	if err := c.QueryRow(ctx, "SELECT $1::text || '/' || $2::text", fmt.Sprint("c", id), fmt.Sprint("r", r)).Scan(&text); err != nil {
		return err
	}
	if want := fmt.Sprintf("c%d/r%d", id, r); text != want {
		return fmt.Errorf("concatenation gave %q, want %q", text, want)
	}
	var n int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, $1::int)", id+r).Scan(&n); err != nil {
		return err
	}
	if n != int64(id+r) {
		return fmt.Errorf("generate_series(1, %d) has %d rows", id+r, n)
	}
	// A statement only this client prepares, once: 2,500 distinct statements overflow both
	// pgx's statement cache (512, evicted with Close) and sluice's per-server one (1,024).
	var mine string
	if err := c.QueryRow(ctx, fmt.Sprintf("SELECT 'client %d round %d' || $1::text", id, r), "!").Scan(&mine); err != nil {
		return err
	}
	if want := fmt.Sprintf("client %d round %d!", id, r); mine != want {
		return fmt.Errorf("own statement gave %q, want %q", mine, want)
	}
	rows, err := c.Query(ctx, "SELECT g, $1::int * g FROM generate_series(1, 5) g", id)
	if err != nil {
		return err
	}
	k := 0
	for rows.Next() {
		var g, p int
		if err := rows.Scan(&g, &p); err != nil {
			return err
		}
		k++
		if g != k || p != id*g {
			return fmt.Errorf("row %d: (%d, %d), want (%d, %d)", k, g, p, k, id*k)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if k != 5 {
		return fmt.Errorf("%d rows, want 5", k)
	}
	// A transaction: its statements must run in one transaction on one server, and see its
	// own write.
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		var start time.Time
		var pid int32
		if err := tx.QueryRow(ctx, "SELECT now(), pg_backend_pid() WHERE $1::int >= 0", id).Scan(&start, &pid); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO pgx_many (client, round, note) VALUES ($1, $2, $3)", id, r, "n"); err != nil {
			return err
		}
		var start2 time.Time
		var pid2 int32
		var mine int
		err := tx.QueryRow(ctx, "SELECT now(), pg_backend_pid(), count(*) FROM pgx_many WHERE client = $1", id).Scan(&start2, &pid2, &mine)
		if err != nil {
			return err
		}
		if !start2.Equal(start) || pid2 != pid {
			return fmt.Errorf("one transaction ran on server %d (started %s) then on %d (started %s)", pid, start, pid2, start2)
		}
		if mine != r+1 {
			return fmt.Errorf("inside the transaction the client sees %d of its rows, want %d", mine, r+1)
		}
		return nil
	})
}

// TestPgxBatchRunsStatementsInOrder sends one pgx.Batch (a pipeline ending in one Sync) with
// writes and reads that depend on each other.
func TestPgxBatchRunsStatementsInOrder(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	c := connect(t, s)
	mustExec(t, c, "DROP TABLE IF EXISTS pgx_batch")
	mustExec(t, c, "CREATE TABLE pgx_batch (id int PRIMARY KEY, v int)")
	ctx := context.Background()

	b := &pgx.Batch{}
	b.Queue("INSERT INTO pgx_batch (id, v) VALUES ($1, $2), ($3, $4)", 1, 10, 2, 20)
	b.Queue("UPDATE pgx_batch SET v = v + $1 WHERE id = $2", 5, 1)
	b.Queue("SELECT id, v FROM pgx_batch ORDER BY id")
	b.Queue("SELECT sum(v) FROM pgx_batch WHERE v > $1", 0)
	b.Queue("DELETE FROM pgx_batch WHERE id = $1", 2)
	b.Queue("SELECT count(*) FROM pgx_batch")
	br := c.SendBatch(ctx, b)
	if tag, err := br.Exec(); err != nil || tag.String() != "INSERT 0 2" {
		t.Fatalf("insert: %q, %v", tag, err)
	}
	if tag, err := br.Exec(); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("update: %q, %v", tag, err)
	}
	rows, err := br.Query()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]int, error) {
		var p [2]int
		err := r.Scan(&p[0], &p[1])
		return p, err
	})
	if err != nil || !slices.Equal(got, [][2]int{{1, 15}, {2, 20}}) {
		t.Fatalf("select: %v, %v", got, err)
	}
	var sum, count int
	if err := br.QueryRow().Scan(&sum); err != nil || sum != 35 {
		t.Fatalf("sum: %d, %v", sum, err)
	}
	if tag, err := br.Exec(); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("delete: %q, %v", tag, err)
	}
	if err := br.QueryRow().Scan(&count); err != nil || count != 1 {
		t.Fatalf("count: %d, %v", count, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT v FROM pgx_batch WHERE id = 1").Scan(&sum); err != nil || sum != 15 {
		t.Fatalf("after the batch: %d, %v", sum, err)
	}
}

// TestPgxCopyFromThenCount copies 10,000 rows in with COPY FROM STDIN and counts them.
func TestPgxCopyFromThenCount(t *testing.T) {
	const n = 10000
	s := startPooler(t, poolConfig{PoolSize: 2})
	c := connect(t, s)
	mustExec(t, c, "DROP TABLE IF EXISTS pgx_copy")
	mustExec(t, c, "CREATE TABLE pgx_copy (id int, name text, at timestamptz, maybe int)")
	ctx := context.Background()
	base := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	copied, err := c.CopyFrom(ctx, pgx.Identifier{"pgx_copy"}, []string{"id", "name", "at", "maybe"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			var maybe any
			if i%3 == 0 {
				maybe = int32(i)
			}
			return []any{int32(i), fmt.Sprintf("row %d\t\"ünïcode\"\n", i), base.Add(time.Duration(i) * time.Second), maybe}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if copied != n {
		t.Fatalf("CopyFrom copied %d rows, want %d", copied, n)
	}
	var count, sum, nulls int64
	var lastName string
	if err := c.QueryRow(ctx, "SELECT count(*), sum(id), count(*) FILTER (WHERE maybe IS NULL) FROM pgx_copy").Scan(&count, &sum, &nulls); err != nil {
		t.Fatal(err)
	}
	if count != n || sum != n*(n-1)/2 || nulls != n-(n+2)/3 {
		t.Fatalf("count %d, sum %d, nulls %d; want %d, %d, %d", count, sum, nulls, n, n*(n-1)/2, n-(n+2)/3)
	}
	var at time.Time
	if err := direct(t).QueryRow(ctx, "SELECT name, at FROM pgx_copy WHERE id = $1", n-1).Scan(&lastName, &at); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("row %d\t\"ünïcode\"\n", n-1); lastName != want || !at.Equal(base.Add((n-1)*time.Second)) {
		t.Fatalf("last row (%q, %s), want (%q, %s)", lastName, at, want, base.Add((n-1)*time.Second))
	}
}

// TestPgxCancelReachesOnlyItsServer cancels a long query through pgx's context (which sends a
// CancelRequest to sluice) while another client runs a short query on another server: the long
// query ends at once with 57014, the other one completes as if nothing happened.
func TestPgxCancelReachesOnlyItsServer(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 4})
	watch := direct(t)
	sendsCancel := func(cfg *pgx.ConnConfig) {
		cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
			// Only if the cancel is lost does pgx give up on the connection, after 20 s.
			return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 20 * time.Second}
		}
	}
	for _, tc := range []struct {
		name                    string
		long, short             string
		longArgs, shortArgs     []any
		longMarker, shortMarker string
	}{
		{name: "simple protocol",
			long: "SELECT pg_sleep(30) /* cancel-long-simple */", short: "SELECT pg_sleep(1) /* cancel-short-simple */",
			longMarker: "cancel-long-simple", shortMarker: "cancel-short-simple"},
		{name: "extended protocol",
			long: "SELECT pg_sleep($1) /* cancel-long-extended */", short: "SELECT pg_sleep($1) /* cancel-short-extended */",
			longArgs: []any{30}, shortArgs: []any{1},
			longMarker: "cancel-long-extended", shortMarker: "cancel-short-extended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			long := connectConfig(t, s, sendsCancel)
			other := connectConfig(t, s, sendsCancel)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			longErr := make(chan error, 1)
			go func() { _, err := long.Exec(ctx, tc.long, tc.longArgs...); longErr <- err }()
			waitActive(t, watch, tc.longMarker)

			shortErr := make(chan error, 1)
			shortStart := time.Now()
			go func() { _, err := other.Exec(context.Background(), tc.short, tc.shortArgs...); shortErr <- err }()
			waitActive(t, watch, tc.shortMarker)

			canceledAt := time.Now()
			cancel()
			select {
			case err := <-longErr:
				if codeOf(err) != "57014" {
					t.Errorf("canceled query: err %v, want SQLSTATE 57014 (query_canceled)", err)
				}
				if d := time.Since(canceledAt); d > 5*time.Second {
					t.Errorf("canceled query took %s to end", d)
				}
			case <-time.After(25 * time.Second):
				t.Fatal("canceled query did not end")
			}
			select {
			case err := <-shortErr:
				if err != nil {
					t.Errorf("the other client's query failed: %v (the cancel reached the wrong server?)", err)
				}
				if d := time.Since(shortStart); d < time.Second {
					t.Errorf("the other client's pg_sleep(1) ended after %s", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the other client's query did not end")
			}
			// Both connections are still usable.
			for _, c := range []*pgx.Conn{long, other} {
				var one int
				if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Errorf("after the cancel: %d, %v", one, err)
				}
			}
		})
	}
}

// noLeftoverTx is true when run with the simple protocol outside a transaction block: a
// transaction left open on the server would have started before this statement (and an aborted
// one fails it with 25P02). With the extended protocol now() is the time of the Parse, so it
// tells nothing.
const noLeftoverTx = "SELECT now() = statement_timestamp() AND txid_current_if_assigned() IS NULL"

// TestCancelFromAnIdleClientCancelsNothing sends a CancelRequest for a client that runs nothing,
// while another client runs a query on the server the first one used last (pool_size 1): Postgres
// would ignore it, and so must sluice.
func TestCancelFromAnIdleClientCancelsNothing(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	idle, busy := connect(t, s), connect(t, s)
	ctx := context.Background()
	mustExec(t, idle, "SELECT 1")
	done := make(chan error, 1)
	go func() { _, err := busy.Exec(ctx, "SELECT pg_sleep(1) /* cancel-idle-busy */"); done <- err }()
	waitActive(t, direct(t), "cancel-idle-busy")
	if err := idle.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("the busy client's query: %v, want success", err)
	}
	var one int
	if err := idle.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("the idle client after its cancel request: %v", err)
	}
}

// TestCancelRacingTheEndOfAQueryCancelsNoOtherClient sends cancel requests for a client's short
// queries at random moments, some just as the query ends, while another client runs queries on
// the only server (pool_size 1). A cancel that sluice passed on while the first client held the
// server may reach Postgres after the server went to the second client: the server must not
// change hands before its cancel request is done, or the second client's query is cancelled.
func TestCancelRacingTheEndOfAQueryCancelsNoOtherClient(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	canceller, other := connect(t, s), connect(t, s)
	ctx := context.Background()
	stop := time.Now().Add(3 * time.Second)
	otherErr := make(chan error, 1)
	go func() {
		for time.Now().Before(stop) {
			if _, err := other.Exec(ctx, "SELECT pg_sleep(0.001)"); err != nil {
				otherErr <- err
				return
			}
		}
		otherErr <- nil
	}()
	cancelled := 0
	for i := 0; time.Now().Before(stop); i++ {
		done := make(chan error, 1)
		go func() {
			time.Sleep(time.Duration(i%10) * 400 * time.Microsecond)
			done <- canceller.PgConn().CancelRequest(ctx)
		}()
		_, err := canceller.Exec(ctx, "SELECT pg_sleep(0.001)")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		switch codeOf(err) {
		case "57014":
			cancelled++
		case "":
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal(err)
		}
	}
	if err := <-otherErr; err != nil {
		t.Fatalf("the other client's query: %v, want success (a cancel meant for the first client reached it)", err)
	}
	t.Logf("%d of the first client's queries were cancelled", cancelled)
}

// terminateOnFailure ends, when the test has failed, the server connections running a query
// marked with marker, so that a sluice stuck on them can shut down when the test ends.
func terminateOnFailure(t *testing.T, marker string) {
	t.Helper()
	watch := direct(t)
	t.Cleanup(func() {
		if t.Failed() {
			_, _ = watch.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`, marker)
		}
	})
}

// waitActive waits until a query whose text contains marker is running on pg.
func waitActive(t testing.TB, watch *pgx.Conn, marker string) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		var n int
		err := watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`, marker).Scan(&n)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%d active queries marked %s, want 1", n, marker)
		}
		return nil
	})
}

// TestPgxTransactionsRollBack checks that what a rolled-back transaction did is gone, for the
// client and for the next client on the same server (pool_size 1), and that what a committed one
// did stays.
func TestPgxTransactionsRollBack(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	c := connect(t, s)
	mustExec(t, c, "DROP TABLE IF EXISTS pgx_tx")
	mustExec(t, c, "CREATE TABLE pgx_tx (id int PRIMARY KEY)")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(c *pgx.Conn) error
		want []int // ids in the table afterwards
	}{
		{"explicit rollback", func(c *pgx.Conn) error {
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO pgx_tx VALUES ($1)", 1); err != nil {
				return err
			}
			return tx.Rollback(ctx)
		}, nil},
		{"commit", func(c *pgx.Conn) error {
			return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO pgx_tx VALUES ($1)", 2)
				return err
			})
		}, []int{2}},
		{"error aborts the transaction, rollback ends it", func(c *pgx.Conn) error {
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO pgx_tx VALUES ($1)", 3); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO pgx_tx VALUES ($1)", 2); codeOf(err) != "23505" {
				return fmt.Errorf("duplicate insert: %v, want 23505", err)
			}
			if _, err := tx.Exec(ctx, "SELECT $1::int", 1); codeOf(err) != "25P02" {
				return fmt.Errorf("statement after the error: %v, want 25P02", err)
			}
			return tx.Rollback(ctx)
		}, []int{2}},
		{"savepoint rolled back, transaction committed", func(c *pgx.Conn) error {
			return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO pgx_tx VALUES ($1)", 4); err != nil {
					return err
				}
				sp, err := tx.Begin(ctx) // SAVEPOINT
				if err != nil {
					return err
				}
				if _, err := sp.Exec(ctx, "INSERT INTO pgx_tx VALUES ($1)", 5); err != nil {
					return err
				}
				return sp.Rollback(ctx)
			})
		}, []int{2, 4}},
		{"client leaves inside a transaction", func(c *pgx.Conn) error {
			if _, err := c.Exec(ctx, "BEGIN"); err != nil {
				return err
			}
			if _, err := c.Exec(ctx, "INSERT INTO pgx_tx VALUES ($1)", 6); err != nil {
				return err
			}
			return c.Close(ctx)
		}, []int{2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, s)
			if err := tc.run(c); err != nil {
				t.Fatal(err)
			}
			// The next client gets the same server (pool_size 1): no transaction may be left on it.
			next := connect(t, s)
			var ids []int
			var clean bool
			checkFor(t, 5*time.Second, func() error {
				err := next.QueryRow(ctx, noLeftoverTx, pgx.QueryExecModeSimpleProtocol).Scan(&clean)
				if err != nil {
					return err
				}
				rows, _ := next.Query(ctx, "SELECT id FROM pgx_tx ORDER BY id")
				ids, err = pgx.CollectRows(rows, pgx.RowTo[int])
				return err
			})
			if !clean {
				t.Errorf("the next client's statement ran inside a leftover transaction")
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("ids %v, want %v", ids, tc.want)
			}
		})
	}
}

// TestPgxDiscardAllForgetsOnlyTheClientsStatements runs DISCARD ALL and DEALLOCATE ALL in
// transaction mode: the client's prepared statements are gone (26000) and can be prepared again
// under the same name; another client's statement of the same name and text still works.
func TestPgxDiscardAllForgetsOnlyTheClientsStatements(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	ctx := context.Background()
	const sql = "SELECT $1::int + 1"
	exec := func(pc *pgconn.PgConn) (string, error) {
		res := pc.ExecPrepared(ctx, "s1", [][]byte{[]byte("41")}, nil, nil).Read()
		if res.Err != nil {
			return "", res.Err
		}
		if len(res.Rows) != 1 {
			return "", fmt.Errorf("%d rows", len(res.Rows))
		}
		return string(res.Rows[0][0]), nil
	}
	for _, discard := range []string{"DISCARD ALL", "DEALLOCATE ALL"} {
		t.Run(discard, func(t *testing.T) {
			a, b := connect(t, s).PgConn(), connect(t, s).PgConn()
			for _, pc := range []*pgconn.PgConn{a, b} {
				if _, err := pc.Prepare(ctx, "s1", sql, nil); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := exec(a); err != nil || got != "42" {
				t.Fatalf("before %s: %q, %v", discard, got, err)
			}
			if err := a.Exec(ctx, discard).Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := exec(a); codeOf(err) != "26000" {
				t.Errorf("statement after %s: %v, want SQLSTATE 26000", discard, err)
			}
			if got, err := exec(b); err != nil || got != "42" {
				t.Errorf("the other client's statement after %s: %q, %v", discard, got, err)
			}
			if _, err := a.Prepare(ctx, "s1", sql, nil); err != nil {
				t.Fatalf("prepare again after %s: %v", discard, err)
			}
			if got, err := exec(a); err != nil || got != "42" {
				t.Errorf("prepared again: %q, %v", got, err)
			}
		})
	}
}

// TestPgxDiscardAllRestoresConnectionSettings checks that DISCARD ALL (which includes RESET
// ALL) brings settings back to what the client asked for when it connected, not to the server
// connection's own defaults.
func TestPgxDiscardAllRestoresConnectionSettings(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	ctx := context.Background()
	c := connectConfig(t, s, func(cfg *pgx.ConnConfig) { cfg.RuntimeParams["application_name"] = "discard-me-not" })
	mustExec(t, c, "SET application_name = 'changed'")
	mustExec(t, c, "DISCARD ALL")
	var got string
	if err := c.QueryRow(ctx, "SHOW application_name").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "discard-me-not" {
		t.Errorf("application_name after DISCARD ALL is %q, want the connection's %q", got, "discard-me-not")
	}
	if rep := c.PgConn().ParameterStatus("application_name"); rep != "discard-me-not" {
		t.Errorf("client was told application_name %q, want %q", rep, "discard-me-not")
	}
}

// TestPgxSettingsFollowTheClient has clients with different settings, from their startup
// packet or from SET, share one server (pool_size 1): each must see its own settings in every
// statement, as it would on its own Postgres connection.
func TestPgxSettingsFollowTheClient(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	ctx := context.Background()
	type settings struct{ TimeZone, DateStyle, IntervalStyle, AppName string }
	show := func(c *pgx.Conn) (settings, error) {
		var st settings
		err := c.QueryRow(ctx, "SELECT current_setting('TimeZone'), current_setting('DateStyle'), current_setting('IntervalStyle'), current_setting('application_name')").
			Scan(&st.TimeZone, &st.DateStyle, &st.IntervalStyle, &st.AppName)
		return st, err
	}
	// libpq sends PGTZ as "timezone", in lower case; Postgres reports it as "TimeZone".
	tokyo := connectConfig(t, s, func(cfg *pgx.ConnConfig) {
		cfg.RuntimeParams["timezone"] = "Asia/Tokyo"
		cfg.RuntimeParams["application_name"] = "tokyo"
	})
	lima := connectConfig(t, s, func(cfg *pgx.ConnConfig) {
		cfg.RuntimeParams["TimeZone"] = "America/Lima"
		cfg.RuntimeParams["application_name"] = "lima"
	})
	plain := connectConfig(t, s, func(cfg *pgx.ConnConfig) { cfg.RuntimeParams["application_name"] = "plain" })
	setter := connectConfig(t, s, func(cfg *pgx.ConnConfig) { cfg.RuntimeParams["application_name"] = "setter" })
	mustExec(t, setter, "SET TimeZone = 'America/New_York'")
	mustExec(t, setter, "SET IntervalStyle = 'iso_8601'")
	mustExec(t, setter, "SET application_name = 'setter2'")
	var serverTZ string
	if err := direct(t).QueryRow(ctx, "SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'").Scan(&serverTZ); err != nil {
		t.Fatal(err)
	}
	want := map[*pgx.Conn]settings{
		tokyo:  {"Asia/Tokyo", "ISO, MDY", "postgres", "tokyo"},
		lima:   {"America/Lima", "ISO, MDY", "postgres", "lima"},
		plain:  {serverTZ, "ISO, MDY", "postgres", "plain"},
		setter: {"America/New_York", "ISO, MDY", "iso_8601", "setter2"},
	}
	for i := 0; i < 3; i++ {
		for _, c := range []*pgx.Conn{tokyo, plain, setter, lima, plain, setter, tokyo, lima} {
			got, err := show(c)
			if err != nil {
				t.Fatal(err)
			}
			if got != want[c] {
				t.Errorf("round %d: client %s sees %+v, want %+v", i, want[c].AppName, got, want[c])
			}
		}
	}
}

// TestPgxSameStatementNameManyClients has many clients prepare statements under the same name:
// with the same text they share one server-side statement, with different texts each client
// must still run its own.
func TestPgxSameStatementNameManyClients(t *testing.T) {
	const clients = 30
	s := startPooler(t, poolConfig{PoolSize: 3})
	conns := make([]*pgconn.PgConn, clients)
	for i := range conns {
		conns[i] = connect(t, s).PgConn()
	}
	var errs firstErrors
	var wg sync.WaitGroup
	for id, pc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if _, err := pc.Prepare(ctx, "same", "SELECT $1::int * 2", nil); err != nil {
				errs.add("client %d: prepare same: %v", id, err)
				return
			}
			if _, err := pc.Prepare(ctx, "clash", fmt.Sprintf("SELECT $1::int + %d", id*1000), nil); err != nil {
				errs.add("client %d: prepare clash: %v", id, err)
				return
			}
			for i := 0; i < 50; i++ {
				arg := [][]byte{[]byte(fmt.Sprint(i))}
				res := pc.ExecPrepared(ctx, "same", arg, nil, nil).Read()
				if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != fmt.Sprint(i*2) {
					errs.add("client %d: same(%d): %v %q", id, i, res.Err, res.Rows)
					return
				}
				res = pc.ExecPrepared(ctx, "clash", arg, nil, nil).Read()
				if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != fmt.Sprint(id*1000+i) {
					errs.add("client %d: clash(%d): %v %q, want %d", id, i, res.Err, res.Rows, id*1000+i)
					return
				}
			}
			// Preparing a name the client already has is an error, whatever other clients did.
			if _, err := pc.Prepare(ctx, "same", "SELECT $1::int * 2", nil); codeOf(err) != "42P05" {
				errs.add("client %d: second prepare of same: %v, want 42P05", id, err)
			}
			if err := pc.Deallocate(ctx, "same"); err != nil {
				errs.add("client %d: close same: %v", id, err)
			}
			res := pc.ExecPrepared(ctx, "same", [][]byte{[]byte("1")}, nil, nil).Read()
			if codeOf(res.Err) != "26000" {
				errs.add("client %d: same after Close: %v, want 26000", id, res.Err)
			}
			res = pc.ExecPrepared(ctx, "clash", [][]byte{[]byte("1")}, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != fmt.Sprint(id*1000+1) {
				errs.add("client %d: clash after closing same: %v %q", id, res.Err, res.Rows)
			}
		}()
	}
	wg.Wait()
	errs.report(t)
}

// execModes are pgx's ways of running a query, from named prepared statements to client-side
// interpolation.
var execModes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"CacheStatement", pgx.QueryExecModeCacheStatement},
	{"CacheDescribe", pgx.QueryExecModeCacheDescribe},
	{"DescribeExec", pgx.QueryExecModeDescribeExec},
	{"Exec", pgx.QueryExecModeExec},
	{"SimpleProtocol", pgx.QueryExecModeSimpleProtocol},
}

// TestPgxStatementCacheEvictions gives pgx a statement cache of 2 while each client cycles
// through 5 queries: pgx closes (Close message) and prepares again all the time.
func TestPgxStatementCacheEvictions(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	var errs firstErrors
	var wg sync.WaitGroup
	for id := 0; id < 6; id++ {
		c := connectConfig(t, s, func(cfg *pgx.ConnConfig) { cfg.StatementCacheCapacity = 2 })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				k := i % 5
				var got int
				if err := c.QueryRow(context.Background(), fmt.Sprintf("SELECT $1::int * %d", k+1), id).Scan(&got); err != nil {
					errs.add("client %d query %d: %v", id, i, err)
					return
				}
				if got != id*(k+1) {
					errs.add("client %d query %d: %d, want %d", id, i, got, id*(k+1))
					return
				}
			}
		}()
	}
	wg.Wait()
	errs.report(t)
}

// TestPgxLargePipelinedBatch sends 5,000 queries in one batch whose results (5 MB) come back
// while the client is still sending: sluice must read the server while it writes to it.
func TestPgxLargePipelinedBatch(t *testing.T) {
	const n = 5000
	s := startPooler(t, poolConfig{PoolSize: 1})
	terminateOnFailure(t, "large-batch")
	c := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	for i := 0; i < n; i++ {
		b.Queue("SELECT $1::int, repeat('x', 1000) /* large-batch */", i)
	}
	br := c.SendBatch(ctx, b)
	for i := 0; i < n; i++ {
		var got int
		var pad string
		if err := br.QueryRow().Scan(&got, &pad); err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		if got != i || len(pad) != 1000 {
			t.Fatalf("result %d: %d, %d bytes", i, got, len(pad))
		}
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPgxQueryExecModes round-trips values of many types in every pgx exec mode, with 8 clients
// over 2 servers so that consecutive statements of a client run on different servers.
func TestPgxQueryExecModes(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	for _, m := range execModes {
		t.Run(m.name, func(t *testing.T) {
			var errs firstErrors
			var wg sync.WaitGroup
			for id := 0; id < 8; id++ {
				c := connectConfig(t, s, func(cfg *pgx.ConnConfig) { cfg.DefaultQueryExecMode = m.mode })
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 40; i++ {
						if err := roundTrip(context.Background(), c, id*1000+i); err != nil {
							errs.add("client %d iteration %d: %v", id, i, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			errs.report(t)
		})
	}
}

// roundTrip sends values of several types as parameters and checks what comes back.
func roundTrip(ctx context.Context, c *pgx.Conn, n int) error {
	text := fmt.Sprintf(`it's "%d" \ ünï`+"\t\n", n)
	blob := []byte{0, 1, 2, 0xff, byte(n)}
	at := time.Date(2024, 2, 29, 12, 34, 56, 789000000, time.UTC).Add(time.Duration(n) * time.Hour)
	arr := []int32{int32(n), -1, 0}
	var (
		gotN    int64
		gotText string
		gotBlob []byte
		gotAt   time.Time
		gotBool bool
		gotArr  []int32
		gotNull *string
		gotNum  string
	)
	err := c.QueryRow(ctx, "SELECT $1::int8 + 1, $2::text, $3::bytea, $4::timestamptz, $5::bool, $6::int4[], $7::text, ($8::numeric * 2)::text",
		int64(n), text, blob, at, n%2 == 0, arr, nil, "12345.6789").
		Scan(&gotN, &gotText, &gotBlob, &gotAt, &gotBool, &gotArr, &gotNull, &gotNum)
	if err != nil {
		return err
	}
	switch {
	case gotN != int64(n)+1:
		return fmt.Errorf("int8: %d", gotN)
	case gotText != text:
		return fmt.Errorf("text: %q, want %q", gotText, text)
	case !bytes.Equal(gotBlob, blob):
		return fmt.Errorf("bytea: %x", gotBlob)
	case !gotAt.Equal(at):
		return fmt.Errorf("timestamptz: %s, want %s", gotAt, at)
	case gotBool != (n%2 == 0):
		return fmt.Errorf("bool: %v", gotBool)
	case !slices.Equal(gotArr, arr):
		return fmt.Errorf("int4[]: %v", gotArr)
	case gotNull != nil:
		return fmt.Errorf("NULL came back as %q", *gotNull)
	case gotNum != "24691.3578":
		return fmt.Errorf("numeric: %s", gotNum)
	}
	// A statement error must leave the connection usable.
	if _, err := c.Exec(ctx, "SELECT 1 / $1::int", 0); codeOf(err) != "22012" {
		return fmt.Errorf("division by zero: %v, want 22012", err)
	}
	rows, err := c.Query(ctx, "SELECT g FROM generate_series(1, $1::int) g", 100)
	if err != nil {
		return err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return err
	}
	if len(got) != 100 || got[99] != 100 {
		return fmt.Errorf("generate_series: %d rows", len(got))
	}
	return nil
}

// TestPgxErrorInsideBatch makes a statement in the middle of a pipelined batch fail. As in
// Postgres, the statements of the batch form one implicit transaction: the ones before the error
// are rolled back, the ones after it are skipped, and the connection (and the next client on the
// same server) works afterwards.
func TestPgxErrorInsideBatch(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	setup := connect(t, s)
	mustExec(t, setup, "DROP TABLE IF EXISTS pgx_batch_err")
	mustExec(t, setup, "CREATE TABLE pgx_batch_err (id int)")
	ctx := context.Background()
	for _, m := range execModes[:4] { // SimpleProtocol sends a batch as one multi-statement Query
		for _, failing := range []struct {
			name, sql, code string
		}{
			{"execution error", "SELECT 1 / $1::int", "22012"},
			{"parse error", "SELEKT $1::int", "42601"},
		} {
			t.Run(m.name+"/"+failing.name, func(t *testing.T) {
				mustExec(t, setup, "TRUNCATE pgx_batch_err")
				c := connectConfig(t, s, func(cfg *pgx.ConnConfig) { cfg.DefaultQueryExecMode = m.mode })
				b := &pgx.Batch{}
				b.Queue("INSERT INTO pgx_batch_err VALUES ($1)", 1)
				b.Queue(failing.sql, 0)
				b.Queue("INSERT INTO pgx_batch_err VALUES ($1)", 2)
				br := c.SendBatch(ctx, b)
				var errs []error
				for i := 0; i < 3; i++ {
					_, err := br.Exec()
					errs = append(errs, err)
				}
				closeErr := br.Close()
				found := false
				for _, err := range append(errs, closeErr) {
					if codeOf(err) == failing.code {
						found = true
					}
				}
				if !found {
					t.Errorf("batch errors %v, close %v: none has SQLSTATE %s", errs, closeErr, failing.code)
				}
				if errs[2] == nil {
					t.Errorf("the statement after the failed one succeeded")
				}
				var one int
				if err := c.QueryRow(ctx, "SELECT $1::int", 1).Scan(&one); err != nil || one != 1 {
					t.Fatalf("same connection after the failed batch: %d, %v", one, err)
				}
				next := connect(t, s)
				var clean bool
				if err := next.QueryRow(ctx, noLeftoverTx, pgx.QueryExecModeSimpleProtocol).Scan(&clean); err != nil {
					t.Fatalf("next client on the same server: %v", err)
				}
				var rows int
				if err := direct(t).QueryRow(ctx, "SELECT count(*) FROM pgx_batch_err").Scan(&rows); err != nil {
					t.Fatal(err)
				}
				if rows != 0 {
					t.Errorf("%d rows committed by the failed batch, want 0 (one implicit transaction)", rows)
				}
				if !clean {
					t.Errorf("the next client ran inside a leftover transaction")
				}
			})
		}
	}
}

// TestPgxFailedPrepareIsNotRemembered prepares a statement on a table that does not exist yet:
// it fails; once another client created the table, the same statement works.
func TestPgxFailedPrepareIsNotRemembered(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	a, b := connect(t, s), connect(t, s)
	ctx := context.Background()
	mustExec(t, b, "DROP TABLE IF EXISTS pgx_later")
	const q = "SELECT count(*) FROM pgx_later WHERE id > $1"
	var n int
	if err := a.QueryRow(ctx, q, 0).Scan(&n); codeOf(err) != "42P01" {
		t.Fatalf("query on a missing table: %v, want 42P01", err)
	}
	mustExec(t, b, "CREATE TABLE pgx_later (id int)")
	mustExec(t, b, "INSERT INTO pgx_later VALUES (1), (2)")
	for _, c := range []*pgx.Conn{a, b} {
		if err := c.QueryRow(ctx, q, 0).Scan(&n); err != nil || n != 2 {
			t.Errorf("after CREATE TABLE: %d, %v", n, err)
		}
	}
	// And the other way round: a statement that worked fails once its table is gone, for a
	// client preparing it afterwards, at the Parse as in Postgres.
	mustExec(t, b, "DROP TABLE pgx_later")
	c := connect(t, s).PgConn()
	_, err := c.Prepare(ctx, "later", q, nil)
	if codeOf(err) != "42P01" {
		t.Errorf("prepare on a dropped table: %v, want 42P01", err)
	}
}

// TestPgxUnixSocket connects through sluice's Unix socket.
func TestPgxUnixSocket(t *testing.T) {
	s := startPooler(t, poolConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s", s.SocketDir, s.Port, appUser, appPass, appDB)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect over the Unix socket: %v", err)
	}
	defer c.Close(context.Background())
	if !strings.HasPrefix(c.PgConn().Conn().RemoteAddr().Network(), "unix") {
		t.Fatalf("connected over %s", c.PgConn().Conn().RemoteAddr().Network())
	}
	var db, user string
	var sum int
	if err := c.QueryRow(ctx, "SELECT current_database(), current_user, $1::int + 1", 41).Scan(&db, &user, &sum); err != nil {
		t.Fatal(err)
	}
	if db != appDB || user != appUser || sum != 42 {
		t.Fatalf("got (%s, %s, %d)", db, user, sum)
	}
}

// TestUnnamedStatementSurvivesSync prepares the unnamed statement in one Sync and executes it in
// the next, as pgx's DescribeExec mode and pgconn's Prepare(ctx, "", ...) do. Postgres keeps the
// unnamed statement until the next Parse of it, across Syncs; another client's unnamed statement
// must never run in its place. pool_size 1 makes both clients use the same server.
func TestUnnamedStatementSurvivesSync(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	ctx := context.Background()
	a, b := connect(t, s).PgConn(), connect(t, s).PgConn()
	if _, err := a.Prepare(ctx, "", "SELECT 'client a', $1::int", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare(ctx, "", "SELECT 'client b', $1::int", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pc   *pgconn.PgConn
	}{{"client a", a}, {"client b", b}} {
		res := c.pc.ExecPrepared(ctx, "", [][]byte{[]byte("7")}, nil, nil).Read()
		if res.Err != nil {
			t.Errorf("%s: execute its unnamed statement: %v", c.name, res.Err)
			continue
		}
		if len(res.Rows) != 1 || string(res.Rows[0][0]) != c.name || string(res.Rows[0][1]) != "7" {
			t.Errorf("%s ran an unnamed statement that returned %q", c.name, res.Rows)
		}
	}

	// A Parse that fails leaves no unnamed statement behind: the client's earlier one is gone
	// too, whichever server the next Bind lands on.
	if _, err := a.Prepare(ctx, "", "SELEKT $1::int", nil); codeOf(err) != "42601" {
		t.Fatalf("bad unnamed Parse: %v, want 42601", err)
	}
	if res := b.ExecPrepared(ctx, "", [][]byte{[]byte("8")}, nil, nil).Read(); res.Err != nil {
		t.Errorf("client b after client a's failed Parse: %v", res.Err)
	}
	res := a.ExecPrepared(ctx, "", [][]byte{[]byte("9")}, nil, nil).Read()
	if codeOf(res.Err) != "26000" {
		t.Errorf("client a's Bind after its failed Parse: %v %q, want SQLSTATE 26000", res.Err, res.Rows)
	}
}

// TestUnnamedParseFailsWhileItsBindIsSent runs ruby-pg's spec "should work with arbitrary number
// of params" in transaction mode: a Parse of the unnamed statement with 1782 parameters fails
// (54011, more than 1664 result columns) while the client is still sending its Bind. Postgres
// skips the Bind up to the Sync, so the one error must be the Parse's; sluice used to fail the
// Bind itself with 26000 "unnamed prepared statement does not exist" when the server's error
// was handled between reading the Bind and routing it. The race is narrow: several clients
// repeat the batch.
func TestUnnamedParseFailsWhileItsBindIsSent(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "transaction", PoolSize: 4})
	const params = 1782
	cols := make([]string, params)
	args := make([][]byte, params)
	for i := range cols {
		cols[i] = fmt.Sprintf("$%d::int", i+1)
		args[i] = []byte(fmt.Sprint(i))
	}
	sql := "SELECT " + strings.Join(cols, ",")
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		pc := connect(t, s).PgConn()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				res := pc.ExecParams(context.Background(), sql, args, nil, nil, nil).Read()
				if code := codeOf(res.Err); code != "54011" {
					t.Errorf("try %d: %v (SQLSTATE %q), want 54011", i, res.Err, code)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestUnnamedStatementSurvivesAnotherClientsFailedBatch leaves client b's unnamed statement on
// the only server (pool_size 1), then has client a make that server drop or keep its unnamed
// statement in ways sluice must follow: a batch that sluice itself fails (a second Parse of a
// name, refused with 42P05: sluice aborts the batch on the server with a failing Parse of a
// named statement, which leaves the server's unnamed statement as it was), and a Parse of the
// unnamed statement that the server skips after an earlier error in its batch. Client b's next Bind must still run its own statement, and client
// a's must never run client b's.
func TestUnnamedStatementSurvivesAnotherClientsFailedBatch(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	ctx := context.Background()
	a, b := connect(t, s).PgConn(), connect(t, s).PgConn()
	bRuns := func(when string) {
		t.Helper()
		res := b.ExecPrepared(ctx, "", [][]byte{[]byte("7")}, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "client b" {
			t.Fatalf("client b's unnamed statement %s: %q, %v", when, res.Rows, res.Err)
		}
	}
	if _, err := b.Prepare(ctx, "", "SELECT 'client b', $1::int", nil); err != nil {
		t.Fatal(err)
	}
	bRuns("at first")

	// A batch sluice fails: 42P05 for a name prepared twice, inside a transaction.
	if _, err := a.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Prepare(ctx, "twice", "SELECT 1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Prepare(ctx, "twice", "SELECT 2", nil); codeOf(err) != "42P05" {
		t.Fatalf("second Parse of a name: %v, want 42P05", err)
	}
	if _, err := a.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		t.Fatal(err)
	}
	bRuns("after client a's batch failed by sluice")

	// A batch whose unnamed Parse the server skips: an error comes before it.
	if _, err := a.Prepare(ctx, "div", "SELECT 1/$1::int", nil); err != nil {
		t.Fatal(err)
	}
	p := a.StartPipeline(ctx)
	p.SendQueryPrepared("div", [][]byte{[]byte("0")}, nil, nil)
	p.SendPrepare("", "SELECT 'client a', $1::int", nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetResults(); codeOf(err) != "22012" {
		t.Fatalf("1/0 in the pipeline: %v, want 22012", err)
	}
	for {
		r, err := p.GetResults()
		if err != nil {
			continue
		}
		if _, ok := r.(*pgconn.PipelineSync); ok {
			break
		}
		if r == nil {
			t.Fatal("no PipelineSync")
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	res := a.ExecPrepared(ctx, "", [][]byte{[]byte("8")}, nil, nil).Read()
	if len(res.Rows) > 0 && string(res.Rows[0][0]) == "client b" {
		t.Fatalf("client a ran client b's unnamed statement: %q", res.Rows)
	}
	bRuns("after client a's unnamed Parse was skipped")
}

// TestUnnamedStatementSurvivesOtherClients: what destroys the unnamed statement on a server (a
// simple Query, a Close of it, the failing Parse sluice sends to abort a batch) is sent by other
// clients, or by sluice for this one, between a client's Parse and its Bind on the same server
// (pool_size 1): the client's Bind must still find its own statement, as it would in Postgres.
func TestUnnamedStatementSurvivesOtherClients(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	ctx := context.Background()
	a, b := connect(t, s).PgConn(), connect(t, s).PgConn()
	execA := func(what, want string) {
		t.Helper()
		res := a.ExecPrepared(ctx, "", [][]byte{[]byte(want)}, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][1]) != want {
			t.Errorf("client a's unnamed statement after %s: %v %q", what, res.Err, res.Rows)
		}
	}
	if _, err := a.Prepare(ctx, "", "SELECT 'client a', $1::int", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Exec(ctx, "SELECT 1").Close(); err != nil {
		t.Fatal(err)
	}
	execA("another client's simple Query", "1")

	if err := b.Exec(ctx, "BEGIN").Close(); err != nil {
		t.Fatal(err)
	}
	protocolTrace(t, b, []pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{}}, 1, false)
	if err := b.Exec(ctx, "COMMIT").Close(); err != nil {
		t.Fatal(err)
	}
	execA("another client's Close of its unnamed statement in a transaction", "2")

	// A batch that fails after its Parse keeps the statement the Parse made.
	got := protocolTrace(t, a, []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT 'client a', $1::int"},
		&pgproto3.Bind{PreparedStatement: "no_such_statement"},
		&pgproto3.Sync{},
	}, 1, false)
	if want := "*pgproto3.ParseComplete\nErrorResponse 26000 prepared statement \"no_such_statement\" does not exist\nReadyForQuery I\n"; got != want {
		t.Errorf("Parse then a Bind of a missing statement:\n%s\nwant\n%s", got, want)
	}
	execA("its batch failed after the Parse", "3")
}

// TestUnnamedStatementSurvivesAnotherClientsSimpleQuery leaves client b's unnamed statement on
// the only server (pool_size 1); then client a runs simple Queries there, which drop the server's
// unnamed statement (Postgres zaps it at every simple Query): its own, and the one sluice sends for
// a query it refuses inside a transaction. Client b's next Bind must get its statement prepared
// again, not 26000.
func TestUnnamedStatementSurvivesAnotherClientsSimpleQuery(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	ctx := context.Background()
	a, b := connect(t, s).PgConn(), connect(t, s).PgConn()
	bPrepares := func() {
		t.Helper()
		if _, err := b.Prepare(ctx, "", "SELECT 'client b', $1::int", nil); err != nil {
			t.Fatal(err)
		}
	}
	bRuns := func(when string) {
		t.Helper()
		res := b.ExecPrepared(ctx, "", [][]byte{[]byte("7")}, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "client b" {
			t.Fatalf("client b's unnamed statement %s: %q, %v", when, res.Rows, res.Err)
		}
	}
	bPrepares()
	if _, err := a.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	bRuns("after client a's simple Query")

	// Statements prepared by name, so that only the refused LISTEN is a simple Query.
	for _, st := range []string{"BEGIN", "ROLLBACK"} {
		if _, err := a.Prepare(ctx, st, st, nil); err != nil {
			t.Fatal(err)
		}
	}
	bPrepares()
	if res := a.ExecPrepared(ctx, "BEGIN", nil, nil, nil).Read(); res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, err := a.Exec(ctx, "LISTEN chaos").ReadAll(); codeOf(err) != "0A000" && !againstPostgres {
		t.Fatalf("LISTEN in transaction mode: %v, want 0A000", err)
	}
	if res := a.ExecPrepared(ctx, "ROLLBACK", nil, nil, nil).Read(); res.Err != nil {
		t.Fatal(res.Err)
	}
	bRuns("after sluice refused client a's LISTEN in a transaction")
}

// TestPortalFetchedInPiecesInsideTransaction fetches a named portal a few rows at a time, with a
// Sync after each piece, inside a transaction, as JDBC's fetchSize and node's pg-cursor do: the
// portal lives until the transaction ends, on the one server the transaction holds. The named
// statement outlives the transaction.
func TestPortalFetchedInPiecesInsideTransaction(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	hc, err := connect(t, s).PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	f := hc.Frontend
	// exchange sends msgs and returns the types of the replies up to ReadyForQuery, e.g.
	// "1 2 D D s Z:T", with the rows' first column after each D.
	exchange := func(msgs ...pgproto3.FrontendMessage) string {
		t.Helper()
		for _, m := range msgs {
			f.Send(m)
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		_ = hc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got []string
		for {
			msg, err := f.Receive()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			switch m := msg.(type) {
			case *pgproto3.ParseComplete:
				got = append(got, "1")
			case *pgproto3.BindComplete:
				got = append(got, "2")
			case *pgproto3.DataRow:
				got = append(got, "D"+string(m.Values[0]))
			case *pgproto3.PortalSuspended:
				got = append(got, "s")
			case *pgproto3.CommandComplete:
				got = append(got, "C:"+string(m.CommandTag))
			case *pgproto3.ErrorResponse:
				got = append(got, "E:"+m.Code)
			case *pgproto3.ReadyForQuery:
				return strings.Join(append(got, "Z:"+string(m.TxStatus)), " ")
			}
		}
	}
	steps := []struct {
		msgs []pgproto3.FrontendMessage
		want string
	}{
		{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN"}}, "C:BEGIN Z:T"},
		{[]pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "five", Query: "SELECT g FROM generate_series(1, 5) g"},
			&pgproto3.Bind{DestinationPortal: "cur", PreparedStatement: "five"},
			&pgproto3.Execute{Portal: "cur", MaxRows: 2},
			&pgproto3.Sync{},
		}, "1 2 D1 D2 s Z:T"},
		{[]pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "cur", MaxRows: 2}, &pgproto3.Sync{}}, "D3 D4 s Z:T"},
		{[]pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "cur"}, &pgproto3.Sync{}}, "D5 C:SELECT 1 Z:T"},
		{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "COMMIT"}}, "C:COMMIT Z:I"},
		// The portal is gone with the transaction, the statement is not.
		{[]pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "cur"}, &pgproto3.Sync{}}, "E:34000 Z:I"},
		{[]pgproto3.FrontendMessage{
			&pgproto3.Bind{DestinationPortal: "cur", PreparedStatement: "five"},
			&pgproto3.Execute{Portal: "cur", MaxRows: 4},
			&pgproto3.Sync{},
		}, "2 D1 D2 D3 D4 s Z:I"},
	}
	for i, st := range steps {
		if got := exchange(st.msgs...); got != st.want {
			t.Fatalf("step %d: replies %q, want %q", i, got, st.want)
		}
	}
}

// TestLargeRowWhileBatchArrivesInPieces has the server send a row larger than its 8 KiB output
// buffer in an extended-protocol batch that has no Sync yet, so Postgres holds the end of the row
// until the client sends more; the client then sends the rest of the batch in two writes, a Bind
// and then the Sync. A proxy that waits for the server while holding what it needs to read the
// client deadlocks here; big pipelined batches (TestPgxLargePipelinedBatch) meet the same case
// by chance. The sleep only makes the two writes arrive apart: correctness does not depend on it.
func TestLargeRowWhileBatchArrivesInPieces(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	terminateOnFailure(t, "large-row-pieces")
	hc, err := connect(t, s).PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	f := hc.Frontend
	f.Send(&pgproto3.Parse{Query: "SELECT repeat('x', 20000) /* large-row-pieces */"})
	f.Send(&pgproto3.Bind{})
	f.Send(&pgproto3.Execute{})
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	// Postgres has run the query, flushed what filled its buffer, and waits for the client.
	watch := direct(t)
	checkFor(t, 10*time.Second, func() error {
		var n int
		err := watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE '%large-row-pieces%' AND wait_event = 'ClientRead' AND pid <> pg_backend_pid()`).Scan(&n)
		if err == nil && n != 1 {
			err = errors.New("the server is not waiting for the client yet")
		}
		return err
	})
	for i, msg := range []pgproto3.FrontendMessage{&pgproto3.Bind{}, &pgproto3.Sync{}} {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		f.Send(msg)
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// ParseComplete, BindComplete, the row, CommandComplete, BindComplete, ReadyForQuery.
	want := []string{"*pgproto3.ParseComplete", "*pgproto3.BindComplete", "*pgproto3.DataRow",
		"*pgproto3.CommandComplete", "*pgproto3.BindComplete", "*pgproto3.ReadyForQuery"}
	_ = hc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []string
	for len(got) < len(want) {
		msg, err := f.Receive()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, fmt.Sprintf("%T", msg))
		if row, ok := msg.(*pgproto3.DataRow); ok && len(row.Values[0]) != 20000 {
			t.Fatalf("row of %d bytes", len(row.Values[0]))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
}

// TestCancelWhileWaitingForAServer cancels a query that waits for a server (pool_size 1, the
// server held by another client's transaction), in each protocol and pool mode. Postgres would
// stop the query at once; sluice ends the wait with 57014, runs nothing of the query, and the
// client's next query waits and runs as usual. PHP's pg_cancel_query of a query queued behind a
// full pool waited for the whole query before this.
func TestCancelWhileWaitingForAServer(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			s := startPooler(t, poolConfig{Mode: mode, PoolSize: 1})
			ctx := context.Background()
			holder, waiter := connect(t, s), connect(t, s)
			mustExec(t, holder, "DROP TABLE IF EXISTS cancel_wait")
			mustExec(t, holder, "CREATE TABLE cancel_wait (n int)")
			mustExec(t, holder, "BEGIN")
			mustExec(t, holder, "SELECT 1")
			adm := connectAdmin(t, s, "pgcat")
			waiting := func() error {
				cols, rows := adminQuery(t, adm, "SHOW POOLS")
				if len(rows) != 1 || column(t, cols, rows[0], "cl_waiting") != "1" {
					return fmt.Errorf("SHOW POOLS: %q %q, want a waiting client", cols, rows)
				}
				return nil
			}
			for _, tc := range []struct {
				name string
				run  func() error
			}{
				{"simple protocol", func() error {
					return waiter.PgConn().Exec(ctx, "INSERT INTO cancel_wait VALUES (1)").Close()
				}},
				{"extended protocol", func() error {
					return waiter.PgConn().ExecParams(ctx, "INSERT INTO cancel_wait VALUES ($1)", [][]byte{[]byte("2")}, nil, nil, nil).Read().Err
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					done := make(chan error, 1)
					go func() { done <- tc.run() }()
					checkFor(t, 10*time.Second, waiting)
					if err := waiter.PgConn().CancelRequest(ctx); err != nil {
						t.Fatal(err)
					}
					select {
					case err := <-done:
						var pe *pgconn.PgError
						if !errors.As(err, &pe) || pe.Code != "57014" || pe.Message != "canceling statement due to user request" {
							t.Fatalf("the cancelled query: %v, want 57014 canceling statement due to user request", err)
						}
					case <-time.After(5 * time.Second):
						t.Fatal("the cancelled query still waits")
					}
				})
			}
			// The waiter's next query waits for the server, and runs once the holder lets it go
			// (at COMMIT in transaction mode, when it leaves in session mode).
			done := make(chan error, 1)
			var got int
			go func() { done <- waiter.QueryRow(ctx, "SELECT count(*) FROM cancel_wait").Scan(&got) }()
			checkFor(t, 10*time.Second, waiting)
			mustExec(t, holder, "COMMIT")
			if mode == "session" {
				holder.Close(ctx)
			}
			if err := <-done; err != nil || got != 0 {
				t.Fatalf("the query after the cancels: %d, %v; want 0 rows (nothing of the cancelled queries ran)", got, err)
			}
		})
	}
}
