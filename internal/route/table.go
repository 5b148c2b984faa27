// Package route decides which server a client's query goes to. Each (database, user) has one pool
// per server of each shard; Pick chooses among a shard's servers by role, health and lag, which a
// background checker keeps up to date; sharding builds on this table.
package route

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/auth"
	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/hooks"
	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/plugin"
)

// Table is an immutable snapshot of the routing state built from one configuration. A reload
// builds a new Table that reuses the Targets of pools whose configuration did not change.
type Table struct {
	Config *config.Config
	// Generation increases with every reload, so a client can tell its cached Target is stale.
	Generation uint64
	dbs        map[string]map[string]*Target
	// nodes are the servers by host, port and database, kept across reloads so that bans and
	// roles found by the checker survive them.
	nodes  map[string]*Node
	checks *Checks
	// classifiers hold each pool's query classifier (and its cache), kept across reloads that
	// leave the pool's function lists alone.
	classifiers map[string]*classify.Classifier
	sharding    map[string]*Sharding
	// Plugins are the configuration's plugins, set up by the caller of Build before the table
	// is published.
	Plugins *hooks.Set
	// authq are the pools' auth_query fetchers and caches, by database.
	authq map[string]*AuthQuery

	// mu guards dyn and next. dyn holds the targets of users who are not in the file and
	// logged in through auth_query (auth_query_any_user), created on demand; next is the Table
	// that replaced this one at a reload, where such targets are created from then on.
	mu   sync.Mutex
	dyn  map[string]map[string]*Target
	next *Table
}

// Classifier returns the query classifier of database db's pool.
func (t *Table) Classifier(db string) *classify.Classifier { return t.classifiers[db] }

// Target is what a client logs in to: one user of one pool, with the server pools behind it.
type Target struct {
	Pool *config.Pool
	User *config.User
	Mode string // "session", "transaction" or "statement"
	// Shards[i] lists the server pools of shard i; Shards[i][0] is its primary when it has one.
	Shards [][]*Server
	// scram caches the user's SCRAM verifier: deriving one from a plain password costs 4096
	// rounds of PBKDF2, too much for every login.
	scramOnce sync.Once
	scram     *auth.Verifier
	scramErr  error
	// Creds are what client logins learned to log in to the servers as this user without a
	// password in the file (auth_query's secret, a SCRAM ClientKey); every server pool of the
	// target dials with them. A reload that rebuilds the target carries them over.
	Creds *backend.Credentials
	// Statements are the transaction-mode statements known to prepare on this target's servers.
	Statements StatementSet
	// Spellings are the spellings this target's servers gave settings clients asked for at login.
	Spellings SettingCache
	closed    bool
	// settings are the pool's routing settings, replaced at a reload that keeps the target.
	settings atomic.Pointer[config.Pool]
	rr       atomic.Uint32 // round_robin's counter
	// plugins are the plugins serving the target's pool, for hooks that run where only the
	// target is known (a new server connection).
	plugins atomic.Pointer[hooks.Chain]
}

// SetPlugins publishes set as the table's plugins, to its sessions and to its pools' new
// connections.
func (t *Table) SetPlugins(set *hooks.Set) {
	t.Plugins = set
	t.Targets(func(db, _ string, tg *Target) { tg.plugins.Store(set.Chain(db)) })
}

// onConnect runs the pool's ServerConnect hooks on a new server connection.
func (tg *Target) onConnect(sc *backend.ServerConn) error {
	ch := tg.plugins.Load()
	if !ch.HasServerConnect() {
		return nil
	}
	return ch.ServerConnect(context.Background(), &plugin.Server{
		Database: tg.Pool.Name, User: tg.User.Username, Addr: sc.Addr(),
		Exec: func(sql string) error {
			_, err := sc.Exec(sql)
			return err
		},
	})
}

// Settings returns the pool's current configuration, for the routing settings: a reload that
// keeps the target's servers may still change them.
func (tg *Target) Settings() *config.Pool { return tg.settings.Load() }

// Server is one server's pool and its role in the file; Node is what is known of the server.
type Server struct {
	Role string
	Pool *pool.Pool
	Node *Node
}

// ErrNoServer is returned when a shard has no server to take a query.
var ErrNoServer = errors.New("no server available")

// Lookup returns the target for database db and user, or nil. Users who logged in through
// auth_query without being in the file are found too, once DynamicTarget made theirs.
func (t *Table) Lookup(db, user string) *Target {
	if tg := t.dbs[db][user]; tg != nil {
		return tg
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dyn[db][user]
}

// Targets calls fn for every target, those of the file's users and those made by
// DynamicTarget. fn must not call DynamicTarget.
func (t *Table) Targets(fn func(db, user string, tg *Target)) {
	for db, us := range t.dbs {
		for u, tg := range us {
			fn(db, u, tg)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for db, us := range t.dyn {
		for u, tg := range us {
			fn(db, u, tg)
		}
	}
}

// AuthQuery returns the auth_query of pool db, or nil when it has none.
func (t *Table) AuthQuery(db string) *AuthQuery { return t.authq[db] }

// DynamicTarget returns the target of a user who is not in the file and has just logged in to
// pool db through its auth_query, creating it the first time, with the settings of
// config.Pool.DynamicUser. It returns nil when the pool does not allow such users (any more:
// after a reload, the newest Table decides). Call it only after the client's login succeeded, so
// that failed logins create nothing.
func (t *Table) DynamicTarget(db, user string) *Target {
	t.mu.Lock()
	if n := t.next; n != nil {
		t.mu.Unlock()
		return n.DynamicTarget(db, user)
	}
	defer t.mu.Unlock()
	pc := t.Config.Pools[db]
	if pc == nil || !pc.AuthQueryAnyUser || pc.User(user) != nil {
		return nil
	}
	if tg := t.dyn[db][user]; tg != nil {
		return tg
	}
	tg := newTarget(&t.Config.General, pc, pc.DynamicUser(user), t.existingNode, &backend.Credentials{})
	t.checks.mu.Lock()
	if l := t.checks.log; l != nil {
		tg.setMirrorLogger(l)
	}
	t.checks.mu.Unlock()
	if t.dyn == nil {
		t.dyn = map[string]map[string]*Target{}
	}
	if t.dyn[db] == nil {
		t.dyn[db] = map[string]*Target{}
	}
	t.dyn[db][user] = tg
	return tg
}

// existingNode returns the Node Build made for a server. Every server of a pool has one, made
// for the pool's users in the file; the map is only read after Build.
func (t *Table) existingNode(host string, port int, db, role string) *Node {
	if n := t.nodes[nodeKey(host, port, db)]; n != nil {
		return n
	}
	return &Node{Host: host, Port: port, Database: db, Configured: role}
}

// setMirrorLogger sets where the target's mirrors log.
func (tg *Target) setMirrorLogger(l *slog.Logger) {
	for _, sh := range tg.Shards {
		for _, sv := range sh {
			for _, m := range sv.Pool.Params().Mirrors {
				m.SetLogger(l)
			}
		}
	}
}

// Primary returns the server that takes writes on shard 0.
func (tg *Target) Primary() (*Server, error) { return tg.Pick(0, Primary, nil) }

// Build makes a Table from cfg. Targets of prev whose pool configuration is unchanged are reused,
// so their connections survive a reload; the others are returned in retired for the caller to
// close once clients have moved on.
func Build(cfg *config.Config, prev *Table) (t *Table, retired []*Target) {
	t = &Table{Config: cfg, dbs: map[string]map[string]*Target{}, nodes: map[string]*Node{},
		classifiers: map[string]*classify.Classifier{}, authq: map[string]*AuthQuery{}, sharding: map[string]*Sharding{}}
	if prev != nil {
		t.Generation = prev.Generation + 1
		t.checks = prev.checks
	} else {
		t.checks = &Checks{groups: map[string]*checkGroup{}}
	}
	node := func(host string, port int, db, role string) *Node {
		k := nodeKey(host, port, db)
		if n := t.nodes[k]; n != nil {
			return n
		}
		n := (*Node)(nil)
		if prev != nil {
			n = prev.nodes[k]
		}
		if n == nil || n.Configured != role {
			n = &Node{Host: host, Port: port, Database: db, Configured: role}
		}
		t.nodes[k] = n
		return n
	}
	g := &cfg.General
	kept := map[*Target]bool{}
	reused := map[string]bool{}
	for db, pc := range cfg.Pools {
		var old *config.Pool
		if prev != nil {
			old = prev.Config.Pools[db]
		}
		t.classifiers[db] = classifierFor(pc, old, prev)
		t.sharding[db] = newSharding(pc)
		reuse := old != nil && config.PoolsEqual(old, pc) && generalPoolKeysEqual(&prev.Config.General, g)
		reused[db] = reuse
		if aq := newAuthQuery(g, pc); aq != nil {
			if prev != nil && prev.authq[db] != nil && prev.authq[db].key == aq.key {
				aq = prev.authq[db] // keep its cache
			}
			t.authq[db] = aq
		}
		users := map[string]*Target{}
		for _, u := range pc.Users {
			if reuse {
				if tg := prev.dbs[db][u.Username]; tg != nil {
					tg.settings.Store(pc)
					for _, sh := range tg.Shards {
						for _, sv := range sh {
							// Same servers, same roles: node finds the same Node, and keeps it.
							node(sv.Node.Host, sv.Node.Port, sv.Node.Database, sv.Role)
						}
					}
					users[u.Username] = tg
					kept[tg] = true
					continue
				}
			}
			creds := &backend.Credentials{}
			if prev != nil {
				if tg := prev.dbs[db][u.Username]; tg != nil && tg.User.NoPassword && u.NoPassword {
					creds = tg.Creds // what logins learned still logs in
				}
			}
			users[u.Username] = newTarget(g, pc, u, node, creds)
		}
		t.dbs[db] = users
	}
	if prev != nil {
		// Users who logged in through auth_query keep their targets where the pool still lets
		// them in: the same target when the pool is unchanged, else a new one with what their
		// logins learned. New ones are made in t from now on.
		prev.mu.Lock()
		prev.next = t
		for db, us := range prev.dyn {
			pc := cfg.Pools[db]
			for name, tg := range us {
				if pc == nil || !pc.AuthQueryAnyUser || pc.User(name) != nil {
					continue
				}
				if t.dyn == nil {
					t.dyn = map[string]map[string]*Target{}
				}
				if t.dyn[db] == nil {
					t.dyn[db] = map[string]*Target{}
				}
				if reused[db] {
					tg.settings.Store(pc)
					t.dyn[db][name] = tg
					kept[tg] = true
					continue
				}
				t.dyn[db][name] = newTarget(g, pc, pc.DynamicUser(name), t.existingNode, tg.Creds)
			}
		}
		prev.mu.Unlock()
		prev.Targets(func(_, _ string, tg *Target) {
			if !kept[tg] {
				retired = append(retired, tg)
			}
		})
	}
	return t, retired
}

// maxParsedLength caps query_parser_max_length: pg_query recurses once per level of the parse
// tree, and a text of deeply nested expressions (1+1+1+..., two bytes a level) past about 44 KB
// overflows the C stack and takes the process down.
const maxParsedLength = 32 << 10

// classifierFor returns the pool's classifier: the previous one when the function lists did not
// change, so its cache survives a reload.
func classifierFor(pc, old *config.Pool, prev *Table) *classify.Classifier {
	// Every pool gets one, parser on or off: SET SERVER ROLE TO 'auto' turns the parser on for
	// a client, and a classifier costs nothing until it is used.
	if old != nil && prev != nil && prev.classifiers[pc.Name] != nil &&
		slices.Equal(old.WriteFunctions, pc.WriteFunctions) && old.StrictFunctions == pc.StrictFunctions &&
		old.QueryParserMaxLength == pc.QueryParserMaxLength {
		return prev.classifiers[pc.Name]
	}
	return classify.New(classify.Options{
		WriteFunctions:  pc.WriteFunctions,
		StrictFunctions: pc.StrictFunctions,
		MaxLength:       min(pc.QueryParserMaxLength, maxParsedLength),
	})
}

// generalPoolKeysEqual reports whether the general settings that shape server pools are equal.
func generalPoolKeysEqual(a, b *config.General) bool {
	return a.ConnectTimeout == b.ConnectTimeout && a.IdleTimeout == b.IdleTimeout &&
		a.ServerLifetime == b.ServerLifetime && a.HealthcheckDelay == b.HealthcheckDelay &&
		a.HealthcheckTimeout == b.HealthcheckTimeout && a.ServerResetQuery == b.ServerResetQuery &&
		a.TCPKeepalivesIdle == b.TCPKeepalivesIdle && a.TCPKeepalivesCount == b.TCPKeepalivesCount &&
		a.TCPKeepalivesInterval == b.TCPKeepalivesInterval && a.TCPUserTimeout == b.TCPUserTimeout &&
		a.ServerRoundRobin == b.ServerRoundRobin && a.DNSCacheEnabled == b.DNSCacheEnabled && a.DNSMaxTTL == b.DNSMaxTTL &&
		a.ServerTLSMode == b.ServerTLSMode && a.ServerTLSCAFile == b.ServerTLSCAFile
}

func newTarget(g *config.General, pc *config.Pool, u *config.User, node func(host string, port int, db, role string) *Node, creds *backend.Credentials) *Target {
	mode := u.PoolMode
	if mode == "" {
		mode = pc.PoolMode
	}
	if mode == "" {
		mode = "transaction"
	}
	tg := &Target{Pool: pc, User: u, Mode: mode, Creds: creds}
	tg.settings.Store(pc)
	serverUser, serverPass := u.ServerUsername, u.ServerPassword
	if serverUser == "" {
		serverUser = u.Username
	}
	if serverPass == "" {
		serverPass = u.Password
	}
	startup := map[string]string{}
	if u.StatementTimeout > 0 {
		startup["statement_timeout"] = fmt.Sprint(u.StatementTimeout.Milliseconds())
	}
	for _, sh := range pc.Shards {
		var servers []*Server
		for i, sv := range sh.Servers {
			params := backend.Params{
				Host: sv.Host, Port: sv.Port, Database: sh.Database,
				User: serverUser, Password: serverPass, Startup: startup,
				ConnectTimeout:     u.ConnectTimeout,
				KeepAlive:          keepAlive(g),
				UserTimeout:        g.TCPUserTimeout,
				StatementCacheSize: pc.PreparedStatementsCacheSize,
				TLS:                serverTLS(g),
				VerifyHost:         g.ServerTLSMode == config.ServerTLSVerifyFull,
				TLSOptional:        g.ServerTLSMode == config.ServerTLSPrefer,
				Credentials:        creds,
				// Server messages stream through whatever their size: max_message_size guards
				// against clients.
			}
			// pgcat's mirrors: each gets what this server gets, logged in as the pool logs in
			// to the server.
			for _, m := range sh.Mirrors {
				if m.Server == i {
					mp := params
					mp.Host, mp.Port = m.Host, m.Port
					params.Mirrors = append(params.Mirrors, &backend.Mirror{Params: mp})
				}
			}
			p := pool.New(params, pool.Options{
				Size: u.PoolSize, MinSize: u.MinPoolSize,
				// The user's own timeouts, else its pool's, else [general]'s (config settles it).
				Lifetime: u.ServerLifetime, IdleTimeout: u.IdleTimeout,
				HealthcheckDelay: g.HealthcheckDelay, HealthcheckTimeout: g.HealthcheckTimeout,
				RoundRobin:   g.ServerRoundRobin,
				ResolveEvery: resolveEvery(g),
				ResetQuery:   g.ServerResetQuery,
				OnConnect:    tg.onConnect,
			})
			n := node(sv.Host, sv.Port, sh.Database, sv.Role)
			n.addPool(p)
			servers = append(servers, &Server{Role: sv.Role, Pool: p, Node: n})
		}
		tg.Shards = append(tg.Shards, servers)
	}
	return tg
}

// resolveEvery is how often a server pool resolves its host name again: dns_max_ttl when
// dns_cache_enabled, else never.
func resolveEvery(g *config.General) time.Duration {
	if !g.DNSCacheEnabled {
		return 0
	}
	return g.DNSMaxTTL
}

// serverTLS builds the TLS configuration for server connections from server_tls_mode.
func serverTLS(g *config.General) *tls.Config {
	switch g.ServerTLSMode {
	case config.ServerTLSVerifyFull:
		return &tls.Config{RootCAs: g.ServerRootCAs, MinVersion: tls.VersionTLS12}
	case config.ServerTLSVerifyCA:
		roots := g.ServerRootCAs
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The chain is checked below without the host name, as libpq's verify-ca does.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				return verifyChain(raw, roots)
			},
		}
	case config.ServerTLSRequire, config.ServerTLSPrefer:
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	}
	return nil
}

// verifyChain checks that the certificates a server sent chain to roots (nil: the system's).
func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}

func keepAlive(g *config.General) (k net.KeepAliveConfig) {
	k.Enable = true
	k.Idle = g.TCPKeepalivesIdle
	k.Interval = g.TCPKeepalivesInterval
	k.Count = g.TCPKeepalivesCount
	if k.Idle == 0 {
		k.Idle = 5 * time.Second
	}
	return k
}

// SCRAMVerifier returns the verifier that checks the user's SCRAM logins: the one in the file, or
// one derived once from a plain password with a random salt.
func (tg *Target) SCRAMVerifier() (*auth.Verifier, error) {
	tg.scramOnce.Do(func() {
		if auth.IsSCRAMVerifier(tg.User.Password) {
			tg.scram, tg.scramErr = auth.ParseVerifier(tg.User.Password)
			return
		}
		if len(tg.User.Password) == 35 && strings.HasPrefix(tg.User.Password, "md5") {
			// The hash is not the password: deriving a verifier from it would let the hash
			// itself log in.
			tg.scramErr = errors.New("the password is stored as an md5 hash, which SCRAM cannot check")
			return
		}
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			tg.scramErr = err
			return
		}
		tg.scram = auth.NewVerifier(tg.User.Password, salt, 4096)
	})
	return tg.scram, tg.scramErr
}

// Close closes every server pool of the target.
func (tg *Target) Close() {
	if tg.closed {
		return
	}
	tg.closed = true
	for _, sh := range tg.Shards {
		for _, s := range sh {
			s.Pool.Close()
		}
	}
}

// StatementSet remembers the server statement names that some server of a target has prepared
// successfully. A client's Parse of such a statement is answered without a server: the Parse is
// sent later, in front of the Bind that needs it. That keeps clients that prepare synchronously
// outside a transaction (pgbench -M prepared) from waiting for a server just to prepare.
//
// It also keeps the renewals of statements whose plans went stale (see Renew): clients that
// prepare such a text get a new server name, so that they never share a statement a server
// prepared before a schema change.
type StatementSet struct {
	mu sync.RWMutex
	m  map[string]struct{}
	// renewed maps a base name to its number of renewals; nrenewed is its size, read without
	// the lock so that the usual case (no statement ever renewed) costs no map lookup.
	renewed  map[string]uint32
	nrenewed atomic.Int32
}

// maxKnownStatements bounds a StatementSet; when full it starts over.
const maxKnownStatements = 10000

// Has reports whether name was prepared successfully before.
func (s *StatementSet) Has(name string) bool {
	s.mu.RLock()
	_, ok := s.m[name]
	s.mu.RUnlock()
	return ok
}

// Add records that name was prepared successfully.
func (s *StatementSet) Add(name string) {
	if s.Has(name) {
		return
	}
	s.mu.Lock()
	if s.m == nil || len(s.m) >= maxKnownStatements {
		s.m = make(map[string]struct{})
	}
	s.m[name] = struct{}{}
	s.mu.Unlock()
}

// Current returns the server name for a statement whose name, before any renewal, is base:
// base itself, or base with the renewal's number appended ("_1", "_2", ...) after Renew.
func (s *StatementSet) Current(base string) string {
	if s.nrenewed.Load() == 0 {
		return base
	}
	s.mu.RLock()
	n := s.renewed[base]
	s.mu.RUnlock()
	if n == 0 {
		return base
	}
	return base + "_" + strconv.FormatUint(uint64(n), 10)
}

// Renew gives the statement base a new server name after a server reported that failed, its
// current name, stale (Postgres' "cached plan must not change result type" after a schema
// change). Statements already prepared under failed stay as they are: the clients that use them
// get the error, as they would from Postgres, and those that prepare the text again get the new
// name. A failed name that is no longer current (another client renewed it first) changes
// nothing. When maxKnownStatements bases were renewed, the record starts over.
func (s *StatementSet) Renew(base, failed string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.renewed[base]
	cur := base
	if n > 0 {
		cur = base + "_" + strconv.FormatUint(uint64(n), 10)
	}
	if cur != failed {
		return
	}
	if s.renewed == nil || len(s.renewed) >= maxKnownStatements {
		s.renewed = make(map[string]uint32)
	}
	s.renewed[base] = n + 1
	s.nrenewed.Store(int32(len(s.renewed)))
}

// Remove forgets name, after a server failed to prepare it.
func (s *StatementSet) Remove(name string) {
	s.mu.Lock()
	delete(s.m, name)
	s.mu.Unlock()
}

// SettingCache remembers how servers spell a setting's value once it is set, such as DateStyle
// "ISO" as "ISO, MDY": what a client that logs in with the value must be told, as Postgres would
// tell it. It holds at most maxKnownSettings values and then stops learning.
type SettingCache struct {
	mu sync.RWMutex
	m  map[[2]string]string
}

const maxKnownSettings = 4096

// Get returns the server's spelling of value for setting name, when it is known.
func (c *SettingCache) Get(name, value string) (string, bool) {
	c.mu.RLock()
	v, ok := c.m[[2]string{name, value}]
	c.mu.RUnlock()
	return v, ok
}

// Put records that a server spells value for setting name as norm.
func (c *SettingCache) Put(name, value, norm string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[[2]string]string)
	}
	if len(c.m) < maxKnownSettings {
		c.m[[2]string{name, value}] = norm
	}
	c.mu.Unlock()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
