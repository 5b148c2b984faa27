package plugin

import (
	"context"
	"net"
)

// Client describes the client a hook runs for. It does not change during a session, except
// Values, which plugins may use to keep per-client state (keyed by their own name).
type Client struct {
	ID              uint64 // unique in the process; the admin console shows it
	User            string
	Database        string
	ApplicationName string
	Addr            net.Addr
	TLS             bool
	// Values is free for plugins. A client's hooks run one at a time, except ResultHook and
	// TxEndHook, which run on the goroutine reading the server and may run beside the others
	// (session mode, an open batch, COPY): set entries before the first query (StartupHook,
	// AuthHook), and guard state that those hooks share with QueryHook with a mutex.
	Values map[string]any
}

// Startup is the client's startup packet, which an OnStartup hook may change before sluice looks
// up the pool and checks the password.
type Startup struct {
	User     string
	Database string
	// Params are the other startup parameters (application_name, options, ...).
	Params map[string]string
	Addr   net.Addr
	TLS    bool
}

// StartupHook runs when a client's startup packet arrives, before authentication. It may rewrite
// the user and database (route the client to another pool) or refuse the client with an *Error.
type StartupHook interface {
	OnStartup(ctx context.Context, s *Startup) error
}

// AuthHook runs after sluice verified the client's password. A non-nil error refuses the login
// (an *Error chooses the SQLSTATE; other errors give 28000).
type AuthHook interface {
	OnAuth(ctx context.Context, c *Client) error
}

// Protocol says how a query arrived.
type Protocol uint8

const (
	// Simple is a Query message: Text may hold several statements.
	Simple Protocol = iota
	// Parse is the Parse message of the extended protocol: Text, no Params yet. A Rewrite
	// here changes the statement.
	Parse
	// Bind is a Bind of a prepared statement: Text is the statement's, Params its values.
	Bind
)

func (p Protocol) String() string {
	switch p {
	case Parse:
		return "parse"
	case Bind:
		return "bind"
	}
	return "simple"
}

// Param is one parameter value of a Bind.
type Param struct {
	// Value is nil for NULL. It points into sluice's read buffer: it is valid only until the
	// hook returns, so copy what you keep.
	Value  []byte
	Binary bool // format 1; text otherwise
	// Type is the type (an OID) the client declared for the parameter in its Parse, which
	// says how a binary Value is encoded; 0 when it left the type to the server.
	Type uint32
}

// Query is what a QueryHook sees. It is valid during the call only: sluice reuses it (and its
// Params slice, whose values point into sluice's buffers). Text and the other strings and slices
// of the parse may be kept.
type Query struct {
	Client   *Client
	Protocol Protocol
	Text     string
	Params   []Param
	// ResultFormats are a Bind's result-column format codes as the client sent them: none
	// means every column in text, one applies to every column, else one per column (0 text,
	// 1 binary). A stored result may answer only a Bind that asks for the same formats.
	ResultFormats []int16
	// InTransaction is set when the query runs inside a transaction block, as far as the
	// replies read so far say: a query pipelined behind a BEGIN or a COMMIT not yet answered
	// is judged by the state before it (see Result.TxStatus for the state after).
	InTransaction bool
	// Seq numbers the client's queries that the hooks see, from 1, in the order the client
	// sent them (see Result.Done).
	Seq uint64
	// Write is set when the statement writes (as routing sees it: DML, DDL, locks, write
	// functions); Reads and Writes are the tables it names, schema-qualified as written.
	// sluice fills them for every query a QueryHook sees, from the pool's classifier (parsed
	// once per distinct text, then cached); a text that does not parse, or is longer than the
	// pool's query_parser_max_length, counts as a write with no tables.
	Write         bool
	Reads, Writes []string
	// Kind is the first statement's kind, as the parser names it ("SelectStmt",
	// "InsertStmt", "ExecuteStmt" ...), or "" when the text did not parse.
	Kind string

	parsed ParsedQuery
}

// ParsedQuery is what the parse of a query's text says.
type ParsedQuery struct {
	Kinds         []string // every statement's kind
	Write         bool
	Reads, Writes []string
	Err           error // the parser's error, when the text does not parse
}

// Parsed returns the parse of the query's text (parsed once per distinct text, then cached).
func (q *Query) Parsed() ParsedQuery { return q.parsed }

// SetParsed is for sluice: it records what Parsed returns.
func (q *Query) SetParsed(p ParsedQuery) { q.parsed = p }

// ActionKind says what a QueryHook decided.
type ActionKind uint8

const (
	// Continue: run the query (possibly rewritten or routed); the next hook runs.
	Continue ActionKind = iota
	// Reject: answer the client with an error and do not run the query.
	Reject
	// Answer: answer the client with rows and a command tag and do not run the query.
	Answer
)

// Action is a QueryHook's decision. The zero value continues unchanged.
type Action struct {
	Kind ActionKind
	// Rewrite, when not empty, replaces the query text (simple Query, or Parse).
	Rewrite string
	// Code and Message are the error of a Reject.
	Code, Message string
	// Columns, Rows and Tag are the result of an Answer; values are text, nil for NULL.
	Columns []string
	Rows    [][]*string
	Tag     string
	// Wire, with Kind Answer, is the answer as the server would send it for one statement:
	// RowDescription (or none), DataRows, CommandComplete, as raw protocol messages. It works
	// in both protocols (in the extended one sluice answers the Bind, the Describe of the
	// portal and the Execute from it), outside transaction blocks only: inside one the query
	// runs. A cache answers with it. sluice only reads it, so one Wire may answer many
	// clients at once.
	Wire []byte
	// Capture, when not nil, asks sluice to hand this statement's result, as raw protocol
	// messages (RowDescription, DataRows, CommandComplete) up to CaptureLimit bytes, to the
	// ResultHooks, with Capture in Result.Capture so the plugin knows it. A result over the
	// limit, an error, or a statement inside a transaction block that is rolled back is not
	// handed over (Result.Wire is nil).
	Capture      any
	CaptureLimit int
	// Role ("primary", "replica" or "any") routes a query that begins a transaction; ""
	// leaves the choice to sluice. Shard picks the shard when ShardSet.
	Role     string
	Shard    int
	ShardSet bool
}

// ContinueQuery runs the query unchanged.
func ContinueQuery() Action { return Action{} }

// RewriteQuery runs text instead of the query.
func RewriteQuery(text string) Action { return Action{Rewrite: text} }

// RejectQuery answers the query with an error with SQLSTATE code.
func RejectQuery(code, message string) Action {
	return Action{Kind: Reject, Code: code, Message: message}
}

// AnswerWire answers the query with a result given as raw protocol messages (see Action.Wire).
func AnswerWire(wire []byte) Action { return Action{Kind: Answer, Wire: wire} }

// AnswerQuery answers the query with rows, without a server. tag is the command tag, e.g.
// "SELECT 1".
func AnswerQuery(columns []string, rows [][]*string, tag string) Action {
	return Action{Kind: Answer, Columns: columns, Rows: rows, Tag: tag}
}

// RouteQuery sends the query (if it begins a transaction) to a server of role.
func RouteQuery(role string) Action { return Action{Role: role} }

// QueryHook runs for each query before it is sent: each simple Query, and each Parse and Bind of
// the extended protocol. An error fails the query like a Reject (an *Error chooses the SQLSTATE).
type QueryHook interface {
	OnQuery(ctx context.Context, q *Query) (Action, error)
}

// Result is what a ResultHook sees when a statement's result is complete.
type Result struct {
	Client *Client
	// Tag is the command tag ("SELECT 3", "INSERT 0 1"); Error is set instead (SQLSTATE and
	// message) when the statement failed.
	Tag   string
	Error *Error
	// Capture is the value a QueryHook set in Action.Capture for this statement, and Wire
	// the statement's result as raw protocol messages (nil when the capture failed or was
	// over its limit). Wire is the hook's to keep. Every capture asked for is answered once,
	// with a Wire or without (an error before any row, a Bind never executed), so a plugin
	// may make others wait for it.
	Capture any
	Wire    []byte
	// Done and TxStatus say where the client's requests stand when the result is delivered
	// (at a ReadyForQuery): every query whose Query.Seq is at most Done has ended (its request
	// was answered; later ones, pipelined, may not have run yet), and TxStatus is the
	// ReadyForQuery's status: 'I' outside a transaction block (a statement that ended
	// outside one is committed or rolled back), 'T' inside one, 'E' inside a failed one.
	// Done is 0 where sluice cannot say.
	Done     uint64
	TxStatus byte
}

// ResultHook observes each statement's outcome. Outcomes are delivered at the ReadyForQuery that
// follows the statement: outside a transaction block the statement is then committed (the
// extended protocol commits at Sync), and the client has not seen the ReadyForQuery yet. It runs
// on the path that sends results to the client: keep it quick.
type ResultHook interface {
	OnResult(ctx context.Context, r *Result)
}

// TxEndHook runs after a transaction block ended: committed is false for a rollback (or a
// failed transaction ended by COMMIT).
type TxEndHook interface {
	OnTxEnd(ctx context.Context, c *Client, committed bool)
}

// Server is a new server connection, for ServerConnectHook.
type Server struct {
	Database, User string // the pool's database and user on the server
	Addr           string
	// Exec runs sql on the connection (simple protocol) before any client uses it.
	Exec func(sql string) error
}

// FunctionCallHook runs for each FunctionCall message of the client (the protocol's fast path:
// libpq's PQfn, large objects), before it is sent. Such a call runs a function named by its OID
// with no query text for a QueryHook to see, and may write anything. seq is its number among the
// client's queries (Query.Seq; it counts as one): its outcome is delivered to the ResultHooks at
// the ReadyForQuery that follows, with an empty Tag (or an Error), Done and TxStatus, as a
// statement's is.
type FunctionCallHook interface {
	OnFunctionCall(ctx context.Context, c *Client, seq uint64)
}

// ServerConnectHook runs when sluice opened a new server connection, before any client uses it:
// prewarm caches, set parameters. An error closes the connection.
type ServerConnectHook interface {
	OnServerConnect(ctx context.Context, s *Server) error
}

// DisconnectHook runs when a client has left.
type DisconnectHook interface {
	OnDisconnect(ctx context.Context, c *Client)
}
