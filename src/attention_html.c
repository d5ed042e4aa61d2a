/* attention_html.c: gpt2_attention_write_html, the self-contained attention
   page (head view, model view, matrix view, "attends to" panel).

   The page is web/attention.html, compiled into the library: the Makefile
   turns it into $(BUILD)/gen/attention_html.h (its bytes as a C array, made
   with od and sed, no extra tools) whenever it changes. A build-time copy
   rather than a string literal in this file: the page stays an ordinary
   HTML file that can be edited, linted and opened in a browser as it is
   (it then shows a demo capture), and the library can never write a
   different page from the one in web/.

   This file copies the page and fills its one data tag,
   <script type="application/json" id="capture">null</script>, with the
   capture as a JSON object (the page's header comment documents it):
     {"format": "gpt2c-attention-1", "n_layers": L, "n_heads": H,
      "n_tokens": T, "tokens": [ids], "pieces": [texts] or null (a
      text is null for an id the tokenizer lacks),
      "weights": base64 of little-endian float32 [L][H][q][k <= q],
      "scores": base64 of little-endian float32 [L][H][q][k], or null}
   Only the lower triangle of the weights is stored (the rest is 0 by the
   causal mask); the scores are whole, since the matrix view shows the
   cells the mask removes. Base64 keeps the floats exact at 5.3 bytes each
   (JSON numbers take about 10) and the browser decodes it quickly. The
   page's size limits, and how it stays responsive on long texts, are in
   web/attention.html's header comment. */
#include "internal.h"

#include <string.h>

#include "attention_html.h" /* generated: attention_html[], from web/ */

/* Where the capture goes: the template holds "null" between these. */
static const char DATA_OPEN[] = "<script type=\"application/json\" id=\"capture\">";
static const char DATA_EMPTY[] = "null</script>";

/* Chromium will not make a string longer than 2^29 - 24 characters, and
   the page's data is read as one string: refuse rather than write a page
   that cannot open. The margin leaves room for tokens and pieces. */
static const size_t MAX_DATA_CHARS = (size_t)1 << 28 | (size_t)1 << 27; /* 384 Mi */

/* ------------------------------------------------------------- output */

/* A buffered writer over the atomic file; after the first error every
   write does nothing and st keeps that error. */
typedef struct {
    gpt2__afile f;
    gpt2_status st;
    size_t n;
    char buf[1 << 14];
} page_out;

static void out_flush(page_out *o) {
    if (!o->st && o->n) o->st = gpt2__afile_write(&o->f, o->buf, o->n);
    o->n = 0;
}

static void out_bytes(page_out *o, const void *p, size_t n) {
    const char *s = p;
    while (n) {
        if (o->n == sizeof o->buf) out_flush(o);
        size_t k = sizeof o->buf - o->n;
        if (k > n) k = n;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        s += k;
        n -= k;
    }
}

static void out_str(page_out *o, const char *s) { out_bytes(o, s, strlen(s)); }

static void out_int(page_out *o, long v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%ld", v);
    out_bytes(o, tmp, (size_t)k);
}

/* ------------------------------------------------------------- base64 */

/* Streams bytes as base64; a group of 3 may span two calls. */
typedef struct {
    unsigned char carry[3];
    int n_carry;
} b64_enc;

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_group(page_out *o, const unsigned char *g, int n) {
    char c[4];
    unsigned v = (unsigned)g[0] << 16 | (n > 1 ? (unsigned)g[1] << 8 : 0) |
                 (n > 2 ? g[2] : 0);
    c[0] = B64[v >> 18 & 63];
    c[1] = B64[v >> 12 & 63];
    c[2] = n > 1 ? B64[v >> 6 & 63] : '=';
    c[3] = n > 2 ? B64[v & 63] : '=';
    out_bytes(o, c, 4);
}

static void b64_put(page_out *o, b64_enc *e, const unsigned char *p, size_t n) {
    while (n) {
        e->carry[e->n_carry++] = *p++;
        n--;
        if (e->n_carry == 3) {
            b64_group(o, e->carry, 3);
            e->n_carry = 0;
        }
    }
}

static void b64_end(page_out *o, b64_enc *e) {
    if (e->n_carry) b64_group(o, e->carry, e->n_carry);
    e->n_carry = 0;
}

/* float32 as little-endian bytes whatever the machine's order, as the
   page reads them. */
static void b64_floats(page_out *o, b64_enc *e, const float *x, size_t n) {
    unsigned char le[4 * 256];
    while (n) {
        size_t k = n < 256 ? n : 256;
        for (size_t i = 0; i < k; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            le[4 * i] = (unsigned char)u;
            le[4 * i + 1] = (unsigned char)(u >> 8);
            le[4 * i + 2] = (unsigned char)(u >> 16);
            le[4 * i + 3] = (unsigned char)(u >> 24);
        }
        b64_put(o, e, le, 4 * k);
        x += k;
        n -= k;
    }
}

static size_t b64_len(size_t bytes) { return (bytes + 2) / 3 * 4; }

/* ------------------------------------------------------- token text */

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
   no surrogates, nothing past U+10FFFF), or 0 if the byte starts none. */
static size_t utf8_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* A token's bytes as a JSON string that is safe inside a <script> tag:
   '<', '>' and '&' escaped (no "</script>" or "<!--" can appear), control
   characters escaped, and each byte that is not part of valid UTF-8 shown
   as U+FFFD (a token may hold part of a character). */
static void out_json_piece(page_out *o, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    out_bytes(o, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = utf8_len(p + i, n - i);
        if (len == 0) {
            out_str(o, "\\ufffd");
            i++;
        } else if (len > 1) {
            out_bytes(o, p + i, len);
            i += len;
        } else {
            char esc[8];
            if (c == '"' || c == '\\') {
                esc[0] = '\\';
                esc[1] = (char)c;
                out_bytes(o, esc, 2);
            } else if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&') {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                out_bytes(o, esc, 6);
            } else {
                out_bytes(o, p + i, 1);
            }
            i++;
        }
    }
    out_bytes(o, "\"", 1);
}

/* -------------------------------------------------------------- checks */

typedef struct {
    int L, H, T;
    bool has_scores;
    size_t data_chars;   /* base64 of weights and scores */
} capture_shape;

/* Sizes, and that every layer/head has its weights (and all or none its
   scores); the data must also fit what a browser can read. */
static gpt2_status check_capture(const gpt2_attention *a, capture_shape *c) {
    c->L = gpt2_attention_n_layers(a);
    c->H = gpt2_attention_n_heads(a);
    c->T = gpt2_attention_n_tokens(a);
    if (c->L < 1 || c->H < 1 || c->T < 1)
        return gpt2__fail(GPT2_ERR_ARG,
                          "attention_write_html: empty capture: %d layers, "
                          "%d heads, %d tokens", c->L, c->H, c->T);
    const int *ids = gpt2_attention_tokens(a);
    if (!ids)
        return gpt2__fail(GPT2_ERR_ARG, "attention_write_html: capture has no tokens");
    c->has_scores = gpt2_attention_scores(a, 0, 0) != NULL;
    for (int l = 0; l < c->L; l++)
        for (int h = 0; h < c->H; h++) {
            if (!gpt2_attention_weights(a, l, h))
                return gpt2__fail(GPT2_ERR_ARG, "attention_write_html: no "
                                  "weights for layer %d head %d", l, h);
            if ((gpt2_attention_scores(a, l, h) != NULL) != c->has_scores)
                return gpt2__fail(GPT2_ERR_ARG, "attention_write_html: "
                                  "scores for some heads only (layer %d "
                                  "head %d)", l, h);
        }
    /* sizes in size_t, checked: L H T^2 can pass 2^32 long before memory */
    size_t T = (size_t)c->T, lh = (size_t)c->L * (size_t)c->H, tri, tt, nw,
           ns = 0, bytes;
    bool ok = gpt2__mul_ok(T, T + 1, &tri) && gpt2__mul_ok(lh, tri / 2, &nw) &&
              gpt2__mul_ok(nw, 4, &bytes);
    c->data_chars = ok ? b64_len(bytes) : SIZE_MAX;
    if (ok && c->has_scores) {
        ok = gpt2__mul_ok(T, T, &tt) && gpt2__mul_ok(lh, tt, &ns) &&
             gpt2__mul_ok(ns, 4, &bytes) &&
             gpt2__add_ok(c->data_chars, b64_len(bytes), &c->data_chars);
        if (!ok) c->data_chars = SIZE_MAX;
    }
    if (c->data_chars > MAX_DATA_CHARS)
        return gpt2__fail(GPT2_ERR_ARG, "attention_write_html: %d tokens x "
                          "%d layers x %d heads%s is too much for one page "
                          "(over %zu MiB of data; a browser reads at most "
                          "about 500): capture fewer tokens, leave out the "
                          "scores, or write .json", c->T, c->L, c->H,
                          c->has_scores ? " with scores" : "",
                          MAX_DATA_CHARS >> 20);
    return GPT2_OK;
}

/* ---------------------------------------------------------------- data */

static void write_data(page_out *o, const gpt2_attention *a,
                       const gpt2_tokenizer *t, const capture_shape *c) {
    const int *ids = gpt2_attention_tokens(a);
    out_str(o, "{\"format\":\"gpt2c-attention-1\",\"n_layers\":");
    out_int(o, c->L);
    out_str(o, ",\"n_heads\":");
    out_int(o, c->H);
    out_str(o, ",\"n_tokens\":");
    out_int(o, c->T);
    out_str(o, ",\n\"tokens\":[");
    for (int i = 0; i < c->T; i++) {
        if (i) out_bytes(o, ",", 1);
        out_int(o, ids[i]);
    }
    out_str(o, "],\n\"pieces\":");
    if (t) {
        out_bytes(o, "[", 1);
        for (int i = 0; i < c->T; i++) {
            size_t len;
            const char *s = gpt2_tokenizer_piece(t, ids[i], &len);
            if (i) out_bytes(o, ",", 1);
            /* null for an id the tokenizer lacks (a model's vocabulary
               padded past its tokenizer's); the page shows "#id" */
            if (s) out_json_piece(o, s, len);
            else out_str(o, "null");
        }
        out_bytes(o, "]", 1);
    } else {
        out_str(o, "null");
    }
    /* weights: row q keeps keys 0..q, the rest is the mask's 0 */
    out_str(o, ",\n\"weights\":\"");
    b64_enc e = {0};
    for (int l = 0; l < c->L; l++)
        for (int h = 0; h < c->H; h++) {
            const float *w = gpt2_attention_weights(a, l, h);
            for (int q = 0; q < c->T; q++)
                b64_floats(o, &e, w + (size_t)q * c->T, (size_t)q + 1);
        }
    b64_end(o, &e);
    out_str(o, "\",\n\"scores\":");
    if (c->has_scores) {
        out_bytes(o, "\"", 1);
        for (int l = 0; l < c->L; l++)
            for (int h = 0; h < c->H; h++)
                b64_floats(o, &e, gpt2_attention_scores(a, l, h),
                           (size_t)c->T * c->T);
        b64_end(o, &e);
        out_bytes(o, "\"", 1);
    } else {
        out_str(o, "null");
    }
    out_str(o, "}");
}

/* --------------------------------------------------------------- page */

/* The template around its data tag: head ends just after DATA_OPEN, tail
   starts at the "</script>" that closes it. */
static void split_template(size_t *head_len, size_t *tail_off) {
    const char *page = (const char *)attention_html;
    size_t n = sizeof attention_html, k = strlen(DATA_OPEN);
    const char *open = memmem(page, n, DATA_OPEN, k);
    /* a missing tag is a bug in web/attention.html, which the tests check */
    GPT2_ASSERT(open != NULL);
    size_t at = (size_t)(open - page) + k;
    GPT2_ASSERT(n - at >= strlen(DATA_EMPTY) &&
                memcmp(page + at, DATA_EMPTY, strlen(DATA_EMPTY)) == 0);
    *head_len = at;
    *tail_off = at + strlen("null");
}

gpt2_status gpt2_attention_write_html(const gpt2_attention *a,
                                      const gpt2_tokenizer *t,
                                      const char *path) {
    if (!a || !path)
        return gpt2__fail(GPT2_ERR_ARG, "attention_write_html: %s is NULL",
                          !a ? "capture" : "path");
    capture_shape c;
    gpt2_status st = check_capture(a, &c);
    if (st) return st;

    page_out *o = gpt2__malloc(1, sizeof *o, "attention page buffer");
    if (!o) return GPT2_ERR_NOMEM;
    o->n = 0;
    o->st = gpt2__afile_open(&o->f, path);
    if (o->st) {
        st = o->st;
        free(o);
        return st;
    }
    size_t head_len, tail_off;
    split_template(&head_len, &tail_off);
    out_bytes(o, attention_html, head_len);
    write_data(o, a, t, &c);
    out_bytes(o, attention_html + tail_off, sizeof attention_html - tail_off);
    out_flush(o);
    st = gpt2__afile_close(&o->f, o->st);
    free(o);
    return st;
}
