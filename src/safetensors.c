/* safetensors.c: read and write the safetensors format.

   A file is: an 8-byte little-endian u64 N, N bytes of JSON header, then
   the data section. The header maps tensor names to {"dtype", "shape",
   "data_offsets": [begin, end]} (offsets relative to the data section),
   plus an optional "__metadata__" object of string values. Reading maps
   the file read-only and validates every entry before anyone touches the
   data, so a hostile or truncated file gives a message, never a crash.
   Writing streams tensors to path.tmp, syncs and renames, so a 6 GB model
   is never copied whole into memory and a crash never leaves half a file.
   docs/formats.md describes the subset read and written. */
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are used in place (mapped F32) and converted with memcpy:
   both need the host to share the file's little-endian byte order. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* The Rust safetensors library refuses headers over 100 MB; a larger
   length is corruption, and refusing it keeps cJSON from a huge parse. */
#define ST_MAX_HEADER 100000000ull
/* Beyond 2^53 a JSON number read as a double is no longer exact. */
#define ST_MAX_INT 9007199254740992.0
#define ST_MAX_DIMS 8

/* ------------------------------------------------------------------ dtypes */

static const struct {
    const char *name;
    gpt2__st_dtype dtype;
    size_t size;
} dtypes[] = {
    {"F32", GPT2__ST_F32, 4},  {"F16", GPT2__ST_F16, 2},
    {"BF16", GPT2__ST_BF16, 2}, {"F64", GPT2__ST_F64, 8},
    {"I64", GPT2__ST_I64, 8},  {"I32", GPT2__ST_I32, 4},
    {"I16", GPT2__ST_I16, 2},  {"I8", GPT2__ST_I8, 1},
    {"U8", GPT2__ST_U8, 1},    {"BOOL", GPT2__ST_BOOL, 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

size_t gpt2__st_dtype_size(gpt2__st_dtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == d) return dtypes[i].size;
    return 0;
}

const char *gpt2__st_dtype_name(gpt2__st_dtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == d) return dtypes[i].name;
    return "OTHER";
}

static bool dtype_from_name(const char *name, gpt2__st_dtype *out) {
    for (size_t i = 0; i < N_DTYPES; i++) {
        if (strcmp(dtypes[i].name, name) == 0) {
            *out = dtypes[i].dtype;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------ JSON values */

/* A JSON number that must be an exact non-negative integer (a size or an
   offset). On failure *why says which rule it broke. */
static bool json_uint(const cJSON *v, uint64_t *out, const char **why) {
    if (!cJSON_IsNumber(v)) {
        *why = "is not a number";
        return false;
    }
    double d = v->valuedouble;
    if (d < 0) {
        *why = "is negative";
        return false;
    }
    if (d != floor(d)) {
        *why = "is not an integer";
        return false;
    }
    if (d > ST_MAX_INT) {
        *why = "is too large";
        return false;
    }
    *out = (uint64_t)d;
    return true;
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

/* --------------------------------------------------------------- parsing */

static gpt2_status parse_metadata(const cJSON *meta, gpt2__st_file *f) {
    if (!cJSON_IsObject(meta))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: \"__metadata__\" is %s, expected an "
                          "object of strings", json_type_name(meta));
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return gpt2__fail(GPT2_ERR_FORMAT,
                              "safetensors: \"__metadata__\" value '%s' is %s, "
                              "expected a string", kv->string, json_type_name(kv));
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    if (fmt) {
        f->format = strdup(fmt->valuestring);
        if (!f->format)
            return gpt2__fail(GPT2_ERR_NOMEM, "safetensors: out of memory");
    }
    return GPT2_OK;
}

static gpt2_status parse_shape(const cJSON *shape, gpt2__st_tensor *t) {
    const char *why;
    if (!cJSON_IsArray(shape))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': \"shape\" is %s, expected "
                          "an array", t->name, json_type_name(shape));
    int n = cJSON_GetArraySize(shape);
    if (n > ST_MAX_DIMS)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s' has %d dimensions, at most "
                          "%d supported", t->name, n, ST_MAX_DIMS);
    t->ndim = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_uint(d, &v, &why))
            return gpt2__fail(GPT2_ERR_FORMAT,
                              "safetensors: tensor '%s': shape[%d] %s", t->name,
                              t->ndim, why);
        t->shape[t->ndim++] = (int64_t)v;
    }
    return GPT2_OK;
}

static gpt2_status parse_offsets(const cJSON *off, gpt2__st_tensor *t) {
    const char *why;
    if (!cJSON_IsArray(off))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': \"data_offsets\" is %s, "
                          "expected an array", t->name, json_type_name(off));
    if (cJSON_GetArraySize(off) != 2)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': \"data_offsets\" must have "
                          "2 entries [begin, end], has %d", t->name,
                          cJSON_GetArraySize(off));
    uint64_t be[2];
    for (int i = 0; i < 2; i++)
        if (!json_uint(cJSON_GetArrayItem(off, i), &be[i], &why))
            return gpt2__fail(GPT2_ERR_FORMAT,
                              "safetensors: tensor '%s': data_offsets[%d] %s",
                              t->name, i, why);
    if (be[0] > be[1])
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': data_offsets begin %llu > "
                          "end %llu", t->name, (unsigned long long)be[0],
                          (unsigned long long)be[1]);
    if (be[1] > SIZE_MAX)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': data_offsets end %llu "
                          "does not fit in memory", t->name,
                          (unsigned long long)be[1]);
    t->begin = (size_t)be[0];
    t->end = (size_t)be[1];
    return GPT2_OK;
}

static const cJSON *required(const cJSON *entry, const char *key,
                             const char *name, gpt2_status *st) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, key);
    if (!v)
        *st = gpt2__fail(GPT2_ERR_FORMAT,
                         "safetensors: tensor '%s': missing \"%s\"", name, key);
    return v;
}

/* Shape product times element size must be exactly the byte span, which
   must lie inside the data section. */
static gpt2_status check_extent(const gpt2__st_tensor *t, size_t data_len) {
    size_t bytes = gpt2__st_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++)
        if (!gpt2__mul_ok(bytes, (size_t)t->shape[i], &bytes))
            return gpt2__fail(GPT2_ERR_FORMAT,
                              "safetensors: tensor '%s': size overflow (shape "
                              "product x %zu bytes)", t->name,
                              gpt2__st_dtype_size(t->dtype));
    if (bytes != t->end - t->begin) {
        char dims[160] = "";
        size_t k = 0;
        for (int i = 0; i < t->ndim && k < sizeof dims; i++)
            k += (size_t)snprintf(dims + k, sizeof dims - k, "%s%lld",
                                  i ? ", " : "", (long long)t->shape[i]);
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': shape [%s] of %s is %zu "
                          "bytes but data_offsets span %zu bytes", t->name, dims,
                          gpt2__st_dtype_name(t->dtype), bytes, t->end - t->begin);
    }
    if (t->end > data_len)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': data_offsets [%zu, %zu] "
                          "outside the data section (%zu bytes)", t->name,
                          t->begin, t->end, data_len);
    return GPT2_OK;
}

static gpt2_status parse_tensor(const cJSON *entry, gpt2__st_tensor *t,
                                size_t data_len) {
    gpt2_status st = GPT2_OK;
    t->name = strdup(entry->string);
    if (!t->name) return gpt2__fail(GPT2_ERR_NOMEM, "safetensors: out of memory");
    if (!cJSON_IsObject(entry))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': entry is %s, expected an "
                          "object", t->name, json_type_name(entry));
    const cJSON *dtype = required(entry, "dtype", t->name, &st);
    const cJSON *shape = dtype ? required(entry, "shape", t->name, &st) : NULL;
    const cJSON *off = shape ? required(entry, "data_offsets", t->name, &st) : NULL;
    if (st) return st;
    if (!cJSON_IsString(dtype))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': \"dtype\" is %s, expected "
                          "a string", t->name, json_type_name(dtype));
    if (!dtype_from_name(dtype->valuestring, &t->dtype))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s': unknown dtype '%s' "
                          "(expected F32, F16, BF16, F64, I64, I32, I16, I8, U8 "
                          "or BOOL)", t->name, dtype->valuestring);
    if ((st = parse_shape(shape, t))) return st;
    if ((st = parse_offsets(off, t))) return st;
    return check_extent(t, data_len);
}

static int cmp_names(const void *a, const void *b) {
    const gpt2__st_tensor *x = *(const gpt2__st_tensor *const *)a;
    const gpt2__st_tensor *y = *(const gpt2__st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_begin(const void *a, const void *b) {
    const gpt2__st_tensor *x = *(const gpt2__st_tensor *const *)a;
    const gpt2__st_tensor *y = *(const gpt2__st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* cJSON keeps every copy of a repeated key, and a file may reuse bytes for
   two tensors: both are checked on a sorted view, O(n log n), so a header
   with a million entries stays fast. */
static gpt2_status check_names_and_overlap(const gpt2__st_file *f) {
    if (f->n < 2) return GPT2_OK;
    const gpt2__st_tensor **v = gpt2__malloc((size_t)f->n, sizeof *v, "safetensors");
    if (!v) return GPT2_ERR_NOMEM;
    for (int i = 0; i < f->n; i++) v[i] = &f->t[i];
    gpt2_status st = GPT2_OK;
    qsort(v, (size_t)f->n, sizeof *v, cmp_names);
    for (int i = 1; i < f->n && !st; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            st = gpt2__fail(GPT2_ERR_FORMAT,
                            "safetensors: duplicate tensor name '%s'", v[i]->name);
    if (!st) qsort(v, (size_t)f->n, sizeof *v, cmp_begin);
    /* empty tensors occupy no bytes and may sit anywhere */
    const gpt2__st_tensor *prev = NULL;
    for (int i = 0; i < f->n && !st; i++) {
        if (v[i]->begin == v[i]->end) continue;
        if (prev && v[i]->begin < prev->end)
            st = gpt2__fail(GPT2_ERR_FORMAT,
                            "safetensors: tensors '%s' [%zu, %zu] and '%s' "
                            "[%zu, %zu] overlap", prev->name, prev->begin,
                            prev->end, v[i]->name, v[i]->begin, v[i]->end);
        if (!prev || v[i]->end > prev->end) prev = v[i];
    }
    free(v);
    return st;
}

static void free_parsed(gpt2__st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    free(f->format);
    f->t = NULL;
    f->n = 0;
    f->format = NULL;
}

static bool only_space(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') return false;
    return true;
}

/* The length prefix and the JSON text; *root receives the object. */
static gpt2_status parse_header(const uint8_t *buf, size_t len, cJSON **root,
                                size_t *header_len) {
    if (len < 8)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: file is %zu bytes, shorter than the "
                          "8-byte header length", len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > ST_MAX_HEADER)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: header length %llu exceeds the limit of "
                          "%llu bytes (corrupt file?)", (unsigned long long)n,
                          ST_MAX_HEADER);
    if (n > len - 8)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: header length %llu runs beyond the end "
                          "of the file (%zu bytes after the length)",
                          (unsigned long long)n, len - 8);
    const char *text = (const char *)buf + 8, *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, false);
    if (!*root)
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: header is not valid JSON (error near "
                          "byte %td of %llu)", end ? end - text : 0,
                          (unsigned long long)n);
    if (!only_space(end, text + n))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: trailing bytes after the JSON header "
                          "(at byte %td of %llu)", end - text,
                          (unsigned long long)n);
    if (!cJSON_IsObject(*root))
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: header is %s, expected a JSON object",
                          json_type_name(*root));
    *header_len = (size_t)n;
    return GPT2_OK;
}

static gpt2_status parse_entries(const cJSON *root, gpt2__st_file *f) {
    int count = 0, meta_seen = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) count += strcmp(e->string, "__metadata__") != 0;
    f->t = gpt2__calloc((size_t)count, sizeof *f->t, "safetensors tensors");
    if (!f->t) return GPT2_ERR_NOMEM;
    gpt2_status st;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta_seen++)
                return gpt2__fail(GPT2_ERR_FORMAT,
                                  "safetensors: duplicate \"__metadata__\"");
            if ((st = parse_metadata(e, f))) return st;
            continue;
        }
        /* count first, so free_parsed releases the name on failure */
        gpt2__st_tensor *t = &f->t[f->n++];
        if ((st = parse_tensor(e, t, f->data_len))) return st;
    }
    return check_names_and_overlap(f);
}

gpt2_status gpt2__st_parse(const uint8_t *buf, size_t len, gpt2__st_file *f) {
    memset(f, 0, sizeof *f);
    cJSON *root = NULL;
    size_t n = 0;
    gpt2_status st = parse_header(buf, len, &root, &n);
    if (!st) {
        f->data = buf + 8 + n;
        f->data_len = len - 8 - n;
        st = parse_entries(root, f);
    }
    cJSON_Delete(root);
    if (st) {
        free_parsed(f);
        memset(f, 0, sizeof *f);
    }
    return st;
}

/* ------------------------------------------------------------ open/close */

/* Puts "path: " before the message a callee recorded. */
static gpt2_status with_path(gpt2_status st, const char *path) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", gpt2_last_error());
    return gpt2__fail(st, "%s: %s", path, msg);
}

gpt2_status gpt2__st_open(const char *path, gpt2__st_file *f) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gpt2__fail(GPT2_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return gpt2__fail(GPT2_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        /* too short to map usefully (and mmap refuses 0 bytes); the parser
           words the error */
        close(fd);
        return with_path(gpt2__st_parse((const uint8_t *)"", len, f), path);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file open */
    if (map == MAP_FAILED)
        return gpt2__fail(GPT2_ERR_IO, "%s: mmap: %s", path, strerror(e));
    gpt2_status st = gpt2__st_parse(map, len, f);
    if (st) {
        munmap(map, len);
        return with_path(st, path);
    }
    f->map = map;
    f->map_len = len;
    return GPT2_OK;
}

void gpt2__st_close(gpt2__st_file *f) {
    if (!f) return;
    free_parsed(f);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

const gpt2__st_tensor *gpt2__st_find(const gpt2__st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

/* ------------------------------------------------------------- reading */

gpt2_status gpt2__st_read_f32(const gpt2__st_file *f, const gpt2__st_tensor *t,
                              float *out) {
    const uint8_t *src = f->data + t->begin;
    size_t bytes = t->end - t->begin;
    switch (t->dtype) {
    case GPT2__ST_F32:
        memcpy(out, src, bytes); /* the source may be unaligned */
        return GPT2_OK;
    case GPT2__ST_F16: {
        ptrdiff_t n = (ptrdiff_t)(bytes / 2);
#ifdef _OPENMP
#pragma omp parallel for if (n > (1 << 18))
#endif
        for (ptrdiff_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2); /* the source may be unaligned */
            out[i] = gpt2__f16_to_f32(h);
        }
        return GPT2_OK;
    }
    case GPT2__ST_BF16: {
        /* bfloat16 is the top half of a float32: a shift, written inline
           so the loop vectorizes (4x faster than a call per element) */
        size_t n = bytes / 2;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t u = (uint32_t)h << 16;
            memcpy(&out[i], &u, 4);
        }
        return GPT2_OK;
    }
    default:
        return gpt2__fail(GPT2_ERR_FORMAT,
                          "safetensors: tensor '%s' has dtype %s, expected F32, "
                          "F16 or BF16", t->name, gpt2__st_dtype_name(t->dtype));
    }
}

/* ------------------------------------------------------------- writing */

static gpt2__st_dtype st_dtype_of(gpt2_dtype d) {
    return d == GPT2_DTYPE_F16 ? GPT2__ST_F16
           : d == GPT2_DTYPE_BF16 ? GPT2__ST_BF16 : GPT2__ST_F32;
}

static gpt2_status out_numel(const gpt2__st_out *t, size_t *numel) {
    if (!t->name || t->ndim < 0 || t->ndim > 2)
        return gpt2__fail(GPT2_ERR_ARG, "st_write: tensor '%s': ndim %d, expected "
                          "0, 1 or 2", t->name ? t->name : "(null)", t->ndim);
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0 || !gpt2__mul_ok(n, (size_t)t->shape[i], &n))
            return gpt2__fail(GPT2_ERR_ARG, "st_write: tensor '%s': bad shape[%d] "
                              "= %lld", t->name, i, (long long)t->shape[i]);
    if (n && !t->data && !t->fill)
        return gpt2__fail(GPT2_ERR_ARG, "st_write: tensor '%s': no data", t->name);
    *numel = n;
    return GPT2_OK;
}

/* Keys in the order the Rust library writes them: dtype, shape,
   data_offsets. */
static cJSON *tensor_entry(const gpt2__st_out *t, gpt2__st_dtype d,
                           size_t begin, size_t end) {
    cJSON *e = cJSON_CreateObject();
    bool ok = cJSON_AddStringToObject(e, "dtype", gpt2__st_dtype_name(d)) != NULL;
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    ok = ok && shape && off;
    for (int i = 0; ok && i < t->ndim; i++)
        ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
    ok = ok && cJSON_AddItemToArray(off, cJSON_CreateNumber((double)begin));
    ok = ok && cJSON_AddItemToArray(off, cJSON_CreateNumber((double)end));
    if (!ok) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

/* The header text: metadata first, tensors in the order given, offsets
   contiguous from 0. */
static gpt2_status build_header(const gpt2__st_out *ts, int n, gpt2__st_dtype d,
                                char **text) {
    size_t esize = gpt2__st_dtype_size(d), off = 0;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) goto nomem;
    for (int i = 0; i < n; i++) {
        size_t numel, bytes, end;
        gpt2_status st = out_numel(&ts[i], &numel);
        if (st) {
            cJSON_Delete(root);
            return st;
        }
        size_t es = ts[i].raw_u8 ? 1 : esize;
        if (!gpt2__mul_ok(numel, es, &bytes) || !gpt2__add_ok(off, bytes, &end)) {
            cJSON_Delete(root);
            return gpt2__fail(GPT2_ERR_ARG, "st_write: tensor '%s': size overflow",
                              ts[i].name);
        }
        if (cJSON_GetObjectItemCaseSensitive(root, ts[i].name)) {
            cJSON_Delete(root);
            return gpt2__fail(GPT2_ERR_ARG, "st_write: duplicate tensor name '%s'",
                              ts[i].name);
        }
        cJSON *e = tensor_entry(&ts[i], ts[i].raw_u8 ? GPT2__ST_U8 : d, off, end);
        if (!e) goto nomem;
        cJSON_AddItemToObject(root, ts[i].name, e);
        off = end;
    }
    *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*text) return gpt2__fail(GPT2_ERR_NOMEM, "st_write: out of memory");
    return GPT2_OK;
nomem:
    cJSON_Delete(root);
    return gpt2__fail(GPT2_ERR_NOMEM, "st_write: out of memory");
}

/* The length prefix and the header, padded with spaces (as the Rust
   library does) so the data section starts 8-byte aligned and a reader can
   map F32 and F64 data in place. */
static gpt2_status write_header(gpt2__afile *a, const char *json) {
    size_t n = strlen(json), pad = (8 - n % 8) % 8;
    uint8_t len8[8];
    uint64_t total = (uint64_t)(n + pad);
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(total >> (8 * i));
    static const char spaces[8] = "        ";
    gpt2_status st = gpt2__afile_write(a, len8, 8);
    if (!st) st = gpt2__afile_write(a, json, n);
    if (!st) st = gpt2__afile_write(a, spaces, pad);
    return st;
}

static gpt2_status write_data(gpt2__afile *a, const float *x, size_t n,
                              gpt2_dtype dtype) {
    if (dtype == GPT2_DTYPE_F32) return gpt2__afile_write(a, x, n * sizeof(float));
    uint16_t buf[8192];
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 8192 ? n - i : 8192;
        for (size_t j = 0; j < k; j++)
            buf[j] = dtype == GPT2_DTYPE_F16 ? gpt2__f32_to_f16(x[i + j])
                                             : gpt2__f32_to_bf16(x[i + j]);
        gpt2_status st = gpt2__afile_write(a, buf, k * 2);
        if (st) return st;
        i += k;
    }
    return GPT2_OK;
}

/* One tensor's data: given, or made by its fill into a buffer first. */
static gpt2_status write_tensor(gpt2__afile *a, const gpt2__st_out *t,
                                size_t numel, gpt2_dtype dtype) {
    if (t->data || numel == 0) return write_data(a, t->data, numel, dtype);
    void *buf = gpt2__malloc(numel, t->raw_u8 ? 1 : sizeof(float), "st_write");
    if (!buf) return GPT2_ERR_NOMEM;
    gpt2_status st = t->fill(t->ctx, t->index, buf);
    if (!st)
        st = t->raw_u8 ? gpt2__afile_write(a, buf, numel)
                       : write_data(a, buf, numel, dtype);
    free(buf);
    return st;
}

gpt2_status gpt2__st_write(const char *path, const gpt2__st_out *ts, int n,
                           gpt2_dtype dtype) {
    if (dtype != GPT2_DTYPE_F32 && dtype != GPT2_DTYPE_F16 && dtype != GPT2_DTYPE_BF16)
        return gpt2__fail(GPT2_ERR_ARG, "st_write: %s: unknown dtype %d", path,
                          (int)dtype);
    if (n < 0 || (n > 0 && !ts))
        return gpt2__fail(GPT2_ERR_ARG, "st_write: %s: bad tensor count %d", path, n);
    char *json = NULL;
    gpt2_status st = build_header(ts, n, st_dtype_of(dtype), &json);
    if (st) return st;
    gpt2__afile a;
    st = gpt2__afile_open(&a, path);
    if (!st) st = write_header(&a, json);
    free(json);
    for (int i = 0; i < n && !st; i++) {
        size_t numel;
        out_numel(&ts[i], &numel); /* validated by build_header */
        st = write_tensor(&a, &ts[i], numel, dtype);
    }
    st = gpt2__afile_close(&a, st);
    return st;
}
