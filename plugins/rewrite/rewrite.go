// Package rewrite changes query texts before they are sent, by ordered rules.
//
//	[plugins.rewrite]
//	[[plugins.rewrite.rules]]
//	from = "legacy_orders"          # a table, renamed in the parsed query
//	to = "orders"
//	match = "table"
//
//	[[plugins.rewrite.rules]]
//	from = '(?i)\bnow\(\)'          # an RE2 regular expression; $1 ... in to
//	to = "statement_timestamp()"
//	match = "regex"
//
//	[[plugins.rewrite.rules]]
//	from = "SELECT * FROM pg_stat_activity"   # literal text (the default)
//	to = "SELECT * FROM pg_stat_activity WHERE datname = current_database()"
//
// Each rule applies to the text the previous rule produced. "literal" replaces every
// occurrence of from; "regex" every match of the regular expression; "table" renames a table
// (from: "name" matches it in any schema, "schema.name" only there; to may be qualified) in the
// parse tree and prints the query back with the Postgres deparser, so the table's name in a
// string literal or a column named like it is left alone, but comments are dropped. Texts are
// rewritten in the simple protocol and at Parse in the extended protocol. Results are cached
// per text.
package rewrite

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/sqlfacts"
)

func init() {
	plugin.Register(plugin.Info{Name: "rewrite", New: func() plugin.Plugin { return new(Rewrite) }})
}

// Rewrite is the plugin and its configuration.
type Rewrite struct {
	Rules []Rule `toml:"rules"`
	// MaxLength is the longest text the "table" rules parse (default 16 KiB, at most 64 KiB);
	// longer texts are left as they are by those rules.
	MaxLength int `toml:"max_length"`

	maxLength int
	memo      *sqlfacts.Memo[string] // text -> rewritten text ("" when unchanged)
}

// Rule is one rewrite rule.
type Rule struct {
	From  string `toml:"from"`
	To    string `toml:"to"`
	Match string `toml:"match"` // "literal" (default), "regex" or "table"

	re                *regexp.Regexp
	toSchema, toTable string
}

// Provision implements plugin.Provisioner.
func (p *Rewrite) Provision(plugin.Context) error {
	p.maxLength = sqlfacts.MaxLength(p.MaxLength)
	p.memo = sqlfacts.NewMemo[string](0)
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.From == "" {
			return fmt.Errorf("rules[%d]: from is empty", i)
		}
		switch r.Match {
		case "", "literal":
			r.Match = "literal"
		case "regex":
			re, err := regexp.Compile(r.From)
			if err != nil {
				return fmt.Errorf("rules[%d]: from: %w", i, err)
			}
			r.re = re
		case "table":
			if r.To == "" || strings.Count(r.To, ".") > 1 || strings.Count(r.From, ".") > 1 {
				return fmt.Errorf("rules[%d]: a table rule needs from and to as table or schema.table", i)
			}
			r.toTable = r.To
			if j := strings.IndexByte(r.To, '.'); j >= 0 {
				r.toSchema, r.toTable = r.To[:j], r.To[j+1:]
			}
		default:
			return fmt.Errorf("rules[%d]: match %q: want literal, regex or table", i, r.Match)
		}
	}
	return nil
}

// OnQuery implements plugin.QueryHook.
func (p *Rewrite) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if len(p.Rules) == 0 || q.Protocol == plugin.Bind {
		return plugin.ContinueQuery(), nil
	}
	if out := p.memo.Get(q.Text, p.apply); out != "" {
		return plugin.RewriteQuery(out), nil
	}
	return plugin.ContinueQuery(), nil
}

// apply runs every rule over text and returns the result, or "" when nothing changed.
func (p *Rewrite) apply(text string) string {
	out := text
	for i := range p.Rules {
		r := &p.Rules[i]
		switch r.Match {
		case "literal":
			out = strings.ReplaceAll(out, r.From, r.To)
		case "regex":
			out = r.re.ReplaceAllString(out, r.To)
		case "table":
			out = p.renameTable(r, out)
		}
	}
	if out == text {
		return ""
	}
	return out
}

// renameTable renames r's table in text's parse tree and deparses it; text is returned as it
// is when it names no such table or does not parse.
func (p *Rewrite) renameTable(r *Rule, text string) string {
	if len(text) > p.maxLength || !strings.Contains(strings.ToLower(text), tableWord(r.From)) {
		return text
	}
	tree, err := pg.Parse(text)
	if err != nil {
		return text
	}
	changed := false
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if rv, ok := m.Interface().(*pg.RangeVar); ok {
			name := rv.GetRelname()
			if rv.GetSchemaname() != "" {
				name = rv.GetSchemaname() + "." + name
			}
			if sqlfacts.MatchTable(r.From, name) {
				rv.Relname = r.toTable
				if r.toSchema != "" {
					rv.Schemaname = r.toSchema
				}
				changed = true
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for j, l := 0, v.List(); j < l.Len(); j++ {
					visit(l.Get(j).Message())
				}
			case fd.IsMap():
			case fd.Message() != nil:
				visit(v.Message())
			}
			return true
		})
	}
	visit(tree.ProtoReflect())
	if !changed {
		return text
	}
	out, err := pg.Deparse(tree)
	if err != nil {
		return text
	}
	return out
}

// tableWord is the part of a table name that must appear in a text that names it.
func tableWord(from string) string {
	if i := strings.LastIndexByte(from, '.'); i >= 0 {
		from = from[i+1:]
	}
	return strings.ToLower(from)
}

var (
	_ plugin.Provisioner = (*Rewrite)(nil)
	_ plugin.QueryHook   = (*Rewrite)(nil)
)
