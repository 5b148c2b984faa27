package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/internal/auth"
)

// TestClientSCRAM logs clients in to sluice with SCRAM-SHA-256, from a plain password in the file
// and from a SCRAM verifier (no plain password for the client side), with pgx and psql; a wrong
// password and an unknown user both get 28P01.
func TestClientSCRAM(t *testing.T) {
	verifier := auth.NewVerifier(appPass, []byte("sluice-test-salt"), 4096).String()
	cases := []struct {
		name string
		pc   poolConfig
	}{
		{"plain password, general auth_type", poolConfig{General: `auth_type = "scram-sha-256"`}},
		{"plain password, user auth_type", poolConfig{User: `auth_type = "scram-sha-256"`}},
		// The server still needs the real password: the verifier cannot log in to Postgres.
		{"verifier in the file", poolConfig{User: fmt.Sprintf("server_password = %q", appPass), PasswordOverride: verifier}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s := startSluice(t, c.pc)

			raw := dialRaw(t, s)
			raw.startup("user", appUser, "database", appDB)
			if m, err := raw.receive(5 * time.Second); err != nil {
				t.Fatal(err)
			} else if sasl, ok := m.(*pgproto3.AuthenticationSASL); !ok || len(sasl.AuthMechanisms) != 1 || sasl.AuthMechanisms[0] != "SCRAM-SHA-256" {
				t.Fatalf("sluice asked for %T %+v, want SASL with SCRAM-SHA-256", m, m)
			}

			conn := connect(t, s)
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != appUser {
				t.Fatalf("pgx over SCRAM: %q, %v", user, err)
			}

			out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-c", "SELECT 42",
				fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s require_auth=scram-sha-256",
					s.Port, appUser, appPass, appDB)).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "42" {
				// require_auth needs libpq 16; an older psql still logs in, only without the check.
				if !strings.Contains(string(out), "require_auth") {
					t.Fatalf("psql over SCRAM: %s, %v", out, err)
				}
				out, err = exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-c", "SELECT 42",
					fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s", s.Port, appUser, appPass, appDB)).CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "42" {
					t.Fatalf("psql over SCRAM: %s, %v", out, err)
				}
			}

			for _, bad := range []struct{ user, password string }{{appUser, "wrong"}, {"nobody", appPass}} {
				_, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", bad.user, bad.password, s.Port, appDB))
				if code := codeOf(err); code != "28P01" {
					t.Errorf("user %q password %q: %v, want 28P01", bad.user, bad.password, err)
				}
			}
		})
	}
}

// TestClientSCRAMWithNodePostgres logs node-postgres in with SCRAM.
func TestClientSCRAMWithNodePostgres(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: run make deps")
	}
	s := startSluice(t, poolConfig{General: `auth_type = "scram-sha-256"`})
	script := `const { Client } = require('pg');
(async () => {
  const c = new Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  const r = await c.query('SELECT current_user AS u');
  console.log(r.rows[0].u);
  await c.end();
})().catch((e) => { console.error(e.code || e.message); process.exit(1); });`
	cmd := exec.Command(node, "-e", script)
	cmd.Dir = "../node"
	cmd.Env = append(os.Environ(), "DATABASE_URL="+s.URL())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != appUser {
		t.Fatalf("node-postgres over SCRAM: %s, %v", out, err)
	}
}

// TestClientSCRAMBadInput sends broken SASL messages: each gets a FATAL with the right SQLSTATE
// and sluice keeps serving.
func TestClientSCRAMBadInput(t *testing.T) {
	s := startSluice(t, poolConfig{General: `auth_type = "scram-sha-256"`})
	cases := []struct {
		name string
		send func(c *rawClient)
		code string
	}{
		{"unknown mechanism", func(c *rawClient) {
			c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-1", Data: []byte("n,,n=,r=abc")})
		}, "08P01"},
		{"garbage client-first", func(c *rawClient) {
			c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("nonsense")})
		}, "08P01"},
		{"channel binding requested without TLS", func(c *rawClient) {
			c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("p=tls-server-end-point,,n=,r=abc")})
		}, "08P01"},
		{"wrong nonce in client-final", func(c *rawClient) {
			c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdef")})
			if _, err := c.receive(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			c.send(&pgproto3.SASLResponse{Data: []byte("c=biws,r=not-the-nonce,p=AAAA")})
		}, "08P01"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.startup("user", appUser, "database", appDB)
			if _, err := c.receive(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			tc.send(c)
			m, err := c.receive(5 * time.Second)
			if err != nil {
				t.Fatalf("want FATAL %s, got %v", tc.code, err)
			}
			if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Severity != "FATAL" || e.Code != tc.code {
				t.Fatalf("got %T %+v, want FATAL %s", m, m, tc.code)
			}
		})
	}
	conn := connect(t, s)
	if _, err := conn.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("sluice after bad SCRAM input: %v", err)
	}
}

// TestFailedLoginIsDelayed checks that a wrong password is answered only after a delay, for md5
// and SCRAM alike, and that a right one is not delayed.
func TestFailedLoginIsDelayed(t *testing.T) {
	for _, method := range []string{"md5", "scram-sha-256"} {
		t.Run(method, func(t *testing.T) {
			ctx := context.Background()
			s := startSluice(t, poolConfig{General: fmt.Sprintf("auth_type = %q", method)})
			start := time.Now()
			_, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:wrong@127.0.0.1:%d/%s?sslmode=disable", appUser, s.Port, appDB))
			if took := time.Since(start); codeOf(err) != "28P01" || took < 50*time.Millisecond {
				t.Fatalf("wrong password: %v after %s, want 28P01 after at least 50ms", err, took)
			}
			start = time.Now()
			connect(t, s)
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("right password took %s", took)
			}
		})
	}
}

// TestHBARules runs sluice with an hba_file: a rule's method is the login method, reject and no
// match refuse with 28000 (before the database is even looked up), and a Unix-socket rule
// applies only to socket connections.
func TestHBARules(t *testing.T) {
	dir := t.TempDir()
	hba := filepath.Join(dir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte(`
local  all    all                  trust
host   all    blocked 127.0.0.1/32 reject
host   app    app     127.0.0.1/32 scram-sha-256
host   nosuch all     127.0.0.1/32 md5
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSluice(t, poolConfig{General: fmt.Sprintf("hba_file = %q", hba)})
	ctx := context.Background()

	raw := dialRaw(t, s)
	raw.startup("user", appUser, "database", appDB)
	if m, err := raw.receive(5 * time.Second); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("the scram-sha-256 rule: sluice asked for %T", m)
	}
	if _, err := connect(t, s).Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("login under the scram-sha-256 rule: %v", err)
	}

	for _, c := range []struct{ name, user, db, code string }{
		{"reject", "blocked", appDB, "28000"},
		{"no rule for the database", appUser, "other", "28000"},
		{"a rule, then an unknown database", appUser, "nosuch", "3D000"},
	} {
		_, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", c.user, appPass, s.Port, c.db))
		if code := codeOf(err); code != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}

	// The socket rule trusts: no password needed there.
	sc, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.SocketDir, s.Port, appUser, appDB))
	if err != nil {
		t.Fatalf("Unix socket under the local trust rule: %v", err)
	}
	sc.Close(ctx)
}
