/* cmd_tokenize.c: `gpt2 tokenize` (text -> ids) and `gpt2 detokenize`
   (ids -> text). Together they round-trip any bytes exactly: GPT-2's BPE
   is byte-level, so nothing is normalised or lost. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { OPT_PIECES = 0x100, OPT_SPECIAL };

static void tokenize_usage(FILE *f) {
    fprintf(f,
"usage: gpt2 tokenize [-m DIR] [--pieces] [--special] [FILE]\n"
"Encodes FILE (default: stdin) with GPT-2's byte-level BPE and prints the\n"
"token ids space-separated on one line.\n\n"
"  -m, --model DIR   use the tokenizer of this model directory (default: the\n"
"                    installed GPT-2 tokenizer)\n"
"  --pieces          print one 'id<TAB>piece' line per token; the piece is\n"
"                    shown escaped: \\n \\t \\r \\\\, other control bytes and\n"
"                    bytes of incomplete UTF-8 characters as \\xNN\n"
"  --special         recognise the text <|endoftext|> as the special token\n"
"                    (default: it is ordinary text, as in GPT-2)\n");
    cli_common_help(f, 20);
}

static void detokenize_usage(FILE *f) {
    fprintf(f,
"usage: gpt2 detokenize [-m DIR] [FILE]\n"
"Reads whitespace-separated token ids from FILE (default: stdin) and writes\n"
"the bytes they stand for to stdout, exactly (no newline is added).\n\n"
"  -m, --model DIR   use the tokenizer of this model directory (default: the\n"
"                    installed GPT-2 tokenizer)\n");
    cli_common_help(f, 20);
}

/* The tokenizer of -m DIR, or the installed one. An llm.c file carries no
   tokenizer, so it too gets the installed one. */
static int load_tokenizer(const char *cmd, const char *model,
                          gpt2_tokenizer **out) {
    struct stat st;
    if (!model) return cli_load_data_tokenizer(cmd, out);
    if (stat(model, &st) != 0)
        return cli_error(cmd, CLI_FAIL, "model '%s': %s", model,
                         strerror(errno));
    if (!S_ISDIR(st.st_mode)) return cli_load_data_tokenizer(cmd, out);
    if (gpt2_tokenizer_load(model, out) != GPT2_OK)
        return cli_lib_error(cmd, "model '%s' has no usable tokenizer "
                                  "(vocab.json and merges.txt)", model);
    return CLI_OK;
}

/* Parses the options both commands share; *file receives the optional
   positional FILE. Returns -1 after --help. */
static int parse(const char *cmd, int argc, char **argv, bool allow_flags,
                 void (*usage)(FILE *), const char **model, bool *pieces,
                 bool *special, const char **file) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"pieces", no_argument, NULL, OPT_PIECES},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv,
                                            CLI_SHORTOPTS_PREFIX "m:", opts,
                                            NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return -1;
        } else if (c == 'm') {
            *model = optarg;
        } else if (allow_flags && c == OPT_PIECES) {
            *pieces = true;
        } else if (allow_flags && c == OPT_SPECIAL) {
            *special = true;
        } else if (c == OPT_PIECES || c == OPT_SPECIAL) {
            rc = cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        } else {
            rc = cli_common_option(cmd, c, optarg, argv);
        }
    }
    if (rc != CLI_OK) return rc;
    if (argc - optind > 1)
        return cli_usage_error(cmd, "one FILE at most (got '%s' and '%s')",
                               argv[optind], argv[optind + 1]);
    *file = optind < argc ? argv[optind] : NULL;
    return CLI_OK;
}

/* ------------------------------------------------------------ tokenize */

static void print_ids(const int *ids, size_t n, bool pieces,
                      const gpt2_tokenizer *tok) {
    char *esc = NULL;
    size_t esc_cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pieces) {
            printf(i ? " %d" : "%d", ids[i]);
            continue;
        }
        size_t len = 0;
        const char *p = gpt2_tokenizer_piece(tok, ids[i], &len);
        if (4 * len + 1 > esc_cap) { /* \xNN is the longest escape */
            free(esc);
            esc_cap = 4 * len + 1;
            esc = malloc(esc_cap);
            if (!esc) esc_cap = 0;
        }
        if (esc) cli_escape_piece(p ? p : "", p ? len : 0, false, esc, esc_cap);
        printf("%d\t%s\n", ids[i], esc ? esc : "?");
    }
    if (!pieces) putchar('\n');
    free(esc);
}

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize", *model = NULL, *file = NULL;
    bool pieces = false, special = false;
    int rc = parse(cmd, argc, argv, true, tokenize_usage, &model, &pieces,
                   &special, &file);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    gpt2_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, n = 0;
    int *ids = NULL;
    rc = load_tokenizer(cmd, model, &tok);
    if (rc == CLI_OK) rc = cli_read_input(cmd, file, &text, &len);
    if (rc == CLI_OK && !(ids = malloc((len + 1) * sizeof(int))))
        rc = cli_error(cmd, CLI_FAIL, "out of memory");
    if (rc == CLI_OK &&
        gpt2_tokenizer_encode(tok, text, len, special ? GPT2_ENCODE_SPECIAL : 0,
                              ids, len + 1, &n) != GPT2_OK)
        rc = cli_lib_error(cmd, "cannot encode '%s'", file ? file : "stdin");
    if (rc == CLI_OK) {
        print_ids(ids, n, pieces, tok);
        if (fflush(stdout) != 0 || ferror(stdout))
            rc = cli_error(cmd, CLI_FAIL, "cannot write to stdout");
    }
    free(ids);
    free(text);
    gpt2_tokenizer_free(tok);
    return rc;
}

/* ---------------------------------------------------------- detokenize */

/* Writes the bytes of each whitespace-separated id in text. Every id is
   checked before any byte is written, so bad input leaves no half output. */
static int write_ids(const char *cmd, const gpt2_tokenizer *tok,
                     const char *text, size_t len) {
    int vocab = gpt2_tokenizer_vocab_size(tok);
    size_t n = 0, cap = 0;
    int *ids = NULL, rc = CLI_OK;
    for (size_t i = 0, word = 1; rc == CLI_OK && i < len; word++) {
        while (i < len && isspace((unsigned char)text[i])) i++;
        if (i == len) break;
        size_t j = i;
        long v = 0;
        while (j < len && isdigit((unsigned char)text[j]) && v <= vocab)
            v = v * 10 + (text[j++] - '0');
        size_t end = j;
        while (end < len && !isspace((unsigned char)text[end])) end++;
        int shown = end - i > 40 ? 40 : (int)(end - i);
        if (j == i || (end > j && !isdigit((unsigned char)text[j])))
            rc = cli_error(cmd, CLI_FAIL, "'%.*s' (word %zu) is not a token "
                           "id", shown, text + i, word);
        else if (end > j || v >= vocab)
            rc = cli_error(cmd, CLI_FAIL, "token id %.*s (word %zu) is out of "
                           "range: the vocabulary has ids 0..%d", shown,
                           text + i, word, vocab - 1);
        else if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            int *bigger = realloc(ids, cap * sizeof(int));
            if (!bigger) rc = cli_error(cmd, CLI_FAIL, "out of memory");
            else ids = bigger;
        }
        if (rc == CLI_OK) ids[n++] = (int)v;
        i = end;
    }
    for (size_t k = 0; rc == CLI_OK && k < n; k++) {
        size_t plen = 0;
        const char *p = gpt2_tokenizer_piece(tok, ids[k], &plen);
        if (!p)
            rc = cli_error(cmd, CLI_FAIL, "token id %d has no text", ids[k]);
        else
            fwrite(p, 1, plen, stdout);
    }
    free(ids);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *cmd = "detokenize", *model = NULL, *file = NULL;
    bool unused = false;
    int rc = parse(cmd, argc, argv, false, detokenize_usage, &model, &unused,
                   &unused, &file);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    gpt2_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    rc = load_tokenizer(cmd, model, &tok);
    if (rc == CLI_OK) rc = cli_read_input(cmd, file, &text, &len);
    if (rc == CLI_OK) rc = write_ids(cmd, tok, text, len);
    if (rc == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = cli_error(cmd, CLI_FAIL, "cannot write to stdout");
    free(text);
    gpt2_tokenizer_free(tok);
    return rc;
}
