package route

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/pool"
)

// Node is what sluice knows about one server (host, port, database), shared by every pool that
// connects there: whether it is up, whether it is in recovery, how far behind it is. The health
// checker writes it; every routing decision reads it, so it is all atomics.
type Node struct {
	Host     string
	Port     int
	Database string
	// Configured is the role the file gives.
	Configured string

	checked     atomic.Bool  // a check has answered at least once
	recovery    atomic.Bool  // pg_is_in_recovery() at the last check
	timeline    atomic.Int64 // the server's timeline: a promoted server has a higher one
	bannedUntil atomic.Int64 // unix nanoseconds; 0: not banned
	banReason   atomic.Pointer[string]
	lagBytes    atomic.Int64
	lagTime     atomic.Int64 // nanoseconds
	lagged      atomic.Bool  // behind by more than a pool's limit: no reads
	lastCheck   atomic.Int64 // unix nanoseconds of the last completed check

	mu    sync.Mutex
	pools []*pool.Pool // the pools that connect here, to drop their idle connections on a ban
}

// Name is the node's address as the admin console and the logs show it.
func (n *Node) Name() string { return n.Host + ":" + strconv.Itoa(n.Port) + "/" + n.Database }

func nodeKey(host string, port int, db string) string {
	return host + ":" + strconv.Itoa(port) + "/" + db
}

// Primary reports whether the node takes writes: the checker's finding with role discovery on
// and a check answered, else the role in the file.
func (n *Node) Primary(discovery bool) bool {
	if discovery && n.checked.Load() {
		return !n.recovery.Load()
	}
	return n.Configured == config.RolePrimary
}

// Banned reports whether the node is kept out of rotation now.
func (n *Node) Banned(now int64) bool {
	u := n.bannedUntil.Load()
	return u != 0 && now < u
}

// Ban keeps the node out of rotation for d and drops the idle connections of its pools, which
// would fail the next client that took one.
func (n *Node) Ban(d time.Duration, reason string) {
	until := time.Now().Add(d).UnixNano()
	for {
		old := n.bannedUntil.Load()
		if old >= until || n.bannedUntil.CompareAndSwap(old, until) {
			break
		}
	}
	n.banReason.Store(&reason)
	n.mu.Lock()
	pools := slices.Clone(n.pools)
	n.mu.Unlock()
	for _, p := range pools {
		p.DiscardIdle()
	}
}

// Unban puts the node back into rotation at once.
func (n *Node) Unban() { n.bannedUntil.Store(0) }

// NodeState is a snapshot of a node for the admin console.
type NodeState struct {
	Name        string
	Configured  string
	InRecovery  bool
	Checked     bool
	BannedUntil time.Time // zero: not banned
	BanReason   string
	LagBytes    int64
	Lag         time.Duration
	Lagged      bool
	LastCheck   time.Time
}

// State returns a snapshot of the node.
func (n *Node) State() NodeState {
	st := NodeState{
		Name: n.Name(), Configured: n.Configured, InRecovery: n.recovery.Load(),
		Checked: n.checked.Load(), LagBytes: n.lagBytes.Load(),
		Lag: time.Duration(n.lagTime.Load()), Lagged: n.lagged.Load(),
	}
	if u := n.bannedUntil.Load(); u != 0 && time.Now().UnixNano() < u {
		st.BannedUntil = time.Unix(0, u)
		if r := n.banReason.Load(); r != nil {
			st.BanReason = *r
		}
	}
	if c := n.lastCheck.Load(); c != 0 {
		st.LastCheck = time.Unix(0, c)
	}
	return st
}

func (n *Node) addPool(p *pool.Pool) {
	n.mu.Lock()
	n.pools = append(n.pools, p)
	n.mu.Unlock()
}

// A checkGroup is the servers of one shard, checked together because a replica's lag is measured
// against its primary.
type checkGroup struct {
	key    string
	nodes  []*Node
	params []backend.Params // how to log in to each node: a user's server credentials
	pool   *config.Pool
	g      *config.General
	stop   chan struct{}
	done   chan struct{}
}

// Checks runs the background health checker: one goroutine per shard with more than one server,
// which asks every server each healthcheck_interval whether it is up, whether it is in recovery
// and how far behind the primary it is. It runs whether clients are connected or not, so a
// failover or a lagging replica is noticed before a client meets it.
type Checks struct {
	log    *slog.Logger
	mu     sync.Mutex
	groups map[string]*checkGroup
}

// StartChecks starts (or, after a reload, adjusts) the health checker for t's shards. The checker
// lives across reloads; StopChecks ends it.
func (t *Table) StartChecks(log *slog.Logger) {
	// Outside c.mu: DynamicTarget takes t.mu, then c.mu.
	t.Targets(func(_, _ string, tg *Target) { tg.setMirrorLogger(log) })
	c := t.checks
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = log
	want := map[string]*checkGroup{}
	for _, db := range sortedKeys(t.Config.Pools) {
		pc := t.Config.Pools[db]
		if len(pc.Users) == 0 {
			continue
		}
		tg := t.dbs[db][pc.Users[0].Username]
		if tg == nil {
			continue
		}
		for _, servers := range tg.Shards {
			if len(servers) < 2 {
				continue // one server: nothing to choose between, nothing to fail over to
			}
			grp := &checkGroup{pool: pc, g: &t.Config.General}
			keys := make([]string, len(servers))
			for i, s := range servers {
				keys[i] = s.Node.Name()
				grp.nodes = append(grp.nodes, s.Node)
				grp.params = append(grp.params, checkParams(pc, *s.Pool.Params()))
			}
			grp.key = strings.Join(keys, ",") + checkSettingsKey(pc, &t.Config.General)
			if _, dup := want[grp.key]; !dup {
				want[grp.key] = grp
			}
		}
	}
	for k, grp := range c.groups {
		if want[k] == nil {
			close(grp.stop)
			delete(c.groups, k)
		}
	}
	for k, grp := range want {
		if c.groups[k] != nil {
			continue
		}
		grp.stop, grp.done = make(chan struct{}), make(chan struct{})
		c.groups[k] = grp
		go grp.run(log)
	}
}

// checkSettingsKey makes a group restart when a setting it reads changes.
func checkSettingsKey(pc *config.Pool, g *config.General) string {
	return fmt.Sprintf("|%v|%d|%v|%v|%v|%v", pc.RoleDiscovery, pc.MaxReplicaLagBytes, pc.MaxReplicaLag,
		g.HealthcheckInterval, g.HealthcheckTimeout, g.BanTime)
}

// StopChecks stops the health checker and waits for it.
func (t *Table) StopChecks() {
	c := t.checks
	c.mu.Lock()
	groups := c.groups
	c.groups = map[string]*checkGroup{}
	c.mu.Unlock()
	for _, grp := range groups {
		close(grp.stop)
		<-grp.done
	}
}

// The check, in one round trip: recovery state, the WAL position (written on a primary, replayed
// on a replica), the age of the last replayed transaction, and the timeline. CASE evaluates only
// the branch taken, so pg_current_wal_lsn() never runs on a replica, where it fails.
const (
	checkQuery = `SELECT pg_is_in_recovery(),
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint,
  COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, 0),
  (SELECT timeline_id FROM pg_control_checkpoint())`
	// checkQueryNoTimeline is for users not allowed to call pg_control_checkpoint().
	checkQueryNoTimeline = `SELECT pg_is_in_recovery(),
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint,
  COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, 0),
  0`
)

// probe is one server's answer to a check.
type probe struct {
	ok       bool
	recovery bool
	lsn      int64
	ageMs    int64
	timeline int64
}

func (grp *checkGroup) run(log *slog.Logger) {
	defer close(grp.done)
	conns := make([]*backend.ServerConn, len(grp.nodes))
	noTimeline := make([]bool, len(grp.nodes))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	interval := grp.g.HealthcheckInterval
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	probes := make([]probe, len(grp.nodes))
	for {
		var wg sync.WaitGroup
		for i := range grp.nodes {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				probes[i] = grp.check(i, &conns[i], &noTimeline[i])
			}(i)
		}
		wg.Wait()
		grp.apply(log, probes)
		select {
		case <-grp.stop:
			return
		case <-tick.C:
		}
	}
}

// check asks one server, logging in first when the last check lost the connection.
func (grp *checkGroup) check(i int, conn **backend.ServerConn, noTimeline *bool) probe {
	timeout := grp.g.HealthcheckTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if *conn == nil {
		ctx, cancel := context.WithTimeout(context.Background(), max(timeout, grp.g.ConnectTimeout))
		c, err := backend.Dial(ctx, &grp.params[i])
		cancel()
		if err != nil {
			return probe{}
		}
		*conn = c
	}
	c := *conn
	q := checkQuery
	if *noTimeline {
		q = checkQueryNoTimeline
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	cols, null, err := c.QueryRow(q)
	if se, ok := err.(*backend.ServerError); ok && se.Code == "42501" && !*noTimeline {
		*noTimeline = true
		cols, null, err = c.QueryRow(checkQueryNoTimeline)
	}
	_ = c.SetReadDeadline(time.Time{})
	if err != nil || len(cols) < 4 {
		c.Close()
		*conn = nil
		return probe{}
	}
	p := probe{ok: true, recovery: cols[0] == "t"}
	if !null[1] {
		p.lsn, _ = strconv.ParseInt(cols[1], 10, 64)
	}
	p.ageMs, _ = strconv.ParseInt(cols[2], 10, 64)
	p.timeline, _ = strconv.ParseInt(cols[3], 10, 64)
	return p
}

// apply records a round of probes: bans for servers that failed, roles, and replica lag against
// the primary of the round.
func (grp *checkGroup) apply(log *slog.Logger, probes []probe) {
	now := time.Now()
	primaryLSN := int64(-1)
	for _, p := range probes {
		if p.ok && !p.recovery && p.lsn > primaryLSN {
			primaryLSN = p.lsn
		}
	}
	for i, p := range probes {
		n := grp.nodes[i]
		if !p.ok {
			if !n.Banned(now.UnixNano()) && log != nil {
				log.Warn("server failed its health check; banned", "server", n.Name(), "ban_time", grp.g.BanTime)
			}
			n.Ban(grp.g.BanTime, "health check failed")
			continue
		}
		if grp.pool.RoleDiscovery && n.checked.Load() && n.recovery.Load() != p.recovery && log != nil {
			role := "primary"
			if p.recovery {
				role = "replica"
			}
			log.Warn("server changed role", "server", n.Name(), "now", role)
		}
		n.recovery.Store(p.recovery)
		n.timeline.Store(p.timeline)
		n.checked.Store(true)
		n.lastCheck.Store(now.UnixNano())
		var lagB int64
		var lagT time.Duration
		if p.recovery && primaryLSN >= 0 && primaryLSN > p.lsn {
			lagB = primaryLSN - p.lsn
			// The age of the last replayed transaction is the lag only while the replica is
			// behind: an idle primary makes it grow with nothing to replay.
			lagT = time.Duration(p.ageMs) * time.Millisecond
		}
		n.lagBytes.Store(lagB)
		n.lagTime.Store(int64(lagT))
		lagged := (grp.pool.MaxReplicaLagBytes > 0 && lagB > grp.pool.MaxReplicaLagBytes) ||
			(grp.pool.MaxReplicaLag > 0 && lagT > grp.pool.MaxReplicaLag)
		if n.lagged.Swap(lagged) != lagged && log != nil {
			if lagged {
				log.Warn("replica lags; no reads until it catches up", "server", n.Name(), "lag_bytes", lagB, "lag", lagT)
			} else {
				log.Info("replica caught up", "server", n.Name())
			}
		}
	}
}
