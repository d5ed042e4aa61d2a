/* sample.c: from logits to the next token. The logits processors run in
   the order Hugging Face's generate applies them: repetition penalty,
   temperature, top-k, top-p; then either the argmax (temperature 0: the
   tutorial's top-1) or a draw from what is left, with a seeded generator
   so the same seed gives the same text on every run. */
#include "internal.h"

#include <math.h>
#include <string.h>

#include "ops.h"

struct gpt2_sampler {
    gpt2_sampler_params p;
    int V;
    uint64_t rng;
    float *work;          /* (V) processed logits */
    int *idx;             /* (V) candidate ids */
    unsigned char *seen;  /* (V) marks for the repetition penalty */
};

gpt2_sampler_params gpt2_sampler_defaults(void) {
    gpt2_sampler_params p = {.temperature = 1.0f,
                             .top_k = 0,
                             .top_p = 1.0f,
                             .repetition_penalty = 1.0f,
                             .seed = 0};
    return p;
}

gpt2_status gpt2_sampler_new(const gpt2_sampler_params *p, int vocab_size,
                             gpt2_sampler **out) {
    *out = NULL;
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return gpt2__fail(GPT2_ERR_ARG, "sampler: temperature %g must be >= 0",
                          p->temperature);
    if (p->top_k < 0)
        return gpt2__fail(GPT2_ERR_ARG, "sampler: top_k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return gpt2__fail(GPT2_ERR_ARG, "sampler: top_p %g must be in (0, 1]", p->top_p);
    if (!(p->repetition_penalty > 0) || !isfinite(p->repetition_penalty))
        return gpt2__fail(GPT2_ERR_ARG, "sampler: repetition_penalty %g must be > 0",
                          p->repetition_penalty);
    if (vocab_size < 1)
        return gpt2__fail(GPT2_ERR_ARG, "sampler: vocab_size %d must be >= 1", vocab_size);
    gpt2_sampler *s = gpt2__calloc(1, sizeof *s, "sampler");
    if (!s) return GPT2_ERR_NOMEM;
    s->p = *p;
    s->V = vocab_size;
    s->rng = p->seed ^ 0x853c49e6748fea9bull;
    s->work = gpt2__malloc((size_t)vocab_size, sizeof(float), "sampler");
    s->idx = gpt2__malloc((size_t)vocab_size, sizeof(int), "sampler");
    s->seen = gpt2__calloc((size_t)vocab_size, 1, "sampler");
    if (!s->work || !s->idx || !s->seen) {
        gpt2_sampler_free(s);
        return GPT2_ERR_NOMEM;
    }
    *out = s;
    return GPT2_OK;
}

void gpt2_sampler_free(gpt2_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->idx);
    free(s->seen);
    free(s);
}

/* xorshift64*: small, fast, and the same stream on every platform */
static uint64_t next_u64(uint64_t *x) {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

static double next_unit(uint64_t *x) { /* [0, 1) */
    return (next_u64(x) >> 11) * (1.0 / 9007199254740992.0);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* CTRL's penalty: a token already seen becomes less likely whatever the
   sign of its logit. Each distinct token is penalised once. */
static void apply_repetition_penalty(gpt2_sampler *s, const int *history,
                                     int n_hist) {
    float r = s->p.repetition_penalty;
    for (int i = 0; i < n_hist; i++) {
        int t = history[i];
        if (t < 0 || t >= s->V || s->seen[t]) continue;
        s->seen[t] = 1;
        s->work[t] = s->work[t] > 0 ? s->work[t] / r : s->work[t] * r;
    }
    for (int i = 0; i < n_hist; i++)
        if (history[i] >= 0 && history[i] < s->V) s->seen[history[i]] = 0;
}

/* Orders candidates by logit, largest first; ties by id so the order
   never depends on the sort algorithm. */
typedef struct {
    float v;
    int id;
} cand;

static int by_logit_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id - y->id;
}

static void sort_ids(int *idx, int k, const float *x) {
    cand *c = malloc(sizeof(cand) * (size_t)k);
    if (!c) { /* insertion sort fallback: slow but correct, never fails */
        for (int i = 1; i < k; i++)
            for (int j = i; j > 0 && (x[idx[j]] > x[idx[j - 1]] ||
                                      (x[idx[j]] == x[idx[j - 1]] && idx[j] < idx[j - 1])); j--) {
                int t = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = t;
            }
        return;
    }
    for (int i = 0; i < k; i++) c[i] = (cand){x[idx[i]], idx[i]};
    qsort(c, (size_t)k, sizeof(cand), by_logit_desc);
    for (int i = 0; i < k; i++) idx[i] = c[i].id;
    free(c);
}

/* Min-heap on logits, for keeping the k largest of V in O(V log k). */
static void sift_down(int *h, int n, int i, const float *x) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && (x[h[l]] < x[h[m]] || (x[h[l]] == x[h[m]] && h[l] > h[m]))) m = l;
        if (r < n && (x[h[r]] < x[h[m]] || (x[h[r]] == x[h[m]] && h[r] > h[m]))) m = r;
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Fills idx with the k ids of largest x, sorted best first; returns k. */
static int top_k_ids(int *idx, const float *x, int V, int k) {
    if (k <= 0 || k >= V) {
        for (int i = 0; i < V; i++) idx[i] = i;
        k = V;
    } else {
        for (int i = 0; i < k; i++) idx[i] = i;
        for (int i = k / 2 - 1; i >= 0; i--) sift_down(idx, k, i, x);
        for (int i = k; i < V; i++) {
            /* beats the smallest kept one? (ties keep the lower id) */
            if (x[i] > x[idx[0]]) {
                idx[0] = i;
                sift_down(idx, k, 0, x);
            }
        }
    }
    sort_ids(idx, k, x);
    return k;
}

int gpt2_top_candidates(const float *logits, int vocab_size, int k, int *ids,
                        float *logprobs) {
    if (k > vocab_size) k = vocab_size;
    if (k <= 0) return 0;
    /* the log-sum-exp once, then each candidate's log-probability */
    float maxv = logits[argmax(logits, vocab_size)];
    double sum = 0.0;
    for (int i = 0; i < vocab_size; i++) sum += exp((double)(logits[i] - maxv));
    float lse = maxv + (float)log(sum);
    int *tmp = malloc(sizeof(int) * (size_t)vocab_size);
    if (!tmp) return 0;
    top_k_ids(tmp, logits, vocab_size, k);
    for (int i = 0; i < k; i++) {
        ids[i] = tmp[i];
        if (logprobs) logprobs[i] = logits[tmp[i]] - lse;
    }
    free(tmp);
    return k;
}

static float plain_logprob(const float *logits, int V, int token) {
    float maxv = logits[argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)(logits[i] - maxv));
    return logits[token] - maxv - (float)log(sum);
}

gpt2_status gpt2_sampler_sample(gpt2_sampler *s, const float *logits,
                                const int *history, int n_hist, int *token,
                                float *logprob) {
    int V = s->V;
    memcpy(s->work, logits, sizeof(float) * (size_t)V);
    if (s->p.repetition_penalty != 1.0f && history && n_hist > 0)
        apply_repetition_penalty(s, history, n_hist);

    int choice;
    if (s->p.temperature == 0.0f) {
        choice = argmax(s->work, V); /* greedy: the tutorial's top-1 */
    } else {
        float inv_t = 1.0f / s->p.temperature;
        for (int i = 0; i < V; i++) s->work[i] *= inv_t;
        /* top-k (and the sort top-p needs): candidates best first */
        int n = top_k_ids(s->idx, s->work, V, s->p.top_k);
        /* softmax over the candidates, in double for the cumulative sums */
        float maxv = s->work[s->idx[0]];
        double total = 0.0;
        for (int i = 0; i < n; i++) total += exp((double)(s->work[s->idx[i]] - maxv));
        /* top-p: the smallest prefix whose mass reaches p */
        if (s->p.top_p < 1.0f) {
            double cum = 0.0, want = s->p.top_p * total;
            for (int i = 0; i < n; i++) {
                cum += exp((double)(s->work[s->idx[i]] - maxv));
                if (cum >= want) {
                    n = i + 1;
                    break;
                }
            }
            total = 0.0;
            for (int i = 0; i < n; i++) total += exp((double)(s->work[s->idx[i]] - maxv));
        }
        double u = next_unit(&s->rng) * total, cum = 0.0;
        choice = s->idx[n - 1];
        for (int i = 0; i < n; i++) {
            cum += exp((double)(s->work[s->idx[i]] - maxv));
            if (u < cum) {
                choice = s->idx[i];
                break;
            }
        }
    }
    *token = choice;
    if (logprob) *logprob = plain_logprob(logits, V, choice);
    return GPT2_OK;
}
