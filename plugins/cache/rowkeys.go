package cache

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/pgtext"
	"github.com/sluicepg/sluice/plugin"
)

// Row-level invalidation. A table's generation goes up at every write, which empties every
// entry that read the table: under 5 % updates by primary key, nearly every point read misses.
// So, per table, besides gen(t) (bumped by every write, what every other read depends on):
//
//   - base(t) is bumped by every write to t that is not pinned to primary-key values;
//   - row(t,k) is bumped by a write pinned to the keys it names (an UPDATE or DELETE whose WHERE
//     says pk = v or pk IN (...), an INSERT that gives every row's pk), for each key k.
//
// A point read of t for keys K (a SELECT of t alone whose WHERE says pk = v or pk IN (...))
// depends on base(t) and row(t,k) for k in K instead of gen(t). Keys are compared in the text
// form pgoutput sends (canonKey), so that a write seen in the WAL names the same counter as one
// seen in a query.
//
// Row counters expire (there is one per key ever written), which is safe only because of two
// rules. (1) A bump never gives a row counter a value it had before: it sets max(old+1, Redis's
// clock in µs), so a counter that expired and is bumped again starts above anything it was. (2)
// An expired counter reads as 0, the value an entry filled before the key was ever written
// holds; such an entry must be gone before the counter can expire, so row dependencies are
// used only by entries whose TTL (with jitter and hints) is at most rowTTLBound and whose fill
// is stored at most rowFillMargin after its counters were read, while every bump sets the
// counter to expire rowTTLBound+rowCounterMargin later (more than the two together). Longer
// entries depend on gen(t) as before.
const (
	rowTTLBound      = time.Hour
	rowFillMargin    = time.Minute
	rowCounterMargin = 10 * time.Minute

	maxKeyLen     = 256 // longer text keys are not named: the write counts for the whole table
	maxReadKeys   = 16  // keys of one point read (pk IN (...))
	maxPinnedKeys = 64  // keys of one table in one transaction before it counts as unpinned
)

// rowDepsFit reports whether an entry of TTL ttl may depend on row counters: with jitter (up to
// a tenth more) it must be gone before rowTTLBound.
func rowDepsFit(ttl time.Duration) bool { return ttl+ttl/10 < rowTTLBound }

// pkType is the type of a table's one-column primary key, for the types whose values the cache
// can name exactly; pkNone for every other table.
type pkType uint8

const (
	pkNone pkType = iota
	pkInt2
	pkInt4
	pkInt8
	pkText
	pkVarchar
	pkUUID
)

// pkTypeOf returns the pkType of a column of type oid.
func pkTypeOf(oid uint32) pkType {
	switch oid {
	case 21:
		return pkInt2
	case 23:
		return pkInt4
	case 20:
		return pkInt8
	case 25:
		return pkText
	case 1043:
		return pkVarchar
	case 2950:
		return pkUUID
	}
	return pkNone
}

// castName is the name pg_query gives a cast to the type ('42'::integer is int4).
func (t pkType) castName() string {
	return [...]string{"", "int2", "int4", "int8", "text", "varchar", "uuid"}[t]
}

// canonKey returns v, a value of type t in text form as Postgres' input function reads it, in
// the form pgoutput sends it: integers in decimal, uuids lowercase with hyphens, text as it
// is. ok is false when v is not a value the cache can name (then the read or write is not
// pinned): malformed, out of range, too long, or text that is not ASCII (client and server
// encodings could spell it differently).
func canonKey(t pkType, v []byte) (string, bool) {
	switch t {
	case pkInt2:
		return canonInt(v, 16)
	case pkInt4:
		return canonInt(v, 32)
	case pkInt8:
		return canonInt(v, 64)
	case pkUUID:
		return canonUUID(v)
	case pkText, pkVarchar:
		if len(v) > maxKeyLen {
			return "", false
		}
		for _, c := range v {
			if c == 0 || c >= 0x80 {
				return "", false
			}
		}
		return string(v), true
	}
	return "", false
}

// canonInt reads v as Postgres 15's int2in/int4in/int8in do and writes it in decimal.
func canonInt(v []byte, bits int) (string, bool) {
	n, err := pgtext.ParseInt(v, bits)
	if err != nil {
		return "", false
	}
	return strconv.FormatInt(n, 10), true
}

// canonUUID reads v as Postgres' uuid_in does and writes it as uuid_out does.
func canonUUID(v []byte) (string, bool) {
	u, ok := pgtext.ParseUUID(v)
	if !ok {
		return "", false
	}
	return string(pgtext.AppendUUID(nil, u)), true
}

// binaryKey returns a parameter sent in binary as a key. A binary value is encoded as the type
// its Parse declared (typ), or, when it declared none (0), as the type the server inferred,
// which for pk = $1 is the key's own. A value declared as a type that is not the key's kind
// (an 8-byte float8 against an int8 key) is not read.
func binaryKey(t pkType, v []byte, typ uint32) (string, bool) {
	if typ != 0 {
		switch pt := pkTypeOf(typ); {
		case isIntKey(pt) && isIntKey(t):
			// An int8 parameter against an int4 key compares as the number it is.
			k, ok := binaryKey(pt, v, 0)
			if !ok {
				return "", false
			}
			return canonKey(t, []byte(k)) // in the key's range, or no key
		case pt == pkUUID && t == pkUUID:
			return binaryKey(t, v, 0)
		case (pt == pkText || pt == pkVarchar) && (t == pkText || t == pkVarchar):
			return canonKey(t, v)
		}
		return "", false
	}
	switch t {
	case pkInt2:
		if len(v) == 2 {
			return strconv.FormatInt(int64(int16(binary.BigEndian.Uint16(v))), 10), true
		}
	case pkInt4:
		if len(v) == 4 {
			return strconv.FormatInt(int64(int32(binary.BigEndian.Uint32(v))), 10), true
		}
	case pkInt8:
		if len(v) == 8 {
			return strconv.FormatInt(int64(binary.BigEndian.Uint64(v)), 10), true
		}
	case pkUUID:
		if len(v) == 16 {
			return string(pgtext.AppendUUID(nil, [16]byte(v))), true
		}
	case pkText, pkVarchar:
		return canonKey(t, v) // binary text is its bytes
	}
	return "", false
}

func isIntKey(t pkType) bool { return t == pkInt2 || t == pkInt4 || t == pkInt8 }

// valueSrc is where one value compared with a primary key comes from, in every text that shares
// an analysis (texts differing only in their numbers): a number's index among the text's
// literals (read again at each execution), a string constant (strings are part of the shape),
// or a parameter.
type valueSrc struct {
	kind  uint8 // srcNone, srcNumber, srcConstNumber, srcString, srcParam
	lit   int   // srcNumber: index among classify.ShapeLiterals
	neg   bool  // srcNumber: a minus sign before it
	str   string
	param int    // srcParam: $n
	cast  string // the type cast to, as pg_query names it; "" when none
}

const (
	srcNone uint8 = iota
	srcNumber
	srcConstNumber // a number of a text whose analysis is its own, in str
	srcString
	srcParam
)

// pkCond is one conjunct of a WHERE that compares a column with values: col = v, v = col or
// col IN (v1, ...).
type pkCond struct {
	column string
	vals   []valueSrc
}

// pointShape is what a SELECT's text says of its being a point read of its one table (the
// catalog says which column is the primary key): its pk-like conjuncts.
type pointShape struct {
	conds []pkCond
	nlits int // the text's literals, to check a later text against
}

// pinShape is what a write's text says of its being pinned to primary-key values.
type pinShape struct {
	table relName
	conds []pkCond // UPDATE, DELETE
	set   []string // UPDATE's SET targets, or those of INSERT ... ON CONFLICT DO UPDATE
	// INSERT: its columns and, per row, where each column's value comes from (srcNone: not a
	// constant or a parameter); conflict is ON CONFLICT's one target column ("" when none).
	insert   bool
	cols     []string
	rows     [][]valueSrc
	conflict string
	funcs    []funcName
	nlits    int
}

// shapeOf builds the point or pin shape of one statement, stmt, of text; both are nil when it
// is neither.
func shapeOf(stmt *pg.Node, text string, funcs []funcName) (*pointShape, *pinShape) {
	lits, shaped := literalStarts(text)
	sh := shaper{text: text, lits: lits, shaped: shaped}
	switch s := stmt.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return sh.point(s.SelectStmt), nil
	case *pg.Node_UpdateStmt:
		u := s.UpdateStmt
		if u.GetWithClause() != nil || len(u.GetFromClause()) > 0 {
			return nil, nil
		}
		conds := sh.conds(u.GetWhereClause(), u.GetRelation(), maxPinnedKeys)
		if len(conds) == 0 {
			return nil, nil
		}
		p := &pinShape{table: rangeVarName(u.GetRelation()), conds: conds, funcs: funcs, nlits: len(lits)}
		for _, t := range u.GetTargetList() {
			p.set = append(p.set, t.GetResTarget().GetName())
		}
		return nil, p
	case *pg.Node_DeleteStmt:
		d := s.DeleteStmt
		if d.GetWithClause() != nil || len(d.GetUsingClause()) > 0 {
			return nil, nil
		}
		conds := sh.conds(d.GetWhereClause(), d.GetRelation(), maxPinnedKeys)
		if len(conds) == 0 {
			return nil, nil
		}
		return nil, &pinShape{table: rangeVarName(d.GetRelation()), conds: conds, funcs: funcs, nlits: len(lits)}
	case *pg.Node_InsertStmt:
		return nil, sh.insert(s.InsertStmt, funcs)
	}
	return nil, nil
}

// literalStarts returns the literals of text as classify's shapes find them. shaped is false
// when text is not shaped (it begins with a comment ...): then its analysis is keyed by the
// whole text, and its numbers are constants of the analysis.
func literalStarts(text string) (lits []classify.Literal, shaped bool) {
	_, lits, shaped = classify.ShapeLiterals(nil, make([]classify.Literal, 0, 8), []byte(text))
	return lits, shaped
}

type shaper struct {
	text   string
	lits   []classify.Literal
	shaped bool
}

// point returns the shape of s as a point read, or nil: one plain table in FROM, no WITH,
// no set operation, no sublink anywhere, and at least one pk-like conjunct.
func (sh *shaper) point(s *pg.SelectStmt) *pointShape {
	if s.GetOp() != pg.SetOperation_SETOP_NONE || s.GetWithClause() != nil || len(s.GetFromClause()) != 1 ||
		s.GetIntoClause() != nil || len(s.GetValuesLists()) > 0 || hasSubLink(s.ProtoReflect()) {
		return nil
	}
	rv := s.GetFromClause()[0].GetRangeVar()
	if rv == nil {
		return nil
	}
	conds := sh.conds(s.GetWhereClause(), rv, maxReadKeys)
	if len(conds) == 0 {
		return nil
	}
	return &pointShape{conds: conds, nlits: len(sh.lits)}
}

func (sh *shaper) insert(s *pg.InsertStmt, funcs []funcName) *pinShape {
	if s.GetWithClause() != nil || len(s.GetCols()) == 0 {
		return nil
	}
	p := &pinShape{table: rangeVarName(s.GetRelation()), insert: true, funcs: funcs, nlits: len(sh.lits)}
	for _, c := range s.GetCols() {
		rt := c.GetResTarget()
		if rt == nil || len(rt.GetIndirection()) > 0 {
			return nil
		}
		p.cols = append(p.cols, rt.GetName())
	}
	sel := s.GetSelectStmt().GetSelectStmt()
	if sel == nil || len(sel.GetValuesLists()) == 0 || len(sel.GetValuesLists()) > maxPinnedKeys ||
		sel.GetWithClause() != nil || sel.GetOp() != pg.SetOperation_SETOP_NONE || len(sel.GetFromClause()) > 0 {
		return nil
	}
	for _, row := range sel.GetValuesLists() {
		items := row.GetList().GetItems()
		if len(items) != len(p.cols) {
			return nil
		}
		srcs := make([]valueSrc, len(items))
		for i, it := range items {
			srcs[i], _ = sh.value(it)
		}
		p.rows = append(p.rows, srcs)
	}
	if oc := s.GetOnConflictClause(); oc != nil {
		inf := oc.GetInfer()
		if inf == nil || inf.GetConname() != "" || inf.GetWhereClause() != nil || len(inf.GetIndexElems()) != 1 {
			return nil
		}
		el := inf.GetIndexElems()[0].GetIndexElem()
		if el == nil || el.GetName() == "" || el.GetExpr() != nil {
			return nil
		}
		p.conflict = el.GetName()
		for _, t := range oc.GetTargetList() {
			p.set = append(p.set, t.GetResTarget().GetName())
		}
	}
	return p
}

func rangeVarName(rv *pg.RangeVar) relName {
	return relName{Schema: rv.GetSchemaname(), Name: rv.GetRelname()}
}

// conds returns the conjuncts of where that compare a column of rv with at most max values.
func (sh *shaper) conds(where *pg.Node, rv *pg.RangeVar, max int) []pkCond {
	var out []pkCond
	var walk func(n *pg.Node)
	walk = func(n *pg.Node) {
		if b := n.GetBoolExpr(); b != nil {
			if b.GetBoolop() == pg.BoolExprType_AND_EXPR {
				for _, a := range b.GetArgs() {
					walk(a)
				}
			}
			return
		}
		e := n.GetAExpr()
		if e == nil || len(e.GetName()) != 1 || e.GetName()[0].GetString_().GetSval() != "=" {
			return
		}
		switch e.GetKind() {
		case pg.A_Expr_Kind_AEXPR_OP:
			col, val := e.GetLexpr(), e.GetRexpr()
			if columnOf(col, rv) == "" {
				col, val = val, col
			}
			name := columnOf(col, rv)
			if v, ok := sh.value(val); ok && name != "" {
				out = append(out, pkCond{column: name, vals: []valueSrc{v}})
			}
		case pg.A_Expr_Kind_AEXPR_IN:
			name := columnOf(e.GetLexpr(), rv)
			items := e.GetRexpr().GetList().GetItems()
			if name == "" || len(items) == 0 || len(items) > max {
				return
			}
			c := pkCond{column: name}
			for _, it := range items {
				v, ok := sh.value(it)
				if !ok {
					return
				}
				c.vals = append(c.vals, v)
			}
			out = append(out, c)
		}
	}
	if where != nil {
		walk(where)
	}
	return out
}

// columnOf returns the name of the column n refers to when it is a column of rv (unqualified,
// or qualified by rv's alias, or by its name when it has none), else "".
func columnOf(n *pg.Node, rv *pg.RangeVar) string {
	cr := n.GetColumnRef()
	if cr == nil {
		return ""
	}
	f := cr.GetFields()
	switch len(f) {
	case 1:
		return f[0].GetString_().GetSval()
	case 2:
		q := f[0].GetString_().GetSval()
		if a := rv.GetAlias().GetAliasname(); a != "" {
			if q != a {
				return ""
			}
		} else if q != rv.GetRelname() {
			return ""
		}
		return f[1].GetString_().GetSval()
	}
	return ""
}

// value returns where the value of n comes from, when n is a constant or a parameter,
// possibly cast once to a plain type (no typmod: 'abcd'::varchar(2) is 'ab').
func (sh *shaper) value(n *pg.Node) (valueSrc, bool) {
	var v valueSrc
	if tc := n.GetTypeCast(); tc != nil {
		tn := tc.GetTypeName()
		names := tn.GetNames()
		if len(tn.GetTypmods()) > 0 || len(tn.GetArrayBounds()) > 0 || tn.GetSetof() || tn.GetPctType() ||
			len(names) == 0 || len(names) > 2 ||
			(len(names) == 2 && names[0].GetString_().GetSval() != "pg_catalog") {
			return v, false
		}
		v.cast = names[len(names)-1].GetString_().GetSval()
		n = tc.GetArg()
	}
	if p := n.GetParamRef(); p != nil {
		if p.GetNumber() < 1 {
			return v, false
		}
		v.kind, v.param = srcParam, int(p.GetNumber())
		return v, true
	}
	c := n.GetAConst()
	if c == nil || c.GetIsnull() {
		return v, false
	}
	switch c.GetVal().(type) {
	case *pg.A_Const_Sval:
		v.kind, v.str = srcString, c.GetSval().GetSval()
		return v, true
	case *pg.A_Const_Ival, *pg.A_Const_Fval:
		if !sh.shaped {
			// The analysis is this text's alone: the number as the parser read it.
			v.kind, v.str = srcConstNumber, c.GetFval().GetFval()
			if iv := c.GetIval(); iv != nil {
				v.str = strconv.FormatInt(int64(iv.GetIval()), 10)
			}
			return v, true
		}
		loc := int(c.GetLocation())
		if loc < 0 || loc >= len(sh.text) {
			return v, false
		}
		for i, l := range sh.lits {
			if l.Start == loc {
				v.kind, v.lit = srcNumber, i
				return v, sh.plainNumber(l)
			}
			// -5: the parser folds the sign into the constant and reports its place.
			if l.Start > loc && sh.text[loc] == '-' && onlySpaces(sh.text[loc+1:l.Start]) {
				v.kind, v.lit, v.neg = srcNumber, i, true
				return v, sh.plainNumber(l)
			}
			if l.Start > loc {
				break
			}
		}
	}
	return v, false
}

// plainNumber reports whether literal l is a plain decimal integer token: not followed by an
// identifier character (0x2A lexes as 0 and x2A here, but as one number in Postgres 16).
func (sh *shaper) plainNumber(l classify.Literal) bool {
	return l.End >= len(sh.text) || !(isIdentByte(sh.text[l.End]))
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func onlySpaces(s string) bool {
	for i := 0; i < len(s); i++ {
		if !pgtext.IsSpace(s[i]) {
			return false
		}
	}
	return true
}

// hasSubLink reports whether a sublink (a subquery in an expression) is anywhere under m.
func hasSubLink(m protoreflect.Message) bool {
	if _, ok := m.Interface().(*pg.SubLink); ok {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				found = hasSubLink(l.Get(i).Message())
			}
		} else {
			found = hasSubLink(v.Message())
		}
		return !found
	})
	return found
}

// keyReader reads the values of one execution of a text: its numbers (found again in this
// text, which differs from the analyzed one only in them) and its parameters.
type keyReader struct {
	text   string
	params []plugin.Param
	nlits  int
	lits   []classify.Literal
	read   bool
	ok     bool
}

var litBufs = sync.Pool{New: func() any { b := make([]classify.Literal, 0, 16); return &b }}

// release returns the reader's buffer.
func (kr *keyReader) release() {
	if kr.lits != nil {
		b := kr.lits[:0]
		litBufs.Put(&b)
		kr.lits = nil
	}
}

// key returns the canonical key of src for a primary key of type t, or false.
func (kr *keyReader) key(src valueSrc, t pkType) (string, bool) {
	if src.cast != "" && src.cast != t.castName() {
		return "", false
	}
	switch src.kind {
	case srcString:
		// A backslash means one thing to pg_query and another to a session with
		// standard_conforming_strings off.
		for i := 0; i < len(src.str); i++ {
			if src.str[i] == '\\' {
				return "", false
			}
		}
		return canonKey(t, []byte(src.str))
	case srcParam:
		if src.param > len(kr.params) {
			return "", false
		}
		p := kr.params[src.param-1]
		switch {
		case p.Value == nil:
			return "", false // NULL matches nothing, and names no row
		case p.Binary:
			return binaryKey(t, p.Value, p.Type)
		}
		return canonKey(t, p.Value)
	case srcConstNumber:
		num := strings.TrimPrefix(src.str, "-")
		if !isIntKey(t) || num == "" || strings.Trim(num, "0123456789") != "" {
			return "", false // 42.0, 1e3: not an integer constant as written
		}
		return canonKey(t, []byte(src.str))
	case srcNumber:
		if !isIntKey(t) {
			return "", false
		}
		if !kr.read {
			kr.read = true
			bp := litBufs.Get().(*[]classify.Literal)
			sb := shapeBufs.Get().(*[]byte)
			var shape []byte
			shape, kr.lits, kr.ok = classify.ShapeLiterals((*sb)[:0], (*bp)[:0], []byte(kr.text))
			*sb = shape[:0]
			shapeBufs.Put(sb)
			kr.ok = kr.ok && len(kr.lits) == kr.nlits
		}
		if !kr.ok || src.lit >= len(kr.lits) {
			return "", false
		}
		l := kr.lits[src.lit]
		num := kr.text[l.Start:l.End]
		for i := 0; i < len(num); i++ {
			if num[i] < '0' || num[i] > '9' {
				return "", false // 42.0, 1e3, 1_000: not an integer constant as written
			}
		}
		if src.neg {
			num = "-" + num
		}
		return canonKey(t, []byte(num))
	}
	return "", false
}

// keys returns the sorted, distinct canonical keys of cond for a primary key of type t.
func (kr *keyReader) keys(cond pkCond, t pkType) ([]string, bool) {
	out := make([]string, 0, len(cond.vals))
	for _, v := range cond.vals {
		k, ok := kr.key(v, t)
		if !ok {
			return nil, false
		}
		out = append(out, k)
	}
	return sortedKeys(out), true
}

func sortedKeys(ks []string) []string {
	if len(ks) > 1 {
		slices.Sort(ks)
		ks = slices.Compact(ks)
	}
	return ks
}

// pointRead returns what a point read of r (an analysis's point shape, which r's primary key
// completes) depends on, with the keys of this execution; nil when it is not one.
func pointRead(r *rel, ps *pointShape, q *plugin.Query) *pointDeps {
	kr := keyReader{text: q.Text, params: q.Params, nlits: ps.nlits}
	defer kr.release()
	for _, cond := range ps.conds {
		if cond.column != r.pkCol {
			continue
		}
		if keys, ok := kr.keys(cond, r.pkType); ok {
			return &pointDeps{oid: r.oid, keys: keys}
		}
	}
	return nil
}

// pinnedKeys returns the keys of r a write of shape ps changes in this execution, or false
// when it may change other rows of r: r is not pinnable, its primary key is a SET target (the
// row moves to a key nobody named), an INSERT does not give every row's key or resolves
// conflicts on another column, or a value cannot be named.
func pinnedKeys(cat *catalog, r *rel, ps *pinShape, q *plugin.Query) ([]string, bool) {
	if !cat.pinnable(r) || slices.Contains(ps.set, r.pkCol) {
		return nil, false
	}
	kr := keyReader{text: q.Text, params: q.Params, nlits: ps.nlits}
	defer kr.release()
	if ps.insert {
		i := slices.Index(ps.cols, r.pkCol)
		if i < 0 || (ps.conflict != "" && ps.conflict != r.pkCol) {
			return nil, false
		}
		keys := make([]string, 0, len(ps.rows))
		for _, row := range ps.rows {
			k, ok := kr.key(row[i], r.pkType)
			if !ok {
				return nil, false
			}
			keys = append(keys, k)
		}
		return sortedKeys(keys), true
	}
	for _, cond := range ps.conds {
		if cond.column != r.pkCol {
			continue
		}
		if keys, ok := kr.keys(cond, r.pkType); ok {
			return keys, true
		}
	}
	return nil, false
}
