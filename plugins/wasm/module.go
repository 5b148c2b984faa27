package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sluicepg/sluice/plugin"
)

// compileCache is shared by every module of the process. wazero keys it by the module's bytes,
// so a reload that finds the same file reuses its machine code, and a changed file is compiled
// afresh. It is the package's only global: a cache, not configuration. A compiled module stays in
// it while some runtime uses it.
var compileCache = wazero.NewCompilationCache()

// module is one loaded .wasm file: its runtime (which holds the memory cap and the close-on-
// deadline setting), its compiled code and a pool of instances.
type module struct {
	name     string
	path     string
	sha256   string
	config   []byte // the guest's config, JSON
	timeout  time.Duration
	features uint32
	log      *slog.Logger

	rt       wazero.Runtime
	compiled wazero.CompiledModule
	modCfg   wazero.ModuleConfig

	// slots holds one entry per instance the pool may have: an idle instance, or nil for an
	// instance not created yet (or discarded). A call takes an entry and gives one back.
	slots   chan *instance
	size    int
	retired atomic.Bool

	created, discarded atomic.Int64
}

// instance is one instantiation of a module. It runs one call at a time: a call pins it.
type instance struct {
	m                 *module
	mod               api.Module
	onQuery           api.Function
	onStartup, onAuth api.Function
	features          uint32
	stack             [1]uint64
	stderr            limitedBuffer
	call              call
}

// call is the state of one hook call, which the host functions read and write. It lives in
// its instance and is reset for each call, so a call allocates nothing for it.
type call struct {
	inst    *instance
	ctx     context.Context
	q       *plugin.Query
	text    string
	client  *plugin.Client
	startup *plugin.Startup

	rewrite               string
	rewriteSet            bool
	rejectCode, rejectMsg string
}

// callKey is the context key under which host functions find their call.
type callKey struct{}

// callCtx carries a call to the host functions without allocating a context per call.
type callCtx struct {
	context.Context
	c *call
}

func (cc *callCtx) Value(key any) any {
	if _, ok := key.(callKey); ok {
		return cc.c
	}
	return cc.Context.Value(key)
}

// moduleOptions are a module's settings after defaults.
type moduleOptions struct {
	name      string
	path      string
	config    []byte
	timeout   time.Duration
	memPages  uint32
	instances int
	fsMounts  [][2]string // host directory, guest path; read-only
	log       *slog.Logger
}

// newRuntime returns a runtime for one module. Every runtime shares compileCache and the same
// settings but the memory cap: wazero reuses the cache's machine code only for runtimes that
// stop on a deadline as this one does.
func newRuntime(ctx context.Context, memPages uint32) wazero.Runtime {
	return wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(compileCache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(memPages))
}

// loadModule reads, compiles and validates a module, and creates its first instance, so that a
// module that cannot work fails the configuration rather than the first query.
func loadModule(ctx context.Context, o moduleOptions) (*module, error) {
	bin, err := os.ReadFile(o.path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(bin)
	m := &module{name: o.name, path: o.path, sha256: hex.EncodeToString(sum[:]), config: o.config,
		timeout: o.timeout, log: o.log.With("module", o.name), size: o.instances}
	m.rt = newRuntime(ctx, o.memPages)
	ok := false
	defer func() {
		if !ok {
			_ = m.rt.Close(ctx)
		}
	}()
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return nil, err
	}
	if err := instantiateHost(ctx, m.rt); err != nil {
		return nil, err
	}
	start := time.Now()
	if m.compiled, err = m.rt.CompileModule(ctx, bin); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	compileTime := time.Since(start)
	if err := m.checkImports(); err != nil {
		return nil, err
	}
	exps := m.compiled.ExportedFunctions()
	if _, ok := exps["_start"]; ok {
		if _, ok := exps["_initialize"]; !ok {
			return nil, errors.New("the module is a WASI command (it exports _start): build it as a reactor, " +
				"e.g. GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared")
		}
	}
	if _, ok := m.compiled.ExportedMemories()["memory"]; !ok {
		return nil, errors.New(`the module exports no memory named "memory"`)
	}
	fsc := wazero.NewFSConfig()
	for _, mt := range o.fsMounts {
		fsc = fsc.WithReadOnlyDirMount(mt[0], mt[1])
	}
	m.modCfg = wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().
		// The host cannot interrupt a sleep, so a guest's sleeps are cut into slices: between
		// them the guest runs, and the deadline can stop it.
		WithNanosleep(func(ns int64) { time.Sleep(time.Duration(min(ns, int64(time.Millisecond)))) }).
		WithRandSource(rand.Reader).
		WithFSConfig(fsc).
		WithArgs(o.name)
	m.slots = make(chan *instance, m.size)
	first, err := m.instantiate(ctx)
	if err != nil {
		return nil, err
	}
	m.features = first.features
	m.slots <- first
	for i := 1; i < m.size; i++ {
		m.slots <- nil
	}
	ok = true
	m.log.Info("wasm module loaded", "path", o.path, "sha256", m.sha256[:16], "features", m.features,
		"compile", compileTime.Round(time.Microsecond), "instances", m.size)
	return m, nil
}

// checkImports refuses a module that imports from sluice a function the host lacks or with
// another signature, naming it, instead of wazero's generic link error at instantiation.
func (m *module) checkImports() error {
	for _, f := range m.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != HostModule {
			continue
		}
		var hf *hostFunc
		for i := range hostFuncs {
			if hostFuncs[i].name == name {
				hf = &hostFuncs[i]
			}
		}
		if hf == nil {
			return fmt.Errorf("the module imports %s.%s, which this sluice does not have", mod, name)
		}
		if !sameTypes(f.ParamTypes(), hf.params) || !sameTypes(f.ResultTypes(), hf.results) {
			return fmt.Errorf("the module imports %s.%s with the wrong signature", mod, name)
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool { return bytes.Equal(a, b) }

// instantiate creates an instance, runs its _initialize, and reads and checks its features.
func (m *module) instantiate(ctx context.Context) (*instance, error) {
	in := &instance{m: m}
	in.call.inst = in
	tctx, cancel := context.WithTimeout(ctx, 10*m.timeout+time.Second)
	defer cancel()
	// The guest's initialization may read its config and log.
	in.call.ctx = tctx
	defer func() { in.call.ctx = nil }()
	ictx := &callCtx{Context: tctx, c: &in.call}
	mod, err := m.rt.InstantiateModule(ictx, m.compiled, m.modCfg.WithStderr(&in.stderr).WithStdout(&in.stderr))
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w%s", err, in.stderr.tail())
	}
	in.mod = mod
	features := uint32(0)
	if f := mod.ExportedFunction("features"); f != nil {
		if !resultsI32(f) {
			mod.Close(ctx)
			return nil, errors.New(`the export "features" must take no parameters and return an i32`)
		}
		if err := f.CallWithStack(ictx, in.stack[:]); err != nil {
			mod.Close(ctx)
			return nil, fmt.Errorf("features: %w%s", err, in.stderr.tail())
		}
		features = api.DecodeU32(in.stack[0])
		if unknown := features &^ knownFeatures; unknown != 0 {
			mod.Close(ctx)
			return nil, fmt.Errorf("the module wants features %#x this sluice does not know", unknown)
		}
	} else {
		for bit, name := range hookExports {
			if mod.ExportedFunction(name) != nil {
				features |= bit
			}
		}
	}
	for bit, name := range hookExports {
		if features&bit == 0 {
			continue
		}
		f := mod.ExportedFunction(name)
		if f == nil || !resultsI32(f) {
			mod.Close(ctx)
			return nil, fmt.Errorf("the module wants %s but does not export %q as a function with no parameters returning i32", name, name)
		}
		switch bit {
		case FeatureQuery:
			in.onQuery = f
		case FeatureStartup:
			in.onStartup = f
		case FeatureAuth:
			in.onAuth = f
		}
	}
	in.features = features
	in.stderr.reset()
	m.created.Add(1)
	return in, nil
}

var hookExports = map[uint32]string{FeatureQuery: "on_query", FeatureStartup: "on_startup", FeatureAuth: "on_auth"}

func resultsI32(f api.Function) bool {
	d := f.Definition()
	return len(d.ParamTypes()) == 0 && len(d.ResultTypes()) == 1 && d.ResultTypes()[0] == api.ValueTypeI32
}

// errRetired is returned for a call that came after Cleanup.
var errRetired = errors.New("retired by a reload")

// acquire pins an instance for one call, creating it if its slot is empty. It waits for a free
// slot at most the module's timeout.
func (m *module) acquire(ctx context.Context) (*instance, error) {
	if m.retired.Load() {
		return nil, errRetired
	}
	var in *instance
	select {
	case in = <-m.slots:
	default:
		t := time.NewTimer(m.timeout)
		select {
		case in = <-m.slots:
			t.Stop()
		case <-t.C:
			return nil, errBusy
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if in == nil {
		var err error
		if in, err = m.instantiate(ctx); err != nil {
			m.release(nil)
			return nil, err
		}
	}
	return in, nil
}

var errBusy = errors.New("busy")

// release gives an instance back to the pool; nil gives back an empty slot.
func (m *module) release(in *instance) {
	m.slots <- in
}

// discard closes an instance that failed and gives its slot back empty: the next call that
// needs it creates a fresh one.
func (m *module) discard(in *instance) {
	_ = in.mod.Close(context.Background())
	m.discarded.Add(1)
	m.release(nil)
}

// run calls fn (a hook export of in) with the module's deadline. The call state must be set
// up by the caller. An error is a *plugin.Error for the client; the instance was discarded.
func (m *module) run(ctx context.Context, in *instance, fn api.Function, hook string) (int32, error) {
	dctx, cancel := context.WithTimeout(ctx, m.timeout)
	// A new callCtx for each call: wazero's deadline watcher may still read the context after
	// the call returned.
	in.call.ctx = dctx
	in.stderr.reset()
	err := fn.CallWithStack(&callCtx{Context: dctx, c: &in.call}, in.stack[:])
	cancel()
	in.call.ctx = nil
	if err == nil {
		return api.DecodeI32(in.stack[0]), nil
	}
	pe := m.failure(err, in, hook)
	m.log.Warn("wasm call failed; instance discarded", "hook", hook, "err", pe.Message, "trap", firstLine(err.Error()))
	m.discard(in)
	return 0, pe
}

// failure turns a call's error into the client's: 57014 for the deadline, XX000 for the rest,
// with what the guest wrote to stderr (a Go guest's panic message) when there is any.
func (m *module) failure(err error, in *instance, hook string) *plugin.Error {
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return plugin.Errorf("57014", "wasm module %q: %s did not finish within its timeout of %s", m.name, hook, m.timeout)
		case sys.ExitCodeContextCanceled:
			return plugin.Errorf("57014", "wasm module %q: %s was canceled", m.name, hook)
		}
		msg := fmt.Sprintf("wasm module %q: %s exited with code %d", m.name, hook, ee.ExitCode())
		if t := in.stderr.tail(); t != "" {
			msg += t
		}
		return &plugin.Error{Code: "XX000", Message: msg}
	}
	// What the guest printed (a Go guest's panic message) says more than the trap it ended
	// with ("unreachable"); the trap is logged.
	if t := in.stderr.tail(); t != "" {
		return plugin.Errorf("XX000", "wasm module %q: %s failed%s", m.name, hook, t)
	}
	return plugin.Errorf("XX000", "wasm module %q: %s failed: %s", m.name, hook, firstLine(err.Error())) // without wazero's stack trace
}

// close retires the module: calls still running finish, then the instances and the runtime
// close. It does not wait.
func (m *module) close() {
	if m.retired.Swap(true) {
		return
	}
	go func() {
		for range m.size { // wait for the calls still running to give their instances back
			<-m.slots
		}
		ctx := context.Background()
		_ = m.rt.Close(ctx) // closes the instances too
		_ = m.compiled.Close(ctx)
	}()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// limitedBuffer keeps the first 4 KiB a guest writes to stdout and stderr during one call (a Go
// guest prints its panic there before it exits).
type limitedBuffer struct{ b []byte }

const stderrLimit = 4 << 10

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := stderrLimit - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) reset() { l.b = l.b[:0] }

// tail returns the first meaningful line the guest wrote, as ": line", or "".
func (l *limitedBuffer) tail() string {
	for _, line := range strings.Split(string(l.b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return ": " + line
		}
	}
	return ""
}
