/* cmd_prepare.c: `gpt2 prepare`: text files, folders of them, or stdin to
   token shards (llm.c's format) for `gpt2 train`, with <|endoftext|>
   before every document and a validation split. Progress on stderr. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const CMD = "prepare";

enum { OPT_VAL_FRACTION = 0x100, OPT_VAL, OPT_SHARD_TOKENS, OPT_QUIET };

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 prepare INPUT... -o DIR [options]\n"
"Tokenizes text into token shards for `gpt2 train`: DIR/train_000000.bin, ...\n"
"and DIR/val_000000.bin, ... (llm.c's format: a 256 x int32 header, magic\n"
"20240520, then uint16 token ids). Each INPUT is a text file, a folder (all\n"
"files below it, in path order) or - for stdin; every file is one document\n"
"and starts with <|endoftext|>. Files larger than memory are streamed.\n\n"
"  -o, --output DIR      where the shards go (created if missing)\n"
"  --val PATH            validation text (file or folder; repeatable);\n"
"                        excludes --val-fraction\n"
"  --val-fraction F      hold out the last F of the documents (or of a single\n"
"                        file, cut at a line start) for validation, in [0, 1)\n"
"                        (default 0)\n"
"  --shard-tokens N      tokens per shard (default 100000000)\n"
"  -m, --model DIR       use this model's tokenizer (default: GPT-2's)\n"
"  -q, --quiet           no progress on stderr\n");
    cli_common_help(f, 24);
}

typedef struct {
    const char **val;
    int n_val;
    double val_fraction;
    size_t shard_tokens;
    const char *out, *model;
    bool quiet;
    double t0, last;  /* start, and the last progress line */
} prepare_options;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void progress(void *user, const gpt2_prepare_stats *s) {
    prepare_options *o = user;
    if (o->quiet) return;
    /* a terminal gets one line rewritten twice a second; a log a line
       every ten seconds; both the final figures */
    bool tty = isatty(2), done = !s->current;
    double t = now(), dt = t - o->t0;
    if (!done && t - o->last < (tty ? 0.5 : 10.0)) return;
    o->last = t;
    double mb = s->n_bytes / 1e6;
    char pct[32] = "";
    if (s->n_bytes_total > 0)
        snprintf(pct, sizeof pct, " (%.0f%%)", 100.0 * s->n_bytes / s->n_bytes_total);
    fprintf(stderr, "%sprepare: %.1f MB read%s, %llu documents, %llu train + %llu val tokens, %.1f MB/s   ",
            tty ? "\r\033[K" : "", mb, pct, (unsigned long long)s->n_documents,
            (unsigned long long)s->n_train_tokens, (unsigned long long)s->n_val_tokens,
            dt > 0 ? mb / dt : 0.0);
    if (done || !tty) fputc('\n', stderr);
}

int cmd_prepare(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"output", required_argument, NULL, 'o'},
        {"model", required_argument, NULL, 'm'},
        {"val", required_argument, NULL, OPT_VAL},
        {"val-fraction", required_argument, NULL, OPT_VAL_FRACTION},
        {"shard-tokens", required_argument, NULL, OPT_SHARD_TOKENS},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    prepare_options o = {0};
    o.val = calloc((size_t)argc, sizeof *o.val);
    if (!o.val) return cli_error(CMD, CLI_FAIL, "out of memory");
    gpt2_prepare_options po = gpt2_prepare_defaults();
    o.shard_tokens = po.shard_tokens;
    int c, rc = CLI_OK, n;
    float f;
    while (rc == CLI_OK &&
           (c = getopt_long(argc, argv, CLI_SHORTOPTS_PREFIX "o:m:q", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); free(o.val); return CLI_OK;
        case 'o': o.out = optarg; break;
        case 'm': o.model = optarg; break;
        case 'q': o.quiet = true; break;
        case OPT_VAL: o.val[o.n_val++] = optarg; break;
        case OPT_VAL_FRACTION:
            rc = cli_opt_float(CMD, "--val-fraction", optarg, &f);
            if (rc == CLI_OK && !(f >= 0 && f < 1))
                rc = cli_bad_value(CMD, "--val-fraction", optarg, "must be in [0, 1)");
            o.val_fraction = f;
            break;
        case OPT_SHARD_TOKENS:
            rc = cli_opt_int(CMD, "--shard-tokens", optarg, 1, 2147483647L, &n);
            o.shard_tokens = (size_t)n;
            break;
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc == CLI_OK && !o.out) rc = cli_usage_error(CMD, "no output: give -o DIR");
    if (rc == CLI_OK && optind >= argc)
        rc = cli_usage_error(CMD, "no input: give text files, folders or -");
    if (rc == CLI_OK && o.n_val > 0 && o.val_fraction > 0)
        rc = cli_usage_error(CMD, "give --val or --val-fraction, not both");
    if (rc != CLI_OK) {
        free(o.val);
        return rc;
    }

    gpt2_tokenizer *tok = NULL;
    gpt2_model *m = NULL;
    const gpt2_tokenizer *t;
    if (o.model) {
        if ((rc = cli_load_model(CMD, o.model, true, &m)) != CLI_OK) {
            free(o.val);
            return rc;
        }
        t = gpt2_model_tokenizer(m);
    } else {
        if ((rc = cli_load_data_tokenizer(CMD, &tok)) != CLI_OK) {
            free(o.val);
            return rc;
        }
        t = tok;
    }
    po.inputs = (const char *const *)(argv + optind);
    po.n_inputs = argc - optind;
    po.val_inputs = o.n_val ? o.val : NULL;
    po.n_val_inputs = o.n_val;
    po.val_fraction = o.val_fraction;
    po.out_dir = o.out;
    po.shard_tokens = o.shard_tokens;
    po.progress = progress;
    po.user = &o;
    o.t0 = now();
    gpt2_prepare_stats st;
    if (gpt2_prepare(t, &po, &st) != GPT2_OK) {
        if (!o.quiet) fputc('\n', stderr);
        rc = cli_lib_error(CMD, "cannot prepare the shards");
    } else {
        printf("wrote %s: %llu documents; train: %llu tokens in %d shard%s; "
               "val: %llu tokens in %d shard%s\n",
               o.out, (unsigned long long)st.n_documents,
               (unsigned long long)st.n_train_tokens, st.n_train_shards,
               st.n_train_shards == 1 ? "" : "s", (unsigned long long)st.n_val_tokens,
               st.n_val_shards, st.n_val_shards == 1 ? "" : "s");
    }
    gpt2_tokenizer_free(tok);
    gpt2_model_free(m);
    free(o.val);
    return rc;
}
