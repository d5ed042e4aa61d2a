/* cmd_summarize.c: `gpt2 summarize`: the GPT-2 paper's zero-shot
   summarisation (Radford et al. 2019, section 3.6). The article, then
   "\nTL;DR:", then 100 tokens sampled with top-k 2; the first 3 sentences
   of what the model wrote are the summary. Also home of the sentence rule
   that `gpt2 translate` shares (app_sentence, declared in cli.h), so both
   commands cut text the same way. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const CMD = "summarize";

#define DEFAULT_SUFFIX "\nTL;DR:"

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 summarize [-m DIR] [options] [FILE]\n"
"Summarises the article in FILE (default: stdin) the way the GPT-2 paper\n"
"does, zero-shot: the prompt is the article (trailing whitespace removed)\n"
"followed by \"\\nTL;DR:\"; the model samples 100 tokens with top-k 2 and\n"
"temperature 1, and the first 3 sentences it writes are printed on one\n"
"line. A sentence ends at '.', '!' or '?' (and any closing quotes or\n"
"brackets) followed by whitespace, or at a line break; text cut off by\n"
"the token limit counts as a last sentence. An article longer than the\n"
"context keeps its end: the prompt leaves room for the new tokens.\n\n"
"  -m, --model DIR       model directory or llm.c .bin (default: the\n"
"                        installed default model, or $GPT2C_MODEL)\n"
"  -n, --tokens N        tokens to sample (default 100)\n"
"  -k, --top-k K         sample among the K most likely tokens; 0 = all\n"
"                        (default 2)\n"
"  --sentences S         sentences to keep, 1..1000 (default 3)\n"
"  -s, --seed S          random seed (default: from the time)\n"
"  --prompt-suffix STR   what follows the article (default \"\\nTL;DR:\");\n"
"                        \\n, \\t and \\\\ in STR are read as escapes\n");
    cli_common_help(f, 24);
}

typedef struct {
    const char *model, *file;
    const char *suffix_arg; /* --prompt-suffix as given, or NULL */
    int tokens, top_k, sentences;
    uint64_t seed;
    bool seed_given;
} sum_options;

enum { OPT_SENTENCES = 0x100, OPT_SUFFIX };

/* ---------------------------------------------------------- sentences */

static bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
}

/* Bytes of a closing quote or bracket at s (" ' ) ] ” ’ »), or 0: they
   belong to the sentence they close. */
static size_t closer_len(const char *s, size_t n) {
    if (n >= 1 && s[0] != '\0' && strchr("\"')]", s[0])) return 1;
    if (n >= 3 && (memcmp(s, "\xE2\x80\x9D", 3) == 0 ||
                   memcmp(s, "\xE2\x80\x99", 3) == 0))
        return 3;
    if (n >= 2 && memcmp(s, "\xC2\xBB", 2) == 0) return 2;
    return 0;
}

/* End of a sentence whose terminator ('.', '!', '?') is at s[i]: the
   offset after its closers when whitespace follows them, n when they
   reach the end of a final text, else 0 (not an end, or not yet known:
   more of a growing text could continue it, as in "..." or "3.5"). */
static size_t terminator_end(const char *s, size_t n, size_t i, bool final) {
    size_t j = i + 1, k;
    while (j < n && (k = closer_len(s + j, n - j)) > 0) j += k;
    if (j == n) return final ? n : 0;
    return is_space((unsigned char)s[j]) ? j : 0;
}

bool app_sentence(const char *s, size_t n, bool final, size_t *begin,
                  size_t *end) {
    size_t b = 0;
    while (b < n && is_space((unsigned char)s[b])) b++;
    if (b == n) return false;
    size_t e = 0;
    for (size_t i = b; i < n && e == 0; i++) {
        if (s[i] == '\n') e = i;
        else if (s[i] == '.' || s[i] == '!' || s[i] == '?')
            e = terminator_end(s, n, i, final);
    }
    if (e == 0) {
        if (!final) return false;
        e = n;
    }
    while (e > b && is_space((unsigned char)s[e - 1])) e--;
    *begin = b;
    *end = e;
    return true;
}

/* How many complete sentences text holds, counting at most max. */
static int count_sentences(const char *s, size_t n, bool final, int max) {
    size_t pos = 0, b, e;
    int count = 0;
    while (count < max && app_sentence(s + pos, n - pos, final, &b, &e)) {
        count++;
        pos += e;
    }
    return count;
}

/* The first max sentences of a final text, joined by single spaces, into
   out (which has room for n + 1 bytes: the result is never longer). */
static void first_sentences(const char *s, size_t n, int max, char *out) {
    size_t pos = 0, used = 0, b, e;
    for (int i = 0; i < max && app_sentence(s + pos, n - pos, true, &b, &e);
         i++) {
        if (used) out[used++] = ' ';
        memcpy(out + used, s + pos + b, e - b);
        used += e - b;
        pos += e;
    }
    out[used] = '\0';
}

/* ------------------------------------------------------------ options */

/* --prompt-suffix with \n, \t and \\ read as escapes (a shell makes a
   real line break awkward to type); malloc'd, NULL when out of memory. */
static char *unescape(const char *s) {
    char *out = malloc(strlen(s) + 1);
    if (!out) return NULL;
    size_t j = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '\\' && (s[i + 1] == 'n' || s[i + 1] == 't' ||
                             s[i + 1] == '\\')) {
            i++;
            out[j++] = s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : '\\';
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

static int parse_options(int argc, char **argv, sum_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"tokens", required_argument, NULL, 'n'},
        {"top-k", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 's'},
        {"sentences", required_argument, NULL, OPT_SENTENCES},
        {"prompt-suffix", required_argument, NULL, OPT_SUFFIX},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK &&
           (c = getopt_long(argc, argv, CLI_SHORTOPTS_PREFIX "m:n:k:s:", opts,
                            NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'm': o->model = optarg; break;
        case 'n':
            rc = cli_opt_int(CMD, "--tokens", optarg, 1, 1 << 20, &o->tokens);
            break;
        case 'k':
            rc = cli_opt_int(CMD, "--top-k", optarg, 0, 1 << 24, &o->top_k);
            break;
        case 's':
            rc = cli_opt_u64(CMD, "--seed", optarg, &o->seed);
            o->seed_given = true;
            break;
        case OPT_SENTENCES:
            rc = cli_opt_int(CMD, "--sentences", optarg, 1, 1000,
                             &o->sentences);
            break;
        case OPT_SUFFIX: o->suffix_arg = optarg; break;
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (argc - optind > 1)
        return cli_usage_error(CMD, "one FILE only (got '%s' and '%s')",
                               argv[optind], argv[optind + 1]);
    o->file = optind < argc ? argv[optind] : NULL;
    if (!o->file && isatty(STDIN_FILENO))
        return cli_usage_error(CMD, "no article: give a FILE or pipe it on "
                                    "stdin");
    return CLI_OK;
}

/* ------------------------------------------------------------- prompt */

/* The article, checked: valid UTF-8, not empty once trailing whitespace
   is gone (the suffix brings its own line break). */
static int read_article(const sum_options *o, char **text, size_t *len) {
    const char *name = o->file ? o->file : "stdin";
    int rc = cli_read_input(CMD, o->file, text, len);
    if (rc != CLI_OK) return rc;
    size_t bad = cli_utf8_valid_prefix(*text, *len);
    if (bad < *len)
        return cli_error(CMD, CLI_FAIL, "'%s' is not valid UTF-8: byte 0x%02x "
                         "at offset %zu", name, (unsigned char)(*text)[bad],
                         bad);
    while (*len > 0 && is_space((unsigned char)(*text)[*len - 1])) (*len)--;
    (*text)[*len] = '\0';
    if (*len == 0)
        return cli_error(CMD, CLI_FAIL, "the article in '%s' is empty", name);
    return CLI_OK;
}

/* ids of article + suffix. When they and the new tokens overflow the
   context, only the end is kept (the suffix and the article's last
   part): the paper's prompt ends with "TL;DR:", and the model must see it
   right before it writes. */
static int build_prompt(const sum_options *o, const gpt2_model *m,
                        const char *article, size_t len, const char *suffix,
                        int **ids, int *n_ids) {
    const gpt2_tokenizer *tok = gpt2_model_tokenizer(m);
    int n_ctx = gpt2_model_config(m)->n_ctx;
    size_t slen = strlen(suffix), n_suffix = 0, total = len + slen, n = 0;
    int *sids = malloc((slen + 1) * sizeof(int));
    char *text = malloc(total + 1);
    *ids = malloc((total + 1) * sizeof(int));
    int rc = CLI_OK;
    if (!sids || !text || !*ids) rc = cli_error(CMD, CLI_FAIL, "out of memory");
    if (rc == CLI_OK &&
        gpt2_tokenizer_encode(tok, suffix, slen, 0, sids, slen + 1,
                              &n_suffix) != GPT2_OK)
        rc = cli_lib_error(CMD, "cannot encode the prompt suffix");
    /* room for the suffix and at least one token of the article */
    if (rc == CLI_OK && (size_t)o->tokens + n_suffix + 1 > (size_t)n_ctx)
        rc = cli_error(CMD, CLI_USAGE, "--tokens %d and the %zu-token suffix "
                       "leave no room for the article in the model's context "
                       "of %d tokens", o->tokens, n_suffix, n_ctx);
    if (rc == CLI_OK) {
        memcpy(text, article, len);
        memcpy(text + len, suffix, slen + 1);
        if (gpt2_tokenizer_encode(tok, text, total, 0, *ids, total + 1, &n) !=
            GPT2_OK)
            rc = cli_lib_error(CMD, "cannot encode the article");
    }
    size_t room = (size_t)(n_ctx - o->tokens);
    if (rc == CLI_OK && n > room) {
        fprintf(stderr, "gpt2 %s: the prompt is %zu tokens; keeping its last "
                "%zu so that %d new tokens fit the context of %d\n", CMD, n,
                room, o->tokens, n_ctx);
        memmove(*ids, *ids + (n - room), room * sizeof(int));
        n = room;
    }
    *n_ids = (int)n;
    free(sids);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ generate */

/* The text generated so far; sampling stops once it holds enough
   complete sentences, since later tokens cannot change them. */
typedef struct {
    cli_text out;
    int want;
    bool failed; /* out of memory */
} sum_state;

static int on_step(void *user, const gpt2_step *step) {
    sum_state *st = user;
    if (!cli_text_append(&st->out, step->text, step->len)) {
        st->failed = true;
        return 1;
    }
    return count_sentences(st->out.text, st->out.len, false, st->want) >= st->want;
}

static int summarize(const sum_options *o, const gpt2_model *m,
                     const int *ids, int n_ids) {
    gpt2_generate_params p = gpt2_generate_defaults();
    p.max_new_tokens = o->tokens;
    p.sampler.temperature = 1.0f;
    p.sampler.top_k = o->top_k;
    p.sampler.seed = o->seed_given ? o->seed : cli_seed_from_clock();
    sum_state st = {.want = o->sentences};
    int rc = CLI_OK;
    if (gpt2_generate_ids(m, ids, n_ids, &p, on_step, &st, NULL) != GPT2_OK)
        rc = st.failed ? cli_error(CMD, CLI_FAIL, "out of memory")
                       : cli_lib_error(CMD, "generation failed");
    char *summary = rc == CLI_OK ? malloc(st.out.len + 1) : NULL;
    if (rc == CLI_OK && !summary) rc = cli_error(CMD, CLI_FAIL, "out of memory");
    if (rc == CLI_OK) {
        first_sentences(st.out.text ? st.out.text : "", st.out.len, o->sentences, summary);
        if (!*summary)
            fprintf(stderr, "gpt2 %s: the model wrote nothing after the "
                    "prompt\n", CMD);
        printf("%s\n", summary);
    }
    free(summary);
    free(st.out.text);
    return rc;
}

int cmd_summarize(int argc, char **argv) {
    sum_options o = {.tokens = 100, .top_k = 2, .sentences = 3};
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    char *article = NULL, *suffix = NULL;
    size_t len = 0;
    int *ids = NULL, n_ids = 0;
    gpt2_model *m = NULL;
    suffix = unescape(o.suffix_arg ? o.suffix_arg : DEFAULT_SUFFIX);
    if (!suffix) rc = cli_error(CMD, CLI_FAIL, "out of memory");
    if (rc == CLI_OK) rc = read_article(&o, &article, &len);
    if (rc == CLI_OK) rc = cli_load_model(CMD, o.model, true, &m);
    if (rc == CLI_OK) rc = build_prompt(&o, m, article, len, suffix, &ids,
                                        &n_ids);
    if (rc == CLI_OK) rc = summarize(&o, m, ids, n_ids);
    free(ids);
    free(article);
    free(suffix);
    gpt2_model_free(m);
    return rc;
}
