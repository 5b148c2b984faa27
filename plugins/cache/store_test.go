package cache

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, func() error { return nil }) }

func waitServing(t *testing.T, st *store, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := st.serving(); ok == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serving did not become %v (why: %v)", want, st.why.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreGenerations: bumps are seen by the next read in this process at once, entries
// round-trip, and the epoch is renewed when the store starts.
func TestStoreGenerations(t *testing.T) {
	r, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	st := newStore([]string{r.Addr}, "t:", "", 200*time.Millisecond, 1<<20)
	defer st.close()
	waitServing(t, st, true)
	ctx := context.Background()
	epoch, gens, _, err := st.versions(ctx, "db", []uint32{1, 2}, nil)
	if err != nil || epoch == "" || gens[0] != 0 || gens[1] != 0 {
		t.Fatalf("versions: %q %v %v; want a renewed epoch and zeros", epoch, gens, err)
	}
	for i := 1; i <= 3; i++ {
		st.bump("db", []uint32{2})
		_, gens, _, err = st.versions(ctx, "db", []uint32{1, 2}, nil)
		if err != nil || gens[0] != 0 || gens[1] != int64(i) {
			t.Fatalf("after bump %d: %v %v", i, gens, err)
		}
	}
	if _, gens, _, _ = st.versions(ctx, "other", []uint32{2}, nil); gens[0] != 0 {
		t.Errorf("a bump in one database moved another's generation: %v", gens)
	}
	st.bumpEpoch("test")
	e2, _, _, _ := st.versions(ctx, "db", nil, nil)
	if e2 == epoch {
		t.Errorf("bumpEpoch left the epoch at %q", e2)
	}
	key := st.entryKey([]byte{1, 2, 3})
	if v, err := st.get(ctx, key, time.Minute); v != nil || err != nil {
		t.Fatalf("empty entry: %q %v", v, err)
	}
	if err := st.put(ctx, key, []byte("wire\x00bytes"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The miss above may sit in the client-side cache until Redis's invalidation message for
	// the key arrives: a miss, never a wrong value.
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, err := st.get(ctx, key, time.Minute)
		if string(v) == "wire\x00bytes" && err == nil {
			break
		}
		if err != nil || v != nil || time.Now().After(deadline) {
			t.Fatalf("entry: %q %v", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStoreRedisDown: with nothing listening, the store serves nothing and a bump marks it
// dirty; once Redis answers, it renews the epoch and serves again, and a Redis restart (a new
// run_id) renews it too.
func TestStoreRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port
	st := newStore([]string{addr}, "t:", "", 50*time.Millisecond, 0)
	defer st.close()
	time.Sleep(300 * time.Millisecond)
	if _, ok := st.serving(); ok {
		t.Fatal("serving with Redis down")
	}
	st.bump("db", []uint32{1})
	if !st.dirty.Load() || st.bumpFailures.Load() == 0 {
		t.Fatal("a failed bump did not make the store dirty")
	}

	r, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	st2 := newStore([]string{r.Addr}, "t:", "", 100*time.Millisecond, 0)
	defer st2.close()
	waitServing(t, st2, true)
	ctx := context.Background()
	e1, _, _, _ := st2.versions(ctx, "db", nil, nil)
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	st2.bump("db", []uint32{1}) // fails: Redis is gone
	waitServing(t, st2, false)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitServing(t, st2, true)
	e2, _, _, err := st2.versions(ctx, "db", nil, nil)
	if err != nil || e2 == "" || e2 == e1 {
		t.Fatalf("after Redis came back: epoch %q (was %q), %v; want a new one", e2, e1, err)
	}
}

// TestStoreLease: one holder at a time gets a key's fill lease; a waiter's poll sees it held
// and no entry, then the entry once the holder stored it (which releases the lease in the same
// round trip); a token that no longer holds the lease releases nothing. usage counts the
// entries and their bytes, not the leases or counters.
func TestStoreLease(t *testing.T) {
	r, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	st := newStore([]string{r.Addr}, "t:", "", 200*time.Millisecond, 0)
	defer st.close()
	waitServing(t, st, true)
	ctx := context.Background()
	key := st.entryKey([]byte{9})

	check := func(what string, wantValue string, wantLeased bool) {
		t.Helper()
		v, leased, err := st.poll(ctx, key)
		if err != nil || string(v) != wantValue || leased != wantLeased {
			t.Fatalf("%s: poll = %q, leased %v, %v; want %q, leased %v", what, v, leased, err, wantValue, wantLeased)
		}
	}
	check("before any lease", "", false)
	if ok, err := st.lease(ctx, key, "a", time.Minute); !ok || err != nil {
		t.Fatalf("first lease: %v %v", ok, err)
	}
	if ok, err := st.lease(ctx, key, "b", time.Minute); ok || err != nil {
		t.Fatalf("second lease while the first holds: %v %v; want refused", ok, err)
	}
	check("while held", "", true)
	if err := st.release(ctx, key, "b"); err != nil {
		t.Fatal(err)
	}
	check("after a release by a token that does not hold it", "", true)
	if err := st.putRelease(ctx, key, []byte("rows"), time.Minute, "a"); err != nil {
		t.Fatal(err)
	}
	check("after the fill", "rows", false)

	if ok, err := st.lease(ctx, key, "c", 50*time.Millisecond); !ok || err != nil {
		t.Fatalf("lease after the release: %v %v", ok, err)
	}
	time.Sleep(100 * time.Millisecond)
	check("after the lease expired", "rows", false)

	if err := st.put(ctx, st.entryKey([]byte{10}), []byte("more rows"), time.Minute); err != nil {
		t.Fatal(err)
	}
	st.bump("db", []uint32{1})
	entries, bytes, err := st.usage(ctx)
	if err != nil || entries != 2 || bytes != int64(len("rows")+len("more rows")) {
		t.Errorf("usage: %d entries, %d bytes, %v; want 2, %d", entries, bytes, err, len("rows")+len("more rows"))
	}
	if got := st.breakerState(); got != "closed" {
		t.Errorf("breaker %s, want closed", got)
	}
}
