/* test_backward.c: every backward kernel against finite differences of
   its forward twin on tiny shapes, and the fast matmul backward against
   the plain one. The loss is L = sum(forward(x) * R) for a fixed random
   R, so dL/dout = R. */
#include "check.h"
#include "internal.h"
#include "ops.h"

#include <stdlib.h>

static uint64_t rng = 7;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}
static float *rvec(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}
static float *zvec(size_t n) { return calloc(n, sizeof(float)); }

/* the forward under test, as a function of its inputs */
typedef void (*fwd_fn)(float *out, void *ctx);

static double loss_of(fwd_fn f, void *ctx, float *out, const float *R, size_t nout) {
    f(out, ctx);
    double s = 0;
    for (size_t i = 0; i < nout; i++) s += (double)out[i] * R[i];
    return s;
}

/* compares the analytic gradient g of parameter p (n) with central
   differences; returns the max error relative to each element (with a
   floor of a tenth of the largest, where float rounding dominates) */
static double fd_check(fwd_fn f, void *ctx, float *p, const float *g, size_t n,
                       float *out, const float *R, size_t nout) {
    double worst = 0, scale = 1e-3;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(g[i]));
    for (size_t i = 0; i < n; i++) {
        float keep = p[i], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        p[i] = keep + h;
        double lp = loss_of(f, ctx, out, R, nout);
        p[i] = keep - h;
        double lm = loss_of(f, ctx, out, R, nout);
        p[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        worst = fmax(worst, fabs(num - g[i]) / (fabs(g[i]) + 0.1 * scale));
    }
    return worst;
}

/* ----------------------------------------------------------- layernorm */
typedef struct { float *x, *w, *b; int N, C; } ln_ctx;
static void ln_fwd(float *out, void *c) {
    ln_ctx *k = c;
    layernorm_forward(out, NULL, NULL, k->x, k->w, k->b, k->N, k->C, 1e-5f);
}
static void test_layernorm(void) {
    int N = 3, C = 10;
    ln_ctx k = {rvec(N * C), rvec(C), rvec(C), N, C};
    float *out = zvec(N * C), *R = rvec(N * C), mean[3], rstd[3];
    float *dx = zvec(N * C), *dw = zvec(C), *db = zvec(C);
    layernorm_forward(out, mean, rstd, k.x, k.w, k.b, N, C, 1e-5f);
    layernorm_backward(dx, dw, db, R, k.x, k.w, mean, rstd, N, C);
    CHECK(fd_check(ln_fwd, &k, k.x, dx, N * C, out, R, N * C) < 3e-3);
    CHECK(fd_check(ln_fwd, &k, k.w, dw, C, out, R, N * C) < 3e-3);
    CHECK(fd_check(ln_fwd, &k, k.b, db, C, out, R, N * C) < 3e-3);
    free(k.x), free(k.w), free(k.b), free(out), free(R), free(dx), free(dw), free(db);
}

/* -------------------------------------------------------------- matmul */
typedef struct { float *x, *w, *b; int N, C, OC; } mm_ctx;
static void mm_fwd(float *out, void *c) {
    mm_ctx *k = c;
    matmul_forward(out, k->x, k->w, k->b, k->N, k->C, k->OC);
}
static void test_matmul(int N, int C, int OC) {
    mm_ctx k = {rvec(N * C), rvec(C * OC), rvec(OC), N, C, OC};
    float *out = zvec(N * OC), *R = rvec(N * OC);
    float *dx = zvec(N * C), *dw = zvec(C * OC), *db = zvec(OC);
    float *dx2 = zvec(N * C), *dw2 = zvec(C * OC), *db2 = zvec(OC);
    matmul_backward(dx, dw, db, R, k.x, k.w, N, C, OC);
    matmul_backward_naive(dx2, dw2, db2, R, k.x, k.w, N, C, OC);
    double d = 0;
    for (int i = 0; i < N * C; i++) d = fmax(d, fabs(dx[i] - dx2[i]));
    for (int i = 0; i < C * OC; i++) d = fmax(d, fabs(dw[i] - dw2[i]));
    for (int i = 0; i < OC; i++) d = fmax(d, fabs(db[i] - db2[i]));
    CHECK(d < 1e-4);
    CHECK(fd_check(mm_fwd, &k, k.x, dx, N * C, out, R, N * OC) < 3e-3);
    CHECK(fd_check(mm_fwd, &k, k.w, dw, C * OC, out, R, N * OC) < 3e-3);
    CHECK(fd_check(mm_fwd, &k, k.b, db, OC, out, R, N * OC) < 3e-3);
    free(k.x), free(k.w), free(k.b), free(out), free(R);
    free(dx), free(dw), free(db), free(dx2), free(dw2), free(db2);
}

/* ------------------------------------------------------------- LM head */
typedef struct { float *x, *wte; int N, C, V; } lm_ctx;
static void lm_fwd(float *out, void *c) {
    lm_ctx *k = c;
    lmhead_forward(out, k->x, k->wte, k->N, k->C, k->V);
}
static void test_lmhead(void) {
    int N = 3, C = 8, V = 13;
    lm_ctx k = {rvec(N * C), rvec(V * C), N, C, V};
    float *out = zvec(N * V), *R = rvec(N * V), *dx = zvec(N * C), *dw = zvec(V * C);
    lmhead_backward(dx, dw, R, k.x, k.wte, N, C, V);
    CHECK(fd_check(lm_fwd, &k, k.x, dx, N * C, out, R, N * V) < 3e-3);
    CHECK(fd_check(lm_fwd, &k, k.wte, dw, V * C, out, R, N * V) < 3e-3);
    free(k.x), free(k.wte), free(out), free(R), free(dx), free(dw);
}

/* ----------------------------------------------------------- attention */
typedef struct { float *qkv; int B, T, C, NH; } at_ctx;
static void at_fwd(float *out, void *c) {
    at_ctx *k = c;
    size_t s3 = 3 * (size_t)k->C, bs = (size_t)k->T * s3;
    attention_forward(out, NULL, k->qkv, k->qkv + k->C, k->qkv + 2 * k->C, k->B, k->T, k->T,
                      k->C, k->NH, s3, bs, s3, bs);
}
/* T below 16 goes a row at a time; from 16 by matrix products */
static void test_attention(int B, int T, int C, int NH) {
    at_ctx k = {rvec(B * T * 3 * C), B, T, C, NH};
    float *out = zvec(B * T * C), *R = rvec(B * T * C), *att = zvec(B * NH * T * T);
    float *dqkv = zvec(B * T * 3 * C);
    size_t s3 = 3 * (size_t)C, bs = (size_t)T * s3;
    attention_forward(out, att, k.qkv, k.qkv + C, k.qkv + 2 * C, B, T, T, C, NH, s3, bs, s3, bs);
    attention_backward(dqkv, R, k.qkv, att, B, T, C, NH, 0.0f, 0);
    CHECK(fd_check(at_fwd, &k, k.qkv, dqkv, B * T * 3 * C, out, R, B * T * C) < 3e-3);
    free(k.qkv), free(out), free(R), free(att), free(dqkv);
}

/* ------------------------------------------- encoder, gelu, cross-entropy */
typedef struct { int *tok; float *wte, *wpe; int B, T, C; } en_ctx;
static void en_fwd(float *out, void *c) {
    en_ctx *k = c;
    encoder_forward(out, k->tok, k->wte, k->wpe, k->B, k->T, k->C, 0);
}
typedef struct { float *x; size_t n; } ge_ctx;
static void ge_fwd(float *out, void *c) {
    ge_ctx *k = c;
    gelu_forward(out, k->x, k->n);
}
typedef struct { float *logits; int *tgt; int N, V; } ce_ctx;
static void ce_fwd(float *out, void *c) { /* out[0] = mean loss over counted rows */
    ce_ctx *k = c;
    float l[4];
    crossentropy_forward(l, k->logits, k->tgt, k->N, k->V);
    out[0] = (l[0] + l[1] + l[3]) / 3.0f;
}
static void test_small_ops(void) {
    int B = 2, T = 3, C = 4, V = 5, tok[6] = {1, 4, 1, 0, 2, 1};
    en_ctx e = {tok, rvec(V * C), rvec(T * C), B, T, C};
    float *out = zvec(B * T * C), *R = rvec(B * T * C), *dwte = zvec(V * C), *dwpe = zvec(T * C);
    encoder_backward(dwte, dwpe, R, tok, B, T, C);
    CHECK(fd_check(en_fwd, &e, e.wte, dwte, V * C, out, R, B * T * C) < 3e-3);
    CHECK(fd_check(en_fwd, &e, e.wpe, dwpe, T * C, out, R, B * T * C) < 3e-3);

    ge_ctx g = {rvec(20), 20};
    for (int i = 0; i < 20; i++) g.x[i] *= 4;
    float *gout = zvec(20), *gR = rvec(20), *dg = zvec(20);
    gelu_backward(dg, g.x, gR, 20);
    CHECK(fd_check(ge_fwd, &g, g.x, dg, 20, gout, gR, 20) < 3e-3);

    int tgt[4] = {3, 0, -1, 4};
    ce_ctx c = {rvec(4 * 7), tgt, 4, 7};
    float one = 1.0f, lout, *dl = zvec(4 * 7);
    crossentropy_softmax_backward(dl, c.logits, tgt, 1.0f / 3.0f, 4, 7);
    CHECK(fd_check(ce_fwd, &c, c.logits, dl, 4 * 7, &lout, &one, 1) < 3e-3);
    free(e.wte), free(e.wpe), free(out), free(R), free(dwte), free(dwpe);
    free(g.x), free(gout), free(gR), free(dg), free(c.logits), free(dl);
}

int main(void) {
    test_layernorm();
    test_matmul(4, 6, 9);
    test_matmul(1, 5, 7);
    test_lmhead();
    test_attention(2, 5, 12, 3);
    test_attention(2, 20, 16, 2);
    test_small_ops();
    return CHECK_DONE();
}
