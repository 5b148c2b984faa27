package pgtext

import (
	"errors"
	"testing"
)

func TestParseInt(t *testing.T) {
	tests := []struct {
		in   string
		bits int
		want int64
		err  error
	}{
		{"42", 64, 42, nil},
		{"  -42\t\n", 64, -42, nil},
		{"+0042", 32, 42, nil},
		{"9223372036854775807", 64, 9223372036854775807, nil},
		{"-9223372036854775808", 64, -9223372036854775808, nil},
		{"9223372036854775808", 64, 0, ErrRange},
		{"-9223372036854775809", 64, 0, ErrRange},
		{"2147483647", 32, 2147483647, nil},
		{"2147483648", 32, 0, ErrRange},
		{"-2147483648", 32, -2147483648, nil},
		{"32767", 16, 32767, nil},
		{"-32769", 16, 0, ErrRange},
		{"99999999999999999999x", 64, 0, ErrRange},
		{"", 64, 0, ErrSyntax},
		{"   ", 64, 0, ErrSyntax},
		{"-", 64, 0, ErrSyntax},
		{"4 2", 64, 0, ErrSyntax},
		{"42.0", 64, 0, ErrSyntax},
		{"0x2A", 64, 0, ErrSyntax},
		{"1_000", 64, 0, ErrSyntax},
	}
	for _, tt := range tests {
		got, err := ParseInt([]byte(tt.in), tt.bits)
		if !errors.Is(err, tt.err) || (err == nil && got != tt.want) {
			t.Errorf("ParseInt(%q, %d) = %d, %v; want %d, %v", tt.in, tt.bits, got, err, tt.want, tt.err)
		}
	}
}

func TestParseUUID(t *testing.T) {
	const canon = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
	for _, in := range []string{
		canon,
		"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
		"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
		"a0eebc999c0b4ef8bb6d6bb9bd380a11",
		"a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
		"{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
	} {
		u, ok := ParseUUID([]byte(in))
		if !ok || string(AppendUUID(nil, u)) != canon {
			t.Errorf("ParseUUID(%q) = %s, %v; want %s", in, AppendUUID(nil, u), ok, canon)
		}
	}
	for _, in := range []string{
		"", "a0eebc99", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1-1", "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
	} {
		if _, ok := ParseUUID([]byte(in)); ok {
			t.Errorf("ParseUUID(%q) accepted it; uuid_in refuses it", in)
		}
	}
}
