package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestResetReturnsToTheStartupSettings: a setting the client gave at login is its session
// default, and RESET, RESET ALL, SET ... TO DEFAULT and DISCARD ALL bring it back, as on a direct
// connection, not the server connection's own default (pg_regress's date, timestamp and horology
// tests RESET DateStyle after logging in with PGDATESTYLE). The client is told the value too.
// A RESET undone by its transaction's rollback, or followed by a SET, restores nothing.
func TestResetReturnsToTheStartupSettings(t *testing.T) {
	const startup = "SQL, DMY"
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			s := startPooler(t, poolConfig{Mode: mode, PoolSize: 1})
			c := connectConfig(t, s, func(cfg *pgx.ConnConfig) {
				cfg.RuntimeParams["DateStyle"] = startup
				cfg.RuntimeParams["options"] = "-c statement_timeout=4321"
			})
			for _, tc := range []struct {
				query, want string
				fails       bool
			}{
				{query: "RESET DateStyle", want: startup},
				{query: "RESET ALL", want: startup},
				{query: "SET DateStyle TO DEFAULT", want: startup},
				{query: "DISCARD ALL", want: startup},
				{query: "SET DateStyle = 'German'; RESET datestyle", want: startup},
				{query: "RESET DateStyle; SET DateStyle = 'German'", want: "German, DMY"},
				{query: "BEGIN; RESET DateStyle; ROLLBACK", want: "ISO, DMY"},
				{query: "RESET DateStyle; SELECT 1/0", want: "ISO, DMY", fails: true},
			} {
				ctx := context.Background()
				if _, err := c.Exec(ctx, "SET DateStyle = 'ISO'", pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatalf("SET DateStyle: %v", err)
				}
				_, err := c.Exec(ctx, tc.query, pgx.QueryExecModeSimpleProtocol)
				if (err != nil) != tc.fails {
					t.Fatalf("%s: %v", tc.query, err)
				}
				if got := queryString(t, c, "SHOW DateStyle"); got != tc.want {
					t.Errorf("after %s: SHOW DateStyle = %q, want %q", tc.query, got, tc.want)
				}
				if got := c.PgConn().ParameterStatus("DateStyle"); got != tc.want {
					t.Errorf("after %s: the client was told DateStyle %q, want %q", tc.query, got, tc.want)
				}
				if mode == "session" {
					// A setting no ParameterStatus reports: transaction mode does not carry it
					// past a RESET (see restoreQuery).
					if got := queryString(t, c, "SHOW statement_timeout"); got != "4321ms" {
						t.Errorf("after %s: SHOW statement_timeout = %q, want 4321ms", tc.query, got)
					}
				}
			}
		})
	}
}

// TestResetThenCopyFromStdinInOneQuery: a Query that resets a login setting and then reads COPY
// data gets no restore behind it, which the server would take for the COPY's data and fail.
func TestResetThenCopyFromStdinInOneQuery(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 1})
	c := connectConfig(t, s, func(cfg *pgx.ConnConfig) {
		cfg.RuntimeParams["DateStyle"] = "SQL, DMY"
	})
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TEMP TABLE reset_copy (n int)"); err != nil {
		t.Fatal(err)
	}
	tag, err := c.PgConn().CopyFrom(ctx, strings.NewReader("1\n2\n"), "RESET DateStyle; COPY reset_copy FROM STDIN")
	if err != nil {
		t.Fatalf("RESET and COPY FROM STDIN in one Query: %v", err)
	}
	if tag.RowsAffected() != 2 {
		t.Errorf("COPY tag %q, want 2 rows", tag)
	}
	if got := queryString(t, c, "SELECT count(*)::text FROM reset_copy"); got != "2" {
		t.Errorf("%s rows copied, want 2", got)
	}
}
