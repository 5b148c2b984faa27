package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestCacheRedisFrozen: a Redis that stops answering without closing its connections (SIGSTOP:
// a hung or swapping server, a frozen host) is worse than a dead one, which fails fast. Reads
// and writes must go on, each within a bounded time, with the truth's results; once Redis
// answers again, hits come back and nothing stale is served.
func TestCacheRedisFrozen(t *testing.T) {
	s, direct := startCachedSluice(t)
	_, r := cacheServers(t)
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE cache_frozen (id int PRIMARY KEY, v int);
		ALTER TABLE cache_frozen OWNER TO app;
		INSERT INTO cache_frozen SELECT g, g FROM generate_series(1, 5) g`); err != nil {
		t.Fatal(err)
	}
	conn := simpleConn(t, s)
	const q = "SELECT id, v FROM cache_frozen ORDER BY id"
	waitCached(t, conn, direct, q)

	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = r.Resume()
		}
	}()
	// Each statement may wait for Redis up to redis_timeout (and a little more while the
	// breaker learns that Redis is gone), never for Redis itself.
	const bound = 2 * time.Second
	timed := func(what string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		if d := time.Since(start); d > bound {
			t.Errorf("%s with Redis frozen took %s", what, d.Round(time.Millisecond))
		}
	}
	start := time.Now()
	for i := 0; i < 10; i++ {
		timed("a read", func() { sameAsTruth(t, conn, direct, q, "Redis frozen") })
		timed("a write", func() {
			if _, err := conn.Exec(ctx, fmt.Sprintf("UPDATE cache_frozen SET v = v + 1 WHERE id <= %d", i%5+1)); err != nil {
				t.Fatalf("a write with Redis frozen failed: %v", err)
			}
		})
		timed("a read after a write", func() { sameAsTruth(t, conn, direct, q, "Redis frozen, after a write") })
	}
	t.Logf("30 statements with Redis frozen took %s", time.Since(start).Round(time.Millisecond))

	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	sameAsTruth(t, conn, direct, q, "Redis back")
	waitCached(t, conn, direct, q)
	if _, err := conn.Exec(ctx, "UPDATE cache_frozen SET v = 0"); err != nil {
		t.Fatal(err)
	}
	sameAsTruth(t, conn, direct, q, "Redis back, after a write")
}
