package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// Client auth methods of the connection-setup runs.
const (
	authMD5   = "md5"
	authSCRAM = "scram-sha-256"
)

// runConnect measures connection setup, pgbench -C -S (a new connection, a
// login, one SELECT and a disconnect per transaction), for each auth method in
// o.connect, against PgBouncer and sluice started for that method, with the CPU
// time of pgbench, the pooler and Postgres recorded. Each pooler's server
// connections stay pooled, so this is the cost of accepting and logging in a
// client. A failed run is recorded, never fatal.
func runConnect(ctx context.Context, pg *pgtest.Postgres, o options) ([]pgbenchResult, error) {
	var out []pgbenchResult
	for _, auth := range o.connect {
		type pooler struct {
			name  string
			start func() (*process, error)
		}
		var poolers []pooler
		if has(o.targets, targetPgBouncer) {
			poolers = append(poolers, pooler{targetPgBouncer, func() (*process, error) { return startPgBouncer(ctx, pg, o, auth) }})
		}
		if has(o.targets, targetSluice) {
			poolers = append(poolers, pooler{targetSluice, func() (*process, error) { return startSluice(ctx, pg, o, targetSluice, auth) }})
		}
		procs := make([]*process, len(poolers))
		for i, p := range poolers {
			proc, err := p.start()
			if err != nil {
				for _, started := range procs[:i] {
					started.stop()
				}
				return nil, err
			}
			procs[i] = proc
		}
		runs := map[string][]pgbenchResult{}
		for i := 0; i < o.runs; i++ {
			for _, p := range procs {
				fmt.Printf("pgbench -C -S -c %d -j %d -T %d on %s with %s (run %d/%d)\n",
					o.connClients, o.threads, o.seconds, p.target.name, auth, i+1, o.runs)
				profile := ""
				if o.profileDir != "" {
					profile = filepath.Join(o.profileDir, fmt.Sprintf("connect-%s-%s-%d.pprof", p.target.name, auth, i+1))
				}
				r := runPgbenchConnect(ctx, p.target, auth, o, cpuMeter{pooler: p.pid, postgres: postmasterPID(pg.DataDir)}, profile)
				if err := ctx.Err(); err != nil {
					for _, q := range procs {
						q.stop()
					}
					return nil, err
				}
				fmt.Printf("  %s\n", r)
				runs[p.target.name] = append(runs[p.target.name], r)
			}
		}
		for _, p := range procs {
			out = append(out, median(runs[p.target.name]))
			p.stop()
		}
	}
	return out, nil
}

// runPgbenchConnect runs pgbench -C -S with the simple protocol and o.connClients
// clients against t, with the CPU time of m's processes recorded and, when profile
// is not "" and t is a sluice with a profiler, a CPU profile written there; the
// result's mode is the auth method.
func runPgbenchConnect(ctx context.Context, t target, auth string, o options, m cpuMeter, profile string) pgbenchResult {
	c := o
	c.clients = o.connClients
	r := measuredRun(ctx, t, "simple", selectOnly(c, "-C"), m, profile)
	r.mode = auth
	return r
}

var connHeader = []string{"target", "auth", "connections/s", "latency ms", "vs PgBouncer"}

// connRows are the rows of the connection-setup table.
func (rep report) connRows() [][]string {
	var rows [][]string
	for _, r := range rep.conn {
		tps, lat, vs := "failed", "-", "-"
		if !r.failed {
			tps = fmt.Sprintf("%.0f", r.tps)
			lat = fmt.Sprintf("%.3f", r.latencyMS)
			for _, b := range rep.conn {
				if b.target == targetPgBouncer && b.mode == r.mode && !b.failed && b.tps > 0 {
					vs = fmt.Sprintf("%.2fx", r.tps/b.tps)
				}
			}
		}
		rows = append(rows, []string{r.target, r.mode, tps, lat, vs})
	}
	return rows
}
