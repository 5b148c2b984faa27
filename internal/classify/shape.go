package classify

import "sync"

// A query's classification does not depend on the values of its literals: "SELECT v FROM t WHERE
// id = 1" and "... id = 2" read the same table and write nothing. Applications that put values in
// the text (pgbench -S, most ORMs in simple-protocol mode) send a new text every time, and a cache
// keyed by text would parse every one of them. shape replaces every literal with a marker, so
// such texts share one cache entry.
//
// Only single statements that begin with SELECT, INSERT, UPDATE, DELETE, WITH, VALUES or TABLE
// are shaped: for those the literals are values. Elsewhere a literal can decide the
// classification (SET default_transaction_read_only = 'on', EXPLAIN (ANALYZE 0) ...), so those
// texts are keyed as they are.

// literalMark stands for a literal in a shape; it cannot occur in a query text (the classifier
// refuses texts with a NUL, and the wire protocol ends them at one).
const literalMark = 0

var shapeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// shape appends the shape of q to dst. ok is false when q is not one to shape: the caller keys it
// by its text. Text between literals is copied in runs.
func shape(dst, q []byte) (out []byte, ok bool) { return shapeText(dst, q, false, nil) }

// NumberShape appends to dst the shape of q with only its numeric literals replaced by a marker:
// string literals (quoted, escaped, dollar-quoted) are kept as written. It is for callers whose
// own analysis of a text reads the values of its strings (the cache refuses 'now') but not of
// its numbers, so that "... WHERE id = 1" and "... id = 2" share one entry. ok is false, as for
// the classifier's shapes, when q is not a single SELECT, INSERT, UPDATE, DELETE, WITH, VALUES
// or TABLE statement, or does not lex; the caller then keys q by its text.
func NumberShape(dst, q []byte) (out []byte, ok bool) { return shapeText(dst, q, true, nil) }

// A Literal is where one literal of a query text is: q[Start:End], a number as written
// ("42", "1.5e3"), or a string with its quotes ('abc', E'a\'b', $x$...$x$). A prefix
// before the opening quote (E, U&, B, X, a type name) is not part of it.
type Literal struct{ Start, End int }

// ShapeLiterals is the classifier's shape of q (every literal masked, so that texts differing
// only in their values share it), appended to dst, with the positions of q's literals, in
// order, appended to lits. ok is false when q is not one to shape (see NumberShape).
func ShapeLiterals(dst []byte, lits []Literal, q []byte) (out []byte, outLits []Literal, ok bool) {
	n := len(lits)
	out, ok = shapeText(dst, q, false, &lits)
	if !ok {
		return dst, lits[:n], false
	}
	return out, lits, true
}

// shapeText is shape, masking string literals too unless keepStrings, and appending the
// position of every literal it masks to lits when lits is not nil.
func shapeText(dst, q []byte, keepStrings bool, lits *[]Literal) (out []byte, ok bool) {
	i := skipSpace(q, 0)
	if !shapedStart(q[i:]) {
		return dst, false
	}
	out = dst
	run := 0 // start of the text not yet copied
	lit := func(from, to int) {
		out = append(out, q[run:from]...)
		out = append(out, literalMark)
		run = to
		if lits != nil {
			*lits = append(*lits, Literal{from, to})
		}
	}
	for i < len(q) {
		c := q[i]
		switch {
		case isIdentStart(c):
			i++
			for i < len(q) && isIdentChar(q[i]) {
				i++
			}
		case c == '\'':
			j, ok := endString(q, i, backslashes(q, i))
			if !ok {
				return dst, false
			}
			if !keepStrings {
				lit(i, j)
			}
			i = j
		case c == '"':
			j := i + 1
			for j < len(q) && (q[j] != '"' || (j+1 < len(q) && q[j+1] == '"')) {
				if q[j] == '"' {
					j++
				}
				j++
			}
			if j >= len(q) {
				return dst, false
			}
			i = j + 1
		case c == '$':
			if j, ok := endDollar(q, i); ok {
				if !keepStrings {
					lit(i, j)
				}
				i = j
				continue
			}
			i++ // a parameter ($1): its digits are copied with it
			for i < len(q) && isDigit(q[i]) {
				i++
			}
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j, ok := endComment(q, i)
			if !ok {
				return dst, false
			}
			i = j
		case isDigit(c) || (c == '.' && i+1 < len(q) && isDigit(q[i+1])):
			j := i
			for j < len(q) && (isDigit(q[j]) || q[j] == '.' || q[j] == '_' ||
				((q[j] == 'e' || q[j] == 'E') && j+1 < len(q) && (isDigit(q[j+1]) || q[j+1] == '-' || q[j+1] == '+')) ||
				((q[j] == '-' || q[j] == '+') && j > i && (q[j-1] == 'e' || q[j-1] == 'E'))) {
				j++
			}
			lit(i, j)
			i = j
		case c == ';':
			// One statement only: anything after the semicolon but space makes it several.
			if skipSpace(q, i+1) < len(q) {
				return dst, false
			}
			i++
		default:
			i++
		}
	}
	return append(out, q[run:]...), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

func skipSpace(q []byte, i int) int {
	for i < len(q) && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r' || q[i] == '\f') {
		i++
	}
	return i
}

// shapedStart reports whether q begins with a keyword of a statement whose literals are values.
func shapedStart(q []byte) bool {
	for _, kw := range []string{"select", "insert", "update", "delete", "with", "values", "table"} {
		if len(q) > len(kw) && equalFold(q[:len(kw)], kw) && !isIdentChar(q[len(kw)]) {
			return true
		}
	}
	return false
}

func equalFold(b []byte, lower string) bool {
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// backslashes reports whether the string starting at q[i] is an escape string (E'...'), where a
// backslash escapes the next character.
func backslashes(q []byte, i int) bool {
	return i > 0 && (q[i-1] == 'e' || q[i-1] == 'E') && (i == 1 || !isIdentChar(q[i-2]))
}

// endString returns the index after the string literal starting at q[i].
func endString(q []byte, i int, esc bool) (int, bool) {
	for j := i + 1; j < len(q); j++ {
		switch {
		case esc && q[j] == '\\':
			j++
		case q[j] == '\'':
			if j+1 < len(q) && q[j+1] == '\'' {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return 0, false
}

// endDollar returns the index after a dollar-quoted string starting at q[i], if one does.
func endDollar(q []byte, i int) (int, bool) {
	if i > 0 && isIdentChar(q[i-1]) {
		return 0, false // part of an identifier
	}
	j := i + 1
	for j < len(q) && q[j] != '$' {
		if !isIdentChar(q[j]) || (j == i+1 && isDigit(q[j])) {
			return 0, false // $1 is a parameter
		}
		j++
	}
	if j >= len(q) {
		return 0, false
	}
	tag := q[i : j+1]
	for k := j + 1; k+len(tag) <= len(q); k++ {
		if q[k] == '$' && string(q[k:k+len(tag)]) == string(tag) {
			return k + len(tag), true
		}
	}
	return 0, false
}

// endComment returns the index after the (nested) block comment starting at q[i].
func endComment(q []byte, i int) (int, bool) {
	depth := 0
	for j := i; j+1 < len(q); j++ {
		switch {
		case q[j] == '/' && q[j+1] == '*':
			depth++
			j++
		case q[j] == '*' && q[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1, true
			}
		}
	}
	return 0, false
}
