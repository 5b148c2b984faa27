package copysplit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// got is what a Splitter made of some data: one line per row ("H" for a header, then the
// line number, the key or NULL/DEFAULT, and the row's bytes quoted), or the error.
type got struct {
	rows []string
	err  string
}

func (g got) String() string {
	return strings.Join(g.rows, "\n") + "\nerr: " + g.err
}

// split runs a Splitter over data cut into the given pieces, then Finish.
func split(o Options, pieces ...[]byte) got {
	s := New(o)
	var g got
	fn := func(r *Row) error {
		k := fmt.Sprintf("%q", r.Key)
		switch {
		case r.Null:
			k = "NULL"
		case r.Default:
			k = "DEFAULT"
		}
		h := ""
		if r.Header {
			h, k = "H ", "-"
		}
		g.rows = append(g.rows, fmt.Sprintf("%s%d %s %q", h, r.Line, k, r.Data))
		return nil
	}
	for _, p := range pieces {
		if err := s.Feed(p, fn); err != nil {
			g.err = errString(err)
			return g
		}
	}
	if err := s.Finish(fn); err != nil {
		g.err = errString(err)
	}
	return g
}

func errString(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%s line %d: %s", e.Code, e.Line, e.Msg)
	}
	return err.Error()
}

// checkChunkings runs data whole, cut at every point, and byte by byte, and fails unless every
// way gives the same result as the whole: rows must not depend on CopyData boundaries.
func checkChunkings(t *testing.T, o Options, data []byte) got {
	t.Helper()
	whole := split(o, data)
	for i := 1; i < len(data); i++ {
		if g := split(o, data[:i], data[i:]); g.String() != whole.String() {
			t.Fatalf("cut at %d of %q:\n%s\nwhole:\n%s", i, data, g, whole)
		}
	}
	var bytes [][]byte
	for i := range data {
		bytes = append(bytes, data[i:i+1])
	}
	if g := split(o, bytes...); g.String() != whole.String() {
		t.Fatalf("byte by byte %q:\n%s\nwhole:\n%s", data, g, whole)
	}
	return whole
}

func TestText(t *testing.T) {
	text := TextFormat()
	for _, tc := range []struct {
		name string
		f    Format
		key  int
		in   string
		want []string
		err  string
	}{
		{name: "rows and keys", f: text, key: 0, in: "1\ta\n2\tb\n",
			want: []string{`1 "1" "1\ta\n"`, `2 "2" "2\tb\n"`}},
		{name: "key in the second field", f: text, key: 1, in: "a\t10\tz\nb\t20\n",
			want: []string{`1 "10" "a\t10\tz\n"`, `2 "20" "b\t20\n"`}},
		{name: "last row without a line end", f: text, key: 0, in: "1\ta\n2\tb",
			want: []string{`1 "1" "1\ta\n"`, `2 "2" "2\tb"`}},
		{name: "NULL marker, raw", f: text, key: 0, in: "\\N\tx\n\\\\N\tx\n",
			want: []string{`1 NULL "\\N\tx\n"`, `2 "\\N" "\\\\N\tx\n"`}},
		{name: "escapes in the key", f: text, key: 0, in: "a\\tb\\101\\x42\\x4g\\q\\\\\tx\n",
			want: []string{`1 "a\tbAB\x04gq\\" "a\\tb\\101\\x42\\x4g\\q\\\\\tx\n"`}},
		{name: "escaped delimiter and newline are data", f: text, key: 1, in: "a\\\tb\t7\nc\\\nd\t8\n",
			want: []string{`1 "7" "a\\\tb\t7\n"`, `2 "8" "c\\\nd\t8\n"`}},
		{name: "CRLF lines", f: text, key: 0, in: "1\ta\r\n2\tb\r\n",
			want: []string{`1 "1" "1\ta\r\n"`, `2 "2" "2\tb\r\n"`}},
		{name: "CR lines", f: text, key: 0, in: "1\ta\r2\tb\r",
			want: []string{`1 "1" "1\ta\r"`, `2 "2" "2\tb\r"`}},
		{name: "CR in data after LF lines", f: text, key: 0, in: "1\n2\r3\n",
			want: []string{`1 "1" "1\n"`}, err: "22P04 line 2: literal carriage return found in data"},
		{name: "LF in data after CRLF lines", f: text, key: 0, in: "1\r\n2\n",
			want: []string{`1 "1" "1\r\n"`}, err: "22P04 line 2: literal newline found in data"},
		{name: "bare CR after CRLF lines", f: text, key: 0, in: "1\r\n2\r3",
			want: []string{`1 "1" "1\r\n"`}, err: "22P04 line 2: literal carriage return found in data"},
		{name: "end marker; the rest ignored", f: text, key: 0, in: "1\ta\n\\.\n2\tb\n",
			want: []string{`1 "1" "1\ta\n"`}},
		{name: "end marker after data on its line", f: text, key: 0, in: "1\ta\n2\tb\\.\ngarbage",
			want: []string{`1 "1" "1\ta\n"`, `2 "2" "2\tb"`}},
		{name: "escaped backslash before a dot is data", f: text, key: 0, in: "1\\\\.\n",
			want: []string{`1 "1\\." "1\\\\.\n"`}},
		{name: "corrupt end marker", f: text, key: 0, in: "1\n\\.x\n", want: []string{`1 "1" "1\n"`},
			err: "22P04 line 2: end-of-copy marker corrupt"},
		{name: "end marker at the very end", f: text, key: 0, in: "1\n\\.", want: []string{`1 "1" "1\n"`},
			err: "22P04 line 2: end-of-copy marker corrupt"},
		{name: "end marker with another line end", f: text, key: 0, in: "1\r\n\\.\n", want: []string{`1 "1" "1\r\n"`},
			err: "22P04 line 2: end-of-copy marker does not match previous newline style"},
		{name: "end marker, CRLF", f: text, key: 0, in: "1\r\n\\.\r\n", want: []string{`1 "1" "1\r\n"`}},
		{name: "missing key field", f: text, key: 2, in: "1\t2\t3\n1\t2\n", want: []string{`1 "3" "1\t2\t3\n"`},
			err: `22P04 line 2: missing data for column "id"`},
		{name: "empty line is one empty field", f: text, key: 0, in: "\n", want: []string{`1 "" "\n"`}},
		{name: "header", f: Format{Kind: Text, Delimiter: '\t', Null: `\N`, Header: true}, key: 0, in: "id\tv\n1\tx\n",
			want: []string{`H 1 - "id\tv\n"`, `2 "1" "1\tx\n"`}},
		{name: "delimiter and NULL options", f: Format{Kind: Text, Delimiter: '|', Null: "nil"}, key: 1, in: "a|nil\nb|nill\n",
			want: []string{`1 NULL "a|nil\n"`, `2 "nill" "b|nill\n"`}},
		{name: "DEFAULT marker", f: Format{Kind: Text, Delimiter: '\t', Null: `\N`, Default: `\D`, HasDefault: true}, key: 0, in: "\\D\n",
			want: []string{`1 DEFAULT "\\D\n"`}},
		{name: "trailing backslash is dropped", f: text, key: 0, in: "\\N\\",
			want: []string{`1 NULL "\\N\\"`}},
		{name: "no key: rows only", f: text, key: -1, in: "1\ta\n2",
			want: []string{`1 "" "1\ta\n"`, `2 "" "2"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := checkChunkings(t, Options{Format: tc.f, Key: tc.key, KeyName: "id"}, []byte(tc.in))
			if strings.Join(g.rows, "\n") != strings.Join(tc.want, "\n") || g.err != tc.err {
				t.Errorf("%q:\n%s\nwant:\n%s\nerr: %s", tc.in, g, strings.Join(tc.want, "\n"), tc.err)
			}
		})
	}
}

func TestCSV(t *testing.T) {
	csv := CSVFormat()
	withHeader := csv
	withHeader.Header = true
	other := Format{Kind: CSV, Delimiter: ';', Quote: '\'', Escape: '\\', Null: "NULL"}
	forceNull, forceNotNull := csv, csv
	forceNull.KeyForceNull, forceNotNull.KeyForceNotNull = true, true
	for _, tc := range []struct {
		name string
		f    Format
		key  int
		in   string
		want []string
		err  string
	}{
		{name: "rows and keys", f: csv, key: 0, in: "1,a\n2,b\n",
			want: []string{`1 "1" "1,a\n"`, `2 "2" "2,b\n"`}},
		{name: "quoted newline is data", f: csv, key: 1, in: "\"x\ny\",5\n\"z\",6\n",
			want: []string{`1 "5" "\"x\ny\",5\n"`, `2 "6" "\"z\",6\n"`}},
		{name: "quoted line ends count as lines once the line end is known", f: csv, key: 1, in: "a,1\n\"x\ny\",5\n\"z\",6\n",
			want: []string{`1 "1" "a,1\n"`, `3 "5" "\"x\ny\",5\n"`, `4 "6" "\"z\",6\n"`}},
		{name: "quoted key with doubled quotes and a delimiter", f: csv, key: 0, in: "\"a\"\"b,c\",x\n",
			want: []string{`1 "a\"b,c" "\"a\"\"b,c\",x\n"`}},
		{name: "empty unquoted is NULL, quoted empty is not", f: csv, key: 0, in: ",x\n\"\",x\n",
			want: []string{`1 NULL ",x\n"`, `2 "" "\"\",x\n"`}},
		{name: "FORCE_NULL makes a quoted marker NULL", f: forceNull, key: 0, in: "\"\",x\n",
			want: []string{`1 NULL "\"\",x\n"`}},
		{name: "FORCE_NOT_NULL reads the marker as a value", f: forceNotNull, key: 0, in: ",x\n",
			want: []string{`1 "" ",x\n"`}},
		{name: "other quote, escape, delimiter, NULL", f: other, key: 1, in: "'a;b';'it\\'s'\nx;NULL\ny;'NULL'\n",
			want: []string{`1 "it's" "'a;b';'it\\'s'\n"`, `2 NULL "x;NULL\n"`, `3 "NULL" "y;'NULL'\n"`}},
		{name: "escape protects a quote from ending the line's quotes", f: other, key: 0, in: "'a\\'\nb'\n",
			want: []string{`1 "a'\nb" "'a\\'\nb'\n"`}},
		{name: "backslash is data in CSV", f: csv, key: 0, in: "a\\.,b\n\\.x,c\n",
			want: []string{`1 "a\\." "a\\.,b\n"`, `2 "\\.x" "\\.x,c\n"`}},
		{name: "end marker alone on a line", f: csv, key: 0, in: "1\n\\.\n2\n", want: []string{`1 "1" "1\n"`}},
		{name: "end marker at the very end is data", f: csv, key: 0, in: "1\n\\.", want: []string{`1 "1" "1\n"`, `2 "\\." "\\."`}},
		{name: "quoted CR is data; unquoted CR after LF is not", f: csv, key: 0, in: "\"a\rb\"\nc\rd\n",
			want: []string{`2 "a\rb" "\"a\rb\"\n"`}, err: "22P04 line 3: unquoted carriage return found in data"},
		{name: "unterminated quote at the end", f: csv, key: 1, in: "1,\"abc", err: "22P04 line 1: unterminated CSV quoted field"},
		{name: "unterminated quote in a later field is the server's to report", f: csv, key: 0, in: "1,\"abc",
			want: []string{`1 "1" "1,\"abc"`}},
		{name: "missing key field", f: csv, key: 1, in: "1\n", err: `22P04 line 1: missing data for column "id"`},
		{name: "header", f: withHeader, key: 0, in: "id,v\r\n1,x\r\n",
			want: []string{`H 1 - "id,v\r\n"`, `2 "1" "1,x\r\n"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := checkChunkings(t, Options{Format: tc.f, Key: tc.key, KeyName: "id"}, []byte(tc.in))
			if strings.Join(g.rows, "\n") != strings.Join(tc.want, "\n") || g.err != tc.err {
				t.Errorf("%q:\n%s\nwant:\n%s\nerr: %s", tc.in, g, strings.Join(tc.want, "\n"), tc.err)
			}
		})
	}
}

// binaryData builds binary COPY data: the header, tuples (nil for NULL), and the trailer.
func binaryData(trailer bool, ext []byte, tuples ...[][]byte) []byte {
	b := []byte(binarySignature)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ext)))
	b = append(b, ext...)
	for _, tup := range tuples {
		b = binary.BigEndian.AppendUint16(b, uint16(len(tup)))
		for _, f := range tup {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	if trailer {
		b = binary.BigEndian.AppendUint16(b, 0xffff)
	}
	return b
}

func TestBinary(t *testing.T) {
	i8 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	header := fmt.Sprintf("%q", binarySignature+"\x00\x00\x00\x00\x00\x00\x00\x00")
	for _, tc := range []struct {
		name string
		in   []byte
		key  int
		want []string
		err  string
	}{
		{name: "tuples and trailer", key: 0, in: binaryData(true, nil, [][]byte{i8(7), []byte("a")}, [][]byte{nil, []byte("b")}),
			want: []string{"H 0 - " + header,
				`1 "\x00\x00\x00\x00\x00\x00\x00\a" "\x00\x02\x00\x00\x00\b\x00\x00\x00\x00\x00\x00\x00\a\x00\x00\x00\x01a"`,
				`2 NULL "\x00\x02\xff\xff\xff\xff\x00\x00\x00\x01b"`}},
		{name: "header extension", key: 1, in: binaryData(false, []byte("ext"), [][]byte{[]byte("a"), []byte("k")}),
			want: []string{"H 0 - " + fmt.Sprintf("%q", binarySignature+"\x00\x00\x00\x00\x00\x00\x00\x03ext"),
				`1 "k" "\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x01k"`}},
		{name: "data after the trailer", key: 0, in: append(binaryData(true, nil), 0, 1),
			want: []string{"H 0 - " + header}, err: "22P04 line 0: received copy data after EOF marker"},
		{name: "short row", key: 2, in: binaryData(true, nil, [][]byte{i8(1)}),
			want: []string{"H 0 - " + header}, err: "22P04 line 1: row field count is 1, expected 3"},
		{name: "bad signature", key: 0, in: []byte("PGCOPY\nXXXXXXXXXXXXXXXXXXX"), err: "22P04 line 0: COPY file signature not recognized"},
		{name: "truncated tuple", key: 0, in: binaryData(false, nil, [][]byte{i8(1)})[:25],
			want: []string{"H 0 - " + header}, err: "22P04 line 0: unexpected EOF in COPY data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := checkChunkings(t, Options{Format: Format{Kind: Binary}, Key: tc.key, KeyName: "id", Fields: 3}, tc.in)
			if strings.Join(g.rows, "\n") != strings.Join(tc.want, "\n") || g.err != tc.err {
				t.Errorf("%q:\n%s\nwant:\n%s\nerr: %s", tc.in, g, strings.Join(tc.want, "\n"), tc.err)
			}
		})
	}
}

func TestMaxRow(t *testing.T) {
	o := Options{Format: TextFormat(), Key: 0, MaxRow: 8}
	// A long row within one piece passes: only a row held across pieces is bounded.
	if g := split(o, []byte("123456789012\n")); g.err != "" {
		t.Errorf("a long row in one piece: %s", g.err)
	}
	if g := split(o, []byte("12345"), []byte("6789012\n")); g.err != "54000 line 1: a row of COPY data is longer than 8 bytes" {
		t.Errorf("a long row across pieces: %q", g.err)
	}
}

// TestNoAllocations: rows that fit in one piece, and rows carried across pieces once the carry
// has grown, cost no allocation.
func TestNoAllocations(t *testing.T) {
	data := []byte(strings.Repeat("12345\tsome text\t\\N\n", 50))
	s := New(Options{Format: TextFormat(), Key: 0})
	fn := func(*Row) error { return nil }
	allocs := testing.AllocsPerRun(100, func() {
		_ = s.Feed(data[:333], fn)
		_ = s.Feed(data[333:], fn)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

func BenchmarkText(b *testing.B) {
	data := []byte(strings.Repeat("1234567\tsome text of a row\t42.5\t2024-01-01\n", 1600))
	s := New(Options{Format: TextFormat(), Key: 0})
	fn := func(*Row) error { return nil }
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		_ = s.Feed(data[:len(data)/2+7], fn)
		_ = s.Feed(data[len(data)/2+7:], fn)
	}
}

func BenchmarkCSV(b *testing.B) {
	data := []byte(strings.Repeat("1234567,\"some, quoted\ntext\",42.5,2024-01-01\n", 1600))
	s := New(Options{Format: CSVFormat(), Key: 0})
	fn := func(*Row) error { return nil }
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		_ = s.Feed(data[:len(data)/2+7], fn)
		_ = s.Feed(data[len(data)/2+7:], fn)
	}
}
