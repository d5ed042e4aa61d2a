/* fuzz_safetensors.c: libFuzzer target for the safetensors reader. Any
   input must either parse into tensors whose extents lie inside the data
   (then every F32/F16/BF16 tensor is read back as floats) or be refused
   with a message; never a crash, leak or out-of-bounds read.

   clang -g -O1 -fsanitize=fuzzer,address -Iinclude -Isrc src/util.c \
     src/safetensors.c tests/fuzz/fuzz_safetensors.c -lcjson -lm -o /tmp/fz
   /tmp/fz -max_total_time=60 tests/fuzz/corpus_safetensors */
#include "internal.h"

#include <string.h>

static void check(bool ok) {
    /* an invariant of the parser broke: crash so libFuzzer keeps the input */
    if (!ok) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gpt2__st_file f;
    if (gpt2__st_parse(data, size, &f) != GPT2_OK) {
        check(gpt2_last_error()[0] != 0 && f.n == 0 && f.t == NULL);
        return 0;
    }
    check(f.data >= data && f.data + f.data_len == data + size);
    for (int i = 0; i < f.n; i++) {
        const gpt2__st_tensor *t = &f.t[i];
        check(t->begin <= t->end && t->end <= f.data_len);
        check(gpt2__st_find(&f, t->name) != NULL);
        size_t es = gpt2__st_dtype_size(t->dtype);
        if (t->dtype != GPT2__ST_F32 && t->dtype != GPT2__ST_F16 &&
            t->dtype != GPT2__ST_BF16)
            continue;
        size_t numel = (t->end - t->begin) / es;
        float *out = malloc(numel ? numel * sizeof(float) : 1);
        if (!out) continue;
        check(gpt2__st_read_f32(&f, t, out) == GPT2_OK);
        free(out);
    }
    gpt2__st_close(&f);
    return 0;
}
