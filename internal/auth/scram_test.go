package auth

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// RFC 7677 section 3's example exchange.
const (
	rfcPassword    = "pencil"
	rfcClientNonce = "rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcSalt        = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcIterations  = 4096
	rfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

func rfcVerifier(t testing.TB) *Verifier {
	t.Helper()
	salt, err := base64.StdEncoding.DecodeString(rfcSalt)
	if err != nil {
		t.Fatal(err)
	}
	return NewVerifier(rfcPassword, salt, rfcIterations)
}

// rfcConversation is a conversation whose server nonce is the RFC's, which is not base64 and so
// cannot come out of a nonceSource.
func rfcConversation(t testing.TB) *ServerConversation {
	c := NewServerConversation(rfcVerifier(t), nil)
	c.serverNonce = rfcServerNonce
	return c
}

func TestSCRAMRFC7677Exchange(t *testing.T) {
	c := rfcConversation(t)
	sf, err := c.First([]byte(rfcClientFirst))
	if err != nil {
		t.Fatalf("First: %v", err)
	}
	if string(sf) != rfcServerFirst {
		t.Fatalf("server-first = %q, want %q", sf, rfcServerFirst)
	}
	sfin, err := c.Final([]byte(rfcClientFinal))
	if err != nil {
		t.Fatalf("Final: %v", err)
	}
	if string(sfin) != rfcServerFinal {
		t.Fatalf("server-final = %q, want %q", sfin, rfcServerFinal)
	}

	// The ClientKey the server recovers is the one the password derives.
	salt, _ := base64.StdEncoding.DecodeString(rfcSalt)
	salted, _ := pbkdf2.Key(sha256.New, rfcPassword, salt, rfcIterations, 32)
	if want := hmacSHA256(salted, []byte("Client Key")); !bytes.Equal(c.ClientKey(), want) {
		t.Fatalf("ClientKey = %x, want %x", c.ClientKey(), want)
	}
}

func TestSCRAMVerifierRFC7677Keys(t *testing.T) {
	// StoredKey and ServerKey for the RFC 7677 example, derived by hand from its password, salt and
	// iteration count; the exchange test above checks that they reproduce the RFC's server-final.
	const want = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" +
		"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	if got := rfcVerifier(t).String(); got != want {
		t.Fatalf("NewVerifier = %s, want %s", got, want)
	}
}

// scramClient is the client side of SCRAM-SHA-256, written from RFC 5802 section 3 for these
// tests only.
type scramClient struct {
	password, clientNonce, gs2 string
	clientFirstBare            string
	serverSignature            []byte
}

func (cl *scramClient) first() []byte {
	if cl.gs2 == "" {
		cl.gs2 = "n,,"
	}
	cl.clientFirstBare = "n=,r=" + cl.clientNonce
	return []byte(cl.gs2 + cl.clientFirstBare)
}

func (cl *scramClient) final(serverFirst []byte) ([]byte, error) {
	attrs := map[string]string{}
	for _, kv := range strings.Split(string(serverFirst), ",") {
		k, v, _ := strings.Cut(kv, "=")
		attrs[k] = v
	}
	if !strings.HasPrefix(attrs["r"], cl.clientNonce) || len(attrs["r"]) == len(cl.clientNonce) {
		return nil, fmt.Errorf("server nonce %q does not extend ours", attrs["r"])
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		return nil, err
	}
	iter, err := strconv.Atoi(attrs["i"])
	if err != nil {
		return nil, err
	}
	salted, err := pbkdf2.Key(sha256.New, cl.password, salt, iter, 32)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(cl.gs2)) + ",r=" + attrs["r"]
	authMessage := []byte(cl.clientFirstBare + "," + string(serverFirst) + "," + withoutProof)
	signature := hmacSHA256(storedKey[:], authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ signature[i]
	}
	cl.serverSignature = hmacSHA256(hmacSHA256(salted, []byte("Server Key")), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func (cl *scramClient) verify(serverFinal []byte) error {
	if want := "v=" + base64.StdEncoding.EncodeToString(cl.serverSignature); string(serverFinal) != want {
		return fmt.Errorf("server-final = %q, want %q", serverFinal, want)
	}
	return nil
}

func TestSCRAMExchangeWithClient(t *testing.T) {
	v := NewVerifier("secret", []byte("0123456789abcdef"), 4096)
	tests := []struct {
		name     string
		gs2      string
		password string
		wantErr  error
	}{
		{name: "right password", gs2: "n,,", password: "secret"},
		{name: "client supports channel binding but server does not offer it", gs2: "y,,", password: "secret"},
		{name: "wrong password", gs2: "n,,", password: "Secret", wantErr: ErrAuthFailed},
		{name: "empty password", gs2: "n,,", password: "", wantErr: ErrAuthFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nonce := bytes.Repeat([]byte{7}, scramNonceLen)
			c := NewServerConversation(v, bytes.NewReader(nonce))
			cl := &scramClient{password: tt.password, clientNonce: "fyko+d2lbbFgONRv9qkxdawL", gs2: tt.gs2}
			sf, err := c.First(cl.first())
			if err != nil {
				t.Fatalf("First: %v", err)
			}
			wantFirst := "r=fyko+d2lbbFgONRv9qkxdawL" + base64.StdEncoding.EncodeToString(nonce) +
				",s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096"
			if string(sf) != wantFirst {
				t.Fatalf("server-first = %q, want %q", sf, wantFirst)
			}
			cf, err := cl.final(sf)
			if err != nil {
				t.Fatal(err)
			}
			sfin, err := c.Final(cf)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Final error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if c.ClientKey() != nil {
					t.Fatal("ClientKey after a failed Final is not nil")
				}
				return
			}
			if err := cl.verify(sfin); err != nil {
				t.Fatal(err)
			}
			if len(c.ClientKey()) != 32 {
				t.Fatalf("ClientKey has %d bytes", len(c.ClientKey()))
			}
		})
	}
}

func TestSCRAMRandomNonces(t *testing.T) {
	v := NewVerifier("secret", []byte("salt"), 16)
	var seen []string
	for range 2 {
		c := NewServerConversation(v, rand.Reader)
		cl := &scramClient{password: "secret", clientNonce: "abc"}
		sf, err := c.First(cl.first())
		if err != nil {
			t.Fatal(err)
		}
		cf, err := cl.final(sf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Final(cf); err != nil {
			t.Fatalf("Final: %v", err)
		}
		seen = append(seen, string(sf))
	}
	if seen[0] == seen[1] {
		t.Fatal("two conversations chose the same server nonce")
	}
}

func TestSCRAMNonceSourceFails(t *testing.T) {
	c := NewServerConversation(rfcVerifier(t), bytes.NewReader(make([]byte, 3)))
	_, err := c.First([]byte(rfcClientFirst))
	var pe *ProtocolError
	if err == nil || errors.As(err, &pe) {
		t.Fatalf("First with a short nonce source: err = %v, want a non-protocol error", err)
	}
}

func TestSCRAMFirstRejectsMalformed(t *testing.T) {
	tests := []struct {
		name, msg string
	}{
		{"empty", ""},
		{"channel binding required", "p=tls-server-end-point,,n=,r=abc"},
		{"bad channel-binding flag", "x,,n=,r=abc"},
		{"no comma after flag", "n"},
		{"authzid", "n,a=bob,n=,r=abc"},
		{"truncated gs2 header", "n,"},
		{"mandatory extension", "n,,m=ext,n=,r=abc"},
		{"missing user", "n,,r=abc"},
		{"missing nonce", "n,,n=user"},
		{"empty nonce", "n,,n=,r="},
		{"nonce not printable", "n,,n=,r=ab\x01c"},
		{"nonce with space", "n,,n=,r=ab c"},
		{"nonce before user", "n,,r=abc,n=user"},
		{"garbage after nonce", "n,,n=,r=abc,"},
		{"malformed extension", "n,,n=,r=abc,=x"},
		{"oversized", "n,,n=,r=" + strings.Repeat("a", scramMaxMessage)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewServerConversation(rfcVerifier(t), rand.Reader)
			_, err := c.First([]byte(tt.msg))
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("First(%q) error = %v, want *ProtocolError", tt.msg, err)
			}
		})
	}
}

func TestSCRAMFirstAcceptsExtensionsAfterNonce(t *testing.T) {
	c := rfcConversation(t)
	if _, err := c.First([]byte(rfcClientFirst + ",x=ext")); err != nil {
		t.Fatalf("First: %v", err)
	}
}

func TestSCRAMFinalRejectsMalformed(t *testing.T) {
	const nonce = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	const proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	tests := []struct {
		name, msg string
	}{
		{"empty", ""},
		{"truncated", rfcClientFinal[:len(rfcClientFinal)-10]},
		{"missing channel binding", nonce + "," + proof},
		{"channel binding data for p", "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws," + nonce + "," + proof},
		{"channel binding not base64", "c=bi*s," + nonce + "," + proof},
		{"tampered nonce", "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1," + proof},
		{"client nonce only", "c=biws,r=rOprNGfwEbeRWgbNEkqO," + proof},
		{"missing nonce", "c=biws," + proof},
		{"missing proof", "c=biws," + nonce},
		{"proof not base64", "c=biws," + nonce + ",p=!!!!"},
		{"proof too short", "c=biws," + nonce + ",p=AAAA"},
		{"proof with unpadded base64", "c=biws," + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ"},
		{"garbage after proof", rfcClientFinal + ",x=y"},
		{"nonce after proof", "c=biws," + proof + "," + nonce},
		{"oversized", "c=biws," + nonce + ",x=" + strings.Repeat("a", scramMaxMessage) + "," + proof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rfcConversation(t)
			if _, err := c.First([]byte(rfcClientFirst)); err != nil {
				t.Fatal(err)
			}
			_, err := c.Final([]byte(tt.msg))
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Final(%q) error = %v, want *ProtocolError", tt.msg, err)
			}
			if c.ClientKey() != nil {
				t.Fatal("ClientKey after a failed Final is not nil")
			}
		})
	}
}

func TestSCRAMFinalSkipsExtensionsBeforeProof(t *testing.T) {
	// The extension becomes part of the AuthMessage, so build the proof with it.
	v := NewVerifier("secret", []byte("salt"), 16)
	c := NewServerConversation(v, rand.Reader)
	cl := &scramClient{password: "secret", clientNonce: "abc"}
	sf, err := c.First(cl.first())
	if err != nil {
		t.Fatal(err)
	}
	cf, err := cl.final(sf)
	if err != nil {
		t.Fatal(err)
	}
	// Insert ",x=1" before ",p=": the proof no longer matches the AuthMessage.
	i := bytes.LastIndex(cf, []byte(",p="))
	tampered := append(append(bytes.Clone(cf[:i]), ",x=1"...), cf[i:]...)
	if _, err := c.Final(tampered); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Final with an extension the proof does not cover: err = %v, want ErrAuthFailed", err)
	}
}

func TestSCRAMOutOfOrder(t *testing.T) {
	t.Run("Final before First", func(t *testing.T) {
		c := rfcConversation(t)
		var pe *ProtocolError
		if _, err := c.Final([]byte(rfcClientFinal)); !errors.As(err, &pe) {
			t.Fatalf("err = %v, want *ProtocolError", err)
		}
	})
	t.Run("First twice", func(t *testing.T) {
		c := rfcConversation(t)
		if _, err := c.First([]byte(rfcClientFirst)); err != nil {
			t.Fatal(err)
		}
		var pe *ProtocolError
		if _, err := c.First([]byte(rfcClientFirst)); !errors.As(err, &pe) {
			t.Fatalf("err = %v, want *ProtocolError", err)
		}
	})
	t.Run("Final replayed", func(t *testing.T) {
		c := rfcConversation(t)
		if _, err := c.First([]byte(rfcClientFirst)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Final([]byte(rfcClientFinal)); err != nil {
			t.Fatal(err)
		}
		var pe *ProtocolError
		if _, err := c.Final([]byte(rfcClientFinal)); !errors.As(err, &pe) {
			t.Fatalf("err = %v, want *ProtocolError", err)
		}
	})
	t.Run("retry after a failed Final", func(t *testing.T) {
		c := rfcConversation(t)
		if _, err := c.First([]byte(rfcClientFirst)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Final([]byte("c=biws")); err == nil {
			t.Fatal("truncated Final succeeded")
		}
		var pe *ProtocolError
		if _, err := c.Final([]byte(rfcClientFinal)); !errors.As(err, &pe) {
			t.Fatalf("err = %v, want *ProtocolError", err)
		}
	})
	t.Run("replayed to a new conversation", func(t *testing.T) {
		// A client-final captured from another exchange carries that exchange's nonce.
		c := NewServerConversation(rfcVerifier(t), rand.Reader)
		if _, err := c.First([]byte(rfcClientFirst)); err != nil {
			t.Fatal(err)
		}
		var pe *ProtocolError
		if _, err := c.Final([]byte(rfcClientFinal)); !errors.As(err, &pe) {
			t.Fatalf("err = %v, want *ProtocolError", err)
		}
	})
}

func TestVerifierRoundTrip(t *testing.T) {
	tests := []string{
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		NewVerifier("secret", []byte("0123456789abcdef"), 4096).String(),
		NewVerifier("", []byte{0}, 1).String(),
	}
	for _, s := range tests {
		v, err := ParseVerifier(s)
		if err != nil {
			t.Fatalf("ParseVerifier(%q): %v", s, err)
		}
		if got := v.String(); got != s {
			t.Fatalf("round trip: %q became %q", s, got)
		}
		if !IsSCRAMVerifier(s) {
			t.Fatalf("IsSCRAMVerifier(%q) = false", s)
		}
	}
}

func TestParseVerifierRejects(t *testing.T) {
	const key = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	tests := []struct {
		name, s string
	}{
		{"empty", ""},
		{"plain password", "secret"},
		{"md5 secret", "md5" + strings.Repeat("0", 32)},
		{"other mechanism", "SCRAM-SHA-1$4096:c2FsdA==$" + key + ":" + key},
		{"lower-case prefix", "scram-sha-256$4096:c2FsdA==$" + key + ":" + key},
		{"no keys", "SCRAM-SHA-256$4096:c2FsdA=="},
		{"no salt separator", "SCRAM-SHA-256$4096$" + key + ":" + key},
		{"no key separator", "SCRAM-SHA-256$4096:c2FsdA==$" + key + key},
		{"zero iterations", "SCRAM-SHA-256$0:c2FsdA==$" + key + ":" + key},
		{"negative iterations", "SCRAM-SHA-256$-1:c2FsdA==$" + key + ":" + key},
		{"signed iterations", "SCRAM-SHA-256$+4096:c2FsdA==$" + key + ":" + key},
		{"iterations with leading zero", "SCRAM-SHA-256$04096:c2FsdA==$" + key + ":" + key},
		{"huge iterations", "SCRAM-SHA-256$99999999999:c2FsdA==$" + key + ":" + key},
		{"empty salt", "SCRAM-SHA-256$4096:$" + key + ":" + key},
		{"salt not base64", "SCRAM-SHA-256$4096:c2F*dA==$" + key + ":" + key},
		{"short StoredKey", "SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:" + key},
		{"short ServerKey", "SCRAM-SHA-256$4096:c2FsdA==$" + key + ":c2FsdA=="},
		{"trailing garbage", "SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key + "$x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, err := ParseVerifier(tt.s); err == nil {
				t.Fatalf("ParseVerifier(%q) = %v, want an error", tt.s, v)
			}
			if IsSCRAMVerifier(tt.s) {
				t.Fatalf("IsSCRAMVerifier(%q) = true", tt.s)
			}
		})
	}
}
