package frontend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Request codes a client may send in place of a protocol version.
const (
	codeCancel  = 80877102
	codeSSL     = 80877103
	codeGSSENC  = 80877104
	protocol30  = 3 << 16
	protoMajor3 = 3
)

// maxStartupPacket is Postgres' own limit on a startup packet.
const maxStartupPacket = 10000

// errBadStartup is wrapped by every startup-packet error; the client gets SQLSTATE 08P01, except
// for errStartupLength.
var errBadStartup = errors.New("invalid startup packet")

// errStartupLength is a first four bytes that cannot be a startup packet's length: whatever is
// talking is not a Postgres client at the start of its startup (or sent something before it, as
// node-postgres sends Terminate when it is closed while connecting). Postgres closes such a
// connection without a reply, and so does sluice.
var errStartupLength = fmt.Errorf("%w: length", errBadStartup)

// startupPacket is a decoded startup, SSLRequest, GSSENCRequest or CancelRequest packet.
type startupPacket struct {
	code uint32 // protocol version or request code
	// params are the startup parameters in the order the client sent them.
	params []param
	// protoOpts are the names of the protocol options (_pq_.*) the client asked for; sluice
	// knows none, and says so with NegotiateProtocolVersion.
	protoOpts []string
	// cancelPID and cancelSecret are set for a CancelRequest.
	cancelPID    uint32
	cancelSecret []byte
}

type param struct{ name, value string }

// get returns the value of the named parameter.
func (p *startupPacket) get(name string) string {
	for _, kv := range p.params {
		if kv.name == name {
			return kv.value
		}
	}
	return ""
}

// readStartupPacket reads one length-prefixed startup packet and returns its body (everything
// after the length) and whatever else the same reads brought (rest). It reads into buf's
// capacity at once, so a packet that arrived whole costs one system call, not two; only the
// tail of a packet longer than that is read to its exact end. body and rest point into buf, or
// into a new buffer for a packet larger than buf.
func readStartupPacket(r io.Reader, buf []byte) (body, rest []byte, err error) {
	buf = buf[:cap(buf)]
	got := 0
	for got < 4 {
		n, err := r.Read(buf[got:])
		got += n
		if err != nil && got < 4 {
			if err == io.EOF && got > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
	n := int(binary.BigEndian.Uint32(buf))
	if n < 8 || n > maxStartupPacket {
		return nil, nil, fmt.Errorf("%w %d", errStartupLength, n)
	}
	if got >= n {
		return buf[4:n], buf[n:got], nil
	}
	if n > len(buf) {
		nb := make([]byte, n)
		copy(nb, buf[:got])
		buf = nb
	}
	if _, err := io.ReadFull(r, buf[got:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, err
	}
	return buf[4:n], nil, nil
}

// parseStartup decodes a startup packet body. It never panics on any input.
func parseStartup(body []byte) (*startupPacket, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("%w: too short", errBadStartup)
	}
	p := &startupPacket{code: binary.BigEndian.Uint32(body)}
	rest := body[4:]
	switch p.code {
	case codeSSL, codeGSSENC:
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: request with a body", errBadStartup)
		}
		return p, nil
	case codeCancel:
		if len(rest) < 8 || len(rest) > 4+256 {
			return nil, fmt.Errorf("%w: cancel request length", errBadStartup)
		}
		p.cancelPID = binary.BigEndian.Uint32(rest)
		p.cancelSecret = bytes.Clone(rest[4:])
		return p, nil
	}
	if p.code>>16 != protoMajor3 {
		return nil, fmt.Errorf("%w: unsupported protocol %d.%d", errBadStartup, p.code>>16, p.code&0xffff)
	}
	// One string holds every name and value, and params one slice of the right size: two
	// allocations for the whole packet, not two per parameter.
	str := string(rest)
	for len(str) > 0 && str[0] != 0 {
		i := strings.IndexByte(str, 0)
		if i < 0 {
			return nil, fmt.Errorf("%w: unterminated parameter name", errBadStartup)
		}
		name := str[:i]
		str = str[i+1:]
		j := strings.IndexByte(str, 0)
		if j < 0 {
			return nil, fmt.Errorf("%w: unterminated value of %q", errBadStartup, name)
		}
		if strings.HasPrefix(name, "_pq_.") {
			p.protoOpts = append(p.protoOpts, name)
		} else {
			if p.params == nil {
				p.params = make([]param, 0, strings.Count(str, "\x00")/2+1)
			}
			p.params = append(p.params, param{name, str[:j]})
		}
		str = str[j+1:]
	}
	if len(str) != 1 {
		return nil, fmt.Errorf("%w: missing terminator", errBadStartup)
	}
	return p, nil
}

// negotiation returns the NegotiateProtocolVersion message p calls for, or nil: a client that
// asks for a newer minor version of protocol 3 (3.2, which PostgreSQL 18 speaks) or for protocol
// options is told, as Postgres tells it, that sluice speaks 3.0 and which options it does not
// know; the client then goes on with 3.0 or gives up.
func (p *startupPacket) negotiation() []byte {
	if p.code&0xffff == 0 && len(p.protoOpts) == 0 {
		return nil
	}
	b := []byte{'v', 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, protocol30) // the whole version, as Postgres sends it
	b = binary.BigEndian.AppendUint32(b, uint32(len(p.protoOpts)))
	for _, o := range p.protoOpts {
		b = append(b, o...)
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// parseOptions reads the "-c name=value" and "--name=value" settings of the options startup
// parameter, as Postgres does; backslash escapes a space.
func parseOptions(s string) ([]param, error) {
	var words []string
	var cur strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc = true
		case r == ' ' || r == '\t':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	var out []param
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return nil, fmt.Errorf("unsupported option %q in the options parameter", w)
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid option %q: want name=value", kv)
		}
		out = append(out, param{strings.ReplaceAll(k, "-", "_"), v})
	}
	return out, nil
}
