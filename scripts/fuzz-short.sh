#!/usr/bin/env bash
# Runs every Go fuzz target of the module (each `func FuzzX` in a _test.go
# file) for a short time: one `go test -fuzz '^FuzzX$'` per target, since
# -fuzz takes one target of one package. New targets are found by name, so
# nothing needs listing here. Usage: scripts/fuzz-short.sh [FUZZTIME] (3s).
# A failure leaves the crashing input in the package's testdata/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-${FUZZTIME:-3s}}
go=${GO:-go}
n=0
failed=()
while IFS= read -r file; do
  dir=./$(dirname "${file#./}")
  while IFS= read -r name; do
    echo "fuzz-short: $dir $name ($fuzztime)"
    if ! "$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$dir"; then
      failed+=("$dir $name")
    fi
    n=$((n + 1))
  done < <(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$file")
done < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v -e /node_modules/ -e /testdata/ | sort)
if [ "$n" -eq 0 ]; then
  echo "fuzz-short: no fuzz targets found" >&2
  exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz-short: FAILED %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "fuzz-short: $n targets fuzzed for $fuzztime each"
