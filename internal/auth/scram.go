package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 server side (RFC 5802, RFC 7677) as PostgreSQL runs it in auth-scram.c: the
// mechanisms are "SCRAM-SHA-256" and, over TLS, "SCRAM-SHA-256-PLUS" with the channel binding
// type tls-server-end-point (RFC 5929); the username in the client-first-message is ignored (the
// startup packet names the role).

// The SASL mechanism names.
const (
	MechSCRAM     = "SCRAM-SHA-256"
	MechSCRAMPlus = "SCRAM-SHA-256-PLUS"
)

// cbindType is the only channel binding type Postgres and sluice know.
const cbindType = "tls-server-end-point"

const (
	scramPrefix = "SCRAM-SHA-256"

	// scramKeyLen is the length of a SHA-256 digest: StoredKey, ServerKey, ClientKey and proof.
	scramKeyLen = sha256.Size

	// scramNonceLen is how many random bytes the server nonce holds before base64, as in Postgres.
	scramNonceLen = 18

	// scramMaxMessage bounds every SASL message a client may send; real ones are under 200 bytes.
	scramMaxMessage = 1024

	// scramMaxIterations bounds the iteration count ParseVerifier accepts, so that a corrupt
	// secret cannot make NewVerifier-like work take hours.
	scramMaxIterations = 1 << 24
)

// ErrAuthFailed is returned by Final when the client's proof does not match the verifier: the
// password is wrong. Callers answer it with SQLSTATE 28P01 (invalid_password).
var ErrAuthFailed = errors.New("scram: password authentication failed")

// ProtocolError is returned for a SASL message that does not follow the protocol: malformed,
// oversized, out of order, with a nonce that is not this exchange's, or asking for a feature
// sluice does not offer. Callers answer it with SQLSTATE 08P01 (protocol_violation); its message
// is fit to show the client.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return "malformed SCRAM message: " + e.Msg }

func protocolErrorf(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// Verifier is a parsed SCRAM secret: Postgres' pg_authid form
// "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>". It holds no password.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// IsSCRAMVerifier reports whether s parses as a SCRAM-SHA-256 secret, which is how Postgres tells
// a stored secret from a plain-text password.
func IsSCRAMVerifier(s string) bool {
	// Every md5 login asks this of a plain password: answer without parsing.
	if !strings.HasPrefix(s, scramPrefix+"$") {
		return false
	}
	_, err := ParseVerifier(s)
	return err == nil
}

// ParseVerifier parses a secret in pg_authid form. Both keys must be 32 bytes in padded base64,
// the salt must not be empty and the iteration count must be a positive decimal without sign or
// leading zeros, so that String gives back s exactly.
func ParseVerifier(s string) (*Verifier, error) {
	mech, rest, ok := strings.Cut(s, "$")
	if !ok || mech != scramPrefix {
		return nil, errors.New("scram verifier: does not start with SCRAM-SHA-256$")
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, errors.New("scram verifier: missing $ before the keys")
	}
	iterStr, saltStr, ok := strings.Cut(iterSalt, ":")
	if !ok {
		return nil, errors.New("scram verifier: missing : between iterations and salt")
	}
	storedStr, serverStr, ok := strings.Cut(keys, ":")
	if !ok {
		return nil, errors.New("scram verifier: missing : between StoredKey and ServerKey")
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter <= 0 || iter > scramMaxIterations || iterStr[0] < '1' || iterStr[0] > '9' {
		return nil, fmt.Errorf("scram verifier: bad iteration count %q", iterStr)
	}
	salt, err := base64.StdEncoding.Strict().DecodeString(saltStr)
	if err != nil || len(salt) == 0 {
		return nil, errors.New("scram verifier: bad salt")
	}
	stored, err := base64.StdEncoding.Strict().DecodeString(storedStr)
	if err != nil || len(stored) != scramKeyLen {
		return nil, errors.New("scram verifier: bad StoredKey")
	}
	server, err := base64.StdEncoding.Strict().DecodeString(serverStr)
	if err != nil || len(server) != scramKeyLen {
		return nil, errors.New("scram verifier: bad ServerKey")
	}
	return &Verifier{Iterations: iter, Salt: salt, StoredKey: stored, ServerKey: server}, nil
}

// NewVerifier derives the secret Postgres would store for password with salt and iterations:
// that of the password's SASLprep (see SASLprep), as Postgres derives it.
//
// NewVerifier panics if iterations is not positive or salt is empty: both are the caller's
// constants, not input.
func NewVerifier(password string, salt []byte, iterations int) *Verifier {
	if iterations <= 0 || len(salt) == 0 {
		panic("auth.NewVerifier: iterations must be positive and salt non-empty")
	}
	salted, err := pbkdf2.Key(sha256.New, SASLprep(password), salt, iterations, scramKeyLen)
	if err != nil {
		// Only FIPS-140 mode rejects arguments (short passwords or salts); nothing to recover.
		panic("auth.NewVerifier: " + err.Error())
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	return &Verifier{
		Iterations: iterations,
		Salt:       bytes.Clone(salt),
		StoredKey:  stored[:],
		ServerKey:  hmacSHA256(salted, []byte("Server Key")),
	}
}

// String formats v in pg_authid form; ParseVerifier reads it back.
func (v *Verifier) String() string {
	enc := base64.StdEncoding
	return scramPrefix + "$" + strconv.Itoa(v.Iterations) + ":" + enc.EncodeToString(v.Salt) +
		"$" + enc.EncodeToString(v.StoredKey) + ":" + enc.EncodeToString(v.ServerKey)
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

type scramState int

const (
	scramWantFirst scramState = iota
	scramWantFinal
	scramWantVerify // client side: Final sent, the server-final-message is next
	scramDone       // Final (server) or Verify (client) succeeded
	scramFailed     // any error; the conversation accepts nothing more
)

// ServerConversation runs one SCRAM-SHA-256 exchange for one client: First with the
// SASLInitialResponse data, then Final with the SASLResponse data. It does no I/O and is not safe
// for concurrent use. After any error the conversation is over and every later call fails.
type ServerConversation struct {
	v           *Verifier
	nonceSource io.Reader
	state       scramState

	// serverNonce overrides the random nonce; tests set it to replay RFC 7677's example.
	serverNonce string

	// cbindData is the tls-server-end-point data of the connection when the server offered
	// SCRAM-SHA-256-PLUS (nil otherwise); plus is set when the client selected it.
	cbindData []byte
	plus      bool

	gs2Flag         byte
	gs2Header       string // the client's gs2 header, echoed base64 in its client-final-message
	nonce           string // client nonce + server nonce
	clientFirstBare string
	serverFirst     string
	clientKey       []byte
}

// NewServerConversation starts an exchange checking against v. nonceSource supplies the server
// nonce's random bytes: crypto/rand.Reader in production.
func NewServerConversation(v *Verifier, nonceSource io.Reader) *ServerConversation {
	return &ServerConversation{v: v, nonceSource: nonceSource}
}

// SetChannelBinding says what the server offered and the client chose, before First: data is
// the connection's tls-server-end-point hash (see TLSServerEndPoint) when the server advertised
// SCRAM-SHA-256-PLUS, nil when it did not; plus is set when the client selected
// SCRAM-SHA-256-PLUS. The caller owns data; it must not change during the exchange.
func (c *ServerConversation) SetChannelBinding(data []byte, plus bool) {
	c.cbindData, c.plus = data, plus
}

// First takes the client-first-message and returns the server-first-message. A malformed message
// yields a *ProtocolError; a failing nonceSource yields its error, wrapped.
func (c *ServerConversation) First(clientFirst []byte) (serverFirst []byte, err error) {
	if c.state != scramWantFirst {
		c.state = scramFailed
		return nil, protocolErrorf("client-first-message out of order")
	}
	c.state = scramFailed
	if len(clientFirst) > scramMaxMessage {
		return nil, protocolErrorf("client-first-message longer than %d bytes", scramMaxMessage)
	}
	p := scramParser{s: string(clientFirst)}

	// gs2-header: gs2-cbind-flag "," [authzid] ","
	switch {
	case p.peek('p'):
		// "p=" cb-name: the client binds to the channel, which only the PLUS mechanism does.
		if !c.plus {
			return nil, protocolErrorf("client requires SCRAM channel binding, but it was not negotiated")
		}
		p.s = p.s[1:]
		if !strings.HasPrefix(p.s, "="+cbindType+",") {
			return nil, protocolErrorf("unsupported SCRAM channel-binding type (only %s)", cbindType)
		}
		p.s = p.s[1+len(cbindType):]
		c.gs2Flag = 'p'
	case p.peek('n'), p.peek('y'):
		c.gs2Flag = p.s[0]
		p.s = p.s[1:]
		if c.plus {
			return nil, protocolErrorf("channel binding is required by SCRAM-SHA-256-PLUS, but the client did not send it")
		}
		if c.gs2Flag == 'y' && c.cbindData != nil {
			// The client can bind and thinks the server cannot, yet the server offered PLUS:
			// someone removed it from the list on the way (RFC 5802 section 6).
			return nil, protocolErrorf("SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not")
		}
	default:
		return nil, protocolErrorf("unexpected channel-binding flag")
	}
	if !p.comma() {
		return nil, protocolErrorf("comma expected after channel-binding flag")
	}
	if p.peek('a') {
		return nil, protocolErrorf("client uses authorization identity, which is not supported")
	}
	if !p.comma() {
		return nil, protocolErrorf("comma expected after gs2 header")
	}
	c.gs2Header = string(clientFirst[:len(clientFirst)-len(p.s)])

	c.clientFirstBare = p.s
	if p.peek('m') {
		return nil, protocolErrorf("client requires an unsupported SCRAM extension")
	}
	// The user name is ignored, as Postgres does: the startup packet names the role.
	if _, err := p.attr('n'); err != nil {
		return nil, err
	}
	if !p.comma() {
		return nil, protocolErrorf("comma expected after user name")
	}
	clientNonce, err := p.attr('r')
	if err != nil {
		return nil, err
	}
	if clientNonce == "" || !isPrintable(clientNonce) {
		return nil, protocolErrorf("client nonce is empty or not printable")
	}
	// Optional extensions follow; Postgres skips them and so does sluice.
	for p.s != "" {
		if !p.comma() {
			return nil, protocolErrorf("garbage at end of client-first-message")
		}
		if _, _, err := p.anyAttr(); err != nil {
			return nil, err
		}
	}

	serverNonce := c.serverNonce
	if serverNonce == "" {
		raw := make([]byte, scramNonceLen)
		if _, err := io.ReadFull(c.nonceSource, raw); err != nil {
			return nil, fmt.Errorf("scram: generate server nonce: %w", err)
		}
		serverNonce = base64.StdEncoding.EncodeToString(raw)
	}
	c.nonce = clientNonce + serverNonce
	c.serverFirst = "r=" + c.nonce + ",s=" + base64.StdEncoding.EncodeToString(c.v.Salt) +
		",i=" + strconv.Itoa(c.v.Iterations)
	c.state = scramWantFinal
	return []byte(c.serverFirst), nil
}

// Final takes the client-final-message and returns the server-final-message, which the caller
// sends in AuthenticationSASLFinal. A wrong proof yields ErrAuthFailed; a malformed message, a
// nonce other than this exchange's or wrong channel-binding data yields a *ProtocolError.
func (c *ServerConversation) Final(clientFinal []byte) (serverFinal []byte, err error) {
	if c.state != scramWantFinal {
		c.state = scramFailed
		return nil, protocolErrorf("client-final-message out of order")
	}
	c.state = scramFailed
	if len(clientFinal) > scramMaxMessage {
		return nil, protocolErrorf("client-final-message longer than %d bytes", scramMaxMessage)
	}
	p := scramParser{s: string(clientFinal)}

	cbind, err := p.attr('c')
	if err != nil {
		return nil, err
	}
	// c= is the gs2 header the client sent, followed by the channel's binding data with 'p'.
	want := []byte(c.gs2Header)
	if c.gs2Flag == 'p' {
		want = append(want, c.cbindData...)
	}
	if subtle.ConstantTimeCompare([]byte(cbind), []byte(base64.StdEncoding.EncodeToString(want))) != 1 {
		if c.gs2Flag == 'p' {
			return nil, protocolErrorf("SCRAM channel binding check failed")
		}
		return nil, protocolErrorf("unexpected SCRAM channel-binding attribute in client-final-message")
	}
	if !p.comma() {
		return nil, protocolErrorf("comma expected after channel binding")
	}
	nonce, err := p.attr('r')
	if err != nil {
		return nil, err
	}
	if nonce != c.nonce {
		return nil, protocolErrorf("unexpected SCRAM nonce")
	}

	// Skip extensions up to the proof, which must come last.
	var proofB64 string
	var withoutProof string
	for {
		if !p.comma() {
			return nil, protocolErrorf("could not find proof in client-final-message")
		}
		withoutProof = clientFinalPrefix(clientFinal, p.s)
		name, value, err := p.anyAttr()
		if err != nil {
			return nil, err
		}
		if name == 'p' {
			proofB64 = value
			break
		}
	}
	if p.s != "" {
		return nil, protocolErrorf("garbage at end of client-final-message")
	}
	proof, err := base64.StdEncoding.Strict().DecodeString(proofB64)
	if err != nil || len(proof) != scramKeyLen {
		return nil, protocolErrorf("malformed SCRAM proof in client-final-message")
	}

	authMessage := []byte(c.clientFirstBare + "," + c.serverFirst + "," + withoutProof)
	clientSignature := hmacSHA256(c.v.StoredKey, authMessage)
	clientKey := make([]byte, scramKeyLen)
	subtle.XORBytes(clientKey, proof, clientSignature)
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], c.v.StoredKey) != 1 {
		return nil, ErrAuthFailed
	}
	c.clientKey = clientKey
	c.state = scramDone
	serverSignature := hmacSHA256(c.v.ServerKey, authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature)), nil
}

// ClientKey returns the client's ClientKey after a successful Final, nil before or after a failed
// one. With it sluice can log in to a server as the client without knowing the password. The
// caller owns the returned slice.
func (c *ServerConversation) ClientKey() []byte {
	if c.state != scramDone {
		return nil
	}
	return bytes.Clone(c.clientKey)
}

// clientFinalPrefix returns the client-final-message up to, not including, the comma before the
// attribute rest starts with.
func clientFinalPrefix(msg []byte, rest string) string {
	return string(msg[:len(msg)-len(rest)-1])
}

// scramParser reads attribute=value pairs off the front of a SASL message.
type scramParser struct {
	s string
}

func (p *scramParser) peek(b byte) bool { return p.s != "" && p.s[0] == b }

func (p *scramParser) comma() bool {
	if !p.peek(',') {
		return false
	}
	p.s = p.s[1:]
	return true
}

// attr reads "name=value" where the value runs to the next comma or the end.
func (p *scramParser) attr(name byte) (string, error) {
	if !p.peek(name) {
		return "", protocolErrorf("expected attribute %q", name)
	}
	_, value, err := p.anyAttr()
	return value, err
}

// anyAttr reads "x=value" for any ASCII letter x.
func (p *scramParser) anyAttr() (byte, string, error) {
	if len(p.s) < 2 || !isAttrName(p.s[0]) || p.s[1] != '=' {
		return 0, "", protocolErrorf("attribute expected")
	}
	name := p.s[0]
	rest := p.s[2:]
	value := rest
	if i := strings.IndexByte(rest, ','); i >= 0 {
		value = rest[:i]
	}
	p.s = rest[len(value):]
	return name, value, nil
}

func isAttrName(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

// isPrintable reports whether s holds only printable ASCII other than ',' (RFC 5802 "printable").
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}
