package frontend

import (
	"syscall"

	"github.com/sluicepg/sluice/internal/netio"
)

// keepAliveInherited: Linux copies SO_KEEPALIVE, the TCP_KEEP* settings and TCP_USER_TIMEOUT of a
// listening socket to the connections it accepts.
const keepAliveInherited = true

// deferAcceptSeconds is TCP_DEFER_ACCEPT's wait when tcp_defer_accept is on. A client sends its
// first packet (SSLRequest or startup) as soon as it has connected, so any wait gives the saving:
// a login's first read finds its bytes instead of failing with EAGAIN and waiting for them,
// one system call and one wakeup per connection. It is short because a connection that stays
// silent is held by the kernel, out of sluice's sight, until it ends (about a second: the
// kernel counts it in SYN-ACK retransmissions), and only then does client_login_timeout start.
// PgBouncer waits 45 s, so a silent client is closed that much later than its login timeout.
const deferAcceptSeconds = 1

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
			if o.deferAccept {
				opts = append(opts, struct{ level, opt, v int }{syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, deferAcceptSeconds})
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
