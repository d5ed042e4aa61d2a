/* test_gemm.c: gpt2__gemm against a plain reference in double, for every
   implementation this build and CPU have (portable, the own AVX512_BF16
   kernel, oneDNN, oneDNN on rounded copies), both precisions, every
   transpose, odd sizes around the kernels' tiles and blocks, alpha and
   beta, padded strides, bf16 inputs; the conversion; threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "gemm.h"
#include "internal.h"

static const char *const impls[] = {"portable", "avx512bf16", "dnnl", "dnnl-emulated",
                                    "auto"};
#define NIMPL (int)(sizeof impls / sizeof impls[0])

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}

static float rb(float x) { return gpt2__bf16_to_f32(gpt2__f32_to_bf16(x)); }

/* One product's inputs, stored as the transposes say, with padded rows. */
typedef struct {
    char ta, tb;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    float *A, *B, *C0;      /* C0: C before the product */
    uint16_t *Ab, *Bb;      /* A, B as bf16 */
    double *ref, *tol;      /* expected C and the tolerance per element */
} prod;

static size_t stored(int rows_n, int rows_t, bool t, int ld) {
    return (size_t)(t ? rows_t : rows_n) * ld;
}

/* Reference in double: C = alpha op(A) op(B) + beta C0, inputs rounded to
   bf16 when bf16. The tolerance allows float32 sums in any order:
   (K + 2) * 2^-23 * sum |a b|, plus the rounding of the beta term. */
static void reference(prod *p, bool bf16) {
    bool ta = p->ta == 'T', tb = p->tb == 'T';
    for (int i = 0; i < p->M; i++)
        for (int j = 0; j < p->N; j++) {
            double s = 0, sa = 0;
            for (int k = 0; k < p->K; k++) {
                float a = p->A[ta ? (size_t)k * p->lda + i : (size_t)i * p->lda + k];
                float b = p->B[tb ? (size_t)j * p->ldb + k : (size_t)k * p->ldb + j];
                if (bf16) a = rb(a), b = rb(b);
                s += (double)a * b;
                sa += fabs((double)a * b);
            }
            double c0 = p->C0[(size_t)i * p->ldc + j];
            double bt = p->beta == 0.0f ? 0.0 : p->beta * c0;
            p->ref[(size_t)i * p->N + j] = p->alpha * s + bt;
            p->tol[(size_t)i * p->N + j] =
                ((p->K + 2) * fabs(p->alpha) * sa + fabs(bt)) * ldexp(1.0, -23) + 1e-30;
        }
}

static void prod_make(prod *p, char ta, char tb, int M, int N, int K, int pad,
                      float alpha, float beta) {
    *p = (prod){ta, tb, M, N, K, 0, 0, 0, alpha, beta, 0, 0, 0, 0, 0, 0, 0};
    p->lda = (ta == 'T' ? M : K) + pad;
    p->ldb = (tb == 'T' ? K : N) + pad;
    p->ldc = N + pad;
    size_t na = stored(M, K, ta == 'T', p->lda), nb = stored(K, N, tb == 'T', p->ldb);
    size_t nc = (size_t)M * p->ldc;
    p->A = malloc(sizeof(float) * (na + 1));
    p->B = malloc(sizeof(float) * (nb + 1));
    p->Ab = malloc(sizeof(uint16_t) * (na + 1));
    p->Bb = malloc(sizeof(uint16_t) * (nb + 1));
    p->C0 = malloc(sizeof(float) * (nc + 1));
    p->ref = malloc(sizeof(double) * ((size_t)M * N + 1));
    p->tol = malloc(sizeof(double) * ((size_t)M * N + 1));
    for (size_t i = 0; i < na; i++) p->A[i] = frand();
    for (size_t i = 0; i < nb; i++) p->B[i] = frand();
    /* beta == 0: C must not be read, so NaN there must not show */
    for (size_t i = 0; i < nc; i++) p->C0[i] = beta == 0.0f ? NAN : frand();
    for (size_t i = 0; i < na; i++) p->Ab[i] = gpt2__f32_to_bf16(p->A[i]);
    for (size_t i = 0; i < nb; i++) p->Bb[i] = gpt2__f32_to_bf16(p->B[i]);
}

static void prod_free(prod *p) {
    free(p->A), free(p->B), free(p->Ab), free(p->Bb), free(p->C0);
    free(p->ref), free(p->tol);
}

/* Runs the product with inputs of types at, bt; compares with the
   reference; the padding of C must stay as it was. Prints the first
   mismatch and the case. */
static void run_check(const prod *p, gpt2__gemm_prec prec, gpt2__gemm_in at,
                      gpt2__gemm_in bt, const char *impl) {
    size_t nc = (size_t)p->M * p->ldc;
    float *C = malloc(sizeof(float) * (nc + 1));
    memcpy(C, p->C0, sizeof(float) * nc);
    const void *A = at == GPT2__GEMM_IN_BF16 ? (const void *)p->Ab : p->A;
    const void *B = bt == GPT2__GEMM_IN_BF16 ? (const void *)p->Bb : p->B;
    gpt2__gemm_ex(p->ta, p->tb, p->M, p->N, p->K, p->alpha, A, at, p->lda, B, bt,
                  p->ldb, p->beta, C, p->ldc, prec);
    int bad = 0;
    for (int i = 0; i < p->M && !bad; i++)
        for (int j = 0; j < p->ldc && !bad; j++) {
            size_t o = (size_t)i * p->ldc + j;
            bool ok;
            if (j >= p->N) /* padding: untouched (NaN stays NaN) */
                ok = memcmp(&C[o], &p->C0[o], sizeof(float)) == 0;
            else
                ok = fabs(C[o] - p->ref[(size_t)i * p->N + j]) <= p->tol[(size_t)i * p->N + j];
            if (!ok) {
                bad = 1;
                fprintf(stderr,
                        "  %s %s %c%c M=%d N=%d K=%d alpha=%g beta=%g in=%d%d: C[%d,%d] = %.9g, "
                        "expected %.9g +- %.3g\n",
                        impl, prec == GPT2__PREC_BF16 ? "bf16" : "f32", p->ta, p->tb, p->M,
                        p->N, p->K, p->alpha, p->beta, at, bt, i, j, C[o],
                        j < p->N ? p->ref[(size_t)i * p->N + j] : p->C0[o],
                        j < p->N ? p->tol[(size_t)i * p->N + j] : 0.0);
            }
        }
    CHECK(!bad);
    free(C);
}

/* Every implementation present, on one product, both precisions. */
static void check_product(char ta, char tb, int M, int N, int K, int pad,
                          float alpha, float beta, bool bf16_inputs) {
    prod p;
    prod_make(&p, ta, tb, M, N, K, pad, alpha, beta);
    for (int bf = 0; bf < 2; bf++) {
        gpt2__gemm_prec prec = bf ? GPT2__PREC_BF16 : GPT2__PREC_F32;
        reference(&p, bf);
        for (int x = 0; x < NIMPL; x++) {
            if (!gpt2__gemm_force(impls[x])) continue;
            run_check(&p, prec, GPT2__GEMM_IN_F32, GPT2__GEMM_IN_F32, impls[x]);
            if (bf && bf16_inputs) {
                run_check(&p, prec, GPT2__GEMM_IN_BF16, GPT2__GEMM_IN_F32, impls[x]);
                run_check(&p, prec, GPT2__GEMM_IN_F32, GPT2__GEMM_IN_BF16, impls[x]);
                run_check(&p, prec, GPT2__GEMM_IN_BF16, GPT2__GEMM_IN_BF16, impls[x]);
            }
        }
    }
    gpt2__gemm_force("auto");
    prod_free(&p);
}

static void test_shapes(void) {
    static const int sizes[] = {1, 3, 17, 65};
    static const char tr[] = {'N', 'T'};
    static const float ab[][2] = {{1, 0}, {0.5f, 1}, {-1.5f, 0.25f}};
    int n = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 4; k++, n++)
                        check_product(tr[a], tr[b], sizes[i], sizes[j], sizes[k], n % 3 == 0 ? 3 : 0,
                                      ab[n % 3][0], ab[n % 3][1], n % 5 == 0);
    /* past the blocks: K > 256 (two k blocks, odd), M > 128 (row
       blocks), N > 3072 (column blocks) */
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            check_product(tr[a], tr[b], 257, 65, 257, 1, 1.0f, 0.0f, true);
            check_product(tr[a], tr[b], 17, 257, 513, 0, 0.5f, 1.0f, false);
            /* a last panel pair of 9 rows or columns (16 + 9) */
            check_product(tr[a], tr[b], 25, 41, 19, 2, 1.0f, 0.5f, true);
            check_product(tr[a], tr[b], 137, 9, 3, 0, -1.0f, 0.0f, false);
        }
    check_product('N', 'T', 3, 3100, 33, 0, 1.0f, 1.0f, true);
    /* inputs whose copies pass the limit: oneDNN gets them in parts of
       rows of op(A), then of columns of op(B) */
    size_t old = gpt2__gemm_convert_limit(40000);
    check_product('N', 'N', 300, 3, 210, 1, 1.0f, 0.5f, false);
    check_product('T', 'T', 300, 3, 210, 0, 1.0f, 0.0f, false);
    check_product('T', 'T', 3, 300, 210, 1, 1.0f, 0.5f, false);
    check_product('N', 'N', 3, 300, 210, 0, 2.0f, 0.0f, false);
    check_product('N', 'T', 300, 290, 210, 0, 1.0f, 1.0f, true);
    CHECK(gpt2__gemm_convert_limit(old) == 40000);
    check_product('T', 'N', 130, 1600, 5, 2, 2.0f, -1.0f, false);
}

/* The bf16 path rounds its inputs and the f32 path does not: 1 + 2^-10
   is 1 in bf16. Each of K products is then 1 (bf16) or 1 + 2^-10. */
static void test_rounding(void) {
    enum { M = 5, N = 40, K = 64 };
    static float A[M * K], B[K * N], C[M * N];
    for (int i = 0; i < M * K; i++) A[i] = 1.0f + 1.0f / 1024;
    for (int i = 0; i < K * N; i++) B[i] = 1.0f;
    for (int x = 0; x < NIMPL; x++) {
        if (!gpt2__gemm_force(impls[x])) continue;
        gpt2__gemm('N', 'N', M, N, K, 1.0f, A, K, B, N, 0.0f, C, N, GPT2__PREC_BF16);
        CHECK(C[0] == (float)K && C[M * N - 1] == (float)K);
        gpt2__gemm('N', 'N', M, N, K, 1.0f, A, K, B, N, 0.0f, C, N, GPT2__PREC_F32);
        CHECK_NEAR(C[0], K * (1.0 + 1.0 / 1024), 1e-6);
        CHECK_NEAR(C[M * N - 1], K * (1.0 + 1.0 / 1024), 1e-6);
    }
    gpt2__gemm_force("auto");
}

/* Empty products, K == 0 and alpha == 0: C = beta C, A and B unread. */
static void test_degenerate(void) {
    float C[6] = {1, 2, 3, 4, 5, 6}, one = 1.0f;
    gpt2__gemm('N', 'N', 0, 3, 4, 1.0f, NULL, 4, NULL, 3, 0.0f, C, 3, GPT2__PREC_BF16);
    gpt2__gemm('N', 'N', 2, 0, 4, 1.0f, NULL, 4, NULL, 1, 0.0f, C, 3, GPT2__PREC_F32);
    CHECK(C[0] == 1 && C[5] == 6);
    gpt2__gemm('N', 'N', 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 2.0f, C, 3, GPT2__PREC_BF16);
    CHECK(C[0] == 2 && C[5] == 12);
    gpt2__gemm('N', 'N', 2, 3, 1, 0.0f, &one, 1, &one, 3, 0.0f, C, 3, GPT2__PREC_F32);
    CHECK(C[0] == 0 && C[5] == 0);
}

static void test_convert(void) {
    enum { N = 100003 };
    float *x = malloc(sizeof(float) * N);
    uint16_t *y = malloc(sizeof(uint16_t) * N);
    for (int i = 0; i < N; i++) x[i] = frand() * 1000.0f;
    /* exact ties: to even, up and down */
    uint32_t ties[] = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x7f7fffffu, 0x00000000u,
                       0x80000000u, 0x7f800000u, 0xff800000u, 0x3f800001u, 0x3f807fffu};
    for (int i = 0; i < 10; i++) memcpy(&x[i], &ties[i], 4);
    size_t lens[] = {0, 1, 15, 16, 17, 31, 33, 1000, N};
    for (int l = 0; l < 9; l++) {
        memset(y, 0xff, sizeof(uint16_t) * N);
        gpt2__bf16_round_n(y, x, lens[l]);
        int bad = 0;
        for (size_t i = 0; i < lens[l]; i++) bad += y[i] != gpt2__f32_to_bf16(x[i]);
        if (lens[l] < N) bad += y[lens[l]] != 0xffff; /* nothing past n */
        CHECK(bad == 0);
    }
    float nan = NAN;
    gpt2__bf16_round_n(y, &nan, 1);
    CHECK(isnan(gpt2__bf16_to_f32(y[0])));
    free(x);
    free(y);
}

/* More shapes than a thread caches primitives for, then the first again */
static void test_cache(void) {
    for (int round = 0; round < 2; round++)
        for (int m = 2; m < 42; m += (round ? 13 : 1))
            check_product('N', 'N', m, 9, 7, 0, 1.0f, 0.0f, false);
}

typedef struct {
    int seed, failed;
} worker_arg;

/* Several threads at once, each its own shapes, bf16 and f32 */
static void *worker(void *arg) {
    worker_arg *w = arg;
    int M = 20 + 7 * w->seed, N = 300 + 5 * w->seed, K = 100 + 3 * w->seed;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C = malloc(sizeof(float) * M * N), *R = malloc(sizeof(float) * M * N);
    uint32_t s = 12345u + w->seed;
    for (int i = 0; i < M * K; i++) A[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    for (int i = 0; i < K * N; i++) B[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    for (int rep = 0; rep < 20; rep++) {
        gpt2__gemm_prec prec = rep % 2 ? GPT2__PREC_BF16 : GPT2__PREC_F32;
        gpt2__gemm_naive('N', 'T', M, N, K, 1.0f, A, GPT2__GEMM_IN_F32, K, B, GPT2__GEMM_IN_F32, K,
                         0.0f, R, N, prec);
        gpt2__gemm('N', 'T', M, N, K, 1.0f, A, K, B, K, 0.0f, C, N, prec);
        for (int i = 0; i < M * N; i++)
            if (!(fabsf(C[i] - R[i]) <= 1e-4f)) w->failed++;
    }
    free(A), free(B), free(C), free(R);
    gpt2__gemm_thread_release();
    return NULL;
}

static void test_threads(void) {
    enum { NT = 4 };
    pthread_t t[NT];
    worker_arg w[NT];
    for (int i = 0; i < NT; i++) {
        w[i] = (worker_arg){i, 0};
        CHECK(pthread_create(&t[i], NULL, worker, &w[i]) == 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].failed == 0);
    }
}

static void test_choice(void) {
    CHECK(!gpt2__gemm_force("no-such"));
    CHECK(gpt2__gemm_force("portable"));
    CHECK(strcmp(gpt2__gemm_bf16_impl(), "portable") == 0);
    CHECK(gpt2__gemm_force("auto"));
    const char *impl = gpt2__gemm_bf16_impl();
    bool fast = strcmp(impl, "dnnl") == 0 || strcmp(impl, "avx512bf16") == 0;
    CHECK(gpt2__gemm_bf16_available() == fast);
    printf("bf16 products: %s (%s)\n", impl, fast ? "a bf16 unit" : "emulated");
#ifdef __x86_64__
    /* where the CPU has AVX512_BF16 the own kernel must be there */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bf16")) CHECK(gpt2__gemm_force("avx512bf16"));
    gpt2__gemm_force("auto");
#endif
}

int main(void) {
    test_choice();
    test_convert();
    test_rounding();
    test_degenerate();
    test_shapes();
    test_cache();
    test_threads();
    gpt2__gemm_thread_release();
    return CHECK_DONE();
}
