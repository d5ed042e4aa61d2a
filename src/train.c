/* train.c: training GPT-2. The forward pass keeps every activation of
   every layer (and the attention weights), the mean cross-entropy gives
   the loss, the backward pass runs the blocks in reverse with each op's
   backward twin from ops.c, and AdamW updates the parameters. Parameters,
   gradients and AdamW's m and v are four blocks of the same layout. */
#include "internal.h"

#include <math.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"

struct gpt2_trainer {
    gpt2_model *m;
    gpt2_train_params p;
    int B, T;
    size_t n_params;
    float *params;        /* == m->owned */
    float *grads, *adam_m, *adam_v;
    /* --dtype bf16: the parameters rounded to bf16, which the matmuls
       read instead of rounding the weights on every use (twice a step).
       AdamW writes it beside the float32 weights; it is remade from them
       before a step when anything else may have written them. */
    uint16_t *params_bf16;
    bool bf16_stale;
    int steps;            /* updates done */
    int micro;            /* micro-batches since the last update */
    uint64_t drop_seed;   /* this micro-batch's dropout stream, or 0 */
    /* activations: one gpt2__block_acts per layer, all kept */
    float *act_mem;
    float *encoded;       /* (B,T,C) */
    gpt2__block_acts *act;/* (L) */
    float *lnf, *lnf_mean, *lnf_rstd; /* (B,T,C), (B,T), (B,T) */
    float *logits;        /* (B,T,V); becomes dlogits in backward */
    float *losses;        /* (B,T) */
    /* gradient scratch for one block, reused layer after layer */
    float *grad_mem;
    float *dres;          /* (B,T,C) gradient of the residual stream */
    gpt2__block_acts dact;/* gradients of one block's activations */
    float *dlnf;          /* (B,T,C) */
    int *targets;         /* (B,T) copy for the backward pass */
};

int gpt2_bf16_hardware(void) { return gpt2__gemm_bf16_available(); }

gpt2_train_params gpt2_train_defaults(void) {
    gpt2_train_params p = {.batch_size = 4,
                           .seq_len = 0,
                           .lr = 6e-4f,
                           .min_lr = -1.0f,
                           .warmup_steps = 0,
                           .total_steps = 1000,
                           .weight_decay = 0.1f,
                           .beta1 = 0.9f,
                           .beta2 = 0.95f,
                           .eps = 1e-8f,
                           .grad_clip = 1.0f,
                           .dropout = 0.0f,
                           .seed = 1337};
    return p;
}

float gpt2_train_lr(const gpt2_train_params *p, int step) {
    float min_lr = p->min_lr >= 0 ? p->min_lr : p->lr / 10.0f;
    if (step < p->warmup_steps) return p->lr * (float)(step + 1) / (float)p->warmup_steps;
    if (step >= p->total_steps) return min_lr;
    int span = p->total_steps - p->warmup_steps;
    float ratio = span > 0 ? (float)(step - p->warmup_steps) / (float)span : 1.0f;
    float coeff = 0.5f * (1.0f + cosf((float)M_PI * ratio)); /* 1 -> 0 */
    return min_lr + coeff * (p->lr - min_lr);
}

/* Training writes the weights, so they must be float32 in memory, in one
   block in canonical order (an allreduce or AdamW takes it whole). A
   mapped, 16-bit or quantized model is copied (dequantized) into one. */
static bool is_canonical_block(const gpt2_model *m) {
    if (!m->owned) return false;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensor[i] != m->owned + m->specs[i].offset) return false;
    return true;
}

static gpt2_status make_owned(gpt2_model *m) {
    if (is_canonical_block(m)) return GPT2_OK;
    float *block = gpt2__alloc_huge(m->n_params * sizeof(float), "model parameters");
    if (!block) return GPT2_ERR_NOMEM;
    for (int i = 0; i < m->n_tensors; i++) gpt2__tensor_f32(m, i, block + m->specs[i].offset);
    for (int i = 0; i < m->n_tensors; i++) m->tensor[i] = block + m->specs[i].offset;
    gpt2__free_aligned(m->owned);
    gpt2__free_aligned(m->converted);
    m->owned = block;
    m->converted = NULL;
    m->converted_bytes = 0;
    m->mapped = false;
    m->weight_dtype = GPT2_DTYPE_F32;
    gpt2__st_close(&m->st);
    gpt2__model_bind(m);
    return GPT2_OK;
}

static gpt2_status check_params(const gpt2_train_params *p, const gpt2_config *c) {
    if (p->matmul_dtype != GPT2_DTYPE_F32 && p->matmul_dtype != GPT2_DTYPE_BF16)
        return gpt2__fail(GPT2_ERR_ARG, "trainer: matmul_dtype %s: only F32 or BF16 "
                          "(mixed precision)", gpt2_dtype_name(p->matmul_dtype));
    if (p->batch_size < 1 || p->seq_len < 1 || p->seq_len > c->n_ctx)
        return gpt2__fail(GPT2_ERR_ARG,
                          "trainer: batch_size %d and seq_len %d must be >= 1 and "
                          "seq_len <= n_ctx %d",
                          p->batch_size, p->seq_len, c->n_ctx);
    if (!(p->lr >= 0) || !(p->weight_decay >= 0) || !(p->beta1 >= 0 && p->beta1 < 1) ||
        !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) || !(p->grad_clip >= 0) ||
        !(p->dropout >= 0 && p->dropout < 1) || p->warmup_steps < 0 || p->total_steps < 0)
        return gpt2__fail(GPT2_ERR_ARG,
                          "trainer: invalid hyperparameters (lr %g, weight_decay %g, "
                          "betas %g %g, eps %g, clip %g, dropout %g, warmup %d, steps %d)",
                          p->lr, p->weight_decay, p->beta1, p->beta2, p->eps,
                          p->grad_clip, p->dropout, p->warmup_steps, p->total_steps);
    return GPT2_OK;
}

gpt2_status gpt2_trainer_new(gpt2_model *m, const gpt2_train_params *params,
                             gpt2_trainer **out) {
    *out = NULL;
    const gpt2_config *c = &m->cfg;
    gpt2_train_params p = params ? *params : gpt2_train_defaults();
    if (p.seq_len == 0) p.seq_len = c->n_ctx;
    gpt2_status st = check_params(&p, c);
    if (st) return st;
    if ((st = make_owned(m))) return st;

    gpt2_trainer *tr = gpt2__calloc(1, sizeof *tr, "trainer");
    if (!tr) return GPT2_ERR_NOMEM;
    tr->m = m;
    tr->p = p;
    tr->B = p.batch_size;
    tr->T = p.seq_len;
    tr->n_params = m->n_params;
    tr->params = m->owned;
    size_t np = m->n_params;
    tr->grads = gpt2__alloc_huge(np * sizeof(float), "gradients");
    tr->adam_m = gpt2__alloc_huge(np * sizeof(float), "AdamW m");
    tr->adam_v = gpt2__alloc_huge(np * sizeof(float), "AdamW v");
    tr->act = gpt2__calloc((size_t)c->n_layer, sizeof *tr->act, "trainer activations");
    size_t rows = (size_t)tr->B * tr->T, C = (size_t)c->n_embd, V = (size_t)c->vocab_size;
    size_t per_layer = gpt2__block_acts_size(c, tr->B, tr->T, tr->T, true);
    size_t n_act = rows * C + per_layer * (size_t)c->n_layer + rows * C + 2 * rows +
                   rows * V + rows;
    size_t n_grad = rows * C + gpt2__block_acts_size(c, tr->B, tr->T, tr->T, false) + rows * C;
    tr->act_mem = gpt2__alloc_huge(n_act * sizeof(float), "trainer activations");
    tr->grad_mem = gpt2__alloc_huge(n_grad * sizeof(float), "trainer gradients");
    tr->targets = gpt2__calloc(rows, sizeof(int), "trainer targets");
    bool bf16 = p.matmul_dtype == GPT2_DTYPE_BF16;
    if (bf16) tr->params_bf16 = gpt2__alloc_huge(np * sizeof(uint16_t), "bf16 weights");
    tr->bf16_stale = true;
    if (!tr->grads || !tr->adam_m || !tr->adam_v || !tr->act || !tr->act_mem ||
        !tr->grad_mem || !tr->targets || (bf16 && !tr->params_bf16)) {
        gpt2_trainer_free(tr);
        return GPT2_ERR_NOMEM;
    }
    memset(tr->grads, 0, np * sizeof(float));
    memset(tr->adam_m, 0, np * sizeof(float));
    memset(tr->adam_v, 0, np * sizeof(float));
    float *q = tr->act_mem;
    tr->encoded = q, q += rows * C;
    for (int l = 0; l < c->n_layer; l++) {
        gpt2__block_acts_bind(&tr->act[l], q, c, tr->B, tr->T, tr->T, true);
        q += per_layer;
    }
    tr->lnf = q, q += rows * C;
    tr->lnf_mean = q, q += rows;
    tr->lnf_rstd = q, q += rows;
    tr->logits = q, q += rows * V;
    tr->losses = q;
    q = tr->grad_mem;
    tr->dres = q, q += rows * C;
    gpt2__block_acts_bind(&tr->dact, q, c, tr->B, tr->T, tr->T, false);
    q += gpt2__block_acts_size(c, tr->B, tr->T, tr->T, false);
    tr->dlnf = q;
    *out = tr;
    return GPT2_OK;
}

void gpt2_trainer_free(gpt2_trainer *tr) {
    if (!tr) return;
    gpt2__free_aligned(tr->grads);
    gpt2__free_aligned(tr->adam_m);
    gpt2__free_aligned(tr->adam_v);
    gpt2__free_aligned(tr->params_bf16);
    gpt2__free_aligned(tr->act_mem);
    gpt2__free_aligned(tr->grad_mem);
    free(tr->act);
    free(tr->targets);
    free(tr);
}

size_t gpt2_trainer_num_params(const gpt2_trainer *tr) { return tr->n_params; }
gpt2_model *gpt2__trainer_model(gpt2_trainer *tr) { return tr->m; }
/* The caller may write the weights through this pointer: the bf16 copy is
   remade before the next step. */
float *gpt2_trainer_params(gpt2_trainer *tr) {
    tr->bf16_stale = true;
    return tr->params;
}
float *gpt2_trainer_grads(gpt2_trainer *tr) { return tr->grads; }
float *gpt2_trainer_adam_m(gpt2_trainer *tr) { return tr->adam_m; }
float *gpt2_trainer_adam_v(gpt2_trainer *tr) { return tr->adam_v; }
int gpt2_trainer_steps_done(const gpt2_trainer *tr) { return tr->steps; }
void gpt2_trainer_set_steps_done(gpt2_trainer *tr, int steps) {
    tr->steps = steps;
    tr->micro = 0;
}

/* ------------------------------------------------------------- forward */

static gpt2_status check_batch(const gpt2_trainer *tr, const int *tokens,
                               const int *targets) {
    int V = tr->m->cfg.vocab_size;
    size_t rows = (size_t)tr->B * tr->T;
    for (size_t i = 0; i < rows; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return gpt2__fail(GPT2_ERR_ARG, "trainer: token %d at index %zu outside [0, %d)",
                              tokens[i], i, V);
        if (targets[i] < -1 || targets[i] >= V)
            return gpt2__fail(GPT2_ERR_ARG, "trainer: target %d at index %zu outside [0, %d)",
                              targets[i], i, V);
    }
    return GPT2_OK;
}

static uint64_t mix64(uint64_t a, uint64_t b) {
    uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The dropout seeds of this micro-batch: a function of (seed, update
   count, micro-batch index) only, so a resumed run draws the same masks.
   Layer l uses block_seed(l); the embedding uses block_seed(-1). */
static uint64_t block_seed(const gpt2_trainer *tr, int l) {
    return mix64(tr->drop_seed, (uint64_t)(l + 1));
}

/* Forward keeping everything; returns the mean loss and the count of
   counted targets. With grad_scale > 0, the gradient of grad_scale *
   mean loss with respect to the logits replaces them (one fused pass),
   and dropout is on (as in GPT-2's training: after the embedding, on
   the attention weights, and on both residual branches). */
static float forward(gpt2_trainer *tr, const int *tokens, const int *targets,
                     float grad_scale, size_t *counted) {
    const gpt2_model *m = tr->m;
    int B = tr->B, T = tr->T, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    int N = B * T;
    size_t n = 0;
    for (int i = 0; i < N; i++) n += targets[i] >= 0;
    *counted = n;
    bool dropping = grad_scale > 0 && tr->p.dropout > 0.0f;
    tr->drop_seed = dropping ? mix64(mix64(tr->p.seed, (uint64_t)tr->steps), (uint64_t)tr->micro) : 0;
    encoder_forward(tr->encoded, tokens, m->wte, m->wpe, B, T, C, 0);
    if (dropping)
        dropout_forward(tr->encoded, tr->encoded, (size_t)N * C, tr->p.dropout, block_seed(tr, -1));
    const float *x = tr->encoded;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        gpt2__dropout drop = {tr->p.dropout, block_seed(tr, l)};
        gpt2__block_forward(m, l, &tr->act[l], x, B, T, 0, NULL, NULL, dropping ? &drop : NULL);
        x = tr->act[l].residual3;
    }
    gpt2__head_forward(m, tr->lnf, tr->lnf_mean, tr->lnf_rstd, tr->logits, x, N);
    if (grad_scale > 0 && n > 0)
        crossentropy_fused(tr->losses, tr->logits, tr->logits, targets,
                           grad_scale / (float)n, N, V);
    else
        crossentropy_forward(tr->losses, tr->logits, targets, N, V);
    double sum = 0.0;
    for (int i = 0; i < N; i++)
        if (targets[i] >= 0) sum += tr->losses[i];
    return n ? (float)(sum / (double)n) : 0.0f;
}

gpt2_status gpt2_trainer_eval(gpt2_trainer *tr, const int *tokens,
                              const int *targets, float *loss) {
    gpt2_status st = check_batch(tr, tokens, targets);
    if (st) return st;
    size_t n;
    bool was = matmul_bf16();
    matmul_set_bf16(tr->p.matmul_dtype == GPT2_DTYPE_BF16);
    *loss = forward(tr, tokens, targets, 0.0f, &n);
    matmul_set_bf16(was);
    if (n == 0) *loss = NAN;
    return GPT2_OK;
}

/* ------------------------------------------------------------ backward */

/* The gradient of every parameter tensor of layer l, in the grad block. */
static float *grad_of(gpt2_trainer *tr, int l, int which) {
    return tr->grads + tr->m->specs[gpt2__tensor_index(l, which)].offset;
}

/* One block in reverse. dres holds the gradient of the block's output on
   entry and of its input x on return (the residual stream carries it
   through; each branch adds its own part). */
static void block_backward(gpt2_trainer *tr, int l, const float *x) {
    const gpt2_model *m = tr->m;
    const gpt2__layer *w = &m->layer[l];
    const gpt2__block_acts *a = &tr->act[l];
    const gpt2__block_acts *d = &tr->dact;
    int B = tr->B, T = tr->T, C = m->cfg.n_embd, NH = m->cfg.n_head, N = B * T;
    size_t NC = (size_t)N * C;

    float p = tr->drop_seed ? tr->p.dropout : 0.0f;
    uint64_t seed = block_seed(tr, l);

    /* residual3 = residual2 + fcproj: both get dres; the MLP first
       (through the dropout on its output, if any) */
    const float *dfcproj = tr->dres;
    if (p > 0) {
        memcpy(d->fcproj, tr->dres, sizeof(float) * NC);
        dropout_backward(d->fcproj, NC, p, GPT2__DROP_FCPROJ(seed));
        dfcproj = d->fcproj;
    }
    memset(d->fch_gelu, 0, sizeof(float) * NC * 4);
    memset(d->fch, 0, sizeof(float) * NC * 4);
    memset(d->ln2, 0, sizeof(float) * NC);
    matmul_backward(d->fch_gelu, grad_of(tr, l, GPT2__FCPROJ_W), grad_of(tr, l, GPT2__FCPROJ_B),
                    dfcproj, a->fch_gelu, w->fcproj_w, N, 4 * C, C);
    gelu_backward(d->fch, a->fch, d->fch_gelu, NC * 4);
    matmul_backward(d->ln2, grad_of(tr, l, GPT2__FC_W), grad_of(tr, l, GPT2__FC_B), d->fch,
                    a->ln2, w->fc_w, N, C, 4 * C);
    layernorm_backward(tr->dres, grad_of(tr, l, GPT2__LN2_W), grad_of(tr, l, GPT2__LN2_B),
                       d->ln2, a->residual2, w->ln2_w, a->ln2_mean, a->ln2_rstd, N, C);

    /* residual2 = x + attproj: the attention branch */
    const float *dattproj = tr->dres;
    if (p > 0) {
        memcpy(d->attproj, tr->dres, sizeof(float) * NC);
        dropout_backward(d->attproj, NC, p, GPT2__DROP_ATTPROJ(seed));
        dattproj = d->attproj;
    }
    memset(d->atty, 0, sizeof(float) * NC);
    memset(d->qkv, 0, sizeof(float) * NC * 3);
    memset(d->ln1, 0, sizeof(float) * NC);
    matmul_backward(d->atty, grad_of(tr, l, GPT2__ATTPROJ_W), grad_of(tr, l, GPT2__ATTPROJ_B),
                    dattproj, a->atty, w->attproj_w, N, C, C);
    attention_backward(d->qkv, d->atty, a->qkv, a->att, B, T, C, NH, p, GPT2__DROP_ATTN(seed));
    matmul_backward(d->ln1, grad_of(tr, l, GPT2__QKV_W), grad_of(tr, l, GPT2__QKV_B), d->qkv,
                    a->ln1, w->qkv_w, N, C, 3 * C);
    layernorm_backward(tr->dres, grad_of(tr, l, GPT2__LN1_W), grad_of(tr, l, GPT2__LN1_B),
                       d->ln1, x, w->ln1_w, a->ln1_mean, a->ln1_rstd, N, C);
}

static gpt2_status forward_backward(gpt2_trainer *tr, const int *tokens,
                                   const int *targets, float scale, float *loss) {
    gpt2_status st = check_batch(tr, tokens, targets);
    if (st) return st;
    const gpt2_model *m = tr->m;
    int B = tr->B, T = tr->T, C = m->cfg.n_embd, V = m->cfg.vocab_size, L = m->cfg.n_layer;
    int N = B * T;
    if (!(scale > 0) || !isfinite(scale))
        return gpt2__fail(GPT2_ERR_ARG, "trainer: loss scale %g must be > 0", scale);
    size_t counted;
    float mean = forward(tr, tokens, targets, scale, &counted);
    tr->micro++;
    if (loss) *loss = counted ? mean : NAN;
    if (counted == 0) return GPT2_OK; /* nothing to learn from */
    float *dlogits = tr->logits; /* forward left d(scale * loss)/dlogits there */

    /* the tied head: wte gets a gradient here and in the embedding */
    const gpt2__tensor_spec *sp = m->specs;
    float *dwte = tr->grads + sp[GPT2__WTE].offset;
    memset(tr->dlnf, 0, sizeof(float) * (size_t)N * C);
    lmhead_backward(tr->dlnf, dwte, dlogits, tr->lnf, m->wte, N, C, V);
    memset(tr->dres, 0, sizeof(float) * (size_t)N * C);
    const float *xl = tr->act[L - 1].residual3;
    layernorm_backward(tr->dres, tr->grads + sp[GPT2__LNF_W(L)].offset,
                       tr->grads + sp[GPT2__LNF_B(L)].offset, tr->dlnf, xl, m->lnf_w,
                       tr->lnf_mean, tr->lnf_rstd, N, C);

    for (int l = L - 1; l >= 0; l--)
        block_backward(tr, l, l == 0 ? tr->encoded : tr->act[l - 1].residual3);

    if (tr->drop_seed)
        dropout_backward(tr->dres, (size_t)N * C, tr->p.dropout, block_seed(tr, -1));
    encoder_backward(dwte, tr->grads + sp[GPT2__WPE].offset, tr->dres, tokens, B, T, C);
    return GPT2_OK;
}

/* The bf16 copy of all parameters, from the float32 ones, rounded as the
   matmuls round their inputs */
static void refresh_bf16(gpt2_trainer *tr) {
    gpt2__bf16_round_n(tr->params_bf16, tr->params, tr->n_params);
    tr->bf16_stale = false;
}

/* The step in the trainer's matmul precision (the thread's setting is
   restored after, so sessions on this thread keep theirs). */
gpt2_status gpt2_trainer_forward_backward(gpt2_trainer *tr, const int *tokens,
                                          const int *targets, float scale,
                                          float *loss) {
    bool was = matmul_bf16();
    bool bf16 = tr->p.matmul_dtype == GPT2_DTYPE_BF16;
    matmul_set_bf16(bf16);
    if (bf16 && tr->params_bf16) {
        if (tr->bf16_stale) refresh_bf16(tr);
        matmul_set_bf16_weights(tr->params, tr->n_params, tr->params_bf16);
    }
    gpt2_status st = forward_backward(tr, tokens, targets, scale, loss);
    matmul_set_bf16_weights(NULL, 0, NULL);
    matmul_set_bf16(was);
    return st;
}

/* ------------------------------------------------------------- update */

/* The sum of squares of one block, in double: 16 running sums, element
   i going to sum i % 16, added up in a fixed order at the end. The lanes
   are independent, so the compiler may vectorise the loop without
   reordering any addition (one running sum would be a chain of dependent
   double adds, four cycles each: 40 ms a step for 124M parameters). */
#define SQ_LANES 16
GPT2_CLONES
static double block_squares(const float *x, size_t n) {
    double lane[SQ_LANES] = {0};
    size_t i = 0;
    for (; i + SQ_LANES <= n; i += SQ_LANES)
        for (int j = 0; j < SQ_LANES; j++) lane[j] += (double)x[i + j] * x[i + j];
    for (int j = 0; i < n; i++, j++) lane[j] += (double)x[i] * x[i];
    double s = 0.0;
    for (int j = 0; j < SQ_LANES; j++) s += lane[j];
    return s;
}

/* The sum of squares in fixed blocks added in a fixed order, so the norm
   (and the clipping it decides) is the same bit for bit on every run with
   any number of threads: a resumed run must repeat an uninterrupted one
   exactly. */
static double sum_squares(const float *x, size_t n) {
    enum { BLOCK = 1 << 16 };
    size_t nb = (n + BLOCK - 1) / BLOCK;
    double *part = malloc(sizeof(double) * (nb ? nb : 1));
    if (!part) { /* serial, same blocks, same order */
        double s = 0.0;
        for (size_t b = 0; b < nb; b++) {
            size_t end = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
            s += block_squares(x + b * BLOCK, end - b * BLOCK);
        }
        return s;
    }
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t end = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        part[b] = block_squares(x + b * BLOCK, end - b * BLOCK);
    }
    double s = 0.0;
    for (size_t b = 0; b < nb; b++) s += part[b];
    free(part);
    return s;
}

typedef struct {
    float lr, b1, b2, eps, bc1, bc2, clip, wd;
} adamw_args;

/* AdamW over n parameters (as torch.optim.AdamW), zeroing their gradient
   and, with wb, writing the new weights rounded to bf16 too. It streams
   four arrays and is memory-bound once vectorised. */
GPT2_CLONES
static void adamw_piece(const adamw_args *a, float *restrict w, float *restrict g,
                        float *restrict mm, float *restrict vv,
                        uint16_t *restrict wb, size_t n) {
    const float lr = a->lr, b1 = a->b1, b2 = a->b2, eps = a->eps, clip = a->clip;
    const float bc1 = a->bc1, bc2 = a->bc2, wd = a->wd;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * clip;
        mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
        vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
        float mhat = mm[i] / bc1, vhat = vv[i] / bc2;
        w[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * w[i]);
        g[i] = 0.0f;
    }
    /* the rounding the matmuls would do (the hardware's, where it flushes
       subnormals) */
    if (wb) gpt2__bf16_round_n(wb, w, n);
}

gpt2_status gpt2_trainer_update(gpt2_trainer *tr, float lr, float *grad_norm) {
    const gpt2_train_params *p = &tr->p;
    size_t np = tr->n_params;
    float norm = (float)sqrt(sum_squares(tr->grads, np));
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return gpt2__fail(GPT2_ERR_ARG, "trainer_update: gradient norm is %g (diverged?)", norm);
    /* as torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6)
       when that is below 1 */
    float clip = 1.0f;
    if (p->grad_clip > 0) {
        float coef = p->grad_clip / (norm + 1e-6f);
        if (coef < 1.0f) clip = coef;
    }

    int t = ++tr->steps;
    tr->micro = 0;
    float bc1 = 1.0f - powf(p->beta1, (float)t), bc2 = 1.0f - powf(p->beta2, (float)t);
    adamw_args a = {.lr = lr, .b1 = p->beta1, .b2 = p->beta2, .eps = p->eps,
                    .bc1 = bc1, .bc2 = bc2, .clip = clip};
    uint16_t *wb = tr->params_bf16 && !tr->bf16_stale ? tr->params_bf16 : NULL;
    for (int k = 0; k < tr->m->n_tensors; k++) {
        const gpt2__tensor_spec *s = &tr->m->specs[k];
        /* decoupled weight decay on matrices only, as nanoGPT */
        a.wd = s->decay ? p->weight_decay : 0.0f;
        size_t o = s->offset, n = s->numel;
        enum { PIECE = 1 << 14 };
        size_t pieces = (n + PIECE - 1) / PIECE;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < pieces; i++) {
            size_t i0 = o + i * PIECE, len = n - i * PIECE < PIECE ? n - i * PIECE : PIECE;
            adamw_piece(&a, tr->params + i0, tr->grads + i0, tr->adam_m + i0,
                        tr->adam_v + i0, wb ? wb + i0 : NULL, len);
        }
    }
    return GPT2_OK;
}
