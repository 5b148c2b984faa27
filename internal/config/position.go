package config

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyLines maps each key written in a TOML document (as toml.Key.String() spells it) to the
// 1-based line where it is first written: a table header, a key = value, a key inside an inline
// table, or a table created by a dotted key. BurntSushi/toml (v1.6.0) keeps these positions but
// does not export them, so keyLines scans the text itself. It runs after toml.Decode accepted the
// text, so it only has to find its way, not to validate: on anything it does not follow it stops
// and returns what it has, and messages simply lack those lines.
func keyLines(text string) map[string]int {
	s := &keyScanner{text: strings.TrimPrefix(text, "\ufeff"), line: 1, lines: map[string]int{}}
	s.document()
	return s.lines
}

type keyScanner struct {
	text  string
	pos   int
	line  int
	lines map[string]int
}

func (s *keyScanner) more() bool { return s.pos < len(s.text) }

func (s *keyScanner) peek() byte {
	if s.pos < len(s.text) {
		return s.text[s.pos]
	}
	return 0
}

func (s *keyScanner) next() byte {
	c := s.text[s.pos]
	s.pos++
	if c == '\n' {
		s.line++
	}
	return c
}

// record notes the line of key, unless an earlier line already has it.
func (s *keyScanner) record(key toml.Key, line int) {
	k := key.String()
	if _, ok := s.lines[k]; !ok {
		s.lines[k] = line
	}
}

// space skips blanks and, when newlines is set, line ends and comments too.
func (s *keyScanner) space(newlines bool) {
	for s.more() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t':
			s.next()
		case newlines && (c == '\n' || c == '\r'):
			s.next()
		case newlines && c == '#':
			for s.more() && s.peek() != '\n' {
				s.next()
			}
		default:
			return
		}
	}
}

func (s *keyScanner) document() {
	var table toml.Key
	for {
		s.space(true)
		if !s.more() {
			return
		}
		line := s.line
		if s.peek() == '[' {
			s.next()
			closing := "]"
			if s.peek() == '[' {
				s.next()
				closing = "]]"
			}
			s.space(false)
			key, ok := s.key()
			s.space(false)
			if !ok || !strings.HasPrefix(s.text[s.pos:], closing) {
				return
			}
			s.pos += len(closing)
			table = key
			s.record(table, line)
			continue
		}
		if !s.keyValue(table, true) {
			return
		}
	}
}

// keyValue reads `key = value` under the table prefix, noting the key's line (and, when record
// is set, the lines of keys inside an inline-table value).
func (s *keyScanner) keyValue(prefix toml.Key, record bool) bool {
	line := s.line
	key, ok := s.key()
	if !ok {
		return false
	}
	if record {
		for i := range key {
			s.record(concatKey(prefix, key[:i+1]), line)
		}
	}
	s.space(false)
	if s.peek() != '=' {
		return false
	}
	s.next()
	s.space(false)
	var inner toml.Key
	if record {
		inner = concatKey(prefix, key)
	}
	return s.value(inner, record)
}

// key reads a dotted key of bare and quoted parts.
func (s *keyScanner) key() (toml.Key, bool) {
	var key toml.Key
	for {
		s.space(false)
		var part string
		switch c := s.peek(); {
		case c == '"' || c == '\'':
			raw, ok := s.str()
			if !ok {
				return nil, false
			}
			part = unquoteKey(raw)
		case isBare(c):
			start := s.pos
			for s.more() && isBare(s.peek()) {
				s.next()
			}
			part = s.text[start:s.pos]
		default:
			return nil, false
		}
		key = append(key, part)
		s.space(false)
		if s.peek() != '.' {
			return key, true
		}
		s.next()
	}
}

// value skips one value. An inline table's keys are noted under prefix when record is set;
// inside arrays nothing is noted, since array elements have no keys of their own.
func (s *keyScanner) value(prefix toml.Key, record bool) bool {
	switch s.peek() {
	case '"', '\'':
		_, ok := s.str()
		return ok
	case '[':
		s.next()
		for {
			s.space(true)
			switch s.peek() {
			case ']':
				s.next()
				return true
			case ',':
				s.next()
				continue
			case 0:
				return false
			}
			if !s.value(nil, false) {
				return false
			}
		}
	case '{':
		s.next()
		for {
			s.space(true) // TOML 1.1 allows newlines in inline tables
			switch s.peek() {
			case '}':
				s.next()
				return true
			case ',':
				s.next()
				continue
			case 0:
				return false
			}
			if !s.keyValue(prefix, record) {
				return false
			}
		}
	}
	// A number, boolean or date: runs to a delimiter.
	start := s.pos
	for s.more() && !strings.ContainsRune(",]}#\r\n", rune(s.peek())) {
		s.next()
	}
	return s.pos > start
}

// str reads a basic, literal or multi-line string and returns it with its quotes.
func (s *keyScanner) str() (string, bool) {
	start := s.pos
	q := s.peek()
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.text[s.pos:], triple) {
		s.pos += 3
		for s.more() {
			if strings.HasPrefix(s.text[s.pos:], triple) {
				s.pos += 3
				// A multi-line string may end with up to two more quotes of its own.
				for i := 0; i < 2 && s.peek() == q; i++ {
					s.next()
				}
				return s.text[start:s.pos], true
			}
			if q == '"' && s.peek() == '\\' {
				s.next()
				if !s.more() {
					return "", false
				}
			}
			s.next()
		}
		return "", false
	}
	s.next()
	for s.more() {
		c := s.next()
		switch {
		case c == q:
			return s.text[start:s.pos], true
		case c == '\n':
			return "", false
		case c == '\\' && q == '"' && s.more():
			s.next()
		}
	}
	return "", false
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// unquoteKey returns a quoted key part's text. TOML's escapes in basic strings are a subset of
// Go's, bar \e and \x in TOML 1.1; a part Go cannot unquote is kept as written.
func unquoteKey(raw string) string {
	if raw[0] == '\'' {
		return raw[1 : len(raw)-1]
	}
	if u, err := strconv.Unquote(raw); err == nil {
		return u
	}
	return raw[1 : len(raw)-1]
}

func concatKey(a, b toml.Key) toml.Key {
	k := make(toml.Key, 0, len(a)+len(b))
	return append(append(k, a...), b...)
}
