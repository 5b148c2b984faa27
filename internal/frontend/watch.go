package frontend

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/pool"
)

// In transaction mode the reader drains a finished request's reply itself (settle) and reads
// only the server meanwhile. A client that leaves during a long query (node-postgres'
// query_timeout destroys its socket) would keep its server until the query ended, and with it a
// slot of the pool: in session mode the reader notices at once, and closes the server. The watch
// gives the drain the same: once a drain has run for clientWatchDelay, a goroutine reads the
// client's socket until the drain ends.

// clientWatchDelay is how long a drain runs before the client is watched: short replies, most
// of them, cost no goroutine.
const clientWatchDelay = 200 * time.Millisecond

// errClientLeft ends a session whose client disconnected while its reply was still coming.
var errClientLeft = errors.New("the client disconnected while its query ran")

// clientWatch is a session's watch of its client during drains, and the client read deadline
// the session wants: the watch's wake-up overwrites the deadline, and puts this one back.
type clientWatch struct {
	timer *time.Timer                        // runs watchClient once per armed drain; nil before the first
	srv   atomic.Pointer[backend.ServerConn] // the server being drained
	left  chan bool                          // watchClient's verdict: true when the client left

	mu       sync.Mutex // held while the client's read deadline changes
	deadline time.Time  // the deadline the session set last (zero: none)
}

// setClientDeadline sets the client's read deadline and remembers it, so that the watch can put
// it back after its own.
func (s *ClientSession) setClientDeadline(t time.Time) {
	s.watch.mu.Lock()
	s.watch.deadline = t
	_ = s.conn.SetReadDeadline(t)
	s.watch.mu.Unlock()
}

// restoreClientDeadline sets the client's read deadline back to the session's own.
func (s *ClientSession) restoreClientDeadline() {
	s.watch.mu.Lock()
	_ = s.conn.SetReadDeadline(s.watch.deadline)
	s.watch.mu.Unlock()
}

// armWatch starts the delay after which the drain of srv watches the client. The reader calls
// it, and disarmWatch once the drain returns.
func (s *ClientSession) armWatch(srv *backend.ServerConn) {
	s.watch.srv.Store(srv)
	if s.watch.timer == nil {
		s.watch.left = make(chan bool, 1)
		s.watch.timer = time.AfterFunc(clientWatchDelay, s.watchClient)
		return
	}
	s.watch.timer.Reset(clientWatchDelay)
}

// disarmWatch ends the watch and reports whether the client left during the drain.
func (s *ClientSession) disarmWatch() bool {
	if s.watch.timer.Stop() {
		return false // the drain was short: no watch ran
	}
	// The watch runs or ran: wake its read, if it still blocks, and wait for its verdict before
	// the reader reads the client again.
	s.watch.mu.Lock()
	_ = s.conn.SetReadDeadline(aLongTimeAgo)
	s.watch.mu.Unlock()
	left := <-s.watch.left
	s.restoreClientDeadline()
	return left
}

// watchClient runs in the watch's own goroutine while the reader drains: it reads the client
// once. Data the client sent stays buffered for the reader (the client is there, the watch
// ends); the end of the connection wakes the drain.
func (s *ClientSession) watchClient() {
	err := s.r.FillOnce()
	left := err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	if left {
		if srv := s.watch.srv.Load(); srv != nil {
			_ = srv.SetReadDeadline(aLongTimeAgo)
		}
	}
	s.watch.left <- left
}

// clientLeftInDrain finishes a drain whose client left, after disarmWatch. A reply that came
// complete all the same leaves its server reusable; otherwise the server, still busy or inside
// the client's transaction, is closed, as cleanup closes one caught in the middle of a reply,
// and its slot in the pool is free at once.
func (s *ClientSession) clientLeftInDrain(srv *backend.ServerConn, pl *pool.Pool, res pumpResult) error {
	_ = srv.SetReadDeadline(time.Time{})
	if res == pumpReleased {
		pl.Release(srv)
		return errClientLeft
	}
	s.serverLost(srv, pl, errClientLeft)
	return errClientLeft
}
