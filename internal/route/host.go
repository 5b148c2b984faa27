package route

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicepg/sluice/plugin"
)

// Host runs plugins' own queries through the pools of whatever routing table is current.
type Host struct {
	Table func() *Table
}

var _ plugin.Host = Host{}

// Query runs sql on the primary of db's first shard as user (who must be a user of that pool).
func (h Host) Query(ctx context.Context, db, user, sql string, args ...*string) (*plugin.Rows, error) {
	tg := h.Table().Lookup(db, user)
	if tg == nil {
		return nil, fmt.Errorf("no pool for database %q and user %q", db, user)
	}
	srv, err := tg.Pick(0, Primary, nil)
	if err != nil {
		return nil, err
	}
	conn, err := srv.Pool.Checkout(ctx)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	cols, rows, tag, err := conn.QueryParams(sql, args)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	_ = conn.SetReadDeadline(time.Time{})
	srv.Pool.Release(conn)
	if err != nil {
		return nil, err
	}
	return &plugin.Rows{Columns: cols, Rows: rows, Tag: tag}, nil
}
