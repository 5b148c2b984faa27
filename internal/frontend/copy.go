package frontend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/copysplit"
	"github.com/sluicepg/sluice/internal/merge"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/shard"
	"github.com/sluicepg/sluice/internal/wire"
)

// crossCopy is returned, as an error, by crossShardFor for a COPY that runs on several shards:
// COPY FROM STDIN with each row sent to the shard its key names (or, into a table without the
// key and with cross_shard_writes = "all", every row to every shard), or COPY TO STDOUT with
// every shard's rows one after another.
type crossCopy struct {
	cp     *shard.Copy
	text   string // the statement as the client sent it: each shard runs it as it is
	shards []int  // in increasing order
	// split is set for COPY FROM into the key's table: rows go to their keys' shards.
	split bool
}

func (c *crossCopy) Error() string { return "the COPY runs on several shards" }

// copyAcross decides how a COPY that names no shard runs in a sharded pool (outside a
// transaction block, in transaction mode): nil to go on as before (one shard, or the refusal
// of a write with no key), a *crossCopy, or a *codedError.
func (s *ClientSession) copyAcross(cp *shard.Copy, text []byte, set shard.Set) error {
	sh := s.sharding
	pc := s.target.Settings()
	all := set.Shards(nil, sh.Shards)
	if cp.From {
		switch {
		case !cp.Stdio && cp.KeyTable:
			return &codedError{"0A000", fmt.Sprintf("COPY %s FROM a file or a program on the server cannot be split by shard: each shard's server would read it whole; send the data with COPY FROM STDIN (psql's \\copy) and sluice splits its rows by %s", cp.Table, cp.Key)}
		case !cp.Stdio:
			return nil
		case cp.KeyTable && (cp.Columns == nil || cp.KeyIndex(cp.Columns) >= 0):
			return &crossCopy{cp: cp, text: string(text), shards: all, split: true}
		case cp.KeyTable && !strings.HasPrefix(pc.AutomaticShardingKey, "*."):
			return &codedError{"0A000", fmt.Sprintf("COPY %s (%s) leaves out the sharding key %s: sluice cannot tell each row's shard; add %s to the column list", cp.Table, strings.Join(cp.Columns, ", "), cp.Key, cp.Key)}
		case pc.CrossShardWrites == config.CrossShardAll:
			return &crossCopy{cp: cp, text: string(text), shards: all}
		}
		return nil // a write with no key: refused as such
	}
	if !cp.Stdio {
		return nil
	}
	if set.All() {
		if pc.CrossShardReads != config.CrossShardAll {
			return nil // pgcat's: default_shard
		}
		if cp.Query == "" && !cp.KeyTable {
			return nil // another table: any shard answers
		}
	}
	if cp.Query != "" {
		pl := sh.Planner.Plan([]byte(cp.Query))
		if set.All() && !readsKeyTable(pl, pc.AutomaticShardingKey) {
			return nil
		}
		switch {
		case pl.Kind != merge.Select:
			return &codedError{"0A000", "this COPY reads " + describeSet(set) + ", and its query is not a SELECT: COPY (query) TO STDOUT runs across shards only for a SELECT"}
		case pl.Refused != nil:
			return &codedError{"0A000", "this COPY reads " + describeSet(set) + ", and " + pl.Refused.Error()}
		case !pl.Unordered():
			return &codedError{"0A000", "this COPY reads " + describeSet(set) + ", and its query orders, limits, aggregates or groups rows, which sluice cannot do to COPY data from several shards: run the query as a SELECT (sluice merges it), or COPY from one shard at a time (SET SHARD)"}
		}
	}
	return &crossCopy{cp: cp, text: string(text), shards: all}
}

// copyChunk is how much COPY data sluice gathers for one shard before it sends it on as one
// CopyData message.
const copyChunk = 64 << 10

// maxCopyNotices bounds the notices kept per shard during a COPY FROM (a trigger may raise one
// per row).
const maxCopyNotices = 64

// copyShard is one shard of a COPY FROM: its server and the data gathered for it.
//
// While its reader goroutine runs, the client's reader writes to the server (buf, copying,
// fanConn.err for a failed write) and the goroutine reads from it (rerr, tag, and fanConn's
// errMsg, notes and status); neither touches the other's fields until waitReaders.
type copyShard struct {
	*fanConn
	buf     []byte // a CopyData message being filled: a 5-byte header, then rows
	copying bool   // the server was put in COPY IN: it awaits CopyDone or CopyFail
	ended   bool   // it was sent CopyDone or CopyFail
	reading bool   // a reader goroutine was started for it
	rerr    error  // the reader's: the server failed
	tag     []byte // its CommandComplete's tag
}

// copyInPending runs the COPY FROM STDIN across shards that the Query just handled began, if
// any.
func (s *ClientSession) copyInPending() error {
	cc := s.copyPending
	if cc == nil {
		return nil
	}
	s.copyPending = nil
	return s.copyIn(cc)
}

// copyIn runs a COPY FROM STDIN on several shards. Each shard runs the statement inside BEGIN:
// once every shard is in COPY IN the client gets one CopyInResponse, and its data is cut into
// rows (internal/copysplit), each sent to its key's shard, in chunks of up to copyChunk bytes.
// A header (HEADER, or the binary format's file header) goes to every shard. At the client's
// CopyDone every shard gets CopyDone, and when all succeeded all commit and the client gets
// one CommandComplete with the rows counted together; otherwise every shard rolls back and the
// client gets the first error: a row whose key cannot be read, a shard's error, the client's
// CopyFail. Each shard's replies are read by a goroutine of its own while data is sent, so a
// shard that talks during the COPY (notices, an early error) never stalls it, and an early
// error ends the COPY at once, as Postgres ends it.
func (s *ClientSession) copyIn(cc *crossCopy) error {
	cp := cc.cp
	if cc.split && cp.Format.Kind != copysplit.Binary {
		enc := cp.Encoding
		if enc == "" {
			s.mu.Lock()
			enc, _ = s.paramLocked("client_encoding")
			s.mu.Unlock()
		}
		if !copysplit.ASCIISafeEncoding(enc) {
			return s.queryError("0A000", fmt.Sprintf("COPY %s across shards in the encoding %s: sluice cuts COPY data into rows by its ASCII bytes, which characters of this encoding may contain; send the data in UTF8 (SET client_encoding, or COPY's ENCODING option)", cp.Table, enc))
		}
	}
	s.mu.Lock()
	s.unnamed, s.unnamedDropped = s.unnamed[:0], s.unnamedSeq // a simple Query drops the unnamed statement
	s.mu.Unlock()
	role := route.Primary
	if s.hookRole != "" {
		role, s.hookRole = route.ParseRole(s.hookRole), ""
	}
	fcs, err := s.takeServers(cc.shards, role)
	defer s.releaseServers(fcs)
	if err != nil {
		return s.takeServersError(err)
	}
	shards := make([]*copyShard, len(fcs))
	for i, c := range fcs {
		shards[i] = &copyShard{fanConn: c}
	}
	ci := &copyInState{s: s, cc: cc, shards: shards, sharder: s.sharding.Sharder}
	if cc.split {
		cols := cp.Columns
		if cols == nil {
			if cols, err = tableColumns(fcs[0].srv, cp); err != nil {
				var se *backend.ServerError
				if errors.As(err, &se) {
					return s.queryError(se.Code, se.Message)
				}
				fcs[0].err = err
				return s.queryError("08006", fmt.Sprintf("shard %d (server %s): read the columns of %s: %v", fcs[0].shard, fcs[0].srv.Addr(), cp.Table, err))
			}
		}
		key := cp.KeyIndex(cols)
		switch {
		case key < 0 && s.target.Settings().CrossShardWrites != config.CrossShardAll:
			return s.queryError("0A000", fmt.Sprintf("COPY %s: the table has no column %s, the sharding key, so sluice cannot tell its rows' shards; choose a shard with SET SHARD, or set cross_shard_writes = \"all\" to copy every row to every shard", cp.Table, cp.Key))
		case key < 0:
			cc.split = false
		default:
			ci.splitter = copysplit.New(copysplit.Options{Format: cp.Format, Key: key, KeyName: cp.Key, Fields: len(cols),
				MaxRow: s.l.table().Config.General.MaxMessageSize})
			ci.onRow = ci.row
		}
	}
	resp := ci.open()
	if resp == nil {
		ci.startReaders()
		return ci.fail(nil) // a shard refused the COPY: its error
	}
	if err := s.emit(resp); err != nil {
		return err
	}
	ci.startReaders()
	defer func() {
		if !ci.stopped {
			ci.abandon()
		}
	}()
	return ci.stream()
}

// copyInState is one COPY FROM across shards, driven by the client's reader.
type copyInState struct {
	s        *ClientSession
	cc       *crossCopy
	shards   []*copyShard // by shard number: a COPY FROM runs on every shard
	sharder  shard.Sharder
	splitter *copysplit.Splitter // nil: every row goes to every shard
	onRow    func(*copysplit.Row) error

	readers sync.WaitGroup
	failed  atomic.Bool // a shard reported an error or failed while its replies were read
	stopped bool
}

// open sends BEGIN and the COPY to every shard and reads up to each shard's CopyInResponse. It
// returns the CopyInResponse the client gets, or nil when a shard refused the COPY (its
// errMsg is set; the others are left in COPY IN for fail to end).
func (ci *copyInState) open() []byte {
	for _, c := range ci.shards {
		b := wire.AppendQuery(nil, "BEGIN")
		b = wire.AppendQuery(b, ci.cc.text)
		if _, err := c.srv.W.Write(b); err != nil {
			c.err = err
		} else if err := c.srv.W.Flush(); err != nil {
			c.err = err
		}
	}
	var resp []byte
	for _, c := range ci.shards {
		if c.err != nil {
			continue
		}
		r := c.srv.R
	read:
		for {
			msg, err := r.Message()
			if err != nil {
				c.err = fmt.Errorf("read: %w", err)
				break
			}
			switch msg[0] {
			case wire.CopyInResponse:
				c.copying = true
				if resp == nil {
					resp = bytes.Clone(msg)
				}
				r.Discard(len(msg))
				break read
			case wire.ErrorResponse:
				if c.errMsg == nil {
					c.errMsg = bytes.Clone(msg)
				}
			case wire.NoticeResponse:
				c.notes = append(c.notes, bytes.Clone(msg))
			case wire.ParameterStatus:
				c.srv.NoteParameter(wire.Body(msg))
			case wire.ReadyForQuery:
				if len(msg) > wire.HeaderLen {
					c.status = msg[wire.HeaderLen]
				}
				if c.errMsg != nil {
					r.Discard(len(msg))
					break read // the COPY failed: BEGIN's ReadyForQuery came first
				}
			}
			r.Discard(len(msg))
		}
	}
	for _, c := range ci.shards {
		if c.err != nil || c.errMsg != nil {
			return nil
		}
	}
	return resp
}

// startReaders starts a goroutine per shard in COPY IN that reads its replies up to
// ReadyForQuery: the COPY's tag or error, and notices.
func (ci *copyInState) startReaders() {
	for _, c := range ci.shards {
		if !c.copying || c.reading {
			continue
		}
		c.reading = true
		ci.readers.Add(1)
		go func() {
			defer ci.readers.Done()
			defer recoverInto(&c.rerr)
			c.readCopy(&ci.failed)
		}()
	}
}

// readCopy reads a shard's replies to its COPY up to ReadyForQuery. It runs on its own
// goroutine; it touches only c's reply fields and c.srv's reader and parameters.
func (c *copyShard) readCopy(failed *atomic.Bool) {
	r := c.srv.R
	for {
		msg, err := r.Message()
		if err != nil {
			c.rerr = fmt.Errorf("read: %w", err)
			failed.Store(true)
			return
		}
		switch msg[0] {
		case wire.CommandComplete:
			c.tag = bytes.Clone(wire.CommandTag(msg))
		case wire.ErrorResponse:
			if c.errMsg == nil {
				c.errMsg = bytes.Clone(msg)
			}
			failed.Store(true)
		case wire.NoticeResponse:
			if len(c.notes) < maxCopyNotices {
				c.notes = append(c.notes, bytes.Clone(msg))
			}
		case wire.ParameterStatus:
			c.srv.NoteParameter(wire.Body(msg))
		case wire.ReadyForQuery:
			if len(msg) > wire.HeaderLen {
				c.status = msg[wire.HeaderLen]
			}
			r.Discard(len(msg))
			return
		}
		r.Discard(len(msg))
	}
}

// waitReaders waits for the reader goroutines, which end at their servers' ReadyForQuery
// once every shard in COPY IN has had CopyDone or CopyFail; a server whose write failed is
// woken first. Then the readers' findings are the client reader's to use.
func (ci *copyInState) waitReaders() {
	for _, c := range ci.shards {
		if c.reading && c.err != nil {
			_ = c.srv.SetReadDeadline(aLongTimeAgo)
		}
	}
	ci.readers.Wait()
	ci.stopped = true
	for _, c := range ci.shards {
		c.copying = false
		if c.err == nil && c.rerr != nil {
			c.err = c.rerr
		}
	}
}

// aLongTimeAgo is a read deadline in the past: the read in progress fails at once.
var aLongTimeAgo = time.Unix(1, 0)

// stream reads the client's COPY messages until its CopyDone or CopyFail, or until the COPY
// fails, and answers the client.
func (ci *copyInState) stream() error {
	s := ci.s
	for {
		if _, ok := s.r.Complete(); !ok {
			// The client's next message is not here yet: send what was gathered, so that a
			// slow client's rows reach the shards, and the client what it is due.
			if err := ci.flushAll(true); err != nil {
				return ci.fail(nil)
			}
			s.out.mu.Lock()
			err := s.out.Flush()
			s.out.mu.Unlock()
			if err != nil {
				ci.abandon()
				return err
			}
		}
		if ci.failed.Load() {
			return ci.fail(nil)
		}
		typ, size, err := s.r.Peek()
		if err != nil {
			ci.abandon()
			return s.readError(err)
		}
		switch typ {
		case wire.CopyData:
			msg, err := s.r.Message()
			if err != nil {
				ci.abandon()
				return s.readError(err)
			}
			err = ci.data(wire.Body(msg))
			s.r.Discard(size)
			if err != nil {
				return ci.fail(err)
			}
		case wire.CopyDone:
			s.r.Discard(size)
			return ci.done()
		case wire.CopyFail:
			msg, err := s.r.Message()
			if err != nil {
				ci.abandon()
				return s.readError(err)
			}
			reason, _, _ := wire.CString(wire.Body(msg))
			s.r.Discard(size)
			ci.copyFail(string(reason))
			return ci.fail(nil)
		case wire.Flush, wire.Sync:
			s.r.Discard(size) // Postgres ignores them during COPY IN
		case wire.Terminate:
			ci.abandon()
			return io.EOF
		default:
			if err := s.r.Skip(size); err != nil {
				ci.abandon()
				return s.readError(err)
			}
			return ci.fail(&codedError{"08P01", fmt.Sprintf("unexpected message type 0x%02X during COPY from stdin", typ)})
		}
	}
}

// data takes one CopyData's content.
func (ci *copyInState) data(b []byte) error {
	if ci.splitter != nil {
		return ci.splitter.Feed(b, ci.onRow)
	}
	for _, c := range ci.shards {
		if err := ci.add(c, b); err != nil {
			return err
		}
	}
	return nil
}

// row sends one row to its key's shard, or a header to every shard.
func (ci *copyInState) row(r *copysplit.Row) error {
	if r.Header {
		for _, c := range ci.shards {
			if err := ci.add(c, r.Data); err != nil {
				return err
			}
		}
		return nil
	}
	cp := ci.cc.cp
	var sh int
	switch {
	case r.Null:
		// Hash partitioning keeps a NULL key in its first partition, and so does sluice's
		// split of an INSERT; sha1 has no shard for it.
		if ci.sharder.Func != shard.PgBigintHash {
			return &codedError{"23502", fmt.Sprintf("COPY %s, line %d: the sharding key %s is NULL, and sharding_function %s puts a NULL key on no shard", cp.Table, r.Line, cp.Key, ci.sharder.Func)}
		}
	case r.Default:
		return &codedError{"0A000", fmt.Sprintf("COPY %s, line %d: the sharding key %s is the DEFAULT marker: sluice cannot tell the row's shard before the server computes it; send the key's value", cp.Table, r.Line, cp.Key)}
	default:
		var err error
		if cp.Format.Kind == copysplit.Binary {
			sh, err = ci.sharder.ShardBinary(r.Key)
		} else {
			sh, err = ci.sharder.Shard(r.Key)
		}
		if err != nil {
			code := "22P02" // invalid_text_representation
			switch {
			case cp.Format.Kind == copysplit.Binary:
				code = "22P03" // invalid_binary_representation
			case strings.Contains(err.Error(), "out of range"):
				code = "22003" // numeric_value_out_of_range
			}
			return &codedError{code, fmt.Sprintf("COPY %s, line %d, column %s: %v", cp.Table, r.Line, cp.Key, err)}
		}
	}
	return ci.add(ci.shards[sh], r.Data)
}

// add gathers data for a shard, sending the gathered data on as one CopyData when it reaches
// copyChunk. A write error fails the COPY.
func (ci *copyInState) add(c *copyShard, data []byte) error {
	if len(c.buf) == 0 {
		c.buf = append(c.buf, wire.CopyData, 0, 0, 0, 0)
	}
	c.buf = append(c.buf, data...)
	if len(c.buf) >= copyChunk {
		return ci.send(c, false)
	}
	return nil
}

// send writes what was gathered for a shard as one CopyData, and flushes when flush is set.
func (ci *copyInState) send(c *copyShard, flush bool) error {
	if c.err != nil {
		return errCopyShardFailed
	}
	if len(c.buf) > wire.HeaderLen {
		binary.BigEndian.PutUint32(c.buf[1:], uint32(len(c.buf)-1))
		if _, err := c.srv.W.Write(c.buf); err != nil {
			c.err = err
			ci.failed.Store(true)
			return errCopyShardFailed
		}
		c.buf = c.buf[:wire.HeaderLen]
	}
	if flush && c.srv.W.Buffered() > 0 {
		if err := c.srv.W.Flush(); err != nil {
			c.err = err
			ci.failed.Store(true)
			return errCopyShardFailed
		}
	}
	return nil
}

// errCopyShardFailed is a write to a shard that failed: the shard's error is in its fanConn.
var errCopyShardFailed = errors.New("a shard failed")

// flushAll sends every shard what was gathered for it.
func (ci *copyInState) flushAll(flush bool) error {
	for _, c := range ci.shards {
		if c.copying {
			if err := ci.send(c, flush); err != nil {
				return err
			}
		}
	}
	return nil
}

// done ends the COPY at the client's CopyDone: the last row, CopyDone to every shard, their
// tags, then COMMIT everywhere or ROLLBACK everywhere.
func (ci *copyInState) done() error {
	if ci.splitter != nil {
		if err := ci.splitter.Finish(ci.onRow); err != nil {
			return ci.fail(err)
		}
	}
	if err := ci.flushAll(false); err != nil {
		return ci.fail(nil)
	}
	for _, c := range ci.shards {
		if c.copying && c.err == nil {
			c.ended = true
			_, _ = c.srv.W.Write([]byte{wire.CopyDone, 0, 0, 0, 4})
			if err := c.srv.W.Flush(); err != nil {
				c.err = err
			}
		}
	}
	ci.waitReaders()
	var tags [][]byte
	failed := false
	for _, c := range ci.shards {
		failed = failed || c.err != nil || c.errMsg != nil
		tags = append(tags, c.tag)
	}
	if failed {
		return ci.fail(nil)
	}
	ci.s.finishWrite(fanConns(ci.shards), false)
	for _, c := range ci.shards {
		if c.err != nil || c.errMsg != nil {
			return ci.answer(nil) // a COMMIT failed: its error says which shards committed
		}
	}
	return ci.answer(merge.AppendCommandComplete(nil, merge.SumTags(tags)))
}

// copyFail ends COPY IN on every shard with CopyFail: the client's (reason), or sluice's.
func (ci *copyInState) copyFail(reason string) {
	for _, c := range ci.shards {
		if !c.copying || c.ended || c.err != nil {
			continue
		}
		c.ended = true
		b, off := wire.Begin(nil, wire.CopyFail)
		b = wire.AppendCString(b, reason)
		b = wire.Finish(b, off)
		if _, err := c.srv.W.Write(b); err != nil {
			c.err = err
		} else if err := c.srv.W.Flush(); err != nil {
			c.err = err
		}
	}
}

// fail ends a COPY that failed: every shard still in COPY IN gets CopyFail, every shard rolls
// back, and the client gets err (sluice's own, a *codedError or a *copysplit.Error), else the
// first shard's error.
func (ci *copyInState) fail(err error) error {
	if err != nil {
		ci.copyFail(copyFailPrefix + err.Error())
	} else {
		ci.copyFail(copyFailPrefix + "the COPY failed on another shard")
	}
	ci.waitReaders()
	// Every server that did not fail is in the transaction BEGIN opened, aborted or not.
	ci.s.finishWrite(fanConns(ci.shards), true)
	var msg []byte
	var ce *codedError
	var se *copysplit.Error
	switch {
	case errors.As(err, &ce):
		msg = wire.AppendError(nil, "ERROR", ce.code, ce.msg)
	case errors.As(err, &se):
		text := "COPY " + ci.cc.cp.Table + ": " + se.Msg
		if se.Line > 0 {
			text = "COPY " + ci.cc.cp.Table + ", line " + strconv.Itoa(se.Line) + ": " + se.Msg
		}
		msg = wire.AppendError(nil, "ERROR", se.Code, text)
	}
	return ci.answer(msg)
}

// answer writes the client the shards' notices, then msg (an ErrorResponse or a
// CommandComplete; nil for the first shard's error), and ReadyForQuery.
func (ci *copyInState) answer(msg []byte) error {
	var out []byte
	for _, c := range ci.shards {
		for _, n := range c.notes {
			if !bytes.Contains(out, n) {
				out = append(out, n...)
			}
		}
	}
	if msg == nil {
		// The first shard's error, but not one that sluice's CopyFail caused.
		for _, c := range ci.shards {
			if c.errMsg != nil && !causedBySluice(c.errMsg) {
				msg = c.errMsg
				break
			}
			if c.err != nil && c.errMsg == nil {
				msg = wire.AppendError(nil, "ERROR", "08006", fmt.Sprintf("shard %d (server %s): %v", c.shard, c.srv.Addr(), c.err))
				break
			}
		}
	}
	if msg == nil {
		for _, c := range ci.shards {
			if c.errMsg != nil {
				msg = c.errMsg
				break
			}
		}
	}
	out = append(out, msg...)
	if len(msg) > 0 && ci.s.chain.HasResult() {
		if msg[0] == wire.CommandComplete {
			ci.s.fanOutcome(nil, nil, string(wire.CommandTag(msg)), nil)
		} else {
			ci.s.fanOutcome(nil, nil, "", msg)
		}
	}
	return ci.s.emit(wire.AppendReadyForQuery(out, 'I'))
}

// copyFailPrefix begins the message of the CopyFail that sluice sends a shard.
const copyFailPrefix = "sluice: "

// causedBySluice reports whether a shard's error answers sluice's own CopyFail (the server
// says "COPY from stdin failed: " and the CopyFail's message): the client hears of the cause.
func causedBySluice(errMsg []byte) bool {
	code, m := wire.ErrorFields(wire.Body(errMsg))
	return code == "57014" && strings.Contains(m, ": "+copyFailPrefix)
}

// abandon ends a COPY whose client is gone: the shards' servers are closed, which rolls their
// transactions back.
func (ci *copyInState) abandon() {
	for _, c := range ci.shards {
		if c.err == nil {
			c.err = errCopyAbandoned
		}
	}
	ci.waitReaders()
}

// errCopyAbandoned marks the servers of a COPY whose client left.
var errCopyAbandoned = errors.New("the client left during COPY")

func fanConns(cs []*copyShard) []*fanConn {
	out := make([]*fanConn, len(cs))
	for i, c := range cs {
		out[i] = c.fanConn
	}
	return out
}

// tableColumns returns the columns that COPY without a column list reads: every column of the
// table but the dropped and the generated ones, in order.
func tableColumns(srv *backend.ServerConn, cp *shard.Copy) ([]string, error) {
	rel := quoteIdent(cp.Table)
	if cp.Schema != "" {
		rel = quoteIdent(cp.Schema) + "." + rel
	}
	rows, err := srv.QueryRows("SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum", rel)
	if err != nil {
		return nil, err
	}
	cols := make([]string, len(rows))
	for i, r := range rows {
		cols[i] = string(r[0])
	}
	return cols, nil
}

// copyOut runs a COPY TO STDOUT on several shards, one after another: the client gets the
// first shard's CopyOutResponse, every shard's rows (a header once, the binary format's file
// header and trailer once), one CopyDone and one CommandComplete with the rows counted
// together. The rows stream through: nothing is held but one message. A shard's error ends
// the COPY there, as a server's error during COPY TO does: the client has the rows sent
// before it, then the error.
func (s *ClientSession) copyOut(cc *crossCopy) error {
	role := s.readRole([]byte(cc.text))
	if s.hookRole != "" {
		role, s.hookRole = route.ParseRole(s.hookRole), ""
	}
	s.mu.Lock()
	s.unnamed, s.unnamedDropped = s.unnamed[:0], s.unnamedSeq // a simple Query drops the unnamed statement
	s.mu.Unlock()
	conns, err := s.takeServers(cc.shards, role)
	defer s.releaseServers(conns)
	if err != nil {
		return s.takeServersError(err)
	}
	q := wire.AppendQuery(nil, cc.text)
	for _, c := range conns {
		c.status = 0 // not idle until its ReadyForQuery is read
		if _, err := c.srv.W.Write(q); err != nil {
			c.err = err
		} else if err := c.srv.W.Flush(); err != nil {
			c.err = err
		}
	}
	o := &s.out
	o.mu.Lock()
	defer o.mu.Unlock()
	format := cc.cp.Format
	var tags [][]byte
	sent := false // the CopyOutResponse
	for i, c := range conns {
		if c.err != nil {
			return s.copyOutError(wire.AppendError(nil, "ERROR", "08006", fmt.Sprintf("shard %d (server %s): %v", c.shard, c.srv.Addr(), c.err)))
		}
		first, last := true, i == len(conns)-1
		r := c.srv.R
		for c.status == 0 && c.err == nil {
			if _, ok := r.Complete(); !ok {
				if err := o.Flush(); err != nil {
					return &clientWriteError{err}
				}
			}
			typ, size, err := r.Peek()
			if err != nil {
				c.err = fmt.Errorf("read: %w", err)
				break
			}
			// Rows stream through; only a message that may need trimming is read whole:
			// a shard's first (its header) and, in binary, a trailer's size.
			trim := first && i > 0 && (format.Header || format.Kind == copysplit.Binary) ||
				format.Kind == copysplit.Binary && !last && size == wire.HeaderLen+2
			switch {
			case typ == wire.CopyData && !trim:
				first = false
				if err := r.Forward(o, size); err != nil {
					return forwardFailure(err)
				}
				continue
			case typ == wire.NoticeResponse:
				if err := r.Forward(o, size); err != nil {
					return forwardFailure(err)
				}
				continue
			}
			msg, err := r.Message()
			if err != nil {
				c.err = fmt.Errorf("read: %w", err)
				break
			}
			switch typ {
			case wire.CopyOutResponse:
				if !sent {
					_, _ = o.Write(msg)
					sent = true
				}
			case wire.CopyData:
				// A header (HEADER) is the first CopyData of each shard: the client has
				// shard 0's. In binary, shards after the first drop the file header, which
				// leads their first CopyData, and all but the last the trailer.
				body := wire.Body(msg)
				if format.Kind == copysplit.Binary {
					if first && i > 0 {
						body = trimBinaryHeader(body)
					}
					if !last && len(body) == 2 && body[0] == 0xff && body[1] == 0xff {
						body = nil
					}
				} else if first && i > 0 && format.Header {
					body = nil
				}
				first = false
				if len(body) > 0 {
					var h [wire.HeaderLen]byte
					h[0] = wire.CopyData
					binary.BigEndian.PutUint32(h[1:], uint32(len(body)+4))
					_, _ = o.Write(h[:])
					_, _ = o.Write(body)
				}
			case wire.CommandComplete:
				tags = append(tags, bytes.Clone(wire.CommandTag(msg)))
			case wire.ErrorResponse:
				if c.errMsg == nil {
					c.errMsg = bytes.Clone(msg)
				}
			case wire.ParameterStatus:
				c.srv.NoteParameter(wire.Body(msg))
			case wire.ReadyForQuery:
				c.status = 'E'
				if len(msg) > wire.HeaderLen {
					c.status = msg[wire.HeaderLen]
				}
			}
			r.Discard(len(msg))
			if o.err != nil {
				return &clientWriteError{o.err}
			}
		}
		switch {
		case c.errMsg != nil:
			return s.copyOutError(c.errMsg)
		case c.err != nil:
			return s.copyOutError(wire.AppendError(nil, "ERROR", "08006", fmt.Sprintf("shard %d (server %s): %v", c.shard, c.srv.Addr(), c.err)))
		}
	}
	tag := merge.SumTags(tags)
	if s.chain.HasResult() {
		s.fanOutcome(nil, nil, tag, nil)
	}
	b := wire.AppendSimple(nil, wire.CopyDone)
	b = merge.AppendCommandComplete(b, tag)
	_, _ = o.Write(wire.AppendReadyForQuery(b, 'I'))
	return o.err
}

// forwardFailure is the error that ends the session when a server message could not be
// passed on whole: the client failed, or the server did in the middle of the message, which
// leaves the client's stream broken.
func forwardFailure(err error) error {
	var we *wire.WriteError
	if errors.As(err, &we) {
		return &clientWriteError{we.Err}
	}
	return fmt.Errorf("%w: %v", errPartial, err)
}

// copyOutError ends a COPY TO across shards with an error, after whatever rows the client has
// had. The servers not read to the end are closed. s.out.mu is held.
func (s *ClientSession) copyOutError(errMsg []byte) error {
	if s.chain.HasResult() {
		s.fanOutcome(nil, nil, "", errMsg)
	}
	_, _ = s.out.Write(wire.AppendReadyForQuery(errMsg, 'I'))
	return s.out.err
}

// trimBinaryHeader drops the binary COPY file header (signature, flags, extension) that leads
// a shard's first CopyData.
func trimBinaryHeader(b []byte) []byte {
	const fixed = 11 + 8
	if len(b) < fixed {
		return b
	}
	ext := int(binary.BigEndian.Uint32(b[15:19]))
	if ext < 0 || fixed+ext > len(b) {
		return b
	}
	return b[fixed+ext:]
}
