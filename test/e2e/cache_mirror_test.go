package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
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

// TestCacheMirror (issue 6, acceptance 6): three tables mirrored into Redis (one with a
// composite key, in JSON; one with a column TOASTed out of line; one mirrored as a column
// subset) under a random write mix, through sluice and directly to Postgres: multi-row and
// range writes, key changes, DELETE, TRUNCATE, rolled-back transactions. During the run sluice is
// killed (SIGKILL) and restarted twice, Redis is restarted empty once (the mirror reloads) and
// Postgres crashes once. Once the slot has confirmed everything written, Redis holds exactly
// the tables' rows: no key missing, none extra, every value equal.
func TestCacheMirror(t *testing.T) {
	ctx := context.Background()
	pgm, err := pgtest.StartPostgres(pgtest.Options{Name: "mirror", Auth: "md5", Conf: map[string]string{"wal_level": "logical"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pgm.Stop() }) // after the sluices, which t.Cleanup stops first
	if err := pgm.CreateUser(ctx, appUser, appPass); err != nil {
		t.Fatal(err)
	}
	if err := pgm.CreateDatabase(ctx, appDB, appUser); err != nil {
		t.Fatal(err)
	}
	r, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	if err := pgm.Exec(ctx, appDB, `
		CREATE TABLE m_users (id int PRIMARY KEY, email text NOT NULL, name text, score int);
		CREATE TABLE m_lines (region text, id int, qty int, note text, PRIMARY KEY (region, id));
		CREATE TABLE m_docs (id int PRIMARY KEY, title text, body text);
		ALTER TABLE m_users OWNER TO app; ALTER TABLE m_lines OWNER TO app; ALTER TABLE m_docs OWNER TO app;
		INSERT INTO m_users SELECT g, 'u' || g || '@x', 'n' || g, g FROM generate_series(1, 100) g;
		INSERT INTO m_lines SELECT r, g, g, NULL FROM unnest(ARRAY['eu:west', 'a\b', 'us']) r, generate_series(1, 30) g;
		INSERT INTO m_docs SELECT g, 't' || g, (SELECT string_agg(md5(random()::text || x), '') FROM generate_series(1, 640) x WHERE g > 0)
			FROM generate_series(1, 40) g;`); err != nil {
		t.Fatal(err)
	}
	superDSN := pgm.DSN(appDB, pgtest.SuperUser, pgtest.SuperPassword)
	direct, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	var toast int64
	if err := direct.QueryRow(ctx, "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'm_docs'").Scan(&toast); err != nil || toast == 0 {
		t.Fatalf("m_docs has nothing stored out of line (%d bytes, %v)", toast, err)
	}
	general := fmt.Sprintf(`
[plugins.cache]
redis = %q
prefix = "mc:"
wal_dsn = %q

[plugins.cache.mirror.m_users]
columns = ["name", "score"]

[plugins.cache.mirror.m_lines]
format = "json"

[plugins.cache.mirror."public.m_docs"]
prefix = "docs:"
`, r.Addr, superDSN)
	pc := poolConfig{ServerPort: pgm.Port, General: general, PoolSize: 10}
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	markerReady := func() error {
		state, err := rc.Do(ctx, rc.B().Hget().Key("mc:mirror:sluice_mirror").Field("state").Build()).ToString()
		if err != nil || state != "ready" {
			return fmt.Errorf("mirror not loaded: %q %v", state, err)
		}
		return nil
	}

	// The writers: two through sluice (whose address changes at each restart), two directly.
	var sluiceURL atomic.Pointer[string]
	start := func() *Sluice {
		s := startSluiceProcess(t, pc)
		u := s.URL()
		sluiceURL.Store(&u)
		return s
	}
	s1 := start()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var commits, failures atomic.Int64
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			url := func() string {
				if i < 2 {
					return *sluiceURL.Load()
				}
				return pgm.URL(appDB, appUser, appPass)
			}
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(ctx)
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if conn == nil || conn.IsClosed() {
					cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					c, err := pgx.Connect(cctx, url())
					cancel()
					conn = c
					if err != nil {
						conn = nil
						time.Sleep(50 * time.Millisecond)
						continue
					}
				}
				if err := mirrorWrite(ctx, conn, rng); err != nil {
					failures.Add(1)
					if conn.IsClosed() || errors.Is(err, context.DeadlineExceeded) {
						conn.Close(ctx)
						conn = nil
					}
					continue
				}
				commits.Add(1)
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	kill := func(s *Sluice) {
		s.Signal(t, syscall.SIGKILL)
		<-s.Exited()
	}
	began := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), what) }
	// The mirror loads while the writers run; then each disruption hits a streaming mirror.
	checkFor(t, 20*time.Second, markerReady)
	phase("loaded")
	time.Sleep(2 * time.Second)
	kill(s1)
	s2 := start()
	phase("sluice killed and restarted")
	// One transaction writes, truncates two tables at once, and writes again (retried: its
	// locks may deadlock with the writers').
	checkFor(t, 10*time.Second, func() error {
		return pgm.Exec(ctx, appDB, `BEGIN;
		INSERT INTO m_docs VALUES (900, 'gone', repeat('z', 3000));
		UPDATE m_lines SET qty = qty + 1;
		TRUNCATE m_docs, m_lines;
		INSERT INTO m_lines VALUES ('eu:west', 1, 1, NULL), ('us', 1, 1, 'kept');
		INSERT INTO m_docs SELECT g, 'after', (SELECT string_agg(md5(random()::text || x), '') FROM generate_series(1, 640) x WHERE g > 0)
			FROM generate_series(1, 5) g;
		COMMIT`)
	})
	time.Sleep(2 * time.Second)
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, markerReady)
	phase("Redis restarted empty; the mirror reloaded")
	time.Sleep(1500 * time.Millisecond)
	if err := pgm.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := pgm.Start(); err != nil {
		t.Fatal(err)
	}
	phase("Postgres crashed and restarted")
	time.Sleep(2 * time.Second)
	kill(s2)
	s3 := start()
	phase("sluice killed and restarted")
	time.Sleep(2500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d transactions committed or rolled back, %d failed (conflicts, and connections the restarts cut)", commits.Load(), failures.Load())
	if commits.Load() < 200 {
		t.Fatalf("only %d writes went through", commits.Load())
	}

	// The connection did not survive Postgres's crash.
	direct.Close(ctx)
	if direct, err = pgx.Connect(ctx, superDSN); err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	// Caught up: a last commit is in Redis, so every commit before it is (the mirror applies in
	// commit order), and the slot has been told: Postgres would resend nothing Redis lacks.
	// (Waiting for the slot to reach pg_current_wal_lsn() can take forever: the WAL writer
	// flushes only whole pages when idle, and decoding reads only flushed records.)
	if _, err := direct.Exec(ctx, "INSERT INTO m_users VALUES (-1, 'last@x', 'last', 0)"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, func() error {
		n, err := rc.Do(ctx, rc.B().Exists().Key("mc:m_users:-1").Build()).AsInt64()
		if err != nil || n != 1 {
			return fmt.Errorf("the last commit is not in Redis (%v); sluice's log:\n%s", err, mirrorLog(s3.Log.String()))
		}
		return nil
	})
	phase("caught up")
	applied, err := rc.Do(ctx, rc.B().Hget().Key("mc:mirror:sluice_mirror").Field("lsn").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		var ok bool
		err := direct.QueryRow(ctx, "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'sluice_mirror'", applied).Scan(&ok)
		if err != nil || !ok {
			return fmt.Errorf("the slot has not confirmed %s, which Redis holds (%v)", applied, err)
		}
		return nil
	})

	want := mirrorTruth(t, ctx, direct)
	got := mirrorContents(t, ctx, rc)
	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, "missing "+k)
		} else if g != v {
			diffs = append(diffs, fmt.Sprintf("%s: %.120s; want %.120s", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		for i, s := range []*Sluice{s1, s2, s3} {
			t.Logf("sluice %d:\n%s", i+1, mirrorLog(s.Log.String()))
		}
		t.Errorf("%d of %d keys differ:\n%s", len(diffs), len(want), strings.Join(diffs[:min(len(diffs), 30)], "\n"))
	}
	t.Logf("%d rows compared", len(want))

	// The mirror loaded a snapshot at the start and when Redis came back empty (a load cut
	// short by Redis's reconnection is retried), and at no other time: every other restart
	// resumed from the slot, and the stream never found Redis different from what it expected.
	for i, c := range []struct {
		s     *Sluice
		loads int
	}{{s1, 1}, {s2, 1}, {s3, 0}} {
		log := c.s.Log.String()
		n := strings.Count(log, "loading a snapshot")
		if n < c.loads || (c.loads == 0 && n > 0) ||
			n != strings.Count(log, `why="no mirror in Redis"`)+strings.Count(log, `why="the last load did not finish"`) ||
			strings.Contains(log, "Redis lacks") || strings.Contains(log, "columns of") {
			t.Errorf("sluice %d: want a load only when Redis was empty (%d times):\n%s", i+1, c.loads, mirrorLog(log))
		}
	}
}

// bigText is a random 20 KB text: incompressible enough that Postgres stores it out of line.
func bigText(rng *rand.Rand) string {
	b := make([]byte, 15_000)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)
}

var mirrorRegions = []string{"eu:west", `a\b`, "us"}

// mirrorWrite runs one random transaction on the mirrored tables: one statement on its own, or
// two to four in a block that commits or (one time in five) rolls back.
func mirrorWrite(ctx context.Context, conn *pgx.Conn, rng *rand.Rand) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if rng.IntN(3) > 0 {
		sql, args := mirrorStatement(rng)
		_, err := conn.Exec(ctx, sql, args...)
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if rng.IntN(4) == 0 {
		// A key that moves away and back in one transaction, its TOASTed body unchanged
		// throughout, then is updated again.
		a := 1 + rng.IntN(150)
		for _, sql := range []string{
			"UPDATE m_docs SET id = id + 2000 WHERE id = $1",
			"UPDATE m_docs SET id = id - 2000, title = 'back' WHERE id = $1 + 2000",
			"UPDATE m_docs SET title = title || '!' WHERE id = $1",
		} {
			if _, err := tx.Exec(ctx, sql, a); err != nil {
				return err
			}
		}
	}
	for range 2 + rng.IntN(3) {
		sql, args := mirrorStatement(rng)
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
	}
	if rng.IntN(5) == 0 {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// mirrorStatement picks one write.
func mirrorStatement(rng *rand.Rand) (string, []any) {
	a := 1 + rng.IntN(150)
	b := a + rng.IntN(20)
	region := mirrorRegions[rng.IntN(len(mirrorRegions))]
	switch rng.IntN(24) {
	case 0:
		return "INSERT INTO m_users SELECT g, 'u' || g || '@x', 'n' || g, g FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING", []any{a, b}
	case 1:
		return "UPDATE m_users SET score = score + 1, name = CASE WHEN id % 5 = 0 THEN NULL ELSE left(coalesce(name, '') || 'x', 12) END WHERE id BETWEEN $1 AND $2", []any{a, b}
	case 2:
		return "UPDATE m_users SET id = id + 1000 WHERE id BETWEEN $1 AND $2 AND id < 1000", []any{a, a + 3}
	case 3:
		return "UPDATE m_users SET id = id - 1000 WHERE id > 1000 AND id % 3 = $1", []any{a % 3}
	case 4:
		return "UPDATE m_users SET email = email || '.' WHERE id % 10 = $1", []any{a % 10} // a column not mirrored
	case 5:
		return "DELETE FROM m_users WHERE id % 7 = $1 AND id BETWEEN $2 AND $3", []any{a % 7, a, b + 20}
	case 6:
		if rng.IntN(300) == 0 {
			return "TRUNCATE m_users", nil
		}
		return "DELETE FROM m_users WHERE id = $1", []any{a}
	case 7, 8:
		note := any(nil)
		switch rng.IntN(3) {
		case 0:
			note = bigText(rng)
		case 1:
			note = fmt.Sprintf(`note "%d" {x:1} \`, a)
		}
		return "INSERT INTO m_lines VALUES ($1, $2, $3, $4) ON CONFLICT (region, id) DO UPDATE SET qty = excluded.qty, note = excluded.note", []any{region, a, b, note}
	case 9:
		return "UPDATE m_lines SET qty = qty + 1 WHERE region = $1 AND id < $2", []any{region, b} // note unchanged
	case 10:
		return "UPDATE m_lines SET id = id + 500 WHERE region = $1 AND id BETWEEN $2 AND $3 AND id < 500", []any{region, a, a + 5}
	case 11:
		return "UPDATE m_lines SET region = $1 WHERE region <> $1 AND id BETWEEN $2 AND $3", []any{region, a, a + 2}
	case 12:
		return "UPDATE m_lines SET id = id - 500 WHERE id > 500 AND qty % 2 = $1", []any{a % 2}
	case 13:
		return "DELETE FROM m_lines WHERE qty > $1 AND region = $2", []any{b + 100, region}
	case 14:
		if rng.IntN(300) == 0 {
			return "TRUNCATE m_lines", nil
		}
		return "UPDATE m_lines SET note = NULL WHERE region = $1 AND id = $2", []any{region, a}
	case 15, 16:
		return "INSERT INTO m_docs VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET title = excluded.title", []any{a, fmt.Sprintf("t%d", b), bigText(rng)}
	case 17:
		return "UPDATE m_docs SET title = left(coalesce(title, '') || ':y', 20) WHERE id BETWEEN $1 AND $2", []any{a, b} // body unchanged
	case 18:
		return "UPDATE m_docs SET id = id + 1000 WHERE id BETWEEN $1 AND $2 AND id < 1000", []any{a, a + 2}
	case 19:
		return "UPDATE m_docs SET id = id - 1000, title = NULL WHERE id > 1000 AND id % 2 = $1", []any{a % 2}
	case 20:
		return "UPDATE m_docs SET body = $2 WHERE id = $1", []any{a, bigText(rng)}
	case 21:
		return "DELETE FROM m_docs WHERE id BETWEEN $1 AND $2 AND id % 4 = 0", []any{a, b}
	case 22:
		if rng.IntN(300) == 0 {
			return "TRUNCATE m_docs", nil
		}
		return "UPDATE m_docs SET body = NULL WHERE id = $1", []any{a}
	default:
		return "SELECT 1", nil
	}
}

// mirrorKey encodes key column values as docs/cache.md says: `\` and `:` escaped with `\`,
// joined with `:`.
func mirrorKey(vals ...string) string {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	for i, v := range vals {
		vals[i] = esc.Replace(v)
	}
	return strings.Join(vals, ":")
}

// mirrorTruth is what Redis must hold, from Postgres: key -> value (a hash as sorted
// field=value lines, a JSON row as it decodes).
func mirrorTruth(t *testing.T, ctx context.Context, c *pgx.Conn) map[string]string {
	t.Helper()
	want := map[string]string{}
	hash := func(fields map[string]*string) string {
		var lines []string
		for k, v := range fields {
			if v != nil {
				lines = append(lines, k+"="+*v)
			}
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	rows, err := c.Query(ctx, "SELECT id::text, name, score::text FROM m_users")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var name, score *string
		if err := rows.Scan(&id, &name, &score); err != nil {
			t.Fatal(err)
		}
		want["mc:m_users:"+mirrorKey(id)] = hash(map[string]*string{"id": &id, "name": name, "score": score})
	}
	rows, err = c.Query(ctx, "SELECT region, id::text, qty::text, note FROM m_lines")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var region, id string
		var qty, note *string
		if err := rows.Scan(&region, &id, &qty, &note); err != nil {
			t.Fatal(err)
		}
		want["mc:m_lines:"+mirrorKey(region, id)] = jsonText(t, map[string]*string{"region": &region, "id": &id, "qty": qty, "note": note})
	}
	rows, err = c.Query(ctx, "SELECT id::text, title, body FROM m_docs")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var title, body *string
		if err := rows.Scan(&id, &title, &body); err != nil {
			t.Fatal(err)
		}
		want["docs:public.m_docs:"+mirrorKey(id)] = hash(map[string]*string{"id": &id, "title": title, "body": body})
	}
	return want
}

// jsonText is a JSON object in one canonical form (sorted keys), for comparing.
func jsonText(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mirrorContents is every key in Redis but the result cache's own, in mirrorTruth's form.
func mirrorContents(t *testing.T, ctx context.Context, rc rueidis.Client) map[string]string {
	t.Helper()
	got := map[string]string{}
	var cursor uint64
	for {
		e, err := rc.Do(ctx, rc.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range e.Elements {
			switch {
			case strings.HasPrefix(k, "mc:e:"), strings.HasPrefix(k, "mc:g:"), strings.HasPrefix(k, "mc:b:"), strings.HasPrefix(k, "mc:r:"), k == "mc:epoch", strings.HasPrefix(k, "mc:mirror:"), strings.HasPrefix(k, "mc:wal:"):
			case strings.HasPrefix(k, "mc:m_lines:"):
				s, err := rc.Do(ctx, rc.B().Get().Key(k).Build()).ToString()
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				var row map[string]*string
				if err := json.Unmarshal([]byte(s), &row); err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				got[k] = jsonText(t, row)
			default:
				m, err := rc.Do(ctx, rc.B().Hgetall().Key(k).Build()).AsStrMap()
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				var lines []string
				for f, v := range m {
					lines = append(lines, f+"="+v)
				}
				sort.Strings(lines)
				got[k] = strings.Join(lines, "\n")
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return got
		}
	}
}

// mirrorLog is the lines of a sluice log about the mirror.
func mirrorLog(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "mirror") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
