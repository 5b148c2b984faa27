package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/pgtest"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/shard"
)

// TestAutomaticSharding: on three shards, rows go to the shard their key hashes to
// (pg_bigint_hash, as Postgres hash partitioning), reads by key find them, pgcat's SET SHARD /
// SET SHARDING KEY / SHOW SHARD and comment hints work, and what cannot be sent to one shard is
// refused with a clear error.
func TestAutomaticSharding(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"shard_e2e_0", "shard_e2e_1", "shard_e2e_2"}
	shards := makeShards(t, itemsSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]}, shardSpec{pg, dbs[2]})
	s := startSluice(t, poolConfig{Shards: shards, Pool: `automatic_sharding_key = "items.id"
shard_id_regex = '/\* shard_id: (\d+) \*/'
`})
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: len(dbs)}
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
		if n := checkOnShards(t, dbs, sharder, fmt.Sprintf("SELECT id FROM items WHERE id >= %d AND id < %d", base, base+50)); n != 50 {
			t.Errorf("the shards hold %d of the 50 rows (%v)", n, mode)
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
		if tc.code != "" && codeOf(err) != tc.code {
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
	if _, err := conn.Exec(ctx, "SET SHARD TO '7'"); codeOf(err) != "22023" {
		t.Errorf("SET SHARD TO '7': %v; want 22023", err)
	}
	// A comment hint picks the shard of a query with no key.
	conn2 := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	for i := range dbs {
		if err := conn2.QueryRow(ctx, fmt.Sprintf("/* shard_id: %d */ SELECT current_database()", i)).Scan(&db); err != nil || db != dbs[i] {
			t.Errorf("hint shard_id %d: ran on %q, %v", i, db, err)
		}
	}
	// Inside a transaction begun on one shard (BEGIN goes to default_shard, shard 0), a
	// statement for another is refused.
	tx, err := conn2.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in, other := int64(1000), int64(1000)
	for sharder.ShardInt64(in) != 0 {
		in++
	}
	for sharder.ShardInt64(other) == 0 {
		other++
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT v FROM items WHERE id = %d", in)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT v FROM items WHERE id = %d", other)); codeOf(err) != "0A000" {
		t.Errorf("a statement for another shard inside the transaction: %v; want 0A000", err)
	}
	tx.Rollback(ctx)
}

// TestShardDown: on three shards, with shard 1's server stopped, queries for the other shards
// go on (reads and writes by key, reads of several shards that leave shard 1 out), and those
// that need shard 1 fail with an error that names it (reads and writes by key, reads of every
// shard, COPY, which opens every shard).
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
	shards := makeShards(t, itemsSchema, shardSpec{pg, "shard_down_0"}, shardSpec{second, "shard_down"}, shardSpec{pg, "shard_down_2"})
	s := startSluice(t, poolConfig{Shards: shards, Pool: "automatic_sharding_key = \"items.id\"\ncross_shard_reads = \"all\"\n",
		General: "connect_timeout = 1000\n"})
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 3}
	keys := [3]int64{-1, -1, -1} // a key on each shard
	for k := int64(1); keys[0] < 0 || keys[1] < 0 || keys[2] < 0; k++ {
		if sh := sharder.ShardInt64(k); keys[sh] < 0 {
			keys[sh] = k
		}
	}
	conn := connect(t, s)
	for _, k := range keys {
		if _, err := conn.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'x')", k); err != nil {
			t.Fatal(err)
		}
	}
	if err := second.StopServer(); err != nil {
		t.Fatal(err)
	}
	defer second.Start()
	simple := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	for range 2 {
		for _, sh := range []int{0, 2} {
			var v string
			if err := conn.QueryRow(ctx, "SELECT v FROM items WHERE id = $1", keys[sh]).Scan(&v); err != nil {
				t.Fatalf("a read on shard %d, which is up: %v", sh, err)
			}
			if _, err := conn.Exec(ctx, "UPDATE items SET v = 'y' WHERE id = $1", keys[sh]); err != nil {
				t.Fatalf("a write on shard %d, which is up: %v", sh, err)
			}
		}
		if _, _, err := simpleText(ctx, simple.PgConn(), fmt.Sprintf("SELECT count(*) FROM items WHERE id IN (%d, %d)", keys[0], keys[2])); err != nil {
			t.Fatalf("a read of shards 0 and 2: %v", err)
		}
		for _, q := range []string{
			fmt.Sprintf("SELECT v FROM items WHERE id = %d", keys[1]),
			fmt.Sprintf("UPDATE items SET v = 'y' WHERE id = %d", keys[1]),
			"SELECT count(*) FROM items",
		} {
			if _, _, err := simpleText(ctx, simple.PgConn(), q); err == nil || !strings.Contains(err.Error(), "shard 1") {
				t.Fatalf("%s, with shard 1 stopped: %v; want an error naming shard 1", q, err)
			}
		}
		_, err := simple.PgConn().CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%d\tz\n", keys[0]+3000)), "COPY items FROM STDIN")
		if err == nil || !strings.Contains(err.Error(), "shard 1") {
			t.Fatalf("a COPY, with shard 1 stopped: %v; want an error naming shard 1", err)
		}
	}
}

// TestRowsLandOnTheirShards: 1,000 random rows by multi-row INSERT, 1,000 by COPY in text and
// 1,000 by COPY in CSV, through sluice on three shards, are each on the shard that hashing
// names (read on the shards directly), and a read by key through sluice finds each of them
// with its value. Keys include negatives and the extremes; values hold tabs, newlines,
// backslashes, quotes, commas and NULLs.
func TestRowsLandOnTheirShards(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"rows_land_0", "rows_land_1", "rows_land_2"}
	shards := makeShards(t, itemsSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]}, shardSpec{pg, dbs[2]})
	s := startSluice(t, poolConfig{Shards: shards, Pool: "automatic_sharding_key = \"items.id\"\n"})
	sharder := shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: len(dbs)}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 7))
	const perWay = 1000
	keys := []int64{math.MinInt64, math.MaxInt64, 0, -1}
	seen := map[int64]bool{}
	for _, k := range keys {
		seen[k] = true
	}
	for len(keys) < 3*perWay {
		k := rnd.Int64() >> rnd.IntN(63)
		if rnd.IntN(2) == 0 {
			k = -k
		}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	const alphabet = "ab,\"'\\\t\n\r xé"
	vals := make(map[int64]*string, len(keys))
	for _, k := range keys {
		if rnd.IntN(10) == 0 {
			vals[k] = nil
			continue
		}
		r := []rune(alphabet)
		var b strings.Builder
		for range rnd.IntN(12) {
			b.WriteRune(r[rnd.IntN(len(r))])
		}
		v := b.String()
		vals[k] = &v
	}
	conn := connect(t, s)
	// Multi-row INSERTs of 100 rows, each split by shard.
	for i := 0; i < perWay; i += 100 {
		var rows []string
		for _, k := range keys[i : i+100] {
			v := "NULL"
			if p := vals[k]; p != nil {
				v = "'" + strings.ReplaceAll(*p, "'", "''") + "'"
			}
			rows = append(rows, fmt.Sprintf("(%d, %s)", k, v))
		}
		tag, err := conn.PgConn().Exec(ctx, "INSERT INTO items (id, v) VALUES "+strings.Join(rows, ", ")).ReadAll()
		if err != nil || tag[0].CommandTag.String() != "INSERT 0 100" {
			t.Fatalf("multi-row INSERT: %v, %v", tag, err)
		}
	}
	// COPY in text, a few bytes per CopyData, and in CSV.
	var text, csv strings.Builder
	textEscape := strings.NewReplacer("\\", "\\\\", "\t", "\\t", "\n", "\\n", "\r", "\\r")
	for _, k := range keys[perWay : 2*perWay] {
		v := "\\N"
		if p := vals[k]; p != nil {
			v = textEscape.Replace(*p)
		}
		fmt.Fprintf(&text, "%d\t%s\n", k, v)
	}
	for _, k := range keys[2*perWay:] {
		v := ""
		if p := vals[k]; p != nil {
			v = `"` + strings.ReplaceAll(*p, `"`, `""`) + `"`
		}
		fmt.Fprintf(&csv, "%d,%s\n", k, v)
	}
	for _, c := range []struct {
		sql string
		r   io.Reader
	}{
		{"COPY items (id, v) FROM STDIN", &chunkReader{data: []byte(text.String())}},
		{"COPY items (id, v) FROM STDIN (FORMAT csv)", strings.NewReader(csv.String())},
	} {
		tag, err := conn.PgConn().CopyFrom(ctx, c.r, c.sql)
		if err != nil || tag.String() != fmt.Sprintf("COPY %d", perWay) {
			t.Fatalf("%s: %s, %v", c.sql, tag, err)
		}
	}
	if n := checkOnShards(t, dbs, sharder, "SELECT id FROM items"); n != len(keys) {
		t.Errorf("the shards hold %d rows, want %d", n, len(keys))
	}
	// Reads by key find every row, with its value.
	for _, k := range keys {
		var v *string
		if err := conn.QueryRow(ctx, "SELECT v FROM items WHERE id = $1", k).Scan(&v); err != nil {
			t.Fatalf("read of key %d: %v", k, err)
		}
		if (v == nil) != (vals[k] == nil) || v != nil && *v != *vals[k] {
			t.Fatalf("key %d reads %v, want %v", k, show(v), show(vals[k]))
		}
	}
}

// show prints a nullable text.
func show(p *string) string {
	if p == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *p)
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
