/* pool.h: the threads of a decode step. Private to the library.
 *
 * A decode step is some sixty small parallel pieces of work (each weight
 * matrix, the attention), a few microseconds to a millisecond each. An
 * OpenMP team either sleeps between them (OMP_WAIT_POLICY=passive: every
 * piece pays a futex wake-up, about a tenth of the step for 4-bit
 * weights) or spins (the default: when another process wants a core, the
 * spinning threads take it from the one thread doing real work, and
 * decode slows ten-fold). This pool does both halves right:
 *
 *   - idle workers spin for a short while (GPT2__POOL_SPIN_US) and then
 *     sleep on a futex, so back-to-back pieces start at once and an idle
 *     pool costs nothing;
 *   - work is cut into chunks taken from a shared counter, and the caller
 *     works too: when another process holds a worker's core, the caller
 *     takes the chunks that worker would have done, instead of waiting
 *     for it;
 *   - while other processes keep the cores busy (the pool's own threads
 *     wait for a CPU), fewer threads take part: a job waits for its
 *     slowest thread, and a thread that shares its core is slow.
 *
 * Any thread may call gpt2__pool_run; calls from several threads at once
 * (sessions in different threads) or from inside a chunk do not share
 * the workers: such a call runs its chunks itself, one after another.
 */
#ifndef GPT2_POOL_H
#define GPT2_POOL_H

#include <stdbool.h>

/* How long an idle worker spins before it sleeps. A decode step's pieces
   follow each other within microseconds; the gap between tokens
   (sampling) is longer and the workers may sleep through it. */
#define GPT2__POOL_SPIN_US 100

/* One chunk of a job: chunk i of n. */
typedef void (*gpt2__chunk_fn)(void *ctx, int i, int n);

/* Runs fn(ctx, i, n_chunks) for every i in [0, n_chunks), on the calling
   thread and the pool's workers (gpt2_set_threads() threads in all), and
   returns when all are done. Chunks may run in any order and in parallel;
   each must only write what is its own. */
void gpt2__pool_run(gpt2__chunk_fn fn, void *ctx, int n_chunks);

/* Threads that gpt2__pool_run may use (the caller included): the thread
   count, which decides how work is cut into chunks. */
int gpt2__pool_threads(void);

/* Of them, those taking part in jobs now: fewer while other processes
   hold the cores (pool.c, "sharing the cores"). Not from inside a chunk
   (it waits for the job to end). */
int gpt2__pool_team(void);

/* Turns that adaptation on (the default) or off (tests). */
void gpt2__pool_adapt(bool on);

#endif
