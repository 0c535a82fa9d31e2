/*
 * coil_rt: one loop per chosen CPU, each on its own pinned thread.
 *
 * Each core's thread initialises its loop (so an io_uring ring is created on
 * the thread that submits to it), waits on a start-up barrier until every
 * core's loop exists (no message may reach a ring before it is enabled), then
 * calls on_start and runs its loop until coil_rt_stop().
 * SIGINT, SIGTERM and SIGHUP are taken by a signal thread (blocked in every
 * other thread of the runtime) and delivered to every core as a message that
 * calls on_signal; without on_signal, SIGINT and SIGTERM stop the runtime.
 */
#ifndef COIL_RT_H
#define COIL_RT_H

#include <pthread.h>
#include <stdbool.h>

#include "coil/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COIL_RT_MAX_CORES 256

typedef struct coil_rt coil_rt;

typedef struct coil_rt_options {
    /* CPUs to run on; NULL means every CPU in the process's affinity mask. */
    const int *cpus;
    unsigned ncpus;
    coil_loop_options loop;   /* for every core's loop */
    /* Runs on each core's thread once all loops exist: spawn the core's tasks
     * here (listeners with COIL_LISTEN_REUSEPORT). A negative return stops the
     * runtime and is reported by coil_rt_wait(). */
    int (*on_start)(coil_loop *loop, unsigned core, void *data);
    /* Runs on each core's thread after its loop returned, before the loop is
     * released: close what on_start opened. May be NULL. */
    void (*on_stop)(coil_loop *loop, unsigned core, void *data);
    /* Runs on every core when a signal arrives. May be NULL. */
    void (*on_signal)(coil_loop *loop, unsigned core, int signo, void *data);
    void *data;               /* passed to the callbacks */
    bool handle_signals;      /* take SIGINT/SIGTERM/SIGHUP (default false) */
} coil_rt_options;

/* Starts the runtime: allocates *out, starts the threads, returns once every
 * core has started (on_start returned) or one failed. The calling thread is not
 * one of the cores. opts is copied (opts->cpus too) and need not outlive the
 * call; opts->data is passed to the callbacks untouched and must stay valid
 * until coil_rt_wait() returned. *out is valid until coil_rt_wait() returned.
 * Returns 0, -EINVAL (bad CPU list), -ENOMEM, -errno of a loop init or thread
 * creation, or the first negative on_start result (the runtime is then
 * already stopped and freed, *out is not set). Call from a thread that is not
 * a loop's. */
int coil_rt_start(coil_rt **out, const coil_rt_options *opts);

/* Number of cores, and the loop of core i: NULL when i >= coil_rt_cores().
 * The loop is valid until coil_rt_wait() returned; only the thread of core i
 * may use it, except through coil_post(). Cannot fail otherwise. Any thread,
 * between coil_rt_start() and coil_rt_wait(). */
unsigned coil_rt_cores(const coil_rt *rt);
coil_loop *coil_rt_loop(coil_rt *rt, unsigned core);
/* The CPU core i is pinned to, or -EINVAL when i >= coil_rt_cores(). Any
 * thread, between coil_rt_start() and coil_rt_wait(). */
int coil_rt_cpu(const coil_rt *rt, unsigned core);

/* Asks every core to stop: each loop's coil_loop_stop() runs on its own
 * thread. Thread-safe, any thread, idempotent. */
void coil_rt_stop(coil_rt *rt);

/* Waits for every core to stop, then frees rt. Returns 0 or the first
 * negative on_start result / fatal loop error. Call once, from the thread that
 * started the runtime. */
int coil_rt_wait(coil_rt *rt);

#ifdef __cplusplus
}
#endif
#endif
