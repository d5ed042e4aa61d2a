/* checkpoint.c: saving and finding training checkpoints. A checkpoint is
   a model directory plus AdamW's moments and the trainer's state; it is
   written whole into "<dir>.tmp" and renamed into place, so killing the
   process at any moment never loses the last good checkpoint. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

static gpt2_status save_optimizer(gpt2_trainer *tr, const char *path) {
    gpt2_model *m = gpt2__trainer_model(tr);
    int n = m->n_tensors;
    gpt2__st_out *ts = gpt2__calloc(2 * (size_t)n, sizeof *ts, "checkpoint");
    char (*names)[64] = gpt2__calloc(2 * (size_t)n, 64, "checkpoint");
    if (!ts || !names) {
        free(ts);
        free(names);
        return GPT2_ERR_NOMEM;
    }
    const float *mm = gpt2_trainer_adam_m(tr), *vv = gpt2_trainer_adam_v(tr);
    for (int i = 0; i < n; i++) {
        const gpt2__tensor_spec *s = &m->specs[i];
        snprintf(names[i], 64, "exp_avg.%s", s->name);
        snprintf(names[n + i], 64, "exp_avg_sq.%s", s->name);
        ts[i] = (gpt2__st_out){.name = names[i], .ndim = s->ndim,
                               .shape = {s->shape[0], s->shape[1]},
                               .data = mm + s->offset};
        ts[n + i] = (gpt2__st_out){.name = names[n + i], .ndim = s->ndim,
                                   .shape = {s->shape[0], s->shape[1]},
                                   .data = vv + s->offset};
    }
    gpt2_status st = gpt2__st_write(path, ts, 2 * n, GPT2_DTYPE_F32);
    free(ts);
    free(names);
    return st;
}

gpt2_status gpt2_checkpoint_save(gpt2_trainer *tr, const char *dir,
                                 const char *state_json) {
    char tmp[4096], path[4096], old[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= sizeof tmp ||
        (size_t)snprintf(old, sizeof old, "%s.old", dir) >= sizeof old)
        return gpt2__fail(GPT2_ERR_ARG, "checkpoint_save: path too long: %s", dir);
    /* a .tmp left by a crash is incomplete by definition */
    gpt2_status st = gpt2__remove_dir(tmp);
    if (!st) st = gpt2__make_dirs(tmp);
    if (!st) st = gpt2_model_save(gpt2__trainer_model(tr), tmp, GPT2_DTYPE_F32);
    if (!st) st = gpt2__join_path(path, sizeof path, tmp, "optimizer.safetensors");
    if (!st) st = save_optimizer(tr, path);
    if (!st) st = gpt2__join_path(path, sizeof path, tmp, "trainer_state.json");
    if (!st) {
        const char *js = state_json ? state_json : "{}";
        st = gpt2__write_file_atomic(path, js, strlen(js));
    }
    if (!st) st = gpt2__sync_dir(tmp);
    if (st) return st;
    /* an older checkpoint of the same name steps aside, then goes */
    bool had_old = gpt2__is_dir(dir);
    if (had_old && rename(dir, old) != 0)
        return gpt2__fail(GPT2_ERR_IO, "checkpoint_save: rename %s: %s", dir, strerror(errno));
    if (rename(tmp, dir) != 0)
        return gpt2__fail(GPT2_ERR_IO, "checkpoint_save: rename %s to %s: %s", tmp, dir,
                          strerror(errno));
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    else snprintf(parent, sizeof parent, ".");
    if ((st = gpt2__sync_dir(parent))) return st;
    if (had_old) gpt2__remove_dir(old);
    return GPT2_OK;
}

gpt2_status gpt2_checkpoint_load_optimizer(gpt2_trainer *tr, const char *dir) {
    gpt2_model *m = gpt2__trainer_model(tr);
    char path[4096], name[64];
    gpt2_status st = gpt2__join_path(path, sizeof path, dir, "optimizer.safetensors");
    if (st) return st;
    gpt2__st_file f = {0};
    if ((st = gpt2__st_open(path, &f))) return st;
    float *mm = gpt2_trainer_adam_m(tr), *vv = gpt2_trainer_adam_v(tr);
    for (int k = 0; k < 2 * m->n_tensors && !st; k++) {
        const gpt2__tensor_spec *s = &m->specs[k % m->n_tensors];
        snprintf(name, sizeof name, "%s.%s", k < m->n_tensors ? "exp_avg" : "exp_avg_sq",
                 s->name);
        const gpt2__st_tensor *t = gpt2__st_find(&f, name);
        if (!t)
            st = gpt2__fail(GPT2_ERR_FORMAT, "checkpoint: %s: no tensor %s", path, name);
        else if (t->end - t->begin != s->numel * gpt2__st_dtype_size(t->dtype) ||
                 t->dtype != GPT2__ST_F32)
            st = gpt2__fail(GPT2_ERR_FORMAT,
                            "checkpoint: %s: %s has the wrong size or dtype (want %zu F32)",
                            path, name, s->numel);
        else
            st = gpt2__st_read_f32(&f, t, (k < m->n_tensors ? mm : vv) + s->offset);
    }
    gpt2__st_close(&f);
    return st;
}

/* "step_NNNNNN" with digits only; its number, or -1 */
static long step_number(const char *name) {
    if (strncmp(name, "step_", 5) != 0 || !name[5]) return -1;
    long n = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || n > 100000000) return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

gpt2_status gpt2_checkpoint_latest(const char *out_dir, char *buf, size_t cap) {
    DIR *d = opendir(out_dir);
    if (!d) return gpt2__fail(GPT2_ERR_IO, "checkpoint: %s: %s", out_dir, strerror(errno));
    long best = -1;
    char best_name[256] = {0}, path[4096];
    struct dirent *e;
    while ((e = readdir(d))) {
        long n = step_number(e->d_name);
        if (n <= best) continue;
        /* complete means renamed into place with its state file */
        if (gpt2__join_path(path, sizeof path, out_dir, e->d_name) ||
            (size_t)snprintf(path + strlen(path), sizeof path - strlen(path),
                             "/trainer_state.json") >= sizeof path - strlen(path))
            continue;
        if (!gpt2__file_exists(path)) continue;
        best = n;
        snprintf(best_name, sizeof best_name, "%s", e->d_name);
    }
    closedir(d);
    if (best < 0)
        return gpt2__fail(GPT2_ERR_IO, "checkpoint: no complete checkpoint (step_NNNNNN/) in %s",
                          out_dir);
    gpt2_status st = gpt2__join_path(path, sizeof path, out_dir, best_name);
    if (st) return st;
    if (strlen(path) + 1 > cap)
        return gpt2__fail(GPT2_ERR_BUFFER, "checkpoint_latest: buffer of %zu bytes too small",
                          cap);
    memcpy(buf, path, strlen(path) + 1);
    return GPT2_OK;
}
