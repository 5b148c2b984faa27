package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pgbenchDuration is how long each pgbench run lasts; testing.Short() shortens it.
var pgbenchDuration = 20 * time.Second

const (
	pgbenchClients  = 50
	pgbenchJobs     = 2
	pgbenchPoolSize = 5
)

// TestPgbenchTransactionPooling runs pgbench's built-in TPC-B-like script through sluice in
// transaction mode, 50 clients over 5 server connections, with each of pgbench's three query
// protocols. Every transaction must succeed, the server connections must never exceed the pool
// size, and the balances must add up afterwards: each transaction adds the same delta to one
// account, one teller and one branch and records it in the history, so the four sums are equal.
func TestPgbenchTransactionPooling(t *testing.T) {
	d := pgbenchDuration
	if testing.Short() {
		d = 3 * time.Second
	}
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			pgbenchInit(t)
			s := startPooler(t, poolConfig{Mode: "transaction", PoolSize: pgbenchPoolSize})

			// Sample until a second before pgbench ends: when it stops, clients leave in the
			// middle of transactions and sluice closes their servers, whose backends linger in
			// pg_stat_activity for a moment after sluice has freed their slots.
			peak := watchServerBackends(t)
			stopWatch := time.AfterFunc(d-time.Second, func() { peak() })
			defer stopWatch.Stop()
			out, err := pgbenchRun(t, s, mode, d)
			if got := peak(); got > pgbenchPoolSize && !againstPostgres {
				t.Errorf("%d server connections of user %s at once, want at most pool_size %d", got, appUser, pgbenchPoolSize)
			}
			if err != nil {
				t.Fatalf("pgbench -M %s: %v\n%s", mode, err, out)
			}
			checkPgbenchOutput(t, out)
			checkPgbenchBalances(t)
		})
	}
}

// pgbenchInit creates pgbench's tables at scale 1 directly on Postgres, as the app user who owns
// the app database.
func pgbenchInit(t *testing.T) {
	t.Helper()
	cmd := exec.Command(tool(t, "pgbench"), "-i", "-s", "1", "-q",
		"-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", appUser, appDB)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+appPass)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
}

// pgbenchRun runs the built-in script through s for d and returns pgbench's combined output.
func pgbenchRun(t *testing.T, s *Sluice, mode string, d time.Duration) ([]byte, error) {
	t.Helper()
	secs := int(d / time.Second)
	if secs < 1 {
		secs = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(t, "pgbench"),
		"-n", // the tables were just created: skip pgbench's VACUUM
		"-c", strconv.Itoa(pgbenchClients), "-j", strconv.Itoa(pgbenchJobs),
		"-T", strconv.Itoa(secs), "-P", "5", "-M", mode, "-b", "tpcb-like",
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", appUser, appDB)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+appPass)
	return cmd.CombinedOutput()
}

var (
	pgbenchFailedRE    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	pgbenchProcessedRE = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
)

// checkPgbenchOutput checks that pgbench ran transactions, none failed and no client aborted.
func checkPgbenchOutput(t *testing.T, out []byte) {
	t.Helper()
	if bytes.Contains(out, []byte("aborted")) {
		t.Errorf("pgbench reports aborted clients:\n%s", out)
	}
	m := pgbenchFailedRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no failed-transactions line in pgbench output:\n%s", out)
	}
	if string(m[1]) != "0" {
		t.Errorf("%s failed transactions:\n%s", m[1], out)
	}
	m = pgbenchProcessedRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no processed-transactions line in pgbench output:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n == 0 {
		t.Errorf("pgbench processed no transactions:\n%s", out)
	}
	t.Logf("pgbench: %s transactions", m[1])
}

// checkPgbenchBalances compares, directly on Postgres, the sums of the balances of accounts,
// branches and tellers with the sum of the deltas in the history.
func checkPgbenchBalances(t *testing.T) {
	t.Helper()
	var accounts, branches, tellers, history, rows int64
	err := direct(t).QueryRow(context.Background(), `SELECT
		(SELECT sum(abalance) FROM pgbench_accounts),
		(SELECT sum(bbalance) FROM pgbench_branches),
		(SELECT sum(tbalance) FROM pgbench_tellers),
		(SELECT coalesce(sum(delta), 0) FROM pgbench_history),
		(SELECT count(*) FROM pgbench_history)`).Scan(&accounts, &branches, &tellers, &history, &rows)
	if err != nil {
		t.Fatal(err)
	}
	if accounts != history || branches != history || tellers != history {
		t.Errorf("balances do not add up: accounts %d, branches %d, tellers %d, history %d (%d rows)",
			accounts, branches, tellers, history, rows)
	}
	if rows == 0 {
		t.Errorf("pgbench_history is empty")
	}
}

// watchServerBackends samples, until the test ends or the returned function is first called, how
// many server connections the app user has open on pg; the function returns the largest count
// seen.
func watchServerBackends(t *testing.T) (peak func() int) {
	t.Helper()
	c := direct(t)
	var max atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			var n int64
			err := c.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_stat_activity WHERE usename = $1", appUser).Scan(&n)
			if err == nil && n > max.Load() {
				max.Store(n)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once // a second caller waits until the first has stopped the sampler
	halt := func() {
		once.Do(func() {
			close(stop)
			<-done
		})
	}
	t.Cleanup(halt)
	return func() int {
		halt()
		return int(max.Load())
	}
}
