package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/hooks"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/plugin"
)

// counterPlugin refuses queries that say "no".
type counterPlugin struct{}

func (counterPlugin) OnQuery(_ context.Context, q *plugin.Query) (plugin.Action, error) {
	if q.Text == "no" {
		return plugin.RejectQuery("42501", "no"), nil
	}
	return plugin.ContinueQuery(), nil
}

func (counterPlugin) OnDisconnect(context.Context, *plugin.Client) {}

// wasmLike stands for a plugin run by the Wasm host: it says its kind.
type wasmLike struct{}

func (wasmLike) PluginKind() string                                    { return "wasm" }
func (wasmLike) OnStartup(context.Context, *plugin.Startup) error      { return nil }
func (wasmLike) OnServerConnect(context.Context, *plugin.Server) error { return nil }

func init() {
	plugin.Register(plugin.Info{Name: "admin_test_counter", New: func() plugin.Plugin { return new(counterPlugin) }})
	plugin.Register(plugin.Info{Name: "admin_test_wasm", New: func() plugin.Plugin { return new(wasmLike) }})
}

// TestShowPlugins: SHOW PLUGINS lists the routing table's plugins, top-level first, with their
// kind, hooks and counters.
func TestShowPlugins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.toml")
	conf := testConfig + "\n[plugins.admin_test_counter]\n\n[pools.app.plugins.admin_test_wasm]\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ := route.Build(cfg, nil)
	t.Cleanup(func() { tbl.Targets(func(_, _ string, tg *route.Target) { tg.Close() }) })
	set, err := hooks.Load(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tbl.SetPlugins(set)
	c := &Console{Table: func() *route.Table { return tbl }, Clients: func() []Client { return nil }}

	ch := set.Chain("elsewhere") // a pool without a plugins block: the top-level plugins
	for _, text := range []string{"SELECT 1", "no", "SELECT 2"} {
		ch.Query(context.Background(), &plugin.Query{Text: text})
	}
	r := execOne(t, c, "SHOW PLUGINS")
	if r.code != "" {
		t.Fatalf("error %s: %s", r.code, r.msg)
	}
	if got, want := strings.Join(r.cols, ","), "name,pool,kind,hooks,calls,rejects,errors,total_time"; got != want {
		t.Errorf("columns %s, want %s", got, want)
	}
	want := [][]string{
		{"admin_test_counter", "", "go", "query,disconnect", "3", "1", "0"},
		{"admin_test_wasm", "app", "wasm", "startup,server_connect", "0", "0", "0"},
	}
	if len(r.rows) != len(want) {
		t.Fatalf("rows %q, want %q", r.rows, want)
	}
	for i, w := range want {
		if got := r.rows[i][:len(w)]; strings.Join(got, "|") != strings.Join(w, "|") {
			t.Errorf("row %d: %q, want %q", i, r.rows[i], w)
		}
	}
	if r.tag != "SHOW" {
		t.Errorf("tag %q", r.tag)
	}
	// No plugins: no rows.
	empty, _ := route.Build(cfg, nil)
	t.Cleanup(func() { empty.Targets(func(_, _ string, tg *route.Target) { tg.Close() }) })
	c.Table = func() *route.Table { return empty }
	if r := execOne(t, c, "show plugins"); r.code != "" || len(r.rows) != 0 {
		t.Errorf("without plugins: %+v", r)
	}
}

// levelPlugin shows its level in the console and exports it as a metric; Fail makes Show fail.
type levelPlugin struct {
	Level int  `toml:"level"`
	Fail  bool `toml:"fail"`
}

func (p *levelPlugin) Show(context.Context) (*plugin.Rows, error) {
	if p.Fail {
		return nil, errors.New("backend unreachable")
	}
	v := strconv.Itoa(p.Level)
	return &plugin.Rows{Columns: []string{"name", "value"}, Rows: [][]*string{{ptr("level"), &v}, {ptr("note"), nil}}}, nil
}

func (p *levelPlugin) Collect(context.Context) []plugin.Metric {
	return []plugin.Metric{{Name: "sluice_level", Help: "The level", Value: float64(p.Level)}}
}

func ptr(s string) *string { return &s }

func init() {
	plugin.Register(plugin.Info{Name: "admin_test_level", New: func() plugin.Plugin { return new(levelPlugin) }})
}

// consoleWith returns a console over a routing table whose plugins are extra's blocks.
func consoleWith(t *testing.T, extra string) *Console {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.toml")
	if err := os.WriteFile(path, []byte(testConfig+"\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ := route.Build(cfg, nil)
	t.Cleanup(func() { tbl.Targets(func(_, _ string, tg *route.Target) { tg.Close() }) })
	set, err := hooks.Load(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tbl.SetPlugins(set)
	return &Console{Table: func() *route.Table { return tbl }, Clients: func() []Client { return nil }}
}

// TestShowPluginObject: a plugin that implements plugin.Shower answers SHOW <its name>, in any
// case, with a pool column before its own and every instance's rows, top-level first; SHOW
// HELP lists it; its failure is the command's error, not the session's; PluginMetrics has
// every instance's metrics.
func TestShowPluginObject(t *testing.T) {
	c := consoleWith(t, "[plugins.admin_test_level]\nlevel = 1\n\n[pools.app.plugins.admin_test_level]\nlevel = 2\n")
	r := execOne(t, c, "show Admin_Test_Level")
	if r.code != "" {
		t.Fatalf("error %s: %s", r.code, r.msg)
	}
	if got := strings.Join(r.cols, ","); got != "pool,name,value" {
		t.Errorf("columns %s, want pool,name,value", got)
	}
	want := [][]string{{"", "level", "1"}, {"", "note", ""}, {"app", "level", "2"}, {"app", "note", ""}}
	if fmt.Sprint(r.rows) != fmt.Sprint(want) || r.tag != "SHOW" {
		t.Errorf("rows %q tag %q, want %q SHOW", r.rows, r.tag, want)
	}
	if h := execOne(t, c, "SHOW HELP"); !strings.Contains(h.notice, "SHOW ADMIN_TEST_LEVEL (plugin admin_test_level)") {
		t.Errorf("SHOW HELP does not list the plugin's object:\n%s", h.notice)
	}
	var got []string
	for _, pm := range c.PluginMetrics(context.Background()) {
		for _, m := range pm.Metrics {
			got = append(got, fmt.Sprintf("%s/%s/%s=%v", pm.Name, pm.Pool, m.Name, m.Value))
		}
	}
	if w := "admin_test_level//sluice_level=1 admin_test_level/app/sluice_level=2"; strings.Join(got, " ") != w {
		t.Errorf("PluginMetrics %q, want %s", got, w)
	}

	failing := consoleWith(t, "[plugins.admin_test_level]\nfail = true\n")
	if r := execOne(t, failing, "SHOW ADMIN_TEST_LEVEL"); r.code != "XX000" || !strings.Contains(r.msg, "backend unreachable") {
		t.Errorf("a failing Show: %+v", r)
	}
	// A plugin without Show is no SHOW object.
	if r := execOne(t, consoleWith(t, "[plugins.admin_test_counter]\n"), "SHOW ADMIN_TEST_COUNTER"); r.code != codeSyntax {
		t.Errorf("SHOW of a plugin without Show: %+v", r)
	}
}
