#!/usr/bin/env bash
# t_quantize.sh: `gpt2 quantize` and `--weights`, from the command line:
# the quantized directory is smaller, loads (memory-mapped), generates and
# evaluates close to the original; bad requests get clear errors.
#
#   bash tests/t_quantize.sh        (BUILD=build-asan for another build dir)
. "$(dirname "$0")/lib.sh"
# expect_code CODE PATTERN NAME -- CMD...: exit code and a message on stderr
expect_code() {
    local code=$1 pat=$2 name=$3; shift 4
    "$@" > "$tmp/out" 2> "$tmp/err"
    local rc=$?
    if [ "$rc" = "$code" ] && grep -q -- "$pat" "$tmp/err"; then pass "$name"
    else fail "$name" "exit $rc; stderr: $(cat "$tmp/err")"; fi
}
need_gpt2

"$G" init --n-layer 2 --n-head 2 --n-embd 64 --n-ctx 64 -o "$tmp/f32" > /dev/null 2>&1 ||
    { echo "not ok - gpt2 init"; exit 1; }
printf 'In the beginning God created the heaven and the earth. And the earth was without form.\n' > "$tmp/text.txt"
# longer than the context (64): eval reads it in several windows
for i in 1 2 3 4 5; do cat "$tmp/text.txt"; done > "$tmp/long.txt"

for t in q8_0 q4_0; do
    if "$G" quantize -m "$tmp/f32" --type "$t" -o "$tmp/$t" > "$tmp/out" 2>&1; then
        pass "quantize to $t"
    else
        fail "quantize to $t" "$(cat "$tmp/out")"; continue
    fi
    grep -q "smaller" "$tmp/out" && pass "$t: quantize reports the size" || fail "$t: size line" "$(cat "$tmp/out")"
    info=$("$G" info -m "$tmp/$t" 2>&1)
    T=$(echo "$t" | tr a-z A-Z)
    echo "$info" | grep -q "storage     $T, memory-mapped" && pass "$t: info says $T, memory-mapped" ||
        fail "$t: info storage line" "$info"
    a=$(stat -c %s "$tmp/f32/model.safetensors"); b=$(stat -c %s "$tmp/$t/model.safetensors")
    [ "$b" -lt $((a / 3)) ] && pass "$t: file under a third of F32's ($b < $a/3)" ||
        fail "$t: file size" "$b vs $a"
    grep -q "\"gpt2c_dtype\":.*\"$T\"" "$tmp/$t/config.json" && pass "$t: config.json says gpt2c_dtype $T" ||
        fail "$t: config.json" "$(cat "$tmp/$t/config.json")"
    if "$G" generate -m "$tmp/$t" -p "In the" -n 12 --seed 3 > "$tmp/gen" 2>&1; then
        pass "$t: generates"
    else
        fail "$t: generates" "$(cat "$tmp/gen")"
    fi
    # the same model quantized at load decodes the same tokens
    "$G" generate -m "$tmp/f32" --weights "$t" -p "In the" -n 12 --seed 3 > "$tmp/gen2" 2>&1
    cmp -s "$tmp/gen" "$tmp/gen2" && pass "$t: --weights $t at load = the quantized directory" ||
        fail "$t: --weights at load" "$(cat "$tmp/gen") / $(cat "$tmp/gen2")"
    l0=$("$G" eval -m "$tmp/f32" "$tmp/text.txt" 2>/dev/null | awk '{print $2}')
    l1=$("$G" eval -m "$tmp/$t" "$tmp/text.txt" 2>/dev/null | awk '{print $2}')
    awk -v a="$l0" -v b="$l1" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; exit !(a > 0 && d < 0.02) }' &&
        pass "$t: loss within 2% of F32's ($l0 -> $l1)" || fail "$t: loss" "$l0 -> $l1"
    # token by token (decode's int8 products with a quantized x), against
    # F32's loss on the same windows
    l0=$("$G" eval -m "$tmp/f32" --stride 16 "$tmp/long.txt" 2>/dev/null | awk '{print $2}')
    l2=$("$G" eval -m "$tmp/$t" --decode --stride 16 "$tmp/long.txt" 2>/dev/null | awk '{print $2}')
    awk -v a="$l0" -v b="$l2" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; exit !(a > 0 && d < 0.02) }' &&
        pass "$t: eval --decode loss within 2% of F32's ($l0 -> $l2)" || fail "$t: eval --decode loss" "$l0 -> $l2"
done
# F32 token by token scores the same predictions as the batch, to 1e-4
l0=$("$G" eval -m "$tmp/f32" --stride 16 "$tmp/long.txt" 2>/dev/null)
l1=$("$G" eval -m "$tmp/f32" --stride 16 --decode "$tmp/long.txt" 2>/dev/null)
awk -v a="$l0" -v b="$l1" 'BEGIN { split(a, x, " "); split(b, y, " ");
    d = x[2] - y[2]; if (d < 0) d = -d; exit !(x[2] > 0 && d < 1e-4 && x[7] == y[7]) }' &&
    pass "F32: eval --decode = eval ($l0 / $l1)" || fail "F32: eval --decode = eval" "$l0 / $l1"
expect_code 2 "--decode scores a FILE" "eval --decode with --data" -- "$G" eval --decode --data "$tmp"

# --stats says how fast, and in which format
"$G" generate -m "$tmp/q4_0" -p "In the" -n 6 --seed 3 --stats > /dev/null 2> "$tmp/stats"
grep -q "ms/token.*weights Q4_0" "$tmp/stats" && pass "generate --stats reports decode speed and format" ||
    fail "generate --stats reports decode speed and format" "$(cat "$tmp/stats")"

# back to a Hugging Face directory
if "$G" convert "$tmp/q8_0" "$tmp/back" --dtype f32 > /dev/null 2>&1 &&
   "$G" info -m "$tmp/back" 2>&1 | grep -q "storage     F32"; then
    pass "a Q8_0 directory converts back to F32"
else
    fail "a Q8_0 directory converts back to F32"
fi

expect_code 2 "expected f32, f16, bf16, q8_0 or q4_0" "unknown type" -- \
    "$G" quantize -m "$tmp/f32" --type q3 -o "$tmp/x"
expect_code 2 "no type" "missing --type" -- "$G" quantize -m "$tmp/f32" -o "$tmp/x"
expect_code 2 "must differ" "-o equal to -m" -- "$G" quantize -m "$tmp/f32" --type q8_0 -o "$tmp/f32"
expect_code 1 "cannot load" "missing model" -- "$G" quantize -m "$tmp/none" --type q8_0 -o "$tmp/x"
"$G" init --n-layer 1 --n-head 2 --n-embd 40 --n-ctx 16 -o "$tmp/odd" > /dev/null 2>&1
expect_code 1 "multiple of 32" "n_embd not a multiple of 32" -- \
    "$G" quantize -m "$tmp/odd" --type q4_0 -o "$tmp/x"
expect_code 1 "multiple of 32" "--weights q8_0 on n_embd 40" -- \
    "$G" generate -m "$tmp/odd" --weights q8_0 -p hi -n 2
expect_code 2 "expected f32, f16, bf16, q8_0 or q4_0" "--weights bad" -- \
    "$G" generate -m "$tmp/f32" --weights int3 -p hi -n 2

finish
