package plugin_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
	"github.com/sluicepg/sluice/plugin"
)

// Guard refuses statements of some kinds and rewrites a table name. Its exported fields are its
// configuration block, [plugins.guard].
type Guard struct {
	Deny   []string `toml:"deny"`   // statement kinds: "ExecuteStmt", "CopyStmt", ...
	Rename string   `toml:"rename"` // "old=new": a table name to rewrite in query texts

	from, to string
}

// Interface guards: the compiler checks the hooks Guard means to have.
var (
	_ plugin.Provisioner = (*Guard)(nil)
	_ plugin.Validator   = (*Guard)(nil)
	_ plugin.QueryHook   = (*Guard)(nil)
)

func init() {
	plugin.Register(plugin.Info{Name: "guard", New: func() plugin.Plugin { return new(Guard) }})
}

// Provision runs after the block was decoded.
func (g *Guard) Provision(ctx plugin.Context) error {
	g.from, g.to, _ = strings.Cut(g.Rename, "=")
	return nil
}

// Validate runs after Provision; an error stops sluice from starting (or a reload from
// taking effect) and names the block.
func (g *Guard) Validate() error {
	if g.Rename != "" && (g.from == "" || g.to == "") {
		return fmt.Errorf("rename = %q: want old=new", g.Rename)
	}
	return nil
}

// OnQuery runs for every simple Query, Parse and Bind.
func (g *Guard) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if slices.Contains(g.Deny, q.Kind) {
		return plugin.RejectQuery("42501", "guard: "+q.Kind+" is not allowed here"), nil
	}
	if g.from != "" && strings.Contains(q.Text, g.from) {
		return plugin.RewriteQuery(strings.ReplaceAll(q.Text, g.from, g.to)), nil
	}
	return plugin.ContinueQuery(), nil
}

// This example registers a plugin, decodes its block as sluice does (strictly: a key the
// plugin has no field for is an error), and calls its query hook the way sluice would.
func Example() {
	block := `
deny = ["ExecuteStmt"]
rename = "orders_old=orders"
`
	info, _ := plugin.Lookup("guard")
	p := info.New().(*Guard)
	md, err := toml.Decode(block, p)
	if err != nil || len(md.Undecoded()) > 0 {
		fmt.Println("bad block:", err, md.Undecoded())
		return
	}
	if err := p.Provision(plugin.Context{Context: context.Background(), Name: "guard"}); err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	for _, q := range []*plugin.Query{
		{Text: "SELECT * FROM orders_old", Kind: "SelectStmt"},
		{Text: "EXECUTE report(1)", Kind: "ExecuteStmt"},
		{Text: "SELECT 1", Kind: "SelectStmt"},
	} {
		act, _ := p.OnQuery(context.Background(), q)
		switch {
		case act.Kind == plugin.Reject:
			fmt.Printf("%s: rejected %s %s\n", q.Text, act.Code, act.Message)
		case act.Rewrite != "":
			fmt.Printf("%s: rewritten to %s\n", q.Text, act.Rewrite)
		default:
			fmt.Printf("%s: continues\n", q.Text)
		}
	}
	// Output:
	// SELECT * FROM orders_old: rewritten to SELECT * FROM orders
	// EXECUTE report(1): rejected 42501 guard: ExecuteStmt is not allowed here
	// SELECT 1: continues
}

// ExampleErrorf shows the error a hook returns to refuse a login or a query with a SQLSTATE of
// its choosing.
func ExampleErrorf() {
	err := plugin.Errorf("28000", "user %q may not log in from here", "mallory")
	fmt.Println(err)
	// Output: user "mallory" may not log in from here (SQLSTATE 28000)
}

// Tally counts the queries it sees by statement kind, and reports the counts to operators:
// SHOW TALLY in the admin console (its name, [plugins.tally]) and sluice_tally_queries_total
// in the Prometheus exporter.
type Tally struct {
	mu     sync.Mutex
	byKind map[string]int64
}

var (
	_ plugin.QueryHook = (*Tally)(nil)
	_ plugin.Shower    = (*Tally)(nil)
	_ plugin.Collector = (*Tally)(nil)
)

// OnQuery counts the query.
func (t *Tally) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKind == nil {
		t.byKind = map[string]int64{}
	}
	t.byKind[q.Kind]++
	return plugin.ContinueQuery(), nil
}

// counts returns the counts, by kind in order.
func (t *Tally) counts() ([]string, map[string]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := maps.Clone(t.byKind)
	return slices.Sorted(maps.Keys(m)), m
}

// Show answers SHOW TALLY: the console adds a first column, pool.
func (t *Tally) Show(ctx context.Context) (*plugin.Rows, error) {
	kinds, m := t.counts()
	rows := &plugin.Rows{Columns: []string{"kind", "queries"}}
	for _, k := range kinds {
		n := strconv.FormatInt(m[k], 10)
		rows.Rows = append(rows.Rows, []*string{&k, &n})
	}
	return rows, nil
}

// Collect exports one counter per kind; the exporter adds the label pool.
func (t *Tally) Collect(ctx context.Context) []plugin.Metric {
	kinds, m := t.counts()
	var ms []plugin.Metric
	for _, k := range kinds {
		ms = append(ms, plugin.Metric{Name: "sluice_tally_queries_total", Help: "Queries seen, by statement kind",
			Kind: plugin.Counter, Value: float64(m[k]), Labels: map[string]string{"kind": k}})
	}
	return ms
}

// This example feeds a plugin a few queries, then reads what SHOW TALLY and /metrics would
// show.
func ExampleShower() {
	t := new(Tally)
	for _, kind := range []string{"SelectStmt", "InsertStmt", "SelectStmt"} {
		_, _ = t.OnQuery(context.Background(), &plugin.Query{Kind: kind})
	}
	rows, _ := t.Show(context.Background())
	fmt.Println(rows.Columns)
	for _, r := range rows.Rows {
		fmt.Println(*r[0], *r[1])
	}
	for _, m := range t.Collect(context.Background()) {
		fmt.Printf("%s{kind=%q} %v\n", m.Name, m.Labels["kind"], m.Value)
	}
	// Output:
	// [kind queries]
	// InsertStmt 1
	// SelectStmt 2
	// sluice_tally_queries_total{kind="InsertStmt"} 1
	// sluice_tally_queries_total{kind="SelectStmt"} 2
}
