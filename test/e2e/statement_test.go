package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStatementPooling: pool_mode = "statement", PgBouncer's statement pooling. Clients share
// servers statement by statement, prepared statements included; a simple Query that opens and
// ends its transaction is one request and works; a request that leaves a transaction open ends
// the session with PgBouncer's FATAL, and the server is closed (its transaction rolled back),
// not handed to the next client.
func TestStatementPooling(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{Mode: "statement", PoolSize: 1})
	mustExec(t, direct(t), "DROP TABLE IF EXISTS stmt_mode; CREATE TABLE stmt_mode (id int PRIMARY KEY, v text); GRANT ALL ON stmt_mode TO "+appUser)

	a, b := connect(t, s), connect(t, s)
	for i, c := range []*pgx.Conn{a, b, a, b} {
		var n int
		// pgx's default mode: named prepared statements, on the one server both share.
		if err := c.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("client %d: %d, %v", i%2, n, err)
		}
	}
	if _, err := a.Exec(ctx, "INSERT INTO stmt_mode VALUES (1, 'a')"); err != nil {
		t.Fatal(err)
	}
	simple := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	if _, err := simple.Exec(ctx, "BEGIN; INSERT INTO stmt_mode VALUES (2, 'b'); COMMIT"); err != nil {
		t.Fatalf("a transaction within one simple Query: %v", err)
	}

	// BEGIN alone: FATAL, the session ends, nothing of the transaction stays.
	victim := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	_, err := victim.Exec(ctx, "BEGIN; INSERT INTO stmt_mode VALUES (3, 'c')")
	if code := codeOf(err); code != "08P01" || !strings.Contains(err.Error(), "statement pooling") {
		t.Fatalf("a request that leaves a transaction open: %v, want FATAL 08P01", err)
	}
	if err := victim.Ping(ctx); err == nil {
		t.Fatal("the session went on after the FATAL")
	}
	checkFor(t, 5*time.Second, func() error {
		var n int
		if err := direct(t).QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state LIKE 'idle in transaction%'", appUser).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d servers idle in transaction", n)
		}
		return nil
	})
	var rows int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM stmt_mode").Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("rows after the refused transaction: %d, %v; want 2 (row 3 rolled back)", rows, err)
	}
	// pgx's Begin is one request too: refused the same way.
	c := connect(t, s)
	if _, err := c.Begin(ctx); codeOf(err) != "08P01" {
		t.Fatalf("pgx Begin: %v, want FATAL 08P01", err)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("another client after the refusals: %v", err)
	}
}
