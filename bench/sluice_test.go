package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/sluicepg/sluice/bench/benchplugins"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/hooks"
)

// TestSluiceConfigLoads checks that the config the bench gives sluice is one
// sluice accepts, with the pool and limits the bench relies on.
func TestSluiceConfigLoads(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.targets, []string{targetDirect, targetPgBouncer, targetSluice, targetSluiceParser, targetSluicePlugins}) {
		t.Errorf("default targets %q", o.targets)
	}
	for _, name := range sluiceTargets {
		for _, auth := range []string{authMD5, authSCRAM} {
			checkSluiceConfig(t, o, name, auth)
		}
	}
}

func checkSluiceConfig(t *testing.T, o options, name, auth string) {
	parser := name == targetSluiceParser
	path := filepath.Join(t.TempDir(), "sluice.toml")
	if err := os.WriteFile(path, []byte(sluiceConfig(16432, "127.0.0.1", 15432, o, name, auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := config.Load(path)
	if err != nil {
		t.Fatalf("sluice rejects the bench config: %v", err)
	}
	if cfg.General.AuthType != auth {
		t.Errorf("auth_type %q, want %q", cfg.General.AuthType, auth)
	}
	for _, w := range warnings {
		t.Errorf("warning: %v", w)
	}
	if cfg.General.Port != 16432 || cfg.General.MaxClientConn <= o.idle {
		t.Errorf("general: port %d, max_client_conn %d; want 16432 and more than %d",
			cfg.General.Port, cfg.General.MaxClientConn, o.idle)
	}
	pool := cfg.Pool(benchDB)
	if pool == nil {
		t.Fatalf("no pool %q", benchDB)
	}
	if pool.QueryParserEnabled != parser || pool.QueryParserReadWriteSplitting != parser {
		t.Errorf("parser %v, splitting %v; want %v", pool.QueryParserEnabled, pool.QueryParserReadWriteSplitting, parser)
	}
	user := pool.User(benchUser)
	if user == nil {
		t.Fatalf("pool %q has no user %q", benchDB, benchUser)
	}
	if user.PoolSize != o.poolSize || user.EffectivePoolMode(pool) != "transaction" {
		t.Errorf("user %q: pool_size %d, mode %q; want %d, transaction",
			benchUser, user.PoolSize, user.EffectivePoolMode(pool), o.poolSize)
	}
}

// TestPluginsTarget: the sluice-plugins configuration sets up three plugins with a query hook
// each, the bench plugins that bench/sluiceplugins compiles in, and the other targets none.
func TestPluginsTarget(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sluiceTargets {
		path := filepath.Join(t.TempDir(), "sluice.toml")
		if err := os.WriteFile(path, []byte(sluiceConfig(16432, "127.0.0.1", 15432, o, name, authMD5)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		set, err := hooks.Load(cfg, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []string
		for _, in := range set.Instances() {
			got = append(got, in.Name+":"+strings.Join(in.Stats().Hooks, ","))
		}
		want := []string(nil)
		if name == targetSluicePlugins {
			want = []string{"bench_deny:query", "bench_count:query", "bench_hint:query"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: plugins %q, want %q", name, got, want)
		}
		set.Cleanup(nil)
	}
}

// TestPluginsBinaryBuilds builds the sluice-plugins binary as the bench does.
func TestPluginsBinaryBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin, err := buildPluginsBinary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Dir(bin))
}
