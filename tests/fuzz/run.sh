#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS]: builds every libFuzzer target tests/fuzz/fuzz_<name>.c
# with clang -fsanitize=fuzzer,address,undefined against a library built the
# same way (build-fuzz/), then runs each for SECONDS (default 20). Seeds come
# from tests/fuzz/corpus_<name>/ when present (read only: what libFuzzer finds
# goes to build-fuzz/corpus/<name>/), a dictionary from tests/fuzz/<name>.dict.
# A crash, leak, sanitizer report or timeout is a failure; its input is kept
# as build-fuzz/artifacts/<name>-crash-*. One line per target:
#   PASS fuzz/tokenizer     FAIL fuzz/loader (exit 1)
# then "N passed, N failed"; exits non-zero if any failed.
#
# Environment: FUZZ_JOBS targets at once (default: cores), RESULTS_FILE as in
# run_unit.sh, FUZZ_CC (default clang).
set -uo pipefail

secs=${1:-20}
cd "$(dirname "$0")/../.." || exit 1
build="build-fuzz"
cc=${FUZZ_CC:-clang}
jobs=${FUZZ_JOBS:-$(nproc)}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
mkdir -p "$build/logs" "$build/artifacts" "$build/corpus" "$build/fuzz"

record() {
    echo "$1 fuzz/$2${3:+ $3}"
    if [ -n "${RESULTS_FILE:-}" ]; then echo "$1 fuzz/$2${3:+ $3}" >> "$RESULTS_FILE"; fi
}
show_tail() { tail -n "${2:-40}" "$1" | sed 's/^/    | /'; }

shopt -s nullglob
srcs=(tests/fuzz/fuzz_*.c)
if [ ${#srcs[@]} = 0 ]; then
    echo "fuzz: no targets in tests/fuzz/"
    echo "0 passed, 0 failed"
    exit 0
fi
command -v "$cc" >/dev/null || { record FAIL build "($cc not found)"; echo "0 passed, 1 failed"; exit 1; }

# The library, instrumented for coverage and sanitizers. Single-threaded
# (OPENMP=0): libFuzzer runs one input at a time and thread pools only add
# noise to the leak checker.
libs="-lpcre2-8 -lcjson -lm -lpthread"
[ -f /usr/include/dnnl.h ] && libs="$libs -ldnnl"
if ! make --no-print-directory -j"$(nproc)" BUILD=$build CC="$cc" OPENMP=0 \
        CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $san" \
        $build/libgpt2.a > "$build/logs/build.log" 2>&1; then
    record FAIL build "(library did not build)"
    show_tail "$build/logs/build.log"
    echo "0 passed, 1 failed"
    exit 1
fi

passed=0 failed=0
run_one() {  # run_one name: builds and runs one target; writes its rc file
    local name=$1 bin="$build/fuzz/fuzz_$1" log="$build/logs/fuzz_$1.log"
    local seeds=() dict=()
    if ! "$cc" -std=c11 -O1 -g -fsanitize=fuzzer $san -D_GNU_SOURCE \
            -Iinclude -Isrc -Itests "tests/fuzz/fuzz_$name.c" \
            "$build/libgpt2.a" $libs -o "$bin" > "$log" 2>&1; then
        echo "did not build" > "$log.rc"
        return
    fi
    mkdir -p "$build/corpus/$name"
    [ -d "tests/fuzz/corpus_$name" ] && seeds=("tests/fuzz/corpus_$name")
    [ -f "tests/fuzz/$name.dict" ] && dict=("-dict=tests/fuzz/$name.dict")
    # -timeout: one input taking this long is a hang, and a failure.
    timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" -timeout=30 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/artifacts/$name-" "${dict[@]}" \
        "$build/corpus/$name" "${seeds[@]}" >> "$log" 2>&1
    echo $? > "$log.rc"
}

# Up to $jobs targets at once; results are reported in source order.
names=()
for src in "${srcs[@]}"; do n=$(basename "$src" .c); names+=("${n#fuzz_}"); done
for name in "${names[@]}"; do
    rm -f "$build/logs/fuzz_$name.log.rc"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    run_one "$name" &
done
wait
for name in "${names[@]}"; do
    rc=$(cat "$build/logs/fuzz_$name.log.rc" 2>/dev/null || echo "no result")
    if [ "$rc" = 0 ]; then
        record PASS "$name"
        passed=$((passed + 1))
    else
        case "$rc" in [0-9]*) rc="exit $rc" ;; esac
        record FAIL "$name" "($rc)"
        show_tail "$build/logs/fuzz_$name.log"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
