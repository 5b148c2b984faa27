package admin

import (
	"context"
	"time"

	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/plugin"
)

// ServerView is one server of one (database, user) pool, as SHOW DATABASES and SHOW STATS list
// it; the Prometheus exporter reads the same.
type ServerView struct {
	Name           string // pgcat's address name: <db>_shard_<n>_primary, <db>_shard_<n>_replica_<i>
	Database, User string // the pool's
	Shard          int
	Index          int    // the server's place in its shard's list in the file
	Role           string // the role the health checker found
	Host           string
	Port           int
	ServerDatabase string // the database name on the server
	Pool           *pool.Pool
	PoolSize       int
	LagBytes       int64
	Banned         bool
	Paused         bool
}

// Servers lists every server of every pool, pool by pool, shard by shard.
func (c *Console) Servers() []ServerView {
	banned := c.banned()
	var out []ServerView
	for _, t := range c.targets() {
		index, shard := 0, -1
		for _, sp := range servers(t) {
			if sp.shard != shard {
				index, shard = 0, sp.shard
			}
			out = append(out, ServerView{
				Name: sp.name, Database: t.db, User: t.user, Shard: sp.shard, Index: index, Role: sp.role,
				Host: sp.host, Port: sp.port, ServerDatabase: sp.database, Pool: sp.pool,
				PoolSize: t.tg.User.PoolSize, LagBytes: sp.lagBytes,
				Banned: banned[t.db+"\x00"+t.user+"\x00"+sp.addr()], Paused: sp.pool.Paused(),
			})
			index++
		}
	}
	return out
}

// PoolView is one (database, user) pool's clients and servers, as SHOW POOLS lists it.
type PoolView struct {
	Database, User, Mode        string
	ClIdle, ClActive, ClWaiting int
	SvActive, SvIdle            int
	// MaxWait is how long the longest-waiting client has waited so far.
	MaxWait time.Duration
}

// Pools lists every (database, user) pool.
func (c *Console) Pools() []PoolView {
	counts := countClients(c.Clients())
	var out []PoolView
	for _, t := range c.targets() {
		var open, idle, waiting int
		var maxWait time.Duration
		for _, sp := range servers(t) {
			st := sp.pool.Stats()
			open += st.Open
			idle += st.Idle
			waiting += st.Waiting
			maxWait = max(maxWait, st.MaxWait)
		}
		cc := counts[[2]string{t.db, t.user}]
		if cc == nil {
			cc = &clientCounts{}
		}
		out = append(out, PoolView{
			Database: t.db, User: t.user, Mode: t.tg.Mode,
			// A client waiting for a server holds none yet: it is counted as waiting, not idle.
			ClIdle: max(cc.all-cc.active-waiting, 0), ClActive: cc.active, ClWaiting: waiting,
			SvActive: open - idle, SvIdle: idle, MaxWait: maxWait,
		})
	}
	return out
}

// dbTotals are one database's statistics summed over its users and servers, for PgBouncer's
// SHOW STATS_TOTALS and STATS_AVERAGES.
type dbTotals struct {
	db    string
	total pool.Traffic
	wait  time.Duration
	avg   pool.Averages
	// weights of the mean times in avg: what each mean is per
	avgQueryN, avgXactN float64
}

func (c *Console) databaseTotals() []*dbTotals {
	var out []*dbTotals
	by := map[string]*dbTotals{}
	for _, sv := range c.Servers() {
		d := by[sv.Database]
		if d == nil {
			d = &dbTotals{db: sv.Database}
			by[sv.Database] = d
			out = append(out, d)
		}
		tr, st, a := sv.Pool.Traffic(), sv.Pool.Stats(), sv.Pool.Averages()
		d.total.Xacts += tr.Xacts
		d.total.Queries += tr.Queries
		d.total.BytesRecv += tr.BytesRecv
		d.total.BytesSent += tr.BytesSent
		d.total.XactTime += tr.XactTime
		d.total.QueryTime += tr.QueryTime
		d.wait += st.TotalWait
		d.avg.Xacts += a.Xacts
		d.avg.Queries += a.Queries
		d.avg.BytesRecv += a.BytesRecv
		d.avg.BytesSent += a.BytesSent
		// Mean times add up weighted by their rates, and are divided back below.
		d.avg.XactTime += time.Duration(float64(a.XactTime) * a.Xacts)
		d.avg.QueryTime += time.Duration(float64(a.QueryTime) * a.Queries)
		d.avgXactN += a.Xacts
		d.avgQueryN += a.Queries
		d.avg.WaitTime = max(d.avg.WaitTime, a.WaitTime)
	}
	for _, d := range out {
		if d.avgXactN > 0 {
			d.avg.XactTime = time.Duration(float64(d.avg.XactTime) / d.avgXactN)
		}
		if d.avgQueryN > 0 {
			d.avg.QueryTime = time.Duration(float64(d.avg.QueryTime) / d.avgQueryN)
		}
	}
	return out
}

// PluginMetrics are the metrics of one plugin instance (plugin.Collector), for the Prometheus
// exporter; Pool is "" for a top-level plugin.
type PluginMetrics struct {
	Name, Pool string
	Metrics    []plugin.Metric
}

// PluginMetrics collects the metrics of every plugin that exports some, top-level first.
func (c *Console) PluginMetrics(ctx context.Context) []PluginMetrics {
	var out []PluginMetrics
	for _, in := range c.Table().Plugins.Instances() {
		if ms := in.Collect(ctx); len(ms) > 0 {
			out = append(out, PluginMetrics{Name: in.Name, Pool: in.Pool, Metrics: ms})
		}
	}
	return out
}
