/* test_sample.c: greedy, temperature, top-k, top-p, repetition penalty,
   seeds; the draw frequencies follow the softmax. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>

#define V 50

static float logits[V];

static int draw(gpt2_sampler *s, const int *hist, int n_hist) {
    int t = -1;
    float lp;
    CHECK_OK(gpt2_sampler_sample(s, logits, hist, n_hist, &t, &lp));
    return t;
}

static gpt2_sampler *make(float temp, int k, float p, float rep, uint64_t seed) {
    gpt2_sampler_params sp = {temp, k, p, rep, seed};
    gpt2_sampler *s = NULL;
    CHECK_OK(gpt2_sampler_new(&sp, V, &s));
    return s;
}

int main(void) {
    for (int i = 0; i < V; i++) logits[i] = (float)((i * 7919) % V) / 10.0f;
    /* the order by logit: id 0 has logit 0 ... find the best three */
    int ids[V];
    float lps[V];
    CHECK(gpt2_top_candidates(logits, V, V, ids, lps) == V);
    for (int i = 1; i < V; i++) CHECK(logits[ids[i - 1]] >= logits[ids[i]]);
    double mass = 0;
    for (int i = 0; i < V; i++) mass += exp(lps[i]);
    CHECK_NEAR(mass, 1.0, 1e-5);
    int best = ids[0];

    /* greedy and top-k 1 pick the argmax */
    gpt2_sampler *s = make(0, 0, 1, 1, 1);
    CHECK(draw(s, NULL, 0) == best);
    gpt2_sampler_free(s);
    s = make(1, 1, 1, 1, 1);
    for (int i = 0; i < 20; i++) CHECK(draw(s, NULL, 0) == best);
    gpt2_sampler_free(s);

    /* top-k 3: only the three best ever appear */
    s = make(1, 3, 1, 1, 2);
    int outside = 0;
    for (int i = 0; i < 2000; i++) {
        int t = draw(s, NULL, 0);
        if (t != ids[0] && t != ids[1] && t != ids[2]) outside++;
    }
    CHECK(outside == 0);
    gpt2_sampler_free(s);

    /* top-p: the nucleus is the smallest best-first prefix with mass >= p */
    double cum = 0;
    int nucleus = 0;
    while (cum < 0.5) cum += exp(lps[nucleus++]);
    s = make(1, 0, 0.5f, 1, 3);
    int seen_max = 0;
    for (int i = 0; i < 3000; i++) {
        int t = draw(s, NULL, 0), rank = 0;
        while (ids[rank] != t) rank++;
        if (rank + 1 > seen_max) seen_max = rank + 1;
    }
    CHECK(seen_max == nucleus);
    gpt2_sampler_free(s);

    /* plain sampling: frequencies within 5 sigma of the softmax */
    s = make(1, 0, 1, 1, 4);
    int count[V] = {0}, n = 40000;
    for (int i = 0; i < n; i++) count[draw(s, NULL, 0)]++;
    int off = 0;
    for (int i = 0; i < V; i++) {
        double p = exp(lps[i]);
        int id = ids[i];
        if (fabs(count[id] - n * p) > 5 * sqrt(n * p * (1 - p)) + 1) off++;
    }
    CHECK(off == 0);
    gpt2_sampler_free(s);

    /* same seed, same sequence; another seed, another */
    gpt2_sampler *a = make(1.3f, 0, 1, 1, 99), *b = make(1.3f, 0, 1, 1, 99),
                 *c = make(1.3f, 0, 1, 1, 100);
    int same = 1, differ = 0;
    for (int i = 0; i < 50; i++) {
        int x = draw(a, NULL, 0), y = draw(b, NULL, 0), z = draw(c, NULL, 0);
        same &= x == y;
        differ += x != z;
    }
    CHECK(same && differ > 0);
    gpt2_sampler_free(a), gpt2_sampler_free(b), gpt2_sampler_free(c);

    /* a strong repetition penalty moves greedy off a token already seen,
       and leaves the logits the caller passed untouched */
    s = make(0, 0, 1, 1000.0f, 5);
    int hist[2] = {best, best};
    float before = logits[best];
    CHECK(draw(s, hist, 2) == ids[1]);
    CHECK(logits[best] == before);
    gpt2_sampler_free(s);

    /* the log-probability reported is the plain softmax one */
    s = make(0.5f, 5, 0.9f, 1, 6);
    int t;
    float lp;
    CHECK_OK(gpt2_sampler_sample(s, logits, NULL, 0, &t, &lp));
    int r = 0;
    while (ids[r] != t) r++;
    CHECK_NEAR(lp, lps[r], 1e-5);
    gpt2_sampler_free(s);

    /* bad parameters */
    gpt2_sampler_params bad[] = {{-1, 0, 1, 1, 0}, {1, -1, 1, 1, 0}, {1, 0, 0, 1, 0},
                                 {1, 0, 1.5f, 1, 0}, {1, 0, 1, 0, 0}, {NAN, 0, 1, 1, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gpt2_sampler *x = NULL;
        CHECK(gpt2_sampler_new(&bad[i], V, &x) == GPT2_ERR_ARG && x == NULL);
    }
    return CHECK_DONE();
}
