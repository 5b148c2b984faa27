package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestQueryThatWaitedIsSentAsWritten: a query that waited for a server reaches it as the client
// wrote it, also when the client sent more behind it than sluice's read buffer holds. After the
// wait, sluice reads what the client sent meanwhile, to see whether it left; that read made room
// by moving the buffered bytes, under the query sluice was about to send: the server got a
// message cut at the wrong place and the client a protocol error (found with the race detector
// in TestChaos).
func TestQueryThatWaitedIsSentAsWritten(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{Mode: "transaction", PoolSize: 1})
	holder := connect(t, s)
	tx, err := holder.Begin(ctx) // takes the only server
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	c := dialRaw(t, s)
	c.login()
	// A Sync first, which sluice answers itself, so the query does not start at the front of
	// the buffer; then the query, and a second one that fills the buffer and goes on.
	first := "SELECT '" + strings.Repeat("a", 300) + "' AS first"
	second := "SELECT '" + strings.Repeat("b", 1000) + "' AS second"
	c.send(&pgproto3.Sync{}, &pgproto3.Query{String: first}, &pgproto3.Query{String: second})
	time.Sleep(200 * time.Millisecond) // the first query waits for the server
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c.awaitReady(1) // the Sync's
	for i, want := range []string{strings.Repeat("a", 300), strings.Repeat("b", 1000)} {
		var rows []string
		for done := false; !done; {
			m, err := c.receive(10 * time.Second)
			if err != nil {
				t.Fatalf("query %d: %v", i+1, err)
			}
			switch m := m.(type) {
			case *pgproto3.DataRow:
				rows = append(rows, string(m.Values[0]))
			case *pgproto3.ErrorResponse:
				t.Fatalf("query %d: %s (SQLSTATE %s)", i+1, m.Message, m.Code)
			case *pgproto3.ReadyForQuery:
				done = true
			}
		}
		if len(rows) != 1 || rows[0] != want {
			t.Fatalf("query %d returned %d rows: %.40q", i+1, len(rows), rows)
		}
	}
}
