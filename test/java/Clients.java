// The PostgreSQL JDBC driver (pgjdbc) through sluice. test/e2e/java_test.go compiles this file
// against Debian's /usr/share/java/postgresql.jar (javac, no build tool) and runs it with the
// environment below and the checks to run as arguments. Each check prints "ok <name>" when it
// passes, or "FAIL <name>: <why>" (the stack trace on stderr); the run goes on with the next
// check and ends with "all ok" when every check passed, else it exits with status 1.
//
// Environment: SLUICE_HOST, SLUICE_PORT, SLUICE_USER, SLUICE_PASSWORD, SLUICE_DB, and
// SLUICE_TABLE_PREFIX, which starts the name of every table a check creates.

import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyIn;
import org.postgresql.copy.CopyManager;

public class Clients {
    static final String host = env("SLUICE_HOST");
    static final String port = env("SLUICE_PORT");
    static final String user = env("SLUICE_USER");
    static final String password = env("SLUICE_PASSWORD");
    static final String db = env("SLUICE_DB");
    static final String prefix = env("SLUICE_TABLE_PREFIX");

    interface Check {
        void run() throws Exception;
    }

    static final Map<String, Check> checks = new LinkedHashMap<>();

    static {
        checks.put("prepared statements", () -> preparedTypes(props(), 12, true));
        checks.put("prepareThreshold=1", () -> preparedTypes(props("prepareThreshold", "1"), 6, true));
        checks.put("prepareThreshold=-1 binary", () -> preparedTypes(props("prepareThreshold", "-1"), 6, true));
        checks.put("binaryTransfer=false", () -> preparedTypes(props("binaryTransfer", "false"), 8, true));
        checks.put("preferQueryMode=simple", () -> {
            preparedTypes(props("preferQueryMode", "simple"), 8, false);
            simpleMultiStatement(props("preferQueryMode", "simple"));
        });
        checks.put("preferQueryMode=extendedForPrepared", () -> {
            preparedTypes(props("preferQueryMode", "extendedForPrepared"), 8, true);
            simpleMultiStatement(props("preferQueryMode", "extendedForPrepared"));
        });
        checks.put("preferQueryMode=extendedCacheEverything", () -> preparedTypes(props("preferQueryMode", "extendedCacheEverything"), 8, true));
        checks.put("statement reprepared after DDL", Clients::reprepareAfterDDL);
        checks.put("batch inserts", () -> batchInserts(props(), "batch", false));
        checks.put("batch inserts reWriteBatchedInserts", () -> batchInserts(props("reWriteBatchedInserts", "true"), "batchrw", true));
        checks.put("batch error", Clients::batchError);
        checks.put("transactions", Clients::transactions);
        checks.put("autosave", Clients::autosave);
        checks.put("fetch size", Clients::fetchSize);
        checks.put("copy", Clients::copy);
        checks.put("cancel", Clients::cancel);
        checks.put("query timeout", Clients::queryTimeout);
        checks.put("metadata", Clients::metadata);
        checks.put("application name", Clients::applicationName);
        checks.put("parameter status", Clients::parameterStatus);
        checks.put("concurrent clients", Clients::concurrentClients);
        checks.put("SET search_path stays with its client", Clients::searchPath);
    }

    public static void main(String[] args) throws Exception {
        Class.forName("org.postgresql.Driver");
        boolean failed = false;
        for (String name : args) {
            Check c = checks.get(name);
            if (c == null) {
                System.out.println("FAIL " + name + ": no such check");
                failed = true;
                continue;
            }
            try {
                c.run();
                System.out.println("ok " + name);
            } catch (Throwable t) {
                failed = true;
                System.out.println("FAIL " + name + ": " + t);
                System.err.println("check " + name + ":");
                t.printStackTrace();
            }
            System.out.flush();
        }
        if (failed) {
            System.exit(1);
        }
        System.out.println("all ok");
    }

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            System.err.println(name + " is not set");
            System.exit(2);
        }
        return v;
    }

    static Properties props(String... kv) {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", password);
        p.setProperty("sslmode", "disable");
        p.setProperty("connectTimeout", "20");
        p.setProperty("socketTimeout", "60");
        for (int i = 0; i < kv.length; i += 2) {
            p.setProperty(kv[i], kv[i + 1]);
        }
        return p;
    }

    static Connection connect(Properties p) throws SQLException {
        return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + db, p);
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void eq(Object got, Object want, String what) {
        if (got == null ? want != null : !got.equals(want)) {
            throw new AssertionError(what + ": got " + got + ", want " + want);
        }
    }

    static String sqlState(Throwable t) {
        for (; t != null; t = t.getCause()) {
            if (t instanceof SQLException) {
                return ((SQLException) t).getSQLState();
            }
        }
        return null;
    }

    // expectState runs c and checks that it fails with the SQLSTATE state.
    static void expectState(String state, Check c) throws Exception {
        try {
            c.run();
        } catch (SQLException e) {
            eq(e.getSQLState(), state, "SQLSTATE of " + e.getMessage());
            return;
        }
        throw new AssertionError("no error, want SQLSTATE " + state);
    }

    static long count(Connection c, String table) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM " + table)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    static void exec(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.execute(sql);
        }
    }

    static String queryString(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            check(rs.next(), "a row from " + sql);
            return rs.getString(1);
        }
    }

    // preparedTypes runs one PreparedStatement many times (past prepareThreshold, so pgjdbc moves
    // to a named server statement and binary transfer) with parameters of many types, and checks
    // every value that comes back. A second statement is interleaved with it, so the connection
    // has more than one named statement. named says whether pgjdbc must end up with a server
    // prepared statement (not in simple query mode).
    static void preparedTypes(Properties p, int rounds, boolean named) throws Exception {
        // pgjdbc cannot put a bytea parameter into the text of a simple Query (it fails against
        // Postgres alone, too): there the bytes go as hex text.
        boolean simple = "simple".equals(p.getProperty("preferQueryMode"));
        try (Connection c = connect(p)) {
            String sql = "SELECT ?::int4 + 1, ?::int8 * 2, ?::text || '!', ?::timestamp + interval '1 day',"
                    + " ?::numeric * 2, " + (simple ? "decode(?::text, 'hex')" : "?::bytea") + ", ?::int4[], ?::text[], ?::text IS NULL, ?::text, ?::float8 / 2, ?::bool";
            try (PreparedStatement ps = c.prepareStatement(sql);
                    PreparedStatement other = c.prepareStatement("SELECT length(?::text), ?::int8 - 1")) {
                for (int i = 0; i < rounds; i++) {
                    int n = 1000 * i - 7;
                    long big = 9_000_000_000L + i;
                    String text = "héllo 'quoted' \\ \"" + i + "\" ünï";
                    LocalDateTime at = LocalDateTime.of(2024, 2, 28, 23, 59, 58, 123456000).plusMinutes(i);
                    BigDecimal num = new BigDecimal("12345678901234567890.0123456789").add(BigDecimal.valueOf(i));
                    byte[] bytes = {0, 1, (byte) 255, (byte) i, '\\', '\''};
                    ps.setInt(1, n);
                    ps.setLong(2, big);
                    ps.setString(3, text);
                    ps.setTimestamp(4, Timestamp.valueOf(at));
                    ps.setBigDecimal(5, num);
                    if (simple) {
                        ps.setString(6, java.util.HexFormat.of().formatHex(bytes));
                    } else {
                        ps.setBytes(6, bytes);
                    }
                    ps.setArray(7, c.createArrayOf("int4", new Integer[] {i, null, -i}));
                    ps.setArray(8, c.createArrayOf("text", new String[] {"a,b", "{c}", null, "\"d\""}));
                    ps.setNull(9, java.sql.Types.VARCHAR);
                    ps.setNull(10, java.sql.Types.VARCHAR);
                    ps.setDouble(11, 3.5 * i);
                    ps.setBoolean(12, i % 2 == 0);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "a row");
                        eq(rs.getInt(1), n + 1, "int4 round " + i);
                        eq(rs.getLong(2), big * 2, "int8 round " + i);
                        eq(rs.getString(3), text + "!", "text round " + i);
                        eq(rs.getTimestamp(4).toLocalDateTime(), at.plusDays(1), "timestamp round " + i);
                        eq(rs.getBigDecimal(5), num.multiply(BigDecimal.valueOf(2)), "numeric round " + i);
                        check(Arrays.equals(rs.getBytes(6), bytes), "bytea round " + i + ": " + Arrays.toString(rs.getBytes(6)));
                        Array ai = rs.getArray(7);
                        check(Arrays.equals((Object[]) ai.getArray(), new Integer[] {i, null, -i}),
                                "int4[] round " + i + ": " + Arrays.toString((Object[]) ai.getArray()));
                        Array at2 = rs.getArray(8);
                        check(Arrays.equals((Object[]) at2.getArray(), new String[] {"a,b", "{c}", null, "\"d\""}),
                                "text[] round " + i + ": " + Arrays.toString((Object[]) at2.getArray()));
                        eq(rs.getBoolean(9), true, "null parameter IS NULL round " + i);
                        eq(rs.getString(10), null, "null round " + i);
                        check(rs.wasNull(), "wasNull round " + i);
                        eq(rs.getDouble(11), 3.5 * i / 2, "float8 round " + i);
                        eq(rs.getBoolean(12), i % 2 == 0, "bool round " + i);
                        check(!rs.next(), "one row");
                    }
                    other.setString(1, text);
                    other.setLong(2, big);
                    try (ResultSet rs = other.executeQuery()) {
                        check(rs.next(), "a row");
                        eq(rs.getInt(1), text.length(), "length round " + i);
                        eq(rs.getLong(2), big - 1, "int8 - 1 round " + i);
                    }
                }
                if (named) {
                    check(ps.unwrap(PGStatement.class).isUseServerPrepare(), "the statement is a server prepared statement");
                }
            }
        }
    }

    // simpleMultiStatement runs two statements in one string and reads both results.
    static void simpleMultiStatement(Properties p) throws Exception {
        try (Connection c = connect(p); Statement st = c.createStatement()) {
            check(st.execute("SELECT 1 AS a; SELECT 'two' AS b, 3 AS c"), "a result set");
            try (ResultSet rs = st.getResultSet()) {
                check(rs.next(), "first row");
                eq(rs.getInt(1), 1, "first result");
            }
            check(st.getMoreResults(), "a second result set");
            try (ResultSet rs = st.getResultSet()) {
                check(rs.next(), "second row");
                eq(rs.getString(1), "two", "second result");
                eq(rs.getInt(2), 3, "second result's second column");
            }
            check(!st.getMoreResults() && st.getUpdateCount() == -1, "no third result");
        }
    }

    // reprepareAfterDDL changes a table under a prepared "SELECT *": Postgres then fails the
    // server statement ("cached plan must not change result type", 0A000), and pgjdbc, in
    // autocommit, prepares it again and runs it once more. The second try must see the new column.
    static void reprepareAfterDDL() throws Exception {
        String t = prefix + "_ddl";
        try (Connection c = connect(props("prepareThreshold", "1"))) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (id int, a text)");
            exec(c, "INSERT INTO " + t + " VALUES (1, 'one')");
            try (PreparedStatement ps = c.prepareStatement("SELECT * FROM " + t + " WHERE id = ?")) {
                for (int i = 0; i < 3; i++) {
                    ps.setInt(1, 1);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "a row");
                        eq(rs.getMetaData().getColumnCount(), 2, "columns before");
                        eq(rs.getString(2), "one", "a");
                    }
                }
                exec(c, "ALTER TABLE " + t + " ADD COLUMN b text DEFAULT 'bee'");
                for (int i = 0; i < 3; i++) {
                    ps.setInt(1, 1);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "a row");
                        eq(rs.getMetaData().getColumnCount(), 3, "columns after ALTER, round " + i);
                        eq(rs.getString(3), "bee", "b");
                    }
                }
            }
            exec(c, "DROP TABLE " + t);
        }
    }

    // batchInserts inserts rows with executeBatch, reading back the generated keys.
    static void batchInserts(Properties p, String name, boolean rewrite) throws Exception {
        String t = prefix + "_" + name;
        try (Connection c = connect(p)) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (id serial PRIMARY KEY, n int NOT NULL, s text, at timestamp)");
            final int rows = 300;
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + t + " (n, s, at) VALUES (?, ?, ?)",
                    Statement.RETURN_GENERATED_KEYS)) {
                for (int i = 0; i < rows; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "row " + i);
                    ps.setTimestamp(3, Timestamp.valueOf(LocalDateTime.of(2024, 1, 1, 0, 0).plusSeconds(i)));
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                eq(counts.length, rows, "update counts");
                for (int k : counts) {
                    check(k == 1 || (rewrite && k == Statement.SUCCESS_NO_INFO), "update count " + k);
                }
                List<Integer> keys = new ArrayList<>();
                try (ResultSet rs = ps.getGeneratedKeys()) {
                    while (rs.next()) {
                        keys.add(rs.getInt("id"));
                    }
                }
                eq(keys.size(), rows, "generated keys");
                eq(new HashSet<>(keys).size(), rows, "distinct generated keys");
            }
            // A second batch in a transaction, rolled back, then one committed.
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + t + " (n, s) VALUES (?, ?)")) {
                for (int i = 0; i < 50; i++) {
                    ps.setInt(1, 1000 + i);
                    ps.setString(2, "rolled back");
                    ps.addBatch();
                }
                ps.executeBatch();
                c.rollback();
                for (int i = 0; i < 50; i++) {
                    ps.setInt(1, 2000 + i);
                    ps.setString(2, "committed");
                    ps.addBatch();
                }
                ps.executeBatch();
                c.commit();
            }
            c.setAutoCommit(true);
            eq(count(c, t), (long) rows + 50, "rows");
            try (Statement st = c.createStatement();
                    ResultSet rs = st.executeQuery("SELECT n, s, at FROM " + t + " WHERE n < 1000 ORDER BY id")) {
                for (int i = 0; i < rows; i++) {
                    check(rs.next(), "row " + i);
                    eq(rs.getInt(1), i, "n");
                    eq(rs.getString(2), "row " + i, "s");
                    eq(rs.getTimestamp(3).toLocalDateTime(), LocalDateTime.of(2024, 1, 1, 0, 0).plusSeconds(i), "at");
                }
                check(!rs.next(), "no more rows");
            }
            eq(queryString(c, "SELECT count(*) FROM " + t + " WHERE s = 'committed'"), "50", "committed batch");
            // A single insert's generated key.
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + t + " (n, s) VALUES (?, ?)", new String[] {"id", "s"})) {
                ps.setInt(1, 7);
                ps.setString(2, "single");
                eq(ps.executeUpdate(), 1, "single insert");
                try (ResultSet rs = ps.getGeneratedKeys()) {
                    check(rs.next(), "a generated key");
                    check(rs.getInt(1) > 0, "id");
                    eq(rs.getString(2), "single", "returned s");
                }
            }
            exec(c, "DROP TABLE " + t);
        }
    }

    // batchError fails one statement in the middle of a batch: pgjdbc reports a
    // BatchUpdateException and, in autocommit, the rows before it stay.
    static void batchError() throws Exception {
        String t = prefix + "_batcherr";
        try (Connection c = connect(props())) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (id int PRIMARY KEY)");
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + t + " VALUES (?)")) {
                for (int id : new int[] {1, 2, 3, 2, 5}) {
                    ps.setInt(1, id);
                    ps.addBatch();
                }
                try {
                    ps.executeBatch();
                    throw new AssertionError("no error from a batch with a duplicate key");
                } catch (BatchUpdateException e) {
                    eq(sqlState(e.getNextException() != null ? e.getNextException() : e), "23505", "SQLSTATE");
                }
            }
            // pgjdbc sends the whole batch before one Sync: in autocommit it is one transaction,
            // so Postgres rolls every row back.
            eq(count(c, t), 0L, "rows after the failed batch");
            eq(queryString(c, "SELECT 'still usable'"), "still usable", "the connection after a failed batch");
            exec(c, "DROP TABLE " + t);
        }
    }

    static void transactions() throws Exception {
        String t = prefix + "_tx";
        try (Connection c = connect(props())) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, s text)");
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + t + " VALUES (?, ?)")) {
                ins.setInt(1, 1);
                ins.setString(2, "rolled back");
                ins.executeUpdate();
                eq(count(c, t), 1L, "own insert seen inside the transaction");
                c.rollback();
                eq(count(c, t), 0L, "rows after rollback");
                c.commit();

                for (int i = 1; i <= 6; i++) { // past prepareThreshold, inside transactions
                    ins.setInt(1, i);
                    ins.setString(2, "committed " + i);
                    ins.executeUpdate();
                }
                c.commit();
                eq(count(c, t), 6L, "rows after commit");
                c.commit();

                // Savepoints.
                ins.setInt(1, 10);
                ins.setString(2, "before savepoint");
                ins.executeUpdate();
                Savepoint sp = c.setSavepoint();
                ins.setInt(1, 11);
                ins.setString(2, "after savepoint");
                ins.executeUpdate();
                c.rollback(sp);
                Savepoint named = c.setSavepoint("named");
                ins.setInt(1, 12);
                ins.setString(2, "after named savepoint");
                ins.executeUpdate();
                c.releaseSavepoint(named);
                c.commit();
                eq(queryString(c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM " + t + " WHERE id >= 10"), "10,12", "rows after savepoints");
                c.commit();

                // An error inside a transaction aborts it until the rollback.
                ins.setInt(1, 20);
                ins.setString(2, "lost");
                ins.executeUpdate();
                expectState("42P01", () -> exec(c, "SELECT * FROM " + t + "_missing"));
                expectState("25P02", () -> exec(c, "SELECT 1"));
                c.rollback();
                eq(count(c, t), 8L, "rows after the failed transaction");
                c.commit();

                // An error after a savepoint, rolled back to it: the transaction goes on.
                ins.setInt(1, 30);
                ins.setString(2, "kept");
                ins.executeUpdate();
                Savepoint sp2 = c.setSavepoint();
                ins.setInt(1, 30);
                ins.setString(2, "duplicate");
                expectState("23505", ins::executeUpdate);
                c.rollback(sp2);
                ins.setInt(1, 31);
                ins.setString(2, "kept too");
                ins.executeUpdate();
                c.commit();
                eq(queryString(c, "SELECT string_agg(s, ',' ORDER BY id) FROM " + t + " WHERE id >= 30"), "kept,kept too", "rows after savepoint rollback");
                c.commit();
            }
            c.setAutoCommit(true);
            // A read-only transaction.
            c.setReadOnly(true);
            c.setAutoCommit(false);
            expectState("25006", () -> exec(c, "INSERT INTO " + t + " VALUES (99, 'read only')"));
            c.rollback();
            c.setAutoCommit(true);
            c.setReadOnly(false);
            exec(c, "DROP TABLE " + t);
        }
    }

    // autosave=always wraps each statement of a transaction in a savepoint, so an error does
    // not end the transaction.
    static void autosave() throws Exception {
        String t = prefix + "_autosave";
        try (Connection c = connect(props("autosave", "always"))) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (id int PRIMARY KEY)");
            c.setAutoCommit(false);
            exec(c, "INSERT INTO " + t + " VALUES (1)");
            expectState("23505", () -> exec(c, "INSERT INTO " + t + " VALUES (1)"));
            exec(c, "INSERT INTO " + t + " VALUES (2)");
            c.commit();
            c.setAutoCommit(true);
            eq(count(c, t), 2L, "rows");
            exec(c, "DROP TABLE " + t);
        }
    }

    // fetchSize reads results in pieces: pgjdbc binds a named portal and sends Execute with a row
    // limit, gets PortalSuspended, and Executes again; two such cursors are read in turns.
    static void fetchSize() throws Exception {
        try (Connection c = connect(props())) {
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.setFetchSize(7);
                try (ResultSet rs = st.executeQuery("SELECT g, repeat('x', g % 50) FROM generate_series(1, 1000) g")) {
                    for (int i = 1; i <= 1000; i++) {
                        check(rs.next(), "row " + i);
                        eq(rs.getInt(1), i, "g");
                        eq(rs.getString(2), "x".repeat(i % 50), "text");
                    }
                    check(!rs.next(), "1000 rows");
                }
            }
            for (int round = 0; round < 7; round++) { // past prepareThreshold: a named statement
                try (PreparedStatement a = c.prepareStatement("SELECT g FROM generate_series(1, ?) g");
                        PreparedStatement b = c.prepareStatement("SELECT -g FROM generate_series(1, ?) g")) {
                    a.setFetchSize(10);
                    b.setFetchSize(3);
                    a.setInt(1, 95 + round);
                    b.setInt(1, 50);
                    try (ResultSet ra = a.executeQuery(); ResultSet rb = b.executeQuery()) {
                        for (int i = 1; i <= 95 + round; i++) {
                            check(ra.next(), "a row " + i);
                            eq(ra.getInt(1), i, "a");
                            if (i <= 50) {
                                check(rb.next(), "b row " + i);
                                eq(rb.getInt(1), -i, "b");
                            }
                        }
                        check(!ra.next() && !rb.next(), "the end of both");
                    }
                }
            }
            c.commit();
            // Outside a transaction pgjdbc reads everything at once: still correct.
            c.setAutoCommit(true);
            try (Statement st = c.createStatement()) {
                st.setFetchSize(5);
                try (ResultSet rs = st.executeQuery("SELECT count(*) FROM generate_series(1, 100)")) {
                    check(rs.next(), "a row");
                    eq(rs.getInt(1), 100, "count");
                }
            }
        }
    }

    static void copy() throws Exception {
        String t = prefix + "_copy";
        try (Connection c = connect(props())) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (id int PRIMARY KEY, s text, b bytea)");
            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder in = new StringBuilder();
            for (int i = 0; i < 2000; i++) {
                in.append(i).append('\t').append("line ").append(i).append(" tab\\there ünï").append('\t').append("\\\\x00ff").append(String.format("%02x", i % 256)).append('\n');
            }
            eq(cm.copyIn("COPY " + t + " FROM STDIN", new StringReader(in.toString())), 2000L, "rows copied in");
            StringWriter out = new StringWriter();
            eq(cm.copyOut("COPY " + t + " TO STDOUT", out), 2000L, "rows copied out");
            eq(out.toString(), in.toString(), "what COPY TO gives back");
            StringWriter csv = new StringWriter();
            cm.copyOut("COPY (SELECT id, s FROM " + t + " WHERE id < 3 ORDER BY id) TO STDOUT (FORMAT csv, HEADER)", csv);
            eq(csv.toString(), "id,s\n0,line 0 tab\there ünï\n1,line 1 tab\there ünï\n2,line 2 tab\there ünï\n", "csv");

            // The lower-level API, in pieces, then a COPY that fails on bad data.
            CopyIn ci = cm.copyIn("COPY " + t + " (id, s) FROM STDIN (FORMAT csv)");
            for (int i = 0; i < 100; i++) {
                byte[] line = (5000 + i + ",\"piece, " + i + "\"\n").getBytes("UTF-8");
                ci.writeToCopy(line, 0, line.length);
            }
            eq(ci.endCopy(), 100L, "rows of the pieces");
            eq(queryString(c, "SELECT s FROM " + t + " WHERE id = 5042"), "piece, 42", "a piece");
            expectState("22P02", () -> cm.copyIn("COPY " + t + " (id) FROM STDIN", new StringReader("1\nnot a number\n")));
            eq(count(c, t), 2100L, "rows after the failed COPY");

            // COPY inside a transaction, rolled back.
            c.setAutoCommit(false);
            cm.copyIn("COPY " + t + " (id) FROM STDIN", new StringReader("9001\n9002\n"));
            eq(count(c, t), 2102L, "rows inside the transaction");
            c.rollback();
            c.setAutoCommit(true);
            eq(count(c, t), 2100L, "rows after rollback");
            exec(c, "DROP TABLE " + t);
        }
    }

    // cancel cancels one client's pg_sleep while another client's runs: only the first stops.
    // A client with nothing running that sends a cancel request must stop nobody's query.
    static void cancel() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try (Connection a = connect(props()); Connection b = connect(props())) {
            // Warm both up, so the sleeps start at once.
            eq(queryString(a, "SELECT 'a'"), "a", "a");
            eq(queryString(b, "SELECT 'b'"), "b", "b");
            Statement sa = a.createStatement();
            Future<String> fb = pool.submit(() -> queryString(b, "SELECT pg_sleep(3)::text || 'b done'"));
            long t0 = System.nanoTime();
            Future<String> fa = pool.submit(() -> {
                try (ResultSet rs = sa.executeQuery("SELECT pg_sleep(30)")) {
                    return "not canceled: " + rs.next();
                } catch (SQLException e) {
                    return e.getSQLState();
                }
            });
            waitForSleep(2);
            sa.cancel();
            eq(fa.get(20, TimeUnit.SECONDS), "57014", "the canceled query's SQLSTATE");
            check(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(15), "the cancel took effect at once");
            eq(fb.get(20, TimeUnit.SECONDS), "b done", "the other client's query");
            eq(queryString(a, "SELECT 'a again'"), "a again", "the canceled client afterwards");

            // An idle client's cancel request reaches no server.
            Future<String> fb2 = pool.submit(() -> queryString(b, "SELECT pg_sleep(2)::text || 'b again'"));
            waitForSleep(1);
            a.unwrap(org.postgresql.core.BaseConnection.class).cancelQuery();
            eq(fb2.get(20, TimeUnit.SECONDS), "b again", "another client's query after an idle client's cancel");
            eq(queryString(a, "SELECT 'a idle'"), "a idle", "the idle client afterwards");
        } finally {
            pool.shutdownNow();
        }
    }

    // waitForSleep waits until n queries of the app user are in pg_sleep, seen from a connection
    // straight to Postgres (SLUICE_DIRECT_URL): a connection through sluice would need a server
    // of the pool the sleeping queries hold.
    static void waitForSleep(int n) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        try (Connection d = DriverManager.getConnection(env("SLUICE_DIRECT_URL"))) {
            for (;;) {
                String got = queryString(d, "SELECT count(*) FROM pg_stat_activity WHERE usename = '" + user
                        + "' AND state = 'active' AND query LIKE '%pg_sleep%'");
                if (Integer.parseInt(got) >= n) {
                    return;
                }
                check(System.nanoTime() < deadline, got + " of " + n + " queries in pg_sleep after 20s");
                Thread.sleep(20);
            }
        }
    }

    static void queryTimeout() throws Exception {
        try (Connection c = connect(props()); Statement st = c.createStatement()) {
            st.setQueryTimeout(1);
            long t0 = System.nanoTime();
            expectState("57014", () -> st.executeQuery("SELECT pg_sleep(30)"));
            long took = System.nanoTime() - t0;
            check(took >= TimeUnit.MILLISECONDS.toNanos(900) && took < TimeUnit.SECONDS.toNanos(10), "timed out after " + took / 1_000_000 + " ms");
            st.setQueryTimeout(0);
            eq(queryString(c, "SELECT 'after timeout'"), "after timeout", "the connection afterwards");
            // A prepared statement with a timeout that it does not reach.
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 3")) {
                ps.setQueryTimeout(5);
                for (int i = 0; i < 8; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "a row");
                        eq(rs.getInt(1), i * 3, "result");
                    }
                }
            }
        }
    }

    static void metadata() throws Exception {
        String t = prefix + "_meta";
        try (Connection c = connect(props())) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (id bigint PRIMARY KEY, name varchar(40) NOT NULL, price numeric(10,2), tags text[])");
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductVersion().matches("\\d+.*"), "server version " + md.getDatabaseProductVersion());
            eq(md.getUserName(), user, "user name");
            try (ResultSet rs = md.getTables(null, "public", t, new String[] {"TABLE"})) {
                check(rs.next(), "the table");
                eq(rs.getString("TABLE_NAME"), t, "table name");
                eq(rs.getString("TABLE_TYPE"), "TABLE", "table type");
                check(!rs.next(), "one table");
            }
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", t, null)) {
                while (rs.next()) {
                    cols.add(rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME") + " " + rs.getInt("COLUMN_SIZE") + " " + rs.getString("IS_NULLABLE"));
                }
            }
            eq(cols, List.of("id int8 19 NO", "name varchar 40 NO", "price numeric 10 YES", "tags _text 2147483647 YES"), "columns");
            try (ResultSet rs = md.getPrimaryKeys(null, "public", t)) {
                check(rs.next(), "a primary key");
                eq(rs.getString("COLUMN_NAME"), "id", "primary key column");
            }
            // Metadata a second time (pgjdbc caches some of it) and the result set metadata.
            try (ResultSet rs = md.getColumns(null, "public", t, "price")) {
                check(rs.next(), "price");
                eq(rs.getInt("DECIMAL_DIGITS"), 2, "price scale");
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT * FROM " + t)) {
                java.sql.ResultSetMetaData rm = ps.getMetaData();
                eq(rm.getColumnCount(), 4, "columns of a statement never executed");
                eq(rm.getColumnTypeName(2), "varchar", "type of name");
                eq(rm.getTableName(2), t, "table of name");
            }
            exec(c, "DROP TABLE " + t);
        }
    }

    // applicationName gives three connections their own application_name (at login, then with
    // setClientInfo), and checks that each sees its own on every query, while they share servers.
    static void applicationName() throws Exception {
        Connection[] cs = new Connection[3];
        try {
            for (int i = 0; i < cs.length; i++) {
                cs[i] = connect(props("ApplicationName", "jdbc-app-" + i));
                eq(cs[i].getClientInfo("ApplicationName"), "jdbc-app-" + i, "client info");
            }
            for (int round = 0; round < 10; round++) {
                if (round == 5) {
                    cs[1].setClientInfo("ApplicationName", "renamed");
                }
                for (int i = 0; i < cs.length; i++) {
                    String want = i == 1 && round >= 5 ? "renamed" : "jdbc-app-" + i;
                    eq(queryString(cs[i], "SELECT current_setting('application_name')"), want, "round " + round + " client " + i);
                    eq(cs[i].unwrap(PGConnection.class).getParameterStatus("application_name"), want, "reported, round " + round + " client " + i);
                }
            }
        } finally {
            for (Connection c : cs) {
                if (c != null) {
                    c.close();
                }
            }
        }
    }

    // parameterStatus changes TimeZone and DateStyle-independent settings with SET and checks what
    // the server reported to pgjdbc, what the server uses, and how timestamptz values convert.
    static void parameterStatus() throws Exception {
        try (Connection c = connect(props()); Connection other = connect(props())) {
            PGConnection pc = c.unwrap(PGConnection.class);
            eq(pc.getParameterStatus("client_encoding"), "UTF8", "client_encoding");
            eq(pc.getParameterStatus("DateStyle"), "ISO, MDY", "DateStyle");
            check(pc.getParameterStatus("server_version") != null, "server_version reported");
            exec(c, "SET TimeZone TO 'America/New_York'");
            exec(other, "SET TimeZone TO 'Asia/Tokyo'");
            for (int i = 0; i < 5; i++) {
                eq(pc.getParameterStatus("TimeZone"), "America/New_York", "reported TimeZone");
                eq(queryString(c, "SHOW TimeZone"), "America/New_York", "TimeZone");
                eq(queryString(c, "SELECT '2024-01-01 12:00:00+00'::timestamptz::text"), "2024-01-01 07:00:00-05", "timestamptz as text");
                eq(queryString(other, "SELECT '2024-01-01 12:00:00+00'::timestamptz::text"), "2024-01-01 21:00:00+09", "the other client's timestamptz");
                try (PreparedStatement ps = c.prepareStatement("SELECT ?::timestamptz")) {
                    ps.setObject(1, java.time.OffsetDateTime.parse("2024-06-01T00:00:00Z"));
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "a row");
                        eq(rs.getObject(1, java.time.OffsetDateTime.class).toInstant(), java.time.Instant.parse("2024-06-01T00:00:00Z"), "timestamptz round trip");
                    }
                }
            }
            exec(c, "RESET TimeZone");
            check(!"America/New_York".equals(pc.getParameterStatus("TimeZone")), "TimeZone after RESET: " + pc.getParameterStatus("TimeZone"));
            eq(queryString(c, "SHOW TimeZone"), pc.getParameterStatus("TimeZone"), "TimeZone after RESET");
        }
    }

    // searchPath changes search_path, which Postgres before 18 does not report with a
    // ParameterStatus, on one connection: it must keep it for its later statements, and the
    // other connections must not get it, while they share servers.
    static void searchPath() throws Exception {
        try (Connection a = connect(props()); Connection b = connect(props()); Connection c = connect(props())) {
            String def = queryString(b, "SHOW search_path");
            exec(a, "SET search_path TO pg_catalog, public");
            for (int i = 0; i < 10; i++) {
                eq(queryString(a, "SHOW search_path"), "pg_catalog, public", "the client's own search_path, round " + i);
                eq(queryString(b, "SHOW search_path"), def, "another client's search_path, round " + i);
                eq(queryString(c, "SHOW search_path"), def, "a third client's search_path, round " + i);
            }
        }
    }

    // concurrentClients runs 16 threads, each with its own connection, far more than the pool's
    // servers: prepared statements (the same text in every thread, and a text of each thread's
    // own), transactions, and a check of every result.
    static void concurrentClients() throws Exception {
        String t = prefix + "_many";
        try (Connection c = connect(props())) {
            exec(c, "DROP TABLE IF EXISTS " + t);
            exec(c, "CREATE TABLE " + t + " (thread int, round int, note text)");
        }
        final int threads = 16, rounds = 40;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<Void>> fs = new ArrayList<>();
            for (int k = 0; k < threads; k++) {
                final int id = k;
                Callable<Void> task = () -> {
                    try (Connection c = connect(props("ApplicationName", "thread-" + id))) {
                        try (PreparedStatement shared = c.prepareStatement("SELECT ?::int * 2, ?::text || '/' || current_setting('application_name')");
                                PreparedStatement own = c.prepareStatement("SELECT ?::int8 + " + id + " /* thread " + id + " */");
                                PreparedStatement ins = c.prepareStatement("INSERT INTO " + t + " VALUES (?, ?, ?)")) {
                            for (int r = 0; r < rounds; r++) {
                                shared.setInt(1, id * 1000 + r);
                                shared.setString(2, "t" + id);
                                try (ResultSet rs = shared.executeQuery()) {
                                    check(rs.next(), "a row");
                                    eq(rs.getInt(1), (id * 1000 + r) * 2, "thread " + id + " round " + r);
                                    eq(rs.getString(2), "t" + id + "/thread-" + id, "thread " + id + " round " + r);
                                }
                                own.setLong(1, r);
                                try (ResultSet rs = own.executeQuery()) {
                                    check(rs.next(), "a row");
                                    eq(rs.getLong(1), (long) r + id, "thread " + id + " own round " + r);
                                }
                                if (r % 4 == 0) {
                                    c.setAutoCommit(false);
                                    ins.setInt(1, id);
                                    ins.setInt(2, r);
                                    ins.setString(3, "n" + r);
                                    ins.executeUpdate();
                                    if (r % 8 == 0) {
                                        c.commit();
                                    } else {
                                        c.rollback();
                                    }
                                    c.setAutoCommit(true);
                                }
                            }
                        }
                        try (PreparedStatement ps = c.prepareStatement("SELECT count(*), coalesce(sum(round), 0) FROM " + t + " WHERE thread = ?")) {
                            ps.setInt(1, id);
                            try (ResultSet rs = ps.executeQuery()) {
                                check(rs.next(), "a row");
                                int n = 0, sum = 0;
                                for (int r = 0; r < rounds; r += 8) {
                                    n++;
                                    sum += r;
                                }
                                eq(rs.getInt(1), n, "thread " + id + " rows");
                                eq(rs.getInt(2), sum, "thread " + id + " sum of rounds");
                            }
                        }
                    }
                    return null;
                };
                fs.add(pool.submit(task));
            }
            for (Future<Void> f : fs) {
                f.get(120, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
        try (Connection c = connect(props())) {
            exec(c, "DROP TABLE " + t);
        }
    }
}
