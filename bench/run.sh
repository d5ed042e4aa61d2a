#!/usr/bin/env bash
# bench/run.sh: `make bench`. Runs `$BUILD/gpt2 bench` (default build/) and
# writes its tables, with the machine it ran on, into docs/benchmarks.md
# (and the JSON into $BUILD/bench.json). The tokenizer is timed on the King
# James Bible (`bible -f gen1:1-rev22:21`, Debian's bible-kjv); without
# bible-kjv, on a fallback text, and the table says so. The comparison with
# PyTorch (`make bench-compare`, bench/compare.sh) is a section of its own
# on the same page: this script keeps it as it is.
# Extra arguments go to `gpt2 bench` (e.g. --threads 1,2,4, --only decode).
set -euo pipefail

cd "$(dirname "$0")/.."
build=${BUILD:-build}
gpt2=$build/gpt2
out=${BENCH_OUT:-docs/benchmarks.md}
[ -x "$gpt2" ] || { echo "bench/run.sh: $gpt2 not built (make)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpt2c-bench-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

text=$tmp/text.txt
if command -v bible >/dev/null && bible -f gen1:1-rev22:21 > "$text" 2>/dev/null && [ -s "$text" ]; then
    text_name="KJV Bible (bible -f gen1:1-rev22:21)"
else
    # Fallback: the project's own prose and code, repeated to about 4 MB.
    text_name="fallback text: the repository's .md/.c/.h files x N (bible-kjv not installed)"
    files=$(git ls-files '*.md' '*.c' '*.h' 2>/dev/null || ls docs/*.md src/*.c include/*.h)
    : > "$text"
    # shellcheck disable=SC2086 # $files is a list of names, split on purpose
    while [ "$(stat -c %s "$text")" -lt 4000000 ]; do cat $files >> "$text"; done
    echo "bench/run.sh: bible-kjv is not installed; timing the tokenizer on $text_name" >&2
fi

load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
"$gpt2" bench --text "$text" --text-name "$text_name" --json-out "$build/bench.json" \
    "$@" > "$tmp/table.md"
took=$(( $(date +%s) - start ))

# the PyTorch comparison, kept from the page as it was
# What quantization costs: the default model's validation loss (the book
# of Revelation, held out from its training) with its weights kept in each
# format, by `gpt2 eval` itself: in batches, and (formats whose decode
# differs: BF16 as stored, Q8_0 and Q4_0, whose decode quantizes x to
# int8) token by token through the KV cache, `gpt2 eval --decode`.
eval_line() { # weights, extra options: "loss ppl" or "failed: why"
    local line
    if ! line=$("$gpt2" eval -m "$model" --weights "$1" $2 "$val" 2> "$tmp/eval.err" | tail -n 1) ||
       [ -z "$line" ]; then
        echo "failed: $(tail -n 1 "$tmp/eval.err")"
        return
    fi
    echo "$line" | awk '{ gsub(",", "", $5); print $2, $5 }'
}
vs() { awk -v p="$1" -v b="$2" 'BEGIN { printf "%+.2f%%", (p / b - 1) * 100 }'; }
quant_cost() {
    local model=models/kjv val=$tmp/kjv/val/66-Rev.txt base="" dbase="" w r d loss ppl dl dp
    if [ ! -f "$model/config.json" ] || ! command -v bible > /dev/null ||
       ! bash scripts/kjv-text.sh "$tmp/kjv" 2> /dev/null || [ ! -s "$val" ]; then
        echo "not measured: needs models/kjv and bible-kjv"
        return
    fi
    echo "| weights kept as | loss (nats/token) | perplexity | vs BF16 (as stored) | decode: loss | decode: perplexity | decode: vs BF16 |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for w in bf16 f32 f16 q8_0 q4_0; do
        r=$(eval_line "$w" "")
        case $r in failed*) echo "| $w | $r | | | | | |"; continue ;; esac
        read -r loss ppl <<< "$r"
        [ -n "$base" ] || base=$ppl
        d="| | |"
        case $w in bf16 | q8_0 | q4_0)
            progress_note "  $w, token by token..."
            r=$(eval_line "$w" --decode)
            case $r in
            failed*) d="$r | | |" ;;
            *) read -r dl dp <<< "$r"
               [ -n "$dbase" ] || dbase=$dp
               d="$dl | $dp | $(vs "$dp" "$dbase") |" ;;
            esac ;;
        esac
        echo "| $w | $loss | $ppl | $(vs "$ppl" "$base") | $d"
    done
}
progress_note() { echo "bench/run.sh: $*" >&2; }
progress_note "quantization cost on the default model..."
quant_cost > "$tmp/quant.md"

begin='<!-- bench-compare:begin -->'
end='<!-- bench-compare:end -->'
if [ -f "$out" ]; then
    sed -n "/^$begin\$/,/^$end\$/p" "$out" > "$tmp/compare.md"
fi

cc_version=$(${CC:-cc} --version | head -n 1)
code="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
{
    echo "# gpt2c benchmarks"
    echo
    echo "Made by \`make bench\` (\`gpt2 bench\`, through bench/run.sh); rerun it"
    echo "to refresh this page. Every figure stands beside the limit this machine"
    echo "sets for it, measured in the same run, and the fraction of that limit"
    echo "reached. Public API only; figures are medians over repeats, limits the"
    echo "best of theirs."
    echo
    echo "- ran: $(date -u '+%Y-%m-%d %H:%M UTC'), ${took} s; load average before the run: $load"
    echo "- machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores ($(uname -m)), $(awk '/MemTotal/ {printf "%.0f GB", $2/1e6}' /proc/meminfo) RAM"
    echo "- code: $code, $cc_version"
    cat "$tmp/table.md"
    cat <<'EOF'

How to read it:

- Machine limits. Streaming read: a warm read pass (the widest loads the
  CPU has, each line also prefetched 4 KiB ahead, every thread reading
  its own contiguous part) over a buffer in transparent huge pages (as
  gpt2c's own large blocks are), best of several passes; a buffer that
  fits a cache is read from it. fp32 FMA peak: independent FMA chains in
  registers on every thread (2 flops per lane per FMA). bf16: the same
  with vdpbf16ps (4 flops per lane), when cpuid reports AVX512_BF16. AMX:
  tdpbf16ps on full tiles, only when cpuid reports AMX-TILE and AMX-BF16.
  dnnl_sgemm: oneDNN's fp32 GEMM on 2048^3 (only when gpt2c is built
  with oneDNN), against the FMA peak.
- Decode: batch 1, one `gpt2_session_step` at a time, median of 16 steps.
  "Context C": the session is prefilled so that each thread count's steps
  end at exactly C tokens (the thread counts run one after another, after
  one untimed step each). Limit: one streaming read pass (as above),
  with the same threads, over exactly the bytes a step must read: the
  weights as kept in memory (`gpt2_model_weight_bytes`) plus K and V of
  every cached position (2 x n_layer x context x n_embd x 4 bytes, at the
  steps' mean context). The steps run in 4 rounds, each followed by 8
  read passes (the best kept), and the fraction is the median of the
  rounds' ratios: this machine's memory bandwidth changes by up to 2x
  from minute to minute, and each ratio compares steps and reads a moment
  apart. Small formats may fit the last-level cache; the read pass over
  the same number of bytes then measures that cache. F32 weights are read
  where they are mapped from the file, mostly in 4 KiB pages; the read
  pass is in huge pages, which read 2-10% faster here.
- Peak RSS: the process's peak resident size (VmHWM, reset before each
  format) while loading the model as that format, decoding at both
  contexts and prefilling; limit: the weights as kept plus one session's
  KV cache (n_ctx positions).
- Prefill: `gpt2_session_prefill` of a 512-token prompt from an empty
  session (logits for the last position only). FLOPs per token: n_layer x
  (24 n_embd^2 + 2 n_embd T), the blocks' matmuls (2 flops per
  multiply-add) and causal attention over T/2 positions on average; limit:
  the fp32 FMA peak with the same threads (prefill computes in fp32 for
  every weight format).
- Training step: forward keeping activations, backward, AdamW
  (`gpt2_trainer_forward_backward` + `gpt2_trainer_update`), fp32, after
  one untimed step. FLOPs = 6 x parameters x B x T + 6 x n_layer x n_embd
  x T x B x T (causal attention, forward and backward); limit: the fp32
  FMA peak with the same threads, or for `--dtype bf16` the AVX512_BF16
  peak (its matmuls' unit; the rest of the step stays fp32).
- Tokenizer: `gpt2_tokenizer_encode`, the text cut at line starts into
  one piece per thread, the pieces encoded at once. No hardware limit;
  its scaling row says how it uses the threads.
- Load: `gpt2_model_load_as` of the F32 file (in the page cache) into each
  format. F32 is memory-mapped (nothing read until used); the others read
  the file and convert, limit one read of the file.
- Scaling: the speed-up from 1 thread to all, against linear.
- Decode beside a busy process: 2-thread decode (F32, context 128) quiet,
  then with a forked process spinning on one core; issue 4 asks for at
  most 2x. The decode pool watches its own threads' run delay and takes
  fewer threads while they wait for a CPU (src/pool.c): beside the
  spinner it decodes on one thread, at about its quiet 1-thread time.
  OMP_WAIT_POLICY matters for prefill and training: `gpt2` sets it to
  passive unless the user set it, and the header above says which was in
  effect.
- Other processes on the machine disturb every figure (the load average
  above says how busy it was); ratios measured in one run are the ones to
  trust.
EOF
    echo
    echo "## What quantization costs"
    echo
    echo "The default model (models/kjv: 6 layers, width 256, stored in BF16) on"
    echo "the book of Revelation, held out from its training, with its weight"
    echo 'matrices kept in each format (`gpt2 eval --weights`). In Q4_0, wte (the'
    echo "embedding and tied LM head, 73% of this model's parameters) stays Q8_0."
    echo "The batch columns score windows of 256 tokens at once (activations in"
    echo "f32); the decode columns score the same tokens one at a time through"
    echo 'the KV cache (`gpt2 eval --decode`), as generation computes them: there'
    echo "Q8_0 and Q4_0 rows multiply activations quantized to int8 per block of"
    echo "32, and BF16 rows use vdpbf16ps where the CPU has it."
    echo
    cat "$tmp/quant.md"
    if [ -s "$tmp/compare.md" ]; then
        echo
        cat "$tmp/compare.md"
    fi
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$tmp/table.md"
echo "bench/run.sh: wrote $out"
