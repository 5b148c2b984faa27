package backend

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/sluicepg/sluice/internal/wire"
)

// QueryRows runs sql with the extended protocol, binding args as text parameters $1, $2, ...
// (never pasted into the text), and returns the rows, each column's value copied (nil for NULL).
// The first error the server reported is returned as a *ServerError. Only call it on a server
// nobody else is reading; it is meant for small results such as auth_query's.
func (s *ServerConn) QueryRows(sql string, args ...string) ([][][]byte, error) {
	b, off := wire.Begin(nil, wire.Parse)
	b = append(b, 0) // unnamed statement
	b = wire.AppendCString(b, sql)
	b = append(b, 0, 0) // no parameter types: the server infers them
	b = wire.Finish(b, off)
	b, off = wire.Begin(b, wire.Bind)
	b = append(b, 0, 0) // unnamed portal, unnamed statement
	b = append(b, 0, 0) // all parameters in text format
	b = binary.BigEndian.AppendUint16(b, uint16(len(args)))
	for _, a := range args {
		b = binary.BigEndian.AppendUint32(b, uint32(len(a)))
		b = append(b, a...)
	}
	b = append(b, 0, 0) // all results in text format
	b = wire.Finish(b, off)
	b, off = wire.Begin(b, wire.Execute)
	b = append(b, 0, 0, 0, 0, 0) // unnamed portal, no row limit
	b = wire.Finish(b, off)
	b = wire.AppendSimple(b, wire.Sync)
	if _, err := s.W.Write(b); err != nil {
		s.Broken = true
		return nil, err
	}
	if err := s.W.Flush(); err != nil {
		s.Broken = true
		return nil, err
	}
	var rows [][][]byte
	var first error
	for {
		msg, err := s.R.Message()
		if err != nil {
			s.Broken = true
			return nil, fmt.Errorf("read from %s: %w", s.addr, err)
		}
		switch msg[0] {
		case wire.DataRow:
			if first == nil {
				row, err := decodeDataRow(wire.Body(msg))
				if err != nil {
					s.Broken = true
					s.R.Discard(len(msg))
					return nil, fmt.Errorf("read from %s: %w", s.addr, err)
				}
				rows = append(rows, row)
			}
		case wire.ErrorResponse:
			if first == nil {
				code, m := wire.ErrorFields(wire.Body(msg))
				first = &ServerError{Code: code, Message: m}
			}
		case wire.ParameterStatus:
			s.NoteParameter(wire.Body(msg))
		case wire.ReadyForQuery:
			s.R.Discard(len(msg))
			if first != nil {
				return nil, first
			}
			return rows, nil
		}
		s.R.Discard(len(msg))
	}
}

// decodeDataRow copies the column values of a DataRow body.
func decodeDataRow(body []byte) ([][]byte, error) {
	if len(body) < 2 {
		return nil, fmt.Errorf("malformed DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	row := make([][]byte, n)
	for i := range row {
		if len(body) < 4 {
			return nil, fmt.Errorf("malformed DataRow")
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			continue
		}
		if int(l) > len(body) {
			return nil, fmt.Errorf("malformed DataRow")
		}
		row[i] = slices.Clone(body[:l])
		body = body[l:]
	}
	return row, nil
}
