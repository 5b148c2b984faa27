package frontend

import (
	"slices"
	"testing"
)

// TestParamTypes: a Parse's parameter type section as the query hooks see it at the Bind.
func TestParamTypes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		section []byte
		want    []uint32
	}{
		{"none declared", []byte{0, 0}, nil},
		{"two", []byte{0, 2, 0, 0, 0, 23, 0, 0, 0, 0}, []uint32{23, 0}},
		{"count beyond the section", []byte{0, 2, 0, 0, 0, 23}, nil},
		{"empty", nil, nil},
	} {
		if got := paramTypes(tc.section); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
