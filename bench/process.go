package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a pooler this bench started and must stop.
type process struct {
	target
	cmd     *exec.Cmd
	dir     string // its config and log; removed by stop
	logPath string
	exited  chan struct{} // closed when cmd.Wait returns
	waitErr error         // valid after exited is closed
}

// startProcess runs cmd with its output in logPath and waits until it accepts
// TCP connections on t's address. The process gets its own process group, so
// a Ctrl-C on the terminal reaches only the bench, which then stops it in
// order, and it is sent SIGKILL if the bench dies without doing so.
func startProcess(ctx context.Context, t target, cmd *exec.Cmd, dir, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", t.name, err)
	}
	p := &process{target: t, cmd: cmd, dir: dir, logPath: logPath, exited: make(chan struct{})}
	p.pid = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitListening(ctx, 15*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitListening polls the target's address until a TCP connect succeeds.
func (p *process) waitListening(ctx context.Context, limit time.Duration) error {
	addr := net.JoinHostPort(p.host, strconv.Itoa(p.port))
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before listening on %s (%v); its log:\n%s", p.name, addr, p.waitErr, p.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not listening on %s after %s; its log:\n%s", p.name, addr, limit, p.logTail(20))
		}
	}
}

// alive reports whether the process is still running, with the reason if not.
func (p *process) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); its log:\n%s", p.name, p.waitErr, p.logTail(20))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to five seconds, then SIGKILL, and removes the
// process's directory. It is safe to call more than once.
func (p *process) stop() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.dir != "" && os.Getenv("BENCH_KEEP") == "" {
		os.RemoveAll(p.dir)
		p.dir = ""
	}
}

// logTail returns the last n lines of the process's log.
func (p *process) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) == 0 {
		return "(empty)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
