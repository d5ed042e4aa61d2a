/* cmd_eval.c: `gpt2 eval`: how well a model predicts a text. The mean
   next-token cross-entropy in nats and its exponential, the perplexity.
   The first token has no context and is not scored, so N tokens give N-1
   predictions. A text longer than the context is read in overlapping
   windows (Hugging Face's "perplexity of fixed-length models"): each
   window scores only tokens no earlier window scored, so every prediction
   after the first window sees at least n_ctx - stride tokens of context.
   With --task lambada: LAMBADA's last-word accuracy and perplexity. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const CMD = "eval";

enum { OPT_JSON = 0x100, OPT_STRIDE, OPT_SPECIAL, OPT_DATA, OPT_SPLIT,
       OPT_TASK, OPT_DECODE };

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 eval [-m DIR] [--stride S] [--json] [--special] FILE\n"
"       gpt2 eval [-m DIR] --data DIR [--split val|train] [--json]\n"
"       gpt2 eval [-m DIR] --task lambada [--json] FILE\n"
"Mean next-token cross-entropy (nats/token) and perplexity of the model on\n"
"the tokens of FILE ('-' for stdin). The first token is context only: N\n"
"tokens give N-1 scored predictions. No token is added to the text.\n"
"With --data, on token shards from `gpt2 prepare` instead, as `gpt2 train`\n"
"reports validation loss: consecutive windows of n_ctx tokens, every\n"
"target scored (a tail shorter than a window is left out).\n"
"With --task lambada, FILE is LAMBADA-format jsonl ({\"text\": ...} per\n"
"line, like lambada_openai): the model must predict each passage's last\n"
"word. Scored as EleutherAI's lm-evaluation-harness does: the context is\n"
"the text before the last space, the target is the rest with its leading\n"
"space; accuracy counts passages whose every target token is the argmax\n"
"given the true tokens before it; perplexity is exp(-mean over passages\n"
"of log p(target | context)), the log-probabilities summed over the\n"
"target's tokens. A context longer than the model's is cut at the left.\n\n"
"  -m, --model DIR   model directory or llm.c .bin (default: the installed\n"
"                    default model)\n"
"  --stride S        texts longer than the context are read in windows of\n"
"                    n_ctx tokens that advance by S, 1..n_ctx; each token is\n"
"                    scored once, with at least n_ctx - S tokens of context\n"
"                    after the first window (default n_ctx / 2)\n"
"  --json            print {\"loss\", \"perplexity\", \"n_tokens\", ...}\n"
"  --special         recognise <|endoftext|> in the text as the special token\n"
"  --data DIR        evaluate on DIR's shards instead of a FILE\n"
"  --split NAME      which shards: val (default) or train\n"
"  --task lambada    LAMBADA's last-word accuracy and perplexity on FILE;\n"
"                    --json prints {\"accuracy\", \"perplexity\", \"n\", ...}\n"
"  --decode          FILE's windows token by token through the KV cache, as\n"
"                    generation computes them (decode's kernels: Q8_0 and\n"
"                    Q4_0 weights multiply an int8-quantized input), not as\n"
"                    one batch; the same tokens scored, slower\n");
    cli_common_help(f, 20);
}

typedef struct {
    const char *model, *file, *data, *split, *task;
    int stride;          /* 0: n_ctx / 2 */
    bool json, special, decode;
} eval_options;

static int parse_options(int argc, char **argv, eval_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"stride", required_argument, NULL, OPT_STRIDE},
        {"json", no_argument, NULL, OPT_JSON},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"data", required_argument, NULL, OPT_DATA},
        {"split", required_argument, NULL, OPT_SPLIT},
        {"task", required_argument, NULL, OPT_TASK},
        {"decode", no_argument, NULL, OPT_DECODE},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv,
                                            CLI_SHORTOPTS_PREFIX "m:", opts,
                                            NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'm': o->model = optarg; break;
        case OPT_STRIDE:
            rc = cli_opt_int(CMD, "--stride", optarg, 1, 1 << 20, &o->stride);
            break;
        case OPT_JSON: o->json = true; break;
        case OPT_SPECIAL: o->special = true; break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_SPLIT: o->split = optarg; break;
        case OPT_TASK: o->task = optarg; break;
        case OPT_DECODE: o->decode = true; break;
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (o->split && strcmp(o->split, "val") != 0 && strcmp(o->split, "train") != 0)
        return cli_bad_value(CMD, "--split", o->split, "expected val or train");
    if (o->task && strcmp(o->task, "lambada") != 0)
        return cli_bad_value(CMD, "--task", o->task, "expected lambada");
    if (o->task && o->data)
        return cli_usage_error(CMD, "--task reads a FILE, not --data");
    if (o->decode && (o->task || o->data))
        return cli_usage_error(CMD, "--decode scores a FILE, not --data or --task");
    if (o->data) {
        if (argc - optind != 0)
            return cli_usage_error(CMD, "give --data DIR or a FILE, not both");
        return CLI_OK;
    }
    if (argc - optind != 1)
        return argc - optind == 0
                   ? cli_usage_error(CMD, "no FILE to evaluate")
                   : cli_usage_error(CMD, "one FILE only (got '%s' and '%s')",
                                     argv[optind], argv[optind + 1]);
    o->file = argv[optind];
    return CLI_OK;
}

typedef struct {
    double sum;      /* nats, over all scored predictions */
    size_t n_scored;
    int windows;
} eval_result;

/* Adds one window's new predictions to the total. */
static int add_window(void *user, size_t begin, int T, int first,
                      const float *logits, float loss) {
    eval_result *r = user;
    (void)begin, (void)logits;
    r->sum += (double)loss * (T - first);
    r->n_scored += (size_t)(T - first);
    return CLI_OK;
}

/* Scores consecutive windows of T tokens of a split's shards. */
static int score_shards(gpt2_model *m, const eval_options *o, eval_result *r) {
    gpt2_loader_options lo = gpt2_loader_defaults();
    int V = gpt2_model_config(m)->vocab_size;
    lo.batch_size = 1;
    lo.seq_len = gpt2_model_config(m)->n_ctx;
    lo.vocab_size = V < 65536 ? V : 65536;
    const char *split = o->split ? o->split : "val";
    gpt2_loader *ld = NULL;
    if (gpt2_loader_open(o->data, split, &lo, &ld) != GPT2_OK) {
        /* a split shorter than one window: use it whole */
        uint64_t n = 0;
        lo.seq_len = 0;
        gpt2_loader_options probe = lo;
        probe.seq_len = 1;
        gpt2_loader *p = NULL;
        if (gpt2_loader_open(o->data, split, &probe, &p) == GPT2_OK) n = gpt2_loader_num_tokens(p);
        gpt2_loader_free(p);
        if (n < 2) return cli_lib_error(CMD, "cannot read the %s shards in '%s'", split, o->data);
        lo.seq_len = (int)(n - 1);
        if (gpt2_loader_open(o->data, split, &lo, &ld) != GPT2_OK)
            return cli_lib_error(CMD, "cannot read the %s shards in '%s'", split, o->data);
    }
    int T = lo.seq_len, rc = CLI_OK;
    gpt2_batch *b = NULL;
    int *tokens = malloc(sizeof(int) * (size_t)T), *targets = malloc(sizeof(int) * (size_t)T);
    if (!tokens || !targets) rc = cli_error(CMD, CLI_FAIL, "out of memory");
    else if (gpt2_batch_new(m, 1, T, &b) != GPT2_OK)
        rc = cli_lib_error(CMD, "cannot make a batch of %d tokens", T);
    uint64_t nb = gpt2_loader_batches_per_epoch(ld);
    for (uint64_t i = 0; rc == CLI_OK && i < nb; i++) {
        float loss;
        gpt2_loader_next(ld, tokens, targets);
        if (gpt2_batch_forward(b, tokens, targets, NULL, &loss) != GPT2_OK)
            rc = cli_lib_error(CMD, "forward pass failed");
        r->sum += (double)loss * T;
        r->n_scored += (size_t)T;
        r->windows++;
    }
    gpt2_batch_free(b);
    gpt2_loader_free(ld);
    free(tokens);
    free(targets);
    return rc;
}

static int print_result(const eval_options *o, const eval_result *r,
                        int stride) {
    double loss = r->sum / (double)r->n_scored, ppl = exp(loss);
    if (!o->json) {
        printf("loss %.4f nats/token, perplexity %.2f, %zu tokens\n", loss,
               ppl, r->n_scored);
        return CLI_OK;
    }
    cJSON *j = cJSON_CreateObject();
    bool ok = j && cJSON_AddNumberToObject(j, "loss", loss) &&
              cJSON_AddNumberToObject(j, "perplexity", ppl) &&
              cJSON_AddNumberToObject(j, "n_tokens", (double)r->n_scored) &&
              cJSON_AddNumberToObject(j, "stride", stride) &&
              cJSON_AddNumberToObject(j, "windows", r->windows);
    char *s = ok ? cJSON_Print(j) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
    return s ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory writing JSON");
}

/* ------------------------------------------------------------- lambada */

/* LAMBADA (Paperno et al. 2016): passages whose last word a reader can
   only guess from the whole passage. This is the plain method of
   EleutherAI's lm-evaluation-harness (task lambada_openai): no stop-word
   filter, no detokenisation tricks. The GPT-2 paper's own preprocessing
   scores higher (45.99% / 35.13 for 124M, against the harness's 32.6% /
   40.1), so only the harness's figures are comparable with these. */

typedef struct {
    size_t n, correct;
    double sum_logp;   /* over passages, of log p(target | context) */
    gpt2_batch *batch; /* reused while passages have the same length */
    int batch_T;
    int *ids;          /* context + target tokens of one passage */
} lambada_state;

/* Where the target starts: at the last space, moved back over whitespace
   that ends the context (the harness moves it from context to target).
   0 when the passage has no context or no last word. */
static size_t lambada_cut(const char *text, size_t len) {
    const char *sp = memrchr(text, ' ', len);
    if (!sp || (size_t)(sp - text) + 1 == len) return 0;
    size_t cut = (size_t)(sp - text);
    while (cut > 0 && strchr(" \t\n\r\f\v", text[cut - 1])) cut--;
    return cut;
}

/* log softmax(row)[id] in double, and whether id is the argmax (the first
   of equal maxima, as torch.argmax). */
static double token_logp(const float *row, int V, int id, bool *is_max) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > row[best]) best = v;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += exp((double)row[v] - row[best]);
    *is_max = best == id;
    return (double)row[id] - row[best] - log(sum);
}

/* Scores the n_tgt target tokens at the end of ids[0..n): the model sees
   the last n_ctx tokens before the final one (the harness's
   (context + target)[-(n_ctx + 1):][:-1]). */
static int lambada_score(gpt2_model *m, lambada_state *st, int n, int n_tgt,
                         bool *correct, double *logp) {
    int n_ctx = gpt2_model_config(m)->n_ctx, V = gpt2_model_config(m)->vocab_size;
    int s = n - 1 > n_ctx ? n - 1 - n_ctx : 0, T = n - 1 - s;
    if (T != st->batch_T) {
        gpt2_batch_free(st->batch);
        st->batch_T = 0;
        if (gpt2_batch_new(m, 1, T, &st->batch) != GPT2_OK)
            return cli_lib_error(CMD, "cannot make a batch of %d tokens", T);
        st->batch_T = T;
    }
    const float *logits;
    if (gpt2_batch_forward(st->batch, st->ids + s, NULL, &logits, NULL) !=
        GPT2_OK)
        return cli_lib_error(CMD, "forward pass failed");
    *correct = true;
    *logp = 0.0;
    for (int k = n - n_tgt; k < n; k++) { /* row k-1-s predicts ids[k] */
        bool is_max;
        *logp += token_logp(logits + (size_t)(k - 1 - s) * V, V, st->ids[k],
                            &is_max);
        *correct = *correct && is_max;
    }
    return CLI_OK;
}

/* One jsonl line (s[0..len), not empty): parse, split, encode, score. */
static int lambada_line(gpt2_model *m, lambada_state *st, const char *file,
                        int line_no, const char *s, size_t len) {
    const gpt2_tokenizer *tok = gpt2_model_tokenizer(m);
    const char *rest = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &rest, 0);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
    int rc = CLI_OK;
    bool trailing = j && rest && rest < s + len &&
                    strspn(rest, " \t\r") < (size_t)(s + len - rest);
    if (!cJSON_IsObject(j) || !cJSON_IsString(t) || trailing) {
        cJSON_Delete(j);
        return cli_error(CMD, CLI_FAIL, "%s:%d: expected a JSON object with "
                         "a string \"text\"", file, line_no);
    }
    const char *text = t->valuestring;
    size_t tlen = strlen(text), cut = lambada_cut(text, tlen), nc = 0, nt = 0;
    if (cut == 0)
        rc = cli_error(CMD, CLI_FAIL, "%s:%d: the text needs a context, a "
                       "space and a last word", file, line_no);
    if (rc == CLI_OK &&
        (gpt2_tokenizer_encode(tok, text, cut, 0, st->ids, len + 1, &nc) ||
         gpt2_tokenizer_encode(tok, text + cut, tlen - cut, 0, st->ids + nc,
                               len + 1 - nc, &nt)))
        rc = cli_lib_error(CMD, "%s:%d: cannot encode the text", file, line_no);
    if (rc == CLI_OK && nt > (size_t)gpt2_model_config(m)->n_ctx)
        rc = cli_error(CMD, CLI_FAIL, "%s:%d: the last word is %zu tokens, "
                       "more than the context holds", file, line_no, nt);
    bool correct = false;
    double logp = 0.0;
    if (rc == CLI_OK)
        rc = lambada_score(m, st, (int)(nc + nt), (int)nt, &correct, &logp);
    if (rc == CLI_OK) {
        st->n++;
        st->correct += correct;
        st->sum_logp += logp;
    }
    cJSON_Delete(j);
    return rc;
}

static int lambada_print(const eval_options *o, const lambada_state *st) {
    double acc = (double)st->correct / (double)st->n;
    double ppl = exp(-st->sum_logp / (double)st->n);
    if (!o->json) {
        printf("lambada: accuracy %.2f%% (%zu of %zu passages), perplexity "
               "%.4g\n", 100.0 * acc, st->correct, st->n, ppl);
        return CLI_OK;
    }
    cJSON *j = cJSON_CreateObject();
    bool ok = j && cJSON_AddStringToObject(j, "task", "lambada") &&
              cJSON_AddNumberToObject(j, "accuracy", acc) &&
              cJSON_AddNumberToObject(j, "perplexity", ppl) &&
              cJSON_AddNumberToObject(j, "n", (double)st->n) &&
              cJSON_AddNumberToObject(j, "correct", (double)st->correct);
    char *out = ok ? cJSON_Print(j) : NULL;
    if (out) printf("%s\n", out);
    free(out);
    cJSON_Delete(j);
    return out ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory writing JSON");
}

/* Every non-blank line of the file is one passage. */
static int lambada(gpt2_model *m, const eval_options *o) {
    char *data = NULL;
    size_t len = 0;
    int rc = cli_read_input(CMD, o->file, &data, &len);
    if (rc != CLI_OK) return rc;
    lambada_state st = {0};
    st.ids = malloc((len + 1) * sizeof(int)); /* a token is >= 1 byte */
    if (!st.ids) rc = cli_error(CMD, CLI_FAIL, "out of memory");
    bool progress = isatty(STDERR_FILENO);
    int line_no = 0;
    for (size_t pos = 0; rc == CLI_OK && pos < len; line_no++) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        if (strspn(data + pos, " \t\r\n") < end - pos)
            rc = lambada_line(m, &st, o->file, line_no + 1, data + pos,
                              end - pos);
        if (progress && rc == CLI_OK && st.n)
            fprintf(stderr, "\rlambada: %zu passages, %zu right", st.n,
                    st.correct);
        pos = end + 1;
    }
    if (progress && st.n) fputc('\n', stderr);
    if (rc == CLI_OK && st.n == 0)
        rc = cli_error(CMD, CLI_FAIL, "'%s' holds no passages", o->file);
    if (rc == CLI_OK) rc = lambada_print(o, &st);
    gpt2_batch_free(st.batch);
    free(st.ids);
    free(data);
    return rc;
}

/* --decode: the windows of cli_sliding_windows, each fed token by token
   to a session (its KV cache), the same predictions scored. */
static int score_by_steps(gpt2_model *m, const int *ids, size_t n, int stride,
                          eval_result *r) {
    int n_ctx = gpt2_model_config(m)->n_ctx, V = gpt2_model_config(m)->vocab_size;
    int T = (size_t)n_ctx < n - 1 ? n_ctx : (int)(n - 1);
    gpt2_session *s = NULL;
    if (gpt2_session_new(m, NULL, &s) != GPT2_OK)
        return cli_lib_error(CMD, "cannot make a session");
    bool progress = isatty(STDERR_FILENO);
    size_t next = 1, last_begin = n - 1 - (size_t)T;
    int rc = CLI_OK;
    for (size_t begin = 0; next < n && rc == CLI_OK; begin += (size_t)stride) {
        if (begin > last_begin) begin = last_begin;
        int first = (int)(next - begin - 1);
        gpt2_session_reset(s);
        for (int i = 0; i < T && rc == CLI_OK; i++) {
            const float *logits;
            if (gpt2_session_step(s, ids[begin + (size_t)i], &logits) != GPT2_OK) {
                rc = cli_lib_error(CMD, "decode step failed at token %zu", begin + (size_t)i);
                break;
            }
            if (i < first) continue;
            bool is_max;
            r->sum -= token_logp(logits, V, ids[begin + (size_t)i + 1], &is_max);
            r->n_scored++;
        }
        r->windows++;
        next = begin + (size_t)T + 1;
        if (progress)
            fprintf(stderr, "\reval --decode: %zu of %zu tokens", next < n ? next : n, n);
    }
    if (progress) fputc('\n', stderr);
    gpt2_session_free(s);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_options o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    gpt2_model *m = NULL;
    int *ids = NULL;
    size_t n = 0;
    eval_result r = {0};
    rc = cli_load_model(CMD, o.model, true, &m);
    int n_ctx = m ? gpt2_model_config(m)->n_ctx : 0;
    int stride = o.stride ? o.stride : (n_ctx / 2 > 0 ? n_ctx / 2 : 1);
    if (rc == CLI_OK && stride > n_ctx) {
        char s[32];
        snprintf(s, sizeof s, "%d", stride);
        rc = cli_bad_value(CMD, "--stride", s,
                           "must not exceed the model's context");
    }
    if (rc == CLI_OK && o.task) {
        rc = lambada(m, &o);
    } else if (rc == CLI_OK && o.data) {
        rc = score_shards(m, &o, &r);
    } else {
        if (rc == CLI_OK) rc = cli_encode_file(CMD, m, o.file, o.special, &ids, &n);
        if (rc == CLI_OK && n < 2)
            rc = cli_error(CMD, CLI_FAIL, "'%s' has %zu token%s; scoring needs at "
                           "least 2 (the first is context only)", o.file, n,
                           n == 1 ? "" : "s");
        if (rc == CLI_OK && o.decode)
            rc = score_by_steps(m, ids, n, stride, &r);
        else if (rc == CLI_OK)
            rc = cli_sliding_windows(CMD, m, ids, n, stride, add_window, &r, &r.windows);
    }
    if (rc == CLI_OK && !o.task) rc = print_result(&o, &r, stride);
    free(ids);
    gpt2_model_free(m);
    return rc;
}
