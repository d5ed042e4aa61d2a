/* test_wmat.c: weight formats and their kernels (src/wmat.h).
 *
 * - sizes; F16/BF16 conversion against util.c's converters (all 65536
 *   halves); Q8_0/Q4_0 layout from hand-built rows, round-trip error
 *   bounds, exact values, all-zero blocks;
 * - for every format x layout x kernel variant this CPU runs: gemv_range
 *   over odd sizes and random sub-ranges against a double-precision
 *   reference on the weights as this file decodes them from the spec,
 *   and against the portable variant; threaded gemv with bias; matmul
 *   for several M.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gpt2.h"
#include "internal.h"
#include "wmat.h"

#define QK GPT2__QBLOCK

static const char *const isas[] = {"portable", "avx2", "avx512", "avx512vnni", "avx512bf16"};
#define N_ISAS 5

static const gpt2_dtype dtypes[] = {GPT2_DTYPE_F32, GPT2_DTYPE_F16,
                                    GPT2_DTYPE_BF16, GPT2_DTYPE_Q8_0,
                                    GPT2_DTYPE_Q4_0};
static const char *const dtype_names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0"};
#define N_DTYPES 5

static bool is_quant(gpt2_dtype t) {
    return t == GPT2_DTYPE_Q8_0 || t == GPT2_DTYPE_Q4_0;
}

/* ------------------------------------------------------------- random */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
/* uniform in [-1, 1) */
static float rnd_sym(void) { return (float)(rnd_u32() / 2147483648.0 - 1.0); }
static int rnd_int(int n) { return (int)(rnd_u32() % (uint32_t)n); }

/* values in [-s, s) with s varying per 32 (block scales differ) */
static void fill_weights(float *w, size_t n) {
    float s = 1.0f;
    for (size_t i = 0; i < n; i++) {
        if (i % QK == 0) s = ldexpf(1.0f + rnd_sym() * 0.5f, -rnd_int(8));
        w[i] = rnd_sym() * s;
    }
}

/* ------------------------------------------ the spec, decoded here */

static float f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return gpt2__f16_to_f32(h);
}

/* A stored row back to floats, written from wmat.h's description
   independently of wmat.c. */
static void spec_decode(gpt2_dtype t, const uint8_t *row, size_t len,
                        float *out) {
    size_t nb = len / QK;
    for (size_t i = 0; i < len; i++) {
        uint16_t h;
        switch (t) {
        case GPT2_DTYPE_F32:
            memcpy(&out[i], row + 4 * i, 4);
            break;
        case GPT2_DTYPE_F16:
            memcpy(&h, row + 2 * i, 2);
            out[i] = gpt2__f16_to_f32(h);
            break;
        case GPT2_DTYPE_BF16:
            memcpy(&h, row + 2 * i, 2);
            out[i] = gpt2__bf16_to_f32(h);
            break;
        case GPT2_DTYPE_Q8_0: {
            size_t b = i / QK;
            out[i] = f16(row + 2 * b) * (float)(int8_t)row[nb * 2 + i];
            break;
        }
        case GPT2_DTYPE_Q4_0: {
            size_t b = i / QK, j = i % QK;
            uint8_t byte = row[nb * 2 + b * 16 + j % 16];
            int nib = j < 16 ? byte & 15 : byte >> 4;
            out[i] = f16(row + 2 * b) * (float)(nib - 8);
            break;
        }
        }
    }
}

/* ------------------------------------------------------------- sizes */

static void test_sizes(void) {
    CHECK(gpt2__row_bytes(GPT2_DTYPE_F32, 10) == 40);
    CHECK(gpt2__row_bytes(GPT2_DTYPE_F16, 7) == 14);
    CHECK(gpt2__row_bytes(GPT2_DTYPE_BF16, 7) == 14);
    CHECK(gpt2__row_bytes(GPT2_DTYPE_Q8_0, 32) == 34);
    CHECK(gpt2__row_bytes(GPT2_DTYPE_Q8_0, 768) == 24 * 34);
    CHECK(gpt2__row_bytes(GPT2_DTYPE_Q4_0, 32) == 18);
    CHECK(gpt2__row_bytes(GPT2_DTYPE_Q4_0, 768) == 24 * 18);
    size_t bad[] = {1, 16, 31, 33, 48, 100, 769};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(gpt2__row_bytes(GPT2_DTYPE_Q8_0, bad[i]) == 0);
        CHECK(gpt2__row_bytes(GPT2_DTYPE_Q4_0, bad[i]) == 0);
    }
    CHECK(gpt2__row_bytes(GPT2_DTYPE_F32, SIZE_MAX / 2) == 0); /* overflow */
    CHECK(gpt2__row_bytes(GPT2_DTYPE_F16, SIZE_MAX) == 0);
    CHECK(gpt2__row_bytes(GPT2_DTYPE_Q8_0, SIZE_MAX / 32 * 32) == 0);
    CHECK(gpt2__row_bytes((gpt2_dtype)99, 32) == 0);
    gpt2__wmat w = {GPT2_DTYPE_Q4_0, GPT2__BY_OUT, 64, 3, NULL,
                    gpt2__row_bytes(GPT2_DTYPE_Q4_0, 64)};
    CHECK(gpt2__wmat_bytes(&w) == 3 * 36);
    gpt2__wmat v = {GPT2_DTYPE_F16, GPT2__BY_IN, 5, 3, NULL,
                    gpt2__row_bytes(GPT2_DTYPE_F16, 3)};
    CHECK(gpt2__wmat_bytes(&v) == 5 * 6);
}

/* ------------------------------------------------- 16-bit conversion */

static bool same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, 4) == 0;
}

/* every half and bfloat16 decodes as util.c's converters do, in every
   variant */
static void test_16bit_decode(void) {
    uint16_t *h = malloc(65536 * 2);
    float *out = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    for (int v = 0; v < N_ISAS; v++) {
        if (!gpt2__wmat_force_isa(isas[v])) continue;
        int bad16 = 0, badbf = 0;
        gpt2__dequantize_row(GPT2_DTYPE_F16, h, 65536, out);
        for (int i = 0; i < 65536; i++)
            bad16 += !same_float(out[i], gpt2__f16_to_f32((uint16_t)i));
        gpt2__dequantize_row(GPT2_DTYPE_BF16, h, 65536, out);
        for (int i = 0; i < 65536; i++)
            badbf += !same_float(out[i], gpt2__bf16_to_f32((uint16_t)i));
        /* odd lengths reach the vector tails */
        float tail[21];
        gpt2__dequantize_row(GPT2_DTYPE_F16, h + 0x3c00, 21, tail);
        for (int i = 0; i < 21; i++)
            bad16 += !same_float(tail[i], gpt2__f16_to_f32((uint16_t)(0x3c00 + i)));
        if (bad16 || badbf)
            fprintf(stderr, "%s: %d F16 and %d BF16 decoded wrongly\n", isas[v],
                    bad16, badbf);
        CHECK(bad16 == 0);
        CHECK(badbf == 0);
    }
    gpt2__wmat_force_isa(NULL);
    free(h);
    free(out);
}

/* quantize_row to F16/BF16 rounds as util.c does (nearest even) */
static void test_16bit_encode(void) {
    enum { N = 4096 };
    float x[N];
    uint16_t h[N];
    float special[] = {0.0f, -0.0f, 1.0f, 65504.0f, 65520.0f, 1e-8f,
                       5.9604645e-8f, 2.98e-8f, INFINITY, -INFINITY,
                       1.00048828125f, 1.00146484375f, 3.4e38f};
    for (int i = 0; i < N; i++) {
        uint32_t u = rnd_u32();
        memcpy(&x[i], &u, 4);
        if (isnan(x[i])) x[i] = 1.5f;
        if (i % 3 == 0) x[i] = rnd_sym() * 100.0f;
    }
    memcpy(x, special, sizeof special);
    int bad = 0;
    gpt2__quantize_row(GPT2_DTYPE_F16, x, N, h);
    for (int i = 0; i < N; i++) bad += h[i] != gpt2__f32_to_f16(x[i]);
    gpt2__quantize_row(GPT2_DTYPE_BF16, x, N, h);
    for (int i = 0; i < N; i++) bad += h[i] != gpt2__f32_to_bf16(x[i]);
    CHECK(bad == 0);
    /* round to nearest even, spelled out: 1 + 2^-11 is halfway between
       1 and 1 + 2^-10 and goes to 1 (even); 1 + 3 * 2^-11 goes up */
    float y[2] = {1.00048828125f, 1.00146484375f};
    gpt2__quantize_row(GPT2_DTYPE_F16, y, 2, h);
    CHECK(h[0] == 0x3c00 && h[1] == 0x3c02);
    float z[2] = {1.00390625f, 1.01171875f}; /* bf16 halfway cases */
    gpt2__quantize_row(GPT2_DTYPE_BF16, z, 2, h);
    CHECK(h[0] == 0x3f80 && h[1] == 0x3f82);
}

/* ------------------------------------------------ quantized formats */

/* Rows built by hand: the layout of wmat.h, decoded by every variant. */
static void test_q_layout(void) {
    /* Q8_0: scales 1 and 0.5 first, then the int8 quants */
    uint8_t q8[68];
    uint16_t s8[2] = {0x3c00, 0x3800};
    memcpy(q8, s8, 4);
    for (int i = 0; i < 64; i++) q8[4 + i] = (uint8_t)(int8_t)(i - 32);
    /* Q4_0: scale 2; byte j holds value j in its low nibble and value
       j + 16 in its high one */
    uint8_t q4[18];
    uint16_t s4 = 0x4000;
    memcpy(q4, &s4, 2);
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | (15 - j) << 4);
    for (int v = 0; v < N_ISAS; v++) {
        if (!gpt2__wmat_force_isa(isas[v])) continue;
        float out[64];
        gpt2__dequantize_row(GPT2_DTYPE_Q8_0, q8, 64, out);
        int bad = 0;
        for (int i = 0; i < 64; i++)
            bad += out[i] != (i < 32 ? 1.0f : 0.5f) * (float)(i - 32);
        gpt2__dequantize_row(GPT2_DTYPE_Q4_0, q4, 32, out);
        for (int j = 0; j < 16; j++) {
            bad += out[j] != 2.0f * (float)(j - 8);
            bad += out[j + 16] != 2.0f * (float)(15 - j - 8);
        }
        if (bad) fprintf(stderr, "%s: %d values decoded wrongly\n", isas[v], bad);
        CHECK(bad == 0);
    }
    gpt2__wmat_force_isa(NULL);
}

static void test_q8_round_trip(void) {
    enum { LEN = 32 * 64 };
    float x[LEN], y[LEN];
    uint8_t row[LEN / 32 * 34];
    fill_weights(x, LEN);
    x[5] = 0.0f;
    x[40] = -1e-30f;          /* underflows to a subnormal scale */
    for (int i = 64; i < 96; i++) x[i] = (float)(i - 80) * 1e-6f;
    gpt2__quantize_row(GPT2_DTYPE_Q8_0, x, LEN, row);
    gpt2__dequantize_row(GPT2_DTYPE_Q8_0, row, LEN, y);
    int bad = 0, nan = 0;
    for (int b = 0; b < LEN / 32; b++) {
        float d = f16(row + 2 * b), amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        /* d is max|x|/127 (rounded up to a half, so nothing clamps) */
        if (!(d >= amax / 127.0f && d <= amax / 127.0f * (1 + 1.0f / 512) + 6e-8f)) bad++;
        for (int i = 0; i < 32; i++) {
            float e = fabsf(y[b * 32 + i] - x[b * 32 + i]);
            nan += isnan(y[b * 32 + i]);
            if (!(e <= d / 2 * (1 + 1e-6f))) bad++;
        }
    }
    CHECK(bad == 0);
    CHECK(nan == 0);
    /* exactly representable: integers times a half-exact scale */
    float ex[64];
    for (int i = 0; i < 64; i++) ex[i] = (float)(rnd_int(255) - 127) * 0.0078125f;
    ex[3] = 127 * 0.0078125f;
    ex[40] = -127 * 0.0078125f;
    gpt2__quantize_row(GPT2_DTYPE_Q8_0, ex, 64, row);
    gpt2__dequantize_row(GPT2_DTYPE_Q8_0, row, 64, y);
    CHECK(memcmp(ex, y, sizeof ex) == 0);
    /* all zero: d = 0, values 0, no NaN */
    float z[64] = {0};
    gpt2__quantize_row(GPT2_DTYPE_Q8_0, z, 64, row);
    gpt2__dequantize_row(GPT2_DTYPE_Q8_0, row, 64, y);
    CHECK(f16(row) == 0.0f && f16(row + 2) == 0.0f);
    for (int i = 0; i < 64; i++) CHECK(y[i] == 0.0f);
}

static void test_q4_round_trip(void) {
    enum { LEN = 32 * 64 };
    float x[LEN], y[LEN];
    uint8_t row[LEN / 32 * 18];
    fill_weights(x, LEN);
    gpt2__quantize_row(GPT2_DTYPE_Q4_0, x, LEN, row);
    gpt2__dequantize_row(GPT2_DTYPE_Q4_0, row, LEN, y);
    int bad = 0, bad_m = 0;
    for (int b = 0; b < LEN / 32; b++) {
        const float *xb = x + b * 32, *yb = y + b * 32;
        float d = f16(row + 2 * b), m = 0.0f;
        int im = 0;
        for (int i = 0; i < 32; i++)
            if (fabsf(xb[i]) > fabsf(m)) m = xb[i], im = i;
        /* d = m / -8: m is level -8 and decodes to -8 d, m rounded to
           the half grid of d */
        if (!(yb[im] == -8.0f * d)) bad_m++;
        if (!(fabsf(d - m / -8.0f) <= fabsf(m / 8.0f) / 1024)) bad_m++;
        for (int i = 0; i < 32; i++) {
            /* nearest level, except above 7.5 d (only -m's side), which
               clamps to level 7: within d there */
            float e = fabsf(yb[i] - xb[i]);
            float lim = xb[i] / d > 7.5f ? fabsf(d) : fabsf(d) / 2;
            if (!(e <= lim * (1 + 1e-6f))) bad++;
        }
    }
    CHECK(bad == 0);
    CHECK(bad_m == 0);
    /* exact: levels times a half-exact scale, the largest magnitude
       negative (d > 0) or positive (d < 0) */
    for (int sign = -1; sign <= 1; sign += 2) {
        float ex[64];
        for (int i = 0; i < 64; i++)
            ex[i] = (float)-sign * (float)(rnd_int(16) - 8) * 0.25f;
        ex[7] = (float)sign * 8 * 0.25f;
        ex[33] = (float)sign * 8 * 0.25f;
        for (int i = 0; i < 64; i++) /* -m would clamp: keep away */
            if (ex[i] == -ex[7]) ex[i] = 0.0f;
        gpt2__quantize_row(GPT2_DTYPE_Q4_0, ex, 64, row);
        gpt2__dequantize_row(GPT2_DTYPE_Q4_0, row, 64, y);
        CHECK(memcmp(ex, y, sizeof ex) == 0);
        CHECK(f16(row) == (float)-sign * 0.25f);
    }
    /* the block's largest value is exact whenever m / 8 is a half */
    float mx[32];
    for (int i = 0; i < 32; i++) mx[i] = rnd_sym() * 0.3f;
    mx[11] = -0.4375f;
    gpt2__quantize_row(GPT2_DTYPE_Q4_0, mx, 32, row);
    gpt2__dequantize_row(GPT2_DTYPE_Q4_0, row, 32, y);
    CHECK(y[11] == -0.4375f);
    /* all zero */
    float z[64] = {0};
    gpt2__quantize_row(GPT2_DTYPE_Q4_0, z, 64, row);
    gpt2__dequantize_row(GPT2_DTYPE_Q4_0, row, 64, y);
    CHECK(f16(row) == 0.0f && f16(row + 2) == 0.0f);
    for (int i = 0; i < 64; i++) CHECK(y[i] == 0.0f && !isnan(y[i]));
}

/* every variant's dequantize_row equals the spec decoding, bit for bit */
static void test_dequantize_variants(void) {
    enum { LEN = 32 * 40 };
    float x[LEN], y[LEN + 1], ref[LEN];
    static uint8_t row[LEN * 4 + 64];
    fill_weights(x, LEN);
    for (int t = 0; t < N_DTYPES; t++) {
        size_t lens[] = {LEN, 32, 64, 96};
        for (int li = 0; li < 4; li++) {
            size_t len = lens[li] - (is_quant(dtypes[t]) ? 0 : (size_t)li * 3);
            uint8_t *r = row + (is_quant(dtypes[t]) ? 1 : 4); /* unaligned */
            gpt2__quantize_row(dtypes[t], x, len, r);
            spec_decode(dtypes[t], r, len, ref);
            for (int v = 0; v < N_ISAS; v++) {
                if (!gpt2__wmat_force_isa(isas[v])) continue;
                memset(y, 0xff, sizeof y);
                gpt2__dequantize_row(dtypes[t], r, len, y);
                int bad = memcmp(y, ref, len * 4) != 0;
                bad |= y[len] == y[len]; /* nothing past len written (NaN) */
                if (bad) fprintf(stderr, "dequantize %s %s len %zu wrong\n",
                                 dtype_names[t], isas[v], len);
                CHECK(!bad);
            }
        }
    }
    gpt2__wmat_force_isa(NULL);
}

/* ----------------------------------------------------------- kernels */

/* A random K x N matrix stored as t in layout lay, at an address that is
   not 64-byte aligned; dense (K*N floats, [k][n]) gets its decoded
   values. */
typedef struct {
    gpt2__wmat w;
    uint8_t *mem;
    float *dense;
} test_mat;

static test_mat make_mat(gpt2_dtype t, gpt2__layout lay, int K, int N) {
    test_mat m = {{t, lay, K, N, NULL, 0}, NULL, NULL};
    int rows = lay == GPT2__BY_IN ? K : N, len = lay == GPT2__BY_IN ? N : K;
    size_t rb = gpt2__row_bytes(t, (size_t)len);
    size_t off = t == GPT2_DTYPE_F32 ? 4 : is_quant(t) ? 1 : 2;
    m.mem = malloc(rb * rows + off + 1);
    m.dense = malloc(sizeof(float) * ((size_t)K * N + 1));
    float *src = malloc(sizeof(float) * ((size_t)len + 1));
    float *dec = malloc(sizeof(float) * ((size_t)len + 1));
    uint8_t *data = m.mem + off;
    for (int r = 0; r < rows; r++) {
        fill_weights(src, (size_t)len);
        gpt2__quantize_row(t, src, (size_t)len, data + r * rb);
        spec_decode(t, data + r * rb, (size_t)len, dec);
        for (int i = 0; i < len; i++) {
            if (lay == GPT2__BY_IN) m.dense[(size_t)r * N + i] = dec[i];
            else m.dense[(size_t)i * N + r] = dec[i];
        }
    }
    free(src);
    free(dec);
    m.w.data = data;
    m.w.row_bytes = rb;
    return m;
}

static void free_mat(test_mat *m) {
    free(m->mem);
    free(m->dense);
}

/* y (N) = x @ dense in double; mag (N): sum |x w| per output (the scale
   of float rounding) */
static void ref_gemv(const test_mat *m, const float *x, const float *bias,
                     double *y, double *mag) {
    int K = m->w.K, N = m->w.N;
    for (int n = 0; n < N; n++) {
        double s = bias ? bias[n] : 0.0, a = bias ? fabs(bias[n]) : 0.0;
        for (int k = 0; k < K; k++) {
            double p = (double)x[k] * m->dense[(size_t)k * N + n];
            s += p;
            a += fabs(p);
        }
        y[n] = s;
        mag[n] = a;
    }
}

/* Decode's x for Q8_0/Q4_0 rows, as wmat.h specifies it (float32:
   d = max|x| / 127, q = x * (127 / max|x|) to nearest even; d NaN and q 0
   for a block holding an Inf or NaN; d and q 0 for a block whose max|x|
   is below 127/FLT_MAX, where 127/max|x| would overflow), written out
   here without SIMD */
static void ref_xquant(const float *x, int K, int8_t *q, float *d) {
    for (int b = 0; b < K / 32; b++) {
        float amax = 0.0f;
        int finite = 1;
        for (int i = 0; i < 32; i++) {
            float a = fabsf(x[32 * b + i]);
            if (!isfinite(a)) finite = 0;
            else if (a > amax) amax = a;
        }
        float inv = finite && amax >= 127.0f / FLT_MAX ? 127.0f / amax : 0.0f;
        d[b] = !finite ? NAN : inv > 0.0f ? amax / 127.0f : 0.0f;
        for (int i = 0; i < 32; i++) {
            float v = finite ? x[32 * b + i] * inv : 0.0f;
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            q[32 * b + i] = (int8_t)rintf(v);
        }
    }
}

/* x as decode's GEMV multiplies it by rows of format t: quantized (Q8_0,
   Q4_0) or as it is */
static void decode_x(gpt2_dtype t, const float *x, int K, float *out) {
    if (!is_quant(t)) {
        memcpy(out, x, sizeof(float) * K);
        return;
    }
    int8_t *q = malloc(K);
    float *d = malloc(sizeof(float) * (K / 32));
    ref_xquant(x, K, q, d);
    for (int k = 0; k < K; k++) out[k] = d[k / 32] * q[k];
    free(q), free(d);
}

/* |got - want| within tol of the magnitude; prints the first failure */
static int count_off(const float *got, const double *want, const double *mag,
                     int n0, int n1, double tol, const char *what) {
    int bad = 0;
    for (int n = n0; n < n1; n++) {
        double e = fabs(got[n] - want[n]);
        if (!(e <= tol * mag[n] + 1e-30)) {
            if (!bad)
                fprintf(stderr, "%s: y[%d] = %.9g, want %.9g (mag %.3g)\n", what,
                        n, got[n], want[n], mag[n]);
            bad++;
        }
    }
    return bad;
}

/* gemv_range of one matrix over [0, N) and random sub-ranges, in every
   variant: against the reference, against the portable kernel, and
   writing nothing outside the range. Returns the failures. */
static int check_gemv_range(gpt2_dtype t, gpt2__layout lay, int K, int N) {
    test_mat m = make_mat(t, lay, K, N);
    float *x = malloc(sizeof(float) * K);
    float *y = malloc(sizeof(float) * N), *yp = malloc(sizeof(float) * N);
    double *ref = malloc(sizeof(double) * N), *mag = malloc(sizeof(double) * N);
    for (int k = 0; k < K; k++) x[k] = rnd_sym();
    ref_gemv(&m, x, NULL, ref, mag);
    int bad = 0;
    for (int trial = 0; trial < 4; trial++) {
        int n0 = trial == 0 ? 0 : rnd_int(N + 1);
        int n1 = trial == 0 ? N : n0 + rnd_int(N - n0 + 1);
        gpt2__wmat_force_isa("portable");
        gpt2__wmat_gemv_range(&m.w, x, yp, n0, n1);
        for (int v = 0; v < N_ISAS; v++) {
            if (!gpt2__wmat_force_isa(isas[v])) continue;
            for (int n = 0; n < N; n++) y[n] = NAN;
            gpt2__wmat_gemv_range(&m.w, x, y, n0, n1);
            char what[96];
            snprintf(what, sizeof what, "gemv_range %s %s %s K %d N %d [%d,%d)",
                     dtype_names[t], lay ? "BY_OUT" : "BY_IN", isas[v], K, N, n0, n1);
            bad += count_off(y, ref, mag, n0, n1, 1e-5, what);
            /* the same as the portable kernel, to float rounding */
            for (int n = n0; n < n1; n++)
                bad += !(fabs(y[n] - yp[n]) <= 2e-5 * mag[n] + 1e-30);
            for (int n = 0; n < N; n++)
                if (n < n0 || n >= n1) bad += !isnan(y[n]);
        }
    }
    gpt2__wmat_force_isa(NULL);
    free(x), free(y), free(yp), free(ref), free(mag);
    free_mat(&m);
    return bad;
}

static void test_gemv_range(void) {
    const int Ns[] = {1, 15, 17, 33, 100, 257};
    const int Ks[] = {32, 64, 96, 800, 1, 7, 19};
    for (int t = 0; t < N_DTYPES; t++)
        for (int lay = 0; lay < 2; lay++) {
            if (lay == GPT2__BY_IN && is_quant(dtypes[t])) continue;
            int bad = 0;
            for (int ki = 0; ki < 7; ki++)
                for (int ni = 0; ni < 6; ni++)
                    if (!is_quant(dtypes[t]) || Ks[ki] % QK == 0)
                        bad += check_gemv_range(dtypes[t], (gpt2__layout)lay,
                                                Ks[ki], Ns[ni]);
            if (bad)
                fprintf(stderr, "gemv_range %s %s: %d failures\n", dtype_names[t],
                        lay ? "BY_OUT" : "BY_IN", bad);
            CHECK(bad == 0);
        }
}

/* Wide BY_IN rows (past one 2048-column tile) and long BY_OUT rows (many
   groups of scales), against the reference. */
static void test_gemv_large(void) {
    struct { int K, N; gpt2__layout lay; } shapes[] = {
        {9, 4200, GPT2__BY_IN}, {2048 + 64, 5, GPT2__BY_OUT}};
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < N_DTYPES; t++) {
            if (shapes[s].lay == GPT2__BY_IN && is_quant(dtypes[t])) continue;
            int K = shapes[s].K, N = shapes[s].N;
            test_mat m = make_mat(dtypes[t], shapes[s].lay, K, N);
            float *x = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * N);
            double *ref = malloc(sizeof(double) * N), *mag = malloc(sizeof(double) * N);
            for (int k = 0; k < K; k++) x[k] = rnd_sym();
            ref_gemv(&m, x, NULL, ref, mag);
            for (int v = 0; v < N_ISAS; v++) {
                if (!gpt2__wmat_force_isa(isas[v])) continue;
                gpt2__wmat_gemv_range(&m.w, x, y, 0, N);
                CHECK(count_off(y, ref, mag, 0, N, 1e-5, "gemv large") == 0);
            }
            free(x), free(y), free(ref), free(mag);
            free_mat(&m);
        }
    gpt2__wmat_force_isa(NULL);
}

/* Decode's quantized x: the same bits as ref_xquant in every variant,
   over random blocks, blocks of zeros, of ties (x * 127 / max|x| at
   k + 0.5), of huge and subnormal values, of values too small to scale
   beside zeros, and with an Inf or a NaN */
static void test_xquant(void) {
    enum { NB = 13, K = 32 * NB };
    float x[K];
    int8_t q[K], qr[K];
    float d[NB], dr[NB];
    for (int i = 0; i < K; i++) x[i] = rnd_sym() * 3.0f;
    for (int i = 0; i < 32; i++) x[32 + i] = 0.0f;
    for (int i = 0; i < 32; i++) x[64 + i] = i == 0 ? 127.0f : (float)(i % 16) - 7.5f;
    for (int i = 0; i < 32; i++) x[96 + i] = rnd_sym() * 1e37f;
    for (int i = 0; i < 32; i++) x[128 + i] = rnd_sym() * 1e-40f;
    x[160 + 5] = INFINITY;
    x[192 + 31] = -INFINITY;
    x[224 + 0] = NAN;
    x[256 + 3] = -0.0f;
    for (int i = 0; i < 32; i++) x[384 + i] = i == 0 ? 1e-37f : i == 1 ? -3e-38f : 0.0f;
    ref_xquant(x, K, qr, dr);
    CHECK(dr[12] == 0.0f && qr[384] == 0 && qr[385] == 0 && qr[386] == 0);
    CHECK(dr[1] == 0.0f && isnan(dr[5]) && isnan(dr[6]) && isnan(dr[7]));
    CHECK(qr[64 + 1] == -6 && qr[64 + 2] == -6 && qr[64 + 3] == -4); /* to even */
    for (int v = 0; v < N_ISAS; v++) {
        if (!gpt2__wmat_force_isa(isas[v])) continue;
        memset(q, 99, sizeof q);
        gpt2__wmat_quantize_x(x, K, q, d);
        int bad = memcmp(q, qr, sizeof q) != 0;
        for (int b = 0; b < NB; b++)
            bad += !(d[b] == dr[b] || (isnan(d[b]) && isnan(dr[b])));
        if (bad) fprintf(stderr, "quantize_x %s: differs from the reference\n", isas[v]);
        CHECK(bad == 0);
    }
    gpt2__wmat_force_isa(NULL);
}

/* Decode's BY_IN GEMV (rows by halves) gives the same bits with 1 to 4
   threads, in every variant; and a matrix wider than the halves' limit
   (split by outputs instead) is right too. */
static void test_gemv_threads(void) {
    struct { int K, N; } shapes[] = {{300, 1000}, {24, 8200}};
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < N_DTYPES; t++) {
            if (is_quant(dtypes[t])) continue;
            int K = shapes[s].K, N = shapes[s].N;
            test_mat m = make_mat(dtypes[t], GPT2__BY_IN, K, N);
            float *x = malloc(sizeof(float) * K), *bias = malloc(sizeof(float) * N);
            float *y1 = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
            double *ref = malloc(sizeof(double) * N), *mag = malloc(sizeof(double) * N);
            for (int k = 0; k < K; k++) x[k] = rnd_sym();
            for (int n = 0; n < N; n++) bias[n] = rnd_sym();
            ref_gemv(&m, x, bias, ref, mag);
            for (int v = 0; v < N_ISAS; v++) {
                if (!gpt2__wmat_force_isa(isas[v])) continue;
                gpt2_set_threads(1);
                gpt2__wmat_gemv(&m.w, x, bias, y1);
                CHECK(count_off(y1, ref, mag, 0, N, 1e-5, "gemv BY_IN 1 thread") == 0);
                for (int th = 2; th <= 4; th++) {
                    gpt2_set_threads(th);
                    gpt2__wmat_gemv(&m.w, x, bias, y);
                    int differ = memcmp(y, y1, sizeof(float) * N) != 0;
                    if (differ)
                        fprintf(stderr, "gemv BY_IN %s %s K %d N %d: %d threads differ from 1\n",
                                dtype_names[t], isas[v], K, N, th);
                    CHECK(!differ);
                }
            }
            free(x), free(bias), free(y1), free(y), free(ref), free(mag);
            free_mat(&m);
        }
    gpt2__wmat_force_isa(NULL);
    gpt2_set_threads(2);
}

/* gemv (threaded, with bias, and without) and matmul for several M of
   one matrix, in every variant, against the reference. Returns the
   failures. */
static int check_gemv_matmul(gpt2_dtype t, gpt2__layout lay, int K, int N) {
    const int Ms[] = {1, 2, 7, 64}, Mmax = 64;
    test_mat m = make_mat(t, lay, K, N);
    float *inp = malloc(sizeof(float) * Mmax * K);
    float *out = malloc(sizeof(float) * Mmax * N);
    float *bias = malloc(sizeof(float) * N);
    double *ref = malloc(sizeof(double) * Mmax * N);
    double *mag = malloc(sizeof(double) * Mmax * N);
    for (int i = 0; i < Mmax * K; i++) inp[i] = rnd_sym();
    for (int n = 0; n < N; n++) bias[n] = rnd_sym();
    for (int r = 0; r < Mmax; r++)
        ref_gemv(&m, inp + (size_t)r * K, bias, ref + (size_t)r * N,
                 mag + (size_t)r * N);
    /* one row (decode: gemv, and matmul of M = 1) quantizes x for Q8_0
       and Q4_0 rows */
    float *x1 = malloc(sizeof(float) * K);
    double *ref1 = malloc(sizeof(double) * N), *mag1 = malloc(sizeof(double) * N);
    decode_x(t, inp, K, x1);
    ref_gemv(&m, x1, bias, ref1, mag1);
    int bad = 0;
    for (int v = 0; v < N_ISAS; v++) {
        if (!gpt2__wmat_force_isa(isas[v])) continue;
        char what[96];
        snprintf(what, sizeof what, "gemv %s %s %s K %d N %d", dtype_names[t],
                 lay ? "BY_OUT" : "BY_IN", isas[v], K, N);
        gpt2__wmat_gemv(&m.w, inp, bias, out);
        bad += count_off(out, ref1, mag1, 0, N, 1e-5, what);
        gpt2__wmat_gemv(&m.w, inp, NULL, out);
        for (int n = 0; n < N; n++) out[n] += bias[n];
        bad += count_off(out, ref1, mag1, 0, N, 1e-5, what);
        for (int mi = 0; mi < 4; mi++) {
            snprintf(what, sizeof what, "matmul %s %s %s K %d N %d M %d",
                     dtype_names[t], lay ? "BY_OUT" : "BY_IN", isas[v], K, N, Ms[mi]);
            gpt2__wmat_matmul(out, inp, &m.w, bias, Ms[mi]);
            bad += Ms[mi] == 1 ? count_off(out, ref1, mag1, 0, N, 2e-5, what)
                               : count_off(out, ref, mag, 0, Ms[mi] * N, 2e-5, what);
        }
    }
    gpt2__wmat_force_isa(NULL);
    free(x1), free(ref1), free(mag1);
    free(inp), free(out), free(bias), free(ref), free(mag);
    free_mat(&m);
    return bad;
}

/* The shapes: small (one thread whatever the team) and large, with 1, 2
   or 3 threads: uneven splits, several matmul panels per thread. */
static void test_gemv_matmul(void) {
    struct { int K, N, threads; } shapes[] = {
        {96, 257, 2}, {800, 700, 2}, {64, 2100, 3}, {256, 300, 1}, {4128, 40, 2}};
    for (int s = 0; s < 5; s++) {
        gpt2_set_threads(shapes[s].threads);
        for (int t = 0; t < N_DTYPES; t++)
            for (int lay = 0; lay < 2; lay++)
                if (lay == GPT2__BY_OUT || !is_quant(dtypes[t]))
                    CHECK(check_gemv_matmul(dtypes[t], (gpt2__layout)lay,
                                            shapes[s].K, shapes[s].N) == 0);
    }
    gpt2_set_threads(2);
}

/* --------------------------------------------------------- transpose */

/* The 16 x 16 transpose of prefill's conversion, in every variant, with
   strides wider than the block: exact, and nothing outside it written */
static void test_transpose16(void) {
    enum { LDS = 21, LDD = 19 };
    float src[16 * LDS], dst[16 * LDD];
    for (int i = 0; i < 16 * LDS; i++) src[i] = (float)i;
    for (int v = 0; v < N_ISAS; v++) {
        if (!gpt2__wmat_force_isa(isas[v])) continue;
        for (int i = 0; i < 16 * LDD; i++) dst[i] = -1.0f;
        gpt2__wmat_transpose16(src, LDS, dst, LDD);
        int bad = 0;
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < LDD; j++)
                bad += dst[i * LDD + j] != (j < 16 ? src[j * LDS + i] : -1.0f);
        if (bad) fprintf(stderr, "transpose16 %s: %d wrong\n", isas[v], bad);
        CHECK(bad == 0);
    }
    gpt2__wmat_force_isa(NULL);
}

/* --------------------------------------------------------- dispatch */

static void test_dispatch(void) {
    const char *auto_isa = gpt2__wmat_isa();
    CHECK(strcmp(auto_isa, "avx512bf16") == 0 || strcmp(auto_isa, "avx512") == 0 ||
          strcmp(auto_isa, "avx2") == 0 || strcmp(auto_isa, "portable") == 0);
    CHECK(!gpt2__wmat_force_isa("sse9"));
    CHECK(strcmp(gpt2__wmat_isa(), auto_isa) == 0);
    CHECK(gpt2__wmat_force_isa("portable"));
    CHECK(strcmp(gpt2__wmat_isa(), "portable") == 0);
    CHECK(gpt2__wmat_force_isa(NULL));
    CHECK(strcmp(gpt2__wmat_isa(), auto_isa) == 0);
    printf("wmat kernels: %s (variants tested:", auto_isa);
    for (int v = 0; v < N_ISAS; v++)
        if (gpt2__wmat_force_isa(isas[v])) printf(" %s", isas[v]);
    printf(")\n");
    gpt2__wmat_force_isa(NULL);
}

int main(void) {
    gpt2_set_threads(2);
    test_dispatch();
    test_transpose16();
    test_gemv_threads();
    test_xquant();
    test_sizes();
    test_16bit_decode();
    test_16bit_encode();
    test_q_layout();
    test_q8_round_trip();
    test_q4_round_trip();
    test_dequantize_variants();
    test_gemv_range();
    test_gemv_large();
    test_gemv_matmul();
    return CHECK_DONE();
}
