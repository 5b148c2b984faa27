package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"
)

// lineProbe finds a key's line the slow way, to check keyLines against the TOML library's own
// parser: BurntSushi/toml reports an UnmarshalTOML failure as a ParseError carrying the position
// of the key being decoded. (It costs a copy of the whole file per key, which is why Load does not
// use it.)
type lineProbe struct{}

var errLineProbe = errors.New("line probe")

func (lineProbe) UnmarshalTOML(any) error { return errLineProbe }

// parserLines returns the line of every key in text as the TOML library sees it.
func parserLines(t *testing.T, text string) map[string]int {
	t.Helper()
	var top map[string]toml.Primitive
	md, err := toml.Decode(text, &top)
	if err != nil {
		t.Fatalf("toml.Decode: %v", err)
	}
	lines := map[string]int{}
	var walk func(key toml.Key, p toml.Primitive)
	walk = func(key toml.Key, p toml.Primitive) {
		var pe toml.ParseError
		if errors.As(md.PrimitiveDecode(p, lineProbe{}), &pe) && pe.Position.Line > 0 {
			lines[key.String()] = pe.Position.Line
		}
		var sub map[string]toml.Primitive
		if md.PrimitiveDecode(p, &sub) == nil {
			for k, sp := range sub {
				walk(concatKey(key, toml.Key{k}), sp)
			}
		}
	}
	for k, p := range top {
		walk(toml.Key{k}, p)
	}
	return lines
}

func TestKeyLinesMatchParser(t *testing.T) {
	texts := map[string]string{
		"tricky": `# [not.a.table] = 1
title = """
[fake.header]
fake = "key"
"""
lit = '''
[also.fake]
'''
ends_with_quotes = """two more""""" # still a string
"quoted.key" = 1
'literal key' = 2
"esc\"aped" = 3
dotted.key.here = "x"
arr = [ # a comment with [brackets] and = signs
  ["a", 1, "primary"], # more
  { inline = 1 },
  'x]',
  "y}",
]
when = 1979-05-27 07:32:00Z
[tables."with.dot"]
k = { a = 1, b.c = { d = "}" } }
[ spaced . header ]
v = true
[[aot]]
x = 1
[[aot]]
y = 2
`,
		"crlf": "[general]\r\nport = 1\r\n\r\n[pools.a]\r\npool_mode = \"session\"\r\n",
		"bom":  "\ufeff[general]\nport = 1\n",
	}
	files, _ := filepath.Glob("testdata/*.toml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f != "testdata/syntax.toml" {
			texts[f] = string(data)
		}
	}
	// Where keyLines and the parser disagree on purpose: the parser places a key whose value is a
	// multi-line string at the string's end, and an array of tables at its last header.
	differ := map[string]map[string]int{"tricky": {"title": 2, "lit": 6, "aot": 25}}
	for name, text := range texts {
		t.Run(filepath.Base(name), func(t *testing.T) {
			want := parserLines(t, text)
			maps.Copy(want, differ[name])
			got := keyLines(text)
			for k, line := range want {
				if got[k] != line {
					t.Errorf("key %s: keyLines says line %d, the parser %d", k, got[k], line)
				}
			}
		})
	}
}
