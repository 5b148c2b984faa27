// postgres.js (the postgres package) through sluice. test/e2e/node_test.go runs it (node
// postgresjs.js) with SLUICE_URL set to a postgres:// URL of sluice and SLUICE_MODE to the pool's
// mode. postgres.js has its own wire protocol: it pipelines every query of a Promise.all as
// Parse/Bind/Describe/Execute/Sync without waiting, names its prepared statements per connection
// (or leaves them unnamed with prepare: false), reads cursors with Execute row limits and Flush,
// and cancels a query over a new connection. Each check prints "ok <name>" when it passes; the
// first failure prints "FAIL <name>: <why>" and exits with status 1. The last line is "all ok".
'use strict';

const assert = require('node:assert/strict');
const checks = require('./checks');
const { pipeline } = require('node:stream/promises');
const { Readable, Writable } = require('node:stream');
const postgres = require('postgres');

const url = process.env.SLUICE_URL;
if (!url) {
  console.error('SLUICE_URL is not set');
  process.exit(2);
}
const txMode = process.env.SLUICE_MODE !== 'session';

function connect(options = {}) {
  return postgres(url, { max: 1, onnotice: () => {}, ...options });
}

// expectError awaits the query and checks that it fails with the SQLSTATE code.
async function expectError(code, q) {
  try {
    await q;
  } catch (err) {
    assert.equal(err.code, code, `error ${err.message} has SQLSTATE ${err.code}, want ${code}`);
    return;
  }
  assert.fail(`no error, want SQLSTATE ${code}`);
}

// shapes are queries of the types postgres.js sends as parameters, with the value each returns.
const shapes = [
  [(sql, i) => sql`select ${i}::int + 1 as v`, (i) => i + 1],
  [(sql, i) => sql`select ${[i, 2]}::int[] as v`, (i) => [i, 2]],
  [(sql, i) => sql`select ${sql.json({ i })}::jsonb as v`, (i) => ({ i })],
  [(sql, i) => sql`select ${Buffer.from([i % 256, 7])}::bytea as v`, (i) => Buffer.from([i % 256, 7])],
  [(sql, i) => sql`select ${'t' + i}::text || ${null}::text as v`, () => null],
];

// pipelined sends 60 queries of every shape at once and checks each answer.
async function pipelined(sql) {
  const rs = await Promise.all(Array.from({ length: 60 }, (_, i) => shapes[i % shapes.length][0](sql, i)));
  rs.forEach((r, i) => assert.deepEqual(r[0].v, shapes[i % shapes.length][1](i), `query ${i}`));
}

const tests = [
  ['pipelined queries, prepared', async (sql) => {
    await pipelined(sql);
    await pipelined(sql); // the statements prepared above, bound again
  }],

  ['pipelined queries, unnamed', async () => {
    const sql = connect({ prepare: false });
    try {
      await pipelined(sql);
    } finally {
      await sql.end();
    }
  }],

  ['errors in a pipeline', async (sql) => {
    // Each query is its own Sync: an error fails that query only.
    const rs = await Promise.allSettled([
      sql`select 1 as v`, sql`select 1/0 as v`, sql`select ${2}::int as v`, sql`select pgjs_no_such_column`,
      sql`select ${'x'}::int as v`, sql`select 3 as v`,
    ]);
    assert.deepEqual(rs.map((r) => (r.status === 'fulfilled' ? r.value[0].v : r.reason.code)),
      [1, '22012', 2, '42703', '22P02', 3]);
  }],

  ['transactions and savepoints', async (sql) => {
    await sql`drop table if exists pgjs_tx`;
    await sql`create table pgjs_tx (id int, note text)`;
    await sql.begin(async (sql) => {
      await sql`insert into pgjs_tx values (1, 'kept')`;
      await expectError('22012', sql.savepoint(async (sql) => {
        await sql`insert into pgjs_tx values (2, 'rolled back to the savepoint')`;
        await sql`select 1/0`;
      }));
      await sql.savepoint((sql) => sql`insert into pgjs_tx values (3, 'kept')`);
      // Pipelined inside the transaction: one server, which sees the transaction's rows.
      const [n, pid1, pid2] = await Promise.all([
        sql`select count(*)::int as n from pgjs_tx`, sql`select pg_backend_pid() as p`, sql`select pg_backend_pid() as p`,
      ]);
      assert.equal(n[0].n, 2);
      assert.equal(pid1[0].p, pid2[0].p, 'one transaction, one server');
    });
    await expectError('42703', sql.begin(async (sql) => {
      await sql`insert into pgjs_tx values (4, 'rolled back')`;
      await sql`select pgjs_no_such_column`;
    }));
    // A request list: postgres.js pipelines BEGIN and the queries, then COMMIT.
    const [a, b] = await sql.begin((sql) => [sql`select 1 as v`, sql`select ${2}::int as v`]);
    assert.deepEqual([a[0].v, b[0].v], [1, 2]);
    const rows = await sql`select id from pgjs_tx order by id`;
    assert.deepEqual(rows.map((r) => r.id), [1, 3]);
  }],

  ['cursors', async (sql) => {
    // Outside a transaction the portal lives only until the Sync after its last Execute.
    let n = 0;
    await sql`select x from generate_series(1, 1000) x`.cursor(77, (rows) => { n += rows.length; });
    assert.equal(n, 1000);
    n = 0;
    await sql.begin(async (sql) => {
      await sql`select x from generate_series(1, 500) x`.cursor(50, (rows) => { n += rows.length; });
    });
    assert.equal(n, 500);
    // Two cursors of one connection, read in turn.
    const xs = [];
    await Promise.all([
      sql`select 'a' || x as v from generate_series(1, 3) x`.cursor((rows) => { xs.push(rows[0].v); }),
      sql`select 'b' || x as v from generate_series(1, 3) x`.cursor((rows) => { xs.push(rows[0].v); }),
    ]);
    assert.deepEqual(xs.sort(), ['a1', 'a2', 'a3', 'b1', 'b2', 'b3']);
  }],

  ['copy', async (sql) => {
    await sql`drop table if exists pgjs_copy`;
    await sql`create table pgjs_copy (id int, note text)`;
    const w = await sql`copy pgjs_copy from stdin`.writable();
    await pipeline(Readable.from(Array.from({ length: 500 }, (_, i) => `${i}\tnote ${i}\n`)), w);
    const chunks = [];
    const r = await sql`copy (select * from pgjs_copy order by id) to stdout`.readable();
    await pipeline(r, new Writable({ write(c, _, cb) { chunks.push(c); cb(); } }));
    const lines = Buffer.concat(chunks).toString().trim().split('\n');
    assert.equal(lines.length, 500);
    assert.equal(lines[499], '499\tnote 499');
    // A COPY the client aborts (CopyFail): nothing of it is kept and the connection goes on.
    const aborted = await sql`copy pgjs_copy from stdin`.writable();
    aborted.write('1000\tpartial\n');
    const err = await new Promise((resolve) => {
      aborted.on('error', resolve);
      aborted.destroy(new Error('abort'));
    });
    assert.equal(err.message, 'abort');
    assert.equal((await sql`select count(*)::int as n from pgjs_copy`)[0].n, 500);
  }],

  ['simple protocol and describe', async (sql) => {
    const m = await sql.unsafe('select 1 as a; select \'x\' as b');
    assert.deepEqual([m[0][0].a, m[1][0].b], [1, 'x']);
    const d = await sql`select ${1}::int as a, ${'x'}::text as b`.describe();
    assert.deepEqual(d.types, [23, 25]);
    assert.deepEqual(d.columns.map((c) => c.name), ['a', 'b']);
    const big = await sql`select x, repeat('y', 200) as p from generate_series(1, 20000) x`;
    assert.equal(big.count, 20000);
  }],

  ['cancel', async (sql) => {
    const running = sql`select pg_sleep(5)`;
    setTimeout(() => running.cancel(), 200);
    await expectError('57014', running);
    // Not checked: a query piped behind another, which postgres.js cancels when the one before
    // it completes. The request can reach Postgres while the backend is between that query's
    // messages, where Postgres ignores it, and then the query runs to its end, directly too.
    assert.equal((await sql`select 1 as v`)[0].v, 1);
  }],

  ['statement recreated after a schema change', async (sql) => {
    await sql`drop table if exists pgjs_alter`;
    await sql`create table pgjs_alter (a int)`;
    await sql`insert into pgjs_alter values (1)`;
    assert.deepEqual(Object.keys((await sql`select * from pgjs_alter where a = ${1}`)[0]), ['a']);
    await sql`alter table pgjs_alter add column b int`;
    // postgres.js prepares again when the server says 0A000 from RevalidateCachedQuery.
    assert.deepEqual(Object.keys((await sql`select * from pgjs_alter where a = ${1}`)[0]), ['a', 'b']);
  }],

  ['clients sharing a small pool', async () => {
    // More client connections than servers: in transaction mode the statements of each
    // connection are prepared on whichever server runs them.
    const sqls = Array.from({ length: 4 }, (_, k) => connect({ max: 3, prepare: k % 2 === 0 }));
    try {
      await Promise.all(sqls.map(async (sql, k) => {
        for (let round = 0; round < 3; round++) {
          await pipelined(sql);
          const v = await sql.begin(async (sql) => {
            await sql`select pg_sleep(0.01)`;
            return sql`select ${k}::int + ${round}::int as v`;
          });
          assert.equal(v[0].v, k + round);
        }
      }));
    } finally {
      await Promise.all(sqls.map((sql) => sql.end()));
    }
  }],

  ['session state', async (sql) => {
    // A transaction-local setting lasts for the transaction in either mode.
    const [, r] = await sql.begin((sql) => [
      sql`select set_config('pgjs.test', 'here', true)`, sql`select current_setting('pgjs.test') as v`,
    ]);
    assert.equal(r[0].v, 'here');
    if (!txMode) {
      await sql`listen pgjs_channel`; // a session keeps its server: LISTEN works
      await sql`unlisten pgjs_channel`;
    } else {
      await expectError('0A000', sql`listen pgjs_channel`);
    }
    await sql`drop table pgjs_tx, pgjs_copy, pgjs_alter`;
  }],
];

async function main() {
  const sql = connect();
  await checks.run(tests, sql, () => sql.end({ timeout: 5 }));
}

checks.main(main);
