package cache

import (
	"fmt"
	"testing"
)

// TestCounterCache: a value is held until it expires or is invalidated; a value read before an
// invalidation is not stored after it; an invalidation without keys drops everything; the
// count of entries stays bounded.
func TestCounterCache(t *testing.T) {
	c := newCounterCache(1 << 10)
	v := counter{val: "7", exp: 100}
	c.put("k", v, c.seq.Load())
	if got, ok := c.get("k", 50); !ok || got.val != "7" {
		t.Fatalf("get = %v, %v; want 7", got, ok)
	}
	if _, ok := c.get("k", 100); ok {
		t.Error("served at its expiry")
	}

	since := c.seq.Load() // a read starts
	c.invalidate([]string{"k"})
	c.put("k", counter{val: "stale", exp: 100}, since) // its answer comes after the invalidation
	if got, ok := c.get("k", 50); ok {
		t.Errorf("a value read before an invalidation was stored after it: %v", got)
	}

	c.put("a", v, c.seq.Load())
	c.put("b", v, c.seq.Load())
	c.invalidate([]string{"a"})
	if _, ok := c.get("a", 50); ok {
		t.Error("an invalidated key is still held")
	}
	if _, ok := c.get("b", 50); !ok {
		t.Error("an invalidation of another key dropped b")
	}
	c.invalidate(nil)
	if _, ok := c.get("b", 50); ok {
		t.Error("an invalidation without keys left b")
	}

	for i := range 10_000 {
		c.put(fmt.Sprint("row", i), v, c.seq.Load())
	}
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].m)
	}
	if n > 1<<10 {
		t.Errorf("%d entries held; bound %d", n, 1<<10)
	}
}
