package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
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
	t.Run("protocol", func(t *testing.T) { testFanoutProtocol(t, s, dbs[3]) })
	t.Run("node-postgres", func(t *testing.T) {
		runNode(t, "shards.js", []string{"SLUICE_URL=" + s.URL(), "ALL_URL=" + pg.URL(dbs[3], appUser, appPass)},
			[]string{"parameterized queries across shards", "named statement across shards", "refused across shards"})
	})
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
			// A batch (one Sync) of reads across shards and by key.
			batch := func(c *pgx.Conn) string {
				b := &pgx.Batch{}
				b.Queue("SELECT count(*), sum(n) FROM items WHERE id > $1", 0)
				b.Queue("SELECT v FROM items WHERE id = $1", 7)
				b.Queue("SELECT grp, max(id) FROM items WHERE grp < $1 GROUP BY grp ORDER BY grp", 3)
				b.Queue("SELECT v FROM items WHERE id = $1", 8)
				br := c.SendBatch(ctx, b)
				defer br.Close()
				var out []string
				for range b.Len() {
					rows, _ := br.Query()
					r, err := rawResult(rows)
					if err != nil {
						return err.Error()
					}
					out = append(out, r)
				}
				return strings.Join(out, "\n")
			}
			if got, want := batch(conn), batch(all); got != want {
				t.Errorf("a batch:\nthrough sluice:\n%s\none database:\n%s", got, want)
			}
			for _, q := range fanoutRefused {
				rows, _ := conn.Query(ctx, q+" LIMIT $1", 5)
				_, err := rawResult(rows)
				if codeOf(err) != "0A000" {
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

// protocolTrace sends msgs on c and returns what comes back up to the syncs-th
// ReadyForQuery, one line per message: its type and what Postgres decides (values, tags,
// SQLSTATEs), leaving out what differs between databases (table OIDs in RowDescription).
// With rows false, DataRows are left out (an error mid-result: how many rows precede it
// depends on the order of the scan).
func protocolTrace(t *testing.T, c *pgconn.PgConn, msgs []pgproto3.FrontendMessage, syncs int, rows bool) string {
	t.Helper()
	fe := c.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for syncs > 0 {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.RowDescription:
			b.WriteString("RowDescription")
			for _, f := range m.Fields {
				fmt.Fprintf(&b, " %s:%d:%d", f.Name, f.DataTypeOID, f.Format)
			}
		case *pgproto3.DataRow:
			if !rows {
				continue
			}
			b.WriteString("DataRow")
			for _, v := range m.Values {
				fmt.Fprintf(&b, " %q", v)
			}
		case *pgproto3.CommandComplete:
			fmt.Fprintf(&b, "CommandComplete %s", m.CommandTag)
		case *pgproto3.ErrorResponse:
			fmt.Fprintf(&b, "ErrorResponse %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			fmt.Fprintf(&b, "ReadyForQuery %c", m.TxStatus)
			syncs--
		case *pgproto3.ParameterDescription:
			fmt.Fprintf(&b, "ParameterDescription %v", m.ParameterOIDs)
		default:
			fmt.Fprintf(&b, "%T", m)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// testFanoutProtocol: message by message, the extended protocol across shards answers what one
// database answers: an Execute's row limit suspends the portal and later Executes go on, the
// portal ends at Sync, a Bind's error comes in place of BindComplete, an error at the Execute
// after it, a Describe or Close of a portal that never runs, named statements, portals across
// shards and on one shard pipelined in one batch.
func testFanoutProtocol(t *testing.T, s *Sluice, allDB string) {
	ctx := context.Background()
	through, err := pgconn.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer through.Close(ctx)
	one, err := pgconn.Connect(ctx, pg.URL(allDB, appUser, appPass))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close(ctx)
	const sel = "SELECT id, v FROM items WHERE id > $1 ORDER BY id"
	text := func(vs ...string) [][]byte {
		out := make([][]byte, len(vs))
		for i, v := range vs {
			out[i] = []byte(v)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		msgs  []pgproto3.FrontendMessage
		syncs int
		rows  bool
	}{
		{"row limits suspend the portal; it ends at Sync", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: sel}, &pgproto3.Bind{Parameters: text("190")}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{MaxRows: 4}, &pgproto3.Execute{MaxRows: 4}, &pgproto3.Execute{MaxRows: 4}, &pgproto3.Execute{MaxRows: 4},
			&pgproto3.Sync{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		}, 2, true},
		{"binary results with a row limit", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT id, n, count(*) OVER () IS NULL AS x FROM items WHERE id < $1 ORDER BY n DESC NULLS LAST, id"},
			&pgproto3.Parse{Query: "SELECT grp, sum(n), avg(f), count(*) FROM items WHERE id < $1 GROUP BY grp ORDER BY grp"},
			&pgproto3.Bind{Parameters: text("100"), ResultFormatCodes: []int16{1}}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{MaxRows: 2}, &pgproto3.Execute{}, &pgproto3.Sync{},
		}, 1, true},
		{"a Bind's error comes in place of BindComplete", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: sel}, &pgproto3.Bind{Parameters: text("abc")}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{}, &pgproto3.Sync{},
		}, 1, true},
		{"an error at the Execute comes after BindComplete and the description", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT id, 10 / (id - $1) FROM items ORDER BY id"}, &pgproto3.Bind{Parameters: text("50")},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
		}, 1, false},
		{"a negative LIMIT given by a parameter", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT id FROM items ORDER BY id LIMIT $1 OFFSET 2"}, &pgproto3.Bind{Parameters: text("-1")},
			&pgproto3.Execute{}, &pgproto3.Sync{},
		}, 1, true},
		{"Describe and Close of a portal never executed", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: sel}, &pgproto3.Bind{Parameters: text("1")}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Close{ObjectType: 'P'}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{},
			&pgproto3.Bind{Parameters: text("1")}, &pgproto3.Sync{},
		}, 2, true},
		{"a named statement, described then executed twice", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s1", Query: "SELECT grp, count(*), avg(id) FROM items WHERE id > $1 GROUP BY grp ORDER BY 2 DESC, 1"},
			&pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: text("10")}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: text("150"), ResultFormatCodes: []int16{0, 1, 1}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{},
		}, 4, true},
		{"across shards and on one shard in one batch", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "across", Query: "SELECT count(*) FROM items WHERE id > $1"},
			&pgproto3.Parse{Name: "by key", Query: "SELECT v FROM items WHERE id = $1"},
			&pgproto3.Bind{PreparedStatement: "across", Parameters: text("0")}, &pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "by key", Parameters: text("7")}, &pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "across", Parameters: text("100")}, &pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "by key", Parameters: text("8")}, &pgproto3.Execute{},
			&pgproto3.Sync{},
			&pgproto3.Close{ObjectType: 'S', Name: "across"}, &pgproto3.Close{ObjectType: 'S', Name: "by key"}, &pgproto3.Sync{},
		}, 2, true},
	} {
		got := protocolTrace(t, through, tc.msgs, tc.syncs, tc.rows)
		want := protocolTrace(t, one, tc.msgs, tc.syncs, tc.rows)
		if got != want {
			t.Errorf("%s:\nthrough sluice:\n%s\none database:\n%s", tc.name, got, want)
		}
	}
}

// TestFanoutCancel: a client's cancel request (pgx's on a context's end) reaches every shard
// a query across shards runs on, in both protocols and during a COPY TO STDOUT across shards:
// the query ends at once with 57014 and the session goes on.
func TestFanoutCancel(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"fancancel_e2e_0", "fancancel_e2e_1", "fancancel_e2e_2"}
	shards := makeShards(t, itemsSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]}, shardSpec{pg, dbs[2]})
	s := startSluice(t, poolConfig{Shards: shards, Pool: "automatic_sharding_key = \"items.id\"\ncross_shard_reads = \"all\"\n"})
	setup := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
	mustExec(t, setup, fmt.Sprintf("INSERT INTO items (id, v) VALUES (%d, 'a'), (%d, 'b'), (%d, 'c')", keysOn(0, 1)[0], keysOn(1, 1)[0], keysOn(2, 1)[0]))
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) {
			c.DefaultQueryExecMode = mode
			// pgx sends a cancel request when the context ends (its default closes the
			// connection instead), and waits up to 2s for the query's end.
			c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
				return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 2 * time.Second}
			}
		})
		for _, q := range []string{"SELECT pg_sleep(5) FROM items", "COPY (SELECT pg_sleep(5) FROM items) TO STDOUT"} {
			if strings.HasPrefix(q, "COPY") && mode != pgx.QueryExecModeSimpleProtocol {
				continue
			}
			qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			start := time.Now()
			var err error
			if strings.HasPrefix(q, "COPY") {
				_, err = conn.PgConn().CopyTo(qctx, io.Discard, q)
			} else {
				_, err = conn.Exec(qctx, q)
			}
			cancel()
			took := time.Since(start)
			if codeOf(err) != "57014" || took > 3*time.Second {
				t.Errorf("%v: %s cancelled after 300ms: %v after %v; want 57014 at once", mode, q, err, took)
			}
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
				t.Errorf("%v: after the cancel of %s: %d, %v; want 3", mode, q, n, err)
			}
		}
	}
}

// TestFanoutPluginHooks: statements across shards reach the plugins' result hooks as a
// single-shard statement does (a cache invalidates on them): reads in both protocols with
// their merged tag, writes with their summed tag, COPY in and out, errors with their SQLSTATE;
// and a plugin that asks for a read's result gets the merged one, with which it answers the
// same query later.
func TestFanoutPluginHooks(t *testing.T) {
	ctx := context.Background()
	dbs := []string{"fanhook_e2e_0", "fanhook_e2e_1", "fanhook_e2e_2"}
	shards := makeShards(t, itemsSchema, shardSpec{pg, dbs[0]}, shardSpec{pg, dbs[1]}, shardSpec{pg, dbs[2]})
	tag := "fanout_hooks"
	s := startSluice(t, poolConfig{Shards: shards,
		Pool:    "automatic_sharding_key = \"items.id\"\ncross_shard_reads = \"all\"\ncross_shard_writes = \"all\"\n",
		General: "\n[plugins.e2e_recorder]\ntag = \"" + tag + "\"\n[plugins.e2e_memo]\n"})
	rec := recorderFor(t, tag)
	for _, proto := range protocols {
		conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto.mode })
		mustExec(t, conn, "DELETE FROM items WHERE id > $1", 0)
		for _, step := range []struct {
			sql, tag, code string
			args           []any
		}{
			{"INSERT INTO items (id, v) VALUES ($1, 'a'), ($2, 'b'), ($3, 'c')", "INSERT 0 3", "", []any{keysOn(0, 1)[0], keysOn(1, 1)[0], keysOn(2, 1)[0]}},
			{"SELECT id FROM items WHERE id > $1 ORDER BY id", "SELECT 3", "", []any{0}},
			{"UPDATE items SET v = v || $1", "UPDATE 3", "", []any{"x"}},
			{"SELECT id / (id - id) FROM items WHERE id > $1", "", "22012", []any{0}},
		} {
			mark := rec.mark()
			rows, _ := conn.Query(ctx, step.sql, step.args...)
			rows.Close()
			if codeOf(rows.Err()) != step.code {
				t.Errorf("%s: %s: %v", proto.name, step.sql, rows.Err())
			}
			checkFor(t, 5*time.Second, func() error {
				for _, ev := range rec.since(mark, "result") {
					if ev.tag == step.tag && ev.code == step.code {
						return nil
					}
				}
				return fmt.Errorf("%s: %s: no result event with tag %q and code %q: %+v", proto.name, step.sql, step.tag, step.code, rec.since(mark, "result"))
			})
		}
		if proto.mode == pgx.QueryExecModeSimpleProtocol {
			mark := rec.mark()
			if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%d\td\n%d\te\n", keysOn(0, 2)[1], keysOn(1, 2)[1])), "COPY items FROM STDIN"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY items TO STDOUT"); err != nil {
				t.Fatal(err)
			}
			checkFor(t, 5*time.Second, func() error {
				var tags []string
				for _, ev := range rec.since(mark, "result") {
					tags = append(tags, ev.tag)
				}
				if strings.Join(tags, ",") != "COPY 2,COPY 5" {
					return fmt.Errorf("COPY across shards: result events %v; want COPY 2, COPY 5", tags)
				}
				return nil
			})
		}
		// The memo plugin stores the merged result and answers from it: a row added on a
		// shard behind sluice's back does not change the answer.
		q := "SELECT count(*), 'memo_me' AS tag FROM items WHERE id > $1"
		read := func() int64 {
			t.Helper()
			var n int64
			var s string
			if proto.mode == pgx.QueryExecModeSimpleProtocol {
				if err := conn.QueryRow(ctx, q, 0).Scan(&n, &s); err != nil {
					t.Fatal(err)
				}
				return n
			}
			// pgconn's ExecParams describes the portal: its result can be stored.
			res := conn.PgConn().ExecParams(ctx, q, [][]byte{[]byte("0")}, nil, nil, nil).Read()
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			fmt.Sscan(string(res.Rows[0][0]), &n)
			return n
		}
		first := read()
		direct, err := pgx.Connect(ctx, pg.URL(dbs[2], appUser, appPass))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Exec(ctx, fmt.Sprintf("INSERT INTO items (id, v) VALUES (%d, 'behind')", keysOn(2, 3)[2])); err != nil {
			t.Fatal(err)
		}
		direct.Close(ctx)
		if second := read(); second != first {
			t.Errorf("%s: the memo plugin's stored result was not used: %d then %d", proto.name, first, second)
		}
	}
}
