// Package benchplugins holds the three compiled-in plugins of the bench's sluice-plugins target.
// Each has a query hook that does a little real work on what it is given (a statement kind, a
// counter, a look at the text), so the target measures what sluice's hook path costs a query:
// building the query view, its classification from the cache, three calls through the chain,
// with plugins that are cheap but not empty.
package benchplugins

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/sluicepg/sluice/plugin"
)

func init() {
	plugin.Register(plugin.Info{Name: "bench_deny", New: func() plugin.Plugin { return new(deny) }})
	plugin.Register(plugin.Info{Name: "bench_count", New: func() plugin.Plugin { return new(count) }})
	plugin.Register(plugin.Info{Name: "bench_hint", New: func() plugin.Plugin { return new(hint) }})
}

// deny refuses statements of one kind (EXECUTE by default), as a deny list would.
type deny struct {
	Kind string `toml:"kind"`
}

func (d *deny) OnQuery(_ context.Context, q *plugin.Query) (plugin.Action, error) {
	kind := d.Kind
	if kind == "" {
		kind = "ExecuteStmt"
	}
	if q.Kind == kind {
		return plugin.RejectQuery("42501", "bench_deny: "+kind+" is not allowed"), nil
	}
	return plugin.ContinueQuery(), nil
}

// count counts queries and writes, as a metrics plugin would.
type count struct {
	queries, writes atomic.Int64
}

func (c *count) OnQuery(_ context.Context, q *plugin.Query) (plugin.Action, error) {
	c.queries.Add(1)
	if q.Write {
		c.writes.Add(1)
	}
	return plugin.ContinueQuery(), nil
}

// hint routes a query that starts with a /* replica */ comment to a replica, as a routing
// plugin would; pgbench's queries have none.
type hint struct{}

func (hint) OnQuery(_ context.Context, q *plugin.Query) (plugin.Action, error) {
	if strings.HasPrefix(q.Text, "/* replica */") {
		return plugin.RouteQuery("replica"), nil
	}
	return plugin.ContinueQuery(), nil
}

// Interface guards.
var (
	_ plugin.QueryHook = (*deny)(nil)
	_ plugin.QueryHook = (*count)(nil)
	_ plugin.QueryHook = (*hint)(nil)
)
