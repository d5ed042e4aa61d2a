/* cmd_translate.c: `gpt2 translate`: the GPT-2 paper's few-shot
   translation (Radford et al. 2019, section 3.7). The model is shown
   example pairs "english sentence = french sentence", one per line, then
   "TEXT =", and decodes greedily; the first sentence it writes is the
   translation. Nothing here knows which languages the pairs hold: the
   left side is the source, so pairs written the other way round
   translate the other way. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const CMD = "translate";

#define DEFAULT_SEPARATOR " = "

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 translate [-m DIR] --pairs FILE [options] [TEXT...]\n"
"Translates TEXT (the arguments joined by spaces, or stdin) the way the\n"
"GPT-2 paper does, few-shot: the prompt is every example pair of FILE,\n"
"one per line as \"SOURCE = TARGET\", then \"TEXT =\"; the model decodes\n"
"greedily (always the most likely token) and the first sentence of its\n"
"first line is printed.\n\n"
"The pairs file: one pair per line, the source sentence, the separator\n"
"(\" = \" by default), the translation. Blank lines and lines starting with\n"
"'#' are skipped. When the pairs, TEXT and the new tokens do not fit the\n"
"context, the earliest pairs are left out.\n\n"
"  -m, --model DIR       model directory or llm.c .bin (default: the\n"
"                        installed default model, or $GPT2C_MODEL)\n"
"  --pairs FILE          the example pairs (required)\n"
"  -n, --max-tokens N    tokens to generate at most (default 100)\n"
"  --separator STR       what separates a sentence from its translation in\n"
"                        FILE and in the prompt (default \" = \"); the\n"
"                        prompt ends with it, trailing spaces removed\n");
    cli_common_help(f, 24);
}

typedef struct {
    const char *model, *pairs, *separator;
    int max_tokens;
    char *text;        /* joined arguments (malloc'd), or NULL: stdin */
} tr_options;

enum { OPT_PAIRS = 0x100, OPT_SEPARATOR };

static bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
}

/* s[*b..*e) without whitespace at either end. */
static void trim(const char *s, size_t *b, size_t *e) {
    while (*b < *e && is_space((unsigned char)s[*b])) (*b)++;
    while (*e > *b && is_space((unsigned char)s[*e - 1])) (*e)--;
}

/* The TEXT arguments joined by single spaces. */
static char *join_args(int argc, char **argv) {
    size_t len = 1;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = '\0';
    for (int i = 0; i < argc; i++) {
        if (i) strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

static int parse_options(int argc, char **argv, tr_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"pairs", required_argument, NULL, OPT_PAIRS},
        {"max-tokens", required_argument, NULL, 'n'},
        {"separator", required_argument, NULL, OPT_SEPARATOR},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv,
                                            CLI_SHORTOPTS_PREFIX "m:n:", opts,
                                            NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'm': o->model = optarg; break;
        case OPT_PAIRS: o->pairs = optarg; break;
        case 'n':
            rc = cli_opt_int(CMD, "--max-tokens", optarg, 1, 1 << 20,
                             &o->max_tokens);
            break;
        case OPT_SEPARATOR:
            o->separator = optarg;
            if (strspn(optarg, " \t") == strlen(optarg))
                rc = cli_bad_value(CMD, "--separator", optarg,
                                   "must hold more than spaces");
            break;
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (!o->pairs)
        return cli_usage_error(CMD, "no --pairs FILE of example translations");
    if (optind < argc) {
        o->text = join_args(argc - optind, argv + optind);
        if (!o->text) return cli_error(CMD, CLI_FAIL, "out of memory");
    } else if (isatty(STDIN_FILENO)) {
        return cli_usage_error(CMD, "no TEXT: give it as arguments or pipe it "
                                    "on stdin");
    }
    return CLI_OK;
}

/* ---------------------------------------------------------------- input */

/* TEXT, as one line: trimmed, each run of whitespace holding a line
   break made one space (a line break would end the prompt's last pair).
   Empty or invalid TEXT is a usage error when it came as arguments. */
static int read_text(const tr_options *o, char **text) {
    size_t len = 0;
    int code = o->text ? CLI_USAGE : CLI_FAIL;
    if (o->text) {
        *text = strdup(o->text);
        if (!*text) return cli_error(CMD, CLI_FAIL, "out of memory");
        len = strlen(*text);
    } else {
        int rc = cli_read_input(CMD, NULL, text, &len);
        if (rc != CLI_OK) return rc;
    }
    size_t bad = cli_utf8_valid_prefix(*text, len);
    if (bad < len)
        return cli_error(CMD, code, "TEXT is not valid UTF-8: byte 0x%02x at "
                         "offset %zu", (unsigned char)(*text)[bad], bad);
    size_t b = 0, e = len, j = 0;
    trim(*text, &b, &e);
    for (size_t i = b; i < e; i++) {
        char ch = (*text)[i];
        if (ch == '\n' || ch == '\r') {
            while (j > 0 && is_space((unsigned char)(*text)[j - 1])) j--;
            while (i + 1 < e && is_space((unsigned char)(*text)[i + 1])) i++;
            ch = ' ';
        }
        (*text)[j++] = ch;
    }
    (*text)[j] = '\0';
    if (j == 0) return cli_error(CMD, code, "TEXT is empty");
    return CLI_OK;
}

/* The example pairs, each "source<sep>target" rewritten into one prompt
   line "source<sep>target\n" (whitespace at the ends trimmed). */
typedef struct {
    char **lines;
    int n;
} pair_list;

static void pairs_free(pair_list *p) {
    for (int i = 0; i < p->n; i++) free(p->lines[i]);
    free(p->lines);
}

/* One line of the pairs file (s[0..n), no line break) into the list. */
static int add_pair(pair_list *p, const char *s, size_t n, const char *sep,
                    const char *file, int line_no) {
    size_t slen = strlen(sep);
    const char *hit = memmem(s, n, sep, slen);
    bool found = hit != NULL;
    size_t at = found ? (size_t)(hit - s) : n; /* where the separator starts */
    size_t lb = 0, le = at, rb = found ? at + slen : n, re = n;
    trim(s, &lb, &le);
    trim(s, &rb, &re);
    if (!found || lb == le || rb == re)
        return cli_error(CMD, CLI_FAIL, "%s:%d: expected 'SOURCE%sTARGET' "
                         "with text on both sides", file, line_no, sep);
    char **lines = realloc(p->lines, (size_t)(p->n + 1) * sizeof *lines);
    if (!lines) return cli_error(CMD, CLI_FAIL, "out of memory");
    p->lines = lines;
    size_t len = (le - lb) + slen + (re - rb) + 1;
    char *l = malloc(len + 1);
    if (!l) return cli_error(CMD, CLI_FAIL, "out of memory");
    snprintf(l, len + 1, "%.*s%s%.*s\n", (int)(le - lb), s + lb, sep,
             (int)(re - rb), s + rb);
    p->lines[p->n++] = l;
    return CLI_OK;
}

static int read_pairs(const tr_options *o, pair_list *p) {
    char *data = NULL;
    size_t len = 0;
    int rc = cli_read_input(CMD, o->pairs, &data, &len);
    if (rc != CLI_OK) return rc;
    size_t bad = cli_utf8_valid_prefix(data, len);
    if (bad < len)
        rc = cli_error(CMD, CLI_FAIL, "'%s' is not valid UTF-8: byte 0x%02x at "
                       "offset %zu", o->pairs, (unsigned char)data[bad], bad);
    int line_no = 0;
    for (size_t pos = 0; rc == CLI_OK && pos < len;) {
        size_t end = pos;
        while (end < len && data[end] != '\n') end++;
        line_no++;
        size_t b = pos, e = end;
        trim(data, &b, &e);
        if (b < e && data[b] != '#')
            rc = add_pair(p, data + pos, end - pos, o->separator, o->pairs,
                          line_no);
        pos = end + 1;
    }
    if (rc == CLI_OK && p->n == 0)
        rc = cli_error(CMD, CLI_FAIL, "'%s' holds no example pairs", o->pairs);
    free(data);
    return rc;
}

/* --------------------------------------------------------------- prompt */

/* Encodes pairs first.. then "TEXT<sep without trailing spaces>" into
   ids (malloc'd). */
static int encode_prompt(const gpt2_tokenizer *tok, const pair_list *p,
                         int first, const char *text, const char *sep,
                         int **ids, size_t *n) {
    size_t sep_len = strlen(sep), len = strlen(text) + sep_len + 1;
    while (sep_len > 0 && is_space((unsigned char)sep[sep_len - 1])) sep_len--;
    for (int i = first; i < p->n; i++) len += strlen(p->lines[i]);
    char *prompt = malloc(len);
    *ids = malloc(len * sizeof(int));
    int rc = CLI_OK;
    if (!prompt || !*ids) {
        rc = cli_error(CMD, CLI_FAIL, "out of memory");
    } else {
        size_t used = 0;
        for (int i = first; i < p->n; i++) {
            size_t l = strlen(p->lines[i]);
            memcpy(prompt + used, p->lines[i], l);
            used += l;
        }
        used += (size_t)sprintf(prompt + used, "%s%.*s", text, (int)sep_len,
                                sep);
        if (gpt2_tokenizer_encode(tok, prompt, used, 0, *ids, len, n) !=
            GPT2_OK)
            rc = cli_lib_error(CMD, "cannot encode the prompt");
    }
    free(prompt);
    return rc;
}

/* The prompt with as many pairs as fit beside the new tokens: the latest
   ones, since the earliest are dropped first. */
static int build_prompt(const tr_options *o, const gpt2_model *m,
                        const pair_list *p, const char *text, int **ids,
                        int *n_ids) {
    const gpt2_tokenizer *tok = gpt2_model_tokenizer(m);
    size_t room = (size_t)gpt2_model_config(m)->n_ctx;
    room = room > (size_t)o->max_tokens ? room - (size_t)o->max_tokens : 0;
    for (int first = 0; first < p->n; first++) {
        size_t n = 0;
        int rc = encode_prompt(tok, p, first, text, o->separator, ids, &n);
        if (rc != CLI_OK) return rc;
        if (n <= room) {
            if (first > 0)
                fprintf(stderr, "gpt2 %s: left out the first %d of %d pairs "
                        "to fit the context\n", CMD, first, p->n);
            *n_ids = (int)n;
            return CLI_OK;
        }
        free(*ids);
        *ids = NULL;
    }
    return cli_error(CMD, CLI_FAIL, "TEXT, one pair and %d new tokens do not "
                     "fit the model's context of %d tokens; try a smaller "
                     "--max-tokens", o->max_tokens,
                     gpt2_model_config(m)->n_ctx);
}

/* ------------------------------------------------------------- generate */

/* The text generated so far; decoding stops once it holds a complete
   sentence (or, by the stop string, a line break). */
typedef struct {
    cli_text out;
    bool failed; /* out of memory */
} tr_state;

static int on_step(void *user, const gpt2_step *step) {
    tr_state *st = user;
    if (!cli_text_append(&st->out, step->text, step->len)) {
        st->failed = true;
        return 1;
    }
    size_t b, e;
    return app_sentence(st->out.text, st->out.len, false, &b, &e);
}

static int translate(const tr_options *o, const gpt2_model *m, const int *ids,
                     int n_ids) {
    static const char *const stop[] = {"\n", NULL};
    gpt2_generate_params p = gpt2_generate_defaults();
    p.max_new_tokens = o->max_tokens;
    p.sampler.temperature = 0.0f; /* greedy, as the paper */
    p.stop = stop;
    tr_state st = {0};
    if (gpt2_generate_ids(m, ids, n_ids, &p, on_step, &st, NULL) != GPT2_OK) {
        free(st.out.text);
        return st.failed ? cli_error(CMD, CLI_FAIL, "out of memory")
                         : cli_lib_error(CMD, "generation failed");
    }
    size_t b = 0, e = 0;
    if (!app_sentence(st.out.text ? st.out.text : "", st.out.len, true, &b, &e))
        fprintf(stderr, "gpt2 %s: the model wrote no translation\n", CMD);
    printf("%.*s\n", (int)(e - b), st.out.text ? st.out.text + b : "");
    free(st.out.text);
    return CLI_OK;
}

int cmd_translate(int argc, char **argv) {
    tr_options o = {.separator = DEFAULT_SEPARATOR, .max_tokens = 100};
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) {
        free(o.text);
        return rc < 0 ? CLI_OK : rc;
    }
    char *text = NULL;
    int *ids = NULL, n_ids = 0;
    pair_list pairs = {0};
    gpt2_model *m = NULL;
    rc = read_text(&o, &text);
    if (rc == CLI_OK) rc = read_pairs(&o, &pairs);
    if (rc == CLI_OK) rc = cli_load_model(CMD, o.model, true, &m);
    if (rc == CLI_OK) rc = build_prompt(&o, m, &pairs, text, &ids, &n_ids);
    if (rc == CLI_OK) rc = translate(&o, m, ids, n_ids);
    free(ids);
    free(text);
    free(o.text);
    pairs_free(&pairs);
    gpt2_model_free(m);
    return rc;
}
