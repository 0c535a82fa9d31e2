/*
 * io_uring backend, sockets: multishot accept and receive feeding a bounded
 * per-socket queue, single-shot operations on the task's own memory, park,
 * and the cancel-then-wait that closing needs (close() alone does not cancel
 * what io_uring holds).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "valgrind_io.h"
#include "uring_impl.h"

#define BGID 0

static uring_state *SS(coil_sock *s)
{
    return US(s->loop);
}

/* ---- the per-socket queue ---- */

bool coil__sock_rx_has(const coil_sock *s)
{
    return s->rx && s->rx->count;
}

bool coil__sock_rx_watched(const coil_sock *s)
{
    return s->rx && s->rx->armed && !s->rx->cancelling && !s->rx->is_poll;
}

static int rx_ensure(coil_sock *s)
{
    if (s->rx)
        return 0;
    struct coil__sock_rx *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return -ENOMEM;
    rx->size = 1;
    s->rx = rx;
    return 0;
}

/* Entries at which the multishot is stopped, so that a slow task cannot
 * drain the buffer ring (a listener: a backlog's worth). A receive also
 * asks the kernel to stop by itself after as many full buffers (rx_arm_kind):
 * a cancel comes too late for a fast stream, whose multishot keeps taking
 * buffers until the task next runs and so drains the ring, moving every
 * socket of the loop to single-shot receives and widening the window. */
static uint32_t rx_cap(const coil_sock *s)
{
    return (s->flags & COIL__SOCK_LISTENER) ? 64 : s->loop->opts.bufs_per_sock;
}

static struct rx_entry *rx_at(struct coil__sock_rx *rx, uint32_t i)
{
    return rx->size == 1 ? &rx->one : &rx->q[(rx->head + i) % rx->size];
}

/* Gives a queue that went empty its inline room back: an idle socket holds
 * no array of its own. */
static void rx_shrink(struct coil__sock_rx *rx)
{
    if (rx->count || rx->size == 1)
        return;
    free(rx->q);
    rx->size = 1;
    rx->head = 0;
}

static struct rx_entry *rx_head(struct coil__sock_rx *rx)
{
    return rx_at(rx, 0);
}

static void rx_pop(struct coil__sock_rx *rx)
{
    rx->head = (rx->head + 1) % rx->size;
    rx->count--;
    rx->head_off = 0;
}

static void wake_reader(coil_sock *s)
{
    coil__waiter *n = s->rd;
    if (n) {
        s->rd = NULL;
        coil__wake(n->w);
    }
}

static void rx_cancel(coil_sock *s)
{
    struct coil__sock_rx *rx = s->rx;
    if (rx && rx->armed && !rx->cancelling) {
        rx->cancelling = true;
        coil__uring_cancel(s->loop, &rx->ms);
    }
}

/* Moves the queue to a bigger heap array, keeping entries in order: room
 * for cap entries plus completions posted before a stop took effect, then
 * doubling. */
static int rx_grow(coil_sock *s)
{
    struct coil__sock_rx *rx = s->rx;
    uint32_t size = rx->size == 1 ? rx_cap(s) + 8 : rx->size * 2;
    struct rx_entry *q = malloc(size * sizeof(*q));
    if (!q)
        return -ENOMEM;
    for (uint32_t i = 0; i < rx->count; i++)
        q[i] = *rx_at(rx, i);
    if (rx->size > 1)
        free(rx->q);
    rx->q = q;
    rx->head = 0;
    rx->size = size;
    return 0;
}

static void rx_push(coil_sock *s, int32_t res, uint32_t buf_id)
{
    struct coil__sock_rx *rx = s->rx;
    /* Completions posted between reaching cap and the cancel taking effect
     * still need a place: a multishot accept takes the whole backlog at once.
     * The queue grows rather than drop a connection or bytes; its size stays
     * bounded by the backlog (accept) or the buffer ring (recv). */
    if (rx->count == rx->size && rx_grow(s) < 0) {
        if (res > 0 && !(s->flags & COIL__SOCK_LISTENER))
            coil__buf_give_back(s->loop, buf_id);
        else if (res >= 0)
            close(res);
        /* Out of memory: end the stream with an error rather than lose
         * part of it silently; the entry it replaces gives its buffer or
         * fd back. */
        struct rx_entry *last = rx_at(rx, rx->count - 1);
        if (last->res > 0 && !(s->flags & COIL__SOCK_LISTENER))
            coil__buf_give_back(s->loop, last->buf_id);
        else if (last->res >= 0 && (s->flags & COIL__SOCK_LISTENER))
            close(last->res);
        last->res = -ENOMEM;
        return;
    }
    struct rx_entry *e = rx_at(rx, rx->count);
    e->res = res;
    e->buf_id = buf_id;
    rx->count++;
    if (rx->count >= rx_cap(s))
        rx_cancel(s);
}

/* Whether the kernel saw more bytes on the socket when it completed a
 * receive (coil_sock_rx_more). */
static void rx_nonempty(coil_sock *s, uint32_t cqe_flags)
{
    if (cqe_flags & IORING_CQE_F_SOCK_NONEMPTY)
        s->flags |= COIL__SOCK_RX_NONEMPTY;
    else
        s->flags &= ~COIL__SOCK_RX_NONEMPTY;
}

static int rx_arm(coil_sock *s);

static void ms_on_cqe(coil__uring_op *op, int32_t res, uint32_t flags, bool more)
{
    coil_sock *s = op->s;
    struct coil__loop *l = s->loop;
    struct coil__sock_rx *rx = s->rx;
    bool was_cancelling = rx->cancelling;
    if (!more) {
        rx->armed = false;
        rx->cancelling = false;
        if (rx->capped && res == -EINVAL) {
            /* A kernel without the byte cap refused the field before
             * receiving anything (every socket armed meanwhile gets the same
             * answer): arm again without it, here for a parked socket, in
             * the reader for the others. */
            US(l)->recv_cap = false;
            bool parked = s->flags & COIL__SOCK_PARKED;
            if (parked && !(s->flags & COIL__SOCK_CLOSING) && rx_arm(s) == 0)
                return;
            wake_reader(s);
            if (parked)
                coil__sock_park_fire(s, false);
            return;
        }
    }
    if (flags & IORING_CQE_F_BUFFER) {
        uint32_t id = flags >> IORING_CQE_BUFFER_SHIFT;
        l->bufs.in_use++;
        rx_nonempty(s, flags);
        if (res > 0)
            rx_push(s, res, id);
        else
            coil__buf_give_back(l, id);
    } else if (rx->is_poll) {
        /* park without multishot: readiness only, no entry */
    } else if (res == -ENOBUFS) {
        /* The ring ran dry; this is not the end of the stream. Fall back to
         * single-shot receives until buffers come back. */
        l->bufs_exhausted++;
        s->flags |= COIL__SOCK_RX_STARVED;
        coil__uring_bufs_short(l);
    } else if (res == -ECANCELED && (was_cancelling || (s->flags & COIL__SOCK_CLOSING))) {
        /* our own stop */
    } else if (res >= 0 && (s->flags & COIL__SOCK_LISTENER)) {
        rx_push(s, res, 0);
    } else if (res <= 0) {
        rx_push(s, res, 0); /* end of stream or error: queued after the data */
    }
    wake_reader(s);
    if (s->flags & COIL__SOCK_PARKED)
        coil__sock_park_fire(s, false);
}

/* Arms the socket's own long-lived operation: a multishot accept or receive,
 * or (park without multishot) a one-shot poll for readability. */
static int rx_arm_kind(coil_sock *s, bool poll)
{
    int err = rx_ensure(s);
    if (err < 0)
        return err;
    struct coil__sock_rx *rx = s->rx;
    if (rx->armed)
        return 0;
    coil__uring_op_init(&rx->ms, s);
    rx->ms.on_cqe = ms_on_cqe;
    struct io_uring_sqe *sqe = coil__uring_start(s->loop, &rx->ms);
    if (!sqe)
        return -ENOMEM;
    rx->capped = false;
    if (poll) {
        io_uring_prep_poll_add(sqe, s->fd, POLLIN | POLLRDHUP);
    } else if (s->flags & COIL__SOCK_LISTENER) {
        io_uring_prep_multishot_accept(sqe, s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } else {
        io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
        rx->capped = US(s->loop)->recv_cap;
        if (rx->capped) {
            sqe->file_index = rx_cap(s) * s->loop->bufs.size; /* optlen in newer headers */
            if (US(s->loop)->refuse_cap)
                sqe->addr2 = 1; /* refused by every kernel */
        }
    }
    coil__uring_tag(sqe, &rx->ms);
    rx->armed = true;
    rx->is_poll = poll;
    return 0;
}

static int rx_arm(coil_sock *s)
{
    return rx_arm_kind(s, false);
}

static void rx_wait_abort(coil__wait *w)
{
    coil_sock *s = w->ctx;
    s->rd = NULL;
    coil__wake(w);
}

/* Waits until the multishot delivers something or ends. */
static int rx_wait(coil_sock *s, int64_t deadline)
{
    if (s->rd)
        return -EBUSY;
    coil__wait w = { .abort = rx_wait_abort, .ctx = s };
    coil__waiter n = { .w = &w };
    s->rd = &n;
    int err = coil__block(s->loop, &w, deadline);
    if (s->rd == &n)
        s->rd = NULL;
    return err;
}

/* ---- one-shot operations on the task's memory ---- */

/* Marks a direction busy for the duration of one operation. */
static int claim(coil__waiter **slot, coil__waiter *marker)
{
    if (*slot)
        return -EBUSY;
    *slot = marker;
    return 0;
}

typedef void (*prep_fn)(struct io_uring_sqe *sqe, coil_sock *s, void *ctx);

static int64_t run_op(coil_sock *s, coil__waiter **slot, prep_fn prep, void *ctx, int64_t deadline)
{
    struct coil__loop *l = s->loop;
    int err = coil__pending(l->current);
    if (err)
        return err;
    coil__waiter marker = { 0 };
    if (slot && (err = claim(slot, &marker)) < 0)
        return err;
    coil__uring_task_op op;
    coil__uring_task_op_init(&op, s);
    struct io_uring_sqe *sqe = coil__uring_start(l, &op.op);
    if (!sqe) {
        if (slot)
            *slot = NULL;
        return -ENOMEM;
    }
    prep(sqe, s, ctx);
    coil__uring_tag(sqe, &op.op);
    int64_t res = coil__uring_wait(l, &op, deadline);
    if (slot && *slot == &marker)
        *slot = NULL;
    return res;
}

struct accept_ctx {
    struct sockaddr_storage *peer;
    socklen_t len;
};

static void prep_accept(struct io_uring_sqe *sqe, coil_sock *s, void *ctx)
{
    struct accept_ctx *a = ctx;
    io_uring_prep_accept(sqe, s->fd, (struct sockaddr *)a->peer, a->peer ? &a->len : NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static int u_accept(coil_sock *lsn, struct sockaddr_storage *peer, int64_t deadline)
{
    if (!SS(lsn)->multishot) {
        struct accept_ctx a = { .peer = peer, .len = sizeof(*peer) };
        int fd = (int)run_op(lsn, &lsn->rd, prep_accept, &a, deadline);
        if (fd >= 0 && peer)
            COIL__KERNEL_WROTE(peer, a.len < sizeof(*peer) ? a.len : sizeof(*peer));
        return fd;
    }
    for (;;) {
        if (lsn->flags & COIL__SOCK_CLOSING)
            return -ECANCELED;
        struct coil__sock_rx *rx = lsn->rx;
        if (rx && rx->count) {
            int fd = rx_head(rx)->res;
            rx_pop(rx);
            if (fd >= 0 && peer) {
                socklen_t len = sizeof(*peer);
                if (getpeername(fd, (struct sockaddr *)peer, &len) < 0)
                    memset(peer, 0, sizeof(*peer));
            }
            return fd;
        }
        int err = coil__pending(lsn->loop->current);
        if (err)
            return err;
        if (!rx || !rx->armed) {
            err = rx_arm(lsn);
            if (err < 0)
                return err;
        }
        err = rx_wait(lsn, deadline);
        if (err)
            return err;
    }
}

struct connect_ctx {
    const struct sockaddr *addr;
    socklen_t len;
};

static void prep_connect(struct io_uring_sqe *sqe, coil_sock *s, void *ctx)
{
    struct connect_ctx *c = ctx;
    io_uring_prep_connect(sqe, s->fd, c->addr, c->len);
}

static int u_connect(coil_sock *s, const struct sockaddr *addr, socklen_t len, int64_t deadline)
{
    struct connect_ctx c = { addr, len };
    return (int)run_op(s, &s->wr, prep_connect, &c, deadline);
}

struct io_ctx {
    void *buf;
    size_t len;
    struct msghdr mh;
    int flags;
};

static void prep_recv(struct io_uring_sqe *sqe, coil_sock *s, void *ctx)
{
    struct io_ctx *c = ctx;
    io_uring_prep_recv(sqe, s->fd, c->buf, c->len, 0);
}

/* A receive into memory of our own (not the kernel's buffer ring). */
static ssize_t recv_own(coil_sock *s, void *buf, size_t len, int64_t deadline)
{
    struct io_ctx c = { .buf = buf, .len = len };
    s->flags &= ~COIL__SOCK_RX_NONEMPTY; /* this receive does not say */
    ssize_t r = run_op(s, &s->rd, prep_recv, &c, deadline);
    if (r > 0)
        COIL__KERNEL_WROTE(buf, (size_t)r);
    return r;
}

/* Copies queued bytes into caller memory; returns what an entry says. */
static ssize_t rx_copy(coil_sock *s, void *buf, size_t len)
{
    struct coil__sock_rx *rx = s->rx;
    struct rx_entry *e = rx_head(rx);
    if (e->res <= 0) {
        int32_t res = e->res;
        if (res < 0)
            rx_pop(rx); /* an error is reported once; end of stream stays */
        return res;
    }
    size_t avail = (size_t)e->res - rx->head_off;
    size_t n = avail < len ? avail : len;
    memcpy(buf, coil__buf_addr(&s->loop->bufs, e->buf_id) + rx->head_off, n);
    rx->head_off += (uint32_t)n;
    if (rx->head_off == (uint32_t)e->res) {
        coil__buf_give_back(s->loop, e->buf_id);
        rx_pop(rx);
    }
    return (ssize_t)n;
}

static ssize_t u_recv(coil_sock *s, void *buf, size_t len, int64_t deadline)
{
    for (;;) {
        if (s->flags & COIL__SOCK_CLOSING)
            return -ECANCELED;
        if (coil__sock_rx_has(s))
            return rx_copy(s, buf, len);
        if (s->rx && s->rx->armed) {
            int err = coil__pending(s->loop->current);
            if (err)
                return err;
            err = rx_wait(s, deadline);
            if (err)
                return err;
            continue;
        }
        return recv_own(s, buf, len, deadline);
    }
}

static bool ring_has_room(struct coil__loop *l)
{
    /* Re-arm the multishot once a quarter of the ring is free again. */
    return l->bufs.count - l->bufs.in_use >= l->bufs.count / 4;
}

static int u_rx_stop(coil_sock *s);
static ssize_t u_recv_buf(coil_sock *s, coil_buf *out, int64_t deadline);

static void prep_recv_select(struct io_uring_sqe *sqe, coil_sock *s, void *ctx)
{
    (void)ctx;
    io_uring_prep_recv(sqe, s->fd, NULL, s->loop->bufs.size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
}

/* One single-shot receive that picks its buffer from the ring: nothing stays
 * armed afterwards, so a task applying backpressure holds no buffer and lets
 * the kernel's socket buffer (and TCP's window) push back on the peer. */
static ssize_t recv_select(coil_sock *s, coil_buf *out, int64_t deadline)
{
    struct coil__loop *l = s->loop;
    int err = coil__pending(l->current);
    if (err)
        return err;
    coil__waiter marker = { 0 };
    if ((err = claim(&s->rd, &marker)) < 0)
        return err;
    coil__uring_task_op op;
    coil__uring_task_op_init(&op, s);
    struct io_uring_sqe *sqe = coil__uring_start(l, &op.op);
    if (!sqe) {
        s->rd = NULL;
        return -ENOMEM;
    }
    prep_recv_select(sqe, s, NULL);
    coil__uring_tag(sqe, &op.op);
    int64_t res = coil__uring_wait(l, &op, deadline);
    if (s->rd == &marker)
        s->rd = NULL;
    rx_nonempty(s, res > 0 ? op.w.flags : 0);
    if (op.w.flags & IORING_CQE_F_BUFFER) {
        uint32_t id = op.w.flags >> IORING_CQE_BUFFER_SHIFT;
        l->bufs.in_use++;
        if (res > 0) {
            coil__buf_view(l, out, id, (size_t)res);
            return res;
        }
        coil__buf_give_back(l, id);
    }
    if (res == -ENOBUFS) {
        l->bufs_exhausted++;
        s->flags |= COIL__SOCK_RX_STARVED; /* own buffers until the ring refills */
        coil__uring_bufs_short(l);
        return u_recv_buf(s, out, deadline);
    }
    return res;
}

static ssize_t u_recv_buf(coil_sock *s, coil_buf *out, int64_t deadline)
{
    struct coil__loop *l = s->loop;
    for (;;) {
        if (s->flags & COIL__SOCK_CLOSING)
            return -ECANCELED;
        struct coil__sock_rx *rx = s->rx;
        if (rx && rx->count) {
            struct rx_entry *e = rx_head(rx);
            if (e->res <= 0) {
                int32_t res = e->res;
                if (res < 0)
                    rx_pop(rx);
                return res;
            }
            coil__buf_view(l, out, e->buf_id, (size_t)e->res);
            out->data += rx->head_off;
            out->len -= rx->head_off;
            rx_pop(rx);
            return (ssize_t)out->len;
        }
        int err = coil__pending(l->current);
        if (err)
            return err;
        if ((s->flags & COIL__SOCK_RX_STARVED) && ring_has_room(l))
            s->flags &= ~COIL__SOCK_RX_STARVED;
        bool single = s->flags & COIL__SOCK_RX_SINGLE;
        if (single && rx && rx->armed && !rx->is_poll) {
            err = u_rx_stop(s); /* switching to single-shot: stop the multishot */
            if (err)
                return err;
            continue;
        }
        if (single && SS(s)->multishot && !(s->flags & COIL__SOCK_RX_STARVED))
            return recv_select(s, out, deadline);
        if (SS(s)->multishot && !(s->flags & COIL__SOCK_RX_STARVED)) {
            if (!rx || !rx->armed) {
                err = rx_arm(s);
                if (err < 0)
                    return err;
            }
            err = rx_wait(s, deadline);
            if (err)
                return err;
            continue;
        }
        if (rx && rx->armed) {
            err = rx_wait(s, deadline); /* a park poll or a stopping multishot */
            if (err)
                return err;
            continue;
        }
        /* Single-shot into a buffer of our own: a pool buffer, or one from the
         * heap while the kernel's ring is dry. */
        uint32_t id;
        err = coil__bufpool_take_any(&l->bufs, &id);
        if (err < 0)
            return err;
        ssize_t r = recv_own(s, coil__buf_addr(&l->bufs, id), l->bufs.size, deadline);
        if (r <= 0) {
            coil__buf_give_back(l, id);
            return r;
        }
        coil__buf_view(l, out, id, (size_t)r);
        return r;
    }
}

static int u_rx_stop(coil_sock *s)
{
    struct coil__sock_rx *rx = s->rx;
    while (rx && rx->armed) {
        rx_cancel(s);
        int err = rx_wait(s, COIL_NO_DEADLINE);
        if (err)
            return err;
    }
    return 0;
}

static void prep_sendmsg(struct io_uring_sqe *sqe, coil_sock *s, void *ctx)
{
    struct io_ctx *c = ctx;
    if (COIL__UNDER_VALGRIND())
        for (size_t i = 0; i < c->mh.msg_iovlen; i++)
            COIL__KERNEL_READS(c->mh.msg_iov[i].iov_base, c->mh.msg_iov[i].iov_len);
    if (c->mh.msg_iovlen == 1)
        io_uring_prep_send(sqe, s->fd, c->mh.msg_iov[0].iov_base, c->mh.msg_iov[0].iov_len,
                           MSG_NOSIGNAL | c->flags);
    else
        io_uring_prep_sendmsg(sqe, s->fd, &c->mh, MSG_NOSIGNAL | c->flags);
}

/* Below this many bytes a send goes through the ring: see u_sendmsg. */
#define RING_SEND_MAX 4096

static ssize_t u_sendmsg(coil_sock *s, struct iovec *iov, int iovcnt, int64_t deadline)
{
    bool more = s->flags & COIL__SOCK_TX_MORE;
    struct io_ctx c = { .mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt },
                        .flags = more ? MSG_MORE : 0 };
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    /* A small send (an answer, a request head) is queued on the ring: every
     * task that answers in this turn shares the one io_uring_enter that also
     * waits for the next completions, and the kernel runs each send inline
     * on submission. A sendmsg(2) of its own per answer cost more than the
     * task switch it saved. A large send (a body streamed chunk by chunk)
     * tries the socket at once instead: the copy dwarfs the system call,
     * and the task goes on without waiting for a turn. No other send can be
     * in flight on s (one sender at a time). A send with more bytes right
     * behind it (coil_sendv_more) goes at once too, whatever its size:
     * the next one follows without a wait, so the ring would only add a
     * turn to the stream. */
    if (!s->wr && (total >= RING_SEND_MAX || more)) {
        int err = coil__pending(s->loop->current);
        if (err)
            return err;
        ssize_t n = sendmsg(s->fd, &c.mh, MSG_DONTWAIT | MSG_NOSIGNAL | c.flags);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
    }
    return run_op(s, &s->wr, prep_sendmsg, &c, deadline);
}

struct poll_ctx {
    unsigned events;
};

static void prep_poll(struct io_uring_sqe *sqe, coil_sock *s, void *ctx)
{
    struct poll_ctx *p = ctx;
    io_uring_prep_poll_add(sqe, s->fd, p->events);
}

/* IORING_OP_SPLICE runs on io-wq kernel threads, not inline; waiting for
 * readiness on the ring and splicing directly keeps it on this core. */
static ssize_t u_splice(coil_sock *s, int pipe_fd, size_t len, bool sock_to_pipe, int64_t deadline)
{
    unsigned fl = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
    for (;;) {
        int err = coil__pending(s->loop->current);
        if (err)
            return err;
        ssize_t r = sock_to_pipe ? splice(s->fd, NULL, pipe_fd, NULL, len, fl)
                                 : splice(pipe_fd, NULL, s->fd, NULL, len, fl);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        struct poll_ctx p = { sock_to_pipe ? POLLIN | POLLRDHUP : POLLOUT };
        int64_t pr = run_op(s, sock_to_pipe ? &s->rd : &s->wr, prep_poll, &p, deadline);
        if (pr < 0)
            return pr;
    }
}

static int u_park(coil_sock *s)
{
    if (coil__sock_rx_has(s)) {
        coil__sock_park_fire(s, false);
        return 0;
    }
    if (s->rx)
        rx_shrink(s->rx);
    bool multishot = SS(s)->multishot && !(s->flags & COIL__SOCK_RX_STARVED);
    return rx_arm_kind(s, !multishot);
}

static void u_unpark(coil_sock *s)
{
    /* The multishot (or poll) stays armed: the task that takes the socket
     * reads through it, or closes the socket, which cancels it. */
    (void)s;
}

static int u_sock_open(coil_sock *s)
{
    (void)s;
    return 0;
}

static void rx_release(coil_sock *s)
{
    struct coil__sock_rx *rx = s->rx;
    if (!rx)
        return;
    while (rx->count) {
        struct rx_entry *e = rx_head(rx);
        if (s->flags & COIL__SOCK_LISTENER) {
            if (e->res >= 0)
                close(e->res);
        } else if (e->res > 0) {
            coil__buf_give_back(s->loop, e->buf_id);
        }
        rx_pop(rx);
    }
    if (rx->size > 1)
        free(rx->q);
    free(rx);
    s->rx = NULL;
}

static int u_quiesce(coil_sock *s)
{
    struct coil__loop *l = s->loop;
    if (s->inflight) {
        bool in_task = l->current && coil__tls_loop == l;
        /* Outside a task the loop can be turned here, but not from inside
         * one of its own callbacks. */
        if (!in_task && l->running)
            return -EBUSY;
        struct io_uring_sqe *sqe = coil__uring_sqe(l);
        if (sqe) {
            io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(sqe, TAG_IGNORE);
        }
        /* Memory the kernel may still write (buffers, the rx queue, caller
         * buffers of other tasks) stays ours until every final completion. */
        while (s->inflight) {
            if (!in_task) {
                int err = coil__uring_poll(l, -1);
                if (err < 0)
                    return err;
                continue;
            }
            coil__wait w = { .shield = true };
            s->closer = &w;
            coil__block(l, &w, COIL_NO_DEADLINE);
            s->closer = NULL;
        }
    }
    rx_release(s);
    return 0;
}

const coil__backend coil__backend_uring = {
    .name = "io_uring",
    .init = coil__uring_init,
    .exit = coil__uring_exit,
    .poll = coil__uring_poll,
    .fd = coil__uring_fd,
    .flush = coil__uring_flush,
    .sock_open = u_sock_open,
    .accept = u_accept,
    .connect = u_connect,
    .recv = u_recv,
    .recv_buf = u_recv_buf,
    .rx_stop = u_rx_stop,
    .sendmsg = u_sendmsg,
    .splice = u_splice,
    .park = u_park,
    .unpark = u_unpark,
    .quiesce = u_quiesce,
    .buf_recycle = coil__uring_buf_recycle,
    .doorbell = coil__uring_doorbell,
};
