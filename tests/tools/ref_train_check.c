/* ref_train_check.c: gpt2c's trainer against the PyTorch reference.
 *
 *   ref_train_check GOLDEN_DIR
 *
 * For every GOLDEN_DIR/<model>/ with a train_golden.safetensors
 * (tests/reference/make_train_golden.py writes them; its header lists the
 * tensors), loads the model with gpt2_model_load, makes a trainer with
 * the golden hyperparameters and compares:
 *   - the parameter block's layout with gpt2_model_tensor's order
 *   - loss and every gradient after one forward_backward (scale 1)
 *   - gradient accumulation: two micro-batches at scale 0.5 against the
 *     gradient of the mean over both
 *   - 10 steps of forward_backward + update (clip, AdamW, schedule): each
 *     step's learning rate, loss and gradient norm, then the parameters
 *     and AdamW's m and v after the last step
 *   - gpt2_train_lr on several schedules, step by step
 *
 * Tolerances (DESIGN.md): losses and gradient norms 1e-4 relative; a
 * tensor (gradient, parameters, m, v) passes when ||c - golden||_2 <=
 * 1e-4 ||golden||_2; learning rates 1e-5 relative. Prints per model the
 * worst tensor of each kind with its relative error, and every failure
 * (naming the golden tensor) on stderr; exits non-zero on any failure.
 */
#include "golden_dirs.h"
#include "gpt2.h"
#include "internal.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOL 1e-4
#define LR_TOL 1e-5
#define N_HPARAMS 10

static int n_fail;

static void fail(const char *model, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "FAIL %s: ", model);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    n_fail++;
}

static double rel_err(double got, double want) {
    if (!isfinite(got)) return INFINITY;
    return fabs(got - want) / fmax(fabs(want), 1e-30);
}

/* ------------------------------------------------------ golden tensors */

typedef struct {
    const char *model;   /* for messages */
    gpt2__st_file f;
} golden;

/* Tensor name with dtype and numel elements (ndim/shape not otherwise
   checked: callers pass the product they need), or NULL with a failure. */
static const gpt2__st_tensor *golden_find(golden *g, const char *name,
                                          gpt2__st_dtype dtype, size_t numel) {
    const gpt2__st_tensor *t = gpt2__st_find(&g->f, name);
    if (!t) {
        fail(g->model, "golden has no tensor %s", name);
        return NULL;
    }
    size_t n = (t->end - t->begin) / gpt2__st_dtype_size(t->dtype);
    if (t->dtype != dtype || n != numel) {
        fail(g->model, "golden %s: dtype %s with %zu elements, expected %s "
             "with %zu", name, gpt2__st_dtype_name(t->dtype), n,
             gpt2__st_dtype_name(dtype), numel);
        return NULL;
    }
    return t;
}

/* A malloc'd float copy of the F32 tensor name (numel floats), or NULL. */
static float *golden_f32(golden *g, const char *name, size_t numel) {
    const gpt2__st_tensor *t = golden_find(g, name, GPT2__ST_F32, numel);
    if (!t) return NULL;
    float *out = malloc((numel ? numel : 1) * sizeof(float));
    if (out && gpt2__st_read_f32(&g->f, t, out) != GPT2_OK) {
        free(out);
        return NULL;
    }
    return out;
}

/* A malloc'd copy of the I32 tensor name (numel ints), or NULL. */
static int *golden_i32(golden *g, const char *name, size_t numel) {
    const gpt2__st_tensor *t = golden_find(g, name, GPT2__ST_I32, numel);
    if (!t) return NULL;
    int *out = malloc((numel ? numel : 1) * sizeof(int));
    if (out) memcpy(out, g->f.data + t->begin, numel * sizeof(int));
    return out;
}

/* ------------------------------------------------- comparing tensors */

/* Sums over [from, to) of (got - want)^2 and want^2; 0 if got is finite
   there, -1 if not. */
static int sq_sums(const float *got, const float *want, size_t from,
                   size_t to, double *d2, double *w2) {
    for (size_t i = from; i < to; i++) {
        if (!isfinite(got[i])) return -1;
        double d = (double)got[i] - want[i];
        *d2 += d * d;
        *w2 += (double)want[i] * want[i];
    }
    return 0;
}

/* ||got - want||_2 / ||want||_2 (the absolute norm when want is 0). */
static double tensor_rel_err(const float *got, const float *want, size_t n) {
    double d2 = 0, w2 = 0;
    if (sq_sums(got, want, 0, n, &d2, &w2)) return INFINITY;
    return w2 > 0 ? sqrt(d2 / w2) : sqrt(d2);
}

/* The key bias (the middle third of c_attn.bias) has a gradient that is
   zero in exact arithmetic: q . b_k adds the same amount to every score
   of a query, which softmax ignores. In float64 the reference's key biases
   do not move; in float32 (gpt2c, and PyTorch alike) the gradient is
   rounding noise, which Adam normalises into steps of up to lr each (by
   Kingma & Ba, 2.1: |step| <= lr when 1 - beta1 <= sqrt(1 - beta2)). So
   after training the key bias is compared with that bound, and the rest
   of c_attn.bias with the tolerance. Returns the relative error of the
   query and value parts; *drift receives max |got - want| over the key
   part. */
static double qkv_bias_rel_err(const float *got, const float *want, int C,
                               double *drift) {
    double d2 = 0, w2 = 0, k2 = 0;
    *drift = 0;
    if (sq_sums(got, want, 0, C, &d2, &w2) ||
        sq_sums(got, want, 2 * (size_t)C, 3 * (size_t)C, &d2, &w2) ||
        sq_sums(got, want, C, 2 * (size_t)C, &k2, &w2))
        return *drift = INFINITY;
    for (int i = C; i < 2 * C; i++)
        *drift = fmax(*drift, fabs((double)got[i] - want[i]));
    return w2 > 0 ? sqrt(d2 / w2) : sqrt(d2);
}

static int is_qkv_bias(const char *name) {
    size_t n = strlen(name), k = strlen(".attn.c_attn.bias");
    return n >= k && strcmp(name + n - k, ".attn.c_attn.bias") == 0;
}

/* Compares every tensor of the block (trainer layout) with golden
   "<prefix><name>"; prints the worst; returns 1 if all pass. With
   key_bound >= 0, key biases are held to that drift instead (see
   qkv_bias_rel_err). */
static int compare_block(golden *g, const gpt2_model *m, const float *block,
                         const char *prefix, const char *label,
                         double key_bound) {
    double worst = -1, worst_drift = 0;
    char worst_name[96] = "-";
    int ok = 1, C = gpt2_model_config(m)->n_embd;
    size_t off = 0;
    for (int i = 0; i < gpt2_model_num_tensors(m); i++) {
        gpt2_tensor_info ti;
        char name[96];
        double e = INFINITY, drift = 0;
        gpt2_model_tensor(m, i, &ti);
        snprintf(name, sizeof name, "%s%s", prefix, ti.name);
        float *want = golden_f32(g, name, ti.numel);
        if (want && key_bound >= 0 && is_qkv_bias(ti.name))
            e = qkv_bias_rel_err(block + off, want, C, &drift);
        else if (want)
            e = tensor_rel_err(block + off, want, ti.numel);
        free(want);
        off += ti.numel;
        if (!(e <= TOL)) {
            ok = 0;
            fail(g->model, "%s %s: relative error %.3e > %.0e", label, name,
                 e, TOL);
        }
        if (!(drift <= key_bound) && key_bound >= 0) {
            ok = 0;
            fail(g->model, "%s %s: key bias moved %.3e, more than Adam's "
                 "bound %.3e", label, name, drift, key_bound);
        }
        worst_drift = fmax(worst_drift, drift);
        if (!(e <= worst)) {
            worst = e;
            snprintf(worst_name, sizeof worst_name, "%s", ti.name);
        }
    }
    printf("  %-14s %d tensors, worst %-26s rel %.2e  %s\n", label,
           gpt2_model_num_tensors(m), worst_name, worst, ok ? "ok" : "FAIL");
    if (key_bound >= 0)
        printf("  %-14s key biases (zero gradient, rounding noise) moved "
               "%.2e <= %.2e\n", "", worst_drift, key_bound);
    return ok;
}

static int check_scalar(golden *g, const char *what, double got, double want,
                        double tol) {
    double e = rel_err(got, want);
    if (e <= tol) return 1;
    fail(g->model, "%s: %.9g, golden %.9g, relative error %.3e > %.0e", what,
         got, want, e, tol);
    return 0;
}

/* ---------------------------------------------------------- the checks */

/* The trainer's blocks lay tensors out in gpt2_model_tensor order, end to
   end, and the model's tensors are views of the parameter block. */
static void check_layout(golden *g, const gpt2_model *m, gpt2_trainer *tr) {
    const float *params = gpt2_trainer_params(tr);
    size_t off = 0;
    int ok = 1;
    for (int i = 0; i < gpt2_model_num_tensors(m); i++) {
        gpt2_tensor_info ti;
        gpt2_model_tensor(m, i, &ti);
        if (ti.data != params + off) ok = 0;
        off += ti.numel;
    }
    if (!ok || off != gpt2_trainer_num_params(tr) ||
        off != gpt2_model_num_params(m))
        fail(g->model, "parameter block layout differs from gpt2_model_tensor "
             "order (%zu floats, trainer %zu)", off,
             gpt2_trainer_num_params(tr));
}

static void zero_grads(gpt2_trainer *tr) {
    memset(gpt2_trainer_grads(tr), 0,
           gpt2_trainer_num_params(tr) * sizeof(float));
}

/* One forward_backward with scale 1: loss and every gradient. */
static void check_gradients(golden *g, const gpt2_model *m, gpt2_trainer *tr,
                            int B, int T) {
    size_t n = (size_t)B * T;
    int *tokens = golden_i32(g, "tokens", n);
    int *targets = golden_i32(g, "targets", n);
    float *want = golden_f32(g, "loss", 1);
    float loss = NAN;
    if (tokens && targets && want) {
        zero_grads(tr);
        if (gpt2_trainer_forward_backward(tr, tokens, targets, 1.0f, &loss)) {
            fail(g->model, "forward_backward: %s", gpt2_last_error());
        } else {
            int ok = check_scalar(g, "loss", loss, want[0], TOL);
            printf("  %-14s %.6f vs %.6f  rel %.2e  %s\n", "loss", loss,
                   want[0], rel_err(loss, want[0]), ok ? "ok" : "FAIL");
            compare_block(g, m, gpt2_trainer_grads(tr), "grad.", "gradients",
                          -1);
        }
    }
    free(tokens);
    free(targets);
    free(want);
    zero_grads(tr);
}

/* Two micro-batches at scale 0.5 add up to the gradient of the mean. */
static void check_accumulation(golden *g, const gpt2_model *m,
                               gpt2_trainer *tr, int B, int T) {
    size_t n = (size_t)B * T;
    int *tokens = golden_i32(g, "accum_tokens", 2 * n);
    int *targets = golden_i32(g, "accum_targets", 2 * n);
    float *want = golden_f32(g, "accum_loss", 2);
    if (tokens && targets && want) {
        zero_grads(tr);
        float loss[2] = {NAN, NAN};
        int ok = 1;
        for (int k = 0; k < 2 && ok; k++) {
            if (gpt2_trainer_forward_backward(tr, tokens + k * n,
                                              targets + k * n, 0.5f,
                                              &loss[k])) {
                fail(g->model, "forward_backward (micro-batch %d): %s", k,
                     gpt2_last_error());
                ok = 0;
            }
        }
        if (ok) {
            ok = check_scalar(g, "micro-batch 0 loss", loss[0], want[0], TOL);
            ok &= check_scalar(g, "micro-batch 1 loss", loss[1], want[1], TOL);
            printf("  %-14s micro-batch losses rel %.2e %.2e  %s\n",
                   "accumulation", rel_err(loss[0], want[0]),
                   rel_err(loss[1], want[1]), ok ? "ok" : "FAIL");
            compare_block(g, m, gpt2_trainer_grads(tr), "accum_grad.",
                          "accum. grads", -1);
        }
    }
    free(tokens);
    free(targets);
    free(want);
    zero_grads(tr);
}

/* The golden steps: lr, loss and gradient norm of each, then the final
   parameters and moments. */
static void check_training(golden *g, const gpt2_model *m, gpt2_trainer *tr,
                           const gpt2_train_params *p, int S, int B, int T) {
    size_t n = (size_t)B * T;
    int *tokens = golden_i32(g, "train_tokens", S * n);
    int *targets = golden_i32(g, "train_targets", S * n);
    float *w_loss = golden_f32(g, "train_loss", S);
    float *w_lr = golden_f32(g, "train_lr", S);
    float *w_norm = golden_f32(g, "train_grad_norm", S);
    int *w_clip = golden_i32(g, "train_clipped", S);
    int ok = tokens && targets && w_loss && w_lr && w_norm && w_clip;
    double e_loss = 0, e_norm = 0, e_lr = 0, lr_sum = 0;
    zero_grads(tr);
    if (ok) printf("  step  lr          loss (c)   loss (ref)  grad norm  "
                   "clipped\n");
    for (int s = 0; s < S && ok; s++) {
        float lr = gpt2_train_lr(p, s), loss = NAN, norm = NAN;
        char what[64];
        snprintf(what, sizeof what, "step %d learning rate", s);
        check_scalar(g, what, lr, w_lr[s], LR_TOL);
        if (gpt2_trainer_forward_backward(tr, tokens + s * n, targets + s * n,
                                          1.0f, &loss) ||
            gpt2_trainer_update(tr, lr, &norm)) {
            fail(g->model, "step %d: %s", s, gpt2_last_error());
            ok = 0;
            break;
        }
        snprintf(what, sizeof what, "step %d loss", s);
        check_scalar(g, what, loss, w_loss[s], TOL);
        snprintf(what, sizeof what, "step %d gradient norm", s);
        check_scalar(g, what, norm, w_norm[s], TOL);
        lr_sum += lr;
        e_lr = fmax(e_lr, rel_err(lr, w_lr[s]));
        e_loss = fmax(e_loss, rel_err(loss, w_loss[s]));
        e_norm = fmax(e_norm, rel_err(norm, w_norm[s]));
        printf("  %4d  %.4e  %.6f   %.6f   %9.4f  %s\n", s, lr, loss,
               w_loss[s], norm, w_clip[s] ? "yes" : "no");
    }
    if (ok) {
        int clipped = 0;
        for (int s = 0; s < S; s++) clipped += w_clip[s] != 0;
        printf("  %-14s %d steps (%d clipped): max rel lr %.2e, loss %.2e, "
               "grad norm %.2e\n", "steps", S, clipped, e_lr, e_loss, e_norm);
        if (gpt2_trainer_steps_done(tr) != S)
            fail(g->model, "steps_done %d after %d updates",
                 gpt2_trainer_steps_done(tr), S);
        compare_block(g, m, gpt2_trainer_params(tr), "final.", "final params",
                      lr_sum);
        compare_block(g, m, gpt2_trainer_adam_m(tr), "final_m.", "AdamW m",
                      -1);
        compare_block(g, m, gpt2_trainer_adam_v(tr), "final_v.", "AdamW v",
                      -1);
    }
    free(tokens);
    free(targets);
    free(w_loss);
    free(w_lr);
    free(w_norm);
    free(w_clip);
}

/* gpt2_train_lr against the reference's schedule, step by step. A golden
   min_lr < 0 leaves the default (lr / 10 by the header). */
static void check_schedules(golden *g) {
    const gpt2__st_tensor *sp = gpt2__st_find(&g->f, "sched_params");
    const gpt2__st_tensor *sl = gpt2__st_find(&g->f, "sched_lr");
    if (!sp || !sl || sp->ndim != 2 || sp->shape[1] != 4 || sl->ndim != 2 ||
        sl->shape[0] != sp->shape[0]) {
        fail(g->model, "golden sched_params / sched_lr missing or malformed");
        return;
    }
    int K = (int)sp->shape[0], N = (int)sl->shape[1];
    float *rows = golden_f32(g, "sched_params", (size_t)K * 4);
    float *lrs = golden_f32(g, "sched_lr", (size_t)K * N);
    double worst = 0;
    int bad = 0;
    for (int k = 0; rows && lrs && k < K; k++) {
        gpt2_train_params p = gpt2_train_defaults();
        p.lr = rows[4 * k];
        if (rows[4 * k + 1] >= 0) p.min_lr = rows[4 * k + 1];
        p.warmup_steps = (int)rows[4 * k + 2];
        p.total_steps = (int)rows[4 * k + 3];
        for (int s = 0; s < N; s++) {
            double got = gpt2_train_lr(&p, s), want = lrs[k * N + s];
            /* relative, but lr 0 (min_lr 0) is compared against peak */
            double e = fabs(got - want) / fmax(fabs(want), 1e-3 * p.lr);
            if (!isfinite(got)) e = INFINITY;
            if (!(e <= worst)) worst = e;
            if (!(e <= LR_TOL) && bad++ < 5)
                fail(g->model, "gpt2_train_lr (lr %g min_lr %g warmup %d "
                     "total %d) step %d: %.9g, reference %.9g", p.lr,
                     rows[4 * k + 1], p.warmup_steps, p.total_steps, s, got,
                     want);
        }
    }
    if (!rows || !lrs) bad = 1;
    if (bad > 5) fail(g->model, "gpt2_train_lr: %d more steps differ", bad - 5);
    printf("  %-14s %d schedules x %d steps, max rel %.2e  %s\n", "schedule",
           K, N, worst, bad ? "FAIL" : "ok");
    free(rows);
    free(lrs);
}

/* The trainer's parameters from golden hparams (see make_train_golden.py). */
static int golden_params(golden *g, gpt2_train_params *p, int *steps) {
    float *h = golden_f32(g, "hparams", N_HPARAMS);
    const gpt2__st_tensor *tok = gpt2__st_find(&g->f, "tokens");
    if (!h || !tok || tok->ndim != 2) {
        free(h);
        fail(g->model, "golden hparams or tokens missing or malformed");
        return 0;
    }
    *p = gpt2_train_defaults();
    p->batch_size = (int)tok->shape[0];
    p->seq_len = (int)tok->shape[1];
    p->lr = h[0];
    p->min_lr = h[1];
    p->warmup_steps = (int)h[2];
    p->total_steps = (int)h[3];
    p->weight_decay = h[4];
    p->beta1 = h[5];
    p->beta2 = h[6];
    p->eps = h[7];
    p->grad_clip = h[8];
    *steps = (int)h[9];
    free(h);
    return 1;
}

static void check_model_dir(const char *golden_dir, const char *name) {
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/%s", golden_dir, name);
    snprintf(path, sizeof path, "%s/train_golden.safetensors", dir);
    int before = n_fail, steps = 0;
    golden g = {.model = name};
    gpt2_model *m = NULL;
    gpt2_trainer *tr = NULL;
    gpt2_train_params p;
    if (gpt2__st_open(path, &g.f) != GPT2_OK) {
        fail(name, "%s", gpt2_last_error());
        return;
    }
    if (gpt2_model_load(dir, &m) != GPT2_OK) {
        fail(name, "gpt2_model_load: %s", gpt2_last_error());
    } else if (golden_params(&g, &p, &steps)) {
        const gpt2_config *c = gpt2_model_config(m);
        printf("%s: L=%d H=%d C=%d n_ctx=%d V=%d eps=%g  B=%d T=%d  "
               "lr %g..%g warmup %d total %d wd %g clip %g\n", name,
               c->n_layer, c->n_head, c->n_embd, c->n_ctx, c->vocab_size,
               c->layer_norm_epsilon, p.batch_size, p.seq_len, p.lr, p.min_lr,
               p.warmup_steps, p.total_steps, p.weight_decay, p.grad_clip);
        if (gpt2_trainer_new(m, &p, &tr) != GPT2_OK) {
            fail(name, "gpt2_trainer_new: %s", gpt2_last_error());
        } else {
            check_layout(&g, m, tr);
            check_gradients(&g, m, tr, p.batch_size, p.seq_len);
            check_accumulation(&g, m, tr, p.batch_size, p.seq_len);
            check_training(&g, m, tr, &p, steps, p.batch_size, p.seq_len);
        }
        check_schedules(&g);
    }
    printf("%s: %s\n", name, n_fail == before ? "PASS" : "FAIL");
    gpt2_trainer_free(tr);
    gpt2_model_free(m);
    gpt2__st_close(&g.f);
}


int main(int argc, char **argv) {
    /* failures go to stderr: keep them in order with the table in logs */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: ref_train_check GOLDEN_DIR\n");
        return 2;
    }
    char **names;
    int n = golden_models(argv[1], "train_golden.safetensors", &names);
    if (n <= 0) {
        fprintf(stderr, "ref_train_check: no model directories with "
                        "train_golden.safetensors under %s\n", argv[1]);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        check_model_dir(argv[1], names[i]);
        free(names[i]);
    }
    free(names);
    printf("ref_train_check: %d models, %s\n", n, n_fail ? "FAIL" : "PASS");
    return n_fail ? 1 : 0;
}
