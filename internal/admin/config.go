package admin

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicepg/sluice/internal/config"
)

// masked stands for a secret in SHOW CONFIG.
const masked = "********"

// setting is one row of SHOW CONFIG.
type setting struct {
	key        string
	value      func(g *config.General) string
	changeable bool // a reload applies it; false: it needs a restart
}

func str(f func(g *config.General) string) func(g *config.General) string { return f }

func ms(f func(g *config.General) time.Duration) func(g *config.General) string {
	return func(g *config.General) string { return strconv.FormatInt(f(g).Milliseconds(), 10) }
}

func secs(f func(g *config.General) time.Duration) func(g *config.General) string {
	return func(g *config.General) string { return strconv.FormatInt(int64(f(g)/time.Second), 10) }
}

func integer(f func(g *config.General) int) func(g *config.General) string {
	return func(g *config.General) string { return strconv.Itoa(f(g)) }
}

func boolean(f func(g *config.General) bool) func(g *config.General) string {
	return func(g *config.General) string { return strconv.FormatBool(f(g)) }
}

// generalSettings are the [general] keys in the file's units. Secrets are masked; a test checks
// that every key of docs/configuration.md's [general] table is here.
var generalSettings = []setting{
	{"host", str(func(g *config.General) string { return g.Host }), false},
	{"port", integer(func(g *config.General) int { return g.Port }), false},
	{"unix_socket_dir", str(func(g *config.General) string { return g.UnixSocketDir }), false},
	{"connect_timeout", ms(func(g *config.General) time.Duration { return g.ConnectTimeout }), true},
	{"idle_timeout", ms(func(g *config.General) time.Duration { return g.IdleTimeout }), true},
	{"server_lifetime", ms(func(g *config.General) time.Duration { return g.ServerLifetime }), true},
	{"idle_client_in_transaction_timeout", ms(func(g *config.General) time.Duration { return g.IdleClientInTransactionTimeout }), true},
	{"shutdown_timeout", ms(func(g *config.General) time.Duration { return g.ShutdownTimeout }), true},
	{"query_wait_timeout", ms(func(g *config.General) time.Duration { return g.QueryWaitTimeout }), true},
	{"client_login_timeout", ms(func(g *config.General) time.Duration { return g.ClientLoginTimeout }), true},
	{"healthcheck_timeout", ms(func(g *config.General) time.Duration { return g.HealthcheckTimeout }), true},
	{"healthcheck_delay", ms(func(g *config.General) time.Duration { return g.HealthcheckDelay }), true},
	{"healthcheck_interval", ms(func(g *config.General) time.Duration { return g.HealthcheckInterval }), true},
	{"ban_time", secs(func(g *config.General) time.Duration { return g.BanTime }), true},
	{"tcp_keepalives_idle", secs(func(g *config.General) time.Duration { return g.TCPKeepalivesIdle }), true},
	{"tcp_keepalives_count", integer(func(g *config.General) int { return g.TCPKeepalivesCount }), true},
	{"tcp_keepalives_interval", secs(func(g *config.General) time.Duration { return g.TCPKeepalivesInterval }), true},
	{"tcp_user_timeout", ms(func(g *config.General) time.Duration { return g.TCPUserTimeout }), true},
	{"tcp_defer_accept", boolean(func(g *config.General) bool { return g.TCPDeferAccept }), false},
	{"server_round_robin", boolean(func(g *config.General) bool { return g.ServerRoundRobin }), true},
	{"worker_threads", integer(func(g *config.General) int { return g.WorkerThreads }), false},
	{"autoreload", ms(func(g *config.General) time.Duration { return g.Autoreload }), true},
	{"validate_config", boolean(func(g *config.General) bool { return g.ValidateConfig }), false},
	{"dns_cache_enabled", boolean(func(g *config.General) bool { return g.DNSCacheEnabled }), true},
	{"dns_max_ttl", secs(func(g *config.General) time.Duration { return g.DNSMaxTTL }), true},
	{"prepared_statements", boolean(func(g *config.General) bool { return g.PreparedStatements }), true},
	{"prepared_statements_cache_size", integer(func(g *config.General) int { return g.PreparedStatementsCacheSize }), true},
	{"max_client_conn", integer(func(g *config.General) int { return g.MaxClientConn }), true},
	{"max_message_size", integer(func(g *config.General) int { return g.MaxMessageSize }), true},
	{"server_reset_query", str(func(g *config.General) string { return g.ServerResetQuery }), true},
	{"auth_type", str(func(g *config.General) string { return cmp.Or(g.AuthType, config.AuthMD5) }), true},
	{"auth_query", str(func(g *config.General) string { return g.AuthQuery }), true},
	{"auth_query_user", str(func(g *config.General) string { return g.AuthQueryUser }), true},
	{"auth_query_password", str(func(g *config.General) string {
		if g.AuthQueryPassword == "" {
			return ""
		}
		return masked
	}), true},
	{"auth_query_cache_ttl", ms(func(g *config.General) time.Duration { return g.AuthQueryCacheTTL }), true},
	{"tls_certificate", str(func(g *config.General) string { return g.TLSCertificate }), true},
	{"tls_private_key", str(func(g *config.General) string { return g.TLSPrivateKey }), true},
	{"tls_mode", str(func(g *config.General) string { return cmp.Or(g.TLSMode, config.TLSDisable) }), true},
	{"tls_ca_file", str(func(g *config.General) string { return g.TLSCAFile }), true},
	{"server_tls", boolean(func(g *config.General) bool { return g.ServerTLS }), true},
	{"verify_server_certificate", boolean(func(g *config.General) bool { return g.VerifyServerCertificate }), true},
	{"server_tls_mode", str(func(g *config.General) string { return cmp.Or(g.ServerTLSMode, config.ServerTLSDisable) }), true},
	{"server_tls_ca_file", str(func(g *config.General) string { return g.ServerTLSCAFile }), true},
	{"hba", str(func(g *config.General) string { return fmt.Sprintf("%d rules", len(g.HBA)) }), true},
	{"hba_file", str(func(g *config.General) string { return g.HBAFile }), true},
	{"admin_username", str(func(g *config.General) string { return g.AdminUsername }), true},
	{"admin_password", str(func(g *config.General) string {
		if g.AdminPassword == "" {
			return ""
		}
		return masked
	}), true},
	{"admin_auth_type", str(func(g *config.General) string { return g.AdminAuth() }), true},
	{"log_client_connections", boolean(func(g *config.General) bool { return g.LogClientConnections }), true},
	{"log_client_disconnections", boolean(func(g *config.General) bool { return g.LogClientDisconnections }), true},
	{"enable_prometheus_exporter", boolean(func(g *config.General) bool { return g.EnablePrometheusExporter }), false},
	{"prometheus_exporter_port", integer(func(g *config.General) int { return g.PrometheusExporterPort }), false},
}

// showConfig lists the [general] settings, then each pool's: the pool mode, the users with their
// sizes and modes, and the shards with their servers. Passwords are never shown: the admin
// password is masked and users' passwords are left out.
func (c *Console) showConfig(res *result) error {
	res.header(text("key"), text("value"), text("default"), text("changeable"))
	cfg := c.Table().Config
	def := config.Defaults()
	yesNo := map[bool]string{true: "yes", false: "no"}
	for _, s := range generalSettings {
		res.row(s.key, s.value(&cfg.General), s.value(&def), yesNo[s.changeable])
	}
	names := make([]string, 0, len(cfg.Pools))
	for name := range cfg.Pools {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := cfg.Pools[name]
		prefix := "pools." + name + "."
		res.row(prefix+"pool_mode", p.PoolMode, config.PoolModeTransaction, "yes")
		for _, kv := range [][3]string{
			{"load_balancing_mode", p.LoadBalancingMode, config.BalanceRandom},
			{"default_role", p.DefaultRole, config.RoleAny},
			{"query_parser_enabled", strconv.FormatBool(p.QueryParserEnabled), "false"},
			{"query_parser_read_write_splitting", strconv.FormatBool(p.QueryParserReadWriteSplitting), "false"},
			{"primary_reads_enabled", strconv.FormatBool(p.PrimaryReadsEnabled), "false"},
			{"query_parser_max_length", strconv.Itoa(p.QueryParserMaxLength), "0"},
			{"role_discovery", strconv.FormatBool(p.RoleDiscovery), "true"},
			{"max_replica_lag_bytes", strconv.FormatInt(p.MaxReplicaLagBytes, 10), "0"},
			{"max_replica_lag", strconv.FormatInt(p.MaxReplicaLag.Milliseconds(), 10), "0"},
			{"read_your_writes_ms", strconv.FormatInt(p.ReadYourWrites.Milliseconds(), 10), "0"},
			{"write_functions", strings.Join(p.WriteFunctions, ", "), ""},
			{"strict_functions", strconv.FormatBool(p.StrictFunctions), "false"},
			{"auth_query", p.AuthQuery, ""},
			{"auth_query_user", p.AuthQueryUser, ""},
			{"auth_query_any_user", strconv.FormatBool(p.AuthQueryAnyUser), "false"},
			{"connect_timeout", strconv.FormatInt(p.ConnectTimeout.Milliseconds(), 10), "general's"},
			{"idle_timeout", strconv.FormatInt(p.IdleTimeout.Milliseconds(), 10), "general's"},
			{"server_lifetime", strconv.FormatInt(p.ServerLifetime.Milliseconds(), 10), "general's"},
			{"checkout_failure_limit", strconv.Itoa(p.CheckoutFailureLimit), "0"},
			{"cleanup_server_connections", strconv.FormatBool(p.CleanupServerConnections), "true"},
			{"log_client_parameter_status_changes", strconv.FormatBool(p.LogClientParameterStatusChanges), "false"},
			{"prepared_statements_cache_size", strconv.Itoa(p.PreparedStatementsCacheSize), "general's"},
		} {
			res.row(prefix+kv[0], kv[1], kv[2], "yes")
		}
		users := make([]string, len(p.Users))
		for i, u := range p.Users {
			users[i] = u.Username
		}
		res.row(prefix+"users", strings.Join(users, ", "), "-", "yes")
		for _, u := range p.Users {
			up := prefix + "users." + u.Username + "."
			res.row(up+"pool_size", strconv.Itoa(u.PoolSize), "10", "yes")
			res.row(up+"min_pool_size", strconv.Itoa(u.MinPoolSize), "0", "yes")
			res.row(up+"pool_mode", u.EffectivePoolMode(p), "-", "yes")
			res.row(up+"statement_timeout", strconv.FormatInt(u.StatementTimeout.Milliseconds(), 10), "0", "yes")
			res.row(up+"server_username", u.ServerUser(), "-", "yes")
			method := u.ClientAuth(&cfg.General)
			if u.Password == "" && u.AuthType == "" && !u.NoPassword {
				method = config.AuthTrust // password = "" in the file
			}
			res.row(up+"auth_type", method, "-", "yes")
			res.row(up+"connect_timeout", strconv.FormatInt(u.ConnectTimeout.Milliseconds(), 10), "pool's", "yes")
			res.row(up+"idle_timeout", strconv.FormatInt(u.IdleTimeout.Milliseconds(), 10), "pool's", "yes")
			res.row(up+"server_lifetime", strconv.FormatInt(u.ServerLifetime.Milliseconds(), 10), "pool's", "yes")
		}
		res.row(prefix+"shard_count", strconv.Itoa(len(p.Shards)), "-", "yes")
		for n, sh := range p.Shards {
			sp := prefix + "shards." + strconv.Itoa(n) + "."
			servers := make([]string, len(sh.Servers))
			for i, s := range sh.Servers {
				servers[i] = net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) + " " + s.Role
			}
			res.row(sp+"database", sh.Database, "-", "yes")
			res.row(sp+"servers", strings.Join(servers, ", "), "-", "yes")
		}
	}
	res.complete("SHOW")
	return nil
}
