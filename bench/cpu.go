package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procTimes is a process's CPU time (user and system) from /proc/<pid>/stat: its own, and
// what its children that it has waited for used.
func procTimes(pid int) (self, children time.Duration, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	return parseStat(string(b))
}

// parseStat reads ppid, utime, stime, cutime and cstime from a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may hold spaces, so fields are counted after
// its closing parenthesis.
func parseStat(s string) (self, children time.Duration, ppid int, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("malformed stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("malformed stat %q", s)
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-3], 10, 64); return n }
	ppid = int(num(4))
	self = time.Duration(num(14)+num(15)) * clockTick
	children = time.Duration(num(16)+num(17)) * clockTick
	return self, children, ppid, nil
}

// treeCPU is the CPU time used by pid and every process below it, ended ones included (as far
// as they were waited for): for Postgres, the postmaster and its backends; for pgpool-II, its
// children. 0 when pid is 0 or gone.
func treeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	kids := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, _, ppid, err := procTimes(p); err == nil {
			kids[ppid] = append(kids[ppid], p)
		}
	}
	var total time.Duration
	var walk func(p int)
	walk = func(p int) {
		self, children, _, err := procTimes(p)
		if err != nil {
			return
		}
		total += self + children
		for _, k := range kids[p] {
			walk(k)
		}
	}
	walk(pid)
	return total
}

// machineBusy is the CPU time every CPU of the machine spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// pidByCmdline finds a running process whose command line contains every one of words, or 0.
func pidByCmdline(words ...string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		all := true
		for _, w := range words {
			if !strings.Contains(cmd, w) {
				all = false
				break
			}
		}
		if all {
			return p
		}
	}
	return 0
}

// cpuUse is the CPU time a run took, by who took it, and the wall time it was measured over
// (pgbench's start, connections and exit included).
type cpuUse struct {
	pgbench, pooler, postgres, redis, machine time.Duration
	wall                                      time.Duration
}

// cpuMeter samples the CPU time of the processes a run involves.
type cpuMeter struct {
	pooler, postgres, redis int // pids; 0 when not part of the run
}

type cpuSample struct {
	pooler, postgres, redis, machine time.Duration
	at                               time.Time
}

func (m cpuMeter) sample() cpuSample {
	return cpuSample{pooler: treeCPU(m.pooler), postgres: treeCPU(m.postgres), redis: treeCPU(m.redis), machine: machineBusy(),
		at: time.Now()}
}

// since is the CPU used from s to now; pgbench's own comes from its rusage.
func (m cpuMeter) since(s cpuSample, pgbench time.Duration) cpuUse {
	e := m.sample()
	return cpuUse{pgbench: pgbench, pooler: e.pooler - s.pooler, postgres: e.postgres - s.postgres,
		redis: e.redis - s.redis, machine: e.machine - s.machine, wall: e.at.Sub(s.at)}
}

// perTx formats d spread over n transactions, in microseconds.
func perTx(d time.Duration, n float64) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(d.Microseconds())/n)
}

// captureProfile fetches a CPU profile of seconds from the sluice at pprofAddr into path. It
// runs beside a pgbench run; errors are printed, not returned: a profile is a diagnostic.
func captureProfile(ctx context.Context, pprofAddr, path string, seconds int) {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Println("  profile:", err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("  profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Println("  profile:", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		fmt.Println("  profile:", err)
	}
}

// postmasterPID is the pid of the Postgres whose data directory is dataDir, or 0.
func postmasterPID(dataDir string) int {
	return pidFromFile(filepath.Join(dataDir, "postmaster.pid"))
}

// pidFromFile is the pid on the first line of a pidfile (Postgres', PgBouncer's), or 0 when
// the file is missing or does not begin with one.
func pidFromFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return parsePidFile(string(b))
}

// parsePidFile is pidFromFile on the file's content.
func parsePidFile(s string) int {
	line, _, _ := strings.Cut(s, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// measuredRun is runWorkload with the CPU time of m's processes recorded, and, when profile is
// not "" and t is a sluice with a profiler, a CPU profile of the run written there.
func measuredRun(ctx context.Context, t target, mode string, w workload, m cpuMeter, profile string) pgbenchResult {
	done := make(chan struct{})
	if profile != "" && t.pprofAddr != "" && w.seconds > 2 {
		go func() {
			defer close(done)
			time.Sleep(time.Second) // past pgbench's connection setup
			captureProfile(ctx, t.pprofAddr, profile, w.seconds-2)
		}()
	} else {
		close(done)
	}
	s := m.sample()
	r := runWorkload(ctx, t, mode, w)
	r.cpu, r.cpuKnown = m.since(s, r.pgbenchCPU), true
	<-done
	return r
}

// cpuTable is a table of CPU time per transaction: which columns it has besides target, mode
// and the times every section measures.
type cpuTable struct {
	// workload and redis are the cache and sharding sections' columns: the pgbench workload,
	// and redis-server's CPU.
	workload, redis bool
	// vsPgBouncer adds the pooler's CPU per transaction against PgBouncer's in the same mode
	// (see cpuVsPgBouncer).
	vsPgBouncer bool
}

// sectionCPU is the CPU table of the cache and sharding sections.
var sectionCPU = cpuTable{workload: true, redis: true}

// left is the number of columns of names, aligned left; the others are numbers.
func (c cpuTable) left() int {
	if c.workload {
		return 3
	}
	return 2
}

func (c cpuTable) header() []string {
	h := []string{"target", "mode"}
	if c.workload {
		h = []string{"workload", "mode", "target"}
	}
	h = append(h, "pgbench", "pooler")
	if c.redis {
		h = append(h, "redis")
	}
	h = append(h, "postgres", "rest", "all", "CPUs busy")
	if c.vsPgBouncer {
		h = append(h, "pooler CPU vs PgBouncer")
	}
	return h
}

// rows are the CPU time per transaction, in microseconds, of each run of results with its CPU
// known: pgbench's own, the pooler's (sluice, PgBouncer, or pgpool-II's processes; "-" for
// direct), redis-server's, Postgres' (postmaster and backends), and the rest of the machine's
// busy time (the kernel's network work not charged to a process, other programs). CPUs busy
// is the machine's busy time over the wall time it was measured in, out of cpus.
func (c cpuTable) rows(results []pgbenchResult, cpus int) [][]string {
	var rows [][]string
	for _, r := range results {
		if !cpuMeasured(r) {
			continue
		}
		u, n := r.cpu, r.transactions
		rest := u.machine - u.pgbench - u.pooler - u.redis - u.postgres
		pooler, redis := perTx(u.pooler, n), perTx(u.redis, n)
		if r.target == targetDirect {
			pooler = "-"
		}
		if u.redis == 0 {
			redis = "-"
		}
		row := []string{r.target, r.mode}
		if c.workload {
			row = []string{r.workload, r.mode, r.target}
		}
		row = append(row, perTx(u.pgbench, n), pooler)
		if c.redis {
			row = append(row, redis)
		}
		busy := "-"
		if u.wall > 0 {
			busy = fmt.Sprintf("%.2f of %d", u.machine.Seconds()/u.wall.Seconds(), cpus)
		}
		row = append(row, perTx(u.postgres, n), perTx(max(rest, 0), n), perTx(u.machine, n), busy)
		if c.vsPgBouncer {
			row = append(row, cpuVsPgBouncer(r, results))
		}
		rows = append(rows, row)
	}
	return rows
}

// cpuMeasured reports whether r has CPU times to divide among its transactions.
func cpuMeasured(r pgbenchResult) bool {
	return r.cpuKnown && !r.failed && r.transactions > 0
}

// cpuVsPgBouncer is PgBouncer's pooler CPU per transaction over r's, from the run of results
// with PgBouncer in r's workload and mode, as "1.25x" (above 1: r's pooler spends less than
// PgBouncer), or "-" when r is direct or either has no pooler CPU to compare.
func cpuVsPgBouncer(r pgbenchResult, results []pgbenchResult) string {
	if r.target == targetDirect || !cpuMeasured(r) || r.cpu.pooler <= 0 {
		return "-"
	}
	for _, b := range results {
		if b.target != targetPgBouncer || b.mode != r.mode || b.workload != r.workload || !cpuMeasured(b) || b.cpu.pooler <= 0 {
			continue
		}
		base := b.cpu.pooler.Seconds() / b.transactions
		return fmt.Sprintf("%.2fx", base/(r.cpu.pooler.Seconds()/r.transactions))
	}
	return "-"
}
