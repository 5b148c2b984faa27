package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestProtocolClientThatDoesNotRead: a client that writes queries (or asks for a big result)
// and does not read the replies must be back-pressured, not buffered: sluice's memory stays
// bounded and the pool's other clients keep working.
func TestProtocolClientThatDoesNotRead(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			// Room for the misbehaving client and the others (in session mode each holds a
			// server until it leaves, at its test's end).
			s := startSluiceProcess(t, poolConfig{Mode: mode, PoolSize: 4})
			selectOne(t, s) // the runtime's baseline: a pool and a server
			base := sluiceRSS(t, s)

			floods := []struct {
				name string
				msgs []pgproto3.FrontendMessage
			}{
				{"50 MB of queries, nothing read", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}}},
				// No Sync: the batch stays open, and Postgres holds its replies until a Flush.
				{"50 MB of one batch, nothing read", []pgproto3.FrontendMessage{
					&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				}},
			}
			for _, f := range floods {
				t.Run(f.name, func(t *testing.T) {
					c := dialRaw(t, s)
					c.login()
					written := flood(c, f.msgs, 50<<20, 2*time.Second)
					checkOthersServed(t, s)
					grew := sluiceRSS(t, s) - base
					if grew > 32<<20 {
						t.Errorf("sluice grew by %d MiB after a client wrote %d MiB and read nothing", grew>>20, written>>20)
					}
					t.Logf("%d MiB written before the client was back-pressured; sluice grew by %d MiB", written>>20, grew>>20)
				})
			}

			t.Run("slow reader of a big result", func(t *testing.T) {
				c := dialRaw(t, s)
				c.login()
				// About 200 MB of rows, read at about 1 MB/s.
				c.send(&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"})
				buf := make([]byte, 16<<10)
				deadline := time.Now().Add(2 * time.Second)
				var read int
				for time.Now().Before(deadline) {
					_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
					n, err := c.conn.Read(buf)
					if err != nil {
						t.Fatalf("read after %d bytes: %v", read, err)
					}
					read += n
					time.Sleep(15 * time.Millisecond)
				}
				checkOthersServed(t, s)
				if grew := sluiceRSS(t, s) - base; grew > 32<<20 {
					t.Errorf("sluice grew by %d MiB while a client read %d KiB of a 200 MB result", grew>>20, read>>10)
				}
			})
			selectOne(t, s)
		})
	}
}

// flood writes msgs to c again and again for up to d or until limit bytes are written, and
// returns how many bytes the connection took.
func flood(c *rawClient, msgs []pgproto3.FrontendMessage, limit int, d time.Duration) int {
	var chunk []byte
	for len(chunk) < 64<<10 {
		for _, m := range msgs {
			chunk, _ = m.Encode(chunk)
		}
	}
	deadline := time.Now().Add(d)
	_ = c.conn.SetWriteDeadline(deadline)
	written := 0
	for written < limit && time.Now().Before(deadline) {
		n, err := c.conn.Write(chunk)
		written += n
		if err != nil {
			break
		}
	}
	return written
}

// checkOthersServed runs a query on a new client, which must be answered while another client of
// the pool misbehaves.
func checkOthersServed(t *testing.T, s *Sluice) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := connect(t, s)
	var n int
	if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("another client: %d, %v", n, err)
	}
}

// sluiceRSS is the resident memory of a sluice started by startSluiceProcess, in bytes.
func sluiceRSS(t *testing.T, s *Sluice) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/<pid>/status")
	return 0
}
