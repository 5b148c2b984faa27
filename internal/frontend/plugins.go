package frontend

import (
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/hooks"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
	"github.com/sluicepg/sluice/plugin"
)

// pluginState is a client's view of the plugins. The reader owns it, except chain, which the
// pump reads under s.mu.
type pluginState struct {
	chain    *hooks.Chain
	chainGen uint64
	client   *plugin.Client
	// stmts maps the client's statement names to their text and declared parameter types
	// while some plugin has a query hook, so a Bind's hook sees what it binds (in session
	// mode too).
	hookStmts map[string]hookStmt
	// hookQuery is the Query the query hooks see, reused; hookSeq numbers them (Query.Seq).
	hookQuery *plugin.Query
	hookSeq   uint64
	// hookRole and hookShard are a query hook's choice for the transaction the query begins.
	hookRole     string
	hookShard    int
	hookShardSet bool
	// results and txEnds are outcomes the pump saw, for the result and transaction-end hooks,
	// which run once the locks are let go. Guarded by s.mu.
	results []plugin.Result
	txEnds  []bool
	// inBlock is set while the client is inside a transaction block as far as the replies
	// read so far tell: from a BEGIN's tag (a simple Query may hold BEGIN ... COMMIT, with no
	// ReadyForQuery in between) or a ReadyForQuery with status T or E, to the COMMIT or
	// ROLLBACK that ends it. Guarded by s.mu.
	inBlock bool

	// Plugins' answers and captures (capture.go). answering and pendingCapture belong to the
	// reader; cap to the goroutine reading the server; captured is guarded by s.mu; capOut is
	// set while some queued reply has a capture.
	answering      *wireAnswer
	pendingCapture *captureReq
	cap            *capture
	captured       []plugin.Result
	capPending     []*captureReq     // requested captures not handed over yet; guarded by s.mu
	stmtDescs      map[string][]byte // row descriptions of the client's statements; s.mu
	capOut         atomic.Bool
}

var clientIDs atomic.Uint64

// hookChain returns the plugins serving the client's pool in the current configuration.
func (s *ClientSession) hookChain() *hooks.Chain {
	tbl := s.l.table()
	if tbl.Generation != s.chainGen || s.client == nil {
		s.mu.Lock()
		s.chain, s.chainGen = tbl.Plugins.Chain(s.db), tbl.Generation
		s.mu.Unlock()
	}
	return s.chain
}

// startupHooks runs the plugins' startup hooks, which may send the client to another user or
// database, before anything else looks at them.
func (s *ClientSession) startupHooks(tbl *route.Table, params []param) error {
	ch := tbl.Plugins.Chain(s.db)
	if !ch.HasStartup() {
		return nil
	}
	st := &plugin.Startup{User: s.user, Database: s.db, Params: map[string]string{},
		Addr: s.conn.RemoteAddr(), TLS: s.tls}
	for _, p := range params {
		st.Params[p.name] = p.value
	}
	if pe := ch.Startup(context.Background(), st); pe != nil {
		return s.fatal(pe.Code, pe.Message)
	}
	if st.User != "" {
		s.user = st.User
	}
	if st.Database != "" {
		s.db = st.Database
	}
	return nil
}

// authHooks runs once the client's password was checked: the plugins may still refuse it.
func (s *ClientSession) authHooks(tbl *route.Table) error {
	s.client = &plugin.Client{ID: clientIDs.Add(1), User: s.user, Database: s.db,
		Addr: s.conn.RemoteAddr(), TLS: s.tls}
	if v, ok := s.paramLocked("application_name"); ok {
		s.client.ApplicationName = v
	}
	s.chain, s.chainGen = tbl.Plugins.Chain(s.db), tbl.Generation
	if pe := s.chain.Auth(context.Background(), s.client); pe != nil {
		return s.fatal(pe.Code, pe.Message)
	}
	return nil
}

// queryHooks runs the query hooks over a query about to be sent. text is the query (without a
// NUL); vals and binFmt are a Bind's parameters. A Reject or Answer in the result means the query
// must not be sent.
func (s *ClientSession) queryHooks(ch *hooks.Chain, proto plugin.Protocol, text []byte, textStr string, vals [][]byte, binFmt []bool, resFmts []int16, types ...uint32) (act plugin.Action) {
	// One Query per session, reused: a plugin may keep what it holds (Text, the slices), not
	// the *Query itself, which the API documents as valid during the call.
	q := s.hookQuery
	if q == nil {
		q = new(plugin.Query)
		s.hookQuery = q
	}
	params := q.Params[:0]
	if textStr == "" && len(text) > 0 {
		textStr = string(text)
	}
	s.hookSeq++
	s.q.hooked.Store(s.hookSeq) // stamped on the request's end when it is queued
	*q = plugin.Query{Client: s.client, Protocol: proto, Text: textStr, InTransaction: s.inTransaction(),
		ResultFormats: resFmts, Seq: s.hookSeq}
	for i, v := range vals {
		prm := plugin.Param{Value: v, Binary: binFmt[i]}
		if i < len(types) {
			prm.Type = types[i]
		}
		params = append(params, prm)
	}
	q.Params = params
	if s.cls != nil {
		var r *classify.Result
		if text != nil {
			r = s.cls.Classify(text)
		} else {
			r = s.cls.Classify(unsafe.Slice(unsafe.StringData(textStr), len(textStr))) // read only
		}
		q.Write, q.Reads, q.Writes, q.Kind = r.Write, r.Reads, r.Writes, statementKind(r)
		q.SetParsed(plugin.ParsedQuery{Write: r.Write, Reads: r.Reads, Writes: r.Writes, Err: r.ParseErr, Kinds: r.Kinds})
	}
	act = ch.Query(context.Background(), q)
	if (act.Role != "" || act.ShardSet) && !q.InTransaction && !s.attached() {
		// Routing applies to the transaction the query begins; inside one it is too late.
		s.hookRole = act.Role
		s.hookShard, s.hookShardSet = act.Shard, act.ShardSet
	}
	return act
}

// functionCallHooks numbers a FunctionCall among the client's queries (Query.Seq) and runs the
// FunctionCallHooks, before the call is queued: a function called so may write, and a plugin that
// invalidates on writes (the cache) would not hear of it otherwise.
func (s *ClientSession) functionCallHooks(ch *hooks.Chain) {
	s.hookSeq++
	s.q.hooked.Store(s.hookSeq) // stamped on the call's entry when it is queued
	ch.FunctionCall(context.Background(), s.client, s.hookSeq)
}

// hookStmt is a statement the client prepared, as the query hooks see it at a Bind.
type hookStmt struct {
	text  string
	types []uint32 // the parameter types of its Parse (0: left to the server)
}

// paramTypes reads the parameter type section of a Parse (a count, then the OIDs); nil when
// it declares none.
func paramTypes(section []byte) []uint32 {
	if len(section) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(section))
	if n == 0 || len(section) != 2+4*n {
		return nil
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(section[2+4*i:])
	}
	return out
}

func statementKind(r *classify.Result) string {
	if len(r.Kinds) == 0 {
		return ""
	}
	return r.Kinds[0]
}

// idle reports whether nothing of the client's is in flight outside a transaction block: no
// server, or (session mode) a server idle with no reply pending.
func (s *ClientSession) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv == nil || (s.tx == 'I' && s.q.empty())
}

func (s *ClientSession) inTransaction() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil && s.tx != 'I'
}

// answer replies to a simple Query with the rows a plugin gave. Inside a transaction the server
// gives them back (as text), so they come in order with the transaction's status.
func (s *ClientSession) answer(act plugin.Action) error {
	s.mu.Lock()
	srv := s.srv
	if srv != nil && s.tx == 'I' && s.q.empty() {
		srv = nil // session mode, idle: nothing is in flight to come before the answer
	}
	if srv != nil {
		s.q.push(entry{kind: kQuery})
		srv.UnnamedOwner = nil // the Query below drops the unnamed statement
	}
	s.mu.Unlock()
	if srv != nil {
		return s.toServer(srv, wire.AppendQuery(nil, valuesQuery(act.Columns, act.Rows)))
	}
	b := act.Wire
	if b == nil {
		b = wireFromRows(&act)
	}
	// Not appended to b: a cache hands the same Wire to every client it answers.
	return s.emit(b, readyIdle)
}

// readyIdle is ReadyForQuery outside a transaction block.
var readyIdle = wire.AppendReadyForQuery(nil, 'I')

// valuesQuery is a query whose result is rows under columns, all text.
func valuesQuery(cols []string, rows [][]*string) string {
	var b strings.Builder
	if len(cols) == 0 {
		return "DO $sluice$ BEGIN END $sluice$"
	}
	b.WriteString("SELECT ")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("NULL::text AS " + quoteIdent(c))
	}
	b.WriteString(" WHERE false")
	for _, row := range rows {
		b.WriteString(" UNION ALL SELECT ")
		for i := range cols {
			if i > 0 {
				b.WriteString(", ")
			}
			if i < len(row) && row[i] != nil {
				b.WriteString(quoteLiteral(*row[i]))
			} else {
				b.WriteString("NULL")
			}
		}
	}
	return b.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d [20]byte
	i := len(d)
	for n > 0 {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return string(d[i:])
}

// noteOutcomeLocked records, for the result and transaction-end hooks, what a server message
// says. s.mu is held; the synthetic replies due before msg have been written.
func (s *ClientSession) noteOutcomeLocked(typ byte, msg []byte) {
	ch := s.chain
	switch typ {
	case wire.CommandComplete:
		tag := wire.CommandTag(msg)
		if ch.HasResult() {
			s.results = append(s.results, plugin.Result{Client: s.client, Tag: string(tag)})
		}
		switch string(tag) {
		case "BEGIN", "START TRANSACTION":
			s.inBlock = true
		case "COMMIT", "ROLLBACK", "PREPARE TRANSACTION":
			// COMMIT of a failed transaction answers ROLLBACK; COMMIT or ROLLBACK outside a
			// block (a warning) ends nothing.
			if s.inBlock && ch.HasTxEnd() {
				s.txEnds = append(s.txEnds, string(tag) == "COMMIT")
			}
			s.inBlock = false
		}
	case wire.ErrorResponse:
		if s.abortErrorLocked() {
			return // the error of the Parse sent to abort a batch: the client never sees it
		}
		if ch.HasResult() {
			code, m := wire.ErrorFields(wire.Body(msg))
			s.results = append(s.results, plugin.Result{Client: s.client, Error: &plugin.Error{Code: code, Message: m}})
		}
	case wire.ReadyForQuery:
		if len(s.results) > 0 && len(msg) > wire.HeaderLen {
			// Every query hooked before the request this answers has ended.
			done, st := s.q.requestEndHooked(), msg[wire.HeaderLen]
			for i := range s.results {
				if s.results[i].Done == 0 {
					s.results[i].Done, s.results[i].TxStatus = done, st
				}
			}
		}
		if len(msg) > wire.HeaderLen {
			// T after COMMIT AND CHAIN; I after a transaction that ended without a tag of
			// its own (the server rolled it back as the connection's session ended).
			if st := msg[wire.HeaderLen]; st == 'I' && s.inBlock && ch.HasTxEnd() {
				s.txEnds = append(s.txEnds, false)
			} else if st != 'I' {
				s.inBlock = true
				break
			}
			s.inBlock = false
		}
	}
}

// abortErrorLocked reports whether the ErrorResponse being read answers the Parse that
// failBatch sent to abort a batch: the first entry of the queue that the server answers, past
// the synthetic replies due before it, is that Parse's. s.mu is held.
func (s *ClientSession) abortErrorLocked() bool {
	for i := s.q.h; i < len(s.q.e); i++ {
		if e := &s.q.e[i]; !e.synthetic() {
			return e.kind == kAbortSwallow
		}
	}
	return false
}

// runOutcomeHooks runs the result and transaction-end hooks for what the pump recorded. It runs
// on the goroutine reading the server, with s.mu not held.
func (s *ClientSession) runOutcomeHooks() {
	s.mu.Lock()
	ch, results, txEnds := s.chain, s.results, s.txEnds
	s.results, s.txEnds = nil, nil
	s.mu.Unlock()
	ctx := context.Background()
	for i := range results {
		ch.Result(ctx, &results[i])
	}
	for _, committed := range txEnds {
		ch.TxEnd(ctx, s.client, committed)
	}
}

// disconnectHooks runs when the client has gone. A transaction it left open was rolled back
// (or its server closed): the transaction-end hooks hear of it first.
func (s *ClientSession) disconnectHooks() {
	if s.client == nil {
		return
	}
	s.mu.Lock()
	ch, open := s.chain, s.inBlock
	s.inBlock = false
	s.mu.Unlock()
	if open && ch.HasTxEnd() {
		ch.TxEnd(context.Background(), s.client, false)
	}
	if ch.HasDisconnect() {
		ch.Disconnect(context.Background(), s.client)
	}
}
