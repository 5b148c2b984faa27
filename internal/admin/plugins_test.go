package admin

import (
	"context"
	"os"
	"path/filepath"
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
