package admin

import (
	"fmt"
	"strings"
)

// command is one parsed console command: its verb and the words after it.
type command struct {
	verb string   // the first word, upper-cased: SHOW, RELOAD, BAN, ...
	args []string // the other words as written; SHOW's object is upper-cased
}

// String returns the command as the console understood it, for messages and logs.
func (c command) String() string {
	return strings.TrimSpace(c.verb + " " + strings.Join(c.args, " "))
}

// parseQuery splits a simple Query's text into commands. Commands are separated by semicolons,
// and a trailing semicolon is optional; words are separated by white space and case does not
// matter. A query with nothing but white space and semicolons has no commands.
func parseQuery(q string) []command {
	var cmds []command
	for _, part := range strings.Split(q, ";") {
		words := strings.Fields(part)
		if len(words) == 0 {
			continue
		}
		c := command{verb: strings.ToUpper(words[0]), args: words[1:]}
		if c.verb == "SHOW" && len(c.args) > 0 {
			c.args[0] = strings.ToUpper(c.args[0])
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// consoleError is an error the console answers with an ErrorResponse; the session goes on.
type consoleError struct {
	code, msg string
}

func (e *consoleError) Error() string { return e.msg + " (SQLSTATE " + e.code + ")" }

// SQLSTATEs the console answers with.
const (
	codeSyntax       = "42601" // syntax_error: an unknown command or bad arguments
	codeNotSupported = "0A000" // feature_not_supported
	codeConfig       = "F0000" // config_file_error: RELOAD found a bad file
	codeNoObject     = "42704" // undefined_object: BAN or UNBAN of a server nobody has
	codeTimeout      = "57014" // query_canceled: PAUSE gave up waiting
)

func syntaxError(format string, args ...any) error {
	return &consoleError{code: codeSyntax, msg: fmt.Sprintf(format, args...)}
}

func notSupported(format string, args ...any) error {
	return &consoleError{code: codeNotSupported, msg: fmt.Sprintf(format, args...)}
}

// unknownCommand is PgBouncer's answer to a command it does not know, with syntax_error as
// the SQLSTATE (PgBouncer sends 08P01, pgcat 58000).
func unknownCommand(c command) error {
	return syntaxError("invalid command %q, use SHOW HELP;", c.String())
}

// pgbouncerOnly are PgBouncer commands and SHOW objects that sluice does not have: they get
// feature_not_supported rather than syntax_error, so a script written for PgBouncer learns why.
var pgbouncerOnly = map[string]bool{"SUSPEND": true}

var pgbouncerOnlyShow = map[string]bool{
	"FDS": true, "SOCKETS": true,
	"ACTIVE_SOCKETS": true, "MEM": true, "DNS_HOSTS": true, "DNS_ZONES": true, "PEERS": true,
	"PEER_POOLS": true, "PREPARED_STATEMENTS": true,
}
