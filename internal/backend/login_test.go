package backend

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/auth"
	"github.com/sluicepg/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, nil) }

const (
	loginUser = "alice"
	loginPass = "alice-secret"
)

// startServer starts a Postgres whose TCP logins use method (scram-sha-256 or md5), optionally
// with TLS, with the user alice, and returns it with alice's stored secret from pg_authid.
func startServer(t *testing.T, method string, withTLS bool) (*pgtest.Postgres, string) {
	t.Helper()
	ctx := context.Background()
	opts := pgtest.Options{Name: "login-" + method, Auth: method}
	if withTLS {
		crt, key := serverCert(t)
		opts.Conf = map[string]string{"ssl": "on", "ssl_cert_file": crt, "ssl_key_file": key}
	}
	srv, err := pgtest.StartPostgres(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.CreateUser(ctx, loginUser, loginPass); err != nil {
		t.Fatal(err)
	}
	conn, err := srv.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", loginUser).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	return srv, stored
}

// serverCert writes a self-signed certificate for 127.0.0.1 where the server's OS user can read
// it, with the key permissions Postgres insists on.
func serverCert(t *testing.T) (crt, key string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(k)
	dir, err := os.MkdirTemp("", "sluice-backend-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755)
	crt, key = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	for path, b := range map[string][]byte{
		crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if u, err := user.Lookup("postgres"); err == nil {
				uid, _ := strconv.Atoi(u.Uid)
				gid, _ := strconv.Atoi(u.Gid)
				_ = os.Chown(path, uid, gid)
			}
		}
	}
	return crt, key
}

// clientKeys runs a SCRAM login of a client with password against verifier, as sluice's
// frontend does, and returns the Secret that it leaves: the ClientKey learned from the proof and
// the verifier's ServerKey.
func clientKeys(t *testing.T, verifier, password string) *Secret {
	t.Helper()
	v, err := auth.ParseVerifier(verifier)
	if err != nil {
		t.Fatal(err)
	}
	srv := auth.NewServerConversation(v, rand.Reader)
	cl := auth.NewClientConversation(auth.ClientSecret{Password: password}, rand.Reader)
	cf, _ := cl.First()
	sf, err := srv.First(cf)
	if err != nil {
		t.Fatal(err)
	}
	cfin, err := cl.Final(sf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Final(cfin); err != nil {
		return &Secret{ClientKey: make([]byte, 32), ServerKey: v.ServerKey} // a wrong password
	}
	return &Secret{ClientKey: srv.ClientKey(), ServerKey: v.ServerKey}
}

// TestDialLogsIn logs in to real servers with every kind of secret sluice can hold: a password,
// an md5 hash passed as it is, and a ClientKey learned from a client's SCRAM login, in
// plaintext and over TLS (where SCRAM binds to the channel); wrong secrets are refused by the
// server with 28P01.
func TestDialLogsIn(t *testing.T) {
	scramSrv, verifier := startServer(t, "scram-sha-256", false)
	scramTLS, verifierTLS := startServer(t, "scram-sha-256", true)
	md5Srv, md5Hash := startServer(t, "md5", false)
	if !auth.IsSCRAMVerifier(verifier) || len(md5Hash) != 35 {
		t.Fatalf("stored secrets %q and %q", verifier, md5Hash)
	}
	tlsCfg := &tls.Config{InsecureSkipVerify: true}
	tests := []struct {
		name     string
		srv      *pgtest.Postgres
		tls      *tls.Config
		password string
		secret   *Secret
		wantCode string // "" for success, else the SQLSTATE the server refuses with
		wantErr  bool   // sluice refuses before the server does
	}{
		{name: "scram, password", srv: scramSrv, password: loginPass},
		{name: "scram, ClientKey", srv: scramSrv, secret: clientKeys(t, verifier, loginPass)},
		{name: "scram, verifier as password with ClientKey", srv: scramSrv, password: verifier, secret: clientKeys(t, verifier, loginPass)},
		{name: "scram, wrong password", srv: scramSrv, password: "wrong", wantCode: "28P01"},
		{name: "scram, wrong ClientKey", srv: scramSrv, secret: clientKeys(t, verifier, "wrong"), wantCode: "28P01"},
		{name: "scram, verifier and no ClientKey", srv: scramSrv, password: verifier, wantErr: true},
		{name: "scram, md5 hash", srv: scramSrv, password: "md5" + auth.MD5Secret(loginPass, loginUser), wantErr: true},
		{name: "scram over TLS (PLUS), password", srv: scramTLS, tls: tlsCfg, password: loginPass},
		{name: "scram over TLS (PLUS), ClientKey", srv: scramTLS, tls: tlsCfg, secret: clientKeys(t, verifierTLS, loginPass)},
		{name: "scram over TLS (PLUS), wrong ClientKey", srv: scramTLS, tls: tlsCfg, secret: clientKeys(t, verifierTLS, "wrong"), wantCode: "28P01"},
		{name: "md5, password", srv: md5Srv, password: loginPass},
		{name: "md5, hash", srv: md5Srv, password: md5Hash},
		{name: "md5, hash from Credentials", srv: md5Srv, secret: &Secret{Password: md5Hash}},
		{name: "md5, wrong hash", srv: md5Srv, password: "md5" + auth.MD5Secret("wrong", loginUser), wantCode: "28P01"},
		{name: "md5, only a ClientKey", srv: md5Srv, secret: clientKeys(t, verifier, loginPass), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds := &Credentials{}
			if tt.secret != nil {
				creds.Store(tt.secret)
			}
			p := &Params{Host: tt.srv.Host, Port: tt.srv.Port, Database: "postgres", User: loginUser,
				Password: tt.password, Credentials: creds, TLS: tt.tls, ConnectTimeout: 10 * time.Second}
			s, err := Dial(context.Background(), p)
			if tt.wantCode != "" || tt.wantErr {
				var le *LoginError
				var se *ServerError
				switch {
				case err == nil:
					s.Close()
					t.Fatal("login succeeded")
				case !errors.As(err, &le):
					t.Fatalf("error %v is not a *LoginError", err)
				case tt.wantCode != "" && (!errors.As(err, &se) || se.Code != tt.wantCode):
					t.Fatalf("error %v, want SQLSTATE %s from the server", err, tt.wantCode)
				case tt.wantErr && errors.As(err, &se):
					t.Fatalf("the server refused (%v); sluice should have given up first", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer s.Close()
			if s.PID() == 0 || s.Params["server_version"] == "" {
				t.Fatalf("login left pid %d and parameters %v", s.PID(), s.Params)
			}
			if _, err := s.Exec("SELECT 1"); err != nil {
				t.Fatalf("query after login: %v", err)
			}
		})
	}
}

// TestDialTLSRefusedOrOptional checks sslmode require against a server without TLS, and prefer
// falling back to plaintext.
func TestDialTLSRefusedOrOptional(t *testing.T) {
	srv, _ := startServer(t, "md5", false)
	p := &Params{Host: srv.Host, Port: srv.Port, Database: "postgres", User: loginUser, Password: loginPass,
		TLS: &tls.Config{InsecureSkipVerify: true}, ConnectTimeout: 10 * time.Second}
	if s, err := Dial(context.Background(), p); err == nil {
		s.Close()
		t.Fatal("TLS required and the server has none, yet Dial succeeded")
	}
	p.TLSOptional = true
	s, err := Dial(context.Background(), p)
	if err != nil {
		t.Fatalf("TLS preferred, server without TLS: %v", err)
	}
	s.Close()
}
