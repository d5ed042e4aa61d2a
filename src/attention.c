/* attention.c: the tutorial's "visualising self-attention". One forward
   pass over a text keeps, for every layer and head, the (T, T) softmax
   weights (which earlier tokens each token attends to) and optionally the
   raw scores q.k / sqrt(head size) before the causal mask. Exports: JSON
   (every layer and head, streamed so memory stays bounded), and one layer
   and head as an SVG or PNG heatmap with token labels, for papers. The
   HTML page is attention_html.c's, on the accessors here.

   Heatmap colours, in both SVG and PNG: a weight w in [0, 1] is the
   straight line from white (w = 0) to dark blue #08306b (w = 1), per RGB
   channel, rounded; the scale is fixed (not stretched to the map's
   maximum) so maps compare. Masked cells (key after query) are light grey
   #dddddd, so a masked cell never looks like a weight of 0. */
#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <zlib.h>

struct gpt2_attention {
    int T, L, NH;
    int *tokens;     /* (T) */
    float *weights;  /* (L, NH, T, T) softmax weights, 0 above the diagonal */
    float *scores;   /* (L, NH, T, T) raw scores, or NULL */
};

/* ------------------------------------------------------------- capture */

/* Floats in one (L, NH, T, T) array, checked for overflow, and bytes
   (times n_arrays) as a whole. */
static gpt2_status map_size(const gpt2_config *c, int T, int n_arrays,
                            size_t *floats) {
    size_t n = 0, bytes = 0;
    if (!gpt2__mul_ok((size_t)c->n_layer, (size_t)c->n_head, &n) ||
        !gpt2__mul_ok(n, (size_t)T, &n) || !gpt2__mul_ok(n, (size_t)T, &n) ||
        !gpt2__mul_ok(n, sizeof(float) * (size_t)n_arrays, &bytes))
        return gpt2__fail(GPT2_ERR_NOMEM,
                          "attention_capture: %d layers x %d heads x %d x %d "
                          "floats overflow the address space",
                          c->n_layer, c->n_head, T, T);
    *floats = n;
    return GPT2_OK;
}

typedef struct {
    gpt2_attention *a;
    int C;
} capture_ctx;

/* scores (NH, T, T) = q_h k_h^T / sqrt(HS) for every pair, the masked
   ones included, from qkv (T, 3C): the same products and scale the
   attention kernel computes before it masks and normalises. */
static void raw_scores(float *scores, const float *qkv, int T, int C, int NH) {
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    size_t row = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static) \
    if ((size_t)NH * T * T * HS >= 65536)
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < T; i++) {
            const float *q = qkv + (size_t)i * row + (size_t)h * HS;
            float *s = scores + ((size_t)h * T + i) * T;
            for (int j = 0; j < T; j++) {
                const float *k = qkv + (size_t)j * row + C + (size_t)h * HS;
                float d = 0.0f;
                for (int x = 0; x < HS; x++) d += q[x] * k[x];
                s[j] = d * scale;
            }
        }
}

/* gpt2__forward_inspect's per-layer hook: keep this layer's maps. */
static void keep_layer(void *user, int layer, const float *qkv,
                       const float *att, int T) {
    capture_ctx *ctx = user;
    gpt2_attention *a = ctx->a;
    size_t per_layer = (size_t)a->NH * T * T;
    memcpy(a->weights + (size_t)layer * per_layer, att,
           per_layer * sizeof(float));
    if (a->scores)
        raw_scores(a->scores + (size_t)layer * per_layer, qkv, T, ctx->C,
                   a->NH);
}

gpt2_status gpt2_attention_capture(const gpt2_model *m, const int *tokens,
                                   int n_tokens, int keep_scores,
                                   gpt2_attention **out) {
    if (!out) return gpt2__fail(GPT2_ERR_ARG, "attention_capture: out is NULL");
    *out = NULL;
    if (!m || !tokens)
        return gpt2__fail(GPT2_ERR_ARG, "attention_capture: %s is NULL",
                          m ? "tokens" : "model");
    const gpt2_config *c = gpt2_model_config(m);
    if (n_tokens < 1 || n_tokens > c->n_ctx)
        return gpt2__fail(GPT2_ERR_ARG,
                          "attention_capture: n_tokens=%d outside [1, "
                          "n_ctx=%d]", n_tokens, c->n_ctx);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return gpt2__fail(GPT2_ERR_ARG,
                              "attention_capture: token %d at index %d is "
                              "outside [0, %d)", tokens[i], i, c->vocab_size);
    size_t n = 0;
    gpt2_status st = map_size(c, n_tokens, keep_scores ? 2 : 1, &n);
    if (st) return st;

    gpt2_attention *a = gpt2__calloc(1, sizeof *a, "attention_capture");
    if (!a) return GPT2_ERR_NOMEM;
    a->T = n_tokens;
    a->L = c->n_layer;
    a->NH = c->n_head;
    a->tokens = gpt2__malloc((size_t)n_tokens, sizeof(int), "attention tokens");
    a->weights = gpt2__malloc(n, sizeof(float), "attention weights");
    if (keep_scores) a->scores = gpt2__malloc(n, sizeof(float), "attention scores");
    if (!a->tokens || !a->weights || (keep_scores && !a->scores)) {
        gpt2_attention_free(a);
        return gpt2__fail(GPT2_ERR_NOMEM,
                          "attention_capture: out of memory for %d layers x "
                          "%d heads x %d x %d floats (%.1f MiB%s)", c->n_layer,
                          c->n_head, n_tokens, n_tokens,
                          (double)n * sizeof(float) * (keep_scores ? 2 : 1) /
                              (1024.0 * 1024.0),
                          keep_scores ? ", weights and scores" : "");
    }
    memcpy(a->tokens, tokens, (size_t)n_tokens * sizeof(int));
    capture_ctx ctx = {a, c->n_embd};
    st = gpt2__forward_inspect(m, tokens, n_tokens, keep_layer, &ctx, NULL);
    if (st) {
        gpt2_attention_free(a);
        return st;
    }
    *out = a;
    return GPT2_OK;
}

void gpt2_attention_free(gpt2_attention *a) {
    if (!a) return;
    free(a->tokens);
    free(a->weights);
    free(a->scores);
    free(a);
}

int gpt2_attention_n_tokens(const gpt2_attention *a) { return a ? a->T : 0; }
int gpt2_attention_n_layers(const gpt2_attention *a) { return a ? a->L : 0; }
int gpt2_attention_n_heads(const gpt2_attention *a) { return a ? a->NH : 0; }
const int *gpt2_attention_tokens(const gpt2_attention *a) {
    return a ? a->tokens : NULL;
}

/* The (T, T) map of one layer and head in data, or NULL. */
static const float *map_at(const gpt2_attention *a, const float *data,
                           int layer, int head) {
    if (!a || !data || layer < 0 || layer >= a->L || head < 0 || head >= a->NH)
        return NULL;
    return data + ((size_t)layer * a->NH + head) * a->T * a->T;
}

const float *gpt2_attention_weights(const gpt2_attention *a, int layer,
                                    int head) {
    return map_at(a, a ? a->weights : NULL, layer, head);
}

const float *gpt2_attention_scores(const gpt2_attention *a, int layer,
                                   int head) {
    return map_at(a, a ? a->scores : NULL, layer, head);
}

/* -------------------------------------------------------- output sink */

/* A buffered writer over an atomic file; the first error sticks, so the
   writers can go on without checking every call and report it once. */
typedef struct {
    gpt2__afile f;
    char *buf;
    size_t n, cap;
    gpt2_status st;
} sink;

static gpt2_status sink_open(sink *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->cap = 1 << 16;
    s->buf = gpt2__malloc(s->cap, 1, "attention export buffer");
    if (!s->buf) return GPT2_ERR_NOMEM;
    s->st = gpt2__afile_open(&s->f, path);
    if (s->st) free(s->buf);
    return s->st;
}

static void sink_flush(sink *s) {
    if (!s->st && s->n) s->st = gpt2__afile_write(&s->f, s->buf, s->n);
    s->n = 0;
}

static void sink_put(sink *s, const void *p, size_t n) {
    if (s->st || n == 0) return;
    if (n > s->cap - s->n) sink_flush(s);
    if (n > s->cap) {
        if (!s->st) s->st = gpt2__afile_write(&s->f, p, n);
        return;
    }
    memcpy(s->buf + s->n, p, n);
    s->n += n;
}

static void sink_str(sink *s, const char *str) { sink_put(s, str, strlen(str)); }

static void sink_printf(sink *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sink_printf(sink *s, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    GPT2_ASSERT(n >= 0 && (size_t)n < sizeof tmp); /* callers format short text */
    sink_put(s, tmp, (size_t)n);
}

/* Flushes, syncs and renames into place (or removes the temporary file
   after an error); returns the first error. */
static gpt2_status sink_close(sink *s) {
    sink_flush(s);
    gpt2_status st = gpt2__afile_close(&s->f, s->st);
    free(s->buf);
    return st;
}

/* --------------------------------------------------------------- text */

/* Length of the valid UTF-8 character at s (n bytes available), or 0 for
   an invalid byte. Strict: no overlong forms, surrogates or values past
   U+10FFFF, which JSON and XML readers would refuse. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* A JSON string literal of the bytes: escapes as JSON requires, and every
   byte that is not part of valid UTF-8 becomes U+FFFD, so a token that is
   half a character still gives a valid document. */
static void json_string(sink *s, const char *p, size_t n) {
    const unsigned char *u = (const unsigned char *)p;
    sink_put(s, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(u + i, n - i);
        if (k == 0) {
            sink_put(s, REPLACEMENT, 3);
            i++;
        } else if (k > 1) {
            sink_put(s, p + i, k);
            i += k;
        } else {
            unsigned char c = u[i++];
            if (c == '"') sink_put(s, "\\\"", 2);
            else if (c == '\\') sink_put(s, "\\\\", 2);
            else if (c == '\n') sink_put(s, "\\n", 2);
            else if (c == '\r') sink_put(s, "\\r", 2);
            else if (c == '\t') sink_put(s, "\\t", 2);
            else if (c < 0x20) sink_printf(s, "\\u%04x", c);
            else sink_put(s, &c, 1);
        }
    }
    sink_put(s, "\"", 1);
}

/* A token's label for the heatmaps: its text with control characters
   shown as escapes (\n, \t, \xNN), invalid bytes and the noncharacters
   XML forbids as U+FFFD, at most max_chars characters ("..." marks a
   cut); or its id in decimal without a tokenizer or for an id the
   tokenizer lacks. ascii keeps only ASCII (the PNG font's): any other
   character becomes '?'. Returns the number of characters. buf needs
   4 * max_chars + 8 bytes. */
static int token_label(const gpt2_tokenizer *t, int id, int max_chars,
                       bool ascii, char *buf) {
    size_t n = 0;
    const char *p = t ? gpt2_tokenizer_piece(t, id, &n) : NULL;
    if (!p) return snprintf(buf, 16, "%d", id);
    const unsigned char *u = (const unsigned char *)p;
    int chars = 0;
    size_t j = 0;
    for (size_t i = 0; i < n && chars < max_chars;) {
        size_t k = utf8_len(u + i, n - i);
        /* U+FFFE and U+FFFF are not allowed in XML */
        bool nonchar = k == 3 && u[i] == 0xEF && u[i + 1] == 0xBF && u[i + 2] >= 0xBE;
        char esc[8];
        const char *put = esc;
        size_t len;
        if (k == 1 && (u[i] < 0x20 || u[i] == 0x7f)) {
            if (u[i] == '\n') len = (size_t)snprintf(esc, sizeof esc, "\\n");
            else if (u[i] == '\t') len = (size_t)snprintf(esc, sizeof esc, "\\t");
            else len = (size_t)snprintf(esc, sizeof esc, "\\x%02x", u[i]);
        } else if (k == 0 || nonchar || (ascii && k > 1)) {
            put = ascii ? "?" : REPLACEMENT;
            len = ascii ? 1 : 3;
        } else {
            put = p + i;
            len = k;
        }
        i += k ? k : 1;
        /* an escape counts its characters, so the label stays narrow */
        int width = put == esc ? (int)len : 1;
        memcpy(buf + j, put, len);
        j += len;
        chars += width;
        if (chars >= max_chars && i < n) {
            memcpy(buf + j, "...", 3);
            j += 3;
            chars += 3;
        }
    }
    buf[j] = '\0';
    return chars;
}

/* ------------------------------------------------------------------ JSON */

/* A float as JSON in %.6g: 6 significant digits (relative error under
   1e-5, inside the 1e-4 the reference tests ask) keep a full capture of
   gpt2 at 1024 tokens near 1 GB. NaN and infinities, which JSON cannot
   write, become null. */
static void json_number(sink *s, float v) {
    if (v == 0.0f) {
        sink_put(s, "0", 1);
    } else if (!isfinite(v)) {
        sink_put(s, "null", 4);
    } else {
        char tmp[32];
        int n = snprintf(tmp, sizeof tmp, "%.6g", (double)v);
        sink_put(s, tmp, (size_t)n);
    }
}

/* [layer][head][query][key] of data; with masked_null, cells with key >
   query are null. One line per head's matrix. */
static void json_maps(sink *s, const gpt2_attention *a, const float *data,
                      bool masked_null) {
    int T = a->T;
    sink_put(s, "[", 1);
    for (int l = 0; l < a->L && !s->st; l++) {
        sink_str(s, l ? ",\n[" : "\n[");
        for (int h = 0; h < a->NH; h++) {
            const float *mat = data + ((size_t)l * a->NH + h) * T * T;
            sink_str(s, h ? ",\n[" : "[");
            for (int i = 0; i < T; i++) {
                sink_str(s, i ? ",[" : "[");
                for (int j = 0; j < T; j++) {
                    if (j) sink_put(s, ",", 1);
                    if (masked_null && j > i) sink_put(s, "null", 4);
                    else json_number(s, mat[(size_t)i * T + j]);
                }
                sink_put(s, "]", 1);
            }
            sink_put(s, "]", 1);
        }
        sink_put(s, "]", 1);
    }
    sink_put(s, "]", 1);
}

/* Checks what every writer needs. */
static gpt2_status check_export(const char *fn, const gpt2_attention *a,
                                const char *path) {
    if (!a) return gpt2__fail(GPT2_ERR_ARG, "%s: attention is NULL", fn);
    if (!path || !*path)
        return gpt2__fail(GPT2_ERR_ARG, "%s: no output path", fn);
    return GPT2_OK;
}

gpt2_status gpt2_attention_write_json(const gpt2_attention *a,
                                      const gpt2_tokenizer *t,
                                      const char *path) {
    gpt2_status st = check_export("attention_write_json", a, path);
    if (st) return st;
    sink s;
    if ((st = sink_open(&s, path))) return st;
    sink_str(&s, "{\"n_layer\":");
    sink_printf(&s, "%d,\"n_head\":%d,\"tokens\":[", a->L, a->NH);
    for (int i = 0; i < a->T; i++) sink_printf(&s, i ? ",%d" : "%d", a->tokens[i]);
    sink_str(&s, "]");
    if (t) {
        /* null for an id the tokenizer does not have (a model whose
           vocabulary is larger than its tokenizer's) */
        sink_str(&s, ",\n\"pieces\":[");
        for (int i = 0; i < a->T; i++) {
            size_t n = 0;
            const char *p = gpt2_tokenizer_piece(t, a->tokens[i], &n);
            if (i) sink_put(&s, ",", 1);
            if (p) json_string(&s, p, n);
            else sink_str(&s, "null");
        }
        sink_str(&s, "]");
    }
    sink_str(&s, ",\n\"attention\":");
    json_maps(&s, a, a->weights, false);
    if (a->scores) {
        sink_str(&s, ",\n\"scores\":");
        json_maps(&s, a, a->scores, true);
    }
    sink_str(&s, "}\n");
    return sink_close(&s);
}

/* -------------------------------------------------------------- colours */

static const unsigned char COLOUR_LO[3] = {255, 255, 255}; /* weight 0 */
static const unsigned char COLOUR_HI[3] = {8, 48, 107};    /* weight 1 */
static const unsigned char COLOUR_MASKED[3] = {221, 221, 221};

static void weight_rgb(float w, unsigned char rgb[3]) {
    if (!(w > 0.0f)) w = 0.0f; /* NaN too */
    if (w > 1.0f) w = 1.0f;
    for (int c = 0; c < 3; c++)
        rgb[c] = (unsigned char)lrintf((float)COLOUR_LO[c] +
                                       ((float)COLOUR_HI[c] - COLOUR_LO[c]) * w);
}

/* Checks the layer and head of a heatmap writer. */
static gpt2_status check_map(const char *fn, const gpt2_attention *a,
                             int layer, int head, const char *path) {
    gpt2_status st = check_export(fn, a, path);
    if (st) return st;
    if (layer < 0 || layer >= a->L)
        return gpt2__fail(GPT2_ERR_ARG, "%s: layer %d outside [0, %d)", fn,
                          layer, a->L);
    if (head < 0 || head >= a->NH)
        return gpt2__fail(GPT2_ERR_ARG, "%s: head %d outside [0, %d)", fn,
                          head, a->NH);
    return GPT2_OK;
}

/* ------------------------------------------------------------------- SVG */

#define LABEL_CHARS 16 /* longest token label shown, in characters */
#define SVG_TITLES_MAX_T 128 /* per-cell tooltips up to this many tokens */

/* Text for XML character data or an attribute: & < > " escaped. */
static void xml_text(sink *s, const char *p) {
    for (; *p; p++) {
        if (*p == '&') sink_str(s, "&amp;");
        else if (*p == '<') sink_str(s, "&lt;");
        else if (*p == '>') sink_str(s, "&gt;");
        else if (*p == '"') sink_str(s, "&quot;");
        else sink_put(s, p, 1);
    }
}

/* The geometry of the SVG heatmap: cells of `cell` units from (x0, y0). */
typedef struct {
    int cell, font, label_w, x0, y0, width, height, bar_x;
} svg_layout;

static svg_layout svg_geometry(const gpt2_attention *a,
                               const gpt2_tokenizer *t) {
    svg_layout g;
    int T = a->T;
    g.cell = T <= 32 ? 24 : (768 / T > 4 ? 768 / T : 4);
    g.font = g.cell - 2 < 12 ? g.cell - 2 : 12;
    int longest = 1;
    char buf[4 * LABEL_CHARS + 8];
    for (int i = 0; i < T; i++) {
        int n = token_label(t, a->tokens[i], LABEL_CHARS, false, buf);
        if (n > longest) longest = n;
    }
    g.label_w = (int)(longest * g.font * 0.62) + 8;
    g.x0 = 10 + g.label_w;
    g.y0 = 44 + g.label_w;
    g.bar_x = g.x0 + T * g.cell + 24;
    g.width = g.bar_x + 16 + 48;
    g.height = g.y0 + T * g.cell + 16;
    if (g.height < g.y0 + 220) g.height = g.y0 + 220; /* room for the bar */
    return g;
}

static void svg_labels(sink *s, const gpt2_attention *a,
                       const gpt2_tokenizer *t, const svg_layout *g) {
    char buf[4 * LABEL_CHARS + 8];
    sink_printf(s, "<g class=\"labels\" font-size=\"%d\" fill=\"#222\">\n",
                g->font);
    for (int i = 0; i < a->T; i++) {
        double mid = (i + 0.5) * g->cell;
        token_label(t, a->tokens[i], LABEL_CHARS, false, buf);
        /* queries down the left, right-aligned against the grid */
        sink_printf(s, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" "
                       "dominant-baseline=\"central\">", g->x0 - 4, g->y0 + mid);
        xml_text(s, buf);
        /* keys along the top, reading upwards from the grid */
        sink_printf(s, "</text><text transform=\"translate(%.1f %d) "
                       "rotate(-90)\" dominant-baseline=\"central\">",
                    g->x0 + mid, g->y0 - 4);
        xml_text(s, buf);
        sink_str(s, "</text>\n");
    }
    sink_str(s, "</g>\n");
}

/* The cells of the lower triangle over a grey (masked) square; each has
   x = key * cell, y = query * cell inside the translated group. */
static void svg_cells(sink *s, const gpt2_attention *a,
                      const gpt2_tokenizer *t, const float *w,
                      const svg_layout *g) {
    int T = a->T, c = g->cell;
    bool titles = T <= SVG_TITLES_MAX_T;
    char qb[4 * LABEL_CHARS + 8], kb[4 * LABEL_CHARS + 8];
    sink_printf(s, "<g class=\"cells\" transform=\"translate(%d %d)\">\n"
                   "<rect class=\"masked\" width=\"%d\" height=\"%d\" "
                   "fill=\"#%02x%02x%02x\"/>\n", g->x0, g->y0, T * c, T * c,
                COLOUR_MASKED[0], COLOUR_MASKED[1], COLOUR_MASKED[2]);
    for (int i = 0; i < T && !s->st; i++) {
        if (titles) token_label(t, a->tokens[i], LABEL_CHARS, false, qb);
        for (int j = 0; j <= i; j++) {
            unsigned char rgb[3];
            float v = w[(size_t)i * T + j];
            weight_rgb(v, rgb);
            sink_printf(s, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" "
                           "height=\"%d\" fill=\"#%02x%02x%02x\"", j * c, i * c,
                        c, c, rgb[0], rgb[1], rgb[2]);
            if (!titles) {
                sink_str(s, "/>\n");
                continue;
            }
            token_label(t, a->tokens[j], LABEL_CHARS, false, kb);
            sink_str(s, "><title>");
            xml_text(s, qb);
            sink_str(s, " -> ");
            xml_text(s, kb);
            sink_printf(s, ": %.4f</title></rect>\n", (double)v);
        }
    }
    sink_str(s, "</g>\n");
}

/* A vertical colour bar from 1 (top) to 0 (bottom) with ticks. */
static void svg_colour_bar(sink *s, const svg_layout *g) {
    int h = 200;
    sink_printf(s, "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" "
                   "x2=\"0\" y2=\"0\"><stop offset=\"0\" stop-color=\"#%02x%02x"
                   "%02x\"/><stop offset=\"1\" stop-color=\"#%02x%02x%02x\"/>"
                   "</linearGradient></defs>\n", COLOUR_LO[0], COLOUR_LO[1],
                COLOUR_LO[2], COLOUR_HI[0], COLOUR_HI[1], COLOUR_HI[2]);
    sink_printf(s, "<g class=\"colour-bar\" font-size=\"11\" fill=\"#222\">"
                   "<rect x=\"%d\" y=\"%d\" width=\"16\" height=\"%d\" "
                   "fill=\"url(#scale)\" stroke=\"#888\"/>\n", g->bar_x, g->y0, h);
    for (int k = 0; k <= 4; k++)
        sink_printf(s, "<text x=\"%d\" y=\"%d\" dominant-baseline=\"central\">"
                       "%.2g</text>\n", g->bar_x + 20, g->y0 + h - k * h / 4,
                    k / 4.0);
    sink_printf(s, "<text x=\"%d\" y=\"%d\">weight</text></g>\n", g->bar_x,
                g->y0 - 8);
}

gpt2_status gpt2_attention_write_svg(const gpt2_attention *a,
                                     const gpt2_tokenizer *t, int layer,
                                     int head, const char *path) {
    gpt2_status st = check_map("attention_write_svg", a, layer, head, path);
    if (st) return st;
    svg_layout g = svg_geometry(a, t);
    sink s;
    if ((st = sink_open(&s, path))) return st;
    sink_printf(&s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
                    "height=\"%d\" viewBox=\"0 0 %d %d\" "
                    "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" "
                    "xml:space=\"preserve\">\n"
                    "<title>layer %d, head %d</title>\n"
                    "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                    "<text x=\"10\" y=\"24\" font-size=\"16\" "
                    "font-weight=\"bold\">layer %d, head %d</text>\n",
                g.width, g.height, g.width, g.height, layer, head, layer, head);
    svg_labels(&s, a, t, &g);
    svg_cells(&s, a, t, gpt2_attention_weights(a, layer, head), &g);
    svg_colour_bar(&s, &g);
    sink_str(&s, "</svg>\n");
    return sink_close(&s);
}

/* ------------------------------------------------------------------- PNG */

/* A 5x7 bitmap font for ASCII 32..126, drawn for the PNG's labels. */
static const char FONT[95][7][6] = {
    {".....", ".....", ".....", ".....", ".....", ".....", "....."}, /*   */
    {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}, /* ! */
    {".#.#.", ".#.#.", ".#.#.", ".....", ".....", ".....", "....."}, /* " */
    {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}, /* # */
    {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."}, /* $ */
    {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}, /* % */
    {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"}, /* & */
    {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}, /* ' */
    {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}, /* ( */
    {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}, /* ) */
    {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}, /* * */
    {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}, /* + */
    {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}, /* , */
    {".....", ".....", ".....", "#####", ".....", ".....", "....."}, /* - */
    {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}, /* . */
    {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}, /* / */
    {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}, /* 0 */
    {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* 1 */
    {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}, /* 2 */
    {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}, /* 3 */
    {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}, /* 4 */
    {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}, /* 5 */
    {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}, /* 6 */
    {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}, /* 7 */
    {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}, /* 8 */
    {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}, /* 9 */
    {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}, /* : */
    {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}, /* ; */
    {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}, /* < */
    {".....", ".....", "#####", ".....", "#####", ".....", "....."}, /* = */
    {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}, /* > */
    {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}, /* ? */
    {".###.", "#...#", "....#", ".##.#", "#.#.#", "#.#.#", ".###."}, /* @ */
    {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* A */
    {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}, /* B */
    {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}, /* C */
    {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}, /* D */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}, /* E */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}, /* F */
    {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}, /* G */
    {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* H */
    {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* I */
    {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}, /* J */
    {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}, /* K */
    {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}, /* L */
    {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}, /* M */
    {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}, /* N */
    {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* O */
    {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}, /* P */
    {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}, /* Q */
    {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}, /* R */
    {".####", "#....", "#....", ".###.", "....#", "....#", "####."}, /* S */
    {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* T */
    {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* U */
    {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* V */
    {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}, /* W */
    {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}, /* X */
    {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}, /* Y */
    {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}, /* Z */
    {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}, /* [ */
    {".....", "#....", ".#...", "..#..", "...#.", "....#", "....."}, /* \ */
    {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}, /* ] */
    {"..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."}, /* ^ */
    {".....", ".....", ".....", ".....", ".....", ".....", "#####"}, /* _ */
    {".#...", "..#..", "...#.", ".....", ".....", ".....", "....."}, /* ` */
    {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}, /* a */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}, /* b */
    {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}, /* c */
    {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}, /* d */
    {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}, /* e */
    {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}, /* f */
    {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."}, /* g */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* h */
    {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}, /* i */
    {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}, /* j */
    {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}, /* k */
    {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* l */
    {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}, /* m */
    {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* n */
    {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}, /* o */
    {".....", ".....", "####.", "#...#", "####.", "#....", "#...."}, /* p */
    {".....", ".....", ".##.#", "#..##", ".####", "....#", "....#"}, /* q */
    {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}, /* r */
    {".....", ".....", ".###.", "#....", ".###.", "....#", "####."}, /* s */
    {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}, /* t */
    {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}, /* u */
    {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* v */
    {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}, /* w */
    {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}, /* x */
    {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."}, /* y */
    {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}, /* z */
    {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#."}, /* { */
    {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* | */
    {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..."}, /* } */
    {".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."}, /* ~ */
};
#define GLYPH_W 5
#define GLYPH_H 7
#define ADVANCE 6 /* glyph and one column of space */

/* An RGB image, row-major, 3 bytes a pixel. */
typedef struct {
    int w, h;
    unsigned char *px;
} image;

static void fill_rect(image *im, int x, int y, int w, int h,
                      const unsigned char rgb[3]) {
    for (int r = y; r < y + h; r++)
        for (int c = x; c < x + w; c++) {
            if (r < 0 || r >= im->h || c < 0 || c >= im->w) continue;
            memcpy(im->px + ((size_t)r * im->w + c) * 3, rgb, 3);
        }
}

/* Draws ASCII text at scale s. Horizontal: (x, y) is the top left, text
   goes right. Vertical: (x, y) is the bottom left, text goes up (the
   glyphs turned 90 degrees counter-clockwise). */
static void draw_text(image *im, int x, int y, const char *text, int s,
                      bool vertical, const unsigned char rgb[3]) {
    for (int i = 0; text[i]; i++) {
        unsigned char ch = (unsigned char)text[i];
        const char(*g)[6] = FONT[(ch >= 32 && ch <= 126 ? ch : '?') - 32];
        for (int gy = 0; gy < GLYPH_H; gy++)
            for (int gx = 0; gx < GLYPH_W; gx++) {
                if (g[gy][gx] != '#') continue;
                int along = (i * ADVANCE + gx) * s, across = gy * s;
                if (vertical) fill_rect(im, x + across, y - along - s, s, s, rgb);
                else fill_rect(im, x + along, y + across, s, s, rgb);
            }
    }
}

#define PNG_LABEL_CHARS 12

/* The PNG's geometry: cells of `cell` pixels from (x0, y0); labels only
   when a cell is tall enough for the font. */
typedef struct {
    int cell, label_w, x0, y0, bar_x, bar_h, width, height;
    bool labels;
} png_layout;

static png_layout png_geometry(const gpt2_attention *a,
                               const gpt2_tokenizer *t) {
    png_layout g;
    int T = a->T;
    g.cell = 768 / T > 24 ? 24 : (768 / T < 1 ? 1 : 768 / T);
    g.labels = g.cell >= GLYPH_H + 1;
    int longest = 0;
    char buf[4 * PNG_LABEL_CHARS + 8];
    for (int i = 0; g.labels && i < T; i++) {
        int n = token_label(t, a->tokens[i], PNG_LABEL_CHARS, true, buf);
        if (n > longest) longest = n;
    }
    g.label_w = g.labels ? longest * ADVANCE + 4 : 0;
    g.x0 = 8 + g.label_w;
    g.y0 = 8 + 2 * GLYPH_H + 10 + g.label_w; /* title at scale 2 */
    g.bar_x = g.x0 + T * g.cell + 12;
    g.bar_h = T * g.cell < 100 ? 100 : T * g.cell;
    g.width = g.bar_x + 12 + 4 + 3 * ADVANCE + 8;
    int title_w = 8 + 2 * ADVANCE * 20 + 8; /* "layer LL, head HH" */
    if (g.width < title_w) g.width = title_w;
    g.height = g.y0 + g.bar_h + 8;
    return g;
}

static void png_draw(image *im, const gpt2_attention *a,
                     const gpt2_tokenizer *t, const float *w, int layer,
                     int head, const png_layout *g) {
    static const unsigned char ink[3] = {34, 34, 34}, edge[3] = {136, 136, 136};
    int T = a->T, c = g->cell;
    char text[64];
    snprintf(text, sizeof text, "layer %d, head %d", layer, head);
    draw_text(im, 8, 8, text, 2, false, ink);
    fill_rect(im, g->x0, g->y0, T * c, T * c, COLOUR_MASKED);
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++) {
            unsigned char rgb[3];
            weight_rgb(w[(size_t)i * T + j], rgb);
            fill_rect(im, g->x0 + j * c, g->y0 + i * c, c, c, rgb);
        }
    char buf[4 * PNG_LABEL_CHARS + 8];
    for (int i = 0; g->labels && i < T; i++) {
        int n = token_label(t, a->tokens[i], PNG_LABEL_CHARS, true, buf);
        int off = (c - GLYPH_H) / 2;
        draw_text(im, g->x0 - 3 - n * ADVANCE, g->y0 + i * c + off, buf, 1,
                  false, ink);
        draw_text(im, g->x0 + i * c + off, g->y0 - 3, buf, 1, true, ink);
    }
    /* the colour bar: 1 at the top, 0 at the bottom */
    fill_rect(im, g->bar_x - 1, g->y0 - 1, 14, g->bar_h + 2, edge);
    for (int r = 0; r < g->bar_h; r++) {
        unsigned char rgb[3];
        weight_rgb(1.0f - (float)r / (float)(g->bar_h - 1), rgb);
        fill_rect(im, g->bar_x, g->y0 + r, 12, 1, rgb);
    }
    draw_text(im, g->bar_x + 16, g->y0, "1", 1, false, ink);
    draw_text(im, g->bar_x + 16, g->y0 + g->bar_h - GLYPH_H, "0", 1, false, ink);
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* One PNG chunk: length, type, data, CRC of type and data. */
static void png_chunk(sink *s, const char type[4], const void *data,
                      size_t n) {
    unsigned char b[4];
    put_be32(b, (uint32_t)n);
    sink_put(s, b, 4);
    sink_put(s, type, 4);
    sink_put(s, data, n);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (n) crc = crc32(crc, (const Bytef *)data, (uInt)n);
    put_be32(b, (uint32_t)crc);
    sink_put(s, b, 4);
}

/* A tEXt chunk: keyword, NUL, Latin-1 text (ours is ASCII). */
static void png_text(sink *s, const char *key, const char *text) {
    char buf[256];
    size_t k = strlen(key), n = strlen(text);
    GPT2_ASSERT(k + 1 + n <= sizeof buf);
    memcpy(buf, key, k + 1);
    memcpy(buf + k + 1, text, n);
    png_chunk(s, "tEXt", buf, k + 1 + n);
}

/* The image as PNG rows (filter byte 0, then RGB), deflated by zlib. */
static gpt2_status png_deflate(const image *im, unsigned char **out,
                               size_t *out_len) {
    size_t stride = (size_t)im->w * 3 + 1, raw_len = stride * im->h;
    unsigned char *raw = gpt2__malloc(raw_len, 1, "png rows");
    if (!raw) return GPT2_ERR_NOMEM;
    for (int r = 0; r < im->h; r++) {
        raw[r * stride] = 0;
        memcpy(raw + r * stride + 1, im->px + (size_t)r * im->w * 3,
               (size_t)im->w * 3);
    }
    uLongf len = compressBound((uLong)raw_len);
    unsigned char *z = gpt2__malloc(len, 1, "png data");
    gpt2_status st = GPT2_OK;
    if (!z) st = GPT2_ERR_NOMEM;
    else if (compress2(z, &len, raw, (uLong)raw_len, 6) != Z_OK)
        st = gpt2__fail(GPT2_ERR_NOMEM, "attention_write_png: zlib failed "
                                        "to compress %zu bytes", raw_len);
    free(raw);
    if (st) {
        free(z);
        return st;
    }
    *out = z;
    *out_len = len;
    return GPT2_OK;
}

static gpt2_status png_write(const image *im, const char *title,
                             const char *geometry, const char *path) {
    unsigned char *z = NULL;
    size_t zlen = 0;
    gpt2_status st = png_deflate(im, &z, &zlen);
    if (st) return st;
    if (zlen > 0x7fffffffu) {
        free(z);
        return gpt2__fail(GPT2_ERR_ARG, "attention_write_png: %zu bytes of "
                                        "image data exceed one PNG chunk", zlen);
    }
    sink s;
    if ((st = sink_open(&s, path))) {
        free(z);
        return st;
    }
    unsigned char ihdr[13];
    put_be32(ihdr, (uint32_t)im->w);
    put_be32(ihdr + 4, (uint32_t)im->h);
    ihdr[8] = 8;  /* bits per channel */
    ihdr[9] = 2;  /* colour type: RGB */
    ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, no filter set, no interlace */
    sink_put(&s, "\x89PNG\r\n\x1a\n", 8);
    png_chunk(&s, "IHDR", ihdr, sizeof ihdr);
    png_text(&s, "Title", title);
    png_text(&s, "gpt2c-heatmap", geometry);
    png_chunk(&s, "IDAT", z, zlen);
    png_chunk(&s, "IEND", NULL, 0);
    free(z);
    return sink_close(&s);
}

gpt2_status gpt2_attention_write_png(const gpt2_attention *a,
                                     const gpt2_tokenizer *t, int layer,
                                     int head, const char *path) {
    gpt2_status st = check_map("attention_write_png", a, layer, head, path);
    if (st) return st;
    png_layout g = png_geometry(a, t);
    image im = {g.width, g.height, NULL};
    im.px = gpt2__malloc((size_t)im.w * im.h, 3, "png image");
    if (!im.px) return GPT2_ERR_NOMEM;
    memset(im.px, 255, (size_t)im.w * im.h * 3);
    png_draw(&im, a, t, gpt2_attention_weights(a, layer, head), layer, head, &g);
    /* where the cells are, so tools (and the tests) can read values back */
    char title[64], geometry[128];
    snprintf(title, sizeof title, "layer %d, head %d", layer, head);
    snprintf(geometry, sizeof geometry, "x0=%d y0=%d cell=%d n=%d", g.x0, g.y0,
             g.cell, a->T);
    st = png_write(&im, title, geometry, path);
    free(im.px);
    return st;
}
