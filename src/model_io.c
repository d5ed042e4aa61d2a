/* model_io.c: a model to and from files. Hugging Face directories
   (config.json + model.safetensors, with vocab.json + merges.txt) and
   llm.c checkpoints (.bin, magic 20240326). gpt2c keeps weights in Hugging
   Face's Conv1D layout (y = x W + b, W is (in, out)); llm.c stores PyTorch
   Linear weights (out, in), so its 2-D tensors are transposed on the way
   in and out. docs/formats.md lays out every byte. */
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LLMC_MAGIC 20240326
#define LLMC_TOKENS_MAGIC 20240520 /* llm.c token shards, not models */
#define LLMC_HEADER_INTS 256
#define LLMC_VERSION_F32 3
#define LLMC_VERSION_BF16 5
/* llm.c pads wte to a multiple of 128 rows for its GPU kernels */
#define LLMC_VOCAB_ALIGN 128

/* Puts "prefix: " before the message a callee recorded. */
static gpt2_status with_prefix(gpt2_status st, const char *prefix) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", gpt2_last_error());
    return gpt2__fail(st, "%s: %s", prefix, msg);
}

/* ============================================================ config.json */

/* What a JSON value is, for messages: its number, or its type. */
static const char *json_desc(const cJSON *v, char *buf, size_t cap) {
    if (cJSON_IsNumber(v)) snprintf(buf, cap, "%.17g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(buf, cap, "a string");
    else if (cJSON_IsBool(v)) snprintf(buf, cap, "a boolean");
    else if (cJSON_IsNull(v)) snprintf(buf, cap, "null");
    else snprintf(buf, cap, "an %s", cJSON_IsArray(v) ? "array" : "object");
    return buf;
}

/* An integer key of config.json: absent keeps *out (the default). */
static gpt2_status json_int(const cJSON *root, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    char buf[64];
    if (!v) return GPT2_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < 1 || v->valuedouble > 2147483647.0)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "config.json: \"%s\" must be a positive integer, got %s",
                          key, json_desc(v, buf, sizeof buf));
    *out = (int)v->valuedouble;
    return GPT2_OK;
}

static bool json_true(const cJSON *root, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, key));
}

static bool json_false(const cJSON *root, const char *key) {
    return cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(root, key));
}

static gpt2_status check_string_key(const cJSON *root, const char *key,
                                    const char *const *allowed, const char *what) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) return GPT2_OK;
    if (cJSON_IsString(v))
        for (int i = 0; allowed[i]; i++)
            if (strcmp(v->valuestring, allowed[i]) == 0) return GPT2_OK;
    return gpt2__fail(GPT2_ERR_FORMAT, "config.json: \"%s\" is %s%s%s, gpt2c "
                      "implements only %s", key, cJSON_IsString(v) ? "'" : "",
                      cJSON_IsString(v) ? v->valuestring : "not a string",
                      cJSON_IsString(v) ? "'" : "", what);
}

/* The GPT2Config options that change the computation: gpt2c implements
   GPT-2 as released, so each other choice is refused by name rather than
   silently computed wrong. */
static gpt2_status check_supported(const cJSON *root, const gpt2_config *c) {
    static const char *const gelu[] = {"gelu_new", "gelu_pytorch_tanh", NULL};
    static const char *const gpt2[] = {"gpt2", NULL};
    gpt2_status st;
    if ((st = check_string_key(root, "activation_function", gelu,
                               "the tanh GELU (\"gelu_new\" or \"gelu_pytorch_tanh\")")))
        return st;
    if ((st = check_string_key(root, "model_type", gpt2, "\"gpt2\""))) return st;
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(root, "n_inner");
    char buf[64];
    if (inner && !cJSON_IsNull(inner) &&
        !(cJSON_IsNumber(inner) && inner->valuedouble == 4.0 * c->n_embd))
        return gpt2__fail(GPT2_ERR_FORMAT, "config.json: \"n_inner\" is %s, gpt2c "
                          "implements only null or 4 * n_embd = %d",
                          json_desc(inner, buf, sizeof buf), 4 * c->n_embd);
    if (json_true(root, "scale_attn_by_inverse_layer_idx"))
        return gpt2__fail(GPT2_ERR_FORMAT, "config.json: "
                          "\"scale_attn_by_inverse_layer_idx\" true is not "
                          "implemented (only false)");
    if (json_false(root, "scale_attn_weights"))
        return gpt2__fail(GPT2_ERR_FORMAT, "config.json: \"scale_attn_weights\" "
                          "false is not implemented (only true: scores / "
                          "sqrt(head size))");
    if (json_true(root, "add_cross_attention"))
        return gpt2__fail(GPT2_ERR_FORMAT, "config.json: \"add_cross_attention\" "
                          "true is not implemented (decoder-only GPT-2)");
    return GPT2_OK;
}

static gpt2_status read_config(const cJSON *root, gpt2_config *c) {
    /* Hugging Face GPT2Config defaults for missing keys */
    *c = (gpt2_config){12, 12, 768, 1024, 50257, 1e-5f};
    gpt2_status st;
    if ((st = json_int(root, "n_layer", &c->n_layer)) ||
        (st = json_int(root, "n_head", &c->n_head)) ||
        (st = json_int(root, "n_embd", &c->n_embd)) ||
        (st = json_int(root, "vocab_size", &c->vocab_size)))
        return st;
    /* n_positions sizes wpe; configs from before it existed say n_ctx */
    const char *pos_key = cJSON_GetObjectItemCaseSensitive(root, "n_positions")
                              ? "n_positions" : "n_ctx";
    if ((st = json_int(root, pos_key, &c->n_ctx))) return st;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || eps->valuedouble > 1)
            return gpt2__fail(GPT2_ERR_FORMAT, "config.json: \"layer_norm_epsilon\" "
                              "must be a number in (0, 1]");
        c->layer_norm_epsilon = (float)eps->valuedouble;
    }
    return check_supported(root, c);
}

gpt2_status gpt2__config_from_json(const char *json, size_t len, gpt2_config *c) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return gpt2__fail(GPT2_ERR_FORMAT, "config.json: not valid JSON");
    gpt2_status st = GPT2_OK;
    if (!cJSON_IsObject(root))
        st = gpt2__fail(GPT2_ERR_FORMAT, "config.json: not a JSON object");
    else
        st = read_config(root, c);
    cJSON_Delete(root);
    if (!st && (st = gpt2_config_check(c))) return with_prefix(st, "config.json");
    return st;
}

/* The shortest decimal that reads back as the same float, so 1e-5f is
   written "1e-05" rather than "9.99999974737875e-06". */
static double shortest_float(float f) {
    char buf[32];
    for (int p = 1; p < 10; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static const char *torch_dtype(gpt2_dtype d) {
    return d == GPT2_DTYPE_F16 ? "float16" : d == GPT2_DTYPE_BF16 ? "bfloat16" : "float32";
}

/* config.json as transformers writes it for GPT2LMHeadModel, so that
   GPT2LMHeadModel.from_pretrained reads it unchanged. */
static char *config_json(const gpt2_config *c, gpt2_dtype dtype) {
    cJSON *r = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(r, "architectures");
    /* every key or none: a config missing one would load differently */
    bool ok = cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    ok &= !!cJSON_AddStringToObject(r, "model_type", "gpt2");
    ok &= !!cJSON_AddStringToObject(r, "activation_function", "gelu_new");
    ok &= !!cJSON_AddNumberToObject(r, "n_layer", c->n_layer);
    ok &= !!cJSON_AddNumberToObject(r, "n_head", c->n_head);
    ok &= !!cJSON_AddNumberToObject(r, "n_embd", c->n_embd);
    ok &= !!cJSON_AddNumberToObject(r, "n_positions", c->n_ctx);
    ok &= !!cJSON_AddNumberToObject(r, "n_ctx", c->n_ctx);
    ok &= !!cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
    ok &= !!cJSON_AddNumberToObject(r, "layer_norm_epsilon",
                                    shortest_float(c->layer_norm_epsilon));
    ok &= !!cJSON_AddNumberToObject(r, "initializer_range", 0.02);
    /* <|endoftext|> is id 50256 only in vocabularies that have it */
    if (c->vocab_size > 50256) {
        ok &= !!cJSON_AddNumberToObject(r, "bos_token_id", 50256);
        ok &= !!cJSON_AddNumberToObject(r, "eos_token_id", 50256);
    }
    ok &= !!cJSON_AddNullToObject(r, "n_inner");
    ok &= !!cJSON_AddNumberToObject(r, "attn_pdrop", 0.1);
    ok &= !!cJSON_AddNumberToObject(r, "embd_pdrop", 0.1);
    ok &= !!cJSON_AddNumberToObject(r, "resid_pdrop", 0.1);
    ok &= !!cJSON_AddNullToObject(r, "summary_activation");
    ok &= !!cJSON_AddNumberToObject(r, "summary_first_dropout", 0.1);
    ok &= !!cJSON_AddTrueToObject(r, "summary_proj_to_labels");
    ok &= !!cJSON_AddStringToObject(r, "summary_type", "cls_index");
    ok &= !!cJSON_AddTrueToObject(r, "summary_use_proj");
    ok &= !!cJSON_AddTrueToObject(r, "use_cache");
    ok &= !!cJSON_AddTrueToObject(r, "scale_attn_weights");
    ok &= !!cJSON_AddFalseToObject(r, "scale_attn_by_inverse_layer_idx");
    ok &= !!cJSON_AddFalseToObject(r, "reorder_and_upcast_attn");
    ok &= !!cJSON_AddStringToObject(r, "torch_dtype", torch_dtype(dtype));
    if (dtype == GPT2_DTYPE_Q8_0 || dtype == GPT2_DTYPE_Q4_0) {
        /* gpt2c's own formats (docs/formats.md): the matrices are U8
           tensors of quantized rows; Hugging Face cannot read them */
        ok &= !!cJSON_AddStringToObject(r, "gpt2c_dtype", gpt2_dtype_name(dtype));
        ok &= !!cJSON_AddStringToObject(r, "gpt2c_wte_dtype",
                                        gpt2_dtype_name(gpt2__wte_dtype(dtype)));
        ok &= !!cJSON_AddNumberToObject(r, "gpt2c_block_size", GPT2__QBLOCK);
    }
    ok &= !!cJSON_AddTrueToObject(r, "tie_word_embeddings");
    char *text = ok ? cJSON_Print(r) : NULL;
    cJSON_Delete(r);
    if (!text) gpt2__fail(GPT2_ERR_NOMEM, "config.json: out of memory");
    return text;
}

char *gpt2__config_to_json(const gpt2_config *c) {
    return config_json(c, GPT2_DTYPE_F32);
}

/* ====================================================== Hugging Face load */

/* "transformer.h.0.ln_1.weight" -> "h.0.ln_1.weight": GPT2LMHeadModel
   prefixes its body, GPT2Model does not. */
static const char *strip_prefix(const char *name) {
    static const char prefix[] = "transformer.";
    return strncmp(name, prefix, sizeof prefix - 1) == 0 ? name + sizeof prefix - 1 : name;
}

/* The causal-mask buffers h.N.attn.bias and h.N.attn.masked_bias that
   older transformers saved with the weights: not parameters. *layer
   receives N. */
static bool is_mask_buffer(const char *name, int *layer) {
    int n = 0, end = 0;
    if (sscanf(name, "h.%d.attn.%n", &n, &end) != 1 || end == 0) return false;
    *layer = n;
    return strcmp(name + end, "bias") == 0 || strcmp(name + end, "masked_bias") == 0;
}

static int spec_index(const gpt2_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->specs[i].name, name) == 0) return i;
    return -1;
}

static bool same_shape(const gpt2__st_tensor *t, const gpt2__tensor_spec *s) {
    if (t->ndim != s->ndim) return false;
    for (int d = 0; d < s->ndim; d++)
        if (t->shape[d] != s->shape[d]) return false;
    return true;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "",
                              (long long)shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* A quantized matrix: U8, (stored rows, bytes per row). */
static gpt2_status check_quantized(const char *path, const gpt2__st_tensor *t,
                                   const gpt2_model *m, int i, gpt2_dtype qd) {
    gpt2_dtype dt;
    bool tr;
    size_t rows, rb;
    gpt2__matrix_target(m, i, qd, &dt, &tr, &rows, &rb);
    if (t->dtype != GPT2__ST_U8 || t->ndim != 2 || (size_t)t->shape[0] != rows ||
        (size_t)t->shape[1] != rb) {
        char got[128];
        shape_str(got, sizeof got, t->ndim, t->shape);
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: tensor '%s' is %s %s, "
                          "expected U8 [%zu, %zu] (%s rows, config.json "
                          "gpt2c_dtype %s)", path, t->name,
                          gpt2__st_dtype_name(t->dtype), got, rows, rb,
                          gpt2_dtype_name(dt), gpt2_dtype_name(qd));
    }
    return GPT2_OK;
}

static gpt2_status check_tensor(const char *path, const gpt2__st_tensor *t,
                                const gpt2__tensor_spec *s) {
    if (t->dtype != GPT2__ST_F32 && t->dtype != GPT2__ST_F16 && t->dtype != GPT2__ST_BF16)
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: tensor '%s' has dtype "
                          "%s, expected F32, F16 or BF16", path, t->name,
                          gpt2__st_dtype_name(t->dtype));
    if (!same_shape(t, s)) {
        char got[128], want[128];
        int64_t w[2] = {s->shape[0], s->shape[1]};
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(want, sizeof want, s->ndim, w);
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: tensor '%s' has shape "
                          "%s, expected %s", path, t->name, got, want);
    }
    return GPT2_OK;
}

/* lm_head.weight is tied to wte (the model computes logits with wte);
   a saved copy is accepted if it has wte's shape and is otherwise unused. */
static gpt2_status check_lm_head(const char *path, const gpt2_model *m,
                                 const gpt2__st_tensor *t) {
    if (!same_shape(t, &m->specs[GPT2__WTE])) {
        char got[128];
        shape_str(got, sizeof got, t->ndim, t->shape);
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: tensor '%s' has shape "
                          "%s, expected [%d, %d] (it is tied to wte)", path,
                          t->name, got, m->cfg.vocab_size, m->cfg.n_embd);
    }
    return GPT2_OK;
}

/* Matches every tensor in the file to a parameter: src[i] receives the
   file's tensor for spec i. Buffers and the tied head are skipped;
   anything else unknown is an error, as is a parameter given twice. */
static gpt2_status match_tensors(const char *path, const gpt2_model *m,
                                 const gpt2__st_tensor **src, gpt2_dtype qd) {
    const gpt2__st_file *f = &m->st;
    gpt2_status st;
    for (int j = 0; j < f->n; j++) {
        const gpt2__st_tensor *t = &f->t[j];
        const char *name = strip_prefix(t->name);
        int layer, i = spec_index(m, name);
        if (i < 0 && is_mask_buffer(name, &layer) && layer >= 0 &&
            layer < m->cfg.n_layer)
            continue;
        if (i < 0 && strcmp(t->name, "lm_head.weight") == 0) {
            if ((st = check_lm_head(path, m, t))) return st;
            continue;
        }
        if (i < 0)
            return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: unexpected tensor "
                              "'%s' (config: n_layer=%d; not a GPT-2 parameter of "
                              "this config)", path, t->name, m->cfg.n_layer);
        if (src[i])
            return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: tensor '%s' given "
                              "twice ('%s' and '%s')", path, name, src[i]->name,
                              t->name);
        bool q = qd != GPT2_DTYPE_F32 && gpt2__is_matrix(m, i);
        if ((st = q ? check_quantized(path, t, m, i, qd)
                    : check_tensor(path, t, &m->specs[i])))
            return st;
        src[i] = t;
    }
    for (int i = 0; i < m->n_tensors; i++)
        if (!src[i])
            return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: missing tensor '%s' "
                              "(expected for n_layer=%d)", path, m->specs[i].name,
                              m->cfg.n_layer);
    return GPT2_OK;
}

/* Data at an address aligned for its element can be used in place. */
static bool aligned(const gpt2__st_file *f, const gpt2__st_tensor *t, size_t a) {
    return ((uintptr_t)(f->data + t->begin) % a) == 0;
}

/* Points each tensor at the file's bytes where it can be used as it is:
   F32 tensors, F16/BF16 weight matrices (read by the kernels in 16 bits)
   and quantized matrices. What remains (16-bit biases, norms, wpe, or a
   misaligned tensor) is converted to float32 in an owned block. qd is the
   quantized format of the file's matrices, or F32 for none. */
static gpt2_status bind_tensors(gpt2_model *m, const gpt2__st_tensor **src,
                                gpt2_dtype qd) {
    bool one_dtype = true, any_mapped = false, need_f32 = false;
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2__st_tensor *t = src[i];
        const void *p = m->st.data + t->begin;
        bool matrix = gpt2__is_matrix(m, i);
        one_dtype &= t->dtype == src[0]->dtype;
        if (t->dtype == GPT2__ST_U8) {
            gpt2_dtype dt;
            bool tr;
            size_t rows, rb;
            gpt2__matrix_target(m, i, qd, &dt, &tr, &rows, &rb);
            m->stored[i] = (gpt2__stored){dt, tr, p, rows * rb};
        } else if (t->dtype == GPT2__ST_F32 && aligned(&m->st, t, 4)) {
            m->tensor[i] = (float *)p;
        } else if (matrix && (t->dtype == GPT2__ST_F16 || t->dtype == GPT2__ST_BF16) &&
                   aligned(&m->st, t, 2)) {
            gpt2_dtype dt = t->dtype == GPT2__ST_F16 ? GPT2_DTYPE_F16 : GPT2_DTYPE_BF16;
            m->stored[i] = (gpt2__stored){dt, false, p, t->end - t->begin};
        } else {
            need_f32 = true;
            continue;
        }
        any_mapped = true;
    }
    gpt2__st_dtype d0 = one_dtype ? src[0]->dtype : GPT2__ST_F32;
    m->file_dtype = qd != GPT2_DTYPE_F32 ? qd
                    : d0 == GPT2__ST_F16 ? GPT2_DTYPE_F16
                    : d0 == GPT2__ST_BF16 ? GPT2_DTYPE_BF16 : GPT2_DTYPE_F32;
    if (need_f32) {
        /* canonical offsets in a block of all parameters: only the pages
           of the tensors converted here are ever touched */
        m->owned = gpt2__alloc_huge(m->n_params * sizeof(float), "model parameters");
        if (!m->owned) return GPT2_ERR_NOMEM;
        for (int i = 0; i < m->n_tensors; i++) {
            if (m->tensor[i] || m->stored[i].data) continue;
            m->tensor[i] = m->owned + m->specs[i].offset;
            gpt2_status st = gpt2__st_read_f32(&m->st, src[i], m->tensor[i]);
            if (st) return st;
        }
    }
    m->mapped = any_mapped;
    if (!any_mapped) gpt2__st_close(&m->st); /* nothing points into the file */
    gpt2__model_bind(m);
    m->weight_dtype = m->layer[0].qkv.type;
    return GPT2_OK;
}

/* config.json's "gpt2c_dtype": the format of a quantized model's
   matrices, or F32 when absent (the tensors' own dtypes then say it). */
static gpt2_status read_quant_dtype(const char *json, size_t len, gpt2_dtype *qd) {
    *qd = GPT2_DTYPE_F32;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return GPT2_OK; /* reported by the config reader */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "gpt2c_dtype");
    gpt2_status st = GPT2_OK;
    if (v && (!cJSON_IsString(v) || gpt2_dtype_parse(v->valuestring, qd) ||
              (*qd != GPT2_DTYPE_Q8_0 && *qd != GPT2_DTYPE_Q4_0)))
        st = gpt2__fail(GPT2_ERR_FORMAT, "config.json: \"gpt2c_dtype\" must be "
                        "\"Q8_0\" or \"Q4_0\"");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(root, "gpt2c_block_size");
    if (!st && v && bs && !(cJSON_IsNumber(bs) && bs->valuedouble == GPT2__QBLOCK))
        st = gpt2__fail(GPT2_ERR_FORMAT, "config.json: \"gpt2c_block_size\" must "
                        "be %d", GPT2__QBLOCK);
    cJSON_Delete(root);
    return st;
}

static gpt2_status load_config_file(const char *dir, gpt2_config *c, gpt2_dtype *qd) {
    char path[4096];
    gpt2_status st = gpt2__join_path(path, sizeof path, dir, "config.json");
    if (st) return st;
    if (!gpt2__file_exists(path))
        return gpt2__fail(GPT2_ERR_IO, "model_load: %s: no config.json (expected a "
                          "Hugging Face GPT-2 directory)", dir);
    char *text;
    size_t len;
    if ((st = gpt2__read_file(path, &text, &len))) return st;
    st = gpt2__config_from_json(text, len, c);
    if (!st) st = read_quant_dtype(text, len, qd);
    free(text);
    return st ? with_prefix(st, dir) : GPT2_OK;
}

static bool has_file(const char *dir, const char *name) {
    char path[4096];
    return gpt2__join_path(path, sizeof path, dir, name) == GPT2_OK &&
           gpt2__file_exists(path);
}

/* vocab.json + merges.txt (or OpenAI's encoder.json + vocab.bpe) when the
   directory has them; a directory with neither has no tokenizer. */
static gpt2_status load_tokenizer(const char *dir, gpt2_model *m) {
    bool hf_v = has_file(dir, "vocab.json"), hf_m = has_file(dir, "merges.txt");
    bool oa = has_file(dir, "encoder.json") && has_file(dir, "vocab.bpe");
    if (hf_v != hf_m && !oa)
        return gpt2__fail(GPT2_ERR_IO, "model_load: %s: has %s but no %s (the "
                          "tokenizer needs both)", dir,
                          hf_v ? "vocab.json" : "merges.txt",
                          hf_v ? "merges.txt" : "vocab.json");
    if (!(hf_v && hf_m) && !oa) return GPT2_OK;
    gpt2_tokenizer *tok;
    gpt2_status st = gpt2_tokenizer_load(dir, &tok);
    if (st) return st;
    int nv = gpt2_tokenizer_vocab_size(tok);
    if (nv > m->cfg.vocab_size) {
        gpt2_tokenizer_free(tok);
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: the tokenizer has %d "
                          "tokens but config.json vocab_size is %d", dir, nv,
                          m->cfg.vocab_size);
    }
    m->tok = tok;
    return GPT2_OK;
}

/* A hint for the directories that hold weights in a form not read here. */
static gpt2_status no_safetensors(const char *dir, const char *st_path) {
    const char *hint = "";
    if (has_file(dir, "model.safetensors.index.json"))
        hint = " (sharded checkpoints are not supported: save as one file)";
    else if (has_file(dir, "pytorch_model.bin"))
        hint = " (pytorch_model.bin is not read: save with safetensors)";
    return gpt2__fail(GPT2_ERR_IO, "model_load: %s: no such file%s", st_path, hint);
}

/* A Hugging Face directory whose weights are in st_path. */
static gpt2_status load_hf_files(const char *dir, const char *st_path,
                                 gpt2_model **out) {
    *out = NULL;
    gpt2_config cfg;
    gpt2_dtype qd;
    gpt2_status st = load_config_file(dir, &cfg, &qd);
    if (st) return st;
    if (!gpt2__file_exists(st_path)) return no_safetensors(dir, st_path);
    gpt2_model *m;
    if ((st = gpt2__model_alloc(&cfg, false, &m))) return with_prefix(st, dir);
    const gpt2__st_tensor **src = NULL;
    if (!(st = gpt2__st_open(st_path, &m->st))) {
        src = gpt2__calloc((size_t)m->n_tensors, sizeof *src, "model_load");
        st = src ? match_tensors(st_path, m, src, qd) : GPT2_ERR_NOMEM;
    }
    if (!st && qd != GPT2_DTYPE_F32 && m->cfg.n_embd % GPT2__QBLOCK)
        st = gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: gpt2c_dtype %s needs "
                        "n_embd %% %d == 0 (n_embd is %d)", dir,
                        gpt2_dtype_name(qd), GPT2__QBLOCK, m->cfg.n_embd);
    if (!st) st = bind_tensors(m, src, qd);
    free(src);
    if (!st) st = load_tokenizer(dir, m);
    if (st) {
        gpt2_model_free(m);
        return st;
    }
    *out = m;
    return GPT2_OK;
}

gpt2_status gpt2__model_load_hf(const char *dir, gpt2_model **out) {
    char st_path[4096];
    *out = NULL;
    gpt2_status st = gpt2__join_path(st_path, sizeof st_path, dir, "model.safetensors");
    if (st) return st;
    return load_hf_files(dir, st_path, out);
}

/* ============================================================ llm.c files */

/* The llm.c header fields, in file order after magic and version. */
typedef struct {
    int version, maxT, V, L, NH, C, Vp;
} llmc_header;

/* llm.c's parameter count: gpt2c's, with wte padded to Vp rows. */
static bool llmc_numel(const gpt2_config *c, int Vp, size_t *out) {
    size_t n, base = 0, pad;
    gpt2__tensor_spec *specs = gpt2__calloc((size_t)GPT2__N_TENSORS(c->n_layer),
                                            sizeof *specs, "model_load");
    if (!specs) return false;
    n = gpt2__tensor_specs(c, specs);
    free(specs);
    bool ok = gpt2__mul_ok((size_t)(Vp - c->vocab_size), (size_t)c->n_embd, &pad) &&
              gpt2__add_ok(n, pad, &base);
    *out = base;
    return ok;
}

static gpt2_status llmc_read_header(const char *path, FILE *fp, size_t file_len,
                                    llmc_header *h) {
    int32_t hd[LLMC_HEADER_INTS];
    if (file_len < sizeof hd)
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: file is %zu bytes, "
                          "shorter than the %zu-byte llm.c header", path, file_len,
                          sizeof hd);
    if (fread(hd, sizeof hd, 1, fp) != 1)
        return gpt2__fail(GPT2_ERR_IO, "model_load: %s: cannot read the header", path);
    if (hd[0] != LLMC_MAGIC)
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: bad magic %d, expected "
                          "%d (llm.c model checkpoint)%s", path, hd[0], LLMC_MAGIC,
                          hd[0] == LLMC_TOKENS_MAGIC ? "; this is an llm.c token "
                          "shard, not a model" : "; or give a Hugging Face directory");
    *h = (llmc_header){hd[1], hd[2], hd[3], hd[4], hd[5], hd[6], hd[7]};
    if (h->version != LLMC_VERSION_F32 && h->version != LLMC_VERSION_BF16)
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: llm.c version %d, "
                          "expected 3 (float32) or 5 (bfloat16)", path, h->version);
    return GPT2_OK;
}

/* Checks the sizes, and the file length against them, before anything is
   allocated. */
static gpt2_status llmc_check_sizes(const char *path, const llmc_header *h,
                                    size_t file_len, gpt2_config *c) {
    *c = (gpt2_config){h->L, h->NH, h->C, h->maxT, h->V, 1e-5f};
    gpt2_status st = gpt2_config_check(c);
    if (st) return with_prefix(st, path);
    if (h->Vp < h->V || h->Vp > (1 << 24))
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: padded vocab Vp=%d, "
                          "expected V=%d <= Vp <= %d", path, h->Vp, h->V, 1 << 24);
    size_t numel, bytes, want;
    size_t esize = h->version == LLMC_VERSION_BF16 ? 2 : 4;
    if (!llmc_numel(c, h->Vp, &numel) || !gpt2__mul_ok(numel, esize, &bytes) ||
        !gpt2__add_ok(bytes, LLMC_HEADER_INTS * 4, &want))
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: sizes overflow", path);
    if (file_len != want)
        return gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: file is %zu bytes, "
                          "expected %zu for maxT=%d V=%d Vp=%d L=%d NH=%d C=%d "
                          "(%s)", path, file_len, want, h->maxT, h->V, h->Vp,
                          h->L, h->NH, h->C, esize == 2 ? "bfloat16" : "float32");
    return GPT2_OK;
}

/* Reads n values (float32, or bfloat16 when bf16) as floats. */
static gpt2_status llmc_read(const char *path, FILE *fp, float *dst, size_t n,
                             bool bf16) {
    if (!bf16) {
        if (fread(dst, sizeof(float), n, fp) != n)
            return gpt2__fail(GPT2_ERR_IO, "model_load: %s: short read", path);
        return GPT2_OK;
    }
    uint16_t buf[8192];
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 8192 ? n - i : 8192;
        if (fread(buf, 2, k, fp) != k)
            return gpt2__fail(GPT2_ERR_IO, "model_load: %s: short read", path);
        for (size_t j = 0; j < k; j++) dst[i + j] = gpt2__bf16_to_f32(buf[j]);
        i += k;
    }
    return GPT2_OK;
}

/* rows x cols row-major src into cols x rows dst */
static void transpose(float *dst, const float *src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

/* One tensor in llm.c's layout into gpt2c's: 2-D weights arrive (out, in)
   and are stored (in, out). */
static gpt2_status llmc_read_tensor(const char *path, FILE *fp, gpt2_model *m,
                                    int i, float *scratch, bool bf16) {
    const gpt2__tensor_spec *s = &m->specs[i];
    if (s->ndim == 1) return llmc_read(path, fp, m->tensor[i], s->numel, bf16);
    gpt2_status st = llmc_read(path, fp, scratch, s->numel, bf16);
    if (!st) transpose(m->tensor[i], scratch, s->shape[1], s->shape[0]);
    return st;
}

static gpt2_status llmc_read_params(const char *path, FILE *fp, gpt2_model *m,
                                    const llmc_header *h, float *scratch) {
    bool bf16 = h->version == LLMC_VERSION_BF16;
    int L = m->cfg.n_layer;
    const gpt2__tensor_spec *wte = &m->specs[GPT2__WTE];
    gpt2_status st = llmc_read(path, fp, m->tensor[GPT2__WTE], wte->numel, bf16);
    /* wte's padding rows (Vp - V) are never used: skip them */
    off_t pad = (off_t)(h->Vp - h->V) * h->C * (bf16 ? 2 : 4);
    if (!st && fseeko(fp, pad, SEEK_CUR) != 0)
        st = gpt2__fail(GPT2_ERR_IO, "model_load: %s: seek: %s", path, strerror(errno));
    if (!st) st = llmc_read(path, fp, m->tensor[GPT2__WPE], m->specs[GPT2__WPE].numel, bf16);
    /* llm.c stores each kind for all layers together, in gpt2c's order */
    for (int k = 0; k < GPT2__PER_LAYER && !st; k++)
        for (int l = 0; l < L && !st; l++)
            st = llmc_read_tensor(path, fp, m, gpt2__tensor_index(l, k), scratch, bf16);
    if (!st) st = llmc_read_tensor(path, fp, m, GPT2__LNF_W(L), scratch, bf16);
    if (!st) st = llmc_read_tensor(path, fp, m, GPT2__LNF_B(L), scratch, bf16);
    return st;
}

gpt2_status gpt2__model_load_llmc(const char *path, gpt2_model **out) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return gpt2__fail(GPT2_ERR_IO, "model_load: %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return gpt2__fail(GPT2_ERR_IO, "model_load: %s: not a regular file", path);
    }
    llmc_header h = {0};
    gpt2_config cfg;
    gpt2_model *m = NULL;
    float *scratch = NULL;
    gpt2_status st = llmc_read_header(path, fp, (size_t)sb.st_size, &h);
    if (!st) st = llmc_check_sizes(path, &h, (size_t)sb.st_size, &cfg);
    if (!st) st = gpt2__model_alloc(&cfg, true, &m);
    /* the largest 2-D weight, mlp.c_fc / c_proj: 4C x C */
    if (!st && !(scratch = gpt2__malloc((size_t)4 * cfg.n_embd * cfg.n_embd,
                                        sizeof(float), "model_load")))
        st = GPT2_ERR_NOMEM;
    if (!st) st = llmc_read_params(path, fp, m, &h, scratch);
    free(scratch);
    fclose(fp);
    if (st) {
        gpt2_model_free(m);
        return st;
    }
    m->file_dtype = h.version == LLMC_VERSION_BF16 ? GPT2_DTYPE_BF16 : GPT2_DTYPE_F32;
    *out = m;
    return GPT2_OK;
}

/* ================================================================ loading */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

gpt2_status gpt2_model_load(const char *path, gpt2_model **out) {
    if (!out) return gpt2__fail(GPT2_ERR_ARG, "model_load: out is NULL");
    *out = NULL;
    if (!path) return gpt2__fail(GPT2_ERR_ARG, "model_load: path is NULL");
    if (gpt2__is_dir(path)) return gpt2__model_load_hf(path, out);
    if (!gpt2__file_exists(path))
        return gpt2__fail(GPT2_ERR_IO, "model_load: %s: no such file or directory",
                          path);
    if (!ends_with(path, ".safetensors")) return gpt2__model_load_llmc(path, out);
    /* a .safetensors file: its config.json is beside it */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir)
        return gpt2__fail(GPT2_ERR_ARG, "model_load: path too long: %s", path);
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (n == 0) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)n, path);
    return load_hf_files(dir, path, out);
}

/* ================================================================= saving */

/* Tensor i as float32, for the writer (any format in memory). */
static gpt2_status fill_f32(const void *ctx, int i, void *out) {
    gpt2__tensor_f32(ctx, i, out);
    return GPT2_OK;
}

/* Matrix i in the quantized format of the file being written (ctx is a
   save_job): the model's bytes when it already has them, else made from
   float32. */
typedef struct {
    const gpt2_model *m;
    gpt2_dtype dtype;
} save_job;

static gpt2_status fill_quantized(const void *ctx, int i, void *out) {
    const save_job *j = ctx;
    const gpt2_model *m = j->m;
    gpt2_dtype dt;
    bool tr;
    size_t rows, rb;
    gpt2__matrix_target(m, i, j->dtype, &dt, &tr, &rows, &rb);
    if (m->stored[i].dtype == dt && m->stored[i].transposed == tr) {
        memcpy(out, m->stored[i].data, rows * rb);
        return GPT2_OK;
    }
    const gpt2__tensor_spec *s = &m->specs[i];
    float *x = gpt2__malloc(s->numel, sizeof(float), "model_save");
    float *row = gpt2__malloc((size_t)s->shape[0], sizeof(float), "model_save");
    if (!x || !row) {
        free(x);
        free(row);
        return GPT2_ERR_NOMEM;
    }
    gpt2__tensor_f32(m, i, x);
    size_t d1 = (size_t)s->shape[1];
    uint8_t *o = out;
    for (size_t r = 0; r < rows; r++) {
        const float *src = x + r * d1;
        if (tr) { /* row r of the stored matrix is column r of (in, out) */
            for (size_t k = 0; k < (size_t)s->shape[0]; k++) row[k] = x[k * d1 + r];
            src = row;
        }
        gpt2__quantize_row(dt, src, tr ? (size_t)s->shape[0] : d1, o + r * rb);
    }
    free(x);
    free(row);
    return GPT2_OK;
}

static gpt2_status save_safetensors(const gpt2_model *m, const char *path,
                                    gpt2_dtype dtype) {
    gpt2__st_out *ts = gpt2__calloc((size_t)m->n_tensors, sizeof *ts, "model_save");
    if (!ts) return GPT2_ERR_NOMEM;
    bool quantized = dtype == GPT2_DTYPE_Q8_0 || dtype == GPT2_DTYPE_Q4_0;
    save_job job = {m, dtype};
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2__tensor_spec *s = &m->specs[i];
        ts[i] = (gpt2__st_out){.name = s->name, .ndim = s->ndim,
                               .shape = {s->shape[0], s->shape[1]},
                               .data = m->tensor[i]};
        if (quantized && gpt2__is_matrix(m, i)) {
            gpt2_dtype dt;
            bool tr;
            size_t rows, rb;
            gpt2__matrix_target(m, i, dtype, &dt, &tr, &rows, &rb);
            ts[i].shape[0] = (int64_t)rows, ts[i].shape[1] = (int64_t)rb;
            ts[i].data = NULL;
            ts[i].fill = fill_quantized, ts[i].ctx = &job, ts[i].index = i;
            ts[i].raw_u8 = true;
        } else if (!m->tensor[i]) {
            ts[i].fill = fill_f32, ts[i].ctx = m, ts[i].index = i;
        }
    }
    /* quantized files keep their float tensors in F32 */
    gpt2_status st = gpt2__st_write(path, ts, m->n_tensors,
                                    quantized ? GPT2_DTYPE_F32 : dtype);
    free(ts);
    return st;
}

static gpt2_status save_config(const gpt2_model *m, const char *path,
                               gpt2_dtype dtype) {
    char *text = config_json(&m->cfg, dtype);
    if (!text) return GPT2_ERR_NOMEM;
    gpt2_status st = gpt2__write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

gpt2_status gpt2_model_save(const gpt2_model *m, const char *dir, gpt2_dtype dtype) {
    if (!m || !dir)
        return gpt2__fail(GPT2_ERR_ARG, "model_save: model or directory is NULL");
    if (gpt2_dtype_name(dtype)[0] == '?')
        return gpt2__fail(GPT2_ERR_ARG, "model_save: unknown dtype %d", (int)dtype);
    if ((dtype == GPT2_DTYPE_Q8_0 || dtype == GPT2_DTYPE_Q4_0) &&
        m->cfg.n_embd % GPT2__QBLOCK)
        return gpt2__fail(GPT2_ERR_ARG, "model_save: %s needs n_embd to be a "
                          "multiple of %d (it is %d)", gpt2_dtype_name(dtype),
                          GPT2__QBLOCK, m->cfg.n_embd);
    char path[4096];
    gpt2_status st = gpt2__make_dirs(dir);
    if (st) return with_prefix(st, "model_save");
    st = gpt2__join_path(path, sizeof path, dir, "model.safetensors");
    if (!st) st = save_safetensors(m, path, dtype);
    if (!st) st = gpt2__join_path(path, sizeof path, dir, "config.json");
    if (!st) st = save_config(m, path, dtype);
    if (!st && m->tok) st = gpt2_tokenizer_save(m->tok, dir);
    /* the renames above are durable only once the directory is synced */
    if (!st) st = gpt2__sync_dir(dir);
    return st;
}

/* One tensor in llm.c's layout: 2-D weights go out (out, in). */
static gpt2_status llmc_write_tensor(gpt2__afile *a, const gpt2_model *m, int i,
                                     float *scratch) {
    const gpt2__tensor_spec *s = &m->specs[i];
    const float *x = m->tensor[i];
    float *f32 = NULL;
    if (!x) { /* kept in another format */
        x = f32 = gpt2__malloc(s->numel, sizeof(float), "model_save_llmc");
        if (!f32) return GPT2_ERR_NOMEM;
        gpt2__tensor_f32(m, i, f32);
    }
    if (s->ndim == 2 && i != GPT2__WTE && i != GPT2__WPE) {
        transpose(scratch, x, s->shape[0], s->shape[1]);
        x = scratch;
    }
    gpt2_status st = gpt2__afile_write(a, x, s->numel * sizeof(float));
    free(f32);
    return st;
}

static gpt2_status llmc_write_params(gpt2__afile *a, const gpt2_model *m, int Vp,
                                     float *scratch) {
    int L = m->cfg.n_layer, C = m->cfg.n_embd;
    gpt2_status st = llmc_write_tensor(a, m, GPT2__WTE, scratch);
    /* llm.c's padding rows of wte are zero */
    memset(scratch, 0, (size_t)C * sizeof(float));
    for (int r = m->cfg.vocab_size; r < Vp && !st; r++)
        st = gpt2__afile_write(a, scratch, (size_t)C * sizeof(float));
    if (!st) st = llmc_write_tensor(a, m, GPT2__WPE, scratch);
    for (int k = 0; k < GPT2__PER_LAYER && !st; k++)
        for (int l = 0; l < L && !st; l++)
            st = llmc_write_tensor(a, m, gpt2__tensor_index(l, k), scratch);
    if (!st) st = llmc_write_tensor(a, m, GPT2__LNF_W(L), scratch);
    if (!st) st = llmc_write_tensor(a, m, GPT2__LNF_B(L), scratch);
    return st;
}

gpt2_status gpt2_model_save_llmc(const gpt2_model *m, const char *path) {
    if (!m || !path)
        return gpt2__fail(GPT2_ERR_ARG, "model_save_llmc: model or path is NULL");
    const gpt2_config *c = &m->cfg;
    int Vp = (c->vocab_size + LLMC_VOCAB_ALIGN - 1) / LLMC_VOCAB_ALIGN * LLMC_VOCAB_ALIGN;
    int32_t hd[LLMC_HEADER_INTS] = {LLMC_MAGIC, LLMC_VERSION_F32, c->n_ctx,
                                    c->vocab_size, c->n_layer, c->n_head,
                                    c->n_embd, Vp};
    float *scratch = gpt2__malloc((size_t)4 * c->n_embd * c->n_embd, sizeof(float),
                                  "model_save_llmc");
    if (!scratch) return GPT2_ERR_NOMEM;
    gpt2__afile a;
    gpt2_status st = gpt2__afile_open(&a, path);
    if (!st) st = gpt2__afile_write(&a, hd, sizeof hd);
    if (!st) st = llmc_write_params(&a, m, Vp, scratch);
    st = gpt2__afile_close(&a, st);
    free(scratch);
    return st;
}
