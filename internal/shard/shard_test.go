package shard

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/sluicepg/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, nil) }

// pgcat's published vectors (src/sharding.rs) for pg_bigint_hash with 5 shards: keys by shard.
var pgcatBigintVectors = [5][]int64{
	{1, 4, 5, 14, 19, 39, 40, 46, 47, 53},
	{2, 3, 11, 17, 21, 23, 30, 49, 51, 54},
	{6, 7, 15, 16, 18, 20, 25, 28, 34, 35},
	{8, 12, 13, 22, 29, 31, 33, 36, 41, 43},
	{9, 10, 24, 26, 27, 32, 37, 38, 42, 45},
}

func TestPgBigintHashMatchesPgcatVectors(t *testing.T) {
	s := Sharder{Func: PgBigintHash, Shards: 5}
	for want, keys := range pgcatBigintVectors {
		for _, k := range keys {
			if got := s.ShardInt64(k); got != want {
				t.Errorf("pg_bigint_hash(%d) %% 5 = %d, want %d", k, got, want)
			}
		}
	}
}

func TestSHA1MatchesPgcatVectors(t *testing.T) {
	// pgcat's src/sharding.rs, keys 0 to 19 with 12 shards.
	want := []int{4, 7, 8, 3, 6, 0, 0, 10, 3, 11, 1, 7, 4, 4, 11, 2, 5, 0, 8, 3}
	s := Sharder{Func: SHA1, Shards: 12}
	for k, w := range want {
		if got := s.ShardInt64(int64(k)); got != w {
			t.Errorf("sha1(%d) %% 12 = %d, want %d", k, got, w)
		}
		got, err := s.Shard([]byte(strconv.Itoa(k)))
		if err != nil || got != w {
			t.Errorf("sha1(%q) %% 12 = %d, %v, want %d", strconv.Itoa(k), got, err, w)
		}
	}
}

func TestShardTextAndBinaryFormsAgree(t *testing.T) {
	for _, fn := range []Function{PgBigintHash, SHA1} {
		s := Sharder{Func: fn, Type: Bigint, Shards: 7}
		for _, v := range []int64{0, 1, -1, 42, math.MaxInt16, math.MinInt16, math.MaxInt32, math.MinInt32,
			math.MaxInt64, math.MinInt64, 1 << 40, -(1 << 40)} {
			want := s.ShardInt64(v)
			text := strconv.FormatInt(v, 10)
			for _, form := range []string{text, " " + text + "\n", "+" + text} {
				if form[0] == '+' && v < 0 {
					continue
				}
				if got, err := s.Shard([]byte(form)); err != nil || got != want {
					t.Errorf("%v Shard(%q) = %d, %v, want %d", fn, form, got, err, want)
				}
			}
			b8 := binary.BigEndian.AppendUint64(nil, uint64(v))
			if got, err := s.ShardBinary(b8); err != nil || got != want {
				t.Errorf("%v ShardBinary(int8 %d) = %d, %v, want %d", fn, v, got, err, want)
			}
			if v == int64(int32(v)) {
				b4 := binary.BigEndian.AppendUint32(nil, uint32(int32(v)))
				if got, err := s.ShardBinary(b4); err != nil || got != want {
					t.Errorf("%v ShardBinary(int4 %d) = %d, %v, want %d", fn, v, got, err, want)
				}
			}
			if v == int64(int16(v)) {
				b2 := binary.BigEndian.AppendUint16(nil, uint16(int16(v)))
				if got, err := s.ShardBinary(b2); err != nil || got != want {
					t.Errorf("%v ShardBinary(int2 %d) = %d, %v, want %d", fn, v, got, err, want)
				}
			}
		}

		u := Sharder{Func: fn, Type: UUID, Shards: 7}
		raw := [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
		want := u.ShardUUID(raw)
		for _, form := range []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
			"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11",
			"a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", "{a0eebc999c0b4ef8bb6d6bb9bd380a11}"} {
			if got, err := u.Shard([]byte(form)); err != nil || got != want {
				t.Errorf("%v uuid Shard(%q) = %d, %v, want %d", fn, form, got, err, want)
			}
		}
		if got, err := u.ShardBinary(raw[:]); err != nil || got != want {
			t.Errorf("%v uuid ShardBinary = %d, %v, want %d", fn, got, err, want)
		}
	}
}

func TestShardRejectsBadKeys(t *testing.T) {
	big := Sharder{Shards: 3}
	for _, k := range []string{"", " ", "-", "+", "1.5", "1e3", "0x10", "9223372036854775808",
		"-9223372036854775809", "99999999999999999999", "12a", "--1", "1 2"} {
		if _, err := big.Shard([]byte(k)); !errors.Is(err, ErrBadKey) {
			t.Errorf("bigint Shard(%q): err = %v, want ErrBadKey", k, err)
		}
	}
	for _, n := range []int{0, 1, 3, 5, 7, 9, 16} {
		if _, err := big.ShardBinary(make([]byte, n)); !errors.Is(err, ErrBadKey) {
			t.Errorf("bigint ShardBinary(%d bytes): err = %v, want ErrBadKey", n, err)
		}
	}
	u := Sharder{Type: UUID, Shards: 3}
	for _, k := range []string{"", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
		"a0eebc999-c0b-4ef8-bb6d-6bb9bd380a11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
		"g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11"} {
		if _, err := u.Shard([]byte(k)); !errors.Is(err, ErrBadKey) {
			t.Errorf("uuid Shard(%q): err = %v, want ErrBadKey", k, err)
		}
	}
	if _, err := u.ShardBinary(make([]byte, 15)); !errors.Is(err, ErrBadKey) {
		t.Errorf("uuid ShardBinary(15 bytes): err = %v, want ErrBadKey", err)
	}
}

func TestParseFunctionAndKeyType(t *testing.T) {
	for s, want := range map[string]Function{"pg_bigint_hash": PgBigintHash, "PgBigintHash": PgBigintHash, "sha1": SHA1, "Sha1": SHA1} {
		if got, err := ParseFunction(s); err != nil || got != want {
			t.Errorf("ParseFunction(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseFunction("md5"); err == nil {
		t.Error("ParseFunction(md5): no error")
	}
	for s, want := range map[string]KeyType{"": Bigint, "bigint": Bigint, "uuid": UUID, "text": Text, "varchar": Text} {
		if got, err := ParseKeyType(s); err != nil || got != want {
			t.Errorf("ParseKeyType(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseKeyType("numeric"); err == nil {
		t.Error("ParseKeyType(numeric): no error")
	}
}

func randomUUID() [16]byte {
	var u [16]byte
	rand.Read(u[:])
	return u
}
