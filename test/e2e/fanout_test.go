package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sluicepg/sluice/internal/shard"
)

// simpleText runs sql with the simple protocol and returns its rows as text (\N for NULL),
// one string per row, and the command tag; or the error.
func simpleText(ctx context.Context, c *pgconn.PgConn, sql string) ([]string, string, error) {
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, "", err
	}
	if len(res) != 1 {
		return nil, "", fmt.Errorf("%d results", len(res))
	}
	if res[0].Err != nil {
		return nil, "", res[0].Err
	}
	var rows []string
	for _, r := range res[0].Rows {
		vals := make([]string, len(r))
		for i, v := range r {
			if v == nil {
				vals[i] = `\N`
			} else {
				vals[i] = string(v)
			}
		}
		rows = append(rows, strings.Join(vals, "|"))
	}
	return rows, res[0].CommandTag.String(), nil
}

// TestFanout: queries across three shards answer exactly what one database holding every row
// answers (a fourth database, "all", holds them); a multi-row INSERT is split so each row lands
// on its shard; writes with cross_shard_writes = "all" run on every shard with their tags
// summed (a COPY into a table without the key too: every row to every shard); what cannot be
// merged is refused with 0A000.
func TestFanout(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"fan_e2e_0", "fan_e2e_1", "fan_e2e_2", "fan_e2e_all"}
	_, conn, all := fanoutFixture(t, dbs, `cross_shard_reads = "all"
cross_shard_writes = "all"
`)
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 3}

	// Reads: the merged answer is the answer of one database with every row.
	for _, q := range []string{
		"SELECT id, v FROM items ORDER BY id",
		"SELECT id, v FROM items ORDER BY id DESC LIMIT 7",
		"SELECT id, v FROM items ORDER BY id LIMIT 5 OFFSET 10",
		"SELECT * FROM items ORDER BY id OFFSET 190",
		"SELECT * FROM items ORDER BY v DESC LIMIT 12",
		"SELECT id, n FROM items ORDER BY n NULLS FIRST, id LIMIT 30",
		"SELECT id, n FROM items ORDER BY n DESC, id LIMIT 10",
		"SELECT id, d FROM items ORDER BY d, id DESC LIMIT 15 OFFSET 3",
		"SELECT v AS name, f FROM items ORDER BY 2, 1 LIMIT 20",
		"SELECT count(*) FROM items",
		"SELECT count(*), sum(id), min(v), max(v), sum(n), count(n) FROM items",
		"SELECT avg(id), avg(n), avg(f), sum(f) FROM items",
		"SELECT min(d), max(d), min(n), max(f) FROM items",
		"SELECT count(*) FROM items WHERE id < 0",
		"SELECT sum(id), avg(n), min(v) FROM items WHERE id < 0",
		"SELECT grp, count(*), sum(n), avg(id), min(d) FROM items GROUP BY grp ORDER BY grp",
		"SELECT grp, max(id) AS m FROM items GROUP BY grp ORDER BY m DESC LIMIT 3",
		"SELECT grp FROM items GROUP BY grp ORDER BY 1 DESC",
		"SELECT grp, count(*) FROM items WHERE v > 'v0100' GROUP BY 1 ORDER BY 2, 1",
		"SELECT id, v FROM items WHERE id IN (1, 2, 3, 4, 5, 6) ORDER BY v",
		"SELECT count(*), sum(id) FROM items WHERE id IN (10, 11, 12, 13)",
	} {
		got, gotTag, err := simpleText(ctx, conn.PgConn(), q)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		want, wantTag, err := simpleText(ctx, all.PgConn(), q)
		if err != nil {
			t.Fatalf("%s on one database: %v", q, err)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") || gotTag != wantTag {
			t.Errorf("%s:\nthrough sluice (%s):\n%s\none database (%s):\n%s", q, gotTag, strings.Join(got, "\n"), wantTag, strings.Join(want, "\n"))
		}
	}
	// A read that does not read the sharded table still goes to one shard.
	if got, _, err := simpleText(ctx, conn.PgConn(), "SELECT 1"); err != nil || len(got) != 1 {
		t.Errorf("SELECT 1: %v, %v; want one row", got, err)
	}

	// Refusals: constructs that cannot be merged, and multi-shard statements inside a
	// transaction.
	for _, q := range fanoutRefused {
		if _, _, err := simpleText(ctx, conn.PgConn(), q); codeOf(err) != "0A000" {
			t.Errorf("%s: %v; want 0A000", q, err)
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	onShard0 := int64(1) // BEGIN went to default_shard, shard 0
	for sharder.ShardInt64(onShard0) != 0 {
		onShard0++
	}
	if _, err := tx.Exec(ctx, "SELECT v FROM items WHERE id = $1", onShard0); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO items (id, v) VALUES (1001, 'a'), (1002, 'b'), (1003, 'c'), (1004, 'd')"); codeOf(err) != "0A000" {
		t.Errorf("a multi-shard INSERT inside a transaction: %v; want 0A000", err)
	}
	tx.Rollback(ctx)

	// Writes to every shard: tags summed, the same effect as on one database.
	for _, q := range []string{
		"UPDATE items SET v = v || 'x' WHERE grp = 1",
		"DELETE FROM items WHERE grp = 4 AND id > 150",
	} {
		_, gotTag, err := simpleText(ctx, conn.PgConn(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		_, wantTag, _ := simpleText(ctx, all.PgConn(), q)
		if gotTag != wantTag {
			t.Errorf("%s: tag %q, want %q", q, gotTag, wantTag)
		}
	}
	q := "SELECT grp, count(*), min(v), max(v) FROM items GROUP BY grp ORDER BY grp"
	got, _, _ := simpleText(ctx, conn.PgConn(), q)
	want, _, _ := simpleText(ctx, all.PgConn(), q)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after the writes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A write that fails on one shard is rolled back on every shard.
	fresh := int64(5000)
	for sharder.ShardInt64(fresh) == sharder.ShardInt64(1) {
		fresh++
	}
	dup := fmt.Sprintf("INSERT INTO items (id, v) VALUES (%d, 'new'), (1, 'new')", fresh) // 1 exists
	if _, _, err := simpleText(ctx, conn.PgConn(), dup); codeOf(err) != "23505" {
		t.Errorf("INSERT of a duplicate key: %v; want 23505", err)
	}
	if got, _, _ := simpleText(ctx, conn.PgConn(), fmt.Sprintf("SELECT count(*) FROM items WHERE id = %d", fresh)); strings.Join(got, "") != "0" {
		t.Errorf("the INSERT's other row was kept: count %v", got)
	}
	// DDL goes to every shard, and so does a COPY into a table without the key: every row.
	if _, _, err := simpleText(ctx, conn.PgConn(), "CREATE TABLE fan_ddl (id int)"); err != nil {
		t.Fatal(err)
	}
	if tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("1\n2\n"), "COPY fan_ddl FROM STDIN"); err != nil || tag.String() != "COPY 6" {
		t.Errorf("COPY into a table without the key: %s, %v; want COPY 6 (two rows on each of three shards)", tag, err)
	}
	for _, db := range dbs[:3] {
		c, err := pgx.Connect(ctx, pg.URL(db, appUser, appPass))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM fan_ddl").Scan(&n); err != nil || n != 2 {
			t.Errorf("the DDL and the COPY did not reach %s: %d rows, %v", db, n, err)
		}
		c.Close(ctx)
	}
}

// TestFanoutDefaults: with the default cross_shard_reads and cross_shard_writes, a read with
// no key goes to default_shard (pgcat's), a write with no key is refused, and a read of keys on
// several shards is merged.
func TestFanoutDefaults(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"fan_def_0", "fan_def_1", "fan_def_2"}
	shards := makeShards(t, itemsSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]}, shardSpec{pg, dbs[2]})
	s := startSluice(t, poolConfig{Shards: shards, Pool: `automatic_sharding_key = "items.id"` + "\n"})
	conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	mustExec(t, conn, "INSERT INTO items (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')")
	got, _, err := simpleText(ctx, conn.PgConn(), "SELECT id FROM items WHERE id IN (1, 2, 3, 4, 5) ORDER BY id DESC LIMIT 4")
	if err != nil || strings.Join(got, ",") != "5,4,3,2" {
		t.Errorf("a read of five keys: %v, %v", got, err)
	}
	got, _, err = simpleText(ctx, conn.PgConn(), "SELECT count(*) FROM items")
	if err != nil {
		t.Fatal(err)
	}
	var onShard0 int
	pgc, err := pgx.Connect(ctx, pg.URL(dbs[0], appUser, appPass))
	if err != nil {
		t.Fatal(err)
	}
	defer pgc.Close(ctx)
	if err := pgc.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&onShard0); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "") != fmt.Sprint(onShard0) {
		t.Errorf("a read with no key counted %v; default_shard (shard 0) holds %d", got, onShard0)
	}
	if _, _, err := simpleText(ctx, conn.PgConn(), "UPDATE items SET v = 'x'"); codeOf(err) != "0A000" {
		t.Errorf("a write with no key: %v; want 0A000", err)
	}
	// The same in the extended protocol.
	ext := connect(t, s)
	rows, _ := ext.Query(ctx, "SELECT id FROM items WHERE id = ANY($1) ORDER BY id DESC LIMIT $2", []int64{1, 2, 3, 4, 5}, 4)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || fmt.Sprint(ids) != "[5 4 3 2]" {
		t.Errorf("a read of five keys in the extended protocol: %v, %v", ids, err)
	}
	var n int
	if err := ext.QueryRow(ctx, "SELECT count(*) FROM items WHERE v <> $1", "none").Scan(&n); err != nil || n != onShard0 {
		t.Errorf("a read with no key in the extended protocol counted %d, %v; default_shard holds %d", n, err, onShard0)
	}
	if _, err := ext.Exec(ctx, "UPDATE items SET v = $1", "x"); codeOf(err) != "0A000" {
		t.Errorf("a write with no key in the extended protocol: %v; want 0A000", err)
	}
}

// fanoutRefused are reads that cannot be merged across shards: refused with 0A000.
var fanoutRefused = []string{
	"SELECT DISTINCT v FROM items",
	"SELECT id, row_number() OVER (ORDER BY id) FROM items",
	"SELECT grp, count(*) FROM items GROUP BY grp HAVING count(*) > 1",
	"SELECT string_agg(v, ',') FROM items",
	"SELECT id FROM items ORDER BY v",
	"SELECT id FROM items FOR UPDATE",
	"SELECT * FROM items WHERE id > (SELECT avg(id) FROM items)",
}

// fanoutSchema is the sharded table of the fan-out tests: a column of each type the merge
// compares or adds.
const fanoutSchema = "CREATE TABLE items (id bigint PRIMARY KEY, v text, n numeric, f float8, d date, grp int); ALTER TABLE items OWNER TO app"

// fanoutRows is how many rows fanoutFixture loads.
const fanoutRows = 200

// fanoutFixture makes three shards of fanoutSchema (dbs[0..2]) and one database with every
// row (dbs[3]), starts sluice on the shards with pool's extra lines, and loads fanoutRows rows
// through sluice, by multi-row INSERTs that it splits, and into the fourth database. It
// returns sluice, a simple-protocol connection through it and a connection to the fourth
// database.
func fanoutFixture(t *testing.T, dbs []string, pool string) (*Sluice, *pgx.Conn, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	shards := makeShards(t, fanoutSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]}, shardSpec{pg, dbs[2]})
	createDB(t, pg, dbs[3], fanoutSchema)
	s := startSluice(t, poolConfig{Shards: shards, Pool: "automatic_sharding_key = \"items.id\"\n" + pool})
	conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	all, err := pgx.Connect(ctx, pg.URL(dbs[3], appUser, appPass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { all.Close(ctx) })
	for base := 1; base <= fanoutRows; base += 50 {
		var vals []string
		for k := base; k < base+50; k++ {
			n, f := fmt.Sprintf("%d.%02d", k%17, k%100), fmt.Sprintf("%g", float64(k%9)/4)
			if k%11 == 0 {
				n = "NULL"
			}
			vals = append(vals, fmt.Sprintf("(%d, 'v%04d', %s, %s, DATE '2024-01-01' + %d, %d)", k, k*7%fanoutRows, n, f, k%37, k%5))
		}
		ins := "INSERT INTO items (id, v, n, f, d, grp) VALUES " + strings.Join(vals, ", ")
		_, tag, err := simpleText(ctx, conn.PgConn(), ins)
		if err != nil {
			t.Fatalf("split INSERT: %v", err)
		}
		if tag != "INSERT 0 50" {
			t.Errorf("split INSERT tag %q, want INSERT 0 50", tag)
		}
		if _, err := all.Exec(ctx, ins); err != nil {
			t.Fatal(err)
		}
	}
	// Each row is on the shard its key hashes to, and only there.
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 3}
	if total := checkOnShards(t, dbs[:3], sharder, "SELECT id FROM items"); total != fanoutRows {
		t.Errorf("the shards hold %d rows, want %d", total, fanoutRows)
	}
	return s, conn, all
}
