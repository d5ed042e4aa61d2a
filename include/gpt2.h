/* gpt2.h: GPT-2, whole, in C. The one public header, and the manual.
 *
 * A complete program that generates text:
 *
 *     #include <gpt2.h>
 *     #include <stdio.h>
 *
 *     static int on_step(void *user, const gpt2_step *s) {
 *         fwrite(s->text, 1, s->len, stdout); // streamed as it is made
 *         return 0;                           // non-zero stops generation
 *     }
 *
 *     int main(void) {
 *         gpt2_model *m;
 *         if (gpt2_model_load("models/kjv-small", &m) != GPT2_OK) {
 *             fprintf(stderr, "%s\n", gpt2_last_error());
 *             return 1;
 *         }
 *         gpt2_generate_params p = gpt2_generate_defaults();
 *         p.max_new_tokens = 40;
 *         gpt2_generate(m, "In the beginning", &p, on_step, NULL, NULL);
 *         gpt2_model_free(m);
 *     }
 *
 * The pieces, in the order of "The Illustrated GPT-2":
 *   - gpt2_tokenizer_*   byte-level BPE: text <-> token ids
 *   - gpt2_model_*       the read-only model: config, weights, load/save
 *   - gpt2_batch_*       a (B, T) forward over whole sequences (logits, loss)
 *   - gpt2_session_*     generation state: the KV cache of one sequence
 *   - gpt2_sampler_*     logits -> next token (greedy, top-k, top-p, ...)
 *   - gpt2_generate      all of the above in one call
 *
 * Conventions:
 *   - Every function that can fail returns gpt2_status; GPT2_OK is 0. On
 *     failure gpt2_last_error() describes what went wrong (thread-local).
 *   - Every _new/_load has a _free; _free(NULL) does nothing.
 *   - "Borrowed" results point into an object and stay valid until the
 *     next call on that object or its _free.
 *   - A gpt2_model is read-only after loading: any number of sessions and
 *     batches, in any number of threads, may share one model. A session,
 *     batch, sampler or tokenizer call is not thread-safe on the same
 *     object (except tokenizer encode/decode, which only read it).
 */
#ifndef GPT2_H
#define GPT2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPT2_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

typedef enum {
    GPT2_OK = 0,
    GPT2_ERR_IO,      /* a file could not be opened, read or written */
    GPT2_ERR_FORMAT,  /* a file or text is malformed */
    GPT2_ERR_NOMEM,   /* out of memory */
    GPT2_ERR_ARG,     /* an argument is out of range or inconsistent */
    GPT2_ERR_BUFFER   /* the caller's buffer is too short; see each function */
} gpt2_status;

/* A static name for a status code ("ok", "I/O error", ...). */
const char *gpt2_status_str(gpt2_status s);

/* The message of the last failure in this thread (never NULL; "" if none).
   Valid until the next failing call in the same thread. */
const char *gpt2_last_error(void);

/* --------------------------------------------------------------- threads */

/* Threads used by the forward pass and other parallel work. n <= 0 means
   all online cores (the default). Applies process-wide.

   Two sets of threads do the work. Decode (one token at a time) runs on
   gpt2c's own pool: idle workers spin about 100 microseconds, then sleep,
   and the calling thread takes over the work of a worker that has no
   core; and while other processes keep the cores busy (on Linux, seen
   from the run delay of the pool's own threads), decode uses fewer
   threads for a while. So decode stays fast when other processes share
   the cores, and its results do not depend on how many threads took
   part.
   Batched work (prefill, training) runs on OpenMP and oneDNN; OpenMP's
   threads spin after each region unless OMP_WAIT_POLICY=passive is set
   (the gpt2 command sets it for itself), which is worth setting in a
   program that shares its cores.

   Signals: with Debian's oneDNN (before 3.11), a signal handled by a
   thread while it is inside oneDNN's JIT code corrupts the heap (oneDNN
   issue 4845). A program with signal handlers should block them in the
   threads that call gpt2c (before creating any) and take them with
   sigwait in a thread of its own, as `gpt2 train` does. */
void gpt2_set_threads(int n);
int  gpt2_get_threads(void);

/* ------------------------------------------------------------- tokenizer */

/* GPT-2's byte-level BPE: the text is cut by GPT-2's pre-tokenizer pattern
   (with real Unicode letter / number / space classes), each piece's bytes
   are mapped to printable unicode characters, and merges are applied in
   rank order. decode(encode(x)) == x byte for byte.
   - \s is Unicode White_Space, as in GPT-2's Python (the regex module), so
     U+0085 is whitespace and U+FEFF is not (JavaScript ports differ there).
     Letters and numbers follow PCRE2's Unicode tables.
   - Invalid UTF-8: each invalid byte counts as one character of the
     "other" class (as Python's surrogateescape would), so any bytes
     encode and round-trip.
   - A single pre-tokenizer piece over 256 MiB is refused (GPT2_ERR_ARG).
   - GPT2_TOKENIZER_NO_JIT=1 in the environment forces PCRE2's
     interpreter instead of its JIT (for testing). */
typedef struct gpt2_tokenizer gpt2_tokenizer;

#define GPT2_EOT_TEXT "<|endoftext|>"

/* Loads vocab.json + merges.txt (Hugging Face names) from dir, or
   encoder.json + vocab.bpe (OpenAI's names) if those are absent. */
gpt2_status gpt2_tokenizer_load(const char *dir, gpt2_tokenizer **out);
/* Loads from two explicit paths. */
gpt2_status gpt2_tokenizer_load_files(const char *vocab_json,
                                      const char *merges_txt,
                                      gpt2_tokenizer **out);
void gpt2_tokenizer_free(gpt2_tokenizer *t);

/* Writes vocab.json and merges.txt into dir (which must exist). */
gpt2_status gpt2_tokenizer_save(const gpt2_tokenizer *t, const char *dir);

/* Number of ids (50257 for GPT-2). */
int gpt2_tokenizer_vocab_size(const gpt2_tokenizer *t);
/* The id of <|endoftext|>, or -1 if the vocabulary has none. */
int gpt2_tokenizer_eot(const gpt2_tokenizer *t);

/* Flags for gpt2_tokenizer_encode. */
enum {
    /* Recognise the text "<|endoftext|>" as the special token. Without it,
       the text is encoded as ordinary characters, as GPT-2 does. */
    GPT2_ENCODE_SPECIAL = 1
};

/* Encodes len bytes of text (need not be NUL-terminated). Writes at most
   cap ids; *n_ids receives the number of ids. Returns GPT2_ERR_BUFFER,
   with *n_ids the count needed, when cap is too small: cap >= len always
   suffices (a token is at least one byte). Invalid UTF-8 is encoded byte
   by byte like any other text (GPT-2 is byte-level), so it round-trips. */
gpt2_status gpt2_tokenizer_encode(const gpt2_tokenizer *t, const char *text,
                                  size_t len, int flags, int *ids, size_t cap,
                                  size_t *n_ids);

/* The raw bytes of one token (not NUL-terminated; *len receives the
   length). Borrowed from the tokenizer. NULL if id is out of range. */
const char *gpt2_tokenizer_piece(const gpt2_tokenizer *t, int id,
                                 size_t *len);

/* Decodes ids to bytes. Writes at most cap bytes plus a terminating NUL
   when room remains; *len receives the byte count. GPT2_ERR_BUFFER with
   *len the size needed when cap is too small; GPT2_ERR_ARG for an id out
   of range. */
gpt2_status gpt2_tokenizer_decode(const gpt2_tokenizer *t, const int *ids,
                                  size_t n, char *buf, size_t cap,
                                  size_t *len);

/* Streaming decode: tokens may end in the middle of a UTF-8 character.
   The stream holds back an incomplete character until the next bytes
   complete it, so a terminal never shows half a character. Bytes that can
   never form a valid character are passed through as they are. */
typedef struct {
    unsigned char pending[4]; /* bytes of an incomplete character */
    int n_pending;            /* how many; 0..3 */
} gpt2_utf8_stream;

/* Feeds n bytes; writes the bytes ready for output to out, which must have
   room for n + 4 bytes; returns how many were written. */
size_t gpt2_utf8_stream_feed(gpt2_utf8_stream *s, const char *bytes, size_t n,
                             char *out);
/* Writes whatever is held back (at most 4 bytes) and resets the stream. */
size_t gpt2_utf8_stream_flush(gpt2_utf8_stream *s, char *out);

/* ---------------------------------------------------------------- config */

/* The shape of a GPT-2. The four released sizes are presets. */
typedef struct {
    int n_layer;      /* decoder blocks (12 for gpt2) */
    int n_head;       /* attention heads per block (12) */
    int n_embd;       /* model width C (768); a multiple of n_head */
    int n_ctx;        /* context: positions in wpe (1024); "n_positions" */
    int vocab_size;   /* rows of wte (50257) */
    float layer_norm_epsilon; /* 1e-5 */
} gpt2_config;

/* Fills *out for "gpt2" (124M), "gpt2-medium" (355M), "gpt2-large"
   (774M) or "gpt2-xl" (1.5B). GPT2_ERR_ARG for another name. */
gpt2_status gpt2_config_preset(const char *name, gpt2_config *out);

/* Checks that every field is positive, n_embd % n_head == 0 and the sizes
   fit in memory arithmetic. */
gpt2_status gpt2_config_check(const gpt2_config *c);

/* ----------------------------------------------------------------- model */

typedef struct gpt2_model gpt2_model;

/* Storage formats of weights, in files and in memory. F32, F16 and BF16
   are safetensors' own dtypes (Hugging Face can read them). Q8_0 and Q4_0
   are gpt2c's block-quantized formats (docs/formats.md): blocks of 32
   values along a weight row, one F16 scale per block, 8-bit or 4-bit
   integers; 8.5 and 4.5 bits per weight. Only the 2-D weight matrices
   (c_attn, attn.c_proj, c_fc, mlp.c_proj, wte) take Q8_0 or Q4_0; wpe,
   biases and layer norms stay F32. In a Q4_0 model, wte (the embedding
   and the tied LM head, where 4 bits cost the most) is Q8_0. */
typedef enum {
    GPT2_DTYPE_F32 = 0,
    GPT2_DTYPE_F16,
    GPT2_DTYPE_BF16,
    GPT2_DTYPE_Q8_0,
    GPT2_DTYPE_Q4_0
} gpt2_dtype;
const char *gpt2_dtype_name(gpt2_dtype d); /* "F32", "F16", "BF16", "Q8_0", "Q4_0" */
/* The dtype named s (case-insensitive: "f32", "bf16", "q8_0", ...). */
gpt2_status gpt2_dtype_parse(const char *s, gpt2_dtype *out);

/* Loads a model. path is a Hugging Face GPT-2 directory (config.json +
   model.safetensors, and vocab.json + merges.txt, which are optional:
   without both, gpt2_model_tokenizer returns NULL), the path of such a
   directory's model.safetensors, or an llm.c checkpoint file (.bin, magic
   20240326, version 3 float32 or 5 bfloat16). When every tensor is F32
   and aligned, the weights are memory-mapped read-only (nothing is copied;
   the OS pages them in); otherwise (F16, BF16, llm.c) they are converted
   into one float32 block. */
gpt2_status gpt2_model_load(const char *path, gpt2_model **out);

/* Loads as gpt2_model_load, then keeps the weight matrices in dtype
   (converting or quantizing them; the file is unchanged). Decode reads
   every weight once per token, so smaller formats decode faster. Any
   dtype can be chosen for any file; a model loaded in Q8_0 or Q4_0 from
   F32 weights is the same as one saved by `gpt2 quantize` and reloaded.
   Quantized formats need n_embd to be a multiple of 32. */
gpt2_status gpt2_model_load_as(const char *path, gpt2_dtype dtype,
                               gpt2_model **out);

/* A new model with random weights as GPT-2 initialises them: N(0, 0.02),
   residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02/sqrt(2 L)),
   biases 0, layer norms 1 and 0. Same seed, same weights. No tokenizer. */
gpt2_status gpt2_model_init(const gpt2_config *c, uint64_t seed,
                            gpt2_model **out);

void gpt2_model_free(gpt2_model *m);

/* Writes config.json and model.safetensors into dir (created if missing)
   in the given dtype, loadable by Hugging Face transformers. Writes the
   tokenizer files too when the model has a tokenizer. Files are written
   to temporary names, synced, then renamed. */
gpt2_status gpt2_model_save(const gpt2_model *m, const char *dir,
                            gpt2_dtype dtype);

/* Writes llm.c's checkpoint (version 3, float32; the vocabulary padded
   to a multiple of 128 with zero rows). gpt2_model_load reads it. */
gpt2_status gpt2_model_save_llmc(const gpt2_model *m, const char *path);

/* Gives the model a tokenizer (the model takes ownership of t). */
void gpt2_model_set_tokenizer(gpt2_model *m, gpt2_tokenizer *t);

const gpt2_config *gpt2_model_config(const gpt2_model *m);
/* The tokenizer loaded with the model, or NULL. Borrowed. */
const gpt2_tokenizer *gpt2_model_tokenizer(const gpt2_model *m);
/* The dtype the weights were stored in, and whether they are mapped. */
gpt2_dtype gpt2_model_file_dtype(const gpt2_model *m);
int gpt2_model_is_mapped(const gpt2_model *m);
/* The format the weight matrices are kept in memory (what decode reads),
   and the bytes of all weights as kept (what one decode step streams,
   the KV cache aside). */
gpt2_dtype gpt2_model_weight_dtype(const gpt2_model *m);
size_t gpt2_model_weight_bytes(const gpt2_model *m);

/* Parameters, tensor by tensor, in Hugging Face names and shapes. */
size_t gpt2_model_num_params(const gpt2_model *m);
int gpt2_model_num_tensors(const gpt2_model *m);
typedef struct {
    const char *name;  /* "wte.weight", "h.0.attn.c_attn.weight", ... */
    int ndim;          /* 1 or 2 */
    int shape[2];      /* Conv1D layout: (in, out) for linear weights */
    size_t numel;
    gpt2_dtype dtype;  /* the format kept in memory */
    const float *data; /* borrowed; NULL unless dtype is F32 */
    const void *raw;   /* borrowed: the stored bytes (docs/formats.md) */
    size_t bytes;      /* of raw */
} gpt2_tensor_info;
gpt2_status gpt2_model_tensor(const gpt2_model *m, int i,
                              gpt2_tensor_info *out);

/* ----------------------------------------------------------------- batch */

/* A forward pass over B sequences of T tokens at once: the logits at every
   position and, with targets, the mean cross-entropy. Activations are
   sized once in gpt2_batch_new and reused by every call. */
typedef struct gpt2_batch gpt2_batch;

gpt2_status gpt2_batch_new(const gpt2_model *m, int B, int T,
                           gpt2_batch **out);
void gpt2_batch_free(gpt2_batch *b);

/* tokens: B*T ids, row-major (B, T); 1 <= t <= T used columns: all T.
   targets: B*T ids, or NULL; a target of -1 is ignored in the loss.
   *logits (may be NULL): borrowed (B, T, vocab_size) floats.
   *loss (may be NULL): mean cross-entropy in nats over the counted
   targets; NaN when targets is NULL. GPT2_ERR_ARG for an id out of range. */
gpt2_status gpt2_batch_forward(gpt2_batch *b, const int *tokens,
                               const int *targets, const float **logits,
                               float *loss);

/* -------------------------------------------------------------- training */

/* Training on batches of long sequences: forward keeping every
   activation, the mean cross-entropy, backward through every op, then
   AdamW. Parameters, gradients and AdamW's m and v are each one
   contiguous block in the same layout (gpt2_model_tensor order), so an
   update is one loop and an allreduce could take the gradients whole. */
typedef struct gpt2_trainer gpt2_trainer;

typedef struct {
    int batch_size;       /* B: sequences per micro-batch (default 4) */
    int seq_len;          /* T: tokens per sequence (default: n_ctx) */
    float lr;             /* peak learning rate (default 6e-4) */
    float min_lr;         /* floor of the cosine decay (default lr / 10) */
    int warmup_steps;     /* linear warm-up from 0 (default 0) */
    int total_steps;      /* length of the cosine schedule (default 1000) */
    float weight_decay;   /* decoupled, on 2-D tensors only (default 0.1) */
    float beta1, beta2;   /* AdamW moments (0.9, 0.95) */
    float eps;            /* AdamW epsilon (1e-8) */
    float grad_clip;      /* clip the global gradient norm; 0: off (1.0) */
    float dropout;        /* dropout probability in training, after the
                             embedding, on the attention weights and on
                             both residual branches; 0: off (default) */
    uint64_t seed;        /* dropout's random stream */
    gpt2_dtype matmul_dtype; /* GPT2_DTYPE_F32 (default), or
                             GPT2_DTYPE_BF16: mixed precision, the
                             inputs of every matmul rounded to bfloat16,
                             products summed in float32; weights, AdamW
                             and everything else stay float32. About
                             twice as fast on CPUs with AVX512_BF16 or
                             AMX (gpt2_bf16_hardware), slower elsewhere */
} gpt2_train_params;

/* True when this CPU multiplies bfloat16 in hardware (AVX512_BF16 or
   AMX), so GPT2_DTYPE_BF16 training is faster than float32. */
int gpt2_bf16_hardware(void);

gpt2_train_params gpt2_train_defaults(void);

/* The learning rate at step (0-based): linear warm-up to lr over
   warmup_steps, then cosine down to min_lr at total_steps, then min_lr. */
float gpt2_train_lr(const gpt2_train_params *p, int step);

/* Makes a trainer for model m, which it updates in place (m stays usable
   for generation between steps; it must outlive the trainer). A memory-
   mapped model is first copied into memory. Activations for (B, T) are
   allocated here, once. */
gpt2_status gpt2_trainer_new(gpt2_model *m, const gpt2_train_params *p,
                             gpt2_trainer **out);
void gpt2_trainer_free(gpt2_trainer *tr);

/* One micro-batch: tokens and targets (B*T each; target -1 is not
   counted). Adds the gradient of (scale * mean loss) into the gradient
   block; scale is 1/k when k micro-batches make one step. *loss receives
   the micro-batch's mean loss. */
gpt2_status gpt2_trainer_forward_backward(gpt2_trainer *tr, const int *tokens,
                                          const int *targets, float scale,
                                          float *loss);

/* The loss alone (no gradient, dropout off). */
gpt2_status gpt2_trainer_eval(gpt2_trainer *tr, const int *tokens,
                              const int *targets, float *loss);

/* Clips the gradient to grad_clip (global norm), applies AdamW with
   learning rate lr, zeroes the gradient, and counts the step. *grad_norm
   (may be NULL) receives the norm before clipping. */
gpt2_status gpt2_trainer_update(gpt2_trainer *tr, float lr, float *grad_norm);

/* The blocks (n_params floats each, borrowed): parameters, gradients,
   AdamW first and second moments; and the update count so far. To change
   the parameters, write them through the pointer gpt2_trainer_params
   returns after the last step and before the next: a bf16 trainer keeps
   a bf16 copy of them, remade at the next step after that call. */
size_t gpt2_trainer_num_params(const gpt2_trainer *tr);
float *gpt2_trainer_params(gpt2_trainer *tr);
float *gpt2_trainer_grads(gpt2_trainer *tr);
float *gpt2_trainer_adam_m(gpt2_trainer *tr);
float *gpt2_trainer_adam_v(gpt2_trainer *tr);
int gpt2_trainer_steps_done(const gpt2_trainer *tr);
/* Sets the update count (when resuming). Dropout masks are a function of
   (seed, update count, micro-batch index), so they restart here too. */
void gpt2_trainer_set_steps_done(gpt2_trainer *tr, int steps);

/* Checkpoints. A checkpoint directory is a model directory (loads in
   gpt2_model_load and in Hugging Face transformers) plus
   optimizer.safetensors (AdamW's moments as "exp_avg.<tensor name>" and
   "exp_avg_sq.<tensor name>") and trainer_state.json (state_json: the
   caller's JSON object, e.g. step, RNG state, data position). Everything
   is written into "<dir>.tmp", synced, and renamed to dir, so a crash at
   any moment leaves either the old checkpoint or the new one whole. */
gpt2_status gpt2_checkpoint_save(gpt2_trainer *tr, const char *dir,
                                 const char *state_json);
/* Loads AdamW's moments from a checkpoint into tr (the weights come with
   gpt2_model_load of the same directory). */
gpt2_status gpt2_checkpoint_load_optimizer(gpt2_trainer *tr, const char *dir);
/* The newest complete checkpoint "out_dir/step_NNNNNN" (by step number),
   into buf. GPT2_ERR_IO when there is none; GPT2_ERR_BUFFER if cap is
   too small. */
gpt2_status gpt2_checkpoint_latest(const char *out_dir, char *buf,
                                   size_t cap);

/* ------------------------------------------------------------------ data */

/* Token shards: training text as token ids in llm.c's format, so that
   llm.c's data scripts and gpt2c's serve each other. A shard is

       int32 header[256], little-endian: header[0] = 20240520 (magic),
           header[1] = 1 (version), header[2] = token count, others 0
       uint16 tokens[count], little-endian

   named DIR/train_000000.bin, DIR/train_000001.bin, ... and
   DIR/val_000000.bin, ... . docs/formats.md has the details.

       gpt2_prepare_options o = gpt2_prepare_defaults();
       const char *in[] = {"corpus/"};
       o.inputs = in; o.n_inputs = 1; o.out_dir = "data/kjv";
       o.val_fraction = 0.05;
       gpt2_prepare(tok, &o, NULL);                 // text -> shards

       gpt2_loader_options lo = gpt2_loader_defaults();
       lo.batch_size = 4; lo.seq_len = 64;
       gpt2_loader *ld;
       gpt2_loader_open("data/kjv", "train", &lo, &ld); // checks every shard
       gpt2_loader_next(ld, tokens, targets);       // B*T ids each
       gpt2_loader_free(ld);
*/

/* What gpt2_prepare has done so far (also its final result). */
typedef struct {
    const char *current;     /* the input being read ("-" for stdin);
                                borrowed, valid during the callback only;
                                NULL once done */
    uint64_t n_documents;    /* documents finished (train and val) */
    uint64_t n_bytes;        /* input bytes read so far */
    uint64_t n_bytes_total;  /* sizes of all inputs known in advance
                                (regular files; stdin counts 0) */
    uint64_t n_train_tokens; /* tokens written to train shards, EOTs too */
    uint64_t n_val_tokens;   /* tokens written to val shards, EOTs too */
    int n_train_shards;      /* shards begun so far, per split */
    int n_val_shards;
} gpt2_prepare_stats;

/* Called after each chunk of text is encoded, and once at the end. */
typedef void (*gpt2_prepare_progress_fn)(void *user,
                                         const gpt2_prepare_stats *s);

typedef struct {
    /* The training text: n_inputs paths, each a text file, a folder (all
       regular files below it, recursively, in byte order of their paths;
       names starting with '.' are skipped), or "-" for stdin (at most
       once). Every file is one document. */
    const char *const *inputs;
    int n_inputs;
    /* Validation text, given explicitly (same kinds of paths), or NULL.
       Excludes val_fraction. */
    const char *const *val_inputs;
    int n_val_inputs;
    /* Without val_inputs, the share held out for validation, in [0, 1)
       (default 0: no val split). With n >= 2 documents, the last
       ceil(F * n) of them (at most n - 1) in input order. With one
       document (a file; not stdin, whose size is unknown), its tail from
       the first line start at or after byte floor((1 - F) * size),
       which becomes a validation document of its own. */
    double val_fraction;
    const char *out_dir;     /* created (with parents) if missing */
    size_t shard_tokens;     /* tokens per shard, 1 .. 2^31-1
                                (default 100,000,000) */
    size_t chunk_bytes;      /* text encoded at a time per thread
                                (default 1 MiB; tests use tiny ones); the
                                threads (gpt2_set_threads) encode chunks
                                in parallel. A chunk ends where the
                                pre-tokenizer cannot join text across, so
                                the ids equal those of encoding the whole
                                document at once; a long stretch with no
                                such place grows the chunk. */
    gpt2_prepare_progress_fn progress; /* may be NULL */
    void *user;              /* passed to progress */
} gpt2_prepare_options;

gpt2_prepare_options gpt2_prepare_defaults(void);

/* Encodes the documents with t (GPT-2's <|endoftext|>, from
   gpt2_tokenizer_eot, BEFORE each document, as llm.c's data scripts do;
   the text "<|endoftext|>" inside a document is ordinary text) into
   shards of o->shard_tokens tokens in o->out_dir, train and val, in
   document order. Text is streamed: memory does not grow with the input.
   Each shard is written to NAME.tmp, synced and renamed; shards of the
   same split with higher numbers left by an earlier run are then
   removed, so the directory holds exactly this run's shards. *stats (may
   be NULL) receives the totals. Errors: GPT2_ERR_ARG for bad options, a
   tokenizer with more than 65536 ids (they would not fit uint16) or none
   for <|endoftext|>; GPT2_ERR_IO for an input that cannot be read or a
   shard that cannot be written (shards already renamed stay). */
gpt2_status gpt2_prepare(const gpt2_tokenizer *t,
                         const gpt2_prepare_options *o,
                         gpt2_prepare_stats *stats);

/* Reads a split's shards as one stream of tokens, in batches of B rows of
   T tokens with their targets (the next token of each). */
typedef struct gpt2_loader gpt2_loader;

typedef struct {
    int batch_size;     /* B (default 4) */
    int seq_len;        /* T (default 1024) */
    int vocab_size;     /* every id must be < this, 1 .. 65536 (50257) */
    /* 0 (default): sequential. 1: each epoch takes the split's windows of
       T + 1 tokens (window w starts at token w*T) in an order shuffled by
       seed and the epoch number; deterministic and resumable. */
    int shuffle;
    uint64_t seed;
    /* For several processes training together: this one's rank among
       n_ranks (default 0 of 1). Each batch of the shared sequence of
       n_ranks * B * T tokens gives rank r its r-th part. */
    int rank, n_ranks;
} gpt2_loader_options;

gpt2_loader_options gpt2_loader_defaults(void);

/* Opens the shards of one split and validates every one before it
   returns: the header's magic and version, the file's length against the
   header's count (truncated, or longer than it says), every token id <
   vocab_size, and at least B*T*n_ranks + 1 tokens in all. Each problem
   fails with GPT2_ERR_FORMAT (GPT2_ERR_IO if a file cannot be read) and
   a message naming the file. Which shards:
   - path a directory: its files PREFIX*.bin where PREFIX is split + "_"
     (gpt2_prepare's names), or else llm.c's *_SPLIT_*.bin and *_SPLIT.bin
     (e.g. tiny_shakespeare_val.bin), in byte order of their names;
   - otherwise path is a glob(3) pattern (a single file is one), matches
     in sorted order; split is then ignored (may be NULL).
   Shards are memory-mapped, read only. */
gpt2_status gpt2_loader_open(const char *path, const char *split,
                             const gpt2_loader_options *o, gpt2_loader **out);
void gpt2_loader_free(gpt2_loader *ld);

/* The next batch: tokens and targets, B*T ids each, row-major (B, T);
   targets[i] is the token after tokens[i]. Sequentially, one batch is
   B*T + 1 consecutive tokens of the stream (it may span shards) and the
   next starts B*T * n_ranks tokens later. When fewer than
   B*T*n_ranks + 1 tokens are left, the stream starts over from the first
   shard and the epoch count goes up; the left-over tail is skipped. No
   allocation, no failure once open (GPT2_ERR_ARG for NULL buffers). */
gpt2_status gpt2_loader_next(gpt2_loader *ld, int *tokens, int *targets);

/* Where the loader is, for an exact resume. The same for every rank. */
typedef struct {
    uint64_t epoch;  /* epochs completed */
    int shard;       /* the next batch starts at this shard's token ... */
    uint64_t offset; /* ... number offset (sequential order; in shuffled
                        order the same place marks how far into the
                        epoch's order the loader is) */
} gpt2_loader_pos;

void gpt2_loader_tell(const gpt2_loader *ld, gpt2_loader_pos *pos);
/* Goes to a position from gpt2_loader_tell (of a loader over the same
   shards with the same B, T and n_ranks). GPT2_ERR_ARG if the shard or
   offset is out of range, or, in shuffled order, not on a batch
   boundary. */
gpt2_status gpt2_loader_seek(gpt2_loader *ld, const gpt2_loader_pos *pos);
/* Back to the start of epoch 0 (e.g. before each validation pass). */
void gpt2_loader_reset(gpt2_loader *ld);

uint64_t gpt2_loader_num_tokens(const gpt2_loader *ld); /* in the split */
int gpt2_loader_num_shards(const gpt2_loader *ld);
/* The path of shard i (borrowed), NULL if out of range. */
const char *gpt2_loader_shard_path(const gpt2_loader *ld, int i);
/* Batches in one epoch: (num_tokens - 1) / (B*T*n_ranks). */
uint64_t gpt2_loader_batches_per_epoch(const gpt2_loader *ld);

/* end of data */

/* --------------------------------------------------------------- session */

/* One sequence being generated: the tokens so far and, per layer, the K
   and V vectors of every past position (the KV cache), so each new token
   costs one pass of its own through the model. */
typedef struct gpt2_session gpt2_session;

typedef struct {
    /* 1: keep K and V of past tokens (default). 0: recompute the whole
       window at every step (slow; for teaching and tests). */
    int kv_cache;
    /* When the context is full, keep this many most recent tokens and
       re-prefill them before going on. 0 means n_ctx / 2. */
    int slide_keep;
} gpt2_session_options;

gpt2_session_options gpt2_session_defaults(void);

gpt2_status gpt2_session_new(const gpt2_model *m,
                             const gpt2_session_options *opt,
                             gpt2_session **out);
void gpt2_session_free(gpt2_session *s);

/* Forgets all tokens. */
void gpt2_session_reset(gpt2_session *s);

/* Appends n >= 1 tokens, running them through the model as one batch
   (prefill), and returns the logits (vocab_size floats, borrowed) after
   the last. If the context would overflow, the window slides first (see
   slide_keep). */
gpt2_status gpt2_session_prefill(gpt2_session *s, const int *tokens, int n,
                                 const float **logits);

/* Appends one token (a decode step); same as prefill with n = 1. */
gpt2_status gpt2_session_step(gpt2_session *s, int token,
                              const float **logits);

/* Makes dst (a session of the same model and options) continue exactly
   where src is: its tokens and the K and V of every cached position are
   copied, not recomputed. Beam search uses it to fork beams that share a
   prompt. */
gpt2_status gpt2_session_copy(gpt2_session *dst, const gpt2_session *src);

/* The logits after the last token fed (vocab_size floats, borrowed), or
   NULL before any token. */
const float *gpt2_session_logits(const gpt2_session *s);

/* Tokens currently in the window (borrowed) and their count. */
const int *gpt2_session_tokens(const gpt2_session *s, int *n);
/* How many times the window has slid. */
int gpt2_session_slides(const gpt2_session *s);

/* --------------------------------------------------------------- sampler */

typedef struct {
    float temperature;        /* 0: greedy (argmax). Default 1. */
    int top_k;                /* keep the k most likely; 0: all. */
    float top_p;              /* keep the smallest set of mass >= p; 1: all */
    float repetition_penalty; /* > 1 discourages tokens already seen (CTRL's
                                 rule: positive logits / p, negative * p);
                                 1: off */
    uint64_t seed;            /* same seed, same choices */
} gpt2_sampler_params;

gpt2_sampler_params gpt2_sampler_defaults(void);

typedef struct gpt2_sampler gpt2_sampler;
gpt2_status gpt2_sampler_new(const gpt2_sampler_params *p, int vocab_size,
                             gpt2_sampler **out);
void gpt2_sampler_free(gpt2_sampler *s);

/* Chooses the next token from logits (vocab_size floats, not modified).
   history: the n_hist tokens the repetition penalty looks at (may be
   NULL). *token receives the choice; *logprob (may be NULL) its
   log-probability under the model's plain softmax (temperature 1, no
   filters), which is what the tutorial's probability figures show. */
gpt2_status gpt2_sampler_sample(gpt2_sampler *s, const float *logits,
                                const int *history, int n_hist, int *token,
                                float *logprob);

/* The k most likely tokens under softmax(logits), best first: ids and
   log-probabilities. k is clamped to vocab_size; returns the count. */
int gpt2_top_candidates(const float *logits, int vocab_size, int k,
                        int *ids, float *logprobs);

/* ----------------------------------------------------------- beam search */

/* Beam search: the sequences of highest joint probability, not one token
   at a time (the tutorial's "sequences by joint probability"). N beams
   are kept; at every step each beam's next-token log-probabilities
   (log-softmax of its logits) are added to the beam's own, and the N best
   continuations of all beams go on. The rules are Hugging Face
   transformers' (BeamSearchScorer), made deterministic:
   - The prompt is prefilled once, in one session; beams fork from it with
     gpt2_session_copy (the cache is copied, not recomputed), and a beam
     whose parent changes takes a copy of the parent's cache, while the
     first child of each parent keeps the parent's session itself.
   - The beams start as one (the prompt), so no two beams are ever the
     same sequence; there may be fewer than N live beams while fewer
     distinct continuations exist (num_beams may exceed the vocabulary).
   - Each step ranks all continuations by score (ties: lower beam, then
     lower token id first) and looks at the best 2 N. A continuation by
     the end token (eot_token, when stop_at_eot) finishes a hypothesis,
     but only when it ranks among the best N (Hugging Face's rule); the
     others become the next beams, at most N.
   - A finished hypothesis is scored with Hugging Face's length penalty:
     score = logprob / n_tokens ^ length_penalty, where logprob is the
     sum of its tokens' log-probabilities and n_tokens counts the tokens
     generated, the end token included. length_penalty > 0 favours longer
     sequences (their sum is negative), < 0 shorter ones, 0 ignores
     length. The pool keeps the num_beams best hypotheses.
   - Stopping: early_stopping = 1 stops once num_beams hypotheses are
     finished. early_stopping = 0 (Hugging Face's default heuristic) stops
     once num_beams are finished and the worst of them scores at least the
     best continuation of this step divided by the current length ^
     length_penalty (the best a live beam could score if it ended now;
     with length_penalty > 0 a longer one could in principle still do
     better, as in Hugging Face). Otherwise the search runs to
     max_new_tokens, where the live beams join the pool as they are.
   - no_repeat_ngram n: a token that would complete an n-gram already in
     the beam's sequence (prompt and generated tokens, as Hugging Face)
     gets probability 0. A beam left without any allowed token drops out;
     if no beam has one, the live beams finish as they are.
   - Long sequences: when prompt + generated tokens outgrow the context,
     each beam's window slides as in gpt2_generate (the session keeps the
     most recent n_ctx / 2 tokens and runs them again), so the model sees
     a truncated history from then on; scores keep adding what the model
     gives. A prompt longer than the context is cut to its last n_ctx
     tokens the same way. The n-gram rule still sees the whole sequence.
   Memory: one session (KV cache of n_ctx positions) per live beam, made
   as needed, plus num_beams x max_new_tokens ids and floats, twice.
   Cost: one decode step per live beam per token. With num_beams = 1 the
   result is greedy decoding (gpt2_generate at temperature 0). */

#define GPT2_BEAM_MAX 65536 /* the largest num_beams */

typedef struct {
    int num_beams;        /* N, 1 .. GPT2_BEAM_MAX (default 4) */
    int num_return;       /* hypotheses returned, 1 .. num_beams (1) */
    int max_new_tokens;   /* tokens generated at most, >= 0 (64) */
    float length_penalty; /* exponent of the length in the score; any
                             finite value (default 1) */
    int no_repeat_ngram;  /* n >= 1: never repeat an n-gram; 0: off (0) */
    int early_stopping;   /* 1: stop when num_beams hypotheses are done;
                             0: the heuristic above (default 0) */
    int stop_at_eot;      /* the end token finishes a hypothesis (1) */
    int eot_token;        /* the end token; -1 (default): the model's
                             tokenizer's <|endoftext|>, none without a
                             tokenizer */
    int kv_cache;         /* 0: every beam recomputes its window at each
                             step (slow, same result) (default 1) */
} gpt2_beam_params;

gpt2_beam_params gpt2_beam_defaults(void);

/* One finished hypothesis. */
typedef struct {
    int *tokens;       /* the generated ids (not the prompt), n_tokens; the
                          last is the end token when ended_at_eot */
    float *logprobs;   /* each token's log-probability under the model's
                          softmax (n_tokens) */
    int n_tokens;
    int ended_at_eot;  /* 1: ended with the end token; 0: max length */
    double logprob;    /* the sum of logprobs: the joint log-probability */
    double score;      /* logprob / n_tokens ^ length_penalty (logprob
                          when n_tokens is 0) */
} gpt2_beam_hyp;

typedef struct {
    int n;              /* hypotheses, num_return or fewer when fewer
                           distinct sequences exist (max_new_tokens 0
                           gives one, empty) */
    gpt2_beam_hyp *hyp; /* n of them, best score first (ties: the one
                           finished first) */
    int n_steps;        /* steps the search made (tokens per beam) */
} gpt2_beam_result;

/* What the search tells the caller after each step: the live beams that
   go on, best first. Everything is borrowed for the call only. */
typedef struct {
    int index;                /* the step just made; 0 for the first token */
    int n_beams;              /* live beams (>= 1) */
    const int *const *tokens; /* tokens[b]: beam b's index + 1 generated ids */
    const double *logprobs;   /* logprobs[b]: the sum of their log-probs */
    int n_finished;           /* hypotheses in the pool (<= num_beams) */
} gpt2_beam_step;

/* Return non-zero to stop: the live beams then join the pool as if
   max_new_tokens had been reached. */
typedef int (*gpt2_beam_step_fn)(void *user, const gpt2_beam_step *step);

/* Runs beam search from prompt (n_prompt >= 1 ids) on m. on_step may be
   NULL. On success *out owns the result; free it with
   gpt2_beam_result_free. Errors: GPT2_ERR_ARG for a bad parameter
   (num_beams out of range, num_return > num_beams, a length penalty that
   is not finite, a negative count, eot_token outside the vocabulary) or a
   prompt id out of range; GPT2_ERR_NOMEM. Sessions are the search's own:
   several searches may share one model in different threads. */
gpt2_status gpt2_beam_search(const gpt2_model *m, const int *prompt,
                             int n_prompt, const gpt2_beam_params *p,
                             gpt2_beam_step_fn on_step, void *user,
                             gpt2_beam_result **out);
void gpt2_beam_result_free(gpt2_beam_result *r);

/* end of beam search */

/* ------------------------------------------------------------- attention */

/* The attention weights of every layer and head for one text: which
   earlier tokens each token attends to (the tutorial's "it -> a robot").
   Captured by one forward pass; exported as JSON, a self-contained HTML
   page, or an SVG/PNG heatmap of one layer and head. */
typedef struct gpt2_attention gpt2_attention;

/* Runs tokens (1 <= n_tokens <= n_ctx) through m and keeps, per layer and
   head, the (T, T) softmax weights (row = query, column = key; 0 above
   the diagonal, the causal mask) and, with keep_scores, the raw scores
   q.k / sqrt(head size) before the mask and softmax. Memory: n_layer *
   n_head * T * T floats (twice with scores). */
gpt2_status gpt2_attention_capture(const gpt2_model *m, const int *tokens,
                                   int n_tokens, int keep_scores,
                                   gpt2_attention **out);
void gpt2_attention_free(gpt2_attention *a);

int gpt2_attention_n_tokens(const gpt2_attention *a);
int gpt2_attention_n_layers(const gpt2_attention *a);
int gpt2_attention_n_heads(const gpt2_attention *a);
/* The token ids (borrowed). */
const int *gpt2_attention_tokens(const gpt2_attention *a);
/* (T, T) weights of one layer and head (borrowed); NULL out of range. */
const float *gpt2_attention_weights(const gpt2_attention *a, int layer,
                                    int head);
/* (T, T) raw scores (borrowed); masked cells (key after query) hold the
   score the mask removed. NULL without keep_scores or out of range. */
const float *gpt2_attention_scores(const gpt2_attention *a, int layer,
                                   int head);

/* Exports (t gives each token's text; it may be NULL: ids only). Layers
   and heads count from 0. Files are written to a temporary name and
   renamed into place.
   JSON: {"tokens": [ids], "pieces": [strings], "n_layer", "n_head",
   "attention": [layer][head][query][key]} and, when captured, "scores"
   with masked cells as null; numbers as %.6g; a piece that is not valid
   UTF-8 has U+FFFD in place of the bad bytes, an unknown id a null piece.
   Streamed: memory stays bounded however large the capture.
   HTML: one self-contained page (no network) with the head view, model
   view, matrix view and "attends to" panel; the capture is embedded in it
   as JSON (format in web/attention.html). GPT2_ERR_ARG when that data
   would pass 384 MiB, more than a browser reads: capture fewer tokens or
   leave out the scores.
   SVG and PNG: a heatmap of one layer and head, white (0) to dark blue
   (1) on a fixed scale so maps compare, masked cells grey, with a colour
   bar and token labels (PNG: up to 96 tokens, ASCII in a small bitmap
   font; SVG: tooltips per cell up to 128 tokens). The PNG carries a tEXt
   chunk "gpt2c-heatmap" giving the grid's position, so tools can read the
   values back. */
gpt2_status gpt2_attention_write_json(const gpt2_attention *a,
                                      const gpt2_tokenizer *t,
                                      const char *path);
gpt2_status gpt2_attention_write_html(const gpt2_attention *a,
                                      const gpt2_tokenizer *t,
                                      const char *path);
gpt2_status gpt2_attention_write_svg(const gpt2_attention *a,
                                     const gpt2_tokenizer *t, int layer,
                                     int head, const char *path);
gpt2_status gpt2_attention_write_png(const gpt2_attention *a,
                                     const gpt2_tokenizer *t, int layer,
                                     int head, const char *path);

/* -------------------------------------------------------------- generate */

typedef struct {
    int max_new_tokens;          /* default 64 */
    gpt2_sampler_params sampler; /* default gpt2_sampler_defaults() */
    int stop_at_eot;             /* stop at <|endoftext|> (default 1) */
    const char *const *stop;     /* NULL-terminated stop strings, or NULL */
    int kv_cache;                /* default 1 */
} gpt2_generate_params;

gpt2_generate_params gpt2_generate_defaults(void);

/* What gpt2_generate tells the caller after each new token. */
typedef struct {
    int index;            /* 0 for the first generated token */
    int token;            /* the id chosen; -1 in a last call that only
                             releases text held back at the end */
    float logprob;        /* its log-probability under softmax(logits) */
    const float *logits;  /* the raw logits it was chosen from (vocab_size
                             floats, borrowed for this call only; NULL in
                             the last call with token -1) */
    const char *text;     /* bytes released for output now: whole UTF-8
                             characters, held back while they could still
                             begin a stop string; may be empty */
    size_t len;           /* length of text */
} gpt2_step;

/* Return non-zero to stop generation. */
typedef int (*gpt2_step_fn)(void *user, const gpt2_step *step);

/* Encodes prompt with the model's tokenizer, generates, streams each token
   to on_step (may be NULL). *n_generated (may be NULL) receives the count.
   Text after a stop string is not delivered; the stop string itself is
   not delivered either. GPT2_ERR_ARG if the model has no tokenizer or the
   prompt is empty. */
gpt2_status gpt2_generate(const gpt2_model *m, const char *prompt,
                          const gpt2_generate_params *p, gpt2_step_fn on_step,
                          void *user, int *n_generated);

/* The same from token ids (n_prompt >= 1), for callers that tokenized the
   prompt themselves. Needs a tokenizer only for the text of each step
   (without one, text is empty and stop strings are ignored). */
gpt2_status gpt2_generate_ids(const gpt2_model *m, const int *prompt,
                              int n_prompt, const gpt2_generate_params *p,
                              gpt2_step_fn on_step, void *user,
                              int *n_generated);

#ifdef __cplusplus
}
#endif
#endif /* GPT2_H */
