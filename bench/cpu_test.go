package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// cpuRun is a measured run of n transactions whose pooler and Postgres used the given CPU and
// the machine twice their sum, in 3 seconds.
func cpuRun(target, mode string, n float64, pgbench, pooler, postgres time.Duration) pgbenchResult {
	return pgbenchResult{target: target, mode: mode, tps: n / 3, transactions: n, cpuKnown: true,
		cpu: cpuUse{pgbench: pgbench, pooler: pooler, postgres: postgres, machine: 2 * (pgbench + pooler + postgres), wall: 3 * time.Second}}
}

// TestCPUTableColumns: the cache and sharding sections' table keeps its columns; the pooler
// section's has no workload or redis column and ends with the ratio to PgBouncer.
func TestCPUTableColumns(t *testing.T) {
	for _, c := range []struct {
		name  string
		table cpuTable
		left  int
		want  []string
	}{
		{"sections", sectionCPU, 3, []string{"workload", "mode", "target", "pgbench", "pooler", "redis", "postgres", "rest", "all", "CPUs busy"}},
		{"pooler", poolerCPU, 2, []string{"target", "mode", "pgbench", "pooler", "postgres", "rest", "all", "CPUs busy", "pooler CPU vs PgBouncer"}},
		{"plain", cpuTable{}, 2, []string{"target", "mode", "pgbench", "pooler", "postgres", "rest", "all", "CPUs busy"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.table.header(); !slices.Equal(got, c.want) {
				t.Errorf("header %q, want %q", got, c.want)
			}
			if got := c.table.left(); got != c.left {
				t.Errorf("left %d, want %d", got, c.left)
			}
			r := cpuRun(targetSluice, "simple", 1000, time.Second, time.Second, time.Second)
			r.workload = "point"
			rows := c.table.rows([]pgbenchResult{r}, 2)
			if len(rows) != 1 || len(rows[0]) != len(c.want) {
				t.Errorf("rows %q do not match the header's %d columns", rows, len(c.want))
			}
		})
	}
}

// TestCPURows: per-transaction microseconds by process, the rest of the machine, the share of
// CPUs busy over the measured wall time, "-" for what a run does not have, and no row for a
// run without CPU times.
func TestCPURows(t *testing.T) {
	ms := time.Millisecond
	bouncer := cpuRun(targetPgBouncer, "simple", 1000, 100*ms, 50*ms, 200*ms)
	bouncer.cpu.machine = 400 * ms // 50ms of it nobody's
	unclocked := cpuRun(targetSluice, "-C scram-sha-256", 100, 100*ms, 20*ms, 100*ms)
	unclocked.cpu.wall = 0 // no wall time to divide the machine's busy time by
	results := []pgbenchResult{
		cpuRun(targetDirect, "simple", 1000, 100*ms, 0, 200*ms),
		bouncer,
		cpuRun(targetSluice, "simple", 1000, 100*ms, 100*ms, 200*ms),
		cpuRun(targetSluice, "extended", 1000, 100*ms, 100*ms, 200*ms), // no PgBouncer run to compare
		{target: targetPgBouncer, mode: "prepared", failed: true, cpuKnown: true},
		{target: targetSluice, mode: "prepared", tps: 10, transactions: 30}, // CPU not measured
		cpuRun(targetPgBouncer, "-C md5", 100, 100*ms, 40*ms, 100*ms),
		cpuRun(targetSluice, "-C md5", 100, 100*ms, 20*ms, 100*ms),
		unclocked,
	}
	want := [][]string{
		{"direct", "simple", "100", "-", "200", "300", "600", "0.20 of 2", "-"},
		{"pgbouncer", "simple", "100", "50", "200", "50", "400", "0.13 of 2", "1.00x"},
		{"sluice", "simple", "100", "100", "200", "400", "800", "0.27 of 2", "0.50x"},
		{"sluice", "extended", "100", "100", "200", "400", "800", "0.27 of 2", "-"},
		{"pgbouncer", "-C md5", "1000", "400", "1000", "2400", "4800", "0.16 of 2", "1.00x"},
		{"sluice", "-C md5", "1000", "200", "1000", "2200", "4400", "0.15 of 2", "2.00x"},
		{"sluice", "-C scram-sha-256", "1000", "200", "1000", "2200", "4400", "-", "-"},
	}
	got := poolerCPU.rows(results, 2)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d:\n%q", len(got), len(want), got)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("row %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestCPUVsPgBouncer: PgBouncer's pooler CPU per transaction over the row's, matched by mode
// and workload, with transactions counted, not CPU time alone.
func TestCPUVsPgBouncer(t *testing.T) {
	ms := time.Millisecond
	bouncer := cpuRun(targetPgBouncer, "simple", 1000, 0, 60*ms, 0)
	for _, c := range []struct {
		name    string
		r       pgbenchResult
		results []pgbenchResult
		want    string
	}{
		{"cheaper than PgBouncer", cpuRun(targetSluice, "simple", 1000, 0, 30*ms, 0), []pgbenchResult{bouncer}, "2.00x"},
		{"dearer than PgBouncer", cpuRun(targetSluice, "simple", 1000, 0, 120*ms, 0), []pgbenchResult{bouncer}, "0.50x"},
		{"per transaction, not per run", cpuRun(targetSluice, "simple", 2000, 0, 120*ms, 0), []pgbenchResult{bouncer}, "1.00x"},
		{"PgBouncer itself", bouncer, []pgbenchResult{bouncer}, "1.00x"},
		{"direct", cpuRun(targetDirect, "simple", 1000, 0, 0, 0), []pgbenchResult{bouncer}, "-"},
		{"another mode", cpuRun(targetSluice, "extended", 1000, 0, 30*ms, 0), []pgbenchResult{bouncer}, "-"},
		{"no PgBouncer run", cpuRun(targetSluice, "simple", 1000, 0, 30*ms, 0), nil, "-"},
		{"PgBouncer failed", cpuRun(targetSluice, "simple", 1000, 0, 30*ms, 0),
			[]pgbenchResult{{target: targetPgBouncer, mode: "simple", failed: true, cpuKnown: true, transactions: 5}}, "-"},
		{"no pooler CPU counted", cpuRun(targetSluice, "simple", 1000, 0, 0, 0), []pgbenchResult{bouncer}, "-"},
	} {
		if got := cpuVsPgBouncer(c.r, c.results); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// TestParsePidFile: the pid on a pidfile's first line (Postgres writes more lines after it).
func TestParsePidFile(t *testing.T) {
	for _, c := range []struct {
		content string
		want    int
	}{
		{"4242\n", 4242},
		{"4242", 4242},
		{" 4242 \n/var/lib/postgresql/data\n1700000000\n5432\n", 4242},
		{"", 0},
		{"\n4242\n", 0},
		{"pgbouncer\n", 0},
		{"-1\n", 0},
	} {
		if got := parsePidFile(c.content); got != c.want {
			t.Errorf("parsePidFile(%q) = %d, want %d", c.content, got, c.want)
		}
	}
}

// TestMedianKeepsCPU: the median run is reported with its own CPU times, not another run's.
func TestMedianKeepsCPU(t *testing.T) {
	ms := time.Millisecond
	rs := []pgbenchResult{
		cpuRun(targetSluice, "simple", 3000, 0, 30*ms, 0),
		cpuRun(targetSluice, "simple", 1000, 0, 10*ms, 0),
		cpuRun(targetSluice, "simple", 2000, 0, 20*ms, 0),
	}
	if m := median(rs); m.transactions != 2000 || m.cpu.pooler != 20*ms || !m.cpuKnown {
		t.Errorf("median %+v, want the run of 2000 transactions and 20ms", m)
	}
}

// TestPoolerReportCPU: the pooler section's report has the CPU table, the connection-setup
// runs marked -C, and says why the pooler's figure is the one to compare by.
func TestPoolerReportCPU(t *testing.T) {
	ms := time.Millisecond
	rep := report{
		opts: options{clients: 32, threads: 2, seconds: 3, runs: 1, poolSize: 32, connClients: 8,
			targets: []string{targetDirect, targetPgBouncer, targetSluice}},
		tps: []pgbenchResult{cpuRun(targetPgBouncer, "simple", 1000, 0, 50*ms, 0), cpuRun(targetSluice, "simple", 1000, 0, 40*ms, 0)},
		conn: []pgbenchResult{cpuRun(targetPgBouncer, authMD5, 100, 0, 40*ms, 0),
			cpuRun(targetSluice, authMD5, 100, 0, 50*ms, 0)},
	}
	md, text := rep.markdown(), rep.text()
	for _, want := range []string{"### CPU per transaction", "| target | mode | pgbench | pooler | postgres | rest | all | CPUs busy | pooler CPU vs PgBouncer |",
		"| sluice | simple | 0 | 40 | 0 | 40 | 80 | 0.03 of ", " | 1.25x |", "| sluice | -C md5 | 0 | 500 | 0 | 500 | 1000 | 0.03 of ", " | 0.80x |",
		"least disturbed by other load"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if !strings.Contains(text, "CPU per transaction, µs") || !strings.Contains(text, "pooler CPU vs PgBouncer") {
		t.Errorf("text lacks the CPU table:\n%s", text)
	}
	rep.tps, rep.conn = []pgbenchResult{{target: targetSluice, mode: "simple", tps: 10}}, nil
	if md := rep.markdown(); strings.Contains(md, "CPU per transaction") || strings.Contains(md, "least disturbed") {
		t.Errorf("a report without CPU times has a CPU table or note:\n%s", md)
	}
}
