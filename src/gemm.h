/* gemm.h: matrix products for the batched work (prefill, training), in
 * float32 or in bfloat16 with float32 accumulation. Private to the
 * library.
 *
 *     // C (M,N) = A (M,K) @ B (K,N), all row-major float32
 *     gpt2__gemm('N', 'N', M, N, K, 1.0f, A, K, B, N, 0.0f, C, N,
 *                GPT2__PREC_BF16);
 *
 * Conventions are dnnl_sgemm's (BLAS's, row-major):
 *     C = alpha * op(A) @ op(B) + beta * C
 * op(A) is M x K: A stored M x K (ta 'N', element (i,k) at A[i*lda + k])
 * or K x M (ta 'T', at A[k*lda + i]); op(B) is K x N likewise (tb 'N':
 * B[k*ldb + j], 'T': B[j*ldb + k]); C is M x N at C[i*ldc + j]. With
 * beta == 0, C is only written, never read (NaN there does not leak).
 *
 * Precisions:
 *   GPT2__PREC_F32   float32 products and sums: oneDNN's sgemm when built
 *                    with it (GEMM=dnnl), else a portable blocked kernel.
 *   GPT2__PREC_BF16  each input element rounded to bfloat16 (nearest
 *                    even), products and sums in float32, as mixed-
 *                    precision training does (PyTorch's autocast to
 *                    bfloat16 with float32 master weights). Since a product
 *                    of two bfloat16 values is exact in float32, every
 *                    variant computes the same sums up to the order of the
 *                    float32 additions. Where oneDNN reports a bf16 unit
 *                    (AVX512_BF16 or AMX): its bf16 matmul (brgemm,
 *                    vdpbf16ps), except the products with op(A) stored
 *                    transposed that the own AVX512_BF16 kernel does
 *                    faster (K <= 512: weight gradients of few tokens;
 *                    M >= 16384: the LM head's); without oneDNN, the
 *                    own kernel on CPUs with AVX512_BF16; everywhere else
 *                    emulation: oneDNN's sgemm on rounded copies, or the
 *                    portable kernel rounding while it packs. Subnormal
 *                    inputs may be flushed to zero.
 *
 * Speed (GPT-2 124M's training products at 256 tokens, 2 threads of
 * AMD Zen 5, GFLOP/s): oneDNN sgemm 310-520 (fp32 FMA peak 535); bf16
 * 850-940, the LM head's backward products 545-650 (vdpbf16ps peak
 * 1065), float32 inputs converted included; the own kernel alone
 * 550-920; portable 180-300. All the products of one training step:
 * 412 ms in fp32, 242 ms in bf16, 226 ms with bf16 weights.
 *
 * Inputs already in bfloat16 skip the conversion (7% of a step's bf16
 * products, up to 17% of one): gpt2__gemm_ex takes each input as
 * float32 or bfloat16. Worth it for weights (a bf16 copy made once per
 * optimizer step, 10-16 ms for 124M on 2 threads, instead of two
 * conversions per step of each) and for an input two products share
 * (dout, dlogits).
 * gpt2__bf16_round_n converts an array.
 *
 * Threads: the work is spread over the OpenMP team (called inside a
 * parallel region, it runs on the calling thread). Any number of threads
 * may call these functions at once: each calling thread keeps its own
 * oneDNN primitives (one per shape: making one costs about 1 ms, so the
 * last 32 used are kept) and buffers, freed when it exits or calls
 * gpt2__gemm_thread_release. Memory: a thread that used the oneDNN bf16
 * path keeps its conversion buffers (the largest float32 inputs it
 * converted, at half their size; larger products are done in parts so
 * that each stays under 128 MB) until then. If memory for buffers
 * cannot be had, a slow plain loop (summing in double) needs none.
 */
#ifndef GPT2_GEMM_H
#define GPT2_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GPT2__PREC_F32 = 0, /* float32 inputs, products and sums */
    GPT2__PREC_BF16 = 1 /* inputs rounded to bfloat16, float32 sums */
} gpt2__gemm_prec;

/* Storage type of one input matrix of gpt2__gemm_ex. */
typedef enum {
    GPT2__GEMM_IN_F32 = 0,  /* const float * */
    GPT2__GEMM_IN_BF16 = 1  /* const uint16_t *: bfloat16 bit patterns */
} gpt2__gemm_in;

/* True when GPT2__PREC_BF16 runs on a bfloat16 unit (AVX512_BF16 or AMX,
   through oneDNN or the own kernel), at about twice float32's speed;
   false when it is emulated (slower than GPT2__PREC_F32). */
bool gpt2__gemm_bf16_available(void);

/* C = alpha * op(A) @ op(B) + beta * C, in precision prec (see above).
   ta, tb: 'N' or 'T' (also 'n', 't'). M, N, K >= 0; lda, ldb, ldc at
   least the stored row lengths. */
void gpt2__gemm(char ta, char tb, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta,
                float *C, int ldc, gpt2__gemm_prec prec);

/* The same with each input given as float32 or bfloat16 (at, bt). A
   bfloat16 input implies prec GPT2__PREC_BF16 (it is an error, asserted,
   with GPT2__PREC_F32). lda, ldb count elements, not bytes. */
void gpt2__gemm_ex(char ta, char tb, int M, int N, int K, float alpha,
                   const void *A, gpt2__gemm_in at, int lda, const void *B,
                   gpt2__gemm_in bt, int ldb, float beta, float *C, int ldc,
                   gpt2__gemm_prec prec);

/* dst[i] = src[i] rounded to bfloat16 (nearest even; NaN stays NaN), for
   n values; threaded when large. Uses AVX512_BF16 where present (which
   flushes subnormals to zero). */
void gpt2__bf16_round_n(uint16_t *dst, const float *src, size_t n);

/* The calling thread's buffer of at least `bytes` (64-byte aligned, in
   huge pages when large), for an operand the caller converts before a
   product (wmat.c: 16-bit or quantized weights as float32). Kept with the
   thread's other buffers, so its contents last until the next call; NULL
   without memory. */
void *gpt2__gemm_operand_buffer(size_t bytes);

/* Frees the calling thread's cached oneDNN primitives and buffers now
   (they are also freed when the thread exits). */
void gpt2__gemm_thread_release(void);

/* For tests and benchmarks: which implementation the calls that follow
   use, process-wide:
     "auto"           the default: the fastest present;
     "portable"       gpt2c's own C kernels for both precisions (bf16 by
                      rounding while packing);
     "avx512bf16"     the own AVX512_BF16 kernel for bf16, f32 as auto;
     "dnnl"           oneDNN for both (bf16 needs a bf16 unit);
     "dnnl-emulated"  bf16 as oneDNN's sgemm on rounded float32 copies.
   false, and nothing changes, when that one is not built in or the CPU
   lacks it. Not meant to be called while other threads multiply. */
bool gpt2__gemm_force(const char *impl);
/* For tests: oneDNN's paths convert float32 inputs into per-thread
   buffers, splitting a product into parts so that no input's copy
   exceeds this many bytes (default 128 MB; 0 restores it). Returns the
   previous limit. */
size_t gpt2__gemm_convert_limit(size_t bytes);
/* The implementation bf16 products use now (under "auto", for most
   shapes): one of the names above but "auto". */
const char *gpt2__gemm_bf16_impl(void);

/* The product in three plain loops, in double (each input rounded to
   bfloat16 first when prec is GPT2__PREC_BF16): a reference for tests,
   and the path that needs no memory. Same arguments as gpt2__gemm_ex. */
void gpt2__gemm_naive(char ta, char tb, int M, int N, int K, float alpha,
                      const void *A, gpt2__gemm_in at, int lda, const void *B,
                      gpt2__gemm_in bt, int ldb, float beta, float *C,
                      int ldc, gpt2__gemm_prec prec);

/* ------------------------------------------------ kernel variants
   What gemm.c (the blocked driver, the portable kernel, dispatch) and
   gemm_bf16_x86.c (the AVX512_BF16 kernel) share; nothing else should
   need it. */

/* One product, as the caller gave it; round: f32 inputs are rounded to
   bfloat16 (prec BF16). */
typedef struct {
    bool ta, tb; /* transposed */
    int M, N, K;
    float alpha, beta;
    const void *A, *B;
    gpt2__gemm_in at, bt;
    int lda, ldb;
    float *C;
    int ldc;
    bool round;
} gpt2__gemm_args;

/* The most k values the driver packs at a time (a kernel's kc). */
#define GPT2__GEMM_KC 512

/* A micro-kernel and its packing, for the blocked driver in gemm.c. The
   driver packs op(B) in panels of nr columns and op(A) in panels of mr
   rows, kc values of k at a time, k padded with zeros to a multiple of
   kstep; a panel holds, for each group of kstep k values, its
   nr (mr) columns (rows) of kstep values each, esize bytes per value,
   ceil(kc / kstep) * kstep * nr (mr) values in all. Blocks of mc rows of
   op(A) and nc columns of op(B) are packed at a time. */
typedef struct {
    const char *name;
    int mr, nr, kstep;
    int mc, nc; /* multiples of mr, nr */
    int kc;     /* even, at most GPT2__GEMM_KC */
    size_t esize;
    /* the ceil(m / mr) panels of op(A) rows i0..i0+m-1 (m <= mc; rows
       past m zero), k0..k0+kc-1, one after the other */
    void (*pack_a)(void *dst, const gpt2__gemm_args *g, int i0, int m,
                   int k0, int kc);
    /* one panel of op(B): columns j0..j0+n-1 (n <= nr; the rest zero) */
    void (*pack_b)(void *dst, const gpt2__gemm_args *g, int j0, int n,
                   int k0, int kc);
    /* c (m x n, m <= mr, n <= nr, row stride ldc) = alpha * a @ b +
       beta * c (c not read when beta == 0); kc a multiple of kstep */
    void (*micro)(int kc, const void *a, const void *b, float *c, int ldc,
                  int m, int n, float alpha, float beta);
} gpt2__gemm_kernel;

/* The AVX512_BF16 kernel, or NULL where the CPU (or the compiler) lacks
   it. */
const gpt2__gemm_kernel *gpt2__gemm_x86_bf16_kernel(void);
/* gpt2__bf16_round_n's AVX512_BF16 loop over n values (no threads);
   false if unavailable (then nothing was written). */
bool gpt2__bf16_round_x86(uint16_t *dst, const float *src, size_t n);

#endif
