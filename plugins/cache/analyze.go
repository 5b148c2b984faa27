package cache

import (
	"regexp"
	"strings"
	"sync"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/textcache"
)

// relName is a relation as the query names it: Schema is "" when the name is unqualified.
type relName struct{ Schema, Name string }

func (r relName) String() string {
	if r.Schema == "" {
		return r.Name
	}
	return r.Schema + "." + r.Name
}

// funcName is a function as the query calls it: Schema is "" when unqualified.
type funcName struct{ Schema, Name string }

// analysis is what the cache needs to know about one query text. It depends only on the text,
// so it is computed once per text and shared; it must not be modified.
type analysis struct {
	// why is set when the text can never be cached, whatever the catalog says: the reason,
	// counted in the bypass statistics ("not a SELECT", "FOR UPDATE", "volatile expression").
	why string
	// reads and funcs are the relations and functions a cacheable SELECT names; the catalog
	// decides (per database) whether they are fit.
	reads []relName
	funcs []funcName

	// hint is set by /* sluice:cache */ (with ttl when it gave one); nocache by /* sluice:nocache */.
	hint    bool
	hintTTL time.Duration
	nocache bool

	// write is set when the text changes data or schema: writes are the relations it names
	// as targets; epoch is set when what it changes cannot be pinned to those relations (DDL,
	// DO, CALL, EXECUTE, a function with side effects of its own, a text that did not parse),
	// which then invalidates the whole cache.
	write  bool
	writes []relName
	epoch  bool
	// userFuncs are the functions a write that is a SELECT calls: any that is not immutable
	// and not built in may write anything, and then it counts as epoch.
	userFuncs []funcName

	// point is set when a cacheable SELECT may be a point read (rowkeys.go): the catalog and
	// the values of each execution decide. pin is set when a write may be pinned to
	// primary-key values.
	point *pointShape
	pin   *pinShape

	// begins is set when the text opens a transaction block (BEGIN, START TRANSACTION, COMMIT
	// AND CHAIN), or changes the rest of the transaction it runs in (SET LOCAL): the client's
	// reads pipelined behind it run inside that transaction (see OnQuery). (SET TRANSACTION is
	// not local to the parser: it taints the session.)
	begins bool

	// taint is set when the statement changes the session so that its later results may
	// depend on more than the key holds (SET ROLE, SET search_path, a temporary table ...).
	taint string
}

// analyzer analyzes query texts, with a bounded cache keyed by each text's number shape (the
// text with its numeric literals masked): an analysis does not depend on numbers, and clients
// that inline their values ("... WHERE id = 42" in the simple protocol) send a new text for
// every value. String literals stay in the key: the analysis reads them ('now').
type analyzer struct {
	cls   *classify.Classifier
	cache *textcache.Cache[*analysis]
}

func newAnalyzer(max int) *analyzer {
	return &analyzer{cls: classify.New(classify.Options{}), cache: textcache.New[*analysis](max, 64<<20)}
}

var shapeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// analyze returns the analysis of text. Texts longer than classify's MaxLength are not parsed
// (pg_query's C stack): they are never cached and, when they could write, count as epoch.
func (a *analyzer) analyze(text string) *analysis {
	bp := shapeBufs.Get().(*[]byte)
	defer shapeBufs.Put(bp)
	key, shaped := classify.NumberShape((*bp)[:0], []byte(text))
	*bp = key[:0]
	if !shaped {
		key = []byte(text)
	}
	if an, ok := a.cache.Get(key); ok {
		return an
	}
	an := a.compute(text)
	a.cache.Put(string(key), an, len(key)+512)
	return an
}

var hintRE = regexp.MustCompile(`/\*\s*sluice:(nocache|cache)(?:\s+ttl=([0-9a-z.]+))?\s*\*/`)

func (a *analyzer) compute(text string) *analysis {
	an := &analysis{}
	for _, m := range hintRE.FindAllStringSubmatch(text, -1) {
		if m[1] == "nocache" {
			an.nocache = true
			continue
		}
		an.hint = true
		if d, err := time.ParseDuration(m[2]); err == nil && d > 0 {
			an.hintTTL = d
		}
	}
	r := a.cls.Classify([]byte(text))
	if r.ParseErr != nil {
		an.why = "not parsed"
		// Unknown text: if it runs, it may write anything.
		an.write, an.epoch = true, true
		return an
	}
	if r.Command != nil || r.CommandErr != nil {
		an.why = "sluice command"
		return an
	}
	var tree *pg.ParseResult
	tree, err := pg.Parse(text)
	if err != nil {
		an.why, an.write, an.epoch = "not parsed", true, true
		return an
	}
	an.begins = r.Begin
	w := &walker{an: an}
	for _, raw := range tree.GetStmts() {
		w.statement(raw.GetStmt())
	}
	if r.Write {
		an.write = true
		for _, name := range r.Writes {
			an.writes = append(an.writes, splitName(name))
		}
		for _, k := range r.Kinds {
			switch k {
			case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt", "TruncateStmt":
				// Their targets are known (and triggers are the catalog's business).
			case "SelectStmt":
				// A SELECT counted as a write calls a write function or locks rows; a
				// function that is not built in may write anything: the catalog decides.
				an.userFuncs = w.funcs
			default:
				// DDL, GRANT, DO, CALL, EXECUTE, PREPARE TRANSACTION ...
				an.epoch = true
			}
		}
		if len(r.Kinds) > 0 && r.Kinds[0] == "ExplainStmt" {
			an.epoch = true // EXPLAIN ANALYZE of a write
		}
	}
	switch {
	case an.why != "":
	case len(r.Kinds) != 1:
		an.why = "not one statement"
	case r.Kinds[0] != "SelectStmt":
		an.why = "not a SELECT"
	case r.Write:
		an.why = "writes, locks or calls a write function (" + r.Why + ")"
	case w.why != "":
		an.why = w.why
	case len(r.Reads) == 0:
		an.why = "reads no table"
	}
	if an.why == "" {
		for _, name := range r.Reads {
			an.reads = append(an.reads, splitName(name))
		}
		an.funcs = w.funcs
	}
	if stmts := tree.GetStmts(); len(stmts) == 1 && len(r.Kinds) == 1 {
		point, pin := shapeOf(stmts[0].GetStmt(), text, w.funcs)
		switch r.Kinds[0] {
		case "SelectStmt":
			if an.why == "" && len(an.reads) == 1 {
				an.point = point
			}
		case "UpdateStmt", "DeleteStmt", "InsertStmt":
			if an.write && !an.epoch && len(an.writes) == 1 {
				an.pin = pin
			}
		}
	}
	return an
}

// splitName splits classify's "schema.name" (or "catalog.schema.name") into a relName. A
// three-part name keeps only its last two parts: Postgres accepts only the current database
// as the catalog.
func splitName(s string) relName {
	parts := strings.Split(s, ".")
	switch len(parts) {
	case 1:
		return relName{Name: parts[0]}
	default:
		return relName{Schema: parts[len(parts)-2], Name: parts[len(parts)-1]}
	}
}

// walker collects what classify does not: the functions a statement calls, expressions whose
// value depends on when or by whom they run, and what the statement does to the session.
type walker struct {
	an    *analysis
	why   string
	funcs []funcName
}

func (w *walker) deny(why string) {
	if w.why == "" {
		w.why = why
	}
}

func (w *walker) statement(n *pg.Node) {
	switch s := n.GetNode().(type) {
	case *pg.Node_VariableSetStmt:
		w.set(s.VariableSetStmt)
	case *pg.Node_DiscardStmt:
		w.an.taint = "DISCARD"
	case *pg.Node_CreateStmt:
		if s.CreateStmt.GetRelation().GetRelpersistence() == "t" {
			w.an.taint = "temporary table"
		}
	case *pg.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.GetInto().GetRel().GetRelpersistence() == "t" {
			w.an.taint = "temporary table"
		}
	case *pg.Node_ViewStmt:
		if s.ViewStmt.GetView().GetRelpersistence() == "t" {
			w.an.taint = "temporary table"
		}
	case *pg.Node_SelectStmt:
		if s.SelectStmt.GetIntoClause().GetRel().GetRelpersistence() == "t" {
			w.an.taint = "temporary table"
		}
	case *pg.Node_CreateSeqStmt:
		if s.CreateSeqStmt.GetSequence().GetRelpersistence() == "t" {
			w.an.taint = "temporary table"
		}
	}
	w.visit(n.ProtoReflect())
}

// set records SET and RESET: any of them may change how results are computed or rendered
// (TimeZone, DateStyle, search_path, role ...), and the plugin API does not show the
// session's settings, so the session is no longer cached. SET LOCAL ends with its transaction, and nothing inside a transaction block is cached; but an extended-
// protocol batch runs in an implicit transaction that is no block, where it holds until the
// Sync: the reads after it in the batch must not be answered from the cache (begins).
func (w *walker) set(s *pg.VariableSetStmt) {
	if s.GetIsLocal() {
		w.an.begins = true
		return
	}
	name := strings.ToLower(s.GetName())
	switch name {
	case "application_name":
		return
	case "role", "session_authorization":
		w.an.taint = "SET ROLE"
	default:
		if w.an.taint == "" {
			w.an.taint = "SET " + name
		}
	}
}

// visit walks every node under m.
func (w *walker) visit(m protoreflect.Message) {
	switch x := m.Interface().(type) {
	case *pg.FuncCall:
		var f funcName
		parts := x.GetFuncname()
		if len(parts) > 0 {
			f.Name = parts[len(parts)-1].GetString_().GetSval()
		}
		if len(parts) >= 2 {
			f.Schema = parts[len(parts)-2].GetString_().GetSval()
		}
		w.funcs = append(w.funcs, f)
		if f.Name == "set_config" {
			w.an.taint = "set_config"
		}
	case *pg.SQLValueFunction:
		// CURRENT_TIMESTAMP, CURRENT_DATE, LOCALTIME, CURRENT_USER, CURRENT_ROLE ...
		w.deny("volatile expression (" + strings.TrimPrefix(x.GetOp().String(), "SVFOP_") + ")")
	case *pg.RangeTableSample:
		w.deny("TABLESAMPLE")
	case *pg.A_Const:
		if s := x.GetSval(); s != nil && timeWord(s.GetSval()) {
			// 'now'::timestamptz is read when the statement is planned.
			w.deny("volatile constant '" + s.GetSval() + "'")
		}
		return
	case *pg.TypeCast:
		if isRegType(x.GetTypeName()) {
			// 'users'::regclass reads the catalog.
			w.deny("cast to a reg* type")
		}
	case *pg.ColumnRef, *pg.ParamRef, *pg.String, *pg.Integer, *pg.Float, *pg.Boolean,
		*pg.BitString, *pg.A_Star, *pg.Alias:
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.visit(l.Get(i).Message())
			}
		case fd.IsMap():
		default:
			w.visit(v.Message())
		}
		return true
	})
}

// timeWord reports whether s is one of the date/time input words whose value is the clock:
// 'now', 'today', 'tomorrow', 'yesterday' (case-insensitive, spaces around allowed).
func timeWord(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "now", "today", "tomorrow", "yesterday":
		return true
	}
	return false
}

func isRegType(t *pg.TypeName) bool {
	names := t.GetNames()
	if len(names) == 0 {
		return false
	}
	return strings.HasPrefix(names[len(names)-1].GetString_().GetSval(), "reg")
}
