package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodeDir holds the node-postgres client script and its package files.
var nodeDir = filepath.Join("..", "node")

// nodeChecks are the checks test/node/clients.js runs, in its order.
var nodeChecks = []string{
	"simple query",
	"parameterized query",
	"named prepared statements",
	"named statement that fails to prepare",
	"transaction",
	"error",
	"pool of clients",
}

// TestNodePostgres runs test/node/clients.js, which uses node-postgres (the pg package) through
// sluice in transaction mode: simple and parameterized queries, named prepared statements shared
// and clashing between clients, a transaction, errors, and a pg.Pool.
func TestNodePostgres(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 3})
	runNode(t, "clients.js", []string{"SLUICE_URL=" + s.URL()}, nodeChecks)
}

// postgresJSChecks are the checks test/node/postgresjs.js runs, in its order.
var postgresJSChecks = []string{
	"pipelined queries, prepared",
	"pipelined queries, unnamed",
	"errors in a pipeline",
	"transactions and savepoints",
	"cursors",
	"copy",
	"simple protocol and describe",
	"cancel",
	"statement recreated after a schema change",
	"clients sharing a small pool",
	"session state",
}

// TestPostgresJSTransactionMode runs test/node/postgresjs.js, which uses postgres.js (the
// postgres package, its own wire protocol) through sluice in transaction mode with two servers
// for up to thirteen client connections: queries pipelined with named and with unnamed
// statements, errors in a pipeline, transactions with savepoints, cursors read with Execute row
// limits, COPY both ways and aborted, cancel of a running query, a statement prepared again
// after a schema change, and the refusal of LISTEN. postgres.js's own suite gives the direct
// run's results through sluice but for what transaction pooling cannot keep (README).
func TestPostgresJSTransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	runNode(t, "postgresjs.js", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=transaction"}, postgresJSChecks)
}

// TestPostgresJSSessionMode runs the same script in session mode, with a server for each of its
// connections, where LISTEN works.
func TestPostgresJSSessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 16})
	runNode(t, "postgresjs.js", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=session"}, postgresJSChecks)
}

// runNode runs a script of test/node with env added to the environment, and checks that it
// printed "ok <check>" for each of checks, then "all ok".
func runNode(t *testing.T, script string, env []string, checks []string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the node-postgres and postgres.js tests need Node.js 18 or later")
	}
	ensureNodeModules(t)
	runScript(t, node, nodeDir, script, env, checks)
}

// ensureNodeModules installs test/node's packages from its lock file when they are missing
// (scripts/test.sh normally has done it).
func ensureNodeModules(t *testing.T) {
	t.Helper()
	if fileExists(filepath.Join(nodeDir, "node_modules", "pg", "package.json")) &&
		fileExists(filepath.Join(nodeDir, "node_modules", "postgres", "package.json")) {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("test/node/node_modules is missing and npm is not installed: run npm ci in test/node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = nodeDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in test/node: %v\n%s", err, out)
	}
}
