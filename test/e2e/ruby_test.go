package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rubyDir holds the Ruby client scripts.
var rubyDir = filepath.Join("..", "ruby")

// debianRuby is Debian's interpreter, the one that sees the ruby-pg package scripts/deps.sh
// installs (a ruby earlier on PATH, such as rbenv's, may not).
const debianRuby = "/usr/bin/ruby"

// rubyPGChecks are the checks test/ruby/pg_clients.rb runs, in its order.
var rubyPGChecks = []string{
	"exec and exec_params",
	"prepared statements",
	"async and pipeline",
	"copy",
	"transactions and errors",
	"cancel",
	"single row mode",
	"type maps",
	"connection settings",
	"listen and notify",
}

// TestRubyPGTransactionMode runs test/ruby/pg_clients.rb (the pg gem, libpq) through sluice in
// transaction mode with two servers for up to seven clients: exec and exec_params with text and
// binary results, Rails-style statement names (a1, a2) prepared by several clients for different
// SQL and deallocated with the SQL command DEALLOCATE, send_query and pipeline mode, copy_data both
// ways, transactions with savepoints and errors, conn.cancel, single-row mode, the basic type maps
// (which read pg_type), Rails' SET commands at connect followed across servers (search_path only
// where servers report it, PostgreSQL 18 and later) and the refusal of LISTEN.
func TestRubyPGTransactionMode(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 2})
	runRuby(t, "pg_clients.rb", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=transaction"}, rubyPGChecks)
}

// TestRubyPGSessionMode runs the same script in session mode, where LISTEN and NOTIFY work.
func TestRubyPGSessionMode(t *testing.T) {
	s := startPooler(t, poolConfig{Mode: "session", PoolSize: 10})
	runRuby(t, "pg_clients.rb", []string{"SLUICE_URL=" + s.URL(), "SLUICE_MODE=session"}, rubyPGChecks)
}

// runRuby runs a script of test/ruby with Debian's ruby, skipping when ruby or the pg gem is
// missing (scripts/deps.sh installs them).
func runRuby(t *testing.T, script string, env []string, checks []string) {
	t.Helper()
	if !fileExists(debianRuby) {
		t.Skipf("%s is not installed: run make deps (Debian's ruby and ruby-pg)", debianRuby)
	}
	if out, err := exec.Command(debianRuby, "-e", `require "pg"`).CombinedOutput(); err != nil {
		t.Skipf("%s cannot require pg (run make deps: Debian's ruby-pg): %s", debianRuby, strings.TrimSpace(string(out)))
	}
	runScript(t, debianRuby, rubyDir, script, env, checks)
}
