package shard

import (
	"bytes"
	"sort"
	"strconv"
)

// A statement shared by the texts of one shape (see Extractor.Analyze) reads each key value
// that is a literal from the text at hand: the literal's characters, as the classifier's
// lexer delimits them, turned into the value the parser would give. literalValue does that
// only for the literals whose value is plain to read from their characters alone: digits, a
// standard '...' string, a $tag$...$tag$ string. A statement whose key literals are written
// otherwise (E'...', 1e3, 1_000, -5, strings continued on the next line) is cached by its
// own text.

// literal ties a constant at location (the parser's byte offset) to the text's literal there,
// when the constant's value text can be read back from that literal's characters by
// literalValue: it returns the literal's place in the statement's refs plus one, or 0 when
// the constant cannot be tied.
func (a *analyzer) literal(location int, text string) int {
	k := sort.Search(len(a.lits), func(i int) bool { return a.lits[i].Start >= location })
	if k == len(a.lits) || a.lits[k].Start != location {
		return 0 // e.g. E'...' (the constant begins at the E) or -5 (at the sign)
	}
	raw := a.query[a.lits[k].Start:a.lits[k].End]
	if v, ok := literalValue(raw); !ok || string(v) != text {
		return 0
	}
	if raw[0] == '\'' && continued(a.query, a.lits[k].End) {
		return 0 // 'a'<newline>'b' is one string constant, "ab"
	}
	for j, r := range a.st.refs {
		if r == k {
			return j + 1
		}
	}
	a.st.refs = append(a.st.refs, k)
	return len(a.st.refs)
}

// literalValue is the value the parser gives the literal raw (as the classifier's lexer
// delimits it), as text: a run of digits as an integer constant (leading zeros dropped, as
// the parser does for one that fits in 32 bits, and kept as written, as it does for a larger
// one), a standard string without its quotes and with ” read as ', a dollar-quoted string
// without its tags. ok is false for any other literal. The result is a part of raw when it
// can be (no leading zeros, no ”), else a new slice.
func literalValue(raw []byte) ([]byte, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	switch c := raw[0]; {
	case c >= '0' && c <= '9':
		for _, d := range raw {
			if d < '0' || d > '9' {
				return nil, false
			}
		}
		if c != '0' || len(raw) == 1 {
			return raw, true
		}
		if n, err := strconv.ParseInt(string(raw), 10, 32); err == nil {
			return strconv.AppendInt(nil, n, 10), true
		}
		return raw, true
	case c == '\'':
		if len(raw) < 2 || raw[len(raw)-1] != '\'' {
			return nil, false
		}
		in := raw[1 : len(raw)-1]
		if bytes.Contains(in, []byte("''")) {
			return bytes.ReplaceAll(in, []byte("''"), []byte("'")), true
		}
		return in, true
	case c == '$':
		end := bytes.IndexByte(raw[1:], '$')
		if end < 0 {
			return nil, false
		}
		tag := raw[:end+2]
		if len(raw) < 2*len(tag) || !bytes.HasSuffix(raw, tag) {
			return nil, false
		}
		return raw[len(tag) : len(raw)-len(tag)], true
	}
	return nil, false
}

// continued reports whether a string literal ending at q[end] is followed, across white
// space and comments, by another quote: Postgres joins two strings separated by a newline
// into one constant. It errs on the side of yes.
func continued(q []byte, end int) bool {
	i := end
	for i < len(q) {
		switch {
		case q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r' || q[i] == '\f':
			i++
		case q[i] == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case q[i] == '/' && i+1 < len(q) && q[i+1] == '*':
			j := bytes.Index(q[i+2:], []byte("*/"))
			if j < 0 {
				return true
			}
			i += j + 4
		default:
			return q[i] == '\''
		}
	}
	return false
}
