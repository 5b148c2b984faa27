package admin

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
)

func TestParseQuery(t *testing.T) {
	cases := []struct {
		query string
		want  []command
	}{
		{"SHOW POOLS", []command{{"SHOW", []string{"POOLS"}}}},
		{"show pools;", []command{{"SHOW", []string{"POOLS"}}}},
		{"  Show\tPools ;  ", []command{{"SHOW", []string{"POOLS"}}}},
		{"SHOW POOLS;;", []command{{"SHOW", []string{"POOLS"}}}},
		{"reload", []command{{"RELOAD", []string{}}}},
		{"SHOW POOLS; SHOW USERS", []command{{"SHOW", []string{"POOLS"}}, {"SHOW", []string{"USERS"}}}},
		{"ban db1.example:5432 30", []command{{"BAN", []string{"db1.example:5432", "30"}}}},
		{"UNBAN Db1", []command{{"UNBAN", []string{"Db1"}}}},
		{"SET application_name = 'x'", []command{{"SET", []string{"application_name", "=", "'x'"}}}},
		{"show", []command{{"SHOW", []string{}}}},
		{"", nil},
		{" ; ;", nil},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			got := parseQuery(c.query)
			if len(got) != len(c.want) {
				t.Fatalf("parseQuery(%q) = %+v, want %+v", c.query, got, c.want)
			}
			for i := range got {
				if got[i].verb != c.want[i].verb || !reflect.DeepEqual(append([]string{}, got[i].args...), c.want[i].args) {
					t.Errorf("parseQuery(%q)[%d] = %+v, want %+v", c.query, i, got[i], c.want[i])
				}
			}
		})
	}
}

const testConfig = `[general]
admin_username = "admin"
admin_password = "admin-secret"
ban_time = 45

[pools.app.users.0]
username = "app"
password = "user-secret"
pool_size = 7

[pools.app.users.1]
username = "batch"
password = "md5` + "0123456789abcdef0123456789abcdef" + `"
pool_mode = "session"
server_password = "server-secret"

[pools.app.shards.0]
database = "appdb"
servers = [["127.0.0.1", 1, "primary"], ["127.0.0.2", 1, "replica"]]
`

// newTestConsole returns a console over a table built from testConfig, whose servers are never
// dialed, with the given clients and bans.
func newTestConsole(t *testing.T, clients []Client, bans Bans) *Console {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.toml")
	if err := os.WriteFile(path, []byte(testConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ := route.Build(cfg, nil)
	t.Cleanup(func() { tbl.Targets(func(_, _ string, tg *route.Target) { tg.Close() }) })
	return &Console{
		Table:       func() *route.Table { return tbl },
		Clients:     func() []Client { return append([]Client(nil), clients...) },
		Connections: func() int { return len(clients) + 1 },
		Version:     "1.2.3",
		Bans:        bans,
	}
}

// reply is one command's decoded answer.
type reply struct {
	cols   []string
	rows   [][]string
	tag    string
	code   string // SQLSTATE of an ErrorResponse
	msg    string
	notice string
	empty  bool
}

// decode reads the messages exec appended.
func decode(t *testing.T, b []byte) []reply {
	t.Helper()
	fe := pgproto3.NewFrontend(bytes.NewReader(b), io.Discard)
	var out []reply
	cur := reply{}
	for {
		m, err := fe.Receive()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.RowDescription:
			for _, f := range m.Fields {
				cur.cols = append(cur.cols, string(f.Name))
			}
		case *pgproto3.DataRow:
			var row []string
			for _, v := range m.Values {
				row = append(row, string(v))
			}
			cur.rows = append(cur.rows, row)
		case *pgproto3.NoticeResponse:
			cur.notice = m.Message + m.Detail
		case *pgproto3.CommandComplete:
			cur.tag = string(m.CommandTag)
			out = append(out, cur)
			cur = reply{}
		case *pgproto3.ErrorResponse:
			cur.code, cur.msg = m.Code, m.Message
			out = append(out, cur)
			cur = reply{}
		case *pgproto3.EmptyQueryResponse:
			out = append(out, reply{empty: true})
		default:
			t.Fatalf("unexpected %T", m)
		}
	}
}

func execOne(t *testing.T, c *Console, q string) reply {
	t.Helper()
	rs := decode(t, c.exec(nil, q))
	if len(rs) != 1 {
		t.Fatalf("%q: %d replies, want 1: %+v", q, len(rs), rs)
	}
	return rs[0]
}

type fakeBans struct {
	bans     []Ban
	banned   []string
	unbanned []string
}

func (f *fakeBans) Bans() []Ban { return f.bans }
func (f *fakeBans) Ban(server string, d time.Duration) ([]Ban, error) {
	if server == "nowhere" {
		return nil, errors.New("no configured server")
	}
	f.banned = append(f.banned, server+" "+d.String())
	return []Ban{{Database: "app", User: "app", Role: "replica", Server: server}}, nil
}
func (f *fakeBans) Unban(server string) ([]Ban, error) {
	f.unbanned = append(f.unbanned, server)
	return nil, nil
}

// TestCommands runs each command against a table of two users with a primary and a replica,
// and checks the columns (pgcat's names and order, then sluice's), the rows and the tag.
func TestCommands(t *testing.T) {
	srvCreated := time.Now().Add(-3 * time.Second)
	clients := []Client{
		{ID: 7, Database: "app", User: "app", ApplicationName: "psql", Addr: "10.0.0.9", Port: 5555, Connected: time.Now().Add(-10 * time.Second), Queries: 12,
			Server: &Server{Addr: "127.0.0.1:1"}},
		{ID: 8, Database: "app", User: "app", Addr: "unix"},
		{ID: 9, Database: "pgcat", User: "admin", Addr: "127.0.0.1", Admin: true, TLS: true},
	}
	clients[0].Server.PID, clients[0].Server.Created = 4242, srvCreated
	bans := &fakeBans{bans: []Ban{{Database: "app", User: "app", Role: "replica", Server: "127.0.0.2:1", Reason: "health check failed", Since: time.Now(), Until: time.Now().Add(time.Minute)}}}
	c := newTestConsole(t, clients, bans)

	cases := []struct {
		query string
		cols  string // comma-separated
		rows  []string
		tag   string
	}{
		{"SHOW VERSION", "version", []string{"sluice 1.2.3"}, "SHOW"},
		{"show users;", "name,pool_mode", []string{"app|transaction", "batch|session"}, "SHOW"},
		{"SHOW POOLS", "database,user,pool_mode,cl_idle,cl_active,cl_waiting,cl_cancel_req,sv_active,sv_idle,sv_used,sv_tested,sv_login,maxwait,maxwait_us",
			[]string{"app|app|transaction|1|1|0|0|0|0|0|0|0|0|0", "app|batch|session|0|0|0|0|0|0|0|0|0|0|0"}, "SHOW"},
		{"SHOW DATABASES", "name,host,port,database,force_user,pool_size,min_pool_size,reserve_pool,pool_mode,max_connections,current_connections,paused,disabled,role,lag_bytes",
			[]string{
				"app_shard_0_primary|127.0.0.1|1|appdb|app|7|0|0|transaction|7|0|0|0|primary|0",
				"app_shard_0_replica_0|127.0.0.2|1|appdb|app|7|0|0|transaction|7|0|0|1|replica|0",
				"app_shard_0_primary|127.0.0.1|1|appdb|batch|10|0|0|session|10|0|0|0",
				"app_shard_0_replica_0|127.0.0.2|1|appdb|batch|10|0|0|session|10|0|0|0",
			}, "SHOW"},
		{"SHOW STATS", "instance,database,user,total_xact_count,total_query_count,total_received,total_sent,total_xact_time,total_query_time,total_wait_time,total_errors,avg_xact_count,avg_query_count,avg_recv,avg_sent,avg_errors,avg_xact_time,avg_query_time,avg_wait_time",
			[]string{
				"app_shard_0_primary|app|app|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
				"app_shard_0_replica_0|app|app|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
				"app_shard_0_primary|app|batch|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
				"app_shard_0_replica_0|app|batch|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
			}, "SHOW"},
		{"SHOW SERVERS", "server_id,database_name,user,address_id,application_name,state,transaction_count,query_count,bytes_sent,bytes_received,age_seconds,prepare_cache_hit,prepare_cache_miss,prepare_cache_eviction,prepare_cache_size,addr",
			[]string{"4242|app|app|app_shard_0_primary|psql|active|0|0|0|0|3|0|0|0|0|127.0.0.1:1"}, "SHOW"},
		{"SHOW CLIENTS", "client_id,database,user,application_name,state,transaction_count,query_count,error_count,age_seconds,maxwait,maxwait_us,addr,port,tls,server",
			[]string{
				"7|app|app|psql|active|0|12|0|10|0|0|10.0.0.9|5555|no|127.0.0.1:1",
				"8|app|app||idle|0|0|0|*|0|0|unix|0|no|",
				"9|pgcat|admin||idle|0|0|0|*|0|0|127.0.0.1|0|yes|",
			}, "SHOW"},
		{"SHOW LISTS", "list,items", []string{"databases|1", "users|2", "pools|2", "free_clients|2", "used_clients|1", "login_clients|1",
			"free_servers|0", "used_servers|0", "dns_names|0", "dns_zones|0", "dns_queries|0", "dns_pending|0"}, "SHOW"},
		{"SHOW BANS", "db,user,role,host,reason,ban_time,ban_duration_seconds,ban_remaining_seconds",
			[]string{"app|app|replica|127.0.0.2:1|health check failed|*|60|60"}, "SHOW"},
		{"BAN 127.0.0.2:1", "db,user,role,host", []string{"app|app|replica|127.0.0.2:1"}, "BAN"},
		{"BAN 127.0.0.2 5", "db,user,role,host", []string{"app|app|replica|127.0.0.2"}, "BAN"},
		{"UNBAN 127.0.0.2", "db,user,role,host", nil, "UNBAN"},
		{"SET client_encoding = 'UTF8'", "", nil, "SET"},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := execOne(t, c, tc.query)
			if r.code != "" {
				t.Fatalf("error %s: %s", r.code, r.msg)
			}
			if got := strings.Join(r.cols, ","); got != tc.cols {
				t.Errorf("columns\n got %s\nwant %s", got, tc.cols)
			}
			if r.tag != tc.tag {
				t.Errorf("tag %q, want %q", r.tag, tc.tag)
			}
			if len(r.rows) != len(tc.rows) {
				t.Fatalf("rows %q, want %q", r.rows, tc.rows)
			}
			for i, row := range r.rows {
				want := strings.Split(tc.rows[i], "|")
				for j := range want {
					if want[j] != "*" && (j >= len(row) || row[j] != want[j]) {
						t.Errorf("row %d: %q, want %q", i, row, want)
						break
					}
				}
			}
		})
	}
	if want := []string{"127.0.0.2:1 45s", "127.0.0.2 5s"}; !reflect.DeepEqual(bans.banned, want) {
		t.Errorf("bans made %q, want %q (the default is ban_time)", bans.banned, want)
	}
	if want := []string{"127.0.0.2"}; !reflect.DeepEqual(bans.unbanned, want) {
		t.Errorf("unbans %q, want %q", bans.unbanned, want)
	}
}

// TestErrors checks that bad and unsupported commands get an ErrorResponse with the right
// SQLSTATE, and that a failing command ends a multi-command query.
func TestErrors(t *testing.T) {
	c := newTestConsole(t, nil, nil)
	c.Reload = func() error { return errors.New("sluice.toml:3: unknown key general.prot") }
	cases := []struct{ query, code, msg string }{
		{"SELECT 1", "42601", `invalid command "SELECT 1", use SHOW HELP;`},
		{"SHOW NOTHING", "42601", "invalid command"},
		{"SHOW", "42601", "SHOW needs an object"},
		{"SHOW POOLS extra", "42601", "takes no arguments"},
		{"SHOW MEM", "0A000", "SHOW MEM is not supported"},
		{"SUSPEND", "0A000", "SUSPEND is not supported"},
		{"PAUSE a b", "42601", "usage: PAUSE [db[,user]]"},
		{"resume nosuchdb", "42704", "no pool nosuchdb"},
		{"SHUTDOWN", "0A000", "SHUTDOWN is not supported"},
		{"BAN 10.0.0.1", "0A000", "bans are not available"},
		{"BAN", "42601", "usage: BAN"},
		{"BAN h -3", "42601", "positive number of seconds"},
		{"UNBAN", "42601", "usage: UNBAN"},
		{"RELOAD", "F0000", "reload failed; keeping the running configuration: sluice.toml:3"},
		{"RELOAD now", "42601", "RELOAD takes no arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := execOne(t, c, tc.query)
			if r.code != tc.code || !strings.Contains(r.msg, tc.msg) {
				t.Errorf("got %s %q, want %s %q", r.code, r.msg, tc.code, tc.msg)
			}
		})
	}

	rs := decode(t, c.exec(nil, "SHOW VERSION; SHOW BOGUS; SHOW USERS"))
	if len(rs) != 2 || rs[0].tag != "SHOW" || rs[1].code != "42601" {
		t.Errorf("a failing command must end the query: %+v", rs)
	}
	if rs := decode(t, c.exec(nil, " ; ")); len(rs) != 1 || !rs[0].empty {
		t.Errorf("an empty query: %+v, want EmptyQueryResponse", rs)
	}
	c.Bans = &fakeBans{}
	if r := execOne(t, c, "BAN nowhere"); r.code != "42704" {
		t.Errorf("BAN of an unknown server: %s %q, want 42704", r.code, r.msg)
	}
	if r := execOne(t, c, "SHOW HELP"); r.tag != "SHOW" || !strings.Contains(r.notice, "SHOW HELP|CONFIG|DATABASES|POOLS") {
		t.Errorf("SHOW HELP: %+v", r)
	}
	reloaded, stopped := 0, 0
	c.Reload = func() error { reloaded++; return nil }
	c.Shutdown = func() { stopped++ }
	if r := execOne(t, c, "reload;"); r.tag != "RELOAD" || reloaded != 1 {
		t.Errorf("RELOAD: %+v, reloads %d", r, reloaded)
	}
	if r := execOne(t, c, "SHUTDOWN"); r.tag != "SHUTDOWN" || stopped != 1 {
		t.Errorf("SHUTDOWN: %+v, calls %d", r, stopped)
	}
}

// TestShowConfig checks that SHOW CONFIG lists every [general] key of docs/configuration.md and
// never shows a password.
func TestShowConfig(t *testing.T) {
	c := newTestConsole(t, nil, nil)
	r := execOne(t, c, "SHOW CONFIG")
	if got := strings.Join(r.cols, ","); got != "key,value,default,changeable" {
		t.Fatalf("columns %s", got)
	}
	values := map[string]string{}
	for _, row := range r.rows {
		values[row[0]] = row[1]
		for _, v := range row {
			for _, secret := range []string{"admin-secret", "user-secret", "server-secret", "0123456789abcdef"} {
				if strings.Contains(v, secret) {
					t.Errorf("SHOW CONFIG shows a secret: %q", row)
				}
			}
		}
	}
	for key, want := range map[string]string{
		"admin_password": masked, "admin_username": "admin", "ban_time": "45", "connect_timeout": "5000",
		"pools.app.users": "app, batch", "pools.app.users.app.pool_size": "7",
		"pools.app.shards.0.servers": "127.0.0.1:1 primary, 127.0.0.2:1 replica",
	} {
		if values[key] != want {
			t.Errorf("%s = %q, want %q", key, values[key], want)
		}
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	section = section[strings.Index(section, "## `[general]`"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	keys := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1)
	if len(keys) < 30 {
		t.Fatalf("found only %d keys in the [general] table", len(keys))
	}
	for _, k := range keys {
		if _, ok := values[k[1]]; !ok {
			t.Errorf("SHOW CONFIG lacks [general] key %s", k[1])
		}
	}
}

// TestServeProtocol drives Serve over a connection: simple queries work, the extended protocol
// gets one 0A000 per batch and the session goes on, and Terminate ends it.
func TestServeProtocol(t *testing.T) {
	c := newTestConsole(t, nil, nil)
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() {
		defer server.Close()
		done <- c.Serve(wire.NewReader(server, 1<<20), server)
	}()
	fe := pgproto3.NewFrontend(client, client)
	send := func(msgs ...pgproto3.FrontendMessage) {
		t.Helper()
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			got := strings.TrimPrefix(reflect.TypeOf(m).String(), "*pgproto3.")
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				got += " " + e.Code
			}
			if got != w {
				t.Fatalf("got %s (%+v), want %s", got, m, w)
			}
		}
	}
	send(&pgproto3.Query{String: "SHOW VERSION"})
	expect("RowDescription", "DataRow", "CommandComplete", "ReadyForQuery")
	send(&pgproto3.Parse{Query: "SHOW POOLS"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	expect("ErrorResponse 0A000", "ReadyForQuery")
	send(&pgproto3.Query{String: "SHOW USERS"})
	expect("RowDescription", "DataRow", "DataRow", "CommandComplete", "ReadyForQuery")
	send(&pgproto3.Query{String: "BOGUS"})
	expect("ErrorResponse 42601", "ReadyForQuery")
	send(&pgproto3.Terminate{})
	if err := <-done; err != nil {
		t.Errorf("Serve after Terminate: %v", err)
	}
}

type panickyBans struct{ fakeBans }

func (panickyBans) Bans() []Ban { panic("boom") }

// TestPanicIsAnError checks that a command that panics answers XX000 and the console goes on.
func TestPanicIsAnError(t *testing.T) {
	c := newTestConsole(t, nil, &panickyBans{})
	if r := execOne(t, c, "SHOW BANS"); r.code != "XX000" || !strings.Contains(r.msg, "boom") {
		t.Errorf("SHOW BANS with a panicking Bans: %+v", r)
	}
	if r := execOne(t, c, "SHOW VERSION"); r.tag != "SHOW" {
		t.Errorf("SHOW VERSION after a panic: %+v", r)
	}
}

// TestRouteBans bans and unbans the routing table's servers through the console: one row per
// (database, user) that has the server, SHOW BANS and SHOW DATABASES see it, and a server nobody
// has is 42704.
func TestRouteBans(t *testing.T) {
	c := newTestConsole(t, nil, nil)
	c.Bans = RouteBans(c.Table)
	r := execOne(t, c, "BAN 127.0.0.2 30")
	if r.tag != "BAN" || len(r.rows) != 2 || r.rows[0][0] != "app" || r.rows[0][1] != "app" || r.rows[1][1] != "batch" ||
		r.rows[0][2] != "replica" || r.rows[0][3] != "127.0.0.2:1" {
		t.Fatalf("BAN: %+v", r)
	}
	r = execOne(t, c, "SHOW BANS")
	// A node does not record when its ban began: ban_time and ban_duration_seconds are NULL.
	if len(r.rows) != 2 || r.rows[0][4] != "admin" || r.rows[0][6] != "" || (r.rows[0][7] != "30" && r.rows[0][7] != "29") {
		t.Errorf("SHOW BANS: %q", r.rows)
	}
	r = execOne(t, c, "SHOW DATABASES")
	for _, row := range r.rows {
		if want := map[bool]string{true: "1", false: "0"}[row[1] == "127.0.0.2"]; row[12] != want {
			t.Errorf("SHOW DATABASES disabled: %q", row)
		}
	}
	if r := execOne(t, c, "BAN 127.0.0.9:1"); r.code != "42704" {
		t.Errorf("BAN of an unknown server: %+v", r)
	}
	if r := execOne(t, c, "UNBAN 127.0.0.1"); r.tag != "UNBAN" || len(r.rows) != 0 {
		t.Errorf("UNBAN of a server that is not banned: %+v", r)
	}
	if r := execOne(t, c, "UNBAN 127.0.0.2:1"); r.tag != "UNBAN" || len(r.rows) != 2 || r.rows[0][3] != "127.0.0.2:1" {
		t.Errorf("UNBAN: %+v", r)
	}
	if r := execOne(t, c, "SHOW BANS"); len(r.rows) != 0 {
		t.Errorf("SHOW BANS after UNBAN: %q", r.rows)
	}
}
