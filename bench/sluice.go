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

// buildPluginsBinary builds bench/sluiceplugins, sluice with the three bench plugins, into a
// new temporary directory and returns its path. It is built here rather than by `make build`
// because it is a custom binary, as a user would make one: cmd/sluice stays free of test
// plugins.
func buildPluginsBinary(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-plugins-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sluice-plugins")
	fmt.Println(targetSluicePlugins + ": go build github.com/sluicepg/sluice/bench/sluiceplugins")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluicepg/sluice/bench/sluiceplugins").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build %s: %v\n%s", targetSluicePlugins, err, out)
	}
	return bin, nil
}

// sluiceConfig is the pgcat.toml sluice runs with as target name: listening on port, one
// transaction-mode pool of o.poolSize servers on pgHost:pgPort for the bench user, who logs in
// to sluice with auth (md5 or scram-sha-256), and room for the idle clients.
//
// For targetSluiceParser the pool has read/write splitting on, so every query is classified.
// For targetSluicePlugins the three bench plugins are on, for every pool.
func sluiceConfig(port int, pgHost string, pgPort int, o options, name, auth string) string {
	plugins, split := "", ""
	switch name {
	case targetSluiceParser:
		split = "query_parser_enabled = true\nquery_parser_read_write_splitting = true\n"
	case targetSluicePlugins:
		plugins = pluginsConfig
	}
	return fmt.Sprintf(`[general]
host = "127.0.0.1"
port = %d
max_client_conn = %d
auth_type = %q
%s
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
`, port, o.idle+1000, auth, plugins,
		benchDB, split, benchDB, benchUser, benchPassword, o.poolSize,
		benchDB, benchDB, pgHost, pgPort)
}

// startSluice runs the sluice binary in front of pg with sluiceConfig, as target name, for
// clients that log in with auth.
func startSluice(ctx context.Context, pg *pgtest.Postgres, o options, name, auth string) (*process, error) {
	bin, err := sluiceBinary(o)
	if name == targetSluicePlugins {
		bin, err = o.pluginsBin, nil
	}
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
	if err := os.WriteFile(confPath, []byte(sluiceConfig(port, pg.Host, pg.Port, o, name, auth)), 0o600); err != nil {
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

// pluginsConfig is the [plugins] part of targetSluicePlugins' configuration: three plugins
// with a query hook each, in the order they run.
const pluginsConfig = `
[plugins.bench_deny]
kind = "ExecuteStmt"

[plugins.bench_count]

[plugins.bench_hint]
`
