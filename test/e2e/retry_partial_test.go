package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// dyingProxy forwards connections to pg. Once armed, the first connection to forward a request
// of the extended protocol dies in the middle of its reply, as a backend does at an immediate
// shutdown: the first message of the reply, then the WARNING 57P01 that the backend sends as it
// quits, and the connection is closed. With pause set, the WARNING comes that much later than the
// first message, in a write of its own.
type dyingProxy struct {
	ln    net.Listener
	pause time.Duration
	armed atomic.Bool
	died  atomic.Bool
}

func startDyingProxy(t *testing.T, pause time.Duration) *dyingProxy {
	p := &dyingProxy{pause: pause}
	p.ln = listenProxy(t, p.serve)
	return p
}

func (p *dyingProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *dyingProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.Port)))
	if err != nil {
		return
	}
	defer up.Close()
	var dying atomic.Bool
	go func() {
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if dying.Load() {
				p.die(c, up, buf[:n])
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if (buf[0] == 'B' || buf[0] == 'P') && p.armed.CompareAndSwap(true, false) {
			dying.Store(true)
		}
		if _, err := up.Write(buf[:n]); err != nil {
			return
		}
	}
}

// die sends the first message of the reply that begins with got, then the WARNING, and closes.
func (p *dyingProxy) die(c, up net.Conn, got []byte) {
	for len(got) < 5 || len(got) < 1+int(binary.BigEndian.Uint32(got[1:5])) {
		more := make([]byte, 4096)
		n, err := up.Read(more)
		if err != nil {
			return
		}
		got = append(got, more[:n]...)
	}
	first := got[:1+int(binary.BigEndian.Uint32(got[1:5]))]
	warning, _ := (&pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "57P01",
		Message: "terminating connection due to immediate shutdown command"}).Encode(nil)
	out := append([]byte(nil), first...)
	if p.pause > 0 {
		if _, err := c.Write(out); err != nil {
			return
		}
		time.Sleep(p.pause)
		out = out[:0]
	}
	up.Close()
	_, _ = c.Write(append(out, warning...))
	p.died.Store(true)
}

// TestReadRetriedAfterReplyCutShort: a replica that dies while it runs a read sends what it had
// of its reply (here a BindComplete) together with its WARNING. The client has heard nothing of
// that reply yet, so the read runs elsewhere and the client gets its result. When the beginning
// of the reply did reach the client before the server went, the read cannot run again: the client
// gets an error, not a second copy of that beginning.
func TestReadRetriedAfterReplyCutShort(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pause time.Duration // between the first message of the reply and the WARNING
		code  string        // the client's error; "" for the result
	}{
		{name: "with the warning", pause: 0, code: ""},
		{name: "before the warning", pause: 300 * time.Millisecond, code: "08006"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px := startDyingProxy(t, tc.pause)
			s := startSluice(t, poolConfig{
				PoolSize: 2,
				Servers:  fmt.Sprintf(`[["127.0.0.1", %d, "primary"], ["127.0.0.1", %d, "replica"]]`, pg.Port, px.port()),
				Pool:     "default_role = \"replica\"\nrole_discovery = false",
			})
			ctx := context.Background()
			conn := connect(t, s)
			const read = "SELECT 40 + 2"
			var got int
			// The first run prepares the statement (pgx caches it): the second is a Bind.
			if err := conn.QueryRow(ctx, read).Scan(&got); err != nil {
				t.Fatal(err)
			}
			px.armed.Store(true)
			err := conn.QueryRow(ctx, read).Scan(&got)
			if !px.died.Load() {
				t.Fatalf("the read did not reach the dying replica (err %v): the test proved nothing", err)
			}
			if tc.code == "" {
				if err != nil || got != 42 {
					t.Fatalf("a read whose replica died before the client heard its reply: %d, %v; want 42 from another server", got, err)
				}
				if err := conn.QueryRow(ctx, read).Scan(&got); err != nil || got != 42 {
					t.Fatalf("the next read: %d, %v; want 42", got, err)
				}
				return
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("a read whose reply had begun to reach the client when its replica died: %v; want SQLSTATE %s", err, tc.code)
			}
		})
	}
}
