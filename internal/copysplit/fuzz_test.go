package copysplit

import (
	"bytes"
	"testing"
)

// fuzzFormats are the formats FuzzSplit cuts with, chosen by the input's kind byte.
var fuzzFormats = []Format{
	TextFormat(),
	CSVFormat(),
	{Kind: CSV, Delimiter: ';', Quote: '\'', Escape: '\\', Null: "N", Header: true},
	{Kind: Text, Delimiter: '|', Null: "", Header: true, Default: `\D`, HasDefault: true},
	{Kind: Binary},
}

// FuzzSplit cuts arbitrary data in every format. Nothing may panic; the rows must not depend
// on where the data is cut into CopyData messages (MaxRow, which bounds only a row held across
// messages, is left at its default so that it never applies here) (whole, cut at one point, byte by byte); and
// the rows' bytes, one after another, must be the data itself (up to the end marker, or the
// binary trailer, which sluice does not pass on). The seed corpus is in testdata/fuzz/FuzzSplit,
// plus the inputs of the table tests.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"1\ta\n2\tb\n", "1,\"x\ny\"\r\n\\.\r\n", "a\\\tb\t7\nc\\\nd\t8", "1\n\\.x\n"} {
		f.Add(s, uint8(0), uint16(3), uint8(1))
	}
	f.Add(string(binaryData(true, []byte("e"), [][]byte{[]byte("12345678"), nil})), uint8(4), uint16(20), uint8(0))
	f.Fuzz(func(t *testing.T, data string, kind uint8, cut uint16, key uint8) {
		if len(data) > 4096 {
			return
		}
		o := Options{Format: fuzzFormats[int(kind)%len(fuzzFormats)], Key: int(key%4) - 1, KeyName: "k"}
		b := []byte(data)
		whole, rows := splitRows(o, b)
		at := int(cut) % (len(b) + 1)
		if g := split(o, b[:at], b[at:]); g.String() != whole.String() {
			t.Fatalf("cut at %d of %q:\n%s\nwhole:\n%s", at, b, g, whole)
		}
		var pieces [][]byte
		for i := range b {
			pieces = append(pieces, b[i:i+1])
		}
		if g := split(o, pieces...); g.String() != whole.String() {
			t.Fatalf("byte by byte %q:\n%s\nwhole:\n%s", b, g, whole)
		}
		if whole.err == "" && !bytes.HasPrefix(b, rows) {
			t.Fatalf("the rows of %q are not the data: %q", b, rows)
		}
	})
}

// splitRows is split over the whole data, also returning the rows' bytes one after another.
func splitRows(o Options, data []byte) (got, []byte) {
	var rows []byte
	s := New(o)
	_ = s.Feed(data, func(r *Row) error { rows = append(rows, r.Data...); return nil })
	_ = s.Finish(func(r *Row) error { rows = append(rows, r.Data...); return nil })
	return split(o, data), rows
}
