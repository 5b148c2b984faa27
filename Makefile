# sluice: build, test and try it out.
#
#   make build   bin/sluice
#   make deps    check (and as root, install) PostgreSQL, Redis, PgBouncer, Node.js: scripts/deps.sh
#   make test    deps, go vet, all tests against real servers (and test/node's npm packages)
#   make demo    primary + replica + Redis + sluice on free ports, pgbench through sluice; Ctrl-C ends it
#   make bench   the benchmark harness (bench/)
#   make fuzz    every fuzz target for FUZZTIME (default 10s) each
#   make clean   remove build outputs

GO ?= go

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
	$(GO) run ./bench

fuzz:
	scripts/fuzz.sh

clean:
	rm -rf bin .bench
	find . -name '*.test' -type f -delete
