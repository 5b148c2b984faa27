package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// exchange runs a whole SCRAM exchange between a client and a server conversation and returns
// the first error, from whichever side.
func exchange(cl *ClientConversation, srv *ServerConversation) error {
	cf, err := cl.First()
	if err != nil {
		return err
	}
	sf, err := srv.First(cf)
	if err != nil {
		return err
	}
	cfin, err := cl.Final(sf)
	if err != nil {
		return err
	}
	sfin, err := srv.Final(cfin)
	if err != nil {
		return err
	}
	return cl.Verify(sfin)
}

func TestSCRAMClientLogsInToServer(t *testing.T) {
	v := NewVerifier("secret", []byte("0123456789abcdef"), 4096)
	// What a server conversation learns from a password login is enough to log in again.
	first := NewServerConversation(v, rand.Reader)
	if err := exchange(NewClientConversation(ClientSecret{Password: "secret"}, rand.Reader), first); err != nil {
		t.Fatalf("password login: %v", err)
	}
	keys := ClientSecret{ClientKey: first.ClientKey(), ServerKey: v.ServerKey}
	cbind := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name    string
		secret  ClientSecret
		cbind   []byte // client binds with this
		canBind bool
		offered []byte // the server offered PLUS with this
		plus    bool   // the client selected PLUS
		want    error  // nil, ErrAuthFailed, or any *ProtocolError (errProtocol)
	}{
		{name: "password", secret: ClientSecret{Password: "secret"}},
		{name: "ClientKey and ServerKey", secret: keys},
		{name: "wrong password", secret: ClientSecret{Password: "Secret"}, want: ErrAuthFailed},
		{name: "wrong ClientKey", secret: ClientSecret{ClientKey: make([]byte, 32), ServerKey: v.ServerKey}, want: ErrAuthFailed},
		{name: "channel binding", secret: keys, cbind: cbind, offered: cbind, plus: true},
		{name: "channel binding with a password", secret: ClientSecret{Password: "secret"}, cbind: cbind, offered: cbind, plus: true},
		{name: "channel binding to another certificate", secret: keys, cbind: bytes.Repeat([]byte{8}, 32), offered: cbind, plus: true, want: errProtocol},
		{name: "PLUS selected without binding", secret: keys, offered: cbind, plus: true, want: errProtocol},
		{name: "binding without selecting PLUS", secret: keys, cbind: cbind, offered: cbind, want: errProtocol},
		{name: "PLUS offered, client does not bind", secret: keys, offered: cbind},
		{name: "PLUS offered, client says the server cannot bind", secret: keys, canBind: true, offered: cbind, want: errProtocol},
		{name: "PLUS not offered, client could bind", secret: keys, canBind: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := NewClientConversation(tt.secret, rand.Reader)
			cl.SetChannelBinding(tt.cbind, tt.canBind)
			srv := NewServerConversation(v, rand.Reader)
			srv.SetChannelBinding(tt.offered, tt.plus)
			err := exchange(cl, srv)
			var pe *ProtocolError
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("exchange: %v", err)
			case tt.want == errProtocol && !errors.As(err, &pe):
				t.Fatalf("exchange: %v, want a *ProtocolError", err)
			case tt.want != nil && tt.want != errProtocol && !errors.Is(err, tt.want):
				t.Fatalf("exchange: %v, want %v", err, tt.want)
			}
			if tt.want == nil && !bytes.Equal(srv.ClientKey(), keys.ClientKey) {
				t.Fatal("the server learned another ClientKey")
			}
		})
	}
}

// errProtocol stands for any *ProtocolError in test tables.
var errProtocol = errors.New("any protocol error")

func TestSCRAMClientChecksServerSignature(t *testing.T) {
	v := NewVerifier("secret", []byte("salt"), 16)
	other := NewVerifier("secret", []byte("salt"), 16)
	other.ServerKey = make([]byte, 32) // a server that has the StoredKey but not the ServerKey
	for _, tt := range []struct {
		name string
		v    *Verifier
		want error
	}{{"right server", v, nil}, {"server without the ServerKey", other, ErrServerSignature}} {
		t.Run(tt.name, func(t *testing.T) {
			err := exchange(NewClientConversation(ClientSecret{Password: "secret"}, rand.Reader), NewServerConversation(tt.v, rand.Reader))
			if !errors.Is(err, tt.want) {
				t.Fatalf("exchange: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSCRAMClientRejectsMalformedServerMessages(t *testing.T) {
	start := func(t *testing.T) (*ClientConversation, string) {
		cl := NewClientConversation(ClientSecret{Password: "secret"}, rand.Reader)
		cf, err := cl.First()
		if err != nil {
			t.Fatal(err)
		}
		return cl, strings.TrimPrefix(string(cf), "n,,n=,r=")
	}
	firsts := []struct {
		name string
		msg  func(nonce string) string
	}{
		{"empty", func(string) string { return "" }},
		{"nonce not ours", func(string) string { return "r=someoneelse,s=c2FsdA==,i=4096" }},
		{"nonce not extended", func(n string) string { return "r=" + n + ",s=c2FsdA==,i=4096" }},
		{"salt missing", func(n string) string { return "r=" + n + "x,i=4096" }},
		{"salt empty", func(n string) string { return "r=" + n + "x,s=,i=4096" }},
		{"salt not base64", func(n string) string { return "r=" + n + "x,s=!!,i=4096" }},
		{"iterations zero", func(n string) string { return "r=" + n + "x,s=c2FsdA==,i=0" }},
		{"iterations huge", func(n string) string { return "r=" + n + "x,s=c2FsdA==,i=99999999999" }},
		{"iterations signed", func(n string) string { return "r=" + n + "x,s=c2FsdA==,i=+5" }},
		{"mandatory extension", func(n string) string { return "m=x,r=" + n + "x,s=c2FsdA==,i=4096" }},
		{"garbage at end", func(n string) string { return "r=" + n + "x,s=c2FsdA==,i=4096,," }},
		{"oversized", func(n string) string {
			return "r=" + n + "x,s=c2FsdA==,i=4096,x=" + strings.Repeat("a", scramMaxMessage)
		}},
	}
	for _, tt := range firsts {
		t.Run("server-first "+tt.name, func(t *testing.T) {
			cl, nonce := start(t)
			var pe *ProtocolError
			if _, err := cl.Final([]byte(tt.msg(nonce))); !errors.As(err, &pe) {
				t.Fatalf("Final: %v, want a *ProtocolError", err)
			}
			if err := cl.Verify([]byte("v=AAAA")); err == nil {
				t.Fatal("Verify after a failed Final succeeded")
			}
		})
	}
	for _, msg := range []string{"", "e=invalid-proof", "v=AAAA", "v=!!", "x=1", "v=" + strings.Repeat("A", 44) + ",,"} {
		t.Run("server-final "+msg, func(t *testing.T) {
			cl, nonce := start(t)
			if _, err := cl.Final([]byte("r=" + nonce + "x,s=c2FsdA==,i=16")); err != nil {
				t.Fatal(err)
			}
			var pe *ProtocolError
			if err := cl.Verify([]byte(msg)); !errors.As(err, &pe) {
				t.Fatalf("Verify(%q): %v, want a *ProtocolError", msg, err)
			}
		})
	}
	t.Run("out of order", func(t *testing.T) {
		cl := NewClientConversation(ClientSecret{Password: "secret"}, rand.Reader)
		if _, err := cl.Final([]byte("r=x,s=c2FsdA==,i=16")); err == nil {
			t.Fatal("Final before First succeeded")
		}
		if _, err := cl.First(); err == nil {
			t.Fatal("First after a failure succeeded")
		}
	})
}

func TestTLSServerEndPoint(t *testing.T) {
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(c, rand.Reader); return k }
	p256, p384 := ecKey(elliptic.P256()), ecKey(elliptic.P384())
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		alg  x509.SignatureAlgorithm
		key  any
		hash func([]byte) []byte
	}{
		{"ECDSA SHA-256", x509.ECDSAWithSHA256, p256, func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }},
		{"ECDSA SHA-384", x509.ECDSAWithSHA384, p384, func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }},
		{"ECDSA SHA-512", x509.ECDSAWithSHA512, p384, func(b []byte) []byte { h := sha512.Sum512(b); return h[:] }},
		{"Ed25519", x509.PureEd25519, edKey, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
				NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), SignatureAlgorithm: tt.alg}
			var pub any
			switch k := tt.key.(type) {
			case *ecdsa.PrivateKey:
				pub = &k.PublicKey
			case ed25519.PrivateKey:
				pub = k.Public()
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			cert, _ := x509.ParseCertificate(der)
			got, err := TLSServerEndPoint(cert)
			if tt.hash == nil {
				if err == nil {
					t.Fatal("Ed25519 has no tls-server-end-point hash, got one")
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.hash(der)) {
				t.Fatalf("got %x, %v; want %x", got, err, tt.hash(der))
			}
		})
	}
	// SHA-1 (and MD5) signatures hash with SHA-256; Go no longer signs with them, so set the
	// algorithm on a parsed certificate.
	cert := &x509.Certificate{Raw: []byte("certificate"), SignatureAlgorithm: x509.SHA1WithRSA}
	want := sha256.Sum256(cert.Raw)
	if got, err := TLSServerEndPoint(cert); err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("SHA-1 signature: %x, %v; want SHA-256 %x", got, err, want)
	}
}
