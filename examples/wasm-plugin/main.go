// Command wasm-plugin is an example sluice plugin written in Go and compiled to WebAssembly. It
// refuses EXECUTE statements (prepared statements must go through the extended protocol, where
// sluice can see them) and renames tables: its config maps old names to new ones, so clients
// written against the old schema keep working during a migration.
//
// Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o wasm-plugin.wasm ./examples/wasm-plugin
//
// and load it:
//
//	[plugins.wasm]
//	[[plugins.wasm.modules]]
//	path = "wasm-plugin.wasm"
//	config = { rename = { old_table = "new_table" } }
//
// The rewrite is textual: it replaces unquoted identifiers equal to a key (compared without
// case, as Postgres folds unquoted names), at word boundaries, outside string literals, quoted
// identifiers and comments. It does not know whether an identifier is a table or a column of the
// same name; a rewrite on the parse tree would.
package main

import (
	"strings"

	"github.com/sluicepg/sluice/plugin/wasmguest"
)

type config struct {
	// Rename maps table names to the names to use instead.
	Rename map[string]string `json:"rename"`
}

// rename is the config's Rename as a list: with a few names, comparing each word's length
// first is cheaper than lower-casing it for a map lookup.
type renaming struct{ from, to string }

var renames []renaming

func init() {
	var cfg config
	if err := wasmguest.DecodeConfig(&cfg); err != nil {
		wasmguest.Log(wasmguest.LevelError, "wasm-plugin: bad config: "+err.Error())
	}
	for k, v := range cfg.Rename {
		renames = append(renames, renaming{k, v})
	}
	wasmguest.OnQuery(onQuery)
}

func onQuery(q *wasmguest.Query) wasmguest.Action {
	out, execute, changed := scan(q.Text(), renames)
	if execute {
		return wasmguest.Reject("0A000", "EXECUTE is not allowed through sluice: use the extended protocol's Bind/Execute (prepared statements in your driver)")
	}
	if changed {
		return wasmguest.Rewrite(out)
	}
	return wasmguest.Continue()
}

// scan walks text once. It reports whether some statement begins with EXECUTE, and returns the
// text with the identifiers in rename replaced (changed says whether any was).
func scan(text string, renames []renaming) (out string, execute, changed bool) {
	var b strings.Builder
	stmtStart := true // no word seen yet in this statement
	last := 0         // text[last:i] not yet copied to b
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '\'' || c == '"':
			i = skipQuoted(text, i, c)
		case c == '-' && strings.HasPrefix(text[i:], "--"):
			if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(text)
			}
		case c == '/' && strings.HasPrefix(text[i:], "/*"):
			if j := strings.Index(text[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(text)
			}
		case c == ';':
			stmtStart = true
			i++
		case isIdentStart(c):
			j := i + 1
			for j < len(text) && isIdentPart(text[j]) {
				j++
			}
			word := text[i:j]
			if stmtStart && strings.EqualFold(word, "EXECUTE") {
				execute = true
			}
			stmtStart = false
			if to, ok := lookup(renames, word); ok && (i == 0 || text[i-1] != '$') {
				b.WriteString(text[last:i])
				b.WriteString(to)
				last, changed = j, true
			}
			i = j
		default:
			i++
		}
	}
	if !changed {
		return text, execute, false
	}
	b.WriteString(text[last:])
	return b.String(), execute, true
}

// lookup finds word among the names to rename, ignoring case.
func lookup(renames []renaming, word string) (string, bool) {
	for _, r := range renames {
		if len(r.from) == len(word) && strings.EqualFold(r.from, word) {
			return r.to, true
		}
	}
	return "", false
}

// skipQuoted returns the index after the literal or quoted identifier that starts at i; a
// doubled quote inside it is part of it.
func skipQuoted(text string, i int, q byte) int {
	for i++; i < len(text); i++ {
		if text[i] == q {
			if i+1 < len(text) && text[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return len(text)
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

func main() {}
