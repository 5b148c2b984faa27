package route

import (
	"math/rand/v2"
	"time"

	"github.com/sluicepg/sluice/internal/config"
)

// Role is what a query needs of its server.
type Role uint8

const (
	// Any server of the shard will do, the primary included.
	Any Role = iota
	// Primary: the server that takes writes.
	Primary
	// Replica: a replica, or the primary when no replica can take the query.
	Replica
)

func (r Role) String() string {
	switch r {
	case Primary:
		return config.RolePrimary
	case Replica:
		return config.RoleReplica
	}
	return config.RoleAny
}

// ParseRole reads a default_role value.
func ParseRole(s string) Role {
	switch s {
	case config.RolePrimary:
		return Primary
	case config.RoleReplica:
		return Replica
	}
	return Any
}

// maxCandidates bounds the servers of a shard considered without allocating.
const maxCandidates = 16

// Pick chooses a server of shard for a query that needs role, skipping avoid (the server that
// just failed the query, or nil). Reads spread over the healthy candidates by the pool's
// load_balancing_mode; a banned or lagging replica takes none; when no replica can take a read it
// goes to the primary. Writes go to the server the cluster says is the primary.
func (tg *Target) Pick(shard int, role Role, avoid *Server) (*Server, error) {
	if shard >= len(tg.Shards) || len(tg.Shards[shard]) == 0 {
		return nil, ErrNoServer
	}
	servers := tg.Shards[shard]
	if len(servers) == 1 {
		if servers[0] == avoid {
			return nil, ErrNoServer
		}
		return servers[0], nil
	}
	pc := tg.Settings()
	if role == Primary {
		return tg.primary(servers, pc, avoid)
	}
	now := time.Now().UnixNano()
	var buf [maxCandidates]*Server
	cand := buf[:0]
	for _, s := range servers {
		if s == avoid || s.Node.Banned(now) || len(cand) == maxCandidates {
			continue
		}
		if s.Node.Primary(pc.RoleDiscovery) {
			if role == Replica {
				continue
			}
		} else if s.Node.lagged.Load() {
			continue
		}
		cand = append(cand, s)
	}
	if len(cand) == 0 {
		// No replica can take it (all banned or behind): the primary does.
		return tg.primary(servers, pc, avoid)
	}
	if len(cand) == 1 {
		return cand[0], nil
	}
	switch pc.LoadBalancingMode {
	case config.BalanceRoundRobin:
		return cand[int(tg.rr.Add(1)%uint32(len(cand)))], nil
	case config.BalanceLOC:
		best, busy := cand[0], cand[0].Pool.Busy()
		for _, s := range cand[1:] {
			if b := s.Pool.Busy(); b < busy {
				best, busy = s, b
			}
		}
		return best, nil
	}
	return cand[rand.IntN(len(cand))], nil
}

// primary returns the server that takes writes: with role discovery, the one not in recovery
// (the highest timeline if more than one claims it, as after a failover whose old primary came
// back alone); else, or when none answers, the one the file names.
func (tg *Target) primary(servers []*Server, pc *config.Pool, avoid *Server) (*Server, error) {
	now := time.Now().UnixNano()
	var best *Server
	for _, s := range servers {
		if s == avoid || !s.Node.Primary(pc.RoleDiscovery) || s.Node.Banned(now) {
			continue
		}
		if best == nil || s.Node.timeline.Load() > best.Node.timeline.Load() {
			best = s
		}
	}
	if best != nil {
		return best, nil
	}
	for _, s := range servers {
		if s != avoid && s.Role == config.RolePrimary {
			return s, nil
		}
	}
	// No primary at all (a pool of replicas): the first server, whose own error will say why
	// a write cannot run there.
	for _, s := range servers {
		if s != avoid {
			return s, nil
		}
	}
	return nil, ErrNoServer
}
