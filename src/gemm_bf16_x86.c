/* gemm_bf16_x86.c: gpt2c's own bf16 GEMM kernel for x86-64 CPUs with
   AVX512_BF16 (plus F, BW, VL), for gemm.c's blocked driver; and the
   vector float32 -> bf16 conversion. Compiled per function for that ISA
   by target attributes, so the library needs no -m flags and runs on any
   x86-64; gemm.c uses it only when the CPU reports the ISA.

   vdpbf16ps multiplies pairs of bf16 values and adds both products into
   one float32 lane: acc[j] += a[2j] * b[2j] + a[2j+1] * b[2j+1]. So both
   inputs are packed in pairs along k: a panel of op(A) holds, per pair
   of k values, its 8 rows' pairs (32-bit each, low half the even k), and
   a panel of op(B) its 48 columns' pairs. The micro-kernel keeps an 8 x
   48 tile of C in 24 zmm accumulators (the unit's latency needs at least
   16 in flight to reach its peak on Zen 5), broadcasts one pair of A per
   row and loads three vectors of B per pair of k: 11 loads per 24
   vdpbf16ps. Alone, on one Zen 5 core, it runs at 500-520 GFLOP/s of the
   535 a register-bound loop reaches; in whole products, 250-480 (oneDNN's
   brgemm, 400-470, stays the first choice where it is built in).

   Packing converts float32 inputs with vcvtneps2bf16 (nearest even;
   subnormals flushed). Rows of op(A) stored along k ('N') and columns of
   op(B) stored along k ('T') come out of the conversion already paired
   and are transposed 8 x 8 in 32-bit units; the other two cases pair two
   stored rows by interleaving 16-bit values. */
#include "gemm.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define ISA __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

#define MR 8
#define NR 48
#define NV (NR / 16)

static bool cpu_ok(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

/* cnt (<= 0: none) of 16 values from element idx of X, as bf16; the rest
   zero. Masked loads touch no memory past cnt. */
ISA INLINE __m256i load16(const void *X, gpt2__gemm_in t, size_t idx, int cnt) {
    __mmask16 k = cnt >= 16 ? (__mmask16)0xffff
                            : (__mmask16)(cnt <= 0 ? 0 : (1u << cnt) - 1);
    if (t == GPT2__GEMM_IN_BF16)
        return _mm256_maskz_loadu_epi16(k, (const uint16_t *)X + idx);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, (const float *)X + idx));
}

/* lo, hi: 16 bf16 each (k and k + 1) -> pairs for positions 0..7 (*p0)
   and 8..15 (*p1) */
ISA INLINE void interleave(__m256i lo, __m256i hi, __m256i *p0, __m256i *p1) {
    __m256i a = _mm256_unpacklo_epi16(lo, hi); /* 0-3 | 8-11 */
    __m256i b = _mm256_unpackhi_epi16(lo, hi); /* 4-7 | 12-15 */
    *p0 = _mm256_permute2x128_si256(a, b, 0x20);
    *p1 = _mm256_permute2x128_si256(a, b, 0x31);
}

/* r[i] (8 x 8 32-bit values) transposed in place */
ISA INLINE void transpose8(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
    }
}

/* Stored rows r0..r0+7 of X (nval of them real, the rest zero), columns
   c0..c0+kc-1, as pairs along the row: dst[p * ds + r] for each pair p
   and row r. */
ISA static void rows8_pairs(uint32_t *dst, size_t ds, const void *X,
                            gpt2__gemm_in t, size_t ld, size_t r0, int nval,
                            size_t c0, int kc) {
    enum { PAIRS = GPT2__GEMM_KC / 2 + 8 };
    __attribute__((aligned(32))) uint32_t tmp[8][PAIRS];
    int np = (kc + 1) / 2, np8 = (np + 7) / 8 * 8;
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < np8 * 2; c += 16) {
            __m256i v = r < nval ? load16(X, t, (r0 + r) * ld + c0 + c, kc - c)
                                 : _mm256_setzero_si256();
            _mm256_store_si256((__m256i *)&tmp[r][c / 2], v);
        }
    for (int p0 = 0; p0 < np; p0 += 8) {
        __m256i v[8];
        for (int r = 0; r < 8; r++) v[r] = _mm256_load_si256((const __m256i *)&tmp[r][p0]);
        transpose8(v);
        for (int q = 0; q < 8 && p0 + q < np; q++)
            _mm256_storeu_si256((__m256i *)(dst + (size_t)(p0 + q) * ds), v[q]);
    }
}

ISA static void pack_a(void *dst, const gpt2__gemm_args *g, int i0, int m,
                       int k0, int kc) {
    int np = (kc + 1) / 2;
    size_t panel = (size_t)np * MR; /* uint32 per panel */
    uint32_t *d = dst;
    if (!g->ta) { /* op(A) rows are stored rows: pair along them */
        for (int q = 0; q * MR < m; q++)
            rows8_pairs(d + q * panel, MR, g->A, g->at, g->lda, (size_t)i0 + q * MR,
                        m - q * MR, k0, kc);
        return;
    }
    /* stored rows are k: pair row k with row k + 1, 16 values of i at a
       time (two panels) */
    for (int p = 0; p < np; p++) {
        size_t k = (size_t)k0 + 2 * p;
        bool odd = 2 * p + 1 < kc;
        for (int i = 0; i < m; i += 16) {
            __m256i lo = load16(g->A, g->at, k * g->lda + i0 + i, m - i);
            __m256i hi = odd ? load16(g->A, g->at, (k + 1) * g->lda + i0 + i, m - i)
                             : _mm256_setzero_si256();
            __m256i p0, p1;
            interleave(lo, hi, &p0, &p1);
            uint32_t *o = d + (size_t)(i / MR) * panel + (size_t)p * MR;
            _mm256_storeu_si256((__m256i *)o, p0);
            if (i + MR < m) _mm256_storeu_si256((__m256i *)(o + panel), p1);
        }
    }
}

ISA static void pack_b(void *dst, const gpt2__gemm_args *g, int j0, int n,
                       int k0, int kc) {
    int np = (kc + 1) / 2;
    uint32_t *d = dst;
    if (g->tb) { /* op(B) columns are stored rows: pair along them */
        for (int q = 0; q < NR / 8; q++)
            rows8_pairs(d + q * 8, NR, g->B, g->bt, g->ldb, (size_t)j0 + q * 8, n - q * 8,
                        k0, kc);
        return;
    }
    for (int p = 0; p < np; p++) {
        size_t k = (size_t)k0 + 2 * p;
        bool odd = 2 * p + 1 < kc;
        for (int h = 0; h < NR; h += 16) {
            __m256i lo = load16(g->B, g->bt, k * g->ldb + j0 + h, n - h);
            __m256i hi = odd ? load16(g->B, g->bt, (k + 1) * g->ldb + j0 + h, n - h)
                             : _mm256_setzero_si256();
            __m256i p0, p1;
            interleave(lo, hi, &p0, &p1);
            uint32_t *o = d + (size_t)p * NR + h;
            _mm256_storeu_si256((__m256i *)o, p0);
            _mm256_storeu_si256((__m256i *)(o + 8), p1);
        }
    }
}

ISA static void micro(int kc, const void *a_, const void *b_, float *c, int ldc,
                      int m, int n, float alpha, float beta) {
    const uint32_t *a = a_;
    const uint32_t *b = b_;
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int p = 0; p < kc / 2; p++) {
        __m512bh bv[NV];
        for (int v = 0; v < NV; v++)
            bv[v] = (__m512bh)_mm512_loadu_si512(b + (size_t)p * NR + 16 * v);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[(size_t)p * MR + i]);
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int v = 0; v < NV; v++) {
        int cnt = n - 16 * v;
        if (cnt <= 0) break;
        __mmask16 k = cnt >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1);
        for (int i = 0; i < m; i++) {
            float *ci = c + (size_t)i * ldc + 16 * v;
            __m512 r = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k, ci), r);
            _mm512_mask_storeu_ps(ci, k, r);
        }
    }
}

static const gpt2__gemm_kernel kernel = {
    .name = "avx512bf16",
    .mr = MR, .nr = NR, .kstep = 2,
    .mc = MR * 16, .nc = NR * 16, .kc = 512,
    .esize = sizeof(uint16_t),
    .pack_a = pack_a,
    .pack_b = pack_b,
    .micro = micro,
};

static int have = -1; /* unknown yet; a benign race: every thread agrees */

static bool available(void) {
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        h = cpu_ok();
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h;
}

const gpt2__gemm_kernel *gpt2__gemm_x86_bf16_kernel(void) {
    return available() ? &kernel : NULL;
}

bool gpt2__x86_has_avx512bf16(void) { return available(); }

ISA static void round_avx512(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512(dst + i, (__m512i)v);
    }
    for (; i < n; i += 16) {
        int cnt = n - i >= 16 ? 16 : (int)(n - i);
        __mmask16 k = (__mmask16)(cnt == 16 ? 0xffff : (1u << cnt) - 1);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + i));
        _mm256_mask_storeu_epi16(dst + i, k, (__m256i)v);
    }
}

bool gpt2__bf16_round_x86(uint16_t *dst, const float *src, size_t n) {
    if (!available()) return false;
    round_avx512(dst, src, n);
    return true;
}

#else /* not x86-64 with GCC or Clang: the portable kernel only */

const gpt2__gemm_kernel *gpt2__gemm_x86_bf16_kernel(void) { return NULL; }

bool gpt2__x86_has_avx512bf16(void) { return false; }

bool gpt2__bf16_round_x86(uint16_t *dst, const float *src, size_t n) {
    (void)dst, (void)src, (void)n;
    return false;
}

#endif
