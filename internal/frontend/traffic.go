package frontend

import (
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/pool"
)

// epoch is the zero of the monotonic times the traffic counts keep in atomics.
var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// traffic is what a session has done on its server since the last ReadyForQuery, for the
// pool's SHOW STATS counters (pool.Account). The starts are atomic: the reader sets them when
// it flushes a request while the pump may be reading the replies of an earlier one.
type traffic struct {
	reqStart  atomic.Int64 // when the first request since the last ReadyForQuery went out (0: none)
	xactStart atomic.Int64 // when the transaction's first request went out (0: none)
	errors    uint64       // ErrorResponses since the last ReadyForQuery; guarded by s.mu
}

// sent notes that a request went to the server.
func (t *traffic) sent() {
	if t.reqStart.Load() == 0 {
		now := monotonic()
		t.reqStart.CompareAndSwap(0, now)
		t.xactStart.CompareAndSwap(0, now)
	}
}

// accountLocked adds what happened since the last ReadyForQuery to the pool's counters; it runs
// at each ReadyForQuery, whose transaction status is s.tx. s.mu must be held.
func (s *ClientSession) accountLocked(srv *backend.ServerConn) {
	if s.pl == nil {
		return
	}
	now := monotonic()
	sent, recv := srv.Traffic()
	t := trafficOf(now, s.traf.reqStart.Swap(0), s.tx == 'I', &s.traf.xactStart)
	t.Errors, s.traf.errors = s.traf.errors, 0
	t.BytesSent, t.BytesRecv = sent, recv
	s.pl.Account(t)
}

// trafficOf is one request cycle ended at now: a query, and a transaction too when the server is
// idle again.
func trafficOf(now, reqStart int64, idle bool, xactStart *atomic.Int64) pool.Traffic {
	t := pool.Traffic{Queries: 1}
	if reqStart != 0 {
		t.QueryTime = time.Duration(now - reqStart)
	}
	if idle {
		t.Xacts = 1
		if xs := xactStart.Swap(0); xs != 0 {
			t.XactTime = time.Duration(now - xs)
		}
	}
	return t
}
