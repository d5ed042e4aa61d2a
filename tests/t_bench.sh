#!/usr/bin/env bash
# t_bench.sh: `gpt2 bench` end to end on its --quick tiny model (seconds):
# one run writes the markdown tables and the JSON; the JSON must hold every
# figure the bench promises (machine limits, decode per format and context,
# prefill, training, tokenizer, load, peak RSS, scaling, contention), each
# either available with finite positive numbers or, for the few that may
# be missing on a machine (AMX, AVX512_BF16, oneDNN, the trainer's bf16),
# marked unavailable with a reason. Then usage errors and a bad model.
#
#   bash tests/t_bench.sh          (BUILD=build-asan for another build dir)
#
# Prints "ok - ..." / "not ok - ..." per check; exits non-zero on a failure.
. "$(dirname "$0")/lib.sh"
# the tokenizer from this tree, wherever the build directory is
export GPT2C_DATA=${GPT2C_DATA:-$PWD/assets}
fail_detail_lines=25
summary_prefix=""
need_gpt2

# --- one quick run: tables on stdout, JSON into a file
t0=$SECONDS
TMPDIR=$tmp timeout -k 5 300 "$G" bench --quick --json-out "$tmp/b.json" \
    > "$tmp/out.md" 2> "$tmp/err"
rc=$?
if [ $rc = 0 ]; then
    pass "bench --quick exits 0 ($((SECONDS - t0)) s)"
else
    fail "bench --quick exits 0 (got $rc)" "$(tail -n 15 "$tmp/err")"
fi
if grep -qE 'Sanitizer|runtime error:' "$tmp/err"; then
    fail "no sanitizer report" "$(grep -A 12 -E 'Sanitizer|runtime error:' "$tmp/err")"
fi
if ls "$tmp"/gpt2c-bench.* >/dev/null 2>&1; then
    fail "bench removes its temporary model" "$(ls "$tmp")"
else
    pass "bench removes its temporary model"
fi

titles=("Machine limits" "Decode (batch 1)" "Prefill" "Training step" "Tokenizer"
        "Load" "Decode beside a busy process")
# scaling needs a second thread count (a build without OpenMP has one)
grep -q '^- threads: 1;' "$tmp/out.md" || titles+=("Scaling with threads")
for title in "${titles[@]}"; do
    if grep -qF "### $title" "$tmp/out.md"; then
        pass "table: $title"
    else
        fail "table: $title" "$(head -n 20 "$tmp/out.md")"
    fi
done
if grep -q '| figure | value | limit | fraction of limit |' "$tmp/out.md"; then
    pass "table header"
else
    fail "table header"
fi

# --- the JSON: every promised figure, with sane numbers
check_json() {
    "$PY" - "$tmp/b.json" <<'EOF'
import json, math, sys

doc = json.load(open(sys.argv[1]))
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)

def positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) \
        and math.isfinite(x) and x > 0

for key in ("bench", "version", "model", "machine", "threads", "figures", "seconds"):
    need(key in doc, "top-level key %s" % key)
m = doc.get("machine", {})
for key in ("cpu", "cores", "cpuid", "read_kernel", "fma_kernel", "gemm",
            "omp_wait_policy"):
    need(key in m, "machine.%s" % key)
need(positive(doc.get("seconds")), "seconds > 0")
for key in ("n_layer", "n_head", "n_embd", "n_ctx", "vocab_size", "n_params"):
    need(positive(doc.get("model", {}).get(key)), "model.%s > 0" % key)

figs = {f["id"]: f for f in doc.get("figures", [])}
threads = doc.get("threads", [])
need(threads and threads[0] == 1, "threads start at 1")
n = max(threads) if threads else 1
cpuid = m.get("cpuid", {})

# figures that may be missing on some machines, and why
maybe = set()
for t in threads:
    if not cpuid.get("avx512_bf16"):
        maybe.add("bf16_dot_peak.t%d" % t)
    maybe.add("amx_bf16_peak.t%d" % t)
    if not m.get("gemm", "").startswith("oneDNN"):
        maybe.add("sgemm.t%d" % t)
    for shape in ("B4T64", "B8T256"):
        maybe.add("train.bf16.%s.t%d" % (shape, t))  # no trainer dtype yet

want = []
for t in threads:
    want += ["read_bw.t%d" % t, "fma_f32_peak.t%d" % t, "bf16_dot_peak.t%d" % t,
             "amx_bf16_peak.t%d" % t, "sgemm.t%d" % t, "tokenizer.t%d" % t]
    for fmt in ("F32", "F16", "BF16", "Q8_0", "Q4_0"):
        for ctx in (128, 1024):
            want.append("decode.%s.ctx%d.t%d" % (fmt, ctx, t))
    for fmt in ("F32", "BF16"):
        want.append("prefill.%s.t%d" % (fmt, t))
    for dt in ("f32", "bf16"):
        for shape in ("B4T64", "B8T256"):
            want.append("train.%s.%s.t%d" % (dt, shape, t))
for fmt in ("F32", "F16", "BF16", "Q8_0", "Q4_0"):
    want += ["rss.%s" % fmt, "load.%s" % fmt]
want += ["contention.decode.F32.ctx128.t2", "contention.quiet_ms.t2",
         "contention.busy_ms.t2"]
if n > 1:
    for base in ("read_bw", "fma_f32_peak", "decode.F32.ctx128",
                 "decode.F32.ctx1024", "prefill.F32", "train.f32.B4T64",
                 "train.f32.B8T256", "tokenizer"):
        want.append("scaling.%s.t%d" % (base, n))

# every figure that should have a limit (a fraction of limit) has one
with_limit = ("decode.", "prefill.", "train.f32.", "rss.", "scaling.", "sgemm.")

for fid in want:
    f = figs.get(fid)
    if f is None:
        bad.append("missing figure %s" % fid)
        continue
    for key in ("id", "section", "what", "unit", "available", "value"):
        need(key in f, "%s: key %s" % (fid, key))
    if not f.get("available"):
        need(fid in maybe, "%s unavailable: %s" % (fid, f.get("why")))
        need(bool(f.get("why")), "%s: unavailable without a reason" % fid)
        continue
    need(positive(f.get("value")), "%s: value %r" % (fid, f.get("value")))
    for key in ("limit", "fraction"):
        v = f.get(key)
        need(v is None or positive(v), "%s: %s %r" % (fid, key, v))
    if fid.startswith(with_limit):
        need(positive(f.get("limit")) and positive(f.get("fraction")),
             "%s: no limit/fraction" % fid)

c = figs.get("contention.decode.F32.ctx128.t2", {})
if c.get("available"):
    need(c.get("target") == 2 and isinstance(c.get("within_target"), bool),
         "contention: target 2 and within_target")
# a time's fraction is limit / value, a rate's value / limit
d = figs.get("decode.F32.ctx128.t1", {})
if d.get("available") and d.get("limit"):
    need(abs(d["fraction"] - d["limit"] / d["value"]) < 1e-6, "decode fraction")
p = figs.get("prefill.F32.t1", {})
if p.get("available") and p.get("limit"):
    need(abs(p["fraction"] - p["value"] / p["limit"]) < 1e-6, "prefill fraction")

for b in bad:
    print(b)
print("%d figures, %d expected, %d problems" % (len(figs), len(want), len(bad)))
sys.exit(1 if bad else 0)
EOF
}
if [ -s "$tmp/b.json" ] && out=$(check_json 2>&1); then
    pass "JSON: every figure present, numbers finite and positive ($(tail -n 1 <<< "$out"))"
else
    fail "JSON: every figure present, numbers finite and positive" "${out:-no JSON written}"
fi

# --json prints the same object on stdout instead of the tables
if TMPDIR=$tmp timeout -k 5 300 "$G" bench --quick --only load --formats f32 \
        --json > "$tmp/only.json" 2> "$tmp/err" &&
   "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
ids = [f["id"] for f in d["figures"]]
assert "load.F32" in ids, ids
assert not any(i.startswith(("decode.", "train.", "tokenizer.")) for i in ids), ids
' "$tmp/only.json" 2>> "$tmp/err"; then
    pass "--json --only load --formats f32: JSON on stdout, only that section"
else
    fail "--json --only load --formats f32" "$(tail -n 5 "$tmp/err")"
fi

# the narrower kernels of the machine limits (GPT2_BENCH_ISA masks the wider)
for isa in avx2 portable; do
    if GPT2_BENCH_ISA=$isa TMPDIR=$tmp timeout -k 5 300 "$G" bench --quick \
            --only load --formats f32 --json > "$tmp/isa.json" 2> "$tmp/err" &&
       "$PY" -c '
import json, math, sys
d = json.load(open(sys.argv[1]))
isa = sys.argv[2]
m = d["machine"]
assert m["read_kernel"] == isa, m
figs = {f["id"]: f for f in d["figures"]}
for fid in ("read_bw.t1", "fma_f32_peak.t1", "load.F32"):
    v = figs[fid]["value"]
    assert figs[fid]["available"] and math.isfinite(v) and v > 0, figs[fid]
assert not figs["bf16_dot_peak.t1"]["available"]
' "$tmp/isa.json" "$isa" 2>> "$tmp/err"; then
        pass "GPT2_BENCH_ISA=$isa: $isa kernels measure"
    elif ! grep -qw avx2 /proc/cpuinfo && [ $isa = avx2 ]; then
        pass "GPT2_BENCH_ISA=$isa: # SKIP no AVX2 here"
    else
        fail "GPT2_BENCH_ISA=$isa: $isa kernels measure" "$(tail -n 5 "$tmp/err")"
    fi
done

# --- usage errors (exit 2) and runtime errors (exit 1), with a message
expect() { # expect NAME CODE ARGS...
    local name=$1 code=$2
    shift 2
    TMPDIR=$tmp timeout -k 5 120 "$G" bench "$@" > "$tmp/out" 2> "$tmp/err"
    local got=$?
    if [ "$got" = "$code" ] && grep -q '^gpt2 bench: ' "$tmp/err"; then
        pass "$name: exit $code with a message"
    else
        fail "$name: exit $code with a message (got $got)" "$(cat "$tmp/err")"
    fi
}
expect "--threads 0" 2 --threads 0
expect "--threads x" 2 --threads 1,x
expect "--only nonsense" 2 --only decode,nonsense
expect "--formats q9_9" 2 --formats f32,q9_9
expect "--steps 0" 2 --steps 0
expect "unknown option" 2 --frobnicate
expect "extra argument" 2 extra
expect "missing model" 1 --quick -m "$tmp/no-such-model"
expect "missing text" 1 --quick --text "$tmp/no-such-text"
if "$G" bench --help > "$tmp/out" 2>&1 && grep -q '^usage: gpt2 bench' "$tmp/out"; then
    pass "--help"
else
    fail "--help" "$(cat "$tmp/out")"
fi

finish
