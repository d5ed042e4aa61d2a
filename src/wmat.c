/* wmat.c: weight matrices in several formats (wmat.h): sizes, conversion
   to and from float32, the portable kernels, the choice of kernel variant,
   and the threaded GEMV and batched matmul built on them. The SIMD
   variants are in wmat_x86.c. */
#include "wmat.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "gemm.h"
#include "pool.h"
#include "ops.h"


#ifdef _OPENMP
#include <omp.h>
#endif

/* Multiply-adds below which a product stays on one thread (as ops.c):
   waking the team costs more than it saves. */
#define PARALLEL_MIN ((size_t)1 << 16)

#define N_DTYPES 5
#define QK GPT2__QBLOCK

/* Bytes of one block of 32 values: the F16 scale and the quants. The
   scales of a row come first, so the quants of block b sit at
   row + (len/32)*2 + b*QBYTES. */
#define Q8_BYTES (2 + QK)
#define Q4_BYTES (2 + QK / 2)

static bool dtype_ok(gpt2_dtype t) { return (unsigned)t < N_DTYPES; }
static bool is_quant(gpt2_dtype t) {
    return t == GPT2_DTYPE_Q8_0 || t == GPT2_DTYPE_Q4_0;
}

/* ---------------------------------------------------------------- sizes */

size_t gpt2__row_bytes(gpt2_dtype t, size_t len) {
    switch (t) {
    case GPT2_DTYPE_F32:
        return len <= SIZE_MAX / 4 ? len * 4 : 0;
    case GPT2_DTYPE_F16:
    case GPT2_DTYPE_BF16:
        return len <= SIZE_MAX / 2 ? len * 2 : 0;
    case GPT2_DTYPE_Q8_0:
        if (len % QK || len / QK > SIZE_MAX / Q8_BYTES) return 0;
        return len / QK * Q8_BYTES;
    case GPT2_DTYPE_Q4_0:
        if (len % QK || len / QK > SIZE_MAX / Q4_BYTES) return 0;
        return len / QK * Q4_BYTES;
    }
    return 0;
}

size_t gpt2__wmat_bytes(const gpt2__wmat *w) {
    size_t rows = (size_t)(w->layout == GPT2__BY_IN ? w->K : w->N);
    size_t n;
    return gpt2__mul_ok(w->row_bytes, rows, &n) ? n : 0;
}

/* ------------------------------------------------------ scalar formats */

/* Half to float without branches, so the portable loops vectorise. The
   half's exponent and mantissa, shifted into a float's, read as a float
   2^112 too small (the biases differ by 112), for normals and subnormals
   alike; one multiply fixes that exactly. Inf and NaN are set apart by a
   select. Bit for bit gpt2__f16_to_f32 (tests check all 65536). */
static inline float f16_to_f32(uint16_t h) {
    uint32_t em = (uint32_t)(h & 0x7fff);
    uint32_t mag = gpt2__f32_bits(gpt2__bits_f32(em << 13) * 0x1p112f);
    uint32_t inf_nan = 0x7f800000u | (em & 0x3ffu) << 13;
    uint32_t special = 0u - (uint32_t)(em >= 0x7c00); /* all ones or 0 */
    uint32_t u = (inf_nan & special) | (mag & ~special);
    return gpt2__bits_f32(u | (uint32_t)(h & 0x8000) << 16);
}


/* ------------------------------------------------------- quantization */

/* The F16 at or above d > 0 (finite), so that max|x| / d <= 127 and the
   largest value never clamps, even where d is a subnormal half. */
static uint16_t f16_ceil(double d) {
    if (!(d < 65504.0)) return 0x7bff; /* the largest finite half */
    uint16_t h = gpt2__f32_to_f16((float)d);
    if ((double)gpt2__f16_to_f32(h) < d) h++;
    return h;
}

/* round(v) clamped to [lo, hi]; NaN gives 0 */
static int round_clamp(double v, int lo, int hi) {
    if (!(v == v)) return 0;
    if (v < lo) return lo;
    if (v > hi) return hi;
    return (int)lrint(v);
}

static void quantize_q8(const float *x, size_t len, uint8_t *out) {
    size_t nb = len / QK;
    uint8_t *qs = out + nb * 2;
    for (size_t b = 0; b < nb; b++) {
        const float *xb = x + b * QK;
        float amax = 0.0f;
        for (int i = 0; i < QK; i++)
            if (fabsf(xb[i]) > amax) amax = fabsf(xb[i]);
        uint16_t dh = amax > 0.0f ? f16_ceil((double)amax / 127.0) : 0;
        double d = gpt2__f16_to_f32(dh);
        double inv = d > 0.0 ? 1.0 / d : 0.0;
        memcpy(out + b * 2, &dh, 2);
        for (int i = 0; i < QK; i++)
            qs[b * QK + i] = (uint8_t)(int8_t)round_clamp(xb[i] * inv, -127, 127);
    }
}

static void quantize_q4(const float *x, size_t len, uint8_t *out) {
    size_t nb = len / QK;
    uint8_t *qs = out + nb * 2;
    for (size_t b = 0; b < nb; b++) {
        const float *xb = x + b * QK;
        /* m: the value of largest magnitude, with its sign; d = m / -8
           puts m at level -8 exactly (the most negative nibble), using
           all 16 levels; -m would be +8 and clamps to 7. */
        float m = 0.0f;
        for (int i = 0; i < QK; i++)
            if (fabsf(xb[i]) > fabsf(m)) m = xb[i];
        float dm = m / -8.0f;
        if (fabsf(dm) > 65504.0f) dm = copysignf(65504.0f, dm); /* finite */
        uint16_t dh = gpt2__f32_to_f16(dm);
        double d = gpt2__f16_to_f32(dh);
        double inv = d != 0.0 ? 1.0 / d : 0.0;
        memcpy(out + b * 2, &dh, 2);
        for (int j = 0; j < QK / 2; j++) {
            int lo = round_clamp(xb[j] * inv, -8, 7) + 8;
            int hi = round_clamp(xb[j + QK / 2] * inv, -8, 7) + 8;
            qs[b * QK / 2 + j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void gpt2__quantize_row(gpt2_dtype t, const float *x, size_t len, void *out) {
    GPT2_ASSERT(gpt2__row_bytes(t, len) > 0 || len == 0);
    uint16_t *h = out;
    switch (t) {
    case GPT2_DTYPE_F32:
        memcpy(out, x, len * sizeof(float));
        break;
    case GPT2_DTYPE_F16:
        for (size_t i = 0; i < len; i++) h[i] = gpt2__f32_to_f16(x[i]);
        break;
    case GPT2_DTYPE_BF16:
        for (size_t i = 0; i < len; i++) h[i] = gpt2__f32_to_bf16(x[i]);
        break;
    case GPT2_DTYPE_Q8_0:
        quantize_q8(x, len, out);
        break;
    case GPT2_DTYPE_Q4_0:
        quantize_q4(x, len, out);
        break;
    }
}

/* -------------------------------------------- portable: row segments */

/* The portable loops below run in steps of 8 with a fixed inner count and
   restrict pointers: the shape GCC vectorises at -O2 (its "very cheap"
   cost model takes no loop that needs a scalar epilogue or an alias
   check). */

static void f16_run(float *restrict out, const uint16_t *restrict h, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) out[i + l] = f16_to_f32(h[i + l]);
    for (; i < n; i++) out[i] = f16_to_f32(h[i]);
}

static void bf16_run(float *restrict out, const uint16_t *restrict h, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) out[i + l] = gpt2__bf16_to_f32(h[i + l]);
    for (; i < n; i++) out[i] = gpt2__bf16_to_f32(h[i]);
}

static float block_scale(const uint8_t *row, size_t b) {
    uint16_t dh;
    memcpy(&dh, row + b * 2, 2);
    return f16_to_f32(dh);
}

static void q8_block(float *restrict o, const int8_t *restrict q, float d) {
    for (int i = 0; i < QK; i++) o[i] = d * (float)q[i];
}

static void q4_block(float *restrict o, const uint8_t *restrict q, float d) {
    for (int i = 0; i < QK / 2; i++) {
        o[i] = d * (float)((q[i] & 15) - 8);
        o[i + QK / 2] = d * (float)((q[i] >> 4) - 8);
    }
}

/* Values [j0, j0 + n) of a stored row of len values, as floats into out.
   For Q8_0/Q4_0, j0 and n are multiples of 32. */
static void segment_to_f32(gpt2_dtype t, const void *row, size_t len,
                           size_t j0, size_t n, float *out) {
    const uint8_t *r = row;
    const uint8_t *qs = r + len / QK * 2;
    switch (t) {
    case GPT2_DTYPE_F32:
        memcpy(out, (const float *)row + j0, n * sizeof(float));
        break;
    case GPT2_DTYPE_F16:
        f16_run(out, (const uint16_t *)row + j0, n);
        break;
    case GPT2_DTYPE_BF16:
        bf16_run(out, (const uint16_t *)row + j0, n);
        break;
    case GPT2_DTYPE_Q8_0:
        for (size_t b = j0 / QK; b < (j0 + n) / QK; b++)
            q8_block(out + (b * QK - j0), (const int8_t *)qs + b * QK,
                     block_scale(r, b));
        break;
    case GPT2_DTYPE_Q4_0:
        for (size_t b = j0 / QK; b < (j0 + n) / QK; b++)
            q4_block(out + (b * QK - j0), qs + b * QK / 2, block_scale(r, b));
        break;
    }
}

static void deq_portable(gpt2_dtype t, const void *row, size_t len,
                         float *out) {
    segment_to_f32(t, row, len, 0, len, out);
}
static void deq_f32(const void *r, size_t n, float *o) { deq_portable(GPT2_DTYPE_F32, r, n, o); }
static void deq_f16(const void *r, size_t n, float *o) { deq_portable(GPT2_DTYPE_F16, r, n, o); }
static void deq_bf16(const void *r, size_t n, float *o) { deq_portable(GPT2_DTYPE_BF16, r, n, o); }
static void deq_q8(const void *r, size_t n, float *o) { deq_portable(GPT2_DTYPE_Q8_0, r, n, o); }
static void deq_q4(const void *r, size_t n, float *o) { deq_portable(GPT2_DTYPE_Q4_0, r, n, o); }

/* ------------------------------------------------ portable: the kernels */

/* Floats converted at a time: a multiple of 32, small enough that the
   buffers stay in L1. */
#define SEG 256

/* The values [j0, j0 + n) of a stored row as floats: F32 rows are read
   in place, others converted into buf. */
static const float *segment(const gpt2__wmat *w, const uint8_t *row,
                            size_t len, size_t j0, size_t n, float *buf) {
    if (w->type == GPT2_DTYPE_F32) return (const float *)row + j0;
    segment_to_f32(w->type, row, len, j0, n, buf);
    return buf;
}

/* Eight partial sums: independent chains that vectorise. */
static float dot(const float *restrict a, const float *restrict b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* y[0..n) += x[0] w0 + x[1] w1 + x[2] w2 + x[3] w3 */
static void axpy4(float *restrict y, const float *restrict w0,
                  const float *restrict w1, const float *restrict w2,
                  const float *restrict w3, const float *x, int n) {
    float x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++)
            y[j + l] += x0 * w0[j + l] + x1 * w1[j + l] + x2 * w2[j + l] +
                        x3 * w3[j + l];
    for (; j < n; j++) y[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
}

static void axpy1(float *restrict y, const float *restrict w0, float x0,
                  int n) {
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) y[j + l] += x0 * w0[j + l];
    for (; j < n; j++) y[j] += x0 * w0[j];
}

/* BY_OUT: one dot product per output, SEG inputs at a time. */
static void gemv_out_portable(const gpt2__wmat *w, const float *x, float *y,
                              int n0, int n1) {
    float buf[SEG];
    const uint8_t *base = w->data;
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = base + (size_t)n * w->row_bytes;
        float acc = 0.0f;
        for (int k0 = 0; k0 < w->K; k0 += SEG) {
            int nk = w->K - k0 < SEG ? w->K - k0 : SEG;
            acc += dot(segment(w, row, w->K, k0, nk, buf), x + k0, nk);
        }
        y[n] = acc;
    }
}

/* BY_IN: as ops.c's gemv_cols. The outputs are taken SEG columns at a
   time, kept in L1, while every weight row streams by, four rows per
   pass. */
static void gemv_in_portable(const gpt2__wmat *w, const float *x, float *y,
                             int n0, int n1) {
    float buf[4][SEG];
    const uint8_t *base = w->data;
    size_t rb = w->row_bytes;
    for (int c0 = n0; c0 < n1; c0 += SEG) {
        int nc = n1 - c0 < SEG ? n1 - c0 : SEG;
        float *yo = y + c0;
        for (int j = 0; j < nc; j++) yo[j] = 0.0f;
        int k = 0;
        for (; k + 4 <= w->K; k += 4) {
            const uint8_t *r = base + (size_t)k * rb;
            const float *w0 = segment(w, r, w->N, c0, nc, buf[0]);
            const float *w1 = segment(w, r + rb, w->N, c0, nc, buf[1]);
            const float *w2 = segment(w, r + 2 * rb, w->N, c0, nc, buf[2]);
            const float *w3 = segment(w, r + 3 * rb, w->N, c0, nc, buf[3]);
            axpy4(yo, w0, w1, w2, w3, x + k, nc);
        }
        for (; k < w->K; k++) {
            const float *w0 =
                segment(w, base + (size_t)k * rb, w->N, c0, nc, buf[0]);
            axpy1(yo, w0, x[k], nc);
        }
    }
}

/* BY_IN, a row at a time (gpt2__wmat_rows_fn) */
static void in_rows_portable(const gpt2__wmat *w, const float *x, float *y,
                             int k0, int k1, int n0, int n1) {
    float buf[SEG];
    for (int j = n0; j < n1; j++) y[j] = 0.0f;
    for (int k = k0; k < k1; k++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)k * w->row_bytes;
        for (int c0 = n0; c0 < n1; c0 += SEG) {
            int nc = n1 - c0 < SEG ? n1 - c0 : SEG;
            axpy1(y + c0, segment(w, row, w->N, c0, nc, buf), x[k], nc);
        }
    }
}

/* gpt2__wmat_xquant_fn */
static void xquant_portable(const float *x, int K, int8_t *q, float *d) {
    for (int b = 0; b < K / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.0f;
        bool finite = true;
        for (int i = 0; i < QK; i++) {
            float a = fabsf(xb[i]);
            finite = finite && a <= FLT_MAX;
            amax = a > amax ? a : amax;
        }
        float inv = finite && amax >= 127.0f / FLT_MAX ? 127.0f / amax : 0.0f;
        d[b] = !finite ? NAN : inv > 0.0f ? amax / 127.0f : 0.0f;
        for (int i = 0; i < QK; i++) {
            float v = finite ? xb[i] * inv : 0.0f;
            v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
            q[b * QK + i] = (int8_t)nearbyintf(v);
        }
    }
}

/* Orders earlier non-temporal stores (the x86 transposes') before what
   follows: sfence there (a locked instruction is not documented to drain
   them on every x86), a full fence elsewhere. */
static void store_fence(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_ia32_sfence();
#endif
    atomic_thread_fence(memory_order_seq_cst);
}

static void transpose16_portable(const float *src, size_t lds, float *dst,
                                 size_t ldd) {
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) dst[(size_t)j * ldd + i] = src[(size_t)i * lds + j];
}

static const gpt2__wmat_kernels portable_kernels = {
    .name = "portable",
    .gemv = {
        [GPT2_DTYPE_F32] = {gemv_in_portable, gemv_out_portable},
        [GPT2_DTYPE_F16] = {gemv_in_portable, gemv_out_portable},
        [GPT2_DTYPE_BF16] = {gemv_in_portable, gemv_out_portable},
        [GPT2_DTYPE_Q8_0] = {NULL, gemv_out_portable},
        [GPT2_DTYPE_Q4_0] = {NULL, gemv_out_portable},
    },
    .in_rows = {in_rows_portable, in_rows_portable, in_rows_portable},
    .xquant = xquant_portable,
    .deq = {deq_f32, deq_f16, deq_bf16, deq_q8, deq_q4},
    .transpose16 = transpose16_portable,
};

/* ------------------------------------------------------------ dispatch */

static const gpt2__wmat_kernels *auto_kernels = &portable_kernels;
static pthread_once_t auto_once = PTHREAD_ONCE_INIT;
/* set by gpt2__wmat_force_isa; NULL: the automatic choice */
static _Atomic(const gpt2__wmat_kernels *) forced_kernels;

static void choose_kernels(void) {
    const gpt2__wmat_kernels *k = gpt2__wmat_x86_kernels("avx512bf16");
    if (!k) k = gpt2__wmat_x86_kernels("avx512vnni");
    if (!k) k = gpt2__wmat_x86_kernels("avx512");
    if (!k) k = gpt2__wmat_x86_kernels("avx2");
    if (k) auto_kernels = k;
}

static const gpt2__wmat_kernels *kernels(void) {
    const gpt2__wmat_kernels *k = atomic_load(&forced_kernels);
    if (k) return k;
    pthread_once(&auto_once, choose_kernels);
    return auto_kernels;
}

/* The kernel in slot `field` of the variant in use, or the portable one
   where the variant has none */
#define KERNEL(field) (kernels()->field ? kernels()->field : portable_kernels.field)

const char *gpt2__wmat_isa(void) { return kernels()->name; }

bool gpt2__wmat_force_isa(const char *isa) {
    const gpt2__wmat_kernels *k = NULL;
    if (isa == NULL)
        k = NULL;
    else if (strcmp(isa, "portable") == 0)
        k = &portable_kernels;
    else if (!(k = gpt2__wmat_x86_kernels(isa)))
        return false;
    atomic_store(&forced_kernels, k);
    return true;
}

void gpt2__wmat_quantize_x(const float *x, int K, int8_t *q, float *d) {
    GPT2_ASSERT(K >= 0 && K % QK == 0);
    KERNEL(xquant)(x, K, q, d);
}

void gpt2__wmat_transpose16(const float *src, size_t lds, float *dst, size_t ldd) {
    KERNEL(transpose16)(src, lds, dst, ldd);
    store_fence();
}

static gpt2__wmat_gemv_fn gemv_kernel(const gpt2__wmat *w) {
    GPT2_ASSERT(dtype_ok(w->type));
    GPT2_ASSERT(w->layout == GPT2__BY_IN || w->layout == GPT2__BY_OUT);
    GPT2_ASSERT(w->layout == GPT2__BY_OUT || !is_quant(w->type));
    GPT2_ASSERT(w->K >= 0 && w->N >= 0);
    GPT2_ASSERT(!is_quant(w->type) || w->K % QK == 0);
    return KERNEL(gemv[w->type][w->layout]);
}

void gpt2__dequantize_row(gpt2_dtype t, const void *row, size_t len,
                          float *out) {
    GPT2_ASSERT(dtype_ok(t));
    GPT2_ASSERT(!is_quant(t) || len % QK == 0);
    KERNEL(deq[t])(row, len, out);
}

/* ---------------------------------------------------------------- GEMV */

void gpt2__wmat_gemv_range(const gpt2__wmat *w, const float *x, float *y,
                           int n0, int n1) {
    gpt2__wmat_gemv_fn f = gemv_kernel(w);
    GPT2_ASSERT(0 <= n0 && n0 <= n1 && n1 <= w->N);
    if (n0 < n1) f(w, x, y, n0, n1);
}

/* Outputs are split among threads in multiples of this many, so no two
   threads write one cache line of y, nor (BY_IN) read one line of a
   weight row. */
static int split_unit(const gpt2__wmat *w) {
    if (w->layout == GPT2__BY_IN && w->type != GPT2_DTYPE_F32) return 32;
    return 16;
}

/* [*n0, *n1): part id of nt of [0, n), in multiples of unit */
static void split_range(int n, int unit, int id, int nt, int *n0, int *n1) {
    int nblk = (n + unit - 1) / unit;
    int b0 = (int)((long long)nblk * id / nt);
    int b1 = (int)((long long)nblk * (id + 1) / nt);
    *n0 = b0 * unit < n ? b0 * unit : n;
    *n1 = b1 * unit < n ? b1 * unit : n;
}

static int team_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* One chunk of a threaded GEMV: a range of outputs. */
typedef struct {
    const gpt2__wmat *w;
    gpt2__wmat_gemv_fn f;
    const float *x, *bias;
    float *y;
    int unit;
    gpt2__wmat_qgemv_fn qf; /* with xq: Q8_0/Q4_0 by int8 products */
    const gpt2__xq *xq;
} gemv_job;

static void gemv_chunk(void *ctx, int i, int n) {
    const gemv_job *j = ctx;
    int n0, n1;
    split_range(j->w->N, j->unit, i, n, &n0, &n1);
    if (n0 >= n1) return;
    if (j->qf)
        j->qf(j->w, j->xq, j->y, n0, n1);
    else
        j->f(j->w, j->x, j->y, n0, n1);
    if (j->bias)
        for (int o = n0; o < n1; o++) j->y[o] += j->bias[o];
}

/* Chunks per thread: one. Chunks are claimed, not assigned, so a worker
   that has no core (another process holds it) has not claimed its chunk,
   and the caller takes it after its own. Smaller chunks measured slower
   on a quiet machine (when BY_IN matrices were cut this way too: a
   narrow column slice streams its rows less well) and no faster beside a
   busy process. */
#define GEMV_CHUNKS_PER_THREAD 1

/* ---- BY_IN by halves of the rows

   A BY_IN matrix is K stored rows of N outputs' weights. Split by
   outputs, each thread would read a slice of every row: a stream with a
   gap every row. Instead the rows are cut in two halves, [0, K/2) and
   [K/2, K), and each half is one thread's single sequential stream, a
   row at a time (measured on Zen 5, GPT-2 124M's F32 layers, in one
   process alternating the two: 9-12% faster than the split by outputs;
   by halves but 2, 4 or 8 rows a pass, 15-22% slower than it). The half
   sums add up after the join. With more than two threads each half is
   also cut by outputs.

   The halves do not depend on the number of threads, and each output's
   sum is one chain per half, so the result is the same bits with any
   number of threads. */

/* Widest y kept on the stack for the second half's sums; wider matrices
   (none in the released sizes: GPT-2 XL's widest has 6,400) split by
   outputs instead. */
#define HALVES_MAX_N 8192

typedef struct {
    const gpt2__wmat *w;
    gpt2__wmat_rows_fn f;
    const float *x;
    float *y, *y2; /* the sums of the first half and of the second */
    int unit;
} halves_job;

/* chunk i of n: one half (n == 1: both) of an output range */
static void halves_chunk(void *ctx, int i, int n) {
    const halves_job *j = ctx;
    int K = j->w->K, mid = K / 2, parts = n == 1 ? 1 : n / 2;
    int n0, n1;
    split_range(j->w->N, j->unit, n == 1 ? 0 : i / 2, parts, &n0, &n1);
    if (n0 >= n1) return;
    if (n == 1 || i % 2 == 0) j->f(j->w, j->x, j->y, 0, mid, n0, n1);
    if (n == 1 || i % 2 == 1) j->f(j->w, j->x, j->y2, mid, K, n0, n1);
}

/* Chunks for threads: two halves times the output parts (the threads,
   halved when even), one chunk for one thread or a small matrix */
static int halves_chunks(const gpt2__wmat *w, int unit) {
    int t = gpt2__pool_threads();
    if ((size_t)w->K * w->N < PARALLEL_MIN || t < 2) return 1;
    int parts = t % 2 ? t : t / 2, most = (w->N + unit - 1) / unit;
    return 2 * (parts < most ? parts : most);
}

static void gemv_halves(const gpt2__wmat *w, const float *x, const float *bias,
                        float *y) {
    float y2[HALVES_MAX_N];
    halves_job j = {w, KERNEL(in_rows[w->type]), x, y, y2, split_unit(w)};
    gpt2__pool_run(halves_chunk, &j, halves_chunks(w, j.unit));
    for (int o = 0; o < w->N; o++) {
        float sum = y[o] + y2[o];
        y[o] = bias ? sum + bias[o] : sum;
    }
}

/* ---- x quantized for Q8_0 and Q4_0 rows (gpt2__xq) */

/* K rounded up to whole groups of 4 blocks */
static size_t xq_padded(int K) { return ((size_t)K + 127) / 128 * 128; }

/* Bytes of an xq buffer for kp (xq_padded) inputs: q, q4, c8, c4, d, xf,
   each 64-aligned (as xq_make takes them) */
#define XQ_BYTES(kp) ((kp) * 3 + (kp) / 2 + ((kp) / QK + 16) * 4 + (kp) * 4 + 6 * 64)

static void *xq_take(unsigned char **p, size_t bytes) {
    void *r = *p;
    *p += (bytes + 63) / 64 * 64;
    return r;
}

/* Fills *xq from x in buf (XQ_BYTES(xq_padded(K)), 64-aligned): what kernels of
   format t need, ints (the int8 kernels) or floats */
static void xq_make(gpt2__xq *xq, const float *x, int K, gpt2_dtype t,
                    bool ints, unsigned char *buf) {
    size_t kp = xq_padded(K), nd = (kp / QK + 15) / 16 * 16;
    int8_t *q = xq_take(&buf, kp), *q4 = xq_take(&buf, kp);
    int32_t *c8 = xq_take(&buf, kp), *c4 = xq_take(&buf, kp / 2);
    float *d = xq_take(&buf, nd * 4), *xf = xq_take(&buf, kp * 4);
    gpt2__wmat_quantize_x(x, K, q, d);
    memset(q + K, 0, kp - (size_t)K);
    for (size_t b = (size_t)K / QK; b < nd; b++) d[b] = 0.0f;
    *xq = (gpt2__xq){q, d, q4, c8, c4, xf};
    if (!ints) {
        for (int i = 0; i < K; i++) xf[i] = d[i / QK] * (float)q[i];
    } else if (t == GPT2_DTYPE_Q8_0) {
        for (size_t g = 0; g < kp / 4; g++)
            c8[g] = -128 * (q[4 * g] + q[4 * g + 1] + q[4 * g + 2] + q[4 * g + 3]);
    } else {
        for (size_t g = 0; g < kp; g += 128)     /* 4 blocks */
            for (size_t h = 0; h < 2; h++)       /* first, last 16 */
                for (size_t b = 0; b < 4; b++)
                    memcpy(q4 + g + 64 * h + 16 * b, q + g + 32 * b + 16 * h, 16);
        for (size_t l = 0; l < kp / 8; l++) {
            const int8_t *lo = q4 + l / 16 * 128 + l % 16 * 4, *hi = lo + 64;
            c4[l] = -8 * (lo[0] + lo[1] + lo[2] + lo[3] + hi[0] + hi[1] + hi[2] + hi[3]);
        }
    }
}

/* Inputs up to this many (a multiple of 128) make their xq on the stack
   (23 KiB); more (GPT-2 medium and larger), on the heap. */
#define XQ_STACK_K 3072

static void gemv_quantized(gemv_job *j, int chunks) {
    int K = j->w->K;
    _Alignas(64) unsigned char stack[XQ_BYTES(XQ_STACK_K)];
    unsigned char *heap = NULL, *buf = stack;
    if (xq_padded(K) > XQ_STACK_K) {
        /* not gpt2__alloc_aligned: a failure here is no error to report */
        void *p = NULL;
        heap = posix_memalign(&p, 64, XQ_BYTES(xq_padded(K))) == 0 ? p : NULL;
        buf = heap;
    }
    gpt2__xq xq;
    if (buf) { /* (without memory, the float kernels take x as it is) */
        gpt2__wmat_qgemv_fn qf = kernels()->qgemv[j->w->type - GPT2_DTYPE_Q8_0];
        xq_make(&xq, j->x, K, j->w->type, qf != NULL, buf);
        j->qf = qf, j->xq = &xq, j->x = xq.xf;
    }
    gpt2__pool_run(gemv_chunk, j, chunks);
    free(heap);
}

void gpt2__wmat_gemv(const gpt2__wmat *w, const float *x, const float *bias,
                     float *y) {
    if (w->layout == GPT2__BY_IN && w->N <= HALVES_MAX_N) {
        GPT2_ASSERT(dtype_ok(w->type) && !is_quant(w->type) && w->K >= 0);
        gemv_halves(w, x, bias, y);
        return;
    }
    gemv_job j = {w, gemv_kernel(w), x, bias, y, split_unit(w), NULL, NULL};
    int chunks = 1;
    if ((size_t)w->K * w->N >= PARALLEL_MIN) {
        int most = (w->N + j.unit - 1) / j.unit; /* one unit each at least */
        chunks = gpt2__pool_threads() * GEMV_CHUNKS_PER_THREAD;
        if (chunks > most) chunks = most;
    }
    if (is_quant(w->type))
        gemv_quantized(&j, chunks);
    else
        gpt2__pool_run(gemv_chunk, &j, chunks);
}

/* -------------------------------------------------------------- matmul */

/* out (M, ldo) [:, 0..w->N) = inp (M, K) @ w with the format's own GEMV
   kernels: each thread owns a range of outputs and takes it a tile at a
   time, the tile's weights (about 128 KiB) staying in cache while the M
   rows of inp pass over them. No scratch memory. */
static void matmul_tiles(float *out, size_t ldo, const float *inp,
                         const gpt2__wmat *w, int M) {
    gpt2__wmat_gemv_fn f = gemv_kernel(w);
    size_t per_out = gpt2__row_bytes(w->type, (size_t)w->K);
    if (w->layout == GPT2__BY_IN) /* a column of K values */
        per_out = (size_t)w->K * (w->type == GPT2_DTYPE_F32 ? 4 : 2);
    int tile = per_out ? (int)((128 << 10) / per_out) / 16 * 16 : 0;
    if (tile < 16) tile = 16;
    int unit = split_unit(w);
#pragma omp parallel if ((size_t)M * w->K * w->N >= PARALLEL_MIN)
    {
        int a, b;
        split_range(w->N, unit, team_id(), team_size(), &a, &b);
        for (int t0 = a; t0 < b; t0 += tile) {
            int t1 = b - t0 < tile ? b : t0 + tile;
            for (int m = 0; m < M; m++)
                f(w, inp + (size_t)m * w->K, out + (size_t)m * ldo, t0, t1);
        }
    }
}

/* Outputs [n0, n0 + np) of w as float32 in panel, and a F32 matrix over
   it: BY_OUT np rows of K, BY_IN K rows of np. */
static gpt2__wmat panel_to_f32(const gpt2__wmat *w, int n0, int np,
                               float *panel) {
    gpt2__wmat p = {.type = GPT2_DTYPE_F32, .layout = w->layout, .K = w->K,
                    .N = np, .data = panel};
    const uint8_t *base = w->data;
    gpt2__wmat_deq_fn deq = KERNEL(deq[w->type]);
    if (w->layout == GPT2__BY_OUT) {
        p.row_bytes = (size_t)w->K * sizeof(float);
        for (int n = 0; n < np; n++)
            deq(base + (size_t)(n0 + n) * w->row_bytes, (size_t)w->K,
                panel + (size_t)n * w->K);
    } else {
        /* a column range of a 16-bit row is itself a 16-bit row */
        p.row_bytes = (size_t)np * sizeof(float);
        for (int k = 0; k < w->K; k++)
            deq(base + (size_t)k * w->row_bytes + (size_t)n0 * 2,
                (size_t)np, panel + (size_t)k * np);
    }
    return p;
}

/* Outputs [n0, n0 + np) of w, in place: the same rows (BY_IN: the same
   stride) from a later start */
static gpt2__wmat sub_outputs(const gpt2__wmat *w, int n0, int np) {
    gpt2__wmat v = *w;
    size_t skip = w->layout == GPT2__BY_OUT
                      ? (size_t)n0 * w->row_bytes
                      : (size_t)n0 * (w->type == GPT2_DTYPE_F32 ? 4 : 2);
    v.data = (const uint8_t *)w->data + skip;
    v.N = np;
    return v;
}

/* out (M, ldo) [:, 0..p->N) = inp @ p for a F32 matrix, through gemm.h
   in the thread's matmul precision (float32, or bfloat16 inputs while a
   mixed-precision trainer runs) */
static void matmul_f32(float *out, size_t ldo, const float *inp,
                       const gpt2__wmat *p, int M) {
    gpt2__gemm('N', p->layout == GPT2__BY_OUT ? 'T' : 'N', M, p->N, p->K, 1.0f,
               inp, p->K, p->data, (int)(p->row_bytes / 4), 0.0f, out, (int)ldo,
               matmul_bf16() ? GPT2__PREC_BF16 : GPT2__PREC_F32);
}

/* Outputs converted to float32 a panel at a time (about 1 MiB, so it is
   still in cache when the GEMM reads it), each multiplied by the F32
   path. The threads share out the panels, each converting into its own
   memory and multiplying on its own (a GEMM library called inside the
   team runs single-threaded): one fork/join per call, and any number of
   threads may share the model. A thread without memory multiplies its
   panels with the format's own kernels instead. */
static void matmul_panels(float *out, const float *inp, const gpt2__wmat *w,
                          int M) {
    int N = w->N, K = w->K > 0 ? w->K : 1;
    int P = (int)(((size_t)1 << 18) / (size_t)K) / 16 * 16;
    /* at least a few panels per thread, for balance */
    int few = (N / (4 * gpt2__threads()) + 15) / 16 * 16;
    if (P > few) P = few;
    if (P < 16) P = 16;
    int npanels = (N + P - 1) / P;
#pragma omp parallel if ((size_t)M * w->K * N >= PARALLEL_MIN)
    {
        float *panel = malloc((size_t)P * K * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < npanels; i++) {
            int n0 = i * P, np = N - n0 < P ? N - n0 : P;
            if (panel) {
                gpt2__wmat p = panel_to_f32(w, n0, np, panel);
                matmul_f32(out + n0, (size_t)N, inp, &p, M);
            } else {
                gpt2__wmat v = sub_outputs(w, n0, np);
                matmul_tiles(out + n0, (size_t)N, inp, &v, M);
            }
        }
        free(panel);
    }
}

/* A matrix of at most this many bytes as float32 is converted whole and
   multiplied by one threaded GEMM call */
#define WHOLE_MAX_BYTES ((size_t)64 << 20)

/* Row strides of the conversion's buffers are padded by a cache line:
   rows a multiple of 4 KiB apart (K = 768 or 3072 floats) fall in the same
   cache sets, and the 16 rows a transpose reads or writes evict each
   other (unpadded, a 512-token prefill with BF16 weights took 10% longer:
   1880 against 2075 tokens/s on 2 Zen 5 cores) */
#define PAD_FLOATS 16

/* Stored rows [r0, r0 + 16) of a BY_OUT matrix (fewer at the end) as
   float32 columns of f, the (K, N) matrix with rows ldf apart: converted
   into tmp (16 rows, ldt apart), then transposed 16 x 16 at a time */
static void columns_f32(const gpt2__wmat *w, gpt2__wmat_deq_fn deq,
                        gpt2__wmat_t16_fn t16, int r0, float *tmp, size_t ldt,
                        float *f, size_t ldf) {
    int K = w->K, N = w->N, nr = N - r0 < 16 ? N - r0 : 16;
    const uint8_t *base = w->data;
    for (int j = 0; j < nr; j++)
        deq(base + (size_t)(r0 + j) * w->row_bytes, (size_t)K, tmp + (size_t)j * ldt);
    int k = 0;
    if (nr == 16)
        for (; k + 16 <= K; k += 16) t16(tmp + k, ldt, f + (size_t)k * ldf + r0, ldf);
    for (; k < K; k++) {
        float *o = f + (size_t)k * ldf + r0;
        for (int j = 0; j < nr; j++) o[j] = tmp[(size_t)j * ldt + k];
    }
}

/* All of w converted to float32 in the (K, N) layout (by the team), then
   one GEMM over it, which the GEMM library threads itself: the
   activations are packed once, not once per panel, and oneDNN's sgemm
   runs 10-25% faster on (K, N) than on its transpose (2 threads, Zen 5:
   fcproj 3072 x 768, 500 against 380 GFLOP/s). False without memory. */
static bool matmul_whole(float *out, const float *inp, const gpt2__wmat *w, int M) {
    size_t ldf = (size_t)w->N + PAD_FLOATS, n = (size_t)w->K * ldf;
    if (n * sizeof(float) > WHOLE_MAX_BYTES) return false;
    /* the thread's buffer, kept between calls: prefill converts every
       layer's matrices in turn, all of the same few sizes */
    float *f = gpt2__gemm_operand_buffer(n * sizeof(float));
    if (!f) return false;
    gpt2__wmat_deq_fn deq = KERNEL(deq[w->type]);
    gpt2__wmat_t16_fn t16 = KERNEL(transpose16);
    const uint8_t *base = w->data;
    bool ok = true;
    if (w->layout == GPT2__BY_IN) {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
        for (int k = 0; k < w->K; k++)
            deq(base + (size_t)k * w->row_bytes, (size_t)w->N, f + (size_t)k * ldf);
    } else {
        int blocks = (w->N + 15) / 16;
        size_t ldt = (size_t)w->K + PAD_FLOATS;
#pragma omp parallel if (n >= PARALLEL_MIN) reduction(&& : ok)
        {
            float *tmp = malloc(sizeof(float) * 16 * ldt);
            ok = tmp != NULL;
#pragma omp for schedule(static)
            for (int b = 0; b < blocks; b++)
                if (tmp) columns_f32(w, deq, t16, b * 16, tmp, ldt, f, ldf);
            /* the transposes' non-temporal stores, ordered before the
               GEMM's threads read f */
            store_fence();
            free(tmp);
        }
    }
    if (!ok) return false;
    gpt2__wmat p = {.type = GPT2_DTYPE_F32, .layout = GPT2__BY_IN, .K = w->K,
                    .N = w->N, .data = f, .row_bytes = ldf * sizeof(float)};
    matmul_f32(out, (size_t)w->N, inp, &p, M);
    return true;
}

void gpt2__wmat_matmul(float *out, const float *inp, const gpt2__wmat *w,
                       const float *bias, int M) {
    if (M == 1) {
        gpt2__wmat_gemv(w, inp, bias, out);
        return;
    }
    (void)gemv_kernel(w); /* checks w */
    if (w->type == GPT2_DTYPE_F32 && w->layout == GPT2__BY_IN) {
        matmul_forward(out, inp, w->data, bias, M, w->K, w->N);
        return;
    }
    if (w->type == GPT2_DTYPE_F32)
        matmul_f32(out, (size_t)w->N, inp, w, M);
    else if (!matmul_whole(out, inp, w, M))
        matmul_panels(out, inp, w, M);
    if (bias) {
        int N = w->N;
#pragma omp parallel for if ((size_t)M * N >= PARALLEL_MIN)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) out[(size_t)m * N + n] += bias[n];
    }
}
