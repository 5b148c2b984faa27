package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes through a Reader, in reads of arbitrary sizes, using Peek,
// Message, Complete, Forward, Skip, ReadFull, Discard and Shrink in an arbitrary order, and checks
// every message and every error against a plain decoding of the same bytes.
//
// stream is the input; big, when not zero, puts a message of 2*big body bytes in front of it so
// that the pooled and oversized buffers are used; limit is the Reader's size limit in units of 4
// bytes (0: 1 MiB, so that a made-up length cannot make the fuzzer allocate a gigabyte per run);
// chunk bounds the size of each read; ops picks the method per message.
func FuzzReader(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1;\x00S\x00\x00\x00\x04"), uint16(0), uint16(0), uint8(0), []byte{0})
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1;\x00S\x00\x00\x00\x04"), uint16(0), uint16(0), uint8(1), []byte{1, 2, 3, 4, 5, 6})
	f.Add([]byte("D\x00\x00\x00\x03"), uint16(0), uint16(0), uint8(7), []byte{0})         // bad length
	f.Add([]byte("D\x80\x00\x00\x00rest"), uint16(0), uint16(0), uint8(7), []byte{2})     // 2 GiB
	f.Add([]byte("D\x00\x00\x01\x00abc"), uint16(0), uint16(0), uint8(2), []byte{1})      // truncated body
	f.Add([]byte("S\x00\x00"), uint16(0), uint16(0), uint8(0), []byte{0})                 // truncated header
	f.Add([]byte("S\x00\x00\x00\x04"), uint16(9000), uint16(0), uint8(255), []byte{0, 5}) // over the pooled buffer
	f.Add([]byte("S\x00\x00\x00\x04"), uint16(9000), uint16(300), uint8(255), []byte{0})  // over the limit
	f.Add([]byte("S\x00\x00\x00\x04"), uint16(4000), uint16(0), uint8(13), []byte{1, 6})  // within the pooled buffer
	f.Add(bytes.Repeat([]byte("C\x00\x00\x00\x05x"), 200), uint16(0), uint16(0), uint8(50), []byte{0, 3, 6, 4})
	f.Fuzz(func(t *testing.T, stream []byte, big, limit uint16, chunk uint8, ops []byte) {
		input := stream
		if big > 0 {
			input = append(msg('D', 2*int(big)), stream...)
		}
		max := 4 * int(limit)
		if max == 0 {
			max = 1 << 20
		}
		r := NewReader(&chunkReader{b: input, n: int(chunk) + 1}, max)
		if len(ops) == 0 {
			ops = []byte{0}
		}
		off := 0 // where the next message starts in input
		for i := 0; ; i++ {
			want, wantErr := expectNext(input[off:], max)
			op := ops[i%len(ops)] % 8
			if op == 4 {
				r.Shrink()
			}
			if size, ok := r.Complete(); ok && (wantErr != nil || size != len(want)) {
				t.Fatalf("message %d at %d: Complete = %d, true; want %d bytes, error %v", i, off, size, len(want), wantErr)
			}
			typ, size, err := r.Peek()
			if wantErr != nil && (wantErr == io.EOF || errors.Is(wantErr, ErrBadLength) || errors.Is(wantErr, ErrMessageTooLarge) || len(input)-off < HeaderLen) {
				// The error shows at the header.
				if !sameError(err, wantErr) {
					t.Fatalf("message %d at %d: Peek error %v, want %v", i, off, err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("message %d at %d: Peek: %v", i, off, err)
			}
			wantSize := int(binary.BigEndian.Uint32(input[off+1:])) + 1
			if typ != input[off] || size != wantSize {
				t.Fatalf("message %d at %d: Peek = %q, %d; want %q, %d", i, off, typ, size, input[off], wantSize)
			}
			var got []byte
			switch op {
			case 1, 5: // Forward
				var out bytes.Buffer
				err = r.Forward(&out, size)
				got = out.Bytes()
			case 2: // Skip
				err = r.Skip(size)
				got = want
			case 3: // ReadFull
				got = make([]byte, size)
				err = r.ReadFull(got)
			default: // Message, then Discard
				got, err = r.Message()
				if err == nil {
					if n, ok := r.Complete(); !ok || n != size {
						t.Fatalf("message %d: Complete after Message = %d, %v", i, n, ok)
					}
					got = bytes.Clone(got)
					r.Discard(len(got))
				}
			}
			if wantErr != nil {
				if !sameError(err, wantErr) {
					t.Fatalf("message %d at %d (op %d): error %v, want %v", i, off, op, err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("message %d at %d (op %d): %v", i, off, op, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("message %d at %d (op %d): got %d bytes that differ from the %d expected", i, off, op, len(got), len(want))
			}
			off += len(want)
			if op == 6 {
				r.Shrink()
			}
			if r.Buffered() > len(input)-off {
				t.Fatalf("Buffered = %d with only %d bytes left in the stream", r.Buffered(), len(input)-off)
			}
		}
	})
}

// expectNext decodes the message at the start of b the plain way: the whole message, or the
// error a Reader must report for it.
func expectNext(b []byte, max int) ([]byte, error) {
	switch {
	case len(b) == 0:
		return nil, io.EOF
	case len(b) < HeaderLen:
		return nil, io.ErrUnexpectedEOF
	}
	l := int(binary.BigEndian.Uint32(b[1:]))
	switch {
	case l < 4:
		return nil, ErrBadLength
	case l+1 > max:
		return nil, ErrMessageTooLarge
	case len(b) < l+1:
		return nil, io.ErrUnexpectedEOF
	}
	return b[:l+1], nil
}

func sameError(got, want error) bool {
	if want == io.EOF || want == io.ErrUnexpectedEOF {
		return got == want
	}
	return errors.Is(got, want)
}

// FuzzBodies feeds arbitrary message bodies, as a client or a server may send them, to every
// parser of a body: none may panic, read past the body or return a slice that is not a part of
// it, and a Bind body that BindParams accepts is also accepted by BindStatement and rebuilt to
// the same values by AppendBind. (BindParams does not read the result formats after the values,
// so it accepts a Bind cut short there, which Postgres refuses.)
func FuzzBodies(f *testing.F) {
	f.Add([]byte("\x00SELECT 1\x00\x00\x00"))
	f.Add([]byte("p\x00s\x00\x00\x01\x00\x01\x00\x02\x00\x00\x00\x01a\xff\xff\xff\xff\x00\x01\x00\x01"))
	f.Add([]byte("Sname\x00"))
	f.Add([]byte("\x00\x02\x00\x00\x00\x01x\xff\xff\xff\xff"))
	f.Add([]byte("SERROR\x00C42P01\x00Mno\x00\x00"))
	f.Add([]byte("\x00\x01id\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		inside := func(what string, s []byte) {
			if len(s) == 0 {
				return
			}
			if len(s) > len(body) || !bytes.Contains(body, s) {
				t.Fatalf("%s: %q is not a part of the body", what, s)
			}
		}
		if name, query, ptypes, ok := ParseQuery(body); ok {
			inside("ParseQuery name", name)
			inside("ParseQuery query", query)
			inside("ParseQuery types", ptypes)
		}
		for _, typ := range []byte{Parse, Describe, Close} {
			if _, name, ok := StatementRef(typ, body); ok {
				inside("StatementRef", name)
			}
		}
		name, nameOK := BindStatement(body)
		if nameOK {
			inside("BindStatement", name)
		}
		fmts, _ := BindResultFormats(body)
		vals, binFmt, ok := BindParams(body)
		if ok {
			if !nameOK {
				t.Fatalf("BindParams accepts what BindStatement refuses")
			}
			for _, v := range vals {
				inside("BindParams value", v)
			}
			if len(binFmt) != len(vals) {
				t.Fatalf("BindParams: %d formats for %d values", len(binFmt), len(vals))
			}
			portal, _, _ := CString(body)
			rebuilt := AppendBind(nil, string(portal), string(name), binFmt, vals, fmts)
			vals2, binFmt2, ok2 := BindParams(Body(rebuilt))
			if !ok2 || len(vals2) != len(vals) {
				t.Fatalf("AppendBind's message does not parse back: %q", rebuilt)
			}
			for i := range vals {
				if !bytes.Equal(vals[i], vals2[i]) || (vals[i] == nil) != (vals2[i] == nil) || binFmt[i] != binFmt2[i] {
					t.Fatalf("value %d: %q (binary %v), rebuilt %q (binary %v)", i, vals[i], binFmt[i], vals2[i], binFmt2[i])
				}
			}
			renamed := AppendBindRenamed(nil, body, "other")
			if got, ok := BindStatement(Body(renamed)); !ok || string(got) != "other" {
				t.Fatalf("AppendBindRenamed: statement %q, %v", got, ok)
			}
		}
		cols, null := DataRowText(body)
		if len(cols) != len(null) {
			t.Fatalf("DataRowText: %d columns, %d null flags", len(cols), len(null))
		}
		_ = RowDescriptionNames(body)
		_, _ = ErrorFields(body)
		inside("ErrorField", ErrorField(body, 'C'))
		_ = ErrorSeverity(body)
	})
}
