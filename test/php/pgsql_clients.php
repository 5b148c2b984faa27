<?php
// PHP's procedural pgsql extension (libpq) through sluice.
//
// test/e2e/php_test.go runs it with Debian's /usr/bin/php (php-cli, php-pgsql), with SLUICE_URL
// set to a postgres:// URL of sluice and SLUICE_MODE to "transaction" (fewer servers than
// clients, so servers are shared) or "session". pg_query sends a simple Query, pg_query_params
// and pg_execute the extended protocol; pg_prepare names its statements as the caller says, so
// clients use the same names for different SQL. Each check prints "ok <name>" when it passes; the
// first failure prints "FAIL <name>: <why>" and exits with status 1. The last line is "all ok".

declare(strict_types=1);

require __DIR__ . '/common.php';

function pgc(): PgSql\Connection
{
    $c = pg_connect(sprintf("host=%s port=%d dbname=%s user=%s password='%s' sslmode=disable",
        PG_HOST, PG_PORT, PG_DB, PG_USER, addslashes(PG_PASS)), PGSQL_CONNECT_FORCE_NEW);
    pg_set_error_verbosity($c, PGSQL_ERRORS_DEFAULT);
    return $c;
}

// sqlError sends $sql (with $params, if any) asynchronously and returns the SQLSTATE and primary
// message of its error; it fails when there is none. pg_query would only raise a warning.
function sqlError(PgSql\Connection $c, string $sql, ?array $params = null): array
{
    $params === null ? pg_send_query($c, $sql) : pg_send_query_params($c, $sql, $params);
    $err = null;
    while (($r = pg_get_result($c)) !== false) {
        if (pg_result_status($r) === PGSQL_FATAL_ERROR && $err === null) {
            $err = [pg_result_error_field($r, PGSQL_DIAG_SQLSTATE), pg_result_error_field($r, PGSQL_DIAG_MESSAGE_PRIMARY)];
        }
    }
    if ($err === null) {
        throw new RuntimeException("$sql: no error");
    }
    return $err;
}

check('pg_query and pg_query_params', function (PgSql\Connection $c): void {
    $r = pg_query($c, "SELECT 1 AS a; SELECT 40 + 2 AS answer, 'x' AS t, NULL AS z");
    expect(pg_fetch_all($r), [['answer' => '42', 't' => 'x', 'z' => null]], 'the last result of two statements');
    $r = pg_query_params($c, 'SELECT $1::int + $2::int AS sum, $3::text AS t, $4::text IS NULL AS n, $5::bytea AS b',
        [40, 2, "it's \"quoted\" \\ ünï", null, pg_escape_bytea($c, "\x00\x01\xff")]);
    $row = pg_fetch_assoc($r);
    expect([$row['sum'], $row['t'], $row['n']], ['42', "it's \"quoted\" \\ ünï", 't'], 'a row with parameters');
    expect(pg_unescape_bytea($row['b']), "\x00\x01\xff", 'bytea');
    // pg_field_type reads pg_type through the pooler.
    expect([pg_field_type($r, 0), pg_field_type($r, 2), pg_field_type($r, 3)], ['int4', 'bool', 'bytea'], 'field types');
    pg_query($c, 'DROP TABLE IF EXISTS php_pg');
    pg_query($c, 'CREATE TABLE php_pg (id int PRIMARY KEY, name text)');
    $r = pg_query_params($c, "INSERT INTO php_pg SELECT g, 'n' || g FROM generate_series(1, $1::int) g", [100]);
    expect(pg_affected_rows($r), 100, 'rows inserted');
    $r = pg_query_params($c, 'SELECT g FROM generate_series(1, $1::int) g', [3000]);
    expect(pg_num_rows($r), 3000, 'rows');
    expect(pg_fetch_result($r, 2999, 0), '3000', 'the last row');
    // pg_insert, pg_select, pg_update and pg_delete read the table's columns from the catalog.
    expect(pg_insert($c, 'php_pg', ['id' => 101, 'name' => 'inserted']) !== false, true, 'pg_insert');
    expect(pg_select($c, 'php_pg', ['id' => 101]), [['id' => '101', 'name' => 'inserted']], 'pg_select');
    expect(pg_update($c, 'php_pg', ['name' => 'updated'], ['id' => 101]), true, 'pg_update');
    expect(pg_fetch_result(pg_query($c, 'SELECT name FROM php_pg WHERE id = 101'), 0, 0), 'updated', 'the updated row');
    expect(pg_delete($c, 'php_pg', ['id' => 101]), true, 'pg_delete');
});

check('pg_prepare and pg_execute', function (PgSql\Connection $c): void {
    // Several connections prepare the same names for different SQL, executed in turns.
    $conns = [];
    for ($k = 1; $k <= 5; $k++) {
        $conns[$k] = pgc();
        pg_prepare($conns[$k], 'mul', "SELECT \$1::int * $k AS v, $k AS k");
        pg_prepare($conns[$k], 'name', 'SELECT name FROM php_pg WHERE id = $1');
    }
    for ($i = 1; $i <= 20; $i++) {
        for ($k = 1; $k <= 5; $k++) {
            expect(pg_fetch_row(pg_execute($conns[$k], 'mul', [$i])), [(string) ($i * $k), (string) $k], "client $k: mul($i)");
            expect(pg_fetch_result(pg_execute($conns[$k], 'name', [$i + $k]), 0, 0), 'n' . ($i + $k), "client $k: name");
        }
    }
    for ($k = 1; $k <= 5; $k++) {
        // DEALLOCATE by SQL, then the name again for other SQL.
        pg_query($conns[$k], 'DEALLOCATE mul');
        expect(sqlError($conns[$k], 'EXECUTE mul(1)')[0], '26000', "client $k: EXECUTE of a deallocated statement");
        [$state] = (function () use ($conns, $k) {
            pg_send_execute($conns[$k], 'mul', [1]);
            $r = pg_get_result($conns[$k]);
            while (pg_get_result($conns[$k]) !== false) {
            }
            return [pg_result_error_field($r, PGSQL_DIAG_SQLSTATE)];
        })();
        expect($state, '26000', "client $k: pg_execute of a deallocated statement");
        pg_prepare($conns[$k], 'mul', "SELECT \$1::text || '-$k'");
        expect(pg_fetch_result(pg_execute($conns[$k], 'mul', ['x']), 0, 0), "x-$k", "client $k: mul prepared again");
        pg_send_prepare($conns[$k], 'name', 'SELECT 2');
        $r = pg_get_result($conns[$k]);
        expect(pg_result_error_field($r, PGSQL_DIAG_SQLSTATE), '42P05', "client $k: a name prepared twice");
        expect(pg_fetch_result(pg_execute($conns[$k], 'name', [7]), 0, 0), 'n7', "client $k: name after the failed prepare");
        // The unnamed statement.
        pg_prepare($conns[$k], '', 'SELECT $1::int + 1');
        expect(pg_fetch_result(pg_execute($conns[$k], '', [$k]), 0, 0), (string) ($k + 1), "client $k: the unnamed statement");
    }
    foreach ($conns as $conn) {
        pg_close($conn);
    }
});

check('async queries', function (PgSql\Connection $c): void {
    expect(pg_send_query($c, "SELECT 1 AS one; SELECT 'two' AS two; SELECT 1 / 0"), true, 'pg_send_query');
    $got = [];
    while (($r = pg_get_result($c)) !== false) {
        $got[] = pg_result_status($r) === PGSQL_TUPLES_OK ? pg_fetch_all($r) : pg_result_error_field($r, PGSQL_DIAG_SQLSTATE);
    }
    expect($got, [[['one' => '1']], [['two' => 'two']], '22012'], 'the results of three statements');
    pg_send_query_params($c, 'SELECT $1::int + 1', [41]);
    expect(pg_fetch_result(pg_get_result($c), 0, 0), '42', 'pg_send_query_params');
    expect(pg_get_result($c), false, 'the end of its results');
    pg_send_prepare($c, 'php_async', "SELECT \$1::text || '!'");
    pg_get_result($c);
    pg_send_execute($c, 'php_async', ['hi']);
    expect(pg_fetch_result(pg_get_result($c), 0, 0), 'hi!', 'pg_send_execute');
    expect(pg_get_result($c), false, 'the end of its results');
    // Queries on several connections at once (more than the servers of a transaction-mode pool).
    $conns = [];
    $start = microtime(true);
    for ($k = 0; $k < 4; $k++) {
        $conns[$k] = pgc();
        pg_send_query_params($conns[$k], 'SELECT $1::int, pg_sleep(0.3)', [$k]);
    }
    expect(pg_connection_busy($conns[0]), true, 'busy while the query runs');
    foreach ($conns as $k => $conn) {
        expect(pg_fetch_result(pg_get_result($conn), 0, 0), (string) $k, "connection $k's result");
        expect(pg_get_result($conn), false, 'the end of its results');
        pg_close($conn);
    }
    if (microtime(true) - $start > 10) {
        throw new RuntimeException('the concurrent queries took too long');
    }
});

check('copy', function (PgSql\Connection $c): void {
    pg_query($c, 'DROP TABLE IF EXISTS php_pg_copy');
    pg_query($c, 'CREATE TABLE php_pg_copy (id int PRIMARY KEY, name text)');
    $rows = [];
    for ($i = 1; $i <= 10000; $i++) {
        $rows[] = "$i\tname $i";
    }
    expect(pg_copy_from($c, 'php_pg_copy', $rows), true, 'pg_copy_from');
    pg_query($c, 'COPY php_pg_copy FROM STDIN');
    pg_put_line($c, "10001\tput line\n");
    pg_put_line($c, "\\.\n");
    expect(pg_end_copy($c), true, 'pg_end_copy');
    $out = pg_copy_to($c, 'php_pg_copy');
    expect(count($out), 10001, 'rows copied out');
    expect([$out[0], $out[10000]], ["1\tname 1\n", "10001\tput line\n"], 'rows copied out');
    // A failing COPY: false and a warning, and the connection goes on.
    expectError(ErrorException::class, fn () => pg_copy_from($c, 'php_pg_copy', ["20001\tx", "1\tdup"]), 'duplicate in COPY');
    expect(str_contains(pg_last_error($c), 'duplicate key value violates unique constraint'), true, 'pg_last_error: ' . pg_last_error($c));
    expect(pg_fetch_result(pg_query($c, 'SELECT count(*) FROM php_pg_copy'), 0, 0), '10001', 'rows after the failed copy');
});

check('transactions and errors', function (PgSql\Connection $c): void {
    $other = pgc();
    pg_query($c, 'BEGIN');
    expect(pg_transaction_status($c), PGSQL_TRANSACTION_INTRANS, 'in a transaction');
    pg_query_params($c, 'INSERT INTO php_pg VALUES ($1, $2)', [5000, 'in a transaction']);
    $first = pg_fetch_row(pg_query($c, 'SELECT pg_backend_pid(), txid_current()'));
    expect(pg_fetch_result(pg_query($other, 'SELECT count(*) FROM php_pg WHERE id = 5000'), 0, 0), '0', 'the row before commit, seen by another client');
    pg_query($c, 'SAVEPOINT s1');
    expect(sqlError($c, 'INSERT INTO php_pg VALUES ($1, $2)', [1, 'dup']), ['23505', 'duplicate key value violates unique constraint "php_pg_pkey"'], 'duplicate key');
    expect(pg_transaction_status($c), PGSQL_TRANSACTION_INERROR, 'a failed transaction');
    expect(sqlError($c, 'SELECT 1')[0], '25P02', 'a statement after the error');
    pg_query($c, 'ROLLBACK TO SAVEPOINT s1');
    expect(pg_fetch_row(pg_query($c, 'SELECT pg_backend_pid(), txid_current()')), $first, 'one transaction, one server');
    pg_query($c, 'COMMIT');
    expect(pg_transaction_status($c), PGSQL_TRANSACTION_IDLE, 'idle after commit');
    expect(pg_fetch_result(pg_query($other, 'SELECT name FROM php_pg WHERE id = 5000'), 0, 0), 'in a transaction', 'the row after commit');
    pg_query($c, 'BEGIN');
    pg_query($c, "INSERT INTO php_pg VALUES (5001, 'rolled back')");
    pg_query($c, 'ROLLBACK');
    expect(pg_fetch_result(pg_query($other, 'SELECT count(*) FROM php_pg WHERE id = 5001'), 0, 0), '0', 'rows after rollback');
    // pg_query's failure: false, a warning, pg_last_error.
    $e = expectError(ErrorException::class, fn () => pg_query($c, 'SELECT * FROM php_no_such_table'), 'pg_query of a missing table');
    expect(str_contains($e->getMessage(), 'relation "php_no_such_table" does not exist'), true, 'the warning: ' . $e->getMessage());
    expect(str_contains(pg_last_error($c), 'relation "php_no_such_table" does not exist'), true, 'pg_last_error');
    expect(pg_fetch_result(pg_query($c, "SELECT 'still fine'"), 0, 0), 'still fine', 'after the errors');
    pg_close($other);
});

check('cancel', function (PgSql\Connection $c): void {
    // Two rounds: a query that runs (it starts first), and one queued behind the others' (in
    // transaction mode they hold both servers of the pool). Either way only that query stops.
    foreach (['running' => true, 'queued' => false] as $round => $first) {
        $a = pgc();
        $others = [];
        $start = microtime(true);
        if ($first) {
            pg_send_query($a, "SELECT pg_sleep(30) /* $round */");
            usleep(300000);
        }
        for ($k = 0; $k < 2; $k++) {
            $others[$k] = pgc();
            pg_send_query_params($others[$k], 'SELECT $1::text FROM pg_sleep(1.5)', ["other $k"]);
        }
        if (!$first) {
            usleep(300000);
            pg_send_query($a, "SELECT pg_sleep(30) /* $round */");
        }
        usleep(300000);
        expect(pg_connection_busy($a), true, "$round: busy before the cancel");
        // pg_cancel_query sends the cancel request, then waits for and drops the query's results.
        expect(pg_cancel_query($a), true, "$round: pg_cancel_query");
        $took = microtime(true) - $start;
        if ($took > 10) {
            throw new RuntimeException(sprintf('%s: cancel took %.1fs', $round, $took));
        }
        expect(pg_connection_busy($a), false, "$round: busy after the cancel");
        expect(pg_fetch_result(pg_query_params($a, 'SELECT $1::int', [5]), 0, 0), '5', "$round: after the cancel");
        expect(pg_fetch_result(pg_query($a, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'"), 0, 0),
            '0', "$round: the cancelled query no longer runs");
        foreach ($others as $k => $o) {
            expect(pg_fetch_result(pg_get_result($o), 0, 0), "other $k", "$round: the other client $k's query");
            expect(pg_get_result($o), false, "$round: the end of the other client $k's results");
            pg_close($o);
        }
        if (microtime(true) - $start < 1.5) {
            throw new RuntimeException("$round: the other clients' pg_sleep(1.5) ended early");
        }
        pg_close($a);
    }
});

runChecks(fn () => pgc());
