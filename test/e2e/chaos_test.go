package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestChaos runs many clients with random, adversarial workloads over a pool much smaller than
// the client count, in transaction mode, while servers are killed from outside, and checks every
// result: what a client reads must be its own, its settings must be its own, what it committed
// must be there and nothing else, and at the end sluice must hold no client and no busy server.
//
// It runs for SLUICE_CHAOS_SECONDS (20 by default). The random seed is logged; set
// SLUICE_CHAOS_SEED to replay a run's choices (the interleaving of clients is the scheduler's).
// Each client's choices come from its own generator, derived from the seed and the client id.
//
// What may fail, and how: a query running on a server that is killed fails with a connection
// error (57P01, 08006, 08P01, or the connection closing), after which the client reconnects;
// each kill can cost at most one client its connection. A cancelled pg_sleep fails with 57014,
// and only the client that cancelled it may ever see 57014. Everything else must succeed.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SLUICE_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_CHAOS_SEED=%q: %v", v, err)
		}
		seed = n
	}
	dur := 20 * time.Second
	if v := os.Getenv("SLUICE_CHAOS_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("SLUICE_CHAOS_SECONDS=%q: want a positive number of seconds", v)
		}
		dur = time.Duration(n) * time.Second
	}
	t.Logf("chaos seed %d (replay with SLUICE_CHAOS_SEED=%d), %s", seed, seed, dur)

	const (
		clients  = 40
		poolSize = 4
	)
	s := startPooler(t, poolConfig{Mode: "transaction", PoolSize: poolSize, General: "query_wait_timeout = 60000"})
	ctx := context.Background()

	mon := newMonitor(t, 4)
	setup := []string{
		"DROP TABLE IF EXISTS chaos_rows",
		`CREATE TABLE chaos_rows (client int NOT NULL, tag bigint NOT NULL, seq int NOT NULL,
			val text NOT NULL, pending bool NOT NULL DEFAULT false)`,
		"CREATE INDEX ON chaos_rows (tag)",
		"CREATE INDEX ON chaos_rows (client)",
		"CREATE INDEX ON chaos_rows (tag) WHERE pending",
		"GRANT ALL ON chaos_rows TO " + appUser,
	}
	for _, q := range setup {
		if _, err := mon.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// The settings a client has before it sets any: those of a direct login as the app user.
	defaults := map[string]string{}
	{
		c, err := pgx.Connect(ctx, pg.URL(appDB, appUser, appPass))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range chaosSettings {
			var v string
			if err := c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
				t.Fatal(err)
			}
			defaults[name] = v
		}
		c.Close(ctx)
	}

	w := &chaosWorld{t: t, s: s, mon: mon, defaults: defaults}

	// Warm up: fill the pool, so that the goroutine count below includes the servers' own.
	runParallel(2*poolSize, 2*poolSize, func(i int) error {
		c, err := w.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT pg_sleep(0.2)")
		return err
	}, t)
	phase := time.Now()
	slow := func(what string) {
		if d := time.Since(phase); d > 5*time.Second {
			t.Logf("%s took %s", what, d.Round(100*time.Millisecond))
		}
		phase = time.Now()
	}
	defer func() {
		phase = time.Now()
		s.Stop()
		slow("stopping sluice")
	}()
	baseline := settledGoroutines(0)
	slow("settling the goroutine count")
	t.Logf("%d goroutines before the clients", baseline)

	end := time.Now().Add(dur)
	killDone := make(chan struct{})
	killStop := make(chan struct{})
	go func() {
		defer close(killDone)
		w.killer(rand.New(rand.NewPCG(seed, 1<<32)), killStop)
	}()

	cs := make([]*chaosClient, clients)
	var wg sync.WaitGroup
	for id := range cs {
		c := &chaosClient{w: w, id: id + 1, rng: rand.New(rand.NewPCG(seed, uint64(id+1))),
			expected: map[int64]int{}, uncertain: map[int64]int{}, never: map[int64]bool{}, inflight: map[int64]int{}}
		cs[id] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(end)
		}()
	}
	wg.Wait()
	phase = time.Now()
	if late := time.Since(end); late > 30*time.Second {
		t.Logf("the clients finished %s after the end of the run", late.Round(time.Second))
	}
	close(killStop)
	<-killDone
	for _, c := range cs {
		if c.conn != nil {
			c.conn.Close(ctx)
			c.conn = nil
		}
	}
	w.errs.report(t)

	var ops, losses int64
	for _, c := range cs {
		ops += c.ops
	}
	losses = w.losses.Load()
	kills := w.kills.Load()
	t.Logf("%d operations by %d clients; %d servers killed, %d client connections lost to it, %d cancelled queries",
		ops, clients, kills, losses, w.cancels.Load())
	if losses > kills {
		w.lossMu.Lock()
		t.Errorf("%d client connections were lost, but only %d servers were killed: each kill may cost one client at most; losses: %s",
			losses, kills, strings.Join(w.lossLog, "; "))
		w.lossMu.Unlock()
	}

	// Nothing is left in sluice: no client, no server handed out.
	if !againstPostgres {
		w.checkAdmin()
	}
	slow("the admin console's checks")
	checkFor(t, 15*time.Second, func() error {
		var n int
		err := mon.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE usename = $1 AND state <> 'idle'`, appUser).Scan(&n)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d server backends of %s are not idle after every client left", n, appUser)
		}
		return err
	})

	// The table holds exactly the committed rows.
	slow("waiting for server backends to be idle")
	w.checkTable(cs)

	// The pool still serves new clients, all its servers at once.
	runParallel(3*poolSize, 3*poolSize, func(i int) error {
		c, err := w.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		var n int
		if err := tx.QueryRow(ctx, "SELECT $1::int + 1 FROM pg_sleep(0.1)", i).Scan(&n); err != nil {
			return err
		}
		if n != i+1 {
			return fmt.Errorf("new client %d: got %d, want %d", i, n, i+1)
		}
		return tx.Commit(ctx)
	}, t)

	slow("new clients")
	// sluice's goroutines come back to what they were before the clients.
	if againstPostgres {
		return
	}
	got := settledGoroutines(baseline + 3)
	t.Logf("%d goroutines after every client left", got)
	if got > baseline+3 {
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("%d goroutines after every client left, %d before the clients came:\n%s", got, baseline, b.String())
	}
}

// monitor is a few connections straight to Postgres as the superuser, shared by goroutines.
type monitor struct{ conns chan *pgx.Conn }

func newMonitor(t *testing.T, n int) *monitor {
	m := &monitor{conns: make(chan *pgx.Conn, n)}
	for i := 0; i < n; i++ {
		m.conns <- direct(t)
	}
	return m
}

func (m *monitor) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c := <-m.conns
	defer func() { m.conns <- c }()
	return c.Exec(ctx, sql, args...)
}

// QueryRow runs a query that returns one row and scans it.
func (m *monitor) QueryRow(ctx context.Context, sql string, args ...any) monitorRow {
	return monitorRow{m, ctx, sql, args}
}

type monitorRow struct {
	m    *monitor
	ctx  context.Context
	sql  string
	args []any
}

func (r monitorRow) Scan(dst ...any) error {
	c := <-r.m.conns
	defer func() { r.m.conns <- c }()
	return c.QueryRow(r.ctx, r.sql, r.args...).Scan(dst...)
}

// Collect runs a query and hands each row to fn.
func (m *monitor) Collect(ctx context.Context, sql string, fn func(pgx.Rows) error, args ...any) error {
	c := <-m.conns
	defer func() { m.conns <- c }()
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// checkAdmin checks through the admin console that sluice holds no client and hands out no server.
func (w *chaosWorld) checkAdmin() {
	t := w.t
	admin := connectAdmin(t, w.s, "pgcat")
	checkFor(t, 15*time.Second, func() error {
		cols, rows := adminQuery(t, admin, "SHOW POOLS")
		for _, r := range rows {
			if column(t, cols, r, "database") != appDB {
				continue
			}
			for _, k := range []string{"cl_idle", "cl_active", "cl_waiting", "sv_active"} {
				if v := column(t, cols, r, k); v != "0" {
					return fmt.Errorf("SHOW POOLS: %s = %s after every client left", k, v)
				}
			}
		}
		cols, rows = adminQuery(t, admin, "SHOW CLIENTS")
		for _, r := range rows {
			if column(t, cols, r, "database") == appDB {
				return fmt.Errorf("SHOW CLIENTS lists %v after every client left", r)
			}
		}
		cols, rows = adminQuery(t, admin, "SHOW SERVERS")
		for _, r := range rows {
			if column(t, cols, r, "state") != "idle" {
				return fmt.Errorf("SHOW SERVERS: server %v is not idle", r)
			}
		}
		return nil
	})
}

// settledGoroutines waits up to 20 s for the goroutine count to come down to at most want and
// returns it; with want 0, it waits for the count to stop changing.
func settledGoroutines(want int) int {
	deadline := time.Now().Add(20 * time.Second)
	last, stable := runtime.NumGoroutine(), 0
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := runtime.NumGoroutine()
		if want > 0 && n <= want {
			return n
		}
		if n == last {
			stable++
			if want == 0 && stable >= 10 {
				return n
			}
		} else {
			last, stable = n, 0
		}
	}
	return runtime.NumGoroutine()
}

// chaosSettings are the reported settings a client SETs: sluice keeps each client's own values
// on whatever server it gets (DESIGN §2, ParameterStatus), so no client may see another's.
var chaosSettings = []string{"application_name", "TimeZone", "DateStyle", "IntervalStyle"}

var chaosValues = map[string][]string{
	"TimeZone":      {"UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York", "Australia/Adelaide"},
	"DateStyle":     {"ISO, MDY", "ISO, DMY", "SQL, DMY", "Postgres, MDY", "German, DMY"},
	"IntervalStyle": {"postgres", "iso_8601", "sql_standard", "postgres_verbose"},
}

// chaosWorld is what the clients of TestChaos share.
type chaosWorld struct {
	t        *testing.T
	s        *Sluice
	mon      *monitor // straight to Postgres as the superuser
	defaults map[string]string

	errs    firstErrors
	kills   atomic.Int64 // servers killed with pg_terminate_backend
	losses  atomic.Int64 // client connections that failed for a server's death
	cancels atomic.Int64
	lossMu  sync.Mutex
	lossLog []string
}

// dial opens a client connection through sluice. A cancelled context sends a cancel request and
// waits for it: only if the cancel is lost does pgx give up on the connection, after 20 s.
func (w *chaosWorld) dial(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(w.s.URL())
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 30 * time.Second
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 20 * time.Second}
	}
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// killer terminates a random server backend of the app user every one to three seconds.
func (w *chaosWorld) killer(rng *rand.Rand, stop <-chan struct{}) {
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))):
		}
		var pids []int32
		err := w.mon.Collect(ctx, `SELECT pid FROM pg_stat_activity
			WHERE usename = $1 AND backend_type = 'client backend' ORDER BY pid`, func(r pgx.Rows) error {
			var pid int32
			err := r.Scan(&pid)
			pids = append(pids, pid)
			return err
		}, appUser)
		if err != nil {
			w.errs.add("killer: %v", err)
			return
		}
		if len(pids) == 0 {
			continue
		}
		pid := pids[rng.IntN(len(pids))]
		var ok bool
		if err := w.mon.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil {
			w.errs.add("killer: %v", err)
			return
		}
		if ok {
			w.kills.Add(1)
		}
	}
}

// chaosClient is one client of TestChaos and what it knows it committed.
type chaosClient struct {
	w    *chaosWorld
	id   int
	rng  *rand.Rand
	conn *pgx.Conn
	ops  int64
	seq  int64 // tags issued

	// Tags of rows this client wrote, by what must have become of them.
	expected  map[int64]int  // committed: that many rows
	uncertain map[int64]int  // the connection was lost while it committed: all or none
	never     map[int64]bool // rolled back or never committed
	inflight  map[int64]int  // being committed by the current operation

	settings map[string]string // what SHOW must say on this connection
	stmt     bool              // the connection has prepared "chaos_stmt"
	cancelN  int
}

// chaosViolation is a result that is wrong: always a failure, whatever else happened.
type chaosViolation struct{ msg string }

func (v *chaosViolation) Error() string { return v.msg }

func violation(format string, args ...any) error {
	return &chaosViolation{fmt.Sprintf(format, args...)}
}

type chaosOp struct {
	name   string
	weight int
	run    func(c *chaosClient, ctx context.Context) error
}

var chaosOps = []chaosOp{
	{"simple", 5, (*chaosClient).opSimple},
	{"simple write", 3, (*chaosClient).opSimpleWrite},
	{"extended", 6, (*chaosClient).opExtended},
	{"named statement", 4, (*chaosClient).opNamed},
	{"shared statement name", 2, (*chaosClient).opSharedName},
	{"pipeline", 3, (*chaosClient).opPipeline},
	{"batch", 2, (*chaosClient).opBatch},
	{"transaction", 8, (*chaosClient).opTransaction},
	{"set", 3, (*chaosClient).opSet},
	{"show", 3, (*chaosClient).opShow},
	{"copy", 3, (*chaosClient).opCopy},
	{"cancel", 1, (*chaosClient).opCancel},
	{"idle cancel", 1, (*chaosClient).opIdleCancel},
	{"verify", 2, (*chaosClient).opVerify},
	{"abrupt", 3, (*chaosClient).opAbrupt},
	{"query then terminate", 1, (*chaosClient).opQueryTerminate},
	{"racing cancel", 2, (*chaosClient).opRacingCancel},
	{"errors", 3, (*chaosClient).opErrors},
	{"flushed batch", 2, (*chaosClient).opFlushed},
	{"copy failures", 2, (*chaosClient).opCopyFailures},
	{"protocol", 3, (*chaosClient).opProtocol},
	{"skipped parse", 1, (*chaosClient).opSkippedParse},
	{"slow reader", 1, (*chaosClient).opSlowReader},
	{"reconnect", 1, (*chaosClient).opReconnect},
}

func (c *chaosClient) run(end time.Time) {
	total := 0
	for _, op := range chaosOps {
		total += op.weight
	}
	for time.Now().Before(end) {
		if c.conn == nil {
			if err := c.connect(); err != nil {
				if !c.lost("connect", err) {
					return
				}
				continue
			}
		}
		n := c.rng.IntN(total)
		op := chaosOps[0]
		for _, o := range chaosOps {
			if n < o.weight {
				op = o
				break
			}
			n -= o.weight
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := op.run(c, ctx)
		cancel()
		c.ops++
		if err == nil {
			if len(c.inflight) > 0 {
				c.w.errs.add("client %d: %s left tags in flight: %v", c.id, op.name, c.inflight)
				return
			}
			continue
		}
		if !c.lost(op.name, err) {
			return
		}
	}
}

// lost handles an operation's error. A lost connection (a killed server) is counted, the
// operation's commits in flight become uncertain and the client reconnects; it returns true.
// Any other error is a failure of the test; it returns false and the client stops.
func (c *chaosClient) lost(op string, err error) bool {
	if c.conn != nil && !isConnectionLoss(c.conn.PgConn(), err) || c.conn == nil && !isConnectionLoss(nil, err) {
		c.w.errs.add("client %d, operation %q: %v", c.id, op, err)
		return false
	}
	c.w.losses.Add(1)
	c.w.lossMu.Lock()
	c.w.lossLog = append(c.w.lossLog, fmt.Sprintf("client %d %s: %v", c.id, op, err))
	c.w.lossMu.Unlock()
	for tag, n := range c.inflight {
		c.uncertain[tag] = n
	}
	clear(c.inflight)
	if c.conn != nil {
		_ = c.conn.Close(context.Background())
		c.conn = nil
	}
	return true
}

// isConnectionLoss reports whether err is how a client learns that its server died: one of the
// errors of a terminated backend or a lost connection, or the connection closing under it.
func isConnectionLoss(pc *pgconn.PgConn, err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false // a hang
	}
	var v *chaosViolation
	if errors.As(err, &v) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "08006", "08P01", "08003", "08000":
			return true
		}
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	return pc != nil && pc.IsClosed()
}

func (c *chaosClient) connect() error {
	conn, err := c.w.dial(context.Background())
	if err != nil {
		return err
	}
	c.conn = conn
	c.stmt = false
	c.settings = map[string]string{}
	for _, name := range chaosSettings {
		c.settings[name] = c.w.defaults[name]
		if v := conn.PgConn().ParameterStatus(name); v != c.w.defaults[name] {
			return violation("client %d logged in with %s = %q, want %q", c.id, name, v, c.w.defaults[name])
		}
	}
	return nil
}

// newTag returns a tag no other client uses.
func (c *chaosClient) newTag() int64 {
	c.seq++
	return int64(c.id)*1_000_000_000 + c.seq
}

// insertSQL is an INSERT of n rows of tag for client id as literal SQL.
func insertSQL(id int, tag int64, from, n int, pending bool) string {
	return fmt.Sprintf(`INSERT INTO chaos_rows (client, tag, seq, val, pending)
		SELECT %d, %d, g, '%d-%d-' || g, %t FROM generate_series(%d, %d) g`, id, tag, id, tag, pending, from, from+n-1)
}

// committed records that the operation in flight committed its rows.
func (c *chaosClient) committed() {
	for tag, n := range c.inflight {
		c.expected[tag] = n
	}
	clear(c.inflight)
}

// rolledBack records that the operation in flight committed nothing.
func (c *chaosClient) rolledBack() {
	for tag := range c.inflight {
		c.never[tag] = true
	}
	clear(c.inflight)
}

func wantCode(err error, code, what string) error {
	if err == nil {
		return violation("%s succeeded, want error %s", what, code)
	}
	if codeOf(err) != code {
		return fmt.Errorf("%s: want error %s: %w", what, code, err)
	}
	return nil
}

// opSimple runs a multi-statement simple query and checks each of its results.
func (c *chaosClient) opSimple(ctx context.Context) error {
	k := c.rng.IntN(1000)
	sql := fmt.Sprintf("SELECT %d AS a; SELECT 'chaos-%d'::text AS b, %d + 1 AS c; SELECT current_setting('TimeZone'), current_setting('application_name')", k, c.id, k)
	res, err := c.conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 3 {
		return violation("%d results, want 3", len(res))
	}
	got := [][]string{}
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
		if len(r.Rows) != 1 {
			return violation("%q: %d rows, want 1", sql, len(r.Rows))
		}
		var row []string
		for _, v := range r.Rows[0] {
			row = append(row, string(v))
		}
		got = append(got, row)
	}
	want := [][]string{{strconv.Itoa(k)}, {fmt.Sprintf("chaos-%d", c.id), strconv.Itoa(k + 1)},
		{c.settings["TimeZone"], c.settings["application_name"]}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return violation("%q: got %q, want %q", sql, got, want)
	}
	return nil
}

// opSimpleWrite writes rows in one multi-statement query (one implicit transaction), sometimes
// with an error in the middle that must undo the statements before it.
func (c *chaosClient) opSimpleWrite(ctx context.Context) error {
	tag, n := c.newTag(), 1+c.rng.IntN(5)
	fail := c.rng.IntN(3) == 0
	c.inflight[tag] = 2 * n
	mid := fmt.Sprintf("SELECT count(*) FROM chaos_rows WHERE tag = %d", tag)
	if fail {
		mid = "SELECT 1/0"
	}
	sql := insertSQL(c.id, tag, 1, n, false) + ";" + mid + ";" + insertSQL(c.id, tag, n+1, n, false) +
		fmt.Sprintf("; SELECT count(*) FROM chaos_rows WHERE tag = %d", tag)
	res, err := c.conn.PgConn().Exec(ctx, sql).ReadAll()
	if fail {
		if err := wantCode(err, "22012", "a query with 1/0"); err != nil {
			return err
		}
		c.rolledBack()
		return nil
	}
	if err != nil {
		return err
	}
	if len(res) != 4 || len(res[3].Rows) != 1 || string(res[3].Rows[0][0]) != strconv.Itoa(2*n) ||
		string(res[1].Rows[0][0]) != strconv.Itoa(n) {
		return violation("multi-statement write of %d+%d rows: unexpected results %v", n, n, resultsText(res))
	}
	c.committed()
	return nil
}

func resultsText(res []*pgconn.Result) string {
	var b strings.Builder
	for _, r := range res {
		fmt.Fprintf(&b, "[%s:", r.CommandTag)
		for _, row := range r.Rows {
			for _, v := range row {
				fmt.Fprintf(&b, " %s", v)
			}
			b.WriteString(";")
		}
		b.WriteString("]")
	}
	return b.String()
}

var chaosExecModes = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
}

// opExtended runs parameterized queries shared by every client, in a random exec mode: named
// statements from pgx's cache, or the unnamed statement.
func (c *chaosClient) opExtended(ctx context.Context) error {
	mode := chaosExecModes[c.rng.IntN(len(chaosExecModes))]
	a, b := c.rng.IntN(1000), c.rng.IntN(1000)
	switch c.rng.IntN(3) {
	case 0:
		var got int
		if err := c.conn.QueryRow(ctx, "SELECT $1::int * 1000 + $2::int", mode, a, b).Scan(&got); err != nil {
			return err
		}
		if got != a*1000+b {
			return violation("SELECT %d * 1000 + %d (%v) = %d", a, b, mode, got)
		}
	case 1:
		var got string
		if err := c.conn.QueryRow(ctx, "SELECT $1::text || ':' || $2::int", mode, fmt.Sprintf("client-%d", c.id), b).Scan(&got); err != nil {
			return err
		}
		if want := fmt.Sprintf("client-%d:%d", c.id, b); got != want {
			return violation("concatenation (%v) = %q, want %q", mode, got, want)
		}
	default:
		rows, err := c.conn.Query(ctx, "SELECT g, $1::int FROM generate_series(1, $2::int) g", mode, c.id, a+1)
		if err != nil {
			return err
		}
		i := 0
		for rows.Next() {
			var g, id int
			if err := rows.Scan(&g, &id); err != nil {
				return err
			}
			i++
			if g != i || id != c.id {
				rows.Close()
				return violation("row %d of generate_series (%v): %d, %d; want %d, %d", i, mode, g, id, i, c.id)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if i != a+1 {
			return violation("generate_series(1, %d) (%v): %d rows", a+1, mode, i)
		}
	}
	return nil
}

// opNamed uses "chaos_stmt", a statement every client prepares under the same name with its own
// text, kept across operations and sometimes deallocated.
func (c *chaosClient) opNamed(ctx context.Context) error {
	pc := c.conn.PgConn()
	if !c.stmt {
		if _, err := pc.Prepare(ctx, "chaos_stmt", fmt.Sprintf("SELECT $1::int * 1000 + %d", c.id), nil); err != nil {
			return err
		}
		c.stmt = true
	}
	k := c.rng.IntN(1000)
	res := pc.ExecPrepared(ctx, "chaos_stmt", [][]byte{[]byte(strconv.Itoa(k))}, nil, nil).Read()
	if res.Err != nil {
		return res.Err
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != strconv.Itoa(k*1000+c.id) {
		return violation("chaos_stmt(%d): %v, want %d", k, res.Rows, k*1000+c.id)
	}
	if c.rng.IntN(3) == 0 {
		if err := pc.Deallocate(ctx, "chaos_stmt"); err != nil {
			return err
		}
		c.stmt = false
		res := pc.ExecPrepared(ctx, "chaos_stmt", [][]byte{[]byte("1")}, nil, nil).Read()
		if err := wantCode(res.Err, "26000", "a deallocated statement"); err != nil {
			return err
		}
	}
	return nil
}

// opSharedName prepares "chaos_s2" with a text that changes every time, uses it in a
// transaction or outside one, and deallocates it: every client does the same with its texts.
func (c *chaosClient) opSharedName(ctx context.Context) error {
	pc := c.conn.PgConn()
	n := c.rng.IntN(50) // few texts, so that clients share some of them
	tx := c.rng.IntN(2) == 0
	if tx {
		if _, err := pc.Exec(ctx, "BEGIN").ReadAll(); err != nil {
			return err
		}
	}
	if _, err := pc.Prepare(ctx, "chaos_s2", fmt.Sprintf("SELECT $1::int + %d, $2::text", n), nil); err != nil {
		return err
	}
	// Preparing the name again, without a Close, is an error, as in Postgres.
	_, err := pc.Prepare(ctx, "chaos_s2", "SELECT 1", nil)
	if err := wantCode(err, "42P05", "a second Parse of chaos_s2"); err != nil {
		return err
	}
	if tx {
		// The error aborted the transaction.
		res := pc.ExecPrepared(ctx, "chaos_s2", [][]byte{[]byte("1"), []byte("x")}, nil, nil).Read()
		if err := wantCode(res.Err, "25P02", "a statement in an aborted transaction"); err != nil {
			return err
		}
		if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			return err
		}
	}
	k := c.rng.IntN(1000)
	res := pc.ExecPrepared(ctx, "chaos_s2", [][]byte{[]byte(strconv.Itoa(k)), []byte(strconv.Itoa(c.id))}, nil, nil).Read()
	if res.Err != nil {
		return res.Err
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != strconv.Itoa(k+n) || string(res.Rows[0][1]) != strconv.Itoa(c.id) {
		return violation("chaos_s2 (SELECT $1 + %d, $2)(%d, %d): %q", n, k, c.id, res.Rows)
	}
	return pc.Deallocate(ctx, "chaos_s2")
}

// opPipeline sends three implicit transactions, each ended by its own Sync, in one pipeline:
// the second fails in the middle. The first and third must commit, the second not at all.
func (c *chaosClient) opPipeline(ctx context.Context) error {
	ta, tb, tc := c.newTag(), c.newTag(), c.newTag()
	c.inflight[ta], c.inflight[tc] = 2, 1
	c.never[tb] = true
	p := c.conn.PgConn().StartPipeline(ctx)
	defer p.Close()
	ins := func(tag int64, seq int) {
		p.SendQueryParams("INSERT INTO chaos_rows (client, tag, seq, val) VALUES ($1, $2, $3, $4)",
			[][]byte{[]byte(strconv.Itoa(c.id)), []byte(strconv.FormatInt(tag, 10)), []byte(strconv.Itoa(seq)),
				[]byte(fmt.Sprintf("%d-%d-%d", c.id, tag, seq))}, nil, nil, nil)
	}
	ins(ta, 1)
	ins(ta, 2)
	p.SendPipelineSync()
	ins(tb, 1)
	p.SendQueryParams("SELECT 1/$1::int", [][]byte{[]byte("0")}, nil, nil, nil)
	ins(tb, 2)
	p.SendPipelineSync()
	ins(tc, 1)
	p.SendQueryParams("SELECT count(*) FROM chaos_rows WHERE tag = $1 OR tag = $2",
		[][]byte{[]byte(strconv.FormatInt(ta, 10)), []byte(strconv.FormatInt(tb, 10))}, nil, nil, nil)
	p.SendPipelineSync()
	if err := p.Flush(); err != nil {
		return err
	}
	// Expected: 2 results, sync; 1 result, error; sync; 2 results, sync.
	next := func() (any, error) {
		r, err := p.GetResults()
		if rr, ok := r.(*pgconn.ResultReader); ok {
			res := rr.Read()
			return res, res.Err
		}
		return r, err
	}
	for i := 0; i < 2; i++ {
		r, err := next()
		if err != nil {
			return err
		}
		if res, ok := r.(*pgconn.Result); !ok || res.CommandTag.String() != "INSERT 0 1" {
			return violation("pipeline segment 1, result %d: %#v", i, r)
		}
	}
	if r, err := next(); err != nil {
		return err
	} else if _, ok := r.(*pgconn.PipelineSync); !ok {
		return violation("pipeline segment 1: %#v, want its sync", r)
	}
	c.expected[ta] = 2
	delete(c.inflight, ta)
	r, err := next()
	if err != nil {
		return err
	}
	if res, ok := r.(*pgconn.Result); !ok || res.CommandTag.String() != "INSERT 0 1" {
		return violation("pipeline segment 2, first insert: %#v", r)
	}
	r, err = next()
	if err := wantCode(err, "22012", "pipeline segment 2, 1/0"); err != nil {
		return err
	}
	_ = r
	// The rest of the segment is skipped up to its Sync.
	for {
		r, err := next()
		if err != nil {
			if isConnectionLoss(c.conn.PgConn(), err) {
				return err
			}
			continue // pgx reports the skipped request's absence as an error
		}
		if _, ok := r.(*pgconn.PipelineSync); ok {
			break
		}
		if r == nil {
			return violation("pipeline segment 2: no sync")
		}
	}
	r, err = next()
	if err != nil {
		return err
	}
	if res, ok := r.(*pgconn.Result); !ok || res.CommandTag.String() != "INSERT 0 1" {
		return violation("pipeline segment 3, insert: %#v", r)
	}
	r, err = next()
	if err != nil {
		return err
	}
	if res, ok := r.(*pgconn.Result); !ok || len(res.Rows) != 1 || string(res.Rows[0][0]) != "2" {
		return violation("pipeline segment 3: count of segment 1 and 2 rows: %#v, want 2", r)
	}
	if r, err := next(); err != nil {
		return err
	} else if _, ok := r.(*pgconn.PipelineSync); !ok {
		return violation("pipeline segment 3: %#v, want its sync", r)
	}
	c.committed()
	return p.Close()
}

// opBatch sends a pgx batch (one Sync): with an error in it, nothing of it commits.
func (c *chaosClient) opBatch(ctx context.Context) error {
	tag := c.newTag()
	fail := c.rng.IntN(2) == 0
	c.inflight[tag] = 2
	b := &pgx.Batch{}
	ins := "INSERT INTO chaos_rows (client, tag, seq, val) VALUES ($1, $2, $3, $4)"
	b.Queue(ins, c.id, tag, 1, fmt.Sprintf("%d-%d-1", c.id, tag))
	if fail {
		b.Queue("SELECT 1/$1::int", 0)
	} else {
		b.Queue("SELECT count(*) FROM chaos_rows WHERE tag = $1", tag)
	}
	b.Queue(ins, c.id, tag, 2, fmt.Sprintf("%d-%d-2", c.id, tag))
	br := c.conn.SendBatch(ctx, b)
	_, err1 := br.Exec()
	var n int
	err2 := br.QueryRow().Scan(&n)
	_, err3 := br.Exec()
	err := br.Close()
	if fail {
		for _, e := range []error{err1, err2, err3, err} {
			if e != nil && isConnectionLoss(c.conn.PgConn(), e) {
				return e
			}
		}
		if err1 != nil {
			return err1
		}
		if err := wantCode(err2, "22012", "a batch with 1/0"); err != nil {
			return err
		}
		c.rolledBack()
		return nil
	}
	for _, e := range []error{err1, err2, err3, err} {
		if e != nil {
			return e
		}
	}
	if n != 1 {
		return violation("batch: count of its first row = %d", n)
	}
	c.committed()
	return nil
}

// opTransaction runs a transaction with savepoints, SET LOCAL, maybe an error, and checks that
// it stays on one server and sees its own rows and no one else's uncommitted ones.
func (c *chaosClient) opTransaction(ctx context.Context) error {
	mode := chaosExecModes[c.rng.IntN(len(chaosExecModes))]
	conn := c.conn
	exec := func(sql string, args ...any) error {
		_, err := conn.Exec(ctx, sql, append([]any{mode}, args...)...)
		return err
	}
	scan := func(sql string, dst []any, args ...any) error {
		return conn.QueryRow(ctx, sql, append([]any{mode}, args...)...).Scan(dst...)
	}
	tag, n := c.newTag(), 1+c.rng.IntN(20)
	c.inflight[tag] = n
	if err := exec("BEGIN"); err != nil {
		return err
	}
	var pid int
	if err := scan("SELECT pg_backend_pid()", []any{&pid}); err != nil {
		return err
	}
	samePID := func(where string) error {
		var p int
		if err := scan("SELECT pg_backend_pid()", []any{&p}); err != nil {
			return err
		}
		if p != pid {
			return violation("transaction moved from server %d to %d (%s)", pid, p, where)
		}
		return nil
	}
	if err := exec(insertSQL(c.id, tag, 1, n, true)); err != nil {
		return err
	}
	// Own rows visible, nobody else's uncommitted ones.
	seen := func(want int) error {
		var mine, others int
		if err := scan("SELECT count(*) FILTER (WHERE tag = $1), count(*) FILTER (WHERE tag <> $1) FROM chaos_rows WHERE pending",
			[]any{&mine, &others}, tag); err != nil {
			return err
		}
		if mine != want || others != 0 {
			return violation("inside a transaction: %d of its %d uncommitted rows, and %d uncommitted rows of others", mine, want, others)
		}
		return nil
	}
	if err := seen(n); err != nil {
		return err
	}
	if c.rng.IntN(2) == 0 {
		tz := chaosValues["TimeZone"][c.rng.IntN(len(chaosValues["TimeZone"]))]
		wm := fmt.Sprintf("%dkB", 64+c.rng.IntN(900)) // below 1024: Postgres shows 1024kB as 1MB
		if err := exec(fmt.Sprintf("SET LOCAL TimeZone = '%s'", tz)); err != nil {
			return err
		}
		if err := exec(fmt.Sprintf("SET LOCAL work_mem = '%s'", wm)); err != nil {
			return err
		}
		var gtz, gwm string
		if err := scan("SELECT current_setting('TimeZone'), current_setting('work_mem')", []any{&gtz, &gwm}); err != nil {
			return err
		}
		if gtz != tz || gwm != wm {
			return violation("after SET LOCAL TimeZone %q, work_mem %q: %q, %q", tz, wm, gtz, gwm)
		}
	}
	if c.rng.IntN(2) == 0 {
		doomed := c.newTag()
		c.never[doomed] = true
		if err := exec("SAVEPOINT sp"); err != nil {
			return err
		}
		if err := exec(insertSQL(c.id, doomed, 1, 3, true)); err != nil {
			return err
		}
		if c.rng.IntN(2) == 0 {
			err := exec("SELECT 1/0")
			if err := wantCode(err, "22012", "1/0 in a savepoint"); err != nil {
				return err
			}
		}
		if err := exec("ROLLBACK TO SAVEPOINT sp"); err != nil {
			return err
		}
		if err := exec("RELEASE SAVEPOINT sp"); err != nil {
			return err
		}
	}
	if err := seen(n); err != nil {
		return err
	}
	if err := samePID("after the savepoint"); err != nil {
		return err
	}
	switch c.rng.IntN(4) {
	case 0: // an error aborts the transaction
		err := exec("SELECT 1/0")
		if err := wantCode(err, "22012", "1/0 in a transaction"); err != nil {
			return err
		}
		err = exec("SELECT 1")
		if err := wantCode(err, "25P02", "a statement after an error in a transaction"); err != nil {
			return err
		}
		if err := exec("ROLLBACK"); err != nil {
			return err
		}
		c.rolledBack()
	case 1:
		if err := exec("ROLLBACK"); err != nil {
			return err
		}
		c.rolledBack()
	default:
		if err := exec("UPDATE chaos_rows SET pending = false WHERE tag = $1", tag); err != nil {
			return err
		}
		if err := exec("COMMIT"); err != nil {
			return err
		}
		c.committed()
	}
	// SET LOCAL ended with the transaction.
	var tz, wm string
	if err := scan("SELECT current_setting('TimeZone'), current_setting('work_mem')", []any{&tz, &wm}); err != nil {
		return err
	}
	if tz != c.settings["TimeZone"] {
		return violation("after the transaction, TimeZone = %q, want %q", tz, c.settings["TimeZone"])
	}
	return nil
}

// opSet sets a reported setting outside a transaction: sluice keeps it for this client.
func (c *chaosClient) opSet(ctx context.Context) error {
	name := chaosSettings[c.rng.IntN(len(chaosSettings))]
	var v string
	if name == "application_name" {
		v = fmt.Sprintf("chaos-%d-%d", c.id, c.rng.IntN(1000))
	} else {
		vals := chaosValues[name]
		v = vals[c.rng.IntN(len(vals))]
	}
	sql := fmt.Sprintf("SET %s TO '%s'", name, v)
	switch c.rng.IntN(4) {
	case 0:
		if _, err := c.conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			return err
		}
	case 1:
		// A SET inside a transaction that rolls back is undone (the server reports the old
		// value again); one that commits stays.
		commit := c.rng.IntN(2) == 0
		end := "ROLLBACK"
		if commit {
			end = "COMMIT"
		}
		if _, err := c.conn.PgConn().Exec(ctx, "BEGIN; "+sql+"; SELECT 1; "+end).ReadAll(); err != nil {
			return err
		}
		if !commit {
			return c.opShow(ctx)
		}
	default:
		if _, err := c.conn.Exec(ctx, sql); err != nil {
			return err
		}
	}
	c.settings[name] = v
	return c.opShow(ctx)
}

// opShow checks every tracked setting is this client's own.
func (c *chaosClient) opShow(ctx context.Context) error {
	var got [4]string
	mode := chaosExecModes[c.rng.IntN(len(chaosExecModes))]
	err := c.conn.QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('TimeZone'),
		current_setting('DateStyle'), current_setting('IntervalStyle')`, mode).Scan(&got[0], &got[1], &got[2], &got[3])
	if err != nil {
		return err
	}
	for i, name := range chaosSettings {
		if got[i] != c.settings[name] {
			return violation("%s = %q, want this client's %q (%v)", name, got[i], c.settings[name], mode)
		}
		if ps := c.conn.PgConn().ParameterStatus(name); ps != c.settings[name] {
			return violation("ParameterStatus %s = %q, want %q", name, ps, c.settings[name])
		}
	}
	return nil
}

// opCopy copies rows in with COPY FROM STDIN and reads them back with COPY TO STDOUT.
func (c *chaosClient) opCopy(ctx context.Context) error {
	tag, n := c.newTag(), 1+c.rng.IntN(3000)
	var in bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&in, "%d\t%d\t%d\t%d-%d-%d\n", c.id, tag, i, c.id, tag, i)
	}
	want := in.String()
	c.inflight[tag] = n
	ct, err := c.conn.PgConn().CopyFrom(ctx, &in, "COPY chaos_rows (client, tag, seq, val) FROM STDIN")
	if err != nil {
		return err
	}
	if ct.RowsAffected() != int64(n) {
		return violation("COPY FROM of %d rows: %s", n, ct)
	}
	c.committed()
	var out bytes.Buffer
	ct, err = c.conn.PgConn().CopyTo(ctx, &out,
		fmt.Sprintf("COPY (SELECT client, tag, seq, val FROM chaos_rows WHERE tag = %d ORDER BY seq) TO STDOUT", tag))
	if err != nil {
		return err
	}
	if ct.RowsAffected() != int64(n) || out.String() != want {
		return violation("COPY TO of %d rows: %s, %d bytes, want %d", n, ct, out.Len(), len(want))
	}
	return nil
}

// opCancel cancels this client's pg_sleep once it sleeps: only it fails, with 57014. (Once it
// sleeps: a cancel that reaches a server while it parses the query, or between two messages of a
// batch, can land on whatever the server runs next, which in a pool may be another client's.)
func (c *chaosClient) opCancel(ctx context.Context) error {
	c.cancelN++
	marker := fmt.Sprintf("chaos-cancel-%d-%d", c.id, c.cancelN)
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := make(chan error, 1)
	go func() {
		for {
			var n int
			err := c.w.mon.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE usename = $1 AND state = 'active' AND wait_event = 'PgSleep' AND query LIKE '%' || $2 || '%'`,
				appUser, marker).Scan(&n)
			if err != nil || n > 0 {
				if err == nil {
					cancel()
				}
				watch <- err
				return
			}
			select {
			case <-ctx.Done():
				watch <- ctx.Err()
				return
			case <-qctx.Done():
				watch <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	mode := chaosExecModes[c.rng.IntN(len(chaosExecModes))]
	_, err := c.conn.Exec(qctx, fmt.Sprintf("SELECT pg_sleep(30) /* %s */", marker), mode)
	cancel()
	if werr := <-watch; werr != nil {
		return fmt.Errorf("watching for the query to cancel: %w", werr)
	}
	if isConnectionLoss(c.conn.PgConn(), err) && !errors.Is(err, context.Canceled) {
		return err
	}
	if codeOf(err) != "57014" {
		return violation("a cancelled pg_sleep: %v, want error 57014", err)
	}
	c.w.cancels.Add(1)
	if c.conn.PgConn().IsClosed() {
		return violation("the connection closed after a cancel")
	}
	return nil
}

// opIdleCancel sends a cancel request while the client runs nothing: it must cancel nothing,
// neither this client's next query nor another client's on the server this one used last.
func (c *chaosClient) opIdleCancel(ctx context.Context) error {
	if err := c.conn.PgConn().CancelRequest(ctx); err != nil {
		return err
	}
	var n int
	if err := c.conn.QueryRow(ctx, "SELECT $1::int FROM pg_sleep(0.01)", c.id).Scan(&n); err != nil {
		return err
	}
	if n != c.id {
		return violation("SELECT %d after an idle cancel request: %d", c.id, n)
	}
	return nil
}

// opVerify reads back every row of this client: exactly what it committed.
func (c *chaosClient) opVerify(ctx context.Context) error {
	rows, err := c.conn.Query(ctx, `SELECT tag, count(*), count(*) FILTER (WHERE pending),
		count(*) FILTER (WHERE val <> client || '-' || tag || '-' || seq), count(DISTINCT seq), max(seq)
		FROM chaos_rows WHERE client = $1 GROUP BY tag`, c.id)
	if err != nil {
		return err
	}
	got := map[int64]int{}
	for rows.Next() {
		var tag int64
		var n, pending, bad, distinct, max int
		if err := rows.Scan(&tag, &n, &pending, &bad, &distinct, &max); err != nil {
			return err
		}
		if pending > 0 || bad > 0 || distinct != n || max != n {
			rows.Close()
			return violation("tag %d: %d rows, %d uncommitted, %d wrong values, seqs %d distinct up to %d",
				tag, n, pending, bad, distinct, max)
		}
		got[tag] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return c.compare(got)
}

// compare checks the rows found per tag against what this client knows of them.
func (c *chaosClient) compare(got map[int64]int) error {
	for tag, n := range c.expected {
		if got[tag] != n {
			return violation("client %d committed %d rows of tag %d, found %d", c.id, n, tag, got[tag])
		}
	}
	for tag, n := range got {
		_, ok := c.expected[tag]
		switch {
		case ok:
		case c.never[tag]:
			return violation("client %d: %d rows of tag %d, which was never committed", c.id, n, tag)
		case c.uncertain[tag] != 0:
			if n != c.uncertain[tag] {
				return violation("client %d: %d rows of tag %d, whose commit was cut off: want all %d or none", c.id, n, tag, c.uncertain[tag])
			}
		case c.inflight[tag] != 0:
		default:
			return violation("client %d: %d rows of tag %d, which it never wrote", c.id, n, tag)
		}
	}
	return nil
}

// opAbrupt leaves in the middle of something: on its own connection mid-transaction, or on a
// second connection mid-COPY, mid-result, right after a query, or with a Terminate mid-batch.
func (c *chaosClient) opAbrupt(ctx context.Context) error {
	tag := c.newTag()
	c.never[tag] = true
	switch c.rng.IntN(6) {
	case 0: // the client's own connection, inside a transaction
		if _, err := c.conn.Exec(ctx, "BEGIN"); err != nil {
			return err
		}
		if _, err := c.conn.Exec(ctx, insertSQL(c.id, tag, 1, 5, true)); err != nil {
			return err
		}
		_ = c.conn.PgConn().Conn().Close()
		c.conn.Close(ctx)
		c.conn = nil
		return nil
	case 1: // mid-COPY
		return c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
			hc.Frontend.Send(&pgproto3.Query{String: "COPY chaos_rows (client, tag, seq, val) FROM STDIN"})
			if err := hc.Frontend.Flush(); err != nil {
				return err
			}
			if _, err := rawUntil(hc, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CopyInResponse); return ok }); err != nil {
				return err
			}
			for i := 1; i <= 10; i++ {
				hc.Frontend.Send(&pgproto3.CopyData{Data: fmt.Appendf(nil, "%d\t%d\t%d\tx\n", c.id, tag, i)})
			}
			return hc.Frontend.Flush()
		})
	case 2: // mid-result
		return c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
			hc.Frontend.Send(&pgproto3.Query{String: "SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g"})
			if err := hc.Frontend.Flush(); err != nil {
				return err
			}
			rowsSeen := 0
			_, err := rawUntil(hc, func(m pgproto3.BackendMessage) bool {
				if _, ok := m.(*pgproto3.DataRow); ok {
					rowsSeen++
				}
				return rowsSeen == 10
			})
			return err
		})
	case 3: // right after sending, without reading
		return c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
			hc.Frontend.Send(&pgproto3.Query{String: "BEGIN; " + insertSQL(c.id, tag, 1, 5, true) + "; SELECT pg_sleep(0.05)"})
			return hc.Frontend.Flush()
		})
	case 4: // a Terminate in the middle of a batch
		return c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
			hc.Frontend.Send(&pgproto3.Parse{Query: insertSQL(c.id, tag, 1, 5, false)})
			hc.Frontend.Send(&pgproto3.Bind{})
			hc.Frontend.Send(&pgproto3.Execute{})
			if c.rng.IntN(2) == 0 {
				hc.Frontend.Send(&pgproto3.Flush{})
				if err := hc.Frontend.Flush(); err != nil {
					return err
				}
				if _, err := rawUntil(hc, func(m pgproto3.BackendMessage) bool { _, ok := m.(*pgproto3.CommandComplete); return ok }); err != nil {
					return err
				}
			}
			hc.Frontend.Send(&pgproto3.Terminate{})
			return hc.Frontend.Flush()
		})
	default: // a long query, left running
		return c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
			hc.Frontend.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.3)"})
			return hc.Frontend.Flush()
		})
	}
}

// opQueryTerminate sends an INSERT and a Terminate in one write, on a second connection, and
// leaves without waiting: Postgres runs the INSERT before it reads the Terminate, so the rows
// must be committed (unless a killed server explains their absence).
func (c *chaosClient) opQueryTerminate(ctx context.Context) error {
	tag, n := c.newTag(), 1+c.rng.IntN(5)
	kills := c.w.kills.Load()
	err := c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
		hc.Frontend.Send(&pgproto3.Query{String: insertSQL(c.id, tag, 1, n, false)})
		hc.Frontend.Send(&pgproto3.Terminate{})
		if err := hc.Frontend.Flush(); err != nil {
			return err
		}
		// Postgres closes the connection after the Terminate; so does sluice.
		_, err := io.Copy(io.Discard, hc.Conn)
		return err
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got int
		if err := c.w.mon.QueryRow(ctx, "SELECT count(*) FROM chaos_rows WHERE tag = $1", tag).Scan(&got); err != nil {
			return err
		}
		if got == n {
			c.expected[tag] = n
			return nil
		}
		if got != 0 {
			return violation("query then terminate: %d of %d rows", got, n)
		}
		if time.Now().After(deadline) {
			if c.w.kills.Load() != kills {
				// A killed server may explain it, and counts as this client's loss.
				c.w.losses.Add(1)
				c.w.lossMu.Lock()
				c.w.lossLog = append(c.w.lossLog, fmt.Sprintf("client %d: the INSERT before a Terminate did not run", c.id))
				c.w.lossMu.Unlock()
				c.uncertain[tag] = n
				return nil
			}
			return violation("an INSERT sent just before a Terminate was not run: no row of tag %d after 10 s", tag)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// opRacingCancel runs a short query and sends a cancel request for it at a random moment: before
// it starts, while it runs, or after it ended. This client's query may fail with 57014; nobody
// else's may, even when the cancel arrives as the server goes back to the pool.
func (c *chaosClient) opRacingCancel(ctx context.Context) error {
	pc := c.conn.PgConn()
	done := make(chan error, 1)
	delay := time.Duration(c.rng.IntN(3000)) * time.Microsecond
	go func() {
		time.Sleep(delay)
		done <- pc.CancelRequest(ctx)
	}()
	k := c.rng.IntN(1000)
	res, err := pc.Exec(ctx, fmt.Sprintf("SELECT %d FROM pg_sleep(0.001 * %d)", k, c.rng.IntN(3))).ReadAll()
	if cerr := <-done; cerr != nil {
		return cerr
	}
	if codeOf(err) == "57014" {
		return nil
	}
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != strconv.Itoa(k) {
		return violation("SELECT %d: %s", k, resultsText(res))
	}
	return nil
}

// opErrors makes the server fail in different places: a syntax error in a Parse (unnamed and
// named), an error at Bind (a parameter the type refuses), an empty query, a notice, and a large
// parameter; each time the connection must go on as in Postgres.
func (c *chaosClient) opErrors(ctx context.Context) error {
	mode := chaosExecModes[c.rng.IntN(len(chaosExecModes))]
	which := c.rng.IntN(6)
	if err := c.errorsCase(ctx, mode, which); err != nil {
		return fmt.Errorf("case %d, %v: %w", which, mode, err)
	}
	return nil
}

func (c *chaosClient) errorsCase(ctx context.Context, mode pgx.QueryExecMode, which int) error {
	pc := c.conn.PgConn()
	switch which {
	case 0:
		_, err := c.conn.Exec(ctx, fmt.Sprintf("SELEC %d", c.id), mode)
		if err := wantCode(err, "42601", "a syntax error"); err != nil {
			return err
		}
	case 1:
		name := fmt.Sprintf("chaos_bad_%d", c.rng.IntN(3))
		_, err := pc.Prepare(ctx, name, "SELECT FROM WHERE", nil)
		if err := wantCode(err, "42601", "a Parse with a syntax error"); err != nil {
			return err
		}
		res := pc.ExecPrepared(ctx, name, nil, nil, nil).Read()
		if err := wantCode(res.Err, "26000", "a statement whose Parse failed"); err != nil {
			return err
		}
	case 2:
		var n int
		err := c.conn.QueryRow(ctx, "SELECT $1::int", mode, "not a number").Scan(&n)
		if err := wantCode(err, "22P02", "a bad integer"); err != nil {
			return err
		}
	case 3:
		res, err := pc.Exec(ctx, "").ReadAll()
		if err != nil {
			return err
		}
		if len(res) != 1 || res[0].CommandTag.String() != "" || len(res[0].Rows) != 0 {
			return violation("an empty query: %s", resultsText(res))
		}
		res, err = pc.Exec(ctx, ";;").ReadAll()
		if err != nil {
			return err
		}
	case 4:
		_, err := c.conn.Exec(ctx, fmt.Sprintf("DO $$ BEGIN RAISE NOTICE 'chaos %d'; END $$", c.id), mode)
		if err != nil {
			return err
		}
	default:
		big := strings.Repeat(fmt.Sprintf("%d-", c.id), 20000+c.rng.IntN(200000))
		var got string
		if err := c.conn.QueryRow(ctx, "SELECT $1::text || 'x'", mode, big).Scan(&got); err != nil {
			return err
		}
		if got != big+"x" {
			return violation("a large parameter came back as %d bytes, want %d", len(got), len(big)+1)
		}
	}
	// The connection goes on.
	var n int
	if err := c.conn.QueryRow(ctx, "SELECT $1::int + 1", mode, c.id).Scan(&n); err != nil {
		return err
	}
	if n != c.id+1 {
		return violation("after an error: %d, want %d", n, c.id+1)
	}
	return nil
}

// opFlushed sends the first part of a batch with a Flush and reads its results before the Sync
// (the server stays with this client meanwhile), in a transaction or not, then a Close and a
// Parse of the same statement name with another text in the same batch.
func (c *chaosClient) opFlushed(ctx context.Context) error {
	pc := c.conn.PgConn()
	tag := c.newTag()
	inTx := c.rng.IntN(2) == 0
	if inTx {
		if _, err := pc.Exec(ctx, "BEGIN").ReadAll(); err != nil {
			return err
		}
	}
	c.inflight[tag] = 2
	p := pc.StartPipeline(ctx)
	defer p.Close()
	ins := "INSERT INTO chaos_rows (client, tag, seq, val) VALUES ($1, $2, $3, $1 || '-' || $2 || '-' || $3) RETURNING pg_backend_pid()"
	args := func(seq int) [][]byte {
		return [][]byte{[]byte(strconv.Itoa(c.id)), []byte(strconv.FormatInt(tag, 10)), []byte(strconv.Itoa(seq))}
	}
	p.SendQueryParams(ins, args(1), []uint32{23, 20, 23}, nil, nil)
	p.SendFlushRequest()
	if err := p.Flush(); err != nil {
		return err
	}
	r, err := p.GetResults()
	if err != nil {
		return err
	}
	res := r.(*pgconn.ResultReader).Read()
	if res.Err != nil {
		return res.Err
	}
	if len(res.Rows) != 1 {
		return violation("flushed INSERT RETURNING: %d rows", len(res.Rows))
	}
	pid := string(res.Rows[0][0])
	time.Sleep(time.Duration(c.rng.IntN(20)) * time.Millisecond) // the server must wait for us
	p.SendQueryParams(ins, args(2), []uint32{23, 20, 23}, nil, nil)
	p.SendDeallocate("chaos_flushed")
	k := c.rng.IntN(100)
	p.SendPrepare("chaos_flushed", fmt.Sprintf("SELECT %d + $1::int", k), nil)
	p.SendQueryPrepared("chaos_flushed", [][]byte{[]byte(strconv.Itoa(c.id))}, nil, nil)
	p.SendPipelineSync()
	if err := p.Flush(); err != nil {
		return err
	}
	r, err = p.GetResults()
	if err != nil {
		return err
	}
	res = r.(*pgconn.ResultReader).Read()
	if res.Err != nil {
		return res.Err
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != pid {
		return violation("a batch moved from server %s to %v between its Flush and its Sync", pid, res.Rows)
	}
	if _, err := p.GetResults(); err != nil { // CloseComplete
		return err
	}
	if _, err := p.GetResults(); err != nil { // the statement description
		return err
	}
	r, err = p.GetResults()
	if err != nil {
		return err
	}
	res = r.(*pgconn.ResultReader).Read()
	if res.Err != nil {
		return res.Err
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != strconv.Itoa(k+c.id) {
		return violation("chaos_flushed (SELECT %d + $1)(%d) = %v", k, c.id, res.Rows)
	}
	if r, err := p.GetResults(); err != nil {
		return err
	} else if _, ok := r.(*pgconn.PipelineSync); !ok {
		return violation("flushed batch: %#v, want its sync", r)
	}
	if err := p.Close(); err != nil {
		return err
	}
	if err := pc.Deallocate(ctx, "chaos_flushed"); err != nil {
		return err
	}
	if inTx {
		if c.rng.IntN(2) == 0 {
			if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
				return err
			}
			c.rolledBack()
			return nil
		}
		if _, err := pc.Exec(ctx, "COMMIT").ReadAll(); err != nil {
			return err
		}
	}
	c.committed()
	return nil
}

// opCopyFailures runs COPY FROM STDIN that fails: bad data (22P02), a CopyFail from the client
// (57014), or inside a transaction that rolls back. None of its rows may stay.
func (c *chaosClient) opCopyFailures(ctx context.Context) error {
	pc := c.conn.PgConn()
	tag, n := c.newTag(), 1+c.rng.IntN(500)
	c.never[tag] = true
	var in bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&in, "%d\t%d\t%d\t%d-%d-%d\n", c.id, tag, i, c.id, tag, i)
	}
	copySQL := "COPY chaos_rows (client, tag, seq, val) FROM STDIN"
	switch c.rng.IntN(3) {
	case 0:
		in.WriteString("not a number\t1\t1\tx\n")
		_, err := pc.CopyFrom(ctx, &in, copySQL)
		return wantCode(err, "22P02", "COPY of a bad row")
	case 1:
		r := io.MultiReader(&in, errReader{errors.New("chaos: the client gives up")})
		_, err := pc.CopyFrom(ctx, r, copySQL)
		return wantCode(err, "57014", "COPY ended by CopyFail")
	default:
		if _, err := pc.Exec(ctx, "BEGIN").ReadAll(); err != nil {
			return err
		}
		ct, err := pc.CopyFrom(ctx, &in, copySQL)
		if err != nil {
			return err
		}
		if ct.RowsAffected() != int64(n) {
			return violation("COPY in a transaction: %s, want %d rows", ct, n)
		}
		var got int
		if err := c.conn.QueryRow(ctx, "SELECT count(*) FROM chaos_rows WHERE tag = $1", tag).Scan(&got); err != nil {
			return err
		}
		if got != n {
			return violation("after COPY in a transaction: %d rows, want %d", got, n)
		}
		_, err = pc.Exec(ctx, "ROLLBACK").ReadAll()
		return err
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// rawAbrupt opens a second connection, runs fn on it and closes its socket without a word. An
// error on that connection from a killed server is fine; any other fails the operation.
func (c *chaosClient) rawAbrupt(ctx context.Context, fn func(hc *pgconn.HijackedConn) error) error {
	cfg, err := pgconn.ParseConfig(c.w.s.URL())
	if err != nil {
		return err
	}
	cfg.ConnectTimeout = 30 * time.Second
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return err
	}
	defer hc.Conn.Close()
	_ = hc.Conn.SetDeadline(time.Now().Add(30 * time.Second))
	err = fn(hc)
	if err != nil && isConnectionLoss(nil, err) {
		// Either a killed server, which counts as this client's loss, or the test's problem.
		return err
	}
	return err
}

// opProtocol speaks the protocol itself on a second connection, for what pgx does not do:
// simple queries pipelined without waiting (a whole transaction in one write), a Sync on its
// own, a named portal read in parts with Execute row limits across Syncs inside a transaction,
// and Describe and Close of a named statement. Every reply is checked, in order.
func (c *chaosClient) opProtocol(ctx context.Context) error {
	tag, n := c.newTag(), 1+c.rng.IntN(10)
	c.inflight[tag] = n
	return c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
		fe := hc.Frontend
		fe.Send(&pgproto3.Query{String: "BEGIN"})
		fe.Send(&pgproto3.Query{String: insertSQL(c.id, tag, 1, n, false)})
		fe.Send(&pgproto3.Query{String: fmt.Sprintf("SELECT count(*) FROM chaos_rows WHERE tag = %d", tag)})
		fe.Send(&pgproto3.Query{String: "COMMIT"})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			return err
		}
		rows, err := rawExpect(hc, "CommandComplete", "ReadyForQuery T", "CommandComplete", "ReadyForQuery T",
			"RowDescription", "DataRow", "CommandComplete", "ReadyForQuery T", "CommandComplete", "ReadyForQuery I",
			"ReadyForQuery I")
		if err != nil {
			return err
		}
		if len(rows) != 1 || rows[0] != strconv.Itoa(n) {
			return violation("pipelined transaction: counted %v rows, want %d", rows, n)
		}
		c.committed()

		// A portal read three rows at a time, across Syncs, in a transaction.
		total := 7 + c.rng.IntN(10)
		fe.Send(&pgproto3.Query{String: "BEGIN"})
		fe.Send(&pgproto3.Parse{Query: "SELECT g, $2::int FROM generate_series(1, $1::int) g"})
		fe.Send(&pgproto3.Bind{DestinationPortal: "chaos_portal",
			Parameters: [][]byte{[]byte(strconv.Itoa(total)), []byte(strconv.Itoa(c.id))}})
		fe.Send(&pgproto3.Execute{Portal: "chaos_portal", MaxRows: 3})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			return err
		}
		got, err := rawExpect(hc, "CommandComplete", "ReadyForQuery T", "ParseComplete", "BindComplete",
			"DataRow", "DataRow", "DataRow", "PortalSuspended", "ReadyForQuery T")
		if err != nil {
			return err
		}
		time.Sleep(time.Duration(c.rng.IntN(10)) * time.Millisecond)
		fe.Send(&pgproto3.Execute{Portal: "chaos_portal", MaxRows: 3})
		fe.Send(&pgproto3.Flush{})
		if err := fe.Flush(); err != nil {
			return err
		}
		more, err := rawExpect(hc, "DataRow", "DataRow", "DataRow", "PortalSuspended")
		if err != nil {
			return err
		}
		got = append(got, more...)
		fe.Send(&pgproto3.Execute{Portal: "chaos_portal"})
		fe.Send(&pgproto3.Close{ObjectType: 'P', Name: "chaos_portal"})
		fe.Send(&pgproto3.Sync{})
		fe.Send(&pgproto3.Query{String: "COMMIT"})
		if err := fe.Flush(); err != nil {
			return err
		}
		want := []string{}
		for i := 7; i <= total; i++ {
			want = append(want, "DataRow")
		}
		want = append(want, "CommandComplete", "CloseComplete", "ReadyForQuery T", "CommandComplete", "ReadyForQuery I")
		rest, err := rawExpect(hc, want...)
		if err != nil {
			return err
		}
		got = append(got, rest...)
		for i, v := range got {
			if want := fmt.Sprintf("%d|%d", i+1, c.id); v != want {
				return violation("portal row %d: %q, want %q", i+1, v, want)
			}
		}

		// Describe, Bind, Close of a named statement; a Sync on its own.
		name := fmt.Sprintf("chaos_raw_%d", c.rng.IntN(3))
		fe.Send(&pgproto3.Parse{Name: name, Query: fmt.Sprintf("SELECT $1::int * 10 + %d AS v", c.id%10)})
		fe.Send(&pgproto3.Describe{ObjectType: 'S', Name: name})
		fe.Send(&pgproto3.Sync{})
		fe.Send(&pgproto3.Sync{})
		k := c.rng.IntN(1000)
		fe.Send(&pgproto3.Bind{PreparedStatement: name, Parameters: [][]byte{[]byte(strconv.Itoa(k))}})
		fe.Send(&pgproto3.Describe{ObjectType: 'P'})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Close{ObjectType: 'S', Name: name})
		fe.Send(&pgproto3.Sync{})
		fe.Send(&pgproto3.Bind{PreparedStatement: name})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			return err
		}
		rows, err = rawExpect(hc, "ParseComplete", "ParameterDescription", "RowDescription", "ReadyForQuery I",
			"ReadyForQuery I", "BindComplete", "RowDescription", "DataRow", "CommandComplete", "CloseComplete",
			"ReadyForQuery I", "ErrorResponse 26000", "ReadyForQuery I")
		if err != nil {
			return err
		}
		if len(rows) != 1 || rows[0] != strconv.Itoa(k*10+c.id%10) {
			return violation("%s(%d): %v, want %d", name, k, rows, k*10+c.id%10)
		}
		fe.Send(&pgproto3.Terminate{})
		if err := fe.Flush(); err != nil {
			return err
		}
		return nil
	})
}

// opSkippedParse sends a batch whose unnamed Parse the server skips (an error comes first), then
// a Bind of the unnamed statement: the client may get its own earlier statement (Postgres) or
// 26000 (sluice), never another client's.
func (c *chaosClient) opSkippedParse(ctx context.Context) error {
	return c.rawAbrupt(ctx, func(hc *pgconn.HijackedConn) error {
		fe := hc.Frontend
		// 1/0 when it runs, not when it is planned (as 1/$1 would be, with $1 bound).
		fe.Send(&pgproto3.Parse{Query: "SELECT 1/($1::int - g) FROM generate_series(1, 1) g"})
		fe.Send(&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Parse{Query: fmt.Sprintf("SELECT 'client %d', $1::int", c.id)})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			return err
		}
		if _, err := rawExpect(hc, "ParseComplete", "BindComplete", "ErrorResponse 22012", "ReadyForQuery I"); err != nil {
			return err
		}
		time.Sleep(time.Duration(c.rng.IntN(5)) * time.Millisecond) // another client may take the server
		fe.Send(&pgproto3.Bind{Parameters: [][]byte{[]byte("0")}})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			return err
		}
		for {
			m, err := hc.Frontend.Receive()
			if err != nil {
				return err
			}
			switch m := m.(type) {
			case *pgproto3.DataRow:
				if string(m.Values[0]) != "-1" { // this client's first statement, with 0
					return violation("a Bind of the unnamed statement after a skipped Parse ran another statement: %q", m.Values)
				}
			case *pgproto3.ErrorResponse:
				if m.Code != "26000" {
					return pgconn.ErrorResponseToPgError(m)
				}
			case *pgproto3.ReadyForQuery:
				fe.Send(&pgproto3.Terminate{})
				return fe.Flush()
			}
		}
	})
}

// opSlowReader reads a large result slowly, holding its server while other clients wait: every
// row must come, in order, and be this client's.
func (c *chaosClient) opSlowReader(ctx context.Context) error {
	n := 2000 + c.rng.IntN(20000)
	rows, err := c.conn.Query(ctx, "SELECT g, $2::int, repeat('x', 100) FROM generate_series(1, $1::int) g", n, c.id)
	if err != nil {
		return err
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var g, id int
		var pad string
		if err := rows.Scan(&g, &id, &pad); err != nil {
			return err
		}
		i++
		if g != i || id != c.id || len(pad) != 100 {
			return violation("slow reader, row %d: %d, %d", i, g, id)
		}
		if i%1000 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if i != n {
		return violation("slow reader: %d rows, want %d", i, n)
	}
	return nil
}

// opReconnect leaves politely and logs in again.
func (c *chaosClient) opReconnect(ctx context.Context) error {
	if err := c.conn.Close(ctx); err != nil {
		return err
	}
	c.conn = nil
	return c.connect()
}

// rawExpect reads one message per entry of want, which names its type (without "*pgproto3."),
// followed for a ReadyForQuery by its status and for an ErrorResponse by its SQLSTATE. It skips
// ParameterStatus and NoticeResponse. It returns the DataRows' values, joined by "|".
func rawExpect(hc *pgconn.HijackedConn, want ...string) ([]string, error) {
	var rows []string
	for i := 0; i < len(want); {
		m, err := hc.Frontend.Receive()
		if err != nil {
			return nil, err
		}
		var got string
		switch m := m.(type) {
		case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse:
			continue
		case *pgproto3.ReadyForQuery:
			got = "ReadyForQuery " + string(m.TxStatus)
		case *pgproto3.ErrorResponse:
			got = "ErrorResponse " + m.Code
			if want[i] != got {
				return nil, pgconn.ErrorResponseToPgError(m)
			}
		case *pgproto3.DataRow:
			var vals []string
			for _, v := range m.Values {
				vals = append(vals, string(v))
			}
			rows = append(rows, strings.Join(vals, "|"))
			got = "DataRow"
		default:
			got = strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
		}
		if got != want[i] {
			return nil, violation("message %d: %s, want %s (all: %q)", i, got, want[i], want)
		}
		i++
	}
	return rows, nil
}

// rawUntil receives messages until done says so; an ErrorResponse is returned as an error.
func rawUntil(hc *pgconn.HijackedConn, done func(pgproto3.BackendMessage) bool) (pgproto3.BackendMessage, error) {
	for {
		m, err := hc.Frontend.Receive()
		if err != nil {
			return nil, err
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			return nil, pgconn.ErrorResponseToPgError(e)
		}
		if done(m) {
			return m, nil
		}
	}
}

// checkTable compares the whole table with what the clients committed.
func (w *chaosWorld) checkTable(cs []*chaosClient) {
	t := w.t
	ctx := context.Background()
	got := map[int]map[int64]int{}
	err := w.mon.Collect(ctx, `SELECT client, tag, count(*), count(*) FILTER (WHERE pending),
		count(*) FILTER (WHERE val <> client || '-' || tag || '-' || seq), count(DISTINCT seq), max(seq)
		FROM chaos_rows GROUP BY client, tag`, func(rows pgx.Rows) error {
		var client int
		var tag int64
		var n, pending, bad, distinct, max int
		if err := rows.Scan(&client, &tag, &n, &pending, &bad, &distinct, &max); err != nil {
			return err
		}
		if pending > 0 || bad > 0 || distinct != n || max != n {
			t.Errorf("client %d tag %d: %d rows, %d uncommitted, %d wrong values, seqs %d distinct up to %d",
				client, tag, n, pending, bad, distinct, max)
		}
		if client < 1 || client > len(cs) || tag/1_000_000_000 != int64(client) {
			t.Errorf("rows of tag %d under client %d", tag, client)
			return nil
		}
		if got[client] == nil {
			got[client] = map[int64]int{}
		}
		got[client][tag] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var committed, cut, cutCommitted int
	for _, c := range cs {
		if len(c.inflight) > 0 {
			continue // the client stopped on an error, reported already
		}
		if err := c.compare(got[c.id]); err != nil {
			t.Error(err)
		}
		committed += len(c.expected)
		cut += len(c.uncertain)
		for tag := range c.uncertain {
			if got[c.id][tag] > 0 {
				cutCommitted++
			}
		}
	}
	t.Logf("%d writes committed; %d cut off by a killed server, of which %d had committed", committed, cut, cutCommitted)
	if committed == 0 {
		t.Error("no client committed anything")
	}

}
