package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// connectWorkers is how many clients log in at once. Enough to open ten
// thousand clients in seconds, few enough not to overrun a listen backlog.
const connectWorkers = 64

// memResult is what n idle clients cost a pooler's resident memory.
type memResult struct {
	target    string
	want      int   // clients asked for
	opened    int   // clients that logged in
	beforeKiB int64 // VmRSS with one client logged in
	afterKiB  int64 // VmRSS with that client and the opened ones
	err       string
}

// perClientKiB is the growth of resident memory per idle client.
func (r memResult) perClientKiB() float64 {
	if r.opened == 0 {
		return 0
	}
	return float64(r.afterKiB-r.beforeKiB) / float64(r.opened)
}

func (r memResult) String() string {
	if r.err != "" && r.opened == 0 {
		return fmt.Sprintf("%s: FAILED: %s", r.target, r.err)
	}
	s := fmt.Sprintf("%s: %d clients, VmRSS %d -> %d KiB, %.2f KiB per idle client",
		r.target, r.opened, r.beforeKiB, r.afterKiB, r.perClientKiB())
	if r.err != "" {
		s += fmt.Sprintf(" (%d of %d failed: %s)", r.want-r.opened, r.want, r.err)
	}
	return s
}

// measureIdleMemory logs n clients in to t and holds them idle, and reports
// how much t's process grew per client, then closes them.
//
// The baseline is taken with one client already logged in and a query run,
// so that what the first client sets up once (a server connection, the pool
// itself, PgBouncer's cached server parameters) is not charged to the n.
// Each reading waits for VmRSS to settle.
func measureIdleMemory(ctx context.Context, t target, n int) memResult {
	r := memResult{target: t.name, want: n}
	cfg, err := pgconn.ParseConfig(fmt.Sprintf(
		"host=%s port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=30",
		t.host, t.port, benchUser, benchPassword, benchDB))
	if err != nil {
		r.err = err.Error()
		return r
	}

	first, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		r.err = "first client: " + err.Error()
		return r
	}
	defer first.Close(context.Background())
	if _, err := first.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		r.err = "first client: SELECT 1: " + err.Error()
		return r
	}
	if r.beforeKiB, err = settledRSS(ctx, t.pid); err != nil {
		r.err = err.Error()
		return r
	}

	conns, err := openClients(ctx, cfg, n)
	defer closeClients(conns)
	r.opened = len(conns)
	if err != nil {
		r.err = err.Error()
	}
	if r.opened == 0 {
		return r
	}
	if r.afterKiB, err = settledRSS(ctx, t.pid); err != nil {
		r.err = err.Error()
		r.opened = 0
		return r
	}
	// The clients must still be there after the reading: a pooler that
	// dropped them would look cheap.
	if _, err := first.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		r.err = "after the idle clients logged in, SELECT 1 failed: " + err.Error()
	}
	return r
}

// openClients logs in n clients with connectWorkers at a time. It returns the
// ones that logged in and the first error, if any.
func openClients(ctx context.Context, cfg *pgconn.Config, n int) ([]*pgconn.PgConn, error) {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		conns    = make([]*pgconn.PgConn, 0, n)
		firstErr error
		failures int
		wg       sync.WaitGroup
	)
	for w := 0; w < connectWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				c, err := pgconn.ConnectConfig(ctx, cfg)
				mu.Lock()
				if err != nil {
					failures++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return conns, fmt.Errorf("%d clients failed to log in, the first with: %w", failures, firstErr)
	}
	return conns, ctx.Err()
}

// closeClients sends each client's Terminate and closes its socket.
func closeClients(conns []*pgconn.PgConn) {
	var wg sync.WaitGroup
	ch := make(chan *pgconn.PgConn)
	for w := 0; w < connectWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range ch {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.Close(ctx)
				cancel()
			}
		}()
	}
	for _, c := range conns {
		ch <- c
	}
	close(ch)
	wg.Wait()
}

// settledRSS reads pid's VmRSS every 250 ms until two readings in a row agree
// within 0.5%, or ten seconds pass, and returns the last reading.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	prev, err := rssKiB(pid)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		cur, err := rssKiB(pid)
		if err != nil {
			return 0, err
		}
		diff := cur - prev
		if diff < 0 {
			diff = -diff
		}
		if diff*200 <= cur || time.Now().After(deadline) {
			return cur, nil
		}
		prev = cur
	}
}

// rssKiB is the VmRSS line of /proc/pid/status, in KiB.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest) // "1234 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				return strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}
