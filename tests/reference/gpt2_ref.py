"""gpt2_ref.py: an independent GPT-2 in PyTorch, the oracle for the C code.

Written from the GPT-2 definition (Radford et al. 2019, and the layout of
Hugging Face's GPT2Model), not from gpt2c's C sources, so that a mistake
in one is not silently repeated in the other. Parameters carry Hugging
Face's names and shapes (Conv1D layout: y = x W + b with W (in, out)), so
what this module writes loads in transformers and what gpt2c writes loads
here. Computation runs in float64 for golden values (so the reference's own
rounding is far below the 1e-4 tolerance) or float32 on request.

Also here, because no safetensors package is installed: a pure-Python
safetensors reader/writer, and config.json in Hugging Face's keys.

Runs under Debian's /usr/bin/python3 (torch 1.13, numpy).
"""

import json
import math
import os
import struct

import numpy as np
import torch

# ------------------------------------------------------------------ config

# The keys Hugging Face's GPT2Config needs to rebuild the model; written
# by save_config and required of gpt2c's config.json by check_c_model.py.
HF_CONFIG_KEYS = ("n_layer", "n_head", "n_embd", "n_positions", "n_ctx",
                  "vocab_size", "layer_norm_epsilon", "model_type",
                  "activation_function")


class Config:
    """The shape of a GPT-2 (GPT2Config's fields that matter for inference)."""

    def __init__(self, n_layer, n_head, n_embd, n_ctx, vocab_size,
                 layer_norm_epsilon=1e-5):
        if n_embd % n_head:
            raise ValueError("n_embd %d is not a multiple of n_head %d"
                             % (n_embd, n_head))
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_embd = n_embd
        self.n_ctx = n_ctx
        self.vocab_size = vocab_size
        self.layer_norm_epsilon = layer_norm_epsilon

    def to_json(self):
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_positions": self.n_ctx,
            "n_ctx": self.n_ctx,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_word_embeddings": True,
        }

    @staticmethod
    def from_json(d):
        # n_positions is the size of wpe; old configs only have n_ctx.
        n_ctx = d.get("n_positions", d.get("n_ctx"))
        return Config(d["n_layer"], d["n_head"], d["n_embd"], n_ctx,
                      d["vocab_size"], d.get("layer_norm_epsilon", 1e-5))


def save_config(cfg, path):
    with open(path, "w") as f:
        json.dump(cfg.to_json(), f, indent=2)
        f.write("\n")


def load_config(path):
    with open(path) as f:
        return Config.from_json(json.load(f))


# ------------------------------------------------------------- parameters

def param_shapes(cfg):
    """Name -> shape of every parameter, in Hugging Face's order."""
    C, V, L = cfg.n_embd, cfg.vocab_size, cfg.n_layer
    shapes = {"wte.weight": (V, C), "wpe.weight": (cfg.n_ctx, C)}
    for i in range(L):
        p = "h.%d." % i
        shapes[p + "ln_1.weight"] = (C,)
        shapes[p + "ln_1.bias"] = (C,)
        shapes[p + "attn.c_attn.weight"] = (C, 3 * C)
        shapes[p + "attn.c_attn.bias"] = (3 * C,)
        shapes[p + "attn.c_proj.weight"] = (C, C)
        shapes[p + "attn.c_proj.bias"] = (C,)
        shapes[p + "ln_2.weight"] = (C,)
        shapes[p + "ln_2.bias"] = (C,)
        shapes[p + "mlp.c_fc.weight"] = (C, 4 * C)
        shapes[p + "mlp.c_fc.bias"] = (4 * C,)
        shapes[p + "mlp.c_proj.weight"] = (4 * C, C)
        shapes[p + "mlp.c_proj.bias"] = (C,)
    shapes["ln_f.weight"] = (C,)
    shapes["ln_f.bias"] = (C,)
    return shapes


def random_params(cfg, seed, std=0.02, emb_std=None):
    """Random weights in which every parameter matters: matrices N(0, std),
    embeddings N(0, emb_std or std), biases N(0, std), layer-norm weights
    1 + N(0, 0.1) and biases N(0, 0.05). GPT-2's own init (biases 0, norms
    1 and 0) would let a loader that drops them pass. With std 0.02 the
    attention is nearly uniform and GELU nearly linear, so a wrong softmax
    scale or GELU form hardly shows: a larger std (0.3, emb_std 1) makes
    attention peaked and GELU curved. float32, as files hold them."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in param_shapes(cfg).items():
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        if ".ln_" in name or name.startswith("ln_f"):
            x = 1.0 + 0.1 * x if name.endswith("weight") else 0.05 * x
        elif name in ("wte.weight", "wpe.weight"):
            x = (emb_std or std) * x
        else:
            x = std * x
        params[name] = x.to(torch.float32)
    return params


def strip_prefix(params):
    """Hugging Face's GPT2LMHeadModel saves "transformer."-prefixed names and,
    in older files, the attention mask buffers and lm_head.weight: keep the
    GPT2Model parameters only."""
    out = {}
    for name, t in params.items():
        if name.startswith("transformer."):
            name = name[len("transformer."):]
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue
        if name == "lm_head.weight":
            continue
        out[name] = t
    return out


def check_params(cfg, params):
    """Raises ValueError unless params has exactly GPT2Model's names and
    shapes for cfg."""
    want = param_shapes(cfg)
    missing = sorted(set(want) - set(params))
    extra = sorted(set(params) - set(want))
    if missing or extra:
        raise ValueError("parameter names differ: missing %s, unexpected %s"
                         % (missing[:5], extra[:5]))
    for name, shape in want.items():
        if tuple(params[name].shape) != shape:
            raise ValueError("%s: shape %s, expected %s"
                             % (name, tuple(params[name].shape), shape))


# ------------------------------------------------------------------ model

def layer_norm(x, w, b, eps):
    # Biased variance over the last axis, as torch.nn.LayerNorm.
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    # GPT-2's "gelu_new": the tanh approximation of GELU.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)
                                       * (x + 0.044715 * x ** 3)))


def conv1d(x, w, b):
    # Hugging Face's Conv1D: w is (in, out), y = x W + b.
    return x @ w + b


def attention(x, w_qkv, b_qkv, w_proj, b_proj, n_head):
    """Masked multi-head self-attention on x (B, T, C)."""
    B, T, C = x.shape
    hs = C // n_head
    qkv = conv1d(x, w_qkv, b_qkv)                      # (B, T, 3C)
    q, k, v = qkv.split(C, dim=2)
    # split heads: (B, T, C) -> (B, nh, T, hs)
    q = q.view(B, T, n_head, hs).transpose(1, 2)
    k = k.view(B, T, n_head, hs).transpose(1, 2)
    v = v.view(B, T, n_head, hs).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    att = torch.softmax(scores, dim=-1)
    y = att @ v                                        # (B, nh, T, hs)
    y = y.transpose(1, 2).reshape(B, T, C)             # merge heads
    return conv1d(y, w_proj, b_proj)


def block(x, p, i, cfg):
    """One decoder block (pre-norm): x + attn(ln_1(x)), then + mlp(ln_2(.))."""
    h = "h.%d." % i
    eps = cfg.layer_norm_epsilon
    a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
    x = x + attention(a, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"],
                      p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"],
                      cfg.n_head)
    m = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
    m = gelu_tanh(conv1d(m, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"]))
    return x + conv1d(m, p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])


def cross_entropy(logits, targets):
    """Mean over targets != -1 of -log softmax(logits)[target]."""
    logp = torch.log_softmax(logits, dim=-1)
    keep = targets != -1
    picked = logp[keep].gather(1, targets[keep].unsqueeze(1)).squeeze(1)
    return -picked.mean()


class GPT2:
    """GPT-2 with a tied LM head, over a dict of Hugging Face tensors."""

    def __init__(self, cfg, params, dtype=torch.float64):
        check_params(cfg, params)
        self.cfg = cfg
        self.dtype = dtype
        self.p = {k: v.to(dtype) for k, v in params.items()}

    def forward(self, tokens, targets=None):
        """tokens (B, T) int; targets (B, T) int with -1 = ignored, or None.
        Returns logits (B, T, V) and the mean loss (or None)."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        B, T = tokens.shape
        if T > self.cfg.n_ctx:
            raise ValueError("T=%d exceeds n_ctx=%d" % (T, self.cfg.n_ctx))
        p = self.p
        x = p["wte.weight"][tokens] + p["wpe.weight"][torch.arange(T)]
        for i in range(self.cfg.n_layer):
            x = block(x, p, i, self.cfg)
        x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"],
                       self.cfg.layer_norm_epsilon)
        logits = x @ p["wte.weight"].T                 # tied head
        loss = None
        if targets is not None:
            targets = torch.as_tensor(targets, dtype=torch.long)
            loss = cross_entropy(logits, targets)
        return logits, loss


# ------------------------------------------------------------ safetensors

# dtype name -> (numpy dtype or None when torch must convert, element size)
_ST_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2),
              "BF16": (None, 2), "I32": (np.int32, 4), "F64": (np.float64, 8),
              "I64": (np.int64, 8)}


def _tensor_bytes(t, dtype):
    t = torch.as_tensor(t).detach().cpu().contiguous()
    if dtype == "BF16":
        # numpy has no bfloat16: round in torch (to nearest even), then view
        # the 16 bits as int16 to get at the bytes.
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    npdt = _ST_DTYPES[dtype][0]
    return t.numpy().astype(np.dtype(npdt).newbyteorder("<")).tobytes()


def st_save(path, tensors, dtypes=None):
    """Writes tensors (name -> tensor, in the order given) to a safetensors
    file. dtypes: name -> "F32"/"F16"/"BF16"/"I32" (default F32 for floats,
    I32 for integers)."""
    dtypes = dtypes or {}
    header = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, t in tensors.items():
        t = torch.as_tensor(t)
        default = "F32" if t.is_floating_point() else "I32"
        dt = dtypes.get(name, default)
        b = _tensor_bytes(t, dt)
        header[name] = {"dtype": dt, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)   # the data section starts 8-aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def st_load(path):
    """Reads a safetensors file: returns (tensors, dtypes, metadata) with
    float tensors as float32 (F64 kept), integers as int64."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("%s: header length %d past end of file" % (path, n))
    header = json.loads(raw[8:8 + n].decode())
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    tensors, dtypes = {}, {}
    for name, info in header.items():
        dt, shape = info["dtype"], tuple(info["shape"])
        begin, end = info["data_offsets"]
        if dt not in _ST_DTYPES:
            raise ValueError("%s: %s: unsupported dtype %s" % (path, name, dt))
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * _ST_DTYPES[dt][1] or end > len(data):
            raise ValueError("%s: %s: bad data_offsets" % (path, name))
        buf = data[begin:end]
        if dt == "BF16":
            bits = np.frombuffer(buf, dtype="<i2").copy()
            t = torch.from_numpy(bits).view(torch.bfloat16).to(torch.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[dt][0])
                                .newbyteorder("<")).copy()
            t = torch.from_numpy(arr)
            if dt == "F16":
                t = t.to(torch.float32)
            elif dt in ("I32", "I64"):
                t = t.to(torch.long)
        tensors[name] = t.reshape(shape)
        dtypes[name] = dt
    return tensors, dtypes, meta


def load_model_dir(path, dtype=torch.float64):
    """A Hugging Face GPT-2 directory -> (GPT2, raw tensors, dtypes, meta)."""
    cfg = load_config(os.path.join(path, "config.json"))
    tensors, dtypes, meta = st_load(os.path.join(path, "model.safetensors"))
    return GPT2(cfg, strip_prefix(tensors), dtype), tensors, dtypes, meta


def save_model_dir(path, cfg, params, dtype="F32", prefix="", buffers=False):
    """Writes config.json + model.safetensors. prefix "transformer." and
    buffers=True imitate a GPT2LMHeadModel checkpoint, whose attention mask
    buffers (h.N.attn.bias, h.N.attn.masked_bias) a loader must skip."""
    os.makedirs(path, exist_ok=True)
    save_config(cfg, os.path.join(path, "config.json"))
    tensors, dtypes = {}, {}
    for name, t in params.items():
        tensors[prefix + name] = t
        dtypes[prefix + name] = dtype
    if buffers:
        T = cfg.n_ctx
        mask = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
        for i in range(cfg.n_layer):
            tensors["%sh.%d.attn.bias" % (prefix, i)] = mask
            tensors["%sh.%d.attn.masked_bias" % (prefix, i)] = torch.tensor(-1e4)
            dtypes["%sh.%d.attn.bias" % (prefix, i)] = dtype
            dtypes["%sh.%d.attn.masked_bias" % (prefix, i)] = dtype
    st_save(os.path.join(path, "model.safetensors"), tensors, dtypes)


def round_to(params, dtype):
    """The float32 values a file of dtype "F32"/"F16"/"BF16" holds."""
    tdt = {"F32": torch.float32, "F16": torch.float16,
           "BF16": torch.bfloat16}[dtype]
    return {k: v.to(tdt).to(torch.float32) for k, v in params.items()}
