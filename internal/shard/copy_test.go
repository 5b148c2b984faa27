package shard

import (
	"fmt"
	"testing"

	"github.com/sluicepg/sluice/internal/copysplit"
)

func TestCopy(t *testing.T) {
	e := newTestExtractor(t, "users.id", testSharder)
	csv := copysplit.CSVFormat()
	csvHeader := csv
	csvHeader.Header = true
	for _, tc := range []struct {
		sql  string
		want string // fmt of the *Copy, or "nil"
	}{
		{"COPY users FROM STDIN", fmt.Sprint(&Copy{From: true, Stdio: true, Table: "users", KeyTable: true, Key: "id", Format: copysplit.TextFormat()})},
		{"copy public.users (name, ID) from stdin with (format csv, header)",
			fmt.Sprint(&Copy{From: true, Stdio: true, Schema: "public", Table: "users", KeyTable: true, Key: "id", Columns: []string{"name", "id"}, Format: csvHeader})},
		{"COPY users FROM STDIN CSV HEADER", fmt.Sprint(&Copy{From: true, Stdio: true, Table: "users", KeyTable: true, Key: "id", Format: csvHeader})},
		{"COPY users FROM STDIN WITH (FORMAT csv, HEADER MATCH, DELIMITER ';', NULL 'x', QUOTE '''', ESCAPE '\\', FORCE_NULL (id), FORCE_NOT_NULL (name), ENCODING 'latin1')",
			fmt.Sprint(&Copy{From: true, Stdio: true, Table: "users", KeyTable: true, Key: "id", Encoding: "latin1",
				Format: copysplit.Format{Kind: copysplit.CSV, Delimiter: ';', Quote: '\'', Escape: '\\', Null: "x", Header: true, KeyForceNull: true}})},
		{"COPY users FROM STDIN WITH (FORMAT csv, QUOTE '''', FORCE_NOT_NULL *)",
			fmt.Sprint(&Copy{From: true, Stdio: true, Table: "users", KeyTable: true, Key: "id",
				Format: copysplit.Format{Kind: copysplit.CSV, Delimiter: ',', Quote: '\'', Escape: '\'', Null: "", KeyForceNotNull: true}})},
		{"COPY users FROM STDIN WITH (HEADER false, DELIMITER '|', NULL '')",
			fmt.Sprint(&Copy{From: true, Stdio: true, Table: "users", KeyTable: true, Key: "id", Format: copysplit.Format{Kind: copysplit.Text, Delimiter: '|', Null: ""}})},
		{"COPY users FROM STDIN WITH DELIMITER 'ab'", // the server refuses it
			fmt.Sprint(&Copy{From: true, Stdio: true, Table: "users", KeyTable: true, Key: "id", Format: copysplit.TextFormat()})},
		{"COPY users FROM STDIN (FORMAT binary, HEADER)",
			fmt.Sprint(&Copy{From: true, Stdio: true, Table: "users", KeyTable: true, Key: "id", Format: copysplit.Format{Kind: copysplit.Binary, Delimiter: '\t', Null: `\N`}})},
		{"COPY orders FROM '/tmp/orders'", fmt.Sprint(&Copy{From: true, Table: "orders", Key: "id", Format: copysplit.TextFormat()})},
		{"COPY users TO STDOUT", fmt.Sprint(&Copy{Stdio: true, Table: "users", KeyTable: true, Key: "id", Format: copysplit.TextFormat()})},
		{"COPY (SELECT * FROM users WHERE id > 3) TO STDOUT (FORMAT csv)",
			fmt.Sprint(&Copy{Stdio: true, Key: "id", Query: "SELECT * FROM users WHERE id > 3", Format: csv})},
		{"COPY users FROM STDIN; SELECT 1", "nil"},
		{"SELECT 1", "nil"},
	} {
		got := "nil"
		if c := e.Analyze([]byte(tc.sql)).Copy(); c != nil {
			got = fmt.Sprint(c)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.sql, got, tc.want)
		}
	}
}

// TestCopyShards: COPY (query) TO runs where its query reads; COPY FROM touches every shard.
func TestCopyShards(t *testing.T) {
	e := newTestExtractor(t, "users.id", testSharder)
	for _, tc := range []struct {
		sql  string
		want Set
	}{
		{"COPY (SELECT * FROM users WHERE id = 5) TO STDOUT", func() Set { var s Set; s.Add(testSharder.ShardInt64(5)); return s }()},
		{"COPY (SELECT * FROM users) TO STDOUT", AllShards()},
		{"COPY users TO STDOUT", AllShards()},
		{"COPY users FROM STDIN", AllShards()},
	} {
		got, err := e.Shards([]byte(tc.sql), Params{})
		if err != nil || got.String() != tc.want.String() {
			t.Errorf("%s: %v, %v; want %v", tc.sql, got, err, tc.want)
		}
	}
}
