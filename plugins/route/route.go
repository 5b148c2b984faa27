// Package route chooses the role of the server a transaction runs on (primary or replica) by
// rules on the client and the query, and by hints in comments.
//
//	[plugins.route]
//	hints = true                       # honour /* route: replica */ (the default)
//
//	[[plugins.route.rules]]
//	application_name = "metabase*"     # reporting tools read from replicas
//	role = "replica"
//
//	[[plugins.route.rules]]
//	tables = ["billing.*", "payments"] # these always read from the primary
//	role = "primary"
//
// A rule matches when all its conditions do: user and application_name are patterns ('*'
// matches any characters), tables matches when the query names one of them (an unqualified
// name in any schema; "schema.*" every table of a schema). The first matching rule wins; a
// hint in the query's text ("/* route: replica */", "-- route: primary", or "any") wins over
// the rules. The choice applies to the transaction the query begins: inside a transaction
// block it changes nothing (the transaction's server is already chosen), and the pool's own
// routing (query_parser_read_write_splitting, default_role) decides when no rule matches.
package route

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/sqlfacts"
)

func init() {
	plugin.Register(plugin.Info{Name: "route", New: func() plugin.Plugin { return new(Route) }})
}

// Route is the plugin and its configuration.
type Route struct {
	// Hints turns comment hints on or off; on when unset.
	Hints *bool  `toml:"hints"`
	Rules []Rule `toml:"rules"`
	// MaxLength is the longest text parsed for tables rules (default 16 KiB, at most 64 KiB).
	MaxLength int `toml:"max_length"`

	hints bool
	facts *sqlfacts.Cache
}

// Rule is one routing rule.
type Rule struct {
	User            string   `toml:"user"`
	ApplicationName string   `toml:"application_name"`
	Tables          []string `toml:"tables"`
	Role            string   `toml:"role"`
}

var hintRE = regexp.MustCompile(`(?i)(?:/\*|--)\s*route\s*:\s*(primary|replica|any)\b`)

// Provision implements plugin.Provisioner.
func (p *Route) Provision(plugin.Context) error {
	p.hints = p.Hints == nil || *p.Hints
	for i, r := range p.Rules {
		switch r.Role {
		case "primary", "replica", "any":
		default:
			return fmt.Errorf("rules[%d]: role %q: want primary, replica or any", i, r.Role)
		}
		for _, pat := range append([]string{r.User, r.ApplicationName}, r.Tables...) {
			if _, err := path.Match(pat, ""); err != nil {
				return fmt.Errorf("rules[%d]: bad pattern %q: %w", i, pat, err)
			}
		}
		if len(r.Tables) > 0 && p.facts == nil {
			p.facts = sqlfacts.New(p.MaxLength, 0)
		}
	}
	return nil
}

// OnQuery implements plugin.QueryHook.
func (p *Route) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if q.InTransaction {
		return plugin.ContinueQuery(), nil
	}
	if p.hints && strings.Contains(q.Text, "route") {
		if m := hintRE.FindStringSubmatch(q.Text); m != nil {
			return plugin.RouteQuery(strings.ToLower(m[1])), nil
		}
	}
	for i := range p.Rules {
		if p.matches(&p.Rules[i], q) {
			return plugin.RouteQuery(p.Rules[i].Role), nil
		}
	}
	return plugin.ContinueQuery(), nil
}

func (p *Route) matches(r *Rule, q *plugin.Query) bool {
	if r.User != "" && !glob(r.User, q.Client.User) {
		return false
	}
	if r.ApplicationName != "" && !glob(r.ApplicationName, q.Client.ApplicationName) {
		return false
	}
	if len(r.Tables) == 0 {
		return true
	}
	f := p.facts.Get(q.Text)
	for _, t := range f.Tables {
		for _, want := range r.Tables {
			if sqlfacts.MatchTable(want, t) || strings.ContainsRune(want, '*') && glob(want, t) {
				return true
			}
		}
	}
	return false
}

func glob(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

var (
	_ plugin.Provisioner = (*Route)(nil)
	_ plugin.QueryHook   = (*Route)(nil)
)
