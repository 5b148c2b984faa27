#!/usr/bin/env bash
# Runs sluice's checks: go vet, then every Go test against real servers (internal/pgtest starts
# them). `make test` runs scripts/deps.sh first.
#
# The Python client tests under test/python need only Debian's packages (scripts/deps.sh).
# The Node.js client tests under test/node are driven by Go tests, which start the servers they
# need; their packages are installed here first, from the lock file when there is one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -f test/node/package.json ]; then
	echo "test: npm packages for test/node"
	if [ -f test/node/package-lock.json ]; then
		(cd test/node && npm ci --no-audit --no-fund)
	else
		(cd test/node && npm install --no-audit --no-fund)
	fi
fi

echo "test: go vet"
go vet ./...
echo "test: go test"
go test -count=1 -timeout 14m ./...

# The race detector over the engine's unit tests and the end-to-end tests that race the most
# (random clients, servers killed, cancels, pipelines across a pool of one): it found data races
# the plain runs could not see.
echo "test: go test -race (engine and concurrency tests)"
go test -race -count=1 -timeout 10m $(go list ./internal/... ./plugins/... ./plugin/... | grep -v /wasm)
go test -race -count=1 -timeout 10m -run 'TestChaos|TestUnnamed|TestQueryThatWaited|TestPanicEnds|TestPgxHundredClients|TestCachePipelinedWrites|TestCancel|TestFanout|TestShardDown|TestCopy|TestReplicaDownUnderLoad|TestFailoverToPromotedReplica|TestReadRetriedAfterReplyCutShort|TestDeferredParseRetriedElsewhere|TestBadInputServerKilled|TestBadInputClientLeaves|TestClientLeaving|TestClientSending|TestQueryWaitTimeout|TestCacheStampede|TestCacheRedisOutage|TestCacheHitTakesNoServer' ./test/e2e
