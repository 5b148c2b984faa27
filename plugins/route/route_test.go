package route

import (
	"context"
	"testing"

	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

func TestRoute(t *testing.T) {
	const config = `[[rules]]
application_name = "metabase*"
role = "replica"

[[rules]]
user = "batch"
tables = ["billing.*", "payments"]
role = "primary"

[[rules]]
tables = ["reports"]
role = "replica"
`
	for _, tc := range []struct {
		name, user, app, query string
		inTx                   bool
		config                 string
		want                   string
	}{
		{"application_name", "app", "metabase-1.2", "SELECT 1", false, config, "route replica"},
		{"user and table", "batch", "x", "SELECT * FROM billing.invoices", false, config, "route primary"},
		{"user and unqualified table", "batch", "x", "SELECT * FROM public.payments", false, config, "route primary"},
		{"user without the table", "batch", "x", "SELECT * FROM users", false, config, "continue"},
		{"table alone", "app", "x", "SELECT count(*) FROM reports", false, config, "route replica"},
		{"no rule", "app", "psql", "SELECT 1", false, config, "continue"},
		{"hint wins", "app", "metabase", "/* route: primary */ SELECT 1", false, config, "route primary"},
		{"line comment hint", "app", "psql", "SELECT 1 -- route: Replica", false, config, "route replica"},
		{"hint in a string is not a comment but still read", "app", "psql", "SELECT 'route: any'", false, config, "continue"},
		{"hints off", "app", "psql", "/* route: replica */ SELECT 1", false, "hints = false", "continue"},
		{"inside a transaction nothing changes", "app", "metabase", "/* route: replica */ SELECT 1", true, config, "continue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(Route)
			if err := plugintest.Setup(p, tc.config, nil); err != nil {
				t.Fatal(err)
			}
			q := plugintest.Query(tc.query)
			q.Client.User, q.Client.ApplicationName, q.InTransaction = tc.user, tc.app, tc.inTx
			act, err := p.OnQuery(context.Background(), q)
			if got := plugintest.Describe(act); err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRouteConfigErrors(t *testing.T) {
	for _, src := range []string{"[[rules]]\nrole = \"standby\"", "[[rules]]\nuser = \"[\"\nrole = \"primary\"", "hint = true"} {
		if err := plugintest.Setup(new(Route), src, nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}
