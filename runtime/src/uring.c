/*
 * io_uring backend, core: ring set-up with the best flags the kernel takes,
 * the provided-buffer ring, completion tags with generations, one
 * submit-and-wait per turn, and the doorbells.
 */
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "valgrind_io.h"
#include "uring_impl.h"

#define BGID 0

/* ---- completion tags ---- */

static int slot_alloc(uring_state *st, coil__uring_op *op, uint32_t *idx)
{
    if (!st->nfree) {
        uint32_t cap = st->cap ? st->cap * 2 : 256;
        coil__uring_op **o = realloc(st->slot_op, cap * sizeof(*o));
        if (!o)
            return -ENOMEM;
        st->slot_op = o;
        uint32_t *g = realloc(st->slot_gen, cap * sizeof(*g));
        if (!g)
            return -ENOMEM;
        st->slot_gen = g;
        uint32_t *f = realloc(st->free_slots, cap * sizeof(*f));
        if (!f)
            return -ENOMEM;
        st->free_slots = f;
        for (uint32_t i = cap; i > st->cap; i--) {
            st->slot_op[i - 1] = NULL;
            st->slot_gen[i - 1] = 1; /* never 0: a tag of 0 means "not in flight" */
            st->free_slots[st->nfree++] = i - 1;
        }
        st->cap = cap;
    }
    *idx = st->free_slots[--st->nfree];
    st->slot_op[*idx] = op;
    st->nslots++;
    return 0;
}

static void slot_free(uring_state *st, uint32_t idx)
{
    st->slot_op[idx] = NULL;
    /* 31 bits of generation: the top bit of a tag marks special tags. */
    uint32_t gen = (st->slot_gen[idx] + 1) & 0x7fffffffu;
    st->slot_gen[idx] = gen ? gen : 1;
    st->free_slots[st->nfree++] = idx;
    st->nslots--;
}

struct io_uring_sqe *coil__uring_sqe(struct coil__loop *l)
{
    uring_state *st = US(l);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (!sqe) {
        /* Submission queue full: hand what is queued to the kernel now. */
        io_uring_submit(&st->ring);
        sqe = io_uring_get_sqe(&st->ring);
    }
    return sqe;
}

void coil__uring_op_init(coil__uring_op *op, coil_sock *s)
{
    *op = (coil__uring_op){ .s = s };
}

void coil__uring_task_op_init(coil__uring_task_op *op, coil_sock *s)
{
    *op = (coil__uring_task_op){ .op = { .s = s } };
}

struct io_uring_sqe *coil__uring_start(struct coil__loop *l, coil__uring_op *op)
{
    uring_state *st = US(l);
    uint32_t idx;
    if (slot_alloc(st, op, &idx) < 0)
        return NULL;
    struct io_uring_sqe *sqe = coil__uring_sqe(l);
    if (!sqe) {
        slot_free(st, idx);
        return NULL;
    }
    op->tag = ((uint64_t)st->slot_gen[idx] << 32) | idx;
    if (op->s)
        op->s->inflight++;
    return sqe;
}

void coil__uring_cancel(struct coil__loop *l, coil__uring_op *op)
{
    if (!op->tag)
        return;
    struct io_uring_sqe *sqe = coil__uring_sqe(l);
    if (!sqe)
        return; /* cannot happen after a submit; the operation then ends by itself */
    io_uring_prep_cancel64(sqe, op->tag, 0);
    io_uring_sqe_set_data64(sqe, TAG_IGNORE);
}

static void task_op_abort(coil__wait *w)
{
    coil__uring_task_op *t = (coil__uring_task_op *)((char *)w - offsetof(coil__uring_task_op, w));
    coil__uring_cancel(t->op.s ? t->op.s->loop : coil__tls_loop, &t->op);
}

int64_t coil__uring_wait(struct coil__loop *l, coil__uring_task_op *op, int64_t deadline)
{
    op->w.abort = task_op_abort;
    int reason = coil__block(l, &op->w, deadline);
    int64_t res = op->w.res;
    /* Cancelled for a reason, and the kernel confirms it did not happen. */
    if (reason && (res == -ECANCELED || res == -EINTR || res == -ETIME))
        return reason;
    return res;
}

static void op_complete(struct coil__loop *l, coil__uring_op *op, int32_t res, uint32_t flags,
                        bool more)
{
    if (!more) {
        op->tag = 0;
        if (op->s) {
            coil_sock *s = op->s;
            s->inflight--;
            if (!s->inflight && s->closer)
                coil__wake(s->closer);
        }
    }
    if (op->on_cqe) {
        op->on_cqe(op, res, flags, more);
        return;
    }
    (void)l;
    coil__uring_task_op *t = (coil__uring_task_op *)op; /* op is its first member */
    t->w.res = res;
    t->w.flags = flags;
    if (!more)
        coil__wake(&t->w);
}

/* ---- buffer ring ---- */

/* Buffers offered to the kernel at first. The ring hands them out oldest
 * first, so every buffer in it is touched in turn: a quiet loop would keep a
 * page of each resident, and a stream would copy through buffers that have
 * left the cache by the time they come round again (16 x 16 KiB stay in a
 * core's L2; with 64 a 1 GiB download cost about 8% more CPU). The window
 * widens when the ring runs dry. */
static uint32_t window_start(uint32_t n)
{
    return n < 16 ? n : 16;
}

static void br_post(struct coil__loop *l, uint32_t id, int offset)
{
    uring_state *st = US(l);
    io_uring_buf_ring_add(st->br, coil__buf_addr(&l->bufs, id), l->bufs.size, (unsigned short)id,
                          io_uring_buf_ring_mask(l->bufs.count), offset);
}

/* Tops the ring up to the window from the pool's LIFO stack. */
static void br_fill(struct coil__loop *l)
{
    uring_state *st = US(l);
    coil__bufpool *p = &l->bufs;
    int added = 0;
    while (st->br_posted < st->br_target && p->nfree) {
        br_post(l, p->free_ids[--p->nfree], added++);
        st->br_posted++;
    }
    if (added)
        io_uring_buf_ring_advance(st->br, added); /* store-release: entries before tail */
}

static int bufring_setup(struct coil__loop *l)
{
    uring_state *st = US(l);
    unsigned n = l->bufs.count;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    st->br_bytes = (n * sizeof(struct io_uring_buf) + page - 1) / page * page;
    /* liburing 2.3 has no io_uring_setup_buf_ring: map and register the ring
     * memory ourselves. */
    void *mem = mmap(NULL, st->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    st->br = mem;
    io_uring_buf_ring_init(st->br);
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)mem, .ring_entries = n, .bgid = BGID };
    int err = io_uring_register_buf_ring(&st->ring, &reg, 0);
    if (err < 0) {
        munmap(mem, st->br_bytes);
        st->br = NULL;
        return err;
    }
    /* From now on a buffer is in the ring, on the pool's free stack (lowest
     * ids on top), or held; nfree counts the stack. */
    l->bufs.kernel_ring = true;
    st->br_posted = 0;
    st->br_target = window_start(n);
    st->br_widened_turn = UINT64_MAX;
    br_fill(l);
    return 0;
}

static void uring_buf_recycle(struct coil__loop *l, uint32_t id)
{
    uring_state *st = US(l);
    if (st->br_posted >= st->br_target) {
        l->bufs.free_ids[l->bufs.nfree++] = id;
        return;
    }
    br_post(l, id, 0);
    /* store-release inside: the kernel sees the entry before the new tail */
    io_uring_buf_ring_advance(st->br, 1);
    st->br_posted++;
}

void coil__uring_bufs_short(struct coil__loop *l)
{
    uring_state *st = US(l);
    /* The ring was empty when this completion was posted. The count only
     * sizes the window (a buffer is in the ring, on the stack or held,
     * whatever it says), so restarting it from here is good enough. */
    st->br_posted = 0;
    /* One dry ring posts an ENOBUFS for every socket that was receiving:
     * widen once per turn, not once per socket. */
    if (st->br_widened_turn != l->loop_turns) {
        uint32_t wider = st->br_target * 2;
        st->br_target = wider < l->bufs.count ? wider : l->bufs.count;
        st->br_widened_turn = l->loop_turns;
    }
    br_fill(l);
}

/* ---- set-up ---- */

static bool kernel_at_least(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;
    if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return false;
    return ma > major || (ma == major && mi >= minor);
}

static void arm_eventfd(struct coil__loop *l)
{
    uring_state *st = US(l);
    struct io_uring_sqe *sqe = coil__uring_sqe(l);
    if (!sqe)
        return;
    io_uring_prep_poll_multishot(sqe, l->wake_efd, POLLIN);
    io_uring_sqe_set_data64(sqe, TAG_EVENTFD);
    st->efd_armed = true;
}

static int uring_init(struct coil__loop *l)
{
    uring_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    l->be_state = st;
    struct io_uring_params p;
    /* Best first; each EINVAL means an older kernel that lacks a flag. */
    static const unsigned tries[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int err = -EINVAL;
    unsigned first = (l->opts.flags & COIL_LOOP_NO_TASKRUN_FLAGS) ? 2 : 0;
    for (unsigned i = first; i < sizeof(tries) / sizeof(tries[0]); i++) {
        memset(&p, 0, sizeof(p));
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = l->opts.ring_entries * 4;
        err = io_uring_queue_init_params(l->opts.ring_entries, &st->ring, &p);
        if (err != -EINVAL)
            break;
    }
    if (err < 0) {
        free(st);
        l->be_state = NULL;
        return err;
    }
    st->setup_flags = p.flags;
    st->notify_efd = -1;
    bool want_ms = !(l->opts.flags & COIL_LOOP_NO_MULTISHOT) && kernel_at_least(6, 0);
    if (want_ms && bufring_setup(l) == 0)
        st->multishot = st->recv_cap = true;
    arm_eventfd(l);
    return 0;
}

static void uring_exit(struct coil__loop *l)
{
    uring_state *st = US(l);
    if (st->br) {
        io_uring_unregister_buf_ring(&st->ring, BGID);
        munmap(st->br, st->br_bytes);
    }
    io_uring_queue_exit(&st->ring);
    if (st->notify_efd >= 0)
        close(st->notify_efd);
    free(st->slot_op);
    free(st->slot_gen);
    free(st->free_slots);
    free(st);
    l->be_state = NULL;
    l->bufs.kernel_ring = false;
}

/* ---- a turn ---- */

static void dispatch(struct coil__loop *l, struct io_uring_cqe *cqe)
{
    uring_state *st = US(l);
    uint64_t tag = cqe->user_data;
    int32_t res = cqe->res;
    uint32_t flags = cqe->flags;
    bool more = flags & IORING_CQE_F_MORE;
    if (tag & TAG_SPECIAL) {
        if (tag == TAG_EVENTFD) {
            coil__eventfd_drain(l);
            if (!more)
                st->efd_armed = false;
        } else if ((tag & TAG_MSG_SENT) == TAG_MSG_SENT && tag != TAG_IGNORE) {
            /* Our MSG_RING failed (the target's CQ full: -EOVERFLOW): ring
             * the target's eventfd instead, so the message is not stranded. */
            if (res < 0)
                coil__eventfd_ring((struct coil__loop *)(uintptr_t)(tag & ~TAG_MSG_SENT));
        }
        return;
    }
    if ((flags & IORING_CQE_F_BUFFER) && st->br_posted)
        st->br_posted--;
    if ((flags & IORING_CQE_F_BUFFER) && res > 0 && COIL__UNDER_VALGRIND())
        COIL__KERNEL_WROTE(coil__buf_addr(&l->bufs, flags >> IORING_CQE_BUFFER_SHIFT), (size_t)res);
    uint32_t idx = (uint32_t)tag;
    uint32_t gen = (uint32_t)(tag >> 32);
    if (idx >= st->cap || !st->slot_op[idx] || st->slot_gen[idx] != gen) {
        l->stale_completions++;
        /* A stale receive may still carry a buffer: give it back. */
        if (flags & IORING_CQE_F_BUFFER) {
            l->bufs.in_use++;
            coil__buf_give_back(l, flags >> IORING_CQE_BUFFER_SHIFT);
        }
        return;
    }
    coil__uring_op *op = st->slot_op[idx];
    if (!more)
        slot_free(st, idx);
    op_complete(l, op, res, flags, more);
}

/* Submits what is queued and, unless timeout_ns is 0, waits up to timeout_ns
 * (negative: no limit) for a completion. */
static int submit_and_wait(struct io_uring *ring, int64_t timeout_ns)
{
    if (timeout_ns == 0) {
        /* Enters the kernel only if there is something to submit, or
         * completions wait behind DEFER_TASKRUN or a CQ overflow (liburing
         * reads IORING_SQ_TASKRUN / IORING_SQ_CQ_OVERFLOW for that). */
        return io_uring_submit(ring);
    }
    if (timeout_ns < 0)
        return io_uring_submit_and_wait(ring, 1);
    struct __kernel_timespec ts = { .tv_sec = timeout_ns / 1000000000,
                                    .tv_nsec = timeout_ns % 1000000000 };
    struct io_uring_cqe *cqe;
    return io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
}

/* The same wait under Valgrind (valgrind_io.h, "Threads"): in slices, with a
 * sched_yield after each so that Valgrind runs the other threads, until a
 * completion comes or the whole timeout has passed. */
static int submit_and_wait_sliced(struct io_uring *ring, int64_t timeout_ns)
{
    int64_t left = timeout_ns;
    for (;;) {
        int64_t slice = left == 0 || (left > 0 && left < COIL__VALGRIND_SLICE_NS)
                            ? left
                            : COIL__VALGRIND_SLICE_NS;
        int ret = submit_and_wait(ring, slice);
        if (slice == 0)
            return ret;
        sched_yield();
        /* A wait that timed out may still answer with what it submitted. */
        if ((ret < 0 && ret != -ETIME) || io_uring_cq_ready(ring))
            return ret;
        if (left > 0 && (left -= slice) <= 0)
            return ret;
    }
}

static int uring_poll(struct coil__loop *l, int64_t timeout_ns)
{
    uring_state *st = US(l);
    struct io_uring *ring = &st->ring;
    if (!st->efd_armed)
        arm_eventfd(l);
    if (st->notify_efd >= 0) {
        uint64_t v;
        ssize_t rr = read(st->notify_efd, &v, sizeof(v));
        (void)rr;
    }
    if (st->br)
        br_fill(l);
    if (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_CQ_OVERFLOW)
        l->cq_overflows++;
    int ret = COIL__UNDER_VALGRIND() ? submit_and_wait_sliced(ring, timeout_ns)
                                     : submit_and_wait(ring, timeout_ns);
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return ret;
    /* Completions may be posted while we reap: bound the batch so a flood
     * cannot keep the loop here forever. */
    unsigned budget = 4 * l->opts.ring_entries * 4;
    for (;;) {
        struct io_uring_cqe *cqes[64];
        unsigned n = io_uring_peek_batch_cqe(ring, cqes, 64);
        if (n == 0)
            break;
        for (unsigned i = 0; i < n; i++)
            dispatch(l, cqes[i]);
        io_uring_cq_advance(ring, n);
        if (n > budget)
            break;
        budget -= n;
    }
    return 0;
}

static int uring_fd(struct coil__loop *l)
{
    uring_state *st = US(l);
    if (st->notify_efd < 0) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0)
            return -errno;
        int err = io_uring_register_eventfd(&st->ring, fd);
        if (err < 0) {
            close(fd);
            return err;
        }
        st->notify_efd = fd;
    }
    return st->notify_efd;
}

void coil__uring_flush(struct coil__loop *l)
{
    uring_state *st = US(l);
    if (io_uring_sq_ready(&st->ring))
        io_uring_submit(&st->ring);
}

static void uring_doorbell(struct coil__loop *target, struct coil__loop *sender)
{
    if (sender && sender->be == &coil__backend_uring && target->be == &coil__backend_uring &&
        sender != target) {
        struct io_uring_sqe *sqe = coil__uring_sqe(sender);
        if (sqe) {
            io_uring_prep_msg_ring(sqe, US(target)->ring.ring_fd, 0, TAG_DOORBELL, 0);
            io_uring_sqe_set_data64(sqe, TAG_MSG_SENT | (uint64_t)(uintptr_t)target);
            return;
        }
    }
    coil__eventfd_ring(target);
}

/* Exported to uring_net.c, which assembles the ops table. */
int coil__uring_init(struct coil__loop *l) { return uring_init(l); }
void coil__uring_exit(struct coil__loop *l) { uring_exit(l); }
int coil__uring_poll(struct coil__loop *l, int64_t t) { return uring_poll(l, t); }
int coil__uring_fd(struct coil__loop *l) { return uring_fd(l); }
void coil__uring_doorbell(struct coil__loop *t, struct coil__loop *s) { uring_doorbell(t, s); }
void coil__uring_buf_recycle(struct coil__loop *l, uint32_t id) { uring_buf_recycle(l, id); }
