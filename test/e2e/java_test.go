package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// pgjdbcJar is Debian's PostgreSQL JDBC driver (package libpostgresql-jdbc-java, 42.5.x).
const pgjdbcJar = "/usr/share/java/postgresql.jar"

// javaSource is the program that drives pgjdbc: one file, compiled with javac, no build tool.
var javaSource = filepath.Join("..", "java", "Clients.java")

// jdbcChecks are the checks of test/java/Clients.java that hold in every pool mode, in order.
var jdbcChecks = []string{
	"prepared statements",
	"prepareThreshold=1",
	"prepareThreshold=-1 binary",
	"binaryTransfer=false",
	"preferQueryMode=simple",
	"preferQueryMode=extendedForPrepared",
	"preferQueryMode=extendedCacheEverything",
	"statement reprepared after DDL",
	"batch inserts",
	"batch inserts reWriteBatchedInserts",
	"batch error",
	"transactions",
	"autosave",
	"fetch size",
	"copy",
	"cancel",
	"query timeout",
	"metadata",
	"application name",
	"parameter status",
	"concurrent clients",
}

// TestJDBCTransactionMode runs pgjdbc through sluice in transaction mode with two servers for
// sixteen and more clients, so that servers change hands between the driver's transactions: its
// named statements (S_1, S_2, ... after prepareThreshold), binary transfer, batches, savepoints,
// cursors with a fetch size (named portals, Execute with a row limit), COPY, cancel requests and
// query timeouts, metadata, and settings carried from server to server.
func TestJDBCTransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "transaction", PoolSize: 2})
	runJava(t, s, "jdbc_tx", jdbcChecks)
}

// TestJDBCSessionMode runs the same checks through a session-mode pool, and a SET of a
// setting Postgres does not report.
func TestJDBCSessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 20})
	runJava(t, s, "jdbc_session", append(slices.Clone(jdbcChecks), "SET search_path stays with its client"))
}

// TestJDBCTransactionModeUnreportedSet: a SET of a setting Postgres does not report
// (search_path before Postgres 18, statement_timeout, ...) stays with its pgjdbc client in
// transaction mode: sluice sets it again on the client's next server (internal/frontend/settings.go).
func TestJDBCTransactionModeUnreportedSet(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "transaction", PoolSize: 2})
	runJava(t, s, "jdbc_tx_set", []string{"SET search_path stays with its client"})
}

var (
	javaOnce    sync.Once
	javaClasses string // the directory of the compiled classes
	javaErr     error
)

// compileJava compiles test/java/Clients.java once per test binary, or skips the test when the
// JDK or the driver is missing.
func compileJava(t *testing.T) (java, classes string) {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("java is not installed: the pgjdbc tests need a JDK 17 (Debian: default-jdk-headless) and libpostgresql-jdbc-java; run make deps")
	}
	javac, err := exec.LookPath("javac")
	if err != nil {
		t.Skip("javac is not installed: the pgjdbc tests need a JDK 17 (Debian: default-jdk-headless); run make deps")
	}
	if !fileExists(pgjdbcJar) {
		t.Skip(pgjdbcJar + " is missing: the pgjdbc tests need Debian's libpostgresql-jdbc-java; run make deps")
	}
	javaOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-e2e-java-")
		if err != nil {
			javaErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, javac, "-Xlint:all", "-Werror", "-d", dir, "-cp", pgjdbcJar, javaSource).CombinedOutput()
		if err != nil {
			javaErr = fmt.Errorf("javac %s: %v\n%s", javaSource, err, out)
			return
		}
		javaClasses = dir
	})
	if javaErr != nil {
		t.Fatal(javaErr)
	}
	return java, javaClasses
}

// runJava runs test/java/Clients.java's checks against s, with tables named after prefix, and
// checks that it printed "ok <check>" for each, then "all ok".
func runJava(t *testing.T, s *Sluice, prefix string, checks []string) {
	t.Helper()
	java, classes := compileJava(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args := append([]string{"-cp", classes + string(os.PathListSeparator) + pgjdbcJar, "Clients"}, checks...)
	cmd := exec.CommandContext(ctx, java, args...)
	cmd.Env = append(os.Environ(),
		"SLUICE_HOST=127.0.0.1",
		"SLUICE_PORT="+strconv.Itoa(s.Port),
		"SLUICE_USER="+appUser,
		"SLUICE_PASSWORD="+appPass,
		"SLUICE_DB="+appDB,
		"SLUICE_TABLE_PREFIX="+prefix,
		fmt.Sprintf("SLUICE_DIRECT_URL=jdbc:postgresql://127.0.0.1:%d/%s?user=%s&password=%s&sslmode=disable",
			pg.Port, appDB, pgtest.SuperUser, pgtest.SuperPassword),
	)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	want := make([]string, 0, len(checks)+1)
	for _, c := range checks {
		want = append(want, "ok "+c)
	}
	want = append(want, "all ok")
	got := strings.TrimSpace(string(out))
	if err != nil || got != strings.Join(want, "\n") {
		t.Fatalf("java Clients: %v\nprinted:\n%s\nwant:\n%s\nstderr:\n%s", err, out, strings.Join(want, "\n"), stderr.String())
	}
}
