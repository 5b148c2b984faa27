package route

import (
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/config"
)

// TestHealthApply: one round of probes bans the servers that failed, records roles, and takes a
// replica out of reads while it is further behind the primary than either limit.
func TestHealthApply(t *testing.T) {
	tests := []struct {
		name     string
		pool     config.Pool
		probes   []probe
		banned   []bool
		recovery []bool
		lagged   []bool
		lagBytes []int64
	}{
		{
			name:     "all well",
			pool:     config.Pool{RoleDiscovery: true, MaxReplicaLagBytes: 100},
			probes:   []probe{{ok: true, lsn: 1000}, {ok: true, recovery: true, lsn: 990}},
			banned:   []bool{false, false},
			recovery: []bool{false, true},
			lagged:   []bool{false, false},
			lagBytes: []int64{0, 10},
		},
		{
			name:     "a replica past the byte limit",
			pool:     config.Pool{RoleDiscovery: true, MaxReplicaLagBytes: 100},
			probes:   []probe{{ok: true, lsn: 5000}, {ok: true, recovery: true, lsn: 1000}, {ok: true, recovery: true, lsn: 4950}},
			banned:   []bool{false, false, false},
			recovery: []bool{false, true, true},
			lagged:   []bool{false, true, false},
			lagBytes: []int64{0, 4000, 50},
		},
		{
			name:     "a replica past the time limit",
			pool:     config.Pool{RoleDiscovery: true, MaxReplicaLag: time.Second},
			probes:   []probe{{ok: true, lsn: 5000}, {ok: true, recovery: true, lsn: 4999, ageMs: 3000}},
			banned:   []bool{false, false},
			recovery: []bool{false, true},
			lagged:   []bool{false, true},
			lagBytes: []int64{0, 1},
		},
		{
			name:     "an idle primary: an old last replay is no lag",
			pool:     config.Pool{RoleDiscovery: true, MaxReplicaLag: time.Second},
			probes:   []probe{{ok: true, lsn: 5000}, {ok: true, recovery: true, lsn: 5000, ageMs: 60000}},
			banned:   []bool{false, false},
			recovery: []bool{false, true},
			lagged:   []bool{false, false},
			lagBytes: []int64{0, 0},
		},
		{
			name:     "a server down is banned; no primary answering means no lag to measure",
			pool:     config.Pool{RoleDiscovery: true, MaxReplicaLagBytes: 1},
			probes:   []probe{{}, {ok: true, recovery: true, lsn: 10}},
			banned:   []bool{true, false},
			recovery: []bool{false, true},
			lagged:   []bool{false, false},
			lagBytes: []int64{0, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			grp := &checkGroup{pool: &tc.pool, g: &config.General{BanTime: time.Minute}}
			for range tc.probes {
				grp.nodes = append(grp.nodes, &Node{Host: "h"})
			}
			grp.apply(nil, tc.probes)
			now := time.Now().UnixNano()
			for i, n := range grp.nodes {
				if got := n.Banned(now); got != tc.banned[i] {
					t.Errorf("server %d banned %v; want %v", i, got, tc.banned[i])
				}
				if got := n.recovery.Load(); got != tc.recovery[i] {
					t.Errorf("server %d in recovery %v; want %v", i, got, tc.recovery[i])
				}
				if got := n.lagged.Load(); got != tc.lagged[i] {
					t.Errorf("server %d lagged %v; want %v", i, got, tc.lagged[i])
				}
				if got := n.lagBytes.Load(); got != tc.lagBytes[i] {
					t.Errorf("server %d lag %d bytes; want %d", i, got, tc.lagBytes[i])
				}
			}
		})
	}
}
