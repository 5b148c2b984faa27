package rewrite

import (
	"context"
	"testing"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

func TestRewrite(t *testing.T) {
	for _, tc := range []struct {
		name, config, query string
		proto               plugin.Protocol
		want                string
	}{
		{"literal", "[[rules]]\nfrom = \"old_name\"\nto = \"new_name\"", "SELECT old_name FROM t", plugin.Simple, "rewrite: SELECT new_name FROM t"},
		{"no match", "[[rules]]\nfrom = \"old_name\"\nto = \"new_name\"", "SELECT 1", plugin.Simple, "continue"},
		{"regex with groups", "[[rules]]\nfrom = '(?i)limit\\s+(\\d+)'\nto = 'LIMIT least($1, 100)'\nmatch = \"regex\"",
			"select * from t limit 5000", plugin.Simple, "rewrite: select * from t LIMIT least(5000, 100)"},
		{"rules in order", "[[rules]]\nfrom = \"a\"\nto = \"b\"\n[[rules]]\nfrom = \"b\"\nto = \"c\"", "SELECT 'a'", plugin.Simple, "rewrite: SELECT 'c'"},
		{"table in the parse tree", "[[rules]]\nfrom = \"legacy_orders\"\nto = \"sales.orders\"\nmatch = \"table\"",
			"SELECT 'legacy_orders', o.legacy_orders FROM legacy_orders o WHERE id = $1", plugin.Parse,
			"rewrite: SELECT 'legacy_orders', o.legacy_orders FROM sales.orders o WHERE id = $1"},
		{"table rule, other table", "[[rules]]\nfrom = \"legacy_orders\"\nto = \"orders\"\nmatch = \"table\"",
			"SELECT legacy_orders FROM t", plugin.Simple, "continue"},
		{"bind is not rewritten", "[[rules]]\nfrom = \"old_name\"\nto = \"new_name\"", "SELECT old_name", plugin.Bind, "continue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(Rewrite)
			if err := plugintest.Setup(p, tc.config, nil); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second time from the cache
				q := plugintest.Query(tc.query)
				q.Protocol = tc.proto
				act, err := p.OnQuery(context.Background(), q)
				if got := plugintest.Describe(act); err != nil || got != tc.want {
					t.Errorf("got %q, %v; want %q", got, err, tc.want)
				}
			}
		})
	}
}

func TestRewriteConfigErrors(t *testing.T) {
	for _, src := range []string{
		"[[rules]]\nto = \"x\"",
		"[[rules]]\nfrom = \"(\"\nto = \"x\"\nmatch = \"regex\"",
		"[[rules]]\nfrom = \"a\"\nto = \"x\"\nmatch = \"glob\"",
		"[[rules]]\nfrom = \"a\"\nmatch = \"table\"",
		"[[rules]]\nfrom = \"a\"\nto = \"b\"\nflags = \"i\"",
	} {
		if err := plugintest.Setup(new(Rewrite), src, nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}
