// Command demo shows sluice at work on this machine, with nothing to set up: `make demo`.
//
// It starts a PostgreSQL primary with a streaming replica and a Redis server (internal/pgtest, free
// loopback ports, temporary directories), creates the user and database "demo", loads pgbench's
// tables, starts bin/sluice in transaction mode in front of both servers, runs pgbench through it
// with progress every second, and then prints the psql command to try it by hand. Ctrl-C (or
// SIGTERM) stops sluice and the servers and removes every directory.
//
// With -no-sluice, pgbench runs straight against the primary: a baseline, and a way to run the
// demo before there is a bin/sluice.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// settings are the command-line flags.
type settings struct {
	sluiceBin string
	noSluice  bool
	scale     int
	clients   int
	duration  time.Duration
}

func main() {
	var s settings
	flag.StringVar(&s.sluiceBin, "sluice", "", "sluice binary (default: bin/sluice at the repository root)")
	flag.BoolVar(&s.noSluice, "no-sluice", false, "run pgbench straight against the primary, without sluice")
	flag.IntVar(&s.scale, "scale", 5, "pgbench -i scale factor")
	flag.IntVar(&s.clients, "clients", 16, "pgbench clients")
	flag.DurationVar(&s.duration, "duration", 20*time.Second, "how long pgbench runs")
	flag.Parse()

	// The context ends at Ctrl-C or SIGTERM; the handler stays installed until the end, so a
	// second signal (make relays the first one) cannot cut the cleanup short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, s)
	interrupted := ctx.Err() != nil
	fmt.Println("demo: stopping everything and removing the directories")
	pgtest.Cleanup()
	stop()
	if err != nil && !interrupted {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run sets everything up, runs pgbench, and waits for ctx to end. Servers it started are left
// for pgtest.Cleanup; sluice and the demo's directory are stopped and removed before it returns.
func run(ctx context.Context, s settings) error {
	if !s.noSluice && s.sluiceBin == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		s.sluiceBin = filepath.Join(root, "bin", "sluice")
	}
	if !s.noSluice {
		if _, err := os.Stat(s.sluiceBin); err != nil {
			return fmt.Errorf("%w (run make build, or pass -no-sluice)", err)
		}
	}
	pgbench, err := pgbenchPath()
	if err != nil {
		return err
	}

	say("starting the primary")
	primary, err := pgtest.StartPostgres(pgtest.Options{Name: "demo-primary"})
	if err != nil {
		return err
	}
	say("primary on %s:%d, data in %s", primary.Host, primary.Port, primary.DataDir)
	if err := ctx.Err(); err != nil {
		return err
	}
	replica, err := primary.StartReplica("demo-replica")
	if err != nil {
		return err
	}
	say("replica on %s:%d, streaming from the primary", replica.Host, replica.Port)
	if err := ctx.Err(); err != nil {
		return err
	}
	shard1, err := pgtest.StartPostgres(pgtest.Options{Name: "demo-shard1"})
	if err != nil {
		return err
	}
	say("second shard on %s:%d", shard1.Host, shard1.Port)
	redis, err := pgtest.StartRedis()
	if err != nil {
		return err
	}
	say("redis on %s", redis.Addr)

	password := randomPassword()
	if err := primary.CreateUser(ctx, "demo", password); err != nil {
		return err
	}
	if err := primary.CreateDatabase(ctx, "demo", "demo"); err != nil {
		return err
	}
	// The sharded pool: database "orders" on the primary (shard 0) and on the second server
	// (shard 1), the same table on both.
	if err := shard1.CreateUser(ctx, "demo", password); err != nil {
		return err
	}
	for _, pg := range []*pgtest.Postgres{primary, shard1} {
		if err := pg.CreateDatabase(ctx, "orders", "demo"); err != nil {
			return err
		}
		if err := pg.Exec(ctx, "orders", "CREATE TABLE orders (id bigint PRIMARY KEY, item text); ALTER TABLE orders OWNER TO demo"); err != nil {
			return err
		}
	}
	say("pgbench -i -s %d on the primary", s.scale)
	if err := runPgbench(ctx, pgbench, primary.Host, primary.Port, password,
		"-i", "-s", strconv.Itoa(s.scale), "-q"); err != nil {
		return err
	}

	host, port := primary.Host, primary.Port
	var sl *sluice
	if !s.noSluice {
		dir, err := os.MkdirTemp("", "sluice-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		sl, err = startSluice(ctx, s.sluiceBin, dir, primary, replica, shard1, password)
		if err != nil {
			return err
		}
		defer sl.stop()
		host, port = "127.0.0.1", sl.port
		say("sluice on %s:%d (config %s, log %s)", host, port, sl.configFile, sl.logFile)
	}

	say("pgbench -c %d -j 2 -T %d -P 1 -M extended through %s:%d", s.clients, int(s.duration.Seconds()), host, port)
	if err := runPgbench(ctx, pgbench, host, port, password,
		"-c", strconv.Itoa(s.clients), "-j", "2", "-T", strconv.Itoa(int(s.duration.Seconds())),
		"-P", "1", "-M", "extended"); err != nil {
		if sl != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w\n--- end of %s ---\n%s", err, sl.logFile, tail(sl.logFile))
		}
		return err
	}

	if sl != nil {
		if err := shardDemo(ctx, host, port, password); err != nil {
			return err
		}
	}

	fmt.Printf(`
Try it yourself:

    PGPASSWORD=%s psql -h %s -p %d -U demo demo      reads go to the replica, writes to the primary
    PGPASSWORD=%s psql -h %s -p %d -U demo orders    two shards: SELECT * FROM orders WHERE id = 7; SELECT count(*) FROM orders;
    PGPASSWORD=%s psql -h %s -p %d -U admin pgcat    the admin console: SHOW DATABASES; SHOW POOLS; SHOW STATS;
    curl -s http://%s:%d/metrics | grep ^pgcat_stats      Prometheus metrics

primary %s:%d, replica %s:%d, second shard %s:%d, redis %s. Press Ctrl-C to stop everything.
`, password, host, port, password, host, port, sl.adminPassword, host, port, host, sl.metricsPort,
		primary.Host, primary.Port, replica.Host, replica.Port, shard1.Host, shard1.Port, redis.Addr)
	<-ctx.Done()
	return nil
}

// sluice is a running bin/sluice process.
type sluice struct {
	port          int
	metricsPort   int
	configFile    string
	logFile       string
	adminPassword string
	cmd           *exec.Cmd
	exited        chan struct{} // closed when cmd has exited
}

// startSluice writes a pgcat.toml-style configuration for one transaction-mode pool in front of
// the primary and the replica, checks it with -check, starts sluice on a free port, and waits
// until a client gets through it to Postgres.
func startSluice(ctx context.Context, bin, dir string, primary, replica, shard1 *pgtest.Postgres, password string) (*sluice, error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	sl := &sluice{
		port:          port,
		metricsPort:   metricsPort,
		configFile:    filepath.Join(dir, "sluice.toml"),
		logFile:       filepath.Join(dir, "sluice.log"),
		adminPassword: randomPassword(),
	}
	config := fmt.Sprintf(`# Written by internal/demo.
[general]
host = "127.0.0.1"
port = %d
admin_username = "admin"
admin_password = %s
enable_prometheus_exporter = true        # pgcat's keys: metrics at /metrics
prometheus_exporter_port = %[10]d

[pools.demo]
pool_mode = "transaction"
query_parser_enabled = true              # read/write splitting with the Postgres parser
query_parser_read_write_splitting = true
load_balancing_mode = "round_robin"

[pools.demo.users.0]
username = "demo"
password = %[3]s
pool_size = 10

[pools.demo.shards.0]
database = "demo"
servers = [["%[4]s", %[5]d, "primary"], ["%[6]s", %[7]d, "replica"]]

[pools.orders]
pool_mode = "transaction"
automatic_sharding_key = "orders.id"     # each row goes to the shard its id hashes to
cross_shard_reads = "all"                # a read without a key runs on both shards, merged

[pools.orders.users.0]
username = "demo"
password = %[3]s
pool_size = 5

[pools.orders.shards.0]
database = "orders"
servers = [["%[4]s", %[5]d, "primary"]]

[pools.orders.shards.1]
database = "orders"
servers = [["%[8]s", %[9]d, "primary"]]
`, port, tomlString(sl.adminPassword), tomlString(password),
		primary.Host, primary.Port, replica.Host, replica.Port, shard1.Host, shard1.Port, metricsPort)
	if err := os.WriteFile(sl.configFile, []byte(config), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-check", "-c", sl.configFile).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s -check -c %s: %w\n%s", bin, sl.configFile, err, out)
	}

	logf, err := os.Create(sl.logFile)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	sl.cmd = exec.Command(bin, "-c", sl.configFile)
	sl.cmd.Stdout, sl.cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C at the terminal reaches the demo, which stops sluice first.
	sl.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sl.cmd.Start(); err != nil {
		return nil, err
	}
	sl.exited = make(chan struct{})
	go func() {
		sl.cmd.Wait()
		close(sl.exited)
	}()

	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=demo password=%s dbname=demo sslmode=disable connect_timeout=2", port, password)
	deadline := time.Now().Add(30 * time.Second)
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, 250*time.Millisecond) {
		err = ping(ctx, dsn)
		if err == nil {
			return sl, nil
		}
		select {
		case <-sl.exited:
			return nil, fmt.Errorf("sluice exited (%v):\n%s", sl.cmd.ProcessState, tail(sl.logFile))
		case <-ctx.Done():
			sl.stop()
			return nil, ctx.Err()
		case <-time.After(pause):
		}
		if time.Now().After(deadline) {
			sl.stop()
			return nil, fmt.Errorf("no connection through sluice on port %d within 30s: %w\n%s", port, err, tail(sl.logFile))
		}
	}
}

// shardDemo writes a few rows through the sharded pool, each to the shard of its key.
func shardDemo(ctx context.Context, host string, port int, password string) error {
	dsn := fmt.Sprintf("host=%s port=%d user=demo password=%s dbname=orders sslmode=disable", host, port, password)
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the sharded pool: %w", err)
	}
	defer conn.Close(ctx)
	for id := 1; id <= 20; id++ {
		sql := fmt.Sprintf("INSERT INTO orders (id, item) VALUES (%d, 'item %d') ON CONFLICT (id) DO NOTHING", id, id)
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	say("20 orders written through the sharded pool, each to the shard its id hashes to")
	return nil
}

// stop sends SIGTERM and waits for sluice to shut down, killing it after 10 seconds.
func (sl *sluice) stop() {
	sl.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sl.exited:
	case <-time.After(10 * time.Second):
		sl.cmd.Process.Kill()
		<-sl.exited
	}
}

// ping connects with dsn and runs one query, so "accepts" means a server answered through sluice.
func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
	return err
}

// runPgbench runs pgbench as user demo on database demo, its output going to the terminal. An
// interrupted run is not an error: the context says why.
func runPgbench(ctx context.Context, pgbench, host string, port int, password string, args ...string) error {
	cmd := exec.CommandContext(ctx, pgbench, append(args, "demo")...)
	cmd.Env = append(os.Environ(),
		"PGHOST="+host, "PGPORT="+strconv.Itoa(port), "PGUSER=demo", "PGPASSWORD="+password,
		"PGDATABASE=demo", "PGSSLMODE=disable")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pgbench %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// pgbenchPath finds pgbench next to the server binaries pgtest uses, else on $PATH.
func pgbenchPath() (string, error) {
	if dir, err := pgtest.BinDir(); err == nil {
		if p := filepath.Join(dir, "pgbench"); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("pgbench")
	if err != nil {
		return "", fmt.Errorf("pgbench not found (run make deps): %w", err)
	}
	return p, nil
}

// repoRoot returns the nearest directory at or above the working directory that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; pass -sluice")
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func randomPassword() string {
	b := make([]byte, 9)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// tail returns the last lines of a log file for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func say(format string, args ...any) {
	fmt.Printf("demo: "+format+"\n", args...)
}
