package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicepg/sluice/internal/config"
)

// TestSluiceConfigLoads checks that the config the bench gives sluice is one
// sluice accepts, with the pool and limits the bench relies on.
func TestSluiceConfigLoads(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, parser := range []bool{false, true} {
		for _, auth := range []string{authMD5, authSCRAM} {
			checkSluiceConfig(t, o, parser, auth)
		}
	}
}

func checkSluiceConfig(t *testing.T, o options, parser bool, auth string) {
	path := filepath.Join(t.TempDir(), "sluice.toml")
	if err := os.WriteFile(path, []byte(sluiceConfig(16432, "127.0.0.1", 15432, o, parser, auth)), 0o600); err != nil {
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
