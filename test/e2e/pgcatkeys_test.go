package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// pgcatKeysPools is a pool "app" with two users logging in to the servers as the app user: "fast"
// with idle_timeout (and extra lines) of its own, "slow" with the pool's.
func pgcatKeysPools(poolLines, fastLines string) string {
	return fmt.Sprintf(`[pools.app]
pool_mode = "transaction"
%s

[pools.app.users.0]
username = "fast"
password = "fast-pw"
server_username = %q
server_password = %q
pool_size = 2
%s

[pools.app.users.1]
username = "slow"
password = "slow-pw"
server_username = %q
server_password = %q
pool_size = 2

[pools.app.shards.0]
database = %q
servers = [["127.0.0.1", %d, "primary"]]
`, poolLines, appUser, appPass, fastLines, appUser, appPass, appDB, pg.Port)
}

// connectAs connects to pool app through sluice as user.
func connectAs(t testing.TB, s *Sluice, user, password string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, s.Addr(), appDB))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// sluiceServers counts the server connections SHOW SERVERS lists for a sluice user.
func sluiceServers(t testing.TB, adm *pgx.Conn, user string) int {
	t.Helper()
	cols, rows := adminQuery(t, adm, "SHOW SERVERS")
	n := 0
	for _, r := range rows {
		if column(t, cols, r, "user") == user {
			n++
		}
	}
	return n
}

// A user's own idle_timeout (pgcat's override) closes its idle server connection while the
// other user's, under the pool's much longer idle_timeout, stays open.
func TestPgcatUserIdleTimeoutBeatsPool(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{Pools: pgcatKeysPools("idle_timeout = 600000", "idle_timeout = 300")})
	adm := connectAdmin(t, s, "pgcat")
	for _, u := range [][2]string{{"fast", "fast-pw"}, {"slow", "slow-pw"}} {
		if _, err := connectAs(t, s, u[0], u[1]).Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 10*time.Second, func() error {
		if n := sluiceServers(t, adm, "fast"); n != 0 {
			return fmt.Errorf("user fast (idle_timeout 300 ms) still has %d server connections", n)
		}
		return nil
	})
	if n := sluiceServers(t, adm, "slow"); n == 0 {
		t.Errorf("user slow (the pool's idle_timeout, 10 min) lost its server connection")
	}
	cols, rows := adminQuery(t, adm, "SHOW CONFIG")
	want := map[string]string{"pools.app.idle_timeout": "600000", "pools.app.users.fast.idle_timeout": "300", "pools.app.users.slow.idle_timeout": "600000"}
	for _, r := range rows {
		k := column(t, cols, r, "key")
		if w, ok := want[k]; ok {
			if v := column(t, cols, r, "value"); v != w {
				t.Errorf("SHOW CONFIG %s = %s, want %s", k, v, w)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Errorf("SHOW CONFIG lacks %v", want)
	}
}

// prepared_statements_cache_size bounds the statements sluice keeps prepared on one server: a
// client preparing more than that leaves at most that many in pg_prepared_statements.
func TestPgcatPreparedStatementsCacheSize(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 1, Pool: "prepared_statements_cache_size = 3"})
	c := connect(t, s)
	for i := range 8 {
		name := fmt.Sprintf("st%d", i)
		if _, err := c.Prepare(ctx, name, fmt.Sprintf("SELECT %d + $1::int", i)); err != nil {
			t.Fatal(err)
		}
		var got int
		if err := c.QueryRow(ctx, name, 1).Scan(&got); err != nil || got != i+1 {
			t.Fatalf("%s: %d, %v", name, got, err)
		}
	}
	// pool_size 1: this runs on the server that prepared them all.
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 1 || n > 3 {
		t.Errorf("the server has %d prepared statements; want 1 to 3 (prepared_statements_cache_size = 3)", n)
	}
	// An evicted statement is prepared again when the client uses it.
	var got int
	if err := c.QueryRow(ctx, "st0", 1).Scan(&got); err != nil || got != 1 {
		t.Errorf("st0 after its eviction: %d, %v", got, err)
	}
}

// autoreload picks up a changed file without SIGHUP.
func TestPgcatAutoreload(t *testing.T) {
	pc := poolConfig{PoolSize: 3, General: "autoreload = 100"}
	s := startSluice(t, pc)
	adm := connectAdmin(t, s, "pgcat")
	poolSize := func() string {
		cols, rows := adminQuery(t, adm, "SHOW DATABASES")
		return column(t, cols, rows[0], "pool_size")
	}
	if got := poolSize(); got != "3" {
		t.Fatalf("pool_size %s, want 3", got)
	}
	pc.PoolSize = 7
	s.Rewrite(t, pc)
	checkFor(t, 10*time.Second, func() error {
		if got := poolSize(); got != "7" {
			return fmt.Errorf("pool_size %s after the file changed, want 7", got)
		}
		return nil
	})
	connect(t, s)
}

// checkout_failure_limit: a client whose checkouts keep failing (here: the pool's only server is
// taken, and query_wait_timeout is short) gets errors, then at the limit a FATAL and is
// disconnected.
func TestPgcatCheckoutFailureLimit(t *testing.T) {
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 1, General: "query_wait_timeout = 200", Pool: "checkout_failure_limit = 2"})
	holder := connect(t, s)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	c := connect(t, s)
	_, err = c.Exec(ctx, "SELECT 1")
	if codeOf(err) != "53300" {
		t.Fatalf("first failed checkout: %v, want 53300", err)
	}
	if c.IsClosed() {
		t.Fatal("disconnected after one failure, limit 2")
	}
	_, err = c.Exec(ctx, "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "checkout failure limit reached (2 / 2)") {
		t.Fatalf("second failed checkout: %v, want the limit's FATAL", err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the client still works after the limit")
	}
}

// validate_config (pgcat's default) refuses to start when a user's min_pool_size cannot be
// opened; without min_pool_size, or with validate_config = false, sluice starts.
func TestPgcatValidateConfig(t *testing.T) {
	port, err := pgtest.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	run := func(pc poolConfig) (exited bool, out string) {
		s := newSluice(t, pc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, sluiceBin, "-c", s.CfgPath).CombinedOutput()
		return ctx.Err() == nil && err != nil, string(b)
	}
	down := poolConfig{ServerPort: port, User: "min_pool_size = 1"}
	if exited, out := run(down); !exited || !strings.Contains(out, "validate_config") || !strings.Contains(out, "min_pool_size 1 cannot be opened") {
		t.Errorf("server down, min_pool_size 1: exited %v, output:\n%s", exited, out)
	}
	down.General = "validate_config = false"
	if exited, out := run(down); exited {
		t.Errorf("validate_config = false: sluice exited:\n%s", out)
	}
	if exited, out := run(poolConfig{ServerPort: port}); exited || !strings.Contains(out, "server down or misconfigured") {
		t.Errorf("server down, no min_pool_size: exited %v (want running, the failure logged):\n%s", exited, out)
	}
}

// server_round_robin hands a server pool's idle connections out in turn; without it the one
// released last is reused.
func TestPgcatServerRoundRobin(t *testing.T) {
	ctx := context.Background()
	for _, rr := range []bool{true, false} {
		t.Run(fmt.Sprint("server_round_robin=", rr), func(t *testing.T) {
			s := startSluice(t, poolConfig{PoolSize: 2, User: "min_pool_size = 2", General: fmt.Sprint("server_round_robin = ", rr)})
			adm := connectAdmin(t, s, "pgcat")
			checkFor(t, 10*time.Second, func() error {
				if n := sluiceServers(t, adm, appUser); n != 2 {
					return fmt.Errorf("%d servers open, want min_pool_size 2", n)
				}
				return nil
			})
			c := connect(t, s)
			pids := map[uint32]bool{}
			for range 6 {
				var pid uint32
				if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
					t.Fatal(err)
				}
				pids[pid] = true
			}
			if want := map[bool]int{true: 2, false: 1}[rr]; len(pids) != want {
				t.Errorf("6 transactions ran on %d servers, want %d", len(pids), want)
			}
		})
	}
}

// log_client_parameter_status_changes logs the ParameterStatus a server sends a client.
func TestPgcatLogClientParameterStatusChanges(t *testing.T) {
	s := startSluiceProcess(t, poolConfig{Pool: "log_client_parameter_status_changes = true"})
	c := connect(t, s)
	if _, err := c.Exec(context.Background(), "SET application_name = 'status-change-test'"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if log := s.Log.String(); !strings.Contains(log, "client parameter status change") || !strings.Contains(log, "status-change-test") {
			return fmt.Errorf("no log of the change:\n%s", log)
		}
		return nil
	})
}
