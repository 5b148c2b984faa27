package shard

import (
	"errors"
	"testing"
)

// FuzzExtract feeds arbitrary texts and one parameter to key extraction. Nothing may panic,
// a result is never an empty set nor a shard out of range, a second (cached) call agrees with
// the first and with an extractor that caches nothing (the cache shares one statement among
// the texts of a shape, filled by earlier inputs), and every part of a split INSERT has a text
// that routes back to its shard. The seed corpus is in testdata/fuzz/FuzzExtract, plus every
// query of the table test.
func FuzzExtract(f *testing.F) {
	for _, tc := range extractCases {
		var param []byte
		if len(tc.params.Values) > 0 {
			param = tc.params.Values[0]
		}
		f.Add(tc.query, param, len(tc.params.Formats) > 0)
	}
	cached := newTestExtractor(f, "users.id", testSharder)
	uncached, err := New(Options{Key: "*.id", Sharder: Sharder{Func: SHA1, Shards: 3}, CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	parsed, err := New(Options{Key: "users.id", Sharder: testSharder, CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query string, param []byte, binary bool) {
		p := Params{Values: [][]byte{param, param, param}}
		if binary {
			p.Formats = []int16{1}
		}
		got, gotErr := cached.Shards([]byte(query), p)
		want, wantErr := parsed.Shards([]byte(query), p)
		if got.String() != want.String() || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: cached %v (%v), parsed %v (%v)", query, got, gotErr, want, wantErr)
		}
		for _, e := range []*Extractor{cached, uncached} {
			n := e.sharder.Shards
			set, err := e.Shards([]byte(query), p)
			if err != nil && !errors.Is(err, ErrKeyChange) {
				t.Fatalf("%q: unexpected error %v", query, err)
			}
			if set.empty() {
				t.Fatalf("%q: empty set", query)
			}
			if !set.All() && set.Next(n) != -1 {
				t.Fatalf("%q: shard out of range in %v", query, set)
			}
			again, _ := e.Shards([]byte(query), p)
			if again.String() != set.String() {
				t.Fatalf("%q: %v then %v", query, set, again)
			}
			st := e.Analyze([]byte(query))
			parts, err := st.SplitInsert(p)
			if err != nil {
				continue
			}
			for _, part := range parts {
				if part.Shard < 0 || part.Shard >= n || len(part.Rows) == 0 {
					t.Fatalf("%q: bad part %+v", query, part)
				}
				text, params, err := st.InsertSubset(part.Rows)
				if err != nil {
					// The deparser may not round-trip every tree the parser accepts.
					continue
				}
				sub := Params{Formats: p.Formats}
				for _, i := range params {
					if i > len(p.Values) {
						break // the Bind lacks it, and so does the subset's
					}
					sub.Values = append(sub.Values, p.Values[i-1])
				}
				got, err := e.Shards([]byte(text), sub)
				if sh, ok := got.Single(); err == nil && (!ok || sh != part.Shard) && !got.All() {
					t.Fatalf("%q: part for shard %d rebuilt as %q routes to %v", query, part.Shard, text, got)
				}
			}
		}
	})
}
