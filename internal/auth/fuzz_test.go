package auth

import (
	"bytes"
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
