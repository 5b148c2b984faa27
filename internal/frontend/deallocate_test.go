package frontend

import "testing"

func TestDeallocateName(t *testing.T) {
	cases := []struct {
		q    string
		name string
		ok   bool
	}{
		{"DEALLOCATE _pg3_0", "_pg3_0", true},
		{"deallocate prepare a1;", "a1", true},
		{"  DEALLOCATE\tPREPARE  Stmt$1 ; ", "stmt$1", true},
		{`DEALLOCATE "Mixed ""Case"""`, `Mixed "Case"`, true},
		{"DEALLOCATE _pg3_0\x00", "_pg3_0", true},
		{"DEALLOCATE prepare", "prepare", true},
		{"DEALLOCATE ALL", "", false},
		{"DEALLOCATE PREPARE all;", "", false},
		{"DEALLOCATE", "", false},
		{`DEALLOCATE ""`, "", false},
		{`DEALLOCATE "open`, "", false},
		{"DEALLOCATE a; SELECT 1", "", false},
		{"DEALLOCATE a b", "", false},
		{"DEALLOCATE 1a", "", false},
		{"/* c */ DEALLOCATE a", "", false},
		{"DEALLOCATEa", "", false},
		{"SELECT 'DEALLOCATE a'", "", false},
	}
	for _, c := range cases {
		name, ok := deallocateName([]byte(c.q))
		if name != c.name || ok != c.ok {
			t.Errorf("deallocateName(%q) = %q, %v; want %q, %v", c.q, name, ok, c.name, c.ok)
		}
	}
}

func TestMayDropStatements(t *testing.T) {
	for q, want := range map[string]bool{
		"DEALLOCATE ALL":                             true,
		"deallocate prepare all;":                    true,
		"SELECT 1; DISCARD ALL":                      true,
		"discard all":                                true,
		"DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$": true,
		"SELECT 1":                                   false,
		"SELECT deallocated FROM t":                  true, // errs on the side of yes
		"SELECT 1 AS dealloc, 'disc'":                false,
	} {
		if got := mayDropStatements([]byte(q)); got != want {
			t.Errorf("mayDropStatements(%q) = %v, want %v", q, got, want)
		}
	}
}
