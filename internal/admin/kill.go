package admin

import (
	"strconv"
	"strings"
	"time"

	"github.com/sluicepg/sluice/internal/pool"
)

// PgBouncer's commands that act on connections: KILL, KILL_CLIENT, RECONNECT, WAIT_CLOSE,
// DISABLE and ENABLE, with PgBouncer's meanings. The database argument may also be pgcat's
// "db,user", as for PAUSE.

// kill answers KILL [db[,user]]: the pools are paused and lose every server connection (idle ones
// at once, the rest as their clients leave), and their clients are disconnected. New clients
// wait for RESUME, as in PgBouncer.
func (c *Console) kill(res *result, args []string) error {
	if c.Kill == nil {
		return notSupported("KILL is not supported here")
	}
	pools, err := c.pausePools("KILL", args)
	if err != nil {
		return err
	}
	db, user := splitTarget(args)
	for _, p := range pools {
		p.Kill()
	}
	n := c.Kill(func(cl Client) bool {
		return (db == "" || cl.Database == db) && (user == "" || cl.User == user)
	}, "KILL "+strings.Join(args, " "))
	c.logInfo("admin: KILL", "target", strings.Join(args, " "), "clients", n, "servers", len(pools))
	res.complete("KILL")
	return nil
}

// killClient answers KILL_CLIENT id: the client whose client_id (SHOW CLIENTS) is id is
// disconnected; what it held of a server is rolled back.
func (c *Console) killClient(res *result, args []string) error {
	if c.Kill == nil {
		return notSupported("KILL_CLIENT is not supported here")
	}
	if len(args) != 1 {
		return syntaxError("usage: KILL_CLIENT client_id (from SHOW CLIENTS)")
	}
	id, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return syntaxError("KILL_CLIENT: %q is not a client_id (from SHOW CLIENTS)", args[0])
	}
	if c.Kill(func(cl Client) bool { return uint64(cl.ID) == id }, "KILL_CLIENT") == 0 {
		return &consoleError{code: codeNoObject, msg: "no client " + args[0]}
	}
	c.logInfo("admin: KILL_CLIENT", "client_id", id)
	res.complete("KILL_CLIENT")
	return nil
}

// reconnect answers RECONNECT [db[,user]]: every server connection of the pools is closed and
// replaced, the idle ones at once, the rest when their clients release them (WAIT_CLOSE waits
// for those). Clients are not disconnected.
func (c *Console) reconnect(res *result, args []string) error {
	pools, err := c.pausePools("RECONNECT", args)
	if err != nil {
		return err
	}
	for _, p := range pools {
		p.Reconnect()
	}
	c.logInfo("admin: RECONNECT", "target", strings.Join(args, " "), "servers", len(pools))
	res.complete("RECONNECT")
	return nil
}

// waitClose answers WAIT_CLOSE [db[,user]]: it returns once the server connections RECONNECT or
// KILL marked are all closed. As in PgBouncer there is no time limit: a session-mode client
// keeps its server until it leaves.
func (c *Console) waitClose(res *result, args []string) error {
	pools, err := c.pausePools("WAIT_CLOSE", args)
	if err != nil {
		return err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for stale(pools) > 0 {
		<-t.C
	}
	res.complete("WAIT_CLOSE")
	return nil
}

func stale(pools []*pool.Pool) int {
	n := 0
	for _, p := range pools {
		n += p.Stale()
	}
	return n
}

// disable answers DISABLE db and ENABLE db: new logins to the database are turned away, or let
// in again. Clients already in stay.
func (c *Console) disable(res *result, verb string, args []string, off bool) error {
	if c.SetDisabled == nil {
		return notSupported("%s is not supported here", verb)
	}
	if len(args) != 1 || strings.Contains(args[0], ",") {
		return syntaxError("usage: %s db", verb)
	}
	if c.Table().Config.Pool(args[0]) == nil {
		return &consoleError{code: codeNoObject, msg: "no database " + args[0]}
	}
	c.SetDisabled(args[0], off)
	c.logInfo("admin: "+verb, "database", args[0])
	res.complete(verb)
	return nil
}

// splitTarget returns the database and user that a PAUSE-style argument names ("" for any).
func splitTarget(args []string) (db, user string) {
	if len(args) == 1 {
		db, user, _ = strings.Cut(args[0], ",")
	}
	return db, user
}

// showState is PgBouncer's SHOW STATE: whether sluice is active, paused (every pool paused) or
// suspended (never: sluice has no SUSPEND).
func (c *Console) showState(res *result) error {
	res.header(text("key"), text("value"))
	all, paused := 0, 0
	for _, t := range c.targets() {
		for _, sp := range servers(t) {
			all++
			if sp.pool.Paused() {
				paused++
			}
		}
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	isPaused := all > 0 && paused == all
	res.row("active", yes(!isPaused))
	res.row("paused", yes(isPaused))
	res.row("suspended", "no")
	res.complete("SHOW")
	return nil
}

// showTotals is PgBouncer's SHOW TOTALS: SHOW STATS_TOTALS and SHOW STATS_AVERAGES summed over
// every database, one statistic per row.
func (c *Console) showTotals(res *result) error {
	res.header(text("name"), num("value"))
	var xacts, queries, recv, sent, xactUs, queryUs, waitUs int64
	var axacts, aqueries, arecv, asent float64
	for _, d := range c.databaseTotals() {
		xacts += int64(d.total.Xacts)
		queries += int64(d.total.Queries)
		recv += int64(d.total.BytesRecv)
		sent += int64(d.total.BytesSent)
		xactUs += d.total.XactTime.Microseconds()
		queryUs += d.total.QueryTime.Microseconds()
		waitUs += d.wait.Microseconds()
		axacts += d.avg.Xacts
		aqueries += d.avg.Queries
		arecv += d.avg.BytesRecv
		asent += d.avg.BytesSent
	}
	res.row("total_xact_count", xacts)
	res.row("total_query_count", queries)
	res.row("total_received", recv)
	res.row("total_sent", sent)
	res.row("total_xact_time", xactUs)
	res.row("total_query_time", queryUs)
	res.row("total_wait_time", waitUs)
	res.row("avg_xact_count", int64(axacts))
	res.row("avg_query_count", int64(aqueries))
	res.row("avg_recv", int64(arecv))
	res.row("avg_sent", int64(asent))
	res.complete("SHOW")
	return nil
}

func (c *Console) disabled(db string) bool { return c.Disabled != nil && c.Disabled(db) }
