package classify

import (
	"slices"
	"testing"
)

func TestMaySet(t *testing.T) {
	cases := []struct {
		q    string
		want bool
	}{
		{"SET search_path TO a", true},
		{"  /* c */ -- x\n reset all", true},
		{"set", true},
		{"SELECT 1", false},
		{"UPDATE t SET a = 1", false},
		{"SETTINGS", false},
		{"BEGIN; SET work_mem = '1MB'; COMMIT", true},
		{"SELECT ';set'; SELECT 1", false},
		{`SELECT 1 AS "x;set"`, false},
		{"SELECT $$;set$$", false},
		{"SELECT 1; /* ; */ RESET work_mem", true},
		{"SELECT 1;\n-- ;\nSET x = 1", true},
	}
	for _, c := range cases {
		if got := MaySet([]byte(c.q)); got != c.want {
			t.Errorf("MaySet(%q) = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestSettings(t *testing.T) {
	p := NewSettingsParser(100, 0)
	cases := []struct {
		q    string
		want []Setting
	}{
		{`SET search_path TO a, "B c"`, []Setting{{SettingValue, "search_path", `SET "search_path" TO 'a', 'B c'`}}},
		{`set session Statement_Timeout = '5s'`, []Setting{{SettingValue, "statement_timeout", `SET "statement_timeout" TO '5s'`}}},
		{`SET LOCAL work_mem = '1MB'`, []Setting{{SettingTransient, "work_mem", ""}}},
		{`SET ROLE bob`, []Setting{{SettingNotCarried, "role", ""}}},
		{`SET SESSION AUTHORIZATION bob`, []Setting{{SettingNotCarried, "session_authorization", ""}}},
		{`SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`, []Setting{{SettingTransient, "transaction", ""}}},
		{`SET work_mem TO DEFAULT; RESET lock_timeout; RESET ALL`, []Setting{
			{SettingReset, "work_mem", ""}, {SettingReset, "lock_timeout", ""}, {SettingResetAll, "", ""}}},
		{`BEGIN; SELECT 1; SET TIME ZONE 'UTC'; COMMIT`, []Setting{{SettingValue, "timezone", `SET "timezone" TO 'UTC'`}}},
		{`SET lock_timeout = 5000; SET application_name = 'a\\b''c'`, []Setting{
			{SettingValue, "lock_timeout", `SET "lock_timeout" TO 5000`},
			{SettingValue, "application_name", `SET "application_name" TO E'a\\\\b''c'`}}},
		{`SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE`, []Setting{{SettingNotCarried, "timezone", ""}}},
		{`SELECT 1`, nil},
	}
	for _, c := range cases {
		for range 2 { // the second time from the cache
			got, ok := p.Settings([]byte(c.q))
			if !ok {
				t.Fatalf("Settings(%q): not ok", c.q)
			}
			if len(got) != len(c.want) {
				t.Fatalf("Settings(%q) = %+v, want %+v", c.q, got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("Settings(%q)[%d] = %+v, want %+v", c.q, i, got[i], c.want[i])
				}
			}
		}
	}
	if _, ok := p.Settings([]byte("SET search_path TO")); ok {
		t.Error("a text the parser rejects must not be ok")
	}
}

func TestMayCopy(t *testing.T) {
	for q, want := range map[string]bool{
		"RESET ALL; COPY t FROM STDIN": true,
		"copy t to stdout":             true,
		"RESET ALL; SELECT 'copy'":     false,
		"COPYRIGHT":                    false,
	} {
		if got := MayCopy([]byte(q)); got != want {
			t.Errorf("MayCopy(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestResetsTakesDiscardAllAsResetAll(t *testing.T) {
	cases := []struct {
		q     string
		may   bool
		kinds []SettingKind
	}{
		{"DISCARD ALL", true, []SettingKind{SettingResetAll}},
		{"/* c */ discard all; SET datestyle = iso", true, []SettingKind{SettingResetAll, SettingValue}},
		{"SET datestyle = iso; DISCARD ALL", true, []SettingKind{SettingValue, SettingResetAll}},
		{"DISCARD TEMP", true, nil},
		{"SELECT 'discard all'", false, nil},
		{"DISCARDS", false, nil},
	}
	for _, c := range cases {
		if got := MayDiscardAll([]byte(c.q)); got != c.may {
			t.Errorf("MayDiscardAll(%q) = %v, want %v", c.q, got, c.may)
		}
		if !c.may {
			continue
		}
		sets, ok := Resets([]byte(c.q), 0)
		if !ok {
			t.Errorf("Resets(%q): not parsed", c.q)
			continue
		}
		var kinds []SettingKind
		for _, s := range sets {
			kinds = append(kinds, s.Kind)
		}
		if !slices.Equal(kinds, c.kinds) {
			t.Errorf("Resets(%q) kinds = %v, want %v", c.q, kinds, c.kinds)
		}
	}
}
