/* model_store.c: how a model keeps its weights. Decode reads every weight
   once per token, so the format they are kept in sets its speed: F32,
   16-bit (F16, BF16) or block-quantized (Q8_0, Q4_0; wmat.h has the
   formats). Only the weight matrices change format; embeddings of
   positions, biases and layer norms are small and stay F32. Everything
   that needs plain floats (saving, training, the tensor accessor) gets
   them from gpt2__tensor_f32. */
#include "internal.h"

#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

static const struct {
    gpt2_dtype d;
    const char *name;
} dtype_names[] = {
    {GPT2_DTYPE_F32, "F32"},   {GPT2_DTYPE_F16, "F16"},
    {GPT2_DTYPE_BF16, "BF16"}, {GPT2_DTYPE_Q8_0, "Q8_0"},
    {GPT2_DTYPE_Q4_0, "Q4_0"},
};
#define N_DTYPES (sizeof dtype_names / sizeof dtype_names[0])

const char *gpt2_dtype_name(gpt2_dtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtype_names[i].d == d) return dtype_names[i].name;
    return "?";
}

gpt2_status gpt2_dtype_parse(const char *s, gpt2_dtype *out) {
    for (size_t i = 0; s && i < N_DTYPES; i++)
        if (strcasecmp(s, dtype_names[i].name) == 0) {
            *out = dtype_names[i].d;
            return GPT2_OK;
        }
    /* the spellings people also use */
    if (s && (strcasecmp(s, "fp32") == 0 || strcasecmp(s, "float32") == 0)) {
        *out = GPT2_DTYPE_F32;
        return GPT2_OK;
    }
    if (s && (strcasecmp(s, "fp16") == 0 || strcasecmp(s, "float16") == 0)) {
        *out = GPT2_DTYPE_F16;
        return GPT2_OK;
    }
    if (s && strcasecmp(s, "bfloat16") == 0) {
        *out = GPT2_DTYPE_BF16;
        return GPT2_OK;
    }
    return gpt2__fail(GPT2_ERR_ARG, "unknown dtype '%s' (expected F32, F16, BF16, "
                      "Q8_0 or Q4_0)", s ? s : "(null)");
}

static bool is_quantized(gpt2_dtype d) {
    return d == GPT2_DTYPE_Q8_0 || d == GPT2_DTYPE_Q4_0;
}

gpt2_dtype gpt2__wte_dtype(gpt2_dtype dtype) {
    /* the tied embedding/LM head is where 4 bits cost the most perplexity;
       8 bits there cost almost nothing (docs/formats.md has the figures) */
    return dtype == GPT2_DTYPE_Q4_0 ? GPT2_DTYPE_Q8_0 : dtype;
}

bool gpt2__is_matrix(const gpt2_model *m, int i) {
    if (i == GPT2__WTE) return true;
    if (i < 2 || i >= 2 + GPT2__PER_LAYER * m->cfg.n_layer) return false;
    int k = (i - 2) % GPT2__PER_LAYER;
    return k == GPT2__QKV_W || k == GPT2__ATTPROJ_W || k == GPT2__FC_W ||
           k == GPT2__FCPROJ_W;
}

/* The stored rows of tensor i: (rows, len) in the layout it is kept. */
static void stored_rows(const gpt2_model *m, int i, size_t *rows, size_t *len) {
    const gpt2__tensor_spec *s = &m->specs[i];
    if (s->ndim == 1) {
        *rows = 1, *len = (size_t)s->shape[0];
    } else if (m->stored[i].transposed) {
        *rows = (size_t)s->shape[1], *len = (size_t)s->shape[0];
    } else {
        *rows = (size_t)s->shape[0], *len = (size_t)s->shape[1];
    }
}

/* The matrix view the kernels read. wte (V, C) is one row per output
   (vocabulary entry) as it is; Conv1D weights (in, out) are by input
   unless kept transposed. */
static gpt2__wmat wmat_of(const gpt2_model *m, int i) {
    const gpt2__tensor_spec *s = &m->specs[i];
    const gpt2__stored *st = &m->stored[i];
    gpt2__wmat w = {.type = st->dtype, .data = st->data};
    if (i == GPT2__WTE) {
        w.layout = GPT2__BY_OUT, w.K = s->shape[1], w.N = s->shape[0];
    } else {
        w.layout = st->transposed ? GPT2__BY_OUT : GPT2__BY_IN;
        w.K = s->shape[0], w.N = s->shape[1];
    }
    w.row_bytes = gpt2__row_bytes(w.type, w.layout == GPT2__BY_IN ? (size_t)w.N
                                                                   : (size_t)w.K);
    return w;
}

void gpt2__model_bind(gpt2_model *m) {
    int L = m->cfg.n_layer;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensor[i])
            m->stored[i] = (gpt2__stored){GPT2_DTYPE_F32, false, m->tensor[i],
                                          m->specs[i].numel * sizeof(float)};
    m->wte = m->tensor[GPT2__WTE];
    m->wpe = m->tensor[GPT2__WPE];
    m->lnf_w = m->tensor[GPT2__LNF_W(L)];
    m->lnf_b = m->tensor[GPT2__LNF_B(L)];
    m->wte_mat = wmat_of(m, GPT2__WTE);
    for (int l = 0; l < L; l++) {
        int base = gpt2__tensor_index(l, 0);
        float **t = &m->tensor[base];
        gpt2__layer *y = &m->layer[l];
        y->ln1_w = t[GPT2__LN1_W];
        y->ln1_b = t[GPT2__LN1_B];
        y->qkv_w = t[GPT2__QKV_W];
        y->qkv_b = t[GPT2__QKV_B];
        y->attproj_w = t[GPT2__ATTPROJ_W];
        y->attproj_b = t[GPT2__ATTPROJ_B];
        y->ln2_w = t[GPT2__LN2_W];
        y->ln2_b = t[GPT2__LN2_B];
        y->fc_w = t[GPT2__FC_W];
        y->fc_b = t[GPT2__FC_B];
        y->fcproj_w = t[GPT2__FCPROJ_W];
        y->fcproj_b = t[GPT2__FCPROJ_B];
        y->qkv = wmat_of(m, base + GPT2__QKV_W);
        y->attproj = wmat_of(m, base + GPT2__ATTPROJ_W);
        y->fc = wmat_of(m, base + GPT2__FC_W);
        y->fcproj = wmat_of(m, base + GPT2__FCPROJ_W);
    }
}

void gpt2__tensor_f32(const gpt2_model *m, int i, float *out) {
    const gpt2__stored *st = &m->stored[i];
    const gpt2__tensor_spec *s = &m->specs[i];
    if (st->dtype == GPT2_DTYPE_F32) {
        memcpy(out, st->data, s->numel * sizeof(float));
        return;
    }
    size_t rows, len;
    stored_rows(m, i, &rows, &len);
    size_t rb = gpt2__row_bytes(st->dtype, len);
    const uint8_t *p = st->data;
    if (!st->transposed) {
        for (size_t r = 0; r < rows; r++)
            gpt2__dequantize_row(st->dtype, p + r * rb, len, out + r * len);
        return;
    }
    /* kept (out, in): each stored row is one column of the (in, out) tensor */
    float *col = gpt2__malloc(len, sizeof(float), "tensor_f32");
    GPT2_ASSERT(col); /* len is at most 4 * n_embd floats */
    for (size_t n = 0; n < rows; n++) {
        gpt2__dequantize_row(st->dtype, p + n * rb, len, col);
        for (size_t k = 0; k < len; k++) out[k * rows + n] = col[k];
    }
    free(col);
}

/* One matrix into dtype at dst (laid out as gpt2__stored says), via a
   float32 copy of it in tmp. */
/* One matrix into dtype at dst (laid out as gpt2__stored says): read in
   place when it is float32, else through a float32 copy in tmp; col holds
   one column (shape[0] floats). */
static void convert_matrix(const gpt2_model *m, int i, gpt2_dtype dtype,
                           bool transposed, uint8_t *dst, float *tmp, float *col) {
    const gpt2__tensor_spec *s = &m->specs[i];
    size_t d0 = (size_t)s->shape[0], d1 = (size_t)s->shape[1];
    const float *x = m->stored[i].data;
    if (m->stored[i].dtype != GPT2_DTYPE_F32) {
        gpt2__tensor_f32(m, i, tmp);
        x = tmp;
    }
    if (!transposed) {
        size_t rb = gpt2__row_bytes(dtype, d1);
        for (size_t r = 0; r < d0; r++)
            gpt2__quantize_row(dtype, x + r * d1, d1, dst + r * rb);
        return;
    }
    size_t rb = gpt2__row_bytes(dtype, d0);
    for (size_t n = 0; n < d1; n++) {
        for (size_t k = 0; k < d0; k++) col[k] = x[k * d1 + n];
        gpt2__quantize_row(dtype, col, d0, dst + n * rb);
    }
}

/* The pages of a converted tensor that was read from the mapped file are
   let go (they would otherwise stay in the resident set, clean, until
   memory is short): a model quantized at load then takes about its
   quantized size in memory, not the file's. */
static void release_mapped(const gpt2_model *m, const void *p, size_t bytes) {
    const uint8_t *map = m->st.map, *q = p;
    if (!map || q < map || q + bytes > map + m->st.map_len) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)q + page - 1) & ~(page - 1);
    uintptr_t b = ((uintptr_t)q + bytes) & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void gpt2__matrix_target(const gpt2_model *m, int i, gpt2_dtype dtype,
                         gpt2_dtype *dt, bool *transposed, size_t *rows,
                         size_t *row_bytes) {
    const gpt2__tensor_spec *s = &m->specs[i];
    *dt = i == GPT2__WTE ? gpt2__wte_dtype(dtype) : dtype;
    /* reduced formats one row per output: a dot product per row is the
       fastest decode (16-bit too: about 5-10% over Hugging Face's layout,
       which 16-bit files keep when loaded as they are) */
    *transposed = *dt != GPT2_DTYPE_F32 && i != GPT2__WTE;
    *rows = *transposed ? (size_t)s->shape[1] : (size_t)s->shape[0];
    *row_bytes = gpt2__row_bytes(*dt, *transposed ? (size_t)s->shape[0]
                                                  : (size_t)s->shape[1]);
}

static size_t target_of(const gpt2_model *m, int i, gpt2_dtype dtype,
                        gpt2_dtype *dt, bool *transposed) {
    size_t rows, rb;
    gpt2__matrix_target(m, i, dtype, dt, transposed, &rows, &rb);
    return rows * rb;
}

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

static bool in_block(const void *p, const void *block, size_t bytes) {
    const uint8_t *q = p, *b = block;
    return block && q >= b && q < b + bytes;
}

/* Whether tensor i must be written into a new conversion block: its
   format changes, or it lives in the block being replaced. */
static bool moves(const gpt2_model *m, int i, gpt2_dtype dt, bool tr) {
    const gpt2__stored *st = &m->stored[i];
    return dt != st->dtype || tr != st->transposed ||
           in_block(st->data, m->converted, m->converted_bytes);
}

gpt2_status gpt2__model_convert(gpt2_model *m, gpt2_dtype dtype) {
    if (gpt2_dtype_name(dtype)[0] == '?')
        return gpt2__fail(GPT2_ERR_ARG, "model: unknown dtype %d", (int)dtype);
    if (is_quantized(dtype) && m->cfg.n_embd % GPT2__QBLOCK != 0)
        return gpt2__fail(GPT2_ERR_ARG, "model: %s needs n_embd to be a multiple of "
                          "%d (it is %d); use F32, F16 or BF16",
                          gpt2_dtype_name(dtype), GPT2__QBLOCK, m->cfg.n_embd);
    /* sizes first: one block for every matrix that changes */
    size_t total = 0, largest = 0, longest_col = 1;
    for (int i = 0; i < m->n_tensors; i++) {
        gpt2_dtype dt;
        bool tr;
        if (!gpt2__is_matrix(m, i)) continue;
        size_t bytes = target_of(m, i, dtype, &dt, &tr);
        if (!moves(m, i, dt, tr)) continue;
        total += ALIGN64(bytes);
        if (m->stored[i].dtype != GPT2_DTYPE_F32 && m->specs[i].numel > largest)
            largest = m->specs[i].numel;
        if ((size_t)m->specs[i].shape[0] > longest_col)
            longest_col = (size_t)m->specs[i].shape[0];
    }
    if (total == 0) {
        m->weight_dtype = dtype;
        return GPT2_OK;
    }
    uint8_t *block = gpt2__alloc_huge(total, "converted weights");
    float *tmp = largest ? gpt2__malloc(largest, sizeof(float), "model_convert") : NULL;
    float *col = gpt2__malloc(longest_col, sizeof(float), "model_convert");
    gpt2__stored *next = gpt2__calloc((size_t)m->n_tensors, sizeof *next, "model_convert");
    if (!block || (largest && !tmp) || !col || !next) {
        gpt2__free_aligned(block);
        free(tmp);
        free(col);
        free(next);
        return GPT2_ERR_NOMEM;
    }
    size_t off = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        gpt2_dtype dt;
        bool tr;
        next[i] = m->stored[i];
        if (!gpt2__is_matrix(m, i)) continue;
        size_t bytes = target_of(m, i, dtype, &dt, &tr);
        if (!moves(m, i, dt, tr)) continue;
        if (dt == m->stored[i].dtype && tr == m->stored[i].transposed)
            memcpy(block + off, m->stored[i].data, bytes); /* same format */
        else
            convert_matrix(m, i, dt, tr, block + off, tmp, col);
        release_mapped(m, m->stored[i].data, m->stored[i].bytes);
        next[i] = (gpt2__stored){dt, tr, block + off, bytes};
        off += ALIGN64(bytes);
    }
    free(tmp);
    free(col);
    /* switch over only once everything is converted */
    for (int i = 0; i < m->n_tensors; i++) {
        m->stored[i] = next[i];
        m->tensor[i] = next[i].dtype == GPT2_DTYPE_F32 ? (float *)next[i].data : NULL;
    }
    free(next);
    gpt2__free_aligned(m->converted);
    m->converted = block;
    m->converted_bytes = total;
    m->weight_dtype = dtype;
    gpt2__model_bind(m);
    return GPT2_OK;
}

void gpt2__embed(const gpt2_model *m, float *out, const int *tokens, int B,
                 int T, int pos0) {
    int C = m->cfg.n_embd;
    const gpt2__wmat *w = &m->wte_mat;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const uint8_t *row = (const uint8_t *)w->data +
                                 (size_t)tokens[b * T + t] * w->row_bytes;
            gpt2__dequantize_row(w->type, row, (size_t)C, o);
            const float *pe = m->wpe + (size_t)(pos0 + t) * C;
            for (int i = 0; i < C; i++) o[i] += pe[i];
        }
    }
}

/* ------------------------------------------------------------- public */

gpt2_dtype gpt2_model_weight_dtype(const gpt2_model *m) { return m->weight_dtype; }

size_t gpt2_model_weight_bytes(const gpt2_model *m) {
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) total += m->stored[i].bytes;
    return total;
}

gpt2_status gpt2_model_tensor(const gpt2_model *m, int i, gpt2_tensor_info *out) {
    if (i < 0 || i >= m->n_tensors)
        return gpt2__fail(GPT2_ERR_ARG, "model_tensor: index %d out of range [0, %d)",
                          i, m->n_tensors);
    const gpt2__tensor_spec *s = &m->specs[i];
    out->name = s->name;
    out->ndim = s->ndim;
    out->shape[0] = s->shape[0];
    out->shape[1] = s->shape[1];
    out->numel = s->numel;
    out->dtype = m->stored[i].dtype;
    out->data = m->tensor[i];
    out->raw = m->stored[i].data;
    out->bytes = m->stored[i].bytes;
    return GPT2_OK;
}

gpt2_status gpt2_model_load_as(const char *path, gpt2_dtype dtype,
                               gpt2_model **out) {
    if (!out) return gpt2__fail(GPT2_ERR_ARG, "model_load_as: out is NULL");
    gpt2_model *m;
    gpt2_status st = gpt2_model_load(path, &m);
    if (st) return st;
    if ((st = gpt2__model_convert(m, dtype))) {
        gpt2_model_free(m);
        *out = NULL;
        return st;
    }
    *out = m;
    return GPT2_OK;
}
