/* model.c: the GPT-2 itself. Config, parameter layout, random init, and
   the forward pass: token + position embedding (the "encoder" step), L
   decoder blocks (ln_1, masked self-attention, residual, ln_2, MLP,
   residual), ln_f, and the LM head tied to wte. Loading and saving files
   live in model_io.c. */
#include "internal.h"

#include <math.h>
#include <string.h>

#include "ops.h"

/* ---------------------------------------------------------------- config */

gpt2_status gpt2_config_preset(const char *name, gpt2_config *out) {
    static const struct {
        const char *name;
        int L, NH, C;
    } presets[] = {
        {"gpt2", 12, 12, 768},
        {"gpt2-medium", 24, 16, 1024},
        {"gpt2-large", 36, 20, 1280},
        {"gpt2-xl", 48, 25, 1600},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (name && strcmp(name, presets[i].name) == 0) {
            out->n_layer = presets[i].L;
            out->n_head = presets[i].NH;
            out->n_embd = presets[i].C;
            out->n_ctx = 1024;
            out->vocab_size = 50257;
            out->layer_norm_epsilon = 1e-5f;
            return GPT2_OK;
        }
    }
    return gpt2__fail(GPT2_ERR_ARG,
                      "config_preset: unknown config '%s' (expected gpt2, "
                      "gpt2-medium, gpt2-large or gpt2-xl)",
                      name ? name : "(null)");
}

gpt2_status gpt2_config_check(const gpt2_config *c) {
    if (c->n_layer <= 0 || c->n_head <= 0 || c->n_embd <= 0 || c->n_ctx <= 0 ||
        c->vocab_size <= 0)
        return gpt2__fail(GPT2_ERR_ARG,
                          "config: every size must be positive (n_layer=%d "
                          "n_head=%d n_embd=%d n_ctx=%d vocab_size=%d)",
                          c->n_layer, c->n_head, c->n_embd, c->n_ctx,
                          c->vocab_size);
    if (c->n_embd % c->n_head != 0)
        return gpt2__fail(GPT2_ERR_ARG,
                          "config: n_embd=%d is not a multiple of n_head=%d",
                          c->n_embd, c->n_head);
    if (!(c->layer_norm_epsilon > 0) || !isfinite(c->layer_norm_epsilon))
        return gpt2__fail(GPT2_ERR_ARG, "config: layer_norm_epsilon=%g must be > 0",
                          c->layer_norm_epsilon);
    /* Keep every index of every buffer within int32 row counts and size_t
       byte counts: 4C * C and V * C must not overflow, and n_layer,
       n_ctx stay modest. */
    if (c->n_embd > 65536 || c->n_layer > 4096 || c->n_ctx > 1 << 20 ||
        c->vocab_size > 1 << 24 || c->n_head > c->n_embd)
        return gpt2__fail(GPT2_ERR_ARG,
                          "config: sizes too large (n_layer=%d n_embd=%d "
                          "n_ctx=%d vocab_size=%d)",
                          c->n_layer, c->n_embd, c->n_ctx, c->vocab_size);
    return GPT2_OK;
}

/* ------------------------------------------------------ parameter layout */

static const struct {
    const char *suffix;
    int out_mult;   /* 2-D: shape (in_mult*C, out_mult*C); 1-D: (out_mult*C) */
    int in_mult;    /* 0 for 1-D tensors */
    bool residual;
} per_layer[GPT2__PER_LAYER] = {
    [GPT2__LN1_W] = {"ln_1.weight", 1, 0, false},
    [GPT2__LN1_B] = {"ln_1.bias", 1, 0, false},
    [GPT2__QKV_W] = {"attn.c_attn.weight", 3, 1, false},
    [GPT2__QKV_B] = {"attn.c_attn.bias", 3, 0, false},
    [GPT2__ATTPROJ_W] = {"attn.c_proj.weight", 1, 1, true},
    [GPT2__ATTPROJ_B] = {"attn.c_proj.bias", 1, 0, false},
    [GPT2__LN2_W] = {"ln_2.weight", 1, 0, false},
    [GPT2__LN2_B] = {"ln_2.bias", 1, 0, false},
    [GPT2__FC_W] = {"mlp.c_fc.weight", 4, 1, false},
    [GPT2__FC_B] = {"mlp.c_fc.bias", 4, 0, false},
    [GPT2__FCPROJ_W] = {"mlp.c_proj.weight", 1, 4, true},
    [GPT2__FCPROJ_B] = {"mlp.c_proj.bias", 1, 0, false},
};

static void set_spec(gpt2__tensor_spec *s, const char *name, int ndim, int d0,
                     int d1, size_t *offset) {
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = ndim == 2 ? d1 : 1;
    s->numel = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    s->offset = *offset;
    s->decay = ndim == 2;
    s->residual = false;
    *offset += s->numel;
}

size_t gpt2__tensor_specs(const gpt2_config *c, gpt2__tensor_spec *specs) {
    int C = c->n_embd, L = c->n_layer;
    size_t off = 0;
    set_spec(&specs[GPT2__WTE], "wte.weight", 2, c->vocab_size, C, &off);
    set_spec(&specs[GPT2__WPE], "wpe.weight", 2, c->n_ctx, C, &off);
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < GPT2__PER_LAYER; k++) {
            char name[48];
            snprintf(name, sizeof name, "h.%d.%s", l, per_layer[k].suffix);
            gpt2__tensor_spec *s = &specs[gpt2__tensor_index(l, k)];
            if (per_layer[k].in_mult)
                set_spec(s, name, 2, per_layer[k].in_mult * C,
                         per_layer[k].out_mult * C, &off);
            else
                set_spec(s, name, 1, per_layer[k].out_mult * C, 0, &off);
            s->residual = per_layer[k].residual;
        }
    }
    set_spec(&specs[GPT2__LNF_W(L)], "ln_f.weight", 1, C, 0, &off);
    set_spec(&specs[GPT2__LNF_B(L)], "ln_f.bias", 1, C, 0, &off);
    return off;
}

gpt2_status gpt2__model_alloc(const gpt2_config *cfg, bool alloc_block,
                              gpt2_model **out) {
    *out = NULL;
    gpt2_status st = gpt2_config_check(cfg);
    if (st) return st;
    gpt2_model *m = gpt2__calloc(1, sizeof *m, "model");
    if (!m) return GPT2_ERR_NOMEM;
    m->cfg = *cfg;
    m->n_tensors = GPT2__N_TENSORS(cfg->n_layer);
    m->specs = gpt2__calloc((size_t)m->n_tensors, sizeof *m->specs, "model specs");
    m->tensor = gpt2__calloc((size_t)m->n_tensors, sizeof *m->tensor, "model tensors");
    m->layer = gpt2__calloc((size_t)cfg->n_layer, sizeof *m->layer, "model layers");
    m->stored = gpt2__calloc((size_t)m->n_tensors, sizeof *m->stored, "model tensors");
    if (!m->specs || !m->tensor || !m->layer || !m->stored) {
        gpt2_model_free(m);
        return GPT2_ERR_NOMEM;
    }
    m->n_params = gpt2__tensor_specs(cfg, m->specs);
    m->file_dtype = GPT2_DTYPE_F32;
    m->weight_dtype = GPT2_DTYPE_F32;
    if (alloc_block) {
        size_t bytes;
        if (!gpt2__mul_ok(m->n_params, sizeof(float), &bytes)) {
            gpt2_model_free(m);
            return gpt2__fail(GPT2_ERR_NOMEM, "model: %zu parameters overflow", m->n_params);
        }
        m->owned = gpt2__alloc_huge(bytes, "model parameters");
        if (!m->owned) {
            gpt2_model_free(m);
            return GPT2_ERR_NOMEM;
        }
        memset(m->owned, 0, bytes);
        for (int i = 0; i < m->n_tensors; i++) m->tensor[i] = m->owned + m->specs[i].offset;
        gpt2__model_bind(m);
    }
    *out = m;
    return GPT2_OK;
}

void gpt2_model_free(gpt2_model *m) {
    if (!m) return;
    gpt2__free_aligned(m->owned);
    gpt2__free_aligned(m->converted);
    gpt2__st_close(&m->st);
    gpt2_tokenizer_free(m->tok);
    free(m->specs);
    free(m->tensor);
    free(m->layer);
    free(m->stored);
    free(m);
}

/* ------------------------------------------------------------ accessors */

const gpt2_config *gpt2_model_config(const gpt2_model *m) { return &m->cfg; }
const gpt2_tokenizer *gpt2_model_tokenizer(const gpt2_model *m) { return m->tok; }
void gpt2_model_set_tokenizer(gpt2_model *m, gpt2_tokenizer *t) {
    if (m->tok != t) gpt2_tokenizer_free(m->tok);
    m->tok = t;
}
gpt2_dtype gpt2_model_file_dtype(const gpt2_model *m) { return m->file_dtype; }
int gpt2_model_is_mapped(const gpt2_model *m) { return m->mapped; }
size_t gpt2_model_num_params(const gpt2_model *m) { return m->n_params; }
int gpt2_model_num_tensors(const gpt2_model *m) { return m->n_tensors; }

/* ------------------------------------------------------------ random init */

/* splitmix64 seeds xoshiro-style state; Box-Muller gives normals. The
   stream depends only on the seed, so the same seed gives the same model
   on every machine. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *x) {
    return ((splitmix64(x) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static void fill_normal(float *p, size_t n, float std, uint64_t *rng) {
    for (size_t i = 0; i < n; i += 2) {
        double u1 = uniform01(rng), u2 = uniform01(rng);
        double r = sqrt(-2.0 * log(u1));
        p[i] = (float)(r * cos(2 * M_PI * u2) * std);
        if (i + 1 < n) p[i + 1] = (float)(r * sin(2 * M_PI * u2) * std);
    }
}

gpt2_status gpt2_model_init(const gpt2_config *c, uint64_t seed, gpt2_model **out) {
    gpt2_model *m;
    gpt2_status st = gpt2__model_alloc(c, true, &m);
    if (st) return st;
    float resid_std = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2__tensor_spec *s = &m->specs[i];
        /* each tensor has its own stream, so adding layers does not shift
           the weights of the first ones */
        uint64_t rng = seed * 0x100000001b3ull + (uint64_t)i * 0x9e3779b97f4a7c15ull;
        if (s->ndim == 2)
            fill_normal(m->tensor[i], s->numel, s->residual ? resid_std : 0.02f, &rng);
        else if (strstr(s->name, "ln_") && strstr(s->name, ".weight"))
            for (size_t j = 0; j < s->numel; j++) m->tensor[i][j] = 1.0f;
        /* biases stay 0 */
    }
    *out = m;
    return GPT2_OK;
}

/* ---------------------------------------------------------- forward pass */

/* The fields of gpt2__block_acts in order, with their width per row in
   units of C (0: one float per row). att is handled apart. */
#define BLOCK_FIELDS(X)                                                     \
    X(ln1, 1) X(ln1_mean, 0) X(ln1_rstd, 0) X(qkv, 3) X(atty, 1)            \
    X(attproj, 1) X(residual2, 1) X(ln2, 1) X(ln2_mean, 0) X(ln2_rstd, 0)   \
    X(fch, 4) X(fch_gelu, 4) X(fcproj, 1) X(residual3, 1)

size_t gpt2__block_acts_size(const gpt2_config *c, int B, int T, int Tk,
                             bool keep_att) {
    size_t rows = (size_t)B * T, C = (size_t)c->n_embd, n = 0;
#define X(name, w) n += rows * ((w) ? (w) * C : 1);
    BLOCK_FIELDS(X)
#undef X
    if (keep_att) n += (size_t)B * c->n_head * T * Tk;
    return n;
}

void gpt2__block_acts_bind(gpt2__block_acts *a, float *base,
                           const gpt2_config *c, int B, int T, int Tk,
                           bool keep_att) {
    size_t rows = (size_t)B * T, C = (size_t)c->n_embd;
    float *p = base;
#define X(name, w) a->name = p; p += rows * ((w) ? (w) * C : 1);
    BLOCK_FIELDS(X)
#undef X
    a->att = keep_att ? p : NULL;
}

void gpt2__block_forward(const gpt2_model *m, int l, const gpt2__block_acts *a,
                         const float *x, int B, int T, int past, float *kcache,
                         float *vcache, const gpt2__dropout *drop) {
    const gpt2__layer *w = &m->layer[l];
    int C = m->cfg.n_embd, NH = m->cfg.n_head, N = B * T;
    size_t NC = (size_t)N * C;

    /* 1. ln_1, then c_attn makes Query, Key and Value for every token */
    layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, w->ln1_w, w->ln1_b, N,
                      C, m->cfg.layer_norm_epsilon);
    gpt2__wmat_matmul(a->qkv, a->ln1, &w->qkv, w->qkv_b, N);

    /* 2. masked self-attention: scores, causal mask, softmax, weighted sum
       of values; heads split and merged inside the kernel */
    if (kcache) {
        GPT2_ASSERT(B == 1 && past + T <= m->cfg.n_ctx);
        /* keep K and V of these tokens for the steps that follow */
        for (int t = 0; t < T; t++) {
            memcpy(kcache + (size_t)(past + t) * C, a->qkv + (size_t)t * 3 * C + C,
                   sizeof(float) * C);
            memcpy(vcache + (size_t)(past + t) * C, a->qkv + (size_t)t * 3 * C + 2 * C,
                   sizeof(float) * C);
        }
        attention_forward(a->atty, a->att, a->qkv, kcache, vcache, 1, T, past + T, C,
                          NH, 3 * (size_t)C, 0, (size_t)C, 0);
    } else {
        GPT2_ASSERT(past == 0);
        attention_forward(a->atty, a->att, a->qkv, a->qkv + C, a->qkv + 2 * C, B, T,
                          T, C, NH, 3 * (size_t)C, (size_t)T * 3 * C, 3 * (size_t)C,
                          (size_t)T * 3 * C);
    }
    bool dropping = drop && drop->p > 0.0f;
    if (dropping) {
        GPT2_ASSERT(a->att && !kcache);
        attention_dropout_forward(a->atty, a->att, a->qkv, B, T, C, NH, drop->p,
                                  GPT2__DROP_ATTN(drop->seed));
    }

    /* 3. c_proj projects the merged heads back; the residual adds it */
    gpt2__wmat_matmul(a->attproj, a->atty, &w->attproj, w->attproj_b, N);
    if (dropping) dropout_forward(a->attproj, a->attproj, NC, drop->p, GPT2__DROP_ATTPROJ(drop->seed));
    residual_forward(a->residual2, x, a->attproj, NC);

    /* 4. ln_2 and the MLP: 4C wide with GELU, then back to C; residual */
    layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->residual2, w->ln2_w,
                      w->ln2_b, N, C, m->cfg.layer_norm_epsilon);
    gpt2__wmat_matmul(a->fch, a->ln2, &w->fc, w->fc_b, N);
    gelu_forward(a->fch_gelu, a->fch, (size_t)N * 4 * C);
    gpt2__wmat_matmul(a->fcproj, a->fch_gelu, &w->fcproj, w->fcproj_b, N);
    if (dropping) dropout_forward(a->fcproj, a->fcproj, NC, drop->p, GPT2__DROP_FCPROJ(drop->seed));
    residual_forward(a->residual3, a->residual2, a->fcproj, NC);
}

void gpt2__head_forward(const gpt2_model *m, float *out, float *mean,
                        float *rstd, float *logits, const float *x, int N) {
    int C = m->cfg.n_embd;
    layernorm_forward(out, mean, rstd, x, m->lnf_w, m->lnf_b, N, C,
                      m->cfg.layer_norm_epsilon);
    /* the LM head is tied: logits are dot products with every row of wte */
    gpt2__wmat_matmul(logits, out, &m->wte_mat, NULL, N);
}

/* ------------------------------------------------------------------ batch */

struct gpt2_batch {
    const gpt2_model *m;
    int B, T;
    float *mem;           /* one block for everything below */
    float *encoded;       /* (B,T,C) */
    gpt2__block_acts act; /* one set, reused by every layer */
    float *lnf;           /* (B,T,C) */
    float *logits;        /* (B,T,V) */
    float *losses;        /* (B,T) */
};

gpt2_status gpt2_batch_new(const gpt2_model *m, int B, int T, gpt2_batch **out) {
    *out = NULL;
    if (B < 1 || T < 1 || T > m->cfg.n_ctx)
        return gpt2__fail(GPT2_ERR_ARG,
                          "batch_new: B=%d T=%d: need B >= 1 and 1 <= T <= n_ctx=%d",
                          B, T, m->cfg.n_ctx);
    const gpt2_config *c = &m->cfg;
    size_t rows = (size_t)B * T, C = (size_t)c->n_embd, V = (size_t)c->vocab_size;
    size_t act = gpt2__block_acts_size(c, B, T, T, false);
    size_t total = rows * C * 2 + act + rows * V + rows;
    gpt2_batch *b = gpt2__calloc(1, sizeof *b, "batch");
    if (!b) return GPT2_ERR_NOMEM;
    b->mem = gpt2__alloc_aligned(total * sizeof(float), "batch activations");
    if (!b->mem) {
        free(b);
        return GPT2_ERR_NOMEM;
    }
    b->m = m;
    b->B = B;
    b->T = T;
    float *p = b->mem;
    b->encoded = p, p += rows * C;
    gpt2__block_acts_bind(&b->act, p, c, B, T, T, false), p += act;
    b->lnf = p, p += rows * C;
    b->logits = p, p += rows * V;
    b->losses = p;
    *out = b;
    return GPT2_OK;
}

void gpt2_batch_free(gpt2_batch *b) {
    if (!b) return;
    gpt2__free_aligned(b->mem);
    free(b);
}

static gpt2_status check_ids(const int *ids, size_t n, int V, bool allow_neg,
                             const char *what) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= V || (ids[i] < 0 && !(allow_neg && ids[i] == -1)))
            return gpt2__fail(GPT2_ERR_ARG,
                              "%s: id %d at index %zu is outside [0, %d)", what,
                              ids[i], i, V);
    return GPT2_OK;
}

gpt2_status gpt2_batch_forward(gpt2_batch *b, const int *tokens,
                               const int *targets, const float **logits,
                               float *loss) {
    const gpt2_model *m = b->m;
    int B = b->B, T = b->T, V = m->cfg.vocab_size;
    size_t rows = (size_t)B * T;
    gpt2_status st = check_ids(tokens, rows, V, false, "batch_forward: token");
    if (st) return st;
    if (targets && (st = check_ids(targets, rows, V, true, "batch_forward: target")))
        return st;

    gpt2__embed(m, b->encoded, tokens, B, T, 0);
    const float *x = b->encoded;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        gpt2__block_forward(m, l, &b->act, x, B, T, 0, NULL, NULL, NULL);
        x = b->act.residual3;
    }
    gpt2__head_forward(m, b->lnf, NULL, NULL, b->logits, x, (int)rows);

    if (logits) *logits = b->logits;
    if (loss) {
        *loss = NAN;
        if (targets) {
            crossentropy_forward(b->losses, b->logits, targets, (int)rows, V);
            double sum = 0.0;
            size_t counted = 0;
            for (size_t i = 0; i < rows; i++)
                if (targets[i] >= 0) sum += b->losses[i], counted++;
            *loss = counted ? (float)(sum / counted) : NAN;
        }
    }
    return GPT2_OK;
}

/* ------------------------------------------------------------- inspect */

gpt2_status gpt2__forward_inspect(const gpt2_model *m, const int *tokens,
                                  int T, gpt2__layer_fn fn, void *user,
                                  float *logits) {
    const gpt2_config *c = &m->cfg;
    if (T < 1 || T > c->n_ctx)
        return gpt2__fail(GPT2_ERR_ARG, "forward_inspect: T=%d outside [1, n_ctx=%d]", T,
                          c->n_ctx);
    gpt2_status st = check_ids(tokens, (size_t)T, c->vocab_size, false,
                               "forward_inspect: token");
    if (st) return st;
    size_t C = (size_t)c->n_embd, act = gpt2__block_acts_size(c, 1, T, T, true);
    float *mem = gpt2__alloc_aligned((2 * (size_t)T * C + act) * sizeof(float),
                                     "attention capture");
    if (!mem) return GPT2_ERR_NOMEM;
    float *encoded = mem, *lnf = mem + (size_t)T * C;
    gpt2__block_acts a;
    gpt2__block_acts_bind(&a, mem + 2 * (size_t)T * C, c, 1, T, T, true);
    gpt2__embed(m, encoded, tokens, 1, T, 0);
    const float *x = encoded;
    for (int l = 0; l < c->n_layer; l++) {
        gpt2__block_forward(m, l, &a, x, 1, T, 0, NULL, NULL, NULL);
        if (fn) fn(user, l, a.qkv, a.att, T);
        x = a.residual3;
    }
    if (logits) gpt2__head_forward(m, lnf, NULL, NULL, logits, x, T);
    gpt2__free_aligned(mem);
    return GPT2_OK;
}
