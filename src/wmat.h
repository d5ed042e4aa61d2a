/* wmat.h: weight matrices in several storage formats, and the kernels that
 * multiply by them. Private to the library.
 *
 * Decode (one token at a time) reads every weight once per token, so its
 * speed is the speed of reading the weights: smaller formats are faster.
 * A gpt2__wmat says how one matrix is stored; the kernels here read it
 * directly, converting to float32 in registers, and accumulate in float32.
 *
 * A matrix maps K inputs to N outputs: y (N) = x (K) @ W.
 *
 * Two layouts:
 *   - GPT2__BY_IN ("in, out"; Hugging Face's Conv1D): K stored rows of N
 *     values; element (k, n) at row k, column n. F32, F16 and BF16 only,
 *     so Hugging Face files are used as they are (memory-mapped).
 *   - GPT2__BY_OUT ("out, in"; nn.Linear, the tied LM head wte (V, C)):
 *     N stored rows of K values, row n holding the weights of output n.
 *     Every format. The quantized formats are always BY_OUT, so each row
 *     is a run of blocks along K and a dot product reads it straight.
 *
 * Formats (gpt2_dtype), per stored row of len values:
 *   F32   len floats.
 *   F16   len IEEE half floats (uint16).
 *   BF16  len bfloat16 (uint16: the top half of a float32).
 *   Q8_0  blocks of 32 values: len/32 scales d (F16, uint16) first, then
 *         len int8 q; value = d * q. d = max|x| / 127 per block. 8.5 bits.
 *   Q4_0  blocks of 32: len/32 F16 scales d first, then len/2 bytes; in
 *         block b, byte j (0..15) holds value 32b+j in its low nibble and
 *         value 32b+j+16 in its high nibble; value = d * (nibble - 8).
 *         d = m / -8 where m is the block's value of largest magnitude
 *         (with its sign), so m itself is exact. 4.5 bits.
 *   For Q8_0 and Q4_0, len must be a multiple of 32 (GPT2__QBLOCK).
 *
 * The kernels come in variants (portable C, AVX2+FMA+F16C, AVX-512
 * F/BW/VL, that with AVX512_VNNI's vpdpbusd for Q8_0 and Q4_0 rows, and
 * that with AVX512_BF16's vdpbf16ps for BF16 rows as well), chosen
 * once at run time from the CPU; gpt2__wmat_force_isa lets tests run every variant the CPU has
 * against the portable one.
 */
#ifndef GPT2_WMAT_H
#define GPT2_WMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"

#define GPT2__QBLOCK 32

typedef enum { GPT2__BY_IN = 0, GPT2__BY_OUT = 1 } gpt2__layout;

typedef struct {
    gpt2_dtype type;
    gpt2__layout layout;
    int K, N;             /* inputs, outputs */
    const void *data;     /* stored rows, each row_bytes long, back to back */
    size_t row_bytes;     /* gpt2__row_bytes(type, layout == BY_IN ? N : K) */
} gpt2__wmat;

/* Bytes of one stored row of len values in format t; 0 if len is not
   allowed for t (Q8_0/Q4_0 need a multiple of 32). */
size_t gpt2__row_bytes(gpt2_dtype t, size_t len);
/* Bytes of the whole matrix (row_bytes * stored rows). */
size_t gpt2__wmat_bytes(const gpt2__wmat *w);

/* One row of len floats into format t (out: gpt2__row_bytes(t, len)).
   Round to nearest (even for F16/BF16). */
void gpt2__quantize_row(gpt2_dtype t, const float *x, size_t len, void *out);
/* One stored row back to len floats. */
void gpt2__dequantize_row(gpt2_dtype t, const void *row, size_t len,
                          float *out);

/* y[n0..n1) = x @ W[:, n0..n1), for 0 <= n0 <= n1 <= N. x (K floats), y
   (N floats: only [n0, n1) is written). Runs on the calling thread: the
   caller splits [0, N) among threads. No bias. */
void gpt2__wmat_gemv_range(const gpt2__wmat *w, const float *x, float *y,
                           int n0, int n1);

/* The same over all outputs, threaded (the decode pool, one thread when
   the matrix is small); y (N) = x @ W + bias (bias may be NULL).

   Q8_0 and Q4_0 rows: x is first quantized to int8 in blocks of 32
   (gpt2__xq: d = max|x| / 127 per block, as float32), and the products
   are taken in integers, as ggml does: an int8 row is then read with
   one instruction per 64 weights (AVX512_VNNI) instead of widening every
   weight to float32, which is what keeps the small formats at the speed
   of memory when memory is fast. Every kernel variant sees the same
   quantized x (without int8 products they multiply d * q in float32), so
   they agree to float32 rounding. Batches (gpt2__wmat_matmul with M > 1;
   M == 1 is this) and gpt2__wmat_gemv_range keep x in float32. */
void gpt2__wmat_gemv(const gpt2__wmat *w, const float *x, const float *bias,
                     float *y);

/* out (M, N) = inp (M, K) @ W + bias (N, or NULL), for any M >= 1: M == 1
   is gpt2__wmat_gemv; larger M goes to the GEMM library (F32 directly;
   other formats are converted to float32 into the calling thread's
   scratch, kept until the thread exits: the whole matrix, as (K, N), up
   to 64 MiB, else in panels of outputs), then multiplied. Threaded. */
void gpt2__wmat_matmul(float *out, const float *inp, const gpt2__wmat *w,
                       const float *bias, int M);

/* x (K, a multiple of 32) quantized as decode's GEMV does for Q8_0 and
   Q4_0 rows (gpt2__wmat_xquant_fn), in the kernels' ISA (tests). */
void gpt2__wmat_quantize_x(const float *x, int K, int8_t *q, float *d);

/* dst[j * ldd + i] = src[i * lds + j], i < 16, j < 16, in the kernels'
   ISA, fenced (tests). */
void gpt2__wmat_transpose16(const float *src, size_t lds, float *dst, size_t ldd);

/* The ISA of the kernels in use: "avx512bf16" (AVX-512 with BF16 rows by
   vdpbf16ps and int8 rows by vpdpbusd), "avx512vnni" (int8 rows by
   vpdpbusd), "avx512", "avx2" or "portable". */
const char *gpt2__wmat_isa(void);
/* Uses the named variant from now on (tests); false if this CPU cannot run
   it or the name is unknown. NULL goes back to the automatic choice. */
bool gpt2__wmat_force_isa(const char *isa);

/* ------------------------------------------------ kernel variants
   What wmat.c (portable kernels, dispatch) and wmat_x86.c (SIMD
   variants) share; nothing else should need it. */

/* gemv_range for one format and layout (arguments as above). */
typedef void (*gpt2__wmat_gemv_fn)(const gpt2__wmat *w, const float *x,
                                   float *y, int n0, int n1);
/* dequantize_row for one format. */
typedef void (*gpt2__wmat_deq_fn)(const void *row, size_t len, float *out);
/* dst[j * ldd + i] = src[i * lds + j] for a 16 x 16 block of floats. It
   may store with non-temporal stores: a memory fence must follow before
   another thread reads dst. */
typedef void (*gpt2__wmat_t16_fn)(const float *src, size_t lds, float *dst,
                                  size_t ldd);

/* x quantized to int8 for decode's products with Q8_0 and Q4_0 rows, in
   blocks of 32 (x ~= d[b] * q[32 b + i]), with what the int8 kernels
   need laid out for them. Made once per product by gpt2__wmat_gemv. */
typedef struct {
    const int8_t *q;   /* K quants in order, then 0 to a multiple of 128 */
    const float *d;    /* per block, then 0 to a multiple of 16 blocks;
                          NaN for a block holding an Inf or NaN */
    const int8_t *q4;  /* q in Q4_0 rows' order: per 4 blocks (128 bytes),
                          the first 16 quants of each block, then the last
                          16 of each (the low and high nibbles of 64 bytes
                          of a Q4_0 row) */
    const int32_t *c8; /* per 4 quants of q: -128 * their sum */
    const int32_t *c4; /* per 4 bytes of the first 64 of each 128 of q4:
                          -8 * the sum of those 4 quants and the 4 at +64 */
    const float *xf;   /* d[b] * q as float32, for kernels without int8
                          products */
} gpt2__xq;

/* Q8_0 / Q4_0 rows by int8 products: y[n0..n1) = x @ W[:, n0..n1)
   (BY_OUT), x as gpt2__xq. Q8_0: each weight w as the unsigned w + 128
   times x's signed quant (vpdpbusd), the excess 128 * sum(q) taken off
   by starting from c8; Q4_0: the nibble (0..15) times the quant, the
   excess 8 * sum(q) taken off by c4. Exact in int32; per block, times
   the two scales, in float32. */
typedef void (*gpt2__wmat_qgemv_fn)(const gpt2__wmat *w, const gpt2__xq *x,
                                    float *y, int n0, int n1);
/* x (K, a multiple of 32) to q (K) and d (K/32): per block d = max|x| /
   127 and q = x * (127 / max|x|) rounded to nearest even, all in float32
   (so every variant gives the same bits); a block holding an Inf or NaN
   gets d = NaN and q = 0, and a block whose max|x| is below 127/FLT_MAX
   (4e-37: 127/max|x| would overflow) d = 0 and q = 0. */
typedef void (*gpt2__wmat_xquant_fn)(const float *x, int K, int8_t *q,
                                     float *d);

/* BY_IN (F32, F16, BF16), one stored row after another: y[n0..n1) =
   x[k0..k1) @ W[k0..k1, n0..n1). Each y[n] is one chain of multiply-adds
   in k order, whatever n0 and n1. Decode's threaded GEMV gives each
   thread a run of whole rows (gpt2__wmat_gemv). */
typedef void (*gpt2__wmat_rows_fn)(const gpt2__wmat *w, const float *x,
                                   float *y, int k0, int k1, int n0, int n1);

typedef struct {
    const char *name;                     /* as gpt2__wmat_isa() says */
    gpt2__wmat_gemv_fn gemv[5][2];        /* [gpt2_dtype][gpt2__layout] */
    gpt2__wmat_rows_fn in_rows[3];        /* [F32, F16, BF16] */
    gpt2__wmat_qgemv_fn qgemv[2];         /* [Q8_0, Q4_0], or NULL */
    gpt2__wmat_xquant_fn xquant;          /* or NULL: the portable one */
    gpt2__wmat_deq_fn deq[5];             /* [gpt2_dtype] */
    gpt2__wmat_t16_fn transpose16;        /* prefill's conversion */
} gpt2__wmat_kernels;

/* The x86 variant named isa ("avx512bf16", "avx512vnni", "avx512", "avx2") if this build has it and
   this CPU can run it, else NULL (always NULL off x86-64). */
const gpt2__wmat_kernels *gpt2__wmat_x86_kernels(const char *isa);

#endif
