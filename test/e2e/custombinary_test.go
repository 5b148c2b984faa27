package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// buildCustomBinary builds examples/custom-binary, its own Go module, with go build in its
// directory, into a temporary directory. The module's go.mod and go.sum are copied there and
// used through -modfile, so a change to sluice's own requirements (which the replace directive
// pulls in) is resolved from the module cache without writing to the example's files.
func buildCustomBinary(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "custom-binary"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(tmp, "sluice-custom")
	cmd := exec.Command("go", "build", "-modfile", filepath.Join(tmp, "go.mod"), "-mod=mod", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", dir, err, out)
	}
	return bin
}

// TestCustomBinaryJSONForeignKey builds the custom binary of examples/custom-binary (sluice plus
// the json_fk plugin, in its own module) and runs it: an INSERT or UPDATE whose
// payload->>'user_id' has no users row is refused with 23503 and the plugin's message, in both
// protocols, and good ones go through.
func TestCustomBinaryJSONForeignKey(t *testing.T) {
	bin := buildCustomBinary(t)
	ctx := context.Background()
	d := direct(t)
	for _, q := range []string{
		"DROP TABLE IF EXISTS jsonfk_events, jsonfk_users",
		"CREATE TABLE jsonfk_users (id bigint PRIMARY KEY)",
		"CREATE TABLE jsonfk_events (id serial PRIMARY KEY, payload jsonb, note text)",
		"INSERT INTO jsonfk_users VALUES (1), (2)",
		"GRANT ALL ON jsonfk_users, jsonfk_events, jsonfk_events_id_seq TO app",
	} {
		if _, err := d.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s := startBinary(t, bin, poolConfig{General: `
[plugins.json_fk]
table = "jsonfk_events"
column = "payload"
key = "user_id"
ref_table = "jsonfk_users"
ref_column = "id"
`})
	const violation = `insert or update on table "jsonfk_events" violates the JSON foreign key payload->>'user_id': key (user_id)=(%s) is not present in table "jsonfk_users"`
	type tcase struct {
		name string
		sql  string
		args []any
		code string // "" for success
		msg  string // the message's key, for 23503
	}
	simple := []tcase{
		{"good literal", `INSERT INTO jsonfk_events (payload) VALUES ('{"user_id": 1}')`, nil, "", ""},
		{"bad literal", `INSERT INTO jsonfk_events (payload) VALUES ('{"user_id": 999}')`, nil, "23503", "999"},
		{"bad among rows", `INSERT INTO jsonfk_events (payload, note) VALUES ('{"user_id": 2}', 'a'), ('{"user_id": "77"}'::jsonb, 'b')`, nil, "23503", "77"},
		{"no column list", `INSERT INTO jsonfk_events VALUES (DEFAULT, '{"user_id": 998}')`, nil, "23503", "998"},
		{"not a number", `INSERT INTO jsonfk_events (payload) VALUES ('{"user_id": "abc"}')`, nil, "23503", "abc"},
		{"no key is no reference", `INSERT INTO jsonfk_events (payload) VALUES ('{"other": 5}')`, nil, "", ""},
		{"null payload", `INSERT INTO jsonfk_events (payload) VALUES (NULL)`, nil, "", ""},
		{"good update", `UPDATE jsonfk_events SET payload = '{"user_id": 2}' WHERE payload->>'user_id' = '1'`, nil, "", ""},
		{"bad update", `UPDATE jsonfk_events SET payload = '{"user_id": 997}'`, nil, "23503", "997"},
		{"other column", `UPDATE jsonfk_events SET note = 'x'`, nil, "", ""},
		{"expression", `UPDATE jsonfk_events SET payload = payload || '{"user_id": 996}'`, nil, "0A000", ""},
		{"insert select", `INSERT INTO jsonfk_events (payload) SELECT '{"user_id": 995}'::jsonb`, nil, "0A000", ""},
		{"in a CTE", `WITH x AS (INSERT INTO jsonfk_events (payload) VALUES ('{"user_id": 994}') RETURNING id) SELECT id FROM x`, nil, "23503", "994"},
		{"reads pass", `SELECT count(*) FROM jsonfk_events WHERE payload->>'user_id' = '999'`, nil, "", ""},
	}
	extended := []tcase{
		{"good parameter", `INSERT INTO jsonfk_events (payload) VALUES ($1)`, []any{`{"user_id": 1}`}, "", ""},
		{"bad parameter", `INSERT INTO jsonfk_events (payload) VALUES ($1)`, []any{`{"user_id": 990}`}, "23503", "990"},
		{"bad cast parameter", `INSERT INTO jsonfk_events (note, payload) VALUES ($1, $2::jsonb)`, []any{"n", `{"user_id": 989}`}, "23503", "989"},
		{"bad parameter update", `UPDATE jsonfk_events SET payload = $1 WHERE id = $2`, []any{`{"user_id": 988}`, 1}, "23503", "988"},
		{"good parameter update", `UPDATE jsonfk_events SET payload = $1 WHERE id = $2`, []any{`{"user_id": 2}`, 1}, "", ""},
		{"bad literal in Parse", `INSERT INTO jsonfk_events (payload, note) VALUES ('{"user_id": 987}', $1)`, []any{"n"}, "23503", "987"},
		{"null parameter", `INSERT INTO jsonfk_events (payload) VALUES ($1)`, []any{nil}, "", ""},
	}
	run := func(t *testing.T, conn *pgx.Conn, cases []tcase) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := conn.Exec(ctx, tc.sql, tc.args...)
				if got := codeOf(err); got != tc.code {
					t.Fatalf("%s: %v; want SQLSTATE %q", tc.sql, err, tc.code)
				}
				if tc.code == "23503" {
					want := strings.Replace(violation, "%s", tc.msg, 1)
					if !strings.Contains(err.Error(), want) {
						t.Errorf("message %q, want %q", err, want)
					}
				}
			})
		}
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
			run(t, conn, simple)
			run(t, conn, extended)
			var n int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
				t.Errorf("after the refusals: %d, %v", n, err)
			}
		})
	}
	// Only good rows got in.
	var bad int
	if err := d.QueryRow(ctx, `SELECT count(*) FROM jsonfk_events e
		WHERE payload ? 'user_id' AND NOT EXISTS (SELECT 1 FROM jsonfk_users u WHERE u.id::text = e.payload->>'user_id')`).Scan(&bad); err != nil || bad != 0 {
		t.Errorf("rows with a dangling user_id: %d, %v", bad, err)
	}

	// A statement longer than max_length that names the table is refused, not parsed (a nested
	// expression this deep would overflow pg_query's stack), and sluice goes on.
	conn := connect(t, s)
	long := "INSERT INTO jsonfk_events (payload) VALUES ('{}') RETURNING " + strings.Repeat("1+", 30_000) + "1"
	if _, err := conn.Exec(ctx, long); codeOf(err) != "0A000" {
		t.Errorf("long statement: %v; want 0A000", err)
	}
	selectOne(t, s)
}
