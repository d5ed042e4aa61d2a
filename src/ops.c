/* ops.c: the transformer's kernels (see ops.h for shapes and the PyTorch
   operation each one matches). Plain C that compilers vectorise; the
   batched matmuls go to oneDNN's sgemm when built with it. Hot loops are
   compiled for several ISAs and picked at run time (target_clones), so one
   binary runs on any x86-64 and uses AVX-512 where present. */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <string.h>

#include "gemm.h"
#include "internal.h"
#include "pool.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* Work (multiply-adds or elements) below which a kernel stays on one
   thread: waking the team costs more than it saves, and with another
   process on the cores a spinning team can cost far more. */
#define PARALLEL_MIN ((size_t)1 << 16)

/* ------------------------------------------------------- exp and softmax */

/* e^x for x <= 0 within 2 ulp: x = n ln2 + r, e^r by Cephes' degree-6
   polynomial, 2^n by building the exponent bits. Plain arithmetic, so
   the loops that call it vectorise (libm's expf does not). */
static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x; /* e^-87 ~ 1.6e-38: still a normal float */
    /* round to nearest by the 1.5 * 2^23 trick (a call to roundf would
       stop vectorisation) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { uint32_t u; float f; } two_n = {(uint32_t)((int32_t)n + 127) << 23};
    return p * two_n.f;
}

/* max of a row */
GPT2_CLONES
static float row_max(const float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* sum of e^(x - m) over a row: floats in blocks of 256, blocks in double */
GPT2_CLONES
static double row_sum_exp(const float *x, int n, float m) {
    double total = 0.0;
    for (int b = 0; b < n; b += 256) {
        int e = b + 256 < n ? b + 256 : n;
        float s = 0.0f;
        for (int i = b; i < e; i++) s += exp_nonpos(x[i] - m);
        total += s;
    }
    return total;
}

/* ------------------------------------------------------------- encoder */

void encoder_forward(float *out, const int *tokens, const float *wte,
                     const float *wpe, int B, int T, int C, int pos0) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *we = wte + (size_t)tokens[b * T + t] * C;
            const float *pe = wpe + (size_t)(pos0 + t) * C;
            for (int i = 0; i < C; i++) o[i] = we[i] + pe[i];
        }
    }
}

/* ----------------------------------------------------------- layernorm */

GPT2_CLONES
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C,
                       float eps) {
#pragma omp parallel for if ((size_t)N * C >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        /* two passes in float, as PyTorch's CPU kernel: mean, then the
           variance around it (numerically safer than E[x^2] - m^2) */
        float m = 0.0f;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = x[i] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * s * w[i] + b[i];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = s;
    }
}

/* -------------------------------------------------------------- matmul */

void matmul_forward_naive(float *out, const float *inp, const float *w,
                          const float *bias, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < C; i++)
                acc += (double)inp[(size_t)n * C + i] * w[(size_t)i * OC + o];
            out[(size_t)n * OC + o] = (float)acc;
        }
    }
}

/* y[o0..o1) = x @ w[:, o0..o1) for one row: the decode-time GEMV. Each
   thread owns a slice of the output columns, keeps it in L1, and streams
   its part of every weight row; four rows per pass halve the traffic to
   y. Runs at the speed of reading the weights once. */
GPT2_CLONES
static void gemv_cols(float *y, const float *x, const float *w, int C, int OC,
                      int o0, int o1) {
    int n = o1 - o0;
    float *yo = y + o0;
    for (int j = 0; j < n; j++) yo[j] = 0.0f;
    int i = 0;
    for (; i + 4 <= C; i += 4) {
        const float *w0 = w + (size_t)i * OC + o0;
        const float *w1 = w0 + OC, *w2 = w1 + OC, *w3 = w2 + OC;
        float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        for (int j = 0; j < n; j++)
            yo[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
    }
    for (; i < C; i++) {
        const float *w0 = w + (size_t)i * OC + o0;
        float x0 = x[i];
        for (int j = 0; j < n; j++) yo[j] += x0 * w0[j];
    }
}

static void gemv(float *y, const float *x, const float *w, const float *bias,
                 int C, int OC) {
    /* column slices of 64 floats (a cache line multiple), spread over
       threads; static schedule so each thread streams contiguous slices */
    int nblk = (OC + 63) / 64;
#pragma omp parallel if ((size_t)C * OC >= PARALLEL_MIN)
    {
#ifdef _OPENMP
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
#else
        int nt = 1, id = 0;
#endif
        int b0 = (int)((long)nblk * id / nt), b1 = (int)((long)nblk * (id + 1) / nt);
        int o0 = b0 * 64, o1 = b1 * 64 < OC ? b1 * 64 : OC;
        if (o0 < o1) gemv_cols(y, x, w, C, OC, o0, o1);
    }
    if (bias)
        for (int o = 0; o < OC; o++) y[o] += bias[o];
}

static _Thread_local bool use_bf16;

void matmul_set_bf16(bool bf16) { use_bf16 = bf16; }
bool matmul_bf16(void) { return use_bf16; }

static gpt2__gemm_prec prec(void) {
    return use_bf16 ? GPT2__PREC_BF16 : GPT2__PREC_F32;
}

/* The trainer's bf16 copy of its parameters (matmul_set_bf16_weights),
   per thread like use_bf16 */
static _Thread_local struct {
    const float *base;
    size_t n;
    const uint16_t *bf16;
} shadow;

void matmul_set_bf16_weights(const float *base, size_t n, const uint16_t *bf16) {
    shadow.base = base;
    shadow.n = base ? n : 0;
    shadow.bf16 = bf16;
}

/* The weight w (count values) as a matmul input: its bf16 copy when there
   is one and the matmuls are bf16, else w itself */
typedef struct {
    const void *p;
    gpt2__gemm_in t;
} weight_in;

static weight_in weight_of(const float *w, size_t count) {
    weight_in r = {w, GPT2__GEMM_IN_F32};
    if (use_bf16 && shadow.base && w >= shadow.base &&
        (size_t)(w - shadow.base) + count <= shadow.n) {
        r.p = shadow.bf16 + (w - shadow.base);
        r.t = GPT2__GEMM_IN_BF16;
    }
    return r;
}

void matmul_forward(float *out, const float *inp, const float *w,
                    const float *bias, int N, int C, int OC) {
    if (N == 1 && !use_bf16) {
        gemv(out, inp, w, bias, C, OC);
        return;
    }
    weight_in W = weight_of(w, (size_t)C * OC);
    gpt2__gemm_ex('N', 'N', N, OC, C, 1.0f, inp, GPT2__GEMM_IN_F32, C, W.p, W.t, OC,
                  0.0f, out, OC, prec());
    if (bias) {
#pragma omp parallel for if ((size_t)N * OC >= PARALLEL_MIN)
        for (int n = 0; n < N; n++) {
            float *o = out + (size_t)n * OC;
            for (int j = 0; j < OC; j++) o[j] += bias[j];
        }
    }
}

/* -------------------------------------------------------------- LM head */

void lmhead_forward_naive(float *logits, const float *inp, const float *wte,
                          int N, int C, int V) {
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            double acc = 0.0;
            for (int i = 0; i < C; i++)
                acc += (double)inp[(size_t)n * C + i] * wte[(size_t)v * C + i];
            logits[(size_t)n * V + v] = (float)acc;
        }
}

GPT2_CLONES
static float dot(const float *a, const float *b, int n) {
    /* four partial sums break the add dependency chain */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void lmhead_forward(float *logits, const float *inp, const float *wte, int N,
                    int C, int V) {
    if (N > 1 || use_bf16) {
        weight_in W = weight_of(wte, (size_t)V * C);
        gpt2__gemm_ex('N', 'T', N, V, C, 1.0f, inp, GPT2__GEMM_IN_F32, C, W.p, W.t, C,
                      0.0f, logits, V, prec());
        return;
    }
    /* one row per vocabulary entry: wte streams once, contiguously */
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *l = logits + (size_t)n * V;
#pragma omp parallel for schedule(static) if ((size_t)V * C >= PARALLEL_MIN)
        for (int v = 0; v < V; v++) l[v] = dot(x, wte + (size_t)v * C, C);
    }
}

/* ------------------------------------------------------------- dropout */

/* p as a threshold on 32 random bits: an entry is dropped when its hash
   falls below it. 0 drops nothing. */
static uint32_t drop_threshold(float p) {
    if (!(p > 0.0f)) return 0;
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}

/* 1 or 0: the mask entry i of the stream seed (splitmix64's finaliser) */
static inline float drop_mask(uint64_t seed, uint64_t i, uint32_t thresh) {
    if (thresh == 0) return 1.0f;
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (uint32_t)(z >> 32) < thresh ? 0.0f : 1.0f;
}

void dropout_forward(float *out, const float *inp, size_t N, float p,
                     uint64_t seed) {
    uint32_t thresh = drop_threshold(p);
    float scale = thresh ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for if (N > 65536)
    for (size_t i = 0; i < N; i++) out[i] = inp[i] * drop_mask(seed, i, thresh) * scale;
}

void dropout_backward(float *d, size_t N, float p, uint64_t seed) {
    dropout_forward(d, d, N, p, seed); /* the same mask and scale */
}

/* ----------------------------------------------------------- attention */

/* One query row against keys 0..nk-1 of one head, storing the weights. */
static void attend_stored(float *out, float *att, const float *q,
                          const float *k, const float *v, int nk, int Tk,
                          int HS, size_t kv_stride, float scale) {
    float maxv = -INFINITY;
    for (int s = 0; s < nk; s++) {
        float d = dot(q, k + s * kv_stride, HS) * scale;
        att[s] = d;
        if (d > maxv) maxv = d;
    }
    float sum = 0.0f;
    for (int s = 0; s < nk; s++) {
        att[s] = exp_nonpos(att[s] - maxv);
        sum += att[s];
    }
    float inv = 1.0f / sum;
    for (int s = 0; s < nk; s++) att[s] *= inv;
    for (int s = nk; s < Tk; s++) att[s] = 0.0f; /* the masked future */
    for (int i = 0; i < HS; i++) out[i] = 0.0f;
    for (int s = 0; s < nk; s++) {
        const float *vs = v + s * kv_stride;
        float a = att[s];
        for (int i = 0; i < HS; i++) out[i] += a * vs[i];
    }
}

/* The same without storing: an online softmax rescales the running sum
   whenever a larger score appears, so one pass over K and V suffices. */
GPT2_CLONES
static void attend_online(float *out, const float *q, const float *k,
                          const float *v, int nk, int HS, size_t kv_stride,
                          float scale) {
    float maxv = -INFINITY, sum = 0.0f;
    for (int i = 0; i < HS; i++) out[i] = 0.0f;
    for (int s = 0; s < nk; s++) {
        float d = dot(q, k + s * kv_stride, HS) * scale;
        const float *vs = v + s * kv_stride;
        if (d > maxv) {
            float c = exp_nonpos(maxv - d); /* ~0 on the first key */
            sum *= c;
            for (int i = 0; i < HS; i++) out[i] *= c;
            maxv = d;
        }
        float e = exp_nonpos(d - maxv);
        sum += e;
        for (int i = 0; i < HS; i++) out[i] += e * vs[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < HS; i++) out[i] *= inv;
}

/* ------------------------------------------- attention over a KV cache

   Inference reads K and V once per query row and head in two passes: the
   scores of every key (a dot product each), then the softmax and the
   weighted sum of the values. Decode at a long context spends its
   attention time here. */

/* scores[s] = scale * q . k_s for s < nk (keys kv_stride floats apart). */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f")))
static void key_scores_avx512(float *scores, const float *q, const float *k,
                              int nk, int HS, size_t kv_stride, float scale) {
    /* HS % 16 == 0 (the caller checks): whole vectors, four keys at a time
       sharing the loads of q */
    int s = 0;
    for (; s + 4 <= nk; s += 4) {
        const float *k0 = k + s * kv_stride, *k1 = k0 + kv_stride,
                    *k2 = k1 + kv_stride, *k3 = k2 + kv_stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < HS; i += 16) {
            __m512 qi = _mm512_loadu_ps(q + i);
            a0 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(k0 + i), a0);
            a1 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(k1 + i), a1);
            a2 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(k2 + i), a2);
            a3 = _mm512_fmadd_ps(qi, _mm512_loadu_ps(k3 + i), a3);
        }
        scores[s] = scale * _mm512_reduce_add_ps(a0);
        scores[s + 1] = scale * _mm512_reduce_add_ps(a1);
        scores[s + 2] = scale * _mm512_reduce_add_ps(a2);
        scores[s + 3] = scale * _mm512_reduce_add_ps(a3);
    }
    for (; s < nk; s++) {
        const float *ks = k + s * kv_stride;
        __m512 a = _mm512_setzero_ps();
        for (int i = 0; i < HS; i += 16)
            a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(ks + i), a);
        scores[s] = scale * _mm512_reduce_add_ps(a);
    }
}
#endif

static void key_scores_portable(float *scores, const float *q, const float *k,
                                int nk, int HS, size_t kv_stride, float scale) {
    for (int s = 0; s < nk; s++) scores[s] = scale * dot(q, k + s * kv_stride, HS);
}

static int have_avx512(void);

static void key_scores(float *scores, const float *q, const float *k, int nk,
                       int HS, size_t kv_stride, float scale) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx512() && HS % 16 == 0) {
        key_scores_avx512(scores, q, k, nk, HS, kv_stride, scale);
        return;
    }
#endif
    key_scores_portable(scores, q, k, nk, HS, kv_stride, scale);
}

/* p[0..n) = e^(p - max), returns their sum */
GPT2_CLONES
static float exp_shifted(float *p, int n, float m) {
    float sum = 0.0f;
    for (int s = 0; s < n; s++) {
        p[s] = exp_nonpos(p[s] - m);
        sum += p[s];
    }
    return sum;
}

/* out (HS) = sum_s p[s] v_s * inv */
#if defined(__x86_64__) && defined(__GNUC__)
/* HS % 16 == 0: the output stays in registers, 64 columns at a time */
__attribute__((target("avx512f")))
static void weighted_values_avx512(float *out, const float *p, const float *v,
                                   int nk, int HS, size_t kv_stride, float inv) {
    int c = 0;
    for (; c + 64 <= HS; c += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *vs = v + c;
        for (int s = 0; s < nk; s++, vs += kv_stride) {
            __m512 w = _mm512_set1_ps(p[s]);
            a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs), a0);
            a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs + 16), a1);
            a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs + 32), a2);
            a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs + 48), a3);
        }
        __m512 sc = _mm512_set1_ps(inv);
        _mm512_storeu_ps(out + c, _mm512_mul_ps(a0, sc));
        _mm512_storeu_ps(out + c + 16, _mm512_mul_ps(a1, sc));
        _mm512_storeu_ps(out + c + 32, _mm512_mul_ps(a2, sc));
        _mm512_storeu_ps(out + c + 48, _mm512_mul_ps(a3, sc));
    }
    for (; c < HS; c += 16) {
        __m512 a = _mm512_setzero_ps();
        const float *vs = v + c;
        for (int s = 0; s < nk; s++, vs += kv_stride)
            a = _mm512_fmadd_ps(_mm512_set1_ps(p[s]), _mm512_loadu_ps(vs), a);
        _mm512_storeu_ps(out + c, _mm512_mul_ps(a, _mm512_set1_ps(inv)));
    }
}
#endif

GPT2_CLONES
static void weighted_values_portable(float *out, const float *p, const float *v,
                                     int nk, int HS, size_t kv_stride, float inv) {
    for (int i = 0; i < HS; i++) out[i] = 0.0f;
    for (int s = 0; s < nk; s++) {
        const float *vs = v + s * kv_stride;
        float a = p[s] * inv;
        for (int i = 0; i < HS; i++) out[i] += a * vs[i];
    }
}

static int have_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
    static int avx512 = -1;
    if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f");
    return avx512;
#else
    return 0;
#endif
}

static void weighted_values(float *out, const float *p, const float *v, int nk,
                            int HS, size_t kv_stride, float inv) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx512() && HS % 16 == 0) {
        weighted_values_avx512(out, p, v, nk, HS, kv_stride, inv);
        return;
    }
#endif
    weighted_values_portable(out, p, v, nk, HS, kv_stride, inv);
}

/* One query row and head over keys 0..nk-1; p: nk floats of scratch. */
static void attend_row(float *out, const float *q, const float *k,
                       const float *v, int nk, int HS, size_t kv_stride,
                       float scale, float *p) {
    key_scores(p, q, k, nk, HS, kv_stride, scale);
    float m = row_max(p, nk);
    float sum = exp_shifted(p, nk, m);
    weighted_values(out, p, v, nk, HS, kv_stride, 1.0f / sum);
}

/* Attention's arguments, for the chunks of the inference path. */
typedef struct {
    float *out;
    const float *q, *k, *v;
    int T, Tk, C, NH, rows; /* rows = B * T * NH (query, head) pairs */
    size_t q_stride, q_bstride, kv_stride, kv_bstride;
} attention_job;

/* Rows [i*rows/n, (i+1)*rows/n) of the (b, t, h) pairs, online softmax. */
static void attention_chunk(void *ctx, int i, int n) {
    const attention_job *j = ctx;
    int HS = j->C / j->NH, past = j->Tk - j->T;
    float scale = 1.0f / sqrtf((float)HS);
    int r0 = (int)((long long)j->rows * i / n), r1 = (int)((long long)j->rows * (i + 1) / n);
    /* the scores of one row: on the stack when short, else one block */
    float stack[2048], *p = j->Tk <= 2048 ? stack : malloc(sizeof(float) * (size_t)j->Tk);
    for (int r = r0; r < r1; r++) {
        int h = r % j->NH, t = (r / j->NH) % j->T, b = r / (j->NH * j->T);
        const float *qh = j->q + b * j->q_bstride + t * j->q_stride + h * HS;
        const float *kh = j->k + b * j->kv_bstride + h * HS;
        const float *vh = j->v + b * j->kv_bstride + h * HS;
        float *oh = j->out + ((size_t)b * j->T + t) * j->C + h * HS;
        if (p)
            attend_row(oh, qh, kh, vh, past + t + 1, HS, j->kv_stride, scale, p);
        else /* no memory for the scores: one pass, online softmax */
            attend_online(oh, qh, kh, vh, past + t + 1, HS, j->kv_stride, scale);
    }
    if (p != stack) free(p);
}

/* Softmax of row t of the scores S (T, Tk) over its first nk = past+t+1
   keys (the causal mask), zero after them. */
static void masked_softmax_rows(float *S, int T, int Tk, int past) {
#pragma omp parallel for if ((size_t)T * Tk >= PARALLEL_MIN)
    for (int t = 0; t < T; t++) {
        float *r = S + (size_t)t * Tk;
        int nk = past + t + 1;
        float m = row_max(r, nk);
        float inv = 1.0f / exp_shifted(r, nk, m);
        for (int s = 0; s < nk; s++) r[s] *= inv;
        for (int s = nk; s < Tk; s++) r[s] = 0.0f;
    }
}

/* Query rows per block of training's attention_head_by_gemm: a block's
   products stop at the key of its last row, so of the causal triangle's
   masked corner only the blocks' diagonal parts are computed (T = 256:
   75% of the full products). Prefill takes its chunk in one block: the
   blocks' products, each of another shape, made oneDNN's packing buffers
   fragment glibc's heap (12 MiB more peak memory for a 1,000-token
   prompt) for 2.5% of the prefill's time. */
#define ATT_ROW_BLOCK 128

/* One sequence and head as two matrix products per block of query rows
   [t0, t1) (blocks of `block` rows): S (rows, nk; rows Tk apart) =
   softmax(mask(scale Q K^T)) over the nk keys up to row t1 - 1's
   position, the rest of each row zeroed, then out_h (rows C apart) = S V.
   With stored, S is the head's whole (T, Tk) weights, kept (training);
   else it is scratch of `block` rows of Tk, reused by every block. */
static void attention_head_by_gemm(float *out_h, float *S, bool stored, int block,
                                   const float *qh, const float *kh,
                                   const float *vh, int T, int Tk, int HS, int C,
                                   size_t q_stride, size_t kv_stride) {
    float scale = 1.0f / sqrtf((float)HS);
    int past = Tk - T;
    for (int t0 = 0; t0 < T; t0 += block) {
        int rows = T - t0 < block ? T - t0 : block;
        int nk = past + t0 + rows;
        float *Sb = stored ? S + (size_t)t0 * Tk : S;
        /* attention's products are small and many: float32 even in mixed
           precision (a bf16 product this size costs more to set up than
           it saves) */
        gpt2__gemm('N', 'T', rows, nk, HS, scale, qh + (size_t)t0 * q_stride,
                   (int)q_stride, kh, (int)kv_stride, 0.0f, Sb, Tk, GPT2__PREC_F32);
        masked_softmax_rows(Sb, rows, Tk, past + t0);
        gpt2__gemm('N', 'N', rows, HS, nk, 1.0f, Sb, Tk, vh, (int)kv_stride, 0.0f,
                   out_h + (size_t)t0 * C, C, GPT2__PREC_F32);
    }
}

/* Many query rows at once, by sequence and head: the scores are matrix
   products, Q K^T, and the output others, P V. The (b, h) pairs run in
   parallel, each on one thread (the GEMM library runs single-threaded
   inside the team): one fork and join per layer instead of three per
   head, and products that size run well on one core.
   - att NULL (prefill): each thread's scores in scratch, the chunk in one
     block of rows; false when the scratch cannot be had (then the row
     path runs).
   - att (training's forward, past = 0): the weights straight into att
     (B, NH, T, Tk), kept for the backward, by blocks of ATT_ROW_BLOCK
     rows. */
static bool attention_by_gemm(float *out, float *att, const float *q,
                              const float *k, const float *v, int B, int T,
                              int Tk, int C, int NH, size_t q_stride,
                              size_t q_bstride, size_t kv_stride,
                              size_t kv_bstride) {
    int HS = C / NH;
#ifdef _OPENMP
    int nt = omp_get_max_threads();
#else
    int nt = 1;
#endif
    if (nt > B * NH) nt = B * NH;
    size_t per = (size_t)T * Tk;
    float *S = att ? NULL : malloc(sizeof(float) * per * (size_t)nt);
    if (!att && !S) return false;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nt)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
#ifdef _OPENMP
            int tid = omp_get_thread_num();
#else
            int tid = 0;
#endif
            float *Sh = att ? att + ((size_t)b * NH + h) * per : S + per * (size_t)tid;
            attention_head_by_gemm(out + (size_t)b * T * C + h * HS, Sh, att != NULL,
                                   att ? ATT_ROW_BLOCK : T, q + b * q_bstride + h * HS,
                                   k + b * kv_bstride + h * HS,
                                   v + b * kv_bstride + h * HS, T, Tk, HS, C,
                                   q_stride, kv_stride);
        }
    free(S);
    return true;
}

/* Rows per sequence from which attention goes by GEMM. */
#define ATTENTION_GEMM_ROWS 16

void attention_forward(float *out, float *att, const float *q,
                       const float *k, const float *v, int B, int T, int Tk,
                       int C, int NH, size_t q_stride, size_t q_bstride,
                       size_t kv_stride, size_t kv_bstride) {
    int HS = C / NH;
    int past = Tk - T;
    float scale = 1.0f / sqrtf((float)HS);
    size_t work = (size_t)B * T * NH * Tk * HS;
    if (!att && T >= ATTENTION_GEMM_ROWS &&
        attention_by_gemm(out, NULL, q, k, v, B, T, Tk, C, NH, q_stride, q_bstride,
                          kv_stride, kv_bstride))
        return;
    if (!att) {
        /* decode: on the decode pool (pool.h), so a decode step's pieces
           share one set of threads */
        attention_job j = {out, q, k, v, T, Tk, C, NH, B * T * NH,
                           q_stride, q_bstride, kv_stride, kv_bstride};
        int chunks = work >= PARALLEL_MIN ? 4 * gpt2__pool_threads() : 1;
        if (chunks > j.rows) chunks = j.rows;
        gpt2__pool_run(attention_chunk, &j, chunks);
        return;
    }
    if (past == 0 && T >= ATTENTION_GEMM_ROWS) {
        attention_by_gemm(out, att, q, k, v, B, T, Tk, C, NH, q_stride, q_bstride,
                          kv_stride, kv_bstride);
        return;
    }
#pragma omp parallel for collapse(3) schedule(dynamic, 4) if (work >= PARALLEL_MIN)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                const float *qh = q + b * q_bstride + t * q_stride + h * HS;
                const float *kh = k + b * kv_bstride + h * HS;
                const float *vh = v + b * kv_bstride + h * HS;
                float *oh = out + ((size_t)b * T + t) * C + h * HS;
                int nk = past + t + 1; /* keys at or before this position */
                attend_stored(oh, att + (((size_t)b * NH + h) * T + t) * Tk,
                              qh, kh, vh, nk, Tk, HS, kv_stride, scale);
            }
}

/* ---------------------------------------------------- gelu, residual, loss */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

/* tanh(u) = sign(u) (1 - e^-2|u|) / (1 + e^-2|u|), with the vectorising
   exp; within 1e-7 of tanhf */
static inline float fast_tanh(float u) {
    float a = u < 0 ? -u : u;
    float t = exp_nonpos(-2.0f * a);
    float r = (1.0f - t) / (1.0f + t);
    return u < 0 ? -r : r;
}

GPT2_CLONES
void gelu_forward(float *out, const float *inp, size_t N) {
#pragma omp parallel for if (N > 65536)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        out[i] = 0.5f * x * (1.0f + fast_tanh(GELU_SCALE * (x + cube)));
    }
}

GPT2_CLONES
void residual_forward(float *out, const float *a, const float *b, size_t N) {
    for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void log_softmax(float *out, const float *x, int V) {
    float maxv = row_max(x, V);
    float lse = maxv + (float)log(row_sum_exp(x, V, maxv));
    for (int i = 0; i < V; i++) out[i] = x[i] - lse;
}

void crossentropy_forward(float *losses, const float *logits,
                          const int *targets, int N, int V) {
#pragma omp parallel for if ((size_t)N * V >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            losses[n] = 0.0f;
            continue;
        }
        const float *x = logits + (size_t)n * V;
        float maxv = row_max(x, V);
        losses[n] = (float)(maxv + log(row_sum_exp(x, V, maxv)) - x[targets[n]]);
    }
}

void attention_dropout_forward(float *out, const float *att,
                               const float *qkv, int B, int T, int C, int NH,
                               float p, uint64_t seed) {
    int HS = C / NH;
    size_t C3 = 3 * (size_t)C;
    uint32_t thresh = drop_threshold(p);
    float scale = thresh ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                size_t row = (((size_t)b * NH + h) * T + t) * T;
                float *o = out + ((size_t)b * T + t) * C + h * HS;
                for (int i = 0; i < HS; i++) o[i] = 0.0f;
                for (int s = 0; s <= t; s++) {
                    float w = att[row + s] * drop_mask(seed, row + s, thresh) * scale;
                    if (w == 0.0f) continue;
                    const float *v = qkv + ((size_t)b * T + s) * C3 + 2 * C + h * HS;
                    for (int i = 0; i < HS; i++) o[i] += w * v[i];
                }
            }
}

/* ============================================================ backward */

void encoder_backward(float *dwte, float *dwpe, const float *dout,
                      const int *tokens, int B, int T, int C) {
    /* serial: two positions may share a token, so rows of dwte collide */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *we = dwte + (size_t)tokens[b * T + t] * C;
            float *pe = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                we[i] += d[i];
                pe[i] += d[i];
            }
        }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * C, *x = inp + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        /* the two means the input gradient needs */
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s, dnorm = w[i] * d[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s, dnorm = w[i] * d[i];
            if (db) db[i] += d[i];
            if (dw) dw[i] += norm * d[i];
            dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

void matmul_backward_naive(float *dinp, float *dw, float *db,
                           const float *dout, const float *inp, const float *w,
                           int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            float d = dout[(size_t)n * OC + o];
            if (db) db[o] += d;
            for (int i = 0; i < C; i++) {
                if (dinp) dinp[(size_t)n * C + i] += d * w[(size_t)i * OC + o];
                if (dw) dw[(size_t)i * OC + o] += d * inp[(size_t)n * C + i];
            }
        }
}

/* db (OC) += the column sums of dout (N, OC): blocks of columns per
   thread, rows added in order, so the inner loop is contiguous and
   vectorises (a column at a time strides through memory) */
GPT2_CLONES
static void bias_grad(float *db, const float *dout, int N, int OC) {
    enum { BLOCK = 256 };
    int nb = (OC + BLOCK - 1) / BLOCK;
#pragma omp parallel for if ((size_t)N * OC >= PARALLEL_MIN)
    for (int b = 0; b < nb; b++) {
        int o0 = b * BLOCK, o1 = o0 + BLOCK < OC ? o0 + BLOCK : OC;
        float s[BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * OC;
            for (int o = o0; o < o1; o++) s[o - o0] += d[o];
        }
        for (int o = o0; o < o1; o++) db[o] += s[o - o0];
    }
}

void matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC) {
    if (dinp) {
        weight_in W = weight_of(w, (size_t)C * OC);
        gpt2__gemm_ex('N', 'T', N, C, OC, 1.0f, dout, GPT2__GEMM_IN_F32, OC, W.p, W.t,
                      OC, 1.0f, dinp, C, prec());
    }
    if (dw)
        gpt2__gemm('T', 'N', C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, OC, prec());
    if (db) bias_grad(db, dout, N, OC);
}

void lmhead_backward(float *dinp, float *dwte, const float *dlogits,
                     const float *inp, const float *wte, int N, int C, int V) {
    if (dinp) {
        weight_in W = weight_of(wte, (size_t)V * C);
        gpt2__gemm_ex('N', 'N', N, C, V, 1.0f, dlogits, GPT2__GEMM_IN_F32, V, W.p, W.t,
                      C, 1.0f, dinp, C, prec());
    }
    if (dwte)
        gpt2__gemm('T', 'N', V, C, N, 1.0f, dlogits, V, inp, C, 1.0f, dwte, C, prec());
}

/* The backward of one sequence and head, as matrix products (G, Ad: T*T
   floats of scratch each; Ad only with dropout):
     dA = dY V^T (through the dropout mask), dV += A_dropped^T dY,
     dS = A * (dA - rowsum(A * dA)) * scale  (the softmax's backward),
     dQ += dS K, dK += dS^T Q. */
static void attention_head_backward(float *dq, float *dk, float *dv,
                                    const float *dy, const float *q,
                                    const float *k, const float *v,
                                    const float *a, float *G, float *Ad, int T,
                                    int HS, size_t C, size_t C3, size_t row0,
                                    float p_drop, uint64_t seed,
                                    gpt2__gemm_prec pr) {
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = p_drop > 0 ? 1.0f / (1.0f - p_drop) : 1.0f;
    uint32_t thresh = drop_threshold(p_drop);
    const float *aw = a; /* the weights the forward used */
    if (thresh) {
        for (size_t i = 0; i < (size_t)T * T; i++)
            Ad[i] = a[i] * drop_mask(seed, row0 + i, thresh) * keep_scale;
        aw = Ad;
    }
    gpt2__gemm('N', 'T', T, T, HS, 1.0f, dy, (int)C, v, (int)C3, 0.0f, G, T, pr);
    gpt2__gemm('T', 'N', T, HS, T, 1.0f, aw, T, dy, (int)C, 1.0f, dv, (int)C3, pr);
    for (int t = 0; t < T; t++) {
        float *g = G + (size_t)t * T;
        const float *ar = a + (size_t)t * T;
        if (thresh)
            for (int s = 0; s <= t; s++)
                g[s] *= drop_mask(seed, row0 + (size_t)t * T + s, thresh) * keep_scale;
        float mean = 0.0f;
        for (int s = 0; s <= t; s++) mean += ar[s] * g[s];
        for (int s = 0; s <= t; s++) g[s] = ar[s] * (g[s] - mean) * scale;
        for (int s = t + 1; s < T; s++) g[s] = 0.0f;
    }
    gpt2__gemm('N', 'N', T, HS, T, 1.0f, G, T, k, (int)C3, 1.0f, dq, (int)C3, pr);
    gpt2__gemm('T', 'N', T, HS, T, 1.0f, G, T, q, (int)C3, 1.0f, dk, (int)C3, pr);
}

/* The same a row at a time, with no scratch memory: the fallback when
   the products' scratch cannot be had. */
static void attention_backward_rows(float *dqkv, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH,
                        float p_drop, uint64_t seed) {
    int HS = C / NH;
    size_t C3 = 3 * (size_t)C;
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = p_drop > 0 ? 1.0f / (1.0f - p_drop) : 1.0f;
    uint32_t thresh = drop_threshold(p_drop);
    /* each (b, h) touches only its own slices of dqkv */
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3;
            float *dbase = dqkv + (size_t)b * T * C3;
            for (int t = 0; t < T; t++) {
                size_t row = (((size_t)b * NH + h) * T + t) * T;
                const float *a = att + row;
                const float *dy = dout + ((size_t)b * T + t) * C + h * HS;
                const float *q = base + t * C3 + h * HS;
                float *dq = dbase + t * C3 + h * HS;
                /* datt[s] = dy . v_s (through the dropout mask, if any);
                   the softmax backward needs its att-weighted mean first,
                   so it is computed twice */
                float mean = 0.0f;
                for (int s = 0; s <= t; s++) {
                    float m = drop_mask(seed, row + s, thresh) * keep_scale;
                    if (m != 0.0f) mean += a[s] * m * dot(dy, base + s * C3 + 2 * C + h * HS, HS);
                }
                for (int s = 0; s <= t; s++) {
                    const float *k = base + s * C3 + C + h * HS;
                    const float *v = base + s * C3 + 2 * C + h * HS;
                    float *dk = dbase + s * C3 + C + h * HS;
                    float *dv = dbase + s * C3 + 2 * C + h * HS;
                    float m = drop_mask(seed, row + s, thresh) * keep_scale;
                    float datt = m != 0.0f ? m * dot(dy, v, HS) : 0.0f;
                    float dpre = a[s] * (datt - mean) * scale;
                    float ad = a[s] * m; /* the weight the forward used */
                    for (int i = 0; i < HS; i++) {
                        dv[i] += ad * dy[i];
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
        }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH,
                        float p_drop, uint64_t seed) {
    int HS = C / NH;
    size_t C3 = 3 * (size_t)C;
    /* attention's products are small and few: float32 even in mixed
       precision (a bf16 product this size costs more to set up than it
       saves) */
    gpt2__gemm_prec pr = GPT2__PREC_F32;
    size_t tt = (size_t)T * T, per = tt * (p_drop > 0 ? 2 : 1);
#ifdef _OPENMP
    int nt = omp_get_max_threads();
#else
    int nt = 1;
#endif
    float *scratch = malloc(sizeof(float) * per * (size_t)nt);
    if (!scratch) {
        attention_backward_rows(dqkv, dout, qkv, att, B, T, C, NH, p_drop, seed);
        return;
    }
    /* each (b, h) touches only its own slices of dqkv */
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nt)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
#ifdef _OPENMP
            float *G = scratch + per * (size_t)omp_get_thread_num();
#else
            float *G = scratch;
#endif
            const float *base = qkv + (size_t)b * T * C3 + h * HS;
            float *dbase = dqkv + (size_t)b * T * C3 + h * HS;
            size_t row0 = ((size_t)b * NH + h) * tt;
            attention_head_backward(dbase, dbase + C, dbase + 2 * C,
                                    dout + (size_t)b * T * C + h * HS, base,
                                    base + C, base + 2 * C, att + row0, G, G + tt, T,
                                    HS, (size_t)C, C3, row0, p_drop, seed, pr);
        }
    free(scratch);
}

GPT2_CLONES
void gelu_backward(float *dinp, const float *inp, const float *dout,
                   size_t N) {
#pragma omp parallel for if (N > 65536)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float th = fast_tanh(u);
        float sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) +
                     0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += grad * dout[i];
    }
}

/* softmax of a row times scale, written over out, and the log-sum-exp */
GPT2_CLONES
static float softmax_scaled(float *out, const float *x, int V, float scale) {
    float maxv = row_max(x, V);
    double total = 0.0;
    for (int b = 0; b < V; b += 256) {
        int e = b + 256 < V ? b + 256 : V;
        float s = 0.0f;
        for (int i = b; i < e; i++) {
            float v = exp_nonpos(x[i] - maxv);
            out[i] = v;
            s += v;
        }
        total += s;
    }
    float k = (float)(scale / total);
    for (int i = 0; i < V; i++) out[i] *= k;
    return maxv + (float)log(total);
}

void crossentropy_softmax_backward(float *dlogits, const float *logits,
                                   const int *targets, float dloss, int N,
                                   int V) {
#pragma omp parallel for if (N > 8)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        int tgt = targets[n];
        if (tgt < 0) {
            for (int i = 0; i < V; i++) d[i] = 0.0f;
            continue;
        }
        softmax_scaled(d, x, V, dloss);
        d[tgt] -= dloss;
    }
}

void crossentropy_fused(float *losses, float *dlogits, const float *logits,
                        const int *targets, float dloss, int N, int V) {
#pragma omp parallel for if (N > 8)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        int tgt = targets[n];
        if (tgt < 0) {
            for (int i = 0; i < V; i++) d[i] = 0.0f;
            losses[n] = 0.0f;
            continue;
        }
        float xt = x[tgt]; /* before d, which may alias x, overwrites it */
        float lse = softmax_scaled(d, x, V, dloss);
        d[tgt] -= dloss;
        losses[n] = lse - xt;
    }
}
