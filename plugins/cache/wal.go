package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// walListener bumps generations for every committed change in the WAL, through logical
// replication (pgoutput) from a permanent slot, so writes that never went through sluice
// invalidate too.
//
// One sluice streams the slot at a time (lockStream); the others stand by and try to take it
// over every walRetry. The slot is told only positions whose changes are bumped in Redis, so
// a consumer that stops or dies leaves the rest in the slot, and the next one (this sluice
// again after a restart, or another) bumps them when it resumes. Whether some sluice consumes
// the WAL, caught up, is the heartbeat in Redis (walBeat): every sluice, the consumer
// included, serves only while it says so.
type walListener struct {
	dsn, publication, slot string
	st                     *store
	log                    *slog.Logger
	stats                  *counters

	state  atomic.Value // string: what the listener does (walState...)
	events atomic.Int64
	lag    lagMeter
}

// walRetry is how often a standby tries to take the slot over.
const walRetry = time.Second

// The listener's states, as SHOW CACHE shows them.
const (
	walStarting     = "starting"
	walStreaming    = "streaming"
	walCatchingUp   = "catching up"
	walBehind       = "behind"
	walStandby      = "standby: another sluice streams"
	walReconnecting = "reconnecting"
)

func newWALListener(dsn, publication, slot string, st *store, log *slog.Logger, stats *counters) *walListener {
	w := &walListener{dsn: dsn, publication: publication, slot: slot, st: st, log: log, stats: stats}
	w.state.Store(walStarting)
	return w
}

// defaultWALSlot names the WAL listener's slot after what the sluices that share it share: the
// Redis they bump (its addresses and the prefix) and the database they read (wal_dsn's). Two
// deployments with different Redis get different slots, each consumed once.
func defaultWALSlot(prefix string, redis []string, dsn string) string {
	db := ""
	if cfg, err := pgconn.ParseConfig(dsn); err == nil {
		db = cfg.Database
	}
	addrs := slices.Clone(redis)
	slices.Sort(addrs)
	h := sha256.Sum256([]byte("sluice-wal-slot\x00" + prefix + "\x00" + strings.Join(addrs, "\x00") + "\x00\x00" + db))
	return "sluice_cache_" + hex.EncodeToString(h[:8])
}

// walHeartbeatKey is the Redis key of the heartbeat of slot's consumer.
func walHeartbeatKey(prefix, slot string) string { return prefix + "wal:" + slot }

// run keeps a session going until stop is closed: standing by while another sluice streams,
// restarting after any other error with a growing pause (at most 5 s).
func (w *walListener) run(stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := recovered(func() error { return w.session(ctx) })
		if ctx.Err() != nil {
			return
		}
		wait := walRetry
		if errors.Is(err, errLocked) {
			if w.state.Swap(walStandby) != walStandby {
				w.log.Info("cache: WAL listener standing by: another sluice streams slot " + w.slot)
			}
		} else {
			w.state.Store(walReconnecting)
			w.log.Warn("cache: WAL listener stopped; restarting", "err", err)
			if time.Since(start) > 10*time.Second {
				pause = 100 * time.Millisecond
			}
			wait, pause = pause, min(2*pause, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func replicationDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "replication=database"
	}
	return dsn + " replication=database"
}

// session takes the slot's lock, makes the slot if needed, and streams from its confirmed
// position until an error.
func (w *walListener) session(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgconn.Connect(cctx, replicationDSN(w.dsn))
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if err := lockStream(ctx, conn, "sluice cache", w.slot); err != nil {
		return err
	}
	// Claim the heartbeat: from now on a consumer that lost the slot cannot write it, and
	// nobody serves until this session has caught up.
	token := newLeaseToken()
	if err := w.writeBeat(ctx, walBeat{token: token}, true); err != nil {
		return err
	}
	defer func() {
		ectx, cancel := context.WithTimeout(context.Background(), max(w.st.timeout, 100*time.Millisecond))
		_ = w.st.endWAL(ectx, token)
		cancel()
	}()
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	ident := sys.SystemID + "/" + sys.DBName
	start, err := w.prepareSlot(ctx, conn)
	if err != nil {
		return err
	}
	// target: every transaction committed before now (before this sluice took the slot, so
	// perhaps not bumped by the last consumer) ends before it. The transaction that reads it
	// commits a record after it, flushed at once, so the stream does get past it.
	rows, err := simpleRows(ctx, conn, "SET synchronous_commit = local; SELECT pg_current_wal_insert_lsn()::text, txid_current()::text")
	if err != nil {
		return fmt.Errorf("read the server's position: %w", err)
	}
	target, err := pglogrepl.ParseLSN(rows[0][0])
	if err != nil {
		return fmt.Errorf("read the server's position %q: %w", rows[0][0], err)
	}
	if err := pglogrepl.StartReplication(ctx, conn, w.slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names " + quoteLiteral(w.publication)},
	}); err != nil {
		return fmt.Errorf("start replication on slot %s: %w", w.slot, err)
	}
	now := time.Now()
	w.lag.start(now)
	w.lag.server(target, now)
	w.lag.handled(start, now)
	w.state.Store(walCatchingUp)
	w.log.Info("cache: WAL listener streaming", "slot", w.slot, "from", start, "publication", w.publication)
	return w.stream(ctx, conn, ident, token, start, target)
}

// prepareSlot makes the publication and the slot when missing, and returns the position to
// stream from. A slot made anew (or made again: lost, or older than the publication) has not
// seen what was committed before it, so the epoch is renewed, which puts every entry out of
// reach.
func (w *walListener) prepareSlot(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	pubMade, err := w.ensurePublication(ctx, conn)
	if err != nil {
		return 0, err
	}
	slot, err := lookupSlot(ctx, conn, w.slot, "wal_slot")
	if err != nil {
		return 0, err
	}
	why := "no slot " + w.slot
	switch {
	case slot.exists && !slot.lost && !pubMade:
		return slot.confirmed, nil
	case slot.lost:
		why = "the server removed WAL the slot needed (max_slot_wal_keep_size)"
	case slot.exists:
		why = "the publication was made after the slot"
	}
	if slot.exists {
		// Wait: the walsender of a sluice that was just killed may not have noticed yet.
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := pglogrepl.DropReplicationSlot(dctx, conn, w.slot, pglogrepl.DropReplicationSlotOptions{Wait: true})
		cancel()
		if err != nil {
			return 0, fmt.Errorf("drop slot %s: %w", w.slot, err)
		}
	}
	made, err := pglogrepl.CreateReplicationSlot(ctx, conn, w.slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return 0, fmt.Errorf("create slot %s: %w", w.slot, err)
	}
	start, err := pglogrepl.ParseLSN(made.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("slot %s: consistent point %q: %w", w.slot, made.ConsistentPoint, err)
	}
	// After the slot: a change committed before it was never bumped, one committed after it
	// is in the slot.
	w.st.bumpEpoch("WAL slot made")
	w.log.Info("cache: WAL listener made its slot; the epoch is renewed", "slot", w.slot, "why", why)
	return start, nil
}

// ensurePublication makes the publication FOR ALL TABLES when missing, and reports whether it
// did.
func (w *walListener) ensurePublication(ctx context.Context, conn *pgconn.PgConn) (bool, error) {
	rows, err := simpleRows(ctx, conn, "SELECT 1 FROM pg_publication WHERE pubname = "+quoteLiteral(w.publication))
	if err != nil {
		return false, fmt.Errorf("look up publication %s: %w", w.publication, err)
	}
	if len(rows) > 0 {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+quoteIdent(w.publication)+" FOR ALL TABLES").ReadAll(); err != nil {
		return false, fmt.Errorf("create publication %s: %w", w.publication, err)
	}
	return true, nil
}

// stream bumps each committed transaction's tables and tells the server the position after
// it, from pos until an error. Every walTick it asks the server for a reply (a keepalive,
// which says the connection is alive and how far the server has sent) and writes the
// heartbeat: caught up once past target, while the server answers and the lag is small.
func (w *walListener) stream(ctx context.Context, conn *pgconn.PgConn, ident, token string, pos, target pglogrepl.LSN) error {
	changed := map[uint32]bool{}      // tables changed, not pinned to keys
	pins := map[uint32][]string{}     // tables changed only by pinned changes, with their keys
	keyCols := map[uint32]walKeyCol{} // from each relation's RelationMessage
	inTxn := false
	heard := time.Now()
	var next time.Time
	defer func() {
		// Stopping: tell the server what is bumped, so that the next session replays less.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = pglogrepl.SendStandbyStatusUpdate(sctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: pos})
		cancel()
	}()
	for {
		if now := time.Now(); !now.Before(next) {
			if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
				WALWritePosition: pos, ReplyRequested: true}); err != nil {
				return fmt.Errorf("status update: %w", err)
			}
			if err := w.beat(ctx, token, pos >= target, now.Sub(heard) < walHeard); err != nil {
				return err
			}
			next = now.Add(walTick)
		}
		ka, xld, err := receiveWAL(ctx, conn, next)
		switch {
		case err != nil:
			return err
		case ka != nil:
			heard = time.Now()
			if !inTxn && ka.ServerWALEnd > pos {
				// Nothing open: every transaction that ends before it has arrived.
				pos = ka.ServerWALEnd
			}
			w.lag.server(ka.ServerWALEnd, heard)
			w.lag.handled(pos, heard)
		case xld != nil:
			heard = time.Now()
			w.lag.server(xld.ServerWALEnd, heard)
			msg, err := pglogrepl.Parse(xld.WALData)
			if err != nil {
				return fmt.Errorf("decode pgoutput: %w", err)
			}
			switch m := msg.(type) {
			case *pglogrepl.BeginMessage:
				inTxn = true
			case *pglogrepl.RelationMessage:
				keyCols[m.RelationID] = walKeyColOf(m)
			case *pglogrepl.InsertMessage:
				walPin(changed, pins, m.RelationID, keyCols, m.Tuple)
			case *pglogrepl.UpdateMessage:
				if m.OldTuple != nil {
					walPin(changed, pins, m.RelationID, keyCols, m.OldTuple)
				}
				walPin(changed, pins, m.RelationID, keyCols, m.NewTuple)
			case *pglogrepl.DeleteMessage:
				walPin(changed, pins, m.RelationID, keyCols, m.OldTuple)
			case *pglogrepl.TruncateMessage:
				for _, r := range m.RelationIDs {
					changed[r] = true
				}
			case *pglogrepl.CommitMessage:
				if len(changed) > 0 || len(pins) > 0 {
					oids := make([]uint32, 0, len(changed))
					for o := range changed {
						oids = append(oids, o)
						delete(pins, o)
					}
					for o, ks := range pins {
						pins[o] = sortedKeys(ks)
					}
					// Not bumped, not confirmed: the next session replays it.
					if err := w.st.bumpKeys(ident, oids, pins); err != nil {
						return err
					}
					w.events.Add(int64(len(oids) + len(pins)))
					w.stats.bumps.Add(int64(len(oids) + len(pins)))
					clear(changed)
					clear(pins)
				}
				inTxn = false
				pos = max(pos, m.TransactionEndLSN)
				w.lag.handled(pos, time.Now())
			}
		}
	}
}

// beat writes the heartbeat: caught up when the stream is past the target (replayed), the
// server answered lately (fresh), the lag is small and this sluice's store is clean (a dirty
// one has an invalidation it could not write, and renews the epoch first).
func (w *walListener) beat(ctx context.Context, token string, replayed, fresh bool) error {
	bytes, behind := w.lag.lag(time.Now())
	clean := !w.st.dirty.Load()
	b := walBeat{token: token, caughtUp: replayed && fresh && clean && behind < walMaxLag, lagBytes: bytes, lag: behind}
	state, why := walStreaming, ""
	switch {
	case !replayed:
		state, why = walCatchingUp, "replaying what was committed before it took the slot"
	case !fresh:
		state, why = walBehind, "the server has not answered for "+walHeard.String()
	case !clean:
		state, why = walBehind, "an invalidation was not written to Redis"
	case !b.caughtUp:
		state, why = walBehind, "behind the server's WAL for "+behind.Round(time.Millisecond).String()
	}
	if old := w.state.Swap(state); old != state && (old == walStreaming || state == walStreaming) {
		if state == walStreaming {
			w.log.Info("cache: WAL listener caught up: entries are served", "slot", w.slot)
		} else {
			w.log.Warn("cache: WAL listener not caught up: no entry is served", "slot", w.slot, "why", why, "lag_bytes", bytes)
		}
	}
	err := w.writeBeat(ctx, b, false)
	if errors.Is(err, errWALTakenOver) {
		return err
	}
	// Any other error is Redis's: the heartbeat expires, and nobody serves until it is back.
	return nil
}

func (w *walListener) writeBeat(ctx context.Context, b walBeat, claim bool) error {
	bctx, cancel := context.WithTimeout(ctx, max(w.st.timeout, 100*time.Millisecond))
	defer cancel()
	return w.st.beatWAL(bctx, b, claim)
}

// walKeyCol is where a relation's primary key is in the tuples the WAL sends, when the
// relation's changes can be pinned to keys (rowkeys.go): its replica identity is the default
// (the primary key: another index's columns would name other counters) and is one column of
// a type the cache names. col is -1 otherwise.
type walKeyCol struct {
	col int
	typ pkType
}

func walKeyColOf(m *pglogrepl.RelationMessage) walKeyCol {
	k := walKeyCol{col: -1}
	if m.ReplicaIdentity != 'd' {
		return k
	}
	for i, c := range m.Columns {
		if c.Flags&1 == 0 {
			continue
		}
		if k.col >= 0 {
			return walKeyCol{col: -1} // a key of several columns
		}
		k = walKeyCol{col: i, typ: pkTypeOf(c.DataType)}
	}
	if k.typ == pkNone {
		k.col = -1
	}
	return k
}

// walPin records a change of relation rel whose tuple (new, old or key) is t: pinned to t's
// key when rel's key can be named and t holds it as text, else for the whole table (an
// unchanged TOASTed or NULL key, an unknown relation, more than maxPinnedKeys keys).
func walPin(changed map[uint32]bool, pins map[uint32][]string, rel uint32, keyCols map[uint32]walKeyCol, t *pglogrepl.TupleData) {
	if changed[rel] {
		return
	}
	if kc, ok := keyCols[rel]; ok && kc.col >= 0 && t != nil && kc.col < len(t.Columns) {
		if c := t.Columns[kc.col]; c.DataType == pglogrepl.TupleDataTypeText {
			if k, ok := canonKey(kc.typ, c.Data); ok && len(pins[rel]) < maxPinnedKeys {
				pins[rel] = append(pins[rel], k)
				return
			}
		}
	}
	changed[rel] = true
	delete(pins, rel)
}
