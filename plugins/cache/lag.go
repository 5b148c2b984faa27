package cache

import (
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
)

// lagMeter measures how far a replication stream is behind the server: in bytes, from the end
// of WAL the server's last message gave to the stream's position (everything before it
// handled); in time, since the stream was last caught up. One goroutine, the stream's, updates
// it; any may read it.
type lagMeter struct {
	end      atomic.Uint64 // the server's end of WAL, as its last message said
	pos      atomic.Uint64 // the stream's position
	caughtUp atomic.Int64  // unix nanos when pos last reached end
}

// start restarts the meter for a new session: caught up, until the server says otherwise.
func (l *lagMeter) start(now time.Time) {
	l.end.Store(0)
	l.pos.Store(0)
	l.caughtUp.Store(now.UnixNano())
}

// server records the server's end of WAL from a keepalive or a data message.
func (l *lagMeter) server(end pglogrepl.LSN, now time.Time) {
	if uint64(end) > l.end.Load() {
		l.end.Store(uint64(end))
	}
	l.check(now)
}

// handled records the stream's position: everything before pos is done.
func (l *lagMeter) handled(pos pglogrepl.LSN, now time.Time) {
	if uint64(pos) > l.pos.Load() {
		l.pos.Store(uint64(pos))
	}
	l.check(now)
}

func (l *lagMeter) check(now time.Time) {
	if l.pos.Load() >= l.end.Load() {
		l.caughtUp.Store(now.UnixNano())
	}
}

// lag returns the bytes of WAL the stream has not handled, and for how long it has been
// behind (0 when caught up).
func (l *lagMeter) lag(now time.Time) (bytes int64, behind time.Duration) {
	end, pos := l.end.Load(), l.pos.Load()
	if pos >= end {
		return 0, 0
	}
	return int64(end - pos), max(now.Sub(time.Unix(0, l.caughtUp.Load())), 0)
}
