<?php
// Helpers shared by the PHP client scripts: the connection settings from SLUICE_URL, checks that
// print "ok <name>", and expectations that throw on a mismatch.

declare(strict_types=1);

$url = getenv('SLUICE_URL');
if ($url === false || $url === '') {
    fwrite(STDERR, "SLUICE_URL is not set\n");
    exit(2);
}
$parts = parse_url($url);
define('PG_HOST', $parts['host']);
define('PG_PORT', (int) $parts['port']);
define('PG_USER', urldecode($parts['user']));
define('PG_PASS', urldecode($parts['pass'] ?? ''));
define('PG_DB', ltrim($parts['path'], '/'));
define('MODE', getenv('SLUICE_MODE') ?: 'transaction');

// Any warning or notice PHP raises fails the check that raised it.
set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
    throw new ErrorException($msg, 0, $no, $file, $line);
});

$CHECKS = [];

function check(string $name, callable $fn): void
{
    global $CHECKS;
    $CHECKS[] = [$name, $fn];
}

function expect($got, $want, string $what): void
{
    if ($got !== $want) {
        throw new RuntimeException("$what: got " . var_export($got, true) . ', want ' . var_export($want, true));
    }
}

// expectError runs $fn and returns the exception of class $cls it threw; any other outcome
// fails the check.
function expectError(string $cls, callable $fn, string $what): Throwable
{
    try {
        $fn();
    } catch (Throwable $e) {
        if ($e instanceof $cls) {
            return $e;
        }
        throw new RuntimeException("$what: " . get_class($e) . ': ' . trim($e->getMessage()) . ", want $cls", 0, $e);
    }
    throw new RuntimeException("$what: no error, want $cls");
}

function runChecks(callable $connect): void
{
    global $CHECKS;
    $c = $connect();
    foreach ($CHECKS as [$name, $fn]) {
        try {
            $fn($c);
        } catch (Throwable $e) {
            echo "FAIL $name: " . get_class($e) . ': ' . $e->getMessage() . "\n" . $e->getTraceAsString() . "\n";
            $p = $e->getPrevious();
            if ($p !== null) {
                echo 'caused by ' . get_class($p) . ': ' . $p->getMessage() . "\n";
            }
            exit(1);
        }
        echo "ok $name\n";
    }
    echo "all ok\n";
}
