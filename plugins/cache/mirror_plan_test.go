package cache

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

// usersFacts is users(id int primary key, email text not null unique, name text, score int,
// lower_email text generated), REPLICA IDENTITY DEFAULT.
func usersFacts() tableFacts {
	return tableFacts{oid: 100, schema: "public", name: "users", kind: 'r', replident: 'd',
		columns: []columnFact{{"id", 23, true, false}, {"email", 25, true, false}, {"name", 25, false, false},
			{"score", 23, false, false}, {"lower_email", 25, false, true}},
		indexes: []indexFact{{primary: true, immediate: true, usable: true, cols: []string{"id"}},
			{immediate: true, usable: true, cols: []string{"email"}}}}
}

func TestPlanTable(t *testing.T) {
	for _, c := range []struct {
		name    string
		spec    mirrorSpec
		edit    func(*tableFacts)
		keys    string // the key columns planTable chose
		cols    string // the value's columns
		sig     string
		errText string
	}{
		{name: "defaults: the primary key, every column but the generated one",
			keys: "id", cols: "id,email,name,score", sig: "id:23,email:25,name:25,score:23"},
		{name: "a column subset keeps the key columns, in table order",
			spec: mirrorSpec{columns: []string{"score", "name"}}, keys: "id", cols: "id,name,score", sig: "id:23,name:25,score:23"},
		{name: "a unique key outside the replica identity is refused",
			spec: mirrorSpec{key: []string{"email"}}, errText: "not all in the replica identity"},
		{name: "a unique key with REPLICA IDENTITY FULL",
			spec: mirrorSpec{key: []string{"email"}}, edit: func(f *tableFacts) { f.replident = 'f' },
			keys: "email", cols: "id,email,name,score"},
		{name: "a key that is not unique",
			spec: mirrorSpec{key: []string{"name"}}, edit: func(f *tableFacts) { f.columns[2].notNull = true; f.replident = 'f' },
			errText: "no non-deferrable unique index"},
		{name: "a key that may be NULL",
			spec: mirrorSpec{key: []string{"score"}}, errText: "may be NULL"},
		{name: "a key wider than a unique index is unique",
			spec: mirrorSpec{key: []string{"id", "email"}}, edit: func(f *tableFacts) { f.replident = 'f' },
			keys: "id,email", cols: "id,email,name,score"},
		{name: "a deferrable primary key is refused",
			edit: func(f *tableFacts) { f.indexes[0].immediate = false }, errText: "non-deferrable"},
		{name: "no primary key and no key",
			edit: func(f *tableFacts) { f.indexes = f.indexes[1:] }, errText: "no primary key"},
		{name: "REPLICA IDENTITY NOTHING",
			edit: func(f *tableFacts) { f.replident = 'n' }, errText: "replica identity"},
		{name: "REPLICA IDENTITY USING INDEX on the email",
			spec: mirrorSpec{key: []string{"email"}},
			edit: func(f *tableFacts) { f.replident = 'i'; f.indexes[1].replident = true },
			keys: "email", cols: "id,email,name,score"},
		{name: "an unknown column", spec: mirrorSpec{columns: []string{"nope"}}, errText: `"nope" does not exist`},
		{name: "a generated column", spec: mirrorSpec{columns: []string{"lower_email"}}, errText: "generated"},
		{name: "an unknown key column", spec: mirrorSpec{key: []string{"nope"}}, errText: "does not exist"},
		{name: "a partitioned table", edit: func(f *tableFacts) { f.kind = 'p' }, errText: "not an ordinary table"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := usersFacts()
			if c.edit != nil {
				c.edit(&f)
			}
			spec := c.spec
			spec.name, spec.ns = "users", "m:users:"
			tbl, err := planTable(&spec, f)
			if c.errText != "" {
				if err == nil || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("error %v; want one saying %q", err, c.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(tbl.keyCols, ","); got != c.keys {
				t.Errorf("key %s; want %s", got, c.keys)
			}
			if got := strings.Join(tbl.cols, ","); got != c.cols {
				t.Errorf("columns %s; want %s", got, c.cols)
			}
			if c.sig != "" && tbl.signature != c.sig {
				t.Errorf("signature %s; want %s", tbl.signature, c.sig)
			}
		})
	}
}

// relation is users as a pgoutput Relation message (generated columns are not in it).
func relation(identity byte, cols ...string) *pglogrepl.RelationMessage {
	m := &pglogrepl.RelationMessage{RelationID: 100, Namespace: "public", RelationName: "users", ReplicaIdentity: identity}
	types := map[string]uint32{"id": 23, "email": 25, "name": 25, "score": 23, "extra": 25, "ratio": 701}
	for _, c := range cols {
		var flags uint8
		if c == "id" && identity == 'd' {
			flags = 1
		}
		m.Columns = append(m.Columns, &pglogrepl.RelationMessageColumn{Name: c, DataType: types[c], Flags: flags})
	}
	return m
}

func TestBindFindsColumnsAndNoticesSchemaChanges(t *testing.T) {
	for _, c := range []struct {
		name    string
		columns []string // the spec's subset
		rel     *pglogrepl.RelationMessage
		colAt   string
		err     error
		errText string
	}{
		{name: "same columns", rel: relation('d', "id", "email", "name", "score"), colAt: "0,1,2,3"},
		{name: "a column added", rel: relation('d', "id", "email", "name", "score", "extra"), err: errSchemaChanged},
		{name: "a column dropped", rel: relation('d', "id", "email", "score"), err: errSchemaChanged},
		{name: "a column added outside the subset changes nothing",
			columns: []string{"score"}, rel: relation('d', "extra", "id", "email", "name", "score"), colAt: "1,4"},
		{name: "the key left the replica identity", rel: relation('n', "id", "email", "name", "score"), errText: "replica identity"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := &mirrorSpec{name: "users", ns: "m:users:", columns: c.columns}
			tbl, err := planTable(spec, usersFacts())
			if err != nil {
				t.Fatal(err)
			}
			err = tbl.bind(c.rel)
			switch {
			case c.err != nil || c.errText != "":
				if (c.err != nil && !errors.Is(err, c.err)) || (c.errText != "" && (err == nil || !strings.Contains(err.Error(), c.errText))) {
					t.Fatalf("error %v; want %v %s", err, c.err, c.errText)
				}
			case err != nil:
				t.Fatal(err)
			default:
				var at []string
				for _, i := range tbl.colAt {
					at = append(at, strconv.Itoa(i))
				}
				if strings.Join(at, ",") != c.colAt {
					t.Errorf("columns at %v; want %s", at, c.colAt)
				}
			}
		})
	}
}

func TestMirrorSpecs(t *testing.T) {
	base := func() *Cache {
		return &Cache{Prefix: "sluice:", WALDSN: "host=db", MirrorSlot: "sluice_mirror", MirrorPublication: "sluice_mirror",
			Mirror: map[string]Mirror{"users": {}, "sales.lines": {Key: []string{"region", "id"}, Format: "json", Prefix: "m:"}}}
	}
	specs, digest, err := base().mirrorSpecs()
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].ns != "m:sales.lines:" || !specs[0].json || specs[1].ns != "sluice:users:" || specs[1].json {
		t.Errorf("specs %+v %+v", specs[0], specs[1])
	}
	for _, c := range []struct {
		name    string
		edit    func(*Cache)
		errText string // "" means valid, with another digest
	}{
		{"another key", func(p *Cache) { p.Mirror["users"] = Mirror{Key: []string{"email"}} }, ""},
		{"another format", func(p *Cache) { p.Mirror["users"] = Mirror{Format: "json"} }, ""},
		{"another publication", func(p *Cache) { p.MirrorPublication = "other" }, ""},
		{"an unknown format", func(p *Cache) { p.Mirror["users"] = Mirror{Format: "xml"} }, "want hash or json"},
		{"a column named twice", func(p *Cache) { p.Mirror["users"] = Mirror{Columns: []string{"a", "a"}} }, "named twice"},
		{"no wal_dsn", func(p *Cache) { p.WALDSN = "" }, "wal_dsn"},
		{"a bad slot name", func(p *Cache) { p.MirrorSlot = "Bad-Name" }, "mirror_slot"},
		{"keys of one table inside another's", func(p *Cache) { p.Mirror["x"] = Mirror{Prefix: "sluice:users:"} }, "would mix"},
		{"a table named like the cache's generations", func(p *Cache) { p.Mirror["g"] = Mirror{} }, "would mix"},
		{"a three-part name", func(p *Cache) { p.Mirror["a.b.c"] = Mirror{} }, "schema.name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := base()
			c.edit(p)
			_, d, err := p.mirrorSpecs()
			switch {
			case c.errText == "" && err != nil:
				t.Fatal(err)
			case c.errText == "" && d == digest:
				t.Errorf("the digest did not change")
			case c.errText != "" && (err == nil || !strings.Contains(err.Error(), c.errText)):
				t.Errorf("error %v; want one saying %q", err, c.errText)
			}
		})
	}
}
