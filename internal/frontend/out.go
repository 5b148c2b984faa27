package frontend

import (
	"net"
	"sync"
)

// outBufSize is the capacity of a client's output buffer; a write larger than what is left
// flushes first, and a write larger than the whole buffer goes straight to the socket.
const outBufSize = 16 << 10

var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, outBufSize); return &b }}

// clientOut buffers what goes to one client. Every method must be called with mu held: the
// client's reader and its result pump both write, and mu orders them. The buffer is taken from a
// pool on first use and given back when the client goes idle, so idle clients cost nothing here.
type clientOut struct {
	mu   sync.Mutex
	conn net.Conn
	buf  *[]byte
	err  error // the first write error; every later write fails with it
	// writes counts the writes to conn: a mark taken before one no longer matches after it.
	writes uint64
}

// outMark is a point in a client's output, from Mark.
type outMark struct {
	n      int    // bytes buffered then
	writes uint64 // writes to the connection before then
}

// Write buffers p. It implements io.Writer for wire.Reader.Forward.
func (o *clientOut) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	if o.buf == nil {
		o.buf = outBufs.Get().(*[]byte)
	}
	b := *o.buf
	if len(b)+len(p) > cap(b) {
		if err := o.Flush(); err != nil {
			return 0, err
		}
		b = *o.buf
		if len(p) >= cap(b) {
			o.writes++
			if _, err := o.conn.Write(p); err != nil {
				o.err = err
				return 0, err
			}
			return len(p), nil
		}
	}
	*o.buf = append(b, p...)
	return len(p), nil
}

// Pending reports whether buffered bytes wait for a Flush.
func (o *clientOut) Pending() bool { return o.buf != nil && len(*o.buf) > 0 }

// Flush writes what is buffered.
func (o *clientOut) Flush() error {
	if o.err != nil {
		return o.err
	}
	if o.buf == nil || len(*o.buf) == 0 {
		return nil
	}
	o.writes++
	_, err := o.conn.Write(*o.buf)
	*o.buf = (*o.buf)[:0]
	if err != nil {
		o.err = err
	}
	return err
}

// Mark returns the end of the output so far, for DropSince.
func (o *clientOut) Mark() outMark {
	m := outMark{writes: o.writes}
	if o.buf != nil {
		m.n = len(*o.buf)
	}
	return m
}

// DropSince discards what was buffered after m and reports whether it could: once a write to the
// client since m may have sent some of it, nothing is dropped.
func (o *clientOut) DropSince(m outMark) bool {
	if o.writes != m.writes {
		return false
	}
	if o.buf != nil {
		*o.buf = (*o.buf)[:m.n]
	}
	return true
}

// Idle gives the buffer back to the pool when it is empty.
func (o *clientOut) Idle() {
	if o.buf != nil && len(*o.buf) == 0 {
		outBufs.Put(o.buf)
		o.buf = nil
	}
}

// send writes msg and flushes, taking the lock itself.
func (o *clientOut) send(msg []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := o.Write(msg); err != nil {
		return err
	}
	return o.Flush()
}
