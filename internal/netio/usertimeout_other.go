//go:build !linux

package netio

import (
	"syscall"
	"time"
)

// UserTimeoutSupported reports whether SetUserTimeout does anything on this system: TCP_USER_TIMEOUT
// is Linux's.
const UserTimeoutSupported = false

// SetUserTimeout does nothing here.
func SetUserTimeout(syscall.RawConn, time.Duration) error { return nil }

// UserTimeout returns 0 here.
func UserTimeout(syscall.RawConn) (time.Duration, error) { return 0, nil }
