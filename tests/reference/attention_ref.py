"""attention_ref.py: the PyTorch reference for `gpt2 attention` and `gpt2 score`.

    attention_ref.py make-model DIR
        A reference model (gpt2_ref's random weights, large enough that the
        attention is peaked rather than nearly uniform) with GPT-2's
        tokenizer files, in the Hugging Face layout gpt2c loads.
    attention_ref.py check-attention DIR FILE.json
        The weights (and "scores", when present) that `gpt2 attention`
        wrote for FILE's tokens against the reference's, computed in
        float64: within 1e-4 (relative to max(1, |value|)); masked scores
        must be null; "pieces" must be each token's bytes as text (an
        invalid UTF-8 byte as U+FFFD).
    attention_ref.py check-score DIR FILE.json STRIDE
        `gpt2 score --json` against the reference: every logprob is
        log softmax of the reference's logits, predicted from the window
        `gpt2 eval` gives the token (windows of n_ctx tokens advancing by
        STRIDE, the last moved back to end at the text's end), within 1e-4.

The capture reuses gpt2_ref's layer_norm, conv1d and block unchanged; the
attention weights are recomputed from ln_1's output with the reference's
own formula, and the script first checks that they reproduce the
reference's attention output (att @ v -> c_proj), so what it compares is
the reference model's attention, not a second implementation of it.
Exits 1 on a mismatch, printing the worst difference per layer and head.
Runs under Debian's /usr/bin/python3 (torch).
"""

import json
import math
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOL = 1e-4


# ------------------------------------------------------------------ model

def make_model(path):
    # Odd sizes (3 heads of 16), a context shorter than the test's longer
    # texts (so score's windows slide), weights large enough that softmax
    # rows are far from uniform.
    cfg = ref.Config(n_layer=3, n_head=3, n_embd=48, n_ctx=40,
                     vocab_size=50257)
    ref.save_model_dir(path, cfg, ref.random_params(cfg, 17, std=0.2,
                                                    emb_std=1.0))
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(REPO, "assets", "tokenizer", f), path)
    return 0


# ---------------------------------------------------------------- capture

def capture(model, tokens):
    """Per layer: softmax weights (nh, T, T) and raw scores (nh, T, T),
    from a forward pass through the reference's blocks."""
    p, cfg = model.p, model.cfg
    T, C, nh = len(tokens), cfg.n_embd, cfg.n_head
    hs = C // nh
    idx = torch.as_tensor([tokens], dtype=torch.long)
    x = p["wte.weight"][idx] + p["wpe.weight"][torch.arange(T)]
    weights, scores = [], []
    for i in range(cfg.n_layer):
        h = "h.%d." % i
        a = ref.layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"],
                           cfg.layer_norm_epsilon)
        qkv = ref.conv1d(a, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"])
        q, k, v = (t.view(1, T, nh, hs).transpose(1, 2) for t in qkv.split(C, 2))
        s = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        att = torch.softmax(s.masked_fill(future, float("-inf")), dim=-1)
        # these weights are the reference's: they give its attention output
        y = ref.conv1d((att @ v).transpose(1, 2).reshape(1, T, C),
                       p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"])
        want = ref.attention(a, p[h + "attn.c_attn.weight"],
                             p[h + "attn.c_attn.bias"],
                             p[h + "attn.c_proj.weight"],
                             p[h + "attn.c_proj.bias"], nh)
        if (y - want).abs().max().item() > 1e-10:
            raise AssertionError("capture disagrees with gpt2_ref.attention")
        weights.append(att[0])
        scores.append(s[0])
        x = ref.block(x, p, i, cfg)
    return weights, scores


# ----------------------------------------------------------------- pieces

def byte_decoder():
    """GPT-2's bytes_to_unicode, inverted: vocabulary character -> byte."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def expected_pieces(model_dir, tokens):
    """Each token's bytes as text, an invalid UTF-8 byte as U+FFFD."""
    with open(os.path.join(model_dir, "vocab.json"), encoding="utf-8") as f:
        vocab = {i: s for s, i in json.load(f).items()}
    dec = byte_decoder()
    out = []
    for t in tokens:
        raw = bytes(dec[ch] for ch in vocab[t])
        text = raw.decode("utf-8", errors="surrogateescape")
        out.append("".join("\ufffd" if "\udc80" <= ch <= "\udcff" else ch
                           for ch in text))
    return out


# ----------------------------------------------------------------- checks

def compare(name, got, want, masked_null):
    """got: nested lists [q][k]; want: (T, T) tensor. Returns (worst,
    problems)."""
    T = want.shape[0]
    worst, problems = 0.0, []
    if len(got) != T or any(len(r) != T for r in got):
        return math.inf, ["%s: not %d x %d" % (name, T, T)]
    for i in range(T):
        for j in range(T):
            g, w = got[i][j], want[i, j].item()
            if masked_null and j > i:
                if g is not None:
                    problems.append("%s[%d][%d]: %r where null (masked)" % (name, i, j, g))
                continue
            if not isinstance(g, (int, float)):
                problems.append("%s[%d][%d]: %r is not a number" % (name, i, j, g))
                continue
            worst = max(worst, abs(g - w) / max(1.0, abs(w)))
    return worst, problems[:5]


def check_attention(model_dir, path):
    model, _, _, _ = ref.load_model_dir(model_dir)
    with open(path, encoding="utf-8", errors="strict") as f:
        got = json.load(f)
    tokens = got["tokens"]
    weights, scores = capture(model, tokens)
    L, nh = model.cfg.n_layer, model.cfg.n_head
    failed = 0
    if len(got["attention"]) != L or any(len(l) != nh for l in got["attention"]):
        print("FAIL attention: not %d layers x %d heads" % (L, nh))
        return 1
    kinds = [("attention", weights, False)]
    if "scores" in got:
        kinds.append(("scores", scores, True))
    peak = 0.0
    for key, maps, masked_null in kinds:
        for l in range(L):
            for h in range(nh):
                name = "%s[%d][%d]" % (key, l, h)
                worst, problems = compare(name, got[key][l][h], maps[l][h], masked_null)
                ok = worst <= TOL and not problems
                failed += not ok
                print("%s %-16s max difference %.3g" % ("ok  " if ok else "FAIL", name, worst))
                for pr in problems:
                    print("     " + pr)
                if key == "attention" and len(tokens) > 3:
                    peak = max(peak, maps[l][h][3:].max().item())
    # the test only bites if attention is peaked: uniform rows from the
    # fourth on are at most 1/4
    if len(tokens) > 3:
        print("largest weight from the fourth row on: %.3f" % peak)
        if peak < 0.5:
            print("FAIL the reference model's attention is too uniform to test")
            failed += 1
    if "pieces" in got:
        want = expected_pieces(model_dir, tokens)
        if got["pieces"] != want:
            bad = [i for i, (a, b) in enumerate(zip(got["pieces"], want)) if a != b]
            print("FAIL pieces differ at %s: %r vs %r" % (bad[:5], got["pieces"][:8], want[:8]))
            failed += 1
        else:
            print("ok   pieces: %d, as the tokens' bytes" % len(want))
    print("%d tokens, %d layers x %d heads%s: %s" % (
        len(tokens), L, nh, " with scores" if "scores" in got else "",
        "FAIL" if failed else "PASS"))
    return 1 if failed else 0


def window_begins(N, T, stride):
    """`gpt2 eval`'s windows over N tokens: T inputs each, starting at 0,
    stride, ..., the last moved back to end at the text's end."""
    begins, b = [], 0
    while True:
        b = min(b, N - 1 - T)
        begins.append(b)
        if b + T >= N - 1:
            return begins
        b += stride


def check_score(model_dir, path, stride):
    model, _, _, _ = ref.load_model_dir(model_dir)
    with open(path, encoding="utf-8", errors="strict") as f:
        got = json.load(f)
    ids, lps = got["tokens"], got["logprobs"]
    N = len(ids)
    T = min(model.cfg.n_ctx, N - 1)
    failed = 0
    if lps[0] is not None or len(lps) != N:
        print("FAIL logprobs: %d entries, first %r (want %d, null)" % (len(lps), lps[0], N))
        return 1
    begins = window_begins(N, T, stride)
    logp, worst = {}, 0.0
    for t in range(1, N):
        b = next(b for b in begins if b + T >= t)
        if b not in logp:
            logp[b] = torch.log_softmax(model.forward([ids[b:b + T]])[0][0], -1)
        want = logp[b][t - 1 - b, ids[t]].item()
        d = abs(lps[t] - want) / max(1.0, abs(want))
        if d > TOL and failed < 5:
            print("FAIL token %d (id %d): logprob %.6f, reference %.6f" % (t, ids[t], lps[t], want))
        failed += d > TOL
        worst = max(worst, d)
    total = sum(lps[1:])
    if abs(got["total_logprob"] - total) > 1e-6 * max(1.0, abs(total)):
        print("FAIL total_logprob %.6f is not the sum %.6f" % (got["total_logprob"], total))
        failed += 1
    print("%d tokens in %d windows (n_ctx %d, stride %d): max difference %.3g: %s"
          % (N, len(begins), T, stride, worst, "FAIL" if failed else "PASS"))
    return 1 if failed else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "make-model":
        return make_model(argv[2])
    if len(argv) == 4 and argv[1] == "check-attention":
        return check_attention(argv[2], argv[3])
    if len(argv) == 5 and argv[1] == "check-score":
        return check_score(argv[2], argv[3], int(argv[4]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
