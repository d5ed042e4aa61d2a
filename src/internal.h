/* internal.h: what the files of src/ share privately. Not installed. */
#ifndef GPT2_INTERNAL_H
#define GPT2_INTERNAL_H

#include "gpt2.h"
#include "wmat.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- errors */

/* Records a message for gpt2_last_error() and returns s. The message names
   the function and the offending value, e.g.
   gpt2__fail(GPT2_ERR_FORMAT, "model_load: %s: bad magic %d", path, m); */
gpt2_status gpt2__fail(gpt2_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Internal invariants only (bugs), never user input. */
#define GPT2_ASSERT(x)                                                      \
    do {                                                                    \
        if (!(x)) {                                                         \
            fprintf(stderr, "gpt2c: internal error at %s:%d: %s\n",        \
                    __FILE__, __LINE__, #x);                                \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* malloc/calloc that record GPT2_ERR_NOMEM on failure (return NULL);
   n * size is checked for overflow. */
void *gpt2__calloc(size_t n, size_t size, const char *what);
void *gpt2__malloc(size_t n, size_t size, const char *what);
/* 64-byte aligned, for weights and activations; free with gpt2__free_aligned */
void *gpt2__alloc_aligned(size_t bytes, const char *what);
/* The same, in transparent huge pages where the kernel gives them (large
   blocks read whole on every step: weights, the trainer's blocks); free
   with gpt2__free_aligned */
void *gpt2__alloc_huge(size_t bytes, const char *what);
void gpt2__free_aligned(void *p);
/* a*b and a+b into *out; false on overflow of size_t */
bool gpt2__mul_ok(size_t a, size_t b, size_t *out);
bool gpt2__add_ok(size_t a, size_t b, size_t *out);

/* Whole file into memory (NUL-terminated; *len excludes the NUL). */
gpt2_status gpt2__read_file(const char *path, char **data, size_t *len);
/* A file written as path.tmp and renamed over path only once complete and
   synced: a crash leaves the old file or the new one, never half of one.
   Streamed, so a large model is never copied whole into memory. */
typedef struct {
    FILE *fp;
    const char *path;
    char tmp[4096];
} gpt2__afile;
gpt2_status gpt2__afile_open(gpt2__afile *a, const char *path);
gpt2_status gpt2__afile_write(gpt2__afile *a, const void *p, size_t n);
/* With st == GPT2_OK: flush, fsync, rename into place. Otherwise, or if
   that fails, the temporary file is removed. Returns the first error. */
gpt2_status gpt2__afile_close(gpt2__afile *a, gpt2_status st);

/* Writes len bytes to path via path.tmp, fsync, rename. */
gpt2_status gpt2__write_file_atomic(const char *path, const void *data,
                                    size_t len);
/* dir/name into buf (cap bytes); GPT2_ERR_ARG if too long. */
gpt2_status gpt2__join_path(char *buf, size_t cap, const char *dir,
                            const char *name);
bool gpt2__file_exists(const char *path);
/* mkdir -p */
gpt2_status gpt2__make_dirs(const char *dir);
/* fsync a directory, so renames inside it are durable */
gpt2_status gpt2__sync_dir(const char *dir);
/* rm -r of a directory gpt2c made (files one level deep) */
gpt2_status gpt2__remove_dir(const char *dir);
bool gpt2__is_dir(const char *path);

/* ---------------------------------------------------- numeric formats */

float gpt2__f16_to_f32(uint16_t h);
uint16_t gpt2__f32_to_f16(float f);   /* round to nearest even */
/* A float's bits and back (memcpy: no aliasing trouble; compiles to a
   register move). Inline, for the conversion loops of the kernels. */
static inline uint32_t gpt2__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float gpt2__bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* bfloat16 is the top half of a float32. */
static inline float gpt2__bf16_to_f32(uint16_t h) {
    return gpt2__bits_f32((uint32_t)h << 16);
}
/* Round to nearest even; NaN stays NaN (quieted). */
static inline uint16_t gpt2__f32_to_bf16(float f) {
    uint32_t u = gpt2__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ------------------------------------------------------- safetensors */

typedef enum {
    GPT2__ST_F32, GPT2__ST_F16, GPT2__ST_BF16, GPT2__ST_F64,
    GPT2__ST_I64, GPT2__ST_I32, GPT2__ST_I16, GPT2__ST_I8, GPT2__ST_U8,
    GPT2__ST_BOOL, GPT2__ST_OTHER
} gpt2__st_dtype;

typedef struct {
    char *name;
    gpt2__st_dtype dtype;
    int ndim;
    int64_t shape[8];
    size_t begin, end;       /* byte offsets into the data section */
} gpt2__st_tensor;

typedef struct {
    void *map;               /* the mmapped file (or NULL when parsed) */
    size_t map_len;
    const uint8_t *data;     /* data section: after 8 + header bytes */
    size_t data_len;
    int n;                   /* tensors */
    gpt2__st_tensor *t;
    char *format;            /* __metadata__.format, or NULL */
} gpt2__st_file;

/* Parses a safetensors image in memory (buf stays owned by the caller and
   must outlive f). Checks every tensor: dtype known, shape product *
   element size == end - begin, offsets inside the data, no two tensors
   overlapping, no overflow. */
gpt2_status gpt2__st_parse(const uint8_t *buf, size_t len, gpt2__st_file *f);
/* mmaps path read-only and parses it; f->map owns the mapping. */
gpt2_status gpt2__st_open(const char *path, gpt2__st_file *f);
void gpt2__st_close(gpt2__st_file *f);
const gpt2__st_tensor *gpt2__st_find(const gpt2__st_file *f,
                                     const char *name);
size_t gpt2__st_dtype_size(gpt2__st_dtype d);
const char *gpt2__st_dtype_name(gpt2__st_dtype d);
/* Converts a F32/F16/BF16 tensor to float32 into out (numel floats). */
gpt2_status gpt2__st_read_f32(const gpt2__st_file *f,
                              const gpt2__st_tensor *t, float *out);

/* One tensor to write: float32 data converted to dtype on the way out.
   Instead of data, fill may make the tensor when it is written (so a
   whole model is never converted at once): float32 values (numel floats)
   into out, or, with raw_u8, the tensor's bytes as a U8 tensor whose
   shape counts bytes (quantized rows: (rows, bytes per row)). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    const float *data;
    gpt2_status (*fill)(const void *ctx, int index, void *out);
    const void *ctx;
    int index;
    bool raw_u8;
} gpt2__st_out;
/* Writes a safetensors file (atomically) with __metadata__
   {"format": "pt"} and tensors in the order given; dtype is F32, F16 or
   BF16 (of the float tensors; raw_u8 ones are U8). */
gpt2_status gpt2__st_write(const char *path, const gpt2__st_out *ts, int n,
                           gpt2_dtype dtype);

/* ------------------------------------------------- parameter layout */

/* The tensors of a GPT-2, in Hugging Face names (without "transformer."),
   in one canonical order: wte, wpe, then per block h.N.{ln_1.weight,
   ln_1.bias, attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight,
   attn.c_proj.bias, ln_2.weight, ln_2.bias, mlp.c_fc.weight,
   mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias}, then ln_f.weight,
   ln_f.bias. A contiguous parameter block (training: params, grads, m, v)
   lays them out in this order at these offsets. */
enum {
    GPT2__LN1_W, GPT2__LN1_B, GPT2__QKV_W, GPT2__QKV_B, GPT2__ATTPROJ_W,
    GPT2__ATTPROJ_B, GPT2__LN2_W, GPT2__LN2_B, GPT2__FC_W, GPT2__FC_B,
    GPT2__FCPROJ_W, GPT2__FCPROJ_B, GPT2__PER_LAYER
};
#define GPT2__N_TENSORS(L) (2 + GPT2__PER_LAYER * (L) + 2)

typedef struct {
    char name[48];
    int ndim;
    int shape[2];
    size_t numel;
    size_t offset;     /* in floats, within a contiguous block */
    bool decay;        /* AdamW weight decay applies (2-D tensors) */
    bool residual;     /* a residual projection (init scaled 1/sqrt(2L)) */
} gpt2__tensor_spec;

/* Fills specs (GPT2__N_TENSORS(L) entries, caller-allocated); returns the
   total number of parameters. Config must have passed gpt2_config_check. */
size_t gpt2__tensor_specs(const gpt2_config *c, gpt2__tensor_spec *specs);

/* Index into the spec table. */
static inline int gpt2__tensor_index(int layer, int which) {
    return 2 + layer * GPT2__PER_LAYER + which;
}
#define GPT2__WTE 0
#define GPT2__WPE 1
#define GPT2__LNF_W(L) (2 + GPT2__PER_LAYER * (L))
#define GPT2__LNF_B(L) (3 + GPT2__PER_LAYER * (L))

/* How one tensor is kept in memory. F32 tensors are also tensor[i]. The
   weight matrices (c_attn, attn.c_proj, c_fc, mlp.c_proj, wte) may be
   kept in any gpt2_dtype; everything else is always F32. Conv1D weights
   converted to a reduced format (quantized, or 16-bit by load_as) are kept
   transposed, one row per output (wmat.h), which decode reads fastest;
   16-bit ones read from a file keep Hugging Face's layout, so the file's
   bytes are used where they lie (memory-mapped). */
typedef struct {
    gpt2_dtype dtype;
    bool transposed;    /* kept as (out, in) */
    const void *data;
    size_t bytes;
} gpt2__stored;

/* The weights of a block, read by the forward pass. */
typedef struct {
    gpt2__wmat qkv, attproj, fc, fcproj; /* the four matrices as kept */
    const float *ln1_w, *ln1_b;        /* (C) */
    const float *qkv_w, *qkv_b;        /* (C, 3C), (3C) */
    const float *attproj_w, *attproj_b;/* (C, C), (C) */
    const float *ln2_w, *ln2_b;        /* (C) */
    const float *fc_w, *fc_b;          /* (C, 4C), (4C) */
    const float *fcproj_w, *fcproj_b;  /* (4C, C), (C) */
} gpt2__layer;

struct gpt2_model {
    gpt2_config cfg;
    int n_tensors;
    gpt2__tensor_spec *specs;   /* n_tensors */
    float **tensor;             /* n_tensors F32 views (NULL when kept in
                                   another dtype): into owned or map */
    gpt2__stored *stored;       /* n_tensors: how each is kept */
    gpt2__wmat wte_mat;         /* wte as the LM head reads it */
    void *converted;            /* weights converted by load_as, or NULL */
    size_t converted_bytes;
    gpt2_dtype weight_dtype;    /* of the block matrices */
    size_t n_params;
    /* named views of tensor[] */
    const float *wte, *wpe, *lnf_w, *lnf_b;
    gpt2__layer *layer;         /* n_layer */
    float *owned;               /* contiguous block (n_params) or NULL */
    gpt2__st_file st;           /* the mapped safetensors file, if any */
    bool mapped;
    gpt2_dtype file_dtype;
    gpt2_tokenizer *tok;        /* owned, or NULL */
};

/* Allocates a model shell for cfg: specs, pointer tables. If alloc_block,
   also the contiguous zeroed block with every tensor pointer bound to it. */
gpt2_status gpt2__model_alloc(const gpt2_config *cfg, bool alloc_block,
                              gpt2_model **out);
/* Refreshes the named views (wte, layer[i].qkv_w, ...) and the weight
   matrices (layer[i].qkv, wte_mat) from tensor[] and stored[]: a tensor
   with a non-NULL tensor[i] is F32; others must have stored[i] set. */
void gpt2__model_bind(gpt2_model *m);

/* model_store.c: weights in formats other than F32. */
/* True for the tensors that may be kept in a reduced format. */
bool gpt2__is_matrix(const gpt2_model *m, int i);
/* Tensor i as float32 in Hugging Face's layout (numel floats into out),
   whatever its format. */
void gpt2__tensor_f32(const gpt2_model *m, int i, float *out);
/* Keeps the matrices in dtype (Q4_0 models keep wte in Q8_0), converting
   from what they are now into one owned block; the rest stay F32. */
gpt2_status gpt2__model_convert(gpt2_model *m, gpt2_dtype dtype);
/* The format matrix i takes in a model whose matrices are dtype: its
   format, whether kept transposed, stored rows and bytes per row. */
void gpt2__matrix_target(const gpt2_model *m, int i, gpt2_dtype dtype,
                         gpt2_dtype *dt, bool *transposed, size_t *rows,
                         size_t *row_bytes);
/* dtype of wte in a model whose matrices are dtype. */
gpt2_dtype gpt2__wte_dtype(gpt2_dtype dtype);
/* out (B,T,C) = wte[tokens] + wpe[pos0 + t], for wte in any format. */
void gpt2__embed(const gpt2_model *m, float *out, const int *tokens, int B,
                 int T, int pos0);

/* Reads config.json text into *c (n_positions or n_ctx; defaults as
   Hugging Face's GPT2Config for missing keys). */
gpt2_status gpt2__config_from_json(const char *json, size_t len,
                                   gpt2_config *c);
/* config.json text for c (malloc'd, NUL-terminated). */
char *gpt2__config_to_json(const gpt2_config *c);

/* llm.c checkpoint import (path is a file). */
gpt2_status gpt2__model_load_llmc(const char *path, gpt2_model **out);
/* Hugging Face directory import. */
gpt2_status gpt2__model_load_hf(const char *dir, gpt2_model **out);

/* ------------------------------------------------------- forward pass */

/* The activations of one decoder block over (B, T) rows; shapes per
   pointer. Training keeps one set per layer; inference reuses one set. */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; /* (B,T,C), (B,T), (B,T) */
    float *qkv;                       /* (B,T,3C): q | k | v per row */
    float *att;                       /* (B,NH,T,Tk) softmax, or NULL */
    float *atty;                      /* (B,T,C) attention output */
    float *attproj;                   /* (B,T,C) after c_proj */
    float *residual2;                 /* (B,T,C) x + attproj */
    float *ln2, *ln2_mean, *ln2_rstd; /* (B,T,C), (B,T), (B,T) */
    float *fch, *fch_gelu;            /* (B,T,4C) */
    float *fcproj;                    /* (B,T,C) */
    float *residual3;                 /* (B,T,C) the block's output */
} gpt2__block_acts;

/* One decoder block: ln_1, masked self-attention, residual, ln_2, MLP,
   residual. x (B,T,C) is the residual stream coming in (it may alias
   a->residual3). Without a cache, attention runs within the T rows. With
   kcache/vcache (this layer's (n_ctx, C) K and V; B must be 1) the T new
   rows are positions past..past+T-1: their K and V are stored in the
   cache and attention reads positions 0..past+T-1 from it. drop (NULL
   in inference) applies dropout to the attention weights and to both
   residual branches; it needs a->att and no cache. */
/* Training's dropout in one block: probability p, and the seed of this
   block's masks in this micro-batch (each site derives its own). */
typedef struct {
    float p;
    uint64_t seed;
} gpt2__dropout;
#define GPT2__DROP_ATTN(seed) ((seed) ^ 0x1111111111111111ull)
#define GPT2__DROP_ATTPROJ(seed) ((seed) ^ 0x2222222222222222ull)
#define GPT2__DROP_FCPROJ(seed) ((seed) ^ 0x3333333333333333ull)

void gpt2__block_forward(const gpt2_model *m, int l, const gpt2__block_acts *a,
                         const float *x, int B, int T, int past, float *kcache,
                         float *vcache, const gpt2__dropout *drop);

/* ln_f over the rows x (N,C) into out (N,C), then the tied LM head into
   logits (N,V). mean/rstd (N) may be NULL. */
void gpt2__head_forward(const gpt2_model *m, float *out, float *mean,
                        float *rstd, float *logits, const float *x, int N);

/* A forward pass over one sequence of T tokens (1 <= T <= n_ctx) that
   shows each layer's attention to fn as it goes: qkv (T, 3C: each row
   q | k | v, heads at h*HS within each) and att (NH, T, T: the softmax
   weights, 0 above the diagonal). Both are borrowed for the call only.
   logits (T, V), if not NULL, receives the model's output. For the
   attention views (attention.c); memory is one layer's worth. */
typedef void (*gpt2__layer_fn)(void *user, int layer, const float *qkv,
                               const float *att, int T);
gpt2_status gpt2__forward_inspect(const gpt2_model *m, const int *tokens,
                                  int T, gpt2__layer_fn fn, void *user,
                                  float *logits);

/* Floats needed by one block's activations for B*T rows with Tk keys
   (att only when keep_att). */
size_t gpt2__block_acts_size(const gpt2_config *c, int B, int T, int Tk,
                             bool keep_att);
/* Points a's fields into base (gpt2__block_acts_size floats). */
void gpt2__block_acts_bind(gpt2__block_acts *a, float *base,
                           const gpt2_config *c, int B, int T, int Tk,
                           bool keep_att);

/* The model a trainer updates (train.c owns the struct). */
gpt2_model *gpt2__trainer_model(gpt2_trainer *tr);

/* ------------------------------------------------------------ threads */

int gpt2__threads(void);  /* the effective thread count (>= 1) */


/* The CPU runs AVX-512 F/BW/VL with AVX512_BF16 (vdpbf16ps), and this
   build has kernels for it (gemm_bf16_x86.c checks once, for every user:
   the bf16 GEMM and wmat's BF16 rows). */
bool gpt2__x86_has_avx512bf16(void);

/* A hot loop compiled for AVX-512, AVX2 and plain x86-64, chosen at run
   time (GCC's target_clones; one binary runs everywhere). Off under
   clang and ASan, where the resolvers are not supported. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define GPT2_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GPT2_CLONES
#endif

#endif /* GPT2_INTERNAL_H */
