/* util.c: errors, checked allocation, files, half-precision conversion,
   threads. The small things every other file leans on. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- errors */

static _Thread_local char last_error[1024];

gpt2_status gpt2__fail(gpt2_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

const char *gpt2_last_error(void) { return last_error; }

const char *gpt2_status_str(gpt2_status s) {
    switch (s) {
    case GPT2_OK: return "ok";
    case GPT2_ERR_IO: return "I/O error";
    case GPT2_ERR_FORMAT: return "format error";
    case GPT2_ERR_NOMEM: return "out of memory";
    case GPT2_ERR_ARG: return "invalid argument";
    case GPT2_ERR_BUFFER: return "buffer too small";
    }
    return "unknown status";
}

/* ------------------------------------------------------------ allocation */

bool gpt2__mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

bool gpt2__add_ok(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
}

void *gpt2__calloc(size_t n, size_t size, const char *what) {
    size_t bytes;
    if (!gpt2__mul_ok(n, size, &bytes)) {
        gpt2__fail(GPT2_ERR_NOMEM, "%s: size overflow (%zu x %zu)", what, n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) gpt2__fail(GPT2_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, bytes);
    return p;
}

void *gpt2__malloc(size_t n, size_t size, const char *what) {
    size_t bytes;
    if (!gpt2__mul_ok(n, size, &bytes)) {
        gpt2__fail(GPT2_ERR_NOMEM, "%s: size overflow (%zu x %zu)", what, n, size);
        return NULL;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (!p) gpt2__fail(GPT2_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, bytes);
    return p;
}

void *gpt2__alloc_aligned(size_t bytes, const char *what) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        gpt2__fail(GPT2_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, bytes);
        return NULL;
    }
    return p;
}

/* Blocks from this size on are aligned to 2 MiB and offered to the kernel
   for transparent huge pages (MADV_HUGEPAGE: most distributions give huge
   pages only to memory that asks). A block read from end to end on every
   step (weights, the trainer's blocks) then costs a TLB miss every 2 MiB
   instead of every 4 KiB, which reads 2-10% faster on Zen 5. Blocks
   touched a little at a time (the KV cache, a session's activations,
   most of which decode never touches) stay in 4 KiB pages: a huge page
   would make each first touch resident 2 MiB at a time. */
#define HUGE_MIN ((size_t)8 << 20)
#define HUGE_ALIGN ((size_t)2 << 20)

void *gpt2__alloc_huge(size_t bytes, const char *what) {
    if (bytes < HUGE_MIN) return gpt2__alloc_aligned(bytes, what);
    void *p = NULL;
    size_t rounded = (bytes + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    if (rounded < bytes || posix_memalign(&p, HUGE_ALIGN, rounded) != 0) {
        gpt2__fail(GPT2_ERR_NOMEM, "%s: out of memory (%zu bytes)", what, bytes);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint */
#endif
    return p;
}

void gpt2__free_aligned(void *p) { free(p); }

/* ----------------------------------------------------------------- files */

gpt2_status gpt2__read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return gpt2__fail(GPT2_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return gpt2__fail(GPT2_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = gpt2__malloc(n + 1, 1, path);
    if (!buf) {
        fclose(f);
        return GPT2_ERR_NOMEM;
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return gpt2__fail(GPT2_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return GPT2_OK;
}

gpt2_status gpt2__afile_open(gpt2__afile *a, const char *path) {
    a->path = path;
    a->fp = NULL;
    if ((size_t)snprintf(a->tmp, sizeof a->tmp, "%s.tmp", path) >= sizeof a->tmp)
        return gpt2__fail(GPT2_ERR_ARG, "write: path too long: %s", path);
    a->fp = fopen(a->tmp, "wb");
    if (!a->fp) return gpt2__fail(GPT2_ERR_IO, "%s: %s", a->tmp, strerror(errno));
    return GPT2_OK;
}

gpt2_status gpt2__afile_write(gpt2__afile *a, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, a->fp) != n)
        return gpt2__fail(GPT2_ERR_IO, "%s: write: %s", a->tmp, strerror(errno));
    return GPT2_OK;
}

gpt2_status gpt2__afile_close(gpt2__afile *a, gpt2_status st) {
    if (!a->fp) return st;
    if (!st && (fflush(a->fp) != 0 || fsync(fileno(a->fp)) != 0))
        st = gpt2__fail(GPT2_ERR_IO, "%s: %s", a->tmp, strerror(errno));
    if (fclose(a->fp) != 0 && !st)
        st = gpt2__fail(GPT2_ERR_IO, "%s: %s", a->tmp, strerror(errno));
    a->fp = NULL;
    if (!st && rename(a->tmp, a->path) != 0)
        st = gpt2__fail(GPT2_ERR_IO, "rename %s to %s: %s", a->tmp, a->path,
                        strerror(errno));
    if (st) unlink(a->tmp);
    return st;
}

gpt2_status gpt2__write_file_atomic(const char *path, const void *data,
                                    size_t len) {
    gpt2__afile a;
    gpt2_status st = gpt2__afile_open(&a, path);
    if (st) return st;
    return gpt2__afile_close(&a, gpt2__afile_write(&a, data, len));
}

gpt2_status gpt2__join_path(char *buf, size_t cap, const char *dir,
                            const char *name) {
    size_t n = strlen(dir);
    const char *sep = (n > 0 && dir[n - 1] == '/') ? "" : "/";
    if ((size_t)snprintf(buf, cap, "%s%s%s", dir, sep, name) >= cap)
        return gpt2__fail(GPT2_ERR_ARG, "path too long: %s/%s", dir, name);
    return GPT2_OK;
}

bool gpt2__file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool gpt2__is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ------------------------------------------------------- half precision */


float gpt2__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return gpt2__bits_f32(sign | 0x7f800000u | (mant << 13));
    return gpt2__bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t gpt2__f32_to_f16(float f) {
    uint32_t u = gpt2__f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;             /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;            /* overflow: inf */
    if (a < 0x38800000u) {                                 /* subnormal or 0 */
        /* add 0.5 (as float) so the FPU rounds the mantissa to nearest even */
        float v = gpt2__bits_f32(a) + 0.5f;
        return sign | (uint16_t)(gpt2__f32_bits(v) - gpt2__f32_bits(0.5f));
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += ((uint32_t)(15 - 127) << 23) + 0xfffu + mant_odd;
    return sign | (uint16_t)(a >> 13);
}

/* --------------------------------------------------------------- threads */

static int n_threads_wanted = 0; /* 0: all cores */

void gpt2_set_threads(int n) {
    n_threads_wanted = n > 0 ? n : 0;
#ifdef _OPENMP
    omp_set_num_threads(gpt2__threads());
#endif
}

int gpt2__threads(void) {
    if (n_threads_wanted > 0) return n_threads_wanted;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int gpt2_get_threads(void) { return gpt2__threads(); }

/* ----------------------------------------------------------- directories */

gpt2_status gpt2__make_dirs(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf)
        return gpt2__fail(GPT2_ERR_ARG, "mkdir: bad directory '%s'", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return gpt2__fail(GPT2_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    if (!gpt2__is_dir(dir)) return gpt2__fail(GPT2_ERR_IO, "%s: not a directory", dir);
    return GPT2_OK;
}

gpt2_status gpt2__sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return gpt2__fail(GPT2_ERR_IO, "%s: %s", dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r != 0) return gpt2__fail(GPT2_ERR_IO, "fsync %s: %s", dir, strerror(e));
    return GPT2_OK;
}

#include <dirent.h>

gpt2_status gpt2__remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? GPT2_OK : gpt2__fail(GPT2_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (gpt2__join_path(path, sizeof path, dir, e->d_name) == GPT2_OK) unlink(path);
    }
    closedir(d);
    if (rmdir(dir) != 0)
        return gpt2__fail(GPT2_ERR_IO, "rmdir %s: %s", dir, strerror(errno));
    return GPT2_OK;
}
