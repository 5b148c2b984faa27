// Package auth holds the password exchanges sluice runs with its clients. It knows nothing of
// connections: callers move the messages.
package auth

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
)

// MD5Secret returns the hex md5 of password+user, which is what Postgres stores for an md5
// password; a password given as "md5…" (35 characters) is that already.
func MD5Secret(password, user string) string {
	if len(password) == 35 && strings.HasPrefix(password, "md5") {
		return password[3:]
	}
	h := md5.Sum([]byte(password + user))
	return hex.EncodeToString(h[:])
}

// MD5Response is what a client sends in its PasswordMessage for secret and the server's salt.
func MD5Response(secret string, salt [4]byte) string {
	h := md5.Sum(append([]byte(secret), salt[:]...))
	return "md5" + hex.EncodeToString(h[:])
}
