#!/usr/bin/env bash
# make reliability: what the README's "Reliability" table shows, measured
# anew. Runs the whole test suite verbosely (unit tests under the race
# detector, the lab tests on the real kernel: faults, bad pushes, load,
# attack surface, boot clock), then every fuzz target for FUZZTIME, and
# prints the table from the tests' own `reliability:` lines and the fuzzers'
# execution counts. Needs root (the lab builds network namespaces; nothing
# touches the host's network). FUZZTIME=10m is the published run (4 targets
# and more: over an hour); the default is short.
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZTIME=${FUZZTIME:-30s}
out=${RELIABILITY_OUT:-dist/reliability.md}
mkdir -p "$(dirname "$out")"
log=$(mktemp)
fuzzlog=$(mktemp)
trap 'rm -f "$log" "$fuzzlog"' EXIT

echo "== tests (verbose; this takes a few minutes)" >&2
status=0
go test -race -count=1 -v ./agent/... ./rules/... >"$log" 2>&1 || status=1
go test -count=1 -v -timeout 30m ./scripts/... ./openwrt/... >>"$log" 2>&1 || status=1
grep -E '^(--- FAIL|FAIL|ok )' "$log" >&2 || true

echo "== fuzzing, $FUZZTIME per target, one at a time" >&2
fuzzrows=()
while IFS=: read -r file name; do
  pkg="./$(dirname "$file")"
  name=${name#func }
  name=${name%%(*}
  if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel 1 "$pkg" >"$fuzzlog" 2>&1; then
    result="no failure"
  else
    result="FAILED (see go test -fuzz output)"
    status=1
  fi
  execs=$(grep -oE 'execs: [0-9]+' "$fuzzlog" | tail -1 | grep -oE '[0-9]+' || echo "?")
  fuzzrows+=("| fuzzing | ${name} (${pkg#./}), ${FUZZTIME} | ${execs} executions, ${result} |")
  echo "   ${name}: ${execs} execs, ${result}" >&2
done < <(grep -rHoE '^func Fuzz[A-Za-z0-9_]+\(' --include='*_test.go' agent rules scripts | sort)

{
  echo "| area | what was tried | result |"
  echo "|---|---|---|"
  # Test rows, in the order the tests ran, without the file:line prefix.
  grep -oE 'reliability: .*' "$log" | sed -E 's/^reliability: /| /; s/$/ |/'
  # The fault lab's summaries: "RESULT kill9: ...".
  grep -oE 'RESULT [a-z0-9-]+: .*' "$log" | sed -E 's/^RESULT ([a-z0-9-]+): (.*)$/| fault | \1 | \2 |/'
  printf '%s\n' "${fuzzrows[@]}"
} >"$out"
echo
cat "$out"
echo
echo "(written to $out; exit status $status)" >&2
exit "$status"
