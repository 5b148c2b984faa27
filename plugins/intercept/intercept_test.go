package intercept

import (
	"context"
	"slices"
	"testing"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

// pgcatBlock is the intercept block of pgcat's example pgcat.toml.
const pgcatBlock = `enabled = true

[queries.0]
query = "select current_database() as a, current_schemas(false) as b"
schema = [
  ["a", "text"],
  ["b", "text"],
]
result = [
  ["${DATABASE}", "{public}"],
]

[queries.1]
query = "select current_database(), current_schema(), current_user"
schema = [
  ["current_database", "text"],
  ["current_schema", "text"],
  ["current_user", "text"],
]
result = [
  ["${DATABASE}", "public", "${USER}"],
]
`

func TestIntercept(t *testing.T) {
	for _, tc := range []struct {
		name, config, query string
		proto               plugin.Protocol
		cols                []string
		rows                [][]string // "<NULL>" for NULL
	}{
		{"pgcat's DataGrip query", pgcatBlock, "select current_database() as a, current_schemas(false) as b", plugin.Simple,
			[]string{"a", "b"}, [][]string{{"appdb", "{public}"}}},
		{"spacing, case, comment and semicolon", pgcatBlock, "SELECT current_database() AS a,\n\tcurrent_schemas(FALSE) AS b; /* DataGrip */", plugin.Simple,
			[]string{"a", "b"}, [][]string{{"appdb", "{public}"}}},
		{"user substitution", pgcatBlock, "select current_database(), current_schema(), current_user", plugin.Simple,
			[]string{"current_database", "current_schema", "current_user"}, [][]string{{"appdb", "public", "app"}}},
		{"other query", pgcatBlock, "select current_database()", plugin.Simple, nil, nil},
		{"two statements", pgcatBlock, "select current_database() as a, current_schemas(false) as b; select 1", plugin.Simple, nil, nil},
		{"extended protocol goes to the server, as in pgcat", pgcatBlock, "select current_database() as a, current_schemas(false) as b", plugin.Parse, nil, nil},
		{"disabled", "enabled = false\n" + pgcatBlock[len("enabled = true\n"):], "select current_database() as a, current_schemas(false) as b", plugin.Simple, nil, nil},
		{"empty value is NULL", "enabled = true\n[queries.x]\nquery = \"select version()\"\nschema = [[\"version\", \"text\"]]\nresult = [[\"\"], [\"sluice\"]]",
			"SELECT version()", plugin.Simple, []string{"version"}, [][]string{{"<NULL>"}, {"sluice"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(Intercept)
			if err := plugintest.Setup(p, tc.config, nil); err != nil {
				t.Fatal(err)
			}
			q := plugintest.Query(tc.query)
			q.Protocol = tc.proto
			act, err := p.OnQuery(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			if tc.cols == nil {
				if act.Kind != plugin.Continue {
					t.Errorf("got %s; want continue", plugintest.Describe(act))
				}
				return
			}
			if act.Kind != plugin.Answer || !slices.Equal(act.Columns, tc.cols) {
				t.Fatalf("got %s %q; want an answer with columns %q", plugintest.Describe(act), act.Columns, tc.cols)
			}
			var rows [][]string
			for _, r := range act.Rows {
				var row []string
				for _, v := range r {
					if v == nil {
						row = append(row, "<NULL>")
					} else {
						row = append(row, *v)
					}
				}
				rows = append(rows, row)
			}
			if !slices.EqualFunc(rows, tc.rows, slices.Equal) {
				t.Errorf("rows %q; want %q", rows, tc.rows)
			}
			if want := "SELECT " + string(rune('0'+len(tc.rows))); act.Tag != want {
				t.Errorf("tag %q; want %q", act.Tag, want)
			}
		})
	}
}

func TestInterceptConfigErrors(t *testing.T) {
	for _, src := range []string{
		"enabled = true\n[queries.0]\nquery = \"selec 1\"",
		"enabled = true\n[queries.0]\nquery = \"select 1\"\nschema = [[\"a\", \"text\"]]\nresult = [[\"1\", \"2\"]]",
		"enabled = true\n[queries.0]\nquery = \"select 1\"\nsceme = []",
	} {
		if err := plugintest.Setup(new(Intercept), src, nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}

func TestInterceptSkipsTextsWithoutTheRulesWords(t *testing.T) {
	p := new(Intercept)
	if err := plugintest.Setup(p, pgcatBlock+"\n[queries.2]\nquery = \"select trim(both ' ' from name) from pg_namespace\"\nschema = [[\"t\", \"text\"]]\nresult = [[\"x\"]]\n", nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text  string
		maybe bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1", false},
		{"select CURRENT_DATABASE() as a, current_schemas(false) as b", true},
		{"SELECT TRIM(BOTH ' ' FROM name) FROM PG_NAMESPACE", true},
	} {
		if got := p.maybe(tc.text); got != tc.maybe {
			t.Errorf("maybe(%q) = %v", tc.text, got)
		}
	}
	act, _ := p.OnQuery(context.Background(), plugintest.Query("SELECT TRIM(BOTH ' ' FROM name) FROM PG_NAMESPACE;"))
	if act.Kind != plugin.Answer {
		t.Errorf("trim query: %s", plugintest.Describe(act))
	}
}
