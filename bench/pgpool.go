package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// pgpoolBin is Debian's pgpool-II (package pgpool2).
const pgpoolBin = "/usr/sbin/pgpool"

// errNoPgpool is returned by startPgpool when pgpool-II is not installed: the cache bench then
// leaves it out, with a note in the report.
var errNoPgpool = errors.New("pgpool-II is not installed (" + pgpoolBin + "; `make deps` as root installs Debian's pgpool2)")

// pgpoolConfig is the pgpool.conf of the bench's pgpool-II, with its files in dir: one backend,
// flagged as the primary (no replication checks, no failover, no load balancing), connection
// pooling on, one child process per client (pgpool-II serves one client per child) plus spare
// ones, and the query cache in shared memory, invalidated when a table is written through
// pgpool. Sockets, the pid file, the status file and the cache's oid directory are all under dir.
//
// The mode is streaming_replication with one node, not raw: pgpool-II 4.3 in raw mode wraps an
// extended-protocol UPDATE in a BEGIN of its own and leaves it open (ReadyForQuery says 'T';
// pgpool/pgpool2 issue 172), so pgbench -M extended and prepared abort ("end of script reached
// without completing the last transaction").
func pgpoolConfig(dir string, port, pcpPort int, pgHost string, pgPort, children int) string {
	return fmt.Sprintf(`# Written by sluice's bench (bench/pgpool.go).
backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = %d
socket_dir = '%s'
pcp_listen_addresses = ''
pcp_port = %d
pcp_socket_dir = '%s'
wd_ipc_socket_dir = '%s'
pid_file_name = '%s'
logdir = '%s'
log_destination = 'stderr'

backend_hostname0 = '%s'
backend_port0 = %d
backend_weight0 = 1
backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'

enable_pool_hba = on
pool_passwd = 'pool_passwd'
allow_clear_text_frontend_auth = off

num_init_children = %d
max_pool = 1
reserved_connections = 0
connection_cache = on
child_life_time = 0
child_max_connections = 0
connection_life_time = 0
client_idle_limit = 0

load_balance_mode = off
sr_check_period = 0
health_check_period = 0
failover_on_backend_error = off
use_watchdog = off

memory_cache_enabled = on
memqcache_method = 'shmem'
memqcache_total_size = 256MB
memqcache_max_num_cache = 1000000
memqcache_expire = 0
memqcache_auto_cache_invalidation = on
memqcache_maxcache = 400kB
memqcache_cache_block_size = 1MB
memqcache_oiddir = '%s'
`, port, dir, pcpPort, dir, dir, filepath.Join(dir, "pgpool.pid"), dir,
		pgHost, pgPort, children, filepath.Join(dir, "oiddir"))
}

// startPgpool runs pgpool-II in front of pg with pgpoolConfig, for clients that log in with
// md5 (its pool_passwd holds the bench user's md5 hash, which also logs it in to Postgres), as
// the postgres OS user when the bench is root (as Debian's service runs it).
func startPgpool(ctx context.Context, pg *pgtest.Postgres, o options) (*process, error) {
	if _, err := os.Stat(pgpoolBin); err != nil {
		return nil, errNoPgpool
	}
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, fmt.Errorf("pgpool port: %w", err)
	}
	pcpPort, err := pgtest.FreePort()
	if err != nil {
		return nil, fmt.Errorf("pgpool pcp port: %w", err)
	}
	dir, err := os.MkdirTemp("", "sluice-bench-pgpool-")
	if err != nil {
		return nil, err
	}
	cred, err := nonRootCredential()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "oiddir"), 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sum := md5.Sum([]byte(benchPassword + benchUser))
	files := map[string]string{
		// The bench's own connection (SHOW pool_cache) counts as a client too.
		"pgpool.conf":   pgpoolConfig(dir, port, pcpPort, pg.Host, pg.Port, o.clients+4),
		"pool_hba.conf": "local all all md5\nhost all all 127.0.0.1/32 md5\n",
		"pool_passwd":   benchUser + ":md5" + hex.EncodeToString(sum[:]) + "\n",
		"pcp.conf":      "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if cred != nil {
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	// -n: stay in the foreground (this process is pgpool's parent); -D: ignore a status file.
	cmd := exec.Command(pgpoolBin, "-n", "-D",
		"-f", filepath.Join(dir, "pgpool.conf"), "-a", filepath.Join(dir, "pool_hba.conf"),
		"-F", filepath.Join(dir, "pcp.conf"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	t := target{name: targetPgpool, host: "127.0.0.1", port: port}
	fmt.Printf("pgpool: starting on %s:%d (%d children, query cache in shared memory)\n", t.host, t.port, o.clients+4)
	p, err := startProcess(ctx, t, cmd, dir, filepath.Join(dir, "pgpool.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// pgpoolCacheStats are pgpool-II's query cache counters (SHOW pool_cache): num_cache_hits and
// num_selects (see pgpoolLookups).
type pgpoolCacheStats struct {
	hits, selects int64
	entries       int64 // num_cache_entries: results held
}

// pgpoolCache reads SHOW pool_cache through pgpool-II at t.
func pgpoolCache(ctx context.Context, t target) (pgpoolCacheStats, error) {
	var s pgpoolCacheStats
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable default_query_exec_mode=simple_protocol",
		t.host, t.port, benchUser, benchPassword, t.database()))
	if err != nil {
		return s, fmt.Errorf("pgpool: connect for SHOW pool_cache: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SHOW pool_cache")
	if err != nil {
		return s, fmt.Errorf("pgpool: SHOW pool_cache: %w", err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	if !rows.Next() {
		return s, fmt.Errorf("pgpool: SHOW pool_cache returned no row: %v", rows.Err())
	}
	vals, err := rows.Values()
	if err != nil {
		return s, err
	}
	for i, f := range fields {
		v := fmt.Sprint(vals[i])
		switch f.Name {
		case "num_cache_hits":
			_, err = fmt.Sscan(v, &s.hits)
		case "num_selects":
			_, err = fmt.Sscan(v, &s.selects)
		case "num_cache_entries":
			_, err = fmt.Sscan(v, &s.entries)
		}
		if err != nil {
			return s, fmt.Errorf("pgpool: SHOW pool_cache: %s = %q: %w", f.Name, v, err)
		}
	}
	return s, rows.Err()
}

// pgpoolLookups turns the growth of pgpool-II's counters during a run in mode into hits and
// misses. Its num_selects counts the SELECTs that went to Postgres in the simple protocol, but in
// the extended one (pgbench -M extended and prepared) every SELECT, hit or not (measured with
// pgpool-II 4.3.5: a warm-up that read every row from the cache grew both counters by the number
// of rows), so there the misses are the difference.
func pgpoolLookups(mode string, d hitCounts) hitCounts {
	if mode != "simple" {
		d.misses = max(d.misses-d.hits, 0)
	}
	return d
}

// pgpoolVersion is `pgpool --version`, e.g. "pgpool-II version 4.3.5 (tamahomeboshi)".
func pgpoolVersion() string {
	out, err := exec.Command(pgpoolBin, "--version").CombinedOutput()
	if err != nil {
		return "not installed"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
