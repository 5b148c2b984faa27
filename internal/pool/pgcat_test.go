package pool

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
)

// With RoundRobin (pgcat's server_round_robin) the idle connection released first is handed out
// first, so every connection takes its turn; TryCheckout does the same.
func TestRoundRobinHandsOutOldestReleasedFirst(t *testing.T) {
	f := newFakeServer(t)
	p := newTestPool(t, f, Options{Size: 3, RoundRobin: true})
	a, b, c := checkout(t, p), checkout(t, p), checkout(t, p)
	p.Release(a)
	p.Release(b)
	p.Release(c)
	var got []*backend.ServerConn
	for range 6 {
		s := p.TryCheckout()
		if s == nil {
			s = checkout(t, p)
		}
		got = append(got, s)
		p.Release(s)
	}
	want := []*backend.ServerConn{a, b, c, a, b, c}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("checkout %d: server pid %d, want pid %d", i, got[i].PID(), want[i].PID())
		}
	}
	wantLogins(t, f, 3)
}

// resolver is a fake host-name lookup whose answer the test changes.
type resolver struct {
	mu    sync.Mutex
	addrs []string
}

func (r *resolver) set(addrs ...string) {
	r.mu.Lock()
	r.addrs = addrs
	r.mu.Unlock()
}

func (r *resolver) lookup(context.Context, string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.addrs...), nil
}

// With ResolveEvery (pgcat's dns_cache_enabled), once the host name resolves to other addresses,
// the idle connections to the old address are closed and the one in use is closed at release;
// while the addresses stay the same nothing is closed.
func TestResolveClosesConnectionsToAnOldAddress(t *testing.T) {
	f := newFakeServer(t)
	params := f.params()
	port := params.Port
	params.Host = "db.example" // not an IP literal, so the pool resolves it
	r := &resolver{}
	r.set("127.0.0.1")
	p := &Pool{params: params, opts: Options{Size: 3, ResolveEvery: time.Millisecond, HealthcheckDelay: time.Hour},
		lookup: r.lookup, stop: make(chan struct{}), done: make(chan struct{}),
		dial: func(ctx context.Context, bp *backend.Params) (*backend.ServerConn, error) {
			c := *bp
			c.Host = "127.0.0.1"
			c.Port = port
			return backend.Dial(ctx, &c)
		}}
	close(p.done) // no maintenance goroutine: the test runs resolve and reap itself
	t.Cleanup(p.Close)
	p.resolve()
	a, b := checkout(t, p), checkout(t, p)
	p.Release(a)
	p.resolve() // same answer: nothing is stale
	if p.staleAddr(a) {
		t.Fatal("a connection is stale while the host resolves to the same address")
	}
	r.set("127.0.0.2", "127.0.0.3")
	p.resolve()
	p.reap()
	wantStats(t, p, 1, 0, 0) // a, idle, is closed; b is in use
	p.Release(b)
	wantStats(t, p, 0, 0, 0)
	wantLive(t, f, 0)
}

// A host given as an IP address is never looked up.
func TestResolveSkipsIPAddresses(t *testing.T) {
	called := false
	p := &Pool{params: backend.Params{Host: "10.0.0.1"}, opts: Options{ResolveEvery: time.Second},
		lookup: func(context.Context, string) ([]string, error) { called = true; return nil, nil }}
	p.resolve()
	if called {
		t.Error("resolve looked up an IP address")
	}
}
