/* pool.c: the decode step's threads (pool.h says why). Workers wait for a
   new job by spinning a short while, then sleeping on a futex. A job is
   n chunks; the caller and the workers claim chunks from one counter.
   The counter carries the job's number in its high half, so a worker
   that is late (still looking at the previous job) can never claim a
   chunk of the next one. */
#include "pool.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    _Atomic uint32_t team_gen;  /* raised when n_active grows; workers
                                   left out of the team sleep on it */
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
    _Atomic int tid[MAX_WORKERS]; /* the workers' thread ids (0: not yet) */
} pool;

static pool P = {.busy = PTHREAD_MUTEX_INITIALIZER};

static void reset_monitor(void); /* "sharing the cores" below */

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
#ifdef __linux__
    atomic_store(&P.tid[id], (int)syscall(SYS_gettid));
#endif
    uint32_t seen = atomic_load(&P.gen);
    for (;;) {
        if (id >= atomic_load(&P.n_active)) {
            /* left out of the team (fewer threads asked, or other
               processes hold the cores): sleep until it grows, neither
               spinning nor woken by every job */
            uint32_t tg = atomic_load(&P.team_gen);
            if (id >= atomic_load(&P.n_active)) futex_wait(&P.team_gen, tg);
            seen = atomic_load(&P.gen); /* jobs begun meanwhile are not ours */
            continue;
        }
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
    for (int i = 0; i < MAX_WORKERS; i++) atomic_store(&P.tid[i], 0);
    reset_monitor();
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

/* ------------------------------------------------ sharing the cores

   When another process wants a core, a team as large as the cores loses:
   each of our threads waits its turn at times, and every job waits for
   its slowest thread (GPT-2 124M, F32, 2 cores beside one busy process:
   2 threads took 17.6-18.0 ms a token, 1 thread 13.0-13.2, its quiet
   time). So the pool watches how long its own threads wait for a CPU
   while runnable (the scheduler's run delay, /proc/self/task/T/schedstat
   on Linux), over windows of MONITOR_MS. When they waited, together,
   more than WAIT_SHARE of a window per two threads of the team (a quiet
   machine's small waits add up over many threads), two windows in a
   row, the team shrinks by what they waited (in threads, at least one)
   for HOLD_MS, then tries its full size again, shrinking after one such
   window this time. Alone on the machine the threads hardly wait (5-8%
   of a window; once in a few hundred windows something of the system's
   takes a core for most of one, which two in a row rule out), and the
   team stays whole. Workers left out of the team sleep (worker()). Only
   the caller holding P.busy reads or writes M. */
#define MONITOR_MS 20
#define HOLD_MS 250
#define WAIT_SHARE 0.3

static struct {
    bool off;           /* no schedstat here, or turned off (tests) */
    int team;           /* threads taking part in jobs now; 0: all */
    int full;           /* the thread count team was measured against */
    uint64_t t0;        /* the window's start */
    uint64_t wait0;     /* its threads' run delay then, ns */
    int caller;         /* the caller's thread id then */
    int sampled;        /* threads whose delay wait0 sums */
    int strikes;        /* windows in a row over WAIT_SHARE */
    uint64_t hold_until;
} M;

static _Atomic bool adapt_off;

/* (after fork: the child's threads are new) */
static void reset_monitor(void) { memset(&M, 0, sizeof M); }

#ifdef __linux__
/* the run delay of thread tid so far (ns); false if unreadable */
static bool run_delay(int tid, uint64_t *ns) {
    char path[64], buf[96];
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned long long on_cpu, delay;
    if (r <= 0) return false;
    buf[r] = 0;
    if (sscanf(buf, "%llu %llu", &on_cpu, &delay) != 2) return false;
    *ns = delay;
    return true;
}

/* the summed run delay of the caller and the first team - 1 workers
   (those started: *count says how many threads it sums); false if the
   caller's is unreadable */
static bool team_delay(int caller, int team, uint64_t *ns, int *count) {
    uint64_t sum = 0, d;
    if (!run_delay(caller, &d)) return false;
    sum += d;
    *count = 1;
    for (int i = 0; i < team - 1 && i < P.n_workers; i++) {
        int tid = atomic_load(&P.tid[i]);
        if (tid && run_delay(tid, &d)) sum += d, ++*count;
    }
    *ns = sum;
    return true;
}

/* The team for the next job, of threads in all (under P.busy). */
static int choose_team(int threads) {
    if (M.off || atomic_load_explicit(&adapt_off, memory_order_relaxed)) return threads;
    uint64_t now = now_ns();
    if (M.full != threads) { /* new thread count: start whole */
        M.full = threads, M.team = threads, M.t0 = 0, M.strikes = 0;
    }
    if (M.t0 && now - M.t0 < (uint64_t)MONITOR_MS * 1000000u) return M.team;
    int caller = (int)syscall(SYS_gettid);
    if (M.team < threads) {
        if (now < M.hold_until) return M.team;
        M.team = threads; /* try the whole team again */
        M.strikes = 1;    /* one bad window is enough now */
    } else if (M.t0 && caller == M.caller) {
        uint64_t wait;
        int count;
        if (!team_delay(caller, M.team, &wait, &count)) {
            M.off = true;
            return threads;
        }
        /* the same threads at both ends (a worker started in between
           brings the delay of its start) */
        double waited = count == M.sampled && wait > M.wait0
                            ? (double)(wait - M.wait0) / (double)(now - M.t0) : 0.0;
        if (waited > threads) waited = threads;
        M.strikes = waited > WAIT_SHARE * M.team / 2 ? M.strikes + 1 : 0;
        if (M.strikes >= 2) {
            int drop = (int)lround(waited);
            M.team = threads - (drop < 1 ? 1 : drop);
            if (M.team < 1) M.team = 1;
            M.hold_until = now + (uint64_t)HOLD_MS * 1000000u;
        }
    }
    M.t0 = now, M.caller = caller;
    if (!team_delay(caller, M.team, &M.wait0, &M.sampled)) {
        M.off = true;
        M.team = threads;
    }
    return M.team;
}
#else
static int choose_team(int threads) { return threads; }
#endif

void gpt2__pool_adapt(bool on) { atomic_store(&adapt_off, !on); }

int gpt2__pool_team(void) {
    pthread_mutex_lock(&P.busy);
    int t = M.team && M.full == gpt2__threads() && !M.off && !atomic_load(&adapt_off)
                ? M.team : gpt2__threads();
    pthread_mutex_unlock(&P.busy);
    return t;
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
    int team = choose_team(threads);
    if (team <= 1) { /* others hold the cores: the workers sleep */
        run_inline(fn, ctx, n);
        pthread_mutex_unlock(&P.busy);
        return;
    }
    grow(team - 1);
    int active = team - 1 < P.n_workers ? team - 1 : P.n_workers;
    if (atomic_exchange(&P.n_active, active) < active) { /* wake the left out */
        atomic_fetch_add(&P.team_gen, 1);
        futex_wake_all(&P.team_gen);
    }
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
