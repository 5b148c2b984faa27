package frontend

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/config"
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
	if tl, ok := ln.(*tcpListener); !ok || tl.ka != keepAlive(g) {
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
