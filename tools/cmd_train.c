/* cmd_train.c: `gpt2 train`: training from scratch or fine-tuning a model
   on token shards from `gpt2 prepare`. Each step: B x T windows from the
   loader, forward keeping activations, backward, (accumulated over
   micro-batches up to --total-batch tokens), clip, AdamW with a warm-up +
   cosine schedule. Around it: a progress line, validation loss, samples,
   atomic checkpoints that resume exactly, loss.csv and loss.svg, and a
   checkpoint on SIGINT/SIGTERM. */
#include "cli.h"
#include "loss_plot.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const CMD = "train";

enum {
    OPT_DATA = 0x100, OPT_INIT, OPT_CONFIG, OPT_LAYER, OPT_HEAD, OPT_EMBD, OPT_CTX,
    OPT_RESUME, OPT_BATCH, OPT_SEQ, OPT_TOTAL, OPT_LR, OPT_MIN_LR, OPT_WARMUP,
    OPT_WD, OPT_CLIP, OPT_STEPS, OPT_EPOCHS, OPT_SEED, OPT_EVAL_EVERY,
    OPT_EVAL_BATCHES, OPT_SAMPLE_EVERY, OPT_SAMPLE_TOKENS, OPT_SAMPLE_PROMPT,
    OPT_SAVE_EVERY, OPT_DROPOUT, OPT_SHUFFLE, OPT_DTYPE, OPT_SAVE_DTYPE
};

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 train --data DIR -o OUT [model] [options]\n"
"       gpt2 train --resume OUT [--steps N]\n"
"Trains a GPT-2 on token shards from `gpt2 prepare` (or llm.c's). The model\n"
"is new (--config or --n-layer/--n-head/--n-embd, as `gpt2 init`) or an\n"
"existing model directory to fine-tune (--init DIR). Checkpoints go to\n"
"OUT/step_NNNNNN/ (the last also to OUT/final/): model directories that\n"
"`gpt2 generate` and Hugging Face load, plus optimizer.safetensors and\n"
"trainer_state.json. OUT/loss.csv and OUT/loss.svg record the run. Ctrl-C\n"
"(SIGINT) or SIGTERM saves a checkpoint, then exits; --resume continues\n"
"from the newest complete checkpoint exactly as if never stopped.\n\n"
"model:\n"
"  --init DIR            fine-tune this model directory\n"
"  --config NAME         new model: gpt2, gpt2-medium, gpt2-large, gpt2-xl\n"
"  --n-layer L --n-head H --n-embd C [--n-ctx N]   new model, custom shape\n"
"data and run:\n"
"  --data DIR            shards (DIR/train_*.bin, DIR/val_*.bin) or a pattern\n"
"  -o, --output OUT      the run's directory\n"
"  --resume OUT          continue the run in OUT\n"
"  --batch-size B        sequences per micro-batch (default 4)\n"
"  --seq-len T           tokens per sequence (default min(n_ctx, 1024))\n"
"  --total-batch N       tokens per optimizer step; a multiple of B*T, the\n"
"                        rest is gradient accumulation (default B*T)\n"
"  --steps N             optimizer steps (default 1000) ...\n"
"  --epochs E            ... or passes over the training tokens\n"
"  --shuffle             visit windows in a shuffled order each epoch\n"
"optimizer:\n"
"  --lr X                peak learning rate (default 6e-4)\n"
"  --min-lr X            floor of the cosine decay (default lr/10)\n"
"  --warmup N            linear warm-up steps (default 0)\n"
"  --weight-decay X      AdamW decay on 2-D tensors (default 0.1)\n"
"  --clip X              clip the gradient norm; 0 off (default 1.0)\n"
"  --dropout P           dropout probability (default 0: off)\n"
"  --seed S              init, shuffle and dropout seed (default 1337)\n"
"  --dtype D             matmul precision: fp32 (default) or bf16 (mixed\n"
"                        precision: matmul inputs rounded to bfloat16,\n"
"                        sums, weights and AdamW in float32; about 2x\n"
"                        faster on CPUs with AVX512_BF16 or AMX)\n"
"reporting:\n"
"  --eval-every N        validation loss every N steps, 0 off (default 100)\n"
"  --eval-batches N      batches per validation, 0 all (default 0)\n"
"  --sample-every N      print a sample every N steps, 0 off (default 0)\n"
"  --sample-tokens N     length of a sample (default 48)\n"
"  --sample-prompt TEXT  its prompt (default: <|endoftext|>, unconditional)\n"
"  --save-every N        checkpoint every N steps, 0 only at the end\n"
"                        (default 0)\n"
"  --save-dtype D        final/'s weights: f32 (default), f16 or bf16;\n"
"                        step checkpoints stay f32 to resume exactly\n");
    cli_common_help(f, 24);
}

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *data, *out, *init, *preset, *resume, *sample_prompt;
    int n_layer, n_head, n_embd, n_ctx;
    int steps, eval_every, eval_batches, sample_every, sample_tokens, save_every;
    long total_batch;
    float epochs;
    int shuffle;
    bool steps_given;
    gpt2_dtype dtype;
    gpt2_train_params tp;
} train_options;

static int parse_options(int argc, char **argv, train_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"data", required_argument, NULL, OPT_DATA},
        {"output", required_argument, NULL, 'o'},
        {"init", required_argument, NULL, OPT_INIT},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"n-layer", required_argument, NULL, OPT_LAYER},
        {"n-head", required_argument, NULL, OPT_HEAD},
        {"n-embd", required_argument, NULL, OPT_EMBD},
        {"n-ctx", required_argument, NULL, OPT_CTX},
        {"resume", required_argument, NULL, OPT_RESUME},
        {"batch-size", required_argument, NULL, OPT_BATCH},
        {"seq-len", required_argument, NULL, OPT_SEQ},
        {"total-batch", required_argument, NULL, OPT_TOTAL},
        {"lr", required_argument, NULL, OPT_LR},
        {"min-lr", required_argument, NULL, OPT_MIN_LR},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"weight-decay", required_argument, NULL, OPT_WD},
        {"clip", required_argument, NULL, OPT_CLIP},
        {"steps", required_argument, NULL, OPT_STEPS},
        {"epochs", required_argument, NULL, OPT_EPOCHS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"eval-every", required_argument, NULL, OPT_EVAL_EVERY},
        {"eval-batches", required_argument, NULL, OPT_EVAL_BATCHES},
        {"sample-every", required_argument, NULL, OPT_SAMPLE_EVERY},
        {"sample-tokens", required_argument, NULL, OPT_SAMPLE_TOKENS},
        {"sample-prompt", required_argument, NULL, OPT_SAMPLE_PROMPT},
        {"save-every", required_argument, NULL, OPT_SAVE_EVERY},
        {"dropout", required_argument, NULL, OPT_DROPOUT},
        {"shuffle", no_argument, NULL, OPT_SHUFFLE},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"save-dtype", required_argument, NULL, OPT_SAVE_DTYPE},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK, n;
    float f;
    uint64_t u;
    gpt2_train_params *tp = &o->tp;
    while (rc == CLI_OK &&
           (c = getopt_long(argc, argv, CLI_SHORTOPTS_PREFIX "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'o': o->out = optarg; break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_INIT: o->init = optarg; break;
        case OPT_CONFIG: o->preset = optarg; break;
        case OPT_RESUME: o->resume = optarg; break;
        case OPT_SAMPLE_PROMPT: o->sample_prompt = optarg; break;
        case OPT_SHUFFLE: o->shuffle = 1; break;
        case OPT_SAVE_DTYPE: rc = cli_opt_dtype(CMD, optarg, &o->dtype); break;
        case OPT_DTYPE:
            rc = cli_opt_dtype(CMD, optarg, &tp->matmul_dtype);
            if (!rc && tp->matmul_dtype != GPT2_DTYPE_F32 &&
                tp->matmul_dtype != GPT2_DTYPE_BF16)
                rc = cli_bad_value(CMD, "--dtype", optarg, "expected fp32 or bf16");
            break;
        case OPT_LAYER: rc = cli_opt_int(CMD, "--n-layer", optarg, 1, 4096, &o->n_layer); break;
        case OPT_HEAD: rc = cli_opt_int(CMD, "--n-head", optarg, 1, 65536, &o->n_head); break;
        case OPT_EMBD: rc = cli_opt_int(CMD, "--n-embd", optarg, 1, 65536, &o->n_embd); break;
        case OPT_CTX: rc = cli_opt_int(CMD, "--n-ctx", optarg, 1, 1 << 20, &o->n_ctx); break;
        case OPT_BATCH: rc = cli_opt_int(CMD, "--batch-size", optarg, 1, 1 << 16, &tp->batch_size); break;
        case OPT_SEQ: rc = cli_opt_int(CMD, "--seq-len", optarg, 1, 1 << 20, &tp->seq_len); break;
        case OPT_TOTAL:
            rc = cli_opt_int(CMD, "--total-batch", optarg, 1, 1 << 30, &n);
            o->total_batch = n;
            break;
        case OPT_STEPS:
            rc = cli_opt_int(CMD, "--steps", optarg, 1, 1 << 30, &o->steps);
            o->steps_given = true;
            break;
        case OPT_EPOCHS:
            rc = cli_opt_float(CMD, "--epochs", optarg, &o->epochs);
            if (rc == CLI_OK && !(o->epochs > 0))
                rc = cli_bad_value(CMD, "--epochs", optarg, "must be > 0");
            break;
        case OPT_WARMUP: rc = cli_opt_int(CMD, "--warmup", optarg, 0, 1 << 30, &tp->warmup_steps); break;
        case OPT_EVAL_EVERY: rc = cli_opt_int(CMD, "--eval-every", optarg, 0, 1 << 30, &o->eval_every); break;
        case OPT_EVAL_BATCHES: rc = cli_opt_int(CMD, "--eval-batches", optarg, 0, 1 << 30, &o->eval_batches); break;
        case OPT_SAMPLE_EVERY: rc = cli_opt_int(CMD, "--sample-every", optarg, 0, 1 << 30, &o->sample_every); break;
        case OPT_SAMPLE_TOKENS: rc = cli_opt_int(CMD, "--sample-tokens", optarg, 1, 100000, &o->sample_tokens); break;
        case OPT_SAVE_EVERY: rc = cli_opt_int(CMD, "--save-every", optarg, 0, 1 << 30, &o->save_every); break;
        case OPT_SEED:
            rc = cli_opt_u64(CMD, "--seed", optarg, &u);
            tp->seed = u;
            break;
        case OPT_LR: case OPT_MIN_LR: case OPT_WD: case OPT_CLIP: case OPT_DROPOUT: {
            const char *name = c == OPT_LR ? "--lr" : c == OPT_MIN_LR ? "--min-lr"
                             : c == OPT_WD ? "--weight-decay" : c == OPT_CLIP ? "--clip" : "--dropout";
            rc = cli_opt_float(CMD, name, optarg, &f);
            if (rc != CLI_OK) break;
            if (c == OPT_DROPOUT ? !(f >= 0 && f < 1) : !(f >= 0))
                rc = cli_bad_value(CMD, name, optarg, c == OPT_DROPOUT ? "must be in [0, 1)" : "must be >= 0");
            else if (c == OPT_LR) tp->lr = f;
            else if (c == OPT_MIN_LR) tp->min_lr = f;
            else if (c == OPT_WD) tp->weight_decay = f;
            else if (c == OPT_CLIP) tp->grad_clip = f;
            else tp->dropout = f;
            break;
        }
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (o->resume) {
        if (o->init || o->preset || o->n_layer || o->n_head || o->n_embd)
            return cli_usage_error(CMD, "--resume continues a run: give no model options");
        if (!o->out) o->out = o->resume;
        if (strcmp(o->out, o->resume) != 0)
            return cli_usage_error(CMD, "--resume OUT writes to OUT: drop -o or make it the same");
        return CLI_OK;
    }
    if (!o->data) return cli_usage_error(CMD, "no data: give --data DIR (from `gpt2 prepare`)");
    if (!o->out) return cli_usage_error(CMD, "no output: give -o OUT");
    int shapes = (o->init != NULL) + (o->preset != NULL) + (o->n_layer || o->n_head || o->n_embd);
    if (shapes != 1)
        return cli_usage_error(CMD, "give exactly one model: --init DIR, --config NAME, or "
                                    "--n-layer/--n-head/--n-embd");
    if ((o->n_layer || o->n_head || o->n_embd) && !(o->n_layer && o->n_head && o->n_embd))
        return cli_usage_error(CMD, "a custom shape needs all of --n-layer, --n-head and --n-embd");
    if (o->steps_given && o->epochs > 0)
        return cli_usage_error(CMD, "give --steps or --epochs, not both");
    return CLI_OK;
}

/* ---------------------------------------------------------- run state */

/* Everything a checkpoint must carry to continue the run exactly. */
typedef struct {
    char data[4096];
    gpt2_train_params tp;
    long total_batch;
    int steps, shuffle, eval_every, eval_batches, sample_every, sample_tokens, save_every;
    char sample_prompt[1024];
    int step;                /* optimizer steps done */
    gpt2_loader_pos pos;     /* where the next batch starts */
    double elapsed;          /* seconds of training before this process */
    uint64_t tokens_seen;
} run_state;

static char *state_to_json(const run_state *r) {
    cJSON *j = cJSON_CreateObject(), *lp = cJSON_CreateObject(), *hp = cJSON_CreateObject();
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->tp.seed);
    cJSON_AddNumberToObject(j, "step", r->step);
    cJSON_AddNumberToObject(j, "tokens_seen", (double)r->tokens_seen);
    cJSON_AddNumberToObject(j, "elapsed_s", r->elapsed);
    cJSON_AddStringToObject(j, "data", r->data);
    cJSON_AddNumberToObject(lp, "epoch", (double)r->pos.epoch);
    cJSON_AddNumberToObject(lp, "shard", r->pos.shard);
    cJSON_AddNumberToObject(lp, "offset", (double)r->pos.offset);
    cJSON_AddItemToObject(j, "loader", lp);
    cJSON_AddStringToObject(j, "rng_seed", seed); /* dropout and shuffle derive from it */
    cJSON_AddNumberToObject(hp, "batch_size", r->tp.batch_size);
    cJSON_AddNumberToObject(hp, "seq_len", r->tp.seq_len);
    cJSON_AddNumberToObject(hp, "total_batch", (double)r->total_batch);
    cJSON_AddNumberToObject(hp, "steps", r->steps);
    cJSON_AddNumberToObject(hp, "lr", r->tp.lr);
    cJSON_AddNumberToObject(hp, "min_lr", r->tp.min_lr);
    cJSON_AddNumberToObject(hp, "warmup", r->tp.warmup_steps);
    cJSON_AddNumberToObject(hp, "weight_decay", r->tp.weight_decay);
    cJSON_AddNumberToObject(hp, "beta1", r->tp.beta1);
    cJSON_AddNumberToObject(hp, "beta2", r->tp.beta2);
    cJSON_AddNumberToObject(hp, "eps", r->tp.eps);
    cJSON_AddNumberToObject(hp, "clip", r->tp.grad_clip);
    cJSON_AddNumberToObject(hp, "dropout", r->tp.dropout);
    cJSON_AddNumberToObject(hp, "shuffle", r->shuffle);
    cJSON_AddNumberToObject(hp, "eval_every", r->eval_every);
    cJSON_AddNumberToObject(hp, "eval_batches", r->eval_batches);
    cJSON_AddNumberToObject(hp, "sample_every", r->sample_every);
    cJSON_AddNumberToObject(hp, "sample_tokens", r->sample_tokens);
    cJSON_AddStringToObject(hp, "sample_prompt", r->sample_prompt);
    cJSON_AddNumberToObject(hp, "save_every", r->save_every);
    cJSON_AddStringToObject(hp, "matmul_dtype", gpt2_dtype_name(r->tp.matmul_dtype));
    cJSON_AddItemToObject(j, "hyperparameters", hp);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

static bool json_num(const cJSON *o, const char *key, double *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return false;
    *out = x->valuedouble;
    return true;
}

/* Reads what state_to_json wrote; false names the missing key in why. */
static bool state_from_json(const char *text, run_state *r, char *why, size_t cap) {
    cJSON *j = cJSON_Parse(text);
    if (!j) return snprintf(why, cap, "not valid JSON"), false;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "loader");
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(j, "hyperparameters");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "rng_seed");
    const cJSON *prompt = hp ? cJSON_GetObjectItemCaseSensitive(hp, "sample_prompt") : NULL;
    double v[26];
    static const char *const keys[] = {"step", "tokens_seen", "elapsed_s"};
    static const char *const lkeys[] = {"epoch", "shard", "offset"};
    static const char *const hkeys[] = {"batch_size", "seq_len", "total_batch", "steps", "lr",
                                        "min_lr", "warmup", "weight_decay", "beta1", "beta2",
                                        "eps", "clip", "dropout", "shuffle", "eval_every",
                                        "eval_batches", "sample_every", "sample_tokens",
                                        "save_every"};
    bool ok = cJSON_IsObject(lp) && cJSON_IsObject(hp) && cJSON_IsString(data) &&
              cJSON_IsString(seed) && cJSON_IsString(prompt);
    if (!ok) snprintf(why, cap, "missing loader, hyperparameters, data, rng_seed or sample_prompt");
    for (int i = 0; ok && i < 3; i++)
        if (!(ok = json_num(j, keys[i], &v[i]))) snprintf(why, cap, "missing %s", keys[i]);
    for (int i = 0; ok && i < 3; i++)
        if (!(ok = json_num(lp, lkeys[i], &v[3 + i]))) snprintf(why, cap, "missing loader.%s", lkeys[i]);
    for (int i = 0; ok && i < 19; i++)
        if (!(ok = json_num(hp, hkeys[i], &v[6 + i]))) snprintf(why, cap, "missing %s", hkeys[i]);
    if (ok) {
        r->step = (int)v[0];
        r->tokens_seen = (uint64_t)v[1];
        r->elapsed = v[2];
        r->pos.epoch = (uint64_t)v[3];
        r->pos.shard = (int)v[4];
        r->pos.offset = (uint64_t)v[5];
        r->tp.batch_size = (int)v[6];
        r->tp.seq_len = (int)v[7];
        r->total_batch = (long)v[8];
        r->steps = (int)v[9];
        r->tp.lr = (float)v[10];
        r->tp.min_lr = (float)v[11];
        r->tp.warmup_steps = (int)v[12];
        r->tp.weight_decay = (float)v[13];
        r->tp.beta1 = (float)v[14];
        r->tp.beta2 = (float)v[15];
        r->tp.eps = (float)v[16];
        r->tp.grad_clip = (float)v[17];
        r->tp.dropout = (float)v[18];
        r->shuffle = (int)v[19];
        r->eval_every = (int)v[20];
        r->eval_batches = (int)v[21];
        r->sample_every = (int)v[22];
        r->sample_tokens = (int)v[23];
        r->save_every = (int)v[24];
        r->tp.seed = strtoull(seed->valuestring, NULL, 10);
        snprintf(r->data, sizeof r->data, "%s", data->valuestring);
        snprintf(r->sample_prompt, sizeof r->sample_prompt, "%s", prompt->valuestring);
        /* runs from before mixed precision have no matmul_dtype: fp32 */
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(hp, "matmul_dtype");
        r->tp.matmul_dtype = GPT2_DTYPE_F32;
        if (cJSON_IsString(md) && gpt2_dtype_parse(md->valuestring, &r->tp.matmul_dtype))
            ok = false, snprintf(why, cap, "bad matmul_dtype");
    }
    cJSON_Delete(j);
    return ok;
}

/* --------------------------------------------------------------- signals */

/* SIGINT and SIGTERM must never interrupt a thread that computes: oneDNN
   2.x's JIT sgemm kernels point rsp into a heap workspace while they run,
   so the kernel writes a signal's frame over the heap, and glibc aborts
   later ("corrupted size vs. prev_size while consolidating"; oneDNN issue
   #4845, fixed in 3.11). So both signals are blocked before any thread
   starts (OpenMP's workers inherit the mask), and one thread that computes
   nothing takes them with sigwait. Before training begins a signal keeps
   its usual effect; during training it asks for a checkpoint and exit. */
static sigset_t stop_set;
static atomic_int stop_signal;   /* the signal that asked to stop, or 0 */
static atomic_bool training;     /* signals stop the run (else: their default) */
static bool ignored[NSIG];       /* SIG_IGN on entry, as for `cmd &` in a script */

/* What the signal would have done without us: nothing, or end the process. */
static void default_effect(int sig) {
    if (ignored[sig]) return;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    signal(sig, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    raise(sig); /* to this thread: the default action ends the process */
}

static void *signal_thread(void *arg) {
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&stop_set, &sig) != 0) continue;
        if (atomic_load(&training)) atomic_store(&stop_signal, sig);
        else default_effect(sig);
    }
    return NULL;
}

/* Called first, while this is the only thread. */
static void block_signals(void) {
    static const int sigs[] = {SIGINT, SIGTERM};
    sigemptyset(&stop_set);
    for (int i = 0; i < 2; i++) {
        struct sigaction old;
        sigaction(sigs[i], NULL, &old);
        ignored[sigs[i]] = old.sa_handler == SIG_IGN;
        sigaddset(&stop_set, sigs[i]);
    }
    sigset_t prev;
    pthread_sigmask(SIG_BLOCK, &stop_set, &prev);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, signal_thread, NULL) != 0) {
        pthread_sigmask(SIG_SETMASK, &prev, NULL);
        fprintf(stderr, "gpt2 train: warning: no signal thread: Ctrl-C will not save a checkpoint\n");
    }
    pthread_attr_destroy(&a);
}

/* ---------------------------------------------------------------- output */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static const char *fmt_time(double s, char *buf) {
    long t = (long)(s + 0.5);
    snprintf(buf, 32, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    return buf;
}

/* loss.csv keeps the rows of steps <= keep_step (a resumed run drops what
   the interrupted one logged past its last checkpoint); returns the file
   open for appending. */
static FILE *open_loss_csv(const char *out, int keep_step) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/loss.csv", out);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *in = keep_step > 0 ? fopen(path, "r") : NULL;
    FILE *o = fopen(tmp, "w");
    if (!o) {
        if (in) fclose(in);
        return NULL;
    }
    fprintf(o, "step,train_loss,val_loss,lr\n");
    char line[512];
    while (in && fgets(line, sizeof line, in)) {
        char *end;
        long s = strtol(line, &end, 10);
        if (end != line && *end == ',' && s <= keep_step) fputs(line, o);
    }
    if (in) fclose(in);
    fclose(o);
    if (rename(tmp, path) != 0) return NULL;
    return fopen(path, "a");
}

/* -------------------------------------------------------------- the run */

typedef struct {
    run_state r;
    const char *out;
    gpt2_model *m;
    gpt2_trainer *tr;
    gpt2_loader *train, *val;
    FILE *csv;
    int *tokens, *targets;
    int accum;               /* micro-batches per step */
    gpt2_dtype final_dtype;
    double t_start;          /* this process's start of training */
} run;

static int save_checkpoint(run *x, const char *name) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", x->out, name);
    gpt2_loader_tell(x->train, &x->r.pos);
    x->r.elapsed += now() - x->t_start;
    x->t_start = now();
    char *js = state_to_json(&x->r);
    if (!js) return cli_error(CMD, CLI_FAIL, "out of memory");
    gpt2_status st = gpt2_checkpoint_save(x->tr, dir, js);
    free(js);
    if (st != GPT2_OK) return cli_lib_error(CMD, "cannot save the checkpoint %s", dir);
    fprintf(stderr, "checkpoint: %s\n", dir);
    return CLI_OK;
}

/* The mean validation loss over eval_batches batches (all when 0). */
static float validate(run *x) {
    gpt2_loader_reset(x->val);
    uint64_t n = gpt2_loader_batches_per_epoch(x->val);
    if (x->r.eval_batches > 0 && (uint64_t)x->r.eval_batches < n) n = (uint64_t)x->r.eval_batches;
    double sum = 0.0;
    for (uint64_t i = 0; i < n; i++) {
        float l;
        gpt2_loader_next(x->val, x->tokens, x->targets);
        if (gpt2_trainer_eval(x->tr, x->tokens, x->targets, &l) != GPT2_OK) return NAN;
        sum += l;
    }
    return n ? (float)(sum / (double)n) : NAN;
}

static int print_text(void *user, const gpt2_step *s) {
    (void)user;
    fwrite(s->text, 1, s->len, stderr);
    return 0;
}

static void print_sample(run *x) {
    const gpt2_tokenizer *t = gpt2_model_tokenizer(x->m);
    if (!t) return;
    gpt2_generate_params p = gpt2_generate_defaults();
    p.max_new_tokens = x->r.sample_tokens;
    p.sampler.top_k = 40;
    p.sampler.seed = (uint64_t)x->r.step;
    p.stop_at_eot = 0;
    fprintf(stderr, "sample at step %d: %s", x->r.step, x->r.sample_prompt);
    if (x->r.sample_prompt[0]) {
        gpt2_generate(x->m, x->r.sample_prompt, &p, print_text, NULL, NULL);
    } else {
        int eot = gpt2_tokenizer_eot(t);
        if (eot >= 0) gpt2_generate_ids(x->m, &eot, 1, &p, print_text, NULL, NULL);
    }
    fputs("\n", stderr);
}

static void write_plot(run *x) {
    char csv[4200], svg[4200];
    snprintf(csv, sizeof csv, "%s/loss.csv", x->out);
    snprintf(svg, sizeof svg, "%s/loss.svg", x->out);
    fflush(x->csv);
    if (loss_plot_svg(csv, svg, "gpt2c training loss") != 0)
        fprintf(stderr, "gpt2 train: warning: cannot write %s\n", svg);
}

static int train_loop(run *x) {
    gpt2_train_params *tp = &x->r.tp;
    int B = tp->batch_size, T = tp->seq_len;
    bool tty = isatty(2);
    char e1[32], e2[32];
    double t_first = now();
    int first_step = x->r.step;
    atomic_store(&training, true);
    while (x->r.step < x->r.steps) {
        float lr = gpt2_train_lr(tp, x->r.step), norm = 0.0f;
        double loss = 0.0;
        for (int k = 0; k < x->accum; k++) {
            float l;
            gpt2_loader_next(x->train, x->tokens, x->targets);
            if (gpt2_trainer_forward_backward(x->tr, x->tokens, x->targets,
                                              1.0f / (float)x->accum, &l) != GPT2_OK)
                return cli_lib_error(CMD, "step %d", x->r.step + 1);
            loss += l / x->accum;
        }
        if (gpt2_trainer_update(x->tr, lr, &norm) != GPT2_OK)
            return cli_lib_error(CMD, "step %d", x->r.step + 1);
        x->r.step++;
        x->r.tokens_seen += (uint64_t)x->accum * B * T;

        /* validation, the log, the progress line */
        bool last = x->r.step == x->r.steps;
        float vloss = NAN;
        if (x->val && x->r.eval_every > 0 && (x->r.step % x->r.eval_every == 0 || last))
            vloss = validate(x);
        fprintf(x->csv, "%d,%.6f,", x->r.step, loss);
        if (!isnan(vloss)) fprintf(x->csv, "%.6f", vloss);
        fprintf(x->csv, ",%.6g\n", lr);
        double dt = now() - t_first;
        double tps = (double)(x->r.step - first_step) * x->accum * B * T / dt;
        double eta = (double)(x->r.steps - x->r.step) * dt / (x->r.step - first_step);
        fprintf(stderr, "%sstep %d/%d | loss %.4f | lr %.2e | norm %.2f | %.0f tok/s | %s elapsed, ETA %s%s",
                tty ? "\r\033[K" : "", x->r.step, x->r.steps, loss, lr, norm, tps,
                fmt_time(x->r.elapsed + now() - x->t_start, e1), fmt_time(eta, e2),
                tty ? "" : "\n");
        if (!isnan(vloss)) {
            fprintf(stderr, "%sval loss %.4f (perplexity %.2f) at step %d\n", tty ? "\n" : "",
                    vloss, exp(vloss), x->r.step);
            write_plot(x);
        }
        if (x->r.sample_every > 0 && x->r.step % x->r.sample_every == 0) {
            if (tty) fputc('\n', stderr);
            print_sample(x);
        }
        if (x->r.save_every > 0 && x->r.step % x->r.save_every == 0 && !last) {
            char name[64];
            snprintf(name, sizeof name, "step_%06d", x->r.step);
            if (tty) fputc('\n', stderr);
            int rc = save_checkpoint(x, name);
            if (rc != CLI_OK) return rc;
        }
        int sig = atomic_load(&stop_signal);
        if (sig && !last) {
            char name[64];
            snprintf(name, sizeof name, "step_%06d", x->r.step);
            fprintf(stderr, "\n%s: saving a checkpoint before exiting\n",
                    sig == SIGINT ? "interrupted" : "terminated");
            int rc = save_checkpoint(x, name);
            write_plot(x);
            return rc != CLI_OK ? rc : 128 + sig;
        }
    }
    if (tty) fputc('\n', stderr);
    char name[64];
    snprintf(name, sizeof name, "step_%06d", x->r.step);
    int rc = save_checkpoint(x, name);
    if (rc == CLI_OK) rc = save_checkpoint(x, "final");
    if (rc == CLI_OK && x->final_dtype != GPT2_DTYPE_F32) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/final", x->out);
        if (gpt2_model_save(x->m, dir, x->final_dtype) != GPT2_OK)
            rc = cli_lib_error(CMD, "cannot save %s", dir);
    }
    write_plot(x);
    return rc;
}

/* ------------------------------------------------------------- set-up */

static int make_model(const train_options *o, gpt2_model **m) {
    if (o->init) return cli_load_model(CMD, o->init, false, m);
    gpt2_config c;
    if (o->preset) {
        if (gpt2_config_preset(o->preset, &c) != GPT2_OK)
            return cli_bad_value(CMD, "--config", o->preset,
                                 "expected gpt2, gpt2-medium, gpt2-large or gpt2-xl");
    } else {
        c = (gpt2_config){o->n_layer, o->n_head, o->n_embd, 1024, 50257, 1e-5f};
    }
    if (o->n_ctx) c.n_ctx = o->n_ctx;
    if (gpt2_config_check(&c) != GPT2_OK)
        return cli_usage_error(CMD, "invalid shape: %s", gpt2_last_error());
    if (gpt2_model_init(&c, o->tp.seed, m) != GPT2_OK) return cli_lib_error(CMD, "cannot make the model");
    char why[512];
    if (!cli_attach_data_tokenizer(*m, why, sizeof why))
        fprintf(stderr, "gpt2 train: note: no tokenizer (%s); no samples\n", why);
    return CLI_OK;
}

/* Does data (a directory) hold val shards, by gpt2_prepare's or llm.c's
   names? */
static bool has_val_shards(const char *data) {
    struct stat sb;
    if (stat(data, &sb) != 0 || !S_ISDIR(sb.st_mode)) return false;
    static const char *const pats[] = {"val_*.bin", "*_val_*.bin", "*_val.bin"};
    for (int i = 0; i < 3; i++) {
        char pat[4200];
        glob_t g;
        snprintf(pat, sizeof pat, "%s/%s", data, pats[i]);
        int r = glob(pat, 0, NULL, &g);
        size_t n = r == 0 ? g.gl_pathc : 0;
        if (r == 0) globfree(&g);
        if (n > 0) return true;
    }
    return false;
}

/* mkdir -p; 0 or -1 with errno */
static int mkdir_p(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return errno = ENAMETOOLONG, -1;
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    return 0;
}

static int open_loaders(run *x) {
    gpt2_loader_options lo = gpt2_loader_defaults();
    lo.batch_size = x->r.tp.batch_size;
    lo.seq_len = x->r.tp.seq_len;
    lo.vocab_size = gpt2_model_config(x->m)->vocab_size;
    lo.shuffle = x->r.shuffle;
    lo.seed = x->r.tp.seed;
    if (lo.vocab_size > 65536) lo.vocab_size = 65536;
    if (gpt2_loader_open(x->r.data, "train", &lo, &x->train) != GPT2_OK)
        return cli_lib_error(CMD, "training data");
    /* validation is optional: the loader's val shards beside the training
       ones, if there are any (broken ones are an error) */
    lo.shuffle = 0;
    if (has_val_shards(x->r.data)) {
        if (gpt2_loader_open(x->r.data, "val", &lo, &x->val) != GPT2_OK)
            return cli_lib_error(CMD, "validation data");
    } else {
        fprintf(stderr, "gpt2 train: note: no validation shards in %s\n", x->r.data);
    }
    return CLI_OK;
}

static int setup_new(run *x, train_options *o) {
    int rc = make_model(o, &x->m);
    if (rc != CLI_OK) return rc;
    const gpt2_config *c = gpt2_model_config(x->m);
    run_state *r = &x->r;
    r->tp = o->tp;
    if (r->tp.seq_len == 0) r->tp.seq_len = c->n_ctx < 1024 ? c->n_ctx : 1024;
    if (r->tp.seq_len > c->n_ctx)
        return cli_usage_error(CMD, "--seq-len %d exceeds the model's context %d", r->tp.seq_len, c->n_ctx);
    if (r->tp.seq_len < c->n_ctx)
        fprintf(stderr, "gpt2 train: note: --seq-len %d is shorter than the context %d: "
                        "positions %d..%d are not trained, and generation past %d tokens "
                        "will suffer\n", r->tp.seq_len, c->n_ctx, r->tp.seq_len, c->n_ctx - 1,
                r->tp.seq_len);
    snprintf(r->data, sizeof r->data, "%s", o->data);
    long bt = (long)r->tp.batch_size * r->tp.seq_len;
    r->total_batch = o->total_batch ? o->total_batch : bt;
    if (r->total_batch % bt != 0)
        return cli_usage_error(CMD, "--total-batch %ld is not a multiple of B*T = %ld",
                               r->total_batch, bt);
    r->shuffle = o->shuffle;
    r->eval_every = o->eval_every;
    r->eval_batches = o->eval_batches;
    r->sample_every = o->sample_every;
    r->sample_tokens = o->sample_tokens;
    r->save_every = o->save_every;
    snprintf(r->sample_prompt, sizeof r->sample_prompt, "%s", o->sample_prompt ? o->sample_prompt : "");
    if ((rc = open_loaders(x)) != CLI_OK) return rc;
    r->steps = o->steps;
    if (o->epochs > 0) {
        double batches = (double)gpt2_loader_batches_per_epoch(x->train) * r->tp.batch_size *
                         r->tp.seq_len / (double)r->total_batch;
        r->steps = (int)ceil(o->epochs * batches);
        if (r->steps < 1) r->steps = 1;
    }
    r->tp.total_steps = r->steps;
    if (r->tp.min_lr < 0) r->tp.min_lr = r->tp.lr / 10.0f;
    if (mkdir_p(x->out) != 0)
        return cli_error(CMD, CLI_FAIL, "cannot create %s: %s", x->out, strerror(errno));
    return CLI_OK;
}

static int setup_resume(run *x, train_options *o) {
    char dir[4096], path[4200], why[256];
    if (gpt2_checkpoint_latest(o->resume, dir, sizeof dir) != GPT2_OK)
        return cli_lib_error(CMD, "cannot resume");
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    char *text;
    size_t len;
    if (cli_read_input(CMD, path, &text, &len) != CLI_OK) return CLI_FAIL;
    x->r.tp = gpt2_train_defaults();
    bool ok = state_from_json(text, &x->r, why, sizeof why);
    free(text);
    if (!ok) return cli_error(CMD, CLI_FAIL, "%s: %s", path, why);
    if (o->steps_given) {
        if (o->steps <= x->r.step)
            return cli_usage_error(CMD, "--steps %d: the run is already at step %d", o->steps, x->r.step);
        x->r.steps = o->steps;
        x->r.tp.total_steps = o->steps;
        fprintf(stderr, "gpt2 train: note: the schedule now ends at step %d\n", o->steps);
    } else {
        x->r.tp.total_steps = x->r.steps;
    }
    int rc = cli_load_model(CMD, dir, false, &x->m);
    if (rc != CLI_OK) return rc;
    if ((rc = open_loaders(x)) != CLI_OK) return rc;
    if (gpt2_loader_seek(x->train, &x->r.pos) != GPT2_OK)
        return cli_lib_error(CMD, "cannot resume the data position");
    fprintf(stderr, "resuming %s at step %d of %d\n", dir, x->r.step, x->r.steps);
    return CLI_OK;
}

int cmd_train(int argc, char **argv) {
    train_options o = {0};
    o.tp = gpt2_train_defaults();
    o.steps = 1000;
    o.eval_every = 100;
    o.sample_tokens = 48;
    o.dtype = GPT2_DTYPE_F32;
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    block_signals();

    run x;
    memset(&x, 0, sizeof x);
    x.out = o.out;
    x.final_dtype = o.dtype;
    rc = o.resume ? setup_resume(&x, &o) : setup_new(&x, &o);
    if (rc == CLI_OK) {
        run_state *r = &x.r;
        long bt = (long)r->tp.batch_size * r->tp.seq_len;
        x.accum = (int)(r->total_batch / bt);
        x.tokens = malloc(sizeof(int) * (size_t)bt);
        x.targets = malloc(sizeof(int) * (size_t)bt);
        if (!x.tokens || !x.targets) rc = cli_error(CMD, CLI_FAIL, "out of memory");
    }
    if (rc == CLI_OK && gpt2_trainer_new(x.m, &x.r.tp, &x.tr) != GPT2_OK)
        rc = cli_lib_error(CMD, "cannot set up training");
    if (rc == CLI_OK && o.resume) {
        char dir[4096];
        gpt2_checkpoint_latest(o.resume, dir, sizeof dir);
        if (gpt2_checkpoint_load_optimizer(x.tr, dir) != GPT2_OK)
            rc = cli_lib_error(CMD, "cannot resume the optimizer");
        gpt2_trainer_set_steps_done(x.tr, x.r.step);
    }
    if (rc == CLI_OK && !(x.csv = open_loss_csv(x.out, x.r.step)))
        rc = cli_error(CMD, CLI_FAIL, "cannot write %s/loss.csv: %s", x.out, strerror(errno));
    if (rc == CLI_OK) {
        const gpt2_config *c = gpt2_model_config(x.m);
        char count[32];
        fprintf(stderr,
                "training %s-parameter GPT-2 (n_layer %d, n_head %d, n_embd %d, n_ctx %d) on %s: "
                "%llu train tokens%s; B=%d T=%d, %d micro-batch%s per step, %d steps, %d threads, "
                "%s matmuls\n",
                cli_fmt_count(gpt2_model_num_params(x.m), count), c->n_layer, c->n_head,
                c->n_embd, c->n_ctx, x.r.data,
                (unsigned long long)gpt2_loader_num_tokens(x.train),
                x.val ? "" : " (no validation split)", x.r.tp.batch_size, x.r.tp.seq_len,
                x.accum, x.accum == 1 ? "" : "es", x.r.steps, gpt2_get_threads(),
                x.r.tp.matmul_dtype == GPT2_DTYPE_BF16
                    ? (gpt2_bf16_hardware() ? "bf16 (mixed precision)"
                                            : "bf16 (emulated: this CPU has no bf16 unit)")
                    : "fp32");
        x.t_start = now();
        rc = train_loop(&x);
    }
    if (x.csv) fclose(x.csv);
    free(x.tokens);
    free(x.targets);
    gpt2_trainer_free(x.tr);
    gpt2_loader_free(x.train);
    gpt2_loader_free(x.val);
    gpt2_model_free(x.m);
    return rc;
}
