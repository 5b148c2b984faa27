package frontend

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
)

// A bug that panics in one client's session must not end every other client's: like a tokio
// task in pgcat, the session that failed is closed and the process goes on. The session's state
// may be half-changed and its mutexes held by the frames the panic unwound, so the cleanup that
// gives its server back runs on a goroutine of its own, bounded in time: when it cannot finish,
// the server stays out of its pool (logged) rather than going back in an unknown state.

// SurvivedPanics counts the sessions ended by a panic.
var SurvivedPanics atomic.Int64

// cleanupAfterPanicWait is how long a failed session's cleanup may take before it is left.
const cleanupAfterPanicWait = 5 * time.Second

// PanicHook is for tests of this recovery only: when set, it runs at the start of each login
// (where "login"), in the reader at each simple Query (where "reader", msg the Query) and in a
// pump goroutine as it starts (where "pump"), where it may panic as a bug would.
var PanicHook atomic.Pointer[func(where string, msg []byte)]

// panicHook runs PanicHook, if set.
func panicHook(where string, msg []byte) {
	if h := PanicHook.Load(); h != nil {
		(*h)(where, msg)
	}
}

// The reader's steps run guarded (beforeBlockGuarded, dispatchGuarded): a panic in them becomes
// a *sessionPanic, which ends run. The guard is in these per-message calls rather than at the
// top of the session's goroutine so that it is not on the stack while the reader waits for an
// idle client: a deferred call there made an idle client's stack 4 KiB instead of 2.

// sessionPanic is the error that ends the reader loop after a recovered panic.
type sessionPanic struct{ val any }

func (p *sessionPanic) Error() string { return fmt.Sprintf("internal error: %v", p.val) }

// guard, deferred by a reader step, turns a panic into the step's error. It must be the
// deferred function itself: recover works only there.
func (s *ClientSession) guard(err *error) {
	if r := recover(); r != nil {
		s.logPanic(r)
		*err = &sessionPanic{r}
	}
}

func (s *ClientSession) beforeBlockGuarded() (err error) {
	defer s.guard(&err)
	return s.beforeBlock()
}

func (s *ClientSession) dispatchGuarded(typ byte, size int) (err error) {
	defer s.guard(&err)
	return s.dispatch(typ, size)
}

// finish cleans up after the reader loop ended with err: the usual way, or, after a panic, with
// the client closed at once and the cleanup bounded in time, as the panic may have left the
// session's state half-changed and its mutexes held.
func (s *ClientSession) finish(err error) {
	var p *sessionPanic
	if !errors.As(err, &p) {
		defer s.guard(new(error)) // a panic in the cleanup itself ends this session only
		s.cleanup()
		return
	}
	_ = s.conn.Close() // the pump's next write to the client fails, and it stops
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				s.l.log.Error("internal error: the cleanup of a failed session failed; its server is not returned to the pool",
					"user", s.user, "db", s.db, "panic", r)
			}
		}()
		s.cleanup()
	}()
	select {
	case <-done:
	case <-time.After(cleanupAfterPanicWait):
		s.l.log.Error("internal error: the cleanup of a failed session did not finish; its server is not returned to the pool",
			"user", s.user, "db", s.db)
	}
}

// logPanic counts and logs a panic that ends the session, with the stack of the goroutine that
// panicked: called from a deferred function, debug.Stack still shows the panic's frames.
func (s *ClientSession) logPanic(r any) {
	SurvivedPanics.Add(1)
	s.l.log.Error("internal error: the client's session is closed (please report this with the stack)",
		"user", s.user, "db", s.db, "panic", r, "stack", string(debug.Stack()))
}

// surviveLogin, deferred by login, ends a login that panicked: the connection is closed (login
// then returns nil) and the goroutine goes on to serve other connections.
func (l *Listener) surviveLogin(c net.Conn) {
	r := recover()
	if r == nil {
		return
	}
	SurvivedPanics.Add(1)
	l.log.Error("internal error: a login failed (please report this with the stack)",
		"remote", c.RemoteAddr().String(), "panic", r, "stack", string(debug.Stack()))
	_ = c.Close()
}

// survivePump, deferred by the pump goroutine, ends the session when the pump panicked: the
// client and the server are closed, so the reader's next read fails and it cleans up; the
// server, marked broken, is closed by its pool rather than handed to another client.
func (s *ClientSession) survivePump(srv *backend.ServerConn) {
	r := recover()
	if r == nil {
		return
	}
	s.logPanic(r)
	// Only a server still the session's is closed: one the pump already gave back may be
	// another client's now. A mutex the panic left held counts as still the session's.
	attached := true
	if s.mu.TryLock() {
		attached = s.srv == srv
		s.mu.Unlock()
	}
	if attached {
		srv.Broken = true
		_ = srv.Close()
	}
	_ = s.conn.Close()
}

// recoverInto, deferred by a goroutine that reads one shard's replies for its session, turns a
// panic into that shard's error, which fails the client's statement and closes the server, as a
// server that failed would.
func recoverInto(err *error) {
	if r := recover(); r != nil {
		SurvivedPanics.Add(1)
		slog.Error("internal error while reading a shard's replies (please report this with the stack)",
			"panic", r, "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error in sluice: %v", r)
	}
}
