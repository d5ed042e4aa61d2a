/* ops.h: the kernels of the transformer, on plain float arrays.
 *
 * Each kernel names the PyTorch operation it matches. Arguments are
 * outputs, then inputs, then sizes; shapes use B (batch), T (time), C
 * (channels), NH (heads), HS (head size), V (vocabulary), OC (output
 * channels). ops.c knows nothing of files or errors: shapes are the
 * caller's responsibility. Training's backward kernels will sit beside
 * their forward twins.
 */
#ifndef GPT2_OPS_H
#define GPT2_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The "encoder" step of the tutorial: token embedding + position
   embedding. out (B,T,C) = wte[tokens[b,t]] + wpe[pos0 + t].
   PyTorch: wte(idx) + wpe(arange(pos0, pos0+T)). */
void encoder_forward(float *out, const int *tokens, const float *wte,
                     const float *wpe, int B, int T, int C, int pos0);

/* out (N,C) = (inp - mean) / sqrt(var + eps) * w + b, per row; mean and
   rstd (N) are kept for the backward pass (either may be NULL).
   PyTorch: F.layer_norm(inp, (C,), w, b, eps). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C,
                       float eps);

/* out (N,OC) = inp (N,C) @ w (C,OC) + bias (OC, or NULL). w is in Hugging
   Face's Conv1D layout (in, out). PyTorch: torch.addmm(bias, inp, w).
   Batched rows go to the GEMM library; one row to a streaming GEMV. */
void matmul_forward(float *out, const float *inp, const float *w,
                    const float *bias, int N, int C, int OC);
/* The same, three plain loops: the reference the fast path is tested
   against. */
void matmul_forward_naive(float *out, const float *inp, const float *w,
                          const float *bias, int N, int C, int OC);

/* The precision of the batched matmuls (matmul_forward with N > 1,
   matmul_backward, lmhead_forward/backward) on the calling thread: float32,
   or with bf16 set, inputs rounded to bfloat16 and float32 sums (mixed-
   precision training, gemm.h). The trainer sets it for its own steps and
   restores it. */
void matmul_set_bf16(bool bf16);
bool matmul_bf16(void);
/* With bf16 set, weights inside [base, base + n) are read from bf16
   (bf16 + (w - base)) instead of being rounded on each use: the trainer's
   copy of its parameters. NULL base: none (calling thread only). */
void matmul_set_bf16_weights(const float *base, size_t n, const uint16_t *bf16);

/* The tied LM head: logits (N,V) = inp (N,C) @ wte (V,C)^T.
   PyTorch: F.linear(inp, wte). */
void lmhead_forward(float *logits, const float *inp, const float *wte, int N,
                    int C, int V);
void lmhead_forward_naive(float *logits, const float *inp, const float *wte,
                          int N, int C, int V);

/* Masked multi-head self-attention, after the c_attn projection and
   before c_proj. For each of B sequences, T new queries at positions
   past..past+T-1 (past = Tk - T) attend to the Tk keys at positions
   0..Tk-1, each query only to keys at or before its own position (the
   causal mask). Per head h (HS = C/NH channels):
     scores = q_h k_h^T / sqrt(HS); masked; att = softmax(scores);
     out_h = att v_h;  heads merged back into (T, C).
   q: row (b,t) at q + b*q_bstride + t*q_stride, heads at h*HS.
   k, v: row (b,s) at k + b*kv_bstride + s*kv_stride, heads at h*HS.
   out (B,T,C).
   att (B,NH,T,Tk) or NULL: when given, the softmax weights are stored
   (0 for masked keys) for the backward pass and visualisation; when NULL
   an online softmax is used and nothing of size T*Tk is kept.
   PyTorch: F.scaled_dot_product_attention(q, k, v, is_causal=True) for
   past = 0. */
void attention_forward(float *out, float *att, const float *q,
                       const float *k, const float *v, int B, int T, int Tk,
                       int C, int NH, size_t q_stride, size_t q_bstride,
                       size_t kv_stride, size_t kv_bstride);

/* GELU, tanh form (GPT-2's "gelu_new"):
   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). out and inp (N).
   PyTorch: F.gelu(inp, approximate="tanh"). */
void gelu_forward(float *out, const float *inp, size_t N);

/* Dropout, for training: out = inp * mask / (1 - p), each mask entry 0
   with probability p. The mask is a hash of (seed, index), so the
   backward pass regenerates it instead of storing it, and a run resumed
   from a checkpoint draws the same masks. out may alias inp.
   PyTorch: F.dropout(inp, p) (with another random stream). */
void dropout_forward(float *out, const float *inp, size_t N, float p,
                     uint64_t seed);
/* The backward of dropout_forward, in place: d (N) *= mask / (1 - p). */
void dropout_backward(float *d, size_t N, float p, uint64_t seed);

/* Attention dropout: recomputes out (B,T,C) = dropout(att) @ v from the
   softmax weights att (B,NH,T,T) that attention_forward stored (past =
   0, packed qkv rows (B,T,3C)); att itself is left as it was. */
void attention_dropout_forward(float *out, const float *att,
                               const float *qkv, int B, int T, int C, int NH,
                               float p, uint64_t seed);

/* out (N) = a + b: the residual connection. out may alias a. */
void residual_forward(float *out, const float *a, const float *b, size_t N);

/* losses (N) = -log softmax(logits[n])[targets[n]]; 0 where the target
   is -1. logits (N,V). PyTorch: F.cross_entropy(..., reduction="none",
   ignore_index=-1). */
void crossentropy_forward(float *losses, const float *logits,
                          const int *targets, int N, int V);

/* log softmax of one row: out (V) = x - logsumexp(x). out may alias x. */
void log_softmax(float *out, const float *x, int V);

/* ------------------------------------------------------------ backward
   Each _backward adds (+=) into the gradients it is given, so a tensor
   used twice (wte: embedding and LM head) collects both; NULL skips a
   gradient. Shapes as in the forward twin. */

/* dwte (V,C), dwpe (maxT,C) from dout (B,T,C) */
void encoder_backward(float *dwte, float *dwpe, const float *dout,
                      const int *tokens, int B, int T, int C);

/* dinp (N,C), dw (C), db (C) from dout (N,C); mean, rstd from forward */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C);

/* dinp (N,C) += dout @ w^T; dw (C,OC) += inp^T @ dout; db (OC) += colsum */
void matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC);
void matmul_backward_naive(float *dinp, float *dw, float *db,
                           const float *dout, const float *inp, const float *w,
                           int N, int C, int OC);

/* dinp (N,C) += dlogits @ wte; dwte (V,C) += dlogits^T @ inp */
void lmhead_backward(float *dinp, float *dwte, const float *dlogits,
                     const float *inp, const float *wte, int N, int C, int V);

/* dqkv (B,T,3C) from dout (B,T,C), with qkv and the stored softmax att
   (B,NH,T,T) of attention_forward (past = 0, packed qkv rows). With
   p_drop > 0 the forward used attention_dropout_forward(p_drop, seed). */
void attention_backward(float *dqkv, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH,
                        float p_drop, uint64_t seed);

/* dinp (N) += gelu'(inp) * dout */
void gelu_backward(float *dinp, const float *inp, const float *dout,
                   size_t N);

/* dlogits (N,V) = (softmax(logits) - onehot(target)) * dloss, where dloss
   is the weight of each row in the mean loss (0 for target -1). Writes,
   does not add; dlogits may alias logits. */
void crossentropy_softmax_backward(float *dlogits, const float *logits,
                                   const int *targets, float dloss, int N,
                                   int V);

/* Both at once, for training: losses (N) as crossentropy_forward and
   dlogits as crossentropy_softmax_backward, one exp per logit. dlogits
   may alias logits. */
void crossentropy_fused(float *losses, float *dlogits, const float *logits,
                        const int *targets, float dloss, int N, int V);

#endif
