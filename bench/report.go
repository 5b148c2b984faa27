package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The generated part of BENCHMARKS.md lies between these markers; the text
// around them is written by hand and kept.
const (
	markerStart = "<!-- bench:start -->"
	markerEnd   = "<!-- bench:end -->"
)

// report is everything one run measured, and where.
type report struct {
	opts     options
	started  time.Time
	duration time.Duration
	tps      []pgbenchResult
	queued   []pgbenchResult // the runs with fewer servers than clients (runQueued)
	conn     []pgbenchResult // connection setup: mode is the auth method
	mem      []memResult
	machine  machine
	command  string
	load     string // /proc/loadavg's 1, 5 and 15 minute averages when the run started
	loadEnd  string // and when it ended, the bench's own load included
}

// machine describes where the figures were measured.
type machine struct {
	cpus      string
	cpuModel  string
	memory    string
	kernel    string
	goVersion string
	postgres  string
	pgbouncer string
	source    string // the commit of the working tree, which bin/sluice is built from
}

// describeMachine describes this machine and the checkout; out, the file the bench writes, does
// not count as a change to the checkout.
func describeMachine(out string) machine {
	m := machine{
		cpus:      strconv.Itoa(runtime.NumCPU()),
		cpuModel:  "unknown",
		memory:    "unknown",
		kernel:    "unknown",
		goVersion: runtime.Version(),
		postgres:  "unknown",
		pgbouncer: pgbouncerVersion(),
		source:    sourceVersion(out),
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		m.cpus = strings.TrimSpace(string(out))
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.cpuModel = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(pgBin("postgres"), "--version").Output(); err == nil {
		m.postgres = strings.TrimSpace(string(out))
	}
	return m
}

// procField is the value of the first "name : value" line of a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// find returns the result for target and mode.
func (rep report) find(target, mode string) (pgbenchResult, bool) {
	for _, r := range rep.tps {
		if r.target == target && r.mode == mode {
			return r, true
		}
	}
	return pgbenchResult{}, false
}

// ratio is r's tps over the tps of the same mode on base, as "0.87x", or "-"
// when either is missing or failed.
func (rep report) ratio(r pgbenchResult, base string) string {
	b, ok := rep.find(base, r.mode)
	if !ok || b.failed || r.failed || b.tps == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r.tps/b.tps)
}

// tpsHeader and tpsRows are the throughput table; with several runs per row
// it shows their range too.
func (rep report) tpsHeader() []string {
	h := []string{"target", "mode", "tps", "latency ms", "vs direct", "vs PgBouncer"}
	if rep.vsSluice() {
		h = append(h, "vs sluice")
	}
	if rep.opts.runs > 1 {
		h = append(h, "range of runs")
	}
	return h
}

// vsSluice reports whether the throughput table compares variants of sluice (the parser on,
// plugins on) with plain sluice.
func (rep report) vsSluice() bool {
	return has(rep.opts.targets, targetSluiceParser) || has(rep.opts.targets, targetSluicePlugins) ||
		has(rep.opts.targets, targetSluiceOneCPU)
}

func (rep report) tpsRows() [][]string {
	var rows [][]string
	for _, r := range rep.tps {
		tps, lat, span := "failed", "-", "-"
		if !r.failed {
			tps = fmt.Sprintf("%.0f", r.tps)
			lat = fmt.Sprintf("%.3f", r.latencyMS)
			span = fmt.Sprintf("%.0f-%.0f", r.lowTPS, r.highTPS)
		}
		row := []string{r.target, r.mode, tps, lat, rep.ratio(r, targetDirect), rep.ratio(r, targetPgBouncer)}
		if rep.vsSluice() {
			vs := "-"
			if r.target != targetSluice && has(sluiceTargets, r.target) {
				vs = rep.ratio(r, targetSluice)
			}
			row = append(row, vs)
		}
		if rep.opts.runs > 1 {
			row = append(row, span)
		}
		rows = append(rows, row)
	}
	return rows
}

// memRows are the rows of the memory table.
func (rep report) memRows() [][]string {
	var rows [][]string
	for _, m := range rep.mem {
		if m.opened == 0 {
			rows = append(rows, []string{m.target, fmt.Sprintf("0 of %d", m.want), "-", "-", "failed"})
			continue
		}
		clients := strconv.Itoa(m.opened)
		if m.opened != m.want {
			clients = fmt.Sprintf("%d of %d", m.opened, m.want)
		}
		rows = append(rows, []string{m.target, clients,
			fmt.Sprintf("%.1f", float64(m.beforeKiB)/1024), fmt.Sprintf("%.1f", float64(m.afterKiB)/1024),
			fmt.Sprintf("%.2f", m.perClientKiB())})
	}
	return rows
}

// poolerCPU is the pooler section's CPU table: no workload or redis-server, and each pooler's
// CPU against PgBouncer's.
var poolerCPU = cpuTable{vsPgBouncer: true}

// cpuResults are the runs of the CPU table: the throughput runs, then the connection-setup
// runs with "-C " before their auth method, the mode they are compared by.
func (rep report) cpuResults() []pgbenchResult {
	rs := append([]pgbenchResult(nil), rep.tps...)
	for _, r := range rep.queued {
		r.mode = rep.queuedMode(r.mode)
		rs = append(rs, r)
	}
	for _, r := range rep.conn {
		r.mode = "-C " + r.mode
		rs = append(rs, r)
	}
	return rs
}

// cpuRows are the rows of the CPU table.
func (rep report) cpuRows() [][]string {
	return poolerCPU.rows(rep.cpuResults(), runtime.NumCPU())
}

var memHeader = []string{"target", "idle clients", "RSS before MiB", "RSS after MiB", "KiB per client"}

// failures lists why each failed measurement failed.
func (rep report) failures() []string {
	var out []string
	for _, r := range rep.tps {
		if r.failed {
			out = append(out, fmt.Sprintf("%s -M %s: %s", r.target, r.mode, r.reason))
		}
	}
	for _, r := range rep.conn {
		if r.failed {
			out = append(out, fmt.Sprintf("%s -C with %s: %s", r.target, r.mode, r.reason))
		}
	}
	for _, m := range rep.mem {
		if m.err != "" {
			out = append(out, fmt.Sprintf("%s idle clients: %s", m.target, m.err))
		}
	}
	return out
}

// text is the report for the terminal.
func (rep report) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pgbench -S -c %d -j %d -T %d, scale %d, pool size %d\n\n",
		rep.opts.clients, rep.opts.threads, rep.opts.seconds, rep.opts.scale, rep.opts.poolSize)
	writeAligned(&b, rep.tpsHeader(), rep.tpsRows())
	if len(rep.queued) > 0 {
		fmt.Fprintf(&b, "\nqueued: the same with pools of %d servers\n\n", rep.opts.queuePool)
		writeAligned(&b, queuedHeader, rep.queuedRows())
	}
	if len(rep.conn) > 0 {
		fmt.Fprintf(&b, "\npgbench -C -S -c %d -j %d -T %d: a new connection and login per transaction\n\n",
			rep.opts.connClients, rep.opts.threads, rep.opts.seconds)
		writeAligned(&b, connHeader, rep.connRows())
	}
	if rows := rep.cpuRows(); len(rows) > 0 {
		b.WriteString("\nCPU per transaction, µs (the median run's; -C: connection setup)\n\n")
		writeAlignedLeft(&b, poolerCPU.left(), poolerCPU.header(), rows)
	}
	if len(rep.mem) > 0 {
		b.WriteString("\n")
		writeAligned(&b, memHeader, rep.memRows())
	}
	if f := rep.failures(); len(f) > 0 {
		b.WriteString("\nfailures:\n")
		for _, s := range f {
			b.WriteString("  " + s + "\n")
		}
	}
	return b.String()
}

func writeAligned(b *strings.Builder, header []string, rows [][]string) {
	writeAlignedLeft(b, 2, header, rows)
}

// writeAlignedLeft writes a table for the terminal, its first left columns aligned left and the
// others (numbers) right.
func writeAlignedLeft(b *strings.Builder, left int, header []string, rows [][]string) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	line := func(cells []string) {
		var l strings.Builder
		for i, c := range cells {
			if i < left {
				fmt.Fprintf(&l, "%-*s  ", widths[i], c)
			} else {
				fmt.Fprintf(&l, "%*s  ", widths[i], c)
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	line(header)
	for _, row := range rows {
		line(row)
	}
}

func writeMarkdownTable(b *strings.Builder, header []string, rows [][]string) {
	writeMarkdownTableLeft(b, 2, header, rows)
}

// writeMarkdownTableLeft writes a Markdown table, its first left columns aligned left.
func writeMarkdownTableLeft(b *strings.Builder, left int, header []string, rows [][]string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for i := range header {
		if i < left {
			b.WriteString("---|")
		} else {
			b.WriteString("--:|")
		}
	}
	b.WriteString("\n")
	for _, row := range rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
}

// markdown is the generated section of BENCHMARKS.md, markers included.
func (rep report) markdown() string {
	o, m := rep.opts, rep.machine
	var b strings.Builder
	b.WriteString(markerStart + "\n")
	b.WriteString("<!-- Generated by `go run ./bench`; edits between these markers are overwritten. -->\n\n")
	fmt.Fprintf(&b, "Measured %s (%s in all).\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"), rep.duration.Round(time.Second))
	fmt.Fprintf(&b, "```\n%s\n```\n\n", rep.command)

	fmt.Fprintf(&b, "### Throughput: `pgbench -S -c %d -j %d -T %d`, scale %d\n\n", o.clients, o.threads, o.seconds, o.scale)
	if o.runs > 1 {
		fmt.Fprintf(&b, "Median of %d runs per row.\n\n", o.runs)
	}
	writeMarkdownTable(&b, rep.tpsHeader(), rep.tpsRows())

	if len(rep.queued) > 0 {
		fmt.Fprintf(&b, "\n### Throughput with clients waiting for servers: the same, pools of %d servers\n\n", o.queuePool)
		fmt.Fprintf(&b, "%d clients share %d server connections, so most transactions wait for a server "+
			"another client releases: what pooling is for. The last column compares each row with the "+
			"same pooler's row above, where every client had a server.\n\n", o.clients, o.queuePool)
		writeMarkdownTable(&b, queuedHeader, rep.queuedRows())
	}

	if len(rep.conn) > 0 {
		fmt.Fprintf(&b, "\n### Connection setup: `pgbench -C -S -c %d -j %d -T %d`\n\n", o.connClients, o.threads, o.seconds)
		b.WriteString("Every transaction opens a new connection and logs in (the auth column) before its SELECT; " +
			"the server connections stay pooled.\n\n")
		writeMarkdownTable(&b, connHeader, rep.connRows())
	}
	if rows := rep.cpuRows(); len(rows) > 0 {
		b.WriteString("\n### CPU per transaction\n\n")
		if o.runs > 1 {
			b.WriteString("Of the median run of each row. ")
		}
		b.WriteString("CPU time per transaction in microseconds, by process: pgbench's own, the pooler's " +
			"(PgBouncer's or sluice's process), Postgres' (postmaster and backends), the rest of the machine's busy " +
			"time (kernel work not charged to a process, other programs), and all of it; CPUs busy is busy time " +
			"over wall time. The `-C` rows are the connection-setup runs, where a transaction is a connection, " +
			"its login and one SELECT. \"pooler CPU vs PgBouncer\" is PgBouncer's pooler figure over the row's, " +
			"in the same mode: above 1.00x the pooler spends less CPU per transaction than PgBouncer.\n\n")
		writeMarkdownTableLeft(&b, poolerCPU.left(), poolerCPU.header(), rows)
	}
	if len(rep.mem) > 0 {
		fmt.Fprintf(&b, "\n### Memory: %d idle clients, logged in with md5\n\n", o.idle)
		writeMarkdownTable(&b, memHeader, rep.memRows())
	}
	if f := rep.failures(); len(f) > 0 {
		b.WriteString("\nFailures:\n\n")
		for _, s := range f {
			b.WriteString("- " + strings.ReplaceAll(s, "\n", " ") + "\n")
		}
	}

	b.WriteString("\n### Machine\n\n")
	fmt.Fprintf(&b, "- CPUs (`nproc`): %s, %s\n", m.cpus, m.cpuModel)
	fmt.Fprintf(&b, "- Memory: %s\n", m.memory)
	fmt.Fprintf(&b, "- Kernel: %s\n", m.kernel)
	fmt.Fprintf(&b, "- Go: %s\n", m.goVersion)
	fmt.Fprintf(&b, "- Postgres: %s\n", m.postgres)
	fmt.Fprintf(&b, "- PgBouncer: %s\n", m.pgbouncer)
	if has(o.targets, targetSluice) {
		fmt.Fprintf(&b, "- sluice: `%s`; the checkout was at %s (`make bench` builds the binary from it first)\n",
			o.sluiceBin, m.source)
	}
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) before the run: %s; at its end, the bench's own load included: %s\n",
		rep.load, rep.loadEnd)

	b.WriteString("\n### What these figures mean\n\n")
	b.WriteString(rep.note())
	b.WriteString(markerEnd + "\n")
	return b.String()
}

// note says, in a few sentences, how far the figures can be trusted.
func (rep report) note() string {
	o, m := rep.opts, rep.machine
	var b strings.Builder
	fmt.Fprintf(&b, "- pgbench, the pooler and Postgres share this machine's %s CPUs, over loopback TCP. "+
		"Every CPU cycle a pooler spends is taken from Postgres and pgbench, so \"vs direct\" is the "+
		"throughput left after paying for the extra hop (the pooler's own socket reads and writes "+
		"and the wakeups they cost), not what the pooler could do on hardware of its own. "+
		"With %d pgbench clients and pools of %d, no client ever waits for a server: "+
		"the first table measures a pooler's hop; the queued runs, with fewer servers than clients, "+
		"add the handing of servers from client to client.\n",
		m.cpus, o.clients, o.poolSize)
	if o.runs == 1 {
		fmt.Fprintf(&b, "- Each row is one %d-second run on a virtual machine; "+
			"differences of a few percent between rows are within noise.\n", o.seconds)
	} else {
		worst := 0.0
		for _, r := range rep.tps {
			worst = max(worst, r.spread())
		}
		fmt.Fprintf(&b, "- Each row is the median of %d %d-second runs on a virtual machine, interleaved "+
			"across targets. Runs of one row differed by up to %.0f%% of its median (range column)",
			o.runs, o.seconds, 100*worst)
		if worst > 0.15 {
			b.WriteString(": a spread that wide means other work took CPU during some runs. " +
				"The median sets one bad run aside, but read small differences between rows as noise")
		}
		b.WriteString(".\n")
	}
	if len(rep.cpuRows()) > 0 {
		b.WriteString("- Of all these figures, the pooler's CPU µs per transaction (CPU table) is the one least " +
			"disturbed by other load: when other work takes the CPUs, tps falls and swings from run to run, but " +
			"the work the pooler does for each transaction changes less (it still rises somewhat on contended " +
			"CPUs), so compare poolers by it (the \"pooler CPU vs PgBouncer\" column) when the tps ratios are noisy.\n")
	}
	if busy(rep.load) {
		fmt.Fprintf(&b, "- Other work was running when this run started (load average %s on %s CPUs), "+
			"so every target got less CPU than the machine has: the absolute tps are low and noisy, "+
			"and the ratios between targets are noisy too, if less.\n", rep.load, m.cpus)
	}
	if r, ok := rep.find(targetPgBouncer, "prepared"); ok && r.failed {
		b.WriteString("- PgBouncer 1.18 in transaction mode leaves named prepared statements on the server " +
			"connection they were prepared on, so `-M prepared` fails on it: a client's Parse lands on a " +
			"server where another client already prepared the same name (\"already exists\"), or its " +
			"Bind on a server that never saw the Parse (\"does not exist\"). That row is a failure, " +
			"not a slow result.\n")
	}
	for _, r := range rep.conn {
		if r.mode == authSCRAM {
			b.WriteString("- Connection setup with SCRAM: the client (libpq, in pgbench) derives its keys with " +
				"4096 rounds of PBKDF2 at every login, on the same CPUs. PgBouncer, given the plain password " +
				"in its auth_file as here, derives the server side's keys at every login too; sluice derives " +
				"a verifier from a plain password once and keeps it. With a SCRAM verifier in the file " +
				"instead, neither pooler runs PBKDF2 for a client login.\n")
			break
		}
	}
	if len(rep.mem) > 0 {
		b.WriteString("- Memory per client is the growth of the pooler's resident set (VmRSS) from one " +
			"logged-in client to all of them, divided by their number. It counts what the process " +
			"allocates per idle client (buffers, goroutine stacks, its session state), not kernel socket " +
			"buffers.")
		if has(o.targets, targetSluice) {
			b.WriteString(" A Go process's RSS also depends on when its garbage collector last ran and " +
				"returned memory to the kernel, so sluice's figure can move more from run to run than PgBouncer's.")
		}
		b.WriteString("\n")
	}
	if !has(o.targets, targetSluice) {
		b.WriteString("- sluice is not in this run (`-targets` left it out).\n")
	}
	return b.String()
}

// writeMarkdown replaces the pooler section of path (see writeSection).
func (rep report) writeMarkdown(path string) error {
	return writeSection(path, sectionPooler, rep.markdown())
}

// sectionMarkers are the markers around a section's generated part of BENCHMARKS.md. The
// pooler section keeps the markers it had before there were sections.
func sectionMarkers(name string) (start, end string) {
	if name == sectionPooler {
		return markerStart, markerEnd
	}
	return "<!-- bench:" + name + ":start -->", "<!-- bench:" + name + ":end -->"
}

// writeSection replaces the part of path between the markers of section name with text
// (which begins and ends with those markers), keeping the text around them; it creates the
// file, or appends the section to a file without its markers.
func writeSection(path, name, text string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(replaceSection(string(old), name, text)), 0o644)
}

// replaceSection is writeSection on the file's content.
func replaceSection(s, name, text string) string {
	markStart, markEnd := sectionMarkers(name)
	start := strings.Index(s, markStart)
	end := strings.Index(s, markEnd)
	switch {
	case start >= 0 && end > start:
		rest := s[end+len(markEnd):]
		rest = strings.TrimPrefix(rest, "\n")
		return s[:start] + text + rest
	case s == "":
		return "# Benchmarks\n\n" + text
	default:
		return strings.TrimRight(s, "\n") + "\n\n" + text
	}
}

// loadAverage is the 1, 5 and 15 minute load averages, which show whether
// something else was using the CPUs the bench needs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// busy reports whether a load average string says something else was keeping
// more than half the CPUs busy.
func busy(load string) bool {
	f := strings.Fields(load)
	if len(f) == 0 {
		return false
	}
	l1, err := strconv.ParseFloat(f[0], 64)
	return err == nil && l1 > float64(runtime.NumCPU())/2
}

// sourceVersion is the working tree's commit, noting uncommitted changes other
// than to outFile (the file the bench writes): `make bench` builds bin/sluice from it
// just before the run.
func sourceVersion(outFile string) string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown commit (not a git checkout)"
	}
	v := "commit " + strings.TrimSpace(string(out))
	args := []string{"status", "--porcelain", "--untracked-files=no"}
	if outFile != "" {
		args = append(args, "--", ".", ":(exclude)"+outFile)
	}
	if dirty, err := exec.Command("git", args...).Output(); err == nil && len(dirty) > 0 {
		v += " with uncommitted changes"
	}
	return v
}
