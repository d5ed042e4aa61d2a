/* tok_ids: encodes a file with gpt2c's tokenizer in one call and prints the
   ids, space separated, on one line. The C side of the tokenizer parity
   test (tests/t_tokenizer_parity.sh), and its speed measurement.

   usage: tok_ids [--dir DIR] [--special] [--check] [--bench N] FILE|-
     --dir DIR   tokenizer directory (default assets/tokenizer)
     --special   recognise <|endoftext|> (GPT2_ENCODE_SPECIAL)
     --check     also check that decoding the ids gives back the file
     --bench N   encode N times on one thread and print MB/s to stderr
                 instead of the ids */
#include "gpt2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void) {
    fprintf(stderr, "usage: tok_ids [--dir DIR] [--special] [--check] "
                    "[--bench N] FILE|-\n");
    return 2;
}

/* The whole of f into a malloc'd buffer. */
static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *p = realloc(buf, cap *= 2);
        if (!p) free(buf);
        buf = p;
    }
    if (!buf || ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what) {
    fprintf(stderr, "tok_ids: %s: %s\n", what, gpt2_last_error());
    return 1;
}

/* Encodes text; *ids (malloc'd, len + 1 entries) and *n receive the ids. */
static int encode(const gpt2_tokenizer *t, const char *text, size_t len,
                  int flags, int **ids, size_t *n) {
    *ids = malloc((len + 1) * sizeof **ids);
    if (!*ids) return fail("out of memory");
    if (gpt2_tokenizer_encode(t, text, len, flags, *ids, len + 1, n) != GPT2_OK)
        return fail("encode");
    return 0;
}

static int check_round_trip(const gpt2_tokenizer *t, const int *ids, size_t n,
                            const char *text, size_t len) {
    char *back = malloc(len + 1);
    size_t got;
    int rc = 0;
    if (!back) return fail("out of memory");
    if (gpt2_tokenizer_decode(t, ids, n, back, len + 1, &got) != GPT2_OK) {
        rc = fail("decode");
    } else if (got != len || memcmp(back, text, len) != 0) {
        fprintf(stderr, "tok_ids: decode(encode(text)) differs from the text "
                        "(%zu bytes back for %zu)\n", got, len);
        rc = 1;
    }
    free(back);
    return rc;
}

static int bench(const gpt2_tokenizer *t, const char *text, size_t len,
                 int flags, int reps) {
    int *ids = malloc((len + 1) * sizeof *ids);
    size_t n = 0;
    if (!ids) return fail("out of memory");
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (gpt2_tokenizer_encode(t, text, len, flags, ids, len + 1, &n) != GPT2_OK) {
            free(ids);
            return fail("encode");
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    fprintf(stderr, "tok_ids: encoded %.2f MB into %zu ids in %.3f s (best of "
                    "%d): %.1f MB/s\n", len / 1e6, n, best, reps, len / 1e6 / best);
    free(ids);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = "assets/tokenizer", *path = NULL;
    int flags = 0, check = 0, reps = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--special")) flags |= GPT2_ENCODE_SPECIAL;
        else if (!strcmp(argv[i], "--check")) check = 1;
        else if (!strcmp(argv[i], "--bench") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!path && (argv[i][0] != '-' || !strcmp(argv[i], "-"))) path = argv[i];
        else return usage();
    }
    if (!path) return usage();
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        perror(path);
        return 1;
    }
    size_t len = 0;
    char *text = read_all(f, &len);
    if (f != stdin) fclose(f);
    if (!text) {
        fprintf(stderr, "tok_ids: %s: could not read\n", path);
        return 1;
    }
    gpt2_tokenizer *t;
    if (gpt2_tokenizer_load(dir, &t) != GPT2_OK) return fail("load");
    int rc;
    if (reps > 0) {
        rc = bench(t, text, len, flags, reps);
    } else {
        int *ids = NULL;
        size_t n = 0;
        rc = encode(t, text, len, flags, &ids, &n);
        for (size_t i = 0; !rc && i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        if (!rc) printf("\n");
        if (!rc && check) rc = check_round_trip(t, ids, n, text, len);
        free(ids);
    }
    gpt2_tokenizer_free(t);
    free(text);
    return rc;
}
