#!/usr/bin/env bash
# run_unit.sh BUILD_DIR: runs every BUILD_DIR/tests/test_* unit suite from the
# repository root (suites read test data by relative paths), one line each:
#   PASS test_model
#   FAIL test_tokenizer (exit 1)      followed by the tail of its output
# then "N passed, N failed". Exits non-zero if any suite failed or none ran.
#
# Environment:
#   RESULTS_FILE  also append each PASS/FAIL line there (run_all.sh counts)
#   UNIT_PREFIX   put before each suite's name there (e.g. "asan/")
#   UNIT_TIMEOUT  seconds a suite may run (default 600)
set -uo pipefail

build=${1:?usage: run_unit.sh BUILD_DIR}
cd "$(dirname "$0")/.." || exit 1
timeout_s=${UNIT_TIMEOUT:-600}
# Spinning OpenMP waits stall each other on a busy machine (see run_all.sh).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
logdir="$build/logs"
mkdir -p "$logdir"

record() {  # record PASS|FAIL name [detail]
    local line="$1 ${UNIT_PREFIX:-}$2${3:+ $3}"
    echo "$line"
    if [ -n "${RESULTS_FILE:-}" ]; then echo "$line" >> "$RESULTS_FILE"; fi
}

passed=0 failed=0
shopt -s nullglob
for bin in "$build"/tests/test_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    name=$(basename "$bin")
    log="$logdir/$name.log"
    timeout -k 10 "$timeout_s" "$bin" > "$log" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
        record PASS "$name"
        passed=$((passed + 1))
    else
        detail="(exit $rc)"
        [ $rc = 124 ] && detail="(timed out after ${timeout_s}s)"
        record FAIL "$name" "$detail"
        tail -n 30 "$log" | sed 's/^/    | /'
        failed=$((failed + 1))
    fi
done

if [ $((passed + failed)) = 0 ]; then
    echo "run_unit.sh: no unit suites in $build/tests" >&2
    record FAIL "unit-suites" "(none found in $build/tests)"
    failed=1
fi
echo "$passed passed, $failed failed"
[ $failed = 0 ]
