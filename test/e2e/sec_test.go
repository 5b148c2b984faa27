package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice"
	"github.com/sluicepg/sluice/internal/auth"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// scramSalt starts a SCRAM exchange as user and returns the salt of the server-first-message.
func scramSalt(t *testing.T, s *Sluice, user string) string {
	t.Helper()
	c := dialRaw(t, s)
	defer c.conn.Close()
	c.startup("user", user, "database", appDB)
	m, err := c.receive(5 * time.Second)
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("%s: got %T %+v, want AuthenticationSASL", user, m, m)
	}
	c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=clientnonce")})
	m, err = c.receive(5 * time.Second)
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	sc, ok := m.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("%s: got %T %+v, want AuthenticationSASLContinue", user, m, m)
	}
	for _, attr := range strings.Split(string(sc.Data), ",") {
		if v, ok := strings.CutPrefix(attr, "s="); ok {
			return v
		}
	}
	t.Fatalf("%s: no salt in %q", user, sc.Data)
	return ""
}

// TestSCRAMSaltHidesUnknownUsers pins that the SCRAM salt says nothing about who exists, as
// Postgres' mock salt does: every user, known or not, is shown a salt of its own that is the
// same at every attempt. A salt shared by all unknown users, or a new one at each attempt
// (a plain password from auth_query), would tell an unknown user from a real one.
func TestSCRAMSaltHidesUnknownUsers(t *testing.T) {
	check := func(t *testing.T, s *Sluice, users ...string) {
		seen := map[string]string{}
		for _, u := range users {
			a, b := scramSalt(t, s, u), scramSalt(t, s, u)
			if a != b {
				t.Errorf("user %q: salt %s, then %s: a salt that changes tells this user from one that does not exist", u, a, b)
			}
			if other, dup := seen[a]; dup {
				t.Errorf("users %q and %q are shown the same salt %s", other, u, a)
			}
			seen[a] = u
		}
	}
	t.Run("file", func(t *testing.T) {
		s := startSluice(t, poolConfig{General: `auth_type = "scram-sha-256"`})
		check(t, s, appUser, "nobody_a", "nobody_b")
	})
	t.Run("auth_query plain password", func(t *testing.T) {
		// auth_query returns a plain-text password for alice only.
		pools := authQueryPools(pg.Port, "SELECT $1::text || '-pw' WHERE $1 = 'alice'", true)
		s := startSluice(t, poolConfig{General: `auth_type = "scram-sha-256"`, Pools: pools})
		check(t, s, "alice", "nobody_a", "nobody_b")
	})
}

// TestUnknownUserGetsTheFilesMethod pins that with auth_type md5 (the default) and users whose
// passwords are SCRAM verifiers, which md5 logs in with SCRAM as Postgres does, a user the file
// does not have is asked for SCRAM too: an md5 request would say it does not exist.
func TestUnknownUserGetsTheFilesMethod(t *testing.T) {
	s := startSluice(t, poolConfig{PasswordOverride: auth.NewVerifier(appPass, []byte("sec-test-salt"), 4096).String()})
	for _, u := range []string{appUser, "nobody"} {
		c := dialRaw(t, s)
		c.startup("user", u, "database", appDB)
		m, err := c.receive(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
			t.Errorf("user %q: got %T, want AuthenticationSASL as for every user", u, m)
		}
		c.conn.Close()
	}
}

// TestSecretsNotInLogs runs sluice with debug logging through what logs the most about logins
// (wrong passwords, unknown users, auth_query, a server that refuses sluice's password, a TLS
// handshake that fails, a reload of a file with an unquoted password) and checks that no secret
// is in the log, in what clients are told, or in SHOW CONFIG.
func TestSecretsNotInLogs(t *testing.T) {
	_, cert, key := testCerts(t)
	const (
		adminSecret  = "adm1n-S3cret"
		clientSecret = "qzxjPwk-7"
		serverSecret = "wr0ng-Server-Pw8"
		guess        = "wr0ng-Guess1"
	)
	pools := func(extra string) string {
		return fmt.Sprintf(`[pools.app]
[pools.app.users.0]
username = %q
password = %q

[pools.app.users.1]
username = "remapped"
password = %q
server_username = %q
server_password = %q

[pools.app.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]

[pools.aq]
auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
auth_query_user = %q
auth_query_password = %q
auth_query_any_user = true

[pools.aq.users.0]
username = "carol"

[pools.aq.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]
%s`, appUser, appPass, clientSecret, appUser, serverSecret, appDB, pg.Port,
			pgtest.SuperUser, pgtest.SuperPassword, appDB, pg.Port, extra)
	}
	general := tlsGeneral(cert, key, "allow", "log_client_connections = true\nlog_client_disconnections = true")
	admin := fmt.Sprintf("admin_username = %q\nadmin_password = %q", adminUser, adminSecret)
	pc := poolConfig{General: general, Admin: admin, Pools: pools("")}
	s := newSluice(t, pc)
	// The pools are written whole: put the admin lines in [general] ourselves.
	pc.General = admin + "\n" + general
	cfgText := strings.Replace(pc.toml(s.Port, s.SocketDir), `admin_username = "admin"`+"\n"+`admin_password = "admin-secret"`+"\n", "", 1)
	if err := os.WriteFile(s.CfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(s.CfgPath)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sluice.Run(ctx, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	defer func() { cancel(); <-done }()
	s.waitReady(t)

	var told []string // what clients were told
	try := func(db, user, password string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, s.Addr(), db))
		if err != nil {
			told = append(told, err.Error())
			return
		}
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			told = append(told, err.Error())
		}
		c.Close(ctx)
	}
	try(appDB, appUser, guess)
	try(appDB, "nobody", guess)
	try(appDB, appUser, appPass)
	try(appDB, "remapped", clientSecret) // the server refuses server_password
	try("aq", appUser, appPass)
	try("aq", appUser, guess)
	try("pgbouncer", adminUser, guess)
	try("pgbouncer", appUser, adminSecret)
	// A TLS handshake that fails: plaintext after SSLRequest.
	c := dialRaw(t, s)
	c.write([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	b := make([]byte, 1)
	_, _ = io.ReadFull(c.conn, b)
	c.write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.expectClosed(5 * time.Second)

	ac, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s:%s@%s/pgbouncer?sslmode=disable&default_query_exec_mode=simple_protocol", adminUser, adminSecret, s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close(context.Background())
	_, rows := adminQuery(t, ac, "SHOW CONFIG")
	for _, r := range rows {
		told = append(told, strings.Join(r, " "))
	}
	// A reload of a file with a password written without quotes.
	bad := strings.Replace(cfgText, fmt.Sprintf("password = %q", clientSecret), "password = "+clientSecret+"x", 1)
	if err := os.WriteFile(s.CfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Exec(context.Background(), "RELOAD"); err == nil {
		t.Error("RELOAD of a bad file succeeded")
	} else {
		told = append(told, err.Error())
	}

	md5Hash := auth.MD5Secret(appPass, appUser)
	keyPEM, _ := os.ReadFile(key)
	keyLine := strings.Split(string(keyPEM), "\n")[1]
	for _, secret := range []string{appPass, adminSecret, clientSecret, serverSecret, guess, md5Hash[3:], "SCRAM-SHA-256$", keyLine,
		clientSecret[:6], // what a TOML syntax error quotes of an unquoted password
	} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds the secret %q:\n%s", secret, logs)
		}
		for _, m := range told {
			if strings.Contains(m, secret) {
				t.Errorf("a client was told the secret %q: %s", secret, m)
			}
		}
	}
}

// TestAuthQueryFloodIsBounded pins that strangers logging in with new names, each of which
// auth_query_any_user must look up, cannot make sluice open server connections without bound
// before anybody has authenticated: the fetches under way at once are capped.
func TestAuthQueryFloodIsBounded(t *testing.T) {
	pools := authQueryPools(pg.Port, "SELECT usename, passwd FROM pg_shadow WHERE usename = $1 AND (SELECT pg_sleep(0.3)::text) IS NOT NULL /* sec-flood */", true)
	s := startSluice(t, poolConfig{Pools: pools})
	watch := direct(t)
	const logins = 40
	var wg sync.WaitGroup
	for i := range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := loginAs(s, fmt.Sprintf("stranger%d", i), "guess", "")
			if err == nil {
				c.Close(context.Background())
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	peak := 0
	for {
		select {
		case <-done:
			t.Logf("at most %d auth_query fetches at once for %d logins", peak, logins)
			if peak > 8 {
				t.Errorf("%d auth_query connections at once for %d strangers; want at most 8", peak, logins)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		var n int
		err := watch.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%sec-flood%' AND pid <> pg_backend_pid()").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, n)
	}
}

// TestSCRAMIterationsHideUnknownUsers pins that an unknown user is shown the iteration count
// the real users' stored secrets have, not a constant of its own.
func TestSCRAMIterationsHideUnknownUsers(t *testing.T) {
	s := startSluice(t, poolConfig{PasswordOverride: auth.NewVerifier(appPass, []byte("sec-test-salt"), 10000).String()})
	iterations := func(user string) string {
		c := dialRaw(t, s)
		defer c.conn.Close()
		c.startup("user", user, "database", appDB)
		if _, err := c.receive(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=clientnonce")})
		m, err := c.receive(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		sc, ok := m.(*pgproto3.AuthenticationSASLContinue)
		if !ok {
			t.Fatalf("%s: got %T %+v", user, m, m)
		}
		_, i, _ := strings.Cut(string(sc.Data), ",i=")
		return i
	}
	if got := iterations(appUser); got != "10000" {
		t.Fatalf("%s: %s iterations, want the verifier's 10000", appUser, got)
	}
	if got := iterations("nobody"); got != "10000" {
		t.Errorf("an unknown user is shown %s iterations, a real one 10000", got)
	}
}
