package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// mirrorTick is how often an idle stream checks that Redis still holds the mirror and moves
	// its position up to the server's.
	mirrorTick = time.Second
	// statusEvery bounds the time between two standby status updates (wal_sender_timeout is
	// 60 s by default).
	statusEvery = 10 * time.Second
	// applyTimeout bounds one transaction's reads and script in Redis.
	applyTimeout = 30 * time.Second
)

// streamer is one replication session's stream: it applies each transaction to Redis, with
// the position it ends at, before it tells Postgres that position.
type streamer struct {
	m      *mirror
	conn   *pgconn.PgConn
	r      *mirrorRedis
	sync   string
	tables map[uint32]*mirrorTable

	applied    pglogrepl.LSN // in Redis (the marker's lsn)
	acked      pglogrepl.LSN // told to Postgres
	idleEnd    pglogrepl.LSN // the server's position in a keepalive while no transaction was open
	lastStatus time.Time
	lastTick   time.Time
	reply      bool // the server asked for a status update
}

// stream streams from the marker's position until an error.
func (m *mirror) stream(ctx context.Context, conn *pgconn.PgConn, r *mirrorRedis, tables []*mirrorTable, mk marker) error {
	start, err := pglogrepl.ParseLSN(mk["lsn"])
	if err != nil {
		return fmt.Errorf("mirror: marker position %q: %w", mk["lsn"], err)
	}
	s := &streamer{m: m, conn: conn, r: r, sync: mk["sync"], tables: map[uint32]*mirrorTable{},
		applied: start, acked: start, lastStatus: time.Now(), lastTick: time.Now()}
	for _, t := range tables {
		s.tables[t.oid] = t
	}
	// Postgres starts at start (the marker's position) or at the slot's confirmed position,
	// whichever is later; confirmed is never past the marker (it is told only what Redis has).
	// A transaction it sends that ends at or before the marker is skipped (see commit).
	if err := pglogrepl.StartReplication(ctx, conn, m.slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names " + quoteLiteral(m.publication)},
	}); err != nil {
		return fmt.Errorf("mirror: start replication on slot %s: %w", m.slot, err)
	}
	m.streamed = true
	m.stats.state.Store("streaming")
	m.stats.applied.Store(uint64(start))
	m.stats.lag.start(time.Now())
	m.stats.lag.handled(start, time.Now())
	m.log.Info("cache: mirror streaming", "slot", m.slot, "from", start)
	var tx *txnBuf
	for {
		if tx == nil && time.Since(s.lastTick) >= mirrorTick {
			if err := s.tick(ctx); err != nil {
				return err
			}
		}
		if err := s.status(ctx, false); err != nil {
			return err
		}
		deadline := s.lastTick.Add(mirrorTick)
		if tx != nil || time.Until(deadline) < 10*time.Millisecond {
			deadline = time.Now().Add(mirrorTick) // no tick inside a transaction
		}
		ka, xld, err := receiveWAL(ctx, conn, deadline)
		switch {
		case err != nil:
			return fmt.Errorf("mirror: %w", err)
		case ka != nil:
			if tx == nil && ka.ServerWALEnd > s.idleEnd {
				s.idleEnd = ka.ServerWALEnd
			}
			m.stats.lag.server(ka.ServerWALEnd, time.Now())
			if tx == nil {
				// Nothing open: all the server has sent is in Redis or holds nothing for it.
				m.stats.lag.handled(max(s.applied, s.idleEnd), time.Now())
			}
			s.reply = s.reply || ka.ReplyRequested
		case xld != nil:
			m.stats.lag.server(xld.ServerWALEnd, time.Now())
			if tx, err = s.message(ctx, tx, xld.WALData); err != nil {
				return err
			}
		}
	}
}

// message handles one pgoutput message; tx is the open transaction (nil between transactions).
func (s *streamer) message(ctx context.Context, tx *txnBuf, data []byte) (*txnBuf, error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return tx, fmt.Errorf("mirror: decode pgoutput: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		if t := s.tables[m.RelationID]; t != nil {
			return tx, t.bind(m)
		}
	case *pglogrepl.BeginMessage:
		return newTxnBuf(), nil
	case *pglogrepl.InsertMessage:
		t, err := s.table(tx, m.RelationID)
		if t == nil || err != nil {
			return tx, err
		}
		return tx, tx.insert(t, m.Tuple)
	case *pglogrepl.UpdateMessage:
		t, err := s.table(tx, m.RelationID)
		if t == nil || err != nil {
			return tx, err
		}
		return tx, tx.update(t, m)
	case *pglogrepl.DeleteMessage:
		t, err := s.table(tx, m.RelationID)
		if t == nil || err != nil {
			return tx, err
		}
		return tx, tx.delete(t, m)
	case *pglogrepl.TruncateMessage:
		for _, oid := range m.RelationIDs {
			t, err := s.table(tx, oid)
			if err != nil {
				return tx, err
			}
			if t != nil {
				tx.truncate(t)
			}
		}
	case *pglogrepl.CommitMessage:
		if tx == nil {
			return nil, fmt.Errorf("mirror: a commit without a transaction")
		}
		return nil, s.commit(ctx, tx, m)
	}
	return tx, nil
}

// table returns the mirrored table a change is for, or nil when it is not mirrored.
func (s *streamer) table(tx *txnBuf, oid uint32) (*mirrorTable, error) {
	t := s.tables[oid]
	switch {
	case t == nil:
		return nil, nil
	case t.colAt == nil:
		return nil, fmt.Errorf("mirror: a change to %s before its relation message", t.name)
	case tx == nil:
		return nil, fmt.Errorf("mirror: a change to %s outside a transaction", t.name)
	}
	return t, nil
}

// commit applies a transaction to Redis, unless Redis has it already: after a restart Postgres
// resends what it was not told about, and the marker says what was applied.
func (s *streamer) commit(ctx context.Context, tx *txnBuf, c *pglogrepl.CommitMessage) error {
	end := c.TransactionEndLSN
	if end <= s.applied {
		return nil
	}
	rows, truncated := tx.needs()
	err := s.retry(ctx, func(ctx context.Context) error {
		pre, err := s.r.preState(ctx, rows, truncated)
		if err == nil {
			var ops []string
			if ops, err = tx.commands(pre); err == nil {
				return s.r.apply(ctx, s.sync, s.applied.String(), end.String(), nil, ops)
			}
		}
		if errors.Is(err, errMirrorInconsistent) {
			// A Redis that restarted empty lacks the row too: say so when that is why. Only a
			// marker found intact makes the row's absence an inconsistency; a check that cannot
			// tell (Redis unreachable, as it often is while it restarts) fails this try, which
			// retry repeats once Redis answers.
			if check := s.r.apply(ctx, s.sync, s.applied.String(), s.applied.String(), nil, nil); check != nil {
				return check
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	s.applied = end
	s.m.stats.applied.Store(uint64(end))
	s.m.stats.lastCommit.Store(c.CommitTime.UnixNano())
	s.m.stats.txns.Add(1)
	s.m.stats.lag.handled(end, time.Now())
	for _, op := range tx.ops {
		if ts := s.m.stats.tables[op.table.name]; ts != nil {
			ts.changes.Add(1)
			ts.lastChange.Store(c.CommitTime.UnixNano())
		}
	}
	return nil
}

// tick runs while no transaction is open: it checks that Redis still holds the mirror (so a
// Redis that restarted empty is reloaded at once, not at the next change), and moves the
// marker up to the server's idle position, so the slot need not keep WAL that holds nothing
// for the mirror.
func (s *streamer) tick(ctx context.Context) error {
	next := max(s.applied, s.idleEnd)
	err := s.retry(ctx, func(ctx context.Context) error {
		return s.r.apply(ctx, s.sync, s.applied.String(), next.String(), nil, nil)
	})
	if err != nil {
		return err
	}
	s.applied = next
	s.m.stats.applied.Store(uint64(next))
	s.lastTick = time.Now()
	return nil
}

// status tells Postgres the position Redis holds: within a second of a change, at least every
// statusEvery, and when asked. force sends it regardless.
func (s *streamer) status(ctx context.Context, force bool) error {
	since := time.Since(s.lastStatus)
	if !force && !s.reply && since < statusEvery && (s.acked == s.applied || since < mirrorTick) {
		return nil
	}
	if err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: s.applied}); err != nil {
		return fmt.Errorf("mirror: status update: %w", err)
	}
	s.acked, s.lastStatus, s.reply = s.applied, time.Now(), false
	return nil
}

// retry runs f until it succeeds or fails for a reason waiting cannot fix. While Redis is
// unreachable nothing is acknowledged and nothing is skipped: the stream waits here, and the
// slot keeps every change (status updates at the old position keep the connection alive).
func (s *streamer) retry(ctx context.Context, f func(context.Context) error) error {
	pause := 100 * time.Millisecond
	for logged := false; ; {
		actx, cancel := context.WithTimeout(ctx, applyTimeout)
		err := f(actx)
		cancel()
		switch {
		case err == nil:
			if logged {
				s.m.log.Info("cache: mirror: Redis is back")
				s.m.stats.state.Store("streaming")
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errMirrorLost), errors.Is(err, errMirrorInconsistent):
			return err
		}
		if !logged {
			s.m.log.Warn("cache: mirror: Redis unavailable; waiting, nothing acknowledged", "err", err)
			s.m.stats.state.Store("waiting for Redis")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
		if err := s.status(ctx, false); err != nil {
			return err
		}
	}
}
