package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// backendPID is the pid of the server that runs c's next query. It uses the simple protocol, so
// it prepares nothing.
func backendPID(t testing.TB, c *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := c.QueryRow(context.Background(), "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// queryString runs sql with the simple protocol and returns the one text value. The simple
// protocol prepares nothing, opens no visible portal, and makes now() equal statement_timestamp()
// outside a transaction, so the tests' checks see only what they look for.
func queryString(t testing.TB, c *pgx.Conn, sql string) string {
	t.Helper()
	var v string
	if err := c.QueryRow(context.Background(), sql, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// serverState is the pg_stat_activity state of server pid, or "gone".
func serverState(t testing.TB, db *pgx.Conn, pid int) string {
	t.Helper()
	var st *string
	err := db.QueryRow(context.Background(), "SELECT state FROM pg_stat_activity WHERE pid = $1", pid).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return "gone"
	}
	if err != nil {
		t.Fatal(err)
	}
	if st == nil {
		return "<null>"
	}
	return *st
}

func TestSessionModeStateDoesNotLeakToTheNextClient(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{Mode: "session", PoolSize: 1})
	watch := direct(t)
	tests := []struct {
		name  string
		leave func(c *pgx.Conn) error // the first client, before it disconnects
		check func(c *pgx.Conn) error // the next client, on the same server
	}{
		{"SET", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET work_mem = '7MB'; SET search_path = nowhere")
			return err
		}, func(c *pgx.Conn) error {
			if v := queryString(t, c, "SHOW work_mem"); v != "4MB" {
				return fmt.Errorf("work_mem = %s", v)
			}
			if v := queryString(t, c, "SHOW search_path"); v != `"$user", public` {
				return fmt.Errorf("search_path = %s", v)
			}
			return nil
		}},
		{"temp table", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "CREATE TEMP TABLE leak_tmp (i int); INSERT INTO leak_tmp VALUES (1)")
			return err
		}, func(c *pgx.Conn) error {
			if v := queryString(t, c, "SELECT coalesce(to_regclass('leak_tmp')::text, 'none')"); v != "none" {
				return fmt.Errorf("temp table still there: %s", v)
			}
			_, err := c.Exec(ctx, "CREATE TEMP TABLE leak_tmp (i int)")
			return err
		}},
		{"SQL PREPARE", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "PREPARE leak_sql AS SELECT 1")
			return err
		}, func(c *pgx.Conn) error {
			if v := queryString(t, c, "SELECT count(*)::text FROM pg_prepared_statements"); v != "0" {
				return fmt.Errorf("%s prepared statements left", v)
			}
			_, err := c.Exec(ctx, "PREPARE leak_sql AS SELECT 2")
			return err
		}},
		{"pgx prepared statements", func(c *pgx.Conn) error {
			if _, err := c.Prepare(ctx, "leak_pgx", "SELECT $1::int"); err != nil {
				return err
			}
			_, err := c.Exec(ctx, "SELECT $1::int + 100", 1) // lands in pgx's statement cache
			return err
		}, func(c *pgx.Conn) error {
			if v := queryString(t, c, "SELECT count(*)::text FROM pg_prepared_statements"); v != "0" {
				return fmt.Errorf("%s prepared statements left", v)
			}
			if _, err := c.Prepare(ctx, "leak_pgx", "SELECT $1::int"); err != nil {
				return err
			}
			_, err := c.Exec(ctx, "SELECT $1::int + 100", 1) // the same cache name: 42P05 if it leaked
			return err
		}},
		{"advisory lock", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SELECT pg_advisory_lock(4242)")
			return err
		}, func(c *pgx.Conn) error {
			var free bool
			if err := watch.QueryRow(ctx, "SELECT pg_try_advisory_lock(4242)").Scan(&free); err != nil {
				return err
			}
			if !free {
				return errors.New("advisory lock 4242 still held")
			}
			_, err := watch.Exec(ctx, "SELECT pg_advisory_unlock(4242)")
			return err
		}},
		{"LISTEN", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "LISTEN leak_channel")
			return err
		}, func(c *pgx.Conn) error {
			if v := queryString(t, c, "SELECT count(*)::text FROM pg_listening_channels()"); v != "0" {
				return fmt.Errorf("still listening on %s channels", v)
			}
			return nil
		}},
		{"cursor WITH HOLD", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "DECLARE leak_cursor CURSOR WITH HOLD FOR SELECT 1")
			return err
		}, func(c *pgx.Conn) error {
			if v := queryString(t, c, "SELECT count(*)::text FROM pg_cursors"); v != "0" {
				return fmt.Errorf("%s cursors left", v)
			}
			return nil
		}},
		{"open transaction", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "BEGIN; SELECT 1")
			return err
		}, func(c *pgx.Conn) error {
			if v := queryString(t, c, "SELECT (now() = statement_timestamp())::text"); v != "true" {
				return errors.New("the next client runs inside the first one's transaction")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := connect(t, s)
			pid := backendPID(t, first)
			if err := tt.leave(first); err != nil {
				t.Fatalf("first client: %v", err)
			}
			first.Close(ctx)

			next := connect(t, s)
			if got := backendPID(t, next); got != pid {
				t.Fatalf("the next client got server %d, not %d: the test needs the same one", got, pid)
			}
			if err := tt.check(next); err != nil {
				t.Fatalf("the next client on the same server: %v", err)
			}
			next.Close(ctx)
		})
	}
}

func TestSessionModeListenNotify(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{Mode: "session", PoolSize: 2})
	listener := connect(t, s)
	if _, err := listener.Exec(ctx, "LISTEN sluice_events"); err != nil {
		t.Fatal(err)
	}
	wait := func(want string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if n.Channel != "sluice_events" || n.Payload != want {
			t.Fatalf("got %s %q, want sluice_events %q", n.Channel, n.Payload, want)
		}
	}
	if _, err := direct(t).Exec(ctx, "NOTIFY sluice_events, 'from postgres directly'"); err != nil {
		t.Fatal(err)
	}
	wait("from postgres directly")

	// From another client of sluice, while the listener sits idle.
	other := connect(t, s)
	if _, err := other.Exec(ctx, "SELECT pg_notify('sluice_events', 'from another client')"); err != nil {
		t.Fatal(err)
	}
	wait("from another client")

	// The listener can still query, and a notification sent in between is not lost.
	if _, err := other.Exec(ctx, "NOTIFY sluice_events, 'third'"); err != nil {
		t.Fatal(err)
	}
	if v := queryString(t, listener, "SELECT 'query between'"); v != "query between" {
		t.Fatal(v)
	}
	wait("third")
}

func TestTransactionModeListenIsRefused(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 2})
	tests := []struct {
		name string
		run  func(c *pgx.Conn) error
	}{
		{"simple query", func(c *pgx.Conn) error { _, err := c.Exec(ctx, "LISTEN tx_chan"); return err }},
		{"lower case after a comment", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "/* why not */ -- line\n  listen tx_chan")
			return err
		}},
		{"quoted channel", func(c *pgx.Conn) error { _, err := c.Exec(ctx, `LISTEN "Tx Chan"`); return err }},
		{"inside a transaction", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "BEGIN; LISTEN tx_chan; COMMIT")
			return err
		}},
		{"after another statement", func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SELECT 1; LISTEN tx_chan")
			return err
		}},
		{"extended protocol", func(c *pgx.Conn) error {
			return c.PgConn().ExecParams(ctx, "LISTEN tx_chan", nil, nil, nil, nil).Read().Err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connect(t, s)
			err := tt.run(c)
			if code := codeOf(err); code != "0A000" {
				t.Errorf("got %v, want SQLSTATE 0A000 (LISTEN cannot work in transaction mode)", err)
			}
			if v := queryString(t, c, "SELECT count(*)::text FROM pg_listening_channels()"); v != "0" {
				t.Errorf("a server of the pool now listens on %s channels", v)
			}
			if v := queryString(t, c, "SELECT 'still usable'"); v != "still usable" {
				t.Fatal(v)
			}
		})
	}
}

func TestDisconnectInsideTransactionRollsBack(t *testing.T) {
	ctx := context.Background()
	watch := direct(t)
	for _, mode := range []string{"transaction", "session"} {
		for _, how := range []string{"Terminate", "dropped socket"} {
			t.Run(mode+"/"+how, func(t *testing.T) {
				s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1})
				table := fmt.Sprintf("rollback_%d", time.Now().UnixNano())
				if err := pg.Exec(ctx, appDB, fmt.Sprintf("CREATE TABLE %s (v int); GRANT ALL ON %[1]s TO %s", table, appUser)); err != nil {
					t.Fatal(err)
				}
				c := connect(t, s)
				if _, err := c.Exec(ctx, "BEGIN"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, "INSERT INTO "+table+" VALUES (1), (2)"); err != nil {
					t.Fatal(err)
				}
				pid := backendPID(t, c)
				if st := serverState(t, watch, pid); st != "idle in transaction" {
					t.Fatalf("server %d is %q before the client leaves", pid, st)
				}
				if how == "Terminate" {
					c.Close(ctx)
				} else {
					c.PgConn().Conn().Close()
				}

				checkFor(t, 5*time.Second, func() error {
					if st := serverState(t, watch, pid); st != "idle" {
						return fmt.Errorf("server %d is %q, want idle (rolled back and back in the pool)", pid, st)
					}
					return nil
				})
				var n int
				if err := watch.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
					t.Fatalf("%d rows of the abandoned transaction are visible (%v)", n, err)
				}
				next := connect(t, s)
				if got := backendPID(t, next); got != pid {
					t.Errorf("the next client got server %d, not the rolled-back %d", got, pid)
				}
				if _, err := next.Exec(ctx, "INSERT INTO "+table+" VALUES (3)"); err != nil {
					t.Fatal(err)
				}
				if err := watch.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 1 {
					t.Fatalf("after the next client's autocommit insert: %d rows, %v", n, err)
				}
			})
		}
	}
}

// TestTerminateAfterARequestRunsIt sends a request and a Terminate in one write and reads
// nothing. Postgres runs what came before the Terminate: a complete request (a Query, or a batch
// up to its Sync) commits; an incomplete batch or a transaction left open does not. sluice must
// do the same, and give the server back to its pool clean (pool_size 1: the next client gets it).
// A COPY FROM STDIN that the client leaves without its CopyDone is aborted, whether the Terminate
// came with it or after its CopyInResponse (psycopg2's test_copy_from_segfault: sluice used to
// wait for the COPY's end for ever, holding the server and its locks).
func TestTerminateAfterARequestRunsIt(t *testing.T) {
	ctx := context.Background()
	watch := direct(t)
	insert := func(table string) string { return "INSERT INTO " + table + " VALUES (1), (2)" }
	cases := []struct {
		name string
		msgs func(table string) []pgproto3.FrontendMessage
		rows int
		// awaitCopyIn sends the Terminate only after the CopyInResponse has arrived.
		awaitCopyIn bool
	}{
		{"query", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: insert(table)}}
		}, 2, false},
		{"batch up to its Sync", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: insert(table)}, &pgproto3.Bind{},
				&pgproto3.Execute{}, &pgproto3.Sync{}}
		}, 2, false},
		{"two queries, the second slow", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: insert(table)},
				&pgproto3.Query{String: "SELECT pg_sleep(0.2); " + insert(table)}}
		}, 4, false},
		{"batch without its Sync", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: insert(table)}, &pgproto3.Bind{},
				&pgproto3.Execute{}}
		}, 0, false},
		{"open transaction", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN; " + insert(table)}}
		}, 0, false},
		{"copy with its data", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: "COPY " + table + " FROM STDIN"},
				&pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{}}
		}, 2, false},
		{"copy without its data", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: insert(table) + "; COPY " + table + " FROM STDIN"}}
		}, 0, false},
		{"copy without its data, after its CopyInResponse", func(table string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN; " + insert(table) + "; COPY " + table + " FROM STDIN"}}
		}, 0, true},
	}
	for _, mode := range []string{"transaction", "session", "postgres"} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				s := &Sluice{Port: pg.Port}
				if mode != "postgres" {
					s = startSluice(t, poolConfig{Mode: mode, PoolSize: 1})
				}
				table := fmt.Sprintf("terminate_%d", time.Now().UnixNano())
				if err := pg.Exec(ctx, appDB, fmt.Sprintf("CREATE TABLE %s (v int); GRANT ALL ON %[1]s TO %s", table, appUser)); err != nil {
					t.Fatal(err)
				}
				raw := dialRaw(t, s)
				raw.login()
				if tc.awaitCopyIn {
					raw.send(tc.msgs(table)...)
					raw.awaitCopyIn()
					raw.send(&pgproto3.Terminate{})
				} else {
					raw.send(append(tc.msgs(table), &pgproto3.Terminate{})...)
				}
				_ = raw.conn.(*net.TCPConn).CloseWrite()
				raw.expectClosedAfterReplies(10 * time.Second)
				// The rows are there once the server is done with them: poll.
				checkFor(t, 5*time.Second, func() error {
					var n, busy int
					err := watch.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+table+`),
						(SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state <> 'idle')`, appUser).Scan(&n, &busy)
					if err == nil && (n != tc.rows || busy != 0) {
						err = fmt.Errorf("%d rows, want %d; %d server backends not idle", n, tc.rows, busy)
					}
					return err
				})
				if mode != "postgres" {
					next := connect(t, s)
					if _, err := next.Exec(ctx, insert(table)); err != nil {
						t.Fatalf("the next client: %v", err)
					}
				}
			})
		}
	}
}

func TestTransactionModeParameterStatusFollowsEachClient(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 2})
	db := direct(t)
	defaultTZ := queryString(t, db, "SHOW TimeZone")
	type client struct {
		name     string
		set      string // run once, at the start
		tz, app  string // what the client must see on every query
		conn     *pgx.Conn
		serverTZ map[int]bool
	}
	clients := []*client{
		{name: "tokyo", set: "SET TimeZone = 'Asia/Tokyo'; SET application_name = 'client_tokyo'", tz: "Asia/Tokyo", app: "client_tokyo"},
		{name: "new york", set: "SET TimeZone = 'America/New_York'; SET application_name = 'client_ny'", tz: "America/New_York", app: "client_ny"},
		{name: "defaults", tz: defaultTZ, app: ""},
		{name: "defaults too", tz: defaultTZ, app: ""},
		{name: "set then reset", set: "SET TimeZone = 'Europe/Paris'; SET application_name = 'tmp'; RESET TimeZone; RESET application_name", tz: defaultTZ, app: ""},
	}
	for _, c := range clients {
		c.conn = connect(t, s)
		c.serverTZ = map[int]bool{}
	}
	for _, c := range clients {
		if c.set != "" {
			if _, err := c.conn.Exec(ctx, c.set); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				var tz, app string
				var pid int
				err := c.conn.QueryRow(ctx, "SELECT current_setting('TimeZone'), current_setting('application_name'), pg_backend_pid()").Scan(&tz, &app, &pid)
				if err != nil {
					errs <- fmt.Errorf("%s, query %d: %v", c.name, i, err)
					return
				}
				c.serverTZ[pid] = true
				if tz != c.tz || app != c.app {
					errs <- fmt.Errorf("%s, query %d on server %d: TimeZone %q application_name %q; want %q %q", c.name, i, pid, tz, app, c.tz, c.app)
					return
				}
				if got := c.conn.PgConn().ParameterStatus("TimeZone"); got != c.tz {
					errs <- fmt.Errorf("%s, query %d: the client was told TimeZone %q, want %q", c.name, i, got, c.tz)
					return
				}
				if got := c.conn.PgConn().ParameterStatus("application_name"); got != c.app {
					errs <- fmt.Errorf("%s, query %d: the client was told application_name %q, want %q", c.name, i, got, c.app)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	moved := 0
	for _, c := range clients {
		if len(c.serverTZ) > 1 {
			moved++
		}
	}
	if moved == 0 {
		t.Log("no client moved between servers: the test proved little this time")
	}
}

func TestStartupParametersAreAppliedOnTheServer(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1})
			c := connectConfig(t, s, func(cfg *pgx.ConnConfig) {
				cfg.RuntimeParams["application_name"] = "startup_app"
				cfg.RuntimeParams["DateStyle"] = "SQL, DMY"
				cfg.RuntimeParams["options"] = `-c statement_timeout=4321 --lock-timeout=1234 -c search_path=pg_catalog,public`
			})
			want := map[string]string{
				// A list stays a list: two schemas, not one named "pg_catalog,public".
				"SHOW search_path": "pg_catalog,public",
				"SELECT array_length(current_schemas(false), 1)::text": "2",
				"SHOW application_name":                                "startup_app",
				"SHOW DateStyle":                                       "SQL, DMY",
				"SELECT '2024-03-01'::date::text":                      "01/03/2024",
				"SHOW statement_timeout":                               "4321ms",
				"SHOW lock_timeout":                                    "1234ms",
				"SELECT current_setting('DateStyle')":                  "SQL, DMY",
				"SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()": "startup_app",
			}
			for q, w := range want {
				if got := queryString(t, c, q); got != w {
					t.Errorf("%s = %q, want %q", q, got, w)
				}
			}
			for k, w := range map[string]string{"application_name": "startup_app", "DateStyle": "SQL, DMY"} {
				if got := c.PgConn().ParameterStatus(k); got != w {
					t.Errorf("the client was told %s = %q, want %q", k, got, w)
				}
			}
		})
	}
}

// TestStartupSettingsAreReportedAsTheServerSpellsThem logs in with DateStyle "ISO" (what pgjdbc
// sends): Postgres reports it as "ISO, MDY" at login, before any query, and so must sluice, for
// the first client with the value and for the next (which sluice answers from what it learned).
// A value the server refuses fails the login, as in Postgres.
func TestStartupSettingsAreReportedAsTheServerSpellsThem(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			// In session mode a login spells settings on a server only when one is free.
			s := startPooler(t, poolConfig{Mode: mode, PoolSize: 3})
			for i := range 2 {
				c := connectConfig(t, s, func(cfg *pgx.ConnConfig) {
					cfg.RuntimeParams["DateStyle"] = "ISO"
					cfg.RuntimeParams["TimeZone"] = "utc"
				})
				if got := c.PgConn().ParameterStatus("DateStyle"); got != "ISO, MDY" {
					t.Errorf("client %d was told DateStyle %q at login, want \"ISO, MDY\"", i, got)
				}
				if got := c.PgConn().ParameterStatus("TimeZone"); got != "UTC" {
					t.Errorf("client %d was told TimeZone %q at login, want \"UTC\"", i, got)
				}
				if got := queryString(t, c, "SHOW DateStyle"); got != "ISO, MDY" {
					t.Errorf("SHOW DateStyle = %q", got)
				}
			}
			cfg, err := pgx.ParseConfig(s.URL())
			if err != nil {
				t.Fatal(err)
			}
			cfg.RuntimeParams["TimeZone"] = "Nowhere/Bogus"
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if c, err := pgx.ConnectConfig(ctx, cfg); codeOf(err) != "22023" {
				if err == nil {
					c.Close(ctx)
				}
				t.Errorf("login with TimeZone Nowhere/Bogus: %v, want SQLSTATE 22023", err)
			}
		})
	}
}

func TestStartupSettingsOfOneClientDoNotReachTheNext(t *testing.T) {
	ctx := context.Background()
	// One server, clients one after another: each must see its own startup settings, and a client
	// without any must see the server's defaults, whatever the client before it had.
	withSettings := func(cfg *pgx.ConnConfig) {
		cfg.RuntimeParams["application_name"] = "first_app"
		cfg.RuntimeParams["search_path"] = "first_schema"
		cfg.RuntimeParams["options"] = "-c statement_timeout=4321"
	}
	type want struct{ app, searchPath, timeout string }
	own := want{"first_app", "first_schema", "4321ms"}
	defaults := want{"", `"$user", public`, "0"}
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1})
			steps := []struct {
				name string
				edit func(*pgx.ConnConfig)
				want want
			}{
				{"first client, with settings", withSettings, own},
				{"second client, without", func(*pgx.ConnConfig) {}, defaults},
				{"third client, with the same settings", withSettings, own},
				{"fourth client, with the same settings again", withSettings, own},
				{"fifth client, without", func(*pgx.ConnConfig) {}, defaults},
			}
			var pid int
			for i, st := range steps {
				c := connectConfig(t, s, st.edit)
				var got want
				var p int
				err := c.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('search_path'), current_setting('statement_timeout'), pg_backend_pid()").
					Scan(&got.app, &got.searchPath, &got.timeout, &p)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if i > 0 && p != pid {
					t.Fatalf("%s got server %d, not %d: the test needs the same one", st.name, p, pid)
				}
				pid = p
				if got != st.want {
					t.Errorf("%s: application_name, search_path, statement_timeout = %q; want %q", st.name, got, st.want)
				}
				c.Close(ctx)
			}
		})
	}
}
