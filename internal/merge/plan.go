// Package merge runs one read on several shards as if it ran on one database: it plans the
// query each shard gets (LIMIT widened, OFFSET dropped, the sums and counts an avg needs added)
// and merges the shards' replies at the wire level: rows concatenated, ORDER BY merged, LIMIT
// and OFFSET applied after the merge, count, sum, min, max and avg combined per GROUP BY group.
//
// What cannot be merged correctly is refused with an *UnsupportedError naming the construct
// (DISTINCT, window functions, HAVING, aggregates other than the five, ORDER BY an expression
// that is not in the select list, FOR UPDATE, subqueries that aggregate or limit, ...), never
// answered wrongly.
//
// Values are compared in their text form by the column's type: integers, numeric, float4 and
// float8 by value; text, varchar, bpchar and name by their bytes (Postgres' C collation: under
// another collation the merged order can differ from one database's); date, timestamp and
// timestamptz in the ISO DateStyle; bool, uuid and time. A column of another type can be
// returned but not ordered, grouped-and-aggregated with min/max, or summed.
//
// The package knows SQL and the wire format and nothing else: it never touches a connection.
// It is safe for concurrent use.
package merge

import (
	"errors"
	"fmt"
	"github.com/sluicepg/sluice/internal/textcache"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Kind is what a query text is, as far as running it on several shards goes.
type Kind uint8

const (
	// Invalid: the text was not parsed (a parse error, a zero byte, or longer than the limit).
	Invalid Kind = iota
	// Select is one SELECT (or VALUES, TABLE): a read whose results can be merged, unless
	// Plan.Refused says why not.
	Select
	// DML is one INSERT, UPDATE, DELETE or MERGE: it can run inside a transaction block.
	DML
	// Utility is one statement of another kind: DDL, VACUUM, SET, ...
	Utility
	// Multi is a text of several statements.
	Multi
)

// UnsupportedError says which construct of a query cannot be merged across shards.
type UnsupportedError struct {
	Construct string // e.g. "DISTINCT", "window functions"
	Reason    string // why, for the user
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s cannot be run across shards: %s", e.Construct, e.Reason)
}

func unsupported(construct, reason string) *UnsupportedError {
	return &UnsupportedError{Construct: construct, Reason: reason}
}

// ErrTooLong is wrapped by Plan.ParseErr for a text longer than Options.MaxLength.
var ErrTooLong = errors.New("query text too long to parse for a cross-shard plan")

// Plan is how one query text runs on several shards. Plans are shared through the Planner's
// cache and must not be modified.
type Plan struct {
	Kind Kind
	// ParseErr is set for Invalid.
	ParseErr error
	// Refused is set for a Select that cannot be merged correctly.
	Refused *UnsupportedError
	// Tables are the names of the relations the text reads or writes (as parsed: unquoted
	// names in lower case, without schema), for the caller's "does it touch the sharded
	// table".
	Tables []string
	// Query is the text each shard runs (for a Select; the original text otherwise).
	Query string

	sort   []sortKey
	limit  int64 // -1: none
	offset int64 // 0: none
	// limitParam and offsetParam are the numbers of the parameters ($n) that give the LIMIT
	// and OFFSET, 0 for none: their values come with each Bind (see Bind).
	limitParam, offsetParam int
	// agg is set for a Select that aggregates or groups: rows are combined by group.
	agg bool
	// cols describes each output column of an aggregating Select (len = visible columns).
	cols []colPlan
	// hidden is the number of columns appended for avg, dropped from the output.
	hidden int
}

// Unordered reports whether the plan is a Select whose answer is the shards' rows in any
// order, as they come: no ORDER BY, LIMIT, OFFSET, aggregate or GROUP BY to apply, and nothing
// refused. Such a Select runs on each shard as it is (Query is the original text). COPY
// (query) TO STDOUT runs across shards only then: its rows are COPY data, which sluice passes
// on without reading.
func (p *Plan) Unordered() bool {
	return p.Kind == Select && p.Refused == nil && len(p.sort) == 0 && p.limit < 0 && p.offset == 0 && !p.agg && p.hidden == 0 &&
		p.limitParam == 0 && p.offsetParam == 0
}

// ValueError is a value that the query refuses as Postgres would, with its SQLSTATE: a
// negative LIMIT or OFFSET given by a parameter.
type ValueError struct {
	Code, Message string
}

func (e *ValueError) Error() string { return e.Message }

// Bind returns the plan for one execution of an extended-protocol statement with the Bind's
// parameter values (nil for NULL) and formats (binary or text): the plan itself when its LIMIT
// and OFFSET take no parameter, else a copy with their values. A NULL LIMIT means none, a NULL
// OFFSET zero, as in Postgres; a negative one is a *ValueError (2201W, 2201X).
func (p *Plan) Bind(vals [][]byte, binary []bool) (*Plan, error) {
	if p.limitParam == 0 && p.offsetParam == 0 {
		return p, nil
	}
	q := *p
	if p.offsetParam > 0 {
		v, null, err := paramInt(vals, binary, p.offsetParam)
		switch {
		case err != nil:
			return nil, err
		case null:
			q.offset = 0
		case v < 0:
			return nil, &ValueError{"2201X", "OFFSET must not be negative"}
		default:
			q.offset = v
		}
	}
	if p.limitParam > 0 {
		v, null, err := paramInt(vals, binary, p.limitParam)
		switch {
		case err != nil:
			return nil, err
		case null:
			q.limit = -1
		case v < 0:
			return nil, &ValueError{"2201W", "LIMIT must not be negative"}
		default:
			q.limit = v
		}
	}
	return &q, nil
}

// paramInt reads parameter $n as an integer: text, or binary int2, int4 or int8.
func paramInt(vals [][]byte, binary []bool, n int) (v int64, null bool, err error) {
	if n > len(vals) || n > len(binary) {
		return 0, false, &ValueError{"08P01", fmt.Sprintf("the Bind has %d parameters; the statement uses $%d", len(vals), n)}
	}
	b := vals[n-1]
	if b == nil {
		return 0, true, nil
	}
	if binary[n-1] {
		v, err = binaryInt(b)
	} else {
		v, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if err != nil {
		return 0, false, &ValueError{"22P02", fmt.Sprintf("invalid input syntax for type bigint: %q", b)}
	}
	return v, false, nil
}

// sortKey is one ORDER BY item mapped to a result column: by index, or (col < 0) by name,
// looked up in the RowDescription when the select list has a star.
type sortKey struct {
	col        int
	name       string
	desc       bool
	nullsFirst bool
}

type colKind uint8

const (
	colValue colKind = iota // a group key, a constant or a value fixed by the group: any row's
	colCount
	colSum
	colMin
	colMax
	colAvg
)

type colPlan struct {
	kind colKind
	// sumCol and countCol are the hidden columns of an avg.
	sumCol, countCol int
}

// Options configure a Planner.
type Options struct {
	// MaxLength is the longest text that is parsed; 0 means 16 KiB. As in internal/classify,
	// the limit protects the process: pg_query's C parser recurses once per level of nesting
	// and a deeply nested text overflows the thread's stack.
	MaxLength int
	// CacheSize bounds the number of cached plans (0: 2,000); CacheBytes their memory (0: 8 MiB).
	CacheSize  int
	CacheBytes int
}

// DefaultMaxLength is Options.MaxLength's default.
const DefaultMaxLength = 16 << 10

// Planner plans query texts, with a bounded cache of plans per text.
type Planner struct {
	maxLength int
	cache     *textcache.Cache[*Plan]
}

// NewPlanner returns a Planner for o.
func NewPlanner(o Options) *Planner {
	p := &Planner{maxLength: o.MaxLength}
	if p.maxLength <= 0 {
		p.maxLength = DefaultMaxLength
	}
	size, budget := o.CacheSize, o.CacheBytes
	if size <= 0 {
		size = 2000
	}
	if budget <= 0 {
		budget = 8 << 20
	}
	p.cache = textcache.New[*Plan](size, budget)
	return p
}

// Plan returns the plan of a query text (a simple Query's text without its NUL). It never
// returns nil and never panics on any input.
func (p *Planner) Plan(text []byte) *Plan {
	if len(text) > p.maxLength {
		return &Plan{ParseErr: fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(text), p.maxLength)}
	}
	if pl, ok := p.cache.Get(text); ok {
		return pl
	}
	pl := plan(string(text))
	p.cache.Put(string(text), pl, 2*len(text)+len(pl.Query)+256)
	return pl
}

// pgVersion is the parse tree version of the linked parser, for trees built by hand.
var pgVersion = func() int32 {
	tree, err := pg.Parse("SELECT")
	if err != nil {
		return 0
	}
	return tree.GetVersion()
}()

func plan(text string) *Plan {
	if strings.IndexByte(text, 0) >= 0 {
		return &Plan{ParseErr: errors.New("query text contains a zero byte")}
	}
	tree, err := pg.Parse(text)
	if err != nil {
		return &Plan{ParseErr: err}
	}
	pl := &Plan{Query: text, limit: -1}
	pl.Tables = tables(tree)
	stmts := tree.GetStmts()
	if len(stmts) != 1 {
		pl.Kind = Multi
		if len(stmts) == 0 {
			pl.Kind = Utility
		}
		return pl
	}
	n := stmts[0].GetStmt()
	switch {
	case n.GetSelectStmt() != nil:
		pl.Kind = Select
	case n.GetInsertStmt() != nil, n.GetUpdateStmt() != nil, n.GetDeleteStmt() != nil, n.GetMergeStmt() != nil:
		pl.Kind = DML
		return pl
	default:
		pl.Kind = Utility
		return pl
	}
	if err := planSelect(pl, tree, n.GetSelectStmt()); err != nil {
		pl.Refused = err
	}
	return pl
}

// tables lists the relation names under the tree.
func tables(tree *pg.ParseResult) []string {
	var out []string
	walk(tree.ProtoReflect(), func(m proto.Message) bool {
		if rv, ok := m.(*pg.RangeVar); ok {
			for _, t := range out {
				if t == rv.GetRelname() {
					return true
				}
			}
			out = append(out, rv.GetRelname())
		}
		return true
	})
	return out
}

// The aggregates sluice merges, and others it knows to refuse. Any function called with
// DISTINCT, ORDER BY, FILTER, WITHIN GROUP or * is an aggregate too.
var mergeable = map[string]colKind{"count": colCount, "sum": colSum, "min": colMin, "max": colMax, "avg": colAvg}

var otherAggregates = map[string]bool{
	"array_agg": true, "string_agg": true, "json_agg": true, "jsonb_agg": true, "json_object_agg": true,
	"jsonb_object_agg": true, "json_agg_strict": true, "jsonb_agg_strict": true, "json_objectagg": true,
	"json_arrayagg": true, "xmlagg": true, "bool_and": true, "bool_or": true, "every": true,
	"bit_and": true, "bit_or": true, "bit_xor": true, "stddev": true, "stddev_pop": true,
	"stddev_samp": true, "variance": true, "var_pop": true, "var_samp": true, "corr": true,
	"covar_pop": true, "covar_samp": true, "regr_avgx": true, "regr_avgy": true, "regr_count": true,
	"regr_intercept": true, "regr_r2": true, "regr_slope": true, "regr_sxx": true, "regr_sxy": true,
	"regr_syy": true, "percentile_cont": true, "percentile_disc": true, "mode": true,
	"any_value": true, "range_agg": true, "range_intersect_agg": true, "grouping": true,
}

// funcName returns a call's function name without schema, and whether the schema (if any)
// is pg_catalog.
func funcName(fc *pg.FuncCall) (string, bool) {
	names := fc.GetFuncname()
	if len(names) == 0 {
		return "", false
	}
	last := names[len(names)-1].GetString_().GetSval()
	return last, len(names) == 1 || (len(names) == 2 && names[0].GetString_().GetSval() == "pg_catalog")
}

// aggregate says what a call is: a mergeable aggregate (kind, true, nil), a non-aggregate
// (0, false, nil), or an aggregate that cannot be merged (an error).
func aggregate(fc *pg.FuncCall) (colKind, bool, *UnsupportedError) {
	name, catalog := funcName(fc)
	if fc.GetOver() != nil {
		return 0, false, unsupported("window functions", "each shard sees only its own rows; run the query on one shard (SET SHARD) or compute the window in the application")
	}
	k, known := mergeable[name]
	isAgg := known || otherAggregates[name] || fc.GetAggStar() || fc.GetAggDistinct() ||
		fc.GetAggWithinGroup() || len(fc.GetAggOrder()) > 0
	if !isAgg {
		return 0, false, nil
	}
	if !known || !catalog {
		return 0, false, unsupported("the aggregate "+name+"()", "sluice merges count, sum, min, max and avg only")
	}
	if fc.GetAggDistinct() {
		return 0, false, unsupported(name+"(DISTINCT ...)", "a value may appear on several shards")
	}
	if len(fc.GetAggOrder()) > 0 || fc.GetAggWithinGroup() {
		return 0, false, unsupported(name+"() with ORDER BY or WITHIN GROUP", "sluice merges plain count, sum, min, max and avg only")
	}
	return k, true, nil
}

// setReturning lists functions that return sets, refused in the select list of an aggregating
// query: they multiply the rows of a group per shard.
var setReturning = map[string]bool{
	"generate_series": true, "unnest": true, "json_array_elements": true, "jsonb_array_elements": true,
	"json_array_elements_text": true, "jsonb_array_elements_text": true, "json_each": true,
	"jsonb_each": true, "json_each_text": true, "jsonb_each_text": true, "json_object_keys": true,
	"jsonb_object_keys": true, "regexp_matches": true, "regexp_split_to_table": true,
	"string_to_table": true, "generate_subscripts": true, "jsonb_path_query": true, "pg_ls_dir": true,
}

func planSelect(pl *Plan, tree *pg.ParseResult, s *pg.SelectStmt) *UnsupportedError {
	if s.GetOp() != pg.SetOperation_SETOP_NONE && s.GetOp() != pg.SetOperation_SET_OPERATION_UNDEFINED {
		return unsupported("UNION, INTERSECT and EXCEPT", "their parts would be combined per shard")
	}
	switch {
	case s.GetIntoClause() != nil:
		return unsupported("SELECT INTO", "it creates a table")
	case len(s.GetLockingClause()) > 0:
		return unsupported("FOR UPDATE and FOR SHARE", "row locks on several shards are not one transaction")
	case len(s.GetDistinctClause()) > 0:
		return unsupported("DISTINCT", "the same row may come from several shards")
	case len(s.GetWindowClause()) > 0:
		return unsupported("window functions", "each shard sees only its own rows")
	case s.GetHavingClause() != nil:
		return unsupported("HAVING", "a group's rows may be on several shards, so the condition holds only for the merged group")
	case s.GetGroupDistinct():
		return unsupported("GROUP BY DISTINCT", "sluice merges plain GROUP BY only")
	case s.GetLimitOption() == pg.LimitOption_LIMIT_OPTION_WITH_TIES:
		return unsupported("FETCH ... WITH TIES", "sluice merges plain LIMIT only")
	}
	if w := s.GetWithClause(); w != nil && w.GetRecursive() {
		return unsupported("WITH RECURSIVE", "the recursion would run per shard")
	}
	// Nested queries (subqueries, CTEs) run on each shard against that shard's rows: fine for
	// plain row filters (joins are taken to be co-located, as key extraction takes them), wrong
	// for anything that summarises rows.
	var bad *UnsupportedError
	for _, child := range children(s) {
		walk(child, func(m proto.Message) bool {
			if bad != nil {
				return false
			}
			switch n := m.(type) {
			case *pg.SelectStmt:
				bad = checkNested(n)
			case *pg.FuncCall:
				if n.GetOver() != nil {
					bad = unsupported("window functions", "each shard sees only its own rows")
				}
			case *pg.InsertStmt, *pg.UpdateStmt, *pg.DeleteStmt, *pg.MergeStmt:
				bad = unsupported("a data-modifying WITH", "it writes")
			}
			return bad == nil
		})
	}
	if bad != nil {
		return bad
	}

	targets := s.GetTargetList()
	star := false
	qualifiedStar := false
	aggs := 0
	kinds := make([]colKind, len(targets))
	for i, t := range targets {
		rt := t.GetResTarget()
		if cr := rt.GetVal().GetColumnRef(); cr != nil {
			if f := cr.GetFields(); len(f) > 0 && f[len(f)-1].GetAStar() != nil {
				star = true
				if len(f) > 1 {
					qualifiedStar = true
				}
				continue
			}
		}
		if fc := rt.GetVal().GetFuncCall(); fc != nil {
			k, ok, err := aggregate(fc)
			if err != nil {
				return err
			}
			if ok {
				for _, a := range fc.GetArgs() {
					if containsAggregate(a) {
						return unsupported("an aggregate inside an aggregate", "Postgres refuses it too")
					}
				}
				kinds[i] = k
				aggs++
				continue
			}
		}
		if err := aggregateInside(rt.GetVal()); err != nil {
			return err
		}
	}
	groups := s.GetGroupClause()
	pl.agg = aggs > 0 || len(groups) > 0
	if pl.agg && star {
		return unsupported("SELECT * with GROUP BY or aggregates", "name the columns in the select list")
	}
	if pl.agg {
		for i, t := range targets {
			if kinds[i] != colValue {
				continue
			}
			bad := false
			walk(t.ProtoReflect(), func(m proto.Message) bool {
				if fc, ok := m.(*pg.FuncCall); ok {
					if name, _ := funcName(fc); setReturning[name] {
						bad = true
					}
				}
				return !bad
			})
			if bad {
				return unsupported("a set-returning function in the select list of an aggregating query", "it changes the number of rows per group")
			}
		}
		for _, g := range groups {
			if g.GetGroupingSet() != nil {
				return unsupported("GROUPING SETS, ROLLUP and CUBE", "sluice merges plain GROUP BY only")
			}
			if col := outputColumn(g, targets); col < 0 {
				return unsupported("GROUP BY an expression that is not in the select list", "sluice merges groups by their result columns: add "+deparseExpr(g)+" to the select list")
			} else if kinds[col] != colValue {
				return unsupported("GROUP BY an aggregate", "Postgres refuses it too")
			}
		}
	}

	// ORDER BY.
	for _, n := range s.GetSortClause() {
		sb := n.GetSortBy()
		if sb.GetSortbyDir() == pg.SortByDir_SORTBY_USING {
			return unsupported("ORDER BY ... USING", "sluice orders by the column types' default order only")
		}
		k := sortKey{col: -1, desc: sb.GetSortbyDir() == pg.SortByDir_SORTBY_DESC}
		switch sb.GetSortbyNulls() {
		case pg.SortByNulls_SORTBY_NULLS_FIRST:
			k.nullsFirst = true
		case pg.SortByNulls_SORTBY_NULLS_LAST:
		default:
			k.nullsFirst = k.desc // Postgres: NULLS LAST for ASC, NULLS FIRST for DESC
		}
		expr := sb.GetNode()
		if c := expr.GetAConst(); c != nil && c.GetIval() != nil {
			k.col = int(c.GetIval().GetIval()) - 1 // a position in the output, star or not
			if k.col < 0 {
				return unsupported("ORDER BY a position below 1", "Postgres refuses it too")
			}
		} else if col := outputColumn(expr, targets); col >= 0 && !starBefore(targets, col) {
			k.col = col
		} else if cr := expr.GetColumnRef(); cr != nil && star && (len(cr.GetFields()) == 1 || !qualifiedStar) {
			// With a star, a column's position is known from the RowDescription only.
			f := cr.GetFields()
			k.name = f[len(f)-1].GetString_().GetSval()
			if k.name == "" {
				return unsupported("ORDER BY "+deparseExpr(expr), "it is not a column of the result")
			}
		} else {
			return unsupported("ORDER BY an expression that is not in the select list", "sluice merges by result columns: add "+deparseExpr(expr)+" to the select list")
		}
		if pl.agg && k.col < 0 {
			return unsupported("ORDER BY "+deparseExpr(expr), "it is not a column of the result")
		}
		pl.sort = append(pl.sort, k)
	}

	// LIMIT and OFFSET: numbers, or parameters whose values each Bind gives.
	limit, lok := constInt(s.GetLimitCount())
	offset, ook := constInt(s.GetLimitOffset())
	lparam, oparam := paramNumber(s.GetLimitCount()), paramNumber(s.GetLimitOffset())
	if !lok && lparam == 0 {
		return unsupported("a LIMIT that is not a number", "sluice applies LIMIT after merging and must know it")
	}
	if !ook && oparam == 0 {
		return unsupported("an OFFSET that is not a number", "sluice applies OFFSET after merging and must know it")
	}
	if lparam > 0 {
		limit = -1
	}
	if offset == -1 || oparam > 0 {
		offset = 0 // none, or known at the Bind
	}
	if limit < -1 || offset < 0 {
		return nil // negative: each shard reports Postgres' error; nothing to merge
	}
	pl.limit, pl.offset = limit, offset
	pl.limitParam, pl.offsetParam = lparam, oparam
	// The LIMIT each shard gets: limit+offset, as text; "" for none.
	lim, off := strconv.FormatInt(limit, 10), strconv.FormatInt(offset, 10)
	if lparam > 0 {
		lim = fmt.Sprintf("$%d::int8", lparam)
	} else if limit < 0 {
		lim = ""
	}
	if oparam > 0 {
		off = fmt.Sprintf("$%d::int8", oparam)
	}

	// The text each shard runs.
	rewrite := false
	stmt := proto.Clone(s).(*pg.SelectStmt)
	if pl.agg {
		if stmt.LimitCount != nil || stmt.LimitOffset != nil {
			// Groups are complete only after the merge: no limit per shard. A parameter
			// stays in the text, without effect, so that the server still knows its type.
			stmt.LimitCount, stmt.LimitOffset = nil, nil
			stmt.LimitOption = pg.LimitOption_LIMIT_OPTION_DEFAULT
			if lparam > 0 {
				stmt.LimitCount = exprNode(fmt.Sprintf("NULLIF(%s, %s)", lim, lim))
				stmt.LimitOption = pg.LimitOption_LIMIT_OPTION_COUNT
			}
			if oparam > 0 {
				stmt.LimitOffset = exprNode(off + " * 0")
			}
			rewrite = true
		}
		pl.cols = make([]colPlan, len(targets))
		for i, t := range targets {
			pl.cols[i].kind = kinds[i]
			if kinds[i] != colAvg {
				continue
			}
			fc := t.GetResTarget().GetVal().GetFuncCall()
			for j, fn := range []string{"sum", "count"} {
				c := proto.Clone(fc).(*pg.FuncCall)
				c.Funcname = []*pg.Node{pg.MakeStrNode("pg_catalog"), pg.MakeStrNode(fn)}
				stmt.TargetList = append(stmt.TargetList, pg.MakeResTargetNodeWithVal(&pg.Node{Node: &pg.Node_FuncCall{FuncCall: c}}, 0))
				if j == 0 {
					pl.cols[i].sumCol = len(stmt.TargetList) - 1
				} else {
					pl.cols[i].countCol = len(stmt.TargetList) - 1
				}
			}
			pl.hidden += 2
			rewrite = true
		}
	} else if offset > 0 || oparam > 0 {
		// Each shard returns its first limit+offset rows; the offset is taken after the merge.
		stmt.LimitOffset = nil
		switch {
		case lparam > 0 || (oparam > 0 && lim != ""):
			stmt.LimitCount = exprNode(lim + " + " + off)
			stmt.LimitOption = pg.LimitOption_LIMIT_OPTION_COUNT
		case lim != "":
			stmt.LimitCount = intConst(satAdd(limit, offset))
		case oparam > 0:
			stmt.LimitOffset = exprNode(off + " * 0") // see above
		}
		rewrite = true
	}
	if rewrite {
		q, err := pg.Deparse(&pg.ParseResult{Version: tree.GetVersion(), Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: stmt}}}}})
		if err != nil {
			return unsupported("this query", "it could not be rewritten for the shards: "+err.Error())
		}
		pl.Query = q
	}
	return nil
}

// checkNested refuses a nested SELECT that summarises rows: on each shard it would summarise
// that shard's rows only.
func checkNested(s *pg.SelectStmt) *UnsupportedError {
	const why = "a subquery runs on each shard against that shard's rows only"
	switch {
	case s.GetOp() != pg.SetOperation_SETOP_NONE && s.GetOp() != pg.SetOperation_SET_OPERATION_UNDEFINED && !s.GetAll():
		return unsupported("UNION, INTERSECT or EXCEPT in a subquery", why)
	case len(s.GetDistinctClause()) > 0:
		return unsupported("DISTINCT in a subquery", why)
	case len(s.GetGroupClause()) > 0 || s.GetHavingClause() != nil:
		return unsupported("GROUP BY or HAVING in a subquery", why)
	case s.GetLimitCount() != nil || s.GetLimitOffset() != nil:
		return unsupported("LIMIT or OFFSET in a subquery", why)
	case s.GetWithClause().GetRecursive():
		return unsupported("WITH RECURSIVE", why)
	}
	var bad *UnsupportedError
	for _, child := range children(s) {
		walk(child, func(m proto.Message) bool {
			if _, ok := m.(*pg.SelectStmt); ok {
				return false // checked on its own
			}
			if fc, ok := m.(*pg.FuncCall); ok {
				if _, isAgg, err := aggregate(fc); err != nil && err.Construct == "window functions" {
					bad = err
				} else if err != nil || isAgg {
					name, _ := funcName(fc)
					bad = unsupported("the aggregate "+name+"() in a subquery", why)
				}
			}
			return bad == nil
		})
	}
	return bad
}

// children returns the fields of a SELECT that belong to it, not to the SELECTs nested in it
// directly (set operations' arms): the walk visits nested SELECTs itself.
func children(s *pg.SelectStmt) []protoreflect.Message {
	var out []protoreflect.Message
	m := s.ProtoReflect()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				out = append(out, l.Get(i).Message())
			}
		} else {
			out = append(out, v.Message())
		}
		return true
	})
	return out
}

// containsAggregate reports whether a mergeable or known aggregate is called under n, outside
// nested SELECTs.
func containsAggregate(n *pg.Node) bool {
	found := false
	walk(n.ProtoReflect(), func(m proto.Message) bool {
		switch x := m.(type) {
		case *pg.SelectStmt:
			return false
		case *pg.FuncCall:
			if _, ok, err := aggregate(x); ok || err != nil {
				found = true
			}
		}
		return !found
	})
	return found
}

// aggregateInside refuses an expression that has an aggregate (or a window function) inside
// it: count(*) + 1 cannot be recomputed from the shards' results.
func aggregateInside(n *pg.Node) *UnsupportedError {
	var bad *UnsupportedError
	walk(n.ProtoReflect(), func(m proto.Message) bool {
		switch x := m.(type) {
		case *pg.SelectStmt:
			return false
		case *pg.FuncCall:
			_, ok, err := aggregate(x)
			switch {
			case err != nil:
				bad = err
			case ok:
				bad = unsupported("an expression over an aggregate ("+deparseExpr(n)+")", "sluice merges plain aggregate columns only: compute the expression in the application, or select the aggregate alone")
			}
		}
		return bad == nil
	})
	return bad
}

// outputColumn returns the index of the select-list item that expr names: a position, an
// output name (alias, or a plain column's name), or the same expression. -1 when none.
func outputColumn(expr *pg.Node, targets []*pg.Node) int {
	if c := expr.GetAConst(); c != nil && c.GetIval() != nil {
		i := int(c.GetIval().GetIval()) - 1
		if i >= 0 && i < len(targets) {
			return i
		}
		return -1
	}
	for i, t := range targets {
		if sameExpr(expr, t.GetResTarget().GetVal()) {
			return i
		}
	}
	if cr := expr.GetColumnRef(); cr != nil && len(cr.GetFields()) == 1 {
		name := cr.GetFields()[0].GetString_().GetSval()
		found := -1
		for i, t := range targets {
			if outputName(t.GetResTarget()) == name {
				if found >= 0 {
					return -1 // ambiguous
				}
				found = i
			}
		}
		return found
	}
	return -1
}

// outputName is the name Postgres gives a select-list item's column: its alias, a column
// reference's last name, a function's name; "" when unknown.
func outputName(rt *pg.ResTarget) string {
	if rt.GetName() != "" {
		return rt.GetName()
	}
	v := rt.GetVal()
	if cr := v.GetColumnRef(); cr != nil {
		f := cr.GetFields()
		return f[len(f)-1].GetString_().GetSval()
	}
	if fc := v.GetFuncCall(); fc != nil {
		name, _ := funcName(fc)
		return name
	}
	return ""
}

func starBefore(targets []*pg.Node, col int) bool {
	for _, t := range targets[:col+1] {
		if cr := t.GetResTarget().GetVal().GetColumnRef(); cr != nil {
			if f := cr.GetFields(); len(f) > 0 && f[len(f)-1].GetAStar() != nil {
				return true
			}
		}
	}
	return false
}

// sameExpr compares two expressions, ignoring where in the text they are.
func sameExpr(a, b *pg.Node) bool {
	if a == nil || b == nil {
		return false
	}
	ca, cb := proto.Clone(a), proto.Clone(b)
	clearLocations(ca.ProtoReflect())
	clearLocations(cb.ProtoReflect())
	return proto.Equal(ca, cb)
}

func clearLocations(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "location" && fd.Kind() == protoreflect.Int32Kind:
			m.Clear(fd)
		case fd.Message() != nil && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearLocations(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			clearLocations(v.Message())
		}
		return true
	})
}

// walk calls f for every message under m, m included, in field order; f returns false to
// skip a message's children.
func walk(m protoreflect.Message, f func(proto.Message) bool) {
	if !f(m.Interface()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), f)
			}
		} else {
			walk(v.Message(), f)
		}
		return true
	})
}

// constInt reads a LIMIT or OFFSET: -1 and true for none (absent, NULL or ALL), the number
// and true for an integer constant, false otherwise.
func constInt(n *pg.Node) (int64, bool) {
	if n == nil {
		return -1, true
	}
	c := n.GetAConst()
	if c == nil {
		return 0, false
	}
	if c.GetIsnull() {
		return -1, true
	}
	if iv := c.GetIval(); iv != nil {
		return int64(iv.GetIval()), true
	}
	if fv := c.GetFval(); fv != nil {
		v, err := strconv.ParseInt(fv.GetFval(), 10, 64)
		return v, err == nil
	}
	return 0, false
}

// paramNumber returns the number of the parameter a LIMIT or OFFSET is ($n, or $n cast to a
// type), 0 when it is not one.
func paramNumber(n *pg.Node) int {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.GetArg()
	}
	if pr := n.GetParamRef(); pr != nil && pr.GetNumber() > 0 {
		return int(pr.GetNumber())
	}
	return 0
}

// exprNode parses an expression that sluice wrote (numbers, parameters, operators).
func exprNode(expr string) *pg.Node {
	tree, err := pg.Parse("SELECT " + expr)
	if err != nil {
		panic("merge: parse " + expr + ": " + err.Error())
	}
	return tree.GetStmts()[0].GetStmt().GetSelectStmt().GetTargetList()[0].GetResTarget().GetVal()
}

func intConst(v int64) *pg.Node {
	if v == int64(int32(v)) {
		return pg.MakeAConstIntNode(v, 0)
	}
	return &pg.Node{Node: &pg.Node_AConst{AConst: &pg.A_Const{Val: &pg.A_Const_Fval{Fval: &pg.Float{Fval: strconv.FormatInt(v, 10)}}}}}
}

func satAdd(a, b int64) int64 {
	if a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}

// deparseExpr returns an expression's SQL text, for error messages.
func deparseExpr(n *pg.Node) string {
	sel := &pg.SelectStmt{TargetList: []*pg.Node{pg.MakeResTargetNodeWithVal(n, 0)}}
	q, err := pg.Deparse(&pg.ParseResult{Version: pgVersion, Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: sel}}}}})
	if err != nil {
		return "the expression"
	}
	return strings.TrimPrefix(q, "SELECT ")
}
