package wire

import "testing"

func TestBindFields(t *testing.T) {
	// portal "", statement "s", formats [1], params ["ab", NULL], result formats [0, 1]
	body := []byte{0, 's', 0, 0, 1, 0, 1, 0, 2, 0, 0, 0, 2, 'a', 'b', 0xff, 0xff, 0xff, 0xff, 0, 2, 0, 0, 0, 1}
	vals, bin, ok := BindParams(body)
	if !ok || len(vals) != 2 || string(vals[0]) != "ab" || vals[1] != nil || !bin[0] || !bin[1] {
		t.Errorf("BindParams: %q %v %v", vals, bin, ok)
	}
	rf, ok := BindResultFormats(body)
	if !ok || len(rf) != 2 || rf[0] != 0 || rf[1] != 1 {
		t.Errorf("BindResultFormats: %v %v", rf, ok)
	}
	for n := range body {
		BindParams(body[:n])
		BindResultFormats(body[:n])
	}
}

func TestErrorSeverity(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"V and S", Body(AppendError(nil, "FATAL", "57P01", "terminating connection")), "FATAL"},
		{"V wins over a translated S", []byte("SSCHWERWIEGEND\x00VFATAL\x00C57P01\x00\x00"), "FATAL"},
		{"S alone (before 9.6)", []byte("SERROR\x00C42601\x00Msyntax\x00\x00"), "ERROR"},
		{"neither", []byte("C42601\x00\x00"), ""},
		{"truncated", []byte("SFAT"), ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		if got := ErrorSeverity(tt.body); got != tt.want {
			t.Errorf("%s: ErrorSeverity = %q, want %q", tt.name, got, tt.want)
		}
	}
}
