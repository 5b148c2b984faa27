package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sluicepg/sluice/examples/webhook/validator"
)

// pgcatPluginBlocks are the [plugins] blocks of pgcat's example pgcat.toml, as pgcat ships
// them, plus a DataGrip catalog query whose answer only the plugin gives.
const pgcatPluginBlocks = `
[plugins]

[plugins.prewarmer]
enabled = false
queries = [
  "SELECT pg_prewarm('pgbench_accounts')",
]

[plugins.query_logger]
enabled = false

[plugins.table_access]
enabled = false
tables = [
  "pg_user",
  "pg_roles",
  "pg_database",
]

[plugins.intercept]
enabled = true

[plugins.intercept.queries.0]

query = "select current_database() as a, current_schemas(false) as b"
schema = [
  ["a", "text"],
  ["b", "text"],
]
result = [
  ["${DATABASE}", "{public}"],
]

[plugins.intercept.queries.1]

query = "select current_database(), current_schema(), current_user"
schema = [
  ["current_database", "text"],
  ["current_schema", "text"],
  ["current_user", "text"],
]
result = [
  ["${DATABASE}", "public", "${USER}"],
]

[plugins.intercept.queries.2]

query = "select round(extract(epoch from pg_postmaster_start_time() at time zone 'UTC')) as startup_time"
schema = [["startup_time", "text"]]
result = [["1700000000"]]
`

// TestPgcatPluginsFromPgcatsExample: pgcat's example plugin blocks load unchanged; intercept
// answers the DataGrip catalog queries itself (in pgx's simple protocol and with psql), and
// the disabled plugins do nothing.
func TestPgcatPluginsFromPgcatsExample(t *testing.T) {
	out, err := exec.Command(sluiceBin, "--check", "-c", filepath.Join("..", "..", "internal", "config", "testdata", "pgcat.toml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration is valid") {
		t.Fatalf("sluice --check pgcat.toml: %v\n%s", err, out)
	}
	s := startSluice(t, poolConfig{General: pgcatPluginBlocks})
	conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	ctx := context.Background()
	var a, b string
	if err := conn.QueryRow(ctx, "select current_database() as a, current_schemas(false) as b").Scan(&a, &b); err != nil || a != appDB || b != "{public}" {
		t.Errorf("pgcat's intercepted query: %q %q, %v", a, b, err)
	}
	var db, schema, user string
	if err := conn.QueryRow(ctx, "SELECT current_database(), current_schema(), current_user").Scan(&db, &schema, &user); err != nil || db != appDB || schema != "public" || user != appUser {
		t.Errorf("second intercepted query: %q %q %q, %v", db, schema, user, err)
	}
	var started string
	if err := conn.QueryRow(ctx, "SELECT round(extract(epoch FROM pg_postmaster_start_time() AT TIME ZONE 'UTC')) AS startup_time").Scan(&started); err != nil || started != "1700000000" {
		t.Errorf("DataGrip's startup_time query: %q, %v; want the configured 1700000000", started, err)
	}
	// Inside a transaction the answer comes back through the server, in order.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "select round(extract(epoch from pg_postmaster_start_time() at time zone 'UTC')) as startup_time").Scan(&started); err != nil || started != "1700000000" {
		t.Errorf("in a transaction: %q, %v", started, err)
	}
	tx.Rollback(ctx)
	// table_access is disabled in pgcat's example.
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database").Scan(&n); err != nil || n == 0 {
		t.Errorf("pg_database with table_access disabled: %d, %v", n, err)
	}
	// The extended protocol goes to the server, as in pgcat.
	if err := conn.QueryRow(ctx, "select round(extract(epoch from pg_postmaster_start_time() at time zone 'UTC')) as startup_time",
		pgx.QueryExecModeDescribeExec).Scan(&started); err != nil || started == "1700000000" {
		t.Errorf("extended protocol: %q, %v; want the server's answer", started, err)
	}
	stdout, stderr, err := runPsql(t, s, "", "-c", "select current_database() as a, current_schemas(false) as b", "-c",
		"select round(extract(epoch from pg_postmaster_start_time() at time zone 'UTC')) as startup_time")
	if err != nil || stdout != "app|{public}\n1700000000\n" {
		t.Errorf("psql: %q, %s, %v", stdout, stderr, err)
	}
}

// TestTableAccessRefuses: pgcat's table_access, enabled, refuses the listed catalogs with
// pgcat's message, in both protocols, and the session goes on.
func TestTableAccessRefuses(t *testing.T) {
	s := startSluice(t, poolConfig{General: `
[plugins.table_access]
enabled = true
tables = ["pg_user", "pg_roles", "pg_database"]
`})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		ctx := context.Background()
		for _, q := range []string{"SELECT * FROM pg_catalog.pg_user", "SELECT datname FROM pg_database WHERE datname = 'app'"} {
			_, err := conn.Exec(ctx, q)
			var pe *pgconn.PgError
			if !asPgError(err, &pe) || pe.Code != "42501" || !strings.HasPrefix(pe.Message, "permission for table \"pg_") {
				t.Errorf("%v: %q: %v; want 42501 permission for table ... denied", mode, q, err)
			}
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'pg_user'").Scan(&n); err != nil || n != 1 {
			t.Errorf("%v: an allowed query after the refusals: %d, %v", mode, n, err)
		}
	}
}

func asPgError(err error, pe **pgconn.PgError) bool { return errors.As(err, pe) }

// TestQueryLoggerLogs: query_logger logs each query at info with user, database and
// application_name (sluice as a process, so its log is read).
func TestQueryLoggerLogs(t *testing.T) {
	s := startSluiceProcess(t, poolConfig{General: "\n[plugins.query_logger]\nenabled = true\n"})
	conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.RuntimeParams["application_name"] = "logger-test" })
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT 'logged simple'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT $1::text", "logged extended"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		log := s.Log.String()
		for _, want := range []string{
			`level=INFO msg=query plugin=query_logger user=app database=app application_name=logger-test query="SELECT 'logged simple'"`,
			`query="SELECT $1::text" protocol=extended params=1`,
		} {
			if !strings.Contains(log, want) {
				return fmt.Errorf("the log lacks %s:\n%s", want, log)
			}
		}
		return nil
	})
}

// TestQueryLoggerDisabledLogsNothing: enabled = false makes the plugin inert.
func TestQueryLoggerDisabledLogsNothing(t *testing.T) {
	s := startSluiceProcess(t, poolConfig{General: "\n[plugins.query_logger]\nenabled = false\n"})
	conn := connect(t, s)
	if _, err := conn.Exec(context.Background(), "SELECT 'not logged'"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if strings.Contains(s.Log.String(), "not logged") {
		t.Errorf("a disabled query_logger logged:\n%s", s.Log)
	}
}

// TestPrewarmerRunsOnNewServerConnections: each new server connection runs the prewarmer's
// queries (they record the server's pid in a table) before a client uses it. (The pgcat
// example's disabled prewarmer calls pg_prewarm, which is not installed: that its connections
// work shows enabled = false is inert.)
func TestPrewarmerRunsOnNewServerConnections(t *testing.T) {
	ctx := context.Background()
	d := direct(t)
	dropTable(t, "prewarmed")
	if _, err := d.Exec(ctx, "CREATE TABLE prewarmed (pid int, setting text); GRANT ALL ON prewarmed TO "+appUser); err != nil {
		t.Fatal(err)
	}
	s := startSluice(t, poolConfig{PoolSize: 3, General: `
[plugins.prewarmer]
enabled = true
queries = [
  "SET work_mem = '7MB'",
  "INSERT INTO prewarmed VALUES (pg_backend_pid(), current_setting('work_mem'))",
]
`})
	// Three clients in transactions at once need three server connections.
	pids := map[int]bool{}
	var txs []pgx.Tx
	for range 3 {
		tx, err := connect(t, s).Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
		txs = append(txs, tx)
	}
	for _, tx := range txs {
		tx.Rollback(ctx)
	}
	if len(pids) != 3 {
		t.Fatalf("server pids %v; want 3", pids)
	}
	rows, err := d.Query(ctx, "SELECT pid, setting FROM prewarmed")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for rows.Next() {
		var pid int
		var setting string
		if err := rows.Scan(&pid, &setting); err != nil {
			t.Fatal(err)
		}
		if setting != "7MB" {
			t.Errorf("the second query ran before the first: work_mem %s", setting)
		}
		got[pid] = true
	}
	for pid := range pids {
		if !got[pid] {
			t.Errorf("server %d was not prewarmed (prewarmed: %v)", pid, got)
		}
	}
}

// TestDenyPlugin: deny refuses EXECUTE, COPY ... PROGRAM and listed functions, in both
// protocols, and lets the rest through.
func TestDenyPlugin(t *testing.T) {
	s := startSluice(t, poolConfig{General: `
[plugins.deny]
kinds = ["ExecuteStmt", "CopyStmt with PROGRAM"]
functions = ["pg_read_file", "pg_ls_dir"]
`})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		ctx := context.Background()
		for _, tc := range []struct{ query, msg string }{
			{"EXECUTE some_plan", "deny: statements of kind ExecuteStmt are not allowed"},
			{"COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'", "deny: COPY ... PROGRAM is not allowed"},
			{"SELECT pg_read_file('/etc/passwd')", "deny: function pg_read_file is not allowed"},
			{"SELECT * FROM pg_catalog.pg_ls_dir('.')", "deny: function pg_catalog.pg_ls_dir is not allowed"},
		} {
			_, err := conn.Exec(ctx, tc.query)
			var pe *pgconn.PgError
			if !asPgError(err, &pe) || pe.Code != "42501" || pe.Message != tc.msg {
				t.Errorf("%v: %q: %v; want 42501 %s", mode, tc.query, err, tc.msg)
			}
		}
		var got string
		if err := conn.QueryRow(ctx, "SELECT lower('PG_READ_FILE')").Scan(&got); err != nil || got != "pg_read_file" {
			t.Errorf("%v: allowed query: %q, %v", mode, got, err)
		}
	}
}

// TestRewritePlugin: rewrite rules (a table renamed in the parse tree, a literal) apply in
// both protocols.
func TestRewritePlugin(t *testing.T) {
	ctx := context.Background()
	dropTable(t, "rewrite_new")
	if _, err := direct(t).Exec(ctx, "CREATE TABLE rewrite_new (id int, note text); INSERT INTO rewrite_new VALUES (1, 'new table'); GRANT ALL ON rewrite_new TO "+appUser); err != nil {
		t.Fatal(err)
	}
	s := startSluice(t, poolConfig{General: `
[plugins.rewrite]
[[plugins.rewrite.rules]]
from = "rewrite_old"
to = "public.rewrite_new"
match = "table"

[[plugins.rewrite.rules]]
from = "'sluice-version'"
to = "'rewritten literal'"
`})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		var note, lit string
		if err := conn.QueryRow(ctx, "SELECT note, 'rewrite_old' FROM rewrite_old WHERE id = $1", 1).Scan(&note, &lit); err != nil || note != "new table" || lit != "rewrite_old" {
			t.Errorf("%v: table rule: %q %q, %v", mode, note, lit, err)
		}
		if err := conn.QueryRow(ctx, "SELECT 'sluice-version'").Scan(&lit); err != nil || lit != "rewritten literal" {
			t.Errorf("%v: literal rule: %q, %v", mode, lit, err)
		}
	}
}

// TestRoutePlugin: route sends a transaction to the replica by a comment hint or by a rule on
// application_name, in a pool whose default role is the primary.
func TestRoutePlugin(t *testing.T) {
	c := startCluster(t, 1)
	s := startSluice(t, poolConfig{ServerPort: c.primary.Port, Servers: c.servers(), Pool: `default_role = "primary"`, General: `
[plugins.route]
[[plugins.route.rules]]
application_name = "reporting*"
role = "replica"
`})
	ctx := context.Background()
	inRecovery := func(conn *pgx.Conn, q string) bool {
		t.Helper()
		var r bool
		if err := conn.QueryRow(ctx, q).Scan(&r); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return r
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		if inRecovery(conn, "SELECT pg_is_in_recovery()") {
			t.Errorf("%v: no hint went to the replica", mode)
		}
		if !inRecovery(conn, "/* route: replica */ SELECT pg_is_in_recovery()") {
			t.Errorf("%v: the replica hint went to the primary", mode)
		}
		rep := connectConfig(t, s, func(c *pgx.ConnConfig) {
			c.DefaultQueryExecMode = mode
			c.RuntimeParams["application_name"] = "reporting-nightly"
		})
		if !inRecovery(rep, "SELECT pg_is_in_recovery()") {
			t.Errorf("%v: the reporting client went to the primary", mode)
		}
		if inRecovery(rep, "SELECT pg_is_in_recovery() -- route: primary") {
			t.Errorf("%v: the primary hint went to the replica", mode)
		}
	}
}

// TestUserMapPlugin: user_map serves a client that asks for another database name from pool
// app.
func TestUserMapPlugin(t *testing.T) {
	s := startSluice(t, poolConfig{General: `
[plugins.user_map]
[[plugins.user_map.rules]]
database = "legacy_*"
to_database = "app"
`})
	cfg, err := pgx.ParseConfig(strings.Replace(s.URL(), "/app?", "/legacy_app?", 1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to legacy_app: %v", err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != appDB {
		t.Errorf("current_database: %q, %v", db, err)
	}
}

// TestWebhookPlugin: the webhook plugin against examples/webhook's validation service: allow,
// reject, rewrite; queries it is not configured for make no request; the service down or late
// gives fail-open or fail-closed within the timeout.
func TestWebhookPlugin(t *testing.T) {
	ctx := context.Background()
	dropTable(t, "webhook_accounts")
	if _, err := direct(t).Exec(ctx, `CREATE TABLE webhook_accounts (id int, deleted_at timestamptz);
		INSERT INTO webhook_accounts SELECT g, NULL FROM generate_series(1, 5) g;
		GRANT ALL ON webhook_accounts TO `+appUser); err != nil {
		t.Fatal(err)
	}
	svc := &validator.Service{SoftDelete: []string{"webhook_accounts"}}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	s := startSluice(t, poolConfig{General: fmt.Sprintf(`
[plugins.webhook]
url = %q
kinds = ["UpdateStmt", "DeleteStmt"]
timeout = 1000
`, srv.URL)})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		before := svc.Requests()
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM webhook_accounts").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if svc.Requests() != before {
			t.Errorf("%v: a SELECT was sent to the service", mode)
		}
		if tag, err := conn.Exec(ctx, "UPDATE webhook_accounts SET id = id WHERE id = 1"); err != nil || tag.RowsAffected() != 1 {
			t.Errorf("%v: allowed UPDATE: %v, %v", mode, tag, err)
		}
		_, err := conn.Exec(ctx, "DELETE FROM webhook_accounts")
		var pe *pgconn.PgError
		if !asPgError(err, &pe) || pe.Code != "P0001" || !strings.Contains(pe.Message, "without WHERE") {
			t.Errorf("%v: DELETE without WHERE: %v; want the service's P0001", mode, err)
		}
		tag, err := conn.Exec(ctx, "DELETE FROM webhook_accounts WHERE id = 2")
		if err != nil || tag.String() != "UPDATE 1" {
			t.Errorf("%v: soft delete: %v, %v; want UPDATE 1", mode, tag, err)
		}
		var live int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM webhook_accounts WHERE deleted_at IS NULL").Scan(&live); err != nil || live != 4 || n != 5 && n != 4 {
			t.Errorf("%v: rows not deleted: %d, %v", mode, live, err)
		}
		if svc.Requests()-before != 3 {
			t.Errorf("%v: the service was asked %d times; want 3", mode, svc.Requests()-before)
		}
		if _, err := direct(t).Exec(ctx, "UPDATE webhook_accounts SET deleted_at = NULL"); err != nil {
			t.Fatal(err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/check"
	ln.Close()
	late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	}))
	defer late.Close()
	for _, tc := range []struct {
		name, url string
		failOpen  bool
	}{
		{"down, fail closed", down, false},
		{"down, fail open", down, true},
		{"late, fail closed", late.URL, false},
		{"late, fail open", late.URL, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSluice(t, poolConfig{General: fmt.Sprintf(`
[plugins.webhook]
url = %q
tables = ["webhook_accounts"]
timeout = 300
fail_open = %v
`, tc.url, tc.failOpen)})
			conn := connect(t, s)
			start := time.Now()
			var n int
			err := conn.QueryRow(ctx, "SELECT count(*) FROM webhook_accounts").Scan(&n)
			took := time.Since(start)
			if tc.failOpen && (err != nil || n != 5) {
				t.Errorf("fail open: %d, %v; want the query to run", n, err)
			}
			var pe *pgconn.PgError
			if !tc.failOpen && (!asPgError(err, &pe) || pe.Code != "58000" || !strings.Contains(pe.Message, "fail_open = false")) {
				t.Errorf("fail closed: %v; want 58000 naming fail_open", err)
			}
			if took > time.Second {
				t.Errorf("took %s with a 300ms timeout", took)
			}
		})
	}
}
