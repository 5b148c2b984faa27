// node-postgres (pg) through sluice in front of three shards. test/e2e/fanext_test.go runs it
// (node shards.js) with SLUICE_URL set to sluice's postgres:// URL and ALL_URL to one database
// that holds every row of the shards. Each check prints "ok <name>" when it passes; the first
// failure prints "FAIL <name>: <why>" and exits with status 1. The last line is "all ok".
'use strict';

const assert = require('node:assert/strict');
const checks = require('./checks');
const { Client } = require('pg');

for (const v of ['SLUICE_URL', 'ALL_URL']) {
  if (!process.env[v]) {
    console.error(`${v} is not set`);
    process.exit(2);
  }
}

// Queries across shards with parameters, as node-postgres sends them (Parse, Bind, Describe,
// Execute, Sync; text parameters and results): sluice's answer must be one database's.
const queries = [
  ['SELECT id, v FROM items WHERE id = ANY($1) ORDER BY id DESC LIMIT $2', [[3, 14, 15, 92, 65, 35], 4]],
  ['SELECT grp, count(*) AS n, avg(id) AS a, sum(n) AS s, min(d) AS d FROM items WHERE id > $1 GROUP BY grp ORDER BY grp', [10]],
  ['SELECT id, f FROM items WHERE v > $1 ORDER BY f DESC, id LIMIT $2 OFFSET $3', ['v0050', 5, 7]],
  ['SELECT count(*) AS n FROM items WHERE id IN ($1, $2, $3)', [1, 2, 3]],
];

async function main() {
  const through = new Client({ connectionString: process.env.SLUICE_URL });
  const one = new Client({ connectionString: process.env.ALL_URL });
  await through.connect();
  await one.connect();
  const tests = [
    ['parameterized queries across shards', async () => {
      for (const [text, values] of queries) {
        const got = await through.query({ text, values, rowMode: 'array' });
        const want = await one.query({ text, values, rowMode: 'array' });
        assert.deepEqual(got.rows, want.rows, text);
        assert.equal(got.rowCount, want.rowCount, text);
        assert.deepEqual(got.fields.map((f) => [f.name, f.dataTypeID]), want.fields.map((f) => [f.name, f.dataTypeID]), text);
      }
    }],
    ['named statement across shards', async () => {
      for (const k of [0, 50, 150]) {
        const q = { name: 'above', text: 'SELECT count(*) AS n, max(v) AS m FROM items WHERE id > $1', values: [k] };
        const got = await through.query(q);
        const want = await one.query(q);
        assert.deepEqual(got.rows, want.rows, `id > ${k}`);
      }
    }],
    ['refused across shards', async () => {
      try {
        await through.query('SELECT DISTINCT v FROM items WHERE id > $1', [0]);
      } catch (err) {
        assert.equal(err.code, '0A000', err.message);
        const r = await through.query('SELECT count(*) AS n FROM items WHERE id > $1', [0]);
        assert.equal(r.rows[0].n, '200');
        return;
      }
      assert.fail('SELECT DISTINCT across shards was not refused');
    }],
  ];
  await checks.run(tests, undefined, async () => {
    await through.end();
    await one.end();
  });
}

checks.main(main);
