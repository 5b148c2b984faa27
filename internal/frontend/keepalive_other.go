//go:build !linux

package frontend

import (
	"net"
	"syscall"
)

// keepAliveInherited: elsewhere login sets the keepalive on each connection.
const keepAliveInherited = false

func inheritKeepAlive(net.KeepAliveConfig) func(network, address string, c syscall.RawConn) error {
	return nil
}
