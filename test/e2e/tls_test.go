package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// testCA is a throwaway certificate authority that issues certificates into a temp directory.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	Path string // the CA certificate, PEM
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{t: t, dir: t.TempDir()}
	ca.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ca.key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.Path = ca.write("ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(name, typ string, der []byte) string {
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatal(err)
	}
	return p
}

// issue returns the paths of a new certificate for cn and its key: a server certificate for
// localhost and 127.0.0.1, or a client certificate.
func (ca *testCA) issue(cn string, server bool) (cert, key string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.DNSNames, tmpl.IPAddresses = []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(k)
	name := fmt.Sprintf("%s-%d", cn, tmpl.SerialNumber)
	return ca.write(name+".pem", "CERTIFICATE", der), ca.write(name+".key", "EC PRIVATE KEY", keyDER)
}

// testCerts returns a CA and a server certificate for localhost signed by it.
func testCerts(t *testing.T) (ca, cert, key string) {
	c := newTestCA(t)
	cert, key = c.issue("localhost", true)
	return c.Path, cert, key
}

func tlsGeneral(cert, key, mode string, extra ...string) string {
	return fmt.Sprintf("tls_certificate = %q\ntls_private_key = %q\ntls_mode = %q\n%s", cert, key, mode, strings.Join(extra, "\n"))
}

// TestClientTLS connects over TLS with certificate verification (pgx and psql), checks that
// prefer still serves plaintext clients and require refuses them with 28000, and that hostssl
// rules match TLS clients only.
func TestClientTLS(t *testing.T) {
	ca, cert, key := testCerts(t)
	ctx := context.Background()
	url := func(s *Sluice, sslmode string) string {
		return fmt.Sprintf("postgres://%s:%s@localhost:%d/%s?sslmode=%s&sslrootcert=%s", appUser, appPass, s.Port, appDB, sslmode, ca)
	}

	t.Run("prefer", func(t *testing.T) {
		s := startSluice(t, poolConfig{General: tlsGeneral(cert, key, "prefer")})
		c, err := pgx.Connect(ctx, url(s, "verify-full"))
		if err != nil {
			t.Fatalf("TLS with verify-full: %v", err)
		}
		defer c.Close(ctx)
		if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
			t.Fatalf("the connection is %T, not TLS", c.PgConn().Conn())
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int", 7).Scan(&n); err != nil || n != 7 {
			t.Fatalf("query over TLS: %d, %v", n, err)
		}
		p, err := pgx.Connect(ctx, url(s, "disable"))
		if err != nil {
			t.Fatalf("plaintext under prefer: %v", err)
		}
		p.Close(ctx)
	})

	t.Run("require", func(t *testing.T) {
		s := startSluice(t, poolConfig{General: tlsGeneral(cert, key, "require")})
		if _, err := pgx.Connect(ctx, url(s, "disable")); codeOf(err) != "28000" {
			t.Fatalf("plaintext under require: %v, want 28000", err)
		}
		out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-c", "SELECT 42",
			fmt.Sprintf("host=localhost port=%d user=%s password=%s dbname=%s sslmode=verify-full sslrootcert=%s",
				s.Port, appUser, appPass, appDB, ca)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "42" {
			t.Fatalf("psql over TLS: %s, %v", out, err)
		}
	})

	t.Run("hostssl rules", func(t *testing.T) {
		s := startSluice(t, poolConfig{General: tlsGeneral(cert, key, "prefer",
			`hba = ["hostssl all all 127.0.0.1/32 scram-sha-256", "host all all 127.0.0.1/32 reject"]`)})
		c, err := pgx.Connect(ctx, url(s, "verify-full"))
		if err != nil {
			t.Fatalf("TLS client under a hostssl rule: %v", err)
		}
		c.Close(ctx)
		if _, err := pgx.Connect(ctx, url(s, "disable")); codeOf(err) != "28000" {
			t.Fatalf("plaintext client: %v, want 28000 from the reject rule", err)
		}
	})
}

// serverCertsForPostgres copies a server certificate and key where the postgres OS user can read
// them, with the permissions Postgres insists on for a key.
func serverCertsForPostgres(t *testing.T, cert, key string) (string, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sluice-e2e-pgtls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := []string{filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")}
	for i, src := range []string{cert, key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if u, err := user.Lookup("postgres"); err == nil {
				uid, _ := strconv.Atoi(u.Uid)
				gid, _ := strconv.Atoi(u.Gid)
				_ = os.Chown(out[i], uid, gid)
			}
		}
	}
	return out[0], out[1]
}

// TestServerTLS connects sluice to a Postgres that has TLS on: verify-full against the right CA
// works, and is refused against another CA; require works without a CA.
func TestServerTLS(t *testing.T) {
	ctx := context.Background()
	ca, cert, key := testCerts(t)
	otherCA, _, _ := testCerts(t)
	crt, k := serverCertsForPostgres(t, cert, key)
	srv, err := pgtest.StartPostgres(pgtest.Options{Name: "tls", Auth: "md5",
		Conf: map[string]string{"ssl": "on", "ssl_cert_file": crt, "ssl_key_file": k}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.CreateUser(ctx, appUser, appPass); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateDatabase(ctx, appDB, appUser); err != nil {
		t.Fatal(err)
	}
	usesTLS := func(c *pgx.Conn) bool {
		var ssl bool
		if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
			t.Fatal(err)
		}
		return ssl
	}
	for _, c := range []struct {
		name, general string
		ok            bool
	}{
		{"verify-full with the right CA", fmt.Sprintf("server_tls_mode = \"verify-full\"\nserver_tls_ca_file = %q", ca), true},
		{"verify-ca with the right CA", fmt.Sprintf("server_tls_mode = \"verify-ca\"\nserver_tls_ca_file = %q", ca), true},
		{"pgcat's server_tls", "server_tls = true", true},
		{"verify-full with another CA", fmt.Sprintf("server_tls_mode = \"verify-full\"\nserver_tls_ca_file = %q", otherCA), false},
		{"verify-ca with another CA", fmt.Sprintf("server_tls_mode = \"verify-ca\"\nserver_tls_ca_file = %q", otherCA), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startSluice(t, poolConfig{ServerPort: srv.Port, General: c.general})
			conn, err := pgx.Connect(ctx, s.URL())
			if err == nil {
				defer conn.Close(ctx)
				if c.ok && !usesTLS(conn) {
					t.Fatal("sluice reached the server without TLS")
				}
			}
			if c.ok && err != nil {
				t.Fatalf("connect: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("sluice accepted a server certificate from another CA")
			}
		})
	}
}

// TestClientCertificates requires client certificates: one from tls_ca_file naming the user is
// let in, one from another CA fails the handshake, and under verify-full one naming another user
// gets 28000.
func TestClientCertificates(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue("localhost", true)
	appCert, appKey := ca.issue(appUser, false)
	otherCert, otherKey := ca.issue("someone-else", false)
	stranger := newTestCA(t)
	strangerCert, strangerKey := stranger.issue(appUser, false)
	url := func(s *Sluice, cert, key string) string {
		u := fmt.Sprintf("postgres://%s:%s@localhost:%d/%s?sslmode=verify-full&sslrootcert=%s", appUser, appPass, s.Port, appDB, ca.Path)
		if cert != "" {
			u += "&sslcert=" + cert + "&sslkey=" + key
		}
		return u
	}
	for _, mode := range []string{"verify-ca", "verify-full"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{General: tlsGeneral(srvCert, srvKey, mode, fmt.Sprintf("tls_ca_file = %q", ca.Path))})
			c, err := pgx.Connect(ctx, url(s, appCert, appKey))
			if err != nil {
				t.Fatalf("certificate naming the user: %v", err)
			}
			c.Close(ctx)
			if _, err := pgx.Connect(ctx, url(s, strangerCert, strangerKey)); err == nil {
				t.Fatal("a certificate from another CA was accepted")
			}
			if _, err := pgx.Connect(ctx, url(s, "", "")); err == nil {
				t.Fatal("a client without a certificate was accepted")
			}
			_, err = pgx.Connect(ctx, url(s, otherCert, otherKey))
			if mode == "verify-full" && codeOf(err) != "28000" {
				t.Fatalf("certificate naming another user under verify-full: %v, want 28000", err)
			}
			if mode == "verify-ca" && err != nil {
				t.Fatalf("certificate naming another user under verify-ca: %v", err)
			}
		})
	}
}

// TestCertAuth logs a client in with the cert method: a certificate from tls_ca_file naming the
// user is all it needs; no certificate, one naming another user, a plaintext connection, or a
// user not in the file (under an hba cert rule) get 28000. Under an hba cert rule, plaintext clients still log in with a
// password through the next rule.
func TestCertAuth(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue("localhost", true)
	appCert, appKey := ca.issue(appUser, false)
	otherCert, otherKey := ca.issue("someone-else", false)
	nobodyCert, nobodyKey := ca.issue("nobody", false)
	url := func(s *Sluice, user, password, sslmode, cert, key string) string {
		u := fmt.Sprintf("postgres://%s:%s@localhost:%d/%s?sslmode=%s&sslrootcert=%s", user, password, s.Port, appDB, sslmode, ca.Path)
		if cert != "" {
			u += "&sslcert=" + cert + "&sslkey=" + key
		}
		return u
	}
	caFile := fmt.Sprintf("tls_ca_file = %q", ca.Path)
	for _, c := range []struct {
		name string
		pc   poolConfig
	}{
		{"auth_type", poolConfig{General: tlsGeneral(srvCert, srvKey, "prefer", caFile), User: `auth_type = "cert"`}},
		{"hba", poolConfig{General: tlsGeneral(srvCert, srvKey, "prefer", caFile,
			`hba = ["hostssl all all 127.0.0.1/32 cert", "host all all 127.0.0.1/32 md5"]`)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startSluice(t, c.pc)
			conn, err := pgx.Connect(ctx, url(s, appUser, "not-asked", "verify-full", appCert, appKey))
			if err != nil {
				t.Fatalf("certificate naming the user: %v", err)
			}
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != appUser {
				t.Fatalf("current_user %q, %v", user, err)
			}
			conn.Close(ctx)
			out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-c", "SELECT 42",
				fmt.Sprintf("host=localhost port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s",
					s.Port, appUser, appDB, ca.Path, appCert, appKey)).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "42" {
				t.Fatalf("psql with a certificate: %s, %v", out, err)
			}
			// A user not in the file has no auth_type of its own: under the general method it
			// fails like any unknown user (28P01); under the hba rule, the cert way (28000).
			nobody := map[string]string{"auth_type": "28P01", "hba": "28000"}[c.name]
			for _, bad := range []struct{ name, user, cert, key, code string }{
				{"no certificate", appUser, "", "", "28000"},
				{"another user's certificate", appUser, otherCert, otherKey, "28000"},
				{"a user not in the file", "nobody", nobodyCert, nobodyKey, nobody},
			} {
				if _, err := pgx.Connect(ctx, url(s, bad.user, appPass, "verify-full", bad.cert, bad.key)); codeOf(err) != bad.code {
					t.Errorf("%s: %v, want %s", bad.name, err, bad.code)
				}
			}
			_, err = pgx.Connect(ctx, url(s, appUser, appPass, "disable", "", ""))
			switch c.name {
			case "auth_type":
				if codeOf(err) != "28000" {
					t.Errorf("plaintext under auth_type cert: %v, want 28000", err)
				}
			case "hba":
				if err != nil {
					t.Errorf("plaintext with a password under the host md5 rule: %v", err)
				}
			}
		})
	}
}
