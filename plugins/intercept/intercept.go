// Package intercept is pgcat's intercept plugin: it answers chosen queries itself, with rows
// from the configuration, without a server. Tools such as DataGrip and IntelliJ send catalog
// queries when they connect; a pooler in transaction mode can answer those locally.
//
//	[plugins.intercept]
//	enabled = true
//
//	[plugins.intercept.queries.0]
//	query = "select current_database() as a, current_schemas(false) as b"
//	schema = [["a", "text"], ["b", "text"]]
//	result = [["${DATABASE}", "{public}"]]
//
// A query matches when it is the same statement once both are normalized: pgcat prints the
// parsed statement back and lower-cases it; sluice does the same with the Postgres parser, to
// the configured query too, so whitespace, comments, keyword case and a trailing semicolon do
// not matter. schema names the columns; their types are accepted for compatibility, and every
// value is sent as text (as pgcat does for its "text" type). In result, ${USER} and
// ${DATABASE} stand for the client's user and database (the pool's name), and an empty string
// is NULL, as in pgcat.
//
// As in pgcat, only simple-protocol queries are answered; a query of the extended protocol
// goes to the server. A text of several statements is not answered.
package intercept

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/sqlfacts"
)

func init() {
	plugin.Register(plugin.Info{Name: "intercept", New: func() plugin.Plugin { return new(Intercept) }})
}

// Intercept is the plugin and its configuration.
type Intercept struct {
	Enabled bool             `toml:"enabled"`
	Queries map[string]Query `toml:"queries"`
	// MaxLength is the longest text compared (default 16 KiB): the plugin parses texts to
	// compare them, and longer ones are never intercepted.
	MaxLength int `toml:"max_length"`

	rules     []rule
	maxLength int
	match     *sqlfacts.Memo[int] // text -> index in rules, or -1
}

// Query is one intercepted query: [plugins.intercept.queries.<n>].
type Query struct {
	Query  string     `toml:"query"`
	Schema [][]string `toml:"schema"`
	Result [][]string `toml:"result"`
}

type rule struct {
	key string // the normalized query
	// words are names any text that normalizes to key contains (case aside): its tables and
	// unqualified functions. A text lacking one is not parsed.
	words   []string
	columns []string
	rows    [][]string
	subst   bool // some value has ${USER} or ${DATABASE}
}

// Provision implements plugin.Provisioner: it normalizes the configured queries, in the order
// of their keys (pgcat's order).
func (p *Intercept) Provision(plugin.Context) error {
	p.maxLength = sqlfacts.MaxLength(p.MaxLength)
	p.match = sqlfacts.NewMemo[int](0)
	keys := make([]string, 0, len(p.Queries))
	for k := range p.Queries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q := p.Queries[k]
		key, ok := sqlfacts.Normalize(q.Query, p.maxLength)
		if !ok {
			return fmt.Errorf("queries.%s: query %q does not parse as one SQL statement", k, q.Query)
		}
		r := rule{key: key}
		f := sqlfacts.Parse(q.Query, p.maxLength)
		for _, t := range f.Tables {
			r.words = append(r.words, t[strings.LastIndexByte(t, '.')+1:])
		}
		for _, fn := range f.Functions {
			// A qualified name may come from SQL syntax (TRIM is pg_catalog.btrim) that
			// the text does not spell out.
			if !strings.Contains(fn, ".") {
				r.words = append(r.words, fn)
			}
		}
		for i, col := range q.Schema {
			if len(col) == 0 || col[0] == "" {
				return fmt.Errorf("queries.%s: schema[%d] needs a column name: [\"name\", \"type\"]", k, i)
			}
			r.columns = append(r.columns, col[0])
		}
		for i, row := range q.Result {
			if len(row) != len(r.columns) {
				return fmt.Errorf("queries.%s: result[%d] has %d values for %d columns", k, i, len(row), len(r.columns))
			}
			for _, v := range row {
				if strings.Contains(v, "${USER}") || strings.Contains(v, "${DATABASE}") {
					r.subst = true
				}
			}
			r.rows = append(r.rows, row)
		}
		p.rules = append(p.rules, r)
	}
	return nil
}

// OnQuery implements plugin.QueryHook.
func (p *Intercept) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if !p.Enabled || len(p.rules) == 0 || q.Protocol != plugin.Simple {
		return plugin.ContinueQuery(), nil
	}
	if !p.maybe(q.Text) {
		return plugin.ContinueQuery(), nil
	}
	i := p.match.Get(q.Text, p.find)
	if i < 0 {
		return plugin.ContinueQuery(), nil
	}
	r := &p.rules[i]
	rows := make([][]*string, len(r.rows))
	for j, row := range r.rows {
		rows[j] = make([]*string, len(row))
		for k, v := range row {
			if v == "" {
				continue // NULL, as in pgcat
			}
			if r.subst {
				v = strings.ReplaceAll(v, "${USER}", q.Client.User)
				v = strings.ReplaceAll(v, "${DATABASE}", q.Client.Database)
			}
			rows[j][k] = &v
		}
	}
	return plugin.AnswerQuery(r.columns, rows, "SELECT "+strconv.Itoa(len(rows))), nil
}

// maybe reports whether text could match some rule: it holds every word of the rule. It spares
// the parse of most texts that match no rule.
func (p *Intercept) maybe(text string) bool {
	for i := range p.rules {
		ok := true
		for _, w := range p.rules[i].words {
			if !containsFold(text, w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII word w, ignoring case.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

// find returns the index of the rule text matches, or -1. A text of several statements
// normalizes to all of them and so matches no rule.
func (p *Intercept) find(text string) int {
	norm, ok := sqlfacts.Normalize(text, p.maxLength)
	if !ok {
		return -1
	}
	for i := range p.rules {
		if p.rules[i].key == norm {
			return i
		}
	}
	return -1
}

var (
	_ plugin.Provisioner = (*Intercept)(nil)
	_ plugin.QueryHook   = (*Intercept)(nil)
)
