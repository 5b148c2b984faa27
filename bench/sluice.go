package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// sluiceBinary returns the absolute path of the sluice binary, or an error
// saying how to get one.
func sluiceBinary(o options) (string, error) {
	bin, err := filepath.Abs(o.sluiceBin)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("sluice binary: %w (run `make build`, or leave sluice out of -targets)", err)
	}
	return bin, nil
}

// sluiceConfig is the pgcat.toml sluice runs with: listening on port, one
// transaction-mode pool of o.poolSize servers on pgHost:pgPort for the bench
// user, who logs in to sluice with auth (md5 or scram-sha-256), and room for
// the idle clients.
//
// With parser set, the pool has read/write splitting on, so every query is classified.
func sluiceConfig(port int, pgHost string, pgPort int, o options, parser bool, auth string) string {
	split := ""
	if parser {
		split = "query_parser_enabled = true\nquery_parser_read_write_splitting = true\n"
	}
	return fmt.Sprintf(`[general]
host = "127.0.0.1"
port = %d
max_client_conn = %d
auth_type = %q

[pools.%s]
pool_mode = "transaction"
%s
[pools.%s.users.0]
username = %q
password = %q
pool_size = %d

[pools.%s.shards.0]
database = %q
servers = [[%q, %d, "primary"]]
`, port, o.idle+1000, auth,
		benchDB, split, benchDB, benchUser, benchPassword, o.poolSize,
		benchDB, benchDB, pgHost, pgPort)
}

// startSluice runs the sluice binary in front of pg with sluiceConfig, as target name, for
// clients that log in with auth.
func startSluice(ctx context.Context, pg *pgtest.Postgres, o options, name, auth string) (*process, error) {
	bin, err := sluiceBinary(o)
	if err != nil {
		return nil, err
	}
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, fmt.Errorf("sluice port: %w", err)
	}
	dir, err := os.MkdirTemp("", "sluice-bench-sluice-")
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "sluice.toml")
	if err := os.WriteFile(confPath, []byte(sluiceConfig(port, pg.Host, pg.Port, o, name == targetSluiceParser, auth)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	cmd := exec.Command(bin, "-c", confPath)
	t := target{name: name, host: "127.0.0.1", port: port}
	fmt.Printf(name+": starting on %s:%d (pool_size=%d)\n", t.host, t.port, o.poolSize)
	p, err := startProcess(ctx, t, cmd, dir, filepath.Join(dir, "sluice.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}
