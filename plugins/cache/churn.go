package cache

import (
	"sync"
	"sync/atomic"
	"time"
)

// A table's generation goes up at every write to it, which puts every entry that read it out of
// reach. When a table is written faster than its entries are read again (pgbench's updates of
// the rows its reads read), nearly every read misses, and a miss costs more than no cache at
// all: the lookup, the fill lease and the fill are Redis round trips on top of the query. So
// the cache keeps away from such a table for a while: its reads go straight to Postgres, which
// is always correct, and are counted as bypassed ("table written faster than read"). After the
// pause the cache tries again; a table that still churns is left alone for twice as long, up to
// churnMaxPause.
const (
	churnWindow    = time.Second      // how long hits, fills and writes are counted before a verdict
	churnMinWrites = 10               // writes in a window below which a table is never paused
	churnMinFills  = 50               // fills in a window below which a table is never paused
	churnPause     = 5 * time.Second  // the first pause
	churnMaxPause  = 60 * time.Second // the longest pause
)

// churn follows, per table, whether caching it pays. It is safe for concurrent use.
type churn struct {
	tables sync.Map // genID -> *tableChurn
}

// tableChurn is one table's count for the current window and its pause.
type tableChurn struct {
	window              atomic.Int64 // when the current window began, unix nanos
	hits, fills, writes atomic.Int64
	until               atomic.Int64 // unix nanos before which the table is not cached
	strikes             atomic.Int32 // windows in a row that ended in a pause
}

func (c *churn) table(ident string, oid uint32, now int64) *tableChurn {
	id := genID{ident, oid}
	if t, ok := c.tables.Load(id); ok {
		return t.(*tableChurn)
	}
	t := &tableChurn{}
	t.window.Store(now)
	v, _ := c.tables.LoadOrStore(id, t)
	return v.(*tableChurn)
}

// paused reports whether any of the tables oids of database ident is paused at now.
func (c *churn) paused(ident string, oids []uint32, now int64) bool {
	for _, o := range oids {
		if t, ok := c.tables.Load(genID{ident, o}); ok && now < t.(*tableChurn).until.Load() {
			return true
		}
	}
	return false
}

// read counts a lookup of an entry that read oids: a hit, or a miss that fills.
func (c *churn) read(ident string, oids []uint32, hit bool, now int64) {
	for _, o := range oids {
		t := c.table(ident, o, now)
		if hit {
			t.hits.Add(1)
		} else {
			t.fills.Add(1)
		}
		t.roll(now)
	}
}

// wrote counts a generation bump of oids.
func (c *churn) wrote(ident string, oids []uint32, now int64) {
	for _, o := range oids {
		t := c.table(ident, o, now)
		t.writes.Add(1)
		t.roll(now)
	}
}

// roll ends the window when it is over: a table written at least churnMinWrites times whose
// fills were more than twice its hits is paused.
func (t *tableChurn) roll(now int64) {
	start := t.window.Load()
	if now-start < int64(churnWindow) || !t.window.CompareAndSwap(start, now) {
		return
	}
	hits, fills, writes := t.hits.Swap(0), t.fills.Swap(0), t.writes.Swap(0)
	if writes < churnMinWrites || fills < churnMinFills || fills <= 2*hits {
		t.strikes.Store(0)
		return
	}
	n := min(t.strikes.Add(1), 8)
	pause := min(churnPause<<(n-1), churnMaxPause)
	t.until.Store(now + int64(pause))
	t.window.Store(now + int64(pause)) // the next window counts from the pause's end
}
