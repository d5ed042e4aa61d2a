/* cli.c: the helpers every `gpt2` subcommand shares: error messages in one
   format, option values parsed whole and range-checked, reading inputs,
   UTF-8 checks for prompts and JSON, and finding the tokenizer and the
   default model on disk. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- errors */

static void report(const char *cmd, const char *fmt, va_list ap,
                   const char *suffix) {
    fprintf(stderr, "gpt2%s%s: ", *cmd ? " " : "", cmd);
    vfprintf(stderr, fmt, ap);
    if (suffix && *suffix) fprintf(stderr, ": %s", suffix);
    fputc('\n', stderr);
}

int cli_error(const char *cmd, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(cmd, fmt, ap, NULL);
    va_end(ap);
    return code;
}

int cli_lib_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(cmd, fmt, ap, gpt2_last_error());
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(cmd, fmt, ap, NULL);
    va_end(ap);
    fprintf(stderr, "Try 'gpt2%s%s --help'.\n", *cmd ? " " : "", cmd);
    return CLI_USAGE;
}

/* ------------------------------------------------------------- options */

void cli_common_help(FILE *f, int col) {
    int w = col - 3;
    fprintf(f, "  %-*s threads for the forward pass (default: all cores)\n",
            w, "--threads N");
    fprintf(f, "  %-*s keep the weights in memory as f32, f16, bf16, q8_0\n"
               "  %-*s or q4_0 (default: as stored; smaller is faster)\n",
            w, "--weights DTYPE", w, "");
    fprintf(f, "  %-*s show this help\n", w, "-h, --help");
}

/* --weights: the format cli_load_model converts to; -1 keeps the file's. */
static int weights_dtype = -1;

void cli_getopt_reset(void) {
    optind = 0; /* glibc: 0 re-initialises getopt completely */
    opterr = 0; /* we print our own messages, in our format */
}

/* The option as the user wrote it, for messages: "--top-k" (without any
   "=value"), or "-k" for a short one. */
static void option_text(char **argv, char *buf, size_t cap) {
    const char *a = optind > 0 ? argv[optind - 1] : NULL;
    if (a && strncmp(a, "--", 2) == 0) {
        size_t n = strcspn(a, "=");
        snprintf(buf, cap, "%.*s", (int)n, a);
    } else if (optopt > 0 && optopt < 128) {
        snprintf(buf, cap, "-%c", optopt);
    } else {
        snprintf(buf, cap, "%s", a ? a : "?");
    }
}

int cli_common_option(const char *cmd, int c, const char *arg, char **argv) {
    char opt[128];
    switch (c) {
    case CLI_OPT_THREADS: {
        int n;
        if (cli_opt_int(cmd, "--threads", arg, 0, 4096, &n)) return CLI_USAGE;
        gpt2_set_threads(n);
        return CLI_OK;
    }
    case CLI_OPT_WEIGHTS: {
        gpt2_dtype d;
        if (cli_opt_dtype(cmd, arg, &d)) return CLI_USAGE;
        weights_dtype = (int)d;
        return CLI_OK;
    }
    case ':':
        option_text(argv, opt, sizeof opt);
        return cli_usage_error(cmd, "option %s needs a value", opt);
    case '?':
        option_text(argv, opt, sizeof opt);
        /* glibc reports "--flag=value" for a flag as '?' with optopt set */
        if (optopt != 0 && optind > 0 && strchr(argv[optind - 1], '=') &&
            strncmp(argv[optind - 1], "--", 2) == 0)
            return cli_usage_error(cmd, "option %s takes no value", opt);
        return cli_usage_error(cmd, "unknown option '%s'", opt);
    default:
        return cli_usage_error(cmd, "unexpected option (code %d)", c);
    }
}

int cli_opt_int(const char *cmd, const char *opt, const char *s, long lo,
                long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0')
        return cli_usage_error(cmd, "%s '%s': not a whole number", opt, s);
    if (errno == ERANGE || v < lo || v > hi)
        return cli_usage_error(cmd, "%s %s: must be between %ld and %ld", opt,
                               s, lo, hi);
    *out = (int)v;
    return CLI_OK;
}

int cli_opt_u64(const char *cmd, const char *opt, const char *s,
                uint64_t *out) {
    char *end;
    errno = 0;
    /* strtoull accepts "-1" as 2^64-1: refuse a sign explicitly */
    const char *p = s;
    while (*p == ' ' || *p == '\t') p++;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || *p == '-' || *p == '+')
        return cli_usage_error(cmd, "%s '%s': not a non-negative whole number",
                               opt, s);
    if (errno == ERANGE)
        return cli_usage_error(cmd, "%s %s: larger than 2^64 - 1", opt, s);
    *out = (uint64_t)v;
    return CLI_OK;
}

int cli_opt_float(const char *cmd, const char *opt, const char *s,
                  float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !isfinite(v) || fabs(v) > 3e38)
        return cli_usage_error(cmd, "%s '%s': not a finite number", opt, s);
    *out = (float)v;
    return CLI_OK;
}

int cli_bad_value(const char *cmd, const char *opt, const char *s,
                  const char *rule) {
    return cli_usage_error(cmd, "%s %s: %s", opt, s, rule);
}

int cli_opt_dtype(const char *cmd, const char *s, gpt2_dtype *out) {
    if (gpt2_dtype_parse(s, out) != GPT2_OK)
        return cli_bad_value(cmd, "--dtype", s,
                             "expected f32, f16, bf16, q8_0 or q4_0");
    return CLI_OK;
}

/* ------------------------------------------------------------- input */

int cli_read_input(const char *cmd, const char *path, char **data,
                   size_t *len) {
    bool use_stdin = !path || strcmp(path, "-") == 0;
    const char *name = use_stdin ? "stdin" : path;
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return cli_error(cmd, CLI_FAIL, "cannot open '%s': %s", name,
                         strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = CLI_OK;
    for (;;) {
        if (!buf) {
            rc = cli_error(cmd, CLI_FAIL, "reading '%s': out of memory", name);
            break;
        }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (ferror(f)) {
            rc = cli_error(cmd, CLI_FAIL, "cannot read '%s': %s", name,
                           strerror(errno));
            break;
        }
        if (feof(f)) break;
        if (n + 1 == cap) {
            char *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!bigger) free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    if (!use_stdin) fclose(f);
    if (rc != CLI_OK) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return CLI_OK;
}

/* ------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 character at s (n bytes available), or 0. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

size_t cli_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_char_len(u + i, n - i);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

char *cli_utf8_sanitize(const char *s, size_t n) {
    static const char fffd[] = "\xEF\xBF\xBD";
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(3 * n + 1); /* each byte becomes at most 3 */
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, j = 0;
    while (i < n) {
        size_t k = u[i] == 0 ? 0 : utf8_char_len(u + i, n - i);
        if (k == 0) {
            memcpy(out + j, fffd, 3);
            j += 3;
            i++;
        } else {
            memcpy(out + j, u + i, k);
            j += k;
            i += k;
        }
    }
    out[j] = '\0';
    return out;
}

/* Appends n bytes to buf if they fit with the NUL; keeps units whole. */
static bool put(char *buf, size_t cap, size_t *pos, const char *s, size_t n) {
    if (*pos + n + 1 > cap) return false;
    memcpy(buf + *pos, s, n);
    *pos += n;
    buf[*pos] = '\0';
    return true;
}

void cli_escape_piece(const char *s, size_t n, bool quote, char *buf,
                      size_t cap) {
    const unsigned char *u = (const unsigned char *)s;
    size_t pos = 0;
    if (cap == 0) return;
    buf[0] = '\0';
    for (size_t i = 0; i < n;) {
        char esc[8];
        size_t k = utf8_char_len(u + i, n - i);
        bool ok = true;
        if (u[i] == '\n') ok = put(buf, cap, &pos, "\\n", 2);
        else if (u[i] == '\t') ok = put(buf, cap, &pos, "\\t", 2);
        else if (u[i] == '\r') ok = put(buf, cap, &pos, "\\r", 2);
        else if (u[i] == '\\') ok = put(buf, cap, &pos, "\\\\", 2);
        else if (u[i] == '"' && quote) ok = put(buf, cap, &pos, "\\\"", 2);
        else if (k == 0 || u[i] < 0x20 || u[i] == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", u[i]);
            ok = put(buf, cap, &pos, esc, 4);
        } else {
            ok = put(buf, cap, &pos, s + i, k);
            i += k;
            if (!ok) return;
            continue;
        }
        if (!ok) return;
        i++;
    }
}

const char *cli_fmt_count(size_t n, char *buf) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%zu", n);
    int j = 0;
    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

/* ------------------------------------------------------ data and models */

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The directory holding this executable, from /proc/self/exe. */
static bool exe_dir(char *buf, size_t cap) {
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n <= 0 || (size_t)n >= cap - 1) return false;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) return false;
    *slash = '\0';
    return true;
}

/* dir/name into buf; false when it does not fit. */
static bool path_join(char *buf, size_t cap, const char *dir,
                      const char *name) {
    int n = snprintf(buf, cap, "%s%s%s", dir,
                     dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return n >= 0 && (size_t)n < cap;
}

/* Fills d from root if root is a directory. sibling_models: the models
   live beside root (a build tree's assets/ and models/), not inside it
   (an installed share/gpt2c/models). Otherwise notes root in tried. */
static bool try_location(cli_data *d, const char *root, bool sibling_models,
                         char *tried, size_t cap) {
    char real[PATH_MAX];
    if (!is_dir(root) || !realpath(root, real)) {
        size_t used = strlen(tried);
        snprintf(tried + used, cap - used, "%s%s", used ? ", " : "", root);
        return false;
    }
    snprintf(d->root, sizeof d->root, "%s", real);
    if (sibling_models) {
        char *slash = strrchr(real, '/');
        slash[slash == real ? 1 : 0] = '\0'; /* realpath is absolute */
    }
    return path_join(d->tokenizer, sizeof d->tokenizer, d->root,
                     "tokenizer") &&
           path_join(d->models, sizeof d->models, real, "models");
}

bool cli_find_data(cli_data *d, char *tried, size_t cap) {
    char dir[PATH_MAX], p[PATH_MAX + 32];
    tried[0] = '\0';
    const char *env = getenv("GPT2C_DATA");
    if (env && *env && try_location(d, env, false, tried, cap)) return true;
    if (exe_dir(dir, sizeof dir)) {
        snprintf(p, sizeof p, "%s/../assets", dir);
        if (try_location(d, p, true, tried, cap)) return true;
        snprintf(p, sizeof p, "%s/../share/gpt2c", dir);
        if (try_location(d, p, false, tried, cap)) return true;
    }
#ifdef GPT2_DATADIR
    if (try_location(d, GPT2_DATADIR, false, tried, cap)) return true;
#endif
    return false;
}

int cli_load_data_tokenizer(const char *cmd, gpt2_tokenizer **out) {
    cli_data d;
    char tried[4096];
    if (!cli_find_data(&d, tried, sizeof tried))
        return cli_error(cmd, CLI_FAIL,
                         "no tokenizer: none of the data locations exists "
                         "(%s); set GPT2C_DATA to a directory holding "
                         "tokenizer/vocab.json and tokenizer/merges.txt",
                         tried);
    if (gpt2_tokenizer_load(d.tokenizer, out) != GPT2_OK)
        return cli_lib_error(cmd, "cannot load the tokenizer in '%s'",
                             d.tokenizer);
    return CLI_OK;
}

bool cli_attach_data_tokenizer(gpt2_model *m, char *why, size_t cap) {
    cli_data d;
    char tried[4096];
    gpt2_tokenizer *t;
    if (!cli_find_data(&d, tried, sizeof tried)) {
        snprintf(why, cap, "no data location exists (%s)", tried);
        return false;
    }
    if (gpt2_tokenizer_load(d.tokenizer, &t) != GPT2_OK) {
        snprintf(why, cap, "%s", gpt2_last_error());
        return false;
    }
    int tv = gpt2_tokenizer_vocab_size(t);
    int mv = gpt2_model_config(m)->vocab_size;
    if (tv > mv) {
        snprintf(why, cap,
                 "the model's vocab_size %d is smaller than the tokenizer's "
                 "%d ids",
                 mv, tv);
        gpt2_tokenizer_free(t);
        return false;
    }
    gpt2_model_set_tokenizer(m, t);
    return true;
}

int cli_default_model(const char *cmd, char *buf, size_t cap) {
    const char *env = getenv("GPT2C_MODEL");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return CLI_OK;
    }
    cli_data d;
    char tried[4096];
    if (!cli_find_data(&d, tried, sizeof tried))
        cli_error(cmd, CLI_FAIL,
                  "no model given, and the default model is not installed "
                  "(no data location exists: %s)", tried);
    else if (path_join(buf, cap, d.models, "kjv") && is_dir(buf))
        return CLI_OK;
    else
        cli_error(cmd, CLI_FAIL,
                  "no model given, and the default model is not installed "
                  "(%s/kjv does not exist)", d.models);
    fprintf(stderr,
            "  Use -m DIR to name a model directory (config.json + "
            "model.safetensors) or an llm.c .bin file;\n"
            "  make one with `gpt2 init -o DIR`, or download a real GPT-2 "
            "from Hugging Face (see README).\n");
    return CLI_FAIL;
}

int cli_load_model(const char *cmd, const char *path, bool need_tokenizer,
                   gpt2_model **out) {
    char def[PATH_MAX];
    if (!path) {
        int rc = cli_default_model(cmd, def, sizeof def);
        if (rc != CLI_OK) return rc;
        path = def;
    }
    gpt2_model *m;
    gpt2_status st = weights_dtype < 0
                         ? gpt2_model_load(path, &m)
                         : gpt2_model_load_as(path, (gpt2_dtype)weights_dtype, &m);
    if (st != GPT2_OK) return cli_lib_error(cmd, "cannot load model '%s'", path);
    char why[512] = "";
    /* An llm.c checkpoint never carries a tokenizer, and it was made for
       GPT-2's: give it the installed one. A directory keeps what it has. */
    if (!gpt2_model_tokenizer(m) && !is_dir(path))
        cli_attach_data_tokenizer(m, why, sizeof why);
    if (need_tokenizer && !gpt2_model_tokenizer(m)) {
        if (is_dir(path))
            cli_error(cmd, CLI_FAIL,
                      "model '%s' has no tokenizer: vocab.json and "
                      "merges.txt are missing from the directory", path);
        else
            cli_error(cmd, CLI_FAIL, "model '%s' has no tokenizer: %s", path,
                      why);
        gpt2_model_free(m);
        return CLI_FAIL;
    }
    *out = m;
    return CLI_OK;
}

/* A seed nobody chose: time and pid, mixed (splitmix64's finaliser), kept
   below 2^53 so it survives any JSON reader as a number. */
uint64_t cli_seed_from_clock(void) {
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


bool cli_text_append(cli_text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *g = realloc(t->text, cap);
        if (!g) return false;
        t->text = g;
        t->cap = cap;
    }
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = '\0';
    return true;
}

int cli_encode_file(const char *cmd, const gpt2_model *m, const char *path,
                    bool special, int **ids, size_t *n) {
    char *text = NULL;
    size_t len = 0;
    *ids = NULL;
    *n = 0;
    int rc = cli_read_input(cmd, path, &text, &len);
    if (rc != CLI_OK) return rc;
    *ids = malloc((len + 1) * sizeof(int));
    if (!*ids) rc = cli_error(cmd, CLI_FAIL, "out of memory");
    else if (gpt2_tokenizer_encode(gpt2_model_tokenizer(m), text, len,
                                   special ? GPT2_ENCODE_SPECIAL : 0, *ids,
                                   len + 1, n) != GPT2_OK)
        rc = cli_lib_error(cmd, "cannot encode '%s'", path ? path : "-");
    free(text);
    return rc;
}

int cli_sliding_windows(const char *cmd, gpt2_model *m, const int *ids,
                        size_t n, int stride, cli_window_fn fn, void *user,
                        int *windows) {
    int n_ctx = gpt2_model_config(m)->n_ctx;
    int T = (size_t)n_ctx < n - 1 ? n_ctx : (int)(n - 1);
    *windows = 0;
    gpt2_batch *b = NULL;
    int *targets = malloc((size_t)T * sizeof(int));
    if (!targets) return cli_error(cmd, CLI_FAIL, "out of memory");
    if (gpt2_batch_new(m, 1, T, &b) != GPT2_OK) {
        free(targets);
        return cli_lib_error(cmd, "cannot make a batch of %d tokens", T);
    }
    /* next: the first prediction no window has made yet */
    size_t next = 1, last_begin = n - 1 - (size_t)T;
    int rc = CLI_OK;
    for (size_t begin = 0; next < n && rc == CLI_OK; begin += (size_t)stride) {
        if (begin > last_begin) begin = last_begin;
        int first = (int)(next - begin - 1);
        for (int i = 0; i < T; i++) targets[i] = i >= first ? ids[begin + (size_t)i + 1] : -1;
        const float *logits;
        float loss;
        if (gpt2_batch_forward(b, ids + begin, targets, &logits, &loss) != GPT2_OK) {
            rc = cli_lib_error(cmd, "forward pass failed at token %zu", begin);
            break;
        }
        (*windows)++;
        rc = fn(user, begin, T, first, logits, loss);
        next = begin + (size_t)T + 1;
    }
    gpt2_batch_free(b);
    free(targets);
    return rc;
}
