"""self_test.py: checks the reference itself before the C code is judged by it.

The golden files are only as good as gpt2_ref.py, so this checks it by
means that do not share its code paths:
  - a second forward, token by token with a Python KV cache and torch's
    own layer_norm / gelu(tanh) / cross_entropy, agrees with the batched one
  - logits at position t do not depend on tokens after t (causal mask)
  - the loss equals -mean log_softmax at the targets, skipping -1
  - float32 agrees with float64 within the tolerance the C code must meet
  - the safetensors writer and reader round-trip F32/F16/BF16/I32, keep the
    data 8-aligned and write __metadata__ format "pt"; a prefixed file with
    mask buffers loads to the same parameters
  - the golden models are sensitive: plausible bugs (GELU erf form, softmax
    scale 1/hs, unbiased variance, ignoring epsilon) change the golden
    logits of "odd" by over 3 times the tolerance, and a bias or norm
    weight left at its default those of "tiny" and "odd" by over 5 times
  - make_golden.py is deterministic (same bytes twice)
Prints each check; exits non-zero on any failure.
"""

import contextlib
import filecmp
import io
import math
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402
import make_golden as mg  # noqa: E402

failed = 0


def check(ok, what):
    global failed
    print("%s  %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        failed += 1


def model_of(name, dtype=torch.float64):
    cfg, seed, std, emb_std = mg.CONFIGS[name]
    return ref.GPT2(cfg, ref.random_params(cfg, seed, std, emb_std), dtype)


def tolerance(golden):
    return 1e-4 * max(1.0, golden.abs().max().item())


def forward_incremental(model, tokens):
    """One position at a time, keeping K and V of the past per layer: a
    different algorithm from the batched forward, built on torch's ops."""
    cfg, p = model.cfg, model.p
    B, T = tokens.shape
    C, nh = cfg.n_embd, cfg.n_head
    hs = C // nh
    eps = cfg.layer_norm_epsilon
    cache = [([], []) for _ in range(cfg.n_layer)]
    out = []
    for t in range(T):
        x = p["wte.weight"][tokens[:, t]] + p["wpe.weight"][t]     # (B, C)
        for i in range(cfg.n_layer):
            h = "h.%d." % i
            a = F.layer_norm(x, (C,), p[h + "ln_1.weight"],
                             p[h + "ln_1.bias"], eps)
            qkv = torch.addmm(p[h + "attn.c_attn.bias"], a,
                              p[h + "attn.c_attn.weight"])
            q, k, v = qkv.split(C, dim=1)
            cache[i][0].append(k.view(B, nh, hs))
            cache[i][1].append(v.view(B, nh, hs))
            K = torch.stack(cache[i][0], dim=2)                    # (B,nh,t+1,hs)
            Vv = torch.stack(cache[i][1], dim=2)
            s = torch.einsum("bnd,bnsd->bns", q.view(B, nh, hs), K)
            w = torch.softmax(s / math.sqrt(hs), dim=-1)
            y = torch.einsum("bns,bnsd->bnd", w, Vv).reshape(B, C)
            x = x + torch.addmm(p[h + "attn.c_proj.bias"], y,
                                p[h + "attn.c_proj.weight"])
            m = F.layer_norm(x, (C,), p[h + "ln_2.weight"],
                             p[h + "ln_2.bias"], eps)
            m = F.gelu(torch.addmm(p[h + "mlp.c_fc.bias"], m,
                                   p[h + "mlp.c_fc.weight"]), approximate="tanh")
            x = x + torch.addmm(p[h + "mlp.c_proj.bias"], m,
                                p[h + "mlp.c_proj.weight"])
        x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], eps)
        out.append(F.linear(x, p["wte.weight"]))
    return torch.stack(out, dim=1)


def test_second_forward():
    for name in ("tiny", "odd"):
        model = model_of(name)
        cfg, seed = model.cfg, mg.CONFIGS[name][1]
        tokens, targets = mg.make_batch(cfg, 3, cfg.n_ctx, seed, True)
        logits, loss = model.forward(tokens, targets)
        inc = forward_incremental(model, tokens)
        d = (inc - logits).abs().max().item()
        check(d < 1e-10, "%s: incremental forward = batched (max diff %.2e)"
              % (name, d))
        ce = F.cross_entropy(inc.reshape(-1, cfg.vocab_size),
                             targets.reshape(-1), ignore_index=-1)
        check(abs(ce.item() - loss.item()) < 1e-10,
              "%s: loss = torch cross_entropy(ignore_index=-1)" % name)


def test_causal():
    model = model_of("odd")
    cfg = model.cfg
    tokens, _ = mg.make_batch(cfg, 2, cfg.n_ctx, 7, False)
    base, _ = model.forward(tokens)
    worst = 0.0
    for t in range(cfg.n_ctx - 1):
        changed = tokens.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % cfg.vocab_size
        logits, _ = model.forward(changed)
        worst = max(worst, (logits[:, :t + 1] - base[:, :t + 1]).abs().max().item())
        if t == 0:
            moved = (logits[:, 1:] - base[:, 1:]).abs().max().item()
    check(worst == 0.0, "logits at t ignore tokens after t (max diff %g)" % worst)
    check(moved > 1e-3, "logits after a changed token do change (%.3g)" % moved)


def test_loss_by_hand():
    model = model_of("tiny")
    cfg = model.cfg
    tokens, targets = mg.make_batch(cfg, 3, 11, 5, True)
    logits, loss = model.forward(tokens, targets)
    total, count = 0.0, 0
    for b in range(3):
        for t in range(11):
            y = targets[b, t].item()
            if y == -1:
                continue
            row = [v.item() for v in logits[b, t]]
            mx = max(row)
            lse = mx + math.log(sum(math.exp(v - mx) for v in row))
            total += lse - row[y]
            count += 1
    check(count < 33 and abs(total / count - loss.item()) < 1e-12,
          "loss = -mean log_softmax[target] over %d of 33 targets" % count)


def test_f32_vs_f64():
    for name in ("tiny", "odd"):
        cfg, seed, std, emb_std = mg.CONFIGS[name]
        params = ref.random_params(cfg, seed, std, emb_std)
        tokens, targets = mg.make_batch(cfg, 3, cfg.n_ctx, seed, False)
        l64, s64 = ref.GPT2(cfg, params, torch.float64).forward(tokens, targets)
        l32, s32 = ref.GPT2(cfg, params, torch.float32).forward(tokens, targets)
        d = (l32.double() - l64).abs().max().item()
        tol = tolerance(l64)
        check(d < tol / 10, "%s: float32 logits within %.2e of float64 (%.2e)"
              % (name, tol / 10, d))
        check(abs(s32.item() - s64.item()) < 1e-5 * s64.item(),
              "%s: float32 loss within 1e-5 relative of float64" % name)


def test_safetensors(tmp):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, generator=g)
    ints = torch.tensor([[1, -1, 50256]], dtype=torch.int32)
    path = os.path.join(tmp, "t.safetensors")
    for dt, tdt in (("F32", torch.float32), ("F16", torch.float16),
                    ("BF16", torch.bfloat16)):
        ref.st_save(path, {"odd": torch.ones(3), "x": x, "i": ints},
                    {"x": dt, "odd": "F16"})
        back, dtypes, meta = ref.st_load(path)
        want = x.to(tdt).to(torch.float32)
        check(torch.equal(back["x"], want) and dtypes["x"] == dt,
              "safetensors %s round-trips (rounded as torch rounds)" % dt)
        check(back["i"].tolist() == ints.tolist() and dtypes["i"] == "I32",
              "safetensors I32 round-trips with %s beside it" % dt)
        check(meta == {"format": "pt"}, "__metadata__ is {format: pt}")
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        check(n % 8 == 0, "header length %d is a multiple of 8" % n)
    cfg, seed, std, emb_std = mg.CONFIGS["tiny"]
    params = ref.random_params(cfg, seed, std, emb_std)
    d = os.path.join(tmp, "prefixed")
    ref.save_model_dir(d, cfg, params, "F32", "transformer.", True)
    model, raw, _, _ = ref.load_model_dir(d, torch.float32)
    check("transformer.h.0.attn.masked_bias" in raw and
          all(torch.equal(model.p[k], params[k]) for k in params),
          "prefixed file with mask buffers loads to the same parameters")


def test_sensitivity():
    """Each mutation imitates a bug the C code could have."""
    name = "odd"
    cfg, seed, std, emb_std = mg.CONFIGS[name]
    params = ref.random_params(cfg, seed, std, emb_std)
    tokens, _ = mg.make_batch(cfg, 3, cfg.n_ctx, seed + 100, False)  # golden's
    base, _ = ref.GPT2(cfg, params).forward(tokens)
    tol = tolerance(base)
    saved = (ref.gelu_tanh, ref.layer_norm, ref.math)

    class ScaledMath:  # softmax scale 1/hs instead of 1/sqrt(hs)
        pi = math.pi

        @staticmethod
        def sqrt(v):
            return v if v == cfg.n_embd // cfg.n_head else math.sqrt(v)

    def unbiased(x, w, b, eps):
        return F.layer_norm(x, x.shape[-1:], w, b, eps) * \
            math.sqrt((x.shape[-1] - 1) / x.shape[-1])

    mutations = {
        "GELU erf form": ("gelu_tanh", lambda x: F.gelu(x)),
        "softmax scale 1/hs": ("math", ScaledMath),
        "unbiased variance": ("layer_norm", unbiased),
        "epsilon 1e-5": ("layer_norm",
                         lambda x, w, b, e: saved[1](x, w, b, 1e-5)),
    }
    for what, (attr, fn) in mutations.items():
        setattr(ref, attr, fn)
        try:
            logits, _ = ref.GPT2(cfg, params).forward(tokens)
        finally:
            ref.gelu_tanh, ref.layer_norm, ref.math = saved
        d = (logits - base).abs().max().item()
        check(d > 3 * tol, "%s: a bug '%s' moves logits %.2e > 3 x tol %.2e"
              % (name, what, d, tol))
    for bias in ("h.1.attn.c_attn.bias", "h.1.mlp.c_proj.bias", "ln_f.bias",
                 "h.0.ln_2.weight"):
        for cname in ("tiny", "odd"):
            c, s, sd, es = mg.CONFIGS[cname]
            p = ref.random_params(c, s, sd, es)
            tk, _ = mg.make_batch(c, 3, c.n_ctx, s, False)
            b0, _ = ref.GPT2(c, p).forward(tk)
            p[bias] = torch.ones_like(p[bias]) if "ln_" in bias and \
                bias.endswith("weight") else torch.zeros_like(p[bias])
            l1, _ = ref.GPT2(c, p).forward(tk)
            d = (l1 - b0).abs().max().item()
            check(d > 5 * tolerance(b0), "%s: default %s moves logits %.2e"
                  " > 5 x tol %.2e" % (cname, bias, d, tolerance(b0)))


def test_deterministic(tmp):
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    for d in (a, b):
        with contextlib.redirect_stdout(io.StringIO()):
            mg.main(["make_golden.py", d])
    same = True
    for name in os.listdir(a):
        if not os.path.isdir(os.path.join(a, name)):
            continue
        files = os.listdir(os.path.join(a, name))
        _, mismatch, errors = filecmp.cmpfiles(os.path.join(a, name),
                                               os.path.join(b, name), files,
                                               shallow=False)
        same = same and not mismatch and not errors
    check(same, "make_golden.py writes the same bytes twice")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_second_forward()
        test_causal()
        test_loss_by_hand()
        test_f32_vs_f64()
        test_safetensors(tmp)
        test_sensitivity()
        test_deterministic(tmp)
    print("self_test.py: %s" % ("FAIL (%d)" % failed if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
