package shard

import (
	"bytes"
	"encoding/binary"
)

// arrayShards returns the shards of the keys in parameter i, an array (key = ANY($1)): in text
// format as Postgres' array_in reads it ({1,2,"3"}, nested braces, NULL elements, an optional
// dimensions prefix), or in binary as array_send writes it. NULL elements, and a NULL array,
// match no row. ok is false when the parameter is missing, or it or an element cannot be read.
func arrayShards(s Sharder, p Params, i int) (set Set, ok bool) {
	if i < 0 || i >= len(p.Values) {
		return set, false
	}
	v := p.Values[i]
	if v == nil {
		return set, true
	}
	add := func(elem []byte, binary bool) bool {
		var sh int
		var err error
		if binary {
			sh, err = s.ShardBinary(elem)
		} else {
			sh, err = s.Shard(elem)
		}
		if err != nil {
			return false
		}
		set.Add(sh)
		return true
	}
	if p.format(i) == 1 {
		return set, binaryArray(v, func(e []byte) bool { return e == nil || add(e, true) })
	}
	return set, textArray(v, func(e []byte) bool { return e == nil || add(e, false) })
}

// binaryArray calls f for each element of an array in binary format (nil for NULL), and
// reports whether the array was well formed and f accepted every element.
func binaryArray(b []byte, f func([]byte) bool) bool {
	if len(b) < 12 {
		return false
	}
	ndim := int(int32(binary.BigEndian.Uint32(b)))
	if ndim < 0 || ndim > 6 || len(b) < 12+8*ndim {
		return false
	}
	n := 1
	if ndim == 0 {
		n = 0
	}
	for d := range ndim {
		dim := int(int32(binary.BigEndian.Uint32(b[12+8*d:])))
		if dim < 0 || dim > 1<<20 {
			return false
		}
		n *= dim
	}
	b = b[12+8*ndim:]
	for range n {
		if len(b) < 4 {
			return false
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			if !f(nil) {
				return false
			}
			continue
		}
		if l > len(b) || !f(b[:l]) {
			return false
		}
		b = b[l:]
	}
	return len(b) == 0
}

// textArray calls f for each element of an array in text format (nil for NULL), and reports
// whether the array was well formed and f accepted every element. Elements are separated by
// commas (the delimiter of every type a key can have), may be quoted ("a,b", with backslash
// escapes) or not (surrounding spaces trimmed, backslash escapes), and NULL unquoted is NULL.
func textArray(b []byte, f func([]byte) bool) bool {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		// Dimensions: [1:3]={...}
		i := bytes.IndexByte(b, '=')
		if i < 0 {
			return false
		}
		b = bytes.TrimSpace(b[i+1:])
	}
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	depth := 0
	var elem []byte
	quoted, inElem := false, false
	emit := func() bool {
		if !inElem {
			return true
		}
		e := elem
		if !quoted {
			e = bytes.TrimSpace(e)
			if bytes.EqualFold(e, []byte("NULL")) {
				e = nil
			}
		}
		inElem, quoted, elem = false, false, elem[:0]
		return f(e)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '{':
			if inElem {
				return false
			}
			depth++
		case c == '}':
			if !emit() {
				return false
			}
			depth--
			if depth == 0 {
				return len(bytes.TrimSpace(b[i+1:])) == 0
			}
		case c == ',':
			if !emit() {
				return false
			}
		case c == '"':
			if inElem && len(bytes.TrimSpace(elem)) > 0 {
				return false
			}
			inElem, quoted = true, true
			elem = elem[:0]
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' && i+1 < len(b) {
					i++
				}
				elem = append(elem, b[i])
			}
			if i == len(b) {
				return false
			}
		case c == '\\' && i+1 < len(b):
			i++
			inElem = true
			elem = append(elem, b[i])
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inElem && !quoted {
				elem = append(elem, c)
			}
		default:
			if quoted {
				return false // text after a quoted element
			}
			inElem = true
			elem = append(elem, c)
		}
	}
	return false
}
