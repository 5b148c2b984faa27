package classify

import (
	"bytes"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/sluicepg/sluice/internal/textcache"
)

// SettingKind says what a SET or RESET statement does to the session's settings, as a pooler
// that carries settings from server to server must know it.
type SettingKind uint8

const (
	// SettingValue is SET [SESSION] name {TO|=} value: Setting.Stmt sets it again.
	SettingValue SettingKind = iota + 1
	// SettingReset is RESET name or SET name TO DEFAULT.
	SettingReset
	// SettingResetAll is RESET ALL.
	SettingResetAll
	// SettingTransient changes nothing that outlives the transaction: SET LOCAL, SET
	// TRANSACTION.
	SettingTransient
	// SettingNotCarried is a change a pooler must undo rather than carry: SET ROLE, SET SESSION
	// AUTHORIZATION, SET SESSION CHARACTERISTICS, SET ... FROM CURRENT, and settings of the
	// current transaction.
	SettingNotCarried
)

// Setting is one SET or RESET statement of a query text.
type Setting struct {
	Kind SettingKind
	// Name is the setting's name in lower case (Postgres compares them case-insensitively);
	// empty for RESET ALL.
	Name string
	// Stmt, for SettingValue, is a session-level SET statement (no trailing semicolon) that
	// gives the setting the same value, with Postgres' own meaning: the value expressions are
	// the parser's, so a list (search_path TO a, "B c") stays a list.
	Stmt string
}

// MaySet reports, cheaply and without parsing, whether a query text may hold a SET or RESET
// statement: whether any of its statements begins with one of those keywords. Strings, quoted
// identifiers and comments are skipped. A false answer is certain; a true one is to be
// confirmed by Settings.
func MaySet(q []byte) bool {
	return mayStart(q, startsSet)
}

// MayDiscardAll reports, as MaySet does for SET, whether a query text may hold a DISCARD
// statement. A true answer is to be confirmed by Resets.
func MayDiscardAll(q []byte) bool {
	return mayStart(q, startsDiscard)
}

// MayCopy reports, as MaySet does for SET, whether a query text may hold a COPY statement.
func MayCopy(q []byte) bool {
	return mayStart(q, func(b []byte) bool { return startsKeyword(b, "copy") })
}

// mayStart reports whether any statement of q may begin as starts says.
func mayStart(q []byte, starts func([]byte) bool) bool {
	i := skipSpaceComments(q, 0)
	if starts(q[i:]) {
		return true
	}
	if bytes.IndexByte(q[i:], ';') < 0 {
		return false
	}
	for i < len(q) {
		switch c := q[i]; {
		case c == '\'':
			j, ok := endString(q, i, backslashes(q, i))
			if !ok {
				return false
			}
			i = j
		case c == '"':
			j := bytes.IndexByte(q[i+1:], '"')
			if j < 0 {
				return false
			}
			i += j + 2
		case c == '$':
			if j, ok := endDollar(q, i); ok {
				i = j
			} else {
				i++
			}
		case c == '-' && i+1 < len(q) && q[i+1] == '-', c == '/' && i+1 < len(q) && q[i+1] == '*':
			i = skipSpaceComments(q, i)
		case c == ';':
			i = skipSpaceComments(q, i+1)
			if starts(q[i:]) {
				return true
			}
		default:
			i++
		}
	}
	return false
}

// skipSpaceComments returns the index of the first byte at or after i that is neither white
// space nor in a comment.
func skipSpaceComments(q []byte, i int) int {
	for {
		i = skipSpace(q, i)
		switch {
		case i+1 < len(q) && q[i] == '-' && q[i+1] == '-':
			j := bytes.IndexByte(q[i:], '\n')
			if j < 0 {
				return len(q)
			}
			i += j + 1
		case i+1 < len(q) && q[i] == '/' && q[i+1] == '*':
			j, ok := endComment(q, i)
			if !ok {
				return len(q)
			}
			i = j
		default:
			return i
		}
	}
}

// startsSet reports whether q begins with the keyword SET or RESET.
func startsSet(q []byte) bool {
	return startsKeyword(q, "set") || startsKeyword(q, "reset")
}

// startsDiscard reports whether q begins with the keyword DISCARD.
func startsDiscard(q []byte) bool {
	return startsKeyword(q, "discard")
}

// startsKeyword reports whether q begins with the lower-case keyword kw.
func startsKeyword(q []byte, kw string) bool {
	return len(q) >= len(kw) && equalFold(q[:len(kw)], kw) && (len(q) == len(kw) || !isIdentChar(q[len(kw)]))
}

// SettingsParser finds the SET and RESET statements of query texts, remembering what it found
// for the texts it saw last. It is safe for concurrent use.
type SettingsParser struct {
	maxLength int
	cache     *textcache.Cache[[]Setting]
}

// NewSettingsParser returns a SettingsParser that keeps up to size texts and parses none
// longer than maxLength bytes (DefaultMaxLength when 0).
func NewSettingsParser(size, maxLength int) *SettingsParser {
	if maxLength <= 0 {
		maxLength = DefaultMaxLength
	}
	return &SettingsParser{maxLength: maxLength, cache: textcache.New[[]Setting](size, size*1024)}
}

// Settings returns the SET and RESET statements of query (a simple Query's text, or a Parse's),
// in the order they run; statements of other kinds are left out. ok is false when the text
// cannot be parsed (or is too long to be): the caller cannot know what its SETs do. The
// returned slice is shared and must not be modified.
func (p *SettingsParser) Settings(query []byte) (sets []Setting, ok bool) {
	if r, found := p.cache.Get(query); found {
		return r, r == nil || len(r) > 0
	}
	sets, ok = parseSettings(query, p.maxLength, false)
	if !ok {
		sets = []Setting{} // not nil: remembered as unparsable
	}
	size := len(query) + 64
	for _, s := range sets {
		size += len(s.Name) + len(s.Stmt) + 48
	}
	p.cache.Put(string(query), sets, size)
	return sets, ok
}

// parseSettings does the work of Settings and, with discardAll, of Resets. A text without
// SET or RESET (or DISCARD ALL) gives nil; a text that cannot be parsed gives ok false.
func parseSettings(query []byte, maxLength int, discardAll bool) (sets []Setting, ok bool) {
	if len(query) > maxLength || bytes.IndexByte(query, 0) >= 0 {
		return nil, false
	}
	tree, err := pg.Parse(string(query))
	if err != nil {
		return nil, false
	}
	for _, raw := range tree.GetStmts() {
		stmt := raw.GetStmt()
		if d := stmt.GetDiscardStmt(); discardAll && d != nil && d.GetTarget() == pg.DiscardMode_DISCARD_ALL {
			sets = append(sets, Setting{Kind: SettingResetAll})
			continue
		}
		vs := stmt.GetVariableSetStmt()
		if vs == nil {
			continue
		}
		s, ok := setting(vs)
		if !ok {
			return nil, false
		}
		sets = append(sets, s)
	}
	return sets, true
}

// Resets returns, in the order they run, the statements of query that change the session's
// settings: SET and RESET as Settings gives them, and DISCARD ALL as a SettingResetAll (it
// resets every setting too). It parses query each time, uncached: callers ask only for texts
// MayDiscardAll accepts. ok is false when the text cannot be parsed.
func Resets(query []byte, maxLength int) (sets []Setting, ok bool) {
	if maxLength <= 0 {
		maxLength = DefaultMaxLength
	}
	return parseSettings(query, maxLength, true)
}

// setting describes one SET or RESET statement.
func setting(vs *pg.VariableSetStmt) (Setting, bool) {
	name := strings.ToLower(vs.GetName())
	s := Setting{Name: name}
	switch vs.GetKind() {
	case pg.VariableSetKind_VAR_RESET_ALL:
		s.Kind, s.Name = SettingResetAll, ""
		return s, true
	case pg.VariableSetKind_VAR_SET_MULTI:
		if vs.GetName() == "TRANSACTION" {
			s.Kind = SettingTransient // SET TRANSACTION ..., SET TRANSACTION SNAPSHOT
		} else {
			s.Kind = SettingNotCarried
		}
		return s, true
	}
	switch name {
	case "role", "session_authorization", "transaction_isolation", "transaction_read_only",
		"transaction_deferrable":
		s.Kind = SettingNotCarried
		return s, true
	}
	if vs.GetIsLocal() {
		s.Kind = SettingTransient
		return s, true
	}
	switch vs.GetKind() {
	case pg.VariableSetKind_VAR_SET_DEFAULT, pg.VariableSetKind_VAR_RESET:
		s.Kind = SettingReset
	case pg.VariableSetKind_VAR_SET_VALUE:
		stmt, ok := setStatement(vs)
		if !ok {
			// A value that is not a plain constant (SET TIME ZONE INTERVAL ...): not carried.
			s.Kind = SettingNotCarried
			return s, true
		}
		s.Kind, s.Stmt = SettingValue, stmt
	default:
		s.Kind = SettingNotCarried // SET ... FROM CURRENT
	}
	return s, true
}

// setStatement builds a SET statement that gives vs's setting the values vs gives it. The
// grammar makes the same string constant of an identifier and of a quoted string (SET
// search_path TO a, "B c" and TO 'a', 'B c' are one statement), and the server applies a
// list setting's quoting to each element, so each value is written as a string literal:
// a list stays a list, and no value is truncated as a long identifier would be.
func setStatement(vs *pg.VariableSetStmt) (string, bool) {
	var b strings.Builder
	b.WriteString("SET ")
	b.WriteString(quoteIdentifier(strings.ToLower(vs.GetName())))
	b.WriteString(" TO ")
	if len(vs.GetArgs()) == 0 {
		return "", false
	}
	for i, arg := range vs.GetArgs() {
		if i > 0 {
			b.WriteString(", ")
		}
		c := arg.GetAConst()
		if c == nil || c.GetIsnull() {
			return "", false
		}
		switch v := c.GetVal().(type) {
		case *pg.A_Const_Sval:
			b.WriteString(quoteString(v.Sval.GetSval()))
		case *pg.A_Const_Ival:
			b.WriteString(strconv.FormatInt(int64(v.Ival.GetIval()), 10))
		case *pg.A_Const_Fval:
			b.WriteString(v.Fval.GetFval())
		case *pg.A_Const_Boolval:
			b.WriteString(strconv.FormatBool(v.Boolval.GetBoolval()))
		default:
			return "", false
		}
	}
	return b.String(), true
}

// quoteString writes s as a string literal that means s whatever standard_conforming_strings
// is.
func quoteString(s string) string {
	if strings.Contains(s, `\`) {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func quoteIdentifier(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
