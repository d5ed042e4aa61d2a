/* test_model_io.c: models to and from files. config.json in both
   directions; Hugging Face directories in F32 (bit exact, memory-mapped),
   F16 and BF16 (exactly the converters' rounding); the name variants other
   writers use (transformer. prefix, attention mask buffers, a saved
   lm_head); llm.c checkpoints (export/import bit exact, bf16 version 5);
   and each way a directory or checkpoint can be wrong, by its message. */
#include "internal.h"

#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char root[64];

static const gpt2_config tiny = {2, 2, 8, 16, 50, 1e-5f};

static void in_root(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", root, name);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* A status and a message that must contain want (printed if not). */
static void expect(gpt2_status got, gpt2_status want_st, const char *want, int line) {
    const char *msg = gpt2_last_error();
    bool ok = got == want_st && strstr(msg, want) != NULL;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: want %d '%s', got %d: %s\n", line, want_st, want,
                got, msg);
}
#define EXPECT(call, st, want) expect((call), (st), (want), __LINE__)

/* Loading must fail (and leave *out NULL). */
static void expect_load_fails(const char *path, gpt2_status st, const char *want,
                              int line) {
    gpt2_model *m = (gpt2_model *)1;
    expect(gpt2_model_load(path, &m), st, want, line);
    CHECK(m == NULL);
    gpt2_model_free(m);
}
#define LOAD_FAILS(path, st, want) expect_load_fails(path, st, want, __LINE__)

static void write_text(const char *path, const char *text) {
    CHECK_OK(gpt2__write_file_atomic(path, text, strlen(text)));
}

static bool same_config(const gpt2_config *a, const gpt2_config *b) {
    return a->n_layer == b->n_layer && a->n_head == b->n_head &&
           a->n_embd == b->n_embd && a->n_ctx == b->n_ctx &&
           a->vocab_size == b->vocab_size &&
           a->layer_norm_epsilon == b->layer_norm_epsilon;
}

/* How b's tensors relate to a's: every float is round(a) bit for bit. */
static float round_f32(float x) { return x; }
static float round_f16(float x) { return gpt2__f16_to_f32(gpt2__f32_to_f16(x)); }
static float round_bf16(float x) { return gpt2__bf16_to_f32(gpt2__f32_to_bf16(x)); }

static bool same_weights(const gpt2_model *a, const gpt2_model *b, float (*round)(float)) {
    if (!same_config(&a->cfg, &b->cfg) || a->n_tensors != b->n_tensors) return false;
    size_t bad = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        gpt2_tensor_info x, y;
        if (gpt2_model_tensor(a, i, &x) || gpt2_model_tensor(b, i, &y)) return false;
        if (strcmp(x.name, y.name) || x.numel != y.numel || x.shape[0] != y.shape[0] ||
            x.shape[1] != y.shape[1])
            return false;
        /* the values, whatever format each model keeps them in */
        float *xf = malloc(x.numel * 4), *yf = malloc(x.numel * 4);
        gpt2__tensor_f32(a, i, xf);
        gpt2__tensor_f32(b, i, yf);
        for (size_t j = 0; j < x.numel; j++) {
            float want = round(xf[j]);
            bad += memcmp(&want, &yf[j], 4) != 0;
        }
        free(xf);
        free(yf);
        /* F32 tensors are also the float views */
        if ((x.dtype == GPT2_DTYPE_F32) != (x.data != NULL) ||
            (y.dtype == GPT2_DTYPE_F32) != (y.data != NULL))
            bad++;
    }
    return bad == 0 && a->wte == a->tensor[0] && b->wte == b->tensor[0] &&
           b->layer[b->cfg.n_layer - 1].fcproj_b ==
               b->tensor[gpt2__tensor_index(b->cfg.n_layer - 1, GPT2__FCPROJ_B)];
}

/* ------------------------------------------------------------ config.json */

static gpt2_status cfg_from(const char *json, gpt2_config *c) {
    return gpt2__config_from_json(json, strlen(json), c);
}

static void test_config_defaults(void) {
    gpt2_config c, gpt2;
    CHECK_OK(gpt2_config_preset("gpt2", &gpt2));
    CHECK_OK(cfg_from("{}", &c));
    CHECK(same_config(&c, &gpt2));
    CHECK_OK(cfg_from("{\"n_ctx\": 64, \"n_layer\": 3, \"n_embd\": 64, \"n_head\": 4,"
                      "\"vocab_size\": 100, \"layer_norm_epsilon\": 1e-6}", &c));
    CHECK(c.n_ctx == 64 && c.n_layer == 3 && c.n_embd == 64 && c.n_head == 4 &&
          c.vocab_size == 100 && c.layer_norm_epsilon == 1e-6f);
    /* n_positions sizes wpe when both are given */
    CHECK_OK(cfg_from("{\"n_ctx\": 64, \"n_positions\": 128}", &c));
    CHECK(c.n_ctx == 128);
    /* what transformers writes for GPT-2 and variants it allows */
    CHECK_OK(cfg_from("{\"activation_function\": \"gelu_pytorch_tanh\", \"n_inner\": null,"
                      "\"scale_attn_weights\": true, \"model_type\": \"gpt2\","
                      "\"scale_attn_by_inverse_layer_idx\": false, \"n_embd\": 16,"
                      "\"n_head\": 2}", &c));
    CHECK_OK(cfg_from("{\"n_embd\": 16, \"n_head\": 2, \"n_inner\": 64}", &c));
}

static void test_config_rejects(void) {
    gpt2_config c;
    EXPECT(cfg_from("{\"activation_function\": \"relu\"}", &c), GPT2_ERR_FORMAT,
           "\"activation_function\" is 'relu', gpt2c implements only the tanh GELU");
    EXPECT(cfg_from("{\"activation_function\": \"gelu\"}", &c), GPT2_ERR_FORMAT,
           "is 'gelu'");
    EXPECT(cfg_from("{\"n_embd\": 16, \"n_head\": 2, \"n_inner\": 100}", &c),
           GPT2_ERR_FORMAT, "\"n_inner\" is 100, gpt2c implements only null or 4 * n_embd = 64");
    EXPECT(cfg_from("{\"scale_attn_by_inverse_layer_idx\": true}", &c), GPT2_ERR_FORMAT,
           "\"scale_attn_by_inverse_layer_idx\" true is not implemented");
    EXPECT(cfg_from("{\"scale_attn_weights\": false}", &c), GPT2_ERR_FORMAT,
           "\"scale_attn_weights\" false is not implemented");
    EXPECT(cfg_from("{\"model_type\": \"gpt_neo\"}", &c), GPT2_ERR_FORMAT,
           "\"model_type\" is 'gpt_neo', gpt2c implements only \"gpt2\"");
    EXPECT(cfg_from("{\"model_type\": 2}", &c), GPT2_ERR_FORMAT,
           "\"model_type\" is not a string");
    EXPECT(cfg_from("{\"add_cross_attention\": true}", &c), GPT2_ERR_FORMAT,
           "\"add_cross_attention\" true is not implemented");
    EXPECT(cfg_from("{\"n_layer\": \"12\"}", &c), GPT2_ERR_FORMAT,
           "\"n_layer\" must be a positive integer, got a string");
    EXPECT(cfg_from("{\"n_head\": 0}", &c), GPT2_ERR_FORMAT,
           "\"n_head\" must be a positive integer, got 0");
    EXPECT(cfg_from("{\"vocab_size\": 2.5}", &c), GPT2_ERR_FORMAT,
           "\"vocab_size\" must be a positive integer, got 2.5");
    EXPECT(cfg_from("{\"n_positions\": 1e12}", &c), GPT2_ERR_FORMAT,
           "\"n_positions\" must be a positive integer");
    EXPECT(cfg_from("{\"layer_norm_epsilon\": -1}", &c), GPT2_ERR_FORMAT,
           "\"layer_norm_epsilon\" must be a number in (0, 1]");
    EXPECT(cfg_from("{\"n_embd\": 10, \"n_head\": 3}", &c), GPT2_ERR_ARG,
           "config.json: config: n_embd=10 is not a multiple of n_head=3");
    EXPECT(cfg_from("{\"n_layer\": 12,", &c), GPT2_ERR_FORMAT, "config.json: not valid JSON");
    EXPECT(cfg_from("[12]", &c), GPT2_ERR_FORMAT, "config.json: not a JSON object");
}

static void test_config_to_json(void) {
    gpt2_config c;
    CHECK_OK(gpt2_config_preset("gpt2-medium", &c));
    char *text = gpt2__config_to_json(&c);
    CHECK(text != NULL);
    if (!text) return;
    gpt2_config back;
    CHECK_OK(cfg_from(text, &back));
    CHECK(same_config(&c, &back));
    cJSON *j = cJSON_Parse(text);
    CHECK(j != NULL);
    const char *strings[][2] = {{"model_type", "gpt2"}, {"activation_function", "gelu_new"},
                                {"torch_dtype", "float32"}, {"summary_type", "cls_index"}};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(j, strings[i][0]);
        CHECK(cJSON_IsString(v) && strcmp(v->valuestring, strings[i][1]) == 0);
    }
    cJSON *arch = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    CHECK(cJSON_GetArraySize(arch) == 1 &&
          strcmp(cJSON_GetArrayItem(arch, 0)->valuestring, "GPT2LMHeadModel") == 0);
    const char *numbers[][2] = {{"n_layer", "24"}, {"n_head", "16"}, {"n_embd", "1024"},
                                {"n_positions", "1024"}, {"n_ctx", "1024"},
                                {"vocab_size", "50257"}, {"bos_token_id", "50256"},
                                {"eos_token_id", "50256"}, {"attn_pdrop", "0.1"},
                                {"initializer_range", "0.02"}};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(j, numbers[i][0]);
        CHECK(cJSON_IsNumber(v) && v->valuedouble == strtod(numbers[i][1], NULL));
    }
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "n_inner")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "scale_attn_weights")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_cache")));
    /* the epsilon is written as people write it */
    CHECK(strstr(text, "\"layer_norm_epsilon\":\t1e-05,") != NULL);
    cJSON_Delete(j);
    free(text);
    /* a vocabulary without id 50256 gets no bos/eos */
    text = gpt2__config_to_json(&tiny);
    CHECK(text && !strstr(text, "bos_token_id") && !strstr(text, "eos_token_id"));
    free(text);
}

/* ------------------------------------------------- Hugging Face round trip */

static gpt2_model *tiny_model(uint64_t seed) {
    gpt2_model *m = NULL;
    CHECK_OK(gpt2_model_init(&tiny, seed, &m));
    return m;
}

static const char *saved_torch_dtype(const char *dir, char *buf, size_t cap) {
    char path[256], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    buf[0] = 0;
    if (gpt2__read_file(path, &text, &len)) return buf;
    cJSON *j = cJSON_Parse(text);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "torch_dtype");
    if (cJSON_IsString(v)) snprintf(buf, cap, "%s", v->valuestring);
    cJSON_Delete(j);
    free(text);
    return buf;
}

static void test_hf_roundtrip(gpt2_dtype dtype) {
    static const char *torch[] = {"float32", "float16", "bfloat16"};
    float (*round[])(float) = {round_f32, round_f16, round_bf16};
    gpt2_model *a = tiny_model(7), *b = NULL;
    char dir[128], buf[32];
    snprintf(dir, sizeof dir, "%s/hf_%s/nested", root, gpt2_dtype_name(dtype));
    CHECK_OK(gpt2_model_save(a, dir, dtype)); /* creates both levels */
    CHECK(strcmp(saved_torch_dtype(dir, buf, sizeof buf), torch[dtype]) == 0);
    CHECK_OK(gpt2_model_load(dir, &b));
    if (b) {
        CHECK(same_weights(a, b, round[dtype]));
        CHECK(gpt2_model_file_dtype(b) == dtype);
        /* 16-bit matrices are used from the file as they are */
        CHECK(gpt2_model_is_mapped(b));
        CHECK(gpt2_model_weight_dtype(b) == dtype);
        CHECK(b->layer[0].qkv.type == dtype && b->wte_mat.type == dtype);
        CHECK((b->tensor[GPT2__WTE] != NULL) == (dtype == GPT2_DTYPE_F32));
        CHECK(gpt2_model_tokenizer(b) == NULL);
        CHECK(gpt2_model_num_params(b) == gpt2_model_num_params(a));
    }
    gpt2_model_free(b);
    gpt2_model_free(a);
}

/* A mapped model saved over its own file: the rename leaves the mapping
   intact, and the new file loads to the same weights. */
static void test_hf_path_forms_and_resave(void) {
    gpt2_model *a = tiny_model(3), *b = NULL, *c = NULL;
    char dir[128], file[160];
    in_root(dir, sizeof dir, "hf_forms");
    CHECK_OK(gpt2_model_save(a, dir, GPT2_DTYPE_F32));
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    CHECK_OK(gpt2_model_load(file, &b));
    CHECK(b && gpt2_model_is_mapped(b) && same_weights(a, b, round_f32));
    if (b) CHECK_OK(gpt2_model_save(b, dir, GPT2_DTYPE_F32));
    CHECK(b && same_weights(a, b, round_f32));
    CHECK_OK(gpt2_model_load(dir, &c));
    CHECK(c && same_weights(a, c, round_f32));
    gpt2_model_free(c);
    gpt2_model_free(b);
    gpt2_model_free(a);
}

/* ------------------------------------------------ hand-made model files */

/* One tensor of a hand-made safetensors file. */
typedef struct {
    char name[64];
    const char *dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t bytes;
} raw_tensor;

/* Writes a safetensors file as other writers might: any names, dtypes and
   shapes, and extra_pad spaces after the header (unaligning the data). */
static void write_raw(const char *path, const raw_tensor *ts, int n, int extra_pad) {
    size_t cap = 4096 + (size_t)n * 256, len = 0, off = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                ts[i].name, ts[i].dtype);
        for (int d = 0; d < ts[i].ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "",
                                    (long long)ts[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + ts[i].bytes);
        off += ts[i].bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while ((8 + len) % 8) h[len++] = ' ';
    for (int i = 0; i < extra_pad; i++) h[len++] = ' ';
    size_t total = 8 + len + off;
    uint8_t *buf = malloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)len >> (8 * i));
    memcpy(buf + 8, h, len);
    uint8_t *p = buf + 8 + len;
    for (int i = 0; i < n; i++) {
        if (ts[i].bytes) memcpy(p, ts[i].data, ts[i].bytes);
        p += ts[i].bytes;
    }
    CHECK_OK(gpt2__write_file_atomic(path, buf, total));
    free(buf);
    free(h);
}

/* The model's tensors as raw entries named prefix + name, all F32. Room
   for 8 more entries is left at the end. */
static raw_tensor *model_raw(const gpt2_model *m, const char *prefix, int *n) {
    raw_tensor *ts = calloc((size_t)m->n_tensors + 8, sizeof *ts);
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2__tensor_spec *s = &m->specs[i];
        snprintf(ts[i].name, sizeof ts[i].name, "%s%s", prefix, s->name);
        ts[i].dtype = "F32";
        ts[i].ndim = s->ndim;
        ts[i].shape[0] = s->shape[0];
        ts[i].shape[1] = s->shape[1];
        ts[i].data = m->tensor[i];
        ts[i].bytes = s->numel * sizeof(float);
    }
    *n = m->n_tensors;
    return ts;
}

/* A directory with config.json for cfg and the given tensors. */
static void make_dir(const char *dir, const gpt2_config *cfg, const raw_tensor *ts,
                     int n, int extra_pad) {
    char path[256];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = gpt2__config_to_json(cfg);
    write_text(path, text);
    free(text);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_raw(path, ts, n, extra_pad);
}

static void test_hf_name_variants(void) {
    gpt2_model *a = tiny_model(11), *b = NULL;
    int n;
    raw_tensor *ts = model_raw(a, "transformer.", &n);
    static float mask[16 * 16], zero;
    static float head[50 * 8];
    ts[n++] = (raw_tensor){"transformer.h.0.attn.bias", "F32", 4, {1, 1, 16, 16},
                           mask, sizeof mask};
    ts[n++] = (raw_tensor){"transformer.h.1.attn.masked_bias", "F32", 0, {0}, &zero, 4};
    ts[n++] = (raw_tensor){"h.1.attn.bias", "U8", 2, {16, 16}, mask, 256};
    ts[n++] = (raw_tensor){"lm_head.weight", "F32", 2, {50, 8}, head, sizeof head};
    char dir[128];
    in_root(dir, sizeof dir, "variants");
    make_dir(dir, &tiny, ts, n, 0);
    CHECK_OK(gpt2_model_load(dir, &b));
    CHECK(b && same_weights(a, b, round_f32) && gpt2_model_is_mapped(b));
    gpt2_model_free(b);
    free(ts);
    gpt2_model_free(a);
}

/* F32 whose data is not 4-byte aligned, and mixed dtypes: converted into
   an owned block. */
static void test_hf_unaligned_and_mixed(void) {
    gpt2_model *a = tiny_model(5), *b = NULL;
    int n;
    raw_tensor *ts = model_raw(a, "", &n);
    char dir[128];
    in_root(dir, sizeof dir, "unaligned");
    make_dir(dir, &tiny, ts, n, 2);
    CHECK_OK(gpt2_model_load(dir, &b));
    CHECK(b && same_weights(a, b, round_f32) && !gpt2_model_is_mapped(b));
    CHECK(b && gpt2_model_file_dtype(b) == GPT2_DTYPE_F32);
    gpt2_model_free(b);

    /* wte stored as F16, everything else as F32 */
    size_t nw = a->specs[GPT2__WTE].numel;
    uint16_t *h = malloc(nw * 2);
    for (size_t i = 0; i < nw; i++) h[i] = gpt2__f32_to_f16(a->wte[i]);
    ts[GPT2__WTE].dtype = "F16";
    ts[GPT2__WTE].data = h;
    ts[GPT2__WTE].bytes = nw * 2;
    in_root(dir, sizeof dir, "mixed");
    make_dir(dir, &tiny, ts, n, 0);
    CHECK_OK(gpt2_model_load(dir, &b));
    CHECK(b && gpt2_model_is_mapped(b) && gpt2_model_file_dtype(b) == GPT2_DTYPE_F32);
    if (b) {
        /* wte is read in F16 from the file; the rest is F32 */
        float *w = malloc(nw * 4);
        gpt2__tensor_f32(b, GPT2__WTE, w);
        CHECK(w[3] == round_f16(a->wte[3]));
        free(w);
        CHECK(b->wte == NULL && b->wte_mat.type == GPT2_DTYPE_F16);
        CHECK(b->layer[0].qkv.type == GPT2_DTYPE_F32);
        CHECK(memcmp(b->wpe, a->wpe, a->specs[GPT2__WPE].numel * 4) == 0);
        CHECK(b->owned == NULL);
    }
    gpt2_model_free(b);
    free(h);
    free(ts);
    gpt2_model_free(a);
}

/* Builds a directory from the model's tensors after edit() and expects
   loading it to fail with want. */
static void bad_dir(const char *name, void (*edit)(raw_tensor *, int *),
                    const char *want, int line) {
    gpt2_model *a = tiny_model(1);
    int n;
    raw_tensor *ts = model_raw(a, "", &n);
    edit(ts, &n);
    char dir[128];
    in_root(dir, sizeof dir, name);
    make_dir(dir, &tiny, ts, n, 0);
    expect_load_fails(dir, GPT2_ERR_FORMAT, want, line);
    free(ts);
    gpt2_model_free(a);
}

static float extra[4 * 8 * 3 * 8 + 64];
static void drop_lnf_b(raw_tensor *ts, int *n) { (*n)--; (void)ts; }
static void wpe_too_long(raw_tensor *ts, int *n) {
    (void)n;
    ts[GPT2__WPE].shape[0] = 17;
    ts[GPT2__WPE].data = extra;
    ts[GPT2__WPE].bytes = 17 * 8 * 4;
}
static void qkv_transposed(raw_tensor *ts, int *n) {
    (void)n;
    raw_tensor *t = &ts[gpt2__tensor_index(0, GPT2__QKV_W)];
    t->shape[0] = 24;
    t->shape[1] = 8;
}
static void wte_as_i32(raw_tensor *ts, int *n) { (void)n; ts[GPT2__WTE].dtype = "I32"; }
static void add_h5(raw_tensor *ts, int *n) {
    ts[(*n)++] = (raw_tensor){"h.5.ln_1.weight", "F32", 1, {8}, extra, 32};
}
static void add_h7_mask(raw_tensor *ts, int *n) {
    ts[(*n)++] = (raw_tensor){"h.7.attn.bias", "F32", 1, {8}, extra, 32};
}
static void add_classifier(raw_tensor *ts, int *n) {
    ts[(*n)++] = (raw_tensor){"score.weight", "F32", 2, {2, 8}, extra, 64};
}
static void bad_lm_head(raw_tensor *ts, int *n) {
    ts[(*n)++] = (raw_tensor){"lm_head.weight", "F32", 2, {8, 8}, extra, 256};
}
static void wte_twice(raw_tensor *ts, int *n) {
    ts[*n] = ts[GPT2__WTE];
    snprintf(ts[*n].name, sizeof ts[*n].name, "transformer.wte.weight");
    (*n)++;
}

static void test_hf_bad_tensors(void) {
    bad_dir("missing", drop_lnf_b, "model.safetensors: missing tensor 'ln_f.bias'", __LINE__);
    bad_dir("shape", wpe_too_long,
            "tensor 'wpe.weight' has shape [17, 8], expected [16, 8]", __LINE__);
    bad_dir("transposed", qkv_transposed,
            "tensor 'h.0.attn.c_attn.weight' has shape [24, 8], expected [8, 24]", __LINE__);
    bad_dir("dtype", wte_as_i32,
            "tensor 'wte.weight' has dtype I32, expected F32, F16 or BF16", __LINE__);
    bad_dir("h5", add_h5, "unexpected tensor 'h.5.ln_1.weight' (config: n_layer=2", __LINE__);
    bad_dir("h7mask", add_h7_mask, "unexpected tensor 'h.7.attn.bias'", __LINE__);
    bad_dir("score", add_classifier, "unexpected tensor 'score.weight'", __LINE__);
    bad_dir("lmhead", bad_lm_head,
            "tensor 'lm_head.weight' has shape [8, 8], expected [50, 8] (it is tied to wte)",
            __LINE__);
    bad_dir("twice", wte_twice,
            "tensor 'wte.weight' given twice ('wte.weight' and 'transformer.wte.weight')",
            __LINE__);
}

static void test_hf_bad_dirs(void) {
    char dir[128], path[192];
    in_root(dir, sizeof dir, "does-not-exist");
    LOAD_FAILS(dir, GPT2_ERR_IO, "does-not-exist: no such file or directory");
    LOAD_FAILS(NULL, GPT2_ERR_ARG, "path is NULL");
    CHECK(gpt2_model_load(dir, NULL) == GPT2_ERR_ARG);

    in_root(dir, sizeof dir, "empty");
    mkdir(dir, 0755);
    LOAD_FAILS(dir, GPT2_ERR_IO, "empty: no config.json (expected a Hugging Face");

    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, "{\"n_layer\": 2,");
    LOAD_FAILS(dir, GPT2_ERR_FORMAT, "empty: config.json: not valid JSON");
    write_text(path, "{\"n_layer\": 2, \"activation_function\": \"relu\"}");
    LOAD_FAILS(dir, GPT2_ERR_FORMAT, "empty: config.json: \"activation_function\" is 'relu'");
    write_text(path, "{\"n_layer\": 2}");
    LOAD_FAILS(dir, GPT2_ERR_IO, "empty/model.safetensors: no such file");
    snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
    write_text(path, "x");
    LOAD_FAILS(dir, GPT2_ERR_IO, "pytorch_model.bin is not read");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_text(path, "{}");
    LOAD_FAILS(dir, GPT2_ERR_IO, "sharded checkpoints are not supported");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_text(path, "short");
    LOAD_FAILS(dir, GPT2_ERR_FORMAT, "model.safetensors: safetensors: file is 5 bytes");
}

/* A valid model.safetensors cut at every eighth fails with the path. */
static void test_hf_truncated(void) {
    gpt2_model *a = tiny_model(2);
    char dir[128], path[192];
    in_root(dir, sizeof dir, "trunc");
    CHECK_OK(gpt2_model_save(a, dir, GPT2_DTYPE_BF16));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char *data;
    size_t len;
    CHECK_OK(gpt2__read_file(path, &data, &len));
    for (int k = 0; k < 8; k++) {
        CHECK_OK(gpt2__write_file_atomic(path, data, len * (size_t)k / 8));
        LOAD_FAILS(dir, GPT2_ERR_FORMAT, "trunc/model.safetensors: safetensors: ");
    }
    free(data);
    gpt2_model_free(a);
}

static void test_save_errors(void) {
    gpt2_model *a = tiny_model(2);
    char path[128];
    in_root(path, sizeof path, "a-file");
    write_text(path, "x");
    EXPECT(gpt2_model_save(a, path, GPT2_DTYPE_F32), GPT2_ERR_IO, "a-file: not a directory");
    char sub[160];
    snprintf(sub, sizeof sub, "%s/below", path);
    EXPECT(gpt2_model_save(a, sub, GPT2_DTYPE_F32), GPT2_ERR_IO, "mkdir");
    EXPECT(gpt2_model_save(a, root, (gpt2_dtype)9), GPT2_ERR_ARG, "unknown dtype 9");
    EXPECT(gpt2_model_save(NULL, root, GPT2_DTYPE_F32), GPT2_ERR_ARG, "NULL");
    EXPECT(gpt2_model_save_llmc(a, "/nonexistent-dir/x.bin"), GPT2_ERR_IO,
           "/nonexistent-dir/x.bin.tmp");
    gpt2_model_free(a);
}

/* --------------------------------------------------------------- tokenizer */

static void copy_file(const char *from, const char *to) {
    char *data;
    size_t len;
    CHECK_OK(gpt2__read_file(from, &data, &len));
    if (data) CHECK_OK(gpt2__write_file_atomic(to, data, len));
    free(data);
}

/* GPT-2's own vocabulary, beside a model whose vocab_size is 50257 (a
   narrow one, to stay small) or one too small for it. */
static void test_tokenizer(void) {
    gpt2_config c = tiny;
    c.vocab_size = 50257;
    gpt2_model *a = NULL, *b = NULL, *d = NULL;
    CHECK_OK(gpt2_model_init(&c, 9, &a));
    char dir[128], again[128], path[192];
    in_root(dir, sizeof dir, "with_tok");
    in_root(again, sizeof again, "with_tok_again");
    CHECK_OK(gpt2_model_save(a, dir, GPT2_DTYPE_F32));
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    copy_file("assets/tokenizer/vocab.json", path);
    LOAD_FAILS(dir, GPT2_ERR_IO, "with_tok: has vocab.json but no merges.txt");
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    copy_file("assets/tokenizer/merges.txt", path);
    CHECK_OK(gpt2_model_load(dir, &b));
    CHECK(b && gpt2_model_tokenizer(b) != NULL);
    if (b && gpt2_model_tokenizer(b))
        CHECK(gpt2_tokenizer_vocab_size(gpt2_model_tokenizer(b)) == 50257);
    /* saving writes the tokenizer too */
    if (b) CHECK_OK(gpt2_model_save(b, again, GPT2_DTYPE_F16));
    CHECK_OK(gpt2_model_load(again, &d));
    CHECK(d && gpt2_model_tokenizer(d) != NULL);
    gpt2_model_free(d);
    gpt2_model_free(b);

    /* a model with fewer ids than the tokenizer has */
    gpt2_model_free(a);
    c.vocab_size = 50000;
    CHECK_OK(gpt2_model_init(&c, 9, &a));
    in_root(dir, sizeof dir, "small_vocab");
    CHECK_OK(gpt2_model_save(a, dir, GPT2_DTYPE_BF16));
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    copy_file("assets/tokenizer/vocab.json", path);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    copy_file("assets/tokenizer/merges.txt", path);
    LOAD_FAILS(dir, GPT2_ERR_FORMAT,
               "small_vocab: the tokenizer has 50257 tokens but config.json vocab_size is 50000");
    gpt2_model_free(a);
}

/* ------------------------------------------------------------------ llm.c */

static size_t llmc_floats(const gpt2_config *c, int Vp) {
    size_t C = (size_t)c->n_embd, L = (size_t)c->n_layer;
    return (size_t)Vp * C + (size_t)c->n_ctx * C + L * (2 * C + 3 * C * C + 3 * C + C * C +
           C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C;
}

static void test_llmc_roundtrip(void) {
    gpt2_model *a = tiny_model(21), *b = NULL;
    char path[128];
    in_root(path, sizeof path, "tiny.bin");
    CHECK_OK(gpt2_model_save_llmc(a, path));
    char *data;
    size_t len;
    CHECK_OK(gpt2__read_file(path, &data, &len));
    if (!data) return;
    const int32_t *hd = (const int32_t *)data;
    const float *p = (const float *)(data + 1024);
    int C = 8, V = 50, Vp = 128, T = 16;
    CHECK(hd[0] == 20240326 && hd[1] == 3 && hd[2] == T && hd[3] == V && hd[4] == 2 &&
          hd[5] == 2 && hd[6] == C && hd[7] == Vp && hd[8] == 0 && hd[255] == 0);
    CHECK(len == 1024 + 4 * llmc_floats(&tiny, Vp));
    /* wte rows, then zero padding rows */
    CHECK(memcmp(p, a->wte, (size_t)V * C * 4) == 0);
    int nonzero = 0;
    for (int i = V * C; i < Vp * C; i++) nonzero += p[i] != 0.0f;
    CHECK(nonzero == 0);
    /* after wpe and ln_1 weight/bias of both layers: qkvw of layer 0, as
       PyTorch's Linear (3C, C): row o, column i is Conv1D's [i][o] */
    const float *qkv = p + (size_t)Vp * C + (size_t)T * C + 4 * C;
    const float *w = a->layer[0].qkv_w;
    int bad = 0;
    for (int o = 0; o < 3 * C; o++)
        for (int i = 0; i < C; i++) bad += qkv[o * C + i] != w[i * 3 * C + o];
    CHECK(bad == 0);
    /* the last floats are ln_f weight (ones) and bias (zeros) */
    const float *end = (const float *)(data + len);
    CHECK(end[-2 * C] == 1.0f && end[-1] == 0.0f);

    CHECK_OK(gpt2_model_load(path, &b));
    CHECK(b && same_weights(a, b, round_f32));
    CHECK(b && !gpt2_model_is_mapped(b) && gpt2_model_file_dtype(b) == GPT2_DTYPE_F32);
    gpt2_model_free(b);

    /* the same file in bfloat16: llm.c's version 5 */
    size_t n = (len - 1024) / 4;
    char *bf = malloc(1024 + 2 * n);
    memcpy(bf, data, 1024);
    ((int32_t *)bf)[1] = 5;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = gpt2__f32_to_bf16(p[i]);
        memcpy(bf + 1024 + 2 * i, &h, 2);
    }
    char path5[128];
    in_root(path5, sizeof path5, "tiny_bf16.bin");
    CHECK_OK(gpt2__write_file_atomic(path5, bf, 1024 + 2 * n));
    CHECK_OK(gpt2_model_load(path5, &b));
    CHECK(b && same_weights(a, b, round_bf16));
    CHECK(b && gpt2_model_file_dtype(b) == GPT2_DTYPE_BF16);
    gpt2_model_free(b);
    free(bf);
    free(data);
    gpt2_model_free(a);
}

/* Writes a copy of the llm.c file with header int k set to v. */
static void llmc_with_header(const char *from, const char *to, int k, int32_t v) {
    char *data;
    size_t len;
    CHECK_OK(gpt2__read_file(from, &data, &len));
    if (!data) return;
    memcpy(data + 4 * k, &v, 4);
    CHECK_OK(gpt2__write_file_atomic(to, data, len));
    free(data);
}

static void test_llmc_bad(void) {
    gpt2_model *a = tiny_model(4);
    char good[128], bad[128];
    in_root(good, sizeof good, "good.bin");
    in_root(bad, sizeof bad, "bad.bin");
    CHECK_OK(gpt2_model_save_llmc(a, good));
    gpt2_model_free(a);
    llmc_with_header(good, bad, 0, 12345);
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "bad.bin: bad magic 12345, expected 20240326");
    llmc_with_header(good, bad, 0, 20240520);
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "this is an llm.c token shard, not a model");
    llmc_with_header(good, bad, 1, 4);
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "llm.c version 4, expected 3 (float32) or 5");
    llmc_with_header(good, bad, 6, -8);
    LOAD_FAILS(bad, GPT2_ERR_ARG, "bad.bin: config: every size must be positive");
    llmc_with_header(good, bad, 5, 3);
    LOAD_FAILS(bad, GPT2_ERR_ARG, "n_embd=8 is not a multiple of n_head=3");
    llmc_with_header(good, bad, 7, 49);
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "padded vocab Vp=49, expected V=50 <= Vp");
    gpt2_config three = tiny;
    three.n_layer = 3;
    char want[128];
    snprintf(want, sizeof want, "expected %zu for maxT=16 V=50 Vp=128 L=3 NH=2 C=8 (float32)",
             1024 + 4 * llmc_floats(&three, 128));
    llmc_with_header(good, bad, 4, 3);
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, want);
    llmc_with_header(good, bad, 4, 4000);
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "file is");
    llmc_with_header(good, bad, 7, 1 << 30);
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "padded vocab Vp=1073741824");

    char *data;
    size_t len;
    CHECK_OK(gpt2__read_file(good, &data, &len));
    for (int k = 0; k < 8; k++) {
        CHECK_OK(gpt2__write_file_atomic(bad, data, len * (size_t)k / 8));
        LOAD_FAILS(bad, GPT2_ERR_FORMAT, "bad.bin: file is");
    }
    /* one byte too many */
    char *more = malloc(len + 1);
    memcpy(more, data, len);
    more[len] = 0;
    CHECK_OK(gpt2__write_file_atomic(bad, more, len + 1));
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "expected");
    free(more);
    free(data);
    /* a file that is neither */
    write_text(bad, "hello, this is not a model at all");
    LOAD_FAILS(bad, GPT2_ERR_FORMAT, "shorter than the 1024-byte llm.c header");
}

/* A Hugging Face model saved as llm.c and back, through bf16 on the way in:
   the paths compose. */
static void test_hf_to_llmc_to_hf(void) {
    gpt2_model *a = tiny_model(30), *b = NULL, *c = NULL, *d = NULL;
    char dir[128], bin[128], dir2[128];
    in_root(dir, sizeof dir, "chain_hf");
    in_root(bin, sizeof bin, "chain.bin");
    in_root(dir2, sizeof dir2, "chain_hf2");
    CHECK_OK(gpt2_model_save(a, dir, GPT2_DTYPE_BF16));
    CHECK_OK(gpt2_model_load(dir, &b));
    if (b) CHECK_OK(gpt2_model_save_llmc(b, bin));
    CHECK_OK(gpt2_model_load(bin, &c));
    if (c) CHECK_OK(gpt2_model_save(c, dir2, GPT2_DTYPE_F32));
    CHECK_OK(gpt2_model_load(dir2, &d));
    CHECK(d && same_weights(a, d, round_bf16));
    gpt2_model_free(d);
    gpt2_model_free(c);
    gpt2_model_free(b);
    gpt2_model_free(a);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/gpt2c_io_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_config_defaults();
    test_config_rejects();
    test_config_to_json();
    test_hf_roundtrip(GPT2_DTYPE_F32);
    test_hf_roundtrip(GPT2_DTYPE_F16);
    test_hf_roundtrip(GPT2_DTYPE_BF16);
    test_hf_path_forms_and_resave();
    test_hf_name_variants();
    test_hf_unaligned_and_mixed();
    test_hf_bad_tensors();
    test_hf_bad_dirs();
    test_hf_truncated();
    test_save_errors();
    test_tokenizer();
    test_llmc_roundtrip();
    test_llmc_bad();
    test_hf_to_llmc_to_hf();
    rm_rf(root);
    CHECK(access(root, F_OK) != 0);
    return CHECK_DONE();
}
