package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// authQueryPools is a pool "app" on the server at port whose users get their secrets from
// auth_query, as the superuser: alice (listed, no password), remapped (listed, no password, but
// logs in to the servers as owner with the password in the file) and, with anyUser, anybody the
// server knows. query is the auth_query.
func authQueryPools(port int, query string, anyUser bool) string {
	return fmt.Sprintf(`[pools.app]
pool_mode = "transaction"
auth_query = %q
auth_query_user = %q
auth_query_password = %q
auth_query_any_user = %v

[pools.app.users.0]
username = "alice"
pool_size = 3

[pools.app.users.1]
username = "remapped"
server_username = "owner"
server_password = "owner-pw"

[pools.app.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]
`, query, pgtest.SuperUser, pgtest.SuperPassword, anyUser, appDB, port)
}

// authQueryServer starts a Postgres that stores passwords as method says (scram-sha-256 or
// md5) with the users alice, carol, remapped and owner, each with password "<name>-pw".
func authQueryServer(t *testing.T, method string) *pgtest.Postgres {
	t.Helper()
	ctx := context.Background()
	srv, err := pgtest.StartPostgres(pgtest.Options{Name: "authq-" + method, Auth: method})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	for _, u := range []string{"alice", "carol", "remapped", "owner"} {
		if err := srv.CreateUser(ctx, u, u+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.CreateDatabase(ctx, appDB, ""); err != nil {
		t.Fatal(err)
	}
	return srv
}

// loginAs connects to sluice as user with password; extra is added to the URL's query.
func loginAs(s *Sluice, user, password, extra string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: s.Addr(), Path: "/" + appDB,
		RawQuery: "sslmode=disable" + extra}
	return pgx.Connect(ctx, u.String())
}

// currentUser logs in and returns current_user as the server sees it.
func currentUser(t *testing.T, s *Sluice, user, password string) string {
	t.Helper()
	c, err := loginAs(s, user, password, "")
	if err != nil {
		t.Fatalf("log in as %s: %v", user, err)
	}
	defer c.Close(context.Background())
	var got string
	if err := c.QueryRow(context.Background(), "SELECT current_user").Scan(&got); err != nil {
		t.Fatalf("as %s: %v", user, err)
	}
	return got
}

// TestAuthQuerySCRAMPassThrough runs sluice with no user passwords at all in front of a server
// that stores SCRAM verifiers: clients log in with SCRAM against the verifier auth_query
// fetched, and sluice logs in to the server as each of them with the ClientKey it learned
// (checked with current_user, on more than one server connection); server_username and
// server_password still remap; users outside the file get in only with auth_query_any_user,
// and are otherwise refused exactly like unknown users.
func TestAuthQuerySCRAMPassThrough(t *testing.T) {
	ctx := context.Background()
	srv := authQueryServer(t, "scram-sha-256")
	query := "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"

	t.Run("listed users", func(t *testing.T) {
		s := startSluice(t, poolConfig{Pools: authQueryPools(srv.Port, query, false)})
		if got := currentUser(t, s, "alice", "alice-pw"); got != "alice" {
			t.Fatalf("current_user %q, want alice", got)
		}
		// Two transactions at once need two server connections, both logged in as alice.
		var conns []*pgx.Conn
		for range 2 {
			c, err := loginAs(s, "alice", "alice-pw", "")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			mustExec(t, c, "BEGIN")
			conns = append(conns, c)
		}
		pids := map[int]bool{}
		for _, c := range conns {
			var pid int
			var user string
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid(), current_user").Scan(&pid, &user); err != nil || user != "alice" {
				t.Fatalf("in a transaction: %q, %v", user, err)
			}
			pids[pid] = true
		}
		if len(pids) != 2 {
			t.Fatalf("two open transactions on %d server connections", len(pids))
		}
		out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-c", "SELECT current_user",
			fmt.Sprintf("host=127.0.0.1 port=%d user=alice password=alice-pw dbname=%s sslmode=disable", s.Port, appDB)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "alice" {
			t.Fatalf("psql as alice: %s, %v", out, err)
		}
		if got := currentUser(t, s, "remapped", "remapped-pw"); got != "owner" {
			t.Fatalf("remapped user reached the server as %q, want owner", got)
		}

		// A wrong password, a user outside the file and an unknown user look the same.
		var msgs []string
		for _, c := range []struct{ user, password string }{
			{"alice", "wrong"}, {"carol", "carol-pw"}, {"nobody", "x"}, {"x' OR 'a'='a", "x"},
		} {
			_, err := loginAs(s, c.user, c.password, "")
			if code := codeOf(err); code != "28P01" {
				t.Fatalf("%s with password %q: %v, want 28P01", c.user, c.password, err)
			}
			msgs = append(msgs, strings.ReplaceAll(err.Error(), c.user, "USER"))
		}
		for _, m := range msgs[1:] {
			if m != msgs[0] {
				t.Fatalf("refusals differ: %q and %q", msgs[0], m)
			}
		}
	})

	t.Run("any user", func(t *testing.T) {
		s := startSluice(t, poolConfig{Pools: authQueryPools(srv.Port, query, true)})
		if got := currentUser(t, s, "carol", "carol-pw"); got != "carol" {
			t.Fatalf("current_user %q, want carol", got)
		}
		if got := currentUser(t, s, "carol", "carol-pw"); got != "carol" {
			t.Fatalf("again: current_user %q, want carol", got)
		}
		for _, c := range []struct{ user, password string }{{"carol", "wrong"}, {"nobody", "x"}} {
			if _, err := loginAs(s, c.user, c.password, ""); codeOf(err) != "28P01" {
				t.Fatalf("%s: %v, want 28P01", c.user, err)
			}
		}
		// Many logins at once: one fetch, one target, all in.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := loginAs(s, "carol", "carol-pw", "")
				if err == nil {
					_, err = c.Exec(ctx, "SELECT 1")
					c.Close(ctx)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent login: %v", err)
			}
		}
	})

	t.Run("over TLS with channel binding", func(t *testing.T) {
		ca, cert, key := testCerts(t)
		s := startSluice(t, poolConfig{General: tlsGeneral(cert, key, "require"), Pools: authQueryPools(srv.Port, query, false)})
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://alice:alice-pw@localhost:%d/%s?sslmode=verify-full&sslrootcert=%s&channel_binding=require", s.Port, appDB, ca))
		if err != nil {
			t.Fatalf("SCRAM-SHA-256-PLUS through auth_query: %v", err)
		}
		defer c.Close(ctx)
		var user string
		if err := c.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "alice" {
			t.Fatalf("current_user %q, %v", user, err)
		}
	})

	t.Run("a verifier in the file and no server password", func(t *testing.T) {
		// No auth_query: the verifier is the server's own, so the ClientKey logs in there too.
		s := startSluice(t, poolConfig{Pools: fmt.Sprintf(`[pools.app]
[pools.app.users.0]
username = "alice"
password = %q
[pools.app.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]
`, storedSecret(t, srv, "alice"), appDB, srv.Port)})
		if got := currentUser(t, s, "alice", "alice-pw"); got != "alice" {
			t.Fatalf("current_user %q, want alice", got)
		}
	})

	t.Run("a changed password", func(t *testing.T) {
		s := startSluice(t, poolConfig{Pools: authQueryPools(srv.Port, query, true)})
		if got := currentUser(t, s, "carol", "carol-pw"); got != "carol" {
			t.Fatal(got)
		}
		if err := srv.CreateUser(ctx, "carol", "carol-new"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.CreateUser(ctx, "carol", "carol-pw") })
		time.Sleep(1100 * time.Millisecond) // a refetch waits a second after the last fetch
		// The cached verifier has the old salt, so the first SCRAM login with the new password
		// fails; it fetches the new verifier, and the next login works.
		if c, err := loginAs(s, "carol", "carol-new", ""); err == nil {
			c.Close(ctx)
		} else if codeOf(err) != "28P01" {
			t.Fatal(err)
		}
		if got := currentUser(t, s, "carol", "carol-new"); got != "carol" {
			t.Fatal(got)
		}
		if _, err := loginAs(s, "carol", "carol-pw", ""); codeOf(err) != "28P01" {
			t.Fatalf("the old password: %v, want 28P01", err)
		}
	})
}

// TestAuthQueryMD5PassThrough runs sluice in front of a server that stores md5 hashes, with
// pgcat's quoted '$1': clients log in with md5 against the hash auth_query fetched and sluice
// logs in to the server with that hash; a changed password works at its first login, because
// the client's md5 answer is checked again against the re-fetched hash.
func TestAuthQueryMD5PassThrough(t *testing.T) {
	ctx := context.Background()
	srv := authQueryServer(t, "md5")
	s := startSluice(t, poolConfig{Pools: authQueryPools(srv.Port, "SELECT usename, passwd FROM pg_shadow WHERE usename = '$1'", true)})
	for _, u := range []string{"alice", "carol"} {
		if got := currentUser(t, s, u, u+"-pw"); got != u {
			t.Fatalf("current_user %q, want %s", got, u)
		}
	}
	var conns []*pgx.Conn
	for range 2 {
		c, err := loginAs(s, "alice", "alice-pw", "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		mustExec(t, c, "BEGIN")
		conns = append(conns, c)
	}
	for _, c := range conns {
		var user string
		if err := c.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "alice" {
			t.Fatalf("second server connection: %q, %v", user, err)
		}
	}
	if _, err := loginAs(s, "alice", "wrong", ""); codeOf(err) != "28P01" {
		t.Fatalf("wrong password: %v", err)
	}

	// An md5 hash in the file and no server password: the hash logs in to the server too.
	hashed := startSluice(t, poolConfig{Pools: fmt.Sprintf(`[pools.app]
[pools.app.users.0]
username = "carol"
password = %q
[pools.app.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]
`, storedSecret(t, srv, "carol"), appDB, srv.Port)})
	if got := currentUser(t, hashed, "carol", "carol-pw"); got != "carol" {
		t.Fatalf("current_user %q, want carol", got)
	}

	if err := srv.CreateUser(ctx, "alice", "alice-new"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := currentUser(t, s, "alice", "alice-new"); got != "alice" {
		t.Fatal(got)
	}
}

// storedSecret returns the user's secret as the server stores it (pg_authid.rolpassword).
func storedSecret(t *testing.T, srv *pgtest.Postgres, user string) string {
	t.Helper()
	ctx := context.Background()
	c, err := srv.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var secret string
	if err := c.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", user).Scan(&secret); err != nil {
		t.Fatal(err)
	}
	return secret
}
