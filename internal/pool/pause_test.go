package pool

import (
	"context"
	"errors"
	"testing"
	"time"
)

// While paused, a pool hands out nothing, not even its idle servers or a free slot; Pause
// returns once the servers in use are back; Resume serves the waiters at once.
func TestPauseHoldsCheckoutsUntilResume(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 2})
	held := checkout(t, p)
	idle := checkout(t, p)
	p.Release(idle)

	paused := make(chan error, 1)
	go func() { paused <- p.Pause(context.Background()) }()
	select {
	case err := <-paused:
		t.Fatalf("Pause returned (%v) with a server still out", err)
	case <-time.After(50 * time.Millisecond):
	}
	if s := p.TryCheckout(); s != nil {
		t.Fatal("TryCheckout returned an idle server while paused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := p.Checkout(ctx)
	cancel()
	if !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Checkout while paused: %v, want a wait timeout", err)
	}
	p.Release(held)
	if err := receiveErr(t, paused); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if !p.Paused() {
		t.Fatal("not paused after Pause")
	}

	waiter := goCheckout(t, context.Background(), p)
	p.Resume()
	r := receive(t, waiter)
	if r.err != nil {
		t.Fatalf("Checkout after Resume: %v", r.err)
	}
	p.Release(r.s)
	wantStats(t, p, 2, 2, 0)
}

// Pause gives up when its context ends, and the pool stays paused.
func TestPauseTimesOut(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	s := checkout(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Pause(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pause: %v, want a deadline error", err)
	}
	if !p.Paused() {
		t.Fatal("a timed-out Pause unpaused the pool")
	}
	p.Release(s)
	p.Resume()
	p.Release(checkout(t, p))
}

func receiveErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no answer in 5 s")
		return nil
	}
}
