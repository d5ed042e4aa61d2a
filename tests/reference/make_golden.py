"""make_golden.py OUTDIR: random GPT-2 models and their golden outputs.

For each model, OUTDIR/<name>/ holds a Hugging Face directory (config.json,
model.safetensors) and golden.safetensors, which tests/tools/ref_check.c
compares gpt2c against:

  tokens   I32 (B, T)     B = 3, T = n_ctx
  targets  I32 (B, T)     the next tokens; -1 (ignored) entries in some models
  logits   F32 (B, T, V)  computed in float64 from the weights as stored
  loss     F32 (1,)       mean cross-entropy over targets != -1
  tokens2, targets2, logits2, loss2: a second batch, B = 2, T < n_ctx,
           always with some -1 targets

Everything is seeded: the same script writes the same bytes. Run with
Debian's /usr/bin/python3 (it has torch).
"""

import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKENIZER_DIR = os.path.join(REPO, "assets", "tokenizer")

# name -> (config, seed, weight std, embedding std). "odd" has a head
# count other than 12, sizes that are neither powers of two nor multiples
# of 4, a layer-norm epsilon far from the default (a loader that ignores
# the config's epsilon fails), and large weights: peaked attention, curved
# GELU and logits of several units, so a wrong softmax scale or GELU form
# shows far above the tolerance (self_test.py measures this). "tiny" and
# "tok" keep GPT-2's N(0, 0.02).
CONFIGS = {
    "tiny": (ref.Config(n_layer=2, n_head=4, n_embd=64, n_ctx=32,
                        vocab_size=128), 1, 0.02, None),
    "odd": (ref.Config(n_layer=3, n_head=3, n_embd=36, n_ctx=19,
                       vocab_size=97, layer_norm_epsilon=1e-3), 2, 0.4, 0.5),
    "tok": (ref.Config(n_layer=2, n_head=2, n_embd=32, n_ctx=64,
                       vocab_size=50257), 3, 0.02, None),
}


def make_batch(cfg, B, T, seed, ignore_some):
    """Random token windows; targets are each window shifted by one, as in
    language-model training. ignore_some marks a few targets -1, including
    a run at the end of one row (padding) but never a whole batch."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    tokens, targets = seq[:, :T].clone(), seq[:, 1:].clone()
    if ignore_some:
        targets[0, T // 2:] = -1
        targets[B - 1, 0] = -1
        if T > 3:
            targets[B - 1, 3] = -1
    return tokens, targets


def golden_batch(model, tokens, targets, suffix):
    logits, loss = model.forward(tokens, targets)
    return {
        "tokens" + suffix: tokens.to(torch.int32),
        "targets" + suffix: targets.to(torch.int32),
        "logits" + suffix: logits.to(torch.float32),
        "loss" + suffix: loss.reshape(1).to(torch.float32),
    }


def write_model(outdir, name, cfg, params, seed, dtype="F32", prefix="",
                buffers=False, ignore_in_main=False):
    """Saves the model in dtype and its golden outputs, computed in float64
    on exactly the values the file holds."""
    path = os.path.join(outdir, name)
    ref.save_model_dir(path, cfg, params, dtype, prefix, buffers)
    model = ref.GPT2(cfg, ref.round_to(params, dtype), torch.float64)
    T2 = max(1, cfg.n_ctx // 2 - 1)
    gold = {}
    gold.update(golden_batch(model, *make_batch(cfg, 3, cfg.n_ctx, seed + 100,
                                                ignore_in_main), ""))
    gold.update(golden_batch(model, *make_batch(cfg, 2, T2, seed + 200, True),
                             "2"))
    ref.st_save(os.path.join(path, "golden.safetensors"), gold)
    print("%-14s %s  L=%d H=%d C=%d n_ctx=%d V=%d  B=3 T=%d loss=%.6f  "
          "B=2 T=%d loss=%.6f" % (name, dtype, cfg.n_layer, cfg.n_head,
                                   cfg.n_embd, cfg.n_ctx, cfg.vocab_size,
                                   cfg.n_ctx, gold["loss"].item(), T2,
                                   gold["loss2"].item()))
    return path


def copy_tokenizer(path):
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(path, f))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: make_golden.py OUTDIR\n")
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    for name, (cfg, seed, std, emb_std) in CONFIGS.items():
        params = ref.random_params(cfg, seed, std, emb_std)
        path = write_model(outdir, name, cfg, params, seed)
        if name == "tok":
            copy_tokenizer(path)
        if name == "tiny":
            # The loader's variants: a GPT2LMHeadModel-style file with
            # "transformer." names and mask buffers, and 16-bit weights.
            write_model(outdir, "tiny_prefixed", cfg, params, seed,
                        prefix="transformer.", buffers=True,
                        ignore_in_main=True)
            write_model(outdir, "tiny_f16", cfg, params, seed, dtype="F16")
            write_model(outdir, "tiny_bf16", cfg, params, seed, dtype="BF16")
    with open(os.path.join(outdir, "README"), "w") as f:
        f.write("Written by tests/reference/make_golden.py; see its header.\n")
    print("golden written to %s" % outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
