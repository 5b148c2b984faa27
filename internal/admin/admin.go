// Package admin is sluice's admin console: the virtual database "pgcat" (or "pgbouncer") where the
// admin user runs SHOW POOLS, SHOW CLIENTS, RELOAD, BAN and the rest with any Postgres client, as
// in pgcat and PgBouncer. The frontend logs the admin in and hands the connection to
// Console.Serve; the console only reads state (the routing table, the pools' counters, the
// clients' snapshots) and calls the few actions it is given.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/sluicepg/sluice/internal/hooks"
	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
)

// Console answers admin commands. Its fields are set once, before the first Serve; it is then
// safe for any number of concurrent sessions.
type Console struct {
	// Table returns the routing table in use. Required.
	Table func() *route.Table
	// Clients returns a snapshot of the logged-in clients, admin sessions included. Required.
	Clients func() []Client
	// Connections returns the number of client connections, including those still logging in
	// (SHOW LISTS's login_clients is the difference). nil: len(Clients()).
	Connections func() int
	// Reload reads the configuration file again, as SIGHUP does, and returns why it kept the
	// running configuration, if it did. nil: RELOAD is not supported.
	Reload func() error
	// Shutdown starts a graceful shutdown, as SIGTERM does, and returns at once. nil: SHUTDOWN
	// is not supported.
	Shutdown func()
	// Bans is the health checker's ban list. nil: SHOW BANS is empty and BAN, UNBAN are refused.
	Bans Bans
	// Kill disconnects the logged-in clients (admin sessions aside) that match, telling them
	// why, and returns how many. nil: KILL and KILL_CLIENT are not supported.
	Kill func(match func(Client) bool, why string) int
	// SetDisabled turns new logins to a database away (DISABLE) or lets them in (ENABLE); and
	// Disabled reports it. nil: DISABLE and ENABLE are not supported.
	SetDisabled func(db string, disabled bool)
	Disabled    func(db string) bool
	// Version is shown by SHOW VERSION and sent as server_version at login.
	Version string
	// Log records the commands that change something (RELOAD, SHUTDOWN, BAN, UNBAN). nil: no log.
	Log *slog.Logger
}

// Client is a snapshot of one logged-in client connection.
type Client struct {
	// ID is the process ID sluice gave the client in BackendKeyData.
	ID              uint32
	Database, User  string
	ApplicationName string
	Addr            string // the client's IP address, or "unix"
	Port            int
	TLS             bool
	Admin           bool // an admin console session
	Connected       time.Time
	// Queries counts the client's Query and Execute messages.
	Queries uint64
	// Server is the server connection the client holds, or nil.
	Server *Server
}

// Server describes a server connection that a client holds.
type Server struct {
	Addr string // host:port, as in the pool's configuration
	pool.ServerInfo
}

// Ban is one server kept out of rotation by the health checker or by BAN.
type Ban struct {
	// Database and User name the pool the ban applies to.
	Database, User string
	Role           string // "primary" or "replica"
	Server         string // host:port
	Reason         string // why: "health check failed", "admin", ...
	// Since is when the ban began (zero: not known); Until is when it ends.
	Since, Until time.Time
}

// Bans is what the console needs of the health checker. The routing and health code implements
// it; sluice.Run passes it in.
type Bans interface {
	// Bans returns the bans in force.
	Bans() []Ban
	// Ban bans, for d, the servers that server names ("host:port", or "host" for every port) in
	// every pool that has them, and returns the bans it made. A server nobody has is an error.
	Ban(server string, d time.Duration) ([]Ban, error)
	// Unban lifts the bans of the servers that server names and returns the bans it lifted.
	Unban(server string) ([]Ban, error)
}

// Serve runs the console for a client that has logged in (the caller has sent AuthenticationOk
// and ReadyForQuery): it reads messages from r and writes each reply to w with one Write. It
// answers simple Query messages; the extended protocol gets 0A000 and its messages are skipped
// up to Sync, as Postgres skips after an error. Serve returns nil when the client sends
// Terminate, and otherwise the error that ended the session (a failed read or write, or a FATAL
// already sent to the client).
func (c *Console) Serve(r *wire.Reader, w io.Writer) error {
	var out []byte
	failing := false // an extended-protocol batch was refused: skip to Sync
	for {
		typ, size, err := r.Peek()
		if err != nil {
			if errors.Is(err, wire.ErrMessageTooLarge) || errors.Is(err, wire.ErrBadLength) {
				_, _ = w.Write(wire.AppendError(nil, "FATAL", "08P01", "invalid message: "+err.Error()))
			}
			return err
		}
		out = out[:0]
		switch typ {
		case wire.Terminate:
			return nil
		case wire.Query:
			msg, err := r.Message()
			if err != nil {
				return err
			}
			q, _, _ := wire.CString(wire.Body(msg))
			query := string(q)
			r.Discard(size)
			out = c.exec(out, query)
			out = wire.AppendReadyForQuery(out, 'I')
		case wire.Sync:
			failing = false
			out = wire.AppendReadyForQuery(out, 'I')
			err = r.Skip(size)
		case wire.Parse, wire.Bind, wire.Describe, wire.Execute, wire.Close, wire.Flush:
			if !failing {
				failing = true
				out = wire.AppendError(out, "ERROR", codeNotSupported,
					"the admin console supports only the simple query protocol (in pgx: QueryExecModeSimpleProtocol)")
			}
			err = r.Skip(size)
		case wire.FunctionCall:
			out = wire.AppendError(out, "ERROR", codeNotSupported, "the admin console has no functions to call")
			out = wire.AppendReadyForQuery(out, 'I')
			err = r.Skip(size)
		case wire.CopyData, wire.CopyDone, wire.CopyFail:
			err = r.Skip(size) // not in COPY: ignored, as Postgres does
		default:
			_, _ = w.Write(wire.AppendError(nil, "FATAL", "08P01", fmt.Sprintf("invalid frontend message type %q", typ)))
			return fmt.Errorf("invalid frontend message type %q", typ)
		}
		if err != nil {
			return err
		}
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				return err
			}
		}
	}
}

// exec runs the commands of one simple Query and appends their replies (without the
// ReadyForQuery) to dst. The first command that fails ends the query, as in Postgres.
func (c *Console) exec(dst []byte, query string) []byte {
	cmds := parseQuery(query)
	if len(cmds) == 0 {
		return wire.AppendSimple(dst, wire.EmptyQuery)
	}
	for _, cmd := range cmds {
		res := result{b: dst}
		if err := c.run(&res, cmd); err != nil {
			var ce *consoleError
			if !errors.As(err, &ce) {
				ce = &consoleError{code: "XX000", msg: err.Error()}
			}
			// Rows already appended are dropped: the error replaces the command's reply.
			return wire.AppendError(dst, "ERROR", ce.code, ce.msg)
		}
		dst = res.b
	}
	return dst
}

// run answers one command into res. A panic in a command is its error, never the process's end.
func (c *Console) run(res *result, cmd command) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if c.Log != nil {
				c.Log.Error("admin command failed", "command", cmd.String(), "panic", p)
			}
			err = &consoleError{code: "XX000", msg: fmt.Sprintf("internal error in %s: %v", cmd.String(), p)}
		}
	}()
	switch cmd.verb {
	case "SHOW":
		if len(cmd.args) == 0 {
			return syntaxError("SHOW needs an object, such as SHOW POOLS; use SHOW HELP;")
		}
		show, ok := showCommands[cmd.args[0]]
		if !ok {
			show, ok = c.pluginShow(cmd.args[0])
		}
		if !ok {
			if pgbouncerOnlyShow[cmd.args[0]] {
				return notSupported("SHOW %s is not supported by sluice; use SHOW HELP;", cmd.args[0])
			}
			return unknownCommand(cmd)
		}
		if len(cmd.args) > 1 {
			return syntaxError("SHOW %s takes no arguments", cmd.args[0])
		}
		return show(c, res)
	case "RELOAD":
		if len(cmd.args) > 0 {
			return syntaxError("RELOAD takes no arguments")
		}
		return c.reload(res)
	case "SHUTDOWN":
		if len(cmd.args) > 0 {
			return syntaxError("SHUTDOWN takes no arguments")
		}
		return c.shutdown(res)
	case "BAN":
		return c.ban(res, cmd.args)
	case "UNBAN":
		return c.unban(res, cmd.args)
	case "PAUSE":
		return c.pause(res, cmd.args)
	case "RESUME":
		return c.resume(res, cmd.args)
	case "KILL":
		return c.kill(res, cmd.args)
	case "KILL_CLIENT":
		return c.killClient(res, cmd.args)
	case "RECONNECT":
		return c.reconnect(res, cmd.args)
	case "WAIT_CLOSE":
		return c.waitClose(res, cmd.args)
	case "DISABLE":
		return c.disable(res, "DISABLE", cmd.args, true)
	case "ENABLE":
		return c.disable(res, "ENABLE", cmd.args, false)
	case "SET":
		// Drivers and ORMs send SET at connect time; like pgcat, the console accepts and ignores it.
		res.complete("SET")
		return nil
	}
	if pgbouncerOnly[cmd.verb] {
		return notSupported("%s is not supported by sluice", cmd.verb)
	}
	return unknownCommand(cmd)
}

func (c *Console) logInfo(msg string, args ...any) {
	if c.Log != nil {
		c.Log.Info(msg, args...)
	}
}

// pluginShow returns the SHOW command of the plugins called name (any case) that answer SHOW
// <their name> (plugin.Shower): every instance's rows, top-level first, after a pool column.
func (c *Console) pluginShow(name string) (func(*Console, *result) error, bool) {
	var ins []*hooks.Instance
	for _, in := range c.Table().Plugins.Instances() {
		if in.HasShow() && strings.EqualFold(in.Name, name) {
			ins = append(ins, in)
		}
	}
	if len(ins) == 0 {
		return nil, false
	}
	return func(c *Console, res *result) error {
		var cols []string
		type part struct {
			pool any
			rows [][]*string
		}
		var parts []part
		for _, in := range ins {
			rows, err := in.Show(context.Background())
			if err != nil {
				return err
			}
			if cols == nil {
				cols = rows.Columns
			} else if !slices.Equal(cols, rows.Columns) {
				return fmt.Errorf("plugin %q: show: instances disagree on the columns: %q and %q", in.Name, cols, rows.Columns)
			}
			var pool any = in.Pool
			if in.Pool == "" {
				pool = null
			}
			parts = append(parts, part{pool, rows.Rows})
		}
		hdr := []column{text("pool")}
		for _, name := range cols {
			hdr = append(hdr, text(name))
		}
		res.header(hdr...)
		for _, p := range parts {
			for _, r := range p.rows {
				vals := make([]any, 0, len(r)+1)
				vals = append(vals, p.pool)
				for _, v := range r {
					if v == nil {
						vals = append(vals, null)
					} else {
						vals = append(vals, *v)
					}
				}
				res.row(vals...)
			}
		}
		res.complete("SHOW")
		return nil
	}, true
}
