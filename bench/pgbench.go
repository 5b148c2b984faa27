package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// pgbenchResult is the outcome of one target and mode: the median of the
// runs when all of them succeeded, or why one did not.
type pgbenchResult struct {
	target    string
	mode      string
	workload  string  // the cache and sharding sections' workload; "" for pgbench -S
	tps       float64 // without initial connection time
	latencyMS float64 // average latency
	lowTPS    float64 // the lowest and highest tps of the runs
	highTPS   float64
	failed    bool
	reason    string // why it failed: the first error pgbench printed, or its exit status

	// cache counts the lookups of a caching target during the run, when cacheKnown.
	cache      hitCounts
	cacheKnown bool

	transactions float64       // transactions the run processed
	pgbenchCPU   time.Duration // pgbench's own CPU time (user and system)
	// cpu is the CPU time of the processes of the run, when cpuKnown.
	cpu      cpuUse
	cpuKnown bool
}

func (r pgbenchResult) String() string {
	if r.failed {
		return fmt.Sprintf("%-9s %-8s FAILED: %s", r.target, r.mode, r.reason)
	}
	s := fmt.Sprintf("%-9s %-8s %10.0f tps  %.3f ms", r.target, r.mode, r.tps, r.latencyMS)
	if r.cacheKnown {
		s += fmt.Sprintf("  hit ratio %.3f (%d hits, %d misses, %d bypassed)", r.cache.ratio(),
			r.cache.hits, r.cache.misses, r.cache.bypassed)
	}
	return s
}

// execOutput runs a program and returns what it printed.
func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// runThroughput runs pgbench -S in every mode against every target, o.runs
// times, interleaving targets so that drift on a shared machine spreads over
// all of them, with the CPU time of pgbench, the target's pooler and the
// Postgres whose postmaster is postgres recorded. A failed run is recorded,
// never fatal; only an interrupt or a pooler that died stops the loop.
func runThroughput(ctx context.Context, targets []target, postgres int, o options) ([]pgbenchResult, error) {
	type key struct{ target, mode string }
	runs := map[key][]pgbenchResult{}
	for i := 0; i < o.runs; i++ {
		for _, mode := range o.modes {
			for _, t := range targets {
				fmt.Printf("pgbench -S -M %s -c %d -j %d -T %d on %s (run %d/%d)\n",
					mode, o.clients, o.threads, o.seconds, t.name, i+1, o.runs)
				r := measuredRun(ctx, t, mode, selectOnly(o), cpuMeter{pooler: t.pid, postgres: postgres}, "")
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				fmt.Printf("  %s\n", r)
				runs[key{t.name, mode}] = append(runs[key{t.name, mode}], r)
			}
		}
	}
	var out []pgbenchResult
	for _, mode := range o.modes {
		for _, t := range targets {
			out = append(out, median(runs[key{t.name, mode}]))
		}
	}
	return out, nil
}

// median returns the run with the median tps (of an even number of runs, the
// lower of the two in the middle), with the range of all runs, or the first
// failure.
func median(rs []pgbenchResult) pgbenchResult {
	for _, r := range rs {
		if r.failed {
			return r
		}
	}
	sorted := append([]pgbenchResult(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].tps < sorted[j].tps })
	m := sorted[(len(sorted)-1)/2]
	m.lowTPS, m.highTPS = sorted[0].tps, sorted[len(sorted)-1].tps
	return m
}

// spread is how far apart the runs were, relative to the median: 0.1 means
// the highest run was 10% of the median above the lowest.
func (r pgbenchResult) spread() float64 {
	if r.failed || r.tps == 0 {
		return 0
	}
	return (r.highTPS - r.lowTPS) / r.tps
}

var (
	// Under -C pgbench counts each transaction's connection: "including reconnection times".
	tpsRE     = regexp.MustCompile(`tps = ([0-9.]+) \((?:without initial connection time|including reconnection times)\)`)
	latencyRE = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	failedRE  = regexp.MustCompile(`number of failed transactions: ([0-9]+)`)
	// processedRE is the count of transactions of the whole run.
	processedRE = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)

// selectOnly is the pooler section's pgbench -S workload with o's clients, threads and
// seconds, and extra pgbench arguments.
func selectOnly(o options, extra ...string) workload {
	return workload{script: []string{"-S"}, clients: o.clients, threads: o.threads, seconds: o.seconds, extra: extra}
}

// workload is what one pgbench run does: its script options (-S, or -f file@weight ...),
// clients, threads and duration, and extra arguments (-l, -D ...).
type workload struct {
	script           []string
	clients, threads int
	seconds          int // -T; with transactions set, -t instead
	transactions     int // -t, per client
	extra            []string
}

// runWorkload runs pgbench with w against t in mode and reads its summary. The run fails if
// pgbench exits non-zero (a client aborted, as PgBouncer's do with -M prepared in transaction
// mode), reports failed transactions, or prints no tps.
func runWorkload(ctx context.Context, t target, mode string, w workload) pgbenchResult {
	r := pgbenchResult{target: t.name, mode: mode}
	limit := time.Duration(w.seconds)*time.Second + time.Minute
	length := []string{"-T", strconv.Itoa(w.seconds)}
	if w.transactions > 0 {
		limit = 10 * time.Minute
		length = []string{"-t", strconv.Itoa(w.transactions)}
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	args := append(connArgs(t), w.extra...)
	args = append(args, "-n")
	args = append(args, w.script...)
	args = append(args, "-M", mode, "-c", strconv.Itoa(w.clients), "-j", strconv.Itoa(w.threads))
	args = append(args, length...)
	args = append(args, t.database())
	cmd := pgbenchCommand(ctx, args...)
	out, err := cmd.CombinedOutput()
	text := string(out)
	if cmd.ProcessState != nil {
		r.pgbenchCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}

	if m := tpsRE.FindStringSubmatch(text); m != nil {
		r.tps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := latencyRE.FindStringSubmatch(text); m != nil {
		r.latencyMS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := processedRE.FindStringSubmatch(text); m != nil {
		r.transactions, _ = strconv.ParseFloat(m[1], 64)
	}
	var exitErr *exec.ExitError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.failed = true
		r.reason = firstError(text, fmt.Sprintf("pgbench was still running %s after it began, and was killed", limit))
	case err != nil && errors.As(err, &exitErr):
		r.failed = true
		r.reason = firstError(text, fmt.Sprintf("pgbench exited with status %d", exitErr.ExitCode()))
	case err != nil:
		r.failed = true
		r.reason = err.Error()
	case r.tps == 0:
		r.failed = true
		r.reason = firstError(text, "pgbench printed no tps")
	}
	if m := failedRE.FindStringSubmatch(text); m != nil && m[1] != "0" {
		r.failed = true
		r.reason = firstError(text, m[0])
	}
	if t.pid != 0 && r.failed && processGone(t.pid) {
		r.reason += fmt.Sprintf(" (%s is no longer running)", t.name)
	}
	return r
}

// firstError picks the first line of pgbench output that reports an error,
// shortened, or def when there is none.
func firstError(out, def string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "ERROR") || strings.Contains(line, "FATAL") ||
			strings.Contains(line, "error") || strings.Contains(line, "aborted") {
			line = strings.TrimSpace(line)
			if len(line) > 160 {
				line = line[:160] + "..."
			}
			return line
		}
	}
	return def
}

// pgbenchInit creates and loads the pgbench tables through t.
func pgbenchInit(ctx context.Context, t target, scale int) error {
	args := append(connArgs(t), "-i", "-q", "-s", strconv.Itoa(scale), t.database())
	out, err := pgbenchCommand(ctx, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	return nil
}

func connArgs(t target) []string {
	return []string{"-h", t.host, "-p", strconv.Itoa(t.port), "-U", benchUser}
}

// pgbenchCommand is pgbench from the Postgres that pgtest runs, falling back
// to the one on PATH. It runs in its own process group so that a Ctrl-C
// reaches only the bench, which kills it through ctx.
func pgbenchCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, pgBin("pgbench"), args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+benchPassword)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// processGone reports whether pid no longer exists.
func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// pgBin is the path of a Postgres program in pgtest's BinDir, or its bare
// name, to be found on PATH, when it is not there.
func pgBin(name string) string {
	dir, err := pgtest.BinDir()
	if err != nil {
		return name
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return name
	}
	return path
}
