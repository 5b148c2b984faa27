# sluice: build, test and try it out.
#
#   make build   bin/sluice
#   make deps    check (and as root, install) PostgreSQL, Redis, PgBouncer, pgpool-II, Node.js,
#                Debian's python3-asyncpg, python3-psycopg, python3-psycopg2, a JDK, pgjdbc,
#                ruby-pg, php-cli and php-pgsql: scripts/deps.sh
#   make test    deps, go vet, all tests against real servers (and test/node's npm packages)
#   make demo    primary + replica + Redis + sluice on free ports, pgbench through sluice; Ctrl-C ends it
#   make bench   the benchmark harness (bench/): every section, or BENCH=pooler|cache|sharding (a
#                comma-separated list); BENCHFLAGS are more flags (go run ./bench -h lists them)
#   make fuzz    every fuzz target for FUZZTIME (default 10s) each
#   make clean   remove build outputs

GO ?= go
BENCH ?=
BENCHFLAGS ?=

.PHONY: all build deps test demo bench fuzz clean

all: build

build:
	$(GO) build -o bin/sluice ./cmd/sluice

deps:
	scripts/deps.sh

test: deps
	scripts/test.sh

demo: deps build
	$(GO) run ./internal/demo

bench: build
	$(GO) run ./bench $(if $(BENCH),-bench $(BENCH)) $(BENCHFLAGS)

fuzz:
	scripts/fuzz.sh

clean:
	rm -rf bin .bench
	find . -name '*.test' -type f -delete
