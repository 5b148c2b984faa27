package sqlfacts

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, text           string
		kinds, stmts, tables []string
		funcs                []string
		copyProgram          bool
	}{
		{name: "select", text: "SELECT * FROM users u JOIN public.orders o ON o.uid = u.id",
			kinds: []string{"SelectStmt"}, stmts: []string{"SelectStmt"}, tables: []string{"users", "public.orders"}},
		{name: "folding", text: `SELECT * FROM PG_USER, "Mixed"`, kinds: []string{"SelectStmt"},
			stmts: []string{"SelectStmt"}, tables: []string{"pg_user", "Mixed"}},
		{name: "cte is not a table", text: "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
			kinds: []string{"SelectStmt"}, stmts: []string{"SelectStmt", "DeleteStmt"}, tables: []string{"t"}},
		{name: "functions", text: "SELECT pg_read_file('/etc/passwd'), pg_catalog.pg_ls_dir('.'), lower(x) FROM f(1)",
			kinds: []string{"SelectStmt"}, stmts: []string{"SelectStmt"},
			funcs: []string{"pg_read_file", "pg_catalog.pg_ls_dir", "lower", "f"}},
		{name: "copy to program", text: "COPY t TO PROGRAM 'cat > /tmp/x'", kinds: []string{"CopyStmt"},
			stmts: []string{"CopyStmt"}, tables: []string{"t"}, copyProgram: true},
		{name: "copy from program", text: "copy t from program 'curl x'", kinds: []string{"CopyStmt"},
			stmts: []string{"CopyStmt"}, tables: []string{"t"}, copyProgram: true},
		{name: "copy stdout", text: "COPY (SELECT 1) TO STDOUT", kinds: []string{"CopyStmt"},
			stmts: []string{"CopyStmt", "SelectStmt"}},
		{name: "several", text: "BEGIN; EXECUTE p(1); COMMIT", kinds: []string{"TransactionStmt", "ExecuteStmt", "TransactionStmt"},
			stmts: []string{"TransactionStmt", "ExecuteStmt"}},
		{name: "explain analyze", text: "EXPLAIN ANALYZE DELETE FROM t", kinds: []string{"ExplainStmt"},
			stmts: []string{"ExplainStmt", "DeleteStmt"}, tables: []string{"t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Parse(tc.text, DefaultMaxLength)
			if f.Err != nil {
				t.Fatal(f.Err)
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"kinds", f.Kinds, tc.kinds}, {"statements", f.Statements, tc.stmts}, {"tables", f.Tables, tc.tables}, {"functions", f.Functions, tc.funcs}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %q; want %q", c.what, c.got, c.want)
				}
			}
			if f.CopyProgram != tc.copyProgram {
				t.Errorf("CopyProgram = %v", f.CopyProgram)
			}
		})
	}
}

func TestParseRefusesLongAndBadText(t *testing.T) {
	deep := "SELECT " + strings.Repeat("1+", 100_000) + "1"
	if f := New(0, 0).Get(deep); !errors.Is(f.Err, ErrTooLong) {
		t.Errorf("a 200 KB nested expression: %v; want ErrTooLong", f.Err)
	}
	if f := Parse("SELEC 1", DefaultMaxLength); f.Err == nil {
		t.Error("a syntax error parsed")
	}
	if f := Parse("SELECT 1\x00; DROP TABLE t", DefaultMaxLength); f.Err == nil {
		t.Error("a zero byte parsed")
	}
}

func TestCacheReturnsTheSameFacts(t *testing.T) {
	c := New(0, 3)
	a := c.Get("SELECT 1")
	if b := c.Get("SELECT 1"); a != b {
		t.Error("second Get parsed again")
	}
	for i := range 10 {
		c.Get("SELECT " + strings.Repeat("2", i+1))
	}
	if n := len(c.memo.m); n > 3 {
		t.Errorf("cache holds %d texts; bound 3", n)
	}
}

func TestMatchTable(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		want        bool
	}{
		{"pg_user", "pg_user", true},
		{"pg_user", "pg_catalog.pg_user", true},
		{"pg_catalog.pg_user", "pg_user", false},
		{"pg_catalog.pg_user", "pg_catalog.pg_user", true},
		{"users", "users_old", false},
		{"public.users", "app.users", false},
	} {
		if got := MatchTable(tc.name, tc.table); got != tc.want {
			t.Errorf("MatchTable(%q, %q) = %v", tc.name, tc.table, got)
		}
	}
}

func TestNormalize(t *testing.T) {
	a, ok := Normalize("SELECT current_database() AS a,\n  current_schemas(false)   AS b; -- DataGrip", DefaultMaxLength)
	b, ok2 := Normalize("select current_database() as a, current_schemas(false) as b", DefaultMaxLength)
	if !ok || !ok2 || a != b {
		t.Errorf("%q != %q", a, b)
	}
	if _, ok := Normalize("not sql", DefaultMaxLength); ok {
		t.Error("not sql normalized")
	}
}

func TestNodeNames(t *testing.T) {
	names := NodeNames()
	for _, want := range []string{"SelectStmt", "ExecuteStmt", "CopyStmt"} {
		if !slices.Contains(names, want) {
			t.Errorf("NodeNames lacks %s", want)
		}
	}
}
