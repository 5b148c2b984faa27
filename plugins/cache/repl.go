package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The pieces the WAL listener and the row mirror share: each streams a permanent logical slot
// of its own, through one sluice at a time.

// errLocked says another sluice holds a stream's lock: it streams this slot.
var errLocked = errors.New("another sluice streams this slot")

// lockStream takes the session advisory lock that lets one sluice stream slot, on the
// replication connection conn: it is held as long as the connection, so a sluice that dies, or
// loses its connection, frees it. kind keeps the WAL listener's locks and the mirror's apart.
// It returns errLocked when another session holds the lock.
func lockStream(ctx context.Context, conn *pgconn.PgConn, kind, slot string) error {
	rows, err := simpleRows(ctx, conn, "SELECT pg_try_advisory_lock(hashtext("+quoteLiteral(kind)+"), hashtext("+quoteLiteral(slot)+"))::text")
	if err != nil {
		return fmt.Errorf("advisory lock: %w", err)
	}
	if rows[0][0] != "true" {
		return errLocked
	}
	return nil
}

// slotState is what pg_replication_slots says of a slot.
type slotState struct {
	exists    bool
	confirmed pglogrepl.LSN // the position the slot streams from
	// lost: the server removed WAL the slot still needed (max_slot_wal_keep_size); it cannot
	// stream any more.
	lost bool
}

// lookupSlot reads the state of slot, which must be a pgoutput slot of conn's database; key is
// the configuration key that names it, for the error when it is not.
func lookupSlot(ctx context.Context, conn *pgconn.PgConn, slot, key string) (slotState, error) {
	rows, err := simpleRows(ctx, conn, `SELECT coalesce(confirmed_flush_lsn::text, ''), (database = current_database() AND plugin = 'pgoutput')::text,
  (coalesce(wal_status, '') = 'lost')::text
FROM pg_replication_slots WHERE slot_name = `+quoteLiteral(slot))
	if err != nil {
		return slotState{}, fmt.Errorf("look up slot %s: %w", slot, err)
	}
	if len(rows) == 0 {
		return slotState{}, nil
	}
	if rows[0][1] != "true" {
		return slotState{}, fmt.Errorf("slot %s belongs to another database or plugin: name another (%s)", slot, key)
	}
	s := slotState{exists: true, lost: rows[0][2] == "true"}
	if s.confirmed, err = pglogrepl.ParseLSN(rows[0][0]); err != nil {
		return slotState{}, fmt.Errorf("slot %s: position %q: %w", slot, rows[0][0], err)
	}
	return s, nil
}

// receiveWAL waits until deadline for the next message of a replication stream. It returns a
// keepalive or a piece of WAL, or neither when the deadline passed first or the message was
// of another kind; an error from the server, or a broken connection, is an error.
func receiveWAL(ctx context.Context, conn *pgconn.PgConn, deadline time.Time) (*pglogrepl.PrimaryKeepaliveMessage, *pglogrepl.XLogData, error) {
	rctx, cancel := context.WithDeadline(ctx, deadline)
	raw, err := conn.ReceiveMessage(rctx)
	cancel()
	if err != nil {
		if pgconn.Timeout(err) && ctx.Err() == nil {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("receive: %w", err)
	}
	var data []byte
	switch msg := raw.(type) {
	case *pgproto3.CopyData:
		data = msg.Data
	case *pgproto3.ErrorResponse:
		return nil, nil, fmt.Errorf("server: %w", pgconn.ErrorResponseToPgError(msg))
	}
	if len(data) == 0 {
		return nil, nil, nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return nil, nil, fmt.Errorf("keepalive: %w", err)
		}
		return &ka, nil, nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return nil, nil, fmt.Errorf("xlog data: %w", err)
		}
		return nil, &xld, nil
	}
	return nil, nil, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
