// Package hooks runs plugins: it sets up the plugins a configuration names (decode, Provision,
// Validate), precomputes per pool which of them have each hook, and calls them with the
// guarantees the plugin API promises: configuration order, the first reject or answer ends the
// chain, and a panic or an overlong call fails that query with an error naming the plugin,
// never the process.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/plugin"
)

// Timeout is how long a hook may take. A compiled-in plugin cannot be stopped, so one that
// returns after this fails its query all the same; Wasm and webhook plugins stop themselves at
// their own deadlines.
const Timeout = 5 * time.Second

// Instance is one configured plugin.
type Instance struct {
	Name string
	Pool string // "" for a top-level plugin
	// Kind is how the plugin runs, for the admin console: "go" for a compiled-in plugin, or
	// what its value's PluginKind method says ("wasm", "webhook").
	Kind string
	P    plugin.Plugin
	log  *slog.Logger // sluice's, for panics

	startup plugin.StartupHook
	auth    plugin.AuthHook
	query   plugin.QueryHook
	result  plugin.ResultHook
	txEnd   plugin.TxEndHook
	fcall   plugin.FunctionCallHook
	connect plugin.ServerConnectHook
	disconn plugin.DisconnectHook

	shower    plugin.Shower
	collector plugin.Collector

	calls, rejects, errs, nanos atomic.Int64
}

// Kinder is implemented by plugin values that are not plain compiled-in Go plugins: the Wasm
// host's and the webhook's plugin values say "wasm" and "webhook".
type Kinder interface {
	PluginKind() string
}

// Stats are an instance's counters, for the admin console's SHOW PLUGINS.
type Stats struct {
	Name, Pool, Kind string
	Hooks            []string
	// Calls counts hook calls of every kind; Rejects the calls that refused a client or a
	// query; Errors the calls that panicked, failed with an error that is not a
	// *plugin.Error, or overran their time. Total is the time spent in the plugin's hooks.
	Calls, Rejects int64
	Errors         int64
	Total          time.Duration
}

// Stats returns the instance's counters.
func (in *Instance) Stats() Stats {
	return Stats{Name: in.Name, Pool: in.Pool, Kind: in.Kind, Hooks: in.hooks(), Calls: in.calls.Load(),
		Rejects: in.rejects.Load(), Errors: in.errs.Load(), Total: time.Duration(in.nanos.Load())}
}

func (in *Instance) hooks() []string {
	var h []string
	for _, x := range []struct {
		ok   bool
		name string
	}{{in.startup != nil, "startup"}, {in.auth != nil, "auth"}, {in.query != nil, "query"},
		{in.result != nil, "result"}, {in.txEnd != nil, "tx_end"}, {in.fcall != nil, "function_call"}, {in.connect != nil, "server_connect"},
		{in.disconn != nil, "disconnect"}} {
		if x.ok {
			h = append(h, x.name)
		}
	}
	return h
}

// Chain is the plugins of one pool, split by hook, in configuration order. A nil *Chain has no
// plugins; every method works on it.
type Chain struct {
	all                                                       []*Instance
	startup, auth, query, result, txEnd, fcall, connect, disc []*Instance
}

func newChain(ins []*Instance) *Chain {
	if len(ins) == 0 {
		return nil
	}
	c := &Chain{all: ins}
	for _, in := range ins {
		if in.startup != nil {
			c.startup = append(c.startup, in)
		}
		if in.auth != nil {
			c.auth = append(c.auth, in)
		}
		if in.query != nil {
			c.query = append(c.query, in)
		}
		if in.result != nil {
			c.result = append(c.result, in)
		}
		if in.txEnd != nil {
			c.txEnd = append(c.txEnd, in)
		}
		if in.fcall != nil {
			c.fcall = append(c.fcall, in)
		}
		if in.connect != nil {
			c.connect = append(c.connect, in)
		}
		if in.disconn != nil {
			c.disc = append(c.disc, in)
		}
	}
	return c
}

// HasQuery, HasResult, HasTxEnd, HasServerConnect and HasDisconnect report whether any plugin of
// the chain has that hook, so callers skip building what a hook would see.
func (c *Chain) HasQuery() bool         { return c != nil && len(c.query) > 0 }
func (c *Chain) HasResult() bool        { return c != nil && len(c.result) > 0 }
func (c *Chain) HasTxEnd() bool         { return c != nil && len(c.txEnd) > 0 }
func (c *Chain) HasFunctionCall() bool  { return c != nil && len(c.fcall) > 0 }
func (c *Chain) HasServerConnect() bool { return c != nil && len(c.connect) > 0 }
func (c *Chain) HasDisconnect() bool    { return c != nil && len(c.disc) > 0 }
func (c *Chain) HasStartup() bool       { return c != nil && len(c.startup) > 0 }
func (c *Chain) HasAuth() bool          { return c != nil && len(c.auth) > 0 }

// Set is every plugin of one configuration.
type Set struct {
	global *Chain
	pools  map[string]*Chain
	all    []*Instance
}

// Chain returns the plugins that serve database db: the pool's own, when it has a plugins
// table, else the top-level ones.
func (s *Set) Chain(db string) *Chain {
	if s == nil {
		return nil
	}
	if c, ok := s.pools[db]; ok {
		return c
	}
	return s.global
}

// Instances returns every configured plugin, top-level first.
func (s *Set) Instances() []*Instance {
	if s == nil {
		return nil
	}
	return s.all
}

// Cleanup retires every plugin of the set.
func (s *Set) Cleanup(log *slog.Logger) {
	if s == nil {
		return
	}
	for _, in := range s.all {
		if c, ok := in.P.(plugin.CleanerUpper); ok {
			if err := safeCall(in, func() error { return c.Cleanup() }); err != nil && log != nil {
				log.Warn("plugin cleanup failed", "plugin", in.Name, "pool", in.Pool, "err", err)
			}
		}
	}
}

// Load sets up the plugins cfg names. An unknown plugin name, a bad block, or a failed Provision
// or Validate is an error; the plugins set up before it are cleaned up.
func Load(cfg *config.Config, host plugin.Host, log *slog.Logger) (*Set, error) {
	s := &Set{pools: map[string]*Chain{}}
	var errs []error
	load := func(blocks []config.PluginBlock, pool string) []*Instance {
		var out []*Instance
		for i := range blocks {
			in, err := setup(&blocks[i], pool, host, log)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, in)
			s.all = append(s.all, in)
		}
		return out
	}
	s.global = newChain(load(cfg.Plugins, ""))
	dbs := make([]string, 0, len(cfg.Pools))
	for db := range cfg.Pools {
		dbs = append(dbs, db)
	}
	slices.Sort(dbs)
	for _, db := range dbs {
		if pc := cfg.Pools[db]; pc.HasPlugins {
			s.pools[db] = newChain(load(pc.Plugins, db))
		}
	}
	if len(errs) > 0 {
		s.Cleanup(log)
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func setup(b *config.PluginBlock, pool string, host plugin.Host, log *slog.Logger) (*Instance, error) {
	info, ok := plugin.Lookup(b.Name)
	if !ok {
		msg := fmt.Sprintf("%s: unknown plugin %q", b.Where(), b.Name)
		if s := config.Suggest(b.Name, plugin.Names()); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return nil, errors.New(msg)
	}
	p := info.New()
	if err := b.Decode(p); err != nil {
		return nil, err
	}
	in := &Instance{Name: b.Name, Pool: pool, Kind: "go", P: p, log: log}
	if k, ok := p.(Kinder); ok {
		in.Kind = k.PluginKind()
	}
	if log == nil {
		log = slog.Default()
	}
	if pv, ok := p.(plugin.Provisioner); ok {
		ctx := plugin.Context{Context: context.Background(), Name: b.Name, Pool: pool,
			Logger: log.With("plugin", b.Name), Host: host}
		if err := safeCall(in, func() error { return pv.Provision(ctx) }); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Where(), err)
		}
	}
	if v, ok := p.(plugin.Validator); ok {
		if err := safeCall(in, v.Validate); err != nil {
			if c, ok := p.(plugin.CleanerUpper); ok {
				_ = safeCall(in, c.Cleanup)
			}
			return nil, fmt.Errorf("%s: %w", b.Where(), err)
		}
	}
	in.startup, _ = p.(plugin.StartupHook)
	in.auth, _ = p.(plugin.AuthHook)
	in.query, _ = p.(plugin.QueryHook)
	in.result, _ = p.(plugin.ResultHook)
	in.txEnd, _ = p.(plugin.TxEndHook)
	in.fcall, _ = p.(plugin.FunctionCallHook)
	in.connect, _ = p.(plugin.ServerConnectHook)
	in.disconn, _ = p.(plugin.DisconnectHook)
	in.shower, _ = p.(plugin.Shower)
	in.collector, _ = p.(plugin.Collector)
	return in, nil
}

// safeCall runs f, turning a panic into an error naming the plugin.
func safeCall(in *Instance, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			in.errs.Add(1)
			err = &plugin.Error{Code: "XX000", Message: fmt.Sprintf("plugin %q failed: %v", in.Name, r)}
			log := in.log
			if log == nil {
				log = slog.Default()
			}
			log.Error("plugin panicked", "plugin", in.Name, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	return f()
}

// epoch is mono's reference point. time.Since on a time that has a monotonic reading reads
// only the monotonic clock: half the cost of time.Now, which reads the wall clock too.
var epoch = time.Now()

// mono returns the monotonic clock in nanoseconds since epoch.
func mono() int64 { return int64(time.Since(epoch)) }

// call runs one hook with the chain's guarantees: panics recovered, overlong calls failed,
// counters kept. start is when the call began (mono); the returned end is when it ended, which
// a chain passes to its next call as that call's start, so n calls read the clock n+1 times.
// The returned error is a *plugin.Error fit for the client.
func call(in *Instance, start int64, f func() error) (end int64, _ error) {
	in.calls.Add(1)
	err := safeCall(in, f)
	end = mono()
	d := time.Duration(end - start)
	in.nanos.Add(int64(d))
	if err == nil && d > Timeout {
		in.errs.Add(1)
		return end, &plugin.Error{Code: "57014", Message: fmt.Sprintf("plugin %q took %s, more than its %s", in.Name, d.Round(time.Millisecond), Timeout)}
	}
	if err != nil {
		var pe *plugin.Error
		if !errors.As(err, &pe) {
			in.errs.Add(1)
			return end, &plugin.Error{Code: "XX000", Message: fmt.Sprintf("plugin %q: %v", in.Name, err)}
		}
		return end, pe
	}
	return end, nil
}
