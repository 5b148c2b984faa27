"""psycopg2 through sluice.

test/e2e/python_test.go runs it with Debian's /usr/bin/python3 and SLUICE_URL set to a postgres://
URL of sluice, in transaction mode with fewer servers than clients and in session mode. psycopg2
interpolates parameters on the client and sends simple Queries; it begins a transaction before the
first statement unless autocommit is on. Each check prints "ok <name>" when it passes; the first
failure prints "FAIL <name>: <why>" and exits with status 1. The last line is "all ok".
"""

import datetime
import decimal
import io
import os
import sys
import threading
import time
import traceback

import psycopg2
import psycopg2.errors
import psycopg2.extras

import clientcheck
from clientcheck import URL, check, expect, expect_error


def connect():
    return psycopg2.connect(URL)


@check("execute")
def execute(c):
    cur = c.cursor()
    at = datetime.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=datetime.timezone.utc)
    cur.execute(
        "SELECT %s + %s, %s::text, %s::bytea, %s::timestamptz, %s, %s::numeric",
        (40, 2, "it's \"quoted\" \\ ünï %s", psycopg2.Binary(b"\x00\x01\xff"), at, None, decimal.Decimal("1.50")),
    )
    row = cur.fetchone()
    expect(row[:3], (42, "it's \"quoted\" \\ ünï %s", row[2]), "row")
    expect(bytes(row[2]), b"\x00\x01\xff", "bytea")
    expect(row[3], at, "timestamptz")
    expect(row[4:], (None, decimal.Decimal("1.50")), "NULL and numeric")
    cur.execute("SELECT g FROM generate_series(1, %(n)s) g", {"n": 3000})
    expect(cur.rowcount, 3000, "rowcount")
    expect(cur.fetchall()[-1], (3000,), "last row")
    cur.execute("DROP TABLE IF EXISTS pg2_items")
    cur.execute("CREATE TABLE pg2_items (id int PRIMARY KEY, name text)")
    c.commit()


@check("executemany")
def executemany(c):
    cur = c.cursor()
    cur.executemany("INSERT INTO pg2_items VALUES (%s, %s)", [(i, f"n{i}") for i in range(1, 301)])
    psycopg2.extras.execute_values(cur, "INSERT INTO pg2_items VALUES %s", [(i, f"v{i}") for i in range(301, 1301)], page_size=250)
    psycopg2.extras.execute_batch(cur, "UPDATE pg2_items SET name = name || '!' WHERE id = %s", [(i,) for i in range(1, 101)], page_size=30)
    c.commit()
    with connect() as other, other.cursor() as oc:
        oc.execute("SELECT count(*), count(*) FILTER (WHERE name LIKE '%%!') FROM pg2_items")
        expect(oc.fetchone(), (1300, 100), "rows another client reads")
    other.close()


@check("copy_expert")
def copy_expert(c):
    cur = c.cursor()
    cur.execute("DROP TABLE IF EXISTS pg2_copy")
    cur.execute("CREATE TABLE pg2_copy (id int PRIMARY KEY, name text, day date)")
    data = "".join(f"{i}\tname {i}\t2024-01-{i % 28 + 1:02d}\n" for i in range(1, 20001))
    cur.copy_expert("COPY pg2_copy FROM STDIN", io.StringIO(data))
    expect(cur.rowcount, 20000, "rows copied in")
    cur.copy_expert("COPY pg2_copy (id, name) FROM STDIN WITH (FORMAT csv)", io.StringIO('20001,"csv, one"\n20002,\n'))
    c.commit()
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT id, name FROM pg2_copy WHERE id IN (1, 20001, 20002) ORDER BY id) TO STDOUT WITH (FORMAT csv)", out)
    expect(out.getvalue(), '1,name 1\n20001,"csv, one"\n20002,\n', "rows copied out")
    out = io.StringIO()
    cur.copy_expert("COPY pg2_copy TO STDOUT", out)
    expect(out.getvalue().count("\n"), 20002, "all rows copied out")
    expect("\n1\tname 1\t2024-01-02\n" in "\n" + out.getvalue(), True, "a copied row")
    # A failing COPY: the transaction is rolled back, the connection goes on.
    expect_error(psycopg2.errors.UniqueViolation, lambda: cur.copy_expert("COPY pg2_copy (id, name) FROM STDIN", io.StringIO("30001\tx\n1\tdup\n")), "duplicate in COPY")
    c.rollback()
    cur.execute("SELECT count(*) FROM pg2_copy")
    expect(cur.fetchone(), (20002,), "rows after the failed copy")
    c.commit()


@check("transaction and error")
def transaction_and_error(c):
    cur = c.cursor()
    cur.execute("INSERT INTO pg2_items VALUES (%s, %s)", (5000, "in a transaction"))
    cur.execute("SELECT pg_backend_pid(), txid_current()")
    first = cur.fetchone()
    other = connect()
    oc = other.cursor()
    oc.execute("SELECT count(*) FROM pg2_items WHERE id = 5000")
    expect(oc.fetchone(), (0,), "the row before commit, seen by another client")
    other.rollback()
    cur.execute("SELECT pg_backend_pid(), txid_current()")
    expect(cur.fetchone(), first, "one transaction, one server")
    c.commit()
    oc.execute("SELECT name FROM pg2_items WHERE id = 5000")
    expect(oc.fetchone(), ("in a transaction",), "the row after commit")
    other.close()
    # An error aborts the transaction until the rollback.
    cur.execute("INSERT INTO pg2_items VALUES (%s, %s)", (5001, "rolled back"))
    expect_error(psycopg2.errors.UniqueViolation, lambda: cur.execute("INSERT INTO pg2_items VALUES (%s, %s)", (1, "dup")), "duplicate key")
    expect_error(psycopg2.errors.InFailedSqlTransaction, lambda: cur.execute("SELECT 1"), "a statement after the error")
    c.rollback()
    cur.execute("SELECT count(*) FROM pg2_items WHERE id = 5001")
    expect(cur.fetchone(), (0,), "rows after rollback")
    expect_error(psycopg2.errors.DivisionByZero, lambda: cur.execute("SELECT 1 / %s", (0,)), "division by zero")
    c.rollback()
    # A server-side (named) cursor reads in pieces inside the transaction.
    named = c.cursor("pg2_named")
    named.itersize = 100
    named.execute("SELECT g FROM generate_series(1, 1000) g")
    expect(named.fetchmany(10), [(i,) for i in range(1, 11)], "fetchmany")
    expect(sum(1 for _ in named), 990, "rows iterated")
    named.close()
    c.commit()
    # Autocommit: each statement commits at once.
    c.autocommit = True
    cur.execute("DELETE FROM pg2_items WHERE id = %s", (5000,))
    expect(cur.rowcount, 1, "autocommit delete")
    expect(c.get_transaction_status(), psycopg2.extensions.TRANSACTION_STATUS_IDLE, "idle after autocommit")
    c.autocommit = False


@check("cancel")
def cancel(c):
    a = connect()
    a.autocommit = True
    outcome = {}

    def slow():
        try:
            a.cursor().execute("SELECT pg_sleep(30)")
            outcome["err"] = None
        except Exception as err:  # noqa: BLE001
            outcome["err"] = err

    others = {}

    def other(k):
        o = connect()
        oc = o.cursor()
        oc.execute("SELECT %s FROM pg_sleep(1.5)", (f"other {k}",))
        others[k] = oc.fetchone()
        o.close()

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
    if not isinstance(outcome.get("err"), psycopg2.errors.QueryCanceled):
        raise AssertionError(f"the cancelled query ended with {outcome.get('err')!r}, want QueryCanceled")
    if time.monotonic() - start > 10:
        raise AssertionError("cancel took too long")
    cur = a.cursor()
    cur.execute("SELECT 5")
    expect(cur.fetchone(), (5,), "after the cancel")
    for t in ot:
        t.join()
    expect(others, {0: ("other 0",), 1: ("other 1",)}, "the other clients' queries")
    a.close()


clientcheck.run(connect)
