/* cmd_attention.c: `gpt2 attention`: which earlier tokens each token of a
   text attends to, in every layer and head, written as JSON, a
   self-contained HTML page, or an SVG/PNG heatmap of one layer and head.
   The library captures and writes (src/attention.c); this file reads the
   text, checks the options and the memory a capture needs, and picks the
   format from the output file's extension. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const CMD = "attention";

/* A capture keeps n_layer * n_head * T * T floats (twice with scores);
   beyond this many MiB it is refused unless --max-mb says otherwise. */
#define DEFAULT_MAX_MB 2048

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 attention [-m DIR] [-p TEXT | --prompt-file F] -o FILE [options]\n"
"Runs a text through the model once and writes the attention weights of\n"
"every layer and head (after the causal mask and the softmax): which\n"
"earlier tokens each token attends to. With neither -p nor --prompt-file,\n"
"the text is read from stdin when stdin is not a terminal. FILE's extension\n"
"picks the format:\n"
"  .json  {\"tokens\": [ids], \"pieces\": [texts], \"attention\":\n"
"         [layer][head][query][key]}, and with --scores \"scores\": the raw\n"
"         q.k / sqrt(head size) before the mask and softmax, masked cells\n"
"         null. Numbers have 6 significant digits; a text of T tokens gives\n"
"         n_layer * n_head * T * T of them (about 1.2 GB for gpt2 at 1024).\n"
"  .html  one self-contained page (no network): head view, model view,\n"
"         matrix view (scores, masked, softmax) and an \"attends to\" panel;\n"
"         keeps the scores unless --no-scores\n"
"  .svg   a heatmap of one layer and head (--layer, --head) with the tokens\n"
"         on both axes: white (0) to dark blue (1), masked cells grey\n"
"  .png   the same as an image (labels drawn when the text is at most 96\n"
"         tokens; longer texts get 1-7 pixel cells without labels)\n"
"Layers and heads count from 0.\n\n"
"  -m, --model DIR      model directory or llm.c .bin (default: the\n"
"                       installed default model, or $GPT2C_MODEL)\n"
"  -p, --prompt TEXT    the text\n"
"  -f, --prompt-file F  read the text from file F ('-' for stdin)\n"
"  -o, --output FILE    where to write (.json, .html, .svg or .png)\n"
"  --scores             also keep the raw scores (.json)\n"
"  --no-scores          leave the scores out of an .html page\n"
"  --layer L            the layer of an .svg/.png heatmap (default 0)\n"
"  --head H             the head of an .svg/.png heatmap (default 0)\n"
"  --special            recognise <|endoftext|> in the text as the special\n"
"                       token\n"
"  --max-mb N           refuse a capture that needs more than N MiB of\n"
"                       memory (default %d)\n", DEFAULT_MAX_MB);
    cli_common_help(f, 23);
}

typedef enum { FMT_JSON, FMT_HTML, FMT_SVG, FMT_PNG } out_format;

typedef struct {
    const char *model, *prompt, *prompt_file, *output;
    bool scores, no_scores, special;
    int layer, head;          /* -1: not given */
    int max_mb;
    out_format format;
} att_options;

enum { OPT_SCORES = 0x100, OPT_NO_SCORES, OPT_LAYER, OPT_HEAD, OPT_SPECIAL,
       OPT_MAX_MB };

/* The format named by the path's extension (any case). */
static int format_of(const char *path, out_format *out) {
    static const struct { const char *ext; out_format f; } table[] = {
        {".json", FMT_JSON}, {".html", FMT_HTML}, {".htm", FMT_HTML},
        {".svg", FMT_SVG}, {".png", FMT_PNG},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof table / sizeof table[0]; i++)
        if (strcasecmp(dot, table[i].ext) == 0) {
            *out = table[i].f;
            return CLI_OK;
        }
    return cli_bad_value(CMD, "-o", path,
                         "the extension must be .json, .html, .svg or .png");
}

/* The rules between options, once all are read. */
static int check_options(att_options *o) {
    if (o->prompt && o->prompt_file)
        return cli_usage_error(CMD, "give either -p or --prompt-file, not both");
    if (!o->output) return cli_usage_error(CMD, "no output: give -o FILE");
    int rc = format_of(o->output, &o->format);
    if (rc != CLI_OK) return rc;
    bool heatmap = o->format == FMT_SVG || o->format == FMT_PNG;
    if (!heatmap && (o->layer >= 0 || o->head >= 0))
        return cli_usage_error(CMD, "--layer and --head choose the map of an "
                                    ".svg or .png; .json and .html hold every "
                                    "layer and head");
    if (o->scores && o->no_scores)
        return cli_usage_error(CMD, "give either --scores or --no-scores");
    if (heatmap && (o->scores || o->no_scores))
        return cli_usage_error(CMD, "--scores and --no-scores apply to .json "
                                    "and .html; a heatmap shows the weights");
    if (o->format == FMT_JSON && o->no_scores)
        return cli_usage_error(CMD, "--no-scores applies to .html (.json has "
                                    "no scores unless --scores)");
    if (o->format == FMT_HTML && !o->no_scores) o->scores = true;
    return CLI_OK;
}

static int parse_options(int argc, char **argv, att_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'p'},
        {"prompt-file", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"scores", no_argument, NULL, OPT_SCORES},
        {"no-scores", no_argument, NULL, OPT_NO_SCORES},
        {"layer", required_argument, NULL, OPT_LAYER},
        {"head", required_argument, NULL, OPT_HEAD},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"max-mb", required_argument, NULL, OPT_MAX_MB},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK &&
           (c = getopt_long(argc, argv, CLI_SHORTOPTS_PREFIX "m:p:f:o:", opts,
                            NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'o': o->output = optarg; break;
        case OPT_SCORES: o->scores = true; break;
        case OPT_NO_SCORES: o->no_scores = true; break;
        case OPT_LAYER:
            rc = cli_opt_int(CMD, "--layer", optarg, 0, 1 << 20, &o->layer);
            break;
        case OPT_HEAD:
            rc = cli_opt_int(CMD, "--head", optarg, 0, 1 << 20, &o->head);
            break;
        case OPT_SPECIAL: o->special = true; break;
        case OPT_MAX_MB:
            rc = cli_opt_int(CMD, "--max-mb", optarg, 1, 1 << 30, &o->max_mb);
            break;
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s' (the text goes "
                                    "after -p)", argv[optind]);
    return check_options(o);
}

/* The text: -p, --prompt-file, or stdin. */
static int read_text(const att_options *o, char **text, size_t *len) {
    if (o->prompt) {
        *len = strlen(o->prompt);
        *text = strdup(o->prompt);
        return *text ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory");
    }
    if (!o->prompt_file && isatty(STDIN_FILENO))
        return cli_usage_error(CMD, "no text: give -p TEXT or --prompt-file F, "
                                    "or pipe it on stdin");
    return cli_read_input(CMD, o->prompt_file, text, len);
}

/* The text's tokens: at least one, at most the model's context. A bad
   text given with -p is a bad option value (exit 2), else bad data. */
static int encode_text(const att_options *o, const gpt2_model *m,
                       const char *text, size_t len, int **ids, int *n) {
    int code = o->prompt ? CLI_USAGE : CLI_FAIL;
    if (len == 0) return cli_error(CMD, code, "the text is empty");
    size_t got = 0;
    *ids = malloc((len + 1) * sizeof(int));
    if (!*ids) return cli_error(CMD, CLI_FAIL, "out of memory");
    if (gpt2_tokenizer_encode(gpt2_model_tokenizer(m), text, len,
                              o->special ? GPT2_ENCODE_SPECIAL : 0, *ids,
                              len + 1, &got) != GPT2_OK)
        return cli_lib_error(CMD, "cannot encode the text");
    int n_ctx = gpt2_model_config(m)->n_ctx;
    if (got > (size_t)n_ctx)
        return cli_error(CMD, code, "the text is %zu tokens, longer than the "
                                    "model's context of %d tokens", got, n_ctx);
    *n = (int)got;
    return CLI_OK;
}

/* Layer and head within the model (exit 2 otherwise), and the capture's
   memory within --max-mb (exit 1: the text is too long for the limit). */
static int check_sizes(const att_options *o, const gpt2_model *m, int T) {
    const gpt2_config *c = gpt2_model_config(m);
    if (o->layer >= c->n_layer)
        return cli_usage_error(CMD, "--layer %d: the model has %d layers "
                                    "(0..%d)", o->layer, c->n_layer,
                               c->n_layer - 1);
    if (o->head >= c->n_head)
        return cli_usage_error(CMD, "--head %d: the model has %d heads "
                                    "(0..%d)", o->head, c->n_head,
                               c->n_head - 1);
    double mib = (double)c->n_layer * c->n_head * T * T * sizeof(float) *
                 (o->scores ? 2 : 1) / (1024.0 * 1024.0);
    if (mib > o->max_mb)
        return cli_error(CMD, CLI_FAIL,
                         "%d tokens: %d layers x %d heads x %d x %d %s need "
                         "%.0f MiB, more than --max-mb %d: use a shorter "
                         "text or raise --max-mb", T, c->n_layer, c->n_head,
                         T, T, o->scores ? "weights and scores" : "weights",
                         mib, o->max_mb);
    return CLI_OK;
}

static int write_output(const att_options *o, const gpt2_attention *a,
                        const gpt2_tokenizer *t) {
    int layer = o->layer < 0 ? 0 : o->layer, head = o->head < 0 ? 0 : o->head;
    gpt2_status st = GPT2_OK;
    switch (o->format) {
    case FMT_JSON: st = gpt2_attention_write_json(a, t, o->output); break;
    case FMT_HTML: st = gpt2_attention_write_html(a, t, o->output); break;
    case FMT_SVG: st = gpt2_attention_write_svg(a, t, layer, head, o->output); break;
    case FMT_PNG: st = gpt2_attention_write_png(a, t, layer, head, o->output); break;
    }
    if (st != GPT2_OK) return cli_lib_error(CMD, "cannot write '%s'", o->output);
    int T = gpt2_attention_n_tokens(a);
    if (o->format == FMT_SVG || o->format == FMT_PNG)
        printf("wrote %s: layer %d, head %d over %d token%s\n", o->output,
               layer, head, T, T == 1 ? "" : "s");
    else
        printf("wrote %s: %d layers x %d heads over %d token%s%s\n", o->output,
               gpt2_attention_n_layers(a), gpt2_attention_n_heads(a), T,
               T == 1 ? "" : "s", o->scores ? ", with scores" : "");
    return CLI_OK;
}

int cmd_attention(int argc, char **argv) {
    att_options o = {.layer = -1, .head = -1, .max_mb = DEFAULT_MAX_MB};
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc; /* -1: --help */
    char *text = NULL;
    size_t len = 0;
    int *ids = NULL, n = 0;
    gpt2_model *m = NULL;
    gpt2_attention *a = NULL;
    rc = read_text(&o, &text, &len);
    if (rc == CLI_OK) rc = cli_load_model(CMD, o.model, true, &m);
    if (rc == CLI_OK) rc = encode_text(&o, m, text, len, &ids, &n);
    if (rc == CLI_OK) rc = check_sizes(&o, m, n);
    if (rc == CLI_OK && gpt2_attention_capture(m, ids, n, o.scores, &a) != GPT2_OK)
        rc = cli_lib_error(CMD, "cannot capture the attention");
    if (rc == CLI_OK) rc = write_output(&o, a, gpt2_model_tokenizer(m));
    gpt2_attention_free(a);
    gpt2_model_free(m);
    free(ids);
    free(text);
    return rc;
}
