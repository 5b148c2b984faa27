package classify

import "testing"

func TestSessionEffects(t *testing.T) {
	tests := []struct {
		q    string
		want SessionEffect
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 5", EffectNone},
		{"SELECT temp FROM weather WHERE temp > 20", EffectNone},
		{"CREATE TABLE temperatures (temp int)", EffectNone},
		{"INSERT INTO t VALUES ('create temp table x')", EffectNone},
		{`SELECT "pg_advisory_lock" FROM t`, EffectNone},
		{"SELECT pg_advisory_xact_lock(1)", EffectNone},
		{"SELECT pg_advisory_unlock(1)", EffectNone},
		{"-- create temp table x\nSELECT 1", EffectNone},
		{"DECLARE c CURSOR FOR SELECT 1", EffectNone},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", EffectNone},
		{"EXECUTE foo", EffectNone},
		{"DEALLOCATE foo", EffectNone},
		{"SELECT 1 AS prepare", EffectNone},
		{"INSERT INTO temp VALUES (1)", EffectNone},
		{"insert into temp (a) select 1", EffectNone},
		{"SELECT * INTO TEMP t FROM a; INSERT INTO temp VALUES (1)", EffectObjects},
		{"WITH x AS (SELECT 1) SELECT * INTO TEMP t FROM x", EffectObjects},
		{"CREATE TEMP TABLE x (a int)", EffectObjects},
		{"create temporary table x (a int)", EffectObjects},
		{"CREATE GLOBAL TEMPORARY TABLE x (a int)", EffectObjects},
		{"CREATE LOCAL TEMP TABLE x (a int)", EffectObjects},
		{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", EffectObjects},
		{"CREATE TEMP SEQUENCE s", EffectObjects},
		{"SELECT * INTO TEMP t FROM accounts", EffectObjects},
		{"SELECT * INTO TEMPORARY TABLE t FROM accounts", EffectObjects},
		{"CREATE TABLE pg_temp.x (a int)", EffectObjects},
		{"BEGIN; CREATE /* c */ TEMP TABLE x (a int); COMMIT", EffectObjects},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", EffectObjects},
		{"SELECT pg_advisory_lock(5)", EffectObjects},
		{"SELECT PG_TRY_ADVISORY_LOCK_SHARED(5)", EffectObjects},
		{"select pg_catalog.pg_advisory_lock(1, 2)", EffectObjects},
		{"PREPARE foo AS SELECT 1", EffectObjects},
		{"SELECT 1; prepare foo (int) AS SELECT $1", EffectObjects},
		{"DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$", EffectObjects},
		{"DO $body$ BEGIN CREATE TEMP TABLE x (a int); END $body$", EffectObjects},
		{"SELECT set_config('work_mem', '77kB', false)", EffectSettings},
		{"SELECT pg_catalog.SET_CONFIG('search_path', 'a', false), 1", EffectSettings},
		{"SELECT set_config('a.b', 'c', false); SELECT pg_advisory_lock(1)", EffectObjects},
		// Unterminated texts: what was read so far counts.
		{"SELECT pg_advisory_lock(1), 'abc", EffectObjects},
		{"SELECT 'abc", EffectNone},
		{`SELECT "abc`, EffectNone},
		{"SELECT $tag$ create temp", EffectObjects}, // no closing tag: read as plain text
		{"", EffectNone},
	}
	for _, tt := range tests {
		if got := SessionEffects([]byte(tt.q)); got != tt.want {
			t.Errorf("SessionEffects(%q) = %d, want %d", tt.q, got, tt.want)
		}
	}
}

func FuzzSessionEffects(f *testing.F) {
	for _, q := range []string{"CREATE TEMP TABLE x", "DO $a$ select pg_advisory_lock(1) $a$", "SELECT 'x''y', \"q\" -- c\n/* d */ ;prepare"} {
		f.Add([]byte(q))
	}
	f.Fuzz(func(t *testing.T, q []byte) {
		SessionEffects(q)
	})
}

func BenchmarkSessionEffects(b *testing.B) {
	q := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;")
	for b.Loop() {
		SessionEffects(q)
	}
}
