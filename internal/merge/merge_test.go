package merge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// null stands for NULL in test rows.
const null = "\\N"

// shardReply builds one shard's reply: a RowDescription of cols ("name:oid"), DataRows of
// rows (values separated by |, \N for NULL), and CommandComplete SELECT n.
func shardReply(cols []string, rows []string) []byte {
	var b []byte
	off := len(b)
	b = append(b, 'T', 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		name, oid, _ := strings.Cut(c, ":")
		n, _ := strconv.Atoi(oid)
		b = append(b, name...)
		b = append(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		b = binary.BigEndian.AppendUint16(b, 0xffff)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
		b = binary.BigEndian.AppendUint16(b, 0)
	}
	binary.BigEndian.PutUint32(b[off+1:], uint32(len(b)-off-1))
	for _, r := range rows {
		var vals [][]byte
		for _, v := range strings.Split(r, "|") {
			if v == null {
				vals = append(vals, nil)
			} else {
				vals = append(vals, []byte(v))
			}
		}
		b = appendDataRow(b, vals)
	}
	return AppendCommandComplete(b, "SELECT "+strconv.Itoa(len(rows)))
}

// readMerged turns merged messages back into column names, rows and the tag.
func readMerged(t *testing.T, b []byte) (names []string, rows []string, tag string) {
	t.Helper()
	r, err := splitReply(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.desc != nil {
		fs, err := parseFields(r.desc)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			names = append(names, f.name)
		}
	}
	for _, m := range r.rows {
		vals, err := rowValues(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, v := range vals {
			if v == nil {
				s = append(s, null)
			} else {
				s = append(s, string(v))
			}
		}
		rows = append(rows, strings.Join(s, "|"))
	}
	return names, rows, string(r.tag)
}

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name      string
		query     string
		wantQuery string   // "" means the query unchanged
		cols      []string // of each shard's reply
		shards    [][]string
		want      []string
		wantCols  []string // visible columns; nil means cols' names
	}{
		{
			name:   "rows are concatenated in shard order",
			query:  "SELECT id, v FROM items",
			cols:   []string{"id:23", "v:25"},
			shards: [][]string{{"1|a", "3|c"}, {"2|b"}},
			want:   []string{"1|a", "3|c", "2|b"},
		},
		{
			name:   "ORDER BY an int column, ascending",
			query:  "SELECT id, v FROM items ORDER BY id",
			cols:   []string{"id:23", "v:25"},
			shards: [][]string{{"1|a", "3|c", "10|j"}, {"2|b", "4|d"}},
			want:   []string{"1|a", "2|b", "3|c", "4|d", "10|j"},
		},
		{
			name:   "ORDER BY DESC puts NULLs first",
			query:  "SELECT id FROM items ORDER BY id DESC",
			cols:   []string{"id:20"},
			shards: [][]string{{null, "3", "1"}, {"-5"}},
			want:   []string{null, "3", "1", "-5"},
		},
		{
			name:   "ORDER BY ASC puts NULLs last; NULLS FIRST moves them",
			query:  "SELECT id FROM items ORDER BY 1 NULLS FIRST",
			cols:   []string{"id:20"},
			shards: [][]string{{null, "1", "3"}, {"2", null}},
			want:   []string{null, null, "1", "2", "3"},
		},
		{
			name:   "ORDER BY an alias, then a second key",
			query:  "SELECT v AS name, id FROM items ORDER BY name DESC, id",
			cols:   []string{"name:25", "id:23"},
			shards: [][]string{{"b|1", "a|2"}, {"b|0", "a|1"}},
			want:   []string{"b|0", "b|1", "a|1", "a|2"},
		},
		{
			name:   "ORDER BY with SELECT * is resolved by column name",
			query:  "SELECT * FROM items ORDER BY v",
			cols:   []string{"id:23", "v:25"},
			shards: [][]string{{"1|b", "2|d"}, {"3|a", "4|c"}},
			want:   []string{"3|a", "1|b", "4|c", "2|d"},
		},
		{
			name:   "numeric, float and text compare by value and bytes",
			query:  "SELECT n, f, t FROM items ORDER BY n, f, t",
			cols:   []string{"n:1700", "f:701", "t:25"},
			shards: [][]string{{"1.50|NaN|b", "10|1e+20|a"}, {"1.5|-Infinity|B", "9.99|2|a"}},
			want:   []string{"1.5|-Infinity|B", "1.50|NaN|b", "9.99|2|a", "10|1e+20|a"},
		},
		{
			name:   "dates and timestamptz in ISO, offsets and BC",
			query:  "SELECT d, ts FROM items ORDER BY ts",
			cols:   []string{"d:1082", "ts:1184"},
			shards: [][]string{{"2024-01-01|2024-01-01 10:00:00+02", "0044-03-15 BC|infinity"}, {"2023-12-31|2024-01-01 09:30:00.5+00"}},
			want:   []string{"2024-01-01|2024-01-01 10:00:00+02", "2023-12-31|2024-01-01 09:30:00.5+00", "0044-03-15 BC|infinity"},
		},
		{
			name:      "LIMIT and OFFSET after the merge; shards get LIMIT limit+offset",
			query:     "SELECT id FROM items ORDER BY id LIMIT 2 OFFSET 1",
			wantQuery: "SELECT id FROM items ORDER BY id LIMIT 3",
			cols:      []string{"id:23"},
			shards:    [][]string{{"1", "4", "5"}, {"2", "3", "6"}},
			want:      []string{"2", "3"},
		},
		{
			name:      "OFFSET past the end",
			query:     "SELECT id FROM items ORDER BY id OFFSET 10",
			wantQuery: "SELECT id FROM items ORDER BY id",
			cols:      []string{"id:23"},
			shards:    [][]string{{"1"}, {"2"}},
			want:      nil,
		},
		{
			name:   "LIMIT without ORDER BY takes any rows",
			query:  "SELECT id FROM items LIMIT 3",
			cols:   []string{"id:23"},
			shards: [][]string{{"1", "2", "3"}, {"4", "5", "6"}},
			want:   []string{"1", "2", "3"},
		},
		{
			name:   "count, sum, min, max without GROUP BY",
			query:  "SELECT count(*), sum(n), min(v), max(v), sum(b) FROM items",
			cols:   []string{"count:20", "sum:1700", "min:25", "max:25", "sum:20"},
			shards: [][]string{{"3|1.5|b|x|10"}, {"2|2.25|a|y|" + null}, {"0|" + null + "|" + null + "|" + null + "|" + null}},
			want:   []string{"5|3.75|a|y|10"},
		},
		{
			name:      "avg over integers from hidden sums and counts",
			query:     "SELECT avg(id) FROM items",
			wantQuery: "SELECT avg(id), pg_catalog.sum(id), pg_catalog.count(id) FROM items",
			cols:      []string{"avg:1700", "sum:20", "count:20"},
			shards:    [][]string{{"2.0000000000000000|6|3"}, {"4.5000000000000000|9|2"}},
			want:      []string{"3.0000000000000000"},
			wantCols:  []string{"avg"},
		},
		{
			name:      "avg over numeric keeps Postgres' division scale",
			query:     "SELECT avg(n) AS a FROM items",
			wantQuery: "SELECT avg(n) AS a, pg_catalog.sum(n), pg_catalog.count(n) FROM items",
			cols:      []string{"a:1700", "sum:1700", "count:20"},
			shards:    [][]string{{"x|1.00|1"}, {"x|1.00|2"}},
			want:      []string{"0.66666666666666666667"},
			wantCols:  []string{"a"},
		},
		{
			name:      "avg over float8",
			query:     "SELECT avg(f) FROM items",
			wantQuery: "SELECT avg(f), pg_catalog.sum(f), pg_catalog.count(f) FROM items",
			cols:      []string{"avg:701", "sum:701", "count:20"},
			shards:    [][]string{{"x|1.5|1"}, {"x|" + null + "|0"}, {"x|3|2"}},
			want:      []string{"1.5"},
			wantCols:  []string{"avg"},
		},
		{
			name:      "avg of no rows is NULL",
			query:     "SELECT avg(id) FROM items",
			wantQuery: "SELECT avg(id), pg_catalog.sum(id), pg_catalog.count(id) FROM items",
			cols:      []string{"avg:1700", "sum:20", "count:20"},
			shards:    [][]string{{null + "|" + null + "|0"}, {null + "|" + null + "|0"}},
			want:      []string{null},
			wantCols:  []string{"avg"},
		},
		{
			name:      "GROUP BY merges groups, ORDER BY and LIMIT after",
			query:     "SELECT v, count(*) AS n, sum(id) FROM items GROUP BY v ORDER BY n DESC, v LIMIT 2",
			wantQuery: "SELECT v, count(*) AS n, sum(id) FROM items GROUP BY v ORDER BY n DESC, v",
			cols:      []string{"v:25", "n:20", "sum:20"},
			shards:    [][]string{{"a|2|3", "b|1|5", null + "|1|7"}, {"b|2|9", "c|1|1"}},
			want:      []string{"b|3|14", "a|2|3"},
		},
		{
			name:   "GROUP BY position",
			query:  "SELECT v, max(id) FROM items GROUP BY 1 ORDER BY 1",
			cols:   []string{"v:25", "max:23"},
			shards: [][]string{{"a|2", "b|10"}, {"a|9", "b|3"}},
			want:   []string{"a|9", "b|10"},
		},
		{
			name:   "GROUP BY without aggregates removes duplicate groups",
			query:  "SELECT v FROM items GROUP BY v ORDER BY v",
			cols:   []string{"v:25"},
			shards: [][]string{{"a", "b"}, {"b", "c"}},
			want:   []string{"a", "b", "c"},
		},
		{
			name:   "sum of float8 prints like Postgres",
			query:  "SELECT sum(f) FROM items",
			cols:   []string{"sum:701"},
			shards: [][]string{{"1e+15"}, {"1"}},
			want:   []string{"1.000000000000001e+15"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPlanner(Options{}).Plan([]byte(tc.query))
			if p.Kind != Select || p.Refused != nil || p.ParseErr != nil {
				t.Fatalf("plan: kind %d, refused %v, parse %v", p.Kind, p.Refused, p.ParseErr)
			}
			wantQ := tc.wantQuery
			if wantQ == "" {
				wantQ = tc.query
			}
			if p.Query != wantQ {
				t.Errorf("query for the shards:\n got %s\nwant %s", p.Query, wantQ)
			}
			var replies [][]byte
			for _, rows := range tc.shards {
				replies = append(replies, shardReply(tc.cols, rows))
			}
			out, err := p.Merge(nil, replies)
			if err != nil {
				t.Fatal(err)
			}
			names, rows, tag := readMerged(t, out)
			wantCols := tc.wantCols
			if wantCols == nil {
				for _, c := range tc.cols {
					n, _, _ := strings.Cut(c, ":")
					wantCols = append(wantCols, n)
				}
			}
			if strings.Join(names, ",") != strings.Join(wantCols, ",") {
				t.Errorf("columns %v, want %v", names, wantCols)
			}
			if strings.Join(rows, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(tc.want, "\n"))
			}
			if want := "SELECT " + strconv.Itoa(len(tc.want)); tag != want {
				t.Errorf("tag %q, want %q", tag, want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		query, construct string
	}{
		{"SELECT DISTINCT v FROM items", "DISTINCT"},
		{"SELECT DISTINCT ON (v) v, id FROM items", "DISTINCT"},
		{"SELECT id, row_number() OVER () FROM items", "window functions"},
		{"SELECT id FROM items WHERE id IN (SELECT max(id) OVER () FROM items)", "window functions"},
		{"SELECT v, count(*) FROM items GROUP BY v HAVING count(*) > 1", "HAVING"},
		{"SELECT string_agg(v, ',') FROM items", "the aggregate string_agg()"},
		{"SELECT count(DISTINCT v) FROM items", "count(DISTINCT ...)"},
		{"SELECT count(*) + 1 FROM items", "an expression over an aggregate (count(*) + 1)"},
		{"SELECT id FROM items ORDER BY v", "ORDER BY an expression that is not in the select list"},
		{"SELECT id FROM items ORDER BY id + 1", "ORDER BY an expression that is not in the select list"},
		{"SELECT id FROM items FOR UPDATE", "FOR UPDATE and FOR SHARE"},
		{"SELECT id FROM a UNION SELECT id FROM b", "UNION, INTERSECT and EXCEPT"},
		{"SELECT count(*) FROM items GROUP BY v", "GROUP BY an expression that is not in the select list"},
		{"SELECT * FROM (SELECT count(*) FROM items) s", "the aggregate count() in a subquery"},
		{"SELECT * FROM items WHERE id > (SELECT avg(id) FROM items)", "the aggregate avg() in a subquery"},
		{"WITH t AS (SELECT id FROM items LIMIT 3) SELECT * FROM t", "LIMIT or OFFSET in a subquery"},
		{"SELECT id FROM items LIMIT (SELECT 1)", "a LIMIT that is not a number"},
		{"SELECT id FROM items ORDER BY id FETCH FIRST 2 ROWS WITH TIES", "FETCH ... WITH TIES"},
		{"SELECT v, count(*) FROM items GROUP BY ROLLUP (v)", "GROUPING SETS, ROLLUP and CUBE"},
		{"SELECT * FROM items GROUP BY id", "SELECT * with GROUP BY or aggregates"},
		{"SELECT count(*), generate_series(1, 2) FROM items", "a set-returning function in the select list of an aggregating query"},
		{"SELECT id INTO t2 FROM items", "SELECT INTO"},
		{"WITH d AS (DELETE FROM items RETURNING id) SELECT * FROM d", "a data-modifying WITH"},
	} {
		p := NewPlanner(Options{}).Plan([]byte(tc.query))
		if p.Kind != Select {
			t.Errorf("%s: kind %d, want Select", tc.query, p.Kind)
			continue
		}
		if p.Refused == nil || p.Refused.Construct != tc.construct {
			t.Errorf("%s: refused %v, want %q", tc.query, p.Refused, tc.construct)
		}
	}
}

func TestAccepted(t *testing.T) {
	for _, q := range []string{
		"SELECT * FROM items WHERE id IN (SELECT item_id FROM orders WHERE orders.item_id = items.id)",
		"SELECT i.id, o.n FROM items i JOIN orders o ON o.item_id = i.id ORDER BY i.id",
		"WITH t AS (SELECT id FROM items WHERE v = 'x') SELECT id FROM t ORDER BY id",
		"SELECT id, v FROM items ORDER BY 2 DESC NULLS LAST LIMIT ALL",
		"SELECT sum(id) FILTER (WHERE v = 'a') FROM items",
		"SELECT id, v, count(*) FROM items GROUP BY id",
	} {
		p := NewPlanner(Options{}).Plan([]byte(q))
		if p.Kind != Select || p.Refused != nil {
			t.Errorf("%s: kind %d, refused %v", q, p.Kind, p.Refused)
		}
	}
}

func TestUnordered(t *testing.T) {
	pl := NewPlanner(Options{})
	for _, tc := range []struct {
		query string
		want  bool
	}{
		{"SELECT * FROM items", true},
		{"SELECT id, v FROM items i JOIN orders o ON o.item_id = i.id WHERE v > 'a'", true},
		{"SELECT id FROM items ORDER BY id", false},
		{"SELECT id FROM items LIMIT 3", false},
		{"SELECT id FROM items OFFSET 3", false},
		{"SELECT count(*) FROM items", false},
		{"SELECT v FROM items GROUP BY v", false},
		{"SELECT DISTINCT v FROM items", false},
		{"UPDATE items SET v = 'x'", false},
	} {
		if got := pl.Plan([]byte(tc.query)).Unordered(); got != tc.want {
			t.Errorf("%s: Unordered() = %v, want %v", tc.query, got, tc.want)
		}
	}
}

func TestKinds(t *testing.T) {
	pl := NewPlanner(Options{MaxLength: 100})
	for _, tc := range []struct {
		query string
		kind  Kind
	}{
		{"UPDATE items SET v = 'x'", DML},
		{"INSERT INTO items VALUES (1)", DML},
		{"CREATE TABLE t (id int)", Utility},
		{"SELECT 1; SELECT 2", Multi},
		{"SELEC 1", Invalid},
		{"SELECT " + strings.Repeat("1+", 100) + "1", Invalid},
	} {
		if got := pl.Plan([]byte(tc.query)).Kind; got != tc.kind {
			t.Errorf("%s: kind %d, want %d", tc.query, got, tc.kind)
		}
	}
	if got := pl.Plan([]byte("SELECT a.x FROM a JOIN b ON true, c")).Tables; strings.Join(got, ",") != "a,b,c" {
		t.Errorf("tables %v", got)
	}
	if !errors.Is(pl.Plan([]byte(strings.Repeat(" ", 200))).ParseErr, ErrTooLong) {
		t.Error("a long text is not refused with ErrTooLong")
	}
}

func TestMergeErrors(t *testing.T) {
	p := NewPlanner(Options{}).Plan([]byte("SELECT d FROM items ORDER BY d"))
	_, err := p.Merge(nil, [][]byte{shardReply([]string{"d:1082"}, []string{"01/02/2024", "01/03/2024"})})
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Errorf("a date in another DateStyle: %v, want an UnsupportedError", err)
	}
	p = NewPlanner(Options{}).Plan([]byte("SELECT j FROM items ORDER BY j"))
	if _, err := p.Merge(nil, [][]byte{shardReply([]string{"j:3802"}, []string{"{}"})}); !errors.As(err, &ue) {
		t.Errorf("ORDER BY a jsonb column: %v, want an UnsupportedError", err)
	}
}

func TestSumTags(t *testing.T) {
	for _, tc := range []struct {
		tags []string
		want string
	}{
		{[]string{"INSERT 0 2", "INSERT 0 3"}, "INSERT 0 5"},
		{[]string{"UPDATE 1", "UPDATE 0"}, "UPDATE 1"},
		{[]string{"CREATE TABLE", "CREATE TABLE"}, "CREATE TABLE"},
	} {
		var tags [][]byte
		for _, s := range tc.tags {
			tags = append(tags, []byte(s))
		}
		if got := SumTags(tags); got != tc.want {
			t.Errorf("SumTags(%v) = %q, want %q", tc.tags, got, tc.want)
		}
	}
}

func TestAvgScale(t *testing.T) {
	// Values checked on Postgres: SELECT 10::numeric / 4, 1::numeric / 3, 123456.789 / 7,
	// 0.0001::numeric / 3.
	for _, tc := range []struct {
		sum   string
		count int64
		want  string
	}{
		{"10", 4, "2.5000000000000000"},
		{"1", 3, "0.33333333333333333333"},
		{"123456.789", 7, "17636.684142857143"},
		{"0.0001", 3, "0.000033333333333333333333"},
		{"-7", 2, "-3.5000000000000000"},
	} {
		d, err := parseDecimal([]byte(tc.sum))
		if err != nil {
			t.Fatal(err)
		}
		q := avgOf(&d, tc.count)
		if got := q.String(); got != tc.want {
			t.Errorf("%s / %d = %s, want %s", tc.sum, tc.count, got, tc.want)
		}
	}
}

func TestCache(t *testing.T) {
	pl := NewPlanner(Options{CacheSize: 3})
	for i := range 10 {
		pl.Plan([]byte("SELECT " + strconv.Itoa(i)))
	}
	if n := pl.cache.Len(); n != 3 {
		t.Errorf("cache holds %d plans, want 3", n)
	}
	a := pl.Plan([]byte("SELECT 9"))
	if b := pl.Plan([]byte("SELECT 9")); a != b {
		t.Error("a cached plan was planned again")
	}
}

// binReply builds one shard's reply with every column in binary format: cols are "name:oid",
// rows are values already encoded (nil for NULL).
func binReply(cols []string, rows [][][]byte) []byte {
	var b []byte
	b = append(b, 'T', 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		name, oid, _ := strings.Cut(c, ":")
		n, _ := strconv.Atoi(oid)
		b = append(b, name...)
		b = append(b, 0, 0, 0, 0, 0, 0, 0)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	for _, r := range rows {
		b = appendDataRow(b, r)
	}
	return AppendCommandComplete(b, "SELECT "+strconv.Itoa(len(rows)))
}

func i4(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func i8(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
func f8(v float64) []byte {
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(v))
}
func num(t *testing.T, s string) []byte {
	t.Helper()
	d, err := parseDecimal([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return appendNumeric(nil, &d)
}

// TestNumericBinary: numeric values survive the binary format both ways.
func TestNumericBinary(t *testing.T) {
	for _, s := range []string{"0", "0.00", "1", "-1.5", "12345.678", "0.0001", "10000", "100000000",
		"-0.000000000000000000012", "99999999.99990000", "3.0000000000000000", "NaN", "Infinity", "-Infinity"} {
		d, err := parseDecimal([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		b := appendNumeric(nil, &d)
		back, err := decodeNumeric(b)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if back.String() != s {
			t.Errorf("%s: round trip gives %s (% x)", s, back.String(), b)
		}
	}
}

// TestNumericBinaryBytes: the bytes of a few values are numeric_send's (read from Postgres 15
// with SELECT numeric_send(x)).
func TestNumericBinaryBytes(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []uint16 // ndigits, weight, sign, dscale, digits...
	}{
		{"0", []uint16{0, 0, 0, 0}},
		{"0.00", []uint16{0, 0, 0, 2}},
		{"1", []uint16{1, 0, 0, 0, 1}},
		{"-1.5", []uint16{2, 0, 0x4000, 1, 1, 5000}},
		{"12345.678", []uint16{3, 1, 0, 3, 1, 2345, 6780}},
		{"0.5", []uint16{1, 0xffff, 0, 1, 5000}},
		{"10000", []uint16{1, 1, 0, 0, 1}},
		{"0.0001", []uint16{1, 0xffff, 0, 4, 1}},
		{"NaN", []uint16{0, 0, 0xC000, 0}},
	} {
		var want []byte
		for _, w := range tc.want {
			want = binary.BigEndian.AppendUint16(want, w)
		}
		if got := num(t, tc.text); string(got) != string(want) {
			t.Errorf("%s: % x, want % x", tc.text, got, want)
		}
	}
}

// TestMergeBinary: results in binary format are ordered and aggregated by their decoded
// values, and merged aggregates are written back in binary.
func TestMergeBinary(t *testing.T) {
	pl := NewPlanner(Options{})
	p := pl.Plan([]byte("SELECT id, n, f FROM items ORDER BY n DESC, f, id"))
	out, err := p.Merge(nil, [][]byte{
		binReply([]string{"id:23", "n:1700", "f:701"}, [][][]byte{{i4(1), num(t, "10.5"), f8(2)}, {i4(2), num(t, "-3"), f8(1)}}),
		binReply([]string{"id:23", "n:1700", "f:701"}, [][][]byte{{i4(3), num(t, "10.50"), f8(1)}, {i4(-4), nil, f8(math.NaN())}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := splitReply(out)
	var ids []int64
	for _, m := range r.rows {
		vals, _ := rowValues(nil, m)
		id, _ := binaryInt(vals[0])
		ids = append(ids, id)
	}
	if fmt.Sprint(ids) != "[-4 3 1 2]" {
		t.Errorf("order by binary numeric DESC (NULLs first), float8: ids %v, want [-4 3 1 2]", ids)
	}

	p = pl.Plan([]byte("SELECT grp, count(*), sum(id), sum(n), avg(n), avg(f), min(d), max(ts) FROM items GROUP BY grp ORDER BY grp"))
	cols := []string{"grp:23", "count:20", "sum:20", "sum:1700", "avg:1700", "avg:701", "min:1082", "max:1114", "sum:1700", "count:20", "sum:701", "count:20"}
	out, err = p.Merge(nil, [][]byte{
		binReply(cols, [][][]byte{
			{i4(1), i8(2), i8(5), num(t, "1.25"), num(t, "0.625"), f8(1.5), i4(-10), i8(100), num(t, "1.25"), i8(2), f8(3), i8(2)},
			{i4(2), i8(1), i8(7), nil, nil, nil, i4(3), i8(-5), nil, i8(0), nil, i8(0)},
		}),
		binReply(cols, [][][]byte{
			{i4(1), i8(1), i8(-1), num(t, "0.5"), num(t, "0.5"), f8(2), i4(-20), i8(50), num(t, "0.5"), i8(1), f8(2), i8(1)},
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	r, _ = splitReply(out)
	if len(r.rows) != 2 {
		t.Fatalf("%d groups, want 2", len(r.rows))
	}
	vals, _ := rowValues(nil, r.rows[0])
	if len(vals) != 8 {
		t.Fatalf("%d columns, want 8 (the hidden ones dropped)", len(vals))
	}
	count, _ := binaryInt(vals[1])
	sum, _ := binaryInt(vals[2])
	sumN, _ := decodeNumeric(vals[3])
	avgN, _ := decodeNumeric(vals[4])
	avgF, _ := binaryFloat(vals[5])
	minD, _ := binaryInt(vals[6])
	maxTS, _ := binaryInt(vals[7])
	got := fmt.Sprintf("%d %d %s %s %v %d %d", count, sum, sumN.String(), avgN.String(), avgF, minD, maxTS)
	if want := "3 4 1.75 0.58333333333333333333 1.6666666666666667 -20 100"; got != want {
		t.Errorf("group 1: %s, want %s", got, want)
	}
	vals, _ = rowValues(nil, r.rows[1])
	if vals[3] != nil || vals[4] != nil || vals[5] != nil {
		t.Errorf("group 2: sum and avg of no values are %v %v %v, want NULL", vals[3], vals[4], vals[5])
	}

	p = pl.Plan([]byte("SELECT j FROM items ORDER BY j"))
	_, err = p.Merge(nil, [][]byte{binReply([]string{"j:3802"}, [][][]byte{{[]byte("\x01{}")}})})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(ue.Reason, "text format") {
		t.Errorf("ORDER BY a binary jsonb column: %v, want an UnsupportedError that suggests text format", err)
	}
}

// TestLimitParams: a LIMIT or OFFSET given by a parameter is applied after the merge with the
// Bind's value; the shards' text keeps every parameter.
func TestLimitParams(t *testing.T) {
	pl := NewPlanner(Options{})
	for _, tc := range []struct {
		query, shardQuery string
		vals              []string // \N for NULL, all text
		rows              string   // merged ids of shards {1,3,5} and {2,4,6}
		code              string   // a refusal's SQLSTATE
	}{
		{"SELECT id FROM items ORDER BY id LIMIT $1", "SELECT id FROM items ORDER BY id LIMIT $1", []string{"2"}, "1,2", ""},
		{"SELECT id FROM items ORDER BY id LIMIT $1", "", []string{null}, "1,2,3,4,5,6", ""},
		{"SELECT id FROM items ORDER BY id LIMIT $1 OFFSET $2", "SELECT id FROM items ORDER BY id LIMIT $1::int8 + $2::int8", []string{"2", "3"}, "4,5", ""},
		{"SELECT id FROM items ORDER BY id LIMIT 2 OFFSET $1", "SELECT id FROM items ORDER BY id LIMIT 2 + $1::int8", []string{"1"}, "2,3", ""},
		{"SELECT id FROM items ORDER BY id OFFSET $1", "SELECT id FROM items ORDER BY id OFFSET $1::int8 * 0", []string{"4"}, "5,6", ""},
		{"SELECT id FROM items WHERE id > $2 ORDER BY id LIMIT $1", "", []string{"3", "0"}, "1,2,3", ""},
		{"SELECT id FROM items ORDER BY id OFFSET $1", "", []string{"-1"}, "", "2201X"},
		{"SELECT id FROM items ORDER BY id LIMIT $1 OFFSET 1", "", []string{"-1"}, "", "2201W"},
		{"SELECT count(*) FROM items LIMIT $1 OFFSET $2", "SELECT count(*) FROM items LIMIT NULLIF($1::int8, $1::int8) OFFSET $2::int8 * 0", []string{"1", "0"}, "", ""},
	} {
		p := pl.Plan([]byte(tc.query))
		if p.Refused != nil {
			t.Errorf("%s: refused: %v", tc.query, p.Refused)
			continue
		}
		if tc.shardQuery != "" && p.Query != tc.shardQuery {
			t.Errorf("%s: the shards run\n%s\nwant\n%s", tc.query, p.Query, tc.shardQuery)
		}
		if p.Unordered() {
			t.Errorf("%s: Unordered", tc.query)
		}
		var vals [][]byte
		for _, v := range tc.vals {
			if v == null {
				vals = append(vals, nil)
			} else {
				vals = append(vals, []byte(v))
			}
		}
		bp, err := p.Bind(vals, make([]bool, len(vals)))
		var ve *ValueError
		if tc.code != "" {
			if !errors.As(err, &ve) || ve.Code != tc.code {
				t.Errorf("%s %v: %v, want %s", tc.query, tc.vals, err, tc.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %v: %v", tc.query, tc.vals, err)
			continue
		}
		if tc.rows == "" {
			continue
		}
		out, err := bp.Merge(nil, [][]byte{shardReply([]string{"id:23"}, []string{"1", "3", "5"}), shardReply([]string{"id:23"}, []string{"2", "4", "6"})})
		if err != nil {
			t.Fatal(err)
		}
		_, rows, _ := readMerged(t, out)
		if got := strings.Join(rows, ","); got != tc.rows {
			t.Errorf("%s %v: rows %s, want %s", tc.query, tc.vals, got, tc.rows)
		}
	}
	// Binary parameters: int8 and int4.
	p := pl.Plan([]byte("SELECT id FROM items ORDER BY id LIMIT $1 OFFSET $2"))
	bp, err := p.Bind([][]byte{i8(1), i4(2)}, []bool{true, true})
	if err != nil || bp.limit != 1 || bp.offset != 2 {
		t.Errorf("binary LIMIT and OFFSET: %+v, %v", bp, err)
	}
}
