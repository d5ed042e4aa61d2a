/* test_tokenizer.c: the byte-level BPE tokenizer (src/tokenizer.c).
   Run from the repository root: it loads assets/tokenizer.

   Known ids come from gpt-3-encoder (npm) and from OpenAI's encoder.py
   algorithm run with Python's `regex`; the two agree on all of them except
   the U+0085 / U+FEFF cases, where the ids are encoder.py's (see the
   comment at the top of src/tokenizer.c). */
#include "gpt2.h"
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOK_DIR "assets/tokenizer"

/* ------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n) { /* uniform-ish in [0, n) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32) % n;
}

/* Whether s[0..n) is valid UTF-8 (written here independently of the
   library, as the stream tests' judge). */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) len = 1;
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) len = 3;
        else if (c >= 0xF0 && c <= 0xF4) len = 4;
        else return 0;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (i + len > n) return 0;
        if (len > 1 && (s[i + 1] < lo || s[i + 1] > hi)) return 0;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

static char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *len = (size_t)n;
    return buf;
}

static void write_whole(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static char tmp_dir[64];

static void path_in_tmp(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmp_dir, name);
}

static void write_tmp(const char *name, const char *data) {
    char p[256];
    path_in_tmp(p, sizeof p, name);
    write_whole(p, data, strlen(data));
}

static void remove_tmp(const char *name) {
    char p[256];
    path_in_tmp(p, sizeof p, name);
    unlink(p);
}

/* Encodes text; returns a malloc'd id array (count in *n), NULL on error. */
static int *encode(const gpt2_tokenizer *t, const char *text, size_t len,
                   int flags, size_t *n) {
    int *ids = malloc((len + 1) * sizeof *ids);
    if (!ids) return NULL;
    if (gpt2_tokenizer_encode(t, text, len, flags, ids, len, n) != GPT2_OK) {
        fprintf(stderr, "encode failed: %s\n", gpt2_last_error());
        free(ids);
        return NULL;
    }
    return ids;
}

/* decode(encode(text)) == text, with cap = len exactly (the contract). */
static int round_trips(const gpt2_tokenizer *t, const char *text, size_t len,
                       int flags) {
    size_t n = 0, got = 0;
    int *ids = encode(t, text, len, flags, &n);
    char *back = malloc(len + 1);
    int ok = ids && back && n <= len &&
             gpt2_tokenizer_decode(t, ids, n, back, len + 1, &got) == GPT2_OK &&
             got == len && memcmp(back, text, len) == 0;
    free(ids);
    free(back);
    return ok;
}

/* ---------------------------------------------------------- known ids */

typedef struct {
    const char *text;
    int ids[96];
    int n;
} known;

static const known known_ids[] = {
    {"Hello world", {15496, 995}, 2},
    {" Hello", {18435}, 1},
    {"hello", {31373}, 1},
    {"HELLO WORLD!", {13909, 3069, 46, 29564, 0}, 5},
    {"I'm sure you're right: they've said we'll see, it's John's and he'd "
     "know. DON'T SHOUT, it'S fine",
     {40, 1101, 1654, 345, 821, 826, 25, 484, 1053, 531, 356, 1183, 766, 11,
      340, 338, 1757, 338, 290, 339, 1549, 760, 13, 23917, 6, 51, 6006,
      12425, 11, 340, 6, 50, 3734}, 33},
    {"In 1984, 3.14159 and 1,000,000 people paid $12.50 (or 7%) on "
     "2024-01-31 at 12:30:59.",
     {818, 12844, 11, 513, 13, 1415, 19707, 290, 352, 11, 830, 11, 830, 661,
      3432, 720, 1065, 13, 1120, 357, 273, 767, 4407, 319, 48609, 12, 486,
      12, 3132, 379, 1105, 25, 1270, 25, 3270, 13}, 36},
    /* whitespace runs: \s+(?!\S) leaves the last space to the next word */
    {"a  b\t\tc\n\n\nd   \n  e \r\n\tf    ",
     {64, 220, 275, 197, 197, 66, 628, 198, 67, 220, 220, 220, 198, 220, 304,
      220, 201, 198, 197, 69, 220, 220, 220, 220}, 24},
    {"int main(void) {\n    return x->y[i] != 0 && *p++ == '\\n'; // done\n}\n",
     {600, 1388, 7, 19382, 8, 1391, 198, 220, 220, 220, 1441, 2124, 3784, 88,
      58, 72, 60, 14512, 657, 11405, 1635, 79, 4880, 6624, 705, 59, 77,
      17020, 3373, 1760, 198, 92, 198}, 33},
    /* Chinese */
    {"\xe8\xb5\xb7\xe5\x88\x9d\xef\xbc\x8c\xe7\xa5\x9e\xe5\x88\x9b\xe9\x80"
     "\xa0\xe5\xa4\xa9\xe5\x9c\xb0\xe3\x80\x82\xe5\x9c\xb0\xe6\x98\xaf\xe7"
     "\xa9\xba\xe8\x99\x9a\xe6\xb7\xb7\xe6\xb2\x8c\xef\xbc\x8c\xe6\xb8\x8a"
     "\xe9\x9d\xa2\xe9\xbb\x91\xe6\x9a\x97\xe3\x80\x82",
     {164, 113, 115, 26344, 251, 171, 120, 234, 15351, 26344, 249, 34460,
      254, 25465, 28839, 108, 16764, 28839, 108, 42468, 163, 102, 118, 164,
      247, 248, 162, 115, 115, 162, 110, 234, 171, 120, 234, 162, 116, 232,
      165, 251, 95, 165, 119, 239, 162, 248, 245, 16764}, 48},
    /* Arabic with diacritics (Mn, not letters) and Arabic-Indic digits */
    {"\xd9\x81\xd9\x90\xd9\x8a \xd8\xa7\xd9\x84\xd9\x92\xd8\xa8\xd9\x8e\xd8"
     "\xaf\xd9\x92\xd8\xa1\xd9\x90 \xd8\xae\xd9\x8e\xd9\x84\xd9\x8e\xd9\x82"
     "\xd9\x8e \xd8\xa7\xd9\x84\xd9\x84\xd9\x87\xd9\x8f \xd8\xa7\xd9\x84\xd8"
     "\xb3\xd9\x8e\xd9\x91\xd9\x85\xd9\x8e\xd8\xa7\xd9\x88\xd9\x8e\xd8\xa7"
     "\xd8\xaa\xd9\x90 \xd9\x88\xd9\x8e\xd8\xa7\xd9\x84\xd8\xa3\xd9\x8e\xd8"
     "\xb1\xd9\x92\xd8\xb6\xd9\x8e \xd9\xa1\xd9\xa2\xd9\xa3",
     {149, 223, 44208, 22654, 28981, 48763, 39848, 24333, 38843, 48763, 148,
      94, 44208, 17550, 106, 24333, 13862, 24333, 149, 224, 24333, 28981,
      13862, 29519, 149, 237, 28981, 45692, 24333, 149, 239, 25405, 24333,
      12919, 30335, 24333, 34247, 103, 44208, 42092, 24333, 23525, 148, 96,
      24333, 26897, 48763, 148, 114, 24333, 18923, 94, 149, 95, 149, 96}, 56},
    /* Hindi: vowel signs are marks (Mc/Mn), which split \p{L}+ runs */
    {"\xe0\xa4\x86\xe0\xa4\xa6\xe0\xa4\xbf \xe0\xa4\xae\xe0\xa5\x87\xe0\xa4"
     "\x82 \xe0\xa4\xaa\xe0\xa4\xb0\xe0\xa4\xae\xe0\xa5\x87\xe0\xa4\xb6\xe0"
     "\xa5\x8d\xe0\xa4\xb5\xe0\xa4\xb0 \xe0\xa4\xa8\xe0\xa5\x87 \xe0\xa4\x86"
     "\xe0\xa4\x95\xe0\xa4\xbe\xe0\xa4\xb6 \xe0\xa4\x94\xe0\xa4\xb0 \xe0\xa4"
     "\xaa\xe0\xa5\x83\xe0\xa4\xa5\xe0\xa5\x8d\xe0\xa4\xb5\xe0\xa5\x80 \xe0"
     "\xa4\x95\xe0\xa5\x80 \xe0\xa4\xb8\xe0\xa5\x83\xe0\xa4\xb7\xe0\xa5\x8d"
     "\xe0\xa4\x9f\xe0\xa4\xbf \xe0\xa4\x95\xe0\xa5\x80\xe0\xa5\xa4 \xe0\xa5"
     "\xa7\xe0\xa5\xa8\xe0\xa5\xa9",
     {11976, 228, 11976, 99, 11976, 123, 28225, 106, 24231, 229, 11976, 224,
      28225, 103, 11976, 108, 11976, 106, 24231, 229, 11976, 114, 24231, 235,
      11976, 113, 11976, 108, 28225, 101, 24231, 229, 28225, 228, 11976, 243,
      48077, 11976, 114, 28225, 242, 11976, 108, 28225, 103, 24231, 225,
      11976, 98, 24231, 235, 11976, 113, 24231, 222, 28225, 243, 24231, 222,
      28225, 116, 24231, 225, 11976, 115, 24231, 235, 11976, 253, 11976, 123,
      28225, 243, 24231, 222, 24231, 97, 220, 24231, 100, 24231, 101, 24231,
      102}, 84},
    /* emoji: ZWJ family, skin tone, rainbow flag, heart + VS16, flag */
    {"\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91"
     "\xa7 \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2"
     "\x80\x8d\xf0\x9f\x8c\x88 \xe2\x9d\xa4\xef\xb8\x8f \xf0\x9f\x87\xab\xf0"
     "\x9f\x87\xb7",
     {41840, 102, 447, 235, 41840, 102, 447, 235, 41840, 100, 50169, 235,
      8582, 237, 121, 12520, 237, 111, 37929, 447, 235, 8582, 234, 230, 43074,
      97, 37929, 12520, 229, 104, 8582, 229, 115}, 33},
    /* without GPT2_ENCODE_SPECIAL, <|endoftext|> is plain text */
    {"<|endoftext|>", {27, 91, 437, 1659, 5239, 91, 29}, 7},
    {"a<|endoftext|>b", {64, 27, 91, 437, 1659, 5239, 91, 29, 65}, 9},
    /* U+180E is not White_Space (PCRE2's own \s would say it is); U+200B
       neither */
    {"x\xe1\xa0\x8ey \xe1\xa0\x8e z\xe2\x80\x8bw",
     {87, 157, 254, 236, 88, 28053, 254, 236, 1976, 9525, 86}, 11},
    /* U+0085 is White_Space for encoder.py; gpt-3-encoder (JavaScript's \s)
       disagrees and gives 64 1587 227 65 */
    {"a \xc2\x85" "b", {64, 220, 126, 227, 65}, 5},
    /* U+FEFF is not White_Space for encoder.py; gpt-3-encoder disagrees and
       gives 64 220 171 119 123 65 */
    {"a \xef\xbb\xbf" "b", {64, 27332, 119, 123, 65}, 5},
    /* invalid UTF-8: each bad byte is an "other" character, as Python's
       surrogateescape would make it (ids from encoder.py on such a str) */
    {" \xff\xfe!x", {220, 187, 186, 0, 87}, 5},
    {"caf\xe9 \xe2\x82\xac\xe2\x82 ok\xed\xa0\x80.",
     {66, 1878, 165, 10432, 158, 224, 12876, 169, 254, 222, 13}, 11},
    {"\x80\x80\x80" "abc", {222, 222, 222, 39305}, 4},
    /* a letter (U+0CB2) then a bad byte: two pieces, not one */
    {"\xe0\xb2\xb2\xbe", {156, 110, 110, 122}, 4},
    /* "!", a combining mark (U+036C) and a bad byte: one piece */
    {"!\xcd\xac\xbc", {0, 137, 45539}, 3},
};

static void test_known_ids(const gpt2_tokenizer *t) {
    for (size_t k = 0; k < sizeof known_ids / sizeof known_ids[0]; k++) {
        const known *c = &known_ids[k];
        size_t len = strlen(c->text), n = 0;
        int *ids = encode(t, c->text, len, 0, &n);
        int same = ids && n == (size_t)c->n &&
                   memcmp(ids, c->ids, n * sizeof *ids) == 0;
        CHECK(same);
        if (!same && ids) {
            fprintf(stderr, "  case %zu: got", k);
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        CHECK(round_trips(t, c->text, len, 0));
        free(ids);
    }
}

static void test_basics(const gpt2_tokenizer *t) {
    size_t len = 99;
    CHECK(gpt2_tokenizer_vocab_size(t) == 50257);
    CHECK(gpt2_tokenizer_eot(t) == 50256);
    const char *p = gpt2_tokenizer_piece(t, 50256, &len);
    CHECK(p && len == 13 && memcmp(p, GPT2_EOT_TEXT, 13) == 0);
    p = gpt2_tokenizer_piece(t, 220, &len);
    CHECK(p && len == 1 && p[0] == ' ');
    p = gpt2_tokenizer_piece(t, 15496, &len);
    CHECK(p && len == 5 && memcmp(p, "Hello", 5) == 0);
    p = gpt2_tokenizer_piece(t, 198, &len);
    CHECK(p && len == 1 && p[0] == '\n');
    CHECK(gpt2_tokenizer_piece(t, -1, &len) == NULL && len == 0);
    CHECK(gpt2_tokenizer_piece(t, 50257, NULL) == NULL);
    /* every single byte has a token that decodes to it */
    int ok = 1;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        size_t n = 0;
        int id = -1;
        ok &= gpt2_tokenizer_encode(t, &c, 1, 0, &id, 1, &n) == GPT2_OK && n == 1;
        p = gpt2_tokenizer_piece(t, id, &len);
        ok &= p && len == 1 && p[0] == c;
    }
    CHECK(ok);
}

/* --------------------------------------------------- special, buffers */

static void test_special(const gpt2_tokenizer *t) {
    static const char text[] = "a<|endoftext|>b<|endoftext|><|endoftext|> c<|endoftext|";
    size_t n = 0, len = sizeof text - 1;
    int *ids = encode(t, text, len, GPT2_ENCODE_SPECIAL, &n);
    /* a, eot, b, eot, eot, " c", then the unfinished marker as text */
    static const int want[] = {64, 50256, 65, 50256, 50256, 269, 27, 91, 437, 1659, 5239, 91};
    CHECK(ids && n == sizeof want / sizeof want[0] &&
          memcmp(ids, want, sizeof want) == 0);
    free(ids);
    ids = encode(t, text, len, 0, &n);
    int found = 0;
    for (size_t i = 0; ids && i < n; i++) found |= ids[i] == 50256;
    CHECK(ids && !found);
    free(ids);
    CHECK(round_trips(t, text, len, GPT2_ENCODE_SPECIAL));
    CHECK(round_trips(t, text, len, 0));
    ids = encode(t, GPT2_EOT_TEXT, 13, GPT2_ENCODE_SPECIAL, &n);
    CHECK(ids && n == 1 && ids[0] == 50256);
    free(ids);
}

static void test_buffers(const gpt2_tokenizer *t) {
    int ids[4] = {0};
    size_t n = 0;
    CHECK(gpt2_tokenizer_encode(t, "Hello world", 11, 0, ids, 1, &n) == GPT2_ERR_BUFFER);
    CHECK(n == 2 && ids[0] == 15496); /* what fits is written */
    CHECK(gpt2_tokenizer_encode(t, "Hello world", 11, 0, NULL, 0, &n) == GPT2_ERR_BUFFER);
    CHECK(n == 2);
    CHECK(strstr(gpt2_last_error(), "2 ids") != NULL);
    CHECK_OK(gpt2_tokenizer_encode(t, "Hello world", 11, 0, ids, 2, &n));
    CHECK(n == 2 && ids[1] == 995);
    CHECK_OK(gpt2_tokenizer_encode(t, "", 0, 0, NULL, 0, &n));
    CHECK(n == 0);
    CHECK_OK(gpt2_tokenizer_encode(t, NULL, 0, 0, NULL, 0, &n));
    CHECK(gpt2_tokenizer_encode(t, NULL, 3, 0, ids, 4, &n) == GPT2_ERR_ARG);
    CHECK(gpt2_tokenizer_encode(NULL, "a", 1, 0, ids, 4, &n) == GPT2_ERR_ARG);
    CHECK(gpt2_tokenizer_encode(t, "a", 1, 0, ids, 4, NULL) == GPT2_ERR_ARG);

    char buf[16];
    size_t len = 0;
    int hw[2] = {15496, 995};
    CHECK(gpt2_tokenizer_decode(t, hw, 2, buf, 5, &len) == GPT2_ERR_BUFFER);
    CHECK(len == 11);
    CHECK(gpt2_tokenizer_decode(t, hw, 2, NULL, 0, &len) == GPT2_ERR_BUFFER);
    CHECK(len == 11);
    memset(buf, 'x', sizeof buf);
    CHECK_OK(gpt2_tokenizer_decode(t, hw, 2, buf, 11, &len)); /* no room for NUL */
    CHECK(len == 11 && memcmp(buf, "Hello world", 11) == 0 && buf[11] == 'x');
    CHECK_OK(gpt2_tokenizer_decode(t, hw, 2, buf, sizeof buf, &len));
    CHECK(len == 11 && strcmp(buf, "Hello world") == 0);
    int bad[2] = {15496, 50257};
    CHECK(gpt2_tokenizer_decode(t, bad, 2, buf, sizeof buf, &len) == GPT2_ERR_ARG);
    bad[1] = -1;
    CHECK(gpt2_tokenizer_decode(t, bad, 2, buf, sizeof buf, &len) == GPT2_ERR_ARG);
    CHECK_OK(gpt2_tokenizer_decode(t, NULL, 0, buf, sizeof buf, &len));
    CHECK(len == 0 && buf[0] == 0);
}

/* ------------------------------------------------------- round trips */

/* Random text: raw bytes, ASCII, UTF-8 of several scripts, whitespace,
   invalid sequences and pieces of <|endoftext|>. */
static size_t random_text(char *buf, size_t cap) {
    static const char *frags[] = {
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "<|endoftext|>",
        "<|endo", "ftext|>", "Hello", " world", "1234", " 3.5", "...", "\r\n",
        "\t", "   ", "\n\n", "\xc2\xa0", "\xe3\x80\x80", "\xc2\x85", "\xef\xbb\xbf",
        "\xe4\xb8\xad\xe6\x96\x87", "\xd8\xa7\xd9\x84\xd8\xb9", "\xe0\xa4\xb9\xe0\xa4\xbf",
        "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
        "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\xff", "\x80",
    };
    size_t n = 0, want = rnd((uint32_t)cap);
    while (n < want) {
        const char *f;
        char one[2] = {0};
        size_t k;
        if (rnd(3) == 0) {
            one[0] = (char)rnd(256);
            f = one;
            k = 1;
        } else {
            f = frags[rnd(sizeof frags / sizeof frags[0])];
            k = strlen(f);
        }
        if (n + k > cap) break;
        memcpy(buf + n, f, k);
        n += k;
    }
    return n;
}

static void test_round_trip(const gpt2_tokenizer *t) {
    char buf[400];
    int fails = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len = random_text(buf, sizeof buf);
        fails += !round_trips(t, buf, len, 0);
        fails += !round_trips(t, buf, len, GPT2_ENCODE_SPECIAL);
    }
    for (int it = 0; it < 300; it++) { /* uniformly random bytes */
        size_t len = rnd(sizeof buf);
        for (size_t i = 0; i < len; i++) buf[i] = (char)rnd(256);
        fails += !round_trips(t, buf, len, 0);
    }
    CHECK(fails == 0);
    /* long pieces: runs of one class, where BPE does many merges */
    static const char *runs[] = {"a", "ab", " ", "\n", "7", "\xe4\xb8\xad", "!", "\xff"};
    size_t big = 50000;
    char *s = malloc(big + 8);
    for (size_t r = 0; s && r < sizeof runs / sizeof runs[0]; r++) {
        size_t k = strlen(runs[r]), len = 0;
        while (len + k <= big) {
            memcpy(s + len, runs[r], k);
            len += k;
        }
        CHECK(round_trips(t, s, len, 0));
    }
    free(s);
}

/* ------------------------------------------------- JIT vs interpreter */

static void test_interpreter(const gpt2_tokenizer *t) {
    gpt2_tokenizer *u = NULL;
    setenv("GPT2_TOKENIZER_NO_JIT", "1", 1);
    CHECK_OK(gpt2_tokenizer_load(TOK_DIR, &u));
    unsetenv("GPT2_TOKENIZER_NO_JIT");
    if (!u) return;
    char buf[400];
    int diff = 0;
    for (int it = 0; it < 1000; it++) {
        size_t len = random_text(buf, sizeof buf), n1 = 0, n2 = 0;
        int *a = encode(t, buf, len, 0, &n1), *b = encode(u, buf, len, 0, &n2);
        diff += !a || !b || n1 != n2 || memcmp(a, b, n1 * sizeof *a) != 0;
        free(a);
        free(b);
    }
    CHECK(diff == 0);
    gpt2_tokenizer_free(u);
}

/* ---------------------------------------------------------- save, load */

static int same_tokenizer(const gpt2_tokenizer *a, const gpt2_tokenizer *b) {
    if (gpt2_tokenizer_vocab_size(a) != gpt2_tokenizer_vocab_size(b) ||
        gpt2_tokenizer_eot(a) != gpt2_tokenizer_eot(b))
        return 0;
    for (int id = 0; id < gpt2_tokenizer_vocab_size(a); id++) {
        size_t la, lb;
        const char *pa = gpt2_tokenizer_piece(a, id, &la);
        const char *pb = gpt2_tokenizer_piece(b, id, &lb);
        if (la != lb || memcmp(pa, pb, la) != 0) return 0;
    }
    char buf[400];
    for (int it = 0; it < 200; it++) { /* and the merges: same encodings */
        size_t len = random_text(buf, sizeof buf), n1 = 0, n2 = 0;
        int *x = encode(a, buf, len, 0, &n1), *y = encode(b, buf, len, 0, &n2);
        int same = x && y && n1 == n2 && memcmp(x, y, n1 * sizeof *x) == 0;
        free(x);
        free(y);
        if (!same) return 0;
    }
    return 1;
}

static int same_file(const char *p, const char *q) {
    size_t n1 = 0, n2 = 0;
    char *a = read_whole(p, &n1), *b = read_whole(q, &n2);
    int same = a && b && n1 == n2 && memcmp(a, b, n1) == 0;
    free(a);
    free(b);
    return same;
}

static void test_save(const gpt2_tokenizer *t) {
    char v[256], m[256];
    CHECK_OK(gpt2_tokenizer_save(t, tmp_dir));
    path_in_tmp(v, sizeof v, "vocab.json");
    path_in_tmp(m, sizeof m, "merges.txt");
    /* the same bytes as the files GPT-2 ships */
    CHECK(same_file(v, TOK_DIR "/vocab.json"));
    CHECK(same_file(m, TOK_DIR "/merges.txt"));
    gpt2_tokenizer *u = NULL;
    CHECK_OK(gpt2_tokenizer_load(tmp_dir, &u));
    CHECK(u && same_tokenizer(t, u));
    gpt2_tokenizer_free(u);
    /* OpenAI's names, when the Hugging Face ones are absent */
    char e[256], b[256];
    path_in_tmp(e, sizeof e, "encoder.json");
    path_in_tmp(b, sizeof b, "vocab.bpe");
    CHECK(rename(v, e) == 0 && rename(m, b) == 0);
    u = NULL;
    CHECK_OK(gpt2_tokenizer_load(tmp_dir, &u));
    CHECK(u && gpt2_tokenizer_vocab_size(u) == 50257);
    gpt2_tokenizer_free(u);
    remove_tmp("encoder.json");
    remove_tmp("vocab.bpe");
    CHECK(gpt2_tokenizer_save(t, "/nonexistent/dir") == GPT2_ERR_IO);
    CHECK(gpt2_tokenizer_save(NULL, tmp_dir) == GPT2_ERR_ARG);
}

/* ------------------------------------------------ small, bad tokenizers */

/* GPT-2's byte alphabet, written here from its definition. */
static unsigned byte_char(int b) {
    int next = 256;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) ||
                        (c >= 0xAE && c <= 0xFF);
        if (c == b) return printable ? (unsigned)c : (unsigned)next;
        if (!printable) next++;
    }
    return 0;
}

/* A vocab.json of the 256 bytes (id = byte, except skip_byte, left out)
   then extra, a string of JSON members such as "\"ab\": 256". */
static char *small_vocab(const char *extra, int skip_byte) {
    size_t cap = 256 * 16 + strlen(extra) + 8, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{");
    for (int b = 0; b < 256; b++) {
        if (b == skip_byte) continue;
        unsigned c = byte_char(b);
        if (c == '"' || c == '\\') n += (size_t)snprintf(s + n, cap - n, "\"\\%c\": %d, ", c, b);
        else n += (size_t)snprintf(s + n, cap - n, "\"\\u%04x\": %d, ", c, b);
    }
    n += (size_t)snprintf(s + n, cap - n, "%s}", extra);
    return s;
}

/* Loads vocab/merges text from the temp dir; checks status and message. */
static void expect_load(const char *vocab, const char *merges, gpt2_status want,
                        const char *msg, int line) {
    char v[256], m[256];
    write_tmp("vocab.json", vocab);
    write_tmp("merges.txt", merges);
    path_in_tmp(v, sizeof v, "vocab.json");
    path_in_tmp(m, sizeof m, "merges.txt");
    gpt2_tokenizer *t = NULL;
    gpt2_status st = gpt2_tokenizer_load_files(v, m, &t);
    int ok = st == want && (want == GPT2_OK ? t != NULL : t == NULL) &&
             (!msg || strstr(gpt2_last_error(), msg) != NULL);
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: status %d (want %d), message: %s\n", line,
                st, want, gpt2_last_error());
    gpt2_tokenizer_free(t);
}
#define EXPECT_LOAD(v, m, want, msg) expect_load(v, m, want, msg, __LINE__)

static void test_small_tokenizer(void) {
    /* ranks: "ab a" first, then "a b". encoder.py merges every "a b" in
       "abab" before it looks at pairs again, so the better-ranked "ab a"
       that the first merge creates must not jump the queue: [ab, ab]. */
    char *v = small_vocab("\"ab\": 256, \"aba\": 257", -1);
    const char *merges = "#version: 0.2\nab a\na b\n";
    char vp[256], mp[256];
    write_tmp("vocab.json", v);
    write_tmp("merges.txt", merges);
    path_in_tmp(vp, sizeof vp, "vocab.json");
    path_in_tmp(mp, sizeof mp, "merges.txt");
    gpt2_tokenizer *t = NULL;
    CHECK_OK(gpt2_tokenizer_load_files(vp, mp, &t));
    if (t) {
        size_t n = 0;
        int *ids = encode(t, "abab", 4, 0, &n);
        CHECK(ids && n == 2 && ids[0] == 256 && ids[1] == 256);
        free(ids);
        ids = encode(t, "aba", 3, 0, &n);
        CHECK(ids && n == 1 && ids[0] == 257);
        free(ids);
        CHECK(gpt2_tokenizer_eot(t) == -1);
        CHECK(gpt2_tokenizer_vocab_size(t) == 258);
        ids = encode(t, GPT2_EOT_TEXT, 13, GPT2_ENCODE_SPECIAL, &n);
        CHECK(ids && n == 13); /* no eot in this vocabulary: plain bytes */
        free(ids);
        CHECK(round_trips(t, "abab\xff" "ba", 7, 0));
        gpt2_tokenizer_free(t);
    }
    /* the "#version" line is optional; CRLF line ends are accepted */
    EXPECT_LOAD(v, "ab a\na b\n", GPT2_OK, NULL);
    EXPECT_LOAD(v, "#version: 0.2\r\nab a\r\na b\r\n", GPT2_OK, NULL);
    EXPECT_LOAD(v, "#version: 0.2\nab a\na b", GPT2_OK, NULL);
    EXPECT_LOAD(v, "#version: 0.2\nab a\na b\n\n\r\n", GPT2_OK, NULL);
    free(v);
}

static void test_bad_files(void) {
    const char *merges = "#version: 0.2\na b\n";
    char *good = small_vocab("\"ab\": 256", -1);
    EXPECT_LOAD(good, merges, GPT2_OK, NULL);

    EXPECT_LOAD("not json", merges, GPT2_ERR_FORMAT, "not a JSON object");
    EXPECT_LOAD("[1, 2, 3]", merges, GPT2_ERR_FORMAT, "not a JSON object");
    EXPECT_LOAD("{\"a\": 0, \"b\": 1}", merges, GPT2_ERR_FORMAT, "fewer than the 256");
    EXPECT_LOAD("", merges, GPT2_ERR_FORMAT, "not a JSON object");
    struct {
        const char *extra, *msg;
    } bad_vocab[] = {
        {"\"ab\": 999", "expected an integer in [0, 257)"},
        {"\"ab\": -1", "expected an integer"},
        {"\"ab\": 1.5", "expected an integer"},
        {"\"ab\": \"256\"", "is not a number"},
        {"\"ab\": null", "is not a number"},
        {"\"ab\": 5", "given to two tokens"},
        {"\" \": 256", "not in GPT-2's byte alphabet"}, /* space is \u0120 */
        {"\"\\u4e2d\": 256", "U+4E2D, which is not in GPT-2's byte alphabet"},
        {"\"\": 256", "empty string"},
        {"\"\xff\xfe\": 256", "not valid UTF-8"},
        {"\"ab\": 256, \"ab\": 257", "appears twice"},
    };
    for (size_t i = 0; i < sizeof bad_vocab / sizeof bad_vocab[0]; i++) {
        char *v = small_vocab(bad_vocab[i].extra, -1);
        EXPECT_LOAD(v, merges, GPT2_ERR_FORMAT, bad_vocab[i].msg);
        free(v);
    }
    char *no_A = small_vocab("\"ab\": 65", 'A'); /* 256 tokens, but no 'A' */
    EXPECT_LOAD(no_A, merges, GPT2_ERR_FORMAT, "no token for byte 0x41");
    free(no_A);

    struct {
        const char *merges, *msg;
    } bad_merges[] = {
        {"#version: 0.2\nab\n", ":2: expected two tokens separated by one space"},
        {"#version: 0.2\na  b\n", "expected two tokens"},
        {"#version: 0.2\na b c\n", "expected two tokens"},
        {"#version: 0.2\n a\n", "expected two tokens"},
        {"#version: 0.2\na b\n\nb a\n", ":3: expected two tokens"},
        {"#version: 0.2\nzz q\n", "merge names 'zz', which is not in the vocabulary"},
        {"#version: 0.2\na \\u0120\n", "which is not in the vocabulary"},
        {"#version: 0.2\nb a\n", "makes a token not in the vocabulary"},
        {"#version: 0.2\na b\na b\n", ":3: the same merge as rank 0"},
        {"#version: 0.2\na\xff b\n", "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad_merges / sizeof bad_merges[0]; i++)
        EXPECT_LOAD(good, bad_merges[i].merges, GPT2_ERR_FORMAT, bad_merges[i].msg);
    /* a NUL byte inside merges.txt */
    char v[256], m[256];
    write_tmp("vocab.json", good);
    path_in_tmp(v, sizeof v, "vocab.json");
    path_in_tmp(m, sizeof m, "merges.txt");
    write_whole(m, "#version: 0.2\na\0 b\n", 19);
    gpt2_tokenizer *t = NULL;
    CHECK(gpt2_tokenizer_load_files(v, m, &t) == GPT2_ERR_FORMAT && t == NULL);
    CHECK(strstr(gpt2_last_error(), "NUL") != NULL);
    /* missing files and directories */
    remove_tmp("merges.txt");
    CHECK(gpt2_tokenizer_load_files(v, m, &t) == GPT2_ERR_IO && t == NULL);
    CHECK(gpt2_tokenizer_load(tmp_dir, &t) == GPT2_ERR_IO && t == NULL);
    CHECK(strstr(gpt2_last_error(), "found neither") != NULL);
    CHECK(gpt2_tokenizer_load("/nonexistent", &t) == GPT2_ERR_IO);
    CHECK(gpt2_tokenizer_load_files(NULL, m, &t) == GPT2_ERR_ARG);
    CHECK(gpt2_tokenizer_load(NULL, &t) == GPT2_ERR_ARG);
    CHECK(gpt2_tokenizer_load(tmp_dir, NULL) == GPT2_ERR_ARG);
    remove_tmp("vocab.json");
    free(good);
    gpt2_tokenizer_free(NULL);
}

/* ------------------------------------------------------- UTF-8 stream */

/* Feeds s[0..n) one byte at a time; every output must be whole characters
   when s is valid, and everything must come out in order. */
static void stream_bytewise(const char *s, size_t n, int valid) {
    gpt2_utf8_stream st = {0};
    char *all = malloc(n + 8), out[8];
    size_t k = 0;
    int whole = 1;
    for (size_t i = 0; i < n; i++) {
        size_t got = gpt2_utf8_stream_feed(&st, s + i, 1, out);
        whole &= !valid || valid_utf8((unsigned char *)out, got);
        memcpy(all + k, out, got);
        k += got;
    }
    k += gpt2_utf8_stream_flush(&st, all + k);
    CHECK(whole);
    CHECK(k == n && memcmp(all, s, n) == 0);
    CHECK(st.n_pending == 0);
    free(all);
}

static size_t feed_str(gpt2_utf8_stream *st, const char *s, char *out) {
    return gpt2_utf8_stream_feed(st, s, strlen(s), out);
}

static void test_stream_rules(void) {
    gpt2_utf8_stream st = {0};
    char out[16];
    CHECK(feed_str(&st, "\x80", out) == 1 && out[0] == '\x80'); /* stray */
    CHECK(feed_str(&st, "\xe2", out) == 0 && st.n_pending == 1);
    CHECK(feed_str(&st, "\x82", out) == 0 && st.n_pending == 2);
    CHECK(feed_str(&st, "\xac", out) == 3 && memcmp(out, "\xe2\x82\xac", 3) == 0);
    /* overlong, surrogate, past U+10FFFF: known bad at the second byte */
    CHECK(feed_str(&st, "\xe0", out) == 0);
    CHECK(feed_str(&st, "\x80", out) == 2 && memcmp(out, "\xe0\x80", 2) == 0);
    CHECK(feed_str(&st, "\xed\xa0", out) == 2 && st.n_pending == 0);
    CHECK(feed_str(&st, "\xf4\x90", out) == 2 && st.n_pending == 0);
    CHECK(feed_str(&st, "\xf0\x8f", out) == 2 && st.n_pending == 0);
    CHECK(feed_str(&st, "\xc0\xc1\xf5\xff", out) == 4 && st.n_pending == 0);
    /* an incomplete character cut short by ASCII, or by a new lead byte */
    CHECK(feed_str(&st, "\xe2\x82", out) == 0);
    CHECK(feed_str(&st, "A", out) == 3 && memcmp(out, "\xe2\x82" "A", 3) == 0);
    CHECK(feed_str(&st, "\xc3\xc3\xa9", out) == 3 && memcmp(out, "\xc3\xc3\xa9", 3) == 0);
    /* held back until flushed */
    CHECK(feed_str(&st, "\xf0\x9f\x98", out) == 0 && st.n_pending == 3);
    CHECK(gpt2_utf8_stream_flush(&st, out) == 3 && memcmp(out, "\xf0\x9f\x98", 3) == 0);
    CHECK(st.n_pending == 0 && gpt2_utf8_stream_flush(&st, out) == 0);
    CHECK(feed_str(&st, "\xf0\x9f\x98\x80", out) == 4);
}

static void test_stream(const gpt2_tokenizer *t) {
    static const char text[] =
        "h\xc3\xa9llo, \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x91\xa9\xe2\x80\x8d"
        "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 \xd8\xa7\xd9\x84\xd8\xb9 ok";
    stream_bytewise(text, sizeof text - 1, 1);
    static const char bad[] = "a\xe2\x82 \xff\xed\xa0\x80\xc3\xa9\xf0\x9f\x98";
    stream_bytewise(bad, sizeof bad - 1, 0);
    test_stream_rules();

    /* the real use: decode token by token; no output splits a character */
    size_t n = 0;
    int *ids = encode(t, text, sizeof text - 1, 0, &n);
    gpt2_utf8_stream st = {0};
    char all[256], out[64];
    size_t k = 0;
    int whole = 1;
    for (size_t i = 0; ids && i < n; i++) {
        size_t len;
        const char *p = gpt2_tokenizer_piece(t, ids[i], &len);
        size_t got = gpt2_utf8_stream_feed(&st, p, len, out);
        whole &= valid_utf8((unsigned char *)out, got);
        memcpy(all + k, out, got);
        k += got;
    }
    k += gpt2_utf8_stream_flush(&st, all + k);
    CHECK(ids && n > 10 && whole);
    CHECK(k == sizeof text - 1 && memcmp(all, text, k) == 0);
    free(ids);

    /* random bytes in random chunks: all of it comes out, in order */
    int fails = 0;
    for (int it = 0; it < 500; it++) {
        char buf[200], got_all[220];
        size_t len = random_text(buf, sizeof buf), k2 = 0;
        gpt2_utf8_stream s2 = {0};
        for (size_t i = 0; i < len;) {
            size_t c = 1 + rnd(8);
            if (c > len - i) c = len - i;
            k2 += gpt2_utf8_stream_feed(&s2, buf + i, c, got_all + k2);
            i += c;
        }
        k2 += gpt2_utf8_stream_flush(&s2, got_all + k2);
        fails += k2 != len || memcmp(got_all, buf, len) != 0;
    }
    CHECK(fails == 0);
}

/* --------------------------------------------------------- concurrency */

typedef struct {
    const gpt2_tokenizer *t;
    const char *text;
    size_t len;
    int flags;
    int *ids;
    size_t n;
    int ok;
} encode_job;

static void *encode_thread(void *arg) {
    encode_job *j = arg;
    j->ids = malloc((j->len + 1) * sizeof *j->ids);
    j->ok = j->ids && gpt2_tokenizer_encode(j->t, j->text, j->len, j->flags,
                                            j->ids, j->len + 1, &j->n) == GPT2_OK;
    return NULL;
}

static void test_threads(const gpt2_tokenizer *t) {
    size_t cap = 400000, len = 0;
    char *text = malloc(cap);
    while (text && len + 400 < cap) len += random_text(text + len, 400);
    if (!text) return;
    encode_job ref = {t, text, len, GPT2_ENCODE_SPECIAL, NULL, 0, 0};
    encode_thread(&ref);
    CHECK(ref.ok);
    enum { N = 4 };
    encode_job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = ref;
        jobs[i].ids = NULL;
        CHECK(pthread_create(&th[i], NULL, encode_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok && jobs[i].n == ref.n &&
              memcmp(jobs[i].ids, ref.ids, ref.n * sizeof *ref.ids) == 0);
        free(jobs[i].ids);
    }
    free(ref.ids);
    free(text);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/gpt2_test_tok_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    gpt2_tokenizer *t = NULL;
    CHECK_OK(gpt2_tokenizer_load(TOK_DIR, &t));
    if (t) {
        test_basics(t);
        test_known_ids(t);
        test_special(t);
        test_buffers(t);
        test_round_trip(t);
        test_interpreter(t);
        test_save(t);
        test_stream(t);
        test_threads(t);
    }
    test_small_tokenizer();
    test_bad_files();
    gpt2_tokenizer_free(t);
    rmdir(tmp_dir);
    return CHECK_DONE();
}
