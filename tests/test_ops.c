/* test_ops.c: every fast kernel against its plain version, and the plain
   versions against values computed here in double precision. */
#include "check.h"
#include "internal.h"
#include "ops.h"

#include <stdlib.h>

static uint64_t rng = 42;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}
static float *rand_vec(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double scale = 0, d = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d / fmax(scale, 1e-30);
}

static void test_matmul(int N, int C, int OC) {
    float *x = rand_vec((size_t)N * C), *w = rand_vec((size_t)C * OC), *b = rand_vec(OC);
    float *y = malloc(sizeof(float) * N * OC), *yr = malloc(sizeof(float) * N * OC);
    matmul_forward(y, x, w, b, N, C, OC);
    matmul_forward_naive(yr, x, w, b, N, C, OC);
    CHECK(max_rel_diff(y, yr, (size_t)N * OC) < 1e-5);
    matmul_forward(y, x, w, NULL, N, C, OC);
    matmul_forward_naive(yr, x, w, NULL, N, C, OC);
    CHECK(max_rel_diff(y, yr, (size_t)N * OC) < 1e-5);
    free(x), free(w), free(b), free(y), free(yr);
}

static void test_lmhead(int N, int C, int V) {
    float *x = rand_vec((size_t)N * C), *wte = rand_vec((size_t)V * C);
    float *y = malloc(sizeof(float) * N * V), *yr = malloc(sizeof(float) * N * V);
    lmhead_forward(y, x, wte, N, C, V);
    lmhead_forward_naive(yr, x, wte, N, C, V);
    CHECK(max_rel_diff(y, yr, (size_t)N * V) < 1e-5);
    free(x), free(wte), free(y), free(yr);
}

/* attention written out the slow way in double: scores, mask, softmax */
static void attention_naive(float *out, const float *qkv, int T, int C, int NH) {
    int HS = C / NH;
    double *w = malloc(sizeof(double) * T);
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
            double mx = -1e300, sum = 0;
            for (int s = 0; s <= t; s++) {
                double d = 0;
                for (int i = 0; i < HS; i++)
                    d += (double)qkv[t * 3 * C + h * HS + i] * qkv[s * 3 * C + C + h * HS + i];
                w[s] = d / sqrt((double)HS);
                if (w[s] > mx) mx = w[s];
            }
            for (int s = 0; s <= t; s++) sum += (w[s] = exp(w[s] - mx));
            for (int i = 0; i < HS; i++) {
                double acc = 0;
                for (int s = 0; s <= t; s++) acc += w[s] / sum * qkv[s * 3 * C + 2 * C + h * HS + i];
                out[t * C + h * HS + i] = (float)acc;
            }
        }
    free(w);
}

static void test_attention(int T, int C, int NH) {
    float *qkv = rand_vec((size_t)T * 3 * C);
    for (int i = 0; i < T * 3 * C; i++) qkv[i] *= 3.0f; /* peaky softmax */
    float *ref = malloc(sizeof(float) * T * C), *o1 = malloc(sizeof(float) * T * C),
          *o2 = malloc(sizeof(float) * T * C), *att = malloc(sizeof(float) * NH * T * T);
    attention_naive(ref, qkv, T, C, NH);
    size_t s3 = 3 * (size_t)C;
    attention_forward(o1, att, qkv, qkv + C, qkv + 2 * C, 1, T, T, C, NH, s3, 0, s3, 0);
    attention_forward(o2, NULL, qkv, qkv + C, qkv + 2 * C, 1, T, T, C, NH, s3, 0, s3, 0);
    CHECK(max_rel_diff(o1, ref, (size_t)T * C) < 1e-5);
    CHECK(max_rel_diff(o2, ref, (size_t)T * C) < 1e-5);
    /* stored weights: rows sum to 1 and the future is exactly 0 */
    int bad = 0;
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
            double sum = 0;
            for (int s = 0; s < T; s++) {
                float a = att[((size_t)h * T + t) * T + s];
                if (s > t && a != 0.0f) bad++;
                sum += a;
            }
            if (fabs(sum - 1.0) > 1e-5) bad++;
        }
    CHECK(bad == 0);
    /* the last row alone against a cache of all T keys (a decode step)
       equals the last row of the full computation */
    float *last = malloc(sizeof(float) * C);
    attention_forward(last, NULL, qkv + (size_t)(T - 1) * s3, qkv + C, qkv + 2 * C, 1, 1, T,
                      C, NH, s3, 0, s3, 0);
    CHECK(max_rel_diff(last, ref + (size_t)(T - 1) * C, C) < 1e-5);
    /* the last n rows against the cache of all T keys (a prefill chunk
       after earlier ones): the last n rows of the full computation */
    int n = T / 2 > 0 ? T / 2 : 1;
    float *tail = malloc(sizeof(float) * (size_t)n * C);
    attention_forward(tail, NULL, qkv + (size_t)(T - n) * s3, qkv + C, qkv + 2 * C, 1, n, T,
                      C, NH, s3, 0, s3, 0);
    CHECK(max_rel_diff(tail, ref + (size_t)(T - n) * C, (size_t)n * C) < 1e-5);
    free(tail);
    free(qkv), free(ref), free(o1), free(o2), free(att), free(last);
}

static void test_layernorm(void) {
    int N = 5, C = 37;
    float *x = rand_vec((size_t)N * C), *w = rand_vec(C), *b = rand_vec(C);
    float *y = malloc(sizeof(float) * N * C), mean[5], rstd[5];
    for (int i = 0; i < N * C; i++) x[i] = x[i] * 10 + 100; /* large offset */
    layernorm_forward(y, mean, rstd, x, w, b, N, C, 1e-5f);
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += x[n * C + i];
        m /= C;
        for (int i = 0; i < C; i++) v += (x[n * C + i] - m) * (x[n * C + i] - m);
        v /= C;
        CHECK_NEAR(mean[n], m, 1e-5);
        CHECK_NEAR(rstd[n], 1 / sqrt(v + 1e-5), 1e-4);
        for (int i = 0; i < C; i++)
            CHECK_NEAR(y[n * C + i], (x[n * C + i] - m) / sqrt(v + 1e-5) * w[i] + b[i], 1e-4);
    }
    free(x), free(w), free(b), free(y);
}

static void test_gelu_and_loss(void) {
    float x[7] = {-6, -1.5f, -0.1f, 0, 0.1f, 1.5f, 6}, y[7];
    gelu_forward(y, x, 7);
    for (int i = 0; i < 7; i++) {
        double v = x[i];
        double want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        CHECK_NEAR(y[i], want, 1e-6);
    }
    /* cross-entropy of a known distribution, and the ignored target */
    float logits[2 * 3] = {1, 2, 3, 0, 0, 0};
    int targets[2] = {2, -1};
    float losses[2];
    crossentropy_forward(losses, logits, targets, 2, 3);
    CHECK_NEAR(losses[0], -log(exp(3) / (exp(1) + exp(2) + exp(3))), 1e-6);
    CHECK(losses[1] == 0.0f);
    float ls[3];
    log_softmax(ls, logits, 3);
    CHECK_NEAR(ls[2], -losses[0], 1e-6);
}

/* the fast exp inside the softmax kernels, over a vocabulary-sized row
   with a wide range of logits, against double precision */
static void test_softmax_rows(void) {
    int V = 50257, N = 2;
    float *x = rand_vec((size_t)N * V), *d = malloc(sizeof(float) * N * V);
    for (int i = 0; i < N * V; i++) x[i] *= 40.0f; /* logits in [-40, 40) */
    int tg[2] = {123, 50000};
    float losses[2], losses2[2], *ls = malloc(sizeof(float) * V);
    crossentropy_forward(losses, x, tg, N, V);
    crossentropy_fused(losses2, d, x, tg, 0.5f, N, V);
    log_softmax(ls, x, V);
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * V;
        double m = -1e300, sum = 0;
        for (int i = 0; i < V; i++) m = fmax(m, r[i]);
        for (int i = 0; i < V; i++) sum += exp(r[i] - m);
        double lse = m + log(sum);
        CHECK_NEAR(losses[n], lse - r[tg[n]], 1e-6);
        CHECK_NEAR(losses2[n], lse - r[tg[n]], 1e-6);
        if (n == 0) CHECK_NEAR(ls[tg[0]], r[tg[0]] - lse, 1e-6);
        double worst = 0;
        for (int i = 0; i < V; i++) {
            double want = 0.5 * (exp(r[i] - lse) - (i == tg[n]));
            worst = fmax(worst, fabs(d[(size_t)n * V + i] - want));
        }
        CHECK(worst < 1e-6);
    }
    free(x), free(d), free(ls);
}

int main(void) {
    test_softmax_rows();
    test_matmul(1, 64, 192);   /* decode GEMV */
    test_matmul(1, 37, 131);   /* odd sizes, tail columns */
    test_matmul(1, 768, 2304);
    test_matmul(7, 33, 65);    /* batched */
    test_matmul(64, 128, 384);
    test_lmhead(1, 48, 1001);
    test_lmhead(5, 48, 1001);
    test_attention(1, 16, 2);
    test_attention(9, 36, 3);
    test_attention(40, 64, 4);
    test_attention(70, 256, 4); /* head size 64, as every GPT-2 */
    test_attention(35, 96, 2);  /* head size 48 */
    test_attention(17, 30, 3);  /* head size 10: no whole vectors */
    test_attention(300, 128, 2); /* training: several blocks of query rows, a short last one */
    test_layernorm();
    test_gelu_and_loss();
    return CHECK_DONE();
}
