package auth

import "testing"

// The cases of RFC 4013 section 3, and one for each way pg_saslprep gives up (the password is
// then used as it is, by Postgres and by libpq).
func TestSASLprep(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ASCII is left alone", "user", "user"},
		{"case is kept", "USER", "USER"},
		{"ASCII control characters are left alone (the ASCII fast path)", "a\x07b", "a\x07b"},
		{"soft hyphen mapped to nothing", "I\u00adX", "IX"},
		{"non-ASCII space mapped to a space", "a\u00a0b\u3000c", "a b c"},
		{"NFKC: feminine ordinal", "\u00aa", "a"},
		{"NFKC: roman numeral nine", "IX-\u2168", "IX-IX"},
		{"NFKC: composed from a combining accent", "cafe\u0301", "caf\u00e9"},
		{"right-to-left only", "\u0627\u0628", "\u0627\u0628"},
		{"not UTF-8", "\xff\xfeab", "\xff\xfeab"},
		{"empty once mapped", "\u00ad\u034f", "\u00ad\u034f"},
		{"zero width space: a space first, as pg_saslprep checks", "a\u200bb", "a b"},
		{"prohibited: line separator", "a\u2028b\u2168", "a\u2028b\u2168"},
		{"prohibited: private use", "\ue000\u2168", "\ue000\u2168"},
		{"unassigned in Unicode 3.2", "a\u0221\u2168", "a\u0221\u2168"},
		{"bidi: RandAL and L mixed", "\u0627a\u0627", "\u0627a\u0627"},
		{"bidi: RandAL not last (RFC 4013 example 7)", "\u0627\u0031", "\u0627\u0031"},
	}
	for _, tt := range tests {
		if got := SASLprep(tt.in); got != tt.want {
			t.Errorf("%s: SASLprep(%+q) = %+q, want %+q", tt.name, tt.in, got, tt.want)
		}
	}
}

// A password and its SASLprep derive the same verifier: a client that proves the normalized form
// (as libpq and node-postgres do) matches a secret made from the password as written.
func TestNewVerifierHashesTheSASLprep(t *testing.T) {
	salt := []byte("0123456789abcdef")
	if a, b := NewVerifier("IX-\u2168", salt, 4096).String(), NewVerifier("IX-IX", salt, 4096).String(); a != b {
		t.Fatalf("verifiers differ:\n%s\n%s", a, b)
	}
}
