/* data.c: training data as token shards in llm.c's format.

   gpt2_prepare: text files, folders of them, or stdin -> documents ->
   <|endoftext|> + ids of each document -> shards DIR/train_NNNNNN.bin and
   DIR/val_NNNNNN.bin (a 256 x int32 header, then uint16 ids).
   gpt2_loader: a split's shards -> validated once -> batches of B x T
   inputs and targets, sequential or shuffled, with an exact position to
   resume from.

   Why text can be encoded in chunks. GPT-2's pre-tokenizer is
     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
   matched left to right, each match starting where the last ended. It has
   no look-behind, so what it does from a piece boundary on does not depend
   on the text before; a cut is therefore safe where the whole text has a
   piece boundary AND the text before the cut, ending there, is cut into
   the same pieces. Let c be the cut (text[c] is the first byte after it):
   (A) text[c-1] is not a space and text[c] is: the piece holding c-1 is a
       contraction or a ` ?X+` run, which cannot take a space after its
       first character, so it ends at c. Nothing before c looks at text[c]
       with a class that contains spaces: the same pieces end at c.
   (B) text[c-1] and text[c] are spaces and text[c+1] is not: the whole
       text's `\s+(?!\S)` takes the run up to c (backing off one, because
       text[c+1] is \S), then text[c] is a piece of its own or the ` ?` of
       the next word. Ending at c, the run is taken whole by `\s+(?!\S)`
       too: the same piece.
   (C) text[c-1] and text[c] are printable ASCII of different kinds
       (letter, digit, other) and text[c-1] is not an apostrophe (which
       would start a contraction, "'s", across the cut): ` ?\p{L}+`,
       ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+` each stop at a change of kind.
   Anywhere else inside a run of spaces is NOT safe: "a    b" is "a",
   "   ", " b", but "a " + "   b" gives "a", " ", "  ", " b"; nor is after
   a newline that ends a run: "a \n" alone is "a", " \n", but "a \nb" is
   "a", " ", "\n", "b". So a chunk ends at the last safe cut; where a chunk
   has none (a long run of spaces) it grows until one comes. Only ASCII
   bytes are looked at, so a cut never splits a UTF-8 character and
   Unicode spaces (U+00A0, ...) are simply never cut at. Chunks are encoded
   in parallel, one per thread, and written in order. tests/test_data.c
   checks chunked == whole on adversarial text with every chunk size. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define LLMC_MODEL_MAGIC 20240326 /* a model checkpoint given by mistake */
#define HEADER_INTS 256
#define HEADER_BYTES (HEADER_INTS * 4)
#define MAX_SHARD_TOKENS 2147483647u /* the header's int32 count */
#define MAX_IDS 65536                /* what uint16 holds */
#define DEFAULT_SHARD_TOKENS 100000000u
#define DEFAULT_CHUNK_BYTES ((size_t)1 << 20)
#define WRITE_BUF_BYTES ((size_t)1 << 16)
#define MAX_DEPTH 64 /* folder nesting: beyond this, a symlink loop */
#define PATH_CAP 4096

static uint32_t le32_read(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void le32_write(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static gpt2_status write_all(int fd, const void *data, size_t len,
                             const char *path) {
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return GPT2_OK;
}

/* ================================================================ prepare */

gpt2_prepare_options gpt2_prepare_defaults(void) {
    gpt2_prepare_options o;
    memset(&o, 0, sizeof o);
    o.shard_tokens = DEFAULT_SHARD_TOKENS;
    o.chunk_bytes = DEFAULT_CHUNK_BYTES;
    return o;
}

/* ------------------------------------------------------------- documents */

/* One input file (or stdin); every document starts with <|endoftext|>. */
typedef struct {
    char *path;      /* NULL for stdin */
    uint64_t size;   /* bytes, when known */
    bool regular;    /* a regular file: size known, seekable */
    uint64_t dev, ino; /* which file, however its path is spelt */
} doc;

typedef struct {
    doc *v;
    size_t n, cap;
} doc_list;

static void docs_free(doc_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static gpt2_status docs_add(doc_list *l, const char *path,
                            const struct stat *sb) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        doc *v = realloc(l->v, cap * sizeof *v);
        if (!v) return gpt2__fail(GPT2_ERR_NOMEM, "prepare: out of memory listing inputs");
        l->v = v;
        l->cap = cap;
    }
    char *copy = path ? strdup(path) : NULL;
    if (path && !copy) return gpt2__fail(GPT2_ERR_NOMEM, "prepare: out of memory listing inputs");
    bool regular = sb && S_ISREG(sb->st_mode);
    l->v[l->n++] = (doc){copy, regular ? (uint64_t)sb->st_size : 0, regular,
                         sb ? (uint64_t)sb->st_dev : 0, sb ? (uint64_t)sb->st_ino : 0};
    return GPT2_OK;
}

static int doc_cmp(const void *a, const void *b) {
    return strcmp(((const doc *)a)->path, ((const doc *)b)->path);
}

/* Adds the regular files below dir (not sorted yet); skips dot-names. */
static gpt2_status docs_walk(doc_list *l, const char *dir, int depth) {
    if (depth > MAX_DEPTH)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: %s: folders nested more than %d "
                          "deep (a symlink loop?)", dir, MAX_DEPTH);
    DIR *d = opendir(dir);
    if (!d) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", dir, strerror(errno));
    gpt2_status st = GPT2_OK;
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_CAP];
        struct stat sb;
        st = gpt2__join_path(path, sizeof path, dir, e->d_name);
        if (st) break;
        if (stat(path, &sb) != 0) /* a dangling link, or it just vanished */
            st = gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", path, strerror(errno));
        else if (S_ISDIR(sb.st_mode))
            st = docs_walk(l, path, depth + 1);
        else if (S_ISREG(sb.st_mode))
            st = docs_add(l, path, &sb);
        /* fifos, sockets, devices inside a folder are not documents */
    }
    closedir(d);
    return st;
}

/* Expands one input argument: "-", a file, or a folder (sorted by path). */
static gpt2_status docs_expand(doc_list *l, const char *in, bool *stdin_used) {
    if (!in || !in[0]) return gpt2__fail(GPT2_ERR_ARG, "prepare: an input path is empty");
    if (strcmp(in, "-") == 0) {
        if (*stdin_used)
            return gpt2__fail(GPT2_ERR_ARG, "prepare: \"-\" (stdin) is given twice");
        *stdin_used = true;
        return docs_add(l, NULL, NULL);
    }
    struct stat sb;
    if (stat(in, &sb) != 0) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", in, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) /* a file, or a pipe such as <(cmd) */
        return docs_add(l, in, &sb);
    size_t first = l->n;
    gpt2_status st = docs_walk(l, in, 0);
    if (st) return st;
    if (l->n == first)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: %s: the folder holds no files", in);
    qsort(l->v + first, l->n - first, sizeof *l->v, doc_cmp);
    return GPT2_OK;
}

static gpt2_status docs_collect(doc_list *l, const char *const *in, int n,
                                bool *stdin_used) {
    for (int i = 0; i < n; i++) {
        gpt2_status st = docs_expand(l, in[i], stdin_used);
        if (st) return st;
    }
    return GPT2_OK;
}

static int doc_id_cmp(const void *a, const void *b) {
    const doc *x = *(const doc *const *)a, *y = *(const doc *const *)b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* A file in both splits would put validation text into training. */
static gpt2_status docs_disjoint(const doc_list *train, const doc_list *val) {
    size_t n = train->n + val->n;
    const doc **all = gpt2__malloc(n, sizeof *all, "prepare: inputs");
    if (!all) return GPT2_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        all[i] = i < train->n ? &train->v[i] : &val->v[i - train->n];
    qsort(all, n, sizeof *all, doc_id_cmp);
    gpt2_status st = GPT2_OK;
    for (size_t i = 1; !st && i < n; i++) {
        const doc *a = all[i - 1], *b = all[i];
        bool a_val = a >= val->v && a < val->v + val->n;
        bool b_val = b >= val->v && b < val->v + val->n;
        if (a->path && b->path && doc_id_cmp(&a, &b) == 0 && a_val != b_val)
            st = gpt2__fail(GPT2_ERR_ARG, "prepare: %s is both a training and a "
                            "validation input", b_val ? b->path : a->path);
    }
    free(all);
    return st;
}

/* ---------------------------------------------------------- shard writer */

/* Writes one split's shards: ids are buffered, a shard is opened when its
   first id comes (so no empty shard is ever written) and closed, with its
   header filled in, synced and renamed, when full or at the end. */
typedef struct {
    const char *dir, *split;
    uint64_t per_shard;
    int index;            /* shards begun */
    int fd;               /* the open shard's temp file, or -1 */
    char path[PATH_CAP], tmp[PATH_CAP + 8];
    uint64_t in_shard;    /* ids in the open shard */
    uint64_t total;       /* ids in all shards */
    uint8_t *buf;         /* WRITE_BUF_BYTES */
    size_t n_buf;
} shard_writer;

static gpt2_status writer_init(shard_writer *w, const char *dir,
                               const char *split, uint64_t per_shard) {
    memset(w, 0, sizeof *w);
    w->dir = dir;
    w->split = split;
    w->per_shard = per_shard;
    w->fd = -1;
    w->buf = gpt2__malloc(WRITE_BUF_BYTES, 1, "prepare: write buffer");
    return w->buf ? GPT2_OK : GPT2_ERR_NOMEM;
}

static gpt2_status writer_open(shard_writer *w) {
    char name[64];
    snprintf(name, sizeof name, "%s_%06d.bin", w->split, w->index);
    gpt2_status st = gpt2__join_path(w->path, sizeof w->path, w->dir, name);
    if (st) return st;
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", w->path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", w->tmp, strerror(errno));
    w->index++;
    w->in_shard = 0;
    uint8_t zeros[HEADER_BYTES] = {0}; /* the header, filled in at close */
    return write_all(w->fd, zeros, sizeof zeros, w->tmp);
}

static gpt2_status writer_flush(shard_writer *w) {
    gpt2_status st = write_all(w->fd, w->buf, w->n_buf, w->tmp);
    w->n_buf = 0;
    return st;
}

static gpt2_status writer_close(shard_writer *w) {
    gpt2_status st = writer_flush(w);
    if (st) return st;
    uint8_t h[HEADER_BYTES] = {0};
    le32_write(h, SHARD_MAGIC);
    le32_write(h + 4, SHARD_VERSION);
    le32_write(h + 8, (uint32_t)w->in_shard);
    if (pwrite(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h || fsync(w->fd) != 0)
        return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", w->tmp, strerror(errno));
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", w->tmp, strerror(errno));
    if (rename(w->tmp, w->path) != 0)
        return gpt2__fail(GPT2_ERR_IO, "prepare: rename %s: %s", w->path, strerror(errno));
    return GPT2_OK;
}

/* Appends n ids (each < 65536: the tokenizer was checked) to the split. */
static gpt2_status writer_put(shard_writer *w, const int *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        gpt2_status st = GPT2_OK;
        if (w->fd < 0 && (st = writer_open(w))) return st;
        w->buf[w->n_buf++] = (uint8_t)ids[i];
        w->buf[w->n_buf++] = (uint8_t)(ids[i] >> 8);
        w->in_shard++;
        w->total++;
        if (w->n_buf == WRITE_BUF_BYTES && (st = writer_flush(w))) return st;
        if (w->in_shard == w->per_shard && (st = writer_close(w))) return st;
    }
    return GPT2_OK;
}

/* Drops the open shard's temp file (after a failure) and the buffer. */
static void writer_free(shard_writer *w) {
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
    }
    free(w->buf);
    w->buf = NULL;
}

/* Removes SPLIT_N.bin with N >= keep: shards an earlier, longer run left. */
static void remove_stale_shards(const char *dir, const char *split, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    size_t k = strlen(split);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (strncmp(s, split, k) != 0 || s[k] != '_') continue;
        const char *num = s + k + 1, *p = num;
        while (*p >= '0' && *p <= '9') p++;
        if (p == num || strcmp(p, ".bin") != 0) continue;
        if (strtol(num, NULL, 10) < keep) continue;
        char path[PATH_CAP];
        if (gpt2__join_path(path, sizeof path, dir, s) == GPT2_OK) unlink(path);
    }
    closedir(d);
}

/* So the renames themselves survive a crash. */
static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    fsync(fd); /* some file systems refuse; the shards are synced anyway */
    close(fd);
}

static gpt2_status make_dirs(const char *dir) {
    char path[PATH_CAP];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: out_dir is empty or too long");
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        char c = path[i];
        path[i] = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return gpt2__fail(GPT2_ERR_IO, "prepare: mkdir %s: %s", path, strerror(errno));
        path[i] = c;
    }
    if (!gpt2__is_dir(dir))
        return gpt2__fail(GPT2_ERR_IO, "prepare: %s: not a folder", dir);
    return GPT2_OK;
}

/* ------------------------------------------------------- chunked encode */

enum { K_SPACE, K_LETTER, K_DIGIT, K_OTHER, K_UNKNOWN };

/* The kind of a byte, as far as safe cuts are concerned: only ASCII is
   classed; anything else (UTF-8, controls) is never cut next to. */
static int byte_kind(uint8_t b) {
    if (b == ' ' || (b >= '\t' && b <= '\r')) return K_SPACE;
    if ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') return K_LETTER;
    if (b >= '0' && b <= '9') return K_DIGIT;
    if (b > ' ' && b < 0x7f) return K_OTHER;
    return K_UNKNOWN;
}

static bool solid(int k) { return k == K_LETTER || k == K_DIGIT || k == K_OTHER; }

/* Whether encoding s[0..c) and s[c..) apart gives the ids of s whole
   (the rules A, B, C at the top of this file). Needs 0 < c < n. */
static bool safe_cut(const uint8_t *s, size_t n, size_t c) {
    int before = byte_kind(s[c - 1]), at = byte_kind(s[c]);
    if (solid(before) && at == K_SPACE) return true;                  /* A */
    if (before == K_SPACE && at == K_SPACE)                           /* B */
        return c + 1 < n && solid(byte_kind(s[c + 1]));
    return solid(before) && solid(at) && before != at && s[c - 1] != '\''; /* C */
}

/* The last safe cut in s[0..n), or 0 if there is none. */
static size_t last_safe_cut(const uint8_t *s, size_t n) {
    for (size_t c = n; c-- > 1;)
        if (safe_cut(s, n, c)) return c;
    return 0;
}

/* A stretch of the buffer encoded by one thread: [begin, end) of the
   text, its ids at ids + begin (a piece never has more ids than bytes). */
typedef struct {
    size_t begin, end, n_ids;
    gpt2_status st;
    char msg[256];      /* the worker thread's error message */
} piece;

/* The state of one gpt2_prepare call. */
typedef struct {
    const gpt2_tokenizer *t;
    const gpt2_prepare_options *o;
    gpt2_prepare_stats stats;
    char *buf;          /* text read but not yet encoded */
    size_t cap, len;
    int *ids;           /* cap ids: enough for cap bytes */
    piece *pieces;      /* n_threads */
    int n_threads;
    shard_writer w[2];  /* train, val */
} prep;

static void report(prep *p, const char *current) {
    p->stats.n_train_tokens = p->w[0].total;
    p->stats.n_val_tokens = p->w[1].total;
    p->stats.n_train_shards = p->w[0].index;
    p->stats.n_val_shards = p->w[1].index;
    p->stats.current = current;
    if (p->o->progress) p->o->progress(p->o->user, &p->stats);
}

static gpt2_status prep_grow(prep *p) {
    size_t cap = 2 * p->cap;
    if (cap < p->cap || cap > SIZE_MAX / sizeof(int))
        return gpt2__fail(GPT2_ERR_NOMEM, "prepare: text buffer too large");
    char *buf = realloc(p->buf, cap);
    if (!buf) return gpt2__fail(GPT2_ERR_NOMEM, "prepare: out of memory (%zu bytes of text "
                                "without a place to cut)", p->len);
    p->buf = buf;
    int *ids = realloc(p->ids, cap * sizeof *ids);
    if (!ids) return gpt2__fail(GPT2_ERR_NOMEM, "prepare: out of memory (%zu ids)", cap);
    p->ids = ids;
    p->cap = cap;
    return GPT2_OK;
}

/* Reads until the buffer is full, *left bytes were read, or end of file. */
static gpt2_status fill(prep *p, int fd, const char *name, uint64_t *left,
                        bool *eof) {
    while (p->len < p->cap && !*eof) {
        size_t want = p->cap - p->len;
        if (want > *left) want = (size_t)*left;
        ssize_t r = read(fd, p->buf + p->len, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", name, strerror(errno));
        p->len += (size_t)r;
        p->stats.n_bytes += (uint64_t)r;
        *left -= (uint64_t)r;
        *eof = r == 0 || *left == 0;
    }
    return GPT2_OK;
}

/* The safe cut nearest below start + chunk (else the first above it)
   within (start, end); end if there is none. */
static size_t next_piece_end(const prep *p, size_t start, size_t end) {
    const uint8_t *s = (const uint8_t *)p->buf;
    size_t target = start + p->o->chunk_bytes;
    if (target >= end) return end;
    for (size_t c = target; c > start; c--)
        if (safe_cut(s, p->len, c)) return c;
    for (size_t c = target + 1; c < end; c++)
        if (safe_cut(s, p->len, c)) return c;
    return end;
}

/* Cuts [0, end) into at most n_threads pieces of about chunk_bytes. */
static int plan_pieces(prep *p, size_t end) {
    int k = 0;
    for (size_t start = 0; start < end; k++) {
        size_t stop = k + 1 == p->n_threads ? end : next_piece_end(p, start, end);
        p->pieces[k] = (piece){.begin = start, .end = stop};
        start = stop;
    }
    return k;
}

static void encode_piece(const prep *p, piece *c) {
    c->st = gpt2_tokenizer_encode(p->t, p->buf + c->begin, c->end - c->begin, 0,
                                  p->ids + c->begin, c->end - c->begin, &c->n_ids);
    if (c->st) snprintf(c->msg, sizeof c->msg, "%s", gpt2_last_error());
}

/* Encodes the first n bytes of the buffer (pieces in parallel), writes
   the ids in order to the split, keeps the rest of the text. */
static gpt2_status encode_front(prep *p, size_t n, shard_writer *w) {
    int k = plan_pieces(p, n);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(p->n_threads) if (k > 1)
#endif
    for (int i = 0; i < k; i++) encode_piece(p, &p->pieces[i]);
    for (int i = 0; i < k; i++) {
        const piece *c = &p->pieces[i];
        if (c->st) return gpt2__fail(c->st, "prepare: %s", c->msg);
        gpt2_status st = writer_put(w, p->ids + c->begin, c->n_ids);
        if (st) return st;
    }
    memmove(p->buf, p->buf + n, p->len - n);
    p->len -= n;
    return GPT2_OK;
}

/* One document: <|endoftext|>, then the ids of the next limit bytes of fd
   (or all of it), encoded chunk by chunk at safe cuts. */
static gpt2_status encode_document(prep *p, int fd, const char *name,
                                   uint64_t limit, shard_writer *w) {
    int eot = gpt2_tokenizer_eot(p->t);
    gpt2_status st = writer_put(w, &eot, 1);
    uint64_t left = limit;
    bool eof = limit == 0;
    p->len = 0;
    while (!st) {
        st = fill(p, fd, name, &left, &eof);
        if (st) break;
        size_t cut = eof ? p->len : last_safe_cut((const uint8_t *)p->buf, p->len);
        if (cut == 0 && !eof) {
            st = prep_grow(p);
            continue;
        }
        if (cut) st = encode_front(p, cut, w);
        report(p, name);
        if (eof) break;
    }
    if (!st) p->stats.n_documents++;
    return st;
}

/* Opens a document for reading (stdin for NULL). */
static gpt2_status doc_open(const doc *d, int *fd) {
    *fd = d->path ? open(d->path, O_RDONLY) : STDIN_FILENO;
    if (*fd < 0) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", d->path, strerror(errno));
    return GPT2_OK;
}

static void doc_close(const doc *d, int fd) {
    if (d->path) close(fd);
}

static gpt2_status encode_whole(prep *p, const doc *d, shard_writer *w) {
    int fd;
    gpt2_status st = doc_open(d, &fd);
    if (st) return st;
    st = encode_document(p, fd, d->path ? d->path : "-", UINT64_MAX, w);
    doc_close(d, fd);
    return st;
}

/* The first line start at or after byte target of a regular file: the
   smallest q >= target with q == 0 or byte q-1 == '\n'; size if none. */
static gpt2_status line_start_after(prep *p, int fd, const doc *d,
                                    uint64_t target, uint64_t *q) {
    *q = d->size;
    if (target == 0) {
        *q = 0;
        return GPT2_OK;
    }
    for (uint64_t at = target - 1; at < d->size;) {
        ssize_t r = pread(fd, p->buf, p->cap, (off_t)at);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return gpt2__fail(GPT2_ERR_IO, "prepare: %s: %s", d->path, strerror(errno));
        if (r == 0) break;
        const char *nl = memchr(p->buf, '\n', (size_t)r);
        if (nl) {
            *q = at + (uint64_t)(nl - p->buf) + 1;
            break;
        }
        at += (uint64_t)r;
    }
    return GPT2_OK;
}

/* val_fraction with a single document: the head goes to train, the tail
   (from a line start) to val, each a document of its own. */
static gpt2_status encode_split_document(prep *p, const doc *d) {
    if (!d->regular)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: val_fraction with one document "
                          "needs its size, and %s has none (stdin or a pipe): pass a "
                          "file, or give val_inputs", d->path ? d->path : "\"-\"");
    int fd;
    gpt2_status st = doc_open(d, &fd);
    if (st) return st;
    uint64_t target = (uint64_t)floor((1.0 - p->o->val_fraction) * (double)d->size), q = 0;
    st = line_start_after(p, fd, d, target, &q);
    if (!st && (q == 0 || q >= d->size))
        st = gpt2__fail(GPT2_ERR_ARG, "prepare: %s: val_fraction %g: no line starts "
                        "between byte %llu and the end (%llu bytes), so one split would "
                        "be empty: give val_inputs or more documents", d->path,
                        p->o->val_fraction, (unsigned long long)target,
                        (unsigned long long)d->size);
    if (!st) st = encode_document(p, fd, d->path, q, &p->w[0]);
    if (!st) st = encode_document(p, fd, d->path, UINT64_MAX, &p->w[1]);
    doc_close(d, fd);
    return st;
}

/* --------------------------------------------------------- the command */

static gpt2_status check_prepare(const gpt2_tokenizer *t,
                                 const gpt2_prepare_options *o) {
    if (!t || !o) return gpt2__fail(GPT2_ERR_ARG, "prepare: NULL argument");
    int v = gpt2_tokenizer_vocab_size(t);
    if (v > MAX_IDS)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: the tokenizer has %d ids; shards "
                          "store uint16 ids, so at most %d", v, MAX_IDS);
    if (gpt2_tokenizer_eot(t) < 0)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: the tokenizer has no %s token "
                          "to put before each document", GPT2_EOT_TEXT);
    if (!o->inputs || o->n_inputs <= 0)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: no inputs");
    if (o->n_val_inputs < 0 || (o->n_val_inputs > 0 && !o->val_inputs))
        return gpt2__fail(GPT2_ERR_ARG, "prepare: n_val_inputs %d without val_inputs",
                          o->n_val_inputs);
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return gpt2__fail(GPT2_ERR_ARG, "prepare: val_fraction %g is not in [0, 1)",
                          o->val_fraction);
    if (o->val_fraction > 0 && o->n_val_inputs > 0)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: give val_inputs or val_fraction, "
                          "not both");
    if (!o->out_dir || !o->out_dir[0]) return gpt2__fail(GPT2_ERR_ARG, "prepare: no out_dir");
    if (o->shard_tokens < 1 || o->shard_tokens > MAX_SHARD_TOKENS)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: shard_tokens %zu is not in "
                          "[1, %u] (the header's count is an int32)", o->shard_tokens,
                          MAX_SHARD_TOKENS);
    if (o->chunk_bytes < 1 || o->chunk_bytes > SIZE_MAX / 8)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: chunk_bytes %zu is out of range",
                          o->chunk_bytes);
    return GPT2_OK;
}

/* How many of n documents val_fraction f sends to val: ceil(f n), with
   the rounding noise of f n taken off (0.3 * 10 is 3.0000000000000004),
   and at least one left for train. */
static size_t val_documents(double f, size_t n) {
    double k = ceil(f * (double)n - 1e-9);
    if (k < 1) k = 1;
    return k > (double)(n - 1) ? n - 1 : (size_t)k;
}

/* Encodes the documents of both splits. */
static gpt2_status prepare_run(prep *p, const doc_list *train,
                               const doc_list *val) {
    const gpt2_prepare_options *o = p->o;
    gpt2_status st = GPT2_OK;
    for (size_t i = 0; i < train->n; i++)
        p->stats.n_bytes_total += train->v[i].size;
    for (size_t i = 0; i < val->n; i++) p->stats.n_bytes_total += val->v[i].size;
    if (o->val_fraction > 0 && val->n == 0 && train->n == 1)
        return encode_split_document(p, &train->v[0]);
    size_t n_val = o->val_fraction > 0 && val->n == 0 && train->n > 1
                       ? val_documents(o->val_fraction, train->n) : 0;
    for (size_t i = 0; !st && i < train->n; i++)
        st = encode_whole(p, &train->v[i], &p->w[i >= train->n - n_val]);
    for (size_t i = 0; !st && i < val->n; i++) st = encode_whole(p, &val->v[i], &p->w[1]);
    return st;
}

/* A chunk per thread: threads encode pieces of the buffer at once. */
static gpt2_status prep_buffers(prep *p) {
#ifdef _OPENMP
    p->n_threads = gpt2__threads();
#else
    p->n_threads = 1;
#endif
    if (!gpt2__mul_ok(p->o->chunk_bytes, (size_t)p->n_threads, &p->cap) ||
        p->cap > SIZE_MAX / 8)
        return gpt2__fail(GPT2_ERR_ARG, "prepare: chunk_bytes %zu is too large",
                          p->o->chunk_bytes);
    p->buf = gpt2__malloc(p->cap, 1, "prepare: text buffer");
    p->ids = gpt2__malloc(p->cap, sizeof *p->ids, "prepare: ids");
    p->pieces = gpt2__calloc((size_t)p->n_threads, sizeof *p->pieces, "prepare: pieces");
    return p->buf && p->ids && p->pieces ? GPT2_OK : GPT2_ERR_NOMEM;
}

static gpt2_status prepare_finish(prep *p) {
    for (int s = 0; s < 2; s++)
        if (p->w[s].fd >= 0) {
            gpt2_status st = writer_close(&p->w[s]);
            if (st) return st;
        }
    for (int s = 0; s < 2; s++) remove_stale_shards(p->o->out_dir, p->w[s].split, p->w[s].index);
    sync_dir(p->o->out_dir);
    report(p, NULL);
    return GPT2_OK;
}

gpt2_status gpt2_prepare(const gpt2_tokenizer *t, const gpt2_prepare_options *o,
                         gpt2_prepare_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    gpt2_status st = check_prepare(t, o);
    if (st) return st;
    doc_list train = {0}, val = {0};
    bool stdin_used = false;
    prep p;
    memset(&p, 0, sizeof p);
    p.t = t;
    p.o = o;
    p.w[0].fd = p.w[1].fd = -1;
    st = docs_collect(&train, o->inputs, o->n_inputs, &stdin_used);
    if (!st && o->n_val_inputs > 0)
        st = docs_collect(&val, o->val_inputs, o->n_val_inputs, &stdin_used);
    if (!st && val.n > 0) st = docs_disjoint(&train, &val);
    if (!st) st = make_dirs(o->out_dir);
    if (!st) st = writer_init(&p.w[0], o->out_dir, "train", o->shard_tokens);
    if (!st) st = writer_init(&p.w[1], o->out_dir, "val", o->shard_tokens);
    if (!st) st = prep_buffers(&p);
    if (!st) st = prepare_run(&p, &train, &val);
    if (!st) st = prepare_finish(&p);
    if (stats) *stats = p.stats;
    writer_free(&p.w[0]);
    writer_free(&p.w[1]);
    free(p.buf);
    free(p.ids);
    free(p.pieces);
    docs_free(&train);
    docs_free(&val);
    return st;
}

/* ================================================================= loader */

gpt2_loader_options gpt2_loader_defaults(void) {
    gpt2_loader_options o;
    memset(&o, 0, sizeof o);
    o.batch_size = 4;
    o.seq_len = 1024;
    o.vocab_size = 50257;
    o.n_ranks = 1;
    return o;
}

typedef struct {
    char *path;
    uint8_t *map;        /* the whole file, read-only */
    size_t map_len;
    const uint8_t *tok;  /* map + HEADER_BYTES */
    uint64_t n;          /* tokens */
    uint64_t start;      /* index of its first token in the split's stream */
} shard;

struct gpt2_loader {
    gpt2_loader_options o;
    shard *sh;
    int n_shards;
    uint64_t n_tokens;
    uint64_t bt;         /* B*T: tokens of one batch's inputs */
    uint64_t stride;     /* B*T*n_ranks: how far a batch advances */
    uint64_t epoch;
    uint64_t base;       /* where rank 0's next batch starts in the stream */
    /* shuffled order: windows and the Feistel permutation over them */
    uint64_t n_windows;
    int half_bits;       /* the permutation runs on 2 * half_bits bits */
    uint64_t key;        /* this epoch's */
};

static void loader_free_shards(gpt2_loader *ld) {
    for (int i = 0; i < ld->n_shards; i++) {
        if (ld->sh[i].map) munmap(ld->sh[i].map, ld->sh[i].map_len);
        free(ld->sh[i].path);
    }
    free(ld->sh);
    ld->sh = NULL;
    ld->n_shards = 0;
}

void gpt2_loader_free(gpt2_loader *ld) {
    if (!ld) return;
    loader_free_shards(ld);
    free(ld);
}

/* ------------------------------------------------------- finding shards */

typedef struct {
    char **v;
    size_t n, cap;
} name_list;

static void names_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static gpt2_status names_add(name_list *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return gpt2__fail(GPT2_ERR_NOMEM, "loader_open: out of memory");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return gpt2__fail(GPT2_ERR_NOMEM, "loader_open: out of memory");
    l->n++;
    return GPT2_OK;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* gpt2_prepare's names: SPLIT_*.bin. */
static bool ours(const char *name, const char *split) {
    size_t k = strlen(split);
    return strncmp(name, split, k) == 0 && name[k] == '_' && ends_with(name, ".bin");
}

/* llm.c's names: *_SPLIT_*.bin (fineweb_train_000001.bin) or *_SPLIT.bin
   (tiny_shakespeare_val.bin). */
static bool llmc_name(const char *name, const char *split) {
    char mid[80], end[80];
    snprintf(mid, sizeof mid, "_%s_", split);
    snprintf(end, sizeof end, "_%s.bin", split);
    return ends_with(name, end) || (strstr(name, mid) && ends_with(name, ".bin"));
}

/* The shards of split in dir: ours if any, else llm.c's; sorted. */
static gpt2_status list_dir(const char *dir, const char *split, name_list *out) {
    if (!split || !split[0] || strlen(split) > 64 || strchr(split, '/'))
        return gpt2__fail(GPT2_ERR_ARG, "loader_open: %s is a folder: give a split "
                          "name such as \"train\" or \"val\"", dir);
    for (int pass = 0; pass < 2 && out->n == 0; pass++) {
        DIR *d = opendir(dir);
        if (!d) return gpt2__fail(GPT2_ERR_IO, "loader_open: %s: %s", dir, strerror(errno));
        gpt2_status st = GPT2_OK;
        struct dirent *e;
        char path[PATH_CAP];
        while (!st && (e = readdir(d))) {
            bool match = pass == 0 ? ours(e->d_name, split) : llmc_name(e->d_name, split);
            if (!match) continue;
            st = gpt2__join_path(path, sizeof path, dir, e->d_name);
            if (!st) st = names_add(out, path);
        }
        closedir(d);
        if (st) return st;
    }
    if (out->n == 0)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: no shards for split '%s' "
                          "(looked for %s_*.bin, *_%s_*.bin and *_%s.bin)", dir, split,
                          split, split, split);
    qsort(out->v, out->n, sizeof *out->v, name_cmp);
    return GPT2_OK;
}

static gpt2_status list_glob(const char *pattern, name_list *out) {
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: no such shard (no file "
                          "matches)", pattern);
    if (rc != 0) return gpt2__fail(GPT2_ERR_IO, "loader_open: %s: cannot list", pattern);
    gpt2_status st = GPT2_OK;
    for (size_t i = 0; !st && i < g.gl_pathc; i++) st = names_add(out, g.gl_pathv[i]);
    globfree(&g);
    return st;
}

/* ------------------------------------------------------------ validation */

/* Maps a shard and checks its header and length. */
static gpt2_status shard_map(shard *s) {
    int fd = open(s->path, O_RDONLY);
    if (fd < 0) return gpt2__fail(GPT2_ERR_IO, "loader_open: %s: %s", s->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return gpt2__fail(GPT2_ERR_IO, "loader_open: %s: not a regular file", s->path);
    }
    size_t len = (size_t)sb.st_size;
    if (len < HEADER_BYTES) {
        close(fd);
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: truncated header: the "
                          "file has %zu bytes, a shard's header alone has %d", s->path,
                          len, HEADER_BYTES);
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return gpt2__fail(GPT2_ERR_IO, "loader_open: %s: mmap: %s", s->path, strerror(errno));
    s->map = m;
    s->map_len = len;
    s->tok = s->map + HEADER_BYTES;
    return GPT2_OK;
}

static gpt2_status shard_check_header(shard *s) {
    int32_t magic = (int32_t)le32_read(s->map), version = (int32_t)le32_read(s->map + 4);
    int32_t count = (int32_t)le32_read(s->map + 8);
    if (magic != SHARD_MAGIC)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: bad magic %d, expected "
                          "%d: not a token shard%s", s->path, magic, SHARD_MAGIC,
                          magic == LLMC_MODEL_MAGIC ? " (it is an llm.c model checkpoint)" : "");
    if (version != SHARD_VERSION)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: version %d, expected %d "
                          "(uint16 GPT-2 tokens)%s", s->path, version, SHARD_VERSION,
                          version == 2 ? "; version 2 holds uint32 LLaMA 3 tokens" : "");
    if (count < 0)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: negative token count %d",
                          s->path, count);
    size_t want = HEADER_BYTES + 2 * (size_t)count;
    if (s->map_len < want)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: truncated: the header "
                          "says %d tokens (%zu bytes) but the file has %zu bytes", s->path,
                          count, want, s->map_len);
    if (s->map_len > want)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: %zu bytes, longer than "
                          "the %zu that the header's %d tokens take", s->path,
                          s->map_len, want, count);
    s->n = (uint64_t)count;
    return GPT2_OK;
}

static inline unsigned shard_token(const shard *s, uint64_t i) {
    return (unsigned)s->tok[2 * i] | (unsigned)s->tok[2 * i + 1] << 8;
}

/* Every id < vocab: the max of each block first (a loop that vectorizes),
   the offending index only when a block fails. */
static gpt2_status shard_check_ids(const shard *s, int vocab) {
    const uint64_t block = 4096;
    for (uint64_t b = 0; b < s->n; b += block) {
        uint64_t e = b + block < s->n ? b + block : s->n;
        unsigned mx = 0;
        for (uint64_t i = b; i < e; i++) {
            unsigned v = shard_token(s, i);
            mx = v > mx ? v : mx;
        }
        if (mx < (unsigned)vocab) continue;
        for (uint64_t i = b; i < e; i++)
            if (shard_token(s, i) >= (unsigned)vocab)
                return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: token %u at index "
                                  "%llu is >= vocab_size %d", s->path, shard_token(s, i),
                                  (unsigned long long)i, vocab);
    }
    return GPT2_OK;
}

static gpt2_status check_loader_options(const gpt2_loader_options *o) {
    if (o->batch_size < 1 || o->seq_len < 1)
        return gpt2__fail(GPT2_ERR_ARG, "loader_open: batch_size %d and seq_len %d "
                          "must be positive", o->batch_size, o->seq_len);
    if (o->vocab_size < 1 || o->vocab_size > MAX_IDS)
        return gpt2__fail(GPT2_ERR_ARG, "loader_open: vocab_size %d is not in [1, %d]",
                          o->vocab_size, MAX_IDS);
    if (o->n_ranks < 1 || o->rank < 0 || o->rank >= o->n_ranks)
        return gpt2__fail(GPT2_ERR_ARG, "loader_open: rank %d of n_ranks %d", o->rank,
                          o->n_ranks);
    if (o->shuffle != 0 && o->shuffle != 1)
        return gpt2__fail(GPT2_ERR_ARG, "loader_open: shuffle %d is not 0 or 1", o->shuffle);
    if ((uint64_t)o->batch_size * (uint64_t)o->seq_len > (uint64_t)INT32_MAX)
        return gpt2__fail(GPT2_ERR_ARG, "loader_open: batch_size * seq_len = %llu is "
                          "too large", (unsigned long long)o->batch_size * (uint64_t)o->seq_len);
    return GPT2_OK;
}

/* Maps and checks every shard; sums the tokens. */
static gpt2_status loader_load_shards(gpt2_loader *ld, name_list *names) {
    ld->sh = gpt2__calloc(names->n, sizeof *ld->sh, "loader_open: shards");
    if (!ld->sh) return GPT2_ERR_NOMEM;
    for (size_t i = 0; i < names->n; i++) {
        shard *s = &ld->sh[ld->n_shards++];
        s->path = names->v[i];
        names->v[i] = NULL;
        gpt2_status st = shard_map(s);
        if (!st) st = shard_check_header(s);
        if (!st) st = shard_check_ids(s, ld->o.vocab_size);
        if (st) return st;
        s->start = ld->n_tokens;
        ld->n_tokens += s->n;
    }
    return GPT2_OK;
}

static gpt2_status loader_check_size(const gpt2_loader *ld, const char *path) {
    if (ld->n_tokens == 0)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: empty split: its %d "
                          "shard(s) hold no tokens", path, ld->n_shards);
    if (ld->n_tokens < ld->stride + 1)
        return gpt2__fail(GPT2_ERR_FORMAT, "loader_open: %s: the split has %llu "
                          "tokens, fewer than the %llu that one batch of B*T*n_ranks + 1 "
                          "needs", path, (unsigned long long)ld->n_tokens,
                          (unsigned long long)ld->stride + 1);
    return GPT2_OK;
}

/* ------------------------------------------------------- shuffled order */

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void loader_set_epoch_key(gpt2_loader *ld) {
    ld->key = mix64(ld->o.seed ^ mix64(ld->epoch + 1));
}

/* A bijection of [0, n_windows): a 4-round Feistel network over
   2 * half_bits bits, walking the cycle until the value falls in range
   (the domain is < 4 n_windows, so a few steps at most on average). No
   table: the order costs no memory and any position is found at once. */
static uint64_t window_at(const gpt2_loader *ld, uint64_t i) {
    const int h = ld->half_bits;
    const uint64_t mask = (1ull << h) - 1;
    uint64_t x = i;
    do {
        uint64_t l = x >> h, r = x & mask;
        for (uint64_t round = 0; round < 4; round++) {
            uint64_t f = mix64(r ^ ld->key ^ (round << 58)) & mask;
            uint64_t t = l ^ f;
            l = r;
            r = t;
        }
        x = l << h | r;
    } while (x >= ld->n_windows);
    return x;
}

static void loader_init_shuffle(gpt2_loader *ld) {
    ld->n_windows = (ld->n_tokens - 1) / (uint64_t)ld->o.seq_len;
    int bits = 2;
    while (bits < 64 && (1ull << bits) < ld->n_windows) bits += 2;
    ld->half_bits = bits / 2;
    loader_set_epoch_key(ld);
}

/* ------------------------------------------------------------- reading */

/* The shard holding stream index g (< n_tokens): the last one starting at
   or before g; empty shards share their start with the next one. */
static int find_shard(const gpt2_loader *ld, uint64_t g) {
    int lo = 0, hi = ld->n_shards - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (ld->sh[mid].start <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* n tokens of the stream from index g into dst, across shards. */
static void copy_span(const gpt2_loader *ld, uint64_t g, uint64_t n, int *dst) {
    int s = find_shard(ld, g);
    uint64_t off = g - ld->sh[s].start;
    while (n > 0) {
        const shard *sh = &ld->sh[s];
        uint64_t k = sh->n - off < n ? sh->n - off : n;
        for (uint64_t i = 0; i < k; i++) *dst++ = (int)shard_token(sh, off + i);
        n -= k;
        s++;
        off = 0;
    }
}

/* Starts the next epoch once a batch no longer fits. */
static void loader_wrap(gpt2_loader *ld) {
    if (ld->base + ld->stride + 1 <= ld->n_tokens) return;
    ld->base = 0;
    ld->epoch++;
    loader_set_epoch_key(ld);
}

gpt2_status gpt2_loader_open(const char *path, const char *split,
                             const gpt2_loader_options *o, gpt2_loader **out) {
    if (out) *out = NULL;
    if (!path || !o || !out) return gpt2__fail(GPT2_ERR_ARG, "loader_open: NULL argument");
    gpt2_status st = check_loader_options(o);
    if (st) return st;
    gpt2_loader *ld = gpt2__calloc(1, sizeof *ld, "loader_open");
    if (!ld) return GPT2_ERR_NOMEM;
    ld->o = *o;
    ld->bt = (uint64_t)o->batch_size * (uint64_t)o->seq_len;
    ld->stride = ld->bt * (uint64_t)o->n_ranks;
    name_list names = {0};
    st = gpt2__is_dir(path) ? list_dir(path, split, &names) : list_glob(path, &names);
    if (!st) st = loader_load_shards(ld, &names);
    if (!st) st = loader_check_size(ld, path);
    names_free(&names);
    if (st) {
        gpt2_loader_free(ld);
        return st;
    }
    loader_init_shuffle(ld);
    *out = ld;
    return GPT2_OK;
}

gpt2_status gpt2_loader_next(gpt2_loader *ld, int *tokens, int *targets) {
    if (!ld || !tokens || !targets)
        return gpt2__fail(GPT2_ERR_ARG, "loader_next: NULL argument");
    loader_wrap(ld); /* after a seek to the tail */
    const uint64_t T = (uint64_t)ld->o.seq_len, B = (uint64_t)ld->o.batch_size;
    const uint64_t r = (uint64_t)ld->o.rank;
    if (ld->o.shuffle) {
        uint64_t first = (ld->base / ld->stride * (uint64_t)ld->o.n_ranks + r) * B;
        for (uint64_t b = 0; b < B; b++) {
            uint64_t w = window_at(ld, first + b);
            copy_span(ld, w * T, T, tokens + b * T);
            copy_span(ld, w * T + 1, T, targets + b * T);
        }
    } else {
        uint64_t g = ld->base + r * ld->bt;
        copy_span(ld, g, ld->bt, tokens);
        copy_span(ld, g + 1, ld->bt, targets);
    }
    ld->base += ld->stride;
    loader_wrap(ld);
    return GPT2_OK;
}

void gpt2_loader_tell(const gpt2_loader *ld, gpt2_loader_pos *pos) {
    int s = find_shard(ld, ld->base);
    pos->epoch = ld->epoch;
    pos->shard = s;
    pos->offset = ld->base - ld->sh[s].start;
}

gpt2_status gpt2_loader_seek(gpt2_loader *ld, const gpt2_loader_pos *pos) {
    if (!ld || !pos) return gpt2__fail(GPT2_ERR_ARG, "loader_seek: NULL argument");
    if (pos->shard < 0 || pos->shard >= ld->n_shards)
        return gpt2__fail(GPT2_ERR_ARG, "loader_seek: shard %d is not in [0, %d)",
                          pos->shard, ld->n_shards);
    const shard *s = &ld->sh[pos->shard];
    uint64_t g = s->start + pos->offset;
    if (pos->offset >= s->n && !(pos->offset == 0 && g < ld->n_tokens))
        return gpt2__fail(GPT2_ERR_ARG, "loader_seek: offset %llu is past the %llu "
                          "tokens of %s", (unsigned long long)pos->offset,
                          (unsigned long long)s->n, s->path);
    if (ld->o.shuffle && g % ld->stride != 0)
        return gpt2__fail(GPT2_ERR_ARG, "loader_seek: offset %llu of %s is not on a "
                          "batch boundary of the shuffled order", (unsigned long long)pos->offset,
                          s->path);
    ld->epoch = pos->epoch;
    ld->base = g;
    loader_set_epoch_key(ld);
    loader_wrap(ld);
    return GPT2_OK;
}

void gpt2_loader_reset(gpt2_loader *ld) {
    ld->epoch = 0;
    ld->base = 0;
    loader_set_epoch_key(ld);
}

uint64_t gpt2_loader_num_tokens(const gpt2_loader *ld) { return ld->n_tokens; }

int gpt2_loader_num_shards(const gpt2_loader *ld) { return ld->n_shards; }

const char *gpt2_loader_shard_path(const gpt2_loader *ld, int i) {
    return i >= 0 && i < ld->n_shards ? ld->sh[i].path : NULL;
}

uint64_t gpt2_loader_batches_per_epoch(const gpt2_loader *ld) {
    return (ld->n_tokens - 1) / ld->stride;
}
