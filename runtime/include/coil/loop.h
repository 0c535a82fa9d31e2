/*
 * coil_loop: one event loop per core — one backend (io_uring or epoll), one
 * run queue of cooperative tasks, one timer heap, one receive-buffer pool.
 *
 * Threading: every function here must be called on the thread that called
 * coil_loop_init() (the loop's owner thread), except where a comment says
 * otherwise. Nothing in a loop is touched by another thread; other threads
 * talk to a loop only through coil_post() (msg.h).
 */
#ifndef COIL_LOOP_H
#define COIL_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct coil__loop;

/* A loop. Caller-allocated; its memory must stay valid from coil_loop_init()
 * until coil_loop_exit() returned 0. */
typedef struct coil_loop {
    void *data;               /* public: the embedder's, never touched by coil */
    struct coil__loop *impl;  /* private */
} coil_loop;

/* Flags for coil_loop_options.flags. */
enum {
    /* Do not ask io_uring for DEFER_TASKRUN / SINGLE_ISSUER / COOP_TASKRUN
     * even when the kernel has them. */
    COIL_LOOP_NO_TASKRUN_FLAGS = 1u << 0,
    /* Pretend the kernel lacks multishot receives and buffer rings: every
     * receive is single-shot. Used by tests of the fallback paths. */
    COIL_LOOP_NO_MULTISHOT = 1u << 1,
};

typedef struct coil_loop_options {
    /* "io_uring", "epoll" or NULL. NULL means: the COIL_BACKEND environment
     * variable if set, else io_uring with a fall back to epoll when io_uring
     * cannot be set up. A backend named explicitly does not fall back. */
    const char *backend;
    unsigned ring_entries;    /* io_uring submission queue size; default 256 */
    unsigned buf_count;       /* receive buffers per loop, power of two <= 32768; default 256 */
    unsigned buf_size;        /* bytes per receive buffer; default 16384 */
    unsigned bufs_per_sock;   /* borrowed buffers one socket may hold at once; default 8 */
    size_t stack_size;        /* usable bytes per task stack; default 64 KiB (256 KiB under ASan) */
    unsigned flags;           /* COIL_LOOP_* */
} coil_loop_options;

/* Counters a loop keeps about itself (read with coil_loop_stats()). */
typedef struct coil_loop_stats {
    uint64_t tasks_live;          /* spawned and not yet finished */
    uint64_t tasks_spawned;
    uint64_t stacks_mapped;       /* task stacks mapped (in use + cached) */
    uint64_t stacks_in_use;
    uint64_t bufs_total;          /* receive buffers owned by the loop */
    uint64_t bufs_in_use;         /* borrowed by tasks or queued on sockets */
    uint64_t bufs_exhausted;      /* times the receive-buffer ring ran empty (-ENOBUFS) */
    uint64_t socks_parked;        /* sockets parked right now */
    uint64_t timers_active;
    uint64_t stale_completions;   /* completions dropped for a stale generation */
    uint64_t cq_overflows;        /* turns that found the completion queue overflowed (io_uring) */
    uint64_t msgs_received;
    uint64_t loop_turns;
    uint64_t sends_continued;     /* sends that went on after a short send */
    uint64_t bufs_overflow;       /* heap buffers used because the pool was dry */
} coil_loop_stats;

/* Fills *opts with the defaults listed above; opts is written during the
 * call only. Cannot fail. Any thread. */
void coil_loop_options_default(coil_loop_options *opts);

/* Initialises loop on the calling thread, which becomes its owner (the only
 * thread that may run it and call the functions of this file on it). Any
 * thread that owns no loop may call it. loop is caller memory that must stay
 * valid until coil_loop_exit() returned 0; opts may be NULL (defaults); it is
 * copied, and need not outlive the call.
 * Logs the backend chosen once to stderr unless COIL_QUIET is set.
 * Returns 0, or -EINVAL (bad option or unknown backend name), -ENOMEM, or the
 * error of the named backend's set-up when a backend was named explicitly. */
int coil_loop_init(coil_loop *loop, const coil_loop_options *opts);

/* Releases everything the loop owns; messages already posted to it run
 * first. Returns -EBUSY, and releases nothing, while tasks are live, sockets
 * are open or parked, or timers are armed (like uv_loop_close); -EINVAL for
 * a loop not initialised (or already exited); 0 otherwise. After 0 the memory of loop may be reused,
 * and pointers the loop handed out (coil_loop_fd(), tasks, buffers) are
 * invalid. Owner thread, outside any task and any run function. */
int coil_loop_exit(coil_loop *loop);

/* Runs the loop until coil_loop_stop() is called or nothing is left that could
 * make progress (no live task, armed timer, parked socket or coil_loop_ref()).
 * Returns 0, -EPERM when called from inside a task of this loop, or another
 * negative errno if the backend failed fatally. Owner thread; may be called
 * again after it returned (a stopped loop keeps its tasks). */
int coil_loop_run(coil_loop *loop);

/* Runs one turn: runs ready tasks, submits, waits at most timeout_ns for
 * completions (0: do not block; negative: no limit), runs expired timers and
 * the tasks they woke. Returns 1 if the loop is still alive (see
 * coil_loop_run), 0 if not, -EPERM from inside a task of this loop, or
 * another negative errno if the backend failed fatally. Owner thread. */
int coil_loop_run_once(coil_loop *loop, int64_t timeout_ns);

/* Makes coil_loop_run() return after the current turn; tasks, timers and
 * sockets stay as they are. Cannot fail. Owner thread only, from a task, a
 * callback or between runs (from another thread, coil_post() a message that
 * calls it). */
void coil_loop_stop(coil_loop *loop);

/* Keep-alive references: while the count is positive coil_loop_run() does not
 * return just because the loop went idle (a server waiting for messages).
 * Each coil_loop_ref() needs one coil_loop_unref(). Cannot fail. Owner
 * thread. */
void coil_loop_ref(coil_loop *loop);
void coil_loop_unref(coil_loop *loop);

/* A file descriptor that becomes readable when the loop has work to do, for
 * driving the loop from a foreign event loop (libuv's uv_backend_fd): poll it
 * for POLLIN with a timeout of coil_loop_timeout_ns(), then call
 * coil_loop_run_once(loop, 0) on the owner thread. The fd belongs to the
 * loop: valid until coil_loop_exit(); never read from or close it. Cannot
 * fail. Owner thread (another thread may poll the fd it was given). */
int coil_loop_fd(coil_loop *loop);

/* How long a foreign event loop may sleep before it must call
 * coil_loop_run_once(): 0 when tasks are ready, -1 when there is nothing
 * timed, else nanoseconds until the earliest timer. Cannot fail. Owner
 * thread. */
int64_t coil_loop_timeout_ns(coil_loop *loop);

/* "io_uring" or "epoll": the backend the loop runs on. The string is static
 * (valid even after coil_loop_exit()). Cannot fail. Any thread while the
 * loop is initialised. */
const char *coil_loop_backend(const coil_loop *loop);

/* The loop's clock: CLOCK_MONOTONIC in nanoseconds, cached once per turn.
 * Cannot fail. Owner thread. */
int64_t coil_now(coil_loop *loop);

/* A deadline ns nanoseconds from the loop's now (for the deadline arguments of
 * operations). Cannot fail (ns <= 0 gives a deadline that has passed).
 * Owner thread. */
int64_t coil_deadline_in(coil_loop *loop, int64_t ns);

/* Copies the loop's counters into *out (caller memory, written during the
 * call only). Cannot fail. Owner thread. */
void coil_loop_stats_get(coil_loop *loop, coil_loop_stats *out);

/* The loop whose task is running on this thread, or whose owner this thread
 * is; NULL if none. The pointer is the caller-allocated coil_loop, valid
 * until its coil_loop_exit(). Any thread (the answer is per thread). */
coil_loop *coil_loop_current(void);

/* Deadline value meaning "none" for every operation that takes one. */
#define COIL_NO_DEADLINE ((int64_t)0)

#ifdef __cplusplus
}
#endif
#endif
