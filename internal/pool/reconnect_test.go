package pool

import "testing"

// Reconnect closes the idle servers at once and those in use when they come back; WAIT_CLOSE's
// count (Stale) falls to 0 then, and new checkouts get new servers.
func TestReconnectReplacesEveryServer(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 3})
	held := checkout(t, p)
	idle := checkout(t, p)
	p.Release(idle)

	p.Reconnect()
	if n := p.Stale(); n != 1 {
		t.Fatalf("Stale after Reconnect = %d, want 1 (the server in use)", n)
	}
	if st := p.Stats(); st.Open != 1 || st.Idle != 0 {
		t.Fatalf("after Reconnect: %d open, %d idle; want the idle server closed", st.Open, st.Idle)
	}
	fresh := checkout(t, p)
	if fresh == held || fresh == idle {
		t.Fatal("Reconnect handed out an old server")
	}
	p.Release(fresh)
	if n := p.Stale(); n != 1 {
		t.Fatalf("Stale = %d after a new server came back, want 1", n)
	}
	p.Release(held)
	if n := p.Stale(); n != 0 {
		t.Fatalf("Stale = %d after the old server came back, want 0", n)
	}
	if s := p.TryCheckout(); s != fresh {
		t.Fatal("the new server was not kept idle for reuse")
	} else {
		p.Release(s)
	}
	wantStats(t, p, 1, 1, 0)
}
