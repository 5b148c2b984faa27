// Package netio reads and writes sockets with raw system calls under Go's network poller.
//
// A proxy does a read and a write per message batch on each side, and most of those calls are
// short. Through net.Conn each is a "blocking" system call to the runtime: it gives up its P on
// entry and must get one back on exit, and a write that wakes the peer often runs long enough
// for the runtime's monitor to hand the P to another thread. Here the calls are made on
// non-blocking sockets with syscall.RawSyscall inside syscall.RawConn's Read and Write, so the
// poller still parks the goroutine on EAGAIN and deadlines still apply, without the per-call
// scheduler work.
package netio

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write use raw system calls. Like net.Conn, one goroutine may
// read while another writes, but each of Read and Write must not be called concurrently with
// itself.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	rbuf []byte
	rn   int
	rerr error
	rfn  func(fd uintptr) bool

	wbuf []byte
	wn   int
	werr error
	wfn  func(fd uintptr) bool

	pend bool
	pfn  func(fd uintptr)
}

// Wrap returns c with raw-syscall I/O when it is a TCP or Unix socket, and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	x := &Conn{Conn: c, rc: rc}
	x.rfn, x.wfn, x.pfn = x.read, x.write, x.peek // bound once: no closure allocation per call
	return x
}

// Read reads once into p, waiting in the poller while nothing is there.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerr = p, 0, nil
	err := c.rc.Read(c.rfn)
	c.rbuf = nil
	if err != nil {
		return 0, wrapErr("read", err)
	}
	if c.rerr != nil {
		return c.rn, wrapErr("read", c.rerr)
	}
	return c.rn, nil
}

func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			if n == 0 {
				c.rerr = io.EOF
			}
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
			return true
		}
	}
}

// Write writes all of p, waiting in the poller whenever the socket buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wbuf, c.wn, c.werr = p, 0, nil
	err := c.rc.Write(c.wfn)
	n := c.wn
	c.wbuf = nil
	if err != nil {
		return n, wrapErr("write", err)
	}
	if c.werr != nil {
		return n, wrapErr("write", c.werr)
	}
	return n, nil
}

func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn))
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// wrapErr gives errors the shape net.Conn's have, so callers' errors.Is checks (io.EOF,
// os.ErrDeadlineExceeded, net.ErrClosed) keep working.
func wrapErr(op string, err error) error {
	if err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: "ip", Err: err}
}

// Pending reports, without blocking and without consuming anything, whether a read would return
// at once: bytes are waiting, the peer closed its side, or the socket failed. For a TLS
// connection over c, only what has not reached the TLS layer is seen. Like Read, it must not be
// called concurrently with itself.
func (c *Conn) Pending() bool {
	c.pend = false
	if err := c.rc.Control(c.pfn); err != nil {
		return true // closed
	}
	return c.pend
}

// Closed reports whether the connection was closed, by this process: without a system call.
func (c *Conn) Closed() bool {
	return c.rc.Control(func(uintptr) {}) != nil
}

func (c *Conn) peek(fd uintptr) {
	var b [1]byte
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		// Anything but "would block" is news: data, the end of the stream, or an error.
		c.pend = e != syscall.EAGAIN
		return
	}
}
