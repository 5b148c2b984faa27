package frontend

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/merge"
	"github.com/sluicepg/sluice/internal/pool"
)

// A statement that needs another shard than the one of the server the session holds: inside
// a transaction block it may run there only with cross_shard_transactions = true, and then
// the other shards join the transaction; in an extended-protocol batch outside one, a read runs
// on servers of its own, its replies in order with the batch's.

// joinedServer is a server of another shard that a transaction across shards holds: it is
// inside the transaction's BEGIN until the transaction's COMMIT or ROLLBACK. Only the reader
// touches it.
type joinedServer struct {
	srv *backend.ServerConn
	pl  *pool.Pool
}

// errDetached is attachedShard's: waiting for the replies the client's earlier requests were
// due gave the server back to its pool, so the statement is routed afresh.
var errDetached = errors.New("the server went back to its pool")

// attachedShard decides where a statement goes when the session holds a server (of shard
// s.shard) in a sharded pool that reads keys: nil for that server, a *crossShard to run it
// elsewhere (crossShard.tx: inside the transaction across shards), errDetached, or a
// *codedError to refuse it. text is a Query's text or a Bind's statement text, bind the Bind's
// body.
func (s *ClientSession) attachedShard(text, bind []byte) error {
	if !s.txMode {
		return s.sameShard(text, bind)
	}
	st := s.sharding.Extractor.Analyze(text)
	if cp := st.Copy(); cp != nil && cp.From && cp.KeyTable {
		return s.sameShard(text, bind) // its refusal
	}
	s.mu.Lock()
	failed := s.tx == 'E'
	s.mu.Unlock()
	if failed {
		return nil // the server refuses everything but the end of the transaction
	}
	set, err := st.Shards(bindParams(bind))
	if err != nil {
		return &codedError{"0A000", err.Error()}
	}
	if one, ok := set.Single(); ok && one == s.shard {
		return nil // the common case: parsed no further
	}
	write := s.cls != nil && s.cls.Classify(text).Write
	var cs *crossShard
	if one, ok := set.Single(); ok {
		cs = &crossShard{shards: []int{one}, queries: []string{string(text)}}
		if pl := s.sharding.Planner.Plan(text); !write && pl.Kind == merge.Select && pl.Refused == nil {
			cs.plan = pl // rows are passed as they are, and an Execute's row limit works
		}
	} else {
		switch e := s.crossShardFor(text, bind, set).(type) {
		case nil:
			if set.All() {
				return nil // no key, and not run across shards: the server's shard answers
			}
			if write {
				return &codedError{"0A000", fmt.Sprintf("this write touches shards %s; sluice sends it to one shard only: add the sharding key to it, or set cross_shard_writes = \"all\"", set)}
			}
			return &codedError{"0A000", fmt.Sprintf("this statement touches shards %s but the session's server is on shard %d: %s", set, s.shard, s.otherShardAdvice())}
		case *crossShard:
			cs = e
		case *crossCopy:
			return &codedError{"0A000", "this COPY runs on several shards, which sluice does inside a transaction block or an extended-protocol batch only on one shard: run it on its own, outside a transaction block"}
		default:
			return e
		}
	}
	if !s.queueIdle() && !s.batchOpen() {
		// The client's earlier requests are complete: their replies say whether a
		// transaction is open.
		if err := s.drainAttached(); err != nil {
			return err
		}
		if !s.attached() {
			return errDetached
		}
	}
	s.mu.Lock()
	inTx := s.tx != 'I' || s.batchBegin
	idle := s.q.empty() && !s.open && !s.pumping
	s.mu.Unlock()
	if !inTx {
		// An extended-protocol batch that began on this server: a read runs on servers of
		// its own, and its replies come in order with the batch's; a write would not be part
		// of the batch's implicit transaction.
		if write {
			return &codedError{"0A000", fmt.Sprintf("this write runs on %s, and the statements before it in the batch run on shard %d: a write across shards must begin its own batch; send Sync before it", describeShards(cs.shards), s.shard)}
		}
		return cs
	}
	if !s.target.Settings().CrossShardTransactions {
		return &codedError{"0A000", fmt.Sprintf("this statement runs on %s, but its transaction runs on shard %d: %s", describeShards(cs.shards), s.shard, s.otherShardAdvice())}
	}
	if !idle {
		return &codedError{"0A000", fmt.Sprintf("this statement runs on %s, inside a transaction on shard %d that has statements before it in the same batch: send Sync before a statement for other shards", describeShards(cs.shards), s.shard)}
	}
	cs.tx, cs.wrap = true, false
	return cs
}

// otherShardAdvice says what to do about a statement that needs shards other than the
// session's server's.
func (s *ClientSession) otherShardAdvice() string {
	if s.target.Settings().CrossShardTransactions {
		return "inside an extended-protocol batch every statement must stay on one shard; send Sync before it"
	}
	return "a transaction stays on one shard unless cross_shard_transactions = true; choose its shard before BEGIN with SET SHARDING KEY or SET SHARD, or run the statement outside the transaction block"
}

// describeShards names a list of shards for an error message.
func describeShards(shards []int) string {
	if len(shards) == 1 {
		return fmt.Sprintf("shard %d", shards[0])
	}
	parts := make([]string, len(shards))
	for i, sh := range shards {
		parts[i] = fmt.Sprint(sh)
	}
	return "shards " + strings.Join(parts, ", ")
}

// queueIdle reports whether no reply is outstanding.
func (s *ClientSession) queueIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.empty()
}

// batchOpen reports whether an extended-protocol batch was sent without its Sync yet.
func (s *ClientSession) batchOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// drainAttached waits for every reply to the client's requests, which are all complete (a Query,
// or a batch and its Sync): the server is then back in its pool (outside a transaction block)
// or idle inside one, and the session's transaction status is known.
func (s *ClientSession) drainAttached() error {
	_ = s.flushServer()
	s.mu.Lock()
	pumping := s.pumping
	s.mu.Unlock()
	if pumping {
		s.pump.Wait() // it stops at the last ReadyForQuery
	}
	return s.settle()
}

// txServers returns the servers a statement of a transaction across shards runs on: the
// transaction's own server for its shard, and for every other shard the server that joined the
// transaction, joining one when the shard has none yet (checked out with the client's settings
// and given the transaction's BEGIN). The transaction's server must be idle.
func (s *ClientSession) txServers(shards []int) ([]*fanConn, error) {
	s.pump.Wait()
	_ = s.flushServer()
	conns := make([]*fanConn, 0, len(shards))
	for _, sh := range shards {
		if sh == s.shard {
			s.mu.Lock()
			c := &fanConn{shard: sh, srv: s.srv, pl: s.pl, status: s.tx, home: true}
			s.mu.Unlock()
			conns = append(conns, c)
			continue
		}
		j := s.joined[sh]
		if j == nil {
			var err error
			if j, err = s.join(sh); err != nil {
				return conns, err
			}
		}
		conns = append(conns, &fanConn{shard: sh, srv: j.srv, pl: j.pl, status: 'T'})
	}
	s.mu.Lock()
	for _, c := range conns {
		s.fanSrvs = append(s.fanSrvs, c.srv) // a cancel request reaches it
	}
	s.mu.Unlock()
	return conns, nil
}

// join checks out a server of shard sh for the transaction and begins the transaction there.
func (s *ClientSession) join(sh int) (*joinedServer, error) {
	begin := s.txBegin
	if begin == "" {
		begin = "BEGIN"
	}
	role := s.readRole([]byte(begin))
	rs, err := s.target.Pick(sh, role, nil)
	if err != nil {
		return nil, &codedError{"08006", fmt.Sprintf("shard %d: %v", sh, err)}
	}
	srv, err := s.checkoutFrom(rs.Pool, s.l.table().Config.General.QueryWaitTimeout)
	if err != nil {
		if errors.Is(err, errClientGone) {
			return nil, err
		}
		return nil, &codedError{checkoutCode(err), fmt.Sprintf("shard %d: %v", sh, err)}
	}
	srv.UnnamedOwner = nil
	if err := s.syncParams(srv); err != nil {
		srv.Broken = true
		rs.Pool.Release(srv)
		if fatal := s.attachFatal(err); fatal != nil {
			return nil, fatal
		}
		return nil, &codedError{"08006", fmt.Sprintf("shard %d: %v", sh, err)}
	}
	st, err := srv.Exec(begin)
	if err != nil || st != 'T' {
		if err == nil {
			err = fmt.Errorf("%q left the server in status %c", begin, st)
		}
		srv.Broken = true
		rs.Pool.Release(srv)
		var se *backend.ServerError
		if errors.As(err, &se) {
			return nil, &codedError{se.Code, fmt.Sprintf("shard %d: %s", sh, se.Message)}
		}
		return nil, &codedError{"08006", fmt.Sprintf("shard %d: begin the transaction: %v", sh, err)}
	}
	if s.joined == nil {
		s.joined = map[int]*joinedServer{}
	}
	j := &joinedServer{srv: srv, pl: rs.Pool}
	s.joined[sh] = j
	return j, nil
}

// txRunDone ends one statement of a transaction across shards: the transaction's server
// keeps its status, and a joined server that failed leaves the transaction (closed).
func (s *ClientSession) txRunDone(conns []*fanConn) {
	s.mu.Lock()
	clear(s.fanSrvs)
	s.fanSrvs = s.fanSrvs[:0]
	for _, c := range conns {
		if c.home {
			c.srv.UnnamedOwner = nil // the statement replaced the unnamed statement
			if c.err == nil {
				s.tx = c.status
			}
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		if !c.home && c.err != nil {
			s.leave(c.shard, true)
		}
	}
}

// abortAcross makes every server of the transaction fail its transaction after a statement
// failed on one of them, as Postgres fails a transaction at an error: a COMMIT then rolls
// back everywhere. With home, the transaction's own server too (a simple Query; in a batch,
// failBatch aborts it).
func (s *ClientSession) abortAcross(home bool) {
	const raise = "DO $sluice$ BEGIN RAISE EXCEPTION 'sluice: the transaction failed on another shard'; END $sluice$"
	for _, sh := range s.joinedShards() {
		if st, err := s.joined[sh].srv.Exec(raise); st != 'E' && !isServerError(err) {
			s.leave(sh, true)
		}
	}
	if !home {
		return
	}
	s.mu.Lock()
	srv, st := s.srv, s.tx
	s.mu.Unlock()
	if srv != nil && st == 'T' {
		st, err := srv.Exec(raise)
		if err != nil && !isServerError(err) {
			srv.Broken = true
		}
		s.mu.Lock()
		s.tx = st
		s.mu.Unlock()
	}
}

// joinedShards returns the shards that joined the transaction, in increasing order.
func (s *ClientSession) joinedShards() []int {
	shards := make([]int, 0, len(s.joined))
	for sh := range s.joined {
		shards = append(shards, sh)
	}
	slices.Sort(shards)
	return shards
}

// leave gives a joined server back to its pool (closed when broken, or when it may still be
// inside the transaction).
func (s *ClientSession) leave(sh int, broken bool) {
	j := s.joined[sh]
	if j == nil {
		return
	}
	delete(s.joined, sh)
	if broken {
		j.srv.Broken = true
	}
	j.pl.Release(j.srv)
}

// rollbackJoined rolls back and releases every joined server.
func (s *ClientSession) rollbackJoined() {
	for _, sh := range s.joinedShards() {
		st, err := s.joined[sh].srv.Exec("ROLLBACK")
		s.leave(sh, err != nil || st != 'I')
	}
	if p := s.fan; p != nil && p.cs.tx {
		s.fanDrop()
	}
}

// txControl runs before a statement of a transaction that other shards joined, before it goes
// to the transaction's server. The end of the transaction ends it on every joined shard first:
// COMMIT commits them one after another (and, if one fails, rolls back the others and the
// transaction's own shard, and the error says which shards committed); ROLLBACK, or COMMIT of
// a failed transaction, rolls them back. Savepoints, COMMIT AND CHAIN and PREPARE TRANSACTION
// are refused (a *codedError).
func (s *ClientSession) txControl(text []byte) error {
	if len(s.joined) == 0 {
		return nil
	}
	kw := firstKeyword(text)
	if kw == "SAVEPOINT" || kw == "RELEASE" || (kw == "ROLLBACK" && rollbackTo(text)) {
		return &codedError{"0A000", "savepoints are not supported in a transaction that spans several shards"}
	}
	r := s.cls.Classify(text)
	if !r.End {
		return nil
	}
	if r.Begin || kw == "PREPARE" { // COMMIT AND CHAIN begins the next transaction
		return &codedError{"0A000", "COMMIT AND CHAIN and PREPARE TRANSACTION are not supported in a transaction that spans several shards"}
	}
	if pl := s.sharding.Planner.Plan(text); pl.Kind == merge.Multi {
		return &codedError{"0A000", "in a transaction that spans several shards, send COMMIT or ROLLBACK on its own"}
	}
	if s.batchOpen() {
		return &codedError{"0A000", "in a transaction that spans several shards, send COMMIT or ROLLBACK at the start of a batch (after a Sync)"}
	}
	if err := s.drainAttached(); err != nil {
		return err
	}
	s.mu.Lock()
	st := s.tx
	s.mu.Unlock()
	if st != 'T' || (kw != "COMMIT" && kw != "END") {
		s.rollbackJoined()
		return nil
	}
	var committed []int
	for _, sh := range s.joinedShards() {
		st, err := s.joined[sh].srv.Exec("COMMIT")
		if err == nil && st == 'I' {
			committed = append(committed, sh)
			s.leave(sh, false)
			continue
		}
		// This shard did not commit: roll back the others and the transaction's own shard.
		s.leave(sh, true)
		s.rollbackJoined()
		s.rollbackHome()
		code, msg := "08006", fmt.Sprintf("COMMIT failed on shard %d", sh)
		var se *backend.ServerError
		if errors.As(err, &se) {
			code, msg = se.Code, fmt.Sprintf("COMMIT failed on shard %d: %s", sh, se.Message)
		} else if err != nil {
			msg += ": " + err.Error()
		}
		if len(committed) > 0 {
			msg += fmt.Sprintf("; shards %v committed (a transaction across shards is not atomic), the others rolled back", committed)
		} else {
			msg += "; the transaction was rolled back on every shard"
		}
		return &codedError{code, msg}
	}
	if p := s.fan; p != nil && p.cs.tx {
		s.fanDrop()
	}
	return nil
}

// txControlBatch is txControl for a Bind: a refusal fails the batch.
func (s *ClientSession) txControlBatch(text []byte) error {
	err := s.txControl(text)
	var ce *codedError
	if errors.As(err, &ce) {
		return s.failBatch(ce.code, ce.msg)
	}
	return err
}

// rollbackHome rolls back the transaction on the session's own server, which is idle, after
// another shard's COMMIT failed; the transaction-end hooks hear of it.
func (s *ClientSession) rollbackHome() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return
	}
	st, err := srv.Exec("ROLLBACK")
	if err != nil {
		srv.Broken = true
	}
	s.mu.Lock()
	s.tx = st
	if s.inBlock {
		s.inBlock = false
		if s.chain.HasTxEnd() {
			s.txEnds = append(s.txEnds, false)
		}
	}
	s.mu.Unlock()
	s.runOutcomeHooks()
}

// checkJoined ends a transaction across shards that ended on its own server without sluice
// seeing its COMMIT or ROLLBACK (a failed server, a transaction control statement inside a
// function): what the joined servers did is rolled back.
func (s *ClientSession) checkJoined() {
	s.mu.Lock()
	over := s.srv == nil || (s.tx == 'I' && s.q.empty() && !s.open)
	s.mu.Unlock()
	if over {
		s.l.log.Warn("a transaction across shards ended without its COMMIT or ROLLBACK; the shards it joined are rolled back", "shards", s.joinedShards())
		s.rollbackJoined()
	}
}

// noteBegin records the statement that begins a transaction block, for the shards that join
// it later; bind is set for a Bind's statement, which begins the transaction inside a batch.
func (s *ClientSession) noteBegin(text, bind []byte) {
	if s.cls == nil || len(text) > 200 {
		return
	}
	if kw := firstKeyword(text); kw != "BEGIN" && kw != "START" {
		return // not parsed: most statements are not BEGIN
	}
	if r := s.cls.Classify(text); r.Begin && !r.End {
		begin := strings.TrimSpace(string(text))
		if pl := s.sharding.Planner.Plan(text); pl.Kind != merge.Utility {
			begin = "BEGIN" // the BEGIN is one statement of several
		}
		s.txBegin = begin
		if bind != nil {
			s.batchBegin = true
		}
	}
}

// rollbackTo reports whether a ROLLBACK statement is ROLLBACK [WORK | TRANSACTION] TO.
func rollbackTo(text []byte) bool {
	f := strings.Fields(strings.ToUpper(strings.TrimSpace(string(text))))
	return len(f) >= 2 && (f[1] == "TO" || len(f) >= 3 && (f[1] == "WORK" || f[1] == "TRANSACTION") && f[2] == "TO")
}

// firstKeyword returns the first word of a statement in upper case, past spaces and comments.
func firstKeyword(text []byte) string {
	i := 0
	for i < len(text) {
		switch c := text[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(':
			i++
		case c == '-' && i+1 < len(text) && text[i+1] == '-':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			end := strings.Index(string(text[i+2:]), "*/")
			if end < 0 {
				return ""
			}
			i += end + 4
		default:
			j := i
			for j < len(text) && (text[j] >= 'a' && text[j] <= 'z' || text[j] >= 'A' && text[j] <= 'Z') {
				j++
			}
			return strings.ToUpper(string(text[i:j]))
		}
	}
	return ""
}
