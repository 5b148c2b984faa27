package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// fanoutParamShapes are TestFanout's read shapes with parameters, as a driver sends them.
var fanoutParamShapes = []struct {
	sql  string
	args []any
}{
	{"SELECT id, v FROM items WHERE id > $1 ORDER BY id", []any{0}},
	{"SELECT id, v FROM items ORDER BY id DESC LIMIT $1", []any{7}},
	{"SELECT id, v FROM items ORDER BY id LIMIT $1 OFFSET $2", []any{5, 10}},
	{"SELECT * FROM items WHERE v <> $1 ORDER BY id OFFSET 190", []any{"none"}},
	{"SELECT * FROM items ORDER BY v DESC LIMIT $1", []any{12}},
	{"SELECT id, n FROM items WHERE f >= $1 ORDER BY n NULLS FIRST, id LIMIT 30", []any{0.0}},
	{"SELECT id, n FROM items ORDER BY n DESC, id LIMIT $1", []any{10}},
	{"SELECT id, d FROM items WHERE d > $1 ORDER BY d, id DESC LIMIT 15 OFFSET $2", []any{time.Date(2024, 1, 3, 0, 0, 0, 0, time.UTC), 3}},
	{"SELECT v AS name, f FROM items ORDER BY 2, 1 LIMIT $1", []any{20}},
	{"SELECT count(*) FROM items WHERE grp <> $1", []any{99}},
	{"SELECT count(*), sum(id), min(v), max(v), sum(n), count(n) FROM items WHERE id > $1", []any{-1}},
	{"SELECT avg(id), avg(n), avg(f), sum(f) FROM items WHERE grp >= $1", []any{0}},
	{"SELECT min(d), max(d), min(n), max(f) FROM items WHERE v LIKE $1", []any{"v%"}},
	{"SELECT count(*) FROM items WHERE id < $1", []any{0}},
	{"SELECT sum(id), avg(n), min(v) FROM items WHERE id < $1", []any{0}},
	{"SELECT grp, count(*), sum(n), avg(id), min(d) FROM items WHERE id <= $1 GROUP BY grp ORDER BY grp", []any{fanoutRows}},
	{"SELECT grp, max(id) AS m FROM items GROUP BY grp ORDER BY m DESC LIMIT $1", []any{3}},
	{"SELECT grp FROM items WHERE n IS NOT NULL OR $1 GROUP BY grp ORDER BY 1 DESC", []any{true}},
	{"SELECT grp, count(*) FROM items WHERE v > $1 GROUP BY 1 ORDER BY 2, 1", []any{"v0100"}},
	{"SELECT id, v FROM items WHERE id IN ($1, $2, $3, $4, $5, $6) ORDER BY v", []any{1, 2, 3, 4, 5, 6}},
	{"SELECT count(*), sum(id) FROM items WHERE id IN ($1, $2, $3, $4)", []any{10, 11, 12, 13}},
	{"SELECT count(*), sum(id), avg(n) FROM items WHERE id = ANY($1)", []any{[]int64{10, 11, 12, 13, 14}}},
	{"SELECT id, n, f, d FROM items WHERE id > $1 ORDER BY f DESC, d, n, id LIMIT $2 OFFSET $3", []any{20, 25, 5}},
}

// rawResult is a result as it came on the wire: the columns (name, type, format), each row's
// values in their format, and the tag.
func rawResult(rows pgx.Rows) (string, error) {
	var b strings.Builder
	for _, f := range rows.FieldDescriptions() {
		fmt.Fprintf(&b, "%s:%d:%d ", f.Name, f.DataTypeOID, f.Format)
	}
	b.WriteString("\n")
	for rows.Next() {
		for _, v := range rows.RawValues() {
			if v == nil {
				b.WriteString("NULL|")
			} else {
				fmt.Fprintf(&b, "%x|", v)
			}
		}
		b.WriteString("\n")
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	b.WriteString(rows.CommandTag().String())
	return b.String(), nil
}

// TestFanoutExtended: reads across three shards in the extended protocol, as pgx sends them
// in each of its modes (prepared and cached statements with binary results, the unnamed
// statement with text, describe-then-execute), with parameters: the merged answer equals the
// answer of one database holding every row, to the byte in every result format. Reads that
// cannot be merged are refused with the same SQLSTATE as in the simple protocol.
func TestFanoutExtended(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"fanx_e2e_0", "fanx_e2e_1", "fanx_e2e_2", "fanx_e2e_all"}
	s, _, _ := fanoutFixture(t, dbs, `cross_shard_reads = "all"`+"\n")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
			cfg, err := pgx.ParseConfig(pg.URL(dbs[3], appUser, appPass))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			all, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer all.Close(ctx)
			for round := range 2 { // the second round finds pgx's and the shards' statements prepared
				for _, sh := range fanoutParamShapes {
					rows, _ := conn.Query(ctx, sh.sql, sh.args...)
					got, err := rawResult(rows)
					if err != nil {
						t.Errorf("%s %v (round %d): %v", sh.sql, sh.args, round, err)
						continue
					}
					rows, _ = all.Query(ctx, sh.sql, sh.args...)
					want, err := rawResult(rows)
					if err != nil {
						t.Fatalf("%s on one database: %v", sh.sql, err)
					}
					if got != want {
						t.Errorf("%s %v (round %d):\nthrough sluice:\n%s\none database:\n%s", sh.sql, sh.args, round, got, want)
					}
				}
			}
			for _, q := range fanoutRefused {
				rows, _ := conn.Query(ctx, q+" LIMIT $1", 5)
				_, err := rawResult(rows)
				if sqlstateOf(err) != "0A000" {
					t.Errorf("%s: %v; want 0A000", q, err)
				}
			}
			// The session goes on after the refusals.
			var n int64
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM items WHERE id > $1", 0).Scan(&n); err != nil || n != fanoutRows {
				t.Errorf("count after the refusals: %d, %v", n, err)
			}
		})
	}
}
