package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { Main(m, nil) }

// checkFor fails the test unless check returns nil within timeout.
func checkFor(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	if err := waitFor(timeout, check); err != nil {
		t.Fatal(err)
	}
}

func startPostgres(t *testing.T, opts Options) *Postgres {
	t.Helper()
	p, err := StartPostgres(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryInt(ctx context.Context, conn *pgx.Conn, sql string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, sql).Scan(&n)
	return n, err
}

func TestReplicaStreamsSurvivesPrimaryCrashAndPromotes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	primary := startPostgres(t, Options{Name: "primary"})
	if err := primary.CreateUser(ctx, "app", "app-secret"); err != nil {
		t.Fatal(err)
	}
	if err := primary.CreateDatabase(ctx, "app", "app"); err != nil {
		t.Fatal(err)
	}
	w := connect(t, ctx, primary.DSN("app", "app", "app-secret"))
	if _, err := w.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	replica, err := primary.StartReplica("replica")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Stop() })
	if replica.Port == primary.Port || replica.DataDir == primary.DataDir {
		t.Fatalf("replica shares the primary's port or directory: %+v %+v", replica, primary)
	}

	r := connect(t, ctx, replica.DSN("app", "app", "app-secret"))
	if _, err := w.Exec(ctx, "INSERT INTO t SELECT generate_series(2, 100)"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		n, err := queryInt(ctx, r, "SELECT count(*) FROM t")
		if err == nil && n != 100 {
			err = fmt.Errorf("replica has %d rows, want 100", n)
		}
		return err
	})

	_, err = r.Exec(ctx, "INSERT INTO t VALUES (0)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("write on the replica: %v, want SQLSTATE 25006 read_only_sql_transaction", err)
	}

	su := connect(t, ctx, primary.DSN("postgres", SuperUser, SuperPassword))
	var appName, state string
	if err := su.QueryRow(ctx, "SELECT application_name, state FROM pg_stat_replication").Scan(&appName, &state); err != nil {
		t.Fatal(err)
	}
	if appName != "replica" || state != "streaming" {
		t.Fatalf("pg_stat_replication: application_name %q state %q, want replica streaming", appName, state)
	}

	// A crash of the primary: the replica reconnects once it is back.
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := primary.ping(); err == nil {
		t.Fatal("the killed primary still accepts connections")
	}
	if err := primary.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	if err := primary.Start(); err != nil {
		t.Fatal(err)
	}
	if err := primary.Start(); err == nil {
		t.Fatal("Start of a running server succeeded")
	}
	if err := primary.Exec(ctx, "app", "INSERT INTO t VALUES (101)"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, func() error {
		n, err := queryInt(ctx, r, "SELECT count(*) FROM t")
		if err == nil && n != 101 {
			err = fmt.Errorf("replica has %d rows, want 101", n)
		}
		return err
	})

	if err := replica.Promote(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exec(ctx, "INSERT INTO t VALUES (0)"); err != nil {
		t.Fatalf("write on the promoted replica: %v", err)
	}
}

func TestAuthMethodsStorePasswordsAndCheckThem(t *testing.T) {
	t.Parallel()
	// The password needs quoting in a DSN and escaping in a URL.
	const password = `se cret'\x`
	tests := []struct {
		auth         string
		wantStored   string // prefix of pg_authid.rolpassword
		wrongRefused bool
	}{
		{auth: "scram-sha-256", wantStored: "SCRAM-SHA-256$", wrongRefused: true},
		{auth: "md5", wantStored: "md5", wrongRefused: true},
		{auth: "trust", wantStored: "SCRAM-SHA-256$", wrongRefused: false},
	}
	for _, tt := range tests {
		t.Run(tt.auth, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			p := startPostgres(t, Options{Name: tt.auth, Auth: tt.auth, Conf: map[string]string{"max_connections": "123"}})
			if err := p.CreateUser(ctx, "alice", password); err != nil {
				t.Fatal(err)
			}
			if err := p.CreateDatabase(ctx, "shop", "alice"); err != nil {
				t.Fatal(err)
			}

			su, err := p.Connect(ctx, "postgres")
			if err != nil {
				t.Fatal(err)
			}
			defer su.Close(ctx)
			for _, role := range []string{"alice", SuperUser} {
				var stored string
				if err := su.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(stored, tt.wantStored) {
					t.Errorf("%s's password is stored as %.20q..., want prefix %q", role, stored, tt.wantStored)
				}
			}
			var maxConn string
			if err := su.QueryRow(ctx, "SHOW max_connections").Scan(&maxConn); err != nil || maxConn != "123" {
				t.Errorf("max_connections = %q, %v; want Options.Conf's 123", maxConn, err)
			}

			for _, dsn := range []string{p.DSN("shop", "alice", password), p.URL("shop", "alice", password)} {
				conn := connect(t, ctx, dsn)
				var user, db string
				if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
					t.Fatal(err)
				}
				if user != "alice" || db != "shop" {
					t.Errorf("%s: connected as %s to %s", dsn, user, db)
				}
			}
			conn, err := pgx.Connect(ctx, p.DSN("shop", "alice", "wrong"))
			if err == nil {
				conn.Close(ctx)
			}
			if refused := err != nil; refused != tt.wrongRefused {
				t.Errorf("wrong password: err = %v, want refused %v", err, tt.wrongRefused)
			}
		})
	}
}

func TestStopServerStartKeepsDataAndStopRemovesDir(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := StartPostgres(Options{Name: "restart", Auth: "trust"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := p.Exec(ctx, "postgres", "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	if err := p.StopServer(); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, ctx, p.DSN("postgres", SuperUser, ""))
	if n, err := queryInt(ctx, conn, "SELECT x FROM kept"); err != nil || n != 7 {
		t.Fatalf("after restart: %d, %v; want 7", n, err)
	}
	conn.Close(ctx)

	dir := filepath.Dir(p.DataDir)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Stop, %s: %v; want it removed", dir, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := p.Start(); err == nil {
		t.Fatal("Start after Stop succeeded")
	}
}

// redisPing sends an inline PING over a raw TCP connection and returns the reply line.
func redisPing(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}

func TestRedisAnswersPingAndRestarts(t *testing.T) {
	t.Parallel()
	r, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if reply, err := redisPing(r.Addr); err != nil || reply != "+PONG\r\n" {
		t.Fatalf("PING: %q, %v; want +PONG", reply, err)
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := redisPing(r.Addr); err == nil {
		t.Fatal("the killed Redis still answers")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if reply, err := redisPing(r.Addr); err != nil || reply != "+PONG\r\n" {
		t.Fatalf("PING after restart: %q, %v; want +PONG", reply, err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Stop, %s: %v; want it removed", r.dir, err)
	}
}

// TestSweepStopsServersOfDeadProcesses pretends a Redis and a Postgres were left by a process that
// died, by renaming their directories after a pid that no longer runs.
func TestSweepStopsServersOfDeadProcesses(t *testing.T) {
	t.Parallel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := dead.Process.Pid

	r, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	p, err := StartPostgres(Options{Name: "leftover"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()

	orphan := func(dir string) string {
		t.Helper()
		base := strings.TrimPrefix(filepath.Base(dir), fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
		moved := filepath.Join(filepath.Dir(dir), fmt.Sprintf("%s%d-%s", dirPrefix, deadPid, base))
		if err := os.Rename(dir, moved); err != nil {
			t.Fatal(err)
		}
		return moved
	}
	redisDir, pgDir := orphan(r.dir), orphan(p.dir)

	sweepLeftovers()

	for _, dir := range []string{redisDir, pgDir} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after the sweep, %s: %v; want it removed", dir, err)
		}
	}
	if _, err := redisPing(r.Addr); err == nil {
		t.Error("the orphaned Redis still answers")
	}
	if err := p.ping(); err == nil {
		t.Error("the orphaned Postgres still accepts connections")
	}
}

func TestFreePortIsBindable(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d from FreePort: %v", port, err)
	}
	l.Close()
}

func TestBinDirHasServerPrograms(t *testing.T) {
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range []string{"initdb", "pg_ctl", "pg_basebackup", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
			t.Error(err)
		}
	}
}

func TestDSNQuotesValues(t *testing.T) {
	p := &Postgres{Host: "127.0.0.1", Port: 5555}
	got := p.DSN("my db", "bob", `it's\`)
	want := `host=127.0.0.1 port=5555 user=bob password='it\'s\\' dbname='my db' sslmode=disable`
	if got != want {
		t.Errorf("DSN = %s\nwant  %s", got, want)
	}
	if got, want := p.URL("db", "bob", "p@ss/word"), "postgres://bob:p%40ss%2Fword@127.0.0.1:5555/db?sslmode=disable"; got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
}
