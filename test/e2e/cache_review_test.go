package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// reviewTable makes table (id int primary key, v text) with rows (1, 'old') and (2, 'x'), owned
// by app, and returns the read the tests cache, which waitCached has cached through reader.
func reviewTable(t *testing.T, direct, reader *pgx.Conn, table string) string {
	t.Helper()
	if _, err := direct.Exec(context.Background(), fmt.Sprintf(`DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (id int PRIMARY KEY, v text);
		ALTER TABLE %[1]s OWNER TO app; INSERT INTO %[1]s VALUES (1, 'old'), (2, 'x')`, table)); err != nil {
		t.Fatal(err)
	}
	q := "SELECT id, v FROM " + table + " ORDER BY id"
	waitCached(t, reader, direct, q)
	return q
}

// TestCacheReadPipelinedBehindBegin: a read pipelined behind a BEGIN whose reply has not come
// runs inside that block, though its query hook cannot know it. In a REPEATABLE READ block whose
// snapshot was taken before another client's write, the read's result is from before that write,
// while the generation it was keyed by (read at its hook, after the write's bump) is from after:
// stored, it would be served to every client after the write.
//
// In session mode a pump goroutine reads the server's replies while the client's goroutine reads
// (and hooks) the next requests, so the read's hook can run long after the BEGIN was sent.
func TestCacheReadPipelinedBehindBegin(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) { testCacheReadPipelinedBehindBegin(t, mode) })
	}
}

func testCacheReadPipelinedBehindBegin(t *testing.T, mode string) {
	s, direct := startCachedSluiceConfig(t, poolConfig{Mode: mode}, "wal_invalidation = false")
	ctx := context.Background()
	reader, writer := simpleConn(t, s), simpleConn(t, s)
	q := reviewTable(t, direct, reader, "cache_rv_rr_"+mode)
	c := dialRaw(t, s)
	c.login()
	// The snapshot is taken by the count; the block's ReadyForQuery comes a second later.
	c.send(&pgproto3.Query{String: "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM cache_rv_rr_" + mode + "; SELECT pg_sleep(1)"})
	time.Sleep(200 * time.Millisecond)
	if _, err := writer.Exec(ctx, "UPDATE cache_rv_rr_"+mode+" SET v = 'new' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	c.send(&pgproto3.Query{String: q}) // pipelined: runs in the block's snapshot
	c.awaitReady(2)
	c.send(&pgproto3.Query{String: "COMMIT"})
	c.awaitReady(1)
	for range 3 {
		got, err := rowsText(ctx, reader, q)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, "new") {
			t.Fatalf("a read after the write returned the rows of a REPEATABLE READ snapshot from before it:\n%s", got)
		}
	}
}

// TestCacheWriteAfterCommitInOneQuery: one Query that commits a block and opens another with a
// write in it ("BEGIN; ...; COMMIT; BEGIN; UPDATE ..."). Its ReadyForQuery says a block is open,
// and the COMMIT in it ends a block at the same time: the write, recorded for the whole Query,
// must still be bumped when the second block commits, not only (early) at the first COMMIT.
func TestCacheWriteAfterCommitInOneQuery(t *testing.T) {
	s, direct := startCachedSluiceConfig(t, poolConfig{}, "wal_invalidation = false")
	ctx := context.Background()
	reader := simpleConn(t, s)
	q := reviewTable(t, direct, reader, "cache_rv_cb")
	c := dialRaw(t, s)
	c.login()
	if _, err := c.query("BEGIN; UPDATE cache_rv_cb SET v = 'mid' WHERE id = 2; COMMIT; BEGIN; UPDATE cache_rv_cb SET v = 'new' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // fills the cache with the first block's rows, the second's not committed
		if got, err := rowsText(ctx, reader, q); err != nil || !strings.Contains(got, "mid") || strings.Contains(got, "new") {
			t.Fatalf("during the second block: %q %v", got, err)
		}
	}
	if _, err := c.query("COMMIT"); err != nil {
		t.Fatal(err)
	}
	expectNewRows(t, reader, q, "a read after the COMMIT returned the rows from before it")
}

// TestCacheManyPipelinedWrites: a client with more writes under way than the cache keeps apart
// (maxPendingWrites, 64): the first, once its ReadyForQuery is sent, is seen by every read,
// although the writes pipelined behind it still wait.
func TestCacheManyPipelinedWrites(t *testing.T) {
	// Session mode: the client's goroutine reads (and hooks) requests while a pump reads the
	// replies, so all the writes are under way at once.
	s, direct := startCachedSluiceConfig(t, poolConfig{Mode: "session"}, "wal_invalidation = false")
	ctx := context.Background()
	reader := simpleConn(t, s)
	q := reviewTable(t, direct, reader, "cache_rv_many")
	lock1, err := direct.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock1.Rollback(ctx)
	if _, err := lock1.Exec(ctx, "SELECT * FROM cache_rv_many WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	lock2, err := direct.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock2.Rollback(ctx)
	if _, err := lock2.Exec(ctx, "SELECT * FROM cache_rv_many WHERE id = 2 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, s)
	c.login()
	msgs := []pgproto3.FrontendMessage{&pgproto3.Query{String: "UPDATE cache_rv_many SET v = 'new' WHERE id = 1"}}
	for i := range 80 {
		msgs = append(msgs, &pgproto3.Query{String: fmt.Sprintf("UPDATE cache_rv_many SET v = 'y%d' WHERE id = 2", i)})
	}
	c.send(msgs...)
	time.Sleep(300 * time.Millisecond) // every write's hook has run; they wait for the locks
	if got, err := rowsText(ctx, reader, q); err != nil || !strings.Contains(got, "old") {
		t.Fatalf("during the writes: %q %v", got, err)
	}
	if err := lock1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c.awaitReady(1) // the first write committed
	expectNewRows(t, reader, q, "a read after the first write's ReadyForQuery returned the rows from before it")
	if err := lock2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c.awaitReady(80)
}

// TestCacheFunctionCallWrite: a function called through the protocol's FunctionCall message (the
// "fast path": libpq's PQfn, large objects) may write a table; a read after its ReadyForQuery
// must see the write.
func TestCacheFunctionCallWrite(t *testing.T) {
	s, direct := startCachedSluiceConfig(t, poolConfig{}, "wal_invalidation = false")
	ctx := context.Background()
	reader := simpleConn(t, s)
	q := reviewTable(t, direct, reader, "cache_rv_fc")
	if _, err := direct.Exec(ctx, `CREATE OR REPLACE FUNCTION cache_rv_fc_write() RETURNS int LANGUAGE sql
		AS $$ UPDATE cache_rv_fc SET v = 'new' WHERE id = 1 RETURNING 1 $$`); err != nil {
		t.Fatal(err)
	}
	var oid uint32
	if err := direct.QueryRow(ctx, "SELECT 'cache_rv_fc_write'::regproc::oid").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	waitCached(t, reader, direct, q) // the catalog changed: the read may miss once more
	c := dialRaw(t, s)
	c.login()
	c.send(&pgproto3.FunctionCall{Function: oid, ResultFormatCode: 0})
	c.awaitReady(1)
	expectNewRows(t, reader, q, "a read after a FunctionCall that wrote returned the rows from before it")
}

// TestCacheBindPipelinedBehindBegin: an extended-protocol read pipelined behind a Query that opens
// a block and sets the block's search_path runs inside that block, though neither its query
// hook nor sluice (which has not read the BEGIN's reply) can know it yet. Answered from the cache,
// it got the rows of the table the default search_path names, not the block's.
func TestCacheBindPipelinedBehindBegin(t *testing.T) {
	s, direct := startCachedSluiceConfig(t, poolConfig{Mode: "session"}, "wal_invalidation = false")
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `DROP SCHEMA IF EXISTS cache_rv_s2 CASCADE; DROP TABLE IF EXISTS cache_rv_sp;
		CREATE SCHEMA cache_rv_s2 AUTHORIZATION app;
		CREATE TABLE cache_rv_sp (id int PRIMARY KEY, v text); ALTER TABLE cache_rv_sp OWNER TO app;
		INSERT INTO cache_rv_sp VALUES (1, 'public');
		CREATE TABLE cache_rv_s2.cache_rv_sp (id int PRIMARY KEY, v text); ALTER TABLE cache_rv_s2.cache_rv_sp OWNER TO app;
		INSERT INTO cache_rv_s2.cache_rv_sp VALUES (1, 's2')`); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT v FROM cache_rv_sp"
	c := dialRaw(t, s)
	c.login()
	read := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{}, &pgproto3.Sync{}}
	checkFor(t, 15*time.Second, func() error { // the entry of this Bind (no result formats)
		before := serverCalls(t, direct, q)
		c.send(read...)
		c.awaitReady(1)
		if after := serverCalls(t, direct, q); after != before {
			return fmt.Errorf("%q still reaches the server", q)
		}
		return nil
	})
	c.send(append([]pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN; SET LOCAL search_path = cache_rv_s2; SELECT pg_sleep(0.3)"}},
		read...)...)
	var rows []string
	for ready := 0; ready < 2; {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	// rows: the pg_sleep's (empty text), then the read's.
	if got := rows[len(rows)-1]; got != "s2" {
		t.Fatalf("a read inside a block with search_path cache_rv_s2 returned %q (rows %q), want s2", got, rows)
	}
}

// TestCacheReadAfterSetLocalInBatch: in one extended-protocol batch (one Sync), a SET LOCAL runs
// in the batch's implicit transaction and holds for the statements after it, until the Sync.
// A read there must not be answered from the entry made under the session's own settings.
func TestCacheReadAfterSetLocalInBatch(t *testing.T) {
	s, direct := startCachedSluiceConfig(t, poolConfig{}, "wal_invalidation = false")
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `DROP SCHEMA IF EXISTS cache_rv_s3 CASCADE; DROP TABLE IF EXISTS cache_rv_sl;
		CREATE SCHEMA cache_rv_s3 AUTHORIZATION app;
		CREATE TABLE cache_rv_sl (id int PRIMARY KEY, v text); ALTER TABLE cache_rv_sl OWNER TO app;
		INSERT INTO cache_rv_sl VALUES (1, 'public');
		CREATE TABLE cache_rv_s3.cache_rv_sl (id int PRIMARY KEY, v text); ALTER TABLE cache_rv_s3.cache_rv_sl OWNER TO app;
		INSERT INTO cache_rv_s3.cache_rv_sl VALUES (1, 's3')`); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT v FROM cache_rv_sl"
	c := dialRaw(t, s)
	c.login()
	read := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{}}
	checkFor(t, 15*time.Second, func() error { // the entry of this Bind (no result formats)
		before := serverCalls(t, direct, q)
		c.send(append(read, &pgproto3.Sync{})...)
		c.awaitReady(1)
		if after := serverCalls(t, direct, q); after != before {
			return fmt.Errorf("%q still reaches the server", q)
		}
		return nil
	})
	batch := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SET LOCAL search_path = cache_rv_s3"}, &pgproto3.Bind{},
		&pgproto3.Execute{}}
	batch = append(append(batch, read...), &pgproto3.Sync{})
	pgc, _ := cacheServers(t)
	pgDirect := dialRawAddr(t, fmt.Sprintf("127.0.0.1:%d", pgc.Port)) // Postgres itself
	pgDirect.login()
	want := batchRows(t, pgDirect, batch)
	if got := batchRows(t, c, batch); !slices.Equal(got, want) || len(want) != 1 {
		t.Fatalf("a read after SET LOCAL search_path = cache_rv_s3 in its batch returned %q; Postgres returns %q", got, want)
	}
}

// batchRows sends msgs (ending with a Sync) and returns the first column of the rows
// up to the ReadyForQuery.
func batchRows(t *testing.T, c *rawClient, msgs []pgproto3.FrontendMessage) []string {
	t.Helper()
	c.send(msgs...)
	var rows []string
	for {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.ReadyForQuery:
			return rows
		}
	}
}

// TestCacheWriteThroughUntrackedStatement: sluice keeps the texts of at most 10,000 prepared
// statements per client for the query hooks; a Bind of one it did not keep reaches them with no
// text. When that statement writes, the cache must still invalidate.
func TestCacheWriteThroughUntrackedStatement(t *testing.T) {
	s, direct := startCachedSluiceConfig(t, poolConfig{Mode: "session"}, "wal_invalidation = false")
	reader := simpleConn(t, s)
	q := reviewTable(t, direct, reader, "cache_rv_untracked")
	c := dialRaw(t, s)
	c.login()
	var msgs []pgproto3.FrontendMessage
	for i := range 10_000 {
		msgs = append(msgs, &pgproto3.Parse{Name: fmt.Sprintf("s%d", i), Query: "SELECT 1"})
	}
	msgs = append(msgs, &pgproto3.Sync{})
	c.send(msgs...)
	c.awaitReady(1)
	c.send(&pgproto3.Parse{Name: "w", Query: "UPDATE cache_rv_untracked SET v = 'new' WHERE id = 1"},
		&pgproto3.Bind{PreparedStatement: "w"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	c.awaitReady(1)
	expectNewRows(t, reader, q, "a read after a write through the client's 10,001st prepared statement returned the rows from before it")
}

// TestCacheFillFromLaggingReplica: with read/write splitting, a miss runs on a replica. A replica
// behind the primary returns rows from before a write whose bump is done; stored under the
// generation read after that bump, they would be served until the next write or the TTL, long
// after the replica caught up. Fills must read what the generations say: the primary's rows.
func TestCacheFillFromLaggingReplica(t *testing.T) {
	cl := startCluster(t, 1)
	_, r := cacheServers(t)
	ctx := context.Background()
	if err := cl.primary.Exec(ctx, appDB, `CREATE TABLE cache_rv_lag (id int PRIMARY KEY, v text);
		ALTER TABLE cache_rv_lag OWNER TO app; INSERT INTO cache_rv_lag VALUES (1, 'old')`); err != nil {
		t.Fatal(err)
	}
	cl.waitReplicated(t)
	s := startSluice(t, poolConfig{ServerPort: cl.primary.Port, Servers: cl.servers(), Pool: routingPool,
		General: fmt.Sprintf("\n[plugins.cache]\nredis = %q\nprefix = %q\nwal_invalidation = false\n", r.Addr, "e2e:"+t.Name()+":")})
	reader, writer := simpleConn(t, s), simpleConn(t, s)
	const q = "SELECT id, v FROM cache_rv_lag ORDER BY id"
	adm := connectAdmin(t, s, "pgcat")
	checkFor(t, 15*time.Second, func() error { // the catalog is loaded and the cache serves
		got, err := rowsText(ctx, reader, q)
		if err != nil || !strings.Contains(got, "old") {
			return fmt.Errorf("%q %v", got, err)
		}
		if showInt(t, cacheShow(t, adm), "hits/") == 0 {
			return fmt.Errorf("no hit yet")
		}
		return nil
	})
	rc, err := cl.replicas[0].Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	if _, err := rc.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Exec(ctx, "UPDATE cache_rv_lag SET v = 'new' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	_, _ = rowsText(ctx, reader, q) // a miss; the replica may answer it with the old row
	if _, err := rc.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	cl.waitReplicated(t)
	for range 3 {
		got, err := rowsText(ctx, reader, q)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, "new") {
			t.Fatalf("after the replica caught up, a read returned the row from before the write:\n%s", got)
		}
	}
}

// expectNewRows fails the test, saying what, unless q read through conn returns the rows a write
// changed to 'new'.
func expectNewRows(t *testing.T, conn *pgx.Conn, q, what string) {
	t.Helper()
	got, err := rowsText(context.Background(), conn, q)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "new") {
		t.Fatalf("%s:\n%s", what, got)
	}
}
