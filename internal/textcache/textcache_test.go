package textcache

import (
	"fmt"
	"sync"
	"testing"
)

func TestBounds(t *testing.T) {
	for _, size := range []int{1, 100, 1000, 10_000} {
		c := New[int](size, 1<<30)
		for i := range 3 * size {
			c.Put(fmt.Sprint("q", i), i, 10)
		}
		if n, limit := c.Len(), size+2*(size/shardEntries+1); n == 0 || n > limit {
			t.Errorf("size %d: %d entries; want 1..%d", size, n, limit)
		}
	}
	c := New[int](1000, 64<<10)
	for i := range 1000 {
		c.Put(fmt.Sprint("q", i), i, 1024)
	}
	if b := c.Bytes(); b > 64<<10 {
		t.Errorf("%d bytes cached; budget %d", b, 64<<10)
	}
	c.Put("huge", 1, 1<<20)
	if _, ok := c.Get([]byte("huge")); ok {
		t.Error("an entry over the budget was cached")
	}
}

func TestGetPut(t *testing.T) {
	c := New[string](100, 1<<20)
	if _, ok := c.Get([]byte("a")); ok {
		t.Fatal("empty cache hit")
	}
	c.Put("a", "first", 1)
	c.Put("a", "second", 1) // the first stays
	if v, ok := c.Get([]byte("a")); !ok || v != "first" {
		t.Fatalf("Get = %q, %v", v, ok)
	}
	key := []byte("a")
	if n := testing.AllocsPerRun(100, func() { c.Get(key) }); n != 0 {
		t.Errorf("a hit allocates %v times", n)
	}
}

func TestReplace(t *testing.T) {
	c := New[string](100, 1<<20)
	c.Put("a", "first", 10)
	c.Replace("a", "second", 30)
	if v, ok := c.GetString("a"); !ok || v != "second" {
		t.Fatalf("GetString after Replace = %q, %v", v, ok)
	}
	if n, b := c.Len(), c.Bytes(); n != 1 || b != 30 {
		t.Errorf("after Replace: %d entries, %d bytes; want 1, 30", n, b)
	}
	c.Replace("b", "new", 5) // nothing to replace: an insert
	if v, ok := c.Get([]byte("b")); !ok || v != "new" {
		t.Errorf("Get after Replace of a new text = %q, %v", v, ok)
	}
	if n := testing.AllocsPerRun(100, func() { c.GetString("a") }); n != 0 {
		t.Errorf("a GetString hit allocates %v times", n)
	}
}

func TestHotEntriesStay(t *testing.T) {
	c := New[int](64, 1<<20)
	c.Put("hot", 1, 1)
	for i := range 1000 {
		c.Get([]byte("hot"))
		c.Put(fmt.Sprint("cold", i), i, 1)
	}
	if _, ok := c.Get([]byte("hot")); !ok {
		t.Error("an entry hit between every insert was evicted")
	}
}

func TestConcurrent(t *testing.T) {
	c := New[int](256, 1<<20)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := fmt.Sprint("q", (i*7+g)%500)
				if v, ok := c.Get([]byte(k)); ok && fmt.Sprint("q", v) != k {
					t.Errorf("%s holds %d", k, v)
					return
				}
				var n int
				fmt.Sscanf(k, "q%d", &n)
				c.Put(k, n, 8)
			}
		}()
	}
	wg.Wait()
}
