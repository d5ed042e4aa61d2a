#!/usr/bin/env bash
# t_train.sh: `gpt2 prepare` and `gpt2 train` end to end on a tiny model:
# shards, checkpoints, loss.csv/svg, eval on shards and text, a resumed run
# equal to an uninterrupted one (after SIGINT), SIGKILL at random moments
# (also while saving) never leaving a broken last checkpoint, fine-tuning,
# dropout, and a clear error before training for every kind of bad shard.
#
#   bash tests/t_train.sh        (BUILD=build-asan for another build dir)
. "$(dirname "$0")/lib.sh"
need_gpt2

# a small corpus: two "books" of KJV-like text and a validation book
mkdir -p "$tmp/text/train" "$tmp/text/val"
for i in $(seq 1 60); do
    echo "And it came to pass in the ${i}th year, that the king said unto his servants, Go ye and see."
    echo "And they went, and did as the king had commanded them; and they returned unto him with joy."
done > "$tmp/text/train/01-a.txt"
for i in $(seq 1 60); do
    echo "Blessed is the man that walketh not in the counsel of the ungodly, number $i."
done > "$tmp/text/train/02-b.txt"
for i in $(seq 1 12); do
    echo "And the king said unto them, Go ye, and do as I have commanded; and it was so, the ${i}th time."
done > "$tmp/text/val/03-c.txt"

if "$G" prepare "$tmp/text/train" --val "$tmp/text/val" -o "$tmp/shards" -q > "$tmp/out" 2> "$tmp/err" &&
   [ -f "$tmp/shards/train_000000.bin" ] && [ -f "$tmp/shards/val_000000.bin" ]; then
    pass "prepare writes train and val shards"
else
    fail "prepare writes train and val shards" "$(cat "$tmp/err")"
fi

MODEL=(--n-layer 2 --n-head 2 --n-embd 32 --n-ctx 32)
COMMON=(--data "$tmp/shards" --batch-size 2 --seq-len 32 --lr 3e-3 --warmup 2 --eval-every 4 --threads 1)

# --- an uninterrupted run ----------------------------------------------------
if "$G" train "${COMMON[@]}" "${MODEL[@]}" --steps 12 --save-every 4 --sample-every 6 \
        --sample-tokens 8 -o "$tmp/a" > "$tmp/out" 2> "$tmp/err"; then
    pass "train runs 12 steps"
else
    fail "train runs 12 steps" "$(tail -5 "$tmp/err")"
fi
for d in step_000004 step_000008 step_000012 final; do
    if [ -f "$tmp/a/$d/model.safetensors" ] && [ -f "$tmp/a/$d/optimizer.safetensors" ] &&
       [ -f "$tmp/a/$d/trainer_state.json" ] && [ -f "$tmp/a/$d/vocab.json" ]; then
        pass "checkpoint $d is complete"
    else
        fail "checkpoint $d is complete" "$(ls "$tmp/a/$d" 2>&1)"
    fi
done
rows=$(tail -n +2 "$tmp/a/loss.csv" | wc -l)
[ "$rows" = 12 ] && pass "loss.csv has a row per step" || fail "loss.csv has a row per step" "$rows rows"
vals=$(tail -n +2 "$tmp/a/loss.csv" | awk -F, '$3 != ""' | wc -l)
[ "$vals" = 3 ] && pass "validation loss every 4 steps" || fail "validation loss every 4 steps" "$vals"
grep -q '<polyline' "$tmp/a/loss.svg" && pass "loss.svg plots the curve" || fail "loss.svg plots the curve"
first=$(awk -F, 'NR==2{print $2}' "$tmp/a/loss.csv"); last=$(awk -F, 'END{print $2}' "$tmp/a/loss.csv")
awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a - 1)}' &&
    pass "training loss falls ($first -> $last)" || fail "training loss falls ($first -> $last)"
grep -q 'val loss' "$tmp/err" && grep -q 'sample at step 6' "$tmp/err" &&
    grep -q 'tok/s' "$tmp/err" && grep -q 'ETA' "$tmp/err" &&
    pass "progress, validation and samples are printed" ||
    fail "progress, validation and samples are printed" "$(tail -5 "$tmp/err")"
if "$G" generate -m "$tmp/a/final" -p "And the king" -n 5 --seed 1 > "$tmp/out" 2> "$tmp/err"; then
    pass "a checkpoint loads in generate"
else
    fail "a checkpoint loads in generate" "$(cat "$tmp/err")"
fi

# --- eval on shards and on a text file -----------------------------------
if "$G" eval -m "$tmp/a/final" --data "$tmp/shards" --json > "$tmp/out" 2> "$tmp/err" &&
   grep -q '"loss"' "$tmp/out"; then
    pass "eval on val shards"
else
    fail "eval on val shards" "$(cat "$tmp/err" "$tmp/out")"
fi
if "$G" eval -m "$tmp/a/final" "$tmp/text/val/03-c.txt" --json > "$tmp/out" 2> "$tmp/err" &&
   grep -q '"perplexity"' "$tmp/out"; then
    pass "eval on a text file"
else
    fail "eval on a text file" "$(cat "$tmp/err")"
fi

# --- SIGINT, then resume: the same losses as the uninterrupted run --------
"$G" train "${COMMON[@]}" "${MODEL[@]}" --steps 12 --save-every 4 -o "$tmp/b" \
    > /dev/null 2> "$tmp/err_b" &
pid=$!
for _ in $(seq 1 600); do [ -d "$tmp/b/step_000004" ] && break; sleep 0.05; done
kill -INT $pid 2> /dev/null
wait $pid
rc=$?
if [ $rc = 130 ] || [ $rc = 0 ]; then
    pass "SIGINT saves and exits (exit $rc)"
else
    fail "SIGINT saves and exits (exit $rc)" "$(tail -5 "$tmp/err_b")"
fi
grep -q 'interrupted' "$tmp/err_b" && pass "SIGINT says it saved" || echo "# (run finished before SIGINT)"
if "$G" train --resume "$tmp/b" --threads 1 > /dev/null 2> "$tmp/err"; then
    pass "resume runs to the end"
else
    fail "resume runs to the end" "$(tail -5 "$tmp/err")"
fi
if cmp -s <(cut -d, -f1-3 "$tmp/a/loss.csv") <(cut -d, -f1-3 "$tmp/b/loss.csv"); then
    pass "resumed run's losses equal the uninterrupted run's"
else
    fail "resumed run's losses equal the uninterrupted run's" "$(diff "$tmp/a/loss.csv" "$tmp/b/loss.csv")"
fi

# --- SIGKILL at random moments, saving every step ------------------------
ok=1
for delay in 0.3 0.7 0.45 1.1 0.9 0.2; do
    if [ -d "$tmp/k" ]; then args=(--resume "$tmp/k"); else
        args=("${COMMON[@]}" "${MODEL[@]}" --steps 100000 --save-every 1 --eval-every 0 -o "$tmp/k"); fi
    "$G" train "${args[@]}" --threads 1 > /dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -KILL $pid 2> /dev/null
    wait $pid 2> /dev/null
    [ -d "$tmp/k" ] || continue
    latest=$(ls -d "$tmp/k"/step_* 2> /dev/null | grep -v '\.tmp$\|\.old$' | sort | tail -1)
    [ -n "$latest" ] || continue
    if ! "$G" info -m "$latest" > /dev/null 2> "$tmp/err"; then
        ok=0; fail "after SIGKILL the newest checkpoint loads" "$latest: $(cat "$tmp/err")"; break
    fi
done
[ $ok = 1 ] && pass "after each SIGKILL the newest checkpoint loads and the run resumes"

# --- fine-tuning and dropout ------------------------------------------------
if "$G" train "${COMMON[@]}" --init "$tmp/a/final" --steps 4 --dropout 0.1 -o "$tmp/ft" \
        > /dev/null 2> "$tmp/err" && [ -f "$tmp/ft/final/model.safetensors" ]; then
    pass "fine-tune from a checkpoint with dropout"
else
    fail "fine-tune from a checkpoint with dropout" "$(tail -5 "$tmp/err")"
fi

# --- bad shards: a clear error before any step -----------------------------
bad() { # bad NAME: train on $tmp/bad must fail with exit 1 and a message
    if "$G" train "${COMMON[@]}" "${MODEL[@]}" --data "$tmp/bad" --steps 2 -o "$tmp/badrun" \
            > /dev/null 2> "$tmp/err"; then
        fail "$1: rejected"
    elif [ $? = 1 ] && grep -q 'gpt2 train:' "$tmp/err" && ! grep -q 'step 1/' "$tmp/err"; then
        pass "$1: rejected before training ($(head -c 100 "$tmp/err" | tr '\n' ' '))"
    else
        fail "$1: rejected before training" "$(cat "$tmp/err")"
    fi
}
reset_bad() { rm -rf "$tmp/bad" "$tmp/badrun"; mkdir -p "$tmp/bad"; cp "$tmp/shards/"*.bin "$tmp/bad/"; }
reset_bad; printf '\x01\x02\x03\x04' | dd of="$tmp/bad/train_000000.bin" bs=1 seek=0 conv=notrunc 2> /dev/null
bad "wrong magic"
reset_bad; truncate -s -10 "$tmp/bad/train_000000.bin"; bad "truncated shard"
reset_bad; printf '\xff\xff' | dd of="$tmp/bad/train_000000.bin" bs=1 seek=1100 conv=notrunc 2> /dev/null
bad "token id >= vocab"
reset_bad; printf '\x02' | dd of="$tmp/bad/val_000000.bin" bs=1 seek=4 conv=notrunc 2> /dev/null
bad "val shard of an unknown version"
rm -rf "$tmp/bad"; mkdir -p "$tmp/bad"; bad "no shards"

finish
