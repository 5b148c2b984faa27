package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCacheRedisOutage: with Redis killed, or frozen (SIGSTOP: a hung or swapping server, a
// frozen host, which keeps its connections open and answers nothing, worse than a dead one that
// fails fast), reads and writes go on, each within a bounded time, with the truth's results;
// once Redis is back, hits come back and nothing stale is served.
func TestCacheRedisOutage(t *testing.T) {
	_, r := cacheServers(t)
	for _, tc := range []struct {
		name     string
		down, up func() error
	}{
		{"killed", r.Kill, r.Start},
		{"frozen", r.Pause, r.Resume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, direct := startCachedSluice(t)
			ctx := context.Background()
			table := "cache_outage_" + strings.ToLower(tc.name)
			if _, err := direct.Exec(ctx, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, v int);
				ALTER TABLE %[1]s OWNER TO app;
				INSERT INTO %[1]s SELECT g, g FROM generate_series(1, 5) g`, table)); err != nil {
				t.Fatal(err)
			}
			conn := simpleConn(t, s)
			q := fmt.Sprintf("SELECT id, v FROM %s ORDER BY id", table)
			waitCached(t, conn, direct, q)

			if err := tc.down(); err != nil {
				t.Fatal(err)
			}
			up := false
			defer func() {
				if !up {
					_ = tc.up()
				}
			}()
			// Each statement may wait for Redis up to redis_timeout (and a little more while
			// the breaker learns that Redis is gone), never for Redis itself.
			const bound = 2 * time.Second
			timed := func(what string, f func()) {
				t.Helper()
				start := time.Now()
				f()
				if d := time.Since(start); d > bound {
					t.Errorf("%s with Redis %s took %s", what, tc.name, d.Round(time.Millisecond))
				}
			}
			start := time.Now()
			for i := 0; i < 10; i++ {
				timed("a read", func() { sameAsTruth(t, conn, direct, q, "Redis "+tc.name) })
				timed("a write", func() {
					if _, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id <= %d", table, i%5+1)); err != nil {
						t.Fatalf("a write with Redis %s failed: %v", tc.name, err)
					}
				})
				timed("a read after a write", func() { sameAsTruth(t, conn, direct, q, "Redis "+tc.name+", after a write") })
			}
			t.Logf("30 statements with Redis %s took %s", tc.name, time.Since(start).Round(time.Millisecond))

			if err := tc.up(); err != nil {
				t.Fatal(err)
			}
			up = true
			sameAsTruth(t, conn, direct, q, "Redis back")
			waitCached(t, conn, direct, q)
			if _, err := conn.Exec(ctx, "UPDATE "+table+" SET v = 0"); err != nil {
				t.Fatal(err)
			}
			sameAsTruth(t, conn, direct, q, "Redis back, after a write")
		})
	}
}
