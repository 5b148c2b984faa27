package shard

import (
	"strconv"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// expr returns the restriction a boolean expression (a WHERE clause, a join's ON) puts on the
// key. Only conjunctions, disjunctions, key = value, value = key, key IN (values) and
// key = ANY(ARRAY[values]) restrict it; anything else (NOT, <>, <, a function of the key, a
// subquery) does not. Subqueries are not entered: their restrictions are theirs, not the
// statement's.
func (a *analyzer) expr(scope []rel, n *pg.Node) *cond {
	switch x := n.GetNode().(type) {
	case *pg.Node_BoolExpr:
		b := x.BoolExpr
		var kids []*cond
		for _, arg := range b.GetArgs() {
			kids = append(kids, a.expr(scope, arg))
		}
		switch b.GetBoolop() {
		case pg.BoolExprType_AND_EXPR:
			return andCond(kids)
		case pg.BoolExprType_OR_EXPR:
			return orCond(kids)
		}
	case *pg.Node_AExpr:
		e := x.AExpr
		if opName(e.GetName()) != "=" {
			return nil
		}
		switch e.GetKind() {
		case pg.A_Expr_Kind_AEXPR_OP:
			if a.isKey(scope, e.GetLexpr()) {
				if v, ok := a.value(e.GetRexpr()); ok {
					return &cond{op: condIn, vals: []value{v}}
				}
			} else if a.isKey(scope, e.GetRexpr()) {
				if v, ok := a.value(e.GetLexpr()); ok {
					return &cond{op: condIn, vals: []value{v}}
				}
			}
		case pg.A_Expr_Kind_AEXPR_IN:
			if a.isKey(scope, e.GetLexpr()) {
				return a.values(e.GetRexpr().GetList().GetItems())
			}
		case pg.A_Expr_Kind_AEXPR_OP_ANY:
			if a.isKey(scope, e.GetLexpr()) {
				r := e.GetRexpr()
				for r.GetTypeCast() != nil {
					r = r.GetTypeCast().GetArg()
				}
				if arr := r.GetAArrayExpr(); arr != nil {
					return a.values(arr.GetElements())
				}
				if p := r.GetParamRef().GetNumber(); p > 0 {
					// key = ANY($1): the keys are the parameter's elements.
					return &cond{op: condIn, vals: []value{{param: int(p), array: true}}}
				}
				if sv := r.GetAConst().GetSval(); sv != nil {
					return a.arrayConst(sv.GetSval())
				}
			}
		}
	}
	return nil
}

// arrayConst returns the restriction of key = ANY('{1,2}'): the key is one of the elements of
// an array written as a string constant (as array_in reads it), or nil if one of them is not a
// key value. The statement is then not shared by its shape: the shape's literal is the whole
// array, which a text of the same shape may fill with keys of other shards.
func (a *analyzer) arrayConst(text string) *cond {
	a.st.noShape = true
	var set Set
	ok := textArray([]byte(text), func(e []byte) bool {
		if e == nil {
			return true // a NULL element matches no row
		}
		sh, err := a.e.sharder.Shard(e)
		set.Add(sh)
		return err == nil
	})
	if !ok {
		return nil
	}
	return &cond{op: condIn, vals: []value{{set: &set}}}
}

// values returns the restriction "the key is one of these", or nil if one is not a value.
func (a *analyzer) values(items []*pg.Node) *cond {
	if len(items) == 0 {
		return nil
	}
	c := &cond{op: condIn}
	for _, it := range items {
		v, ok := a.value(it)
		if !ok {
			return nil
		}
		c.vals = append(c.vals, v)
	}
	return c
}

// opName returns an operator's name without its schema ("=" for OPERATOR(pg_catalog.=)).
func opName(name []*pg.Node) string {
	if len(name) == 0 {
		return ""
	}
	return name[len(name)-1].GetString_().GetSval()
}

// isKey reports whether n is a reference to the sharding key column.
func (a *analyzer) isKey(scope []rel, n *pg.Node) bool {
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	f := cr.GetFields()
	if len(f) == 0 || f[len(f)-1].GetString_().GetSval() != a.e.column {
		return false
	}
	if a.e.table == "*" {
		return true
	}
	switch len(f) {
	case 1:
		// An unqualified column is the key when the key's table is in scope: were it another
		// relation's column of the same name, Postgres would reject it as ambiguous.
		for _, r := range scope {
			if r.table == a.e.table {
				return true
			}
		}
		return false
	case 2:
		q := f[0].GetString_().GetSval()
		for _, r := range scope {
			if r.name == q {
				return r.table == a.e.table
			}
		}
		// Not a relation of this level (an outer query's): pgcat's rule, by name.
		return q == a.e.table
	default:
		// schema.table.column, or database.schema.table.column.
		return f[len(f)-2].GetString_().GetSval() == a.e.table
	}
}

// isKeyTable reports whether a statement's target relation is the key's table.
func (a *analyzer) isKeyTable(rv *pg.RangeVar) bool {
	return rv != nil && (a.e.table == "*" || rv.GetRelname() == a.e.table)
}

// value reads a key value: a constant or a parameter, possibly cast ('5'::bigint, $1::uuid).
func (a *analyzer) value(n *pg.Node) (value, bool) {
	for n.GetTypeCast() != nil {
		n = n.GetTypeCast().GetArg()
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_ParamRef:
		if p := x.ParamRef.GetNumber(); p > 0 {
			return value{param: int(p)}, true
		}
	case *pg.Node_AConst:
		c := x.AConst
		if c.GetIsnull() {
			return value{null: true}, true
		}
		var text string
		switch v := c.GetVal().(type) {
		case *pg.A_Const_Ival:
			text = strconv.FormatInt(int64(v.Ival.GetIval()), 10)
		case *pg.A_Const_Fval:
			text = v.Fval.GetFval()
		case *pg.A_Const_Sval:
			text = v.Sval.GetSval()
		default:
			return value{}, false
		}
		sh, err := a.e.sharder.Shard([]byte(text))
		v := value{known: err == nil, sh: sh}
		if a.lits != nil {
			v.lit = a.literal(int(c.GetLocation()), text)
			if v.lit == 0 {
				a.st.noShape = true
			}
		}
		return v, true
	}
	return value{}, false
}

// assignments records the values an UPDATE's SET list (or an ON CONFLICT DO UPDATE's) gives
// the key. excluded is "excluded" for ON CONFLICT, where SET key = EXCLUDED.key keeps the
// conflicting row's key (the conflict was on it, or the row's shard was computed from it).
func (a *analyzer) assignments(targets []*pg.Node, excluded string) {
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil || rt.GetName() != a.e.column {
			continue
		}
		val := rt.GetVal()
		if cr := val.GetColumnRef(); cr != nil {
			f := cr.GetFields()
			last := f[len(f)-1].GetString_().GetSval()
			if last == a.e.column && (len(f) == 1 && excluded == "" || len(f) == 2 && excluded != "" && f[0].GetString_().GetSval() == excluded) {
				continue // SET key = key
			}
		}
		v, ok := a.value(val)
		if !ok || val.GetMultiAssignRef() != nil {
			v = value{} // unknown: never proven to stay on its shard
		}
		a.st.changes = append(a.st.changes, v)
	}
}
