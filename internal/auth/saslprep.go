package auth

//go:generate python3 gen_saslprep.py

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// SASLprep returns the form of a SCRAM password that Postgres hashes: its SASLprep (RFC 4013)
// as Postgres' pg_saslprep computes it, or the password as given where pg_saslprep refuses it
// (not UTF-8, empty once mapped, a prohibited or unassigned character, mixed directions), which
// is what Postgres then uses, on the server and in libpq alike. An ASCII password is its own
// SASLprep. Clients that send a password Postgres would normalize (node-postgres, libpq) prove
// the normalized one, so a secret derived without this would not match theirs.
func SASLprep(password string) string {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii || !utf8.ValidString(password) {
		return password
	}
	// 1. Map: non-ASCII spaces to a space, the characters "commonly mapped to nothing" to nothing.
	var b strings.Builder
	var mapped []rune
	for _, r := range password {
		switch {
		case unicode.Is(saslprepNonASCIISpace, r):
			mapped = append(mapped, ' ')
		case unicode.Is(saslprepMappedToNothing, r):
		default:
			mapped = append(mapped, r)
		}
	}
	if len(mapped) == 0 {
		return password
	}
	// 3 and 4 (prohibited characters, directions) look at the mapped characters before
	// normalization, as pg_saslprep does.
	randAL := false
	for _, r := range mapped {
		if unicode.Is(saslprepProhibited, r) || unicode.Is(saslprepUnassigned, r) {
			return password
		}
		if unicode.Is(saslprepRandAL, r) {
			randAL = true
		}
	}
	if randAL {
		// A string with right-to-left characters has no left-to-right one, and begins and ends
		// with a right-to-left one.
		for _, r := range mapped {
			if unicode.Is(saslprepL, r) {
				return password
			}
		}
		if !unicode.Is(saslprepRandAL, mapped[0]) || !unicode.Is(saslprepRandAL, mapped[len(mapped)-1]) {
			return password
		}
	}
	// 2. Normalize to NFKC.
	for _, r := range mapped {
		b.WriteRune(r)
	}
	return norm.NFKC.String(b.String())
}
