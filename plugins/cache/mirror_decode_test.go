package cache

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestKeyTextEscapesSoKeysNeverCollide(t *testing.T) {
	for _, c := range []struct {
		vals []cell
		want string
	}{
		{[]cell{{text: "42"}}, "42"},
		{[]cell{{text: "eu"}, {text: "7"}}, "eu:7"},
		{[]cell{{text: "a:b"}}, `a\:b`},
		{[]cell{{text: `a\`}}, `a\\`},
		{[]cell{{text: `\N`}}, `\\N`},
		{[]cell{{null: true}}, `\N`},
		{[]cell{{text: ""}, {text: ""}}, ":"},
		{[]cell{{text: "2024-01-01 10:00:00+00"}, {text: "x"}}, `2024-01-01 10\:00\:00+00:x`},
	} {
		if got := keyText(c.vals); got != c.want {
			t.Errorf("keyText(%v) = %q; want %q", c.vals, got, c.want)
		}
	}
	// Every pair of two-column keys over an alphabet of the special characters encodes apart.
	var words []cell
	for _, s := range []string{"", "a", ":", `\`, "a:", ":a", `\:`, `:\`, "N", `\N`, "::"} {
		words = append(words, cell{text: s})
	}
	words = append(words, cell{null: true})
	seen := map[string][2]cell{}
	for _, a := range words {
		for _, b := range words {
			k := keyText([]cell{a, b})
			if prev, ok := seen[k]; ok {
				t.Fatalf("%v and %v both encode as %q", prev, [2]cell{a, b}, k)
			}
			seen[k] = [2]cell{a, b}
		}
	}
}

// tup builds a pgoutput tuple: "<n>" is NULL, "<u>" an unchanged TOAST value.
func tup(vals ...string) *pglogrepl.TupleData {
	td := &pglogrepl.TupleData{ColumnNum: uint16(len(vals))}
	for _, v := range vals {
		switch v {
		case "<n>":
			td.Columns = append(td.Columns, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull})
		case "<u>":
			td.Columns = append(td.Columns, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast})
		default:
			td.Columns = append(td.Columns, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText,
				Length: uint32(len(v)), Data: []byte(v)})
		}
	}
	return td
}

// change is one pgoutput change for applyChanges.
type change func(tx *txnBuf, t *mirrorTable) error

func ins(vals ...string) change {
	return func(tx *txnBuf, t *mirrorTable) error { return tx.insert(t, tup(vals...)) }
}

// upd is an UPDATE without an old tuple (the key did not change).
func upd(vals ...string) change {
	return func(tx *txnBuf, t *mirrorTable) error {
		return tx.update(t, &pglogrepl.UpdateMessage{NewTuple: tup(vals...)})
	}
}

// updKey is an UPDATE with the old key tuple ('K') or old row ('O').
func updKey(kind byte, old []string, vals ...string) change {
	return func(tx *txnBuf, t *mirrorTable) error {
		return tx.update(t, &pglogrepl.UpdateMessage{OldTupleType: kind, OldTuple: tup(old...), NewTuple: tup(vals...)})
	}
}

func del(old ...string) change {
	return func(tx *txnBuf, t *mirrorTable) error {
		return tx.delete(t, &pglogrepl.DeleteMessage{OldTupleType: 'K', OldTuple: tup(old...)})
	}
}

func trunc() change {
	return func(tx *txnBuf, t *mirrorTable) error { tx.truncate(t); return nil }
}

// docsTable is docs(id int primary key, title text, body text), mirrored whole.
func docsTable(json bool) *mirrorTable {
	return &mirrorTable{mirrorSpec: &mirrorSpec{name: "docs", ns: "m:docs:", json: json},
		keyCols: []string{"id"}, cols: []string{"id", "title", "body"}, keyAt: []int{0}, colAt: []int{0, 1, 2}}
}

func TestMirrorTransactionCommands(t *testing.T) {
	for _, c := range []struct {
		name    string
		json    bool
		changes []change
		pre     map[string]map[int]string // Redis before the transaction: key -> column -> value
		preKeys []string                  // the table's keys in Redis before the transaction
		needs   string                    // what must be read first: "key:col,col key:col"
		want    string                    // the script's operations, one per line
		err     error                     // errMirrorInconsistent, or nil; see errText
		errText string
	}{
		{name: "insert writes the whole hash",
			changes: []change{ins("1", "a", "B")},
			want:    "H m:docs:1 1 3 id 1 title a body B 0"},
		{name: "a NULL is not in a written hash",
			changes: []change{ins("1", "<n>", "B")},
			want:    "H m:docs:1 1 2 id 1 body B 0"},
		{name: "update keeping an unchanged TOAST value in place",
			changes: []change{upd("1", "b", "<u>")},
			want:    "H m:docs:1 0 2 id 1 title b 0"},
		{name: "update to NULL removes the field of a hash updated in place",
			changes: []change{upd("1", "<n>", "<u>")},
			want:    "H m:docs:1 0 1 id 1 1 title"},
		{name: "key change moves the unchanged TOAST value from the old key",
			changes: []change{updKey('K', []string{"1", "<n>", "<n>"}, "2", "b", "<u>")},
			pre:     map[string]map[int]string{"m:docs:1": {2: "OLD"}},
			needs:   "m:docs:1:2",
			want:    "U 1 m:docs:1\nH m:docs:2 1 3 id 2 title b body OLD 0"},
		{name: "key change whose old row Redis lacks",
			changes: []change{updKey('K', []string{"1", "<n>", "<n>"}, "2", "b", "<u>")},
			needs:   "m:docs:1:2",
			err:     errMirrorInconsistent},
		{name: "two key changes in a row take the value from the first key",
			changes: []change{updKey('K', []string{"1", "<n>", "<n>"}, "2", "b", "<u>"),
				updKey('K', []string{"2", "<n>", "<n>"}, "3", "c", "<u>")},
			pre:   map[string]map[int]string{"m:docs:1": {2: "OLD"}},
			needs: "m:docs:1:2",
			want: "U 1 m:docs:1\nH m:docs:2 1 3 id 2 title b body OLD 0\n" +
				"U 1 m:docs:2\nH m:docs:3 1 3 id 3 title c body OLD 0"},
		{name: "a key that moved away and back is written whole",
			changes: []change{updKey('K', []string{"1", "<n>", "<n>"}, "2", "b", "<u>"),
				updKey('K', []string{"2", "<n>", "<n>"}, "1", "c", "<u>")},
			pre:   map[string]map[int]string{"m:docs:1": {2: "OLD"}},
			needs: "m:docs:1:2",
			want: "U 1 m:docs:1\nH m:docs:2 1 3 id 2 title b body OLD 0\n" +
				"U 1 m:docs:2\nH m:docs:1 1 3 id 1 title c body OLD 0"},
		{name: "an update in place after another in place",
			changes: []change{upd("1", "b", "<u>"), upd("1", "<n>", "<u>")},
			want:    "H m:docs:1 0 2 id 1 title b 0\nH m:docs:1 0 1 id 1 1 title"},
		{name: "an update after the row was written whole in the transaction",
			changes: []change{upd("1", "b", "NEW"), upd("1", "c", "<u>")},
			want:    "H m:docs:1 1 3 id 1 title b body NEW 0\nH m:docs:1 1 3 id 1 title c body NEW 0"},
		{name: "REPLICA IDENTITY FULL: the unchanged value comes from the old row",
			changes: []change{updKey('O', []string{"1", "a", "OLD"}, "2", "a", "<u>")},
			want:    "U 1 m:docs:1\nH m:docs:2 1 3 id 2 title a body OLD 0"},
		{name: "a row inserted earlier in the transaction needs no read",
			changes: []change{ins("1", "a", "NEW"), upd("1", "b", "<u>")},
			json:    true,
			want:    `S m:docs:1 {"id":"1","title":"a","body":"NEW"}` + "\n" + `S m:docs:1 {"id":"1","title":"b","body":"NEW"}`},
		{name: "JSON: an unchanged TOAST value is read from the stored row",
			json:    true,
			changes: []change{upd("1", "b", "<u>")},
			pre:     map[string]map[int]string{"m:docs:1": {2: `big "text"`}},
			needs:   "m:docs:1:2",
			want:    `S m:docs:1 {"id":"1","title":"b","body":"big \"text\""}`},
		{name: "JSON: NULL is null",
			json:    true,
			changes: []change{ins("1", "<n>", "x")},
			want:    `S m:docs:1 {"id":"1","title":null,"body":"x"}`},
		{name: "delete unlinks the key",
			changes: []change{del("1", "<n>", "<n>")},
			want:    "U 1 m:docs:1"},
		{name: "truncate unlinks the keys Redis had and those written before it",
			changes: []change{ins("1", "a", "b"), trunc(), ins("2", "c", "d")},
			preKeys: []string{"m:docs:5", "m:docs:6"},
			needs:   "truncate",
			want:    "H m:docs:1 1 3 id 1 title a body b 0\nU 3 m:docs:5 m:docs:6 m:docs:1\nH m:docs:2 1 3 id 2 title c body d 0"},
		{name: "an unchanged TOAST value after the row was deleted in the transaction",
			changes: []change{del("1", "<n>", "<n>"), updKey('K', []string{"1", "<n>", "<n>"}, "2", "b", "<u>")},
			errText: "which this transaction deleted"},
		{name: "an unchanged TOAST value after a truncate",
			json:    true,
			changes: []change{trunc(), upd("1", "b", "<u>")},
			errText: "after a TRUNCATE"},
		{name: "an unchanged key column is read from the old key tuple",
			changes: []change{updKey('K', []string{"1", "<n>", "<n>"}, "<u>", "b", "c")},
			want:    "H m:docs:1 1 3 id 1 title b body c 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tbl := docsTable(c.json)
			tx := newTxnBuf()
			var err error
			for _, ch := range c.changes {
				if err = ch(tx, tbl); err != nil {
					break
				}
			}
			if err == nil {
				rows, truncated := tx.needs()
				var got []string
				for k, n := range rows {
					s := k + ":"
					for i, col := range n.cols {
						if i > 0 {
							s += ","
						}
						s += strconv.Itoa(col)
					}
					got = append(got, s)
				}
				if len(truncated) > 0 {
					got = append(got, "truncate")
				}
				if strings.Join(got, " ") != c.needs {
					t.Errorf("needs %q; want %q", strings.Join(got, " "), c.needs)
				}
				var ops []string
				ops, err = tx.commands(preState{values: c.pre, keys: map[*mirrorTable][]string{tbl: c.preKeys}})
				if err == nil && c.err == nil && c.errText == "" {
					if got := opLines(ops); got != c.want {
						t.Errorf("operations:\n%s\nwant:\n%s", got, c.want)
					}
				}
			}
			switch {
			case c.err != nil && !errors.Is(err, c.err), c.errText != "" && (err == nil || !strings.Contains(err.Error(), c.errText)):
				t.Errorf("error %v; want %v%s", err, c.err, c.errText)
			case c.err == nil && c.errText == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			}
		})
	}
}

// opLines prints the script's operations one per line.
func opLines(args []string) string {
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	var lines []string
	for i := 0; i < len(args); {
		start := i
		switch args[i] {
		case "H":
			n := num(args[i+3])
			i += 4 + 2*n
			i += 1 + num(args[i])
		case "S":
			i += 3
		case "U":
			i += 2 + num(args[i+1])
		default:
			return "bad operation " + args[i]
		}
		lines = append(lines, strings.Join(args[start:i], " "))
	}
	return strings.Join(lines, "\n")
}

func TestMirrorCompositeKey(t *testing.T) {
	lines := &mirrorTable{mirrorSpec: &mirrorSpec{name: "sales.lines", ns: "m:sales.lines:"},
		keyCols: []string{"region", "id"}, cols: []string{"id", "region", "qty"}, keyAt: []int{1, 0}, colAt: []int{0, 1, 2}}
	tx := newTxnBuf()
	if err := tx.insert(lines, tup("7", "eu:west", "3")); err != nil {
		t.Fatal(err)
	}
	if err := tx.update(lines, &pglogrepl.UpdateMessage{OldTupleType: 'K', OldTuple: tup("7", "eu:west", "<n>"), NewTuple: tup("8", `a\b`, "3")}); err != nil {
		t.Fatal(err)
	}
	ops, err := tx.commands(preState{})
	if err != nil {
		t.Fatal(err)
	}
	want := "H m:sales.lines:eu\\:west:7 1 3 id 7 region eu:west qty 3 0\nU 1 m:sales.lines:eu\\:west:7\nH m:sales.lines:a\\\\b:8 1 3 id 8 region a\\b qty 3 0"
	if got := opLines(ops); got != want {
		t.Errorf("operations:\n%s\nwant:\n%s", got, want)
	}
}

func TestJSONRowRoundTrips(t *testing.T) {
	cols := []string{"id", "note", "gone"}
	vals := []cell{{text: "1"}, {text: "<tag> & \"quote\" \\ ünï \n"}, {null: true}}
	s := jsonRow(cols, vals)
	if want := `{"id":"1","note":"<tag> & \"quote\" \\ ünï \n","gone":null}`; s != want {
		t.Errorf("jsonRow = %s; want %s", s, want)
	}
	m, err := jsonColumns(s)
	if err != nil {
		t.Fatal(err)
	}
	if *m["note"] != vals[1].text || m["gone"] != nil {
		t.Errorf("read back %v", m)
	}
}
