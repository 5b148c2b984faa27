// Package wasm is the plugin that runs WebAssembly modules (plugins written in any language that
// compiles to wasip1) in sluice's hooks, with wazero.
//
// One [plugins.wasm] block lists its modules as [[plugins.wasm.modules]] entries; they run in that
// order inside the plugin's place in the chain, with the chain's rules: a rewrite is what the
// next module sees, the first rejection ends the chain. Each module gets its own wazero runtime
// (holding its memory cap), code compiled once and shared through a process-wide compilation
// cache keyed by the file's bytes, and a pool of instances, one pinned per call. A call has a
// deadline; a guest that traps, exits, exhausts its memory or overruns its deadline fails that
// query (or login) with an error naming the module, and its instance is thrown away and replaced
// by a fresh one at the next call.
//
// Guests get no file system (unless allow_fs lists directories, read-only), no network, no
// environment; they get the clocks and a random source. The ABI is described in docs/plugins.md
// and in abi.go; plugin/wasmguest implements the guest side for Go.
package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicepg/sluice/plugin"
)

func init() {
	plugin.Register(plugin.Info{Name: "wasm", New: func() plugin.Plugin { return new(Wasm) }})
}

// Wasm is the [plugins.wasm] block.
type Wasm struct {
	Modules []ModuleConfig `toml:"modules"`

	mods []*module
}

// ModuleConfig is one [[plugins.wasm.modules]] entry.
type ModuleConfig struct {
	// Name names the module in errors and logs; default: the file's name without ".wasm".
	Name string `toml:"name"`
	// Path is the .wasm file (relative paths are from sluice's working directory). It is read
	// again at every reload; a changed file is compiled again.
	Path string `toml:"path"`
	// Config is given to the guest as JSON (get_config).
	Config GuestConfig `toml:"config"`
	// Timeout is each call's deadline in milliseconds (default 100). It also bounds the wait
	// for a free instance.
	Timeout int `toml:"timeout"`
	// MemoryLimitMiB caps each instance's linear memory (default 64 MiB, at most 4096).
	MemoryLimitMiB int `toml:"memory_limit_mib"`
	// Instances is the size of the pool of instances, the number of calls that can run at
	// once (default 4).
	Instances int `toml:"instances"`
	// AllowFS lists host directories the guest may read: "DIR" (seen at the same path) or
	// "DIR:GUESTPATH". Nothing by default.
	AllowFS []string `toml:"allow_fs"`
}

// GuestConfig is a module's config table, which belongs to the guest: sluice passes it on as
// JSON without checking its keys.
type GuestConfig map[string]any

// UnmarshalTOML takes the table as it is (the strict decoding of the plugin's block would
// otherwise call its keys unknown).
func (g *GuestConfig) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("config must be a table, not %T", v)
	}
	*g = m
	return nil
}

const (
	defaultTimeout   = 100 * time.Millisecond
	defaultMemoryMiB = 64
	defaultInstances = 4
)

// PluginKind is the plugin's kind in the admin console's SHOW PLUGINS.
func (w *Wasm) PluginKind() string { return "wasm" }

// Provision loads every module: read, compile (or find in the cache), validate its imports and
// exports, and create its first instance.
func (w *Wasm) Provision(ctx plugin.Context) error {
	if len(w.Modules) == 0 {
		return errors.New(`wasm: no modules: add [[plugins.wasm.modules]] entries with a path`)
	}
	seen := map[string]bool{}
	for i, mc := range w.Modules {
		o, err := mc.options(i)
		if err != nil {
			w.Cleanup()
			return err
		}
		if seen[o.name] {
			w.Cleanup()
			return fmt.Errorf("wasm: two modules are named %q: give one a name", o.name)
		}
		seen[o.name] = true
		o.log = ctx.Logger
		m, err := loadModule(ctx, o)
		if err != nil {
			w.Cleanup()
			return fmt.Errorf("wasm module %q (%s): %w", o.name, o.path, err)
		}
		w.mods = append(w.mods, m)
	}
	return nil
}

func (mc *ModuleConfig) options(i int) (moduleOptions, error) {
	o := moduleOptions{path: mc.Path, name: mc.Name, timeout: defaultTimeout,
		memPages: defaultMemoryMiB * 16, instances: defaultInstances}
	if mc.Path == "" {
		return o, fmt.Errorf("wasm: modules[%d] has no path", i)
	}
	if o.name == "" {
		o.name = strings.TrimSuffix(filepath.Base(mc.Path), ".wasm")
	}
	cfg := mc.Config
	if cfg == nil {
		cfg = map[string]any{}
	}
	var err error
	if o.config, err = json.Marshal(cfg); err != nil {
		return o, fmt.Errorf("wasm module %q: config: %w", o.name, err)
	}
	switch {
	case mc.Timeout < 0:
		return o, fmt.Errorf("wasm module %q: timeout %d: must be positive (milliseconds)", o.name, mc.Timeout)
	case mc.Timeout > 0:
		o.timeout = time.Duration(mc.Timeout) * time.Millisecond
	}
	switch {
	case mc.MemoryLimitMiB < 0 || mc.MemoryLimitMiB > 4096:
		return o, fmt.Errorf("wasm module %q: memory_limit_mib %d: must be 1 to 4096", o.name, mc.MemoryLimitMiB)
	case mc.MemoryLimitMiB > 0:
		o.memPages = uint32(mc.MemoryLimitMiB) * 16 // 64 KiB pages
	}
	switch {
	case mc.Instances < 0 || mc.Instances > 1024:
		return o, fmt.Errorf("wasm module %q: instances %d: must be 1 to 1024", o.name, mc.Instances)
	case mc.Instances > 0:
		o.instances = mc.Instances
	}
	for _, d := range mc.AllowFS {
		host, guest, ok := strings.Cut(d, ":")
		if !ok {
			guest = host
		}
		if host == "" || guest == "" {
			return o, fmt.Errorf("wasm module %q: allow_fs entry %q: want DIR or DIR:GUESTPATH", o.name, d)
		}
		o.fsMounts = append(o.fsMounts, [2]string{host, guest})
	}
	return o, nil
}

// Cleanup retires the modules. Calls still running finish first; the runtimes close after them.
func (w *Wasm) Cleanup() error {
	for _, m := range w.mods {
		m.close()
	}
	w.mods = nil
	return nil
}

// OnQuery runs the modules that want on_query, in order.
func (w *Wasm) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	text := q.Text
	for _, m := range w.mods {
		if m.features&FeatureQuery == 0 {
			continue
		}
		in, err := m.acquire(ctx)
		if err != nil {
			return plugin.Action{}, m.acquireError(err)
		}
		c := &in.call
		c.q, c.text = q, text
		code, err := m.run(ctx, in, in.onQuery, "on_query")
		if err != nil {
			return plugin.Action{}, err
		}
		rewrite, rewriteSet := c.rewrite, c.rewriteSet
		rejCode, rejMsg := c.rejectCode, c.rejectMsg
		m.done(in)
		switch code {
		case ActionContinue:
		case ActionRewrite:
			if !rewriteSet {
				return plugin.Action{}, plugin.Errorf("XX000", "wasm module %q: on_query returned rewrite without calling set_rewrite", m.name)
			}
			text = rewrite
		case ActionReject:
			pe, err := m.rejection(rejCode, rejMsg, "42501")
			if err != nil {
				return plugin.Action{}, err
			}
			return plugin.RejectQuery(pe.Code, pe.Message), nil
		default:
			return plugin.Action{}, plugin.Errorf("XX000", "wasm module %q: on_query returned %d, which is no action", m.name, code)
		}
	}
	if text != q.Text {
		return plugin.RewriteQuery(text), nil
	}
	return plugin.ContinueQuery(), nil
}

// OnStartup runs the modules that want on_startup. They may change the user and database
// (set_client) or refuse the client (28000 unless reject gave a code).
func (w *Wasm) OnStartup(ctx context.Context, s *plugin.Startup) error {
	for _, m := range w.mods {
		if m.features&FeatureStartup == 0 {
			continue
		}
		if err := m.gate(ctx, "on_startup", func(c *call) { c.startup = s }); err != nil {
			return err
		}
	}
	return nil
}

// OnAuth runs the modules that want on_auth: they may refuse the client.
func (w *Wasm) OnAuth(ctx context.Context, cl *plugin.Client) error {
	for _, m := range w.mods {
		if m.features&FeatureAuth == 0 {
			continue
		}
		if err := m.gate(ctx, "on_auth", func(c *call) { c.client = cl }); err != nil {
			return err
		}
	}
	return nil
}

// gate runs a hook that can only continue or reject.
func (m *module) gate(ctx context.Context, hook string, setup func(c *call)) error {
	in, err := m.acquire(ctx)
	if err != nil {
		return m.acquireError(err)
	}
	setup(&in.call)
	fn := in.onStartup
	if hook == "on_auth" {
		fn = in.onAuth
	}
	code, err := m.run(ctx, in, fn, hook)
	if err != nil {
		return err
	}
	rejCode, rejMsg := in.call.rejectCode, in.call.rejectMsg
	m.done(in)
	switch code {
	case ActionContinue:
		return nil
	case ActionReject:
		pe, err := m.rejection(rejCode, rejMsg, "28000")
		if err != nil {
			return err
		}
		return pe
	}
	return plugin.Errorf("XX000", "wasm module %q: %s returned %d, which is no action", m.name, hook, code)
}

// done clears a call's state and gives its instance back.
func (m *module) done(in *instance) {
	in.call = call{inst: in}
	m.release(in)
}

// rejection is the client's error for a guest's reject, after checking the SQLSTATE it gave.
func (m *module) rejection(code, msg, defCode string) (*plugin.Error, error) {
	if code == "" {
		code = defCode
	}
	if !validSQLState(code) {
		return nil, plugin.Errorf("XX000", "wasm module %q rejected with %q, which is no SQLSTATE", m.name, code)
	}
	if msg == "" {
		msg = fmt.Sprintf("rejected by wasm module %q", m.name)
	}
	return &plugin.Error{Code: code, Message: msg}, nil
}

func validSQLState(s string) bool {
	if len(s) != 5 {
		return false
	}
	for i := 0; i < 5; i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func (m *module) acquireError(err error) error {
	switch {
	case errors.Is(err, errBusy):
		return plugin.Errorf("57014", "wasm module %q: all %d instances stayed busy for %s", m.name, m.size, m.timeout)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return plugin.Errorf("57014", "wasm module %q: %v", m.name, err)
	}
	return plugin.Errorf("XX000", "wasm module %q: %v", m.name, err)
}

// Interface guards.
var (
	_ plugin.Provisioner  = (*Wasm)(nil)
	_ plugin.CleanerUpper = (*Wasm)(nil)
	_ plugin.QueryHook    = (*Wasm)(nil)
	_ plugin.StartupHook  = (*Wasm)(nil)
	_ plugin.AuthHook     = (*Wasm)(nil)
)
