package pgtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Redis is a redis-server started by StartRedis, listening on Addr. It keeps nothing on disk: a
// Kill and Start bring it back empty, as a restarted cache would be. Its methods may be called from
// several goroutines.
type Redis struct {
	Addr    string // "127.0.0.1:Port"
	Port    int    // kept across Kill and Start
	LogFile string

	dir string
	bin string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited; nil when not started
	removed bool
}

// StartRedis starts a redis-server (found on $PATH) on a free port in a temporary directory and
// returns once it answers PING. The caller stops it with Stop; Cleanup stops it too.
func StartRedis() (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("pgtest: redis-server not found (run make deps): %w", err)
	}
	dir, err := makeDir("redis", nil)
	if err != nil {
		return nil, err
	}
	r := &Redis{LogFile: filepath.Join(dir, "redis.log"), dir: dir, bin: bin}
	if err := register(r); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, errors.Join(err, r.destroy())
		}
		r.Port, r.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = r.start()
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return nil, errors.Join(err, r.destroy())
		}
	}
}

// String names the server in messages.
func (r *Redis) String() string { return "redis (" + r.Addr + ")" }

// start runs redis-server in its own process group, so a Ctrl-C at a terminal reaches the test
// binary (which cleans up in order) and not the server, and waits until it answers PING.
func (r *Redis) start() error {
	logf, err := os.OpenFile(r.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	offset := fileSize(r.LogFile)
	cmd := exec.Command(r.bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port), "--protected-mode", "no",
		"--dir", r.dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--pidfile", filepath.Join(r.dir, "redis.pid"), "--logfile", "")
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start %s: %w", r, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited

	err = waitFor(startTimeout, func() error {
		select {
		case <-exited:
			return errExited
		default:
		}
		return r.ping()
	})
	if err == nil {
		return nil
	}
	r.kill()
	err = fmt.Errorf("pgtest: start %s: %w", r, err)
	if strings.Contains(logTail(r.LogFile, offset), "Address already in use") {
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return withLog(err, r.LogFile, offset)
}

// ping sends an inline PING and expects +PONG.
func (r *Redis) ping() error {
	conn, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// kill sends SIGKILL and waits for the process to be reaped. The caller holds r.mu or owns r.
func (r *Redis) kill() {
	if r.exited == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.exited
	r.cmd, r.exited = nil, nil
}

// Kill kills the server with SIGKILL, like a crash; its data is lost. Start brings it back on the
// same port. Killing a server that is not running does nothing.
func (r *Redis) Kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kill()
	return nil
}

// Pause stops the server with SIGSTOP: its connections stay open and its port accepts, but
// nothing is answered, as a Redis that hangs (swapping, a long blocking command, a host that
// froze) would do. Resume ends it.
func (r *Redis) Pause() error { return r.signal(syscall.SIGSTOP) }

// Resume continues a server stopped by Pause.
func (r *Redis) Resume() error { return r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exited == nil {
		return fmt.Errorf("pgtest: signal %s: not running", r)
	}
	return r.cmd.Process.Signal(sig)
}

// Start starts the server again after Kill, on the same port, and waits until it answers PING.
func (r *Redis) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.removed:
		return fmt.Errorf("pgtest: start %s: stopped and removed", r)
	case r.exited != nil:
		select {
		case <-r.exited:
			r.cmd, r.exited = nil, nil
		default:
			return fmt.Errorf("pgtest: start %s: already running", r)
		}
	}
	return r.start()
}

// Stop shuts the server down (SIGTERM, then SIGKILL after five seconds) and removes its directory.
// Stopping twice does nothing.
func (r *Redis) Stop() error { return r.destroy() }

func (r *Redis) destroy() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removed {
		return nil
	}
	if r.exited != nil {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
			r.cmd, r.exited = nil, nil
		case <-time.After(5 * time.Second):
			r.kill()
		}
	}
	r.removed = true
	unregister(r)
	return removeDir(r.dir)
}
