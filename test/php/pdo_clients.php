<?php
// PHP's PDO pgsql driver through sluice.
//
// test/e2e/php_test.go runs it with Debian's /usr/bin/php (php-cli, php-pgsql), with SLUICE_URL
// set to a postgres:// URL of sluice and SLUICE_MODE to "transaction" (fewer servers than
// clients, so servers are shared) or "session". With PDO::ATTR_EMULATE_PREPARES false, PDO
// prepares each statement on the server at its first execute under a name numbered per
// connection (pdo_stmt_00000001, ...: every client uses the same names, each for its own SQL),
// and deallocates it with the SQL command DEALLOCATE when the PDOStatement is destroyed. Each
// check prints "ok <name>" when it passes; the first failure prints "FAIL <name>: <why>" and
// exits with status 1. The last line is "all ok".

declare(strict_types=1);

require __DIR__ . '/common.php';

function pdo(array $options = []): PDO
{
    $dsn = sprintf('pgsql:host=%s;port=%d;dbname=%s;sslmode=disable', PG_HOST, PG_PORT, PG_DB);
    return new PDO($dsn, PG_USER, PG_PASS, $options + [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_EMULATE_PREPARES => false,
        PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
    ]);
}

// serverStatements returns the names of the statements the connection's server session holds
// (in transaction mode, only meaningful inside a transaction).
function serverStatements(PDO $c): array
{
    return $c->query("SELECT name FROM pg_prepared_statements WHERE name LIKE 'pdo_stmt_%' ORDER BY name")->fetchAll(PDO::FETCH_COLUMN);
}

check('prepared statements', function (PDO $c): void {
    $c->exec('DROP TABLE IF EXISTS php_items');
    $c->exec('CREATE TABLE php_items (id serial PRIMARY KEY, name text NOT NULL, qty int, flag bool, data bytea)');
    $ins = $c->prepare('INSERT INTO php_items (name, qty, flag, data) VALUES (:name, :qty, :flag, :data)');
    for ($i = 1; $i <= 50; $i++) {
        $ins->bindValue(':name', "n$i", PDO::PARAM_STR);
        $ins->bindValue(':qty', $i % 7 === 0 ? null : $i, $i % 7 === 0 ? PDO::PARAM_NULL : PDO::PARAM_INT);
        $ins->bindValue(':flag', $i % 2 === 0, PDO::PARAM_BOOL);
        $ins->bindValue(':data', "\x00\x01\xff$i", PDO::PARAM_LOB);
        $ins->execute();
        expect($ins->rowCount(), 1, "rows inserted by execute $i");
    }
    $ins = null; // DEALLOCATE pdo_stmt_00000001
    $row = $c->query('SELECT id, name, qty, flag, data FROM php_items WHERE id = 14')->fetch();
    expect([$row['id'], $row['name'], $row['qty'], $row['flag'], stream_get_contents($row['data'])],
        [14, 'n14', null, true, "\x00\x01\xff14"], 'a row inserted with bound values');

    // Several connections, each numbering its statements from 1 for different SQL, executed in
    // turns so that in transaction mode each execute may find a server another client prepared on.
    $conns = [];
    $stmts = [];
    for ($k = 1; $k <= 5; $k++) {
        $conns[$k] = pdo();
        $pre = [];
        // A different number of statements before the shared ones, so pdo_stmt_N differs per client.
        for ($j = 0; $j < $k % 3; $j++) {
            $pre[] = $conns[$k]->prepare("SELECT $j AS pre$k");
            $pre[$j]->execute();
        }
        $stmts[$k] = [
            'mul' => $conns[$k]->prepare("SELECT ?::int * $k AS v, $k AS k"),
            'name' => $conns[$k]->prepare('SELECT name FROM php_items WHERE id = ?'),
            'pre' => $pre,
        ];
    }
    for ($i = 1; $i <= 20; $i++) {
        for ($k = 1; $k <= 5; $k++) {
            $s = $stmts[$k]['mul'];
            $s->execute([$i]);
            expect($s->fetch(PDO::FETCH_NUM), [$i * $k, $k], "client $k: mul($i)");
            $s = $stmts[$k]['name'];
            $s->execute([$i + $k]);
            expect($s->fetchColumn(), 'n' . ($i + $k), "client $k: name(" . ($i + $k) . ')');
        }
        if ($i === 10) {
            // Destroying a statement DEALLOCATEs its name; the next prepare takes a new name.
            for ($k = 1; $k <= 5; $k++) {
                $stmts[$k]['mul'] = null;
                $stmts[$k]['pre'] = [];
                $stmts[$k]['mul'] = $conns[$k]->prepare("SELECT ?::int * $k AS v, $k AS k");
            }
        }
    }
    // In session mode the server holds the statements client 1 has not destroyed under PDO's
    // names (3, name; 4, mul prepared again; 5, this query's own), and not those it deallocated
    // (1 and 2). In transaction mode the servers know them under sluice's names.
    if (MODE === 'session') {
        expect(serverStatements($conns[1]), ['pdo_stmt_00000003', 'pdo_stmt_00000004', 'pdo_stmt_00000005'], 'statements of client 1 on its server');
    }
    // Bound by reference, executed again.
    $s = $conns[2]->prepare('SELECT count(*) FROM php_items WHERE qty > :min AND flag = :flag');
    $min = 10;
    $flag = true;
    $s->bindParam(':min', $min, PDO::PARAM_INT);
    $s->bindParam(':flag', $flag, PDO::PARAM_BOOL);
    $s->execute();
    expect($s->fetchColumn(), 17, 'even ids above 10 with a qty (those of 14, 28 and 42 are NULL)');
    $min = 40;
    $s->execute();
    expect($s->fetchColumn(), 4, 'even ids above 40 with a qty');
    foreach ($conns as $k => $_) {
        $stmts[$k] = null;
        $conns[$k] = null;
    }
    // PDO::PGSQL_ATTR_DISABLE_PREPARES: unnamed statements (PQexecParams) each time.
    $u = pdo([PDO::PGSQL_ATTR_DISABLE_PREPARES => true]);
    $s = $u->prepare('SELECT ?::text || ?::text');
    foreach (['a', 'b', 'c'] as $v) {
        $s->execute([$v, '!']);
        expect($s->fetchColumn(), "$v!", 'unnamed statement');
    }
    $u = null;
});

check('transactions', function (PDO $c): void {
    $other = pdo();
    expect($c->beginTransaction(), true, 'beginTransaction');
    expect($c->inTransaction(), true, 'inTransaction');
    $s = $c->prepare('INSERT INTO php_items (name) VALUES (?)');
    $s->execute(['in a transaction']);
    $first = $c->query('SELECT pg_backend_pid(), txid_current()')->fetch(PDO::FETCH_NUM);
    expect($other->query("SELECT count(*) FROM php_items WHERE name = 'in a transaction'")->fetchColumn(), 0, 'the row before commit, seen by another client');
    $c->exec('SAVEPOINT s1');
    $s->execute(['rolled back to the savepoint']);
    $c->exec('ROLLBACK TO SAVEPOINT s1');
    expect($c->query('SELECT pg_backend_pid(), txid_current()')->fetch(PDO::FETCH_NUM), $first, 'one transaction, one server');
    expect($c->commit(), true, 'commit');
    expect($c->inTransaction(), false, 'inTransaction after commit');
    expect($other->query("SELECT name FROM php_items WHERE name LIKE '%transaction%' OR name LIKE '%savepoint%'")->fetchAll(PDO::FETCH_COLUMN),
        ['in a transaction'], 'rows after commit');
    $c->beginTransaction();
    $s->execute(['rolled back']);
    expect($c->rollBack(), true, 'rollBack');
    expect($other->query("SELECT count(*) FROM php_items WHERE name = 'rolled back'")->fetchColumn(), 0, 'rows after rollBack');
    $e = expectError(PDOException::class, fn () => $c->commit(), 'commit without a transaction');
    expect($e->getMessage(), 'There is no active transaction', 'its message');
    $c->beginTransaction();
    expectError(PDOException::class, fn () => $c->beginTransaction(), 'a nested beginTransaction');
    $c->rollBack();
    // A scrollable cursor (DECLARE ... SCROLL CURSOR WITH HOLD, FETCH ABSOLUTE, CLOSE) inside a
    // transaction.
    $c->beginTransaction();
    $s = $c->prepare('SELECT g FROM generate_series(1, 100) g', [PDO::ATTR_CURSOR => PDO::CURSOR_SCROLL]);
    $s->execute();
    expect($s->fetch(PDO::FETCH_NUM, PDO::FETCH_ORI_ABS, 50), [50], 'row 50 of a scrollable cursor');
    expect($s->fetch(PDO::FETCH_NUM, PDO::FETCH_ORI_PRIOR), [49], 'the row before');
    expect($s->fetch(PDO::FETCH_NUM, PDO::FETCH_ORI_LAST), [100], 'the last row');
    $s = null;
    $c->commit();
    $other = null;
});

check('errors', function (PDO $c): void {
    $e = expectError(PDOException::class, fn () => $c->prepare('INSERT INTO php_items (id, name) VALUES (?, ?)')->execute([1, 'dup']), 'duplicate key');
    expect($e->getCode(), '23505', 'SQLSTATE of the duplicate key');
    expect($e->errorInfo[0], '23505', 'errorInfo[0]');
    expect(str_contains($e->errorInfo[2], 'duplicate key value violates unique constraint "php_items_pkey"'), true, 'errorInfo[2]: ' . $e->errorInfo[2]);
    $e = expectError(PDOException::class, fn () => $c->query('SELECT * FROM php_no_such_table'), 'a missing table');
    expect($e->getCode(), '42P01', 'SQLSTATE of the missing table');
    $e = expectError(PDOException::class, fn () => $c->prepare('SELECT 1 / ?')->execute([0]), 'division by zero');
    expect($e->getCode(), '22012', 'SQLSTATE of the division by zero');
    // An error fails the transaction until the rollback.
    $c->beginTransaction();
    $c->prepare('INSERT INTO php_items (name) VALUES (?)')->execute(['rolled back after an error']);
    $e = expectError(PDOException::class, fn () => $c->exec("INSERT INTO php_items (id, name) VALUES (1, 'dup')"), 'duplicate key in a transaction');
    expect($e->getCode(), '23505', 'its SQLSTATE');
    $e = expectError(PDOException::class, fn () => $c->query('SELECT 1'), 'a statement after the error');
    expect($e->getCode(), '25P02', 'SQLSTATE in a failed transaction');
    $e = expectError(PDOException::class, fn () => $c->prepare('SELECT ?::int')->execute([1]), 'a prepared statement after the error');
    expect($e->getCode(), '25P02', 'SQLSTATE of a prepared statement in a failed transaction');
    $c->rollBack();
    expect($c->query("SELECT count(*) FROM php_items WHERE name = 'rolled back after an error'")->fetchColumn(), 0, 'rows after the rollBack');
    // ERRMODE_SILENT: errorCode and errorInfo instead of exceptions.
    $c->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_SILENT);
    $s = $c->prepare('SELECT ?::int');
    expect($s->execute(['not a number']), false, 'execute with a bad value');
    expect($s->errorCode(), '22P02', 'errorCode of the bad value');
    expect($c->query('SELECT 7')->fetchColumn(), 7, 'a query after it');
    $c->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
});

check('lastInsertId', function (PDO $c): void {
    // RETURNING, the way most frameworks (Laravel, Doctrine) read a new id.
    $s = $c->prepare('INSERT INTO php_items (name) VALUES (?) RETURNING id');
    $s->execute(['returning']);
    $id = $s->fetchColumn();
    expect(is_int($id) && $id > 50, true, "id from RETURNING: $id");
    expect($c->query("SELECT name FROM php_items WHERE id = $id")->fetchColumn(), 'returning', 'the row of that id');
    // lastInsertId runs SELECT currval($1) (or lastval()) after the INSERT: session state, so in
    // transaction mode it is read inside the transaction of the INSERT (any pooler in transaction
    // mode may give the next statement outside a transaction to another server).
    $c->beginTransaction();
    $c->prepare('INSERT INTO php_items (name) VALUES (?)')->execute(['lastInsertId']);
    $byName = $c->lastInsertId('php_items_id_seq');
    $last = $c->lastInsertId();
    $c->commit();
    expect($byName, (string) ($id + 1), 'lastInsertId(sequence)');
    expect($last, $byName, 'lastInsertId()');
    expect($c->query("SELECT name FROM php_items WHERE id = $byName")->fetchColumn(), 'lastInsertId', 'the row of that id');
    if (MODE === 'session') {
        $c->exec("INSERT INTO php_items (name) VALUES ('autocommit')");
        expect($c->lastInsertId('php_items_id_seq'), (string) ($id + 2), 'lastInsertId after an autocommit INSERT');
    }
});

check('copy', function (PDO $c): void {
    $c->exec('DROP TABLE IF EXISTS php_copy');
    $c->exec('CREATE TABLE php_copy (id int PRIMARY KEY, name text, day date)');
    $rows = [];
    for ($i = 1; $i <= 20000; $i++) {
        $rows[] = sprintf("%d\tname %d\t2024-01-%02d", $i, $i, $i % 28 + 1);
    }
    expect($c->pgsqlCopyFromArray('php_copy', $rows), true, 'pgsqlCopyFromArray');
    // PDO writes null_as into an E'' literal: '\\\\N' (the default) stands for \N.
    expect($c->pgsqlCopyFromArray('php_copy', ["20001;semi, colon;\\N", "20002;\\N;2024-02-29"], ';', '\\\\N', 'id, name, day'), true, 'with a delimiter and fields');
    expect($c->query('SELECT count(*) FROM php_copy')->fetchColumn(), 20002, 'rows copied in');
    $out = $c->pgsqlCopyToArray('php_copy', "\t", '\\\\N', 'id, name, day');
    expect(count($out), 20002, 'rows copied out');
    expect($out[0], "1\tname 1\t2024-01-02\n", 'the first row copied out');
    $tail = array_slice($out, -2);
    sort($tail);
    expect($tail, ["20001\tsemi, colon\t\\N\n", "20002\t\\N\t2024-02-29\n"], 'the last rows copied out');
    // A failing COPY throws, and the connection goes on.
    $e = expectError(PDOException::class, fn () => $c->pgsqlCopyFromArray('php_copy', ["30001\tx\t\\N", "1\tdup\t\\N"]), 'duplicate in COPY');
    expect($e->getCode(), '23505', 'its SQLSTATE');
    expect($c->query('SELECT count(*) FROM php_copy WHERE id > 30000')->fetchColumn(), 0, 'rows after the failed copy');
    // COPY inside a transaction, rolled back.
    $c->beginTransaction();
    $c->pgsqlCopyFromArray('php_copy', ["40001\tin a transaction\t\\N"]);
    expect($c->query('SELECT count(*) FROM php_copy WHERE id = 40001')->fetchColumn(), 1, 'the copied row in the transaction');
    $c->rollBack();
    expect($c->query('SELECT count(*) FROM php_copy')->fetchColumn(), 20002, 'rows after the rollBack');
});

check('fetch types', function (PDO $c): void {
    $row = $c->query("SELECT 42::int4 AS i, 9000000000::int8 AS b, true AS t, 'ünï'::text AS s, 1.5::numeric AS n, NULL AS z, '{1,2}'::int[] AS a")->fetch();
    expect($row, ['i' => 42, 'b' => 9000000000, 't' => true, 's' => 'ünï', 'n' => '1.5', 'z' => null, 'a' => '{1,2}'], 'a row of several types');
    $s = $c->prepare('SELECT g, md5(g::text) FROM generate_series(1, ?) g');
    $s->execute([5000]);
    $all = $s->fetchAll(PDO::FETCH_NUM);
    expect(count($all), 5000, 'rows');
    expect($all[4999], [5000, md5('5000')], 'the last row');
    $meta = $s->getColumnMeta(1);
    expect([$meta['name'], $meta['native_type'], $meta['pgsql:oid']], ['md5', 'text', 25], 'column meta (which reads pg_type)');
});

runChecks(fn () => pdo());
