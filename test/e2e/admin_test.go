package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sluicepg/sluice/internal/auth"
)

const (
	adminUser = "admin"
	adminPass = "admin-secret"
)

// adminURL is a pgx URL to the console (database db) as user with password.
func adminURL(s *Sluice, db, user, password string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, password, s.Port, db)
}

// connectAdmin logs in to the console on database db with pgx, in simple-protocol mode.
func connectAdmin(t testing.TB, s *Sluice, db string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(adminURL(s, db, adminUser, adminPass))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to the admin console: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// adminQuery runs a console command and returns its column names and rows as text.
func adminQuery(t testing.TB, c *pgx.Conn, q string) (cols []string, rows [][]string) {
	t.Helper()
	rs, err := c.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	for _, f := range rs.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	for rs.Next() {
		var row []string
		for _, v := range rs.RawValues() {
			row = append(row, string(v))
		}
		rows = append(rows, row)
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return cols, rows
}

// column returns the value of column name in row.
func column(t testing.TB, cols []string, row []string, name string) string {
	t.Helper()
	i := slices.Index(cols, name)
	if i < 0 {
		t.Fatalf("no column %q in %q", name, cols)
	}
	return row[i]
}

// TestAdminLogin logs in to the console with md5 and SCRAM, from psql and pgx, and checks that
// nobody else gets in: a wrong password, a pool user, and the admin on a pool database all get
// 28P01; with no admin_username, database pgcat does not exist.
func TestAdminLogin(t *testing.T) {
	verifier := auth.NewVerifier(adminPass, []byte("sluice-admin-salt"), 4096).String()
	cases := []struct {
		name   string
		pc     poolConfig
		method string // what sluice asks for
	}{
		{"md5 by default", poolConfig{}, "md5"},
		{"scram-sha-256", poolConfig{General: `admin_auth_type = "scram-sha-256"`}, "scram"},
		{"SCRAM verifier in the file", poolConfig{Admin: fmt.Sprintf("admin_username = %q\nadmin_password = %q", adminUser, verifier)}, "scram"},
		{"md5 hash in the file", poolConfig{Admin: fmt.Sprintf("admin_username = %q\nadmin_password = %q", adminUser, md5Hash(adminPass, adminUser))}, "md5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s := startSluice(t, c.pc)

			raw := dialRaw(t, s)
			raw.startup("user", adminUser, "database", "pgcat")
			m, err := raw.receive(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			switch m.(type) {
			case *pgproto3.AuthenticationMD5Password:
				if c.method != "md5" {
					t.Fatalf("sluice asked for md5, want %s", c.method)
				}
			case *pgproto3.AuthenticationSASL:
				if c.method != "scram" {
					t.Fatalf("sluice asked for SCRAM, want %s", c.method)
				}
			default:
				t.Fatalf("sluice answered %T", m)
			}

			for _, db := range []string{"pgcat", "pgbouncer"} {
				conn := connectAdmin(t, s, db)
				cols, _ := adminQuery(t, conn, "SHOW POOLS")
				if len(cols) == 0 || cols[0] != "database" {
					t.Errorf("%s: SHOW POOLS columns %q", db, cols)
				}
			}

			out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-c", "SHOW POOLS",
				fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=pgcat", s.Port, adminUser, adminPass)).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "database|user|pool_mode|cl_idle|cl_active|cl_waiting|") ||
				!strings.Contains(string(out), "\napp|app|transaction|") {
				t.Fatalf("psql SHOW POOLS: %v\n%s", err, out)
			}

			for _, bad := range []struct{ db, user, password string }{
				{"pgcat", adminUser, "wrong"},
				{"pgcat", appUser, appPass},   // a pool user, with its own right password
				{"pgbouncer", "nobody", "x"},  // an unknown user
				{appDB, adminUser, adminPass}, // the admin on a pool database
			} {
				_, err := pgx.Connect(ctx, adminURL(s, bad.db, bad.user, bad.password))
				if code := codeOf(err); code != "28P01" {
					t.Errorf("db %q user %q password %q: %v, want 28P01", bad.db, bad.user, bad.password, err)
				}
			}
		})
	}

	t.Run("console off", func(t *testing.T) {
		s := startSluice(t, poolConfig{Admin: "# no admin_username: no console"})
		_, err := pgx.Connect(context.Background(), adminURL(s, "pgcat", adminUser, adminPass))
		if code := codeOf(err); code != "3D000" {
			t.Errorf("database pgcat with the console off: %v, want 3D000", err)
		}
	})

	t.Run("hba rules apply", func(t *testing.T) {
		s := startSluice(t, poolConfig{General: `hba = ["host pgcat all all reject", "host all all all md5"]`})
		_, err := pgx.Connect(context.Background(), adminURL(s, "pgcat", adminUser, adminPass))
		if code := codeOf(err); code != "28000" {
			t.Errorf("admin refused by an hba rule: %v, want 28000", err)
		}
		connectAdmin(t, s, "pgbouncer") // another database, allowed by the second rule
	})
}

// md5Hash is the md5 secret Postgres stores for user's password.
func md5Hash(password, user string) string { return "md5" + auth.MD5Secret(password, user) }

// TestAdminCommands runs the console's commands against a sluice with a client inside a
// transaction, and checks their columns and what they report; errors leave the session usable.
func TestAdminCommands(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 4})
	app := connect(t, s)
	if _, err := app.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	var serverPID int
	if err := app.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&serverPID); err != nil {
		t.Fatal(err)
	}
	appPID := app.PgConn().PID()
	adm := connectAdmin(t, s, "pgcat")

	cols, rows := adminQuery(t, adm, "SHOW POOLS")
	if len(rows) != 1 || column(t, cols, rows[0], "cl_active") != "1" || column(t, cols, rows[0], "sv_active") != "1" ||
		column(t, cols, rows[0], "user") != appUser {
		t.Errorf("SHOW POOLS: %q %q", cols, rows)
	}

	cols, rows = adminQuery(t, adm, "show clients;")
	wantCols := "client_id,database,user,application_name,state,transaction_count,query_count,error_count,age_seconds,maxwait,maxwait_us"
	if !strings.HasPrefix(strings.Join(cols, ","), wantCols) {
		t.Errorf("SHOW CLIENTS columns %q, want pgcat's first: %s", cols, wantCols)
	}
	var sawApp, sawAdmin bool
	for _, r := range rows {
		switch column(t, cols, r, "database") {
		case appDB:
			sawApp = true
			if column(t, cols, r, "client_id") != fmt.Sprint(appPID) || column(t, cols, r, "state") != "active" ||
				column(t, cols, r, "query_count") != "2" {
				t.Errorf("SHOW CLIENTS app row: %q", r)
			}
		case "pgcat":
			sawAdmin = true
		}
	}
	if !sawApp || !sawAdmin || len(rows) != 2 {
		t.Errorf("SHOW CLIENTS: %q", rows)
	}

	cols, rows = adminQuery(t, adm, "SHOW SERVERS")
	if len(rows) != 1 || column(t, cols, rows[0], "server_id") != fmt.Sprint(serverPID) ||
		column(t, cols, rows[0], "state") != "active" || column(t, cols, rows[0], "address_id") != "app_shard_0_primary" {
		t.Errorf("SHOW SERVERS: %q %q", cols, rows)
	}

	cols, rows = adminQuery(t, adm, "SHOW DATABASES")
	if len(rows) != 1 || column(t, cols, rows[0], "pool_size") != "4" || column(t, cols, rows[0], "current_connections") != "1" ||
		column(t, cols, rows[0], "database") != appDB {
		t.Errorf("SHOW DATABASES: %q %q", cols, rows)
	}

	// The client's BEGIN and SELECT (prepared, then run: two request cycles) are queries of a
	// transaction not yet ended.
	cols, rows = adminQuery(t, adm, "SHOW STATS")
	if len(rows) != 1 || column(t, cols, rows[0], "instance") != "app_shard_0_primary" ||
		column(t, cols, rows[0], "total_query_count") != "3" || column(t, cols, rows[0], "total_xact_count") != "0" ||
		column(t, cols, rows[0], "total_received") == "0" || column(t, cols, rows[0], "total_sent") == "0" {
		t.Errorf("SHOW STATS: %q %q", cols, rows)
	}

	cols, rows = adminQuery(t, adm, "SHOW CONFIG")
	for _, r := range rows {
		if strings.Contains(strings.Join(r, " "), adminPass) || strings.Contains(strings.Join(r, " "), appPass) {
			t.Errorf("SHOW CONFIG shows a password: %q", r)
		}
		if r[0] == "admin_password" && r[1] != "********" {
			t.Errorf("admin_password shown as %q", r[1])
		}
	}
	if strings.Join(cols, ",") != "key,value,default,changeable" || len(rows) < 30 {
		t.Errorf("SHOW CONFIG: %q, %d rows", cols, len(rows))
	}

	for q, want := range map[string]string{
		"SHOW USERS":   "name,pool_mode",
		"SHOW LISTS":   "list,items",
		"SHOW VERSION": "version",
		"SHOW BANS":    "db,user,role,host,reason,ban_time,ban_duration_seconds,ban_remaining_seconds",
	} {
		if cols, _ := adminQuery(t, adm, q); strings.Join(cols, ",") != want {
			t.Errorf("%s columns %q, want %s", q, cols, want)
		}
	}

	// Errors: each is an ERROR, and the session goes on.
	for q, code := range map[string]string{
		"SHOW NOTHING":        "42601",
		"SELECT 1":            "42601",
		"SUSPEND":             "0A000",
		"KILL nosuchdb":       "42704",
		"KILL_CLIENT 999999":  "42704",
		"DISABLE nosuchdb":    "42704",
		"RESUME nosuchdb":     "42704",
		"BAN nowhere.example": "42704",
	} {
		if _, err := adm.Exec(ctx, q); codeOf(err) != code {
			t.Errorf("%s: %v, want %s", q, err, code)
		}
		if _, rows := adminQuery(t, adm, "SHOW VERSION"); len(rows) != 1 || !strings.HasPrefix(rows[0][0], "sluice ") {
			t.Fatalf("after %s: SHOW VERSION %q", q, rows)
		}
	}
	// The extended protocol gets a clean error; simple queries still work after it.
	// (pgx's Exec without arguments always uses the simple protocol: use Query and ExecParams.)
	rs, _ := adm.Query(ctx, "SHOW POOLS", pgx.QueryExecModeCacheStatement)
	rs.Close()
	if codeOf(rs.Err()) != "0A000" {
		t.Errorf("extended protocol (pgx Query): %v, want 0A000", rs.Err())
	}
	if res := adm.PgConn().ExecParams(ctx, "SHOW POOLS", nil, nil, nil, nil).Read(); codeOf(res.Err) != "0A000" {
		t.Errorf("extended protocol (ExecParams): %v, want 0A000", res.Err)
	}
	adminQuery(t, adm, "SHOW POOLS")

	if _, err := app.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	// The server goes back to its pool just after the client has its reply.
	checkFor(t, 5*time.Second, func() error {
		cols, rows = adminQuery(t, adm, "SHOW SERVERS")
		if len(rows) != 1 || column(t, cols, rows[0], "state") != "idle" || column(t, cols, rows[0], "server_id") != fmt.Sprint(serverPID) {
			return fmt.Errorf("SHOW SERVERS after COMMIT: %q", rows)
		}
		return nil
	})

	// BAN and UNBAN act on the routing table's servers: one row per (database, user).
	server := fmt.Sprintf("127.0.0.1:%d", pg.Port)
	cols, rows = adminQuery(t, adm, "BAN "+server+" 60")
	if len(rows) != 1 || strings.Join(rows[0], "|") != appDB+"|"+appUser+"|primary|"+server {
		t.Errorf("BAN: %q %q", cols, rows)
	}
	cols, rows = adminQuery(t, adm, "SHOW BANS")
	if len(rows) != 1 || column(t, cols, rows[0], "host") != server || column(t, cols, rows[0], "reason") != "admin" {
		t.Errorf("SHOW BANS: %q %q", cols, rows)
	}
	cols, rows = adminQuery(t, adm, "SHOW DATABASES")
	if column(t, cols, rows[0], "disabled") != "1" {
		t.Errorf("SHOW DATABASES while banned: %q", rows)
	}
	if _, rows = adminQuery(t, adm, "UNBAN 127.0.0.1"); len(rows) != 1 {
		t.Errorf("UNBAN: %q", rows)
	}
	if _, rows = adminQuery(t, adm, "SHOW BANS"); len(rows) != 0 {
		t.Errorf("SHOW BANS after UNBAN: %q", rows)
	}
}

// TestAdminReload changes the file and runs RELOAD: the new pool_size shows in SHOW DATABASES; a
// file with an error is refused with F0000 and changes nothing.
func TestAdminReload(t *testing.T) {
	ctx := context.Background()
	pc := poolConfig{PoolSize: 3}
	s := startSluice(t, pc)
	adm := connectAdmin(t, s, "pgcat")
	poolSize := func() string {
		cols, rows := adminQuery(t, adm, "SHOW DATABASES")
		return column(t, cols, rows[0], "pool_size")
	}
	if got := poolSize(); got != "3" {
		t.Fatalf("pool_size %s, want 3", got)
	}
	pc.PoolSize = 9
	s.Rewrite(t, pc)
	if _, err := adm.Exec(ctx, "RELOAD"); err != nil {
		t.Fatal(err)
	}
	if got := poolSize(); got != "9" {
		t.Errorf("pool_size after RELOAD %s, want 9", got)
	}
	s.Rewrite(t, poolConfig{PoolSize: 2, General: "prot = 1"})
	_, err := adm.Exec(ctx, "RELOAD")
	if codeOf(err) != "F0000" || !strings.Contains(err.Error(), "general.prot") {
		t.Errorf("RELOAD of a bad file: %v, want F0000 naming the key", err)
	}
	if got := poolSize(); got != "9" {
		t.Errorf("pool_size after a failed RELOAD %s, want 9", got)
	}
	connect(t, s) // clients still log in
}

// TestAdminShutdown stops a sluice process from the console: it shuts down gracefully and exits 0.
func TestAdminShutdown(t *testing.T) {
	s := startSluiceProcess(t, poolConfig{})
	out, err := exec.Command(tool(t, "psql"), "-X", "-A", "-c", "SHUTDOWN",
		fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=pgbouncer", s.Port, adminUser, adminPass)).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "57P01") && !strings.Contains(string(out), "shutting down") {
		t.Fatalf("psql SHUTDOWN: %v\n%s", err, out)
	}
	select {
	case <-s.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("sluice still runs after SHUTDOWN:\n%s", s.Log)
	}
	if code := s.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0:\n%s", code, s.Log)
	}
}

// PAUSE waits for the servers in use to come back and then holds new requests until RESUME, as
// PgBouncer's does: a maintenance window without errors for clients.
func TestAdminPauseResume(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 2})
	adm := connectAdmin(t, s, "pgcat")
	busy := connect(t, s)
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	paused := make(chan error, 1)
	go func() {
		_, err := adm.Exec(ctx, "PAUSE "+appDB)
		paused <- err
	}()
	heldUntil(t, "PAUSE while a transaction holds a server", paused, func() {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	})

	other := connect(t, s)
	answered := make(chan error, 1)
	go func() {
		var n int
		answered <- other.QueryRow(ctx, "SELECT 42").Scan(&n)
	}()
	mon := connectAdmin(t, s, "pgcat")
	heldUntil(t, "a query during PAUSE", answered, func() {
		cols, rows := adminQuery(t, mon, "SHOW DATABASES")
		if len(rows) != 1 || column(t, cols, rows[0], "paused") != "1" {
			t.Errorf("SHOW DATABASES during PAUSE: %q", rows)
		}
		if _, err := mon.Exec(ctx, "RESUME"); err != nil {
			t.Fatal(err)
		}
	})
	cols, rows := adminQuery(t, mon, "SHOW STATS_TOTALS")
	if len(rows) != 1 || column(t, cols, rows[0], "database") != appDB || column(t, cols, rows[0], "query_count") == "0" {
		t.Errorf("SHOW STATS_TOTALS: %q %q", cols, rows)
	}
}

// TestAdminKillReconnect: PgBouncer's commands on connections. RECONNECT replaces the servers
// (the one in a transaction when the transaction ends; WAIT_CLOSE waits for it) without
// disconnecting clients; KILL_CLIENT disconnects one client; DISABLE turns new logins away
// while clients already in stay; KILL disconnects every client of the database, closes its
// servers, and holds new queries until RESUME.
func TestAdminKillReconnect(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 2})
	adm := connectAdmin(t, s, "pgbouncer")
	backendPID := func(c *pgx.Conn) int {
		t.Helper()
		var pid int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return pid
	}
	alive := func(pid int) bool {
		var n int
		if err := direct(t).QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	// RECONNECT: the idle server goes at once, the busy one when its transaction ends.
	a, b := connect(t, s), connect(t, s)
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	busyPID := backendPID(tx.Conn())
	idlePID := backendPID(b)
	if busyPID == idlePID {
		t.Fatal("both clients on one server")
	}
	if _, err := adm.Exec(ctx, "RECONNECT "+appDB); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if alive(idlePID) {
			return fmt.Errorf("idle server %d still open after RECONNECT", idlePID)
		}
		return nil
	})
	if got := backendPID(tx.Conn()); got != busyPID {
		t.Fatalf("the transaction moved from server %d to %d", busyPID, got)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := connectAdmin(t, s, "pgbouncer").Exec(ctx, "WAIT_CLOSE")
		waited <- err
	}()
	heldUntil(t, "WAIT_CLOSE while the old server is in a transaction", waited, func() {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	})
	checkFor(t, 5*time.Second, func() error {
		if alive(busyPID) {
			return fmt.Errorf("server %d still open after its transaction", busyPID)
		}
		return nil
	})
	if got := backendPID(a); got == busyPID || got == idlePID {
		t.Fatalf("client a still on an old server %d", got)
	}

	// KILL_CLIENT: b is disconnected, a is not.
	cols, rows := adminQuery(t, adm, "SHOW CLIENTS")
	if len(rows) < 2 {
		t.Fatalf("SHOW CLIENTS: %q", rows)
	}
	var bID string
	bPort := b.PgConn().Conn().LocalAddr().(*net.TCPAddr).Port
	for _, r := range rows {
		if column(t, cols, r, "port") == strconv.Itoa(bPort) {
			bID = column(t, cols, r, "client_id")
		}
	}
	if bID == "" {
		t.Fatalf("client b (port %d) not in SHOW CLIENTS %q", bPort, rows)
	}
	if _, err := adm.Exec(ctx, "KILL_CLIENT "+bID); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(ctx); err == nil {
		t.Fatal("client b still works after KILL_CLIENT")
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("client a after KILL_CLIENT of b: %v", err)
	}

	// DISABLE: new logins are refused, a stays; ENABLE lets them in.
	if _, err := adm.Exec(ctx, "DISABLE "+appDB); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, s.URL()); codeOf(err) != "55000" {
		t.Fatalf("a login while disabled: %v, want 55000", err)
	}
	cols, rows = adminQuery(t, adm, "SHOW DATABASES")
	if len(rows) != 1 || column(t, cols, rows[0], "disabled") != "1" {
		t.Errorf("SHOW DATABASES while disabled: %q", rows)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("a logged-in client while disabled: %v", err)
	}
	if _, err := adm.Exec(ctx, "ENABLE "+appDB); err != nil {
		t.Fatal(err)
	}
	c := connect(t, s)

	// KILL: a and c are disconnected with 57P01 and their servers closed; a new client waits
	// for RESUME.
	if _, err := adm.Exec(ctx, "KILL "+appDB); err != nil {
		t.Fatal(err)
	}
	for name, cl := range map[string]*pgx.Conn{"a": a, "c": c} {
		if err := cl.Ping(ctx); err == nil {
			t.Errorf("client %s still works after KILL", name)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if n := serverBackends(t); n != 0 {
			rows, _ := direct(t).Query(ctx, "SELECT pid, state, application_name, query, backend_start FROM pg_stat_activity WHERE usename = $1", appUser)
			var b strings.Builder
			for rows.Next() {
				v, _ := rows.Values()
				fmt.Fprintln(&b, v...)
			}
			return fmt.Errorf("%d server connections left after KILL: %s", n, b.String())
		}
		return nil
	})
	cols, rows = adminQuery(t, adm, "SHOW STATE")
	if len(rows) != 3 || rows[1][0] != "paused" || rows[1][1] != "yes" {
		t.Errorf("SHOW STATE after KILL: %q %q", cols, rows)
	}
	d := connect(t, s)
	answered := make(chan error, 1)
	go func() { answered <- d.Ping(ctx) }()
	heldUntil(t, "a query after KILL", answered, func() {
		if _, err := adm.Exec(ctx, "RESUME"); err != nil {
			t.Fatal(err)
		}
	})
	_, rows = adminQuery(t, adm, "SHOW TOTALS")
	if len(rows) == 0 || rows[0][0] != "total_xact_count" || rows[0][1] == "0" {
		t.Errorf("SHOW TOTALS: %q", rows)
	}
}

// heldUntil checks that done (what a goroutine sends when its command or query ends) is still
// held 300 ms on, then runs release and checks that it ends without error within 5 s.
func heldUntil(t testing.TB, what string, done <-chan error, release func()) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s ended (%v) before it was released", what, err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not end once released", what)
	}
}

// TestAdminKillClientMidRequest: KILL_CLIENT of a client in the middle of a long query, or of a
// COPY FROM STDIN whose data stalls, ends the client's session and its server's work at once,
// not when the query ends: the server is not left running for a client that is gone.
func TestAdminKillClientMidRequest(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 2})
	adm := connectAdmin(t, s, "pgbouncer")
	mustExec(t, connect(t, s), "CREATE TABLE IF NOT EXISTS kill_mid_copy (v int)")
	clientID := func(t *testing.T, c *pgconn.PgConn) string {
		t.Helper()
		port := strconv.Itoa(c.Conn().LocalAddr().(*net.TCPAddr).Port)
		var id string
		checkFor(t, 5*time.Second, func() error {
			cols, rows := adminQuery(t, adm, "SHOW CLIENTS")
			for _, r := range rows {
				if column(t, cols, r, "port") == port {
					id = column(t, cols, r, "client_id")
					return nil
				}
			}
			return fmt.Errorf("client on port %s not in SHOW CLIENTS %q", port, rows)
		})
		return id
	}
	running := func(query string) int {
		var n int
		if err := direct(t).QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state <> 'idle'", query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct {
		name, query string
		run         func(*pgconn.PgConn, string) error
	}{
		{"long query", "SELECT pg_sleep(60)", func(pc *pgconn.PgConn, q string) error {
			return pc.Exec(ctx, q).Close()
		}},
		{"stalled COPY", "COPY kill_mid_copy FROM STDIN", func(pc *pgconn.PgConn, q string) error {
			r, w := io.Pipe()
			defer w.Close()
			go func() { _, _ = w.Write([]byte("1\n2\n")) }() // then nothing, and no end
			_, err := pc.CopyFrom(ctx, r, q)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc := connect(t, s).PgConn()
			id := clientID(t, pc)
			done := make(chan error, 1)
			go func() { done <- c.run(pc, c.query) }()
			checkFor(t, 5*time.Second, func() error {
				if running(c.query) != 1 {
					return fmt.Errorf("%q is not running", c.query)
				}
				return nil
			})
			if _, err := adm.Exec(ctx, "KILL_CLIENT "+id); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the request succeeded after KILL_CLIENT")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the client's request still runs 5 s after KILL_CLIENT")
			}
			checkFor(t, 5*time.Second, func() error {
				if n := running(c.query); n != 0 {
					return fmt.Errorf("the server still runs %q for the killed client", c.query)
				}
				return nil
			})
		})
	}
}
