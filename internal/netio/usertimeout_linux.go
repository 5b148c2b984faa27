package netio

import (
	"syscall"
	"time"
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option (include/uapi/linux/tcp.h), which
// the syscall package does not name.
const tcpUserTimeout = 0x12

// UserTimeoutSupported reports whether SetUserTimeout does anything on this system.
const UserTimeoutSupported = true

// SetUserTimeout sets TCP_USER_TIMEOUT on the socket c: how long data sent may stay
// unacknowledged before the kernel drops the connection. 0 restores the system's default. On a
// listening socket, Linux passes it on to the connections it accepts.
func SetUserTimeout(c syscall.RawConn, d time.Duration) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}

// UserTimeout returns the socket's TCP_USER_TIMEOUT.
func UserTimeout(c syscall.RawConn) (time.Duration, error) {
	var (
		v    int
		serr error
	)
	err := c.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
	})
	if err != nil {
		return 0, err
	}
	return time.Duration(v) * time.Millisecond, serr
}
