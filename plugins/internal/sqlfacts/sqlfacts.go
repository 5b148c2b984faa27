// Package sqlfacts gives the shipped plugins what they need to know about a query text beyond
// what plugin.Query carries: every statement's kind, every table named, every function called,
// and whether a COPY runs a program. It parses with the Postgres parser (pg_query) and caches
// the facts per text, so a plugin pays for a parse once per distinct text.
//
// It is for sluice's own plugins (the packages under plugins/); it is not a public API.
package sqlfacts

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DefaultMaxLength is the longest text parsed when a Cache is given no limit: 16 KiB, as
// internal/classify's default. pg_query's C code recurses once per level of the parse tree,
// and deeply nested input of about 40 KiB overflows the thread stack and crashes the process,
// so the limit is never turned off.
const DefaultMaxLength = 16 << 10

// ErrTooLong is wrapped by Facts.Err for a text longer than the cache's limit.
var ErrTooLong = errors.New("query text too long to parse")

// Facts are what a text's parse says. A Facts value is shared by every caller that asks for the
// same text: it must not be modified.
type Facts struct {
	// Kinds are the statements' node names ("SelectStmt", "CopyStmt" ...), in order.
	Kinds []string
	// Statements are the kinds of every statement in the text, nested ones included (the
	// DELETE of "WITH d AS (DELETE ...) SELECT", the query of PREPARE or EXPLAIN), each once.
	Statements []string
	// Tables are the relations named, each once, in order of appearance: "name" or
	// "schema.name", with the parser's folding (unquoted identifiers lower-cased). CTE names
	// are not tables.
	Tables []string
	// Functions are the functions called, each once, lower-cased as the parser gives them,
	// schema-qualified when the call was ("pg_catalog.pg_read_file").
	Functions []string
	// CopyProgram is set when a statement is COPY ... TO PROGRAM or COPY ... FROM PROGRAM.
	CopyProgram bool
	// Err is the parser's error, or wraps ErrTooLong; the other fields are then empty.
	Err error
}

// HasStatement reports whether some statement, nested ones included, is of kind k.
func (f *Facts) HasStatement(k string) bool {
	for _, x := range f.Statements {
		if x == k {
			return true
		}
	}
	return false
}

// Cache parses texts and keeps their Facts, within a bound on the number of texts and their
// bytes. It is safe for concurrent use.
type Cache struct {
	maxLength int
	memo      *Memo[*Facts]
}

// New returns a Cache that parses texts up to maxLength bytes (0: DefaultMaxLength; larger
// values are capped at 4×DefaultMaxLength, for the stack) and keeps up to maxEntries texts
// (0: 10,000) of at most 16 MiB in all.
func New(maxLength, maxEntries int) *Cache {
	return &Cache{maxLength: MaxLength(maxLength), memo: NewMemo[*Facts](maxEntries)}
}

// MaxLength returns the parse limit for a configured n: DefaultMaxLength for 0, and at most
// 4×DefaultMaxLength.
func MaxLength(n int) int {
	if n <= 0 {
		return DefaultMaxLength
	}
	return min(n, 4*DefaultMaxLength)
}

// Get returns the facts of text, parsing it on the first call for that text. It never panics
// and never parses a text longer than the cache's limit.
func (c *Cache) Get(text string) *Facts {
	return c.memo.Get(text, func(t string) *Facts { return Parse(t, c.maxLength) })
}

// Memo keeps a value computed from a query text, for up to a number of texts and 16 MiB of
// them. It is safe for concurrent use; two goroutines missing the same text both compute it.
type Memo[V any] struct {
	maxEntries, maxBytes int

	mu    sync.Mutex
	m     map[string]V
	bytes int
}

// NewMemo returns a Memo of up to maxEntries texts (0: 10,000).
func NewMemo[V any](maxEntries int) *Memo[V] {
	if maxEntries <= 0 {
		maxEntries = 10_000
	}
	return &Memo[V]{maxEntries: maxEntries, maxBytes: 16 << 20, m: map[string]V{}}
}

// Get returns the value for text, calling compute on a miss.
func (c *Memo[V]) Get(text string, compute func(string) V) V {
	c.mu.Lock()
	v, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = compute(text)
	size := len(text) + 64
	if size > c.maxBytes/8 {
		return v
	}
	c.mu.Lock()
	if len(c.m) >= c.maxEntries || c.bytes+size > c.maxBytes {
		// Forget about an eighth of the texts: map order is random enough for a cache whose
		// misses cost one parse.
		drop := len(c.m)/8 + 1
		for k := range c.m {
			c.bytes -= len(k) + 64
			delete(c.m, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	if _, dup := c.m[text]; !dup {
		c.m[text] = v
		c.bytes += size
	}
	c.mu.Unlock()
	return v
}

// Parse returns the facts of text without a cache. Texts longer than maxLength are not parsed.
func Parse(text string, maxLength int) *Facts {
	if len(text) > maxLength {
		return &Facts{Err: fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(text), maxLength)}
	}
	if strings.IndexByte(text, 0) >= 0 {
		return &Facts{Err: errors.New("query text contains a zero byte")}
	}
	tree, err := pg.Parse(text)
	if err != nil {
		return &Facts{Err: err}
	}
	w := walker{f: &Facts{}, seen: map[string]bool{}}
	for _, raw := range tree.GetStmts() {
		st := raw.GetStmt()
		if m := inner(st); m != nil {
			w.f.Kinds = append(w.f.Kinds, string(m.Descriptor().Name()))
		}
		w.ctes = w.ctes[:0]
		w.collectCTEs(st.ProtoReflect())
		w.visit(st.ProtoReflect())
	}
	return w.f
}

// inner returns the message a Node wraps (a Node is a oneof of every node type).
func inner(n *pg.Node) protoreflect.Message {
	if n == nil {
		return nil
	}
	m := n.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("node")
	if od == nil {
		return nil
	}
	fd := m.WhichOneof(od)
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message()
}

type walker struct {
	f    *Facts
	seen map[string]bool
	ctes []string
}

func (w *walker) add(list *[]string, prefix, name string) {
	if w.seen[prefix+name] {
		return
	}
	w.seen[prefix+name] = true
	*list = append(*list, name)
}

// collectCTEs gathers every CTE name of a statement: a relation so named, unqualified, is
// not a table. (Scoping is ignored: a table shadowed by a CTE elsewhere in the statement is
// missed, which errs towards naming fewer tables only in that contrived case.)
func (w *walker) collectCTEs(m protoreflect.Message) {
	if cte, ok := m.Interface().(*pg.CommonTableExpr); ok {
		w.ctes = append(w.ctes, cte.GetCtename())
	}
	each(m, w.collectCTEs)
}

func (w *walker) visit(m protoreflect.Message) {
	if name := string(m.Descriptor().Name()); strings.HasSuffix(name, "Stmt") {
		w.add(&w.f.Statements, "s:", name)
	}
	switch n := m.Interface().(type) {
	case *pg.RangeVar:
		name := n.GetRelname()
		if n.GetSchemaname() != "" {
			name = n.GetSchemaname() + "." + name
		} else if contains(w.ctes, name) {
			break
		}
		w.add(&w.f.Tables, "t:", name)
	case *pg.FuncCall:
		var parts []string
		for _, p := range n.GetFuncname() {
			parts = append(parts, p.GetString_().GetSval())
		}
		w.add(&w.f.Functions, "f:", strings.Join(parts, "."))
	case *pg.CopyStmt:
		if n.GetIsProgram() {
			w.f.CopyProgram = true
		}
	}
	each(m, w.visit)
}

// each calls f on every message directly inside m: set message fields and list elements.
func each(m protoreflect.Message, f func(protoreflect.Message)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				f(l.Get(i).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil:
			f(v.Message())
		}
		return true
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// NodeNames returns every node type name the parser knows ("SelectStmt", "CopyStmt" ...), for
// checking the statement kinds a configuration names.
func NodeNames() []string {
	var names []string
	fields := (&pg.Node{}).ProtoReflect().Descriptor().Oneofs().ByName("node").Fields()
	for i := 0; i < fields.Len(); i++ {
		names = append(names, string(fields.Get(i).Message().Name()))
	}
	return names
}

// Normalize returns text as the parser prints it back (pg_query's deparser), lower-cased:
// whitespace, comments, keyword case and a trailing semicolon no longer matter. ok is false
// when the text does not parse (or is longer than maxLength).
func Normalize(text string, maxLength int) (string, bool) {
	if len(text) > maxLength || strings.IndexByte(text, 0) >= 0 {
		return "", false
	}
	tree, err := pg.Parse(text)
	if err != nil || len(tree.GetStmts()) == 0 {
		return "", false
	}
	out, err := pg.Deparse(tree)
	if err != nil {
		return "", false
	}
	return strings.ToLower(out), true
}

// MatchTable reports whether table (as in Facts.Tables) is the one a configuration names: an
// unqualified name matches the table in any schema ("pg_user" matches "pg_catalog.pg_user"), a
// qualified one only that schema's table. Names compare as the parser folds them.
func MatchTable(name, table string) bool {
	if name == table {
		return true
	}
	if strings.IndexByte(name, '.') < 0 {
		if i := strings.LastIndexByte(table, '.'); i >= 0 {
			return table[i+1:] == name
		}
	}
	return false
}

// AnyTable returns the first of tables that one of names matches, and whether there is one.
func AnyTable(names, tables []string) (string, bool) {
	for _, t := range tables {
		for _, n := range names {
			if MatchTable(n, t) {
				return t, true
			}
		}
	}
	return "", false
}
