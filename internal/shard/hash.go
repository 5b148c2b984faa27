package shard

import (
	"encoding/binary"
	"math/bits"
)

// The hash functions of Postgres' hash partitioning, rewritten from their description in the
// Postgres sources (src/common/hashfn.c, src/backend/access/hash/hashfunc.c,
// src/backend/partitioning/partbounds.c): Bob Jenkins' lookup3 hash with a 64-bit seed, and
// the combination of the key columns' hashes. A row of a table PARTITION BY HASH (key) goes to
// the partition whose REMAINDER is PartitionHash(key) modulo its MODULUS, the hash taken as an
// unsigned 64-bit number.
//
// Postgres reads the bytes of text and uuid values four at a time in the machine's byte order;
// these functions use little-endian order, the order of every platform Postgres is commonly
// run on (x86-64, arm64). A big-endian server partitions text and uuid keys differently.

// partitionSeed is HASH_PARTITION_SEED (src/include/catalog/partition.h): the seed every
// extended hash function gets when Postgres hashes a partition key.
const partitionSeed uint64 = 0x7A5B22367996DCFD

// lookup3 state: a, b and c, mixed reversibly by mix and finally by final.
type jenkins struct{ a, b, c uint32 }

func (s *jenkins) mix() {
	a, b, c := s.a, s.b, s.c
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	s.a, s.b, s.c = a, b, c
}

func (s *jenkins) final() {
	a, b, c := s.a, s.b, s.c
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	s.a, s.b, s.c = a, b, c
}

// newJenkins sets up the state for a key of n bytes and a seed, as both extended hash
// functions of Postgres do: the seed counts as a 12-byte block of data of its own.
func newJenkins(n int, seed uint64) jenkins {
	v := 0x9e3779b9 + uint32(n) + 3923095
	s := jenkins{v, v, v}
	if seed != 0 {
		s.a += uint32(seed >> 32)
		s.b += uint32(seed)
		s.mix()
	}
	return s
}

func (s *jenkins) sum64() uint64 { return uint64(s.b)<<32 | uint64(s.c) }

// hashBytesExtended is Postgres' hash_bytes_extended (hash_any_extended) on a little-endian
// machine.
func hashBytesExtended(k []byte, seed uint64) uint64 {
	s := newJenkins(len(k), seed)
	for len(k) >= 12 {
		s.a += binary.LittleEndian.Uint32(k)
		s.b += binary.LittleEndian.Uint32(k[4:])
		s.c += binary.LittleEndian.Uint32(k[8:])
		s.mix()
		k = k[12:]
	}
	// The last 0 to 11 bytes, little-endian into a, b and c; the lowest byte of c is left
	// out (Jenkins reserved it for the length).
	for i, x := range k {
		v := uint32(x) << (8 * uint(i%4))
		switch {
		case i < 4:
			s.a += v
		case i < 8:
			s.b += v
		default:
			s.c += uint32(x) << (8 * uint(i-8+1))
		}
	}
	s.final()
	return s.sum64()
}

// hashUint32Extended is Postgres' hash_bytes_uint32_extended: the hash of one 32-bit value.
func hashUint32Extended(k uint32, seed uint64) uint64 {
	s := newJenkins(4, seed)
	s.a += k
	s.final()
	return s.sum64()
}

// hashCombine64 is Postgres' hash_combine64, which folds the hash of each partition key column
// into the row's hash, starting from 0.
func hashCombine64(a, b uint64) uint64 {
	a ^= b + 0x49a0f4dd15e5a8e3 + (a << 54) + (a >> 7)
	return a
}

// HashInt8 returns the partition hash of a bigint key: hashint8extended with the partition
// seed, combined into a row hash of one column. int2 and int4 columns hash the same way for
// the same value (Postgres made the integer hashes agree so that cross-type hash joins work).
func HashInt8(v int64) uint64 {
	lo := uint32(v)
	hi := uint32(v >> 32)
	if v >= 0 {
		lo ^= hi
	} else {
		lo ^= ^hi
	}
	return hashCombine64(0, hashUint32Extended(lo, partitionSeed))
}

// HashUUID returns the partition hash of a uuid key given as its 16 bytes: uuid_hash_extended
// with the partition seed, combined into a row hash of one column.
func HashUUID(u [16]byte) uint64 {
	return hashCombine64(0, hashBytesExtended(u[:], partitionSeed))
}

// HashText returns the partition hash of a text or varchar key: hashtextextended under a
// deterministic collation (the default one, and any libc or ICU collation that is not
// declared nondeterministic) hashes the string's bytes in the database encoding. The caller
// gives the bytes the server stores, which are the client's bytes when client_encoding is the
// server's encoding. A character(n) (bpchar) key hashes differently (trailing spaces are
// ignored) and is not supported.
func HashText(s []byte) uint64 {
	return hashCombine64(0, hashBytesExtended(s, partitionSeed))
}
