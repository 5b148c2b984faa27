// Package querylogger is pgcat's query_logger plugin: it logs every query, at level info,
// with the client's user, database and application_name.
//
//	[plugins.query_logger]
//	enabled = true
//
// A simple-protocol query is logged when it arrives; a query of the extended protocol is
// logged at each Bind (each execution), with its parameters' count, so a prepared statement
// run a thousand times gives a thousand lines, as its executions would in the server's log.
// pgcat logs the extended protocol at Parse instead. Query texts may hold secrets: the log is
// as sensitive as the database.
package querylogger

import (
	"context"
	"log/slog"

	"github.com/sluicepg/sluice/plugin"
)

func init() {
	plugin.Register(plugin.Info{Name: "query_logger", New: func() plugin.Plugin { return new(QueryLogger) }})
}

// QueryLogger is the plugin and its configuration.
type QueryLogger struct {
	Enabled bool `toml:"enabled"`

	log *slog.Logger
}

// Provision implements plugin.Provisioner.
func (p *QueryLogger) Provision(ctx plugin.Context) error {
	p.log = ctx.Logger
	if p.log == nil {
		p.log = slog.Default()
	}
	if ctx.Pool != "" {
		p.log = p.log.With("pool", ctx.Pool)
	}
	return nil
}

// OnQuery implements plugin.QueryHook.
func (p *QueryLogger) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if !p.Enabled || q.Protocol == plugin.Parse {
		return plugin.ContinueQuery(), nil
	}
	attrs := []slog.Attr{
		slog.String("user", q.Client.User),
		slog.String("database", q.Client.Database),
		slog.String("application_name", q.Client.ApplicationName),
		slog.String("query", q.Text),
	}
	if q.Protocol == plugin.Bind {
		attrs = append(attrs, slog.String("protocol", "extended"), slog.Int("params", len(q.Params)))
	}
	p.log.LogAttrs(ctx, slog.LevelInfo, "query", attrs...)
	return plugin.ContinueQuery(), nil
}

var (
	_ plugin.Provisioner = (*QueryLogger)(nil)
	_ plugin.QueryHook   = (*QueryLogger)(nil)
)
