package shard

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/sluicepg/sluice/internal/pgtext"
)

var testSharder = Sharder{Func: PgBigintHash, Type: Bigint, Shards: 4}

func newTestExtractor(t testing.TB, key string, s Sharder) *Extractor {
	t.Helper()
	e, err := New(Options{Key: key, Sharder: s})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// keys returns the set of the shards of bigint keys with testSharder.
func keys(ks ...int64) Set {
	var s Set
	for _, k := range ks {
		s.Add(testSharder.ShardInt64(k))
	}
	return s
}

func text(vs ...string) Params {
	p := Params{}
	for _, v := range vs {
		if v == "NULL" {
			p.Values = append(p.Values, nil)
		} else {
			p.Values = append(p.Values, []byte(v))
		}
	}
	return p
}

func int8s(vs ...int64) Params {
	p := Params{Formats: []int16{1}}
	for _, v := range vs {
		p.Values = append(p.Values, binary.BigEndian.AppendUint64(nil, uint64(v)))
	}
	return p
}

var all = AllShards()

// int8Array is a one-dimensional int8[] in binary format, as array_send writes it.
func int8Array(vs ...int64) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1)            // dimensions
	b = binary.BigEndian.AppendUint32(b, 0)               // no NULLs
	b = binary.BigEndian.AppendUint32(b, 20)              // int8
	b = binary.BigEndian.AppendUint32(b, uint32(len(vs))) // length
	b = binary.BigEndian.AppendUint32(b, 1)               // lower bound
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// extractCases use the key users.id (bigint, pg_bigint_hash, 4 shards). Keys 1, 2 and 3 are
// on three different shards (checked by TestExtractCaseKeysDiffer).
var extractCases = []struct {
	name   string
	query  string
	params Params
	want   Set
	err    error
}{
	// Equality and conjunctions.
	{"equality", "SELECT * FROM users WHERE id = 1", Params{}, keys(1), nil},
	{"equality reversed", "SELECT * FROM users WHERE 2 = id", Params{}, keys(2), nil},
	{"string literal", "SELECT * FROM users WHERE id = '3'", Params{}, keys(3), nil},
	{"cast literal", "SELECT * FROM users WHERE id = '3'::bigint", Params{}, keys(3), nil},
	{"negative", "SELECT * FROM users WHERE id = -7", Params{}, keys(-7), nil},
	{"max bigint", "SELECT * FROM users WHERE id = 9223372036854775807", Params{}, keys(9223372036854775807), nil},
	{"min bigint", "SELECT * FROM users WHERE id = -9223372036854775808", Params{}, keys(-9223372036854775808), nil},
	{"under AND", "SELECT * FROM users WHERE name = 'x' AND id = 1 AND age > 3", Params{}, keys(1), nil},
	{"qualified", "SELECT * FROM users WHERE users.id = 2", Params{}, keys(2), nil},
	{"schema qualified", "SELECT * FROM public.users WHERE public.users.id = 2", Params{}, keys(2), nil},
	{"alias", "SELECT * FROM users u WHERE u.id = 2", Params{}, keys(2), nil},
	{"parenthesized", "SELECT * FROM users WHERE (id = 1) AND (true)", Params{}, keys(1), nil},

	// Sets of shards.
	{"IN list", "SELECT * FROM users WHERE id IN (1, 2, 3)", Params{}, keys(1, 2, 3), nil},
	{"OR of keys", "SELECT * FROM users WHERE id = 1 OR id = 2", Params{}, keys(1, 2), nil},
	{"OR with IN", "SELECT * FROM users WHERE id = 1 OR id IN (2, 3)", Params{}, keys(1, 2, 3), nil},
	{"AND of ORs", "SELECT * FROM users WHERE (id = 1 OR id = 2) AND (id = 2 OR id = 3)", Params{}, keys(2), nil},
	{"ANY array", "SELECT * FROM users WHERE id = ANY(ARRAY[1, 3])", Params{}, keys(1, 3), nil},
	{"ANY array constant", "SELECT * FROM users WHERE id = ANY('{1,3}')", Params{}, keys(1, 3), nil},
	{"ANY array constant cast", "SELECT * FROM users WHERE id = ANY('{2, \"3\", NULL}'::bigint[])", Params{}, keys(2, 3), nil},
	{"ANY array constant nested", "SELECT * FROM users WHERE id = ANY('[1:2]={1,2}')", Params{}, keys(1, 2), nil},
	{"ANY array constant and a key", "SELECT * FROM users WHERE id = ANY('{1}') OR id = 2", Params{}, keys(1, 2), nil},
	{"ANY array constant not keys", "SELECT * FROM users WHERE id = ANY('{1,x}')", Params{}, all, nil},
	{"ANY array constant malformed", "SELECT * FROM users WHERE id = ANY('{1,2')", Params{}, all, nil},
	{"OR with a non-key", "SELECT * FROM users WHERE id = 1 OR name = 'x'", Params{}, all, nil},

	// Not restrictions.
	{"no WHERE", "SELECT * FROM users", Params{}, all, nil},
	{"not equal", "SELECT * FROM users WHERE id <> 1", Params{}, all, nil},
	{"NOT", "SELECT * FROM users WHERE NOT (id = 1)", Params{}, all, nil},
	{"NOT IN", "SELECT * FROM users WHERE id NOT IN (1, 2)", Params{}, all, nil},
	{"range", "SELECT * FROM users WHERE id > 1", Params{}, all, nil},
	{"expression", "SELECT * FROM users WHERE id = 1 + 1", Params{}, all, nil},
	{"other table", "SELECT * FROM orders WHERE id = 1", Params{}, all, nil},
	{"other table qualified", "SELECT * FROM orders o WHERE o.id = 1", Params{}, all, nil},
	{"key only in subquery", "SELECT * FROM orders WHERE user_id IN (SELECT id FROM users WHERE id = 1)", Params{}, all, nil},
	{"not a bigint", "SELECT * FROM users WHERE id = 'abc'", Params{}, all, nil},
	{"contradiction", "SELECT * FROM users WHERE id = 1 AND id = 2", Params{}, all, nil},
	{"NULL", "SELECT * FROM users WHERE id = NULL", Params{}, all, nil},
	{"NULL in IN", "SELECT * FROM users WHERE id IN (NULL, 2)", Params{}, keys(2), nil},
	{"not a query", "VACUUM users", Params{}, all, nil},
	{"parse error", "SELEC * FROM users WHERE id = 1", Params{}, all, nil},
	{"set", "SET search_path TO app", Params{}, all, nil},

	// Parameters.
	{"param text", "SELECT * FROM users WHERE id = $1", text("3"), keys(3), nil},
	{"param text negative", "SELECT * FROM users WHERE id = $1", text("-3"), keys(-3), nil},
	{"param binary int8", "SELECT * FROM users WHERE id = $1", int8s(2), keys(2), nil},
	{"param binary int4", "SELECT * FROM users WHERE id = $1", Params{Formats: []int16{1}, Values: [][]byte{{0, 0, 0, 3}}}, keys(3), nil},
	{"param binary int2", "SELECT * FROM users WHERE id = $1", Params{Formats: []int16{1}, Values: [][]byte{{0xff, 0xfe}}}, keys(-2), nil},
	{"params mixed formats", "SELECT * FROM users WHERE name = $1 AND id = $2", Params{Formats: []int16{0, 1}, Values: [][]byte{[]byte("x"), binary.BigEndian.AppendUint64(nil, 1)}}, keys(1), nil},
	{"param second", "SELECT * FROM users WHERE name = $1 AND id = $2", text("x", "2"), keys(2), nil},
	{"param cast", "SELECT * FROM users WHERE id = $1::bigint", text("1"), keys(1), nil},
	{"params IN", "SELECT * FROM users WHERE id IN ($1, $2)", text("1", "3"), keys(1, 3), nil},
	{"param NULL", "SELECT * FROM users WHERE id = $1", text("NULL"), all, nil},
	{"param missing", "SELECT * FROM users WHERE id = $2", text("1"), all, nil},
	{"param not a number", "SELECT * FROM users WHERE id = $1", text("x"), all, nil},
	{"param binary wrong length", "SELECT * FROM users WHERE id = $1", Params{Formats: []int16{1}, Values: [][]byte{{1, 2, 3}}}, all, nil},
	{"ANY param text", "SELECT * FROM users WHERE id = ANY($1)", text("{1,3}"), keys(1, 3), nil},
	{"ANY param text quoted, NULL", "SELECT * FROM users WHERE id = ANY($1)", text(`{ "1" , NULL,3 }`), keys(1, 3), nil},
	{"ANY param text nested, dimensions", "SELECT * FROM users WHERE id = ANY($1::bigint[])", text("[0:1][1:1]={{2},{3}}"), keys(2, 3), nil},
	{"ANY param binary", "SELECT * FROM users WHERE id = ANY($1)", Params{Formats: []int16{1}, Values: [][]byte{int8Array(2, 3)}}, keys(2, 3), nil},
	{"ANY param and another key", "SELECT * FROM users WHERE id = ANY($1) OR id = 1", text("{2}"), keys(1, 2), nil},
	{"ANY param NULL", "SELECT * FROM users WHERE id = ANY($1)", text("NULL"), all, nil},
	{"ANY param not a number", "SELECT * FROM users WHERE id = ANY($1)", text("{1,x}"), all, nil},
	{"ANY param malformed", "SELECT * FROM users WHERE id = ANY($1)", text("{1,2"), all, nil},

	// Joins.
	{"join qualified", "SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 3", Params{}, keys(3), nil},
	{"join on key", "SELECT * FROM orders o JOIN users u ON u.id = o.user_id AND u.id = 1", Params{}, keys(1), nil},
	{"join table name", "SELECT * FROM orders JOIN users ON users.id = 2", Params{}, keys(2), nil},
	{"comma join", "SELECT * FROM orders o, users u WHERE o.user_id = u.id AND u.id = 2", Params{}, keys(2), nil},
	{"left join ON does not restrict", "SELECT * FROM orders o LEFT JOIN users u ON u.id = 1", Params{}, all, nil},
	{"left join WHERE restricts", "SELECT * FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE u.id = 1", Params{}, keys(1), nil},
	{"subquery in FROM", "SELECT * FROM (SELECT * FROM users WHERE id = 2) s", Params{}, keys(2), nil},
	{"CTE", "WITH s AS (SELECT * FROM users WHERE id = 3) SELECT * FROM s", Params{}, keys(3), nil},
	{"UNION", "SELECT * FROM users WHERE id = 1 UNION ALL SELECT * FROM users WHERE id = 2", Params{}, keys(1, 2), nil},
	{"UNION with all", "SELECT * FROM users WHERE id = 1 UNION SELECT * FROM users", Params{}, all, nil},

	// INSERT.
	{"insert one row", "INSERT INTO users (id, name) VALUES (1, 'a')", Params{}, keys(1), nil},
	{"insert rows", "INSERT INTO users (name, id) VALUES ('a', 1), ('b', 2), ('c', 3)", Params{}, keys(1, 2, 3), nil},
	{"insert params", "INSERT INTO users (id, name) VALUES ($1, $2), ($3, $4)", text("2", "a", "2", "b"), keys(2), nil},
	{"insert binary param", "INSERT INTO users (id) VALUES ($1)", int8s(3), keys(3), nil},
	{"insert no column list", "INSERT INTO users VALUES (1, 'a')", Params{}, all, nil},
	{"insert no key column", "INSERT INTO users (name) VALUES ('a')", Params{}, all, nil},
	{"insert DEFAULT key", "INSERT INTO users (id) VALUES (DEFAULT)", Params{}, all, nil},
	{"insert select", "INSERT INTO users (id) SELECT 1", Params{}, all, nil},
	{"insert other table", "INSERT INTO orders (id) VALUES (1)", Params{}, all, nil},
	{"insert returning", "INSERT INTO users (id) VALUES (2) RETURNING *", Params{}, keys(2), nil},
	{"upsert excluded", "INSERT INTO users (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id, n = EXCLUDED.n", Params{}, keys(1), nil},
	{"upsert key change", "INSERT INTO users (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET id = 2", Params{}, keys(1), ErrKeyChange},

	// UPDATE and DELETE.
	{"update", "UPDATE users SET name = 'x' WHERE id = 2", Params{}, keys(2), nil},
	{"update param", "UPDATE users SET name = $1 WHERE id = $2", text("x", "3"), keys(3), nil},
	{"update all", "UPDATE users SET name = 'x'", Params{}, all, nil},
	{"update from", "UPDATE orders o SET total = 0 FROM users u WHERE u.id = o.user_id AND u.id = 1", Params{}, keys(1), nil},
	{"update key change", "UPDATE users SET id = 5 WHERE id = 1", Params{}, keys(1), ErrKeyChange},
	{"update key change no where", "UPDATE users SET id = id + 1", Params{}, all, ErrKeyChange},
	{"update key change param", "UPDATE users SET id = $1 WHERE id = $2", text("2", "1"), keys(1), ErrKeyChange},
	{"update key same shard", "UPDATE users SET id = $1 WHERE id = $2", text("1", "1"), keys(1), nil},
	{"update key multi assign", "UPDATE users SET (id, name) = (1, 'x') WHERE id = 1", Params{}, keys(1), ErrKeyChange},
	{"update key = key", "UPDATE users SET id = id, name = 'x' WHERE id = 1", Params{}, keys(1), nil},
	{"update other table's id", "UPDATE orders SET id = 5 WHERE id = 1", Params{}, all, nil},
	{"delete", "DELETE FROM users WHERE id = 3", Params{}, keys(3), nil},
	{"delete IN params", "DELETE FROM users WHERE id IN ($1, $2)", int8s(1, 2), keys(1, 2), nil},
	{"delete all", "DELETE FROM users", Params{}, all, nil},
	{"delete using", "DELETE FROM orders o USING users u WHERE u.id = o.user_id AND u.id = 2", Params{}, keys(2), nil},
	{"writing CTE widens", "WITH d AS (DELETE FROM users WHERE id = 2 RETURNING *) SELECT * FROM users WHERE id = 1", Params{}, keys(1, 2), nil},
	{"writing CTE without key", "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM users WHERE id = 1", Params{}, all, nil},

	// Several statements and EXPLAIN.
	{"two statements", "SELECT * FROM users WHERE id = 1; SELECT * FROM users WHERE id = 2", Params{}, keys(1, 2), nil},
	{"statement without key", "SELECT * FROM users WHERE id = 1; SELECT 1", Params{}, all, nil},
	{"explain", "EXPLAIN SELECT * FROM users WHERE id = 3", Params{}, keys(3), nil},
}

func TestExtractCaseKeysDiffer(t *testing.T) {
	if keys(1, 2, 3).Len() != 3 {
		t.Fatalf("keys 1, 2, 3 are on %v: pick keys on different shards", keys(1, 2, 3))
	}
}

func TestExtract(t *testing.T) {
	e := newTestExtractor(t, "users.id", testSharder)
	for _, tc := range extractCases {
		t.Run(tc.name, func(t *testing.T) {
			for pass := range 2 { // the second from the cache
				got, err := e.Shards([]byte(tc.query), tc.params)
				if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
					t.Fatalf("pass %d: %s: err = %v, want %v", pass, tc.query, err, tc.err)
				}
				if got.String() != tc.want.String() {
					t.Fatalf("pass %d: %s: shards %v, want %v", pass, tc.query, got, tc.want)
				}
			}
		})
	}
}

func TestExtractAnyTable(t *testing.T) {
	e := newTestExtractor(t, "*.id", testSharder)
	for _, tc := range []struct {
		query string
		want  Set
	}{
		{"SELECT * FROM orders WHERE id = 1", keys(1)},
		{"SELECT * FROM orders o WHERE o.id = 2", keys(2)},
		{"INSERT INTO anything (id) VALUES (3)", keys(3)},
		{"SELECT * FROM orders WHERE user_id = 1", all},
	} {
		if got, err := e.Shards([]byte(tc.query), Params{}); err != nil || got.String() != tc.want.String() {
			t.Errorf("%s: %v, %v, want %v", tc.query, got, err, tc.want)
		}
	}
}

func TestExtractUUIDAndTextKeys(t *testing.T) {
	us := Sharder{Type: UUID, Shards: 5}
	e := newTestExtractor(t, "accounts.id", us)
	id := "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
	want, _ := us.Shard([]byte(id))
	raw, _ := pgtext.ParseUUID([]byte(id))
	for _, tc := range []struct {
		query  string
		params Params
	}{
		{"SELECT * FROM accounts WHERE id = '" + id + "'", Params{}},
		{"SELECT * FROM accounts WHERE id = '" + strings.ToUpper(id) + "'::uuid", Params{}},
		{"SELECT * FROM accounts WHERE id = $1", text(id)},
		{"SELECT * FROM accounts WHERE id = $1", Params{Formats: []int16{1}, Values: [][]byte{raw[:]}}},
	} {
		got, err := e.Shards([]byte(tc.query), tc.params)
		if s, ok := got.Single(); err != nil || !ok || s != want {
			t.Errorf("uuid %s: %v, %v, want {%d}", tc.query, got, err, want)
		}
	}

	ts := Sharder{Type: Text, Shards: 5}
	e = newTestExtractor(t, "tenants.name", ts)
	want = ts.ShardText([]byte("Zürich"))
	for _, tc := range []struct {
		query  string
		params Params
	}{
		{"SELECT * FROM tenants WHERE name = 'Zürich'", Params{}},
		{"SELECT * FROM tenants WHERE name = $1", text("Zürich")},
		{"SELECT * FROM tenants WHERE name = $1", Params{Formats: []int16{1}, Values: [][]byte{[]byte("Zürich")}}},
		{"INSERT INTO tenants (name) VALUES ('Zürich')", Params{}},
	} {
		got, err := e.Shards([]byte(tc.query), tc.params)
		if s, ok := got.Single(); err != nil || !ok || s != want {
			t.Errorf("text %s: %v, %v, want {%d}", tc.query, got, err, want)
		}
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	for _, k := range []string{"", "id", "users.", ".id", "users.*", "a.b.c"} {
		if _, err := New(Options{Key: k, Sharder: testSharder}); err == nil {
			t.Errorf("New(Key %q): no error", k)
		}
	}
	if _, err := New(Options{Key: "users.id"}); err == nil {
		t.Error("New with 0 shards: no error")
	}
	e := newTestExtractor(t, "Users.ID", testSharder)
	if got, _ := e.Shards([]byte("SELECT * FROM USERS WHERE ID = 1"), Params{}); got.String() != keys(1).String() {
		t.Errorf("folded key: %v", got)
	}
}

func TestExtractTooLong(t *testing.T) {
	e, err := New(Options{Key: "users.id", Sharder: testSharder, MaxLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	st := e.Analyze([]byte("SELECT * FROM users WHERE id = 1 AND name = '" + strings.Repeat("x", 64) + "'"))
	if !errors.Is(st.ParseErr, ErrTooLong) {
		t.Fatalf("ParseErr = %v, want ErrTooLong", st.ParseErr)
	}
	if got, err := st.Shards(Params{}); err != nil || !got.All() {
		t.Fatalf("too long: %v, %v, want all", got, err)
	}
}
