/*
 * The backend-independent half of sockets: creating and adopting them,
 * completing short sends, splice through pooled pipes, parking, closing.
 * Each wait goes through the backend's one-attempt operations.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "loop_impl.h"

/* The loop of the running task if it owns s, else NULL. */
static struct coil__loop *task_loop(const coil_sock *s)
{
    struct coil__loop *l = coil__tls_loop;
    if (!l || !l->current || (s && s->loop != l))
        return NULL;
    return l;
}

#define NEED_TASK(s)                                                                               \
    do {                                                                                           \
        if (!task_loop(s))                                                                         \
            return -EPERM;                                                                         \
        if (!((s)->flags & COIL__SOCK_OPEN) || ((s)->flags & COIL__SOCK_CLOSING))                  \
            return -EBADF;                                                                         \
    } while (0)

int coil_sock_open(coil_loop *loop, coil_sock *s, int fd)
{
    if (fd < 0)
        return -EBADF;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    struct coil__loop *l = loop->impl;
    *s = (coil_sock){ .fd = fd, .loop = l, .flags = COIL__SOCK_OPEN };
    coil_timer_init(loop, &s->park_timer, NULL);
    int err = l->be->sock_open(s);
    if (err < 0) {
        s->fd = -1;
        s->flags = 0;
        return err;
    }
    l->socks_open++;
    return 0;
}

int coil_tcp_listen(coil_loop *loop, coil_sock *s, const struct sockaddr *addr, socklen_t len,
                    int backlog, unsigned flags)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    int err = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        ((flags & COIL_LISTEN_REUSEPORT) &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, addr, len) < 0 || listen(fd, backlog) < 0)
        err = -errno;
    if (!err)
        err = coil_sock_open(loop, s, fd);
    if (err < 0) {
        close(fd);
        return err;
    }
    s->flags |= COIL__SOCK_LISTENER;
    return 0;
}

int coil_tcp_listen_host(coil_loop *loop, coil_sock *s, const char *host, uint16_t port,
                         int backlog, unsigned flags)
{
    struct sockaddr_storage ss = { 0 };
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (!host || inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        return coil_tcp_listen(loop, s, (struct sockaddr *)in4, sizeof(*in4), backlog, flags);
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return coil_tcp_listen(loop, s, (struct sockaddr *)in6, sizeof(*in6), backlog, flags);
    }
    return -EINVAL;
}

int coil_sock_port(const coil_sock *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(s->fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

int coil_accept(coil_sock *lsn, coil_sock *conn, struct sockaddr_storage *peer, int64_t deadline)
{
    NEED_TASK(lsn);
    int fd = lsn->loop->be->accept(lsn, peer, deadline);
    if (fd < 0)
        return fd;
    int err = coil_sock_open(lsn->loop->pub, conn, fd);
    if (err < 0)
        close(fd);
    return err;
}

int coil_tcp_connect(coil_loop *loop, coil_sock *s, const struct sockaddr *addr, socklen_t len,
                     int64_t deadline)
{
    struct coil__loop *l = task_loop(NULL);
    if (!l || l != loop->impl)
        return -EPERM;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int err = coil_sock_open(loop, s, fd);
    if (err < 0) {
        close(fd);
        return err;
    }
    err = l->be->connect(s, addr, len, deadline);
    if (err < 0) {
        coil_close(s);
        return err;
    }
    return 0;
}

/* A park deadline or a parked socket's first data ends with a pending
 * -ETIMEDOUT the task's first receive reports. */
static int take_park_timeout(coil_sock *s)
{
    if (!(s->flags & COIL__SOCK_PARK_TIMEOUT))
        return 0;
    s->flags &= ~COIL__SOCK_PARK_TIMEOUT;
    return -ETIMEDOUT;
}

ssize_t coil_recv(coil_sock *s, void *buf, size_t len, int64_t deadline)
{
    NEED_TASK(s);
    int err = take_park_timeout(s);
    if (err)
        return err;
    return s->loop->be->recv(s, buf, len, deadline);
}

ssize_t coil_recv_buf(coil_sock *s, coil_buf *out, int64_t deadline)
{
    *out = (coil_buf){ 0 };
    NEED_TASK(s);
    int err = take_park_timeout(s);
    if (err)
        return err;
    return s->loop->be->recv_buf(s, out, deadline);
}

bool coil_sock_rx_pending(const coil_sock *s)
{
    return coil__sock_rx_has(s);
}

bool coil_sock_rx_watched(const coil_sock *s)
{
    return coil__sock_rx_watched(s);
}

bool coil_sock_rx_quiet(const coil_sock *s)
{
    if (coil__sock_rx_has(s))
        return false;
    return coil__sock_rx_watched(s) || coil__sock_rd_drained(s);
}

bool coil_sock_rx_more(const coil_sock *s)
{
    return coil__sock_rx_has(s) || (s->flags & COIL__SOCK_RX_NONEMPTY);
}

void coil_sock_rx_single(coil_sock *s, bool single)
{
    if (single)
        s->flags |= COIL__SOCK_RX_SINGLE;
    else
        s->flags &= ~COIL__SOCK_RX_SINGLE;
}

int coil_sock_rx_stop(coil_sock *s)
{
    NEED_TASK(s);
    return s->loop->be->rx_stop(s);
}

static ssize_t send_iov(coil_sock *s, struct iovec *iov, int iovcnt, int64_t deadline)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t sent = 0;
    while (iovcnt > 0 && iov->iov_len == 0) {
        iov++;
        iovcnt--;
    }
    while (sent < total) {
        ssize_t n = s->loop->be->sendmsg(s, iov, iovcnt, deadline);
        if (n < 0)
            return n;
        if (n == 0)
            return -EPIPE;
        sent += (size_t)n;
        if (sent < total)
            s->loop->sends_continued++;
        /* A short send is normal (socket buffer full): skip what went out and
         * continue from the first unsent byte. */
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return (ssize_t)total;
}

ssize_t coil_sendv_more(coil_sock *s, struct iovec *iov, int iovcnt, bool more, int64_t deadline)
{
    NEED_TASK(s);
    /* The backends read the hint from the socket's flags. It is set for this
     * call's sends only, so that no caller can leave a socket holding its
     * bytes back (one sender at a time: nobody else sends meanwhile). */
    if (more)
        s->flags |= COIL__SOCK_TX_MORE;
    ssize_t n = send_iov(s, iov, iovcnt, deadline);
    s->flags &= ~COIL__SOCK_TX_MORE;
    return n;
}

ssize_t coil_sendv(coil_sock *s, struct iovec *iov, int iovcnt, int64_t deadline)
{
    return coil_sendv_more(s, iov, iovcnt, false, deadline);
}

ssize_t coil_send(coil_sock *s, const void *buf, size_t len, int64_t deadline)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return coil_sendv(s, &iov, 1, deadline);
}

ssize_t coil_send_buf(coil_sock *s, coil_buf *b, int64_t deadline)
{
    struct iovec iov = { .iov_base = b->data, .iov_len = b->len };
    ssize_t n = coil_sendv(s, &iov, 1, deadline);
    coil_buf_release(b);
    return n;
}

ssize_t coil_splice(coil_sock *from, coil_sock *to, size_t max, int64_t deadline)
{
    NEED_TASK(from);
    NEED_TASK(to);
    struct coil__loop *l = from->loop;
    /* A multishot receive would race the splice for the same bytes. */
    int err = l->be->rx_stop(from);
    if (err)
        return err;
    if (coil__sock_rx_has(from)) {
        /* Bytes a multishot already received into buffers go first, from the
         * buffers themselves. */
        coil_buf b;
        ssize_t n = coil_recv_buf(from, &b, deadline);
        if (n <= 0)
            return n;
        if ((size_t)n > max) {
            coil_buf_release(&b);
            return -EINVAL; /* cannot happen: max >= one buffer is required */
        }
        return coil_send_buf(to, &b, deadline);
    }
    err = take_park_timeout(from);
    if (err)
        return err;
    coil__pipe p;
    err = coil__pipe_get(l, &p);
    if (err < 0)
        return err;
    ssize_t in = l->be->splice(from, p.wr, max, true, deadline);
    if (in <= 0) {
        coil__pipe_put(l, p, true);
        return in;
    }
    size_t out = 0;
    while (out < (size_t)in) {
        ssize_t n = l->be->splice(to, p.rd, (size_t)in - out, false, deadline);
        if (n <= 0) {
            coil__pipe_put(l, p, false);
            return n < 0 ? n : -EPIPE;
        }
        out += (size_t)n;
    }
    coil__pipe_put(l, p, true);
    return in;
}

int coil_shutdown(coil_sock *s, int how)
{
    if (!(s->flags & COIL__SOCK_OPEN))
        return -EBADF;
    return shutdown(s->fd, how) < 0 ? -errno : 0;
}

static void park_retry(coil_timer *t);

static void park_deadline(coil_timer *t)
{
    coil__sock_park_fire(t->data, true);
}

/* Called by a backend when a parked socket became readable (or failed), and
 * by the park deadline: hands the socket to a new task. */
void coil__sock_park_fire(coil_sock *s, bool timed_out)
{
    if (!(s->flags & COIL__SOCK_PARKED))
        return;
    struct coil__loop *l = s->loop;
    coil_timer_stop(&s->park_timer);
    if (timed_out) {
        l->be->unpark(s);
        s->flags |= COIL__SOCK_PARK_TIMEOUT;
    }
    s->flags &= ~COIL__SOCK_PARKED;
    l->socks_parked--;
    if (coil_spawn(l->pub, s->park_fn, s->park_arg, NULL) < 0) {
        /* No memory for a task right now: stay parked (the data waits in the
         * socket or its queue) and try again shortly. */
        s->flags |= COIL__SOCK_PARKED;
        l->socks_parked++;
        s->park_timer.cb = park_retry;
        s->park_timer.data = s;
        coil_timer_start(&s->park_timer, l->now + 10 * 1000 * 1000);
    }
}

static void park_retry(coil_timer *t)
{
    coil_sock *s = t->data;
    s->flags &= ~COIL__SOCK_PARKED;
    s->loop->socks_parked--;
    if (coil_spawn(s->loop->pub, s->park_fn, s->park_arg, NULL) < 0) {
        s->flags |= COIL__SOCK_PARKED;
        s->loop->socks_parked++;
        coil_timer_start(t, s->loop->now + 10 * 1000 * 1000);
    }
}

int coil_park(coil_sock *s, coil_task_fn fn, void *arg, int64_t deadline)
{
    if (!(s->flags & COIL__SOCK_OPEN) || (s->flags & COIL__SOCK_CLOSING))
        return -EBADF;
    if (!fn || (s->flags & (COIL__SOCK_PARKED | COIL__SOCK_LISTENER)) || s->rd || s->wr)
        return -EINVAL;
    struct coil__loop *l = s->loop;
    s->park_fn = fn;
    s->park_arg = arg;
    s->flags |= COIL__SOCK_PARKED;
    l->socks_parked++;
    if (deadline != COIL_NO_DEADLINE) {
        s->park_timer.cb = park_deadline;
        s->park_timer.data = s;
        if (coil_timer_start(&s->park_timer, deadline) < 0) {
            s->flags &= ~COIL__SOCK_PARKED;
            l->socks_parked--;
            return -ENOMEM;
        }
    }
    int err = l->be->park(s);
    if (err < 0) {
        coil_timer_stop(&s->park_timer);
        if (s->flags & COIL__SOCK_PARKED) {
            s->flags &= ~COIL__SOCK_PARKED;
            l->socks_parked--;
        }
    }
    return err;
}

int coil_unpark(coil_sock *s)
{
    if (!(s->flags & COIL__SOCK_PARKED))
        return -EALREADY;
    coil_timer_stop(&s->park_timer);
    s->loop->be->unpark(s);
    s->flags &= ~COIL__SOCK_PARKED;
    s->loop->socks_parked--;
    return 0;
}

int coil_close(coil_sock *s)
{
    if (!(s->flags & COIL__SOCK_OPEN) || (s->flags & COIL__SOCK_CLOSING))
        return -EBADF;
    struct coil__loop *l = s->loop;
    coil_unpark(s);
    coil_timer_stop(&s->park_timer);
    s->flags |= COIL__SOCK_CLOSING;
    int err = l->be->quiesce(s);
    if (err < 0) {
        s->flags &= ~COIL__SOCK_CLOSING;
        return err;
    }
    close(s->fd);
    s->fd = -1;
    s->flags = 0;
    l->socks_open--;
    return 0;
}
