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
)

// sluiceTargets are the targets that run a sluice binary.
var sluiceTargets = []string{targetSluice, targetSluiceParser, targetSluicePlugins}

// options are the command-line settings of one bench run.
type options struct {
	seconds   int      // pgbench -T
	clients   int      // pgbench -c
	threads   int      // pgbench -j
	scale     int      // pgbench -i -s
	runs      int      // pgbench runs per target and mode; the median is reported
	poolSize  int      // server connections per pool, PgBouncer and sluice alike
	idle      int      // idle clients opened for the memory measurement
	targets   []string // direct, pgbouncer, sluice
	modes     []string // simple, extended, prepared
	sluiceBin string
	// pluginsBin is the build of bench/sluiceplugins for targetSluicePlugins, made by the
	// bench itself.
	pluginsBin string
	out        string // BENCHMARKS.md, or "" to leave it alone
	// connect lists the client auth methods of the connection-setup runs
	// (pgbench -C), md5 and scram-sha-256; connClients is their pgbench -c.
	connect     []string
	connClients int
}

// target is one address pgbench can be pointed at.
type target struct {
	name string
	host string
	port int
	pid  int // the pooler's process, whose memory is measured; 0 for direct
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
	var targets, modes string
	var quick bool
	fs.IntVar(&o.seconds, "T", 15, "seconds per pgbench run")
	fs.BoolVar(&quick, "quick", false, "3-second pgbench runs (overrides -T)")
	fs.IntVar(&o.clients, "c", 32, "pgbench clients")
	fs.IntVar(&o.threads, "j", 2, "pgbench threads")
	fs.IntVar(&o.scale, "s", 10, "pgbench scale factor")
	fs.IntVar(&o.runs, "runs", 1, "pgbench runs per target and mode (median reported)")
	fs.IntVar(&o.poolSize, "pool-size", 32, "server connections per pool in PgBouncer and sluice")
	fs.IntVar(&o.idle, "clients", 10000, "idle clients for the memory measurement (0 skips it)")
	fs.StringVar(&targets, "targets", "direct,pgbouncer,sluice,sluice-parser,sluice-plugins", "comma-separated targets")
	fs.StringVar(&modes, "modes", "simple,extended,prepared", "comma-separated pgbench -M modes")
	fs.StringVar(&o.sluiceBin, "sluice", "bin/sluice", "sluice binary")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", `file to write results into ("" to skip)`)
	var connect string
	fs.StringVar(&connect, "connect", "md5,scram-sha-256", `auth methods of the connection-setup runs, pgbench -C ("" skips them)`)
	fs.IntVar(&o.connClients, "connect-c", 8, "pgbench clients of the connection-setup runs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if quick {
		o.seconds = 3
	}
	o.targets = splitList(targets)
	o.modes = splitList(modes)
	o.connect = splitList(connect)
	for _, a := range o.connect {
		if a != authMD5 && a != authSCRAM {
			return o, fmt.Errorf("unknown auth method %q in -connect (want md5, scram-sha-256)", a)
		}
	}
	for _, t := range o.targets {
		if t != targetDirect && t != targetPgBouncer && !has(sluiceTargets, t) {
			return o, fmt.Errorf("unknown target %q (want direct, pgbouncer, sluice, sluice-parser, sluice-plugins)", t)
		}
	}
	for _, m := range o.modes {
		if m != "simple" && m != "extended" && m != "prepared" {
			return o, fmt.Errorf("unknown mode %q (want simple, extended, prepared)", m)
		}
	}
	if o.seconds < 1 || o.clients < 1 || o.threads < 1 || o.runs < 1 || o.poolSize < 1 || o.idle < 0 {
		return o, fmt.Errorf("-T, -c, -j, -runs and -pool-size must be positive, -clients not negative")
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

// bench starts everything, measures, reports, and stops what it started.
func bench(ctx context.Context, o options) error {
	started, load := time.Now(), loadAverage()
	if busy(load) {
		fmt.Printf("warning: load average %s on %d CPUs: other work will take CPU from the bench\n", load, runtime.NumCPU())
	}
	if err := raiseFileLimit(o.idle + 1000); err != nil {
		return err
	}
	if has(o.targets, targetSluice) || has(o.targets, targetSluiceParser) {
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

	tps, err := runThroughput(ctx, targets, o)
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
		conn:     conn,
		mem:      mem,
		machine:  describeMachine(),
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

// startPostgres starts the one Postgres every target leads to and loads the
// pgbench tables into it.
func startPostgres(ctx context.Context, o options) (*pgtest.Postgres, error) {
	maxConns := max(300, 3*o.poolSize+o.clients+50)
	fmt.Printf("postgres: starting (max_connections=%d)\n", maxConns)
	pg, err := pgtest.StartPostgres(pgtest.Options{
		Name: "bench",
		// md5, not SCRAM: PgBouncer logs in to Postgres with the md5 hash
		// from its auth_file, which works only if the role's password is
		// stored as md5, and with Auth "md5" pgtest stores it so.
		Auth: "md5",
		Conf: map[string]string{
			"max_connections": fmt.Sprint(maxConns),
			"shared_buffers":  "256MB", // the scale-10 tables and indexes fit
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := pg.CreateUser(ctx, benchUser, benchPassword); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("create user %s: %w", benchUser, err)
	}
	if err := pg.CreateDatabase(ctx, benchDB, benchUser); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("create database %s: %w", benchDB, err)
	}
	fmt.Printf("postgres: %s:%d, pgbench -i -s %d\n", pg.Host, pg.Port, o.scale)
	if err := pgbenchInit(ctx, target{name: targetDirect, host: pg.Host, port: pg.Port}, o.scale); err != nil {
		pg.Stop()
		return nil, err
	}
	return pg, nil
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
