package frontend

import "testing"

func TestContainsListen(t *testing.T) {
	cases := []struct {
		q    string
		want bool
	}{
		{"LISTEN x", true},
		{"  listen x", true},
		{"/* c */ -- c\n LISTEN x", true},
		{"SELECT 1; LISTEN x", true},
		{"BEGIN; LISTEN x; COMMIT", true},
		{"(LISTEN x)", true},
		{"SELECT 'LISTEN x'", false},
		{"SELECT 'a;LISTEN x'", false},
		{"SELECT $$;LISTEN x$$", false},
		{"SELECT $t$;LISTEN x$t$", false},
		{`SELECT ";LISTEN"`, false},
		{"SELECT listen FROM t", false},
		{"SELECT 1 -- ; LISTEN x", false},
		{"SELECT 1 /* ; LISTEN /* x */ ; LISTEN */", false},
		{"SELECT E'\\';LISTEN x'", false},
		{"UNLISTEN x", false},
		{"NOTIFY listen", false},
		{"listener", false},
		{"SELECT 1; listener()", false},
		{"", false},
	}
	for _, c := range cases {
		if got := containsListen([]byte(c.q)); got != c.want {
			t.Errorf("containsListen(%q) = %v, want %v", c.q, got, c.want)
		}
	}
}

func FuzzContainsListen(f *testing.F) {
	f.Add("SELECT $a$ x $a$; LISTEN y")
	f.Add("/* /* */")
	f.Fuzz(func(t *testing.T, q string) { containsListen([]byte(q)) })
}
