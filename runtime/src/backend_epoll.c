/*
 * epoll backend: readiness, not completion. Every socket is registered once,
 * edge-triggered, for both directions; an operation tries its system call
 * first and waits for the next edge only after EAGAIN. An edge that arrives
 * while nobody waits is remembered in the socket's flags, so a later wait or
 * park does not miss it.
 *
 * No generation number is needed in epoll_event.data: events are dispatched
 * in one pass that runs no task, and a socket leaves the interest list
 * (EPOLL_CTL_DEL in quiesce) before its memory can be reused.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop_impl.h"

#define EVENTS_PER_POLL 256

typedef struct epoll_state {
    int epfd;
    struct epoll_event events[EVENTS_PER_POLL];
} epoll_state;

static epoll_state *ES(struct coil__loop *l)
{
    return l->be_state;
}

static int ep_init(struct coil__loop *l)
{
    epoll_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = -errno;
        free(st);
        return err;
    }
    /* data.ptr NULL marks the doorbell. */
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, l->wake_efd, &ev) < 0) {
        int err = -errno;
        close(st->epfd);
        free(st);
        return err;
    }
    l->be_state = st;
    l->bufs.kernel_ring = false;
    return 0;
}

static void ep_exit(struct coil__loop *l)
{
    epoll_state *st = ES(l);
    close(st->epfd);
    free(st);
    l->be_state = NULL;
}

static void wake_slot(coil__waiter **slot)
{
    coil__waiter *n = *slot;
    if (n) {
        *slot = NULL;
        coil__wake(n->w);
    }
}

static int ep_poll(struct coil__loop *l, int64_t timeout_ns)
{
    epoll_state *st = ES(l);
    int ms;
    if (timeout_ns < 0)
        ms = -1;
    else
        ms = (int)((timeout_ns + 999999) / 1000000); /* round up: never wake early */
    int n = epoll_wait(st->epfd, st->events, EVENTS_PER_POLL, ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct epoll_event *ev = &st->events[i];
        coil_sock *s = ev->data.ptr;
        if (!s) {
            coil__eventfd_drain(l);
            continue;
        }
        uint32_t e = ev->events;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            s->flags |= COIL__SOCK_RD_HUP;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            s->flags |= COIL__SOCK_RD_READY;
            wake_slot(&s->rd);
            if (s->flags & COIL__SOCK_PARKED)
                coil__sock_park_fire(s, false);
        }
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
            s->flags |= COIL__SOCK_WR_READY;
            wake_slot(&s->wr);
        }
    }
    return 0;
}

static int ep_fd(struct coil__loop *l)
{
    return ES(l)->epfd;
}

static void ep_flush(struct coil__loop *l)
{
    (void)l; /* nothing is queued: every call went to the kernel at once */
}

static int ep_sock_open(coil_sock *s)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.ptr = s,
    };
    if (epoll_ctl(ES(s->loop)->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0)
        return -errno;
    /* A fresh socket may already be readable or writable: assume both until a
     * system call says EAGAIN. */
    s->flags |= COIL__SOCK_REGISTERED | COIL__SOCK_RD_READY | COIL__SOCK_WR_READY;
    return 0;
}

static void ready_abort(coil__wait *w)
{
    coil__waiter **slot = w->ctx;
    *slot = NULL;
    coil__wake(w);
}

/* Waits for the next edge in one direction, unless one came since the last
 * EAGAIN. */
static int wait_ready(coil_sock *s, bool write, int64_t deadline)
{
    uint32_t bit = write ? COIL__SOCK_WR_READY : COIL__SOCK_RD_READY;
    if (s->flags & bit)
        return 0;
    coil__waiter **slot = write ? &s->wr : &s->rd;
    if (*slot)
        return -EBUSY;
    coil__wait w = { .abort = ready_abort, .ctx = slot };
    coil__waiter n = { .w = &w };
    *slot = &n;
    return coil__block(s->loop, &w, deadline);
}

/* Runs a non-blocking system call until it does not say EAGAIN. */
#define RETRY_ON_EAGAIN(s, write, deadline, call)                                                  \
    for (;;) {                                                                                     \
        int pending_ = coil__pending((s)->loop->current);                                          \
        if (pending_)                                                                              \
            return pending_;                                                                       \
        ssize_t r_ = (call);                                                                       \
        if (r_ >= 0)                                                                               \
            return r_;                                                                             \
        if (errno == EINTR)                                                                        \
            continue;                                                                              \
        if (errno != EAGAIN && errno != EWOULDBLOCK)                                               \
            return -errno;                                                                         \
        (s)->flags &= ~((write) ? COIL__SOCK_WR_READY : COIL__SOCK_RD_READY);                      \
        int werr_ = wait_ready((s), (write), (deadline));                                          \
        if (werr_)                                                                                 \
            return werr_;                                                                          \
    }

static int ep_accept(coil_sock *lsn, struct sockaddr_storage *peer, int64_t deadline)
{
    socklen_t len = sizeof(*peer);
    RETRY_ON_EAGAIN(lsn, false, deadline,
                    accept4(lsn->fd, (struct sockaddr *)peer, peer ? &len : NULL,
                            SOCK_NONBLOCK | SOCK_CLOEXEC));
}

static int ep_connect(coil_sock *s, const struct sockaddr *addr, socklen_t len, int64_t deadline)
{
    if (connect(s->fd, addr, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    s->flags &= ~COIL__SOCK_WR_READY;
    int err = wait_ready(s, true, deadline);
    if (err)
        return err;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return -errno;
    return -soerr;
}

/* A receive that got fewer bytes than it asked for emptied the socket's
 * queue: whatever arrives later raises a new edge, so the readable flag can
 * go now, and the next receive waits for that edge instead of spending a
 * system call on EAGAIN (and a park needs no peek). Not once the peer's end
 * of stream or an error has been reported: no further edge would announce
 * it again. */
static void note_drained(coil_sock *s, ssize_t got, size_t asked)
{
    if (got > 0 && (size_t)got < asked && !(s->flags & COIL__SOCK_RD_HUP))
        s->flags &= ~COIL__SOCK_RD_READY;
}

/* Whether a buffer receive left bytes in the socket (coil_sock_rx_more),
 * as io_uring's IORING_CQE_F_SOCK_NONEMPTY says: a relay then sends the
 * pieces in hand together. Only a receive that filled its buffer can have
 * left any, and only those ask the kernel (SIOCINQ), so small exchanges
 * pay nothing for it. */
static void note_left(coil_sock *s, ssize_t got, size_t asked)
{
    int queued = 0;
    if (got > 0 && (size_t)got == asked && ioctl(s->fd, SIOCINQ, &queued) == 0 && queued > 0)
        s->flags |= COIL__SOCK_RX_NONEMPTY;
    else
        s->flags &= ~COIL__SOCK_RX_NONEMPTY;
}

bool coil__sock_rd_drained(const coil_sock *s)
{
    return (s->flags & COIL__SOCK_REGISTERED) &&
           !(s->flags & (COIL__SOCK_RD_READY | COIL__SOCK_RD_HUP));
}

static ssize_t recv_retrying(coil_sock *s, void *buf, size_t len, int64_t deadline)
{
    RETRY_ON_EAGAIN(s, false, deadline, recv(s->fd, buf, len, 0));
}

static ssize_t ep_recv(coil_sock *s, void *buf, size_t len, int64_t deadline)
{
    ssize_t r = recv_retrying(s, buf, len, deadline);
    note_drained(s, r, len);
    return r;
}

static ssize_t ep_recv_buf(coil_sock *s, coil_buf *out, int64_t deadline)
{
    struct coil__loop *l = s->loop;
    uint32_t id;
    /* Wait for readability before taking a buffer, so a waiting socket holds
     * none. */
    for (;;) {
        int pending = coil__pending(l->current);
        if (pending)
            return pending;
        int err = wait_ready(s, false, deadline);
        if (err)
            return err;
        err = coil__bufpool_take_any(&l->bufs, &id);
        if (err < 0)
            return err;
        ssize_t r = recv(s->fd, coil__buf_addr(&l->bufs, id), l->bufs.size, 0);
        if (r > 0) {
            note_drained(s, r, l->bufs.size);
            note_left(s, r, l->bufs.size);
            coil__buf_view(l, out, id, (size_t)r);
            return r;
        }
        int e = errno;
        coil__buf_give_back(l, id);
        if (r == 0)
            return 0;
        if (e == EINTR)
            continue;
        if (e != EAGAIN && e != EWOULDBLOCK)
            return -e;
        s->flags &= ~COIL__SOCK_RD_READY;
    }
}

static int ep_rx_stop(coil_sock *s)
{
    (void)s;
    return 0;
}

static ssize_t ep_sendmsg(coil_sock *s, struct iovec *iov, int iovcnt, int64_t deadline)
{
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
    int fl = MSG_NOSIGNAL | ((s->flags & COIL__SOCK_TX_MORE) ? MSG_MORE : 0);
    RETRY_ON_EAGAIN(s, true, deadline, sendmsg(s->fd, &mh, fl));
}

static ssize_t ep_splice(coil_sock *s, int pipe_fd, size_t len, bool sock_to_pipe,
                         int64_t deadline)
{
    unsigned fl = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
    if (sock_to_pipe)
        RETRY_ON_EAGAIN(s, false, deadline, splice(s->fd, NULL, pipe_fd, NULL, len, fl));
    RETRY_ON_EAGAIN(s, true, deadline, splice(pipe_fd, NULL, s->fd, NULL, len, fl));
}

static int ep_park(coil_sock *s)
{
    /* An edge that came while the task was busy is not repeated. The flag
     * may be stale (set when the task stopped reading before EAGAIN), so ask
     * the socket rather than spend a task stack on an idle connection. */
    if (s->flags & COIL__SOCK_RD_READY) {
        char c;
        ssize_t r = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            s->flags &= ~COIL__SOCK_RD_READY;
        else
            coil__sock_park_fire(s, false);
    }
    return 0;
}

static void ep_unpark(coil_sock *s)
{
    (void)s;
}

static int ep_quiesce(coil_sock *s)
{
    /* Nothing is in flight in the kernel; tasks waiting for readiness are
     * told the socket is going away. */
    if (s->rd) {
        coil__wait *w = s->rd->w;
        s->rd = NULL;
        w->reason = -ECANCELED;
        coil__wake(w);
    }
    if (s->wr) {
        coil__wait *w = s->wr->w;
        s->wr = NULL;
        w->reason = -ECANCELED;
        coil__wake(w);
    }
    if (s->flags & COIL__SOCK_REGISTERED) {
        epoll_ctl(ES(s->loop)->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        s->flags &= ~COIL__SOCK_REGISTERED;
    }
    return 0;
}

static void ep_buf_recycle(struct coil__loop *l, uint32_t id)
{
    (void)l;
    (void)id;
}

static void ep_doorbell(struct coil__loop *target, struct coil__loop *sender)
{
    (void)sender;
    coil__eventfd_ring(target);
}

const coil__backend coil__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .exit = ep_exit,
    .poll = ep_poll,
    .fd = ep_fd,
    .flush = ep_flush,
    .sock_open = ep_sock_open,
    .accept = ep_accept,
    .connect = ep_connect,
    .recv = ep_recv,
    .recv_buf = ep_recv_buf,
    .rx_stop = ep_rx_stop,
    .sendmsg = ep_sendmsg,
    .splice = ep_splice,
    .park = ep_park,
    .unpark = ep_unpark,
    .quiesce = ep_quiesce,
    .buf_recycle = ep_buf_recycle,
    .doorbell = ep_doorbell,
};
