package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

// FuzzServerConversation feeds arbitrary client-first and client-final messages to a conversation
// whose server nonce is RFC 7677's, so the fuzzer can reach the proof check. Every outcome must be
// a success, ErrAuthFailed or a *ProtocolError, never a panic.
func FuzzServerConversation(f *testing.F) {
	f.Add([]byte(rfcClientFirst), []byte(rfcClientFinal))
	f.Add([]byte("y,,n=,r=rOprNGfwEbeRWgbNEkqO"), []byte("c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,x=1,p=AAAA"))
	f.Add([]byte("p=tls-server-end-point,,n=,r=abc"), []byte("c=biws,r=abc,p="))
	f.Add([]byte("n,,m=x,n=,r=abc"), []byte(""))
	v := rfcVerifier(f)
	f.Fuzz(func(t *testing.T, first, final []byte) {
		c := NewServerConversation(v, nil)
		c.serverNonce = rfcServerNonce
		sf, err := c.First(first)
		if err != nil {
			checkSCRAMError(t, err)
			if _, err := c.Final(final); err == nil {
				t.Fatal("Final succeeded after a failed First")
			}
			return
		}
		if !bytes.HasPrefix(sf, []byte("r=")) {
			t.Fatalf("server-first %q", sf)
		}
		sfin, err := c.Final(final)
		if err != nil {
			checkSCRAMError(t, err)
			if c.ClientKey() != nil {
				t.Fatal("ClientKey after a failed Final")
			}
			return
		}
		if !bytes.HasPrefix(sfin, []byte("v=")) || len(c.ClientKey()) != scramKeyLen {
			t.Fatalf("success with server-final %q and ClientKey %x", sfin, c.ClientKey())
		}
	})
}

func checkSCRAMError(t *testing.T, err error) {
	t.Helper()
	var pe *ProtocolError
	if !errors.Is(err, ErrAuthFailed) && !errors.As(err, &pe) {
		t.Fatalf("error %v is neither ErrAuthFailed nor *ProtocolError", err)
	}
}

// FuzzParseVerifier checks that whatever ParseVerifier accepts formats back to itself.
func FuzzParseVerifier(f *testing.F) {
	f.Add(rfcVerifier(f).String())
	f.Add("SCRAM-SHA-256$0:$:")
	f.Add("md5" + "00000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVerifier(s)
		if err != nil {
			return
		}
		if got := v.String(); got != s {
			t.Fatalf("%q parsed and formatted as %q", s, got)
		}
	})
}

// FuzzServerChannelBinding is FuzzServerConversation with SCRAM-SHA-256-PLUS offered (and,
// with plus, selected), so the fuzzer reaches the gs2 header's channel-binding name and the
// client-final-message's binding data.
func FuzzServerChannelBinding(f *testing.F) {
	cb := bytes.Repeat([]byte{0xab}, 32)
	bound := "c=" + base64.StdEncoding.EncodeToString(append([]byte("p=tls-server-end-point,,"), cb...))
	f.Add([]byte("p=tls-server-end-point,,n=,r=rOprNGfwEbeRWgbNEkqO"), []byte(bound+",r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA"), true)
	f.Add([]byte("p=tls-unique,,n=,r=abc"), []byte(""), true)
	f.Add([]byte("y,,n=,r=abc"), []byte("c=eSws,r=abc"), false)
	f.Add([]byte("n,,n=,r=abc"), []byte("c=biws,r=abc%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA"), false)
	v := rfcVerifier(f)
	f.Fuzz(func(t *testing.T, first, final []byte, plus bool) {
		c := NewServerConversation(v, nil)
		c.serverNonce = rfcServerNonce
		c.SetChannelBinding(cb, plus)
		if _, err := c.First(first); err != nil {
			checkSCRAMError(t, err)
			return
		}
		if _, err := c.Final(final); err != nil {
			checkSCRAMError(t, err)
			return
		}
		if plus && !bytes.HasPrefix(first, []byte("p=")) {
			t.Fatalf("PLUS exchange succeeded without channel binding: %q", first)
		}
	})
}

// FuzzClientConversation feeds arbitrary server-first and server-final messages to the client
// side. Every outcome is an error or a verified server, never a panic; a server-final-message
// the fuzzer makes up never verifies.
func FuzzClientConversation(f *testing.F) {
	const nonce = "clientnonce"
	f.Add([]byte("r=clientnonceSERVER,s=c2FsdA==,i=16"), []byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), false)
	f.Add([]byte("r=clientnonceSERVER,s=c2FsdA==,i=16,x=ext"), []byte("e=invalid-proof"), true)
	f.Add([]byte("m=ext,r=clientnonce,s=,i=0"), []byte(""), false)
	f.Fuzz(func(t *testing.T, first, final []byte, bind bool) {
		secret := ClientSecret{ClientKey: bytes.Repeat([]byte{1}, 32), ServerKey: bytes.Repeat([]byte{2}, 32)}
		c := NewClientConversation(secret, nil)
		c.fixedNonce = nonce
		if bind {
			c.SetChannelBinding(bytes.Repeat([]byte{3}, 32), true)
		}
		if _, err := c.First(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Final(first); err != nil {
			checkSCRAMError(t, err)
			return
		}
		if err := c.Verify(final); err == nil {
			t.Fatalf("a made-up server-final %q verified", final)
		} else if !errors.Is(err, ErrServerSignature) {
			checkSCRAMError(t, err)
		}
	})
}
