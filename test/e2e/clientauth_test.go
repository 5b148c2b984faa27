package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// TestClientLoginMatrix is the login matrix of issue 3: psql (libpq), pgx and node-postgres
// each log in with md5 and with SCRAM, in plaintext and over TLS (SCRAM over TLS with channel
// binding required, so SCRAM-SHA-256-PLUS), and each gets 28P01 with a wrong password.
func TestClientLoginMatrix(t *testing.T) {
	node, nodeErr := exec.LookPath("node")
	if nodeErr == nil {
		ensureNodeModules(t)
	}
	ca, cert, key := testCerts(t)
	type attempt struct {
		Name     string `json:"name"`
		TLS      bool   `json:"tls"`
		Bind     bool   `json:"bind"`
		Password string `json:"password"`
		want     string // "ok" or "28P01"
	}
	for _, method := range []string{"md5", "scram-sha-256"} {
		t.Run(method, func(t *testing.T) {
			s := startSluice(t, poolConfig{General: tlsGeneral(cert, key, "prefer", fmt.Sprintf("auth_type = %q", method))})
			var attempts []attempt
			for _, tls := range []bool{false, true} {
				for _, pw := range []string{appPass, "wrong"} {
					a := attempt{TLS: tls, Bind: tls && method == "scram-sha-256", Password: pw, want: "ok"}
					if pw != appPass {
						a.want = "28P01"
					}
					a.Name = fmt.Sprintf("tls=%v bind=%v password=%s", a.TLS, a.Bind, pw)
					attempts = append(attempts, a)
				}
			}
			for _, a := range attempts {
				t.Run("pgx "+a.Name, func(t *testing.T) {
					u := fmt.Sprintf("postgres://%s:%s@localhost:%d/%s?sslmode=disable", appUser, a.Password, s.Port, appDB)
					if a.TLS {
						u = fmt.Sprintf("postgres://%s:%s@localhost:%d/%s?sslmode=verify-full&sslrootcert=%s", appUser, a.Password, s.Port, appDB, ca)
					}
					if a.Bind {
						u += "&channel_binding=require"
					}
					c, err := pgx.Connect(context.Background(), u)
					got := "ok"
					if err != nil {
						got = codeOf(err)
					} else {
						c.Close(context.Background())
					}
					if got != a.want {
						t.Fatalf("got %q (%v), want %s", got, err, a.want)
					}
				})
				t.Run("psql "+a.Name, func(t *testing.T) {
					dsn := fmt.Sprintf("host=localhost port=%d user=%s password=%s dbname=%s sslmode=disable", s.Port, appUser, a.Password, appDB)
					if a.TLS {
						dsn = fmt.Sprintf("host=localhost port=%d user=%s password=%s dbname=%s sslmode=verify-full sslrootcert=%s", s.Port, appUser, a.Password, appDB, ca)
					}
					if a.Bind {
						dsn += " channel_binding=require"
					}
					out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-c", "SELECT current_user", dsn).CombinedOutput()
					switch {
					case a.want == "ok" && (err != nil || strings.TrimSpace(string(out)) != appUser):
						t.Fatalf("psql: %s, %v", out, err)
					case a.want != "ok" && (err == nil || !strings.Contains(string(out), "password authentication failed")):
						t.Fatalf("psql with a wrong password: %s, %v", out, err)
					}
				})
			}
			t.Run("node-postgres", func(t *testing.T) {
				if nodeErr != nil {
					t.Skip("node is not installed: run make deps")
				}
				script := `const { Client } = require('pg');
const fs = require('fs');
(async () => {
  for (const a of JSON.parse(process.env.ATTEMPTS)) {
    const c = new Client({ host: 'localhost', port: +process.env.PORT, user: process.env.PGU, database: process.env.PGD,
      password: a.password, enableChannelBinding: a.bind,
      ssl: a.tls ? { ca: fs.readFileSync(process.env.CA) } : false });
    try {
      await c.connect();
      const r = await c.query('SELECT current_user AS u');
      console.log(a.name + ': ' + (r.rows[0].u === process.env.PGU ? 'ok' : 'user ' + r.rows[0].u));
      await c.end();
    } catch (e) {
      console.log(a.name + ': ' + (e.code || e.message));
    }
  }
})();`
				list, _ := json.Marshal(attempts)
				cmd := exec.Command(node, "-e", script)
				cmd.Dir = nodeDir
				cmd.Env = append(os.Environ(), "ATTEMPTS="+string(list), "PORT="+strconv.Itoa(s.Port),
					"PGU="+appUser, "PGD="+appDB, "CA="+ca)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("node: %v\n%s", err, out)
				}
				var want []string
				for _, a := range attempts {
					want = append(want, a.Name+": "+a.want)
				}
				if got := strings.TrimSpace(string(out)); got != strings.Join(want, "\n") {
					t.Fatalf("node-postgres printed:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
				}
			})
		})
	}
}

// TestClientSCRAMPasswordSASLprep checks passwords that SASLprep changes. Postgres hashes a
// SCRAM password's SASLprep (RFC 4013: NFKC, some characters mapped), and so do libpq and
// node-postgres when they prove it: sluice must derive the same secret from a plain password in
// its file, and log in to the server with the same form, or such a user cannot log in through it.
func TestClientSCRAMPasswordSASLprep(t *testing.T) {
	ctx := context.Background()
	const role = "sasl_user"
	db := direct(t)
	mustExec(t, db, "DROP ROLE IF EXISTS "+role)
	mustExec(t, db, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { _, _ = direct(t).Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	mustExec(t, db, "SET password_encryption = 'scram-sha-256'")
	setPassword := func(pw string) string {
		t.Helper()
		mustExec(t, db, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", role, strings.ReplaceAll(pw, "'", "''")))
		var stored string
		if err := db.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		return stored
	}
	// The secret Postgres stores, for passwords SASLprep changes and for those it gives up on
	// (then the password is hashed as it is).
	for _, pw := range []string{"plain", "IX-\u2168", "I\u00adX", "a\u00a0b", "cafe\u0301", "\u00aa",
		"\u0627\u0031", "a\u2028b\u2168", "a\u0221\u2168", "\u00ad\u034f"} {
		stored := setPassword(pw)
		v, err := auth.ParseVerifier(stored)
		if err != nil {
			t.Fatalf("%+q: %v", pw, err)
		}
		if got := auth.NewVerifier(pw, v.Salt, v.Iterations).String(); got != stored {
			t.Errorf("password %+q: sluice derives %s, Postgres stored %s", pw, got, stored)
		}
	}

	// Logins through sluice with such a password in the file, from libpq and node-postgres, with
	// the password as written and in its normalized form.
	const password = "IX-\u2168"
	setPassword(password)
	s := startSluice(t, poolConfig{Pools: fmt.Sprintf(`[pools.app]
[pools.app.users.0]
username = %q
password = %q
auth_type = "scram-sha-256"
pool_size = 2

[pools.app.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]
`, role, password, appDB, pg.Port)})
	for _, pw := range []string{password, "IX-IX"} {
		out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-c", "SELECT current_user",
			fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable password=%s", s.Port, role, appDB, pw)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != role {
			t.Errorf("psql with password %+q: %s, %v", pw, out, err)
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: run make deps")
	}
	ensureNodeModules(t)
	cmd := exec.Command(node, "-e", `const { Client } = require('pg');
(async () => {
  const c = new Client({ host: '127.0.0.1', port: +process.env.PORT, user: process.env.PGU,
    database: process.env.PGD, password: process.env.PW });
  await c.connect();
  console.log((await c.query('SELECT current_user AS u')).rows[0].u);
  await c.end();
})().catch((e) => { console.log(e.code || e.message); });`)
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(s.Port), "PGU="+role, "PGD="+appDB, "PW="+password)
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != role {
		t.Errorf("node-postgres with password %+q: %s, %v", password, out, err)
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
		{"PLUS without TLS", func(c *rawClient) {
			c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256-PLUS", Data: []byte("p=tls-server-end-point,,n=,r=abc")})
		}, "08P01"},
		{"SASLInitialResponse data shorter than its length", func(c *rawClient) {
			body := joinBytes([]byte("SCRAM-SHA-256\x00"), be32(100), []byte("n,,n=,r=abc"))
			c.write(joinBytes([]byte{'p'}, be32(uint32(4+len(body))), body))
		}, "08P01"},
		{"SASLInitialResponse without its length", func(c *rawClient) {
			c.write(joinBytes([]byte{'p'}, be32(4+14), []byte("SCRAM-SHA-256\x00")))
		}, "08P01"},
		{"oversized client-first", func(c *rawClient) {
			c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=" + strings.Repeat("a", 4000))})
		}, "08P01"},
		{"oversized client-final", func(c *rawClient) {
			c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdef")})
			if _, err := c.receive(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			c.send(&pgproto3.SASLResponse{Data: []byte("c=biws,r=abcdef,x=" + strings.Repeat("a", 4000) + ",p=AAAA")})
		}, "08P01"},
		{"a message larger than any password message", func(c *rawClient) {
			c.write(joinBytes([]byte{'p'}, be32(1<<20)))
		}, "08P01"},
		{"a query instead of the SASL response", func(c *rawClient) {
			c.send(&pgproto3.Query{String: "SELECT 1"})
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
	// Clients that stop half-way: after the initial response, and after the client-final
	// message, by leaving or by going silent until client_login_timeout.
	for _, stop := range []int{1, 2} {
		c := dialRaw(t, s)
		c.startup("user", appUser, "database", appDB)
		if _, err := c.receive(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdef")})
		if stop == 2 {
			if _, err := c.receive(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		c.conn.Close()
	}
	conn := connect(t, s)
	if _, err := conn.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("sluice after bad SCRAM input: %v", err)
	}
	quiet := startSluice(t, poolConfig{General: "auth_type = \"scram-sha-256\"\nclient_login_timeout = 300"})
	c := dialRaw(t, quiet)
	c.startup("user", appUser, "database", appDB)
	if _, err := c.receive(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdef")})
	if _, err := c.receive(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.expectClosed(5 * time.Second) // silent after server-first: the login timeout ends it
	selectOne(t, quiet)
}

// TestClientSCRAMPlusBadInput sends SCRAM-SHA-256-PLUS exchanges over TLS that must fail: binding
// data of another certificate, and a client that claims the server cannot bind (a downgrade,
// since sluice offered PLUS). A real PLUS exchange works on the same connection setup.
func TestClientSCRAMPlusBadInput(t *testing.T) {
	ca, cert, key := testCerts(t)
	s := startSluice(t, poolConfig{General: tlsGeneral(cert, key, "require", `auth_type = "scram-sha-256"`)})
	run := func(t *testing.T, cbind []byte, canBind bool) error {
		c := dialRawTLS(t, s, ca)
		c.startup("user", appUser, "database", appDB)
		m, err := c.receive(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if sasl, ok := m.(*pgproto3.AuthenticationSASL); !ok || !slices.Equal(sasl.AuthMechanisms, []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}) {
			t.Fatalf("over TLS sluice asked for %T %+v, want SCRAM-SHA-256-PLUS and SCRAM-SHA-256", m, m)
		}
		conv := auth.NewClientConversation(auth.ClientSecret{Password: appPass}, rand.Reader)
		conv.SetChannelBinding(cbind, canBind)
		first, _ := conv.First()
		c.send(&pgproto3.SASLInitialResponse{AuthMechanism: conv.Mechanism(), Data: first})
		m, err = c.receive(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			return &pgconn.PgError{Severity: e.Severity, Code: e.Code, Message: e.Message}
		}
		final, err := conv.Final(m.(*pgproto3.AuthenticationSASLContinue).Data)
		if err != nil {
			t.Fatal(err)
		}
		c.send(&pgproto3.SASLResponse{Data: final})
		m, err = c.receive(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			return &pgconn.PgError{Severity: m.Severity, Code: m.Code, Message: m.Message}
		case *pgproto3.AuthenticationSASLFinal:
			return conv.Verify(m.Data)
		}
		t.Fatalf("got %T", m)
		return nil
	}
	right := serverEndPoint(t, cert)
	if err := run(t, right, true); err != nil {
		t.Fatalf("PLUS with the right binding: %v", err)
	}
	if err := run(t, make([]byte, len(right)), true); codeOf(err) != "08P01" {
		t.Fatalf("PLUS with another certificate's binding: %v, want 08P01", err)
	}
	if err := run(t, nil, true); codeOf(err) != "08P01" {
		t.Fatalf("client says the server cannot bind: %v, want 08P01", err)
	}
	if err := run(t, nil, false); err != nil {
		t.Fatalf("plain SCRAM over TLS from a client that cannot bind: %v", err)
	}
	if err := run(t, right, true); err != nil {
		t.Fatalf("sluice after bad PLUS exchanges: %v", err)
	}
}

// dialRawTLS is dialRaw over TLS, trusting the CA at caPath.
func dialRawTLS(t testing.TB, s *Sluice, caPath string) *rawClient {
	t.Helper()
	c := dialRaw(t, s)
	c.write(joinBytes(be32(8), be32(80877103)))
	var b [1]byte
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c.conn, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest: %q, %v", b[0], err)
	}
	pem, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tc := tls.Client(c.conn, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, conn: tc, fe: pgproto3.NewFrontend(tc, tc)}
}

// serverEndPoint is the tls-server-end-point binding of the certificate in the PEM file.
func serverEndPoint(t testing.TB, certPath string) []byte {
	t.Helper()
	b, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := auth.TLSServerEndPoint(cert)
	if err != nil {
		t.Fatal(err)
	}
	return cb
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
