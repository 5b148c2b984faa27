package config

import "testing"

func samplePool() *Pool {
	return &Pool{
		Name:     "app",
		PoolMode: PoolModeTransaction,
		Users: []*User{
			{Username: "a", Password: "pa", PoolSize: 10},
			{Username: "b", Password: "pb", PoolSize: 5, PoolMode: PoolModeSession, ServerUsername: "sb", ServerPassword: "spb"},
		},
		Shards: []*Shard{
			{Database: "app0", Servers: []Server{{"h1", 5432, RolePrimary}, {"h2", 5432, RoleReplica}}},
			{Database: "app1", Servers: []Server{{"h3", 5432, RolePrimary}}},
		},
	}
}

func TestPoolsEqual(t *testing.T) {
	tests := []struct {
		name   string
		change func(p *Pool) *Pool
		equal  bool
	}{
		{"same", func(p *Pool) *Pool { return p }, true},
		{"users renumbered", func(p *Pool) *Pool { p.Users[0], p.Users[1] = p.Users[1], p.Users[0]; return p }, true},
		{"name", func(p *Pool) *Pool { p.Name = "other"; return p }, false},
		{"pool mode", func(p *Pool) *Pool { p.PoolMode = PoolModeSession; return p }, false},
		{"user password", func(p *Pool) *Pool { p.Users[0].Password = "new"; return p }, false},
		{"user pool size", func(p *Pool) *Pool { p.Users[1].PoolSize = 6; return p }, false},
		{"user added", func(p *Pool) *Pool { p.Users = append(p.Users, &User{Username: "c"}); return p }, false},
		{"user replaced", func(p *Pool) *Pool { p.Users[1] = &User{Username: "c"}; return p }, false},
		{"shard database", func(p *Pool) *Pool { p.Shards[1].Database = "x"; return p }, false},
		{"shards swapped", func(p *Pool) *Pool { p.Shards[0], p.Shards[1] = p.Shards[1], p.Shards[0]; return p }, false},
		{"server role", func(p *Pool) *Pool { p.Shards[0].Servers[1].Role = RolePrimary; return p }, false},
		{"server removed", func(p *Pool) *Pool { p.Shards[0].Servers = p.Shards[0].Servers[:1]; return p }, false},
		{"mirror added", func(p *Pool) *Pool { p.Shards[1].Mirrors = []Mirror{{"m", 5432, 0}}; return p }, false},
		{"nil", func(p *Pool) *Pool { return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := samplePool(), tt.change(samplePool())
			if got := PoolsEqual(a, b); got != tt.equal {
				t.Errorf("PoolsEqual = %v, want %v", got, tt.equal)
			}
			if got := PoolsEqual(b, a); got != tt.equal {
				t.Errorf("PoolsEqual (swapped) = %v, want %v", got, tt.equal)
			}
		})
	}
	if !PoolsEqual(nil, nil) {
		t.Error("PoolsEqual(nil, nil) = false")
	}
}

func TestLookups(t *testing.T) {
	p := samplePool()
	cfg := &Config{Pools: map[string]*Pool{"app": p}}
	if cfg.Pool("app") != p || cfg.Pool("nope") != nil {
		t.Error("Config.Pool")
	}
	if (*Config)(nil).Pool("app") != nil || (*Pool)(nil).User("a") != nil {
		t.Error("lookups on nil must return nil")
	}
	a, b := p.User("a"), p.User("b")
	if a == nil || b == nil || p.User("c") != nil {
		t.Fatal("Pool.User")
	}
	tests := []struct {
		name      string
		got, want string
	}{
		{"a's mode is the pool's", a.EffectivePoolMode(p), PoolModeTransaction},
		{"b's mode is its own", b.EffectivePoolMode(p), PoolModeSession},
		{"no pool means the default", a.EffectivePoolMode(nil), PoolModeTransaction},
		{"a's server user", a.ServerUser(), "a"},
		{"a's server password", a.ServerPass(), "pa"},
		{"b's server user", b.ServerUser(), "sb"},
		{"b's server password", b.ServerPass(), "spb"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}
