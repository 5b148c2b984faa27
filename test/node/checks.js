// The runner the client scripts share: each check prints "ok <name>" when it passes; the first
// failure prints "FAIL <name>: <why>", the rest are skipped, and the process exits with status
// 1 after end() has run. When all pass, the last line is "all ok". test/e2e reads these lines.
'use strict';

function why(err) {
  return err && err.stack ? err.stack : err;
}

// run runs checks ([name, fn] pairs, fn called with arg), then end(), and exits 1 on a failure.
async function run(checks, arg, end) {
  let failed = false;
  for (const [name, fn] of checks) {
    try {
      await fn(arg);
      console.log(`ok ${name}`);
    } catch (err) {
      console.log(`FAIL ${name}: ${why(err)}`);
      failed = true;
      break;
    }
  }
  await end();
  if (failed) {
    process.exit(1);
  }
  console.log('all ok');
}

// main runs the script's async main and turns an error outside the checks into a FAIL line.
function main(fn) {
  fn().catch((err) => {
    console.log(`FAIL: ${why(err)}`);
    process.exit(1);
  });
}

module.exports = { run, main };
