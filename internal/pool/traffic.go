package pool

import (
	"sync"
	"sync/atomic"
	"time"
)

// Traffic is what the clients of a pool did on its servers, as PgBouncer and pgcat count it: a
// query is one request cycle (a Query, or messages up to a Sync) ended by the server's
// ReadyForQuery; a transaction ends at a ReadyForQuery that finds the server idle.
type Traffic struct {
	Queries, Xacts, Errors uint64
	QueryTime, XactTime    time.Duration
	BytesSent, BytesRecv   uint64 // to and from the servers
}

// trafficCounters are a pool's Traffic totals.
type trafficCounters struct {
	queries, xacts, errors atomic.Uint64
	queryNs, xactNs        atomic.Int64
	sent, recv             atomic.Uint64
}

// Account adds one request cycle's traffic to the pool's totals. The frontend calls it at each
// ReadyForQuery, so the totals are current while a session holds a server for long.
func (p *Pool) Account(t Traffic) {
	c := &p.traffic
	c.queries.Add(t.Queries)
	if t.Xacts > 0 {
		c.xacts.Add(t.Xacts)
		c.xactNs.Add(int64(t.XactTime))
	}
	if t.Errors > 0 {
		c.errors.Add(t.Errors)
	}
	c.queryNs.Add(int64(t.QueryTime))
	c.sent.Add(t.BytesSent)
	c.recv.Add(t.BytesRecv)
}

// Traffic returns the pool's totals since it was made.
func (p *Pool) Traffic() Traffic {
	c := &p.traffic
	return Traffic{
		Queries: c.queries.Load(), Xacts: c.xacts.Load(), Errors: c.errors.Load(),
		QueryTime: time.Duration(c.queryNs.Load()), XactTime: time.Duration(c.xactNs.Load()),
		BytesSent: c.sent.Load(), BytesRecv: c.recv.Load(),
	}
}

// averagePeriod is how often the averages of SHOW STATS move on: PgBouncer's and pgcat's 15 s.
const averagePeriod = 15 * time.Second

// Averages are a pool's rates over the last complete period: counts and bytes per second, and
// the mean time of a query, a transaction and a wait for a server.
type Averages struct {
	Queries, Xacts, Errors, BytesSent, BytesRecv float64
	QueryTime, XactTime, WaitTime                time.Duration
}

// averager keeps the totals at the start of the current period and the averages of the last
// one. It moves on when asked after the period has passed, so an unwatched pool costs nothing.
type averager struct {
	mu    sync.Mutex
	since time.Time
	start Traffic
	waits uint64
	wait  time.Duration
	last  Averages
}

// Averages returns the pool's averages over the last complete period (zero until one has
// passed).
func (p *Pool) Averages() Averages {
	a := &p.avg
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.since.IsZero() {
		a.since, a.start = now, p.Traffic()
		a.waits, a.wait = p.waits.Load(), time.Duration(p.totalWaitNs.Load())
		return a.last
	}
	d := now.Sub(a.since)
	if d < averagePeriod {
		return a.last
	}
	t := p.Traffic()
	waits, wait := p.waits.Load(), time.Duration(p.totalWaitNs.Load())
	secs := d.Seconds()
	per := func(n, m uint64) float64 { return float64(n-m) / secs }
	mean := func(total, start time.Duration, n, m uint64) time.Duration {
		if n == m {
			return 0
		}
		return (total - start) / time.Duration(n-m)
	}
	a.last = Averages{
		Queries: per(t.Queries, a.start.Queries), Xacts: per(t.Xacts, a.start.Xacts),
		Errors: per(t.Errors, a.start.Errors), BytesSent: per(t.BytesSent, a.start.BytesSent),
		BytesRecv: per(t.BytesRecv, a.start.BytesRecv),
		QueryTime: mean(t.QueryTime, a.start.QueryTime, t.Queries, a.start.Queries),
		XactTime:  mean(t.XactTime, a.start.XactTime, t.Xacts, a.start.Xacts),
		WaitTime:  mean(wait, a.wait, waits, a.waits),
	}
	a.since, a.start, a.waits, a.wait = now, t, waits, wait
	return a.last
}
