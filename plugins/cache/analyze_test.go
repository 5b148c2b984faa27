package cache

import (
	"strconv"
	"testing"
	"time"

	"github.com/sluicepg/sluice/plugin"
)

// TestAnalyzeEligibility: what the text alone says about caching, writes and the session.
func TestAnalyzeEligibility(t *testing.T) {
	a := newAnalyzer(100)
	for _, tc := range []struct {
		text      string
		cacheable bool
		reads     int
		write     bool
		epoch     bool
		taint     string
	}{
		{text: "SELECT * FROM users WHERE id = 1", cacheable: true, reads: 1},
		{text: "SELECT u.name FROM app.users u JOIN orders o ON o.uid = u.id", cacheable: true, reads: 2},
		{text: "WITH x AS (SELECT * FROM t) SELECT * FROM x", cacheable: true, reads: 1},
		{text: "SELECT lower(name) FROM t", cacheable: true, reads: 1},
		{text: "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", write: true},
		{text: "SELECT * FROM t FOR UPDATE", write: true},
		{text: "SELECT * FROM t FOR SHARE", write: true},
		{text: "SELECT * INTO t2 FROM t", write: true},
		{text: "SELECT * INTO TEMP t2 FROM t", write: true, taint: "temporary table"},
		{text: "DECLARE c CURSOR FOR SELECT * FROM t"},
		{text: "SELECT now() FROM t", cacheable: true, reads: 1}, // the catalog refuses now()
		{text: "SELECT CURRENT_TIMESTAMP, * FROM t"},
		{text: "SELECT * FROM t WHERE d > 'now'::timestamptz"},
		{text: "SELECT * FROM t WHERE d > 'Today'"},
		{text: "SELECT 'users'::regclass FROM t"},
		{text: "SELECT * FROM t TABLESAMPLE SYSTEM (10)"},
		{text: "SELECT 1"},
		{text: "SELECT 1 FROM t; SELECT 2 FROM t"},
		{text: "INSERT INTO t SELECT * FROM s", write: true},
		{text: "UPDATE t SET a = 1 WHERE b BETWEEN 1 AND 9", write: true},
		{text: "DELETE FROM t WHERE a > 3", write: true},
		{text: "TRUNCATE t, s", write: true},
		{text: "COPY t FROM STDIN", write: true},
		{text: "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", write: true},
		{text: "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2", write: true},
		{text: "ALTER TABLE t ADD COLUMN c int", write: true, epoch: true},
		{text: "GRANT SELECT ON t TO bob", write: true, epoch: true},
		{text: "DO $$ BEGIN END $$", write: true, epoch: true},
		{text: "CALL p()", write: true, epoch: true},
		{text: "SELEC broken", write: true, epoch: true},
		{text: "SET ROLE bob", taint: "SET ROLE"},
		{text: "SET SESSION AUTHORIZATION bob", taint: "SET ROLE"},
		{text: "SET search_path TO x", taint: "SET search_path"},
		{text: "SET TimeZone = 'UTC'", taint: "SET timezone"},
		{text: "SET LOCAL TimeZone = 'UTC'"},
		{text: "SET application_name = 'x'"},
		{text: "SELECT set_config('TimeZone', 'UTC', false)", taint: "set_config", write: true},
		{text: "CREATE TEMP TABLE tt (a int)", write: true, epoch: true, taint: "temporary table"},
		{text: "/* sluice:nocache */ SELECT * FROM t", cacheable: true, reads: 1},
	} {
		an := a.analyze(tc.text)
		if got := an.why == ""; got != tc.cacheable {
			t.Errorf("%q: cacheable %v (%s), want %v", tc.text, got, an.why, tc.cacheable)
		}
		if tc.cacheable && len(an.reads) != tc.reads {
			t.Errorf("%q: reads %v, want %d", tc.text, an.reads, tc.reads)
		}
		if an.write != tc.write || an.epoch != tc.epoch {
			t.Errorf("%q: write %v epoch %v, want %v %v", tc.text, an.write, an.epoch, tc.write, tc.epoch)
		}
		if an.taint != tc.taint {
			t.Errorf("%q: taint %q, want %q", tc.text, an.taint, tc.taint)
		}
	}
}

func TestAnalyzeHints(t *testing.T) {
	a := newAnalyzer(10)
	an := a.analyze("/* sluice:cache ttl=5s */ SELECT * FROM t")
	if !an.hint || an.hintTTL != 5*time.Second || an.nocache {
		t.Errorf("cache hint: %+v", an)
	}
	if an := a.analyze("SELECT * FROM t /* sluice:nocache */"); !an.nocache {
		t.Errorf("nocache hint not seen")
	}
}

// TestDeriveKey: every part of the key changes it.
func TestDeriveKey(t *testing.T) {
	base := func() (*plugin.Query, string, string, []uint32, []int64) {
		return &plugin.Query{Client: &plugin.Client{Database: "app", User: "alice"}, Text: "SELECT * FROM t WHERE a = $1",
			Params: []plugin.Param{{Value: []byte("1")}}}, "TimeZone=UTC\x00", "e1", []uint32{10, 11}, []int64{1, 2}
	}
	var scratch []byte // reused, as a session reuses its own
	key := func(q *plugin.Query, set, ep string, oids []uint32, gens []int64) string {
		var sum [32]byte
		sum, scratch = deriveKey(scratch, "sys/app", q, set, ep, oids, gens, nil, nil)
		return string(sum[:])
	}
	q, set, ep, oids, gens := base()
	k0 := key(q, set, ep, oids, gens)
	if k := key(q, set, ep, oids, gens); k != k0 {
		t.Fatal("the same inputs gave two keys")
	}
	for name, change := range map[string]func(q *plugin.Query, set, ep *string, gens []int64){
		"user":     func(q *plugin.Query, _, _ *string, _ []int64) { q.Client.User = "bob" },
		"database": func(q *plugin.Query, _, _ *string, _ []int64) { q.Client.Database = "app2" },
		"settings": func(_ *plugin.Query, s, _ *string, _ []int64) { *s = "TimeZone=Europe/Paris\x00" },
		"text":     func(q *plugin.Query, _, _ *string, _ []int64) { q.Text += " " },
		"param":    func(q *plugin.Query, _, _ *string, _ []int64) { q.Params[0].Value = []byte("2") },
		"null":     func(q *plugin.Query, _, _ *string, _ []int64) { q.Params[0].Value = nil },
		"format":   func(q *plugin.Query, _, _ *string, _ []int64) { q.Params[0].Binary = true },
		"epoch":    func(_ *plugin.Query, _, e *string, _ []int64) { *e = "e2" },
		"gen":      func(_ *plugin.Query, _, _ *string, g []int64) { g[1]++ },
	} {
		q, set, ep, oids, gens := base()
		change(q, &set, &ep, gens)
		if k := key(q, set, ep, oids, gens); k == k0 {
			t.Errorf("changing the %s left the key unchanged", name)
		}
	}
}

// TestAnalyzeSharesNumberShapes: texts that differ only in their numbers share one analysis
// (one parse), texts whose strings or hints differ do not.
func TestAnalyzeSharesNumberShapes(t *testing.T) {
	a := newAnalyzer(100)
	first := a.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND d > '2024-01-01'")
	if first.why != "" {
		t.Fatalf("not cacheable: %s", first.why)
	}
	if again := a.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 99999 AND d > '2024-01-01'"); again != first {
		t.Errorf("a text that differs only in a number was analysed again")
	}
	if now := a.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND d > 'now'"); now.why == "" {
		t.Errorf("'now' took the analysis of another string: cacheable")
	}
	h5 := a.analyze("/* sluice:cache ttl=5s */ SELECT * FROM t WHERE id = 1")
	h30 := a.analyze("/* sluice:cache ttl=30s */ SELECT * FROM t WHERE id = 2")
	if h5.hintTTL != 5*time.Second || h30.hintTTL != 30*time.Second {
		t.Errorf("hint TTLs %v and %v, want 5s and 30s", h5.hintTTL, h30.hintTTL)
	}
}

// BenchmarkAnalyzeInlined: a point read with its key inlined, a new text each time (pgbench -S
// -M simple through the cache).
func BenchmarkAnalyzeInlined(b *testing.B) {
	a := newAnalyzer(10_000)
	texts := make([]string, 100_000)
	for i := range texts {
		texts[i] = "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i+1) + ";"
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.analyze(texts[i%len(texts)])
	}
}
