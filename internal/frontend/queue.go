package frontend

import (
	"sync/atomic"

	"github.com/sluicepg/sluice/internal/classify"
)

// entryKind says what reply a message sent to the server (or answered by sluice) expects.
type entryKind uint8

const (
	kParse        entryKind = iota // client's Parse, sent: forward ParseComplete
	kParseSwallow                  // Parse sluice injected before a Bind or Describe: drop its ParseComplete
	kParseSynth                    // client's Parse of a statement the server has: answer ParseComplete
	kBind
	kDescribe
	kExecute
	kClose
	kCloseSwallow // Close of a statement evicted from the server's cache, or renewed: drop its CloseComplete
	kCloseSynth   // client's Close of a named statement: answer CloseComplete
	kSync
	kQuery
	kFunc
	kErrorSynth   // an error sluice raised inside a batch: send msg
	kRawSynth     // replies sluice gives itself (a plugin's answer, a statement across shards): send msg
	kAbortSwallow // failing Parse sluice sent so the server skips to Sync: drop its ErrorResponse
	// kParseDup is a client's Parse of a name it already has, sent to the server under the
	// server name of the client's statement, which the server has: Postgres checks the text
	// (syntax, an aborted transaction, unknown tables) before the name, so the server fails it
	// with the error Postgres would give, 42P05 last. The error names the client's name.
	kParseDup
	// kRestore is the Query sluice sent behind a client's RESET to give back the client's
	// startup settings (restore.go): its replies are dropped but ParameterStatus and its
	// ReadyForQuery, which stands for the client's Query's, dropped in turn.
	kRestore
)

// entry is one outstanding reply, in the order the client will see replies.
type entry struct {
	kind entryKind
	// name is the server statement name, for Parse and Close entries and for the Bind and
	// Describe of a named statement, in transaction mode.
	name string
	// client is the client's statement name, for the client's own Parse, and for the Bind and
	// Describe of a named statement: errors that name the server statement name the client's.
	client string
	// renew, on a Parse, says a Close of the same name went just before it: a client's Parse
	// of a statement the server had, prepared again (see parseNamed).
	renew bool
	// kept, on a Parse, says the server has the statement and is sent the Parse alone, in a
	// failed transaction, to fail as the client's does (see prepareLocked): the statement
	// stays whatever the reply.
	kept bool
	// retry, on a Close and a Parse that prepare a statement again, says the statement's Parse
	// in an earlier batch was still unanswered when they were sent: whether the server has the
	// statement was known only once that batch ended, so their being skipped changes nothing
	// and their ParseComplete means the server has it.
	retry bool
	msg   []byte // for kErrorSynth and kRawSynth
	// capture is a plugin's Action.Capture for the statement this entry's reply belongs to
	// (kQuery, kDescribe or kExecute).
	capture *captureReq
	// desc, on a Describe of a statement, is the client's name for it ("" unnamed) with a
	// leading 'S': its row description is kept for captures (capture.go).
	desc string
	// sets, on a Query or an Execute, are its SET and RESET statements still to complete, in
	// order (settings.go).
	sets []classify.Setting
	// copyGen, on a Sync, a Query or an Execute, is the number of CopyDone and CopyFail
	// messages the client had sent before it: a Sync sent after the Query or Execute that
	// starts a COPY and before the COPY's end reaches the server inside the COPY, which ignores
	// it (see copyInStartedLocked).
	copyGen uint64
	// seq, on a client's Parse of the unnamed statement (transaction mode), is its unnamedSeq;
	// on a Parse sluice sends again for the client's unnamed statement, and on a Close of the
	// unnamed statement (dropsUnnamed), the unnamedSeq of the statement the client had then.
	seq uint64
	// dropsUnnamed, on a Close of the unnamed statement (transaction mode), says the reader
	// counted the client's unnamed statement as gone when it sent it; dropped is what
	// unnamedDropped was before. An error before the Close makes the server skip it, and the
	// client keeps the statement (serverErrorLocked).
	dropsUnnamed bool
	dropped      uint64
	// dropsAll, on a Query or the Bind of a statement (transaction mode), says its text may
	// hold a DEALLOCATE ALL or a DISCARD ALL, which drops the client's statements when it
	// runs (mayDropStatements).
	dropsAll bool
	// hooked, on a request's end (Query, Sync, FunctionCall), is queue.hooked when it was queued.
	hooked uint64
	// endsBatch, on a Query, says extended-protocol messages went before it without a Sync:
	// Postgres ends their implicit transaction and portals at the Query, as a Sync would,
	// unless an error among them makes it skip the Query too (serverErrorLocked).
	endsBatch bool
	// closed, on a client's Close of its named statement (kCloseSynth, with client), is the
	// statement: a server error before the Close skips it, and the statement is the client's
	// again.
	closed *statement
	// stmt, on a client's Parse of a named statement, is the statement it makes: one whose
	// Parse the server skipped is given back by no skipped Close (reopenLocked).
	stmt *statement
}

func (e *entry) synthetic() bool {
	return e.kind == kParseSynth || e.kind == kCloseSynth || e.kind == kErrorSynth || e.kind == kRawSynth
}

var (
	parseComplete = []byte{'1', 0, 0, 0, 4}
	closeComplete = []byte{'3', 0, 0, 0, 4}
)

func (e *entry) reply() []byte {
	switch e.kind {
	case kParseSynth:
		return parseComplete
	case kCloseSynth:
		return closeComplete
	}
	return e.msg
}

// queue is a FIFO of entries that reuses its backing array.
type queue struct {
	e []entry
	h int
	// hooked is the session's count of queries its query hooks saw (plugin.Query.Seq), which
	// push stamps on a request's end: when that request is answered, those queries have ended.
	hooked atomic.Uint64
	// dropsAll counts the entries queued with dropsAll set.
	dropsAll int
	// execs counts the Execute entries queued, and lastExecGen is the copyGen of the last one
	// pushed (holdsExecute): a count, because a scan per message would make a long pipeline
	// quadratic.
	execs       int
	lastExecGen uint64
}

func (q *queue) push(e entry) {
	if len(q.e) == cap(q.e) && q.h >= len(q.e)/2 {
		// Full, and at least half of it popped: move the rest to the front rather than grow.
		// A queue that never empties (a client that always has requests outstanding) would
		// otherwise grow by every entry it ever held.
		n := copy(q.e, q.e[q.h:])
		clear(q.e[n:])
		q.e, q.h = q.e[:n], 0
	}
	switch e.kind {
	case kQuery, kSync, kFunc:
		e.hooked = q.hooked.Load()
	}
	q.e = append(q.e, e)
	if e.dropsAll {
		q.dropsAll++
	}
	if e.kind == kExecute {
		q.execs++
		q.lastExecGen = e.copyGen
	}
}

func (q *queue) empty() bool { return q.h == len(q.e) }

// len is the number of entries queued.
func (q *queue) len() int { return len(q.e) - q.h }

// head returns the oldest entry, or nil.
func (q *queue) head() *entry {
	if q.h == len(q.e) {
		return nil
	}
	return &q.e[q.h]
}

func (q *queue) pop() entry {
	e := q.e[q.h]
	q.e[q.h] = entry{}
	q.h++
	if e.dropsAll {
		q.dropsAll--
	}
	if e.kind == kExecute {
		q.execs--
	}
	if q.h == len(q.e) {
		q.e, q.h = q.e[:0], 0
		if cap(q.e) > keptQueueCap {
			q.e = nil
		}
	}
	return e
}

// keptQueueCap is the most entries an empty queue keeps room for. A pipelined burst (up to the
// reader's limit of outstanding requests) grows the array to thousands of entries; kept, every
// client that ever sent one would hold that much for the rest of its life.
const keptQueueCap = 64

// takeSynth pops the synthetic entries at the head: their replies are due because everything
// before them has been answered.
func (q *queue) takeSynth(dst [][]byte) [][]byte {
	for h := q.head(); h != nil && h.synthetic(); h = q.head() {
		e := q.pop()
		dst = append(dst, e.reply())
	}
	return dst
}

// dropSyncs removes the Sync entries after the head whose copyGen is gen.
func (q *queue) dropSyncs(gen uint64) {
	if q.empty() {
		return
	}
	kept := q.e[:q.h+1]
	for _, e := range q.e[q.h+1:] {
		if e.kind != kSync || e.copyGen != gen {
			kept = append(kept, e)
		}
	}
	clear(q.e[len(kept):])
	q.e = kept
}

func (q *queue) reset() {
	clear(q.e)
	q.e, q.h, q.dropsAll, q.execs = q.e[:0], 0, 0, 0
	if cap(q.e) > keptQueueCap {
		q.e = nil
	}
}

// holdsExecute reports whether an Execute sent after the client's gen-th end of a COPY is still
// unanswered: it may yet begin a COPY FROM, which the messages after it are inside. gen is the
// session's latest count, and Executes are pushed with non-decreasing counts and popped in
// order, so the last one pushed is queued while any is and has the highest count.
func (q *queue) holdsExecute(gen uint64) bool {
	return q.execs > 0 && q.lastExecGen == gen
}

// holdsCapture reports whether an entry still queued carries capture r.
func (q *queue) holdsCapture(r *captureReq) bool {
	for i := q.h; i < len(q.e); i++ {
		if q.e[i].capture == r {
			return true
		}
	}
	return false
}

// holdsRequestEnd reports whether a Sync, Query or FunctionCall is still queued: the end of a
// request whose replies are not all in.
func (q *queue) holdsRequestEnd() bool {
	for i := q.h; i < len(q.e); i++ {
		switch q.e[i].kind {
		case kSync, kQuery, kFunc:
			return true
		}
	}
	return false
}

// dropsUnnamedAfterSync reports whether an entry queued after the first Sync is of a message
// that drops the client's unnamed statement (a Close of it, or a simple Query): one that an
// error skipping to that Sync does not skip.
func (q *queue) dropsUnnamedAfterSync() bool {
	synced := false
	for i := q.h; i < len(q.e); i++ {
		switch e := &q.e[i]; {
		case e.kind == kSync:
			synced = true
		case synced && (e.kind == kQuery || e.dropsUnnamed):
			return true
		}
	}
	return false
}

// requestEndHooked returns the hook count stamped on the first request end queued (the one a
// ReadyForQuery answers), or 0 when none is queued.
func (q *queue) requestEndHooked() uint64 {
	for i := q.h; i < len(q.e); i++ {
		switch q.e[i].kind {
		case kQuery, kSync, kFunc:
			return q.e[i].hooked
		}
	}
	return 0
}

// holdsUnnamedDrop reports whether a Close of the client's unnamed statement, or a Query that
// ends a batch (entry.endsBatch), is still queued: one an error may make the server skip, and
// the client keep its unnamed statement.
func (q *queue) holdsUnnamedDrop() bool {
	for i := q.h; i < len(q.e); i++ {
		if e := &q.e[i]; e.dropsUnnamed || e.kind == kQuery && e.endsBatch {
			return true
		}
	}
	return false
}

// holdsDropAll reports whether a Query or Bind still queued may drop all the client's
// statements (entry.dropsAll).
func (q *queue) holdsDropAll() bool { return q.dropsAll > 0 }

// holdsClose reports whether the client's Close of its statement name is still queued.
func (q *queue) holdsClose(name string) bool {
	for i := q.h; i < len(q.e); i++ {
		if q.e[i].kind == kCloseSynth && q.e[i].closed != nil && q.e[i].client == name {
			return true
		}
	}
	return false
}

// peek returns the entry i places behind the head, or nil.
func (q *queue) peek(i int) *entry {
	if q.h+i >= len(q.e) {
		return nil
	}
	return &q.e[q.h+i]
}
