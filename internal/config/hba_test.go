package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeHBA(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pg_hba.conf")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHBAMatch(t *testing.T) {
	rules, err := LoadHBA(writeHBA(t, `
# TYPE     DATABASE   USER        ADDRESS          METHOD
local      all        all                          trust
hostssl    secure     all         0.0.0.0/0        scram-sha-256
host       all        blocked     all              reject
host       app,"My DB" alice,bob  10.0.0.0/8       md5
host       app        all         192.168.1.0 255.255.255.0  scram-sha-256
hostnossl  reports    all         127.0.0.1/32     trust
host       all        all         ::1/128          md5
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		local, tls bool
		db, user   string
		addr       string
		method     string // "" means no rule matches
		line       int
	}{
		{"unix socket", true, false, "app", "anyone", "", "trust", 3},
		{"hostssl needs TLS", false, false, "secure", "carol", "10.1.2.3", "", 0},
		{"hostssl with TLS", false, true, "secure", "carol", "10.1.2.3", "scram-sha-256", 4},
		{"reject for any address", false, false, "app", "blocked", "10.1.2.3", "reject", 5},
		{"CIDR and user list", false, false, "app", "bob", "10.200.0.1", "md5", 6},
		{"quoted database name", false, false, "My DB", "alice", "10.0.0.1", "md5", 6},
		{"outside the CIDR", false, false, "app", "bob", "11.0.0.1", "", 0},
		{"address and mask", false, false, "app", "dave", "192.168.1.77", "scram-sha-256", 7},
		{"hostnossl on loopback", false, false, "reports", "eve", "127.0.0.1", "trust", 8},
		{"hostnossl not with TLS", false, true, "reports", "eve", "127.0.0.1", "", 0},
		{"IPv6 loopback", false, false, "other", "frank", "::1", "md5", 9},
		{"no rule matches", false, false, "other", "frank", "127.0.0.2", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ip net.IP
			if c.addr != "" {
				ip = net.ParseIP(c.addr)
			}
			r, ok := MatchHBA(rules, c.local, c.tls, c.db, c.user, ip)
			switch {
			case c.method == "" && ok:
				t.Fatalf("rule on line %d matched, want none", r.Line)
			case c.method != "" && !ok:
				t.Fatalf("no rule matched, want %s on line %d", c.method, c.line)
			case ok && (r.Method != c.method || r.Line != c.line):
				t.Fatalf("matched %s on line %d, want %s on line %d", r.Method, r.Line, c.method, c.line)
			}
		})
	}
}

func TestHBAErrorsNameTheLine(t *testing.T) {
	cases := []struct{ line, want string }{
		{"host all all example.com md5", "host names are not supported"},
		{"host all +admins 10.0.0.0/8 md5", `user "+admins" is not supported`},
		{"host all all 10.0.0.0/8 password", `unsupported authentication method "password"`},
		{"host all all 10.0.0.0/8 md5 clientcert=verify-ca", "options are not supported"},
		{"hostgssenc all all 10.0.0.0/8 md5", "unsupported connection type"},
		{"host all all 10.0.0.1 md5", `invalid mask "md5"`},
		{"host all all", "too few fields"},
		{"host all all 10.0.0.0/33 md5", "invalid address"},
	}
	for _, c := range cases {
		p := writeHBA(t, "# comment\n"+c.line+"\n")
		_, err := LoadHBA(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "pg_hba.conf:2:") {
			t.Errorf("%q: got %v, want an error at line 2 saying %q", c.line, err, c.want)
		}
	}
}

func TestHBAFileInConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hba.conf"), []byte("host all all 127.0.0.1/32 md5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sluice.toml")
	text := "[general]\nhba_file = \"hba.conf\"\n[pools.app.users.0]\nusername = \"app\"\npassword = \"x\"\n[pools.app.shards.0]\ndatabase = \"app\"\nservers = [[\"127.0.0.1\", 5432, \"primary\"]]\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(cfg)
	if err != nil || len(c.General.HBA) != 1 || c.General.HBA[0].Method != AuthMD5 {
		t.Fatalf("Load with hba_file: %v, %+v", err, c)
	}
	if err := os.WriteFile(filepath.Join(dir, "hba.conf"), []byte("host all all nowhere md5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "hba.conf:1:") {
		t.Fatalf("a bad hba file: %v, want its line in the error", err)
	}
}

func TestHBAInlineRulesComeFirst(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hba.conf"), []byte("host all all 0.0.0.0/0 md5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sluice.toml")
	text := `[general]
hba = ["host all blocked 0.0.0.0/0 reject", "local all all trust"]
hba_file = "hba.conf"
[pools.app.users.0]
username = "app"
password = "x"
[pools.app.shards.0]
database = "app"
servers = [["127.0.0.1", 5432, "primary"]]
`
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, r := range c.General.HBA {
		methods = append(methods, r.Method)
	}
	if strings.Join(methods, ",") != "reject,trust,md5" {
		t.Fatalf("rules %v, want the inline ones first: reject,trust,md5", methods)
	}
	bad := strings.Replace(text, `"local all all trust"`, `"host all all nowhere md5"`, 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "rule 2") || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("a bad inline rule: %v, want its line and number", err)
	}
}
