package admin

import (
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/route"
)

// RouteBans is the ban list of the routing table's health state: a ban is a route.Node kept out
// of rotation, by the health checker, by a failed connection, or by BAN. A node is one server
// (host, port, database) shared by every pool that reaches it, so banning it bans it for all of
// them; the console lists one row per pool.
type RouteBans func() *route.Table

var _ Bans = RouteBans(nil)

// nodeUse is one server of one (database, user).
type nodeUse struct {
	db, user string
	sv       *route.Server
}

// each calls fn for every server of every target, in a stable order.
func (rb RouteBans) each(fn func(u nodeUse)) {
	c := Console{Table: rb}
	for _, t := range c.targets() {
		for _, shard := range t.tg.Shards {
			for _, sv := range shard {
				if sv.Node != nil {
					fn(nodeUse{t.db, t.user, sv})
				}
			}
		}
	}
}

func (u nodeUse) ban(st route.NodeState) Ban {
	role := u.sv.Role
	if st.Checked {
		role = config.RolePrimary
		if st.InRecovery {
			role = config.RoleReplica
		}
	}
	n := u.sv.Node
	return Ban{
		Database: u.db, User: u.user, Role: role,
		Server: net.JoinHostPort(n.Host, strconv.Itoa(n.Port)),
		Reason: st.BanReason, Until: st.BannedUntil,
	}
}

// Bans returns a row per (database, user) for each banned server.
func (rb RouteBans) Bans() []Ban {
	var out []Ban
	rb.each(func(u nodeUse) {
		if st := u.sv.Node.State(); !st.BannedUntil.IsZero() {
			out = append(out, u.ban(st))
		}
	})
	return out
}

// matches reports whether spec ("host" or "host:port") names the node.
func matches(spec string, n *route.Node) bool {
	if host, port, err := net.SplitHostPort(spec); err == nil {
		return host == n.Host && port == strconv.Itoa(n.Port)
	}
	return spec == n.Host
}

var errNoServer = errors.New("no configured server has that host (and port)")

// Ban bans every server spec names for d, with the reason "admin".
func (rb RouteBans) Ban(spec string, d time.Duration) ([]Ban, error) {
	done := map[*route.Node]bool{}
	var out []Ban
	rb.each(func(u nodeUse) {
		n := u.sv.Node
		if !matches(spec, n) {
			return
		}
		if !done[n] {
			done[n] = true
			n.Ban(d, "admin")
		}
		b := u.ban(n.State())
		b.Since = b.Until.Add(-d)
		out = append(out, b)
	})
	if len(done) == 0 {
		return nil, errNoServer
	}
	return out, nil
}

// Unban lifts the bans of the servers spec names and returns those that were banned.
func (rb RouteBans) Unban(spec string) ([]Ban, error) {
	found := false
	nodes := map[*route.Node]bool{}
	var out []Ban
	rb.each(func(u nodeUse) {
		n := u.sv.Node
		if !matches(spec, n) {
			return
		}
		found = true
		if st := n.State(); !st.BannedUntil.IsZero() {
			out = append(out, u.ban(st))
			nodes[n] = true
		}
	})
	if !found {
		return nil, errNoServer
	}
	for n := range nodes {
		n.Unban()
	}
	return out, nil
}
