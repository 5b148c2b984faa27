package config

import "slices"

// Pool returns the pool clients reach with database name db, or nil if there is none.
func (c *Config) Pool(db string) *Pool {
	if c == nil {
		return nil
	}
	return c.Pools[db]
}

// User returns the pool's user with the given username, or nil if there is none. Usernames are
// unique within a pool (Load checks).
func (p *Pool) User(name string) *User {
	if p == nil {
		return nil
	}
	for _, u := range p.Users {
		if u.Username == name {
			return u
		}
	}
	return nil
}

// EffectivePoolMode returns the pool mode the user's clients get: the user's own pool_mode if it
// sets one, else the pool's, else the default, "transaction".
func (u *User) EffectivePoolMode(p *Pool) string {
	switch {
	case u.PoolMode != "":
		return u.PoolMode
	case p != nil && p.PoolMode != "":
		return p.PoolMode
	}
	return defaultPoolMode
}

// ServerUser returns the username sluice logs in to the servers with: server_username, or the
// client-facing username when that is unset.
func (u *User) ServerUser() string {
	if u.ServerUsername != "" {
		return u.ServerUsername
	}
	return u.Username
}

// ServerPass returns the password sluice logs in to the servers with: server_password, or the
// client-facing password when that is unset.
func (u *User) ServerPass() string {
	if u.ServerPassword != "" {
		return u.ServerPassword
	}
	return u.Password
}

// PoolsEqual reports whether two pools have the same settings, so that a reload can keep a pool's
// server connections. It compares the pool's own sections only: a change in [general] that
// affects every pool is the caller's to see. Users are compared by username, whatever their
// section numbers; shards by number; servers in their listed order. Two nil pools are equal.
func PoolsEqual(a, b *Pool) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Name != b.Name || a.PoolMode != b.PoolMode || len(a.Users) != len(b.Users) ||
		a.PreparedStatementsCacheSize != b.PreparedStatementsCacheSize ||
		a.AuthQuery != b.AuthQuery || a.AuthQueryUser != b.AuthQueryUser ||
		a.AuthQueryPassword != b.AuthQueryPassword || a.AuthQueryAnyUser != b.AuthQueryAnyUser {
		return false
	}
	for _, ua := range a.Users {
		ub := b.User(ua.Username)
		if ub == nil || *ua != *ub {
			return false
		}
	}
	return slices.EqualFunc(a.Shards, b.Shards, func(x, y *Shard) bool {
		return x.Database == y.Database && slices.Equal(x.Servers, y.Servers) && slices.Equal(x.Mirrors, y.Mirrors)
	})
}

// DynamicUser returns the settings of a user who is not in the file and logs in through the
// pool's auth_query (auth_query_any_user): those of the pool's user named by auth_query_user when
// the pool lists it (pool_size, min_pool_size, pool_mode, statement_timeout, auth_type), else
// sluice's defaults (the pool's timeouts). The user logs in to the servers as itself, with the secret auth_query gave.
func (p *Pool) DynamicUser(name string) *User {
	u := &User{Username: name, PoolSize: defaultPoolSize, NoPassword: true,
		ConnectTimeout: p.ConnectTimeout, IdleTimeout: p.IdleTimeout, ServerLifetime: p.ServerLifetime}
	if t := p.User(p.AuthQueryUser); t != nil {
		u.PoolSize, u.MinPoolSize, u.PoolMode = t.PoolSize, t.MinPoolSize, t.PoolMode
		u.StatementTimeout, u.AuthType = t.StatementTimeout, t.AuthType
		u.ConnectTimeout, u.IdleTimeout, u.ServerLifetime = t.ConnectTimeout, t.IdleTimeout, t.ServerLifetime
	}
	return u
}
