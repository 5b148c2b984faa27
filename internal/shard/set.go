package shard

import "math/bits"

// Set is a set of shards, or "all shards" when the shards a statement touches are unknown.
// The zero value is the empty set. Sets of shards below 64 never allocate.
type Set struct {
	all bool
	lo  uint64   // shards 0 to 63
	hi  []uint64 // shards 64 and up, in words of 64; nil for most sets
}

// AllShards is the set that stands for every shard.
func AllShards() Set { return Set{all: true} }

// One returns the set of the one shard s.
func One(s int) Set {
	var set Set
	set.Add(s)
	return set
}

// All reports whether the set stands for every shard: the statement's shards are unknown.
func (s Set) All() bool { return s.all }

// Add adds shard i (i >= 0).
func (s *Set) Add(i int) {
	if i < 64 {
		s.lo |= 1 << uint(i)
		return
	}
	w := i/64 - 1
	if w >= len(s.hi) {
		hi := make([]uint64, w+1)
		copy(hi, s.hi)
		s.hi = hi
	}
	s.hi[w] |= 1 << uint(i%64)
}

// Has reports whether shard i is in the set (always, for All).
func (s Set) Has(i int) bool {
	if s.all {
		return true
	}
	if i < 64 {
		return i >= 0 && s.lo&(1<<uint(i)) != 0
	}
	w := i/64 - 1
	return w < len(s.hi) && s.hi[w]&(1<<uint(i%64)) != 0
}

// Len returns the number of shards in the set; -1 for All.
func (s Set) Len() int {
	if s.all {
		return -1
	}
	n := bits.OnesCount64(s.lo)
	for _, w := range s.hi {
		n += bits.OnesCount64(w)
	}
	return n
}

// Single returns the set's shard when it holds exactly one.
func (s Set) Single() (int, bool) {
	if s.Len() != 1 {
		return 0, false
	}
	return s.Next(0), true
}

// Next returns the smallest shard in the set that is >= i, or -1. For All it returns i: the
// caller bounds it by its shard count.
func (s Set) Next(i int) int {
	if s.all {
		return i
	}
	if i < 64 {
		if rest := s.lo >> uint(i); rest != 0 {
			return i + bits.TrailingZeros64(rest)
		}
		i = 64
	}
	for w := i/64 - 1; w < len(s.hi); w++ {
		word := s.hi[w]
		if start := (w + 1) * 64; i > start {
			word &= ^uint64(0) << uint(i-start)
		}
		if word != 0 {
			return (w+1)*64 + bits.TrailingZeros64(word)
		}
	}
	return -1
}

// Shards appends the set's shards, in increasing order, to dst: for All, 0 to n-1.
func (s Set) Shards(dst []int, n int) []int {
	for i := s.Next(0); i >= 0 && i < n; i = s.Next(i + 1) {
		dst = append(dst, i)
	}
	return dst
}

func (s Set) empty() bool { return !s.all && s.Len() == 0 }

// union returns s ∪ t.
func union(s, t Set) Set {
	if s.all || t.all {
		return AllShards()
	}
	r := Set{lo: s.lo | t.lo}
	if len(s.hi) > 0 || len(t.hi) > 0 {
		r.hi = make([]uint64, max(len(s.hi), len(t.hi)))
		copy(r.hi, s.hi)
		for i, w := range t.hi {
			r.hi[i] |= w
		}
	}
	return r
}

// intersect returns s ∩ t.
func intersect(s, t Set) Set {
	if s.all {
		return t
	}
	if t.all {
		return s
	}
	r := Set{lo: s.lo & t.lo}
	if n := min(len(s.hi), len(t.hi)); n > 0 {
		r.hi = make([]uint64, n)
		for i := range n {
			r.hi[i] = s.hi[i] & t.hi[i]
		}
	}
	return r
}

func (s Set) String() string {
	if s.all {
		return "all"
	}
	b := []byte{'{'}
	for i := s.Next(0); i >= 0; i = s.Next(i + 1) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendInt(b, i)
	}
	return string(append(b, '}'))
}

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}
