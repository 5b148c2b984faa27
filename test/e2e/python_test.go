package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pythonDir holds the Python client scripts.
var pythonDir = filepath.Join("..", "python")

// debianPython is Debian's interpreter, the one that sees the python3-asyncpg, python3-psycopg and
// python3-psycopg2 packages scripts/deps.sh installs (a python3 earlier on PATH, such as pyenv's,
// may not).
const debianPython = "/usr/bin/python3"

// asyncpgChecks are the checks test/python/asyncpg_clients.py runs, in its order.
var asyncpgChecks = []string{
	"fetch and execute",
	"executemany",
	"pool of connections",
	"transaction",
	"savepoint",
	"error in a transaction",
	"copy",
	"prepared statements",
	"type introspection",
	"timeout cancels the query",
	"cached statement invalidated by a schema change",
}

// TestAsyncpgTransactionMode runs test/python/asyncpg_clients.py through sluice in transaction
// mode with three servers for up to a dozen clients: asyncpg with its default statement cache
// (named statements prepared on one server and bound on others), executemany, a pool,
// transactions and savepoints, COPY both ways, cursors, type introspection, a timeout's cancel
// request and a statement made stale by ALTER TABLE.
func TestAsyncpgTransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 3})
	runPython(t, "asyncpg_clients.py", "asyncpg", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=transaction"}, asyncpgChecks)
}

// TestAsyncpgSessionMode runs the same script in session mode.
func TestAsyncpgSessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 40})
	runPython(t, "asyncpg_clients.py", "asyncpg", []string{"SLUICE_URL=" + s.URL()}, asyncpgChecks)
}

// runPython runs a script of test/python with Debian's python3 and env added to the environment,
// and checks that it printed "ok <check>" for each of checks, then "all ok". It skips when python3
// or the module is missing (scripts/deps.sh installs them).
func runPython(t *testing.T, script, module string, env []string, checks []string) {
	t.Helper()
	if !fileExists(debianPython) {
		t.Skipf("%s is not installed: run make deps (Debian's python3 and python3-%s)", debianPython, module)
	}
	if out, err := exec.Command(debianPython, "-c", "import "+module).CombinedOutput(); err != nil {
		t.Skipf("%s cannot import %s (run make deps: Debian's python3-%s): %s", debianPython, module, module, strings.TrimSpace(string(out)))
	}
	runScript(t, debianPython, pythonDir, script, append(env, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"), checks)
}

// psycopgChecks are the checks test/python/psycopg_clients.py runs, in its order.
var psycopgChecks = []string{
	"execute with parameters",
	"prepared statements",
	"pipeline",
	"copy",
	"server-side cursor",
	"binary results",
	"autocommit and transactions",
	"executemany",
	"errors",
	"cancel",
}

// TestPsycopgTransactionMode runs test/python/psycopg_clients.py (psycopg 3) through sluice in
// transaction mode with three servers for up to eight clients: server-side parameters, named
// statements past prepare_threshold and their DEALLOCATE beyond prepared_max, pipelines with
// errors, COPY both ways, a server-side cursor, binary results, transactions, executemany and
// conn.cancel().
func TestPsycopgTransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 3})
	runPython(t, "psycopg_clients.py", "psycopg", []string{"SLUICE_URL=" + s.URL()}, psycopgChecks)
}

// TestPsycopgSessionMode runs the same script in session mode.
func TestPsycopgSessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 20})
	runPython(t, "psycopg_clients.py", "psycopg", []string{"SLUICE_URL=" + s.URL()}, psycopgChecks)
}

// psycopg2Checks are the checks test/python/psycopg2_clients.py runs, in its order.
var psycopg2Checks = []string{
	"execute",
	"executemany",
	"copy_expert",
	"transaction and error",
	"cancel",
}

// TestPsycopg2TransactionMode runs test/python/psycopg2_clients.py through sluice in transaction
// mode with two servers: parameters interpolated by the client, executemany, execute_values and
// execute_batch, copy_expert both ways, transactions and errors, a named cursor, autocommit and
// cancel().
func TestPsycopg2TransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	runPython(t, "psycopg2_clients.py", "psycopg2", []string{"SLUICE_URL=" + s.URL()}, psycopg2Checks)
}

// TestPsycopg2SessionMode runs the same script in session mode.
func TestPsycopg2SessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 10})
	runPython(t, "psycopg2_clients.py", "psycopg2", []string{"SLUICE_URL=" + s.URL()}, psycopg2Checks)
}
