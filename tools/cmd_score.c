/* cmd_score.c: `gpt2 score`: the log-probability the model gives every
   token of a text, log p(token_i | tokens before i), the per-token view of
   what `gpt2 eval` sums up. The first token has no context, so it has no
   prediction: the table shows '-', the JSON null. A text longer than the
   context is read in the same overlapping windows as `gpt2 eval` (see
   cmd_eval.c): each token is scored once, by the first window that holds
   the token before it, so the logprobs sum to -(eval's loss) * n_tokens. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const CMD = "score";

enum { OPT_JSON = 0x100, OPT_STRIDE, OPT_SPECIAL };

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 score [-m DIR] [--stride S] [--json] [--special] FILE\n"
"The log-probability (natural log) of every token of FILE ('-' for stdin)\n"
"under the model: log p(token | the tokens before it). The first token has\n"
"no context and no prediction ('-' in the table, null in JSON). Then the\n"
"total over the N-1 predictions, their mean, and the perplexity\n"
"exp(-mean), which `gpt2 eval` reports for the same text.\n\n"
"  -m, --model DIR   model directory or llm.c .bin (default: the installed\n"
"                    default model)\n"
"  --stride S        texts longer than the context are read in windows of\n"
"                    n_ctx tokens that advance by S, 1..n_ctx, as `gpt2 eval`\n"
"                    does (default n_ctx / 2)\n"
"  --json            print {\"tokens\", \"pieces\", \"logprobs\", \"n_scored\",\n"
"                    \"total_logprob\", \"mean_logprob\", \"perplexity\"}\n"
"  --special         recognise <|endoftext|> in the text as the special token\n");
    cli_common_help(f, 20);
}

typedef struct {
    const char *model, *file;
    int stride;
    bool json, special;
} score_options;

static int parse_options(int argc, char **argv, score_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"stride", required_argument, NULL, OPT_STRIDE},
        {"json", no_argument, NULL, OPT_JSON},
        {"special", no_argument, NULL, OPT_SPECIAL},
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
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (argc - optind != 1)
        return argc - optind == 0
                   ? cli_usage_error(CMD, "no FILE to score")
                   : cli_usage_error(CMD, "one FILE only (got '%s' and '%s')",
                                     argv[optind], argv[optind + 1]);
    o->file = argv[optind];
    return CLI_OK;
}

/* log softmax(row)[target], in double: one row of V logits. */
static double token_logprob(const float *row, int V, int target) {
    float mx = row[0];
    for (int i = 1; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    return (double)row[target] - mx - log(sum);
}

/* lp[t] for the predictions a window makes first (lp[0], the first
   token's, has none and stays NAN). */
typedef struct {
    const int *ids;
    int V;
    double *lp;
} score_state;

static int score_window(void *user, size_t begin, int T, int first,
                        const float *logits, float loss) {
    score_state *s = user;
    (void)loss;
    for (int i = first; i < T; i++) {
        size_t t = begin + (size_t)i + 1; /* the token input i predicts */
        s->lp[t] = token_logprob(logits + (size_t)i * s->V, s->V, s->ids[t]);
    }
    return CLI_OK;
}

/* ------------------------------------------------------------ output */

/* A JSON string of a token's bytes: invalid UTF-8 becomes U+FFFD. */
static bool print_json_piece(const gpt2_tokenizer *t, int id) {
    size_t n = 0;
    const char *p = gpt2_tokenizer_piece(t, id, &n);
    if (!p) return fputs("null", stdout) >= 0;
    char *clean = cli_utf8_sanitize(p, n);
    if (!clean) return false;
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)clean; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c == '\n') fputs("\\n", stdout);
        else if (*c == '\t') fputs("\\t", stdout);
        else if (*c == '\r') fputs("\\r", stdout);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
    putchar('"');
    free(clean);
    return true;
}

typedef struct {
    double total;   /* sum of the logprobs of tokens 1..n-1 */
    size_t n_scored;
    int windows, stride;
} score_summary;

/* A number, or null when there is none (one token: no mean). */
static void print_json_number(const char *key, double v, bool last) {
    if (isfinite(v)) printf("\"%s\": %.10g%s\n", key, v, last ? "" : ",");
    else printf("\"%s\": null%s\n", key, last ? "" : ",");
}

static int print_json(const gpt2_tokenizer *t, const int *ids, size_t n,
                      const double *lp, const score_summary *s) {
    bool ok = true;
    fputs("{\"tokens\": [", stdout);
    for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
    fputs("],\n\"pieces\": [", stdout);
    for (size_t i = 0; i < n && ok; i++) {
        if (i) fputs(", ", stdout);
        ok = print_json_piece(t, ids[i]);
    }
    fputs("],\n\"logprobs\": [", stdout);
    for (size_t i = 0; i < n; i++) {
        if (i) fputs(", ", stdout);
        if (isnan(lp[i])) fputs("null", stdout);
        else printf("%.9g", lp[i]);
    }
    fputs("],\n", stdout);
    double mean = s->n_scored ? s->total / (double)s->n_scored : NAN;
    printf("\"n_tokens\": %zu,\n\"n_scored\": %zu,\n", n, s->n_scored);
    print_json_number("total_logprob", s->total, false);
    print_json_number("mean_logprob", mean, false);
    print_json_number("perplexity", exp(-mean), false);
    printf("\"stride\": %d,\n\"windows\": %d}\n", s->stride, s->windows);
    return ok ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory writing JSON");
}

static void print_table(const gpt2_tokenizer *t, const int *ids, size_t n,
                        const double *lp, const score_summary *s) {
    char piece[64];
    printf("%6s %7s  %-24s %10s %10s\n", "#", "token", "piece", "logprob",
           "prob");
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *p = gpt2_tokenizer_piece(t, ids[i], &len);
        char quoted[80];
        cli_escape_piece(p ? p : "", p ? len : 0, true, piece, sizeof piece);
        snprintf(quoted, sizeof quoted, "\"%s\"", piece);
        if (isnan(lp[i]))
            printf("%6zu %7d  %-24s %10s %10s\n", i, ids[i], quoted, "-", "-");
        else
            printf("%6zu %7d  %-24s %10.4f %10.4g\n", i, ids[i], quoted, lp[i],
                   exp(lp[i]));
    }
    if (s->n_scored == 0) {
        printf("no predictions: one token has no context to be predicted "
               "from\n");
        return;
    }
    double mean = s->total / (double)s->n_scored;
    printf("total logprob %.4f nats over %zu predictions; mean %.4f, "
           "perplexity %.2f\n", s->total, s->n_scored, mean, exp(-mean));
}

int cmd_score(int argc, char **argv) {
    score_options o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc; /* -1: --help */
    gpt2_model *m = NULL;
    int *ids = NULL;
    double *lp = NULL;
    size_t n = 0;
    score_summary s = {0};
    rc = cli_load_model(CMD, o.model, true, &m);
    int n_ctx = m ? gpt2_model_config(m)->n_ctx : 0;
    s.stride = o.stride ? o.stride : (n_ctx / 2 > 0 ? n_ctx / 2 : 1);
    if (rc == CLI_OK && s.stride > n_ctx) {
        char v[32];
        snprintf(v, sizeof v, "%d", s.stride);
        rc = cli_bad_value(CMD, "--stride", v,
                           "must not exceed the model's context");
    }
    if (rc == CLI_OK) rc = cli_encode_file(CMD, m, o.file, o.special, &ids, &n);
    if (rc == CLI_OK && n == 0)
        rc = cli_error(CMD, CLI_FAIL, "'%s' is empty: no tokens to score", o.file);
    if (rc == CLI_OK && !(lp = malloc(n * sizeof(double))))
        rc = cli_error(CMD, CLI_FAIL, "out of memory");
    if (rc == CLI_OK) {
        score_state st = {ids, gpt2_model_config(m)->vocab_size, lp};
        for (size_t i = 0; i < n; i++) lp[i] = NAN;
        if (n >= 2)
            rc = cli_sliding_windows(CMD, m, ids, n, s.stride, score_window, &st, &s.windows);
    }
    if (rc == CLI_OK) {
        for (size_t i = 1; i < n; i++) s.total += lp[i];
        s.n_scored = n - 1;
        if (o.json) rc = print_json(gpt2_model_tokenizer(m), ids, n, lp, &s);
        else print_table(gpt2_model_tokenizer(m), ids, n, lp, &s);
    }
    if (rc == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = cli_error(CMD, CLI_FAIL, "cannot write to stdout");
    free(lp);
    free(ids);
    gpt2_model_free(m);
    return rc;
}
