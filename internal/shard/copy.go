package shard

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/sluicepg/sluice/internal/copysplit"
)

// Copy is what a COPY statement says, for running it on several shards: where its data comes
// from or goes, which table and columns, and how the data is written.
type Copy struct {
	// From is COPY ... FROM (else TO); Stdio is FROM STDIN or TO STDOUT, not a file or a
	// program on the server.
	From, Stdio bool
	// Schema and Table name the relation ("" for COPY (query) TO), as parsed: unquoted names
	// folded to lower case.
	Schema, Table string
	// KeyTable is set when the relation is the sharding key's table (any table for
	// "*.column"); Key is the key column.
	KeyTable bool
	Key      string
	// Columns is the column list, nil when there is none (every column but the generated
	// ones, in the table's order).
	Columns []string
	// Query is the text of COPY (query) TO's query, as the Postgres deparser writes it; ""
	// when there is none or it could not be deparsed.
	Query string
	// Format is the data's format from the options (as Postgres reads them, defaults
	// included); a value the server will refuse, such as a delimiter of two bytes, is left
	// at its default: the server's error comes first.
	Format copysplit.Format
	// Encoding is the ENCODING option, "" when absent.
	Encoding string
}

// Copy returns the COPY statement of the text, or nil when the text is not one COPY.
func (s *Statement) Copy() *Copy { return s.copy }

// KeyIndex returns the position of the key column in cols, or -1.
func (c *Copy) KeyIndex(cols []string) int {
	for i, col := range cols {
		if col == c.Key {
			return i
		}
	}
	return -1
}

// copyStmt records a COPY that is the text's only statement.
func (a *analyzer) copyStmt(cs *pg.CopyStmt) {
	rv := cs.GetRelation()
	c := &Copy{
		From:     cs.GetIsFrom(),
		Stdio:    cs.GetFilename() == "" && !cs.GetIsProgram(),
		Schema:   rv.GetSchemaname(),
		Table:    rv.GetRelname(),
		KeyTable: rv != nil && a.isKeyTable(rv),
		Key:      a.e.column,
	}
	for _, n := range cs.GetAttlist() {
		c.Columns = append(c.Columns, n.GetString_().GetSval())
	}
	if q := cs.GetQuery(); q != nil {
		if text, err := pg.Deparse(&pg.ParseResult{Version: pgVersion, Stmts: []*pg.RawStmt{{Stmt: q}}}); err == nil {
			c.Query = text
		}
	}
	c.Format, c.Encoding = copyFormat(cs.GetOptions(), c.Key)
	a.st.copy = c
}

// pgVersion is the parse tree version of the linked parser, for trees built by hand.
var pgVersion = func() int32 {
	tree, err := pg.Parse("SELECT")
	if err != nil {
		return 0
	}
	return tree.GetVersion()
}()

// copyFormat reads COPY's options as Postgres' ProcessCopyOptions does, in either spelling
// (WITH (FORMAT csv, HEADER) or the older CSV HEADER, which the parser turns into the same
// options), then applies the format's defaults. key is the key column, for FORCE_NULL and
// FORCE_NOT_NULL.
func copyFormat(opts []*pg.Node, key string) (copysplit.Format, string) {
	var kind copysplit.Kind
	var delim, quote, escape, null, def *string
	var header bool
	var forceNull, forceNotNull bool
	var encoding string
	for _, n := range opts {
		d := n.GetDefElem()
		if d == nil {
			continue
		}
		s := defString(d.GetArg())
		switch d.GetDefname() {
		case "format":
			switch strings.ToLower(s) {
			case "csv":
				kind = copysplit.CSV
			case "binary":
				kind = copysplit.Binary
			}
		case "header":
			// HEADER alone, a boolean, or MATCH (the names are the server's to check).
			header = d.GetArg() == nil || defTrue(d.GetArg()) || strings.EqualFold(s, "match")
		case "delimiter":
			delim = &s
		case "quote":
			quote = &s
		case "escape":
			escape = &s
		case "null":
			null = &s
		case "default":
			def = &s
		case "encoding":
			encoding = s
		case "force_null":
			forceNull = listsColumn(d.GetArg(), key)
		case "force_not_null":
			forceNotNull = listsColumn(d.GetArg(), key)
		}
	}
	f := copysplit.TextFormat()
	if kind == copysplit.CSV {
		f = copysplit.CSVFormat()
	}
	f.Kind = kind
	if delim != nil && len(*delim) == 1 {
		f.Delimiter = (*delim)[0]
	}
	if null != nil {
		f.Null = *null
	}
	if def != nil {
		f.Default, f.HasDefault = *def, true
	}
	if kind == copysplit.CSV {
		if quote != nil && len(*quote) == 1 {
			f.Quote = (*quote)[0]
		}
		f.Escape = f.Quote
		if escape != nil && len(*escape) == 1 {
			f.Escape = (*escape)[0]
		}
		f.KeyForceNull, f.KeyForceNotNull = forceNull, forceNotNull
	}
	f.Header = header && kind != copysplit.Binary
	return f, encoding
}

// defString returns an option's argument as text: a string, or an identifier, number or
// boolean as written.
func defString(n *pg.Node) string {
	switch x := n.GetNode().(type) {
	case *pg.Node_String_:
		return x.String_.GetSval()
	case *pg.Node_Integer:
		return strconv.Itoa(int(x.Integer.GetIval()))
	case *pg.Node_Boolean:
		return strconv.FormatBool(x.Boolean.GetBoolval())
	}
	return ""
}

// defTrue reads a boolean option as Postgres' defGetBoolean does.
func defTrue(n *pg.Node) bool {
	switch strings.ToLower(defString(n)) {
	case "true", "on", "1":
		return true
	}
	return false
}

// listsColumn reports whether a FORCE_NULL or FORCE_NOT_NULL list names col (or is *).
func listsColumn(n *pg.Node, col string) bool {
	if n.GetAStar() != nil {
		return true
	}
	for _, it := range n.GetList().GetItems() {
		if it.GetString_().GetSval() == col || it.GetAStar() != nil {
			return true
		}
	}
	return false
}
