package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden loads every testdata/*.toml and compares what Load says (errors, warnings and the
// loaded configuration) with testdata/*.golden. Run `go test -update` to rewrite the golden files
// after a deliberate change, and read the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, warns, err := Load(file)
			got := render(cfg, warns, err)
			golden := strings.TrimSuffix(file, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Load(%s) differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", file, golden, got, want)
			}
		})
	}
}

// TestPgcatFilesLoad pins that pgcat's own configuration files, copied unchanged from
// postgresml/pgcat, load with warnings only.
func TestPgcatFilesLoad(t *testing.T) {
	for _, file := range []string{"pgcat.toml", "pgcat.minimal.toml", "pgcat.docker.toml", "pgcat.circleci.toml"} {
		t.Run(file, func(t *testing.T) {
			cfg, warns, err := Load(filepath.Join("testdata", file))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg == nil || len(cfg.Pools) == 0 {
				t.Fatalf("Load returned no pools")
			}
			for _, w := range warns {
				if w.Line == 0 || w.File == "" || w.Key == "" {
					t.Errorf("warning without a position or key: %+v", w)
				}
			}
		})
	}
}

// render prints what Load returned in a stable, diffable form.
func render(cfg *Config, warns []Warning, err error) string {
	var b strings.Builder
	if err != nil {
		for _, e := range unwrapAll(err) {
			fmt.Fprintf(&b, "error: %v\n", e)
		}
	}
	for _, w := range warns {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	if cfg == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "path = %s\n", cfg.Path)
	g := reflect.ValueOf(cfg.General)
	for i := range g.NumField() {
		if n := g.Type().Field(i).Name; n == "TLS" || n == "ServerRootCAs" {
			fmt.Fprintf(&b, "general.%s loaded = %v\n", n, !g.Field(i).IsNil())
			continue
		}
		format := "general.%s = %v\n"
		if g.Field(i).Kind() == reflect.String {
			format = "general.%s = %q\n"
		}
		fmt.Fprintf(&b, format, g.Type().Field(i).Name, g.Field(i).Interface())
	}
	names := make([]string, 0, len(cfg.Pools))
	for name := range cfg.Pools {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := cfg.Pools[name]
		fmt.Fprintf(&b, "pool %q mode=%s\n", p.Name, p.PoolMode)
		if p.AuthQuery != "" {
			fmt.Fprintf(&b, "  auth_query=%q user=%q password=%q any_user=%v\n", p.AuthQuery, p.AuthQueryUser, p.AuthQueryPassword, p.AuthQueryAnyUser)
		}
		for i, u := range p.Users {
			fmt.Fprintf(&b, "  user %d %+v effective_mode=%s server_user=%s server_pass=%s\n",
				i, *u, u.EffectivePoolMode(p), u.ServerUser(), u.ServerPass())
		}
		for i, s := range p.Shards {
			fmt.Fprintf(&b, "  shard %d database=%s servers=%v\n", i, s.Database, s.Servers)
			if len(s.Mirrors) > 0 {
				fmt.Fprintf(&b, "  shard %d mirrors=%v\n", i, s.Mirrors)
			}
		}
	}
	return b.String()
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// load parses TOML text given inline, named "test.toml" in messages.
func load(t *testing.T, text string) (*Config, []Warning, error) {
	t.Helper()
	return parse("test.toml", []byte(text))
}

// minimal is a valid file that test cases extend.
const minimal = `
[pools.app.users.0]
username = "app"
password = "x"

[pools.app.shards.0]
database = "app"
servers = [["db1", 5432, "primary"]]
`

func TestDefaults(t *testing.T) {
	cfg, warns, err := load(t, minimal)
	if err != nil || len(warns) != 0 {
		t.Fatalf("Load: %v, warnings %v", err, warns)
	}
	want := General{
		Host:                           "0.0.0.0",
		Port:                           6432,
		ConnectTimeout:                 5000 * time.Millisecond,
		IdleTimeout:                    600000 * time.Millisecond,
		ServerLifetime:                 3600000 * time.Millisecond,
		IdleClientInTransactionTimeout: 0,
		ShutdownTimeout:                60000 * time.Millisecond,
		QueryWaitTimeout:               120000 * time.Millisecond,
		ClientLoginTimeout:             60000 * time.Millisecond,
		HealthcheckTimeout:             1000 * time.Millisecond,
		HealthcheckDelay:               30000 * time.Millisecond,
		HealthcheckInterval:            time.Second,
		BanTime:                        60 * time.Second,
		TCPKeepalivesIdle:              5 * time.Second,
		TCPKeepalivesCount:             5,
		TCPKeepalivesInterval:          5 * time.Second,
		TCPUserTimeout:                 10 * time.Second,
		TCPDeferAccept:                 true,
		ValidateConfig:                 true,
		DNSMaxTTL:                      30 * time.Second,
		PreparedStatementsCacheSize:    500,
		MaxClientConn:                  10000,
		MaxMessageSize:                 268435456,
		ServerResetQuery:               "DISCARD ALL",
		AuthQueryCacheTTL:              5 * time.Minute,
		PrometheusExporterPort:         9930,
	}
	if !reflect.DeepEqual(cfg.General, want) {
		t.Errorf("general defaults:\n got %+v\nwant %+v", cfg.General, want)
	}
	p := cfg.Pool("app")
	if p == nil || p.PoolMode != "transaction" {
		t.Fatalf("pool app: %+v", p)
	}
	u := p.User("app")
	wantUser := User{Username: "app", Password: "x", PoolSize: 10,
		ConnectTimeout: 5 * time.Second, IdleTimeout: 10 * time.Minute, ServerLifetime: time.Hour}
	if u == nil || *u != wantUser {
		t.Errorf("user defaults: got %+v, want %+v", u, wantUser)
	}
	if cfg.Path != "test.toml" {
		t.Errorf("Path = %q", cfg.Path)
	}
}

// TestErrors checks one problem per case: the message Load gives, position included.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // one of the errors, whole
	}{
		{"unknown key suggests the nearest", "[general]\nprot = 1\n" + minimal,
			"test.toml:2: unknown key general.prot (did you mean general.port?)"},
		{"unknown key suggests a pgcat key", "[general]\nworker_thread = 4\n" + minimal,
			"test.toml:2: unknown key general.worker_thread (did you mean general.worker_threads?)"},
		{"unknown key in the wrong section", "[general]\npool_size = 4\n" + minimal,
			"test.toml:2: unknown key general.pool_size (pool_size belongs in [pools.<db>.users.<n>])"},
		{"unknown key without a near one", "[general]\nzzzzzzzzzz = 4\n" + minimal,
			"test.toml:2: unknown key general.zzzzzzzzzz"},
		{"unknown section", "[genral]\nport = 1\n" + minimal,
			"test.toml:1: unknown key genral (did you mean general?)"},
		{"unknown key in a shard", minimal + "poolsize = 3\n",
			"test.toml:9: unknown key pools.app.shards.0.poolsize"},
		{"quoted keys stay quoted", `[pools."a.b"]` + "\npool_mdoe = 1\n" + strings.ReplaceAll(minimal, "pools.app", `pools."a.b"`),
			`test.toml:2: unknown key pools."a.b".pool_mdoe (did you mean pools."a.b".pool_mode?)`},

		{"string for an integer", "[general]\nport = \"6432\"\n" + minimal,
			`test.toml:2: general.port: want an integer, got string "6432"`},
		{"duration string for milliseconds", "[general]\nconnect_timeout = \"5s\"\n" + minimal,
			`test.toml:2: general.connect_timeout: want an integer number of milliseconds, got string "5s" (write 5000)`},
		{"duration string for seconds", "[general]\nban_time = \"2m\"\n" + minimal,
			`test.toml:2: general.ban_time: want an integer number of seconds, got string "2m" (write 120)`},
		{"float for milliseconds", "[general]\nidle_timeout = 1.5\n" + minimal,
			"test.toml:2: general.idle_timeout: want an integer number of milliseconds, got float 1.5"},
		{"negative duration", "[general]\nshutdown_timeout = -1\n" + minimal,
			"test.toml:2: general.shutdown_timeout: must not be negative, got -1"},
		{"zero where at least one", "[general]\nconnect_timeout = 0\n" + minimal,
			"test.toml:2: general.connect_timeout: must be at least 1 milliseconds, got 0"},
		{"huge duration", "[general]\nserver_lifetime = 9223372036854775807\n" + minimal,
			"test.toml:2: general.server_lifetime: 9223372036854775807 milliseconds is too long"},
		{"string for a boolean", "[general]\nlog_client_connections = \"yes\"\n" + minimal,
			`test.toml:2: general.log_client_connections: want true or false, got string "yes"`},
		{"array for a string", "[general]\nhost = [\"a\", \"b\"]\n" + minimal,
			"test.toml:2: general.host: want a string, got an array of 2 elements"},
		{"port out of range", "[general]\nport = 70000\n" + minimal,
			"test.toml:2: general.port: must be between 1 and 65535, got 70000"},
		{"general not a table", "general = 5\n" + minimal,
			"test.toml:1: general: want a table ([general]), got integer 5"},

		{"bad pool mode", "[pools.app]\npool_mode = \"connection\"\n" + minimal,
			`test.toml:2: pools.app.pool_mode: must be "session", "transaction" or "statement", got "connection"`},
		{"pool size zero", minimal + "[pools.app.users.1]\nusername = \"b\"\npassword = \"b\"\npool_size = 0\n",
			"test.toml:12: pools.app.users.1.pool_size: must be between 1 and 2147483647, got 0"},
		{"min pool size above pool size", strings.Replace(minimal, `password = "x"`, "password = \"x\"\npool_size = 2\nmin_pool_size = 3", 1),
			"test.toml:6: pools.app.users.0.min_pool_size: min_pool_size 3 is larger than pool_size 2"},
		{"duplicate username", minimal + "[pools.app.users.1]\nusername = \"app\"\npassword = \"y\"\n",
			`test.toml:10: pools.app.users.1.username: user "app" is already defined in [pools.app.users.0]`},
		{"missing password", minimal + "[pools.app.users.1]\nusername = \"b\"\n",
			"test.toml:9: pools.app.users.1.password: a user needs a password (pgcat allows none only with auth_query)"},
		{"missing username", minimal + "[pools.app.users.1]\npassword = \"b\"\n",
			"test.toml:9: pools.app.users.1.username: a user needs a username"},
		{"no users", "[pools.app]\npool_mode = \"session\"\n[pools.app.shards.0]\ndatabase = \"a\"\nservers = [[\"h\", 1, \"primary\"]]\n",
			"test.toml:1: pools.app.users: the pool has no users; add a [pools.app.users.0] section"},
		{"no shards", "[pools.app.users.0]\nusername = \"a\"\npassword = \"a\"\n",
			"test.toml:1: pools.app.shards: the pool has no shards; add a [pools.app.shards.0] section"},
		{"shard gap", minimal + "[pools.app.shards.2]\ndatabase = \"b\"\nservers = [[\"h\", 1, \"primary\"]]\n",
			"test.toml:6: pools.app.shards: shards must be numbered 0 to 2 without gaps; shard 1 is missing"},
		{"shard not a number", minimal + "[pools.app.shards.one]\ndatabase = \"b\"\nservers = [[\"h\", 1, \"primary\"]]\n",
			`test.toml:9: pools.app.shards.one: shards are numbered 0, 1, 2, ...; "one" is not a shard number`},
		{"shard without database", strings.Replace(minimal, `database = "app"`, "", 1),
			"test.toml:6: pools.app.shards.0.database: a shard needs the database name on its servers"},
		{"shard with empty database", strings.Replace(minimal, `database = "app"`, `database = ""`, 1),
			"test.toml:7: pools.app.shards.0.database: must not be empty"},
		{"empty username", strings.Replace(minimal, `username = "app"`, `username = ""`, 1),
			"test.toml:3: pools.app.users.0.username: must not be empty"},
		{"syntax error mid-file", "a = 1\nb = \nc = 2\n",
			"test.toml:2: TOML syntax: expected value but found '\\n' instead"},
		{"duplicate key", "[general]\nport = 1\nport = 2\n",
			"test.toml:3: TOML syntax: Key 'general.port' has already been defined."},
		{"no pools", "[general]\nport = 1\n",
			"test.toml: no [pools.<db>] section: there is nothing to serve"},

		{"servers not an array", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `"db1:5432"`, 1),
			`test.toml:8: pools.app.shards.0.servers: want an array of ["host", port, "primary"|"replica"] entries, got string "db1:5432"`},
		{"servers empty", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[]`, 1),
			"test.toml:8: pools.app.shards.0.servers: a shard needs at least one server"},
		{"server entry too short", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["db1", 5432]]`, 1),
			`test.toml:8: pools.app.shards.0.servers: entry 0: want 3 elements ["host", port, "primary"|"replica"], got 2`},
		{"server entry not an array", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `["db1"]`, 1),
			`test.toml:8: pools.app.shards.0.servers: entry 0: want ["host", port, "primary"|"replica"], got string "db1"`},
		{"server port as string", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["db1", "5432", "primary"]]`, 1),
			`test.toml:8: pools.app.shards.0.servers: entry 0: the port (second element) must be an integer, got string "5432"`},
		{"server host not a string", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[[5432, "db1", "primary"]]`, 1),
			"test.toml:8: pools.app.shards.0.servers: entry 0: the host (first element) must be a string, got integer 5432"},
		{"server bad role", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["db1", 5432, "mirror"]]`, 1),
			`test.toml:8: pools.app.shards.0.servers: entry 0: the role must be "primary" or "replica", got "mirror"`},
		{"two primaries", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["a", 1, "primary"], ["b", 1, "replica"], ["c", 1, "primary"]]`, 1),
			"test.toml:8: pools.app.shards.0.servers: a shard has at most one primary; entries [0 2] are all primaries"},
		{"same server twice", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["a", 1, "replica"], ["a", 1, "replica"]]`, 1),
			"test.toml:8: pools.app.shards.0.servers: entry 1: replica a:1 is already entry 0"},

		{"mirrors not an array", minimal + `mirrors = "m:5432"` + "\n",
			`test.toml:9: pools.app.shards.0.mirrors: want an array of ["host", port, server_index] entries, got string "m:5432"`},
		{"mirror entry too short", minimal + `mirrors = [["m", 5432]]` + "\n",
			`test.toml:9: pools.app.shards.0.mirrors: entry 0: want 3 elements ["host", port, server_index], got 2`},
		{"mirror entry not an array", minimal + `mirrors = ["m", 5432, 0]` + "\n",
			`test.toml:9: pools.app.shards.0.mirrors: entry 0: want ["host", port, server_index], got string "m"`},
		{"mirror host not a string", minimal + `mirrors = [[5432, "m", 0]]` + "\n",
			"test.toml:9: pools.app.shards.0.mirrors: entry 0: the host (first element) must be a string, got integer 5432"},
		{"mirror host empty", minimal + `mirrors = [["", 5432, 0]]` + "\n",
			"test.toml:9: pools.app.shards.0.mirrors: entry 0: the host must not be empty"},
		{"mirror port as string", minimal + `mirrors = [["m", "5432", 0]]` + "\n",
			`test.toml:9: pools.app.shards.0.mirrors: entry 0: the port (second element) must be an integer, got string "5432"`},
		{"mirror port out of range", minimal + `mirrors = [["m", 65536, 0]]` + "\n",
			"test.toml:9: pools.app.shards.0.mirrors: entry 0: the port must be between 1 and 65535, got 65536"},
		{"mirror index a role", minimal + `mirrors = [["m", 5432, "primary"]]` + "\n",
			`test.toml:9: pools.app.shards.0.mirrors: entry 0: the server index (third element) must be an integer, got string "primary"`},
		{"mirror index negative", minimal + `mirrors = [["m", 5432, -1]]` + "\n",
			"test.toml:9: pools.app.shards.0.mirrors: entry 0: the server index must not be negative, got -1"},
		{"mirror table with an unknown key", minimal + `mirrors = [{ host = "m", port = 5432, index = 0 }]` + "\n",
			`test.toml:9: pools.app.shards.0.mirrors: entry 0: unknown key "index" (a mirror has host, port and mirroring_target_index)`},
		{"mirror table without a port", minimal + `mirrors = [{ host = "m", mirroring_target_index = 0 }]` + "\n",
			"test.toml:9: pools.app.shards.0.mirrors: entry 0: the port (second element) must be an integer, got nothing"},

		{"syntax error", "[general]\nport = 6432\n[pools.app\n",
			"test.toml:3: TOML syntax: expected '.' or ']' to end table name, but got '\\n' instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := load(t, tt.text)
			if err == nil {
				t.Fatalf("Load succeeded; want error %q", tt.want)
			}
			if cfg != nil {
				t.Errorf("Load returned a Config with an error")
			}
			var msgs []string
			for _, e := range unwrapAll(err) {
				msgs = append(msgs, e.Error())
			}
			if !slices.Contains(msgs, tt.want) {
				t.Errorf("errors:\n  %s\nwant among them:\n  %s", strings.Join(msgs, "\n  "), tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "test.toml" {
				t.Errorf("errors.As(*Error) = %+v", ce)
			}
		})
	}
}

// TestAllErrorsReported checks that Load does not stop at the first problem.
func TestAllErrorsReported(t *testing.T) {
	_, _, err := load(t, "[general]\nport = \"x\"\nprot = 1\nban_time = -1\n"+
		strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["db1", 5432, "leader"]]`, 1))
	errs := unwrapAll(err)
	if len(errs) != 4 {
		t.Fatalf("got %d errors, want 4:\n%v", len(errs), err)
	}
	var lines []int
	for _, e := range errs {
		lines = append(lines, e.(*Error).Line)
	}
	if !slices.IsSorted(lines) {
		t.Errorf("errors not in line order: %v", lines)
	}
}

// TestMirrors checks the shapes of pgcat's mirrors key that pgcat reads: arrays, inline tables
// and an array of tables, each naming a server of the shard by its index.
func TestMirrors(t *testing.T) {
	servers := `servers = [["db1", 5432, "primary"], ["db2", 5432, "replica"]]`
	shard := strings.Replace(minimal, `servers = [["db1", 5432, "primary"]]`, servers, 1)
	tests := []struct {
		name string
		text string
		want []Mirror
	}{
		{"none", shard, nil},
		{"arrays", shard + `mirrors = [["m1", 5433, 0], ["m2", 5434, 1]]` + "\n",
			[]Mirror{{"m1", 5433, 0}, {"m2", 5434, 1}}},
		{"the same mirror thrice, as pgcat's own test has it", shard + `mirrors = [["m", 5433, 0], ["m", 5433, 0], ["m", 5433, 0]]` + "\n",
			[]Mirror{{"m", 5433, 0}, {"m", 5433, 0}, {"m", 5433, 0}}},
		{"inline tables", shard + `mirrors = [{ host = "m1", port = 5433, mirroring_target_index = 1 }]` + "\n",
			[]Mirror{{"m1", 5433, 1}}},
		{"array of tables", shard + "[[pools.app.shards.0.mirrors]]\nhost = \"m1\"\nport = 5433\nmirroring_target_index = 0\n",
			[]Mirror{{"m1", 5433, 0}}},
		{"empty", shard + "mirrors = []\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warns, err := load(t, tt.text)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(warns) > 0 {
				t.Errorf("warnings: %v", warns)
			}
			if got := cfg.Pools["app"].Shards[0].Mirrors; !slices.Equal(got, tt.want) {
				t.Errorf("Mirrors = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"pgcat pool key", "[pools.app]\ntable_mutation_cache_ms_ttl = 50\n" + minimal,
			[]string{"test.toml:2: pools.app.table_mutation_cache_ms_ttl: pgcat key not implemented by sluice yet; ignored"}},
		{"mirror of a server the shard lacks", minimal + "mirrors = [[\"m\", 5432, 0], [\"m\", 5432, 3]]\n",
			[]string{"test.toml:9: pools.app.shards.0.mirrors: entry 1: the shard has no server 3 (servers are numbered from 0); pgcat ignores this mirror and so does sluice"}},
		{"mirror is its own server", minimal + "mirrors = [[\"db1\", 5432, 0]]\n",
			[]string{"test.toml:9: pools.app.shards.0.mirrors: entry 0: mirror db1:5432 is server 0 itself: every statement would run on it twice"}},
		{"admin console open to anyone", "[general]\nadmin_username = \"admin\"\nadmin_auth_type = \"trust\"\n" + minimal,
			[]string{`test.toml:3: general.admin_auth_type: admin_auth_type = "trust" with no hba rules: anyone who can connect, from any address, logs in to the admin console as admin (SHUTDOWN, KILL, RELOAD ...); limit it with hba or hba_file rules, e.g. local and 127.0.0.1/32 only`}},
		{"admin console on trust behind hba", "[general]\nadmin_username = \"admin\"\nadmin_auth_type = \"trust\"\nhba = [\"local all admin trust\", \"host all admin all reject\"]\n" + minimal, nil},
		{"same server in two roles", strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["a", 1, "primary"], ["a", 1, "replica"]]`, 1),
			[]string{"test.toml:8: pools.app.shards.0.servers: entry 1: server a:1 is also entry 0, in another role"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warns, err := load(t, tt.text)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var got []string
			for _, w := range warns {
				got = append(got, w.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// TestAuthQueryKeys checks that pools inherit [general]'s auth_query keys unless they set their
// own, that a user may then go without a password, and what is refused.
func TestAuthQueryKeys(t *testing.T) {
	noPassword := strings.Replace(minimal, `password = "x"`, "", 1)
	general := "[general]\nauth_query = \"SELECT usename, passwd FROM pg_shadow WHERE usename = $1\"\nauth_query_user = \"pgbouncer\"\nauth_query_password = \"pw\"\n"
	t.Run("inherited from general", func(t *testing.T) {
		cfg, _, err := load(t, general+noPassword)
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Pool("app")
		if p.AuthQuery != cfg.General.AuthQuery || p.AuthQueryUser != "pgbouncer" || p.AuthQueryPassword != "pw" || !p.Users[0].NoPassword {
			t.Fatalf("pool %+v, user %+v", p, p.Users[0])
		}
	})
	t.Run("the pool's own", func(t *testing.T) {
		cfg, _, err := load(t, general+"[pools.app]\nauth_query = \"SELECT * FROM lookup('$1')\"\nauth_query_user = \"other\"\nauth_query_any_user = true\n"+noPassword)
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Pool("app")
		if p.AuthQuery != "SELECT * FROM lookup('$1')" || p.AuthQueryUser != "other" || p.AuthQueryPassword != "pw" || !p.AuthQueryAnyUser {
			t.Fatalf("pool %+v", p)
		}
	})
	for _, tt := range []struct{ name, text, want string }{
		{"no auth_query_user", "[general]\nauth_query = \"SELECT $1\"\n" + minimal, "test.toml:2: general.auth_query: auth_query needs auth_query_user"},
		{"no $1", "[pools.app]\nauth_query = \"SELECT 1\"\nauth_query_user = \"u\"\n" + minimal, "test.toml:2: pools.app.auth_query: auth_query must use $1"},
		{"any user without auth_query", "[pools.app]\nauth_query_any_user = true\n" + minimal, "test.toml:2: pools.app.auth_query_any_user: auth_query_any_user needs auth_query"},
		{"cert without tls_ca_file", "[general]\nauth_type = \"cert\"\n" + minimal, "test.toml:1: general.tls_ca_file: the cert authentication method needs"},
		{"cert on a host rule", "[general]\nhba = [\"host all all all cert\"]\n" + minimal, "cert authentication is only supported on hostssl rules"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestUserOrder(t *testing.T) {
	text := `
[pools.app.users.10]
username = "ten"
password = "x"
[pools.app.users.2]
username = "two"
password = "x"
[pools.app.users.0]
username = "zero"
password = "x"
[pools.app.shards.0]
database = "app"
servers = [["db1", 5432, "replica"]]
`
	cfg, _, err := load(t, text)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range cfg.Pool("app").Users {
		got = append(got, u.Username)
	}
	if want := []string{"zero", "two", "ten"}; !slices.Equal(got, want) {
		t.Errorf("user order %v, want %v", got, want)
	}
}

func TestSpellingsPgcatAccepts(t *testing.T) {
	text := strings.Replace(minimal, `[["db1", 5432, "primary"]]`, `[["a", 1, "Primary"], ["b", 1, "Replica"]]`, 1) +
		"[pools.app.users.1]\nusername = \"b\"\npassword = \"b\"\npool_mode = \"Session\"\n"
	cfg, _, err := load(t, text)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pool("app")
	if got := p.Shards[0].Servers; got[0].Role != RolePrimary || got[1].Role != RoleReplica {
		t.Errorf("roles not normalized: %+v", got)
	}
	if got := p.User("b").PoolMode; got != PoolModeSession {
		t.Errorf("pool mode not normalized: %q", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, _, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestFormatPos(t *testing.T) {
	tests := []struct {
		file string
		line int
		want string
	}{
		{"a.toml", 3, "a.toml:3: "},
		{"a.toml", 0, "a.toml: "},
		{"", 3, "line 3: "},
		{"", 0, ""},
	}
	for _, tt := range tests {
		if got := formatPos(tt.file, tt.line); got != tt.want {
			t.Errorf("formatPos(%q, %d) = %q, want %q", tt.file, tt.line, got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	candidates := []string{"port", "host", "pool_mode", "connect_timeout", "worker_threads"}
	tests := []struct{ key, want string }{
		{"prot", "port"},
		{"Port", "port"},
		{"hots", "host"},
		{"pool_mod", "pool_mode"},
		{"conect_timeout", "connect_timeout"},
		{"connecttimeout", "connect_timeout"},
		{"worker_thread", "worker_threads"},
		{"xyz", ""},
		{"timeout", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Suggest(tt.key, candidates); got != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"port", "port", 0},
		{"prot", "port", 1},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
		{"ca", "abc", 3}, // optimal string alignment, not full Damerau
		{"héllo", "hello", 1},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.b, tt.a); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.b, tt.a, got, tt.want)
		}
	}
}

// TestDocsListEveryKey keeps docs/configuration.md in step with the code: every key sluice
// implements and every pgcat key it accepts with a warning must be named there.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	keys = append(keys, keysOf(generalKeys)...)
	keys = append(keys, keysOf(poolKeys)...)
	keys = append(keys, keysOf(userKeys)...)
	keys = append(keys, keysOf(shardKeys)...)
	keys = append(keys, shardTables...)
	keys = append(keys, keysOf(pgcatTop)...)
	keys = append(keys, keysOf(pgcatGeneral)...)
	keys = append(keys, keysOf(pgcatPool)...)
	keys = append(keys, keysOf(pgcatUser)...)
	keys = append(keys, keysOf(pgcatShard)...)
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/configuration.md does not mention `%s`", k)
		}
	}
}

// FuzzParse checks that no input makes Load panic, and that what it accepts is valid: every pool
// has users and shards, and every error carries the file name. The seeds are the testdata files.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := parse("fuzz.toml", data)
		if err != nil {
			for _, e := range unwrapAll(err) {
				if !strings.HasPrefix(e.Error(), "fuzz.toml") {
					t.Errorf("error without the file name: %v", e)
				}
			}
			return
		}
		for name, p := range cfg.Pools {
			if len(p.Users) == 0 || len(p.Shards) == 0 || p.Name != name {
				t.Errorf("accepted pool %q with %d users and %d shards", name, len(p.Users), len(p.Shards))
			}
		}
	})
}
