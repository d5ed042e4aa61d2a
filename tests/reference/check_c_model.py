"""check_c_model.py OUTDIR: gpt2c's saved models, judged by the reference.

`ref_check --save OUTDIR` (tests/tools/ref_check.c) saves one random model
as OUTDIR/F32, OUTDIR/BF16 and OUTDIR/F16, reloads each in C, and writes
the logits of a fixed batch to OUTDIR/c_logits.safetensors (tokens (B, T)
as floats; logits_f32 / logits_bf16 / logits_f16 as (B*T, V); config:
n_layer, n_head, n_embd, n_ctx, vocab_size, layer_norm_epsilon). For each
directory this checks what Hugging Face's loader relies on:
  - config.json has model_type "gpt2", activation_function "gelu_new" and
    every size key (n_positions equal to n_ctx), with the C model's values
  - model.safetensors: __metadata__ {"format": "pt"}; tensors laid end to
    end covering the data section (the safetensors library rejects gaps);
    exactly GPT2Model's names and shapes; every tensor in the dtype saved
  - the 16-bit files hold the F32 weights rounded to nearest even
and then that the reference, run in float64 on the weights as stored,
gives gpt2c's logits within 1e-4 * max(1, max |logits|).
Prints each check; exits non-zero on any failure.
"""

import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402

TOL = 1e-4
DTYPES = ("F32", "BF16", "F16")

failed = 0


def check(ok, what):
    global failed
    print("  %s  %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        failed += 1
    return ok


def check_config(path):
    with open(os.path.join(path, "config.json")) as f:
        d = json.load(f)
    missing = [k for k in ref.HF_CONFIG_KEYS if k not in d]
    check(not missing, "config.json has %s" % (
        "every key Hugging Face needs" if not missing
        else "no %s" % ", ".join(missing)))
    check(d.get("model_type") == "gpt2" and
          d.get("activation_function") == "gelu_new",
          "model_type gpt2, activation_function gelu_new")
    check(d.get("n_positions") == d.get("n_ctx"), "n_positions == n_ctx")
    return ref.Config.from_json(d)


def check_layout(path):
    """The safetensors library's own rules: header JSON, then tensors packed
    end to end from offset 0 to the end of the file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items()
                   if k != "__metadata__")
    pos, packed = 0, True
    for begin, end in spans:
        packed = packed and begin == pos
        pos = end
    check(packed and pos == len(raw) - 8 - n,
          "tensors packed end to end over the whole data section")


def check_dir(path, dtype, want_cfg):
    print("%s:" % path)
    cfg = check_config(path)
    got = [cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx, cfg.vocab_size]
    check(got == [int(v) for v in want_cfg[:5]] and
          abs(cfg.layer_norm_epsilon - want_cfg[5].item()) <=
          1e-6 * want_cfg[5].item(),
          "config.json is the C model's config %s, eps %g"
          % (got, cfg.layer_norm_epsilon))
    st = os.path.join(path, "model.safetensors")
    check_layout(st)
    tensors, dtypes, meta = ref.st_load(st)
    check(meta == {"format": "pt"}, "__metadata__ is {\"format\": \"pt\"}")
    try:
        ref.check_params(cfg, tensors)
        check(True, "names and shapes are GPT2Model's (%d tensors)"
              % len(tensors))
    except ValueError as e:
        check(False, "names and shapes: %s" % e)
        return None
    wrong = sorted(k for k, v in dtypes.items() if v != dtype)
    check(not wrong, "every tensor is %s%s" % (
        dtype, "" if not wrong else " (not %s)" % ", ".join(wrong[:3])))
    return cfg, tensors


def compare_logits(cfg, params, tokens, c_logits, label):
    model = ref.GPT2(cfg, params, torch.float64)
    want, _ = model.forward(tokens)
    want = want.reshape(c_logits.shape)
    scale = max(1.0, want.abs().max().item())
    d = (c_logits.double() - want).abs().max().item()
    check(torch.isfinite(c_logits).all().item() and d <= TOL * scale,
          "%s: C logits vs reference: max abs %.2e, rel %.2e (tol %.0e)"
          % (label, d, d / scale, TOL))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: check_c_model.py OUTDIR\n")
        return 2
    outdir = argv[1]
    try:
        c_out, _, _ = ref.st_load(os.path.join(outdir, "c_logits.safetensors"))
    except (OSError, ValueError) as e:
        print("check_c_model.py: FAIL: %s (run ref_check --save first)" % e)
        return 1
    tokens = c_out["tokens"].round().long()
    f32 = None
    for dtype in DTYPES:
        try:
            got = check_dir(os.path.join(outdir, dtype), dtype, c_out["config"])
        except (OSError, ValueError, KeyError) as e:
            check(False, "%s: %s" % (dtype, e))
            continue
        if got is None:
            continue
        cfg, params = got
        if dtype == "F32":
            f32 = params
        elif f32 is not None:
            rounded = ref.round_to(f32, dtype)
            same = all(torch.equal(rounded[k], params[k]) for k in params)
            check(same, "%s weights are the F32 weights rounded to nearest "
                  "even" % dtype)
        compare_logits(cfg, params, tokens, c_out["logits_" + dtype.lower()],
                       dtype)
    print("check_c_model.py: %s" % ("FAIL (%d)" % failed if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
