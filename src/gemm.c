/* gemm.c: gpt2__gemm (see gemm.h): oneDNN's sgemm and bf16 matmul where
   built with oneDNN, a blocked driver for gpt2c's own micro-kernels (the
   portable one here, the AVX512_BF16 one in gemm_bf16_x86.c), the
   per-thread caches, and the choice between them.

   Why oneDNN's matmul primitive for bf16: on an AVX512_BF16 CPU without
   AMX (Zen 5, 2 threads) it runs GPT-2's training products at 850-940
   GFLOP/s against 310-520 for oneDNN's sgemm (register-bound peaks
   measured: 1065 bf16, 535 fp32), converting the float32 inputs
   included; the own kernel reaches 550-920. A primitive is made per
   shape (a JIT compile, about 1 ms), so each calling thread caches the
   ones it used last. */
#include "gemm.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

#ifdef GPT2_USE_DNNL
#include <dnnl.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* -std=c11 turns off GCC's contraction of a * b + c into one FMA, which
   halves a multiply-add kernel's speed; the portable kernel asks for it
   (the result differs from separate rounding only in the last bit). */
#if defined(__GNUC__) && !defined(__clang__)
#define GEMM_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define GEMM_CONTRACT
#endif

/* Below this many multiply-adds a product stays on one thread: waking
   the team costs more than it saves. */
#define PARALLEL_MIN_MACS ((size_t)1 << 18)

/* ------------------------------------------------------- small helpers */

/* f rounded to the nearest bfloat16 (ties to even), as a float32; NaN
   stays NaN (quieted) */
static inline float round_bf16(float f) {
    return gpt2__bf16_to_f32(gpt2__f32_to_bf16(f));
}

/* Element idx of input X (stored as t), as float32 (rounded when asked) */
static inline float in_val(const void *X, gpt2__gemm_in t, size_t idx,
                           bool round) {
    if (t == GPT2__GEMM_IN_BF16)
        return gpt2__bits_f32((uint32_t)((const uint16_t *)X)[idx] << 16);
    float v = ((const float *)X)[idx];
    return round ? round_bf16(v) : v;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

static int threads_for(size_t macs) {
#ifdef _OPENMP
    return macs >= PARALLEL_MIN_MACS ? omp_get_max_threads() : 1;
#else
    (void)macs;
    return 1;
#endif
}

/* C (M,N) = beta * C; beta == 0 writes zeros without reading */
static void scale_c(float *C, int M, int N, int ldc, float beta) {
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, sizeof(float) * N);
        else
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* *p grown to at least need bytes (64-byte aligned; the old contents are
   not kept). NULL, with *p freed, when memory runs out. */
static void *grow(void **p, size_t *cap, size_t need) {
    if (need <= *cap && *p) return *p;
    free(*p);
    *p = NULL;
    *cap = 0;
    size_t bytes = (need + 63) & ~(size_t)63;
    if (bytes < need || posix_memalign(p, 64, bytes ? bytes : 64) != 0) {
        *p = NULL;
        return NULL;
    }
    *cap = bytes;
    return *p;
}

/* ------------------------------------------------- per-thread context */

#ifdef GPT2_USE_DNNL
/* Primitives kept per calling thread; a training step uses about 15
   shapes, prefill a few per prompt length. */
#define PRIM_CACHE 32

typedef struct {
    bool ta, tb;
    int M, N, K, lda, ldb, ldc;
    uint32_t alpha, beta; /* bit patterns */
} prim_key;

typedef struct {
    prim_key key;
    dnnl_primitive_t prim; /* NULL: empty, or failed */
    bool failed;           /* no primitive for key: not asked again */
    dnnl_memory_desc_t a, b, c;
    size_t scratch; /* bytes of scratchpad it needs */
    unsigned long used; /* ctx->tick at the last use */
} prim_entry;
#endif

typedef struct {
    void *pack; /* the blocked driver's packed panels */
    size_t pack_cap;
    void *conv[2]; /* bf16 (or rounded f32) copies of A and B */
    size_t conv_cap[2];
    void *operand; /* gpt2__gemm_operand_buffer's, in huge pages */
    size_t operand_cap;
#ifdef GPT2_USE_DNNL
    void *scratch; /* oneDNN's scratchpad (user-managed mode) */
    size_t scratch_cap;
    dnnl_stream_t stream;
    prim_entry cache[PRIM_CACHE];
    unsigned long tick;
#endif
} thread_ctx;

static pthread_key_t ctx_key;
static bool ctx_key_ok;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p) {
    thread_ctx *c = p;
    if (!c) return;
    free(c->pack);
    free(c->conv[0]);
    free(c->conv[1]);
    gpt2__free_aligned(c->operand);
#ifdef GPT2_USE_DNNL
    free(c->scratch);
    for (int i = 0; i < PRIM_CACHE; i++)
        if (c->cache[i].prim) dnnl_primitive_destroy(c->cache[i].prim);
    if (c->stream) dnnl_stream_destroy(c->stream);
#endif
    free(c);
}

static void ctx_key_make(void) {
    ctx_key_ok = pthread_key_create(&ctx_key, ctx_free) == 0;
}

/* The calling thread's context, made on first use; NULL without memory */
static thread_ctx *ctx_get(void) {
    pthread_once(&ctx_once, ctx_key_make);
    if (!ctx_key_ok) return NULL;
    thread_ctx *c = pthread_getspecific(ctx_key);
    if (c) return c;
    c = calloc(1, sizeof *c);
    if (c && pthread_setspecific(ctx_key, c) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

void *gpt2__gemm_operand_buffer(size_t bytes) {
    thread_ctx *c = ctx_get();
    if (!c) return NULL;
    if (bytes <= c->operand_cap && c->operand) return c->operand;
    gpt2__free_aligned(c->operand);
    c->operand = gpt2__alloc_huge(bytes ? bytes : 1, "matmul operand");
    c->operand_cap = c->operand ? bytes : 0;
    return c->operand;
}

void gpt2__gemm_thread_release(void) {
    pthread_once(&ctx_once, ctx_key_make);
    if (!ctx_key_ok) return;
    thread_ctx *c = pthread_getspecific(ctx_key);
    if (!c) return;
    pthread_setspecific(ctx_key, NULL);
    ctx_free(c);
}

/* ------------------------------------------------ the naive reference */

void gpt2__gemm_naive(char ta, char tb, int M, int N, int K, float alpha,
                      const void *A, gpt2__gemm_in at, int lda, const void *B,
                      gpt2__gemm_in bt, int ldb, float beta, float *C,
                      int ldc, gpt2__gemm_prec prec) {
    bool round = prec == GPT2__PREC_BF16;
    bool tra = ta == 'T' || ta == 't', trb = tb == 'T' || tb == 't';
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                size_t ia = tra ? (size_t)k * lda + i : (size_t)i * lda + k;
                size_t ib = trb ? (size_t)j * ldb + k : (size_t)k * ldb + j;
                acc += (double)in_val(A, at, ia, round) * in_val(B, bt, ib, round);
            }
            float *c = C + (size_t)i * ldc + j;
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

static void naive_args(const gpt2__gemm_args *g) {
    gpt2__gemm_naive(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->M, g->N, g->K,
                     g->alpha, g->A, g->at, g->lda, g->B, g->bt, g->ldb,
                     g->beta, g->C, g->ldc,
                     g->round ? GPT2__PREC_BF16 : GPT2__PREC_F32);
}

/* ----------------------------------------------- the portable kernel */

/* A 6 x 16 tile: six vector accumulators of 16 floats (one zmm each
   with AVX-512, two ymm with AVX2; 12 + 3 registers fit AVX2's 16). */
#define PMR 6
#define PNR 16
typedef float vf16 __attribute__((vector_size(64)));

static void pack_a_portable(void *dst, const gpt2__gemm_args *g, int i0,
                            int m, int k0, int kc) {
    for (int q = 0; q < m; q += PMR) {
        float *d = (float *)dst + (size_t)q * kc;
        int mp = imin(PMR, m - q);
        for (int k = 0; k < kc; k++) {
            for (int i = 0; i < PMR; i++) {
                size_t r = (size_t)(i0 + q + i), kk = (size_t)(k0 + k);
                size_t idx = g->ta ? kk * g->lda + r : r * g->lda + kk;
                d[(size_t)k * PMR + i] = i < mp ? in_val(g->A, g->at, idx, g->round) : 0.0f;
            }
        }
    }
}

static void pack_b_portable(void *dst, const gpt2__gemm_args *g, int j0,
                            int n, int k0, int kc) {
    float *d = dst;
    for (int k = 0; k < kc; k++)
        for (int j = 0; j < PNR; j++) {
            size_t c = (size_t)(j0 + j), kk = (size_t)(k0 + k);
            size_t idx = g->tb ? c * g->ldb + kk : kk * g->ldb + c;
            d[(size_t)k * PNR + j] = j < n ? in_val(g->B, g->bt, idx, g->round) : 0.0f;
        }
}

GPT2_CLONES GEMM_CONTRACT
static void micro_portable(int kc, const void *a_, const void *b_, float *c,
                           int ldc, int m, int n, float alpha, float beta) {
    const float *a = a_, *b = b_;
    vf16 acc[PMR];
    for (int i = 0; i < PMR; i++) acc[i] = (vf16){0};
    for (int k = 0; k < kc; k++) {
        vf16 bv;
        memcpy(&bv, b + (size_t)k * PNR, sizeof bv);
#pragma GCC unroll 8
        for (int i = 0; i < PMR; i++) acc[i] = acc[i] + a[(size_t)k * PMR + i] * bv;
    }
    float out[PMR][PNR];
    memcpy(out, acc, sizeof out);
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < n; j++) ci[j] = alpha * out[i][j];
        else
            for (int j = 0; j < n; j++) ci[j] = alpha * out[i][j] + beta * ci[j];
    }
}

static const gpt2__gemm_kernel portable_kernel = {
    .name = "portable",
    .mr = PMR, .nr = PNR, .kstep = 1,
    .mc = PMR * 16, .nc = PNR * 96, .kc = 256,
    .esize = sizeof(float),
    .pack_a = pack_a_portable,
    .pack_b = pack_b_portable,
    .micro = micro_portable,
};

/* ------------------------------------------------- the blocked driver */

/* column panels of op(B) one task multiplies, per block of mc rows */
#define TASK_PANELS 4

/* Goto's loop order: for each block of nc columns and kc of k, the team
   packs op(B)'s panels (shared), then splits (row block, column chunk)
   tasks; each thread packs its row block of op(A) once for consecutive
   tasks, and the micro-kernel walks panels with op(B)'s in L1 and op(A)'s
   block in L2. The first k block applies beta; later ones add. false if
   the packing buffers cannot be had (nothing was done). */
static bool blocked(const gpt2__gemm_kernel *kn, const gpt2__gemm_args *g) {
    thread_ctx *ctx = ctx_get();
    if (!ctx) return false;
    int M = g->M, N = g->N, K = g->K, mr = kn->mr, nr = kn->nr;
    int kcp = ceil_div(imin(K, kn->kc), kn->kstep) * kn->kstep;
    size_t apanel = (size_t)kcp * mr * kn->esize, bpanel = (size_t)kcp * nr * kn->esize;
    size_t abytes = (apanel * ceil_div(imin(M, kn->mc), mr) + 63) & ~(size_t)63;
    size_t bbytes = (bpanel * ceil_div(imin(N, kn->nc), nr) + 63) & ~(size_t)63;
    int nt = threads_for((size_t)M * N * K);
    char *buf = grow(&ctx->pack, &ctx->pack_cap, bbytes + abytes * nt);
    if (!buf) return false;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        char *abuf = buf + bbytes + abytes * omp_get_thread_num();
#else
        char *abuf = buf + bbytes;
#endif
        for (int jc = 0; jc < N; jc += kn->nc) {
            int ncb = imin(kn->nc, N - jc), npan = ceil_div(ncb, nr);
            for (int pc = 0; pc < K; pc += kn->kc) {
                int kb = imin(kn->kc, K - pc), kbp = ceil_div(kb, kn->kstep) * kn->kstep;
                size_t bstep = (size_t)kbp * nr * kn->esize, astep = (size_t)kbp * mr * kn->esize;
                float beta = pc == 0 ? g->beta : 1.0f;
#pragma omp for schedule(static)
                for (int p = 0; p < npan; p++)
                    kn->pack_b(buf + p * bstep, g, jc + p * nr, imin(nr, ncb - p * nr), pc, kb);
                int nib = ceil_div(M, kn->mc), njb = ceil_div(npan, TASK_PANELS);
                int packed = -1;
#pragma omp for schedule(static)
                for (int t = 0; t < nib * njb; t++) {
                    int ib = t / njb, jb = t % njb;
                    int i0 = ib * kn->mc, mb = imin(kn->mc, M - i0);
                    if (ib != packed) {
                        kn->pack_a(abuf, g, i0, mb, pc, kb);
                        packed = ib;
                    }
                    int p1 = imin(npan, (jb + 1) * TASK_PANELS);
                    for (int p = jb * TASK_PANELS; p < p1; p++) {
                        int j = jc + p * nr, nb = imin(nr, N - j);
                        for (int q = 0; q < mb; q += mr)
                            kn->micro(kbp, abuf + (size_t)(q / mr) * astep, buf + p * bstep,
                                      g->C + (size_t)(i0 + q) * g->ldc + j, g->ldc,
                                      imin(mr, mb - q), nb, g->alpha, beta);
                    }
                }
            }
        }
    }
    return true;
}

/* ------------------------------------------------------ conversions */

/* n values (no threads) */
static void round_serial(uint16_t *dst, const float *src, size_t n) {
    if (gpt2__bf16_round_x86(dst, src, n)) return;
    for (size_t i = 0; i < n; i++) dst[i] = gpt2__f32_to_bf16(src[i]);
}

#define CONVERT_CHUNK ((size_t)1 << 15)

void gpt2__bf16_round_n(uint16_t *dst, const float *src, size_t n) {
    long chunks = (long)((n + CONVERT_CHUNK - 1) / CONVERT_CHUNK);
#pragma omp parallel for schedule(static) if (chunks > 2)
    for (long c = 0; c < chunks; c++) {
        size_t i0 = (size_t)c * CONVERT_CHUNK;
        size_t len = n - i0 < CONVERT_CHUNK ? n - i0 : CONVERT_CHUNK;
        round_serial(dst + i0, src + i0, len);
    }
}

/* Bytes of converted copy one part of a oneDNN product may need per
   input, so that a thread's conversion buffers stay bounded however
   large the product (the LM head's dlogits at 2048 tokens would want 206
   MB in bf16). At 128 MB GPT-2 124M's products at 256 tokens are not
   split (wte: 77 MB); splitting its LM head at 32 MB cost 6-10% there. */
#define CONVERT_MAX_BYTES ((size_t)128 << 20)
static _Atomic size_t convert_max = CONVERT_MAX_BYTES;

size_t gpt2__gemm_convert_limit(size_t bytes) {
    return atomic_exchange(&convert_max, bytes ? bytes : CONVERT_MAX_BYTES);
}

#ifdef GPT2_USE_DNNL
/* rows x cols of src (row stride ld) into dst (row stride cols): bf16
   bit patterns, or with as_f32 float32 values rounded to bf16 (from a
   float32 or bf16 source) */
static void convert_rows(void *dst, bool as_f32, const void *src,
                         gpt2__gemm_in t, int rows, int cols, int ld) {
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= CONVERT_CHUNK)
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * cols, s = (size_t)r * ld;
        if (!as_f32 && t == GPT2__GEMM_IN_F32) {
            round_serial((uint16_t *)dst + o, (const float *)src + s, cols);
        } else if (!as_f32) {
            memcpy((uint16_t *)dst + o, (const uint16_t *)src + s, sizeof(uint16_t) * cols);
        } else {
            float *d = (float *)dst + o;
            for (int j = 0; j < cols; j++) d[j] = in_val(src, t, s + j, true);
        }
    }
}

/* An input as oneDNN's bf16 matmul (as_f32 false) or sgemm on rounded
   copies (as_f32 true) takes it: the caller's bf16 as it is, otherwise a
   converted contiguous copy in the thread's slot; *ld set to its row
   stride. NULL without memory. */
static const void *prepared(thread_ctx *ctx, int slot, bool as_f32,
                            const void *X, gpt2__gemm_in t, int rows,
                            int cols, int *ld) {
    if (!as_f32 && t == GPT2__GEMM_IN_BF16) return X;
    size_t esz = as_f32 ? sizeof(float) : sizeof(uint16_t);
    void *d = grow(&ctx->conv[slot], &ctx->conv_cap[slot], (size_t)rows * cols * esz);
    if (!d) return NULL;
    convert_rows(d, as_f32, X, t, rows, cols, *ld);
    *ld = cols;
    return d;
}
#endif

/* ---------------------------------------------------------- oneDNN */

#ifdef GPT2_USE_DNNL
static dnnl_engine_t engine;
static bool dnnl_bf16_native;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_make(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        engine = NULL;
        return;
    }
    /* avx512_core_bf16's bits are in every ISA with bf16 (AMX too) */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    dnnl_bf16_native = (isa & bf16) == bf16;
}

static bool dnnl_engine_ok(void) {
    pthread_once(&engine_once, engine_make);
    return engine != NULL;
}

static bool key_eq(const prim_key *x, const prim_key *y) {
    return x->ta == y->ta && x->tb == y->tb && x->M == y->M && x->N == y->N &&
           x->K == y->K && x->lda == y->lda && x->ldb == y->ldb &&
           x->ldc == y->ldc && x->alpha == y->alpha && x->beta == y->beta;
}

/* op(X) (rows x cols) stored transposed or not with row stride ld */
static bool md_init(dnnl_memory_desc_t *md, int rows, int cols, bool trans,
                    int ld, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides) == dnnl_success;
}

/* The bf16 matmul primitive for key k into e: alpha as an output scale,
   beta as a sum post-op, scratchpad passed per call (so threads never
   share one). false if oneDNN has only its reference implementation
   for it (far slower than the other paths) or fails. */
static bool prim_make(prim_entry *e, const prim_key *k) {
    float alpha = gpt2__bits_f32(k->alpha), beta = gpt2__bits_f32(k->beta);
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = md_init(&e->a, k->M, k->K, k->ta, k->lda, dnnl_bf16) &&
              md_init(&e->b, k->K, k->N, k->tb, k->ldb, dnnl_bf16) &&
              md_init(&e->c, k->M, k->N, false, k->ldc, dnnl_f32) &&
              dnnl_matmul_desc_init(&desc, &e->a, &e->b, NULL, &e->c) == dnnl_success &&
              dnnl_primitive_attr_create(&attr) == dnnl_success &&
              dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && alpha != 1.0f)
        ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
    if (ok && beta != 0.0f)
        ok = dnnl_post_ops_create(&po) == dnnl_success &&
             dnnl_post_ops_append_sum(po, beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL) == dnnl_success;
    const char *impl = NULL;
    ok = ok && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
         impl && strncmp(impl, "ref", 3) != 0;
    if (ok) {
        const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        e->scratch = smd ? dnnl_memory_desc_get_size(smd) : 0;
        ok = dnnl_primitive_create(&e->prim, pd) == dnnl_success;
    }
    if (!ok) e->prim = NULL;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

static bool slot_used(const prim_entry *e) { return e->prim || e->failed; }

/* The cached primitive for k, made (evicting the least recently used)
   when missing; NULL if it cannot be made (remembered, so a shape oneDNN
   cannot do costs one try per thread, not one per call). */
static prim_entry *prim_get(thread_ctx *ctx, const prim_key *k) {
    prim_entry *victim = &ctx->cache[0];
    ctx->tick++;
    for (int i = 0; i < PRIM_CACHE; i++) {
        prim_entry *e = &ctx->cache[i];
        if (slot_used(e) && key_eq(&e->key, k)) {
            e->used = ctx->tick;
            return e->prim ? e : NULL;
        }
        if (!slot_used(e) || (slot_used(victim) && e->used < victim->used)) victim = e;
    }
    if (victim->prim) dnnl_primitive_destroy(victim->prim);
    victim->failed = !prim_make(victim, k);
    victim->key = *k;
    victim->used = ctx->tick;
    return victim->prim ? victim : NULL;
}

static bool prim_run(thread_ctx *ctx, const prim_entry *e, const void *A,
                     const void *B, float *C) {
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, ms = NULL;
    dnnl_memory_desc_t smd;
    dnnl_exec_arg_t args[4];
    int nargs = 3;
    bool ok = dnnl_memory_create(&ma, &e->a, engine, (void *)A) == dnnl_success &&
              dnnl_memory_create(&mb, &e->b, engine, (void *)B) == dnnl_success &&
              dnnl_memory_create(&mc, &e->c, engine, C) == dnnl_success;
    if (ok && e->scratch) {
        dnnl_dims_t d = {(dnnl_dim_t)e->scratch};
        void *s = grow(&ctx->scratch, &ctx->scratch_cap, e->scratch);
        ok = s && dnnl_memory_desc_init_by_tag(&smd, 1, d, dnnl_u8, dnnl_a) == dnnl_success &&
             dnnl_memory_create(&ms, &smd, engine, s) == dnnl_success;
        args[3] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, ms};
        nargs = 4;
    }
    args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, ma};
    args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, mb};
    args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, mc};
    ok = ok && dnnl_primitive_execute(e->prim, ctx->stream, nargs, args) == dnnl_success &&
         dnnl_stream_wait(ctx->stream) == dnnl_success;
    dnnl_memory_destroy(ma); /* NULL is fine */
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(mc);
    dnnl_memory_destroy(ms);
    return ok;
}

/* bf16 through oneDNN's matmul; false (C untouched) if it cannot run */
static bool run_dnnl_bf16(const gpt2__gemm_args *g) {
    thread_ctx *ctx = ctx_get();
    if (!ctx || !dnnl_engine_ok()) return false;
    if (!ctx->stream &&
        dnnl_stream_create(&ctx->stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        ctx->stream = NULL;
        return false;
    }
    int lda = g->lda, ldb = g->ldb;
    const void *A = prepared(ctx, 0, false, g->A, g->at, g->ta ? g->K : g->M,
                             g->ta ? g->M : g->K, &lda);
    const void *B = prepared(ctx, 1, false, g->B, g->bt, g->tb ? g->N : g->K,
                             g->tb ? g->K : g->N, &ldb);
    if (!A || !B) return false;
    prim_key k = {g->ta, g->tb, g->M, g->N, g->K, lda, ldb, g->ldc,
                  gpt2__f32_bits(g->alpha), gpt2__f32_bits(g->beta)};
    prim_entry *e = prim_get(ctx, &k);
    return e && prim_run(ctx, e, A, B, g->C);
}

static bool run_dnnl_f32(const gpt2__gemm_args *g) {
    return dnnl_sgemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->M, g->N, g->K,
                      g->alpha, g->A, g->lda, g->B, g->ldb, g->beta, g->C,
                      g->ldc) == dnnl_success;
}

/* bf16 emulated: sgemm on float32 copies of the inputs rounded to bf16 */
static bool run_dnnl_emulated(const gpt2__gemm_args *g) {
    thread_ctx *ctx = ctx_get();
    if (!ctx) return false;
    gpt2__gemm_args h = *g;
    h.A = prepared(ctx, 0, true, g->A, g->at, g->ta ? g->K : g->M, g->ta ? g->M : g->K, &h.lda);
    h.B = prepared(ctx, 1, true, g->B, g->bt, g->tb ? g->N : g->K, g->tb ? g->K : g->N, &h.ldb);
    if (!h.A || !h.B) return false;
    h.at = h.bt = GPT2__GEMM_IN_F32;
    h.round = false;
    return run_dnnl_f32(&h);
}
#endif

/* ------------------------------------------------------------ choice */

typedef enum { IMPL_AUTO, IMPL_PORTABLE, IMPL_X86, IMPL_DNNL, IMPL_DNNL_EMU } impl_id;
static const char *const impl_names[] = {"auto", "portable", "avx512bf16", "dnnl",
                                         "dnnl-emulated"};
static atomic_int forced = IMPL_AUTO;

static bool dnnl_native(void) {
#ifdef GPT2_USE_DNNL
    return dnnl_engine_ok() && dnnl_bf16_native;
#else
    return false;
#endif
}

static bool impl_present(impl_id id) {
    switch (id) {
    case IMPL_AUTO:
    case IMPL_PORTABLE: return true;
    case IMPL_X86: return gpt2__gemm_x86_bf16_kernel() != NULL;
    case IMPL_DNNL: return dnnl_native();
#ifdef GPT2_USE_DNNL
    case IMPL_DNNL_EMU: return true;
#else
    case IMPL_DNNL_EMU: return false;
#endif
    }
    return false;
}

/* What bf16 products use: oneDNN where it has a bf16 unit, else the own
   AVX512_BF16 kernel, else emulation (oneDNN's sgemm when built with it) */
static impl_id bf16_impl(void) {
    impl_id f = (impl_id)atomic_load(&forced);
    if (f != IMPL_AUTO) return f;
    if (impl_present(IMPL_DNNL)) return IMPL_DNNL;
    if (impl_present(IMPL_X86)) return IMPL_X86;
    if (impl_present(IMPL_DNNL_EMU)) return IMPL_DNNL_EMU;
    return IMPL_PORTABLE;
}

bool gpt2__gemm_bf16_available(void) {
    return impl_present(IMPL_DNNL) || impl_present(IMPL_X86);
}

const char *gpt2__gemm_bf16_impl(void) { return impl_names[bf16_impl()]; }

bool gpt2__gemm_force(const char *impl) {
    for (int i = 0; i < (int)(sizeof impl_names / sizeof impl_names[0]); i++)
        if (impl && strcmp(impl, impl_names[i]) == 0) {
            if (!impl_present((impl_id)i)) return false;
            atomic_store(&forced, i);
            return true;
        }
    return false;
}

/* ---------------------------------------------------------- products */

static void run_f32(const gpt2__gemm_args *g) {
#ifdef GPT2_USE_DNNL
    if (atomic_load(&forced) != IMPL_PORTABLE && run_dnnl_f32(g)) return;
#endif
    if (!blocked(&portable_kernel, g)) naive_args(g);
}

#ifdef GPT2_USE_DNNL
/* Under "auto", two kinds of product with op(A) stored transposed go to
   the own kernel, where oneDNN 2.6 (which transposes A in pieces) is
   slower or erratic (2 threads of Zen 5, GFLOP/s, oneDNN against own):
   - k short enough for one packed block: the weight gradients of a step
     of at most 512 tokens, inp^T @ dout (the layers' are equal; the LM
     head's, 50257 x 768 x 256: 470 against 545);
   - very many rows: the LM head's weight gradient, dlogits^T @ inp, at
     any token count (x 2048: from 440 to 810 from run to run, against a
     steady 630-680). */
static bool own_kernel_better(const gpt2__gemm_args *g, const gpt2__gemm_kernel *x86) {
    return x86 && atomic_load(&forced) == IMPL_AUTO && g->ta &&
           (g->K <= x86->kc || g->M >= 16384);
}
#endif

/* bf16 with gpt2c's own kernels */
static void run_own_bf16(const gpt2__gemm_args *g, impl_id id,
                         const gpt2__gemm_kernel *x86) {
    if (id != IMPL_PORTABLE && x86 && blocked(x86, g)) return;
    if (!blocked(&portable_kernel, g)) naive_args(g);
}

#ifdef GPT2_USE_DNNL
/* Rows i0..i0+m-1 (rows) or columns (!rows) of g's product */
static gpt2__gemm_args part_of(const gpt2__gemm_args *g, bool rows, int i0, int m) {
    gpt2__gemm_args h = *g;
    if (rows) {
        size_t es = g->at == GPT2__GEMM_IN_F32 ? sizeof(float) : sizeof(uint16_t);
        h.A = (const char *)g->A + es * (g->ta ? (size_t)i0 : (size_t)i0 * g->lda);
        h.C = g->C + (size_t)i0 * g->ldc;
        h.M = m;
    } else {
        size_t es = g->bt == GPT2__GEMM_IN_F32 ? sizeof(float) : sizeof(uint16_t);
        h.B = (const char *)g->B + es * (g->tb ? (size_t)i0 * g->ldb : (size_t)i0);
        h.C = g->C + i0;
        h.N = m;
    }
    return h;
}

/* Before g is split along one input (rows of op(A) or columns of op(B)),
   the other, when float32 and small enough, is converted to bf16 once
   for all the parts. */
static void share_other(gpt2__gemm_args *g, bool rows) {
    thread_ctx *ctx = ctx_get();
    gpt2__gemm_in t = rows ? g->bt : g->at;
    size_t bytes = (size_t)g->K * (rows ? g->N : g->M) * sizeof(uint16_t);
    if (!ctx || t != GPT2__GEMM_IN_F32 || bytes > atomic_load(&convert_max)) return;
    if (rows) {
        int ld = g->ldb;
        const void *b = prepared(ctx, 1, false, g->B, g->bt, g->tb ? g->N : g->K,
                                 g->tb ? g->K : g->N, &ld);
        if (b) g->B = b, g->bt = GPT2__GEMM_IN_BF16, g->ldb = ld;
    } else {
        int ld = g->lda;
        const void *a = prepared(ctx, 0, false, g->A, g->at, g->ta ? g->K : g->M,
                                 g->ta ? g->M : g->K, &ld);
        if (a) g->A = a, g->at = GPT2__GEMM_IN_BF16, g->lda = ld;
    }
}

/* bf16 through oneDNN (emu: sgemm on rounded float32 copies), in parts
   of rows, then of columns, while an input to convert is larger than
   convert_max; a part oneDNN fails on is done by the own kernels. */
static void dnnl_parts(const gpt2__gemm_args *g, bool emu, const gpt2__gemm_kernel *x86) {
    size_t es = emu ? sizeof(float) : sizeof(uint16_t);
    bool conv_a = emu || g->at == GPT2__GEMM_IN_F32, conv_b = emu || g->bt == GPT2__GEMM_IN_F32;
    /* rows of op(A) (or columns of op(B)) per part: K values each */
    size_t max = atomic_load(&convert_max);
    size_t fit = max / ((size_t)g->K * es) / 16 * 16;
    int step = fit < 16 ? 16 : fit > INT_MAX ? INT_MAX : (int)fit;
    bool split_a = conv_a && g->M > step, split_b = !split_a && conv_b && g->N > step;
    if (split_a || split_b) {
        gpt2__gemm_args whole = *g;
        if (!emu) share_other(&whole, split_a);
        int n = split_a ? g->M : g->N;
        for (int i0 = 0; i0 < n; i0 += step) {
            gpt2__gemm_args h = part_of(&whole, split_a, i0, imin(step, n - i0));
            dnnl_parts(&h, emu, x86);
        }
        return;
    }
    if (!(emu ? run_dnnl_emulated(g) : run_dnnl_bf16(g)))
        run_own_bf16(g, emu ? IMPL_DNNL_EMU : IMPL_DNNL, x86);
}
#endif

static void run_bf16(const gpt2__gemm_args *g) {
    impl_id id = bf16_impl();
    const gpt2__gemm_kernel *x86 = gpt2__gemm_x86_bf16_kernel();
#ifdef GPT2_USE_DNNL
    if ((id == IMPL_DNNL && !own_kernel_better(g, x86)) || id == IMPL_DNNL_EMU) {
        dnnl_parts(g, id == IMPL_DNNL_EMU, x86);
        return;
    }
#endif
    run_own_bf16(g, id, x86);
}

static bool trans_of(char t) {
    GPT2_ASSERT(t == 'N' || t == 'n' || t == 'T' || t == 't');
    return t == 'T' || t == 't';
}

void gpt2__gemm_ex(char ta, char tb, int M, int N, int K, float alpha,
                   const void *A, gpt2__gemm_in at, int lda, const void *B,
                   gpt2__gemm_in bt, int ldb, float beta, float *C, int ldc,
                   gpt2__gemm_prec prec) {
    gpt2__gemm_args g = {
        .ta = trans_of(ta), .tb = trans_of(tb), .M = M, .N = N, .K = K,
        .alpha = alpha, .beta = beta, .A = A, .B = B, .at = at, .bt = bt,
        .lda = lda, .ldb = ldb, .C = C, .ldc = ldc,
        .round = prec == GPT2__PREC_BF16,
    };
    GPT2_ASSERT(M >= 0 && N >= 0 && K >= 0);
    GPT2_ASSERT(prec == GPT2__PREC_BF16 ||
                (at == GPT2__GEMM_IN_F32 && bt == GPT2__GEMM_IN_F32));
    GPT2_ASSERT(lda >= (g.ta ? M : K) && ldb >= (g.tb ? K : N) && ldc >= N);
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) {
        scale_c(C, M, N, ldc, beta);
        return;
    }
    if (prec == GPT2__PREC_F32)
        run_f32(&g);
    else
        run_bf16(&g);
}

void gpt2__gemm(char ta, char tb, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta,
                float *C, int ldc, gpt2__gemm_prec prec) {
    gpt2__gemm_ex(ta, tb, M, N, K, alpha, A, GPT2__GEMM_IN_F32, lda, B,
                  GPT2__GEMM_IN_F32, ldb, beta, C, ldc, prec);
}
