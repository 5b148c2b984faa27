package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestStatementPreparedAfterSchemaChangeIsFresh checks that a statement a client prepares after
// a schema change sees the new schema. In transaction mode clients that prepare the same text
// share one statement on each server; after ALTER TABLE those statements are stale ("cached plan
// must not change result type", 0A000). The client whose statement was prepared before the change
// gets that error, as from Postgres; when it prepares the text again (as pgx and asyncpg do after
// that error), and when any client prepares it from then on, it must get a statement that fits
// the new columns, not the stale one shared under the same name.
func TestStatementPreparedAfterSchemaChangeIsFresh(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := direct(t)
	mustExec(t, d, "DROP TABLE IF EXISTS stale_plan")
	mustExec(t, d, "CREATE TABLE stale_plan (a int)")
	mustExec(t, d, "INSERT INTO stale_plan VALUES (1)")
	mustExec(t, d, "GRANT ALL ON stale_plan TO "+appUser)
	const q = "SELECT * FROM stale_plan"

	// Two clients, both inside a transaction so that each holds one server, prepare the query:
	// both servers have it.
	a, b := connect(t, s).PgConn(), connect(t, s).PgConn()
	for _, c := range []*pgconn.PgConn{a, b} {
		if err := c.Exec(ctx, "BEGIN").Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Prepare(ctx, "q", q, nil); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		res := c.ExecPrepared(ctx, "q", nil, nil, nil).Read()
		if res.Err != nil || len(res.FieldDescriptions) != 1 {
			t.Fatalf("before the change: %d columns, %v", len(res.FieldDescriptions), res.Err)
		}
	}
	for _, c := range []*pgconn.PgConn{a, b} {
		if err := c.Exec(ctx, "COMMIT").Close(); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, d, "ALTER TABLE stale_plan ADD COLUMN b text DEFAULT 'x'")

	// a's statement was prepared before the change: Postgres says it is stale.
	res := a.ExecPrepared(ctx, "q", nil, nil, nil).Read()
	if code := codeOf(res.Err); code != "0A000" {
		t.Fatalf("the statement prepared before the change: %v (SQLSTATE %q), want 0A000", res.Err, code)
	}
	// Prepared again after the error, and prepared by another client, the text fits the new
	// columns on every server.
	if err := a.Deallocate(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*pgconn.PgConn{a, b, a, b} {
		name := "again"
		if i >= 2 {
			name = "again2"
		}
		sd, err := c.Prepare(ctx, name, q, nil)
		if err != nil {
			t.Fatalf("prepare %d after the change: %v", i, err)
		}
		if len(sd.Fields) != 2 {
			t.Fatalf("prepare %d after the change describes %d columns, want 2", i, len(sd.Fields))
		}
		for j := 0; j < 4; j++ {
			res := c.ExecPrepared(ctx, name, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || len(res.Rows[0]) != 2 || string(res.Rows[0][1]) != "x" {
				t.Fatalf("execute %d.%d after the change: %v rows, %v", i, j, res.Rows, res.Err)
			}
		}
	}
}

// TestStatementPreparedAgainAfterSchemaChange checks that a client's Parse of a text that a
// server already has prepared, from before a schema change, gets what Postgres gives a new
// statement: the new result columns, the new parameter types, a type dropped and made again. In
// transaction mode clients share server statements by text, and a Parse sluice answered with the
// old statement made pgx's first query after a migration fail ("cached plan must not change result
// type", "cache lookup failed for type"), or made pgx encode its parameters for the old types
// again after it had prepared the text anew (pgx's TestStmtCacheInvalidationExec). Each case runs
// with the Parse outside a transaction (sluice answers it without a server and prepares the
// statement at the Describe) and inside one (the Parse goes to the transaction's server).
func TestStatementPreparedAgainAfterSchemaChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  string // run before the statement is first prepared
		change string // the schema change
		query  string
		check  func(sd *pgconn.StatementDescription) error
	}{
		{
			name:   "result columns",
			setup:  "DROP TABLE IF EXISTS reprep_cols; CREATE TABLE reprep_cols (a int, b int)",
			change: "ALTER TABLE reprep_cols DROP COLUMN a",
			query:  "SELECT * FROM reprep_cols WHERE b = $1",
			check: func(sd *pgconn.StatementDescription) error {
				if len(sd.Fields) != 1 || sd.Fields[0].Name != "b" {
					return fmt.Errorf("columns %v, want [b]", sd.Fields)
				}
				return nil
			},
		},
		{
			name:   "parameter type",
			setup:  "DROP TABLE IF EXISTS reprep_params; CREATE TABLE reprep_params (a int)",
			change: "ALTER TABLE reprep_params ALTER COLUMN a TYPE boolean USING a::boolean",
			query:  "INSERT INTO reprep_params (a) VALUES ($1)",
			check: func(sd *pgconn.StatementDescription) error {
				if len(sd.ParamOIDs) != 1 || sd.ParamOIDs[0] != 16 {
					return fmt.Errorf("parameter types %v, want [16] (boolean)", sd.ParamOIDs)
				}
				return nil
			},
		},
		{
			name:   "type made again",
			setup:  "DROP TYPE IF EXISTS reprep_enum; CREATE TYPE reprep_enum AS ENUM ('a')",
			change: "DROP TYPE reprep_enum; CREATE TYPE reprep_enum AS ENUM ('a', 'b')",
			query:  "SELECT $1::reprep_enum",
			check:  func(*pgconn.StatementDescription) error { return nil },
		},
	} {
		for _, inTx := range []bool{false, true} {
			name := tc.name + "/outside a transaction"
			if inTx {
				name = tc.name + "/inside a transaction"
			}
			t.Run(name, func(t *testing.T) {
				// One server: every client's statement is the one on it.
				s := startPooler(t, poolConfig{PoolSize: 1})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				ddl := connect(t, s)
				mustExec(t, ddl, tc.setup)
				prepare := func(c *pgconn.PgConn, stmt string) (*pgconn.StatementDescription, error) {
					if inTx {
						if err := c.Exec(ctx, "BEGIN").Close(); err != nil {
							t.Fatal(err)
						}
						defer func() {
							if err := c.Exec(ctx, "ROLLBACK").Close(); err != nil {
								t.Fatal(err)
							}
						}()
					}
					return c.Prepare(ctx, stmt, tc.query, nil)
				}
				a := connect(t, s).PgConn()
				if _, err := prepare(a, "q"); err != nil {
					t.Fatalf("prepare before the change: %v", err)
				}
				mustExec(t, ddl, tc.change)

				// Another client prepares the text for the first time.
				sd, err := prepare(connect(t, s).PgConn(), "q")
				if err == nil {
					err = tc.check(sd)
				}
				if err != nil {
					t.Fatalf("a new client's prepare after the change: %v", err)
				}
				// The first client prepares it again under its name, as pgx does when its
				// statement cache finds the old one unusable.
				if err := a.Deallocate(ctx, "q"); err != nil {
					t.Fatal(err)
				}
				sd, err = prepare(a, "q")
				if err == nil {
					err = tc.check(sd)
				}
				if err != nil {
					t.Fatalf("prepare again after the change: %v", err)
				}
			})
		}
	}
}

// TestDeallocateForgetsTheClientsStatement checks the SQL command DEALLOCATE of a statement the
// client prepared in the protocol, which in transaction mode exists on servers under another
// name: psycopg 3 sends "DEALLOCATE _pg3_N" with the extended protocol for the statements beyond
// prepared_max, Rails with a simple Query. The name is free afterwards; a name the client never
// prepared gets the server's error; SQL PREPARE's statements are the server's own.
func TestDeallocateForgetsTheClientsStatement(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := connect(t, s).PgConn()
	prepareAndRun := func(text, want string) {
		t.Helper()
		if _, err := c.Prepare(ctx, "s1", text, nil); err != nil {
			t.Fatalf("prepare s1 as %s: %v", text, err)
		}
		res := c.ExecPrepared(ctx, "s1", nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != want {
			t.Fatalf("s1 (%s): %v, %v; want %s", text, res.Rows, res.Err, want)
		}
	}
	prepareAndRun("SELECT 1", "1")
	res := c.ExecParams(ctx, "DEALLOCATE s1", nil, nil, nil, nil).Read()
	if res.Err != nil || res.CommandTag.String() != "DEALLOCATE" {
		t.Fatalf("DEALLOCATE s1 (extended protocol): %q, %v", res.CommandTag, res.Err)
	}
	prepareAndRun("SELECT 2", "2")

	if _, err := c.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	results, err := c.Exec(ctx, "DEALLOCATE PREPARE s1").ReadAll()
	if err != nil || len(results) != 1 || results[0].CommandTag.String() != "DEALLOCATE" {
		t.Fatalf("DEALLOCATE PREPARE s1 (simple protocol, in a transaction): %v", err)
	}
	if st := c.TxStatus(); st != 'T' {
		t.Fatalf("transaction status after DEALLOCATE in a transaction: %c", st)
	}
	prepareAndRun("SELECT 3", "3")
	if _, err := c.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		t.Fatal(err)
	}

	if res := c.ExecParams(ctx, "DEALLOCATE nothing", nil, nil, nil, nil).Read(); codeOf(res.Err) != "26000" {
		t.Fatalf("DEALLOCATE of an unknown name (extended protocol): %v, want 26000", res.Err)
	}
	if _, err := c.Exec(ctx, "DEALLOCATE nothing").ReadAll(); codeOf(err) != "26000" {
		t.Fatalf("DEALLOCATE of an unknown name (simple protocol): %v, want 26000", err)
	}
	results, err = c.Exec(ctx, "BEGIN; PREPARE sq AS SELECT 4; EXECUTE sq; DEALLOCATE sq; COMMIT").ReadAll()
	if err != nil || len(results) != 5 || string(results[2].Rows[0][0]) != "4" || results[3].CommandTag.String() != "DEALLOCATE" {
		t.Fatalf("SQL PREPARE, EXECUTE, DEALLOCATE in a transaction: %v", err)
	}
	// s1 is still the client's.
	if res := c.ExecPrepared(ctx, "s1", nil, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "3" {
		t.Fatalf("s1 at the end: %v, %v", res.Rows, res.Err)
	}
}
