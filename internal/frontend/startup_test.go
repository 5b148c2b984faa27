package frontend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// startupBody builds a startup packet body: the code, then name/value pairs, then the terminator.
func startupBody(code uint32, kv ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, code)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return append(b, 0)
}

// requestBody builds a body of only a code and raw bytes, as SSLRequest and CancelRequest are.
func requestBody(code uint32, rest ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, code), rest...)
}

// encodeStartup is the inverse of parseStartup, for round trips.
func encodeStartup(p *startupPacket) []byte {
	b := binary.BigEndian.AppendUint32(nil, p.code)
	switch p.code {
	case codeSSL, codeGSSENC:
		return b
	case codeCancel:
		b = binary.BigEndian.AppendUint32(b, p.cancelPID)
		return append(b, p.cancelSecret...)
	}
	for _, kv := range p.params {
		b = append(append(b, kv.name...), 0)
		b = append(append(b, kv.value...), 0)
	}
	return append(b, 0)
}

func TestParseStartup(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want *startupPacket // nil: the packet is refused
	}{
		{"user and database in order", startupBody(protocol30, "user", "app", "database", "db", "application_name", "x y"),
			&startupPacket{code: protocol30, params: []param{{"user", "app"}, {"database", "db"}, {"application_name", "x y"}}}},
		{"no parameters", startupBody(protocol30), &startupPacket{code: protocol30}},
		{"empty value", startupBody(protocol30, "user", "app", "options", ""),
			&startupPacket{code: protocol30, params: []param{{"user", "app"}, {"options", ""}}}},
		{"protocol 3.2", startupBody(3<<16|2, "user", "app"), &startupPacket{code: 3<<16 | 2, params: []param{{"user", "app"}}}},
		{"protocol options kept apart", startupBody(protocol30, "user", "app", "_pq_.opt", "1"),
			&startupPacket{code: protocol30, params: []param{{"user", "app"}}, protoOpts: []string{"_pq_.opt"}}},
		{"bytes that are not UTF-8 kept as they are", startupBody(protocol30, "user", "\xff\xfe"),
			&startupPacket{code: protocol30, params: []param{{"user", "\xff\xfe"}}}},
		{"SSLRequest", requestBody(codeSSL), &startupPacket{code: codeSSL}},
		{"GSSENCRequest", requestBody(codeGSSENC), &startupPacket{code: codeGSSENC}},
		{"CancelRequest", requestBody(codeCancel, 0, 0, 1, 2, 9, 8, 7, 6),
			&startupPacket{code: codeCancel, cancelPID: 258, cancelSecret: []byte{9, 8, 7, 6}}},
		{"CancelRequest with a 256-byte key (protocol 3.2)", requestBody(codeCancel, append([]byte{0, 0, 0, 1}, bytes.Repeat([]byte{5}, 256)...)...),
			&startupPacket{code: codeCancel, cancelPID: 1, cancelSecret: bytes.Repeat([]byte{5}, 256)}},

		{"empty body", nil, nil},
		{"three bytes", []byte{0, 3, 0}, nil},
		{"protocol 2.0", startupBody(2<<16, "user", "app"), nil},
		{"protocol 4.0", startupBody(4<<16, "user", "app"), nil},
		{"protocol 0", startupBody(0, "user", "app"), nil},
		{"SSLRequest with a body", requestBody(codeSSL, 0), nil},
		{"GSSENCRequest with a body", requestBody(codeGSSENC, 1, 2, 3, 4), nil},
		{"CancelRequest without a key", requestBody(codeCancel, 0, 0, 0, 1), nil},
		{"CancelRequest with a 257-byte key", requestBody(codeCancel, append([]byte{0, 0, 0, 1}, make([]byte, 257)...)...), nil},
		{"no terminator", startupBody(protocol30, "user", "app")[:4+len("user\x00app\x00")], nil},
		{"bytes after the terminator", append(startupBody(protocol30, "user", "app"), 'x'), nil},
		{"two terminators", append(startupBody(protocol30, "user", "app"), 0), nil},
		{"name without NUL", append(requestBody(protocol30), "user"...), nil},
		{"value without NUL", append(requestBody(protocol30), "user\x00app"...), nil},
		{"name without value", append(requestBody(protocol30), "user\x00"...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartup(tt.body)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				if !errors.Is(err, errBadStartup) {
					t.Fatalf("error %v does not wrap errBadStartup (the client would not get 08P01)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if enc := encodeStartup(got); len(got.protoOpts) == 0 && !bytes.Equal(enc, tt.body) { // options' values are dropped
				t.Fatalf("does not round-trip: % x", enc)
			}
		})
	}
}

func TestStartupPacketGet(t *testing.T) {
	p, err := parseStartup(startupBody(protocol30, "user", "a", "database", "", "user", "b"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"user": "a", "database": "", "missing": "", "USER": ""} {
		if got := p.get(name); got != want {
			t.Errorf("get(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestReadStartupPacket(t *testing.T) {
	packet := func(length uint32, body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, length), body...)
	}
	tests := []struct {
		name    string
		stream  []byte
		body    []byte // wanted body, when err is nil
		wantErr error
	}{
		{"SSLRequest", packet(8, requestBody(codeSSL)), requestBody(codeSSL), nil},
		{"largest allowed", packet(maxStartupPacket, make([]byte, maxStartupPacket-4)), make([]byte, maxStartupPacket-4), nil},
		{"extra bytes come back as rest", append(packet(8, requestBody(codeSSL)), "next"...), requestBody(codeSSL), nil},
		{"length 0", packet(0, nil), nil, errStartupLength},
		{"length 7", packet(7, []byte{0, 3, 0}), nil, errStartupLength},
		{"one over the limit", packet(maxStartupPacket+1, nil), nil, errStartupLength},
		{"2 GiB", packet(1<<31, nil), nil, errStartupLength},
		{"4 GiB - 1", packet(1<<32-1, nil), nil, errStartupLength},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), nil, errStartupLength},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, nil, errStartupLength},
		{"Terminate before the startup packet", []byte{'X', 0, 0, 0, 4}, nil, errStartupLength},
		{"nothing", nil, nil, io.EOF},
		{"half a length", []byte{0, 0}, nil, io.ErrUnexpectedEOF},
		{"truncated body", packet(100, []byte{0, 3, 0, 0}), nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.stream)
			body, rest, err := readStartupPacket(r, make([]byte, 0, 16))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, tt.body) {
				t.Fatalf("body % x, want % x", body, tt.body)
			}
			// What follows the packet is either in rest or still unread, never lost.
			unread, _ := io.ReadAll(r)
			if after := tt.stream[len(tt.body)+4:]; !bytes.Equal(append(bytes.Clone(rest), unread...), after) {
				t.Fatalf("rest %q + unread %q, want %q", rest, unread, after)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		options string
		want    []param
		wantErr string // part of the error message; "" when the options are valid
	}{
		{"", nil, ""},
		{"   \t ", nil, ""},
		{"-c search_path=app", []param{{"search_path", "app"}}, ""},
		{"-csearch_path=app", []param{{"search_path", "app"}}, ""},
		{"--search_path=app", []param{{"search_path", "app"}}, ""},
		{"--search-path=app", []param{{"search_path", "app"}}, ""},
		{"-c statement_timeout=5s  --work-mem=64MB\t-c x.y=1", []param{{"statement_timeout", "5s"}, {"work_mem", "64MB"}, {"x.y", "1"}}, ""},
		{`-c application_name=my\ app`, []param{{"application_name", "my app"}}, ""},
		{`-c search_path=a\\b`, []param{{"search_path", `a\b`}}, ""},
		{"-c a=b=c", []param{{"a", "b=c"}}, ""},
		{"-c a=", []param{{"a", ""}}, ""},
		{`-c a=b\`, []param{{"a", "b"}}, ""}, // a trailing backslash escapes nothing

		{"-c", nil, "want name=value"},
		{"-c =x", nil, "want name=value"},
		{"-c nameonly", nil, "want name=value"},
		{"--", nil, "want name=value"},
		{"search_path=app", nil, "unsupported option"},
		{"-d 5", nil, "unsupported option"},
		{"-c a=1 -f", nil, "unsupported option"},
	}
	for _, tt := range tests {
		t.Run(tt.options, func(t *testing.T) {
			got, err := parseOptions(tt.options)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNegotiation(t *testing.T) {
	tests := []struct {
		name string
		p    startupPacket
		want []byte // nil: no NegotiateProtocolVersion
	}{
		{"3.0 without options", startupPacket{code: protocol30}, nil},
		{"3.2", startupPacket{code: 3<<16 | 2}, []byte{'v', 0, 0, 0, 12, 0, 3, 0, 0, 0, 0, 0, 0}},
		{"3.0 with an option", startupPacket{code: protocol30, protoOpts: []string{"_pq_.a"}},
			append([]byte{'v', 0, 0, 0, 19, 0, 3, 0, 0, 0, 0, 0, 1}, "_pq_.a\x00"...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.negotiation(); !bytes.Equal(got, tt.want) {
				t.Errorf("negotiation() = %q, want %q", got, tt.want)
			}
		})
	}
}
