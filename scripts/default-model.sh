#!/usr/bin/env bash
# default-model.sh: trains gpt2c's default model from scratch, with gpt2c's
# own trainer, and puts it in models/kjv/. The recipe:
#   - text: the King James Bible (public domain, Debian's bible-kjv), one
#     document per book, verse references stripped; Genesis to Jude for
#     training (1.01M tokens), Revelation held out for validation (15K);
#   - tokenizer: GPT-2's own (50257 ids);
#   - model: 6 layers, 8 heads, width 256, context 256 (17.7M parameters,
#     13M of them the tied token embeddings);
#   - training: 1500 AdamW steps of 8 x 256 tokens (about three epochs),
#     peak learning rate 1.5e-3 after 100 warm-up steps, cosine to 1.5e-4,
#     weight decay 0.1, gradient clipping 1.0, no dropout, seed 1337; windows of
#     the text visited in a shuffled order each epoch.
# It takes 30 to 60 minutes on 2 cores. The shipped weights are bfloat16
# (halving the file; gpt2c converts them to float32 when loading).
#
#   bash scripts/default-model.sh [--package RUN_DIR]
# --package skips training and packages an existing run made by this recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
G=build/gpt2
work=build/kjv
dest=models/kjv
[ -x "$G" ] || make -j2

run=$work/run
if [ "${1:-}" = "--package" ]; then
    run=${2:?usage: default-model.sh --package RUN_DIR}
else
    bash scripts/kjv-text.sh "$work"
    "$G" prepare "$work/train" --val "$work/val" -o "$work/shards"
    rm -rf "$run"
    "$G" train --data "$work/shards" -o "$run" \
        --n-layer 6 --n-head 8 --n-embd 256 --n-ctx 256 \
        --batch-size 8 --seq-len 256 --steps 1500 --warmup 100 --lr 1.5e-3 \
        --eval-every 100 --save-every 500 --sample-every 500 --seed 1337 --shuffle
fi
[ -d "$work/val" ] || bash scripts/kjv-text.sh "$work"

# the model directory: weights in bfloat16, config, tokenizer, the record
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
"$G" convert "$run/final" "$dest.tmp" --dtype bf16
cp "$run/loss.csv" "$run/loss.svg" "$dest.tmp/"
val_text=$("$G" eval -m "$dest.tmp" "$work/val/66-Rev.txt" --json)
val_shard=$("$G" eval -m "$dest.tmp" --data "$work/shards" --json)
loss=$(printf '%s' "$val_text" | sed -n 's/.*"loss":[[:space:]]*\([0-9.]*\).*/\1/p' | head -1)
ppl=$(printf '%s' "$val_text" | sed -n 's/.*"perplexity":[[:space:]]*\([0-9.]*\).*/\1/p' | head -1)
sloss=$(printf '%s' "$val_shard" | sed -n 's/.*"loss":[[:space:]]*\([0-9.]*\).*/\1/p' | head -1)
loss=$(printf '%.4f' "$loss"); ppl=$(printf '%.2f' "$ppl"); sloss=$(printf '%.4f' "$sloss")
sample=$("$G" generate -m "$dest.tmp" -p "In the beginning" -n 60 --seed 1 --top-k 40)
cat > "$dest.tmp/README.md" <<EOT
# kjv: gpt2c's default model

A small GPT-2 (6 layers, 8 heads, width 256, context 256; 17.7M parameters)
with GPT-2's own tokenizer, trained from scratch by gpt2c's \`gpt2 train\` on
the King James Bible. \`make default-model\` reproduces it
(\`scripts/default-model.sh\` holds the recipe).

Validation: the book of Revelation, held out from training.

| measure | value |
|---|---|
| validation loss, Revelation as text (\`gpt2 eval\`, sliding window) | $loss nats/token |
| validation perplexity | $ppl |
| validation loss on the val shard (as \`gpt2 train\` reports it) | $sloss nats/token |
| a unigram model on the same text | 6.07 nats/token |

\`loss.csv\` and \`loss.svg\` are the training run's record (train loss every
step, validation loss every 100 steps). The weights are stored in bfloat16.

A sample (\`gpt2 generate -p "In the beginning" -n 60 --seed 1\`):

> In the beginning$(printf '%s' "$sample" | tr '\n' ' ')

## Licence

The King James Version is in the public domain (outside the United
Kingdom, where it is under Crown patent); the text comes from Debian's
\`bible-kjv\` package. The weights are released with gpt2c under the MIT
licence. GPT-2's tokenizer files: see the README of gpt2c.
EOT
rm -rf "$dest"
mv "$dest.tmp" "$dest"
du -sh "$dest"
echo "default-model.sh: $dest: validation loss $loss (perplexity $ppl)"
