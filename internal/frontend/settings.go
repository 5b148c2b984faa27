package frontend

import (
	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/wire"
)

// Settings in transaction mode. A client's SET of a setting that no ParameterStatus reports
// (statement_timeout, work_mem, search_path before PostgreSQL 18) is the client's own once its
// transaction commits: it joins the client's params as the SET statement itself (see carried),
// and applyParams sets it again on whatever server the client gets next, in the round trip it
// makes anyway. The server the client used keeps the value and records it in its Params, so
// the next client that never set it gets it RESET by applyParams.
//
// What cannot be carried safely marks the server Dirty, as every SET did before: the pool
// resets the session before another client gets it (SET ROLE, SET SESSION AUTHORIZATION), and
// the client loses the setting (a SET in a transaction that used savepoints, whose outcome
// sluice does not follow; a SET sluice could not parse).

// settingsCacheSize is how many query texts with SET or RESET statements the listener
// remembers the parse of.
const settingsCacheSize = 1000

// setTx follows the transaction under way for the SETs it made.
type setTx struct {
	// pending are the SETs and RESETs of the transaction, to become the client's at COMMIT.
	pending []classify.Setting
	// failed is set by an error: the transaction will roll back (unless a savepoint, see
	// savepoint, saves it).
	failed bool
	// savepoint is set when the transaction made a savepoint: a ROLLBACK may undo part of it
	// only, so its SETs are not carried.
	savepoint bool
}

// settingsOf returns the SET and RESET statements of a query text, in transaction mode. Texts
// without one cost a look at their first keywords, not a parse.
func (s *ClientSession) settingsOf(text []byte) []classify.Setting {
	if !s.txMode || !s.target.Pool.CleanupServerConnections || !classify.MaySet(text) {
		return nil
	}
	sets, _ := s.l.settings.Settings(text)
	return sets // nil when unparsable: their SET tags then make the server Dirty
}

// bindSettings records the SET and RESET statements of the portal a Bind (body) makes of the
// statement with text query, for the portal's Execute. Reader only.
func (s *ClientSession) bindSettings(body, query []byte) {
	portal, _, ok := wire.CString(body)
	if !ok {
		return
	}
	sets := s.settingsOf(query)
	switch {
	case sets != nil:
		if s.portalSets == nil {
			s.portalSets = map[string][]classify.Setting{}
		}
		s.portalSets[string(portal)] = sets
	case s.portalSets != nil:
		delete(s.portalSets, string(portal))
	}
}

// noteTagLocked follows a CommandComplete's tag in transaction mode: a SET or RESET completed,
// or the transaction committed, rolled back or made a savepoint. s.mu is held.
func (s *ClientSession) noteTagLocked(srv *backend.ServerConn, tag []byte) {
	if len(tag) == 0 {
		return
	}
	switch tag[0] {
	case 'S', 'R', 'C', 'P':
	default:
		return
	}
	switch string(tag) {
	case "SET", "RESET":
		s.noteSetLocked(srv)
	case "COMMIT":
		s.endSetTxLocked(srv)
	case "ROLLBACK":
		// A ROLLBACK, a failed transaction's COMMIT, or a ROLLBACK TO SAVEPOINT.
		if s.setTx.savepoint {
			s.forgetPendingLocked(srv)
		}
		s.setTx.pending = s.setTx.pending[:0]
		s.setTx.failed = false
	case "SAVEPOINT":
		s.setTx.savepoint = true
	case "PREPARE TRANSACTION":
		s.forgetPendingLocked(srv)
		s.setTx = setTx{pending: s.setTx.pending[:0]}
	}
}

// noteSetLocked takes a completed SET or RESET statement off the head entry (a Query or an
// Execute) and holds it until its transaction ends. s.mu is held.
func (s *ClientSession) noteSetLocked(srv *backend.ServerConn) {
	h := s.q.head()
	if h == nil || (h.kind != kQuery && h.kind != kExecute) || len(h.sets) == 0 {
		// Not a statement sluice read (a text it could not parse): the reset of old.
		srv.Dirty = true
		return
	}
	set := h.sets[0]
	h.sets = h.sets[1:]
	switch set.Kind {
	case classify.SettingTransient:
	case classify.SettingNotCarried:
		srv.Dirty = true
	case classify.SettingValue, classify.SettingReset:
		if _, reported := srv.Initial[canonicalName(set.Name)]; reported {
			return // its ParameterStatus carries it (noteParameterLocked)
		}
		s.setTx.pending = append(s.setTx.pending, set)
	case classify.SettingResetAll:
		s.setTx.pending = append(s.setTx.pending, set)
	}
}

// endSetTxLocked runs at the end of a transaction that did not roll back (COMMIT, or
// ReadyForQuery with status idle): its SETs become the client's, unless it failed (an
// implicit transaction rolls back at its error) or made savepoints. s.mu is held.
func (s *ClientSession) endSetTxLocked(srv *backend.ServerConn) {
	if len(s.setTx.pending) > 0 {
		switch {
		case s.setTx.savepoint:
			s.forgetPendingLocked(srv)
		case !s.setTx.failed:
			for _, set := range s.setTx.pending {
				s.commitSettingLocked(srv, set)
			}
			s.pver++
			srv.Synced = s.paramsKey()
		}
	}
	s.setTx = setTx{pending: s.setTx.pending[:0]}
}

// commitSettingLocked makes a committed SET or RESET the client's, and records what the server
// now has. s.mu is held.
func (s *ClientSession) commitSettingLocked(srv *backend.ServerConn, set classify.Setting) {
	switch set.Kind {
	case classify.SettingValue:
		s.putCarriedLocked(set.Name, set.Stmt)
		srv.Params[set.Name] = set.Stmt
	case classify.SettingReset:
		s.dropParamLocked(set.Name)
		delete(srv.Params, set.Name) // not reported, so not in Initial
	case classify.SettingResetAll:
		// Reported settings come back in ParameterStatus messages; the rest are gone.
		s.params = keepParams(s.params, func(p param) bool { _, ok := srv.Initial[p.name]; return ok })
		s.carried = nil
		for k := range srv.Params {
			if _, ok := srv.Initial[k]; !ok {
				delete(srv.Params, k)
			}
		}
	}
}

// forgetPendingLocked gives up the transaction's SETs when sluice cannot tell whether they
// hold: the client loses those settings and the server is reset before another client gets
// it, as before settings were carried. s.mu is held.
func (s *ClientSession) forgetPendingLocked(srv *backend.ServerConn) {
	if len(s.setTx.pending) == 0 {
		return
	}
	for _, set := range s.setTx.pending {
		if set.Kind == classify.SettingResetAll {
			s.params = keepParams(s.params, func(p param) bool { _, ok := srv.Initial[p.name]; return ok })
			s.carried = nil
		} else {
			s.dropParamLocked(set.Name)
		}
	}
	s.setTx.pending = s.setTx.pending[:0]
	s.pver++
	srv.Dirty = true
}

// putCarriedLocked sets the client's carried setting name to the SET statement stmt.
func (s *ClientSession) putCarriedLocked(name, stmt string) {
	if s.carried == nil {
		s.carried = map[string]bool{}
	}
	s.carried[name] = true
	for i := range s.params {
		if s.params[i].name == name {
			s.params[i].value = stmt
			return
		}
	}
	s.params = append(s.params, param{name, stmt})
}

// dropParamLocked forgets the client's setting name: its servers get their own value.
func (s *ClientSession) dropParamLocked(name string) {
	delete(s.carried, name)
	s.params = keepParams(s.params, func(p param) bool { return p.name != name })
}

// keepParams keeps, in place, the params keep accepts.
func keepParams(ps []param, keep func(param) bool) []param {
	out := ps[:0]
	for _, p := range ps {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// sessionEffect is what a statement with text q may leave in a server's session that sluice
// does not carry to the client's next server, in transaction mode (see classify.SessionEffects).
// The server then gets RESET ALL or DISCARD ALL before another client has it, as Dirty servers
// do; pgcat's cleanup_server_connections = false leaves it, as pgcat does.
func (s *ClientSession) sessionEffect(q []byte) classify.SessionEffect {
	if !s.txMode || !s.target.Pool.CleanupServerConnections {
		return classify.EffectNone
	}
	return classify.SessionEffects(q)
}

// markSession records on the server, before it runs a statement, what that statement may leave
// in its session. s.mu is held (attach returns with it): the pump's release, which reads the
// marks, runs after.
func markSession(srv *backend.ServerConn, e classify.SessionEffect) {
	switch e {
	case classify.EffectSettings:
		srv.Dirty = true
	case classify.EffectObjects:
		srv.Discard = true
	}
}
