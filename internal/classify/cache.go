package classify

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

// cache maps query texts to their Results. It is built for a read-mostly load from many
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
//   - Both the number of entries and their bytes (the text, the Result) are bounded per
//     shard.
type cache struct {
	seed   maphash.Seed
	mask   uint64
	shards []cacheShard
}

// shardEntries is the target number of entries per shard.
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
	res  *Result
	size int
	ref  atomic.Bool
}

func newCache(size, budget int) *cache {
	n := (size + shardEntries - 1) / shardEntries
	n = 1 << bits.Len(uint(n-1)) // next power of two
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

func (c *cache) shard(b []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, b)&c.mask]
}

// get returns the Result cached for query, or nil.
func (c *cache) get(query []byte) *Result {
	e := (*c.shard(query).m.Load())[string(query)]
	if e == nil {
		return nil
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.res
}

// put caches r for text. When another goroutine cached the same text first, its Result
// stays: both are equal.
func (c *cache) put(text string, r *Result) {
	size := entrySize(text, r)
	// maphash.String hashes as maphash.Bytes does, so the text lands in the shard get uses.
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
	e := &cacheEntry{key: text, res: r, size: size}
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
		// Remove the victim from the ring: the last entry takes its place.
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

// entrySize estimates the memory an entry holds: its text, its Result and the map slot.
func entrySize(text string, r *Result) int {
	n := len(text) + 256
	for _, t := range r.Reads {
		n += len(t) + 16
	}
	for _, t := range r.Writes {
		n += len(t) + 16
	}
	return n
}

// len returns the number of cached entries, for tests.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		n += len(*c.shards[i].m.Load())
	}
	return n
}
