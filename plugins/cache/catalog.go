package cache

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicepg/sluice/plugin"
)

// rel is one relation of a database's catalog.
type rel struct {
	oid         uint32
	schema      string
	name        string
	kind        byte // pg_class.relkind
	persistence byte // pg_class.relpersistence
	rls         bool
	triggers    bool // has triggers of its own (not those behind foreign keys)

	// viewBase are a view's direct dependencies (relations); viewVolatile is set when the
	// view's query calls a function that is not immutable.
	viewBase     []uint32
	viewVolatile bool
	parents      []uint32 // pg_inherits: partitions' and children's parents
	children     []uint32
	cascades     []uint32 // tables a foreign key action changes when this one is written

	// pkCol and pkType are the primary key when it is one column of a type whose values the
	// cache names (rowkeys.go), with a deterministic collation; pkType is pkNone otherwise.
	// rules is set when the table has rules (a rule may turn a write into any other).
	pkCol  string
	pkType pkType
	rules  bool
}

// funcInfo is what the catalog says about every function of one name.
type funcInfo struct {
	immutable bool // every overload is IMMUTABLE
	builtin   bool // every overload is in pg_catalog
}

// catalog is what the cache knows about one database, read through the Host. It is immutable
// once built; a refresh builds a new one.
type catalog struct {
	// ident names the database across sluice instances and the WAL listener: the cluster's
	// system identifier and the database name. Generations are kept per ident.
	ident       string
	rels        map[relName]*rel
	byOID       map[uint32]*rel
	byName      map[string][]*rel // unqualified name -> every relation of that name
	funcs       map[string]funcInfo
	qfuncs      map[funcName]funcInfo
	defaultPath bool // search_path is "$user", public for everyone
	fingerprint [32]byte
}

const (
	identSQL = `SELECT (SELECT system_identifier FROM pg_control_system())::text, current_database(),
  current_setting('search_path'),
  EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE c ILIKE 'search_path=%')::text`
	relSQL = `SELECT c.oid::text, n.nspname, c.relname, c.relkind::text, c.relpersistence::text,
  c.relrowsecurity::text,
  EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r','p','v','m','f','S') AND c.relpersistence <> 't'
ORDER BY c.oid`
	inhSQL  = `SELECT inhrelid::text, inhparent::text FROM pg_inherits ORDER BY 1, 2`
	viewSQL = `SELECT DISTINCT r.ev_class::text, d.refobjid::text,
  CASE WHEN d.refclassid = 'pg_proc'::regclass THEN (SELECT p.provolatile::text FROM pg_proc p WHERE p.oid = d.refobjid) ELSE '' END
FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
WHERE d.refobjid <> r.ev_class AND d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass)
ORDER BY 1, 2`
	fkSQL = `SELECT confrelid::text, conrelid::text FROM pg_constraint
WHERE contype = 'f' AND (confdeltype NOT IN ('a','r') OR confupdtype NOT IN ('a','r')) ORDER BY 1, 2`
	// A text key compares as its bytes only under a deterministic collation.
	pkSQL = `SELECT i.indrelid::text, a.attname, a.atttypid::text,
  COALESCE((SELECT co.collisdeterministic FROM pg_collation co WHERE co.oid = a.attcollation), true)::text,
  c.relhasrules::text
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
JOIN pg_class c ON c.oid = i.indrelid
WHERE i.indisprimary AND i.indnkeyatts = 1 ORDER BY 1`
	funcSQL = `SELECT n.nspname, p.proname, p.provolatile::text FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace ORDER BY 1, 2, 3`
)

// loadCatalog reads db's catalog through host as user.
func loadCatalog(ctx context.Context, host plugin.Host, db, user string) (*catalog, error) {
	q := func(sql string) ([][]*string, error) {
		rows, err := host.Query(ctx, db, user, sql)
		if err != nil {
			return nil, fmt.Errorf("cache: read the catalog of %s as %s (%.40s...): %w", db, user, strings.Join(strings.Fields(sql), " "), err)
		}
		return rows.Rows, nil
	}
	h := sha256.New()
	c := &catalog{rels: map[relName]*rel{}, byOID: map[uint32]*rel{}, byName: map[string][]*rel{},
		funcs: map[string]funcInfo{}, qfuncs: map[funcName]funcInfo{}}
	rows, err := q(identSQL)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("cache: identify %s: no row", db)
	}
	c.ident = s(rows[0][0]) + "/" + s(rows[0][1])
	c.defaultPath = normalizePath(s(rows[0][2])) == `"$user",public` && s(rows[0][3]) == "false"

	if rows, err = q(relSQL); err != nil {
		return nil, err
	}
	for _, r := range rows {
		x := &rel{oid: oid(r[0]), schema: s(r[1]), name: s(r[2]), kind: s(r[3])[0],
			persistence: s(r[4])[0], rls: s(r[5]) == "true", triggers: s(r[6]) == "true"}
		c.rels[relName{x.schema, x.name}] = x
		c.byOID[x.oid] = x
		c.byName[x.name] = append(c.byName[x.name], x)
		hashRow(h, r)
	}
	if rows, err = q(inhSQL); err != nil {
		return nil, err
	}
	for _, r := range rows {
		child, parent := c.byOID[oid(r[0])], c.byOID[oid(r[1])]
		if child != nil && parent != nil {
			child.parents = append(child.parents, parent.oid)
			parent.children = append(parent.children, child.oid)
		}
		hashRow(h, r)
	}
	if rows, err = q(viewSQL); err != nil {
		return nil, err
	}
	for _, r := range rows {
		v := c.byOID[oid(r[0])]
		if v == nil {
			continue
		}
		switch vol := s(r[2]); vol {
		case "":
			if c.byOID[oid(r[1])] != nil {
				v.viewBase = append(v.viewBase, oid(r[1]))
			}
		case "i":
		default:
			v.viewVolatile = true
		}
		hashRow(h, r)
	}
	if rows, err = q(fkSQL); err != nil {
		return nil, err
	}
	for _, r := range rows {
		if t := c.byOID[oid(r[0])]; t != nil {
			t.cascades = append(t.cascades, oid(r[1]))
		}
		hashRow(h, r)
	}
	if rows, err = q(pkSQL); err != nil {
		return nil, err
	}
	for _, r := range rows {
		if t := c.byOID[oid(r[0])]; t != nil && s(r[3]) == "true" {
			t.pkCol, t.pkType, t.rules = s(r[1]), pkTypeOf(oid(r[2])), s(r[4]) == "true"
		}
		hashRow(h, r)
	}
	if rows, err = q(funcSQL); err != nil {
		return nil, err
	}
	for _, r := range rows {
		schema, name, vol := s(r[0]), s(r[1]), s(r[2])
		for _, k := range []funcName{{"", name}, {schema, name}} {
			fi, seen := c.qfuncs[k]
			if !seen {
				fi = funcInfo{immutable: true, builtin: true}
			}
			fi.immutable = fi.immutable && vol == "i"
			fi.builtin = fi.builtin && schema == "pg_catalog"
			c.qfuncs[k] = fi
		}
		hashRow(h, r)
	}
	for k, fi := range c.qfuncs {
		if k.Schema == "" {
			c.funcs[k.Name] = fi
			delete(c.qfuncs, k)
		}
	}
	copy(c.fingerprint[:], h.Sum(nil))
	return c, nil
}

func hashRow(h interface{ Write([]byte) (int, error) }, row []*string) {
	for _, v := range row {
		if v != nil {
			h.Write([]byte(*v))
		}
		h.Write([]byte{0})
	}
	h.Write([]byte{1})
}

func s(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func oid(p *string) uint32 {
	n, _ := strconv.ParseUint(s(p), 10, 32)
	return uint32(n)
}

func normalizePath(p string) string { return strings.ReplaceAll(strings.TrimSpace(p), " ", "") }

// systemSchema reports whether schema holds system catalogs.
func systemSchema(schema string) bool {
	return schema == "pg_catalog" || schema == "information_schema" || strings.HasPrefix(schema, "pg_toast") ||
		strings.HasPrefix(schema, "pg_temp")
}

// resolveRead finds the relation a query reads as name, for a client logged in as user. An
// unqualified name is resolved as the default search_path does ("$user", public, with
// pg_catalog first); when the server's search_path is not the default, only qualified names
// resolve. It returns nil with a reason when the name is not fit for caching.
func (c *catalog) resolveRead(name relName, user string) (*rel, string) {
	if name.Schema != "" {
		if systemSchema(name.Schema) {
			return nil, "system catalog"
		}
		if r := c.rels[name]; r != nil {
			return r, ""
		}
		return nil, "unknown table"
	}
	if !c.defaultPath {
		return nil, "unqualified name with a search_path other than the default"
	}
	if c.rels[relName{"pg_catalog", name.Name}] != nil {
		return nil, "system catalog"
	}
	if r := c.rels[relName{user, name.Name}]; r != nil {
		return r, ""
	}
	if r := c.rels[relName{"public", name.Name}]; r != nil {
		return r, ""
	}
	return nil, "unknown table"
}

// readSet returns the OIDs whose generations a read of r depends on: r, the base tables of a
// view (recursively), and every ancestor and descendant in an inheritance or partition tree,
// since a write through any of them changes what r returns. why is set when r cannot be cached.
func (c *catalog) readSet(r *rel, out map[uint32]bool) (why string) {
	var walk func(r *rel, depth int) string
	walk = func(r *rel, depth int) string {
		if out[r.oid] {
			return ""
		}
		if depth > 32 {
			return "views nested too deep"
		}
		out[r.oid] = true
		switch {
		case systemSchema(r.schema):
			return "system catalog"
		case r.persistence == 'u':
			return "unlogged table"
		case r.rls:
			return "row level security"
		}
		switch r.kind {
		case 'r', 'p', 'm':
		case 'v':
			if r.viewVolatile {
				return "view calls a function that is not immutable"
			}
			for _, b := range r.viewBase {
				if br := c.byOID[b]; br != nil {
					if why := walk(br, depth+1); why != "" {
						return why
					}
				}
			}
			return ""
		case 'f':
			return "foreign table"
		default:
			return "sequence"
		}
		for _, rel := range append(append([]uint32(nil), r.parents...), r.children...) {
			if x := c.byOID[rel]; x != nil && !out[x.oid] {
				if why := walk(x, depth+1); why != "" {
					return why
				}
			}
		}
		return ""
	}
	return walk(r, 0)
}

// writeSet returns the OIDs a write to name changes, and whether the write must bump the
// epoch instead (a table with triggers, which may change anything). An unqualified name
// counts for every relation of that name, whatever the search_path; a view counts for its
// base tables; foreign key actions add the tables they change.
func (c *catalog) writeSet(name relName, out map[uint32]bool) (epoch bool) {
	targets := c.writeTargets(name)
	if len(targets) == 0 {
		// Unknown to this catalog (created since it was read): nobody caches it yet, but a
		// view or a newer catalog might know it under another OID.
		return true
	}
	for _, r := range targets {
		if c.walkWrite(r, 0, out) {
			epoch = true
		}
	}
	return epoch
}

// writeTargets returns the relations a write to name may change: an unqualified name counts
// for every relation of that name. nil when the catalog knows none.
func (c *catalog) writeTargets(name relName) []*rel {
	if name.Schema != "" {
		if r := c.rels[name]; r != nil {
			return []*rel{r}
		}
		return nil
	}
	return c.byName[name.Name]
}

// walkWrite adds r and what a write to it changes (a view's base tables, the tables its
// foreign key actions change) to out, and reports whether the write must bump the epoch.
func (c *catalog) walkWrite(r *rel, depth int, out map[uint32]bool) bool {
	if out[r.oid] {
		return false
	}
	if depth > 32 {
		return true
	}
	out[r.oid] = true
	if r.triggers {
		return true
	}
	for _, b := range r.viewBase {
		if br := c.byOID[b]; br != nil && c.walkWrite(br, depth+1, out) {
			return true
		}
	}
	for _, x := range r.cascades {
		if xr := c.byOID[x]; xr != nil && c.walkWrite(xr, depth+1, out) {
			return true
		}
	}
	return false
}

// pointTable reports whether reads and writes of r may name its rows by primary key: a plain
// table, alone in its inheritance tree (its reads depend on it alone), with a primary key the
// cache can name.
func (r *rel) pointTable() bool {
	return r.kind == 'r' && r.pkType != pkNone && len(r.parents) == 0 && len(r.children) == 0
}

// pinnable reports whether a write to r by primary key changes only the rows it names: no
// triggers, no rules, and no foreign key action that comes back to r (ON DELETE CASCADE of a
// table referencing itself deletes other rows).
func (c *catalog) pinnable(r *rel) bool {
	if !r.pointTable() || r.triggers || r.rules {
		return false
	}
	seen := map[uint32]bool{}
	var reaches func(x *rel, depth int) bool
	reaches = func(x *rel, depth int) bool {
		for _, o := range x.cascades {
			if o == r.oid || depth > 32 {
				return true
			}
			if xr := c.byOID[o]; xr != nil && !seen[o] {
				seen[o] = true
				if reaches(xr, depth+1) {
					return true
				}
			}
		}
		return false
	}
	return !reaches(r, 0)
}

// funcsFit reports whether every function is immutable, naming the first that is not.
func (c *catalog) funcsFit(fs []funcName) (string, bool) {
	for _, f := range fs {
		fi, ok := c.lookupFunc(f)
		if !ok || !fi.immutable {
			return f.Name, false
		}
	}
	return "", true
}

// funcsHarmless reports whether a write-classified SELECT's functions are all either
// immutable or built in: built-in functions (nextval, pg_advisory_lock ...) change no table a
// query may cache, while a user's function may write any table.
func (c *catalog) funcsHarmless(fs []funcName) bool {
	for _, f := range fs {
		fi, ok := c.lookupFunc(f)
		if !ok || !(fi.immutable || fi.builtin) {
			return false
		}
	}
	return true
}

func (c *catalog) lookupFunc(f funcName) (funcInfo, bool) {
	if f.Schema != "" {
		fi, ok := c.qfuncs[f]
		return fi, ok
	}
	fi, ok := c.funcs[f.Name]
	return fi, ok
}
