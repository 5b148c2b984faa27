package frontend

import (
	"fmt"
	"strings"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/wire"
)

// Startup settings after RESET. A client's startup packet sets its session defaults: on a
// direct connection, RESET DateStyle (RESET ALL, SET DateStyle TO DEFAULT, DISCARD ALL) returns to the
// value the client logged in with. A pooled server logged in with its own, and sluice gives it
// the client's with set_config, which leaves the server's reset value alone; so the RESET
// would bring back the server's value instead. Postgres has no way to change a session's reset
// value, so sluice follows such a RESET with its own Query, sent behind the client's, that sets
// the client's startup values again. Its replies are dropped but for the ParameterStatus
// messages, which tell the client what a direct RESET would have told it, and its
// ReadyForQuery, which stands for the client's (see kRestore).

// restoreQuery returns the query that gives back the startup settings that text's RESET
// statements return to srv's own values, or "" when there is nothing to give back. Only simple
// Query texts are looked at. s.mu is held.
func (s *ClientSession) restoreQuery(srv *backend.ServerConn, text []byte) string {
	// The text first: most queries set nothing, and the lexical checks reject them without a
	// look at the settings; then only clients whose startup settings differ from the server's.
	sets := s.resetsOf(text)
	if len(sets) == 0 || !s.startupDiffers(srv) || classify.MayCopy(text) {
		// After a COPY FROM STDIN the server reads the client's data, not another Query:
		// such a text gets the server's values, as it did before restores.
		return ""
	}
	var sb strings.Builder
	for _, p := range s.initial {
		if !resetLast(sets, p.name) {
			continue
		}
		v, reported := srv.Initial[p.name]
		if reported && v == p.value {
			continue // the server's own value is the client's: RESET gives it already
		}
		if !reported && s.txMode {
			// Transaction mode keeps no record of a value it did not carry, and a setting no
			// ParameterStatus reports would stay on the server for its next client unseen.
			continue
		}
		// No row comes back: DataRows reach the client without sluice looking at them.
		set := fmt.Sprintf("pg_catalog.set_config(%s, %s, false) IS NULL", quoteLiteral(p.name), quoteLiteral(p.value))
		if reported {
			// Only where the RESET took effect: a Query that failed outside a transaction
			// block rolled its RESET back, and the client keeps the value it had. CASE, as
			// the planner may reorder the operands of an AND. (A setting the server does not
			// report has no value of the server's to compare with: it is set regardless.)
			set = fmt.Sprintf("CASE WHEN pg_catalog.current_setting(%s) = %s THEN %s ELSE false END",
				quoteLiteral(p.name), quoteLiteral(v), set)
		}
		fmt.Fprintf(&sb, "SELECT WHERE %s;", set)
	}
	return sb.String()
}

// startupDiffers reports whether any of the client's startup settings differs from srv's own
// value (or is one srv does not report): only those can need a restore.
func (s *ClientSession) startupDiffers(srv *backend.ServerConn) bool {
	for _, p := range s.initial {
		if v, ok := srv.Initial[p.name]; !ok || v != p.value {
			return true
		}
	}
	return false
}

// resetsOf returns the statements of text that change settings, in order: SET and RESET from
// the listener's cache of parses, and DISCARD ALL, rare enough to be parsed each time.
func (s *ClientSession) resetsOf(text []byte) []classify.Setting {
	if classify.MayDiscardAll(text) {
		sets, _ := classify.Resets(text, 0)
		return sets
	}
	if !classify.MaySet(text) {
		return nil
	}
	sets, _ := s.l.settings.Settings(text)
	return sets
}

// resetLast reports whether the last of sets to touch setting name resets it (RESET name,
// SET name TO DEFAULT, RESET ALL). A later SET of the same query wins over the RESET, and a SET
// LOCAL ends with its transaction, so neither asks for a restore.
func resetLast(sets []classify.Setting, name string) bool {
	reset := false
	for _, set := range sets {
		switch set.Kind {
		case classify.SettingResetAll:
			reset = true
		case classify.SettingReset:
			if strings.EqualFold(set.Name, name) {
				reset = true
			}
		case classify.SettingValue:
			if strings.EqualFold(set.Name, name) {
				reset = false
			}
		}
	}
	return reset
}

// restoreReply drops the server's replies that the client must not see because of a restore
// query (kRestore): the ReadyForQuery of the client's Query just before it, and the restore's
// own rows, tag and error (an aborted transaction refuses it, as it would have refused the
// RESET's effect). It reports whether msg was dropped. The caller holds s.out.mu and s.mu.
func (s *ClientSession) restoreReply(srv *backend.ServerConn, typ byte, msg []byte) bool {
	h := s.q.head()
	if h == nil {
		return false
	}
	switch {
	case h.kind == kRestore:
		if typ == wire.ParameterStatus || typ == wire.ReadyForQuery || typ == wire.NoticeResponse {
			return false
		}
	case h.kind == kQuery && typ == wire.ReadyForQuery:
		next := s.q.peek(1)
		if next == nil || next.kind != kRestore {
			return false
		}
		s.q.pop()
		// The restore's ParameterStatus messages, next, tell what the server has then.
		s.afterDiscardLocked(srv)
	default:
		return false
	}
	srv.R.Discard(len(msg))
	return true
}
