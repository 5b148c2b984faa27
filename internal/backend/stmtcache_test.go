package backend

import (
	"slices"
	"testing"
)

// contents lists the cached names from most to least recently used.
func contents(c *StatementCache) []string {
	var names []string
	for e := c.ll.Front(); e != nil; e = e.Next() {
		names = append(names, e.Value.(string))
	}
	return names
}

func TestStatementCacheAddHasRemoveClear(t *testing.T) {
	c := NewStatementCache(4)
	if c.Has("a") {
		t.Fatal("an empty cache has a")
	}
	if ev := c.Add("a"); ev != "" {
		t.Fatalf("Add to a cache with room evicted %q", ev)
	}
	c.Add("b")
	if !c.Has("a") || !c.Has("b") || c.Len() != 2 {
		t.Fatalf("after adding a and b: %v, Len %d", contents(c), c.Len())
	}
	c.Remove("a")
	if c.Has("a") || !c.Has("b") || c.Len() != 1 {
		t.Fatalf("after removing a: %v, Len %d", contents(c), c.Len())
	}
	c.Remove("missing") // harmless
	if c.Len() != 1 {
		t.Fatalf("removing a missing name changed Len to %d", c.Len())
	}
	c.Clear()
	if c.Has("b") || c.Len() != 0 {
		t.Fatalf("after Clear: %v, Len %d", contents(c), c.Len())
	}
	// A cleared cache is as good as a new one, up to its capacity.
	for _, n := range []string{"w", "x", "y", "z"} {
		if ev := c.Add(n); ev != "" {
			t.Fatalf("Add(%q) after Clear evicted %q", n, ev)
		}
	}
	if got := c.Add("v"); got != "w" {
		t.Fatalf("Add beyond capacity after Clear evicted %q, want w", got)
	}
}

// op is one call on a StatementCache: Add (reporting what it evicted), Has or Remove.
type op struct {
	call string // "add", "has" or "remove"
	name string
	want string // add: the evicted name; has: "true" or "false"
}

func TestStatementCacheEvictsLeastRecentlyUsed(t *testing.T) {
	tests := []struct {
		name string
		cap  int
		ops  []op
		want []string // final contents, most recently used first
	}{
		{
			name: "oldest add is evicted",
			cap:  2,
			ops:  []op{{"add", "a", ""}, {"add", "b", ""}, {"add", "c", "a"}, {"add", "d", "b"}},
			want: []string{"d", "c"},
		},
		{
			name: "Has makes a name recently used",
			cap:  2,
			ops:  []op{{"add", "a", ""}, {"add", "b", ""}, {"has", "a", "true"}, {"add", "c", "b"}},
			want: []string{"c", "a"},
		},
		{
			name: "Has of a missing name changes nothing",
			cap:  2,
			ops:  []op{{"add", "a", ""}, {"add", "b", ""}, {"has", "z", "false"}, {"add", "c", "a"}},
			want: []string{"c", "b"},
		},
		{
			name: "adding an existing name makes it recently used and evicts nothing",
			cap:  2,
			ops:  []op{{"add", "a", ""}, {"add", "b", ""}, {"add", "a", ""}, {"add", "c", "b"}},
			want: []string{"c", "a"},
		},
		{
			name: "Remove makes room",
			cap:  2,
			ops:  []op{{"add", "a", ""}, {"add", "b", ""}, {"remove", "a", ""}, {"add", "c", ""}, {"add", "d", "b"}},
			want: []string{"d", "c"},
		},
		{
			name: "capacity one",
			cap:  1,
			ops:  []op{{"add", "a", ""}, {"add", "a", ""}, {"add", "b", "a"}, {"has", "a", "false"}},
			want: []string{"b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewStatementCache(tc.cap)
			for i, o := range tc.ops {
				switch o.call {
				case "add":
					if got := c.Add(o.name); got != o.want {
						t.Fatalf("op %d: Add(%q) evicted %q, want %q", i, o.name, got, o.want)
					}
				case "has":
					if got := c.Has(o.name); (got && o.want != "true") || (!got && o.want != "false") {
						t.Fatalf("op %d: Has(%q) = %v, want %s", i, o.name, got, o.want)
					}
				case "remove":
					c.Remove(o.name)
				default:
					t.Fatalf("op %d: unknown call %q", i, o.call)
				}
				if c.Len() > tc.cap {
					t.Fatalf("op %d: Len %d exceeds capacity %d", i, c.Len(), tc.cap)
				}
			}
			if got := contents(c); !slices.Equal(got, tc.want) {
				t.Fatalf("contents %v, want %v", got, tc.want)
			}
			if c.Len() != len(tc.want) || len(c.items) != len(tc.want) {
				t.Fatalf("Len %d, %d indexed; want %d", c.Len(), len(c.items), len(tc.want))
			}
		})
	}
}

func TestStatementCacheAddExistingDoesNotEvict(t *testing.T) {
	c := NewStatementCache(3)
	for _, n := range []string{"a", "b", "c"} {
		c.Add(n)
	}
	for _, n := range []string{"a", "b", "c", "a"} {
		if ev := c.Add(n); ev != "" {
			t.Fatalf("Add(%q) of a cached name evicted %q", n, ev)
		}
	}
	if c.Len() != 3 || !c.Has("a") || !c.Has("b") || !c.Has("c") {
		t.Fatalf("contents %v after re-adding cached names", contents(c))
	}
}
