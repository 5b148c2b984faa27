// Package wasmguest is the SDK for sluice plugins written in Go and compiled to WebAssembly.
//
// A guest is a main package that registers its hooks from an init function and is built as a
// WASI reactor (Go 1.24 or later):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o guard.wasm ./guard
//
// and loaded by sluice's wasm plugin:
//
//	[[plugins.wasm.modules]]
//	path = "guard.wasm"
//	config = { deny = "DROP" }
//
// sluice runs the package's init functions once per instance (the reactor's _initialize; main
// is never called), then calls the registered hooks, one call at a time per instance. Package
// variables therefore live as long as the instance, which sluice throws away when a call fails;
// keep nothing there that must outlive it. A guest that panics fails the query it was called
// for, with the panic's message; so does one that runs past its timeout or its memory limit.
//
// Everything this package returns is a copy the guest owns. The functions that read the query
// or the client are valid only inside a hook. docs/plugins.md describes the ABI underneath, for
// guests written in other languages.
package wasmguest

import (
	"encoding/json"
	"strings"
	"unsafe"
)

// Action is a hook's decision. Make one with Continue, Reject or Rewrite.
type Action int32

// The actions, as the ABI numbers them.
const (
	actionContinue Action = 0
	actionReject   Action = 1
	actionRewrite  Action = 2
)

// Continue lets the query (or the client) through unchanged.
func Continue() Action { return actionContinue }

// Reject refuses the query (or the client's login) with a Postgres error: code is a SQLSTATE
// such as "42501" (insufficient_privilege) or "0A000" (feature_not_supported); "" means 42501 for
// a query and 28000 for a login. The client sees message.
func Reject(code, message string) Action {
	hostReject(strPtr(code), uint32(len(code)), strPtr(message), uint32(len(message)))
	return actionReject
}

// Rewrite runs text instead of the query. Only OnQuery hooks may rewrite; the next plugin in
// the chain sees the new text.
func Rewrite(text string) Action {
	hostSetRewrite(strPtr(text), uint32(len(text)))
	return actionRewrite
}

// Feature bits, as the ABI numbers them.
const (
	featureQuery   = 1 << 0
	featureStartup = 1 << 1
	featureAuth    = 1 << 2
)

var (
	queryHook   func(q *Query) Action
	startupHook func(s *Startup) Action
	authHook    func(c Client) Action
)

// OnQuery registers the function sluice calls for each query: a simple Query, and each Parse
// and Bind of the extended protocol. Call it from an init function.
func OnQuery(f func(q *Query) Action) { queryHook = f }

// OnStartup registers the function sluice calls when a client's startup packet arrives, before
// its password is checked: it may refuse the client or send it to another user or database
// (Startup.SetUser, Startup.SetDatabase). Call it from an init function.
func OnStartup(f func(s *Startup) Action) { startupHook = f }

// OnAuth registers the function sluice calls after it checked a client's password: it may
// still refuse the client. Call it from an init function.
func OnAuth(f func(c Client) Action) { authHook = f }

func features() int32 {
	var f int32
	if queryHook != nil {
		f |= featureQuery
	}
	if startupHook != nil {
		f |= featureStartup
	}
	if authHook != nil {
		f |= featureAuth
	}
	return f
}

// current is the Query of the call in progress, reused from call to call: an allocation costs
// a guest more than it would cost native code.
var current Query

func runQuery() int32 {
	if queryHook == nil {
		return int32(actionContinue)
	}
	current = Query{}
	return int32(queryHook(&current))
}

func runStartup() int32 {
	if startupHook == nil {
		return int32(actionContinue)
	}
	var s Startup
	return int32(startupHook(&s))
}

func runAuth() int32 {
	if authHook == nil {
		return int32(actionContinue)
	}
	return int32(authHook(Client{}))
}

// Protocol says how a query arrived.
type Protocol int32

const (
	// Simple is a Query message; its text may hold several statements.
	Simple Protocol = 0
	// Parse is the extended protocol's Parse: the statement, without parameters yet.
	Parse Protocol = 1
	// Bind is a Bind of a prepared statement: Text is the statement's, the parameters are set.
	Bind Protocol = 2
)

// Query is the query an OnQuery hook was called for, valid during that call only. Its methods
// ask sluice; Text is asked once and remembered.
type Query struct {
	text    string
	hasText bool
}

// Text is the query's text (for a Bind, the prepared statement's).
func (q *Query) Text() string {
	if !q.hasText {
		q.text, q.hasText = string(get(hostGetQuery)), true
	}
	return q.text
}

// Kind is the first statement's kind as the Postgres parser names it ("SelectStmt",
// "ExecuteStmt", ...), or "" when the pool does not parse queries (query_parser_enabled) or the
// text did not parse.
func (q *Query) Kind() string { return string(get(hostGetQueryKind)) }

// Protocol says how the query arrived.
func (q *Query) Protocol() Protocol { return Protocol(hostGetQueryFlags() & 3) }

// InTransaction reports whether the query runs inside a transaction block.
func (q *Query) InTransaction() bool { return hostGetQueryFlags()&(1<<2) != 0 }

// Write reports whether the statement writes, when the pool parses queries (false otherwise).
func (q *Query) Write() bool { return hostGetQueryFlags()&(1<<3) != 0 }

// Reads and Writes are the tables the statement reads and writes, when the pool parses queries.
func (q *Query) Reads() []string  { return tables(0) }
func (q *Query) Writes() []string { return tables(1) }

func tables(which int32) []string {
	b := get(func(p unsafe.Pointer, n uint32) uint32 { return hostGetTables(which, p, n) })
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// NumParams is the number of a Bind's parameters (0 for other protocols).
func (q *Query) NumParams() int { return int(hostGetParamCount()) }

// Param returns the i'th parameter (from 0) of a Bind: its value, in text or binary format as
// the client sent it (ParamBinary tells which), and ok false when it is NULL or absent.
func (q *Query) Param(i int) (value []byte, ok bool) {
	for {
		n := hostGetParam(int32(i), bufPtr(), uint32(len(buf)))
		if n < 0 {
			return nil, false
		}
		if int(n) <= len(buf) {
			return append([]byte(nil), buf[:n]...), true
		}
		buf = make([]byte, n)
	}
}

// ParamBinary reports whether the i'th parameter is in binary format.
func (q *Query) ParamBinary(i int) bool { return hostGetParamFormat(int32(i)) == 1 }

// Client is the client the query runs for.
func (q *Query) Client() Client { return Client{} }

// Client describes the client a hook runs for.
type Client struct{}

// User, Database, ApplicationName and Addr are the client's ("host:port" for Addr).
func (Client) User() string            { return clientField(0) }
func (Client) Database() string        { return clientField(1) }
func (Client) ApplicationName() string { return clientField(2) }
func (Client) Addr() string            { return clientField(3) }

func clientField(f int32) string {
	return string(get(func(p unsafe.Pointer, n uint32) uint32 { return hostGetClient(f, p, n) }))
}

// Startup is a client's startup packet, for OnStartup hooks.
type Startup struct{ Client }

// SetUser and SetDatabase change the user and database the client logs in to: the client is
// then checked against, and served by, that pool.
func (*Startup) SetUser(user string) { hostSetClient(0, strPtr(user), uint32(len(user))) }
func (*Startup) SetDatabase(db string) {
	hostSetClient(1, strPtr(db), uint32(len(db)))
}

var config []byte

// Config returns the module's config table from sluice's configuration, as JSON ("{}" when it
// has none). It is read once per instance.
func Config() []byte {
	if config == nil {
		config = append([]byte(nil), get(hostGetConfig)...)
	}
	return config
}

// DecodeConfig decodes the module's config into v with encoding/json.
func DecodeConfig(v any) error { return json.Unmarshal(Config(), v) }

// Level is a log level.
type Level int32

// The levels, as http-wasm numbers them.
const (
	LevelDebug Level = -1
	LevelInfo  Level = 0
	LevelWarn  Level = 1
	LevelError Level = 2
)

// Log writes msg to sluice's log at level, tagged with the plugin and the module's name.
func Log(level Level, msg string) { hostLog(int32(level), strPtr(msg), uint32(len(msg))) }

// LogEnabled reports whether sluice logs at level, to skip building a message no one reads.
func LogEnabled(level Level) bool { return hostLogEnabled(int32(level)) != 0 }

// buf is the buffer host functions copy into. An instance runs one call at a time, so one
// buffer serves them all; get copies out of it before it is used again.
var buf = make([]byte, 1024)

func bufPtr() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(buf)) }

// get calls a get_* host function, growing buf until the value fits. The result is a view of
// buf, valid until the next get.
func get(f func(p unsafe.Pointer, limit uint32) uint32) []byte {
	for {
		n := f(bufPtr(), uint32(len(buf)))
		if int(n) <= len(buf) {
			return buf[:n]
		}
		buf = make([]byte, n)
	}
}

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }
