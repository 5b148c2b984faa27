package backend

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/wire"
)

// msgs builds a stream of n Query messages of growing sizes.
func msgs(n int) (stream []byte, ends []int) {
	for i := range n {
		stream = wire.AppendQuery(stream, "SELECT "+strconv.Itoa(i)+string(bytes.Repeat([]byte(" "), i*7)))
		ends = append(ends, len(stream))
	}
	return stream, ends
}

func TestFramerFindsMessageStartsWhereverWritesCut(t *testing.T) {
	stream, ends := msgs(20)
	isStart := map[int]bool{0: true}
	for _, e := range ends[:len(ends)-1] {
		isStart[e] = true
	}
	for _, cut := range []int{1, 2, 3, 4, 5, 6, 7, 13, 64, len(stream)} {
		t.Run("writes of "+strconv.Itoa(cut), func(t *testing.T) {
			var f framer
			total := 0
			for off := 0; off < len(stream); off += cut {
				p := stream[off:min(off+cut, len(stream))]
				first, starts := f.scan(p)
				wantFirst, wantStarts := -1, 0
				for i := range p {
					if isStart[off+i] {
						if wantFirst < 0 {
							wantFirst = i
						}
						wantStarts++
					}
				}
				if first != wantFirst || starts != wantStarts {
					t.Fatalf("at %d: scan = %d, %d; want %d, %d", off, first, starts, wantFirst, wantStarts)
				}
				total += starts
			}
			if total != len(ends) {
				t.Errorf("%d starts, want %d", total, len(ends))
			}
		})
	}
}

// fakeMirror is a server that lets anyone in (trust), records what it is sent after the login,
// and answers nothing. While stalled it reads nothing, as a blackholed server.
type fakeMirror struct {
	t      *testing.T
	ln     net.Listener
	mu     sync.Mutex
	got    [][]byte // per connection
	stall  chan struct{}
	logins int
}

func startFakeMirror(t *testing.T, addr string) *fakeMirror {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMirror{t: t, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *fakeMirror) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func (f *fakeMirror) handle(c net.Conn) {
	defer c.Close()
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:]))-4); err != nil {
		return
	}
	c.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 0, wire.ReadyForQuery, 0, 0, 0, 5, 'I'})
	f.mu.Lock()
	f.logins++
	i := len(f.got)
	f.got = append(f.got, nil)
	stall := f.stall
	f.mu.Unlock()
	if stall != nil {
		<-stall
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		f.mu.Lock()
		f.got[i] = append(f.got[i], buf[:n]...)
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (f *fakeMirror) received() (logins int, got [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.got {
		got = append(got, bytes.Clone(g))
	}
	return f.logins, got
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mirrorTo(f *fakeMirror, queue int) *Mirror {
	host, port, _ := net.SplitHostPort(f.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return &Mirror{Params: Params{Host: host, Port: p, User: "u", Database: "d", ConnectTimeout: time.Second}, QueueBytes: queue}
}

func TestMirrorGetsEveryByteInOrder(t *testing.T) {
	f := startFakeMirror(t, "127.0.0.1:0")
	m := mirrorTo(f, 0)
	tee := startMirrors([]*Mirror{m})
	stream, ends := msgs(200)
	for off := 0; off < len(stream); off += 37 {
		tee.write(stream[off:min(off+37, len(stream))])
	}
	waitFor(t, 5*time.Second, "the mirror to get the stream", func() bool {
		_, got := f.received()
		return len(got) == 1 && len(got[0]) == len(stream)
	})
	_, got := f.received()
	if !bytes.Equal(got[0], stream) {
		t.Fatal("the mirror got other bytes than the server")
	}
	if m.Stats.Messages.Load() != uint64(len(ends)) || m.Stats.Bytes.Load() != uint64(len(stream)) || m.Stats.DroppedBytes.Load() != 0 {
		t.Errorf("stats: %d messages, %d bytes, %d dropped", m.Stats.Messages.Load(), m.Stats.Bytes.Load(), m.Stats.DroppedBytes.Load())
	}
	tee.close()
	waitFor(t, 5*time.Second, "the mirror connection to close", func() bool { return m.Stats.Connections.Load() == 0 })
	_, got = f.received()
	if want := append(bytes.Clone(stream), wire.Terminate, 0, 0, 0, 4); !bytes.Equal(got[0], want) {
		t.Error("the mirror connection did not end with Terminate")
	}
}

// TestStalledMirrorDropsWholeMessagesWithoutBlocking: a mirror that reads nothing never blocks
// the writer; what it missed is counted, and its next session starts at a message's start.
func TestStalledMirrorDropsWholeMessagesWithoutBlocking(t *testing.T) {
	f := startFakeMirror(t, "127.0.0.1:0")
	f.stall = make(chan struct{})
	m := mirrorTo(f, 64<<10)
	tee := startMirrors([]*Mirror{m})
	defer tee.close()
	waitFor(t, 5*time.Second, "the login", func() bool { n, _ := f.received(); return n == 1 })
	stream, _ := msgs(300)
	start := time.Now()
	for range 200 { // about 40 MB against a stalled reader
		for off := 0; off < len(stream); off += 1000 {
			tee.write(stream[off:min(off+1000, len(stream))])
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("writing took %v against a stalled mirror", d)
	}
	if m.Stats.DroppedMessages.Load() == 0 {
		t.Fatal("nothing was dropped")
	}
	close(f.stall)
	// After the gap, a new session; its bytes are whole messages from a message's start.
	mark := wire.AppendQuery(nil, "SELECT 'after'")
	waitFor(t, 30*time.Second, "a second session with the next message", func() bool {
		tee.write(mark) // dropped while the queue is still full
		n, got := f.received()
		if testing.Verbose() {
			c := tee.conns[0]
			c.mu.Lock()
			t.Logf("logins %d sessions %d queued %d acc %v resync %v; sent %d dropped %d conns %d errs %d", n, len(got), c.queued, c.accepting, c.resync, m.Stats.Messages.Load(), m.Stats.DroppedMessages.Load(), m.Stats.Connections.Load(), m.Stats.ConnectErrors.Load())
			c.mu.Unlock()
		}
		return len(got) >= 2 && bytes.HasSuffix(got[len(got)-1], mark)
	})
	_, got := f.received()
	if err := wholeMessages(got[len(got)-1]); err != nil {
		t.Errorf("the last session: %v", err)
	}
}

// wholeMessages checks that b is a run of whole messages.
func wholeMessages(b []byte) error {
	for len(b) > 0 {
		if len(b) < wire.HeaderLen {
			return fmt.Errorf("%d bytes left, less than a header", len(b))
		}
		n := int(binary.BigEndian.Uint32(b[1:])) + 1
		if b[0] != wire.Query || n > len(b) {
			return fmt.Errorf("not a whole Query message at %q", b[:wire.HeaderLen])
		}
		b = b[n:]
	}
	return nil
}

// TestMirrorDownThenBack: a mirror that refuses connections costs the writer nothing, and is
// used again once it listens.
func TestMirrorDownThenBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	m := &Mirror{Params: Params{Host: host, Port: p, User: "u", Database: "d", ConnectTimeout: time.Second}}
	tee := startMirrors([]*Mirror{m})
	defer tee.close()
	waitFor(t, 5*time.Second, "a failed login", func() bool { return m.Stats.ConnectErrors.Load() > 0 })
	stream, ends := msgs(10)
	tee.write(stream)
	if got := m.Stats.DroppedMessages.Load(); got != uint64(len(ends)) {
		t.Errorf("dropped %d messages, want %d", got, len(ends))
	}
	f := startFakeMirror(t, addr)
	waitFor(t, 15*time.Second, "a login to the mirror", func() bool { return m.Stats.Connections.Load() == 1 })
	tee.write(stream)
	waitFor(t, 5*time.Second, "the stream", func() bool {
		_, got := f.received()
		return len(got) == 1 && bytes.Equal(got[0], stream)
	})
}
