package classify

import "bytes"

// SessionEffect says what a query text may leave behind in a server's session, beyond its
// transaction, that SET tracking (Settings) does not see. In transaction mode the server goes to
// another client next, which must not inherit it.
type SessionEffect uint8

const (
	// EffectNone: nothing outlives the transaction that sluice does not follow.
	EffectNone SessionEffect = iota
	// EffectSettings: set_config(..., false), a SET in a function's clothes, may change settings
	// for the rest of the session. RESET ALL undoes it.
	EffectSettings
	// EffectObjects: temporary tables, views and sequences, cursors WITH HOLD, session advisory
	// locks, SQL prepared statements. Only DISCARD ALL undoes them.
	EffectObjects
)

// SessionEffects reads a query text, without parsing it, for what it may leave in the session.
// It looks for CREATE/INTO TEMP[ORARY], the pg_temp schema, WITH HOLD, the session-level
// advisory lock functions (pg_advisory_lock, pg_try_advisory_lock and their _shared forms; the
// _xact ones end with the transaction), set_config and a PREPARE statement. Strings, quoted
// identifiers and comments are skipped; dollar-quoted bodies are read, since a DO block runs
// them now. It may answer more than there is (a function body that is only stored), never less
// for the constructs it looks for: its answer only costs a session reset.
func SessionEffects(q []byte) SessionEffect {
	var eff SessionEffect
	var prev []byte  // the previous word, for TEMP and HOLD
	var first []byte // the statement's first word (nil: none yet), for PREPARE and INTO TEMP
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			j, ok := endString(q, i, backslashes(q, i))
			if !ok {
				return eff
			}
			i = j
		case c == '"':
			j := bytes.IndexByte(q[i+1:], '"')
			if j < 0 {
				return eff
			}
			if first == nil {
				first = q[i : i+1]
			}
			i += j + 2
			prev = nil
		case c == '$':
			j, ok := endDollar(q, i)
			if !ok {
				i++
				continue
			}
			// The body between the two tags.
			open := bytes.IndexByte(q[i+1:], '$') + i + 2
			close := j - (open - i)
			if close > open {
				eff = max(eff, SessionEffects(q[open:close]))
			}
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-', c == '/' && i+1 < len(q) && q[i+1] == '*':
			i = skipSpaceComments(q, i)
		case c == ';':
			prev, first = nil, nil
			i++
		case isIdentStart(c):
			j := i + 1
			for j < len(q) && isIdentChar(q[j]) {
				j++
			}
			w := q[i:j]
			eff = max(eff, wordEffect(w, prev, first))
			if eff == EffectObjects {
				return eff
			}
			if first == nil {
				first = w
			}
			prev = w
			i = j
		default:
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '(' {
				// An operator, a number or punctuation between two words.
				if first == nil {
					first = q[i : i+1]
				}
				prev = nil
			}
			i++
		}
	}
	return eff
}

// wordEffect is SessionEffects' verdict on one word, given the word before it and the first of
// its statement (nil for none: w is the first).
func wordEffect(w, prev, first []byte) SessionEffect {
	switch w[0] | 0x20 {
	case 't', 'h', 'p', 's': // the first letters of every word below
	default:
		return EffectNone
	}
	switch len(w) {
	case 4, 9: // temp, temporary
		if (equalFoldWord(w, "temp") || equalFoldWord(w, "temporary")) && prev != nil &&
			(equalFoldWord(prev, "create") || equalFoldWord(prev, "global") || equalFoldWord(prev, "local") ||
				equalFoldWord(prev, "replace") || (equalFoldWord(prev, "into") && selectInto(first))) {
			return EffectObjects
		}
		if equalFoldWord(w, "hold") && prev != nil && equalFoldWord(prev, "with") {
			return EffectObjects
		}
	}
	if first == nil && equalFoldWord(w, "prepare") {
		return EffectObjects
	}
	if len(w) >= len("pg_temp") && equalFold(w[:len("pg_temp")], "pg_temp") {
		return EffectObjects
	}
	if len(w) >= len("advisory_lock") && containsFold(w, "advisory_lock") {
		return EffectObjects
	}
	if equalFoldWord(w, "set_config") {
		return EffectSettings
	}
	return EffectNone
}

// selectInto reports whether a statement that begins with the word first may be SELECT INTO (not
// INSERT INTO a table named temp).
func selectInto(first []byte) bool {
	return equalFoldWord(first, "select") || equalFoldWord(first, "with")
}

// equalFoldWord reports whether w is the lower-case word kw, in any case.
func equalFoldWord(w []byte, kw string) bool { return len(w) == len(kw) && equalFold(w, kw) }

// containsFold reports whether w holds the lower-case string sub, in any case.
func containsFold(w []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(w); i++ {
		if w[i]|0x20 == sub[0] && equalFold(w[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
