package backend

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/wire"
)

// Mirror is a server that receives a copy of everything sluice sends to the server connections
// of one pool (pgcat's query mirroring, a shard's mirrors key). Each server connection that Dial
// opens with Params.Mirrors opens its own connection to each mirror, logged in with Params (the
// pool's user, password and database, the mirror's host and port), and closes it when it is
// closed. The mirror's replies are read and thrown away. Mirroring never slows the server
// connection: what the mirror cannot take at once waits in a bounded queue, and what does not
// fit is dropped and counted. A Mirror is shared by every server connection of its pool.
type Mirror struct {
	// Params log in to the mirror. Its Mirrors must be empty.
	Params Params
	// QueueBytes bounds what may wait for one mirror connection; 0 means DefaultMirrorQueue.
	QueueBytes int
	// Stats are the mirror's counters, summed over its connections.
	Stats MirrorStats

	log     atomic.Pointer[slog.Logger]
	lastLog atomic.Int64  // unix nanoseconds of the last warning logged
	quiet   atomic.Uint64 // warnings not logged since then
}

// MirrorStats count what a Mirror was sent and what it missed. Every message sluice sends to a
// mirrored server is, in the end, either sent to the mirror (Messages) or dropped
// (DroppedMessages), except a message cut short when a connection ends.
type MirrorStats struct {
	Bytes           atomic.Uint64 // bytes written to the mirror
	Messages        atomic.Uint64 // messages written to the mirror
	DroppedBytes    atomic.Uint64 // bytes not mirrored: the queue was full or the mirror down
	DroppedMessages atomic.Uint64
	ConnectErrors   atomic.Uint64 // failed logins to the mirror and connections it lost
	ServerErrors    atomic.Uint64 // ErrorResponses the mirror answered with
	Connections     atomic.Int64  // mirror connections open now
}

// DefaultMirrorQueue is the bytes that may wait for one mirror connection.
const DefaultMirrorQueue = 1 << 20

// The mirror connection's timings.
const (
	mirrorWriteTimeout = 10 * time.Second // a mirror that takes nothing for this long is dropped
	mirrorCloseTimeout = time.Second      // to send what is queued when the server closes
	mirrorBackoffMin   = 100 * time.Millisecond
	mirrorBackoffMax   = 10 * time.Second
	mirrorLogEvery     = 10 * time.Second // at most one warning per mirror this often
)

// SetLogger sets where the mirror's warnings go; until it is called they go to slog.Default().
func (m *Mirror) SetLogger(l *slog.Logger) { m.log.Store(l) }

// warn logs a problem with the mirror, at most once per mirrorLogEvery; the rest are counted and
// the count is logged with the next warning.
func (m *Mirror) warn(msg string, err error) {
	now := time.Now().UnixNano()
	last := m.lastLog.Load()
	if now-last < int64(mirrorLogEvery) || !m.lastLog.CompareAndSwap(last, now) {
		m.quiet.Add(1)
		return
	}
	l := m.log.Load()
	if l == nil {
		l = slog.Default()
	}
	l.Warn(msg, "mirror", m.Params.Addr(), "database", m.Params.Database, "err", err,
		"suppressed", m.quiet.Swap(0))
}

func (m *Mirror) queueLimit() int {
	if m.QueueBytes > 0 {
		return m.QueueBytes
	}
	return DefaultMirrorQueue
}

// mirrorTee copies what a server connection writes to its mirror connections. Only the
// goroutine writing to the server calls write.
type mirrorTee struct {
	fr    framer
	conns []*mirrorConn
}

func startMirrors(ms []*Mirror) *mirrorTee {
	t := &mirrorTee{conns: make([]*mirrorConn, len(ms))}
	t.fr.stmts = &stmtLog{byName: map[string][]byte{}}
	for i, m := range ms {
		c := &mirrorConn{m: m, stmts: t.fr.stmts, accepting: true, wake: make(chan struct{}, 1)}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		t.conns[i] = c
		go c.run()
	}
	return t
}

// write offers p, the next bytes written to the server, to every mirror. It does not block.
func (t *mirrorTee) write(p []byte) {
	if len(p) == 0 {
		return
	}
	first, starts := t.fr.scan(p)
	for _, c := range t.conns {
		c.offer(p, first, starts)
	}
}

// close ends the mirror connections once they have sent what is queued (within
// mirrorCloseTimeout). It does not block.
func (t *mirrorTee) close() {
	for _, c := range t.conns {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.signal()
	}
}

// framer follows message boundaries in the byte stream written to a server, whose writes cut
// messages anywhere. With stmts, it also keeps the named statements' Parse messages.
type framer struct {
	rest  int // bytes of the current message's body still to come
	hn    int // header bytes of the next message seen so far
	hdr   [wire.HeaderLen]byte
	stmts *stmtLog
	msg   []byte // the current message, when it is a Parse or Close being kept
	keep  bool
}

// stmtLog holds the Parse message of every named statement prepared on a server and not
// closed since, so that a new mirror session (after a gap) prepares them before it goes on:
// without them, each later Bind of one would fail on the mirror for the server's whole life.
type stmtLog struct {
	mu     sync.Mutex
	byName map[string][]byte
}

// maxKeptStatements bounds a stmtLog; sluice's own statement cache is smaller.
const maxKeptStatements = 4096

// maxKeptParse is the largest Parse message a stmtLog keeps.
const maxKeptParse = 64 << 10

func (l *stmtLog) note(msg []byte) {
	name, _, ok := wire.CString(msg[wire.HeaderLen:])
	switch {
	case !ok || len(name) == 0:
	case msg[0] == wire.Parse:
		l.mu.Lock()
		if _, has := l.byName[string(name)]; has || len(l.byName) < maxKeptStatements {
			l.byName[string(name)] = bytes.Clone(msg)
		}
		l.mu.Unlock()
	case msg[0] == wire.Close && msg[wire.HeaderLen] == 'S':
		name, _, ok = wire.CString(msg[wire.HeaderLen+1:])
		if ok {
			l.mu.Lock()
			delete(l.byName, string(name))
			l.mu.Unlock()
		}
	}
}

// replay returns the kept Parse messages followed by a Sync, or nil when there are none.
func (l *stmtLog) replay() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.byName) == 0 {
		return nil
	}
	var b []byte
	for _, m := range l.byName {
		b = append(b, m...)
	}
	return wire.AppendSimple(b, wire.Sync)
}

// scan advances over p and returns the offset in p of the first message that begins in it (-1
// when none does) and how many begin in it.
func (f *framer) scan(p []byte) (first, starts int) {
	first = -1
	for i := 0; i < len(p); {
		if f.rest > 0 {
			k := min(f.rest, len(p)-i)
			if f.keep {
				f.msg = append(f.msg, p[i:i+k]...)
			}
			f.rest -= k
			i += k
			if f.rest == 0 && f.keep {
				f.kept()
			}
			continue
		}
		if f.hn == 0 {
			if first < 0 {
				first = i
			}
			starts++
		}
		k := copy(f.hdr[f.hn:], p[i:])
		f.hn += k
		i += k
		if f.hn == wire.HeaderLen {
			f.hn = 0
			f.rest = max(int(binary.BigEndian.Uint32(f.hdr[1:]))-4, 0)
			typ := f.hdr[0]
			f.keep = f.stmts != nil && (typ == wire.Parse || typ == wire.Close) && f.rest > 0 && f.rest <= maxKeptParse
			if f.keep {
				f.msg = append(f.msg[:0], f.hdr[:]...)
			}
		}
	}
	return first, starts
}

func (f *framer) kept() {
	f.keep = false
	f.stmts.note(f.msg)
	if cap(f.msg) > 4<<10 {
		f.msg = nil
	}
}

// mirrorConn is one server connection's connection to one mirror: a queue the tee fills and a
// goroutine that empties it into the mirror.
type mirrorConn struct {
	m         *Mirror
	stmts     *stmtLog
	ctx       context.Context // canceled when closed with nothing left to send
	cancel    context.CancelFunc
	wake      chan struct{}
	mu        sync.Mutex
	queue     []mirrorChunk
	queued    int  // bytes in queue
	accepting bool // false while the mirror is known to be down: everything is dropped
	resync    bool // bytes were dropped: take bytes again only from a message's start
	closed    bool
}

// mirrorChunk is bytes written to the server, to be written to the mirror. fresh marks the first
// bytes after a gap: they start a new mirror session, since the mirror missed something.
type mirrorChunk struct {
	b     []byte
	msgs  int
	fresh bool
}

func (c *mirrorConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// offer queues a copy of p, or drops it when the mirror is down or its queue is full. first and
// starts are framer.scan's for p.
func (c *mirrorConn) offer(p []byte, first, starts int) {
	st := &c.m.Stats
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.resync && c.accepting && first > 0 {
		// The rest of a message whose start was dropped.
		st.DroppedBytes.Add(uint64(first))
		p = p[first:]
		first = 0
	}
	if !c.accepting || (c.resync && first != 0) || (c.queued > 0 && c.queued+len(p) > c.m.queueLimit()) {
		c.resync = true
		c.mu.Unlock()
		st.DroppedBytes.Add(uint64(len(p)))
		st.DroppedMessages.Add(uint64(starts))
		return
	}
	c.queue = append(c.queue, mirrorChunk{b: append([]byte(nil), p...), msgs: starts, fresh: c.resync})
	c.queued += len(p)
	c.resync = false
	c.mu.Unlock()
	c.signal()
}

// take returns the queued chunks, or nil when there are none; it reports whether the tee closed
// the connection.
func (c *mirrorConn) take() ([]mirrorChunk, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queue
	c.queue, c.queued = nil, 0
	return q, c.closed
}

func (c *mirrorConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// down drops what is queued and everything offered until up: the mirror is unreachable.
func (c *mirrorConn) down(q []mirrorChunk) {
	c.mu.Lock()
	c.accepting, c.resync = false, true
	q = append(q, c.queue...)
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	c.drop(q)
}

func (c *mirrorConn) up() {
	c.mu.Lock()
	c.accepting = true
	c.mu.Unlock()
}

func (c *mirrorConn) drop(q []mirrorChunk) {
	for _, ch := range q {
		c.m.Stats.DroppedBytes.Add(uint64(len(ch.b)))
		c.m.Stats.DroppedMessages.Add(uint64(ch.msgs))
	}
}

// run is the mirror connection's goroutine: it logs in to the mirror (again after a gap or a
// failure, with backoff), writes what the tee queued and, when the tee closes, what is left.
func (c *mirrorConn) run() {
	var (
		mc      *mirrorLink
		backoff = mirrorBackoffMin
	)
	defer func() {
		if mc != nil {
			mc.close()
		}
		c.cancel()
	}()
	for {
		var q []mirrorChunk
		var closed bool
		if mc != nil {
			select {
			case <-c.wake:
			case <-mc.dead:
			}
		}
		q, closed = c.take()
		if mc != nil && mc.isDead() {
			c.m.warn("mirror connection lost", mc.err())
			c.m.Stats.ConnectErrors.Add(1)
			mc.close()
			mc = nil
			if closed {
				c.drop(q)
				return
			}
			c.down(q)
			q = nil
		}
		if closed && mc == nil && len(q) == 0 {
			return
		}
		for len(q) > 0 || mc == nil {
			if mc == nil {
				if closed {
					c.drop(q)
					return
				}
				var err error
				mc, err = c.dial()
				if err != nil {
					c.m.warn("cannot connect to mirror", err)
					c.m.Stats.ConnectErrors.Add(1)
					c.down(q)
					q = nil
					if c.isClosed() || !c.sleep(backoff) {
						return
					}
					backoff = min(2*backoff, mirrorBackoffMax)
					continue
				}
				backoff = mirrorBackoffMin
			}
			if len(q) == 0 {
				break
			}
			// Send up to the next gap; a gap ends the session.
			n := 0
			for n < len(q) && !(q[n].fresh && mc.used) {
				n++
			}
			if n == 0 {
				mc.close()
				mc = nil
				continue
			}
			timeout := mirrorWriteTimeout
			if closed {
				timeout = mirrorCloseTimeout
			}
			if err := mc.send(q[:n], timeout); err != nil {
				c.m.warn("cannot write to mirror", err)
				c.m.Stats.ConnectErrors.Add(1)
				mc.close()
				mc = nil
				if closed {
					c.drop(q)
					return
				}
				c.down(q)
				q = nil
				break
			}
			for _, ch := range q[:n] {
				c.m.Stats.Bytes.Add(uint64(len(ch.b)))
				c.m.Stats.Messages.Add(uint64(ch.msgs))
			}
			q = q[n:]
		}
		if closed {
			return
		}
	}
}

// sleep waits d, or less when the tee closes; it reports whether the tee is still open.
func (c *mirrorConn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return !c.isClosed()
		case <-c.wake:
			if c.isClosed() {
				return false
			}
		}
	}
}

// dial logs in to the mirror; the tee's close cuts it short.
func (c *mirrorConn) dial() (*mirrorLink, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-c.wake:
				if c.isClosed() {
					cancel()
					return
				}
			}
		}
	}()
	p := c.m.Params
	p.Mirrors = nil
	s, err := Dial(ctx, &p)
	close(stop)
	<-done
	// What arrived during the login woke the goroutine above, not run: wake run again.
	c.signal()
	if err != nil {
		return nil, err
	}
	l := &mirrorLink{s: s, m: c.m, stmts: c.stmts, dead: make(chan struct{})}
	c.up()
	c.m.Stats.Connections.Add(1)
	go l.read()
	return l, nil
}

// mirrorLink is one logged-in connection to a mirror.
type mirrorLink struct {
	s     *ServerConn
	m     *Mirror
	used  bool // something was sent on it
	stmts *stmtLog
	dead  chan struct{}
	once  sync.Once
	rerr  error
}

// read reads and discards what the mirror answers, counting its errors, until the connection
// fails or is closed.
func (l *mirrorLink) read() {
	for {
		typ, size, err := l.s.R.Peek()
		if err == nil {
			if typ == wire.ErrorResponse {
				l.m.Stats.ServerErrors.Add(1)
			}
			err = l.s.R.Skip(size)
		}
		if err != nil {
			l.rerr = err
			close(l.dead)
			return
		}
	}
}

func (l *mirrorLink) isDead() bool {
	select {
	case <-l.dead:
		return true
	default:
		return false
	}
}

func (l *mirrorLink) err() error { return l.rerr }

func (l *mirrorLink) send(q []mirrorChunk, timeout time.Duration) error {
	_ = l.s.conn.SetWriteDeadline(time.Now().Add(timeout))
	if !l.used && q[0].fresh {
		// The session begins after a gap: the server has statements it was never sent.
		if b := l.stmts.replay(); b != nil {
			if _, err := l.s.W.Write(b); err != nil {
				return err
			}
		}
	}
	l.used = true
	for _, ch := range q {
		if _, err := l.s.W.Write(ch.b); err != nil {
			return err
		}
	}
	return l.s.W.Flush()
}

// close ends the connection: Terminate when it is usable, then the socket, which also ends read.
func (l *mirrorLink) close() {
	l.once.Do(func() {
		if l.isDead() {
			l.s.Broken = true
		}
		_ = l.s.Close()
		<-l.dead
		l.m.Stats.Connections.Add(-1)
	})
}
