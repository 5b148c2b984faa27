// Package usermap remaps a client's user and database when it connects, before sluice looks up
// its pool and checks its password: old names keep working after a rename, and several
// databases can be served by one pool.
//
//	[plugins.user_map]
//	[[plugins.user_map.rules]]
//	database = "legacy_app"     # clients asking for legacy_app ...
//	to_database = "app"         # ... are served by pool app
//
//	[[plugins.user_map.rules]]
//	user = "report_*"           # every report_ user ...
//	to_user = "reporting"       # ... logs in as reporting
//
// The first rule whose user and database patterns ('*' matches any characters; empty matches
// all) match the startup packet applies; to_user and to_database replace what they set. The
// client then logs in as the new user of the new pool: it must know that user's password.
//
// Only the top-level [plugins.user_map] (or the block of the pool the client asked for) is
// consulted, since the pool is not chosen yet.
package usermap

import (
	"context"
	"fmt"
	"path"

	"github.com/sluicepg/sluice/plugin"
)

func init() {
	plugin.Register(plugin.Info{Name: "user_map", New: func() plugin.Plugin { return new(UserMap) }})
}

// UserMap is the plugin and its configuration.
type UserMap struct {
	Rules []Rule `toml:"rules"`
}

// Rule is one remapping.
type Rule struct {
	User       string `toml:"user"`
	Database   string `toml:"database"`
	ToUser     string `toml:"to_user"`
	ToDatabase string `toml:"to_database"`
}

// Validate implements plugin.Validator.
func (p *UserMap) Validate() error {
	for i, r := range p.Rules {
		if r.ToUser == "" && r.ToDatabase == "" {
			return fmt.Errorf("rules[%d]: set to_user, to_database or both", i)
		}
		for _, pat := range []string{r.User, r.Database} {
			if _, err := path.Match(pat, ""); err != nil {
				return fmt.Errorf("rules[%d]: bad pattern %q: %w", i, pat, err)
			}
		}
	}
	return nil
}

// OnStartup implements plugin.StartupHook.
func (p *UserMap) OnStartup(ctx context.Context, s *plugin.Startup) error {
	for _, r := range p.Rules {
		if glob(r.User, s.User) && glob(r.Database, s.Database) {
			if r.ToUser != "" {
				s.User = r.ToUser
			}
			if r.ToDatabase != "" {
				s.Database = r.ToDatabase
			}
			return nil
		}
	}
	return nil
}

func glob(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, s)
	return ok
}

var (
	_ plugin.Validator   = (*UserMap)(nil)
	_ plugin.StartupHook = (*UserMap)(nil)
)
