// Package pgtext reads values in the text forms that Postgres' input functions accept, so that a
// value sluice reads from a query (a sharding key, a cache key) is the value Postgres reads.
package pgtext

import (
	"encoding/hex"
	"errors"
)

var (
	// ErrSyntax is returned for text the input function would refuse.
	ErrSyntax = errors.New("invalid input syntax")
	// ErrRange is returned for a number outside the type's range.
	ErrRange = errors.New("out of range")
)

// IsSpace reports whether c is white space as Postgres' number input reads it (isspace in the C
// locale).
func IsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// ParseInt reads b as Postgres 15's int2in, int4in and int8in do, for bits 16, 32 and 64:
// optional white space around an optional sign and decimal digits. The forms later versions
// accept too (0x2A, 1_000) are refused: callers use the value to name a row or a shard, and
// refusing is always safe.
func ParseInt(b []byte, bits int) (int64, error) {
	i, j := 0, len(b)
	for i < j && IsSpace(b[i]) {
		i++
	}
	for j > i && IsSpace(b[j-1]) {
		j--
	}
	neg := false
	if i < j && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	if i == j {
		return 0, ErrSyntax
	}
	// Accumulate negatively so that the minimum fits.
	minimum := -int64(1) << (bits - 1)
	minDiv10 := minimum / 10
	var v int64
	for ; i < j; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, ErrSyntax
		}
		d := int64(c - '0')
		if v < minDiv10 || v*10 < minimum+d {
			return 0, ErrRange // as Postgres, whatever follows
		}
		v = v*10 - d
	}
	if !neg {
		if v == minimum {
			return 0, ErrRange
		}
		v = -v
	}
	return v, nil
}

// ParseUUID reads b as uuid_in does: an optional pair of braces around 32 hex digits of either
// case, with an optional hyphen after any group of four digits but the last.
func ParseUUID(b []byte) ([16]byte, bool) {
	var u [16]byte
	s := b
	braces := len(s) > 0 && s[0] == '{'
	if braces {
		s = s[1:]
	}
	for i := range 16 {
		if len(s) < 2 {
			return u, false
		}
		hi, ok1 := unhex(s[0])
		lo, ok2 := unhex(s[1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[i] = hi<<4 | lo
		s = s[2:]
		if len(s) > 0 && s[0] == '-' && i%2 == 1 && i < 15 {
			s = s[1:]
		}
	}
	if braces {
		if len(s) == 0 || s[0] != '}' {
			return u, false
		}
		s = s[1:]
	}
	return u, len(s) == 0
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// AppendUUID appends uuid_out's text form of u: lower case, hyphenated 8-4-4-4-12.
func AppendUUID(dst []byte, u [16]byte) []byte {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return append(dst, buf[:]...)
}
