package cache

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that a logger may write while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStatsLog: with stats_interval set, the counters are logged while they change, not while
// they stand still, and once more when the plugin stops.
func TestStatsLog(t *testing.T) {
	var out syncBuffer
	p := &Cache{log: slog.New(slog.NewTextHandler(&out, nil)), stop: make(chan struct{})}
	p.stats.hits.Add(3)
	p.stats.misses.Add(1)
	p.bypass("in a transaction")
	done := make(chan struct{})
	go func() { p.logStats(10 * time.Millisecond); close(done) }()

	lines := func() []string {
		var l []string
		for _, s := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if s != "" {
				l = append(l, s)
			}
		}
		return l
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(lines()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no stats line after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	first := lines()[0]
	for _, want := range []string{`msg="cache stats"`, "hits=3", "misses=1", "hit_ratio=0.7500", "bypassed=1",
		`bypass="in a transaction: 1"`} {
		if !strings.Contains(first, want) {
			t.Errorf("stats line %q lacks %q", first, want)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(lines()); n != 1 {
		t.Errorf("%d lines while the counters stood still, want 1:\n%s", n, out.String())
	}
	p.stats.hits.Add(1)
	close(p.stop)
	<-done
	l := lines()
	if len(l) < 2 || !strings.Contains(l[len(l)-1], "hits=4") {
		t.Errorf("last line after stop %q, want hits=4", l[len(l)-1])
	}
}
