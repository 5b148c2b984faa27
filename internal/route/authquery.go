package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/config"
)

// AuthQuery fetches users' secrets with a pool's auth_query, on the pool's primary of shard 0 as
// auth_query_user, and caches each answer (a secret, or that there is none) for
// auth_query_cache_ttl. Concurrent logins of one user share one fetch. It is safe for concurrent
// use, and carried across reloads that do not change its settings.
type AuthQuery struct {
	query  string // auth_query with pgcat's '$1' written $1: the user name is always bound
	params backend.Params
	ttl    time.Duration
	key    string // the settings it was built from

	mu    sync.Mutex
	cache map[string]*authEntry

	// fetching holds a token per fetch under way: see maxAuthFetches.
	fetching chan struct{}

	// md5Seen is set when the last secret found was an md5 hash, clear when it was a SCRAM
	// verifier (or none was found yet): see PrefersSCRAM.
	md5Seen atomic.Bool
}

type authEntry struct {
	done    chan struct{} // closed when the fetch has finished
	secret  UserSecret
	err     error
	fetched time.Time
}

// UserSecret is what auth_query returned for one user. Value is an md5 hash ("md5…"), a SCRAM
// verifier or a plain password; it must never be logged or shown.
type UserSecret struct {
	Value string
	Found bool // false: no row, or a NULL secret: no such user
	// Cached is set when the answer came from the cache rather than from a fetch made for
	// this call, so a failed login may be worth a fresh fetch.
	Cached bool
}

const (
	// maxAuthCache bounds the cache, which unknown user names also fill: when full, finished
	// entries are dropped.
	maxAuthCache = 10000
	// minRefetch is how soon after a fetch a failed login may fetch the same user again, so
	// that password guessing cannot make sluice query the server at the guesser's pace.
	minRefetch = time.Second
	// maxAuthFetches bounds the fetches under way at once, each on a connection of its own:
	// with auth_query_any_user every new name a stranger logs in with is a fetch, and without
	// a bound a flood of them would open server connections up to the server's
	// max_connections, before anybody has authenticated. Beyond it, logins wait (within their
	// timeout).
	maxAuthFetches = 8
)

func newAuthQuery(g *config.General, pc *config.Pool) *AuthQuery {
	if pc.AuthQuery == "" || len(pc.Shards) == 0 || len(pc.Shards[0].Servers) == 0 {
		return nil
	}
	sh := pc.Shards[0]
	sv := sh.Servers[0]
	for _, s := range sh.Servers {
		if s.Role == config.RolePrimary {
			sv = s
			break
		}
	}
	a := &AuthQuery{
		query: strings.ReplaceAll(pc.AuthQuery, "'$1'", "$1"),
		params: backend.Params{
			Host: sv.Host, Port: sv.Port, Database: sh.Database,
			User: pc.AuthQueryUser, Password: pc.AuthQueryPassword,
			ConnectTimeout: g.ConnectTimeout,
			KeepAlive:      keepAlive(g),
			TLS:            serverTLS(g),
			VerifyHost:     g.ServerTLSMode == config.ServerTLSVerifyFull,
			TLSOptional:    g.ServerTLSMode == config.ServerTLSPrefer,
		},
		ttl:      g.AuthQueryCacheTTL,
		cache:    map[string]*authEntry{},
		fetching: make(chan struct{}, maxAuthFetches),
	}
	a.key = fmt.Sprintf("%q %q %q %s %s:%d/%s %s %s", pc.AuthQuery, pc.AuthQueryUser, pc.AuthQueryPassword,
		g.AuthQueryCacheTTL, sv.Host, sv.Port, sh.Database, g.ServerTLSMode, g.ServerTLSCAFile)
	return a
}

// Secret returns the user's secret, from the cache while it is younger than the TTL, else
// fetched. An error (the server is down, the query fails or returns more than one row) is not
// cached and never holds the secret.
func (a *AuthQuery) Secret(ctx context.Context, user string) (UserSecret, error) {
	return a.get(ctx, user, false)
}

// PrefersSCRAM reports whether the secrets this query finds are SCRAM verifiers, as far as the
// last one found shows (and before any, as Postgres stores passwords by default). A user it does
// not find goes through the exchange real users get, so the method says nothing about who
// exists, as Postgres does with its password_encryption.
func (a *AuthQuery) PrefersSCRAM() bool { return !a.md5Seen.Load() }

// Refetch fetches the user's secret again after a failed login, unless the cached one is less
// than a second old; ok is false when it did not fetch.
func (a *AuthQuery) Refetch(ctx context.Context, user string) (s UserSecret, ok bool, err error) {
	a.mu.Lock()
	e := a.cache[user]
	if e != nil {
		select {
		case <-e.done:
			if time.Since(e.fetched) < minRefetch {
				a.mu.Unlock()
				return UserSecret{}, false, nil
			}
		default:
		}
	}
	a.mu.Unlock()
	s, err = a.get(ctx, user, true)
	return s, err == nil, err
}

func (a *AuthQuery) get(ctx context.Context, user string, refresh bool) (UserSecret, error) {
	a.mu.Lock()
	e := a.cache[user]
	if e != nil {
		select {
		case <-e.done:
			if refresh || e.err != nil || time.Since(e.fetched) >= a.ttl {
				e = nil
			}
		default: // a fetch in flight: wait for it
		}
	}
	if e != nil {
		a.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return UserSecret{}, ctx.Err()
		}
		s := e.secret
		s.Cached = true
		return s, e.err
	}
	if len(a.cache) >= maxAuthCache {
		for k, old := range a.cache {
			select {
			case <-old.done:
				delete(a.cache, k)
			default:
			}
		}
	}
	e = &authEntry{done: make(chan struct{})}
	a.cache[user] = e
	a.mu.Unlock()

	e.secret, e.err = a.fetch(ctx, user)
	e.fetched = time.Now()
	if e.secret.Found {
		a.md5Seen.Store(strings.HasPrefix(e.secret.Value, "md5"))
	}
	if e.err != nil {
		a.mu.Lock()
		if a.cache[user] == e {
			delete(a.cache, user)
		}
		a.mu.Unlock()
	}
	close(e.done)
	return e.secret, e.err
}

// fetch runs the query on a new connection as auth_query_user.
func (a *AuthQuery) fetch(ctx context.Context, user string) (UserSecret, error) {
	select {
	case a.fetching <- struct{}{}:
		defer func() { <-a.fetching }()
	case <-ctx.Done():
		return UserSecret{}, fmt.Errorf("auth_query: %d fetches under way already: %w", maxAuthFetches, ctx.Err())
	}
	c, err := backend.Dial(ctx, &a.params)
	if err != nil {
		return UserSecret{}, fmt.Errorf("auth_query: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	rows, err := c.QueryRows(a.query, user)
	if err != nil {
		return UserSecret{}, fmt.Errorf("auth_query for user %q on %s: %w", user, c.Addr(), err)
	}
	return secretFromRows(rows, user)
}

// secretFromRows reads auth_query's answer: no row is no user; one row of one column is the
// secret; with more columns, the first is the user name and the last the secret. A NULL secret
// means the user cannot log in with a password, like no user.
func secretFromRows(rows [][][]byte, user string) (UserSecret, error) {
	switch {
	case len(rows) == 0:
		return UserSecret{}, nil
	case len(rows) > 1:
		return UserSecret{}, fmt.Errorf("auth_query returned %d rows for user %q, want at most one", len(rows), user)
	case len(rows[0]) == 0:
		return UserSecret{}, errors.New("auth_query returned no columns")
	}
	row := rows[0]
	if len(row) > 1 && row[0] != nil && string(row[0]) != user {
		return UserSecret{}, fmt.Errorf("auth_query returned the row of another user for %q", user)
	}
	v := row[len(row)-1]
	if v == nil || len(v) == 0 {
		return UserSecret{}, nil
	}
	return UserSecret{Value: string(v), Found: true}, nil
}

// checkParams returns how the health checker logs in to a server: as the pool's first user, or,
// when that user's secret comes from auth_query (nothing to log in with until a client has), as
// auth_query_user.
func checkParams(pc *config.Pool, p backend.Params) backend.Params {
	p.Mirrors = nil // the checker's queries are its own, not the pool's traffic
	if p.Password == "" && pc.AuthQuery != "" {
		p.User, p.Password, p.Credentials = pc.AuthQueryUser, pc.AuthQueryPassword, nil
	}
	return p
}
