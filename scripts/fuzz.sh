#!/usr/bin/env bash
# Runs every fuzz target in the module for a short while each: FUZZTIME per target (default 10s).
# New failing inputs land in the package's testdata/fuzz/<Target>/, where they become regression
# cases of plain `go test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-10s}
status=0
found=0
while read -r dir pkg; do
	# Only packages whose tests declare a fuzz target are compiled for -list.
	if ! grep -qs '^func Fuzz' "$dir"/*_test.go; then
		continue
	fi
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		found=$((found + 1))
		echo "fuzz: $pkg $target for $fuzztime"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" || status=1
	done
done < <(go list -f '{{.Dir}} {{.ImportPath}}' ./...)
echo "fuzz: $found targets"
exit $status
