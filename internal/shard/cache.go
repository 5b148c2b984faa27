package shard

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

// cache maps query texts to their Statements. It has the design of internal/classify's cache
// (which this package may not import: both are leaves), for the same read-mostly load:
//
//   - A lookup takes no lock and does not allocate: each shard of the cache publishes an
//     immutable map through an atomic pointer, indexed with m[string(b)].
//   - An insert copies its shard's small map under the shard's mutex (copy-on-write).
//   - Eviction is CLOCK (second chance) per shard, bounded by entries and bytes.
type cache struct {
	seed   maphash.Seed
	mask   uint64
	shards []cacheShard
}

const shardEntries = 128

type cacheShard struct {
	m atomic.Pointer[map[string]*cacheEntry]

	mu       sync.Mutex // serialises inserts; guards the fields below
	ring     []*cacheEntry
	hand     int
	bytes    int
	maxCount int
	maxBytes int

	_ [64]byte // keep neighbouring shards' hot pointers off one cache line
}

type cacheEntry struct {
	key  string
	st   *Statement
	size int
	ref  atomic.Bool
}

func newCache(size, budget int) *cache {
	n := (size + shardEntries - 1) / shardEntries
	n = 1 << bits.Len(uint(n-1))
	c := &cache{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]cacheShard, n)}
	for i := range c.shards {
		s := &c.shards[i]
		s.maxCount = max(1, (size+n-1)/n)
		s.maxBytes = max(1, budget/n)
		empty := map[string]*cacheEntry{}
		s.m.Store(&empty)
	}
	return c
}

func (c *cache) get(query []byte) *Statement {
	e := (*c.shards[maphash.Bytes(c.seed, query)&c.mask].m.Load())[string(query)]
	if e == nil {
		return nil
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.st
}

// put caches st for text, unless another goroutine cached the text first (both are equal).
func (c *cache) put(text string, st *Statement, size int) {
	s := &c.shards[maphash.String(c.seed, text)&c.mask]
	if size > s.maxBytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	if old[text] != nil {
		return
	}
	e := &cacheEntry{key: text, st: st, size: size}
	var evicted []*cacheEntry
	for len(s.ring) > 0 && (len(s.ring) >= s.maxCount || s.bytes+size > s.maxBytes) {
		victim := s.ring[s.hand]
		if victim.ref.Load() {
			victim.ref.Store(false)
			s.hand = (s.hand + 1) % len(s.ring)
			continue
		}
		evicted = append(evicted, victim)
		s.bytes -= victim.size
		last := len(s.ring) - 1
		s.ring[s.hand] = s.ring[last]
		s.ring[last] = nil
		s.ring = s.ring[:last]
		if s.hand >= len(s.ring) {
			s.hand = 0
		}
	}
	s.ring = append(s.ring, e)
	s.bytes += size

	m := make(map[string]*cacheEntry, len(old)+1-len(evicted))
	for k, v := range old {
		m[k] = v
	}
	for _, v := range evicted {
		delete(m, v.key)
	}
	m[text] = e
	s.m.Store(&m)
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		n += len(*c.shards[i].m.Load())
	}
	return n
}
