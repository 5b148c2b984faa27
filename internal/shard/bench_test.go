package shard

import (
	"encoding/binary"
	"strconv"
	"testing"
)

// BenchmarkShardsCached is the cost per Bind of a prepared point read: a cache hit for the
// text, then the key parameter (text format) hashed.
func BenchmarkShardsCached(b *testing.B) {
	e := newTestExtractor(b, "users.id", testSharder)
	q := []byte("SELECT id, name, email FROM users WHERE id = $1")
	p := text("12345")
	if _, err := e.Shards(q, p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Shards(q, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShardsCachedBinaryIN: a cache hit, three binary parameters of an IN list.
func BenchmarkShardsCachedBinaryIN(b *testing.B) {
	e := newTestExtractor(b, "users.id", testSharder)
	q := []byte("SELECT * FROM users WHERE id IN ($1, $2, $3) AND deleted = false")
	p := Params{Formats: []int16{1}}
	for _, v := range []int64{1, 2, 3} {
		p.Values = append(p.Values, binary.BigEndian.AppendUint64(nil, uint64(v)))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Shards(q, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShardsCachedLiteral: a cache hit for a simple Query with the key as a literal.
func BenchmarkShardsCachedLiteral(b *testing.B) {
	e := newTestExtractor(b, "users.id", testSharder)
	q := []byte("SELECT id, name, email FROM users WHERE id = 12345")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Shards(q, Params{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShardsInlined: a simple Query with the key as a literal, a new text each time
// (pgbench -M simple): a hit for the text's shape, then the literal hashed.
func BenchmarkShardsInlined(b *testing.B) {
	e := newTestExtractor(b, "users.id", testSharder)
	texts := make([][]byte, 100_000)
	for i := range texts {
		texts[i] = []byte("SELECT id, name, email FROM users WHERE id = " + strconv.Itoa(i+1))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := e.Shards(texts[i%len(texts)], Params{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAnalyzeUncached is the cost of a miss: pg_query's parse and the walk.
func BenchmarkAnalyzeUncached(b *testing.B) {
	e, err := New(Options{Key: "users.id", Sharder: testSharder, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	q := []byte("SELECT id, name, email FROM users WHERE id = $1")
	b.ReportAllocs()
	for b.Loop() {
		e.Analyze(q)
	}
}

func BenchmarkHashInt8(b *testing.B) {
	s := Sharder{Shards: 4}
	for i := range b.N {
		s.ShardInt64(int64(i))
	}
}

func BenchmarkHashText(b *testing.B) {
	s := Sharder{Type: Text, Shards: 4}
	k := []byte("tenant-0123456789")
	for b.Loop() {
		s.ShardText(k)
	}
}
