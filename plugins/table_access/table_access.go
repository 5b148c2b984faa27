// Package tableaccess is pgcat's table_access plugin: it refuses queries that name one of the
// configured tables.
//
//	[plugins.table_access]
//	enabled = true
//	tables = ["pg_user", "pg_roles", "pg_database"]
//
// As in pgcat, a name without a schema matches the table in any schema, and the refusal says
// `permission for table "pg_user" denied`. pgcat sends it with SQLSTATE 58000 (its code for
// every error); sluice sends 42501 (insufficient_privilege) unless code says otherwise. Unlike
// pgcat, the plugin works with the query parser off (it parses the text itself, once per
// distinct text) and also checks texts of the extended protocol at Parse.
package tableaccess

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/sqlfacts"
)

func init() {
	plugin.Register(plugin.Info{Name: "table_access", New: func() plugin.Plugin { return new(TableAccess) }})
}

// TableAccess is the plugin and its configuration.
type TableAccess struct {
	Enabled bool     `toml:"enabled"`
	Tables  []string `toml:"tables"`
	// Code is the SQLSTATE of the refusal (default 42501; pgcat's is 58000).
	Code string `toml:"code"`
	// MaxLength is the longest text parsed (default 16 KiB); a longer text that names a
	// listed table is let through unless reject_unparsed is set.
	MaxLength int `toml:"max_length"`
	// RejectUnparsed refuses texts that cannot be parsed (too long, or not SQL the parser
	// knows), which could otherwise hide a listed table.
	RejectUnparsed bool `toml:"reject_unparsed"`

	facts *sqlfacts.Cache
}

// Provision implements plugin.Provisioner.
func (p *TableAccess) Provision(plugin.Context) error {
	if p.Code == "" {
		p.Code = "42501"
	}
	for i, t := range p.Tables {
		p.Tables[i] = strings.TrimSpace(t)
	}
	p.facts = sqlfacts.New(p.MaxLength, 0)
	return nil
}

// Validate implements plugin.Validator.
func (p *TableAccess) Validate() error {
	if len(p.Code) != 5 {
		return fmt.Errorf("code %q is not a SQLSTATE (five characters)", p.Code)
	}
	for _, t := range p.Tables {
		if t == "" {
			return fmt.Errorf("tables: an empty table name")
		}
	}
	return nil
}

// OnQuery implements plugin.QueryHook.
func (p *TableAccess) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if !p.Enabled || len(p.Tables) == 0 || q.Protocol == plugin.Bind {
		// A Bind's text was checked at its Parse.
		return plugin.ContinueQuery(), nil
	}
	f := p.facts.Get(q.Text)
	if f.Err != nil {
		if p.RejectUnparsed {
			return plugin.RejectQuery(p.Code, "table_access: the query could not be checked: "+f.Err.Error()), nil
		}
		return plugin.ContinueQuery(), nil
	}
	if t, ok := sqlfacts.AnyTable(p.Tables, f.Tables); ok {
		name := t
		if i := strings.LastIndexByte(t, '.'); i >= 0 {
			name = t[i+1:]
		}
		return plugin.RejectQuery(p.Code, "permission for table \""+name+"\" denied"), nil
	}
	return plugin.ContinueQuery(), nil
}

var (
	_ plugin.Provisioner = (*TableAccess)(nil)
	_ plugin.Validator   = (*TableAccess)(nil)
	_ plugin.QueryHook   = (*TableAccess)(nil)
)
