package route

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/pool"
)

// testConfig returns a new configuration, every pointer fresh as after a reload, with change
// applied. Its pools have MinPoolSize 0, so building them dials nothing.
//
//	app:   alice (transaction), bob (session, own server login); one shard, a replica then the primary
//	other: carol; two shards
func testConfig(change func(*config.Config)) *config.Config {
	c := &config.Config{
		General: config.General{
			Port: 6432, ConnectTimeout: 5 * time.Second, IdleTimeout: 10 * time.Minute,
			ServerLifetime: time.Hour, QueryWaitTimeout: 2 * time.Minute,
			HealthcheckTimeout: time.Second, HealthcheckDelay: 30 * time.Second,
			TCPKeepalivesCount: 5, TCPKeepalivesInterval: 5 * time.Second,
			MaxClientConn: 10000, ServerResetQuery: "DISCARD ALL", TCPUserTimeout: 10 * time.Second,
		},
		Pools: map[string]*config.Pool{
			"app": {
				Name: "app", PoolMode: "transaction", PreparedStatementsCacheSize: 64,
				// Timeouts as config.Load settles them: bob has his own connect_timeout.
				Users: []*config.User{
					{Username: "alice", Password: "a-secret", PoolSize: 10,
						ConnectTimeout: 5 * time.Second, IdleTimeout: 10 * time.Minute, ServerLifetime: time.Hour},
					{Username: "bob", Password: "b-secret", PoolSize: 5, PoolMode: "session",
						ServerUsername: "app_rw", ServerPassword: "rw-secret", StatementTimeout: 1500 * time.Millisecond,
						ConnectTimeout: 250 * time.Millisecond, IdleTimeout: 10 * time.Minute, ServerLifetime: time.Hour},
				},
				Shards: []*config.Shard{{Database: "app_db", Servers: []config.Server{
					{Host: "10.0.0.2", Port: 5433, Role: "replica"},
					{Host: "10.0.0.1", Port: 5432, Role: "primary"},
				}}},
			},
			"other": {
				Name:  "other",
				Users: []*config.User{{Username: "carol", Password: "c-secret", PoolSize: 3}},
				Shards: []*config.Shard{
					{Database: "other_0", Servers: []config.Server{{Host: "10.0.1.1", Port: 5432, Role: "primary"}}},
					{Database: "other_1", Servers: []config.Server{{Host: "10.0.1.2", Port: 5432, Role: "primary"}}},
				},
			},
		},
	}
	if change != nil {
		change(c)
	}
	return c
}

// build is Build whose tables' and retired targets' pools are closed when the test ends.
func build(t *testing.T, cfg *config.Config, prev *Table) (*Table, []*Target) {
	t.Helper()
	tbl, retired := Build(cfg, prev)
	t.Cleanup(func() {
		tbl.Targets(func(_, _ string, tg *Target) { tg.Close() })
		for _, tg := range retired {
			tg.Close()
		}
	})
	return tbl, retired
}

// keys lists targets as sorted "db/user".
func keys(tbl *Table) []string {
	var ks []string
	tbl.Targets(func(db, user string, _ *Target) { ks = append(ks, db+"/"+user) })
	sort.Strings(ks)
	return ks
}

func TestBuildReusesUnchangedPoolsOnReload(t *testing.T) {
	all := []string{"app/alice", "app/bob", "other/carol"}
	tests := []struct {
		name    string
		change  func(*config.Config)
		kept    []string // targets carried over from the previous table
		retired []string
	}{
		{
			name:   "nothing changed",
			change: func(*config.Config) {},
			kept:   all,
		},
		{
			name: "general keys that do not shape pools",
			change: func(c *config.Config) {
				c.General.QueryWaitTimeout = time.Minute
				c.General.MaxClientConn = 10
				c.General.LogClientConnections = true
			},
			kept: all,
		},
		{
			name: "users listed in another order",
			change: func(c *config.Config) {
				u := c.Pools["app"].Users
				u[0], u[1] = u[1], u[0]
			},
			kept: all,
		},
		{
			name:    "a user's pool size",
			change:  func(c *config.Config) { c.Pools["app"].Users[0].PoolSize = 20 },
			kept:    []string{"other/carol"},
			retired: []string{"app/alice", "app/bob"},
		},
		{
			name: "a user added to a pool",
			change: func(c *config.Config) {
				p := c.Pools["app"]
				p.Users = append(p.Users, &config.User{Username: "dave", PoolSize: 1})
			},
			kept:    []string{"other/carol"},
			retired: []string{"app/alice", "app/bob"},
		},
		{
			name:    "a user removed from a pool",
			change:  func(c *config.Config) { c.Pools["app"].Users = c.Pools["app"].Users[:1] },
			kept:    []string{"other/carol"},
			retired: []string{"app/alice", "app/bob"},
		},
		{
			name: "a server added to a shard",
			change: func(c *config.Config) {
				sh := c.Pools["other"].Shards[1]
				sh.Servers = append(sh.Servers, config.Server{Host: "10.0.1.3", Port: 5432, Role: "replica"})
			},
			kept:    []string{"app/alice", "app/bob"},
			retired: []string{"other/carol"},
		},
		{
			name:    "the pool mode",
			change:  func(c *config.Config) { c.Pools["other"].PoolMode = "session" },
			kept:    []string{"app/alice", "app/bob"},
			retired: []string{"other/carol"},
		},
		{
			name:    "a pool removed",
			change:  func(c *config.Config) { delete(c.Pools, "other") },
			kept:    []string{"app/alice", "app/bob"},
			retired: []string{"other/carol"},
		},
		{
			name: "a pool added",
			change: func(c *config.Config) {
				c.Pools["new"] = &config.Pool{
					Name:   "new",
					Users:  []*config.User{{Username: "erin", PoolSize: 1}},
					Shards: []*config.Shard{{Database: "new", Servers: []config.Server{{Host: "10.0.2.1", Port: 5432, Role: "primary"}}}},
				}
			},
			kept: all,
		},
		{
			name:    "connect_timeout, which every pool uses",
			change:  func(c *config.Config) { c.General.ConnectTimeout = 10 * time.Second },
			retired: all,
		},
		{
			name:    "server_lifetime, which every pool uses",
			change:  func(c *config.Config) { c.General.ServerLifetime = 2 * time.Hour },
			retired: all,
		},
		{
			name:    "tcp_keepalives_idle, which every pool uses",
			change:  func(c *config.Config) { c.General.TCPKeepalivesIdle = time.Minute },
			retired: all,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev, retired := build(t, testConfig(nil), nil)
			if len(retired) != 0 {
				t.Fatalf("first Build retired %d targets", len(retired))
			}
			before := map[string]*Target{}
			prev.Targets(func(db, user string, tg *Target) { before[db+"/"+user] = tg })

			cfg := testConfig(tc.change)
			next, retired := build(t, cfg, prev)
			if next.Generation != prev.Generation+1 {
				t.Errorf("generation %d after %d", next.Generation, prev.Generation)
			}
			var kept []string
			next.Targets(func(db, user string, tg *Target) {
				if nu := cfg.Pools[db].User(user); !config.PoolsEqual(tg.Pool, cfg.Pools[db]) || nu == nil || *tg.User != *nu {
					t.Errorf("%s/%s: target does not have the new configuration", db, user)
				}
				if old := before[db+"/"+user]; old == tg {
					kept = append(kept, db+"/"+user)
				} else if old != nil && old.Shards[0][0].Pool == tg.Shards[0][0].Pool {
					t.Errorf("%s/%s: a new target shares the server pools of the old one", db, user)
				}
			})
			sort.Strings(kept)
			if !slices.Equal(kept, tc.kept) {
				t.Errorf("kept %v, want %v", kept, tc.kept)
			}
			var gone []string
			for _, tg := range retired {
				k := tg.Pool.Name + "/" + tg.User.Username
				if before[k] != tg {
					t.Errorf("retired %s is not a target of the previous table", k)
				}
				gone = append(gone, k)
			}
			sort.Strings(gone)
			if !slices.Equal(gone, tc.retired) {
				t.Errorf("retired %v, want %v", gone, tc.retired)
			}
			wantKeys := slices.Sorted(func(yield func(string) bool) {
				for db, p := range cfg.Pools {
					for _, u := range p.Users {
						if !yield(db + "/" + u.Username) {
							return
						}
					}
				}
			})
			if got := keys(next); !slices.Equal(got, wantKeys) {
				t.Errorf("targets %v, want %v", got, wantKeys)
			}
		})
	}
}

func TestBuildGenerationIncrements(t *testing.T) {
	tbl, _ := build(t, testConfig(nil), nil)
	if tbl.Generation != 0 {
		t.Fatalf("first table has generation %d", tbl.Generation)
	}
	for want := uint64(1); want <= 3; want++ {
		tbl, _ = build(t, testConfig(nil), tbl)
		if tbl.Generation != want {
			t.Fatalf("generation %d, want %d", tbl.Generation, want)
		}
	}
}

// Build must leave the previous table as it was: clients still use it while a reload runs, and
// a Table is documented as an immutable snapshot.
func TestBuildLeavesPreviousTableUnchanged(t *testing.T) {
	oldCfg := testConfig(nil)
	prev, _ := build(t, oldCfg, nil)
	tg := prev.Lookup("app", "alice")
	build(t, testConfig(nil), prev)
	if tg.Pool != oldCfg.Pools["app"] || tg.User != oldCfg.Pools["app"].Users[0] {
		t.Fatal("Build changed the Pool and User of a target of the previous table " +
			"(a data race with sessions reading tg.User during a reload)")
	}
}

func TestLookup(t *testing.T) {
	tbl, _ := build(t, testConfig(func(c *config.Config) {
		c.Pools["other"].Users = append(c.Pools["other"].Users, &config.User{Username: "dan", PoolSize: 1, PoolMode: "session"})
	}), nil)
	tests := []struct {
		db, user string
		mode     string // "" = no target
		shards   int
	}{
		{db: "app", user: "alice", mode: "transaction", shards: 1},
		{db: "app", user: "bob", mode: "session", shards: 1},
		{db: "other", user: "carol", mode: "transaction", shards: 2}, // the default
		{db: "other", user: "dan", mode: "session", shards: 2},
		{db: "app", user: "carol"},
		{db: "nope", user: "alice"},
		{db: "", user: ""},
	}
	for _, tc := range tests {
		t.Run(tc.db+"/"+tc.user, func(t *testing.T) {
			tg := tbl.Lookup(tc.db, tc.user)
			if tc.mode == "" {
				if tg != nil {
					t.Fatalf("found a target for %s/%s", tc.db, tc.user)
				}
				return
			}
			if tg == nil {
				t.Fatal("no target")
			}
			if tg.Mode != tc.mode || len(tg.Shards) != tc.shards || tg.User.Username != tc.user {
				t.Fatalf("mode %q, %d shards, user %q; want %q, %d, %q",
					tg.Mode, len(tg.Shards), tg.User.Username, tc.mode, tc.shards, tc.user)
			}
		})
	}
}

func TestTargetServerParams(t *testing.T) {
	tbl, _ := build(t, testConfig(nil), nil)
	tests := []struct {
		user string
		want backend.Params // KeepAlive not compared
	}{
		{user: "alice", want: backend.Params{
			Host: "10.0.0.1", Port: 5432, Database: "app_db", User: "alice", Password: "a-secret",
			Startup: map[string]string{}, ConnectTimeout: 5 * time.Second,
			UserTimeout: 10 * time.Second, StatementCacheSize: 64,
		}},
		{user: "bob", want: backend.Params{
			Host: "10.0.0.1", Port: 5432, Database: "app_db", User: "app_rw", Password: "rw-secret",
			Startup: map[string]string{"statement_timeout": "1500"}, ConnectTimeout: 250 * time.Millisecond,
			UserTimeout: 10 * time.Second, StatementCacheSize: 64,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			prim, err := tbl.Lookup("app", tc.user).Primary()
			if err != nil {
				t.Fatal(err)
			}
			got := *prim.Pool.Params()
			if !got.KeepAlive.Enable || got.KeepAlive.Idle != 5*time.Second || got.KeepAlive.Count != 5 {
				t.Errorf("keepalive %+v, want enabled, idle 5s (the default), count 5", got.KeepAlive)
			}
			got.KeepAlive = tc.want.KeepAlive
			if got.Credentials == nil || got.Credentials != tbl.Lookup("app", tc.user).Creds {
				t.Errorf("the pool's Credentials are not the target's")
			}
			got.Credentials = nil
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("params\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestPick(t *testing.T) {
	type nodeState struct {
		role     string // in the file
		recovery *bool  // the checker's finding; nil: not checked yet
		banned   bool
		lagged   bool
		timeline int64
	}
	yes, no := true, false
	tests := []struct {
		name      string
		nodes     []nodeState
		role      Role
		discovery bool
		avoid     int   // index of the server to avoid, -1 for none
		want      []int // acceptable picks; nil: ErrNoServer
	}{
		{"write: the primary listed second", []nodeState{{role: "replica"}, {role: "primary"}}, Primary, true, -1, []int{1}},
		{"write: no primary in the file: the first", []nodeState{{role: "replica"}, {role: "replica"}}, Primary, true, -1, []int{0}},
		{"write: a promoted replica", []nodeState{{role: "primary", banned: true}, {role: "replica", recovery: &no, timeline: 2}}, Primary, true, -1, []int{1}},
		{"write: promoted replica beats an old primary back alone", []nodeState{{role: "primary", recovery: &no, timeline: 1}, {role: "replica", recovery: &no, timeline: 2}}, Primary, true, -1, []int{1}},
		{"write: listed primary in recovery is a replica", []nodeState{{role: "primary", recovery: &yes}, {role: "replica", recovery: &no}}, Primary, true, -1, []int{1}},
		{"write: discovery off keeps the file's roles", []nodeState{{role: "primary", recovery: &yes}, {role: "replica", recovery: &no}}, Primary, false, -1, []int{0}},
		{"write: the primary down and nothing promoted: still the primary", []nodeState{{role: "primary", banned: true}, {role: "replica", recovery: &yes}}, Primary, true, -1, []int{0}},
		{"read: replicas only", []nodeState{{role: "primary"}, {role: "replica"}, {role: "replica"}}, Replica, true, -1, []int{1, 2}},
		{"read: any includes the primary", []nodeState{{role: "primary"}, {role: "replica"}}, Any, true, -1, []int{0, 1}},
		{"read: a banned replica takes none", []nodeState{{role: "primary"}, {role: "replica", banned: true}, {role: "replica"}}, Replica, true, -1, []int{2}},
		{"read: a lagging replica takes none", []nodeState{{role: "primary"}, {role: "replica", lagged: true}, {role: "replica"}}, Replica, true, -1, []int{2}},
		{"read: every replica banned: the primary", []nodeState{{role: "primary"}, {role: "replica", banned: true}, {role: "replica", lagged: true}}, Replica, true, -1, []int{0}},
		{"read: avoid the one that failed", []nodeState{{role: "primary"}, {role: "replica"}, {role: "replica"}}, Replica, true, 1, []int{2}},
		{"one server", []nodeState{{role: "replica"}}, Primary, true, -1, []int{0}},
		{"one server, avoided", []nodeState{{role: "replica"}}, Any, true, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var servers []*Server
			for i, ns := range tc.nodes {
				n := &Node{Host: "h", Port: i, Configured: ns.role}
				if ns.recovery != nil {
					n.checked.Store(true)
					n.recovery.Store(*ns.recovery)
				}
				if ns.banned {
					n.bannedUntil.Store(time.Now().Add(time.Hour).UnixNano())
				}
				n.lagged.Store(ns.lagged)
				n.timeline.Store(ns.timeline)
				servers = append(servers, &Server{Role: ns.role, Node: n})
			}
			tg := &Target{Shards: [][]*Server{servers}}
			tg.settings.Store(&config.Pool{RoleDiscovery: tc.discovery, LoadBalancingMode: config.BalanceRoundRobin})
			var avoid *Server
			if tc.avoid >= 0 {
				avoid = servers[tc.avoid]
			}
			seen := map[int]bool{}
			for range 20 {
				got, err := tg.Pick(0, tc.role, avoid)
				if tc.want == nil {
					if !errors.Is(err, ErrNoServer) {
						t.Fatalf("Pick: %v, %v; want ErrNoServer", got, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				i := slices.Index(servers, got)
				if !slices.Contains(tc.want, i) {
					t.Fatalf("Pick chose server %d; want one of %v", i, tc.want)
				}
				seen[i] = true
			}
			if len(seen) != len(tc.want) {
				t.Errorf("round robin used servers %v; want every one of %v", seen, tc.want)
			}
		})
	}
	if _, err := (&Target{}).Pick(0, Any, nil); !errors.Is(err, ErrNoServer) {
		t.Errorf("no shards: %v; want ErrNoServer", err)
	}
}

func TestPrimaryWithoutServer(t *testing.T) {
	if _, err := (&Target{}).Primary(); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Primary: %v, want ErrNoServer", err)
	}
}

func TestTargetCloseClosesPoolsOnce(t *testing.T) {
	tbl, _ := build(t, testConfig(nil), nil)
	tg := tbl.Lookup("other", "carol")
	tg.Close()
	tg.Close()
	for i, sh := range tg.Shards {
		for _, s := range sh {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := s.Pool.Checkout(ctx) // a closed pool fails at once, without dialing
			cancel()
			if !errors.Is(err, pool.ErrClosed) {
				t.Fatalf("shard %d: Checkout after Close: %v, want the pool closed", i, err)
			}
		}
	}
}

func TestStatementSet(t *testing.T) {
	var s StatementSet // the zero value is ready
	if s.Has("a") {
		t.Fatal("an empty set has a")
	}
	s.Remove("a") // harmless
	s.Add("a")
	s.Add("a")
	s.Add("b")
	if !s.Has("a") || !s.Has("b") {
		t.Fatal("added names missing")
	}
	s.Remove("a")
	if s.Has("a") || !s.Has("b") {
		t.Fatal("Remove removed the wrong name")
	}
}

func TestStatementSetStartsOverWhenFull(t *testing.T) {
	var s StatementSet
	name := func(i int) string { return fmt.Sprintf("s%d", i) }
	for i := range maxKnownStatements {
		s.Add(name(i))
	}
	for i := range maxKnownStatements {
		if !s.Has(name(i)) {
			t.Fatalf("%s missing from a set filled to its bound", name(i))
		}
	}
	s.Add(name(0)) // known: no room needed
	if !s.Has(name(maxKnownStatements - 1)) {
		t.Fatal("adding a known name to a full set dropped the others")
	}
	s.Add("new")
	if !s.Has("new") {
		t.Fatal("the name that overflowed the set is missing")
	}
	if s.Has(name(0)) || len(s.m) != 1 {
		t.Fatalf("a full set did not start over: %d names", len(s.m))
	}
}

func TestStatementSetConcurrentUse(t *testing.T) {
	var s StatementSet
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				n := fmt.Sprintf("s%d", (g*1000+i)%50)
				s.Add(n)
				s.Has(n)
				if i%7 == 0 {
					s.Remove(n)
				}
			}
		}()
	}
	wg.Wait()
}

func TestStatementSetRenewGivesStaleStatementsNewNames(t *testing.T) {
	var s StatementSet
	if got := s.Current("sluice_ab"); got != "sluice_ab" {
		t.Fatalf("Current before any renewal = %q", got)
	}
	s.Renew("sluice_ab", "sluice_ab")
	if got := s.Current("sluice_ab"); got != "sluice_ab_1" {
		t.Fatalf("Current after a renewal = %q, want sluice_ab_1", got)
	}
	// Other servers report the old name stale too: the text is renewed once for them all.
	s.Renew("sluice_ab", "sluice_ab")
	if got := s.Current("sluice_ab"); got != "sluice_ab_1" {
		t.Fatalf("Current after a second report of the old name = %q, want sluice_ab_1", got)
	}
	s.Renew("sluice_ab", "sluice_ab_1")
	if got := s.Current("sluice_ab"); got != "sluice_ab_2" {
		t.Fatalf("Current after the renewed name went stale = %q, want sluice_ab_2", got)
	}
	if got := s.Current("sluice_cd"); got != "sluice_cd" {
		t.Fatalf("another statement's Current = %q", got)
	}
}
