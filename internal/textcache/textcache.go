// Package textcache is a bounded, concurrent map from query texts to what was derived from them
// (a classification, a sharding analysis, a merge plan): the one cache that keeps sluice from
// parsing a text twice.
package textcache

import (
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// Cache maps query texts to values of type V. It is built for a read-mostly load from many
// goroutines, where the same few texts are looked up again and again (pgbench -S: one text,
// every client):
//
//   - A lookup takes no lock and writes no shared memory in the common case: each shard
//     publishes an immutable map through an atomic pointer, and the lookup indexes it with
//     m[string(b)], which Go compiles without converting (no allocation).
//   - An insert copies its shard's map (copy-on-write) under the shard's mutex. Shards are
//     small (about shardEntries), so the copy costs a few microseconds, next to the tens of
//     microseconds of the parse that produced the entry.
//   - Eviction is CLOCK (second chance) per shard: a hit sets the entry's referenced bit if it
//     is not set already (so a hot entry costs one read of the bit), and the hand clears bits
//     until it finds an entry not used since its last pass.
//   - Both the number of entries and their bytes (as the caller sizes them) are bounded per
//     shard.
type Cache[V any] struct {
	seed   maphash.Seed
	mask   uint64
	shards []cacheShard[V]
}

// shardEntries is the target number of entries per shard.
const shardEntries = 128

type cacheShard[V any] struct {
	m atomic.Pointer[map[string]*cacheEntry[V]]

	mu       sync.Mutex // serialises inserts; guards the fields below
	ring     []*cacheEntry[V]
	hand     int
	bytes    int
	maxCount int
	maxBytes int

	_ [64]byte // keep neighbouring shards' hot pointers off one cache line
}

type cacheEntry[V any] struct {
	key  string
	val  V
	size int
	ref  atomic.Bool
}

// New returns a Cache of about size entries and budget bytes in all.
func New[V any](size, budget int) *Cache[V] {
	size, budget = max(size, 1), max(budget, 1)
	n := (size + shardEntries - 1) / shardEntries
	n = 1 << bits.Len(uint(n-1)) // next power of two
	c := &Cache[V]{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]cacheShard[V], n)}
	for i := range c.shards {
		s := &c.shards[i]
		s.maxCount = max(1, (size+n-1)/n)
		s.maxBytes = max(1, budget/n)
		empty := map[string]*cacheEntry[V]{}
		s.m.Store(&empty)
	}
	return c
}

func (c *Cache[V]) shard(b []byte) *cacheShard[V] {
	return &c.shards[maphash.Bytes(c.seed, b)&c.mask]
}

// Get returns the value cached for text. It does not allocate and takes no lock.
func (c *Cache[V]) Get(text []byte) (v V, ok bool) {
	e := (*c.shard(text).m.Load())[string(text)]
	if e == nil {
		return v, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.val, true
}

// GetString is Get for a text held as a string.
func (c *Cache[V]) GetString(text string) (v V, ok bool) {
	e := (*c.shards[maphash.String(c.seed, text)&c.mask].m.Load())[text]
	if e == nil {
		return v, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.val, true
}

// Put caches v for text; size is what the entry holds in bytes (text included), as the caller
// estimates it. When another goroutine cached the same text first, its value stays: values
// derived from one text are equal. An entry larger than a shard's share of the budget is not
// cached.
func (c *Cache[V]) Put(text string, v V, size int) { c.put(text, v, size, false) }

// Replace is Put for a value that supersedes the one cached for text, if any (a newer copy of
// an entry that expired).
func (c *Cache[V]) Replace(text string, v V, size int) { c.put(text, v, size, true) }

func (c *Cache[V]) put(text string, v V, size int, replace bool) {
	// maphash.String hashes as maphash.Bytes does, so the text lands in the shard get uses.
	s := &c.shards[maphash.String(c.seed, text)&c.mask]
	if size > s.maxBytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	var evicted []*cacheEntry[V]
	if prev := old[text]; prev != nil {
		if !replace {
			return
		}
		s.remove(slices.Index(s.ring, prev))
		evicted = append(evicted, prev)
	}
	e := &cacheEntry[V]{key: text, val: v, size: size}
	for len(s.ring) > 0 && (len(s.ring) >= s.maxCount || s.bytes+size > s.maxBytes) {
		victim := s.ring[s.hand]
		if victim.ref.Load() {
			victim.ref.Store(false)
			s.hand = (s.hand + 1) % len(s.ring)
			continue
		}
		evicted = append(evicted, victim)
		s.remove(s.hand)
	}
	s.ring = append(s.ring, e)
	s.bytes += size

	m := make(map[string]*cacheEntry[V], len(old)+1-len(evicted))
	for k, v := range old {
		m[k] = v
	}
	for _, v := range evicted {
		delete(m, v.key)
	}
	m[text] = e
	s.m.Store(&m)
}

// remove takes the entry at ring index i out of the ring (the last entry takes its place) and
// out of the shard's bytes; the caller updates the map.
func (s *cacheShard[V]) remove(i int) {
	s.bytes -= s.ring[i].size
	last := len(s.ring) - 1
	s.ring[i] = s.ring[last]
	s.ring[last] = nil
	s.ring = s.ring[:last]
	if s.hand >= len(s.ring) {
		s.hand = 0
	}
}

// Len returns the number of cached entries.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		n += len(*c.shards[i].m.Load())
	}
	return n
}

// Bytes returns the bytes the cached entries hold, as their Puts sized them.
func (c *Cache[V]) Bytes() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.bytes
		s.mu.Unlock()
	}
	return n
}
