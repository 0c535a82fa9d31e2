/*
 * Private to the io_uring backend: ring state, completion tags, operations.
 */
#ifndef COIL_URING_IMPL_H
#define COIL_URING_IMPL_H

#include <liburing.h>

#include "loop_impl.h"

/* user_data layout. Operations get (generation << 32 | slot) with the top bit
 * clear; a completion whose generation no longer matches its slot is stale
 * (the slot was freed and reused) and is dropped. Tags with the top bit set
 * name the loop's own fixed users. */
#define TAG_SPECIAL (1ull << 63)
#define TAG_IGNORE (~0ull)                    /* cancels: nothing to do */
#define TAG_DOORBELL (TAG_SPECIAL | 1)        /* MSG_RING arriving here */
#define TAG_EVENTFD (TAG_SPECIAL | 2)         /* poll on the eventfd doorbell */
#define TAG_MSG_SENT (TAG_SPECIAL | (1ull << 62)) /* | target loop pointer: our MSG_RING's result */

typedef struct coil__uring_op coil__uring_op;

/* One operation the kernel holds: what the slot table points to. Kept
 * small because a parked socket's multishot is one of these. */
struct coil__uring_op {
    /* Called for every completion; more is IORING_CQE_F_MORE (the operation
     * stays in flight). NULL: a coil__uring_task_op (store result, wake). */
    void (*on_cqe)(coil__uring_op *op, int32_t res, uint32_t flags, bool more);
    coil_sock *s;        /* counted in s->inflight while in flight, may be NULL */
    uint64_t tag;        /* user_data while in flight, else 0 */
};

/* An operation a task waits for; lives on the task's stack. */
typedef struct coil__uring_task_op {
    coil__uring_op op;
    coil__wait w;        /* w.res and w.flags get the result */
} coil__uring_task_op;

struct rx_entry {
    int32_t res;         /* bytes (recv) or fd (accept); <= 0 ends the stream */
    uint32_t buf_id;
};

/* A socket's multishot accept/recv (or park poll) and the completions it
 * queued. A parked keep-alive socket holds exactly this, so it is one small
 * allocation (56 bytes): one entry inline — an answer's request arrives in
 * one completion — and a heap array only while a burst needs more room
 * (see rx_push, rx_shrink). */
struct coil__sock_rx {
    coil__uring_op ms;   /* the multishot accept/recv, or the park poll */
    uint32_t head_off;   /* bytes of the head entry already consumed */
    uint32_t head, count;
    uint32_t size;       /* entries the queue holds: 1 is the inline one */
    bool armed;          /* ms in flight */
    bool cancelling;     /* a cancel for ms was submitted */
    bool is_poll;        /* ms is a POLL_ADD (park without multishot recv) */
    bool capped;         /* ms is a receive with a byte cap (recv_cap) */
    union {
        struct rx_entry one; /* size == 1 */
        struct rx_entry *q;  /* size > 1 */
    };
};
_Static_assert(sizeof(struct coil__sock_rx) <= 56, "a parked socket's record stays one small chunk");

typedef struct uring_state {
    struct io_uring ring;
    unsigned setup_flags;
    bool multishot;          /* multishot recv + accept + buffer ring usable */
    /* The kernel ends a multishot receive by itself after a byte cap
     * (sqe->optlen; this machine's 6.18 has it). Assumed until a capped
     * receive fails with EINVAL, which is how older kernels refuse the field. */
    bool recv_cap;
    /* Tests: capped receives also carry a field every kernel refuses with
     * EINVAL, so that the way back from the cap runs on a kernel that has it. */
    bool refuse_cap;
    bool efd_armed;
    int notify_efd;          /* registered eventfd behind coil_loop_fd, or -1 */
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    /* Buffers offered to the kernel: the ring is first-in first-out, so
     * every buffer in it gets touched in turn. Only a window of them is
     * offered; the rest wait on the pool's LIFO stack (bufpool.c). */
    uint32_t br_posted;      /* in the ring, as counted from completions */
    uint32_t br_target;      /* window: grows when the ring runs dry */
    uint64_t br_widened_turn; /* loop turn of the last widening (UINT64_MAX: none) */
    /* slot table */
    coil__uring_op **slot_op;
    uint32_t *slot_gen;
    uint32_t *free_slots;
    uint32_t nslots, nfree, cap;
} uring_state;

static inline uring_state *US(struct coil__loop *l)
{
    return l->be_state;
}

/* uring.c */
struct io_uring_sqe *coil__uring_sqe(struct coil__loop *l);
/* Gives op a tag and an SQE for it, and counts it on op->s. The caller
 * prepares the SQE, then calls coil__uring_tag() (prep functions clear
 * user_data). NULL: no memory for the tag table. */
struct io_uring_sqe *coil__uring_start(struct coil__loop *l, coil__uring_op *op);
static inline void coil__uring_tag(struct io_uring_sqe *sqe, const coil__uring_op *op)
{
    io_uring_sqe_set_data64(sqe, op->tag);
}
/* Asks the kernel to cancel op (its completion still arrives). */
void coil__uring_cancel(struct coil__loop *l, coil__uring_op *op);
/* Starts op (prepared by the caller through the returned SQE's setup
 * function), blocks the task until the final completion, and returns the
 * result, or the abort reason if it was cancelled for one. */
int64_t coil__uring_wait(struct coil__loop *l, coil__uring_task_op *op, int64_t deadline);
void coil__uring_op_init(coil__uring_op *op, coil_sock *s);
void coil__uring_task_op_init(coil__uring_task_op *op, coil_sock *s);

int coil__uring_init(struct coil__loop *l);
void coil__uring_exit(struct coil__loop *l);
int coil__uring_poll(struct coil__loop *l, int64_t timeout_ns);
int coil__uring_fd(struct coil__loop *l);
void coil__uring_doorbell(struct coil__loop *target, struct coil__loop *sender);
void coil__uring_buf_recycle(struct coil__loop *l, uint32_t id);
/* The ring ran dry (-ENOBUFS): widens the window and refills it. */
void coil__uring_bufs_short(struct coil__loop *l);
void coil__uring_flush(struct coil__loop *l);

#endif
