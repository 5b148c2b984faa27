package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/internal/backend"
)

// fakeServer is a loopback server that speaks just enough of the protocol for backend.Dial: it
// logs any startup in (or refuses it, as login decides), answers every simple query with
// EmptyQueryResponse and ReadyForQuery, and counts the connections the pool has not closed yet.
// It gives the tests real *backend.ServerConn values, whose Close needs a connection.
type fakeServer struct {
	ln net.Listener

	mu     sync.Mutex
	login  func(n int64) error // nil, or called for login number n (from 1); an error refuses it
	conns  map[net.Conn]bool   // server ends of the open connections
	closed bool                // the test is over: conns were closed

	failChecks atomic.Bool // answer queries with an error, in a failed transaction

	logins atomic.Int64 // startup packets received
	live   atomic.Int64 // connections accepted and not yet closed by the client
	wg     sync.WaitGroup
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		f.closed = true
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

// params are the backend.Params of a pool of this server.
func (f *fakeServer) params() backend.Params {
	a := f.ln.Addr().(*net.TCPAddr)
	return backend.Params{Host: a.IP.String(), Port: a.Port, Database: "db", User: "u"}
}

// setLogin makes fn decide the logins from now on.
func (f *fakeServer) setLogin(fn func(n int64) error) {
	f.mu.Lock()
	f.login = fn
	f.mu.Unlock()
}

func (f *fakeServer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[c] = true
		f.live.Add(1)
		f.wg.Add(1)
		f.mu.Unlock()
		go f.serve(c)
	}
}

func (f *fakeServer) serve(c net.Conn) {
	defer func() {
		c.Close()
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		f.live.Add(-1)
		f.wg.Done()
	}()
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	n := f.logins.Add(1)
	f.mu.Lock()
	login := f.login
	f.mu.Unlock()
	if login != nil {
		if err := login(n); err != nil {
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "53300", Message: err.Error()})
			_ = be.Flush()
			return
		}
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "17.0"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: uint32(n), SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.Query:
			if f.failChecks.Load() {
				be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "25P02", Message: "current transaction is aborted"})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'E'})
			} else {
				be.Send(&pgproto3.EmptyQueryResponse{})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			}
			if err := be.Flush(); err != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

// terminate ends every connection from the server's side, as pg_terminate_backend or a fast
// shutdown does: a FATAL 57P01, then the close.
func (f *fakeServer) terminate(t testing.TB) {
	t.Helper()
	fatal, err := (&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01",
		Message: "terminating connection due to administrator command"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_, _ = c.Write(fatal)
		c.Close()
	}
}

// newTestPool returns a pool of f that is closed when the test ends. Servers are not health
// checked unless o asks for it.
func newTestPool(t testing.TB, f *fakeServer, o Options) *Pool {
	t.Helper()
	if o.HealthcheckDelay == 0 {
		o.HealthcheckDelay = time.Hour
	}
	p := New(f.params(), o)
	t.Cleanup(p.Close)
	return p
}

// checkFor fails the test unless check returns nil within timeout.
func checkFor(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantStats checks the pool's open, idle and waiting counts within a second.
func wantStats(t testing.TB, p *Pool, open, idle, waiting int) {
	t.Helper()
	checkFor(t, time.Second, func() error {
		st := p.Stats()
		if st.Open != open || st.Idle != idle || st.Waiting != waiting {
			return fmt.Errorf("open, idle, waiting = %d, %d, %d; want %d, %d, %d",
				st.Open, st.Idle, st.Waiting, open, idle, waiting)
		}
		return nil
	})
}

// wantLive checks that the server sees n connections within a second: closes are asynchronous.
func wantLive(t testing.TB, f *fakeServer, n int64) {
	t.Helper()
	checkFor(t, time.Second, func() error {
		if got := f.live.Load(); got != n {
			return fmt.Errorf("server has %d connections open, want %d", got, n)
		}
		return nil
	})
}

func wantLogins(t testing.TB, f *fakeServer, n int64) {
	t.Helper()
	if got := f.logins.Load(); got != n {
		t.Fatalf("server saw %d logins, want %d", got, n)
	}
}

func checkout(t testing.TB, p *Pool) *backend.ServerConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := p.Checkout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// result is what a Checkout in another goroutine returned.
type result struct {
	s   *backend.ServerConn
	err error
}

// goCheckout starts Checkout(ctx) in a goroutine and waits until it waits, so that waiters
// started one after the other queue in that order.
func goCheckout(t testing.TB, ctx context.Context, p *Pool) <-chan result {
	t.Helper()
	before := p.Stats().Waiting
	ch := make(chan result, 1)
	go func() {
		s, err := p.Checkout(ctx)
		ch <- result{s, err}
	}()
	checkFor(t, time.Second, func() error {
		if w := p.Stats().Waiting; w != before+1 {
			return fmt.Errorf("%d waiters, want %d", w, before+1)
		}
		return nil
	})
	return ch
}

func receive(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Checkout did not return")
		return result{}
	}
}

func TestNewSizeIsAtLeastOne(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 0})
	a := checkout(t, p)
	if s := p.TryCheckout(); s != nil {
		t.Fatal("TryCheckout returned a second server from a pool of size 0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := p.Checkout(ctx); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("second Checkout of a pool of size 0: %v, want ErrWaitTimeout", err)
	}
	p.Release(a)
	wantLogins(t, f, 1)
}

func TestCheckoutReturnsMostRecentlyReleasedFirst(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 3})
	a, b, c := checkout(t, p), checkout(t, p), checkout(t, p)
	p.Release(a)
	p.Release(b)
	p.Release(c)
	wantStats(t, p, 3, 3, 0)
	for i, want := range []*backend.ServerConn{c, b, a} {
		got := checkout(t, p)
		defer p.Release(got)
		if got != want {
			t.Fatalf("checkout %d: got server pid %d, want pid %d", i, got.PID(), want.PID())
		}
	}
	wantLogins(t, f, 3)
}

func TestCheckoutDialsUpToSizeAndNoMore(t *testing.T) {
	const size = 3
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: size})
	seen := map[*backend.ServerConn]bool{}
	for range size {
		seen[checkout(t, p)] = true
	}
	if len(seen) != size {
		t.Fatalf("%d distinct servers, want %d", len(seen), size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if s, err := p.Checkout(ctx); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Checkout of a full pool: %v, %v; want ErrWaitTimeout", s, err)
	}
	wantLogins(t, f, size)
	wantStats(t, p, size, 0, 0)
	wantLive(t, f, size)
}

func TestWaitersAreServedInArrivalOrder(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	s := checkout(t, p)
	var waiters []<-chan result
	for range 5 {
		waiters = append(waiters, goCheckout(t, context.Background(), p))
	}
	for i, w := range waiters {
		p.Release(s)
		r := receive(t, w)
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		if r.s != s {
			t.Fatalf("waiter %d got another server than the one released", i)
		}
		for j, later := range waiters[i+1:] {
			select {
			case <-later:
				t.Fatalf("waiter %d was served before waiter %d", i+1+j, i)
			default:
			}
		}
	}
	p.Release(s)
	wantLogins(t, f, 1)
	wantStats(t, p, 1, 1, 0)
}

func TestWaiterTimeoutWrapsErrWaitTimeout(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	s := checkout(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := p.Checkout(ctx)
	if !errors.Is(err, ErrWaitTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Checkout: %v; want it to wrap ErrWaitTimeout and context.DeadlineExceeded", err)
	}
	wantStats(t, p, 1, 0, 0)
	if st := p.Stats(); st.Waits != 1 {
		t.Errorf("Waits = %d, want 1", st.Waits)
	}
	p.Release(s)
	wantStats(t, p, 1, 1, 0)
}

// A server released after a waiter gave up goes to the next waiter, or is idle when there is
// none: it is never lost with the waiter.
func TestServerReleasedAfterWaiterTimeoutIsNotLost(t *testing.T) {
	for _, next := range []bool{false, true} {
		t.Run(fmt.Sprintf("next waiter %v", next), func(t *testing.T) {
			f := newFakeServer(t)
			p := newTestPool(t, f, Options{Size: 1})
			s := checkout(t, p)
			ctx, cancel := context.WithCancel(context.Background())
			first := goCheckout(t, ctx, p)
			var second <-chan result
			if next {
				second = goCheckout(t, context.Background(), p)
			}
			cancel()
			if r := receive(t, first); !errors.Is(r.err, ErrWaitTimeout) {
				t.Fatalf("first waiter: %v, want ErrWaitTimeout", r.err)
			}
			p.Release(s)
			if next {
				if r := receive(t, second); r.s != s {
					t.Fatalf("second waiter: %v, %v; want the released server", r.s, r.err)
				}
				p.Release(s)
			}
			wantStats(t, p, 1, 1, 0)
			if got := p.TryCheckout(); got != s {
				t.Fatal("the released server is not idle")
			}
			wantLogins(t, f, 1)
		})
	}
}

// A Release that races with the end of a waiter's context must leave the server with the next
// waiter, whichever of the two wins.
func TestReleaseRacingWaiterTimeoutKeepsServer(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	s := checkout(t, p)
	for i := range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		first := goCheckout(t, ctx, p)
		second := goCheckout(t, context.Background(), p)
		cancel()
		p.Release(s)
		if r := receive(t, first); r.err == nil {
			// The first waiter got the server before it saw its context end: it releases it.
			p.Release(r.s)
		} else if !errors.Is(r.err, ErrWaitTimeout) {
			t.Fatalf("iteration %d: first waiter: %v, want ErrWaitTimeout", i, r.err)
		}
		r := receive(t, second)
		if r.s != s {
			t.Fatalf("iteration %d: second waiter: %v, %v; want the released server", i, r.s, r.err)
		}
		wantStats(t, p, 1, 0, 0)
	}
	p.Release(s)
	wantLogins(t, f, 1)
}

// A slot freed (by a discarded server) just as a waiter's context ends must be accounted once:
// the pool's count of open servers must match what is really open.
func TestSlotFreedRacingWaiterTimeoutIsCountedOnce(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	for i := range 100 {
		s := checkout(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		w := goCheckout(t, ctx, p)
		cancel()
		s.Broken = true
		p.Release(s) // frees the slot and hands it to the waiter if it is still listed
		if r := receive(t, w); r.err == nil {
			p.Release(r.s) // it got a server before it saw its context end: fine
		} else if !errors.Is(r.err, ErrWaitTimeout) {
			t.Fatalf("iteration %d: Checkout: %v; want ErrWaitTimeout", i, r.err)
		}
		// Nothing is checked out: open must be what is idle, and the server must agree.
		checkFor(t, time.Second, func() error {
			st := p.Stats()
			if st.Open != st.Idle || st.Open < 0 || int64(st.Open) != f.live.Load() {
				return fmt.Errorf("iteration %d: pool counts %d open, %d idle; server has %d", i, st.Open, st.Idle, f.live.Load())
			}
			return nil
		})
	}
	if st := p.Stats(); st.DialErrors != 0 {
		t.Errorf("DialErrors = %d; no dial failed", st.DialErrors)
	}
}

func TestFailedDialFreesSlotAndWakesWaiter(t *testing.T) {
	f := newFakeServer(t)
	gate := make(chan struct{})
	f.setLogin(func(n int64) error {
		if n == 1 {
			<-gate
			return errors.New("too many connections")
		}
		return nil
	})
	p := newTestPool(t, f, Options{Size: 1})
	dialing := make(chan error, 1)
	go func() {
		_, err := p.Checkout(context.Background())
		dialing <- err
	}()
	checkFor(t, time.Second, func() error {
		if f.logins.Load() != 1 {
			return errors.New("first dial has not reached the server")
		}
		return nil
	})
	w := goCheckout(t, context.Background(), p) // waits: the dialing Checkout holds the only slot
	close(gate)
	if err := <-dialing; err == nil || errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("failed dial: Checkout returned %v, want the dial error", err)
	}
	r := receive(t, w)
	if r.err != nil {
		t.Fatalf("waiter: %v, want a server dialed in the freed slot", r.err)
	}
	wantLogins(t, f, 2)
	wantStats(t, p, 1, 0, 0)
	if st := p.Stats(); st.DialErrors != 1 {
		t.Errorf("DialErrors = %d, want 1", st.DialErrors)
	}
	p.Release(r.s)
	wantStats(t, p, 1, 1, 0)
}

func TestReleaseDiscardsBrokenAndOldServers(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		age     time.Duration // how long before Release the server was created
		broken  bool
		discard bool
	}{
		{name: "healthy", opts: Options{Size: 1}, age: 0},
		{name: "broken", opts: Options{Size: 1}, broken: true, discard: true},
		{name: "past lifetime", opts: Options{Size: 1, Lifetime: time.Minute}, age: 2 * time.Minute, discard: true},
		{name: "within lifetime", opts: Options{Size: 1, Lifetime: time.Minute}, age: 30 * time.Second},
		{name: "no lifetime", opts: Options{Size: 1}, age: 100 * time.Hour},
	}
	for _, tc := range tests {
		for _, waiting := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/waiter %v", tc.name, waiting), func(t *testing.T) {
				f := newFakeServer(t)
				p := newTestPool(t, f, tc.opts)
				s := checkout(t, p)
				s.Created = time.Now().Add(-tc.age)
				s.Broken = tc.broken
				var w <-chan result
				if waiting {
					w = goCheckout(t, context.Background(), p)
				}
				p.Release(s)
				var got *backend.ServerConn
				if waiting {
					r := receive(t, w)
					if r.err != nil {
						t.Fatal(r.err)
					}
					got = r.s
				} else {
					got = checkout(t, p)
				}
				if tc.discard && got == s {
					t.Fatal("the discarded server was handed out again")
				}
				if !tc.discard && got != s {
					t.Fatal("the released server was not reused")
				}
				wantLogins(t, f, map[bool]int64{false: 1, true: 2}[tc.discard])
				wantStats(t, p, 1, 0, 0)
				wantLive(t, f, 1)
				p.Release(got)
			})
		}
	}
}

func TestReapClosesIdleServersDownToMinSize(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		idleFor  []time.Duration // how long each idle server was unused, oldest release first
		age      time.Duration   // how old every server is
		wantKept []int           // indexes into idleFor of the servers still idle, in idle order
	}{
		{
			name:     "all idle too long, min 1 keeps the most recently used",
			opts:     Options{Size: 4, MinSize: 1, IdleTimeout: time.Minute},
			idleFor:  []time.Duration{4 * time.Minute, 3 * time.Minute, 2 * time.Minute, 2 * time.Minute},
			wantKept: []int{3},
		},
		{
			name:     "min 0 closes all",
			opts:     Options{Size: 3, IdleTimeout: time.Minute},
			idleFor:  []time.Duration{2 * time.Minute, 2 * time.Minute, 2 * time.Minute},
			wantKept: nil,
		},
		{
			name:     "recently used servers stay",
			opts:     Options{Size: 4, IdleTimeout: time.Minute},
			idleFor:  []time.Duration{2 * time.Minute, 0, 2 * time.Minute, 0},
			wantKept: []int{1, 3},
		},
		{
			name:     "no idle timeout",
			opts:     Options{Size: 2},
			idleFor:  []time.Duration{time.Hour, time.Hour},
			wantKept: []int{0, 1},
		},
		{
			name:     "min size counts all servers",
			opts:     Options{Size: 4, MinSize: 2, IdleTimeout: time.Minute},
			idleFor:  []time.Duration{2 * time.Minute, 2 * time.Minute, 2 * time.Minute, 2 * time.Minute},
			wantKept: []int{2, 3},
		},
		{
			name:     "past lifetime is closed below min size",
			opts:     Options{Size: 2, MinSize: 2, Lifetime: time.Minute},
			idleFor:  []time.Duration{0, 0},
			age:      2 * time.Minute,
			wantKept: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t)
			p := newTestPool(t, f, tc.opts)
			var servers []*backend.ServerConn
			for range tc.idleFor {
				servers = append(servers, checkout(t, p))
			}
			for _, s := range servers {
				p.Release(s)
			}
			wantStats(t, p, len(servers), len(servers), 0)
			// The maintenance goroutine reads idle servers under the lock.
			now := time.Now()
			p.mu.Lock()
			for i, s := range servers {
				s.LastUsed = now.Add(-tc.idleFor[i])
				s.Created = now.Add(-tc.age)
			}
			p.mu.Unlock()
			p.reap()
			p.mu.Lock()
			var kept []int
			for _, s := range p.idle {
				for i, x := range servers {
					if s == x {
						kept = append(kept, i)
					}
				}
			}
			p.mu.Unlock()
			if fmt.Sprint(kept) != fmt.Sprint(tc.wantKept) {
				t.Fatalf("kept servers %v, want %v", kept, tc.wantKept)
			}
			// Refilling (after a lifetime reap) is the maintenance goroutine's job, not reap's.
			if st := p.Stats(); st.Open < len(tc.wantKept) || st.Open > max(len(tc.wantKept), tc.opts.MinSize) {
				t.Fatalf("open = %d after reaping to %d", st.Open, len(tc.wantKept))
			}
		})
	}
}

func TestMinSizeIsFilledInBackground(t *testing.T) {
	tests := []struct {
		size, min int
		want      int
	}{
		{size: 5, min: 3, want: 3},
		{size: 2, min: 5, want: 2},
		{size: 4, min: 0, want: 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("size %d min %d", tc.size, tc.min), func(t *testing.T) {
			f := newFakeServer(t)
			p := newTestPool(t, f, Options{Size: tc.size, MinSize: tc.min})
			wantStats(t, p, tc.want, tc.want, 0)
			wantLive(t, f, int64(tc.want))
			if got := f.logins.Load(); got != int64(tc.want) {
				t.Fatalf("%d logins, want %d", got, tc.want)
			}
			if st := p.Stats(); st.Checkouts != 0 {
				t.Errorf("filling counted %d checkouts", st.Checkouts)
			}
		})
	}
}

// The maintenance goroutine, on its own ticker, closes servers past their lifetime and dials
// new ones up to MinSize.
func TestMaintainReapsAndRefills(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the maintenance ticker (about a second)")
	}
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 3, MinSize: 2, Lifetime: 300 * time.Millisecond})
	wantStats(t, p, 2, 2, 0)
	a, b, c := checkout(t, p), checkout(t, p), checkout(t, p)
	p.Release(a)
	p.Release(b)
	p.Release(c)
	wantLogins(t, f, 3)
	checkFor(t, 3*time.Second, func() error {
		st := p.Stats()
		if n := f.logins.Load(); n != 5 || st.Open != 2 || st.Idle != 2 || f.live.Load() != 2 {
			return fmt.Errorf("%d logins, open %d, idle %d, server has %d; want 5 logins and 2 servers",
				n, st.Open, st.Idle, f.live.Load())
		}
		return nil
	})
	for _, s := range []*backend.ServerConn{a, b, c} {
		if got := p.TryCheckout(); got == s {
			t.Fatal("an old server is still in the pool")
		} else if got != nil {
			defer p.Release(got)
		}
	}
}

func TestTryCheckoutNeverDialsOrWaits(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	if s := p.TryCheckout(); s != nil {
		t.Fatal("TryCheckout of an empty pool returned a server")
	}
	wantLogins(t, f, 0)
	wantStats(t, p, 0, 0, 0)

	s := checkout(t, p)
	if got := p.TryCheckout(); got != nil {
		t.Fatal("TryCheckout of a full pool returned a server")
	}
	wantStats(t, p, 1, 0, 0)
	p.Release(s)
	if got := p.TryCheckout(); got != s {
		t.Fatal("TryCheckout did not return the idle server")
	}
	p.Release(s)
	p.Close()
	if got := p.TryCheckout(); got != nil {
		t.Fatal("TryCheckout of a closed pool returned a server")
	}
	wantLogins(t, f, 1)
}

// TryCheckout, like Checkout, does not hand out a server that is past its lifetime.
func TestIdleServerPastLifetimeIsNotHandedOut(t *testing.T) {
	for _, try := range []bool{false, true} {
		t.Run(fmt.Sprintf("TryCheckout %v", try), func(t *testing.T) {
			f := newFakeServer(t)
			p := newTestPool(t, f, Options{Size: 1, Lifetime: time.Minute})
			s := checkout(t, p)
			p.Release(s)
			p.mu.Lock()
			s.Created = time.Now().Add(-2 * time.Minute)
			p.mu.Unlock()
			if try {
				if got := p.TryCheckout(); got != nil {
					t.Fatal("TryCheckout returned a server past its lifetime")
				}
				wantStats(t, p, 0, 0, 0)
			} else {
				got := checkout(t, p)
				if got == s {
					t.Fatal("Checkout returned a server past its lifetime")
				}
				p.Release(got)
				wantLogins(t, f, 2)
			}
			wantLive(t, f, int64(p.Stats().Open))
		})
	}
}

// A server that terminated a connection while it sat idle in the pool has already said so (its
// FATAL and its close are waiting on the socket): neither checkout hands that connection out,
// long before any health check is due.
func TestServerTerminatedWhileIdleIsNotHandedOut(t *testing.T) {
	for _, try := range []bool{false, true} {
		t.Run(fmt.Sprintf("TryCheckout %v", try), func(t *testing.T) {
			f := newFakeServer(t)
			p := newTestPool(t, f, Options{Size: 2})
			a, b := checkout(t, p), checkout(t, p)
			p.Release(a)
			p.Release(b)
			f.terminate(t)
			wantLive(t, f, 0)
			p.mu.Lock()
			a.LastUsed, b.LastUsed = a.LastUsed.Add(-quietAfter), b.LastUsed.Add(-quietAfter)
			p.mu.Unlock()
			if try {
				if got := p.TryCheckout(); got != nil {
					t.Fatal("TryCheckout returned a server that had terminated the connection")
				}
				wantStats(t, p, 0, 0, 0)
				return
			}
			got := checkout(t, p)
			defer p.Release(got)
			if got == a || got == b {
				t.Fatal("Checkout returned a server that had terminated the connection")
			}
			if !a.Broken || !b.Broken {
				t.Error("the terminated connections are not marked broken")
			}
			if _, err := got.Exec(";"); err != nil {
				t.Fatalf("the new connection: %v", err)
			}
			wantLogins(t, f, 3)
			wantStats(t, p, 1, 0, 0)
		})
	}
}

// An idle server unused for longer than HealthcheckDelay is checked before use; one that fails
// the check is replaced.
func TestHealthCheckBeforeUse(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1, HealthcheckDelay: time.Minute, HealthcheckTimeout: time.Second})
	s := checkout(t, p)
	p.Release(s)
	p.mu.Lock()
	s.LastUsed = time.Now().Add(-2 * time.Minute)
	p.mu.Unlock()
	if got := checkout(t, p); got != s {
		t.Fatal("a server that passed the health check was not reused")
	}
	p.Release(s)
	wantLogins(t, f, 1)

	// The server now answers the check in a failed transaction: it is closed and replaced.
	f.failChecks.Store(true)
	p.mu.Lock()
	s.LastUsed = time.Now().Add(-2 * time.Minute)
	p.mu.Unlock()
	got := checkout(t, p)
	if got == s {
		t.Fatal("a server that failed the health check was handed out")
	}
	if !s.Broken {
		t.Error("the server that failed the health check is not marked broken")
	}
	wantLogins(t, f, 2)
	wantStats(t, p, 1, 0, 0)
	wantLive(t, f, 1)
	p.Release(got)
}

func TestCloseFailsWaitersWithErrClosed(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	s := checkout(t, p)
	w1 := goCheckout(t, context.Background(), p)
	w2 := goCheckout(t, context.Background(), p)
	p.Close()
	for i, w := range []<-chan result{w1, w2} {
		if r := receive(t, w); !errors.Is(r.err, ErrClosed) {
			t.Fatalf("waiter %d: %v, %v; want ErrClosed", i, r.s, r.err)
		}
	}
	if _, err := p.Checkout(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Checkout after Close: %v, want ErrClosed", err)
	}
	// A server checked out before Close is closed when released.
	p.Release(s)
	wantStats(t, p, 0, 0, 0)
	wantLive(t, f, 0)
	p.Close() // twice is harmless
}

func TestCloseClosesIdleServers(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 4, MinSize: 2})
	wantStats(t, p, 2, 2, 0)
	a, b, c := checkout(t, p), checkout(t, p), checkout(t, p)
	p.Release(a)
	p.Release(b)
	wantLive(t, f, 3)
	p.Close()
	wantStats(t, p, 1, 0, 0)
	wantLive(t, f, 1)
	p.Release(c)
	wantStats(t, p, 0, 0, 0)
	wantLive(t, f, 0)
}

// Many goroutines checking out and releasing, some giving up waiting, some breaking their
// server, never have more than Size servers, and leave every open server idle.
func TestConcurrentCheckoutRelease(t *testing.T) {
	const (
		size       = 4
		goroutines = 32
		rounds     = 150
	)
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: size, MinSize: 1})
	var held atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	report := func(err error) { // keeps the first few
		select {
		case errs <- err:
		default:
		}
	}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range rounds {
				var s *backend.ServerConn
				if rng.IntN(4) == 0 {
					s = p.TryCheckout()
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(2000))*time.Microsecond)
					var err error
					s, err = p.Checkout(ctx)
					if dl, _ := ctx.Deadline(); err != nil && time.Now().Before(dl) {
						report(err) // not a wait timeout, nor a dial cut short by the deadline
						cancel()
						return
					}
					cancel()
				}
				if s == nil {
					continue
				}
				if n := held.Add(1); n > size {
					report(fmt.Errorf("%d servers checked out at once, size %d", n, size))
				}
				if st := p.Stats(); st.Open > size || st.Open < 0 {
					report(fmt.Errorf("pool counts %d open, size %d", st.Open, size))
				}
				if rng.IntN(20) == 0 {
					s.Broken = true
				}
				if rng.IntN(2) == 0 {
					runtime.Gosched()
				}
				held.Add(-1)
				p.Release(s)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkFor(t, time.Second, func() error {
		st := p.Stats()
		if st.Open != st.Idle || st.Waiting != 0 || st.Open > size || int64(st.Open) != f.live.Load() {
			return fmt.Errorf("open %d, idle %d, waiting %d; server has %d open", st.Open, st.Idle, st.Waiting, f.live.Load())
		}
		return nil
	})
}

// BenchmarkCheckoutRelease measures the fast path of a busy pool: an idle server taken and given
// back, from every processor at once.
func BenchmarkCheckoutRelease(b *testing.B) {
	f := newFakeServer(b)
	size := runtime.GOMAXPROCS(0)
	p := newTestPool(b, f, Options{Size: size, MinSize: size})
	wantStats(b, p, size, size, 0)
	var misses atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s := p.TryCheckout()
			if s == nil {
				misses.Add(1)
				continue
			}
			p.Release(s)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(misses.Load())/float64(b.N), "misses/op")
}

// CheckoutWait, the client path, ends a wait by its timeout (ErrWaitTimeout) or by its stop
// channel (ErrStopped), and otherwise gets the next released server; a server released as a
// stopped waiter leaves is not lost.
func TestCheckoutWait(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 1})
	s := checkout(t, p)

	if _, err := p.CheckoutWait(10*time.Millisecond, nil); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("CheckoutWait with a timeout: %v, want ErrWaitTimeout", err)
	}

	stop := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		_, err := p.CheckoutWait(0, stop)
		errc <- err
	}()
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })
	stop <- struct{}{}
	if err := <-errc; !errors.Is(err, ErrStopped) {
		t.Fatalf("stopped CheckoutWait: %v, want ErrStopped", err)
	}

	got := make(chan *backend.ServerConn, 1)
	go func() {
		srv, _ := p.CheckoutWait(time.Minute, stop)
		got <- srv
	}()
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })
	p.Release(s)
	if srv := <-got; srv != s {
		t.Fatalf("CheckoutWait got %v, want the released server", srv)
	}
	p.Release(s)
	wantStats(t, p, 1, 1, 0)
	wantLogins(t, f, 1)
}

// waitFor polls cond until it holds, failing the test after five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
