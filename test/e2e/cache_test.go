package e2e

import (
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// The cache tests share a Postgres with wal_level=logical (for the WAL listener) and
// pg_stat_statements (to count the statements that reached the server), and a redis-server.
var (
	cacheOnce  sync.Once
	cachePG    *pgtest.Postgres
	cacheRedis *pgtest.Redis
	cacheErr   error
)

func cacheServers(t *testing.T) (*pgtest.Postgres, *pgtest.Redis) {
	t.Helper()
	cacheOnce.Do(func() {
		cachePG, cacheErr = pgtest.StartPostgres(pgtest.Options{Name: "cache", Auth: "md5", Conf: map[string]string{
			"wal_level": "logical", "shared_preload_libraries": "pg_stat_statements", "max_connections": "100"}})
		if cacheErr != nil {
			return
		}
		ctx := context.Background()
		if cacheErr = cachePG.CreateUser(ctx, appUser, appPass); cacheErr != nil {
			return
		}
		if cacheErr = cachePG.CreateDatabase(ctx, appDB, appUser); cacheErr != nil {
			return
		}
		if cacheErr = cachePG.Exec(ctx, appDB, "CREATE EXTENSION pg_stat_statements"); cacheErr != nil {
			return
		}
		// walBarrier's table exists before any sluice reads the catalog (a table made later is
		// cached only once the catalog is read again).
		if cacheErr = cachePG.Exec(ctx, appDB, "CREATE TABLE cache_barrier (n bigint); ALTER TABLE cache_barrier OWNER TO app"); cacheErr != nil {
			return
		}
		cacheRedis, cacheErr = pgtest.StartRedis()
	})
	if cacheErr != nil {
		t.Fatal(cacheErr)
	}
	return cachePG, cacheRedis
}

// startCachedSluice runs sluice with the cache in front of the cache tests' Postgres. extra are
// more [pools.app.users.<n>] sections.
func startCachedSluice(t *testing.T, extra ...string) (*Sluice, *pgx.Conn) {
	var pc poolConfig
	if len(extra) > 0 {
		pgc, _ := cacheServers(t)
		pc.Shards = strings.Join(extra, "\n") + fmt.Sprintf("\n[pools.app.shards.0]\ndatabase = %q\nservers = [[\"127.0.0.1\", %d, \"primary\"]]\n", appDB, pgc.Port)
	}
	return startCachedSluiceConfig(t, pc, "")
}

// startCachedSluiceConfig is startCachedSluice with more of the config: pc's General is added
// to the [general] lines, cacheKeys to [plugins.cache], and its server is the cache tests'
// Postgres.
//
// The sluices of one test share the WAL listener's slot (a permanent one, named after the
// test), which is dropped when the test ends, after they have stopped.
func startCachedSluiceConfig(t *testing.T, pc poolConfig, cacheKeys string) (*Sluice, *pgx.Conn) {
	return startCachedWith(t, pc, cacheKeys, startSluice)
}

// startCachedWith is startCachedSluiceConfig with start to run sluice: startSluice (in this
// process) or startSluiceProcess.
func startCachedWith(t *testing.T, pc poolConfig, cacheKeys string, start func(testing.TB, poolConfig) *Sluice) (*Sluice, *pgx.Conn) {
	pgc, r := cacheServers(t)
	slot := cacheWALSlot(t)
	general := fmt.Sprintf(`
[plugins.cache]
redis = %q
prefix = %q
ttl = "60s"
wal_dsn = %q
wal_slot = %q
%s
`, r.Addr, "e2e:"+t.Name()+":", pgc.DSN(appDB, pgtest.SuperUser, pgtest.SuperPassword), slot, cacheKeys)
	pc.ServerPort, pc.General = pgc.Port, pc.General+general
	s := start(t, pc)
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, pgc.DSN(appDB, pgtest.SuperUser, pgtest.SuperPassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })
	return s, direct
}

var (
	walSlotsMu sync.Mutex
	walSlots   = map[*testing.T]string{}
)

// cacheWALSlot returns the name of t's WAL listener slot. The first call of a test registers
// its drop, which runs after the test's sluices have stopped (they are started later, so
// their cleanups run first).
func cacheWALSlot(t *testing.T) string {
	walSlotsMu.Lock()
	defer walSlotsMu.Unlock()
	if slot, ok := walSlots[t]; ok {
		return slot
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t.Name()))
	slot := "e2e_" + name
	if len(slot) > 63 {
		slot = fmt.Sprintf("%s_%08x", slot[:54], crc32.ChecksumIEEE([]byte(t.Name())))
	}
	walSlots[t] = slot
	t.Cleanup(func() {
		walSlotsMu.Lock()
		delete(walSlots, t)
		walSlotsMu.Unlock()
		dropWALSlot(t, slot)
	})
	return slot
}

// dropWALSlot drops slot from the cache tests' Postgres, waiting (a little) for the walsender
// of a sluice that just stopped to let it go.
func dropWALSlot(t *testing.T, slot string) {
	pgc, _ := cacheServers(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgc.DSN(appDB, pgtest.SuperUser, pgtest.SuperPassword))
	if err != nil {
		t.Errorf("drop slot %s: %v", slot, err)
		return
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("drop slot %s: %v", slot, err)
			return
		}
	}
}

func simpleConn(t *testing.T, s *Sluice) *pgx.Conn {
	return connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
}

// rowsText runs q and returns its rows as one string.
func rowsText(ctx context.Context, c *pgx.Conn, q string) (string, error) {
	rows, err := c.Query(ctx, q)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return "", err
		}
		fmt.Fprintln(&b, vals...)
	}
	return b.String(), rows.Err()
}

// serverCalls is how many times q reached Postgres (pg_stat_statements).
func serverCalls(t *testing.T, direct *pgx.Conn, q string) int64 {
	t.Helper()
	var n int64
	err := direct.QueryRow(context.Background(),
		"SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query = $1 AND userid = (SELECT oid FROM pg_roles WHERE rolname = 'app')", q).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitCached runs q through conn until a run no longer reaches Postgres: the catalog is
// loaded, the WAL listener streams and the entry is stored.
func waitCached(t *testing.T, conn, direct *pgx.Conn, q string) {
	t.Helper()
	ctx := context.Background()
	checkFor(t, 15*time.Second, func() error {
		if _, err := rowsText(ctx, conn, q); err != nil {
			return err
		}
		before := serverCalls(t, direct, q)
		if _, err := rowsText(ctx, conn, q); err != nil {
			return err
		}
		if after := serverCalls(t, direct, q); after != before {
			return fmt.Errorf("%q still reaches the server (%d calls)", q, after)
		}
		return nil
	})
}

// walBarrier returns once the cache's WAL listener has applied every change committed before
// the call, and streams caught up. The listener handles commits in order, so it caches a read of
// a table, writes a row to it directly, and waits until the read is answered from the cache
// with the new row: the entry cached before the write is out of reach, so the write's
// invalidation is in, and every earlier commit's. (A read that Postgres answers proves nothing:
// sluice sends reads there while the listener is behind.)
func walBarrier(t *testing.T, conn, direct *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE IF NOT EXISTS cache_barrier (n bigint);
		ALTER TABLE cache_barrier OWNER TO app`); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT count(*) FROM cache_barrier"
	waitCached(t, conn, direct, q)
	if _, err := direct.Exec(ctx, "INSERT INTO cache_barrier VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	want, err := rowsText(ctx, direct, q)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, func() error {
		before := serverCalls(t, direct, q)
		got, err := rowsText(ctx, conn, q)
		if err != nil || got != want {
			return fmt.Errorf("the WAL listener has not reached the barrier: %q, %v; want %q", got, err, want)
		}
		if after := serverCalls(t, direct, q); after != before {
			return fmt.Errorf("the barrier's read went to Postgres: the WAL listener is not caught up")
		}
		return nil
	})
}

// sameAsTruth checks that q through sluice returns what Postgres returns now.
func sameAsTruth(t *testing.T, conn, direct *pgx.Conn, q, when string) {
	t.Helper()
	ctx := context.Background()
	got, err := rowsText(ctx, conn, q)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	want, err := rowsText(ctx, direct, q)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("%s: stale result through sluice:\n%s\nPostgres says:\n%s", when, got, want)
	}
}

// TestCacheReadsAndWrites: a SELECT is answered from Redis without reaching Postgres, and
// multi-row INSERT, UPDATE and DELETE with range WHEREs through sluice invalidate it at once;
// inside a transaction, only the COMMIT does, and a rollback leaves nothing stale.
func TestCacheReadsAndWrites(t *testing.T) {
	s, direct := startCachedSluice(t)
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE cache_rw (id int PRIMARY KEY, v text);
		ALTER TABLE cache_rw OWNER TO app;
		INSERT INTO cache_rw SELECT g, 'v' || g FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	conn, other := simpleConn(t, s), simpleConn(t, s)
	const q = "SELECT id, v FROM cache_rw ORDER BY id" // no constant: pg_stat_statements keeps the text as is
	waitCached(t, conn, direct, q)
	// The table was filled directly on Postgres: the WAL listener's invalidation of it may
	// still be on its way. Let it arrive, then fill again.
	time.Sleep(500 * time.Millisecond)
	waitCached(t, conn, direct, q)
	before := serverCalls(t, direct, q)
	for i := 0; i < 20; i++ {
		sameAsTruth(t, conn, direct, q, "cached")
	}
	// The truth queries run as the superuser; only app's calls are counted.
	if after := serverCalls(t, direct, q); after != before {
		t.Fatalf("20 cached reads reached Postgres %d times", after-before)
	}

	for _, w := range []string{
		"INSERT INTO cache_rw SELECT g, 'new' || g FROM generate_series(11, 15) g",
		"UPDATE cache_rw SET v = v || '!' WHERE id BETWEEN 3 AND 12",
		"DELETE FROM cache_rw WHERE id % 3 = 0",
		"INSERT INTO cache_rw VALUES (3, 'upsert') ON CONFLICT (id) DO UPDATE SET v = 'upserted'",
		"TRUNCATE cache_rw",
	} {
		if _, err := other.Exec(ctx, w); err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		sameAsTruth(t, conn, direct, q, "after "+w)
		waitCached(t, conn, direct, q)
	}

	// In a transaction: readers keep the old rows until COMMIT, and see the new ones after.
	if _, err := other.Exec(ctx, "INSERT INTO cache_rw VALUES (20, 'a')"); err != nil {
		t.Fatal(err)
	}
	waitCached(t, conn, direct, q)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE cache_rw SET v = 'in tx' WHERE id >= 20"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		sameAsTruth(t, conn, direct, q, "during the transaction")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sameAsTruth(t, conn, direct, q, "after COMMIT")

	waitCached(t, conn, direct, q)
	tx, err = other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE cache_rw SET v = 'rolled back' WHERE id >= 20"); err != nil {
		t.Fatal(err)
	}
	sameAsTruth(t, conn, direct, q, "during the rolled-back transaction")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		sameAsTruth(t, conn, direct, q, "after ROLLBACK")
	}
}

// TestCacheWALInvalidation: a write made directly on Postgres, bypassing sluice, invalidates
// through the WAL listener within a second.
func TestCacheWALInvalidation(t *testing.T) {
	s, direct := startCachedSluice(t)
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE cache_wal (id int PRIMARY KEY, v int);
		ALTER TABLE cache_wal OWNER TO app;
		INSERT INTO cache_wal SELECT g, g FROM generate_series(1, 5) g`); err != nil {
		t.Fatal(err)
	}
	conn := simpleConn(t, s)
	const q = "SELECT sum(v) FROM cache_wal"
	for _, w := range []string{"UPDATE cache_wal SET v = v + 100 WHERE id < 4", "DELETE FROM cache_wal WHERE id = 5",
		"INSERT INTO cache_wal VALUES (7, 1000)"} {
		waitCached(t, conn, direct, q)
		if _, err := direct.Exec(ctx, w); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		want, _ := rowsText(ctx, direct, q)
		checkFor(t, 2*time.Second, func() error {
			got, err := rowsText(ctx, conn, q)
			if err != nil || got != want {
				return fmt.Errorf("after %s: %q, %v; want %q", w, got, err, want)
			}
			return nil
		})
		t.Logf("%s: visible through sluice after %s", w, time.Since(start).Round(time.Millisecond))
	}
}

// TestCacheExtendedProtocol: prepared statements are cached per parameters and result formats:
// a client that describes its portal fills the cache, one that does not (pgx's statement cache)
// is answered from it, and a write invalidates both.
func TestCacheExtendedProtocol(t *testing.T) {
	s, direct := startCachedSluice(t)
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE cache_ext (id int PRIMARY KEY, v text);
		ALTER TABLE cache_ext OWNER TO app;
		INSERT INTO cache_ext SELECT g, 'v' || g FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT id, v FROM cache_ext WHERE id <= $1 ORDER BY id"
	filler := connect(t, s)
	reader := connect(t, s)
	run := func(c *pgx.Conn, limit string) string {
		t.Helper()
		// ExecParams describes the portal (Parse, Bind, Describe, Execute, Sync).
		res := c.PgConn().ExecParams(ctx, q, [][]byte{[]byte(limit)}, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		var b strings.Builder
		for _, row := range res.Rows {
			fmt.Fprintf(&b, "%s=%s;", row[0], row[1])
		}
		return b.String()
	}
	read := func(c *pgx.Conn, limit int) string {
		t.Helper()
		rows, err := c.Query(ctx, q, limit)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for rows.Next() {
			var id int
			var v string
			if err := rows.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%d=%s;", id, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	want := run(filler, "5")
	checkFor(t, 15*time.Second, func() error {
		run(filler, "5")
		before := serverCalls(t, direct, q)
		if got := run(filler, "5"); got != want {
			return fmt.Errorf("got %s; want %s", got, want)
		}
		if after := serverCalls(t, direct, q); after != before {
			return fmt.Errorf("the described read still reaches the server")
		}
		return nil
	})
	// pgx asks for int columns in binary: another key, so its first read runs. pgx does not
	// describe its portal; the statement's description (from its prepare) goes with the
	// result, so the read fills the cache too, and the next one is answered from it.
	before := serverCalls(t, direct, q)
	if got := read(reader, 5); got != want {
		t.Fatalf("pgx read: %s; want %s", got, want)
	}
	if got := run(filler, "6"); !strings.Contains(got, "6=v6") {
		t.Fatalf("another parameter: %s", got)
	}
	if after := serverCalls(t, direct, q); after != before+2 {
		t.Errorf("%d calls reached the server; want 2 (pgx's binary read, the new parameter)", after-before)
	}
	before = serverCalls(t, direct, q)
	for range 3 {
		if got := read(reader, 5); got != want {
			t.Fatalf("pgx read from the cache: %s; want %s", got, want)
		}
	}
	if after := serverCalls(t, direct, q); after != before {
		t.Errorf("pgx's reads reached the server %d times after its first; want 0", after-before)
	}
	if got := run(filler, "5"); got != want {
		t.Fatalf("the described read again: %s; want %s", got, want)
	}
	if _, err := reader.Exec(ctx, "UPDATE cache_ext SET v = 'changed' WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if got := read(reader, 5); !strings.Contains(got, "2=changed") {
		t.Fatalf("after the write: %s", got)
	}
	if got := run(filler, "5"); !strings.Contains(got, "2=changed") {
		t.Fatalf("the described read after the write: %s", got)
	}
}

// TestCacheHitTakesNoServer: in transaction mode, a read the cache answers in the extended
// protocol (Parse, Bind, Describe, Execute, Sync of the unnamed statement, as libpq's
// PQexecParams and pgbench -M extended send it) takes no server from the pool, so it is answered
// while another client holds the pool's only server. An unnamed statement that no Bind uses
// before the Sync is still prepared on a server, so its errors come where Postgres gives them.
func TestCacheHitTakesNoServer(t *testing.T) {
	s, direct := startCachedSluiceConfig(t, poolConfig{PoolSize: 1, General: "query_wait_timeout = 2000\n"}, "")
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE cache_noserver (id int PRIMARY KEY, v text);
		ALTER TABLE cache_noserver OWNER TO app;
		INSERT INTO cache_noserver SELECT g, 'v' || g FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT v FROM cache_noserver WHERE id = $1"
	reader := connect(t, s)
	read := func(id string) (string, error) {
		res := reader.PgConn().ExecParams(ctx, q, [][]byte{[]byte(id)}, nil, nil, nil).Read()
		if res.Err != nil {
			return "", res.Err
		}
		if len(res.Rows) != 1 {
			return "", fmt.Errorf("%d rows", len(res.Rows))
		}
		return string(res.Rows[0][0]), nil
	}
	checkFor(t, 15*time.Second, func() error {
		if _, err := read("3"); err != nil {
			return err
		}
		before := serverCalls(t, direct, q)
		if _, err := read("3"); err != nil {
			return err
		}
		if after := serverCalls(t, direct, q); after != before {
			return fmt.Errorf("the read still reaches the server")
		}
		return nil
	})

	holder := connect(t, s)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if got, err := read("3"); err != nil || got != "v3" {
			t.Fatalf("a cached read while the only server is taken: %q, %v; want v3", got, err)
		}
	}
	// A read the cache cannot answer needs the server, and waits for it in vain.
	if _, err := read("4"); err == nil {
		t.Fatal("an uncached read was answered while the only server was taken")
	} else if code := codeOf(err); code != "57014" && code != "53300" && code != "08P01" {
		t.Logf("the uncached read failed with %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// Prepared alone (Parse, Sync), a statement Postgres cannot prepare fails at once.
	_, err = reader.PgConn().Prepare(ctx, "", "SELECT nosuchcolumn FROM cache_noserver", nil)
	if code := codeOf(err); code != "42703" {
		t.Fatalf("preparing a bad unnamed statement: %v; want 42703", err)
	}
	sd, err := reader.PgConn().Prepare(ctx, "", q, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.Fields) != 1 || len(sd.ParamOIDs) != 1 {
		t.Fatalf("described statement: %d fields, %d params", len(sd.Fields), len(sd.ParamOIDs))
	}
	if got, err := read("3"); err != nil || got != "v3" {
		t.Fatalf("after the prepares: %q, %v", got, err)
	}
}

// TestCacheStampede: 100 clients missing the same key at once make one query on Postgres; the
// others wait for its fill and are answered from it.
func TestCacheStampede(t *testing.T) {
	// The wait outlasts the query however slow a loaded machine makes it: a fill slower than
	// stampede_wait lets the waiters run the query themselves, by design.
	s, direct := startCachedSluiceConfig(t, poolConfig{}, `stampede_wait = "60s"`)
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `DROP TABLE IF EXISTS cache_stampede; CREATE TABLE cache_stampede (id int, pad text);
		ALTER TABLE cache_stampede OWNER TO app;
		INSERT INTO cache_stampede SELECT g, repeat('x', 50) FROM generate_series(1, 300000) g`); err != nil {
		t.Fatal(err)
	}
	const warm = "SELECT count(*) FROM cache_stampede WHERE id < 0"
	const q = "SELECT count(*) FROM cache_stampede"
	conns := make([]*pgx.Conn, 100)
	for i := range conns {
		conns[i] = simpleConn(t, s)
	}
	// The catalog loads at the first query: warm it with another key of the same table, once the
	// WAL's invalidation of the table's fill (300,000 rows to decode) is in.
	waitCached(t, conns[0], direct, warm)
	// The first reads of the new rows set their hint bits, which writes WAL too.
	walBarrier(t, conns[0], direct)
	before := serverCalls(t, direct, q)
	countAtOnce(t, conns, q, 300000)
	if calls := serverCalls(t, direct, q) - before; calls != 1 {
		t.Errorf("100 concurrent misses made %d queries on Postgres; want 1", calls)
	}
}

// TestCacheRoles: results never cross roles. Two users with different grants each get what
// their own grants allow, and a table with row level security is never cached: each user sees
// only its rows, every time from Postgres.
func TestCacheRoles(t *testing.T) {
	ctx := context.Background()
	pgc, _ := cacheServers(t)
	const other, otherPass = "cache_other", "other-secret"
	if err := pgc.Exec(ctx, appDB, fmt.Sprintf(`DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s LOGIN PASSWORD '%s'; END IF; END $$`, other, other, otherPass)); err != nil {
		t.Fatal(err)
	}
	s, direct := startCachedSluice(t, fmt.Sprintf("[pools.app.users.1]\nusername = %q\npassword = %q\npool_size = 3\n", other, otherPass))
	if _, err := direct.Exec(ctx, `
		CREATE TABLE cache_grants (id int, v text); ALTER TABLE cache_grants OWNER TO app;
		INSERT INTO cache_grants VALUES (1, 'for app only');
		CREATE TABLE cache_rls (id int, owner text, v text); ALTER TABLE cache_rls OWNER TO app;
		INSERT INTO cache_rls VALUES (1, 'app', 'app row'), (2, 'cache_other', 'other row');
		ALTER TABLE cache_rls ENABLE ROW LEVEL SECURITY; ALTER TABLE cache_rls FORCE ROW LEVEL SECURITY;
		CREATE POLICY own ON cache_rls USING (owner = current_user);
		GRANT SELECT ON cache_rls TO cache_other`); err != nil {
		t.Fatal(err)
	}
	app := simpleConn(t, s)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", other, otherPass, s.Port, appDB))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	oc, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close(ctx)

	const grants = "SELECT id, v FROM cache_grants ORDER BY id"
	waitCached(t, app, direct, grants)
	for range 3 {
		if _, err := rowsText(ctx, oc, grants); codeOf(err) != "42501" {
			t.Fatalf("the other role read a table it has no grant on: %v", err)
		}
	}

	const rls = "SELECT v FROM cache_rls ORDER BY id"
	for range 3 {
		got, err := rowsText(ctx, app, rls)
		if err != nil || strings.TrimSpace(got) != "app row" {
			t.Fatalf("app through sluice: %q, %v", got, err)
		}
		got, err = rowsText(ctx, oc, rls)
		if err != nil || strings.TrimSpace(got) != "other row" {
			t.Fatalf("the other role through sluice: %q, %v", got, err)
		}
	}
	before := serverCalls(t, direct, rls)
	for range 3 {
		if _, err := rowsText(ctx, app, rls); err != nil {
			t.Fatal(err)
		}
	}
	if after := serverCalls(t, direct, rls); after != before+3 {
		t.Errorf("reads of a table with row level security reached Postgres %d times of 3; it must never be cached", after-before)
	}
}

// TestCacheStaleness runs 8 clients through sluice for a minute, mixing cached reads with
// multi-row INSERT, UPSERT, range UPDATE, DELETE, COPY, writes pinned to primary keys and
// rolled-back transactions, while a ninth client writes to Postgres directly. Every write
// through sluice bumps a version row in the same transaction, and one of 50 per-key version
// rows: a read that began after a commit (a point read by key, or not) must see that commit's
// version or a later one. Writes that bypass sluice must be seen within a second (p99).
func TestCacheStaleness(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load")
	}
	s, direct := startCachedSluice(t)
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE stale_items (id int PRIMARY KEY, v int);
		ALTER TABLE stale_items OWNER TO app;
		CREATE TABLE stale_meta (k int PRIMARY KEY, version bigint); ALTER TABLE stale_meta OWNER TO app;
		INSERT INTO stale_meta VALUES (1, 0), (2, 0);
		CREATE TABLE stale_rows (id int PRIMARY KEY, version bigint); ALTER TABLE stale_rows OWNER TO app;
		INSERT INTO stale_rows SELECT g, 0 FROM generate_series(1, 50) g`); err != nil {
		t.Fatal(err)
	}
	const duration = 60 * time.Second
	deadline := time.Now().Add(duration)
	var committed atomic.Int64        // the highest version of k = 1 known committed
	var rowCommitted [51]atomic.Int64 // per stale_rows id, the highest version known committed
	raise := func(a *atomic.Int64, v int64) {
		for old := a.Load(); v > old && !a.CompareAndSwap(old, v); old = a.Load() {
		}
	}
	type directWrite struct {
		version int64
		at      time.Time
	}
	var dmu sync.Mutex
	var directWrites []directWrite
	var stale, reads, writes atomic.Int64
	var lagMu sync.Mutex
	var lags []time.Duration
	var wg sync.WaitGroup
	fail := make(chan error, 16)

	writer := func(id int) {
		defer wg.Done()
		c := connect(t, s)
		rng := rand.New(rand.NewPCG(uint64(id), 7))
		for time.Now().Before(deadline) {
			tx, err := c.Begin(ctx)
			if err != nil {
				fail <- err
				return
			}
			lo := rng.IntN(500)
			var stmt string
			switch rng.IntN(8) {
			case 0:
				stmt = fmt.Sprintf("INSERT INTO stale_items SELECT g, 0 FROM generate_series(%d, %d) g ON CONFLICT (id) DO UPDATE SET v = stale_items.v + 1", lo, lo+5)
			case 1:
				stmt = fmt.Sprintf("UPDATE stale_items SET v = v + 1 WHERE id BETWEEN %d AND %d", lo, lo+20)
			case 2:
				stmt = fmt.Sprintf("DELETE FROM stale_items WHERE id > %d AND id < %d", lo, lo+3)
			case 3:
				rows := [][]any{{lo + 1000 + rng.IntN(100000), 1}}
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stale_items"}, []string{"id", "v"}, pgx.CopyFromRows(rows)); err != nil && codeOf(err) != "23505" {
					fail <- err
					return
				}
			case 4:
				stmt = fmt.Sprintf("INSERT INTO stale_items VALUES (%d, 1) ON CONFLICT (id) DO NOTHING", lo)
			case 5: // pinned to keys, as are the next two
				stmt = fmt.Sprintf("UPDATE stale_items SET v = v + 1 WHERE id IN (%d, %d)", lo, lo+1)
			case 6:
				stmt = fmt.Sprintf("DELETE FROM stale_items WHERE id = %d", lo)
			case 7:
				stmt = fmt.Sprintf("INSERT INTO stale_items (id, v) VALUES (%d, 1) ON CONFLICT (id) DO UPDATE SET v = stale_items.v + 1", lo)
			}
			if stmt != "" {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					tx.Rollback(ctx)
					continue
				}
			}
			var v, rv int64
			if err := tx.QueryRow(ctx, "UPDATE stale_meta SET version = version + 1 WHERE k = 1 RETURNING version").Scan(&v); err != nil {
				tx.Rollback(ctx)
				continue
			}
			// A per-key version, by a write pinned to its key (in the text, or a parameter).
			row := 1 + rng.IntN(50)
			var rerr error
			if rng.IntN(2) == 0 {
				rerr = tx.QueryRow(ctx, fmt.Sprintf("UPDATE stale_rows SET version = version + 1 WHERE id = %d RETURNING version", row)).Scan(&rv)
			} else {
				rerr = tx.QueryRow(ctx, "UPDATE stale_rows SET version = version + 1 WHERE id = $1 RETURNING version", row).Scan(&rv)
			}
			if rerr != nil {
				tx.Rollback(ctx)
				continue
			}
			if rng.IntN(6) == 0 {
				tx.Rollback(ctx) // nothing of it may be seen
				continue
			}
			if err := tx.Commit(ctx); err != nil {
				continue
			}
			raise(&committed, v)
			raise(&rowCommitted[row], rv)
			writes.Add(1)
		}
	}
	reader := func(id int) {
		defer wg.Done()
		c, ext := simpleConn(t, s), connect(t, s)
		rng := rand.New(rand.NewPCG(uint64(id), 11))
		for time.Now().Before(deadline) {
			floor := committed.Load()
			var v, n int64
			if err := c.QueryRow(ctx, "SELECT m.version, (SELECT count(*) FROM stale_items) FROM stale_meta m WHERE m.k = 1").Scan(&v, &n); err != nil {
				fail <- err
				return
			}
			reads.Add(1)
			if v < floor {
				stale.Add(1)
			}
			// Point reads: of the version row alone, and of a per-key version row, in the
			// text or as a parameter.
			floor = committed.Load()
			if err := c.QueryRow(ctx, "SELECT version FROM stale_meta WHERE k = 1").Scan(&v); err != nil {
				fail <- err
				return
			}
			reads.Add(1)
			if v < floor {
				stale.Add(1)
			}
			row := 1 + rng.IntN(50)
			floor = rowCommitted[row].Load()
			var err error
			if rng.IntN(2) == 0 {
				err = c.QueryRow(ctx, fmt.Sprintf("SELECT version FROM stale_rows WHERE id = %d", row)).Scan(&v)
			} else {
				err = ext.QueryRow(ctx, "SELECT version FROM stale_rows WHERE id = $1", row).Scan(&v)
			}
			if err != nil {
				fail <- err
				return
			}
			reads.Add(1)
			if v < floor {
				stale.Add(1)
			}
			start := time.Now()
			var dv int64
			if err := c.QueryRow(ctx, "SELECT version FROM stale_meta WHERE k = 2").Scan(&dv); err != nil {
				fail <- err
				return
			}
			// How long ago was the first direct write this read does not show committed?
			dmu.Lock()
			for _, w := range directWrites {
				if w.version > dv {
					if lag := start.Sub(w.at); lag > 0 {
						lagMu.Lock()
						lags = append(lags, lag)
						lagMu.Unlock()
					}
					break
				}
			}
			dmu.Unlock()
		}
	}
	for i := range 4 {
		wg.Add(2)
		go writer(i)
		go reader(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		dc, err := pgx.Connect(ctx, cachePG.DSN(appDB, pgtest.SuperUser, pgtest.SuperPassword))
		if err != nil {
			fail <- err
			return
		}
		defer dc.Close(ctx)
		for time.Now().Before(deadline) {
			var v int64
			if err := dc.QueryRow(ctx, "UPDATE stale_meta SET version = version + 1 WHERE k = 2 RETURNING version").Scan(&v); err != nil {
				fail <- err
				return
			}
			dmu.Lock()
			directWrites = append(directWrites, directWrite{v, time.Now()})
			dmu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(fail)
	for err := range fail {
		t.Fatal(err)
	}
	slices.Sort(lags)
	p99 := time.Duration(0)
	if len(lags) > 0 {
		p99 = lags[len(lags)*99/100]
	}
	t.Logf("%d reads, %d commits through sluice, %d stale; bypass writes seen late %d times, p99 %s", reads.Load(), writes.Load(), stale.Load(), len(lags), p99)
	sc := cacheShow(t, connectAdmin(t, s, "pgcat"))
	t.Logf("cache: %s hits, %s misses, %s invalidations", sc["hits/"], sc["misses/"], sc["invalidations/table"])
	if stale.Load() != 0 {
		t.Errorf("%d reads returned data older than a commit that finished before they began", stale.Load())
	}
	if p99 > time.Second {
		t.Errorf("writes that bypassed sluice were seen %s late at p99; want within 1s", p99)
	}
}

// countAtOnce runs q, a count(*), on every connection at the same moment and checks that each
// gets want.
func countAtOnce(t *testing.T, conns []*pgx.Conn, q string, want int64) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var n int64
			if err := c.QueryRow(context.Background(), q).Scan(&n); err != nil || n != want {
				errs <- fmt.Errorf("count %d, %v", n, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCachePipelinedWrites: a write pipelined with other statements is bumped after it commits,
// however late that is, and not only before: a read that begins after the writer's
// ReadyForQuery sees it. The write waits on a row lock held directly on Postgres while readers
// fill the cache; the cases are a write followed by a read in one extended-protocol batch (pgx),
// and BEGIN, the write and COMMIT sent as three Queries in one write (the write's query hook
// runs before BEGIN's reply, so it cannot know it is inside the block).
func TestCachePipelinedWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, s *Sluice, table string) (wait func())
	}{
		{"batch with a read after the write", func(t *testing.T, s *Sluice, table string) func() {
			writer := connect(t, s)
			done := make(chan error, 1)
			go func() {
				b := &pgx.Batch{}
				b.Queue("UPDATE " + table + " SET v = 'new' WHERE id = 1")
				b.Queue("SELECT 1")
				done <- writer.SendBatch(context.Background(), b).Close()
			}()
			return func() {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"write pipelined behind another request", func(t *testing.T, s *Sluice, table string) func() {
			// The first request's ReadyForQuery comes while the write waits: it must not count
			// the write as ended.
			c := dialRaw(t, s)
			c.login()
			c.send(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "UPDATE " + table + " SET v = 'new' WHERE id = 1"})
			return func() { c.awaitReady(2) }
		}},
		{"BEGIN, write, COMMIT pipelined", func(t *testing.T, s *Sluice, table string) func() {
			c := dialRaw(t, s)
			c.login()
			c.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "UPDATE " + table + " SET v = 'new' WHERE id = 1"},
				&pgproto3.Query{String: "COMMIT"})
			return func() { c.awaitReady(3) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, direct := startCachedSluiceConfig(t, poolConfig{}, "wal_invalidation = false")
			ctx := context.Background()
			table := "cache_pipe_" + strings.ReplaceAll(strings.Fields(tc.name)[0], ",", "")
			if _, err := direct.Exec(ctx, fmt.Sprintf(`DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (id int PRIMARY KEY, v text);
				ALTER TABLE %[1]s OWNER TO app; INSERT INTO %[1]s VALUES (1, 'old'), (2, 'x')`, table)); err != nil {
				t.Fatal(err)
			}
			q := "SELECT id, v FROM " + table + " ORDER BY id"
			reader := simpleConn(t, s)
			waitCached(t, reader, direct, q)
			lock, err := direct.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lock.Exec(ctx, "SELECT * FROM "+table+" WHERE id = 1 FOR UPDATE"); err != nil {
				t.Fatal(err)
			}
			wait := tc.write(t, s, table)
			time.Sleep(300 * time.Millisecond) // the write waits for the lock; readers fill meanwhile
			for range 2 {
				if got, err := rowsText(ctx, reader, q); err != nil || !strings.Contains(got, "old") {
					t.Fatalf("during the write: %q %v", got, err)
				}
			}
			if err := lock.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			wait()
			got, err := rowsText(ctx, reader, q)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got, "new") {
				t.Fatalf("a read after the writer's ReadyForQuery returned the row from before its write:\n%s", got)
			}
		})
	}
}
