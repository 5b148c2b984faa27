package admin

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/internal/route"
)

// showCommands are the SHOW objects the console knows, upper-cased.
var showCommands map[string]func(*Console, *result) error

func init() {
	showCommands = map[string]func(*Console, *result) error{
		"HELP":           (*Console).showHelp,
		"VERSION":        (*Console).showVersion,
		"CONFIG":         (*Console).showConfig,
		"DATABASES":      (*Console).showDatabases,
		"POOLS":          (*Console).showPools,
		"STATS":          (*Console).showStats,
		"STATS_TOTALS":   (*Console).showStatsTotals,
		"STATS_AVERAGES": (*Console).showStatsAverages,
		"TOTALS":         (*Console).showTotals,
		"STATE":          (*Console).showState,
		"SERVERS":        (*Console).showServers,
		"CLIENTS":        (*Console).showClients,
		"USERS":          (*Console).showUsers,
		"LISTS":          (*Console).showLists,
		"BANS":           (*Console).showBans,
		"PLUGINS":        (*Console).showPlugins,
		"MIRRORS":        (*Console).showMirrors,
	}
}

// helpText is SHOW HELP's notice, in PgBouncer's and pgcat's layout.
var helpText = strings.Join([]string{
	"",
	"SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION",
	"SHOW LISTS",
	"SHOW STATS",
	"SHOW BANS",
	"SHOW PLUGINS",
	"SHOW MIRRORS",
	"SHOW STATS_TOTALS|STATS_AVERAGES|TOTALS",
	"SHOW STATE",
	"PAUSE [db[,user]]",
	"RESUME [db[,user]]",
	"KILL [db[,user]]",
	"KILL_CLIENT client_id",
	"RECONNECT [db[,user]]",
	"WAIT_CLOSE [db[,user]]",
	"DISABLE db",
	"ENABLE db",
	"BAN host[:port] [seconds]",
	"UNBAN host[:port]",
	"SET key = arg (accepted and ignored)",
	"RELOAD",
	"SHUTDOWN",
}, "\n\t")

func (c *Console) showHelp(res *result) error {
	help := helpText
	seen := map[string]bool{}
	for _, in := range c.Table().Plugins.Instances() {
		if name := strings.ToUpper(in.Name); in.HasShow() && !seen[name] && showCommands[name] == nil {
			seen[name] = true
			help += "\n\tSHOW " + name + " (plugin " + in.Name + ")"
		}
	}
	res.notice("Console usage", help)
	res.complete("SHOW")
	return nil
}

func (c *Console) showVersion(res *result) error {
	res.header(text("version"))
	res.row("sluice " + c.Version)
	res.complete("SHOW")
	return nil
}

// target is one (database, user) of the routing table, in a stable order.
type target struct {
	db, user string
	tg       *route.Target
}

func (c *Console) targets() []target {
	var ts []target
	c.Table().Targets(func(db, user string, tg *route.Target) {
		ts = append(ts, target{db, user, tg})
	})
	slices.SortFunc(ts, func(a, b target) int {
		return cmp.Or(strings.Compare(a.db, b.db), strings.Compare(a.user, b.user))
	})
	return ts
}

// serverPool is one server of a target: its place in the shards, its name and its pool.
type serverPool struct {
	name     string // pgcat's address name: <db>_shard_<n>_primary, <db>_shard_<n>_replica_<i>
	shard    int
	role     string
	host     string
	port     int
	database string // the database name on the server
	pool     *pool.Pool
	lagBytes int64
}

func (sp serverPool) addr() string { return net.JoinHostPort(sp.host, strconv.Itoa(sp.port)) }

// servers lists a target's servers, shard by shard in configuration order.
func servers(t target) []serverPool {
	var out []serverPool
	for n, shard := range t.tg.Shards {
		replica := 0
		for _, s := range shard {
			p := s.Pool.Params()
			name := fmt.Sprintf("%s_shard_%d_%s", t.db, n, s.Role)
			if s.Role != config.RolePrimary {
				name = fmt.Sprintf("%s_%d", name, replica)
				replica++
			}
			// The role column is the server's role now, as the health checker found it: a
			// promoted replica shows as the primary. The name keeps the file's role.
			role := s.Role
			if st := t.tg.Settings(); s.Node != nil && st != nil {
				role = config.RoleReplica
				if s.Node.Primary(st.RoleDiscovery) {
					role = config.RolePrimary
				}
			}
			var lag int64
			if s.Node != nil {
				lag = s.Node.State().LagBytes
			}
			out = append(out, serverPool{name: name, shard: n, role: role, host: p.Host, port: p.Port, database: p.Database, pool: s.Pool, lagBytes: lag})
		}
	}
	return out
}

// banned returns the set of "db\x00user\x00host:port" that are banned now.
func (c *Console) banned() map[string]bool {
	m := map[string]bool{}
	if c.Bans == nil {
		return m
	}
	for _, b := range c.Bans.Bans() {
		m[b.Database+"\x00"+b.User+"\x00"+b.Server] = true
	}
	return m
}

func (c *Console) showDatabases(res *result) error {
	res.header(text("name"), text("host"), text("port"), text("database"), text("force_user"),
		num("pool_size"), num("min_pool_size"), num("reserve_pool"), text("pool_mode"),
		num("max_connections"), num("current_connections"), num("paused"), num("disabled"),
		// sluice's: the role the health checker found, and a replica's replay lag.
		text("role"), num("lag_bytes"))
	banned := c.banned()
	for _, t := range c.targets() {
		u := t.tg.User
		for _, sp := range servers(t) {
			st := sp.pool.Stats()
			res.row(sp.name, sp.host, strconv.Itoa(sp.port), sp.database, u.ServerUser(),
				u.PoolSize, u.MinPoolSize, 0, t.tg.Mode,
				u.PoolSize, st.Open, sp.pool.Paused(), banned[t.db+"\x00"+t.user+"\x00"+sp.addr()] || c.disabled(t.db),
				sp.role, sp.lagBytes)
		}
	}
	res.complete("SHOW")
	return nil
}

// clientCounts are the clients of one (database, user).
type clientCounts struct{ all, active int }

func countClients(clients []Client) map[[2]string]*clientCounts {
	m := map[[2]string]*clientCounts{}
	for i := range clients {
		cl := &clients[i]
		k := [2]string{cl.Database, cl.User}
		cc := m[k]
		if cc == nil {
			cc = &clientCounts{}
			m[k] = cc
		}
		cc.all++
		if cl.Server != nil {
			cc.active++
		}
	}
	return m
}

func (c *Console) showPools(res *result) error {
	res.header(text("database"), text("user"), text("pool_mode"),
		num("cl_idle"), num("cl_active"), num("cl_waiting"), num("cl_cancel_req"),
		num("sv_active"), num("sv_idle"), num("sv_used"), num("sv_tested"), num("sv_login"),
		num("maxwait"), num("maxwait_us"))
	for _, p := range c.Pools() {
		us := p.MaxWait.Microseconds()
		res.row(p.Database, p.User, p.Mode,
			p.ClIdle, p.ClActive, p.ClWaiting, 0,
			p.SvActive, p.SvIdle, 0, 0, 0,
			us/1_000_000, us%1_000_000)
	}
	res.complete("SHOW")
	return nil
}

func (c *Console) showStats(res *result) error {
	res.header(text("instance"), text("database"), text("user"),
		num("total_xact_count"), num("total_query_count"), num("total_received"), num("total_sent"),
		num("total_xact_time"), num("total_query_time"), num("total_wait_time"), num("total_errors"),
		num("avg_xact_count"), num("avg_query_count"), num("avg_recv"), num("avg_sent"),
		num("avg_errors"), num("avg_xact_time"), num("avg_query_time"), num("avg_wait_time"))
	for _, sv := range c.Servers() {
		st := sv.Pool.Stats()
		tr := sv.Pool.Traffic()
		avg := sv.Pool.Averages()
		res.row(sv.Name, sv.Database, sv.User,
			tr.Xacts, tr.Queries, tr.BytesRecv, tr.BytesSent,
			tr.XactTime.Microseconds(), tr.QueryTime.Microseconds(), st.TotalWait.Microseconds(), tr.Errors,
			int64(avg.Xacts), int64(avg.Queries), int64(avg.BytesRecv), int64(avg.BytesSent),
			int64(avg.Errors), avg.XactTime.Microseconds(), avg.QueryTime.Microseconds(), avg.WaitTime.Microseconds())
	}
	res.complete("SHOW")
	return nil
}

// showMirrors is sluice's SHOW MIRRORS: one row per mirror of each server (pgcat's mirrors key),
// with what it was sent and what it missed.
func (c *Console) showMirrors(res *result) error {
	res.header(text("name"), text("database"), text("user"), text("mirror"),
		num("connections"), num("messages"), num("bytes"), num("dropped_messages"),
		num("dropped_bytes"), num("connect_errors"), num("server_errors"))
	for _, sv := range c.Servers() {
		for _, m := range sv.Pool.Params().Mirrors {
			st := &m.Stats
			res.row(sv.Name, sv.Database, sv.User, m.Params.Addr(),
				st.Connections.Load(), int64(st.Messages.Load()), int64(st.Bytes.Load()),
				int64(st.DroppedMessages.Load()), int64(st.DroppedBytes.Load()),
				int64(st.ConnectErrors.Load()), int64(st.ServerErrors.Load()))
		}
	}
	res.complete("SHOW")
	return nil
}

func (c *Console) showServers(res *result) error {
	res.header(text("server_id"), text("database_name"), text("user"), text("address_id"),
		text("application_name"), text("state"), num("transaction_count"), num("query_count"),
		num("bytes_sent"), num("bytes_received"), num("age_seconds"),
		num("prepare_cache_hit"), num("prepare_cache_miss"), num("prepare_cache_eviction"), num("prepare_cache_size"),
		text("addr"))
	now := time.Now()
	names := map[[3]string]string{} // (db, user, host:port) -> address name
	type idleRow struct {
		t    target
		sp   serverPool
		info pool.ServerInfo
	}
	var idle []idleRow
	var buf []pool.ServerInfo
	for _, t := range c.targets() {
		for _, sp := range servers(t) {
			names[[3]string{t.db, t.user, sp.addr()}] = sp.name
			buf = sp.pool.IdleServers(buf[:0])
			for _, si := range buf {
				idle = append(idle, idleRow{t, sp, si})
			}
		}
	}
	clients := c.Clients()
	slices.SortFunc(clients, func(a, b Client) int { return cmp.Compare(a.ID, b.ID) })
	for _, cl := range clients {
		s := cl.Server
		if s == nil {
			continue
		}
		name := names[[3]string{cl.Database, cl.User, s.Addr}]
		res.row(strconv.FormatUint(uint64(s.PID), 10), cl.Database, cl.User, name,
			cl.ApplicationName, "active", 0, 0,
			0, 0, int64(now.Sub(s.Created).Seconds()),
			0, 0, 0, 0,
			s.Addr)
	}
	for _, r := range idle {
		res.row(strconv.FormatUint(uint64(r.info.PID), 10), r.t.db, r.t.user, r.sp.name,
			"", "idle", 0, 0,
			0, 0, int64(now.Sub(r.info.Created).Seconds()),
			0, 0, 0, r.info.Prepared,
			r.sp.addr())
	}
	res.complete("SHOW")
	return nil
}

func (c *Console) showClients(res *result) error {
	res.header(text("client_id"), text("database"), text("user"), text("application_name"),
		text("state"), num("transaction_count"), num("query_count"), num("error_count"),
		num("age_seconds"), num("maxwait"), num("maxwait_us"),
		text("addr"), num("port"), text("tls"), text("server"))
	now := time.Now()
	clients := c.Clients()
	slices.SortFunc(clients, func(a, b Client) int { return cmp.Compare(a.ID, b.ID) })
	for _, cl := range clients {
		state, server := "idle", ""
		if cl.Server != nil {
			state, server = "active", cl.Server.Addr
		}
		tls := "no"
		if cl.TLS {
			tls = "yes"
		}
		res.row(strconv.FormatUint(uint64(cl.ID), 10), cl.Database, cl.User, cl.ApplicationName,
			state, 0, cl.Queries, 0,
			int64(now.Sub(cl.Connected).Seconds()), 0, 0,
			cl.Addr, cl.Port, tls, server)
	}
	res.complete("SHOW")
	return nil
}

func (c *Console) showUsers(res *result) error {
	res.header(text("name"), text("pool_mode"))
	for _, t := range c.targets() {
		res.row(t.user, t.tg.Mode)
	}
	res.complete("SHOW")
	return nil
}

func (c *Console) showLists(res *result) error {
	res.header(text("list"), num("items"))
	tbl := c.Table()
	users := map[string]bool{}
	pools := 0
	var open, idle int
	for _, t := range c.targets() {
		users[t.user] = true
		pools++
		for _, sp := range servers(t) {
			st := sp.pool.Stats()
			open += st.Open
			idle += st.Idle
		}
	}
	clients := c.Clients()
	used := 0
	for _, cl := range clients {
		if cl.Server != nil {
			used++
		}
	}
	login := 0
	if c.Connections != nil {
		login = max(c.Connections()-len(clients), 0)
	}
	res.row("databases", len(tbl.Config.Pools))
	res.row("users", len(users))
	res.row("pools", pools)
	res.row("free_clients", len(clients)-used)
	res.row("used_clients", used)
	res.row("login_clients", login)
	res.row("free_servers", idle)
	res.row("used_servers", open-idle)
	res.row("dns_names", 0)
	res.row("dns_zones", 0)
	res.row("dns_queries", 0)
	res.row("dns_pending", 0)
	res.complete("SHOW")
	return nil
}

var banColumns = []column{text("db"), text("user"), text("role"), text("host")}

func (c *Console) showBans(res *result) error {
	res.header(text("db"), text("user"), text("role"), text("host"), text("reason"),
		text("ban_time"), num("ban_duration_seconds"), num("ban_remaining_seconds"))
	if c.Bans != nil {
		now := time.Now()
		bans := c.Bans.Bans()
		slices.SortFunc(bans, func(a, b Ban) int {
			return cmp.Or(strings.Compare(a.Database, b.Database), strings.Compare(a.User, b.User), strings.Compare(a.Server, b.Server))
		})
		for _, b := range bans {
			remaining := b.Until.Sub(now)
			if remaining <= 0 {
				continue
			}
			var since, duration any = null, null // the start of a ban may not be known
			if !b.Since.IsZero() {
				since = b.Since.UTC().Format(time.RFC3339)
				duration = int64(b.Until.Sub(b.Since).Round(time.Second).Seconds())
			}
			res.row(b.Database, b.User, b.Role, b.Server, b.Reason,
				since, duration, int64(remaining.Seconds()+0.999))
		}
	}
	res.complete("SHOW")
	return nil
}

// errNoBans answers BAN and UNBAN when the console has no ban list.
var errNoBans = notSupported("bans are not available here")

// ban answers BAN host[:port] [seconds]; the duration defaults to ban_time.
func (c *Console) ban(res *result, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return syntaxError("usage: BAN host[:port] [seconds]")
	}
	d := c.Table().Config.General.BanTime
	if len(args) == 2 {
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || n <= 0 || n > int64(time.Duration(1<<63-1)/time.Second) {
			return syntaxError("BAN: the duration must be a positive number of seconds, got %q", args[1])
		}
		d = time.Duration(n) * time.Second
	}
	if c.Bans == nil {
		return errNoBans
	}
	bans, err := c.Bans.Ban(args[0], d)
	if err != nil {
		return &consoleError{code: codeNoObject, msg: "BAN " + args[0] + ": " + err.Error()}
	}
	c.logInfo("admin: BAN", "server", args[0], "duration", d, "bans", len(bans))
	banRows(res, bans)
	res.complete("BAN")
	return nil
}

// unban answers UNBAN host[:port].
func (c *Console) unban(res *result, args []string) error {
	if len(args) != 1 {
		return syntaxError("usage: UNBAN host[:port]")
	}
	if c.Bans == nil {
		return errNoBans
	}
	bans, err := c.Bans.Unban(args[0])
	if err != nil {
		return &consoleError{code: codeNoObject, msg: "UNBAN " + args[0] + ": " + err.Error()}
	}
	c.logInfo("admin: UNBAN", "server", args[0], "bans", len(bans))
	banRows(res, bans)
	res.complete("UNBAN")
	return nil
}

func banRows(res *result, bans []Ban) {
	res.header(banColumns...)
	for _, b := range bans {
		res.row(b.Database, b.User, b.Role, b.Server)
	}
}

func (c *Console) reload(res *result) error {
	if c.Reload == nil {
		return notSupported("RELOAD is not supported here")
	}
	if err := c.Reload(); err != nil {
		return &consoleError{code: codeConfig, msg: "reload failed; keeping the running configuration: " + err.Error()}
	}
	res.complete("RELOAD")
	return nil
}

func (c *Console) shutdown(res *result) error {
	if c.Shutdown == nil {
		return notSupported("SHUTDOWN is not supported here")
	}
	c.logInfo("admin: SHUTDOWN")
	c.Shutdown()
	res.complete("SHUTDOWN")
	return nil
}

// showPlugins lists the configured plugins, top-level first, then each pool's in the order of
// the file, with their counters since they were loaded (a reload that keeps a plugin's block
// still makes a new instance, with new counters). pool is NULL for a top-level plugin, which
// serves every pool without a plugins block of its own; total_time is in microseconds.
func (c *Console) showPlugins(res *result) error {
	res.header(text("name"), text("pool"), text("kind"), text("hooks"), num("calls"), num("rejects"),
		num("errors"), num("total_time"))
	for _, in := range c.Table().Plugins.Instances() {
		st := in.Stats()
		var pool any = st.Pool
		if st.Pool == "" {
			pool = null
		}
		res.row(st.Name, pool, st.Kind, strings.Join(st.Hooks, ","), st.Calls, st.Rejects, st.Errors,
			st.Total.Microseconds())
	}
	res.complete("SHOW")
	return nil
}

// statsColumns are the columns of PgBouncer's SHOW STATS_TOTALS and STATS_AVERAGES.
var statsColumns = []column{text("database"), num("xact_count"), num("query_count"), num("bytes_received"),
	num("bytes_sent"), num("xact_time"), num("query_time"), num("wait_time")}

// showStatsTotals is PgBouncer's SHOW STATS_TOTALS: SHOW STATS's totals summed per database.
func (c *Console) showStatsTotals(res *result) error {
	res.header(statsColumns...)
	for _, d := range c.databaseTotals() {
		res.row(d.db, d.total.Xacts, d.total.Queries, d.total.BytesRecv, d.total.BytesSent,
			d.total.XactTime.Microseconds(), d.total.QueryTime.Microseconds(), d.wait.Microseconds())
	}
	res.complete("SHOW")
	return nil
}

// showStatsAverages is PgBouncer's SHOW STATS_AVERAGES: rates per second and mean times in µs,
// per database, over the last period of at least 15 s. wait_time is the longest of the
// database's servers' mean waits.
func (c *Console) showStatsAverages(res *result) error {
	res.header(statsColumns...)
	for _, d := range c.databaseTotals() {
		res.row(d.db, int64(d.avg.Xacts), int64(d.avg.Queries), int64(d.avg.BytesRecv), int64(d.avg.BytesSent),
			d.avg.XactTime.Microseconds(), d.avg.QueryTime.Microseconds(), d.avg.WaitTime.Microseconds())
	}
	res.complete("SHOW")
	return nil
}
