/* cmd_generate.c: `gpt2 generate`: continue a prompt. The library does the
   work (KV cache, sampling, stop strings, UTF-8 hold-back); this file
   gets the prompt, checks it, streams each step's text to stdout, and can
   show the tutorial's figure of the top candidates at every step or
   collect everything into one JSON object. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const CMD = "generate";

#define MAX_NEW_TOKENS 1000000

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 generate [-m DIR] [-p TEXT | --prompt-file F | --unconditional]\n"
"                     [options]\n"
"Continues a prompt with a GPT-2 and streams the text to stdout as it is\n"
"made. With neither -p nor --prompt-file, the prompt is read from stdin when\n"
"stdin is not a terminal.\n\n"
"  -m, --model DIR          model directory or llm.c .bin (default: the\n"
"                           installed default model, or $GPT2C_MODEL)\n"
"  -p, --prompt TEXT        the prompt\n"
"  -f, --prompt-file F      read the prompt from file F ('-' for stdin)\n"
"  --unconditional          start from <|endoftext|> alone, with no prompt\n"
"  -n, --max-tokens N       tokens to generate, 1..%d (default 64)\n"
"  -t, --temperature T      >= 0; 0 = greedy, always the most likely token\n"
"                           (default 1.0)\n"
"  -k, --top-k K            sample among the K most likely; 0 = off\n"
"                           (default 40)\n"
"  --top-p P                sample among the smallest set of tokens whose\n"
"                           probability is >= P; in (0, 1] (default 1.0:\n"
"                           off)\n"
"  --repetition-penalty R   > 0; > 1 discourages tokens already seen\n"
"                           (default 1.0 = off)\n"
"  -s, --seed S             random seed (default: from the time and process\n"
"                           id; --json reports it)\n"
"  --stop S                 stop when the text would contain S; S is not\n"
"                           printed (repeatable)\n"
"  --echo                   print the prompt before the continuation\n"
"  --ignore-eos             go on past <|endoftext|>\n"
"  --no-kv-cache            recompute the whole window at every step (slow;\n"
"                           same result)\n"
"  --special                recognise <|endoftext|> in the prompt as the\n"
"                           special token\n"
"  --show-probs K           print the K most likely candidates of every step,\n"
"                           with their probabilities, to stderr (with --json:\n"
"                           in \"steps\" instead) (default off)\n"
"  --json                   print one JSON object at the end instead of\n"
"                           streaming: text, tokens, prompt_tokens, seed, and\n"
"                           steps with --show-probs\n"
            , MAX_NEW_TOKENS);
    cli_common_help(f, 27);
}

typedef struct {
    const char *model;
    const char *prompt;       /* -p, or NULL */
    const char *prompt_file;  /* --prompt-file, or NULL */
    bool unconditional, echo, special, json;
    int show_probs;           /* K; 0: off */
    bool seed_given;
    gpt2_generate_params p;
    const char **stop;        /* NULL-terminated */
    int n_stop;
} gen_options;

enum {
    OPT_TOP_P = 0x100, OPT_REP, OPT_STOP, OPT_ECHO, OPT_IGNORE_EOS,
    OPT_NO_KV, OPT_SPECIAL, OPT_SHOW_PROBS, OPT_JSON, OPT_UNCOND
};

/* A seed nobody chose: time and pid, mixed (splitmix64's finaliser), kept
   below 2^53 so it survives any JSON reader as a number. */
static uint64_t seed_from_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
                 ((uint64_t)getpid() << 32);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x >> 11;
}

/* The option values whose rules are more than a range of integers. */
static int check_sampler(const gpt2_sampler_params *s, char **texts) {
    if (!(s->temperature >= 0))
        return cli_bad_value(CMD, "--temperature", texts[0],
                             "must be >= 0 (0 = greedy)");
    if (!(s->top_p > 0 && s->top_p <= 1))
        return cli_bad_value(CMD, "--top-p", texts[1], "must be in (0, 1]");
    if (!(s->repetition_penalty > 0))
        return cli_bad_value(CMD, "--repetition-penalty", texts[2],
                             "must be > 0 (1 = off)");
    return CLI_OK;
}

static int parse_options(int argc, char **argv, gen_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'p'},
        {"prompt-file", required_argument, NULL, 'f'},
        {"max-tokens", required_argument, NULL, 'n'},
        {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 's'},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"repetition-penalty", required_argument, NULL, OPT_REP},
        {"stop", required_argument, NULL, OPT_STOP},
        {"echo", no_argument, NULL, OPT_ECHO},
        {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"no-kv-cache", no_argument, NULL, OPT_NO_KV},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"show-probs", required_argument, NULL, OPT_SHOW_PROBS},
        {"json", no_argument, NULL, OPT_JSON},
        {"unconditional", no_argument, NULL, OPT_UNCOND},
        {NULL, 0, NULL, 0},
    };
    /* the texts of the float options, for messages after parsing */
    char one[] = "1.0";
    char *texts[3] = {one, one, one};
    gpt2_sampler_params *s = &o->p.sampler;
    int c, rc = CLI_OK;
    while (rc == CLI_OK &&
           (c = getopt_long(argc, argv, CLI_SHORTOPTS_PREFIX "m:p:f:n:t:k:s:",
                            opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'n':
            rc = cli_opt_int(CMD, "-n", optarg, 1, MAX_NEW_TOKENS,
                             &o->p.max_new_tokens);
            break;
        case 't':
            texts[0] = optarg;
            rc = cli_opt_float(CMD, "--temperature", optarg, &s->temperature);
            break;
        case 'k':
            rc = cli_opt_int(CMD, "--top-k", optarg, 0, 1 << 24, &s->top_k);
            break;
        case 's':
            rc = cli_opt_u64(CMD, "--seed", optarg, &s->seed);
            o->seed_given = true;
            break;
        case OPT_TOP_P:
            texts[1] = optarg;
            rc = cli_opt_float(CMD, "--top-p", optarg, &s->top_p);
            break;
        case OPT_REP:
            texts[2] = optarg;
            rc = cli_opt_float(CMD, "--repetition-penalty", optarg,
                               &s->repetition_penalty);
            break;
        case OPT_STOP:
            if (*optarg == '\0')
                rc = cli_bad_value(CMD, "--stop", "''", "must not be empty");
            else
                o->stop[o->n_stop++] = optarg;
            break;
        case OPT_ECHO: o->echo = true; break;
        case OPT_IGNORE_EOS: o->p.stop_at_eot = 0; break;
        case OPT_NO_KV: o->p.kv_cache = 0; break;
        case OPT_SPECIAL: o->special = true; break;
        case OPT_SHOW_PROBS:
            rc = cli_opt_int(CMD, "--show-probs", optarg, 1, 1 << 24,
                             &o->show_probs);
            break;
        case OPT_JSON: o->json = true; break;
        case OPT_UNCOND: o->unconditional = true; break;
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s' (the prompt "
                                    "goes after -p)", argv[optind]);
    if (o->unconditional && (o->prompt || o->prompt_file))
        return cli_usage_error(CMD, "--unconditional takes no prompt; drop "
                                    "-p / --prompt-file");
    if (o->prompt && o->prompt_file)
        return cli_usage_error(CMD, "give either -p or --prompt-file, not "
                                    "both");
    o->stop[o->n_stop] = NULL;
    o->p.stop = o->n_stop ? o->stop : NULL;
    return check_sampler(s, texts);
}

/* ------------------------------------------------------------ prompt */

/* The prompt text: -p, --prompt-file, or stdin. *from_option tells the
   caller that a bad prompt is a bad option value (exit 2) rather than
   bad data (exit 1). */
static int read_prompt(const gen_options *o, char **text, size_t *len,
                       bool *from_option) {
    *from_option = o->prompt != NULL;
    if (o->prompt) {
        *len = strlen(o->prompt);
        *text = strdup(o->prompt);
        if (!*text) return cli_error(CMD, CLI_FAIL, "out of memory");
        return CLI_OK;
    }
    if (!o->prompt_file && isatty(STDIN_FILENO))
        return cli_usage_error(CMD, "no prompt: give -p TEXT or --prompt-file"
                                    " F, pipe it on stdin, or use "
                                    "--unconditional");
    return cli_read_input(CMD, o->prompt_file, text, len);
}

/* Checks and encodes the prompt: not empty, valid UTF-8, fits the
   context. --unconditional starts from <|endoftext|> alone. */
static int encode_prompt(const gen_options *o, const gpt2_model *m,
                         const char *text, size_t len, bool from_option,
                         int **ids, int *n) {
    const gpt2_tokenizer *tok = gpt2_model_tokenizer(m);
    int code = from_option ? CLI_USAGE : CLI_FAIL;
    if (o->unconditional) {
        int eot = gpt2_tokenizer_eot(tok);
        if (eot < 0)
            return cli_error(CMD, CLI_FAIL, "--unconditional: the tokenizer "
                                            "has no <|endoftext|> token");
        *ids = malloc(sizeof(int));
        if (!*ids) return cli_error(CMD, CLI_FAIL, "out of memory");
        (*ids)[0] = eot;
        *n = 1;
        return CLI_OK;
    }
    if (len == 0)
        return cli_error(CMD, code, "the prompt is empty; use "
                                    "--unconditional to generate from "
                                    "<|endoftext|> alone");
    size_t bad = cli_utf8_valid_prefix(text, len);
    if (bad < len)
        return cli_error(CMD, code, "the prompt is not valid UTF-8: byte "
                                    "0x%02x at offset %zu",
                         (unsigned char)text[bad], bad);
    size_t cap = len + 1, got = 0;
    *ids = malloc(cap * sizeof(int));
    if (!*ids) return cli_error(CMD, CLI_FAIL, "out of memory");
    if (gpt2_tokenizer_encode(tok, text, len,
                              o->special ? GPT2_ENCODE_SPECIAL : 0, *ids, cap,
                              &got) != GPT2_OK)
        return cli_lib_error(CMD, "cannot encode the prompt");
    int n_ctx = gpt2_model_config(m)->n_ctx;
    if (got > (size_t)n_ctx)
        return cli_error(CMD, CLI_FAIL, "the prompt is %zu tokens, longer "
                                        "than the model's context of %d "
                                        "tokens", got, n_ctx);
    *n = (int)got;
    return CLI_OK;
}

/* ------------------------------------------------------------- steps */

/* What the step callback needs and what it collects for --json. */
typedef struct {
    const gpt2_tokenizer *tok;
    int vocab;
    int show_probs;
    bool json;
    int *top_ids;       /* show_probs entries */
    float *top_lps;
    char *text;         /* --json: the text released so far */
    size_t text_len, text_cap;
    int *tokens;        /* --json: the ids generated */
    int n_tokens, tokens_cap;
    cJSON *steps;       /* --json with --show-probs */
    bool last_newline;  /* the stream's last byte was '\n' */
    bool failed;        /* out of memory while collecting */
} gen_state;

static bool append_text(gen_state *st, const char *s, size_t n) {
    if (st->text_len + n + 1 > st->text_cap) {
        size_t cap = st->text_cap ? st->text_cap : 256;
        while (cap < st->text_len + n + 1) cap *= 2;
        char *t = realloc(st->text, cap);
        if (!t) return false;
        st->text = t;
        st->text_cap = cap;
    }
    memcpy(st->text + st->text_len, s, n);
    st->text_len += n;
    st->text[st->text_len] = '\0';
    return true;
}

static bool append_token(gen_state *st, int id) {
    if (st->n_tokens == st->tokens_cap) {
        int cap = st->tokens_cap ? 2 * st->tokens_cap : 256;
        int *t = realloc(st->tokens, (size_t)cap * sizeof(int));
        if (!t) return false;
        st->tokens = t;
        st->tokens_cap = cap;
    }
    st->tokens[st->n_tokens++] = id;
    return true;
}

/* A token's text, quoted and escaped, for the candidates table. */
static void quoted_piece(const gpt2_tokenizer *tok, int id, char *buf,
                         size_t cap) {
    size_t n = 0;
    const char *piece = gpt2_tokenizer_piece(tok, id, &n);
    buf[0] = '"';
    cli_escape_piece(piece ? piece : "", piece ? n : 0, true, buf + 1,
                     cap - 2);
    size_t used = strlen(buf);
    buf[used] = '"';
    buf[used + 1] = '\0';
}

/* A probability readably: 0.1234, or 3.21e-05 when that would show 0. */
static const char *fmt_prob(float logprob, char *buf) {
    double p = exp(logprob);
    snprintf(buf, 32, p >= 0.001 ? "%.4f" : "%.2e", p);
    return buf;
}

/* The tutorial's figure: the K most likely next tokens and the choice. */
static void print_candidates(const gen_state *st, const gpt2_step *step,
                             int k) {
    char q[512], p[32];
    bool shown = false;
    fprintf(stderr, "step %d\n", step->index + 1);
    for (int i = 0; i < k; i++) {
        bool chosen = st->top_ids[i] == step->token;
        shown |= chosen;
        quoted_piece(st->tok, st->top_ids[i], q, sizeof q);
        fprintf(stderr, "  #%-3d %-18s p=%s%s\n", i + 1, q,
                fmt_prob(st->top_lps[i], p), chosen ? "  <- chosen" : "");
    }
    if (!shown) {
        quoted_piece(st->tok, step->token, q, sizeof q);
        fprintf(stderr, "  chosen %-16s p=%s (not in the top %d)\n", q,
                fmt_prob(step->logprob, p), k);
    }
}

static cJSON *json_piece(const gen_state *st, int id, double logprob) {
    size_t n = 0;
    const char *piece = gpt2_tokenizer_piece(st->tok, id, &n);
    char *clean = cli_utf8_sanitize(piece ? piece : "", piece ? n : 0);
    cJSON *o = cJSON_CreateObject();
    if (!clean || !o || !cJSON_AddNumberToObject(o, "token", id) ||
        !cJSON_AddStringToObject(o, "piece", clean) ||
        !cJSON_AddNumberToObject(o, "logprob", logprob)) {
        cJSON_Delete(o);
        o = NULL;
    }
    free(clean);
    return o;
}

/* One entry of "steps": the chosen token and the top K. */
static bool json_step(gen_state *st, const gpt2_step *step, int k) {
    cJSON *o = json_piece(st, step->token, step->logprob);
    cJSON *top = cJSON_CreateArray();
    if (!o || !top || !cJSON_AddItemToObject(o, "top", top)) {
        cJSON_Delete(o);
        cJSON_Delete(top);
        return false;
    }
    for (int i = 0; i < k; i++) {
        cJSON *c = json_piece(st, st->top_ids[i], st->top_lps[i]);
        if (!c || !cJSON_AddItemToArray(top, c)) {
            cJSON_Delete(c);
            cJSON_Delete(o);
            return false;
        }
    }
    return cJSON_AddItemToArray(st->steps, o);
}

static int on_step(void *user, const gpt2_step *step) {
    gen_state *st = user;
    int k = 0;
    if (st->show_probs)
        k = gpt2_top_candidates(step->logits, st->vocab, st->show_probs,
                                st->top_ids, st->top_lps);
    if (!st->json) {
        if (step->len) {
            fwrite(step->text, 1, step->len, stdout);
            fflush(stdout);
            st->last_newline = step->text[step->len - 1] == '\n';
        }
        if (k) print_candidates(st, step, k);
        return 0;
    }
    if (!append_text(st, step->text, step->len) ||
        !append_token(st, step->token) || (k && !json_step(st, step, k))) {
        st->failed = true;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ output */

/* Adds item to j, or frees it when that fails. */
static bool add_item(cJSON *j, const char *name, cJSON *item) {
    if (item && cJSON_AddItemToObject(j, name, item)) return true;
    cJSON_Delete(item);
    return false;
}

/* cJSON_CreateIntArray refuses an empty array; no tokens is valid here. */
static cJSON *int_array(const int *v, int n) {
    return n > 0 ? cJSON_CreateIntArray(v, n) : cJSON_CreateArray();
}

static int print_json(const gen_options *o, gen_state *st, const char *prompt,
                      size_t prompt_len, const int *ids, int n_ids) {
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->p.sampler.seed);
    char *text = cli_utf8_sanitize(st->text ? st->text : "", st->text_len);
    char *ptext = cli_utf8_sanitize(prompt, prompt_len);
    cJSON *j = cJSON_CreateObject();
    bool ok = text && ptext && j &&
              cJSON_AddStringToObject(j, "prompt", ptext) &&
              cJSON_AddStringToObject(j, "text", text) &&
              add_item(j, "tokens", int_array(st->tokens, st->n_tokens)) &&
              add_item(j, "prompt_tokens", int_array(ids, n_ids)) &&
              cJSON_AddNumberToObject(j, "n_tokens", st->n_tokens) &&
              cJSON_AddNumberToObject(j, "n_prompt_tokens", n_ids) &&
              /* raw: a 64-bit seed exactly, not rounded to a double */
              cJSON_AddRawToObject(j, "seed", seed);
    if (ok && st->steps) {
        ok = cJSON_AddItemToObject(j, "steps", st->steps);
        if (ok) st->steps = NULL; /* j owns it now */
    }
    char *out = ok ? cJSON_Print(j) : NULL;
    if (out) printf("%s\n", out);
    free(out);
    cJSON_Delete(j);
    free(text);
    free(ptext);
    return out ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory writing "
                                                   "JSON");
}

/* Sets up the step state, generates, prints. */
static int run(const gen_options *o, const gpt2_model *m, const char *prompt,
               size_t prompt_len, const int *ids, int n_ids) {
    gen_state st = {0};
    st.tok = gpt2_model_tokenizer(m);
    st.vocab = gpt2_model_config(m)->vocab_size;
    st.json = o->json;
    st.show_probs = o->show_probs < st.vocab ? o->show_probs : st.vocab;
    int rc = CLI_OK;
    if (st.show_probs) {
        st.top_ids = malloc((size_t)st.show_probs * sizeof(int));
        st.top_lps = malloc((size_t)st.show_probs * sizeof(float));
        if (o->json) st.steps = cJSON_CreateArray();
        if (!st.top_ids || !st.top_lps || (o->json && !st.steps))
            rc = cli_error(CMD, CLI_FAIL, "out of memory");
    }
    if (rc == CLI_OK && o->echo && !o->json && !o->unconditional) {
        fwrite(prompt, 1, prompt_len, stdout);
        fflush(stdout);
    }
    int n_gen = 0;
    if (rc == CLI_OK &&
        gpt2_generate_ids(m, ids, n_ids, &o->p, on_step, &st, &n_gen) !=
            GPT2_OK)
        rc = cli_lib_error(CMD, "generation failed");
    if (rc == CLI_OK && st.failed)
        rc = cli_error(CMD, CLI_FAIL, "out of memory collecting the output");
    if (rc == CLI_OK && o->json)
        rc = print_json(o, &st, o->unconditional ? "" : prompt,
                        o->unconditional ? 0 : prompt_len, ids, n_ids);
    else if (rc == CLI_OK && isatty(STDOUT_FILENO) && !st.last_newline)
        putchar('\n'); /* a terminal's prompt starts on its own line */
    if (rc == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = cli_error(CMD, CLI_FAIL, "cannot write to stdout");
    free(st.top_ids);
    free(st.top_lps);
    free(st.text);
    free(st.tokens);
    cJSON_Delete(st.steps);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_options o = {0};
    o.p = gpt2_generate_defaults();
    o.p.max_new_tokens = 64;
    o.p.sampler = gpt2_sampler_defaults();
    o.p.sampler.temperature = 1.0f;
    o.p.sampler.top_k = 40; /* GPT-2's paper setting */
    o.p.sampler.top_p = 1.0f;
    o.p.sampler.repetition_penalty = 1.0f;
    o.stop = malloc(((size_t)argc + 1) * sizeof(char *));
    if (!o.stop) return cli_error(CMD, CLI_FAIL, "out of memory");
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) {
        free(o.stop);
        return rc < 0 ? CLI_OK : rc; /* -1: --help */
    }
    if (!o.seed_given) o.p.sampler.seed = seed_from_clock();

    char *text = NULL;
    size_t len = 0;
    bool from_option = false;
    int *ids = NULL, n_ids = 0;
    gpt2_model *m = NULL;
    if (!o.unconditional) rc = read_prompt(&o, &text, &len, &from_option);
    if (rc == CLI_OK) rc = cli_load_model(CMD, o.model, true, &m);
    if (rc == CLI_OK)
        rc = encode_prompt(&o, m, text, len, from_option, &ids, &n_ids);
    if (rc == CLI_OK) rc = run(&o, m, text ? text : "", len, ids, n_ids);
    free(ids);
    free(text);
    free(o.stop);
    gpt2_model_free(m);
    return rc;
}
