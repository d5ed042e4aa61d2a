#!/usr/bin/env bash
# bench/run.sh: `make bench`. Runs $BUILD/bench/bench (default build/) and
# writes its table, with the machine it ran on, into docs/benchmarks.md (and
# the JSON into $BUILD/bench/bench.json). The tokenizer is timed on the King
# James Bible (`bible -f gen1:1-rev22:21`, Debian's bible-kjv); without
# bible-kjv, on a fallback text, and the table says so.
# Extra arguments go to bench (e.g. --threads 1,2,4).
set -euo pipefail

cd "$(dirname "$0")/.."
build=${BUILD:-build}
bench=$build/bench/bench
out=${BENCH_OUT:-docs/benchmarks.md}
[ -x "$bench" ] || { echo "bench/run.sh: $bench not built (make benches)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpt2c-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

text=$tmp/text.txt
if command -v bible >/dev/null && bible -f gen1:1-rev22:21 > "$text" 2>/dev/null && [ -s "$text" ]; then
    text_name="KJV Bible (bible -f gen1:1-rev22:21)"
else
    # Fallback: the project's own prose and code, repeated to about 4 MB.
    text_name="fallback text: the repository's .md/.c/.h files x N (bible-kjv not installed)"
    files=$(git ls-files '*.md' '*.c' '*.h' 2>/dev/null || ls docs/*.md src/*.c include/*.h)
    : > "$text"
    while [ "$(stat -c %s "$text")" -lt 4000000 ]; do cat $files >> "$text"; done
    echo "bench/run.sh: bible-kjv is not installed; timing the tokenizer on $text_name" >&2
fi

load=$(cut -d' ' -f1-3 /proc/loadavg)
"$bench" --text "$text" --text-name "$text_name" --json-out "$build/bench/bench.json" \
    "$@" > "$tmp/table.md"

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
cores=$(nproc)
gemm=$([ -f /usr/include/dnnl.h ] && echo "oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev 2>/dev/null || true)" || echo "gpt2c's portable GEMM")
{
    echo "# gpt2c benchmarks"
    echo
    echo "Made by \`make bench\` (bench/bench.c through bench/run.sh); rerun it to"
    echo "refresh this page. A 124M GPT-2 (gpt2_model_init, preset \"gpt2\", F32"
    echo "weights), public API only; each figure is a median over repeats."
    echo
    echo "- machine: ${cpu:-unknown CPU}, $cores cores ($(uname -m)), $(awk '/MemTotal/ {printf "%.0f GB", $2/1e6}' /proc/meminfo) RAM"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before the run: $load"
    echo "- OpenMP: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (libgomp spins, then sleeps)}"
    echo "- code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), $(${CC:-cc} --version | head -n 1), GEMM: $gemm"
    echo
    cat "$tmp/table.md"
    echo
    echo "How to read it:"
    echo
    echo "- decode: prefill 127 tokens, then time single \`gpt2_session_step\` calls"
    echo "  (context 128 onwards). Each step reads every weight once, so its limit"
    echo "  is one pass over the weights at the memory read bandwidth measured in"
    echo "  the same run with the same threads (\"one weight pass\")."
    echo "- prefill: \`gpt2_session_prefill\` of a 512-token prompt from an empty"
    echo "  session; GFLOP/s counts the blocks' matmuls and attention."
    echo "- memory read bandwidth: one read pass over a buffer as large as the"
    echo "  weights."
    echo "- tokenizer: \`gpt2_tokenizer_encode\` of the whole text in one call."
    echo "- load: \`gpt2_model_load\` of the model saved by \`gpt2_model_save\`, file"
    echo "  already in the page cache. F32 is memory-mapped, so its pages are read"
    echo "  later, on first use."
    echo "- training step: a 124M model, B=4 sequences of T=64 tokens: forward"
    echo "  keeping every activation, backward, AdamW (gpt2_trainer_*); the"
    echo "  GFLOP/s counts the usual 6 x parameters x tokens."
    echo "- peak RSS: the process's maximum resident size after the decode and"
    echo "  prefill runs (getrusage), before the other measures."
    echo "- Other processes on the machine disturb the figures, the thread counts"
    echo "  above the free cores most: there, OpenMP threads spinning at barriers"
    echo "  wait for each other's time slices, and OMP_WAIT_POLICY=passive (threads"
    echo "  sleep instead) is much faster. libgomp spins by default, which pays"
    echo "  off when every thread has a core of its own."
} > "$out"
cat "$tmp/table.md"
echo "bench/run.sh: wrote $out"
