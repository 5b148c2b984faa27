package main

import (
	"context"
	"fmt"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// runQueued runs the throughput workload through PgBouncer and sluice with pools of o.queuePool
// servers, fewer than the clients: most transactions wait for a server, as in the deployments
// poolers exist for, so the runs measure how a pooler hands servers from client to client as
// well as its hop. Each result's mode is the pgbench mode.
func runQueued(ctx context.Context, pg *pgtest.Postgres, o options) ([]pgbenchResult, error) {
	if o.queuePool <= 0 || o.queuePool >= o.clients {
		return nil, nil
	}
	q := o
	q.poolSize = o.queuePool
	var targets []target
	if has(o.targets, targetPgBouncer) {
		pb, err := startPgBouncer(ctx, pg, q, authMD5)
		if err != nil {
			return nil, err
		}
		defer pb.stop()
		targets = append(targets, pb.target)
	}
	if has(o.targets, targetSluice) {
		sl, err := startSluice(ctx, pg, q, targetSluice, authMD5)
		if err != nil {
			return nil, err
		}
		defer sl.stop()
		targets = append(targets, sl.target)
	}
	if len(targets) == 0 {
		return nil, nil
	}
	fmt.Printf("queued: %d clients over %d servers\n", o.clients, o.queuePool)
	return runThroughput(ctx, targets, postmasterPID(pg.DataDir), q)
}

// queuedMode is the label of a queued run's mode where it shares a table with the other runs.
func (rep report) queuedMode(mode string) string {
	return fmt.Sprintf("%s, %d servers", mode, rep.opts.queuePool)
}

var queuedHeader = []string{"target", "mode", "tps", "latency ms", "vs PgBouncer", "vs a server per client"}

// queuedRows are the rows of the queued throughput table.
func (rep report) queuedRows() [][]string {
	var rows [][]string
	for _, r := range rep.queued {
		tps, lat, vsPB, vsFull := "failed", "-", "-", "-"
		if !r.failed {
			tps, lat = fmt.Sprintf("%.0f", r.tps), fmt.Sprintf("%.3f", r.latencyMS)
			for _, b := range rep.queued {
				if b.target == targetPgBouncer && b.mode == r.mode && !b.failed && b.tps > 0 {
					vsPB = fmt.Sprintf("%.2fx", r.tps/b.tps)
				}
			}
			if full, ok := rep.find(r.target, r.mode); ok && !full.failed && full.tps > 0 {
				vsFull = fmt.Sprintf("%.2fx", r.tps/full.tps)
			}
		}
		rows = append(rows, []string{r.target, r.mode, tps, lat, vsPB, vsFull})
	}
	return rows
}
