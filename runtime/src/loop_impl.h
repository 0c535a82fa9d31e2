/*
 * Private: the inside of a loop, shared by the loop, the scheduler, the
 * timers, the buffer pool and both backends.
 */
#ifndef COIL_LOOP_IMPL_H
#define COIL_LOOP_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "coil/coil.h"
#include "ctx.h"
#include "stack.h"

struct coil__loop;

/* A suspended task's record of what it waits for. Lives on the waiting task's
 * stack, so it is valid exactly as long as the task is blocked in
 * coil__block(). */
typedef struct coil__wait {
    coil_task *task;
    /* Called when the task is cancelled, interrupted or its deadline passes
     * while blocked: must make the wait end (now, or once the kernel's final
     * completion arrives). NULL: the wait simply ends. */
    void (*abort)(struct coil__wait *w);
    int reason;        /* 0, or why the wait was aborted (-ETIMEDOUT, ...) */
    bool done;         /* set by whoever ends the wait */
    bool aborting;     /* abort() already called */
    bool shield;       /* cancel, interrupt and deadline do not end this wait */
    void *ctx;         /* for abort() */
    int64_t res;       /* result the waker hands over */
    uint32_t flags;    /* completion flags the waker hands over */
} coil__wait;

/* A wait's deadline (one per task: a task waits for one thing at a time).
 * Its timer is armed only if the wait is still on after the next poll: most
 * waits (a send through the ring, a receive whose bytes are queued) end
 * within the turn, and a heap insert plus removal for each showed in
 * profiles. */
typedef struct coil__deadline {
    coil_timer timer;
    struct coil__wait *w;
    int64_t when;
    struct coil__deadline *prev, *next; /* on the loop's list until armed */
    bool listed;
} coil__deadline;

/* Waiter of a coil_event or of a socket's readiness (epoll). */
typedef struct coil__waiter {
    coil__wait *w;
    struct coil__waiter *next;
} coil__waiter;

enum coil__task_state {
    COIL__TASK_READY,
    COIL__TASK_RUNNING,
    COIL__TASK_BLOCKED,
    COIL__TASK_DONE,
};

struct coil_task {
    coil__ctx ctx;
    coil__stack stack;
    struct coil__loop *loop;
    coil_task_fn fn;
    void *arg;
    coil_task *next_ready;     /* run queue link; also free-list link */
    coil_task *joiner;         /* task blocked in coil_join() on this one */
    coil__wait *wait;          /* what the task is blocked on, if BLOCKED */
    coil__wait *join_wait;
    int result;
    int interrupt;             /* pending one-shot error, 0 if none */
    coil__deadline deadline;   /* of the wait the task is blocked on, if it has one */
    uint8_t state;
    bool cancelled;
    bool detached;
    bool queued;               /* on the run queue */
};

/* Buffer pool: buf_count buffers of buf_size bytes in one allocation. */
typedef struct coil__bufpool {
    char *mem;
    uint32_t count, size;
    uint32_t *free_ids;        /* stack of free ids (user-space pools only) */
    uint32_t nfree;
    uint32_t in_use;
    uint16_t *refs;            /* extra views of a buffer (coil_buf_share); 0 = one holder */
    uint16_t *extra_refs;
    char **extra;              /* overflow buffers, ids count + i */
    uint32_t *extra_free;
    uint32_t nextra, nextra_free, extra_cap;
    uint64_t overflows;
    bool kernel_ring;          /* ids are handed back to the io_uring buffer ring */
} coil__bufpool;

struct coil_sock;

/* The backend contract. Each operation that can wait is called from a task
 * and suspends it through coil__block(); each returns a result >= 0 or a
 * negative errno. List it once, here. */
typedef struct coil__backend {
    const char *name;
    int (*init)(struct coil__loop *l);               /* -errno: cannot be used */
    void (*exit)(struct coil__loop *l);
    /* Submits what is queued, waits up to timeout_ns (<0: forever, 0: no
     * wait) and dispatches completions. Returns 0 or a fatal -errno. */
    int (*poll)(struct coil__loop *l, int64_t timeout_ns);
    int (*fd)(struct coil__loop *l);
    /* Hands queued submissions to the kernel without waiting. */
    void (*flush)(struct coil__loop *l);
    int (*sock_open)(struct coil_sock *s);
    int (*accept)(struct coil_sock *lsn, struct sockaddr_storage *peer, int64_t deadline);
    int (*connect)(struct coil_sock *s, const struct sockaddr *addr, socklen_t len, int64_t deadline);
    ssize_t (*recv)(struct coil_sock *s, void *buf, size_t len, int64_t deadline);
    ssize_t (*recv_buf)(struct coil_sock *s, coil_buf *out, int64_t deadline);
    int (*rx_stop)(struct coil_sock *s);
    /* One attempt: may send less than asked. */
    ssize_t (*sendmsg)(struct coil_sock *s, struct iovec *iov, int iovcnt, int64_t deadline);
    /* One splice between sock and a pipe end, in the direction given. */
    ssize_t (*splice)(struct coil_sock *s, int pipe_fd, size_t len, bool sock_to_pipe, int64_t deadline);
    int (*park)(struct coil_sock *s);
    void (*unpark)(struct coil_sock *s);
    /* Cancels and waits for everything in flight on s (from a task), or
     * returns -EBUSY outside a task when something is in flight. Does not
     * close the fd. */
    int (*quiesce)(struct coil_sock *s);
    /* Hands buffer id back to the kernel ring (kernel_ring pools only). */
    void (*buf_recycle)(struct coil__loop *l, uint32_t id);
    /* Rings target's doorbell. sender is the calling thread's loop or NULL. */
    void (*doorbell)(struct coil__loop *target, struct coil__loop *sender);
} coil__backend;

extern const coil__backend coil__backend_uring;
extern const coil__backend coil__backend_epoll;

typedef struct coil__pipe { int rd, wr; } coil__pipe;

struct coil__loop {
    coil_loop *pub;
    const coil__backend *be;
    void *be_state;
    coil_loop_options opts;
    pid_t owner_tid;

    /* scheduler */
    coil__ctx sched_ctx;
    coil_task *current;
    coil_task *ready_head, *ready_tail;
    coil_task *free_tasks;
    coil__stack_pool stacks;
    uint64_t tasks_live;
    uint64_t tasks_spawned;

    /* timers: binary min-heap on when */
    coil_timer **heap;
    uint32_t heap_len, heap_cap;
    coil_timer stack_trim_timer;
    coil__deadline *new_deadlines;   /* waits' deadlines not armed yet */

    int64_t now;
    int64_t last_trim;         /* when idle stacks last gave their pages back */
    bool timers_running;       /* inside coil__timers_run */
    bool stop;
    bool exiting;
    bool running;
    unsigned refs;
    uint64_t socks_open;
    uint64_t socks_parked;
    uint64_t stale_completions;
    uint64_t cq_overflows;
    uint64_t bufs_exhausted;
    uint64_t msgs_received;
    uint64_t loop_turns;
    uint64_t sends_continued;

    coil__bufpool bufs;

    /* pipes for splice, reused */
    coil__pipe *pipes;
    unsigned npipes, pipes_cap;

    /* cross-core messages: a lock-free stack pushed by any thread, taken
     * whole by the owner (see msg.c) */
    _Atomic(coil_msg *) inbox;
    int wake_efd;              /* eventfd doorbell */

    /* fault injection (fault.c): NULL unless faults were configured; then
     * be points into it */
    struct coil__faults *faults;
};

/* loop.c */
int64_t coil__clock_ns(void);
void coil__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline struct coil__loop *coil__L(coil_loop *l) { return l->impl; }

/* task.c */
extern _Thread_local struct coil__loop *coil__tls_loop;
void coil__run_ready(struct coil__loop *l);
void coil__wake(coil__wait *w);                  /* ends a wait and readies its task */
/* Checks a pending cancel/interrupt of the current task: returns its error
 * (consuming an interrupt) or 0. */
int coil__pending(coil_task *t);
/* Blocks the current task until w->done. deadline: abort w with -ETIMEDOUT
 * then. Returns w->reason if the wait was aborted, else 0; the caller reads
 * w->res. Before calling, the caller has started whatever will end the wait. */
int coil__block(struct coil__loop *l, coil__wait *w, int64_t deadline);
/* The running task, or NULL: -EPERM for the callers that need one. */
static inline coil_task *coil__self_in(struct coil__loop *l) { return l ? l->current : NULL; }
void coil__waitq_push(coil__waiter **head, coil__waiter **tail, coil__waiter *n);
void coil__waitq_remove(coil__waiter **head, coil__waiter **tail, coil__waiter *n);
void coil__tasks_exit(struct coil__loop *l);
/* Arms the timers of deadlines whose waits are still on (after a poll). */
void coil__deadlines_arm(struct coil__loop *l);
/* The earliest deadline not armed yet, or -1. */
int64_t coil__deadlines_next(struct coil__loop *l);

/* timer.c */
void coil__timers_run(struct coil__loop *l);
int64_t coil__timers_next(struct coil__loop *l);   /* earliest deadline or -1 */
void coil__timers_exit(struct coil__loop *l);

/* bufpool.c */
int coil__bufpool_init(coil__bufpool *p, uint32_t count, uint32_t size);
void coil__bufpool_exit(coil__bufpool *p);
/* User-space pools: takes a free buffer, -ENOBUFS if none. */
int coil__bufpool_take(coil__bufpool *p, uint32_t *id);
/* Like take, falling back to a heap buffer when the pool is dry. */
int coil__bufpool_take_any(coil__bufpool *p, uint32_t *id);
char *coil__buf_addr(const coil__bufpool *p, uint32_t id);
void coil__buf_view(struct coil__loop *l, coil_buf *out, uint32_t id, size_t len);
void coil__buf_give_back(struct coil__loop *l, uint32_t id);

/* msg.c */
void coil__msgs_run(struct coil__loop *l);
int coil__msgs_init(struct coil__loop *l);
void coil__msgs_exit(struct coil__loop *l);
void coil__eventfd_ring(struct coil__loop *target);
void coil__eventfd_drain(struct coil__loop *l);

/* uring_net.c: bytes or accepted fds queued on s by a multishot */
bool coil__sock_rx_has(const struct coil_sock *s);
/* uring_net.c: a multishot receive is in flight on s, so whatever the peer
 * sends (or its end of stream) is queued without anyone asking */
bool coil__sock_rx_watched(const struct coil_sock *s);
/* backend_epoll.c: s is registered and no readable edge, end of stream or
 * error was reported since a receive emptied it (see note_drained) */
bool coil__sock_rd_drained(const struct coil_sock *s);

/* net.c */
void coil__sock_park_fire(struct coil_sock *s, bool timed_out);
/* pipe pool */
int coil__pipe_get(struct coil__loop *l, coil__pipe *p);
void coil__pipe_put(struct coil__loop *l, coil__pipe p, bool clean);
void coil__pipes_exit(struct coil__loop *l);

/* Socket flag bits (coil_sock.flags). */
enum {
    COIL__SOCK_OPEN = 1u << 0,
    COIL__SOCK_LISTENER = 1u << 1,
    COIL__SOCK_PARKED = 1u << 2,
    COIL__SOCK_CLOSING = 1u << 3,
    COIL__SOCK_EOF = 1u << 4,          /* end of stream seen by a multishot */
    COIL__SOCK_PARK_TIMEOUT = 1u << 5, /* woken by its park deadline */
    COIL__SOCK_REGISTERED = 1u << 6,   /* epoll: in the interest list */
    COIL__SOCK_RX_STARVED = 1u << 7,   /* io_uring: buffer ring was empty */
    COIL__SOCK_RD_READY = 1u << 8,     /* epoll: readable edge not yet consumed */
    COIL__SOCK_WR_READY = 1u << 9,     /* epoll: writable edge not yet consumed */
    COIL__SOCK_RX_SINGLE = 1u << 10,   /* receives are single-shot (backpressure) */
    COIL__SOCK_TX_MORE = 1u << 11,     /* sends: MSG_MORE, during coil_sendv_more() */
    COIL__SOCK_RX_NONEMPTY = 1u << 12, /* the last buffer receive left bytes in the socket */
    COIL__SOCK_RD_HUP = 1u << 13,      /* epoll: end of stream or error reported */
};

#endif
