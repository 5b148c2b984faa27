package frontend

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicepg/sluice/internal/auth"
	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
)

// userSecret is what a client's login is checked against: the password in the file, or the
// secret the pool's auth_query returned. Neither is ever logged.
type userSecret struct {
	// known is false for a user who does not exist or may not log in: the exchange runs all
	// the same, against nothing anybody knows, and fails like a wrong password.
	known bool
	// password is plain text, an md5 hash ("md5…") or a SCRAM verifier.
	password string
	// aq is set when password came from auth_query; cached when it came from aq's cache, so a
	// failed login may fetch it again.
	aq     *route.AuthQuery
	cached bool
}

func isMD5Hash(s string) bool { return len(s) == 35 && strings.HasPrefix(s, "md5") }

// authenticate runs the user's login method: trust, md5, SCRAM-SHA-256 (-PLUS over TLS) or
// cert, against the password in the file or the secret of the pool's auth_query. It returns the
// target the client logged in to: tg, or for a user outside the file whom auth_query let in, a
// target made for it now. An unknown user goes through the same exchange as a known one and gets
// the same error as a wrong password, so user names cannot be probed.
//
// hbaMethod, when not "", is the method an hba rule chose; it replaces the configured one.
func (s *ClientSession) authenticate(tbl *route.Table, tg *route.Target, hbaMethod string) (*route.Target, error) {
	g := &tbl.Config.General
	pc := tbl.Config.Pool(s.db)
	method := config.AuthMD5
	if g.AuthType != "" {
		method = g.AuthType
	}
	var sec userSecret
	fromQuery := false
	switch {
	case tg != nil && !tg.User.NoPassword:
		if tg.User.Password == "" && tg.User.AuthType == "" && hbaMethod == "" {
			return tg, nil // password = "" in the file: trust
		}
		method = tg.User.ClientAuth(g)
		sec = userSecret{known: true, password: tg.User.Password}
	case tg != nil || (pc != nil && pc.AuthQueryAnyUser):
		var u *config.User
		if tg != nil {
			u = tg.User
		} else {
			u = pc.DynamicUser(s.user)
		}
		method = u.ClientAuth(g)
		fromQuery = true
		sec = s.fetchSecret(tbl, g)
	}
	if hbaMethod != "" {
		method = hbaMethod
	}
	if method == config.AuthMD5 && auth.IsSCRAMVerifier(sec.password) {
		method = config.AuthSCRAM // as Postgres does: md5 allows SCRAM for SCRAM secrets
	}
	if aq := tbl.AuthQuery(s.db); method == config.AuthMD5 && !sec.known && aq != nil && aq.PrefersSCRAM() {
		// A user auth_query does not know gets the exchange the users it knows get.
		method = config.AuthSCRAM
	}
	if method == config.AuthMD5 && !sec.known && tbl.AuthQuery(s.db) == nil && pc != nil && prefersSCRAM(pc, g) {
		// A user the file does not have gets the exchange most of the file's users get: when
		// they have SCRAM verifiers, md5 would tell a stranger apart.
		method = config.AuthSCRAM
	}

	var ok bool
	var keys *backend.Secret
	var err error
	switch method {
	case config.AuthTrust:
		ok = sec.known || (tg != nil && !fromQuery)
	case config.AuthCert:
		// The certificate proves who the client is; a user in the file needs no secret.
		return s.certLogin(tbl, tg, sec, fromQuery)
	case config.AuthSCRAM:
		ok, keys, err = s.scram(g, tg, &sec)
	default:
		ok, err = s.md5(&sec)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.loginFailed()
	}
	return s.loggedIn(tbl, tg, &sec, keys, fromQuery)
}

// prefersSCRAM reports whether most of pc's users that log in with md5 have SCRAM verifiers in
// the file, which md5 logs in with SCRAM.
func prefersSCRAM(pc *config.Pool, g *config.General) bool {
	n := 0
	for _, u := range pc.Users {
		if u.NoPassword || u.Password == "" || cmp.Or(u.AuthType, g.AuthType, config.AuthMD5) != config.AuthMD5 {
			continue
		}
		if auth.IsSCRAMVerifier(u.Password) {
			n++
		} else {
			n--
		}
	}
	return n > 0
}

// fetchSecret asks the pool's auth_query for the user's secret. A failing query refuses the
// client like an unknown user; the log says why, without the secret.
func (s *ClientSession) fetchSecret(tbl *route.Table, g *config.General) userSecret {
	aq := tbl.AuthQuery(s.db)
	if aq == nil {
		return userSecret{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.ConnectTimeout+time.Second)
	defer cancel()
	us, err := aq.Secret(ctx, s.user)
	if err != nil {
		s.l.log.Warn("login refused: auth_query failed", "user", s.user, "db", s.db, "err", err)
		return userSecret{}
	}
	return userSecret{known: us.Found, password: us.Value, aq: aq, cached: us.Cached}
}

// refetch fetches the secret again after a login failed against a cached one, so a changed
// password works from now on. It reports whether the secret changed.
func (s *ClientSession) refetch(sec *userSecret) bool {
	if sec.aq == nil || !sec.cached {
		return false
	}
	g := &s.l.table().Config.General
	ctx, cancel := context.WithTimeout(context.Background(), g.ConnectTimeout+time.Second)
	defer cancel()
	us, fetched, err := sec.aq.Refetch(ctx, s.user)
	if err != nil {
		s.l.log.Warn("auth_query failed", "user", s.user, "db", s.db, "err", err)
	}
	if !fetched || (us.Found == sec.known && us.Value == sec.password) {
		return false
	}
	sec.known, sec.password, sec.cached = us.Found, us.Value, false
	return true
}

// loggedIn finishes a successful login: a user outside the file gets its target, and what the
// login taught sluice (auth_query's secret, the SCRAM keys) is kept for the target's server
// logins.
func (s *ClientSession) loggedIn(tbl *route.Table, tg *route.Target, sec *userSecret, keys *backend.Secret, fromQuery bool) (*route.Target, error) {
	if tg == nil {
		if !fromQuery || !sec.known {
			return nil, s.loginFailed()
		}
		if tg = tbl.DynamicTarget(s.db, s.user); tg == nil {
			return nil, s.loginFailed() // a reload closed the door meanwhile
		}
	}
	if tg.User.ServerPassword != "" {
		return tg, nil // the servers get their own password
	}
	switch {
	case fromQuery && keys != nil:
		keys.Password = sec.password
		tg.Creds.Store(keys)
	case fromQuery && sec.known:
		if cur := tg.Creds.Load(); cur == nil || cur.Password != sec.password || cur.ClientKey != nil {
			tg.Creds.Store(&backend.Secret{Password: sec.password})
		}
	case keys != nil && auth.IsSCRAMVerifier(tg.User.Password):
		// A verifier in the file: servers are logged in to with the client's ClientKey.
		tg.Creds.Store(keys)
	}
	return tg, nil
}

// loginFailed answers a failed login, after a short random delay.
func (s *ClientSession) loginFailed() error {
	failedLoginDelay()
	return s.fatal("28P01", fmt.Sprintf("password authentication failed for user %q", s.user))
}

// failedLoginDelay waits a short random time before a failed login is answered, so password
// guessing is slower and the answer's timing says nothing about why it failed.
func failedLoginDelay() {
	var b [1]byte
	_, _ = rand.Read(b[:])
	time.Sleep(50*time.Millisecond + time.Duration(b[0])*time.Millisecond/2)
}

// certLogin logs in a client whose TLS certificate, verified against tls_ca_file in the
// handshake, names the user in its common name. Anything else is refused with 28000, the same
// way for a user that does not exist.
func (s *ClientSession) certLogin(tbl *route.Table, tg *route.Target, sec userSecret, fromQuery bool) (*route.Target, error) {
	known := (tg != nil && !fromQuery) || sec.known
	if !s.certNamesUser() || !known {
		return nil, s.certFailed()
	}
	if tg == nil {
		if tg = tbl.DynamicTarget(s.db, s.user); tg == nil {
			return nil, s.certFailed()
		}
	}
	if fromQuery && sec.known && tg.User.ServerPassword == "" && !auth.IsSCRAMVerifier(sec.password) {
		tg.Creds.Store(&backend.Secret{Password: sec.password})
	}
	return tg, nil
}

// certNamesUser reports whether the client sent a TLS certificate that the handshake verified
// against tls_ca_file and whose common name is the user name.
func (s *ClientSession) certNamesUser() bool {
	tc, ok := s.conn.(*tls.Conn)
	if !ok {
		return false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return false
	}
	cn := st.PeerCertificates[0].Subject.CommonName
	return cn != "" && subtle.ConstantTimeCompare([]byte(cn), []byte(s.user)) == 1
}

// certFailed answers a failed cert login, after the failed-login delay.
func (s *ClientSession) certFailed() error {
	failedLoginDelay()
	return s.fatal("28000", fmt.Sprintf("certificate authentication failed for user %q", s.user))
}

// md5 runs the md5 exchange. A login that fails against a cached auth_query secret is checked
// once more against a fresh one: the client's answer can be checked against any md5 secret.
func (s *ClientSession) md5(sec *userSecret) (bool, error) {
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	req := []byte{wire.Authentication, 0, 0, 0, 12, 0, 0, 0, 5, salt[0], salt[1], salt[2], salt[3]}
	if err := s.out.send(req); err != nil {
		return false, err
	}
	msg, err := s.passwordMessage()
	if err != nil {
		return false, err
	}
	got, _, _ := wire.CString(wire.Body(msg))
	check := func() bool {
		if !sec.known || auth.IsSCRAMVerifier(sec.password) {
			return false
		}
		return auth.MD5Matches(got, sec.password, s.user, salt)
	}
	ok := check()
	if !ok && s.refetch(sec) {
		ok = check()
	}
	s.r.Discard(len(msg))
	return ok, nil
}

// scramVerifier returns the verifier the user's SCRAM login is checked against, or nil when
// SCRAM cannot check the user's secret (an md5 hash, or an invalid verifier).
func (s *ClientSession) scramVerifier(tg *route.Target, sec *userSecret) *auth.Verifier {
	switch {
	case !sec.known:
		return nil
	case sec.aq == nil:
		v, err := tg.SCRAMVerifier()
		if err != nil {
			s.l.log.Error("login refused: the user's SCRAM secret is invalid", "user", s.user, "err", err)
			return nil
		}
		return v
	case auth.IsSCRAMVerifier(sec.password):
		v, _ := auth.ParseVerifier(sec.password)
		return v
	case isMD5Hash(sec.password):
		s.l.log.Warn("login refused: auth_query returned an md5 hash, which SCRAM cannot check", "user", s.user, "db", s.db)
		return nil
	}
	// A plain password: the salt is the user's mock salt, the same at every attempt like a
	// stored verifier's, and like the salt a user who does not exist is shown.
	return auth.NewVerifier(sec.password, s.l.mockSalt(s.user), 4096)
}

// channelBinding returns the tls-server-end-point data of sluice's certificate when the client
// is on TLS, nil otherwise (then SCRAM-SHA-256-PLUS is not offered).
func (s *ClientSession) channelBinding(g *config.General) []byte {
	if !s.tls || g.TLS == nil || len(g.TLS.Certificates) == 0 || len(g.TLS.Certificates[0].Certificate) == 0 {
		return nil
	}
	c := &g.TLS.Certificates[0]
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil
		}
	}
	cb, err := auth.TLSServerEndPoint(leaf)
	if err != nil {
		return nil
	}
	return cb
}

// scram runs SCRAM-SHA-256, or SCRAM-SHA-256-PLUS when the client is on TLS and picks it. A user
// that must fail runs the exchange against a verifier nobody knows the password of. On success
// it returns the ClientKey recovered from the client's proof and the verifier's ServerKey.
func (s *ClientSession) scram(g *config.General, tg *route.Target, sec *userSecret) (bool, *backend.Secret, error) {
	v := s.scramVerifier(tg, sec)
	known := v != nil
	switch {
	case v == nil:
		v = s.l.fakeVerifierFor(s.user)
	case v.Iterations <= 1<<30 && auth.IsSCRAMVerifier(sec.password):
		s.l.mockIterations.Store(int32(v.Iterations)) // a stored secret's count, for unknown users
	}
	cbind := s.channelBinding(g)
	b, off := wire.Begin(nil, wire.Authentication)
	b = append(b, 0, 0, 0, 10) // AuthenticationSASL
	if cbind != nil {
		b = wire.AppendCString(b, auth.MechSCRAMPlus)
	}
	b = wire.AppendCString(b, auth.MechSCRAM)
	b = append(b, 0)
	if err := s.out.send(wire.Finish(b, off)); err != nil {
		return false, nil, err
	}
	msg, err := s.passwordMessage()
	if err != nil {
		return false, nil, err
	}
	mech, rest, ok := wire.CString(wire.Body(msg))
	if !ok || len(rest) < 4 {
		return false, nil, s.fatal("08P01", "malformed SASLInitialResponse message")
	}
	plus := string(mech) == auth.MechSCRAMPlus && cbind != nil
	if string(mech) != auth.MechSCRAM && !plus {
		return false, nil, s.fatal("08P01", "client selected an invalid SASL authentication mechanism")
	}
	n := int(int32(uint32(rest[0])<<24 | uint32(rest[1])<<16 | uint32(rest[2])<<8 | uint32(rest[3])))
	if n < 0 || n != len(rest)-4 {
		return false, nil, s.fatal("08P01", "malformed SASLInitialResponse message")
	}
	conv := auth.NewServerConversation(v, rand.Reader)
	conv.SetChannelBinding(cbind, plus)
	first, err := conv.First(rest[4:])
	s.r.Discard(len(msg))
	if err != nil {
		return false, nil, s.scramError(err)
	}
	b, off = wire.Begin(b[:0], wire.Authentication)
	b = append(b, 0, 0, 0, 11) // AuthenticationSASLContinue
	b = append(b, first...)
	if err := s.out.send(wire.Finish(b, off)); err != nil {
		return false, nil, err
	}
	msg, err = s.passwordMessage()
	if err != nil {
		return false, nil, err
	}
	final, err := conv.Final(wire.Body(msg))
	s.r.Discard(len(msg))
	if errors.Is(err, auth.ErrAuthFailed) {
		// The exchange was bound to this secret's salt: a fresh one cannot check this proof,
		// but the client's next attempt gets it.
		s.refetch(sec)
		return false, nil, nil
	}
	if err != nil {
		return false, nil, s.scramError(err)
	}
	if !known {
		return false, nil, nil
	}
	b, off = wire.Begin(b[:0], wire.Authentication)
	b = append(b, 0, 0, 0, 12) // AuthenticationSASLFinal
	b = append(b, final...)
	if err := s.out.send(wire.Finish(b, off)); err != nil {
		return false, nil, err
	}
	return true, &backend.Secret{ClientKey: conv.ClientKey(), ServerKey: v.ServerKey}, nil
}

// scramError answers a SCRAM message that breaks the protocol.
func (s *ClientSession) scramError(err error) error {
	var pe *auth.ProtocolError
	if errors.As(err, &pe) {
		return s.fatal("08P01", "invalid SCRAM message: "+pe.Msg)
	}
	return s.fatal("08P01", "SCRAM authentication failed")
}

// passwordMessage reads the client's next authentication message, refusing anything else and
// anything longer than an authentication message can be. The message stays buffered: the
// caller discards it.
func (s *ClientSession) passwordMessage() ([]byte, error) {
	typ, size, err := s.r.Peek()
	if err != nil {
		return nil, err
	}
	if typ != wire.Password {
		return nil, s.fatal("08P01", fmt.Sprintf("expected a password message, got %q", typ))
	}
	if size > maxPasswordMessage {
		return nil, s.fatal("08P01", "invalid password message length")
	}
	return s.r.Message()
}

// maxPasswordMessage bounds what an unauthenticated client can make sluice buffer, like
// Postgres' own limit on authentication messages.
const maxPasswordMessage = 64 << 10
