package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// msg builds a message of type typ with a body of n bytes that encode their own offset, so a
// message cut or shifted anywhere compares unequal.
func msg(typ byte, n int) []byte {
	b := make([]byte, HeaderLen+n)
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(4+n))
	for i := range n {
		b[HeaderLen+i] = byte(i*7 + i>>8)
	}
	return b
}

// header is a bare message header with the given length field.
func header(typ byte, length uint32) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], length)
	return b
}

// chunkReader returns at most n bytes per Read, as a socket may.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

// readers are the ways the tests split a stream into reads.
var readers = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"one byte at a time", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"3-byte reads", func(b []byte) io.Reader { return &chunkReader{b, 3} }},
	{"1000-byte reads", func(b []byte) io.Reader { return &chunkReader{b, 1000} }},
	{"data with EOF", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
}

// sizes are body sizes around the inline and pooled buffer sizes.
var sizes = []int{
	0, 1, 100,
	smallBufSize - HeaderLen, smallBufSize - HeaderLen + 1, // fills the inline buffer, one more
	bigBufSize - HeaderLen, bigBufSize - HeaderLen + 1, // fills the pooled buffer, one more
	100 << 10,
}

func TestReaderMessageFramesEverySizeWhateverTheReads(t *testing.T) {
	for _, rd := range readers {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/body %d", rd.name, n), func(t *testing.T) {
				// A tiny message on both sides: framing must hold across the big one.
				want := [][]byte{msg('Q', 3), msg('D', n), msg('S', 0), msg('D', n)}
				r := NewReader(rd.wrap(bytes.Join(want, nil)), 0)
				for i, w := range want {
					typ, size, err := r.Peek()
					if err != nil {
						t.Fatalf("message %d: Peek: %v", i, err)
					}
					if typ != w[0] || size != len(w) {
						t.Fatalf("message %d: Peek = %q, %d; want %q, %d", i, typ, size, w[0], len(w))
					}
					got, err := r.Message()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if !bytes.Equal(got, w) {
						t.Fatalf("message %d: got %d bytes that differ from the %d sent", i, len(got), len(w))
					}
					r.Discard(len(got))
				}
				if _, _, err := r.Peek(); err != io.EOF {
					t.Fatalf("after the last message: %v, want io.EOF", err)
				}
			})
		}
	}
}

func TestReaderForwardAndSkipKeepFraming(t *testing.T) {
	for _, rd := range readers {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/body %d", rd.name, n), func(t *testing.T) {
				big, small := msg('D', n), msg('C', 10)
				r := NewReader(rd.wrap(bytes.Join([][]byte{big, small, big, small}, nil)), 0)
				var out bytes.Buffer
				for i := range 2 {
					_, size, err := r.Peek()
					if err != nil {
						t.Fatal(err)
					}
					if i == 0 {
						err = r.Forward(&out, size)
					} else {
						err = r.Skip(size)
					}
					if err != nil {
						t.Fatalf("round %d: %v", i, err)
					}
					got, err := r.Message()
					if err != nil {
						t.Fatalf("round %d: the message after: %v", i, err)
					}
					if !bytes.Equal(got, small) {
						t.Fatalf("round %d: the message after is %q, want %q", i, got, small)
					}
					r.Discard(len(got))
				}
				if !bytes.Equal(out.Bytes(), big) {
					t.Fatalf("Forward wrote %d bytes that differ from the %d-byte message", out.Len(), len(big))
				}
				if _, _, err := r.Peek(); err != io.EOF {
					t.Fatalf("at the end: %v, want io.EOF", err)
				}
			})
		}
	}
}

func TestReaderForwardStreamsWithoutGrowing(t *testing.T) {
	m := msg('d', 1<<20)
	r := NewReader(&chunkReader{m, 4096}, 0)
	_, size, err := r.Peek()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := r.Forward(&out, size); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), m) {
		t.Fatal("forwarded bytes differ")
	}
	if len(r.buf) != smallBufSize || r.big != nil {
		t.Fatalf("Forward of a 1 MiB message grew the buffer to %d bytes", len(r.buf))
	}
}

func TestReaderReadFull(t *testing.T) {
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			m := msg('p', 2000)
			r := NewReader(rd.wrap(append(bytes.Clone(m), 'X')), 0)
			if _, _, err := r.Peek(); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(m))
			if err := r.ReadFull(got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, m) {
				t.Fatal("ReadFull bytes differ")
			}
			one := make([]byte, 1)
			if err := r.ReadFull(one); err != nil || one[0] != 'X' {
				t.Fatalf("next byte: %q, %v", one, err)
			}
			if err := r.ReadFull(one); err != io.ErrUnexpectedEOF {
				t.Fatalf("past the end: %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

func TestReaderShrinkGivesBufferBack(t *testing.T) {
	for _, n := range []int{smallBufSize, bigBufSize - HeaderLen, bigBufSize, 200 << 10} {
		t.Run(fmt.Sprintf("after a %d-byte body", n), func(t *testing.T) {
			// Two readers, so that nothing of the second message is buffered with the first.
			r := NewReader(io.MultiReader(bytes.NewReader(msg('D', n)), bytes.NewReader(msg('Q', 5))), 0)
			m, err := r.Message()
			if err != nil {
				t.Fatal(err)
			}
			r.Discard(len(m))
			r.Shrink()
			if len(r.buf) != smallBufSize || r.big != nil {
				t.Fatalf("after Shrink with nothing buffered the Reader holds a %d-byte buffer, want the %d-byte inline one",
					len(r.buf), smallBufSize)
			}
			m, err = r.Message()
			if err != nil || !bytes.Equal(m, msg('Q', 5)) {
				t.Fatalf("next message: %q, %v", m, err)
			}
		})
	}
}

func TestReaderShrinkKeepsBufferedBytes(t *testing.T) {
	want := [][]byte{msg('D', 3000), msg('Q', 5), msg('S', 0)}
	r := NewReader(bytes.NewReader(bytes.Join(want, nil)), 0)
	m, err := r.Message()
	if err != nil {
		t.Fatal(err)
	}
	r.Discard(len(m))
	if r.Buffered() == 0 {
		t.Fatal("test needs the next messages buffered with the first")
	}
	r.Shrink() // must not drop the buffered messages
	for _, w := range want[1:] {
		m, err := r.Message()
		if err != nil || !bytes.Equal(m, w) {
			t.Fatalf("got %q, %v; want %q", m, err, w)
		}
		r.Discard(len(m))
	}
}

func TestReaderRejectsBadLengths(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		stream []byte
		want   error // from Peek and Message
	}{
		{"length 0", 0, header('Q', 0), ErrBadLength},
		{"length 3", 0, header('Q', 3), ErrBadLength},
		{"length 4 (empty body) is fine", 0, header('S', 4), nil},
		{"exactly the limit", 1024, msg('Q', 1024-HeaderLen), nil},
		{"one byte over the limit", 1024, msg('Q', 1024-HeaderLen+1), ErrMessageTooLarge},
		{"2 GiB", 0, header('Q', 1<<31), ErrMessageTooLarge},
		{"4 GiB - 1", 0, header('Q', 1<<32-1), ErrMessageTooLarge},
		{"default limit 1 GiB, just over", 0, header('Q', 1<<30), ErrMessageTooLarge},
		{"2 GiB with a limit set", 1 << 20, header('Q', 1<<31), ErrMessageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.stream), tt.max)
			_, _, err := r.Peek()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Peek: %v, want %v", err, tt.want)
			}
			if size, ok := r.Complete(); tt.want != nil && (ok || size != 0) {
				t.Fatalf("Complete = %d, %v for an invalid header", size, ok)
			}
			m, err := r.Message()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Message: %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				if !bytes.Equal(m, tt.stream) {
					t.Fatal("Message bytes differ")
				}
				if size, ok := r.Complete(); !ok || size != len(m) {
					t.Fatalf("Complete after Message = %d, %v", size, ok)
				}
			}
		})
	}
}

func TestReaderTruncatedStream(t *testing.T) {
	m := msg('D', 100)
	tests := []struct {
		name   string
		stream []byte
		op     func(r *Reader) error
		want   error
	}{
		{"empty stream, Peek", nil, func(r *Reader) error { _, _, err := r.Peek(); return err }, io.EOF},
		{"half a header, Peek", m[:3], func(r *Reader) error { _, _, err := r.Peek(); return err }, io.ErrUnexpectedEOF},
		{"header only, Message", m[:HeaderLen], func(r *Reader) error { _, err := r.Message(); return err }, io.ErrUnexpectedEOF},
		{"half a body, Message", m[:50], func(r *Reader) error { _, err := r.Message(); return err }, io.ErrUnexpectedEOF},
		{"half a body, Forward", m[:50], func(r *Reader) error { return r.Forward(io.Discard, len(m)) }, io.ErrUnexpectedEOF},
		{"half a body, Skip", m[:50], func(r *Reader) error { return r.Skip(len(m)) }, io.ErrUnexpectedEOF},
		{"empty stream, Forward", nil, func(r *Reader) error { return r.Forward(io.Discard, 1) }, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				if err := tt.op(NewReader(rd.wrap(tt.stream), 0)); err != tt.want {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
			})
		}
	}
}

func TestReaderCompleteDoesNotRead(t *testing.T) {
	m := msg('Q', 20)
	r := NewReader(iotest.OneByteReader(bytes.NewReader(m)), 0)
	if size, ok := r.Complete(); ok || size != 0 {
		t.Fatalf("before any read: %d, %v", size, ok)
	}
	if _, _, err := r.Peek(); err != nil {
		t.Fatal(err)
	}
	if size, ok := r.Complete(); ok || size != len(m) {
		t.Fatalf("with the header only: %d, %v; want %d, false", size, ok, len(m))
	}
	if _, err := r.Message(); err != nil {
		t.Fatal(err)
	}
	if size, ok := r.Complete(); !ok || size != len(m) {
		t.Fatalf("with the whole message: %d, %v", size, ok)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestReaderForwardReportsWhichSideFailed(t *testing.T) {
	boom := errors.New("client went away")
	m := msg('D', 50)
	err := NewReader(bytes.NewReader(m), 0).Forward(failWriter{boom}, len(m))
	var we *WriteError
	if !errors.As(err, &we) || !errors.Is(err, boom) {
		t.Fatalf("write failure: %v, want a *WriteError wrapping it", err)
	}
	readErr := errors.New("connection reset")
	err = NewReader(iotest.ErrReader(readErr), 0).Forward(io.Discard, len(m))
	if errors.As(err, &we) || !errors.Is(err, readErr) {
		t.Fatalf("read failure: %v, want the read error and no *WriteError", err)
	}
}

func TestReaderResetDropsBufferedBytes(t *testing.T) {
	r := NewReader(bytes.NewReader(bytes.Join([][]byte{msg('D', 30000), msg('Q', 1)}, nil)), 0)
	if _, err := r.Message(); err != nil {
		t.Fatal(err)
	}
	r.Reset(strings.NewReader(string(msg('S', 0))), 100)
	if r.Buffered() != 0 || len(r.buf) != smallBufSize || r.big != nil {
		t.Fatalf("after Reset: %d buffered, %d-byte buffer", r.Buffered(), len(r.buf))
	}
	m, err := r.Message()
	if err != nil || !bytes.Equal(m, msg('S', 0)) {
		t.Fatalf("after Reset: %q, %v", m, err)
	}
	if _, _, err := NewReader(bytes.NewReader(msg('Q', 200)), 0).Peek(); err != nil {
		t.Fatal(err)
	}
	r.Reset(bytes.NewReader(msg('Q', 200)), 100)
	if _, _, err := r.Peek(); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Reset did not apply the new limit: %v", err)
	}
}

// TestReaderFillOnceKeepsTheHeldMessage: a caller probes the connection with FillOnce while it
// holds a message from Message. The message must stay as it was, in the buffer it was in (a
// pooled buffer given back would be another connection's to overwrite), whether the buffer is
// full (nothing is read) or has room (the new bytes go after it), and every message still
// comes out whole after the probe.
func TestReaderFillOnceKeepsTheHeldMessage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lead      int // body size of a message consumed before the held one
		held      int // body size of the held message
		following int // body size of the message behind it
	}{
		{"inline buffer full, held message not at its start", 0, 300, 1000},
		{"inline buffer with room", 0, 100, 50},
		{"pooled buffer full", 0, 1000, 20000},
		{"pooled buffer full, held message not at its start", 600, 1000, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := append(append(msg('S', tc.lead), msg('Q', tc.held)...), msg('P', tc.following)...)
			r := NewReader(&chunkReader{stream, bigBufSize}, 0)
			if _, err := r.Message(); err != nil { // the lead
				t.Fatal(err)
			}
			r.Discard(HeaderLen + tc.lead)
			held, err := r.Message()
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), held...)
			buf := &r.buf[0]
			if err := r.FillOnce(); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(held, want) || &r.buf[0] != buf {
				t.Fatalf("FillOnce moved or changed the held message")
			}
			r.Discard(len(held))
			rest, err := r.Message()
			if err != nil || !bytes.Equal(rest, msg('P', tc.following)) {
				t.Fatalf("the next message after FillOnce: %v (%d bytes)", err, len(rest))
			}
		})
	}
}
