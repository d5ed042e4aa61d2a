/* test_attention.c: attention capture and its exports. The captured
   weights are probabilities under the causal mask, equal the softmax of
   the captured raw scores, and equal what a KV-cache decode attends to
   at each position; the JSON, SVG and PNG files hold those values; bad
   arguments return errors. (tests/t_attention.sh checks the values
   against the PyTorch reference.) */
#include "check.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#define TOL 1e-5

/* ------------------------------------------------------------- helpers */

/* A random model whose attention is peaked, not nearly uniform: GPT-2's
   init gives scores near 0, where a wrong mask or softmax hardly shows. */
static gpt2_model *peaked_model(const gpt2_config *c, uint64_t seed) {
    gpt2_model *m = NULL;
    CHECK_OK(gpt2_model_init(c, seed, &m));
    if (!m) return NULL;
    for (int l = 0; l < c->n_layer; l++) {
        int i = gpt2__tensor_index(l, GPT2__QKV_W);
        for (size_t j = 0; j < m->specs[i].numel; j++) m->tensor[i][j] *= 8.0f;
    }
    gpt2__model_bind(m);
    return m;
}

static char *read_all(const char *path, size_t *len) {
    char *data = NULL;
    if (gpt2__read_file(path, &data, len) != GPT2_OK) return NULL;
    return data;
}

/* ------------------------------------------------- the captured values */

/* Every map: rows sum to 1, nothing above the diagonal, and the weights
   are softmax(scores) over keys 0..query. Returns the largest weight of
   the rows from the fourth on (to show the attention is not uniform). */
static double check_maps(const gpt2_attention *a) {
    int T = gpt2_attention_n_tokens(a), L = gpt2_attention_n_layers(a),
        NH = gpt2_attention_n_heads(a);
    double worst_sum = 0, worst_soft = 0, peak = 0;
    int bad_mask = 0, bad_scores = 0, masked_scores_nonzero = 0;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) {
            const float *w = gpt2_attention_weights(a, l, h);
            const float *s = gpt2_attention_scores(a, l, h);
            for (int i = 0; i < T; i++) {
                const float *wr = w + (size_t)i * T, *sr = s + (size_t)i * T;
                double sum = 0, mx = -INFINITY, z = 0;
                for (int j = 0; j <= i; j++) {
                    sum += wr[j];
                    mx = fmax(mx, sr[j]);
                    if (i >= 3) peak = fmax(peak, wr[j]); /* uniform: <= 1/4 */
                }
                for (int j = 0; j <= i; j++) z += exp(sr[j] - mx);
                for (int j = 0; j <= i; j++)
                    worst_soft = fmax(worst_soft, fabs(wr[j] - exp(sr[j] - mx) / z));
                for (int j = 0; j < T; j++) bad_scores += !isfinite(sr[j]);
                for (int j = i + 1; j < T; j++) {
                    bad_mask += wr[j] != 0.0f;
                    masked_scores_nonzero += sr[j] != 0.0f;
                }
                worst_sum = fmax(worst_sum, fabs(sum - 1.0));
            }
        }
    printf("rows sum to 1 within %.3g; weights = softmax(scores) within %.3g; "
           "largest weight %.3f\n", worst_sum, worst_soft, peak);
    CHECK(worst_sum < TOL);
    CHECK(worst_soft < TOL);
    CHECK(bad_mask == 0);   /* the causal mask: 0 above the diagonal */
    CHECK(bad_scores == 0); /* raw scores are kept for every cell ... */
    /* ... including the masked ones, which are real products, not 0 */
    CHECK(T < 2 || masked_scores_nonzero > 0);
    return peak;
}

/* Decodes tokens one at a time through the KV cache (as a session does)
   and compares, at every position and in every layer and head, what that
   one query attends to with the capture's row for the position. The
   capture runs all positions at once, so this also shows causality: row
   i of the capture knows nothing of the tokens after i. */
static double kv_decode_vs_capture(const gpt2_model *m, const int *toks, int T,
                                   const gpt2_attention *a) {
    const gpt2_config *c = gpt2_model_config(m);
    int C = c->n_embd, L = c->n_layer, NH = c->n_head;
    size_t cache = (size_t)c->n_ctx * C;
    float *kc = calloc((size_t)L * cache, sizeof(float));
    float *vc = calloc((size_t)L * cache, sizeof(float));
    float *x = malloc(sizeof(float) * (size_t)C);
    float *mem = malloc(sizeof(float) * gpt2__block_acts_size(c, 1, 1, c->n_ctx, true));
    gpt2__block_acts acts;
    gpt2__block_acts_bind(&acts, mem, c, 1, 1, c->n_ctx, true);
    double worst = 0;
    for (int pos = 0; pos < T; pos++) {
        for (int i = 0; i < C; i++)
            x[i] = m->wte[(size_t)toks[pos] * C + i] + m->wpe[(size_t)pos * C + i];
        const float *in = x;
        for (int l = 0; l < L; l++) {
            gpt2__block_forward(m, l, &acts, in, 1, 1, pos, kc + l * cache,
                                vc + l * cache, NULL);
            for (int h = 0; h < NH; h++) {
                /* one query over pos + 1 keys: att is (NH, 1, pos + 1) */
                const float *dec = acts.att + (size_t)h * (pos + 1);
                const float *cap = gpt2_attention_weights(a, l, h) + (size_t)pos * T;
                for (int j = 0; j <= pos; j++)
                    worst = fmax(worst, fabs(dec[j] - cap[j]));
            }
            in = acts.residual3;
        }
    }
    free(kc);
    free(vc);
    free(x);
    free(mem);
    return worst;
}

static void test_capture(const gpt2_model *m, const int *toks, int T) {
    gpt2_attention *a = NULL, *b = NULL;
    CHECK_OK(gpt2_attention_capture(m, toks, T, 1, &a));
    if (!a) return;
    const gpt2_config *c = gpt2_model_config(m);
    CHECK(gpt2_attention_n_tokens(a) == T);
    CHECK(gpt2_attention_n_layers(a) == c->n_layer);
    CHECK(gpt2_attention_n_heads(a) == c->n_head);
    CHECK(memcmp(gpt2_attention_tokens(a), toks, sizeof(int) * T) == 0);
    double peak = check_maps(a);
    CHECK(peak > 0.6); /* the model's attention is peaked: the test bites */

    double kv = kv_decode_vs_capture(m, toks, T, a);
    printf("KV-cache decode vs capture: max difference %.3g\n", kv);
    CHECK(kv < TOL);

    /* without scores: the same weights, and no scores */
    CHECK_OK(gpt2_attention_capture(m, toks, T, 0, &b));
    if (b) {
        double d = 0;
        for (int l = 0; l < c->n_layer; l++)
            for (int h = 0; h < c->n_head; h++) {
                const float *w1 = gpt2_attention_weights(a, l, h);
                const float *w2 = gpt2_attention_weights(b, l, h);
                for (int i = 0; i < T * T; i++) d = fmax(d, fabs(w1[i] - w2[i]));
            }
        CHECK(d < 1e-6);
        CHECK(gpt2_attention_scores(b, 0, 0) == NULL);
    }
    /* a one-token text attends to itself alone */
    gpt2_attention *one = NULL;
    CHECK_OK(gpt2_attention_capture(m, toks, 1, 1, &one));
    if (one) CHECK(gpt2_attention_weights(one, c->n_layer - 1, c->n_head - 1)[0] == 1.0f);
    gpt2_attention_free(one);
    gpt2_attention_free(a);
    gpt2_attention_free(b);
}

/* --------------------------------------------------------- bad inputs */

static bool error_says(const char *what) {
    return strstr(gpt2_last_error(), what) != NULL;
}

static void test_bad_arguments(const gpt2_model *m, const int *toks) {
    const gpt2_config *c = gpt2_model_config(m);
    gpt2_attention *a = (gpt2_attention *)1; /* must be reset to NULL */
    CHECK(gpt2_attention_capture(NULL, toks, 3, 0, &a) == GPT2_ERR_ARG);
    CHECK(a == NULL && error_says("attention_capture"));
    CHECK(gpt2_attention_capture(m, NULL, 3, 0, &a) == GPT2_ERR_ARG);
    CHECK(gpt2_attention_capture(m, toks, 3, 0, NULL) == GPT2_ERR_ARG);
    CHECK(gpt2_attention_capture(m, toks, 0, 0, &a) == GPT2_ERR_ARG);
    CHECK(gpt2_attention_capture(m, toks, -5, 0, &a) == GPT2_ERR_ARG);
    int *longer = calloc((size_t)c->n_ctx + 1, sizeof(int));
    CHECK(gpt2_attention_capture(m, longer, c->n_ctx + 1, 0, &a) == GPT2_ERR_ARG);
    CHECK(error_says("n_ctx"));
    CHECK_OK(gpt2_attention_capture(m, longer, c->n_ctx, 0, &a)); /* full context */
    gpt2_attention_free(a);
    free(longer);
    int bad[3] = {1, c->vocab_size, 2};
    CHECK(gpt2_attention_capture(m, bad, 3, 0, &a) == GPT2_ERR_ARG);
    CHECK(a == NULL && error_says("outside"));
    bad[1] = -1;
    CHECK(gpt2_attention_capture(m, bad, 3, 1, &a) == GPT2_ERR_ARG);

    /* accessors out of range, or on NULL */
    CHECK_OK(gpt2_attention_capture(m, toks, 4, 0, &a));
    CHECK(gpt2_attention_weights(a, -1, 0) == NULL);
    CHECK(gpt2_attention_weights(a, c->n_layer, 0) == NULL);
    CHECK(gpt2_attention_weights(a, 0, c->n_head) == NULL);
    CHECK(gpt2_attention_weights(a, 0, -1) == NULL);
    CHECK(gpt2_attention_weights(a, c->n_layer - 1, c->n_head - 1) != NULL);
    CHECK(gpt2_attention_scores(a, 0, 0) == NULL);
    CHECK(gpt2_attention_weights(NULL, 0, 0) == NULL);
    CHECK(gpt2_attention_n_tokens(NULL) == 0 && gpt2_attention_tokens(NULL) == NULL);
    gpt2_attention_free(NULL);

    /* writers: NULL, no path, layer/head out of range, unwritable path */
    CHECK(gpt2_attention_write_json(NULL, NULL, "/tmp/x.json") == GPT2_ERR_ARG);
    CHECK(gpt2_attention_write_json(a, NULL, NULL) == GPT2_ERR_ARG);
    CHECK(gpt2_attention_write_json(a, NULL, "") == GPT2_ERR_ARG);
    CHECK(gpt2_attention_write_svg(a, NULL, c->n_layer, 0, "/tmp/x.svg") == GPT2_ERR_ARG);
    CHECK(error_says("layer"));
    CHECK(gpt2_attention_write_svg(a, NULL, 0, -1, "/tmp/x.svg") == GPT2_ERR_ARG);
    CHECK(error_says("head"));
    CHECK(gpt2_attention_write_png(a, NULL, -1, 0, "/tmp/x.png") == GPT2_ERR_ARG);
    CHECK(gpt2_attention_write_png(a, NULL, 0, c->n_head, "/tmp/x.png") == GPT2_ERR_ARG);
    CHECK(gpt2_attention_write_png(NULL, NULL, 0, 0, "/tmp/x.png") == GPT2_ERR_ARG);
    const char *nodir = "/nonexistent-gpt2c-dir/a.json";
    CHECK(gpt2_attention_write_json(a, NULL, nodir) == GPT2_ERR_IO);
    CHECK(gpt2_attention_write_svg(a, NULL, 0, 0, "/nonexistent-gpt2c-dir/a.svg") == GPT2_ERR_IO);
    CHECK(gpt2_attention_write_png(a, NULL, 0, 0, "/nonexistent-gpt2c-dir/a.png") == GPT2_ERR_IO);
    CHECK(error_says("nonexistent-gpt2c-dir"));
    gpt2_attention_free(a);
}

/* A capture too large for size_t arithmetic fails before any work: a
   model shell (no weights) with 4096 layers and heads over 2^20 tokens
   would need 2^67 bytes. */
static void test_size_overflow(void) {
    gpt2_config c = {.n_layer = 4096, .n_head = 4096, .n_embd = 4096,
                     .n_ctx = 1 << 20, .vocab_size = 1, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m = NULL;
    CHECK_OK(gpt2__model_alloc(&c, false, &m));
    if (!m) return;
    int *toks = calloc((size_t)c.n_ctx, sizeof(int));
    gpt2_attention *a = NULL;
    CHECK(gpt2_attention_capture(m, toks, c.n_ctx, 1, &a) == GPT2_ERR_NOMEM);
    CHECK(a == NULL && error_says("overflow"));
    printf("overflow refused: %s\n", gpt2_last_error());
    free(toks);
    gpt2_model_free(m);
}

/* ------------------------------------------------------------- exports */

/* The JSON a tokenizer's piece must become: U+FFFD for invalid bytes. */
static bool piece_matches(const char *got, const char *piece, size_t n) {
    char want[64];
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < sizeof want; i++) {
        unsigned char c = (unsigned char)piece[i];
        if (c < 0x80) want[j++] = (char)c;
        else if (n == 1) memcpy(want + j, "\xEF\xBF\xBD", 3), j += 3;
        else want[j++] = (char)c; /* multi-byte pieces here are valid UTF-8 */
    }
    want[j] = '\0';
    return strcmp(got, want) == 0;
}

/* One [layer][head][query][key] array against the capture. */
static void check_json_maps(const cJSON *arr, const gpt2_attention *a,
                            bool scores) {
    int T = a ? gpt2_attention_n_tokens(a) : 0;
    int L = gpt2_attention_n_layers(a), NH = gpt2_attention_n_heads(a);
    CHECK(cJSON_GetArraySize(arr) == L);
    double worst = 0;
    int bad = 0;
    for (int l = 0; l < L; l++) {
        const cJSON *lay = cJSON_GetArrayItem(arr, l);
        CHECK(cJSON_GetArraySize(lay) == NH);
        for (int h = 0; h < NH; h++) {
            const cJSON *mat = cJSON_GetArrayItem(lay, h);
            const float *v = scores ? gpt2_attention_scores(a, l, h)
                                    : gpt2_attention_weights(a, l, h);
            bad += cJSON_GetArraySize(mat) != T;
            for (int i = 0; i < T; i++) {
                const cJSON *row = cJSON_GetArrayItem(mat, i);
                bad += cJSON_GetArraySize(row) != T;
                for (int j = 0; j < T; j++) {
                    const cJSON *x = cJSON_GetArrayItem(row, j);
                    if (scores && j > i) {
                        bad += !cJSON_IsNull(x);
                        continue;
                    }
                    if (!cJSON_IsNumber(x)) {
                        bad++;
                        continue;
                    }
                    double want = v[(size_t)i * T + j];
                    worst = fmax(worst, fabs(x->valuedouble - want) / fmax(1.0, fabs(want)));
                }
            }
        }
    }
    printf("JSON %s: max relative difference %.3g\n", scores ? "scores" : "weights", worst);
    CHECK(bad == 0);
    CHECK(worst < TOL);
}

static void test_json(const gpt2_attention *a, const gpt2_attention *no_scores,
                      const gpt2_tokenizer *tok, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/a.json", dir);
    CHECK_OK(gpt2_attention_write_json(a, tok, path));
    size_t len = 0;
    char *text = read_all(path, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    CHECK(j != NULL);
    if (!j) {
        free(text);
        return;
    }
    int T = gpt2_attention_n_tokens(a);
    const int *ids = gpt2_attention_tokens(a);
    const cJSON *tokens = cJSON_GetObjectItem(j, "tokens");
    const cJSON *pieces = cJSON_GetObjectItem(j, "pieces");
    CHECK(cJSON_GetArraySize(tokens) == T && cJSON_GetArraySize(pieces) == T);
    for (int i = 0; i < T && i < cJSON_GetArraySize(tokens); i++) {
        const cJSON *p = cJSON_GetArrayItem(pieces, i);
        size_t n = 0;
        const char *piece = gpt2_tokenizer_piece(tok, ids[i], &n);
        CHECK(cJSON_GetArrayItem(tokens, i)->valueint == ids[i]);
        CHECK(cJSON_IsString(p) && piece_matches(p->valuestring, piece, n));
    }
    check_json_maps(cJSON_GetObjectItem(j, "attention"), a, false);
    check_json_maps(cJSON_GetObjectItem(j, "scores"), a, true);
    /* the raw text holds no control byte and no invalid UTF-8 */
    CHECK(strstr(text, "\xEF\xBF\xBD") != NULL); /* the invalid piece, replaced */
    cJSON_Delete(j);
    free(text);

    /* no tokenizer: ids only; no scores captured: no "scores" */
    CHECK_OK(gpt2_attention_write_json(no_scores, NULL, path));
    text = read_all(path, &len);
    j = text ? cJSON_ParseWithLength(text, len) : NULL;
    CHECK(j && !cJSON_GetObjectItem(j, "pieces") && !cJSON_GetObjectItem(j, "scores"));
    if (j) check_json_maps(cJSON_GetObjectItem(j, "attention"), no_scores, false);
    cJSON_Delete(j);
    free(text);
    /* the temporary file was renamed away */
    snprintf(path, sizeof path, "%s/a.json.tmp", dir);
    CHECK(access(path, F_OK) != 0);
}

/* Valid UTF-8 throughout, and no control bytes but newlines. */
static bool clean_text(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x20 && u[i] != '\n') return false;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = u[i] >= 0xF0 ? 4 : u[i] >= 0xE0 ? 3 : u[i] >= 0xC2 ? 2 : 0;
        if (k == 0 || i + k > n) return false;
        for (int b = 1; b < k; b++)
            if ((u[i + b] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_svg(const gpt2_attention *a, const gpt2_tokenizer *tok,
                     const char *dir, int layer, int head) {
    char path[512], title[64];
    snprintf(path, sizeof path, "%s/a.svg", dir);
    CHECK_OK(gpt2_attention_write_svg(a, tok, layer, head, path));
    size_t len = 0;
    char *text = read_all(path, &len);
    CHECK(text != NULL);
    if (!text) return;
    int T = gpt2_attention_n_tokens(a);
    snprintf(title, sizeof title, ">layer %d, head %d<", layer, head);
    CHECK(strncmp(text, "<?xml", 5) == 0);
    CHECK(strstr(text, "</svg>") != NULL);
    CHECK(strstr(text, title) != NULL);
    CHECK(count(text, "class=\"cell\"") == T * (T + 1) / 2);
    CHECK(clean_text(text, len));
    if (tok) CHECK(strstr(text, "&quot;") != NULL); /* the '"' token, escaped */
    free(text);
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the PNG back: signature, chunk CRCs, IHDR, the geometry tEXt and
   the pixels; every cell of the lower triangle has the colour of its
   weight, every masked cell is grey. */
static void test_png(const gpt2_attention *a, const gpt2_tokenizer *tok,
                     const char *dir, int layer, int head) {
    char path[512];
    snprintf(path, sizeof path, "%s/a.png", dir);
    CHECK_OK(gpt2_attention_write_png(a, tok, layer, head, path));
    size_t len = 0;
    unsigned char *f = (unsigned char *)read_all(path, &len);
    CHECK(f && len > 8 && memcmp(f, "\x89PNG\r\n\x1a\n", 8) == 0);
    if (!f || len < 8) {
        free(f);
        return;
    }
    uint32_t w = 0, h = 0;
    int x0 = -1, y0 = -1, cell = 0, n = 0, bad_crc = 0;
    unsigned char *idat = NULL;
    size_t idat_len = 0;
    for (size_t p = 8; p + 12 <= len;) {
        uint32_t clen = be32(f + p);
        if (p + 12 + clen > len) break;
        const unsigned char *type = f + p + 4, *data = f + p + 8;
        bad_crc += crc32(0, type, 4 + clen) != be32(data + clen);
        if (!memcmp(type, "IHDR", 4)) {
            w = be32(data);
            h = be32(data + 4);
            CHECK(data[8] == 8 && data[9] == 2);
        } else if (!memcmp(type, "tEXt", 4) && !memcmp(data, "gpt2c-heatmap", 14)) {
            char txt[128] = {0};
            memcpy(txt, data + 14, clen - 14 < 127 ? clen - 14 : 127);
            CHECK(sscanf(txt, "x0=%d y0=%d cell=%d n=%d", &x0, &y0, &cell, &n) == 4);
        } else if (!memcmp(type, "IDAT", 4)) {
            idat = realloc(idat, idat_len + clen);
            memcpy(idat + idat_len, data, clen);
            idat_len += clen;
        }
        p += 12 + clen;
    }
    int T = gpt2_attention_n_tokens(a);
    CHECK(bad_crc == 0 && n == T && cell >= 1);
    CHECK(x0 >= 0 && y0 >= 0 && (uint32_t)(x0 + T * cell) <= w && (uint32_t)(y0 + T * cell) <= h);
    uLongf raw_len = (uLongf)(w * 3 + 1) * h;
    unsigned char *raw = malloc(raw_len ? raw_len : 1);
    CHECK(idat && uncompress(raw, &raw_len, idat, idat_len) == Z_OK &&
          raw_len == (uLongf)(w * 3 + 1) * h);
    const float *wt = gpt2_attention_weights(a, layer, head);
    int bad_px = 0, bad_filter = 0;
    for (uint32_t r = 0; r < h; r++) bad_filter += raw[r * (w * 3 + 1)] != 0;
    for (int i = 0; i < T && !bad_filter && n == T; i++)
        for (int j = 0; j < T; j++) {
            int px = x0 + j * cell + cell / 2, py = y0 + i * cell + cell / 2;
            const unsigned char *rgb = raw + (size_t)py * (w * 3 + 1) + 1 + (size_t)px * 3;
            static const int lo[3] = {255, 255, 255}, hi[3] = {8, 48, 107};
            for (int ch = 0; ch < 3; ch++) {
                double want = j > i ? 221 : lo[ch] + (hi[ch] - lo[ch]) * (double)wt[(size_t)i * T + j];
                bad_px += fabs(rgb[ch] - want) > 1.0;
            }
        }
    printf("PNG %ux%u, cells of %d px at (%d, %d): %d wrong channels\n", w, h,
           cell, x0, y0, bad_px);
    CHECK(bad_filter == 0 && bad_px == 0);
    free(raw);
    free(idat);
    free(f);
}

/* The GPT-2 ids of three awkward pieces: '"', a newline, and a lone byte
   that is not UTF-8 on its own. */
static void awkward_ids(const gpt2_tokenizer *t, int *quote, int *newline,
                        int *lone) {
    *quote = *newline = *lone = -1;
    for (int id = 0; id < 256; id++) {
        size_t n = 0;
        const char *p = gpt2_tokenizer_piece(t, id, &n);
        if (n != 1) continue;
        if (p[0] == '"') *quote = id;
        if (p[0] == '\n') *newline = id;
        if ((unsigned char)p[0] >= 0x80 && *lone < 0) *lone = id;
    }
}

int main(void) {
    gpt2_config c = {.n_layer = 3, .n_head = 3, .n_embd = 48, .n_ctx = 24,
                     .vocab_size = 300, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m = peaked_model(&c, 11);
    gpt2_tokenizer *tok = NULL;
    CHECK_OK(gpt2_tokenizer_load("assets/tokenizer", &tok));
    if (!m || !tok) return CHECK_DONE();
    int quote, newline, lone, toks[20];
    awkward_ids(tok, &quote, &newline, &lone);
    CHECK(quote >= 0 && newline >= 0 && lone >= 0);
    for (int i = 0; i < 20; i++) toks[i] = (i * 37 + 11) % c.vocab_size;
    toks[3] = quote;
    toks[7] = newline;
    toks[12] = lone;

    test_capture(m, toks, 20);
    test_bad_arguments(m, toks);
    test_size_overflow();

    char dir[] = "/tmp/test_attention.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    gpt2_attention *a = NULL, *plain = NULL;
    CHECK_OK(gpt2_attention_capture(m, toks, 20, 1, &a));
    CHECK_OK(gpt2_attention_capture(m, toks, 9, 0, &plain));
    if (a && plain) {
        test_json(a, plain, tok, dir);
        test_svg(a, tok, dir, 1, 2);
        test_svg(plain, NULL, dir, 0, 0);
        test_png(a, tok, dir, 2, 1);
        test_png(plain, NULL, dir, 0, 2);
    }
    gpt2_attention_free(a);
    gpt2_attention_free(plain);

    /* a long text: small cells, no labels in the PNG, no tooltips in SVG */
    gpt2_config big = {.n_layer = 1, .n_head = 2, .n_embd = 16, .n_ctx = 300,
                       .vocab_size = 300, .layer_norm_epsilon = 1e-5f};
    gpt2_model *mb = peaked_model(&big, 5);
    int *lt = malloc(sizeof(int) * 300);
    for (int i = 0; i < 300; i++) lt[i] = (i * 7 + 3) % 300;
    gpt2_attention *la = NULL;
    if (mb) CHECK_OK(gpt2_attention_capture(mb, lt, 300, 1, &la));
    if (la) {
        check_maps(la);
        test_png(la, tok, dir, 0, 1);
        test_svg(la, tok, dir, 0, 0);
    }
    gpt2_attention_free(la);
    gpt2_model_free(mb);
    free(lt);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    gpt2_tokenizer_free(tok);
    gpt2_model_free(m);
    return CHECK_DONE();
}
