package e2e

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/shard"
)

// copySchema is the table the COPY tests shard by id.
const copySchema = "CREATE TABLE items (id bigint PRIMARY KEY, v text, n int); ALTER TABLE items OWNER TO app"

// threeShards is a sluice in front of three shards (databases <prefix>_0, _1, _2 on pg) of
// schema, sharded by items.id, plus a fourth database <prefix>_all with the same schema and
// no sluice in front, to hold what one unsharded database would. pool holds extra [pools.app]
// lines.
type threeShards struct {
	s       *Sluice
	dbs     []string
	all     *pgx.Conn
	sharder shard.Sharder
}

func startThreeShards(t *testing.T, prefix, schema, pool string) *threeShards {
	t.Helper()
	ts := &threeShards{sharder: shard.Sharder{Func: shard.PgBigintHash, Type: shard.Bigint, Shards: 3}}
	var specs []shardSpec
	for i := range 3 {
		ts.dbs = append(ts.dbs, fmt.Sprintf("%s_%d", prefix, i))
		specs = append(specs, shardSpec{pg, ts.dbs[i]})
	}
	shards := makeShards(t, schema, specs...)
	createDB(t, pg, prefix+"_all", schema)
	ts.s = startSluice(t, poolConfig{Shards: shards, Pool: "automatic_sharding_key = \"items.id\"\n" + pool})
	all, err := pgx.Connect(context.Background(), pg.URL(prefix+"_all", appUser, appPass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { all.Close(context.Background()) })
	ts.all = all
	return ts
}

// shardIDs reads the ids of query's rows on each shard directly, fails the test for an id not
// on the shard that hashing names, and returns how many there are.
func (ts *threeShards) shardIDs(t *testing.T, query string) int {
	t.Helper()
	return checkOnShards(t, ts.dbs, ts.sharder, query)
}

// checkOnShards reads the ids query returns on each shard's database directly, fails the test
// for an id that is not on the shard the sharder names, and returns how many there are.
func checkOnShards(t *testing.T, dbs []string, sharder shard.Sharder, query string) int {
	t.Helper()
	ctx := context.Background()
	total := 0
	for i, db := range dbs {
		dc, err := pgx.Connect(ctx, pg.URL(db, appUser, appPass))
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := dc.Query(ctx, query)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[*int64])
		dc.Close(ctx)
		if err != nil {
			t.Fatalf("%s on %s: %v", query, db, err)
		}
		for _, id := range ids {
			if id == nil {
				if i != 0 {
					t.Errorf("a NULL key is on shard %d; hash partitioning keeps it on shard 0", i)
				}
			} else if got := sharder.ShardInt64(*id); got != i {
				t.Errorf("key %d is on shard %d; %s says %d", *id, i, sharder.Func, got)
			}
		}
		total += len(ids)
	}
	return total
}

// chunkReader returns its data a few bytes at a time, 1 to 13 in turn: pgconn sends each Read
// as one CopyData, so rows and escapes span messages.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	r.n = r.n%13 + 1
	k := copy(p[:min(len(p), r.n)], r.data)
	r.data = r.data[k:]
	return k, nil
}

// TestCopyMatchesOneDatabase: COPY FROM STDIN through sluice on three shards has the outcome
// of the same COPY on one database, case by case: the same rows in the end (each on its key's
// shard), or an error with the same SQLSTATE and no row of the COPY left on any shard. The
// cases are Postgres' COPY parser's corners: options, headers, escapes, quotes, line ends, the
// end marker, bad rows. The data reaches sluice a few bytes per CopyData.
func TestCopyMatchesOneDatabase(t *testing.T) {
	ctx := context.Background()
	ts := startThreeShards(t, "copy_eq", copySchema, "cross_shard_reads = \"all\"\n")
	conn := connect(t, ts.s)
	for _, tc := range []struct {
		name, sql, data string
	}{
		{"text", "COPY items FROM STDIN", "1\ta\t10\n2\tb\t20\n3\t\\N\t30\n4\tc\t\\N\n"},
		{"column list without the key first", "COPY items (v, id) FROM STDIN", "x\t5\ny\t6\n"},
		{"escapes, also in the key", "COPY items FROM STDIN", "\\x37\tesc\\ttab\t1\n\\70\tnew\\nline\t2\n9\tback\\\\slash\t3\n"},
		{"escaped line end is data", "COPY items FROM STDIN", "10\tline\\\nbreak\t3\n"},
		{"CRLF lines", "COPY items FROM STDIN", "11\ta\t1\r\n12\tb\t2\r\n"},
		{"end marker; the rest ignored", "COPY items FROM STDIN", "13\ta\t1\n\\.\n14\tb\t2\n"},
		{"text HEADER", "COPY items FROM STDIN (HEADER)", "id\tv\tn\n15\ta\t1\n16\tb\t2\n"},
		{"delimiter and empty NULL", "COPY items FROM STDIN (DELIMITER '|', NULL '')", "17||5\n18|x|\n"},
		{"CSV with quotes, delimiters and newlines in fields", "COPY items FROM STDIN (FORMAT csv)",
			"19,\"a,b\",1\n20,\"multi\nline\",2\n\"21\",\"q\"\"uote\",3\n22,,\n"},
		{"CSV options and HEADER", "COPY items (id, v) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'NULL')",
			"id;v\n23;'x;y'\n24;NULL\n25;'it\\'s'\n"},
		{"CSV HEADER MATCH", "COPY items FROM STDIN (FORMAT csv, HEADER match)", "id,v,n\n26,a,1\n"},
		{"CSV, the old syntax", "COPY items FROM STDIN CSV HEADER", "id,v,n\r\n27,a,1\r\n28,\"b\r\nc\",2\r\n"},
		{"empty", "COPY items FROM STDIN", ""},
		{"HEADER MATCH that does not match", "COPY items FROM STDIN (FORMAT csv, HEADER match)", "id,wrong,n\n29,a,1\n"},
		{"a key that is not a bigint", "COPY items FROM STDIN", "30\ta\t1\nabc\tb\t2\n"},
		{"a key out of range", "COPY items FROM STDIN", "31\ta\t1\n99999999999999999999\tb\t2\n"},
		{"a duplicate key on one shard", "COPY items FROM STDIN", "32\ta\t1\n1\tb\t2\n"},
		{"a NULL key", "COPY items FROM STDIN", "33\ta\t1\n\\N\ta\t1\n"},
		{"FORCE_NULL on the key", "COPY items FROM STDIN (FORMAT csv, FORCE_NULL (id))", "34,a,1\n\"\",a,1\n"},
		{"a row without the key field", "COPY items (v, id) FROM STDIN", "a\t35\nonly\n"},
		{"a row missing a later field", "COPY items FROM STDIN", "36\ta\t1\n37\n"},
		{"a row with an extra field", "COPY items FROM STDIN", "38\ta\t1\t4\n"},
		{"a carriage return in data", "COPY items FROM STDIN", "39\ta\t1\n40\tb\r\t2\n"},
		{"an unterminated CSV quote", "COPY items FROM STDIN (FORMAT csv)", "41,a,1\n\"42,a,1\n"},
		{"a corrupt end marker", "COPY items FROM STDIN", "43\ta\t1\n\\.x\n"},
		{"a value the server refuses", "COPY items FROM STDIN", "44\ta\tnot-an-int\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, gotErr := conn.PgConn().CopyFrom(ctx, &chunkReader{data: []byte(tc.data)}, tc.sql)
			want, wantErr := ts.all.PgConn().CopyFrom(ctx, strings.NewReader(tc.data), tc.sql)
			if sqlstateOf(gotErr) != sqlstateOf(wantErr) || (gotErr == nil) != (wantErr == nil) || got.String() != want.String() {
				t.Errorf("through sluice: %q, %v\none database: %q, %v", got, gotErr, want, wantErr)
			}
			q := "SELECT id, v, n FROM items ORDER BY id"
			gotRows, _, err := simpleText(ctx, conn.PgConn(), q)
			if err != nil {
				t.Fatal(err)
			}
			wantRows, _, _ := simpleText(ctx, ts.all.PgConn(), q)
			if !slices.Equal(gotRows, wantRows) {
				t.Errorf("the shards hold\n%s\none database\n%s", strings.Join(gotRows, "\n"), strings.Join(wantRows, "\n"))
			}
		})
	}
	if n := ts.shardIDs(t, "SELECT id FROM items"); n == 0 {
		t.Error("no rows on the shards")
	}
}
