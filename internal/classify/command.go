package classify

import (
	"fmt"
	"strconv"
	"strings"
)

// CommandKind is one of pgcat's own commands. They are not Postgres SQL: sluice recognises
// them before any parsing and answers them itself.
type CommandKind uint8

const (
	// SetServerRole: SET SERVER ROLE TO 'primary'|'replica'|'any'|'auto'|'default'. primary
	// and replica pin the session's queries to that role and turn the query parser off for
	// it; any lets the load balancer pick any server, parser off; auto turns the parser on;
	// default goes back to the pool's default_role and query_parser_enabled.
	SetServerRole CommandKind = iota + 1
	// ShowServerRole: SHOW SERVER ROLE; pgcat answers one row, column "server role":
	// primary, replica, or (no role pinned) auto when the parser is on, any when it is off.
	ShowServerRole
	// SetPrimaryReads: SET PRIMARY READS TO 'on'|'off'|'default': whether reads may also go
	// to the primary; default goes back to the pool's primary_reads_enabled.
	SetPrimaryReads
	// ShowPrimaryReads: SHOW PRIMARY READS; column "primary reads": on or off.
	ShowPrimaryReads
	// SetShardingKey: SET SHARDING KEY TO '<integer>': route to the shard of that key.
	SetShardingKey
	// SetShard: SET SHARD TO '<shard number>'|'ANY' (ANY picks a shard at random). A number
	// beyond the pool's shard count is an error the caller reports.
	SetShard
	// ShowShard: SHOW SHARD; column "shard": the shard number, or unset.
	ShowShard
)

// String returns the command's name, upper-case, as pgcat uses it in the command tag of
// its reply to a SET ("SET SERVER ROLE").
func (k CommandKind) String() string {
	switch k {
	case SetServerRole:
		return "SET SERVER ROLE"
	case ShowServerRole:
		return "SHOW SERVER ROLE"
	case SetPrimaryReads:
		return "SET PRIMARY READS"
	case ShowPrimaryReads:
		return "SHOW PRIMARY READS"
	case SetShardingKey:
		return "SET SHARDING KEY"
	case SetShard:
		return "SET SHARD"
	case ShowShard:
		return "SHOW SHARD"
	}
	return "CommandKind(" + strconv.Itoa(int(k)) + ")"
}

// Command is one of pgcat's commands, checked and normalised.
type Command struct {
	Kind CommandKind
	// Value is the SET commands' argument, normalised: the role ("primary", "replica",
	// "any", "auto", "default") and primary reads ("on", "off", "default") lower-case; the
	// shard "any" or a decimal number; the sharding key a decimal int64. Numbers are in the
	// form strconv.ParseInt reads back. Empty for the SHOW commands.
	Value string
}

// CommandError is a malformed pgcat command. Code is the SQLSTATE to answer with: 42601
// (syntax_error) when the command is misspelt, 22023 (invalid_parameter_value) when its
// value is not one it takes.
type CommandError struct {
	Code    string
	Message string
}

func (e *CommandError) Error() string { return e.Message }

// SQLSTATE codes of CommandError.
const (
	CodeSyntaxError           = "42601"
	CodeInvalidParameterValue = "22023"
)

// ParseCommand recognises pgcat's commands in the text of a simple Query:
//
//	SET SERVER ROLE TO 'primary' | 'replica' | 'any' | 'auto' | 'default'
//	SHOW SERVER ROLE
//	SET PRIMARY READS TO 'on' | 'off' | 'default'
//	SHOW PRIMARY READS
//	SET SHARDING KEY TO '<integer>'
//	SET SHARD TO '<number>' | 'ANY'
//	SHOW SHARD
//
// Keywords and values are case-insensitive; words may be separated by any white space and
// comments; "=" may stand for TO; quotes around the value are optional; one trailing ';' is
// allowed. (pgcat itself takes single spaces only, requires the quotes for the role, and a
// non-negative sharding key; everything it takes is taken here with the same meaning.)
//
// It returns ok = false, without allocating, for any other text. A text that starts like one
// of these commands (SET SERVER ROLE, SHOW SHARD ...) is one: a malformed one returns ok =
// true with a *CommandError and no Command, for the caller to answer instead of sending it
// to a server (where it could only fail). Text after the command, including a second
// statement, is an error: the commands are sent alone.
func ParseCommand(query []byte) (cmd *Command, ok bool, err error) {
	l := lexer{s: query}
	l.space()
	// The fast path for the ordinary query: one byte decides.
	if l.i >= len(l.s) || (l.s[l.i]|0x20) != 's' {
		return nil, false, nil
	}
	var kind CommandKind
	switch {
	case l.word("set"):
		switch {
		case l.word("server"):
			if !l.word("role") {
				return nil, false, nil
			}
			kind = SetServerRole
		case l.word("primary"):
			if !l.word("reads") {
				return nil, false, nil
			}
			kind = SetPrimaryReads
		case l.word("sharding"):
			if !l.word("key") {
				return nil, false, nil
			}
			kind = SetShardingKey
		case l.word("shard"):
			kind = SetShard
		default:
			return nil, false, nil
		}
	case l.word("show"):
		switch {
		case l.word("server"):
			if !l.word("role") {
				return nil, false, nil
			}
			kind = ShowServerRole
		case l.word("primary"):
			if !l.word("reads") {
				return nil, false, nil
			}
			kind = ShowPrimaryReads
		case l.word("shard"):
			kind = ShowShard
		default:
			return nil, false, nil
		}
		if !l.end() {
			return nil, true, syntaxError(kind)
		}
		return &Command{Kind: kind}, true, nil
	default:
		return nil, false, nil
	}

	// SET ... TO value
	if !l.word("to") && !l.punct('=') {
		return nil, true, syntaxError(kind)
	}
	raw, ok := l.value()
	if !ok || !l.end() {
		return nil, true, syntaxError(kind)
	}
	value, err := checkValue(kind, raw)
	if err != nil {
		return nil, true, err
	}
	return &Command{Kind: kind, Value: value}, true, nil
}

// checkValue validates and normalises a SET command's value.
func checkValue(kind CommandKind, raw string) (string, error) {
	v := strings.ToLower(raw)
	switch kind {
	case SetServerRole:
		switch v {
		case "primary", "replica", "any", "auto", "default":
			return v, nil
		}
		return "", invalidValue(kind, raw, "primary, replica, any, auto or default")
	case SetPrimaryReads:
		switch v {
		case "on", "off", "default":
			return v, nil
		}
		return "", invalidValue(kind, raw, "on, off or default")
	case SetShard:
		if v == "any" {
			return v, nil
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && digits(v) {
			return strconv.FormatInt(n, 10), nil
		}
		return "", invalidValue(kind, raw, "a shard number or ANY")
	case SetShardingKey:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return strconv.FormatInt(n, 10), nil
		}
		return "", invalidValue(kind, raw, "an integer between -9223372036854775808 and 9223372036854775807")
	}
	return "", syntaxError(kind)
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func syntaxError(kind CommandKind) error {
	var usage string
	switch kind {
	case SetServerRole:
		usage = "SET SERVER ROLE TO 'primary' | 'replica' | 'any' | 'auto' | 'default'"
	case SetPrimaryReads:
		usage = "SET PRIMARY READS TO 'on' | 'off' | 'default'"
	case SetShardingKey:
		usage = "SET SHARDING KEY TO '<integer>'"
	case SetShard:
		usage = "SET SHARD TO '<shard number>' | 'ANY'"
	default:
		usage = kind.String()
	}
	return &CommandError{
		Code:    CodeSyntaxError,
		Message: fmt.Sprintf("syntax error in %s: expected %s, alone in its query", kind, usage),
	}
}

func invalidValue(kind CommandKind, raw, want string) error {
	return &CommandError{
		Code:    CodeInvalidParameterValue,
		Message: fmt.Sprintf("invalid value for %s: %q (expected %s)", kind, raw, want),
	}
}

// lexer reads pgcat commands: words, punctuation and one value, skipping white space and
// comments between them. It never allocates except to return a value.
type lexer struct {
	s []byte
	i int
}

// space skips white space and comments (-- to the end of the line, nested /* */).
func (l *lexer) space() {
	for l.i < len(l.s) {
		switch c := l.s[l.i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			l.i++
		case c == '-' && l.i+1 < len(l.s) && l.s[l.i+1] == '-':
			for l.i < len(l.s) && l.s[l.i] != '\n' {
				l.i++
			}
		case c == '/' && l.i+1 < len(l.s) && l.s[l.i+1] == '*':
			l.i += 2
			for depth := 1; depth > 0 && l.i < len(l.s); {
				switch {
				case l.s[l.i] == '*' && l.i+1 < len(l.s) && l.s[l.i+1] == '/':
					depth--
					l.i += 2
				case l.s[l.i] == '/' && l.i+1 < len(l.s) && l.s[l.i+1] == '*':
					depth++
					l.i += 2
				default:
					l.i++
				}
			}
		default:
			return
		}
	}
}

func wordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || ('0' <= c && c <= '9') || ('a' <= c|0x20 && c|0x20 <= 'z')
}

// word consumes the keyword kw (lower-case) if it comes next, as a whole word, in any case.
func (l *lexer) word(kw string) bool {
	j := l.i
	if len(l.s)-j < len(kw) {
		return false
	}
	for k := 0; k < len(kw); k++ {
		if l.s[j+k]|0x20 != kw[k] {
			return false
		}
	}
	if j+len(kw) < len(l.s) && wordByte(l.s[j+len(kw)]) {
		return false
	}
	l.i = j + len(kw)
	l.space()
	return true
}

func (l *lexer) punct(c byte) bool {
	if l.i < len(l.s) && l.s[l.i] == c {
		l.i++
		l.space()
		return true
	}
	return false
}

// value reads a quoted string (in which two quotes stand for one) or a bare run of word
// characters and signs.
func (l *lexer) value() (string, bool) {
	if l.i >= len(l.s) {
		return "", false
	}
	if l.s[l.i] == '\'' {
		var b strings.Builder
		for j := l.i + 1; j < len(l.s); j++ {
			if l.s[j] != '\'' {
				b.WriteByte(l.s[j])
				continue
			}
			if j+1 < len(l.s) && l.s[j+1] == '\'' {
				b.WriteByte('\'')
				j++
				continue
			}
			l.i = j + 1
			l.space()
			return b.String(), true
		}
		return "", false // unterminated
	}
	j := l.i
	for j < len(l.s) && (wordByte(l.s[j]) || l.s[j] == '-' || l.s[j] == '+') {
		j++
	}
	if j == l.i {
		return "", false
	}
	v := string(l.s[l.i:j])
	l.i = j
	l.space()
	return v, true
}

// end consumes an optional ';' and reports whether nothing else follows.
func (l *lexer) end() bool {
	l.punct(';')
	return l.i == len(l.s)
}
