package frontend

import (
	"context"
	"net"

	"github.com/sluicepg/sluice/internal/config"
)

// keepAlive is the TCP keepalive a client connection gets under g.
func keepAlive(g *config.General) net.KeepAliveConfig {
	return net.KeepAliveConfig{
		Enable: true, Idle: g.TCPKeepalivesIdle, Interval: g.TCPKeepalivesInterval, Count: g.TCPKeepalivesCount,
	}
}

// tcpListener is a TCP listener whose accepted connections already have keepalive ka: the
// kernel copies a listening socket's options to the sockets it accepts.
type tcpListener struct {
	net.Listener
	ka net.KeepAliveConfig
}

// ListenTCP listens on addr with g's keepalive set on the listening socket where the system
// passes it on to accepted connections (Linux), so that a login does not spend four system
// calls on it. A reload that changes the keepalive is still honoured: login sets it on each
// connection when it differs from the listener's.
func ListenTCP(ctx context.Context, addr string, g *config.General) (net.Listener, error) {
	ka := keepAlive(g)
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
