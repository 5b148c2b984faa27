package cache

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// counterCache is an in-process copy of what rueidis's client-side cache answers for the epoch,
// the WAL heartbeat and the generation, base and row counters. A lookup reads three or four of
// them, and through rueidis each costs a lock, an LRU update and the hashing of its command;
// here it costs a read lock and a map lookup.
//
// The copy is never staler than rueidis's cache: rueidis drops an invalidated key from its
// cache before it calls invalidate, which drops the key here too. A value read from rueidis
// just before its invalidation arrives must not be put here just after it was dropped, so
// invalidate first advances seq, and put, under the key's shard lock, stores only when seq is
// still what it was before the read. A connection that breaks makes rueidis call invalidate
// with no keys: everything is dropped. Values also expire when rueidis's copy does.
type counterCache struct {
	seed   maphash.Seed
	seq    atomic.Uint64
	max    int // entries per shard
	shards [counterShards]counterShard
}

const counterShards = 64

type counterShard struct {
	mu sync.RWMutex
	m  map[string]counter
	_  [32]byte // keep neighbouring shards' locks off one cache line
}

// counter is a value as Redis holds it: nil (never written, or expired), or its text.
type counter struct {
	val   string
	isNil bool
	exp   int64 // unix nanos
}

func newCounterCache(maxEntries int) *counterCache {
	c := &counterCache{seed: maphash.MakeSeed(), max: max(1, maxEntries/counterShards)}
	for i := range c.shards {
		c.shards[i].m = map[string]counter{}
	}
	return c
}

func (c *counterCache) shard(key string) *counterShard {
	return &c.shards[maphash.String(c.seed, key)%counterShards]
}

// get returns key's value if it is held and has not expired at now.
func (c *counterCache) get(key string, now int64) (counter, bool) {
	s := c.shard(key)
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	if !ok || now >= v.exp {
		return counter{}, false
	}
	return v, true
}

// put stores key's value, read from rueidis after seq was seen at since, unless an
// invalidation came in between.
func (c *counterCache) put(key string, v counter, since uint64) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.seq.Load() != since {
		return
	}
	if _, ok := s.m[key]; !ok && len(s.m) >= c.max {
		for k := range s.m { // a random victim: map iteration starts anywhere
			delete(s.m, k)
			break
		}
	}
	s.m[key] = v
}

// invalidate drops keys, or everything when keys is nil. It is rueidis's OnInvalidations.
func (c *counterCache) invalidate(keys []string) {
	c.seq.Add(1)
	if keys == nil {
		for i := range c.shards {
			s := &c.shards[i]
			s.mu.Lock()
			clear(s.m)
			s.mu.Unlock()
		}
		return
	}
	for _, k := range keys {
		s := c.shard(k)
		s.mu.Lock()
		delete(s.m, k)
		s.mu.Unlock()
	}
}
