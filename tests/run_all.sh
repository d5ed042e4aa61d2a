#!/usr/bin/env bash
# run_all.sh: the whole test suite, as `make check` (and so `make test` and
# CI) runs it, on a tree already built into $BUILD (default build/):
#   unit/*     every unit suite in $BUILD/tests
#   script/*   every tests/t_*.sh, with BUILD=$BUILD
#   asan/*     `make asan` (build-asan, unit suites under AddressSanitizer),
#              then t_reference.sh, t_cli.sh and t_train.sh on build-asan,
#              leaks checked
#   ubsan/*    `make ubsan` (build-ubsan, unit suites under UBSan)
#   portable/* the unit suites built with GEMM=none (gpt2c's own kernels)
#   fuzz/*     each libFuzzer target in tests/fuzz for $FUZZ_SECONDS (20)
#   example/*  the example programs, on a model made by `gpt2 init`
# Each item prints "PASS name (time)" or "FAIL name (why)" followed by the tail
# of its log (all logs stay in $BUILD/logs). The last line is exactly
# "N passed, N failed"; the exit status is non-zero if anything failed.
#
# Environment: BUILD, FUZZ_SECONDS, ITEM_TIMEOUT (seconds, default 900), and
# SKIP: sections to leave out while developing, any of "unit scripts asan
# ubsan portable fuzz examples" (CI sets none).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
# Called from make: start our own makes afresh, without the caller's
# jobserver or command-line variables.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
# OpenMP threads that spin while waiting at a barrier stall each other when
# the machine is busier than its cores (a shared CI runner, parallel jobs):
# the suites then ran 4x slower. The tests check results, not speed.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
build=${BUILD:-build}
fuzz_seconds=${FUZZ_SECONDS:-20}
item_timeout=${ITEM_TIMEOUT:-900}
skip=" ${SKIP:-} "
ncpu=$(nproc)
logs="$build/logs"
mkdir -p "$logs"
results="$(cd "$logs" && pwd)/results.txt"  # absolute: sub-runners cd
: > "$results"

skipped() { [[ "$skip" == *" $1 "* ]] && echo "-- skipping $1 (SKIP)"; }
show_tail() { tail -n "${2:-40}" "$1" | sed 's/^/    | /'; }

# item NAME LOGFILE CMD...: runs one item with a time limit, records PASS or
# FAIL, shows the log's tail on failure.
item() {
    local name=$1 log=$2 t0=$SECONDS rc
    shift 2
    timeout -k 10 "$item_timeout" "$@" > "$log" 2>&1
    rc=$?
    local dt=$((SECONDS - t0))
    if [ $rc = 0 ]; then
        echo "PASS $name (${dt}s)" | tee -a "$results"
    else
        local why="exit $rc"
        [ $rc = 124 ] && why="timed out after ${item_timeout}s"
        echo "FAIL $name ($why, ${dt}s)" | tee -a "$results"
        show_tail "$log"
    fi
    return $rc
}

# multi PREFIX LOGFILE CMD...: runs a command that records its own items in
# $results (run_unit.sh, fuzz/run.sh) and echoes them; if it fails without
# recording a failure (a build broke first), records PREFIX/build as failed.
multi() {
    local prefix=$1 log=$2 t0=$SECONDS before rc
    shift 2
    before=$(grep -c '^FAIL' "$results")
    timeout -k 10 "$item_timeout" env RESULTS_FILE="$results" \
        UNIT_PREFIX="$prefix/" "$@" > "$log" 2>&1
    rc=$?
    # its PASS/FAIL lines, each failure followed by the tail of its log
    grep -E '^(PASS|FAIL) |^    \| ' "$log"
    if [ $rc != 0 ] && [ "$(grep -c '^FAIL' "$results")" = "$before" ]; then
        local why="exit $rc"
        [ $rc = 124 ] && why="timed out after ${item_timeout}s"
        echo "FAIL $prefix/build ($why, $((SECONDS - t0))s)" | tee -a "$results"
        show_tail "$log"
    fi
    echo "   ($prefix: $((SECONDS - t0))s)"
}

# Every tests/t_*.sh is one test; BUILD says which build it exercises.
script_tests() {  # script_tests BUILD_DIR PREFIX [names...]
    local b=$1 prefix=$2 t name
    shift 2
    if [ $# = 0 ]; then
        set -- tests/t_*.sh
    fi
    for t in "$@"; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .sh)
        item "$prefix/$name" "$logs/$prefix-$name.log" \
            env BUILD="$b" ASAN_OPTIONS="${ASAN_OPTIONS:-}" bash "$t"
    done
}

# The example programs run on a small model the CLI makes, like a user would.
examples() {
    local ex name dir="$build/tmp-examples"
    shopt -s nullglob
    local bins=("$build"/examples/*)
    shopt -u nullglob
    [ ${#bins[@]} = 0 ] && { echo "-- no example programs in $build/examples"; return; }
    rm -rf "$dir" && mkdir -p "$dir"
    for ex in "${bins[@]}"; do
        [ -x "$ex" ] || continue
        name=$(basename "$ex")
        item "example/$name" "$logs/example-$name.log" \
            env BUILD="$build" bash -c "$(declare -f run_example); run_example \"\$@\"" \
            run_example "$ex" "$dir"
    done
    rm -rf "$dir"
}
run_example() {  # run_example BIN TMPDIR (runs in its own bash, under timeout)
    local bin=$1 dir=$2 build=$BUILD
    if [ ! -d "$dir/model" ]; then
        "$build/gpt2" init --n-layer 2 --n-head 2 --n-embd 64 --n-ctx 128 \
            --seed 1 -o "$dir/model" || return 1
    fi
    # examples take the model directory and a prompt, and must print more
    # text than the prompt
    local out prompt="In the beginning"
    out=$("$bin" "$dir/model" "$prompt") || return 1
    printf '%s\n' "$out"
    [ ${#out} -gt ${#prompt} ] || { echo "run_all: $bin generated nothing" >&2; return 1; }
}

if ! skipped unit; then
    echo "== unit suites ($build)"
    multi unit "$logs/unit.log" bash tests/run_unit.sh "$build"
fi

if ! skipped scripts; then
    echo "== script tests (BUILD=$build)"
    script_tests "$build" script
fi

if ! skipped asan; then
    echo "== AddressSanitizer (build-asan)"
    multi asan "$logs/asan.log" make --no-print-directory -j"$ncpu" asan
    if [ -x build-asan/gpt2 ]; then
        ASAN_OPTIONS=detect_leaks=1 script_tests build-asan asan \
            tests/t_reference.sh tests/t_cli.sh tests/t_train.sh tests/t_apps.sh tests/t_attention.sh
    fi
fi

if ! skipped ubsan; then
    echo "== UndefinedBehaviorSanitizer (build-ubsan)"
    multi ubsan "$logs/ubsan.log" make --no-print-directory -j"$ncpu" ubsan
fi

# The portable build: no GEMM library, only gpt2c's own kernels (what a
# machine without oneDNN gets), checked by the same unit suites.
if ! skipped portable; then
    echo "== portable kernels (build-portable, GEMM=none)"
    multi portable "$logs/portable.log" bash -c \
        "make --no-print-directory -j$ncpu BUILD=build-portable GEMM=none all tests &&
         bash tests/run_unit.sh build-portable"
fi

if ! skipped fuzz; then
    echo "== fuzzing, ${fuzz_seconds}s per target (build-fuzz)"
    multi fuzz "$logs/fuzz.log" bash tests/fuzz/run.sh "$fuzz_seconds"
fi

if ! skipped examples; then
    echo "== examples"
    examples
fi

passed=$(grep -c '^PASS' "$results")
failed=$(grep -c '^FAIL' "$results")
echo "== ${SECONDS}s in all; logs in $logs/"
if [ "$failed" != 0 ]; then
    echo "failed:"
    grep '^FAIL' "$results" | sed 's/^FAIL /  /'
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" != 0 ]
