package wire

import (
	"bytes"
	"encoding/binary"
)

// Frontend (client to server) message types the proxy acts on.
const (
	Query        byte = 'Q'
	Parse        byte = 'P'
	Bind         byte = 'B'
	Describe     byte = 'D'
	Execute      byte = 'E'
	Sync         byte = 'S'
	Flush        byte = 'H'
	Close        byte = 'C'
	Terminate    byte = 'X'
	FunctionCall byte = 'F'
	CopyData     byte = 'd'
	CopyDone     byte = 'c'
	CopyFail     byte = 'f'
	Password     byte = 'p'
)

// Backend (server to client) message types the proxy acts on.
const (
	ParseComplete       byte = '1'
	BindComplete        byte = '2'
	CloseComplete       byte = '3'
	ParameterDesc       byte = 't'
	RowDescription      byte = 'T'
	NoData              byte = 'n'
	DataRow             byte = 'D'
	CommandComplete     byte = 'C'
	EmptyQuery          byte = 'I'
	PortalSuspended     byte = 's'
	ErrorResponse       byte = 'E'
	NoticeResponse      byte = 'N'
	ReadyForQuery       byte = 'Z'
	ParameterStatus     byte = 'S'
	Notification        byte = 'A'
	CopyInResponse      byte = 'G'
	CopyOutResponse     byte = 'H'
	CopyBothResponse    byte = 'W'
	FunctionCallResult  byte = 'V'
	BackendKeyData      byte = 'K'
	Authentication      byte = 'R'
	NegotiateProtoVerMs byte = 'v'
)

// Body returns msg without its 5-byte header.
func Body(msg []byte) []byte { return msg[HeaderLen:] }

// CString splits b at its first NUL: the string before it and the rest after it. ok is false when
// there is no NUL.
func CString(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// Begin appends a message header of type typ with a zero length and returns the buffer and the
// offset of the header; Finish fills in the length.
func Begin(dst []byte, typ byte) ([]byte, int) {
	off := len(dst)
	return append(dst, typ, 0, 0, 0, 0), off
}

// Finish writes the length of the message that starts at off.
func Finish(dst []byte, off int) []byte {
	binary.BigEndian.PutUint32(dst[off+1:], uint32(len(dst)-off-1))
	return dst
}

// AppendCString appends s and a NUL.
func AppendCString(dst []byte, s string) []byte { return append(append(dst, s...), 0) }

// AppendReadyForQuery appends ReadyForQuery with transaction status st ('I', 'T' or 'E').
func AppendReadyForQuery(dst []byte, st byte) []byte {
	return append(dst, ReadyForQuery, 0, 0, 0, 5, st)
}

// AppendError appends an ErrorResponse with the given severity ("ERROR", "FATAL"), SQLSTATE and
// message.
func AppendError(dst []byte, severity, code, msg string) []byte {
	dst, off := Begin(dst, ErrorResponse)
	dst = append(dst, 'S')
	dst = AppendCString(dst, severity)
	dst = append(dst, 'V')
	dst = AppendCString(dst, severity)
	dst = append(dst, 'C')
	dst = AppendCString(dst, code)
	dst = append(dst, 'M')
	dst = AppendCString(dst, msg)
	dst = append(dst, 0)
	return Finish(dst, off)
}

// AppendErrorRenamed appends a copy of the ErrorResponse or NoticeResponse msg with the quoted
// name old replaced by the quoted name new in its text fields: Postgres names a prepared
// statement in its messages, and a client must see its own name for it, not the server's.
// The SQLSTATE and the fields that name Postgres' source are left alone.
func AppendErrorRenamed(dst, msg []byte, old, new string) []byte {
	dst, off := Begin(dst, msg[0])
	from, to := []byte(`"`+old+`"`), []byte(`"`+new+`"`)
	body := Body(msg)
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		v, rest, ok := CString(body[1:])
		if !ok {
			break
		}
		dst = append(dst, f)
		switch f {
		case 'C', 'F', 'L', 'R', 'S', 'V':
			dst = append(dst, v...)
		default:
			dst = append(dst, bytes.ReplaceAll(v, from, to)...)
		}
		dst = append(dst, 0)
		body = rest
	}
	dst = append(dst, 0)
	return Finish(dst, off)
}

// AppendParameterStatus appends a ParameterStatus message.
func AppendParameterStatus(dst []byte, name, value string) []byte {
	dst, off := Begin(dst, ParameterStatus)
	dst = AppendCString(dst, name)
	dst = AppendCString(dst, value)
	return Finish(dst, off)
}

// AppendQuery appends a simple Query message.
func AppendQuery(dst []byte, sql string) []byte {
	dst, off := Begin(dst, Query)
	dst = AppendCString(dst, sql)
	return Finish(dst, off)
}

// AppendRowDescription appends a RowDescription of text columns with the given names: what a
// locally answered SHOW needs.
func AppendRowDescription(dst []byte, names ...string) []byte {
	dst, off := Begin(dst, RowDescription)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(names)))
	for _, n := range names {
		dst = AppendCString(dst, n)
		dst = binary.BigEndian.AppendUint32(dst, 0)  // table OID
		dst = binary.BigEndian.AppendUint16(dst, 0)  // column number
		dst = binary.BigEndian.AppendUint32(dst, 25) // text
		dst = binary.BigEndian.AppendUint16(dst, 0xffff)
		dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // type modifier -1
		dst = binary.BigEndian.AppendUint16(dst, 0)          // text format
	}
	return Finish(dst, off)
}

// AppendDataRow appends a DataRow of text values.
func AppendDataRow(dst []byte, vals ...string) []byte {
	dst, off := Begin(dst, DataRow)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(vals)))
	for _, v := range vals {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	return Finish(dst, off)
}

// AppendCommandComplete appends a CommandComplete with the given tag.
func AppendCommandComplete(dst []byte, tag string) []byte {
	dst, off := Begin(dst, CommandComplete)
	dst = AppendCString(dst, tag)
	return Finish(dst, off)
}

// DataRowText returns the columns of a DataRow body as strings; null[i] is set for a NULL. A
// malformed body yields the columns read before the fault.
func DataRowText(body []byte) (cols []string, null []bool) {
	if len(body) < 2 {
		return nil, nil
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	cols, null = make([]string, 0, n), make([]bool, 0, n)
	for i := 0; i < n && len(body) >= 4; i++ {
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			cols, null = append(cols, ""), append(null, true)
			continue
		}
		if int(l) > len(body) {
			break
		}
		cols, null = append(cols, string(body[:l])), append(null, false)
		body = body[l:]
	}
	return cols, null
}

// AppendSimple appends a message with an empty body, such as ParseComplete or Sync.
func AppendSimple(dst []byte, typ byte) []byte { return append(dst, typ, 0, 0, 0, 4) }

// StatementRef reads the statement (or portal) name out of a Parse, Describe or Close body. For
// Describe and Close, kind is 'S' or 'P'; for Parse it is 'S'.
func StatementRef(typ byte, body []byte) (kind byte, name []byte, ok bool) {
	switch typ {
	case Parse:
		name, _, ok = CString(body)
		return 'S', name, ok
	case Describe, Close:
		if len(body) < 1 {
			return 0, nil, false
		}
		name, _, ok = CString(body[1:])
		return body[0], name, ok
	}
	return 0, nil, false
}

// BindStatement returns the statement name of a Bind body.
func BindStatement(body []byte) (name []byte, ok bool) {
	_, rest, ok := CString(body)
	if !ok {
		return nil, false
	}
	name, _, ok = CString(rest)
	return name, ok
}

// ParseQuery returns the query text and the parameter type section (count and OIDs, raw) of a
// Parse body.
func ParseQuery(body []byte) (name, query, paramTypes []byte, ok bool) {
	name, rest, ok := CString(body)
	if !ok {
		return nil, nil, nil, false
	}
	query, rest, ok = CString(rest)
	if !ok || len(rest) < 2 {
		return nil, nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+4*n {
		return nil, nil, nil, false
	}
	return name, query, rest, true
}

// AppendParse appends a Parse message naming the statement name.
func AppendParse(dst []byte, name string, query, paramTypes []byte) []byte {
	dst, off := Begin(dst, Parse)
	dst = AppendCString(dst, name)
	dst = append(append(dst, query...), 0)
	dst = append(dst, paramTypes...)
	return Finish(dst, off)
}

// AppendBindRenamed appends a copy of the Bind message body with its statement name replaced.
func AppendBindRenamed(dst []byte, body []byte, stmt string) []byte {
	portal, rest, _ := CString(body)
	_, rest, _ = CString(rest)
	dst, off := Begin(dst, Bind)
	dst = append(append(dst, portal...), 0)
	dst = AppendCString(dst, stmt)
	dst = append(dst, rest...)
	return Finish(dst, off)
}

// AppendStatementMsg appends a Describe or Close message for statement (kind 'S') or portal ('P').
func AppendStatementMsg(dst []byte, typ, kind byte, name string) []byte {
	dst, off := Begin(dst, typ)
	dst = append(dst, kind)
	dst = AppendCString(dst, name)
	return Finish(dst, off)
}

// CommandTag returns the tag of a CommandComplete message (without the NUL).
func CommandTag(msg []byte) []byte {
	tag, _, _ := CString(Body(msg))
	return tag
}

// ErrorFields returns the SQLSTATE and message of an ErrorResponse or NoticeResponse body.
func ErrorFields(body []byte) (code, msg string) {
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		v, rest, ok := CString(body[1:])
		if !ok {
			break
		}
		switch f {
		case 'C':
			code = string(v)
		case 'M':
			msg = string(v)
		}
		body = rest
	}
	return code, msg
}

// ErrorField returns the field f (such as 'C' for the SQLSTATE or 'R' for the routine) of an
// ErrorResponse or NoticeResponse body, or nil when the body has none. The result aliases body.
func ErrorField(body []byte, f byte) []byte {
	for len(body) > 0 && body[0] != 0 {
		g := body[0]
		v, rest, ok := CString(body[1:])
		if !ok {
			break
		}
		if g == f {
			return v
		}
		body = rest
	}
	return nil
}

// ErrorSeverity returns the severity of an ErrorResponse or NoticeResponse body: the field that
// is never translated (V, sent since Postgres 9.6) when present, else the localized one (S).
func ErrorSeverity(body []byte) string {
	var sev []byte
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		v, rest, ok := CString(body[1:])
		if !ok {
			break
		}
		switch f {
		case 'V':
			return string(v)
		case 'S':
			sev = v
		}
		body = rest
	}
	return string(sev)
}

// RowDescriptionNames returns the column names of a RowDescription body. A malformed body yields
// the names read before the fault.
func RowDescriptionNames(body []byte) []string {
	if len(body) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	names := make([]string, 0, n)
	for i := 0; i < n; i++ {
		name, rest, ok := CString(body)
		if !ok || len(rest) < 18 {
			break
		}
		names = append(names, string(name))
		body = rest[18:]
	}
	return names
}

// BindParams returns the parameter values of a Bind body (nil for NULL) and whether each is in
// binary format. ok is false for a malformed body.
func BindParams(body []byte) (vals [][]byte, binaryFmt []bool, ok bool) {
	_, rest, ok := CString(body) // portal
	if !ok {
		return nil, nil, false
	}
	if _, rest, ok = CString(rest); !ok { // statement
		return nil, nil, false
	}
	if len(rest) < 2 {
		return nil, nil, false
	}
	nf := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < 2*nf+2 {
		return nil, nil, false
	}
	fmts := rest[:2*nf]
	rest = rest[2*nf:]
	np := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	vals, binaryFmt = make([][]byte, np), make([]bool, np)
	for i := 0; i < np; i++ {
		if len(rest) < 4 {
			return nil, nil, false
		}
		l := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if l >= 0 {
			if int(l) > len(rest) {
				return nil, nil, false
			}
			vals[i] = rest[:l:l]
			rest = rest[l:]
		}
		switch {
		case nf == 1:
			binaryFmt[i] = binary.BigEndian.Uint16(fmts) == 1
		case nf > i:
			binaryFmt[i] = binary.BigEndian.Uint16(fmts[2*i:]) == 1
		}
	}
	return vals, binaryFmt, true
}

// AppendDataRowNullable appends a DataRow of text values, nil for NULL.
func AppendDataRowNullable(dst []byte, vals []*string) []byte {
	dst, off := Begin(dst, DataRow)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			dst = binary.BigEndian.AppendUint32(dst, 0xffffffff)
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(*v)))
		dst = append(dst, *v...)
	}
	return Finish(dst, off)
}

// BindResultFormats returns the result-column format codes of a Bind body as sent (none: all
// text; one: for every column). ok is false for a malformed body.
func BindResultFormats(body []byte) (fmts []int16, ok bool) {
	_, rest, ok := CString(body)
	if !ok {
		return nil, false
	}
	if _, rest, ok = CString(rest); !ok || len(rest) < 2 {
		return nil, false
	}
	nf := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < 2*nf+2 {
		return nil, false
	}
	rest = rest[2*nf:]
	np := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	for i := 0; i < np; i++ {
		if len(rest) < 4 {
			return nil, false
		}
		l := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if l > 0 {
			if int(l) > len(rest) {
				return nil, false
			}
			rest = rest[l:]
		}
	}
	if len(rest) < 2 {
		return nil, false
	}
	nr := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < 2*nr {
		return nil, false
	}
	fmts = make([]int16, nr)
	for i := range fmts {
		fmts[i] = int16(binary.BigEndian.Uint16(rest[2*i:]))
	}
	return fmts, true
}

// AppendBind appends a Bind message: the portal and statement names, one format code per
// parameter (binaryFmt[i]: 1, else 0), the parameter values (nil for NULL) and the result
// format codes as given.
func AppendBind(dst []byte, portal, stmt string, binaryFmt []bool, vals [][]byte, resultFmts []int16) []byte {
	dst, off := Begin(dst, Bind)
	dst = AppendCString(dst, portal)
	dst = AppendCString(dst, stmt)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(binaryFmt)))
	for _, b := range binaryFmt {
		var f uint16
		if b {
			f = 1
		}
		dst = binary.BigEndian.AppendUint16(dst, f)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			dst = binary.BigEndian.AppendUint32(dst, 0xffffffff)
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(resultFmts)))
	for _, f := range resultFmts {
		dst = binary.BigEndian.AppendUint16(dst, uint16(f))
	}
	return Finish(dst, off)
}

// AppendExecute appends an Execute message for portal with a row limit (0: none).
func AppendExecute(dst []byte, portal string, maxRows int32) []byte {
	dst, off := Begin(dst, Execute)
	dst = AppendCString(dst, portal)
	dst = binary.BigEndian.AppendUint32(dst, uint32(maxRows))
	return Finish(dst, off)
}
