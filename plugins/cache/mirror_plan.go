package cache

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// mirrorSpec is one [plugins.cache.mirror.<table>] block after defaults: what the user asked
// for. It does not change while sluice runs.
type mirrorSpec struct {
	name    string // as configured: "users" or "sales.orders"; the table's segment of its keys
	ns      string // prefix + name + ":": every Redis key of the table starts with it
	json    bool
	key     []string // empty: the primary key
	columns []string // empty: every column
}

// mirrorTable is a mirrored table during one replication session: its spec, what the catalog
// said when the session began, and where its columns are in pgoutput's tuples.
type mirrorTable struct {
	*mirrorSpec
	oid       uint32
	sqlName   string   // "schema"."table", quoted
	keyCols   []string // in key order
	cols      []string // the value's columns, in table order: the key columns and the chosen ones
	signature string   // name:type of each of cols: a change means the mirror must be reloaded

	// From the latest Relation message (bind).
	keyAt, colAt []int
}

// tableFacts is what the catalog says about a mirrored table.
type tableFacts struct {
	oid          uint32
	schema, name string
	kind         byte // pg_class.relkind
	replident    byte // pg_class.relreplident: d(efault), n(othing), f(ull), i(ndex)
	columns      []columnFact
	indexes      []indexFact // unique indexes
}

type columnFact struct {
	name      string
	typ       uint32
	notNull   bool
	generated bool // generated columns are not in pgoutput's tuples
}

type indexFact struct {
	primary, replident, immediate bool
	usable                        bool // valid, no expression, no predicate
	cols                          []string
}

// planTable checks that spec can be mirrored exactly as the catalog describes the table, and
// returns the table to stream. The key must identify rows for good (a NOT NULL set holding the
// columns of a non-deferrable unique index: a deferrable one lets two rows share a key for a
// moment, which would delete the wrong entry), and Postgres must log its old value on UPDATE and
// DELETE (it must be inside the replica identity, or that must be FULL).
func planTable(spec *mirrorSpec, f tableFacts) (*mirrorTable, error) {
	t := &mirrorTable{mirrorSpec: spec, oid: f.oid, sqlName: quoteIdent(f.schema) + "." + quoteIdent(f.name)}
	if f.kind != 'r' {
		return nil, fmt.Errorf("mirror: %s is not an ordinary table (relkind %q)", spec.name, f.kind)
	}
	col := map[string]columnFact{}
	for _, c := range f.columns {
		col[c.name] = c
	}
	t.keyCols = spec.key
	if len(t.keyCols) == 0 {
		for _, ix := range f.indexes {
			if ix.primary {
				t.keyCols = ix.cols
			}
		}
		if len(t.keyCols) == 0 {
			return nil, fmt.Errorf("mirror: %s has no primary key: name the key columns (key = [...])", spec.name)
		}
	}
	for _, k := range t.keyCols {
		c, ok := col[k]
		switch {
		case !ok:
			return nil, fmt.Errorf("mirror: %s: key column %q does not exist", spec.name, k)
		case c.generated:
			return nil, fmt.Errorf("mirror: %s: key column %q is generated (pgoutput does not send it)", spec.name, k)
		case !c.notNull:
			return nil, fmt.Errorf("mirror: %s: key column %q may be NULL", spec.name, k)
		}
	}
	unique := false
	for _, ix := range f.indexes {
		if ix.usable && ix.immediate && subset(ix.cols, t.keyCols) {
			unique = true
		}
	}
	if !unique {
		return nil, fmt.Errorf("mirror: %s: no non-deferrable unique index on the key columns %v", spec.name, t.keyCols)
	}
	var identity []string
	switch f.replident {
	case 'f':
		identity = t.keyCols
	case 'd', 'i':
		for _, ix := range f.indexes {
			if (f.replident == 'd' && ix.primary) || (f.replident == 'i' && ix.replident) {
				identity = ix.cols
			}
		}
	}
	if !subset(t.keyCols, identity) {
		return nil, fmt.Errorf("mirror: %s: the key columns %v are not all in the replica identity, so Postgres does not log a changed key's old value (ALTER TABLE ... REPLICA IDENTITY FULL, or USING INDEX)", spec.name, t.keyCols)
	}
	for _, c := range spec.columns {
		if fc, ok := col[c]; !ok || fc.generated {
			return nil, fmt.Errorf("mirror: %s: column %q does not exist or is generated", spec.name, c)
		}
	}
	var sig []string
	for _, c := range f.columns {
		if c.generated || (len(spec.columns) > 0 && !slices.Contains(spec.columns, c.name) && !slices.Contains(t.keyCols, c.name)) {
			continue
		}
		t.cols = append(t.cols, c.name)
		sig = append(sig, c.name+":"+strconv.FormatUint(uint64(c.typ), 10))
	}
	t.signature = strings.Join(sig, ",")
	return t, nil
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return len(a) > 0
}

// bind locates the table's columns in the tuples that follow a Relation message, and checks the
// relation still has the columns the mirror was loaded with (errSchemaChanged if not) and still
// logs old keys.
func (t *mirrorTable) bind(m *pglogrepl.RelationMessage) error {
	at := map[string]int{}
	var sig []string
	for i, c := range m.Columns {
		at[c.Name] = i
		if len(t.columns) == 0 || slices.Contains(t.columns, c.Name) || slices.Contains(t.keyCols, c.Name) {
			sig = append(sig, c.Name+":"+strconv.FormatUint(uint64(c.DataType), 10))
		}
	}
	if strings.Join(sig, ",") != t.signature {
		return fmt.Errorf("%w: %s is now (%s), was (%s)", errSchemaChanged, t.name, strings.Join(sig, ","), t.signature)
	}
	t.colAt = make([]int, len(t.cols))
	for i, c := range t.cols {
		t.colAt[i] = at[c]
	}
	t.keyAt = make([]int, len(t.keyCols))
	for i, c := range t.keyCols {
		t.keyAt[i] = at[c]
		if m.ReplicaIdentity != 'f' && m.Columns[at[c]].Flags&1 == 0 {
			return fmt.Errorf("mirror: %s: key column %s is no longer in the replica identity", t.name, c)
		}
	}
	return nil
}

// readFacts reads what planTable needs about the table named name ("table", found on the
// search_path, or "schema.table") on a replication connection, which speaks only the simple
// query protocol (hence the quoted literals).
func readFacts(ctx context.Context, conn *pgconn.PgConn, name string) (tableFacts, error) {
	var f tableFacts
	rn := splitName(name)
	where := "c.relname = " + quoteLiteral(rn.Name)
	if rn.Schema != "" {
		where += " AND n.nspname = " + quoteLiteral(rn.Schema)
	} else {
		where += " AND pg_table_is_visible(c.oid)"
	}
	rows, err := simpleRows(ctx, conn, `SELECT c.oid::text, n.nspname, c.relname, c.relkind::text, c.relreplident::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+where)
	if err != nil {
		return f, fmt.Errorf("mirror: look up table %s: %w", name, err)
	}
	if len(rows) != 1 {
		return f, fmt.Errorf("mirror: table %s: not found", name)
	}
	oid, _ := strconv.ParseUint(rows[0][0], 10, 32)
	f.oid, f.schema, f.name, f.kind, f.replident = uint32(oid), rows[0][1], rows[0][2], rows[0][3][0], rows[0][4][0]
	rows, err = simpleRows(ctx, conn, `SELECT attname, atttypid::text, attnotnull::text, (attgenerated <> '')::text
FROM pg_attribute WHERE attrelid = `+rows[0][0]+` AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	if err != nil {
		return f, fmt.Errorf("mirror: read the columns of %s: %w", name, err)
	}
	for _, r := range rows {
		typ, _ := strconv.ParseUint(r[1], 10, 32)
		f.columns = append(f.columns, columnFact{name: r[0], typ: uint32(typ), notNull: r[2] == "true", generated: r[3] == "true"})
	}
	rows, err = simpleRows(ctx, conn, `SELECT i.indexrelid::text, i.indisprimary::text, i.indisreplident::text,
  i.indimmediate::text, (i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL)::text, a.attname
FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = `+strconv.FormatUint(oid, 10)+` AND i.indisunique AND k.ord <= i.indnkeyatts
ORDER BY i.indexrelid, k.ord`)
	if err != nil {
		return f, fmt.Errorf("mirror: read the unique indexes of %s: %w", name, err)
	}
	last := ""
	for _, r := range rows {
		if r[0] != last {
			f.indexes = append(f.indexes, indexFact{primary: r[1] == "true", replident: r[2] == "true",
				immediate: r[3] == "true", usable: r[4] == "true"})
			last = r[0]
		}
		ix := &f.indexes[len(f.indexes)-1]
		ix.cols = append(ix.cols, r[5])
	}
	return f, nil
}

// simpleRows runs one statement with the simple query protocol and returns its rows as text
// (NULL as "").
func simpleRows(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, r := range res {
		for _, row := range r.Rows {
			vals := make([]string, len(row))
			for i, v := range row {
				vals[i] = string(v)
			}
			out = append(out, vals)
		}
	}
	return out, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
