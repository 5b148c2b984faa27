package backend

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicepg/sluice/internal/auth"
	"github.com/sluicepg/sluice/internal/netio"
	"github.com/sluicepg/sluice/internal/wire"
)

// Secret is what sluice learned at a client's login that lets it log in to servers as that user
// without a password in the file: a password or md5 hash that auth_query returned, and the
// ClientKey and ServerKey of a SCRAM login (the ClientKey recovered from the client's proof, the
// ServerKey from the verifier). A Secret is never changed once stored; it must never be logged.
type Secret struct {
	// Password is a plain password or an md5 hash ("md5" and 32 hex digits), or "".
	Password string
	// ClientKey and ServerKey are both set or both nil.
	ClientKey, ServerKey []byte
}

// Credentials hold the Secret a pool's new server connections log in with, when Params has no
// usable password. Client logins store into it and dials read it, concurrently.
type Credentials struct {
	p atomic.Pointer[Secret]
}

// Load returns the current Secret, or nil.
func (c *Credentials) Load() *Secret {
	if c == nil {
		return nil
	}
	return c.p.Load()
}

// Store replaces the Secret. The caller does not change s afterwards.
func (c *Credentials) Store(s *Secret) { c.p.Store(s) }

// LoginError is a server login that the server refused or that sluice could not complete for
// want of a secret the server accepts. Its message never holds a secret.
type LoginError struct {
	Addr string
	User string
	Err  error // a *ServerError when the server refused
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("log in to %s as %q: %v", e.Addr, e.User, e.Err)
}

func (e *LoginError) Unwrap() error { return e.Err }

// The authentication request codes of AuthenticationXXX messages.
const (
	authOK           = 0
	authCleartext    = 3
	authMD5          = 5
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// Dial connects to the server, negotiates TLS as p says, logs in and reads the server's
// parameters up to its first ReadyForQuery. It answers trust, clear-text password, md5 and
// SCRAM-SHA-256 (with channel binding, SCRAM-SHA-256-PLUS, when the connection is TLS and the
// server offers it). The password is p.Password, else the Secret in p.Credentials. An md5 hash
// answers md5 as it is ("pass the hash"); a SCRAM verifier or no password answers SCRAM with the
// Credentials' ClientKey. ctx and p.ConnectTimeout bound the whole login.
func Dial(ctx context.Context, p *Params) (*ServerConn, error) {
	if p.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.ConnectTimeout)
		defer cancel()
	}
	useTLS := p.TLS != nil
	s, err := dial(ctx, p, useTLS)
	var fallback *tlsHandshakeError
	if err != nil && useTLS && p.TLSOptional && errors.As(err, &fallback) {
		// sslmode=prefer: a server whose TLS fails is tried again in plaintext, as libpq does.
		s, err = dial(ctx, p, false)
	}
	return s, err
}

type tlsHandshakeError struct{ err error }

func (e *tlsHandshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsHandshakeError) Unwrap() error { return e.err }

func dial(ctx context.Context, p *Params, useTLS bool) (*ServerConn, error) {
	d := &net.Dialer{KeepAliveConfig: p.KeepAlive}
	if p.UserTimeout > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error { return netio.SetUserTimeout(c, p.UserTimeout) }
	}
	c, err := d.DialContext(ctx, "tcp", p.Addr())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", p.Addr(), err)
	}
	c = netio.Wrap(c)
	sock, _ := c.(*netio.Conn)
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	// A deadline, and an early one when ctx is canceled, bound every read and write below.
	if dl, has := ctx.Deadline(); has {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var tlsConn *tls.Conn
	if useTLS {
		var req [8]byte
		binary.BigEndian.PutUint32(req[0:], 8)
		binary.BigEndian.PutUint32(req[4:], 80877103)
		if _, err := c.Write(req[:]); err != nil {
			return nil, fmt.Errorf("connect to %s: %w", p.Addr(), err)
		}
		var answer [1]byte
		if _, err := c.Read(answer[:]); err != nil {
			return nil, fmt.Errorf("connect to %s: %w", p.Addr(), err)
		}
		switch answer[0] {
		case 'S':
			tc := p.TLS.Clone()
			if p.VerifyHost {
				tc.ServerName = p.Host
			}
			tlsConn = tls.Client(c, tc)
			if err := tlsConn.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("connect to %s: %w", p.Addr(), &tlsHandshakeError{err})
			}
			c = tlsConn
		case 'N':
			if !p.TLSOptional {
				return nil, fmt.Errorf("connect to %s: the server does not support TLS", p.Addr())
			}
		default:
			return nil, fmt.Errorf("connect to %s: unexpected answer %q to SSLRequest", p.Addr(), answer[0])
		}
	}

	r := wire.NewReader(c, p.MaxMessageSize)
	sent := &sentCounter{w: c}
	w := bufio.NewWriterSize(sent, 16<<10)
	if _, err := w.Write(startupPacket(p)); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", p.Addr(), err)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", p.Addr(), err)
	}
	l := &login{p: p, r: r, w: w, tls: tlsConn}
	if err := l.authenticate(); err != nil {
		return nil, err
	}
	s, err := l.readParameters()
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	if !stop() {
		// ctx ended as the login finished: the deadline may have been set after the reset.
		return nil, fmt.Errorf("connect to %s: %w", p.Addr(), ctx.Err())
	}
	s.conn, s.sock, s.R, s.W, s.sent = c, sock, r, w, sent
	s.recvSeen, s.sentSeen = r.BytesRead(), sent.n.Load()
	if len(p.Mirrors) > 0 {
		// From here on, and not before: each mirror logs in on its own.
		s.mirrors = startMirrors(p.Mirrors)
		sent.tee = s.mirrors
	}
	ok = true
	return s, nil
}

// startupPacket is the StartupMessage for protocol 3.0 with p's user, database and Startup.
func startupPacket(p *Params) []byte {
	b := make([]byte, 8, 128)
	binary.BigEndian.PutUint32(b[4:], 3<<16)
	b = wire.AppendCString(wire.AppendCString(b, "user"), p.User)
	b = wire.AppendCString(wire.AppendCString(b, "database"), p.Database)
	keys := make([]string, 0, len(p.Startup))
	for k := range p.Startup {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = wire.AppendCString(wire.AppendCString(b, k), p.Startup[k])
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// login is one server login in progress.
type login struct {
	p       *Params
	r       *wire.Reader
	w       *bufio.Writer
	tls     *tls.Conn // nil in plaintext
	pending int       // size of the last message next returned, discarded at the next call
}

func (l *login) fail(err error) error {
	return &LoginError{Addr: l.p.Addr(), User: l.p.User, Err: err}
}

// next reads the next message, turning an ErrorResponse into a *LoginError. The message is
// valid until the next call.
func (l *login) next() ([]byte, error) {
	l.r.Discard(l.pending)
	l.pending = 0
	msg, err := l.r.Message()
	if err != nil {
		return nil, fmt.Errorf("connect to %s: read: %w", l.p.Addr(), err)
	}
	l.pending = len(msg)
	if msg[0] == wire.ErrorResponse {
		code, m := wire.ErrorFields(wire.Body(msg))
		return nil, l.fail(&ServerError{Code: code, Message: m})
	}
	return msg, nil
}

func (l *login) send(msg []byte) error {
	if _, err := l.w.Write(msg); err != nil {
		return fmt.Errorf("connect to %s: %w", l.p.Addr(), err)
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("connect to %s: %w", l.p.Addr(), err)
	}
	return nil
}

// secret returns the password to log in with and the Secret behind it.
func (l *login) secret() (string, *Secret) {
	sec := l.p.Credentials.Load()
	pw := l.p.Password
	if pw == "" && sec != nil {
		pw = sec.Password
	}
	return pw, sec
}

func isMD5Hash(s string) bool { return len(s) == 35 && strings.HasPrefix(s, "md5") }

// authenticate answers the server's authentication requests until AuthenticationOk.
func (l *login) authenticate() error {
	for {
		msg, err := l.next()
		if err != nil {
			return err
		}
		body := wire.Body(msg)
		if msg[0] != wire.Authentication || len(body) < 4 {
			return fmt.Errorf("connect to %s: expected an authentication request, got message %q", l.p.Addr(), msg[0])
		}
		pw, _ := l.secret()
		switch code := binary.BigEndian.Uint32(body); code {
		case authOK:
			return nil
		case authCleartext:
			if pw == "" || isMD5Hash(pw) || auth.IsSCRAMVerifier(pw) {
				return l.fail(errors.New("the server asks for a clear-text password and sluice has none for this user"))
			}
			if err := l.send(passwordMessage(pw)); err != nil {
				return err
			}
		case authMD5:
			if len(body) < 8 {
				return fmt.Errorf("connect to %s: malformed md5 request", l.p.Addr())
			}
			if pw == "" || auth.IsSCRAMVerifier(pw) {
				return l.fail(errors.New("the server asks for md5 and sluice has no password or md5 hash for this user"))
			}
			var salt [4]byte
			copy(salt[:], body[4:8])
			if err := l.send(passwordMessage(auth.MD5Response(auth.MD5Secret(pw, l.p.User), salt))); err != nil {
				return err
			}
		case authSASL:
			if err := l.scram(body[4:], pw); err != nil {
				return err
			}
		default:
			return l.fail(fmt.Errorf("the server asks for an authentication method sluice does not support (code %d)", code))
		}
	}
}

// scram runs SCRAM-SHA-256 with a plain password, or with the Credentials' keys. mechs is the
// body of AuthenticationSASL after its code: the mechanism names, each NUL-terminated.
func (l *login) scram(mechs []byte, pw string) error {
	var offered []string
	for len(mechs) > 0 && mechs[0] != 0 {
		m, rest, ok := wire.CString(mechs)
		if !ok {
			break
		}
		offered = append(offered, string(m))
		mechs = rest
	}
	var secret auth.ClientSecret
	switch _, sec := l.secret(); {
	case pw != "" && !isMD5Hash(pw) && !auth.IsSCRAMVerifier(pw):
		secret.Password = pw
	case sec != nil && sec.ClientKey != nil:
		secret.ClientKey, secret.ServerKey = sec.ClientKey, sec.ServerKey
	case isMD5Hash(pw):
		return l.fail(errors.New("the server asks for SCRAM and sluice has only an md5 hash for this user"))
	default:
		return l.fail(errors.New("the server asks for SCRAM and sluice has no password for this user, nor a ClientKey from a client's SCRAM login yet"))
	}
	conv := auth.NewClientConversation(secret, rand.Reader)
	if l.tls != nil {
		// Bind to the channel when the server offers it; otherwise say we could (flag 'y').
		var cbind []byte
		if certs := l.tls.ConnectionState().PeerCertificates; len(certs) > 0 && slices.Contains(offered, auth.MechSCRAMPlus) {
			cbind, _ = auth.TLSServerEndPoint(certs[0])
		}
		conv.SetChannelBinding(cbind, true)
	}
	if !slices.Contains(offered, conv.Mechanism()) {
		return l.fail(fmt.Errorf("the server offers SASL mechanisms %q, none of which sluice supports", offered))
	}
	first, err := conv.First()
	if err != nil {
		return l.fail(err)
	}
	b, off := wire.Begin(nil, wire.Password)
	b = wire.AppendCString(b, conv.Mechanism())
	b = binary.BigEndian.AppendUint32(b, uint32(len(first)))
	b = append(b, first...)
	if err := l.send(wire.Finish(b, off)); err != nil {
		return err
	}
	data, err := l.saslMessage(authSASLContinue)
	if err != nil {
		return err
	}
	final, err := conv.Final(data)
	if err != nil {
		return l.fail(err)
	}
	b, off = wire.Begin(b[:0], wire.Password)
	b = append(b, final...)
	if err := l.send(wire.Finish(b, off)); err != nil {
		return err
	}
	data, err = l.saslMessage(authSASLFinal)
	if err != nil {
		return err
	}
	if err := conv.Verify(data); err != nil {
		return l.fail(err)
	}
	return nil
}

// saslMessage reads an Authentication message with the given code and returns a copy of its
// data.
func (l *login) saslMessage(code uint32) ([]byte, error) {
	msg, err := l.next()
	if err != nil {
		return nil, err
	}
	body := wire.Body(msg)
	if msg[0] != wire.Authentication || len(body) < 4 || binary.BigEndian.Uint32(body) != code {
		return nil, fmt.Errorf("connect to %s: unexpected message %q in the SCRAM exchange", l.p.Addr(), msg[0])
	}
	return slices.Clone(body[4:]), nil
}

func passwordMessage(pw string) []byte {
	b, off := wire.Begin(nil, wire.Password)
	b = wire.AppendCString(b, pw)
	return wire.Finish(b, off)
}

// readParameters reads ParameterStatus and BackendKeyData up to ReadyForQuery.
func (l *login) readParameters() (*ServerConn, error) {
	now := time.Now()
	s := &ServerConn{
		addr:     l.p.Addr(),
		Params:   map[string]string{},
		Prepared: NewStatementCache(cmp.Or(l.p.StatementCacheSize, defaultStatementCacheSize)),
		Created:  now,
		LastUsed: now,
	}
	for {
		msg, err := l.next()
		if err != nil {
			return nil, err
		}
		body := wire.Body(msg)
		switch msg[0] {
		case wire.ParameterStatus:
			s.NoteParameter(body)
		case wire.BackendKeyData:
			if len(body) < 8 {
				return nil, fmt.Errorf("connect to %s: malformed BackendKeyData", l.p.Addr())
			}
			s.pid = binary.BigEndian.Uint32(body)
			s.secret = slices.Clone(body[4:])
		case wire.NoticeResponse, wire.NegotiateProtoVerMs:
		case wire.ReadyForQuery:
			l.r.Discard(l.pending)
			l.pending = 0
			for k, v := range l.p.Startup {
				if _, ok := s.Params[k]; !ok {
					s.Params[k] = v
				}
			}
			s.Initial = make(map[string]string, len(s.Params))
			for k, v := range s.Params {
				s.Initial[k] = v
			}
			return s, nil
		default:
			return nil, fmt.Errorf("connect to %s: unexpected message %q before ReadyForQuery", l.p.Addr(), msg[0])
		}
	}
}
