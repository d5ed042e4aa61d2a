/* wmat_x86.c: the x86-64 variants of wmat.c's kernels, AVX2 (with FMA
   and F16C) and AVX-512 (F, BW, VL), in intrinsics. Each function is
   compiled for its ISA by a target attribute, so the library needs no -m
   flags and one binary runs on any x86-64; wmat.c picks a variant once,
   from what the CPU reports.

   All of them read the weights in their stored format and widen them to
   float32 in registers: F16 by vcvtph2ps, BF16 by a 16-bit shift (exact),
   Q8_0 and Q4_0 by integer widening. Products and sums are float32. Two
   exceptions, where the CPU has them, because widening costs the
   instructions that keep a row streaming at the speed of memory:
   - AVX512_VNNI: decode's Q8_0 and Q4_0 rows multiply x quantized to
     int8 (gpt2__xq) in integers, 64 weights a vpdpbusd (q8_row_vnni);
   - AVX512_BF16: BF16 rows are multiplied by vdpbf16ps against x split
     into two bf16 parts (x kept to 16 significant bits; see out_bf16_dp).

   Two shapes of loop, as wmat.h's layouts ask:
   - BY_IN: y[n0..n1) is kept in L1 while the weight rows stream by:
     decode takes one row at a time over whole rows (in_rows_512: each
     thread one half of the rows, one sequential stream); batches of a
     few rows take eight rows a pass (AVX2: four) over 2048 columns.
   - BY_OUT: dot products, vector accumulators per row, one horizontal
     sum per row at the end; F32 and Q4_0 four output rows at a time
     sharing each load of x, 16-bit and Q8_0 rows one at a time (one
     sequential stream). The quantized rows apply their scale per block
     to a vector (never a horizontal sum per block).

   Decode reads each weight once, from DRAM, so what counts is keeping
   enough reads in flight: the kernels prefetch every stream they read a
   fixed distance ahead (measured on Zen 5: 16-bit and quantized rows
   gain 20-40%; F32 BY_OUT rows, which the hardware prefetcher follows
   well at 64 bytes a load, lose a little, and are left to it).

   No alignment is assumed: all loads are unaligned. */
#include "wmat.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define QK GPT2__QBLOCK
#define ISA512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define ISA256 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

#define F32 GPT2_DTYPE_F32
#define F16 GPT2_DTYPE_F16
#define BF16 GPT2_DTYPE_BF16

/* Columns of y a BY_IN kernel keeps in L1 at a time (8 KiB). */
#define IN_TILE 2048
/* Output rows a BY_OUT kernel takes at once. */
#define ROWS 4
/* How far ahead the BY_OUT kernels prefetch each row, in bytes (4 KiB
   was 15% slower, 16 KiB no better), and the BY_IN kernels, in rows
   (4 was slower, 16 no better). */
#define PF_DIST 8192
#define PF_ROWS 8
/* How far ahead the one-row-at-a-time kernels prefetch, in bytes (2 KiB
   and 8-32 KiB measured no better, none 3-20% slower) */
#define PF_ROW 4096

static inline size_t elem_size(gpt2_dtype t) { return t == F32 ? 4 : 2; }

/* One value of a stored row (tails of the AVX2 kernels). */
static inline float load1(gpt2_dtype t, const uint8_t *p, size_t j) {
    if (t == F32) {
        float f;
        memcpy(&f, p + 4 * j, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * j, 2);
    return t == F16 ? gpt2__f16_to_f32(h) : gpt2__bf16_to_f32(h);
}

/* ============================================================= AVX-512 */

/* 16 values of a row from element j, as floats */
INLINE ISA512 __m512 load16(gpt2_dtype t, const uint8_t *p, size_t j) {
    if (t == F32) return _mm512_loadu_ps((const float *)p + j);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + j));
    if (t == F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* the same for the lanes of m only (the rest 0); reads nothing beyond */
INLINE ISA512 __m512 load16_mask(gpt2_dtype t, const uint8_t *p, size_t j,
                                 __mmask16 m) {
    if (t == F32) return _mm512_maskz_loadu_ps(m, (const float *)p + j);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + j);
    if (t == F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* the F16 scale of block b of a quantized row (rows of Q4_0 need not be
   2-byte aligned) */
static inline uint16_t scale_bits(const void *row, size_t b) {
    uint16_t h;
    memcpy(&h, (const uint8_t *)row + 2 * b, 2);
    return h;
}

static inline __mmask16 low_mask16(int n) {
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1);
}

/* y[c0, c0 + nc) += x[k..k+R) @ rows k..k+R) (R = 1, 4 or 8), where
   col points at column c0 of row k; the same columns pf bytes further on
   (rows ahead) are prefetched. Eight rows a pass halve the passes over y
   of four (5-8% faster from DRAM for 16-bit rows). */
INLINE ISA512 void in_pass_512(gpt2_dtype t, int R, const uint8_t *col,
                               size_t rb, const float *xk, float *yo,
                               int nc, size_t pf) {
    size_t es = elem_size(t);
    __m512 xv[8];
    for (int r = 0; r < R; r++) xv[r] = _mm512_set1_ps(xk[r]);
    int j = 0;
    for (; j + 32 <= nc; j += 32) {
        __m512 a = _mm512_loadu_ps(yo + j), a2 = _mm512_loadu_ps(yo + j + 16);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *p = col + r * rb;
            for (size_t b = 0; b < 32 * es; b += 64)
                _mm_prefetch((const char *)p + j * es + b + pf, _MM_HINT_T0);
            a = _mm512_fmadd_ps(load16(t, p, (size_t)j), xv[r], a);
            a2 = _mm512_fmadd_ps(load16(t, p, (size_t)j + 16), xv[r], a2);
        }
        _mm512_storeu_ps(yo + j, a);
        _mm512_storeu_ps(yo + j + 16, a2);
    }
    for (; j + 16 <= nc; j += 16) {
        __m512 a = _mm512_loadu_ps(yo + j);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            a = _mm512_fmadd_ps(load16(t, col + r * rb, (size_t)j), xv[r], a);
        _mm512_storeu_ps(yo + j, a);
    }
    if (j < nc) {
        __mmask16 m = low_mask16(nc - j);
        __m512 a = _mm512_maskz_loadu_ps(m, yo + j);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            a = _mm512_fmadd_ps(load16_mask(t, col + r * rb, (size_t)j, m),
                                xv[r], a);
        _mm512_mask_storeu_ps(yo + j, m, a);
    }
}

INLINE ISA512 void gemv_in_512(gpt2_dtype t, const gpt2__wmat *w,
                               const float *x, float *y, int n0, int n1) {
    size_t rb = w->row_bytes, pf = PF_ROWS * rb;
    for (int c0 = n0; c0 < n1; c0 += IN_TILE) {
        int nc = n1 - c0 < IN_TILE ? n1 - c0 : IN_TILE;
        float *yo = y + c0;
        const uint8_t *col = (const uint8_t *)w->data + (size_t)c0 * elem_size(t);
        memset(yo, 0, (size_t)nc * sizeof(float));
        int k = 0;
        for (; k + 8 <= w->K; k += 8)
            in_pass_512(t, 8, col + (size_t)k * rb, rb, x + k, yo, nc, pf);
        for (; k + 4 <= w->K; k += 4)
            in_pass_512(t, 4, col + (size_t)k * rb, rb, x + k, yo, nc, pf);
        for (; k < w->K; k++)
            in_pass_512(t, 1, col + (size_t)k * rb, rb, x + k, yo, nc, pf);
    }
}

/* BY_IN, one row after another (gpt2__wmat_rows_fn): y[n0..n1) in L1,
   each row's slice added into it times x[k], prefetched PF_ROW ahead;
   whole rows (two threads) are one sequential stream. */
INLINE ISA512 void in_rows_512(gpt2_dtype t, const gpt2__wmat *w,
                               const float *x, float *y, int k0, int k1,
                               int n0, int n1) {
    size_t es = elem_size(t);
    int nc = n1 - n0;
    float *yo = y + n0;
    memset(yo, 0, (size_t)nc * sizeof(float));
    for (int k = k0; k < k1; k++) {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)k * w->row_bytes + (size_t)n0 * es;
        __m512 xv = _mm512_set1_ps(x[k]);
        int j = 0;
        for (; j + 64 <= nc; j += 64) {
            for (size_t b = 0; b < 64 * es; b += 64)
                _mm_prefetch((const char *)p + j * es + b + PF_ROW, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int v = 0; v < 64; v += 16)
                _mm512_storeu_ps(yo + j + v, _mm512_fmadd_ps(load16(t, p, (size_t)(j + v)), xv,
                                                             _mm512_loadu_ps(yo + j + v)));
        }
        for (; j < nc; j += 16) {
            __mmask16 m = low_mask16(nc - j);
            _mm512_mask_storeu_ps(yo + j, m, _mm512_fmadd_ps(load16_mask(t, p, (size_t)j, m), xv,
                                                             _mm512_maskz_loadu_ps(m, yo + j)));
        }
    }
}

/* y[0..R) = dot(rows r of K values, x), rows rb bytes apart */
INLINE ISA512 void out_rows_512(gpt2_dtype t, int R, const uint8_t *row,
                                size_t rb, const float *x, int K, float *y) {
    size_t es = elem_size(t);
    __m512 acc[ROWS], acc2[ROWS];
    for (int r = 0; r < R; r++) acc[r] = acc2[r] = _mm512_setzero_ps();
    int k = 0;
    /* 32 values a step: two accumulators per row, and (16-bit rows) a
       prefetch PF_DIST ahead per cache line read */
    for (; k + 32 <= K; k += 32) {
        __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = row + r * rb;
            for (size_t b = 0; t != F32 && b < 32 * es; b += 64)
                _mm_prefetch((const char *)p + k * es + b + PF_DIST, _MM_HINT_T0);
            acc[r] = _mm512_fmadd_ps(load16(t, p, (size_t)k), x0, acc[r]);
            acc2[r] = _mm512_fmadd_ps(load16(t, p, (size_t)k + 16), x1, acc2[r]);
        }
    }
    for (; k + 16 <= K; k += 16) {
        __m512 xv = _mm512_loadu_ps(x + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(load16(t, row + r * rb, (size_t)k), xv, acc[r]);
    }
    if (k < K) {
        __mmask16 m = low_mask16(K - k);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(load16_mask(t, row + r * rb, (size_t)k, m),
                                     xv, acc[r]);
    }
    for (int r = 0; r < R; r++)
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r], acc2[r]));
}

INLINE ISA512 void gemv_out_512(gpt2_dtype t, const gpt2__wmat *w,
                                const float *x, float *y, int n0, int n1) {
    const uint8_t *base = w->data;
    size_t rb = w->row_bytes;
    int n = n0;
    for (; n + ROWS <= n1; n += ROWS)
        out_rows_512(t, ROWS, base + (size_t)n * rb, rb, x, w->K, y + n);
    for (; n < n1; n++)
        out_rows_512(t, 1, base + (size_t)n * rb, rb, x, w->K, y + n);
}

/* Prefetches bytes [off, off + n) of R rows, PF_DIST ahead */
INLINE ISA512 void prefetch_rows(int R, const uint8_t *p, size_t rb,
                                 size_t off, size_t n) {
    for (int r = 0; r < R; r++)
        for (size_t b = 0; b < n; b += 64)
            _mm_prefetch((const char *)p + r * rb + off + b + PF_DIST, _MM_HINT_T0);
}

/* The F16 scales of blocks [b0, b0 + 16) of R rows (fewer at the end of
   a row: the rest 0), as floats */
INLINE ISA512 void scales_512(int R, const uint8_t *row, size_t rb, int b0,
                              int nb, float sc[][16]) {
    __mmask16 m = low_mask16(nb - b0);
    for (int r = 0; r < R; r++) {
        const void *s = row + r * rb + (size_t)b0 * 2;
        _mm512_storeu_ps(sc[r], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s)));
    }
}

/* Q8_0 rows: per block and row, the 32 int8 widened to float, a vector
   of 16 partial dot products, added into the row's accumulator times
   the block's scale. */
INLINE ISA512 void q8_rows_512(int R, const uint8_t *row, size_t rb,
                               const float *x, int K, float *y) {
    int nb = K / QK;
    const uint8_t *qs = row + (size_t)nb * 2;
    __m512 acc[ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int b0 = 0; b0 < nb; b0 += 16) {
        float sc[ROWS][16];
        scales_512(R, row, rb, b0, nb, sc);
        prefetch_rows(R, qs, rb, (size_t)b0 * QK, 16 * QK);
        int b1 = nb - b0 < 16 ? nb : b0 + 16;
        for (int b = b0; b < b1; b++) {
            __m512 x0 = _mm512_loadu_ps(x + b * QK);
            __m512 x1 = _mm512_loadu_ps(x + b * QK + 16);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m128i *q = (const __m128i *)(qs + r * rb + (size_t)b * QK);
                __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q)));
                __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1)));
                __m512 s = _mm512_fmadd_ps(w1, x1, _mm512_mul_ps(w0, x0));
                acc[r] = _mm512_fmadd_ps(s, _mm512_set1_ps(sc[r][b - b0]), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

/* The 16 levels of a Q4_0 nibble, -8..7. */
#define Q4_LEVELS                                                          \
    _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7)

/* Q4_0 rows: the 16 levels times the block's scale make a table of the
   block's 16 possible weights (exact: an 11-bit scale times a 4-bit
   level), and one vpermps per 16 nibbles looks them up (vpermps reads the
   low 4 bits of each index, so a byte's low nibble needs no mask). The
   two lookups per block and row bound the speed (about 50 G weights/s a
   core on Zen 5); loading a block into all four 128-bit lanes and
   shifting each lane by its own count, to save the widening shuffle,
   measured slower. */
INLINE ISA512 void q4_rows_512(int R, const uint8_t *row, size_t rb,
                               const float *x, int K, float *y) {
    int nb = K / QK;
    const uint8_t *qs = row + (size_t)nb * 2;
    const __m512 levels = Q4_LEVELS;
    __m512 acc0[ROWS], acc1[ROWS];
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int b0 = 0; b0 < nb; b0 += 16) {
        float sc[ROWS][16];
        scales_512(R, row, rb, b0, nb, sc);
        prefetch_rows(R, qs, rb, (size_t)b0 * (QK / 2), 16 * (QK / 2));
        int b1 = nb - b0 < 16 ? nb : b0 + 16;
        for (int b = b0; b < b1; b++) {
            __m512 x0 = _mm512_loadu_ps(x + b * QK);
            __m512 x1 = _mm512_loadu_ps(x + b * QK + 16);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m128i *q = (const __m128i *)(qs + r * rb + (size_t)b * (QK / 2));
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(q));
                __m512 tab = _mm512_mul_ps(levels, _mm512_set1_ps(sc[r][b - b0]));
                acc0[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, tab), x0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab), x1, acc1[r]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
}

INLINE ISA512 void gemv_q_512(gpt2_dtype t, const gpt2__wmat *w,
                              const float *x, float *y, int n0, int n1) {
    const uint8_t *base = w->data;
    size_t rb = w->row_bytes;
    int n = n0;
    /* Q8_0 one row at a time (one sequential stream: 10% faster from DRAM
       than four rows); Q4_0 four rows, which share the loads of x (its
       two lookups per block make it bound by instructions, not reads) */
    for (; t == GPT2_DTYPE_Q4_0 && n + ROWS <= n1; n += ROWS)
        q4_rows_512(ROWS, base + (size_t)n * rb, rb, x, w->K, y + n);
    for (; n < n1; n++) {
        const uint8_t *row = base + (size_t)n * rb;
        if (t == GPT2_DTYPE_Q8_0) q8_rows_512(1, row, rb, x, w->K, y + n);
        else q4_rows_512(1, row, rb, x, w->K, y + n);
    }
}

/* One 16-bit row (F16 or BF16 converted in registers) dotted with x:
   64 values a step, four accumulators, the row prefetched PF_ROW bytes
   ahead. One row at a time, because rows lie back to back, the kernel
   then reads one sequential stream; four rows at once (four streams, as
   out_rows_512) measured 15-20% slower from DRAM for 16-bit rows on Zen
   5, where converting leaves less slack than F32's plain loads. */
INLINE ISA512 float row16_512(gpt2_dtype t, const uint8_t *row, const float *x,
                              int K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        _mm_prefetch((const char *)row + 2 * k + PF_ROW, _MM_HINT_T0);
        _mm_prefetch((const char *)row + 2 * k + PF_ROW + 64, _MM_HINT_T0);
        a0 = _mm512_fmadd_ps(load16(t, row, (size_t)k), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(load16(t, row, (size_t)k + 16), _mm512_loadu_ps(x + k + 16), a1);
        a2 = _mm512_fmadd_ps(load16(t, row, (size_t)k + 32), _mm512_loadu_ps(x + k + 32), a2);
        a3 = _mm512_fmadd_ps(load16(t, row, (size_t)k + 48), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k + 16 <= K; k += 16)
        a0 = _mm512_fmadd_ps(load16(t, row, (size_t)k), _mm512_loadu_ps(x + k), a0);
    if (k < K) {
        __mmask16 m = low_mask16(K - k);
        a1 = _mm512_fmadd_ps(load16_mask(t, row, (size_t)k, m),
                             _mm512_maskz_loadu_ps(m, x + k), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

INLINE ISA512 void gemv_out16_512(gpt2_dtype t, const gpt2__wmat *w,
                                  const float *x, float *y, int n0, int n1) {
    const uint8_t *base = w->data;
    for (int n = n0; n < n1; n++)
        y[n] = row16_512(t, base + (size_t)n * w->row_bytes, x, w->K);
}

/* ---- x quantized to int8 (gpt2__wmat_xquant_fn): the same float32
   operations as the portable one, 16 lanes at a time (vcvtps2dq rounds
   to nearest even, as nearbyintf does) */
static ISA512 void xquant_512(const float *x, int K, int8_t *q, float *d) {
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int b = 0; b < K / QK; b++) {
        __m512 x0 = _mm512_loadu_ps(x + b * QK), x1 = _mm512_loadu_ps(x + b * QK + 16);
        __m512 a0 = _mm512_abs_ps(x0), a1 = _mm512_abs_ps(x1);
        bool finite = (__mmask16)(_mm512_cmp_ps_mask(a0, big, _CMP_LE_OQ) &
                                  _mm512_cmp_ps_mask(a1, big, _CMP_LE_OQ)) == 0xffff;
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        float inv = finite && amax >= 127.0f / FLT_MAX ? 127.0f / amax : 0.0f;
        d[b] = !finite ? NAN : inv > 0.0f ? amax / 127.0f : 0.0f;
        __m512 iv = _mm512_set1_ps(inv);
        if (!finite) x0 = x1 = _mm512_setzero_ps();
        x0 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x0, iv), lo), hi);
        x1 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x1, iv), lo), hi);
        _mm_storeu_si128((__m128i *)(q + b * QK), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(x0)));
        _mm_storeu_si128((__m128i *)(q + b * QK + 16), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(x1)));
    }
}

/* ---- Q8_0 and Q4_0 rows by int8 products (AVX512_VNNI vpdpbusd), x
   as gpt2__xq (wmat.h says how the integers come out exact) */
#define ISAVNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/* x's and the row's scales of blocks [b0, b0 + 16) multiplied (the row's
   fewer at its end: the rest 0) */
INLINE ISAVNNI __m512 scales16(const uint8_t *row, int b0, int nb, const float *dx) {
    __m512 sw = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(low_mask16(nb - b0), row + 2 * (size_t)b0));
    return _mm512_mul_ps(sw, _mm512_loadu_ps(dx + b0));
}

/* The indexes that spread 16 blocks' scales over the int32 lanes of the
   n-th 64 bytes: per = 2 blocks (Q8_0: 8 lanes a block) or 4 (Q4_0: 4
   lanes a block), from a table (vpermps takes its indexes in a register;
   making them from n costs more than the product) */
INLINE ISAVNNI __m512i lane_blocks(int per, int n) {
    static const int32_t by2[8][16] = {
#define B2(p) {2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, \
               2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1}
        B2(0), B2(1), B2(2), B2(3), B2(4), B2(5), B2(6), B2(7)
#undef B2
    };
    static const int32_t by4[4][16] = {
#define B4(g) {4 * g, 4 * g, 4 * g, 4 * g, 4 * g + 1, 4 * g + 1, 4 * g + 1, 4 * g + 1, \
               4 * g + 2, 4 * g + 2, 4 * g + 2, 4 * g + 2, 4 * g + 3, 4 * g + 3, 4 * g + 3, 4 * g + 3}
        B4(0), B4(1), B4(2), B4(3)
#undef B4
    };
    return _mm512_loadu_si512(per == 2 ? by2[n] : by4[n]);
}

/* One Q8_0 product of 64 bytes (blocks b, b + 1; only b when one): w ^
   0x80 = w + 128 unsigned, times x's quants, from c8; the 16 int32 lanes
   (8 per block) to float, times their block's two scales, into acc. */
INLINE ISAVNNI __m512 q8_pair(const uint8_t *w, bool one, const gpt2__xq *x, int b,
                              __m512i idx, __m512 s, __m512 acc) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    _mm_prefetch((const char *)w + PF_ROW, _MM_HINT_T0);
    __m512i wv = one ? _mm512_maskz_loadu_epi8(0xffffffffull, w) : _mm512_loadu_si512(w);
    __m512i i = _mm512_dpbusd_epi32(_mm512_loadu_si512(x->c8 + 8 * b),
                                    _mm512_xor_si512(wv, flip),
                                    _mm512_loadu_si512(x->q + QK * b));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_permutexvar_ps(idx, s), acc);
}

/* One Q8_0 row: whole groups of 16 blocks without a test per product
   (the tests cost a fifth of the instructions), then the rest. Four
   float accumulators. */
INLINE ISAVNNI float q8_row_vnni(const uint8_t *row, const gpt2__xq *x, int K) {
    int nb = K / QK, b0 = 0;
    const uint8_t *qs = row + (size_t)nb * 2;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (; b0 + 16 <= nb; b0 += 16) {
        __m512 s = scales16(row, b0, nb, x->d);
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++) /* unrolled whole: acc[] in registers */
            acc[p & 3] = q8_pair(qs + (size_t)(b0 + 2 * p) * QK, false, x, b0 + 2 * p,
                                 lane_blocks(2, p), s, acc[p & 3]);
    }
    if (b0 < nb) {
        __m512 s = scales16(row, b0, nb, x->d);
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++) {
            int b = b0 + 2 * p;
            if (b >= nb) break;
            acc[p & 3] = q8_pair(qs + (size_t)b * QK, b + 1 == nb, x, b, lane_blocks(2, p),
                                 s, acc[p & 3]);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]),
                                              _mm512_add_ps(acc[2], acc[3])));
}

/* One Q4_0 product of 64 bytes (blocks b..b+3; fewer at the end of a
   row: left), the low nibbles times the first halves of x's blocks and
   the high nibbles times the last (q4's order), from c4; 4 int32 lanes
   per block. */
INLINE ISAVNNI __m512 q4_group(const uint8_t *w, int left, const gpt2__xq *x, int b,
                               __m512i idx, __m512 s, __m512 acc) {
    const __m512i nib = _mm512_set1_epi8(0x0f);
    _mm_prefetch((const char *)w + PF_ROW, _MM_HINT_T0);
    __m512i v = left >= 4 ? _mm512_loadu_si512(w)
                          : _mm512_maskz_loadu_epi8(~0ull >> (64 - 16 * left), w);
    __m512i i = _mm512_loadu_si512(x->c4 + 4 * b);
    i = _mm512_dpbusd_epi32(i, _mm512_and_si512(v, nib), _mm512_loadu_si512(x->q4 + QK * b));
    i = _mm512_dpbusd_epi32(i, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib),
                            _mm512_loadu_si512(x->q4 + QK * b + 64));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_permutexvar_ps(idx, s), acc);
}

/* One Q4_0 row, as q8_row_vnni: whole groups of 16 blocks, then the rest */
INLINE ISAVNNI float q4_row_vnni(const uint8_t *row, const gpt2__xq *x, int K) {
    int nb = K / QK, b0 = 0;
    const uint8_t *qs = row + (size_t)nb * 2;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (; b0 + 16 <= nb; b0 += 16) {
        __m512 s = scales16(row, b0, nb, x->d);
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            acc[g] = q4_group(qs + (size_t)(b0 + 4 * g) * (QK / 2), 4, x, b0 + 4 * g,
                              lane_blocks(4, g), s, acc[g]);
    }
    if (b0 < nb) {
        __m512 s = scales16(row, b0, nb, x->d);
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            int b = b0 + 4 * g;
            if (b >= nb) break;
            acc[g] = q4_group(qs + (size_t)b * (QK / 2), nb - b, x, b, lane_blocks(4, g), s,
                              acc[g]);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]),
                                              _mm512_add_ps(acc[2], acc[3])));
}

static ISAVNNI void q8_vnni(const gpt2__wmat *w, const gpt2__xq *x, float *y, int n0, int n1) {
    for (int n = n0; n < n1; n++)
        y[n] = q8_row_vnni((const uint8_t *)w->data + (size_t)n * w->row_bytes, x, w->K);
}
static ISAVNNI void q4_vnni(const gpt2__wmat *w, const gpt2__xq *x, float *y, int n0, int n1) {
    for (int n = n0; n < n1; n++)
        y[n] = q4_row_vnni((const uint8_t *)w->data + (size_t)n * w->row_bytes, x, w->K);
}

/* ---- BF16 rows by vdpbf16ps (AVX512_BF16)

   vdpbf16ps multiplies bf16 pairs and adds them into float32 lanes,
   reading a 64-byte line of weights as it is: no widening, half the
   instructions of converting and FMA, which is what lets a 16-bit row
   stream at the speed of a plain read on Zen 5. x is float32, so it is
   split into two bf16 parts, hi = bf16(x) and lo = bf16(x - hi), and
   each line takes two vdpbf16ps: x is kept to 16 significant bits (a
   relative error of 2^-17 at most, against bf16 weights' 2^-9), not
   rounded to bf16. (The instruction flushes subnormal inputs to zero,
   which no weight or activation of a real model is.) */
#define ISABF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))

/* Rows up to this long split x on the stack; longer ones convert */
#define DP_MAX_K 16384

/* x split into bf16 hi and lo parts, K values each (zero-padded to a
   multiple of 32) */
static ISABF16 void split_x_bf16(const float *x, int K, uint16_t *hi, uint16_t *lo) {
    int k = 0;
    for (; k < K; k += 16) {
        __mmask16 m = low_mask16(K - k);
        __m512 v = _mm512_maskz_loadu_ps(m, x + k);
        __m256bh h = _mm512_cvtneps_pbh(v);
        __m512 hv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h), 16));
        __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(v, hv));
        _mm256_storeu_si256((__m256i *)(hi + k), (__m256i)h);
        _mm256_storeu_si256((__m256i *)(lo + k), (__m256i)l);
    }
    for (; k % 32; k += 16) { /* pad to whole vectors */
        _mm256_storeu_si256((__m256i *)(hi + k), _mm256_setzero_si256());
        _mm256_storeu_si256((__m256i *)(lo + k), _mm256_setzero_si256());
    }
}

static ISABF16 float row_bf16dp(const uint16_t *row, const uint16_t *xh,
                                const uint16_t *xl, int K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        _mm_prefetch((const char *)(row + k) + PF_ROW, _MM_HINT_T0);
        _mm_prefetch((const char *)(row + k) + PF_ROW + 64, _MM_HINT_T0);
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(row + k);
        __m512bh w1 = (__m512bh)_mm512_loadu_si512(row + k + 32);
        a0 = _mm512_dpbf16_ps(a0, w0, (__m512bh)_mm512_loadu_si512(xh + k));
        a1 = _mm512_dpbf16_ps(a1, w0, (__m512bh)_mm512_loadu_si512(xl + k));
        a2 = _mm512_dpbf16_ps(a2, w1, (__m512bh)_mm512_loadu_si512(xh + k + 32));
        a3 = _mm512_dpbf16_ps(a3, w1, (__m512bh)_mm512_loadu_si512(xl + k + 32));
    }
    for (; k < K; k += 32) { /* x is zero past K; the row is masked */
        __mmask32 m = K - k >= 32 ? 0xffffffffu : (1u << (K - k)) - 1;
        __m512bh w0 = (__m512bh)_mm512_maskz_loadu_epi16(m, row + k);
        a0 = _mm512_dpbf16_ps(a0, w0, (__m512bh)_mm512_loadu_si512(xh + k));
        a1 = _mm512_dpbf16_ps(a1, w0, (__m512bh)_mm512_loadu_si512(xl + k));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static ISABF16 void out_bf16_dp(const gpt2__wmat *w, const float *x, float *y,
                                int n0, int n1) {
    int K = w->K;
    if (K > DP_MAX_K) {
        gemv_out16_512(BF16, w, x, y, n0, n1);
        return;
    }
    uint16_t xh[DP_MAX_K] __attribute__((aligned(64)));
    uint16_t xl[DP_MAX_K] __attribute__((aligned(64)));
    split_x_bf16(x, K, xh, xl);
    const uint8_t *base = w->data;
    for (int n = n0; n < n1; n++)
        y[n] = row_bf16dp((const uint16_t *)(base + (size_t)n * w->row_bytes), xh, xl, K);
}

static ISA512 void in_f32_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_in_512(F32, w, x, y, a, b); }
static ISA512 void in_f16_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_in_512(F16, w, x, y, a, b); }
static ISA512 void in_bf16_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_in_512(BF16, w, x, y, a, b); }
static ISA512 void rows_f32_512(const gpt2__wmat *w, const float *x, float *y, int k0, int k1, int n0, int n1) { in_rows_512(F32, w, x, y, k0, k1, n0, n1); }
static ISA512 void rows_f16_512(const gpt2__wmat *w, const float *x, float *y, int k0, int k1, int n0, int n1) { in_rows_512(F16, w, x, y, k0, k1, n0, n1); }
static ISA512 void rows_bf16_512(const gpt2__wmat *w, const float *x, float *y, int k0, int k1, int n0, int n1) { in_rows_512(BF16, w, x, y, k0, k1, n0, n1); }
static ISA512 void out_f32_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_out_512(F32, w, x, y, a, b); }
static ISA512 void out_f16_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_out16_512(F16, w, x, y, a, b); }
static ISA512 void out_bf16_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_out16_512(BF16, w, x, y, a, b); }
static ISA512 void out_q8_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_q_512(GPT2_DTYPE_Q8_0, w, x, y, a, b); }
static ISA512 void out_q4_512(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_q_512(GPT2_DTYPE_Q4_0, w, x, y, a, b); }

/* ------------------------------------------------- AVX-512 dequantize */

INLINE ISA512 void deq16_512(gpt2_dtype t, const void *row, size_t len,
                             float *out) {
    size_t j = 0;
    for (; j + 16 <= len; j += 16) _mm512_storeu_ps(out + j, load16(t, row, j));
    if (j < len) {
        __mmask16 m = low_mask16((int)(len - j));
        _mm512_mask_storeu_ps(out + j, m, load16_mask(t, row, j, m));
    }
}

static ISA512 void deq_f16_512(const void *row, size_t len, float *out) { deq16_512(F16, row, len, out); }
static ISA512 void deq_bf16_512(const void *row, size_t len, float *out) { deq16_512(BF16, row, len, out); }

static ISA512 void deq_q8_512(const void *row, size_t len, float *out) {
    size_t nb = len / QK;
    const int8_t *qs = (const int8_t *)row + nb * 2;
    for (size_t b = 0; b < nb; b++) {
        __m512 d = _mm512_cvtph_ps(_mm256_set1_epi16((short)scale_bits(row, b)));
        const __m128i *q = (const __m128i *)(qs + b * QK);
        __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q)));
        __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1)));
        _mm512_storeu_ps(out + b * QK, _mm512_mul_ps(w0, d));
        _mm512_storeu_ps(out + b * QK + 16, _mm512_mul_ps(w1, d));
    }
}

static ISA512 void deq_q4_512(const void *row, size_t len, float *out) {
    size_t nb = len / QK;
    const uint8_t *qs = (const uint8_t *)row + nb * 2;
    const __m512 levels = Q4_LEVELS;
    for (size_t b = 0; b < nb; b++) {
        __m512 tab = _mm512_mul_ps(levels, _mm512_cvtph_ps(_mm256_set1_epi16((short)scale_bits(row, b))));
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qs + b * (QK / 2))));
        _mm512_storeu_ps(out + b * QK, _mm512_permutexvar_ps(v, tab));
        _mm512_storeu_ps(out + b * QK + 16,
                         _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab));
    }
}

static void deq_f32_any(const void *row, size_t len, float *out) {
    memcpy(out, row, len * sizeof(float));
}

/* A 16 x 16 block of floats transposed in registers: pairs of rows
   interleaved (unpack), then groups of 4 (shuffle), then 128-bit lanes
   across groups of 8 and 16 (shuffle_f32x4). Non-temporal stores where
   dst's rows are aligned lines (wmat.h: the caller fences). */
static ISA512 void transpose16_512(const float *src, size_t lds, float *dst,
                                   size_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * lds);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        r[g] = _mm512_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
            t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
    if ((uintptr_t)dst % 64 == 0 && ldd % 16 == 0) {
        /* whole aligned lines: stored past the cache (no read of the
           line first), which halved the conversion's time */
        for (int i = 0; i < 16; i++) _mm512_stream_ps(dst + (size_t)i * ldd, r[i]);
        return;
    }
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (size_t)i * ldd, r[i]);
}

/* The AVX-512 variants differ only in BF16 rows by vdpbf16ps and Q8_0 /
   Q4_0 rows by int8 products */
#define AVX512_KERNELS(NAME, OUT_BF16, QGEMV_Q8, QGEMV_Q4)                     \
    {                                                                         \
        .name = NAME,                                                         \
        .gemv = {                                                             \
            [F32] = {in_f32_512, out_f32_512},                                \
            [F16] = {in_f16_512, out_f16_512},                                \
            [BF16] = {in_bf16_512, OUT_BF16},                                 \
            [GPT2_DTYPE_Q8_0] = {NULL, out_q8_512},                           \
            [GPT2_DTYPE_Q4_0] = {NULL, out_q4_512},                           \
        },                                                                    \
        .in_rows = {rows_f32_512, rows_f16_512, rows_bf16_512},               \
        .qgemv = {QGEMV_Q8, QGEMV_Q4},                                        \
        .xquant = xquant_512,                                                 \
        .deq = {deq_f32_any, deq_f16_512, deq_bf16_512, deq_q8_512, deq_q4_512}, \
        .transpose16 = transpose16_512,                                       \
    }
static const gpt2__wmat_kernels avx512_kernels =
    AVX512_KERNELS("avx512", out_bf16_512, NULL, NULL);
/* where the CPU has AVX512_VNNI */
static const gpt2__wmat_kernels avx512vnni_kernels =
    AVX512_KERNELS("avx512vnni", out_bf16_512, q8_vnni, q4_vnni);
/* where it has AVX512_BF16 too */
static const gpt2__wmat_kernels avx512bf16_kernels =
    AVX512_KERNELS("avx512bf16", out_bf16_dp, q8_vnni, q4_vnni);

/* ================================================================ AVX2 */

/* 8 values of a row from element j, as floats */
INLINE ISA256 __m256 load8(gpt2_dtype t, const uint8_t *p, size_t j) {
    if (t == F32) return _mm256_loadu_ps((const float *)p + j);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + j));
    if (t == F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE ISA256 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE ISA256 void in_pass_256(gpt2_dtype t, int R, const uint8_t *col,
                               size_t rb, const float *xk, float *yo,
                               int nc, size_t pf) {
    size_t es = elem_size(t);
    __m256 xv[4];
    for (int r = 0; r < R; r++) xv[r] = _mm256_set1_ps(xk[r]);
    int j = 0;
    for (; j + 32 <= nc; j += 32) { /* one cache line of 16-bit weights */
        __m256 a[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) a[v] = _mm256_loadu_ps(yo + j + 8 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *p = col + r * rb;
            for (size_t b = 0; b < 32 * es; b += 64)
                _mm_prefetch((const char *)p + j * es + b + pf, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                a[v] = _mm256_fmadd_ps(load8(t, p, (size_t)j + 8 * v), xv[r], a[v]);
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) _mm256_storeu_ps(yo + j + 8 * v, a[v]);
    }
    for (; j + 8 <= nc; j += 8) {
        __m256 a = _mm256_loadu_ps(yo + j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a = _mm256_fmadd_ps(load8(t, col + r * rb, (size_t)j), xv[r], a);
        _mm256_storeu_ps(yo + j, a);
    }
    for (; j < nc; j++)
        for (int r = 0; r < R; r++) yo[j] += xk[r] * load1(t, col + r * rb, (size_t)j);
}

INLINE ISA256 void in_rows_256(gpt2_dtype t, const gpt2__wmat *w,
                               const float *x, float *y, int k0, int k1,
                               int n0, int n1) {
    size_t es = elem_size(t);
    int nc = n1 - n0;
    float *yo = y + n0;
    memset(yo, 0, (size_t)nc * sizeof(float));
    for (int k = k0; k < k1; k++) {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)k * w->row_bytes + (size_t)n0 * es;
        __m256 xv = _mm256_set1_ps(x[k]);
        int j = 0;
        for (; j + 32 <= nc; j += 32) {
            for (size_t b = 0; b < 32 * es; b += 64)
                _mm_prefetch((const char *)p + j * es + b + PF_ROW, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int v = 0; v < 32; v += 8)
                _mm256_storeu_ps(yo + j + v, _mm256_fmadd_ps(load8(t, p, (size_t)(j + v)), xv,
                                                             _mm256_loadu_ps(yo + j + v)));
        }
        for (; j + 8 <= nc; j += 8)
            _mm256_storeu_ps(yo + j, _mm256_fmadd_ps(load8(t, p, (size_t)j), xv,
                                                     _mm256_loadu_ps(yo + j)));
        for (; j < nc; j++) yo[j] += x[k] * load1(t, p, (size_t)j);
    }
}

INLINE ISA256 void gemv_in_256(gpt2_dtype t, const gpt2__wmat *w,
                               const float *x, float *y, int n0, int n1) {
    size_t rb = w->row_bytes, pf = PF_ROWS * rb;
    for (int c0 = n0; c0 < n1; c0 += IN_TILE) {
        int nc = n1 - c0 < IN_TILE ? n1 - c0 : IN_TILE;
        float *yo = y + c0;
        const uint8_t *col = (const uint8_t *)w->data + (size_t)c0 * elem_size(t);
        memset(yo, 0, (size_t)nc * sizeof(float));
        int k = 0;
        for (; k + 4 <= w->K; k += 4)
            in_pass_256(t, 4, col + (size_t)k * rb, rb, x + k, yo, nc, pf);
        for (; k < w->K; k++)
            in_pass_256(t, 1, col + (size_t)k * rb, rb, x + k, yo, nc, pf);
    }
}

INLINE ISA256 void out_rows_256(gpt2_dtype t, int R, const uint8_t *row,
                                size_t rb, const float *x, int K, float *y) {
    size_t es = elem_size(t);
    __m256 acc[ROWS], acc2[ROWS];
    for (int r = 0; r < R; r++) acc[r] = acc2[r] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m256 xv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) xv[v] = _mm256_loadu_ps(x + k + 8 * v);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = row + r * rb;
            for (size_t b = 0; t != F32 && b < 32 * es; b += 64)
                _mm_prefetch((const char *)p + k * es + b + PF_DIST, _MM_HINT_T0);
            acc[r] = _mm256_fmadd_ps(load8(t, p, (size_t)k), xv[0], acc[r]);
            acc2[r] = _mm256_fmadd_ps(load8(t, p, (size_t)k + 8), xv[1], acc2[r]);
            acc[r] = _mm256_fmadd_ps(load8(t, p, (size_t)k + 16), xv[2], acc[r]);
            acc2[r] = _mm256_fmadd_ps(load8(t, p, (size_t)k + 24), xv[3], acc2[r]);
        }
    }
    for (; k + 8 <= K; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(load8(t, row + r * rb, (size_t)k), xv, acc[r]);
    }
    for (int r = 0; r < R; r++) {
        float s = hsum256(_mm256_add_ps(acc[r], acc2[r]));
        for (int i = k; i < K; i++) s += x[i] * load1(t, row + r * rb, (size_t)i);
        y[r] = s;
    }
}

INLINE ISA256 void gemv_out_256(gpt2_dtype t, const gpt2__wmat *w,
                                const float *x, float *y, int n0, int n1) {
    const uint8_t *base = w->data;
    size_t rb = w->row_bytes;
    int n = n0;
    for (; n + ROWS <= n1; n += ROWS)
        out_rows_256(t, ROWS, base + (size_t)n * rb, rb, x, w->K, y + n);
    for (; n < n1; n++)
        out_rows_256(t, 1, base + (size_t)n * rb, rb, x, w->K, y + n);
}

INLINE ISA256 void prefetch_rows_256(int R, const uint8_t *p, size_t rb,
                                     size_t off, size_t n) {
    for (int r = 0; r < R; r++)
        for (size_t b = 0; b < n; b += 64)
            _mm_prefetch((const char *)p + r * rb + off + b + PF_DIST, _MM_HINT_T0);
}

/* The scales of blocks [b0, b0 + 8) of R rows as floats. A 16-byte load
   past a row's last scale reads its first quants (at least 16 bytes), so
   it stays inside the row; those lanes are never used. */
INLINE ISA256 void scales_256(int R, const uint8_t *row, size_t rb, int b0,
                              float sc[][8]) {
    for (int r = 0; r < R; r++) {
        const __m128i *s = (const __m128i *)((const uint16_t *)(row + r * rb) + b0);
        _mm256_storeu_ps(sc[r], _mm256_cvtph_ps(_mm_loadu_si128(s)));
    }
}

/* 8 int8 at p as floats */
INLINE ISA256 __m256 i8x8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

INLINE ISA256 void q8_rows_256(int R, const uint8_t *row, size_t rb,
                               const float *x, int K, float *y) {
    int nb = K / QK;
    const uint8_t *qs = row + (size_t)nb * 2;
    __m256 acc[ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int b0 = 0; b0 < nb; b0 += 8) {
        float sc[ROWS][8];
        scales_256(R, row, rb, b0, sc);
        prefetch_rows_256(R, qs, rb, (size_t)b0 * QK, 8 * QK);
        int b1 = nb - b0 < 8 ? nb : b0 + 8;
        for (int b = b0; b < b1; b++) {
            const float *xb = x + b * QK;
            __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
            __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const int8_t *q = (const int8_t *)(qs + r * rb) + b * QK;
                __m256 s = _mm256_mul_ps(i8x8(q), x0);
                s = _mm256_fmadd_ps(i8x8(q + 8), x1, s);
                s = _mm256_fmadd_ps(i8x8(q + 16), x2, s);
                s = _mm256_fmadd_ps(i8x8(q + 24), x3, s);
                acc[r] = _mm256_fmadd_ps(s, _mm256_set1_ps(sc[r][b - b0]), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) y[r] = hsum256(acc[r]);
}

/* Q4_0 rows: the unsigned nibbles as floats, their dot product with x,
   less 8 times the block's sum of x (shared by the rows): the dot
   product with nibble - 8, without subtracting per value. */
INLINE ISA256 void q4_rows_256(int R, const uint8_t *row, size_t rb,
                               const float *x, int K, float *y) {
    int nb = K / QK;
    const uint8_t *qs = row + (size_t)nb * 2;
    const __m256i low4 = _mm256_set1_epi32(15);
    const __m256 eight = _mm256_set1_ps(8.0f);
    __m256 acc[ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int b0 = 0; b0 < nb; b0 += 8) {
        float sc[ROWS][8];
        scales_256(R, row, rb, b0, sc);
        prefetch_rows_256(R, qs, rb, (size_t)b0 * (QK / 2), 8 * (QK / 2));
        int b1 = nb - b0 < 8 ? nb : b0 + 8;
        for (int b = b0; b < b1; b++) {
            const float *xb = x + b * QK;
            __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
            __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
            __m256 xs8 = _mm256_mul_ps(
                eight, _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *q = qs + r * rb + (size_t)b * (QK / 2);
                __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q));
                __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8)));
                __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, low4)), x0);
                s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, low4)), x1, s);
                s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), x2, s);
                s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), x3, s);
                s = _mm256_sub_ps(s, xs8);
                acc[r] = _mm256_fmadd_ps(s, _mm256_set1_ps(sc[r][b - b0]), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) y[r] = hsum256(acc[r]);
}

INLINE ISA256 void gemv_q_256(gpt2_dtype t, const gpt2__wmat *w,
                              const float *x, float *y, int n0, int n1) {
    const uint8_t *base = w->data;
    size_t rb = w->row_bytes;
    int n = n0;
    for (; n + ROWS <= n1; n += ROWS) {
        const uint8_t *row = base + (size_t)n * rb;
        if (t == GPT2_DTYPE_Q8_0) q8_rows_256(ROWS, row, rb, x, w->K, y + n);
        else q4_rows_256(ROWS, row, rb, x, w->K, y + n);
    }
    for (; n < n1; n++) {
        const uint8_t *row = base + (size_t)n * rb;
        if (t == GPT2_DTYPE_Q8_0) q8_rows_256(1, row, rb, x, w->K, y + n);
        else q4_rows_256(1, row, rb, x, w->K, y + n);
    }
}

static ISA256 void in_f32_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_in_256(F32, w, x, y, a, b); }
static ISA256 void in_f16_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_in_256(F16, w, x, y, a, b); }
static ISA256 void in_bf16_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_in_256(BF16, w, x, y, a, b); }
static ISA256 void rows_f32_256(const gpt2__wmat *w, const float *x, float *y, int k0, int k1, int n0, int n1) { in_rows_256(F32, w, x, y, k0, k1, n0, n1); }
static ISA256 void rows_f16_256(const gpt2__wmat *w, const float *x, float *y, int k0, int k1, int n0, int n1) { in_rows_256(F16, w, x, y, k0, k1, n0, n1); }
static ISA256 void rows_bf16_256(const gpt2__wmat *w, const float *x, float *y, int k0, int k1, int n0, int n1) { in_rows_256(BF16, w, x, y, k0, k1, n0, n1); }
static ISA256 void out_f32_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_out_256(F32, w, x, y, a, b); }
static ISA256 void out_f16_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_out_256(F16, w, x, y, a, b); }
static ISA256 void out_bf16_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_out_256(BF16, w, x, y, a, b); }
static ISA256 void out_q8_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_q_256(GPT2_DTYPE_Q8_0, w, x, y, a, b); }
static ISA256 void out_q4_256(const gpt2__wmat *w, const float *x, float *y, int a, int b) { gemv_q_256(GPT2_DTYPE_Q4_0, w, x, y, a, b); }

/* ---------------------------------------------------- AVX2 dequantize */

INLINE ISA256 void deq8_256(gpt2_dtype t, const void *row, size_t len,
                            float *out) {
    size_t j = 0;
    for (; j + 8 <= len; j += 8) _mm256_storeu_ps(out + j, load8(t, row, j));
    for (; j < len; j++) out[j] = load1(t, row, j);
}

static ISA256 void deq_f16_256(const void *row, size_t len, float *out) { deq8_256(F16, row, len, out); }
static ISA256 void deq_bf16_256(const void *row, size_t len, float *out) { deq8_256(BF16, row, len, out); }

static ISA256 void deq_q8_256(const void *row, size_t len, float *out) {
    size_t nb = len / QK;
    const int8_t *qs = (const int8_t *)row + nb * 2;
    for (size_t b = 0; b < nb; b++) {
        __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)scale_bits(row, b)));
        for (int i = 0; i < QK; i += 8)
            _mm256_storeu_ps(out + b * QK + i, _mm256_mul_ps(i8x8(qs + b * QK + i), d));
    }
}

static ISA256 void deq_q4_256(const void *row, size_t len, float *out) {
    size_t nb = len / QK;
    const uint8_t *qs = (const uint8_t *)row + nb * 2;
    const __m256i low4 = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    for (size_t b = 0; b < nb; b++) {
        __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)scale_bits(row, b)));
        for (int h = 0; h < 2; h++) { /* bytes 0..7, then 8..15 */
            const uint8_t *q = qs + b * (QK / 2) + h * 8;
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q));
            __m256i lo = _mm256_sub_epi32(_mm256_and_si256(v, low4), eight);
            __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(v, 4), eight);
            float *o = out + b * QK + h * 8;
            _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d));
            _mm256_storeu_ps(o + QK / 2, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d));
        }
    }
}

/* gpt2__wmat_xquant_fn: the same float32 operations as the portable one,
   8 lanes at a time */
static ISA256 void xquant_256(const float *x, int K, int8_t *q, float *d) {
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (int b = 0; b < K / QK; b++) {
        __m256 v[4], amax = _mm256_setzero_ps();
        int finite = 0xff;
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + b * QK + 8 * i);
            __m256 a = _mm256_andnot_ps(sign, v[i]);
            finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, big, _CMP_LE_OQ));
            amax = _mm256_max_ps(amax, a);
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float mx = _mm_cvtss_f32(m);
        bool ok = finite == 0xff;
        float inv = ok && mx >= 127.0f / FLT_MAX ? 127.0f / mx : 0.0f;
        d[b] = !ok ? NAN : inv > 0.0f ? mx / 127.0f : 0.0f;
        __m256 iv = _mm256_set1_ps(inv);
        __m256i n[4];
        for (int i = 0; i < 4; i++) {
            __m256 t = ok ? _mm256_mul_ps(v[i], iv) : _mm256_setzero_ps();
            n[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, lo), hi));
        }
        /* 32 int32 to 32 int8 in order: the packs work within 128-bit
           lanes, one dword permute puts the lanes back */
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
        w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * QK), w);
    }
}

static const gpt2__wmat_kernels avx2_kernels = {
    .name = "avx2",
    .gemv = {
        [F32] = {in_f32_256, out_f32_256},
        [F16] = {in_f16_256, out_f16_256},
        [BF16] = {in_bf16_256, out_bf16_256},
        [GPT2_DTYPE_Q8_0] = {NULL, out_q8_256},
        [GPT2_DTYPE_Q4_0] = {NULL, out_q4_256},
    },
    .in_rows = {rows_f32_256, rows_f16_256, rows_bf16_256},
    .xquant = xquant_256,
    .deq = {deq_f32_any, deq_f16_256, deq_bf16_256, deq_q8_256, deq_q4_256},
};

/* ============================================================ choosing */

/* F16C from CPUID (not every compiler's __builtin_cpu_supports knows
   it); the AVX state it needs the OS to save comes with AVX2's check. */
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static bool cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           cpu_has_f16c();
}

static bool cpu_has_avx512(void) {
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

static bool cpu_has_avx512vnni(void) {
    return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
}

/* every CPU with AVX512_BF16 so far has AVX512_VNNI too; the variant
   uses both */
static bool cpu_has_avx512bf16(void) {
    return cpu_has_avx512vnni() && gpt2__x86_has_avx512bf16();
}

const gpt2__wmat_kernels *gpt2__wmat_x86_kernels(const char *isa) {
    if (strcmp(isa, "avx512bf16") == 0)
        return cpu_has_avx512bf16() ? &avx512bf16_kernels : NULL;
    if (strcmp(isa, "avx512vnni") == 0)
        return cpu_has_avx512vnni() ? &avx512vnni_kernels : NULL;
    if (strcmp(isa, "avx512") == 0) return cpu_has_avx512() ? &avx512_kernels : NULL;
    if (strcmp(isa, "avx2") == 0) return cpu_has_avx2() ? &avx2_kernels : NULL;
    return NULL;
}

#else /* not x86-64 with GCC or Clang: the portable kernels only */

const gpt2__wmat_kernels *gpt2__wmat_x86_kernels(const char *isa) {
    (void)isa;
    return NULL;
}

#endif
