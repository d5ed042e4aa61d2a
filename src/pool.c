/* pool.c: the decode step's threads (pool.h says why). Workers wait for a
   new job by spinning a short while, then sleeping on a futex. A job is
   n chunks; the caller and the workers claim chunks from one counter.
   The counter carries the job's number in its high half, so a worker
   that is late (still looking at the previous job) can never claim a
   chunk of the next one. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "internal.h"

#define MAX_WORKERS 255

typedef struct {
    pthread_mutex_t busy;       /* one job at a time uses the workers */
    int n_workers;              /* started */
    _Atomic int n_active;       /* of them, taking part in jobs now */
    _Atomic uint32_t gen;       /* job number; workers sleep on it */
    _Atomic int sleepers;       /* workers asleep (or about to be) on gen */
    /* the job: written by the caller before gen is raised (atomic only
       because a late worker may read them while they change; it then
       cannot claim a chunk) */
    _Atomic(gpt2__chunk_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int n;
    _Atomic uint64_t claim;     /* (job number << 32) | next chunk */
    _Atomic uint32_t done;      /* chunks finished; the caller sleeps on it */
    _Atomic int caller_asleep;
} pool;

static pool P = {.busy = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------- waiting */

static void futex_wait(_Atomic uint32_t *addr, uint32_t seen) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    (void)addr, (void)seen;
    sched_yield();
#endif
}

static void futex_wake_all(_Atomic uint32_t *addr) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Spins until *addr != seen or the spin time is up; true if it changed. */
static bool spin_while_equal(_Atomic uint32_t *addr, uint32_t seen) {
    uint64_t until = 0;
    for (int i = 0;; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != seen) return true;
        cpu_relax();
        if ((i & 63) == 63) { /* the clock is cheap, but not free */
            uint64_t t = now_ns();
            if (!until) until = t + GPT2__POOL_SPIN_US * 1000u;
            else if (t >= until) return false;
        }
    }
}

/* -------------------------------------------------------------- chunks */

/* Claims and runs chunks of job g until none is left (or the job is no
   longer g); wakes the caller after the last one. The fields read first
   may already be a later job's; then the claim fails (see gpt2__pool_run). */
static void run_chunks(uint32_t g) {
    gpt2__chunk_fn fn = atomic_load_explicit(&P.fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&P.ctx, memory_order_relaxed);
    int n = atomic_load_explicit(&P.n, memory_order_relaxed);
    uint64_t c = atomic_load_explicit(&P.claim, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(c >> 32) != g || (int)(uint32_t)c >= n) return;
        if (!atomic_compare_exchange_weak(&P.claim, &c, c + 1)) continue;
        fn(ctx, (int)(uint32_t)c, n);
        if (atomic_fetch_add(&P.done, 1) + 1 == (uint32_t)n &&
            atomic_load(&P.caller_asleep))
            futex_wake_all(&P.done);
        c = atomic_load_explicit(&P.claim, memory_order_acquire);
    }
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    /* library threads take no signals: the application's threads do */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    uint32_t seen = atomic_load(&P.gen);
    for (;;) {
        if (!spin_while_equal(&P.gen, seen)) {
            atomic_fetch_add(&P.sleepers, 1);
            while (atomic_load(&P.gen) == seen) futex_wait(&P.gen, seen);
            atomic_fetch_sub(&P.sleepers, 1);
        }
        seen = atomic_load_explicit(&P.gen, memory_order_acquire);
        if (id < atomic_load_explicit(&P.n_active, memory_order_relaxed)) run_chunks(seen);
    }
    return NULL;
}

/* After fork() only the calling thread exists in the child: the pool
   starts again from nothing there. */
static void after_fork_child(void) {
    pthread_mutex_init(&P.busy, NULL);
    P.n_workers = 0;
    atomic_store(&P.n_active, 0);
}

/* Starts workers up to want (under P.busy). */
static void grow(int want) {
    static bool atfork_set;
    if (!atfork_set) {
        pthread_atfork(NULL, NULL, after_fork_child);
        atfork_set = true;
    }
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    while (P.n_workers < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker, (void *)(intptr_t)P.n_workers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* fewer workers: the caller does more chunks */
        P.n_workers++;
    }
}

int gpt2__pool_threads(void) { return gpt2__threads(); }

static void run_inline(gpt2__chunk_fn fn, void *ctx, int n) {
    for (int i = 0; i < n; i++) fn(ctx, i, n);
}

void gpt2__pool_run(gpt2__chunk_fn fn, void *ctx, int n) {
    if (n <= 0) return;
    int threads = gpt2__threads();
    /* one chunk, one thread, or the workers busy with another job (another
       session's thread, or a chunk calling back in): run here */
    if (n == 1 || threads <= 1 || pthread_mutex_trylock(&P.busy) != 0) {
        run_inline(fn, ctx, n);
        return;
    }
    grow(threads - 1);
    atomic_store_explicit(&P.n_active, threads - 1 < P.n_workers ? threads - 1 : P.n_workers,
                          memory_order_relaxed);
    /* Close the claim counter to the last job's late workers before the
       job's fields change: a worker that read them for job g-1 can then
       never claim a chunk (its compare-and-swap sees job g's number). */
    uint32_t g = atomic_load(&P.gen) + 1;
    atomic_store(&P.claim, ((uint64_t)g << 32) | UINT32_MAX);
    atomic_store_explicit(&P.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&P.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&P.n, n, memory_order_relaxed);
    atomic_store(&P.done, 0);
    atomic_store(&P.claim, (uint64_t)g << 32);
    atomic_store_explicit(&P.gen, g, memory_order_release); /* publish */
    if (atomic_load(&P.sleepers) > 0) futex_wake_all(&P.gen);
    run_chunks(g);
    /* wait for the chunks other threads still run: spin while they make
       progress, sleep when they stall (a worker without a core) */
    for (;;) {
        uint32_t d = atomic_load(&P.done);
        if (d == (uint32_t)n) break;
        if (spin_while_equal(&P.done, d)) continue;
        atomic_store(&P.caller_asleep, 1);
        while ((d = atomic_load(&P.done)) != (uint32_t)n) futex_wait(&P.done, d);
        atomic_store(&P.caller_asleep, 0);
        break;
    }
    atomic_thread_fence(memory_order_acquire);
    pthread_mutex_unlock(&P.busy);
}
