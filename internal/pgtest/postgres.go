package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// confFile is the file, in the data directory, that holds the harness's postgresql.conf settings;
// postgresql.conf includes it at its end. A replica's copy is rewritten with its own port.
const confFile = "sluice_pgtest.conf"

// Options configures StartPostgres.
type Options struct {
	// Name labels the server's directory and errors. Default "pg".
	Name string
	// Auth is the pg_hba.conf method of the TCP ("host") lines, replication included: "trust",
	// "md5" or "scram-sha-256" (the default). It also decides how passwords are stored: with "md5",
	// CreateUser and the superuser store MD5 hashes, otherwise SCRAM verifiers. Unix-socket
	// connections are always trusted.
	Auth string
	// Conf holds extra postgresql.conf settings, written after the harness's own so they override
	// them, e.g. {"wal_level": "logical", "max_connections": "200"}. Values are quoted here; pass
	// them bare. A replica takes its primary's Conf.
	Conf map[string]string
}

// Postgres is a cluster started by StartPostgres or StartReplica, listening on Host:Port and on a
// Unix socket in SocketDir. Its methods may be called from several goroutines.
type Postgres struct {
	Host      string // always "127.0.0.1"
	Port      int    // kept across Kill and Start
	DataDir   string
	SocketDir string // unix_socket_directories; socket connections need no password
	LogFile   string // the server's log; start errors include its tail

	name    string
	dir     string // holds DataDir, SocketDir and LogFile; removed by Stop
	bin     string
	opts    Options
	cred    *syscall.Credential // the user Postgres runs as; nil when this process is not root
	primary *Postgres           // the server a replica streams from; nil for a primary

	life    context.Context // canceled by Stop: the programs run for this server end with it
	endLife context.CancelFunc

	mu      sync.Mutex // serializes Start, Kill, StopServer, Stop and Promote
	removed bool
}

// StartPostgres initializes a new cluster in a temporary directory and starts it on a free port.
// It returns once the server accepts TCP connections from SuperUser. The caller stops it with
// Stop; Cleanup stops it too.
func StartPostgres(opts Options) (*Postgres, error) {
	switch opts.Auth {
	case "":
		opts.Auth = "scram-sha-256"
	case "trust", "md5", "scram-sha-256":
	default:
		return nil, fmt.Errorf("pgtest: Options.Auth %q: want trust, md5 or scram-sha-256", opts.Auth)
	}
	if opts.Name == "" {
		opts.Name = "pg"
	}
	conf := make(map[string]string, len(opts.Conf))
	for k, v := range opts.Conf {
		conf[k] = v
	}
	opts.Conf = conf

	p, err := newPostgres(opts)
	if err != nil {
		return nil, err
	}
	if err := p.initdb(); err != nil {
		return nil, errors.Join(err, p.destroy())
	}
	if err := p.startOnFreePort(); err != nil {
		return nil, errors.Join(err, p.destroy())
	}
	if opts.Auth == "md5" {
		// initdb stored the superuser's password as SCRAM; store it the way this cluster's users are.
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		if err := p.CreateUser(ctx, "", SuperPassword); err != nil {
			return nil, errors.Join(err, p.destroy())
		}
	}
	return p, nil
}

// newPostgres makes the directory of a server that is neither initialized nor started, and
// registers it so Cleanup removes it.
func newPostgres(opts Options) (*Postgres, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := makeDir(opts.Name, cred)
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		Host:      "127.0.0.1",
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: filepath.Join(dir, "sock"),
		LogFile:   filepath.Join(dir, "postgres.log"),
		name:      opts.Name,
		dir:       dir,
		bin:       bin,
		opts:      opts,
		cred:      cred,
	}
	p.life, p.endLife = context.WithCancel(context.Background())
	if err := register(p); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.mkdir(p.SocketDir); err != nil {
		return nil, errors.Join(err, p.destroy())
	}
	return p, nil
}

// String names the server in messages: "primary (127.0.0.1:5433)".
func (p *Postgres) String() string { return fmt.Sprintf("%s (%s:%d)", p.name, p.Host, p.Port) }

func (p *Postgres) initdb() error {
	pwfile := filepath.Join(p.dir, "pwfile")
	if err := p.writeFile(pwfile, SuperPassword+"\n", 0o600); err != nil {
		return err
	}
	out, err := p.run(p.life, "initdb", "-D", p.DataDir, "-U", SuperUser, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host="+p.opts.Auth, "-E", "UTF8", "--locale=C", "--no-sync")
	os.Remove(pwfile)
	if err != nil {
		return fmt.Errorf("pgtest: initdb %s: %w\n%s", p.name, err, out)
	}
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Settings of internal/pgtest, last so they win.\ninclude '%s'\n", confFile)
	return errors.Join(err, f.Close())
}

// writeConf writes the harness's settings, Options.Conf last, for the current Port.
func (p *Postgres) writeConf() error {
	var b strings.Builder
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, confValue(v)) }
	b.WriteString("# Written by internal/pgtest for " + p.name + "; rewritten when the port changes.\n")
	set("listen_addresses", p.Host)
	set("port", strconv.Itoa(p.Port))
	set("unix_socket_directories", p.SocketDir)
	set("max_connections", "300")
	// Durability is not what tests measure: skip the fsyncs.
	set("fsync", "off")
	set("full_page_writes", "off")
	set("synchronous_commit", "off")
	// Streaming replicas, and logical decoding when Conf raises wal_level.
	set("wal_level", "replica")
	set("max_wal_senders", "20")
	set("max_replication_slots", "20")
	set("wal_keep_size", "128MB")
	set("hot_standby", "on")
	set("hot_standby_feedback", "on")
	set("wal_receiver_status_interval", "1s")
	set("wal_retrieve_retry_interval", "200ms") // a replica reconnects soon after its primary restarts
	if p.opts.Auth == "md5" {
		set("password_encryption", "md5")
	} else {
		set("password_encryption", "scram-sha-256")
	}
	set("lc_messages", "C")
	set("log_line_prefix", "%m [%p] %q%u@%d ")
	for _, k := range sortedKeys(p.opts.Conf) {
		set(k, p.opts.Conf[k])
	}
	return p.writeFile(filepath.Join(p.DataDir, confFile), b.String(), 0o600)
}

// confValue quotes a postgresql.conf value; one already in single quotes is kept as it is.
func confValue(v string) string {
	if len(v) >= 2 && strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// startOnFreePort starts a server that has never run, trying other ports when its port is taken.
func (p *Postgres) startOnFreePort() error {
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		p.Port = port
		if err := p.writeConf(); err != nil {
			return err
		}
		err = p.start()
		if err == nil || !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return err
		}
	}
}

// start runs pg_ctl start and waits until the server accepts TCP connections.
func (p *Postgres) start() error {
	offset := fileSize(p.LogFile)
	out, err := p.run(p.life, "pg_ctl", "start", "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())),
		"-D", p.DataDir, "-l", p.LogFile)
	if err != nil {
		err = fmt.Errorf("pgtest: start %s: pg_ctl: %w: %s", p, err, strings.TrimSpace(out))
		if strings.Contains(logTail(p.LogFile, offset), "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return withLog(err, p.LogFile, offset)
	}
	if err := waitFor(startTimeout, p.ping); err != nil {
		return withLog(fmt.Errorf("pgtest: %s does not accept connections: %w", p, err), p.LogFile, offset)
	}
	return nil
}

// ping opens and closes one TCP connection as the superuser, the way a client would connect.
func (p *Postgres) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, p.DSN("postgres", SuperUser, SuperPassword))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// Start starts a server again after Kill or StopServer, on the same port, and waits until it
// accepts connections.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return fmt.Errorf("pgtest: start %s: stopped and removed", p)
	}
	if p.running() {
		return fmt.Errorf("pgtest: start %s: already running", p)
	}
	return p.start()
}

// Kill stops the server at once, without a checkpoint ("pg_ctl stop -m immediate"), like a crash.
// The directory is kept; Start brings the server back with crash recovery. As after a real crash
// with synchronous_commit off (the harness's default, for speed), the last fraction of a second of
// commits may be lost; a test that needs them set synchronous_commit = on in Options.Conf or in
// its session. Killing a server that is not running does nothing.
func (p *Postgres) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop(p.life, "immediate")
}

// StopServer shuts the server down cleanly ("pg_ctl stop -m fast") and keeps its directory, so
// Start can bring it back.
func (p *Postgres) StopServer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop(p.life, "fast")
}

// Stop shuts the server down ("pg_ctl stop -m fast", harder if that fails) and removes its
// directory. The Postgres cannot be started again. Stopping twice does nothing.
func (p *Postgres) Stop() error { return p.destroy() }

func (p *Postgres) destroy() error {
	// Kill what runs in the directory (initdb, pg_basebackup, a waiting pg_ctl) first; it may
	// also hold p.mu.
	p.endLife()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return nil
	}
	ctx := context.Background()
	err := p.stop(ctx, "fast")
	if err != nil && p.stop(ctx, "immediate") == nil {
		err = nil
	}
	if p.running() {
		killByPidFile(filepath.Join(p.DataDir, "postmaster.pid"), "postgres", syscall.SIGKILL)
	}
	err = errors.Join(err, removeDir(p.dir))
	p.removed = true
	unregister(p)
	return err
}

// stop runs pg_ctl stop in the given mode if the postmaster runs.
func (p *Postgres) stop(ctx context.Context, mode string) error {
	if p.removed || !p.running() {
		return nil
	}
	out, err := p.run(ctx, "pg_ctl", "stop", "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())),
		"-m", mode, "-D", p.DataDir)
	if err != nil {
		return fmt.Errorf("pgtest: stop %s (-m %s): %w: %s", p, mode, err, strings.TrimSpace(out))
	}
	return nil
}

// running reports whether the postmaster named in postmaster.pid is alive.
func (p *Postgres) running() bool {
	b, err := os.ReadFile(filepath.Join(p.DataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	return err == nil && processAlive(pid)
}

// StartReplica makes a streaming replica of p with pg_basebackup -R, starts it on a free port, and
// returns once it is in recovery and its WAL receiver is streaming. The replica has p's Options
// (Auth, Conf) under the given name, and connects to p as SuperUser.
func (p *Postgres) StartReplica(name string) (*Postgres, error) {
	opts := p.opts
	opts.Name = name
	r, err := newPostgres(opts)
	if err != nil {
		return nil, err
	}
	r.primary = p
	// application_name lets pg_stat_replication on the primary name the replica; -R writes this
	// connection's parameters, password included, to the replica's primary_conninfo.
	out, err := r.run(r.life, "pg_basebackup", "-d", "application_name="+sanitizeAppName(name),
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", SuperUser,
		"-D", r.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("pgtest: pg_basebackup of %s for %s: %w\n%s", p, name, err, out), r.destroy())
	}
	// pg_basebackup leaves these out; be sure no state of the primary's process is reused.
	for _, f := range []string{"postmaster.pid", "postmaster.opts"} {
		os.Remove(filepath.Join(r.DataDir, f))
	}
	if err := r.startOnFreePort(); err != nil {
		return nil, errors.Join(err, r.destroy())
	}
	if err := waitFor(startTimeout, r.checkStreaming); err != nil {
		return nil, errors.Join(withLog(fmt.Errorf("pgtest: replica %s of %s: %w", r, p, err), r.LogFile, 0), r.destroy())
	}
	return r, nil
}

var unsafeAppNameChars = strings.NewReplacer(" ", "_", "'", "_", `\`, "_")

func sanitizeAppName(name string) string { return unsafeAppNameChars.Replace(name) }

// checkStreaming returns nil when the server is a standby whose WAL receiver streams.
func (p *Postgres) checkStreaming() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := p.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var inRecovery bool
	var status string
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		coalesce((SELECT status FROM pg_stat_wal_receiver), 'no WAL receiver')`).Scan(&inRecovery, &status)
	switch {
	case err != nil:
		return err
	case !inRecovery:
		return errors.New("not in recovery")
	case status != "streaming":
		return fmt.Errorf("WAL receiver: %s", status)
	}
	return nil
}

// Promote turns a replica into a primary ("pg_ctl promote") and returns once it accepts writes.
func (p *Postgres) Promote() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out, err := p.run(p.life, "pg_ctl", "promote", "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())), "-D", p.DataDir)
	if err != nil {
		return fmt.Errorf("pgtest: promote %s: %w: %s", p, err, strings.TrimSpace(out))
	}
	err = waitFor(startTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := p.Connect(ctx, "postgres")
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var inRecovery bool
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return err
		}
		if inRecovery {
			return errors.New("still in recovery")
		}
		return nil
	})
	if err != nil {
		return withLog(fmt.Errorf("pgtest: promote %s: %w", p, err), p.LogFile, 0)
	}
	p.primary = nil
	return nil
}

// DSN returns a keyword/value connection string for a TCP connection to db as user:
// "host=127.0.0.1 port=N user=U password=P dbname=D sslmode=disable".
func (p *Postgres) DSN(db, user, password string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable",
		p.Host, p.Port, dsnValue(user), dsnValue(password), dsnValue(db))
}

// dsnValue quotes a connection-string value when it is empty or holds spaces, quotes or backslashes.
func dsnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`+"\t\n") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// URL returns the postgres:// form of DSN.
func (p *Postgres) URL(db, user, password string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     fmt.Sprintf("%s:%d", p.Host, p.Port),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if password == "" {
		u.User = url.User(user)
	}
	return u.String()
}

// Connect opens a connection to db as SuperUser through the Unix socket, which needs no password
// whatever Options.Auth says. The caller closes it.
func (p *Postgres) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		dsnValue(p.SocketDir), p.Port, SuperUser, dsnValue(db)))
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect to %s database %s: %w", p, db, err)
	}
	return conn, nil
}

// Exec runs sql in db as SuperUser with the simple query protocol, so sql may hold several
// statements; they run in one implicit transaction unless sql has its own BEGIN/COMMIT.
func (p *Postgres) Exec(ctx context.Context, db, sql string) error {
	conn, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s database %s: %w", p, db, err)
	}
	return nil
}

// CreateUser creates a LOGIN role with this password, stored as an MD5 hash when Options.Auth is
// "md5" and as a SCRAM-SHA-256 verifier otherwise. An existing role gets the new password.
// An empty name means SuperUser.
func (p *Postgres) CreateUser(ctx context.Context, name, password string) error {
	enc := "scram-sha-256"
	if p.opts.Auth == "md5" {
		enc = "md5"
	}
	if name == "" {
		name = SuperUser
	}
	role := pgx.Identifier{name}.Sanitize()
	sql := fmt.Sprintf(`SET password_encryption = '%s';
DO $pgtest$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN
    CREATE ROLE %s LOGIN;
  END IF;
END $pgtest$;
ALTER ROLE %s LOGIN PASSWORD %s;`,
		enc, sqlLiteral(name), role, role, sqlLiteral(password))
	return p.Exec(ctx, "postgres", sql)
}

// CreateDatabase creates database name owned by owner ("" means SuperUser).
func (p *Postgres) CreateDatabase(ctx context.Context, name, owner string) error {
	if owner == "" {
		owner = SuperUser
	}
	return p.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{owner}.Sanitize()))
}

// sqlLiteral quotes s as an SQL string literal (standard_conforming_strings is on).
func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// run runs one of the PostgreSQL programs as the server's user, in the server's directory, with
// an environment of its own (no PG* variables of the caller leak in), and returns its output.
// The program runs in a process group of its own, killed whole when ctx ends, so a Ctrl-C reaches
// the test process (which cleans up) rather than a half-done pg_basebackup and its WAL child.
func (p *Postgres) run(ctx context.Context, program string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, program), args...)
	cmd.Dir = p.dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + p.dir,
		"LC_ALL=C",
		"PGPASSWORD=" + SuperPassword,
	}
	if tz, ok := os.LookupEnv("TZ"); ok {
		cmd.Env = append(cmd.Env, "TZ="+tz)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mkdir makes a directory owned by the server's user.
func (p *Postgres) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return p.chown(dir)
}

// writeFile writes a file owned by the server's user.
func (p *Postgres) writeFile(path, content string, perm os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return p.chown(path)
}

func (p *Postgres) chown(path string) error {
	if p.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}
