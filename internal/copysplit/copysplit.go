// Package copysplit cuts the data of a COPY ... FROM STDIN into rows, across the CopyData
// messages that carry it, and reads one field of each row: what sluice needs to send each row
// of a COPY to the shard that its sharding key names.
//
// It follows Postgres 15's COPY parser (src/backend/commands/copyfromparse.c) for the text, CSV
// and binary formats: where Postgres sees a line end (\n, \r or \r\n, the first line deciding),
// an escaped or quoted newline, the end-of-data marker \., a field or a NULL, so does a
// Splitter, and it raises Postgres' own errors about the structure of the lines (a carriage
// return in data, a corrupt end marker, a missing key field). Each shard then parses its rows
// again and checks everything else (the number of fields, the values, the encoding): the rows
// it gets are byte for byte the client's, so what it accepts or refuses is what one database
// would accept or refuse.
//
// Client encodings in which a multi-byte character may contain an ASCII byte (SJIS, BIG5, GBK,
// UHC, GB18030) are not handled: the caller refuses them (see ASCIISafeEncoding).
//
// The package is pure: no I/O, and no allocation per row once a Splitter's buffers have grown
// to the longest row that spanned two CopyData messages.
package copysplit

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Kind is a COPY data format.
type Kind uint8

const (
	Text Kind = iota
	CSV
	Binary
)

func (k Kind) String() string {
	switch k {
	case CSV:
		return "csv"
	case Binary:
		return "binary"
	}
	return "text"
}

// Format is how the data of one COPY is written, from the statement's options. Its zero value
// is not usable: start from TextFormat or CSVFormat and apply the options.
type Format struct {
	Kind Kind
	// Delimiter separates fields: a tab in text, a comma in CSV.
	Delimiter byte
	// Quote and Escape are CSV's (both '"' by default; Escape defaults to Quote).
	Quote, Escape byte
	// Null is the NULL marker, compared with a field's raw text: `\N` in text, an unquoted
	// empty string in CSV.
	Null string
	// Default is the DEFAULT marker (Postgres 16), when HasDefault.
	Default    string
	HasDefault bool
	// Header: the data begins with a header line (text and CSV).
	Header bool
	// KeyForceNull and KeyForceNotNull say that the key column is listed in CSV's FORCE_NULL
	// (a quoted field equal to Null is NULL too) or FORCE_NOT_NULL (Null is never NULL).
	KeyForceNull, KeyForceNotNull bool
}

// TextFormat and CSVFormat return Postgres' defaults for the two formats.
func TextFormat() Format { return Format{Kind: Text, Delimiter: '\t', Null: `\N`} }
func CSVFormat() Format {
	return Format{Kind: CSV, Delimiter: ',', Quote: '"', Escape: '"', Null: ""}
}

// Options configure a Splitter.
type Options struct {
	Format Format
	// Key is the number (from 0) of the field the Splitter reads in each row; -1 reads none.
	Key int
	// KeyName is the key column's name, for errors ("missing data for column ...").
	KeyName string
	// Fields is the number of columns each row has, for the binary format's error about a
	// short row; 0 if unknown.
	Fields int
	// MaxRow bounds a row (a line, or a binary tuple) that spans CopyData messages and must
	// be held whole; a longer one fails with 54000. 0 means 1 GiB, Postgres' own bound.
	MaxRow int
}

// Row is one row of the data, or the header that every shard's data must begin with.
type Row struct {
	// Data is the row as the client sent it, its line end included (the last row may have
	// none; a row ended by the end-of-data marker ends before it). It and Key are valid only
	// until the callback returns.
	Data []byte
	// Key is the key field with its escapes or quotes undone, as the server's input function
	// would read it (the binary format: the field's bytes); nil when Null.
	Key  []byte
	Null bool
	// Default: the key field is the DEFAULT marker: the server would compute it.
	Default bool
	// Header is set for the header line of the text and CSV formats (HEADER) and for the
	// binary format's file header: not a row, but what each shard's data must begin with.
	Header bool
	// Line is Postgres' line number of the row (1 for the first line, header included; in CSV
	// quoted newlines count), for errors.
	Line int
}

// Error is a fault in the COPY data, with the SQLSTATE Postgres gives it.
type Error struct {
	Code string // 22P04 bad_copy_file_format, 54000 program_limit_exceeded
	Line int    // 0 when not about one line
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d)", e.Msg, e.Line)
	}
	return e.Msg
}

// BadFormat is the SQLSTATE bad_copy_file_format.
const BadFormat = "22P04"

type eolType uint8

const (
	eolUnknown eolType = iota
	eolNL
	eolCR
	eolCRNL
)

// pending is a byte sequence begun at the end of what was scanned whose meaning depends on the
// next byte, which may be in the next CopyData.
type pending uint8

const (
	pendNone      pending = iota
	pendCR                // an unquoted \r: alone (CR line ends) or the start of \r\n?
	pendBackslash         // a backslash: an escape, or the start of \.?
	pendDot               // \. : with \r\n line ends, the \r must follow
	pendDotEnd            // \. (and \r for \r\n): the line end must follow
)

// scanned is what scan found.
type scanned uint8

const (
	needMore scanned = iota // the data ended inside a row
	lineEnd                 // a row ended (its terminator included)
	marker                  // the end-of-data marker: the data before it on its line is the last row
)

// Splitter cuts one COPY's data into rows. It is not safe for concurrent use.
type Splitter struct {
	o   Options
	csv bool
	// special marks the bytes the line scanner must look at; others are data.
	special [256]bool
	escape  byte // the CSV escape as the line scanner uses it: 0 when it is the quote

	carry []byte // the beginning of a row that a CopyData left unfinished
	key   []byte // the de-escaped key field of the current row
	row   Row

	line      int // lines read, as Postgres counts them
	done      bool
	header    bool // a header is still to come
	eol       eolType
	pend      pending
	inQuote   bool
	lastEsc   bool
	firstChar bool // nothing of the current line is scanned yet
	n         int  // bytes of the current row scanned, carry included
	mark      int  // where the current row's \. began
	term      int  // the length of the current row's line end

	need int // binary: the bytes the carry must hold before it is parsed again
}

// New returns a Splitter for o.
func New(o Options) *Splitter {
	if o.MaxRow <= 0 {
		o.MaxRow = 1 << 30
	}
	s := &Splitter{o: o, csv: o.Format.Kind == CSV, header: o.Format.Header || o.Format.Kind == Binary, firstChar: true}
	s.special['\n'], s.special['\r'], s.special['\\'] = true, true, true
	if s.csv {
		s.escape = o.Format.Escape
		if s.escape == o.Format.Quote {
			s.escape = 0 // as Postgres: a quote doubled is the only escape
		}
		// With the escape off Postgres compares bytes with '\0' all the same: a NUL byte in a
		// quoted field toggles its escape state (and the server then refuses the NUL).
		s.special[o.Format.Quote], s.special[s.escape] = true, true
	}
	return s
}

// Done reports whether the data has ended: the end-of-data marker (text, CSV) or the trailer
// (binary) was seen. Postgres ignores text and CSV data after the marker; binary data after the
// trailer is an error.
func (s *Splitter) Done() bool { return s.done }

// Feed consumes the next piece of the data (one CopyData's content) and calls fn for each row
// that it completes, in order. A row begun here and not finished is kept for the next Feed.
// The first error, the Splitter's (an *Error) or fn's, ends the data: Feed returns it.
func (s *Splitter) Feed(data []byte, fn func(*Row) error) error {
	if s.o.Format.Kind == Binary {
		return s.feedBinary(data, fn)
	}
	start, i := 0, 0 // the current row's start in data (if the carry is empty), the scan
	for !s.done && i < len(data) {
		end, what, err := s.scan(data, i)
		if err != nil {
			return err
		}
		if what == needMore {
			break
		}
		row := data[start:end]
		if len(s.carry) > 0 {
			if len(s.carry)+len(row) > s.o.MaxRow {
				return s.tooLong()
			}
			s.carry = append(s.carry, row...)
			row = s.carry
		}
		if err := s.emit(row, what, fn); err != nil {
			return err
		}
		s.carry = s.carry[:0]
		start, i = end, end
	}
	if s.done || start == len(data) {
		return nil
	}
	if len(s.carry)+len(data)-start > s.o.MaxRow {
		return s.tooLong()
	}
	s.carry = append(s.carry, data[start:]...)
	return nil
}

// Finish ends the data (the client's CopyDone): a last row without a line end is complete, and
// an unfinished end marker or binary tuple is an error.
func (s *Splitter) Finish(fn func(*Row) error) error {
	if s.done {
		return nil
	}
	s.done = true
	if s.o.Format.Kind == Binary {
		if len(s.carry) > 0 {
			return s.bad(0, "unexpected EOF in COPY data")
		}
		return nil
	}
	// At the end Postgres reads a NUL byte past the data where it looks ahead.
	switch s.pend {
	case pendCR:
		if s.eol == eolCRNL {
			return s.crError()
		}
		s.term = 1
	case pendDot, pendDotEnd:
		if !s.csv {
			return s.bad(s.line+1, "end-of-copy marker corrupt")
		}
		s.term = 0 // CSV: \. is data
	default:
		s.term = 0 // a pending backslash ends the line as it is
		if len(s.carry) == 0 {
			return nil
		}
	}
	return s.emit(s.carry, lineEnd, fn)
}

// scan advances the line scanner over data[i:] up to the end of the current row. It returns
// the index just past the row's end in data (for a marker, past the marker's line end), or
// needMore when data ends first.
func (s *Splitter) scan(data []byte, i int) (int, scanned, error) {
	sp := &s.special
	for i < len(data) {
		if s.pend == pendNone {
			// Ordinary bytes are data: skip them in one go.
			j := i
			for j < len(data) && !sp[data[j]] {
				j++
			}
			if j > i {
				s.firstChar, s.lastEsc = false, false
				s.n += j - i
				i = j
				if i == len(data) {
					break
				}
			}
		}
		c := data[i]
		switch s.pend {
		case pendCR:
			s.pend = pendNone
			if c == '\n' {
				s.eol, s.term = eolCRNL, 2
				s.n++
				return i + 1, lineEnd, nil
			}
			if s.eol == eolCRNL {
				return 0, needMore, s.crError()
			}
			s.eol, s.term = eolCR, 1
			return i, lineEnd, nil // c begins the next line
		case pendBackslash:
			s.pend = pendNone
			if c == '.' {
				s.pend = pendDot
				s.n++
				i++
				continue
			}
			s.firstChar = false
			if !s.csv {
				// Whatever follows a backslash in text is data, a line end included.
				s.n++
				i++
			}
			continue // CSV: c is scanned as any byte
		case pendDot:
			if s.eol == eolCRNL {
				s.n++
				i++
				switch {
				case c == '\r':
					s.pend = pendDotEnd
				case s.csv:
					s.pend, s.firstChar = pendNone, false // \. is data in CSV
				case c == '\n':
					return 0, needMore, s.bad(s.line+1, "end-of-copy marker does not match previous newline style")
				default:
					return 0, needMore, s.bad(s.line+1, "end-of-copy marker corrupt")
				}
				continue
			}
			s.pend = pendDotEnd
			continue
		case pendDotEnd:
			s.n++
			i++
			if c != '\r' && c != '\n' {
				if !s.csv {
					return 0, needMore, s.bad(s.line+1, "end-of-copy marker corrupt")
				}
				s.pend, s.firstChar = pendNone, false
				continue
			}
			if s.eol == eolNL && c != '\n' || s.eol == eolCRNL && c != '\n' || s.eol == eolCR && c != '\r' {
				return 0, needMore, s.bad(s.line+1, "end-of-copy marker does not match previous newline style")
			}
			s.pend = pendNone
			return i, marker, nil
		}
		i++
		s.n++
		if s.csv {
			// Postgres' CSV state, exactly: with the escape off (equal to the quote), every
			// quote toggles; otherwise an escape inside quotes protects the next quote.
			if s.inQuote && c == s.escape {
				s.lastEsc = !s.lastEsc
			}
			if c == s.o.Format.Quote && !s.lastEsc {
				s.inQuote = !s.inQuote
			}
			if c != s.escape {
				s.lastEsc = false
			}
			if s.inQuote && (s.eol == eolNL && c == '\n' || s.eol != eolNL && c == '\r') {
				s.line++ // Postgres counts quoted line ends as lines
			}
		}
		if c == '\r' && (!s.csv || !s.inQuote) {
			switch s.eol {
			case eolUnknown, eolCRNL:
				s.pend = pendCR
				continue
			case eolNL:
				return 0, needMore, s.crError()
			}
			s.term = 1
			return i, lineEnd, nil
		}
		if c == '\n' && (!s.csv || !s.inQuote) {
			if s.eol == eolCR || s.eol == eolCRNL {
				what := "literal newline found in data"
				if s.csv {
					what = "unquoted newline found in data"
				}
				return 0, needMore, s.bad(s.line+1, what)
			}
			s.eol, s.term = eolNL, 1
			return i, lineEnd, nil
		}
		if c == '\\' && (!s.csv || s.firstChar) {
			s.mark = s.n - 1
			s.pend = pendBackslash
			continue
		}
		s.firstChar = false
	}
	return len(data), needMore, nil
}

func (s *Splitter) crError() error {
	if s.csv {
		return s.bad(s.line+1, "unquoted carriage return found in data")
	}
	return s.bad(s.line+1, "literal carriage return found in data")
}

// emit reads a complete row (text or CSV) and hands it to fn. row runs to the end of what
// scan consumed: for a marker, past the marker.
func (s *Splitter) emit(row []byte, what scanned, fn func(*Row) error) error {
	s.line++
	var content []byte
	if what == marker {
		s.done = true
		content = row[:s.mark]
		row = content // the row ends where the marker began: it is the last
	} else {
		content = row[:len(row)-s.term]
	}
	s.n, s.term, s.firstChar, s.inQuote, s.lastEsc = 0, 0, true, false, false
	if what == marker && len(content) == 0 {
		return nil // nothing before the marker: no row
	}
	r := &s.row
	*r = Row{Data: row, Line: s.line}
	if s.header {
		s.header = false
		r.Header = true
		return fn(r)
	}
	if s.o.Key >= 0 {
		var err error
		if s.csv {
			err = s.keyCSV(r, content)
		} else {
			err = s.keyText(r, content)
		}
		if err != nil {
			return err
		}
	}
	return fn(r)
}

// keyText reads the key field of a text-format line, as CopyReadAttributesText does: fields
// end at an unescaped delimiter; the NULL marker is compared with the raw field; escapes are
// \b \f \n \r \t \v, one to three octal digits, \x and one or two hex digits, and a backslash
// before any other byte stands for that byte.
func (s *Splitter) keyText(r *Row, line []byte) error {
	f := &s.o.Format
	i := 0
	for field := 0; field < s.o.Key; field++ {
		for {
			if i >= len(line) {
				return s.missing(r.Line)
			}
			c := line[i]
			i++
			if c == f.Delimiter {
				break
			}
			if c == '\\' && i < len(line) {
				i++
			}
		}
	}
	start, end := i, i
	key := s.key[:0]
	for {
		end = i
		if i >= len(line) {
			break
		}
		c := line[i]
		i++
		if c == f.Delimiter {
			break
		}
		if c == '\\' {
			if i >= len(line) {
				break // a backslash that ends the line is dropped, and not compared with NULL
			}
			c = line[i]
			i++
			switch c {
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := c - '0'
				for k := 0; k < 2 && i < len(line) && line[i] >= '0' && line[i] <= '7'; k++ {
					v = v<<3 + (line[i] - '0')
					i++
				}
				c = v
			case 'x':
				if i < len(line) && isHex(line[i]) {
					v := unhex(line[i])
					i++
					if i < len(line) && isHex(line[i]) {
						v = v<<4 + unhex(line[i])
						i++
					}
					c = v
				}
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'v':
				c = '\v'
			}
		}
		key = append(key, c)
	}
	s.key = key
	raw := line[start:end]
	switch {
	case string(raw) == f.Null:
		r.Null = true
	case f.HasDefault && string(raw) == f.Default:
		r.Default = true
	default:
		r.Key = key
	}
	return nil
}

// keyCSV reads the key field of a CSV line, as CopyReadAttributesCSV does: a delimiter ends a
// field outside quotes; inside quotes the escape protects a following quote or escape; a field
// is NULL when it equals the NULL marker and has no quote (FORCE_NULL and FORCE_NOT_NULL
// change that for their columns).
func (s *Splitter) keyCSV(r *Row, line []byte) error {
	f := &s.o.Format
	i := 0
	key := s.key[:0]
	for field := 0; ; field++ {
		want := field == s.o.Key
		start, quoted, delim := i, false, false
		key = key[:0]
	fieldLoop:
		for {
			// Outside quotes.
			for {
				if i >= len(line) {
					break fieldLoop
				}
				c := line[i]
				i++
				if c == f.Delimiter {
					delim = true
					break fieldLoop
				}
				if c == f.Quote {
					quoted = true
					break
				}
				if want {
					key = append(key, c)
				}
			}
			// Inside quotes.
			for {
				if i >= len(line) {
					return s.bad(r.Line, "unterminated CSV quoted field")
				}
				c := line[i]
				i++
				if c == f.Escape && i < len(line) && (line[i] == f.Escape || line[i] == f.Quote) {
					if want {
						key = append(key, line[i])
					}
					i++
					continue
				}
				if c == f.Quote {
					break
				}
				if want {
					key = append(key, c)
				}
			}
		}
		if want {
			s.key = key
			end := i
			if delim {
				end--
			}
			raw := line[start:end]
			null := !quoted && string(raw) == f.Null
			switch {
			case null && f.KeyForceNotNull:
				r.Key = append(key[:0], f.Null...) // the marker read as a value
				s.key = r.Key
			case null, f.KeyForceNull && string(key) == f.Null:
				r.Null = true
			case f.HasDefault && !quoted && string(raw) == f.Default:
				r.Default = true
			default:
				r.Key = key
			}
			return nil
		}
		if !delim {
			s.key = key
			return s.missing(r.Line)
		}
	}
}

func (s *Splitter) missing(line int) error {
	return s.bad(line, fmt.Sprintf("missing data for column %q", s.o.KeyName))
}

func (s *Splitter) bad(line int, msg string) error {
	s.done = true
	return &Error{Code: BadFormat, Line: line, Msg: msg}
}

func (s *Splitter) tooLong() error {
	s.done = true
	return &Error{Code: "54000", Line: s.line + 1, Msg: fmt.Sprintf("a row of COPY data is longer than %d bytes", s.o.MaxRow)}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// binarySignature begins binary COPY data.
const binarySignature = "PGCOPY\n\377\r\n\x00"

// feedBinary cuts binary COPY data: a file header (signature, flags, extension), then tuples
// (a 16-bit field count, then each field's 32-bit length, -1 for NULL, and bytes), then an
// optional trailer (a field count of -1). A header or tuple that a CopyData leaves unfinished
// is completed in the carry with only the bytes the next step needs, so a long tuple is
// copied once.
func (s *Splitter) feedBinary(data []byte, fn func(*Row) error) error {
	for len(data) > 0 {
		if s.done {
			return s.bad(0, "received copy data after EOF marker")
		}
		if len(s.carry) > 0 {
			take := min(s.need-len(s.carry), len(data))
			s.carry = append(s.carry, data[:take]...)
			data = data[take:]
			if len(s.carry) < s.need {
				return nil
			}
			n, need, err := s.parseBinary(s.carry, fn)
			if err != nil {
				return err
			}
			if n == 0 {
				if need > s.o.MaxRow {
					return s.tooLong()
				}
				s.need = need
				continue
			}
			s.carry = s.carry[:0]
			continue
		}
		n, need, err := s.parseBinary(data, fn)
		if err != nil {
			return err
		}
		if n == 0 {
			if need > s.o.MaxRow {
				return s.tooLong()
			}
			s.carry, s.need = append(s.carry[:0], data...), need
			return nil
		}
		data = data[n:]
	}
	return nil
}

// parseBinary reads the header or the tuple at the start of b. When b holds it whole it calls
// fn and returns its size; otherwise 0 and the size b must have for the next attempt.
func (s *Splitter) parseBinary(b []byte, fn func(*Row) error) (n, need int, err error) {
	if s.header {
		const fixed = len(binarySignature) + 8
		if len(b) < fixed {
			return 0, fixed, nil
		}
		if string(b[:len(binarySignature)]) != binarySignature {
			return 0, 0, s.bad(0, "COPY file signature not recognized")
		}
		ext := int32(binary.BigEndian.Uint32(b[len(binarySignature)+4:]))
		if ext < 0 {
			return 0, 0, s.bad(0, "invalid COPY file header (wrong length)")
		}
		size := fixed + int(ext)
		if len(b) < size {
			return 0, size, nil
		}
		s.header = false
		s.row = Row{Data: b[:size], Header: true}
		return size, 0, fn(&s.row)
	}
	if len(b) < 2 {
		return 0, 2, nil
	}
	count := int(int16(binary.BigEndian.Uint16(b)))
	if count == -1 {
		s.done = true
		s.line++
		return 2, 0, nil // the trailer: the shards see the end of their data instead
	}
	line := s.line + 1
	if count < 0 || s.o.Key >= count {
		want := "expected more"
		if s.o.Fields > 0 {
			want = fmt.Sprintf("expected %d", s.o.Fields)
		}
		return 0, 0, s.bad(line, fmt.Sprintf("row field count is %d, %s", count, want))
	}
	off := 2
	r := &s.row
	*r = Row{Line: line}
	for f := 0; f < count; f++ {
		if len(b) < off+4 {
			return 0, off + 4, nil
		}
		l := int(int32(binary.BigEndian.Uint32(b[off:])))
		off += 4
		if l < -1 {
			return 0, 0, s.bad(line, "invalid field size")
		}
		if l == -1 {
			if f == s.o.Key {
				r.Null = true
			}
			continue
		}
		if len(b) < off+l {
			if off+l > s.o.MaxRow {
				return 0, 0, s.tooLong()
			}
			return 0, off + l, nil
		}
		if f == s.o.Key {
			r.Key = b[off : off+l]
		}
		off += l
	}
	s.line = line
	r.Data = b[:off]
	return off, 0, fn(r)
}

// ASCIISafeEncoding reports whether COPY data in a client encoding can be cut by its ASCII
// bytes: false for the encodings whose multi-byte characters may contain bytes below 0x80
// (Postgres' encoding_embeds_ascii), which the Splitter does not decode.
func ASCIISafeEncoding(name string) bool {
	switch strings.ToUpper(strings.NewReplacer("-", "", "_", "").Replace(name)) {
	case "SJIS", "SHIFTJIS", "MSKANJI", "WIN932", "WINDOWS932", "BIG5", "WIN950", "WINDOWS950",
		"GBK", "WIN936", "WINDOWS936", "UHC", "WIN949", "WINDOWS949", "GB18030", "JOHAB",
		"SHIFTJIS2004":
		return false
	}
	return true
}
