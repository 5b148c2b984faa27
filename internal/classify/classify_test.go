package classify

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// classifyCase is one query and what the router must learn from it. Begin, End, the access
// modes and Neutral are always checked (their zero values are the common case); the tables
// only when tables is set; why only when not empty.
type classifyCase struct {
	name    string
	query   string
	opts    *Options // nil: the defaults
	write   bool
	why     string
	neutral bool

	begin, end    bool
	txAccess      Access
	sessionAccess Access

	tables        bool
	reads, writes []string

	parseErr bool
}

var classifyCases = []classifyCase{
	// Reads.
	{name: "constant select", query: "SELECT 1", tables: true},
	{name: "select with parameter", query: "select * from users where id = $1", tables: true, reads: []string{"users"}},
	{name: "join with schema", query: "SELECT a.id FROM public.accounts a JOIN orders o ON o.account_id = a.id",
		tables: true, reads: []string{"public.accounts", "orders"}},
	{name: "quoted identifier keeps case", query: `SELECT * FROM "Users" u, Items i`, tables: true, reads: []string{"Users", "items"}},
	{name: "read-only builtins", query: "SELECT count(*), max(x), now(), coalesce(a, b), lower(s) FROM t", tables: true, reads: []string{"t"}},
	{name: "values", query: "VALUES (1), (2)"},
	{name: "TABLE", query: "TABLE t", tables: true, reads: []string{"t"}},
	{name: "union", query: "SELECT * FROM t1 UNION SELECT * FROM t2", tables: true, reads: []string{"t1", "t2"}},
	{name: "set-returning function", query: "SELECT * FROM generate_series(1, 10) g"},
	{name: "server facts", query: "SELECT pg_is_in_recovery(), inet_server_port(), version(), current_setting('search_path')"},
	{name: "CTE name is not a table", query: "WITH x AS (SELECT * FROM t) SELECT * FROM x", tables: true, reads: []string{"t"}},
	{name: "recursive CTE", query: "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
		tables: true},
	{name: "non-recursive CTE body sees the table of the same name", query: "WITH t AS (SELECT * FROM t) SELECT * FROM t",
		tables: true, reads: []string{"t"}},
	{name: "CTE scope ends with its statement", query: "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x",
		tables: true, reads: []string{"x"}},
	{name: "subquery in FROM", query: "SELECT * FROM (SELECT * FROM inner_t) s", tables: true, reads: []string{"inner_t"}},
	{name: "EXISTS subquery", query: "SELECT EXISTS (SELECT 1 FROM t WHERE x = 1)", tables: true, reads: []string{"t"}},
	{name: "comments before the statement", query: "  -- a comment\n/* and /* a nested */ block */ SELECT 1"},
	{name: "COPY TO", query: "COPY t TO STDOUT", tables: true, reads: []string{"t"}},
	{name: "COPY query TO", query: "COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", tables: true, reads: []string{"t"}},
	{name: "EXPLAIN of a read", query: "EXPLAIN SELECT * FROM t", tables: true},
	{name: "EXPLAIN ANALYZE of a read", query: "EXPLAIN ANALYZE SELECT * FROM t", tables: true, reads: []string{"t"}},
	{name: "EXPLAIN of a write does not run it", query: "EXPLAIN INSERT INTO t VALUES (1)", tables: true},
	{name: "EXPLAIN with ANALYZE false", query: "EXPLAIN (ANALYZE false, COSTS off) DELETE FROM t"},
	{name: "EXPLAIN with ANALYZE off", query: "EXPLAIN (ANALYZE off) DELETE FROM t"},
	{name: "DECLARE cursor for a read", query: "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", tables: true, reads: []string{"t"}},
	{name: "PREPARE of a read", query: "PREPARE q(int) AS SELECT * FROM t WHERE id = $1"},
	{name: "grammar-made functions", query: "SELECT extract(year FROM now()), substring('abc' FROM 2), trim(' x '), ts AT TIME ZONE 'UTC' FROM t"},
	{name: "pg_sleep", query: "SELECT pg_sleep(0)"},
	{name: "two reads", query: "SELECT 1; SELECT * FROM t", tables: true, reads: []string{"t"}},

	// Writes: DML.
	{name: "INSERT", query: "INSERT INTO t (a) VALUES (1)", write: true, why: "InsertStmt", tables: true, writes: []string{"t"}},
	{name: "INSERT SELECT", query: "insert into s.t select * from u", write: true, tables: true, reads: []string{"u"}, writes: []string{"s.t"}},
	{name: "UPDATE FROM", query: "UPDATE t SET a = 1 FROM u WHERE t.id = u.id", write: true, why: "UpdateStmt",
		tables: true, reads: []string{"u"}, writes: []string{"t"}},
	{name: "DELETE USING RETURNING", query: "DELETE FROM t USING u WHERE t.id = u.id RETURNING t.*", write: true, why: "DeleteStmt",
		tables: true, reads: []string{"u"}, writes: []string{"t"}},
	{name: "MERGE", query: "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
		write: true, why: "MergeStmt", tables: true, reads: []string{"s"}, writes: []string{"t"}},
	{name: "upsert", query: "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v", write: true},
	{name: "INSERT reading its own table", query: "INSERT INTO t SELECT * FROM t", write: true,
		tables: true, reads: []string{"t"}, writes: []string{"t"}},

	// Writes: DDL and maintenance.
	{name: "CREATE TABLE", query: "CREATE TABLE t (id serial PRIMARY KEY)", write: true, why: "CreateStmt", tables: true, writes: []string{"t"}},
	{name: "CREATE TEMP TABLE", query: "CREATE TEMP TABLE tt (a int)", write: true},
	{name: "ALTER TABLE", query: "ALTER TABLE t ADD COLUMN c int", write: true, tables: true, writes: []string{"t"}},
	{name: "DROP TABLE", query: "DROP TABLE IF EXISTS a.b, c", write: true, why: "DropStmt", tables: true, writes: []string{"a.b", "c"}},
	{name: "DROP FUNCTION names no table", query: "DROP FUNCTION f(int)", write: true, tables: true},
	{name: "COMMENT", query: "COMMENT ON TABLE t IS 'x'", write: true},
	{name: "GRANT", query: "GRANT SELECT ON t TO bob", write: true},
	{name: "TRUNCATE", query: "TRUNCATE t1, t2", write: true, why: "TruncateStmt", tables: true, writes: []string{"t1", "t2"}},
	{name: "REINDEX", query: "REINDEX TABLE t", write: true},
	{name: "VACUUM", query: "VACUUM (ANALYZE) t", write: true},
	{name: "ANALYZE", query: "ANALYZE t", write: true},
	{name: "CLUSTER", query: "CLUSTER t USING t_pkey", write: true},
	{name: "REFRESH MATERIALIZED VIEW", query: "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", write: true, tables: true, writes: []string{"mv"}},
	{name: "CREATE INDEX", query: "CREATE INDEX CONCURRENTLY i ON t (a)", write: true},
	{name: "CREATE VIEW", query: "CREATE VIEW v AS SELECT * FROM base", write: true, tables: true, reads: []string{"base"}, writes: []string{"v"}},
	{name: "CREATE FUNCTION", query: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", write: true},
	{name: "CREATE TABLE AS", query: "CREATE TABLE n AS SELECT * FROM o", write: true, tables: true, reads: []string{"o"}, writes: []string{"n"}},
	{name: "CREATE MATERIALIZED VIEW", query: "CREATE MATERIALIZED VIEW mv AS SELECT * FROM o", write: true},
	{name: "SELECT INTO", query: "SELECT * INTO n FROM o", write: true, why: "SELECT INTO", tables: true, reads: []string{"o"}, writes: []string{"n"}},
	{name: "CHECKPOINT", query: "CHECKPOINT", write: true},

	// Writes: COPY FROM.
	{name: "COPY FROM", query: "COPY t (a, b) FROM STDIN WITH (FORMAT csv)", write: true, why: "COPY FROM", tables: true, writes: []string{"t"}},
	{name: "COPY of a DML query TO", query: "COPY (INSERT INTO t VALUES (1) RETURNING id) TO STDOUT", write: true, tables: true, writes: []string{"t"}},

	// Writes: row locks, anywhere.
	{name: "FOR UPDATE", query: "SELECT * FROM t WHERE id = 1 FOR UPDATE", write: true, why: "FOR UPDATE", tables: true, reads: []string{"t"}},
	{name: "FOR NO KEY UPDATE (pgcat #887)", query: "SELECT * FROM t WHERE id = 1 FOR NO KEY UPDATE", write: true, why: "FOR NO KEY UPDATE"},
	{name: "FOR SHARE", query: "SELECT * FROM t FOR SHARE OF t NOWAIT", write: true, why: "FOR SHARE", tables: true, reads: []string{"t"}},
	{name: "FOR KEY SHARE", query: "SELECT * FROM t FOR KEY SHARE SKIP LOCKED", write: true, why: "FOR KEY SHARE"},
	{name: "FOR UPDATE in a subquery", query: "SELECT * FROM (SELECT * FROM t FOR UPDATE) s", write: true},
	{name: "FOR UPDATE in an IN subquery", query: "SELECT 1 FROM t WHERE x IN (SELECT y FROM u FOR UPDATE)", write: true},
	{name: "FOR UPDATE in a CTE", query: "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", write: true},

	// Writes: CTEs that write.
	{name: "CTE INSERT (pgcat #829)", query: "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
		write: true, why: "InsertStmt", tables: true, writes: []string{"t"}},
	{name: "CTE DELETE", query: "WITH d AS (DELETE FROM q WHERE id = 1 RETURNING *) SELECT count(*) FROM d",
		write: true, tables: true, writes: []string{"q"}},
	{name: "CTE UPDATE", query: "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u, other",
		write: true, tables: true, reads: []string{"other"}, writes: []string{"t"}},
	{name: "nested CTE write", query: "SELECT * FROM (WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x) s", write: true},

	// Writes: write functions, anywhere in the tree.
	{name: "nextval (pgcat #489)", query: "SELECT nextval('s')", write: true, why: "function nextval"},
	{name: "schema-qualified nextval", query: "SELECT pg_catalog.nextval('s')", write: true, why: "function pg_catalog.nextval"},
	{name: "upper-case function name", query: "SELECT NEXTVAL('s')", write: true},
	{name: "setval", query: "SELECT setval('s', 10)", write: true},
	{name: "currval needs the primary's session", query: "SELECT currval('s')", write: true},
	{name: "advisory lock", query: "SELECT pg_advisory_lock(1)", write: true, why: "function pg_advisory_lock"},
	{name: "try advisory xact lock", query: "SELECT pg_try_advisory_xact_lock(1)", write: true},
	{name: "advisory unlock in CASE", query: "SELECT CASE WHEN a THEN pg_advisory_unlock(1) END FROM t", write: true},
	{name: "lo_create", query: "SELECT lo_create(0)", write: true},
	{name: "lo_import", query: "SELECT lo_import('/tmp/x')", write: true},
	{name: "lowrite", query: "SELECT lowrite(0, 'x')", write: true},
	{name: "lo_from_bytea", query: "SELECT lo_from_bytea(0, '\\x00')", write: true},
	{name: "pg_notify", query: "SELECT pg_notify('c', 'x')", write: true},
	{name: "set_config", query: "SELECT set_config('a.b', 'c', false)", write: true},
	{name: "create replication slot", query: "SELECT pg_create_logical_replication_slot('s', 'pgoutput')", write: true},
	{name: "drop replication slot", query: "SELECT pg_drop_replication_slot('s')", write: true},
	{name: "txid_current", query: "SELECT txid_current()", write: true},
	{name: "pg_current_xact_id", query: "SELECT pg_current_xact_id()", write: true},
	{name: "write function in WHERE", query: "SELECT * FROM t WHERE id = nextval('s')", write: true},
	{name: "write function in FROM", query: "SELECT * FROM nextval('s')", write: true},
	{name: "write function in VALUES", query: "VALUES (nextval('s'))", write: true},
	{name: "write function in a scalar subquery", query: "SELECT (SELECT nextval('s'))", write: true},
	{name: "write function in ORDER BY", query: "SELECT a FROM t ORDER BY setval('s', a)", write: true},
	{name: "write function as a column default", query: "CREATE TABLE t (id int DEFAULT nextval('s'))", write: true},

	// Writes: other statements.
	{name: "LOCK", query: "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", write: true, why: "LockStmt"},
	{name: "EXPLAIN ANALYZE of a write", query: "EXPLAIN ANALYZE INSERT INTO t VALUES (1)", write: true, tables: true, writes: []string{"t"}},
	{name: "EXPLAIN (ANALYZE, BUFFERS) of a write", query: "EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", write: true},
	{name: "EXPLAIN ANALYZE of a write function", query: "EXPLAIN ANALYZE SELECT nextval('s')", write: true},
	{name: "CALL", query: "CALL p(1)", write: true, why: "CallStmt"},
	{name: "DO", query: "DO $$ BEGIN PERFORM 1; END $$", write: true, why: "DoStmt"},
	{name: "PREPARE of a write", query: "PREPARE q AS INSERT INTO t VALUES ($1)", write: true},
	{name: "EXECUTE", query: "EXECUTE q(1)", write: true, why: "EXECUTE"},
	{name: "DECLARE cursor FOR UPDATE", query: "DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", write: true},
	{name: "LISTEN", query: "LISTEN chan", write: true, why: "LISTEN"},
	{name: "NOTIFY", query: "NOTIFY chan, 'x'", write: true, why: "NOTIFY"},
	{name: "UNLISTEN", query: "UNLISTEN *", write: true},
	{name: "COMMIT PREPARED", query: "COMMIT PREPARED 'x'", write: true},

	// Several statements: a write anywhere makes the text a write.
	{name: "write at the end", query: "SELECT 1; SELECT 2; DELETE FROM t", write: true, why: "DeleteStmt",
		tables: true, writes: []string{"t"}},
	{name: "read after write", query: "UPDATE t SET a = 1; SELECT * FROM t", write: true, tables: true, reads: []string{"t"}, writes: []string{"t"}},
	{name: "transaction block with a read", query: "BEGIN; SELECT * FROM t; COMMIT", begin: true, end: true},
	{name: "transaction block with a write", query: "BEGIN; INSERT INTO t VALUES (1); COMMIT;", write: true, begin: true, end: true},

	// Parse failures go to the primary (pgcat #884, #865).
	{name: "misspelt keyword", query: "SELEC 1", write: true, why: "parse error", parseErr: true},
	{name: "incomplete", query: "SELECT * FROM", write: true, parseErr: true},
	{name: "unterminated string", query: "SELECT 'abc", write: true, parseErr: true},
	{name: "bad second statement", query: "SELECT 1; SELEC 2", write: true, parseErr: true},
	{name: "zero byte", query: "SELECT 1\x00; DELETE FROM t", write: true, parseErr: true},

	// Neutral: settings and transaction control.
	{name: "SET", query: "SET search_path TO a, b", neutral: true},
	{name: "SHOW", query: "SHOW search_path", neutral: true},
	{name: "RESET", query: "RESET search_path", neutral: true},
	{name: "DISCARD ALL", query: "DISCARD ALL", neutral: true, sessionAccess: AccessDefault},
	{name: "DEALLOCATE", query: "DEALLOCATE ALL", neutral: true},
	{name: "FETCH", query: "FETCH 10 FROM c", neutral: true},
	{name: "CLOSE", query: "CLOSE c", neutral: true},
	{name: "empty", query: "", neutral: true},
	{name: "only a semicolon", query: " ; ", neutral: true},
	{name: "only a comment", query: "-- nothing here", neutral: true},
	{name: "BEGIN", query: "BEGIN", neutral: true, begin: true},
	{name: "BEGIN READ ONLY", query: "BEGIN READ ONLY", neutral: true, begin: true, txAccess: AccessReadOnly},
	{name: "START TRANSACTION READ WRITE", query: "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE",
		neutral: true, begin: true, txAccess: AccessReadWrite},
	{name: "BEGIN serializable read only deferrable", query: "begin transaction isolation level serializable read only deferrable",
		neutral: true, begin: true, txAccess: AccessReadOnly},
	{name: "COMMIT", query: "COMMIT", neutral: true, end: true},
	{name: "END", query: "END", neutral: true, end: true},
	{name: "ROLLBACK", query: "ROLLBACK", neutral: true, end: true},
	{name: "ABORT", query: "ABORT", neutral: true, end: true},
	{name: "COMMIT AND CHAIN", query: "COMMIT AND CHAIN", neutral: true, end: true, begin: true},
	{name: "PREPARE TRANSACTION", query: "PREPARE TRANSACTION 'x'", neutral: true, end: true},
	{name: "SAVEPOINT", query: "SAVEPOINT s", neutral: true},
	{name: "ROLLBACK TO SAVEPOINT does not end", query: "ROLLBACK TO SAVEPOINT s", neutral: true},
	{name: "RELEASE SAVEPOINT", query: "RELEASE SAVEPOINT s", neutral: true},
	{name: "SET TRANSACTION READ ONLY", query: "SET TRANSACTION READ ONLY", neutral: true, txAccess: AccessReadOnly},
	{name: "SET TRANSACTION isolation only", query: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", neutral: true},
	{name: "SET transaction_read_only", query: "SET transaction_read_only = on", neutral: true, txAccess: AccessReadOnly},
	{name: "SET SESSION CHARACTERISTICS READ ONLY", query: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
		neutral: true, sessionAccess: AccessReadOnly},
	{name: "SET SESSION CHARACTERISTICS READ WRITE", query: "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
		neutral: true, sessionAccess: AccessReadWrite},
	{name: "default_transaction_read_only on", query: "SET default_transaction_read_only = on", neutral: true, sessionAccess: AccessReadOnly},
	{name: "default_transaction_read_only off", query: "set default_transaction_read_only to off", neutral: true, sessionAccess: AccessReadWrite},
	{name: "default_transaction_read_only quoted true", query: "SET SESSION default_transaction_read_only = 'true'", neutral: true, sessionAccess: AccessReadOnly},
	{name: "default_transaction_read_only 1, any case", query: `SET "Default_Transaction_Read_Only" = 1`, neutral: true, sessionAccess: AccessReadOnly},
	{name: "default_transaction_read_only LOCAL", query: "SET LOCAL default_transaction_read_only = on", neutral: true},
	{name: "default_transaction_read_only reset", query: "RESET default_transaction_read_only", neutral: true, sessionAccess: AccessDefault},
	{name: "default_transaction_read_only to default", query: "SET default_transaction_read_only TO DEFAULT", neutral: true, sessionAccess: AccessDefault},
	{name: "RESET ALL", query: "RESET ALL", neutral: true, sessionAccess: AccessDefault},
	{name: "last setting wins", query: "SET default_transaction_read_only = on; SET default_transaction_read_only = off",
		neutral: true, sessionAccess: AccessReadWrite},

	// Strict functions.
	{name: "unknown function, not strict", query: "SELECT my_func(1)"},
	{name: "unknown function, strict", query: "SELECT my_func(1)", opts: &Options{StrictFunctions: true},
		write: true, why: "function my_func (strict_functions)"},
	{name: "read-only builtins, strict", query: "SELECT count(*), lower(name), jsonb_build_object('a', 1), to_char(now(), 'YYYY') FROM t",
		opts: &Options{StrictFunctions: true}},
	{name: "grammar-made functions, strict", query: "SELECT extract(year FROM now()), substring('abc' FROM 2), trim(' x ')",
		opts: &Options{StrictFunctions: true}},
	{name: "pg_catalog builtin, strict", query: "SELECT pg_catalog.lower('X')", opts: &Options{StrictFunctions: true}},
	{name: "builtin name in another schema, strict", query: "SELECT myschema.lower('X')", opts: &Options{StrictFunctions: true}, write: true},
	{name: "listed read function, strict", query: "SELECT reports.monthly(), daily()",
		opts: &Options{StrictFunctions: true, ReadFunctions: []string{"reports.monthly", "DAILY"}}},
	{name: "listed read function in the wrong schema, strict", query: "SELECT other.monthly()",
		opts: &Options{StrictFunctions: true, ReadFunctions: []string{"reports.monthly"}}, write: true},
	{name: "write list wins over read list", query: "SELECT nextval('s')",
		opts: &Options{StrictFunctions: true, ReadFunctions: []string{"nextval"}}, write: true},

	// Configured write functions add to the built-in ones.
	{name: "configured write function, qualified", query: "SELECT billing.charge(1)",
		opts: &Options{WriteFunctions: []string{"billing.charge"}}, write: true, why: "function billing.charge"},
	{name: "configured write function, unqualified call", query: "SELECT charge(1)",
		opts: &Options{WriteFunctions: []string{"billing.charge"}}, write: true},
	{name: "configured write function, other schema", query: "SELECT other.charge(1)",
		opts: &Options{WriteFunctions: []string{"billing.charge"}}},
	{name: "configured list keeps the built-in one", query: "SELECT nextval('s')",
		opts: &Options{WriteFunctions: []string{"billing.charge"}}, write: true},
	{name: "configured wildcard", query: "SELECT audit_log_insert('x')",
		opts: &Options{WriteFunctions: []string{"Audit_*"}}, write: true},

	// pgcat's commands are answered by sluice, never sent.
	{name: "pgcat command", query: "SET SERVER ROLE TO 'replica'", neutral: true},
}

func TestClassify(t *testing.T) {
	if n := len(classifyCases); n < 70 {
		t.Fatalf("only %d cases; the acceptance asks for at least 70", n)
	}
	def := New(Options{})
	for _, tc := range classifyCases {
		t.Run(tc.name, func(t *testing.T) {
			c := def
			if tc.opts != nil {
				c = New(*tc.opts)
			}
			r := c.Classify([]byte(tc.query))
			if r.Write != tc.write {
				t.Errorf("%q: Write = %v (why %q, err %v), want %v", tc.query, r.Write, r.Why, r.ParseErr, tc.write)
			}
			if tc.why != "" && r.Why != tc.why {
				t.Errorf("%q: Why = %q, want %q", tc.query, r.Why, tc.why)
			}
			if r.Neutral != tc.neutral {
				t.Errorf("%q: Neutral = %v, want %v", tc.query, r.Neutral, tc.neutral)
			}
			if r.Begin != tc.begin || r.End != tc.end {
				t.Errorf("%q: Begin, End = %v, %v, want %v, %v", tc.query, r.Begin, r.End, tc.begin, tc.end)
			}
			if r.TxAccess != tc.txAccess || r.SessionAccess != tc.sessionAccess {
				t.Errorf("%q: TxAccess, SessionAccess = %v, %v, want %v, %v", tc.query,
					r.TxAccess, r.SessionAccess, tc.txAccess, tc.sessionAccess)
			}
			if tc.tables {
				if !slices.Equal(r.Reads, tc.reads) || !slices.Equal(r.Writes, tc.writes) {
					t.Errorf("%q: Reads, Writes = %q, %q, want %q, %q", tc.query, r.Reads, r.Writes, tc.reads, tc.writes)
				}
			}
			if (r.ParseErr != nil) != tc.parseErr {
				t.Errorf("%q: ParseErr = %v, want an error: %v", tc.query, r.ParseErr, tc.parseErr)
			}
			// Whatever the text, these hold.
			if r.Write && r.Neutral {
				t.Errorf("%q: both Write and Neutral", tc.query)
			}
			if r.Write != (r.Why != "") {
				t.Errorf("%q: Write = %v but Why = %q", tc.query, r.Write, r.Why)
			}
		})
	}
}

func TestClassifyCommand(t *testing.T) {
	c := New(Options{})
	r := c.Classify([]byte("set server role to 'REPLICA';"))
	if r.Command == nil || r.Command.Kind != SetServerRole || r.Command.Value != "replica" || r.CommandErr != nil {
		t.Fatalf("Command, CommandErr = %+v, %v; want SET SERVER ROLE replica", r.Command, r.CommandErr)
	}
	r = c.Classify([]byte("SET SERVER ROLE TO 'bogus'"))
	var ce *CommandError
	if r.Command != nil || !errors.As(r.CommandErr, &ce) || ce.Code != CodeInvalidParameterValue {
		t.Fatalf("Command, CommandErr = %+v, %v; want a 22023 CommandError", r.Command, r.CommandErr)
	}
	if r.Write || r.ParseErr != nil {
		t.Fatalf("a malformed command is answered, not sent: Write %v, ParseErr %v", r.Write, r.ParseErr)
	}
}

func TestClassifyCachesPerText(t *testing.T) {
	c := New(Options{})
	q := []byte("SELECT * FROM t WHERE id = $1")
	r1 := c.Classify(q)
	q[len(q)-1] = '2' // Classify must not keep the caller's buffer
	r2 := c.Classify([]byte("SELECT * FROM t WHERE id = $1"))
	if r1 != r2 {
		t.Fatal("the second Classify of a text did not return the cached Result")
	}
	if r3 := c.Classify(q); r3 == r1 {
		t.Fatal("a different text returned the same Result")
	}
	allocs := testing.AllocsPerRun(1000, func() { c.Classify([]byte("SELECT * FROM t WHERE id = $1")) })
	if allocs != 0 {
		t.Fatalf("a cache hit allocates %v times", allocs)
	}
}

func TestClassifyWithoutCache(t *testing.T) {
	c := New(Options{CacheSize: -1})
	if c.cache != nil {
		t.Fatal("CacheSize -1 left a cache")
	}
	r1, r2 := c.Classify([]byte("SELECT 1")), c.Classify([]byte("SELECT 1"))
	if r1 == r2 || r1.Write || r2.Write {
		t.Fatalf("without a cache each call classifies: %p %p", r1, r2)
	}
}

func TestClassifyTooLong(t *testing.T) {
	c := New(Options{MaxLength: 100})
	long := []byte("SELECT " + strings.Repeat("1, ", 40) + "1")
	r := c.Classify(long)
	if !r.Write || !errors.Is(r.ParseErr, ErrTooLong) {
		t.Fatalf("a text over MaxLength: Write %v, ParseErr %v; want a write with ErrTooLong", r.Write, r.ParseErr)
	}
	if c.Classify(long) == r {
		t.Fatal("a text over MaxLength was cached")
	}
	if r := c.Classify([]byte("SET SERVER ROLE TO 'primary'" + strings.Repeat(" ", 100))); r.Command == nil {
		t.Fatal("a long pgcat command was not recognised")
	}
}

// TestClassifyDeepNesting: pg_query's C code recurses once per tree level, and a
// left-nested expression adds a level every two bytes; past about 20,000 levels it
// overflows an 8 MiB stack and the process dies. The length limit keeps texts below that.
func TestClassifyDeepNesting(t *testing.T) {
	c := New(Options{CacheSize: -1})
	for _, q := range []string{
		"SELECT 1" + strings.Repeat("+1", (DefaultMaxLength-8)/2),
		"SELECT 1" + strings.Repeat("+1", 100_000),
		"SELECT " + strings.Repeat("f(", DefaultMaxLength/2),
		"SELECT " + strings.Repeat("(", DefaultMaxLength),
		"SELECT " + strings.Repeat("NOT ", DefaultMaxLength/4) + "true",
	} {
		if r := c.Classify([]byte(q)); !r.Write || r.ParseErr == nil {
			t.Errorf("%.20q... (%d bytes): Write %v, ParseErr %v; want a write with an error", q, len(q), r.Write, r.ParseErr)
		}
	}
}
