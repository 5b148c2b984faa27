package frontend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/shard"
	"github.com/sluicepg/sluice/internal/wire"
)

// routing is a client's routing state. Only the reader touches it.
type routing struct {
	// rsrv is the server (of the routing table) the attached connection came from.
	rsrv *route.Server
	// avoid is a server that just failed this client's request: the retry goes elsewhere.
	avoid *route.Server
	// recording is set while the request sent since the server was attached may be sent again
	// to another server: the client has heard nothing of the reply yet (pumpLoop holds what came
	// back meanwhile), and running it twice cannot write twice. replay holds its messages.
	recording bool
	retrying  bool
	replay    []byte
	// fresh is set from a new server's attach until its first reply: a server found shutting
	// down then (goneCode) ran nothing of the request.
	fresh    bool
	goneCode string

	// cls classifies queries when the parser is on (the pool's, kept with target).
	cls *classify.Classifier
	// roleSet is pgcat's SET SERVER ROLE for this client: "" (the pool's default), "primary",
	// "replica", "any" or "auto". primaryReads is SET PRIMARY READS: 0 the pool's, 1 on, -1 off.
	roleSet      string
	primaryReads int8
	// readOnly is set after the client made its transactions read only by default (SET
	// SESSION CHARACTERISTICS, default_transaction_read_only): a plain BEGIN may use a replica.
	readOnly bool
	// wrote maps a table the client wrote to when read_your_writes_ms ends for it (unix ns).
	wrote map[string]int64

	// sharding is the pool's (kept with target); shard is the shard of the attached server.
	// pinned is set by SET SHARD and SET SHARDING KEY: pinnedShard then serves every
	// transaction, as in pgcat.
	sharding    *route.Sharding
	shard       int
	pinned      bool
	pinnedShard int
	rnd         uint32
	// fan is a portal bound across shards in the extended protocol, waiting for its Execute
	// or held after it (fanext.go).
	fan *fanPortal
	// joined are the servers of other shards that joined the transaction, by shard
	// (cross_shard_transactions, txshards.go); txBegin is the statement that began the
	// transaction, which they are given; batchBegin is set when a Bind of the open batch
	// began a transaction block, before its reply says so.
	joined     map[int]*joinedServer
	txBegin    string
	batchBegin bool
	// copyPending is a COPY FROM STDIN across shards that queryMsg decided on, run by
	// copyInPending once its Query is consumed.
	copyPending *crossCopy
}

// codedError is an error with the SQLSTATE the client gets.
type codedError struct {
	code, msg string
}

func (e *codedError) Error() string { return e.msg }

// shardFor decides the shard of the transaction that text (with Bind body bind, or nil) begins:
// SET SHARD / SET SHARDING KEY, else a comment hint, else the sharding key the parser finds,
// else default_shard.
func (s *ClientSession) shardFor(text, bind []byte) (int, error) {
	sh := s.sharding
	if sh == nil || sh.Shards < 2 {
		return 0, nil
	}
	if s.pinned {
		return s.pinnedShard, nil
	}
	if h := sh.Hints.Find(text, sh.Sharder); h.Kind != shard.NoHint {
		if h.Shard < 0 || h.Shard >= sh.Shards {
			return 0, &codedError{"22023", fmt.Sprintf("shard %d does not exist: the pool has %d shards", h.Shard, sh.Shards)}
		}
		return h.Shard, nil
	}
	if sh.Extractor != nil && text != nil {
		set, err := sh.Extractor.Shards(text, bindParams(bind))
		if err != nil {
			return 0, &codedError{"0A000", err.Error()}
		}
		if one, ok := set.Single(); ok {
			return one, nil
		}
		// More than one shard, or no key: the statement may run on several shards (see
		// fanout.go, fanext.go). Otherwise a write there would land on one shard only: refuse
		// it. A read of several named shards would miss rows: refuse it too. A read without a
		// key goes to default_shard, as in pgcat.
		if err := s.crossShardFor(text, bind, set); err != nil {
			return 0, err
		}
		if s.cls != nil && s.cls.Classify(text).Write {
			return 0, &codedError{"0A000", fmt.Sprintf("this write touches %s; sluice sends it to one shard only: add the sharding key to it, choose a shard with SET SHARD, or set cross_shard_writes = \"all\" (transaction-mode pools)", describeSet(set))}
		}
		if !set.All() {
			return 0, &codedError{"0A000", fmt.Sprintf("this query reads %s; sluice runs a query on several shards only in a transaction-mode pool, and only a SELECT: query one shard at a time", describeSet(set))}
		}
	}
	s.rnd++
	return sh.Default(s.target, uint32(s.pid)+s.rnd), nil
}

// bindParams returns the parameters of a Bind body (nil: none) for key extraction.
func bindParams(bind []byte) shard.Params {
	var p shard.Params
	if bind == nil {
		return p
	}
	if vals, bin, ok := wire.BindParams(bind); ok {
		p.Values, p.Formats = vals, make([]int16, len(bin))
		for i, b := range bin {
			if b {
				p.Formats[i] = 1
			}
		}
	}
	return p
}

// maxReplay bounds the request kept for a retry; a larger one is not retried.
const maxReplay = 64 << 10

// record keeps msg for a retry while the request may still be retried.
func (s *ClientSession) record(msg []byte) {
	if !s.recording {
		return
	}
	if len(s.replay)+len(msg) > maxReplay {
		s.recording = false
		return
	}
	s.replay = append(s.replay, msg...)
}

// classify returns the classification of query text q for routing, or nil when the client's
// queries are not parsed (or q is unknown). It notes the tables a write touches, for
// read_your_writes_ms.
func (s *ClientSession) classify(q []byte) *classify.Result {
	if q == nil {
		return nil
	}
	pc := s.target.Settings()
	if !s.parserOn(pc) {
		return nil
	}
	if n := len(q); n > 0 && q[n-1] == 0 {
		q = q[:n-1] // a Query message's text ends with its NUL
	}
	r := s.cls.Classify(q)
	if r.SessionAccess != classify.AccessUnchanged {
		s.readOnly = r.SessionAccess == classify.AccessReadOnly
	}
	if pc.ReadYourWrites > 0 && len(r.Writes) > 0 {
		s.noteWrites(r.Writes, pc.ReadYourWrites)
	}
	return r
}

// parserOn reports whether the client's queries are parsed for read/write splitting: the pool's
// query_parser_enabled and query_parser_read_write_splitting, unless SET SERVER ROLE says
// otherwise. A session-mode client keeps one server for its whole session, chosen before its
// first query could say whether the session writes: there the role is the pool's default_role
// or the client's SET SERVER ROLE.
func (s *ClientSession) parserOn(pc *config.Pool) bool {
	if !s.txMode || !pc.QueryParserReadWriteSplitting {
		return false
	}
	switch s.roleSet {
	case "auto":
		return true
	case "primary", "replica", "any":
		return false
	}
	return pc.QueryParserEnabled
}

// roleFor decides what the transaction that begins with a query classified as r (nil: not
// parsed) needs of its server.
func (s *ClientSession) roleFor(r *classify.Result) route.Role {
	pc := s.target.Settings()
	switch s.roleSet {
	case "primary":
		return route.Primary
	case "replica":
		return route.Replica
	case "any":
		return route.Any
	}
	if !s.parserOn(pc) {
		if s.roleSet == "auto" {
			return route.Any
		}
		return route.ParseRole(pc.DefaultRole)
	}
	switch {
	case r == nil:
		return route.Primary // the parser is on but the text is unknown: the safe side
	case r.Write:
		return route.Primary
	case r.Begin && r.TxAccess != classify.AccessReadOnly && (!s.readOnly || r.TxAccess == classify.AccessReadWrite):
		// A transaction that may write: it cannot move once it has begun.
		return route.Primary
	case pc.ReadYourWrites > 0 && s.readsRecentWrite(r.Reads):
		return route.Primary
	}
	if s.primaryReads > 0 || (s.primaryReads == 0 && pc.PrimaryReadsEnabled) {
		return route.Any
	}
	return route.Replica
}

// maxWrote bounds the tables remembered for read_your_writes_ms.
const maxWrote = 1024

// noteWrites records that the client wrote tables, for read_your_writes_ms.
func (s *ClientSession) noteWrites(tables []string, d time.Duration) {
	now := time.Now().UnixNano()
	if s.wrote == nil {
		s.wrote = map[string]int64{}
	}
	if len(s.wrote) >= maxWrote {
		for t, until := range s.wrote {
			if until <= now {
				delete(s.wrote, t)
			}
		}
		if len(s.wrote) >= maxWrote {
			clear(s.wrote)
		}
	}
	for _, t := range tables {
		s.wrote[t] = now + int64(d)
	}
}

// readsRecentWrite reports whether a table in tables was written by the client within
// read_your_writes_ms.
func (s *ClientSession) readsRecentWrite(tables []string) bool {
	if len(s.wrote) == 0 {
		return false
	}
	now := time.Now().UnixNano()
	for _, t := range tables {
		if until, ok := s.wrote[t]; ok && until > now {
			return true
		}
	}
	return false
}

// routingText returns the query text an extended-protocol message that may begin a transaction
// runs, for roleFor: a Parse's query, the unnamed statement's for a Bind of it.
func (s *ClientSession) routingText(typ byte, body []byte) []byte {
	switch typ {
	case wire.Parse:
		_, q, _, _ := wire.ParseQuery(body)
		return q
	case wire.Bind:
		if u := s.unnamedMsg(); len(u) > 0 {
			_, q, _, _ := wire.ParseQuery(wire.Body(u))
			return q
		}
	}
	return nil
}

// query returns the statement's text.
func (st *statement) query() []byte {
	_, q, _, _ := wire.ParseQuery(wire.Body(st.parse))
	return q
}

// checkout picks a server for role and takes a connection from its pool: an idle one without any
// timer when there is one, else waiting up to wait. A server that cannot be reached is banned and
// the next candidate tried once.
func (s *ClientSession) checkout(tg *route.Target, role route.Role, wait time.Duration) (*backend.ServerConn, *pool.Pool, *route.Server, error) {
	rs, err := tg.Pick(s.shard, role, s.avoid)
	if err != nil {
		s.checkoutFailures++
		return nil, nil, nil, err
	}
	srv, err := s.checkoutFrom(rs.Pool, wait)
	if err != nil && unreachable(err) && len(tg.Shards[s.shard]) > 1 {
		s.ban(rs, err)
		if next, perr := tg.Pick(s.shard, role, rs); perr == nil {
			rs = next
			srv, err = s.checkoutFrom(rs.Pool, wait)
		}
	}
	if err != nil && !errors.Is(err, errClientGone) {
		s.checkoutFailures++
	}
	if err != nil {
		if len(tg.Shards) > 1 && !errors.Is(err, errClientGone) {
			// In a sharded pool, say which shard: the others still work.
			err = fmt.Errorf("shard %d: %w", s.shard, err)
		}
		return nil, nil, nil, err
	}
	return srv, rs.Pool, rs, nil
}

// checkoutFrom takes a server of p, waiting up to wait (0: as long as it takes) when none is idle.
// A cancel request that arrives while the client waits ends the wait with errWaitCanceled. s.mu
// must not be held.
func (s *ClientSession) checkoutFrom(p *pool.Pool, wait time.Duration) (*backend.ServerConn, error) {
	if srv := p.TryCheckout(); srv != nil {
		return srv, nil
	}
	s.mu.Lock()
	if s.waitStop == nil {
		s.waitStop = make(chan struct{}, 1)
	}
	stop := s.waitStop
	s.waiting = true
	s.mu.Unlock()
	srv, err := p.CheckoutWait(wait, stop)
	s.mu.Lock()
	s.waiting = false
	select {
	case <-stop: // a cancel request that came as the wait ended: it had nothing to stop
	default:
	}
	s.mu.Unlock()
	if err != nil {
		if errors.Is(err, pool.ErrStopped) {
			return nil, errWaitCanceled
		}
		if errors.Is(err, pool.ErrWaitTimeout) {
			return nil, fmt.Errorf("no server connection available within query_wait_timeout (%s) for database %q user %q: %w",
				wait, s.db, s.user, err)
		}
		return nil, fmt.Errorf("could not connect to the server: %w", err)
	}
	if s.clientGone() {
		p.Release(srv)
		return nil, errClientGone
	}
	return srv, nil
}

// errWaitCanceled ends a wait for a server that a cancel request interrupted. The client's query
// reached no server, so nothing of it ran: it is answered as Postgres answers a statement
// cancelled at once, with 57014, and a client's next query waits afresh. (A pooler that dropped
// the cancel would run the query when a server came free, and the client, which believes it
// cancelled, would wait for all of it: PHP's pg_cancel_query of a query queued behind a full
// pool waited for its whole pg_sleep.)
var errWaitCanceled = &codedError{"57014", "canceling statement due to user request"}

// unreachable reports whether a checkout failed for want of the server itself, not for a full
// pool, a shutdown, a client that left or one that cancelled its query.
func unreachable(err error) bool {
	return !errors.Is(err, pool.ErrWaitTimeout) && !errors.Is(err, pool.ErrClosed) &&
		!errors.Is(err, errClientGone) && !errors.Is(err, errWaitCanceled)
}

// ban keeps a failed server out of rotation for ban_time, when there is another to go to.
func (s *ClientSession) ban(rs *route.Server, err error) {
	if rs == nil || len(s.target.Shards[s.shard]) < 2 {
		return
	}
	bt := s.l.table().Config.General.BanTime
	if !rs.Node.Banned(time.Now().UnixNano()) {
		s.l.log.Warn("server failed; banned", "server", rs.Node.Name(), "ban_time", bt, "err", err)
	}
	rs.Node.Ban(bt, err.Error())
}

// startRecording decides, as a server is attached, whether the request may be retried elsewhere
// if that server fails before answering: only in transaction mode, with another server to go
// to, and when running the request twice cannot write twice (a replica, or a read).
func (s *ClientSession) startRecording(rs *route.Server, role route.Role) {
	s.replay = s.replay[:0]
	s.recording = false
	if !s.txMode || s.retrying || len(s.target.Shards[s.shard]) < 2 {
		return
	}
	s.recording = role == route.Replica || !rs.Node.Primary(s.target.Settings().RoleDiscovery)
}

// errServerGone is a server's WARNING or FATAL "terminating connection" before the client heard
// anything of its reply to a request: the server went away while the connection sat idle in the
// pool, or while it ran the request.
var errServerGone = errors.New("the server terminated the connection")

// goingAway reports whether msg, an ErrorResponse or NoticeResponse, says the server is shutting
// down or restarting and is ending the connection.
func goingAway(msg []byte) bool {
	if msg[0] != wire.ErrorResponse && msg[0] != wire.NoticeResponse {
		return false
	}
	code, _ := wire.ErrorFields(wire.Body(msg))
	return code == "57P01" || code == "57P02" || code == "57P03"
}

// holdable reports whether a reply message of type typ from srv may be held back from the client
// for a retry of the request elsewhere: sluice's handling of it changes nothing but the reply
// queue, which a retry starts afresh. A tag that may change the session (SET, COMMIT, DISCARD
// ALL, ...) or that plugins see, a row or message a plugin captures, an error, a notice, a
// ParameterStatus, COPY and ReadyForQuery are not. Only the reader calls it.
func (s *ClientSession) holdable(srv *backend.ServerConn, typ byte) bool {
	if s.cap != nil || s.capOut.Load() {
		return false
	}
	switch typ {
	case wire.ParseComplete, wire.BindComplete, wire.CloseComplete, wire.ParameterDesc,
		wire.RowDescription, wire.NoData, wire.DataRow, wire.EmptyQuery, wire.PortalSuspended:
		return true
	case wire.CommandComplete:
		if s.chain != nil {
			return false
		}
		msg, err := srv.R.Message()
		if err != nil {
			return false
		}
		tag := wire.CommandTag(msg)
		return bytes.HasPrefix(tag, []byte("SELECT ")) || string(tag) == "SHOW"
	}
	return false
}

// retryElsewhere runs the request again on another server after srv failed before the client
// heard any of its reply, once. It reports whether it did; err is what ended the session during
// the replay, if anything.
func (s *ClientSession) retryElsewhere(srv *backend.ServerConn, pl *pool.Pool, cause error) (bool, error) {
	var cw *clientWriteError
	if !s.recording || errors.As(cause, &cw) || errors.Is(cause, errPartial) {
		return false, nil
	}
	s.recording = false
	s.mu.Lock()
	if s.srv != srv {
		s.mu.Unlock()
		return false, nil
	}
	s.srv, s.pl = nil, nil
	s.q.reset()
	s.open = false
	s.mu.Unlock()
	srv.Broken = true
	pl.Release(srv)
	failed := s.rsrv
	s.ban(failed, cause)
	buf := s.replay
	s.replay, s.avoid, s.retrying = nil, failed, true
	defer func() {
		s.replay, s.avoid, s.retrying = buf[:0], nil, false
	}()
	s.l.log.Info("retrying a read on another server", "failed", failed.Node.Name(), "err", cause)
	for msgs := buf; len(msgs) > 0; {
		n := 1 + int(binary.BigEndian.Uint32(msgs[1:5]))
		m := msgs[:n]
		msgs = msgs[n:]
		if err := s.replayMsg(m); err != nil {
			return true, err
		}
	}
	return true, s.flushServer()
}

// replayMsg handles a recorded client message again.
func (s *ClientSession) replayMsg(msg []byte) error {
	switch msg[0] {
	case wire.Query:
		if err := s.queryMsg(msg); err != nil {
			return err
		}
		return s.copyInPending()
	case wire.Sync:
		return s.sync()
	}
	return s.extendedMsg(msg[0], msg)
}

// command answers one of pgcat's commands (SET SERVER ROLE, SHOW PRIMARY READS, ...), which
// change or show how this client's queries are routed and never reach a server.
func (s *ClientSession) command(cmd *classify.Command, cerr error) error {
	var ce *classify.CommandError
	if errors.As(cerr, &ce) {
		return s.queryError(ce.Code, ce.Message)
	}
	pc := s.target.Settings()
	var col, val string
	switch cmd.Kind {
	case classify.SetServerRole:
		s.roleSet = cmd.Value
		if s.roleSet == "default" {
			s.roleSet = ""
		}
	case classify.SetPrimaryReads:
		s.primaryReads = map[string]int8{"on": 1, "off": -1}[cmd.Value]
	case classify.ShowServerRole:
		col = "server role"
		switch {
		case s.roleSet == "primary" || s.roleSet == "replica" || s.roleSet == "any":
			val = s.roleSet
		case s.roleSet == "" && pc.DefaultRole != config.RoleAny:
			val = pc.DefaultRole
		case s.parserOn(pc) || s.roleSet == "auto":
			val = "auto"
		default:
			val = "any"
		}
	case classify.ShowPrimaryReads:
		col, val = "primary reads", "off"
		if s.primaryReads > 0 || (s.primaryReads == 0 && pc.PrimaryReadsEnabled) {
			val = "on"
		}
	case classify.SetShard:
		n := s.shardCount()
		if cmd.Value == "any" {
			s.rnd++
			s.pinned, s.pinnedShard = true, int((uint32(s.pid)+s.rnd)%uint32(n))
			break
		}
		i, err := strconv.Atoi(cmd.Value)
		if err != nil || i < 0 || i >= n {
			return s.queryError("22023", fmt.Sprintf("shard %s does not exist: the pool has %d shards", cmd.Value, n))
		}
		s.pinned, s.pinnedShard = true, i
	case classify.SetShardingKey:
		sh := s.sharding
		if sh == nil {
			return s.queryError("22023", "the pool has no sharding")
		}
		i, err := sh.Sharder.Shard([]byte(cmd.Value))
		if err != nil {
			return s.queryError("22P02", err.Error())
		}
		s.pinned, s.pinnedShard = true, i
	case classify.ShowShard:
		col, val = "shard", "unset"
		if s.pinned {
			val = strconv.Itoa(s.pinnedShard)
		}
	default:
		return s.queryError("0A000", cmd.Kind.String()+" is not supported")
	}
	return s.commandReply(col, val)
}

// commandReply answers a command with the tag SET (col empty) or one row of one column. With a
// server attached (inside a transaction) the server gives the answer, so that it comes in order
// with the transaction's status.
func (s *ClientSession) commandReply(col, val string) error {
	s.mu.Lock()
	srv := s.srv
	if srv != nil {
		s.q.push(entry{kind: kQuery}) // pushed under the lock: the server stays attached
		srv.UnnamedOwner = nil        // the Query drops the server's unnamed statement
	}
	s.mu.Unlock()
	if srv != nil {
		sql := "DO $sluice$ BEGIN END $sluice$"
		if col != "" {
			sql = "SELECT " + quoteLiteral(val) + " AS " + quoteIdent(col)
		}
		return s.toServer(srv, wire.AppendQuery(nil, sql))
	}
	var b []byte
	if col == "" {
		b = wire.AppendCommandComplete(b, "SET")
	} else {
		b = wire.AppendRowDescription(b, col)
		b = wire.AppendDataRow(b, val)
		b = wire.AppendCommandComplete(b, "SHOW")
	}
	return s.emit(wire.AppendReadyForQuery(b, 'I'))
}

// shardCount returns the number of shards of the client's pool.
func (s *ClientSession) shardCount() int { return len(s.target.Shards) }

func describeSet(set shard.Set) string {
	if set.All() {
		return "every shard (no sharding key found)"
	}
	return "shards " + set.String()
}

// sameShard checks that a statement inside a transaction belongs to the transaction's shard: a
// transaction cannot move, and running the statement there would put or look for its rows on the
// wrong shard.
func (s *ClientSession) sameShard(text, bind []byte) error {
	p := bindParams(bind)
	st := s.sharding.Extractor.Analyze(text)
	if cp := st.Copy(); cp != nil && cp.From && cp.KeyTable {
		// Its rows may belong anywhere; sent whole to this shard, some would be lost there.
		where := "inside a transaction block"
		if !s.txMode {
			where = "in a session-mode pool"
		}
		return &codedError{"0A000", fmt.Sprintf("COPY into %s %s runs on one shard only (shard %d), but its rows may belong to others: run it outside a transaction block in a transaction-mode pool, where sluice splits the rows by %s, or choose the shard with SET SHARD first", cp.Table, where, s.shard, cp.Key)}
	}
	set, err := st.Shards(p)
	if err != nil {
		return &codedError{"0A000", err.Error()}
	}
	if one, ok := set.Single(); ok && one != s.shard {
		return &codedError{"0A000", fmt.Sprintf("this statement belongs to shard %d but its transaction runs on shard %d; choose the shard before BEGIN with SET SHARDING KEY or SET SHARD", one, s.shard)}
	}
	if !set.All() && set.Len() > 1 {
		return &codedError{"0A000", fmt.Sprintf("this statement touches shards %s but its transaction runs on shard %d only; inside a transaction block every statement must stay on one shard: run it outside the transaction block", set, s.shard)}
	}
	return nil
}

// deferParse reports whether a Parse outside a transaction is answered without a server and
// sent later in front of the Bind that uses it: in a sharded pool that reads keys from queries,
// only the Bind's parameters say which shard the statement runs on, and a Parse sent at once
// would tie the batch to the default shard. A statement that fails to prepare then reports its
// error at the Bind.
func (s *ClientSession) deferParse() bool {
	sh := s.sharding
	return sh != nil && sh.Extractor != nil && !s.pinned
}

// deferForHooks reports whether a Parse of the unnamed statement outside a transaction waits for
// its Bind because a query hook may answer that Bind (the result cache does): a Parse sent at
// once would take a server from the pool for a statement that may never run on one. Unlike
// deferParse, a Parse that no Bind used before the Sync is still checked on a server then (see
// checkDeferredParse), so an unnamed statement that cannot be prepared fails where Postgres
// would fail it.
func (s *ClientSession) deferForHooks() bool {
	return s.hookChain().HasQuery() && !s.attached()
}

// goneBeforeRequest handles a server that, at its first word to a request that began a
// transaction, said it is shutting down (its connection sat in the pool while it stopped) and
// that no other server could take: nothing of the request ran, so the client gets an ERROR and
// its session goes on. The pool's other idle connections went with the server.
func (s *ClientSession) goneBeforeRequest(srv *backend.ServerConn, pl *pool.Pool) error {
	s.fresh, s.recording = false, false
	s.mu.Lock()
	if s.srv == srv {
		s.srv, s.pl = nil, nil
		s.q.reset()
		s.open = false
	}
	s.mu.Unlock()
	srv.Broken = true
	pl.Release(srv)
	pl.DiscardIdle()
	where := "server " + srv.Addr()
	if len(s.target.Shards) > 1 {
		where = fmt.Sprintf("shard %d (%s)", s.shard, where)
	}
	code := s.goneCode
	if code == "" {
		code = "57P01"
	}
	b := wire.AppendError(nil, "ERROR", code, where+" is shutting down or restarting; the query did not run")
	return s.emit(wire.AppendReadyForQuery(b, 'I'))
}
