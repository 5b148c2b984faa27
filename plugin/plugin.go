// Package plugin is sluice's plugin API: what a plugin is, the hooks it may have, what a hook sees
// and what it may answer. Plugins are compiled in (call Register from an init function and build
// your own binary that calls sluice.Main), loaded as WebAssembly modules, or asked over HTTP; all
// three are seen by sluice through these interfaces.
//
// A plugin is a Go value returned by its Info.New. Its configuration block
// ([plugins.<name>] or [pools.<db>.plugins.<name>]) is decoded into that value, strictly: a key
// the value has no field for is an error. Then, if the value has them, Provision, Validate run in
// that order; Cleanup runs when a reload or shutdown retires it.
//
// Hooks are optional one-method interfaces (StartupHook, AuthHook, QueryHook, ResultHook,
// TxEndHook, ServerConnectHook, DisconnectHook). sluice checks once, when the configuration is
// loaded, which hooks each plugin has, so a plugin pays only for its own hooks and a query meets
// no plugin code at all when no plugin has a QueryHook.
//
// A plugin may also report to operators: Shower answers SHOW <its name> in the admin console,
// Collector adds metrics to the Prometheus exporter.
//
// Hooks run in configuration order. The first to reject or answer ends the chain. A hook that
// panics, or returns after its deadline, fails the query (or the login) with an error naming the
// plugin; the process and the client's session go on.
package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
)

// Plugin is any value a plugin's Info.New returns. Its hooks are the interfaces below it
// implements.
type Plugin any

// Info registers a plugin.
type Info struct {
	// Name is the plugin's name in the configuration: [plugins.<Name>].
	Name string
	// New returns a new, unconfigured instance, a pointer: its configuration block is decoded
	// into it.
	New func() Plugin
}

var (
	regMu    sync.RWMutex
	registry = map[string]Info{}
)

// Register makes a plugin available to configurations. Call it from an init function. It panics
// on an empty or duplicate name, as a programming error found at start.
func Register(info Info) {
	if info.Name == "" || info.New == nil {
		panic("plugin.Register: a plugin needs a Name and a New function")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[info.Name]; dup {
		panic(fmt.Sprintf("plugin.Register: plugin %q registered twice", info.Name))
	}
	registry[info.Name] = info
}

// Lookup returns the registered plugin called name.
func Lookup(name string) (Info, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	info, ok := registry[name]
	return info, ok
}

// Names returns the names of the registered plugins, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Context is what Provision gets: the plugin's place in the configuration and a way to reach
// the database.
type Context struct {
	context.Context
	// Name is the plugin's name; Pool is the database whose [pools.<db>.plugins] block it came
	// from, or "" for the top-level [plugins].
	Name, Pool string
	Logger     *slog.Logger
	// Host runs the plugin's own queries through sluice's pools.
	Host Host
}

// Provisioner sets a plugin up after its configuration was decoded: open files, compile
// patterns, connect to services.
type Provisioner interface {
	Provision(ctx Context) error
}

// Validator checks a provisioned plugin's configuration.
type Validator interface {
	Validate() error
}

// CleanerUpper releases what Provision acquired, when the plugin is retired by a reload or at
// shutdown. A call already running may still finish after Cleanup began.
type CleanerUpper interface {
	Cleanup() error
}

// Host runs a plugin's own queries on one of sluice's pools, as that pool's user, on the primary
// of its first shard. It is for checks and lookups (the users table, a feature flag), not for the
// client's work: it takes a server connection from the pool for the length of the query.
type Host interface {
	// Query runs sql with parameters $1, $2 ... given as text (nil for NULL) and returns the
	// rows as text (nil for NULL).
	Query(ctx context.Context, db, user, sql string, args ...*string) (*Rows, error)
}

// Rows is a query's result as text.
type Rows struct {
	Columns []string
	Rows    [][]*string
	Tag     string // the command tag: "SELECT 1", "INSERT 0 1"
}

// Error is what a hook returns to refuse something with a Postgres error: the client gets Code
// (a SQLSTATE) and Message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message + " (SQLSTATE " + e.Code + ")" }

// Errorf returns an *Error with SQLSTATE code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
