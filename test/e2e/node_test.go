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

// runNode runs a script of test/node with env added to the environment, and checks that it
// printed "ok <check>" for each of checks, then "all ok".
func runNode(t *testing.T, script string, env []string, checks []string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the node-postgres tests need Node.js 18 or later")
	}
	ensureNodeModules(t)
	runScript(t, node, nodeDir, script, env, checks)
}

// ensureNodeModules installs test/node's packages from its lock file when they are missing
// (scripts/test.sh normally has done it).
func ensureNodeModules(t *testing.T) {
	t.Helper()
	if fileExists(filepath.Join(nodeDir, "node_modules", "pg", "package.json")) {
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
