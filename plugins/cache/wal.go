package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// walListener bumps generations for every committed change in the WAL, through logical
// replication (pgoutput), so writes that never went through sluice invalidate too. It uses
// a temporary slot: changes made while it is not streaming are not replayed, so each time it
// (re)starts streaming it renews the epoch, and while it is not streaming the cache serves
// nothing (ready is false).
type walListener struct {
	dsn, publication, slot string
	st                     *store
	log                    *slog.Logger
	stats                  *counters

	ready  atomic.Bool
	events atomic.Int64
	lag    lagMeter
}

func newWALListener(dsn, publication, slot string, st *store, log *slog.Logger, stats *counters) *walListener {
	if slot == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		slot = "sluice_cache_" + hex.EncodeToString(b[:])
	}
	return &walListener{dsn: dsn, publication: publication, slot: slot, st: st, log: log, stats: stats}
}

// run streams until stop is closed, restarting after any error with a growing pause (at
// most 5 s).
func (w *walListener) run(stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.stream(ctx)
		w.ready.Store(false)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("cache: WAL listener stopped; restarting", "err", err)
		if time.Since(start) > 10*time.Second {
			pause = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
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

// stream runs one replication session.
func (w *walListener) stream(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgconn.Connect(cctx, replicationDSN(w.dsn))
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	ident := sys.SystemID + "/" + sys.DBName
	pub := quoteIdent(w.publication)
	res, err := conn.Exec(ctx, "SELECT 1 FROM pg_publication WHERE pubname = '"+strings.ReplaceAll(w.publication, "'", "''")+"'").ReadAll()
	if err != nil {
		return fmt.Errorf("look up publication %s: %w", w.publication, err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+pub+" FOR ALL TABLES").ReadAll(); err != nil {
			return fmt.Errorf("create publication %s: %w", w.publication, err)
		}
	}
	if _, err := pglogrepl.CreateReplicationSlot(ctx, conn, w.slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, Mode: pglogrepl.LogicalReplication}); err != nil {
		return fmt.Errorf("create slot %s: %w", w.slot, err)
	}
	if err := pglogrepl.StartReplication(ctx, conn, w.slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + strings.ReplaceAll(w.publication, "'", "''") + "'"},
	}); err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	// Changes committed before the slot existed were never seen: entries older than now
	// may be stale.
	w.st.bumpEpoch("WAL listener (re)started")
	w.lag.start(time.Now())
	w.ready.Store(true)
	w.log.Info("cache: WAL listener streaming", "slot", w.slot, "publication", w.publication)

	var pos pglogrepl.LSN
	changed := map[uint32]bool{}
	nextStatus := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(nextStatus) {
			if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: pos}); err != nil {
				return fmt.Errorf("status update: %w", err)
			}
			nextStatus = time.Now().Add(10 * time.Second)
		}
		rctx, cancel := context.WithDeadline(ctx, nextStatus)
		raw, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		var data []byte
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			data = m.Data
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("server: %s (SQLSTATE %s)", m.Message, m.Code)
		default:
			continue
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
			if err != nil {
				return err
			}
			if ka.ServerWALEnd > pos && len(changed) == 0 {
				pos = ka.ServerWALEnd
			}
			w.lag.server(ka.ServerWALEnd, time.Now())
			w.lag.handled(pos, time.Now())
			if ka.ReplyRequested {
				nextStatus = time.Time{}
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(data[1:])
			if err != nil {
				return err
			}
			w.lag.server(xld.ServerWALEnd, time.Now())
			msg, err := pglogrepl.Parse(xld.WALData)
			if err != nil {
				return fmt.Errorf("decode pgoutput: %w", err)
			}
			switch m := msg.(type) {
			case *pglogrepl.InsertMessage:
				changed[m.RelationID] = true
			case *pglogrepl.UpdateMessage:
				changed[m.RelationID] = true
			case *pglogrepl.DeleteMessage:
				changed[m.RelationID] = true
			case *pglogrepl.TruncateMessage:
				for _, r := range m.RelationIDs {
					changed[r] = true
				}
			case *pglogrepl.CommitMessage:
				if len(changed) > 0 {
					oids := make([]uint32, 0, len(changed))
					for o := range changed {
						oids = append(oids, o)
					}
					w.events.Add(int64(len(oids)))
					w.stats.bumps.Add(int64(len(oids)))
					w.st.bump(ident, oids)
					clear(changed)
				}
				pos = m.TransactionEndLSN
				w.lag.handled(pos, time.Now())
			}
		}
	}
}
