package frontend

import "github.com/sluicepg/sluice/internal/wire"

// In transaction mode a client's named statements exist on servers under other names (see
// parseNamed), so the SQL command DEALLOCATE of such a statement would reach a server that does
// not know the client's name. Clients send it: psycopg 3 (before 3.2) deallocates the statements
// beyond prepared_max with "DEALLOCATE _pg3_N" through the extended protocol, and Rails does it
// with a simple Query. sluice answers it as it answers a Close of the statement: the client's
// name is forgotten, the server keeps the statement for other clients. A DEALLOCATE of a name the
// client did not prepare in the protocol (a statement of SQL PREPARE, or none) goes to the server.

// deallocateName returns the statement name of a query that is a single
// "DEALLOCATE [PREPARE] name" (an optional semicolon and white space around), folded to lower
// case unless quoted, as Postgres reads identifiers. ok is false for anything else, DEALLOCATE
// ALL included, and for text with comments.
func deallocateName(q []byte) (name string, ok bool) {
	i := skipSpace(q, 0)
	if !keywordAt(q, i, "deallocate") {
		return "", false
	}
	i = skipSpace(q, i+len("deallocate"))
	if keywordAt(q, i, "prepare") {
		if j := skipSpace(q, i+len("prepare")); j < len(q) && q[j] != ';' && q[j] != 0 {
			i = j
		}
	}
	var id []byte
	switch {
	case i < len(q) && q[i] == '"':
		for i++; ; i++ {
			if i >= len(q) {
				return "", false
			}
			if q[i] == '"' {
				if i+1 < len(q) && q[i+1] == '"' {
					id = append(id, '"')
					i++
					continue
				}
				i++
				break
			}
			id = append(id, q[i])
		}
		if len(id) == 0 {
			return "", false
		}
	default:
		start := i
		for ; i < len(q) && identByte(q[i], i == start); i++ {
			c := q[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			id = append(id, c)
		}
		if len(id) == 0 || string(id) == "all" {
			return "", false
		}
	}
	i = skipSpace(q, i)
	if i < len(q) && q[i] == ';' {
		i = skipSpace(q, i+1)
	}
	if i < len(q) && !(q[i] == 0 && i == len(q)-1) {
		return "", false
	}
	return string(id), true
}

// identByte reports whether c may stand in an unquoted identifier (first: at its start).
func identByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_', c >= 0x80:
		return true
	case '0' <= c && c <= '9', c == '$':
		return !first
	}
	return false
}

func skipSpace(q []byte, i int) int {
	for i < len(q) && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r' || q[i] == '\f') {
		i++
	}
	return i
}

// forgetDeallocated forgets the client's statement that the query deallocates, if it is one
// the client prepared in the protocol and the transaction (if any) has not failed (where
// Postgres refuses the command). It reports whether it did; the caller then answers the
// command itself.
func (s *ClientSession) forgetDeallocated(query []byte) bool {
	name, ok := deallocateName(query)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, mine := s.stmts[name]; !mine || (s.srv != nil && s.tx == 'E') {
		return false
	}
	delete(s.stmts, name)
	s.recording = false // a replay would not find the statement
	return true
}

// deallocateBind answers a Bind of the client's unnamed statement when that statement is a
// DEALLOCATE of one of the client's named statements: BindComplete now, then NoData and
// CommandComplete "DEALLOCATE" for the portal's Describe and Execute. body is the Bind's.
func (s *ClientSession) deallocateBind(body []byte) (bool, error) {
	u := s.unnamedMsg()
	if len(u) == 0 || len(body) == 0 || body[0] != 0 {
		return false, nil // no unnamed statement, or a named portal
	}
	_, query, _, _ := wire.ParseQuery(wire.Body(u))
	if !s.forgetDeallocated(query) {
		return false, nil
	}
	// The text is a well-formed command: a deferred Parse of it need not be checked at Sync.
	s.unnamedDeferred = false
	s.answering = &wireAnswer{rest: wire.AppendCommandComplete(nil, "DEALLOCATE")}
	return true, s.synth(entry{kind: kRawSynth, msg: []byte{wire.BindComplete, 0, 0, 0, 4}})
}

// deallocateQuery answers a simple Query that is a DEALLOCATE of one of the client's named
// statements, when nothing is outstanding: CommandComplete and ReadyForQuery with the session's
// transaction status.
func (s *ClientSession) deallocateQuery(text []byte) (bool, error) {
	if _, ok := deallocateName(text); !ok {
		return false, nil
	}
	s.mu.Lock()
	idle := s.q.empty() && !s.open && !s.copyOpen
	st := byte('I')
	if s.srv != nil {
		st = s.tx
	}
	s.mu.Unlock()
	if !idle || !s.forgetDeallocated(text) {
		return false, nil
	}
	b := wire.AppendCommandComplete(nil, "DEALLOCATE")
	return true, s.emit(wire.AppendReadyForQuery(b, st))
}

// mayDropStatements reports whether a query text may hold a DEALLOCATE ALL or a DISCARD ALL,
// which drop every prepared statement of the session when they run. It looks for the words
// anywhere, so it errs on the side of yes.
func mayDropStatements(q []byte) bool {
	// One pass: both words begin with d. It runs for every simple Query in transaction mode.
	for i := 0; i+len("discard") <= len(q); i++ {
		if q[i]|0x20 == 'd' && (keywordPrefix(q[i:], "deallocate") || keywordPrefix(q[i:], "discard")) {
			return true
		}
	}
	return false
}
