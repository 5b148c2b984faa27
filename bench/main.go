// Command bench measures sluice against Postgres reached directly and through
// PgBouncer: pgbench select-only throughput with the simple, extended and
// prepared query protocols, and the memory each idle, logged-in client costs
// the pooler. It is what `make bench` runs after `make build`.
//
// Everything runs on this machine in one go: one Postgres started by
// internal/pgtest, PgBouncer and sluice in front of it with the same pool
// size, pgbench against each target in turn. The results are printed and
// written into BENCHMARKS.md between the bench markers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// The role and database pgbench uses on every target.
const (
	benchUser     = "bench"
	benchPassword = "benchpw"
	benchDB       = "bench"
)

// Target names, as given to -targets.
const (
	targetDirect    = "direct"
	targetPgBouncer = "pgbouncer"
	targetSluice    = "sluice"
	// targetSluiceParser is sluice with read/write splitting on: every query is classified
	// with the Postgres parser (cached), to measure what that costs against targetSluice.
	targetSluiceParser = "sluice-parser"
	// targetSluicePlugins is sluice built with three compiled-in plugins that each have a
	// cheap query hook (bench/benchplugins), to measure the hook path against targetSluice.
	targetSluicePlugins = "sluice-plugins"
	// targetSluiceOneCPU is sluice with worker_threads = 1 (GOMAXPROCS 1): Go code on one CPU
	// at a time, as PgBouncer's one thread, on a machine it shares with Postgres and pgbench.
	targetSluiceOneCPU = "sluice-1cpu"
)

// sluiceTargets are the targets that run a sluice binary.
var sluiceTargets = []string{targetSluice, targetSluiceParser, targetSluicePlugins, targetSluiceOneCPU}

// Sections of the bench, as given to -bench (make bench BENCH=...).
const (
	// sectionPooler compares sluice with Postgres and PgBouncer: pgbench -S throughput,
	// connection setup and idle-client memory.
	sectionPooler = "pooler"
	// sectionCache is the read-heavy workload through sluice with its cache, sluice without
	// it, pgpool-II with its query cache, and Postgres directly.
	sectionCache = "cache"
	// sectionSharding is point reads and fan-out through a sluice pool of three shards
	// against a pool of one unsharded database.
	sectionSharding = "sharding"
)

var sections = []string{sectionPooler, sectionCache, sectionSharding}

// options are the command-line settings of one bench run.
type options struct {
	sections []string // pooler, cache, sharding

	seconds  int // pgbench -T
	clients  int // pgbench -c
	threads  int // pgbench -j
	scale    int // pgbench -i -s
	runs     int // pgbench runs per target and mode; the median is reported
	poolSize int // server connections per pool, PgBouncer and sluice alike
	// queuePool is the pool size of the queued throughput runs, where the clients outnumber
	// the servers (0 skips them).
	queuePool int
	idle      int      // idle clients opened for the memory measurement
	targets   []string // direct, pgbouncer, sluice
	modes     []string // simple, extended, prepared
	sluiceBin string
	// pluginsBin is the build of bench/sluiceplugins for targetSluicePlugins, made by the
	// bench itself.
	pluginsBin string
	out        string // BENCHMARKS.md, or "" to leave it alone
	// profileDir, when set, receives a CPU profile of sluice for each run of the cache and
	// sharding sections and of the connection-setup runs.
	profileDir string
	// connect lists the client auth methods of the connection-setup runs
	// (pgbench -C), md5 and scram-sha-256; connClients is their pgbench -c.
	connect     []string
	connClients int

	// The cache section: its targets, pgbench modes, workloads (cacheWorkloads), the share
	// of updates in percent, and the cache plugin's l1_size.
	cacheTargets   []string
	cacheModes     []string
	cacheWorkloads []string
	cacheWritePct  int
	cacheL1        int
	// redisAddr is the redis-server of targetSluiceCache, started by the bench.
	redisAddr string

	// The sharding section: pgbench modes of the point reads, the clients and seconds of
	// each fan-out latency run, and the servers per shard of the sharded pool (0: poolSize shared out).
	shardModes    []string
	fanoutClients int
	fanoutSeconds int
	shardPool     int
}

// target is one address pgbench can be pointed at.
type target struct {
	name string
	host string
	port int
	pid  int    // the pooler's process, whose memory is measured; 0 for direct
	db   string // the database pgbench names; "" is benchDB
	// pprofAddr is the address of a sluice's Go profiler (sluice -pprof), when -cpuprofile
	// asked for profiles.
	pprofAddr string
}

// database is the database name pgbench and other clients give on t.
func (t target) database() string {
	if t.db == "" {
		return benchDB
	}
	return t.db
}

func main() {
	os.Exit(run())
}

func run() int {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer pgtest.Cleanup()

	if err := bench(ctx, o); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted, cleaning up")
			return 130
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	var targets, modes, secs, cacheTargetList, cacheModes, cacheWorkloadList, shardModes string
	var quick bool
	fs.StringVar(&secs, "bench", strings.Join(sections, ","), "comma-separated sections: pooler, cache, sharding")
	fs.IntVar(&o.seconds, "T", 15, "seconds per pgbench run")
	fs.BoolVar(&quick, "quick", false, "3-second pgbench runs (overrides -T)")
	fs.IntVar(&o.clients, "c", 32, "pgbench clients")
	fs.IntVar(&o.threads, "j", 2, "pgbench threads")
	fs.IntVar(&o.scale, "s", 10, "pgbench scale factor")
	fs.IntVar(&o.runs, "runs", 1, "pgbench runs per target and mode (median reported)")
	fs.IntVar(&o.poolSize, "pool-size", 32, "server connections per pool in PgBouncer and sluice")
	fs.IntVar(&o.queuePool, "queue-pool-size", 8, "pool size of the queued throughput runs, PgBouncer and sluice with fewer servers than clients (0 skips them)")
	fs.IntVar(&o.idle, "clients", 10000, "idle clients for the memory measurement (0 skips it)")
	fs.StringVar(&targets, "targets", "direct,pgbouncer,sluice,sluice-parser,sluice-plugins", "comma-separated targets")
	fs.StringVar(&modes, "modes", "simple,extended,prepared", "comma-separated pgbench -M modes")
	fs.StringVar(&o.sluiceBin, "sluice", "bin/sluice", "sluice binary")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", `file to write results into ("" to skip)`)
	fs.StringVar(&o.profileDir, "cpuprofile", "", "directory for CPU profiles of sluice during the cache, sharding and connection-setup runs (go tool pprof)")
	var connect string
	fs.StringVar(&connect, "connect", "md5,scram-sha-256", `auth methods of the connection-setup runs, pgbench -C ("" skips them)`)
	fs.IntVar(&o.connClients, "connect-c", 8, "pgbench clients of the connection-setup runs")
	fs.StringVar(&cacheTargetList, "cache-targets", strings.Join(cacheTargets, ","), "comma-separated targets of the cache section")
	fs.StringVar(&cacheModes, "cache-modes", "simple,prepared", "comma-separated pgbench -M modes of the cache section")
	fs.StringVar(&cacheWorkloadList, "cache-workloads", "other-table,same-table",
		"comma-separated workloads of the cache section: other-table (updates elsewhere), same-table (updates of the rows read)")
	fs.IntVar(&o.cacheWritePct, "cache-writes", 5, "percent of the cache workload's transactions that update")
	fs.IntVar(&o.cacheL1, "cache-l1", 256<<20, "the cache plugin's l1_size, bytes (0: no in-process cache); by default pgpool-II's memqcache_total_size")
	fs.StringVar(&shardModes, "shard-modes", "simple,extended,prepared", "comma-separated pgbench -M modes of the sharding point reads")
	fs.IntVar(&o.fanoutClients, "fanout-c", 1, "pgbench clients of the fan-out latency runs")
	fs.IntVar(&o.shardPool, "shard-pool-size", 0, "servers per shard of the sharded pool (0: -pool-size divided among the shards, rounded up)")
	fs.IntVar(&o.fanoutSeconds, "fanout-T", 5, "seconds per fan-out latency run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if quick {
		o.seconds = 3
	}
	o.targets = splitList(targets)
	o.modes = splitList(modes)
	o.sections = splitList(secs)
	o.cacheTargets = splitList(cacheTargetList)
	o.cacheModes = splitList(cacheModes)
	o.cacheWorkloads = splitList(cacheWorkloadList)
	o.shardModes = splitList(shardModes)
	for _, sec := range o.sections {
		if !has(sections, sec) {
			return o, fmt.Errorf("unknown section %q in -bench (want %s)", sec, strings.Join(sections, ", "))
		}
	}
	for _, t := range o.cacheTargets {
		if !has(cacheTargets, t) {
			return o, fmt.Errorf("unknown target %q in -cache-targets (want %s)", t, strings.Join(cacheTargets, ", "))
		}
	}
	for _, w := range o.cacheWorkloads {
		if _, ok := findCacheWorkload(w); !ok {
			return o, fmt.Errorf("unknown workload %q in -cache-workloads (want other-table, same-table)", w)
		}
	}
	for _, m := range append(append([]string(nil), o.cacheModes...), o.shardModes...) {
		if m != "simple" && m != "extended" && m != "prepared" {
			return o, fmt.Errorf("unknown mode %q (want simple, extended, prepared)", m)
		}
	}
	if o.cacheWritePct < 0 || o.cacheWritePct > 100 || o.cacheL1 < 0 || o.fanoutClients < 1 || o.fanoutSeconds < 1 || o.shardPool < 0 {
		return o, fmt.Errorf("-cache-writes must be 0 to 100, -cache-l1 not negative, -fanout-c and -fanout-T positive")
	}
	o.connect = splitList(connect)
	for _, a := range o.connect {
		if a != authMD5 && a != authSCRAM {
			return o, fmt.Errorf("unknown auth method %q in -connect (want md5, scram-sha-256)", a)
		}
	}
	for _, t := range o.targets {
		if t != targetDirect && t != targetPgBouncer && !has(sluiceTargets, t) {
			return o, fmt.Errorf("unknown target %q (want direct, pgbouncer, sluice, sluice-parser, sluice-plugins, sluice-1cpu)", t)
		}
	}
	for _, m := range o.modes {
		if m != "simple" && m != "extended" && m != "prepared" {
			return o, fmt.Errorf("unknown mode %q (want simple, extended, prepared)", m)
		}
	}
	if o.seconds < 1 || o.clients < 1 || o.threads < 1 || o.runs < 1 || o.poolSize < 1 || o.idle < 0 || o.queuePool < 0 {
		return o, fmt.Errorf("-T, -c, -j, -runs and -pool-size must be positive, -clients and -queue-pool-size not negative")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// bench runs the sections asked for, each with servers of its own, and writes each one's
// figures into its part of o.out.
func bench(ctx context.Context, o options) error {
	if load := loadAverage(); busy(load) {
		fmt.Printf("warning: load average %s on %d CPUs: other work will take CPU from the bench\n", load, runtime.NumCPU())
	}
	for _, name := range o.sections {
		var err error
		switch name {
		case sectionPooler:
			err = benchPooler(ctx, o)
		case sectionCache:
			err = runCacheSection(ctx, o)
		case sectionSharding:
			err = runShardingSection(ctx, o)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// benchPooler runs the pooler section: it starts everything, measures, reports, and stops what
// it started.
func benchPooler(ctx context.Context, o options) error {
	started, load := time.Now(), loadAverage()
	if err := raiseFileLimit(o.idle + 1000); err != nil {
		return err
	}
	if has(o.targets, targetSluice) || has(o.targets, targetSluiceParser) || has(o.targets, targetSluiceOneCPU) {
		if _, err := sluiceBinary(o); err != nil {
			return err // before minutes of setup, not after
		}
	}
	if has(o.targets, targetSluicePlugins) {
		bin, err := buildPluginsBinary(ctx)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(bin))
		o.pluginsBin = bin
	}

	pg, err := startPostgres(ctx, o)
	if err != nil {
		return err
	}
	defer pg.Stop()

	var targets []target
	if has(o.targets, targetDirect) {
		targets = append(targets, target{name: targetDirect, host: pg.Host, port: pg.Port})
	}
	if has(o.targets, targetPgBouncer) {
		pb, err := startPgBouncer(ctx, pg, o, authMD5)
		if err != nil {
			return err
		}
		defer pb.stop()
		targets = append(targets, pb.target)
	}
	for _, name := range sluiceTargets {
		if !has(o.targets, name) {
			continue
		}
		sl, err := startSluice(ctx, pg, o, name, authMD5)
		if err != nil {
			return err
		}
		defer sl.stop()
		targets = append(targets, sl.target)
	}

	// Memory first, on poolers that have served nothing yet: a Go process
	// keeps heap it freed for a while, and that would hide part of the cost
	// of the idle clients measured after a throughput run.
	var mem []memResult
	if o.idle > 0 {
		for _, t := range targets {
			if t.pid == 0 {
				continue
			}
			fmt.Printf("memory: %d idle clients on %s\n", o.idle, t.name)
			r := measureIdleMemory(ctx, t, o.idle)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Printf("  %s\n", r)
			mem = append(mem, r)
		}
	}

	tps, err := runThroughput(ctx, targets, postmasterPID(pg.DataDir), o)
	if err != nil {
		return err
	}
	queued, err := runQueued(ctx, pg, o)
	if err != nil {
		return err
	}
	conn, err := runConnect(ctx, pg, o)
	if err != nil {
		return err
	}

	rep := report{
		opts:     o,
		started:  started,
		tps:      tps,
		queued:   queued,
		conn:     conn,
		mem:      mem,
		machine:  describeMachine(o.out),
		command:  commandLine(),
		load:     load,
		loadEnd:  loadAverage(),
		duration: time.Since(started),
	}
	fmt.Println()
	fmt.Print(rep.text())
	if o.out != "" {
		if err := rep.writeMarkdown(o.out); err != nil {
			return err
		}
		fmt.Printf("\nwrote %s\n", o.out)
	}
	return nil
}

// startPostgres starts the one Postgres every target of the pooler section leads to and loads
// the pgbench tables into it.
func startPostgres(ctx context.Context, o options) (*pgtest.Postgres, error) {
	return startBenchPostgres(ctx, o, "bench", o.scale)
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit, which the
// idle clients need, and which the poolers started later inherit.
func raiseFileLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("setrlimit RLIMIT_NOFILE %d: %w", lim.Max, err)
	}
	if lim.Cur < uint64(need) {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d is below the %d the idle clients need; lower -clients", lim.Max, need)
	}
	return nil
}

// commandLine is how this run was started, as a user would type it.
func commandLine() string {
	cmd := "go run ./bench"
	if len(os.Args) > 1 {
		cmd += " " + strings.Join(os.Args[1:], " ")
	}
	return cmd
}
