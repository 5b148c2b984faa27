// Package classify decides, from a query's text, what the router needs to know to pick a
// server: whether the query must go to the primary (it writes, or it depends on state only the
// primary has), how it moves the transaction state, which tables it reads and writes, and
// whether it is one of pgcat's own commands (SET SERVER ROLE ...), which sluice answers itself.
//
// Classification parses with the real Postgres parser (pg_query), which costs tens of
// microseconds, so results are cached per query text; a hit costs tens of nanoseconds and no
// allocation. The caller decides whether a query needs a decision at all: with the query
// parser on, it calls Classify with each Query's text and each Parse's query (and keeps the
// *Result with the prepared statement); with the parser off, it calls only ParseCommand,
// which never parses.
//
// The package is pure: no network, no configuration globals, no logging.
package classify

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/sluicepg/sluice/internal/textcache"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Options configure a Classifier. The zero value is usable and gives the defaults.
type Options struct {
	// WriteFunctions are functions whose call sends a query to the primary, added to the
	// built-in list (nextval, setval, currval, the advisory locks, lo_*, pg_notify,
	// set_config, replication slots, txid_current ...): the config's write_functions. An
	// entry is a function name, optionally schema-qualified ("billing.charge": it also
	// matches an unqualified charge(), which search_path may resolve there), and may contain
	// '*' wildcards ("audit_*"). Names are lower-cased, as Postgres folds unquoted names.
	WriteFunctions []string

	// StrictFunctions sends to the primary any query that calls a function not known to be
	// read-only: the built-in list (common aggregates, string, math, date, JSON functions ...)
	// and ReadFunctions.
	StrictFunctions bool

	// ReadFunctions are added to the built-in read-only list; they matter only with
	// StrictFunctions. An unqualified entry matches unqualified and pg_catalog calls; a
	// qualified one ("reports.monthly") matches only calls with that schema.
	ReadFunctions []string

	// CacheSize bounds the number of cached results. 0 means 10,000; a negative value turns
	// the cache off (every call parses).
	CacheSize int

	// CacheBytes bounds the memory of the cache, query texts included. 0 means 32 MiB. A text
	// too large for its share of the budget is classified each time instead of cached.
	CacheBytes int

	// MaxLength is the longest text that is parsed (pgcat's query_parser_max_length); a
	// longer one goes to the primary with ParseErr wrapping ErrTooLong, and is not cached.
	// 0 means DefaultMaxLength. There is no "no limit", for the reason below: a config's
	// 0 (no limit) should be passed as 0.
	//
	// The limit protects the process, not only its time: pg_query's C code recurses once per
	// level of the parse tree, and a left-nested expression ("1+1+1+...") adds a level every
	// two bytes. With the usual 8 MiB thread stack, about 20,000 levels (40 KiB of such
	// text) overflow it and crash sluice. Raise the limit only with that in mind.
	MaxLength int
}

const (
	defaultCacheSize  = 10_000
	defaultCacheBytes = 32 << 20

	// DefaultMaxLength is MaxLength's default: 16 KiB, at most about 8,000 levels of
	// nesting, well inside an 8 MiB stack. Longer texts are mostly bulk INSERTs (which go to
	// the primary anyway) and the rare huge IN list (which then does too).
	DefaultMaxLength = 16 << 10
)

// ErrTooLong is wrapped by Result.ParseErr for a text longer than Options.MaxLength.
var ErrTooLong = errors.New("query text too long to classify")

// Classifier classifies query texts. It is safe for concurrent use by any number of
// goroutines, and meant to be shared by every client session of a pool: a Result depends only
// on the text and the Options, so pools with the same options can share one too.
type Classifier struct {
	writeFuncs funcSet
	readFuncs  funcSet
	strict     bool
	maxLength  int
	cache      *textcache.Cache[*Result] // nil when caching is off
}

// New returns a Classifier for o.
func New(o Options) *Classifier {
	c := &Classifier{
		writeFuncs: newFuncSet(builtinWriteFunctions, o.WriteFunctions),
		readFuncs:  newFuncSet(builtinReadFunctions, o.ReadFunctions),
		strict:     o.StrictFunctions,
		maxLength:  o.MaxLength,
	}
	if c.maxLength <= 0 {
		c.maxLength = DefaultMaxLength
	}
	if o.CacheSize >= 0 {
		size, budget := o.CacheSize, o.CacheBytes
		if size == 0 {
			size = defaultCacheSize
		}
		if budget <= 0 {
			budget = defaultCacheBytes
		}
		c.cache = textcache.New[*Result](size, budget)
	}
	return c
}

// Access is what a statement says about a transaction's access mode.
type Access uint8

const (
	// AccessUnchanged: the text says nothing about it.
	AccessUnchanged Access = iota
	// AccessReadOnly: READ ONLY (the transaction may run on a replica).
	AccessReadOnly
	// AccessReadWrite: READ WRITE.
	AccessReadWrite
	// AccessDefault: back to the server's default (RESET, SET ... TO DEFAULT, RESET ALL,
	// DISCARD ALL). Used only for SessionAccess.
	AccessDefault
)

func (a Access) String() string {
	switch a {
	case AccessReadOnly:
		return "read only"
	case AccessReadWrite:
		return "read write"
	case AccessDefault:
		return "default"
	}
	return "unchanged"
}

// Result is the classification of one query text. A Result is shared by every caller that
// classifies the same text, through the cache: it must not be modified, its slices included.
// A caller may keep it as long as it likes (for example with a prepared statement, so that
// each Bind reuses it without a cache lookup).
type Result struct {
	// Write is true when the text must run on the primary: it writes (DML, DDL, COPY FROM,
	// SELECT INTO, a writing CTE), locks rows or tables, calls a write function, uses
	// session state that lives on the primary (LISTEN, NOTIFY, EXECUTE), or could not be
	// parsed. For a text of several statements, Write is true if any statement is a write.
	Write bool

	// Why names the first reason that made the text a write, for logs ("InsertStmt",
	// "FOR UPDATE", "function nextval", "parse error"). Empty for a read.
	Why string

	// Neutral is true when no statement reads or writes data: only transaction control
	// (BEGIN, COMMIT, SAVEPOINT ...), SET, SHOW, RESET, DISCARD, DEALLOCATE, FETCH, CLOSE,
	// a pgcat command, or an empty text. It can run on whichever server the session has, and
	// a BEGIN that is neutral does not say yet where its transaction should go.
	Neutral bool

	// Begin: some statement begins a transaction block (BEGIN, START TRANSACTION, or
	// COMMIT/ROLLBACK AND CHAIN). End: some statement ends one (COMMIT, END, ROLLBACK, ABORT,
	// PREPARE TRANSACTION). Both can be true ("BEGIN; ...; COMMIT"); the order of statements
	// is not recorded, and the server's ReadyForQuery status stays the authority on whether
	// a transaction is open.
	Begin, End bool

	// TxAccess is the access mode the text sets for the current (or beginning) transaction:
	// BEGIN/START TRANSACTION READ ONLY|READ WRITE, SET TRANSACTION ..., SET
	// transaction_read_only. The last such statement wins.
	TxAccess Access

	// SessionAccess is the default access mode the text sets for the session's later
	// transactions: SET SESSION CHARACTERISTICS AS TRANSACTION ..., SET
	// default_transaction_read_only, or AccessDefault for RESET / RESET ALL / DISCARD ALL.
	// SET LOCAL does not count (it ends with the transaction). The last such statement wins.
	SessionAccess Access

	// Reads and Writes are the tables (and views, sequences ...) the text names, each once,
	// in order of appearance: Writes are the targets of INSERT, UPDATE, DELETE, MERGE,
	// COPY FROM, SELECT INTO and CREATE TABLE AS, and every relation that a utility statement
	// (DDL, TRUNCATE, VACUUM, LOCK, GRANT ...) acts on; Reads are every other relation named.
	// Names are as written, with the parser's folding: unquoted identifiers lower-cased,
	// quoted ones kept, parts joined with '.' ("public.users", "Orders"). The caller resolves
	// unqualified names against search_path if it needs to. CTE names are not tables. An
	// EXPLAIN without ANALYZE names no tables: it neither reads nor writes them.
	Reads, Writes []string

	// Command is set when the text is one of pgcat's commands, which sluice answers itself
	// and never sends to a server. CommandErr is set instead when the text is shaped like
	// one but malformed; it is a *CommandError with the SQLSTATE to answer with.
	Command    *Command
	CommandErr error

	// Kinds are the statements' node names as the parser gives them ("SelectStmt",
	// "InsertStmt", "ExecuteStmt" ...), in order; nil when the text did not parse.
	Kinds []string

	// ParseErr is set when the parser rejected the text; Write is then true, so that the
	// primary reports the error to the client (and nothing is sent to a replica on a guess).
	ParseErr error
}

var errZeroByte = errors.New("query text contains a zero byte")

// Classify returns the classification of query: the text of a simple Query message (one or
// more statements) or the query of a Parse message, without the terminating zero byte. The
// result comes from the cache when the same text was classified before; finding it there does
// not allocate. Classify does not keep query, and never panics on any input: text the parser
// rejects (or that is longer than Options.MaxLength) is a write with ParseErr set.
func (c *Classifier) Classify(query []byte) *Result {
	cacheable := c.cache != nil && len(query) <= c.maxLength
	if !cacheable {
		return c.classify(query)
	}
	bp := shapeBufs.Get().(*[]byte)
	sh, shaped := shape((*bp)[:0], query)
	var r *Result
	if shaped {
		// Kept apart from query, which must not escape (a hit does not allocate).
		var ok bool
		if r, ok = c.cache.Get(sh); !ok {
			r = c.classify(query)
			c.cache.Put(string(sh), r, entrySize(sh, r))
		}
		*bp = sh[:0]
	} else if cached, ok := c.cache.Get(query); ok {
		r = cached
	} else {
		r = c.classify(query)
		c.cache.Put(string(query), r, entrySize(query, r))
	}
	shapeBufs.Put(bp)
	return r
}

// classify does the work of Classify, without the cache.
func (c *Classifier) classify(query []byte) *Result {
	if cmd, ok, err := ParseCommand(query); ok {
		return &Result{Neutral: true, Command: cmd, CommandErr: err}
	}
	if bytes.IndexByte(query, 0) >= 0 {
		// The C parser would stop at the zero byte and classify only what comes before it.
		return &Result{Write: true, Why: "parse error", ParseErr: errZeroByte}
	}
	if len(query) > c.maxLength {
		return &Result{Write: true, Why: "too long to classify",
			ParseErr: fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(query), c.maxLength)}
	}
	tree, err := pg.Parse(string(query))
	if err != nil {
		return &Result{Write: true, Why: "parse error", ParseErr: err}
	}
	w := walker{c: c, res: &Result{Neutral: true}}
	for _, raw := range tree.GetStmts() {
		w.res.Kinds = append(w.res.Kinds, statementKind(raw.GetStmt()))
		w.statement(raw.GetStmt())
	}
	return w.res
}

// statementKind is the name of a statement node's type: "SelectStmt" for a SELECT.
func statementKind(n *pg.Node) string {
	m := inner(n)
	if m == nil {
		return ""
	}
	return string(m.Descriptor().Name())
}

// entrySize estimates the memory a cache entry holds: its text, its Result and the map slot.
func entrySize(text []byte, r *Result) int {
	n := len(text) + 256
	for _, t := range r.Reads {
		n += len(t) + 16
	}
	for _, t := range r.Writes {
		n += len(t) + 16
	}
	return n
}
