#!/usr/bin/env bash
# t_reference.sh: gpt2c against the PyTorch reference in tests/reference/.
#
#   1. self_test.py checks the reference itself (second forward, causality,
#      loss, float32 vs float64, safetensors, sensitivity, determinism)
#   2. make_golden.py writes random models and their golden logits/loss to
#      $BUILD/golden, when missing or older than the reference scripts
#   3. ref_check $BUILD/golden: gpt2c's batch forward and KV-cache session
#      against the golden values
#   4. ref_check --save, then check_c_model.py: gpt2c's saved models (F32,
#      BF16, F16) are valid Hugging Face directories and the reference
#      computes gpt2c's logits from them
#   5. make_train_golden.py writes random models and their golden
#      gradients, accumulated gradients, AdamW steps and schedules to
#      $BUILD/golden_train (when missing or stale, as in 2)
#   6. ref_train_check $BUILD/golden_train: gpt2c's trainer against them
#   7. ref_train_check on copies with one golden value moved ten times the
#      tolerance (a gradient, a final parameter, a step's loss) must fail
# Prints PASS/FAIL per step and a summary; exits non-zero on any failure.
# Runs in the repository root (BUILD is relative to it). BUILD selects the
# build (build, build-asan, ...); PYTHON the interpreter with torch
# (Debian's /usr/bin/python3).
. "$(dirname "$0")/lib.sh"
# no __pycache__ in the source tree
export PYTHONDONTWRITEBYTECODE=1

build=$BUILD
python=${PYTHON:-/usr/bin/python3}
refdir=tests/reference
golden="$build/golden"
ref_check="$build/tests/tools/ref_check"
golden_train="$build/golden_train"
ref_train_check="$build/tests/tools/ref_train_check"
results=()
failed=0

step() {  # step NAME CMD...: runs CMD, records PASS or FAIL
    local name=$1
    shift
    echo "== $name"
    if "$@"; then
        results+=("PASS $name")
    else
        results+=("FAIL $name")
        failed=$((failed + 1))
    fi
}

# Golden files are stale when any input of make_golden.py is newer.
golden_fresh() {
    [ -f "$golden/.complete" ] || return 1
    local f
    for f in "$refdir/gpt2_ref.py" "$refdir/make_golden.py" \
             assets/tokenizer/vocab.json assets/tokenizer/merges.txt; do
        [ "$f" -nt "$golden/.complete" ] && return 1
    done
    return 0
}

# Written beside, then moved into place, so an interrupted run never leaves
# a half-written golden directory that looks complete.
make_golden() {
    if golden_fresh; then
        echo "golden up to date in $golden"
        return 0
    fi
    local tmp="$golden.tmp.$$"
    rm -rf "$tmp"
    "$python" "$refdir/make_golden.py" "$tmp" || { rm -rf "$tmp"; return 1; }
    touch "$tmp/.complete"
    rm -rf "$golden" && mv "$tmp" "$golden"
}

# The training golden, kept fresh and written in the same way.
train_golden_fresh() {
    [ -f "$golden_train/.complete" ] || return 1
    local f
    for f in "$refdir/gpt2_ref.py" "$refdir/make_train_golden.py"; do
        [ "$f" -nt "$golden_train/.complete" ] && return 1
    done
    return 0
}

make_train_golden() {
    if train_golden_fresh; then
        echo "training golden up to date in $golden_train"
        return 0
    fi
    local tmp="$golden_train.tmp.$$"
    rm -rf "$tmp"
    "$python" "$refdir/make_train_golden.py" "$tmp" || { rm -rf "$tmp"; return 1; }
    touch "$tmp/.complete"
    rm -rf "$golden_train" && mv "$tmp" "$golden_train"
}

# perturbed_train_check MODEL TENSOR PATTERN: ref_train_check on a copy of
# MODEL's golden with one element of TENSOR moved must exit 1 and report
# PATTERN (so the check can fail, and for the right reason).
perturbed_train_check() {
    local model=$1 tensor=$2 pattern=$3 rc
    local out="$build/golden_train_perturbed"
    rm -rf "$out"
    "$python" "$refdir/make_train_golden.py" --perturb "$golden_train" \
        "$out" "$model" "$tensor" || return 1
    "$ref_train_check" "$out" > "$out/stdout" 2> "$out/stderr"
    rc=$?
    if [ $rc = 1 ] && grep -q -- "^FAIL $model: .*$pattern" "$out/stderr"; then
        echo "ref_train_check failed as it must: $(grep -m1 -- "$pattern" "$out/stderr")"
        rm -rf "$out"
        return 0
    fi
    echo "ref_train_check exited $rc on a perturbed $tensor of $model," \
         "without reporting '$pattern':" >&2
    cat "$out/stderr" >&2
    return 1
}

perturbed_train_checks() {
    perturbed_train_check odd3 grad.h.1.mlp.c_fc.bias \
        "gradients grad.h.1.mlp.c_fc.bias" &&
    perturbed_train_check mid4 final.h.2.ln_2.weight \
        "final params final.h.2.ln_2.weight" &&
    perturbed_train_check odd3 train_loss "step [0-9]* loss"
}

reverse_check() {
    local out="$build/ref_c_model"
    rm -rf "$out"
    "$ref_check" --save "$out" && "$python" "$refdir/check_c_model.py" "$out"
}

if [ ! -f include/gpt2.h ] || [ ! -d "$refdir" ]; then
    echo "t_reference.sh: run from the repository root" >&2
    exit 2
fi
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
    echo "t_reference.sh: $python cannot import torch and numpy" \
         "(Debian: apt-get install python3-torch; or set PYTHON)" >&2
    echo "FAIL t_reference (no PyTorch)"
    exit 1
fi
mkdir -p "$build"

step "reference self-test" "$python" "$refdir/self_test.py"
step "golden files" make_golden
if [ ! -x "$ref_check" ]; then
    echo "t_reference.sh: $ref_check is missing (make tests BUILD=$build)" >&2
    results+=("FAIL ref_check (not built)")
    failed=$((failed + 1))
else
    step "gpt2c vs golden (batch, KV-cache session)" "$ref_check" "$golden"
    step "gpt2c saved models vs reference (F32, BF16, F16)" reverse_check
fi

step "training golden files" make_train_golden
if [ ! -x "$ref_train_check" ]; then
    echo "t_reference.sh: $ref_train_check is missing (make tests BUILD=$build)" >&2
    results+=("FAIL ref_train_check (not built)")
    failed=$((failed + 1))
else
    step "gpt2c trainer vs golden (gradients, accumulation, AdamW, schedule)" \
        "$ref_train_check" "$golden_train"
    step "ref_train_check fails on perturbed golden values" \
        perturbed_train_checks
fi

echo "== summary ($build)"
printf '%s\n' "${results[@]}"
if [ $failed = 0 ]; then
    echo "t_reference: PASS"
else
    echo "t_reference: FAIL ($failed failed)"
fi
[ $failed = 0 ]
