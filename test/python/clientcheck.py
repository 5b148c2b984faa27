"""What the client scripts of test/python share: the URL of sluice, the list of checks, the
assertions, and the runner that prints "ok <name>" for each passing check, "FAIL <name>: <why>"
and exit status 1 at the first failure, and "all ok" at the end (test/e2e/python_test.go reads
that)."""

import os
import sys
import traceback

URL = os.environ.get("SLUICE_URL")
if not URL:
    print("SLUICE_URL is not set", file=sys.stderr)
    sys.exit(2)

checks = []


def check(name):
    """Registers the decorated function as the check called name, run in order of definition."""

    def register(fn):
        checks.append((name, fn))
        return fn

    return register


def expect(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}" if what else f"got {got!r}, want {want!r}")


def expect_error(cls, fn, what=""):
    """Calls fn and returns the error of class cls it raises; anything else fails."""
    try:
        fn()
    except cls as err:
        return err
    except Exception as err:  # noqa: BLE001 - report what came instead
        raise AssertionError(f"{what}: {type(err).__name__}: {err}, want {cls.__name__}") from err
    raise AssertionError(f"{what}: no error, want {cls.__name__}")


def run(connect):
    """Runs every check with one connection from connect()."""
    c = connect()
    failed = False
    for name, fn in checks:
        try:
            fn(c)
            print(f"ok {name}", flush=True)
        except Exception:  # noqa: BLE001
            print(f"FAIL {name}: {traceback.format_exc()}", flush=True)
            failed = True
            break
    c.close()
    if failed:
        sys.exit(1)
    print("all ok", flush=True)


async def run_async(connect):
    """run for asyncio drivers: connect and the checks are coroutines."""
    c = await connect()
    failed = False
    for name, fn in checks:
        try:
            await fn(c)
            print(f"ok {name}", flush=True)
        except Exception:  # noqa: BLE001
            print(f"FAIL {name}: {traceback.format_exc()}", flush=True)
            failed = True
            break
    await c.close()
    if failed:
        sys.exit(1)
    print("all ok", flush=True)
