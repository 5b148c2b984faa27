package frontend

import (
	"io"
	"net"
	"testing"
)

// TestClientOutDropSince: what was buffered after a mark can be dropped until a write to the
// client may have sent some of it, by a Flush or by a write too large for the buffer.
func TestClientOutDropSince(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(o *clientOut)
		drop  bool
		left  string // buffered after the drop
	}{
		{name: "buffered only", after: func(o *clientOut) { o.Write([]byte("reply")) }, drop: true, left: "before"},
		{name: "nothing since", after: func(o *clientOut) {}, drop: true, left: "before"},
		{name: "flushed", after: func(o *clientOut) { o.Write([]byte("reply")); o.Flush() }, drop: false, left: ""},
		{name: "too large for the buffer", after: func(o *clientOut) { o.Write(make([]byte, outBufSize+1)) }, drop: false, left: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := net.Pipe()
			defer c.Close()
			go func() { _, _ = io.Copy(io.Discard, peer) }()
			o := &clientOut{conn: c}
			o.mu.Lock()
			defer o.mu.Unlock()
			o.Write([]byte("before"))
			m := o.Mark()
			tc.after(o)
			if got := o.DropSince(m); got != tc.drop {
				t.Fatalf("DropSince: %v; want %v", got, tc.drop)
			}
			if got := string(*o.buf); got != tc.left {
				t.Fatalf("buffered after DropSince: %q; want %q", got, tc.left)
			}
		})
	}
}
