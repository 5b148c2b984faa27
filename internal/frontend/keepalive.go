package frontend

import (
	"context"
	"net"
	"time"

	"github.com/sluicepg/sluice/internal/config"
)

// sockOpts are the TCP options a client connection gets: keepalive, and TCP_USER_TIMEOUT
// (pgcat's tcp_user_timeout, Linux only; 0 keeps the system's). deferAccept is the listener's
// TCP_DEFER_ACCEPT (Linux only), which connections do not carry.
type sockOpts struct {
	ka          net.KeepAliveConfig
	userTimeout time.Duration
	deferAccept bool
}

// clientSockOpts are the TCP options a client connection gets under g.
func clientSockOpts(g *config.General) sockOpts {
	return sockOpts{
		ka: net.KeepAliveConfig{
			Enable: true, Idle: g.TCPKeepalivesIdle, Interval: g.TCPKeepalivesInterval, Count: g.TCPKeepalivesCount,
		},
		userTimeout: g.TCPUserTimeout,
		deferAccept: g.TCPDeferAccept,
	}
}

// tcpListener is a TCP listener whose accepted connections already have the options ka: the
// kernel copies a listening socket's options to the sockets it accepts.
type tcpListener struct {
	net.Listener
	ka sockOpts
}

// ListenTCP listens on addr with g's keepalive and user timeout set on the listening socket where
// the system passes them on to accepted connections (Linux), so that a login does not spend
// system calls on them. A reload that changes them is still honoured: login sets them on each
// connection when they differ from the listener's.
func ListenTCP(ctx context.Context, addr string, g *config.General) (net.Listener, error) {
	ka := clientSockOpts(g)
	// KeepAlive -1: Go would otherwise set its own default on every accepted connection.
	lc := net.ListenConfig{KeepAlive: -1, Control: inheritKeepAlive(ka)}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if !keepAliveInherited {
		return ln, nil
	}
	return &tcpListener{Listener: ln, ka: ka}, nil
}
