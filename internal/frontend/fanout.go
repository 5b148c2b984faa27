package frontend

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/merge"
	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/shard"
	"github.com/sluicepg/sluice/internal/wire"
)

// crossShard is returned, as an error, by shardFor for a statement outside a transaction
// block that runs on several shards; queryMsg then runs it with fanout, and a Bind with
// fanBind (fanext.go), instead of attaching one server.
type crossShard struct {
	shards  []int    // in increasing order
	queries []string // the text each shard runs
	// params, for a split INSERT in the extended protocol, lists for each shard the
	// original statement's parameters that its text's $1, $2, ... stand for.
	params [][]int
	// plan merges a read's results; nil for a write, whose rows are concatenated and whose
	// command tags are summed.
	plan *merge.Plan
	// wrap runs each shard's statement inside BEGIN, committed only when every shard
	// succeeded: a write that fails on one shard is rolled back on all.
	wrap bool
	// tx is set inside a transaction across shards (cross_shard_transactions): the
	// statement runs on the transaction's servers (txServers), without wrap.
	tx bool
}

func (c *crossShard) Error() string { return "the statement runs on several shards" }

// crossShardFor decides what a statement whose shards are set (several, or unknown) does
// instead of going to default_shard or being refused: it returns nil to go on as before, a
// *crossShard to run it on several shards, or a *codedError to refuse it. text is a simple
// Query's text, or the text of the statement a Bind (body bind) binds.
//
// Reads of several named shards always fan out; reads with no key only with cross_shard_reads
// = "all", and only when they read the sharded table (SELECT 1 still goes to default_shard).
// A multi-row INSERT is split by its rows' shards. Other writes fan out with cross_shard_writes
// = "all". A COPY is copyAcross's to decide (simple protocol only).
func (s *ClientSession) crossShardFor(text, bind []byte, set shard.Set) error {
	sh := s.sharding
	if !s.txMode || sh.Planner == nil || text == nil {
		return nil // session mode keeps one server for the session
	}
	st := sh.Extractor.Analyze(text)
	if cp := st.Copy(); cp != nil {
		if bind != nil {
			return nil // a COPY in the extended protocol runs on one shard
		}
		return s.copyAcross(cp, text, set)
	}
	pc := s.target.Settings()
	pl := sh.Planner.Plan(text)
	shards := set.Shards(nil, sh.Shards)
	if s.cls != nil && s.cls.Classify(text).Write {
		if parts, err := st.SplitInsert(bindParams(bind)); err == nil && len(parts) > 1 {
			cs := &crossShard{wrap: true}
			for _, p := range parts {
				q, params, err := st.InsertSubset(p.Rows)
				if err != nil {
					return &codedError{"0A000", "this INSERT has rows on several shards and could not be split: " + err.Error()}
				}
				cs.shards, cs.queries = append(cs.shards, p.Shard), append(cs.queries, q)
				if bind != nil {
					cs.params = append(cs.params, params)
				}
			}
			return cs
		}
		if pc.CrossShardWrites != config.CrossShardAll {
			return nil
		}
		switch pl.Kind {
		case merge.Select:
			// A SELECT that writes (nextval(), a locking clause): its results are merged as
			// a read's, or it is refused.
			if pl.Refused != nil {
				return &codedError{"0A000", "this query runs on " + describeSet(set) + ", and " + pl.Refused.Error()}
			}
			cs := &crossShard{shards: shards, plan: pl}
			for range shards {
				cs.queries = append(cs.queries, pl.Query)
			}
			return cs
		case merge.Multi:
			return &codedError{"0A000", fmt.Sprintf("this write touches %s and has several statements; with cross_shard_writes = \"all\" send one statement at a time", describeSet(set))}
		case merge.Invalid:
			return nil
		}
		cs := &crossShard{shards: shards, wrap: pl.Kind == merge.DML}
		for range shards {
			cs.queries = append(cs.queries, string(text))
		}
		return cs
	}
	if set.All() {
		if pc.CrossShardReads != config.CrossShardAll {
			return nil // pgcat's: default_shard
		}
		if errors.Is(pl.ParseErr, merge.ErrTooLong) {
			return &codedError{"0A000", "this query has no sharding key and is too long to plan for every shard (query_parser_max_length); add the sharding key or choose a shard with SET SHARD"}
		}
		if !readsKeyTable(pl, pc.AutomaticShardingKey) {
			return nil // it does not read the sharded table: any shard answers it
		}
		if pl.Kind == merge.Multi {
			return &codedError{"0A000", "this query reads every shard and has several statements; send one statement at a time"}
		}
	}
	switch {
	case pl.Kind != merge.Select:
		return nil
	case pl.Refused != nil:
		return &codedError{"0A000", "this query reads " + describeSet(set) + ", and " + pl.Refused.Error()}
	}
	cs := &crossShard{shards: shards, plan: pl}
	for range shards {
		cs.queries = append(cs.queries, pl.Query)
	}
	return cs
}

// readsKeyTable reports whether a statement names the sharding key's table ("table.column"),
// or any table for "*.column".
func readsKeyTable(pl *merge.Plan, key string) bool {
	table, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(key)), ".")
	if table == "*" {
		return len(pl.Tables) > 0
	}
	for _, t := range pl.Tables {
		if t == table {
			return true
		}
	}
	return false
}

// fanConn is one shard's server during a fan-out, and what it answered.
type fanConn struct {
	shard  int
	srv    *backend.ServerConn
	pl     *pool.Pool
	reply  []byte // RowDescription, DataRows, CommandComplete, back to back
	notes  [][]byte
	errMsg []byte // the first ErrorResponse
	status byte   // of the last ReadyForQuery
	err    error  // the server failed, or the replies were too large

	// In the extended protocol: parseName is the statement a Parse sent to the server
	// prepares under (kept in its LRU only if the Parse succeeded), parsed and bound say
	// that ParseComplete and BindComplete came, noData that a Describe answered NoData.
	parseName     string
	parsed, bound bool
	// stmtName is the named statement the Bind used (parsed in this round or before).
	stmtName string
	noData   bool
	// home is set for the session's own server inside a transaction across shards.
	home bool
}

// readRole is the role of the servers a read that runs on several shards takes: what the
// same read on one shard would get.
func (s *ClientSession) readRole(text []byte) route.Role {
	if s.parserOn(s.target.Settings()) && s.cls != nil {
		return s.roleFor(s.cls.Classify(text))
	}
	return s.roleFor(nil)
}

// takeServers checks out one server of each shard, in shard order, so that two clients
// fanning out never wait for each other's servers in a cycle, and applies the client's
// settings to each. It returns the servers taken, also on error: the caller gives them back
// with releaseServers. The error is a *codedError naming the shard, to answer the query
// with, or one that ends the session (the client left; its own settings are invalid, for which
// the client has had its FATAL).
func (s *ClientSession) takeServers(shards []int, role route.Role) ([]*fanConn, error) {
	wait := s.l.table().Config.General.QueryWaitTimeout
	conns := make([]*fanConn, 0, len(shards))
	for _, sh := range shards {
		rs, err := s.target.Pick(sh, role, nil)
		if err != nil {
			return conns, &codedError{"08006", fmt.Sprintf("shard %d: %v", sh, err)}
		}
		srv, err := s.checkoutFrom(rs.Pool, wait)
		if err != nil {
			if errors.Is(err, errClientGone) {
				return conns, err
			}
			return conns, &codedError{checkoutCode(err), fmt.Sprintf("shard %d: %v", sh, err)}
		}
		c := &fanConn{shard: sh, srv: srv, pl: rs.Pool, status: 'I'}
		conns = append(conns, c)
		s.mu.Lock()
		s.fanSrvs = append(s.fanSrvs, srv) // a cancel request reaches it
		s.mu.Unlock()
		srv.UnnamedOwner = nil
		if err := s.syncParams(srv); err != nil {
			c.err = err
			if fatal := s.attachFatal(err); fatal != nil {
				return conns, fatal
			}
			return conns, &codedError{"08006", fmt.Sprintf("shard %d: %v", sh, err)}
		}
	}
	return conns, nil
}

// takeServersError answers the query whose takeServers failed, or ends the session.
func (s *ClientSession) takeServersError(err error) error {
	var ce *codedError
	if errors.As(err, &ce) {
		return s.queryError(ce.code, ce.msg)
	}
	return err
}

// releaseServers gives a fan-out's servers back to their pools. A server that failed, or
// that is not idle (its reply not read to the end, a transaction left open), is closed.
func (s *ClientSession) releaseServers(conns []*fanConn) {
	s.mu.Lock()
	clear(s.fanSrvs)
	s.fanSrvs = s.fanSrvs[:0]
	killed := s.killed // a cancel may be on its way to them
	s.mu.Unlock()
	for _, c := range conns {
		if c.err != nil || c.status != 'I' || killed {
			c.srv.Broken = true
		}
		c.pl.Release(c.srv)
	}
}

// errFanoutTooLarge is a fan-out whose replies, all shards together, passed max_message_size.
var errFanoutTooLarge = errors.New("too large")

// fanout runs cs on its shards, one server connection from each shard's pool, concurrently,
// and answers the client with the merged result and ReadyForQuery 'I'. The replies are held
// in memory, at most max_message_size bytes for all shards together. When a shard reports an
// error the client gets it (the lowest shard's) and the other shards' results are dropped; a
// wrapped write is then rolled back everywhere.
func (s *ClientSession) fanout(cs *crossShard, capture *captureReq) error {
	g := &s.l.table().Config.General
	role := route.Primary
	if cs.plan != nil {
		role = s.readRole([]byte(cs.queries[0]))
	}
	if s.hookRole != "" {
		role, s.hookRole = route.ParseRole(s.hookRole), ""
	}
	s.mu.Lock()
	s.unnamed, s.unnamedDropped = s.unnamed[:0], s.unnamedSeq // a simple Query drops the unnamed statement
	s.mu.Unlock()
	var conns []*fanConn
	var err error
	if cs.tx {
		conns, err = s.txServers(cs.shards)
	} else {
		conns, err = s.takeServers(cs.shards, role)
		defer s.releaseServers(conns)
	}
	if err != nil {
		if cs.tx {
			s.txRunDone(conns)
		}
		s.fanOutcome(capture, nil, "", nil)
		return s.takeServersError(err)
	}
	for i, c := range conns {
		q := cs.queries[i]
		if cs.wrap {
			q = "BEGIN;" + q
		}
		if _, err := c.srv.W.Write(wire.AppendQuery(nil, q)); err == nil {
			err = c.srv.W.Flush()
			if err != nil {
				c.err = err
			}
		} else {
			c.err = err
		}
	}
	readShards(conns, g.MaxMessageSize, cs.wrap, 1)
	failed := false
	for _, c := range conns {
		failed = failed || c.err != nil || c.errMsg != nil
	}
	if cs.wrap {
		s.finishWrite(conns, failed)
	}
	status := byte('I')
	if cs.tx {
		s.txRunDone(conns)
		if failed {
			s.abortAcross(true) // the transaction fails on every shard, as at any error
		}
		s.mu.Lock()
		status = s.tx
		s.mu.Unlock()
	}
	out := fanNotes(conns)
	if code, msg := fanConnError(conns, g.MaxMessageSize); code != "" {
		return s.fanoutError(out, capture, status, code, msg)
	}
	for _, c := range conns {
		if c.errMsg != nil {
			s.fanOutcome(capture, nil, "", c.errMsg)
			out = append(out, c.errMsg...)
			return s.fanoutDone(out, status)
		}
	}
	replies := make([][]byte, len(conns))
	for i, c := range conns {
		replies[i] = c.reply
	}
	var result []byte
	if cs.plan != nil {
		result, err = cs.plan.Merge(nil, replies)
	} else {
		result, err = merge.Concat(nil, replies)
	}
	if err != nil {
		code := "XX000"
		var ue *merge.UnsupportedError
		if errors.As(err, &ue) {
			code = "0A000"
		}
		if cs.tx {
			s.abortAcross(true)
			s.mu.Lock()
			status = s.tx
			s.mu.Unlock()
		}
		return s.fanoutError(nil, capture, status, code, "merging the shards' results: "+err.Error())
	}
	if capture != nil || s.chain.HasResult() {
		var tag string
		if last := lastMessage(result); len(last) > 0 && last[0] == wire.CommandComplete {
			tag = string(wire.CommandTag(last))
		}
		s.fanOutcome(capture, result, tag, nil)
	}
	out = append(out, result...)
	return s.fanoutDone(out, status)
}

func (s *ClientSession) fanoutError(out []byte, capture *captureReq, status byte, code, msg string) error {
	errMsg := wire.AppendError(nil, "ERROR", code, msg)
	s.fanOutcome(capture, nil, "", errMsg)
	out = append(out, errMsg...)
	return s.fanoutDone(out, status)
}

// fanoutDone answers a simple Query that ran across shards with its replies and ReadyForQuery
// with the transaction status: idle, or inside a transaction across shards, whose
// idle-in-transaction timer then starts.
func (s *ClientSession) fanoutDone(out []byte, status byte) error {
	err := s.emit(wire.AppendReadyForQuery(out, status))
	if status != 'I' {
		s.mu.Lock()
		s.idlePointLocked()
		s.mu.Unlock()
	}
	return err
}

// read reads one shard's reply up to its rfqs-th ReadyForQuery. The BEGIN of a wrapped
// statement has its CommandComplete skipped.
func (c *fanConn) read(budget *atomic.Int64, wrapped bool, rfqs int) {
	skipTag := wrapped
	r := c.srv.R
	for {
		msg, err := r.Message()
		if err != nil {
			c.err = fmt.Errorf("read: %w", err)
			return
		}
		if budget.Add(-int64(len(msg))) < 0 {
			c.err = errFanoutTooLarge
			return
		}
		switch msg[0] {
		case wire.RowDescription, wire.DataRow:
			if c.errMsg == nil {
				c.reply = append(c.reply, msg...)
			}
		case wire.CommandComplete:
			if skipTag {
				skipTag = false
			} else if c.errMsg == nil {
				c.reply = append(c.reply, msg...)
			}
		case wire.ErrorResponse:
			if c.errMsg == nil {
				c.errMsg = bytes.Clone(msg)
			}
		case wire.NoticeResponse:
			c.notes = append(c.notes, bytes.Clone(msg))
		case wire.ParseComplete:
			c.parsed = true
		case wire.BindComplete:
			c.bound = true
		case wire.NoData:
			c.noData = true
		case wire.ParameterStatus:
			c.srv.NoteParameter(wire.Body(msg))
		case wire.CopyInResponse:
			// COPY FROM STDIN is not fanned out: end it, the server reports the failure.
			_, _ = c.srv.W.Write([]byte{wire.CopyFail, 0, 0, 0, 5, 0})
			if err := c.srv.W.Flush(); err != nil {
				r.Discard(len(msg))
				c.err = err
				return
			}
		case wire.ReadyForQuery:
			if len(msg) > wire.HeaderLen {
				c.status = msg[wire.HeaderLen]
			}
			r.Discard(len(msg))
			if rfqs--; rfqs <= 0 {
				return
			}
			continue
		}
		r.Discard(len(msg))
	}
}

// finishWrite commits a wrapped write on every shard when all succeeded, else rolls it back
// on every shard. A COMMIT that fails after others succeeded is reported to the client, with
// the shards that committed.
func (s *ClientSession) finishWrite(conns []*fanConn, failed bool) {
	end := "COMMIT"
	if failed {
		end = "ROLLBACK"
	}
	var committed []int
	for _, c := range conns {
		if c.err != nil {
			continue
		}
		st, err := c.srv.Exec(end)
		c.status = st
		var se *backend.ServerError
		switch {
		case errors.As(err, &se):
			if c.errMsg == nil {
				msg := se.Message
				if len(committed) > 0 {
					msg = fmt.Sprintf("%s (the write committed on shards %v and failed on shard %d)", msg, committed, c.shard)
				}
				c.errMsg = wire.AppendError(nil, "ERROR", se.Code, msg)
				c.reply = nil
			}
		case err != nil:
			c.err = err
		case !failed:
			committed = append(committed, c.shard)
		}
	}
}

// fanNotes are the shards' notices, each distinct one once, in shard order.
func fanNotes(conns []*fanConn) []byte {
	var out []byte
	for _, c := range conns {
		for _, n := range c.notes {
			if !bytes.Contains(out, n) {
				out = append(out, n...)
			}
		}
	}
	return out
}

// fanConnError is the error of the first shard whose connection failed (as opposed to a
// shard's own ErrorResponse): its SQLSTATE and message, or "" when every shard answered.
func fanConnError(conns []*fanConn, maxMessageSize int) (code, msg string) {
	for _, c := range conns {
		switch {
		case errors.Is(c.err, errFanoutTooLarge):
			return "54000", fmt.Sprintf("the shards' results passed max_message_size (%d bytes) together; add a LIMIT or query one shard at a time", maxMessageSize)
		case c.err != nil:
			return "08006", fmt.Sprintf("shard %d (server %s): %v", c.shard, c.srv.Addr(), c.err)
		}
	}
	return "", ""
}

// readShards reads every shard's replies at once (the shards' servers run concurrently), up to
// rfqs ReadyForQuery each, all shards together within maxSize bytes; a connection that already
// failed is skipped.
func readShards(conns []*fanConn, maxSize int, wrap bool, rfqs int) {
	var budget atomic.Int64
	budget.Store(int64(maxSize))
	var wg sync.WaitGroup
	for _, c := range conns {
		if c.err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer recoverInto(&c.err)
			c.read(&budget, wrap, rfqs)
		}()
	}
	wg.Wait()
}
