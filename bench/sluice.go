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
// For targetSluicePlugins the three bench plugins are on, for every pool; for targetSluiceCache
// the cache plugin, on o.redisAddr.
func sluiceConfig(port int, pgHost string, pgPort int, o options, name, auth string) string {
	plugins, split, general := "", "", ""
	switch name {
	case targetSluiceOneCPU:
		general = "worker_threads = 1\n"
	case targetSluiceParser:
		split = "query_parser_enabled = true\nquery_parser_read_write_splitting = true\n"
	case targetSluicePlugins:
		plugins = pluginsConfig
	case targetSluiceCache:
		plugins = cacheConfig(o)
	}
	return fmt.Sprintf(`[general]
host = "127.0.0.1"
port = %d
max_client_conn = %d
auth_type = %q
%s%s
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
`, port, o.idle+1000, auth, general, plugins,
		benchDB, split, benchDB, benchUser, benchPassword, o.poolSize,
		benchDB, benchDB, pgHost, pgPort)
}

// startSluice runs the sluice binary in front of pg with sluiceConfig, as target name, for
// clients that log in with auth.
func startSluice(ctx context.Context, pg *pgtest.Postgres, o options, name, auth string) (*process, error) {
	return startSluiceWith(ctx, o, name, func(port int) string {
		return sluiceConfig(port, pg.Host, pg.Port, o, name, auth)
	})
}

// startSluiceWith runs sluice as target name with the configuration config returns for the
// port it is to listen on; with o.profileDir set, it serves its profiler on a port of its own.
func startSluiceWith(ctx context.Context, o options, name string, config func(port int) string) (*process, error) {
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
	if err := os.WriteFile(confPath, []byte(config(port)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	args := []string{"-c", confPath}
	t := target{name: name, host: "127.0.0.1", port: port}
	if o.profileDir != "" {
		pp, err := pgtest.FreePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		t.pprofAddr = fmt.Sprintf("127.0.0.1:%d", pp)
		args = append(args, "-pprof", t.pprofAddr)
	}
	cmd := exec.Command(bin, args...)
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

// cacheConfig is the [plugins] part of targetSluiceCache's configuration: the cache on
// o.redisAddr, entries kept longer than the bench runs (the warm-up fills them once per mode),
// an in-process cache of o.cacheL1 bytes per Redis server, and the counters logged for the
// hit ratio. No WAL listener: every write goes through sluice. redis_timeout is raised from
// 100ms: on a loaded 2-CPU machine a Redis call can wait that long for a CPU, and a failed
// invalidation renews the epoch, which empties the cache in the middle of a run.
func cacheConfig(o options) string {
	return fmt.Sprintf(`
[plugins.cache]
redis = %q
prefix = "bench:"
ttl = "30m"
l1_size = %d
stats_interval = %q
redis_timeout = "1s"
wal_invalidation = false
`, o.redisAddr, o.cacheL1, cacheStatsInterval.String())
}
