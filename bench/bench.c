/* bench.c: gpt2c's benchmark (`make bench`), on the public API only, the
   way an embedding program would use the library. On a 124M GPT-2 made by
   gpt2_model_init it measures, at each thread count:
     - decode ms/token at context 128 (prefill 127 tokens, then time single
       gpt2_session_step calls), against the machine's limit: one pass over
       the weights at the measured memory read bandwidth ("roofline");
     - prefill tokens/s for a 512-token prompt (gpt2_session_prefill);
     - memory read bandwidth over a buffer as large as the weights;
   and once: tokenizer MB/s (single thread) on a text file, model load time
   from F32 (memory-mapped) and F16 (converted) safetensors, peak RSS.
   Every figure is a median over repeats. Prints one markdown table, or
   with --json one JSON object. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, nftw */
#endif
#include "gpt2.h"

#include <errno.h>
#include <ftw.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREAD_COUNTS 8
#define MAX_REPEATS 64

typedef struct {
    const char *config;      /* model preset */
    const char *text_path;   /* tokenizer text, or NULL: no tokenizer row */
    const char *text_name;   /* what the text is, for the table */
    const char *tok_dir;     /* vocab.json + merges.txt */
    const char *tmp_dir;     /* where the load test writes models */
    const char *json_out;    /* also write the JSON here */
    int json;                /* print JSON instead of markdown */
    int threads[MAX_THREAD_COUNTS];
    int n_threads;
    int decode_ctx;          /* context at which decode is timed */
    int decode_steps;        /* steps timed */
    int prefill_len;
    int repeats;
    double max_seconds;      /* stop repeating a measurement after this */
} options;

typedef struct {
    int threads;
    double decode_ms;        /* median ms per decode step */
    double prefill_tok_s;    /* 512-token prompt */
    double bandwidth_gb_s;   /* memory read, GB/s (1e9) */
    double train_ms;         /* one training step, B=4 T=64 */
} per_thread;

typedef struct {
    gpt2_config cfg;
    size_t n_params;
    double weight_bytes;
    per_thread pt[MAX_THREAD_COUNTS];
    double tok_mb_s;         /* -1 when not measured */
    size_t text_bytes, text_tokens;
    double load_f32_ms, load_f16_ms;
    int f32_mapped;
    double rss_mb;           /* peak RSS after the inference runs */
    double total_s;
} results;

/* ---------------------------------------------------------------- small */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

/* A library call that must succeed. */
static void ok(gpt2_status s, const char *what) {
    if (s != GPT2_OK)
        die("%s: %s: %s", what, gpt2_status_str(s), gpt2_last_error());
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* Token ids from a fixed LCG: the same prompt on every run. */
static void fill_tokens(int *ids, int n, int vocab) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int)((x >> 33) % (uint64_t)vocab);
    }
}

/* Runs fn up to o->repeats times (at least once, and no more once
   max_seconds have been spent) and returns the median of what it
   returns. */
typedef double (*measure_fn)(void *ctx);
static double repeat_median(const options *o, measure_fn fn, void *ctx) {
    double v[MAX_REPEATS], start = now_s();
    int n = 0;
    while (n < o->repeats && n < MAX_REPEATS) {
        v[n++] = fn(ctx);
        if (now_s() - start > o->max_seconds) break;
    }
    return median(v, n);
}

/* ------------------------------------------------------------ bandwidth */

typedef struct {
    const uint64_t *buf;
    size_t n;
    int threads;
    uint64_t sink;
} bw_ctx;

/* One read pass over the buffer; returns GB/s. Four accumulators keep the
   loads independent, so the loop is bound by memory, not by the adds. */
static double bw_pass(void *p) {
    bw_ctx *c = p;
    uint64_t total = 0;
    double t0 = now_s();
#pragma omp parallel for num_threads(c->threads) schedule(static) reduction(+ : total)
    for (size_t i = 0; i < c->n; i += 4)
        total += c->buf[i] + c->buf[i + 1] + c->buf[i + 2] + c->buf[i + 3];
    double dt = now_s() - t0;
    c->sink += total;
    return (double)c->n * sizeof(uint64_t) / dt / 1e9;
}

static double measure_bandwidth(const options *o, size_t bytes, int threads) {
    size_t n = bytes / sizeof(uint64_t) / 4 * 4;
    uint64_t *buf = malloc(n * sizeof *buf);
    if (!buf) die("bandwidth: cannot allocate %zu bytes", bytes);
    /* first touch by the same threads that read, so pages are resident */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i;
    bw_ctx c = {buf, n, threads, 0};
    bw_pass(&c); /* warm-up */
    double gb_s = repeat_median(o, bw_pass, &c);
    if (c.sink == 42) fprintf(stderr, " "); /* keep the reads */
    free(buf);
    return gb_s;
}

/* --------------------------------------------------------------- decode */

typedef struct {
    gpt2_session *s;
    const int *ids;
    int n;
} run_ctx;

/* Resets the session and prefills n tokens; returns tokens/s. */
static double prefill_once(void *p) {
    run_ctx *c = p;
    const float *logits;
    gpt2_session_reset(c->s);
    double t0 = now_s();
    ok(gpt2_session_prefill(c->s, c->ids, c->n, &logits), "session_prefill");
    return c->n / (now_s() - t0);
}

/* Prefills ctx-1 tokens, then times each of steps decode steps; returns
   the median ms/step (the context grows from ctx to ctx+steps-1). */
static double measure_decode(gpt2_session *s, const int *ids, int ctx,
                             int steps) {
    const float *logits;
    double v[256];
    if (steps > 256) steps = 256;
    gpt2_session_reset(s);
    ok(gpt2_session_prefill(s, ids, ctx - 1, &logits), "session_prefill");
    for (int i = 0; i < steps; i++) {
        double t0 = now_s();
        ok(gpt2_session_step(s, ids[ctx - 1 + i], &logits), "session_step");
        v[i] = 1e3 * (now_s() - t0);
    }
    return median(v, steps);
}

static void measure_inference(const options *o, const gpt2_model *m,
                              results *r) {
    const gpt2_config *cfg = gpt2_model_config(m);
    int n_ids = o->prefill_len > o->decode_ctx + o->decode_steps
                    ? o->prefill_len
                    : o->decode_ctx + o->decode_steps;
    int *ids = malloc((size_t)n_ids * sizeof *ids);
    if (!ids) die("out of memory");
    fill_tokens(ids, n_ids, cfg->vocab_size);
    gpt2_session_options so = gpt2_session_defaults();
    gpt2_session *s;
    ok(gpt2_session_new(m, &so, &s), "session_new");
    for (int i = 0; i < o->n_threads; i++) {
        per_thread *pt = &r->pt[i];
        pt->threads = o->threads[i];
        gpt2_set_threads(pt->threads);
        fprintf(stderr, "bench: %d thread(s): decode...\n", pt->threads);
        pt->decode_ms = measure_decode(s, ids, o->decode_ctx, o->decode_steps);
        fprintf(stderr, "bench: %d thread(s): prefill...\n", pt->threads);
        run_ctx c = {s, ids, o->prefill_len};
        pt->prefill_tok_s = repeat_median(o, prefill_once, &c);
    }
    gpt2_session_free(s);
    free(ids);
}

/* ------------------------------------------------------------- training */

#define TRAIN_B 4
#define TRAIN_T 64

typedef struct {
    gpt2_trainer *tr;
    const int *tokens, *targets;
} train_ctx;

/* One optimizer step: forward keeping activations, backward, AdamW. */
static double train_once(void *p) {
    train_ctx *c = p;
    double t0 = now_s();
    float loss;
    ok(gpt2_trainer_forward_backward(c->tr, c->tokens, c->targets, 1.0f, &loss),
       "trainer_forward_backward");
    ok(gpt2_trainer_update(c->tr, 1e-4f, NULL), "trainer_update");
    return 1e3 * (now_s() - t0);
}

/* Training writes the weights, so it gets its own copy of the model. */
static void measure_training(const options *o, const gpt2_config *cfg,
                             results *r) {
    gpt2_model *m;
    ok(gpt2_model_init(cfg, 2, &m), "model_init");
    gpt2_train_params tp = gpt2_train_defaults();
    tp.batch_size = TRAIN_B;
    tp.seq_len = TRAIN_T;
    gpt2_trainer *tr;
    ok(gpt2_trainer_new(m, &tp, &tr), "trainer_new");
    int ids[TRAIN_B * TRAIN_T + 1];
    fill_tokens(ids, TRAIN_B * TRAIN_T + 1, cfg->vocab_size);
    train_ctx c = {tr, ids, ids + 1};
    for (int i = 0; i < o->n_threads; i++) {
        gpt2_set_threads(o->threads[i]);
        fprintf(stderr, "bench: %d thread(s): training step...\n", o->threads[i]);
        train_once(&c); /* first touch of the activations and moments */
        r->pt[i].train_ms = repeat_median(o, train_once, &c);
    }
    gpt2_trainer_free(tr);
    gpt2_model_free(m);
}

/* ------------------------------------------------------------ tokenizer */

typedef struct {
    const gpt2_tokenizer *t;
    const char *text;
    size_t len;
    int *ids;
    size_t n_ids;
} tok_ctx;

static double encode_once(void *p) {
    tok_ctx *c = p;
    double t0 = now_s();
    ok(gpt2_tokenizer_encode(c->t, c->text, c->len, 0, c->ids, c->len,
                             &c->n_ids),
       "tokenizer_encode");
    return (double)c->len / (now_s() - t0) / 1e6;
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    if (!buf) die("%s: out of memory", path);
    fclose(f);
    *len = n;
    return buf;
}

static void measure_tokenizer(const options *o, results *r) {
    r->tok_mb_s = -1;
    if (!o->text_path) return;
    fprintf(stderr, "bench: tokenizer...\n");
    gpt2_tokenizer *t;
    ok(gpt2_tokenizer_load(o->tok_dir, &t), o->tok_dir);
    tok_ctx c = {t, NULL, 0, NULL, 0};
    c.text = read_text(o->text_path, &c.len);
    if (c.len == 0) die("%s: empty", o->text_path);
    c.ids = malloc(c.len * sizeof *c.ids); /* a token is >= 1 byte */
    if (!c.ids) die("out of memory");
    gpt2_set_threads(1);
    r->tok_mb_s = repeat_median(o, encode_once, &c);
    r->text_bytes = c.len;
    r->text_tokens = c.n_ids;
    free(c.ids);
    free((char *)c.text);
    gpt2_tokenizer_free(t);
}

/* ----------------------------------------------------------------- load */

typedef struct {
    const char *dir;
    int mapped;
} load_ctx;

static double load_once(void *p) {
    load_ctx *c = p;
    gpt2_model *m;
    double t0 = now_s();
    ok(gpt2_model_load(c->dir, &m), c->dir);
    double ms = 1e3 * (now_s() - t0);
    c->mapped = gpt2_model_is_mapped(m);
    gpt2_model_free(m);
    return ms;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Saves m as F32 and F16 into a temporary directory, frees it (*m = NULL,
   so the loads do not share memory with it), times loading each. */
static void measure_load(const options *o, gpt2_model **m, results *r) {
    char root[4096];
    snprintf(root, sizeof root, "%s/gpt2c-bench.XXXXXX", o->tmp_dir);
    if (!mkdtemp(root)) die("mkdtemp %s: %s", root, strerror(errno));
    char f32[4200], f16[4200];
    snprintf(f32, sizeof f32, "%s/f32", root);
    snprintf(f16, sizeof f16, "%s/f16", root);
    fprintf(stderr, "bench: saving F32 and F16 models into %s...\n", root);
    gpt2_status s1 = gpt2_model_save(*m, f32, GPT2_DTYPE_F32);
    gpt2_status s2 = s1 ? s1 : gpt2_model_save(*m, f16, GPT2_DTYPE_F16);
    gpt2_model_free(*m);
    *m = NULL;
    if (s1 || s2) {
        nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        ok(s1 ? s1 : s2, "model_save");
    }
    fprintf(stderr, "bench: loading...\n");
    gpt2_set_threads(0);
    load_ctx c32 = {f32, 0}, c16 = {f16, 0};
    load_once(&c32); /* the first load reads the file into the page cache */
    r->load_f32_ms = repeat_median(o, load_once, &c32);
    r->f32_mapped = c32.mapped;
    r->load_f16_ms = repeat_median(o, load_once, &c16);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --------------------------------------------------------------- output */

/* Decode time over the time of one read pass over the weights. */
static double decode_vs_roofline(const results *r, const per_thread *pt) {
    double roof_ms = r->weight_bytes / (pt->bandwidth_gb_s * 1e9) * 1e3;
    return pt->decode_ms / roof_ms;
}

/* FLOPs of the decoder blocks per prompt token, averaged over the prompt:
   the matmuls (c_attn 6 C^2, attn.c_proj 2 C^2, c_fc 8 C^2, mlp.c_proj
   8 C^2, times 2 for multiply-add) and causal attention (Q K^T and A V over
   T/2 positions on average: 2 C T). The final logits are left out: a
   prefill may compute them for the last position only. */
static double prefill_gflop_s(const options *o, const results *r,
                              const per_thread *pt) {
    double C = r->cfg.n_embd, L = r->cfg.n_layer, T = o->prefill_len;
    double per_token = L * (24.0 * C * C + 2.0 * C * T);
    return pt->prefill_tok_s * per_token / 1e9;
}

/* s as a JSON string body: quotes, backslashes and control bytes escaped. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void print_markdown(FILE *f, const options *o, const results *r) {
    fprintf(f, "| measure | value | against the machine |\n");
    fprintf(f, "|---|---:|---|\n");
    for (int i = 0; i < o->n_threads; i++) {
        const per_thread *pt = &r->pt[i];
        double x = decode_vs_roofline(r, pt);
        fprintf(f,
                "| decode, context %d, %d thread%s | %.1f ms/token | "
                "%.2fx one weight pass (%.0f%% of memory bandwidth) |\n",
                o->decode_ctx, pt->threads, pt->threads > 1 ? "s" : "",
                pt->decode_ms, x, 100.0 / x);
    }
    for (int i = 0; i < o->n_threads; i++) {
        const per_thread *pt = &r->pt[i];
        fprintf(f, "| prefill, %d-token prompt, %d thread%s | %.0f tokens/s | "
                   "%.1f GFLOP/s in the blocks (matmuls and attention) |\n",
                o->prefill_len, pt->threads, pt->threads > 1 ? "s" : "",
                pt->prefill_tok_s, prefill_gflop_s(o, r, pt));
    }
    for (int i = 0; i < o->n_threads; i++) {
        const per_thread *pt = &r->pt[i];
        double flop = 6.0 * (double)r->n_params * TRAIN_B * TRAIN_T;
        fprintf(f, "| training step, B=%d T=%d, %d thread%s | %.0f ms (%.0f tokens/s) | "
                   "forward + backward + AdamW; %.1f GFLOP/s at 6 x params x tokens |\n",
                TRAIN_B, TRAIN_T, pt->threads, pt->threads > 1 ? "s" : "", pt->train_ms,
                TRAIN_B * TRAIN_T / (pt->train_ms / 1e3), flop / (pt->train_ms / 1e3) / 1e9);
    }
    for (int i = 0; i < o->n_threads; i++) {
        const per_thread *pt = &r->pt[i];
        fprintf(f, "| memory read bandwidth, %d thread%s | %.1f GB/s | "
                   "one pass over the weights (%.0f MB): %.1f ms |\n",
                pt->threads, pt->threads > 1 ? "s" : "", pt->bandwidth_gb_s,
                r->weight_bytes / 1e6,
                r->weight_bytes / (pt->bandwidth_gb_s * 1e9) * 1e3);
    }
    if (r->tok_mb_s >= 0)
        fprintf(f, "| tokenizer encode, 1 thread | %.2f MB/s | %s: %.2f MB, "
                   "%zu tokens (%.2f bytes/token) |\n",
                r->tok_mb_s, o->text_name, r->text_bytes / 1e6,
                r->text_tokens,
                (double)r->text_bytes / (double)(r->text_tokens ? r->text_tokens : 1));
    fprintf(f, "| model load, F32 safetensors | %.1f ms | %s |\n",
            r->load_f32_ms,
            r->f32_mapped ? "memory-mapped: pages are read on first use"
                          : "read and copied (not mapped)");
    fprintf(f, "| model load, F16 safetensors | %.1f ms | converted to F32; "
               "file in the page cache |\n", r->load_f16_ms);
    fprintf(f, "| peak RSS | %.0f MB | 124M model (%.0f MB of F32 weights), "
               "one session, %d-token prompt |\n",
            r->rss_mb, r->weight_bytes / 1e6, o->prefill_len);
}

static void print_json(FILE *f, const options *o, const results *r) {
    fprintf(f, "{\n  \"model\": ");
    json_str(f, o->config);
    fprintf(f, ",\n  \"n_params\": %zu,\n  \"weight_bytes\": %.0f,\n"
               "  \"threads\": [\n", r->n_params, r->weight_bytes);
    for (int i = 0; i < o->n_threads; i++) {
        const per_thread *pt = &r->pt[i];
        fprintf(f, "    {\"threads\": %d, \"decode_ctx\": %d, "
                   "\"decode_ms_per_token\": %.3f, \"prefill_tokens\": %d, "
                   "\"prefill_tokens_per_s\": %.2f, \"bandwidth_gb_s\": %.3f, "
                   "\"roofline_ms\": %.3f, \"decode_vs_roofline\": %.3f, "
                   "\"train_step_ms\": %.3f, \"train_B\": %d, \"train_T\": %d}%s\n",
                pt->threads, o->decode_ctx, pt->decode_ms, o->prefill_len,
                pt->prefill_tok_s, pt->bandwidth_gb_s,
                r->weight_bytes / (pt->bandwidth_gb_s * 1e9) * 1e3,
                decode_vs_roofline(r, pt), pt->train_ms, TRAIN_B, TRAIN_T,
                i + 1 < o->n_threads ? "," : "");
    }
    fprintf(f, "  ],\n");
    if (r->tok_mb_s >= 0) {
        fprintf(f, "  \"tokenizer\": {\"text\": ");
        json_str(f, o->text_name);
        fprintf(f, ", \"bytes\": %zu, \"tokens\": %zu, \"mb_per_s\": %.3f},\n",
                r->text_bytes, r->text_tokens, r->tok_mb_s);
    }
    fprintf(f, "  \"load_f32_ms\": %.3f,\n  \"load_f32_mapped\": %s,\n"
               "  \"load_f16_ms\": %.3f,\n  \"peak_rss_mb\": %.1f,\n"
               "  \"seconds\": %.1f\n}\n",
            r->load_f32_ms, r->f32_mapped ? "true" : "false", r->load_f16_ms,
            r->rss_mb, r->total_s);
}

/* -------------------------------------------------------------- options */

static void usage(FILE *f) {
    fprintf(f,
        "usage: bench [options]\n"
        "  --json              print JSON instead of a markdown table\n"
        "  --json-out FILE     also write the JSON to FILE\n"
        "  --text FILE         text for the tokenizer (none: no tokenizer row)\n"
        "  --text-name NAME    what the text is, for the table (default: FILE)\n"
        "  --tokenizer DIR     vocab.json + merges.txt (default assets/tokenizer)\n"
        "  --threads LIST      thread counts, e.g. 1,2 (default 1,2)\n"
        "  --config NAME       model preset (default gpt2, 124M)\n"
        "  --steps N           decode steps timed (default 32)\n"
        "  --repeats N         repeats of each other measure (default 5)\n"
        "  --tmp DIR           where the load test writes (default $TMPDIR or /tmp)\n");
}

static int parse_int(const char *s, int lo, int hi, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("%s: '%s' is not an integer in [%d, %d]", what, s, lo, hi);
    return (int)v;
}

static void parse_threads(options *o, const char *s) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    o->n_threads = 0;
    for (char *p = strtok(buf, ","); p; p = strtok(NULL, ",")) {
        if (o->n_threads == MAX_THREAD_COUNTS) die("--threads: too many");
        o->threads[o->n_threads++] = parse_int(p, 1, 1024, "--threads");
    }
    if (!o->n_threads) die("--threads: empty list");
}

static void parse_args(options *o, int argc, char **argv) {
    const char *tmp = getenv("TMPDIR");
    *o = (options){.config = "gpt2", .tok_dir = "assets/tokenizer",
                   .tmp_dir = tmp && *tmp ? tmp : "/tmp", .threads = {1, 2},
                   .n_threads = 2, .decode_ctx = 128, .decode_steps = 32,
                   .prefill_len = 512, .repeats = 5, .max_seconds = 10};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--json")) o->json = 1, takes = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage(stdout), exit(0);
        else if (!v) die("%s: missing value, or unknown option (see --help)", a);
        else if (!strcmp(a, "--json-out")) o->json_out = v;
        else if (!strcmp(a, "--text")) o->text_path = v;
        else if (!strcmp(a, "--text-name")) o->text_name = v;
        else if (!strcmp(a, "--tokenizer")) o->tok_dir = v;
        else if (!strcmp(a, "--threads")) parse_threads(o, v);
        else if (!strcmp(a, "--config")) o->config = v;
        else if (!strcmp(a, "--steps")) o->decode_steps = parse_int(v, 1, 256, a);
        else if (!strcmp(a, "--repeats")) o->repeats = parse_int(v, 1, MAX_REPEATS, a);
        else if (!strcmp(a, "--tmp")) o->tmp_dir = v;
        else die("unknown option %s (see --help)", a);
        i += takes;
    }
    if (o->text_path && !o->text_name) o->text_name = o->text_path;
    /* fail now, not after a minute of measuring */
    if (o->text_path && access(o->text_path, R_OK))
        die("--text %s: %s", o->text_path, strerror(errno));
}

int main(int argc, char **argv) {
    options o;
    results r = {0};
    parse_args(&o, argc, argv);
    double t0 = now_s();

    gpt2_config cfg;
    ok(gpt2_config_preset(o.config, &cfg), "config_preset");
    if (o.decode_ctx + o.decode_steps > cfg.n_ctx || o.prefill_len > cfg.n_ctx)
        die("context %d too short for the measures", cfg.n_ctx);
    fprintf(stderr, "bench: %s model from gpt2_model_init...\n", o.config);
    gpt2_model *m;
    ok(gpt2_model_init(&cfg, 1, &m), "model_init");
    r.cfg = cfg;
    r.n_params = gpt2_model_num_params(m);
    r.weight_bytes = (double)r.n_params * sizeof(float);

    measure_inference(&o, m, &r);
    r.rss_mb = peak_rss_mb(); /* before the other measures add buffers */
    measure_training(&o, &cfg, &r);
    measure_tokenizer(&o, &r);
    measure_load(&o, &m, &r);
    for (int i = 0; i < o.n_threads; i++) {
        fprintf(stderr, "bench: memory bandwidth, %d thread(s)...\n",
                o.threads[i]);
        r.pt[i].bandwidth_gb_s =
            measure_bandwidth(&o, (size_t)r.weight_bytes, o.threads[i]);
    }
    r.total_s = now_s() - t0;
    fprintf(stderr, "bench: done in %.0f s\n", r.total_s);

    if (o.json) print_json(stdout, &o, &r);
    else print_markdown(stdout, &o, &r);
    if (o.json_out) {
        FILE *f = fopen(o.json_out, "w");
        if (!f) die("%s: %s", o.json_out, strerror(errno));
        print_json(f, &o, &r);
        if (fclose(f)) die("%s: %s", o.json_out, strerror(errno));
    }
    return 0;
}
