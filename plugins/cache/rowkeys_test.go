package cache

import (
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/sluicepg/sluice/plugin"
)

// rowCatalog is a catalog of tables of every kind the row-level rules tell apart.
func rowCatalog() *catalog {
	c := &catalog{ident: "sys/app", rels: map[relName]*rel{}, byOID: map[uint32]*rel{}, byName: map[string][]*rel{},
		funcs: map[string]funcInfo{"abs": {immutable: true, builtin: true}, "nextval": {builtin: true},
			"bump_other": {}}, qfuncs: map[funcName]funcInfo{}, defaultPath: true}
	add := func(r *rel) {
		r.schema = "public"
		if r.kind == 0 {
			r.kind = 'r'
		}
		c.rels[relName{r.schema, r.name}] = r
		c.byOID[r.oid] = r
		c.byName[r.name] = append(c.byName[r.name], r)
	}
	add(&rel{oid: 100, name: "accounts", pkCol: "aid", pkType: pkInt4})
	add(&rel{oid: 101, name: "users", pkCol: "id", pkType: pkUUID})
	add(&rel{oid: 102, name: "tags", pkCol: "name", pkType: pkText})
	add(&rel{oid: 103, name: "codes", pkCol: "code", pkType: pkVarchar})
	add(&rel{oid: 104, name: "small", pkCol: "s", pkType: pkInt2})
	add(&rel{oid: 105, name: "big", pkCol: "id", pkType: pkInt8})
	add(&rel{oid: 106, name: "trig", pkCol: "id", pkType: pkInt4, triggers: true})
	add(&rel{oid: 107, name: "ruled", pkCol: "id", pkType: pkInt4, rules: true})
	add(&rel{oid: 108, name: "selfref", pkCol: "id", pkType: pkInt4, cascades: []uint32{108}})
	add(&rel{oid: 109, name: "parent", pkCol: "id", pkType: pkInt4, cascades: []uint32{110}})
	add(&rel{oid: 110, name: "child", pkCol: "id", pkType: pkInt4})
	add(&rel{oid: 111, name: "part", kind: 'p', pkCol: "id", pkType: pkInt4, children: []uint32{112}})
	add(&rel{oid: 112, name: "part_1", pkCol: "id", pkType: pkInt4, parents: []uint32{111}})
	add(&rel{oid: 113, name: "nopk"})
	add(&rel{oid: 114, name: "v", kind: 'v', viewBase: []uint32{100}})
	return c
}

// pointKeys is what eligible decides for a point read, without the session and the store: the
// keys, or nil when text is not a point read of a table that may have one.
func pointKeys(a *analyzer, c *catalog, text string, params []plugin.Param) []string {
	an := a.analyze(text)
	if an.why != "" || an.point == nil {
		return nil
	}
	r, why := c.resolveRead(an.reads[0], "alice")
	if why != "" || !r.pointTable() {
		return nil
	}
	pd := pointRead(r, an.point, &plugin.Query{Text: text, Params: params})
	if pd == nil {
		return nil
	}
	return pd.keys
}

func textParams(vs ...string) []plugin.Param {
	ps := make([]plugin.Param, len(vs))
	for i, v := range vs {
		ps[i] = plugin.Param{Value: []byte(v)}
	}
	return ps
}

func inList(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = strconv.Itoa(i + 1)
	}
	return strings.Join(s, ", ")
}

// TestPointReadDetection: which SELECTs are point reads, and the canonical keys they name.
func TestPointReadDetection(t *testing.T) {
	a, c := newAnalyzer(1000), rowCatalog()
	uuid := "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
	raw, _ := hex.DecodeString(strings.ReplaceAll(uuid, "-", ""))
	sixteen := make([]string, 16)
	for i := range sixteen {
		sixteen[i] = strconv.Itoa(i + 1)
	}
	slices.Sort(sixteen)
	for _, tc := range []struct {
		text   string
		params []plugin.Param
		want   []string // nil: not a point read
	}{
		{text: "SELECT * FROM accounts WHERE aid = 42", want: []string{"42"}},
		{text: "/* sluice:cache ttl=5s */ SELECT * FROM accounts WHERE aid IN (42, -7)", want: []string{"-7", "42"}},
		{text: "/* sluice:cache ttl=5s */ SELECT * FROM big WHERE id = -9223372036854775808", want: []string{"-9223372036854775808"}},
		{text: "/* sluice:cache ttl=5s */ SELECT * FROM accounts WHERE aid = 42.0"},
		{text: "/* sluice:cache ttl=5s */ SELECT * FROM accounts WHERE aid = 1e3"},
		{text: "SELECT abalance FROM accounts WHERE 42 = aid", want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid IN (3, 1, 2, 3)", want: []string{"1", "2", "3"}},
		{text: "SELECT * FROM accounts WHERE aid = 42 AND abalance > 0", want: []string{"42"}},
		{text: "SELECT * FROM accounts a WHERE a.aid = -7", want: []string{"-7"}},
		{text: "SELECT * FROM public.accounts WHERE accounts.aid = 1", want: []string{"1"}},
		{text: "SELECT * FROM accounts WHERE aid = ' 42'", want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid = '0042'", want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid = '+42 '", want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid = '42'::integer", want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: textParams("42"), want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid = $1::int4", params: textParams(" 7 "), want: []string{"7"}},
		{text: "SELECT * FROM accounts WHERE aid IN (" + inList(16) + ")", want: sixteen},
		{text: "SELECT count(*) FROM accounts WHERE aid = 1 GROUP BY abalance", want: []string{"1"}},
		{text: "SELECT * FROM accounts WHERE aid IN (" + inList(17) + ")"},
		{text: "SELECT * FROM accounts WHERE aid = 42.0"},
		{text: "SELECT * FROM accounts WHERE aid = 1e3"},
		{text: "SELECT * FROM accounts WHERE aid = 0x2A"},
		{text: "SELECT * FROM accounts WHERE aid = '4 2'"},
		{text: "SELECT * FROM accounts WHERE aid = '0x2A'"},
		{text: "SELECT * FROM accounts WHERE aid = 42::int8"},
		{text: "SELECT * FROM accounts WHERE aid = 3000000000"},
		{text: "SELECT * FROM accounts WHERE aid = NULL"},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: []plugin.Param{{Value: nil}}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: []plugin.Param{{Value: []byte{0, 0, 0, 42}, Binary: true}}, want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: []plugin.Param{{Value: []byte{255, 255, 255, 254}, Binary: true, Type: 23}}, want: []string{"-2"}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: []plugin.Param{{Value: []byte{0, 0, 0, 0, 0, 0, 0, 42}, Binary: true, Type: 20}}, want: []string{"42"}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: []plugin.Param{{Value: []byte{0, 0, 0, 1, 0, 0, 0, 0}, Binary: true, Type: 20}}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: []plugin.Param{{Value: []byte{0, 0, 0, 0, 0, 0, 0, 42}, Binary: true}}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: []plugin.Param{{Value: []byte{0x42, 0x28, 0, 0}, Binary: true, Type: 700}}},
		{text: "SELECT * FROM big WHERE id = $1", params: []plugin.Param{{Value: []byte{0x40, 0x45, 0, 0, 0, 0, 0, 0}, Binary: true, Type: 701}}},
		{text: "SELECT * FROM tags WHERE name = $1", params: []plugin.Param{{Value: []byte("go"), Binary: true}}, want: []string{"go"}},
		{text: "SELECT * FROM accounts WHERE aid = $1", params: textParams("42.5")},
		{text: "SELECT * FROM accounts WHERE aid = $2", params: textParams("1")},
		{text: "SELECT * FROM accounts WHERE aid = 1 OR aid = 2"},
		{text: "SELECT * FROM accounts WHERE NOT aid = 1"},
		{text: "SELECT * FROM accounts WHERE aid <> 1"},
		{text: "SELECT * FROM accounts WHERE aid = ANY('{1,2}')"},
		{text: "SELECT * FROM accounts WHERE abalance = 5"},
		{text: "SELECT * FROM accounts WHERE aid::text = '5'"},
		{text: "SELECT * FROM accounts a JOIN accounts b ON a.aid = b.aid WHERE a.aid = 1"},
		{text: "SELECT * FROM accounts, users WHERE aid = 1"},
		{text: "SELECT * FROM accounts WHERE aid = 1 AND abalance > (SELECT 0)"},
		{text: "SELECT *, (SELECT 1) FROM accounts WHERE aid = 1"},
		{text: "SELECT * FROM accounts WHERE aid = 1 AND EXISTS (SELECT 1 FROM users)"},
		{text: "WITH x AS (SELECT 1) SELECT * FROM accounts WHERE aid = 1"},
		{text: "SELECT * FROM accounts WHERE aid = 1 UNION SELECT * FROM accounts WHERE aid = 2"},
		{text: "SELECT * FROM (SELECT * FROM accounts) s WHERE aid = 1"},
		{text: "SELECT * FROM users WHERE id = '" + uuid + "'", want: []string{uuid}},
		{text: "SELECT * FROM users WHERE id = '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}'", want: []string{uuid}},
		{text: "SELECT * FROM users WHERE id = 'A0EEBC999C0B4EF8BB6D6BB9BD380A11'", want: []string{uuid}},
		{text: "SELECT * FROM users WHERE id = 'a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11'::uuid", want: []string{uuid}},
		{text: "SELECT * FROM users WHERE id = $1", params: []plugin.Param{{Value: raw, Binary: true}}, want: []string{uuid}},
		{text: "SELECT * FROM users WHERE id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1'"},
		{text: "SELECT * FROM users WHERE id = ' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"},
		{text: "SELECT * FROM users WHERE id = 'a0eeb-c999c0b4ef8bb6d6bb9bd380a11'"},
		{text: "SELECT * FROM tags WHERE name = 'go'", want: []string{"go"}},
		{text: "SELECT * FROM tags WHERE name = ' go'", want: []string{" go"}},
		{text: "SELECT * FROM tags WHERE name = E'a\\\\b'"},
		{text: "SELECT * FROM tags WHERE name = 'café'"},
		{text: "SELECT * FROM tags WHERE name = 42"},
		{text: "SELECT * FROM codes WHERE code = 'x'::varchar", want: []string{"x"}},
		{text: "SELECT * FROM codes WHERE code = 'xy'::varchar(1)"},
		{text: "SELECT * FROM codes WHERE code = 'x'::text"},
		{text: "SELECT * FROM small WHERE s = 40000"},
		{text: "SELECT * FROM small WHERE s = -32768", want: []string{"-32768"}},
		{text: "SELECT * FROM big WHERE id = 9223372036854775807", want: []string{"9223372036854775807"}},
		{text: "SELECT * FROM big WHERE id = 9223372036854775808"},
		{text: "SELECT * FROM part WHERE id = 1"},
		{text: "SELECT * FROM part_1 WHERE id = 1"},
		{text: "SELECT * FROM v WHERE aid = 1"},
		{text: "SELECT * FROM nopk WHERE id = 1"},
	} {
		got := pointKeys(a, c, tc.text, tc.params)
		if !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%q %v: keys %q, want %q", tc.text, tc.params, got, tc.want)
		}
	}
}

// TestPointReadSharedShape: texts that share an analysis (they differ in their numbers only)
// each name their own keys, and a later text of the shape whose number is no integer names none.
func TestPointReadSharedShape(t *testing.T) {
	a, c := newAnalyzer(100), rowCatalog()
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"SELECT * FROM accounts WHERE aid = 1 AND abalance > 'x'", []string{"1"}},
		{"SELECT * FROM accounts WHERE aid = 2 AND abalance > 'x'", []string{"2"}},
		{"SELECT * FROM accounts WHERE aid = 2.5 AND abalance > 'x'", nil},
		{"SELECT * FROM accounts WHERE aid = 30 AND abalance > 'x'", []string{"30"}},
		{"SELECT * FROM accounts WHERE abalance > 7 AND aid IN (5, 6)", []string{"5", "6"}},
		{"SELECT * FROM accounts WHERE abalance > 1.5 AND aid IN (8, 9)", []string{"8", "9"}},
	} {
		if got := pointKeys(a, c, tc.text, nil); !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%q: keys %q, want %q", tc.text, got, tc.want)
		}
	}
}

// TestPinnedWriteDetection: which writes are pinned to keys, and what the others bump.
func TestPinnedWriteDetection(t *testing.T) {
	p := &Cache{CatalogRefresh: Duration(time.Hour), catalogs: map[string]*dbCatalog{}}
	dc := &dbCatalog{}
	dc.cat.Store(rowCatalog())
	dc.loadedAt.Store(time.Now().UnixNano())
	p.catalogs["app"] = dc
	a := newAnalyzer(1000)
	const upsert = "INSERT INTO accounts (aid, abalance) VALUES (1, 0) ON CONFLICT "
	for _, tc := range []struct {
		text   string
		params []plugin.Param
		pins   map[uint32][]string
		tables []uint32
		epoch  bool
	}{
		{text: "UPDATE accounts SET abalance = abalance + 1 WHERE aid = 5", pins: map[uint32][]string{100: {"5"}}},
		{text: "/* app */ UPDATE accounts SET abalance = 1 WHERE aid = 6", pins: map[uint32][]string{100: {"6"}}},
		{text: "UPDATE accounts SET abalance = 1 WHERE aid IN (2, 1) AND abalance > 0", pins: map[uint32][]string{100: {"1", "2"}}},
		{text: "UPDATE accounts a SET abalance = 1 WHERE a.aid = '0042'", pins: map[uint32][]string{100: {"42"}}},
		{text: "UPDATE accounts SET abalance = (SELECT 1) WHERE aid = 3", pins: map[uint32][]string{100: {"3"}}},
		{text: "UPDATE accounts SET abalance = abs(-1) WHERE aid = $1", params: textParams("9"), pins: map[uint32][]string{100: {"9"}}},
		{text: "DELETE FROM accounts WHERE aid = $1", params: textParams("9"), pins: map[uint32][]string{100: {"9"}}},
		{text: "DELETE FROM accounts WHERE aid IN (" + inList(64) + ")", pins: map[uint32][]string{100: nil}},
		{text: "INSERT INTO accounts (aid, abalance) VALUES (2, 0), (1, 0)", pins: map[uint32][]string{100: {"1", "2"}}},
		{text: "INSERT INTO accounts (abalance, aid) VALUES (0, $1)", params: textParams("3"), pins: map[uint32][]string{100: {"3"}}},
		{text: upsert + "(aid) DO UPDATE SET abalance = 1", pins: map[uint32][]string{100: {"1"}}},
		{text: upsert + "(aid) DO NOTHING", pins: map[uint32][]string{100: {"1"}}},
		{text: "DELETE FROM parent WHERE id = 1", pins: map[uint32][]string{109: {"1"}}, tables: []uint32{110}},
		{text: "UPDATE accounts SET aid = 6 WHERE aid = 5", tables: []uint32{100}},
		{text: "UPDATE accounts SET (abalance, aid) = (1, 6) WHERE aid = 5", tables: []uint32{100}},
		{text: "UPDATE accounts SET abalance = 0 WHERE abalance > 5", tables: []uint32{100}},
		{text: "UPDATE accounts SET abalance = 0 WHERE aid = 5 OR aid = 6", tables: []uint32{100}},
		{text: "UPDATE accounts SET abalance = 0 WHERE aid = 5.0", tables: []uint32{100}},
		{text: "UPDATE accounts SET abalance = 0 WHERE aid = NULL", tables: []uint32{100}},
		{text: "UPDATE accounts a SET abalance = 0 FROM users u WHERE a.aid = 5", tables: []uint32{100}},
		{text: "UPDATE accounts SET abalance = bump_other() WHERE aid = 5", tables: []uint32{100}},
		{text: "UPDATE accounts SET abalance = 0 WHERE aid = 1; UPDATE accounts SET abalance = 0 WHERE aid = 2", tables: []uint32{100}},
		{text: "WITH d AS (DELETE FROM accounts RETURNING 1) UPDATE accounts SET abalance = 0 WHERE aid = 1", tables: []uint32{100}},
		{text: "DELETE FROM accounts USING users WHERE aid = 1", tables: []uint32{100}},
		{text: "DELETE FROM accounts WHERE aid IN (" + inList(65) + ")", tables: []uint32{100}},
		{text: "INSERT INTO accounts (abalance) VALUES (0)", tables: []uint32{100}},
		{text: "INSERT INTO accounts VALUES (1, 0)", tables: []uint32{100}},
		{text: "INSERT INTO accounts (aid, abalance) VALUES (DEFAULT, 0)", tables: []uint32{100}},
		{text: "INSERT INTO accounts (aid, abalance) VALUES (1 + 1, 0)", tables: []uint32{100}},
		{text: "INSERT INTO accounts (aid, abalance) SELECT 1, 0", tables: []uint32{100}},
		{text: upsert + "(abalance) DO NOTHING", tables: []uint32{100}},
		{text: upsert + "DO NOTHING", tables: []uint32{100}},
		{text: upsert + "ON CONSTRAINT accounts_pkey DO NOTHING", tables: []uint32{100}},
		{text: upsert + "(aid) DO UPDATE SET aid = 2", tables: []uint32{100}},
		{text: "MERGE INTO accounts t USING users s ON t.aid = 1 WHEN MATCHED THEN DELETE", tables: []uint32{100}},
		{text: "TRUNCATE accounts", tables: []uint32{100}},
		{text: "COPY accounts FROM STDIN", tables: []uint32{100}},
		{text: "UPDATE ruled SET x = 1 WHERE id = 1", tables: []uint32{107}},
		{text: "DELETE FROM selfref WHERE id = 1", tables: []uint32{108}},
		{text: "UPDATE v SET abalance = 1 WHERE aid = 1", tables: []uint32{100, 114}},
		{text: "UPDATE nopk SET x = 1 WHERE id = 1", tables: []uint32{113}},
		{text: "UPDATE part SET x = 1 WHERE id = 1", tables: []uint32{111}},
		{text: "UPDATE trig SET x = 1 WHERE id = 1", tables: []uint32{106}, epoch: true},
	} {
		an := a.analyze(tc.text)
		w := p.writes(&plugin.Query{Client: &plugin.Client{Database: "app", User: "alice"}, Text: tc.text, Params: tc.params}, an)
		var tables []uint32
		for o := range w.oids {
			tables = append(tables, o)
		}
		slices.Sort(tables)
		if !slices.Equal(tables, tc.tables) || w.epoch != tc.epoch {
			t.Errorf("%q: tables %v epoch %v, want %v %v", tc.text, tables, w.epoch, tc.tables, tc.epoch)
		}
		if len(w.pins) != len(tc.pins) {
			t.Errorf("%q: pins %v, want %v", tc.text, w.pins, tc.pins)
			continue
		}
		for o, want := range tc.pins {
			got := sortedKeys(slices.Clone(w.pins[o]))
			if want == nil && len(got) > 0 {
				continue // many keys: pinned, the count is what matters
			}
			if !slices.Equal(got, want) {
				t.Errorf("%q: pins of %d %q, want %q", tc.text, o, got, want)
			}
		}
	}
}

// TestWriteSetPins: a transaction's pins accumulate, a table written unpinned counts as a
// whole, and so does one with more than maxPinnedKeys keys.
func TestWriteSetPins(t *testing.T) {
	keys := func(from, n int) []string {
		var ks []string
		for i := from; i < from+n; i++ {
			ks = append(ks, strconv.Itoa(i))
		}
		return ks
	}
	pinned := func(oid uint32, ks []string) writeSet {
		return writeSet{ident: "x", pins: map[uint32][]string{oid: ks}}
	}
	table := func(oid uint32) writeSet { return writeSet{ident: "x", oids: map[uint32]bool{oid: true}} }
	for _, tc := range []struct {
		name      string
		sets      []writeSet
		wantPins  int // keys of table 1
		wantTable bool
	}{
		{"pins add up", []writeSet{pinned(1, keys(0, 2)), pinned(1, keys(2, 3))}, 5, false},
		{"repeated keys count once", []writeSet{pinned(1, keys(0, 40)), pinned(1, keys(0, 40))}, 40, false},
		{"pinned then unpinned", []writeSet{pinned(1, keys(0, 2)), table(1)}, 0, true},
		{"unpinned then pinned", []writeSet{table(1), pinned(1, keys(0, 2))}, 0, true},
		{"64 keys", []writeSet{pinned(1, keys(0, 32)), pinned(1, keys(32, 32))}, 64, false},
		{"65 keys", []writeSet{pinned(1, keys(0, 32)), pinned(1, keys(32, 33))}, 0, true},
	} {
		var w writeSet
		for _, s := range tc.sets {
			w.add(s)
		}
		if got := len(sortedKeys(w.pins[1])); got != tc.wantPins || w.oids[1] != tc.wantTable || w.empty() {
			t.Errorf("%s: %d keys, table %v, want %d %v", tc.name, got, w.oids[1], tc.wantPins, tc.wantTable)
		}
	}
}

// TestWALKeysMatchQueryKeys: a value seen in the WAL (as pgoutput sends it) names the same row
// counter as the same value written in a query, for each type of key.
func TestWALKeysMatchQueryKeys(t *testing.T) {
	a, c := newAnalyzer(100), rowCatalog()
	for _, tc := range []struct {
		typ   uint32 // the column's type, in the RelationMessage
		wal   string // pgoutput's text
		query string
	}{
		{23, "42", "SELECT * FROM accounts WHERE aid = '0042'"},
		{23, "-7", "SELECT * FROM accounts WHERE aid = -7"},
		{21, "12", "SELECT * FROM small WHERE s = ' 12 '"},
		{20, "9223372036854775807", "SELECT * FROM big WHERE id = 9223372036854775807"},
		{2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "SELECT * FROM users WHERE id = '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}'"},
		{25, "go", "SELECT * FROM tags WHERE name = 'go'"},
		{1043, "x y", "SELECT * FROM codes WHERE code = 'x y'"},
	} {
		rm := &pglogrepl.RelationMessage{RelationID: 1, ReplicaIdentity: 'd', Columns: []*pglogrepl.RelationMessageColumn{
			{Name: "other", DataType: 25}, {Name: "k", DataType: tc.typ, Flags: 1}}}
		changed, pins := map[uint32]bool{}, map[uint32][]string{}
		tuple := &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
			{DataType: pglogrepl.TupleDataTypeText, Data: []byte("v")}, {DataType: pglogrepl.TupleDataTypeText, Data: []byte(tc.wal)}}}
		walPin(changed, pins, 1, map[uint32]walKeyCol{1: walKeyColOf(rm)}, tuple)
		q := pointKeys(a, c, tc.query, nil)
		if len(changed) != 0 || len(pins[1]) != 1 || len(q) != 1 || pins[1][0] != q[0] {
			t.Errorf("type %d: WAL %q gives %v (unpinned %v), the query %q gives %q", tc.typ, tc.wal, pins[1], changed, tc.query, q)
		}
	}
}

// TestWALPinRules: which WAL changes are pinned.
func TestWALPinRules(t *testing.T) {
	text := func(v string) *pglogrepl.TupleDataColumn {
		return &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Data: []byte(v)}
	}
	rel := func(identity uint8, cols ...*pglogrepl.RelationMessageColumn) walKeyCol {
		return walKeyColOf(&pglogrepl.RelationMessage{ReplicaIdentity: identity, Columns: cols})
	}
	key := &pglogrepl.RelationMessageColumn{DataType: 23, Flags: 1}
	plain := &pglogrepl.RelationMessageColumn{DataType: 23}
	for _, tc := range []struct {
		name   string
		kc     walKeyCol
		known  bool
		col    *pglogrepl.TupleDataColumn
		pinned bool
	}{
		{"default identity, one int key", rel('d', key, plain), true, text("5"), true},
		{"unknown relation", walKeyCol{}, false, text("5"), false},
		{"identity full", rel('f', key, plain), true, text("5"), false},
		{"identity index", rel('i', key, plain), true, text("5"), false},
		{"two key columns", rel('d', key, key), true, text("5"), false},
		{"unsupported type", rel('d', &pglogrepl.RelationMessageColumn{DataType: 1700, Flags: 1}, plain), true, text("5"), false},
		{"unchanged toast", rel('d', key, plain), true, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast}, false},
		{"null", rel('d', key, plain), true, &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull}, false},
		{"bad value", rel('d', key, plain), true, text("x"), false},
	} {
		changed, pins := map[uint32]bool{}, map[uint32][]string{}
		kcs := map[uint32]walKeyCol{}
		if tc.known {
			kcs[1] = tc.kc
		}
		walPin(changed, pins, 1, kcs, &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{tc.col, text("0")}})
		if got := len(pins[1]) == 1 && !changed[1]; got != tc.pinned || changed[1] == tc.pinned {
			t.Errorf("%s: pins %v, unpinned %v; want pinned %v", tc.name, pins, changed, tc.pinned)
		}
	}
	// More than maxPinnedKeys changes of one table in a transaction: the whole table.
	changed, pins := map[uint32]bool{}, map[uint32][]string{}
	kcs := map[uint32]walKeyCol{1: rel('d', key)}
	for i := 0; i <= maxPinnedKeys; i++ {
		walPin(changed, pins, 1, kcs, &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{text(strconv.Itoa(i))}})
	}
	if !changed[1] || len(pins) != 0 {
		t.Errorf("%d changes: pins %d, unpinned %v", maxPinnedKeys+1, len(pins[1]), changed[1])
	}
}

// TestCanonKey: values as Postgres' input functions read them, in pgoutput's form.
func TestCanonKey(t *testing.T) {
	for _, tc := range []struct {
		typ  pkType
		in   string
		want string // "" when refused
	}{
		{pkInt4, "42", "42"},
		{pkInt4, " 42", "42"},
		{pkInt4, "0042", "42"},
		{pkInt4, "\t-0\n", "0"},
		{pkInt4, "+7", "7"},
		{pkInt4, "2147483648", ""},
		{pkInt4, "42.0", ""},
		{pkInt4, "1_000", ""},
		{pkInt4, "0x2A", ""},
		{pkInt4, "", ""},
		{pkInt4, "-", ""},
		{pkInt2, "-32769", ""},
		{pkInt8, "-9223372036854775808", "-9223372036854775808"},
		{pkUUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{pkUUID, "{a0eebc999c0b4ef8bb6d6bb9bd380a11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{pkUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-", ""},
		{pkUUID, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", ""},
		{pkUUID, "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", ""},
		{pkText, "Mixed Case ", "Mixed Case "},
		{pkText, strings.Repeat("x", maxKeyLen+1), ""},
		{pkVarchar, "é", ""},
	} {
		got, ok := canonKey(tc.typ, []byte(tc.in))
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("%s %q: %q %v, want %q", tc.typ.castName(), tc.in, got, ok, tc.want)
		}
	}
}

// TestRowDepsFit: only entries gone (jitter included) before rowTTLBound depend on row counters.
func TestRowDepsFit(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want bool
	}{{time.Second, true}, {30 * time.Minute, true}, {54 * time.Minute, true}, {55 * time.Minute, false}, {2 * time.Hour, false}} {
		if got := rowDepsFit(tc.ttl); got != tc.want {
			t.Errorf("ttl %s: %v, want %v", tc.ttl, got, tc.want)
		}
	}
}
