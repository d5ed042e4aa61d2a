/* golden_dirs.h: the model directories of a golden set, for the reference
   checkers in tests/tools/. */
#ifndef GPT2_GOLDEN_DIRS_H
#define GPT2_GOLDEN_DIRS_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int golden_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directories under golden_dir that hold a file named file, sorted by
   name so that the output is stable. *names (and each name) is malloc'd;
   returns the count, or -1 when golden_dir cannot be read. */
static int golden_models(const char *golden_dir, const char *file, char ***names) {
    DIR *d = opendir(golden_dir);
    if (!d) return -1;
    int n = 0, cap = 16;
    char **v = malloc(cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        char path[4096];
        struct stat st;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s/%s", golden_dir, e->d_name, file);
        if (stat(path, &st) != 0) continue;
        if (n == cap) {
            char **nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (v) qsort(v, n, sizeof *v, golden_cmp_str);
    *names = v;
    return v ? n : -1;
}

#endif
