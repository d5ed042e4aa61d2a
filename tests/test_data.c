/* test_data.c: token shards (src/data.c). Run from the repository root: it
   loads the GPT-2 tokenizer from assets/tokenizer.

   gpt2_prepare: shards read back byte by byte (header, EOT before each
   document, ids equal to encoding each document whole), folders walked
   recursively in path order, chunked encoding equal to whole-document
   encoding on adversarial text at every chunk size and on a big text of
   long space runs without newlines, the val split rules, stdin, stale
   shards removed, and each bad option or tokenizer refused.
   gpt2_loader: batches equal the expected windows across shard borders,
   wrap-around and epochs, tell/seek resume, ranks, shuffled order (a
   permutation per epoch, deterministic, resumable), and every bad shard
   refused at open with its own message naming the file. */
#include "gpt2.h"
#include "check.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOK_DIR "assets/tokenizer"
#define EOT 50256

static const gpt2_tokenizer *tok;
static char root[64];

/* ------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32) % n;
}

/* root/rel into buf */
static const char *at(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", root, rel);
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

static void mkdir_at(const char *rel) {
    char p[256];
    mkdir(at(p, sizeof p, rel), 0755);
}

static void write_at(const char *rel, const char *text) {
    char p[256];
    write_bytes(at(p, sizeof p, rel), text, strlen(text));
}

static char *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* A growable list of ids. */
typedef struct {
    int *v;
    size_t n, cap;
} ids;

static void ids_push(ids *a, int x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 1024;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = x;
}

/* EOT, then the ids of text encoded whole (ordinary text, as prepare does) */
static void ids_document(ids *a, const char *text, size_t len) {
    ids_push(a, EOT);
    int *buf = malloc((len + 1) * sizeof *buf);
    size_t n = 0;
    CHECK_OK(gpt2_tokenizer_encode(tok, text, len, 0, buf, len + 1, &n));
    for (size_t i = 0; i < n; i++) ids_push(a, buf[i]);
    free(buf);
}

static void ids_file(ids *a, const char *rel) {
    char p[256];
    size_t len = 0;
    char *text = read_bytes(at(p, sizeof p, rel), &len);
    ids_document(a, text, len);
    free(text);
}

static int rd32(const uint8_t *p) {
    return (int)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24);
}

/* Reads DIR/SPLIT_000000.bin, ... back, checking each header byte by byte
   (magic, version, count, the other 253 ints zero) and the file length;
   every shard but the last must hold exactly per_shard ids. */
static int read_split(const char *dir, const char *split, size_t per_shard,
                      ids *out) {
    int n_shards = 0;
    for (;; n_shards++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s_%06d.bin", dir, split, n_shards);
        size_t len = 0;
        uint8_t *b = (uint8_t *)read_bytes(p, &len);
        if (!b) break;
        CHECK(len >= 1024);
        CHECK(rd32(b) == 20240520);
        CHECK(rd32(b + 4) == 1);
        int count = rd32(b + 8), zeros = 1;
        for (int i = 3; i < 256; i++) zeros &= rd32(b + 4 * i) == 0;
        CHECK(zeros);
        CHECK(len == 1024 + 2 * (size_t)count);
        CHECK(count >= 1 && (size_t)count <= per_shard);
        if (n_shards > 0) CHECK(out->n % per_shard == 0); /* earlier ones full */
        for (int i = 0; i < count && 1024 + 2 * (size_t)i + 1 < len; i++)
            ids_push(out, b[1024 + 2 * i] | b[1024 + 2 * i + 1] << 8);
        free(b);
    }
    return n_shards;
}

static int same_ids(const ids *a, const ids *b) {
    if (a->n != b->n) {
        fprintf(stderr, "  %zu ids, expected %zu\n", a->n, b->n);
        return 0;
    }
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] != b->v[i]) {
            fprintf(stderr, "  id %zu is %d, expected %d\n", i, a->v[i], b->v[i]);
            return 0;
        }
    return 1;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rm_tree(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Prepare with the given inputs into root/out (emptied first). */
static gpt2_status run_prepare(const char *const *in, int n_in, const char *const *val,
                               int n_val, double frac, size_t shard_tokens,
                               size_t chunk, gpt2_prepare_stats *stats) {
    char out[256];
    rm_tree(at(out, sizeof out, "out"));
    gpt2_prepare_options o = gpt2_prepare_defaults();
    o.inputs = in;
    o.n_inputs = n_in;
    o.val_inputs = val;
    o.n_val_inputs = n_val;
    o.val_fraction = frac;
    o.out_dir = out;
    o.shard_tokens = shard_tokens;
    o.chunk_bytes = chunk;
    return gpt2_prepare(tok, &o, stats);
}

/* root/out's split read back equals want. */
static void expect_split(const char *split, size_t per_shard, const ids *want,
                         int line) {
    char out[256];
    ids got = {0};
    int n = read_split(at(out, sizeof out, "out"), split, per_shard, &got);
    int ok = same_ids(&got, want) && (size_t)n == (want->n + per_shard - 1) / per_shard;
    CHECK(ok);
    if (!ok) fprintf(stderr, "  (line %d: split %s, %d shards)\n", line, split, n);
    free(got.v);
}
#define EXPECT_SPLIT(split, per, want) expect_split(split, per, want, __LINE__)

/* A call that must fail with status s and a message containing want. */
#define CHECK_FAILS(call, s, want)                                           \
    do {                                                                     \
        gpt2_status st_ = (call);                                            \
        const char *m_ = gpt2_last_error();                                  \
        CHECK(st_ == (s) && strstr(m_, want) != NULL);                       \
        if (st_ != (s) || !strstr(m_, want))                                 \
            fprintf(stderr, "  line %d: want %d '%s', got %d: %s\n", __LINE__, \
                    (int)(s), want, (int)st_, m_);                           \
    } while (0)

/* ------------------------------------------------------ prepare: basics */

typedef struct {
    int calls, finished, monotonic;
    uint64_t last_bytes;
} progress_log;

static void on_progress(void *user, const gpt2_prepare_stats *s) {
    progress_log *p = user;
    p->calls++;
    if (s->n_bytes < p->last_bytes) p->monotonic = 0;
    p->last_bytes = s->n_bytes;
    if (!s->current) p->finished++;
}

static void test_prepare_folder(void) {
    mkdir_at("in");
    mkdir_at("in/b");
    mkdir_at("in/b/d");
    write_at("in/a.txt", "Hello world.\nThe text <|endoftext|> is ordinary here.\n");
    write_at("in/b.txt", "b dot txt sorts before the folder b/ ('.' < '/')");
    write_at("in/b/c.txt", "Nested   file\twith  spaces\n\n\n  end  ");
    write_at("in/b/d/e.txt", "deep");
    write_at("in/u.txt", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 "
             "\xe2\x80\x94 \xe2\x80\x9cquotes\xe2\x80\x9d \xf0\x9f\x98\x80\xc2\xa0nbsp\n"
             "caf\xc3\xa9's na\xc3\xafve r\xc3\xa9sum\xc3\xa9 \xce\xb1\xce\xb2\xce\xb3 123\n");
    write_at("in/z_empty.txt", "");
    write_at("in/.hidden", "dot files are skipped");
    const char *order[] = {"in/a.txt", "in/b.txt", "in/b/c.txt", "in/b/d/e.txt",
                           "in/u.txt", "in/z_empty.txt"};
    ids want = {0};
    uint64_t bytes = 0;
    for (int i = 0; i < 6; i++) {
        char p[256];
        struct stat sb;
        stat(at(p, sizeof p, order[i]), &sb);
        bytes += (uint64_t)sb.st_size;
        ids_file(&want, order[i]);
    }
    char in[256];
    const char *inputs[] = {at(in, sizeof in, "in")};
    for (size_t per = 7; per <= 1000; per += 993) {
        progress_log log = {0, 0, 1, 0};
        char out[256];
        rm_tree(at(out, sizeof out, "out"));
        gpt2_prepare_options o = gpt2_prepare_defaults();
        o.inputs = inputs;
        o.n_inputs = 1;
        o.out_dir = out;
        o.shard_tokens = per;
        o.chunk_bytes = 5;
        o.progress = on_progress;
        o.user = &log;
        gpt2_prepare_stats st;
        CHECK_OK(gpt2_prepare(tok, &o, &st));
        EXPECT_SPLIT("train", per, &want);
        CHECK(st.n_documents == 6);
        CHECK(st.n_bytes == bytes && st.n_bytes_total == bytes);
        CHECK(st.n_train_tokens == want.n && st.n_val_tokens == 0);
        CHECK(st.n_train_shards == (int)((want.n + per - 1) / per) && st.n_val_shards == 0);
        CHECK(log.calls > 6 && log.finished == 1 && log.monotonic);
        char v[256];
        CHECK(access(at(v, sizeof v, "out/val_000000.bin"), F_OK) != 0);
    }
    /* EOT exactly before each document: the text "<|endoftext|>" in a.txt
       stays ordinary text */
    size_t eots = 0;
    for (size_t i = 0; i < want.n; i++) eots += want.v[i] == EOT;
    CHECK(eots == 6 && want.v[0] == EOT);
    free(want.v);
}

/* ------------------------------------------- chunked == whole encoding */

/* Text built from pieces that stress the pre-tokenizer: contractions,
   runs of spaces of every kind, Unicode letters and spaces, digits,
   invalid UTF-8, controls. */
static size_t adversarial_text(char *buf, size_t len) {
    static const char *const pieces[] = {
        "a", "Z", "q", "word", "5", "0", "42", " ", " ", "  ", "   ", "\t", "\n", "\n\n",
        "\r\n", " \n", "'", "'s", "'ll", "'re", "'t", "'d", "'m", "'ve", ".", ",", "!?",
        "-", "\"", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xc2\xa0",
        "\xe3\x80\x80", "\xe2\x80\x83", "\xc2\x85", "\xff", "\xe3\x80", "\x0b", "\x0c",
        "\x1c", "\x01", "\xd9\xa3", "x'", "'S", "<|endoftext|>"};
    const size_t n_pieces = sizeof pieces / sizeof *pieces;
    size_t n = 0;
    while (n < len) {
        const char *p = pieces[rnd((uint32_t)n_pieces)];
        size_t k = strlen(p);
        if (n + k > len) k = len - n;
        memcpy(buf + n, p, k);
        n += k;
    }
    return n;
}

/* Prepares root/doc.txt (text) with chunk size chunk; the shard must hold
   EOT + the whole-text encoding. */
static int chunked_matches(const char *text, size_t len, size_t chunk) {
    char p[256];
    write_bytes(at(p, sizeof p, "doc.txt"), text, len);
    const char *inputs[] = {p};
    ids want = {0}, got = {0};
    ids_document(&want, text, len);
    CHECK_OK(run_prepare(inputs, 1, NULL, 0, 0, 1u << 30, chunk, NULL));
    char out[256];
    read_split(at(out, sizeof out, "out"), "train", 1u << 30, &got);
    int ok = same_ids(&got, &want);
    if (!ok) fprintf(stderr, "  chunk %zu, text of %zu bytes\n", chunk, len);
    free(want.v);
    free(got.v);
    return ok;
}

/* With 1, 2 and 3 threads: each encodes a piece of about chunk bytes. */
static void test_chunked_adversarial(void) {
    char buf[700];
    int threads = gpt2_get_threads();
    for (int text = 0; text < 6; text++) {
        size_t len = adversarial_text(buf, sizeof buf);
        int ok = 1;
        gpt2_set_threads(1 + text % 3);
        for (size_t chunk = 1; chunk <= 24; chunk++) ok &= chunked_matches(buf, len, chunk);
        ok &= chunked_matches(buf, len, 61);
        ok &= chunked_matches(buf, len, 256);
        CHECK(ok);
    }
    gpt2_set_threads(threads);
}

/* ~1.6 MB without a newline: words between runs of spaces and tabs, some
   runs far longer than a chunk, and a stretch of nothing but spaces. */
static void test_chunked_big(void) {
    size_t cap = 1700000, n = 0;
    char *t = malloc(cap);
    static const char *const words[] = {"the", "LORD", "said", "unto", "Moses,",
                                        "it's", "1611", "\xc3\xa9t\xc3\xa9", "and"};
    while (n + 300000 < cap) {
        const char *w = words[rnd(9)];
        memcpy(t + n, w, strlen(w));
        n += strlen(w);
        uint32_t kind = rnd(100), run = kind < 80 ? 1 : kind < 97 ? 1 + rnd(40)
                                                   : 1000 + rnd(200000);
        for (uint32_t i = 0; i < run; i++) t[n++] = rnd(5) ? ' ' : '\t';
    }
    memset(t + n, ' ', 250000); /* ends in spaces only: no cut at all */
    n += 250000;
    CHECK(memchr(t, '\n', n) == NULL);
    CHECK(chunked_matches(t, n, 65536));
    CHECK(chunked_matches(t, n, 1u << 20));
    CHECK(chunked_matches(t, 300000, 4096)); /* a prefix: ends inside a word */
    free(t);
}

/* ------------------------------------------------------------ val rules */

static void test_val_documents(void) {
    mkdir_at("docs");
    const char *names[10];
    char paths[10][256];
    for (int i = 0; i < 10; i++) {
        char rel[64], text[128];
        snprintf(rel, sizeof rel, "docs/d%d.txt", i);
        snprintf(text, sizeof text, "Document number %d says hello %d times.\n", i, i * 7);
        write_at(rel, text);
        names[i] = at(paths[i], sizeof paths[i], rel);
    }
    /* (docs, fraction) -> val docs: ceil(f n), at least 1, at most n - 1 */
    const struct { int n; double f; int n_val; } cases[] = {
        {5, 0.3, 2}, {5, 0.2, 1}, {10, 0.3, 3}, {5, 0.9, 4}, {2, 0.01, 1}, {10, 0.1, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        ids tr = {0}, va = {0};
        int n = cases[c].n, nv = cases[c].n_val;
        for (int i = 0; i < n; i++) {
            char rel[64];
            snprintf(rel, sizeof rel, "docs/d%d.txt", i);
            ids_file(i < n - nv ? &tr : &va, rel);
        }
        gpt2_prepare_stats st;
        CHECK_OK(run_prepare(names, n, NULL, 0, cases[c].f, 16, 1 << 20, &st));
        EXPECT_SPLIT("train", 16, &tr);
        EXPECT_SPLIT("val", 16, &va);
        CHECK(st.n_train_tokens == tr.n && st.n_val_tokens == va.n);
        CHECK(st.n_documents == (uint64_t)n);
        free(tr.v);
        free(va.v);
    }
}

static void test_val_single_document(void) {
    char text[128] = "";
    for (int i = 0; i < 10; i++) { /* ten lines of 10 bytes */
        char line[32];
        snprintf(line, sizeof line, "line %04d\n", i);
        strcat(text, line);
    }
    write_at("one.txt", text);
    char p[256];
    const char *inputs[] = {at(p, sizeof p, "one.txt")};
    /* F = 0.25: target byte 75; the first line start at or after it is 80 */
    ids tr = {0}, va = {0};
    ids_document(&tr, text, 80);
    ids_document(&va, text + 80, 20);
    gpt2_prepare_stats st;
    CHECK_OK(run_prepare(inputs, 1, NULL, 0, 0.25, 5, 3, &st));
    EXPECT_SPLIT("train", 5, &tr);
    EXPECT_SPLIT("val", 5, &va);
    CHECK(st.n_documents == 2 && st.n_bytes == 100);
    free(tr.v);
    free(va.v);
    /* F = 0.3: target 70, itself a line start */
    tr = (ids){0};
    va = (ids){0};
    ids_document(&tr, text, 70);
    ids_document(&va, text + 70, 30);
    CHECK_OK(run_prepare(inputs, 1, NULL, 0, 0.3, 1000, 1 << 20, NULL));
    EXPECT_SPLIT("train", 1000, &tr);
    EXPECT_SPLIT("val", 1000, &va);
    free(tr.v);
    free(va.v);
    /* no line start after the target: refused, not an empty val split */
    write_at("noline.txt", "one long line without a newline at all");
    const char *nl[] = {at(p, sizeof p, "noline.txt")};
    CHECK_FAILS(run_prepare(nl, 1, NULL, 0, 0.1, 1000, 1 << 20, NULL), GPT2_ERR_ARG,
                "no line starts");
    /* stdin has no size to take a fraction of */
    const char *dash[] = {"-"};
    CHECK_FAILS(run_prepare(dash, 1, NULL, 0, 0.1, 1000, 1 << 20, NULL), GPT2_ERR_ARG,
                "stdin or a pipe");
}

static void test_val_inputs(void) {
    write_at("gen.txt", "In the beginning God created the heaven and the earth.\n");
    write_at("exo.txt", "Now these are the names of the children of Israel.\n");
    write_at("rev.txt", "The Revelation of Jesus Christ, which God gave unto him.\n");
    char a[256], b[256], c[256];
    const char *in[] = {at(a, sizeof a, "gen.txt"), at(b, sizeof b, "exo.txt")};
    const char *val[] = {at(c, sizeof c, "rev.txt")};
    ids tr = {0}, va = {0};
    ids_file(&tr, "gen.txt");
    ids_file(&tr, "exo.txt");
    ids_file(&va, "rev.txt");
    gpt2_prepare_stats st;
    CHECK_OK(run_prepare(in, 2, val, 1, 0, 8, 16, &st));
    EXPECT_SPLIT("train", 8, &tr);
    EXPECT_SPLIT("val", 8, &va);
    CHECK(st.n_documents == 3 && st.n_val_shards == (int)((va.n + 7) / 8));
    free(tr.v);
    free(va.v);
}

static void test_prepare_stdin(void) {
    const char *text = "From stdin: one document,\nwith lines.\n";
    char p[256];
    write_at("stdin.txt", text);
    int saved = dup(STDIN_FILENO), fd = open(at(p, sizeof p, "stdin.txt"), O_RDONLY);
    dup2(fd, STDIN_FILENO);
    close(fd);
    const char *in[] = {"-"};
    ids want = {0};
    ids_document(&want, text, strlen(text));
    gpt2_prepare_stats st;
    CHECK_OK(run_prepare(in, 1, NULL, 0, 0, 100, 4, &st));
    EXPECT_SPLIT("train", 100, &want);
    CHECK(st.n_bytes == strlen(text) && st.n_bytes_total == 0);
    dup2(saved, STDIN_FILENO);
    close(saved);
    free(want.v);
}

static void test_stale_shards_removed(void) {
    char out[256], p[256];
    write_at("small.txt", "small");
    const char *in[] = {at(p, sizeof p, "small.txt")};
    /* a first run with several shards and a val split */
    char q[256];
    write_at("small2.txt", "a second document, long enough for a few shards of 3");
    const char *in2[] = {at(p, sizeof p, "small.txt"), at(q, sizeof q, "small2.txt")};
    CHECK_OK(run_prepare(in2, 2, NULL, 0, 0.5, 3, 1 << 20, NULL));
    CHECK(access(at(out, sizeof out, "out/val_000001.bin"), F_OK) == 0);
    /* the second writes into the same folder without emptying it */
    gpt2_prepare_options o = gpt2_prepare_defaults();
    o.inputs = in;
    o.n_inputs = 1;
    o.out_dir = at(out, sizeof out, "out");
    o.shard_tokens = 1000;
    CHECK_OK(gpt2_prepare(tok, &o, NULL));
    CHECK(access(at(out, sizeof out, "out/train_000000.bin"), F_OK) == 0);
    CHECK(access(at(out, sizeof out, "out/train_000001.bin"), F_OK) != 0);
    CHECK(access(at(out, sizeof out, "out/val_000000.bin"), F_OK) != 0);
    CHECK(access(at(out, sizeof out, "out/train_000000.bin.tmp"), F_OK) != 0);
    ids want = {0};
    ids_document(&want, "small", 5);
    EXPECT_SPLIT("train", 1000, &want);
    free(want.v);
}

/* ---------------------------------------------------- prepare: refusals */

/* A vocab.json of the 256 byte tokens (GPT-2's byte alphabet, as \u
   escapes), then extra tokens "tNNNNN", then <|endoftext|> if eot. */
static void write_vocab(const char *dir, int extra, int eot) {
    char p[256];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    FILE *f = fopen(p, "w");
    int next = 256, id = 0;
    fputc('{', f);
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        fprintf(f, "%s\"\\u%04x\": %d", b ? ", " : "", printable ? b : next++, id++);
    }
    for (int i = 0; i < extra; i++) fprintf(f, ", \"t%06d\": %d", i, id++);
    if (eot) fprintf(f, ", \"<|endoftext|>\": %d", id++);
    fputs("}\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    write_bytes(p, "#version: 0.2\n", 14);
}

static void test_prepare_refusals(void) {
    char a[256], d[256], e[256];
    write_at("r.txt", "some text");
    const char *in[] = {at(a, sizeof a, "r.txt")};
    const char *missing[] = {at(d, sizeof d, "no/such/file.txt")};
    CHECK_FAILS(run_prepare(missing, 1, NULL, 0, 0, 100, 64, NULL), GPT2_ERR_IO,
                "no/such/file.txt");
    CHECK_FAILS(run_prepare(in, 1, NULL, 0, 1.0, 100, 64, NULL), GPT2_ERR_ARG,
                "val_fraction 1 is not in [0, 1)");
    CHECK_FAILS(run_prepare(in, 1, NULL, 0, -0.1, 100, 64, NULL), GPT2_ERR_ARG,
                "val_fraction -0.1");
    CHECK_FAILS(run_prepare(in, 1, in, 1, 0.1, 100, 64, NULL), GPT2_ERR_ARG, "not both");
    /* the same file in both splits, spelt two ways */
    char again[300];
    snprintf(again, sizeof again, "%s/./r.txt", root);
    const char *val_again[] = {again};
    CHECK_FAILS(run_prepare(in, 1, val_again, 1, 0, 100, 64, NULL), GPT2_ERR_ARG,
                "is both a training and a validation input");
    CHECK_FAILS(run_prepare(in, 1, NULL, 0, 0, 0, 64, NULL), GPT2_ERR_ARG, "shard_tokens 0");
    CHECK_FAILS(run_prepare(in, 1, NULL, 0, 0, (size_t)1 << 31, 64, NULL), GPT2_ERR_ARG,
                "shard_tokens");
    CHECK_FAILS(run_prepare(in, 0, NULL, 0, 0, 100, 64, NULL), GPT2_ERR_ARG, "no inputs");
    mkdir_at("emptydir");
    const char *ed[] = {at(e, sizeof e, "emptydir")};
    CHECK_FAILS(run_prepare(ed, 1, NULL, 0, 0, 100, 64, NULL), GPT2_ERR_ARG,
                "holds no files");
    const char *twice[] = {"-", "-"};
    CHECK_FAILS(run_prepare(twice, 2, NULL, 0, 0, 100, 64, NULL), GPT2_ERR_ARG,
                "given twice");
    /* tokenizers whose ids do not fit uint16, or with no <|endoftext|> */
    const gpt2_tokenizer *real = tok;
    gpt2_tokenizer *big = NULL, *no_eot = NULL;
    mkdir_at("bigtok");
    mkdir_at("noeot");
    write_vocab(at(d, sizeof d, "bigtok"), 65536, 1);
    write_vocab(at(e, sizeof e, "noeot"), 10, 0);
    CHECK_OK(gpt2_tokenizer_load(d, &big));
    CHECK_OK(gpt2_tokenizer_load(e, &no_eot));
    if (big && no_eot) {
        CHECK(gpt2_tokenizer_vocab_size(big) == 65793 && gpt2_tokenizer_eot(no_eot) < 0);
        tok = big;
        CHECK_FAILS(run_prepare(in, 1, NULL, 0, 0, 100, 64, NULL), GPT2_ERR_ARG,
                    "65793 ids");
        tok = no_eot;
        CHECK_FAILS(run_prepare(in, 1, NULL, 0, 0, 100, 64, NULL), GPT2_ERR_ARG,
                    "no <|endoftext|>");
    }
    tok = real;
    gpt2_tokenizer_free(big);
    gpt2_tokenizer_free(no_eot);
}

/* --------------------------------------------------------------- loader */

/* The synthetic stream: token i of the split. */
static int stream_tok(uint64_t i) { return (int)((i * 7919 + 3) % 50257); }

/* A shard file with the given header fields, n tokens from the stream
   starting at first, and extra trailing bytes. */
static void write_shard(const char *path, int magic, int version, int count,
                        uint64_t first, size_t n, size_t extra) {
    size_t len = 1024 + 2 * n + extra;
    uint8_t *b = calloc(1, len);
    int h[3] = {magic, version, count};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) b[4 * i + k] = (uint8_t)((uint32_t)h[i] >> (8 * k));
    for (size_t i = 0; i < n; i++) {
        int t = stream_tok(first + i);
        b[1024 + 2 * i] = (uint8_t)t;
        b[1024 + 2 * i + 1] = (uint8_t)(t >> 8);
    }
    write_bytes(path, b, len);
    free(b);
}

/* root/ld: train shards of 100, 37, 0 and 250 tokens (387 in all). */
static const size_t shard_sizes[] = {100, 37, 0, 250};
#define N_STREAM 387

static void make_loader_dir(void) {
    mkdir_at("ld");
    uint64_t first = 0;
    for (int s = 0; s < 4; s++) {
        char rel[64], p[256];
        snprintf(rel, sizeof rel, "ld/train_%06d.bin", s);
        write_shard(at(p, sizeof p, rel), 20240520, 1, (int)shard_sizes[s], first,
                    shard_sizes[s], 0);
        first += shard_sizes[s];
    }
}

static gpt2_loader *open_ld(int B, int T, int shuffle, uint64_t seed, int rank,
                            int n_ranks) {
    char p[256];
    gpt2_loader_options o = gpt2_loader_defaults();
    o.batch_size = B;
    o.seq_len = T;
    o.shuffle = shuffle;
    o.seed = seed;
    o.rank = rank;
    o.n_ranks = n_ranks;
    gpt2_loader *ld = NULL;
    CHECK_OK(gpt2_loader_open(at(p, sizeof p, "ld"), "train", &o, &ld));
    return ld;
}

/* The batch holds the n tokens from stream index g (and their targets). */
static int batch_is(const int *tokens, const int *targets, uint64_t g, int n) {
    for (int i = 0; i < n; i++)
        if (tokens[i] != stream_tok(g + i) || targets[i] != stream_tok(g + i + 1))
            return 0;
    return 1;
}

static void test_loader_sequential(void) {
    enum { B = 2, T = 8, BT = 16 };
    gpt2_loader *ld = open_ld(B, T, 0, 0, 0, 1);
    if (!ld) return;
    CHECK(gpt2_loader_num_tokens(ld) == N_STREAM && gpt2_loader_num_shards(ld) == 4);
    CHECK(gpt2_loader_batches_per_epoch(ld) == (N_STREAM - 1) / BT);
    CHECK(strstr(gpt2_loader_shard_path(ld, 3), "train_000003.bin") != NULL);
    CHECK(gpt2_loader_shard_path(ld, 4) == NULL);
    int tokens[BT], targets[BT], ok = 1;
    const int per_epoch = (N_STREAM - 1) / BT; /* 24 */
    for (int k = 0; k < 2 * per_epoch + 5; k++) {
        gpt2_loader_pos pos;
        gpt2_loader_tell(ld, &pos);
        uint64_t g = (uint64_t)(k % per_epoch) * BT;
        ok &= pos.epoch == (uint64_t)(k / per_epoch);
        CHECK_OK(gpt2_loader_next(ld, tokens, targets));
        ok &= batch_is(tokens, targets, g, BT);
    }
    CHECK(ok);
    /* a batch that spans shards 0 and 1: batch 6 covers 96..112 */
    gpt2_loader_reset(ld);
    for (int k = 0; k < 7; k++) gpt2_loader_next(ld, tokens, targets);
    CHECK(tokens[3] == stream_tok(99) && tokens[4] == stream_tok(100));
    gpt2_loader_pos pos;
    gpt2_loader_tell(ld, &pos); /* 112: shard 1 starts at 100 */
    CHECK(pos.epoch == 0 && pos.shard == 1 && pos.offset == 12);
    /* through the empty shard into shard 3, which starts at 137 */
    gpt2_loader_next(ld, tokens, targets);
    gpt2_loader_next(ld, tokens, targets);
    gpt2_loader_tell(ld, &pos);
    CHECK(pos.shard == 3 && pos.offset == 144 - 137);
    /* after the last batch of an epoch: the next epoch, at the start */
    gpt2_loader_reset(ld);
    for (int k = 0; k < per_epoch; k++) gpt2_loader_next(ld, tokens, targets);
    gpt2_loader_tell(ld, &pos);
    CHECK(pos.epoch == 1 && pos.shard == 0 && pos.offset == 0);
    gpt2_loader_free(ld);
}

/* Takes n batches, appending tokens then targets of each to out. */
static void take(gpt2_loader *ld, int n, int bt, int *out) {
    for (int k = 0; k < n; k++) {
        CHECK_OK(gpt2_loader_next(ld, out, out + bt));
        out += 2 * bt;
    }
}

static void check_resume(int shuffle) {
    enum { B = 2, T = 8, BT = 16, K = 30 };
    gpt2_loader *a = open_ld(B, T, shuffle, 7, 0, 1), *b = open_ld(B, T, shuffle, 7, 0, 1);
    if (!a || !b) return;
    static int first[K * 2 * BT], again[K * 2 * BT], fresh[K * 2 * BT];
    int skip[2 * BT];
    for (int k = 0; k < 17; k++) take(a, 1, BT, skip); /* into the middle */
    gpt2_loader_pos pos;
    gpt2_loader_tell(a, &pos);
    take(a, K, BT, first); /* crosses into the next epoch */
    CHECK_OK(gpt2_loader_seek(a, &pos));
    take(a, K, BT, again);
    CHECK_OK(gpt2_loader_seek(b, &pos)); /* a new loader resumes the same */
    take(b, K, BT, fresh);
    CHECK(memcmp(first, again, sizeof first) == 0);
    CHECK(memcmp(first, fresh, sizeof first) == 0);
    gpt2_loader_free(a);
    gpt2_loader_free(b);
}

static void test_loader_resume(void) {
    check_resume(0);
    check_resume(1);
    gpt2_loader *ld = open_ld(2, 8, 0, 0, 0, 1);
    if (!ld) return;
    gpt2_loader_pos bad = {0, 4, 0};
    CHECK_FAILS(gpt2_loader_seek(ld, &bad), GPT2_ERR_ARG, "shard 4 is not in [0, 4)");
    bad = (gpt2_loader_pos){0, 1, 37};
    CHECK_FAILS(gpt2_loader_seek(ld, &bad), GPT2_ERR_ARG, "offset 37 is past");
    /* a seek near the end: the next batch wraps into the next epoch */
    gpt2_loader_pos tail = {2, 3, 249}, pos;
    CHECK_OK(gpt2_loader_seek(ld, &tail));
    gpt2_loader_tell(ld, &pos);
    CHECK(pos.epoch == 3 && pos.shard == 0 && pos.offset == 0);
    /* any offset works sequentially */
    gpt2_loader_pos mid = {0, 3, 5};
    int tokens[16], targets[16];
    CHECK_OK(gpt2_loader_seek(ld, &mid));
    CHECK_OK(gpt2_loader_next(ld, tokens, targets));
    CHECK(batch_is(tokens, targets, 142, 16));
    gpt2_loader_free(ld);
    ld = open_ld(2, 8, 1, 0, 0, 1);
    if (!ld) return;
    CHECK_FAILS(gpt2_loader_seek(ld, &mid), GPT2_ERR_ARG, "not on a batch boundary");
    gpt2_loader_free(ld);
}

static void test_loader_ranks(void) {
    enum { B = 2, T = 8, BT = 16 };
    gpt2_loader *r0 = open_ld(B, T, 0, 0, 0, 2), *r1 = open_ld(B, T, 0, 0, 1, 2);
    if (!r0 || !r1) return;
    CHECK(gpt2_loader_batches_per_epoch(r0) == (N_STREAM - 1) / (2 * BT));
    int tokens[BT], targets[BT], ok = 1;
    const int per_epoch = (N_STREAM - 1) / (2 * BT);
    for (int k = 0; k < per_epoch + 3; k++) {
        uint64_t g = (uint64_t)(k % per_epoch) * 2 * BT;
        gpt2_loader_next(r0, tokens, targets);
        ok &= batch_is(tokens, targets, g, BT);
        gpt2_loader_next(r1, tokens, targets);
        ok &= batch_is(tokens, targets, g + BT, BT);
    }
    CHECK(ok);
    gpt2_loader_pos p0, p1;
    gpt2_loader_tell(r0, &p0);
    gpt2_loader_tell(r1, &p1);
    CHECK(p0.epoch == 1 && p0.shard == p1.shard && p0.offset == p1.offset);
    gpt2_loader_free(r0);
    gpt2_loader_free(r1);
}

/* The window (start w*T) row b of a shuffled batch holds, or -1. */
static int window_of(const int *tokens, const int *targets, int T) {
    for (int w = 0; (uint64_t)w * T + T < N_STREAM; w++)
        if (batch_is(tokens, targets, (uint64_t)w * T, T)) return w;
    return -1;
}

/* One epoch of shuffled batches: each row a window, each window once. */
static void shuffled_epoch(gpt2_loader *ld, int B, int T, int *order) {
    int n_windows = (N_STREAM - 1) / T, k = 0;
    int per_epoch = (int)gpt2_loader_batches_per_epoch(ld);
    int *tokens = malloc(sizeof(int) * B * T), *targets = malloc(sizeof(int) * B * T);
    char *seen = calloc((size_t)n_windows, 1);
    int ok = 1;
    for (int i = 0; i < per_epoch; i++) {
        gpt2_loader_next(ld, tokens, targets);
        for (int b = 0; b < B; b++) {
            int w = window_of(tokens + b * T, targets + b * T, T);
            ok &= w >= 0 && !seen[w];
            if (w >= 0) seen[w] = 1;
            order[k++] = w;
        }
    }
    CHECK(ok);
    free(seen);
    free(tokens);
    free(targets);
}

static void test_loader_shuffle(void) {
    enum { B = 2, T = 8, W = (N_STREAM - 1) / T }; /* 48 windows, 24 batches */
    gpt2_loader *a = open_ld(B, T, 1, 42, 0, 1), *b = open_ld(B, T, 1, 42, 0, 1);
    gpt2_loader *c = open_ld(B, T, 1, 43, 0, 1);
    if (!a || !b || !c) return;
    int e0[W], e1[W], b0[W], c0[W];
    shuffled_epoch(a, B, T, e0);
    gpt2_loader_pos pos;
    gpt2_loader_tell(a, &pos);
    CHECK(pos.epoch == 1 && pos.offset == 0);
    shuffled_epoch(a, B, T, e1);
    shuffled_epoch(b, B, T, b0);
    shuffled_epoch(c, B, T, c0);
    CHECK(memcmp(e0, b0, sizeof e0) == 0);   /* same seed, same order */
    CHECK(memcmp(e0, e1, sizeof e0) != 0);   /* a new order each epoch */
    CHECK(memcmp(e0, c0, sizeof e0) != 0);   /* another seed, another */
    int sorted = 1;
    for (int i = 0; i < W; i++) sorted &= e0[i] == i;
    CHECK(!sorted);
    gpt2_loader_free(a);
    gpt2_loader_free(b);
    gpt2_loader_free(c);
    /* two ranks share one order: disjoint windows, all of them together */
    gpt2_loader *r0 = open_ld(B, T, 1, 5, 0, 2), *r1 = open_ld(B, T, 1, 5, 1, 2);
    if (!r0 || !r1) return;
    int o0[W / 2], o1[W / 2], seen[W] = {0}, ok = 1;
    shuffled_epoch(r0, B, T, o0);
    shuffled_epoch(r1, B, T, o1);
    for (int i = 0; i < W / 2; i++) {
        ok &= o0[i] >= 0 && o1[i] >= 0;
        if (o0[i] >= 0) seen[o0[i]]++;
        if (o1[i] >= 0) seen[o1[i]]++;
    }
    for (int w = 0; w < W; w++) ok &= seen[w] == 1;
    CHECK(ok);
    gpt2_loader_free(r0);
    gpt2_loader_free(r1);
}

static void test_loader_paths(void) {
    char p[256];
    gpt2_loader_options o = gpt2_loader_defaults();
    o.batch_size = 1;
    o.seq_len = 4;
    gpt2_loader *ld = NULL;
    /* a glob pattern, and a single file */
    CHECK_OK(gpt2_loader_open(at(p, sizeof p, "ld/train_00000[01].bin"), NULL, &o, &ld));
    CHECK(ld && gpt2_loader_num_shards(ld) == 2 && gpt2_loader_num_tokens(ld) == 137);
    gpt2_loader_free(ld);
    CHECK_OK(gpt2_loader_open(at(p, sizeof p, "ld/train_000003.bin"), "ignored", &o, &ld));
    CHECK(ld && gpt2_loader_num_tokens(ld) == 250);
    gpt2_loader_free(ld);
    /* llm.c's names, found from the folder and the split */
    mkdir_at("llmc");
    write_shard(at(p, sizeof p, "llmc/tiny_shakespeare_train.bin"), 20240520, 1, 60, 0, 60, 0);
    write_shard(at(p, sizeof p, "llmc/tiny_shakespeare_val.bin"), 20240520, 1, 20, 0, 20, 0);
    write_shard(at(p, sizeof p, "llmc/fineweb_val_000000.bin"), 20240520, 1, 30, 0, 30, 0);
    CHECK_OK(gpt2_loader_open(at(p, sizeof p, "llmc"), "val", &o, &ld));
    CHECK(ld && gpt2_loader_num_shards(ld) == 2 && gpt2_loader_num_tokens(ld) == 50);
    if (ld) CHECK(strstr(gpt2_loader_shard_path(ld, 0), "fineweb_val_000000.bin") != NULL);
    gpt2_loader_free(ld);
    CHECK_OK(gpt2_loader_open(at(p, sizeof p, "llmc"), "train", &o, &ld));
    CHECK(ld && gpt2_loader_num_tokens(ld) == 60);
    gpt2_loader_free(ld);
}

/* Opening must fail with status s, a message containing want and (when
   named) the file, and give no loader. */
static void expect_open_fails(const char *path, const char *split,
                              const gpt2_loader_options *o, gpt2_status s,
                              const char *want, const char *file, int line) {
    gpt2_loader *ld = (gpt2_loader *)&ld;
    gpt2_status st = gpt2_loader_open(path, split, o, &ld);
    const char *m = gpt2_last_error();
    int ok = st == s && ld == NULL && strstr(m, want) && (!file || strstr(m, file));
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: want %d '%s' naming %s, got %d: %s\n", line, (int)s,
                want, file ? file : "-", (int)st, m);
    if (st == GPT2_OK) gpt2_loader_free(ld);
}

/* One bad shard (after a good one) in its own folder must be refused. */
static void bad_shard(const char *name, int magic, int version, int count, size_t n,
                      size_t extra, size_t file_len, const char *want, int line) {
    char dir[256], p[300];
    at(dir, sizeof dir, name);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/train_000000.bin", dir);
    write_shard(p, 20240520, 1, 64, 0, 64, 0);
    snprintf(p, sizeof p, "%s/train_000001.bin", dir);
    write_shard(p, magic, version, count, 64, n, extra);
    if (file_len && truncate(p, (off_t)file_len) != 0) perror(p);
    gpt2_loader_options o = gpt2_loader_defaults();
    o.batch_size = 2;
    o.seq_len = 8;
    expect_open_fails(dir, "train", &o, GPT2_ERR_FORMAT, want, "train_000001.bin", line);
}
#define BAD_SHARD(name, magic, version, count, n, extra, file_len, want) \
    bad_shard(name, magic, version, count, n, extra, file_len, want, __LINE__)

static void test_loader_bad_shards(void) {
    BAD_SHARD("b_header", 20240520, 1, 10, 10, 0, 500, "truncated header: the file has 500 bytes");
    BAD_SHARD("b_magic", 12345, 1, 10, 10, 0, 0, "bad magic 12345, expected 20240520");
    BAD_SHARD("b_model", 20240326, 3, 10, 10, 0, 0, "llm.c model checkpoint");
    BAD_SHARD("b_version", 20240520, 2, 10, 10, 0, 0, "version 2, expected 1");
    BAD_SHARD("b_negative", 20240520, 1, -5, 10, 0, 0, "negative token count -5");
    BAD_SHARD("b_short", 20240520, 1, 100, 50, 0, 0,
              "truncated: the header says 100 tokens (1224 bytes) but the file has 1124");
    BAD_SHARD("b_odd", 20240520, 1, 10, 10, 1, 0, "1045 bytes, longer than the 1044");
    BAD_SHARD("b_long", 20240520, 1, 10, 20, 0, 0, "longer than the 1044");
    /* an id >= vocab_size: refused at open, before any batch */
    char dir[256], p[300];
    at(dir, sizeof dir, "b_vocab");
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/train_000000.bin", dir);
    write_shard(p, 20240520, 1, 64, 0, 64, 0);
    snprintf(p, sizeof p, "%s/train_000001.bin", dir);
    write_shard(p, 20240520, 1, 100, 0, 100, 0);
    FILE *f = fopen(p, "r+b");
    fseek(f, 1024 + 2 * 42, SEEK_SET);
    fputc(50257 & 0xff, f);
    fputc(50257 >> 8, f);
    fclose(f);
    gpt2_loader_options o = gpt2_loader_defaults();
    o.batch_size = 2;
    o.seq_len = 8;
    expect_open_fails(dir, "train", &o, GPT2_ERR_FORMAT,
                      "token 50257 at index 42 is >= vocab_size 50257", "train_000001.bin",
                      __LINE__);
    o.vocab_size = 50258; /* a vocabulary that has it */
    gpt2_loader *ld = NULL;
    CHECK_OK(gpt2_loader_open(dir, "train", &o, &ld));
    gpt2_loader_free(ld);
    o.vocab_size = 50257;
    /* splits without enough tokens */
    at(dir, sizeof dir, "b_empty");
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/val_000000.bin", dir);
    write_shard(p, 20240520, 1, 0, 0, 0, 0);
    expect_open_fails(dir, "val", &o, GPT2_ERR_FORMAT, "empty split", NULL, __LINE__);
    snprintf(p, sizeof p, "%s/train_000000.bin", dir);
    write_shard(p, 20240520, 1, 16, 0, 16, 0); /* B*T + 1 = 17 needed */
    expect_open_fails(dir, "train", &o, GPT2_ERR_FORMAT,
                      "the split has 16 tokens, fewer than the 17", NULL, __LINE__);
    o.n_ranks = 2;
    o.rank = 1;
    snprintf(p, sizeof p, "%s/train_000000.bin", dir);
    write_shard(p, 20240520, 1, 17, 0, 17, 0);
    expect_open_fails(dir, "train", &o, GPT2_ERR_FORMAT, "fewer than the 33", NULL, __LINE__);
    o.n_ranks = 1;
    o.rank = 0;
    /* no shards at all */
    expect_open_fails(dir, "test", &o, GPT2_ERR_FORMAT, "no shards for split 'test'",
                      NULL, __LINE__);
    expect_open_fails(at(p, sizeof p, "nowhere/*.bin"), NULL, &o, GPT2_ERR_FORMAT,
                      "no file matches", NULL, __LINE__);
    expect_open_fails(dir, NULL, &o, GPT2_ERR_ARG, "give a split name", NULL, __LINE__);
    /* bad options */
    gpt2_loader_options bad = o;
    bad.batch_size = 0;
    expect_open_fails(dir, "train", &bad, GPT2_ERR_ARG, "batch_size 0", NULL, __LINE__);
    bad = o;
    bad.vocab_size = 70000;
    expect_open_fails(dir, "train", &bad, GPT2_ERR_ARG, "vocab_size 70000", NULL, __LINE__);
    bad = o;
    bad.rank = 2;
    bad.n_ranks = 2;
    expect_open_fails(dir, "train", &bad, GPT2_ERR_ARG, "rank 2 of n_ranks 2", NULL, __LINE__);
    CHECK_FAILS(gpt2_loader_next(NULL, NULL, NULL), GPT2_ERR_ARG, "NULL");
}

/* gpt2_prepare's output read by the loader: the same ids, in batches. */
static void test_prepare_then_load(void) {
    char p[256], out[256];
    const char *in[] = {at(p, sizeof p, "in")};
    CHECK_OK(run_prepare(in, 1, NULL, 0, 0, 50, 1 << 20, NULL));
    ids all = {0};
    read_split(at(out, sizeof out, "out"), "train", 50, &all);
    gpt2_loader_options o = gpt2_loader_defaults();
    o.batch_size = 3;
    o.seq_len = 5;
    gpt2_loader *ld = NULL;
    CHECK_OK(gpt2_loader_open(out, "train", &o, &ld));
    if (!ld) return;
    CHECK(gpt2_loader_num_tokens(ld) == all.n);
    int tokens[15], targets[15], ok = 1;
    for (size_t k = 0; k < gpt2_loader_batches_per_epoch(ld); k++) {
        gpt2_loader_next(ld, tokens, targets);
        for (int i = 0; i < 15; i++)
            ok &= tokens[i] == all.v[k * 15 + i] && targets[i] == all.v[k * 15 + i + 1];
    }
    CHECK(ok);
    gpt2_loader_free(ld);
    free(all.v);
}

int main(void) {
    gpt2_tokenizer *t = NULL;
    if (gpt2_tokenizer_load(TOK_DIR, &t) != GPT2_OK) {
        fprintf(stderr, "test_data: %s (run from the repository root)\n", gpt2_last_error());
        return 1;
    }
    tok = t;
    snprintf(root, sizeof root, "/tmp/gpt2c_data_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_prepare_folder();
    test_chunked_adversarial();
    test_chunked_big();
    test_val_documents();
    test_val_single_document();
    test_val_inputs();
    test_prepare_stdin();
    test_stale_shards_removed();
    test_prepare_refusals();
    make_loader_dir();
    test_loader_sequential();
    test_loader_resume();
    test_loader_ranks();
    test_loader_shuffle();
    test_loader_paths();
    test_loader_bad_shards();
    test_prepare_then_load();
    rm_tree(root);
    gpt2_tokenizer_free(t);
    return CHECK_DONE();
}
