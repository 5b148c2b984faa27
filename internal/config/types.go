// Package config loads sluice's TOML configuration. It reads pgcat's pgcat.toml unchanged: the same
// sections, keys and meanings, with sluice's own keys beside them.
package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"time"
)

// Config is a loaded, defaulted and validated configuration. It is immutable once returned by Load:
// a reload builds a new Config and the caller diffs the two.
type Config struct {
	// Path is the file the configuration was read from, and Digest the SHA-256 of its content
	// (autoreload compares it with the file's).
	Path    string
	Digest  [sha256.Size]byte
	General General
	// Pools is keyed by the database name clients put in their startup packet.
	Pools map[string]*Pool
	// Plugins are the [plugins.<name>] blocks, in the order of the file.
	Plugins []PluginBlock
}

// PluginBlock is one [plugins.<name>] or [pools.<db>.plugins.<name>] block. Its contents belong to
// the plugin: Decode reads them into the plugin's own configuration value.
type PluginBlock struct {
	Name string
	File string
	Line int
	Raw  map[string]any
}

// Where is the block's place in the file, for messages.
func (b *PluginBlock) Where() string { return formatPos(b.File, b.Line) + "plugins." + b.Name }

// General is the [general] section.
type General struct {
	Host          string // listen address, default "0.0.0.0"
	Port          int    // default 6432
	UnixSocketDir string // "" disables the Unix socket; the socket is DIR/.s.PGSQL.PORT

	ConnectTimeout                 time.Duration // pgcat: connect_timeout, milliseconds in the file; default 5s
	IdleTimeout                    time.Duration // server idle timeout; pgcat idle_timeout ms; default 10m
	ServerLifetime                 time.Duration // pgcat server_lifetime ms; default 1h
	IdleClientInTransactionTimeout time.Duration // pgcat ms; 0 = off
	ShutdownTimeout                time.Duration // pgcat ms; default 60s
	QueryWaitTimeout               time.Duration // sluice: wait for a server from the pool; default 120s (PgBouncer's)
	ClientLoginTimeout             time.Duration // sluice: startup+auth must finish within; default 60s
	HealthcheckTimeout             time.Duration // pgcat ms; default 1s
	HealthcheckDelay               time.Duration // pgcat ms; default 30s
	HealthcheckInterval            time.Duration // sluice ms; the background checker's period, default 1s
	BanTime                        time.Duration // pgcat seconds; default 60s

	TCPKeepalivesIdle     time.Duration // pgcat tcp_keepalives_idle seconds; default 5s
	TCPKeepalivesCount    int           // default 5
	TCPKeepalivesInterval time.Duration // pgcat seconds; default 5s
	// TCPUserTimeout (pgcat's tcp_user_timeout, ms; default 10s) is TCP_USER_TIMEOUT on client
	// and server sockets, Linux only: how long sent data may go unacknowledged before the
	// connection is dropped. 0 leaves the system's default.
	TCPUserTimeout time.Duration
	// TCPDeferAccept (PgBouncer's tcp_defer_accept; default true) sets TCP_DEFER_ACCEPT on the
	// TCP listener, Linux only: the kernel hands sluice a connection when its first bytes have
	// come, so a login's first read finds them instead of waiting once more.
	TCPDeferAccept bool

	// ServerRoundRobin (pgcat's server_round_robin) hands out a server pool's idle connections
	// oldest first, so all of them take turns; false (the default) hands out the most recently
	// used first, so that the ones not needed stay idle and idle_timeout closes them.
	ServerRoundRobin bool
	// WorkerThreads (pgcat's worker_threads) sets GOMAXPROCS at start when above 0; 0 leaves
	// Go's default, the number of CPUs.
	WorkerThreads int
	// Autoreload (pgcat's autoreload, ms) is how often the file is checked for a change, which
	// is then reloaded as on SIGHUP. 0: never.
	Autoreload time.Duration
	// ValidateConfig (pgcat's validate_config, also spelled verify_config; default true)
	// connects to every server at start: a pool whose min_pool_size connections cannot be made
	// stops sluice from starting, as it stops pgcat; other failures are logged.
	ValidateConfig bool
	// DNSCacheEnabled and DNSMaxTTL (pgcat's dns_cache_enabled, dns_max_ttl seconds, default
	// 30s): every DNSMaxTTL, each server's host name is resolved again, and idle connections
	// to an address it no longer resolves to are closed.
	DNSCacheEnabled bool
	DNSMaxTTL       time.Duration

	// PreparedStatements is pgcat 1.x's prepared_statements switch. sluice handles named
	// prepared statements in every pool mode whatever it says; it is kept for SHOW CONFIG.
	PreparedStatements bool
	// PreparedStatementsCacheSize is how many statements sluice keeps prepared on each server
	// connection (least recently used closed first), unless a pool sets its own; default 500.
	PreparedStatementsCacheSize int

	MaxClientConn  int // sluice: default 10000; beyond it clients get FATAL 53300
	MaxMessageSize int // sluice: bytes, default 256 MiB; a larger message is 08P01

	ServerResetQuery string // default "DISCARD ALL", session mode only

	// AuthType is how clients log in unless their user says otherwise: "md5" (default),
	// "scram-sha-256", "cert" or "trust".
	AuthType string

	// AuthQuery, AuthQueryUser and AuthQueryPassword (pgcat's keys) are the defaults of the
	// pools' own; see Pool. AuthQueryCacheTTL (sluice's) is how long a fetched secret is used
	// before it is fetched again; default 5 minutes.
	AuthQuery         string
	AuthQueryUser     string
	AuthQueryPassword string
	AuthQueryCacheTTL time.Duration
	// HBAFile names a pg_hba.conf-format file (relative to this file). HBA are the rules: the
	// inline list (key "hba", lines in pg_hba.conf format) first, then the file's. With rules, a
	// connection no rule matches is refused and a rule's method replaces auth_type.
	HBAFile string
	HBA     []HBARule

	// TLSCertificate and TLSPrivateKey are PEM files (pgcat's keys) for TLS with clients;
	// TLSMode says whether clients may or must use it (default "prefer" with a certificate,
	// "disable" without). TLS is the loaded configuration, rebuilt at every reload so that new
	// certificate files take effect for new connections.
	TLSCertificate string
	TLSPrivateKey  string
	TLSMode        string
	TLSCAFile      string // CAs for client certificates (tls_mode verify-ca, verify-full)
	TLS            *tls.Config

	// Server TLS: server_tls and verify_server_certificate are pgcat's keys; server_tls_mode
	// (libpq's sslmode values) and server_tls_ca_file are sluice's. Load settles ServerTLSMode
	// ("disable" without server_tls; "require", or "verify-full" with verify_server_certificate)
	// and loads the CA file into ServerRootCAs (nil: the system's roots).
	ServerTLS               bool
	VerifyServerCertificate bool
	ServerTLSMode           string
	ServerTLSCAFile         string
	ServerRootCAs           *x509.CertPool

	// AdminUsername and AdminPassword are the admin console's credentials (pgcat's keys); an
	// empty AdminUsername turns the console off. AdminAuthType is how the admin logs in:
	// "md5" (pgcat's default, also for ""), "scram-sha-256" or "trust" (pgcat's other value).
	// AdminPassword may be plain text, an md5 hash or a SCRAM verifier, as a user's password.
	AdminUsername string
	AdminPassword string
	AdminAuthType string

	LogClientConnections    bool
	LogClientDisconnections bool

	// EnablePrometheusExporter serves Prometheus metrics on http://Host:PrometheusExporterPort/metrics
	// (pgcat's keys; default port 9930, as pgcat's).
	EnablePrometheusExporter bool
	PrometheusExporterPort   int
}

// Pool is one [pools.<db>] section.
type Pool struct {
	// Name is the database name clients connect with (the section name).
	Name     string
	PoolMode string // "transaction" (default), "session" or "statement"

	// AuthQuery is the query that fetches a user's secret (md5 hash or SCRAM verifier) from the
	// pool's primary of shard 0, logged in as AuthQueryUser with AuthQueryPassword; "" for none.
	// $1 (or pgcat's '$1') in it is the user name, sent as a bound parameter. Load fills these
	// from [general] when the pool does not set them.
	AuthQuery         string
	AuthQueryUser     string
	AuthQueryPassword string
	// AuthQueryAnyUser lets users that are not in the file log in through AuthQuery, with the
	// settings DynamicUser gives them.
	AuthQueryAnyUser bool
	// Users in the order of their section keys ("0", "1", ...).
	Users []*User
	// Shards in shard-number order: Shards[0] is [pools.<db>.shards.0].
	Shards []*Shard
	// Plugins are the pool's [pools.<db>.plugins.<name>] blocks. As in pgcat, a pool with a
	// plugins table (HasPlugins) uses its own and none of the top-level ones.
	Plugins    []PluginBlock
	HasPlugins bool

	// Routing over a shard's servers, with pgcat's keys and meanings plus sluice's.
	LoadBalancingMode             string // "random" (default), "round_robin" or "loc"
	DefaultRole                   string // "any" (default), "primary" or "replica"
	QueryParserEnabled            bool
	QueryParserReadWriteSplitting bool
	PrimaryReadsEnabled           bool
	QueryParserMaxLength          int // 0: no limit; a longer query goes to the primary unparsed
	// RoleDiscovery (default true) makes the health checker's pg_is_in_recovery() decide which
	// server is the primary, so a promoted replica takes writes without a config change.
	RoleDiscovery bool
	// A replica further behind than either limit takes no reads until it catches up (0: no limit).
	MaxReplicaLagBytes int64
	MaxReplicaLag      time.Duration
	// ReadYourWrites sends a client's reads of a table it wrote to the primary for this long.
	ReadYourWrites time.Duration
	// WriteFunctions adds to the functions whose call makes a query a write (nextval, setval,
	// the advisory locks, lo_*, ...); StrictFunctions makes every function not known to be
	// read-only a write.
	WriteFunctions  []string
	StrictFunctions bool

	// Sharding, with pgcat's keys and meanings plus sharding_key_type.
	ShardingFunction     string // "pg_bigint_hash" (default) or "sha1"
	ShardingKeyType      string // "bigint" (default), "uuid" or "text"
	AutomaticShardingKey string // "table.column" or "*.column"; "" = off
	ShardingKeyRegex     string
	ShardIDRegex         string
	RegexSearchLimit     int // default 1000
	// DefaultShard is where a query without a shard goes: "shard_<n>" (default shard_0),
	// "random" or "random_healthy".
	DefaultShard string
	// CrossShardReads is what a read without a sharding key does: "default_shard" (pgcat's:
	// it runs on default_shard) or "all" (it runs on every shard, results merged).
	CrossShardReads string
	// CrossShardWrites is what a write without a key, or with keys on several shards, does:
	// "reject" (an error) or "all" (it runs on each shard it may touch).
	CrossShardWrites string
	// CrossShardTransactions lets a transaction block touch several shards: each shard it
	// touches beyond its first joins it, and its COMMIT commits them all, one after
	// another (not atomically). Off: a statement inside a transaction block that needs
	// another shard is an error.
	CrossShardTransactions bool

	// ConnectTimeout, IdleTimeout and ServerLifetime are the pool's own values of the
	// [general] keys (pgcat's overrides), or [general]'s when the pool does not set them. A
	// user's own values beat these.
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	ServerLifetime time.Duration
	// CheckoutFailureLimit (pgcat's) disconnects a client whose attempts to get a server have
	// failed this many times; 0: never.
	CheckoutFailureLimit int
	// CleanupServerConnections is pgcat's switch (default true) for resetting, in transaction
	// mode, the session of a server whose client ran SET or RESET before another client gets
	// it (settings the server reports follow their client either way).
	CleanupServerConnections bool
	// LogClientParameterStatusChanges logs every ParameterStatus a server sends a client.
	LogClientParameterStatusChanges bool
	// PreparedStatementsCacheSize is the pool's per-server statement cache size: its own
	// prepared_statements_cache_size when above 0, else [general]'s.
	PreparedStatementsCacheSize int
}

// Values of Pool.CrossShardReads and Pool.CrossShardWrites.
const (
	CrossShardDefault = "default_shard"
	CrossShardAll     = "all"
	CrossShardReject  = "reject"
)

// Values of Pool.LoadBalancingMode and Pool.DefaultRole.
const (
	BalanceRandom     = "random"
	BalanceRoundRobin = "round_robin"
	BalanceLOC        = "loc"

	RoleAny = "any"
)

// User is one [pools.<db>.users.<n>] section.
type User struct {
	Username         string
	Password         string
	PoolSize         int    // default 10, at least 1
	MinPoolSize      int    // default 0
	PoolMode         string // "" = the pool's mode
	StatementTimeout time.Duration
	ServerUsername   string // "" = Username
	ServerPassword   string // "" = Password
	// AuthType overrides General.AuthType for this user ("" = the general one).
	AuthType string
	// ConnectTimeout, IdleTimeout and ServerLifetime are the user's own values (pgcat's
	// overrides), else the pool's (see Pool).
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	ServerLifetime time.Duration
	// NoPassword is set when the file gives no password at all (pgcat allows that with
	// auth_query): the secret comes from the pool's auth_query. An explicit password = ""
	// means trust.
	NoPassword bool
}

// Shard is one [pools.<db>.shards.<n>] section.
type Shard struct {
	Database string // the database name on the servers
	Servers  []Server
	// Mirrors are pgcat's query mirrors: each receives a copy of everything sluice sends to
	// the server it names, logged in with the same user, password and database.
	Mirrors []Mirror
}

// Mirror is one entry of a shard's mirrors list: ["host", port, index of a server in Servers].
type Mirror struct {
	Host   string
	Port   int
	Server int // the index in the shard's Servers of the server whose traffic it gets
}

// Server is one entry of a shard's servers list: ["host", port, "primary"|"replica"].
type Server struct {
	Host string
	Port int
	Role string // "primary" or "replica"
}

// ClientAuth returns how the user logs in: its own auth_type, else the general one, else md5; a
// password stored as a SCRAM verifier can only be checked with SCRAM.
func (u *User) ClientAuth(g *General) string {
	switch {
	case u.AuthType != "":
		return u.AuthType
	case strings.HasPrefix(u.Password, "SCRAM-SHA-256$"):
		return AuthSCRAM
	case g.AuthType != "":
		return g.AuthType
	}
	return AuthMD5
}

// Warning is a non-fatal finding of Load, such as a pgcat key sluice does not implement yet.
type Warning struct {
	File string
	Line int
	Key  string // dotted key, e.g. "general.autoreload"
	Msg  string
}

func (w Warning) String() string { return formatPos(w.File, w.Line) + w.Key + ": " + w.Msg }
