package e2e

import (
	"context"
	"fmt"
	"github.com/sluicepg/sluice/internal/pgtest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/shard"
)

// TestAutomaticSharding: rows go to the shard their key hashes to (pg_bigint_hash, as Postgres
// hash partitioning), reads by key find them, pgcat's SET SHARD / SET SHARDING KEY / SHOW SHARD
// and comment hints work, and what cannot be sent to one shard is refused with a clear error.
func TestAutomaticSharding(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"shard_e2e_0", "shard_e2e_1"}
	shards := makeShards(t, itemsSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]})
	s := startSluice(t, poolConfig{Shards: shards, Pool: `automatic_sharding_key = "items.id"
shard_id_regex = '/\* shard_id: (\d+) \*/'
`})
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 2}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
		base := int64(1000 * (int(mode) + 1))
		for k := base; k < base+50; k++ {
			if _, err := conn.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, $2)", k, fmt.Sprint("v", k)); err != nil {
				t.Fatalf("insert %d (%v): %v", k, mode, err)
			}
			var v string
			if err := conn.QueryRow(ctx, "SELECT v FROM items WHERE id = $1", k).Scan(&v); err != nil || v != fmt.Sprint("v", k) {
				t.Fatalf("read %d back (%v): %q, %v", k, mode, v, err)
			}
		}
		// Each row is on the shard its key hashes to, and only there.
		for i, db := range dbs {
			dc, err := pgx.Connect(ctx, pg.URL(db, appUser, appPass))
			if err != nil {
				t.Fatal(err)
			}
			rows, err := dc.Query(ctx, "SELECT id FROM items WHERE id >= $1 AND id < $2", base, base+50)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if got := sharder.ShardInt64(id); got != i {
					t.Errorf("key %d is on shard %d; pg_bigint_hash says %d", id, i, got)
				}
			}
			dc.Close(ctx)
		}
	}
	conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	for _, tc := range []struct {
		sql, code string
	}{
		{"UPDATE items SET v = 'x'", "0A000"},                            // a write with no key
		{"SELECT * FROM items WHERE id IN (1001, 1002, 1003, 1004)", ""}, // may span shards
		{"UPDATE items SET id = id + 1 WHERE id = 1001", "0A000"},        // moves a key
	} {
		_, err := conn.Exec(ctx, tc.sql)
		if tc.code != "" && sqlstateOf(err) != tc.code {
			t.Errorf("%s: %v; want %s", tc.sql, err, tc.code)
		}
	}
	// pgcat's commands.
	show := func() string {
		var v string
		if err := conn.QueryRow(ctx, "SHOW SHARD").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := show(); got != "unset" {
		t.Errorf("SHOW SHARD = %q; want unset", got)
	}
	mustExec(t, conn, "SET SHARD TO '1'")
	if got := show(); got != "1" {
		t.Errorf("SHOW SHARD after SET SHARD TO '1' = %q", got)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != dbs[1] {
		t.Errorf("with SET SHARD TO '1' the query ran on %q, %v", db, err)
	}
	mustExec(t, conn, "SET SHARDING KEY TO '1001'")
	if got, want := show(), fmt.Sprint(sharder.ShardInt64(1001)); got != want {
		t.Errorf("SHOW SHARD after SET SHARDING KEY = %q; want %s", got, want)
	}
	if _, err := conn.Exec(ctx, "SET SHARD TO '7'"); sqlstateOf(err) != "22023" {
		t.Errorf("SET SHARD TO '7': %v; want 22023", err)
	}
	// A comment hint picks the shard of a query with no key.
	conn2 := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	for i := range dbs {
		if err := conn2.QueryRow(ctx, fmt.Sprintf("/* shard_id: %d */ SELECT current_database()", i)).Scan(&db); err != nil || db != dbs[i] {
			t.Errorf("hint shard_id %d: ran on %q, %v", i, db, err)
		}
	}
	// Inside a transaction begun on one shard, a statement for the other is refused.
	tx, err := conn2.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var other int64 = 1000
	for sharder.ShardInt64(other) == sharder.ShardInt64(1001) {
		other++
	}
	if _, err := tx.Exec(ctx, "SELECT v FROM items WHERE id = 1001"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT v FROM items WHERE id = %d", other)); sqlstateOf(err) != "0A000" {
		t.Errorf("a statement for another shard inside the transaction: %v; want 0A000", err)
	}
	tx.Rollback(ctx)
}

// TestShardDown: with one shard's server stopped, queries for the other shard go on, and those
// that need the stopped one fail with an error that names it.
func TestShardDown(t *testing.T) {
	ctx := context.Background()
	second, err := pgtest.StartPostgres(pgtest.Options{Name: "shard-down", Auth: "md5"})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	if err := second.CreateUser(ctx, appUser, appPass); err != nil {
		t.Fatal(err)
	}
	shards := makeShards(t, itemsSchema, shardSpec{pg, "shard_down"}, shardSpec{second, "shard_down"})
	s := startSluice(t, poolConfig{Shards: shards, Pool: "automatic_sharding_key = \"items.id\"\n", General: "connect_timeout = 1000\n"})
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 2}
	var on0, on1 int64 = -1, -1
	for k := int64(1); on0 < 0 || on1 < 0; k++ {
		if sharder.ShardInt64(k) == 0 {
			on0 = k
		} else {
			on1 = k
		}
	}
	conn := connect(t, s)
	for _, k := range []int64{on0, on1} {
		if _, err := conn.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'x')", k); err != nil {
			t.Fatal(err)
		}
	}
	if err := second.StopServer(); err != nil {
		t.Fatal(err)
	}
	defer second.Start()
	for range 3 {
		var v string
		if err := conn.QueryRow(ctx, "SELECT v FROM items WHERE id = $1", on0).Scan(&v); err != nil {
			t.Fatalf("a read on the shard that is up: %v", err)
		}
		_, err := conn.Exec(ctx, "SELECT v FROM items WHERE id = $1", on1)
		if err == nil || !strings.Contains(err.Error(), "shard 1") {
			t.Fatalf("a read on the stopped shard: %v; want an error naming shard 1", err)
		}
	}
}

// itemsSchema is the table the sharding tests shard by id.
const itemsSchema = "CREATE TABLE items (id bigint PRIMARY KEY, v text); ALTER TABLE items OWNER TO app"

// shardSpec is one shard of a test pool: a database on a server.
type shardSpec struct {
	pg *pgtest.Postgres
	db string
}

// makeShards creates each shard's database, owned by the app user, with schema, and returns the
// pool's [pools.app.shards.<n>] sections.
func makeShards(t *testing.T, schema string, shards ...shardSpec) string {
	t.Helper()
	var toml string
	for i, sh := range shards {
		createDB(t, sh.pg, sh.db, schema)
		toml += fmt.Sprintf("[pools.app.shards.%d]\ndatabase = %q\nservers = [[\"127.0.0.1\", %d, \"primary\"]]\n", i, sh.db, sh.pg.Port)
	}
	return toml
}

// createDB creates database db on p, owned by the app user, and runs schema in it.
func createDB(t *testing.T, p *pgtest.Postgres, db, schema string) {
	t.Helper()
	ctx := context.Background()
	if err := p.CreateDatabase(ctx, db, appUser); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, db, schema); err != nil {
		t.Fatal(err)
	}
}
