package netio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pair returns a wrapped client end and the raw server end of a loopback TCP connection.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	w := Wrap(c)
	if _, ok := w.(*Conn); !ok {
		t.Fatalf("Wrap of a TCP connection returned %T", w)
	}
	t.Cleanup(func() { w.Close(); s.Close() })
	return w, s
}

func TestReadWriteRoundTrip(t *testing.T) {
	c, s := pair(t)
	msg := []byte("hello over raw syscalls")
	if n, err := c.Write(msg); err != nil || n != len(msg) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if _, err := s.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "back" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

// TestWriteLargerThanSocketBuffers checks that a write the kernel cannot take at once waits in
// the poller (EAGAIN) and completes as the peer reads.
func TestWriteLargerThanSocketBuffers(t *testing.T) {
	c, s := pair(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		done <- err
	}()
	got, err := io.ReadAll(io.LimitReader(s, int64(len(big))))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("peer read %d bytes, %v", len(got), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReadEOFAndDeadline(t *testing.T) {
	c, s := pair(t)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	s.Close()
	if _, err := c.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
	}
}

func TestReadAfterCloseIsNetErrClosed(t *testing.T) {
	c, _ := pair(t)
	c.Close()
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if w := Wrap(a); w != a {
		t.Fatalf("Wrap(net.Pipe) = %T, want the conn itself", w)
	}
}

// TestPending checks that Pending sees waiting bytes and the peer's close without consuming
// anything, and reports an idle connection as quiet.
func TestPending(t *testing.T) {
	c, s := pair(t)
	p := c.(*Conn)
	if p.Pending() {
		t.Fatal("Pending on a connection the peer has said nothing on")
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	checkPending(t, p)
	buf := make([]byte, 4)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("Read after Pending = %q, %v: Pending must not consume", buf[:n], err)
	}
	if p.Pending() {
		t.Fatal("Pending after everything was read")
	}
	s.Close()
	checkPending(t, p)
	c.Close()
	if !p.Pending() {
		t.Fatal("Pending on a closed connection is false; it must say a read would not block")
	}
}

// checkPending waits (briefly: loopback delivery is not instant) for Pending to turn true.
func checkPending(t *testing.T, p *Conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !p.Pending() {
		if time.Now().After(deadline) {
			t.Fatal("Pending stayed false")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := Wrap(c).(*Conn)
	if w.Closed() {
		t.Fatal("Closed() before Close")
	}
	w.Close()
	if !w.Closed() {
		t.Fatal("not Closed() after Close")
	}
}
