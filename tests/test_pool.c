/* test_pool.c: the decode pool runs every chunk exactly once, whatever
   the thread count, with several callers at once, with a chunk calling
   back in, across many tiny jobs, and in a child after fork(); and it
   takes fewer threads while other processes hold every core, and all of
   them again when the cores are free. */
#include "check.h"
#include "internal.h"
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
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

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* a chunk of about 50 us of work */
static void busy_chunk(void *ctx, int i, int n) {
    (void)i, (void)n;
    volatile double *x = ctx;
    double v = *x;
    for (int k = 0; k < 20000; k++) v = v * 1.0000001 + 1e-9;
    *x = v;
}

/* The smallest team seen while running jobs for up to `limit` seconds,
   stopping early once the team is `until` (0: never) */
static int team_while_running(double limit, int until) {
    volatile double x = 1.0;
    int least = gpt2__pool_threads();
    for (double t0 = seconds(); seconds() - t0 < limit;) {
        gpt2__pool_run(busy_chunk, (void *)&x, 8);
        int t = gpt2__pool_team();
        if (t < least) least = t;
        if (until && t == until) return t;
    }
    return least;
}

/* One spinning child per core: the team shrinks; once they are gone it
   grows back (within seconds: it retries every 250 ms). */
static void test_sharing_cores(void) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1 || ncpu > 64) return;
    int threads = ncpu < 2 ? 2 : (int)ncpu;
    gpt2_set_threads(threads);
    gpt2__pool_adapt(true);
    pid_t kids[64];
    for (long i = 0; i < ncpu; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            volatile double v = 1.0;
            for (;;) v = v * 1.0000001 + 1e-9;
        }
    }
    int least = team_while_running(1.0, 0);
    for (long i = 0; i < ncpu; i++) kill(kids[i], SIGKILL);
    for (long i = 0; i < ncpu; i++) waitpid(kids[i], NULL, 0);
    if (least == threads && access("/proc/self/task", R_OK) != 0) {
        printf("test_pool: no /proc/self/task here: the team does not adapt\n");
        return;
    }
    printf("test_pool: %d threads, %ld spinning processes: the team went down to %d\n",
           threads, ncpu, least);
    CHECK(least < threads);
    int back = team_while_running(5.0, threads);
    printf("test_pool: spinners gone: the team is %d again\n", back);
    CHECK(back == threads);
    gpt2__pool_adapt(false);
}

/* Threads of this process now runnable (state R in /proc), or -1 */
static int runnable_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t r = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[r] = 0;
        const char *close = strrchr(buf, ')'); /* the state follows the name */
        if (close && close[1] == ' ' && close[2] == 'R') n++;
    }
    closedir(d);
    return n;
}

/* Workers left out of the team (here: fewer threads asked than workers
   started) sleep: while jobs run back to back, only the caller and the
   team's worker are runnable, not the two left out. */
static void test_left_out_sleep(void) {
    gpt2__pool_adapt(false);
    gpt2_set_threads(4);
    team_while_running(0.05, 0); /* starts 3 workers */
    gpt2_set_threads(2);
    team_while_running(0.05, 0);
    int samples = 0, total = 0;
    _Atomic int hits[8];
    job j = {hits, NULL, 0};
    for (int i = 0; i < 40; i++) {
        for (int k = 0; k < 200; k++) gpt2__pool_run(count_chunk, &j, 8); /* tiny jobs */
        int r = runnable_threads();
        if (r < 0) return;
        samples++, total += r;
    }
    printf("test_pool: 3 workers, team of 2: %.2f threads runnable on average\n",
           (double)total / samples);
    CHECK((double)total / samples <= 2.5);
}

int main(void) {
    /* the tests of chunks want every worker taking part, even with more
       threads than cores */
    gpt2__pool_adapt(false);
    test_sharing_cores();
    test_left_out_sleep();
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
