package frontend

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/hooks"
	"github.com/sluicepg/sluice/internal/wire"
	"github.com/sluicepg/sluice/plugin"
)

// passKinds maps an extended-protocol message to the reply it expects.
var passKinds = [256]entryKind{
	wire.Parse: kParse, wire.Bind: kBind, wire.Describe: kDescribe, wire.Close: kClose,
	wire.Execute: kExecute, wire.FunctionCall: kFunc,
}

// extended handles Parse, Bind, Describe, Close, Execute and FunctionCall.
func (s *ClientSession) extended(typ byte, size int) error {
	msg, err := s.r.Message()
	if err != nil {
		return s.readError(err)
	}
	err = s.extendedMsg(typ, msg)
	s.record(msg)
	s.r.Discard(size)
	return err
}

func (s *ClientSession) extendedMsg(typ byte, msg []byte) error {
	if s.fan != nil {
		if handled, err := s.fanMessage(typ, msg); handled || err != nil {
			return err
		}
	}
	if s.answering != nil && (typ == wire.Describe || typ == wire.Execute) {
		if ok, err := s.answerExtended(typ, wire.Body(msg)); ok {
			return err
		}
	}
	if typ == wire.FunctionCall {
		if ch := s.hookChain(); ch.HasFunctionCall() {
			s.functionCallHooks(ch)
		}
	}
	if typ == wire.Parse || typ == wire.Bind || (typ == wire.Close && s.hookStmts != nil) {
		if ch := s.hookChain(); ch.HasQuery() {
			var done bool
			var err error
			if msg, done, err = s.extendedHooks(ch, typ, msg); done {
				return err
			}
		}
	}
	body := wire.Body(msg)
	var effect classify.SessionEffect // of the statement an unnamed Bind runs
	dropsAll := false                 // the statement an unnamed Bind runs may drop them all
	if s.txMode {
		switch typ {
		case wire.Parse:
			name, query, ptypes, ok := wire.ParseQuery(body)
			if !ok {
				return s.fatal("08P01", "invalid Parse message")
			}
			if containsListen(query) {
				return s.failBatch("0A000", errListenTxMode)
			}
			if len(name) > 0 {
				return s.parseNamed(string(name), query, ptypes)
			}
			if s.deferParse() || s.deferForHooks() {
				// Kept and sent in front of the Bind, on the shard the Bind's parameters
				// choose, or not at all when a plugin answers the Bind; see deferParse and
				// deferForHooks.
				s.mu.Lock()
				s.unnamed = append(s.unnamed[:0], msg...)
				s.unnamedSeq++
				s.mu.Unlock()
				s.unnamedDeferred = !s.deferParse()
				return s.synth(entry{kind: kParseSynth})
			}
		case wire.Bind:
			name, ok := wire.BindStatement(body)
			if !ok {
				return s.fatal("08P01", "invalid Bind message")
			}
			if len(name) > 0 {
				return s.useNamed(typ, body, name)
			}
			if s.settleUnnamed() {
				return nil
			}
			s.answering = nil // a new portal
			if done, err := s.deallocateBind(body); done {
				return err
			}
			var q []byte
			if u := s.unnamedMsg(); len(u) > 0 {
				_, q, _, _ = wire.ParseQuery(wire.Body(u))
			}
			s.bindSettings(body, q)
			effect = s.sessionEffect(q)
			dropsAll = mayDropStatements(q)
		case wire.Describe, wire.Close:
			kind, name, ok := wire.StatementRef(typ, body)
			if !ok || (kind != 'S' && kind != 'P') {
				return s.fatal("08P01", fmt.Sprintf("invalid %s message", msgName(typ)))
			}
			if kind == 'S' && len(name) > 0 {
				if typ == wire.Close {
					return s.closeNamed(string(name))
				}
				return s.useNamed(typ, body, name)
			}
			if kind == 'S' && typ == wire.Describe && s.settleUnnamed() {
				return nil
			}
			if typ == wire.Close && !s.attached() {
				// No server: no portal or unnamed statement survives outside a transaction.
				if kind == 'S' {
					s.mu.Lock()
					s.unnamed, s.unnamedDeferred, s.unnamedDropped = s.unnamed[:0], false, s.unnamedSeq
					// The last server keeps the statement: it is no longer the client's.
					s.unnamedSeq++
					s.mu.Unlock()
				}
				return s.synth(entry{kind: kCloseSynth})
			}
		}
	}
	rt := s.routingText(typ, body)
	var bind, shardText []byte
	if typ == wire.Bind {
		bind, shardText = body, rt // only a Bind has the parameters that may name the shard
		if len(s.joined) > 0 && rt != nil {
			if err := s.txControlBatch(rt); err != nil {
				return err
			}
			if s.failing {
				return nil
			}
		}
	}
	srv, err := s.attach(s.classify(rt), shardText, bind)
	if err != nil {
		var cs *crossShard
		if errors.As(err, &cs) && typ == wire.Bind {
			_, q, ptypes, _ := wire.ParseQuery(wire.Body(s.unnamedMsg()))
			return s.fanBind(cs, body, q, ptypes, false)
		}
		if fatal := s.attachFatal(err); fatal != nil {
			return fatal
		}
		return s.failBatch(checkoutCode(err), err.Error())
	}
	markSession(srv, effect)
	dropped := s.unnamedDropped
	if s.txMode {
		missing, err := s.unnamedLocked(srv, typ, msg)
		if err != nil || missing {
			s.mu.Unlock()
			if missing {
				return s.failBatch("26000", "unnamed prepared statement does not exist")
			}
			return err
		}
	}
	e := entry{kind: passKinds[typ], copyGen: s.copyEnds, dropsAll: dropsAll}
	if typ == wire.Parse {
		e.seq = s.unnamedSeq
	}
	if typ == wire.Close && s.txMode && body[0] == 'S' {
		e.seq, e.dropsUnnamed, e.dropped = s.unnamedSeq, true, dropped
	}
	if typ == wire.Execute && s.portalSets != nil {
		portal, _, _ := wire.CString(body)
		e.sets = s.portalSets[string(portal)]
	}
	if typ == wire.Describe && body[0] == 'S' && s.chain != nil {
		e.desc = "S" + string(body[1:len(body)-1])
	}
	if s.pendingCapture != nil && (typ == wire.Execute || (typ == wire.Describe && body[0] == 'P')) {
		e.capture = s.pendingCapture
		e.capture.queued = true // s.mu is held
		s.capOut.Store(true)
		if typ == wire.Execute {
			s.pendingCapture = nil
		}
	}
	s.q.push(e)
	if typ != wire.FunctionCall {
		s.open = true
	}
	s.mu.Unlock()
	return s.toServer(srv, msg)
}

// The client's unnamed statement's Parse, s.unnamed, is the reader's, but the pump changes it
// too (serverErrorLocked: the server skipped or failed that Parse) while the reader reads the
// client's next messages. So both read and set it under s.mu, and the pump never writes into its
// bytes but sets a copy (setUnnamedLocked): a query text the reader took from it stays as it was.

// unnamedMsg returns the client's unnamed statement's Parse, empty when it has none.
func (s *ClientSession) unnamedMsg() []byte {
	s.mu.Lock()
	u := s.unnamed
	s.mu.Unlock()
	return u
}

// setUnnamedLocked makes a copy of msg (nil: none) the client's unnamed statement's Parse, in a
// buffer of its own. s.mu is held.
func (s *ClientSession) setUnnamedLocked(msg []byte) {
	if len(msg) == 0 {
		s.unnamed = nil
		return
	}
	s.unnamed = append([]byte(nil), msg...)
}

// unnamedLocked keeps the client's unnamed statement on whatever server it uses: clients such as
// pgx (describe-exec mode) Parse it in one round trip and Bind it in the next, which in
// transaction mode may be on another server, or on the same one after another client replaced
// it. The last unnamed Parse is kept and sent again, its reply swallowed, when the server lacks
// it. s.mu is held.
//
// missing is set when the client Binds or Describes an unnamed statement it does not have: the
// server's unnamed statement, if any, belongs to another client and must not be used.
func (s *ClientSession) unnamedLocked(srv *backend.ServerConn, typ byte, msg []byte) (missing bool, err error) {
	switch typ {
	case wire.Parse:
		s.unnamed = append(s.unnamed[:0], msg...)
		s.unnamedSeq++
		srv.UnnamedOwner, srv.UnnamedSeq = s, s.unnamedSeq
		n := len(s.unnamedSent)
		if n < cap(s.unnamedSent) {
			s.unnamedSent = s.unnamedSent[:n+1]
		} else {
			s.unnamedSent = append(s.unnamedSent, sentParse{})
		}
		s.unnamedSent[n].seq, s.unnamedSent[n].msg = s.unnamedSeq, append(s.unnamedSent[n].msg[:0], msg...)
	case wire.Bind, wire.Describe:
		if typ == wire.Describe && wire.Body(msg)[0] != 'S' {
			return false, nil
		}
		s.unnamedDeferred = false
		if srv.UnnamedOwner == s && srv.UnnamedSeq == s.unnamedSeq {
			return false, nil
		}
		if len(s.unnamed) == 0 {
			// The client's Parse failed in this batch while the message was being read (the
			// reader drops it when the error came first): the server skips it, as Postgres
			// does without sluice. Otherwise the client has no unnamed statement.
			return !s.skipToSync.Load(), nil
		}
		s.q.push(entry{kind: kParseSwallow, seq: s.unnamedSeq})
		srv.UnnamedOwner, srv.UnnamedSeq = s, s.unnamedSeq
		return false, s.toServer(srv, s.unnamed)
	case wire.Close:
		if wire.Body(msg)[0] == 'S' {
			s.unnamed, s.unnamedDropped = s.unnamed[:0], s.unnamedSeq
			srv.UnnamedOwner = nil // the server's unnamed statement goes, whoever's it was
		}
	}
	return false, nil
}

// unnamedAnsweredLocked takes the client's unnamed Parse number seq, and those before it, off
// unnamedSent once the server answered it; ok keeps it as the client's unnamed statement
// (unnamedGood). s.mu is held.
func (s *ClientSession) unnamedAnsweredLocked(seq uint64, ok bool) {
	i := 0
	for ; i < len(s.unnamedSent) && s.unnamedSent[i].seq <= seq; i++ {
		if ok && s.unnamedSent[i].seq == seq {
			s.unnamedGood, s.unnamedGoodSeq = append(s.unnamedGood[:0], s.unnamedSent[i].msg...), seq
		}
	}
	if i == 0 {
		return
	}
	// Move the rest to the front, keeping the answered ones' buffers for reuse.
	rest := len(s.unnamedSent) - i
	for j := 0; j < rest; j++ {
		s.unnamedSent[j], s.unnamedSent[j+i] = s.unnamedSent[j+i], s.unnamedSent[j]
	}
	s.unnamedSent = s.unnamedSent[:rest]
}

// settleUnnamed waits for the replies to earlier batches (awaitEarlierBatches) when the client
// seems to have no unnamed statement only because a Close of it, or a Query after unsynced
// messages, is still unanswered: an error before it makes the server skip it, and the client
// has its statement after all, which a Bind or Describe read before the error came must find
// (seed 4643). It reports that the batch being read failed meanwhile: the message is skipped.
func (s *ClientSession) settleUnnamed() (skipped bool) {
	s.mu.Lock()
	unsure := len(s.unnamed) == 0 && s.q.holdsUnnamedDrop()
	s.mu.Unlock()
	return unsure && s.awaitEarlierBatches() && s.skipToSync.Load()
}

// checkDeferredParse sends the unnamed statement's deferred Parse (see deferForHooks) to a
// server at the Sync of a batch that never used it, so that a statement Postgres cannot prepare
// fails in its own batch, as it would without sluice.
func (s *ClientSession) checkDeferredParse() error {
	u := s.unnamedMsg()
	if len(u) == 0 {
		return nil
	}
	_, query, _, _ := wire.ParseQuery(wire.Body(u))
	srv, err := s.attach(s.classify(query), nil, nil)
	if err != nil {
		if fatal := s.attachFatal(err); fatal != nil {
			return fatal
		}
		return s.failBatch(checkoutCode(err), err.Error())
	}
	s.q.push(entry{kind: kParseSwallow, seq: s.unnamedSeq})
	srv.UnnamedOwner, srv.UnnamedSeq = s, s.unnamedSeq
	s.open = true
	u = s.unnamed
	s.mu.Unlock()
	return s.toServer(srv, u)
}

func msgName(typ byte) string {
	if typ == wire.Close {
		return "Close"
	}
	return "Describe"
}

func (s *ClientSession) attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}

// synth queues a reply that sluice gives itself and sends it at once when nothing is pending
// before it.
func (s *ClientSession) synth(e entry) error {
	s.mu.Lock()
	s.q.push(e)
	now := s.q.takeSynth(nil)
	s.mu.Unlock()
	return s.emit(now...)
}

// serverStatementName names a statement on servers after its text and parameter types, so every
// client that prepares the same query shares one server-side statement.
func serverStatementName(query, ptypes []byte) string {
	h := sha256.New()
	h.Write(query)
	h.Write([]byte{0})
	h.Write(ptypes)
	var sum [32]byte
	return statementPrefix + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// statementPrefix begins every server statement name sluice makes; the hash's 32 hex digits
// follow, then a renewal's number after a stale plan (route.StatementSet.Renew).
const statementPrefix = "sluice_"

// baseStatementName returns a server statement name without its renewal's number.
func baseStatementName(name string) string {
	if n := len(statementPrefix) + 32; len(name) > n {
		return name[:n]
	}
	return name
}

// parseNamed handles the client's Parse of a named statement in transaction mode: the statement
// is recorded under the client's name and prepared on the server, again if the server has it
// already. Postgres fixes a statement's parameter types, result columns and the objects it
// names when it parses it; a server statement another client (or this one, before it closed
// its own) prepared before a schema change has the old ones, and a client's Parse must not get
// those (parameter types it cannot encode for, "cached plan must not change result type", or
// "cache lookup failed for type" once a type was dropped). Binds of the statement on servers
// the client did not Parse it on use what they have, as before.
func (s *ClientSession) parseNamed(name string, query, ptypes []byte) error {
	dup, skipped := s.settledStatement(name)
	if skipped {
		return nil
	}
	if dup != nil {
		return s.parseDuplicate(dup, name, query, ptypes)
	}
	sname := s.target.Statements.Current(serverStatementName(query, ptypes))
	if s.renewUnsure(sname, query) {
		// Whether the transaction failed in an earlier request decides how the statement is
		// prepared again (prepareLocked): wait for its replies (seed 4860, pipelined).
		s.awaitEarlierBatches()
		if s.skipToSync.Load() {
			return nil
		}
	}
	st := &statement{server: sname, parse: wire.AppendParse(nil, sname, query, ptypes), effect: s.sessionEffect(query),
		dropsAll: mayDropStatements(query)}
	if (s.target.Statements.Has(sname) || s.deferParse()) && !s.attached() {
		st.renew = true // prepared again on the first server that has it (useNamed)
		s.mu.Lock()
		if s.stmts == nil {
			s.stmts = map[string]*statement{}
		}
		st.batch, st.confirmed = s.syncs, s.q.empty() // answered at once, or behind replies an error may skip
		s.stmts[name] = st
		s.mu.Unlock()
		return s.synth(entry{kind: kParseSynth, client: name, stmt: st})
	}
	srv, err := s.attach(s.classify(query), nil, nil)
	if err != nil {
		if fatal := s.attachFatal(err); fatal != nil {
			return fatal
		}
		return s.failBatch(checkoutCode(err), err.Error())
	}
	// Replaying this request after a server failure would find the statement already made.
	s.recording = false
	if s.stmts == nil {
		s.stmts = map[string]*statement{}
	}
	st.batch = s.syncs
	s.stmts[name] = st
	s.open = true
	send := s.prepareLocked(srv, st, kParse, name, s.scratch[:0])
	s.mu.Unlock()
	s.scratch = send[:0]
	return s.toServer(srv, send)
}

// renewUnsure reports whether the server the session holds has statement sname, which a Parse of
// query would renew, while a request still unanswered may fail the transaction before the Parse
// runs: in a failed transaction the renewing Close would run and the Parse fail, and the server
// lose the statement that the client's other names for the text still use.
func (s *ClientSession) renewUnsure(sname string, query []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil && s.srv.Prepared.Has(sname) && s.q.holdsRequestEnd() && refusedInFailedTx(query)
}

// awaitRenewal waits for the replies to earlier requests (awaitEarlierBatches) when st, which
// the client prepared without a server (st.renew), would be renewed on the server the session
// holds while one of them may fail the transaction (renewUnsure): renewRefusedLocked then finds
// out whether to renew it. skipped reports that the batch being read failed meanwhile.
func (s *ClientSession) awaitRenewal(st *statement) (skipped bool) {
	if !st.renew || !s.renewUnsure(st.server, st.query()) {
		return false
	}
	return s.awaitEarlierBatches() && s.skipToSync.Load()
}

// renewRefusedLocked reports whether st, which the client prepared without a server (st.renew)
// and srv has, is to be used as srv has it rather than renewed before a Describe, Bind or Parse
// of it: in a failed transaction Postgres refuses its Parse (25P02) but runs the renewing Close,
// and srv would lose the statement the client's other names for the text use (as seed 4860);
// the Parse alone (prepareLocked's kept) would fail a Describe that Postgres answers. Renewal
// only guards against a schema change since another client parsed the text, and a failed
// transaction changes nothing: st stays to renew at its next use. No request end is queued, so
// s.tx is the status the message runs in, unless a ROLLBACK in the batch ended the failed
// transaction; then the statement is only not renewed. s.mu is held.
func (s *ClientSession) renewRefusedLocked(srv *backend.ServerConn, st *statement) bool {
	return srv == s.srv && s.tx == 'E' && !s.q.holdsRequestEnd() && srv.Prepared.Has(st.server) &&
		!s.unparsedBeforeLocked(srv, st.server) && refusedInFailedTx(st.query())
}

// parseDuplicate handles the client's Parse of a name it has: the server is sent the Parse under
// the server name of the client's statement (prepared first if the server lacks it), so that
// its error is the one Postgres gives, whose checks of the text come before the name's.
func (s *ClientSession) parseDuplicate(st *statement, name string, query, ptypes []byte) error {
	if s.awaitRenewal(st) {
		return nil
	}
	srv, err := s.attach(s.classify(st.query()), nil, nil)
	if err != nil {
		if fatal := s.attachFatal(err); fatal != nil {
			return fatal
		}
		return s.failBatch("42P05", fmt.Sprintf("prepared statement %q already exists", name))
	}
	s.recording = false
	send := s.scratch[:0]
	if (st.renew && !s.renewRefusedLocked(srv, st)) || !srv.Prepared.Has(st.server) || s.unparsedBeforeLocked(srv, st.server) {
		send = s.prepareLocked(srv, st, kParseSwallow, "", send)
	}
	s.q.push(entry{kind: kParseDup, name: st.server, client: name})
	send = wire.AppendParse(send, st.server, query, ptypes)
	s.open = true
	s.mu.Unlock()
	s.scratch = send[:0]
	return s.toServer(srv, send)
}

// settledStatement returns the client's statement name as the server will find it when the
// message being read runs. sluice's record of the client's statements is ahead of the server's
// replies: a Parse in an earlier batch still unanswered, or a Close, may yet be skipped by an
// error in that batch, and a client that pipelines uses the name after that batch's Sync; a
// DEALLOCATE ALL or DISCARD ALL sent before may drop the statement. Then the reader waits for
// those replies (awaitEarlierBatches); skipped reports that the batch being read failed
// meanwhile, so the server skips the message.
func (s *ClientSession) settledStatement(name string) (st *statement, skipped bool) {
	s.mu.Lock()
	st = s.stmts[name]
	unsure := st != nil && (!st.confirmed && st.batch != s.syncs || s.q.holdsDropAll()) ||
		st == nil && s.q.holdsClose(name)
	s.mu.Unlock()
	if !unsure || !s.awaitEarlierBatches() {
		return st, false
	}
	if s.skipToSync.Load() {
		return nil, true
	}
	s.mu.Lock()
	st = s.stmts[name]
	s.mu.Unlock()
	return st, false
}

// awaitEarlierBatches waits for the replies to everything the client sent before the message
// being read, when they include the end of an earlier request (a Sync or a Query), and reports
// whether it waited. Until then sluice's view of the client's statements is a guess: a client
// that pipelines may Parse a name again after a Sync, and whether Postgres finds the name taken
// depends on whether an error in the earlier batch skipped its first Parse. The server is sent
// a Flush, so that it answers the current batch's messages too.
func (s *ClientSession) awaitEarlierBatches() bool {
	s.mu.Lock()
	srv, pl := s.srv, s.pl
	// A COPY FROM the client ended (with a message of another kind) ends at the server too:
	// its replies come.
	if srv == nil || s.copyOpen || s.copyInWaitingLocked() || !s.q.holdsRequestEnd() {
		s.mu.Unlock()
		return false
	}
	drained := make(chan struct{})
	s.drained = drained
	if !s.pumping {
		s.recording, s.fresh = false, false // the pump reads the replies: no retry
		s.startPumpLocked(srv, pl)
	}
	s.mu.Unlock()
	_ = s.toServer(srv, []byte{wire.Flush, 0, 0, 0, 4})
	_ = s.flushServer()
	<-drained // closed once the queue is empty, or when the server is lost
	return true
}

// prepareLocked appends to dst the messages that prepare st on srv (closing it first if srv has
// it, or else evicting the least recently used statement if the server's cache is full) and
// queues their replies. s.mu must be held.
func (s *ClientSession) prepareLocked(srv *backend.ServerConn, st *statement, kind entryKind, client string, dst []byte) []byte {
	st.renew = false
	retry := s.unparsedBeforeLocked(srv, st.server)
	renew := srv.Prepared.Has(st.server)
	if renew && srv == s.srv && s.tx == 'E' && s.q.empty() && refusedInFailedTx(st.query()) {
		// In a failed transaction Postgres refuses the Parse of anything but the end of a
		// transaction (25P02) before it looks at the name: the Close that renews the statement
		// would run and its Parse fail, and the server would lose the statement that the
		// client's other names for the text still use, for a Describe, which a failed
		// transaction allows (seed 4860). The Parse alone fails the same, and it stays.
		e := entry{kind: kind, name: st.server, client: client, kept: true}
		if client != "" {
			e.stmt = st
		}
		s.q.push(e)
		return append(dst, st.parse...)
	}
	if renew {
		s.q.push(entry{kind: kCloseSwallow, name: st.server, retry: retry})
		dst = wire.AppendStatementMsg(dst, wire.Close, 'S', st.server)
	} else if ev := srv.Prepared.Add(st.server); ev != "" {
		s.q.push(entry{kind: kCloseSwallow, name: ev})
		dst = wire.AppendStatementMsg(dst, wire.Close, 'S', ev)
	}
	e := entry{kind: kind, name: st.server, client: client, renew: renew, retry: retry}
	if client != "" {
		e.stmt = st
	}
	s.q.push(e)
	if !renew {
		if s.unparsed == nil {
			s.unparsed = map[string]pendingParse{}
		}
		s.unparsed[st.server] = pendingParse{srv, s.syncs}
	}
	return append(dst, st.parse...)
}

// pendingParse is a Parse of a named statement sent to srv after the session's syncs-th Sync
// and not yet answered.
type pendingParse struct {
	srv   *backend.ServerConn
	syncs uint64
}

// refusedInFailedTx reports whether Postgres refuses the Parse of text in a failed transaction
// (25P02), by its first keyword: a statement that does not end a transaction (not COMMIT, END,
// ROLLBACK, ABORT or PREPARE TRANSACTION: IsTransactionExitStmt). A text without a keyword
// first does not count, an empty one among them, which Postgres parses (seed 9547); nor does a
// PREPARE of a statement.
func refusedInFailedTx(text []byte) bool {
	switch firstKeyword(text) {
	case "", "COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE":
		return false
	}
	return true
}

// unparsedBeforeLocked reports whether srv counts statement name as prepared on the word of a
// Parse still unanswered in an earlier batch than the one being sent: an error in that batch
// skips the Parse, and a Bind sent now without its own Parse would find no statement.
// s.mu is held.
func (s *ClientSession) unparsedBeforeLocked(srv *backend.ServerConn, name string) bool {
	p, ok := s.unparsed[name]
	return ok && p.srv == srv && p.syncs != s.syncs
}

// useNamed handles a Bind or Describe of a named statement in transaction mode: the server gets
// the Parse it lacks, then the message with the statement renamed.
func (s *ClientSession) useNamed(typ byte, body, name []byte) error {
	st, skipped := s.settledStatement(string(name))
	if skipped {
		return nil
	}
	if st == nil {
		return s.failBatch("26000", fmt.Sprintf("prepared statement %q does not exist", name))
	}
	if s.awaitRenewal(st) {
		return nil
	}
	var bind, shardText []byte
	if typ == wire.Bind {
		bind, shardText = body, st.query()
		s.bindSettings(body, shardText)
		if len(s.joined) > 0 {
			if err := s.txControlBatch(shardText); err != nil {
				return err
			}
			if s.failing {
				return nil
			}
		}
	}
	srv, err := s.attach(s.classify(st.query()), shardText, bind)
	if err != nil {
		var cs *crossShard
		if errors.As(err, &cs) && typ == wire.Bind {
			_, q, ptypes, _ := wire.ParseQuery(wire.Body(st.parse))
			return s.fanBind(cs, body, q, ptypes, true)
		}
		if fatal := s.attachFatal(err); fatal != nil {
			return fatal
		}
		return s.failBatch(checkoutCode(err), err.Error())
	}
	if typ == wire.Bind {
		markSession(srv, st.effect)
	}
	send := s.scratch[:0]
	if (st.renew && !s.renewRefusedLocked(srv, st)) || !srv.Prepared.Has(st.server) || s.unparsedBeforeLocked(srv, st.server) {
		send = s.prepareLocked(srv, st, kParseSwallow, "", send)
	}
	if typ == wire.Bind {
		s.q.push(entry{kind: kBind, name: st.server, client: string(name), dropsAll: st.dropsAll})
		send = wire.AppendBindRenamed(send, body, st.server)
	} else {
		e := entry{kind: kDescribe, name: st.server, client: string(name)}
		if s.chain != nil {
			e.desc = "S" + string(name)
		}
		s.q.push(e)
		send = wire.AppendStatementMsg(send, wire.Describe, 'S', st.server)
	}
	s.open = true
	s.mu.Unlock()
	s.scratch = send[:0]
	return s.toServer(srv, send)
}

// closeNamed forgets the client's statement; the server keeps it for other clients.
func (s *ClientSession) closeNamed(name string) error {
	s.recording = false // a replay would not find the statement
	s.mu.Lock()
	st := s.stmts[name]
	delete(s.stmts, name)
	s.mu.Unlock()
	return s.synth(entry{kind: kCloseSynth, client: name, closed: st})
}

// extendedHooks runs the query hooks for a Parse (the statement's text, which a hook may
// rewrite) or a Bind (the statement's text and the parameters). done is set when a hook rejected
// the message: the batch then fails to Sync.
func (s *ClientSession) extendedHooks(ch *hooks.Chain, typ byte, msg []byte) (out []byte, done bool, err error) {
	body := wire.Body(msg)
	var act plugin.Action
	switch typ {
	case wire.Close:
		if kind, name, ok := wire.StatementRef(typ, body); ok && kind == 'S' {
			delete(s.hookStmts, string(name))
			s.forgetStatementDesc(string(name))
		}
		return msg, false, nil
	case wire.Parse:
		name, query, ptypes, ok := wire.ParseQuery(body)
		if !ok {
			return msg, false, nil // the usual path reports it
		}
		// A new statement under the name: its row description is not the old one's.
		s.forgetStatementDesc(string(name))
		act = s.queryHooks(ch, plugin.Parse, query, "", nil, nil, nil)
		if act.Rewrite != "" && act.Kind == plugin.Continue {
			query = []byte(act.Rewrite)
			msg = wire.AppendParse(nil, string(name), query, ptypes)
		}
		if s.hookStmts == nil {
			s.hookStmts = map[string]hookStmt{}
		}
		if _, known := s.hookStmts[string(name)]; len(s.hookStmts) < maxHookStmts || known {
			s.hookStmts[string(name)] = hookStmt{text: string(query), types: paramTypes(ptypes)}
		}
	case wire.Bind:
		if pc := s.pendingCapture; pc != nil {
			s.mu.Lock()
			pc.queued = true // replaced before it was executed
			s.mu.Unlock()
		}
		s.answering, s.pendingCapture = nil, nil
		name, ok := wire.BindStatement(body)
		vals, bin, ok2 := wire.BindParams(body)
		rf, ok3 := wire.BindResultFormats(body)
		if !ok || !ok2 || !ok3 {
			return msg, false, nil
		}
		hs := s.hookStmts[string(name)]
		act = s.queryHooks(ch, plugin.Bind, nil, hs.text, vals, bin, rf, hs.types...)
		unnamedPortal := len(body) > 0 && body[0] == 0
		if act.Kind == plugin.Answer && unnamedPortal && !s.inTransaction() {
			// The plugin's result stands in for the portal: sluice answers the Bind now,
			// and the Describe and Execute of the portal from the result.
			w := act.Wire
			if w == nil {
				w = wireFromRows(&act)
			}
			desc, rest := splitRowDescription(w)
			s.answering = &wireAnswer{desc: desc, rest: rest}
			if len(name) == 0 {
				// The plugin answered from the text the deferred Parse carries; that text ran
				// before, so the Sync need not check it on a server.
				s.unnamedDeferred = false
			}
			return nil, true, s.synth(entry{kind: kRawSynth, msg: []byte{wire.BindComplete, 0, 0, 0, 4}})
		}
		if act.Kind == plugin.Continue && unnamedPortal {
			if s.pendingCapture = s.newCaptureReq(&act); s.pendingCapture != nil {
				s.pendingCapture.stmt, s.pendingCapture.resFmts = string(name), rf
			}
		}
	}
	switch act.Kind {
	case plugin.Reject:
		return nil, true, s.failBatch(act.Code, act.Message)
	case plugin.Answer:
		if typ == wire.Parse {
			return msg, false, nil // answers are given at the Bind, with its parameters
		}
		// Inside a transaction block (or for a named portal) the query runs.
	}
	return msg, false, nil
}

// maxHookStmts bounds the statement texts kept for query hooks per client.
const maxHookStmts = 10000
