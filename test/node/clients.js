// node-postgres (pg) through sluice. test/e2e/node_test.go runs it (node clients.js) with SLUICE_URL set to a
// postgres:// URL of sluice. Each check prints "ok <name>" when it passes; the first failure
// prints "FAIL <name>: <why>" and exits with status 1. The last line is "all ok".
'use strict';

const assert = require('node:assert/strict');
const checks = require('./checks');
const { Client, Pool } = require('pg');

const url = process.env.SLUICE_URL;
if (!url) {
  console.error('SLUICE_URL is not set');
  process.exit(2);
}

async function connect(options = {}) {
  const c = new Client({ connectionString: url, ...options });
  await c.connect();
  return c;
}

// expectError runs fn and checks that it fails with the SQLSTATE code.
async function expectError(code, fn) {
  try {
    await fn();
  } catch (err) {
    assert.equal(err.code, code, `error ${err.message} has SQLSTATE ${err.code}, want ${code}`);
    return;
  }
  assert.fail(`no error, want SQLSTATE ${code}`);
}

const tests = [
  ['simple query', async (c) => {
    const r = await c.query('SELECT 1 AS one, \'two\' AS two');
    assert.deepEqual(r.rows, [{ one: 1, two: 'two' }]);
    const many = await c.query('SELECT 1 AS a; SELECT 2 AS b');
    assert.deepEqual(many.map((x) => x.rows), [[{ a: 1 }], [{ b: 2 }]]);
  }],

  ['parameterized query', async (c) => {
    const at = new Date('2024-02-29T12:34:56.789Z');
    const r = await c.query(
      'SELECT $1::int + $2::int AS sum, $3::text AS text, $4::bytea AS blob, $5::timestamptz AS at, $6::text AS nothing, $7::jsonb AS doc',
      [40, 2, 'it\'s "quoted" \\ ünï', Buffer.from([0, 1, 255]), at, null, { a: [1, 'x'] }]);
    assert.equal(r.rows.length, 1);
    const row = r.rows[0];
    assert.equal(row.sum, 42);
    assert.equal(row.text, 'it\'s "quoted" \\ ünï');
    assert.deepEqual([...row.blob], [0, 1, 255]);
    assert.equal(row.at.getTime(), at.getTime());
    assert.equal(row.nothing, null);
    assert.deepEqual(row.doc, { a: [1, 'x'] });
    const series = await c.query({ text: 'SELECT g FROM generate_series(1, $1::int) g', values: [1000], rowMode: 'array' });
    assert.equal(series.rowCount, 1000);
    assert.deepEqual(series.rows[999], [1000]);
  }],

  ['named prepared statements', async (c) => {
    // pg sends Parse only the first time a client uses a name; later it only binds. In
    // transaction mode the uses land on different servers.
    for (let i = 0; i < 20; i++) {
      const r = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS sum', values: [i, 1000] });
      assert.deepEqual(r.rows, [{ sum: i + 1000 }]);
    }
    // Other clients use the same name for other queries, at the same time.
    const others = await Promise.all([1, 2, 3].map(() => connect()));
    try {
      const theirs = others.map(async (o, k) => {
        for (let i = 0; i < 20; i++) {
          const r = await o.query({ name: 'add', text: `SELECT $1::int * ${k + 2} AS sum`, values: [i] });
          assert.deepEqual(r.rows, [{ sum: i * (k + 2) }], `client ${k}`);
        }
      });
      const mine = (async () => {
        for (let i = 0; i < 20; i++) {
          const r = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS sum', values: [i, 1] });
          assert.deepEqual(r.rows, [{ sum: i + 1 }]);
        }
      })();
      await Promise.all([...theirs, mine]);
    } finally {
      await Promise.all(others.map((o) => o.end()));
    }
  }],

  ['named statement that fails to prepare', async (c) => {
    await expectError('42601', () => c.query({ name: 'bad', text: 'SELEKT $1::int', values: [1] }));
    await expectError('42P01', () => c.query({ name: 'missing', text: 'SELECT * FROM node_no_such_table WHERE $1::int > 0', values: [1] }));
    const r = await c.query({ name: 'good', text: 'SELECT $1::int AS v', values: [5] });
    assert.deepEqual(r.rows, [{ v: 5 }]);
  }],

  ['transaction', async (c) => {
    await c.query('DROP TABLE IF EXISTS node_tx');
    await c.query('CREATE TABLE node_tx (id int PRIMARY KEY, note text)');
    await c.query('BEGIN');
    await c.query('INSERT INTO node_tx VALUES ($1, $2)', [1, 'rolled back']);
    const inside = await c.query('SELECT count(*)::int AS n FROM node_tx');
    assert.equal(inside.rows[0].n, 1);
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    const start = await c.query('SELECT now() AS t, pg_backend_pid() AS pid');
    await c.query({ name: 'ins', text: 'INSERT INTO node_tx VALUES ($1, $2)', values: [2, 'kept'] });
    const later = await c.query('SELECT now() AS t, pg_backend_pid() AS pid');
    assert.deepEqual(later.rows[0], start.rows[0], 'one transaction, one server');
    await c.query('COMMIT');
    const other = await connect();
    try {
      const r = await other.query('SELECT id, note FROM node_tx ORDER BY id');
      assert.deepEqual(r.rows, [{ id: 2, note: 'kept' }]);
    } finally {
      await other.end();
    }
  }],

  ['error', async (c) => {
    await expectError('22012', () => c.query('SELECT 1/0'));
    await expectError('22012', () => c.query('SELECT 1/$1::int', [0]));
    // Inside a transaction the error aborts it until ROLLBACK.
    await c.query('BEGIN');
    await expectError('23505', () => c.query('INSERT INTO node_tx VALUES ($1, $2)', [2, 'duplicate']));
    await expectError('25P02', () => c.query('SELECT 1'));
    await expectError('25P02', () => c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS sum', values: [1, 1] }));
    await c.query('ROLLBACK');
    const r = await c.query('SELECT 42 AS answer');
    assert.deepEqual(r.rows, [{ answer: 42 }]);
  }],

  ['pool of clients', async () => {
    const pool = new Pool({ connectionString: url, max: 20 });
    try {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) =>
        pool.query({ name: `q${i % 7}`, text: `SELECT $1::int + ${i % 7} AS v`, values: [i] })));
      results.forEach((r, i) => assert.deepEqual(r.rows, [{ v: i + (i % 7) }], `query ${i}`));
    } finally {
      await pool.end();
    }
  }],
];

async function main() {
  const c = await connect();
  await checks.run(tests, c, () => c.end());
}

checks.main(main);
