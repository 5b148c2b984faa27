package cache

import (
	"context"
	"sync/atomic"
	"time"
)

// sharedDeadline hands out contexts that expire about d from now, one per slice of d/10 shared
// by every lookup that starts in it: a hit served from the client-side cache makes no Redis call,
// and a context and timer of its own cost it about 3 % of its CPU. A lookup gets between 0.9 d
// and d.
type sharedDeadline struct {
	d   time.Duration
	cur atomic.Pointer[deadlineSlice]
}

type deadlineSlice struct {
	ctx     context.Context
	cancel  context.CancelFunc // never called before the deadline: others may still use ctx
	renewAt int64              // unix nanoseconds after which a lookup gets a new slice
}

// context returns a context that ends no sooner than 0.9 d after now (unix nanoseconds). Two
// lookups racing at a renewal may each make one; both are valid.
func (s *sharedDeadline) context(now int64) context.Context {
	if c := s.cur.Load(); c != nil && now < c.renewAt {
		return c.ctx
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, now).Add(s.d))
	s.cur.Store(&deadlineSlice{ctx: ctx, cancel: cancel, renewAt: now + int64(s.d/10)})
	return ctx
}
