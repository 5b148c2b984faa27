// Package auth holds the password exchanges sluice runs with its clients. It knows nothing of
// connections: callers move the messages.
package auth

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// MD5Secret returns the hex md5 of password+user, which is what Postgres stores for an md5
// password; a password given as "md5…" (35 characters) is that already.
func MD5Secret(password, user string) string {
	var buf [md5.Size * 2]byte
	return string(appendMD5Secret(buf[:0], password, user))
}

// appendMD5Secret appends MD5Secret(password, user) to dst.
func appendMD5Secret(dst []byte, password, user string) []byte {
	if len(password) == 35 && strings.HasPrefix(password, "md5") {
		return append(dst, password[3:]...)
	}
	var buf [128]byte
	h := md5.Sum(append(append(buf[:0], password...), user...))
	return hex.AppendEncode(dst, h[:])
}

// MD5Response is what a client sends in its PasswordMessage for secret and the server's salt.
func MD5Response(secret string, salt [4]byte) string {
	var buf [3 + md5.Size*2]byte
	return string(appendMD5Response(buf[:0], []byte(secret), salt))
}

// appendMD5Response appends MD5Response(secret, salt) to dst.
func appendMD5Response(dst, secret []byte, salt [4]byte) []byte {
	var buf [64]byte
	h := md5.Sum(append(append(buf[:0], secret...), salt[:]...))
	return hex.AppendEncode(append(dst, "md5"...), h[:])
}

// MD5Matches reports whether response is what a client that knows password (plain, or an md5
// hash as MD5Secret takes it) sends in its PasswordMessage for user and salt. The comparison
// takes the same time wherever the two differ, and nothing is allocated: it runs at every md5
// login.
func MD5Matches(response []byte, password, user string, salt [4]byte) bool {
	var sbuf [md5.Size * 2]byte
	var rbuf [3 + md5.Size*2]byte
	want := appendMD5Response(rbuf[:0], appendMD5Secret(sbuf[:0], password, user), salt)
	return subtle.ConstantTimeCompare(response, want) == 1
}
