package pool

import (
	"context"
	"testing"
	"time"
)

// TestStatsMaxWaitAndIdleServers checks what the admin console reads: the longest current wait,
// which ends with the wait, and the idle connections with their process IDs.
func TestStatsMaxWaitAndIdleServers(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	s := checkout(t, p)
	if got := p.IdleServers(nil); len(got) != 0 {
		t.Fatalf("IdleServers with the only server checked out: %+v", got)
	}
	if st := p.Stats(); st.MaxWait != 0 {
		t.Fatalf("MaxWait = %v with nobody waiting", st.MaxWait)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := goCheckout(t, ctx, p)
	time.Sleep(30 * time.Millisecond)
	if st := p.Stats(); st.MaxWait < 30*time.Millisecond || st.MaxWait > 10*time.Second {
		t.Errorf("MaxWait = %v, want at least 30ms", st.MaxWait)
	}
	p.Release(s)
	r := receive(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if st := p.Stats(); st.MaxWait != 0 {
		t.Errorf("MaxWait = %v after the wait ended", st.MaxWait)
	}
	p.Release(r.s)
	got := p.IdleServers(nil)
	if len(got) != 1 || got[0].PID != r.s.PID() || got[0].Created.IsZero() {
		t.Errorf("IdleServers = %+v, want the one server (pid %d)", got, r.s.PID())
	}
}
