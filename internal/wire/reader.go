// Package wire frames PostgreSQL protocol messages on a byte stream without decoding them. The hot
// path of the proxy reads a message's 5-byte header here, forwards the bytes as they are, and hands
// only the few messages it must understand to pgproto3 for decoding.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// HeaderLen is the size of a message header: one type byte and a 4-byte big-endian length that
// counts itself but not the type byte.
const HeaderLen = 5

// bigBufSize is the size of the pooled buffer a Reader moves to when its small inline buffer is too
// small. Most batches of a busy client fit in it.
const bigBufSize = 16 << 10

// smallBufSize is the inline buffer every Reader has. An idle client costs only this, so keeping
// it small keeps 10,000 idle clients cheap, while a typical one-message query still fits.
const smallBufSize = 512

var bigBufs = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}

// ErrMessageTooLarge is returned when a message's length exceeds the Reader's limit.
var ErrMessageTooLarge = errors.New("message exceeds the size limit")

// ErrBadLength is returned for a length field smaller than the length field itself.
var ErrBadLength = errors.New("message length field is invalid")

// Reader is a buffered reader of framed messages. It is not safe for concurrent use.
//
// Slices returned by Message and Buffered point into the Reader's buffer and are valid only until
// the next call of any method that reads or discards, FillOnce excepted.
type Reader struct {
	rd    io.Reader
	buf   []byte
	r, w  int
	max   int
	big   *[]byte // non-nil when buf is a pooled big buffer
	small [smallBufSize]byte
	total uint64 // bytes read from rd
}

// NewReader returns a Reader over rd that refuses messages longer than maxMsg bytes (header
// included); maxMsg <= 0 means 1 GiB, Postgres' own limit.
func NewReader(rd io.Reader, maxMsg int) *Reader {
	r := &Reader{}
	r.Reset(rd, maxMsg)
	return r
}

// Reset makes r read from rd, dropping anything buffered.
func (r *Reader) Reset(rd io.Reader, maxMsg int) {
	if maxMsg <= 0 {
		maxMsg = 1 << 30
	}
	r.rd, r.max, r.r, r.w = rd, maxMsg, 0, 0
	r.releaseBig()
	r.buf = r.small[:]
}

// Unread puts b, bytes taken from the stream by someone else before r, in front of what r reads
// next.
func (r *Reader) Unread(b []byte) {
	if len(b) == 0 {
		return
	}
	r.grow(r.w - r.r + len(b))
	copy(r.buf[r.r+len(b):], r.buf[r.r:r.w])
	copy(r.buf[r.r:], b)
	r.w += len(b)
}

// BytesRead returns the number of bytes r has read from its stream.
func (r *Reader) BytesRead() uint64 { return r.total }

// Buffered returns the number of bytes read from the stream and not yet consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// Shrink gives a pooled buffer back when nothing is buffered, so an idle connection holds only the
// inline buffer. Call it before a read that may block for long.
func (r *Reader) Shrink() {
	if len(r.buf) > smallBufSize && r.r == r.w {
		r.releaseBig()
		r.buf, r.r, r.w = r.small[:], 0, 0
	}
}

func (r *Reader) releaseBig() {
	if r.big != nil {
		bigBufs.Put(r.big)
		r.big = nil
	}
}

// fill reads at least once from the stream, making room as needed so that need bytes from r.r can
// fit. It returns io.ErrUnexpectedEOF for an EOF inside a message.
func (r *Reader) fill(need int) error {
	if need > len(r.buf)-r.r {
		r.grow(need)
	}
	n, err := r.rd.Read(r.buf[r.w:])
	r.w += n
	r.total += uint64(n)
	if n > 0 {
		return nil
	}
	if err == io.EOF && r.w > r.r {
		return io.ErrUnexpectedEOF
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// grow makes room for need bytes from r.r, compacting or moving to a bigger buffer.
func (r *Reader) grow(need int) {
	n := r.w - r.r
	if need <= len(r.buf) {
		copy(r.buf, r.buf[r.r:r.w])
		r.r, r.w = 0, n
		return
	}
	var nb []byte
	var big *[]byte
	if need <= bigBufSize {
		big = bigBufs.Get().(*[]byte)
		nb = *big
	} else {
		nb = make([]byte, need)
	}
	copy(nb, r.buf[r.r:r.w])
	r.releaseBig()
	r.buf, r.big, r.r, r.w = nb, big, 0, n
}

// Peek returns the type byte and the total size (header included) of the next message, reading
// until its header is buffered.
func (r *Reader) Peek() (typ byte, size int, err error) {
	for r.w-r.r < HeaderLen {
		if err := r.fill(HeaderLen); err != nil {
			return 0, 0, err
		}
	}
	h := r.buf[r.r : r.r+HeaderLen]
	l := int(binary.BigEndian.Uint32(h[1:]))
	if l < 4 {
		return h[0], 0, fmt.Errorf("%w: type %q length %d", ErrBadLength, h[0], l)
	}
	if l+1 > r.max {
		return h[0], 0, fmt.Errorf("%w: type %q length %d, limit %d", ErrMessageTooLarge, h[0], l+1, r.max)
	}
	return h[0], l + 1, nil
}

// Message returns the next whole message, header included, reading until it is buffered. The
// message is not consumed: call Discard(len(msg)) after using it.
func (r *Reader) Message() ([]byte, error) {
	_, size, err := r.Peek()
	if err != nil {
		return nil, err
	}
	for r.w-r.r < size {
		if err := r.fill(size); err != nil {
			return nil, err
		}
	}
	return r.buf[r.r : r.r+size], nil
}

// Complete reports whether the next message is wholly buffered, without reading. It returns the
// message size, or 0 when not even its header is buffered or the header is invalid.
func (r *Reader) Complete() (size int, ok bool) {
	if r.w-r.r < HeaderLen {
		return 0, false
	}
	l := int(binary.BigEndian.Uint32(r.buf[r.r+1:]))
	if l < 4 || l+1 > r.max {
		return 0, false
	}
	return l + 1, r.w-r.r >= l+1
}

// Discard consumes n buffered bytes. n must not exceed Buffered().
func (r *Reader) Discard(n int) {
	r.r += n
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
}

// Forward copies the next size bytes of the stream to dst, from the buffer first and then straight
// from the stream, so a message larger than any buffer streams through without being held whole.
func (r *Reader) Forward(dst io.Writer, size int) error {
	for size > 0 {
		if r.r == r.w {
			if err := r.fill(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		n := min(size, r.w-r.r)
		if _, err := dst.Write(r.buf[r.r : r.r+n]); err != nil {
			return &WriteError{Err: err}
		}
		r.Discard(n)
		size -= n
	}
	return nil
}

// FillOnce reads once from the stream into free buffer space. It is for probing a connection
// (with a deadline in the past, it returns at once): data read is kept for the next message.
//
// Unlike the other methods it leaves valid what Message returned: a caller probes the client
// while it still holds the message it is about to send on. So it never moves buffered bytes nor
// changes buffers; when no space is free it reads nothing and returns nil (something is there
// to read).
func (r *Reader) FillOnce() error {
	if r.w == len(r.buf) {
		if r.r < r.w {
			return nil
		}
		r.r, r.w = 0, 0 // nothing buffered, nothing held
	}
	n, err := r.rd.Read(r.buf[r.w:])
	r.w += n
	r.total += uint64(n)
	return err
}

// Skip consumes the next size bytes of the stream without keeping them.
func (r *Reader) Skip(size int) error { return r.Forward(io.Discard, size) }

// ReadFull reads exactly len(p) bytes, from the buffer first.
func (r *Reader) ReadFull(p []byte) error {
	for len(p) > 0 {
		if r.r == r.w {
			if err := r.fill(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		n := copy(p, r.buf[r.r:r.w])
		r.Discard(n)
		p = p[n:]
	}
	return nil
}

// WriteError marks an error of the destination in Forward, so callers can tell which side failed.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }
