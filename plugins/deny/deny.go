// Package deny refuses statements by kind and by the functions they call: a deny list for
// what an application should never send through the pooler.
//
//	[plugins.deny]
//	kinds = ["ExecuteStmt", "CopyStmt with PROGRAM", "DropStmt"]
//	functions = ["pg_read_file", "pg_ls_dir", "lo_*", "dblink*"]
//
// Kinds are the Postgres parser's node names ("SelectStmt", "InsertStmt", "ExecuteStmt",
// "CopyStmt" ...), matched anywhere in the text: "DeleteStmt" also refuses
// "WITH d AS (DELETE ...) SELECT" and "EXPLAIN ANALYZE DELETE ...". "CopyStmt with PROGRAM" is only COPY ... TO PROGRAM and COPY ... FROM
// PROGRAM. A function name without a schema matches the function in any schema; with one
// ("pg_catalog.pg_read_file") it matches calls so qualified and unqualified calls (which
// search_path usually resolves to pg_catalog first). '*' in a name matches any characters.
//
// The plugin reads the statement text. It is a guard rail, not a security boundary: a function
// called from inside a function body, a DO block or a view is not seen. Use GRANT and REVOKE
// for what must never run.
package deny

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/sqlfacts"
)

func init() {
	plugin.Register(plugin.Info{Name: "deny", New: func() plugin.Plugin { return new(Deny) }})
}

// Deny is the plugin and its configuration.
type Deny struct {
	Kinds     []string `toml:"kinds"`
	Functions []string `toml:"functions"`
	// Code is the SQLSTATE of a refusal; default 42501 (insufficient_privilege).
	Code string `toml:"code"`
	// MaxLength is the longest text parsed (default 16 KiB, at most 64 KiB).
	MaxLength int `toml:"max_length"`
	// RejectUnparsed refuses texts the plugin cannot parse (too long, or not SQL), which could
	// hide a denied statement. Off by default: the server rejects what is not SQL anyway.
	RejectUnparsed bool `toml:"reject_unparsed"`

	kinds       map[string]bool
	copyProgram bool
	funcs       []funcPattern
	facts       *sqlfacts.Cache
}

type funcPattern struct {
	schema, name string // schema "" matches any
}

// copyProgramKind is the pseudo-kind for COPY ... PROGRAM.
const copyProgramKind = "CopyStmt with PROGRAM"

// Provision implements plugin.Provisioner.
func (p *Deny) Provision(plugin.Context) error {
	if p.Code == "" {
		p.Code = "42501"
	}
	p.kinds = map[string]bool{}
	for _, k := range p.Kinds {
		k = strings.Join(strings.Fields(k), " ")
		if strings.EqualFold(k, copyProgramKind) || strings.EqualFold(k, "CopyStmt PROGRAM") {
			p.copyProgram = true
			continue
		}
		p.kinds[k] = true
	}
	for _, f := range p.Functions {
		f = strings.ToLower(strings.TrimSpace(f))
		fp := funcPattern{name: f}
		if i := strings.LastIndexByte(f, '.'); i >= 0 {
			fp.schema, fp.name = f[:i], f[i+1:]
		}
		p.funcs = append(p.funcs, fp)
	}
	p.facts = sqlfacts.New(p.MaxLength, 0)
	return nil
}

// Validate implements plugin.Validator: kinds must be node names the parser knows.
func (p *Deny) Validate() error {
	if len(p.Code) != 5 {
		return fmt.Errorf("code %q is not a SQLSTATE (five characters)", p.Code)
	}
	known := sqlfacts.NodeNames()
	for k := range p.kinds {
		ok := false
		for _, n := range known {
			if n == k {
				ok = true
				break
			}
		}
		if !ok {
			msg := fmt.Sprintf("kinds: %q is not a statement kind of the Postgres parser", k)
			if s := config.Suggest(k, append(known, copyProgramKind)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return fmt.Errorf("%s", msg)
		}
	}
	for _, f := range p.funcs {
		if f.name == "" {
			return fmt.Errorf("functions: an empty function name")
		}
		if _, err := path.Match(f.name, ""); err != nil {
			return fmt.Errorf("functions: bad pattern %q: %w", f.name, err)
		}
	}
	return nil
}

// OnQuery implements plugin.QueryHook.
func (p *Deny) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if q.Protocol == plugin.Bind {
		return plugin.ContinueQuery(), nil // checked at its Parse
	}
	f := p.facts.Get(q.Text)
	if f.Err != nil {
		if p.RejectUnparsed {
			return plugin.RejectQuery(p.Code, "deny: the query could not be checked: "+f.Err.Error()), nil
		}
		return plugin.ContinueQuery(), nil
	}
	if p.copyProgram && f.CopyProgram {
		return plugin.RejectQuery(p.Code, "deny: COPY ... PROGRAM is not allowed"), nil
	}
	for _, k := range f.Statements {
		if p.kinds[k] {
			return plugin.RejectQuery(p.Code, "deny: statements of kind "+k+" are not allowed"), nil
		}
	}
	for _, fn := range f.Functions {
		if p.deniedFunc(fn) {
			return plugin.RejectQuery(p.Code, "deny: function "+fn+" is not allowed"), nil
		}
	}
	return plugin.ContinueQuery(), nil
}

// deniedFunc reports whether a call of fn ("name" or "schema.name") matches a pattern.
func (p *Deny) deniedFunc(fn string) bool {
	schema, name := "", fn
	if i := strings.LastIndexByte(fn, '.'); i >= 0 {
		schema, name = fn[:i], fn[i+1:]
	}
	for _, fp := range p.funcs {
		if fp.schema != "" && schema != "" && !globMatch(fp.schema, schema) {
			continue
		}
		if globMatch(fp.name, name) {
			return true
		}
	}
	return false
}

func globMatch(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

var (
	_ plugin.Provisioner = (*Deny)(nil)
	_ plugin.Validator   = (*Deny)(nil)
	_ plugin.QueryHook   = (*Deny)(nil)
)
