/* ref_check.c: gpt2c against the PyTorch reference (tests/reference/).
 *
 *   ref_check GOLDEN_DIR     every GOLDEN_DIR/<model>/ with a
 *                            golden.safetensors (make_golden.py writes
 *                            them): load the model, run gpt2_batch_forward
 *                            and compare logits and loss; run a KV-cache
 *                            session (prefill, then one step per token)
 *                            and compare its logits with row 0's
 *   ref_check --save OUTDIR  the other direction: a gpt2_model_init model,
 *                            saved in F32, BF16 and F16 to OUTDIR/<dtype>/,
 *                            reloaded, run on a fixed batch; its tokens and
 *                            logits (and its config) go to
 *                            OUTDIR/c_logits.safetensors for
 *                            tests/reference/check_c_model.py
 *
 * Tolerance (DESIGN.md): |c - golden| <= 1e-4 * max(1, max |golden|) for
 * logits, 1e-4 relative for the loss. Prints per model the max absolute
 * difference and that difference relative to the scale above; exits
 * non-zero on any failure.
 */
#include "golden_dirs.h"
#include "gpt2.h"
#include "internal.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOL 1e-4
#define PREFILL 5 /* tokens the session prefills before stepping */

static int n_fail;

static void fail(const char *what, const char *model) {
    fprintf(stderr, "FAIL %s: %s\n", model, what);
    n_fail++;
}

static void fail_status(const char *call, const char *model) {
    fprintf(stderr, "FAIL %s: %s: %s\n", model, call, gpt2_last_error());
    n_fail++;
}

/* ------------------------------------------------------ comparing floats */

/* The largest differences between got and want (n floats each). */
typedef struct {
    double max_abs;   /* max |got - want| */
    double scale;     /* max(1, max |want|): what the tolerance scales by */
    int nonfinite;    /* got has NaN or Inf */
} diff_stats;

static void diff_init(diff_stats *d) {
    d->max_abs = 0;
    d->scale = 1;
    d->nonfinite = 0;
}

static void diff_add(diff_stats *d, const float *got, const float *want,
                     size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) d->nonfinite++;
        double e = fabs((double)got[i] - (double)want[i]);
        if (e > d->max_abs || isnan(e)) d->max_abs = isnan(e) ? INFINITY : e;
        if (fabs(want[i]) > d->scale) d->scale = fabs(want[i]);
    }
}

static double diff_rel(const diff_stats *d) { return d->max_abs / d->scale; }

static int diff_ok(const diff_stats *d) {
    return d->nonfinite == 0 && d->max_abs <= TOL * d->scale;
}

/* ------------------------------------------------------- golden tensors */

/* One batch of golden.safetensors: tokens<sfx>, targets<sfx>,
   logits<sfx>, loss<sfx>. */
typedef struct {
    int B, T, V;
    int *tokens, *targets;  /* (B, T) */
    float *logits;          /* (B, T, V) */
    float loss;
} golden_batch;

static void golden_free(golden_batch *g) {
    free(g->tokens);
    free(g->targets);
    free(g->logits);
    memset(g, 0, sizeof *g);
}

/* The tensor name+sfx if it has dtype and ndim, else NULL (with a message). */
static const gpt2__st_tensor *find_tensor(const gpt2__st_file *f,
                                          const char *name, const char *sfx,
                                          gpt2__st_dtype dtype, int ndim) {
    char full[64];
    snprintf(full, sizeof full, "%s%s", name, sfx);
    const gpt2__st_tensor *t = gpt2__st_find(f, full);
    if (!t) return NULL;
    if (t->dtype != dtype || t->ndim != ndim) {
        fprintf(stderr, "golden: %s: dtype %s ndim %d, expected %s ndim %d\n",
                full, gpt2__st_dtype_name(t->dtype), t->ndim,
                gpt2__st_dtype_name(dtype), ndim);
        return NULL;
    }
    return t;
}

/* I32 data copied out of the mapping (which need not be aligned for int). */
static int *copy_i32(const gpt2__st_file *f, const gpt2__st_tensor *t) {
    size_t bytes = t->end - t->begin;
    int *out = malloc(bytes ? bytes : 1);
    if (out) memcpy(out, f->data + t->begin, bytes);
    return out;
}

static float *copy_f32(const gpt2__st_file *f, const gpt2__st_tensor *t) {
    size_t n = (t->end - t->begin) / 4;
    float *out = malloc((n ? n : 1) * sizeof(float));
    if (out && gpt2__st_read_f32(f, t, out) != GPT2_OK) {
        free(out);
        return NULL;
    }
    return out;
}

/* Reads batch sfx; returns 0 if absent, 1 if read, -1 if malformed. */
static int golden_read(const gpt2__st_file *f, const char *sfx,
                       golden_batch *g) {
    memset(g, 0, sizeof *g);
    const gpt2__st_tensor *tok = find_tensor(f, "tokens", sfx, GPT2__ST_I32, 2);
    const gpt2__st_tensor *tgt = find_tensor(f, "targets", sfx, GPT2__ST_I32, 2);
    const gpt2__st_tensor *lg = find_tensor(f, "logits", sfx, GPT2__ST_F32, 3);
    const gpt2__st_tensor *ls = find_tensor(f, "loss", sfx, GPT2__ST_F32, 1);
    if (!tok && !tgt && !lg && !ls) return 0;
    if (!tok || !tgt || !lg || !ls) return -1;
    g->B = (int)tok->shape[0];
    g->T = (int)tok->shape[1];
    g->V = (int)lg->shape[2];
    if (tgt->shape[0] != g->B || tgt->shape[1] != g->T ||
        lg->shape[0] != g->B || lg->shape[1] != g->T || ls->shape[0] != 1)
        return -1;
    g->tokens = copy_i32(f, tok);
    g->targets = copy_i32(f, tgt);
    g->logits = copy_f32(f, lg);
    float *loss = copy_f32(f, ls);
    if (!g->tokens || !g->targets || !g->logits || !loss) {
        free(loss);
        golden_free(g);
        return -1;
    }
    g->loss = loss[0];
    free(loss);
    return 1;
}

/* ------------------------------------------------------ the checks */

/* gpt2_batch_forward on the golden batch against its logits and loss. */
static void check_batch(const gpt2_model *m, const golden_batch *g,
                        const char *label) {
    gpt2_batch *b = NULL;
    const float *logits = NULL;
    float loss = NAN;
    if (gpt2_batch_new(m, g->B, g->T, &b) != GPT2_OK) {
        fail_status("gpt2_batch_new", label);
        return;
    }
    if (gpt2_batch_forward(b, g->tokens, g->targets, &logits, &loss) !=
        GPT2_OK) {
        fail_status("gpt2_batch_forward", label);
        gpt2_batch_free(b);
        return;
    }
    diff_stats d;
    diff_init(&d);
    diff_add(&d, logits, g->logits, (size_t)g->B * g->T * g->V);
    double loss_abs = fabs((double)loss - g->loss);
    double loss_rel = loss_abs / fabs(g->loss);
    int ok_logits = diff_ok(&d);
    int ok_loss = isfinite(loss) && loss_rel <= TOL;
    printf("  %-22s B=%d T=%-3d logits max abs %.2e rel %.2e   "
           "loss %.6f vs %.6f abs %.2e rel %.2e  %s\n",
           label, g->B, g->T, d.max_abs, diff_rel(&d), loss, g->loss,
           loss_abs, loss_rel, ok_logits && ok_loss ? "ok" : "FAIL");
    if (!ok_logits) fail("batch logits differ from golden", label);
    if (!ok_loss) fail("batch loss differs from golden", label);
    /* without targets: the same logits, and the header's NaN loss */
    if (gpt2_batch_forward(b, g->tokens, NULL, &logits, &loss) != GPT2_OK) {
        fail_status("gpt2_batch_forward (no targets)", label);
    } else {
        diff_stats d2;
        diff_init(&d2);
        diff_add(&d2, logits, g->logits, (size_t)g->B * g->T * g->V);
        if (!diff_ok(&d2) || !isnan(loss))
            fail("forward without targets: logits differ or loss not NaN",
                 label);
    }
    gpt2_batch_free(b);
}

/* A session over row 0 of g: prefill PREFILL tokens, then one step per
   token; the logits after each must be golden's at that position.
   kv_cache 0 recomputes the window each step (the slow reference path). */
static void check_session(const gpt2_model *m, const golden_batch *g,
                          int kv_cache, const char *label) {
    gpt2_session_options opt = gpt2_session_defaults();
    opt.kv_cache = kv_cache;
    gpt2_session *s = NULL;
    if (gpt2_session_new(m, &opt, &s) != GPT2_OK) {
        fail_status("gpt2_session_new", label);
        return;
    }
    int np = g->T < PREFILL ? g->T : PREFILL;
    const float *logits = NULL;
    diff_stats d;
    diff_init(&d);
    int pos = np - 1, ok = 1;
    if (gpt2_session_prefill(s, g->tokens, np, &logits) != GPT2_OK) {
        fail_status("gpt2_session_prefill", label);
        ok = 0;
    }
    while (ok) {
        /* golden logits of row 0 at pos */
        diff_add(&d, logits, g->logits + (size_t)pos * g->V, (size_t)g->V);
        if (++pos == g->T) break;
        if (gpt2_session_step(s, g->tokens[pos], &logits) != GPT2_OK) {
            fail_status("gpt2_session_step", label);
            ok = 0;
        }
    }
    int n = 0;
    gpt2_session_tokens(s, &n);
    if (ok && n != g->T) {
        fprintf(stderr, "  session holds %d tokens, expected %d\n", n, g->T);
        ok = 0;
    }
    if (ok && gpt2_session_slides(s) != 0) {
        fprintf(stderr, "  session slid with %d <= n_ctx tokens\n", n);
        ok = 0;
    }
    ok = ok && diff_ok(&d);
    printf("  %-22s prefill %d + %d steps     max abs %.2e rel %.2e  %s\n",
           kv_cache ? "session (KV cache)" : "session (recompute)", np,
           g->T - np, d.max_abs, diff_rel(&d), ok ? "ok" : "FAIL");
    if (!ok) fail(kv_cache ? "KV-cache session differs from golden"
                           : "recompute session differs from golden", label);
    gpt2_session_free(s);
}

/* Golden batch sfx of dir's model, if the file has it. */
static void check_golden_batch(const gpt2_model *m, const gpt2__st_file *f,
                               const char *name, const char *sfx,
                               int with_session) {
    golden_batch g;
    char label[96];
    snprintf(label, sizeof label, "%s%s%s", name, *sfx ? "/batch" : "", sfx);
    int r = golden_read(f, sfx, &g);
    if (r == 0) {
        if (!*sfx) fail("golden.safetensors has no tokens/logits", name);
        return;
    }
    const gpt2_config *c = gpt2_model_config(m);
    if (r < 0 || g.V != c->vocab_size || g.T > c->n_ctx || g.T < 1 ||
        g.B < 1) {
        fail("golden batch malformed or does not fit the model", label);
        if (r > 0) golden_free(&g);
        return;
    }
    check_batch(m, &g, label);
    if (with_session) {
        check_session(m, &g, 1, label);
        check_session(m, &g, 0, label);
    }
    golden_free(&g);
}

static void check_model_dir(const char *golden_dir, const char *name) {
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/%s", golden_dir, name);
    int before = n_fail;
    gpt2_model *m = NULL;
    gpt2__st_file f;
    memset(&f, 0, sizeof f);
    if (gpt2_model_load(dir, &m) != GPT2_OK) {
        fail_status("gpt2_model_load", name);
        return;
    }
    const gpt2_config *c = gpt2_model_config(m);
    printf("%s: L=%d H=%d C=%d n_ctx=%d V=%d eps=%g, file %s\n", name,
           c->n_layer, c->n_head, c->n_embd, c->n_ctx, c->vocab_size,
           c->layer_norm_epsilon, gpt2_dtype_name(gpt2_model_file_dtype(m)));
    /* make_golden.py copies GPT-2's tokenizer beside the "tok" model */
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    if (gpt2__file_exists(path) && !gpt2_model_tokenizer(m))
        fail("the directory has vocab.json but the model no tokenizer", name);
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    if (gpt2__st_open(path, &f) != GPT2_OK) {
        fail_status("gpt2__st_open golden.safetensors", name);
    } else {
        check_golden_batch(m, &f, name, "", 1);
        check_golden_batch(m, &f, name, "2", 0);
        gpt2__st_close(&f);
    }
    printf("%s: %s\n", name, n_fail == before ? "PASS" : "FAIL");
    gpt2_model_free(m);
}


static int run_golden(const char *golden_dir) {
    char **names;
    int n = golden_models(golden_dir, "golden.safetensors", &names);
    if (n <= 0) {
        fprintf(stderr, "ref_check: no model directories with "
                        "golden.safetensors under %s\n", golden_dir);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        check_model_dir(golden_dir, names[i]);
        free(names[i]);
    }
    free(names);
    printf("ref_check golden: %d models, %s\n", n,
           n_fail ? "FAIL" : "PASS");
    return n_fail ? 1 : 0;
}

/* ------------------------------------------------- the other direction */

/* Odd sizes, a head count other than 12 and an epsilon other than the
   default, so that config.json must carry each. */
#define SAVE_B 2
#define SAVE_T 23 /* all of n_ctx */
static const gpt2_config SAVE_CFG = {
    .n_layer = 2, .n_head = 5, .n_embd = 40, .n_ctx = SAVE_T,
    .vocab_size = 101, .layer_norm_epsilon = 1e-4f};
#define SAVE_SEED 1234

/* gpt2_model_init leaves biases at 0 and norms at 1/0, which a writer
   that dropped them would still reproduce: give every 1-D tensor random
   values (the model is ours until it is shared). */
static void perturb_vectors(gpt2_model *m) {
    uint64_t x = 0x5eed;
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2__tensor_spec *s = &m->specs[i];
        if (s->ndim != 1) continue;
        int is_norm_w = strstr(s->name, "ln_") && strstr(s->name, ".weight");
        for (size_t j = 0; j < s->numel; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            double u = (double)(x >> 11) / 9007199254740992.0 - 0.5; /* +-.5 */
            m->tensor[i][j] = (float)(is_norm_w ? 1.0 + 0.4 * u : 0.1 * u);
        }
    }
}

/* Saves m in dtype to outdir/<dtype name>, reloads it and runs the fixed
   batch; returns a malloc'd copy of the logits (B*T*V), or NULL. */
static float *save_reload_forward(const gpt2_model *m, const char *outdir,
                                  gpt2_dtype dtype, const int *tokens, int T) {
    char dir[2048];
    const char *dn = gpt2_dtype_name(dtype);
    snprintf(dir, sizeof dir, "%s/%s", outdir, dn);
    gpt2_model *m2 = NULL;
    gpt2_batch *b = NULL;
    const float *logits = NULL;
    float *copy = NULL;
    size_t n = (size_t)SAVE_B * T * SAVE_CFG.vocab_size;
    if (gpt2_model_save(m, dir, dtype) != GPT2_OK)
        fail_status("gpt2_model_save", dn);
    else if (gpt2_model_load(dir, &m2) != GPT2_OK)
        fail_status("gpt2_model_load (reload)", dn);
    else if (gpt2_model_file_dtype(m2) != dtype)
        fail("reloaded model reports another file dtype", dn);
    else if (gpt2_batch_new(m2, SAVE_B, T, &b) != GPT2_OK)
        fail_status("gpt2_batch_new", dn);
    else if (gpt2_batch_forward(b, tokens, NULL, &logits, NULL) != GPT2_OK)
        fail_status("gpt2_batch_forward", dn);
    else if ((copy = malloc(n * sizeof(float))))
        memcpy(copy, logits, n * sizeof(float));
    gpt2_batch_free(b);
    gpt2_model_free(m2);
    return copy;
}

/* The F32 reload must give exactly the logits of the model in memory. */
static void check_f32_roundtrip(const gpt2_model *m, const int *tokens, int T,
                                const float *reloaded) {
    gpt2_batch *b = NULL;
    const float *logits = NULL;
    size_t n = (size_t)SAVE_B * T * SAVE_CFG.vocab_size;
    if (gpt2_batch_new(m, SAVE_B, T, &b) != GPT2_OK ||
        gpt2_batch_forward(b, tokens, NULL, &logits, NULL) != GPT2_OK) {
        fail_status("forward of the model in memory", "F32");
    } else if (memcmp(logits, reloaded, n * sizeof(float)) != 0) {
        fail("F32 save + load changed the logits", "F32");
    } else {
        printf("  F32 save + load gives bit-identical logits\n");
    }
    gpt2_batch_free(b);
}

static int run_save(const char *outdir) {
    const int T = SAVE_T;
    const gpt2_dtype dtypes[3] = {GPT2_DTYPE_F32, GPT2_DTYPE_BF16,
                                  GPT2_DTYPE_F16};
    const char *names[3] = {"logits_f32", "logits_bf16", "logits_f16"};
    int tokens[SAVE_B * SAVE_T];
    float tokens_f[SAVE_B * SAVE_T];
    float *logits[3] = {NULL, NULL, NULL};
    gpt2_model *m = NULL;
    mkdir(outdir, 0777);
    if (gpt2_model_init(&SAVE_CFG, SAVE_SEED, &m) != GPT2_OK) {
        fail_status("gpt2_model_init", "save");
        return 1;
    }
    perturb_vectors(m);
    for (int i = 0; i < SAVE_B * T; i++) {
        tokens[i] = (i * 37 + 11) % SAVE_CFG.vocab_size;
        tokens_f[i] = (float)tokens[i];
    }
    for (int k = 0; k < 3; k++) {
        logits[k] = save_reload_forward(m, outdir, dtypes[k], tokens, T);
        printf("  %s: saved to %s/%s, reloaded, forward %s\n",
               gpt2_dtype_name(dtypes[k]), outdir, gpt2_dtype_name(dtypes[k]),
               logits[k] ? "done" : "FAILED");
    }
    if (logits[0]) check_f32_roundtrip(m, tokens, T, logits[0]);
    if (logits[0] && logits[1] && logits[2]) {
        /* the config the saved files must declare */
        const float cfg_f[6] = {
            SAVE_CFG.n_layer, SAVE_CFG.n_head, SAVE_CFG.n_embd,
            SAVE_CFG.n_ctx, SAVE_CFG.vocab_size, SAVE_CFG.layer_norm_epsilon};
        gpt2__st_out out[5] = {
            {.name = "tokens", .ndim = 2, .shape = {SAVE_B, T}, .data = tokens_f},
            {.name = "config", .ndim = 1, .shape = {6, 0}, .data = cfg_f}};
        for (int k = 0; k < 3; k++)
            out[k + 2] = (gpt2__st_out){.name = names[k], .ndim = 2,
                                        .shape = {(int64_t)SAVE_B * T,
                                                  SAVE_CFG.vocab_size},
                                        .data = logits[k]};
        char path[4096];
        snprintf(path, sizeof path, "%s/c_logits.safetensors", outdir);
        if (gpt2__st_write(path, out, 5, GPT2_DTYPE_F32) != GPT2_OK)
            fail_status("gpt2__st_write c_logits.safetensors", "save");
        else
            printf("  wrote %s (tokens (%d, %d) as floats; logits "
                   "(%d, %d) per dtype)\n", path, SAVE_B, T, SAVE_B * T,
                   SAVE_CFG.vocab_size);
    }
    for (int k = 0; k < 3; k++) free(logits[k]);
    gpt2_model_free(m);
    printf("ref_check save: %s\n", n_fail ? "FAIL" : "done");
    return n_fail ? 1 : 0;
}

int main(int argc, char **argv) {
    /* failures go to stderr: keep them in order with the table in logs */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "--save") == 0) return run_save(argv[2]);
    if (argc == 2 && argv[1][0] != '-') return run_golden(argv[1]);
    fprintf(stderr, "usage: ref_check GOLDEN_DIR\n"
                    "       ref_check --save OUTDIR\n");
    return 2;
}
