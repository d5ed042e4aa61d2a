/* fuzz_tokenizer.c: libFuzzer target for the tokenizer. Any bytes must
   encode, and decode back to themselves, with and without the special
   token flag; the id count must fit the documented bound (cap = len); a
   short buffer must report the same count; the UTF-8 stream must let every
   byte through in order. Aborts on any violation.

   The tokenizer is loaded once, from $GPT2_TOKENIZER_DIR or
   assets/tokenizer (run from the repository root). Build and run:
     clang -g -O1 -fsanitize=fuzzer,address -Iinclude -Isrc src/util.c \
       src/tokenizer.c tests/fuzz/fuzz_tokenizer.c -lpcre2-8 -lcjson -lm \
       -o /tmp/fuzz_tok && /tmp/fuzz_tok -max_total_time=20 */
#include "gpt2.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gpt2_tokenizer *tok;

static void die(const char *what, size_t size) {
    fprintf(stderr, "fuzz_tokenizer: %s (input of %zu bytes): %s\n", what, size,
            gpt2_last_error());
    abort();
}

static void load_once(void) {
    if (tok) return;
    const char *dir = getenv("GPT2_TOKENIZER_DIR");
    if (!dir || !*dir) dir = "assets/tokenizer";
    if (gpt2_tokenizer_load(dir, &tok) != GPT2_OK) die("load", 0);
}

static void check_round_trip(const uint8_t *data, size_t size, int flags,
                             int *ids, char *back) {
    size_t n = 0, len = 0;
    if (gpt2_tokenizer_encode(tok, (const char *)data, size, flags, ids, size, &n) != GPT2_OK)
        die("encode with cap = len failed", size);
    if (n > size) die("more ids than bytes", size);
    if (gpt2_tokenizer_decode(tok, ids, n, back, size + 1, &len) != GPT2_OK)
        die("decode failed", size);
    if (len != size || memcmp(back, data, size) != 0)
        die("decode(encode(x)) != x", size);
    if (n > 1) { /* a short buffer: GPT2_ERR_BUFFER with the same count */
        size_t m = 0;
        if (gpt2_tokenizer_encode(tok, (const char *)data, size, flags, ids, n / 2, &m) !=
                GPT2_ERR_BUFFER || m != n)
            die("short buffer not reported", size);
    }
}

/* Feeds the bytes to a UTF-8 stream in chunks of varying size. */
static void check_stream(const uint8_t *data, size_t size, char *out) {
    gpt2_utf8_stream s = {0};
    size_t k = 0;
    for (size_t i = 0; i < size;) {
        size_t c = 1 + (data[i] & 7);
        if (c > size - i) c = size - i;
        k += gpt2_utf8_stream_feed(&s, (const char *)data + i, c, out + k);
        i += c;
    }
    k += gpt2_utf8_stream_flush(&s, out + k);
    if (k != size || memcmp(out, data, size) != 0) die("utf8 stream lost or reordered bytes", size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_once();
    int *ids = malloc((size + 1) * sizeof *ids);
    char *back = malloc(size + 8);
    if (!ids || !back) die("out of memory", size);
    check_round_trip(data, size, 0, ids, back);
    check_round_trip(data, size, GPT2_ENCODE_SPECIAL, ids, back);
    check_stream(data, size, back);
    free(ids);
    free(back);
    return 0;
}
