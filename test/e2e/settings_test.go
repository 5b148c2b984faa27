package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestUnreportedSettingsDoNotLeak: in transaction mode, what a client changes with SET that the
// server does not report (search_path before PostgreSQL 18, statement_timeout, work_mem, the
// role) never reaches the next client of its server: the server's session is reset first. A
// setting the server reports still follows its client.
func TestUnreportedSettingsDoNotLeak(t *testing.T) {
	ctx := context.Background()
	d := direct(t)
	mustExec(t, d, "DROP ROLE IF EXISTS sluice_leak_role; CREATE ROLE sluice_leak_role NOLOGIN; GRANT sluice_leak_role TO "+appUser)
	defer mustExec(t, d, "DROP ROLE IF EXISTS sluice_leak_role")
	s := startSluice(t, poolConfig{PoolSize: 1})
	simple := func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol }
	a, b := connectConfig(t, s, simple), connectConfig(t, s, simple)
	show := func(c *pgx.Conn, q string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return v
	}
	want := map[string]string{}
	for _, q := range []string{"SHOW search_path", "SHOW statement_timeout", "SHOW work_mem", "SELECT current_user", "SHOW TimeZone"} {
		want[q] = show(b, q)
	}
	for _, q := range []string{
		"SET search_path TO pg_catalog",
		"SET statement_timeout = 5",
		"BEGIN; SET work_mem = '1MB'; COMMIT",
		"SET ROLE sluice_leak_role",
		"SET TimeZone = 'Asia/Tokyo'",
	} {
		if _, err := a.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		// The pool's one server goes to b next.
		for what, w := range want {
			if got := show(b, what); got != w {
				t.Errorf("after the other client's %q: %s = %q, want %q", q, what, got, w)
			}
		}
	}
	if got := show(a, "SHOW TimeZone"); got != "Asia/Tokyo" {
		t.Errorf("a reported setting did not follow its client: TimeZone %q", got)
	}
	// pgx's extended protocol sets nothing unreported in the same way.
	c := connect(t, s)
	if _, err := c.Exec(ctx, "SET search_path TO pg_catalog"); err != nil {
		t.Fatal(err)
	}
	if got := show(b, "SHOW search_path"); got != want["SHOW search_path"] {
		t.Errorf("after an extended-protocol SET: search_path %q, want %q", got, want["SHOW search_path"])
	}
}

// TestCleanupServerConnectionsOff: with pgcat's cleanup_server_connections = false the reset is
// skipped, as in pgcat: a SET stays on the server for its next client.
func TestCleanupServerConnectionsOff(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 1, Pool: "cleanup_server_connections = false\n"})
	simple := func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol }
	a, b := connectConfig(t, s, simple), connectConfig(t, s, simple)
	if _, err := a.Exec(ctx, "SET work_mem = '1MB'"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := b.QueryRow(ctx, "SHOW work_mem").Scan(&v); err != nil || v != "1MB" {
		t.Fatalf("work_mem on the next client = %q (%v); want 1MB, the first client's, left as pgcat leaves it", v, err)
	}
}

// TestSessionObjectsDoNotLeak: in transaction mode, what a client leaves in a server's session
// beyond its transaction (a temporary table and its rows, a SQL prepared statement, a cursor
// WITH HOLD, a session advisory lock, a set_config that is not local) is gone before the next
// client gets that server, in the simple and the extended protocol. pgcat only deallocates and
// resets settings; PgBouncer leaves all of it.
func TestSessionObjectsDoNotLeak(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 1})
	simple := func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol }
	count := func(c *pgx.Conn, q string) int {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	checks := map[string]string{
		"temporary tables":    "SELECT count(*) FROM pg_class WHERE relpersistence = 't'",
		"prepared statements": "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql OR name = 'leak_stmt'",
		"cursors":             "SELECT count(*) FROM pg_cursors",
		"advisory locks":      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
		"set_config":          "SELECT count(*) FROM pg_settings WHERE name = 'work_mem' AND setting = '77'",
	}
	for _, mode := range []struct {
		name string
		opt  func(*pgx.ConnConfig)
	}{
		{"simple", simple},
		{"extended", func(*pgx.ConnConfig) {}}, // named statements
		{"unnamed", func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeExec }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			a, b := connectConfig(t, s, mode.opt), connectConfig(t, s, simple)
			for _, q := range []string{
				"CREATE TEMP TABLE leak_secret AS SELECT 42 AS x",
				"PREPARE leak_stmt AS SELECT 1",
				"BEGIN; DECLARE leak_cur CURSOR WITH HOLD FOR SELECT 1; COMMIT",
				"SELECT pg_advisory_lock(4242)",
				"SELECT set_config('work_mem', '77kB', false)",
			} {
				if mode.name != "simple" && len(q) > 5 && q[:5] == "BEGIN" {
					q = "DECLARE leak_cur CURSOR WITH HOLD FOR SELECT 1" // one statement per Parse
				}
				if _, err := a.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				// The pool's one server goes to b next.
				for what, check := range checks {
					if n := count(b, check); n != 0 {
						t.Errorf("after the other client's %q: %d %s on the server", q, n, what)
					}
				}
			}
			// The server is still good for both: no prepared statement of sluice's was lost
			// for good (extended-protocol clients get theirs prepared again).
			for _, c := range []*pgx.Conn{a, b} {
				if n := count(c, "SELECT 1"); n != 1 {
					t.Fatalf("SELECT 1 = %d", n)
				}
			}
		})
	}
}

// TestLoginParametersFollowTheServer: a client is told at login the parameters of the latest
// server connection its pool made, not of the first one. A server restarted after a minor upgrade
// reports a new server_version; here ALTER ROLE ... SET TimeZone stands in for it. sluice used
// to tell every new client the first connection's values for ever (psycopg2's
// test_parameter_status and test_server_version after the server was upgraded), and carried that
// stale TimeZone onto the new server.
func TestLoginParametersFollowTheServer(t *testing.T) {
	ctx := context.Background()
	role, userLines := serverRole(t)
	s := startSluice(t, poolConfig{Mode: "session", PoolSize: 1, User: userLines})
	first := connect(t, s)
	before := first.PgConn().ParameterStatus("TimeZone")
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	const tz = "Asia/Tokyo"
	if before == tz {
		t.Fatalf("the server's default TimeZone is already %s", tz)
	}
	watch := direct(t)
	if _, err := watch.Exec(ctx, fmt.Sprintf("ALTER ROLE %s SET TimeZone = '%s'", role, tz)); err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role); err != nil {
		t.Fatal(err)
	}
	waitServers(t, watch, role, 0, 5*time.Second)
	// This client's login comes before the pool's new connection: it may still hear the old value.
	bridge := connect(t, s)
	queryString(t, bridge, "SELECT 'the pool dials its new connection'")
	if err := bridge.Close(ctx); err != nil {
		t.Fatal(err)
	}
	next := connect(t, s)
	if got := next.PgConn().ParameterStatus("TimeZone"); got != tz {
		t.Errorf("a client after the new connection was told TimeZone %q, want %q", got, tz)
	}
	if got := queryString(t, next, "SHOW TimeZone"); got != tz {
		t.Errorf("SHOW TimeZone: %q, want %q", got, tz)
	}
}
