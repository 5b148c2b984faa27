package classify

import "testing"

// TestShape: texts that differ only in literal values share a shape; anything else that differs
// keeps them apart, and texts where a literal can change the classification are not shaped.
func TestShape(t *testing.T) {
	same := [][2]string{
		{"SELECT v FROM t WHERE id = 1", "SELECT v FROM t WHERE id = 12345"},
		{"select * from t where a = 'x' and b = 2.5e-3", "select * from t where a = 'it''s' and b = 7"},
		{"INSERT INTO t VALUES (1, E'a\\'b', $$x$$)", "INSERT INTO t VALUES (2, E'zz', $$yyy$$)"},
		{"UPDATE t SET v = 'a' WHERE id = 3;", "UPDATE t SET v = 'bcd' WHERE id = 4;"},
		{"WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 2) SELECT * FROM x"},
	}
	for _, p := range same {
		a, oka := shape(nil, []byte(p[0]))
		b, okb := shape(nil, []byte(p[1]))
		if !oka || !okb || string(a) != string(b) {
			t.Errorf("%q and %q: shapes %q (%v) and %q (%v); want equal", p[0], p[1], a, oka, b, okb)
		}
	}
	different := [][2]string{
		{"SELECT v FROM t1 WHERE id = 1", "SELECT v FROM t2 WHERE id = 1"},
		{`SELECT "1" FROM t`, `SELECT "2" FROM t`},
		{"SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = $2"},
		{"SELECT 1 -- a\n", "SELECT 1 -- b\n"},
		{"SELECT nextval('a')", "SELECT currval('a')"},
	}
	for _, p := range different {
		a, _ := shape(nil, []byte(p[0]))
		b, _ := shape(nil, []byte(p[1]))
		if string(a) == string(b) {
			t.Errorf("%q and %q share the shape %q", p[0], p[1], a)
		}
	}
	for _, q := range []string{
		"SET default_transaction_read_only = 'on'",
		"EXPLAIN (ANALYZE 0) DELETE FROM t",
		"SELECT 1; SET transaction_read_only = 'on'",
		"SELECT 'unterminated",
		"BEGIN",
	} {
		if _, ok := shape(nil, []byte(q)); ok {
			t.Errorf("%q was shaped; a literal can decide its classification", q)
		}
	}
}

// TestNumberShape: texts that differ only in numbers share a number shape; texts whose strings
// differ do not (a caller may read them), and what shape refuses, NumberShape refuses too.
func TestNumberShape(t *testing.T) {
	same := [][2]string{
		{"SELECT v FROM t WHERE id = 1", "SELECT v FROM t WHERE id = 12345"},
		{"select * from t where a = 'x' and b = 2.5e-3", "select * from t where a = 'x' and b = 7"},
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 17;", "SELECT abalance FROM pgbench_accounts WHERE aid = 99999;"},
		{"INSERT INTO t VALUES (1, E'a\\'b', $$x$$)", "INSERT INTO t VALUES (2, E'a\\'b', $$x$$)"},
	}
	for _, p := range same {
		a, oka := NumberShape(nil, []byte(p[0]))
		b, okb := NumberShape(nil, []byte(p[1]))
		if !oka || !okb || string(a) != string(b) {
			t.Errorf("%q and %q: number shapes %q (%v) and %q (%v); want equal", p[0], p[1], a, oka, b, okb)
		}
	}
	different := [][2]string{
		{"SELECT * FROM t WHERE d > 'now'", "SELECT * FROM t WHERE d > '2024-01-01'"},
		{"SELECT * FROM t WHERE s = E'now'", "SELECT * FROM t WHERE s = E'x'"},
		{"SELECT $$now$$::timestamptz", "SELECT $$x$$::timestamptz"},
		{"SELECT v FROM t1 WHERE id = 1", "SELECT v FROM t2 WHERE id = 1"},
		{"SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = $2"},
	}
	for _, p := range different {
		a, _ := NumberShape(nil, []byte(p[0]))
		b, _ := NumberShape(nil, []byte(p[1]))
		if string(a) == string(b) {
			t.Errorf("%q and %q share the number shape %q", p[0], p[1], a)
		}
	}
	for _, q := range []string{"SET default_transaction_read_only = 'on'", "SELECT 1; SELECT 2", "SELECT 'unterminated", "BEGIN"} {
		if _, ok := NumberShape(nil, []byte(q)); ok {
			t.Errorf("%q was shaped", q)
		}
	}
	if a, _ := NumberShape(nil, []byte("SELECT 'it''s' || $q$x$q$ FROM t WHERE id = 4")); string(a) != "SELECT 'it''s' || $q$x$q$ FROM t WHERE id = \x00" {
		t.Errorf("number shape %q", a)
	}
}

// TestShapeLiterals: the literals' positions, in order, with the classifier's shape.
func TestShapeLiterals(t *testing.T) {
	q := "SELECT * FROM t WHERE id = 42 AND s = 'it''s' AND d = $d$x$d$ AND f = 1.5e3 AND p = $1"
	sh, lits, ok := ShapeLiterals(nil, nil, []byte(q))
	if want, _ := shape(nil, []byte(q)); !ok || string(sh) != string(want) {
		t.Fatalf("shape %q (%v), want %q", sh, ok, want)
	}
	var got []string
	for _, l := range lits {
		got = append(got, q[l.Start:l.End])
	}
	want := []string{"42", "'it''s'", "$d$x$d$", "1.5e3"}
	if len(got) != len(want) {
		t.Fatalf("literals %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("literal %d: %q, want %q", i, got[i], want[i])
		}
	}
	if _, _, ok := ShapeLiterals(nil, nil, []byte("SET x = 1")); ok {
		t.Errorf("SET was shaped")
	}
}
