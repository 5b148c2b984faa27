package shard

import (
	"context"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicepg/sluice/internal/pgtest"
	"github.com/sluicepg/sluice/internal/pgtext"
)

// TestMatchesPostgresHashPartitioning is the proof that pg_bigint_hash (and its uuid and text
// variants) put every key on the shard Postgres' hash partitioning puts it on: for each key
// type and modulus, thousands of keys (extremes included) go into a table PARTITION BY HASH,
// and the partition each row landed in must be the shard Sharder computes.
func TestMatchesPostgresHashPartitioning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := pgtest.StartPostgres(pgtest.Options{Name: "shard-partitions"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	conn, err := p.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var encoding string
	if err := conn.QueryRow(ctx, "SHOW server_encoding").Scan(&encoding); err != nil {
		t.Fatal(err)
	}
	if encoding != "UTF8" {
		if _, err := conn.Exec(ctx, "CREATE DATABASE shard_utf8 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		if conn, err = p.Connect(ctx, "shard_utf8"); err != nil {
			t.Fatal(err)
		}
	}

	rng := mrand.New(mrand.NewPCG(7, 7))
	bigints := []string{"0", "1", "-1", "2", "-2",
		strconv.FormatInt(math.MaxInt64, 10), strconv.FormatInt(math.MinInt64, 10),
		strconv.FormatInt(math.MaxInt64-1, 10), strconv.FormatInt(math.MinInt64+1, 10),
		strconv.FormatInt(math.MaxInt32, 10), strconv.FormatInt(math.MinInt32, 10),
		strconv.FormatInt(math.MaxInt32+1, 10), strconv.FormatInt(math.MinInt32-1, 10),
		strconv.FormatInt(math.MaxUint32, 10), strconv.FormatInt(-math.MaxUint32, 10),
		strconv.FormatInt(1<<32, 10), strconv.FormatInt(-(1 << 32), 10)}
	for i := int64(-300); i <= 300; i++ {
		bigints = append(bigints, strconv.FormatInt(i, 10))
	}
	for range 3000 {
		// Spread over every magnitude: a random 64-bit value shifted right by 0 to 63 bits.
		v := int64(rng.Uint64()) >> rng.IntN(64)
		bigints = append(bigints, strconv.FormatInt(v, 10))
	}

	uuids := []string{"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"}
	for range 3000 {
		u := randomUUID()
		uuids = append(uuids, string(pgtext.AppendUUID(nil, u)))
	}

	texts := []string{"", " ", "a", "ab", "abc", "abcd", "héllo", "日本語のテキスト", "emoji 🎉🚀",
		"Ünïcödé ñ", "trailing space ", "tab\there", "new\nline", "quote ' and \" and \\",
		strings.Repeat("x", 100), strings.Repeat("é", 500), strings.Repeat("long key ", 300)}
	alphabet := []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_éßøπЖ中文🎉")
	for i := range 3000 {
		// Every length from 0 to 40 several times (each tail of the 12-byte blocks), then longer.
		n := i % 41
		if i >= 2000 {
			n = rng.IntN(300)
		}
		var b strings.Builder
		for range n {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}

	cases := []struct {
		typ     string
		keyType KeyType
		keys    []string
	}{
		{"bigint", Bigint, bigints},
		{"uuid", UUID, uuids},
		{"text", Text, texts},
		{"varchar(4000)", Text, texts},
	}
	for _, c := range cases {
		for _, modulus := range []int{2, 3, 4, 7} {
			t.Run(fmt.Sprintf("%s/modulus=%d", c.typ, modulus), func(t *testing.T) {
				checkPartitions(t, ctx, conn, c.typ, c.keyType, c.keys, modulus)
			})
		}
	}
}

func checkPartitions(t *testing.T, ctx context.Context, conn *pgx.Conn, typ string, keyType KeyType, keys []string, modulus int) {
	table := fmt.Sprintf("h_%s_%d", strings.NewReplacer("(", "_", ")", "").Replace(typ), modulus)
	ddl := fmt.Sprintf("DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (k %[2]s) PARTITION BY HASH (k);", table, typ)
	for r := range modulus {
		ddl += fmt.Sprintf("CREATE TABLE %[1]s_%[2]d PARTITION OF %[1]s FOR VALUES WITH (MODULUS %[3]d, REMAINDER %[2]d);",
			table, r, modulus)
	}
	if _, err := conn.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	// The keys go in as text and are cast by the server, so Postgres' own input functions read
	// them (text keys stay bytes for bytes).
	if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s SELECT unnest($1::text[])::%s", table, typ), keys); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT k::text, tableoid::regclass::text FROM %s", table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	s := Sharder{Func: PgBigintHash, Type: keyType, Shards: modulus}
	n, bad := 0, 0
	seen := make(map[int]int)
	for rows.Next() {
		var key, part string
		if err := rows.Scan(&key, &part); err != nil {
			t.Fatal(err)
		}
		n++
		want, err := strconv.Atoi(part[strings.LastIndexByte(part, '_')+1:])
		if err != nil {
			t.Fatalf("partition name %q", part)
		}
		seen[want]++
		got, err := s.Shard([]byte(key))
		if err != nil || got != want {
			bad++
			if bad <= 10 {
				t.Errorf("%s key %q: Postgres put it in partition %d, Sharder says %d (%v)", typ, key, want, got, err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(keys) {
		t.Fatalf("read back %d rows, inserted %d", n, len(keys))
	}
	if bad > 0 {
		t.Fatalf("%d of %d keys on the wrong shard", bad, n)
	}
	if len(seen) != modulus {
		t.Fatalf("only partitions %v got rows", seen)
	}
}
