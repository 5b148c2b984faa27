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
