package shard

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/textcache"
)

// Options configure an Extractor.
type Options struct {
	// Key is the sharding key column, pgcat's automatic_sharding_key: "table.column", or
	// "*.column" for that column in any table. Names are folded to lower case, as Postgres
	// folds unquoted identifiers. A table's schema is not compared (as in pgcat).
	Key string

	// Sharder maps key values to shards; its Type says how values are read.
	Sharder Sharder

	// CacheSize bounds the number of cached Statements. 0 means 10,000; a negative value
	// turns the cache off.
	CacheSize int

	// CacheBytes bounds the cache's memory, texts and the INSERT trees kept for splitting
	// included. 0 means 32 MiB.
	CacheBytes int

	// MaxLength is the longest text that is parsed; a longer one touches all shards, with
	// Statement.ParseErr wrapping ErrTooLong. 0 means 16 KiB. As in internal/classify, the
	// limit protects the process: pg_query's C parser recurses once per level of nesting,
	// and about 40 KiB of a left-nested expression ("1+1+1...") overflows the thread's stack.
	// A multi-row INSERT to split is often longer than 16 KiB; raise the limit only with the
	// stack in mind.
	MaxLength int
}

// DefaultMaxLength is Options.MaxLength's default.
const DefaultMaxLength = 16 << 10

var (
	// ErrTooLong is wrapped by Statement.ParseErr for a text longer than Options.MaxLength.
	ErrTooLong = errors.New("query text too long to parse for a sharding key")
	// ErrKeyChange is wrapped by the error of an UPDATE (or INSERT ... ON CONFLICT DO UPDATE)
	// that sets the sharding key to a value that may live on another shard: the row would
	// stay on the shard it is on, where key extraction would never find it again.
	ErrKeyChange = errors.New("changing a row's sharding key is not supported")
)

// Extractor finds the shards a statement touches. It is safe for concurrent use, and meant
// to be shared by every session of a sharded pool: its Statements depend only on the text
// and the Options.
type Extractor struct {
	table, column string // the key, folded; table is "*" for any table
	sharder       Sharder
	maxLength     int
	cache         *textcache.Cache[*Statement]
}

// New returns an Extractor for o. It fails when o.Key is not "table.column" or "*.column",
// or o.Sharder.Shards is below 1.
func New(o Options) (*Extractor, error) {
	table, column, ok := strings.Cut(strings.ToLower(strings.TrimSpace(o.Key)), ".")
	if !ok || table == "" || column == "" || strings.Contains(column, ".") || column == "*" {
		return nil, fmt.Errorf("sharding key %q: want table.column or *.column", o.Key)
	}
	if o.Sharder.Shards < 1 {
		return nil, fmt.Errorf("sharding: %d shards, want at least 1", o.Sharder.Shards)
	}
	e := &Extractor{table: table, column: column, sharder: o.Sharder, maxLength: o.MaxLength}
	if e.maxLength <= 0 {
		e.maxLength = DefaultMaxLength
	}
	if o.CacheSize >= 0 {
		size, budget := o.CacheSize, o.CacheBytes
		if size == 0 {
			size = 10_000
		}
		if budget <= 0 {
			budget = 32 << 20
		}
		e.cache = textcache.New[*Statement](size, budget)
	}
	return e, nil
}

// Params are the parameters of a Bind message, as it carries them.
type Params struct {
	// Formats are the parameter format codes: none (every parameter is text), one (for
	// every parameter), or one per parameter; 0 is text, 1 is binary.
	Formats []int16
	// Values are the parameters' values; nil is NULL.
	Values [][]byte
}

func (p Params) format(i int) int16 {
	switch len(p.Formats) {
	case 0:
		return 0
	case 1:
		return p.Formats[0]
	}
	if i < len(p.Formats) {
		return p.Formats[i]
	}
	return 0
}

// Statement is what key extraction found in one query text (one or more statements). It is
// shared through the cache by everyone who analyses the same text, and must not be modified.
// A caller may keep it, for example with a prepared statement, and call Shards at each Bind.
type Statement struct {
	// ParseErr is set when the text was not parsed (the parser rejected it, or it is longer
	// than Options.MaxLength); such a statement touches all shards.
	ParseErr error

	sharder Sharder
	key     string  // "table.column" for error messages
	where   *cond   // the statement's restriction on the key; nil: all shards
	changes []value // values an UPDATE or ON CONFLICT DO UPDATE assigns to the key
	insert  *insert // set for a single INSERT ... VALUES into the key's table
	copy    *Copy   // set for a text that is one COPY

	// A Statement cached by its text's shape (see Analyze) is shared by every text of that
	// shape: refs are the indexes of the text's literals that are key values, and such a
	// value's lit is its place in refs plus one. Analyze hands each text a copy with lits,
	// the values of those literals in that text, in the order of refs.
	// noShape is set while analysing when a literal the statement uses cannot be read back
	// from its text alone: the statement is then cached by its text.
	refs    []int
	lits    []value
	noShape bool
}

// Analyze returns the Statement for query: the text of a simple Query message or of a Parse
// message, without its terminating zero byte. It is cached: a text analysed before costs a
// map lookup and no allocation. So is, mostly, a text that differs from one analysed before
// only in the values of its literals ("... WHERE id = 7" after "... WHERE id = 5", as clients
// that inline their values send): the cache is keyed by the classifier's shape of the text,
// and the Statement found there is given this text's literals (one small allocation when the
// statement uses any). Analyze does not keep query, and never panics.
func (e *Extractor) Analyze(query []byte) *Statement {
	if e.cache == nil || len(query) > e.maxLength {
		st, _ := e.analyze(query, nil)
		return st
	}
	b := shapeBufs.Get().(*shapeBuf)
	defer shapeBufs.Put(b)
	sh, lits, shaped := classify.ShapeLiterals(b.shape[:0], b.lits[:0], query)
	b.shape, b.lits = sh[:0], lits[:0]
	if shaped {
		if tmpl, ok := e.cache.Get(sh); ok {
			if st, ok := tmpl.bind(query, lits); ok {
				return st
			}
			// A literal this text's statement uses is written in a way the shape's first
			// text's was not (E'...', 1e3): this text is analysed and cached on its own.
			lits = nil
		}
	} else {
		lits = nil
	}
	if st, ok := e.cache.Get(query); ok {
		return st
	}
	st, size := e.analyze(query, lits)
	if lits != nil && st.shareable() {
		e.cache.Put(string(sh), st, size)
		bound, _ := st.bind(query, lits) // the literals it uses were read from this text
		return bound
	}
	e.cache.Put(string(query), st, size)
	return st
}

// shapeBuf holds Analyze's scratch space.
type shapeBuf struct {
	shape []byte
	lits  []classify.Literal
}

var shapeBufs = sync.Pool{New: func() any { return &shapeBuf{shape: make([]byte, 0, 512)} }}

// shareable reports whether the statement, analysed with its text's literals, holds for every
// text of the same shape once given that text's literals.
func (s *Statement) shareable() bool {
	// A split INSERT is rebuilt from the parse tree, which holds this text's values. (A COPY
	// is never shaped; its check is for safety.)
	return !s.noShape && s.insert == nil && s.copy == nil && s.ParseErr == nil
}

// bind returns the statement for a text of its shape with these literals: s itself when it
// uses none, else a copy with their values. ok is false when one of them cannot be read.
func (s *Statement) bind(query []byte, lits []classify.Literal) (*Statement, bool) {
	if len(s.refs) == 0 {
		return s, true
	}
	b := &boundStatement{st: *s}
	b.st.lits = b.one[:]
	if len(s.refs) > len(b.one) {
		b.st.lits = make([]value, len(s.refs))
	}
	for j, k := range s.refs {
		if k >= len(lits) {
			return nil, false
		}
		text, ok := literalValue(query[lits[k].Start:lits[k].End])
		if !ok {
			return nil, false
		}
		sh, err := s.sharder.Shard(text)
		b.st.lits[j] = value{known: err == nil, sh: sh}
	}
	return &b.st, true
}

// boundStatement is a Statement given its text's literals, with room for one literal's value
// in the same allocation (a point read's key).
type boundStatement struct {
	st  Statement
	one [1]value
}

// Shards is Analyze followed by Statement.Shards.
func (e *Extractor) Shards(query []byte, p Params) (Set, error) {
	return e.Analyze(query).Shards(p)
}

// analyze parses query and finds its shards. lits, when not nil, are the positions of the
// text's literals: the values the statement uses are then tied to them (value.lit), so that
// the statement may be shared by texts of the same shape.
func (e *Extractor) analyze(query []byte, lits []classify.Literal) (*Statement, int) {
	st := &Statement{sharder: e.sharder, key: e.table + "." + e.column}
	size := len(query) + 256
	if bytes.IndexByte(query, 0) >= 0 {
		st.ParseErr = errors.New("query text contains a zero byte")
		return st, size
	}
	if len(query) > e.maxLength {
		st.ParseErr = fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(query), e.maxLength)
		return st, size
	}
	tree, err := pg.Parse(string(query))
	if err != nil {
		st.ParseErr = err
		return st, size
	}
	stmts := tree.GetStmts()
	a := analyzer{e: e, st: st, query: query, lits: lits}
	var conds []*cond
	for _, raw := range stmts {
		conds = append(conds, a.statement(raw.GetStmt(), len(stmts) == 1))
	}
	st.where = orCond(conds)
	if st.insert != nil {
		st.insert.tree = tree
		size += 12 * len(query) // the tree kept for splitting
	}
	return st, size
}

// Shards returns the shards the statement touches with these Bind parameters (the zero
// Params for a simple Query): a set of one or more shards, or All when they are not known
// from the text (no sharding key in it, a key compared otherwise than with = or IN, a key
// that is not a constant or a parameter, a parse error, a statement that is not a SELECT,
// INSERT, UPDATE or DELETE). It never returns an empty set.
//
// The error, wrapping ErrKeyChange, is for an UPDATE that sets the key to a value that is not
// known to be on the shard of every row it updates.
//
// Joins are assumed co-located: a restriction on the key of any table of a join restricts
// the whole statement. A key value that cannot be read as the key type counts as unknown.
func (s *Statement) Shards(p Params) (Set, error) {
	set := s.where.eval(s.sharder, p, s.lits)
	if set.empty() {
		set = AllShards()
	}
	for _, v := range s.changes {
		shard, ok := v.shard(s.sharder, p, s.lits)
		only, single := set.Single()
		if !ok || !single || shard != only {
			return set, fmt.Errorf("%w: this statement sets %s, and sluice cannot show that the rows stay on their shard; delete the row and insert it again instead",
				ErrKeyChange, s.key)
		}
	}
	return set, nil
}

// value is a key value in a statement: a constant, or a parameter.
type value struct {
	param int // 1-based parameter number; 0 for a constant
	// lit is, for a constant that is a literal of a statement shared by its shape, the
	// literal's place in Statement.refs plus one: its value is the text's (Statement.lits).
	lit int
	// For a constant: whether it is NULL, and its shard if it could be read as the key type.
	null  bool
	known bool
	sh    int
	// nullFirst: a NULL goes to shard 0, as hash partitioning puts a NULL key in the first
	// partition (an INSERT's key under PgBigintHash).
	nullFirst bool
	// array: the parameter is an array of keys (key = ANY($1)); see arrayShards.
	array bool
	// set, for an array constant (key = ANY('{1,2}')), holds its elements' shards.
	set *Set
}

// shard returns the shard of v; ok is false when it is not known (a NULL, a parameter that is
// missing, or a value the key type cannot read).
func (v value) shard(s Sharder, p Params, lits []value) (int, bool) {
	if v.lit > 0 && v.lit <= len(lits) {
		c := lits[v.lit-1]
		return c.sh, c.known
	}
	if v.param == 0 {
		if v.null {
			return 0, v.nullFirst
		}
		return v.sh, v.known
	}
	i := v.param - 1
	if i >= len(p.Values) {
		return 0, false
	}
	if p.Values[i] == nil {
		return 0, v.nullFirst
	}
	var sh int
	var err error
	if p.format(i) == 1 {
		sh, err = s.ShardBinary(p.Values[i])
	} else {
		sh, err = s.Shard(p.Values[i])
	}
	return sh, err == nil
}

type condOp uint8

const (
	condIn  condOp = iota // the key is one of vals
	condAnd               // every kid holds
	condOr                // some kid holds
)

// cond is a restriction on the key's value, evaluated with the Bind parameters. A nil *cond
// is no restriction: all shards.
type cond struct {
	op   condOp
	vals []value
	kids []*cond
}

func (c *cond) eval(s Sharder, p Params, lits []value) Set {
	if c == nil {
		return AllShards()
	}
	switch c.op {
	case condIn:
		var set Set
		for _, v := range c.vals {
			if v.set != nil {
				set = union(set, *v.set)
				continue
			}
			if v.array {
				elems, ok := arrayShards(s, p, v.param-1)
				if !ok {
					return AllShards()
				}
				set = union(set, elems)
				continue
			}
			sh, ok := v.shard(s, p, lits)
			if !ok {
				if v.null || v.param > 0 && v.param <= len(p.Values) && p.Values[v.param-1] == nil {
					continue // key = NULL matches no row
				}
				return AllShards()
			}
			set.Add(sh)
		}
		return set
	case condAnd:
		set := AllShards()
		for _, k := range c.kids {
			set = intersect(set, k.eval(s, p, lits))
		}
		if set.empty() {
			// Contradictory restrictions, or restrictions on two instances of the key's
			// table in one join (a cross-shard join): only every shard is safe.
			return AllShards()
		}
		return set
	default:
		var set Set
		for _, k := range c.kids {
			set = union(set, k.eval(s, p, lits))
			if set.all {
				break
			}
		}
		return set
	}
}

// andCond returns the conjunction of cs; nil entries (no restriction) drop out.
func andCond(cs []*cond) *cond {
	var kids []*cond
	for _, c := range cs {
		if c != nil {
			kids = append(kids, c)
		}
	}
	switch len(kids) {
	case 0:
		return nil
	case 1:
		return kids[0]
	}
	return &cond{op: condAnd, kids: kids}
}

// orCond returns the disjunction of cs: nil (no restriction) if any of them is nil.
func orCond(cs []*cond) *cond {
	switch len(cs) {
	case 0:
		return nil
	case 1:
		return cs[0]
	}
	for _, c := range cs {
		if c == nil {
			return nil
		}
	}
	return &cond{op: condOr, kids: cs}
}

// rel is a relation in scope: the name that qualifies its columns, and the table it is (""
// for a subquery, a function or a VALUES list).
type rel struct{ name, table string }

// analyzer walks one parse tree for an Extractor.
type analyzer struct {
	e  *Extractor
	st *Statement
	// query is the text parsed, and lits the positions of its literals when the statement
	// is to be shared by texts of its shape (nil otherwise).
	query []byte
	lits  []classify.Literal
}

// statement returns the restriction of one top-level statement. only is true when it is the
// text's only statement (an INSERT may then be split).
func (a *analyzer) statement(n *pg.Node, only bool) *cond {
	switch s := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return a.selectStmt(s.SelectStmt)
	case *pg.Node_InsertStmt:
		return a.insertStmt(s.InsertStmt, only)
	case *pg.Node_UpdateStmt:
		u := s.UpdateStmt
		scope := a.relations(nil, u.GetRelation())
		var conds []*cond
		scope, conds = a.from(scope, u.GetFromClause(), conds)
		conds = append(conds, a.expr(scope, u.GetWhereClause()))
		if a.isKeyTable(u.GetRelation()) {
			a.assignments(u.GetTargetList(), "")
		}
		return orCond(append([]*cond{andCond(conds)}, a.with(u.GetWithClause())...))
	case *pg.Node_DeleteStmt:
		d := s.DeleteStmt
		scope := a.relations(nil, d.GetRelation())
		var conds []*cond
		scope, conds = a.from(scope, d.GetUsingClause(), conds)
		conds = append(conds, a.expr(scope, d.GetWhereClause()))
		return orCond(append([]*cond{andCond(conds)}, a.with(d.GetWithClause())...))
	case *pg.Node_ExplainStmt:
		return a.statement(s.ExplainStmt.GetQuery(), false)
	case *pg.Node_CopyStmt:
		if only {
			a.copyStmt(s.CopyStmt)
		}
		// COPY (query) TO runs where its query reads; COPY FROM writes wherever its rows'
		// keys say, which only the data tells.
		if q := s.CopyStmt.GetQuery(); q != nil {
			return a.statement(q, false)
		}
	}
	return nil
}

// with returns the restrictions of a WITH clause's data-modifying CTEs: the statement must
// run where they write. A CTE that only reads does not widen the statement.
func (a *analyzer) with(w *pg.WithClause) []*cond {
	var conds []*cond
	for _, n := range w.GetCtes() {
		q := n.GetCommonTableExpr().GetCtequery()
		switch q.GetNode().(type) {
		case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
			conds = append(conds, a.statement(q, false))
		}
	}
	return conds
}

func (a *analyzer) selectStmt(s *pg.SelectStmt) *cond {
	if s == nil {
		return nil
	}
	if s.GetOp() != pg.SetOperation_SETOP_NONE {
		// UNION, INTERSECT, EXCEPT: wherever either side's rows are.
		return orCond(append([]*cond{a.selectStmt(s.GetLarg()), a.selectStmt(s.GetRarg())}, a.with(s.GetWithClause())...))
	}
	if len(s.GetValuesLists()) > 0 {
		return orCond(append([]*cond{nil}, a.with(s.GetWithClause())...))
	}
	ctes := map[string]*cond{}
	for _, n := range s.GetWithClause().GetCtes() {
		cte := n.GetCommonTableExpr()
		if sel := cte.GetCtequery().GetSelectStmt(); sel != nil && !s.GetWithClause().GetRecursive() {
			ctes[cte.GetCtename()] = a.selectStmt(sel)
		}
	}
	scope, conds := a.fromCTE(nil, s.GetFromClause(), nil, ctes)
	conds = append(conds, a.expr(scope, s.GetWhereClause()))
	return orCond(append([]*cond{andCond(conds)}, a.with(s.GetWithClause())...))
}

// relations adds a statement's target relation to scope.
func (a *analyzer) relations(scope []rel, rv *pg.RangeVar) []rel {
	if rv == nil {
		return scope
	}
	name := rv.GetRelname()
	if al := rv.GetAlias().GetAliasname(); al != "" {
		name = al
	}
	return append(scope, rel{name: name, table: rv.GetRelname()})
}

func (a *analyzer) from(scope []rel, items []*pg.Node, conds []*cond) ([]rel, []*cond) {
	return a.fromCTE(scope, items, conds, nil)
}

// fromCTE adds a FROM list's relations to scope, and the restrictions its inner joins and
// subqueries put on the result to conds. ctes are the restrictions of the CTEs in scope.
func (a *analyzer) fromCTE(scope []rel, items []*pg.Node, conds []*cond, ctes map[string]*cond) ([]rel, []*cond) {
	var pending []*pg.Node // inner joins' ON conditions
	var item func(n *pg.Node, inner bool)
	item = func(n *pg.Node, inner bool) {
		switch x := n.GetNode().(type) {
		case *pg.Node_RangeVar:
			rv := x.RangeVar
			if c, ok := ctes[rv.GetRelname()]; ok && rv.GetSchemaname() == "" {
				name := rv.GetRelname()
				if al := rv.GetAlias().GetAliasname(); al != "" {
					name = al
				}
				scope = append(scope, rel{name: name})
				if inner {
					conds = append(conds, c)
				}
				return
			}
			scope = a.relations(scope, rv)
		case *pg.Node_JoinExpr:
			j := x.JoinExpr
			inJoin := inner && j.GetJointype() == pg.JoinType_JOIN_INNER
			item(j.GetLarg(), inner && (inJoin || j.GetJointype() == pg.JoinType_JOIN_LEFT))
			item(j.GetRarg(), inner && (inJoin || j.GetJointype() == pg.JoinType_JOIN_RIGHT))
			if inJoin && j.GetQuals() != nil {
				// Resolved at the end, once every relation of the FROM list is in scope.
				pending = append(pending, j.GetQuals())
			}
		case *pg.Node_RangeSubselect:
			sub := x.RangeSubselect
			scope = append(scope, rel{name: sub.GetAlias().GetAliasname()})
			if inner {
				if sel := sub.GetSubquery().GetSelectStmt(); sel != nil {
					conds = append(conds, a.selectStmt(sel))
				}
			}
		case *pg.Node_RangeFunction:
			scope = append(scope, rel{name: x.RangeFunction.GetAlias().GetAliasname()})
		}
	}
	for _, n := range items {
		item(n, true)
	}
	for _, q := range pending {
		conds = append(conds, a.expr(scope, q))
	}
	return scope, conds
}
