package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// loadBatch is how many rows one apply script writes while loading a snapshot.
const loadBatch = 500

// loadAttempts bounds the snapshots one load reads when TRUNCATEs keep landing between a slot's
// creation and the read of its snapshot (see errTableRewritten).
const loadAttempts = 5

// errTableRewritten says a mirrored table got new storage (TRUNCATE, or ALTER TABLE rewriting
// it) after the slot's snapshot was taken and before the load locked it. Such commands are not
// MVCC-safe: the snapshot then reads the new storage (empty, its new rows invisible), not the
// rows it should see, while the stream starts before the change and updates those rows. The
// read is worthless; a new slot and snapshot are needed.
var errTableRewritten = errors.New("mirror: a table was truncated or rewritten while its snapshot was being read")

// load replaces the mirror in Redis with the tables as they are now, and returns the marker to
// stream on from. The slot is made anew with an exported snapshot: the rows read in that snapshot
// and the changes the slot streams after it are exactly all changes, none missing, none twice.
// Until the last step marks the load complete, a crash or a Redis restart leaves a marker that
// says to load again.
func (m *mirror) load(ctx context.Context, conn *pgconn.PgConn, r *mirrorRedis, tables []*mirrorTable, slotExists bool) (marker, error) {
	for attempt := 1; ; attempt++ {
		mk, err := m.loadSnapshot(ctx, conn, r, tables, slotExists)
		if !errors.Is(err, errTableRewritten) || attempt == loadAttempts {
			return mk, err
		}
		m.log.Info("cache: mirror reading a new snapshot", "why", err.Error(), "slot", m.slot)
		slotExists = true // this attempt made it
	}
}

// loadSnapshot is one attempt of load: a new slot, and its snapshot read into Redis.
func (m *mirror) loadSnapshot(ctx context.Context, conn *pgconn.PgConn, r *mirrorRedis, tables []*mirrorTable, slotExists bool) (marker, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	sync := hex.EncodeToString(b[:])
	if err := r.startLoading(ctx, sync); err != nil {
		return nil, err
	}
	if slotExists {
		// WAIT: the walsender of a sluice that was just killed may not have noticed yet.
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := pglogrepl.DropReplicationSlot(dctx, conn, m.slot, pglogrepl.DropReplicationSlotOptions{Wait: true})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("mirror: drop slot %s: %w", m.slot, err)
		}
	}
	for _, t := range tables {
		if err := r.clear(ctx, t.ns); err != nil {
			return nil, err
		}
	}
	slot, err := pglogrepl.CreateReplicationSlot(ctx, conn, m.slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return nil, fmt.Errorf("mirror: create slot %s: %w", m.slot, err)
	}
	start, err := pglogrepl.ParseLSN(slot.ConsistentPoint)
	if err != nil {
		return nil, fmt.Errorf("mirror: slot %s: consistent point %q: %w", m.slot, slot.ConsistentPoint, err)
	}
	if m.slotMade != nil {
		m.slotMade()
	}
	// The snapshot lives as long as the replication connection runs no other command: read it
	// on a second connection now.
	sc, err := m.connect(ctx, false)
	if err != nil {
		return nil, err
	}
	defer sc.Close(context.Background())
	if _, err := sc.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT "+
		quoteLiteral(slot.SnapshotName)).ReadAll(); err != nil {
		return nil, fmt.Errorf("mirror: use snapshot %s: %w", slot.SnapshotName, err)
	}
	if err := lockUnchanged(ctx, sc, tables); err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := loadTable(ctx, sc, r, sync, t); err != nil {
			return nil, err
		}
	}
	if _, err := sc.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		return nil, fmt.Errorf("mirror: end the snapshot's transaction: %w", err)
	}
	mk := marker{"sync": sync, "state": "ready", "lsn": start.String(), "config": m.config,
		"slot": m.slot, "loaded_at": time.Now().UTC().Format(time.RFC3339)}
	for _, t := range tables {
		mk["schema:"+t.name] = t.signature
	}
	fields := map[string]string{}
	for k, v := range mk {
		if k != "sync" && k != "lsn" {
			fields[k] = v
		}
	}
	if err := r.apply(ctx, sync, "-", start.String(), fields, nil); err != nil {
		return nil, err
	}
	m.log.Info("cache: mirror loaded", "slot", m.slot, "lsn", start)
	return mk, nil
}

// lockUnchanged locks the tables against TRUNCATE and rewrites until the snapshot's transaction
// on sc ends, then checks that none got new storage between the snapshot and the lock: the
// snapshot's view of pg_class (MVCC, as of the slot's consistent point) must name the storage the
// table has now (pg_relation_filenode reads the catalog as it is). A TRUNCATE that committed
// before the consistent point is in both; one after it, and before the lock, makes them differ
// (errTableRewritten). LOCK takes no snapshot, so it may follow SET TRANSACTION SNAPSHOT.
func lockUnchanged(ctx context.Context, sc *pgconn.PgConn, tables []*mirrorTable) error {
	names := make([]string, len(tables))
	oids := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.sqlName
		oids[i] = fmt.Sprint(t.oid)
	}
	if _, err := sc.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN ACCESS SHARE MODE").ReadAll(); err != nil {
		return fmt.Errorf("mirror: lock the mirrored tables: %w", err)
	}
	rows, err := simpleRows(ctx, sc, `SELECT c.oid::regclass::text FROM pg_class c
WHERE c.oid IN (`+strings.Join(oids, ", ")+`) AND c.relfilenode IS DISTINCT FROM pg_relation_filenode(c.oid) ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("mirror: check the mirrored tables' storage: %w", err)
	}
	if len(rows) > 0 {
		var changed []string
		for _, r := range rows {
			changed = append(changed, r[0])
		}
		return fmt.Errorf("%w: %s", errTableRewritten, strings.Join(changed, ", "))
	}
	return nil
}

// loadTable writes every row of t, as the snapshot sees it, into Redis.
func loadTable(ctx context.Context, sc *pgconn.PgConn, r *mirrorRedis, sync string, t *mirrorTable) error {
	cols := make([]string, len(t.cols))
	keyIdx := make([]int, len(t.keyCols))
	for i, c := range t.cols {
		cols[i] = quoteIdent(c)
	}
	for i, k := range t.keyCols {
		keyIdx[i] = slices.Index(t.cols, k)
	}
	var ops []string
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		err := r.apply(ctx, sync, "-", "-", nil, ops)
		ops, n = ops[:0], 0
		return err
	}
	mrr := sc.Exec(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+t.sqlName)
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		for rr.NextRow() {
			cells := make([]cell, len(cols))
			for i, v := range rr.Values() {
				if v == nil {
					cells[i] = cell{null: true}
				} else {
					cells[i] = cell{text: string(v)}
				}
			}
			keyVals := make([]cell, len(keyIdx))
			for i, j := range keyIdx {
				keyVals[i] = cells[j]
			}
			a, err := writeArgs(rowOp{kind: opWrite, table: t, key: t.ns + keyText(keyVals), cells: cells}, false, preState{})
			if err != nil {
				return err
			}
			ops = append(ops, a...)
			if n++; n == loadBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if _, err := rr.Close(); err != nil {
			return fmt.Errorf("mirror: read %s: %w", t.name, err)
		}
	}
	if err := mrr.Close(); err != nil {
		return fmt.Errorf("mirror: read %s: %w", t.name, err)
	}
	return flush()
}
