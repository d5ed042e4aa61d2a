/* test_attention_html.c: gpt2_attention_write_html. The page written is
   web/attention.html byte for byte except the one data tag (so the copy
   compiled into the library is the page in web/), and the data in it is
   exactly the capture: every weight of the lower triangle and every score,
   bit for bit after base64, the token ids, and token texts escaped so that
   nothing in them can end the <script> tag. Also: no scores, no
   tokenizer, ids the tokenizer lacks, and the errors. (The page itself is
   tested in a real browser by tests/t_browser.sh.) */
#include "check.h"
#include "gpt2.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char OPEN[] = "<script type=\"application/json\" id=\"capture\">";

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return s;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* base64 (standard alphabet, '=' padding) to bytes; -1 on a bad string */
static long unbase64(const char *s, unsigned char *out, size_t cap) {
    static const char *abc =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    if (n % 4) return -1;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (i < n - 2) return -1;
            continue;
        }
        const char *p = strchr(abc, s[i]);
        if (!p || !s[i]) return -1;
        acc = acc << 6 | (unsigned)(p - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap) return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* little-endian float32 i of bytes */
static float le_float(const unsigned char *b, size_t i) {
    uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                 (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The page at path against the template: same bytes around the data tag,
   which must hold one JSON object; returns it parsed (NULL on mismatch). */
static cJSON *page_data(const char *path, const char *tmpl, size_t tmpl_len,
                        char **raw) {
    size_t n;
    char *page = slurp(path, &n);
    CHECK(page != NULL);
    if (!page) return NULL;
    const char *open = strstr(tmpl, OPEN);
    size_t head = (size_t)(open - tmpl) + strlen(OPEN);
    size_t tail = tmpl_len - head - strlen("null");
    CHECK(n > head + tail);
    CHECK(memcmp(page, tmpl, head) == 0);
    CHECK(memcmp(page + n - tail, tmpl + head + strlen("null"), tail) == 0);
    CHECK(strncmp(page + n - tail, "</script>", 9) == 0);
    size_t dlen = n - head - tail;
    char *data = malloc(dlen + 1);
    memcpy(data, page + head, dlen);
    data[dlen] = 0;
    free(page);
    /* nothing in the data may close or comment the tag */
    CHECK(strchr(data, '<') == NULL);
    CHECK(strchr(data, '>') == NULL);
    cJSON *j = cJSON_Parse(data);
    CHECK(j != NULL);
    *raw = data;
    return j;
}

static int int_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* The weights (lower triangle) and scores in the page equal the capture's
   bit for bit. */
static void check_maps(const cJSON *j, const gpt2_attention *a) {
    int L = gpt2_attention_n_layers(a), H = gpt2_attention_n_heads(a),
        T = gpt2_attention_n_tokens(a);
    size_t nw = (size_t)L * H * T * (T + 1) / 2, ns = (size_t)L * H * T * T;
    unsigned char *buf = malloc(4 * ns + 16);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "weights");
    CHECK(cJSON_IsString(w));
    if (cJSON_IsString(w)) {
        CHECK(unbase64(w->valuestring, buf, 4 * ns + 16) == (long)(4 * nw));
        size_t i = 0, bad = 0;
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const float *m = gpt2_attention_weights(a, l, h);
                for (int q = 0; q < T; q++)
                    for (int k = 0; k <= q; k++, i++)
                        if (memcmp(&m[q * T + k], &(float){le_float(buf, i)}, 4))
                            bad++;
            }
        CHECK(bad == 0);
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "scores");
    if (gpt2_attention_scores(a, 0, 0)) {
        CHECK(cJSON_IsString(s));
        if (cJSON_IsString(s)) {
            CHECK(unbase64(s->valuestring, buf, 4 * ns + 16) == (long)(4 * ns));
            size_t i = 0, bad = 0;
            for (int l = 0; l < L; l++)
                for (int h = 0; h < H; h++) {
                    const float *m = gpt2_attention_scores(a, l, h);
                    for (size_t c = 0; c < (size_t)T * T; c++, i++)
                        if (m[c] != le_float(buf, i)) bad++;
                }
            CHECK(bad == 0);
        }
    } else {
        CHECK(cJSON_IsNull(s));
    }
    free(buf);
}

static void check_header(const cJSON *j, const gpt2_attention *a) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    CHECK(cJSON_IsString(f) && strcmp(f->valuestring, "gpt2c-attention-1") == 0);
    CHECK(int_of(j, "n_layers") == gpt2_attention_n_layers(a));
    CHECK(int_of(j, "n_heads") == gpt2_attention_n_heads(a));
    CHECK(int_of(j, "n_tokens") == gpt2_attention_n_tokens(a));
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    CHECK(cJSON_GetArraySize(ids) == gpt2_attention_n_tokens(a));
    for (int i = 0; i < cJSON_GetArraySize(ids); i++)
        CHECK(cJSON_GetArrayItem(ids, i)->valueint == gpt2_attention_tokens(a)[i]);
}

static const char *piece_at(const cJSON *j, int i) {
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "pieces"), i);
    return cJSON_IsString(p) ? p->valuestring : NULL;
}

int main(void) {
    size_t tmpl_len;
    char *tmpl = slurp("web/attention.html", &tmpl_len);
    CHECK(tmpl != NULL);
    if (!tmpl) return CHECK_DONE();
    /* one data tag, empty in the source */
    CHECK(count(tmpl, OPEN) == 1);
    CHECK(strstr(tmpl, OPEN) && strncmp(strstr(tmpl, OPEN) + strlen(OPEN),
                                        "null</script>", 13) == 0);

    gpt2_tokenizer *tok = NULL;
    CHECK_OK(gpt2_tokenizer_load("assets/tokenizer", &tok));
    gpt2_config c = {.n_layer = 2, .n_head = 3, .n_embd = 48, .n_ctx = 64,
                     .vocab_size = 50257, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m = NULL;
    CHECK_OK(gpt2_model_init(&c, 7, &m));
    if (!tok || !m) return CHECK_DONE();

    char dir[] = "/tmp/test_attention_html.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/page.html", dir);

    /* the tutorial's sentence, with scores */
    const char *text = "A robot must obey the orders given it";
    int ids[64];
    size_t n = 0;
    CHECK_OK(gpt2_tokenizer_encode(tok, text, strlen(text), 0, ids, 64, &n));
    gpt2_attention *a = NULL;
    CHECK_OK(gpt2_attention_capture(m, ids, (int)n, 1, &a));
    CHECK_OK(gpt2_attention_write_html(a, tok, path));
    char *raw = NULL;
    cJSON *j = page_data(path, tmpl, tmpl_len, &raw);
    if (j) {
        check_header(j, a);
        check_maps(j, a);
        CHECK(piece_at(j, 1) && strcmp(piece_at(j, 1), " robot") == 0);
        CHECK(piece_at(j, 0) && strcmp(piece_at(j, 0), "A") == 0);
    }
    cJSON_Delete(j);
    free(raw);
    /* overwriting a page leaves no temporary file beside it */
    CHECK_OK(gpt2_attention_write_html(a, tok, path));
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    gpt2_attention_free(a);

    /* no scores, no tokenizer: both null, weights still exact */
    a = NULL;
    CHECK_OK(gpt2_attention_capture(m, ids, 3, 0, &a));
    CHECK_OK(gpt2_attention_write_html(a, NULL, path));
    j = page_data(path, tmpl, tmpl_len, &raw);
    if (j) {
        check_header(j, a);
        check_maps(j, a);
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "pieces")));
    }
    cJSON_Delete(j);
    free(raw);
    gpt2_attention_free(a);

    /* token texts that could break out of the tag or the string: "</",
       "script", ">", "<!--", a quote, a backslash, a newline, and half of
       a UTF-8 character (the byte token 0xE2) */
    const char *nasty = "</script><!-- \"q\\\n";
    CHECK_OK(gpt2_tokenizer_encode(tok, nasty, strlen(nasty), 0, ids, 64, &n));
    int e2 = -1;
    for (int id = 0; id < 256 && e2 < 0; id++) {
        size_t blen;
        const char *b = gpt2_tokenizer_piece(tok, id, &blen);
        if (b && blen == 1 && (unsigned char)b[0] == 0xE2) e2 = id;
    }
    CHECK(e2 >= 0);
    ids[n++] = e2;
    a = NULL;
    CHECK_OK(gpt2_attention_capture(m, ids, (int)n, 1, &a));
    CHECK_OK(gpt2_attention_write_html(a, tok, path));
    j = page_data(path, tmpl, tmpl_len, &raw);
    if (j) {
        check_header(j, a);
        char joined[256] = "";
        for (size_t i = 0; i + 1 < n; i++)
            if (piece_at(j, (int)i)) strcat(joined, piece_at(j, (int)i));
        CHECK(strcmp(joined, nasty) == 0);
        CHECK(piece_at(j, (int)n - 1) &&
              strcmp(piece_at(j, (int)n - 1), "\xEF\xBF\xBD") == 0);
    }
    cJSON_Delete(j);
    free(raw);
    gpt2_attention_free(a);

    /* a model whose vocabulary is larger than its tokenizer's: those ids
       have no text (null), the page still writes */
    gpt2_config c2 = c;
    c2.vocab_size = 50304;
    gpt2_model *m2 = NULL;
    CHECK_OK(gpt2_model_init(&c2, 7, &m2));
    int padded[2] = {50300, 32};
    a = NULL;
    CHECK_OK(gpt2_attention_capture(m2, padded, 2, 0, &a));
    CHECK_OK(gpt2_attention_write_html(a, tok, path));
    j = page_data(path, tmpl, tmpl_len, &raw);
    if (j) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pieces");
        CHECK(cJSON_IsNull(cJSON_GetArrayItem(p, 0)));
        CHECK(piece_at(j, 1) && strcmp(piece_at(j, 1), "A") == 0);
    }
    cJSON_Delete(j);
    free(raw);

    /* errors: a message, no crash, no file */
    CHECK(gpt2_attention_write_html(NULL, tok, path) == GPT2_ERR_ARG);
    CHECK(strstr(gpt2_last_error(), "attention_write_html") != NULL);
    CHECK(gpt2_attention_write_html(a, tok, NULL) == GPT2_ERR_ARG);
    char bad[300];
    snprintf(bad, sizeof bad, "%s/no/such/dir/page.html", dir);
    CHECK(gpt2_attention_write_html(a, tok, bad) == GPT2_ERR_IO);
    CHECK(access(bad, F_OK) != 0);
    gpt2_attention_free(a);
    gpt2_model_free(m2);

    unlink(path);
    rmdir(dir);
    gpt2_model_free(m);
    gpt2_tokenizer_free(tok);
    free(tmpl);
    return CHECK_DONE();
}
