package frontend

// containsListen reports whether any statement of a query string is a LISTEN. It runs on every
// query in transaction mode, so it first looks for the word at all and only then walks the
// statements with a lexer that knows quotes, dollar quotes and comments.
func containsListen(q []byte) bool {
	if !hasWordFold(q, "listen") {
		return false
	}
	start := true // at the start of a statement
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || (start && c == '('):
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			i = skipBlockComment(q, i)
		case c == ';':
			start = true
			i++
		default:
			if start && keywordAt(q, i, "listen") {
				return true
			}
			start = false
			i = skipToken(q, i)
		}
	}
	return false
}

// hasWordFold reports whether q contains w, ignoring ASCII case.
func hasWordFold(q []byte, w string) bool {
	for i := 0; i+len(w) <= len(q); i++ {
		if q[i]|0x20 == w[0] && keywordPrefix(q[i:], w) {
			return true
		}
	}
	return false
}

func keywordPrefix(q []byte, w string) bool {
	if len(q) < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		if q[j]|0x20 != w[j] {
			return false
		}
	}
	return true
}

// keywordAt reports whether the word w (lower case) stands at q[i:] as a whole word.
func keywordAt(q []byte, i int, w string) bool {
	if !keywordPrefix(q[i:], w) {
		return false
	}
	j := i + len(w)
	return j == len(q) || !isIdentChar(q[j])
}

func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z') || c >= 0x80
}

func skipBlockComment(q []byte, i int) int {
	depth := 0
	for i < len(q) {
		switch {
		case q[i] == '/' && i+1 < len(q) && q[i+1] == '*':
			depth++
			i += 2
		case q[i] == '*' && i+1 < len(q) && q[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

// skipToken skips one token starting at q[i]: a quoted string or identifier, a dollar-quoted
// string, a word, or a single other character.
func skipToken(q []byte, i int) int {
	c := q[i]
	switch {
	case c == '\'':
		escapes := i > 0 && q[i-1]|0x20 == 'e'
		i++
		for i < len(q) {
			switch {
			case escapes && q[i] == '\\':
				i += 2
			case q[i] == '\'' && i+1 < len(q) && q[i+1] == '\'':
				i += 2
			case q[i] == '\'':
				return i + 1
			default:
				i++
			}
		}
		return i
	case c == '"':
		i++
		for i < len(q) {
			if q[i] == '"' {
				if i+1 < len(q) && q[i+1] == '"' {
					i += 2
					continue
				}
				return i + 1
			}
			i++
		}
		return i
	case c == '$':
		// $tag$ ... $tag$, where tag is empty or an identifier not starting with a digit.
		j := i + 1
		for j < len(q) && q[j] != '$' && isIdentChar(q[j]) {
			j++
		}
		if j < len(q) && q[j] == '$' && (j == i+1 || !(q[i+1] >= '0' && q[i+1] <= '9')) {
			tag := q[i : j+1]
			k := j + 1
			for k+len(tag) <= len(q) {
				if q[k] == '$' && string(q[k:k+len(tag)]) == string(tag) {
					return k + len(tag)
				}
				k++
			}
			return len(q)
		}
		return i + 1
	case isIdentChar(c):
		for i < len(q) && isIdentChar(q[i]) {
			i++
		}
		return i
	}
	return i + 1
}
