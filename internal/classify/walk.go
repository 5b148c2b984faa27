package classify

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// walker classifies the statements of one parse tree into res.
//
// The top level is a switch over statement types; below it, the walk is generic (protobuf
// reflection over every set message field), with a few node types handled on the way. Going
// through every field, rather than the fields we know to matter, is what makes a write
// function in a VALUES list, a FOR UPDATE in a subquery of a CTE, or an INSERT in a CTE
// impossible to miss, including in node types added by later Postgres versions.
type walker struct {
	c   *Classifier
	res *Result

	// ctes are the names of the CTEs in scope: a relation with one of these names (and no
	// schema) is not a table.
	ctes []string

	// utility is true while walking the relations a utility statement acts on (outside any
	// query nested in it): those count as written.
	utility bool
}

// write marks the text as a write, keeping the first reason.
func (w *walker) write(why string) {
	if !w.res.Write {
		w.res.Write = true
		w.res.Why = why
	}
	w.res.Neutral = false
}

// statement classifies one top-level (or PREPAREd, DECLAREd, EXPLAINed) statement.
func (w *walker) statement(n *pg.Node) {
	switch s := n.GetNode().(type) {
	case nil:
		// An empty statement (";").

	case *pg.Node_SelectStmt, *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt,
		*pg.Node_MergeStmt:
		w.res.Neutral = false
		w.visit(n.ProtoReflect())

	case *pg.Node_ExplainStmt:
		// EXPLAIN only plans the statement; EXPLAIN ANALYZE runs it.
		w.res.Neutral = false
		if explainAnalyze(s.ExplainStmt.GetOptions()) {
			w.statement(s.ExplainStmt.GetQuery())
		}

	case *pg.Node_CopyStmt:
		w.res.Neutral = false
		cs := s.CopyStmt
		if cs.GetIsFrom() {
			w.write("COPY FROM")
		}
		w.table(cs.GetRelation(), cs.GetIsFrom())
		// COPY (query) TO: the query decides (it may be an INSERT ... RETURNING).
		w.fields(cs.ProtoReflect(), "relation", "")

	case *pg.Node_PrepareStmt:
		// The statement is prepared on the server this goes to; in session mode the session
		// stays there, so EXECUTE finds it.
		w.statement(s.PrepareStmt.GetQuery())

	case *pg.Node_DeclareCursorStmt:
		w.statement(s.DeclareCursorStmt.GetQuery())

	case *pg.Node_ExecuteStmt:
		// What the prepared statement does is not in this text.
		w.write("EXECUTE")
		w.fields(s.ExecuteStmt.ProtoReflect(), "", "")

	case *pg.Node_TransactionStmt:
		w.transaction(s.TransactionStmt)

	case *pg.Node_VariableSetStmt:
		w.set(s.VariableSetStmt)

	case *pg.Node_DiscardStmt:
		if s.DiscardStmt.GetTarget() == pg.DiscardMode_DISCARD_ALL {
			w.res.SessionAccess = AccessDefault
		}

	case *pg.Node_VariableShowStmt, *pg.Node_DeallocateStmt, *pg.Node_FetchStmt,
		*pg.Node_ClosePortalStmt:
		// Neutral: they follow the session or its transaction.

	case *pg.Node_ListenStmt:
		// Notifications are sent on the primary; a listener elsewhere would never hear them.
		w.write("LISTEN")
	case *pg.Node_UnlistenStmt:
		w.write("UNLISTEN")
	case *pg.Node_NotifyStmt:
		w.write("NOTIFY")

	case *pg.Node_DropStmt:
		w.write("DropStmt")
		w.drop(s.DropStmt)

	default:
		// Everything else (DDL, TRUNCATE, VACUUM, LOCK, CALL, DO, GRANT, CHECKPOINT ...) goes
		// to the primary, and the relations it acts on count as written.
		m := inner(n)
		if m == nil {
			w.write("unknown statement")
			return
		}
		w.write(string(m.Descriptor().Name()))
		w.utility = true
		w.fields(m, "", "")
		w.utility = false
	}
}

// inner returns the message set in a Node's oneof, or nil.
func inner(n *pg.Node) protoreflect.Message {
	m := n.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message()
}

// visit walks one node and everything under it.
func (w *walker) visit(m protoreflect.Message) {
	switch x := m.Interface().(type) {
	case *pg.RangeVar:
		w.table(x, w.utility)
		return

	case *pg.FuncCall:
		w.function(x)

	case *pg.SelectStmt:
		if len(x.GetLockingClause()) > 0 {
			w.write(lockStrength(x.GetLockingClause()))
		}
		if x.GetIntoClause() != nil {
			w.write("SELECT INTO")
		}
		w.query(m, x.GetWithClause(), "")
		return

	case *pg.InsertStmt:
		w.write("InsertStmt")
		w.table(x.GetRelation(), true)
		w.query(m, x.GetWithClause(), "relation")
		return
	case *pg.UpdateStmt:
		w.write("UpdateStmt")
		w.table(x.GetRelation(), true)
		w.query(m, x.GetWithClause(), "relation")
		return
	case *pg.DeleteStmt:
		w.write("DeleteStmt")
		w.table(x.GetRelation(), true)
		w.query(m, x.GetWithClause(), "relation")
		return
	case *pg.MergeStmt:
		w.write("MergeStmt")
		w.table(x.GetRelation(), true)
		w.query(m, x.GetWithClause(), "relation")
		return

	case *pg.IntoClause:
		// SELECT INTO and CREATE TABLE AS create (and fill) their target.
		w.table(x.GetRel(), true)
		w.fields(m, "rel", "")
		return

	case *pg.LockingClause:
		// FOR UPDATE OF a, b: a and b are names from the FROM clause, not tables.
		return

	case *pg.A_Const, *pg.ColumnRef, *pg.ParamRef, *pg.String, *pg.Integer, *pg.Float,
		*pg.Boolean, *pg.BitString, *pg.A_Star, *pg.Alias, *pg.TypeName:
		// Leaves, or names and type modifiers only: nothing below them can call a function
		// or name a table. Most nodes of a query are these; reflection over them is most of
		// the walk's cost.
		return
	}
	w.fields(m, "", "")
}

// query walks a query (SELECT or DML) with its WITH clause in scope, skipping the field
// named skip (the DML target, already recorded). Relations inside a query are read unless
// they are a DML target, even inside a utility statement (CREATE VIEW ... AS SELECT).
func (w *walker) query(m protoreflect.Message, with *pg.WithClause, skip protoreflect.Name) {
	utility, depth := w.utility, len(w.ctes)
	w.utility = false
	if with != nil {
		// A recursive WITH sees all its names in every CTE; otherwise each CTE sees the
		// ones before it.
		if with.GetRecursive() {
			for _, n := range with.GetCtes() {
				w.ctes = append(w.ctes, n.GetCommonTableExpr().GetCtename())
			}
		}
		for _, n := range with.GetCtes() {
			cte := n.GetCommonTableExpr()
			if cte == nil {
				continue
			}
			w.visit(cte.ProtoReflect())
			if !with.GetRecursive() {
				w.ctes = append(w.ctes, cte.GetCtename())
			}
		}
	}
	w.fields(m, "with_clause", skip)
	w.ctes = w.ctes[:depth]
	w.utility = utility
}

// fields walks every set message field of m except those named skip1 and skip2.
func (w *walker) fields(m protoreflect.Message, skip1, skip2 protoreflect.Name) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		if name := fd.Name(); name == skip1 || name == skip2 {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.visit(l.Get(i).Message())
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					w.visit(v.Message())
				}
				return true
			})
		default:
			w.visit(v.Message())
		}
		return true
	})
}

// table records a relation as read or written.
func (w *walker) table(rv *pg.RangeVar, written bool) {
	if rv.GetRelname() == "" {
		return
	}
	if !written && rv.GetSchemaname() == "" && rv.GetCatalogname() == "" {
		for _, name := range w.ctes {
			if name == rv.GetRelname() {
				return
			}
		}
	}
	name := rv.GetRelname()
	if s := rv.GetSchemaname(); s != "" {
		name = s + "." + name
	}
	if c := rv.GetCatalogname(); c != "" {
		name = c + "." + name
	}
	w.addTable(name, written)
}

func (w *walker) addTable(name string, written bool) {
	list := &w.res.Reads
	if written {
		list = &w.res.Writes
	}
	for _, have := range *list {
		if have == name {
			return
		}
	}
	*list = append(*list, name)
}

// drop records the relations a DROP TABLE (VIEW, SEQUENCE ...) removes; their names are
// lists of strings, not RangeVars.
func (w *walker) drop(d *pg.DropStmt) {
	switch d.GetRemoveType() {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_SEQUENCE:
	default:
		return
	}
	for _, obj := range d.GetObjects() {
		var parts []string
		for _, item := range obj.GetList().GetItems() {
			parts = append(parts, item.GetString_().GetSval())
		}
		if len(parts) > 0 {
			w.addTable(strings.Join(parts, "."), true)
		}
	}
}

// function checks a function call against the write list and, with strict_functions, the
// read-only list.
func (w *walker) function(fc *pg.FuncCall) {
	var schema, name string
	parts := fc.GetFuncname()
	if len(parts) == 0 {
		return
	}
	name = parts[len(parts)-1].GetString_().GetSval()
	if len(parts) >= 2 {
		schema = parts[len(parts)-2].GetString_().GetSval()
	}
	switch {
	case w.c.writeFuncs.matchWrite(schema, name):
		w.write("function " + qualified(schema, name))
	case w.c.strict && !w.c.readFuncs.matchRead(schema, name):
		w.write("function " + qualified(schema, name) + " (strict_functions)")
	}
}

func qualified(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

func lockStrength(clauses []*pg.Node) string {
	// The strongest lock names the reason; any of them makes the query a write.
	strongest := pg.LockClauseStrength_LCS_NONE
	for _, n := range clauses {
		if s := n.GetLockingClause().GetStrength(); s > strongest {
			strongest = s
		}
	}
	switch strongest {
	case pg.LockClauseStrength_LCS_FORUPDATE:
		return "FOR UPDATE"
	case pg.LockClauseStrength_LCS_FORNOKEYUPDATE:
		return "FOR NO KEY UPDATE"
	case pg.LockClauseStrength_LCS_FORSHARE:
		return "FOR SHARE"
	case pg.LockClauseStrength_LCS_FORKEYSHARE:
		return "FOR KEY SHARE"
	}
	return "row locking clause"
}

// explainAnalyze reports whether EXPLAIN's options ask to run the statement.
func explainAnalyze(opts []*pg.Node) bool {
	analyze := false
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || !strings.EqualFold(d.GetDefname(), "analyze") {
			continue
		}
		if d.GetArg() == nil {
			analyze = true
			continue
		}
		// Postgres rejects a value it cannot read as a boolean; count it as ANALYZE here so
		// that a mistake never sends a write to a replica.
		v, ok := nodeBool(d.GetArg())
		analyze = v || !ok
	}
	return analyze
}

// transaction records what a transaction-control statement does.
func (w *walker) transaction(t *pg.TransactionStmt) {
	switch t.GetKind() {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
		w.res.Begin = true
		if a := modeAccess(t.GetOptions()); a != AccessUnchanged {
			w.res.TxAccess = a
		}
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		w.res.End = true
		if t.GetChain() {
			// AND CHAIN starts a new transaction with the same characteristics.
			w.res.Begin = true
		}
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
		w.res.End = true
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		// A prepared transaction lives on the server that prepared it: the primary.
		w.write("COMMIT PREPARED")
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		w.write("ROLLBACK PREPARED")
	}
}

// set records what SET and RESET do to the transaction access mode.
func (w *walker) set(s *pg.VariableSetStmt) {
	// Postgres compares setting names case-insensitively, quoted or not.
	name := s.GetName()
	switch s.GetKind() {
	case pg.VariableSetKind_VAR_SET_MULTI:
		a := modeAccess(s.GetArgs())
		if a == AccessUnchanged {
			return
		}
		switch name {
		case "TRANSACTION":
			w.res.TxAccess = a
		case "SESSION CHARACTERISTICS":
			w.res.SessionAccess = a
		}
	case pg.VariableSetKind_VAR_SET_VALUE:
		if len(s.GetArgs()) != 1 {
			return
		}
		v, ok := nodeBool(s.GetArgs()[0])
		if !ok {
			return // Postgres rejects it
		}
		a := AccessReadWrite
		if v {
			a = AccessReadOnly
		}
		switch {
		case strings.EqualFold(name, "transaction_read_only"):
			w.res.TxAccess = a
		case strings.EqualFold(name, "default_transaction_read_only") && !s.GetIsLocal():
			w.res.SessionAccess = a
		}
	case pg.VariableSetKind_VAR_SET_DEFAULT, pg.VariableSetKind_VAR_RESET:
		if strings.EqualFold(name, "default_transaction_read_only") && !s.GetIsLocal() {
			w.res.SessionAccess = AccessDefault
		}
	case pg.VariableSetKind_VAR_RESET_ALL:
		w.res.SessionAccess = AccessDefault
	}
}

// modeAccess reads the transaction_read_only item of a list of transaction modes (BEGIN,
// SET TRANSACTION, SET SESSION CHARACTERISTICS AS TRANSACTION).
func modeAccess(opts []*pg.Node) Access {
	a := AccessUnchanged
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.GetDefname() != "transaction_read_only" {
			continue
		}
		if v, ok := nodeBool(d.GetArg()); ok {
			a = AccessReadWrite
			if v {
				a = AccessReadOnly
			}
		}
	}
	return a
}

// nodeBool reads a boolean the way Postgres reads a setting's value: a constant string
// (on, off, true, false, yes, no, 1, 0, or a unique prefix), an integer, or a boolean.
func nodeBool(n *pg.Node) (v, ok bool) {
	if c := n.GetAConst(); c != nil {
		switch {
		case c.GetIsnull():
			return false, false
		case c.GetSval() != nil:
			return parseBool(c.GetSval().GetSval())
		case c.GetBoolval() != nil:
			return c.GetBoolval().GetBoolval(), true
		case c.GetIval() != nil:
			return c.GetIval().GetIval() != 0, true
		}
		return false, false
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_String_:
		return parseBool(x.String_.GetSval())
	case *pg.Node_Integer:
		return x.Integer.GetIval() != 0, true
	case *pg.Node_Boolean:
		return x.Boolean.GetBoolval(), true
	}
	return false, false
}

// parseBool is Postgres' parse_bool: true, false, yes, no and their unique prefixes, on,
// off (at least "of"), 1, 0; case-insensitive, surrounding spaces not allowed.
func parseBool(s string) (v, ok bool) {
	l := strings.ToLower(s)
	if l == "" {
		return false, false
	}
	switch {
	case strings.HasPrefix("true", l), strings.HasPrefix("yes", l):
		return true, true
	case strings.HasPrefix("false", l), strings.HasPrefix("no", l):
		return false, true
	case l == "on":
		return true, true
	case len(l) >= 2 && strings.HasPrefix("off", l):
		return false, true
	case l == "1":
		return true, true
	case l == "0":
		return false, true
	}
	return false, false
}
