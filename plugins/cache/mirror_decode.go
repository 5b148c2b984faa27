package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// This file turns pgoutput changes into the Redis changes of one transaction. It is pure: what
// must be read from Redis (unchanged TOAST values, the keys of a truncated table) is asked for by
// needs and handed back to commands, so every rule here is tested without servers.

// errSchemaChanged says a mirrored table's columns differ from what the mirror was loaded with:
// rows already in Redis may lack a new column's value (ALTER TABLE ... ADD COLUMN ... DEFAULT
// rewrites no rows in the WAL), so only a new snapshot is right.
var errSchemaChanged = errors.New("mirror: a mirrored table's columns changed")

// cell is one value column of a written row.
type cell struct {
	null bool
	text string
	// ref, when not empty, says the value was not sent: it is unchanged TOAST data, the value
	// this column has, before the transaction, in the row stored under the key ref.
	ref string
}

type opKind byte

const (
	opWrite    opKind = 'w'
	opDelete   opKind = 'd'
	opTruncate opKind = 't'
)

// rowOp is one change of a transaction, in stream order.
type rowOp struct {
	kind  opKind
	table *mirrorTable
	key   string // opWrite, opDelete
	cells []cell // opWrite: one per table.cols
}

// txnBuf collects one transaction's changes. pgoutput (protocol 1) sends a transaction only
// once it has committed, whole and in commit order, so everything between Begin and Commit is
// applied.
type txnBuf struct {
	ops []rowOp
	// rows is what the transaction has left under each key it wrote (nil: deleted), so a later
	// change of the same row in the transaction takes its unchanged TOAST values from there
	// rather than from Redis, which holds the state before the transaction.
	rows      map[string][]cell
	truncated map[*mirrorTable]bool
}

func newTxnBuf() *txnBuf {
	return &txnBuf{rows: map[string][]cell{}, truncated: map[*mirrorTable]bool{}}
}

func (tx *txnBuf) empty() bool { return len(tx.ops) == 0 }

// keyText encodes a row's key: each key column's text with `\` and `:` escaped by a `\`, joined
// by `:`, so that no two different keys encode alike; a NULL (possible only in a unique set that
// is not NOT NULL, which the mirror refuses) is `\N`, which no escaped text can be.
func keyText(vals []cell) string {
	var b strings.Builder
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(':')
		}
		if v.null {
			b.WriteString(`\N`)
			continue
		}
		for j := 0; j < len(v.text); j++ {
			if c := v.text[j]; c == '\\' || c == ':' {
				b.WriteByte('\\')
			}
			b.WriteByte(v.text[j])
		}
	}
	return b.String()
}

// tupleCell reads one column of a tuple. 'u' (unchanged TOAST) is returned as a cell with ref
// set to "?": the caller decides where the value comes from.
func tupleCell(td *pglogrepl.TupleData, at int) (cell, error) {
	if td == nil || at >= len(td.Columns) {
		return cell{}, fmt.Errorf("mirror: a tuple without column %d", at+1)
	}
	c := td.Columns[at]
	switch c.DataType {
	case pglogrepl.TupleDataTypeText:
		return cell{text: string(c.Data)}, nil
	case pglogrepl.TupleDataTypeNull:
		return cell{null: true}, nil
	case pglogrepl.TupleDataTypeToast:
		return cell{ref: "?"}, nil
	default:
		return cell{}, fmt.Errorf("mirror: column %d in format %q; want text", at+1, c.DataType)
	}
}

// keyOf builds the Redis key of the row in td. A key column pgoutput did not send (unchanged
// TOAST) is taken from old, the old key tuple Postgres logs in that case.
func (t *mirrorTable) keyOf(td, old *pglogrepl.TupleData) (string, error) {
	vals := make([]cell, len(t.keyAt))
	for i, at := range t.keyAt {
		c, err := tupleCell(td, at)
		if err == nil && c.ref != "" {
			if old == nil {
				return "", fmt.Errorf("mirror: %s: key column %s not sent and no old key", t.name, t.keyCols[i])
			}
			c, err = tupleCell(old, at)
		}
		if err != nil {
			return "", fmt.Errorf("mirror: %s: key column %s: %w", t.name, t.keyCols[i], err)
		}
		vals[i] = c
	}
	return t.ns + keyText(vals), nil
}

// current is a column's value for the row under key as this transaction has left it: from an
// earlier change in the transaction, or else a reference to Redis's state before it.
func (tx *txnBuf) current(t *mirrorTable, key string, i int) (cell, error) {
	if cells, ok := tx.rows[key]; ok {
		if cells == nil {
			return cell{}, fmt.Errorf("mirror: %s: unchanged TOAST value of %s, which this transaction deleted", t.name, key)
		}
		return cells[i], nil
	}
	if tx.truncated[t] {
		return cell{}, fmt.Errorf("mirror: %s: unchanged TOAST value of %s after a TRUNCATE", t.name, key)
	}
	return cell{ref: key}, nil
}

func (tx *txnBuf) write(t *mirrorTable, key string, cells []cell) {
	tx.ops = append(tx.ops, rowOp{kind: opWrite, table: t, key: key, cells: cells})
	tx.rows[key] = cells
}

func (tx *txnBuf) remove(t *mirrorTable, key string) {
	tx.ops = append(tx.ops, rowOp{kind: opDelete, table: t, key: key})
	tx.rows[key] = nil
}

// insert records an INSERT (or a row the snapshot read: the same thing).
func (tx *txnBuf) insert(t *mirrorTable, td *pglogrepl.TupleData) error {
	key, err := t.keyOf(td, nil)
	if err != nil {
		return err
	}
	cells := make([]cell, len(t.colAt))
	for i, at := range t.colAt {
		c, err := tupleCell(td, at)
		if err != nil {
			return fmt.Errorf("mirror: %s: insert: %w", t.name, err)
		}
		if c.ref != "" {
			return fmt.Errorf("mirror: %s: insert: column %s not sent", t.name, t.cols[i])
		}
		cells[i] = c
	}
	tx.write(t, key, cells)
	return nil
}

// update records an UPDATE. An UPDATE that changes the key deletes the old key's entry; Postgres
// sends the old key (REPLICA IDENTITY DEFAULT or USING INDEX: 'K', also when a key column is
// stored out of line) or the old row (FULL: 'O') whenever the key may have changed. Unchanged
// TOAST values come from the old tuple when it holds them, else from the row as it was.
func (tx *txnBuf) update(t *mirrorTable, m *pglogrepl.UpdateMessage) error {
	newKey, err := t.keyOf(m.NewTuple, m.OldTuple)
	if err != nil {
		return err
	}
	oldKey := newKey
	if m.OldTuple != nil {
		if oldKey, err = t.keyOf(m.OldTuple, nil); err != nil {
			return err
		}
	}
	cells := make([]cell, len(t.colAt))
	for i, at := range t.colAt {
		c, err := tupleCell(m.NewTuple, at)
		if err != nil {
			return fmt.Errorf("mirror: %s: update: %w", t.name, err)
		}
		if c.ref != "" && m.OldTuple != nil {
			// The old row (FULL) or old key ('K': its other columns are NULL) holds the value
			// inline when it holds it at all.
			if oc, err := tupleCell(m.OldTuple, at); err == nil && oc.ref == "" && !oc.null {
				c = oc
			}
		}
		if c.ref != "" {
			if c, err = tx.current(t, oldKey, i); err != nil {
				return err
			}
		}
		cells[i] = c
	}
	if oldKey != newKey {
		tx.remove(t, oldKey)
	}
	tx.write(t, newKey, cells)
	return nil
}

// delete records a DELETE: the old key ('K') or old row ('O') names the row.
func (tx *txnBuf) delete(t *mirrorTable, m *pglogrepl.DeleteMessage) error {
	key, err := t.keyOf(m.OldTuple, nil)
	if err != nil {
		return err
	}
	tx.remove(t, key)
	return nil
}

// truncate records a TRUNCATE of t: every key of the table goes, those Redis has before the
// transaction and those the transaction wrote before it.
func (tx *txnBuf) truncate(t *mirrorTable) {
	tx.ops = append(tx.ops, rowOp{kind: opTruncate, table: t})
	for k := range tx.rows {
		if strings.HasPrefix(k, t.ns) {
			delete(tx.rows, k)
		}
	}
	tx.truncated[t] = true
}

// refNeed is what commands needs from one row in Redis: the values of some columns.
type refNeed struct {
	table *mirrorTable
	cols  []int
}

// inPlace says, for each operation, whether it is a hash write that leaves its unsent columns
// where they are: only when the key still holds its state from before the transaction when
// the write runs (nothing earlier in the transaction unlinked it: a DELETE, a write of the
// whole hash, a key that moved away and back).
func (tx *txnBuf) inPlace() []bool {
	out := make([]bool, len(tx.ops))
	unlinked := map[string]bool{}
	for i, op := range tx.ops {
		switch op.kind {
		case opDelete:
			unlinked[op.key] = true
		case opWrite:
			if op.table.json || unlinked[op.key] {
				unlinked[op.key] = true
				continue
			}
			for _, c := range op.cells {
				if c.ref == op.key {
					out[i] = true
				}
			}
			if !out[i] {
				unlinked[op.key] = true // written whole: it is unlinked first
			}
		}
		// A TRUNCATE unlinks every key of its table, but no unsent value can refer to the
		// state before it (current refuses), so it needs no mark here.
	}
	return out
}

// needs returns what must be read from Redis, as it is before the transaction, to apply it: the
// rows whose unchanged TOAST values it copies (by key), and the tables it truncates.
func (tx *txnBuf) needs() (rows map[string]*refNeed, truncated []*mirrorTable) {
	rows = map[string]*refNeed{}
	inPlace := tx.inPlace()
	for j, op := range tx.ops {
		switch op.kind {
		case opTruncate:
			if !slices.Contains(truncated, op.table) {
				truncated = append(truncated, op.table)
			}
		case opWrite:
			for i, c := range op.cells {
				if c.ref == "" || (inPlace[j] && c.ref == op.key) {
					continue
				}
				n := rows[c.ref]
				if n == nil {
					n = &refNeed{table: op.table}
					rows[c.ref] = n
				}
				if !slices.Contains(n.cols, i) {
					n.cols = append(n.cols, i)
				}
			}
		}
	}
	return rows, truncated
}

// preState is what needs asked for, read from Redis: values[key][column index], and the keys
// each truncated table had.
type preState struct {
	values map[string]map[int]string
	keys   map[*mirrorTable][]string
}

// unlinkBatch bounds the keys of one UNLINK in the apply script (Lua's unpack has a limit).
const unlinkBatch = 1000

// commands turns the transaction into the apply script's operations (see applyScript): "H" key
// replace nset field value... ndel field... writes a hash, "S" key value a JSON string, "U" n
// key... unlinks keys.
func (tx *txnBuf) commands(pre preState) ([]string, error) {
	var args []string
	written := map[*mirrorTable][]string{} // keys written so far, for a later TRUNCATE
	inPlace := tx.inPlace()
	for j, op := range tx.ops {
		switch op.kind {
		case opDelete:
			args = append(args, "U", "1", op.key)
		case opTruncate:
			keys := append(append([]string(nil), pre.keys[op.table]...), written[op.table]...)
			written[op.table] = nil
			for len(keys) > 0 {
				n := min(len(keys), unlinkBatch)
				args = append(args, "U", strconv.Itoa(n))
				args = append(args, keys[:n]...)
				keys = keys[n:]
			}
		case opWrite:
			written[op.table] = append(written[op.table], op.key)
			a, err := writeArgs(op, inPlace[j], pre)
			if err != nil {
				return nil, err
			}
			args = append(args, a...)
		}
	}
	return args, nil
}

// errMirrorInconsistent says Redis lacks a value the stream says is there: the mirror is not
// what it should be, and only a new snapshot can fix it.
var errMirrorInconsistent = errors.New("mirror: Redis lacks a row the stream changes")

// writeArgs encodes one row write. A hash written in place (see inPlace) gets HSET of what was
// sent and HDEL of what became NULL; any other row is written whole.
func writeArgs(op rowOp, partial bool, pre preState) ([]string, error) {
	t := op.table
	vals := make([]cell, len(op.cells))
	for i, c := range op.cells {
		if c.ref != "" {
			if partial && c.ref == op.key {
				vals[i] = c
				continue
			}
			v, ok := pre.values[c.ref][i]
			if !ok {
				return nil, fmt.Errorf("%w: %s column %s of %s", errMirrorInconsistent, t.name, t.cols[i], c.ref)
			}
			c = cell{text: v}
		}
		vals[i] = c
	}
	if t.json {
		return []string{"S", op.key, jsonRow(t.cols, vals)}, nil
	}
	replace := "1"
	if partial {
		replace = "0"
	}
	var set, del []string
	for i, v := range vals {
		switch {
		case v.ref != "":
		case v.null:
			del = append(del, t.cols[i])
		default:
			set = append(set, t.cols[i], v.text)
		}
	}
	if !partial {
		del = nil // the hash is replaced: a NULL is simply not there
	}
	args := []string{"H", op.key, replace, strconv.Itoa(len(set) / 2)}
	args = append(args, set...)
	args = append(args, strconv.Itoa(len(del)))
	return append(args, del...), nil
}

// jsonRow encodes a row as a JSON object of its columns, in table order: text values as
// strings, NULL as null.
func jsonRow(cols []string, vals []cell) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		_ = enc.Encode(c) // a string always encodes
		b.Truncate(b.Len() - 1)
		b.WriteByte(':')
		if vals[i].null {
			b.WriteString("null")
			continue
		}
		_ = enc.Encode(vals[i].text)
		b.Truncate(b.Len() - 1) // Encode ends with a newline
	}
	b.WriteByte('}')
	return b.String()
}

// jsonColumns reads back the columns of a JSON row (for unchanged TOAST values).
func jsonColumns(s string) (map[string]*string, error) {
	var m map[string]*string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("mirror: a JSON row that does not decode: %w", err)
	}
	return m, nil
}
