package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/internal/auth"
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
		pools := fmt.Sprintf(`[pools.app]
auth_query = "SELECT $1::text || '-pw' WHERE $1 = 'alice'"
auth_query_user = %q
auth_query_password = %q
auth_query_any_user = true

[pools.app.users.0]
username = "alice"

[pools.app.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]
`, pgtest.SuperUser, pgtest.SuperPassword, appDB, pg.Port)
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
