package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// The WAL listener's slot is permanent and streamed by one sluice at a time (docs/cache.md, "WAL
// catch-up"). These tests run two sluices that share a Redis and the slot, or restart one.

// walConsumer waits until exactly one of the sluices whose admin consoles are adms streams the
// slot, caught up, and the others stand by; it returns the consumer's index.
func walConsumer(t *testing.T, adms []*pgx.Conn) int {
	t.Helper()
	consumer := -1
	checkFor(t, 60*time.Second, func() error {
		consumer = -1
		var states []string
		for i, adm := range adms {
			show := cacheShow(t, adm)
			states = append(states, show["wal/"]+", consumed "+show["wal_consumed/"])
			switch {
			case show["wal_consumed/"] != "yes":
				return fmt.Errorf("sluice %d: the WAL is not consumed: %v", i, states)
			case show["wal/"] == "streaming" && consumer < 0:
				consumer = i
			case show["wal/"] == "streaming":
				return fmt.Errorf("two sluices stream: %v", states)
			case show["wal/"] != "standby: another sluice streams":
				return fmt.Errorf("sluice %d neither streams nor stands by: %v", i, states)
			}
		}
		if consumer < 0 {
			return fmt.Errorf("no sluice streams: %v", states)
		}
		return nil
	})
	return consumer
}

// slotHolders checks that slot is a permanent slot, streamed by exactly one walsender, whose
// session holds the WAL listener's advisory lock, and that no other session holds it.
func slotHolders(t *testing.T, direct *pgx.Conn, slot string) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		var slots, active, temporary, locks, lockedByStreamer int
		err := direct.QueryRow(context.Background(), `
SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1),
       (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active),
       (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND temporary),
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
          AND classid = hashtext('sluice cache')::oid AND objid = hashtext($1)::oid),
       (SELECT count(*) FROM pg_locks l JOIN pg_replication_slots s ON l.pid = s.active_pid
        WHERE s.slot_name = $1 AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
          AND l.classid = hashtext('sluice cache')::oid AND l.objid = hashtext($1)::oid)`, slot).
			Scan(&slots, &active, &temporary, &locks, &lockedByStreamer)
		if err != nil {
			return err
		}
		if slots != 1 || active != 1 || temporary != 0 || locks != 1 || lockedByStreamer != 1 {
			return fmt.Errorf("slot %s: %d slots, %d active, %d temporary; %d sessions hold the lock, %d of them streaming it; want 1, 1, 0, 1, 1",
				slot, slots, active, temporary, locks, lockedByStreamer)
		}
		return nil
	})
}

// freshPoller reads a counter that only grows through a sluice, over and over, and counts the
// reads that returned less than Postgres held before the read began: stale reads.
type freshPoller struct {
	reads, stale atomic.Int64
	mu           sync.Mutex
	first        string // the first stale read
	stop         chan struct{}
	done         chan struct{}
}

// pollFresh starts polling q through s, on a connection of its own.
func pollFresh(t *testing.T, s *Sluice, q string) *freshPoller {
	t.Helper()
	conn := simpleConn(t, s)
	pgc, _ := cacheServers(t)
	ctx := context.Background()
	truth, err := pgx.Connect(ctx, pgc.DSN(appDB, pgtest.SuperUser, pgtest.SuperPassword))
	if err != nil {
		t.Fatal(err)
	}
	p := &freshPoller{stop: make(chan struct{}), done: make(chan struct{})}
	read := func(c *pgx.Conn) (int64, error) {
		s, err := rowsText(ctx, c, q)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	}
	go func() {
		defer close(p.done)
		defer truth.Close(ctx)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			before, err := read(truth)
			if err != nil {
				t.Errorf("read the truth: %v", err)
				return
			}
			got, err := read(conn)
			if err != nil {
				t.Errorf("read through sluice: %v", err)
				return
			}
			p.reads.Add(1)
			if got < before {
				if p.stale.Add(1) == 1 {
					p.mu.Lock()
					p.first = fmt.Sprintf("read %d through sluice at %s, after Postgres held %d", got, time.Now().Format("15:04:05.000"), before)
					p.mu.Unlock()
				}
			}
		}
	}()
	return p
}

// end stops the poller and fails the test if any read was stale.
func (p *freshPoller) end(t *testing.T) {
	t.Helper()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.stale.Load(); n > 0 {
		t.Errorf("%d of %d reads through sluice were stale; the first: %s", n, p.reads.Load(), p.first)
	}
	if p.reads.Load() < 10 {
		t.Errorf("only %d reads through sluice", p.reads.Load())
	}
	if p.stale.Load() == 0 {
		t.Logf("%d reads through sluice, none stale", p.reads.Load())
	}
}

// generation reads table's generation counter, and the epoch, from the test's Redis keys.
func generation(t *testing.T, direct *pgx.Conn, rc rueidis.Client, table string) (int64, string) {
	t.Helper()
	ctx := context.Background()
	var sysid, oid string
	if err := direct.QueryRow(ctx, "SELECT system_identifier::text, $1::regclass::oid::text FROM pg_control_system()", table).Scan(&sysid, &oid); err != nil {
		t.Fatal(err)
	}
	prefix := "e2e:" + t.Name() + ":"
	g, err := rc.Do(ctx, rc.B().Get().Key(prefix+"g:"+sysid+"/"+appDB+":"+oid).Build()).AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		t.Fatal(err)
	}
	epoch, err := rc.Do(ctx, rc.B().Get().Key(prefix+"epoch").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	return g, epoch
}

func redisClient(t *testing.T) rueidis.Client {
	t.Helper()
	_, r := cacheServers(t)
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	return rc
}

// TestCacheWALOneConsumer: of two sluices sharing a Redis, one streams the permanent slot
// (one walsender, one holder of the advisory lock), and a write made directly on Postgres is
// seen through both within a second.
func TestCacheWALOneConsumer(t *testing.T) {
	a, direct := startCachedSluiceConfig(t, poolConfig{}, "")
	b, _ := startCachedSluiceConfig(t, poolConfig{}, "")
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `DROP TABLE IF EXISTS wal_one;
		CREATE TABLE wal_one (id int PRIMARY KEY, v int);
		ALTER TABLE wal_one OWNER TO app;
		INSERT INTO wal_one SELECT g, g FROM generate_series(1, 5) g`); err != nil {
		t.Fatal(err)
	}
	walConsumer(t, []*pgx.Conn{connectAdmin(t, a, "pgcat"), connectAdmin(t, b, "pgcat")})
	slotHolders(t, direct, cacheWALSlot(t))

	conns := []*pgx.Conn{simpleConn(t, a), simpleConn(t, b)}
	const q = "SELECT sum(v) FROM wal_one"
	for _, w := range []string{"UPDATE wal_one SET v = v + 100 WHERE id < 4", "DELETE FROM wal_one WHERE id = 5",
		"INSERT INTO wal_one VALUES (7, 1000)"} {
		for _, c := range conns {
			waitCached(t, c, direct, q)
		}
		if _, err := direct.Exec(ctx, w); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		want, _ := rowsText(ctx, direct, q)
		for i, c := range conns {
			checkFor(t, time.Second, func() error {
				got, err := rowsText(ctx, c, q)
				if err != nil || got != want {
					return fmt.Errorf("sluice %d, after %s: %q, %v; want %q", i, w, got, err, want)
				}
				return nil
			})
		}
		t.Logf("%s: visible through both sluices after %s", w, time.Since(start).Round(time.Millisecond))
	}
	slotHolders(t, direct, cacheWALSlot(t))
}

// TestCacheWALTakeover: the sluice that streams the slot stops, or is killed; writes made
// directly on Postgres while nobody streams are never read stale through the other sluice, which
// takes the slot over and bumps them from where the first one stopped (the epoch is not
// renewed: the replay does it). A consumer that stops deletes its heartbeat, so the other stops
// serving at once; a killed one's expires, within a second and a half.
func TestCacheWALTakeover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB, poolConfig) *Sluice
		stop  func(*testing.T, *Sluice)
	}{
		{"stopped", startSluice, func(t *testing.T, s *Sluice) { s.Stop() }},
		{"killed", startSluiceProcess, func(t *testing.T, s *Sluice) { s.Signal(t, syscall.SIGKILL) }},
	} {
		t.Run(tc.name, func(t *testing.T) { walTakeover(t, tc.start, tc.stop) })
	}
}

func walTakeover(t *testing.T, run func(testing.TB, poolConfig) *Sluice, stop func(*testing.T, *Sluice)) {
	consumer, direct := startCachedWith(t, poolConfig{}, "", run)
	walConsumer(t, []*pgx.Conn{connectAdmin(t, consumer, "pgcat")})
	survivor, _ := startCachedSluiceConfig(t, poolConfig{}, "")
	ctx := context.Background()
	slot := cacheWALSlot(t)
	rc := redisClient(t)
	if _, err := direct.Exec(ctx, `DROP TABLE IF EXISTS wal_switch, wal_bulk;
		CREATE TABLE wal_switch (id int PRIMARY KEY, v bigint);
		ALTER TABLE wal_switch OWNER TO app;
		INSERT INTO wal_switch VALUES (1, 0);
		CREATE TABLE wal_bulk (id int, pad text)`); err != nil {
		t.Fatal(err)
	}
	survivorAdm := connectAdmin(t, survivor, "pgcat")
	if c := walConsumer(t, []*pgx.Conn{connectAdmin(t, consumer, "pgcat"), survivorAdm}); c != 0 {
		t.Fatal("the sluice started second took the slot")
	}
	conn := simpleConn(t, survivor)
	const q = "SELECT v FROM wal_switch"
	walBarrier(t, conn, direct)
	waitCached(t, conn, direct, q)

	// The test queues for the slot's lock, so it gets it when the consumer lets it go, and the
	// survivor cannot take over until the test lets it: the writes below land while nobody
	// streams.
	locker, err := pgx.Connect(ctx, direct.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	locked := make(chan error, 1)
	go func() {
		_, err := locker.Exec(ctx, "SELECT pg_advisory_lock(hashtext('sluice cache'), hashtext($1))", slot)
		locked <- err
	}()
	checkFor(t, 10*time.Second, func() error {
		var n int
		if err := direct.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND objsubid = 2 AND classid = hashtext('sluice cache')::oid AND objid = hashtext($1)::oid`, slot).Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("the test is not waiting for the lock (%d, %v)", n, err)
		}
		return nil
	})
	gen0, epoch0 := generation(t, direct, rc, "wal_switch")

	poller := pollFresh(t, survivor, q)
	stopped := time.Now()
	stop(t, consumer)
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stopped consumer did not let the slot's lock go")
	}
	checkFor(t, 2*time.Second, func() error {
		if show := cacheShow(t, survivorAdm); show["wal_consumed/"] != "no" || !strings.HasPrefix(show["serving/"], "no") {
			return fmt.Errorf("the survivor still serves with nobody streaming: %v", show)
		}
		return nil
	})
	t.Logf("the survivor stopped serving %s after the consumer stopped", time.Since(stopped).Round(time.Millisecond))
	// A large transaction first: the survivor takes a while to replay it, and must not serve
	// meanwhile.
	if _, err := direct.Exec(ctx, "INSERT INTO wal_bulk SELECT g, repeat('x', 20) FROM generate_series(1, 100000) g"); err != nil {
		t.Fatal(err)
	}
	const writes = 3
	for i := 0; i < writes; i++ {
		if _, err := direct.Exec(ctx, "UPDATE wal_switch SET v = v + 1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if g, _ := generation(t, direct, rc, "wal_switch"); g != gen0 {
		t.Fatalf("the generation moved from %d to %d while nobody streamed", gen0, g)
	}

	start := time.Now()
	if _, err := locker.Exec(ctx, "SELECT pg_advisory_unlock(hashtext('sluice cache'), hashtext($1))", slot); err != nil {
		t.Fatal(err)
	}
	walConsumer(t, []*pgx.Conn{survivorAdm})
	t.Logf("the survivor took over and caught up in %s", time.Since(start).Round(time.Millisecond))
	slotHolders(t, direct, slot)
	waitCached(t, conn, direct, q)
	poller.end(t)
	gen, epoch := generation(t, direct, rc, "wal_switch")
	if gen < gen0+writes || epoch != epoch0 {
		t.Errorf("after the takeover: generation %d (was %d), epoch %s (was %s); want the %d writes replayed, the epoch kept",
			gen, gen0, epoch, epoch0, writes)
	}

	// Streaming again: a direct write is seen within a second.
	if _, err := direct.Exec(ctx, "UPDATE wal_switch SET v = v + 1"); err != nil {
		t.Fatal(err)
	}
	want, _ := rowsText(ctx, direct, q)
	checkFor(t, time.Second, func() error {
		if got, err := rowsText(ctx, conn, q); err != nil || got != want {
			return fmt.Errorf("after the takeover: %q, %v; want %q", got, err, want)
		}
		return nil
	})
}

// TestCacheWALResume: a write made directly on Postgres while the only sluice was down is
// bumped when it comes back, from its slot, and no read through it is stale meanwhile.
func TestCacheWALResume(t *testing.T) {
	s, direct := startCachedSluiceConfig(t, poolConfig{}, "")
	ctx := context.Background()
	slot := cacheWALSlot(t)
	rc := redisClient(t)
	if _, err := direct.Exec(ctx, `DROP TABLE IF EXISTS wal_resume;
		CREATE TABLE wal_resume (id int PRIMARY KEY, v bigint);
		ALTER TABLE wal_resume OWNER TO app;
		INSERT INTO wal_resume VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT v FROM wal_resume"
	conn := simpleConn(t, s)
	walBarrier(t, conn, direct)
	waitCached(t, conn, direct, q)
	gen0, _ := generation(t, direct, rc, "wal_resume")
	conn.Close(ctx)
	s.Stop()

	if _, err := direct.Exec(ctx, "UPDATE wal_resume SET v = v + 1"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		var active bool
		if err := direct.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active); err != nil || active {
			return fmt.Errorf("slot %s while sluice is down: active %v, %v; want it kept, inactive", slot, active, err)
		}
		return nil
	})

	s2, _ := startCachedSluiceConfig(t, poolConfig{}, "")
	conn = simpleConn(t, s2)
	poller := pollFresh(t, s2, q)
	walConsumer(t, []*pgx.Conn{connectAdmin(t, s2, "pgcat")})
	waitCached(t, conn, direct, q)
	poller.end(t)
	if gen, _ := generation(t, direct, rc, "wal_resume"); gen < gen0+1 {
		t.Errorf("generation %d after the restart (was %d): the write made while sluice was down was not replayed", gen, gen0)
	}
	slotHolders(t, direct, slot)
}
