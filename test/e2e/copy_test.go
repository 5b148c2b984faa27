package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
			if codeOf(gotErr) != codeOf(wantErr) || (gotErr == nil) != (wantErr == nil) || got.String() != want.String() {
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

// failingReader returns its data, then an error: pgconn then sends CopyFail.
type failingReader struct{ data []byte }

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("the client gave up")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestCopyAcrossShards: COPY TO STDOUT from every shard (text, CSV with a header once, binary
// with one file header and trailer) holds the rows of one database; COPY (query) TO runs where
// its query's key says, and one that orders rows across shards is refused; the client's
// CopyFail leaves no row; a COPY into the sharded table inside a transaction block is refused
// unless SET SHARD chose the shard, and a comment hint sends it whole to one shard, as before;
// pgx's CopyFrom (binary COPY) lands each row on its shard.
func TestCopyAcrossShards(t *testing.T) {
	ctx := context.Background()
	ts := startThreeShards(t, "copy_x", copySchema+"; CREATE TABLE other (k text); ALTER TABLE other OWNER TO app",
		"cross_shard_reads = \"all\"\nshard_id_regex = '/\\* shard_id: (\\d+) \\*/'\n")
	conn := connect(t, ts.s)
	var data strings.Builder
	for k := 1; k <= 60; k++ {
		fmt.Fprintf(&data, "%d\tv%d, \"q\"\t%d\n", k, k, k%7)
	}
	for _, c := range []*pgx.Conn{conn, ts.all} {
		if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader(data.String()), "COPY items FROM STDIN"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.shardIDs(t, "SELECT id FROM items"); n != 60 {
		t.Fatalf("the shards hold %d rows, want 60", n)
	}

	copyTo := func(c *pgx.Conn, sql string) (string, string, error) {
		var b bytes.Buffer
		tag, err := c.PgConn().CopyTo(ctx, &b, sql)
		return b.String(), tag.String(), err
	}
	for _, tc := range []struct {
		sql    string
		header bool // the first line is a header, then rows in any order
	}{
		{"COPY items TO STDOUT", false},
		{"COPY items (v, id) TO STDOUT (FORMAT csv, HEADER)", true},
		{"COPY (SELECT id, n FROM items WHERE n > 3) TO STDOUT WITH CSV HEADER", true},
		{"COPY (SELECT id, v FROM items WHERE id IN (3, 4, 5, 6)) TO STDOUT", false},
		{"COPY (SELECT * FROM items WHERE id = 7) TO STDOUT", false},
	} {
		got, gotTag, err := copyTo(conn, tc.sql)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		want, wantTag, err := copyTo(ts.all, tc.sql)
		if err != nil {
			t.Fatal(err)
		}
		g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
		if tc.header && (g[0] != w[0] || strings.Count(got, w[0]+"\n") != 1) {
			t.Errorf("%s: the header is not the first line, once:\n%s", tc.sql, got)
		}
		slices.Sort(g)
		slices.Sort(w)
		if !slices.Equal(g, w) || gotTag != wantTag {
			t.Errorf("%s:\nthrough sluice (%s):\n%s\none database (%s):\n%s", tc.sql, gotTag, got, wantTag, want)
		}
	}
	// Binary: the shards' output, one file, loads into one database as the rows themselves.
	bin, tag, err := copyTo(conn, "COPY items TO STDOUT (FORMAT binary)")
	if err != nil || tag != "COPY 60" {
		t.Fatalf("binary COPY TO: %s, %v", tag, err)
	}
	mustExec(t, ts.all, "CREATE TABLE items_bin (LIKE items)")
	if _, err := ts.all.PgConn().CopyFrom(ctx, strings.NewReader(bin), "COPY items_bin FROM STDIN (FORMAT binary)"); err != nil {
		t.Fatalf("loading sluice's binary COPY: %v", err)
	}
	var diff int
	if err := ts.all.QueryRow(ctx, "SELECT count(*) FROM (SELECT * FROM items EXCEPT SELECT * FROM items_bin) d").Scan(&diff); err != nil || diff != 0 {
		t.Errorf("the binary COPY differs from the rows in %d rows (%v)", diff, err)
	}
	for _, q := range []string{
		"COPY (SELECT * FROM items ORDER BY id) TO STDOUT",
		"COPY (SELECT count(*) FROM items) TO STDOUT",
	} {
		if _, _, err := copyTo(conn, q); codeOf(err) != "0A000" {
			t.Errorf("%s: %v; want 0A000", q, err)
		}
	}

	// The client's CopyFail: every shard rolls back.
	_, err = conn.PgConn().CopyFrom(ctx, &failingReader{data: []byte("100\ta\t1\n101\tb\t2\n102\tc\t3\n")}, "COPY items FROM STDIN")
	if codeOf(err) != "57014" {
		t.Errorf("COPY that the client failed: %v; want 57014", err)
	}
	if n := ts.shardIDs(t, "SELECT id FROM items WHERE id >= 100"); n != 0 {
		t.Errorf("%d rows of a failed COPY are on the shards", n)
	}

	// A shard's error ends the COPY at once, before the client's data ends: the rest of the
	// data is dropped, no row stays on any shard, and the session goes on.
	var big strings.Builder
	big.WriteString("1\tdup\t1\n") // key 1 exists
	for k := 1000; k < 201000; k++ {
		fmt.Fprintf(&big, "%d\tbig\t1\n", k)
	}
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(big.String()), "COPY items FROM STDIN"); codeOf(err) != "23505" {
		t.Errorf("a COPY with a duplicate key: %v; want 23505", err)
	}
	if n := ts.shardIDs(t, "SELECT id FROM items WHERE id >= 1000"); n != 0 {
		t.Errorf("%d rows of a failed COPY are on the shards", n)
	}
	mustExec(t, conn, "SELECT 1")

	// Inside a transaction block: refused, unless SET SHARD chose the shard.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("110\ta\t1\n"), "COPY items FROM STDIN"); codeOf(err) != "0A000" {
		t.Errorf("COPY inside a transaction block: %v; want 0A000", err)
	}
	tx.Rollback(ctx)
	pinned := connect(t, ts.s)
	mustExec(t, pinned, "SET SHARD TO '1'")
	mustExec(t, pinned, "BEGIN")
	if _, err := pinned.PgConn().CopyFrom(ctx, strings.NewReader("111\ta\t1\n112\tb\t2\n113\tc\t3\n"), "COPY items FROM STDIN"); err != nil {
		t.Errorf("COPY after SET SHARD: %v", err)
	}
	mustExec(t, pinned, "COMMIT")
	// A hint sends the COPY whole to its shard, as pgcat does.
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("114\ta\t1\n115\tb\t2\n"), "/* shard_id: 2 */ COPY items FROM STDIN"); err != nil {
		t.Errorf("COPY with a hint: %v", err)
	}
	for db, want := range map[string]string{ts.dbs[1]: "111,112,113", ts.dbs[2]: "114,115"} {
		c, err := pgx.Connect(ctx, pg.URL(db, appUser, appPass))
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = c.QueryRow(ctx, "SELECT string_agg(id::text, ',' ORDER BY id) FROM items WHERE id > 110").Scan(&got)
		c.Close(ctx)
		if err != nil || got != want {
			t.Errorf("%s holds %q (%v); want %s", db, got, err, want)
		}
	}
	// A table without the key, with cross_shard_writes = "reject": a write with no key.
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("a\n"), "COPY other FROM STDIN"); codeOf(err) != "0A000" {
		t.Errorf("COPY into a table that is not sharded: %v; want 0A000", err)
	}
	// A column list without the key, a COPY FROM a file on the server, data in an encoding
	// whose characters may hold ASCII bytes.
	for _, q := range []string{"COPY items (v, n) FROM STDIN", "COPY items FROM '/tmp/sluice-no-such-file'", "COPY items FROM STDIN (ENCODING 'SJIS')"} {
		if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("a\t1\n"), q); codeOf(err) != "0A000" {
			t.Errorf("%s: %v; want 0A000", q, err)
		}
	}

	// pgx's CopyFrom sends binary COPY data: each row lands on its key's shard.
	var rows [][]any
	for k := int64(200); k < 500; k++ {
		rows = append(rows, []any{k * 7919, fmt.Sprint("b", k), int32(k)})
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "v", "n"}, pgx.CopyFromRows(rows))
	if err != nil || n != 300 {
		t.Fatalf("pgx CopyFrom: %d, %v", n, err)
	}
	if got := ts.shardIDs(t, "SELECT id FROM items WHERE n >= 200"); got != 300 {
		t.Errorf("the shards hold %d of pgx's rows, want 300", got)
	}
}

// TestCopyPsql: psql's \copy, in text and CSV, into and out of three shards: every row lands on
// its key's shard, and \copy ... to gets them all back.
func TestCopyPsql(t *testing.T) {
	ts := startThreeShards(t, "copy_psql", copySchema, "cross_shard_reads = \"all\"\n")
	dir := t.TempDir()
	var text, csv strings.Builder
	for k := 1; k <= 200; k++ {
		fmt.Fprintf(&text, "%d\ttext\\t%d\t%d\n", k, k, k%5)
	}
	csv.WriteString("id,v,n\n")
	for k := 201; k <= 400; k++ {
		fmt.Fprintf(&csv, "%d,\"csv, \"\"%d\"\"\nline\",%d\n", k, k, k%5)
	}
	textFile, csvFile, outFile := filepath.Join(dir, "in.txt"), filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
	for f, s := range map[string]string{textFile: text.String(), csvFile: csv.String()} {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ cmd, out string }{
		{fmt.Sprintf(`\copy items from '%s'`, textFile), "COPY 200"},
		{fmt.Sprintf(`\copy items from '%s' with (format csv, header)`, csvFile), "COPY 200"},
		{fmt.Sprintf(`\copy items to '%s' with (format csv, header)`, outFile), "COPY 400"},
	} {
		stdout, stderr, err := runPsql(t, ts.s, "", "-c", tc.cmd)
		if err != nil || strings.TrimSpace(stdout) != tc.out {
			t.Fatalf("psql %s: %q %q %v", tc.cmd, stdout, stderr, err)
		}
	}
	if n := ts.shardIDs(t, "SELECT id FROM items"); n != 400 {
		t.Errorf("the shards hold %d rows, want 400", n)
	}
	out, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("id,v,n\n")) || bytes.Count(out, []byte("id,v,n\n")) != 1 {
		t.Errorf("\\copy to: the header is not there once:\n%.200s", out)
	}
	// What \copy wrote loads into one database as the same rows.
	if _, err := ts.all.PgConn().CopyFrom(context.Background(), bytes.NewReader(out), "COPY items FROM STDIN (FORMAT csv, HEADER)"); err != nil {
		t.Fatal(err)
	}
	var sum int64
	if err := ts.all.QueryRow(context.Background(), "SELECT sum(id) FROM items WHERE v LIKE 'csv, \"%\"' || chr(10) || 'line' OR v LIKE 'text' || chr(9) || '%'").Scan(&sum); err != nil || sum != 400*401/2 {
		t.Errorf("the rows that went through psql and sluice: sum of ids %d, %v", sum, err)
	}
}
