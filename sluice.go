// Package sluice is a PostgreSQL connection pooler and proxy. Main runs the sluice command; a
// custom binary with its own compiled-in plugins calls it from its own main package.
package sluice

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicepg/sluice/internal/admin"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/frontend"
	"github.com/sluicepg/sluice/internal/hooks"
	"github.com/sluicepg/sluice/internal/metrics"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/plugin"
	_ "github.com/sluicepg/sluice/plugins/standard" // the plugins that ship with sluice
)

// Version is the sluice version, set at build time with -ldflags "-X github.com/sluicepg/sluice.Version=...".
var Version = "0.1.0-dev"

// Main parses the command line and runs sluice until SIGINT or SIGTERM. It exits the process.
func Main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "configuration file (default: sluice.toml, then pgcat.toml, in the working directory)")
	fs.StringVar(cfgPath, "config", "", "same as -c")
	check := fs.Bool("check", false, "validate the configuration and exit: 0 when it is valid, 1 otherwise")
	version := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pprofAddr := fs.String("pprof", "", "serve Go's profiler (net/http/pprof) on this address, e.g. 127.0.0.1:6060")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintln(stderr, "sluice", Version)
		return 0
	}
	if *cfgPath == "" && fs.NArg() > 0 {
		*cfgPath = fs.Arg(0) // pgcat takes the file as its only argument
	}
	if *cfgPath == "" {
		for _, name := range []string{"sluice.toml", "pgcat.toml"} {
			if _, err := os.Stat(name); err == nil {
				*cfgPath = name
				break
			}
		}
		if *cfgPath == "" {
			fmt.Fprintln(stderr, "sluice: no configuration: pass -c FILE, or put sluice.toml or pgcat.toml in the working directory")
			return 1
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "sluice: -log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, warns, err := config.Load(*cfgPath)
	for _, w := range warns {
		if *check {
			fmt.Fprintln(stderr, "warning:", w.String())
		} else {
			log.Warn(w.String())
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *check {
		// Plugins check their own blocks when they are set up; with no pools running, a
		// plugin that queries the database in Provision is told so.
		set, err := hooks.Load(cfg, noHost{}, log)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		set.Cleanup(log)
		fmt.Fprintf(stderr, "%s: configuration is valid\n", *cfgPath)
		return 0
	}
	if *pprofAddr != "" {
		go func() { log.Error("pprof server", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, log); err != nil {
		log.Error("sluice stopped", "err", err)
		return 1
	}
	return 0
}

// Run serves the configuration cfg until ctx is done (or the admin console's SHUTDOWN), then
// shuts down gracefully within the configured shutdown_timeout. SIGHUP and the console's RELOAD
// reload cfg.Path.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()
	s := &server{log: log}
	if n := cfg.General.WorkerThreads; n > 0 {
		runtime.GOMAXPROCS(n) // pgcat's worker_threads
	}
	tbl, _ := route.Build(cfg, nil)
	s.table.Store(tbl)
	set, err := hooks.Load(cfg, route.Host{Table: s.currentTable}, log)
	if err != nil {
		tbl.Targets(func(_, _ string, tg *route.Target) { tg.Close() })
		return err
	}
	tbl.SetPlugins(set)
	if cfg.General.ValidateConfig {
		if err := tbl.Validate(ctx, log); err != nil {
			tbl.Targets(func(_, _ string, tg *route.Target) { tg.Close() })
			set.Cleanup(log)
			return fmt.Errorf("validate_config: %w", err)
		}
	}
	tbl.StartChecks(log)
	s.fe = frontend.NewListener(s.currentTable, log)
	console := &admin.Console{
		Table:       s.currentTable,
		Clients:     s.fe.Snapshot,
		Connections: s.fe.Clients,
		Reload:      s.reload,
		Shutdown:    shutdown,
		Bans:        admin.RouteBans(s.currentTable),
		Kill:        s.fe.Kill,
		SetDisabled: s.fe.SetDisabled,
		Disabled:    s.fe.Disabled,
		Version:     Version,
		Log:         log,
	}
	s.fe.SetConsole(console)

	g := &cfg.General
	if g.EnablePrometheusExporter {
		maddr := net.JoinHostPort(g.Host, strconv.Itoa(g.PrometheusExporterPort))
		mln, err := net.Listen("tcp", maddr)
		if err != nil {
			tbl.StopChecks()
			tbl.Targets(func(_, _ string, tg *route.Target) { tg.Close() })
			set.Cleanup(log)
			return fmt.Errorf("prometheus exporter: listen on %s: %w", maddr, err)
		}
		go func() {
			if err := metrics.Serve(ctx, mln, metrics.Handler(console, s.fe.Clients), log); err != nil {
				log.Error("prometheus exporter stopped", "addr", maddr, "err", err)
			}
		}()
	}
	addr := net.JoinHostPort(g.Host, strconv.Itoa(g.Port))
	tcp, err := frontend.ListenTCP(ctx, addr, g)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	lns := []net.Listener{tcp}
	if g.UnixSocketDir != "" {
		path := filepath.Join(g.UnixSocketDir, ".s.PGSQL."+strconv.Itoa(g.Port))
		_ = os.Remove(path) // a socket left by a crash
		ul, err := net.Listen("unix", path)
		if err != nil {
			tcp.Close()
			return fmt.Errorf("listen on %s: %w", path, err)
		}
		_ = os.Chmod(path, 0o777)
		lns = append(lns, ul)
	}
	log.Info("sluice listening", "addr", addr, "unix_socket_dir", g.UnixSocketDir, "version", Version)
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.fe.Serve(ln)
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go s.autoreload(ctx)
	for {
		select {
		case <-hup:
			_ = s.reload() // reload logs what went wrong
			continue
		case <-ctx.Done():
		}
		break
	}
	cur := s.currentTable()
	log.Info("shutting down", "clients", s.fe.Clients(), "shutdown_timeout", cur.Config.General.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cur.Config.General.ShutdownTimeout)
	defer cancel()
	s.fe.Shutdown(sctx)
	wg.Wait()
	cur.StopChecks()
	cur.Targets(func(_, _ string, tg *route.Target) { tg.Close() })
	cur.Plugins.Cleanup(log)
	return nil
}

// noHost is the plugin host of --check: there are no pools to query.
type noHost struct{}

func (noHost) Query(context.Context, string, string, string, ...*string) (*plugin.Rows, error) {
	return nil, errors.New("no database during --check")
}

type server struct {
	log   *slog.Logger
	table atomic.Pointer[route.Table]
	fe    *frontend.Listener
	// reloadMu keeps a SIGHUP and the console's RELOAD from building two tables from one.
	reloadMu sync.Mutex
}

func (s *server) currentTable() *route.Table { return s.table.Load() }

// autoreload is pgcat's autoreload: every general.autoreload it reads the configuration file, and
// when its content differs from the running configuration's it reloads it as SIGHUP does. A file
// that failed to load is not tried again until it changes again. It runs until ctx is done; a
// reload may turn it on, off, or change its interval.
func (s *server) autoreload(ctx context.Context) {
	var failed [sha256.Size]byte
	for {
		every := s.currentTable().Config.General.Autoreload
		wait := every
		if wait == 0 {
			wait = time.Second // off: look again later, in case a reload turns it on
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if every == 0 {
			continue
		}
		cfg := s.currentTable().Config
		data, err := os.ReadFile(cfg.Path)
		if err != nil {
			continue // a file being replaced; the next look finds it
		}
		d := sha256.Sum256(data)
		if d == cfg.Digest || d == failed {
			continue
		}
		s.log.Info("autoreload: the configuration file changed", "path", cfg.Path)
		if s.reload() != nil {
			failed = d
		}
	}
}

// reload reads the configuration file again. Pools whose settings did not change keep their
// connections; the others are rebuilt, and the old ones closed once nothing uses them. A file
// with errors changes nothing: reload logs them and returns them.
func (s *server) reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.currentTable()
	cfg, warns, err := config.Load(old.Config.Path)
	for _, w := range warns {
		s.log.Warn(w.String())
	}
	if err != nil {
		s.log.Error("reload failed; keeping the running configuration", "err", err)
		return err
	}
	og, ng := &old.Config.General, &cfg.General
	if og.Host != ng.Host || og.Port != ng.Port || og.UnixSocketDir != ng.UnixSocketDir {
		s.log.Warn("listen address changes need a restart; keeping the old one")
	}
	if og.EnablePrometheusExporter != ng.EnablePrometheusExporter || og.PrometheusExporterPort != ng.PrometheusExporterPort {
		s.log.Warn("prometheus exporter changes need a restart; keeping the old setting")
	}
	if og.WorkerThreads != ng.WorkerThreads {
		s.log.Warn("worker_threads changes need a restart; keeping the old setting")
	}
	set, err := hooks.Load(cfg, route.Host{Table: s.currentTable}, s.log)
	if err != nil {
		s.log.Error("reload failed: plugins; keeping the running configuration", "err", err)
		return err
	}
	tbl, retired := route.Build(cfg, old)
	tbl.SetPlugins(set)
	s.table.Store(tbl)
	tbl.StartChecks(s.log)
	// Sessions pick up the new plugins at their next transaction; give calls in flight on the
	// old ones a moment before cleaning them up.
	time.AfterFunc(5*time.Second, func() { old.Plugins.Cleanup(s.log) })
	for _, tg := range retired {
		tg.Close() // idle servers close now; checked-out ones close on release
	}
	s.log.Info("configuration reloaded", "path", cfg.Path, "rebuilt_pools", len(retired))
	return nil
}
