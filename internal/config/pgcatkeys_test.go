package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// withUser adds lines to minimal's user section.
func withUser(lines string) string {
	return strings.Replace(minimal, `password = "x"`, "password = \"x\"\n"+lines, 1)
}

// TestTimeoutOverrides checks pgcat's order for connect_timeout, idle_timeout and
// server_lifetime: the user's own value beats its pool's, which beats [general]'s.
func TestTimeoutOverrides(t *testing.T) {
	type timeouts struct{ connect, idle, lifetime time.Duration }
	tests := []struct {
		name       string
		text       string
		pool, user timeouts
	}{
		{"defaults", minimal,
			timeouts{5 * time.Second, 10 * time.Minute, time.Hour},
			timeouts{5 * time.Second, 10 * time.Minute, time.Hour}},
		{"general only", "[general]\nconnect_timeout = 100\nidle_timeout = 200\nserver_lifetime = 300\n" + minimal,
			timeouts{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond},
			timeouts{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}},
		{"pool beats general", "[general]\nconnect_timeout = 100\nidle_timeout = 200\nserver_lifetime = 300\n" +
			"[pools.app]\nconnect_timeout = 1000\nidle_timeout = 2000\n" + minimal,
			timeouts{time.Second, 2 * time.Second, 300 * time.Millisecond},
			timeouts{time.Second, 2 * time.Second, 300 * time.Millisecond}},
		{"user beats pool", "[pools.app]\nconnect_timeout = 1000\nidle_timeout = 2000\nserver_lifetime = 3000\n" +
			withUser("connect_timeout = 10\nidle_timeout = 0\nserver_lifetime = 30"),
			timeouts{time.Second, 2 * time.Second, 3 * time.Second},
			timeouts{10 * time.Millisecond, 0, 30 * time.Millisecond}},
		{"user beats general", "[general]\nidle_timeout = 200\n" + withUser("idle_timeout = 50"),
			timeouts{5 * time.Second, 200 * time.Millisecond, time.Hour},
			timeouts{5 * time.Second, 50 * time.Millisecond, time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warns, err := load(t, tt.text)
			if err != nil || len(warns) > 0 {
				t.Fatalf("Load: %v, warnings %v", err, warns)
			}
			p := cfg.Pool("app")
			if got := (timeouts{p.ConnectTimeout, p.IdleTimeout, p.ServerLifetime}); got != tt.pool {
				t.Errorf("pool timeouts = %+v, want %+v", got, tt.pool)
			}
			u := p.User("app")
			if got := (timeouts{u.ConnectTimeout, u.IdleTimeout, u.ServerLifetime}); got != tt.user {
				t.Errorf("user timeouts = %+v, want %+v", got, tt.user)
			}
		})
	}
}

// TestDynamicUserTimeouts: a user logging in through auth_query gets the timeouts of the user
// named by auth_query_user when the pool lists it, else the pool's.
func TestDynamicUserTimeouts(t *testing.T) {
	text := "[pools.app]\nidle_timeout = 2000\nauth_query = \"SELECT $1\"\nauth_query_user = \"app\"\nauth_query_password = \"x\"\nauth_query_any_user = true\n" +
		withUser("idle_timeout = 50")
	cfg, _, err := load(t, text)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pool("app")
	if got := p.DynamicUser("someone").IdleTimeout; got != 50*time.Millisecond {
		t.Errorf("with the auth_query_user listed: idle_timeout %v, want 50ms", got)
	}
	p.AuthQueryUser = "not-listed"
	if got := p.DynamicUser("someone").IdleTimeout; got != 2*time.Second {
		t.Errorf("without it: idle_timeout %v, want the pool's 2s", got)
	}
}

// TestPgcatKeys checks the value each implemented pgcat key loads as.
func TestPgcatKeys(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(*Config) any // returns the value loaded
		want  any
	}{
		{"tcp_user_timeout", "[general]\ntcp_user_timeout = 2500\n" + minimal,
			func(c *Config) any { return c.General.TCPUserTimeout }, 2500 * time.Millisecond},
		{"tcp_user_timeout off", "[general]\ntcp_user_timeout = 0\n" + minimal,
			func(c *Config) any { return c.General.TCPUserTimeout }, time.Duration(0)},
		{"server_round_robin", "[general]\nserver_round_robin = true\n" + minimal,
			func(c *Config) any { return c.General.ServerRoundRobin }, true},
		{"worker_threads", "[general]\nworker_threads = 3\n" + minimal,
			func(c *Config) any { return c.General.WorkerThreads }, 3},
		{"autoreload", "[general]\nautoreload = 15000\n" + minimal,
			func(c *Config) any { return c.General.Autoreload }, 15 * time.Second},
		{"validate_config", "[general]\nvalidate_config = false\n" + minimal,
			func(c *Config) any { return c.General.ValidateConfig }, false},
		{"verify_config is validate_config", "[general]\nverify_config = false\n" + minimal,
			func(c *Config) any { return c.General.ValidateConfig }, false},
		{"dns_cache_enabled", "[general]\ndns_cache_enabled = true\ndns_max_ttl = 5\n" + minimal,
			func(c *Config) any { return [2]any{c.General.DNSCacheEnabled, c.General.DNSMaxTTL} }, [2]any{true, 5 * time.Second}},
		{"prepared_statements", "[general]\nprepared_statements = true\n" + minimal,
			func(c *Config) any { return c.General.PreparedStatements }, true},
		{"general cache size reaches the pool", "[general]\nprepared_statements_cache_size = 64\n" + minimal,
			func(c *Config) any { return c.Pool("app").PreparedStatementsCacheSize }, 64},
		{"pool cache size beats general", "[general]\nprepared_statements_cache_size = 64\n[pools.app]\nprepared_statements_cache_size = 8\n" + minimal,
			func(c *Config) any { return c.Pool("app").PreparedStatementsCacheSize }, 8},
		{"pool cache size 0 is general's", "[pools.app]\nprepared_statements_cache_size = 0\n" + minimal,
			func(c *Config) any { return c.Pool("app").PreparedStatementsCacheSize }, 500},
		{"checkout_failure_limit", "[pools.app]\ncheckout_failure_limit = 3\n" + minimal,
			func(c *Config) any { return c.Pool("app").CheckoutFailureLimit }, 3},
		{"cleanup_server_connections default", minimal,
			func(c *Config) any { return c.Pool("app").CleanupServerConnections }, true},
		{"cleanup_server_connections", "[pools.app]\ncleanup_server_connections = false\n" + minimal,
			func(c *Config) any { return c.Pool("app").CleanupServerConnections }, false},
		{"log_client_parameter_status_changes", "[pools.app]\nlog_client_parameter_status_changes = true\n" + minimal,
			func(c *Config) any { return c.Pool("app").LogClientParameterStatusChanges }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warns, err := load(t, tt.text)
			if err != nil || len(warns) > 0 {
				t.Fatalf("Load: %v, warnings %v", err, warns)
			}
			if got := tt.check(cfg); got != tt.want {
				t.Errorf("loaded %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPgcatKeyErrors checks that the implemented pgcat keys are validated, with the position.
func TestPgcatKeyErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string
	}{
		{"pool connect_timeout zero", "[pools.app]\nconnect_timeout = 0\n" + minimal,
			"test.toml:2: pools.app.connect_timeout: must be at least 1 milliseconds, got 0"},
		{"user idle_timeout negative", withUser("idle_timeout = -5"),
			"test.toml:5: pools.app.users.0.idle_timeout: must not be negative, got -5"},
		{"user server_lifetime as a string", withUser(`server_lifetime = "1h"`),
			`test.toml:5: pools.app.users.0.server_lifetime: want an integer number of milliseconds, got string "1h" (write 3600000)`},
		{"tcp_user_timeout negative", "[general]\ntcp_user_timeout = -1\n" + minimal,
			"test.toml:2: general.tcp_user_timeout: must not be negative, got -1"},
		{"worker_threads zero", "[general]\nworker_threads = 0\n" + minimal,
			"test.toml:2: general.worker_threads: must be between 1 and 4096, got 0"},
		{"autoreload zero", "[general]\nautoreload = 0\n" + minimal,
			"test.toml:2: general.autoreload: must be at least 1 milliseconds, got 0"},
		{"server_round_robin not a boolean", "[general]\nserver_round_robin = 1\n" + minimal,
			"test.toml:2: general.server_round_robin: want true or false, got integer 1"},
		{"dns_max_ttl zero", "[general]\ndns_max_ttl = 0\n" + minimal,
			"test.toml:2: general.dns_max_ttl: must be at least 1 seconds, got 0"},
		{"cache size too large", "[pools.app]\nprepared_statements_cache_size = 99999999\n" + minimal,
			"test.toml:2: pools.app.prepared_statements_cache_size: must be between 0 and 1048576, got 99999999"},
		{"checkout_failure_limit negative", "[pools.app]\ncheckout_failure_limit = -1\n" + minimal,
			"test.toml:2: pools.app.checkout_failure_limit: must be between 0 and 2147483647, got -1"},
		{"validate_config not a boolean", "[general]\nvalidate_config = \"yes\"\n" + minimal,
			`test.toml:2: general.validate_config: want true or false, got string "yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, tt.text)
			if err == nil {
				t.Fatalf("Load succeeded; want %q", tt.want)
			}
			var msgs []string
			for _, e := range unwrapAll(err) {
				msgs = append(msgs, e.Error())
			}
			if !slices.Contains(msgs, tt.want) {
				t.Errorf("errors:\n  %s\nwant among them:\n  %s", strings.Join(msgs, "\n  "), tt.want)
			}
		})
	}
}

// TestPoolsEqualTimeouts: a reload that changes a user's or a pool's timeout or cache size
// rebuilds the pool's servers.
func TestPoolsEqualTimeouts(t *testing.T) {
	base, _, err := load(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		withUser("idle_timeout = 5"),
		"[pools.app]\nserver_lifetime = 5\n" + minimal,
		"[pools.app]\nprepared_statements_cache_size = 5\n" + minimal,
	} {
		other, _, err := load(t, text)
		if err != nil {
			t.Fatal(err)
		}
		if PoolsEqual(base.Pool("app"), other.Pool("app")) {
			t.Errorf("PoolsEqual says equal after:\n%s", text)
		}
	}
}
