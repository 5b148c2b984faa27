// Package shard holds the pure building blocks of sharding: the sharding functions (pgcat's
// pg_bigint_hash and sha1, and the same hash for uuid and text keys), finding the shards a
// statement touches from its parse tree and its Bind parameters (with an INSERT of several rows
// split by shard), and pgcat's comment hints (sharding_key_regex, shard_id_regex).
//
// pg_bigint_hash puts a key on the shard that Postgres' own hash partitioning puts it on: shard
// s of n holds the rows a table PARTITION BY HASH (key) keeps in its partition
// (MODULUS n, REMAINDER s). The tests prove it against a real Postgres.
//
// The package is pure: no network, no configuration globals, no logging. It is safe for
// concurrent use.
package shard

import (
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/sluicepg/sluice/internal/pgtext"
)

// Function is a sharding function: how a key's hash is computed.
type Function uint8

const (
	// PgBigintHash (pgcat's pg_bigint_hash, the default) is Postgres' hash partitioning: the
	// key's partition hash (HashInt8, HashUUID, HashText) modulo the shard count.
	PgBigintHash Function = iota
	// SHA1 (pgcat's sha1) is the SHA-1 of the key's text form, its last 8 hex digits read as a
	// number, modulo the shard count. pgcat applies it to bigint keys only, whose text form is
	// the decimal number; sluice extends it to uuid keys (the lower-case hyphenated form) and
	// text keys (the text's bytes).
	SHA1
)

// ParseFunction returns the Function named by the config's sharding_function: pg_bigint_hash
// or sha1 (pgcat also accepts PgBigintHash and Sha1).
func ParseFunction(s string) (Function, error) {
	switch s {
	case "pg_bigint_hash", "PgBigintHash":
		return PgBigintHash, nil
	case "sha1", "Sha1":
		return SHA1, nil
	}
	return 0, fmt.Errorf("unknown sharding function %q: want pg_bigint_hash or sha1", s)
}

func (f Function) String() string {
	if f == SHA1 {
		return "sha1"
	}
	return "pg_bigint_hash"
}

// KeyType is the Postgres type of the sharding key column. It decides how a key's text or
// binary form is read and hashed.
type KeyType uint8

const (
	// Bigint keys (the default; int2 and int4 columns hash the same for the same value).
	Bigint KeyType = iota
	// UUID keys.
	UUID
	// Text keys: text and varchar columns under a deterministic collation.
	Text
)

// ParseKeyType returns the KeyType a sharding_key_type names: bigint (also int8, int4,
// integer, int2, smallint), uuid, text (also varchar). The empty string is Bigint.
func ParseKeyType(s string) (KeyType, error) {
	switch s {
	case "", "bigint", "int8", "integer", "int", "int4", "smallint", "int2":
		return Bigint, nil
	case "uuid":
		return UUID, nil
	case "text", "varchar", "character varying":
		return Text, nil
	}
	return 0, fmt.Errorf("unknown sharding key type %q: want bigint, uuid or text", s)
}

func (t KeyType) String() string {
	switch t {
	case UUID:
		return "uuid"
	case Text:
		return "text"
	}
	return "bigint"
}

// ErrBadKey is wrapped by the errors of keys that cannot be read as the key type: a bigint
// that is not a number or out of range, a malformed uuid, a binary value of the wrong length.
var ErrBadKey = errors.New("invalid sharding key")

// Sharder maps keys to shards. The zero value is not usable: Shards must be at least 1.
type Sharder struct {
	Func   Function
	Type   KeyType
	Shards int
}

// ShardInt64 returns the shard of a bigint key.
func (s Sharder) ShardInt64(v int64) int {
	if s.Func == SHA1 {
		var buf [20]byte
		return s.sha1(strconv.AppendInt(buf[:0], v, 10))
	}
	return int(HashInt8(v) % uint64(s.Shards))
}

// ShardUUID returns the shard of a uuid key.
func (s Sharder) ShardUUID(u [16]byte) int {
	if s.Func == SHA1 {
		var buf [36]byte
		return s.sha1(pgtext.AppendUUID(buf[:0], u))
	}
	return int(HashUUID(u) % uint64(s.Shards))
}

// ShardText returns the shard of a text key.
func (s Sharder) ShardText(b []byte) int {
	if s.Func == SHA1 {
		return s.sha1(b)
	}
	return int(HashText(b) % uint64(s.Shards))
}

// sha1 is pgcat's sha1 function on a key's text form.
func (s Sharder) sha1(text []byte) int {
	sum := sha1.Sum(text)
	// The last 8 hex digits are the last 4 bytes.
	return int(uint64(binary.BigEndian.Uint32(sum[16:])) % uint64(s.Shards))
}

// Shard returns the shard of a key given in its text form (as in a SQL literal, a text-format
// Bind parameter, SET SHARDING KEY, or a comment hint), read as s.Type: a bigint as Postgres'
// int8 input reads it (decimal, an optional sign, surrounding spaces), a uuid in any form
// Postgres accepts (braces, upper case, hyphens after any group of four digits), a text as
// its bytes. The error wraps ErrBadKey.
func (s Sharder) Shard(key []byte) (int, error) {
	switch s.Type {
	case UUID:
		u, ok := pgtext.ParseUUID(key)
		if !ok {
			return 0, fmt.Errorf("%w: %q is not a uuid", ErrBadKey, key)
		}
		return s.ShardUUID(u), nil
	case Text:
		return s.ShardText(key), nil
	}
	v, err := pgtext.ParseInt(key, 64)
	switch {
	case errors.Is(err, pgtext.ErrRange):
		return 0, fmt.Errorf("%w: %q is out of range for a bigint", ErrBadKey, key)
	case err != nil:
		return 0, fmt.Errorf("%w: %q is not a bigint", ErrBadKey, key)
	}
	return s.ShardInt64(v), nil
}

// ShardBinary returns the shard of a key in Postgres' binary format (a binary-format Bind
// parameter): for a bigint key, a big-endian integer of 8, 4 or 2 bytes (int8, int4, int2
// parameters); for a uuid, its 16 bytes; for a text, its bytes. The error wraps ErrBadKey.
func (s Sharder) ShardBinary(key []byte) (int, error) {
	switch s.Type {
	case UUID:
		if len(key) != 16 {
			return 0, fmt.Errorf("%w: a binary uuid has 16 bytes, not %d", ErrBadKey, len(key))
		}
		return s.ShardUUID([16]byte(key)), nil
	case Text:
		return s.ShardText(key), nil
	}
	switch len(key) {
	case 8:
		return s.ShardInt64(int64(binary.BigEndian.Uint64(key))), nil
	case 4:
		return s.ShardInt64(int64(int32(binary.BigEndian.Uint32(key)))), nil
	case 2:
		return s.ShardInt64(int64(int16(binary.BigEndian.Uint16(key)))), nil
	}
	return 0, fmt.Errorf("%w: a binary integer has 2, 4 or 8 bytes, not %d", ErrBadKey, len(key))
}
