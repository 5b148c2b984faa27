package auth

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ClientSecret is what the client side of SCRAM proves itself with: a password, or the
// ClientKey and ServerKey that a password derives. The keys are what sluice has after a client
// logged in to it with SCRAM against a verifier (ServerConversation.ClientKey and the verifier's
// ServerKey): with them sluice logs in to a server as that client without ever knowing the
// password. With keys set, Password is not used; without, its SASLprep is hashed, as libpq does.
type ClientSecret struct {
	Password  string
	ClientKey []byte
	ServerKey []byte
}

// ErrServerSignature is returned by ClientConversation.Verify when the server's signature is not
// the one the secret derives: the server does not know the user's verifier (or is not the server).
var ErrServerSignature = errors.New("scram: the server's signature does not match")

// ClientConversation runs the client side of one SCRAM-SHA-256 (or -PLUS) exchange: First
// gives the SASLInitialResponse data, Final takes the server-first-message and gives the
// SASLResponse data, Verify checks the server-final-message. It does no I/O and is not safe for
// concurrent use. After any error the conversation is over and every later call fails.
type ClientConversation struct {
	secret      ClientSecret
	nonceSource io.Reader
	state       scramState

	cbindData []byte // tls-server-end-point data: use SCRAM-SHA-256-PLUS
	canBind   bool   // the client could bind but the server did not offer PLUS: flag 'y'

	// fixedNonce overrides the random nonce, for the fuzz target.
	fixedNonce string

	gs2Header       string
	clientNonce     string
	clientFirstBare string
	serverSignature []byte
}

// NewClientConversation starts an exchange proving secret. nonceSource supplies the client
// nonce: crypto/rand.Reader outside tests. The caller keeps secret's slices unchanged until the
// conversation is over.
func NewClientConversation(secret ClientSecret, nonceSource io.Reader) *ClientConversation {
	return &ClientConversation{secret: secret, nonceSource: nonceSource}
}

// SetChannelBinding, called before First, binds the exchange to the TLS channel (mechanism
// SCRAM-SHA-256-PLUS) with data, the tls-server-end-point hash of the server's certificate.
// With data nil and canBind set, the client says it could bind but the server did not offer
// it (gs2 flag 'y'), which lets a server that did offer PLUS detect a downgrade.
func (c *ClientConversation) SetChannelBinding(data []byte, canBind bool) {
	c.cbindData, c.canBind = data, canBind
}

// Mechanism returns the SASL mechanism name the conversation runs.
func (c *ClientConversation) Mechanism() string {
	if c.cbindData != nil {
		return MechSCRAMPlus
	}
	return MechSCRAM
}

// First returns the client-first-message. A failing nonceSource yields its error, wrapped.
func (c *ClientConversation) First() ([]byte, error) {
	if c.state != scramWantFirst {
		c.state = scramFailed
		return nil, errors.New("scram: client-first-message out of order")
	}
	c.state = scramFailed
	c.clientNonce = c.fixedNonce
	if c.clientNonce == "" {
		raw := make([]byte, scramNonceLen)
		if _, err := io.ReadFull(c.nonceSource, raw); err != nil {
			return nil, fmt.Errorf("scram: generate client nonce: %w", err)
		}
		c.clientNonce = base64.StdEncoding.EncodeToString(raw)
	}
	switch {
	case c.cbindData != nil:
		c.gs2Header = "p=" + cbindType + ",,"
	case c.canBind:
		c.gs2Header = "y,,"
	default:
		c.gs2Header = "n,,"
	}
	// The user name is left empty, as libpq does: the startup packet names the role.
	c.clientFirstBare = "n=,r=" + c.clientNonce
	c.state = scramWantFinal
	return []byte(c.gs2Header + c.clientFirstBare), nil
}

// Final takes the server-first-message and returns the client-final-message. A malformed
// message, a nonce that does not extend the client's or an unusable salt or iteration count
// yields a *ProtocolError. With a password, the key derivation costs the server's iteration
// count of PBKDF2 rounds (at most 2^24).
func (c *ClientConversation) Final(serverFirst []byte) ([]byte, error) {
	if c.state != scramWantFinal {
		c.state = scramFailed
		return nil, protocolErrorf("server-first-message out of order")
	}
	c.state = scramFailed
	if len(serverFirst) > scramMaxMessage {
		return nil, protocolErrorf("server-first-message longer than %d bytes", scramMaxMessage)
	}
	p := scramParser{s: string(serverFirst)}
	if p.peek('m') {
		return nil, protocolErrorf("server requires an unsupported SCRAM extension")
	}
	nonce, err := p.attr('r')
	if err != nil {
		return nil, err
	}
	if len(nonce) <= len(c.clientNonce) || nonce[:len(c.clientNonce)] != c.clientNonce || !isPrintable(nonce) {
		return nil, protocolErrorf("invalid SCRAM nonce from the server")
	}
	if !p.comma() {
		return nil, protocolErrorf("comma expected after nonce")
	}
	saltB64, err := p.attr('s')
	if err != nil {
		return nil, err
	}
	salt, err := base64.StdEncoding.Strict().DecodeString(saltB64)
	if err != nil || len(salt) == 0 {
		return nil, protocolErrorf("malformed SCRAM salt")
	}
	if !p.comma() {
		return nil, protocolErrorf("comma expected after salt")
	}
	iterStr, err := p.attr('i')
	if err != nil {
		return nil, err
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter <= 0 || iter > scramMaxIterations || iterStr[0] < '1' || iterStr[0] > '9' {
		return nil, protocolErrorf("invalid SCRAM iteration count")
	}
	for p.s != "" {
		if !p.comma() {
			return nil, protocolErrorf("garbage at end of server-first-message")
		}
		if _, _, err := p.anyAttr(); err != nil {
			return nil, err
		}
	}

	clientKey, serverKey := c.secret.ClientKey, c.secret.ServerKey
	if clientKey == nil {
		salted, err := pbkdf2.Key(sha256.New, SASLprep(c.secret.Password), salt, iter, scramKeyLen)
		if err != nil {
			return nil, fmt.Errorf("scram: derive keys: %w", err)
		}
		clientKey = hmacSHA256(salted, []byte("Client Key"))
		serverKey = hmacSHA256(salted, []byte("Server Key"))
	}
	if len(clientKey) != scramKeyLen || len(serverKey) != scramKeyLen {
		return nil, errors.New("scram: ClientKey and ServerKey must be 32 bytes")
	}

	cbind := append([]byte(c.gs2Header), c.cbindData...)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbind) + ",r=" + nonce
	authMessage := []byte(c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof)
	stored := sha256.Sum256(clientKey)
	proof := make([]byte, scramKeyLen)
	subtle.XORBytes(proof, clientKey, hmacSHA256(stored[:], authMessage))
	c.serverSignature = hmacSHA256(serverKey, authMessage)
	c.state = scramWantVerify
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks the server-final-message: the server's signature must be the one the secret
// derives (ErrServerSignature otherwise). A server-final-message with an error, or malformed,
// yields a *ProtocolError.
func (c *ClientConversation) Verify(serverFinal []byte) error {
	if c.state != scramWantVerify {
		c.state = scramFailed
		return protocolErrorf("server-final-message out of order")
	}
	c.state = scramFailed
	if len(serverFinal) > scramMaxMessage {
		return protocolErrorf("server-final-message longer than %d bytes", scramMaxMessage)
	}
	p := scramParser{s: string(serverFinal)}
	if p.peek('e') {
		msg, _ := p.attr('e')
		return protocolErrorf("the server reports %q", msg)
	}
	sigB64, err := p.attr('v')
	if err != nil {
		return err
	}
	// Extensions may follow; nothing sluice knows of.
	for p.s != "" {
		if !p.comma() {
			return protocolErrorf("garbage at end of server-final-message")
		}
		if _, _, err := p.anyAttr(); err != nil {
			return err
		}
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(sigB64)
	if err != nil || len(sig) != scramKeyLen {
		return protocolErrorf("malformed SCRAM server signature")
	}
	if subtle.ConstantTimeCompare(sig, c.serverSignature) != 1 {
		return ErrServerSignature
	}
	c.state = scramDone
	return nil
}
