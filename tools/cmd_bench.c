/* cmd_bench.c: `gpt2 bench`: how fast gpt2c is on this machine, and how
   far from what the machine allows. In one run it measures
     - the machine's limits: streaming read bandwidth (a warm read pass
       over a buffer of a given size), the fp32 FMA peak (a register-
       resident FMA loop on every thread), the AVX512_BF16 dot-product
       peak and the AMX peak where the CPU has them (cpuid says), and
       oneDNN's sgemm on a large square matrix when gpt2c uses oneDNN;
     - gpt2c's figures, each beside its limit: decode ms/token at two
       contexts for every weight format (limit: one read pass over the
       bytes a step reads), prefill tokens/s (limit: the FMA peak),
       training step time (limit: the FMA peak at 6 N tokens + attention
       FLOPs), tokenizer MB/s, load time, peak RSS, thread scaling, and
       2-thread decode next to a CPU-bound process (issue 4's <= 2x).
   The library is used through its public API only, as a program would.
   Limits are the best of their repeats (the machine can do at least
   that), figures the median (what a run usually gets), so a fraction of
   limit is never flattered by noise on the limit's side. Prints markdown
   tables, or JSON with --json. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#ifdef GPT2_USE_DNNL
#include <dnnl.h>
#endif

static const char *const CMD = "bench";

#define MAX_THREAD_COUNTS 8
#define MAX_TEAM 1024 /* the most threads --threads accepts */
#define MAX_FORMATS 5
#define MAX_REPEATS 64
#define N_CTXS 2
/* limits 5 per thread count, decode 2 per format and thread count + 2 per
   format, prefill and training 5 per thread count, load 5, scaling 9,
   contention 3: under 320 */
#define MAX_FIGURES 320

enum {
    SEC_DECODE = 1, SEC_PREFILL = 2, SEC_TRAIN = 4, SEC_TOKENIZER = 8,
    SEC_LOAD = 16, SEC_CONTENTION = 32, SEC_ALL = 63
};
static const char *const section_names[] = {
    "decode", "prefill", "train", "tokenizer", "load", "contention"};

/* ------------------------------------------------------------ figures */

/* One line of the report. Times (lower is better) have their limit as the
   least time the machine needs, so fraction = limit / value; rates have
   it as the most the machine can do, so fraction = value / limit. Either
   way the fraction is at most about 1. */
typedef struct {
    char id[64];          /* stable key for machines: "decode.F32.ctx128.t2" */
    const char *section;  /* "limits", "decode", ... */
    char what[160];       /* for people */
    int threads;          /* 0: not tied to a thread count */
    bool available;       /* false: why says why; no numbers */
    char why[256];
    double value;
    const char *unit;
    bool lower_better;
    double limit;         /* in unit; 0: none */
    char limit_note[200]; /* how the limit is set */
    double target;        /* > 0: a target, not a limit (contention) */
} figure;

/* --------------------------------------------------------------- state */

typedef struct {
    bool fma, avx2, avx512f, avx512_bf16, amx_tile, amx_bf16;
    bool os_avx, os_avx512, os_amx;
} cpu_features;

typedef struct {
    /* options */
    const char *model_arg;     /* --model, or NULL: a random model */
    const char *config;        /* preset for the random model */
    const char *text_path, *text_name, *tok_dir, *tmp_dir, *json_out;
    bool json, quick;
    int threads[MAX_THREAD_COUNTS], n_threads;
    unsigned sections;
    gpt2_dtype formats[MAX_FORMATS], prefill_formats[MAX_FORMATS];
    int n_formats, n_prefill_formats;
    int steps, repeats;
    double max_seconds;        /* per figure, after its first repeat */
    double peak_seconds;       /* length of one peak-loop sample */
    int ctxs[N_CTXS], prefill_len, sgemm_n;
    /* run */
    char model_path[4200];     /* what every load reads */
    char tmp_root[4096];       /* our temporary directory, or "" */
    gpt2_config cfg;
    size_t n_params;
    cpu_features cpu;
    double fma_peak[MAX_THREAD_COUNTS];  /* GFLOP/s per thread count */
    double bf16_peak[MAX_THREAD_COUNTS]; /* 0 where there is no bf16 unit */
    const char *fma_isa, *read_isa;
    figure figs[MAX_FIGURES];
    int n_figs;
    /* the read passes' buffer: allocated and touched once, up front, so
       that the passes can run next to the figures they limit without
       changing the process's peak RSS */
    unsigned char *read_buf;
    size_t read_buf_lines;
    double t_start;
} bench;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* ---------------------------------------------------------------- small */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void progress(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gpt2 bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A library call that must succeed; prints the error otherwise. */
static bool lib_ok(gpt2_status s, const char *what) {
    if (s == GPT2_OK) return true;
    cli_lib_error(CMD, "%s failed", what);
    return false;
}

static bool check_interrupt(void) {
    if (interrupted) cli_error(CMD, CLI_FAIL, "interrupted");
    return !interrupted;
}

/* Token ids from a fixed LCG: the same prompt on every run. */
static void fill_tokens(int *ids, int n, int vocab) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int)((x >> 33) % (uint64_t)vocab);
    }
}

/* A number with about three significant digits. */
static void fmt_num(char *buf, size_t cap, double v) {
    double a = fabs(v);
    snprintf(buf, cap, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : a >= 1 ? "%.2f"
                                                             : "%.3f", v);
}

static const char *plural(int n) { return n == 1 ? "" : "s"; }

/* The index of a thread count in the list, or -1. */
static int thread_index(const bench *b, int threads) {
    for (int i = 0; i < b->n_threads; i++)
        if (b->threads[i] == threads) return i;
    return -1;
}

static int max_threads(const bench *b) {
    int m = 1;
    for (int i = 0; i < b->n_threads; i++)
        if (b->threads[i] > m) m = b->threads[i];
    return m;
}

/* Runs fn once per thread of a team of n (fn gets its id and the team's
   size). Without OpenMP the team is the calling thread. */
typedef void (*team_fn)(void *ctx, int id, int n);
static void run_team(int n, team_fn fn, void *ctx) {
#ifdef _OPENMP
#pragma omp parallel num_threads(n)
    fn(ctx, omp_get_thread_num(), omp_get_num_threads());
#else
    (void)n;
    fn(ctx, 0, 1);
#endif
}

/* Runs fn up to b->repeats times (at least once, and no more once
   max_seconds have passed) and returns the median of its results. */
typedef double (*measure_fn)(void *ctx);
static double repeat_median(const bench *b, measure_fn fn, void *ctx) {
    double v[MAX_REPEATS], start = now_s();
    int n = 0;
    while (n < b->repeats && n < MAX_REPEATS && !interrupted) {
        v[n++] = fn(ctx);
        if (now_s() - start > b->max_seconds) break;
    }
    return n ? median(v, n) : NAN;
}

static figure *fig_new(bench *b, const char *section, int threads,
                       const char *unit, bool lower_better, const char *id_fmt,
                       ...) __attribute__((format(printf, 6, 7)));

/* A new figure, not yet available. The table has a fixed size (more than
   the most figures the option limits allow), so pointers to figures stay
   valid while others are added. */
static figure *fig_new(bench *b, const char *section, int threads,
                       const char *unit, bool lower_better, const char *id_fmt,
                       ...) {
    int i = b->n_figs < MAX_FIGURES ? b->n_figs++ : MAX_FIGURES - 1;
    figure *f = &b->figs[i];
    memset(f, 0, sizeof *f);
    va_list ap;
    va_start(ap, id_fmt);
    vsnprintf(f->id, sizeof f->id, id_fmt, ap);
    va_end(ap);
    f->section = section;
    f->threads = threads;
    f->unit = unit;
    f->lower_better = lower_better;
    return f;
}

static void fig_what(figure *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fig_what(figure *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->what, sizeof f->what, fmt, ap);
    va_end(ap);
}

static void fig_limit(figure *f, double limit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fig_limit(figure *f, double limit, const char *fmt, ...) {
    f->limit = limit;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->limit_note, sizeof f->limit_note, fmt, ap);
    va_end(ap);
}

static void fig_value(figure *f, double v) {
    f->value = v;
    f->available = isfinite(v) && v > 0;
    if (!f->available && !f->why[0])
        snprintf(f->why, sizeof f->why, "no valid measurement");
}

static void fig_na(figure *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fig_na(figure *f, const char *fmt, ...) {
    f->available = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof f->why, fmt, ap);
    va_end(ap);
}

static const figure *fig_find(const bench *b, const char *id) {
    for (int i = 0; i < b->n_figs; i++)
        if (strcmp(b->figs[i].id, id) == 0) return &b->figs[i];
    return NULL;
}

static double fig_fraction(const figure *f) {
    if (!f->available || f->limit <= 0) return NAN;
    return f->lower_better ? f->limit / f->value : f->value / f->limit;
}

/* ----------------------------------------------------------- the CPU */

#if defined(__x86_64__)
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

/* What the CPU has (cpuid) and the OS lets us use (XCR0). */
static void detect_cpu(cpu_features *f) {
    memset(f, 0, sizeof *f);
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d)) return;
    bool osxsave = c & (1u << 27);
    f->fma = c & (1u << 12);
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    f->os_avx = (xcr0 & 0x6) == 0x6;        /* SSE and AVX state */
    f->os_avx512 = (xcr0 & 0xe6) == 0xe6;   /* + opmask, ZMM halves */
    f->os_amx = (xcr0 & 0x60000) == 0x60000; /* XTILECFG, XTILEDATA */
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f->avx2 = b & (1u << 5);
        f->avx512f = b & (1u << 16);
        f->amx_bf16 = d & (1u << 22);
        f->amx_tile = d & (1u << 24);
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f->avx512_bf16 = a & (1u << 5);
#endif
    /* GPT2_BENCH_ISA=avx2 or portable: behave as if the OS enabled no
       wider registers, so tests run the narrower kernels here too */
    const char *isa = getenv("GPT2_BENCH_ISA");
    if (isa && (!strcmp(isa, "avx2") || !strcmp(isa, "portable")))
        f->os_avx512 = f->os_amx = false;
    if (isa && !strcmp(isa, "portable")) f->os_avx = false;
}

static bool can_avx512(const cpu_features *f) {
    return f->avx512f && f->os_avx512;
}
static bool can_avx2(const cpu_features *f) {
    return f->avx2 && f->fma && f->os_avx;
}
static bool can_bf16(const cpu_features *f) {
    return can_avx512(f) && f->avx512_bf16;
}

static void cpu_name(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, cap, "%s", colon);
            break;
        }
    }
    fclose(f);
}

/* ------------------------------------------------------ read bandwidth */

/* Sums of a slice of 64-byte lines: the loads are independent (eight
   accumulators), so the loop is bound by the memory system, not the adds.
   The widest loads the CPU has: one core's achievable rate depends on
   them. Each line is also prefetched READ_PF bytes ahead, as gpt2c's
   decode kernels do: on Zen 5 that reads 3-8% faster than the hardware
   prefetcher alone, and a limit must be the best the machine does. */
#define READ_PF 4096
#if defined(__x86_64__)
__attribute__((target("avx512f")))
static uint64_t read_lines_avx512(const unsigned char *p, size_t n_lines) {
    __m512i s[8];
#pragma GCC unroll 16
    for (int k = 0; k < 8; k++) s[k] = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n_lines; i += 8) {
#pragma GCC unroll 16
        for (int k = 0; k < 8; k++) {
            _mm_prefetch((const char *)p + 64 * (i + k) + READ_PF, _MM_HINT_T0);
            s[k] = _mm512_add_epi64(s[k], _mm512_load_si512(p + 64 * (i + k)));
        }
    }
    for (; i < n_lines; i++)
        s[0] = _mm512_add_epi64(s[0], _mm512_load_si512(p + 64 * i));
#pragma GCC unroll 16
    for (int k = 1; k < 8; k++) s[0] = _mm512_add_epi64(s[0], s[k]);
    /* not _mm512_reduce_add_epi64: GCC's adds signed scalars, which
       overflow (UB) on these sums */
    uint64_t out[8], sum = 0;
    _mm512_storeu_si512(out, s[0]);
    for (int k = 0; k < 8; k++) sum += out[k];
    return sum;
}

__attribute__((target("avx2")))
static uint64_t read_lines_avx2(const unsigned char *p, size_t n_lines) {
    __m256i s[8];
#pragma GCC unroll 16
    for (int k = 0; k < 8; k++) s[k] = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 4 <= n_lines; i += 4) {
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++)
            _mm_prefetch((const char *)p + 64 * (i + k) + READ_PF, _MM_HINT_T0);
#pragma GCC unroll 16
        for (int k = 0; k < 8; k++)
            s[k] = _mm256_add_epi64(
                s[k], _mm256_load_si256((const __m256i *)(p + 64 * i) + k));
    }
    for (; i < n_lines; i++) {
        const __m256i *q = (const __m256i *)(p + 64 * i);
        s[0] = _mm256_add_epi64(s[0], _mm256_load_si256(q));
        s[1] = _mm256_add_epi64(s[1], _mm256_load_si256(q + 1));
    }
#pragma GCC unroll 16
    for (int k = 1; k < 8; k++) s[0] = _mm256_add_epi64(s[0], s[k]);
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s[0]);
    return out[0] + out[1] + out[2] + out[3];
}
#endif

static uint64_t read_lines_portable(const unsigned char *p, size_t n_lines) {
    const uint64_t *w = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < n_lines * 8; i += 4)
        s0 += w[i], s1 += w[i + 1], s2 += w[i + 2], s3 += w[i + 3];
    return s0 + s1 + s2 + s3;
}

typedef uint64_t (*read_fn)(const unsigned char *p, size_t n_lines);

static read_fn pick_read(const cpu_features *f, const char **isa) {
#if defined(__x86_64__)
    if (can_avx512(f)) return *isa = "avx512", read_lines_avx512;
    if (can_avx2(f)) return *isa = "avx2", read_lines_avx2;
#endif
    (void)f;
    *isa = "portable";
    return read_lines_portable;
}

typedef struct {
    unsigned char *buf;
    size_t lines;      /* 64-byte lines in the buffer */
    int inner;         /* passes per timed sample */
    read_fn fn;
    uint64_t sink[MAX_TEAM];
} read_ctx;

/* Thread id's contiguous share of the lines. */
static void slice(size_t lines, int id, int n, size_t *lo, size_t *hi) {
    *lo = lines * (size_t)id / (size_t)n;
    *hi = lines * (size_t)(id + 1) / (size_t)n;
}

static void read_team(void *p, int id, int n) {
    read_ctx *c = p;
    size_t lo, hi;
    slice(c->lines, id, n, &lo, &hi);
    uint64_t s = 0;
    for (int r = 0; r < c->inner; r++) s += c->fn(c->buf + 64 * lo, hi - lo);
    c->sink[id % MAX_TEAM] += s;
}

/* First touch by the threads that will read, so each page is where its
   reader is (NUMA) and resident before timing. */
static void touch_team(void *p, int id, int n) {
    read_ctx *c = p;
    size_t lo, hi;
    slice(c->lines, id, n, &lo, &hi);
    memset(c->buf + 64 * lo, id + 1, 64 * (hi - lo));
}

/* Many samples: on a shared machine some passes lose time to other
   processes, and the best one is the machine's. */
static int read_samples(const bench *b) { return b->quick ? 3 : 15; }

/* The buffer of the read passes: room for the largest pass the run makes
   (the F32 weights or the model's file, and a full KV cache), every page
   touched by the team that will read it, so it is resident before any
   timing. */
static bool alloc_read_buf(bench *b, size_t file_bytes) {
    size_t w = b->n_params * sizeof(float);
    size_t bytes = (w > file_bytes ? w : file_bytes) +
                   2 * (size_t)b->cfg.n_layer * b->cfg.n_ctx * b->cfg.n_embd *
                       sizeof(float);
    read_ctx c = {.lines = bytes / 64 + 1};
    /* aligned to 2 MiB and in huge pages where the kernel gives them, as
       gpt2c's own large blocks are: the best streaming read there is */
    size_t huge = (size_t)2 << 20, len = (c.lines * 64 + huge - 1) / huge * huge;
    c.buf = aligned_alloc(huge, len);
    if (!c.buf) return false;
#ifdef MADV_HUGEPAGE
    (void)madvise(c.buf, len, MADV_HUGEPAGE);
#endif
    run_team(max_threads(b), touch_team, &c);
    b->read_buf = c.buf;
    b->read_buf_lines = c.lines;
    return true;
}

/* The best rate (GB/s, 1e9) of `samples` warm read passes over exactly
   `bytes` bytes (rounded up to whole 64-byte lines) with `threads`
   threads. A span that fits a cache is read from that cache, as decode
   would. */
static double measure_read_n(bench *b, size_t bytes, int threads, int samples) {
    read_ctx c = {.buf = b->read_buf, .lines = (bytes + 63) / 64, .inner = 1};
    if (c.lines > b->read_buf_lines) return NAN; /* sized for every pass */
    c.fn = pick_read(&b->cpu, &b->read_isa);
    double t0 = now_s();
    run_team(threads, read_team, &c); /* warm-up pass, and a first timing */
    double one = now_s() - t0;
    /* several passes per sample for small buffers, so a sample is not
       dominated by waking the team */
    double want = b->quick ? 0.5e-3 : 2e-3;
    if (one < want) c.inner = (int)(want / (one > 1e-7 ? one : 1e-7)) + 1;
    double best = 0;
    for (int s = 0; s < samples && !interrupted; s++) {
        t0 = now_s();
        run_team(threads, read_team, &c);
        double gbs = (double)c.lines * 64 * c.inner / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

static double measure_read(bench *b, size_t bytes, int threads) {
    return measure_read_n(b, bytes, threads, read_samples(b));
}

/* The limit of a figure whose work is one read of `bytes`: the time of a
   read pass over as many bytes, measured now, with the same threads. */
static void read_limit(bench *b, figure *f, size_t bytes, int threads) {
    double gbs = measure_read(b, bytes, threads);
    if (isfinite(gbs) && gbs > 0)
        fig_limit(f, (double)bytes / (gbs * 1e9) * 1e3,
                  "one read of %.1f MB at %.1f GB/s", bytes / 1e6, gbs);
}

/* ---------------------------------------------------------- FMA peak */

/* Each loop keeps independent chains a = a * m + c in registers, enough
   of them to cover the FMA latency on every FMA port; m and c keep a
   bounded (it converges to c / (1 - m)). Returns the flops done. The
   loops over the chains are unrolled so the chains live in registers
   (left as loops, GCC keeps the array in memory). */
#if defined(__x86_64__)
__attribute__((target("avx512f")))
static double fma_avx512(long iters, float mul, float add, float *sink) {
    __m512 m = _mm512_set1_ps(mul), c = _mm512_set1_ps(add), a[16];
#pragma GCC unroll 16
    for (int k = 0; k < 16; k++) a[k] = _mm512_set1_ps(1.0f + 0.01f * k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) a[k] = _mm512_fmadd_ps(a[k], m, c);
    }
#pragma GCC unroll 16
    for (int k = 1; k < 16; k++) a[0] = _mm512_add_ps(a[0], a[k]);
    *sink += _mm512_reduce_add_ps(a[0]);
    return (double)iters * 16 * 16 * 2;
}

__attribute__((target("avx2,fma")))
static double fma_avx2(long iters, float mul, float add, float *sink) {
    __m256 m = _mm256_set1_ps(mul), c = _mm256_set1_ps(add), a[12];
#pragma GCC unroll 16
    for (int k = 0; k < 12; k++) a[k] = _mm256_set1_ps(1.0f + 0.01f * k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < 12; k++) a[k] = _mm256_fmadd_ps(a[k], m, c);
    }
    float out[8];
#pragma GCC unroll 16
    for (int k = 1; k < 12; k++) a[0] = _mm256_add_ps(a[0], a[k]);
    _mm256_storeu_ps(out, a[0]);
#pragma GCC unroll 16
    for (int k = 0; k < 8; k++) *sink += out[k];
    return (double)iters * 12 * 8 * 2;
}

/* vdpbf16ps: 16 float lanes, each += two bf16 products: 64 flops. */
__attribute__((target("avx512f,avx512bf16")))
static double bf16_avx512(long iters, float mul, float add, float *sink) {
    __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(mul), _mm512_set1_ps(mul));
    __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(add), _mm512_set1_ps(add));
    __m512 a[16];
    /* distinct starting values: sixteen identical chains would be merged
       into one by the compiler, and the count below would be 16x wrong */
#pragma GCC unroll 16
    for (int k = 0; k < 16; k++) a[k] = _mm512_set1_ps(0.01f * (float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) a[k] = _mm512_dpbf16_ps(a[k], x, y);
    }
#pragma GCC unroll 16
    for (int k = 1; k < 16; k++) a[0] = _mm512_add_ps(a[0], a[k]);
    *sink += _mm512_reduce_add_ps(a[0]);
    return (double)iters * 16 * 64;
}

/* AMX: tdpbf16ps on full 16x64-byte tiles: C (16x16 f32) += A (16x32
   bf16) B (32x16 bf16 pairs): 16*16*32*2 = 16384 flops each, four
   independent accumulators. Linux hands out the tile state on request. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tilecfg;

static bool amx_request(void) {
    /* ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA */
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

__attribute__((target("amx-tile,amx-bf16")))
static double amx_bf16(long iters, float mul, float add, float *sink) {
    (void)mul, (void)add;
    /* zero inputs keep the accumulators finite however long it runs */
    static const uint16_t zeros[16 * 32] = {0};
    amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float out[16 * 16];
    _tile_stored(0, out, 64);
    _tile_release();
    *sink += out[0];
    return (double)iters * 4 * 16384;
}
#endif

static double fma_portable(long iters, float mul, float add, float *sink) {
    float a[8];
#pragma GCC unroll 16
    for (int k = 0; k < 8; k++) a[k] = 1.0f + 0.01f * k;
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < 8; k++) a[k] = a[k] * mul + add;
    }
#pragma GCC unroll 16
    for (int k = 0; k < 8; k++) *sink += a[k];
    return (double)iters * 8 * 2;
}

typedef double (*peak_fn)(long iters, float mul, float add, float *sink);

typedef struct {
    peak_fn fn;
    long iters;
    volatile float mul, add; /* volatile: the compiler must not fold them */
    float sink[MAX_TEAM];
    double rate[MAX_TEAM];   /* flops per second of each thread's CPU time */
} peak_ctx;

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each thread times itself on its own CPU clock: on a shared machine a
   thread that waits for a core is not counted as slow, so the sum is
   what the cores do while they run, the limit we want. (Compute in
   registers is private to each core, so the rates add up.) */
static void peak_team(void *p, int id, int n) {
    peak_ctx *c = p;
    (void)n;
    double t0 = thread_cpu_s();
    double flops = c->fn(c->iters, c->mul, c->add, &c->sink[id % MAX_TEAM]);
    double dt = thread_cpu_s() - t0;
    c->rate[id % MAX_TEAM] = flops / (dt > 1e-9 ? dt : 1e-9);
}

/* GFLOP/s of fn on a team of `threads`: the best of five samples of about
   b->peak_seconds each, a sample being the sum of its threads' rates. */
static double measure_peak(const bench *b, peak_fn fn, int threads) {
    peak_ctx c = {.fn = fn, .iters = 20000, .mul = 0.999999f, .add = 1e-6f};
    run_team(1, peak_team, &c); /* calibrate on one thread */
    double per_iter = fn(1, 1.0f, 0.0f, &c.sink[0]);
    c.iters = (long)(c.rate[0] * b->peak_seconds / per_iter) + 1;
    double best = 0;
    for (int s = 0; s < 5 && !interrupted; s++) {
        memset(c.rate, 0, sizeof c.rate);
        run_team(threads, peak_team, &c);
        double rate = 0;
        for (int k = 0; k < MAX_TEAM; k++) rate += c.rate[k];
        if (rate / 1e9 > best) best = rate / 1e9;
    }
    return best;
}

static peak_fn pick_fma(const cpu_features *f, const char **isa) {
#if defined(__x86_64__)
    if (can_avx512(f)) return *isa = "AVX-512 FMA", fma_avx512;
    if (can_avx2(f)) return *isa = "AVX2 FMA", fma_avx2;
#endif
    (void)f;
    *isa = "portable C (mul + add)";
    return fma_portable;
}

/* ------------------------------------------------------ machine limits */

static const char *yes_no(bool v) { return v ? "yes" : "no"; }

static void limits_read(bench *b) {
    size_t bytes = b->n_params * sizeof(float);
    for (int i = 0; i < b->n_threads && !interrupted; i++) {
        int t = b->threads[i];
        progress("read bandwidth, %d thread%s...", t, plural(t));
        figure *f = fig_new(b, "limits", t, "GB/s", false, "read_bw.t%d", t);
        fig_what(f, "streaming read, %.0f MB buffer (the F32 weights), %d "
                    "thread%s", bytes / 1e6, t, plural(t));
        fig_value(f, measure_read(b, bytes, t));
        snprintf(f->limit_note, sizeof f->limit_note, "%s loads%s, best of %d "
                 "warm passes", b->read_isa,
                 strcmp(b->read_isa, "portable") ? " prefetched 4 KiB ahead" : "",
                 read_samples(b));
    }
}

static void limits_fma(bench *b) {
    peak_fn fn = pick_fma(&b->cpu, &b->fma_isa);
    for (int i = 0; i < b->n_threads && !interrupted; i++) {
        int t = b->threads[i];
        progress("fp32 FMA peak, %d thread%s...", t, plural(t));
        figure *f = fig_new(b, "limits", t, "GFLOP/s", false,
                            "fma_f32_peak.t%d", t);
        fig_what(f, "fp32 FMA peak, %d thread%s", t, plural(t));
        b->fma_peak[i] = measure_peak(b, fn, t);
        fig_value(f, b->fma_peak[i]);
        snprintf(f->limit_note, sizeof f->limit_note,
                 "%s, register-resident loop, per thread CPU time", b->fma_isa);
    }
}

static void limits_bf16(bench *b) {
    for (int i = 0; i < b->n_threads && !interrupted; i++) {
        int t = b->threads[i];
        figure *f = fig_new(b, "limits", t, "GFLOP/s", false,
                            "bf16_dot_peak.t%d", t);
        fig_what(f, "AVX512_BF16 vdpbf16ps peak, %d thread%s", t, plural(t));
#if defined(__x86_64__)
        if (can_bf16(&b->cpu)) {
            progress("bf16 dot-product peak, %d thread%s...", t, plural(t));
            b->bf16_peak[i] = measure_peak(b, bf16_avx512, t);
            fig_value(f, b->bf16_peak[i]);
            snprintf(f->limit_note, sizeof f->limit_note,
                     "cpuid: avx512_bf16; register-resident loop");
            continue;
        }
#endif
        fig_na(f, "the CPU has no AVX512_BF16 (cpuid leaf 7.1 EAX bit 5)");
    }
}

static void limits_amx(bench *b) {
    for (int i = 0; i < b->n_threads && !interrupted; i++) {
        int t = b->threads[i];
        figure *f = fig_new(b, "limits", t, "GFLOP/s", false,
                            "amx_bf16_peak.t%d", t);
        fig_what(f, "AMX tdpbf16ps peak, %d thread%s", t, plural(t));
#if defined(__x86_64__)
        const cpu_features *c = &b->cpu;
        if (c->amx_tile && c->amx_bf16 && c->os_amx) {
            if (!amx_request()) {
                fig_na(f, "the CPU has AMX but Linux refused the tile state "
                          "(arch_prctl ARCH_REQ_XCOMP_PERM): %s",
                       strerror(errno));
                continue;
            }
            progress("AMX bf16 peak, %d thread%s...", t, plural(t));
            fig_value(f, measure_peak(b, amx_bf16, t));
            snprintf(f->limit_note, sizeof f->limit_note,
                     "cpuid: amx_tile, amx_bf16; tiles in registers");
            continue;
        }
#endif
        fig_na(f, "no AMX on this CPU (cpuid leaf 7 EDX: AMX-TILE %s, "
                  "AMX-BF16 %s)", yes_no(b->cpu.amx_tile),
               yes_no(b->cpu.amx_bf16));
    }
}

#ifdef GPT2_USE_DNNL
typedef struct {
    int n;
    float *a, *b, *c;
} sgemm_ctx;

/* One n x n x n dnnl_sgemm; returns GFLOP/s, or NaN if it failed. */
static double sgemm_once(void *p) {
    sgemm_ctx *c = p;
    double t0 = now_s();
    dnnl_status_t st = dnnl_sgemm('N', 'N', c->n, c->n, c->n, 1.0f, c->a, c->n,
                                  c->b, c->n, 0.0f, c->c, c->n);
    double dt = now_s() - t0;
    return st == dnnl_success ? 2.0 * c->n * c->n * (double)c->n / dt / 1e9
                              : NAN;
}
#endif

static void limits_sgemm(bench *b) {
    for (int i = 0; i < b->n_threads && !interrupted; i++) {
        int t = b->threads[i], n = b->sgemm_n;
        figure *f = fig_new(b, "limits", t, "GFLOP/s", false, "sgemm.t%d", t);
        fig_what(f, "oneDNN dnnl_sgemm %dx%dx%d, %d thread%s", n, n, n, t,
                 plural(t));
#ifdef GPT2_USE_DNNL
        progress("dnnl_sgemm %d^3, %d thread%s...", n, t, plural(t));
        size_t nn = (size_t)n * n;
        sgemm_ctx c = {n, malloc(nn * 4), malloc(nn * 4), malloc(nn * 4)};
        if (c.a && c.b && c.c) {
            for (size_t k = 0; k < nn; k++)
                c.a[k] = (float)(k % 7) * 0.1f, c.b[k] = (float)(k % 5) * 0.1f;
            gpt2_set_threads(t); /* oneDNN's OpenMP team follows it */
            sgemm_once(&c);
            double best = 0;
            for (int r = 0; r < 3 && !interrupted; r++) {
                double g = sgemm_once(&c);
                if (g > best) best = g;
            }
            fig_value(f, best);
            fig_limit(f, b->fma_peak[i], "fp32 FMA peak, same threads");
        } else {
            fig_na(f, "out of memory");
        }
        free(c.a), free(c.b), free(c.c);
#else
        fig_na(f, "gpt2c was built without oneDNN (GEMM=none)");
#endif
    }
}

static void measure_limits(bench *b) {
    limits_read(b);
    limits_fma(b);
    limits_bf16(b);
    limits_amx(b);
    limits_sgemm(b);
}

/* -------------------------------------------------------- peak RSS */

/* Linux keeps the peak resident size (VmHWM) per process; writing 5 to
   clear_refs resets it to the current size, so each format's peak is its
   own. */
static bool reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return NAN;
    char line[256];
    double kb = NAN;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024 / 1e6;
}

/* ------------------------------------------------------------ decode */

static size_t kv_bytes(const gpt2_config *c, double ctx) {
    return (size_t)(2.0 * c->n_layer * ctx * c->n_embd * sizeof(float));
}

/* Rounds of decode steps, each followed by read passes over what a step
   reads: this VM's memory bandwidth changes by up to 2x from minute to
   minute, and a step and the read it is measured against must see the
   same machine. */
#define DECODE_ROUNDS 4
#define READS_PER_ROUND 8

/* Times b->steps decode steps of s at `threads` threads after one untimed
   step, in DECODE_ROUNDS rounds, each followed by a read pass over the
   weights (wbytes) and the KV cache at the steps' mean context. Returns
   the median ms/step; *pass_ms receives the time of one read pass at the
   median over the rounds of (the round's read pass / its median step), so
   that value / *pass_ms is a ratio measured round by round, and *gbs the
   rate that makes that pass. With pass_ms NULL, no reads: the steps
   alone. */
static double time_steps(bench *b, gpt2_session *s, const int *ids,
                         int threads, size_t wbytes, double *pass_ms,
                         double *gbs, size_t *bytes) {
    const float *logits;
    double v[MAX_REPEATS * 4], round_v[MAX_REPEATS * 4], ratio[DECODE_ROUNDS];
    int steps = b->steps < MAX_REPEATS * 4 ? b->steps : MAX_REPEATS * 4;
    int n;
    if (pass_ms) *pass_ms = *gbs = NAN;
    gpt2_set_threads(threads);
    gpt2_session_tokens(s, &n);
    if (!lib_ok(gpt2_session_step(s, ids[n], &logits), "session_step"))
        return NAN;
    if (pass_ms) *bytes = wbytes + kv_bytes(&b->cfg, n + 1 + (steps + 1) / 2.0);
    int rounds = !pass_ms ? 1 : steps < DECODE_ROUNDS ? steps : DECODE_ROUNDS;
    int done = 0;
    for (int r = 0; r < rounds; r++) {
        int k = steps * (r + 1) / rounds - done;
        for (int i = 0; i < k; i++) {
            double t0 = now_s();
            if (!lib_ok(gpt2_session_step(s, ids[n + 1 + done + i], &logits),
                        "session_step"))
                return NAN;
            v[done + i] = round_v[i] = 1e3 * (now_s() - t0);
        }
        done += k;
        if (!pass_ms) break;
        double rate = measure_read_n(b, *bytes, threads, READS_PER_ROUND);
        ratio[r] = (double)*bytes / (rate * 1e9) * 1e3 / median(round_v, k);
    }
    double value = median(v, steps);
    if (!pass_ms) return value;
    double q = median(ratio, rounds);
    *pass_ms = value * q;
    *gbs = (double)*bytes / (*pass_ms * 1e-3) / 1e9;
    return value;
}

/* Decode at context ctx: prefill so that the thread counts' runs, one
   after another, end at exactly ctx tokens, then time each. */
static int decode_at(bench *b, const gpt2_model *m, gpt2_session *s,
                     const char *fmt_name, const int *ids, int ctx) {
    int per_run = b->steps + 1, pre = ctx - b->n_threads * per_run;
    figure *f[MAX_THREAD_COUNTS];
    for (int i = 0; i < b->n_threads; i++) {
        int t = b->threads[i];
        f[i] = fig_new(b, "decode", t, "ms/token", true, "decode.%s.ctx%d.t%d",
                       fmt_name, ctx, t);
        fig_what(f[i], "decode, %s weights, context %d, %d thread%s",
                 fmt_name, ctx, t, plural(t));
        if (ctx > b->cfg.n_ctx)
            fig_na(f[i], "context %d is past the model's n_ctx %d", ctx,
                   b->cfg.n_ctx);
        else if (pre < 1)
            fig_na(f[i], "context %d is too short for %d thread counts x %d "
                         "steps", ctx, b->n_threads, per_run);
    }
    if (ctx > b->cfg.n_ctx || pre < 1) return CLI_OK;
    const float *logits;
    gpt2_set_threads(max_threads(b));
    gpt2_session_reset(s);
    if (!lib_ok(gpt2_session_prefill(s, ids, pre, &logits), "session_prefill"))
        return CLI_FAIL;
    size_t wbytes = gpt2_model_weight_bytes(m);
    for (int i = 0; i < b->n_threads && check_interrupt(); i++) {
        int t = b->threads[i];
        progress("decode %s, context %d, %d thread%s...", fmt_name, ctx, t,
                 plural(t));
        /* what a step reads: the weights as kept, and K and V of every
           cached position */
        double pass_ms, gbs;
        size_t bytes;
        fig_value(f[i], time_steps(b, s, ids, t, wbytes, &pass_ms, &gbs, &bytes));
        if (!f[i]->available) return CLI_FAIL;
        if (isfinite(pass_ms) && pass_ms > 0)
            fig_limit(f[i], pass_ms,
                      "one read of %.1f MB at %.1f GB/s (read between the steps)",
                      bytes / 1e6, gbs);
    }
    return interrupted ? CLI_FAIL : CLI_OK;
}

/* ------------------------------------------------------------ prefill */

/* FLOPs of the decoder blocks per prompt token over a T-token prompt:
   the matmuls (c_attn 6 C^2, attn.c_proj 2 C^2, c_fc 8 C^2, mlp.c_proj
   8 C^2, at 2 flops per multiply-add) and causal attention (Q K^T and
   A V over T/2 positions on average: 2 C T). The LM head runs for the
   last position only, so it is left out. */
static double prefill_flops_per_token(const gpt2_config *c, int T) {
    double C = c->n_embd, L = c->n_layer;
    return L * (24.0 * C * C + 2.0 * C * T);
}

typedef struct {
    gpt2_session *s;
    const int *ids;
    int n;
    bool failed;
} prefill_ctx;

/* Resets the session and prefills n tokens; returns tokens/s. */
static double prefill_once(void *p) {
    prefill_ctx *c = p;
    const float *logits;
    gpt2_session_reset(c->s);
    double t0 = now_s();
    if (!lib_ok(gpt2_session_prefill(c->s, c->ids, c->n, &logits),
                "session_prefill"))
        c->failed = true;
    return c->failed ? NAN : c->n / (now_s() - t0);
}

static int measure_prefill(bench *b, gpt2_session *s, const char *fmt_name,
                           const int *ids) {
    int T = b->prefill_len;
    double per_tok = prefill_flops_per_token(&b->cfg, T);
    for (int i = 0; i < b->n_threads && check_interrupt(); i++) {
        int t = b->threads[i];
        figure *f = fig_new(b, "prefill", t, "tokens/s", false,
                            "prefill.%s.t%d", fmt_name, t);
        fig_what(f, "prefill, %s weights, %d-token prompt, %d thread%s",
                 fmt_name, T, t, plural(t));
        if (T > b->cfg.n_ctx) {
            fig_na(f, "%d tokens is past the model's n_ctx %d", T,
                   b->cfg.n_ctx);
            continue;
        }
        progress("prefill %s, %d thread%s...", fmt_name, t, plural(t));
        gpt2_set_threads(t);
        prefill_ctx c = {s, ids, T, false};
        prefill_once(&c); /* first touch of the activations */
        fig_value(f, repeat_median(b, prefill_once, &c));
        if (c.failed) return CLI_FAIL;
        double peak = b->fma_peak[i];
        if (peak > 0)
            fig_limit(f, peak * 1e9 / per_tok,
                      "%.0f GFLOP/s fp32 FMA peak / %.3g MFLOP per token "
                      "(%.0f GFLOP/s done)",
                      peak, per_tok / 1e6, f->value * per_tok / 1e9);
    }
    return interrupted ? CLI_FAIL : CLI_OK;
}

static bool in_formats(const gpt2_dtype *list, int n, gpt2_dtype d) {
    for (int i = 0; i < n; i++)
        if (list[i] == d) return true;
    return false;
}

/* Everything one weight format does: decode at each context, prefill
   (when asked for this format), and its peak RSS. The model is loaded
   once, here, and freed before the next format loads. */
static int bench_format(bench *b, gpt2_dtype d, const int *ids) {
    const char *name = gpt2_dtype_name(d);
    bool decode = b->sections & SEC_DECODE;
    bool prefill = (b->sections & SEC_PREFILL) &&
                   in_formats(b->prefill_formats, b->n_prefill_formats, d);
    if (!decode && !prefill) return CLI_OK;
    bool hwm = reset_peak_rss();
    progress("loading the model as %s...", name);
    gpt2_model *m;
    gpt2_status st = gpt2_model_load_as(b->model_path, d, &m);
    if (st != GPT2_OK) {
        /* e.g. a quantized format on a width that is not a multiple of
           32: the format's rows say why, the rest of the bench goes on */
        figure *f = fig_new(b, decode ? "decode" : "prefill", 0, "ms/token",
                            true, "%s.%s", decode ? "decode" : "prefill", name);
        fig_what(f, "%s with %s weights", decode ? "decode" : "prefill", name);
        fig_na(f, "cannot load as %s: %s", name, gpt2_last_error());
        return CLI_OK;
    }
    gpt2_session *s;
    int rc = lib_ok(gpt2_session_new(m, NULL, &s), "session_new") ? CLI_OK
                                                                 : CLI_FAIL;
    for (int c = 0; decode && rc == CLI_OK && c < N_CTXS; c++)
        rc = decode_at(b, m, s, name, ids, b->ctxs[c]);
    if (prefill && rc == CLI_OK) rc = measure_prefill(b, s, name, ids);
    if (decode && rc == CLI_OK) {
        figure *f = fig_new(b, "decode", 0, "MB", true, "rss.%s", name);
        fig_what(f, "peak RSS, %s weights: load, decode%s", name,
                 prefill ? ", prefill" : "");
        /* the read buffer is resident all along: not the format's */
        fig_value(f, peak_rss_mb() - b->read_buf_lines * 64 / 1e6);
        double floor_mb = (gpt2_model_weight_bytes(m) +
                           kv_bytes(&b->cfg, b->cfg.n_ctx)) / 1e6;
        fig_limit(f, floor_mb, "weights as kept + one session's KV cache "
                               "(n_ctx %d)%s", b->cfg.n_ctx,
                  hwm ? "" : "; process peak, not reset per format");
    }
    gpt2_session_free(s);
    gpt2_model_free(m);
    return rc;
}

static int measure_formats(bench *b) {
    int n_ids = b->cfg.n_ctx + 1;
    int *ids = malloc((size_t)n_ids * sizeof *ids);
    if (!ids) return cli_error(CMD, CLI_FAIL, "out of memory");
    fill_tokens(ids, n_ids, b->cfg.vocab_size);
    int rc = CLI_OK;
    for (int i = 0; i < b->n_formats && rc == CLI_OK; i++)
        rc = bench_format(b, b->formats[i], ids);
    /* prefill formats that decode did not load */
    for (int i = 0; i < b->n_prefill_formats && rc == CLI_OK; i++) {
        gpt2_dtype d = b->prefill_formats[i];
        if (in_formats(b->formats, b->n_formats, d)) continue; /* done above */
        unsigned keep = b->sections;
        b->sections &= ~(unsigned)SEC_DECODE;
        rc = bench_format(b, d, ids);
        b->sections = keep;
    }
    free(ids);
    return rc;
}

/* ----------------------------------------------------------- training */

typedef struct {
    gpt2_trainer *tr;
    const int *tokens, *targets;
    bool failed;
} train_ctx;

/* One optimizer step: forward keeping activations, backward, AdamW. */
static double train_once(void *p) {
    train_ctx *c = p;
    float loss;
    double t0 = now_s();
    if (!lib_ok(gpt2_trainer_forward_backward(c->tr, c->tokens, c->targets,
                                              1.0f, &loss),
                "trainer_forward_backward") ||
        !lib_ok(gpt2_trainer_update(c->tr, 1e-4f, NULL), "trainer_update"))
        c->failed = true;
    return c->failed ? NAN : 1e3 * (now_s() - t0);
}

/* FLOPs of one training step: 6 per parameter per token (forward 2,
   backward 4) plus causal attention, forward 2 C T per token per layer
   (as in prefill), times 3 with the backward. */
static double train_flops(const bench *b, int B, int T) {
    double tokens = (double)B * T;
    return tokens * (6.0 * (double)b->n_params +
                     6.0 * b->cfg.n_layer * (double)b->cfg.n_embd * T);
}

/* The training step at (B, T) with matmuls in fp32 or bf16 (mixed
   precision); the limit is the peak of the unit the matmuls use. */
static int train_shape(bench *b, int B, int T, gpt2_dtype dtype) {
    figure *f[MAX_THREAD_COUNTS];
    bool bf16 = dtype == GPT2_DTYPE_BF16;
    const char *dn = bf16 ? "bf16" : "f32";
    for (int i = 0; i < b->n_threads; i++) {
        int t = b->threads[i];
        f[i] = fig_new(b, "train", t, "ms", true, "train.%s.B%dT%d.t%d", dn, B, T,
                       t);
        fig_what(f[i], "training step, %s, B=%d T=%d, %d thread%s",
                 bf16 ? "bf16 matmuls (--dtype bf16)" : "fp32", B, T, t, plural(t));
        if (T > b->cfg.n_ctx)
            fig_na(f[i], "T=%d is past the model's n_ctx %d", T, b->cfg.n_ctx);
    }
    if (T > b->cfg.n_ctx) return CLI_OK;
    gpt2_model *m;
    if (!lib_ok(gpt2_model_load(b->model_path, &m), "model_load"))
        return CLI_FAIL;
    gpt2_train_params tp = gpt2_train_defaults();
    tp.batch_size = B;
    tp.seq_len = T;
    tp.matmul_dtype = dtype;
    gpt2_trainer *tr;
    if (!lib_ok(gpt2_trainer_new(m, &tp, &tr), "trainer_new")) {
        gpt2_model_free(m);
        return CLI_FAIL;
    }
    int n = B * T + 1;
    int *ids = malloc((size_t)n * sizeof *ids);
    int rc = ids ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory");
    if (ids) fill_tokens(ids, n, b->cfg.vocab_size);
    train_ctx c = {tr, ids, ids + 1, false};
    double flops = train_flops(b, B, T);
    /* the first step touches the activations and AdamW's moments */
    gpt2_set_threads(max_threads(b));
    if (rc == CLI_OK) progress("training B=%d T=%d: first step...", B, T);
    if (rc == CLI_OK && !isfinite(train_once(&c))) rc = CLI_FAIL;
    for (int i = 0; i < b->n_threads && rc == CLI_OK && check_interrupt();
         i++) {
        int t = b->threads[i];
        progress("training B=%d T=%d, %d thread%s...", B, T, t, plural(t));
        gpt2_set_threads(t);
        fig_value(f[i], repeat_median(b, train_once, &c));
        if (c.failed) rc = CLI_FAIL;
        double peak = bf16 ? b->bf16_peak[i] : b->fma_peak[i];
        if (peak > 0)
            fig_limit(f[i], flops / (peak * 1e9) * 1e3,
                      "%.1f GFLOP at %.0f GFLOP/s %s peak (%.0f GFLOP/s done)",
                      flops / 1e9, peak, bf16 ? "bf16 dot-product" : "fp32 FMA",
                      flops / (f[i]->value / 1e3) / 1e9);
        else if (bf16)
            snprintf(f[i]->limit_note, sizeof f[i]->limit_note,
                     "no bf16 unit: bf16 is emulated in fp32 (slower than fp32)");
    }
    if (interrupted) rc = CLI_FAIL;
    free(ids);
    gpt2_trainer_free(tr);
    gpt2_model_free(m);
    return rc;
}

static int measure_training(bench *b) {
    static const int shapes[][2] = {{4, 64}, {8, 256}};
    int rc = CLI_OK;
    for (int i = 0; i < 2 && rc == CLI_OK; i++) {
        rc = train_shape(b, shapes[i][0], shapes[i][1], GPT2_DTYPE_F32);
        if (rc == CLI_OK)
            rc = train_shape(b, shapes[i][0], shapes[i][1], GPT2_DTYPE_BF16);
    }
    return rc;
}

/* ---------------------------------------------------------- tokenizer */

/* When no text is given: prose of the kind GPT-2 reads (words, numbers,
   punctuation, contractions, a little non-ASCII), repeated. */
static const char sample_text[] =
    "It was late in the evening when the letter came: three pages, closely "
    "written, and a receipt for 1,250 francs. \"We'll leave on the 14th,\" "
    "she said, \"whatever the weather does.\" Nobody answered. The clock in "
    "the hall struck nine; outside, the café was closing, and a dog barked "
    "twice at the cart going by. In 1887 the town had 4,300 people, a "
    "railway station and two newspapers; by 1913 it had neither paper.\n"
    "Chapter 2. The road north runs for 37 km along the river. It isn't "
    "wide - two carts can't pass - but it's the only one, and everybody "
    "uses it. Prices (in 2019): bread 1.20, milk 0.95, coffee 2.10.\n";

static char *make_text(const bench *b, size_t *len, char *name, size_t cap) {
    if (b->text_path) {
        char *data;
        if (cli_read_input(CMD, b->text_path, &data, len) != CLI_OK)
            return NULL;
        snprintf(name, cap, "%s", b->text_name ? b->text_name : b->text_path);
        return data;
    }
    size_t want = b->quick ? (size_t)128 << 10 : (size_t)2 << 20;
    size_t n = sizeof sample_text - 1, reps = want / n + 1;
    char *data = malloc(reps * n + 1);
    if (!data) return NULL;
    for (size_t i = 0; i < reps; i++) memcpy(data + i * n, sample_text, n);
    data[reps * n] = '\0';
    *len = reps * n;
    snprintf(name, cap, "built-in sample paragraph x %zu (no --text given)",
             reps);
    return data;
}

typedef struct {
    const gpt2_tokenizer *t;
    const char *text;
    int *ids;
    size_t cut[MAX_THREAD_COUNTS + 1]; /* piece i is [cut[i], cut[i+1]) */
    int n_pieces;
    size_t n_ids[MAX_THREAD_COUNTS];
    gpt2_status st[MAX_THREAD_COUNTS];
    int threads;
    double len;
} tok_ctx;

/* Cuts the text into n pieces near equal sizes, each cut at the start of
   a line (where the pre-tokenizer could not join across anyway). */
static void cut_text(tok_ctx *c, size_t len, int n) {
    c->n_pieces = n;
    c->cut[0] = 0;
    for (int i = 1; i < n; i++) {
        size_t p = len * (size_t)i / (size_t)n;
        if (p == 0) p = 1;
        while (p < len && c->text[p - 1] != '\n') p++;
        c->cut[i] = p > c->cut[i - 1] ? p : c->cut[i - 1];
    }
    c->cut[n] = len;
}

static void encode_team(void *p, int id, int n) {
    tok_ctx *c = p;
    for (int i = id; i < c->n_pieces; i += n) {
        size_t lo = c->cut[i], hi = c->cut[i + 1];
        c->st[i] = gpt2_tokenizer_encode(c->t, c->text + lo, hi - lo, 0,
                                         c->ids + lo, hi - lo, &c->n_ids[i]);
    }
}

static double encode_once(void *p) {
    tok_ctx *c = p;
    double t0 = now_s();
    run_team(c->threads, encode_team, c);
    double dt = now_s() - t0;
    for (int i = 0; i < c->n_pieces; i++)
        if (c->st[i] != GPT2_OK) return NAN;
    return c->len / dt / 1e6;
}

/* The installed tokenizer, found as the other commands find it; when
   there is none (a build directory outside the tree), the tokenizer rows
   say so and the rest of the bench goes on. */
static bool find_tokenizer(gpt2_tokenizer **t, char *why, size_t cap) {
    cli_data d;
    char tried[4096];
    if (!cli_find_data(&d, tried, sizeof tried)) {
        snprintf(why, cap, "no tokenizer installed (tried %.160s; set "
                           "GPT2C_DATA or give --tokenizer)", tried);
        return false;
    }
    if (gpt2_tokenizer_load(d.tokenizer, t) != GPT2_OK) {
        snprintf(why, cap, "%.200s", gpt2_last_error());
        return false;
    }
    return true;
}

static int measure_tokenizer(bench *b) {
    gpt2_tokenizer *t;
    char why[256];
    if (b->tok_dir) {
        if (gpt2_tokenizer_load(b->tok_dir, &t) != GPT2_OK)
            return cli_lib_error(CMD, "cannot load the tokenizer in '%s'",
                                 b->tok_dir);
    } else if (!find_tokenizer(&t, why, sizeof why)) {
        progress("tokenizer: %s", why);
        for (int i = 0; i < b->n_threads; i++) {
            int n = b->threads[i];
            figure *f = fig_new(b, "tokenizer", n, "MB/s", false,
                                "tokenizer.t%d", n);
            fig_what(f, "tokenizer encode, %d thread%s", n, plural(n));
            fig_na(f, "%s", why);
        }
        return CLI_OK;
    }
    size_t len = 0;
    char name[512];
    tok_ctx c = {.t = t};
    char *text = make_text(b, &len, name, sizeof name);
    c.text = text;
    c.len = (double)len;
    c.ids = text && len ? malloc(len * sizeof *c.ids) : NULL;
    if (!c.ids) {
        free(text);
        gpt2_tokenizer_free(t);
        return cli_error(CMD, CLI_FAIL, "the tokenizer text is empty, or out "
                                        "of memory");
    }
    for (int i = 0; i < b->n_threads && !interrupted; i++) {
        int n = b->threads[i];
        progress("tokenizer, %d thread%s...", n, plural(n));
        figure *f = fig_new(b, "tokenizer", n, "MB/s", false, "tokenizer.t%d",
                            n);
        c.threads = n;
        cut_text(&c, len, n);
        fig_value(f, repeat_median(b, encode_once, &c));
        size_t tokens = 0;
        for (int k = 0; k < c.n_pieces; k++) tokens += c.n_ids[k];
        fig_what(f, "tokenizer encode, %d thread%s (%d piece%s)", n,
                 plural(n), n, plural(n));
        snprintf(f->limit_note, sizeof f->limit_note,
                 "%.140s: %.2f MB, %zu tokens", name, len / 1e6, tokens);
    }
    free(c.ids);
    free(text);
    gpt2_tokenizer_free(t);
    return interrupted ? CLI_FAIL : CLI_OK;
}

/* --------------------------------------------------------------- load */

typedef struct {
    const char *path;
    gpt2_dtype d;
    int mapped;
    bool failed;
} load_ctx;

static double load_once(void *p) {
    load_ctx *c = p;
    gpt2_model *m;
    double t0 = now_s();
    if (gpt2_model_load_as(c->path, c->d, &m) != GPT2_OK) {
        c->failed = true;
        return NAN;
    }
    double ms = 1e3 * (now_s() - t0);
    c->mapped = gpt2_model_is_mapped(m);
    gpt2_model_free(m);
    return ms;
}

/* The bytes a load reads: the file, or a directory's model.safetensors. */
static size_t model_file_bytes(const char *path) {
    struct stat st;
    char p[4200];
    if (stat(path, &st) != 0) return 0;
    if (S_ISDIR(st.st_mode)) {
        snprintf(p, sizeof p, "%s/model.safetensors", path);
        if (stat(p, &st) != 0) return 0;
    }
    return (size_t)st.st_size;
}

static int measure_load(bench *b) {
    size_t file = model_file_bytes(b->model_path);
    int all = max_threads(b);
    gpt2_set_threads(all);
    for (int i = 0; i < b->n_formats && !interrupted; i++) {
        gpt2_dtype d = b->formats[i];
        const char *name = gpt2_dtype_name(d);
        progress("loading as %s...", name);
        figure *f = fig_new(b, "load", 0, "ms", true, "load.%s", name);
        fig_what(f, "load as %s (gpt2_model_load_as, file in page cache)",
                 name);
        load_ctx c = {b->model_path, d, 0, false};
        load_once(&c); /* the file into the page cache */
        if (c.failed) {
            fig_na(f, "cannot load as %s: %s", name, gpt2_last_error());
            continue;
        }
        fig_value(f, repeat_median(b, load_once, &c));
        if (c.mapped && d == GPT2_DTYPE_F32) {
            /* F32 from an F32 file: nothing is converted or read */
            snprintf(f->limit_note, sizeof f->limit_note,
                     "memory-mapped: pages are read on first use");
        } else if (file && f->available) {
            read_limit(b, f, file, all);
        }
    }
    return interrupted ? CLI_FAIL : CLI_OK;
}

/* --------------------------------------------------------- contention */

/* A process that only burns CPU, as another program on the machine
   would. It dies with us (PDEATHSIG) if we die first. */
static pid_t start_spinner(void) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    volatile double x = 1.0;
    for (;;) x = x * 1.0000001 + 1e-9;
}

static void stop_spinner(pid_t pid) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

static int measure_contention(bench *b) {
    const int threads = 2, ctx = 128 < b->cfg.n_ctx ? 128 : b->cfg.n_ctx;
    figure *f = fig_new(b, "contention", threads, "x", true,
                        "contention.decode.F32.ctx%d.t%d", ctx, threads);
    fig_what(f, "decode F32, context %d, %d threads, beside 1 busy process "
                "(busy / quiet time)", ctx, threads);
    int steps = 2 * b->steps, pre = ctx - 2 * (steps + 1);
    if (pre < 1) {
        fig_na(f, "n_ctx %d is too short for %d steps twice", ctx, steps);
        return CLI_OK;
    }
    progress("contention: decode with %d threads, quiet, then beside a busy "
             "process...", threads);
    gpt2_model *m;
    gpt2_session *s;
    if (!lib_ok(gpt2_model_load(b->model_path, &m), "model_load"))
        return CLI_FAIL;
    if (!lib_ok(gpt2_session_new(m, NULL, &s), "session_new")) {
        gpt2_model_free(m);
        return CLI_FAIL;
    }
    int *ids = malloc((size_t)(ctx + 1) * sizeof *ids);
    int rc = ids ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory");
    double quiet = NAN, busy = NAN;
    const float *logits;
    int keep_steps = b->steps;
    b->steps = steps;
    if (rc == CLI_OK) {
        fill_tokens(ids, ctx + 1, b->cfg.vocab_size);
        gpt2_set_threads(threads);
        if (!lib_ok(gpt2_session_prefill(s, ids, pre, &logits), "prefill"))
            rc = CLI_FAIL;
    }
    if (rc == CLI_OK) quiet = time_steps(b, s, ids, threads, 0, NULL, NULL, NULL);
    if (rc == CLI_OK && isfinite(quiet)) {
        pid_t pid = start_spinner();
        if (pid < 0) {
            rc = cli_error(CMD, CLI_FAIL, "fork: %s", strerror(errno));
        } else {
            usleep(100 * 1000); /* let the scheduler place it */
            busy = time_steps(b, s, ids, threads, 0, NULL, NULL, NULL);
            stop_spinner(pid);
        }
    }
    b->steps = keep_steps;
    if (rc == CLI_OK && isfinite(busy)) {
        fig_value(f, busy / quiet);
        f->target = 2.0;
        char qs[32], bs[32];
        fmt_num(qs, sizeof qs, quiet);
        fmt_num(bs, sizeof bs, busy);
        snprintf(f->limit_note, sizeof f->limit_note,
                 "quiet %s ms/token, busy %s ms/token", qs, bs);
        figure *q = fig_new(b, "contention", threads, "ms/token", true,
                            "contention.quiet_ms.t%d", threads);
        fig_what(q, "decode F32, context %d, %d threads, quiet", ctx, threads);
        fig_value(q, quiet);
        figure *u = fig_new(b, "contention", threads, "ms/token", true,
                            "contention.busy_ms.t%d", threads);
        fig_what(u, "decode F32, context %d, %d threads, beside 1 busy process",
                 ctx, threads);
        fig_value(u, busy);
    } else if (rc == CLI_OK) {
        rc = CLI_FAIL;
    }
    free(ids);
    gpt2_session_free(s);
    gpt2_model_free(m);
    return rc;
}

/* ------------------------------------------------------------ scaling */

/* Speed-up from 1 thread to the most threads measured, for the figures
   where threads matter; the limit is linear scaling. */
static void add_scaling(bench *b) {
    int n = max_threads(b);
    if (n < 2 || thread_index(b, 1) < 0) return;
    static const struct { const char *id, *what; } bases[] = {
        {"read_bw", "streaming read"},
        {"fma_f32_peak", "fp32 FMA peak"},
        {"decode.F32.ctx128", "decode F32, context 128"},
        {"decode.F32.ctx1024", "decode F32, context 1024"},
        {"decode.Q8_0.ctx128", "decode Q8_0, context 128"},
        {"prefill.F32", "prefill F32, 512 tokens"},
        {"train.f32.B4T64", "training step B=4 T=64"},
        {"train.f32.B8T256", "training step B=8 T=256"},
        {"tokenizer", "tokenizer"}};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        char id1[80], idn[80];
        snprintf(id1, sizeof id1, "%s.t1", bases[i].id);
        snprintf(idn, sizeof idn, "%s.t%d", bases[i].id, n);
        const figure *a = fig_find(b, id1), *z = fig_find(b, idn);
        if (!a || !z || !a->available || !z->available) continue;
        double speedup = a->lower_better ? a->value / z->value
                                         : z->value / a->value;
        figure *f = fig_new(b, "scaling", n, "x", false, "scaling.%s.t%d",
                            bases[i].id, n);
        fig_what(f, "%s: speed-up from 1 to %d threads", bases[i].what, n);
        fig_value(f, speedup);
        fig_limit(f, n, "linear");
    }
}

/* ------------------------------------------------------------- output */

static const char *section_title(const char *s) {
    static const struct { const char *id, *title; } t[] = {
        {"limits", "Machine limits"}, {"decode", "Decode (batch 1)"},
        {"prefill", "Prefill"}, {"train", "Training step"},
        {"tokenizer", "Tokenizer"}, {"load", "Load"},
        {"scaling", "Scaling with threads"},
        {"contention", "Decode beside a busy process"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].id, s) == 0) return t[i].title;
    return s;
}

/* "12 ms", but "1.5x". */
static const char *unit_sep(const figure *f) {
    return strcmp(f->unit, "x") == 0 ? "" : " ";
}

static void print_row(FILE *out, const figure *f) {
    if (!f->available) {
        fprintf(out, "| %s | not available | %s | |\n", f->what, f->why);
        return;
    }
    char v[32], l[32];
    fmt_num(v, sizeof v, f->value);
    if (f->target > 0) {
        fmt_num(l, sizeof l, f->target);
        fprintf(out, "| %s | %s%s%s | target <= %s%s%s (%s) | %s |\n",
                f->what, v, unit_sep(f), f->unit, l, unit_sep(f), f->unit,
                f->limit_note, f->value <= f->target ? "within" : "OVER");
    } else if (f->limit > 0) {
        fmt_num(l, sizeof l, f->limit);
        fprintf(out, "| %s | %s%s%s | %s%s%s: %s | %.0f%% |\n", f->what, v,
                unit_sep(f), f->unit, l, unit_sep(f), f->unit, f->limit_note,
                100 * fig_fraction(f));
    } else {
        fprintf(out, "| %s | %s%s%s | %s | |\n", f->what, v, unit_sep(f),
                f->unit, f->limit_note[0] ? f->limit_note : "-");
    }
}

static void gemm_name(char *buf, size_t cap) {
#ifdef GPT2_USE_DNNL
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, cap, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
#else
    snprintf(buf, cap, "gpt2c's portable GEMM");
#endif
}

/* What ran where: the model, threads, CPU features, OpenMP's wait policy
   and the GEMM library, above the tables. */
static void print_header(FILE *out, const bench *b) {
    char cpu[256], gemm[64], count[32];
    cpu_name(cpu, sizeof cpu);
    gemm_name(gemm, sizeof gemm);
    const cpu_features *c = &b->cpu;
    const char *wp = getenv("OMP_WAIT_POLICY");
    fprintf(out, "- model: %s%s (%s parameters: n_layer %d, n_head %d, "
                 "n_embd %d, n_ctx %d, vocab_size %d)\n",
            b->model_arg ? b->model_arg : "random GPT-2 ",
            b->model_arg ? "" : b->quick ? "(--quick)" : b->config,
            cli_fmt_count(b->n_params, count), b->cfg.n_layer, b->cfg.n_head,
            b->cfg.n_embd, b->cfg.n_ctx, b->cfg.vocab_size);
    fprintf(out, "- threads:");
    for (int i = 0; i < b->n_threads; i++)
        fprintf(out, "%s %d", i ? "," : "", b->threads[i]);
    fprintf(out, "; OMP_WAIT_POLICY=%s; GEMM: %s\n", wp ? wp : "unset", gemm);
    fprintf(out, "- CPU: %s, %ld cores; cpuid: AVX2 %s, AVX-512F %s, "
                 "AVX512_BF16 %s, AMX-TILE %s, AMX-BF16 %s\n",
            cpu, sysconf(_SC_NPROCESSORS_ONLN), yes_no(c->avx2),
            yes_no(c->avx512f && c->os_avx512), yes_no(c->avx512_bf16),
            yes_no(c->amx_tile), yes_no(c->amx_bf16));
}

static void print_markdown(FILE *out, const bench *b) {
    print_header(out, b);
    static const char *const order[] = {"limits", "decode", "prefill", "train",
                                        "tokenizer", "load", "scaling",
                                        "contention"};
    for (size_t s = 0; s < sizeof order / sizeof order[0]; s++) {
        bool any = false;
        for (int i = 0; i < b->n_figs; i++) {
            const figure *f = &b->figs[i];
            if (strcmp(f->section, order[s]) != 0) continue;
            if (!any)
                fprintf(out, "\n### %s\n\n| figure | value | limit | fraction "
                             "of limit |\n|---|---:|---|---:|\n",
                        section_title(order[s]));
            any = true;
            print_row(out, f);
        }
    }
}

static cJSON *json_machine(const bench *b) {
    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "cpu", cpu);
    cJSON_AddNumberToObject(m, "cores", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON *isa = cJSON_AddObjectToObject(m, "cpuid");
    const cpu_features *c = &b->cpu;
    cJSON_AddBoolToObject(isa, "fma", c->fma);
    cJSON_AddBoolToObject(isa, "avx2", c->avx2);
    cJSON_AddBoolToObject(isa, "avx512f", c->avx512f);
    cJSON_AddBoolToObject(isa, "avx512_bf16", c->avx512_bf16);
    cJSON_AddBoolToObject(isa, "amx_tile", c->amx_tile);
    cJSON_AddBoolToObject(isa, "amx_bf16", c->amx_bf16);
    cJSON_AddBoolToObject(isa, "os_avx512", c->os_avx512);
    cJSON_AddBoolToObject(isa, "os_amx", c->os_amx);
    cJSON_AddStringToObject(m, "read_kernel", b->read_isa ? b->read_isa : "");
    cJSON_AddStringToObject(m, "fma_kernel", b->fma_isa ? b->fma_isa : "");
    char gemm[64];
    gemm_name(gemm, sizeof gemm);
    cJSON_AddStringToObject(m, "gemm", gemm);
    const char *wp = getenv("OMP_WAIT_POLICY"), *sc = getenv("GOMP_SPINCOUNT");
    cJSON_AddStringToObject(m, "omp_wait_policy", wp ? wp : "unset");
    cJSON_AddStringToObject(m, "gomp_spincount", sc ? sc : "unset");
    return m;
}

static cJSON *json_figure(const figure *f) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", f->id);
    cJSON_AddStringToObject(o, "section", f->section);
    cJSON_AddStringToObject(o, "what", f->what);
    if (f->threads) cJSON_AddNumberToObject(o, "threads", f->threads);
    else cJSON_AddNullToObject(o, "threads");
    cJSON_AddBoolToObject(o, "available", f->available);
    cJSON_AddStringToObject(o, "unit", f->unit);
    if (!f->available) {
        cJSON_AddNullToObject(o, "value");
        cJSON_AddStringToObject(o, "why", f->why);
        return o;
    }
    cJSON_AddNumberToObject(o, "value", f->value);
    double frac = fig_fraction(f);
    if (f->limit > 0) cJSON_AddNumberToObject(o, "limit", f->limit);
    else cJSON_AddNullToObject(o, "limit");
    if (isfinite(frac)) cJSON_AddNumberToObject(o, "fraction", frac);
    else cJSON_AddNullToObject(o, "fraction");
    cJSON_AddStringToObject(o, "note", f->limit_note);
    if (f->target > 0) {
        cJSON_AddNumberToObject(o, "target", f->target);
        cJSON_AddBoolToObject(o, "within_target", f->value <= f->target);
    }
    return o;
}

static char *make_json(const bench *b, double seconds) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "bench", "gpt2c");
    cJSON_AddStringToObject(root, "version", GPT2_VERSION);
    cJSON_AddBoolToObject(root, "quick", b->quick);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "source", b->model_arg ? b->model_arg
                                                          : "random");
    if (!b->model_arg)
        cJSON_AddStringToObject(model, "config",
                                b->quick ? "quick" : b->config);
    cJSON_AddNumberToObject(model, "n_layer", b->cfg.n_layer);
    cJSON_AddNumberToObject(model, "n_head", b->cfg.n_head);
    cJSON_AddNumberToObject(model, "n_embd", b->cfg.n_embd);
    cJSON_AddNumberToObject(model, "n_ctx", b->cfg.n_ctx);
    cJSON_AddNumberToObject(model, "vocab_size", b->cfg.vocab_size);
    cJSON_AddNumberToObject(model, "n_params", (double)b->n_params);
    cJSON_AddItemToObject(root, "machine", json_machine(b));
    cJSON *threads = cJSON_AddArrayToObject(root, "threads");
    for (int i = 0; i < b->n_threads; i++)
        cJSON_AddItemToArray(threads, cJSON_CreateNumber(b->threads[i]));
    cJSON *figs = cJSON_AddArrayToObject(root, "figures");
    for (int i = 0; i < b->n_figs; i++)
        cJSON_AddItemToArray(figs, json_figure(&b->figs[i]));
    cJSON_AddNumberToObject(root, "seconds", seconds);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

static int write_outputs(const bench *b, double seconds) {
    char *json = make_json(b, seconds);
    if (!json) return cli_error(CMD, CLI_FAIL, "out of memory");
    int rc = CLI_OK;
    if (b->json_out) {
        FILE *f = fopen(b->json_out, "w");
        if (!f || fprintf(f, "%s\n", json) < 0 || fclose(f) != 0)
            rc = cli_error(CMD, CLI_FAIL, "cannot write '%s': %s", b->json_out,
                           strerror(errno));
    }
    if (b->json) printf("%s\n", json);
    else print_markdown(stdout, b);
    free(json);
    return rc;
}

/* ------------------------------------------------------- the model */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tmp(bench *b) {
    if (b->tmp_root[0]) nftw(b->tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    b->tmp_root[0] = '\0';
}

/* The --quick shape: seconds for everything, and still every code path
   (the quantized formats need n_embd % 32 == 0; decode at context 1024
   needs n_ctx 1024). A small vocabulary keeps training's logits small. */
static void quick_config(gpt2_config *c) {
    *c = (gpt2_config){.n_layer = 2, .n_head = 2, .n_embd = 64, .n_ctx = 1024,
                       .vocab_size = 4096, .layer_norm_epsilon = 1e-5f};
}

/* b->model_path: --model, or a random model saved as F32 into a new
   temporary directory, so that every format loads from the same file. */
static int prepare_model(bench *b) {
    gpt2_model *m;
    if (b->model_arg) {
        snprintf(b->model_path, sizeof b->model_path, "%s", b->model_arg);
        if (gpt2_model_load(b->model_path, &m) != GPT2_OK)
            return cli_lib_error(CMD, "cannot load model '%s'", b->model_arg);
    } else {
        gpt2_config c;
        if (b->quick) quick_config(&c);
        else if (gpt2_config_preset(b->config, &c) != GPT2_OK)
            return cli_bad_value(CMD, "--config", b->config,
                                 "expected gpt2, gpt2-medium, gpt2-large or "
                                 "gpt2-xl");
        snprintf(b->tmp_root, sizeof b->tmp_root, "%s/gpt2c-bench.XXXXXX",
                 b->tmp_dir);
        if (!mkdtemp(b->tmp_root)) {
            int e = errno;
            b->tmp_root[0] = '\0';
            return cli_error(CMD, CLI_FAIL, "cannot make a directory in '%s': "
                                            "%s", b->tmp_dir, strerror(e));
        }
        snprintf(b->model_path, sizeof b->model_path, "%s/model", b->tmp_root);
        progress("random %s model, saved as F32 in %s...",
                 b->quick ? "tiny" : b->config, b->model_path);
        if (gpt2_model_init(&c, 1, &m) != GPT2_OK)
            return cli_lib_error(CMD, "cannot make the model");
        if (gpt2_model_save(m, b->model_path, GPT2_DTYPE_F32) != GPT2_OK) {
            gpt2_model_free(m);
            return cli_lib_error(CMD, "cannot save the model to '%s'",
                                 b->model_path);
        }
    }
    b->cfg = *gpt2_model_config(m);
    b->n_params = gpt2_model_num_params(m);
    gpt2_model_free(m);
    return CLI_OK;
}

/* ------------------------------------------------------------ options */

enum {
    OPT_JSON = 0x100, OPT_JSON_OUT, OPT_QUICK, OPT_ONLY, OPT_FORMATS,
    OPT_PREFILL_FORMATS, OPT_TEXT, OPT_TEXT_NAME, OPT_TOKENIZER, OPT_STEPS,
    OPT_REPEATS, OPT_TMP, OPT_CONFIG
};

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 bench [options]\n"
"Measures the machine's limits (streaming read bandwidth, fp32 FMA peak,\n"
"bf16 dot-product and AMX peaks where the CPU has them, oneDNN sgemm) and\n"
"gpt2c's figures beside them: decode ms/token at contexts 128 and 1024 for\n"
"every weight format, prefill tokens/s (512 tokens), training step time\n"
"(B=4 T=64, B=8 T=256), tokenizer MB/s, load time, peak RSS, scaling from\n"
"1 thread to all, and 2-thread decode beside a busy process. Prints\n"
"markdown tables; progress goes to stderr. A full run on a 124M model\n"
"takes a few minutes.\n\n"
"  -m, --model DIR        bench this model (default: a random GPT-2 of\n"
"                         --config, saved as F32 to a temporary directory)\n"
"  --config NAME          shape of the random model (default gpt2, 124M)\n"
"  --quick                a tiny random model and few repeats: seconds\n"
"  --threads LIST         thread counts, e.g. 1,2 (default: 1 and all\n"
"                         cores, or the N of 'gpt2 --threads N bench')\n"
"  --only LIST            among decode,prefill,train,tokenizer,load,\n"
"                         contention (default all; the machine limits\n"
"                         always run)\n"
"  --formats LIST         weight formats for decode and load (default\n"
"                         f32,f16,bf16,q8_0,q4_0; --weights D is one)\n"
"  --prefill-formats LIST weight formats for prefill (default f32,bf16)\n"
"  --text FILE            text for the tokenizer (default: a built-in\n"
"                         paragraph, repeated)\n"
"  --text-name NAME       what the text is, for the table\n"
"  --tokenizer DIR        vocab.json + merges.txt (default: the installed\n"
"                         tokenizer)\n"
"  --steps N              decode steps timed per figure (default 16)\n"
"  --repeats N            repeats of the other figures (default 3)\n"
"  --tmp DIR              where the random model is written (default\n"
"                         $TMPDIR or /tmp)\n"
"  --json                 print JSON instead of the tables\n"
"  --json-out FILE        also write the JSON to FILE\n"
"  -h, --help             show this help\n");
}

/* A comma-separated list: its items, in buf (a copy of s); the count, or
   -1 when there are more than max. */
#define MAX_ITEMS 16
static int split_list(const char *s, char *buf, size_t cap, char **items) {
    char *save = NULL;
    int n = 0;
    snprintf(buf, cap, "%s", s);
    for (char *p = strtok_r(buf, ",", &save); p;
         p = strtok_r(NULL, ",", &save)) {
        if (n == MAX_ITEMS) return -1;
        items[n++] = p;
    }
    return n;
}

/* "1,2,4" into b->threads (repeats dropped). */
static int parse_threads(bench *b, const char *s) {
    char buf[256], *items[MAX_ITEMS];
    int n = split_list(s, buf, sizeof buf, items);
    if (n <= 0 || n > MAX_THREAD_COUNTS)
        return cli_usage_error(CMD, "--threads: give 1 to %d counts",
                               MAX_THREAD_COUNTS);
    b->n_threads = 0;
    for (int i = 0; i < n; i++) {
        int t;
        if (cli_opt_int(CMD, "--threads", items[i], 1, MAX_TEAM, &t))
            return CLI_USAGE;
        if (thread_index(b, t) < 0) b->threads[b->n_threads++] = t;
    }
    return CLI_OK;
}

/* "f32,q8_0" into out[*n] (repeats dropped). */
static int parse_formats(const char *opt, const char *s, gpt2_dtype *out,
                         int *n) {
    char buf[256], *items[MAX_ITEMS];
    int k = split_list(s, buf, sizeof buf, items);
    if (k <= 0) return cli_usage_error(CMD, "%s: empty or too long", opt);
    *n = 0;
    for (int i = 0; i < k; i++) {
        gpt2_dtype d;
        if (gpt2_dtype_parse(items[i], &d) != GPT2_OK)
            return cli_bad_value(CMD, opt, items[i],
                                 "expected f32, f16, bf16, q8_0 or q4_0");
        if (!in_formats(out, *n, d)) out[(*n)++] = d; /* at most 5 */
    }
    return CLI_OK;
}

/* "decode,load" into b->sections. */
static int parse_only(bench *b, const char *s) {
    char buf[256], *items[MAX_ITEMS];
    int k = split_list(s, buf, sizeof buf, items);
    if (k <= 0) return cli_usage_error(CMD, "--only: empty or too long");
    b->sections = 0;
    for (int i = 0; i < k; i++) {
        size_t j = 0, n = sizeof section_names / sizeof section_names[0];
        while (j < n && strcmp(items[i], section_names[j]) != 0) j++;
        if (j == n)
            return cli_bad_value(CMD, "--only", items[i], "expected decode, "
                                 "prefill, train, tokenizer, load or "
                                 "contention");
        b->sections |= 1u << j;
    }
    return CLI_OK;
}

static void set_defaults(bench *b) {
    const char *tmp = getenv("TMPDIR");
    memset(b, 0, sizeof *b);
    b->config = "gpt2";
    b->tmp_dir = tmp && *tmp ? tmp : "/tmp";
    b->sections = SEC_ALL;
    static const gpt2_dtype all[] = {GPT2_DTYPE_F32, GPT2_DTYPE_F16,
                                     GPT2_DTYPE_BF16, GPT2_DTYPE_Q8_0,
                                     GPT2_DTYPE_Q4_0};
    memcpy(b->formats, all, sizeof all);
    b->n_formats = MAX_FORMATS;
    b->prefill_formats[0] = GPT2_DTYPE_F32;
    b->prefill_formats[1] = GPT2_DTYPE_BF16;
    b->n_prefill_formats = 2;
    b->steps = 16;
    b->repeats = 3;
    b->ctxs[0] = 128, b->ctxs[1] = 1024;
    b->prefill_len = 512;
}

static int parse_option(bench *b, int c, char **argv) {
    switch (c) {
    case 'm': b->model_arg = optarg; return CLI_OK;
    case OPT_CONFIG: b->config = optarg; return CLI_OK;
    case OPT_JSON: b->json = true; return CLI_OK;
    case OPT_JSON_OUT: b->json_out = optarg; return CLI_OK;
    case OPT_QUICK: b->quick = true; return CLI_OK;
    case CLI_OPT_THREADS: return parse_threads(b, optarg);
    case OPT_ONLY: return parse_only(b, optarg);
    case CLI_OPT_WEIGHTS: /* the global --weights D: decode that format */
    case OPT_FORMATS:
        return parse_formats(c == OPT_FORMATS ? "--formats" : "--weights",
                             optarg, b->formats, &b->n_formats);
    case OPT_PREFILL_FORMATS:
        return parse_formats("--prefill-formats", optarg, b->prefill_formats,
                             &b->n_prefill_formats);
    case OPT_TEXT: b->text_path = optarg; return CLI_OK;
    case OPT_TEXT_NAME: b->text_name = optarg; return CLI_OK;
    case OPT_TOKENIZER: b->tok_dir = optarg; return CLI_OK;
    case OPT_STEPS:
        return cli_opt_int(CMD, "--steps", optarg, 1, MAX_REPEATS * 4,
                           &b->steps);
    case OPT_REPEATS:
        return cli_opt_int(CMD, "--repeats", optarg, 1, MAX_REPEATS,
                           &b->repeats);
    case OPT_TMP: b->tmp_dir = optarg; return CLI_OK;
    default: return cli_common_option(CMD, c, optarg, argv);
    }
}

static int parse_options(int argc, char **argv, bench *b) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"json", no_argument, NULL, OPT_JSON},
        {"json-out", required_argument, NULL, OPT_JSON_OUT},
        {"quick", no_argument, NULL, OPT_QUICK},
        {"only", required_argument, NULL, OPT_ONLY},
        {"formats", required_argument, NULL, OPT_FORMATS},
        {"prefill-formats", required_argument, NULL, OPT_PREFILL_FORMATS},
        {"text", required_argument, NULL, OPT_TEXT},
        {"text-name", required_argument, NULL, OPT_TEXT_NAME},
        {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
        {"steps", required_argument, NULL, OPT_STEPS},
        {"repeats", required_argument, NULL, OPT_REPEATS},
        {"tmp", required_argument, NULL, OPT_TMP},
        {NULL, 0, NULL, 0},
    };
    set_defaults(b);
    /* "all threads": the cores, or what `gpt2 --threads N` asked for */
    int all = gpt2_get_threads();
#ifndef _OPENMP
    all = 1; /* a build without OpenMP runs on one thread */
#endif
    b->threads[0] = 1, b->threads[1] = all;
    b->n_threads = all > 1 ? 2 : 1;
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv,
                                            CLI_SHORTOPTS_PREFIX "m:", opts,
                                            NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return -1;
        }
        rc = parse_option(b, c, argv);
    }
    if (rc != CLI_OK) return rc;
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (b->quick) {
        if (b->steps == 16) b->steps = 4;
        b->repeats = b->repeats < 2 ? b->repeats : 2;
        b->sgemm_n = 256;
        b->peak_seconds = 0.02;
        b->max_seconds = 1;
    } else {
        b->sgemm_n = 2048;
        b->peak_seconds = 0.1;
        b->max_seconds = 10;
    }
    /* fail now, not after a minute of measuring */
    if (b->text_path && access(b->text_path, R_OK) != 0)
        return cli_error(CMD, CLI_FAIL, "cannot read '%s': %s", b->text_path,
                         strerror(errno));
    return CLI_OK;
}

/* ---------------------------------------------------------------- main */

static int run_sections(bench *b) {
    int rc = CLI_OK;
    if (b->sections & (SEC_DECODE | SEC_PREFILL)) rc = measure_formats(b);
    if (rc == CLI_OK && (b->sections & SEC_TRAIN)) rc = measure_training(b);
    if (rc == CLI_OK && (b->sections & SEC_TOKENIZER))
        rc = measure_tokenizer(b);
    if (rc == CLI_OK && (b->sections & SEC_LOAD)) rc = measure_load(b);
    if (rc == CLI_OK && (b->sections & SEC_CONTENTION))
        rc = measure_contention(b);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    bench *b = malloc(sizeof *b);
    if (!b) return cli_error(CMD, CLI_FAIL, "out of memory");
    int rc = parse_options(argc, argv, b);
    if (rc != CLI_OK) {
        free(b);
        return rc < 0 ? CLI_OK : rc;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    b->t_start = now_s();
    detect_cpu(&b->cpu);
    rc = prepare_model(b);
    if (rc == CLI_OK && !alloc_read_buf(b, model_file_bytes(b->model_path)))
        rc = cli_error(CMD, CLI_FAIL, "out of memory for the read buffer");
    if (rc == CLI_OK) {
        measure_limits(b);
        rc = interrupted ? CLI_FAIL : run_sections(b);
    }
    remove_tmp(b);
    free(b->read_buf);
    if (rc == CLI_OK) {
        add_scaling(b);
        double seconds = now_s() - b->t_start;
        progress("done in %.0f s", seconds);
        rc = write_outputs(b, seconds);
    }
    free(b);
    return rc;
}
