package merge

import "sync"

// cache maps query texts to their plans, bounded by entries and bytes, evicting the oldest
// first. Plans are made only for queries that span shards, which are rare next to single-shard
// ones and cost a round trip to every shard, so a mutex is cheap enough here.
type cache struct {
	mu       sync.Mutex
	m        map[string]*cacheEntry
	order    []*cacheEntry // insertion order; order[head:] are live
	head     int
	bytes    int
	maxCount int
	maxBytes int
}

type cacheEntry struct {
	key  string
	plan *Plan
	size int
}

func newCache(size, budget int) *cache {
	return &cache{m: map[string]*cacheEntry{}, maxCount: size, maxBytes: budget}
}

func (c *cache) get(text []byte) *Plan {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[string(text)]; e != nil {
		return e.plan
	}
	return nil
}

func (c *cache) put(text string, p *Plan, size int) {
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[text] != nil {
		return
	}
	for len(c.m) > 0 && (len(c.m) >= c.maxCount || c.bytes+size > c.maxBytes) {
		old := c.order[c.head]
		c.order[c.head] = nil
		c.head++
		delete(c.m, old.key)
		c.bytes -= old.size
	}
	if c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	e := &cacheEntry{key: text, plan: p, size: size}
	c.m[text] = e
	c.order = append(c.order, e)
	c.bytes += size
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
