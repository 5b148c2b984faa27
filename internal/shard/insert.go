package shard

import (
	"errors"
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// insert is what a single INSERT ... VALUES into the key's table needs to be split by shard.
type insert struct {
	rows []value // each row's key; a value{} that is never known for a row whose key is not a value
	tree *pg.ParseResult
}

// insertStmt returns the restriction of an INSERT: the shards of its rows' keys.
func (a *analyzer) insertStmt(s *pg.InsertStmt, only bool) *cond {
	if oc := s.GetOnConflictClause(); oc != nil && oc.GetAction() == pg.OnConflictAction_ONCONFLICT_UPDATE && a.isKeyTable(s.GetRelation()) {
		a.assignments(oc.GetTargetList(), "excluded")
	}
	withs := a.with(s.GetWithClause())
	keyCol := -1
	if a.isKeyTable(s.GetRelation()) {
		for i, c := range s.GetCols() {
			if rt := c.GetResTarget(); rt.GetName() == a.e.column && len(rt.GetIndirection()) == 0 {
				keyCol = i
			}
		}
	}
	sel := s.GetSelectStmt().GetSelectStmt()
	lists := sel.GetValuesLists()
	if keyCol < 0 || len(lists) == 0 || sel.GetWithClause() != nil {
		// Not the key's table, no column list naming the key (the key is its default, or
		// the table's column order would be needed), or INSERT ... SELECT.
		return orCond(append([]*cond{nil}, withs...))
	}
	ins := &insert{rows: make([]value, len(lists))}
	c := &cond{op: condIn}
	for i, l := range lists {
		items := l.GetList().GetItems()
		var v value
		if keyCol < len(items) {
			if got, ok := a.value(items[keyCol]); ok {
				v = got
				// Hash partitioning puts a NULL key in the first partition; sha1 has no
				// shard for it.
				v.nullFirst = a.e.sharder.Func == PgBigintHash
			}
		}
		ins.rows[i] = v
		if v.null && !v.nullFirst {
			v = value{} // a row that goes nowhere known makes the INSERT touch all shards
		}
		c.vals = append(c.vals, v)
	}
	if only && len(withs) == 0 {
		a.st.insert = ins
	}
	return orCond(append([]*cond{c}, withs...))
}

// InsertPart is the rows of a split INSERT that go to one shard.
type InsertPart struct {
	Shard int
	Rows  []int // indexes into the INSERT's VALUES list, in increasing order
}

// ErrNotSplittable is returned by SplitInsert for a statement that is not one INSERT ...
// VALUES into the key's table with the key in its column list, or for a row whose shard is
// not known (a key that is an expression, DEFAULT, or cannot be read as the key type).
var ErrNotSplittable = errors.New("the INSERT cannot be split by shard")

// SplitInsert groups the rows of an INSERT ... VALUES by the shard of their keys, with these
// Bind parameters. Parts are in increasing shard order. A caller sends each part's rows to
// its shard, with InsertSubset's text (or the statement unchanged when there is one part).
func (s *Statement) SplitInsert(p Params) ([]InsertPart, error) {
	if s.insert == nil {
		return nil, ErrNotSplittable
	}
	if _, err := s.Shards(p); err != nil {
		return nil, err
	}
	var parts []InsertPart
	for i, v := range s.insert.rows {
		sh, ok := v.shard(s.sharder, p, s.lits)
		if !ok {
			return nil, fmt.Errorf("%w: row %d: the key is not a value on a known shard", ErrNotSplittable, i+1)
		}
		j := 0
		for j < len(parts) && parts[j].Shard < sh {
			j++
		}
		if j == len(parts) || parts[j].Shard != sh {
			parts = append(parts, InsertPart{})
			copy(parts[j+1:], parts[j:])
			parts[j] = InsertPart{Shard: sh}
		}
		parts[j].Rows = append(parts[j].Rows, i)
	}
	return parts, nil
}

// InsertSubset returns the text of the statement's INSERT with only the given rows of its
// VALUES list, in the order given, built with the Postgres deparser. Its parameters are
// numbered again from $1 in order of appearance: params[i] is the number, in the original
// statement, of the new statement's $(i+1), so a caller builds its Bind from the original
// parameters params[0]-1, params[1]-1, ... A statement that SplitInsert refuses is refused
// here too (ErrNotSplittable).
func (s *Statement) InsertSubset(rows []int) (query string, params []int, err error) {
	if s.insert == nil || s.insert.tree == nil || len(s.insert.tree.GetStmts()) != 1 {
		return "", nil, ErrNotSplittable
	}
	orig := s.insert.tree.GetStmts()[0]
	lists := orig.GetStmt().GetInsertStmt().GetSelectStmt().GetSelectStmt().GetValuesLists()
	if len(rows) == 0 {
		return "", nil, fmt.Errorf("%w: no rows", ErrNotSplittable)
	}
	// Copy the statement without its VALUES (the cached tree is shared and never modified),
	// then copy in the chosen rows.
	stmt := &pg.RawStmt{Stmt: proto.Clone(orig.GetStmt()).(*pg.Node)}
	sel := stmt.GetStmt().GetInsertStmt().GetSelectStmt().GetSelectStmt()
	sel.ValuesLists = make([]*pg.Node, 0, len(rows))
	for _, r := range rows {
		if r < 0 || r >= len(lists) {
			return "", nil, fmt.Errorf("%w: row %d of %d", ErrNotSplittable, r, len(lists))
		}
		sel.ValuesLists = append(sel.ValuesLists, proto.Clone(lists[r]).(*pg.Node))
	}
	renumber := map[int32]int32{}
	walkParams(stmt.ProtoReflect(), func(p *pg.ParamRef) {
		n, ok := renumber[p.Number]
		if !ok {
			n = int32(len(renumber) + 1)
			renumber[p.Number] = n
			params = append(params, int(p.Number))
		}
		p.Number = n
	})
	query, err = pg.Deparse(&pg.ParseResult{Version: s.insert.tree.GetVersion(), Stmts: []*pg.RawStmt{stmt}})
	if err != nil {
		return "", nil, fmt.Errorf("deparse the INSERT for %d rows: %w", len(rows), err)
	}
	return query, params, nil
}

// walkParams calls f for every ParamRef under m, in field order: for the VALUES rows, the
// order of the text.
func walkParams(m protoreflect.Message, f func(*pg.ParamRef)) {
	if p, ok := m.Interface().(*pg.ParamRef); ok {
		f(p)
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Message() == nil || fd.IsMap() || !m.Has(fd) {
			continue
		}
		if fd.IsList() {
			l := m.Get(fd).List()
			for j := 0; j < l.Len(); j++ {
				walkParams(l.Get(j).Message(), f)
			}
		} else {
			walkParams(m.Get(fd).Message(), f)
		}
	}
}
