package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// pgbouncerBin is Debian's PgBouncer.
const pgbouncerBin = "/usr/sbin/pgbouncer"

// startPgBouncer runs PgBouncer in transaction mode in front of pg, with the
// same pool size sluice gets, client auth (md5 or scram-sha-256) from an
// auth_file, and room for the idle clients of the memory measurement.
//
// PgBouncer refuses to run as root. When the bench is root, PgBouncer runs as
// the postgres OS user, set directly as the child's credentials rather than
// through runuser: runuser forks under a PAM session, so its pid would not be
// PgBouncer's (whose memory is measured), and pam_limits could lower the
// RLIMIT_NOFILE the idle clients need.
func startPgBouncer(ctx context.Context, pg *pgtest.Postgres, o options, auth string) (*process, error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, fmt.Errorf("pgbouncer port: %w", err)
	}
	dir, err := os.MkdirTemp("", "sluice-bench-pgbouncer-")
	if err != nil {
		return nil, err
	}
	cred, err := nonRootCredential()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	sum := md5.Sum([]byte(benchPassword + benchUser))
	userlist := fmt.Sprintf("%q %q\n", benchUser, "md5"+hex.EncodeToString(sum[:]))
	if auth == authSCRAM {
		// SCRAM with clients needs the password itself (or a verifier, which could not log in
		// to this md5 Postgres): the same plain password sluice has.
		userlist = fmt.Sprintf("%q %q\n", benchUser, benchPassword)
	}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = %s
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = %d
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = %s
pidfile = %s
`, benchDB, pg.Host, pg.Port, benchDB,
		port, auth, filepath.Join(dir, "userlist.txt"), o.poolSize, o.idle+1000,
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))

	iniPath := filepath.Join(dir, "pgbouncer.ini")
	for name, content := range map[string]string{"userlist.txt": userlist, "pgbouncer.ini": ini} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if cred != nil {
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}

	cmd := exec.Command(pgbouncerBin, iniPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	t := target{name: targetPgBouncer, host: "127.0.0.1", port: port}
	fmt.Printf("pgbouncer: starting on %s:%d (pool_size=%d)\n", t.host, t.port, o.poolSize)
	p, err := startProcess(ctx, t, cmd, dir, filepath.Join(dir, "stderr.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.logPath = filepath.Join(dir, "pgbouncer.log")
	// The pid whose memory and CPU time are measured is the one PgBouncer writes to its
	// pidfile, the process that serves, should it ever not be the one started here (a
	// wrapper such as runuser, or a daemon's fork).
	if pid := pidFromFile(filepath.Join(dir, "pgbouncer.pid")); pid != 0 && pid != p.pid {
		fmt.Printf("pgbouncer: started as pid %d, serving as pid %d (its pidfile)\n", p.pid, pid)
		p.pid = pid
	}
	return p, nil
}

// nonRootCredential returns the postgres OS user's credential when the bench
// runs as root, and nil (run as ourselves) otherwise.
func nonRootCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgbouncer refuses to run as root and there is no postgres user to run it as: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
}

// pgbouncerVersion is the first line of `pgbouncer --version`, e.g. "PgBouncer 1.18.0".
func pgbouncerVersion() string {
	out, err := exec.Command(pgbouncerBin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
