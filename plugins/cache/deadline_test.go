package cache

import (
	"testing"
	"time"
)

// Lookups in one tenth of the timeout share a context; later ones get a new one; every context
// handed out leaves at least 0.9 of the timeout from the moment it is asked for.
func TestSharedDeadline(t *testing.T) {
	s := &sharedDeadline{d: time.Second}
	t0 := time.Now().UnixNano()
	a := s.context(t0)
	if b := s.context(t0 + int64(50*time.Millisecond)); b != a {
		t.Fatal("a lookup 50ms later got another context")
	}
	c := s.context(t0 + int64(100*time.Millisecond))
	if c == a {
		t.Fatal("a lookup 100ms later got the same context")
	}
	for _, tc := range []struct {
		name  string
		ctx   interface{ Deadline() (time.Time, bool) }
		asked int64
	}{{"first", a, t0 + int64(99*time.Millisecond)}, {"second", c, t0 + int64(100*time.Millisecond)}} {
		d, ok := tc.ctx.Deadline()
		if !ok {
			t.Fatalf("%s: no deadline", tc.name)
		}
		if left := d.Sub(time.Unix(0, tc.asked)); left < 900*time.Millisecond {
			t.Fatalf("%s: %v left, want at least 900ms", tc.name, left)
		}
	}
}
