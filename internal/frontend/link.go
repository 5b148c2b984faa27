package frontend

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
	"github.com/sluicepg/sluice/plugin"
)

// errTargetGone is returned when a reload removed the client's user or database.
var errTargetGone = errors.New("the client's pool was removed from the configuration")

// attach returns the session's server with s.mu held, checking one out and starting its pump
// when there is none. Holding the lock from the check to the caller's push of its reply entry is
// what keeps the pump from releasing the server in between. On error s.mu is not held. Only the
// reader calls it.
//
// r classifies the query that begins the transaction (nil when not parsed), text is its text and
// bind the body of its Bind (nil for none), for the choice of shard and server.
func (s *ClientSession) attach(r *classify.Result, text, bind []byte) (*backend.ServerConn, error) {
	s.mu.Lock()
	if s.srv != nil {
		if sh := s.sharding; sh != nil && sh.Extractor != nil && text != nil && !s.pinned {
			s.mu.Unlock()
			err := s.attachedShard(text, bind)
			if err != nil && err != errDetached {
				return nil, err
			}
			if err == nil {
				s.noteBegin(text, bind)
			}
			s.mu.Lock()
		}
		if s.srv != nil {
			return s.srv, nil
		}
	}
	s.mu.Unlock()
	s.pump.Wait() // the previous pump may still be flushing its last reply
	tbl := s.l.table()
	if tbl.Generation != s.gen {
		tg := tbl.Lookup(s.db, s.user)
		if tg == nil {
			return nil, errTargetGone
		}
		s.target, s.gen, s.cls, s.sharding = tg, tbl.Generation, tbl.Classifier(s.db), tbl.Sharding(s.db)
	}
	sh, err := s.shardFor(text, bind)
	if s.hookShardSet {
		sh, err, s.hookShardSet = s.hookShard, nil, false
		if sh < 0 || sh >= len(s.target.Shards) {
			return nil, &codedError{"22023", fmt.Sprintf("a plugin chose shard %d; the pool has %d shards", sh, len(s.target.Shards))}
		}
	}
	if err != nil {
		return nil, err
	}
	if s.sharding != nil && s.sharding.Planner != nil && text != nil {
		s.noteBegin(text, bind)
	}
	s.shard = sh
	role := s.roleFor(r)
	if s.hookRole != "" {
		role, s.hookRole = route.ParseRole(s.hookRole), ""
	}
	srv, pl, rs, err := s.checkout(s.target, role, tbl.Config.General.QueryWaitTimeout)
	if err != nil {
		return nil, err
	}
	if err := s.syncParams(srv); err != nil {
		pl.Release(srv)
		return nil, err
	}
	s.rsrv = rs
	s.startRecording(rs, role)
	s.fresh = s.txMode
	s.mu.Lock()
	s.srv, s.pl, s.tx = srv, pl, 'I'
	if !s.txMode {
		// Session mode reads the server all the time, so notifications reach an idle client.
		s.startPumpLocked(srv, pl)
	}
	return srv, nil
}

// startPumpLocked starts a goroutine that reads the server's replies. s.mu must be held.
func (s *ClientSession) startPumpLocked(srv *backend.ServerConn, pl *pool.Pool) {
	s.pumping = true
	s.pump.Add(1)
	go s.runPump(srv, pl)
}

// settle runs before the reader blocks on the client in transaction mode. When replies are
// outstanding and the client has finished its request (a Query or a Sync, no COPY going on), the
// reader reads them itself: no second goroutine, no hand-off, which is most of a pooler's
// per-query cost. When the client may still send (an open batch, COPY data), a pump goroutine
// reads the server so that neither side can stall the other.
func (s *ClientSession) settle() error {
	s.mu.Lock()
	srv, pl := s.srv, s.pl
	if srv == nil || s.pumping || s.q.empty() {
		s.mu.Unlock()
		return nil
	}
	if s.open || s.copyOpen {
		s.recording, s.fresh = false, false // the pump reads the replies: no retry
		s.startPumpLocked(srv, pl)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.armWatch(srv)
	res, err := s.pumpLoop(srv, true)
	if s.disarmWatch() {
		return s.clientLeftInDrain(srv, pl, res)
	}
	switch res {
	case pumpReleased:
		pl.Release(srv)
	case pumpAsync:
		s.mu.Lock()
		s.startPumpLocked(srv, pl)
		s.mu.Unlock()
	case pumpFailed:
		if retried, rerr := s.retryElsewhere(srv, pl, err); retried {
			if rerr != nil {
				return rerr
			}
			return s.settle()
		}
		if s.fresh && errors.Is(err, errServerGone) {
			return s.goneBeforeRequest(srv, pl)
		}
		s.serverLost(srv, pl, err)
		return err
	}
	return nil
}

// pumpResult says why pumpLoop returned.
type pumpResult uint8

const (
	pumpFailed   pumpResult = iota // the server or the client failed: see the error
	pumpReleased                   // transaction mode, idle: the server was detached for release
	pumpIdle                       // every reply is in, the server stays attached (in a transaction)
	pumpAsync                      // a reader-driven drain met COPY: a goroutine must take over
)

// errClientGone is returned when the client left while waiting for a server.
var errClientGone = errors.New("the client disconnected while waiting for a server")

// clientGone probes the client's connection without blocking after a wait for a server: a
// client that gave up and left must not have its query run later. Data the client sent
// meanwhile stays buffered for the reader.
//
// A client that waits for its reply has sent nothing more, and a peek at the socket says so
// without a read: the common case costs one system call and no wait. Only when something is
// there (more requests, the end of the stream, or TLS bytes that may be an alert) is it read,
// with a millisecond's deadline in case a TLS record is incomplete (a deadline already past makes
// Go fail the read before trying it).
func (s *ClientSession) clientGone() bool {
	if s.sock != nil && !s.sock.Pending() {
		return false
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	err := s.r.FillOnce()
	s.restoreClientDeadline()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return true
}

// Settings that servers report and that a client may change; the rest of the reported ones are
// read-only facts about the server.
var trackedReported = map[string]bool{
	"client_encoding": true, "DateStyle": true, "TimeZone": true, "IntervalStyle": true,
	"standard_conforming_strings": true, "application_name": true, "default_transaction_read_only": true,
	"search_path": true,
}

// canonicalName gives reported parameters the spelling servers use.
func canonicalName(n string) string {
	switch strings.ToLower(n) {
	case "datestyle":
		return "DateStyle"
	case "timezone":
		return "TimeZone"
	case "intervalstyle":
		return "IntervalStyle"
	}
	return n
}

// syncParams makes the server's settings match what the client expects, with one round trip,
// before the server sees the client's messages. The server's normalized values are sent to the
// client as ParameterStatus, as Postgres would at a SET.
//
// It runs before the pump starts, so the reader owns the session's parameters here.
func (s *ClientSession) syncParams(srv *backend.ServerConn) error {
	reported, err := s.applyParams(srv)
	if len(reported) > 0 {
		s.out.mu.Lock()
		_, _ = s.out.Write(reported)
		s.out.mu.Unlock()
	}
	return err
}

// applyParams is syncParams without the telling: it returns the ParameterStatus messages the
// client is to get.
func (s *ClientSession) applyParams(srv *backend.ServerConn) (reported []byte, _ error) {
	if srv.Synced == s.paramsKey() {
		return nil, nil
	}
	var sb strings.Builder
	for _, p := range s.params {
		if cur, ok := srv.Params[p.name]; ok && cur == p.value {
			continue
		}
		if s.carried[p.name] {
			sb.WriteString(p.value) // the client's own SET statement
			sb.WriteByte(';')
			continue
		}
		// set_config takes the value as the startup packet and ParameterStatus give it: SET
		// would make a list ("foo,public" in search_path) one quoted element.
		fmt.Fprintf(&sb, "SELECT pg_catalog.set_config(%s, %s, false);", quoteLiteral(p.name), quoteLiteral(p.value))
	}
	// Settings an earlier client left on this server that this client never asked for go back
	// to the server's own values.
	var resets []string
	for k, v := range srv.Params {
		if _, mine := s.paramLocked(k); mine || !settable(k) {
			continue
		}
		if iv, ok := srv.Initial[k]; !ok || iv != v {
			fmt.Fprintf(&sb, "RESET %s;", quoteIdent(k))
			resets = append(resets, k)
		}
	}
	if sb.Len() > 0 {
		_, err := srv.ExecNotify(sb.String(), func(body []byte) {
			name, rest, _ := wire.CString(body)
			val, _, _ := wire.CString(rest)
			if told, ok := s.paramLocked(string(name)); ok && told == string(val) && !s.paramsUntold {
				// Setting the server back to the value the client has: Postgres would have
				// said nothing.
				return
			}
			reported = wire.AppendParameterStatus(reported, string(name), string(val))
		})
		if err != nil {
			if isServerError(err) {
				return nil, err // the client's own setting is invalid: it hears the server's words
			}
			srv.Broken = true
			return nil, fmt.Errorf("apply the client's settings on the server: %w", err)
		}
		for _, k := range resets {
			if iv, ok := srv.Initial[k]; ok {
				srv.Params[k] = iv
			} else {
				delete(srv.Params, k)
			}
		}
		for i := range s.params {
			p := &s.params[i]
			if s.carried[p.name] {
				srv.Params[p.name] = p.value // nothing reports it: what sluice set is what it is
				continue
			}
			if v, ok := srv.Params[p.name]; ok {
				if p.value != v {
					p.value = v // the server's normalized spelling, e.g. "ISO, MDY" for "ISO"
					s.pver++
				}
			} else {
				srv.Params[p.name] = p.value
			}
		}
	}
	srv.Synced = s.paramsKey()
	s.paramsUntold = false
	return reported, nil
}

// paramsKey returns a string that is equal for two clients whose settings are equal, rebuilt
// only when the settings change; equal keys let syncParams skip its comparison.
func (s *ClientSession) paramsKey() string {
	if s.pkey != "" && s.pkeyVer == s.pver {
		return s.pkey
	}
	n := 1
	for _, p := range s.params {
		n += len(p.name) + len(p.value) + 2
	}
	var b strings.Builder
	b.Grow(n)        // one allocation: a client's first checkout builds the key
	b.WriteByte('k') // never empty
	for _, p := range s.params {
		b.WriteString(p.name)
		b.WriteByte(0)
		b.WriteString(p.value)
		b.WriteByte(0)
	}
	s.pkey, s.pkeyVer = b.String(), s.pver
	return s.pkey
}

// settable reports whether a reported parameter is a setting rather than a fact about the
// server (server_version, is_superuser, ...), which cannot be SET or RESET.
func settable(name string) bool {
	switch name {
	case "server_version", "server_encoding", "integer_datetimes", "in_hot_standby", "is_superuser",
		"session_authorization", "scram_iterations":
		return false
	}
	return true
}

func isServerError(err error) bool {
	var se *backend.ServerError
	return errors.As(err, &se)
}

func (s *ClientSession) paramLocked(name string) (string, bool) {
	for _, p := range s.params {
		if p.name == name {
			return p.value, true
		}
	}
	return "", false
}

// noteParameterLocked records a ParameterStatus the client is about to see: the client now
// expects that value on any server it moves to.
func (s *ClientSession) noteParameterLocked(srv *backend.ServerConn, body []byte) {
	srv.NoteParameter(body)
	name, rest, ok := wire.CString(body)
	if st := s.target.Settings(); ok && st != nil && st.LogClientParameterStatusChanges {
		val, _, _ := wire.CString(rest)
		s.l.log.Info("client parameter status change", "user", s.user, "db", s.db, "server", srv.Addr(),
			"parameter", string(name), "value", string(val))
	}
	if !ok || !trackedReported[string(name)] {
		return
	}
	val, _, _ := wire.CString(rest)
	for i := range s.params {
		if s.params[i].name == string(name) {
			if s.params[i].value != string(val) {
				s.params[i].value = string(val)
				s.pver++
			}
			srv.Synced = s.paramsKey()
			return
		}
	}
	s.params = append(s.params, param{string(name), string(val)})
	s.pver++
	srv.Synced = s.paramsKey()
}

// runPump reads the server's replies in its own goroutine until the server is released, all
// replies are in (transaction mode), the server is lost, or the reader takes it back.
func (s *ClientSession) runPump(srv *backend.ServerConn, pl *pool.Pool) {
	defer s.pump.Done()
	defer s.survivePump(srv)
	panicHook("pump", nil)
	res, err := s.pumpLoop(srv, false)
	switch res {
	case pumpReleased:
		s.wmu.Lock() // wait for the reader's flush to this server to finish: see flushServer
		s.wmu.Unlock()
		pl.Release(srv)
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			s.setClientDeadline(time.Now()) // wake the reader so it says goodbye
		}
		return
	case pumpIdle:
		return
	}
	s.mu.Lock()
	taken := s.closing && s.srv == srv
	s.mu.Unlock()
	if taken {
		return // the reader owns the server again
	}
	s.serverLost(srv, pl, err)
}

// serverLost ends the session after its server failed (or after the client stopped reading):
// neither can go on. The client hears why unless it is the one that failed, or the server told it
// already: a server that ends a connection (pg_terminate_backend, a shutdown) sends a FATAL and
// closes it, and Postgres' clients take a second error after that as a second failure.
func (s *ClientSession) serverLost(srv *backend.ServerConn, pl *pool.Pool, err error) {
	s.mu.Lock()
	if s.srv == srv {
		s.srv, s.pl = nil, nil
		s.q.reset()
		s.open = false
		s.pumping = false
	}
	if s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	told := s.saidFatal == srv
	s.mu.Unlock()
	srv.Broken = true
	pl.Release(srv)
	var ce *clientWriteError
	if !errors.As(err, &ce) {
		s.out.mu.Lock()
		if !s.out.Pending() || !errors.Is(err, errPartial) {
			if !told {
				_, _ = s.out.Write(wire.AppendError(nil, "FATAL", "08006",
					fmt.Sprintf("server connection to %s was lost: %v", srv.Addr(), err)))
			}
			_ = s.out.Flush()
		}
		s.out.mu.Unlock()
	}
	s.conn.Close()
}

// errPartial marks a server read that failed inside a message already partly sent to the client.
var errPartial = errors.New("server connection lost in the middle of a message")

type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return "write to client: " + e.err.Error() }
func (e *clientWriteError) Unwrap() error { return e.err }

// pumpLoop reads server messages and forwards them. It holds the client's output lock while
// server data is buffered, and flushes before every read that may block. drain is set when the
// reader itself runs it: it then stops at COPY IN, where the reader must go back to the client.
//
// While the reader drains a request it may still send elsewhere (s.recording), the reply stays in
// the client's buffer from held on until the flush before the next read that may block: a server
// that is going away sends what it had buffered of its reply and then its WARNING (immediate
// shutdown) or FATAL, in one write, and the client has heard nothing of that reply yet. It is
// dropped, and the request runs elsewhere.
func (s *ClientSession) pumpLoop(srv *backend.ServerConn, drain bool) (res pumpResult, err error) {
	o := &s.out
	locked := false
	var held outMark
	holding := false
	defer func() {
		if locked {
			if ferr := o.Flush(); ferr != nil && err == nil {
				res, err = pumpFailed, &clientWriteError{ferr}
			}
			if res == pumpReleased {
				o.Idle()
			}
			o.mu.Unlock()
		}
	}()
	for {
		if _, ok := srv.R.Complete(); !ok && locked {
			if holding {
				// The reply so far reaches the client: from here the request runs here or fails.
				s.recording, holding = false, false
			}
			if err := o.Flush(); err != nil {
				return pumpFailed, &clientWriteError{err}
			}
			o.mu.Unlock()
			locked = false
		}
		typ, size, err := srv.R.Peek()
		if err != nil {
			return pumpFailed, err
		}
		if drain && (s.recording || s.fresh) {
			// A server that is going away says so, as a WARNING (immediate shutdown) or a FATAL.
			// As its first word, nothing of the request ran; after a reply the client has not
			// seen, the request may go elsewhere all the same (see held above).
			if typ == wire.ErrorResponse || typ == wire.NoticeResponse {
				msg, err := srv.R.Message()
				if err != nil {
					return pumpFailed, err
				}
				if goingAway(msg) && (!holding || o.DropSince(held)) {
					srv.Broken = true
					s.goneCode, _ = wire.ErrorFields(wire.Body(msg))
					return pumpFailed, errServerGone
				}
			}
			// Anything else begins the reply or goes on with it. A reply that only sluice's reply
			// queue follows may be held for a retry; any other is the client's from here.
			s.fresh = false
			if s.recording && !s.holdable(srv, typ) {
				s.recording, holding = false, false
			}
		}
		if !locked {
			o.mu.Lock()
			locked = true
		}
		if drain && s.recording && !holding {
			held, holding = o.Mark(), true
		}
		if typ == wire.DataRow && (s.cap != nil || s.capOut.Load()) {
			row, err := srv.R.Message()
			if err != nil {
				return pumpFailed, err
			}
			s.captureRow(row)
		}
		if typ == wire.Notification {
			if err := s.forwardNotification(srv, o); err != nil {
				return pumpFailed, err
			}
			continue
		}
		if typ == wire.FunctionCallResult && s.chain.HasResult() {
			// A FunctionCall's outcome, which plugin.FunctionCallHook promises to the result
			// hooks (the message itself is forwarded below, unread).
			s.mu.Lock()
			s.results = append(s.results, plugin.Result{Client: s.client})
			s.mu.Unlock()
		}
		if typ == wire.CopyInResponse {
			s.mu.Lock()
			s.copyInStartedLocked()
			s.mu.Unlock()
		}
		switch typ {
		case wire.DataRow, wire.CopyData, wire.NoticeResponse, wire.CopyInResponse,
			wire.CopyOutResponse, wire.CopyBothResponse, wire.FunctionCallResult, wire.ParameterDesc, wire.CopyDone:
			if err := srv.R.Forward(o, size); err != nil {
				var we *wire.WriteError
				if errors.As(err, &we) {
					return pumpFailed, &clientWriteError{we.Err}
				}
				return pumpFailed, fmt.Errorf("%w: %v", errPartial, err)
			}
			if drain && (typ == wire.CopyInResponse || typ == wire.CopyBothResponse) {
				return pumpAsync, nil
			}
			continue
		}
		msg, err := srv.R.Message()
		if err != nil {
			return pumpFailed, err
		}
		res := s.serverMessage(srv, typ, msg, drain)
		// Outcomes reach the hooks at ReadyForQuery: only then is a statement outside a
		// transaction block committed (the extended protocol commits at Sync), and the
		// client has not yet seen it (the hooks run before the flush).
		if typ == wire.ReadyForQuery && (s.results != nil || s.txEnds != nil) {
			s.runOutcomeHooks()
		}
		if o.err != nil {
			return pumpFailed, &clientWriteError{o.err}
		}
		if res != 0 {
			return res, nil
		}
	}
}

// serverMessage updates the reply queue for one server message and writes the message, and any
// synthetic replies due around it, to the client. It returns 0 to go on reading, pumpReleased
// when the server was detached for release, or pumpIdle when reading should stop because every
// reply is in. The caller holds s.out.mu.
func (s *ClientSession) serverMessage(srv *backend.ServerConn, typ byte, msg []byte, drain bool) (res pumpResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.restoreReply(srv, typ, msg) {
		return 0
	}
	capturing := s.chain != nil && (s.cap != nil || s.capOut.Load())
	var hk entryKind
	var hc *captureReq
	if capturing {
		if h := s.q.head(); h != nil {
			hk, hc = h.kind, h.capture
		}
	}
	if s.chain != nil && (hc == nil || typ == wire.ReadyForQuery) {
		// A captured statement's result reaches the result hooks once, with its capture.
		s.noteOutcomeLocked(typ, msg)
	}
	s.emitDueLocked()
	keep := true
	toClient := msg // what the client gets for msg
	switch typ {
	case wire.ParseComplete:
		if h := s.q.head(); h != nil && (h.kind == kParse || h.kind == kParseSwallow) {
			keep = h.kind == kParse
			if h.client != "" {
				if st := s.stmts[h.client]; st != nil && st.server == h.name {
					st.confirmed = true
				}
			}
			if h.kind == kParse && h.name == "" && h.client == "" && s.txMode {
				s.unnamedAnsweredLocked(h.seq, true)
			}
			if h.name != "" {
				s.target.Statements.Add(h.name)
				delete(s.unparsed, h.name)
				if h.retry && srv.Prepared.Add(h.name) != "" {
					srv.Broken = true // a statement we no longer track stays prepared: start afresh
				}
			}
			s.q.pop()
		} else if h != nil && h.kind == kParseDup {
			// The server lacked the statement sluice counted on: it now holds the client's
			// text under another text's name, which no other client may use.
			srv.Broken = true
			s.q.pop()
		}
	case wire.BindComplete, wire.NoData, wire.EmptyQuery, wire.PortalSuspended:
		s.popIf(kBind, kDescribe, kExecute)
	case wire.RowDescription:
		if h := s.q.head(); h != nil && h.kind == kDescribe && h.desc != "" {
			s.keepStatementDescLocked(h.desc[1:], msg)
		}
		s.popIf(kDescribe)
	case wire.CloseComplete:
		if h := s.q.head(); h != nil && (h.kind == kClose || h.kind == kCloseSwallow) {
			keep = h.kind == kClose
			s.q.pop()
		}
	case wire.CommandComplete:
		s.inCopyIn = false
		tag := wire.CommandTag(msg)
		if s.txMode && s.target.Pool.CleanupServerConnections {
			// A SET or RESET is carried or resets the server (settings.go); with pgcat's
			// cleanup_server_connections off it stays on the server, as in pgcat.
			s.noteTagLocked(srv, tag)
		}
		if bytes.Equal(tag, []byte("DISCARD ALL")) || bytes.Equal(tag, []byte("DEALLOCATE ALL")) {
			s.deallocatedAllLocked(srv)
			if tag[0] == 'D' && tag[1] == 'I' {
				// DISCARD ALL brings a session back to its settings at login: for this client
				// those are its own, not the server connection's. The server reports its own
				// values after this tag, before ReadyForQuery; the client's are restored then.
				s.discarded = true
			}
		}
		s.popIf(kExecute)
	case wire.ErrorResponse:
		s.inCopyIn = false
		s.setTx.failed = true
		if h := s.q.head(); h != nil && (h.kind == kBind || h.kind == kDescribe || h.kind == kParseDup) && h.client != "" && h.name != "" {
			// "bind message supplies 0 parameters, but prepared statement ... requires 1"
			toClient = wire.AppendErrorRenamed(nil, msg, h.name, h.client)
		}
		keep = s.serverErrorLocked(srv, msg)
		if keep {
			if sev := wire.ErrorSeverity(wire.Body(msg)); sev == "FATAL" || sev == "PANIC" {
				s.saidFatal = srv
			}
		}
		if drain && s.q.empty() && s.open {
			// The error made the server skip the Query that ended the batch too: it skips
			// to the client's Sync, which the reader must read, and sends nothing before it.
			// Read on, the drain waited for a ReadyForQuery that never came, and the reader
			// never read the Sync or a Terminate (seed 8434).
			res = pumpIdle
		}
	case wire.ReadyForQuery:
		s.inCopyIn = false
		// Entries still before the request's end got no reply: the server skipped their
		// messages after an error that came before the reader queued them.
		var reopened []entry
		ended := false
		for h := s.q.head(); h != nil; h = s.q.head() {
			e := s.q.pop()
			if e.kind == kSync || e.kind == kQuery || e.kind == kFunc || e.kind == kRestore {
				ended = true
				break
			}
			s.skippedLocked(srv, e, false, &reopened)
		}
		s.reopenLocked(reopened)
		if !ended {
			// The reply to a Sync the client sent during a COPY FROM, which the reader
			// took to be ignored inside the COPY: the COPY had failed (a bad row) before
			// the server read it. The server no longer skips the client's messages.
			s.skipToSync.Store(false)
		}
		if len(msg) > wire.HeaderLen {
			s.tx = msg[wire.HeaderLen]
		}
		s.accountLocked(srv)
		if s.tx == 'I' && s.txMode {
			s.endSetTxLocked(srv)
		}
		s.afterDiscardLocked(srv)
		if s.stmtMode && s.tx != 'I' && s.q.empty() && !s.open {
			// Statement pooling, as PgBouncer's: a transaction left open at the end of a
			// request ends the session; the server is closed, which rolls it back.
			srv.Broken = true
			s.stmtViolation.Store(true)
			_, _ = s.out.Write(wire.AppendError(nil, "FATAL", errStatementMode.code, errStatementMode.msg))
			s.setClientDeadline(time.Now())
			srv.R.Discard(len(msg))
			if !drain {
				s.pumping = false
			}
			return pumpIdle
		}
		// Replies sluice gives itself for messages after this request's (a Parse answered
		// without the server) are due now, before the server can go back to its pool.
		_, _ = s.out.Write(msg)
		keep = false
		s.emitDueLocked()
		s.idlePointLocked()
		if s.drained != nil && s.q.empty() {
			close(s.drained)
			s.drained = nil
		}
		if s.q.empty() && !s.copyWriting {
			// The server answered the COPY's request: its COPY is over, and it ignores any
			// copy data the client still sends.
			s.copyOpen = false
		}
		if s.txMode && s.q.empty() && !s.open {
			// A copy message being written keeps the server; the reader releases it after
			// the write (releaseAfterCopy). A server marked broken goes too, and its pool
			// closes it: kept, it would serve this client's next requests and hold its slot
			// for as long as the client stays.
			if s.tx == 'I' && !s.copyWriting && !s.closing && !s.killed {
				s.srv, s.pl = nil, nil
				res = pumpReleased
			} else {
				res = pumpIdle
			}
			if !drain {
				s.pumping = false
			}
		}
	case wire.ParameterStatus:
		s.noteParameterLocked(srv, wire.Body(msg))
	}
	if keep {
		_, _ = s.out.Write(toClient)
	}
	s.emitDueLocked()
	if s.drained != nil && (s.q.empty() || s.drainToRequestEnd && !s.q.holdsRequestEnd()) {
		// Every reply is in, though not at a ReadyForQuery (awaitEarlierBatches' Flush), or
		// every reply a terminating client's complete requests get (terminate).
		close(s.drained)
		s.drained = nil
	}
	if s.qSpace != nil && s.q.len() <= outstandingResume {
		close(s.qSpace)
		s.qSpace = nil
	}
	if capturing {
		s.captureMsgLocked(hk, hc, typ, msg)
	}
	// Consume the message before s.mu is released: once the pump says it is done, the reader may
	// read this server.
	srv.R.Discard(len(msg))
	return res
}

// deallocatedAllLocked runs at the CommandComplete of a DEALLOCATE ALL or DISCARD ALL: the
// server's prepared statements are gone, and the client's with them, but for those whose Parse
// the reader sent after the command (a client that pipelines): their entries are still queued
// behind the head, and the server runs them after the command. A Close of a statement the
// command dropped, queued behind it, gives nothing back if an error skips it. s.mu is held.
func (s *ClientSession) deallocatedAllLocked(srv *backend.ServerConn) {
	var kept []*statement
	var names []string
	for i := 1; ; i++ {
		e := s.q.peek(i)
		if e == nil {
			break
		}
		switch e.kind {
		case kParse, kParseSwallow, kParseSynth:
			if e.stmt != nil {
				kept = append(kept, e.stmt)
			}
			if e.kind != kParseSynth && e.name != "" {
				names = append(names, e.name)
			}
		case kCloseSynth:
			if e.closed != nil && !slices.Contains(kept, e.closed) {
				e.closed = nil
			}
		}
	}
	srv.Prepared.Clear()
	for _, n := range names {
		if srv.Prepared.Add(n) != "" {
			srv.Broken = true // a statement we no longer track stays prepared: start afresh
		}
	}
	for name, st := range s.stmts {
		if !slices.Contains(kept, st) {
			delete(s.stmts, name)
		}
	}
}

// afterDiscardLocked runs at the ReadyForQuery of a Query that ran DISCARD ALL: the client's
// settings are its login's again, and the server's its own. s.mu is held.
func (s *ClientSession) afterDiscardLocked(srv *backend.ServerConn) {
	if !s.discarded {
		return
	}
	s.discarded = false
	srv.ResetParams()
	s.params = append(s.params[:0], s.initial...)
	s.carried = nil
	s.pver++
	s.paramsUntold = true // the client heard the server's values
}

// forwardNotification passes a NotificationResponse on to the client. A notification the
// client's own server sent carries that server's PID, which the client does not know: it is
// told sluice's PID for it in BackendKeyData, and clients (libpq's users, pgjdbc) compare the two
// to tell their own notifications from others'. Such a PID becomes the client's. The caller holds
// s.out.mu.
func (s *ClientSession) forwardNotification(srv *backend.ServerConn, o *clientOut) error {
	msg, err := srv.R.Message()
	if err != nil {
		return err
	}
	if len(msg) >= wire.HeaderLen+4 && binary.BigEndian.Uint32(msg[wire.HeaderLen:]) == srv.PID() {
		binary.BigEndian.PutUint32(msg[wire.HeaderLen:], s.pid)
	}
	_, err = o.Write(msg)
	srv.R.Discard(len(msg))
	if err != nil {
		return &clientWriteError{err}
	}
	return nil
}

// copyInStartedLocked runs when the server begins a COPY FROM STDIN. Postgres ignores a Sync
// that it reads during the COPY (libpq and tokio-postgres send Execute and Sync before the data),
// so the Syncs the client sent after the COPY's request and before its CopyDone or CopyFail get
// no ReadyForQuery: their entries go, and the reader queues none for such Syncs from now on.
// s.mu is held.
func (s *ClientSession) copyInStartedLocked() {
	h := s.q.head()
	if h == nil || (h.kind != kQuery && h.kind != kExecute) {
		return
	}
	s.q.dropSyncs(h.copyGen)
	s.inCopyIn, s.copyInGen, s.copyInSimple = true, h.copyGen, h.kind == kQuery
	if s.drained != nil && s.copyInWaitingLocked() {
		// The client's Terminate waits for this request's replies, and came before any end of
		// the COPY: none will come, nor the replies. The session ends and its server is closed.
		close(s.drained)
		s.drained = nil
	}
}

// idlePointLocked runs at each ReadyForQuery. With nothing outstanding, the client is now idle:
// inside a transaction the idle-in-transaction timer starts (the reader stops it when the client
// speaks); during shutdown an idle client is told to go.
func (s *ClientSession) idlePointLocked() {
	if !s.q.empty() || s.open {
		return
	}
	switch {
	case s.stopping && s.tx == 'I':
		s.setClientDeadline(time.Now())
	case s.tx != 'I':
		if t := s.l.table().Config.General.IdleClientInTransactionTimeout; t > 0 {
			s.deadline.Store(true)
			s.setClientDeadline(time.Now().Add(t))
		}
	}
}

// popIf pops the head entry when it is of one of the kinds.
func (s *ClientSession) popIf(kinds ...entryKind) {
	h := s.q.head()
	if h == nil {
		return
	}
	for _, k := range kinds {
		if h.kind == k {
			s.q.pop()
			return
		}
	}
}

// emitDueLocked writes the synthetic replies at the head of the queue. Both locks are held.
func (s *ClientSession) emitDueLocked() {
	for h := s.q.head(); h != nil && h.synthetic(); h = s.q.head() {
		e := s.q.pop()
		_, _ = s.out.Write(e.reply())
	}
}

// serverErrorLocked handles an ErrorResponse: in an extended batch the server skips to Sync, so
// the entries up to Sync get no reply, and statements whose Parse was skipped or failed do not
// exist. It returns whether the error goes to the client.
func (s *ClientSession) serverErrorLocked(srv *backend.ServerConn, msg []byte) bool {
	s.traf.errors++
	h := s.q.head()
	if h == nil {
		return true // an asynchronous error, such as a FATAL from an administrator command
	}
	if (h.kind == kBind || h.kind == kDescribe) && h.name != "" && stalePlan(wire.Body(msg)) {
		// Clients share server statements by text: one prepared before a schema change must
		// not serve those that prepare the text after it.
		s.target.Statements.Renew(baseStatementName(h.name), h.name)
	}
	keep := true
	switch h.kind {
	case kQuery, kFunc, kSync:
		return true
	case kAbortSwallow:
		keep = false
	}
	var reopened []entry
	endedBatch := false
	for failed := true; s.q.head() != nil && s.q.head().kind != kSync; failed = false {
		e := s.q.pop()
		endedBatch = endedBatch || e.endsBatch
		if e.endsBatch && s.unnamedSeq != s.unnamedKeptSeq && s.unnamedDropped == s.unnamedKeptSeq {
			// A Parse came after the skipped Query: its own entry, next, says which unnamed
			// statement the client has, from what it had before; the Query's drop did not
			// happen either (seed 4335).
			s.unnamedDropped = s.unnamedKeptDropped
		}
		if e.endsBatch && s.unnamedSeq == s.unnamedKeptSeq {
			// The skipped Query did not drop the unnamed statement (no Parse came since):
			// the client has the last one the server accepted, which may be the one the
			// Query dropped.
			s.unnamedDropped = s.unnamedKeptDropped
			switch {
			case s.unnamedGoodSeq == s.unnamedKeptSeq:
				s.setUnnamedLocked(s.unnamedKept)
			case s.unnamedGoodSeq != 0 && s.unnamedGoodSeq > s.unnamedDropped:
				s.setUnnamedLocked(s.unnamedGood)
			default:
				s.setUnnamedLocked(nil)
			}
		}
		if e.dropsUnnamed && s.unnamedDropped == e.seq && !s.q.dropsUnnamedAfterSync() {
			// The skipped Close did not drop the unnamed statement: the client has the last
			// one the server accepted, unless a Parse after the Close made another (a skipped
			// one comes next in the queue, and does the same).
			s.unnamedDropped = e.dropped
			if s.unnamedSeq == e.seq {
				s.setUnnamedLocked(nil)
				if s.unnamedGoodSeq != 0 && s.unnamedGoodSeq > s.unnamedDropped {
					s.setUnnamedLocked(s.unnamedGood)
				}
			}
			if s.unnamedKeptSeq == e.seq && s.unnamedKeptDropped == e.seq {
				// A Query after the Close kept what the client had then, which was nothing:
				// skipped too, it comes next and gives back what the client has without it.
				s.unnamedKeptDropped = e.dropped
				s.unnamedKept = s.unnamedKept[:0]
				if s.unnamedGoodSeq != 0 && s.unnamedGoodSeq > e.dropped {
					s.unnamedKept = append(s.unnamedKept, s.unnamedGood...)
				}
			}
		}
		s.skippedLocked(srv, e, failed, &reopened)
	}
	s.reopenLocked(reopened)
	if s.q.head() == nil {
		// No Sync sent yet: Postgres skips what the client sends until its Sync.
		s.skipToSync.Store(true)
		if endedBatch {
			s.open = true // the Query that would have ended the batch was skipped
		}
	}
	return keep
}

// skippedLocked forgets what a message the server skipped after an error would have made: e
// is its entry, and failed says it is the entry of the message that failed. A client's Close
// of its statement is added to reopened, for reopenLocked. s.mu is held.
func (s *ClientSession) skippedLocked(srv *backend.ServerConn, e entry, failed bool, reopened *[]entry) {
	switch e.kind {
	case kCloseSynth:
		if e.closed != nil {
			*reopened = append(*reopened, e)
		}
	case kParse, kParseSwallow, kParseSynth:
		if e.kind != kParseSynth && e.name != "" {
			delete(s.unparsed, e.name)
		}
		if e.kind != kParseSynth && e.name != "" && !e.kept && (failed || !e.renew) {
			// A renewing Parse skipped had its Close skipped too: the statement is
			// still there.
			srv.Prepared.Remove(e.name)
			if failed {
				s.target.Statements.Remove(e.name)
			}
		}
		if e.kind != kParseSynth && e.name == "" && e.client == "" {
			// A failed Parse of the unnamed statement leaves none on the server; one the
			// server skipped leaves the one before, maybe another client's: either way this
			// session's is not there.
			srv.UnnamedOwner = nil
			if e.kind == kParse {
				s.unnamedAnsweredLocked(e.seq, false)
			}
			switch {
			case failed:
				// The client's own Parse failed: it has no unnamed statement now (Postgres
				// drops the old one first), so do not send it again; unless the reader read
				// a later Parse of it meanwhile, after a Sync, which makes another.
				if e.seq == s.unnamedSeq {
					s.setUnnamedLocked(nil)
				}
				s.unnamedGoodSeq = 0
			case e.kind == kParse && e.seq == s.unnamedSeq:
				// Its last Parse was skipped: its unnamed statement is the one before, if
				// that is known (it is sent again before the next Bind); none otherwise.
				s.setUnnamedLocked(nil)
				if s.unnamedGoodSeq != 0 && s.unnamedGoodSeq > s.unnamedDropped {
					s.setUnnamedLocked(s.unnamedGood)
				}
			}
		}
		if e.stmt != nil {
			e.stmt.skipped = true
		}
		if e.client != "" {
			if st := s.stmts[e.client]; st != nil && st.server == e.name || e.kind == kParseSynth {
				delete(s.stmts, e.client)
			}
		}
	case kCloseSwallow:
		if !e.retry && srv.Prepared.Add(e.name) != "" {
			srv.Broken = true // a statement we no longer track stays prepared: start afresh
		}
	}
}

// reopenLocked gives the client back its statements whose Close the server skipped: they are
// still there (a Parse of the name after the Close was skipped too, and its statement was
// dropped by skippedLocked). s.mu is held.
func (s *ClientSession) reopenLocked(reopened []entry) {
	for _, e := range reopened {
		if s.stmts[e.client] == nil && !e.closed.skipped {
			if s.stmts == nil {
				s.stmts = map[string]*statement{}
			}
			s.stmts[e.client] = e.closed
		}
	}
}

// stalePlan reports whether an ErrorResponse body is Postgres' "cached plan must not change
// result type": a prepared statement whose result columns a schema change (or another
// search_path) altered. The routine's name is not translated, unlike the message.
func stalePlan(body []byte) bool {
	return string(wire.ErrorField(body, 'C')) == "0A000" &&
		string(wire.ErrorField(body, 'R')) == "RevalidateCachedQuery"
}

// cancelQuery forwards a client's cancel request to the server running its query, if any, and
// to every server a query across shards holds, all at once. Each server is held for the cancel
// (HoldForCancel) under s.mu, while it is still this session's: the pool hands it to no other
// client before the request is done. A client waiting for a server has its wait ended instead
// (errWaitCanceled): its query fails with 57014 without having run.
func (s *ClientSession) cancelQuery() {
	s.mu.Lock()
	srvs := append([]*backend.ServerConn(nil), s.fanSrvs...)
	if s.srv != nil && !slices.Contains(srvs, s.srv) {
		srvs = append(srvs, s.srv)
	}
	sends := make([]func(context.Context) error, len(srvs))
	for i, srv := range srvs {
		sends[i] = srv.HoldForCancel()
	}
	if s.waiting {
		select {
		case s.waitStop <- struct{}{}:
		default: // stopped already
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, srv := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sends[i](ctx); err != nil {
				s.l.log.Warn("cancel request failed", "server", srv.Addr(), "err", err)
			}
		}()
	}
	wg.Wait()
}

// shutdown asks the session to end at its next idle point.
func (s *ClientSession) shutdown() {
	s.mu.Lock()
	s.stopping = true
	idle := s.srv == nil || (s.tx == 'I' && s.q.empty() && !s.open)
	s.mu.Unlock()
	if idle {
		s.setClientDeadline(time.Now())
	}
}

// cleanup takes the server back from the pump when the client leaves, rolls back an open
// transaction, resets a session-mode server, and returns it to its pool; a server caught in the
// middle of a reply is closed instead.
func (s *ClientSession) cleanup() {
	defer s.disconnectHooks()
	s.fanDrop()
	for _, sh := range s.joinedShards() {
		s.leave(sh, true) // closed: whatever the transaction did there is rolled back
	}
	s.mu.Lock()
	s.closing = true
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		_ = srv.SetReadDeadline(time.Now()) // wake the pump
	}
	s.pump.Wait()
	s.mu.Lock()
	srv, pl := s.srv, s.pl
	busy := !s.q.empty() || s.open || s.killed
	st := s.tx
	s.srv, s.pl = nil, nil
	s.q.reset()
	s.mu.Unlock()
	s.out.mu.Lock()
	s.out.Idle()
	s.out.mu.Unlock()
	s.r.Shrink()
	if srv == nil {
		return
	}
	_ = srv.SetReadDeadline(time.Time{})
	if busy || srv.R.Buffered() > 0 || srv.W.Buffered() > 0 {
		// Still answering: cancel would leave its reply to drain; closing is simpler and safe.
		srv.Broken = true
	}
	if !srv.Broken {
		_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		if st != 'I' {
			if st2, err := srv.Exec("ROLLBACK"); err != nil || st2 != 'I' {
				srv.Broken = true
			}
		}
		if !s.txMode && !srv.Broken {
			if q := s.l.table().Config.General.ServerResetQuery; q != "" {
				if _, err := srv.Exec(q); err != nil {
					srv.Broken = true
				}
				srv.Prepared.Clear()
				srv.ResetParams()
			}
		}
		_ = srv.SetReadDeadline(time.Time{})
	}
	srv.Synced = "" // a ROLLBACK may have undone settings: compare afresh next time
	pl.Release(srv)
}
