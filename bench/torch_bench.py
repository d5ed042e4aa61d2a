#!/usr/bin/python3
"""torch_bench.py: the PyTorch side of `make bench-compare`.

Times the work `gpt2 bench` times, on the same model directory, in
PyTorch at its best on this machine, so that gpt2c's figures have a
baseline that means something:

  decode   ms/token with a KV cache at contexts 128 and 1024 (prefill to
           just below the context, then single-token steps, median), in
           fp32 and in bf16 (weights and activations bf16, as
           model.to(torch.bfloat16) would)
  prefill  tokens/s for a 512-token prompt from an empty cache (logits of
           the last position only, as gpt2c's session does), fp32 and bf16
  train    one AdamW step (forward, cross-entropy, backward, gradient
           clipping at 1.0, AdamW with decay on 2-D tensors) at B=4 T=64
           and B=8 T=256, fp32 and bf16 autocast (fp32 master weights)

at 1 thread and at all threads (torch.set_num_threads, and OpenBLAS's own
thread count, which Debian's torch does not set). Inference runs under
torch.inference_mode. The GPT-2 here is a compact one written for speed
(F.linear, or torch.addmv for a single fp32 row, F.layer_norm, F.gelu
tanh, one preallocated KV cache); the
weights come from the directory's model.safetensors through the project's
reference reader (tests/reference/gpt2_ref.py).

The figure ids match gpt2c's JSON, so the two compare line by line:
"decode.F32.ctx128.t2" is fp32 here and F32 weights there, "BF16" is bf16
compute here and BF16 weights (fp32 compute) there, "train.bf16" is
autocast here and not yet available there.

    torch_bench.py run --model DIR [--threads 1,2] [--quick] [--json-out F]
    torch_bench.py ratios --gpt2c JSON... --torch JSON...  (markdown table)

Run it with OPENBLAS_CORETYPE=SkylakeX and OMP_WAIT_POLICY=passive
(bench/compare.sh does): Debian's OpenBLAS does not know Zen 5 and falls
back to its Haswell kernels, half as fast; the settings in effect are
recorded in the JSON.
"""

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "reference"))
import gpt2_ref  # noqa: E402  (the project's safetensors reader)


# ------------------------------------------------------------------ model

class FastGPT2:
    """GPT-2 for timing: weights as (out, in) matrices for F.linear, the LM
    head tied to wte, a KV cache of n_ctx positions per layer."""

    def __init__(self, cfg, params, dtype, requires_grad=False):
        self.cfg = cfg
        self.dtype = dtype
        C = cfg.n_embd

        def t(name, transpose=False):
            x = params[name]
            if transpose:
                x = x.t()
            x = x.to(dtype).contiguous()
            x.requires_grad_(requires_grad)
            return x

        self.wte = t("wte.weight")
        self.wpe = t("wpe.weight")
        self.layers = []
        for i in range(cfg.n_layer):
            p = "h.%d." % i
            self.layers.append({
                "ln1_w": t(p + "ln_1.weight"), "ln1_b": t(p + "ln_1.bias"),
                "attn_w": t(p + "attn.c_attn.weight", True),
                "attn_b": t(p + "attn.c_attn.bias"),
                "proj_w": t(p + "attn.c_proj.weight", True),
                "proj_b": t(p + "attn.c_proj.bias"),
                "ln2_w": t(p + "ln_2.weight"), "ln2_b": t(p + "ln_2.bias"),
                "fc_w": t(p + "mlp.c_fc.weight", True),
                "fc_b": t(p + "mlp.c_fc.bias"),
                "fcp_w": t(p + "mlp.c_proj.weight", True),
                "fcp_b": t(p + "mlp.c_proj.bias"),
            })
        self.lnf_w = t("ln_f.weight")
        self.lnf_b = t("ln_f.bias")
        self.kcache = self.vcache = None
        self.C = C

    @staticmethod
    def linear(x, w, b=None):
        """F.linear, except for one fp32 row (batch-1 decode): there
        F.linear runs OpenBLAS's gemm with M = 1, about 3x slower than
        its gemv (torch.addmv). bf16 goes through oneDNN, where F.linear
        is the faster."""
        if x.dtype == torch.float32 and x.numel() == x.shape[-1]:
            v = x.reshape(-1)
            y = torch.mv(w, v) if b is None else torch.addmv(b, w, v)
            return y.view(x.shape[:-1] + (w.shape[0],))
        return F.linear(x, w, b)

    def parameters(self):
        ps = [self.wte, self.wpe]
        for layer in self.layers:
            ps += list(layer.values())
        return ps + [self.lnf_w, self.lnf_b]

    def new_cache(self, batch=1):
        cfg = self.cfg
        hs = cfg.n_embd // cfg.n_head
        shape = (cfg.n_layer, batch, cfg.n_head, cfg.n_ctx, hs)
        self.kcache = torch.zeros(shape, dtype=self.dtype)
        self.vcache = torch.zeros(shape, dtype=self.dtype)

    def forward(self, idx, past=0, use_cache=False, last_only=False):
        """idx (B, T) long. With use_cache, K and V go into the cache at
        positions past.. and attention reads the cache's 0..past+T."""
        cfg = self.cfg
        B, T = idx.shape
        C, H = cfg.n_embd, cfg.n_head
        hs = C // H
        eps = cfg.layer_norm_epsilon
        x = self.wte[idx] + self.wpe[past:past + T]
        mask = None
        if T > 1:  # causal, offset by the cached positions
            q_pos = torch.arange(past, past + T).unsqueeze(1)
            k_pos = torch.arange(past + T).unsqueeze(0)
            mask = k_pos > q_pos
        for li, p in enumerate(self.layers):
            h = F.layer_norm(x, (C,), p["ln1_w"], p["ln1_b"], eps)
            qkv = self.linear(h, p["attn_w"], p["attn_b"])
            q, k, v = qkv.split(C, dim=2)
            q = q.view(B, T, H, hs).transpose(1, 2)
            k = k.view(B, T, H, hs).transpose(1, 2)
            v = v.view(B, T, H, hs).transpose(1, 2)
            if use_cache:
                self.kcache[li, :, :, past:past + T] = k
                self.vcache[li, :, :, past:past + T] = v
                k = self.kcache[li, :, :, :past + T]
                v = self.vcache[li, :, :, :past + T]
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            if mask is not None:
                att = att.masked_fill(mask, float("-inf"))
            att = torch.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.linear(y, p["proj_w"], p["proj_b"])
            h = F.layer_norm(x, (C,), p["ln2_w"], p["ln2_b"], eps)
            h = F.gelu(self.linear(h, p["fc_w"], p["fc_b"]), approximate="tanh")
            x = x + self.linear(h, p["fcp_w"], p["fcp_b"])
        if last_only:
            x = x[:, -1:, :]
        x = F.layer_norm(x, (C,), self.lnf_w, self.lnf_b, eps)
        return self.linear(x, self.wte)


# ---------------------------------------------------------------- threads

class Threads:
    """Sets torch's threads and OpenBLAS's: Debian's torch is built against
    the generic libblas (OpenBLAS through alternatives), so
    torch.set_num_threads does not reach OpenBLAS's own pthreads."""

    def __init__(self):
        self.blas = None
        self.core = None
        try:
            lib = ctypes.CDLL("libblas.so.3")
            lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
            lib.openblas_get_corename.restype = ctypes.c_char_p
            self.core = lib.openblas_get_corename().decode()
            self.blas = lib
        except (OSError, AttributeError):
            pass

    def set(self, n):
        torch.set_num_threads(n)
        if self.blas is not None:
            self.blas.openblas_set_num_threads(n)


# ----------------------------------------------------------------- timing

def now():
    return time.perf_counter()


def token_ids(n, vocab):
    """The same LCG stream gpt2c's bench uses (any fixed ids would do)."""
    x, out = 0x9e3779b97f4a7c15, []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append((x >> 33) % vocab)
    return torch.tensor(out, dtype=torch.long)


def decode_figures(model, name, ids, ctxs, threads, steps, th, figures):
    """Like gpt2c: prefill so that the thread counts' runs (one untimed
    step, then `steps` timed ones each) end at exactly ctx tokens."""
    n_ctx = model.cfg.n_ctx
    for ctx in ctxs:
        pre = ctx - len(threads) * (steps + 1)
        if ctx > n_ctx or pre < 1:
            continue
        th.set(max(threads))
        model.new_cache()
        model.forward(ids[:pre].unsqueeze(0), 0, use_cache=True, last_only=True)
        pos = pre
        for t in threads:
            th.set(t)
            times = []
            for i in range(steps + 1):
                tok = ids[pos:pos + 1].unsqueeze(0)
                t0 = now()
                model.forward(tok, pos, use_cache=True)
                dt = now() - t0
                pos += 1
                if i:
                    times.append(1e3 * dt)
            fid = "decode.%s.ctx%d.t%d" % (name, ctx, t)
            figures[fid] = {"value": statistics.median(times),
                            "unit": "ms/token"}
            log("%s: %.2f ms/token" % (fid, figures[fid]["value"]))


def prefill_figures(model, name, ids, T, threads, repeats, th, figures):
    if T > model.cfg.n_ctx:
        return
    model.new_cache()
    prompt = ids[:T].unsqueeze(0)
    for t in threads:
        th.set(t)
        model.forward(prompt, 0, use_cache=True, last_only=True)  # warm-up
        rates = []
        for _ in range(repeats):
            t0 = now()
            model.forward(prompt, 0, use_cache=True, last_only=True)
            rates.append(T / (now() - t0))
        fid = "prefill.%s.t%d" % (name, t)
        figures[fid] = {"value": statistics.median(rates), "unit": "tokens/s"}
        log("%s: %.0f tokens/s" % (fid, figures[fid]["value"]))


def make_optimizer(model):
    """AdamW as gpt2c's trainer: decay on 2-D tensors only."""
    ps = model.parameters()
    decay = [p for p in ps if p.dim() == 2]
    rest = [p for p in ps if p.dim() != 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1},
         {"params": rest, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.95), eps=1e-8)


def train_step(model, opt, tokens, targets, autocast):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model.forward(tokens)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(),
                               targets.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def train_figures(cfg, params, threads, repeats, th, figures):
    for B, T in ((4, 64), (8, 256)):
        if T > cfg.n_ctx:
            continue
        ids = token_ids(B * T + 1, cfg.vocab_size)
        tokens, targets = ids[:-1].view(B, T), ids[1:].view(B, T)
        for name, autocast in (("f32", False), ("bf16", True)):
            model = FastGPT2(cfg, params, torch.float32, requires_grad=True)
            opt = make_optimizer(model)
            th.set(max(threads))
            train_step(model, opt, tokens, targets, autocast)  # warm-up
            for t in threads:
                th.set(t)
                times = []
                for _ in range(repeats):
                    t0 = now()
                    train_step(model, opt, tokens, targets, autocast)
                    times.append(1e3 * (now() - t0))
                fid = "train.%s.B%dT%d.t%d" % (name, B, T, t)
                figures[fid] = {"value": statistics.median(times), "unit": "ms"}
                log("%s: %.1f ms" % (fid, figures[fid]["value"]))
            del model, opt


def self_check(cfg, params):
    """A timing of the wrong model proves nothing: FastGPT2's logits must
    match the project's float64 reference (tests/reference/gpt2_ref.py),
    and decoding with the KV cache must match the full forward. Returns
    the largest differences; raises if they are too large."""
    ids = token_ids(12, cfg.vocab_size).unsqueeze(0)
    with torch.inference_mode():
        ref, _ = gpt2_ref.GPT2(cfg, params, torch.float64).forward(ids)
        fast = FastGPT2(cfg, params, torch.float32)
        full = fast.forward(ids)
        fast.new_cache()
        fast.forward(ids[:, :8], 0, use_cache=True)
        steps = [fast.forward(ids[:, i:i + 1], i, use_cache=True)
                 for i in range(8, 12)]
    d_ref = (full.double() - ref).abs().max().item()
    d_cache = max((s[0, -1] - full[0, 8 + i]).abs().max().item()
                  for i, s in enumerate(steps))
    if d_ref > 1e-3 or d_cache > 1e-3:
        raise SystemExit("torch_bench: self-check failed: logits differ from "
                         "the reference by %.3g, cached decode by %.3g"
                         % (d_ref, d_cache))
    log("self-check: logits within %.2g of the reference, cached decode "
        "within %.2g" % (d_ref, d_cache))
    return {"max_diff_vs_reference": d_ref, "max_diff_cached_decode": d_cache}


def log(msg):
    print("torch_bench: " + msg, file=sys.stderr, flush=True)


def settings(th):
    env = {k: os.environ.get(k) for k in (
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY",
        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY")}
    # torch 1.13 tells its kernels' ISA only in its build summary
    cap = None
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            cap = line.split(":", 1)[1].strip()
    return {
        "torch": torch.__version__,
        "env": env,
        "openblas_core": th.core,
        "openblas_threads_set": th.blas is not None,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "aten_cpu_capability": cap,
        "inference": "torch.inference_mode; fp32, and bf16 weights + "
                     "activations",
        "training": "AdamW (decay on 2-D), clip_grad_norm_ 1.0; fp32, and "
                    "bf16 autocast over fp32 weights",
    }


def run(args):
    cfg = gpt2_ref.load_config(os.path.join(args.model, "config.json"))
    tensors, _, _ = gpt2_ref.st_load(os.path.join(args.model,
                                                  "model.safetensors"))
    params = gpt2_ref.strip_prefix(tensors)
    gpt2_ref.check_params(cfg, params)
    threads = [int(x) for x in args.threads.split(",")]
    steps = 4 if args.quick else 16
    repeats = 2 if args.quick else 3
    only = set(args.only.split(","))
    th = Threads()
    check = self_check(cfg, params)
    ids = token_ids(cfg.n_ctx + 1, cfg.vocab_size)
    figures = {}
    t_start = now()
    with torch.inference_mode():
        for name, dtype in (("F32", torch.float32), ("BF16", torch.bfloat16)):
            if not only & {"decode", "prefill"}:
                break
            model = FastGPT2(cfg, params, dtype)
            if "decode" in only:
                decode_figures(model, name, ids, (128, 1024), threads, steps,
                               th, figures)
            if "prefill" in only:
                prefill_figures(model, name, ids, 512, threads, repeats, th,
                                figures)
            del model
    if "train" in only:
        train_figures(cfg, params, threads, repeats, th, figures)
    out = {
        "bench": "torch",
        "settings": settings(th),
        "model": {"path": args.model, "n_layer": cfg.n_layer,
                  "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                  "n_ctx": cfg.n_ctx, "vocab_size": cfg.vocab_size},
        "self_check": check,
        "threads": threads,
        "figures": [dict(id=k, available=True, **v) for k, v in figures.items()],
        "seconds": now() - t_start,
    }
    text = json.dumps(out, indent=2)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    print(text)


# ----------------------------------------------------------------- ratios

def seconds_per_unit(f):
    """The time one unit of work takes: ms for times, 1/rate for rates."""
    v = f["value"]
    return v if f["unit"].startswith("ms") else 1.0 / v


def fmt(f):
    v = f["value"]
    digits = 0 if v >= 100 else 1 if v >= 10 else 2
    return "%.*f %s" % (digits, v, f["unit"])


def load_figures(paths):
    """Figures by id from one or more JSON files; a figure measured in
    several (compare.sh repeats decode, alternating the two sides) keeps
    its fastest measurement."""
    out = {}
    for path in paths:
        with open(path) as f:
            for x in json.load(f)["figures"]:
                old = out.get(x["id"])
                if old and old.get("available", True):
                    if not x.get("available", True):
                        continue
                    if seconds_per_unit(old) <= seconds_per_unit(x):
                        continue
                out[x["id"]] = x
    return out


def ratios(args):
    ours = load_figures(args.gpt2c)
    theirs = load_figures(args.torch)
    print("| figure | gpt2c | PyTorch | gpt2c time / PyTorch time |")
    print("|---|---:|---:|---:|")
    for fid, t in theirs.items():
        o = ours.get(fid)
        what = o["what"] if o and o.get("what") else fid
        if not o or not o.get("available"):
            why = o.get("why", "not measured") if o else "not measured"
            print("| %s | %s | %s | |" % (what, why, fmt(t)))
            continue
        r = seconds_per_unit(o) / seconds_per_unit(t)
        print("| %s | %s | %s | %.2fx |" % (what, fmt(o), fmt(t), r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time PyTorch; JSON on stdout")
    r.add_argument("--model", required=True, help="model directory")
    r.add_argument("--threads", default="1,%d" % os.cpu_count())
    r.add_argument("--only", default="decode,prefill,train")
    r.add_argument("--quick", action="store_true", help="fewer repeats")
    r.add_argument("--json-out", help="also write the JSON here")
    q = sub.add_parser("ratios", help="markdown table of time ratios")
    q.add_argument("--gpt2c", nargs="+", required=True,
                   help="gpt2 bench --json-out files")
    q.add_argument("--torch", nargs="+", required=True,
                   help="torch_bench.py run --json-out files")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        ratios(args)


if __name__ == "__main__":
    main()
