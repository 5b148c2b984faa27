//go:build !linux

package frontend

import "syscall"

// keepAliveInherited: elsewhere login sets the keepalive on each connection.
const keepAliveInherited = false

func inheritKeepAlive(sockOpts) func(network, address string, c syscall.RawConn) error {
	return nil
}
