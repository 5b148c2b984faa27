package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// serverRole creates a login role that only this test's sluice uses to reach pg, so its servers
// can be counted in pg_stat_activity whatever other tests left behind. It returns the role and
// the [pools.app.users.0] lines that make sluice log in to servers with it.
func serverRole(t testing.TB) (role, userLines string) {
	t.Helper()
	role = fmt.Sprintf("srv_%d", time.Now().UnixNano())
	const password = "srv-secret"
	if err := pg.CreateUser(context.Background(), role, password); err != nil {
		t.Fatal(err)
	}
	return role, fmt.Sprintf("server_username = %q\nserver_password = %q", role, password)
}

// serversOf counts the connections of role on pg.
func serversOf(t testing.TB, db *pgx.Conn, role string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitServers waits until role has exactly n connections on pg.
func waitServers(t testing.TB, db *pgx.Conn, role string, n int, within time.Duration) {
	t.Helper()
	checkFor(t, within, func() error {
		if got := serversOf(t, db, role); got != n {
			return fmt.Errorf("%d servers, want %d", got, n)
		}
		return nil
	})
}

// readUntilClosed reads what sluice sends on c's socket until it closes the connection or
// within passes, and returns the ErrorResponse among it, if any, and when the connection closed.
func readUntilClosed(t testing.TB, c *pgx.Conn, within time.Duration) (e *pgproto3.ErrorResponse, closed bool) {
	t.Helper()
	conn := c.PgConn().Conn()
	fe := pgproto3.NewFrontend(conn, conn)
	_ = conn.SetReadDeadline(time.Now().Add(within))
	defer conn.SetReadDeadline(time.Time{})
	for {
		m, err := fe.Receive()
		if err != nil {
			return e, !isTimeout(err)
		}
		if er, ok := m.(*pgproto3.ErrorResponse); ok && e == nil {
			cp := *er
			e = &cp
		}
	}
}

func TestIdleClientInTransactionTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	ctx := context.Background()
	watch := direct(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1,
				General: fmt.Sprintf("idle_client_in_transaction_timeout = %d", timeout.Milliseconds())})
			tests := []struct {
				name  string
				begin string
			}{
				{"idle right after BEGIN", "BEGIN"},
				{"idle after a query in the transaction", "BEGIN; SELECT 1"},
				{"idle in a failed transaction", "BEGIN; SELECT 1/0"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					c := connect(t, s)
					pid := backendPID(t, c)
					_, _ = c.Exec(ctx, tt.begin)
					start := time.Now()
					e, closed := readUntilClosed(t, c, timeout+5*time.Second)
					took := time.Since(start)
					if !closed {
						t.Fatalf("a client idle in a transaction for %s is still connected (timeout %s)", took.Round(time.Millisecond), timeout)
					}
					if e == nil || e.Severity != "FATAL" || e.Code != "25P03" {
						t.Fatalf("closed with %+v, want FATAL 25P03", e)
					}
					if took < timeout-100*time.Millisecond || took > timeout+3*time.Second {
						t.Fatalf("closed after %s, want about %s", took.Round(time.Millisecond), timeout)
					}
					// The server was rolled back and went back to the pool.
					checkFor(t, 5*time.Second, func() error {
						if st := serverState(t, watch, pid); st != "idle" {
							return fmt.Errorf("server %d is %q, want idle", pid, st)
						}
						return nil
					})
					if got := backendPID(t, connect(t, s)); got != pid {
						t.Fatalf("the next client got server %d, not the freed %d", got, pid)
					}
				})
			}
			t.Run("not when the transaction is over", func(t *testing.T) {
				c := connect(t, s)
				if _, err := c.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, "SELECT 2"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, "COMMIT"); err != nil {
					t.Fatal(err)
				}
				if e, closed := readUntilClosed(t, c, 3*timeout); closed || e != nil {
					t.Fatalf("a client idle outside any transaction was disconnected (%+v)", e)
				}
				if _, err := c.Exec(ctx, "SELECT 3"); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("not while the client keeps talking", func(t *testing.T) {
				c := connect(t, s)
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(3 * timeout); time.Now().Before(deadline); {
					if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.1)"); err != nil {
						t.Fatalf("an active transaction was ended: %v", err)
					}
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestQueryWaitTimeout(t *testing.T) {
	const wait = 300 * time.Millisecond
	ctx := context.Background()
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1,
				General: fmt.Sprintf("query_wait_timeout = %d", wait.Milliseconds())})
			holder := connect(t, s)
			if _, err := holder.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
				t.Fatal(err)
			}
			waiter := connect(t, s)
			tries := []struct {
				name string
				run  func() error
			}{
				{"simple query", func() error { _, err := waiter.Exec(ctx, "SELECT 1"); return err }},
				{"extended query", func() error {
					var n int
					return waiter.QueryRow(ctx, "SELECT $1::int", 7).Scan(&n)
				}},
			}
			for _, try := range tries {
				start := time.Now()
				err := try.run()
				took := time.Since(start)
				if code := codeOf(err); code != "53300" {
					t.Fatalf("%s while the only server is held: %v, want SQLSTATE 53300", try.name, err)
				}
				if took < wait-50*time.Millisecond || took > wait+3*time.Second {
					t.Fatalf("%s: error after %s, want about query_wait_timeout %s", try.name, took.Round(time.Millisecond), wait)
				}
			}
			// The waiter is still connected and gets the server once it is free.
			if mode == "session" {
				holder.Close(ctx)
			} else if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
				t.Fatal(err)
			}
			for _, try := range tries {
				if err := try.run(); err != nil {
					t.Fatalf("%s after the server was freed: %v", try.name, err)
				}
			}
		})
	}
}

func TestMinPoolSizeAndIdleTimeout(t *testing.T) {
	ctx := context.Background()
	role, user := serverRole(t)
	watch := direct(t)
	s := startSluice(t, poolConfig{PoolSize: 4, User: user + "\nmin_pool_size = 2", General: "idle_timeout = 300"})
	// Opened with no client at all.
	waitServers(t, watch, role, 2, 10*time.Second)

	// Four clients in transactions at once take four servers.
	var clients []*pgx.Conn
	for range 4 {
		c := connect(t, s)
		if _, err := c.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	waitServers(t, watch, role, 4, 5*time.Second)
	for _, c := range clients {
		if _, err := c.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
	}
	// idle_timeout closes the two extra ones, and min_pool_size keeps two.
	waitServers(t, watch, role, 2, 10*time.Second)
	time.Sleep(1300 * time.Millisecond) // another reaper round or more: still two
	if n := serversOf(t, watch, role); n != 2 {
		t.Fatalf("%d servers after more idle time, want min_pool_size 2", n)
	}
}

func TestIdleTimeoutSparesServersInUse(t *testing.T) {
	s := startSluice(t, poolConfig{PoolSize: 1, General: "idle_timeout = 300"})
	watch := direct(t)
	c := connect(t, s)
	pid := backendPID(t, c)
	// Busy for three times idle_timeout, with short gaps: the same server all along.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if got := backendPID(t, c); got != pid {
			t.Fatalf("server changed from %d to %d while in use", pid, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Left alone, it is closed.
	checkFor(t, 5*time.Second, func() error {
		if st := serverState(t, watch, pid); st != "gone" {
			return fmt.Errorf("idle server %d is %q", pid, st)
		}
		return nil
	})
	if got := backendPID(t, c); got == pid {
		t.Fatalf("still on closed server %d", pid)
	}
}

func TestServerLifetime(t *testing.T) {
	ctx := context.Background()
	const lifetime = 500 * time.Millisecond
	s := startSluice(t, poolConfig{PoolSize: 1, General: fmt.Sprintf("server_lifetime = %d", lifetime.Milliseconds())})
	watch := direct(t)
	c := connect(t, s)

	t.Run("an idle server past its lifetime is closed", func(t *testing.T) {
		pid := backendPID(t, c)
		checkFor(t, 5*time.Second, func() error {
			if st := serverState(t, watch, pid); st != "gone" {
				return fmt.Errorf("server %d is %q", pid, st)
			}
			return nil
		})
		if got := backendPID(t, c); got == pid {
			t.Fatalf("still on closed server %d", pid)
		}
	})
	t.Run("a server in a transaction outlives its lifetime and is closed after", func(t *testing.T) {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_sleep($1::float8)", 2*lifetime.Seconds()); err != nil {
			t.Fatalf("in a transaction past server_lifetime: %v", err)
		}
		var again int
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil || again != pid {
			t.Fatalf("server changed inside a transaction: %d then %d (%v)", pid, again, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 5*time.Second, func() error {
			if st := serverState(t, watch, pid); st != "gone" {
				return fmt.Errorf("server %d is %q", pid, st)
			}
			return nil
		})
	})
}

func TestHealthcheckDelayZeroChecksEveryServer(t *testing.T) {
	// healthcheck_delay = 0 means "check every time" (docs/configuration.md): a server that died
	// while idle in the pool is found out before a client gets it.
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 1, General: "healthcheck_delay = 0"})
	watch := direct(t)
	c := connect(t, s)
	pid := backendPID(t, c)
	if _, err := watch.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if st := serverState(t, watch, pid); st != "gone" {
			return fmt.Errorf("server %d is %q", pid, st)
		}
		return nil
	})
	var n int
	if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("first query after its idle server was killed: %d, %v", n, err)
	}
}

// A server killed while its connection sits idle in the pool (pg_terminate_backend, as
// node-postgres' own tests do) has sent its FATAL and closed the connection by the time the next
// client needs one, long before healthcheck_delay: that client gets a live server, in both modes.
func TestServerKilledWhileIdleInThePoolIsNotHandedOut(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1})
			watch := direct(t)
			first := connect(t, s)
			pid := backendPID(t, first)
			if mode == "session" {
				first.Close(ctx) // its server goes back to the pool
			}
			checkFor(t, 5*time.Second, func() error {
				if st := serverState(t, watch, pid); st != "idle" {
					return fmt.Errorf("server %d is %q, want idle", pid, st)
				}
				return nil
			})
			if _, err := watch.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
				t.Fatal(err)
			}
			checkFor(t, 5*time.Second, func() error {
				if st := serverState(t, watch, pid); st != "gone" {
					return fmt.Errorf("server %d is %q", pid, st)
				}
				return nil
			})
			next := first
			if mode == "session" {
				next = connect(t, s)
			}
			var n int
			if err := next.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
				t.Fatalf("first query after the idle server was killed: %d, %v", n, err)
			}
		})
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	ctx := context.Background()
	pc := poolConfig{PoolSize: 1, General: "query_wait_timeout = 500"}
	s := startSluiceProcess(t, pc)
	a, b := connect(t, s), connect(t, s)

	// twoAtOnce reports whether b can run a query while a holds a server in a transaction.
	twoAtOnce := func() bool {
		t.Helper()
		if _, err := a.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
			t.Fatalf("client a: %v", err)
		}
		defer func() {
			if _, err := a.Exec(ctx, "COMMIT"); err != nil {
				t.Fatalf("client a: %v", err)
			}
		}()
		_, err := b.Exec(ctx, "SELECT 1")
		if err != nil && codeOf(err) != "53300" {
			t.Fatalf("client b: %v", err)
		}
		return err == nil
	}
	// logged waits for the n-th line of sluice's log that has text.
	logged := func(text string, n int) {
		t.Helper()
		checkFor(t, 10*time.Second, func() error {
			if got := strings.Count(s.Log.String(), text); got < n {
				return fmt.Errorf("%q logged %d times, want %d; log:\n%s", text, got, n, s.Log)
			}
			return nil
		})
	}
	if twoAtOnce() {
		t.Fatal("pool_size 1 served two transactions at once")
	}

	pc.PoolSize = 2
	s.Rewrite(t, pc)
	s.Signal(t, syscall.SIGHUP)
	logged("configuration reloaded", 1)
	if !twoAtOnce() {
		t.Fatal("after the reload to pool_size 2, the second client still waits")
	}

	for i, bad := range []string{
		"[general\nport = ", // not TOML
		strings.Replace(pc.toml(s.Port, s.SocketDir), // valid TOML, invalid value
			"pool_size = 2", "pool_size = 0", 1),
	} {
		if err := os.WriteFile(s.CfgPath, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Signal(t, syscall.SIGHUP)
		logged("reload failed; keeping the running configuration", i+1)
		log := s.Log.String()
		if !strings.Contains(log[strings.LastIndex(log, "reload failed"):], filepath.Base(s.CfgPath)) {
			t.Errorf("the reload error does not name the file: %s", log[strings.LastIndex(log, "reload failed"):])
		}
		if !twoAtOnce() {
			t.Fatalf("bad file %d: the running configuration (pool_size 2) was not kept", i+1)
		}
		selectOne(t, s)
	}
	// The clients connected before the reloads were never dropped.
	for name, c := range map[string]*pgx.Conn{"a": a, "b": b} {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("client %s, connected before the reloads: %v", name, err)
		}
	}
}

func TestShutdownOnSIGTERM(t *testing.T) {
	ctx := context.Background()
	const shutdownTimeout = 15 * time.Second
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			table := fmt.Sprintf("shutdown_%s_%d", mode, time.Now().UnixNano())
			if err := pg.Exec(ctx, appDB, fmt.Sprintf("CREATE TABLE %s (v int); GRANT ALL ON %[1]s TO %s", table, appUser)); err != nil {
				t.Fatal(err)
			}
			s := startSluiceProcess(t, poolConfig{Mode: mode, PoolSize: 2,
				General: fmt.Sprintf("shutdown_timeout = %d", shutdownTimeout.Milliseconds())})
			idle := connect(t, s)
			if _, err := idle.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			inTx := connect(t, s)
			if _, err := inTx.Exec(ctx, "BEGIN; INSERT INTO "+table+" VALUES (1)"); err != nil {
				t.Fatal(err)
			}

			s.Signal(t, syscall.SIGTERM)

			// New clients are refused: no listener, or a FATAL 57P01.
			checkFor(t, 5*time.Second, func() error {
				c, err := pgx.Connect(ctx, s.URL())
				if err == nil {
					c.Close(ctx)
					return fmt.Errorf("a new client got in during shutdown")
				}
				if code := codeOf(err); code != "" && code != "57P01" {
					t.Fatalf("new client during shutdown: %v, want refused or SQLSTATE 57P01", err)
				}
				return nil
			})
			// The idle client is told and closed.
			e, closed := readUntilClosed(t, idle, 5*time.Second)
			if !closed {
				t.Error("the idle client was not closed at shutdown")
			} else if e == nil || e.Code != "57P01" {
				t.Errorf("the idle client was closed with %+v, want FATAL 57P01", e)
			}
			// The transaction can finish.
			if _, err := inTx.Exec(ctx, "INSERT INTO "+table+" VALUES (2)"); err != nil {
				t.Fatalf("inside the open transaction during shutdown: %v", err)
			}
			committed := time.Now()
			if _, err := inTx.Exec(ctx, "COMMIT"); err != nil {
				t.Fatalf("COMMIT during shutdown: %v", err)
			}
			var n int
			if err := direct(t).QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 2 {
				t.Fatalf("committed rows: %d, %v", n, err)
			}
			// Then sluice exits, without waiting for shutdown_timeout.
			select {
			case <-s.Exited():
				if code := s.ExitCode(); code != 0 {
					t.Errorf("exit code %d; log:\n%s", code, s.Log)
				}
				t.Logf("exited %s after the COMMIT", time.Since(committed).Round(time.Millisecond))
			case <-time.After(5 * time.Second):
				t.Fatalf("sluice still running 5s after its last transaction ended (shutdown_timeout %s); log:\n%s", shutdownTimeout, s.Log)
			}
		})
	}
}

func TestUnixSocketListening(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{})
	path := filepath.Join(s.SocketDir, fmt.Sprintf(".s.PGSQL.%d", s.Port))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is %s, not a socket", path, fi.Mode())
	}
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s", s.SocketDir, s.Port, appUser, appPass, appDB))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if c.PgConn().Conn().RemoteAddr().Network() != "unix" {
		t.Fatalf("connected over %s", c.PgConn().Conn().RemoteAddr().Network())
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT $1::int * 2", 21).Scan(&n); err != nil || n != 42 {
		t.Fatalf("%d, %v", n, err)
	}
}
