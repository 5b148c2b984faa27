package classify

import "testing"

// FuzzClassify feeds arbitrary text to Classify and ParseCommand. Neither may panic, and the
// Result must keep its own rules whatever the text. The seed corpus is in
// testdata/fuzz/FuzzClassify, plus every query of the table test.
func FuzzClassify(f *testing.F) {
	for _, tc := range classifyCases {
		f.Add(tc.query)
	}
	cached := New(Options{CacheSize: 100})
	strict := New(Options{CacheSize: -1, StrictFunctions: true})
	f.Fuzz(func(t *testing.T, query string) {
		for _, c := range []*Classifier{cached, strict} {
			r := c.Classify([]byte(query))
			if r.ParseErr != nil && !r.Write {
				t.Fatalf("%q: parse error %v but not a write", query, r.ParseErr)
			}
			if r.Write && r.Neutral {
				t.Fatalf("%q: both Write and Neutral", query)
			}
			if r.Write != (r.Why != "") {
				t.Fatalf("%q: Write = %v but Why = %q", query, r.Write, r.Why)
			}
			if (r.Command != nil || r.CommandErr != nil) && (r.Write || r.ParseErr != nil) {
				t.Fatalf("%q: a command that is also sent: %+v", query, r)
			}
			if again := c.Classify([]byte(query)); again.Write != r.Write {
				t.Fatalf("%q: classified differently the second time", query)
			}
		}
		cmd, ok, err := ParseCommand([]byte(query))
		if !ok && (cmd != nil || err != nil) || ok && (cmd == nil) == (err == nil) {
			t.Fatalf("%q: ParseCommand = %+v, %v, %v", query, cmd, ok, err)
		}
	})
}
