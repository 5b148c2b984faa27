package shard

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSplitInsertLiterals(t *testing.T) {
	e := newTestExtractor(t, "users.id", testSharder)
	q := "INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (1, 'd') RETURNING id"
	st := e.Analyze([]byte(q))
	parts, err := st.SplitInsert(Params{})
	if err != nil {
		t.Fatal(err)
	}
	rowsByShard := map[int][]int{}
	for _, p := range parts {
		rowsByShard[p.Shard] = p.Rows
	}
	want := map[int][]int{}
	for i, k := range []int64{1, 2, 3, 1} {
		sh := testSharder.ShardInt64(k)
		want[sh] = append(want[sh], i)
	}
	if !reflect.DeepEqual(rowsByShard, want) {
		t.Fatalf("parts %v, want %v", parts, want)
	}
	for i := 1; i < len(parts); i++ {
		if parts[i-1].Shard >= parts[i].Shard {
			t.Fatalf("parts not in shard order: %v", parts)
		}
	}
	text, params, err := st.InsertSubset(want[testSharder.ShardInt64(1)])
	if err != nil {
		t.Fatal(err)
	}
	if text != "INSERT INTO users (id, name) VALUES (1, 'a'), (1, 'd') RETURNING id" || params != nil {
		t.Fatalf("subset: %q %v", text, params)
	}
	// The subset's text is itself an INSERT on one shard.
	if got, err := e.Shards([]byte(text), Params{}); err != nil || got.String() != keys(1).String() {
		t.Fatalf("subset routes to %v, %v", got, err)
	}
}

func TestSplitInsertRenumbersParameters(t *testing.T) {
	e := newTestExtractor(t, "users.id", testSharder)
	q := "INSERT INTO users (id, name) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT (id) DO UPDATE SET name = $7"
	st := e.Analyze([]byte(q))
	p := text("1", "a", "2", "b", "1", "c", "z")
	parts, err := st.SplitInsert(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 {
		t.Fatalf("parts %v, want 2", parts)
	}
	for _, part := range parts {
		text, params, err := st.InsertSubset(part.Rows)
		if err != nil {
			t.Fatal(err)
		}
		if part.Shard == testSharder.ShardInt64(1) {
			want := "INSERT INTO users (id, name) VALUES ($1, $2), ($3, $4) ON CONFLICT (id) DO UPDATE SET name = $5"
			if text != want || !reflect.DeepEqual(params, []int{1, 2, 5, 6, 7}) {
				t.Fatalf("shard of 1: %q %v", text, params)
			}
		} else {
			want := "INSERT INTO users (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = $3"
			if text != want || !reflect.DeepEqual(params, []int{3, 4, 7}) {
				t.Fatalf("shard of 2: %q %v", text, params)
			}
		}
	}
	// The cached tree is unchanged by the subsets.
	again, _, err := st.InsertSubset([]int{0, 1, 2})
	if err != nil || !strings.Contains(again, "($5, $6)") {
		t.Fatalf("full subset after splits: %q, %v", again, err)
	}
}

func TestSplitInsertRefuses(t *testing.T) {
	e := newTestExtractor(t, "users.id", testSharder)
	for _, q := range []string{
		"SELECT * FROM users WHERE id = 1",
		"INSERT INTO users VALUES (1)",
		"INSERT INTO users (id) VALUES (1), (DEFAULT)",
		"INSERT INTO users (id) VALUES (1), (2 + 3)",
		"INSERT INTO users (id) SELECT 1",
		"INSERT INTO users (id) VALUES (1); INSERT INTO users (id) VALUES (2)",
		"INSERT INTO users (id) VALUES ('x')",
	} {
		if _, err := e.Analyze([]byte(q)).SplitInsert(Params{}); !errors.Is(err, ErrNotSplittable) {
			t.Errorf("%s: err = %v, want ErrNotSplittable", q, err)
		}
	}
	st := e.Analyze([]byte("INSERT INTO users (id) VALUES ($1)"))
	if _, err := st.SplitInsert(text("NULL")); err != nil {
		t.Errorf("NULL key with pg_bigint_hash: %v (Postgres puts it in partition 0)", err)
	}
	if _, err := st.SplitInsert(Params{}); !errors.Is(err, ErrNotSplittable) {
		t.Errorf("missing parameter: err = %v, want ErrNotSplittable", err)
	}
	if _, _, err := st.InsertSubset([]int{1}); !errors.Is(err, ErrNotSplittable) {
		t.Errorf("row out of range: err = %v", err)
	}
}

func TestHints(t *testing.T) {
	h, err := NewHints(`/\* shard_id: (\d+) \*/`, `/\* sharding_key: (-?\d+) \*/`, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		want  Hint
	}{
		{"/* shard_id: 2 */ SELECT 1", Hint{ShardHint, 2}},
		{"SELECT 1 /* shard_id: 11 */", Hint{ShardHint, 11}},
		{"/* sharding_key: 3 */ SELECT 1", Hint{KeyHint, testSharder.ShardInt64(3)}},
		{"/* sharding_key: -3 */ /* shard_id: 1 */ SELECT 1", Hint{ShardHint, 1}},
		{"/* shard_id: 99999999999999999999 */ /* sharding_key: 1 */", Hint{KeyHint, testSharder.ShardInt64(1)}},
		{"SELECT 1", Hint{}},
		{strings.Repeat(" ", 990) + "/* shard_id: 1 */", Hint{}},
		{strings.Repeat(" ", 980) + "/* shard_id: 1 */", Hint{ShardHint, 1}},
	} {
		if got := h.Find([]byte(tc.query), testSharder); got != tc.want {
			t.Errorf("%.40q: %+v, want %+v", tc.query, got, tc.want)
		}
	}
	small, _ := NewHints(`shard=(\d+)`, "", 10)
	if got := small.Find([]byte("/*   shard=1 */"), testSharder); got.Kind != NoHint {
		t.Errorf("beyond the search limit: %+v", got)
	}
	if got := small.Find([]byte("/*shard=1*/"), testSharder); got != (Hint{ShardHint, 1}) {
		t.Errorf("within the search limit: %+v", got)
	}
	if h, err := NewHints("", "", 0); h != nil || err != nil || h.Find([]byte("x"), testSharder).Kind != NoHint {
		t.Errorf("no regexes: %v, %v", h, err)
	}
	if _, err := NewHints(`shard`, "", 0); err == nil {
		t.Error("a regex without a capture group: no error")
	}
	if _, err := NewHints(`(`, "", 0); err == nil {
		t.Error("a bad regex: no error")
	}
}

func TestSet(t *testing.T) {
	var s Set
	for _, i := range []int{0, 5, 63, 64, 130, 200} {
		s.Add(i)
	}
	if got := s.Shards(nil, 1000); !reflect.DeepEqual(got, []int{0, 5, 63, 64, 130, 200}) {
		t.Fatalf("Shards = %v", got)
	}
	if s.Len() != 6 || !s.Has(130) || s.Has(129) || s.Has(-1) || s.Has(1000) {
		t.Fatalf("Len/Has wrong: %v", s)
	}
	u := union(s, One(129))
	if !u.Has(129) || u.Len() != 7 || s.Has(129) {
		t.Fatalf("union: %v (s %v)", u, s)
	}
	if i := intersect(u, One(130)); i.String() != "{130}" {
		t.Fatalf("intersect: %v", i)
	}
	if a := AllShards(); a.Len() != -1 || !a.Has(7) || !reflect.DeepEqual(a.Shards(nil, 3), []int{0, 1, 2}) {
		t.Fatalf("all: %v", a.Shards(nil, 3))
	}
	if _, ok := s.Single(); ok {
		t.Fatal("Single on 6 shards")
	}
	if sh, ok := One(70).Single(); !ok || sh != 70 {
		t.Fatalf("Single = %d, %v", sh, ok)
	}
}
