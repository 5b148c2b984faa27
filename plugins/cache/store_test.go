package cache

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

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

// servingStore starts a redis-server and a store on it (l1 bytes of client-side cache), and
// waits until the store serves. Both stop when the test ends.
func servingStore(t *testing.T, l1 int) (*store, *pgtest.Redis) {
	t.Helper()
	r, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	st := newStore([]string{r.Addr}, "t:", "", 200*time.Millisecond, l1, nil)
	t.Cleanup(st.close)
	waitServing(t, st, true)
	return st, r
}

// TestStoreGenerations: bumps are seen by the next read in this process at once, entries
// round-trip, and the epoch is renewed when the store starts.
func TestStoreGenerations(t *testing.T) {
	st, _ := servingStore(t, 1<<20)
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
	if v, err := st.get(ctx, key, time.Now().UnixNano()); v != nil || err != nil {
		t.Fatalf("empty entry: %q %v", v, err)
	}
	if err := st.put(ctx, key, []byte("wire\x00bytes"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The miss above may sit in the client-side cache until Redis's invalidation message for
	// the key arrives: a miss, never a wrong value.
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, err := st.get(ctx, key, time.Now().UnixNano())
		if string(v) == "wire\x00bytes" && err == nil {
			break
		}
		if err != nil || v != nil || time.Now().After(deadline) {
			t.Fatalf("entry: %q %v", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStoreSeesOthersBumps: a counter written by another Redis client (another sluice, the WAL
// consumer of another) reaches this store's reads once Redis's invalidation arrives, through
// both client-side caches.
func TestStoreSeesOthersBumps(t *testing.T) {
	st, r := servingStore(t, 1<<20)
	other := newStore([]string{r.Addr}, "t:", "", 200*time.Millisecond, 0, nil)
	defer other.close()
	waitServing(t, other, true)
	ctx := context.Background()
	pd := &pointDeps{oid: 3, keys: []string{"42"}}
	read := func() (epoch string, gen, row int64) {
		t.Helper()
		e, gens, rows, err := st.versions(ctx, "db", []uint32{3}, pd)
		if err != nil {
			t.Fatal(err)
		}
		return e, gens[0], rows[1]
	}
	e0, g0, r0 := read()
	read() // now held in the process
	if err := other.bumpKeys("db", nil, map[uint32][]string{3: {"42"}}); err != nil {
		t.Fatal(err)
	}
	other.bumpEpoch("test")
	deadline := time.Now().Add(2 * time.Second)
	for {
		e, g, row := read()
		if e != e0 && g > g0 && row > r0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("another client's bumps not seen: epoch %q (was %q), gen %d (was %d), row %d (was %d)", e, e0, g, g0, row, r0)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStoreRedisFlushed: after a FLUSHALL (counters back at zero, entries gone but still held
// in the process) the store serves nothing until it has written a new epoch, so no key made
// before the flush can be made again.
func TestStoreRedisFlushed(t *testing.T) {
	st, _ := servingStore(t, 1<<20)
	ctx := context.Background()
	e0, _, _, err := st.versions(ctx, "db", []uint32{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *st.client.Load()
	if err := c.Do(ctx, c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, _, _, err := st.versions(ctx, "db", []uint32{1}, nil)
		if err == nil && e != e0 {
			if e == "" {
				t.Fatal("served with no epoch after a flush")
			}
			break
		}
		if err != nil && err != errNotServing {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a flush: epoch %q, %v; want a new one", e, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStoreWarnsOfEviction: a Redis that may evict keys is named in a warning; one that may
// not is not.
func TestStoreWarnsOfEviction(t *testing.T) {
	for _, tc := range []struct {
		limit, policy string
		warn          bool
	}{
		{"100mb", "allkeys-lru", true},
		{"100mb", "noeviction", false},
		{"0", "allkeys-lru", false}, // no limit: nothing is evicted
	} {
		t.Run(tc.limit+"/"+tc.policy, func(t *testing.T) {
			r, err := pgtest.StartRedis()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop()
			c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr}, DisableCache: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			for _, kv := range [][2]string{{"maxmemory", tc.limit}, {"maxmemory-policy", tc.policy}} {
				if err := c.Do(ctx, c.B().ConfigSet().ParameterValue().ParameterValue(kv[0], kv[1]).Build()).Error(); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncBuffer
			st := newStore([]string{r.Addr}, "t:", "", 200*time.Millisecond, 0, slog.New(slog.NewTextHandler(&logs, nil)))
			defer st.close()
			waitServing(t, st, true)
			if got := strings.Contains(logs.String(), "may evict"); got != tc.warn {
				t.Errorf("warned %v, want %v; log: %s", got, tc.warn, logs.String())
			}
		})
	}
}

// TestStoreEntriesInProcess: with an in-process cache, an entry stored or read once is served
// from the process until it expires in Redis, and not after.
func TestStoreEntriesInProcess(t *testing.T) {
	st, _ := servingStore(t, 1<<20)
	ctx := context.Background()
	c := *st.client.Load()
	del := func(key string) {
		t.Helper()
		if err := c.Do(ctx, c.B().Del().Key(key).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	get := func(key string, at time.Time) string {
		t.Helper()
		v, err := st.get(ctx, key, at.UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}

	stored := st.entryKey([]byte{1})
	if err := st.put(ctx, stored, []byte("stored"), time.Minute); err != nil {
		t.Fatal(err)
	}
	del(stored) // what follows can only come from the process
	if v := get(stored, time.Now()); v != "stored" {
		t.Errorf("a stored entry read back as %q", v)
	}
	if v := get(stored, time.Now().Add(61*time.Second)); v != "" {
		t.Errorf("a stored entry served after its TTL: %q", v)
	}

	read := st.entryKey([]byte{2})
	if err := c.Do(ctx, c.B().Set().Key(read).Value("read").Px(time.Minute).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if v := get(read, time.Now()); v != "read" {
		t.Fatalf("an entry in Redis read as %q", v)
	}
	del(read)
	if v := get(read, time.Now()); v != "read" {
		t.Errorf("an entry read from Redis was not kept in the process: %q", v)
	}
	if v := get(read, time.Now().Add(61*time.Second)); v != "" {
		t.Errorf("an entry read from Redis served after its expiry there: %q", v)
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
	st := newStore([]string{addr}, "t:", "", 50*time.Millisecond, 0, nil)
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
	st2 := newStore([]string{r.Addr}, "t:", "", 100*time.Millisecond, 0, nil)
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
	st, _ := servingStore(t, 0)
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

// TestStoreRowCounters: a pinned bump moves its keys' row counters and the table's generation,
// not its base counter nor other keys; an unpinned one moves the base counter; a row counter
// that expired and is bumped again never comes back to a value it had; row counters expire.
func TestStoreRowCounters(t *testing.T) {
	st, _ := servingStore(t, 1<<20)
	ctx := context.Background()
	pd := &pointDeps{oid: 7, keys: []string{"1", "2"}}
	read := func() (gen int64, rows []int64) {
		t.Helper()
		_, gens, rows, err := st.versions(ctx, "db", []uint32{7}, pd)
		if err != nil || len(gens) != 1 || len(rows) != 3 {
			t.Fatalf("versions: %v %v %v", gens, rows, err)
		}
		return gens[0], rows
	}
	g0, r0 := read()
	if g0 != 0 || r0[0] != 0 || r0[1] != 0 || r0[2] != 0 {
		t.Fatalf("fresh counters: gen %d, base and rows %v", g0, r0)
	}
	if err := st.bumpKeys("db", nil, map[uint32][]string{7: {"1"}}); err != nil {
		t.Fatal(err)
	}
	g1, r1 := read() // at once: the floors cover the client-side cache
	if g1 != 1 || r1[0] != 0 || r1[1] == 0 || r1[2] != 0 {
		t.Fatalf("after a bump of key 1: gen %d, base and rows %v", g1, r1)
	}
	if err := st.bumpKeys("db", nil, map[uint32][]string{7: {"1"}}); err != nil {
		t.Fatal(err)
	}
	if _, r2 := read(); r2[1] <= r1[1] {
		t.Fatalf("a second bump of key 1 did not raise it: %d then %d", r1[1], r2[1])
	}
	if err := st.bump("db", []uint32{7}); err != nil {
		t.Fatal(err)
	}
	if g3, r3 := read(); g3 != 3 || r3[0] != 1 {
		t.Fatalf("after an unpinned bump: gen %d, base %d", g3, r3[0])
	}
	// Redis's own view: the row counter expires after the bound and its margin.
	c := *st.client.Load()
	pttl, err := c.Do(ctx, c.B().Pttl().Key(st.rowKey("db", 7, "1")).Build()).AsInt64()
	if want := (rowTTLBound + rowCounterMargin).Milliseconds(); err != nil || pttl <= want-5000 || pttl > want {
		t.Fatalf("row counter's PTTL %d %v, want about %d", pttl, err, want)
	}
	// An expired counter bumped again starts above what it was (Redis's clock in µs).
	last, _ := c.Do(ctx, c.B().Get().Key(st.rowKey("db", 7, "1")).Build()).AsInt64()
	if err := c.Do(ctx, c.B().Del().Key(st.rowKey("db", 7, "1")).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := st.bumpKeys("db", nil, map[uint32][]string{7: {"1"}}); err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Do(ctx, c.B().Get().Key(st.rowKey("db", 7, "1")).Build()).AsInt64(); again <= last {
		t.Fatalf("a row counter bumped after it expired came back to %d, not above %d", again, last)
	}
	// Floors are forgotten once the client-side cache cannot hold older values.
	st.sweepRowFloors(time.Now().Add(st.genTTL + time.Minute).UnixNano())
	n := 0
	st.rowFloors.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d row floors left after the sweep", n)
	}
}

// TestStoreRedisRestartedFromSnapshot: a Redis that comes back from an older snapshot has its
// counters back at older values, which a new write then moves to values entries held in the
// process were made at. The store serves nothing from the moment the connection breaks until it
// has written a new epoch, so no such entry is answered.
func TestStoreRedisRestartedFromSnapshot(t *testing.T) {
	st, r := servingStore(t, 1<<20)
	ctx := context.Background()
	c := *st.client.Load()
	if err := c.Do(ctx, c.B().Save().Build()).Error(); err != nil { // the snapshot: generation 0
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Incr().Key(st.genKey("db", 1)).Build()).Error(); err != nil { // another sluice's write
		t.Fatal(err)
	}
	var e0 string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		e, gens, _, err := st.versions(ctx, "db", []uint32{1}, nil)
		if err == nil && gens[0] == 1 {
			e0 = e
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bump was not seen")
		}
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil { // from the snapshot: generation 0 again
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		c := *st.client.Load()
		_ = c.Do(ctx, c.B().Incr().Key(st.genKey("db", 1)).Build()).Error() // a write: 0 -> 1, 1 -> 2, ...
		e, gens, _, err := st.versions(ctx, "db", []uint32{1}, nil)
		if _, ok := st.serving(); ok && err == nil {
			if e == e0 {
				t.Fatalf("serving at epoch %s, generation %d, after Redis came back from an older snapshot", e0[:8], gens[0])
			}
			return // a new epoch: every key made before is out of reach
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving again after the restart: %v", err)
		}
	}
}

// TestStoreFloorsAfterFlush: the floors (the lowest value this process may read of a counter it
// bumped) were written against the Redis before a flush. After it, the counters start again at
// zero: a floor above them would hold the generation a read uses still while writes bump the
// counter below it, so an entry filled then would be served after the next write.
func TestStoreFloorsAfterFlush(t *testing.T) {
	st, _ := servingStore(t, 1<<20)
	ctx := context.Background()
	for range 5 {
		if err := st.bump("db", []uint32{1}); err != nil {
			t.Fatal(err)
		}
	}
	c := *st.client.Load()
	if err := c.Do(ctx, c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	waitServing(t, st, false)
	waitServing(t, st, true)
	e0, g0, _, err := st.versions(ctx, "db", []uint32{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.bump("db", []uint32{1}); err != nil { // a write after the flush: 0 -> 1
		t.Fatal(err)
	}
	e1, g1, _, err := st.versions(ctx, "db", []uint32{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e0 == e1 && g0[0] == g1[0] {
		t.Fatalf("a write after a flush left the key's versions at epoch %s, generation %d", e0[:8], g0[0])
	}
}
