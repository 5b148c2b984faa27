package tableaccess

import (
	"context"
	"testing"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

func TestTableAccess(t *testing.T) {
	const pgcatBlock = `enabled = true
tables = ["pg_user", "pg_roles", "pg_database"]
`
	for _, tc := range []struct {
		name, config, query string
		proto               plugin.Protocol
		want                string
	}{
		{"listed table", pgcatBlock, "SELECT * FROM pg_database", plugin.Simple, `reject 42501: permission for table "pg_database" denied`},
		{"schema-qualified", pgcatBlock, "select usename from pg_catalog.pg_user", plugin.Simple, `reject 42501: permission for table "pg_user" denied`},
		{"in a subquery", pgcatBlock, "SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_roles)", plugin.Simple, `reject 42501: permission for table "pg_roles" denied`},
		{"extended protocol at Parse", pgcatBlock, "SELECT * FROM pg_user WHERE usename = $1", plugin.Parse, `reject 42501: permission for table "pg_user" denied`},
		{"other table", pgcatBlock, "SELECT * FROM users", plugin.Simple, "continue"},
		{"the name in a string", pgcatBlock, "SELECT 'pg_user'", plugin.Simple, "continue"},
		{"disabled", "enabled = false\ntables = [\"pg_user\"]", "SELECT * FROM pg_user", plugin.Simple, "continue"},
		{"pgcat's code", pgcatBlock + "code = \"58000\"", "SELECT * FROM pg_user", plugin.Simple, `reject 58000: permission for table "pg_user" denied`},
		{"unparsed passes", pgcatBlock, "SELEC * FROM pg_user", plugin.Simple, "continue"},
		{"unparsed refused", pgcatBlock + "reject_unparsed = true", "SELEC * FROM pg_user", plugin.Simple,
			`reject 42501: table_access: the query could not be checked: syntax error at or near "SELEC"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(TableAccess)
			if err := plugintest.Setup(p, tc.config, nil); err != nil {
				t.Fatal(err)
			}
			q := plugintest.Query(tc.query)
			q.Protocol = tc.proto
			act, err := p.OnQuery(context.Background(), q)
			if got := plugintest.Describe(act); err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestTableAccessConfigErrors(t *testing.T) {
	for _, src := range []string{`tables = [""]`, `code = "123"`, `enabled = true` + "\ntabels = [\"x\"]"} {
		if err := plugintest.Setup(new(TableAccess), src, nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}
