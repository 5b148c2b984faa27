package frontend

import (
	"net"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/netio"
)

// TestClientGone probes a client after a wait for a server: one still waiting for its reply is
// there, one that sent more is there (and what it sent stays for the reader), one that closed
// its connection is gone.
func TestClientGone(t *testing.T) {
	cases := []struct {
		name   string
		client func(net.Conn)
		gone   bool
		kept   int // bytes left buffered for the reader
	}{
		{"silent", func(net.Conn) {}, false, 0},
		{"sent more", func(c net.Conn) { _, _ = c.Write([]byte("Q\x00\x00\x00\x05x")) }, false, 6},
		{"closed", func(c net.Conn) { _ = c.Close() }, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			c = netio.Wrap(c)
			defer c.Close()
			sock, ok := c.(*netio.Conn)
			if !ok {
				t.Fatalf("netio.Wrap gave %T", c)
			}
			s := &ClientSession{conn: c, sock: sock}
			s.r.Reset(c, 1<<20)
			tc.client(client)
			time.Sleep(20 * time.Millisecond) // let the bytes or the FIN arrive
			if got := s.clientGone(); got != tc.gone {
				t.Fatalf("clientGone() = %v, want %v", got, tc.gone)
			}
			if got := s.r.Buffered(); got != tc.kept {
				t.Fatalf("%d bytes buffered for the reader, want %d", got, tc.kept)
			}
		})
	}
}
