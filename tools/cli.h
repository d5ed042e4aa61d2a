/* cli.h: what the `gpt2` subcommands share: exit codes, error messages,
   option parsing with range checks, input files, the data locations
   (tokenizer, default model) and model loading. The tools are a client of
   the public API only: nothing here reaches into src/. */
#ifndef GPT2_CLI_H
#define GPT2_CLI_H

#include "gpt2.h"

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes: success, a runtime error (bad file, bad data), a usage
   error (unknown option, missing or invalid option value). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* The subcommands; argv[0] is the subcommand's name. */
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_attention(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_summarize(int argc, char **argv);
int cmd_translate(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* The sentence rule of summarize and translate (in cmd_summarize.c): the
   first sentence of s[0..n) is [*begin, *end), leading and trailing
   whitespace excluded. It ends at '.', '!' or '?' (with any closing
   quotes or brackets) followed by whitespace, or at a line break. When
   the text is final, its end ends a sentence too; when it may still grow,
   an unfinished sentence is not one yet. false when there is none. */
bool app_sentence(const char *s, size_t n, bool final, size_t *begin,
                  size_t *end);

/* ---------------------------------------------------------------- errors */

/* Prints "gpt2 <cmd>: <message>" to stderr and returns code, so a command
   can say `return cli_error(cmd, CLI_FAIL, ...)`. */
int cli_error(const char *cmd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with ": <gpt2_last_error()>" appended; returns CLI_FAIL. */
int cli_lib_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A usage error: the message, then a hint to --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------- options */

/* Every subcommand accepts --help (-h) and the global --threads N and
   --weights DTYPE (the format cli_load_model keeps the weights in). Start
   a command's long options with CLI_COMMON_OPTIONS and its short option
   string with CLI_SHORTOPTS_PREFIX (":h", so getopt reports a missing
   value as ':' and stays quiet). */
#define CLI_OPT_THREADS 0x1000
#define CLI_OPT_WEIGHTS 0x1001
#define CLI_COMMON_OPTIONS                                                  \
    {"help", no_argument, NULL, 'h'},                                       \
    {"threads", required_argument, NULL, CLI_OPT_THREADS},                  \
    {"weights", required_argument, NULL, CLI_OPT_WEIGHTS}
#define CLI_SHORTOPTS_PREFIX ":h"

/* Prints the help lines of --threads and --help, their descriptions at
   column col like the command's own. */
void cli_common_help(FILE *f, int col);
/* Resets getopt for a new argv (the subcommand's). */
void cli_getopt_reset(void);
/* Handles what getopt_long returned when the command itself does not:
   --threads, a missing value (':') and an unknown option ('?'). Returns
   CLI_OK, or CLI_USAGE after printing the error. */
int cli_common_option(const char *cmd, int c, const char *arg, char **argv);

/* Parse a whole string as a number; the value must lie in [lo, hi]. On
   failure they print "gpt2 <cmd>: <opt> <s>: ..." and return CLI_USAGE. */
int cli_opt_int(const char *cmd, const char *opt, const char *s, long lo,
                long hi, int *out);
int cli_opt_u64(const char *cmd, const char *opt, const char *s,
                uint64_t *out);
/* Any finite number; the command checks its range (its rules differ:
   open, closed, half-open) and reports with cli_bad_value. */
int cli_opt_float(const char *cmd, const char *opt, const char *s,
                  float *out);
int cli_bad_value(const char *cmd, const char *opt, const char *s,
                  const char *rule);
/* "f32" / "f16" / "bf16" (any case). */
int cli_opt_dtype(const char *cmd, const char *s, gpt2_dtype *out);

/* ------------------------------------------------------------- input */

/* Reads a whole file, or stdin when path is NULL or "-", into a malloc'd
   NUL-terminated buffer. Prints the error; returns CLI_OK or CLI_FAIL. */
int cli_read_input(const char *cmd, const char *path, char **data,
                   size_t *len);

/* ------------------------------------------------------------ UTF-8 */

/* Length of the longest valid UTF-8 prefix of s (n when all is valid):
   the byte offset of the first bad byte. Strict: no overlong forms, no
   surrogates, nothing above U+10FFFF. */
size_t cli_utf8_valid_prefix(const char *s, size_t n);
/* A malloc'd NUL-terminated copy of s with every invalid byte and every
   NUL replaced by U+FFFD, so it is always a valid JSON string. NULL when
   out of memory. */
char *cli_utf8_sanitize(const char *s, size_t n);
/* Writes a token's bytes readably into buf (NUL-terminated, truncated to
   cap): \n \t \r \\ as escapes, other control bytes and bytes of invalid
   UTF-8 as \xNN, everything else as is. With quote, also escapes '"'. */
void cli_escape_piece(const char *s, size_t n, bool quote, char *buf,
                      size_t cap);

/* ------------------------------------------------------ scoring a text */

/* Reads path ('-' or NULL: stdin) and encodes it with m's tokenizer
   (GPT2_ENCODE_SPECIAL with special) into *ids (malloc'd, *n of them).
   Prints errors; returns the exit code. */
int cli_encode_file(const char *cmd, const gpt2_model *m, const char *path,
                    bool special, int **ids, size_t *n);

/* The sliding windows `gpt2 eval` and `gpt2 score` read a text with (n >=
   2 tokens): windows of T = min(n_ctx, n - 1) inputs advancing by stride,
   the last moved back to end at the text's end so every window is full.
   Input i of a window predicts ids[begin + i + 1]; each prediction is made
   once, in the first window that reaches it, so inputs before `first` in
   a window are context only. fn gets each window's logits (T, V) and the
   mean loss over its new predictions; a non-zero return stops with that
   exit code. *windows counts the windows run. */
typedef int (*cli_window_fn)(void *user, size_t begin, int T, int first,
                             const float *logits, float loss);
int cli_sliding_windows(const char *cmd, gpt2_model *m, const int *ids,
                        size_t n, int stride, cli_window_fn fn, void *user,
                        int *windows);

/* A growing NUL-terminated text, e.g. what a generation produced so far. */
typedef struct {
    char *text; /* malloc'd; NULL while empty */
    size_t len, cap;
} cli_text;
/* Appends n bytes; false when out of memory (the text is unchanged). */
bool cli_text_append(cli_text *t, const char *s, size_t n);

/* A seed nobody chose: time and pid, mixed, below 2^53 so that it survives
   any JSON reader as a number. */
uint64_t cli_seed_from_clock(void);

/* "124,439,808" into buf (at least 32 bytes). */
const char *cli_fmt_count(size_t n, char *buf);

/* ------------------------------------------------------ data and models */

/* Where the tokenizer and the default model live: the first of
   $GPT2C_DATA, <exe>/../assets (build tree), <exe>/../share/gpt2c
   (installed), GPT2_DATADIR (compile time) that exists. */
typedef struct {
    char root[4096];      /* the location itself */
    char tokenizer[4096]; /* root/tokenizer */
    char models[4096];    /* root/models, or root/../models in a build tree */
} cli_data;

/* false when no location exists; then what was tried is in tried. */
bool cli_find_data(cli_data *d, char *tried, size_t cap);
/* Loads the data location's tokenizer. Prints errors; returns exit code. */
int cli_load_data_tokenizer(const char *cmd, gpt2_tokenizer **out);
/* Gives m the data location's tokenizer when m's vocabulary can hold it.
   Returns true when attached; otherwise why says why not. */
bool cli_attach_data_tokenizer(gpt2_model *m, char *why, size_t cap);

/* The default model's path into buf: $GPT2C_MODEL, else <models>/kjv when
   it exists. Otherwise prints an error saying how to get a model and
   returns CLI_FAIL. */
int cli_default_model(const char *cmd, char *buf, size_t cap);

/* Loads the model at path, or the default model when path is NULL
   ($GPT2C_MODEL, else <models>/kjv). An llm.c file has no tokenizer of its
   own and gets the data location's. With need_tokenizer, a model without
   one is an error. Prints errors; returns exit code. */
int cli_load_model(const char *cmd, const char *path, bool need_tokenizer,
                   gpt2_model **out);

#endif /* GPT2_CLI_H */
