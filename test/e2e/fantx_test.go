package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/internal/shard"
)

// fantxSchema: items is sharded by id; dtab (also by id, with automatic_sharding_key =
// "*.id") has a unique column checked at COMMIT, to make a COMMIT fail on one shard.
const fantxSchema = `CREATE TABLE items (id bigint PRIMARY KEY, v text);
CREATE TABLE dtab (id bigint PRIMARY KEY, u int UNIQUE DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE items OWNER TO app; ALTER TABLE dtab OWNER TO app`

// keysOn returns n keys, from 1 up, that hash to shard sh of three.
func keysOn(sh, n int) []int64 {
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 3}
	var out []int64
	for k := int64(1); len(out) < n; k++ {
		if sharder.ShardInt64(k) == sh {
			out = append(out, k)
		}
	}
	return out
}

// TestFanoutTransactions: inside a transaction block (begun on default_shard, shard 0), a
// statement that needs other shards is refused with 0A000 by default, in both protocols; with
// cross_shard_transactions = true the other shards join the transaction: reads across shards
// see the transaction's own writes on every shard, COMMIT commits every shard and ROLLBACK
// rolls back every shard, an error on one shard fails the transaction everywhere, a COMMIT
// that fails on one shard after another committed says so (not atomic), savepoints are
// refused, and a portal with a row limit lives across Syncs as Postgres keeps it.
func TestFanoutTransactions(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"fantx_e2e_0", "fantx_e2e_1", "fantx_e2e_2"}
	shards := makeShards(t, fantxSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]}, shardSpec{pg, dbs[2]})
	const pool = "automatic_sharding_key = \"*.id\"\ncross_shard_reads = \"all\"\ncross_shard_writes = \"all\"\n"
	off := startSluice(t, poolConfig{Shards: shards, Pool: pool})
	on := startSluice(t, poolConfig{Shards: shards, Pool: pool + "cross_shard_transactions = true\n"})
	k0, k1, k2 := keysOn(0, 4), keysOn(1, 4), keysOn(2, 4)
	count := func(c *pgx.Conn, where string, args ...any) int64 {
		t.Helper()
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM items WHERE "+where, args...).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", where, err)
		}
		return n
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}

	t.Run("off", func(t *testing.T) {
		for _, mode := range modes {
			conn := connectConfig(t, off, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{"SELECT count(*) FROM items", nil},                                      // no key, cross_shard_reads = "all"
				{"SELECT count(*) FROM items WHERE id IN ($1, $2)", []any{k0[0], k1[0]}}, // two shards
				{"SELECT v FROM items WHERE id = $1", []any{k2[0]}},                      // another shard
				{"UPDATE items SET v = 'x'", nil},                                        // no key, cross_shard_writes = "all"
				{"INSERT INTO items (id, v) VALUES ($1, 'a'), ($2, 'b')", []any{k0[1], k1[1]}},
			} {
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, "SELECT v FROM items WHERE id = $1", k0[0]); err != nil {
					t.Fatalf("%v: a statement on the transaction's shard: %v", mode, err)
				}
				_, err = tx.Exec(ctx, q.sql, q.args...)
				if codeOf(err) != "0A000" || !strings.Contains(err.Error(), "cross_shard_transactions") {
					t.Errorf("%v: %s inside a transaction: %v; want 0A000 naming cross_shard_transactions", mode, q.sql, err)
				}
				tx.Rollback(ctx)
			}
		}
	})

	t.Run("on", func(t *testing.T) {
		outside := connect(t, on)
		for _, mode := range modes {
			t.Run(mode.String(), func(t *testing.T) {
				mustExec(t, outside, "DELETE FROM items")
				conn := connectConfig(t, on, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range []int64{k1[0], k2[0], k0[0]} {
					if _, err := tx.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, $2)", k, fmt.Sprint("v", k)); err != nil {
						t.Fatalf("insert %d: %v", k, err)
					}
				}
				if _, err := tx.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'a'), ($2, 'b'), ($3, 'c')", k0[1], k1[1], k2[1]); err != nil {
					t.Fatalf("a split INSERT inside the transaction: %v", err)
				}
				// The transaction sees its own writes on every shard; nobody else does yet.
				if n := count(conn, "id > $1", 0); n != 6 {
					t.Errorf("inside the transaction: %d rows, want 6", n)
				}
				var vs []string
				rows, _ := tx.Query(ctx, "SELECT v FROM items WHERE id IN ($1, $2, $3) ORDER BY v DESC", k0[0], k1[0], k2[0])
				vs, err = pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil || len(vs) != 3 {
					t.Errorf("a merged read inside the transaction: %v, %v", vs, err)
				}
				if n := count(outside, "id > $1", 0); n != 0 {
					t.Errorf("before COMMIT, another client sees %d rows", n)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatalf("COMMIT: %v", err)
				}
				if n := count(outside, "id > $1", 0); n != 6 {
					t.Errorf("after COMMIT: %d rows, want 6", n)
				}
				if n := checkOnShards(t, dbs, shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 3}, "SELECT id FROM items"); n != 6 {
					t.Errorf("the shards hold %d rows, want 6", n)
				}

				// ROLLBACK undoes every shard.
				tx, _ = conn.Begin(ctx)
				if _, err := tx.Exec(ctx, "UPDATE items SET v = 'changed'"); err != nil {
					t.Fatalf("UPDATE every shard: %v", err)
				}
				if _, err := tx.Exec(ctx, "DELETE FROM items WHERE id = $1", k2[0]); err != nil {
					t.Fatal(err)
				}
				tx.Rollback(ctx)
				if n := count(outside, "v = $1 OR id = $2", "changed", k2[0]); n != 1 {
					t.Errorf("after ROLLBACK: %d rows changed or with the deleted key, want the key's 1", n)
				}

				// An error on one shard fails the transaction everywhere.
				tx, _ = conn.Begin(ctx)
				if _, err := tx.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'new')", k1[2]); err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'dup')", k2[0]); codeOf(err) != "23505" {
					t.Errorf("a duplicate key on shard 2: %v; want 23505", err)
				}
				if _, err := tx.Exec(ctx, "SELECT count(*) FROM items"); codeOf(err) != "25P02" {
					t.Errorf("after the error: %v; want 25P02", err)
				}
				if err := tx.Commit(ctx); err == nil {
					t.Error("COMMIT of the failed transaction succeeded")
				}
				if n := count(outside, "id = $1", k1[2]); n != 0 {
					t.Errorf("the failed transaction's row on shard 1 was kept")
				}

				// Savepoints are refused once another shard joined.
				tx, _ = conn.Begin(ctx)
				tx.Exec(ctx, "SELECT v FROM items WHERE id = $1", k1[0])
				if _, err := tx.Exec(ctx, "SAVEPOINT a"); codeOf(err) != "0A000" {
					t.Errorf("SAVEPOINT in a transaction across shards: %v; want 0A000", err)
				}
				tx.Rollback(ctx)
				// The session goes on.
				if n := count(conn, "id > $1", 0); n != 6 {
					t.Errorf("after the transactions: %d rows, want 6", n)
				}
			})
		}

		// A COMMIT that fails on one shard after another committed: the error names the
		// shards that committed; the rest rolled back.
		mustExec(t, outside, "DELETE FROM dtab")
		conn := connect(t, on)
		tx, _ := conn.Begin(ctx)
		for _, row := range [][2]int64{{k0[0], 1}, {k1[0], 2}, {k2[0], 3}, {k2[1], 3}} {
			if _, err := tx.Exec(ctx, "INSERT INTO dtab (id, u) VALUES ($1, $2)", row[0], row[1]); err != nil {
				t.Fatal(err)
			}
		}
		err := tx.Commit(ctx)
		if codeOf(err) != "23505" || !strings.Contains(err.Error(), "shard 2") || !strings.Contains(err.Error(), "[1] committed") {
			t.Errorf("COMMIT with a deferred unique violation on shard 2: %v; want 23505 naming shard 2 and shard 1 committed", err)
		}
		var ids []int64
		rows, _ := outside.Query(ctx, "SELECT id FROM dtab ORDER BY id")
		ids, _ = pgx.CollectRows(rows, pgx.RowTo[int64])
		if fmt.Sprint(ids) != fmt.Sprint([]int64{k1[0]}) {
			t.Errorf("after the failed COMMIT dtab holds %v; want only shard 1's row %d", ids, k1[0])
		}

		// COMMIT in the extended protocol (JDBC sends it so) commits the joined shards too.
		mustExec(t, conn, "BEGIN")
		if _, err := conn.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'ext')", k1[3]); err != nil {
			t.Fatal(err)
		}
		if res := conn.PgConn().ExecParams(ctx, "COMMIT", nil, nil, nil, nil).Read(); res.Err != nil || res.CommandTag.String() != "COMMIT" {
			t.Errorf("COMMIT in the extended protocol: %s, %v", res.CommandTag, res.Err)
		}
		if n := count(outside, "id = $1", k1[3]); n != 1 {
			t.Errorf("after an extended-protocol COMMIT, the joined shard's row: %d, want 1", n)
		}
		mustExec(t, outside, "DELETE FROM items WHERE id = $1", k1[3])

		// Portals inside a transaction live across Syncs, as in Postgres (JDBC's fetch size).
		testTxPortal(t, on, dbs)
	})
}

// testTxPortal: a read across shards executed with a row limit inside a transaction block
// goes on after a Sync, and ends with the transaction.
func testTxPortal(t *testing.T, s *Sluice, dbs []string) {
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	got := protocolTrace(t, c, []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "BEGIN"},
		&pgproto3.Parse{Query: "SELECT id FROM items WHERE id > $1 ORDER BY id"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("0")}},
		&pgproto3.Execute{MaxRows: 4}, &pgproto3.Sync{},
		&pgproto3.Execute{MaxRows: 4}, &pgproto3.Sync{},
		&pgproto3.Query{String: "COMMIT"},
		&pgproto3.Execute{MaxRows: 4}, &pgproto3.Sync{},
	}, 5, false)
	want := `CommandComplete BEGIN
ReadyForQuery T
*pgproto3.ParseComplete
*pgproto3.BindComplete
*pgproto3.PortalSuspended
ReadyForQuery T
CommandComplete SELECT 2
ReadyForQuery T
CommandComplete COMMIT
ReadyForQuery I
ErrorResponse 34000 portal "" does not exist
ReadyForQuery I
`
	if got != want {
		t.Errorf("a portal across shards inside a transaction:\n%s\nwant:\n%s", got, want)
	}
}
