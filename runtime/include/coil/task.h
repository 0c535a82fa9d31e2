/*
 * Tasks: stackful cooperative coroutines owned by one loop.
 *
 * A task runs until it waits — on an operation, a timer, a join, or a yield —
 * and only then does anything else run on its core. Because a task that
 * started an operation stays suspended until the kernel's final completion
 * for it was reaped, memory an operation uses may live on the task's stack.
 *
 * Cancellation is cooperative: coil_cancel() makes the task's current wait,
 * and every later one, return -ECANCELED (coil_close() still completes).
 * coil_interrupt() makes only the current or next wait return a chosen error.
 *
 * Threading: loop thread only. Functions documented "from a task" must be
 * called by a running task and return -EPERM otherwise.
 */
#ifndef COIL_TASK_H
#define COIL_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "coil/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_task coil_task;

/* A task's body. Its return value is handed to coil_join(). */
typedef int (*coil_task_fn)(void *arg);

/* Creates a task on loop that will run fn(arg) on its own stack; it first runs
 * on a later turn of the loop (never inside this call).
 * If out is NULL the task is detached: its resources go away when it returns.
 * Otherwise *out is a handle valid until coil_join() or coil_detach() on it.
 * arg is passed through untouched; its lifetime is the caller's business.
 * Returns 0, -ENOMEM (no memory or no stack mapping left), -ESHUTDOWN (loop
 * exiting). Loop thread, inside or outside a task. */
int coil_spawn(coil_loop *loop, coil_task_fn fn, void *arg, coil_task **out);

/* Waits until t returned and stores its return value in *result (may be NULL);
 * then t's handle is freed. From a task; t must be of the same loop and not
 * the caller. Returns 0, -ECANCELED or an interrupt's error if the caller was
 * cancelled or interrupted while waiting (t stays joinable), -EINVAL if t is
 * the caller or already has a joiner, -EPERM outside a task. */
int coil_join(coil_task *t, int *result);

/* Same, but neither the caller's cancellation nor an interrupt ends the
 * wait: for a task that must outlive a child using its memory (cancel the
 * child first, then wait here). Returns 0, -EINVAL, -EPERM as coil_join. */
int coil_join_shielded(coil_task *t, int *result);

/* Gives up the handle: t's resources go away when it returns (now, if it
 * already has); t must not be used afterwards. Cannot fail. Loop thread,
 * inside or outside a task. */
void coil_detach(coil_task *t);

/* Requests cancellation of t (sticky: every wait of t from now on returns
 * -ECANCELED). Returns at once; the task observes it when it waits. Calling it
 * on a finished task is harmless. Loop thread. */
void coil_cancel(coil_task *t);

/* Makes t's current wait (or its next, if it is not waiting) return err, once.
 * err must be negative. Used by idle timers that reset on progress.
 * Loop thread. */
void coil_interrupt(coil_task *t, int err);

/* True if the calling task was cancelled; false outside any task. Loop
 * thread. */
bool coil_cancelled(void);

/* The running task, or NULL outside any task. The handle of a detached task
 * is valid only until it returns: keep it no longer than the task runs.
 * Any thread (the answer is per thread). */
coil_task *coil_self(void);

/* Lets every other ready task run once before the caller continues.
 * From a task. Returns 0, -ECANCELED, an interrupt's error, -EPERM. */
int coil_yield(void);

/* Suspends the calling task for ns nanoseconds / until the loop clock reaches
 * deadline. From a task. Returns 0, -ECANCELED, an interrupt's error, -EPERM. */
int coil_sleep(int64_t ns);
int coil_sleep_until(int64_t deadline);

/* An event that tasks of one loop wait for: a one-bit, caller-allocated
 * condition. Waiters are woken in FIFO order. Its memory must stay valid
 * while a task waits on it. The functions below other than
 * coil_event_wait() cannot fail and may be called inside or outside a task
 * (timer and message callbacks too). Loop thread only. */
typedef struct coil_event {
    void *data;          /* public */
    /* private */
    struct coil__waiter *wait_head, *wait_tail;
    bool set;
} coil_event;

/* Makes *ev an unset event with no waiter (data is cleared too). */
void coil_event_init(coil_event *ev);
/* Sets the event and wakes every waiter. */
void coil_event_set(coil_event *ev);
/* Clears the event; tasks already woken still return 0. */
void coil_event_reset(coil_event *ev);
/* Wakes one waiter without setting the event (a condition-variable signal). */
void coil_event_notify_one(coil_event *ev);
/* Waits until the event is set (returns at once if it is) or notified, or
 * the deadline passes. From a task. Returns 0, -ETIMEDOUT, -ECANCELED, an
 * interrupt's error, -EPERM. */
int coil_event_wait(coil_event *ev, int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif
