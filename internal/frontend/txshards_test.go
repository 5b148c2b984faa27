package frontend

import (
	"encoding/binary"
	"fmt"
	"testing"
)

func TestFirstKeyword(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"commit", "COMMIT"},
		{"  BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN"},
		{"/* app */ rollback to savepoint a", "ROLLBACK"},
		{"-- note\nSTART TRANSACTION", "START"},
		{"(SELECT 1)", "SELECT"},
		{"/* unterminated", ""},
		{"", ""},
	} {
		if got := firstKeyword([]byte(tc.text)); got != tc.want {
			t.Errorf("firstKeyword(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestRollbackTo(t *testing.T) {
	for text, want := range map[string]bool{
		"ROLLBACK TO a": true, "rollback transaction to savepoint a": true, "ROLLBACK WORK TO a": true,
		"ROLLBACK": false, "rollback and no chain": false, "ROLLBACK; SELECT 'x TO y'": false,
	} {
		if got := rollbackTo([]byte(text)); got != want {
			t.Errorf("rollbackTo(%q) = %v, want %v", text, got, want)
		}
	}
}

// TestSubsetParams: a split INSERT's part gets the types, values and formats of the original
// parameters it uses, renumbered; types the Parse left out stay unspecified.
func TestSubsetParams(t *testing.T) {
	ptypes := binary.BigEndian.AppendUint16(nil, 2)
	ptypes = binary.BigEndian.AppendUint32(ptypes, 20) // $1 int8
	ptypes = binary.BigEndian.AppendUint32(ptypes, 25) // $2 text; $3 unspecified
	vals := [][]byte{[]byte("1"), []byte("a"), nil}
	bin := []bool{true, false, false}
	pt, v, f := subsetParams([]int{3, 1}, ptypes, vals, bin)
	want := binary.BigEndian.AppendUint16(nil, 2)
	want = binary.BigEndian.AppendUint32(want, 0)
	want = binary.BigEndian.AppendUint32(want, 20)
	if string(pt) != string(want) {
		t.Errorf("types % x, want % x", pt, want)
	}
	if fmt.Sprint(v, f) != fmt.Sprint([][]byte{nil, []byte("1")}, []bool{false, true}) {
		t.Errorf("values %q formats %v", v, f)
	}
}
