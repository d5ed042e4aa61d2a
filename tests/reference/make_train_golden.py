"""make_train_golden.py OUTDIR: golden gradients and AdamW steps for gpt2c.

For each model, OUTDIR/<name>/ holds a Hugging Face directory (config.json,
model.safetensors, F32) and train_golden.safetensors, which
tests/tools/ref_train_check.c compares gpt2c's trainer against:

  hparams          F32 (10,)  lr, min_lr, warmup_steps, total_steps,
                              weight_decay, beta1, beta2, eps, grad_clip,
                              steps (the values the C trainer must be given)
  tokens, targets  I32 (B, T) one batch, a few targets -1 (ignored)
  loss             F32 (1,)   its mean cross-entropy
  grad.<name>      F32        d loss / d param after one forward_backward
                              with scale 1 (wte: embedding + tied head)
  accum_tokens, accum_targets  I32 (2, B, T) two micro-batches with the
                              same number of counted targets
  accum_loss       F32 (2,)   the mean loss of each
  accum_grad.<name> F32       the gradient of the mean loss over both,
                              computed as ONE forward over the (2B, T)
                              batch: what forward_backward(scale 0.5) twice
                              must add up to
  train_tokens, train_targets  I32 (S, B, T) the batch of each step (a
                              fixed cycle of two batches)
  train_loss       F32 (S,)   the loss of forward_backward at each step,
                              before that step's update
  train_lr         F32 (S,)   the learning rate of each step (schedule)
  train_grad_norm  F32 (S,)   the global gradient norm before clipping
  train_clipped    I32 (S,)   1 where clipping scaled the gradient
  final.<name>     F32        the parameters after S steps
  final_m.<name>, final_v.<name>  F32  AdamW's exp_avg and exp_avg_sq
  sched_params     F32 (K, 4) lr, min_lr (-1: leave the default, lr / 10),
                              warmup_steps, total_steps of K schedules
  sched_lr         F32 (K, N) the learning rate at steps 0..N-1 of each

The key bias (the middle third of h.N.attn.c_attn.bias) has a gradient
that is zero in exact arithmetic (q . b_k shifts all of a query's scores
alike, which softmax ignores): here it is ~1e-17 and the key biases do not
move, while any float32 trainer's rounding noise is turned by Adam into
steps of up to lr. main() checks the first; ref_train_check.c holds the
key biases to Adam's bound instead of the tolerance.

  make_train_golden.py --perturb GOLDEN_DIR OUTDIR MODEL TENSOR
copies GOLDEN_DIR/MODEL to OUTDIR/MODEL with one element of TENSOR of its
train_golden.safetensors moved by 1e-3 of the tensor's norm (ten times the
tolerance): tests/t_reference.sh checks that ref_train_check fails on it.

Semantics mirrored (include/gpt2.h, "training"): the loss is the mean
cross-entropy over targets != -1; each step is forward + backward, then
torch.nn.utils.clip_grad_norm_(all params, grad_clip), then
torch.optim.AdamW with two parameter groups, weight decay on the 2-D
tensors (wte, wpe, linear weights) only; the learning rate of each step
comes from lr_at(), a reimplementation of gpt2_train_lr. Everything is
computed in float64 from the float32 values the files and the C trainer
hold, so the reference's own rounding is far below the 1e-4 tolerance.

The models have large random weights (as make_golden.py's "odd"): peaked
attention, curved GELU, biases and norms away from their defaults, so a
wrong backward shows. Everything is seeded: the same script writes the
same bytes. Run with Debian's /usr/bin/python3 (it has torch).
"""

import math
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402

STEPS = 10


class Hparams:
    """The trainer's hyperparameters, as float32 values (what C gets)."""

    FIELDS = ("lr", "min_lr", "warmup", "total", "weight_decay", "beta1",
              "beta2", "eps", "grad_clip", "steps")

    def __init__(self, **kw):
        for k in self.FIELDS:
            v = kw[k]
            setattr(self, k, v if isinstance(v, int) else f32(v))

    def tensor(self):
        return torch.tensor([float(getattr(self, k)) for k in self.FIELDS],
                            dtype=torch.float32)


def f32(x):
    """x rounded to float32, as a Python float."""
    return float(np.float32(x))


# name -> (config, weight seed, weight std, embedding std, B, T, Hparams).
# "odd3": n_head 3, sizes neither powers of two nor multiples of 4,
# epsilon 1e-3, T = n_ctx. "mid4": deeper, T < n_ctx, so rows of wpe get
# no gradient but must still decay. grad_clip is chosen per model so that
# clipping scales the gradient in some steps and not in others (report()
# prints which, and refuses a model where it does not).
CONFIGS = {
    "odd3": (ref.Config(n_layer=2, n_head=3, n_embd=36, n_ctx=16,
                        vocab_size=97, layer_norm_epsilon=1e-3),
             21, 0.4, 0.5, 3, 16,
             Hparams(lr=1e-3, min_lr=1e-4, warmup=3, total=10,
                     weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8,
                     grad_clip=6.0, steps=STEPS)),
    "mid4": (ref.Config(n_layer=3, n_head=4, n_embd=64, n_ctx=32,
                        vocab_size=128), 22, 0.2, 0.5, 4, 24,
             Hparams(lr=1e-3, min_lr=1e-4, warmup=3, total=10,
                     weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8,
                     grad_clip=8.0, steps=STEPS)),
}

# Schedules for gpt2_train_lr: (lr, min_lr or -1 for the default, warmup,
# total), each evaluated at steps 0..SCHED_N-1 (past total_steps too).
SCHEDULES = ((1e-3, 1e-4, 3, 10), (6e-4, -1, 0, 20), (3e-4, 0.0, 5, 5),
             (1e-2, 1e-3, 1, 30), (5e-4, 2e-4, 8, 30))
SCHED_N = 40


# ------------------------------------------------------------- schedule

def lr_at(lr, min_lr, warmup, total, step):
    """gpt2_train_lr: linear warm-up lr * (step + 1) / warmup for step <
    warmup; then cosine from lr down to min_lr over [warmup, total); then
    min_lr. min_lr < 0 means the default, lr / 10."""
    if min_lr < 0:
        min_lr = lr / 10
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    ratio = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def schedule_tensors():
    rows, lrs = [], []
    for lr, min_lr, warmup, total in SCHEDULES:
        lr, min_lr = f32(lr), f32(min_lr)
        rows.append([lr, min_lr, warmup, total])
        lrs.append([lr_at(lr, min_lr, warmup, total, s)
                    for s in range(SCHED_N)])
    return {"sched_params": torch.tensor(rows, dtype=torch.float32),
            "sched_lr": torch.tensor(lrs, dtype=torch.float32)}


# -------------------------------------------------------------- batches

def make_batch(cfg, B, T, seed, n_ignored):
    """Random token windows, targets the window shifted by one; n_ignored
    targets set to -1 at seeded places (a run at the end of row 0 first,
    as padding would be), never all of a batch."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    tokens, targets = seq[:, :T].clone(), seq[:, 1:].clone()
    run = min(n_ignored, T // 3)
    if run:
        targets[0, T - run:] = -1
    rest = n_ignored - run
    flat = targets.view(-1)
    order = torch.randperm(B * T, generator=g)
    for i in order.tolist():
        if rest == 0:
            break
        if flat[i] != -1:
            flat[i] = -1
            rest -= 1
    return tokens, targets


# --------------------------------------------------------------- model

class Trainable:
    """The reference GPT2 over float64 leaf tensors that autograd and
    torch.optim can update in place, in gpt2c's tensor order."""

    def __init__(self, cfg, params):
        self.model = ref.GPT2(cfg, params, torch.float64)
        self.names = list(ref.param_shapes(cfg))
        for name in self.names:
            self.model.p[name] = self.model.p[name].detach().clone() \
                .requires_grad_(True)

    def tensors(self):
        return [self.model.p[n] for n in self.names]

    def zero_grad(self):
        for t in self.tensors():
            t.grad = None

    def loss(self, tokens, targets):
        return self.model.forward(tokens, targets)[1]

    def gradients(self, tokens, targets):
        """(loss, name -> d loss / d param), leaving no .grad behind."""
        self.zero_grad()
        loss = self.loss(tokens, targets)
        loss.backward()
        grads = {n: self.model.p[n].grad.detach().clone() for n in self.names}
        self.zero_grad()
        return loss.detach(), grads

    def optimizer(self, hp):
        """AdamW with weight decay on the 2-D tensors only."""
        decay = [t for t in self.tensors() if t.dim() == 2]
        no_decay = [t for t in self.tensors() if t.dim() != 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps)


def f32_named(prefix, names, tensors):
    return {prefix + n: t.detach().to(torch.float32)
            for n, t in zip(names, tensors)}


def i32(t):
    return t.to(torch.int32)


def check_key_bias(cfg, grads):
    """The key bias's gradient must be zero up to float64 rounding (see the
    header), or the reasoning ref_train_check.c relies on is wrong."""
    C = cfg.n_embd
    for i in range(cfg.n_layer):
        g = grads["h.%d.attn.c_attn.bias" % i]
        if g[C:2 * C].abs().max() > 1e-12 * g.norm():
            raise SystemExit("h.%d: key bias gradient %.3e is not zero"
                             % (i, g[C:2 * C].abs().max().item()))


def grad_golden(tm, tokens, targets):
    loss, grads = tm.gradients(tokens, targets)
    check_key_bias(tm.model.cfg, grads)
    out = {"tokens": i32(tokens), "targets": i32(targets),
           "loss": loss.reshape(1).to(torch.float32)}
    out.update(f32_named("grad.", tm.names, [grads[n] for n in tm.names]))
    return out


def accum_golden(tm, batches):
    """Two micro-batches with equal counted targets: the mean of their
    mean losses is the mean over the (2B, T) batch, whose gradient is one
    backward of one forward."""
    (t0, g0), (t1, g1) = batches
    if int((g0 != -1).sum()) != int((g1 != -1).sum()):
        raise ValueError("accumulation micro-batches count different targets")
    _, grads = tm.gradients(torch.cat([t0, t1]), torch.cat([g0, g1]))
    with torch.no_grad():
        losses = torch.stack([tm.loss(t0, g0), tm.loss(t1, g1)])
    out = {"accum_tokens": i32(torch.stack([t0, t1])),
           "accum_targets": i32(torch.stack([g0, g1])),
           "accum_loss": losses.to(torch.float32)}
    out.update(f32_named("accum_grad.", tm.names,
                         [grads[n] for n in tm.names]))
    return out


def train_golden(tm, hp, batches):
    """hp.steps steps of forward, backward, clip, AdamW; batches cycle."""
    params = tm.tensors()
    opt = tm.optimizer(hp)
    losses, lrs, norms, clipped, toks, tgts = [], [], [], [], [], []
    for step in range(hp.steps):
        tokens, targets = batches[step % len(batches)]
        lr = lr_at(hp.lr, hp.min_lr, hp.warmup, hp.total, step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = tm.loss(tokens, targets)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, hp.grad_clip)
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
        norms.append(norm.item())
        clipped.append(int(hp.grad_clip / (norm.item() + 1e-6) < 1.0))
        toks.append(tokens)
        tgts.append(targets)
    opt.zero_grad(set_to_none=True)
    state = [opt.state[t] for t in params]
    out = {"train_tokens": i32(torch.stack(toks)),
           "train_targets": i32(torch.stack(tgts)),
           "train_loss": torch.tensor(losses, dtype=torch.float32),
           "train_lr": torch.tensor(lrs, dtype=torch.float32),
           "train_grad_norm": torch.tensor(norms, dtype=torch.float32),
           "train_clipped": torch.tensor(clipped, dtype=torch.int32)}
    out.update(f32_named("final.", tm.names, params))
    out.update(f32_named("final_m.", tm.names, [s["exp_avg"] for s in state]))
    out.update(f32_named("final_v.", tm.names,
                         [s["exp_avg_sq"] for s in state]))
    return out


# ---------------------------------------------------------------- main

def write_model(outdir, name):
    cfg, seed, std, emb_std, B, T, hp = CONFIGS[name]
    path = os.path.join(outdir, name)
    params = ref.random_params(cfg, seed, std, emb_std)
    ref.save_model_dir(path, cfg, params, "F32")
    gold = {"hparams": hp.tensor()}
    batch = make_batch(cfg, B, T, seed + 100, 4)
    gold.update(grad_golden(Trainable(cfg, params), *batch))
    micro = [make_batch(cfg, B, T, seed + 200 + k, 3) for k in range(2)]
    gold.update(accum_golden(Trainable(cfg, params), micro))
    steps = [batch, make_batch(cfg, B, T, seed + 300, 2)]
    gold.update(train_golden(Trainable(cfg, params), hp, steps))
    gold.update(schedule_tensors())
    ref.st_save(os.path.join(path, "train_golden.safetensors"), gold)
    report(name, cfg, B, T, hp, gold)
    return gold


def report(name, cfg, B, T, hp, gold):
    losses = gold["train_loss"].tolist()
    norms = gold["train_grad_norm"].tolist()
    clipped = gold["train_clipped"].tolist()
    print("%-6s L=%d H=%d C=%d n_ctx=%d V=%d eps=%g  B=%d T=%d  loss %.6f"
          % (name, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx,
             cfg.vocab_size, cfg.layer_norm_epsilon, B, T,
             gold["loss"].item()))
    print("       accumulation losses %.6f %.6f"
          % tuple(gold["accum_loss"].tolist()))
    print("       step  lr          loss       grad norm  clipped (clip %g)"
          % hp.grad_clip)
    for s in range(hp.steps):
        print("       %4d  %.4e  %.6f  %9.4f  %s"
              % (s, gold["train_lr"][s].item(), losses[s], norms[s],
                 "yes" if clipped[s] else "no"))
    n = sum(clipped)
    if n == 0 or n == hp.steps:
        raise SystemExit("%s: clipping %s; choose grad_clip so that it "
                         "triggers in some steps only"
                         % (name, "never triggers" if n == 0 else
                            "triggers in every step"))


def perturb(golden_dir, outdir, model, tensor):
    """A copy of one golden model with one element of tensor moved."""
    dst = os.path.join(outdir, model)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(os.path.join(golden_dir, model), dst)
    path = os.path.join(dst, "train_golden.safetensors")
    tensors, dtypes, _ = ref.st_load(path)
    t = tensors[tensor]
    flat = t.view(-1)
    i = len(flat) // 2
    delta = 1e-3 * max(t.norm().item(), abs(flat[i].item()))
    flat[i] += delta
    ref.st_save(path, tensors, dtypes)
    print("%s: %s[%d] moved by %.3e" % (dst, tensor, i, delta))
    return 0


def main(argv):
    if len(argv) == 6 and argv[1] == "--perturb":
        return perturb(*argv[2:])
    if len(argv) != 2:
        sys.stderr.write("usage: make_train_golden.py OUTDIR\n"
                         "       make_train_golden.py --perturb GOLDEN_DIR "
                         "OUTDIR MODEL TENSOR\n")
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    for name in CONFIGS:
        write_model(outdir, name)
    with open(os.path.join(outdir, "README"), "w") as f:
        f.write("Written by tests/reference/make_train_golden.py; "
                "see its header.\n")
    print("training golden written to %s" % outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
