/* fuzz_shard.c: libFuzzer target for src/data.c. The first byte picks:
   - even: the rest is a token shard file (bit 1 of the first byte set:
     the rest is only the tokens, after a header that is right except
     where bits 2-3 break the magic or version, with a count off by the
     signed second byte). gpt2_loader_open must refuse it
     with a message, or open it; then batches must hold ids < vocab_size
     and tell/seek must give the same batches again. Never a crash or an
     out-of-bounds read.
   - odd: the rest is a text document. gpt2_prepare with a tiny chunk size
     (from the second byte) must write EOT + exactly the ids of encoding
     the text whole: chunks are only ever cut where the pre-tokenizer cannot
     join text across.
   Run from the repository root (it loads assets/tokenizer):
     bash tests/fuzz/run.sh 60 */
#include "gpt2.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check(int ok) {
    if (!ok) __builtin_trap(); /* libFuzzer keeps the input */
}

static char dir[64];
static gpt2_tokenizer *tok;

static void cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) perror(cmd);
    gpt2_tokenizer_free(tok);
}

static void setup(void) {
    if (dir[0]) return;
    snprintf(dir, sizeof dir, "/tmp/fuzz_shard_%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    check(system(cmd) == 0);
    check(gpt2_tokenizer_load("assets/tokenizer", &tok) == GPT2_OK);
    atexit(cleanup);
}

static void write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    check(f != NULL);
    check(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* A header for the n bytes of tokens in data, spoilt as mode says. */
static uint8_t *frame(const uint8_t *data, size_t n, int mode, int delta,
                      size_t *len) {
    uint8_t *b = calloc(1, 1024 + n);
    check(b != NULL);
    int32_t h[3] = {mode & 4 ? 20240326 : 20240520, mode & 8 ? 2 : 1,
                    (int32_t)(n / 2) + delta};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) b[4 * i + k] = (uint8_t)((uint32_t)h[i] >> (8 * k));
    memcpy(b + 1024, data, n);
    *len = 1024 + n;
    return b;
}

static void fuzz_loader(int mode, const uint8_t *data, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/shard.bin", dir);
    if (mode & 2) {
        if (n < 1) return;
        size_t len;
        uint8_t *b = frame(data + 1, n - 1, mode, (int8_t)data[0], &len);
        write_file(path, b, len);
        free(b);
    } else {
        write_file(path, data, n);
    }
    gpt2_loader_options o = gpt2_loader_defaults();
    o.batch_size = 2;
    o.seq_len = 3;
    o.vocab_size = 50000;
    o.shuffle = n & 1;
    gpt2_loader *ld = NULL;
    if (gpt2_loader_open(path, NULL, &o, &ld) != GPT2_OK) {
        check(ld == NULL && gpt2_last_error()[0] != 0);
        return;
    }
    int a[6], b[6], c[6], d[6];
    gpt2_loader_pos pos;
    for (int k = 0; k < 5; k++) {
        gpt2_loader_tell(ld, &pos);
        check(gpt2_loader_next(ld, a, b) == GPT2_OK);
        for (int i = 0; i < 6; i++) check(a[i] >= 0 && a[i] < 50000 && b[i] >= 0 && b[i] < 50000);
        for (int i = 0; i + 1 < 3; i++) check(b[i] == a[i + 1] && b[3 + i] == a[4 + i]);
        check(gpt2_loader_seek(ld, &pos) == GPT2_OK);
        check(gpt2_loader_next(ld, c, d) == GPT2_OK);
        check(memcmp(a, c, sizeof a) == 0 && memcmp(b, d, sizeof b) == 0);
    }
    gpt2_loader_free(ld);
}

static void fuzz_chunks(const uint8_t *data, size_t n) {
    if (n < 1) return;
    size_t chunk = 1 + data[0] % 16;
    data++;
    n--;
    char in[128], out[128], shard[160];
    snprintf(in, sizeof in, "%s/doc.txt", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(shard, sizeof shard, "%s/train_000000.bin", out);
    write_file(in, data, n);
    const char *inputs[] = {in};
    gpt2_prepare_options o = gpt2_prepare_defaults();
    o.inputs = inputs;
    o.n_inputs = 1;
    o.out_dir = out;
    o.chunk_bytes = chunk;
    check(gpt2_prepare(tok, &o, NULL) == GPT2_OK);
    int *want = malloc((n + 1) * sizeof *want);
    size_t n_want = 0;
    check(gpt2_tokenizer_encode(tok, (const char *)data, n, 0, want, n + 1, &n_want) == GPT2_OK);
    FILE *f = fopen(shard, "rb");
    check(f != NULL);
    uint8_t h[1024];
    check(fread(h, 1, sizeof h, f) == sizeof h);
    check(h[8] + (h[9] << 8) + (h[10] << 16) == (int)n_want + 1);
    uint8_t t[2];
    check(fread(t, 1, 2, f) == 2 && (t[0] | t[1] << 8) == 50256);
    for (size_t i = 0; i < n_want; i++) {
        check(fread(t, 1, 2, f) == 2);
        check((t[0] | t[1] << 8) == want[i]);
    }
    fclose(f);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size < 1) return 0;
    if (data[0] & 1)
        fuzz_chunks(data + 1, size - 1);
    else
        fuzz_loader(data[0], data + 1, size - 1);
    return 0;
}
