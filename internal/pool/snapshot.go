package pool

import "time"

// ServerInfo describes one server connection for the admin console.
type ServerInfo struct {
	PID      uint32 // the server's process ID
	Created  time.Time
	LastUsed time.Time
	Prepared int // statements prepared under sluice's names
}

// IdleServers appends a snapshot of the pool's idle connections to dst. Connections in use are
// not in it: their sessions know them.
func (p *Pool) IdleServers(dst []ServerInfo) []ServerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.idle {
		si := ServerInfo{PID: s.PID(), Created: s.Created, LastUsed: s.LastUsed}
		if s.Prepared != nil {
			si.Prepared = s.Prepared.Len()
		}
		dst = append(dst, si)
	}
	return dst
}
