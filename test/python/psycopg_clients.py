"""psycopg 3 through sluice.

test/e2e/python_test.go runs it with Debian's /usr/bin/python3 and SLUICE_URL set to a postgres://
URL of sluice, in transaction mode with fewer servers than clients and in session mode. psycopg 3
binds parameters on the server (the extended protocol, unnamed statements), prepares a query as a
named statement (_pg3_N, numbered per connection, so every client uses the same names) once it ran
prepare_threshold times, and DEALLOCATEs the oldest beyond prepared_max; its pipeline mode sends
many queries with one Sync. Each check prints "ok <name>" when it passes; the first failure prints
"FAIL <name>: <why>" and exits with status 1. The last line is "all ok".
"""

import datetime
import decimal
import os
import sys
import threading
import time
import traceback
import uuid

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

import clientcheck
from clientcheck import URL, check, expect, expect_error


def connect(**kw):
    return psycopg.connect(URL, **kw)


def run_threads(fns):
    """Runs each of fns in its own thread and raises the first failure."""
    failures = []

    def wrap(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise AssertionError(f"{len(failures)} of {len(fns)} threads failed; the first:\n{failures[0]}")


@check("execute with parameters")
def execute_with_parameters(c):
    at = datetime.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=datetime.timezone.utc)
    row = c.execute(
        "SELECT %s::int + %s, %s::text, %s::bytea, %s::timestamptz, %s::text, %s::jsonb, %s::numeric, %s::uuid",
        (40, 2, "it's \"quoted\" \\ ünï", b"\x00\x01\xff", at, None, Jsonb({"a": [1, "x"]}), decimal.Decimal("1.50"), uuid.UUID(int=7)),
    ).fetchone()
    expect(row, (42, "it's \"quoted\" \\ ünï", b"\x00\x01\xff", at, None, {"a": [1, "x"]}, decimal.Decimal("1.50"), uuid.UUID(int=7)), "row")
    rows = c.execute("SELECT g, g::text FROM generate_series(1, %s) g", (2000,)).fetchall()
    expect(len(rows), 2000, "rows")
    expect(rows[-1], (2000, "2000"), "last row")
    c.execute("DROP TABLE IF EXISTS pg3_items")
    c.execute("CREATE TABLE pg3_items (id int PRIMARY KEY, name text)")
    cur = c.execute("INSERT INTO pg3_items VALUES (%s, %s), (%s, %s)", (1, "one", 2, "two"))
    expect(cur.rowcount, 2, "rowcount")
    c.commit()
    with connect() as other:
        expect(other.execute("SELECT name FROM pg3_items WHERE id = %(id)s", {"id": 2}).fetchone(), ("two",), "another client reads the commit")


@check("prepared statements")
def prepared_statements(c):
    # prepare_threshold is 5: from the sixth run psycopg binds its named statement _pg3_0.
    q = "SELECT %s::int * 2, (SELECT count(*) FROM pg3_items)"
    for i in range(12):
        expect(c.execute(q, (i,)).fetchone(), (i * 2, 2), f"run {i}")
    if not c._prepared._names:
        raise AssertionError("psycopg prepared nothing after 12 runs")
    # prepare=True prepares at once; other clients prepare other queries under the same names
    # (each connection counts from _pg3_0), on the same servers.
    def client(k):
        with connect(autocommit=k % 2 == 0) as o:
            for i in range(30):
                got = o.execute(f"SELECT %s::int * {k + 3}, %s::text", (i, f"c{k}"), prepare=True).fetchone()
                if got != (i * (k + 3), f"c{k}"):
                    raise AssertionError(f"client {k} run {i}: {got}")
                got = o.execute(f"SELECT %s::int + {k}", (i,)).fetchone()
                if got != (i + k,):
                    raise AssertionError(f"client {k} run {i}: {got}")
                if i % 10 == 9 and not o.autocommit:
                    o.commit()

    run_threads([lambda k=k: client(k) for k in range(6)])
    c.commit()
    # Beyond prepared_max psycopg sends DEALLOCATE _pg3_N for the oldest statement.
    c.prepared_max = 2
    for round_ in range(3):
        for k in range(6):
            expect(c.execute(f"SELECT %s::int + {k * 100}", (round_,), prepare=True).fetchone(), (round_ + k * 100,), f"round {round_} query {k}")
        c.commit()
    expect(len(c._prepared._names) <= 2, True, "psycopg keeps prepared_max statements")
    c.prepared_max = 100


@check("pipeline")
def pipeline(c):
    c.execute("DROP TABLE IF EXISTS pg3_pipe")
    c.execute("CREATE TABLE pg3_pipe (id int PRIMARY KEY, note text)")
    c.commit()
    with connect(autocommit=True) as a:
        with a.pipeline():
            curs = []
            for i in range(1, 101):
                a.execute("INSERT INTO pg3_pipe VALUES (%s, %s)", (i, f"n{i}"))
                curs.append(a.execute("SELECT count(*), %s::int FROM pg3_pipe", (i,)))
            # Results come as the pipeline is read: each SELECT saw the inserts before it.
            for i, cur in enumerate(curs, 1):
                expect(cur.fetchone(), (i, i), f"select {i} in the pipeline")
        expect(a.execute("SELECT count(*) FROM pg3_pipe").fetchone(), (100,), "rows after the pipeline")
        # An error inside a pipeline: what follows it up to the next sync is skipped; what
        # came before the sync stays.
        def failing():
            with a.pipeline() as p:
                a.execute("INSERT INTO pg3_pipe VALUES (%s, 'before')", (1001,))
                p.sync()
                a.execute("INSERT INTO pg3_pipe VALUES (%s, 'duplicate')", (1,))
                a.execute("INSERT INTO pg3_pipe VALUES (%s, 'skipped')", (1002,))
                p.sync()

        expect_error(errors.UniqueViolation, failing, "the duplicate in a pipeline")
        with a.pipeline():
            after = a.execute("SELECT %s::int, count(*) FROM pg3_pipe WHERE id > 1000", (7,))
        expect(after.fetchone(), (7, 1), "a pipeline after the failed one")
        expect(a.execute("SELECT array_agg(id ORDER BY id) FROM pg3_pipe WHERE id > 1000").fetchone(), ([1001],), "rows after the failed pipeline")
        # A pipeline inside a transaction, with prepared statements.
        with a.transaction():
            with a.pipeline():
                for i in range(20):
                    a.execute("UPDATE pg3_pipe SET note = %s WHERE id = %s", (f"u{i}", i + 1), prepare=True)
                got = a.execute("SELECT count(*) FROM pg3_pipe WHERE note LIKE 'u%%'")
            expect(got.fetchone(), (20,), "updates in a pipelined transaction")
    # Without autocommit: psycopg's BEGIN goes in the pipeline too.
    with c.pipeline():
        c.execute("DELETE FROM pg3_pipe WHERE id > %s", (50,))
        cur = c.execute("SELECT count(*) FROM pg3_pipe")
    expect(cur.fetchone(), (50,), "delete in a pipeline")
    c.rollback()
    expect(c.execute("SELECT count(*) FROM pg3_pipe").fetchone(), (101,), "rows after the rollback")
    c.commit()


@check("copy")
def copy(c):
    c.execute("DROP TABLE IF EXISTS pg3_copy")
    c.execute("CREATE TABLE pg3_copy (id int PRIMARY KEY, name text, amount numeric, day date)")
    with c.cursor() as cur:
        with cur.copy("COPY pg3_copy (id, name, amount, day) FROM STDIN") as cp:
            for i in range(1, 10001):
                cp.write_row((i, f"name {i}\twith tab", decimal.Decimal(i) / 4, datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 300)))
        expect(cur.rowcount, 10000, "rows copied in")
        with cur.copy("COPY pg3_copy (id, name) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "text"])
            for i in range(10001, 10101):
                cp.write_row((i, f"binary {i}"))
        with cur.copy("COPY pg3_copy (id, name) FROM STDIN (FORMAT CSV)") as cp:
            cp.write(b"20001,csv one\n20002,\"csv, two\"\n")
    c.commit()
    expect(c.execute("SELECT count(*), sum(id) FROM pg3_copy").fetchone(), (10102, sum(range(1, 10101)) + 40003), "rows after copy in")
    with c.cursor() as cur:
        with cur.copy("COPY (SELECT id, name, amount FROM pg3_copy WHERE id <= %s ORDER BY id) TO STDOUT", (3,)) as cp:
            cp.set_types(["int4", "text", "numeric"])
            got = list(cp.rows())
        expect(got, [(i, f"name {i}\twith tab", decimal.Decimal(i) / 4) for i in (1, 2, 3)], "rows copied out")
        data = b""
        with cur.copy("COPY pg3_copy (id) TO STDOUT") as cp:
            for block in cp:
                data += bytes(block)
        expect(len(data.split()), 10102, "rows copied out as text")
        with cur.copy("COPY (SELECT 1::int4, 'b'::text) TO STDOUT (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "text"])
            expect(list(cp.rows()), [(1, "b")], "binary copy out")
    c.commit()
    # A COPY that fails leaves the connection usable after a rollback.
    def failing():
        with c.cursor() as cur:
            with cur.copy("COPY pg3_copy (id, name) FROM STDIN") as cp:
                cp.write_row((30001, "new"))
                cp.write_row((1, "duplicate"))

    expect_error(errors.UniqueViolation, failing, "duplicate in COPY")
    c.rollback()
    expect(c.execute("SELECT count(*) FROM pg3_copy").fetchone(), (10102,), "rows after the failed copy")
    c.commit()


@check("server-side cursor")
def server_side_cursor(c):
    with c.transaction():
        with c.cursor("pg3_named") as cur:
            cur.itersize = 50
            cur.execute("SELECT g, g * 2 FROM generate_series(1, %s) g", (1000,))
            first = cur.fetchmany(100)
            expect(first[0], (1, 2), "first row")
            expect(len(first), 100, "fetchmany")
            expect(cur.fetchone(), (101, 202), "fetchone after fetchmany")
            rest = list(cur)
            expect(len(rest), 899, "rows iterated")
            expect(rest[-1], (1000, 2000), "last row")
        with c.cursor("pg3_scroll", scrollable=True) as cur:
            cur.execute("SELECT g FROM generate_series(1, 100) g")
            cur.scroll(50)
            expect(cur.fetchone(), (51,), "after scroll")
            cur.scroll(0, mode="absolute")
            expect(cur.fetchone(), (1,), "after absolute scroll")
    c.commit()


@check("binary results")
def binary_results(c):
    with c.cursor(binary=True) as cur:
        row = cur.execute(
            "SELECT %s::int8, %s::numeric, %s::text, %s::date, %s::uuid, %s::int4[], %s::jsonb, %s::float8, %s::bool",
            (2**40, decimal.Decimal("-12.345"), "ünï", datetime.date(2024, 2, 29), uuid.UUID(int=9), [1, None, 3], Jsonb({"k": 1}), 1.5, True),
        ).fetchone()
        expect(row, (2**40, decimal.Decimal("-12.345"), "ünï", datetime.date(2024, 2, 29), uuid.UUID(int=9), [1, None, 3], {"k": 1}, 1.5, True), "binary row")
        rows = cur.execute("SELECT id, name FROM pg3_items ORDER BY id").fetchall()
        expect(rows, [(1, "one"), (2, "two")], "binary rows")
        for i in range(8):  # prepared after five runs, still binary
            expect(cur.execute("SELECT %s::int4 + 1", (i,)).fetchone(), (i + 1,), f"binary run {i}")
    c.commit()


@check("autocommit and transactions")
def autocommit_and_transactions(c):
    c.execute("DROP TABLE IF EXISTS pg3_tx")
    c.execute("CREATE TABLE pg3_tx (id int PRIMARY KEY)")
    c.commit()
    with connect(autocommit=True) as a:
        a.execute("INSERT INTO pg3_tx VALUES (1)")
        with connect() as other:
            expect(other.execute("SELECT count(*) FROM pg3_tx").fetchone(), (1,), "autocommit's row seen at once")
        with a.transaction():
            a.execute("INSERT INTO pg3_tx VALUES (2)")
            pid = a.execute("SELECT pg_backend_pid(), txid_current()").fetchone()
            with a.transaction():  # a savepoint
                a.execute("INSERT INTO pg3_tx VALUES (3)")
            try:
                with a.transaction():
                    a.execute("INSERT INTO pg3_tx VALUES (4)")
                    raise psycopg.Rollback()
            except psycopg.Rollback:
                pass
            expect_error(errors.UniqueViolation, lambda: _in_savepoint(a), "duplicate in a savepoint")
            expect(a.execute("SELECT pg_backend_pid(), txid_current()").fetchone(), pid, "one transaction, one server")
        expect(a.execute("SELECT array_agg(id ORDER BY id) FROM pg3_tx").fetchone(), ([1, 2, 3],), "rows after the transaction")
    # The default (no autocommit): psycopg begins a transaction at the first statement.
    c.execute("INSERT INTO pg3_tx VALUES (10)")
    expect(c.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS, "status inside the implicit transaction")
    c.rollback()
    expect(c.execute("SELECT count(*) FROM pg3_tx WHERE id = 10").fetchone(), (0,), "rows after rollback")
    c.rollback()


def _in_savepoint(a):
    with a.transaction():
        a.execute("INSERT INTO pg3_tx VALUES (1)")


@check("executemany")
def executemany(c):
    c.execute("DROP TABLE IF EXISTS pg3_many")
    c.execute("CREATE TABLE pg3_many (id serial PRIMARY KEY, note text)")
    with c.cursor() as cur:
        cur.executemany("INSERT INTO pg3_many (note) VALUES (%s)", [(f"n{i}",) for i in range(500)])
        expect(cur.rowcount, 500, "executemany's rowcount")
        cur.executemany("INSERT INTO pg3_many (note) VALUES (%s) RETURNING id, note", [(f"r{i}",) for i in range(5)], returning=True)
        got = []
        while True:
            got.append(cur.fetchone()[1])
            if not cur.nextset():
                break
        expect(got, [f"r{i}" for i in range(5)], "executemany's returned rows")
    c.commit()
    expect(c.execute("SELECT count(*) FROM pg3_many").fetchone(), (505,), "rows after executemany")
    with c.cursor() as cur:
        expect_error(errors.UniqueViolation, lambda: cur.executemany("INSERT INTO pg3_many (id, note) VALUES (%s, %s)", [(1000, "a"), (1, "dup")]), "executemany with a duplicate")
    c.rollback()
    expect(c.execute("SELECT count(*) FROM pg3_many").fetchone(), (505,), "rows after the failed executemany")
    c.commit()


@check("errors")
def errors_check(c):
    expect_error(errors.DivisionByZero, lambda: c.execute("SELECT 1 / %s", (0,)), "division by zero")
    expect_error(errors.InFailedSqlTransaction, lambda: c.execute("SELECT 1"), "a statement after the error")
    c.rollback()
    expect_error(errors.UndefinedTable, lambda: c.execute("SELECT * FROM pg3_nothing_here WHERE id = %s", (1,)), "unknown table")
    c.rollback()
    expect(c.execute("SELECT %s::text", ("fine",)).fetchone(), ("fine",), "after the errors")
    c.commit()


@check("cancel")
def cancel(c):
    with connect(autocommit=True) as a:
        outcome = {}

        def slow():
            try:
                a.execute("SELECT pg_sleep(30)")
                outcome["err"] = None
            except Exception as err:  # noqa: BLE001
                outcome["err"] = err

        others = {}

        def other(k):
            with connect() as o:
                others[k] = o.execute("SELECT %s::text FROM pg_sleep(1.5)", (f"other {k}",)).fetchone()

        ot = [threading.Thread(target=other, args=(k,)) for k in range(2)]
        for t in ot:
            t.start()
        t = threading.Thread(target=slow)
        start = time.monotonic()
        t.start()
        time.sleep(0.5)
        a.cancel()
        t.join(10)
        if t.is_alive():
            raise AssertionError("the cancelled query still runs after 10s")
        if not isinstance(outcome.get("err"), errors.QueryCanceled):
            raise AssertionError(f"the cancelled query ended with {outcome.get('err')!r}, want QueryCanceled")
        took = time.monotonic() - start
        if took > 10:
            raise AssertionError(f"cancel took {took:.1f}s")
        expect(a.execute("SELECT %s::int", (5,)).fetchone(), (5,), "after the cancel")
        for t in ot:
            t.join()
        expect(others, {0: ("other 0",), 1: ("other 1",)}, "the other clients' queries")


clientcheck.run(connect)
