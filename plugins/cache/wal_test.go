package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// TestDefaultWALSlot: sluices that share a Redis (the same addresses, in any order, and prefix)
// and a database share a slot; any other Redis, prefix or database gets its own.
func TestDefaultWALSlot(t *testing.T) {
	base := defaultWALSlot("sluice:", []string{"10.0.0.1:6379", "10.0.0.2:6379"}, "host=db1 user=repl dbname=app")
	if !slotName.MatchString(base) {
		t.Fatalf("%q is not a slot name", base)
	}
	for _, tc := range []struct {
		name   string
		prefix string
		redis  []string
		dsn    string
		same   bool
	}{
		{"addresses in another order, another host and user", "sluice:", []string{"10.0.0.2:6379", "10.0.0.1:6379"}, "host=db2 user=other dbname=app", true},
		{"a URL to the same database", "sluice:", []string{"10.0.0.1:6379", "10.0.0.2:6379"}, "postgres://repl@db1/app", true},
		{"another prefix", "other:", []string{"10.0.0.1:6379", "10.0.0.2:6379"}, "host=db1 user=repl dbname=app", false},
		{"another Redis", "sluice:", []string{"10.0.0.3:6379"}, "host=db1 user=repl dbname=app", false},
		{"another database", "sluice:", []string{"10.0.0.1:6379", "10.0.0.2:6379"}, "host=db1 user=repl dbname=shop", false},
	} {
		got := defaultWALSlot(tc.prefix, tc.redis, tc.dsn)
		if (got == base) != tc.same {
			t.Errorf("%s: %q, base %q: want same %v", tc.name, got, base, tc.same)
		}
	}
}

// TestWALBeatText: a heartbeat reads back as written; only a well-formed caught-up one lets
// lookups through.
func TestWALBeatText(t *testing.T) {
	for _, b := range []walBeat{{token: "a1", caughtUp: true, lagBytes: 10, lag: 1500 * time.Millisecond}, {token: "b2"}} {
		got, ok := parseWALBeat(b.String())
		if !ok || got != b || beatCaughtUp(b.String()) != b.caughtUp {
			t.Errorf("%+v: read back %+v, %v, caught up %v", b, got, ok, beatCaughtUp(b.String()))
		}
	}
	for _, v := range []string{"", "a1", "a1 caught-up", "a1 caught-upx 0 0", "a1 behind 0 0"} {
		if beatCaughtUp(v) {
			t.Errorf("%q lets lookups through", v)
		}
	}
}

// TestWALBeat: only a caught-up heartbeat lets a lookup through; a session's beats are refused
// once another session has claimed the heartbeat, and a session deletes only its own.
func TestWALBeat(t *testing.T) {
	r, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	st := newStore([]string{r.Addr}, "t:", walHeartbeatKey("t:", "s"), 200*time.Millisecond, 0, nil)
	defer st.close()
	waitServing(t, st, true)
	ctx := context.Background()
	// lookup returns what a lookup gets, once Redis's invalidation of the client-side cache's
	// copy of the heartbeat has arrived (within 100 ms; it takes well under one).
	lookup := func() error {
		var err error
		for deadline := time.Now().Add(100 * time.Millisecond); ; time.Sleep(5 * time.Millisecond) {
			_, _, _, err = st.versions(ctx, "db", []uint32{1}, nil)
			b, ok, rerr := st.readWAL(ctx)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if (err == nil) == (ok && b.caughtUp) || time.Now().After(deadline) {
				return err
			}
		}
	}
	if err := lookup(); !errors.Is(err, errWALNotConsumed) {
		t.Fatalf("a lookup without a heartbeat: %v; want errWALNotConsumed", err)
	}
	old := walBeat{token: "old", caughtUp: true, lagBytes: 5, lag: 20 * time.Millisecond}
	if err := st.beatWAL(ctx, old, true); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); err != nil {
		t.Fatalf("a lookup with a caught-up heartbeat: %v", err)
	}
	if b, ok, err := st.readWAL(ctx); err != nil || !ok || b != old {
		t.Fatalf("read %+v, %v, %v; want %+v", b, ok, err, old)
	}

	// A new consumer claims the heartbeat, catching up: nobody serves, and the old one's
	// beats are refused.
	if err := st.beatWAL(ctx, walBeat{token: "new"}, true); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); !errors.Is(err, errWALNotConsumed) {
		t.Fatalf("a lookup while the new consumer catches up: %v; want errWALNotConsumed", err)
	}
	if err := st.beatWAL(ctx, old, false); !errors.Is(err, errWALTakenOver) {
		t.Fatalf("the old consumer's beat: %v; want errWALTakenOver", err)
	}
	if err := st.endWAL(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.readWAL(ctx); !ok {
		t.Fatal("the old consumer deleted the new one's heartbeat")
	}
	if err := st.beatWAL(ctx, walBeat{token: "new", caughtUp: true}, false); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); err != nil {
		t.Fatalf("a lookup once the new consumer caught up: %v", err)
	}
	if err := st.endWAL(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); !errors.Is(err, errWALNotConsumed) {
		t.Fatalf("a lookup after the consumer stopped: %v; want errWALNotConsumed", err)
	}

	// A heartbeat expires: a consumer that died stops the serving within walBeatTTL.
	if err := st.beatWAL(ctx, walBeat{token: "dies", caughtUp: true}, true); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(walBeatTTL + 100*time.Millisecond)
	if err := lookup(); !errors.Is(err, errWALNotConsumed) {
		t.Fatalf("a lookup after the heartbeat expired: %v; want errWALNotConsumed", err)
	}
}

// TestRecovered: a replication session that panics ends with an error the listener restarts
// after, not with the process.
func TestRecovered(t *testing.T) {
	err := recovered(func() error { panic("bad WAL") })
	var pe *panicError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "bad WAL") || !strings.Contains(err.Error(), "TestRecovered") {
		t.Fatalf("recovered = %v", err)
	}
	want := errors.New("plain")
	if err := recovered(func() error { return want }); err != want {
		t.Fatalf("recovered passed %v, want %v", err, want)
	}
}
