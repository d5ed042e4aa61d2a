#!/usr/bin/env bash
# bench/compare.sh: `make bench-compare`. gpt2c against PyTorch on the same
# model and the same work, in the same run: makes a random 124M GPT-2 with
# `gpt2 init`, times it with `gpt2 bench` (decode, prefill and training;
# F32 and BF16 weights) and with bench/torch_bench.py (fp32 and bf16), then
# prints the ratios (gpt2c time / PyTorch time: below 1, gpt2c is faster)
# and writes them into docs/benchmarks.md as the comparison section (the
# rest of the page is bench/run.sh's).
#
# PyTorch gets its strongest settings here: OpenBLAS's SkylakeX kernels
# (Debian's OpenBLAS does not know Zen 5 and falls back to Haswell's, half
# as fast) on a CPU with AVX-512, OMP_WAIT_POLICY=passive (as gpt2 uses),
# its threads and OpenBLAS's set to the same count, inference_mode, bf16
# through oneDNN. The settings in effect are written beside the table.
#
#   bash bench/compare.sh [--quick]    (--quick: a tiny model, few repeats;
#                                       the page is left alone unless
#                                       BENCH_OUT names a file)
set -euo pipefail

cd "$(dirname "$0")/.."
build=${BUILD:-build}
gpt2=$build/gpt2
PY=/usr/bin/python3 # Debian's, with torch
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
if [ $# != 0 ]; then echo "usage: bench/compare.sh [--quick]" >&2; exit 2; fi
if [ $quick = 1 ]; then out=${BENCH_OUT:-}; else out=${BENCH_OUT:-docs/benchmarks.md}; fi
threads=${THREADS:-1,$(nproc)}
[ -x "$gpt2" ] || { echo "bench/compare.sh: $gpt2 not built (make)" >&2; exit 1; }
"$PY" -c 'import torch, numpy' 2>/dev/null ||
    { echo "bench/compare.sh: $PY has no torch/numpy (apt-get install python3-torch)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpt2c-compare.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# SkylakeX even over an OPENBLAS_CORETYPE already in the environment (some
# machines preset Haswell); COMPARE_OPENBLAS_CORETYPE chooses another.
if [ -n "${COMPARE_OPENBLAS_CORETYPE:-}" ]; then
    export OPENBLAS_CORETYPE=$COMPARE_OPENBLAS_CORETYPE
elif grep -qw avx512f /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=SkylakeX
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

echo "bench/compare.sh: making the model..." >&2
if [ $quick = 1 ]; then
    "$gpt2" init --n-layer 2 --n-head 2 --n-embd 64 --n-ctx 1024 --vocab-size 4096 \
        --seed 1 -o "$tmp/model" > /dev/null
    qflag=--quick
    model_desc="a tiny random GPT-2 (--quick: 2 layers, n_embd 64)"
else
    "$gpt2" init --config gpt2 --seed 1 -o "$tmp/model" > /dev/null
    qflag=
    model_desc="the same random 124M GPT-2 (\`gpt2 init --config gpt2 --seed 1\`)"
fi

load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
# Section by section, gpt2c then PyTorch, so that a change in the
# machine's load over the minutes of the run falls on both sides alike.
# Decode, bound by memory bandwidth (which swings by up to 2x from minute
# to minute on some machines), runs twice on each side, alternating, and
# each side keeps its faster figure.
for sec in decode prefill train decode; do
    n=1
    [ -f "$tmp/gpt2c-$sec.json" ] && n=2
    echo "bench/compare.sh: $sec: gpt2c..." >&2
    "$gpt2" bench -m "$tmp/model" --threads "$threads" $qflag --only "$sec" \
        --formats f32,bf16 --prefill-formats f32,bf16 \
        --json-out "$tmp/gpt2c-$sec$([ $n = 2 ] && echo -2).json" > /dev/null
    echo "bench/compare.sh: $sec: PyTorch..." >&2
    "$PY" bench/torch_bench.py run --model "$tmp/model" --threads "$threads" $qflag \
        --only "$sec" --json-out "$tmp/torch-$sec$([ $n = 2 ] && echo -2).json" > /dev/null
done
took=$(( $(date +%s) - start ))
"$PY" bench/torch_bench.py ratios \
    --gpt2c "$tmp"/gpt2c-{decode,decode-2,prefill,train}.json \
    --torch "$tmp"/torch-{decode,decode-2,prefill,train}.json > "$tmp/ratios.md"

settings=$("$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))["settings"]  # the same in each file
env = ", ".join("%s=%s" % (k, v) for k, v in s["env"].items() if v)
c = json.load(open(sys.argv[1]))["self_check"]
print("PyTorch %s (kernels: %s); %s; OpenBLAS core %s (threads set with it:"
      " %s); oneDNN %s; its logits checked against the reference model (max"
      " difference %.1g)"
      % (s["torch"], s["aten_cpu_capability"],
         env or "no settings in the environment", s["openblas_core"],
         "yes" if s["openblas_threads_set"] else "no",
         "available" if s["mkldnn"] else "absent",
         c["max_diff_vs_reference"]))
' "$tmp/torch-decode.json")

section() {
    echo "<!-- bench-compare:begin -->"
    echo "## gpt2c against PyTorch"
    echo
    echo "Made by \`make bench-compare\` (bench/compare.sh, bench/torch_bench.py):"
    echo "$model_desc,"
    echo "the same work, one run (decode, prefill, training, decode again, each"
    echo "timed in gpt2c then in PyTorch; the decode figures are each side's"
    echo "faster of its two, as memory bandwidth here swings from minute to"
    echo "minute). The last column is gpt2c's time over"
    echo "PyTorch's for the same work (for prefill, time per token): below 1,"
    echo "gpt2c is faster."
    echo
    echo "- ran: $(date -u '+%Y-%m-%d %H:%M UTC'), ${took} s; load average before: $load"
    echo "- $settings"
    echo "- PyTorch side: fp32 (OpenBLAS; batch-1 rows through its gemv,"
    echo "  torch.addmv, 3x faster there than the gemm F.linear calls), and bf16"
    echo "  weights and activations (matmuls through oneDNN) for inference, under"
    echo "  torch.inference_mode, one preallocated KV cache; training fp32, and"
    echo "  bf16 autocast over fp32 weights, AdamW with clipping at 1.0 as gpt2c's"
    echo "  trainer. gpt2c's BF16 inference rows keep the weights in bf16 and"
    echo '  compute in fp32; its bf16 training rows are `gpt2 train --dtype bf16`'
    echo "  (matmul inputs rounded to bf16, fp32 sums, fp32 weights and AdamW)."
    echo
    cat "$tmp/ratios.md"
    echo "<!-- bench-compare:end -->"
}
section > "$tmp/section.md"
cat "$tmp/section.md"

if [ -n "$out" ]; then
    begin='<!-- bench-compare:begin -->'
    end='<!-- bench-compare:end -->'
    if [ -f "$out" ] && grep -qx "$begin" "$out"; then
        # replace the old section where it stands
        awk -v sec="$tmp/section.md" -v b="$begin" -v e="$end" '
            $0 == b { while ((getline line < sec) > 0) print line; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip' "$out" > "$out.tmp"
    else
        { [ -f "$out" ] && cat "$out" && echo; cat "$tmp/section.md"; } > "$out.tmp"
    fi
    mv "$out.tmp" "$out"
    echo "bench/compare.sh: wrote the comparison into $out" >&2
fi
