// Package frontend serves clients: it accepts connections, runs the startup and login of each,
// and then proxies the client's messages to servers that it checks out per transaction (or per
// session), with one goroutine per client and one more while a server is attached.
package frontend

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/admin"
	"github.com/sluicepg/sluice/internal/auth"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/route"
)

// Listener accepts clients on any number of net.Listeners and owns their sessions.
type Listener struct {
	table func() *route.Table
	log   *slog.Logger

	mu       sync.Mutex
	sessions map[uint32]*ClientSession
	lns      []net.Listener
	conns    sync.WaitGroup

	// fakeVerifier is what an unknown user's SCRAM exchange runs against: random keys nobody
	// has the password for. Its salt is never shown: see mockSalt.
	fakeVerifier *auth.Verifier
	// saltKey keys mockSalt.
	saltKey [32]byte
	// mockIterations is the iteration count of the last stored SCRAM secret a login ran
	// against (0: none yet, 4096 is shown), which an unknown user is shown too.
	mockIterations atomic.Int32

	// disabled holds the databases whose new logins the console's DISABLE turns away.
	disabled sync.Map // database name -> true

	// settings finds the SET and RESET statements whose settings transaction mode carries
	// from server to server (settings.go).
	settings *classify.SettingsParser

	// console is the admin console (nil: off); adminTg caches the admin credentials.
	console *admin.Console
	adminTg atomic.Pointer[route.Target]

	clients  atomic.Int64
	nextPID  atomic.Uint32
	shutting atomic.Bool

	// logins hands accepted connections to idle login goroutines; quit ends those at Shutdown.
	logins     chan accepted
	idleLogins atomic.Int32
	quit       chan struct{}
}

// accepted is a connection on its way to a login goroutine, with the socket options it has from its
// listener (nil: none).
type accepted struct {
	c  net.Conn
	ka *sockOpts
}

// Login goroutines are reused. A login's calls go deep (startup, hashing, hooks, formatting), so
// a new goroutine's stack would grow, and be copied, on every connection; a reused one has room
// already. At most maxIdleLogins wait, each for one to two loginIdle, so a burst leaves little
// behind.
const (
	maxIdleLogins = 64
	loginIdle     = 10 * time.Second
)

// maxInlineSessions is the number of connected clients up to which a session runs on its login
// goroutine rather than a new one (serveConn). Counting all clients bounds the sessions whose
// stacks the login grew to this number, whatever comes and goes.
const maxInlineSessions = 64

// NewListener returns a Listener that reads the current routing table from table on every login
// and checkout, so a reload takes effect without restarting it.
func NewListener(table func() *route.Table, log *slog.Logger) *Listener {
	l := &Listener{
		table: table, log: log, sessions: map[uint32]*ClientSession{},
		logins: make(chan accepted), quit: make(chan struct{}),
		settings: classify.NewSettingsParser(settingsCacheSize, 0),
	}
	fake := make([]byte, 32)
	_, _ = rand.Read(fake)
	l.fakeVerifier = auth.NewVerifier(string(fake), fake[:16], 4096)
	_, _ = rand.Read(l.saltKey[:])
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	l.nextPID.Store(uint32(seed[0])<<16 | uint32(seed[1])<<8 | uint32(seed[2]))
	return l
}

// Serve accepts connections on ln until ln is closed or Shutdown is called.
func (l *Listener) Serve(ln net.Listener) error {
	l.mu.Lock()
	if l.shutting.Load() {
		l.mu.Unlock()
		ln.Close()
		return nil
	}
	l.lns = append(l.lns, ln)
	l.mu.Unlock()
	var inherited *sockOpts
	if tl, ok := ln.(*tcpListener); ok {
		inherited = &tl.ka
	}
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.shutting.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off instead of spinning.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			l.log.Warn("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		l.conns.Add(1)
		a := accepted{c, inherited}
		select {
		case l.logins <- a: // an idle login goroutine took it
		default:
			go l.loginLoop(a)
		}
	}
}

// loginLoop serves a, then waits as an idle login goroutine for the next connection. It ends
// when a whole loginIdle passed without a connection. The timer is not reset per connection:
// it ticks every loginIdle, and a tick after a connection only starts another wait.
func (l *Listener) loginLoop(a accepted) {
	var idle *time.Timer
	for {
		l.serveConn(a.c, a.ka)
		l.conns.Done()
		if l.idleLogins.Add(1) > maxIdleLogins {
			l.idleLogins.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(loginIdle)
		}
		if !l.waitLogin(&a, idle) {
			return
		}
	}
}

// waitLogin waits, as one of the idle login goroutines, for a connection to serve and stores
// it in a. It reports false when the goroutine is to end: a tick of idle without a connection
// since the one before, or Shutdown.
func (l *Listener) waitLogin(a *accepted, idle *time.Timer) bool {
	defer l.idleLogins.Add(-1)
	served := true // the connection just served counts for the current tick
	for {
		select {
		case *a = <-l.logins:
			return true
		case <-idle.C:
			if !served {
				return false
			}
			served = false
			idle.Reset(loginIdle)
		case <-l.quit:
			return false
		}
	}
}

// mockSalt returns the SCRAM salt shown for user when sluice has no stored salt to show: an
// unknown user's, or a plain-text password's from auth_query. Like Postgres' scram_mock_salt, it
// is the same at every attempt and differs from user to user, so that the salt tells nobody
// whether the user exists: one salt shared by every unknown user, or a new salt at each
// attempt, would. The key is random per process and never shown.
func (l *Listener) mockSalt(user string) []byte {
	m := hmac.New(sha256.New, l.saltKey[:])
	m.Write([]byte(user))
	return m.Sum(nil)[:16]
}

// fakeVerifierFor returns the verifier an unknown user's SCRAM exchange runs against: the
// fake keys with user's mock salt, and the iteration count real users' secrets have, as far as
// logins have shown it (Postgres shows its scram_iterations setting).
func (l *Listener) fakeVerifierFor(user string) *auth.Verifier {
	v := *l.fakeVerifier
	v.Salt = l.mockSalt(user)
	if n := l.mockIterations.Load(); n > 0 {
		v.Iterations = int(n)
	}
	return &v
}

// Clients returns the number of connected clients.
func (l *Listener) Clients() int { return int(l.clients.Load()) }

func (l *Listener) register(s *ClientSession) {
	l.mu.Lock()
	for {
		pid := l.nextPID.Add(1) & 0x7fffffff
		if pid == 0 {
			continue
		}
		if _, dup := l.sessions[pid]; !dup {
			s.pid = pid
			break
		}
	}
	l.sessions[s.pid] = s
	l.mu.Unlock()
	_, _ = rand.Read(s.secret[:])
}

func (l *Listener) unregister(s *ClientSession) {
	l.mu.Lock()
	if l.sessions[s.pid] == s {
		delete(l.sessions, s.pid)
	}
	l.mu.Unlock()
}

// cancel forwards a CancelRequest to the server running the query of the client that pid and
// secret name. A wrong secret is ignored silently, as Postgres does.
func (l *Listener) cancel(pid uint32, secret []byte) {
	l.mu.Lock()
	s := l.sessions[pid]
	l.mu.Unlock()
	if s == nil || len(secret) != len(s.secret) || subtle.ConstantTimeCompare(secret, s.secret[:]) != 1 {
		return
	}
	s.cancelQuery()
}

// Shutdown stops accepting, closes idle clients at once, lets clients in a transaction finish it,
// and closes whatever is left when ctx is done. It returns when every client is gone.
func (l *Listener) Shutdown(ctx context.Context) {
	l.mu.Lock()
	if !l.shutting.Swap(true) {
		close(l.quit)
	}
	for _, ln := range l.lns {
		ln.Close()
	}
	sessions := make([]*ClientSession, 0, len(l.sessions))
	for _, s := range l.sessions {
		sessions = append(sessions, s)
	}
	l.mu.Unlock()
	for _, s := range sessions {
		s.shutdown()
	}
	done := make(chan struct{})
	go func() { l.conns.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	l.mu.Lock()
	for _, s := range l.sessions {
		s.conn.Close()
		// A session waiting for a server (a paused pool) would not see its connection close:
		// end the wait, and what its servers run, as a cancel request does.
		go s.cancelQuery()
	}
	l.mu.Unlock()
	<-done
}
