/* test_safetensors.c: the safetensors reader and writer. Round trips in
   F32 (bit exact), F16 and BF16 (exactly the rounding of the converters),
   the writer's layout (metadata first, contiguous offsets, 8-byte aligned
   data), and every way a file can be wrong, each with its own message. */
#include "internal.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char tmpdir[64];

static void path_in_tmp(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

/* A safetensors image: length prefix, header text, data_len bytes of data
   (byte i is i & 0xff). Caller frees. */
static uint8_t *make_image(const char *header, size_t data_len, size_t *len) {
    size_t n = strlen(header);
    *len = 8 + n + data_len;
    uint8_t *b = malloc(*len ? *len : 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (uint8_t)i;
    return b;
}

/* Parsing must fail with GPT2_ERR_FORMAT and a message containing want. */
static void expect_bad_image(const uint8_t *b, size_t len, const char *want,
                             int line) {
    gpt2__st_file f;
    gpt2_status st = gpt2__st_parse(b, len, &f);
    const char *msg = gpt2_last_error();
    CHECK(st == GPT2_ERR_FORMAT);
    CHECK(strstr(msg, want) != NULL);
    if (st != GPT2_ERR_FORMAT || !strstr(msg, want))
        fprintf(stderr, "  line %d: want '%s', got status %d: %s\n", line, want,
                st, msg);
    CHECK(f.n == 0 && f.t == NULL && f.format == NULL);
    gpt2__st_close(&f);
}

static void expect_bad(const char *header, size_t data_len, const char *want,
                       int line) {
    size_t len;
    uint8_t *b = make_image(header, data_len, &len);
    expect_bad_image(b, len, want, line);
    free(b);
}
#define BAD(header, data_len, want) expect_bad(header, data_len, want, __LINE__)

/* ------------------------------------------------------------- good files */

static void test_parse_minimal(void) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[24,32]},"
                    "\"e\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[32,32]}}  ";
    size_t len;
    uint8_t *b = make_image(h, 32, &len);
    gpt2__st_file f;
    CHECK_OK(gpt2__st_parse(b, len, &f));
    CHECK(f.n == 3);
    CHECK(f.format && strcmp(f.format, "pt") == 0);
    CHECK(f.data == b + 8 + strlen(h) && f.data_len == 32);
    const gpt2__st_tensor *a = gpt2__st_find(&f, "a");
    CHECK(a && a->dtype == GPT2__ST_F32 && a->ndim == 2 && a->shape[0] == 2 &&
          a->shape[1] == 3 && a->begin == 0 && a->end == 24);
    const gpt2__st_tensor *s = gpt2__st_find(&f, "b");
    CHECK(s && s->dtype == GPT2__ST_I64 && s->ndim == 0 && s->end - s->begin == 8);
    const gpt2__st_tensor *e = gpt2__st_find(&f, "e");
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->begin == e->end);
    CHECK(gpt2__st_find(&f, "missing") == NULL);
    float out[6];
    CHECK_OK(gpt2__st_read_f32(&f, a, out));
    uint32_t bits;
    memcpy(&bits, &out[1], 4);
    CHECK(bits == 0x07060504u); /* little-endian bytes 4..7 */
    CHECK(gpt2__st_read_f32(&f, s, out) == GPT2_ERR_FORMAT);
    CHECK(strstr(gpt2_last_error(), "has dtype I64, expected F32") != NULL);
    gpt2__st_close(&f);
    gpt2__st_close(&f); /* closing twice is harmless */
    free(b);
}

static void test_empty_header_and_no_metadata(void) {
    size_t len;
    uint8_t *b = make_image("{}", 0, &len);
    gpt2__st_file f;
    CHECK_OK(gpt2__st_parse(b, len, &f));
    CHECK(f.n == 0 && f.format == NULL && f.data_len == 0);
    gpt2__st_close(&f);
    free(b);
}

static void test_dtype_table(void) {
    CHECK(gpt2__st_dtype_size(GPT2__ST_F32) == 4);
    CHECK(gpt2__st_dtype_size(GPT2__ST_BF16) == 2);
    CHECK(gpt2__st_dtype_size(GPT2__ST_F64) == 8);
    CHECK(gpt2__st_dtype_size(GPT2__ST_BOOL) == 1);
    CHECK(gpt2__st_dtype_size(GPT2__ST_OTHER) == 0);
    CHECK(strcmp(gpt2__st_dtype_name(GPT2__ST_F16), "F16") == 0);
    CHECK(strcmp(gpt2__st_dtype_name(GPT2__ST_I8), "I8") == 0);
    CHECK(strcmp(gpt2__st_dtype_name(GPT2__ST_OTHER), "OTHER") == 0);
}

/* Values that exercise rounding, subnormals and the edges of F16. */
static void fill_values(float *x, size_t n) {
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((s >> 40) & 0xffffff) / 16777216.0f - 0.5f;
        x[i] = u * (float)(1 << (i % 20)) / 1024.0f;
    }
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = 65504.0f;      /* largest F16 */
    x[3] = 6e-8f;         /* F16 subnormal */
    x[4] = 1.0f + 1.0f / 4096.0f; /* a tie in F16 */
}

static void roundtrip(gpt2_dtype dtype) {
    enum { A = 7 * 5, B = 13 };
    float a[A], b[B], got_a[A], got_b[B];
    fill_values(a, A);
    fill_values(b, B);
    b[5] = 3.0e38f; /* beyond F16: becomes inf there, stays finite in BF16 */
    gpt2__st_out ts[3] = {
        {.name = "layer.weight", .ndim = 2, .shape = {7, 5}, .data = a},
        {.name = "layer.bias", .ndim = 1, .shape = {B, 0}, .data = b},
        {.name = "empty", .ndim = 1, .shape = {0, 0}, .data = NULL},
    };
    char path[128];
    path_in_tmp(path, sizeof path, "rt.safetensors");
    CHECK_OK(gpt2__st_write(path, ts, 3, dtype));
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0); /* the temp file was renamed away */

    gpt2__st_file f;
    CHECK_OK(gpt2__st_open(path, &f));
    CHECK(f.n == 3);
    CHECK(f.map != NULL);
    CHECK(f.format && strcmp(f.format, "pt") == 0);
    /* data section 8-byte aligned; offsets contiguous in the given order */
    CHECK((f.data - (const uint8_t *)f.map) % 8 == 0);
    CHECK(strcmp(f.t[0].name, "layer.weight") == 0 && f.t[0].begin == 0);
    CHECK(f.t[1].begin == f.t[0].end && f.t[2].begin == f.t[1].end);
    CHECK(f.t[2].end == f.data_len);
    /* the header starts with the metadata, as the Rust library writes it */
    CHECK(memcmp((const char *)f.map + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31) == 0);
    gpt2__st_dtype want = dtype == GPT2_DTYPE_F32 ? GPT2__ST_F32
                          : dtype == GPT2_DTYPE_F16 ? GPT2__ST_F16 : GPT2__ST_BF16;
    CHECK(f.t[0].dtype == want && f.t[1].dtype == want);
    CHECK(f.t[0].ndim == 2 && f.t[0].shape[0] == 7 && f.t[0].shape[1] == 5);
    CHECK_OK(gpt2__st_read_f32(&f, &f.t[0], got_a));
    CHECK_OK(gpt2__st_read_f32(&f, &f.t[1], got_b));
    int bad = 0;
    for (int i = 0; i < A + B; i++) {
        float x = i < A ? a[i] : b[i - A], y = i < A ? got_a[i] : got_b[i - A];
        float exp = dtype == GPT2_DTYPE_F32   ? x
                    : dtype == GPT2_DTYPE_F16 ? gpt2__f16_to_f32(gpt2__f32_to_f16(x))
                                              : gpt2__bf16_to_f32(gpt2__f32_to_bf16(x));
        bad += memcmp(&exp, &y, 4) != 0;
        /* and within half an ulp of the format (relative), where finite */
        if (dtype != GPT2_DTYPE_F32 && fabsf(x) > 1e-4f && fabsf(x) < 6e4f)
            bad += !(fabsf(y - x) <= fabsf(x) * (dtype == GPT2_DTYPE_F16 ? 0x1p-11f : 0x1p-8f));
    }
    CHECK(bad == 0);
    if (dtype == GPT2_DTYPE_F16) CHECK(isinf(got_b[5]));
    if (dtype == GPT2_DTYPE_BF16) CHECK(isfinite(got_b[5]));
    gpt2__st_close(&f);
}

/* Header padding: whatever the names, the data starts 8-byte aligned. */
static void test_alignment_all_name_lengths(void) {
    float x[3] = {1, 2, 3};
    char name[32], path[128];
    path_in_tmp(path, sizeof path, "align.safetensors");
    int bad = 0;
    for (int k = 1; k <= 16; k++) {
        memset(name, 'n', (size_t)k);
        name[k] = 0;
        gpt2__st_out t = {.name = name, .ndim = 1, .shape = {3, 0}, .data = x};
        gpt2__st_file f;
        if (gpt2__st_write(path, &t, 1, GPT2_DTYPE_F32) || gpt2__st_open(path, &f)) {
            bad++;
            continue;
        }
        bad += (f.data - (const uint8_t *)f.map) % 8 != 0;
        bad += ((const float *)f.data)[2] != 3.0f;
        gpt2__st_close(&f);
    }
    CHECK(bad == 0);
}

static void test_write_errors(void) {
    float x[2] = {1, 2};
    gpt2__st_out dup[2] = {{.name = "a", .ndim = 1, .shape = {2, 0}, .data = x}, {.name = "a", .ndim = 1, .shape = {2, 0}, .data = x}};
    char path[128];
    path_in_tmp(path, sizeof path, "w.safetensors");
    CHECK(gpt2__st_write(path, dup, 2, GPT2_DTYPE_F32) == GPT2_ERR_ARG);
    CHECK(strstr(gpt2_last_error(), "duplicate tensor name 'a'") != NULL);
    gpt2__st_out neg = {.name = "n", .ndim = 1, .shape = {-1, 0}, .data = x};
    CHECK(gpt2__st_write(path, &neg, 1, GPT2_DTYPE_F32) == GPT2_ERR_ARG);
    CHECK(strstr(gpt2_last_error(), "bad shape[0]") != NULL);
    gpt2__st_out nodata = {.name = "n", .ndim = 1, .shape = {2, 0}, .data = NULL};
    CHECK(gpt2__st_write(path, &nodata, 1, GPT2_DTYPE_F32) == GPT2_ERR_ARG);
    CHECK(gpt2__st_write(path, dup, 1, (gpt2_dtype)7) == GPT2_ERR_ARG);
    CHECK(gpt2__st_write("/nonexistent-dir/x.safetensors", dup, 1, GPT2_DTYPE_F32) ==
          GPT2_ERR_IO);
    CHECK(strstr(gpt2_last_error(), "/nonexistent-dir/x.safetensors.tmp") != NULL);
    CHECK(access(path, F_OK) != 0); /* nothing was written */
}

/* -------------------------------------------------------------- bad files */

static void test_bad_length_prefix(void) {
    uint8_t b[16] = {0};
    expect_bad_image(b, 0, "file is 0 bytes, shorter than the 8-byte header", __LINE__);
    expect_bad_image(b, 7, "file is 7 bytes, shorter than the 8-byte header", __LINE__);
    b[0] = 9; /* header of 9 bytes in a 16-byte file: 1 byte short */
    expect_bad_image(b, 16, "header length 9 runs beyond the end of the file", __LINE__);
    memset(b, 0xff, 8); /* 2^64 - 1 */
    expect_bad_image(b, 16, "header length 18446744073709551615 exceeds the limit", __LINE__);
    uint64_t big = 100000001;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(big >> (8 * i));
    expect_bad_image(b, 16, "exceeds the limit of 100000000", __LINE__);
}

static void test_bad_json(void) {
    BAD("{\"a\": ", 0, "header is not valid JSON");
    BAD("", 0, "header is not valid JSON");
    BAD("[1, 2]", 0, "header is an array, expected a JSON object");
    BAD("\"text\"", 0, "header is a string, expected a JSON object");
    BAD("{} x", 0, "trailing bytes after the JSON header");
    /* trailing whitespace is padding, not garbage */
    size_t len;
    uint8_t *b = make_image("{}\n\t ", 0, &len);
    gpt2__st_file f;
    CHECK_OK(gpt2__st_parse(b, len, &f));
    gpt2__st_close(&f);
    free(b);
}

static void test_bad_metadata(void) {
    BAD("{\"__metadata__\":[1]}", 0, "\"__metadata__\" is an array, expected an object");
    BAD("{\"__metadata__\":{\"format\":1}}", 0,
        "\"__metadata__\" value 'format' is a number, expected a string");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate \"__metadata__\"");
}

static void test_bad_entries(void) {
    BAD("{\"t\":5}", 0, "tensor 't': entry is a number, expected an object");
    BAD("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        "tensor 't': missing \"dtype\"");
    BAD("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
        "tensor 't': missing \"shape\"");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
        "tensor 't': missing \"data_offsets\"");
    BAD("{\"t\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        "\"dtype\" is a number, expected a string");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4,
        "\"shape\" is an object, expected an array");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0\"}}", 4,
        "\"data_offsets\" is a string, expected an array");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
        "\"data_offsets\" must have 2 entries [begin, end], has 1");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
        "tensor 't': shape[0] is negative");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
        "tensor 't': shape[0] is not an integer");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,4]}}", 4,
        "tensor 't': shape[1] is not a number");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4,
        "tensor 't': shape[0] is too large");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,4]}}", 4,
        "tensor 't': data_offsets[0] is negative");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.25]}}", 4,
        "tensor 't': data_offsets[1] is not an integer");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
        4, "tensor 't' has 9 dimensions, at most 8");
}

static void test_bad_sizes(void) {
    BAD("{\"t\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        "tensor 't': unknown dtype 'Q4'");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
        "shape [2, 3] of F32 is 24 bytes but data_offsets span 20 bytes");
    BAD("{\"t\":{\"dtype\":\"F16\",\"shape\":[4294967296,4294967296],"
        "\"data_offsets\":[0,4]}}", 4, "tensor 't': size overflow");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8,
        "data_offsets [4, 12] outside the data section (8 bytes)");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
        "data_offsets begin 8 > end 4");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
        "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
    /* one tensor inside another, listed first */
    BAD("{\"in\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
        "\"out\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
        "overlap");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
        "duplicate tensor name 'a'");
}

/* Every prefix of a valid file (at each eighth) is rejected, cleanly. */
static void test_truncation(void) {
    enum { N = 40 };
    float x[N];
    fill_values(x, N);
    gpt2__st_out ts[2] = {{.name = "w", .ndim = 2, .shape = {4, 5}, .data = x}, {.name = "b", .ndim = 1, .shape = {20, 0}, .data = x + 20}};
    char path[128], cut[128];
    path_in_tmp(path, sizeof path, "full.safetensors");
    path_in_tmp(cut, sizeof cut, "cut.safetensors");
    CHECK_OK(gpt2__st_write(path, ts, 2, GPT2_DTYPE_F32));
    char *data;
    size_t len;
    CHECK_OK(gpt2__read_file(path, &data, &len));
    for (int k = 0; k < 8; k++) {
        size_t n = len * (size_t)k / 8;
        gpt2__st_file f;
        gpt2_status st = gpt2__st_parse((const uint8_t *)data, n, &f);
        CHECK(st == GPT2_ERR_FORMAT);
        /* and through a file, where the message also names the path */
        CHECK_OK(gpt2__write_file_atomic(cut, data, n));
        st = gpt2__st_open(cut, &f);
        CHECK(st == GPT2_ERR_FORMAT);
        CHECK(strstr(gpt2_last_error(), cut) == gpt2_last_error());
        if (st) CHECK(f.map == NULL && f.t == NULL);
        else gpt2__st_close(&f);
    }
    gpt2__st_file f;
    CHECK_OK(gpt2__st_parse((const uint8_t *)data, len, &f));
    gpt2__st_close(&f);
    free(data);
    unlink(cut);
    unlink(path);
}

static void test_open_errors(void) {
    gpt2__st_file f;
    char path[128];
    path_in_tmp(path, sizeof path, "none.safetensors");
    CHECK(gpt2__st_open(path, &f) == GPT2_ERR_IO);
    CHECK(strstr(gpt2_last_error(), "none.safetensors: No such file") != NULL);
    CHECK(gpt2__st_open(tmpdir, &f) == GPT2_ERR_IO);
    CHECK(strstr(gpt2_last_error(), "not a regular file") != NULL);
    CHECK(gpt2__st_open("/dev/null", &f) == GPT2_ERR_IO);
    /* an empty file: too short, and the message names it */
    path_in_tmp(path, sizeof path, "empty.safetensors");
    CHECK_OK(gpt2__write_file_atomic(path, "", 0));
    CHECK(gpt2__st_open(path, &f) == GPT2_ERR_FORMAT);
    CHECK(strstr(gpt2_last_error(), "empty.safetensors: safetensors: file is 0 bytes") != NULL);
    unlink(path);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gpt2c_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_parse_minimal();
    test_empty_header_and_no_metadata();
    test_dtype_table();
    roundtrip(GPT2_DTYPE_F32);
    roundtrip(GPT2_DTYPE_F16);
    roundtrip(GPT2_DTYPE_BF16);
    test_alignment_all_name_lengths();
    test_write_errors();
    test_bad_length_prefix();
    test_bad_json();
    test_bad_metadata();
    test_bad_entries();
    test_bad_sizes();
    test_truncation();
    test_open_errors();
    char p[128];
    const char *left[] = {"rt.safetensors", "align.safetensors", NULL};
    for (int i = 0; left[i]; i++) {
        path_in_tmp(p, sizeof p, left[i]);
        unlink(p);
    }
    CHECK(rmdir(tmpdir) == 0);
    return CHECK_DONE();
}
