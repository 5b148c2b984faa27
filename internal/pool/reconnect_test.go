package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
)

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

// A Reconnect that runs while a checkout dials (or fails to) must not count that connection as
// stale: it joins the new generation, or never joins, and WAIT_CLOSE would wait for it forever.
func TestReconnectRacingDialsLeavesNoStaleCount(t *testing.T) {
	p := New(backend.Params{}, Options{Size: 4})
	t.Cleanup(p.Close)
	p.dial = func(context.Context, *backend.Params) (*backend.ServerConn, error) {
		return nil, errors.New("connection refused")
	}
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					_, _ = p.Checkout(context.Background())
				}
			}()
		}
		for range 20 {
			p.Reconnect()
		}
		wg.Wait()
		if n := p.Stale(); n != 0 {
			t.Fatalf("iteration %d: Stale = %d with no connection open (Open = %d): WAIT_CLOSE would never return", i, n, p.Stats().Open)
		}
	}
}

// A connection still being dialed when Reconnect runs is of the old generation: its client uses
// it, and it closes when released, so KILL and RECONNECT leave no connection they did not
// replace, and Stale counts it until then.
func TestReconnectMarksDialsUnderWay(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 2})
	dial := p.dial
	entered, proceed := make(chan struct{}), make(chan struct{})
	p.dial = func(ctx context.Context, bp *backend.Params) (*backend.ServerConn, error) {
		close(entered)
		<-proceed
		return dial(ctx, bp)
	}
	got := make(chan result, 1)
	go func() {
		s, err := p.Checkout(context.Background())
		got <- result{s, err}
	}()
	<-entered
	p.Reconnect()
	if n := p.Stale(); n != 1 {
		t.Fatalf("Stale = %d with one dial under way, want 1", n)
	}
	close(proceed)
	r := receive(t, got)
	if r.err != nil {
		t.Fatal(r.err)
	}
	p.dial = dial
	p.Release(r.s)
	if n := p.Stale(); n != 0 {
		t.Fatalf("Stale = %d after the dialed connection came back, want 0", n)
	}
	wantStats(t, p, 0, 0, 0)
}
