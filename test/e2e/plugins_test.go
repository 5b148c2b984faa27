package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/plugin"
)

// recorder is a compiled-in plugin for the tests: it has every hook, records what each saw, and
// acts on marker words in the query text, the database and the user.
type recorder struct {
	Tag string `toml:"tag"`

	mu     sync.Mutex
	events []event
}

// event is what one hook call saw.
type event struct {
	hook  string // startup, auth, query, result, tx_end, server_connect, disconnect
	proto string // query: simple, parse, bind
	text  string // query: the text; startup: the application_name parameter
	// params are a Bind's parameters, copied: the hook's own slices are valid only during
	// the call.
	params         []plugin.Param
	kind           string
	write, inTx    bool
	reads, writes  []string
	user, db, app  string // the client's (startup: the packet's)
	addr           string
	tag, code, msg string // result
	seq            uint64 // query: Query.Seq
	done           uint64 // result: Result.Done
	txStatus       byte   // result: Result.TxStatus
	committed      bool   // tx_end
}

var recorders sync.Map // tag -> *recorder

func init() {
	plugin.Register(plugin.Info{Name: "e2e_recorder", New: func() plugin.Plugin { return new(recorder) }})
}

var (
	_ plugin.Provisioner       = (*recorder)(nil)
	_ plugin.StartupHook       = (*recorder)(nil)
	_ plugin.AuthHook          = (*recorder)(nil)
	_ plugin.QueryHook         = (*recorder)(nil)
	_ plugin.ResultHook        = (*recorder)(nil)
	_ plugin.TxEndHook         = (*recorder)(nil)
	_ plugin.ServerConnectHook = (*recorder)(nil)
	_ plugin.DisconnectHook    = (*recorder)(nil)
)

func (r *recorder) Provision(ctx plugin.Context) error {
	recorders.Store(r.Tag, r)
	return nil
}

func recorderFor(t testing.TB, tag string) *recorder {
	t.Helper()
	v, ok := recorders.Load(tag)
	if !ok {
		t.Fatalf("no recorder with tag %q was provisioned", tag)
	}
	return v.(*recorder)
}

func (r *recorder) record(ev event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) seen() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// find returns the events of hook whose text contains text ("" for any).
func (r *recorder) find(hook, text string) []event {
	var out []event
	for _, ev := range r.seen() {
		if ev.hook == hook && strings.Contains(ev.text, text) {
			out = append(out, ev)
		}
	}
	return out
}

// count returns the number of events of hook.
func (r *recorder) count(hook string) int { return len(r.find(hook, "")) }

// mark returns the number of events so far, for since.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// since returns the events of hook after mark.
func (r *recorder) since(mark int, hook string) []event {
	var out []event
	for _, ev := range r.seen()[mark:] {
		if ev.hook == hook {
			out = append(out, ev)
		}
	}
	return out
}

func clientEvent(hook string, c *plugin.Client) event {
	ev := event{hook: hook, user: c.User, db: c.Database, app: c.ApplicationName}
	if c.Addr != nil {
		ev.addr = c.Addr.String()
	}
	return ev
}

// OnStartup sends a client that asks for database "alias" to the pool "app", and user
// "app_alias" to "app".
func (r *recorder) OnStartup(ctx context.Context, s *plugin.Startup) error {
	r.record(event{hook: "startup", user: s.User, db: s.Database, text: s.Params["application_name"], addr: s.Addr.String()})
	if s.Database == "alias" {
		s.Database = "app"
	}
	if s.User == "app_alias" {
		s.User = "app"
	}
	if s.User == "refused_at_startup" {
		return plugin.Errorf("28000", "the recorder refuses %s at startup", s.User)
	}
	return nil
}

// OnAuth refuses mallory, whose password sluice has already checked.
func (r *recorder) OnAuth(ctx context.Context, c *plugin.Client) error {
	r.record(clientEvent("auth", c))
	if c.User == "mallory" {
		return plugin.Errorf("42501", "the recorder does not let mallory in")
	}
	return nil
}

func (r *recorder) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	ev := clientEvent("query", q.Client)
	ev.proto, ev.text, ev.kind, ev.write, ev.inTx, ev.seq = q.Protocol.String(), q.Text, q.Kind, q.Write, q.InTransaction, q.Seq
	ev.reads, ev.writes = slices.Clone(q.Reads), slices.Clone(q.Writes)
	for _, p := range q.Params {
		ev.params = append(ev.params, plugin.Param{Value: slices.Clone(p.Value), Binary: p.Binary})
	}
	r.record(ev)
	switch {
	case strings.Contains(q.Text, "forbidden_word"):
		return plugin.RejectQuery("42501", "the recorder refuses forbidden_word"), nil
	case strings.Contains(q.Text, "panic_now"):
		panic("the recorder was told to panic")
	case strings.Contains(q.Text, "sluice_answer"):
		v := "42"
		return plugin.AnswerQuery([]string{"answer"}, [][]*string{{&v}}, "SELECT 1"), nil
	case strings.Contains(q.Text, "old_name"):
		return plugin.RewriteQuery(strings.ReplaceAll(q.Text, "old_name", "'rewritten'")), nil
	}
	return plugin.ContinueQuery(), nil
}

func (r *recorder) OnResult(ctx context.Context, res *plugin.Result) {
	ev := clientEvent("result", res.Client)
	ev.tag, ev.done, ev.txStatus = res.Tag, res.Done, res.TxStatus
	if res.Error != nil {
		ev.code, ev.msg = res.Error.Code, res.Error.Message
	}
	r.record(ev)
}

func (r *recorder) OnTxEnd(ctx context.Context, c *plugin.Client, committed bool) {
	ev := clientEvent("tx_end", c)
	ev.committed = committed
	r.record(ev)
}

// OnServerConnect sets a custom setting on the new server, which its clients then see.
func (r *recorder) OnServerConnect(ctx context.Context, s *plugin.Server) error {
	r.record(event{hook: "server_connect", user: s.User, db: s.Database, addr: s.Addr})
	return s.Exec("SET sluice_e2e.connected_by = '" + r.Tag + "'")
}

func (r *recorder) OnDisconnect(ctx context.Context, c *plugin.Client) {
	r.record(clientEvent("disconnect", c))
}

// protocols are the two ways pgx sends queries, by name.
var protocols = []struct {
	name string
	mode pgx.QueryExecMode
}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}}

// TestGoPluginHooks: a compiled-in plugin's query hook rejects, answers, rewrites, and panics
// without harm, in both protocols and both pool modes.
func TestGoPluginHooks(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		for _, proto := range protocols {
			t.Run(mode+"/"+proto.name, func(t *testing.T) {
				tag := strings.ReplaceAll(t.Name(), "/", "_")
				s := startSluice(t, poolConfig{Mode: mode, General: "\n[plugins.e2e_recorder]\ntag = \"" + tag + "\"\n"})
				conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto.mode })
				ctx := context.Background()
				if _, err := conn.Exec(ctx, "SELECT 'forbidden_word'"); codeOf(err) != "42501" {
					t.Errorf("reject: %v; want 42501", err)
				}
				var got string
				if err := conn.QueryRow(ctx, "SELECT old_name::text").Scan(&got); err != nil || got != "rewritten" {
					t.Errorf("rewrite: %q, %v; want rewritten", got, err)
				}
				// Exec without arguments is always the simple protocol in pgx; QueryRow
				// follows the connection's mode.
				for _, q := range []string{"SELECT 'panic_now'", "SELECT 'panic_now' WHERE 1 = 1"} {
					var s string
					err := conn.QueryRow(ctx, q).Scan(&s)
					if codeOf(err) != "XX000" || !strings.Contains(err.Error(), `plugin "e2e_recorder"`) || !strings.Contains(err.Error(), "told to panic") {
						t.Errorf("panic: %v; want XX000 naming the plugin and the panic", err)
					}
					var one int
					if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
						t.Errorf("after the panic: %d, %v", one, err)
					}
				}
				// In the extended protocol the Parse still goes to the server (the answer is
				// given at the Bind), so the text must be valid SQL.
				if err := conn.QueryRow(ctx, "SELECT 'sluice_answer'::text").Scan(&got); err != nil || got != "42" {
					t.Errorf("answer: %q, %v; want 42", got, err)
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				conn.Close(ctx)
				rec := recorderFor(t, tag)
				checkFor(t, 5*time.Second, func() error {
					if len(rec.find("query", "forbidden_word")) == 0 || len(rec.find("query", "old_name")) == 0 ||
						rec.count("tx_end") == 0 || rec.count("disconnect") == 0 {
						return fmt.Errorf("hook events lack a query, tx_end or disconnect: %+v", rec.seen())
					}
					return nil
				})
			})
		}
	}
}

// TestResultDone: each result says up to which query the client's requests have ended
// (Result.Done, against Query.Seq) and the transaction status then: a result does not count a
// query pipelined behind its own request, however the replies are read, and a statement
// pipelined behind a BEGIN is judged inside the block by its result's status.
func TestResultDone(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			tag := "done_" + mode
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1,
				General: "\n[plugins.e2e_recorder]\ntag = \"" + tag + "\"\n"})
			rec := recorderFor(t, tag)
			c := dialRaw(t, s)
			c.login()
			seqOf := func(events []event, text string) uint64 {
				t.Helper()
				for _, ev := range events {
					if ev.hook == "query" && ev.text == text {
						return ev.seq
					}
				}
				t.Fatalf("no query event for %q in %+v", text, events)
				return 0
			}
			mark := rec.mark()
			// Three requests in one write, the middle one opening a block.
			c.send(&pgproto3.Query{String: "SELECT 2"}, &pgproto3.Query{String: "BEGIN; SELECT 3"},
				&pgproto3.Query{String: "SELECT 4; COMMIT"})
			c.awaitReady(3) // the hooks run before the client sees ReadyForQuery
			evs := rec.seen()[mark:]
			s2, s3, s4 := seqOf(evs, "SELECT 2"), seqOf(evs, "BEGIN; SELECT 3"), seqOf(evs, "SELECT 4; COMMIT")
			if !(s2 < s3 && s3 < s4) {
				t.Fatalf("query Seqs %d, %d, %d; want increasing", s2, s3, s4)
			}
			want := []struct {
				done uint64
				st   byte
			}{{s2, 'I'}, {s3, 'T'}, {s3, 'T'}, {s4, 'I'}, {s4, 'I'}} // SELECT 2 | BEGIN, SELECT 3 | SELECT 4, COMMIT
			res := rec.since(mark, "result")
			if len(res) != len(want) {
				t.Fatalf("results %+v; want %d", res, len(want))
			}
			for i, r := range res {
				if r.done != want[i].done || r.txStatus != want[i].st {
					t.Errorf("result %d (%s): done %d, status %q; want %d, %q", i, r.tag, r.done, r.txStatus, want[i].done, want[i].st)
				}
			}
		})
	}
}

// TestGoPluginHookData checks that each hook fires at its point with the right data, in both
// protocols and both pool modes.
func TestGoPluginHookData(t *testing.T) {
	ctx := context.Background()
	d := direct(t)
	for _, q := range []string{
		"DROP TABLE IF EXISTS hooks_items",
		"CREATE TABLE hooks_items (name text, n int)",
		"GRANT ALL ON hooks_items TO app",
	} {
		if _, err := d.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, mode := range []string{"transaction", "session"} {
		for _, proto := range protocols {
			t.Run(mode+"/"+proto.name, func(t *testing.T) {
				tag := strings.ReplaceAll(t.Name(), "/", "_")
				s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1,
					General: "\n[plugins.e2e_recorder]\ntag = \"" + tag + "\"\n",
					// SCRAM: an md5 answer is salted with the user name the client sent, so a
					// user remapped at startup cannot log in with md5. mallory has a password
					// in sluice (and no role in Postgres): the recorder's OnAuth refuses her
					// after sluice checked it.
					User: "auth_type = \"scram-sha-256\"\n[pools.app.users.1]\nusername = \"mallory\"\npassword = \"mallory-secret\"\npool_size = 1\n"})
				rec := recorderFor(t, tag)
				conn := connectConfig(t, s, func(c *pgx.ConnConfig) {
					c.DefaultQueryExecMode = proto.mode
					c.RuntimeParams["application_name"] = "hooktest"
				})
				extended := proto.mode != pgx.QueryExecModeSimpleProtocol
				t.Run("startup and auth", func(t *testing.T) {
					st := rec.find("startup", "hooktest")
					if len(st) != 1 || st[0].user != "app" || st[0].db != "app" {
						t.Errorf("startup events %+v; want one for user app, database app", st)
					}
					au := rec.find("auth", "")
					if len(au) != 1 || au[0].user != "app" || au[0].db != "app" || au[0].app != "hooktest" || !strings.HasPrefix(au[0].addr, "127.0.0.1:") {
						t.Errorf("auth events %+v; want one with the client's fields", au)
					}
				})
				t.Run("server connect", func(t *testing.T) {
					var by string
					if err := conn.QueryRow(ctx, "SELECT current_setting('sluice_e2e.connected_by', true)").Scan(&by); err != nil || by != tag {
						t.Errorf("the setting made by OnServerConnect: %q, %v; want %q", by, err, tag)
					}
					sc := rec.find("server_connect", "")
					if len(sc) != 1 || sc[0].db != "app" || sc[0].user != "app" || !strings.Contains(sc[0].addr, fmt.Sprint(pg.Port)) {
						t.Errorf("server_connect events %+v; want one for app/app on the server", sc)
					}
				})

				type queryCase struct {
					name   string
					sql    string
					args   []any
					protos []string // the hook calls expected, in order
					kind   string
					write  bool
					reads  []string
					writes []string
					params []plugin.Param // for the Bind
					tag    string         // OnResult's tag, or the error's SQLSTATE after "error "
				}
				simpleOr := func(ext ...string) []string {
					if extended {
						return ext
					}
					return []string{"simple"}
				}
				// pgx sends a string as text and an integer as binary.
				bindParams := func(ps ...plugin.Param) []plugin.Param {
					if extended {
						return ps
					}
					return nil
				}
				pear, seven := plugin.Param{Value: []byte("pear")}, plugin.Param{Value: []byte{0, 0, 0, 7}, Binary: true}
				cases := []queryCase{
					{name: "select", sql: "SELECT 1 AS one", protos: simpleOr("parse", "bind"), kind: "SelectStmt", tag: "SELECT 1"},
					{name: "insert with parameters", sql: "INSERT INTO hooks_items (name, n) VALUES ($1, $2)", args: []any{"pear", int32(7)},
						protos: simpleOr("parse", "bind"), kind: "InsertStmt", write: true, writes: []string{"hooks_items"}, params: bindParams(pear, seven), tag: "INSERT 0 1"},
					{name: "the same again: a Bind only", sql: "INSERT INTO hooks_items (name, n) VALUES ($1, $2)", args: []any{"pear", int32(7)},
						protos: simpleOr("bind"), kind: "InsertStmt", write: true, writes: []string{"hooks_items"}, params: bindParams(pear, seven), tag: "INSERT 0 1"},
					{name: "read", sql: "SELECT count(*) FROM hooks_items WHERE n > $1", args: []any{0},
						protos: simpleOr("parse", "bind"), kind: "SelectStmt", reads: []string{"hooks_items"},
						params: bindParams(plugin.Param{Value: make([]byte, 4), Binary: true}), tag: "SELECT 1"},
					{name: "error", sql: "SELECT 1 / (n - n) FROM hooks_items WHERE name = $1", args: []any{"pear"},
						protos: simpleOr("parse", "bind"), kind: "SelectStmt", reads: []string{"hooks_items"},
						params: bindParams(pear), tag: "error 22012"},
				}
				for _, tc := range cases {
					t.Run(tc.name, func(t *testing.T) {
						mark := rec.mark()
						rows, err := conn.Query(ctx, tc.sql, tc.args...)
						if err == nil {
							for rows.Next() {
							}
							rows.Close()
							err = rows.Err()
						}
						wantErr := strings.HasPrefix(tc.tag, "error ")
						if (err != nil) != wantErr {
							t.Fatalf("%s: %v", tc.sql, err)
						}
						qs := rec.since(mark, "query")
						var got []string
						for _, q := range qs {
							got = append(got, q.proto)
						}
						if !slices.Equal(got, tc.protos) {
							t.Fatalf("query hook calls %q, want %q", got, tc.protos)
						}
						for _, q := range qs {
							if extended && q.text != tc.sql {
								t.Errorf("%s: text %q, want %q", q.proto, q.text, tc.sql)
							}
							if !extended && !strings.HasPrefix(q.text, strings.Split(tc.sql, "$")[0]) {
								t.Errorf("text %q, want %q with the arguments in it", q.text, tc.sql)
							}
							if q.kind != tc.kind || q.write != tc.write || !slices.Equal(q.reads, tc.reads) || !slices.Equal(q.writes, tc.writes) {
								t.Errorf("%s: kind %q write %v reads %q writes %q; want %q %v %q %q",
									q.proto, q.kind, q.write, q.reads, q.writes, tc.kind, tc.write, tc.reads, tc.writes)
							}
							if q.inTx {
								t.Errorf("%s: InTransaction outside a transaction", q.proto)
							}
							if q.user != "app" || q.db != "app" || q.app != "hooktest" || !strings.HasPrefix(q.addr, "127.0.0.1:") {
								t.Errorf("%s: client %+v", q.proto, q)
							}
							var want []plugin.Param
							if q.proto == "bind" {
								want = tc.params
							}
							if !slices.EqualFunc(q.params, want, func(a, b plugin.Param) bool {
								return string(a.Value) == string(b.Value) && a.Binary == b.Binary
							}) {
								t.Errorf("%s: params %+v, want %+v", q.proto, q.params, want)
							}
						}
						checkFor(t, 5*time.Second, func() error {
							rs := rec.since(mark, "result")
							if len(rs) != 1 {
								return fmt.Errorf("result events %+v, want one", rs)
							}
							got := rs[0].tag
							if rs[0].code != "" {
								got = "error " + rs[0].code
							}
							if got != tc.tag || rs[0].user != "app" {
								return fmt.Errorf("result %+v, want %s", rs[0], tc.tag)
							}
							return nil
						})
					})
				}

				t.Run("in a transaction", func(t *testing.T) {
					tx, err := conn.Begin(ctx)
					if err != nil {
						t.Fatal(err)
					}
					defer tx.Rollback(ctx)
					mark := rec.mark()
					var n int
					if err := tx.QueryRow(ctx, "SELECT count(*) FROM hooks_items WHERE n = $1", 7).Scan(&n); err != nil {
						t.Fatal(err)
					}
					for _, q := range rec.since(mark, "query") {
						if !q.inTx {
							t.Errorf("%s: InTransaction not set inside BEGIN", q.proto)
						}
					}
					// A query the plugin refuses with a server attached: in the extended
					// protocol sluice aborts the server's batch with a Parse that fails, whose
					// error the client never sees, and neither does OnResult.
					mark = rec.mark()
					var s string
					if err := tx.QueryRow(ctx, "SELECT 'forbidden_word' WHERE $1", true).Scan(&s); codeOf(err) != "42501" {
						t.Fatalf("refused in a transaction: %v; want 42501", err)
					}
					for _, r := range rec.since(mark, "result") {
						if r.code != "42501" {
							t.Errorf("OnResult saw %s %q, which the client did not", r.code, r.msg)
						}
					}
				})

				t.Run("transaction end", func(t *testing.T) {
					type txCase struct {
						name      string
						run       func() error
						committed []bool
					}
					txCases := []txCase{
						{"commit", func() error {
							tx, err := conn.Begin(ctx)
							if err != nil {
								return err
							}
							if _, err := tx.Exec(ctx, "INSERT INTO hooks_items VALUES ($1, $2)", "fig", 1); err != nil {
								return err
							}
							return tx.Commit(ctx)
						}, []bool{true}},
						{"rollback", func() error {
							tx, err := conn.Begin(ctx)
							if err != nil {
								return err
							}
							if _, err := tx.Exec(ctx, "INSERT INTO hooks_items VALUES ($1, $2)", "fig", 2); err != nil {
								return err
							}
							return tx.Rollback(ctx)
						}, []bool{false}},
						{"failed, then COMMIT", func() error {
							tx, err := conn.Begin(ctx)
							if err != nil {
								return err
							}
							if _, err := tx.Exec(ctx, "SELECT 1 / 0 WHERE $1", true); err == nil {
								return fmt.Errorf("1/0 did not fail")
							}
							if err := tx.Commit(ctx); err == nil {
								return fmt.Errorf("COMMIT of a failed transaction did not report it")
							}
							return nil
						}, []bool{false}},
						{"one simple Query from BEGIN to COMMIT", func() error {
							_, err := conn.Exec(ctx, "BEGIN; INSERT INTO hooks_items VALUES ('plum', 3); COMMIT")
							return err
						}, []bool{true}},
						{"two in one Query", func() error {
							_, err := conn.Exec(ctx, "BEGIN; SELECT 1; ROLLBACK; BEGIN; SELECT 2; COMMIT")
							return err
						}, []bool{false, true}},
						{"no transaction block", func() error {
							_, err := conn.Exec(ctx, "SELECT 1")
							return err
						}, nil},
					}
					for _, tc := range txCases {
						t.Run(tc.name, func(t *testing.T) {
							mark := rec.mark()
							if err := tc.run(); err != nil {
								t.Fatal(err)
							}
							checkFor(t, 5*time.Second, func() error {
								var got []bool
								for _, ev := range rec.since(mark, "tx_end") {
									got = append(got, ev.committed)
								}
								if !slices.Equal(got, tc.committed) {
									return fmt.Errorf("tx_end committed %v, want %v", got, tc.committed)
								}
								return nil
							})
						})
					}
				})

				t.Run("disconnect", func(t *testing.T) {
					// A client that leaves inside a transaction: its transaction ends (rolled
					// back) before it disconnects.
					mark := rec.mark()
					if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
						t.Fatal(err)
					}
					conn.Close(ctx)
					checkFor(t, 5*time.Second, func() error {
						var got []string
						for _, ev := range rec.seen()[mark:] {
							switch ev.hook {
							case "tx_end":
								got = append(got, fmt.Sprintf("tx_end:%v", ev.committed))
							case "disconnect":
								got = append(got, "disconnect:"+ev.user+"/"+ev.db+"/"+ev.app)
							}
						}
						if want := []string{"tx_end:false", "disconnect:app/app/hooktest"}; !slices.Equal(got, want) {
							return fmt.Errorf("events %q, want %q", got, want)
						}
						return nil
					})
				})

				t.Run("startup remaps the database and the user", func(t *testing.T) {
					for _, who := range []struct{ user, db string }{{"app", "alias"}, {"app_alias", "app"}} {
						cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", who.user, appPass, s.Addr(), who.db))
						if err != nil {
							t.Fatal(err)
						}
						cfg.DefaultQueryExecMode = proto.mode
						c, err := pgx.ConnectConfig(ctx, cfg)
						if err != nil {
							t.Fatalf("%s@%s: %v", who.user, who.db, err)
						}
						var db, user string
						err = c.QueryRow(ctx, "SELECT current_database(), current_user").Scan(&db, &user)
						c.Close(ctx)
						if err != nil || db != appDB || user != appUser {
							t.Errorf("%s@%s reached %s@%s, %v; want app@app", who.user, who.db, user, db, err)
						}
						st := rec.find("startup", "")
						if last := st[len(st)-1]; last.user != who.user || last.db != who.db {
							t.Errorf("OnStartup saw %s@%s, want what the client asked for, %s@%s", last.user, last.db, who.user, who.db)
						}
						au := rec.find("auth", "")
						if last := au[len(au)-1]; last.user != "app" || last.db != "app" {
							t.Errorf("OnAuth saw %s@%s, want the remapped app@app", last.user, last.db)
						}
					}
				})

				t.Run("auth and startup refuse", func(t *testing.T) {
					cases := []struct{ user, pass, code, msg string }{
						{"mallory", "mallory-secret", "42501", "the recorder does not let mallory in"},
						{"mallory", "wrong", "28P01", "password authentication failed"}, // sluice checks first
						{"refused_at_startup", "x", "28000", "the recorder refuses refused_at_startup at startup"},
					}
					for _, tc := range cases {
						n := rec.count("auth")
						_, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/app?sslmode=disable", tc.user, tc.pass, s.Addr()))
						if codeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
							t.Errorf("%s with password %q: %v; want %s %q", tc.user, tc.pass, err, tc.code, tc.msg)
						}
						if tc.code != "42501" && rec.count("auth") != n {
							t.Errorf("%s: OnAuth ran for a client sluice refused", tc.user)
						}
					}
				})

				t.Run("server connect once per server", func(t *testing.T) {
					// pool_size 1: every client of the test used the same server connection.
					c := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto.mode })
					var by string
					if err := c.QueryRow(ctx, "SELECT coalesce(current_setting('sluice_e2e.connected_by', true), '')").Scan(&by); err != nil {
						t.Fatal(err)
					}
					// In session mode, server_reset_query (DISCARD ALL) clears what
					// OnServerConnect set when the first client left.
					if want := map[string]string{"transaction": tag, "session": ""}[mode]; by != want {
						t.Errorf("a later client sees %q, want %q", by, want)
					}
					if n := rec.count("server_connect"); n != 1 {
						t.Errorf("OnServerConnect ran %d times for one server connection", n)
					}
				})
			})
		}
	}
}

// memo is a compiled-in plugin that stores the result of queries that mention memo_me and
// answers them from the store the next time: the shape of a cache.
type memo struct {
	mu    sync.Mutex
	store map[string][]byte
}

func init() {
	plugin.Register(plugin.Info{Name: "e2e_memo", New: func() plugin.Plugin { return &memo{store: map[string][]byte{}} }})
}

func (m *memo) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if !strings.Contains(q.Text, "memo_me") || q.Protocol == plugin.Parse || q.InTransaction {
		return plugin.ContinueQuery(), nil
	}
	m.mu.Lock()
	w := m.store[q.Text]
	m.mu.Unlock()
	if w != nil {
		return plugin.AnswerWire(w), nil
	}
	return plugin.Action{Capture: q.Text}, nil
}

func (m *memo) OnResult(ctx context.Context, r *plugin.Result) {
	if key, ok := r.Capture.(string); ok && r.Wire != nil {
		m.mu.Lock()
		m.store[key] = r.Wire
		m.mu.Unlock()
	}
}

// TestPluginCaptureAndAnswer: a plugin captures a statement's result and answers the same query
// from it later, in both protocols and pool modes; inside a transaction the query runs.
func TestPluginCaptureAndAnswer(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		for _, proto := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec} {
			t.Run(fmt.Sprintf("%s/%v", mode, proto), func(t *testing.T) {
				s := startSluice(t, poolConfig{Mode: mode, General: "\n[plugins.e2e_memo]\n"})
				conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto })
				ctx := context.Background()
				const q = "SELECT random()::text AS r, 'memo_me' AS tag"
				read := func(c interface {
					QueryRow(context.Context, string, ...any) pgx.Row
				}) string {
					t.Helper()
					var r, tag string
					if err := c.QueryRow(ctx, q).Scan(&r, &tag); err != nil {
						t.Fatal(err)
					}
					return r
				}
				// A result is stored only with its row description: in the extended protocol,
				// only from a client that describes its portal (pgconn's ExecParams does; pgx's
				// statement modes do not).
				first := read(conn)
				if proto != pgx.QueryExecModeSimpleProtocol {
					res := conn.PgConn().ExecParams(ctx, q, nil, nil, nil, nil).Read()
					if res.Err != nil {
						t.Fatal(res.Err)
					}
					first = string(res.Rows[0][0])
				}
				if second := read(conn); second != first {
					t.Errorf("second run gave %s; want the stored %s", second, first)
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if in := read(tx); in == first {
					t.Errorf("inside a transaction the stored result %s came back; want the query to run", in)
				}
				tx.Rollback(ctx)
				var one int
				if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Errorf("after: %d, %v", one, err)
				}
			})
		}
	}
}
