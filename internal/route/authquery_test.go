package route

import (
	"testing"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/config"
)

func TestSecretFromRows(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name    string
		rows    [][][]byte
		want    UserSecret
		wantErr bool
	}{
		{"no row: no user", nil, UserSecret{}, false},
		{"one column", [][][]byte{{b("md5abc")}}, UserSecret{Value: "md5abc", Found: true}, false},
		{"user and secret", [][][]byte{{b("alice"), b("SCRAM-SHA-256$x")}}, UserSecret{Value: "SCRAM-SHA-256$x", Found: true}, false},
		{"NULL secret: no password login", [][][]byte{{b("alice"), nil}}, UserSecret{}, false},
		{"empty secret", [][][]byte{{b("alice"), b("")}}, UserSecret{}, false},
		{"another user's row", [][][]byte{{b("bob"), b("md5abc")}}, UserSecret{}, true},
		{"two rows", [][][]byte{{b("md5a")}, {b("md5b")}}, UserSecret{}, true},
		{"no columns", [][][]byte{{}}, UserSecret{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := secretFromRows(tt.rows, "alice")
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAuthQueryBindsTheUserName(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT usename, passwd FROM pg_shadow WHERE usename = $1": "SELECT usename, passwd FROM pg_shadow WHERE usename = $1",
		"SELECT * FROM public.user_lookup('$1');":                  "SELECT * FROM public.user_lookup($1);",
	} {
		cfg := testConfig(func(c *config.Config) {
			c.Pools["app"].AuthQuery, c.Pools["app"].AuthQueryUser = q, "pgbouncer"
		})
		tbl, _ := build(t, cfg, nil)
		aq := tbl.AuthQuery("app")
		if aq == nil || aq.query != want {
			t.Fatalf("%q: query %+v, want %q", q, aq, want)
		}
		if aq.params.Host != "10.0.0.1" || aq.params.Database != "app_db" || aq.params.User != "pgbouncer" {
			t.Fatalf("auth_query runs on %+v, want the primary of shard 0 as pgbouncer", aq.params)
		}
		if tbl.AuthQuery("other") != nil {
			t.Fatal("pool other has an auth_query")
		}
	}
}

func anyUserConfig(allow bool, change func(*config.Config)) *config.Config {
	return testConfig(func(c *config.Config) {
		p := c.Pools["app"]
		p.AuthQuery, p.AuthQueryUser, p.AuthQueryAnyUser = "SELECT $1", "alice", allow
		if change != nil {
			change(c)
		}
	})
}

// TestDynamicTargets checks targets of users that are not in the file: made only when the pool
// allows them, with the auth_query user's settings, found by Lookup, kept across a reload that
// keeps the pool, rebuilt with their credentials across one that changes it, retired when the
// pool stops allowing them, and made in the newest table when asked of an old one.
func TestDynamicTargets(t *testing.T) {
	tbl, _ := build(t, anyUserConfig(true, nil), nil)
	if tbl.DynamicTarget("app", "alice") != nil {
		t.Fatal("a target for a user in the file")
	}
	if tbl.DynamicTarget("other", "dave") != nil {
		t.Fatal("a target in a pool without auth_query_any_user")
	}
	dave := tbl.DynamicTarget("app", "dave")
	if dave == nil || tbl.Lookup("app", "dave") != dave || tbl.DynamicTarget("app", "dave") != dave {
		t.Fatal("dave's target is not made once and found")
	}
	if dave.User.PoolSize != 10 || !dave.User.NoPassword || dave.Mode != "transaction" {
		t.Fatalf("dave's settings %+v, want alice's", dave.User)
	}
	prim, _ := dave.Primary()
	if p := prim.Pool.Params(); p.User != "dave" || p.Password != "" || p.Credentials != dave.Creds {
		t.Fatalf("dave's server login %+v", p)
	}
	secret := &backend.Secret{Password: "md5" + "0123456789abcdef0123456789abcdef"}
	dave.Creds.Store(secret)
	if got := keys(tbl); len(got) != 4 {
		t.Fatalf("targets %v, want the three of the file and dave", got)
	}

	same, retired := build(t, anyUserConfig(true, nil), tbl)
	if same.Lookup("app", "dave") != dave || len(retired) != 0 {
		t.Fatalf("unchanged pool: dave's target %p, want %p; retired %d", same.Lookup("app", "dave"), dave, len(retired))
	}

	changed, retired := build(t, anyUserConfig(true, func(c *config.Config) { c.Pools["app"].Users[0].PoolSize = 3 }), same)
	nd := changed.Lookup("app", "dave")
	if nd == nil || nd == dave || nd.Creds.Load() != secret || nd.User.PoolSize != 3 {
		t.Fatalf("changed pool: dave's target %+v", nd)
	}
	if !containsTarget(retired, dave) {
		t.Fatal("dave's old target was not retired")
	}
	// A login that began on an older table makes its target in the newest.
	if erin := tbl.DynamicTarget("app", "erin"); erin == nil || changed.Lookup("app", "erin") != erin {
		t.Fatal("erin's target was not made in the newest table")
	}

	closed, retired := build(t, anyUserConfig(false, func(c *config.Config) { c.Pools["app"].Users[0].PoolSize = 3 }), changed)
	if closed.Lookup("app", "dave") != nil || closed.DynamicTarget("app", "frank") != nil {
		t.Fatal("the pool no longer allows users outside the file, yet they have targets")
	}
	if !containsTarget(retired, nd) {
		t.Fatal("dave's target was not retired")
	}
}

func containsTarget(list []*Target, tg *Target) bool {
	for _, x := range list {
		if x == tg {
			return true
		}
	}
	return false
}

func TestHealthChecksOfAuthQueryUsersLogInAsAuthQueryUser(t *testing.T) {
	pc := &config.Pool{AuthQuery: "SELECT $1", AuthQueryUser: "pgbouncer", AuthQueryPassword: "pw"}
	creds := &backend.Credentials{}
	got := checkParams(pc, backend.Params{User: "alice", Credentials: creds})
	if got.User != "pgbouncer" || got.Password != "pw" || got.Credentials != nil {
		t.Fatalf("a user without a password in the file: checks log in with %+v", got)
	}
	if got := checkParams(pc, backend.Params{User: "bob", Password: "b"}); got.User != "bob" || got.Password != "b" {
		t.Fatalf("a user with a password: checks log in with %+v", got)
	}
}
