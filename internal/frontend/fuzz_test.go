package frontend

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseStartup feeds arbitrary startup packet bodies to parseStartup and arbitrary options
// strings to parseOptions. Neither may panic; every refusal must wrap errBadStartup (so the client
// gets SQLSTATE 08P01); every accepted packet must encode back to the same bytes; and options that
// parse must parse the same again once written back in their canonical form.
func FuzzParseStartup(f *testing.F) {
	f.Add(startupBody(protocol30, "user", "app", "database", "app"), "")
	f.Add(startupBody(protocol30, "user", "app", "options", "-c search_path=a"), "-c search_path=a")
	f.Add(startupBody(3<<16|2, "user", "app"), `-c application_name=my\ app --work-mem=4MB`)
	f.Add(requestBody(codeSSL), "-csearch_path=x\t-c a=b=c")
	f.Add(requestBody(codeGSSENC), "--")
	f.Add(requestBody(codeCancel, 0, 0, 0, 7, 1, 2, 3, 4), "-c")
	f.Add(startupBody(2<<16, "user", "app"), "x=y")
	f.Add([]byte("\x00\x03\x00\x00user\x00"), `-c a=\`)
	f.Add([]byte{}, "-c a=\xff\xfe")
	f.Fuzz(func(t *testing.T, body []byte, options string) {
		p, err := parseStartup(body)
		if err != nil {
			if !errors.Is(err, errBadStartup) {
				t.Fatalf("parseStartup error %v does not wrap errBadStartup", err)
			}
			if p != nil {
				t.Fatalf("parseStartup returned a packet with an error: %+v", p)
			}
		} else {
			if enc := encodeStartup(p); !bytes.Equal(enc, body) {
				t.Fatalf("accepted packet does not round-trip:\n in % x\nout % x", body, enc)
			}
			again, err := parseStartup(encodeStartup(p))
			if err != nil || !reflect.DeepEqual(again, p) {
				t.Fatalf("re-parse: %+v, %v; want %+v", again, err, p)
			}
			if o := p.get("options"); o != "" {
				_, _ = parseOptions(o) // must not panic
			}
		}

		opts, err := parseOptions(options)
		if err != nil {
			return
		}
		for _, kv := range opts {
			if kv.name == "" || strings.Contains(kv.name, "-") {
				t.Fatalf("option name %q: empty or with '-'", kv.name)
			}
		}
		canon := writeOptions(opts)
		again, err := parseOptions(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q: %v", canon, options, err)
		}
		if !reflect.DeepEqual(again, opts) {
			t.Fatalf("canonical form %q of %q parses to %q, want %q", canon, options, again, opts)
		}
	})
}

// writeOptions writes settings as an options startup parameter, "-c name=value" each, escaping
// blanks and backslashes.
func writeOptions(ps []param) string {
	esc := strings.NewReplacer(`\`, `\\`, " ", `\ `, "\t", "\\\t")
	var words []string
	for _, p := range ps {
		words = append(words, "-c", esc.Replace(p.name+"="+p.value))
	}
	return strings.Join(words, " ")
}
