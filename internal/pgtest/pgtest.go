// Package pgtest starts real PostgreSQL clusters, streaming replicas and Redis servers for tests and
// demos, each on a free loopback port in its own directory under os.TempDir().
//
// Every server started by this process is recorded, so Cleanup (called by Main after the tests, or
// on SIGINT and SIGTERM) stops it and removes its directory. A directory's name carries the id of
// the process that created it; a server whose process is gone (a crashed or killed test binary) is
// stopped and its directory removed the next time this package starts a server, in any process.
//
// PostgreSQL refuses to run as root. When the process is root, servers run as the operating
// system user "postgres" (created with useradd if it does not exist) and their directories are
// owned by that user.
package pgtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// SuperUser is the bootstrap superuser of every cluster.
	SuperUser = "postgres"
	// SuperPassword is SuperUser's password, needed for TCP connections unless Options.Auth is
	// "trust". Connections through the Unix socket (Exec, Connect) need no password.
	SuperPassword = "postgres"
)

const (
	// dirPrefix starts the name of every directory this package creates in os.TempDir(); it is
	// followed by the creating process's id, then "-".
	dirPrefix = "sluice-pgtest-"
	// serverOSUser runs Postgres when this process is root.
	serverOSUser = "postgres"
	// startTimeout bounds each wait for a server to accept connections, or for a replica to stream.
	startTimeout = 60 * time.Second
	// commandTimeout bounds each initdb, pg_ctl and pg_basebackup run.
	commandTimeout = 2 * time.Minute
	// portAttempts is how many free ports a first start tries before giving up on collisions.
	portAttempts = 5
)

// errPortInUse reports that a server could not bind its port because something took it between
// FreePort and the server's bind; the caller picks another port.
var errPortInUse = errors.New("port already in use")

// errExited reports that a server process is gone while it was awaited; waiting longer cannot help.
var errExited = errors.New("server exited")

// errClosed is returned by starts after Main's signal handler cleaned up.
var errClosed = errors.New("pgtest: shutting down, no new servers")

// instance is a started server whose directory Cleanup must remove.
type instance interface {
	// destroy stops the server if it runs and removes its directory. It is safe to call twice.
	destroy() error
}

// registry is every server this process started and has not destroyed yet. It is the package's
// one mutable global: Cleanup and the signal handler must reach servers that tests lost track of.
var registry struct {
	mu      sync.Mutex
	servers []instance
	closed  bool      // set when a signal cleaned up: nothing may start after that
	swept   sync.Once // leftovers of dead processes are swept once per process
}

func register(s instance) error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.closed {
		return errClosed
	}
	registry.servers = append(registry.servers, s)
	return nil
}

func unregister(s instance) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	for i, r := range registry.servers {
		if r == s {
			registry.servers = append(registry.servers[:i], registry.servers[i+1:]...)
			return
		}
	}
}

// Cleanup stops every server this process started and has not stopped yet, and removes their
// directories. Errors are written to standard error: Cleanup runs at the end of a process, where
// nobody is left to handle them. Servers may be started again afterwards.
func Cleanup() {
	if err := cleanup(false); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: cleanup: %v\n", err)
	}
}

// cleanup destroys all registered servers concurrently; final forbids later starts, for a process
// that is about to exit on a signal while tests may still be starting servers.
func cleanup(final bool) error {
	registry.mu.Lock()
	servers := append([]instance(nil), registry.servers...)
	if final {
		registry.closed = true
	}
	registry.mu.Unlock()

	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.destroy()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Main runs a test binary whose tests use this package; call it from TestMain. It runs setup (which
// may be nil, and typically starts the servers the tests share), then the tests, then Cleanup, and
// exits with the tests' status. On SIGINT or SIGTERM it cleans up and exits at once.
//
//	func TestMain(m *testing.M) { pgtest.Main(m, setup) }
func Main(m *testing.M, setup func() error) {
	stop := CleanupOnSignal()
	code := run(m, setup)
	Cleanup()
	stop()
	os.Exit(code)
}

func run(m *testing.M, setup func() error) int {
	if setup != nil {
		if err := setup(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: setup: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// CleanupOnSignal makes the first SIGINT or SIGTERM stop every server (as Cleanup does) and exit
// the process with status 128+signal. Call the returned function to stop listening. Main does
// this itself; a program that waits for its own signals should not use it.
func CleanupOnSignal() (stop func()) {
	sigs := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "pgtest: %v: stopping servers\n", sig)
			if err := cleanup(true); err != nil {
				fmt.Fprintf(os.Stderr, "pgtest: cleanup: %v\n", err)
			}
			code := 1
			if s, ok := sig.(syscall.Signal); ok {
				code = 128 + int(s)
			}
			os.Exit(code)
		case <-done:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
		})
	}
}

// BinDir returns the directory of the PostgreSQL server binaries: $SLUICE_PG_BIN if set, else the
// newest /usr/lib/postgresql/<version>/bin that holds initdb (Debian's layout), else the directory
// of initdb on $PATH.
func BinDir() (string, error) {
	if dir := os.Getenv("SLUICE_PG_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("pgtest: SLUICE_PG_BIN=%s: %w", dir, err)
		}
		return dir, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestVersion := "", -1.0
	for _, m := range matches {
		dir := filepath.Dir(m)
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err == nil && v > bestVersion {
			best, bestVersion = dir, v
		}
	}
	if best != "" {
		return best, nil
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path), nil
	}
	return "", errors.New("pgtest: no initdb under /usr/lib/postgresql/*/bin nor on $PATH (run make deps)")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another process can take it
// before the caller binds it; the starts in this package retry with another port when that happens.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	return port, nil
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// makeDir creates a server's directory, named after the process and the server, owned by cred's
// user when cred is not nil. It sweeps the leftovers of dead processes first, once per process.
func makeDir(name string, cred *syscall.Credential) (string, error) {
	registry.swept.Do(sweepLeftovers)
	name = unsafeNameChars.ReplaceAllString(name, "_")
	if len(name) > 24 {
		name = name[:24]
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-%s-", dirPrefix, os.Getpid(), name))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("pgtest: %w", err)
		}
	}
	return dir, nil
}

// sweepLeftovers stops the servers in directories made by processes that no longer run, and
// removes those directories. Directories of live processes (concurrent test runs) are left alone.
func sweepLeftovers() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), dirPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		owner, err := strconv.Atoi(pidText)
		if !ok || err != nil || owner == os.Getpid() || processAlive(owner) {
			continue
		}
		killByPidFile(filepath.Join(dir, "data", "postmaster.pid"), "postgres", syscall.SIGQUIT)
		killByPidFile(filepath.Join(dir, "redis.pid"), "redis", syscall.SIGKILL)
		os.RemoveAll(dir)
	}
}

// processAlive reports whether a process with this id exists and is not a zombie (a container's
// init may never reap the daemons that pg_ctl detaches).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		_, noProc := os.Stat("/proc/self/stat")
		return noProc != nil // without /proc, kill's answer is all there is
	}
	// The state follows the parenthesized command name, which may itself hold ") ".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// killByPidFile sends sig to the process named in the first line of pidFile if its command name
// contains comm, then waits up to five seconds for it to exit before killing it outright.
func killByPidFile(pidFile, comm string, sig syscall.Signal) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 1 || !processAlive(pid) {
		return
	}
	if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && !strings.Contains(string(c), comm) {
		return // the id was reused by an unrelated process
	}
	syscall.Kill(pid, sig)
	if waitFor(5*time.Second, func() error {
		if processAlive(pid) {
			return errors.New("still running")
		}
		return nil
	}) != nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// serverCredential returns the credential to run Postgres with: nil when this process is not
// root, else the "postgres" user's, creating that user if it does not exist.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serverOSUser)
	if err != nil {
		out, addErr := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", serverOSUser).CombinedOutput()
		// A concurrent process may have created the user first: look again either way.
		if u, err = user.Lookup(serverOSUser); err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs OS user %q: useradd: %v: %s",
				serverOSUser, addErr, out)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user %s uid %q: %w", serverOSUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user %s gid %q: %w", serverOSUser, u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// waitFor calls check until it returns nil or timeout has passed, pausing a little longer after
// each failure (10 ms doubling up to 200 ms). It returns check's last error, at once if that error
// is errExited: a server that exited will not become ready.
func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	pause := 10 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return nil
		}
		if errors.Is(err, errExited) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %v: %w", timeout, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// removeDir removes a server's directory, trying again for a moment while processes that were
// just killed may still be writing into it.
func removeDir(dir string) error {
	err := waitFor(2*time.Second, func() error { return os.RemoveAll(dir) })
	if err != nil {
		return fmt.Errorf("pgtest: remove %s: %w", dir, err)
	}
	return nil
}

// fileSize returns the size of path, or 0 if it does not exist, to mark where a log's new lines start.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns up to the last 40 lines of path written after offset, for error messages.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxBytes = 16 << 10
	if size := fileSize(path); size-offset > maxBytes {
		offset = size - maxBytes
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// withLog appends the tail of a server log to err, which is what explains a failed start.
func withLog(err error, path string, offset int64) error {
	return fmt.Errorf("%w\n--- %s ---\n%s", err, path, logTail(path, offset))
}

// sortedKeys returns m's keys in order, so written configuration files are deterministic.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
