// Package prewarmer is pgcat's prewarmer plugin: it runs queries on every new server
// connection before any client uses it, to load caches (pg_prewarm) or set up the session.
//
//	[plugins.prewarmer]
//	enabled = true
//	queries = ["SELECT pg_prewarm('pgbench_accounts')"]
//
// The queries run in order, in the simple protocol. If one fails, the connection is closed and
// not used, as in pgcat. Settings made with SET last only until a reset: in session mode
// sluice runs server_reset_query (DISCARD ALL) when a client leaves.
package prewarmer

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sluicepg/sluice/plugin"
)

func init() {
	plugin.Register(plugin.Info{Name: "prewarmer", New: func() plugin.Plugin { return new(Prewarmer) }})
}

// Prewarmer is the plugin and its configuration.
type Prewarmer struct {
	Enabled bool     `toml:"enabled"`
	Queries []string `toml:"queries"`

	log *slog.Logger
}

// Provision implements plugin.Provisioner.
func (p *Prewarmer) Provision(ctx plugin.Context) error {
	p.log = ctx.Logger
	if p.log == nil {
		p.log = slog.Default()
	}
	return nil
}

// OnServerConnect implements plugin.ServerConnectHook.
func (p *Prewarmer) OnServerConnect(ctx context.Context, s *plugin.Server) error {
	if !p.Enabled {
		return nil
	}
	for _, q := range p.Queries {
		p.log.Info("prewarming a server connection", "server", s.Addr, "database", s.Database, "query", q)
		if err := s.Exec(q); err != nil {
			return fmt.Errorf("prewarm %s with %q: %w", s.Addr, q, err)
		}
	}
	return nil
}

var (
	_ plugin.Provisioner       = (*Prewarmer)(nil)
	_ plugin.ServerConnectHook = (*Prewarmer)(nil)
)
