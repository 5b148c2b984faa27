package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// phpDir holds the PHP client scripts.
var phpDir = filepath.Join("..", "php")

// debianPHP is Debian's PHP command line, the one that loads the pdo_pgsql and pgsql extensions
// of the php-pgsql package scripts/deps.sh installs.
const debianPHP = "/usr/bin/php"

// pdoChecks are the checks test/php/pdo_clients.php runs, in its order.
var pdoChecks = []string{
	"prepared statements",
	"transactions",
	"errors",
	"lastInsertId",
	"copy",
	"fetch types",
}

// pgsqlChecks are the checks test/php/pgsql_clients.php runs, in its order.
var pgsqlChecks = []string{
	"pg_query and pg_query_params",
	"pg_prepare and pg_execute",
	"async queries",
	"copy",
	"transactions and errors",
	"cancel",
}

// TestPHPPDOTransactionMode runs test/php/pdo_clients.php through sluice in transaction mode with
// two servers for up to seven clients: server-side prepared statements (ATTR_EMULATE_PREPARES
// false: pdo_stmt_NNNNNNNN, numbered per connection, deallocated with the SQL command DEALLOCATE),
// PDO transactions, errors with their SQLSTATE, lastInsertId and RETURNING, pgsqlCopyFromArray
// and pgsqlCopyToArray, and fetched types.
func TestPHPPDOTransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	runPHP(t, "pdo_clients.php", "pdo_pgsql", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=transaction"}, pdoChecks)
}

// TestPHPPDOSessionMode runs the same script in session mode.
func TestPHPPDOSessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 10})
	runPHP(t, "pdo_clients.php", "pdo_pgsql", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=session"}, pdoChecks)
}

// TestPHPPgsqlTransactionMode runs test/php/pgsql_clients.php (the procedural pgsql extension)
// through sluice in transaction mode with two servers for up to six clients: pg_query and
// pg_query_params, pg_prepare and pg_execute with names shared by clients and DEALLOCATE by SQL,
// pg_send_query and friends, COPY, transactions and errors, and pg_cancel_query.
func TestPHPPgsqlTransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	runPHP(t, "pgsql_clients.php", "pgsql", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=transaction"}, pgsqlChecks)
}

// TestPHPPgsqlSessionMode runs the same script in session mode.
func TestPHPPgsqlSessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 10})
	runPHP(t, "pgsql_clients.php", "pgsql", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=session"}, pgsqlChecks)
}

// runPHP runs a script of test/php with Debian's php, skipping when php or the extension is
// missing (scripts/deps.sh installs them).
func runPHP(t *testing.T, script, extension string, env []string, checks []string) {
	t.Helper()
	if !fileExists(debianPHP) {
		t.Skipf("%s is not installed: run make deps (Debian's php-cli and php-pgsql)", debianPHP)
	}
	if out, err := exec.Command(debianPHP, "-r", `exit(extension_loaded("`+extension+`") ? 0 : 1);`).CombinedOutput(); err != nil {
		t.Skipf("%s has no %s extension (run make deps: Debian's php-pgsql): %s", debianPHP, extension, strings.TrimSpace(string(out)))
	}
	runScript(t, debianPHP, phpDir, script, env, checks)
}
