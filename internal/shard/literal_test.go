package shard

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
)

// TestAnalyzeSharesShapes: texts that differ only in their literals share one cached
// statement, and each gets its own answer, the one a parse of it gives: the texts of each
// group go, in order, through one cached extractor and are compared with an extractor that
// caches nothing. Literals that cannot be read back from their characters (E'...', 1.5, -8,
// strings continued on the next line) fall back to the text's own analysis.
func TestAnalyzeSharesShapes(t *testing.T) {
	groups := [][]string{
		{"SELECT * FROM users WHERE id = 1", "SELECT * FROM users WHERE id = 2", "SELECT * FROM users WHERE id = 0042",
			"SELECT * FROM users WHERE id = 2147483648", "SELECT * FROM users WHERE id = 9223372036854775807",
			"SELECT * FROM users WHERE id = 99999999999999999999", "SELECT * FROM users WHERE id = 1.5",
			"SELECT * FROM users WHERE id = 1e3", "SELECT * FROM users WHERE id = 1_000", "SELECT * FROM users WHERE id = 3"},
		{"SELECT * FROM users WHERE id = '3'", "SELECT * FROM users WHERE id = 'x'", "SELECT * FROM users WHERE id = '4'''",
			"SELECT * FROM users WHERE id = '007'", "SELECT * FROM users WHERE id = ''"},
		{"SELECT * FROM users WHERE id = $$5$$", "SELECT * FROM users WHERE id = $$6$$", "SELECT * FROM users WHERE id = $a$7$a$"},
		{"SELECT * FROM users WHERE id = '3'::bigint", "SELECT * FROM users WHERE id = '4'::bigint", "SELECT * FROM users WHERE id = 5::bigint"},
		{"SELECT * FROM users WHERE id = E'5'", "SELECT * FROM users WHERE id = E'6'"},
		{"SELECT * FROM users WHERE id = -7", "SELECT * FROM users WHERE id = -8"},
		{"SELECT * FROM users WHERE id = '1'\n'2'", "SELECT * FROM users WHERE id = '3'\n'4'", "SELECT * FROM users WHERE id = ''\n'5'"},
		{"SELECT * FROM users WHERE id = '5'\n''", "SELECT * FROM users WHERE id = '3'\n'4'"},
		{"SELECT * FROM users WHERE id = '1' -- c\n'2'", "SELECT * FROM users WHERE id = '3' -- c\n'4'"},
		{"SELECT * FROM users WHERE id IN (1, 2, 3)", "SELECT * FROM users WHERE id IN (4, 5, 6)", "SELECT * FROM users WHERE id IN (1, 1, 1)"},
		{"SELECT * FROM users WHERE id = ANY(ARRAY[1, 3])", "SELECT * FROM users WHERE id = ANY(ARRAY[2, 4])"},
		{"SELECT * FROM users WHERE id = ANY('{1,3}')", "SELECT * FROM users WHERE id = ANY('{2,4}')", "SELECT * FROM users WHERE id = ANY('{5}')"},
		{"SELECT * FROM users WHERE id = 1 OR id = 2", "SELECT * FROM users WHERE id = 3 OR id = 4", "SELECT * FROM users WHERE id = 5 OR id = 5"},
		{"SELECT * FROM users WHERE name = 'a' AND id = 1 LIMIT 5", "SELECT * FROM users WHERE name = 'b' AND id = 2 LIMIT 6"},
		{"SELECT * FROM users WHERE age = 1", "SELECT * FROM users WHERE age = 2"},
		{"SELECT * FROM users u JOIN orders o ON o.uid = u.id WHERE u.id = 1", "SELECT * FROM users u JOIN orders o ON o.uid = u.id WHERE u.id = 2"},
		{"UPDATE users SET id = 5 WHERE id = 5", "UPDATE users SET id = 6 WHERE id = 5", "UPDATE users SET id = 1 WHERE id = 1"},
		{"DELETE FROM users WHERE id = 1", "DELETE FROM users WHERE id = 2"},
		{"INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b')", "INSERT INTO users (id, name) VALUES (3, 'c'), (4, 'd')"},
		{"SELECT * FROM users WHERE id = 1 AND name = 'it''s'", "SELECT * FROM users WHERE id = 2 AND name = 'x'"},
	}
	for _, s := range []Sharder{testSharder, {Func: SHA1, Shards: 3}, {Type: Text, Shards: 5}} {
		cached := newTestExtractor(t, "users.id", s)
		plain, err := New(Options{Key: "users.id", Sharder: s, CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			for round := 0; round < 2; round++ { // the second round finds everything cached
				for _, q := range g {
					got, gotErr := cached.Shards([]byte(q), Params{})
					want, wantErr := plain.Shards([]byte(q), Params{})
					if got.String() != want.String() || !errors.Is(gotErr, ErrKeyChange) != !errors.Is(wantErr, ErrKeyChange) {
						t.Errorf("%v %q: cached %v (%v), parsed %v (%v)", s, q, got, gotErr, want, wantErr)
					}
					gp, gerr := cached.Analyze([]byte(q)).SplitInsert(Params{})
					wp, werr := plain.Analyze([]byte(q)).SplitInsert(Params{})
					if fmt.Sprint(gp) != fmt.Sprint(wp) || (gerr == nil) != (werr == nil) {
						t.Errorf("%v %q: split %v (%v), parsed %v (%v)", s, q, gp, gerr, wp, werr)
					}
				}
			}
		}
	}
}

// TestAnalyzeShapeHitDoesNotParse: after one text, another of its shape costs no parse (at
// most the copy that carries its literals).
func TestAnalyzeShapeHitDoesNotParse(t *testing.T) {
	e := newTestExtractor(t, "users.id", testSharder)
	e.Analyze([]byte("SELECT * FROM users WHERE id = 1"))
	texts := make([][]byte, 100)
	for i := range texts {
		texts[i] = []byte("SELECT * FROM users WHERE id = " + strconv.Itoa(i+2))
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		e.Analyze(texts[i%len(texts)])
		i++
	})
	if allocs > 3 {
		t.Errorf("%.0f allocations per text of a cached shape, want at most 3 (a parse makes dozens)", allocs)
	}
	if n := e.cache.Len(); n != 1 {
		t.Errorf("%d cache entries after 101 texts of one shape, want 1", n)
	}
}
