// Package e2e runs sluice against real PostgreSQL servers (started by internal/pgtest) with real
// clients: pgx, psql and pgbench (libpq), node-postgres, and asyncpg, psycopg 3 and psycopg2
// (test/python).
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// pg is the primary every test shares. Tests create their own tables, named after the test.
var pg *pgtest.Postgres

// sluiceBin is a build of cmd/sluice, for tests that need a real process (signals, RSS).
var sluiceBin string

const (
	appUser = "app"
	appPass = "app-secret"
	appDB   = "app"
)

func TestMain(m *testing.M) { pgtest.Main(m, setup) }

func setup() error {
	var err error
	pg, err = pgtest.StartPostgres(pgtest.Options{Name: "e2e", Auth: "md5", Conf: map[string]string{"max_connections": "400"}})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := pg.CreateUser(ctx, appUser, appPass); err != nil {
		return err
	}
	if err := pg.CreateDatabase(ctx, appDB, appUser); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-bin-")
	if err != nil {
		return err
	}
	sluiceBin = filepath.Join(dir, "sluice")
	args := []string{"build", "-o", sluiceBin}
	// SLUICE_E2E_RACE=1 builds it with the race detector, so that a hunt for data races also
	// covers the tests that run sluice as a child process (set GORACE=log_path=... to keep its
	// reports: the child's output is shown only when a test fails).
	if os.Getenv("SLUICE_E2E_RACE") != "" {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "github.com/sluicepg/sluice/cmd/sluice")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("build sluice: %v\n%s", err, out)
	}
	return nil
}

// poolConfig is a sluice configuration with one pool "app" in front of pg.
type poolConfig struct {
	Mode     string // "transaction" (default) or "session"
	PoolSize int    // default 5
	General  string // extra [general] lines
	User     string // extra [pools.app.users.0] lines
	// PasswordOverride replaces the user's password in the file (e.g. with a SCRAM verifier).
	PasswordOverride string
	// ServerPort is the Postgres behind the pool; 0 means pg. Its app user and database must
	// exist with appPass.
	ServerPort int
	// Servers replaces the shard's servers list (a TOML array), for tests with replicas.
	Servers string
	// Pool holds extra [pools.app] lines.
	Pool string
	// Shards, when set, replaces the [pools.app.shards.0] section (for sharding tests).
	Shards string
	// Admin replaces the [general] lines admin_username = "admin", admin_password = "admin-secret".
	Admin string
	// Pools, when set, replaces everything after [general]: the test writes its own pools.
	Pools string
}

func (pc poolConfig) toml(port int, socketDir string) string {
	if pc.Mode == "" {
		pc.Mode = "transaction"
	}
	if pc.PoolSize == 0 {
		pc.PoolSize = 5
	}
	if pc.ServerPort == 0 {
		pc.ServerPort = pg.Port
	}
	if pc.Servers == "" {
		pc.Servers = fmt.Sprintf(`[["127.0.0.1", %d, "primary"]]`, pc.ServerPort)
	}
	if pc.Pools != "" {
		return fmt.Sprintf(`[general]
host = "127.0.0.1"
port = %d
unix_socket_dir = %q
admin_username = "admin"
admin_password = "admin-secret"
%s

%s`, port, socketDir, pc.General, pc.Pools)
	}
	password := appPass
	if pc.PasswordOverride != "" {
		password = pc.PasswordOverride
	}
	admin := "admin_username = \"admin\"\nadmin_password = \"admin-secret\""
	if pc.Admin != "" {
		admin = pc.Admin
	}
	return fmt.Sprintf(`[general]
host = "127.0.0.1"
port = %d
unix_socket_dir = %q
%s
%s

[pools.app]
pool_mode = %q
%s

[pools.app.users.0]
username = %q
password = %q
pool_size = %d
%s

%s`, port, socketDir, admin, pc.General, pc.Mode, pc.Pool, appUser, password, pc.PoolSize, pc.User, pc.shards())
}

func (pc poolConfig) shards() string {
	if pc.Shards != "" {
		return pc.Shards
	}
	return fmt.Sprintf("[pools.app.shards.0]\ndatabase = %q\nservers = %s\n", appDB, pc.Servers)
}

// Sluice is a running sluice, in this process or as a child process.
type Sluice struct {
	Port      int
	SocketDir string
	CfgPath   string
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the child process has exited
	stop      func()
	Log       *syncLog // the child process's stdout and stderr
}

// syncLog collects a child process's output; it may be read while the process still writes.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSluice runs sluice in this test's process with the configuration pc and stops it when the
// test ends.
func startSluice(t testing.TB, pc poolConfig) *Sluice {
	t.Helper()
	s := newSluice(t, pc)
	cfg, _, err := config.Load(s.CfgPath)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { done <- sluice.Run(ctx, cfg, log) }()
	s.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			t.Errorf("sluice did not stop")
		}
	}
	t.Cleanup(s.Stop)
	s.waitReady(t)
	return s
}

// startSluiceProcess runs the sluice binary as a child process.
func startSluiceProcess(t testing.TB, pc poolConfig) *Sluice {
	t.Helper()
	return startBinary(t, sluiceBin, pc)
}

// startBinary runs bin, a build of sluice (or of a custom binary that calls sluice.Main), as a
// child process.
func startBinary(t testing.TB, bin string, pc poolConfig) *Sluice {
	t.Helper()
	s := newSluice(t, pc)
	s.Log = &syncLog{}
	s.cmd = exec.Command(bin, "-c", s.CfgPath)
	s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	s.stop = func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(90 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	t.Cleanup(s.Stop)
	s.waitReady(t)
	return s
}

func newSluice(t testing.TB, pc poolConfig) *Sluice {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Sluice{Port: port, SocketDir: dir, CfgPath: filepath.Join(dir, "sluice.toml")}
	if err := os.WriteFile(s.CfgPath, []byte(pc.toml(port, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// Stop stops sluice; a second call does nothing.
func (s *Sluice) Stop() {
	if s.stop != nil {
		f := s.stop
		s.stop = nil
		f()
	}
}

// Rewrite replaces the configuration file (for reload tests).
func (s *Sluice) Rewrite(t testing.TB, pc poolConfig) {
	t.Helper()
	if err := os.WriteFile(s.CfgPath, []byte(pc.toml(s.Port, s.SocketDir)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *Sluice) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice did not listen on %s: %v", s.Addr(), err)
		}
		if s.exited != nil {
			select {
			case <-s.exited:
				t.Fatalf("sluice exited: %s", s.Log)
			default:
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Signal sends sig to a sluice started by startSluiceProcess.
func (s *Sluice) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal sluice: %v", err)
	}
}

// Exited is closed when a sluice started by startSluiceProcess has exited; ExitCode is valid then.
func (s *Sluice) Exited() <-chan struct{} { return s.exited }

// ExitCode is the exit code of a sluice process that has exited.
func (s *Sluice) ExitCode() int { <-s.exited; return s.cmd.ProcessState.ExitCode() }

// Addr is sluice's TCP address.
func (s *Sluice) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// DSN is a libpq keyword/value connection string to sluice as the app user.
func (s *Sluice) DSN() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable", s.Port, appUser, appPass, appDB)
}

// URL is the same as a postgres:// URL.
func (s *Sluice) URL() string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", appUser, appPass, s.Port, appDB)
}

// connect opens a pgx connection through sluice; it is closed when the test ends.
func connect(t testing.TB, s *Sluice) *pgx.Conn {
	t.Helper()
	return connectConfig(t, s, nil)
}

// connectConfig opens a pgx connection through sluice after letting edit change its
// configuration; it is closed when the test ends.
func connectConfig(t testing.TB, s *Sluice, edit func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through sluice: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// direct opens a pgx connection straight to pg as the superuser.
func direct(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.URL(appDB, pgtest.SuperUser, pgtest.SuperPassword))
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// checkFor polls check until it returns nil or timeout passes.
func checkFor(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// tool returns the path of a PostgreSQL client program (psql, pgbench).
func tool(t testing.TB, name string) string {
	t.Helper()
	dir, err := pgtest.BinDir()
	if err == nil {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run make deps", name)
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// serverBackends counts the server connections of the app user on pg, excluding this query's.
func serverBackends(t testing.TB) int {
	t.Helper()
	var n int
	err := direct(t).QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()", appUser).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
