/* test_session.c: the KV cache gives the logits of a full recompute;
   the window slides without reading or writing out of bounds. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>

static double rel_diff(const float *a, const float *b, int n) {
    double d = 0, scale = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return d / fmax(scale, 1e-30);
}

/* logits after tokens[0..n) by a full (1, n) forward */
static void full_logits(const gpt2_model *m, const int *tokens, int n, float *out) {
    gpt2_batch *b;
    const float *lg;
    int V = gpt2_model_config(m)->vocab_size;
    CHECK_OK(gpt2_batch_new(m, 1, n, &b));
    CHECK_OK(gpt2_batch_forward(b, tokens, NULL, &lg, NULL));
    memcpy(out, lg + (size_t)(n - 1) * V, sizeof(float) * V);
    gpt2_batch_free(b);
}

int main(void) {
    gpt2_config c = {.n_layer = 2, .n_head = 3, .n_embd = 48, .n_ctx = 40,
                     .vocab_size = 211, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m;
    CHECK_OK(gpt2_model_init(&c, 7, &m));
    int V = c.vocab_size, toks[40];
    for (int i = 0; i < 40; i++) toks[i] = (i * 37 + 11) % V;
    float *ref = malloc(sizeof(float) * V);

    /* prefill 5 tokens, then decode one at a time up to the full context:
       every step equals a recompute of the whole prefix */
    gpt2_session *s;
    const float *lg;
    CHECK_OK(gpt2_session_new(m, NULL, &s));
    CHECK_OK(gpt2_session_prefill(s, toks, 5, &lg));
    full_logits(m, toks, 5, ref);
    CHECK(rel_diff(lg, ref, V) < 1e-5);
    double worst = 0;
    for (int t = 5; t < 40; t++) {
        CHECK_OK(gpt2_session_step(s, toks[t], &lg));
        full_logits(m, toks, t + 1, ref);
        worst = fmax(worst, rel_diff(lg, ref, V));
    }
    printf("KV cache vs full recompute: max relative difference %.3g\n", worst);
    CHECK(worst < 1e-5);

    /* the window is full: one more token slides it to the last n_ctx/2 */
    int next = 5;
    CHECK_OK(gpt2_session_step(s, next, &lg));
    CHECK(gpt2_session_slides(s) == 1);
    int n_win;
    const int *win = gpt2_session_tokens(s, &n_win);
    CHECK(n_win == 20);
    CHECK(win[19] == next && win[18] == toks[39] && win[0] == toks[21]);
    int win_copy[20];
    memcpy(win_copy, win, sizeof win_copy);
    full_logits(m, win_copy, 20, ref);
    CHECK(rel_diff(lg, ref, V) < 1e-5);

    /* without the cache: the same logits, by recomputing every step */
    gpt2_session_options o = gpt2_session_defaults();
    o.kv_cache = 0;
    gpt2_session *s2;
    CHECK_OK(gpt2_session_new(m, &o, &s2));
    CHECK_OK(gpt2_session_prefill(s2, toks, 3, &lg));
    for (int t = 3; t < 12; t++) CHECK_OK(gpt2_session_step(s2, toks[t], &lg));
    full_logits(m, toks, 12, ref);
    CHECK(rel_diff(lg, ref, V) < 1e-5);

    /* a prompt longer than the window keeps its last n_ctx tokens */
    int longp[100];
    for (int i = 0; i < 100; i++) longp[i] = (i * 13 + 1) % V;
    gpt2_session_reset(s);
    CHECK_OK(gpt2_session_prefill(s, longp, 100, &lg));
    gpt2_session_tokens(s, &n_win);
    CHECK(n_win == 40);
    full_logits(m, longp + 60, 40, ref);
    CHECK(rel_diff(lg, ref, V) < 1e-5);

    /* 10,000 decode steps through many slides */
    gpt2_session_reset(s);
    CHECK_OK(gpt2_session_prefill(s, toks, 1, &lg));
    int ok = 1;
    for (int i = 0; i < 10000 && ok; i++) ok = gpt2_session_step(s, (i * 7) % V, &lg) == GPT2_OK;
    CHECK(ok);
    CHECK(gpt2_session_slides(s) > 400);

    /* bad input: ids out of range, empty prefill */
    CHECK(gpt2_session_step(s, V, &lg) == GPT2_ERR_ARG);
    CHECK(gpt2_session_step(s, -1, &lg) == GPT2_ERR_ARG);
    CHECK(gpt2_session_prefill(s, toks, 0, &lg) == GPT2_ERR_ARG);
    gpt2_batch *b;
    CHECK(gpt2_batch_new(m, 1, 41, &b) == GPT2_ERR_ARG);
    CHECK_OK(gpt2_batch_new(m, 2, 3, &b));
    int bad[6] = {1, 2, 3, 4, 5, 211};
    CHECK(gpt2_batch_forward(b, bad, NULL, NULL, NULL) == GPT2_ERR_ARG);
    CHECK(strstr(gpt2_last_error(), "211") != NULL);
    gpt2_batch_free(b);

    free(ref);
    gpt2_session_free(s);
    gpt2_session_free(s2);
    gpt2_model_free(m);
    return CHECK_DONE();
}
