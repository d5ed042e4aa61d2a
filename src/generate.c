/* generate.c: the whole generation loop of the tutorial in one call.
   Prefill the prompt, then repeat: choose a token from the logits, hand
   its text to the caller, feed it back as one decode step. Text is
   released in whole UTF-8 characters, and held back while it could still
   be the start of a stop string, so a caller never prints what a stop
   string later takes back. */
#include "internal.h"

#include <string.h>

gpt2_generate_params gpt2_generate_defaults(void) {
    gpt2_generate_params p = {.max_new_tokens = 64,
                              .sampler = gpt2_sampler_defaults(),
                              .stop_at_eot = 1,
                              .stop = NULL,
                              .kv_cache = 1};
    return p;
}

/* Generated text not yet released to the caller. */
typedef struct {
    char *buf;
    size_t len, cap;
} text_buf;

static bool text_append(text_buf *t, const char *s, size_t n) {
    if (n == 0) return true; /* t->buf may still be NULL */
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) return false;
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    return true;
}

/* Where the first stop string starts in t, or -1. */
static long find_stop(const text_buf *t, const char *const *stop) {
    long best = -1;
    for (int i = 0; stop && stop[i]; i++) {
        size_t n = strlen(stop[i]);
        if (n == 0 || n > t->len) continue;
        for (size_t j = 0; j + n <= t->len; j++)
            if (memcmp(t->buf + j, stop[i], n) == 0) {
                if (best < 0 || (long)j < best) best = (long)j;
                break;
            }
    }
    return best;
}

/* How many bytes at the end of t could begin a stop string. */
static size_t stop_prefix_tail(const text_buf *t, const char *const *stop) {
    size_t hold = 0;
    for (int i = 0; stop && stop[i]; i++) {
        size_t n = strlen(stop[i]);
        for (size_t k = n > 0 ? n - 1 : 0; k > hold; k--)
            if (k <= t->len && memcmp(t->buf + t->len - k, stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

static int deliver(gpt2_step_fn fn, void *user, gpt2_step *st, text_buf *t,
                   size_t n) {
    st->text = t->buf ? t->buf : "";
    st->len = n;
    int r = fn ? fn(user, st) : 0;
    if (n) memmove(t->buf, t->buf + n, t->len - n);
    t->len -= n;
    return r;
}

gpt2_status gpt2_generate_ids(const gpt2_model *m, const int *prompt,
                              int n_prompt, const gpt2_generate_params *p,
                              gpt2_step_fn on_step, void *user,
                              int *n_generated) {
    gpt2_generate_params def = gpt2_generate_defaults();
    if (!p) p = &def;
    if (n_generated) *n_generated = 0;
    if (n_prompt < 1 || !prompt)
        return gpt2__fail(GPT2_ERR_ARG, "generate: the prompt has no tokens");
    if (p->max_new_tokens < 0)
        return gpt2__fail(GPT2_ERR_ARG, "generate: max_new_tokens %d must be >= 0",
                          p->max_new_tokens);
    const gpt2_tokenizer *tok = m->tok;
    int V = m->cfg.vocab_size;
    int eot = tok ? gpt2_tokenizer_eot(tok) : -1;
    const char *const *stop = tok ? p->stop : NULL;

    gpt2_session_options so = gpt2_session_defaults();
    so.kv_cache = p->kv_cache;
    gpt2_session *s = NULL;
    gpt2_sampler *smp = NULL;
    int *history = NULL;
    text_buf pending = {0};
    gpt2_status st = gpt2_session_new(m, &so, &s);
    if (!st) st = gpt2_sampler_new(&p->sampler, V, &smp);
    size_t hist_cap = (size_t)n_prompt + (size_t)p->max_new_tokens;
    if (!st && !(history = gpt2__malloc(hist_cap, sizeof(int), "generate history")))
        st = GPT2_ERR_NOMEM;
    if (st) goto done;
    memcpy(history, prompt, sizeof(int) * (size_t)n_prompt);
    int n_hist = n_prompt;

    const float *logits;
    if ((st = gpt2_session_prefill(s, prompt, n_prompt, &logits))) goto done;

    gpt2_utf8_stream u8 = {0};
    int n = 0;
    bool stopped = false;
    while (n < p->max_new_tokens && !stopped) {
        int tokid;
        float lp;
        if ((st = gpt2_sampler_sample(smp, logits, history, n_hist, &tokid, &lp))) goto done;
        if (tokid == eot && p->stop_at_eot) break;
        history[n_hist++] = tokid;

        /* the token's bytes, whole characters only, into pending */
        size_t plen = 0;
        const char *piece = tok ? gpt2_tokenizer_piece(tok, tokid, &plen) : NULL;
        char ready[64 + 4];
        const char *src = piece;
        size_t left = piece ? plen : 0;
        while (left > 0) { /* pieces are short; chunk in case one is not */
            size_t take = left < 64 ? left : 64;
            size_t r = gpt2_utf8_stream_feed(&u8, src, take, ready);
            if (!text_append(&pending, ready, r)) {
                st = gpt2__fail(GPT2_ERR_NOMEM, "generate: out of memory");
                goto done;
            }
            src += take;
            left -= take;
        }

        /* release what no stop string can take back */
        size_t release;
        long at = find_stop(&pending, stop);
        if (at >= 0) {
            release = (size_t)at;
            stopped = true;
        } else {
            release = pending.len - stop_prefix_tail(&pending, stop);
        }
        gpt2_step step = {.index = n, .token = tokid, .logprob = lp, .logits = logits};
        n++;
        if (deliver(on_step, user, &step, &pending, release)) stopped = true;
        if (stopped || n == p->max_new_tokens) break;
        if ((st = gpt2_session_step(s, tokid, &logits))) goto done;
    }

    /* what was held back (a partial character or a partial stop string
       that never completed) belongs to the text unless a stop string hit */
    if (!stopped) {
        char tail[8];
        size_t r = gpt2_utf8_stream_flush(&u8, tail);
        if (!text_append(&pending, tail, r)) {
            st = gpt2__fail(GPT2_ERR_NOMEM, "generate: out of memory");
            goto done;
        }
        if (pending.len > 0) {
            gpt2_step step = {.index = n, .token = -1, .logprob = 0.0f, .logits = NULL};
            deliver(on_step, user, &step, &pending, pending.len);
        }
    }
    if (n_generated) *n_generated = n;

done:
    free(pending.buf);
    free(history);
    gpt2_sampler_free(smp);
    gpt2_session_free(s);
    return st;
}

gpt2_status gpt2_generate(const gpt2_model *m, const char *prompt,
                          const gpt2_generate_params *p, gpt2_step_fn on_step,
                          void *user, int *n_generated) {
    if (!m->tok)
        return gpt2__fail(GPT2_ERR_ARG,
                          "generate: the model has no tokenizer (vocab.json + "
                          "merges.txt in its directory)");
    size_t len = prompt ? strlen(prompt) : 0;
    if (len == 0) return gpt2__fail(GPT2_ERR_ARG, "generate: the prompt is empty");
    int *ids = gpt2__malloc(len, sizeof(int), "generate prompt");
    if (!ids) return GPT2_ERR_NOMEM;
    size_t n_ids = 0;
    gpt2_status st = gpt2_tokenizer_encode(m->tok, prompt, len, 0, ids, len, &n_ids);
    if (!st && n_ids > (size_t)m->cfg.n_ctx)
        st = gpt2__fail(GPT2_ERR_ARG,
                        "generate: the prompt has %zu tokens; the context holds %d",
                        n_ids, m->cfg.n_ctx);
    if (!st) st = gpt2_generate_ids(m, ids, (int)n_ids, p, on_step, user, n_generated);
    free(ids);
    return st;
}
