package config

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Values of Pool.PoolMode, User.PoolMode and Server.Role after Load. Load accepts the spellings
// pgcat accepts ("Session", "Primary", ...) and stores these.
const (
	PoolModeSession     = "session"
	PoolModeTransaction = "transaction"
	// PoolModeStatement is PgBouncer's statement pooling: transaction pooling in which a
	// transaction may not span statements.
	PoolModeStatement = "statement"

	RolePrimary = "primary"
	RoleReplica = "replica"
)

// The defaults Load fills in for keys a file leaves out. They are sluice's, documented in
// docs/configuration.md; pgcat's code has other defaults in places (port 5432, for one).
const (
	defaultPoolSize    = 10
	defaultPoolMode    = PoolModeTransaction
	maxMessageSizeMin  = 1024
	maxMessageSizeMax  = 1 << 30 // Postgres cannot take a message of 1 GiB or more anyway
	defaultMessageSize = 256 << 20
	// pgcat's defaults for tcp_user_timeout and for pgcat 1.x's general
	// prepared_statements_cache_size.
	defaultTCPUserTimeout     = 10 * time.Second
	defaultStatementCacheSize = 500
	maxStatementCacheSize     = 1 << 20
	// unset marks a pool's or user's timeout that the file does not set, until Load fills in
	// the value it inherits. No file can write it: durationKey refuses negative values.
	unset = -1
)

func defaultGeneral() General {
	return General{
		Host:                           "0.0.0.0",
		Port:                           6432,
		ConnectTimeout:                 5 * time.Second,
		IdleTimeout:                    10 * time.Minute,
		ServerLifetime:                 time.Hour,
		IdleClientInTransactionTimeout: 0,
		ShutdownTimeout:                60 * time.Second,
		QueryWaitTimeout:               120 * time.Second,
		ClientLoginTimeout:             60 * time.Second,
		HealthcheckTimeout:             time.Second,
		HealthcheckDelay:               30 * time.Second,
		HealthcheckInterval:            time.Second,
		BanTime:                        60 * time.Second,
		TCPKeepalivesIdle:              5 * time.Second,
		TCPKeepalivesCount:             5,
		TCPKeepalivesInterval:          5 * time.Second,
		TCPUserTimeout:                 defaultTCPUserTimeout,
		TCPDeferAccept:                 true,
		ValidateConfig:                 true,
		DNSMaxTTL:                      30 * time.Second,
		PreparedStatementsCacheSize:    defaultStatementCacheSize,
		MaxClientConn:                  10000,
		MaxMessageSize:                 defaultMessageSize,
		ServerResetQuery:               "DISCARD ALL",
		AuthQueryCacheTTL:              5 * time.Minute,
		PrometheusExporterPort:         9930,
	}
}

// A setter stores one TOML value into a field of T. Its error is a message for the user, without
// the file, line or key, which the caller adds.
type setter[T any] func(dst *T, v any) error

// The keys sluice implements, per section. Subsections (users, shards) and the shard's servers
// list are decoded by hand in load.go; they are listed in the *Tables variables so that they count
// as known keys.
var (
	generalKeys = map[string]setter[General]{
		"host":            stringKey(func(g *General) *string { return &g.Host }),
		"port":            intKey(1, 65535, func(g *General) *int { return &g.Port }),
		"unix_socket_dir": stringKey(func(g *General) *string { return &g.UnixSocketDir }),

		"connect_timeout":                    durationKey(time.Millisecond, 1, func(g *General) *time.Duration { return &g.ConnectTimeout }),
		"idle_timeout":                       durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.IdleTimeout }),
		"server_lifetime":                    durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.ServerLifetime }),
		"idle_client_in_transaction_timeout": durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.IdleClientInTransactionTimeout }),
		"shutdown_timeout":                   durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.ShutdownTimeout }),
		"query_wait_timeout":                 durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.QueryWaitTimeout }),
		"client_login_timeout":               durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.ClientLoginTimeout }),
		"healthcheck_timeout":                durationKey(time.Millisecond, 1, func(g *General) *time.Duration { return &g.HealthcheckTimeout }),
		"healthcheck_delay":                  durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.HealthcheckDelay }),
		"ban_time":                           durationKey(time.Second, 0, func(g *General) *time.Duration { return &g.BanTime }),
		"healthcheck_interval":               durationKey(time.Millisecond, 10, func(g *General) *time.Duration { return &g.HealthcheckInterval }),

		"tcp_keepalives_idle":     durationKey(time.Second, 1, func(g *General) *time.Duration { return &g.TCPKeepalivesIdle }),
		"tcp_keepalives_count":    intKey(1, math.MaxInt32, func(g *General) *int { return &g.TCPKeepalivesCount }),
		"tcp_keepalives_interval": durationKey(time.Second, 1, func(g *General) *time.Duration { return &g.TCPKeepalivesInterval }),
		"tcp_user_timeout":        durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.TCPUserTimeout }),
		"tcp_defer_accept":        boolKey(func(g *General) *bool { return &g.TCPDeferAccept }),

		"server_round_robin": boolKey(func(g *General) *bool { return &g.ServerRoundRobin }),
		"worker_threads":     intKey(1, 4096, func(g *General) *int { return &g.WorkerThreads }),
		"autoreload":         durationKey(time.Millisecond, 1, func(g *General) *time.Duration { return &g.Autoreload }),
		"validate_config":    boolKey(func(g *General) *bool { return &g.ValidateConfig }),
		"verify_config":      boolKey(func(g *General) *bool { return &g.ValidateConfig }), // CONFIG.md's name for validate_config
		"dns_cache_enabled":  boolKey(func(g *General) *bool { return &g.DNSCacheEnabled }),
		"dns_max_ttl":        durationKey(time.Second, 1, func(g *General) *time.Duration { return &g.DNSMaxTTL }),

		"prepared_statements":            boolKey(func(g *General) *bool { return &g.PreparedStatements }),
		"prepared_statements_cache_size": intKey(0, maxStatementCacheSize, func(g *General) *int { return &g.PreparedStatementsCacheSize }),

		"max_client_conn":  intKey(1, math.MaxInt32, func(g *General) *int { return &g.MaxClientConn }),
		"max_message_size": intKey(maxMessageSizeMin, maxMessageSizeMax, func(g *General) *int { return &g.MaxMessageSize }),

		"server_reset_query": stringKey(func(g *General) *string { return &g.ServerResetQuery }),

		"auth_type":            clientAuthTypeKey(func(g *General) *string { return &g.AuthType }),
		"hba_file":             stringKey(func(g *General) *string { return &g.HBAFile }),
		"auth_query":           stringKey(func(g *General) *string { return &g.AuthQuery }),
		"auth_query_user":      stringKey(func(g *General) *string { return &g.AuthQueryUser }),
		"auth_query_password":  secretKey(func(g *General) *string { return &g.AuthQueryPassword }),
		"auth_query_cache_ttl": durationKey(time.Millisecond, 0, func(g *General) *time.Duration { return &g.AuthQueryCacheTTL }),

		"tls_certificate": stringKey(func(g *General) *string { return &g.TLSCertificate }),
		"tls_private_key": stringKey(func(g *General) *string { return &g.TLSPrivateKey }),
		"tls_mode":        tlsModeKey(),
		"tls_ca_file":     stringKey(func(g *General) *string { return &g.TLSCAFile }),

		"server_tls":                boolKey(func(g *General) *bool { return &g.ServerTLS }),
		"verify_server_certificate": boolKey(func(g *General) *bool { return &g.VerifyServerCertificate }),
		"server_tls_mode":           serverTLSModeKey(),
		"server_tls_ca_file":        stringKey(func(g *General) *string { return &g.ServerTLSCAFile }),
		"hba":                       hbaKey(),

		"admin_username":  stringKey(func(g *General) *string { return &g.AdminUsername }),
		"admin_password":  secretKey(func(g *General) *string { return &g.AdminPassword }),
		"admin_auth_type": authTypeKey(func(g *General) *string { return &g.AdminAuthType }),

		"log_client_connections":    boolKey(func(g *General) *bool { return &g.LogClientConnections }),
		"log_client_disconnections": boolKey(func(g *General) *bool { return &g.LogClientDisconnections }),

		"enable_prometheus_exporter": boolKey(func(g *General) *bool { return &g.EnablePrometheusExporter }),
		"prometheus_exporter_port":   intKey(1, 65535, func(g *General) *int { return &g.PrometheusExporterPort }),
	}

	poolKeys = map[string]setter[Pool]{
		"pool_mode":           poolModeKey(func(p *Pool) *string { return &p.PoolMode }),
		"auth_query":          stringKey(func(p *Pool) *string { return &p.AuthQuery }),
		"auth_query_user":     stringKey(func(p *Pool) *string { return &p.AuthQueryUser }),
		"auth_query_password": secretKey(func(p *Pool) *string { return &p.AuthQueryPassword }),
		"auth_query_any_user": boolKey(func(p *Pool) *bool { return &p.AuthQueryAnyUser }),

		"load_balancing_mode":               enumKey(map[string]string{"random": BalanceRandom, "round_robin": BalanceRoundRobin, "loc": BalanceLOC}, func(p *Pool) *string { return &p.LoadBalancingMode }),
		"default_role":                      enumKey(map[string]string{"any": RoleAny, "primary": RolePrimary, "replica": RoleReplica}, func(p *Pool) *string { return &p.DefaultRole }),
		"query_parser_enabled":              boolKey(func(p *Pool) *bool { return &p.QueryParserEnabled }),
		"query_parser_read_write_splitting": boolKey(func(p *Pool) *bool { return &p.QueryParserReadWriteSplitting }),
		"primary_reads_enabled":             boolKey(func(p *Pool) *bool { return &p.PrimaryReadsEnabled }),
		"query_parser_max_length":           intKey(0, math.MaxInt32, func(p *Pool) *int { return &p.QueryParserMaxLength }),
		"role_discovery":                    boolKey(func(p *Pool) *bool { return &p.RoleDiscovery }),
		"max_replica_lag_bytes":             int64Key(0, math.MaxInt64, func(p *Pool) *int64 { return &p.MaxReplicaLagBytes }),
		"max_replica_lag":                   durationKey(time.Millisecond, 0, func(p *Pool) *time.Duration { return &p.MaxReplicaLag }),
		"read_your_writes_ms":               durationKey(time.Millisecond, 0, func(p *Pool) *time.Duration { return &p.ReadYourWrites }),
		"write_functions":                   stringListKey(func(p *Pool) *[]string { return &p.WriteFunctions }),
		"strict_functions":                  boolKey(func(p *Pool) *bool { return &p.StrictFunctions }),

		"sharding_function":        enumKey(map[string]string{"pg_bigint_hash": "pg_bigint_hash", "sha1": "sha1"}, func(p *Pool) *string { return &p.ShardingFunction }),
		"sharding_key_type":        enumKey(map[string]string{"bigint": "bigint", "uuid": "uuid", "text": "text", "varchar": "text"}, func(p *Pool) *string { return &p.ShardingKeyType }),
		"automatic_sharding_key":   stringKey(func(p *Pool) *string { return &p.AutomaticShardingKey }),
		"sharding_key_regex":       stringKey(func(p *Pool) *string { return &p.ShardingKeyRegex }),
		"shard_id_regex":           stringKey(func(p *Pool) *string { return &p.ShardIDRegex }),
		"regex_search_limit":       intKey(1, math.MaxInt32, func(p *Pool) *int { return &p.RegexSearchLimit }),
		"default_shard":            stringKey(func(p *Pool) *string { return &p.DefaultShard }),
		"cross_shard_reads":        enumKey(map[string]string{"default_shard": CrossShardDefault, "all": CrossShardAll}, func(p *Pool) *string { return &p.CrossShardReads }),
		"cross_shard_writes":       enumKey(map[string]string{"reject": CrossShardReject, "all": CrossShardAll}, func(p *Pool) *string { return &p.CrossShardWrites }),
		"cross_shard_transactions": boolKey(func(p *Pool) *bool { return &p.CrossShardTransactions }),

		"connect_timeout":                     durationKey(time.Millisecond, 1, func(p *Pool) *time.Duration { return &p.ConnectTimeout }),
		"idle_timeout":                        durationKey(time.Millisecond, 0, func(p *Pool) *time.Duration { return &p.IdleTimeout }),
		"server_lifetime":                     durationKey(time.Millisecond, 0, func(p *Pool) *time.Duration { return &p.ServerLifetime }),
		"checkout_failure_limit":              intKey(0, math.MaxInt32, func(p *Pool) *int { return &p.CheckoutFailureLimit }),
		"cleanup_server_connections":          boolKey(func(p *Pool) *bool { return &p.CleanupServerConnections }),
		"log_client_parameter_status_changes": boolKey(func(p *Pool) *bool { return &p.LogClientParameterStatusChanges }),
		"prepared_statements_cache_size":      intKey(0, maxStatementCacheSize, func(p *Pool) *int { return &p.PreparedStatementsCacheSize }),
	}
	poolTables = []string{"users", "shards", "plugins"}

	userKeys = map[string]setter[User]{
		"username":          stringKey(func(u *User) *string { return &u.Username }),
		"password":          secretKey(func(u *User) *string { return &u.Password }),
		"pool_size":         intKey(1, math.MaxInt32, func(u *User) *int { return &u.PoolSize }),
		"min_pool_size":     intKey(0, math.MaxInt32, func(u *User) *int { return &u.MinPoolSize }),
		"pool_mode":         poolModeKey(func(u *User) *string { return &u.PoolMode }),
		"statement_timeout": durationKey(time.Millisecond, 0, func(u *User) *time.Duration { return &u.StatementTimeout }),
		"server_username":   stringKey(func(u *User) *string { return &u.ServerUsername }),
		"server_password":   secretKey(func(u *User) *string { return &u.ServerPassword }),
		"auth_type":         clientAuthTypeKey(func(u *User) *string { return &u.AuthType }),
		"connect_timeout":   durationKey(time.Millisecond, 1, func(u *User) *time.Duration { return &u.ConnectTimeout }),
		"idle_timeout":      durationKey(time.Millisecond, 0, func(u *User) *time.Duration { return &u.IdleTimeout }),
		"server_lifetime":   durationKey(time.Millisecond, 0, func(u *User) *time.Duration { return &u.ServerLifetime }),
	}

	shardKeys = map[string]setter[Shard]{
		"database": stringKey(func(s *Shard) *string { return &s.Database }),
	}
	shardTables = []string{"servers", "mirrors"}

	// topTables are the top-level keys sluice reads.
	topTables = []string{"general", "pools", "plugins"}
)

// A pgcatKey describes a key pgcat reads and sluice does not implement yet. Load accepts it with a
// Warning. Keys is nil for a plain value (anything goes, it is ignored); otherwise the key holds a
// table and Keys lists what pgcat knows inside it, where "*" stands for any name (queries.<n>), so
// that a misspelling inside an ignored block is still an error.
type pgcatKey struct {
	Keys map[string]*pgcatKey
}

// pgcatTable builds a pgcatKey for a table whose keys are all plain values.
func pgcatTable(keys ...string) *pgcatKey {
	t := &pgcatKey{Keys: map[string]*pgcatKey{}}
	for _, k := range keys {
		t.Keys[k] = nil
	}
	return t
}

// pgcatPlugins is pgcat's plugins block, both the top-level [plugins] and [pools.<db>.plugins].
var pgcatPlugins = &pgcatKey{Keys: map[string]*pgcatKey{
	"intercept": {Keys: map[string]*pgcatKey{
		"enabled": nil,
		"queries": {Keys: map[string]*pgcatKey{"*": pgcatTable("query", "schema", "result")}},
	}},
	"table_access": pgcatTable("enabled", "tables"),
	"query_logger": pgcatTable("enabled"),
	"prewarmer":    pgcatTable("enabled", "queries"),
}}

// The pgcat keys sluice does not implement yet, per section, taken from pgcat's CONFIG.md, its
// example pgcat.toml and src/config.rs (postgresml/pgcat at commit 5b03881), plus
// general.prepared_statements from pgcat 1.x releases.
var (
	pgcatTop = map[string]*pgcatKey{
		"path": nil, // pgcat's Config.path: where pgcat thinks the file is
	}

	pgcatGeneral = map[string]*pgcatKey{}

	pgcatPool = map[string]*pgcatKey{
		"db_activity_based_routing":       nil,
		"db_activity_init_delay":          nil,
		"db_activity_based_ms_init_delay": nil, // the name CONFIG.md uses for db_activity_init_delay
		"db_activity_ttl":                 nil,
		"table_mutation_cache_ms_ttl":     nil,
	}

	pgcatUser = map[string]*pgcatKey{}

	pgcatShard = map[string]*pgcatKey{}

	// pgcatMisspelledPool is the top-level [pool.<db>.plugins] that pgcat's own example file has
	// (for [pools.<db>.plugins]). pgcat ignores it, so sluice loads that file with a warning.
	pgcatMisspelledPool = &pgcatKey{Keys: map[string]*pgcatKey{
		"*": {Keys: map[string]*pgcatKey{"plugins": pgcatPlugins}},
	}}
)

const (
	msgPgcatKey     = "pgcat key not implemented by sluice yet; ignored"
	msgMisspeltPool = "not a pgcat key either (pgcat's example file has [pool.<db>.plugins] for [pools.<db>.plugins]); pgcat ignores it and so does sluice"
	sectionGeneral  = "[general]"
	sectionPool     = "[pools.<db>]"
	sectionUser     = "[pools.<db>.users.<n>]"
	sectionShard    = "[pools.<db>.shards.<n>]"
	sectionTopLevel = "the top level"
)

// keyHomes maps every key name sluice or pgcat knows to the sections it belongs in, for the hint
// on an unknown key that is a known key in the wrong place.
var keyHomes = func() map[string][]string {
	homes := map[string][]string{}
	add := func(section string, names []string) {
		for _, n := range names {
			homes[n] = append(homes[n], section)
		}
	}
	add(sectionTopLevel, append(keysOf(pgcatTop), topTables...))
	add(sectionGeneral, append(keysOf(generalKeys), keysOf(pgcatGeneral)...))
	add(sectionPool, append(append(keysOf(poolKeys), poolTables...), keysOf(pgcatPool)...))
	add(sectionUser, append(keysOf(userKeys), keysOf(pgcatUser)...))
	add(sectionShard, append(append(keysOf(shardKeys), shardTables...), keysOf(pgcatShard)...))
	return homes
}()

func stringKey[T any](field func(*T) *string) setter[T] {
	return func(dst *T, v any) error {
		s, ok := v.(string)
		if !ok {
			return wantGot("a string", v)
		}
		*field(dst) = s
		return nil
	}
}

// secretKey is stringKey for a password: its error names the value's type, never the value,
// which may be the password written without quotes.
func secretKey[T any](field func(*T) *string) setter[T] {
	return func(dst *T, v any) error {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a string, got %s (the value is not shown: it is a secret)", kindOf(v))
		}
		*field(dst) = s
		return nil
	}
}

func boolKey[T any](field func(*T) *bool) setter[T] {
	return func(dst *T, v any) error {
		b, ok := v.(bool)
		if !ok {
			return wantGot("true or false", v)
		}
		*field(dst) = b
		return nil
	}
}

func intKey[T any](lo, hi int64, field func(*T) *int) setter[T] {
	return func(dst *T, v any) error {
		n, ok := v.(int64)
		if !ok {
			return wantGot("an integer", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("must be between %d and %d, got %d", lo, hi, n)
		}
		*field(dst) = int(n)
		return nil
	}
}

// durationKey reads an integer count of unit (milliseconds or seconds, as pgcat has it) that must
// be at least lo.
func durationKey[T any](unit time.Duration, lo int64, field func(*T) *time.Duration) setter[T] {
	name := "milliseconds"
	if unit == time.Second {
		name = "seconds"
	}
	return func(dst *T, v any) error {
		n, ok := v.(int64)
		if !ok {
			err := wantGot("an integer number of "+name, v)
			if s, isStr := v.(string); isStr {
				if d, perr := time.ParseDuration(s); perr == nil && d%unit == 0 {
					err = fmt.Errorf("%w (write %d)", err, d/unit)
				}
			}
			return err
		}
		if n < lo {
			if lo == 0 {
				return fmt.Errorf("must not be negative, got %d", n)
			}
			return fmt.Errorf("must be at least %d %s, got %d", lo, name, n)
		}
		if n > math.MaxInt64/int64(unit) {
			return fmt.Errorf("%d %s is too long", n, name)
		}
		*field(dst) = time.Duration(n) * unit
		return nil
	}
}

func int64Key[T any](lo, hi int64, field func(*T) *int64) setter[T] {
	return func(dst *T, v any) error {
		n, ok := v.(int64)
		if !ok {
			return wantGot("an integer", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("must be between %d and %d, got %d", lo, hi, n)
		}
		*field(dst) = n
		return nil
	}
}

// enumKey reads a string that must be one of the keys of values, and stores what it maps to.
func enumKey[T any](values map[string]string, field func(*T) *string) setter[T] {
	names := keysOf(values)
	sort.Strings(names)
	want := `"` + strings.Join(names, `", "`) + `"`
	return func(dst *T, v any) error {
		s, ok := v.(string)
		if !ok {
			return wantGot("one of "+want, v)
		}
		val, ok := values[strings.ToLower(s)]
		if !ok {
			return fmt.Errorf("must be one of %s, got %q", want, s)
		}
		*field(dst) = val
		return nil
	}
}

func stringListKey[T any](field func(*T) *[]string) setter[T] {
	return func(dst *T, v any) error {
		list, ok := v.([]any)
		if !ok {
			return wantGot("a list of strings", v)
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return wantGot("a list of strings", v)
			}
			out = append(out, s)
		}
		*field(dst) = out
		return nil
	}
}

func poolModeKey[T any](field func(*T) *string) setter[T] {
	return func(dst *T, v any) error {
		s, ok := v.(string)
		if !ok {
			return wantGot(`"session", "transaction" or "statement"`, v)
		}
		mode, ok := parsePoolMode(s)
		if !ok {
			return fmt.Errorf(`must be "session", "transaction" or "statement", got %q`, s)
		}
		*field(dst) = mode
		return nil
	}
}

// Client authentication methods.
const (
	AuthMD5   = "md5"
	AuthSCRAM = "scram-sha-256"
	AuthTrust = "trust"
	// AuthCert logs in a client whose verified TLS certificate's common name is the user name.
	AuthCert = "cert"
)

func authTypeKey[T any](field func(*T) *string) setter[T] {
	return func(dst *T, v any) error {
		s, ok := v.(string)
		if !ok {
			return wantGot(`"md5", "scram-sha-256" or "trust"`, v)
		}
		switch s {
		case AuthMD5, AuthSCRAM, AuthTrust:
			*field(dst) = s
			return nil
		}
		return fmt.Errorf(`must be "md5", "scram-sha-256" or "trust", got %q`, s)
	}
}

// clientAuthTypeKey is authTypeKey for clients of pools, who may also log in with a certificate.
func clientAuthTypeKey[T any](field func(*T) *string) setter[T] {
	return func(dst *T, v any) error {
		s, ok := v.(string)
		if !ok {
			return wantGot(`"md5", "scram-sha-256", "cert" or "trust"`, v)
		}
		switch s {
		case AuthMD5, AuthSCRAM, AuthTrust, AuthCert:
			*field(dst) = s
			return nil
		}
		return fmt.Errorf(`must be "md5", "scram-sha-256", "cert" or "trust", got %q`, s)
	}
}

// Client TLS modes.
const (
	TLSDisable = "disable" // answer SSLRequest with 'N'
	TLSAllow   = "allow"   // offer TLS; plaintext is fine
	TLSPrefer  = "prefer"  // the same as allow on the server side, as in PgBouncer
	TLSRequire = "require" // refuse clients that do not use TLS
	// TLSVerifyCA also requires a client certificate that chains to tls_ca_file, and
	// TLSVerifyFull one whose common name is the user name the client logs in as.
	TLSVerifyCA   = "verify-ca"
	TLSVerifyFull = "verify-full"
)

func tlsModeKey() setter[General] {
	return func(g *General, v any) error {
		s, ok := v.(string)
		if !ok {
			return wantGot(`"disable", "allow", "prefer", "require", "verify-ca" or "verify-full"`, v)
		}
		switch s {
		case TLSDisable, TLSAllow, TLSPrefer, TLSRequire, TLSVerifyCA, TLSVerifyFull:
			g.TLSMode = s
			return nil
		}
		return fmt.Errorf(`must be "disable", "allow", "prefer", "require", "verify-ca" or "verify-full", got %q`, s)
	}
}

// Server TLS modes, with libpq's sslmode meanings.
const (
	ServerTLSDisable    = "disable"
	ServerTLSPrefer     = "prefer"
	ServerTLSRequire    = "require"
	ServerTLSVerifyCA   = "verify-ca"
	ServerTLSVerifyFull = "verify-full"
)

func serverTLSModeKey() setter[General] {
	return func(g *General, v any) error {
		s, ok := v.(string)
		if !ok {
			return wantGot(`"disable", "prefer", "require", "verify-ca" or "verify-full"`, v)
		}
		switch s {
		case ServerTLSDisable, ServerTLSPrefer, ServerTLSRequire, ServerTLSVerifyCA, ServerTLSVerifyFull:
			g.ServerTLSMode = s
			return nil
		}
		return fmt.Errorf(`must be "disable", "prefer", "require", "verify-ca" or "verify-full", got %q`, s)
	}
}

// hbaKey reads an inline rule list: an array of strings, each a pg_hba.conf line. The rules
// come before those of hba_file.
func hbaKey() setter[General] {
	return func(g *General, v any) error {
		list, ok := v.([]any)
		if !ok {
			return wantGot("an array of pg_hba.conf lines", v)
		}
		var rules []HBARule
		for i, x := range list {
			line, ok := x.(string)
			if !ok {
				return fmt.Errorf("rule %d: %w", i+1, wantGot("a string", x))
			}
			r, err := parseHBARule(hbaFields(line))
			if err != nil {
				return fmt.Errorf("rule %d (%q): %w", i+1, line, err)
			}
			r.Line = i + 1
			rules = append(rules, r)
		}
		g.HBA = append(rules, g.HBA...)
		return nil
	}
}

// parsePoolMode accepts the spellings pgcat accepts.
func parsePoolMode(s string) (string, bool) {
	switch s {
	case "session", "Session":
		return PoolModeSession, true
	case "transaction", "Transaction":
		return PoolModeTransaction, true
	case "statement", "Statement":
		return PoolModeStatement, true
	}
	return "", false
}

// parseRole accepts the spellings pgcat accepts for a server's role, except pgcat's "mirror",
// which sluice does not have.
func parseRole(s string) (string, bool) {
	switch s {
	case "primary", "Primary":
		return RolePrimary, true
	case "replica", "Replica":
		return RoleReplica, true
	}
	return "", false
}

// wantGot is the error for a value of the wrong TOML type.
func wantGot(want string, v any) error {
	return fmt.Errorf("want %s, got %s", want, describe(v))
}

// describe names a decoded TOML value's type, and shows the value when it is short.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []map[string]any:
		return "an array of tables"
	case []any:
		if len(v) == 1 {
			return "an array of 1 element"
		}
		return fmt.Sprintf("an array of %d elements", len(v))
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("a datetime (%v)", v)
}

// kindOf names a decoded TOML value's type without showing it.
func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []map[string]any, []any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	return "a datetime"
}

func keysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// joinSections lists sections for a message: "[a]", "[a] or [b]", "[a], [b] or [c]".
func joinSections(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
