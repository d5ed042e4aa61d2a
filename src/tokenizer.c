/* tokenizer.c: GPT-2's byte-level BPE tokenizer, exactly as OpenAI's
   encoder.py (and Hugging Face's GPT2Tokenizer) does it:

     text -> pre-tokenizer pieces (a regular expression, below)
          -> each piece's UTF-8 bytes -> BPE merges by rank -> ids

   Tokens are kept as raw bytes. vocab.json and merges.txt spell them in
   GPT-2's "byte to unicode" alphabet (every byte as a printable character,
   so a space is 'Ġ'); that mapping is undone at load and redone at save.

   Choices that the reference leaves open, and why:
   - Whitespace. encoder.py's `regex` module gives \s the Unicode White_Space
     property. PCRE2's \s with UCP adds U+180E (no longer White_Space since
     Unicode 6.3), and JavaScript's \s (the gpt-3-encoder oracle) adds
     U+FEFF and leaves out U+0085. The pattern therefore spells White_Space
     out as a class (WS below) instead of using \s: we follow GPT-2's own
     Python, and differ from gpt-3-encoder on U+0085 and U+FEFF only.
   - Letters and numbers (\p{L}, \p{N}) come from PCRE2's Unicode tables
     (Unicode 14 in PCRE2 10.42): characters assigned later are "other".
   - Invalid UTF-8. GPT-2 is byte-level, so any bytes must encode and
     round-trip. The pre-tokenizer sees each byte that is not part of a
     well-formed UTF-8 character as one character of its own that is
     neither space, letter nor number - as Python would see the lone
     surrogate that errors="surrogateescape" makes of it - so the bytes
     " \xff\xfe" make one piece, as " ?!" would. To run PCRE2 (which needs valid UTF-8) such
     bytes are replaced by U+E000 (private use, also "other") in a copy of
     the text, and piece offsets are mapped back to the original bytes.
   - BPE: all occurrences of the lowest-ranked pair are merged left to right
     before the next rank is chosen, as encoder.py does, with a heap of
     candidate pairs so a long piece costs O(n log n), not O(n^2).
   - Concurrency: encode keeps all mutable state (match data, BPE work
     arrays, a cache of piece -> ids) per call, so many threads can encode
     with one tokenizer at once. */
#include "internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ the regex */

/* Unicode White_Space, which is what Python's `regex` means by \s. */
#define WS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}" \
           "\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* GPT-2's pattern, 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
   ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+, with \s and \S spelled as classes. */
static const char pretokenize_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
    "|[" WS "]+(?![^" WS "])|[" WS "]+";

/* What an invalid byte becomes while the regex runs: U+E000 in UTF-8. */
static const uint8_t invalid_stand_in[3] = {0xEE, 0x80, 0x80};

/* A piece longer than this (256 MiB of letters without a space) is
   refused: BPE indexes it with int32 and needs 32 bytes per byte of it. */
#define MAX_PIECE ((size_t)1 << 28)

/* ---------------------------------------------------- the tokenizer */

/* One merge rule: the pair (left id, right id) packed as key, its rank
   (lower merges first) and the id of the merged token. rank -1: empty. */
typedef struct {
    uint64_t key;
    int32_t rank;
    int32_t id;
} merge_slot;

struct gpt2_tokenizer {
    int n_vocab;
    char *bytes;           /* every token's raw bytes, back to back */
    uint32_t *offset;      /* n_vocab + 1: token i is bytes[offset[i]..[i+1]) */
    int32_t byte_id[256];  /* the token of each single byte */
    int eot;               /* id of <|endoftext|>, or -1 */
    int n_merges;
    int32_t *merge_ids;    /* 2 * n_merges: the pair of each rank (for save) */
    merge_slot *merges;    /* open-addressing table, merge_mask + 1 slots */
    uint64_t merge_mask;
    uint16_t byte_to_cp[256]; /* GPT-2's bytes_to_unicode */
    int16_t cp_to_byte[512];  /* its inverse; -1 for other code points */
    pcre2_code *re;
    pcre2_match_context *mctx; /* the interpreter's limits, raised */
    bool jit;              /* re was JIT-compiled */
};

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
   others (controls, space, 0x7f-0xa0, 0xad) take code points 256, 257, ...
   in byte order, so every byte is a visible character in the files. */
static void bytes_to_unicode(gpt2_tokenizer *t) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                         (b >= 0xAE && b <= 0xFF);
        t->byte_to_cp[b] = (uint16_t)(printable ? b : next++);
    }
    for (int c = 0; c < 512; c++) t->cp_to_byte[c] = -1;
    for (int b = 0; b < 256; b++) t->cp_to_byte[t->byte_to_cp[b]] = (int16_t)b;
}

/* ------------------------------------------------------------- UTF-8 */

/* The length of a character that starts with lead, or 0 if lead never
   starts one (continuation bytes, 0xC0, 0xC1, 0xF5..0xFF). */
static int utf8_lead_len(uint8_t lead) {
    if (lead < 0x80) return 1;
    if (lead < 0xC2) return 0;
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) return 3;
    if (lead < 0xF5) return 4;
    return 0;
}

/* Whether b may follow lead as the second byte. The narrower ranges after
   E0, ED, F0 and F4 rule out overlong forms, surrogates and code points
   past U+10FFFF as soon as the second byte is seen. */
static bool utf8_second_ok(uint8_t lead, uint8_t b) {
    switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
    }
}

static bool utf8_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

/* The length of the well-formed character at s (n bytes available), or 0
   when the bytes there do not make one. */
static size_t utf8_char_len(const uint8_t *s, size_t n) {
    int len = utf8_lead_len(s[0]);
    if (len <= 1) return (size_t)len;
    if ((size_t)len > n || !utf8_second_ok(s[0], s[1])) return 0;
    for (int i = 2; i < len; i++)
        if (!utf8_cont(s[i])) return 0;
    return (size_t)len;
}

/* The code point of a well-formed character of length len. */
static uint32_t utf8_decode(const uint8_t *s, size_t len) {
    static const uint8_t lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t cp = s[0] & lead_mask[len];
    for (size_t i = 1; i < len; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

/* Length of the longest prefix of s that is valid UTF-8. */
static size_t utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* eight ASCII bytes at a time: the common case */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = utf8_char_len(s + i, n - i);
        if (len == 0) return i;
        i += len;
    }
    return n;
}

/* ------------------------------------------------------------- hashing */

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Smallest power of two >= 2n (a table at most half full). */
static uint64_t table_size(size_t n) {
    uint64_t s = 16;
    while (s < 2 * (uint64_t)n) s <<= 1;
    return s;
}

static uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* The merge of (a, b), or NULL if the pair never merges. */
static const merge_slot *merge_find(const gpt2_tokenizer *t, int32_t a,
                                    int32_t b) {
    uint64_t key = pair_key(a, b);
    for (uint64_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *s = &t->merges[i];
        if (s->rank < 0) return NULL;
        if (s->key == key) return s;
    }
}

/* ---------------------------------------------------- token lookup */

/* Raw bytes -> id, used while loading (vocab and merges files name tokens
   by their text). Slots hold ids; -1 is empty. */
typedef struct {
    int32_t *slot;
    uint64_t mask;
    const gpt2_tokenizer *t;
} token_index;

static const char *token_bytes(const gpt2_tokenizer *t, int id, size_t *len) {
    *len = t->offset[id + 1] - t->offset[id];
    return t->bytes + t->offset[id];
}

static int32_t *token_index_slot(const token_index *x, const char *s,
                                 size_t n) {
    for (uint64_t i = hash_bytes(s, n) & x->mask;; i = (i + 1) & x->mask) {
        int32_t id = x->slot[i];
        if (id < 0) return &x->slot[i];
        size_t len;
        const char *b = token_bytes(x->t, id, &len);
        if (len == n && memcmp(b, s, n) == 0) return &x->slot[i];
    }
}

static int token_index_find(const token_index *x, const char *s, size_t n) {
    return *token_index_slot(x, s, n);
}

/* --------------------------------------------------- loading the vocab */

/* Converts a token spelled in GPT-2's byte alphabet (UTF-8 text) into its
   raw bytes at out (room for strlen(s) bytes). Returns the byte count, or
   -1 with *bad the offending code point (0x110000 for invalid UTF-8). */
static long unicode_to_bytes(const gpt2_tokenizer *t, const char *s,
                             char *out, uint32_t *bad) {
    const uint8_t *u = (const uint8_t *)s;
    size_t n = strlen(s), i = 0;
    long k = 0;
    while (i < n) {
        size_t len = utf8_char_len(u + i, n - i);
        if (len == 0) {
            *bad = 0x110000;
            return -1;
        }
        uint32_t cp = utf8_decode(u + i, len);
        if (cp >= 512 || t->cp_to_byte[cp] < 0) {
            *bad = cp;
            return -1;
        }
        out[k++] = (char)t->cp_to_byte[cp];
        i += len;
    }
    return k;
}

/* A token's text for error messages: at most 40 bytes of it, quoted. */
static const char *shorten(const char *s, char buf[48]) {
    snprintf(buf, 48, "'%.40s%s'", s, strlen(s) > 40 ? "..." : "");
    return buf;
}

static gpt2_status bad_char(const char *path, const char *tok, uint32_t cp) {
    char b[48];
    if (cp == 0x110000)
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: token %s is "
                          "not valid UTF-8", path, shorten(tok, b));
    return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: token %s has "
                      "U+%04X, which is not in GPT-2's byte alphabet",
                      path, shorten(tok, b), cp);
}

/* Checks each entry of the vocab object (a number, an integer id in
   [0, n), not seen before) and files it by id in by_id. */
static gpt2_status vocab_entries(const cJSON *root, const char *path, int n,
                                 const cJSON **by_id, size_t *text_bytes) {
    const cJSON *it;
    size_t total = 0;
    cJSON_ArrayForEach(it, root) {
        char b[48];
        if (!cJSON_IsNumber(it))
            return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: the id of "
                              "token %s is not a number", path, shorten(it->string, b));
        double d = it->valuedouble;
        if (!(d >= 0 && d < n) || d != floor(d))
            return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: token %s has "
                              "id %g, expected an integer in [0, %d)", path,
                              shorten(it->string, b), d, n);
        int id = (int)d;
        if (by_id[id])
            return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: id %d is "
                              "given to two tokens, %s and '%.40s'", path, id,
                              shorten(it->string, b), by_id[id]->string);
        by_id[id] = it;
        total += strlen(it->string);
    }
    *text_bytes = total;
    return GPT2_OK;
}

/* Fills t->bytes / t->offset from the entries in id order, and the index
   of raw bytes -> id; rejects empty and duplicate tokens. */
static gpt2_status vocab_store(gpt2_tokenizer *t, const char *path,
                               const cJSON **by_id, size_t text_bytes,
                               token_index *x) {
    if (text_bytes >= UINT32_MAX)
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: tokens too "
                          "long (%zu bytes in all)", path, text_bytes);
    t->bytes = gpt2__malloc(text_bytes + 1, 1, "tokenizer_load: tokens");
    t->offset = gpt2__malloc((size_t)t->n_vocab + 1, sizeof *t->offset,
                             "tokenizer_load: offsets");
    x->mask = table_size((size_t)t->n_vocab) - 1;
    x->slot = gpt2__malloc(x->mask + 1, sizeof *x->slot, "tokenizer_load: index");
    x->t = t;
    if (!t->bytes || !t->offset || !x->slot) return GPT2_ERR_NOMEM;
    memset(x->slot, 0xff, (x->mask + 1) * sizeof *x->slot);
    uint32_t at = 0;
    for (int id = 0; id < t->n_vocab; id++) {
        const char *s = by_id[id]->string;
        uint32_t cp;
        long k = unicode_to_bytes(t, s, t->bytes + at, &cp);
        if (k < 0) return bad_char(path, s, cp);
        if (k == 0)
            return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: id %d is the "
                              "empty string", path, id);
        t->offset[id] = at;
        t->offset[id + 1] = at + (uint32_t)k;
        at += (uint32_t)k;
        int32_t *slot = token_index_slot(x, t->bytes + t->offset[id], (size_t)k);
        if (*slot >= 0) {
            char b[48];
            return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: token %s "
                              "appears twice (ids %d and %d)", path,
                              shorten(s, b), *slot, id);
        }
        *slot = id;
    }
    return GPT2_OK;
}

/* Every byte must have its own token, or some texts could not be encoded. */
static gpt2_status vocab_bytes(gpt2_tokenizer *t, const char *path,
                               const token_index *x) {
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = token_index_find(x, &c, 1);
        if (t->byte_id[b] < 0)
            return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: no token for "
                              "byte 0x%02x (U+%04X), every byte needs one", path,
                              b, t->byte_to_cp[b]);
    }
    t->eot = token_index_find(x, GPT2_EOT_TEXT, strlen(GPT2_EOT_TEXT));
    return GPT2_OK;
}

static gpt2_status load_vocab(gpt2_tokenizer *t, const char *path,
                              token_index *x) {
    char *text;
    size_t len;
    gpt2_status st = gpt2__read_file(path, &text, &len);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: not a JSON "
                          "object of token -> id", path);
    }
    int n = cJSON_GetArraySize(root);
    const cJSON **by_id = n > 0 ? gpt2__calloc((size_t)n, sizeof *by_id,
                                               "tokenizer_load: vocab") : NULL;
    size_t text_bytes = 0;
    if (n < 256)
        st = gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: %d tokens, fewer "
                        "than the 256 single bytes", path, n);
    else if (!by_id)
        st = GPT2_ERR_NOMEM;
    else
        st = vocab_entries(root, path, n, by_id, &text_bytes);
    t->n_vocab = n;
    if (!st) st = vocab_store(t, path, by_id, text_bytes, x);
    if (!st) st = vocab_bytes(t, path, x);
    free(by_id);
    cJSON_Delete(root);
    return st;
}

/* -------------------------------------------------- loading the merges */

/* Looks up one side of a merge line: text s (NUL-terminated) -> id. */
static gpt2_status merge_side(const gpt2_tokenizer *t, const token_index *x,
                              const char *path, size_t line, const char *s,
                              char *scratch, int *id) {
    uint32_t cp;
    long k = unicode_to_bytes(t, s, scratch, &cp);
    if (k < 0) return bad_char(path, s, cp);
    *id = k > 0 ? token_index_find(x, scratch, (size_t)k) : -1;
    if (*id < 0) {
        char b[48];
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s:%zu: merge names "
                          "%s, which is not in the vocabulary", path, line,
                          shorten(s, b));
    }
    return GPT2_OK;
}

/* Adds rank `rank`: the merge of a and b, whose result must be a token. */
static gpt2_status merge_add(gpt2_tokenizer *t, const token_index *x,
                             const char *path, size_t line, int a, int b,
                             char *scratch) {
    size_t la, lb;
    const char *sa = token_bytes(t, a, &la), *sb = token_bytes(t, b, &lb);
    memcpy(scratch, sa, la);
    memcpy(scratch + la, sb, lb);
    int id = token_index_find(x, scratch, la + lb);
    if (id < 0)
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s:%zu: the merge of "
                          "ids %d and %d makes a token not in the vocabulary",
                          path, line, a, b);
    uint64_t key = pair_key(a, b);
    uint64_t i = hash_u64(key) & t->merge_mask;
    while (t->merges[i].rank >= 0) {
        if (t->merges[i].key == key)
            return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s:%zu: the same "
                              "merge as rank %d (ids %d and %d)", path, line,
                              t->merges[i].rank, a, b);
        i = (i + 1) & t->merge_mask;
    }
    int rank = t->n_merges++;
    t->merges[i] = (merge_slot){key, rank, id};
    t->merge_ids[2 * rank] = a;
    t->merge_ids[2 * rank + 1] = b;
    return GPT2_OK;
}

/* One line "left right" (already NUL-terminated, without its newline). */
static gpt2_status merge_line(gpt2_tokenizer *t, const token_index *x,
                              const char *path, size_t line, char *s,
                              char *scratch) {
    char *sp = strchr(s, ' ');
    if (!sp || sp == s || sp[1] == 0 || strchr(sp + 1, ' ')) {
        char b[48];
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s:%zu: expected two "
                          "tokens separated by one space, got %s", path, line,
                          shorten(s, b));
    }
    *sp = 0;
    int a, b;
    gpt2_status st = merge_side(t, x, path, line, s, scratch, &a);
    if (!st) st = merge_side(t, x, path, line, sp + 1, scratch, &b);
    if (!st) st = merge_add(t, x, path, line, a, b, scratch);
    return st;
}

static size_t count_lines(const char *s, size_t n) {
    size_t k = 1;
    for (const char *p = s; (p = memchr(p, '\n', (size_t)(s + n - p))); p++) k++;
    return k;
}

static bool only_line_ends(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != '\n' && *p != '\r') return false;
    return true;
}

/* merges.txt: an optional "#version" first line, then one merge per line
   in rank order. CRLF line ends and blank lines at the end are accepted;
   any other line must be "left right". */
static gpt2_status load_merges(gpt2_tokenizer *t, const char *path,
                               const token_index *x) {
    char *text;
    size_t len;
    gpt2_status st = gpt2__read_file(path, &text, &len);
    if (st) return st;
    if (memchr(text, 0, len)) {
        free(text);
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: has a NUL byte",
                          path);
    }
    size_t max_lines = count_lines(text, len);
    if (max_lines >= INT32_MAX / 2) {
        free(text);
        return gpt2__fail(GPT2_ERR_FORMAT, "tokenizer_load: %s: too many lines",
                          path);
    }
    t->merge_mask = table_size(max_lines) - 1;
    t->merges = gpt2__malloc(t->merge_mask + 1, sizeof *t->merges, "tokenizer_load: merges");
    t->merge_ids = gpt2__malloc(2 * max_lines, sizeof *t->merge_ids, "tokenizer_load: merges");
    char *scratch = gpt2__malloc(len + 1, 1, "tokenizer_load: merges");
    if (!t->merges || !t->merge_ids || !scratch) st = GPT2_ERR_NOMEM;
    for (uint64_t i = 0; !st && i <= t->merge_mask; i++) t->merges[i].rank = -1;
    char *p = text, *end = text + len;
    for (size_t line = 1; !st && p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        if (stop > p && stop[-1] == '\r') stop--;
        *stop = 0;
        if (stop == p && only_line_ends(next, end)) break; /* blank tail */
        if (!(line == 1 && strncmp(p, "#version", 8) == 0))
            st = merge_line(t, x, path, line, p, scratch);
        p = next;
    }
    free(scratch);
    free(text);
    return st;
}

/* ------------------------------------------------------------ load, free */

/* GPT2_TOKENIZER_NO_JIT=1 forces PCRE2's interpreter, so the tests can
   check that it and the JIT agree. */
static gpt2_status compile_pattern(gpt2_tokenizer *t) {
    int err;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)pretokenize_pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return gpt2__fail(GPT2_ERR_ARG, "tokenizer_load: PCRE2 rejects the "
                          "pattern at %zu: %s", (size_t)at, (char *)msg);
    }
    const char *no_jit = getenv("GPT2_TOKENIZER_NO_JIT");
    bool want_jit = !(no_jit && no_jit[0] && strcmp(no_jit, "0") != 0);
    t->jit = want_jit && pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    /* The interpreter's default match limit could stop a match over a very
       long piece; nothing in this pattern backtracks without bound. */
    t->mctx = pcre2_match_context_create(NULL);
    if (!t->mctx) return gpt2__fail(GPT2_ERR_NOMEM, "tokenizer_load: PCRE2 match context");
    pcre2_set_match_limit(t->mctx, UINT32_MAX);
    pcre2_set_depth_limit(t->mctx, UINT32_MAX);
    return GPT2_OK;
}

gpt2_status gpt2_tokenizer_load_files(const char *vocab_json,
                                      const char *merges_txt,
                                      gpt2_tokenizer **out) {
    if (!out) return gpt2__fail(GPT2_ERR_ARG, "tokenizer_load: out is NULL");
    *out = NULL;
    if (!vocab_json || !merges_txt)
        return gpt2__fail(GPT2_ERR_ARG, "tokenizer_load: a path is NULL");
    gpt2_tokenizer *t = gpt2__calloc(1, sizeof *t, "tokenizer_load");
    if (!t) return GPT2_ERR_NOMEM;
    t->eot = -1;
    bytes_to_unicode(t);
    token_index x = {0};
    gpt2_status st = load_vocab(t, vocab_json, &x);
    if (!st) st = load_merges(t, merges_txt, &x);
    if (!st) st = compile_pattern(t);
    free(x.slot);
    if (st) {
        gpt2_tokenizer_free(t);
        return st;
    }
    *out = t;
    return GPT2_OK;
}

/* The pair of files in dir named a and b, if both exist. */
static bool file_pair(const char *dir, const char *a, const char *b,
                      char *pa, char *pb, size_t cap) {
    return gpt2__join_path(pa, cap, dir, a) == GPT2_OK &&
           gpt2__join_path(pb, cap, dir, b) == GPT2_OK &&
           gpt2__file_exists(pa) && gpt2__file_exists(pb);
}

gpt2_status gpt2_tokenizer_load(const char *dir, gpt2_tokenizer **out) {
    if (out) *out = NULL;
    if (!dir || !out) return gpt2__fail(GPT2_ERR_ARG, "tokenizer_load: NULL argument");
    char v[4096], m[4096];
    if (file_pair(dir, "vocab.json", "merges.txt", v, m, sizeof v) ||
        file_pair(dir, "encoder.json", "vocab.bpe", v, m, sizeof v))
        return gpt2_tokenizer_load_files(v, m, out);
    return gpt2__fail(GPT2_ERR_IO, "tokenizer_load: %s: found neither "
                      "vocab.json + merges.txt nor encoder.json + vocab.bpe", dir);
}

void gpt2_tokenizer_free(gpt2_tokenizer *t) {
    if (!t) return;
    free(t->bytes);
    free(t->offset);
    free(t->merges);
    free(t->merge_ids);
    pcre2_code_free(t->re);
    pcre2_match_context_free(t->mctx);
    free(t);
}

int gpt2_tokenizer_vocab_size(const gpt2_tokenizer *t) { return t ? t->n_vocab : 0; }

int gpt2_tokenizer_eot(const gpt2_tokenizer *t) { return t ? t->eot : -1; }

const char *gpt2_tokenizer_piece(const gpt2_tokenizer *t, int id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    size_t n;
    const char *s = token_bytes(t, id, &n);
    if (len) *len = n;
    return s;
}

/* ------------------------------------------------------------------ save */

/* A growable byte buffer for the files being written. */
typedef struct {
    char *p;
    size_t n, cap;
    bool failed;
} outbuf;

static void out_put(outbuf *o, const char *s, size_t n) {
    if (o->failed) return;
    if (o->cap - o->n < n) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap - o->n < n) cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void out_str(outbuf *o, const char *s) { out_put(o, s, strlen(s)); }

/* A token in GPT-2's byte alphabet, as UTF-8 text (for merges.txt). */
static void out_token_text(outbuf *o, const gpt2_tokenizer *t, int id) {
    size_t n;
    const uint8_t *s = (const uint8_t *)token_bytes(t, id, &n);
    for (size_t i = 0; i < n; i++) {
        uint16_t cp = t->byte_to_cp[s[i]];
        char u[2];
        if (cp < 0x80) {
            u[0] = (char)cp;
            out_put(o, u, 1);
        } else { /* all of the alphabet is below U+0800: two bytes */
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            out_put(o, u, 2);
        }
    }
}

/* The same token as a JSON string, escaped as Python's json.dumps does by
   default (ASCII only, \uXXXX in lower case), so a saved GPT-2 vocab.json
   is byte for byte the file OpenAI and Hugging Face ship. */
static void out_token_json(outbuf *o, const gpt2_tokenizer *t, int id) {
    size_t n;
    const uint8_t *s = (const uint8_t *)token_bytes(t, id, &n);
    out_put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        uint16_t cp = t->byte_to_cp[s[i]];
        char e[8];
        if (cp == '"' || cp == '\\')
            snprintf(e, sizeof e, "\\%c", (char)cp);
        else if (cp >= 0x20 && cp < 0x7F)
            snprintf(e, sizeof e, "%c", (char)cp);
        else
            snprintf(e, sizeof e, "\\u%04x", cp);
        out_str(o, e);
    }
    out_put(o, "\"", 1);
}

static gpt2_status save_vocab(const gpt2_tokenizer *t, const char *path) {
    outbuf o = {0};
    out_put(&o, "{", 1);
    for (int id = 0; id < t->n_vocab; id++) {
        char num[32];
        if (id) out_put(&o, ", ", 2);
        out_token_json(&o, t, id);
        snprintf(num, sizeof num, ": %d", id);
        out_str(&o, num);
    }
    out_put(&o, "}", 1);
    gpt2_status st = o.failed ? gpt2__fail(GPT2_ERR_NOMEM, "tokenizer_save: %s", path)
                              : gpt2__write_file_atomic(path, o.p, o.n);
    free(o.p);
    return st;
}

static gpt2_status save_merges(const gpt2_tokenizer *t, const char *path) {
    outbuf o = {0};
    out_str(&o, "#version: 0.2\n");
    for (int r = 0; r < t->n_merges; r++) {
        out_token_text(&o, t, t->merge_ids[2 * r]);
        out_put(&o, " ", 1);
        out_token_text(&o, t, t->merge_ids[2 * r + 1]);
        out_put(&o, "\n", 1);
    }
    gpt2_status st = o.failed ? gpt2__fail(GPT2_ERR_NOMEM, "tokenizer_save: %s", path)
                              : gpt2__write_file_atomic(path, o.p, o.n);
    free(o.p);
    return st;
}

gpt2_status gpt2_tokenizer_save(const gpt2_tokenizer *t, const char *dir) {
    if (!t || !dir) return gpt2__fail(GPT2_ERR_ARG, "tokenizer_save: NULL argument");
    if (!gpt2__is_dir(dir))
        return gpt2__fail(GPT2_ERR_IO, "tokenizer_save: %s: not a directory", dir);
    char v[4096], m[4096];
    gpt2_status st = gpt2__join_path(v, sizeof v, dir, "vocab.json");
    if (!st) st = gpt2__join_path(m, sizeof m, dir, "merges.txt");
    if (!st) st = save_vocab(t, v);
    if (!st) st = save_merges(t, m);
    return st;
}

/* ------------------------------------------------------------ encoding */

/* Where encode writes ids: the first cap go to ids, the rest are counted. */
typedef struct {
    int *ids;
    size_t cap, n;
} id_sink;

static void emit(id_sink *o, int id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* A cache of piece -> ids for one encode call (so no lock is needed):
   direct-mapped, one 64-byte entry per slot, for pieces of at most
   CACHE_KEY bytes that become at most CACHE_IDS tokens. */
#define CACHE_KEY 26
#define CACHE_IDS 8
typedef struct {
    uint32_t hash; /* 0: empty */
    uint8_t len, n;
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_entry;

/* Everything one encode call changes. */
typedef struct {
    const gpt2_tokenizer *t;
    id_sink out;
    pcre2_match_data *md;
    cache_entry *cache;
    uint32_t cache_mask;
    /* BPE over one piece: its symbols (tokens so far) as a linked list, and
       a min-heap of the symbols whose pair with their right neighbour can
       merge, by key = rank << 32 | symbol (lowest rank, then leftmost).
       Arrays grow to the longest piece seen; heap entries are kept current,
       so 32 bytes per byte of piece is all the memory BPE needs. */
    size_t cap;
    int32_t *sym;       /* token id of each symbol; -1 once merged away */
    int32_t *next, *prev;
    int32_t *heap;      /* symbols */
    int32_t *hpos;      /* each symbol's place in heap, or -1 */
    uint64_t *key;
    int32_t *dirty;     /* symbols whose pair changed during this rank */
    size_t n_heap, n_dirty;
} encoder;

static gpt2_status encoder_grow(encoder *e, size_t n) {
    if (n <= e->cap) return GPT2_OK;
    if (n > MAX_PIECE)
        return gpt2__fail(GPT2_ERR_ARG, "tokenizer_encode: a piece of %zu bytes "
                          "(one run of letters, digits or spaces) is longer than "
                          "the %zu supported", n, MAX_PIECE);
    size_t cap = e->cap ? e->cap : 64;
    while (cap < n) cap *= 2;
    free(e->sym);
    free(e->key);
    e->cap = 0;
    e->sym = gpt2__malloc(cap, 6 * sizeof(int32_t), "tokenizer_encode");
    e->key = gpt2__malloc(cap, sizeof(uint64_t), "tokenizer_encode");
    if (!e->sym || !e->key) return GPT2_ERR_NOMEM;
    e->next = e->sym + cap;
    e->prev = e->next + cap;
    e->heap = e->prev + cap;
    e->hpos = e->heap + cap;
    e->dirty = e->hpos + cap;
    e->cap = cap;
    return GPT2_OK;
}

static void heap_put(encoder *e, size_t i, int32_t s) {
    e->heap[i] = s;
    e->hpos[s] = (int32_t)i;
}

static void sift_up(encoder *e, size_t i) {
    int32_t s = e->heap[i];
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (e->key[e->heap[up]] < e->key[s]) break;
        heap_put(e, i, e->heap[up]);
        i = up;
    }
    heap_put(e, i, s);
}

static void sift_down(encoder *e, size_t i) {
    int32_t s = e->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->n_heap) break;
        if (c + 1 < e->n_heap && e->key[e->heap[c + 1]] < e->key[e->heap[c]]) c++;
        if (e->key[s] < e->key[e->heap[c]]) break;
        heap_put(e, i, e->heap[c]);
        i = c;
    }
    heap_put(e, i, s);
}

static void heap_remove(encoder *e, int32_t s) {
    int32_t i = e->hpos[s];
    if (i < 0) return;
    e->hpos[s] = -1;
    int32_t last = e->heap[--e->n_heap];
    if ((size_t)i == e->n_heap) return;
    heap_put(e, (size_t)i, last);
    sift_up(e, (size_t)i);
    sift_down(e, (size_t)e->hpos[last]);
}

/* Puts symbol l in the heap with the rank of its pair with its right
   neighbour, or takes it out if that pair does not merge. */
static void heap_refresh(encoder *e, int32_t l) {
    int32_t r = e->next[l];
    const merge_slot *m = r >= 0 ? merge_find(e->t, e->sym[l], e->sym[r]) : NULL;
    if (!m) {
        heap_remove(e, l);
        return;
    }
    e->key[l] = ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)l;
    if (e->hpos[l] < 0) {
        e->heap[e->n_heap] = l;
        e->hpos[l] = (int32_t)e->n_heap++;
    }
    sift_up(e, (size_t)e->hpos[l]);
    sift_down(e, (size_t)e->hpos[l]);
}

/* Merges symbol l with its right neighbour. The pairs this changes (the
   left neighbour's and l's own) leave the heap and wait in dirty until the
   whole rank is done. */
static void merge_at(encoder *e, int32_t l) {
    int32_t r = e->next[l], p = e->prev[l];
    e->sym[l] = merge_find(e->t, e->sym[l], e->sym[r])->id;
    heap_remove(e, r);
    e->sym[r] = -1;
    e->next[l] = e->next[r];
    if (e->next[r] >= 0) e->prev[e->next[r]] = l;
    heap_remove(e, l);
    e->dirty[e->n_dirty++] = l;
    if (p >= 0) {
        heap_remove(e, p);
        e->dirty[e->n_dirty++] = p;
    }
}

/* BPE over n bytes (n >= 2) as encoder.py does it: take the lowest rank
   among adjacent pairs, merge every occurrence of it left to right, then
   look again. Pairs that the merges create join the heap only when the
   whole rank is done, so they cannot jump ahead of it (with GPT-2's
   merges, whose results always rank after their parts, they never could;
   other merges files get encoder.py's answer too). */
static gpt2_status bpe(encoder *e, const uint8_t *s, size_t n) {
    gpt2_status st = encoder_grow(e, n);
    if (st) return st;
    int32_t k = (int32_t)n;
    for (int32_t i = 0; i < k; i++) {
        e->sym[i] = e->t->byte_id[s[i]];
        e->next[i] = i + 1 < k ? i + 1 : -1;
        e->prev[i] = i - 1;
        e->hpos[i] = -1;
    }
    e->n_heap = 0;
    for (int32_t i = 0; i + 1 < k; i++) heap_refresh(e, i);
    while (e->n_heap) {
        uint64_t rank = e->key[e->heap[0]] >> 32;
        e->n_dirty = 0;
        while (e->n_heap && e->key[e->heap[0]] >> 32 == rank) merge_at(e, e->heap[0]);
        for (size_t i = 0; i < e->n_dirty; i++)
            if (e->sym[e->dirty[i]] >= 0) heap_refresh(e, e->dirty[i]);
    }
    return GPT2_OK;
}

/* The one slot where piece s[0..n) may be cached; *hash is never 0. */
static cache_entry *cache_slot(encoder *e, const uint8_t *s, size_t n,
                               uint32_t *hash) {
    *hash = (uint32_t)hash_bytes(s, n) | 1u;
    return &e->cache[*hash & e->cache_mask];
}

/* Encodes one piece (n >= 1 bytes of the original text). */
static gpt2_status encode_piece(encoder *e, const uint8_t *s, size_t n) {
    if (n == 1) {
        emit(&e->out, e->t->byte_id[s[0]]);
        return GPT2_OK;
    }
    cache_entry *c = NULL;
    uint32_t hash = 0;
    if (e->cache && n <= CACHE_KEY) {
        c = cache_slot(e, s, n, &hash);
        if (c->hash == hash && c->len == n && memcmp(c->key, s, n) == 0) {
            for (int i = 0; i < c->n; i++) emit(&e->out, c->ids[i]);
            return GPT2_OK;
        }
    }
    gpt2_status st = bpe(e, s, n);
    if (st) return st;
    int32_t got[CACHE_IDS];
    int count = 0;
    for (int32_t i = 0; i >= 0; i = e->next[i]) {
        emit(&e->out, e->sym[i]);
        if (count < CACHE_IDS) got[count] = e->sym[i];
        count++;
    }
    if (c && count <= CACHE_IDS) {
        c->hash = hash;
        c->len = (uint8_t)n;
        c->n = (uint8_t)count;
        memcpy(c->key, s, n);
        memcpy(c->ids, got, (size_t)count * sizeof *got);
    }
    return GPT2_OK;
}

/* The text the regex runs over: the original when it is valid UTF-8, else
   a copy with each invalid byte replaced by invalid_stand_in. at[] lists
   where those stand-ins begin in the copy, in order. */
typedef struct {
    const uint8_t *s;
    size_t n;
    uint8_t *copy;
    size_t *at;
    size_t n_at, next_at; /* next_at: stand-ins before the last mapped offset */
} subject;

static gpt2_status subject_make(subject *sj, const uint8_t *text, size_t len) {
    memset(sj, 0, sizeof *sj);
    size_t valid = utf8_valid_prefix(text, len);
    if (valid == len) {
        sj->s = text;
        sj->n = len;
        return GPT2_OK;
    }
    sj->copy = gpt2__malloc(len, 3, "tokenizer_encode");
    sj->at = gpt2__malloc(len - valid, sizeof *sj->at, "tokenizer_encode");
    if (!sj->copy || !sj->at) return GPT2_ERR_NOMEM;
    memcpy(sj->copy, text, valid);
    size_t k = valid;
    for (size_t i = valid; i < len;) {
        size_t cl = utf8_char_len(text + i, len - i);
        if (cl) {
            memcpy(sj->copy + k, text + i, cl);
            k += cl;
            i += cl;
        } else {
            sj->at[sj->n_at++] = k;
            memcpy(sj->copy + k, invalid_stand_in, 3);
            k += 3;
            i++;
        }
    }
    sj->s = sj->copy;
    sj->n = k;
    return GPT2_OK;
}

/* Offset o of the subject -> offset in the original text. Offsets must be
   asked in increasing order. */
static size_t subject_to_text(subject *sj, size_t o) {
    while (sj->next_at < sj->n_at && sj->at[sj->next_at] < o) sj->next_at++;
    return o - 2 * sj->next_at;
}

static void subject_free(subject *sj) {
    free(sj->copy);
    free(sj->at);
}

/* The next piece at or after start: [*b, *e) of the subject. */
static gpt2_status next_match(encoder *e, const subject *sj, size_t start,
                              size_t *b, size_t *end) {
    const gpt2_tokenizer *t = e->t;
    int rc = t->jit ? pcre2_jit_match(t->re, sj->s, sj->n, start, 0, e->md, NULL)
                    : PCRE2_ERROR_JIT_STACKLIMIT;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* or no JIT: the interpreter */
        rc = pcre2_match(t->re, sj->s, sj->n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         e->md, t->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) { /* cannot happen: every character
                                        matches; keep the rest as one piece */
        *b = *end = sj->n;
        return GPT2_OK;
    }
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return gpt2__fail(GPT2_ERR_NOMEM, "tokenizer_encode: PCRE2 match failed "
                          "at byte %zu: %s", start, (char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    *b = ov[0];
    *end = ov[1];
    if (*end <= *b) { /* an empty match cannot happen either; never loop */
        size_t cl = utf8_char_len(sj->s + *b, sj->n - *b);
        *end = *b + (cl ? cl : 1);
    }
    return GPT2_OK;
}

/* Encodes text that contains no special token: pre-tokenize, then BPE. */
static gpt2_status encode_text(encoder *e, const uint8_t *text, size_t len) {
    if (len == 0) return GPT2_OK;
    subject sj;
    gpt2_status st = subject_make(&sj, text, len);
    size_t pos = 0, tpos = 0; /* in the subject, in the text */
    while (!st && pos < sj.n) {
        size_t b = 0, end = 0;
        st = next_match(e, &sj, pos, &b, &end);
        if (st) break;
        /* pieces tile the subject; a gap (never seen) is a piece too */
        size_t cuts[2] = {b, end};
        for (int i = 0; i < 2 && !st; i++) {
            size_t tend = subject_to_text(&sj, cuts[i]);
            if (tend > tpos) st = encode_piece(e, text + tpos, tend - tpos);
            tpos = tend;
        }
        pos = end;
    }
    subject_free(&sj);
    return st;
}

/* The first "<|endoftext|>" in s[0..n), or NULL. */
static const uint8_t *find_eot(const uint8_t *s, size_t n) {
    static const size_t m = sizeof GPT2_EOT_TEXT - 1;
    const uint8_t *p = s, *end = s + n;
    while ((size_t)(end - p) >= m && (p = memchr(p, '<', (size_t)(end - p - m + 1)))) {
        if (memcmp(p, GPT2_EOT_TEXT, m) == 0) return p;
        p++;
    }
    return NULL;
}

static gpt2_status encoder_init(encoder *e, const gpt2_tokenizer *t, size_t len,
                                int *ids, size_t cap) {
    memset(e, 0, sizeof *e);
    e->t = t;
    e->out = (id_sink){ids, cap, 0};
    e->md = pcre2_match_data_create(1, NULL);
    if (!e->md) return gpt2__fail(GPT2_ERR_NOMEM, "tokenizer_encode: PCRE2 match data");
    /* A cache pays for its allocation once the text repeats words: from
       a few hundred bytes on; about one slot per 16 bytes, up to 64 Ki. */
    if (len >= 256) {
        uint32_t slots = 64;
        while (slots < 65536 && slots < len / 16) slots <<= 1;
        e->cache = gpt2__calloc(slots, sizeof *e->cache, "tokenizer_encode");
        if (!e->cache) return GPT2_ERR_NOMEM;
        e->cache_mask = slots - 1;
    }
    return GPT2_OK;
}

static void encoder_free(encoder *e) {
    pcre2_match_data_free(e->md);
    free(e->cache);
    free(e->sym);
    free(e->key);
}

gpt2_status gpt2_tokenizer_encode(const gpt2_tokenizer *t, const char *text,
                                  size_t len, int flags, int *ids, size_t cap,
                                  size_t *n_ids) {
    if (n_ids) *n_ids = 0;
    if (!t || !n_ids || (!text && len) || (!ids && cap))
        return gpt2__fail(GPT2_ERR_ARG, "tokenizer_encode: NULL argument");
    if (len == 0) return GPT2_OK; /* text may be NULL then */
    encoder e;
    gpt2_status st = encoder_init(&e, t, len, ids, cap);
    const uint8_t *s = (const uint8_t *)text, *end = s + len;
    bool special = (flags & GPT2_ENCODE_SPECIAL) && t->eot >= 0;
    while (!st && s < end) {
        const uint8_t *eot = special ? find_eot(s, (size_t)(end - s)) : NULL;
        const uint8_t *stop = eot ? eot : end;
        st = encode_text(&e, s, (size_t)(stop - s));
        if (eot) emit(&e.out, t->eot);
        s = eot ? eot + sizeof GPT2_EOT_TEXT - 1 : end;
    }
    encoder_free(&e);
    if (st) return st;
    *n_ids = e.out.n;
    if (e.out.n > cap)
        return gpt2__fail(GPT2_ERR_BUFFER, "tokenizer_encode: %zu ids do not fit "
                          "in %zu", e.out.n, cap);
    return GPT2_OK;
}

/* ------------------------------------------------------------ decoding */

gpt2_status gpt2_tokenizer_decode(const gpt2_tokenizer *t, const int *ids,
                                  size_t n, char *buf, size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!t || !len || (!ids && n) || (!buf && cap))
        return gpt2__fail(GPT2_ERR_ARG, "tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return gpt2__fail(GPT2_ERR_ARG, "tokenizer_decode: id %d (at %zu) is "
                              "not in [0, %d)", ids[i], i, t->n_vocab);
        total += t->offset[ids[i] + 1] - t->offset[ids[i]];
    }
    *len = total;
    if (total > cap)
        return gpt2__fail(GPT2_ERR_BUFFER, "tokenizer_decode: %zu bytes do not "
                          "fit in %zu", total, cap);
    char *p = buf;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *s = token_bytes(t, ids[i], &k);
        memcpy(p, s, k);
        p += k;
    }
    if (total < cap) buf[total] = 0;
    return GPT2_OK;
}

/* -------------------------------------------------------- UTF-8 stream */

/* Whether the pending bytes plus b could still become a character. */
static bool stream_accepts(const gpt2_utf8_stream *s, uint8_t b) {
    if (s->n_pending == 1) return utf8_second_ok(s->pending[0], b);
    return utf8_cont(b);
}

size_t gpt2_utf8_stream_feed(gpt2_utf8_stream *s, const char *bytes, size_t n,
                             char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)bytes[i];
        if (s->n_pending > 0 && !stream_accepts(s, b)) {
            /* what was held back can never complete: let it out as it is */
            k += gpt2_utf8_stream_flush(s, out + k);
        }
        if (s->n_pending > 0) {
            s->pending[s->n_pending++] = b;
            if (s->n_pending == utf8_lead_len(s->pending[0]))
                k += gpt2_utf8_stream_flush(s, out + k);
            continue;
        }
        if (utf8_lead_len(b) >= 2) {
            s->pending[0] = b;
            s->n_pending = 1;
        } else {
            out[k++] = (char)b; /* ASCII, or a byte no character starts with */
        }
    }
    return k;
}

size_t gpt2_utf8_stream_flush(gpt2_utf8_stream *s, char *out) {
    size_t k = 0;
    for (int i = 0; i < s->n_pending && i < 4; i++) out[k++] = (char)s->pending[i];
    s->n_pending = 0;
    return k;
}
