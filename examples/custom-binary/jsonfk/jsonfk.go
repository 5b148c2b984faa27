// Package jsonfk is a sluice plugin that keeps an implicit foreign key inside a JSON column
// honest. Many schemas hold references in JSON (events.payload->>'user_id' naming a users.id)
// where Postgres cannot enforce them. json_fk looks at every INSERT and UPDATE of that column,
// finds the value written, simple-protocol literal or extended-protocol parameter, and asks the
// database, through sluice's plugin Host, whether the referenced row exists. If it does not, the
// statement is refused with SQLSTATE 23503 (foreign_key_violation), as a real foreign key would.
//
//	[plugins.json_fk]
//	table = "events"
//	column = "payload"
//	key = "user_id"
//	ref_table = "users"
//	ref_column = "id"
//
// What it cannot check it refuses with 0A000, rather than let it through: a value computed by
// an expression (payload = payload || '{...}'), INSERT ... SELECT, COPY into the table.
//
// It is a guard, not a constraint: the check runs on another connection, before the statement,
// so a users row inserted earlier in the same open transaction is not seen (the statement is
// refused), and a user deleted between the check and the commit is not noticed. Where that
// matters, use a trigger or a generated column with a real foreign key.
package jsonfk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/sluicepg/sluice/plugin"
)

func init() {
	plugin.Register(plugin.Info{Name: "json_fk", New: func() plugin.Plugin { return new(Checker) }})
}

// Checker is the json_fk plugin. Its exported fields are its configuration block.
type Checker struct {
	// Table and Column are the JSON column to guard ("events", "payload"). Table may be
	// schema-qualified; an unqualified name matches the table in any schema.
	Table  string `toml:"table"`
	Column string `toml:"column"`
	// Key is the JSON object's key holding the reference ("user_id").
	Key string `toml:"key"`
	// RefTable and RefColumn are what the key refers to ("users", "id").
	RefTable  string `toml:"ref_table"`
	RefColumn string `toml:"ref_column"`
	// Database and User choose the pool the lookups run on; by default the client's own. The
	// lookup takes a server from that pool for its length, so a small pool whose clients all
	// sit in transactions can make it wait: give the checks a user of their own then.
	Database string `toml:"database"`
	User     string `toml:"user"`
	// Timeout bounds one lookup (default 2s); a lookup that fails refuses the statement.
	Timeout time.Duration `toml:"timeout"`
	// MaxLength is the longest statement parsed (default 16 KiB). pg_query's parser recurses
	// once per level of nesting, and a huge nested text could overflow its C stack; a longer
	// statement that names the table is refused.
	MaxLength int `toml:"max_length"`

	host   plugin.Host
	schema string // from Table, when qualified
	rel    string

	mu    sync.Mutex
	plans map[string]*plan // by statement text
	// position is the column's 1-based position in the table, for INSERTs without a column
	// list; refType is the referenced column's type, for the lookup's cast. Both are looked up
	// once, on first need.
	position int
	refType  string
}

// Interface guards.
var (
	_ plugin.Provisioner = (*Checker)(nil)
	_ plugin.Validator   = (*Checker)(nil)
	_ plugin.QueryHook   = (*Checker)(nil)
)

// Provision sets the defaults and keeps the Host for the lookups.
func (c *Checker) Provision(ctx plugin.Context) error {
	c.host = ctx.Host
	if c.Table == "" {
		c.Table = "events"
	}
	if c.Column == "" {
		c.Column = "payload"
	}
	if c.Key == "" {
		c.Key = "user_id"
	}
	if c.RefTable == "" {
		c.RefTable = "users"
	}
	if c.RefColumn == "" {
		c.RefColumn = "id"
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.MaxLength == 0 {
		c.MaxLength = 16 << 10
	}
	c.rel = c.Table
	if i := strings.LastIndexByte(c.Table, '.'); i >= 0 {
		c.schema, c.rel = c.Table[:i], c.Table[i+1:]
	}
	c.plans = map[string]*plan{}
	return nil
}

// Validate refuses names that would not be plain identifiers in the lookup's SQL.
func (c *Checker) Validate() error {
	for _, n := range []struct{ key, val string }{{"table", c.Table}, {"column", c.Column},
		{"ref_table", c.RefTable}, {"ref_column", c.RefColumn}} {
		for _, part := range strings.Split(n.val, ".") {
			if !isIdent(part) {
				return fmt.Errorf("%s = %q: want a lower-case SQL identifier (schema.table allowed for tables)", n.key, n.val)
			}
		}
	}
	if (c.Database == "") != (c.User == "") {
		return errors.New("database and user go together: set both, or neither to use the client's own pool")
	}
	if c.Timeout < 0 || c.MaxLength < 0 {
		return errors.New("timeout and max_length must not be negative")
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// source is where one written value of the column comes from.
type source struct {
	literal *string // a constant in the text (nil: a parameter or an expression)
	param   int     // $n, 1-based; 0 when not a parameter
	what    string  // for an expression json_fk cannot evaluate: what it is
}

// plan is what a statement writes into the column: nothing (writes is false), or sources.
type plan struct {
	writes    bool
	sources   []source
	refuse    string // a reason to refuse the statement outright (COPY, INSERT ... SELECT)
	needsPos  bool   // an INSERT without a column list: its sources depend on the position
	positions []insertRows
}

// insertRows are the VALUES rows of an INSERT without a column list, resolved once the column's
// position is known.
type insertRows struct{ rows [][]*pg.Node }

// OnQuery checks the statements that write the column. A simple Query and a Parse are checked
// for literal values, a Bind for its parameters; everything else continues untouched.
func (c *Checker) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if !containsFold(q.Text, c.rel) {
		return plugin.ContinueQuery(), nil // the cheap test every other query takes
	}
	p, err := c.planFor(ctx, q.Client, q.Text)
	if err != nil {
		return plugin.Action{}, err
	}
	if !p.writes {
		return plugin.ContinueQuery(), nil
	}
	if p.refuse != "" {
		return plugin.RejectQuery("0A000", p.refuse), nil
	}
	var keys []string
	for _, src := range p.sources {
		var doc []byte
		switch {
		case src.literal != nil:
			if q.Protocol == plugin.Bind {
				continue // checked at the Parse
			}
			doc = []byte(*src.literal)
		case src.param > 0:
			if q.Protocol != plugin.Bind {
				continue // the value comes with the Bind
			}
			if src.param > len(q.Params) {
				continue // Postgres refuses the Bind itself
			}
			pv := q.Params[src.param-1]
			if pv.Value == nil {
				continue // NULL: no reference
			}
			doc = pv.Value
			if pv.Binary && len(doc) > 0 && doc[0] == 1 {
				doc = doc[1:] // jsonb's binary format: a version byte, then the text
			}
		default:
			return plugin.RejectQuery("0A000", fmt.Sprintf(
				"json_fk cannot check %s.%s set by %s: write the JSON as a literal or a parameter", c.Table, c.Column, src.what)), nil
		}
		key, ok, err := c.keyOf(doc)
		if err != nil {
			return plugin.RejectQuery("23503", err.Error()), nil
		}
		if ok {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return plugin.ContinueQuery(), nil
	}
	missing, err := c.missing(ctx, q.Client, keys)
	if err != nil {
		return plugin.RejectQuery("23503", fmt.Sprintf("json_fk could not check %s.%s->>'%s' against %s.%s: %v",
			c.Table, c.Column, c.Key, c.RefTable, c.RefColumn, err)), nil
	}
	if missing != "" {
		return plugin.RejectQuery("23503", fmt.Sprintf(
			"insert or update on table %q violates the JSON foreign key %s->>'%s': key (%s)=(%s) is not present in table %q",
			c.Table, c.Column, c.Key, c.Key, missing, c.RefTable)), nil
	}
	return plugin.ContinueQuery(), nil
}

// keyOf returns the reference in one JSON document: ok is false when there is none (the key is
// absent or null, which a foreign key allows too). A document that is not a JSON object is left
// to Postgres to refuse.
func (c *Checker) keyOf(doc []byte) (key string, ok bool, err error) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(doc, &obj) != nil {
		return "", false, nil
	}
	raw, found := obj[c.Key]
	if !found || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, nil
		}
		return s, true, nil
	case '{', '[', 't', 'f':
		return "", false, fmt.Errorf("insert or update on table %q violates the JSON foreign key %s->>'%s': %s is not a key of %q",
			c.Table, c.Column, c.Key, raw, c.RefTable)
	}
	return string(raw), true, nil // a number, as ->> gives it
}

// missing returns the first of keys that has no row in the referenced table, or "".
func (c *Checker) missing(ctx context.Context, cl *plugin.Client, keys []string) (string, error) {
	db, user := c.Database, c.User
	if db == "" && cl != nil {
		db, user = cl.Database, cl.User
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	typ, err := c.lookupRefType(ctx, db, user)
	if err != nil {
		return "", err
	}
	// One round trip for every key of the statement. A key that is not a valid value of the
	// column's type (user_id "abc" for a bigint id) fails the cast and is reported as missing.
	sql := fmt.Sprintf(`SELECT k FROM unnest($1::text[]) AS k
		WHERE NOT EXISTS (SELECT 1 FROM %s WHERE %s = k::%s) LIMIT 1`, c.RefTable, c.RefColumn, typ)
	arr := textArray(keys)
	rows, err := c.host.Query(ctx, db, user, sql, &arr)
	if err != nil {
		if k := firstInvalid(err, keys); k != "" {
			return k, nil
		}
		return "", err
	}
	if len(rows.Rows) > 0 && rows.Rows[0][0] != nil {
		return *rows.Rows[0][0], nil
	}
	return "", nil
}

// firstInvalid returns the key named by an "invalid input syntax" error, or the first key
// when the error is about input syntax at all.
func firstInvalid(err error, keys []string) string {
	msg := err.Error()
	if !strings.Contains(msg, "invalid input syntax") && !strings.Contains(msg, "out of range") {
		return ""
	}
	for _, k := range keys {
		if strings.Contains(msg, `"`+k+`"`) {
			return k
		}
	}
	return keys[0]
}

// lookupRefType returns the referenced column's type, looked up once.
func (c *Checker) lookupRefType(ctx context.Context, db, user string) (string, error) {
	c.mu.Lock()
	typ := c.refType
	c.mu.Unlock()
	if typ != "" {
		return typ, nil
	}
	table, col := c.RefTable, c.RefColumn
	rows, err := c.host.Query(ctx, db, user,
		`SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		  WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped`, &table, &col)
	if err != nil {
		return "", err
	}
	if len(rows.Rows) == 0 || rows.Rows[0][0] == nil {
		return "", fmt.Errorf("column %s.%s not found", c.RefTable, c.RefColumn)
	}
	typ = *rows.Rows[0][0]
	c.mu.Lock()
	c.refType = typ
	c.mu.Unlock()
	return typ, nil
}

// lookupPosition returns the guarded column's position among the table's columns, looked up
// once, for INSERTs without a column list.
func (c *Checker) lookupPosition(ctx context.Context, cl *plugin.Client) (int, error) {
	c.mu.Lock()
	pos := c.position
	c.mu.Unlock()
	if pos > 0 {
		return pos, nil
	}
	db, user := c.Database, c.User
	if db == "" && cl != nil {
		db, user = cl.Database, cl.User
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	table, col := c.Table, c.Column
	rows, err := c.host.Query(ctx, db, user,
		`SELECT count(*) FROM pg_attribute
		  WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
		    AND attnum <= (SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2)`,
		&table, &col)
	if err != nil {
		return 0, err
	}
	if len(rows.Rows) == 0 || rows.Rows[0][0] == nil || *rows.Rows[0][0] == "0" {
		return 0, fmt.Errorf("column %s.%s not found", c.Table, c.Column)
	}
	fmt.Sscan(*rows.Rows[0][0], &pos)
	c.mu.Lock()
	c.position = pos
	c.mu.Unlock()
	return pos, nil
}

// textArray is keys as a Postgres text[] literal.
func textArray(keys []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(k))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// maxPlans bounds the cache of statement plans; it is emptied when full.
const maxPlans = 1000

// planFor returns what text writes into the column, from the cache or by parsing it.
func (c *Checker) planFor(ctx context.Context, cl *plugin.Client, text string) (*plan, error) {
	c.mu.Lock()
	p := c.plans[text]
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p = c.analyze(text)
	if p.needsPos {
		// The cache keeps the plan only once its sources are known.
		pos, err := c.lookupPosition(ctx, cl)
		if err != nil {
			return nil, plugin.Errorf("23503", "json_fk could not find %s.%s: %v", c.Table, c.Column, err)
		}
		for _, ir := range p.positions {
			for _, row := range ir.rows {
				if pos <= len(row) {
					p.sources = append(p.sources, c.sourceOf(row[pos-1]))
				}
			}
		}
		p.needsPos, p.positions = false, nil
	}
	c.mu.Lock()
	if len(c.plans) >= maxPlans {
		clear(c.plans)
	}
	c.plans[text] = p
	c.mu.Unlock()
	return p, nil
}

// analyze parses text and finds what each statement writes into the column.
func (c *Checker) analyze(text string) *plan {
	p := &plan{}
	if len(text) > c.MaxLength {
		p.writes = true
		p.refuse = fmt.Sprintf("json_fk does not parse statements longer than %d bytes that name %s", c.MaxLength, c.Table)
		return p
	}
	tree, err := pg.Parse(text)
	if err != nil {
		return p // Postgres will refuse it
	}
	for _, raw := range tree.GetStmts() {
		c.statement(p, raw.GetStmt())
	}
	return p
}

// statement adds what one statement (and the statements in its WITH clause) write.
func (c *Checker) statement(p *plan, n *pg.Node) {
	switch {
	case n.GetInsertStmt() != nil:
		st := n.GetInsertStmt()
		c.with(p, st.GetWithClause())
		if !c.isTable(st.GetRelation()) {
			return
		}
		c.insert(p, st)
	case n.GetUpdateStmt() != nil:
		st := n.GetUpdateStmt()
		c.with(p, st.GetWithClause())
		if !c.isTable(st.GetRelation()) {
			return
		}
		c.targets(p, st.GetTargetList(), false)
	case n.GetSelectStmt() != nil:
		c.with(p, n.GetSelectStmt().GetWithClause())
	case n.GetDeleteStmt() != nil:
		c.with(p, n.GetDeleteStmt().GetWithClause())
	case n.GetCopyStmt() != nil:
		if st := n.GetCopyStmt(); st.GetIsFrom() && c.isTable(st.GetRelation()) {
			p.writes = true
			p.refuse = fmt.Sprintf("json_fk cannot check COPY into %s: insert the rows with INSERT", c.Table)
		}
	case n.GetExplainStmt() != nil:
		c.statement(p, n.GetExplainStmt().GetQuery()) // EXPLAIN ANALYZE runs it
	case n.GetPrepareStmt() != nil:
		c.statement(p, n.GetPrepareStmt().GetQuery())
	}
}

func (c *Checker) with(p *plan, w *pg.WithClause) {
	for _, cte := range w.GetCtes() {
		c.statement(p, cte.GetCommonTableExpr().GetCtequery())
	}
}

func (c *Checker) isTable(rv *pg.RangeVar) bool {
	return rv != nil && rv.GetRelname() == c.rel && (c.schema == "" || rv.GetSchemaname() == c.schema)
}

// insert adds the column's values of an INSERT.
func (c *Checker) insert(p *plan, st *pg.InsertStmt) {
	pos := 0 // 1-based position of the column among the INSERT's columns; 0: not written
	cols := st.GetCols()
	for i, col := range cols {
		if col.GetResTarget().GetName() == c.Column {
			pos = i + 1
		}
	}
	sel := st.GetSelectStmt().GetSelectStmt()
	if len(cols) > 0 && pos == 0 {
		c.onConflict(p, st)
		return // the column is not written (its default is)
	}
	p.writes = true
	if sel == nil {
		if st.GetSelectStmt() == nil {
			c.onConflict(p, st)
			return // INSERT ... DEFAULT VALUES
		}
		p.refuse = fmt.Sprintf("json_fk cannot check %s.%s written by INSERT ... SELECT: use VALUES", c.Table, c.Column)
		return
	}
	if len(sel.GetValuesLists()) == 0 {
		p.refuse = fmt.Sprintf("json_fk cannot check %s.%s written by INSERT ... SELECT: use VALUES", c.Table, c.Column)
		return
	}
	var rows [][]*pg.Node
	for _, l := range sel.GetValuesLists() {
		rows = append(rows, l.GetList().GetItems())
	}
	if pos == 0 {
		p.needsPos = true
		p.positions = append(p.positions, insertRows{rows})
	} else {
		for _, row := range rows {
			if pos <= len(row) {
				p.sources = append(p.sources, c.sourceOf(row[pos-1]))
			}
		}
	}
	c.onConflict(p, st)
}

// onConflict adds what ON CONFLICT DO UPDATE SET writes: EXCLUDED.column is the row being
// inserted, checked already.
func (c *Checker) onConflict(p *plan, st *pg.InsertStmt) {
	if oc := st.GetOnConflictClause(); oc != nil {
		c.targets(p, oc.GetTargetList(), true)
	}
}

// targets adds the column's value in an UPDATE's (or ON CONFLICT's) SET list.
func (c *Checker) targets(p *plan, list []*pg.Node, excludedOK bool) {
	for _, t := range list {
		rt := t.GetResTarget()
		if rt.GetName() != c.Column {
			continue
		}
		p.writes = true
		if len(rt.GetIndirection()) > 0 {
			p.sources = append(p.sources, source{what: "an assignment to a part of it"})
			continue
		}
		v := rt.GetVal()
		if excludedOK && c.isExcluded(v) {
			continue
		}
		p.sources = append(p.sources, c.sourceOf(v))
	}
}

func (c *Checker) isExcluded(v *pg.Node) bool {
	f := v.GetColumnRef().GetFields()
	return len(f) == 2 && f[0].GetString_().GetSval() == "excluded" && f[1].GetString_().GetSval() == c.Column
}

// sourceOf says where a written value comes from: a string constant, a parameter, NULL, or an
// expression, looking through casts ('...'::jsonb, $1::json).
func (c *Checker) sourceOf(v *pg.Node) source {
	for v.GetTypeCast() != nil {
		v = v.GetTypeCast().GetArg()
	}
	switch {
	case v.GetAConst() != nil:
		ac := v.GetAConst()
		if ac.GetIsnull() {
			return source{literal: new(string)} // NULL: no reference ("" is not JSON)
		}
		if sv := ac.GetSval(); sv != nil {
			s := sv.GetSval()
			return source{literal: &s}
		}
		return source{what: "a non-string constant"}
	case v.GetParamRef() != nil:
		return source{param: int(v.GetParamRef().GetNumber())}
	case v.GetSetToDefault() != nil:
		return source{literal: new(string)} // DEFAULT
	}
	return source{what: "an expression"}
}

// containsFold reports whether s contains sub, ignoring ASCII case, without allocating.
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}
