package frontend

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/admin"
	"github.com/sluicepg/sluice/internal/auth"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
)

// SetConsole turns the admin console on: a client that asks for database pgcat or pgbouncer
// while admin_username is set logs in with the admin credentials and gets c. Call it before
// Serve.
func (l *Listener) SetConsole(c *admin.Console) { l.console = c }

// sessionInfo is what the admin console shows of a session beyond its login names.
type sessionInfo struct {
	admin     bool      // an admin console session
	connected time.Time // when the login ended
	// ready is set once the login has ended: the session's names and settings are written and
	// Snapshot may read them.
	ready atomic.Bool
	// queries counts Query and Execute messages: written by the reader, read by the console.
	queries atomic.Uint64
}

// loggedIn marks the end of the login. The session's login fields must be written by now.
func (i *sessionInfo) loggedIn() {
	i.connected = time.Now()
	i.ready.Store(true)
}

// adminLogin logs a client in to the admin console: only admin_username, with admin_password
// and admin_auth_type (or the method of the hba rule that matched). Anyone else gets the same
// exchange and the same 28P01 as a wrong password.
func (s *ClientSession) adminLogin(tbl *route.Table, hbaMethod string) error {
	g := &tbl.Config.General
	tg := s.l.adminTarget(g)
	method := g.AdminAuth()
	if hbaMethod != "" {
		method = hbaMethod
		if method == config.AuthMD5 && auth.IsSCRAMVerifier(g.AdminPassword) {
			method = config.AuthSCRAM // as for users: md5 in hba allows SCRAM for SCRAM secrets
		}
	}
	if s.user != g.AdminUsername {
		tg = nil
	}
	sec := userSecret{known: tg != nil}
	if tg != nil {
		sec.password = g.AdminPassword
	}
	var ok bool
	var err error
	switch method {
	case config.AuthTrust:
		ok = tg != nil
	case config.AuthCert: // an hba cert rule
		if tg == nil || !s.certNamesUser() {
			return s.certFailed()
		}
		ok = true
	case config.AuthSCRAM:
		ok, _, err = s.scram(g, tg, &sec)
	default:
		ok, err = s.md5(&sec)
	}
	if err != nil {
		return err
	}
	if !ok {
		failedLoginDelay()
		return s.fatal("28P01", fmt.Sprintf("password authentication failed for user %q", s.user))
	}
	s.info.admin = true
	s.l.register(s)
	appName, _ := s.paramLocked("application_name")
	b := make([]byte, 0, 256)
	b = append(b, wire.Authentication, 0, 0, 0, 8, 0, 0, 0, 0) // AuthenticationOk
	for _, kv := range [][2]string{
		{"server_version", s.l.console.Version},
		{"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"},
		{"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"},
		{"application_name", appName},
	} {
		b = wire.AppendParameterStatus(b, kv[0], kv[1])
	}
	b = append(b, wire.BackendKeyData, 0, 0, 0, 12,
		byte(s.pid>>24), byte(s.pid>>16), byte(s.pid>>8), byte(s.pid))
	b = append(b, s.secret[:]...)
	b = wire.AppendReadyForQuery(b, 'I')
	return s.out.send(b)
}

// adminTarget returns a Target that holds the admin credentials, for the md5 and SCRAM
// exchanges. It is kept while the credentials do not change, so a SCRAM verifier derived from a
// plain password is derived once.
func (l *Listener) adminTarget(g *config.General) *route.Target {
	if tg := l.adminTg.Load(); tg != nil && tg.User.Username == g.AdminUsername && tg.User.Password == g.AdminPassword {
		return tg
	}
	tg := &route.Target{User: &config.User{Username: g.AdminUsername, Password: g.AdminPassword}}
	l.adminTg.Store(tg)
	return tg
}

// runAdmin is the reader loop of an admin console session.
func (s *ClientSession) runAdmin() error {
	err := s.l.console.Serve(&s.r, sender{&s.out})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			return s.fatal("57P01", "terminating connection: sluice is shutting down")
		}
	}
	return err
}

// sender writes each message to the client at once.
type sender struct{ o *clientOut }

func (w sender) Write(p []byte) (int, error) {
	if err := w.o.send(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Snapshot returns the logged-in clients, admin sessions included, for the admin console. It
// takes each session's lock briefly; sessions that log in or leave meanwhile may or may not be
// in it.
func (l *Listener) Snapshot() []admin.Client {
	l.mu.Lock()
	sessions := make([]*ClientSession, 0, len(l.sessions))
	for _, s := range l.sessions {
		sessions = append(sessions, s)
	}
	l.mu.Unlock()
	out := make([]admin.Client, 0, len(sessions))
	for _, s := range sessions {
		if !s.info.ready.Load() {
			continue // still logging in: SHOW LISTS counts it as login_clients
		}
		c := admin.Client{
			ID: s.pid, Database: s.db, User: s.user, TLS: s.tls, Admin: s.info.admin,
			Connected: s.info.connected, Queries: s.info.queries.Load(), Addr: "unix",
		}
		if ta, ok := s.conn.RemoteAddr().(*net.TCPAddr); ok {
			c.Addr, c.Port = ta.IP.String(), ta.Port
		}
		s.mu.Lock()
		c.ApplicationName, _ = s.paramLocked("application_name")
		if srv := s.srv; srv != nil {
			// PID and Created do not change after the server's login: safe to read here.
			c.Server = &admin.Server{Addr: srv.Addr()}
			c.Server.PID, c.Server.Created = srv.PID(), srv.Created
		}
		s.mu.Unlock()
		out = append(out, c)
	}
	return out
}

// Kill ends the sessions of the logged-in clients that match (never an admin console's): each
// gets FATAL 57P01 with why, and its connection closes. A server it held is rolled back or
// closed, as when a client leaves. It returns how many sessions it ended.
func (l *Listener) Kill(match func(admin.Client) bool, why string) int {
	l.mu.Lock()
	var victims []*ClientSession
	for _, s := range l.sessions {
		if !s.info.ready.Load() || s.info.admin {
			continue
		}
		if match(admin.Client{ID: s.pid, Database: s.db, User: s.user}) {
			victims = append(victims, s)
		}
	}
	l.mu.Unlock()
	for _, s := range victims {
		go s.kill(why)
	}
	return len(victims)
}

// kill tells the client why its session ends and closes its connection: the reader's next read
// fails and the session cleans up. The FATAL is best effort: a client that does not read gets
// its connection closed within a second all the same. A query the session's servers run is
// canceled: the reader (or the pump) waiting for its result would otherwise notice the client
// is gone only once the query ends. Those servers are closed, not reused: the cancel must not
// reach another client's query.
func (s *ClientSession) kill(why string) {
	s.mu.Lock()
	s.killed = true
	s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = s.out.send(wire.AppendError(nil, "FATAL", "57P01", "terminating connection due to administrator command: "+why))
	s.conn.Close()
	s.cancelQuery()
}

// SetDisabled turns new logins to database db away (DISABLE) or lets them in again (ENABLE).
// Clients already logged in stay.
func (l *Listener) SetDisabled(db string, disabled bool) {
	if disabled {
		l.disabled.Store(db, true)
	} else {
		l.disabled.Delete(db)
	}
}

// Disabled reports whether logins to database db are turned away.
func (l *Listener) Disabled(db string) bool {
	_, ok := l.disabled.Load(db)
	return ok
}
