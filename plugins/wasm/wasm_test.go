package wasm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/hooks"
	"github.com/sluicepg/sluice/plugin"
)

// buildDir holds the guests built during this run; each build is made once.
var (
	buildDir string
	buildMu  sync.Mutex
	builds   = map[string]string{}
)

func TestMain(m *testing.M) {
	var err error
	if buildDir, err = os.MkdirTemp("", "sluice-wasm-test-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(buildDir)
	os.Exit(code)
}

// guest builds the Go package pkg (relative to the repository root) as a wasip1 reactor, with
// extra go build flags, once per run, and returns the .wasm file.
func guest(t testing.TB, pkg string, flags ...string) string {
	t.Helper()
	key := pkg + " " + strings.Join(flags, " ")
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds[key]; ok {
		return p
	}
	out := filepath.Join(buildDir, fmt.Sprintf("guest%d.wasm", len(builds)))
	args := append([]string{"build", "-buildmode=c-shared", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	builds[key] = out
	warm(t, out)
	return out
}

// warm compiles a guest in a runtime that lives as long as the test binary, so that the shared
// compilation cache keeps its machine code between the tests' plugins (a Go guest takes a second
// or more to compile).
func warm(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newRuntime(context.Background(), 65536).CompileModule(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

const (
	testGuest = "./plugins/wasm/testdata/guest"
	example   = "./examples/wasm-plugin"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// load provisions a wasm plugin with mods and cleans it up when the test ends.
// load provisions mods for a test. A module without a Timeout gets 10 s, not the 100 ms
// default: on a machine busy with other tests a first call can take longer than that, and only
// the tests of the timeout itself set one.
func load(t testing.TB, mods ...ModuleConfig) *Wasm {
	t.Helper()
	for i := range mods {
		if mods[i].Timeout == 0 {
			mods[i].Timeout = 10000
		}
	}
	w, err := provision(mods...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Cleanup() })
	return w
}

func provision(mods ...ModuleConfig) (*Wasm, error) {
	w := &Wasm{Modules: mods}
	err := w.Provision(plugin.Context{Context: context.Background(), Name: "wasm", Logger: quietLog()})
	return w, err
}

func query(text string) *plugin.Query {
	return &plugin.Query{Text: text, Client: &plugin.Client{User: "app", Database: "appdb", ApplicationName: "psql"}}
}

func runQuery(t testing.TB, w *Wasm, text string) (plugin.Action, *plugin.Error) {
	t.Helper()
	act, err := w.OnQuery(context.Background(), query(text))
	if err == nil {
		return act, nil
	}
	var pe *plugin.Error
	if !errors.As(err, &pe) {
		t.Fatalf("%q: error %v is no *plugin.Error", text, err)
	}
	return act, pe
}

// TestExample: examples/wasm-plugin refuses EXECUTE and renames the configured table.
func TestExample(t *testing.T) {
	w := load(t, ModuleConfig{Path: guest(t, example), Config: GuestConfig{
		"rename": map[string]any{"old_table": "new_table"}}})
	for _, tc := range []struct {
		text, rewrite, code string
	}{
		{text: "SELECT 1"},
		{text: "EXECUTE stmt(1)", code: "0A000"},
		{text: "  execute stmt", code: "0A000"},
		{text: "/* hi */ EXECUTE stmt", code: "0A000"},
		{text: "SELECT 1; EXECUTE stmt", code: "0A000"},
		{text: "SELECT 'EXECUTE'"},
		{text: "PREPARE s AS SELECT 1"},
		{text: "SELECT * FROM old_table WHERE id = 1", rewrite: "SELECT * FROM new_table WHERE id = 1"},
		{text: "select * from OLD_TABLE join old_table_2 using (id)", rewrite: "select * from new_table join old_table_2 using (id)"},
		{text: "SELECT * FROM public.old_table", rewrite: "SELECT * FROM public.new_table"},
		{text: "SELECT 'old_table', \"old_table\" -- old_table\nFROM t"},
		{text: "INSERT INTO old_table VALUES ('it''s old_table')", rewrite: "INSERT INTO new_table VALUES ('it''s old_table')"},
	} {
		act, pe := runQuery(t, w, tc.text)
		switch {
		case tc.code != "":
			if pe != nil || act.Kind != plugin.Reject || act.Code != tc.code || !strings.Contains(act.Message, "EXECUTE") {
				t.Errorf("%q: %+v, %v; want a rejection %s about EXECUTE", tc.text, act, pe, tc.code)
			}
		case pe != nil || act.Kind != plugin.Continue || act.Rewrite != tc.rewrite:
			t.Errorf("%q: %+v, %v; want continue with rewrite %q", tc.text, act, pe, tc.rewrite)
		}
	}
}

// TestGuestFailures: a guest that loops, allocates without bound, panics or breaks the ABI
// fails that query with an error naming the module; its instance is replaced and the next query
// works.
func TestGuestFailures(t *testing.T) {
	w := load(t, ModuleConfig{Name: "tg", Path: guest(t, testGuest), Timeout: 1000, MemoryLimitMiB: 32, Instances: 1})
	// Growing the memory to its cap takes a while on a busy machine: give it time to fail
	// on the cap rather than on the deadline.
	wAlloc := load(t, ModuleConfig{Name: "tg", Path: guest(t, testGuest), Timeout: 30000, MemoryLimitMiB: 32, Instances: 1})
	for _, tc := range []struct {
		text, code, msg string
		discards        bool
	}{
		{"SELECT guest_loop", "57014", "on_query did not finish within its timeout of 1s", true},
		{"SELECT guest_sleep", "57014", "timeout", true},
		{"SELECT guest_alloc", "XX000", "out of memory", true},
		{"SELECT guest_alloc", "XX000", "out of memory", true}, // a second time, on a fresh instance
		{"SELECT guest_panic", "XX000", `"tg": on_query failed: panic: the guest was told to panic`, true},
		{"SELECT guest_badaction", "XX000", "returned 7, which is no action", false},
		{"SELECT guest_badcode", "XX000", `rejected with "nope", which is no SQLSTATE`, false},
		{"SELECT guest_reject", "42501", "the guest rejects guest_reject", false},
	} {
		t.Run(strings.TrimPrefix(tc.text, "SELECT guest_"), func(t *testing.T) {
			w := w
			if strings.Contains(tc.text, "alloc") {
				w = wAlloc
			}
			m := w.mods[0]
			before := m.discarded.Load()
			start := time.Now()
			act, pe := runQuery(t, w, tc.text)
			code, msg := act.Code, act.Message
			if pe != nil {
				code, msg = pe.Code, pe.Message
			}
			if code != tc.code || !strings.Contains(msg, tc.msg) || (pe != nil && !strings.Contains(msg, `"tg"`)) {
				t.Errorf("got %s %q; want %s containing %q naming the module", code, msg, tc.code, tc.msg)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %s", d)
			}
			if got := m.discarded.Load() - before; (got == 1) != tc.discards {
				t.Errorf("instances discarded: %d; want discarded=%t", got, tc.discards)
			}
			act, pe = runQuery(t, w, "SELECT guest_version")
			if pe != nil || act.Rewrite != "SELECT 'guest v1'" {
				t.Errorf("next query: %+v, %v", act, pe)
			}
		})
	}
}

// TestHostFunctions: what the guest can read of the query, its client and its config.
func TestHostFunctions(t *testing.T) {
	w := load(t, ModuleConfig{Path: guest(t, testGuest), Config: GuestConfig{"k": "v", "n": 3}})
	q := query("SELECT guest_echo")
	q.Protocol, q.InTransaction, q.Kind, q.Reads = plugin.Bind, true, "SelectStmt", []string{"a", "b.c"}
	q.Params = []plugin.Param{{Value: []byte("1")}, {Value: nil}, {Value: []byte{0, 1}, Binary: true}}
	act, err := w.OnQuery(context.Background(), q)
	want := "user=app db=appdb app=psql proto=2 tx=true kind=SelectStmt reads=[a b.c] params=[1 NULL bin:\x00\x01] config={\"k\":\"v\",\"n\":3}"
	if err != nil || act.Rewrite != want {
		t.Errorf("echo:\n got %q, %v\nwant %q", act.Rewrite, err, want)
	}
	// A value larger than the SDK's first buffer comes through whole.
	act, err = w.OnQuery(context.Background(), query("SELECT guest_big"))
	if err != nil || len(act.Rewrite) != 100000+len("SELECT ''") {
		t.Errorf("big rewrite: %d bytes, %v", len(act.Rewrite), err)
	}
}

// TestStartupAndAuth: the login hooks refuse clients and remap users.
func TestStartupAndAuth(t *testing.T) {
	w := load(t, ModuleConfig{Name: "tg", Path: guest(t, testGuest)})
	ctx := context.Background()
	s := &plugin.Startup{User: "blocked", Database: "app", Params: map[string]string{}}
	var pe *plugin.Error
	if err := w.OnStartup(ctx, s); !errors.As(err, &pe) || pe.Code != "28000" || pe.Message != "blocked by the guest" {
		t.Errorf("blocked: %v; want 28000", err)
	}
	s = &plugin.Startup{User: "alias", Database: "app", Params: map[string]string{}}
	if err := w.OnStartup(ctx, s); err != nil || s.User != "app" {
		t.Errorf("alias: %v, user %q; want app", err, s.User)
	}
	if err := w.OnAuth(ctx, &plugin.Client{User: "app", ApplicationName: "noauth"}); !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Errorf("auth: %v; want 28P01", err)
	}
	if err := w.OnAuth(ctx, &plugin.Client{User: "app", ApplicationName: "psql"}); err != nil {
		t.Errorf("auth: %v", err)
	}
}

// TestModulesInOrder: the second module sees the first one's rewrite.
func TestModulesInOrder(t *testing.T) {
	w := load(t,
		ModuleConfig{Name: "rename", Path: guest(t, example), Config: GuestConfig{"rename": map[string]any{"t": "guest_reject"}}},
		ModuleConfig{Name: "tg", Path: guest(t, testGuest)})
	act, pe := runQuery(t, w, "SELECT * FROM t")
	if pe != nil || act.Kind != plugin.Reject || act.Code != "42501" {
		t.Errorf("got %+v, %v; want the second module's rejection of the first one's rewrite", act, pe)
	}
	act, pe = runQuery(t, w, "SELECT * FROM u")
	if pe != nil || act.Kind != plugin.Continue || act.Rewrite != "" {
		t.Errorf("got %+v, %v; want continue", act, pe)
	}
}

// TestReloadPicksUpChangedFile: provisioning again (as a reload does) after the file changed
// runs the new code, while the old plugin keeps running the old code until it is cleaned up.
func TestReloadPicksUpChangedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.wasm")
	cp := func(src string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cp(guest(t, testGuest))
	w1 := load(t, ModuleConfig{Path: path})
	cp(guest(t, testGuest, "-ldflags=-X main.version=2"))
	w2 := load(t, ModuleConfig{Path: path})
	if w1.mods[0].sha256 == w2.mods[0].sha256 {
		t.Fatal("the changed file has the same hash")
	}
	for _, tc := range []struct {
		w    *Wasm
		want string
	}{{w1, "SELECT 'guest v1'"}, {w2, "SELECT 'guest v2'"}} {
		if act, pe := runQuery(t, tc.w, "SELECT guest_version"); pe != nil || act.Rewrite != tc.want {
			t.Errorf("got %q, %v; want %q", act.Rewrite, pe, tc.want)
		}
	}
	w1.Cleanup()
	if _, pe := runQuery(t, w1, "SELECT guest_version"); pe != nil {
		t.Errorf("a retired plugin's late call: %v; want it to continue (it has no modules left)", pe)
	}
}

// TestConcurrentCalls: more callers than instances share the pool.
func TestConcurrentCalls(t *testing.T) {
	w := load(t, ModuleConfig{Path: guest(t, testGuest), Instances: 2, Timeout: 2000})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				act, err := w.OnQuery(context.Background(), query("SELECT guest_version"))
				if err != nil || act.Rewrite != "SELECT 'guest v1'" {
					errs <- fmt.Errorf("%+v, %v", act, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := w.mods[0].created.Load(); n > 2 {
		t.Errorf("%d instances created; want at most 2", n)
	}
}

// TestLoadErrors: a module that cannot work fails the configuration with a message that says
// why.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	header := []byte("\x00asm\x01\x00\x00\x00")
	// A function type () -> () and an import of it as sluice.nope.
	badImport := append(append([]byte{}, header...), 0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
		0x02, 0x0f, 0x01, 0x06, 's', 'l', 'u', 'i', 'c', 'e', 0x04, 'n', 'o', 'p', 'e', 0x00, 0x00)
	for _, tc := range []struct {
		name string
		mods []ModuleConfig
		want string
	}{
		{"no modules", nil, "no modules"},
		{"no path", []ModuleConfig{{Name: "x"}}, "has no path"},
		{"missing file", []ModuleConfig{{Path: filepath.Join(dir, "none.wasm")}}, "no such file"},
		{"not wasm", []ModuleConfig{{Path: write("text.wasm", []byte("hello"))}}, "compile"},
		{"no memory", []ModuleConfig{{Path: write("empty.wasm", header)}}, `no memory named "memory"`},
		{"unknown import", []ModuleConfig{{Path: write("imp.wasm", badImport)}}, "imports sluice.nope, which this sluice does not have"},
		{"command", []ModuleConfig{{Path: commandGuest(t)}}, "build it as a reactor"},
		{"duplicate names", []ModuleConfig{{Path: guest(t, testGuest)}, {Path: guest(t, testGuest)}}, "two modules are named"},
		{"memory too small", []ModuleConfig{{Path: guest(t, testGuest), MemoryLimitMiB: 1}}, "over limit"},
		{"bad allow_fs", []ModuleConfig{{Path: guest(t, testGuest), AllowFS: []string{":x"}}}, "allow_fs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := provision(tc.mods...)
			if err == nil {
				w.Cleanup()
				t.Fatalf("no error; want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

// commandGuest is the test guest built as a WASI command instead of a reactor.
func commandGuest(t *testing.T) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds["command"]; ok {
		return p
	}
	out := filepath.Join(buildDir, "command.wasm")
	cmd := exec.Command("go", "build", "-o", out, testGuest)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	builds["command"] = out
	warm(t, out)
	return out
}

// TestConfigBlock: the block as it is written in sluice.toml decodes strictly.
func TestConfigBlock(t *testing.T) {
	const good = `
[plugins.wasm]
[[plugins.wasm.modules]]
name = "guard"
path = "/x/guard.wasm"
timeout = 50
memory_limit_mib = 16
instances = 2
allow_fs = ["/srv/lists", "/srv/b:/b"]
[plugins.wasm.modules.config]
rename = { old_table = "new_table" }
`
	w, err := decodeBlock(good)
	if err != nil {
		t.Fatal(err)
	}
	mc := w.Modules[0]
	o, err := mc.options(0)
	if err != nil {
		t.Fatal(err)
	}
	if o.name != "guard" || o.timeout != 50*time.Millisecond || o.memPages != 256 || o.instances != 2 ||
		string(o.config) != `{"rename":{"old_table":"new_table"}}` || len(o.fsMounts) != 2 || o.fsMounts[1] != [2]string{"/srv/b", "/b"} {
		t.Errorf("decoded %+v", o)
	}
	if _, err := decodeBlock(strings.Replace(good, "instances = 2\n", "instances = 2\nallow_net = true\n", 1)); err == nil || !strings.Contains(err.Error(), "allow_net") {
		t.Errorf("unknown key: %v; want an error naming it", err)
	}
}

func decodeBlock(src string) (*Wasm, error) {
	var raw map[string]any
	if _, err := toml.Decode(src, &raw); err != nil {
		return nil, err
	}
	b := config.PluginBlock{Name: "wasm", Raw: raw["plugins"].(map[string]any)["wasm"].(map[string]any)}
	w := new(Wasm)
	return w, b.Decode(w)
}

// BenchmarkOnQuery is one on_query call: of a guest that continues at once (the cost of a call
// to a Go guest), and of examples/wasm-plugin on a query it lets through and on one it rewrites.
func BenchmarkOnQuery(b *testing.B) {
	noop := load(b, ModuleConfig{Path: guest(b, testGuest, "-ldflags=-X main.version=noop"), Instances: 1})
	ex := load(b, ModuleConfig{Path: guest(b, example), Instances: 1, Config: GuestConfig{
		"rename": map[string]any{"old_table": "new_table"}}})
	for _, bc := range []struct {
		name string
		w    *Wasm
		text string
	}{
		{"noop", noop, "SELECT id, name FROM users WHERE id = $1"},
		{"example/continue", ex, "SELECT id, name FROM users WHERE id = $1"},
		{"example/rewrite", ex, "SELECT id, name FROM old_table WHERE id = $1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := query(bc.text)
			ctx := context.Background()
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := bc.w.OnQuery(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
			// On a busy machine the wall time per call says more about the neighbours than
			// about the call: report the process's CPU time per call too.
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkQueryChainWasm is the hook chain of internal/hooks with one wasm plugin (the no-op
// guest), set up from a configuration block as sluice does: the per-query cost of a Wasm plugin,
// beside internal/hooks' BenchmarkQueryChain (no plugins, three Go plugins).
func BenchmarkQueryChainWasm(b *testing.B) {
	set, err := hooks.Load(&config.Config{Plugins: []config.PluginBlock{{Name: "wasm", Raw: map[string]any{
		"modules": []map[string]any{{"path": guest(b, testGuest, "-ldflags=-X main.version=noop"), "instances": 1}},
	}}}}, nil, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer set.Cleanup(nil)
	ch := set.Chain("app")
	ctx := context.Background()
	q := &plugin.Query{Text: "SELECT abalance FROM pgbench_accounts WHERE aid = $1"}
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if ch.HasQuery() {
			if act := ch.Query(ctx, q); act.Kind != plugin.Continue {
				b.Fatal(act)
			}
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
