package admin

import (
	"encoding/binary"
	"strconv"

	"github.com/sluicepg/sluice/internal/wire"
)

// Type OIDs of the console's columns: text for names, int8 for counts, as PgBouncer does.
const (
	oidText = 25
	oidInt8 = 20
)

// column is one column of a result: its name and type.
type column struct {
	name string
	oid  uint32
}

func text(name string) column { return column{name, oidText} }
func num(name string) column  { return column{name, oidInt8} }

// result builds one command's reply: RowDescription, DataRows and CommandComplete, appended to
// a byte slice that the console writes whole.
type result struct {
	b    []byte
	cols []column
}

// header appends the RowDescription of cols.
func (r *result) header(cols ...column) {
	r.cols = cols
	b, off := wire.Begin(r.b, wire.RowDescription)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = wire.AppendCString(b, c.name)
		b = binary.BigEndian.AppendUint32(b, 0) // table OID
		b = binary.BigEndian.AppendUint16(b, 0) // column number
		b = binary.BigEndian.AppendUint32(b, c.oid)
		size := int16(-1)
		if c.oid == oidInt8 {
			size = 8
		}
		b = binary.BigEndian.AppendUint16(b, uint16(size))
		b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF) // type modifier -1
		b = binary.BigEndian.AppendUint16(b, 0)          // text format
	}
	r.b = wire.Finish(b, off)
}

// nullValue is the type of null.
type nullValue struct{}

// null is a NULL value in a row.
var null = nullValue{}

// row appends a DataRow. Each value is a string, an integer type, a bool (1 or 0) or null;
// there must be one per column of the header.
func (r *result) row(vals ...any) {
	if len(vals) != len(r.cols) {
		panic("admin: row has " + strconv.Itoa(len(vals)) + " values for " + strconv.Itoa(len(r.cols)) + " columns")
	}
	b, off := wire.Begin(r.b, wire.DataRow)
	b = binary.BigEndian.AppendUint16(b, uint16(len(vals)))
	for _, v := range vals {
		if v == null {
			b = append(b, 0xFF, 0xFF, 0xFF, 0xFF) // length -1: NULL
			continue
		}
		lenAt := len(b)
		b = append(b, 0, 0, 0, 0)
		switch v := v.(type) {
		case string:
			b = append(b, v...)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case uint32:
			b = strconv.AppendUint(b, uint64(v), 10)
		case bool:
			if v {
				b = append(b, '1')
			} else {
				b = append(b, '0')
			}
		default:
			panic("admin: unsupported value type")
		}
		binary.BigEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
	}
	r.b = wire.Finish(b, off)
}

// complete appends CommandComplete with tag.
func (r *result) complete(tag string) {
	b, off := wire.Begin(r.b, wire.CommandComplete)
	b = wire.AppendCString(b, tag)
	r.b = wire.Finish(b, off)
}

// notice appends a NoticeResponse (severity NOTICE) with a message and a detail.
func (r *result) notice(msg, detail string) {
	b, off := wire.Begin(r.b, wire.NoticeResponse)
	b = append(b, 'S')
	b = wire.AppendCString(b, "NOTICE")
	b = append(b, 'V')
	b = wire.AppendCString(b, "NOTICE")
	b = append(b, 'C')
	b = wire.AppendCString(b, "00000")
	b = append(b, 'M')
	b = wire.AppendCString(b, msg)
	if detail != "" {
		b = append(b, 'D')
		b = wire.AppendCString(b, detail)
	}
	b = append(b, 0)
	r.b = wire.Finish(b, off)
}
