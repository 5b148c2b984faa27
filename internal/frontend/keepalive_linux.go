package frontend

import (
	"syscall"

	"github.com/sluicepg/sluice/internal/netio"
)

// keepAliveInherited: Linux copies SO_KEEPALIVE, the TCP_KEEP* settings and TCP_USER_TIMEOUT of a
// listening socket to the connections it accepts.
const keepAliveInherited = true

func inheritKeepAlive(o sockOpts) func(network, address string, c syscall.RawConn) error {
	ka := o.ka
	return func(_, _ string, c syscall.RawConn) error {
		if err := netio.SetUserTimeout(c, o.userTimeout); err != nil {
			return err
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			opts := []struct{ level, opt, v int }{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(ka.Idle.Seconds())},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(ka.Interval.Seconds())},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, ka.Count},
			}
			for _, o := range opts {
				if serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
