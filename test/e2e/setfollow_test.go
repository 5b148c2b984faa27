package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestSettingsFollowClientInTransactionMode: in transaction mode, a client's own SET of a
// setting the server does not report (search_path before PostgreSQL 18, statement_timeout,
// work_mem, lock_timeout) holds for the client's later transactions, on whatever server they
// run, once its transaction committed; other clients of the same server never see it. SET
// LOCAL, a rolled-back SET and SET ROLE are not carried; RESET, RESET ALL and DISCARD ALL
// undo what was carried.
func TestSettingsFollowClientInTransactionMode(t *testing.T) {
	ctx := context.Background()
	d := direct(t)
	mustExec(t, d, `DROP SCHEMA IF EXISTS sf_a CASCADE; DROP SCHEMA IF EXISTS "B c" CASCADE;
		CREATE SCHEMA sf_a AUTHORIZATION `+appUser+`; CREATE SCHEMA "B c" AUTHORIZATION `+appUser+`;
		DROP ROLE IF EXISTS sluice_sf_role; CREATE ROLE sluice_sf_role NOLOGIN; GRANT sluice_sf_role TO `+appUser)
	t.Cleanup(func() {
		mustExec(t, d, `DROP SCHEMA IF EXISTS sf_a CASCADE; DROP SCHEMA IF EXISTS "B c" CASCADE; DROP ROLE IF EXISTS sluice_sf_role`)
	})
	s := startSluice(t, poolConfig{PoolSize: 1})
	simple := func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol }
	a, b := connectConfig(t, s, simple), connectConfig(t, s, simple)

	queries := []string{"SHOW search_path", "SELECT current_schemas(false)::text", "SHOW statement_timeout",
		"SHOW work_mem", "SHOW lock_timeout", "SELECT current_user"}
	state := func(c *pgx.Conn) map[string]string {
		t.Helper()
		m := map[string]string{}
		for _, q := range queries {
			var v string
			if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			m[q] = v
		}
		return m
	}
	defaults := state(b)
	with := func(changes map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range defaults {
			m[k] = v
		}
		for k, v := range changes {
			m[k] = v
		}
		return m
	}
	exec := func(c *pgx.Conn, q string) {
		t.Helper()
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// check runs b's and a's transactions in turn on the pool's one server: b always sees the
	// defaults, a what it asked for.
	check := func(step string, wantA map[string]string) {
		t.Helper()
		for round := 0; round < 2; round++ {
			for q, w := range state(b) {
				if w != defaults[q] {
					t.Errorf("%s: the other client sees %s = %q, want the default %q", step, q, w, defaults[q])
				}
			}
			for q, got := range state(a) {
				if got != wantA[q] {
					t.Errorf("%s: the client sees %s = %q, want %q", step, q, got, wantA[q])
				}
			}
		}
	}

	carried := with(map[string]string{
		"SHOW search_path":                    `sf_a, "B c"`,
		"SELECT current_schemas(false)::text": `{sf_a,"B c"}`,
		"SHOW statement_timeout":              "7s",
		"SHOW work_mem":                       "3MB",
	})
	exec(a, `SET search_path TO sf_a, "B c"; SET SESSION statement_timeout = '7s'`)
	exec(a, `set work_mem to '3MB'`)
	check("after SET", carried)
	// The list is a list where it matters: an unqualified name finds the quoted schema.
	exec(a, `CREATE TABLE "B c".sf_t (x int)`)
	var n int
	if err := a.QueryRow(ctx, "SELECT count(*) FROM sf_t").Scan(&n); err != nil {
		t.Errorf("an unqualified table in the second schema of the carried search_path: %v", err)
	}
	if _, err := b.Exec(ctx, "SELECT count(*) FROM sf_t"); err == nil {
		t.Error("the other client found sf_t through a search_path it never set")
	}

	exec(a, "BEGIN; SET LOCAL lock_timeout = '9s'; COMMIT")
	check("after SET LOCAL", carried)
	exec(a, "BEGIN; SET lock_timeout = '8s'; ROLLBACK")
	check("after a rolled-back SET", carried)
	if _, err := a.Exec(ctx, "SET lock_timeout = '8s'; SELECT 1/0"); err == nil {
		t.Fatal("SELECT 1/0 succeeded")
	}
	check("after a SET in a failed implicit transaction", carried)
	if _, err := a.Exec(ctx, "SET work_mem = 'lots'"); err == nil {
		t.Fatal("a SET of an invalid value succeeded")
	}
	check("after a failed SET", carried)
	exec(a, "BEGIN")
	exec(a, "SET lock_timeout = '6s'")
	exec(a, "COMMIT")
	carried["SHOW lock_timeout"] = "6s"
	check("after a SET committed in a transaction block", carried)

	exec(a, "SET ROLE sluice_sf_role")
	check("after SET ROLE (not carried)", carried)

	// sluice does not follow savepoints: the SET is dropped (the client loses work_mem) and
	// the server is reset before the other client gets it.
	exec(a, "BEGIN; SAVEPOINT s; SET work_mem = '5MB'; RELEASE s; COMMIT")
	carried["SHOW work_mem"] = defaults["SHOW work_mem"]
	check("after a SET in a transaction with a savepoint", carried)
	exec(a, "SET work_mem = '3MB'")
	carried["SHOW work_mem"] = "3MB"
	check("after SET again", carried)

	exec(a, "RESET statement_timeout")
	carried["SHOW statement_timeout"] = defaults["SHOW statement_timeout"]
	check("after RESET", carried)
	exec(a, "SET statement_timeout TO DEFAULT; RESET work_mem")
	carried["SHOW work_mem"] = defaults["SHOW work_mem"]
	check("after SET TO DEFAULT and RESET", carried)
	exec(a, "RESET ALL")
	check("after RESET ALL", defaults)
	exec(a, `SET search_path TO sf_a, "B c"; SET work_mem = '3MB'`)
	exec(a, "DISCARD ALL")
	check("after DISCARD ALL", defaults)

	// The extended protocol: pgx's exec mode (unnamed statement), its statement cache (named
	// statements) and pgconn's ExecParams.
	e := connect(t, s)
	extended := map[string]string{}
	for _, st := range []struct {
		sql  string
		show string
		want string
		run  func(sql string) error
	}{
		{`SET search_path TO "B c", sf_a`, "SHOW search_path", `"B c", sf_a`, func(sql string) error {
			rows, err := e.Query(ctx, sql, pgx.QueryExecModeExec)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}},
		{`SET work_mem = '5MB'`, "SHOW work_mem", "5MB", func(sql string) error {
			rows, err := e.Query(ctx, sql, pgx.QueryExecModeCacheStatement)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}},
		{`SET statement_timeout = 4000`, "SHOW statement_timeout", "4s", func(sql string) error {
			return e.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
		}},
	} {
		if err := st.run(st.sql); err != nil {
			t.Fatalf("%s: %v", st.sql, err)
		}
		extended[st.show] = st.want
		for q, w := range state(b) {
			if w != defaults[q] {
				t.Errorf("after %s over the extended protocol: the other client sees %s = %q, want %q", st.sql, q, w, defaults[q])
			}
		}
		for show, want := range extended {
			var got string
			if err := e.QueryRow(ctx, show).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("after %s over the extended protocol: %s = %q, want %q", st.sql, show, got, want)
			}
		}
	}
	// A SET in an extended-protocol batch whose implicit transaction fails is not carried.
	batch := &pgx.Batch{}
	batch.Queue("SET lock_timeout = '3s'")
	batch.Queue("SELECT 1/0")
	if err := e.SendBatch(ctx, batch).Close(); err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("a batch with SELECT 1/0: %v", err)
	}
	var lt string
	if err := e.QueryRow(ctx, "SHOW lock_timeout").Scan(&lt); err != nil || lt != defaults["SHOW lock_timeout"] {
		t.Errorf("after a failed batch: lock_timeout %q (%v), want %q", lt, err, defaults["SHOW lock_timeout"])
	}
}

// TestSettingsFollowClientInStatementMode: statement mode carries a client's SET as
// transaction mode does.
func TestSettingsFollowClientInStatementMode(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{Mode: "statement", PoolSize: 1})
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
	def := show(b, "SHOW work_mem")
	mustExec(t, a, "BEGIN; SET work_mem = '6MB'; COMMIT")
	for range 2 {
		if got := show(b, "SHOW work_mem"); got != def {
			t.Errorf("the other client sees work_mem %q, want the default %q", got, def)
		}
		if got := show(a, "SHOW work_mem"); got != "6MB" {
			t.Errorf("the client sees work_mem %q, want 6MB", got)
		}
	}
}
