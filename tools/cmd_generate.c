/* cmd_generate.c: `gpt2 generate`: continue a prompt. The library does the
   work (KV cache, sampling, stop strings, UTF-8 hold-back, beam search);
   this file gets the prompt, checks it, streams each step's text to
   stdout, and can show the tutorial's figure of the top candidates at
   every step or collect everything into one JSON object. With several
   sequences (--num-return, or beam search) the text is printed at the
   end, best first, each with its log-probability. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const CMD = "generate";

#define MAX_NEW_TOKENS 1000000
#define MAX_SAMPLES 1000 /* --num-return without --beams */

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
"  --stats                  on stderr at the end: prompt (prefill) and\n"
"                           decode speed, and the weight format\n"
"  --ignore-eos             go on past <|endoftext|>\n"
"  --no-kv-cache            recompute the whole window at every step (slow;\n"
"                           same result)\n"
"  --special                recognise <|endoftext|> in the prompt as the\n"
"                           special token\n"
"  --show-probs K           print the K most likely candidates of every step,\n"
"                           with their probabilities, to stderr (with --json:\n"
"                           in \"steps\" instead) (default off)\n"
"  --json                   print one JSON object at the end instead of\n"
"                           streaming: text, tokens, prompt_tokens, seed,\n"
"                           steps with --show-probs, and \"choices\": every\n"
"                           sequence, best first, as {text, tokens, logprob}\n"
"                           (the top-level text, tokens and steps are the\n"
"                           first choice's)\n"
"  --num-return N           return N sequences, best first: with sampling, N\n"
"                           samples with seeds S, S+1, ... sorted by\n"
"                           log-probability; with --beams, the N best\n"
"                           hypotheses (N <= beams) (default 1)\n"
"\n"
"Beam search (deterministic; the sampling options above do not apply):\n"
"  --beams N                keep the N most probable sequences at every step\n"
"                           and return the best by joint log-probability;\n"
"                           1 = greedy. Printed at the end, not streamed, with\n"
"                           each sequence's logprob and score on stderr. A\n"
"                           beam ended by <|endoftext|> counts it in its\n"
"                           tokens, logprob and score, not in its text\n"
"  --length-penalty X       score = logprob / length^X; > 0 favours longer\n"
"                           sequences, < 0 shorter (default 1.0)\n"
"  --no-repeat-ngram N      never repeat an N-gram of the prompt and text\n"
"                           (default 0 = off)\n"
"  --early-stopping         stop as soon as N hypotheses have ended (default:\n"
"                           stop when no live beam can still beat them)\n"
            , MAX_NEW_TOKENS);
    cli_common_help(f, 27);
}

typedef struct {
    const char *model;
    const char *prompt;       /* -p, or NULL */
    const char *prompt_file;  /* --prompt-file, or NULL */
    bool unconditional, echo, special, json, stats;
    int show_probs;           /* K; 0: off */
    bool seed_given;
    gpt2_generate_params p;
    const char **stop;        /* NULL-terminated */
    int n_stop;
    int num_return;           /* sequences to print (default 1) */
    int beams;                /* 0: sampling; N: beam search with N beams */
    gpt2_beam_params bp;      /* with beams */
    const char *sampling_opt; /* a sampling-only option given, or NULL */
    const char *beam_opt;     /* a beam-only option given, or NULL */
} gen_options;

enum {
    OPT_TOP_P = 0x100, OPT_REP, OPT_STOP, OPT_ECHO, OPT_IGNORE_EOS,
    OPT_NO_KV, OPT_SPECIAL, OPT_SHOW_PROBS, OPT_JSON, OPT_UNCOND,
    OPT_BEAMS, OPT_LENGTH_PENALTY, OPT_NO_REPEAT, OPT_EARLY_STOP,
    OPT_NUM_RETURN, OPT_STATS
};

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

/* Beam search and sampling each have options the other does not take. */
static int check_modes(const gen_options *o) {
    if (o->beams && o->sampling_opt)
        return cli_usage_error(CMD, "%s applies to sampling only, not to "
                                    "beam search (--beams)",
                               o->sampling_opt);
    if (!o->beams && o->beam_opt)
        return cli_usage_error(CMD, "%s needs --beams N", o->beam_opt);
    if (o->beams && o->num_return > o->beams)
        return cli_usage_error(CMD, "--num-return %d: at most --beams (%d) "
                                    "sequences", o->num_return, o->beams);
    if (!o->beams && o->num_return > MAX_SAMPLES)
        return cli_usage_error(CMD, "--num-return %d: at most %d samples",
                               o->num_return, MAX_SAMPLES);
    return CLI_OK;
}

/* The options of beam search alone; *done tells whether c was one. */
static int parse_beam_option(gen_options *o, int c, bool *done) {
    *done = true;
    switch (c) {
    case OPT_BEAMS:
        return cli_opt_int(CMD, "--beams", optarg, 1, GPT2_BEAM_MAX, &o->beams);
    case OPT_LENGTH_PENALTY:
        o->beam_opt = "--length-penalty";
        return cli_opt_float(CMD, "--length-penalty", optarg,
                             &o->bp.length_penalty);
    case OPT_NO_REPEAT:
        o->beam_opt = "--no-repeat-ngram";
        return cli_opt_int(CMD, "--no-repeat-ngram", optarg, 0, 1 << 20,
                           &o->bp.no_repeat_ngram);
    case OPT_EARLY_STOP:
        o->beam_opt = "--early-stopping";
        o->bp.early_stopping = 1;
        return CLI_OK;
    case OPT_NUM_RETURN:
        return cli_opt_int(CMD, "--num-return", optarg, 1, GPT2_BEAM_MAX,
                           &o->num_return);
    }
    *done = false;
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
        {"stats", no_argument, NULL, OPT_STATS},
        {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"no-kv-cache", no_argument, NULL, OPT_NO_KV},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"show-probs", required_argument, NULL, OPT_SHOW_PROBS},
        {"json", no_argument, NULL, OPT_JSON},
        {"unconditional", no_argument, NULL, OPT_UNCOND},
        {"beams", required_argument, NULL, OPT_BEAMS},
        {"length-penalty", required_argument, NULL, OPT_LENGTH_PENALTY},
        {"no-repeat-ngram", required_argument, NULL, OPT_NO_REPEAT},
        {"early-stopping", no_argument, NULL, OPT_EARLY_STOP},
        {"num-return", required_argument, NULL, OPT_NUM_RETURN},
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
        bool beam_option;
        rc = parse_beam_option(o, c, &beam_option);
        if (beam_option) continue;
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
            o->sampling_opt = "--temperature";
            rc = cli_opt_float(CMD, "--temperature", optarg, &s->temperature);
            break;
        case 'k':
            o->sampling_opt = "--top-k";
            rc = cli_opt_int(CMD, "--top-k", optarg, 0, 1 << 24, &s->top_k);
            break;
        case 's':
            rc = cli_opt_u64(CMD, "--seed", optarg, &s->seed);
            o->seed_given = true;
            break;
        case OPT_TOP_P:
            texts[1] = optarg;
            o->sampling_opt = "--top-p";
            rc = cli_opt_float(CMD, "--top-p", optarg, &s->top_p);
            break;
        case OPT_REP:
            texts[2] = optarg;
            o->sampling_opt = "--repetition-penalty";
            rc = cli_opt_float(CMD, "--repetition-penalty", optarg,
                               &s->repetition_penalty);
            break;
        case OPT_STOP:
            o->sampling_opt = "--stop";
            if (*optarg == '\0')
                rc = cli_bad_value(CMD, "--stop", "''", "must not be empty");
            else
                o->stop[o->n_stop++] = optarg;
            break;
        case OPT_ECHO: o->echo = true; break;
        case OPT_STATS: o->stats = true; break;
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
    if ((rc = check_modes(o)) != CLI_OK) return rc;
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

/* ---------------------------------------------------------- sequences */

/* One sequence to print: its text and tokens with their
   log-probabilities, and with --show-probs the K most likely candidates
   at each of its steps. */
typedef struct {
    char *text;
    size_t text_len, text_cap;
    int *tokens;
    float *lps;          /* each token's log-probability */
    int n_tokens, tokens_cap;
    int *top_ids;        /* (tokens_cap, k) with --show-probs */
    float *top_lps;
    double logprob;      /* the sum of lps */
    double score;        /* beam search's length-penalised score */
    uint64_t seed;       /* sampling: the seed that made it */
    int index;           /* the order it was made in, for ties */
} sequence;

static void sequence_free(sequence *q) {
    free(q->text);
    free(q->tokens);
    free(q->lps);
    free(q->top_ids);
    free(q->top_lps);
}

static bool append_text(sequence *q, const char *s, size_t n) {
    if (q->text_len + n + 1 > q->text_cap) {
        size_t cap = q->text_cap ? q->text_cap : 256;
        while (cap < q->text_len + n + 1) cap *= 2;
        char *t = realloc(q->text, cap);
        if (!t) return false;
        q->text = t;
        q->text_cap = cap;
    }
    memcpy(q->text + q->text_len, s, n);
    q->text_len += n;
    q->text[q->text_len] = '\0';
    return true;
}

/* Room for n tokens, and for k candidates at each of their steps. */
static bool reserve_tokens(sequence *q, int n, int k) {
    if (n <= q->tokens_cap) return true;
    int cap = q->tokens_cap ? q->tokens_cap : 64;
    while (cap < n) cap *= 2;
    int *t = realloc(q->tokens, (size_t)cap * sizeof(int));
    if (t) q->tokens = t;
    float *l = t ? realloc(q->lps, (size_t)cap * sizeof(float)) : NULL;
    if (l) q->lps = l;
    if (!l) return false;
    if (k) {
        int *ti = realloc(q->top_ids, (size_t)cap * (size_t)k * sizeof(int));
        if (ti) q->top_ids = ti;
        float *tl = ti ? realloc(q->top_lps, (size_t)cap * (size_t)k *
                                                 sizeof(float))
                       : NULL;
        if (tl) q->top_lps = tl;
        if (!tl) return false;
    }
    q->tokens_cap = cap;
    return true;
}

/* ------------------------------------------------------------- steps */

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

/* The tutorial's figure for step `index`: the k most likely next tokens
   (ids, lps) and the one taken. */
static void print_candidates(const gpt2_tokenizer *tok, int index,
                             const int *ids, const float *lps, int k,
                             int token, float logprob) {
    char q[512], p[32];
    bool shown = false;
    fprintf(stderr, "step %d\n", index + 1);
    for (int i = 0; i < k; i++) {
        bool chosen = ids[i] == token;
        shown |= chosen;
        quoted_piece(tok, ids[i], q, sizeof q);
        fprintf(stderr, "  #%-3d %-18s p=%s%s\n", i + 1, q,
                fmt_prob(lps[i], p), chosen ? "  <- chosen" : "");
    }
    if (!shown) {
        quoted_piece(tok, token, q, sizeof q);
        fprintf(stderr, "  chosen %-16s p=%s (not in the top %d)\n", q,
                fmt_prob(logprob, p), k);
    }
}

/* What the sampling callback needs, and where it collects. */
typedef struct {
    const gpt2_tokenizer *tok;
    int vocab;
    int k;              /* --show-probs, at most the vocabulary */
    bool stream;        /* print as it comes (one sample, no --json) */
    int *top_ids;       /* streaming: this step's k candidates */
    float *top_lps;
    sequence *seq;      /* the tokens (and without streaming, the text
                           and every step's candidates) */
    bool last_newline;  /* the stream's last byte was '\n' */
    bool failed;        /* out of memory while collecting */
    double t_start, t_first, t_last; /* seconds: start, first and last token */
    int n_timed;        /* tokens seen by the clock */
} gen_state;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* --stats: the first token comes after the prompt's prefill; each one
   after it is one decode step (sampling and printing included). */
static void print_stats(const gen_state *st, const gpt2_model *m, int n_prompt) {
    if (st->n_timed == 0) return;
    double first = st->t_first - st->t_start, rest = st->t_last - st->t_first;
    fprintf(stderr, "gpt2 generate: prompt %d tokens + first token in %.1f ms (%.0f "
            "tokens/s)", n_prompt, 1e3 * first, first > 0 ? n_prompt / first : 0.0);
    if (st->n_timed > 1)
        fprintf(stderr, "; then %d tokens at %.2f ms/token (%.1f tokens/s)",
                st->n_timed - 1, 1e3 * rest / (st->n_timed - 1),
                rest > 0 ? (st->n_timed - 1) / rest : 0.0);
    fprintf(stderr, "; weights %s, %.1f MB; %d thread%s\n",
            gpt2_dtype_name(gpt2_model_weight_dtype(m)),
            gpt2_model_weight_bytes(m) / 1e6, gpt2_get_threads(),
            gpt2_get_threads() == 1 ? "" : "s");
}

static int on_step(void *user, const gpt2_step *step) {
    gen_state *st = user;
    sequence *q = st->seq;
    int *ids = st->top_ids;
    float *lps = st->top_lps;
    if (step->token >= 0) { /* token -1: only text held back until the end */
        st->t_last = seconds();
        if (st->n_timed++ == 0) st->t_first = st->t_last;
        int n = q->n_tokens;
        if (!reserve_tokens(q, n + 1, st->stream ? 0 : st->k)) {
            st->failed = true;
            return 1;
        }
        if (!st->stream && st->k) {
            ids = q->top_ids + (size_t)n * (size_t)st->k;
            lps = q->top_lps + (size_t)n * (size_t)st->k;
        }
        if (st->k) gpt2_top_candidates(step->logits, st->vocab, st->k, ids, lps);
        q->tokens[n] = step->token;
        q->lps[n] = step->logprob;
        q->logprob += step->logprob;
        q->n_tokens++;
    }
    if (!st->stream) {
        if (!append_text(q, step->text, step->len)) {
            st->failed = true;
            return 1;
        }
        return 0;
    }
    if (step->len) {
        fwrite(step->text, 1, step->len, stdout);
        fflush(stdout);
        st->last_newline = step->text[step->len - 1] == '\n';
    }
    if (step->token >= 0 && st->k)
        print_candidates(st->tok, step->index, ids, lps, st->k, step->token,
                         step->logprob);
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

static cJSON *json_piece(const gpt2_tokenizer *tok, int id, double logprob) {
    size_t n = 0;
    const char *piece = gpt2_tokenizer_piece(tok, id, &n);
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

/* "steps": per token, the token taken and the top k. */
static cJSON *json_steps(const gpt2_tokenizer *tok, const sequence *q, int k) {
    cJSON *steps = cJSON_CreateArray();
    for (int s = 0; steps && s < q->n_tokens; s++) {
        cJSON *o = json_piece(tok, q->tokens[s], q->lps[s]);
        cJSON *top = cJSON_CreateArray();
        bool ok = o && top && cJSON_AddItemToObject(o, "top", top);
        if (!ok) cJSON_Delete(top);
        for (int i = 0; ok && i < k; i++) {
            size_t at = (size_t)s * (size_t)k + (size_t)i;
            cJSON *c = json_piece(tok, q->top_ids[at], q->top_lps[at]);
            ok = c && cJSON_AddItemToArray(top, c);
            if (!ok) cJSON_Delete(c);
        }
        if (!ok || !cJSON_AddItemToArray(steps, o)) {
            cJSON_Delete(o);
            cJSON_Delete(steps);
            steps = NULL;
        }
    }
    return steps;
}

/* A 64-bit seed exactly, not rounded to a double. */
static bool add_seed(cJSON *j, const char *name, uint64_t seed) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
    return cJSON_AddRawToObject(j, name, buf) != NULL;
}

/* One entry of "choices". */
static cJSON *json_choice(const gen_options *o, const gpt2_tokenizer *tok,
                          const sequence *q, int k) {
    char *text = cli_utf8_sanitize(q->text ? q->text : "", q->text_len);
    cJSON *c = cJSON_CreateObject();
    bool ok = text && c && cJSON_AddStringToObject(c, "text", text) &&
              add_item(c, "tokens", int_array(q->tokens, q->n_tokens)) &&
              cJSON_AddNumberToObject(c, "logprob", q->logprob);
    if (ok && o->beams) ok = cJSON_AddNumberToObject(c, "score", q->score);
    if (ok && !o->beams) ok = add_seed(c, "seed", q->seed);
    if (ok && k) ok = add_item(c, "steps", json_steps(tok, q, k));
    free(text);
    if (!ok) {
        cJSON_Delete(c);
        c = NULL;
    }
    return c;
}

/* One JSON object: the prompt, the best sequence at the top level (as
   before choices existed) and every sequence in "choices". */
static int print_json(const gen_options *o, const gpt2_tokenizer *tok,
                      const sequence *qs, int n, int k, const char *prompt,
                      size_t prompt_len, const int *ids, int n_ids) {
    static const sequence none = {0};
    const sequence *best = n > 0 ? &qs[0] : &none;
    char *text = cli_utf8_sanitize(best->text ? best->text : "",
                                   best->text_len);
    char *ptext = cli_utf8_sanitize(prompt, prompt_len);
    cJSON *j = cJSON_CreateObject();
    cJSON *choices = cJSON_CreateArray();
    bool ok = text && ptext && j && choices &&
              cJSON_AddStringToObject(j, "prompt", ptext) &&
              cJSON_AddStringToObject(j, "text", text) &&
              add_item(j, "tokens", int_array(best->tokens, best->n_tokens)) &&
              add_item(j, "prompt_tokens", int_array(ids, n_ids)) &&
              cJSON_AddNumberToObject(j, "n_tokens", best->n_tokens) &&
              cJSON_AddNumberToObject(j, "n_prompt_tokens", n_ids);
    if (ok && o->beams) ok = cJSON_AddNumberToObject(j, "num_beams", o->beams);
    if (ok && !o->beams) ok = add_seed(j, "seed", o->p.sampler.seed);
    if (ok && k) ok = add_item(j, "steps", json_steps(tok, best, k));
    for (int i = 0; ok && i < n; i++) {
        cJSON *c = json_choice(o, tok, &qs[i], k);
        ok = c && cJSON_AddItemToArray(choices, c);
        if (!ok) cJSON_Delete(c);
    }
    if (ok) {
        ok = cJSON_AddItemToObject(j, "choices", choices);
        if (ok) choices = NULL; /* j owns it now */
    }
    char *out = ok ? cJSON_Print(j) : NULL;
    if (out) printf("%s\n", out);
    free(out);
    cJSON_Delete(choices);
    cJSON_Delete(j);
    free(text);
    free(ptext);
    return out ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory writing "
                                                   "JSON");
}

/* The sequences as text, best first. One alone prints like a stream;
   several are numbered [1], [2], ... and separated by a blank line. Each
   one's candidates tables (--show-probs) and its log-probability go to
   stderr before its text (for a single sample, which has streamed,
   nothing is added). */
static void print_plain(const gen_options *o, const gpt2_tokenizer *tok,
                        const sequence *qs, int n, int k, const char *prompt,
                        size_t prompt_len) {
    for (int i = 0; i < n; i++) {
        const sequence *q = &qs[i];
        char num[16] = "";
        if (n > 1) snprintf(num, sizeof num, "[%d] ", i + 1);
        if (k && n > 1) fprintf(stderr, "%ssteps\n", num);
        for (int s = 0; k && s < q->n_tokens; s++)
            print_candidates(tok, s, q->top_ids + (size_t)s * (size_t)k,
                             q->top_lps + (size_t)s * (size_t)k, k,
                             q->tokens[s], q->lps[s]);
        if (o->beams)
            fprintf(stderr, "%slogprob %.4f, score %.4f, %d tokens\n", num,
                    q->logprob, q->score, q->n_tokens);
        else
            fprintf(stderr, "%slogprob %.4f, %d tokens, seed %llu\n", num,
                    q->logprob, q->n_tokens, (unsigned long long)q->seed);
        fputs(num, stdout);
        if (o->echo && !o->unconditional) fwrite(prompt, 1, prompt_len, stdout);
        fwrite(q->text ? q->text : "", 1, q->text_len, stdout);
        bool newline = q->text_len && q->text[q->text_len - 1] == '\n';
        if (n > 1) fputs(i + 1 < n ? "\n\n" : "\n", stdout);
        else if (isatty(STDOUT_FILENO) && !newline)
            putchar('\n'); /* a terminal's prompt starts on its own line */
        fflush(stdout);
    }
}

/* --------------------------------------------------------- generating */

/* One sample, streamed to stdout as it is made (or collected for
   --json) into q. */
static int sample_one(const gen_options *o, const gpt2_model *m,
                      const char *prompt, size_t prompt_len, const int *ids,
                      int n_ids, sequence *q, int k) {
    gen_state st = {.tok = gpt2_model_tokenizer(m),
                    .vocab = gpt2_model_config(m)->vocab_size,
                    .k = k,
                    .stream = !o->json,
                    .seq = q};
    q->seed = o->p.sampler.seed;
    int rc = CLI_OK;
    if (st.stream && k) {
        st.top_ids = malloc((size_t)k * sizeof(int));
        st.top_lps = malloc((size_t)k * sizeof(float));
        if (!st.top_ids || !st.top_lps)
            rc = cli_error(CMD, CLI_FAIL, "out of memory");
    }
    if (rc == CLI_OK && st.stream && o->echo && !o->unconditional) {
        fwrite(prompt, 1, prompt_len, stdout);
        fflush(stdout);
    }
    st.t_start = seconds();
    if (rc == CLI_OK &&
        gpt2_generate_ids(m, ids, n_ids, &o->p, on_step, &st, NULL) != GPT2_OK)
        rc = cli_lib_error(CMD, "generation failed");
    if (rc == CLI_OK && st.failed)
        rc = cli_error(CMD, CLI_FAIL, "out of memory collecting the output");
    if (rc == CLI_OK && st.stream && isatty(STDOUT_FILENO) &&
        !st.last_newline)
        putchar('\n'); /* a terminal's prompt starts on its own line */
    if (rc == CLI_OK && o->stats) print_stats(&st, m, n_ids);
    free(st.top_ids);
    free(st.top_lps);
    return rc;
}

/* Best log-probability first; ties in the order they were made. */
static int by_logprob(const void *a, const void *b) {
    const sequence *x = a, *y = b;
    if (x->logprob != y->logprob) return x->logprob > y->logprob ? -1 : 1;
    return x->index - y->index;
}

/* --num-return N samples, with seeds seed, seed + 1, ..., collected and
   sorted. */
static int sample_many(const gen_options *o, const gpt2_model *m,
                       const int *ids, int n_ids, sequence *qs, int k) {
    for (int i = 0; i < o->num_return; i++) {
        gen_state st = {.tok = gpt2_model_tokenizer(m),
                        .vocab = gpt2_model_config(m)->vocab_size,
                        .k = k,
                        .seq = &qs[i]};
        gpt2_generate_params p = o->p;
        p.sampler.seed = o->p.sampler.seed + (uint64_t)i;
        qs[i].seed = p.sampler.seed;
        qs[i].index = i;
        if (gpt2_generate_ids(m, ids, n_ids, &p, on_step, &st, NULL) !=
            GPT2_OK)
            return cli_lib_error(CMD, "generation failed");
        if (st.failed)
            return cli_error(CMD, CLI_FAIL, "out of memory collecting the "
                                            "output");
    }
    qsort(qs, (size_t)o->num_return, sizeof(sequence), by_logprob);
    return CLI_OK;
}

/* The k most likely candidates at each step of q, from a fresh session
   fed the prompt and q's tokens (the same computation the beams made). */
static int replay_candidates(const gen_options *o, const gpt2_model *m,
                             const int *ids, int n_ids, sequence *q, int k) {
    gpt2_session_options so = gpt2_session_defaults();
    so.kv_cache = o->p.kv_cache;
    gpt2_session *s = NULL;
    const float *lg = NULL;
    int V = gpt2_model_config(m)->vocab_size, rc = CLI_OK;
    if (gpt2_session_new(m, &so, &s) != GPT2_OK ||
        gpt2_session_prefill(s, ids, n_ids, &lg) != GPT2_OK)
        rc = cli_lib_error(CMD, "cannot replay a beam");
    for (int i = 0; rc == CLI_OK && i < q->n_tokens; i++) {
        size_t at = (size_t)i * (size_t)k;
        gpt2_top_candidates(lg, V, k, q->top_ids + at, q->top_lps + at);
        if (i + 1 < q->n_tokens &&
            gpt2_session_step(s, q->tokens[i], &lg) != GPT2_OK)
            rc = cli_lib_error(CMD, "cannot replay a beam");
    }
    gpt2_session_free(s);
    return rc;
}

/* A hypothesis as a sequence: its text leaves out the end token. */
static int sequence_from_hyp(const gpt2_tokenizer *tok, const gpt2_beam_hyp *h,
                             sequence *q, int k) {
    if (!reserve_tokens(q, h->n_tokens + 1, k))
        return cli_error(CMD, CLI_FAIL, "out of memory");
    memcpy(q->tokens, h->tokens, (size_t)h->n_tokens * sizeof(int));
    memcpy(q->lps, h->logprobs, (size_t)h->n_tokens * sizeof(float));
    q->n_tokens = h->n_tokens;
    q->logprob = h->logprob;
    q->score = h->score;
    if (!append_text(q, "", 0))
        return cli_error(CMD, CLI_FAIL, "out of memory");
    for (int i = 0; i < h->n_tokens - (h->ended_at_eot ? 1 : 0); i++) {
        size_t n = 0;
        const char *piece = gpt2_tokenizer_piece(tok, h->tokens[i], &n);
        if (piece && !append_text(q, piece, n))
            return cli_error(CMD, CLI_FAIL, "out of memory");
    }
    return CLI_OK;
}

/* Beam search; *n receives the number of sequences (at most
   --num-return). */
static int beam_search(const gen_options *o, const gpt2_model *m,
                       const int *ids, int n_ids, sequence *qs, int k,
                       int *n) {
    gpt2_beam_params bp = o->bp;
    bp.num_beams = o->beams;
    bp.num_return = o->num_return;
    bp.max_new_tokens = o->p.max_new_tokens;
    bp.stop_at_eot = o->p.stop_at_eot;
    bp.kv_cache = o->p.kv_cache;
    gpt2_beam_result *r = NULL;
    if (gpt2_beam_search(m, ids, n_ids, &bp, NULL, NULL, &r) != GPT2_OK)
        return cli_lib_error(CMD, "beam search failed");
    int rc = CLI_OK;
    *n = 0;
    for (int i = 0; rc == CLI_OK && i < r->n; i++) {
        rc = sequence_from_hyp(gpt2_model_tokenizer(m), &r->hyp[i], &qs[i], k);
        if (rc == CLI_OK && k) rc = replay_candidates(o, m, ids, n_ids, &qs[i], k);
        if (rc == CLI_OK) *n = i + 1;
    }
    gpt2_beam_result_free(r);
    return rc;
}

/* Generates (sampling or beams), then prints. */
static int run(const gen_options *o, const gpt2_model *m, const char *prompt,
               size_t prompt_len, const int *ids, int n_ids) {
    const gpt2_tokenizer *tok = gpt2_model_tokenizer(m);
    int vocab = gpt2_model_config(m)->vocab_size;
    int k = o->show_probs < vocab ? o->show_probs : vocab;
    int n = o->num_return, rc;
    sequence *qs = calloc((size_t)n, sizeof(sequence));
    if (!qs) return cli_error(CMD, CLI_FAIL, "out of memory");
    bool streamed = !o->beams && n == 1 && !o->json;
    if (o->beams)
        rc = beam_search(o, m, ids, n_ids, qs, k, &n);
    else if (n == 1)
        rc = sample_one(o, m, prompt, prompt_len, ids, n_ids, qs, k);
    else
        rc = sample_many(o, m, ids, n_ids, qs, k);
    if (o->unconditional) prompt_len = 0;
    if (rc == CLI_OK && o->json)
        rc = print_json(o, tok, qs, n, k, o->unconditional ? "" : prompt,
                        prompt_len, ids, n_ids);
    else if (rc == CLI_OK && !streamed)
        print_plain(o, tok, qs, n, k, prompt, prompt_len);
    if (rc == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = cli_error(CMD, CLI_FAIL, "cannot write to stdout");
    for (int i = 0; i < o->num_return; i++) sequence_free(&qs[i]);
    free(qs);
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
    o.bp = gpt2_beam_defaults();
    o.num_return = 1;
    o.stop = malloc(((size_t)argc + 1) * sizeof(char *));
    if (!o.stop) return cli_error(CMD, CLI_FAIL, "out of memory");
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) {
        free(o.stop);
        return rc < 0 ? CLI_OK : rc; /* -1: --help */
    }
    if (!o.seed_given) o.p.sampler.seed = cli_seed_from_clock();

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
