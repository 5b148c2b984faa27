package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// goneProxy forwards connections to pg; once armed, the first Parse a connection forwards is
// answered instead with the FATAL 57P01 of a server shutting down, and the connection closed:
// a server that went away between its checkout and the request.
type goneProxy struct {
	ln    net.Listener
	armed atomic.Bool
}

func startGoneProxy(t *testing.T) *goneProxy {
	p := &goneProxy{}
	p.ln = listenProxy(t, p.serve)
	return p
}

// listenProxy listens on a free loopback port until the test ends, and serves each connection
// with serve in a goroutine of its own: the shape of the tests' fault-injecting proxies.
func listenProxy(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln
}

func (p *goneProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *goneProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.Port)))
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(c, up) }()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if buf[0] == 'P' && p.armed.CompareAndSwap(true, false) {
			fatal, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01",
				Message: "terminating connection due to administrator command"}).Encode(nil)
			up.Close()
			_, _ = c.Write(fatal)
			return
		}
		if _, err := up.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestDeferredParseRetriedElsewhere: with a query hook, the unnamed statement's Parse waits and,
// with no Bind in its batch, is checked on a server at the Sync. When that server (a replica, so
// the request may be retried on another) turns out to be gone before it answers, the client still
// gets its ReadyForQuery.
func TestDeferredParseRetriedElsewhere(t *testing.T) {
	px := startGoneProxy(t)
	s := startSluice(t, poolConfig{
		PoolSize: 2,
		Servers:  fmt.Sprintf(`[["127.0.0.1", %d, "primary"], ["127.0.0.1", %d, "replica"]]`, pg.Port, px.port()),
		Pool:     "default_role = \"replica\"\nrole_discovery = false",
		General:  "\n[plugins.e2e_memo]\n",
	})
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// A first statement on the replica, so its server sits in the pool.
	if err := c.Exec(ctx, "SELECT 1").Close(); err != nil {
		t.Fatal(err)
	}
	px.armed.Store(true)
	done := make(chan string, 1)
	go func() {
		done <- protocolTrace(t, c, []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Sync{}}, 1, false)
	}()
	select {
	case got := <-done:
		if got != "*pgproto3.ParseComplete\nReadyForQuery I\n" {
			t.Errorf("Parse, Sync on a server gone before its reply:\n%s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ReadyForQuery for Parse, Sync after the server went away before answering")
	}
	if px.armed.Load() {
		t.Fatal("the Parse did not go to the replica: the test proved nothing")
	}
}
