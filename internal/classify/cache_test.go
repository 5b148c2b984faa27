package classify

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestCacheBoundsEntries(t *testing.T) {
	for _, size := range []int{1, 100, 1000, 10_000} {
		c := New(Options{CacheSize: size})
		for i := range 3 * size {
			c.Classify(fmt.Appendf(nil, "SELECT %d", i))
		}
		// Shards round the size up to a whole number of entries each.
		limit := size + 2*(size/128+1)
		if n := c.cache.Len(); n > limit || n == 0 {
			t.Errorf("CacheSize %d: %d entries cached, want 1..%d", size, n, limit)
		}
	}
}

func TestCacheBoundsBytes(t *testing.T) {
	c := New(Options{CacheSize: 100, CacheBytes: 64 << 10, MaxLength: 1 << 20})
	long := "SELECT 1 AS " + strings.Repeat("x", 100<<10)
	if r1, r2 := c.Classify([]byte(long)), c.Classify([]byte(long)); r1 == r2 || r1.Write {
		t.Fatal("a text larger than the byte budget was cached")
	}
	for i := range 100 {
		c.Classify(fmt.Appendf(nil, "SELECT 1 AS %s%d", strings.Repeat("y", 4<<10), i))
	}
	if bytes := c.cache.Bytes(); bytes > 64<<10 {
		t.Fatalf("%d bytes cached, budget %d", c.cache.Bytes(), 64<<10)
	}
}

func TestCacheKeepsHotEntries(t *testing.T) {
	c := New(Options{CacheSize: 64})
	hot := []byte("SELECT * FROM hot WHERE id = $1")
	first := c.Classify(hot)
	for i := range 10_000 {
		c.Classify(fmt.Appendf(nil, "SELECT %d", i))
		if c.Classify(hot) != first {
			t.Fatalf("the hot entry was evicted after %d other texts", i+1)
		}
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := New(Options{CacheSize: 50})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				q := fmt.Sprintf("SELECT * FROM t%d WHERE id = %d", (g+i)%80, i%3)
				r := c.Classify([]byte(q))
				if r.Write || len(r.Reads) != 1 || r.Reads[0] != fmt.Sprintf("t%d", (g+i)%80) {
					t.Errorf("%q: %+v", q, r)
					return
				}
			}
		})
	}
	wg.Wait()
}
