package frontend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/sluicepg/sluice/internal/merge"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
	"github.com/sluicepg/sluice/plugin"
)

// fanPortal is an extended-protocol portal whose statement runs on several shards.
//
// The Bind that chose the shards is not answered at once: the statement runs when the
// portal's Execute comes (a Describe of the portal before it only asks for the description).
// Every shard then gets the statement's Parse (unless it has the statement already), the Bind
// with the client's parameters, a Describe of the portal (sluice needs the column types to
// merge), the Execute and a Sync; the client gets BindComplete, the description if it asked,
// the merged rows and the tag, in order with the rest of its batch. A message of the batch
// that is not about the portal first settles the Bind: one shard binds and describes the
// portal, so that BindComplete, or the Bind's error, comes where Postgres sends it.
//
// The merged rows are held while an Execute's row limit suspends the portal. The portal lives
// until the batch's Sync, a new Bind of its name, or its Close. Only the reader touches it.
type fanPortal struct {
	name string // the client's portal name
	cs   *crossShard
	// named is set when the client's statement is named: the shards keep it prepared under a
	// name derived from the text they run, as for single-shard statements; the unnamed one
	// is parsed again at every run.
	named   bool
	text    []byte // the client's statement text, for the role
	ptypes  []byte // the Parse's parameter types section
	vals    [][]byte
	bin     []bool
	resFmts []int16
	// described is set when the client asked for the description before the statement ran:
	// it is owed with the rows.
	described bool
	bound     bool   // BindComplete was answered
	desc      []byte // the portal's RowDescription or NoData, once known
	ran       bool   // the statement ran: rows are those a row limit held back
	rows      [][]byte
	tag       string // a write's merged tag; "" for a read, whose tag counts each Execute's rows
	capture   *captureReq
}

// noData is a NoData message.
var noData = []byte{wire.NoData, 0, 0, 0, 4}

// fanBind records a Bind whose statement runs on several shards: the portal is answered at
// its Execute (or when another message makes its BindComplete due). body is the Bind's body,
// text and ptypes the statement's query and parameter types; named says whether the client's
// statement has a name.
func (s *ClientSession) fanBind(cs *crossShard, body, text, ptypes []byte, named bool) error {
	body = bytes.Clone(body) // the reader's buffer is reused
	portal, _, _ := wire.CString(body)
	vals, bin, ok := wire.BindParams(body)
	rf, ok2 := wire.BindResultFormats(body)
	if !ok || !ok2 {
		return s.fatal("08P01", "invalid Bind message")
	}
	p := &fanPortal{name: string(portal), cs: cs, named: named, text: bytes.Clone(text),
		ptypes: bytes.Clone(ptypes), vals: vals, bin: bin, resFmts: rf}
	if pc := s.pendingCapture; pc != nil {
		// A plugin asked for this statement's result: the merged one is handed over.
		p.capture, s.pendingCapture = pc, nil
	}
	s.fan = p
	return nil
}

// fanMessage handles a client message while a portal runs across shards: the portal's
// Describe and Execute are answered here (handled is set); any other message first gets the
// portal's Bind settled, and then goes its usual way unless the settling failed the batch.
func (s *ClientSession) fanMessage(typ byte, msg []byte) (handled bool, err error) {
	p := s.fan
	body := wire.Body(msg)
	switch typ {
	case wire.Describe:
		if kind, name, ok := wire.StatementRef(typ, body); ok && kind == 'P' && string(name) == p.name {
			if !p.bound {
				p.described = true
				return true, nil
			}
			return true, s.fanOut(p.desc)
		}
	case wire.Execute:
		name, rest, ok := wire.CString(body)
		if ok && string(name) == p.name && len(rest) >= 4 {
			return true, s.fanExecute(p, int32(binary.BigEndian.Uint32(rest)))
		}
	case wire.Bind, wire.Close:
		// A new Bind of the portal's name replaces it; a Close ends it.
		var name []byte
		if typ == wire.Bind {
			name, _, _ = wire.CString(body)
		} else if kind, n, ok := wire.StatementRef(typ, body); ok && kind == 'P' {
			name = n
		}
		if name != nil && string(name) == p.name {
			err := s.fanSettle()
			s.fanDrop()
			return s.failing, err
		}
	}
	err = s.fanSettle()
	return s.failing, err
}

// fanSettle answers the pending portal's Bind, if it has not been: one shard binds and
// describes it.
func (s *ClientSession) fanSettle() error {
	if p := s.fan; p != nil && !p.bound {
		return s.fanRun(p, false, 0)
	}
	return nil
}

// fanDrop forgets the portal. A plugin that asked for its result hears that there is none.
func (s *ClientSession) fanDrop() {
	p := s.fan
	if p == nil {
		return
	}
	s.fan = nil
	if p.capture != nil {
		s.fanOutcome(p.capture, nil, "", nil)
	}
}

// fanExecute runs the portal's statement on its shards, or, once it has run, sends the rows a
// row limit held back.
func (s *ClientSession) fanExecute(p *fanPortal, maxRows int32) error {
	if p.ran {
		return s.fanOut(p.nextRows(nil, maxRows))
	}
	if maxRows > 0 && p.cs.plan == nil {
		if err := s.fanSettle(); err != nil || s.failing {
			return err
		}
		return s.fanFail(nil, wire.AppendError(nil, "ERROR", "0A000", "this write runs on several shards, and sluice does not run a write across shards with a row limit on its Execute: execute it without one"))
	}
	return s.fanRun(p, true, maxRows)
}

// nextRows appends up to maxRows (0: all) of the rows held back and the message that ends
// the Execute: PortalSuspended when the limit was reached (Postgres does not look ahead: the
// last rows may come with a suspension and an empty Execute after them), else CommandComplete
// with the rows of this Execute.
func (p *fanPortal) nextRows(b []byte, maxRows int32) []byte {
	k := len(p.rows)
	if maxRows > 0 && int(maxRows) < k {
		k = int(maxRows)
	}
	for _, r := range p.rows[:k] {
		b = append(b, r...)
	}
	p.rows = p.rows[k:]
	if maxRows > 0 && k == int(maxRows) {
		return append(b, wire.PortalSuspended, 0, 0, 0, 4)
	}
	tag := p.tag
	if tag == "" {
		tag = "SELECT " + itoa(k)
	}
	return wire.AppendCommandComplete(b, tag)
}

// fanRun runs the portal on its shards: with exec, the statement on every shard, answering
// the Execute; without, the Bind and Describe on the first shard only, answering the Bind.
func (s *ClientSession) fanRun(p *fanPortal, exec bool, maxRows int32) error {
	cs := p.cs
	shards := cs.shards
	if !exec {
		shards = shards[:1]
	}
	role := route.Primary
	if cs.plan != nil {
		role = s.readRole(p.text)
	}
	if s.hookRole != "" {
		role, s.hookRole = route.ParseRole(s.hookRole), ""
	}
	var conns []*fanConn
	var err error
	if cs.tx {
		if !s.queueIdle() || s.batchOpen() {
			return s.fanFail(nil, wire.AppendError(nil, "ERROR", "0A000", "this statement runs on other shards than its transaction's, which has statements before it in the same batch: send Sync before a statement for other shards"))
		}
		conns, err = s.txServers(shards)
	} else {
		conns, err = s.takeServers(shards, role)
		defer s.releaseServers(conns)
	}
	if err != nil {
		if cs.tx {
			s.txRunDone(conns)
		}
		var ce *codedError
		if errors.As(err, &ce) {
			return s.fanFail(nil, wire.AppendError(nil, "ERROR", ce.code, ce.msg))
		}
		return err
	}
	wrap := exec && cs.wrap
	hidden := 0
	if cs.plan != nil {
		hidden = cs.plan.Hidden()
	}
	var buf []byte
	for i, c := range conns {
		buf = p.shardMessages(buf[:0], &s.target.Statements, c, i, exec, wrap, hidden)
		if _, err := c.srv.W.Write(buf); err == nil {
			if err = c.srv.W.Flush(); err != nil {
				c.err = err
			}
		} else {
			c.err = err
		}
	}
	g := &s.l.table().Config.General
	rfqs := 1
	if wrap {
		rfqs = 2 // the BEGIN's, then the Sync's
	}
	readShards(conns, g.MaxMessageSize, wrap, rfqs)
	failed := false
	for _, c := range conns {
		if c.parseName != "" && !c.parsed {
			c.srv.Prepared.Remove(c.parseName) // the Parse failed, or never ran
		}
		if c.stmtName != "" && c.errMsg != nil && !c.bound && stalePlan(wire.Body(c.errMsg)) {
			// The shard's statement predates a schema change: the next Bind prepares anew.
			s.target.Statements.Renew(baseStatementName(c.stmtName), c.stmtName)
		}
		failed = failed || c.err != nil || c.errMsg != nil
	}
	if wrap {
		s.finishWrite(conns, failed)
	}
	if cs.tx {
		s.txRunDone(conns)
		if failed {
			s.abortAcross(false) // the transaction's own server: fanFail's failBatch
		}
	}
	notes := fanNotes(conns)
	if code, msg := fanConnError(conns, g.MaxMessageSize); code != "" {
		return s.fanFail(notes, wire.AppendError(nil, "ERROR", code, msg))
	}
	for _, c := range conns {
		if c.errMsg == nil {
			continue
		}
		// What Postgres sends before the error: BindComplete when the Bind succeeded, then
		// the description the client asked for.
		b := notes
		if c.bound && !p.bound {
			b = append(b, wire.BindComplete, 0, 0, 0, 4)
			if p.described {
				b = p.describe(b, c)
			}
		}
		return s.fanFail(b, c.errMsg)
	}
	replies := make([][]byte, len(conns))
	for i, c := range conns {
		replies[i] = c.reply
	}
	plan := cs.plan
	var bindErr error
	if plan != nil {
		plan, bindErr = plan.Bind(p.vals, p.bin)
		if bindErr != nil {
			plan = cs.plan
		}
	}
	var out []byte
	if plan != nil {
		out, err = plan.Merge(nil, replies)
	} else {
		out, err = merge.Concat(nil, replies)
	}
	b := notes
	if !p.bound {
		b = append(b, wire.BindComplete, 0, 0, 0, 4)
		p.bound = true
	}
	if err != nil {
		code := "XX000"
		var ue *merge.UnsupportedError
		if errors.As(err, &ue) {
			code = "0A000"
		}
		if cs.tx {
			s.abortAcross(false)
		}
		return s.fanFail(b, wire.AppendError(nil, "ERROR", code, "merging the shards' results: "+err.Error()))
	}
	desc, rest := splitRowDescription(out)
	p.desc = noData
	if desc != nil {
		p.desc = desc
	}
	if p.described {
		b = append(b, p.desc...)
		p.described = false
	}
	if !exec {
		return s.fanOut(b)
	}
	if bindErr != nil {
		if cs.tx {
			s.abortAcross(false)
		}
		var ve *merge.ValueError
		if errors.As(bindErr, &ve) {
			return s.fanFail(b, wire.AppendError(nil, "ERROR", ve.Code, ve.Message))
		}
		return s.fanFail(b, wire.AppendError(nil, "ERROR", "XX000", bindErr.Error()))
	}
	p.ran = true
	for len(rest) >= wire.HeaderLen {
		n := 1 + int(binary.BigEndian.Uint32(rest[1:5]))
		if n > len(rest) {
			break
		}
		switch m := rest[:n]; m[0] {
		case wire.DataRow:
			p.rows = append(p.rows, m)
		case wire.CommandComplete:
			if plan == nil {
				p.tag = string(wire.CommandTag(m))
			}
		}
		rest = rest[n:]
	}
	all := len(p.rows)
	b = p.nextRows(b, maxRows)
	var captured []byte
	if len(p.rows) == 0 && (maxRows <= 0 || int(maxRows) > all) && desc != nil {
		captured = out // the whole result, as a stored result must be
	}
	tag := p.tag
	if tag == "" {
		tag = "SELECT " + itoa(all)
	}
	if p.capture != nil || s.chain.HasResult() {
		s.fanOutcome(p.capture, captured, tag, nil)
		p.capture = nil
	}
	return s.fanOut(b)
}

// describe appends the description of the portal from one shard's reply to it.
func (p *fanPortal) describe(b []byte, c *fanConn) []byte {
	if d, _ := splitRowDescription(c.reply); d != nil {
		if p.cs.plan != nil {
			if out, err := p.cs.plan.Describe(b, d); err == nil {
				return out
			}
		}
		return append(b, d...)
	}
	return append(b, noData...)
}

// shardMessages appends what the i-th shard of the portal is sent: BEGIN for a wrapped write,
// the Parse when the server lacks the statement, the Bind, a Describe of the portal, the
// Execute (with exec) and a Sync. The shard runs the plan's text (or its part of a split
// INSERT) as its unnamed portal, with the result formats of the client and text for the
// hidden columns the plan adds.
//
// names gives the current server name of a named statement's text (see StatementSet.Renew).
func (p *fanPortal) shardMessages(dst []byte, names *route.StatementSet, c *fanConn, i int, exec, wrap bool, hidden int) []byte {
	if wrap {
		dst = wire.AppendQuery(dst, "BEGIN")
	}
	q := []byte(p.cs.queries[i])
	ptypes, vals, bin := p.ptypes, p.vals, p.bin
	if p.cs.params != nil {
		ptypes, vals, bin = subsetParams(p.cs.params[i], p.ptypes, p.vals, p.bin)
	}
	name := ""
	if p.named {
		name = names.Current(serverStatementName(q, ptypes))
		c.stmtName = name
		if !c.srv.Prepared.Has(name) {
			if ev := c.srv.Prepared.Add(name); ev != "" {
				dst = wire.AppendStatementMsg(dst, wire.Close, 'S', ev)
			}
			dst = wire.AppendParse(dst, name, q, ptypes)
			c.parseName = name
		}
	} else {
		dst = wire.AppendParse(dst, "", q, ptypes)
	}
	rf := p.resFmts
	if len(rf) > 1 && hidden > 0 {
		rf = append(slices.Clone(rf), make([]int16, hidden)...)
	}
	dst = wire.AppendBind(dst, "", name, bin, vals, rf)
	dst = wire.AppendStatementMsg(dst, wire.Describe, 'P', "")
	if exec {
		dst = wire.AppendExecute(dst, "", 0)
	}
	return append(dst, syncMsg...)
}

// subsetParams returns the parameter types, values and formats of a split INSERT's part,
// whose $1, $2, ... are the original statement's parameters nums[0], nums[1], ...
func subsetParams(nums []int, ptypes []byte, vals [][]byte, bin []bool) ([]byte, [][]byte, []bool) {
	declared := 0
	if len(ptypes) >= 2 {
		declared = int(binary.BigEndian.Uint16(ptypes))
	}
	pt := binary.BigEndian.AppendUint16(nil, uint16(len(nums)))
	v := make([][]byte, len(nums))
	f := make([]bool, len(nums))
	for j, n := range nums {
		var oid uint32
		if n-1 < declared && len(ptypes) >= 2+4*n {
			oid = binary.BigEndian.Uint32(ptypes[2+4*(n-1):])
		}
		pt = binary.BigEndian.AppendUint32(pt, oid)
		if n-1 < len(vals) {
			v[j], f[j] = vals[n-1], bin[n-1]
		}
	}
	return pt, v, f
}

// fanOut sends replies to the client in order with the rest of its batch: at once when
// nothing is pending before them, else when the server's replies before them are in.
func (s *ClientSession) fanOut(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return s.synth(entry{kind: kRawSynth, msg: b})
}

// fanFail sends prefix (the replies due before the error), then fails the batch with the
// ErrorResponse errMsg: the client's messages are dropped up to Sync, as Postgres does.
func (s *ClientSession) fanFail(prefix, errMsg []byte) error {
	if err := s.fanOut(prefix); err != nil {
		return err
	}
	if p := s.fan; p != nil {
		s.fan = nil
		if p.capture != nil || s.chain.HasResult() {
			s.fanOutcome(p.capture, nil, "", errMsg)
		}
	}
	return s.failBatchMsg(errMsg)
}

// fanOutcome gives the result hooks the outcome of a statement that ran across shards, as
// a single-shard statement's reaches them: its merged result for a plugin that asked for it
// (capture), or its tag, or its error (errMsg). out nil with no error means no result to hand
// over (the statement did not run to its end).
func (s *ClientSession) fanOutcome(capture *captureReq, out []byte, tag string, errMsg []byte) {
	var perr *plugin.Error
	if errMsg != nil {
		code, m := wire.ErrorFields(wire.Body(errMsg))
		perr = &plugin.Error{Code: code, Message: m}
	}
	s.mu.Lock()
	switch {
	case capture != nil && !capture.done:
		capture.done = true
		if i := slices.Index(s.capPending, capture); i >= 0 {
			s.capPending = slices.Delete(s.capPending, i, i+1)
		}
		r := plugin.Result{Client: s.client, Capture: capture.token, Error: perr}
		if perr == nil && out != nil && len(out) <= capture.limit {
			r.Wire, r.Tag = out, tag
		}
		s.results = append(s.results, r)
	case s.chain.HasResult() && (tag != "" || perr != nil):
		s.results = append(s.results, plugin.Result{Client: s.client, Tag: tag, Error: perr})
	}
	s.mu.Unlock()
	s.runOutcomeHooks()
}
