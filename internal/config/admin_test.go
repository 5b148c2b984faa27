package config

import (
	"strings"
	"testing"
)

// TestAdminKeys checks the admin console's keys: the password's form must suit admin_auth_type,
// a console needs a password unless it trusts, and a pool the console hides is a warning.
func TestAdminKeys(t *testing.T) {
	const pool = "\n[pools.app.users.0]\nusername = \"a\"\npassword = \"p\"\n[pools.app.shards.0]\ndatabase = \"app\"\nservers = [[\"h\", 5432, \"primary\"]]\n"
	cases := []struct {
		name, general, extra string
		wantErr, wantWarn    string
		wantAuth             string
	}{
		{name: "console off", general: ``, wantAuth: AuthMD5},
		{name: "md5 by default", general: `admin_username = "admin"` + "\n" + `admin_password = "x"`, wantAuth: AuthMD5},
		{name: "SCRAM verifier picks SCRAM", general: `admin_username = "admin"` + "\n" + `admin_password = "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"`, wantAuth: AuthSCRAM},
		{name: "scram-sha-256", general: `admin_username = "admin"` + "\n" + `admin_password = "x"` + "\n" + `admin_auth_type = "scram-sha-256"`, wantAuth: AuthSCRAM},
		{name: "trust needs no password", general: `admin_username = "admin"` + "\n" + `admin_auth_type = "trust"`, wantAuth: AuthTrust},
		{name: "no password", general: `admin_username = "admin"`, wantErr: "the admin console needs a password"},
		{name: "bad auth type", general: `admin_username = "admin"` + "\n" + `admin_password = "x"` + "\n" + `admin_auth_type = "cert"`, wantErr: "general.admin_auth_type: must be"},
		{name: "md5 hash with scram", general: `admin_username = "admin"` + "\n" + `admin_password = "md5` + strings.Repeat("0", 32) + `"` + "\n" + `admin_auth_type = "scram-sha-256"`, wantErr: "cannot check a password stored as an md5 hash"},
		{name: "verifier with md5", general: `admin_username = "admin"` + "\n" + `admin_password = "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"` + "\n" + `admin_auth_type = "md5"`, wantErr: "md5 cannot check a password stored as a SCRAM verifier"},
		{name: "pool hidden by the console", general: `admin_username = "admin"` + "\n" + `admin_password = "x"`,
			extra: strings.ReplaceAll(pool, "app", "pgbouncer"), wantWarn: "database pgbouncer is the admin console's", wantAuth: AuthMD5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := "[general]\n" + c.general + "\n" + pool + c.extra
			cfg, warns, err := parse("admin.toml", []byte(file))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.wantWarn != "" {
				found := false
				for _, w := range warns {
					found = found || strings.Contains(w.String(), c.wantWarn)
				}
				if !found {
					t.Errorf("warnings %v, want %q", warns, c.wantWarn)
				}
			}
			if got := cfg.General.AdminAuth(); got != c.wantAuth {
				t.Errorf("AdminAuth() = %q, want %q", got, c.wantAuth)
			}
			for _, db := range AdminDatabases {
				if got := cfg.General.IsAdminDatabase(db); got != (cfg.General.AdminUsername != "") {
					t.Errorf("IsAdminDatabase(%q) = %v", db, got)
				}
			}
			if cfg.General.IsAdminDatabase("app") {
				t.Error("IsAdminDatabase(app) = true")
			}
		})
	}
}
