// Package pool keeps the server connections of one server for one database and user: checkout
// and release, sizing, lifetimes, idle reaping and health checks. It knows nothing of SQL or of
// clients.
package pool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
)

// Options size and age a pool.
type Options struct {
	Size    int // most connections open at once, checked out or idle
	MinSize int // connections kept open even when idle

	Lifetime    time.Duration // a connection older than this is closed when released; 0 = forever
	IdleTimeout time.Duration // an idle connection older than this is closed; 0 = never

	HealthcheckDelay   time.Duration // a connection idle longer than this is checked before use
	HealthcheckTimeout time.Duration

	// RoundRobin hands out the idle connection released longest ago (pgcat's
	// server_round_robin), so that all of them are used in turn; otherwise the one released
	// last, so that connections not needed stay idle until IdleTimeout closes them.
	RoundRobin bool
	// ResolveEvery, when above 0, resolves the server's host name again at this interval
	// (pgcat's dns_cache_enabled with dns_max_ttl); once its addresses change, connections to
	// an address it no longer has are closed when idle, never while in use.
	ResolveEvery time.Duration

	// ResetQuery runs on release when the releaser asks for a reset (session mode).
	ResetQuery string
	// OnConnect runs on each new connection before it is used; an error discards it.
	OnConnect func(*backend.ServerConn) error
}

// ErrClosed is returned by Checkout on a pool that was closed, e.g. replaced by a reload.
var ErrClosed = errors.New("pool is closed")

// ErrWaitTimeout is returned by Checkout when its context ended while it waited for a connection
// to be released (not while dialing one).
var ErrWaitTimeout = errors.New("timed out waiting for a server connection to be released")

// ErrStopped is returned by CheckoutWait when its stop channel ended the wait or the dial.
var ErrStopped = errors.New("the wait for a server connection was stopped")

// Pool is a pool of connections to one server. It is safe for concurrent use.
type Pool struct {
	params backend.Params
	opts   Options
	dial   func(context.Context, *backend.Params) (*backend.ServerConn, error)
	lookup func(ctx context.Context, host string) ([]string, error)

	mu      sync.Mutex
	idle    []*backend.ServerConn // LIFO: the most recently used is handed out first
	open    int                   // connections open or being dialed
	waiters []*waiter             // FIFO
	closed  bool
	paused  bool // PAUSE: no checkouts until Resume
	// stale counts the open connections (dialed or being dialed) that RECONNECT marked, which
	// close when released (see Reconnect).
	stale int
	// params0 are the server parameters reported by the latest login: after a server restart
	// (a new minor version, ALTER ROLE/DATABASE ... SET), new clients are told what the
	// server says now. Replaced, never modified: callers keep the map they got.
	params0 map[string]string
	// addrs are the host's addresses at the last resolution that changed them (ResolveEvery),
	// nil before any change: a connection to an address not among them is closed.
	addrs    map[string]bool
	resolved []string // the addresses of the last resolution, sorted

	stop chan struct{}
	done chan struct{}

	// gen is the pool's generation, which Reconnect advances: a connection of an older one
	// (backend.ServerConn.PoolGen) is closed instead of reused.
	gen atomic.Uint64

	checkouts   atomic.Uint64
	waits       atomic.Uint64
	dialErrors  atomic.Uint64
	totalWaitNs atomic.Int64

	traffic trafficCounters
	avg     averager
}

type waiter struct {
	ch    chan *backend.ServerConn // a server, or nil meaning "a slot is free: dial"
	since time.Time                // when its Checkout started waiting, for Stats.MaxWait
}

// New returns a pool for the server that p describes and starts its maintenance goroutine.
func New(p backend.Params, o Options) *Pool {
	if o.Size < 1 {
		o.Size = 1
	}
	pl := &Pool{params: p, opts: o, dial: backend.Dial, lookup: net.DefaultResolver.LookupHost,
		stop: make(chan struct{}), done: make(chan struct{})}
	go pl.maintain()
	return pl
}

// Params returns the connection parameters of the pool's server.
func (p *Pool) Params() *backend.Params { return &p.params }

// Checkout returns an idle connection, dials a new one while the pool is below its size, or waits
// for one to be released until ctx is done. The caller must Release what it gets.
func (p *Pool) Checkout(ctx context.Context) (*backend.ServerConn, error) {
	return p.checkout(ctx, 0, nil)
}

// CheckoutWait is Checkout for a client's request, the path every query takes when the pool is
// busy: it waits at most wait (0: as long as it takes) and until stop yields a value (ErrStopped),
// and makes no context for that: a timer only when it has to wait, a context only when it dials.
func (p *Pool) CheckoutWait(wait time.Duration, stop <-chan struct{}) (*backend.ServerConn, error) {
	return p.checkout(nil, wait, stop)
}

// checkout is Checkout (ctx set) and CheckoutWait (ctx nil: wait and stop instead).
func (p *Pool) checkout(ctx context.Context, wait time.Duration, stop <-chan struct{}) (*backend.ServerConn, error) {
	p.checkouts.Add(1)
	var start time.Time
	var done <-chan struct{}
	var expired <-chan time.Time
	if ctx != nil {
		done = ctx.Done()
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		for len(p.idle) > 0 && !p.paused {
			s := p.takeIdle()
			p.mu.Unlock()
			if p.usable(s) {
				return s, nil
			}
			p.discard(s)
			p.mu.Lock()
		}
		if p.open < p.opts.Size && !p.paused {
			p.open++
			gen := p.gen.Load() // with open: see Reconnect
			p.mu.Unlock()
			if ctx != nil {
				return p.dialOne(ctx, gen)
			}
			return p.dialStoppable(start, wait, stop, gen)
		}
		if start.IsZero() {
			start = time.Now()
			p.waits.Add(1)
			if ctx == nil && wait > 0 {
				t := time.NewTimer(wait)
				defer t.Stop()
				expired = t.C
			}
		}
		w := &waiter{ch: make(chan *backend.ServerConn, 1), since: start}
		p.waiters = append(p.waiters, w)
		p.mu.Unlock()
		var why error
		select {
		case s := <-w.ch:
			if s == nil {
				continue // a slot was freed: try again
			}
			p.totalWaitNs.Add(int64(time.Since(start)))
			if p.usable(s) {
				return s, nil
			}
			p.discard(s)
			continue
		case <-done:
			why = fmt.Errorf("wait for a server of %s: %w (%w)", p.params.Addr(), ErrWaitTimeout, ctx.Err())
		case <-expired:
			why = fmt.Errorf("wait for a server of %s: %w (%w)", p.params.Addr(), ErrWaitTimeout, context.DeadlineExceeded)
		case <-stop:
			why = ErrStopped
		}
		p.leave(w)
		return nil, why
	}
}

// leave takes w, which gave up, off the list of waiters.
func (p *Pool) leave(w *waiter) {
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	// A server (or a free slot) may have been handed over just before it left the list.
	select {
	case s := <-w.ch:
		if s != nil {
			p.Release(s)
		} else {
			// The slot was counted free when it was handed over: pass it on, do not free it
			// again.
			p.mu.Lock()
			p.wakeDialer()
			p.mu.Unlock()
		}
	default:
	}
}

// dialStoppable dials for CheckoutWait, within what is left of wait since start (when it waited
// first) and until stop yields.
func (p *Pool) dialStoppable(start time.Time, wait time.Duration, stop <-chan struct{}, gen uint64) (*backend.ServerConn, error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if wait > 0 {
		left := wait
		if !start.IsZero() {
			left -= time.Since(start)
		}
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, max(left, time.Millisecond))
		defer cancelT()
	}
	if stop != nil {
		go func() {
			select {
			case <-stop:
				cancel(ErrStopped)
			case <-ctx.Done():
			}
		}()
	}
	s, err := p.dialOne(ctx, gen)
	if err != nil && context.Cause(ctx) == ErrStopped {
		return nil, fmt.Errorf("dial %s: %w", p.params.Addr(), ErrStopped)
	}
	return s, err
}

// TryCheckout returns an idle connection, or nil when there is none, without waiting or dialing.
// It is the fast path of a busy pool: no timer, no context.
func (p *Pool) TryCheckout() *backend.ServerConn {
	for {
		p.mu.Lock()
		if len(p.idle) == 0 || p.closed || p.paused {
			p.mu.Unlock()
			return nil
		}
		s := p.takeIdle()
		p.mu.Unlock()
		p.checkouts.Add(1)
		if p.usable(s) {
			return s
		}
		p.discard(s)
	}
}

// takeIdle removes and returns the idle connection to hand out next: the one released last, or
// with RoundRobin the one released first. p.mu must be held and p.idle not empty.
func (p *Pool) takeIdle() *backend.ServerConn {
	if p.opts.RoundRobin {
		s := p.idle[0]
		p.idle[0] = nil
		p.idle = p.idle[1:]
		return s
	}
	n := len(p.idle)
	s := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return s
}

// quietAfter is how long a connection must have been idle before usable asks the socket whether
// the server said something meanwhile. That costs a system call; a busy pool hands its servers
// out again within microseconds, and a server terminated in so short a gap is rare (a request
// sent to it in a transaction-mode pool then gets an ERROR, not a lost session).
const quietAfter = time.Millisecond

// usable checks a connection taken from the idle list: not too old, silent since it was released
// (a server that terminated it while it sat idle has sent its FATAL and closed it: the next
// client must not be the one to find out), and alive if it was idle long.
func (p *Pool) usable(s *backend.ServerConn) bool {
	if s.Broken || p.isStale(s) || p.staleAddr(s) {
		return false
	}
	now := time.Now()
	if p.opts.Lifetime > 0 && now.Sub(s.Created) > p.opts.Lifetime {
		return false
	}
	if now.Sub(s.LastUsed) > quietAfter && !s.Quiet() {
		s.Broken = true
		return false
	}
	if now.Sub(s.LastUsed) > p.opts.HealthcheckDelay {
		to := p.opts.HealthcheckTimeout
		if to <= 0 {
			to = time.Second
		}
		_ = s.SetReadDeadline(now.Add(to))
		st, err := s.Exec(";")
		_ = s.SetReadDeadline(time.Time{})
		if err != nil || st != 'I' {
			s.Broken = true
			return false
		}
	}
	return true
}

// dialOne dials a connection in a slot the caller counted in open, in the generation gen the
// pool had then (read under the same hold of p.mu): a Reconnect during the dial counted the
// slot stale, so the connection is of the old generation and closes when released, as KILL and
// RECONNECT promise for every connection they find. On error the slot is freed.
func (p *Pool) dialOne(ctx context.Context, gen uint64) (*backend.ServerConn, error) {
	s, err := p.dial(ctx, &p.params)
	if err == nil && p.opts.OnConnect != nil {
		if err = p.opts.OnConnect(s); err != nil {
			s.Close()
		}
	}
	if err != nil {
		p.dialErrors.Add(1)
		p.mu.Lock()
		if gen < p.gen.Load() && p.stale > 0 {
			p.stale-- // a stale slot that never opened
		}
		p.open--
		p.wakeDialer()
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Lock()
	s.PoolGen = gen
	p.params0 = maps.Clone(s.Params)
	p.mu.Unlock()
	return s, nil
}

// Release gives a connection back. A broken connection, or one past its lifetime, is closed. A
// connection with a cancel request under way (HoldForCancel) is kept from every client, and
// Release blocks, until the request is done.
func (p *Pool) Release(s *backend.ServerConn) {
	if (s.Dirty || s.Discard) && !s.Broken {
		// A client changed the session in ways no other client may inherit.
		to := p.opts.HealthcheckTimeout
		if to <= 0 {
			to = time.Second
		}
		if err := s.ResetSession(to); err != nil {
			s.Broken = true
		}
	}
	now := time.Now()
	s.LastUsed = now
	if s.Broken || (p.opts.Lifetime > 0 && now.Sub(s.Created) > p.jitteredLifetime(s)) || p.isStale(s) || p.staleAddr(s) {
		p.discard(s)
		return
	}
	// A cancel request on its way to the server must not land on the next client's query.
	s.WaitCancels()
	p.mu.Lock()
	if p.closed || p.isStale(s) { // stale again under the lock: a Reconnect may have just run
		p.mu.Unlock()
		p.discard(s)
		return
	}
	if len(p.waiters) > 0 && !p.paused {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.ch <- s // buffered: sent under the lock so a waiter that gives up finds it
		p.mu.Unlock()
		return
	}
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// jitteredLifetime spreads the end of connections opened together over 10% of the lifetime, so
// they are not all replaced at once.
func (p *Pool) jitteredLifetime(s *backend.ServerConn) time.Duration {
	l := p.opts.Lifetime
	j := time.Duration(uint64(s.Created.UnixNano())%1000) * l / 10000
	return l - j
}

// discard closes s and frees its slot.
func (p *Pool) discard(s *backend.ServerConn) {
	go s.Close()
	p.mu.Lock()
	if p.isStale(s) && p.stale > 0 {
		p.stale--
	}
	p.open--
	p.wakeDialer()
	p.mu.Unlock()
}

// slotFreed accounts for a connection that is gone and lets a waiter dial in its place.
func (p *Pool) slotFreed() {
	p.mu.Lock()
	p.open--
	p.wakeDialer()
	p.mu.Unlock()
}

// isStale reports whether s joined the pool before the last Reconnect.
func (p *Pool) isStale(s *backend.ServerConn) bool { return s.PoolGen < p.gen.Load() }

// Reconnect makes every open connection close instead of being reused (the admin console's
// RECONNECT): the idle ones now, those in use when they are released. New connections replace
// them as clients need them.
func (p *Pool) Reconnect() {
	p.mu.Lock()
	p.gen.Add(1)
	idle := p.idle
	p.idle = nil
	// Every connection open now is stale, those still being dialed too (see dialOne).
	p.stale = p.open
	p.mu.Unlock()
	for _, s := range idle {
		p.discard(s)
	}
}

// Stale returns the number of connections the last Reconnect marked that are still open: in
// use by clients, to be closed when released (WAIT_CLOSE waits for 0).
func (p *Pool) Stale() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stale
}

// wakeDialer tells the first waiter, if any, that a slot is free so it dials. p.mu must be held.
func (p *Pool) wakeDialer() {
	if len(p.waiters) > 0 && !p.closed && !p.paused {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.ch <- nil // the waiter loops and dials in the free slot
	}
}

// KnownServerParameters returns the parameters the latest server reported at login, or nil
// when no connection was ever made. It never blocks; the map must not be modified.
func (p *Pool) KnownServerParameters() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.params0
}

// ServerParameters returns the parameters the server reported at login, dialing once if no
// connection was ever made. Clients are told these at their own login. The map must not be
// modified.
func (p *Pool) ServerParameters(ctx context.Context) (map[string]string, error) {
	if pp := p.KnownServerParameters(); pp != nil {
		return pp, nil
	}
	s, err := p.Checkout(ctx)
	if err != nil {
		return nil, err
	}
	p.Release(s)
	pp := p.KnownServerParameters()
	if pp == nil {
		return nil, errors.New("server parameters unknown")
	}
	return pp, nil
}

// Close closes idle connections and makes checked-out ones close on release. Waiters get
// ErrClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	ws := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	for _, s := range idle {
		s.Close()
		p.slotFreed()
	}
	for _, w := range ws {
		w.ch <- nil
	}
}

// maintain closes idle and old connections and keeps MinSize open.
func (p *Pool) maintain() {
	defer close(p.done)
	tick := time.NewTicker(time.Second + time.Duration(rand.IntN(200))*time.Millisecond)
	defer tick.Stop()
	lastResolve := time.Now()
	if p.opts.ResolveEvery > 0 {
		p.resolve()
	}
	p.fillMin()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
			if p.opts.ResolveEvery > 0 && time.Since(lastResolve) >= p.opts.ResolveEvery {
				lastResolve = time.Now()
				p.resolve()
			}
			p.reap()
			p.fillMin()
		}
	}
}

func (p *Pool) reap() {
	now := time.Now()
	var drop []*backend.ServerConn
	p.mu.Lock()
	keep := p.idle[:0]
	for i, s := range p.idle {
		tooOld := p.opts.Lifetime > 0 && now.Sub(s.Created) > p.jitteredLifetime(s)
		tooIdle := p.opts.IdleTimeout > 0 && now.Sub(s.LastUsed) > p.opts.IdleTimeout &&
			p.open-len(drop) > p.opts.MinSize
		if tooOld || tooIdle || p.isStale(s) || p.staleAddrLocked(s) {
			drop = append(drop, s)
			p.idle[i] = nil
			continue
		}
		keep = append(keep, s)
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.mu.Unlock()
	for _, s := range drop {
		p.discard(s)
	}
}

// resolve looks the server's host name up again. When its addresses differ from the last
// lookup's, connections to an address no longer among them become stale: reap closes the idle
// ones and Release the others. A failed lookup changes nothing.
func (p *Pool) resolve() {
	host := p.params.Host
	if net.ParseIP(host) != nil || strings.HasPrefix(host, "/") {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ips, err := p.lookup(ctx, host)
	cancel()
	if err != nil || len(ips) == 0 {
		return
	}
	slices.Sort(ips)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resolved != nil && !slices.Equal(p.resolved, ips) {
		p.addrs = make(map[string]bool, len(ips))
		for _, ip := range ips {
			p.addrs[ip] = true
		}
	}
	p.resolved = ips
}

// staleAddr reports whether s is connected to an address its host no longer resolves to.
func (p *Pool) staleAddr(s *backend.ServerConn) bool {
	if p.opts.ResolveEvery <= 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.staleAddrLocked(s)
}

// staleAddrLocked is staleAddr with p.mu held.
func (p *Pool) staleAddrLocked(s *backend.ServerConn) bool {
	if p.addrs == nil {
		return false
	}
	ip := s.RemoteIP()
	return ip != "" && !p.addrs[ip]
}

func (p *Pool) fillMin() {
	for {
		p.mu.Lock()
		if p.closed || p.open >= p.opts.MinSize || p.open >= p.opts.Size {
			p.mu.Unlock()
			return
		}
		p.open++
		gen := p.gen.Load() // with open: see Reconnect
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.params.ConnectTimeout+time.Second)
		s, err := p.dialOne(ctx, gen)
		cancel()
		if err != nil {
			return
		}
		p.Release(s)
	}
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Open, Idle, Waiting int
	Checkouts, Waits    uint64
	DialErrors          uint64
	TotalWait           time.Duration
	// MaxWait is how long the longest-waiting Checkout has waited so far (0: none waits).
	MaxWait time.Duration
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	st := Stats{Open: p.open, Idle: len(p.idle), Waiting: len(p.waiters)}
	for _, w := range p.waiters {
		if d := time.Since(w.since); d > st.MaxWait {
			st.MaxWait = d // a waiter that looped to dial again is not first in line
		}
	}
	p.mu.Unlock()
	st.Checkouts = p.checkouts.Load()
	st.Waits = p.waits.Load()
	st.DialErrors = p.dialErrors.Load()
	st.TotalWait = time.Duration(p.totalWaitNs.Load())
	return st
}

// Busy returns how many of the pool's connections are checked out: the measure of load balancing
// mode "loc".
func (p *Pool) Busy() int {
	p.mu.Lock()
	n := p.open - len(p.idle)
	p.mu.Unlock()
	return n
}

// DiscardIdle closes the idle connections, after their server was found down: they would fail
// the next client that took one.
func (p *Pool) DiscardIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, s := range idle {
		p.discard(s)
	}
}
