#!/usr/bin/env bash
# t_train_bf16.sh: mixed-precision training (`gpt2 train --dtype bf16`:
# matmul inputs rounded to bfloat16, float32 sums, float32 weights and
# AdamW) follows the float32 run: over 200 steps on the same data from
# the same init, every step's training loss is within 1% of fp32's, and
# the final model generates. On a CPU without a bf16 unit the same
# arithmetic is emulated, so the test holds there too (only slower).
#
#   bash tests/t_train_bf16.sh        (BUILD=build-asan for another build dir)
. "$(dirname "$0")/lib.sh"
need_gpt2

# Real text, so the loss falls far: the KJV when installed, else the
# project's own documentation.
mkdir -p "$tmp/text"
if command -v bible > /dev/null && bible -f gen1:1-exo40:38 > "$tmp/text/a.txt" 2> /dev/null &&
   [ -s "$tmp/text/a.txt" ]; then :; else cat README.md docs/*.md > "$tmp/text/a.txt"; fi
if ! "$G" prepare "$tmp/text" -o "$tmp/shards" -q > /dev/null 2> "$tmp/err"; then
    fail "prepare the shards" "$(cat "$tmp/err")"
    finish
fi

# the same run twice, only the matmul precision differs
common=(--data "$tmp/shards" --n-layer 2 --n-head 2 --n-embd 64 --n-ctx 32
        --batch-size 8 --steps 200 --lr 2e-3 --warmup 10 --eval-every 0 --seed 7)
for d in fp32 bf16; do
    if "$G" train "${common[@]}" --dtype "$d" -o "$tmp/$d" > "$tmp/$d.out" 2>&1; then
        pass "train 200 steps with --dtype $d"
    else
        fail "train 200 steps with --dtype $d" "$(tail -n 5 "$tmp/$d.out")"
        finish
    fi
done
grep -q "bf16 (" "$tmp/bf16.out" && pass "the bf16 run says it uses bf16 matmuls" ||
    fail "the bf16 run says it uses bf16 matmuls" "$(head -n 3 "$tmp/bf16.out")"
grep -q "fp32 matmuls" "$tmp/fp32.out" && pass "the fp32 run says fp32" ||
    fail "the fp32 run says fp32" "$(head -n 3 "$tmp/fp32.out")"

# loss.csv: step,train_loss,val_loss,lr. The curve is compared as plotted:
# each step's loss averaged over the 10 steps ending there (one step's
# loss on 256 tokens is noisy, and two runs that round differently drift
# apart step by step as any two seeds do). Single steps get a looser bound.
cmp_out=$(paste -d, "$tmp/fp32/loss.csv" "$tmp/bf16/loss.csv" | awk -F, '
    NR > 1 { n++; a[n] = $2; b[n] = $6; if ($1 != $5) bad = 1; if ($6 != $2) differ = 1
             d = ($6 - $2) / $2; if (d < 0) d = -d; if (d > m1) m1 = d }
    END { for (i = 10; i <= n; i++) {
              sa = 0; sb = 0; for (j = i - 9; j <= i; j++) { sa += a[j]; sb += b[j] }
              d = (sb - sa) / sa; if (d < 0) d = -d; if (d > m) { m = d; at = i } }
          printf "%d %d %d %.5f %d %.5f %.4f %.4f\n", n, bad, differ, m, at, m1, a[1], a[n] }')
read -r n bad differ worst at worst1 first last <<< "$cmp_out"
echo "    # fp32 loss $first -> $last; bf16's 10-step mean differs by at most $worst (relative, at step $at); single steps by at most $worst1"
[ "$n" = 200 ] && [ "$bad" = 0 ] && pass "both loss curves have 200 steps" ||
    fail "both loss curves have 200 steps" "$cmp_out"
awk -v w="$worst" 'BEGIN { exit !(w < 0.01) }' &&
    pass "bf16's loss curve stays within 1% of fp32's (worst $worst)" ||
    fail "bf16's loss curve stays within 1% of fp32's" "worst $worst at step $at"
awk -v w="$worst1" 'BEGIN { exit !(w < 0.05) }' &&
    pass "every single step within 5% (worst $worst1)" ||
    fail "every single step within 5%" "worst $worst1"
# a test that cannot fail is a defect: the curves must differ (bf16 really
# rounds) and must have learnt (the loss falls by more than a third)
[ "$differ" = 1 ] && pass "bf16 rounding changes the losses" ||
    fail "bf16 rounding changes the losses" "the two loss.csv are identical"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.67) }' &&
    pass "the loss falls ($first -> $last)" || fail "the loss falls" "$first -> $last"
if "$G" generate -m "$tmp/bf16/final" -p "And" -n 8 --seed 1 > "$tmp/gen" 2>&1; then
    pass "the bf16-trained model generates"
else
    fail "the bf16-trained model generates" "$(cat "$tmp/gen")"
fi
finish
