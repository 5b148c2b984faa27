package merge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
)

// Message types of a reply.
const (
	msgRowDescription  = 'T'
	msgDataRow         = 'D'
	msgCommandComplete = 'C'
)

// ErrMalformed is wrapped by the errors of replies that are not well-formed messages.
var ErrMalformed = errors.New("malformed reply")

// field is one column of a RowDescription.
type field struct {
	name   string
	oid    uint32
	format uint16
	raw    []byte // the field's bytes in the message
}

// reply is one shard's reply, split up. Slices point into the caller's buffer.
type reply struct {
	desc []byte // the RowDescription message, nil when none
	rows [][]byte
	tag  []byte
}

// splitReply splits one shard's messages (RowDescription, DataRows, CommandComplete, each with
// its 5-byte header, back to back). Other message types are ignored.
func splitReply(b []byte) (reply, error) {
	var r reply
	for len(b) > 0 {
		if len(b) < 5 {
			return r, fmt.Errorf("%w: a message header is cut short", ErrMalformed)
		}
		n := 1 + int(binary.BigEndian.Uint32(b[1:5]))
		if n < 5 || n > len(b) {
			return r, fmt.Errorf("%w: a message length is out of bounds", ErrMalformed)
		}
		m := b[:n]
		switch m[0] {
		case msgRowDescription:
			if r.desc == nil {
				r.desc = m
			}
		case msgDataRow:
			r.rows = append(r.rows, m)
		case msgCommandComplete:
			if i := bytes.IndexByte(m[5:], 0); i >= 0 {
				r.tag = m[5 : 5+i]
			}
		}
		b = b[n:]
	}
	return r, nil
}

func parseFields(msg []byte) ([]field, error) {
	body := msg[5:]
	if len(body) < 2 {
		return nil, fmt.Errorf("%w: RowDescription", ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	out := make([]field, n)
	for i := range out {
		j := bytes.IndexByte(body, 0)
		if j < 0 || len(body) < j+1+18 {
			return nil, fmt.Errorf("%w: RowDescription", ErrMalformed)
		}
		f := body[j+1:]
		out[i] = field{
			name:   string(body[:j]),
			oid:    binary.BigEndian.Uint32(f[6:10]),
			format: binary.BigEndian.Uint16(f[16:18]),
			raw:    body[:j+1+18],
		}
		body = body[j+1+18:]
	}
	return out, nil
}

// rowValues splits a DataRow into its values (nil for NULL), appending to dst.
func rowValues(dst [][]byte, msg []byte) ([][]byte, error) {
	body := msg[5:]
	if len(body) < 2 {
		return nil, fmt.Errorf("%w: DataRow", ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	for range n {
		if len(body) < 4 {
			return nil, fmt.Errorf("%w: DataRow", ErrMalformed)
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			dst = append(dst, nil)
			continue
		}
		if int(l) > len(body) {
			return nil, fmt.Errorf("%w: DataRow", ErrMalformed)
		}
		dst = append(dst, body[:l:l])
		body = body[l:]
	}
	return dst, nil
}

func appendDataRow(dst []byte, vals [][]byte) []byte {
	off := len(dst)
	dst = append(dst, msgDataRow, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			dst = binary.BigEndian.AppendUint32(dst, 0xffffffff)
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	binary.BigEndian.PutUint32(dst[off+1:], uint32(len(dst)-off-1))
	return dst
}

func appendRowDescription(dst []byte, fields []field) []byte {
	off := len(dst)
	dst = append(dst, msgRowDescription, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(fields)))
	for _, f := range fields {
		dst = append(dst, f.raw...)
	}
	binary.BigEndian.PutUint32(dst[off+1:], uint32(len(dst)-off-1))
	return dst
}

// AppendCommandComplete appends a CommandComplete message with tag.
func AppendCommandComplete(dst []byte, tag string) []byte {
	off := len(dst)
	dst = append(dst, msgCommandComplete, 0, 0, 0, 0)
	dst = append(dst, tag...)
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[off+1:], uint32(len(dst)-off-1))
	return dst
}

// Merge merges the shards' replies to the plan's Query into the reply one database holding
// every shard's rows would give, appended to dst: a RowDescription, the DataRows and a
// CommandComplete. Each reply is one shard's messages for the statement (RowDescription,
// DataRows, CommandComplete, back to back, each with its header); dst and the replies must
// not overlap. The error is an *UnsupportedError for values it cannot compare or combine (a
// type it does not know, a date in a DateStyle other than ISO), or wraps ErrMalformed.
func (p *Plan) Merge(dst []byte, replies [][]byte) ([]byte, error) {
	rs := make([]reply, len(replies))
	var desc []byte
	total := 0
	for i, b := range replies {
		r, err := splitReply(b)
		if err != nil {
			return dst, err
		}
		rs[i] = r
		if desc == nil {
			desc = r.desc
		}
		total += len(r.rows)
	}
	if desc == nil {
		// No rows described (a statement that returns none): pass the first tag.
		tag := "SELECT 0"
		if len(rs) > 0 && rs[0].tag != nil {
			tag = string(rs[0].tag)
		}
		return AppendCommandComplete(dst, tag), nil
	}
	fields, err := parseFields(desc)
	if err != nil {
		return dst, err
	}
	for _, f := range fields {
		if f.format > 1 {
			return dst, fmt.Errorf("%w: result format %d", ErrMalformed, f.format)
		}
	}
	if p.hidden > len(fields) || (p.agg && len(p.cols)+p.hidden != len(fields)) {
		return dst, fmt.Errorf("%w: %d columns, the plan expects %d", ErrMalformed, len(fields), len(p.cols)+p.hidden)
	}
	keys, err := p.sortColumns(fields)
	if err != nil {
		return dst, err
	}
	visible := fields[:len(fields)-p.hidden]

	var rows [][][]byte // values of each row, visible columns and hidden ones
	var raw [][]byte    // the DataRow messages, when rows are passed as they are
	if p.agg {
		rows, err = p.aggregate(rs, fields)
		if err != nil {
			return dst, err
		}
	} else {
		rows = make([][][]byte, 0, total)
		raw = make([][]byte, 0, total)
		for _, r := range rs {
			for _, m := range r.rows {
				vals, err := rowValues(nil, m)
				if err != nil {
					return dst, err
				}
				if len(vals) != len(fields) {
					return dst, fmt.Errorf("%w: a DataRow of %d columns under %d", ErrMalformed, len(vals), len(fields))
				}
				rows = append(rows, vals)
				raw = append(raw, m)
			}
		}
	}
	if len(keys) > 0 {
		idx := make([]int, len(rows))
		for i := range idx {
			idx[i] = i
		}
		var cerr error
		slices.SortStableFunc(idx, func(a, b int) int {
			c, err := compareRows(rows[a], rows[b], keys)
			if err != nil && cerr == nil {
				cerr = err
			}
			return c
		})
		if cerr != nil {
			return dst, unsupported("ORDER BY on these values", cerr.Error())
		}
		sorted := make([][][]byte, len(rows))
		var sortedRaw [][]byte
		if raw != nil {
			sortedRaw = make([][]byte, len(rows))
		}
		for i, j := range idx {
			sorted[i] = rows[j]
			if raw != nil {
				sortedRaw[i] = raw[j]
			}
		}
		rows, raw = sorted, sortedRaw
	}
	lo, hi := window(len(rows), p.offset, p.limit)
	if p.hidden == 0 {
		dst = append(dst, desc...)
	} else {
		dst = appendRowDescription(dst, visible)
	}
	for i := lo; i < hi; i++ {
		if raw != nil && p.hidden == 0 {
			dst = append(dst, raw[i]...)
		} else {
			dst = appendDataRow(dst, rows[i][:len(visible)])
		}
	}
	return AppendCommandComplete(dst, "SELECT "+strconv.Itoa(hi-lo)), nil
}

// window returns the rows [lo, hi) that OFFSET and LIMIT keep of n.
func window(n int, offset, limit int64) (int, int) {
	lo := n
	if offset < int64(n) {
		lo = int(offset)
	}
	hi := n
	if limit >= 0 && limit < int64(n-lo) {
		hi = lo + int(limit)
	}
	return lo, hi
}

// resolvedKey is a sort key with its column and comparator.
type resolvedKey struct {
	sortKey
	cmp comparator
}

func (p *Plan) sortColumns(fields []field) ([]resolvedKey, error) {
	out := make([]resolvedKey, 0, len(p.sort))
	visible := len(fields) - p.hidden
	for _, k := range p.sort {
		col := k.col
		if col < 0 {
			for i, f := range fields[:visible] {
				if f.name == k.name {
					if col >= 0 {
						return nil, unsupported("ORDER BY "+k.name, "several result columns have that name")
					}
					col = i
				}
			}
			if col < 0 {
				return nil, unsupported("ORDER BY "+k.name, "it is not a column of the result: add it to the select list")
			}
		}
		if col >= visible {
			return nil, unsupported("ORDER BY position "+strconv.Itoa(col+1), "the result has "+strconv.Itoa(visible)+" columns")
		}
		c := comparatorFor(fields[col].oid, fields[col].format)
		if c == nil {
			return nil, cannotCompare("ORDER BY "+fields[col].name, fields[col])
		}
		k.col = col
		out = append(out, resolvedKey{k, c})
	}
	return out, nil
}

func compareRows(a, b [][]byte, keys []resolvedKey) (int, error) {
	for _, k := range keys {
		x, y := a[k.col], b[k.col]
		var c int
		switch {
		case x == nil && y == nil:
			continue
		case x == nil:
			c = 1
			if k.nullsFirst {
				c = -1
			}
			return c, nil
		case y == nil:
			c = -1
			if k.nullsFirst {
				c = 1
			}
			return c, nil
		}
		c, err := k.cmp(x, y)
		if err != nil {
			return 0, err
		}
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c, nil
		}
	}
	return 0, nil
}

// group is the merged state of one GROUP BY group.
type group struct {
	vals [][]byte // the first row's values; aggregate columns are filled in at the end
	accs []acc
}

// acc accumulates one aggregate column of a group.
type acc struct {
	set   bool // a non-NULL value was seen
	i     big.Int
	d     decimal
	f     float64
	count int64
	v     []byte // min, max
}

func (p *Plan) aggregate(rs []reply, fields []field) ([][][]byte, error) {
	var groupCols []int
	for i, c := range p.cols {
		if c.kind == colValue {
			groupCols = append(groupCols, i)
		}
	}
	index := map[string]int{}
	var groups []*group
	var key []byte
	var vals [][]byte
	var err error
	for _, r := range rs {
		for _, m := range r.rows {
			vals, err = rowValues(vals[:0], m)
			if err != nil {
				return nil, err
			}
			if len(vals) != len(fields) {
				return nil, fmt.Errorf("%w: a DataRow of %d columns under %d", ErrMalformed, len(vals), len(fields))
			}
			// Groups are told apart by the text of their value columns (constants and
			// values fixed by the group key are the same in every row of a group).
			key = key[:0]
			for _, c := range groupCols {
				if vals[c] == nil {
					key = append(key, 0)
					continue
				}
				key = append(key, 1)
				key = binary.BigEndian.AppendUint32(key, uint32(len(vals[c])))
				key = append(key, vals[c]...)
			}
			gi, ok := index[string(key)]
			if !ok {
				g := &group{vals: make([][]byte, len(vals)), accs: make([]acc, len(p.cols))}
				for i, v := range vals {
					if v != nil {
						g.vals[i] = bytes.Clone(v)
					}
				}
				gi = len(groups)
				index[string(key)] = gi
				groups = append(groups, g)
			}
			if err := p.accumulate(groups[gi], vals, fields); err != nil {
				return nil, err
			}
		}
	}
	out := make([][][]byte, len(groups))
	for i, g := range groups {
		for c, cp := range p.cols {
			if cp.kind == colValue {
				continue
			}
			v, err := finish(&g.accs[c], cp, fields, c)
			if err != nil {
				return nil, err
			}
			g.vals[c] = v
		}
		out[i] = g.vals
	}
	return out, nil
}

func (p *Plan) accumulate(g *group, vals [][]byte, fields []field) error {
	for c, cp := range p.cols {
		a := &g.accs[c]
		switch cp.kind {
		case colCount:
			n, err := readCount(vals[c], fields[c])
			if err != nil {
				return err
			}
			a.count += n
			a.set = true
		case colSum:
			if err := addSum(a, vals[c], fields[c]); err != nil {
				return err
			}
		case colMin, colMax:
			v := vals[c]
			if v == nil {
				continue
			}
			if !a.set {
				a.v, a.set = bytes.Clone(v), true
				continue
			}
			cmp := comparatorFor(fields[c].oid, fields[c].format)
			if cmp == nil {
				return cannotCompare(fields[c].name, fields[c])
			}
			r, err := cmp(v, a.v)
			if err != nil {
				return unsupported(fields[c].name, err.Error())
			}
			if (cp.kind == colMin && r < 0) || (cp.kind == colMax && r > 0) {
				a.v = append(a.v[:0], v...)
			}
		case colAvg:
			if err := addSum(a, vals[cp.sumCol], fields[cp.sumCol]); err != nil {
				return err
			}
			n, err := readCount(vals[cp.countCol], fields[cp.countCol])
			if err != nil {
				return err
			}
			a.count += n
		}
	}
	return nil
}

// cannotCompare is the error for values of a column sluice cannot compare.
func cannotCompare(what string, f field) *UnsupportedError {
	if f.format == 1 {
		return unsupported(what, "sluice cannot compare binary values of type OID "+strconv.FormatUint(uint64(f.oid), 10)+" across shards: ask for this column in text format")
	}
	return unsupported(what, "sluice cannot compare values of type OID "+strconv.FormatUint(uint64(f.oid), 10)+" across shards")
}

// readCount reads one shard's count() (a bigint) in the column's format.
func readCount(v []byte, f field) (int64, error) {
	if f.format == 1 {
		n, err := binaryInt(v)
		if err != nil {
			return 0, fmt.Errorf("%w: count: %v", ErrMalformed, err)
		}
		return n, nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: count %q", ErrMalformed, v)
	}
	return n, nil
}

// addSum adds one shard's sum (nil for NULL) of the column f, in f's format.
func addSum(a *acc, v []byte, f field) error {
	if v == nil {
		return nil
	}
	switch f.oid {
	case oidInt8, oidInt4, oidInt2:
		var x big.Int
		if f.format == 1 {
			n, err := binaryInt(v)
			if err != nil {
				return fmt.Errorf("%w: sum: %v", ErrMalformed, err)
			}
			x.SetInt64(n)
		} else if _, ok := x.SetString(string(v), 10); !ok {
			return fmt.Errorf("%w: sum %q", ErrMalformed, v)
		}
		a.i.Add(&a.i, &x)
	case oidNumeric:
		var d decimal
		var err error
		if f.format == 1 {
			d, err = decodeNumeric(v)
		} else {
			d, err = parseDecimal(v)
		}
		if err != nil {
			return err
		}
		if !a.set {
			a.d = d
		} else {
			a.d.add(&d)
		}
	case oidFloat4, oidFloat8:
		var x float64
		var err error
		if f.format == 1 {
			x, err = binaryFloat(v)
		} else {
			x, err = parseFloat(v)
		}
		if err != nil {
			return err
		}
		if f.oid == oidFloat4 {
			a.f = float64(float32(a.f) + float32(x))
		} else {
			a.f += x
		}
	default:
		return unsupported("sum() over "+f.name, "sluice adds integers, numeric, float4 and float8 only (type OID "+strconv.FormatUint(uint64(f.oid), 10)+")")
	}
	a.set = true
	return nil
}

// finish returns the merged value of aggregate column c, in the column's format.
func finish(a *acc, cp colPlan, fields []field, c int) ([]byte, error) {
	bin := fields[c].format == 1
	switch cp.kind {
	case colCount:
		if bin {
			return binary.BigEndian.AppendUint64(nil, uint64(a.count)), nil
		}
		return strconv.AppendInt(nil, a.count, 10), nil
	case colMin, colMax:
		if !a.set {
			return nil, nil
		}
		return a.v, nil
	case colSum:
		if !a.set {
			return nil, nil
		}
		if bin {
			return sumBinary(a, fields[c])
		}
		return sumText(a, fields[c].oid), nil
	case colAvg:
		if !a.set || a.count == 0 {
			return nil, nil
		}
		switch fields[c].oid {
		case oidNumeric:
			var sum decimal
			switch fields[cp.sumCol].oid {
			case oidNumeric:
				sum = a.d
			default:
				sum.v.Set(&a.i)
			}
			q := avgOf(&sum, a.count)
			if bin {
				return appendNumeric(nil, &q), nil
			}
			return []byte(q.String()), nil
		case oidFloat8:
			if bin {
				return binary.BigEndian.AppendUint64(nil, math.Float64bits(a.f/float64(a.count))), nil
			}
			return []byte(formatFloat(a.f/float64(a.count), 64)), nil
		}
		return nil, unsupported("avg() over "+fields[c].name, "sluice averages integers, numeric and floats only (type OID "+strconv.FormatUint(uint64(fields[c].oid), 10)+")")
	}
	return nil, nil
}

func sumText(a *acc, oid uint32) []byte {
	switch oid {
	case oidNumeric:
		return []byte(a.d.String())
	case oidFloat8:
		return []byte(formatFloat(a.f, 64))
	case oidFloat4:
		return []byte(formatFloat(a.f, 32))
	}
	return []byte(a.i.String())
}

// sumBinary returns a merged sum in binary format.
func sumBinary(a *acc, f field) ([]byte, error) {
	switch f.oid {
	case oidNumeric:
		return appendNumeric(nil, &a.d), nil
	case oidFloat8:
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(a.f)), nil
	case oidFloat4:
		return binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(a.f))), nil
	case oidInt8:
		if !a.i.IsInt64() {
			return nil, unsupported("sum() over "+f.name, "the sum is out of range for bigint")
		}
		return binary.BigEndian.AppendUint64(nil, uint64(a.i.Int64())), nil
	}
	return nil, unsupported("sum() over "+f.name, "sluice adds integers, numeric, float4 and float8 only (type OID "+strconv.FormatUint(uint64(f.oid), 10)+")")
}

// Concat merges the shards' replies to one statement that is not a planned Select (a write
// sent to several shards, with or without RETURNING): the first RowDescription, every shard's
// DataRows in shard order, and the command tags' row counts summed (see SumTags).
func Concat(dst []byte, replies [][]byte) ([]byte, error) {
	var desc []byte
	var tags [][]byte
	rs := make([]reply, len(replies))
	for i, b := range replies {
		r, err := splitReply(b)
		if err != nil {
			return dst, err
		}
		rs[i] = r
		if desc == nil {
			desc = r.desc
		}
		if r.tag != nil {
			tags = append(tags, r.tag)
		}
	}
	dst = append(dst, desc...)
	for _, r := range rs {
		for _, m := range r.rows {
			dst = append(dst, m...)
		}
	}
	if len(tags) == 0 {
		return dst, nil
	}
	return AppendCommandComplete(dst, SumTags(tags)), nil
}

// SumTags returns the command tag of a statement that ran on several shards: for tags that
// end in a row count ("INSERT 0 3", "UPDATE 2", "DELETE 1", "SELECT 4", "MERGE 1", "COPY 7"),
// the first tag with the counts of all summed; otherwise (DDL: "CREATE TABLE") the first tag.
func SumTags(tags [][]byte) string {
	if len(tags) == 0 {
		return ""
	}
	first := tags[0]
	i := bytes.LastIndexByte(first, ' ')
	if i < 0 {
		return string(first)
	}
	var sum int64
	for _, t := range tags {
		j := bytes.LastIndexByte(t, ' ')
		if j != i || !bytes.Equal(t[:j], first[:i]) {
			return string(first)
		}
		n, err := strconv.ParseInt(string(t[j+1:]), 10, 64)
		if err != nil {
			return string(first)
		}
		sum += n
	}
	return string(first[:i+1]) + strconv.FormatInt(sum, 10)
}

// Describe appends to dst the RowDescription the client gets for one shard's RowDescription
// of the plan's Query: the same, without the columns the plan added for avg.
func (p *Plan) Describe(dst, desc []byte) ([]byte, error) {
	if p.hidden == 0 {
		return append(dst, desc...), nil
	}
	fields, err := parseFields(desc)
	if err != nil {
		return dst, err
	}
	if p.hidden > len(fields) {
		return dst, fmt.Errorf("%w: %d columns, the plan adds %d", ErrMalformed, len(fields), p.hidden)
	}
	return appendRowDescription(dst, fields[:len(fields)-p.hidden]), nil
}

// Hidden returns the number of columns the plan's Query adds at the end of the select list
// (for avg), which the merged result leaves out.
func (p *Plan) Hidden() int { return p.hidden }
