/* session.c: generation state for one sequence. The tutorial's "GPT-2
   keeps the Key and Value vectors of past tokens": each layer has a K and
   a V cache of n_ctx rows, so a new token runs through the model alone
   and attends to everything before it without recomputing it.

   The prompt is prefilled as one batch (in chunks of at most PREFILL_CHUNK
   rows, so memory stays small for long prompts); each new token is then
   one decode step. When the window is full, it slides: the most recent
   slide_keep tokens are kept and prefilled again at positions 0.., since
   GPT-2's learned positions cannot be shifted in place. */
#include "internal.h"

#include <string.h>

#include "ops.h"

#define PREFILL_CHUNK 512 /* rows per pass: the GEMM library is near its peak from here */

struct gpt2_session {
    const gpt2_model *m;
    gpt2_session_options opt;
    int chunk;             /* rows per prefill pass */
    int n_cached;          /* positions whose K and V are in the cache */
    int n_tokens;          /* tokens in the window (== n_cached with cache) */
    int *tokens;           /* (n_ctx) the window */
    int *pending;          /* (n_ctx) scratch for sliding */
    int slides;
    float *kv;             /* the KV cache's block: */
    float *kcache, *vcache;/* (L, n_ctx, C) each */
    float *mem;            /* activations, below */
    float *x;              /* (chunk, C) residual stream in */
    gpt2__block_acts act;  /* one set for all layers */
    float *lnf;            /* (C) */
    float *logits;         /* (V) */
};

gpt2_session_options gpt2_session_defaults(void) {
    gpt2_session_options o = {.kv_cache = 1, .slide_keep = 0};
    return o;
}

gpt2_status gpt2_session_new(const gpt2_model *m, const gpt2_session_options *opt,
                             gpt2_session **out) {
    *out = NULL;
    const gpt2_config *c = &m->cfg;
    gpt2_session_options o = opt ? *opt : gpt2_session_defaults();
    if (o.slide_keep < 0 || o.slide_keep >= c->n_ctx)
        return gpt2__fail(GPT2_ERR_ARG, "session_new: slide_keep=%d outside [0, n_ctx=%d)",
                          o.slide_keep, c->n_ctx);
    if (o.slide_keep == 0) o.slide_keep = c->n_ctx / 2 > 0 ? c->n_ctx / 2 : 1;
    gpt2_session *s = gpt2__calloc(1, sizeof *s, "session");
    if (!s) return GPT2_ERR_NOMEM;
    s->m = m;
    s->opt = o;
    s->chunk = c->n_ctx < PREFILL_CHUNK ? c->n_ctx : PREFILL_CHUNK;
    size_t C = (size_t)c->n_embd, ctx = (size_t)c->n_ctx;
    size_t kv = (size_t)c->n_layer * ctx * C;
    size_t act = gpt2__block_acts_size(c, 1, s->chunk, 0, false);
    size_t total = (size_t)s->chunk * C + act + C + (size_t)c->vocab_size;
    s->tokens = gpt2__calloc(ctx, sizeof(int), "session tokens");
    s->pending = gpt2__calloc(ctx, sizeof(int), "session tokens");
    /* the KV cache in huge pages: decode's attention reads a head's 64
       values from every cached row, a row of n_embd floats apart, and in
       4 KiB pages that is a TLB miss every few rows (decode at context
       1024 reached 74% (F16) and 58% (Q8_0) of the read pass, against 89%
       and 81%). The activations, of which decode touches a row, stay in
       small pages. */
    s->kv = gpt2__alloc_huge(2 * kv * sizeof(float), "session KV cache");
    s->mem = gpt2__alloc_aligned(total * sizeof(float), "session activations");
    if (!s->tokens || !s->pending || !s->kv || !s->mem) {
        gpt2_session_free(s);
        return GPT2_ERR_NOMEM;
    }
    s->kcache = s->kv;
    s->vcache = s->kv + kv;
    float *p = s->mem;
    s->x = p, p += (size_t)s->chunk * C;
    gpt2__block_acts_bind(&s->act, p, c, 1, s->chunk, 0, false), p += act;
    s->lnf = p, p += C;
    s->logits = p;
    *out = s;
    return GPT2_OK;
}

void gpt2_session_free(gpt2_session *s) {
    if (!s) return;
    gpt2__free_aligned(s->kv);
    gpt2__free_aligned(s->mem);
    free(s->tokens);
    free(s->pending);
    free(s);
}

void gpt2_session_reset(gpt2_session *s) {
    s->n_cached = 0;
    s->n_tokens = 0;
    s->slides = 0;
}

gpt2_status gpt2_session_copy(gpt2_session *dst, const gpt2_session *src) {
    if (dst == src) return GPT2_OK;
    if (dst->m != src->m)
        return gpt2__fail(GPT2_ERR_ARG, "session_copy: the sessions belong to different models");
    const gpt2_config *c = &src->m->cfg;
    size_t C = (size_t)c->n_embd, layer_kv = (size_t)c->n_ctx * C;
    /* only the cached rows of each layer matter */
    for (int l = 0; l < c->n_layer; l++) {
        memcpy(dst->kcache + l * layer_kv, src->kcache + l * layer_kv,
               sizeof(float) * (size_t)src->n_cached * C);
        memcpy(dst->vcache + l * layer_kv, src->vcache + l * layer_kv,
               sizeof(float) * (size_t)src->n_cached * C);
    }
    memcpy(dst->tokens, src->tokens, sizeof(int) * (size_t)src->n_tokens);
    memcpy(dst->logits, src->logits, sizeof(float) * (size_t)c->vocab_size);
    dst->n_cached = src->n_cached;
    dst->n_tokens = src->n_tokens;
    dst->slides = src->slides;
    dst->opt = src->opt;
    return GPT2_OK;
}

const float *gpt2_session_logits(const gpt2_session *s) {
    return s->n_tokens > 0 ? s->logits : NULL;
}

const int *gpt2_session_tokens(const gpt2_session *s, int *n) {
    if (n) *n = s->n_tokens;
    return s->tokens;
}

int gpt2_session_slides(const gpt2_session *s) { return s->slides; }

/* Runs window tokens [n_cached, n_tokens) through the model in chunks,
   filling the KV cache; the logits of the last one end in s->logits. */
static void forward_pending(gpt2_session *s) {
    const gpt2_model *m = s->m;
    int C = m->cfg.n_embd, L = m->cfg.n_layer;
    size_t layer_kv = (size_t)m->cfg.n_ctx * C;
    while (s->n_cached < s->n_tokens) {
        int past = s->n_cached;
        int T = s->n_tokens - past < s->chunk ? s->n_tokens - past : s->chunk;
        /* the chunk's activations live in a (1, T) view of the buffers */
        gpt2__block_acts a;
        gpt2__block_acts_bind(&a, (float *)s->act.ln1, &m->cfg, 1, T, 0, false);
        /* inference keeps no activations for a backward pass: GELU works
           in place, and fch_gelu's memory is never touched */
        a.fch_gelu = a.fch;
        gpt2__embed(m, s->x, s->tokens + past, 1, T, past);
        const float *x = s->x;
        for (int l = 0; l < L; l++) {
            gpt2__block_forward(m, l, &a, x, 1, T, past, s->kcache + l * layer_kv,
                                s->vcache + l * layer_kv, NULL);
            x = a.residual3;
        }
        s->n_cached = past + T;
        if (s->n_cached == s->n_tokens) /* only the last row needs logits */
            gpt2__head_forward(m, s->lnf, NULL, NULL, s->logits,
                               x + (size_t)(T - 1) * C, 1);
    }
}

gpt2_status gpt2_session_prefill(gpt2_session *s, const int *tokens, int n,
                                 const float **logits) {
    const gpt2_config *c = &s->m->cfg;
    if (n < 1 || !tokens)
        return gpt2__fail(GPT2_ERR_ARG, "session_prefill: need at least one token (n=%d)", n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return gpt2__fail(GPT2_ERR_ARG,
                              "session_prefill: token %d at index %d is outside [0, %d)",
                              tokens[i], i, c->vocab_size);
    if (s->n_tokens + (size_t)n > (size_t)c->n_ctx) {
        /* Slide: keep the most recent tokens of window + new, at least
           slide_keep of them and never more than the context holds. */
        int total = s->n_tokens + n;
        int keep = n > s->opt.slide_keep ? n : s->opt.slide_keep;
        if (keep > c->n_ctx) keep = c->n_ctx;
        int from_old = keep - n > 0 ? keep - n : 0; /* tokens kept from the window */
        int k = 0;
        for (int i = s->n_tokens - from_old; i < s->n_tokens; i++) s->pending[k++] = s->tokens[i];
        for (int i = n - (keep - from_old); i < n; i++) s->pending[k++] = tokens[i];
        GPT2_ASSERT(k == keep && total > keep);
        memcpy(s->tokens, s->pending, sizeof(int) * (size_t)keep);
        s->n_tokens = keep;
        s->n_cached = 0;
        s->slides++;
    } else {
        memcpy(s->tokens + s->n_tokens, tokens, sizeof(int) * (size_t)n);
        s->n_tokens += n;
    }
    /* without the cache, every step recomputes the whole window */
    if (!s->opt.kv_cache) s->n_cached = 0;
    forward_pending(s);
    if (logits) *logits = s->logits;
    return GPT2_OK;
}

gpt2_status gpt2_session_step(gpt2_session *s, int token, const float **logits) {
    return gpt2_session_prefill(s, &token, 1, logits);
}
