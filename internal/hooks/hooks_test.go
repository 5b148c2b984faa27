package hooks

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/plugin"
)

// scripted is a test plugin whose query hook does what its configuration says.
type scripted struct {
	Do   string `toml:"do"`   // "continue", "reject", "answer", "rewrite", "route", "panic", "error", "fail"
	Arg  string `toml:"arg"`  // the rewrite's text, the route's role
	Note string `toml:"note"` // appended to seen, to show the order
}

var seen []string

func (s *scripted) OnQuery(_ context.Context, q *plugin.Query) (plugin.Action, error) {
	seen = append(seen, s.Note+":"+q.Text)
	switch s.Do {
	case "reject":
		return plugin.RejectQuery("", "refused by "+s.Note), nil
	case "answer":
		return plugin.AnswerQuery([]string{"a"}, nil, "SELECT 0"), nil
	case "rewrite":
		return plugin.RewriteQuery(s.Arg), nil
	case "route":
		return plugin.RouteQuery(s.Arg), nil
	case "panic":
		panic("scripted panic")
	case "error":
		return plugin.Action{}, plugin.Errorf("22023", "scripted error")
	case "fail":
		return plugin.Action{}, errors.New("scripted failure")
	}
	return plugin.ContinueQuery(), nil
}

func (s *scripted) OnAuth(_ context.Context, c *plugin.Client) error {
	if s.Do == "fail" {
		return errors.New("no entry")
	}
	return nil
}

// noop is the cheapest query hook, for the benchmarks.
type noop struct{}

func (*noop) OnQuery(context.Context, *plugin.Query) (plugin.Action, error) {
	return plugin.ContinueQuery(), nil
}

func init() {
	plugin.Register(plugin.Info{Name: "hooks_test_scripted", New: func() plugin.Plugin { return new(scripted) }})
	for _, n := range []string{"hooks_test_noop1", "hooks_test_noop2", "hooks_test_noop3"} {
		plugin.Register(plugin.Info{Name: n, New: func() plugin.Plugin { return new(noop) }})
	}
}

func block(name string, raw map[string]any) config.PluginBlock {
	return config.PluginBlock{Name: name, File: "test.toml", Raw: raw}
}

func steps(s ...string) []config.PluginBlock {
	var out []config.PluginBlock
	for i, st := range s {
		do, arg, _ := strings.Cut(st, "=")
		out = append(out, config.PluginBlock{Name: "hooks_test_scripted", Line: i + 1,
			Raw: map[string]any{"do": do, "arg": arg, "note": string(rune('a' + i))}})
	}
	return out
}

// TestQueryChain: plugins run in configuration order; a rewrite is what the next one sees; the
// first reject or answer ends the chain; panics and errors become rejections naming the plugin.
func TestQueryChain(t *testing.T) {
	cases := []struct {
		name  string
		steps []string
		kind  plugin.ActionKind
		code  string
		text  string // the rewrite returned, or the message of a reject
		role  string
		seen  string
	}{
		{"all continue", []string{"continue", "continue"}, plugin.Continue, "", "", "", "a:q b:q"},
		{"rewrite seen by the next", []string{"rewrite=q2", "continue"}, plugin.Continue, "", "q2", "", "a:q b:q2"},
		{"rewrite back to the original", []string{"rewrite=q2", "rewrite=q"}, plugin.Continue, "", "q", "", "a:q b:q2"},
		{"reject ends the chain", []string{"continue", "reject", "continue"}, plugin.Reject, "42501", "refused by b", "", "a:q b:q"},
		{"answer ends the chain", []string{"answer", "reject"}, plugin.Answer, "", "", "", "a:q"},
		{"last role wins", []string{"route=replica", "route=primary", "continue"}, plugin.Continue, "", "", "primary", "a:q b:q c:q"},
		{"panic", []string{"panic", "continue"}, plugin.Reject, "XX000", `plugin "hooks_test_scripted" failed: scripted panic`, "", "a:q"},
		{"plugin error keeps its SQLSTATE", []string{"error"}, plugin.Reject, "22023", "scripted error", "", "a:q"},
		{"other error", []string{"fail"}, plugin.Reject, "XX000", `plugin "hooks_test_scripted": scripted failure`, "", "a:q"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Load(&config.Config{Plugins: steps(tc.steps...)}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			seen = nil
			act := set.Chain("any").Query(context.Background(), &plugin.Query{Text: "q"})
			if act.Kind != tc.kind || act.Code != tc.code || act.Role != tc.role {
				t.Errorf("action %+v; want kind %d code %q role %q", act, tc.kind, tc.code, tc.role)
			}
			text := act.Rewrite
			if act.Kind == plugin.Reject {
				text = act.Message
			}
			if text != tc.text {
				t.Errorf("text %q, want %q", text, tc.text)
			}
			if got := strings.Join(seen, " "); got != tc.seen {
				t.Errorf("hooks saw %q, want %q", got, tc.seen)
			}
		})
	}
}

// TestCounters: calls, rejects and errors are counted per instance.
func TestCounters(t *testing.T) {
	set, err := Load(&config.Config{Plugins: steps("reject", "panic")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := set.Chain("")
	ch.Query(context.Background(), &plugin.Query{Text: "q"})
	ch.Query(context.Background(), &plugin.Query{Text: "q"})
	a, b := set.Instances()[0].Stats(), set.Instances()[1].Stats()
	if a.Calls != 2 || a.Rejects != 2 || a.Errors != 0 || a.Kind != "go" || strings.Join(a.Hooks, ",") != "auth,query" {
		t.Errorf("first: %+v", a)
	}
	if b.Calls != 0 {
		t.Errorf("second ran after a reject: %+v", b)
	}
	if pe := ch.Auth(context.Background(), &plugin.Client{}); pe != nil {
		t.Errorf("auth: %v", pe)
	}
}

// TestLoadErrors: an unknown plugin names the nearest known one; unknown keys are errors.
func TestLoadErrors(t *testing.T) {
	_, err := Load(&config.Config{Plugins: []config.PluginBlock{block("hooks_test_scriptd", nil)}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `did you mean "hooks_test_scripted"`) {
		t.Errorf("unknown plugin: %v", err)
	}
	_, err = Load(&config.Config{Plugins: []config.PluginBlock{block("hooks_test_scripted", map[string]any{"dо": "x"})}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Errorf("unknown key: %v", err)
	}
}

// BenchmarkQueryChain is the hook chain's cost per query: no plugins (a nil chain, what a pool
// without plugins has), and three compiled-in plugins whose OnQuery only continues.
func BenchmarkQueryChain(b *testing.B) {
	three, err := Load(&config.Config{Plugins: []config.PluginBlock{
		block("hooks_test_noop1", nil), block("hooks_test_noop2", nil), block("hooks_test_noop3", nil)}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		ch   *Chain
	}{{"none", (*Set)(nil).Chain("app")}, {"go3", three.Chain("app")}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			q := &plugin.Query{Text: "SELECT abalance FROM pgbench_accounts WHERE aid = $1"}
			b.ReportAllocs()
			for b.Loop() {
				if bc.ch.HasQuery() {
					if act := bc.ch.Query(ctx, q); act.Kind != plugin.Continue {
						b.Fatal(act)
					}
				}
			}
		})
	}
}
