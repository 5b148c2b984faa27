package e2e

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicepg/sluice/internal/frontend"
)

// TestPanicEndsOnlyItsSession: a bug that panics while serving one client (in its login, in the
// goroutine reading the client, or in the one reading its server) ends that client's connection
// and no other: sluice stays up, a client connected before goes on, and the failed client's server
// does not stay out of the pool (the next client needs its slot).
func TestPanicEndsOnlyItsSession(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, mode, where string
	}{
		{"login", "transaction", "login"},
		{"reader, transaction mode", "transaction", "reader"},
		{"reader, session mode", "session", "reader"},
		{"pump, session mode", "session", "pump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Two servers: one for the client that stays, one for the failing client and then
			// for the next, which gets it only if the failed session gave its slot back.
			s := startSluice(t, poolConfig{Mode: tc.mode, PoolSize: 2})
			var armed atomic.Bool
			hook := func(where string, _ []byte) {
				if where == tc.where && armed.CompareAndSwap(true, false) {
					panic("injected by TestPanicEndsOnlyItsSession")
				}
			}
			frontend.PanicHook.Store(&hook)
			t.Cleanup(func() { frontend.PanicHook.Store(nil) })
			before := frontend.SurvivedPanics.Load()

			stays := connect(t, s)
			if _, err := stays.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			if tc.where == "login" {
				armed.Store(true)
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if c, err := pgx.Connect(cctx, s.URL()); err == nil {
					c.Close(ctx)
					t.Fatal("the login that panicked succeeded")
				}
			} else {
				fails := connect(t, s)
				if tc.where == "reader" {
					if _, err := fails.Exec(ctx, "SELECT 1"); err != nil {
						t.Fatal(err)
					}
				}
				armed.Store(true)
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if _, err := fails.Exec(qctx, "SELECT 2"); err == nil {
					t.Fatal("the query whose session panicked succeeded")
				} else if qctx.Err() != nil {
					t.Fatalf("the client whose session panicked waited for its reply: %v", err)
				}
			}
			if got := frontend.SurvivedPanics.Load() - before; got != 1 {
				t.Fatalf("%d panics survived, want 1", got)
			}
			var n int
			if err := stays.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
				t.Fatalf("the client that stayed: %d, %v", n, err)
			}
			next := connectConfig(t, s, func(c *pgx.ConnConfig) { c.ConnectTimeout = 10 * time.Second })
			nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := next.QueryRow(nctx, "SELECT 43").Scan(&n); err != nil || n != 43 {
				t.Fatalf("the next client: %d, %v", n, err)
			}
		})
	}
}
