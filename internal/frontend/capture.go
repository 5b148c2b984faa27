package frontend

import (
	"encoding/binary"

	"github.com/sluicepg/sluice/internal/wire"
	"github.com/sluicepg/sluice/plugin"
)

// A plugin may answer a query from a stored result (Action.Wire) and ask for a statement's result
// to store (Action.Capture): what a cache needs. Both work outside transaction blocks only.

// captureReq is a plugin's request to see one statement's result.
type captureReq struct {
	token any
	limit int
	done  bool // its result was handed over (guarded by s.mu)
	// stmt and resFmts are, for a Bind, the client's statement name and the result formats:
	// a result without a row description (the client did not describe the portal) gets the
	// statement's, with these formats.
	stmt    string
	resFmts []int16
	// queued is set once the request's statement was sent (or its batch ended without it):
	// from then on a ReadyForQuery that finds it in no queued entry ends it. Guarded by s.mu.
	queued bool
}

// capture collects a statement's result while it streams to the client. The goroutine reading
// the server owns it.
type capture struct {
	req      *captureReq
	buf      []byte
	commands int
	failed   bool
}

// defaultCaptureLimit bounds a capture when the plugin gave no limit.
const defaultCaptureLimit = 1 << 20

// newCaptureReq returns the capture a plugin's action asks for, or nil, and keeps it among the
// pending ones until its result is handed over.
func (s *ClientSession) newCaptureReq(act *plugin.Action) *captureReq {
	if act.Capture == nil {
		return nil
	}
	limit := act.CaptureLimit
	if limit <= 0 {
		limit = defaultCaptureLimit
	}
	r := &captureReq{token: act.Capture, limit: limit}
	s.mu.Lock()
	s.capPending = append(s.capPending, r)
	s.mu.Unlock()
	return r
}

// add appends one message of the result.
func (c *capture) add(msg []byte) {
	if c.failed {
		return
	}
	if len(c.buf)+len(msg) > c.req.limit {
		c.failed, c.buf = true, nil
		return
	}
	c.buf = append(c.buf, msg...)
}

// captureMsgLocked feeds a server message (other than a DataRow, see captureRow) to the capture
// of the statement it belongs to. s.mu is held; hk and hc are the kind and capture of the head
// entry before the message was handled.
func (s *ClientSession) captureMsgLocked(hk entryKind, hc *captureReq, typ byte, msg []byte) {
	switch typ {
	case wire.RowDescription, wire.CommandComplete:
		if s.cap == nil {
			if hc == nil {
				return
			}
			s.cap = &capture{req: hc}
		}
		s.cap.add(msg)
		if typ == wire.CommandComplete {
			s.cap.commands++
			if hk == kExecute {
				if len(s.cap.buf) == 0 || s.cap.buf[0] != wire.RowDescription {
					// The client did not Describe the portal, so the result has no row
					// description, and a stored result must be able to answer a client
					// that does: take the statement's, as a Describe of it gave it.
					if d := s.portalDescLocked(s.cap.req); d != nil && !s.cap.failed {
						s.cap.buf = append(d, s.cap.buf...)
					} else {
						s.cap.failed = true
					}
				}
				s.finishCaptureLocked()
			}
		}
	case wire.ErrorResponse, wire.PortalSuspended, wire.CopyInResponse, wire.CopyOutResponse:
		if s.cap != nil {
			s.cap.failed = true
		}
	case wire.ReadyForQuery:
		if s.cap != nil {
			s.finishCaptureLocked() // a simple Query's statement ends at ReadyForQuery
		}
		// Results count only when the statement ran outside a transaction block, which
		// ReadyForQuery 'I' after it proves; otherwise the plugin hears the capture failed.
		idle := len(msg) > wire.HeaderLen && msg[wire.HeaderLen] == 'I'
		for _, r := range s.captured {
			if !idle {
				r.Wire = nil
			}
			s.results = append(s.results, r)
		}
		s.captured = s.captured[:0]
		s.abandonCapturesLocked()
		if s.q.empty() {
			s.capOut.Store(false)
		}
	}
}

// abandonCapturesLocked tells the plugins about requested captures whose statement ended
// without a result to hand over (an error before any row, a Bind never executed): a plugin
// waiting on one (a cache holding other clients back from the same miss) must hear it.
func (s *ClientSession) abandonCapturesLocked() {
	keep := s.capPending[:0]
	for _, r := range s.capPending {
		switch {
		case r.done:
		case !r.queued || s.q.holdsCapture(r):
			keep = append(keep, r)
		default:
			r.done = true
			s.results = append(s.results, plugin.Result{Client: s.client, Capture: r.token})
		}
	}
	clear(s.capPending[len(keep):])
	s.capPending = keep
}

// captureRow feeds a DataRow to the capture of its statement. Only the goroutine reading the
// server calls it, before the row is forwarded.
func (s *ClientSession) captureRow(msg []byte) {
	if s.cap == nil {
		s.mu.Lock()
		if h := s.q.head(); h != nil && h.capture != nil {
			s.cap = &capture{req: h.capture}
		}
		s.mu.Unlock()
		if s.cap == nil {
			return
		}
	}
	s.cap.add(msg)
}

// wireFromRows builds a stored-result answer from a plugin's rows.
func wireFromRows(act *plugin.Action) []byte {
	var b []byte
	if len(act.Columns) > 0 {
		b = wire.AppendRowDescription(b, act.Columns...)
		for _, row := range act.Rows {
			b = wire.AppendDataRowNullable(b, row)
		}
	}
	tag := act.Tag
	if tag == "" {
		tag = "SELECT " + itoa(len(act.Rows))
	}
	return wire.AppendCommandComplete(b, tag)
}

// finishCaptureLocked ends the capture in progress: one statement's complete result is kept for
// the result hooks.
func (s *ClientSession) finishCaptureLocked() {
	c := s.cap
	s.cap = nil
	if c.req.done {
		return
	}
	c.req.done = true
	r := plugin.Result{Client: s.client, Capture: c.req.token}
	if !c.failed && c.commands == 1 {
		r.Wire, r.Tag = c.buf, string(wire.CommandTag(lastMessage(c.buf)))
	}
	s.captured = append(s.captured, r)
}

// lastMessage returns the last protocol message in b.
func lastMessage(b []byte) []byte {
	var last []byte
	for len(b) >= 5 {
		n := 1 + int(binary.BigEndian.Uint32(b[1:5]))
		if n > len(b) {
			break
		}
		last, b = b[:n], b[n:]
	}
	return last
}

// splitRowDescription splits a stored result into its RowDescription (nil when it has none) and
// the rest.
func splitRowDescription(w []byte) (desc, rest []byte) {
	if len(w) >= 5 && w[0] == wire.RowDescription {
		n := 1 + int(binary.BigEndian.Uint32(w[1:5]))
		if n <= len(w) {
			return w[:n:n], w[n:] // capped: w may be shared with other clients' answers
		}
	}
	return nil, w
}

// wireAnswer is a plugin's answer to an extended-protocol query, given at its Bind: sluice
// answers the Describe of the portal and the Execute from it.
type wireAnswer struct {
	desc, rest []byte
}

// answerExtended handles a Describe of the unnamed portal or an Execute while a plugin's answer
// stands in for the portal. It reports whether it did.
func (s *ClientSession) answerExtended(typ byte, body []byte) (bool, error) {
	a := s.answering
	switch {
	case typ == wire.Describe && len(body) >= 2 && body[0] == 'P' && body[1] == 0:
		d := a.desc
		if d == nil {
			d = []byte{wire.NoData, 0, 0, 0, 4}
		}
		return true, s.synth(entry{kind: kRawSynth, msg: d})
	case typ == wire.Execute && len(body) >= 1 && body[0] == 0:
		s.answering = nil
		return true, s.synth(entry{kind: kRawSynth, msg: a.rest})
	}
	return false, nil
}

// maxStatementDescs bounds the row descriptions kept per client.
const maxStatementDescs = 1000

// keepStatementDescLocked keeps the row description a Describe of the client's statement name
// returned. s.mu is held.
func (s *ClientSession) keepStatementDescLocked(name string, msg []byte) {
	if s.stmtDescs == nil {
		s.stmtDescs = map[string][]byte{}
	}
	if len(s.stmtDescs) >= maxStatementDescs {
		clear(s.stmtDescs)
	}
	s.stmtDescs[name] = append([]byte(nil), msg...)
}

// portalDescLocked returns the row description of a captured Bind's portal: its statement's,
// with the Bind's result formats, or nil when the statement was not described.
func (s *ClientSession) portalDescLocked(r *captureReq) []byte {
	d := s.stmtDescs[r.stmt]
	if d == nil {
		return nil
	}
	out := append([]byte(nil), d...)
	body := out[wire.HeaderLen:]
	if len(body) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(body))
	p := 2
	for i := 0; i < n; i++ {
		z := p
		for z < len(body) && body[z] != 0 {
			z++
		}
		p = z + 1 + 18
		if p > len(body) {
			return nil
		}
		var f int16
		switch {
		case len(r.resFmts) == 1:
			f = r.resFmts[0]
		case i < len(r.resFmts):
			f = r.resFmts[i]
		}
		binary.BigEndian.PutUint16(body[p-2:], uint16(f))
	}
	return out
}

// forgetStatementDesc drops the row description kept for a statement the client replaces or
// closes.
func (s *ClientSession) forgetStatementDesc(name string) {
	s.mu.Lock()
	delete(s.stmtDescs, name)
	s.mu.Unlock()
}
