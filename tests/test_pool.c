/* test_pool.c: the decode pool runs every chunk exactly once, whatever
   the thread count, with several callers at once, with a chunk calling
   back in, across many tiny jobs, and in a child after fork(). */
#include "check.h"
#include "internal.h"
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    _Atomic int *hits; /* n counters */
    _Atomic int *nested_hits;
    int nested_n;
} job;

static void count_chunk(void *ctx, int i, int n) {
    job *j = ctx;
    (void)n;
    atomic_fetch_add(&j->hits[i], 1);
}

static bool run_and_check(int n) {
    _Atomic int *hits = calloc((size_t)n + 1, sizeof *hits);
    job j = {hits, NULL, 0};
    gpt2__pool_run(count_chunk, &j, n);
    bool ok = true;
    for (int i = 0; i < n; i++) ok &= atomic_load(&hits[i]) == 1;
    ok &= atomic_load(&hits[n]) == 0;
    free(hits);
    return ok;
}

/* a chunk that runs a job of its own: the inner one runs inline */
static void nesting_chunk(void *ctx, int i, int n) {
    job *j = ctx;
    (void)n;
    atomic_fetch_add(&j->hits[i], 1);
    job inner = {j->nested_hits + (size_t)i * j->nested_n, NULL, 0};
    gpt2__pool_run(count_chunk, &inner, j->nested_n);
}

static void *caller_thread(void *arg) {
    int *ok = arg;
    for (int r = 0; r < 300; r++) *ok &= run_and_check(1 + r % 37);
    return NULL;
}

int main(void) {
    int threads[] = {1, 2, 3, 4};
    for (int t = 0; t < 4; t++) {
        gpt2_set_threads(threads[t]);
        CHECK(gpt2__pool_threads() == threads[t]);
        bool ok = true;
        for (int n = 0; n <= 70; n++) ok &= run_and_check(n);
        CHECK(ok);
    }

    /* many tiny jobs back to back: a late worker must never take a
       chunk of the next job */
    gpt2_set_threads(3);
    bool ok = true;
    for (int r = 0; r < 20000; r++) ok &= run_and_check(1 + r % 9);
    CHECK(ok);

    /* several threads calling at once */
    pthread_t th[4];
    int oks[4] = {1, 1, 1, 1};
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, caller_thread, &oks[i]);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    CHECK(oks[0] && oks[1] && oks[2] && oks[3]);

    /* a chunk calling back in */
    int n = 12, nn = 5;
    _Atomic int *hits = calloc((size_t)n, sizeof *hits);
    _Atomic int *nested = calloc((size_t)n * nn, sizeof *nested);
    job j = {hits, nested, nn};
    gpt2__pool_run(nesting_chunk, &j, n);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += hits[i] != 1;
    for (int i = 0; i < n * nn; i++) bad += nested[i] != 1;
    CHECK(bad == 0);
    free(hits);
    free(nested);

    /* fork: the child has no workers yet, and its pool still works */
    pid_t pid = fork();
    if (pid == 0) {
        bool child_ok = true;
        for (int r = 0; r < 200; r++) child_ok &= run_and_check(1 + r % 13);
        _exit(child_ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(run_and_check(33));
    return CHECK_DONE();
}
