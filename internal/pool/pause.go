package pool

import (
	"context"
	"fmt"
	"time"
)

// Pause stops the pool from handing out servers, as PgBouncer's and pgcat's PAUSE do: clients
// that want one wait (up to their query_wait_timeout) until Resume. It returns once every server
// is back in the pool, or with an error when ctx ends first; the pool stays paused either way.
func (p *Pool) Pause(ctx context.Context) error {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	// Releases are not signalled: an admin command can afford to look every few milliseconds.
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		p.mu.Lock()
		busy := p.open - len(p.idle)
		p.mu.Unlock()
		if busy <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d server connections of %s still in use: %w", busy, p.params.Addr(), ctx.Err())
		case <-t.C:
		}
	}
}

// Resume ends a Pause: the waiting clients get servers again.
func (p *Pool) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return
	}
	p.paused = false
	// Every waiter tries again: an idle server, a free slot to dial, or back in line.
	for _, w := range p.waiters {
		w.ch <- nil
	}
	p.waiters = nil
}

// Paused reports whether the pool is paused.
func (p *Pool) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Kill pauses the pool and closes its connections, as PgBouncer's KILL does: the idle ones at
// once, those in use when their clients (which the console ends too) release them. Clients
// that come later wait for Resume.
func (p *Pool) Kill() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	p.Reconnect()
}
