package frontend

import (
	"context"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/netio"
	"github.com/sluicepg/sluice/internal/route"
)

// An accepted connection has the configured keepalive without login setting it: the kernel
// copies it from the listening socket.
func TestListenTCPKeepAliveInherited(t *testing.T) {
	g := &config.General{TCPKeepalivesIdle: 77 * time.Second, TCPKeepalivesInterval: 11 * time.Second, TCPKeepalivesCount: 3}
	ln, err := ListenTCP(context.Background(), "127.0.0.1:0", g)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if tl, ok := ln.(*tcpListener); !ok || tl.ka != clientSockOpts(g) {
		t.Fatalf("listener %T does not record the keepalive it gives", ln)
	}
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name       string
		level, opt int
		v          int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 77},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 11},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 3},
	}
	_ = rc.Control(func(fd uintptr) {
		for _, w := range want {
			got, err := syscall.GetsockoptInt(int(fd), w.level, w.opt)
			if err != nil || got != w.v {
				t.Errorf("%s = %d (%v), want %d", w.name, got, err, w.v)
			}
		}
	})
}

// acceptOne listens with g, dials the listener and returns the accepted connection.
func acceptOne(t *testing.T, g *config.General) (net.Listener, *net.TCPConn) {
	t.Helper()
	ln, err := ListenTCP(context.Background(), "127.0.0.1:0", g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ln, c.(*net.TCPConn)
}

func userTimeoutOf(t *testing.T, c *net.TCPConn) time.Duration {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	d, err := netio.UserTimeout(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// An accepted connection has tcp_user_timeout as its TCP_USER_TIMEOUT, from the listening socket.
func TestListenTCPUserTimeout(t *testing.T) {
	for _, want := range []time.Duration{10 * time.Second, 2500 * time.Millisecond, 0} {
		g := &config.General{TCPKeepalivesIdle: 5 * time.Second, TCPKeepalivesInterval: 5 * time.Second, TCPKeepalivesCount: 5, TCPUserTimeout: want}
		_, c := acceptOne(t, g)
		if got := userTimeoutOf(t, c); got != want {
			t.Errorf("tcp_user_timeout %v: the accepted socket has TCP_USER_TIMEOUT %v", want, got)
		}
	}
}

// A reload that changes tcp_user_timeout reaches connections accepted after it: login sets the
// new value where it differs from the listener's.
func TestLoginSetsChangedUserTimeout(t *testing.T) {
	g := &config.General{TCPKeepalivesIdle: 5 * time.Second, TCPKeepalivesInterval: 5 * time.Second, TCPKeepalivesCount: 5, TCPUserTimeout: 10 * time.Second}
	ln, c := acceptOne(t, g)
	inherited := ln.(*tcpListener).ka
	reloaded := *g
	reloaded.TCPUserTimeout = 1234 * time.Millisecond
	reloaded.ClientLoginTimeout = time.Millisecond // login gives up at once: no client speaks
	tbl, _ := route.Build(&config.Config{General: reloaded, Pools: map[string]*config.Pool{}}, nil)
	l := NewListener(func() *route.Table { return tbl }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l.login(c, 1, &inherited)
	if got := userTimeoutOf(t, c); got != 1234*time.Millisecond {
		t.Errorf("after login under the reloaded file, TCP_USER_TIMEOUT = %v, want 1.234s", got)
	}
}

// tcp_defer_accept sets TCP_DEFER_ACCEPT on the listening socket; a client that sends its first
// bytes right after connecting is accepted at once, with them waiting to be read.
func TestListenTCPDeferAccept(t *testing.T) {
	for _, on := range []bool{true, false} {
		g := &config.General{TCPKeepalivesIdle: 5 * time.Second, TCPKeepalivesInterval: 5 * time.Second, TCPKeepalivesCount: 5, TCPDeferAccept: on}
		ln, err := ListenTCP(context.Background(), "127.0.0.1:0", g)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rc, err := ln.(*tcpListener).Listener.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		_ = rc.Control(func(fd uintptr) {
			got, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
		})
		if gerr != nil || (got > 0) != on {
			t.Errorf("tcp_defer_accept %v: the listener's TCP_DEFER_ACCEPT is %d (%v)", on, got, gerr)
		}
		d, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}); err != nil { // an SSLRequest
			t.Fatal(err)
		}
		start := time.Now()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("tcp_defer_accept %v: a client that spoke at once was accepted after %v", on, took)
		}
		buf := make([]byte, 8)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Errorf("tcp_defer_accept %v: read the first bytes: %v", on, err)
		}
	}
}
