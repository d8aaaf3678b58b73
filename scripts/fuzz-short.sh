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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# fuzz DIR NAME: one run; its output also in $log.
fuzz() {
  "$go" test -run '^$' -fuzz "^${2}\$" -fuzztime "$fuzztime" "$1" 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}
while IFS= read -r file; do
  dir=./$(dirname "${file#./}")
  while IFS= read -r name; do
    echo "fuzz-short: $dir $name ($fuzztime)"
    if ! fuzz "$dir" "$name"; then
      # Go's fuzzing coordinator can fail a run with a bare "context
      # deadline exceeded" when -fuzztime ends while a starved worker is
      # mid-input (golang/go#75804; seen in CI on a busy machine). A real
      # finding writes its input; without one, the target runs once more
      # and only a second failure counts.
      if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
        echo "fuzz-short: $dir $name: the fuzztime deadline race, no input written; running it again"
        fuzz "$dir" "$name" || failed+=("$dir $name")
      else
        failed+=("$dir $name")
      fi
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
