/*
 * bench_relay_uring: the io_uring floor for the proxy benchmark.
 *
 *   bench_relay_uring [--port N] [--host ADDR] --upstream HOST:PORT
 *
 * The proxy case's twin of bench_responder_uring: one thread, one ring, no
 * HTTP parsing. Every accepted connection gets its own connection to the
 * upstream, and whatever arrives on one socket of the pair is sent on the
 * other, byte for byte. It uses what a careful io_uring proxy would: a
 * multishot accept, a multishot receive per socket into a provided-buffer
 * ring, each received buffer sent on to the peer straight from that ring (no
 * copy), sends queued as SQEs and submitted together with the wait in one
 * io_uring_enter, and DEFER_TASKRUN + SINGLE_ISSUER when the kernel has them.
 * Nothing else: no timers, no pools, no per-request state.
 *
 * A proxied request costs any io_uring proxy at least two receives and two
 * sends in the kernel (client to upstream, upstream to client) and the
 * wake-ups between them; that is all this pays. The distance from
 * coil-proxy on io_uring to it is what coil's runtime, HTTP parsing and
 * proxy logic cost on top of the kernel.
 *
 * Prints "listening on HOST:PORT (io_uring relay)" on stderr once ready.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "floor_uring.h"

#define MAX_FD 65536
#define NO_BUF 0xffff
/* Buffers queued towards one socket before its source stops receiving, and
 * the level at which the source starts again. Without a bound, a duplex
 * stream (an upload echoed back) deadlocks: one direction fills the whole
 * buffer ring with data its peer cannot take until the other direction is
 * read, and the other direction then has no buffer to be read into. At 4,
 * FLOOR_NBUFS / (2 * 4) = 64 pairs, wrk's connections in bench.py, can all be
 * full at once before the ring runs dry. */
#define QUEUE_MAX 4
#define QUEUE_RESUME 2

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3, OP_CANCEL = 4 };

/* user_data: op in bits 32..39, buffer id in bits 40..55, fd in the low 32. */
#define TAG(op, bid, fd) (((uint64_t)(bid) << 40) | ((uint64_t)(op) << 32) | (uint32_t)(fd))


static int peer[MAX_FD];
/* A socket is closed only once nothing of it is left in the ring (its
 * receive has ended and no send to it is in flight): its number is free for
 * the next accept as soon as it is closed, and a late completion would then
 * land on a stranger. */
static unsigned char recv_live[MAX_FD];
static unsigned char closing[MAX_FD];
/* The receive was cancelled (or is being) because the peer's queue is full:
 * it is armed again when that queue drains, not when it ends. */
static unsigned char paused[MAX_FD];
/* The socket's peer has closed its sending side (a receive returned 0). What
 * came before is still passed on, and only then is the other socket told,
 * with a half close: an upstream that answers and closes (Connection: close)
 * must not lose the answer's tail still queued towards the client. */
static unsigned char eof[MAX_FD];
/* Buffers waiting to be sent to each fd, oldest first, linked through
 * buf_next. Only the head is in the ring: two sends in flight on one stream
 * socket are not ordered against each other, and after a short send the
 * remainder would go out behind the next buffer. In a request/response
 * exchange the queue is one buffer long, so this costs nothing there. */
static uint16_t q_head[MAX_FD], q_tail[MAX_FD], q_len[MAX_FD];
static uint16_t buf_next[FLOOR_NBUFS];
static uint16_t buf_off[FLOOR_NBUFS], buf_len[FLOOR_NBUFS];

static void arm_recv(int fd)
{
    floor_arm_recv(fd, TAG(OP_RECV, 0, fd));
    recv_live[fd] = 1;
}

static void send_buf(int fd, unsigned bid)
{
    struct io_uring_sqe *sqe = floor_sqe();
    io_uring_prep_send(sqe, fd, floor_buf(bid) + buf_off[bid],
                       (size_t)(buf_len[bid] - buf_off[bid]), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, TAG(OP_SEND, bid, fd));
}

static void pause_recv(int fd)
{
    struct io_uring_sqe *sqe = floor_sqe();
    io_uring_prep_cancel64(sqe, TAG(OP_RECV, 0, fd), 0);
    io_uring_sqe_set_data64(sqe, TAG(OP_CANCEL, 0, fd));
    paused[fd] = 1;
}

static void maybe_close(int fd)
{
    if (recv_live[fd] || q_head[fd] != NO_BUF)
        return;
    closing[fd] = paused[fd] = eof[fd] = 0;
    peer[fd] = -1;
    close(fd);
}

/* Both sockets at once: shutdown ends the multishot receives (they complete
 * with 0 and without F_MORE) and fails the sends still waiting for room, so
 * every operation of the pair comes back and each socket can be closed on
 * its own last completion. Marking both closing here, before either can be
 * closed, is what keeps a reused fd number from ever being taken for the
 * peer. */
static void pair_down(int fd)
{
    if (closing[fd])
        return;
    int p = peer[fd];
    closing[fd] = closing[p] = 1;
    shutdown(fd, SHUT_RDWR);
    shutdown(p, SHUT_RDWR);
    /* The peer's receive may have ended already (paused), and then no
     * completion of it is left to close it. fd is closed by the caller,
     * which still uses it. */
    maybe_close(p);
}

/* fd's source has ended: once the data queued towards fd has gone, fd is
 * told by a half close, and once both directions have ended so, the pair is
 * closed. */
static void pass_eof(int fd)
{
    int p = peer[fd];
    if (q_head[fd] != NO_BUF)
        return;
    shutdown(fd, SHUT_WR);
    if (eof[fd] && !recv_live[fd] && q_head[p] == NO_BUF) {
        closing[fd] = closing[p] = 1;
        maybe_close(fd);
        maybe_close(p);
    }
}

static void on_recv(int fd, int res, unsigned flags)
{
    int more = (flags & IORING_CQE_F_MORE) != 0;
    if (res > 0) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        if (closing[fd]) {
            floor_buf_put(bid);
        } else {
            int p = peer[fd];
            buf_off[bid] = 0;
            buf_len[bid] = (uint16_t)res;
            buf_next[bid] = NO_BUF;
            if (q_head[p] == NO_BUF) {
                q_head[p] = q_tail[p] = (uint16_t)bid;
                send_buf(p, bid);
            } else {
                buf_next[q_tail[p]] = (uint16_t)bid;
                q_tail[p] = (uint16_t)bid;
            }
            /* A receive that ends here anyway needs no cancel, only not to
             * be armed again. */
            if (++q_len[p] >= QUEUE_MAX && !paused[fd]) {
                if (more)
                    pause_recv(fd);
                else
                    paused[fd] = 1;
            }
        }
    } else if (res == 0) {
        eof[fd] = 1;
    } else if (res != -ENOBUFS && res != -ECANCELED) {
        pair_down(fd);
    }
    if (more)
        return;
    if (!closing[fd] && !paused[fd] && !eof[fd]) {
        arm_recv(fd);
        return;
    }
    recv_live[fd] = 0;
    if (closing[fd])
        maybe_close(fd);
    else if (eof[fd])
        pass_eof(peer[fd]);
}

static void on_send(int fd, unsigned bid, int res)
{
    if (!closing[fd]) {
        if (res > 0 && buf_off[bid] + res < buf_len[bid]) {
            buf_off[bid] = (uint16_t)(buf_off[bid] + res);
            send_buf(fd, bid);
            return;
        }
        if (res <= 0)
            pair_down(fd);
    }
    /* The buffer goes back only now: the kernel read from it until this
     * completion. */
    q_head[fd] = buf_next[bid];
    q_len[fd]--;
    floor_buf_put(bid);
    if (closing[fd]) {
        while (q_head[fd] != NO_BUF) {
            unsigned b = q_head[fd];
            q_head[fd] = buf_next[b];
            floor_buf_put(b);
        }
        q_len[fd] = 0;
        maybe_close(fd);
        return;
    }
    int src = peer[fd];
    if (q_head[fd] != NO_BUF)
        send_buf(fd, q_head[fd]);
    else if (eof[src] && !recv_live[src])
        pass_eof(fd);
    if (paused[src] && !eof[src] && q_len[fd] <= QUEUE_RESUME) {
        /* If the cancelled receive has not come back yet, its last
         * completion arms it again (paused is clear by then). */
        paused[src] = 0;
        if (!recv_live[src])
            arm_recv(src);
    }
}

/* A blocking connect is fine for a benchmark floor: wrk opens its
 * connections once and keeps them, so this is outside the measured window. */
static void on_accept(int cfd, const struct sockaddr_in *up)
{
    int one = 1;
    int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ufd < 0 || ufd >= MAX_FD || connect(ufd, (const struct sockaddr *)up, sizeof(*up)) < 0) {
        if (ufd >= 0)
            close(ufd);
        close(cfd);
        return;
    }
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    peer[cfd] = ufd;
    peer[ufd] = cfd;
    arm_recv(cfd);
    arm_recv(ufd);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--port N] [--host ADDR] --upstream HOST:PORT\n", argv0);
}

static int lfd;
static struct sockaddr_in up;

static void on_cqe(uint64_t tag, int res, unsigned flags)
{
    int fd = (int)(uint32_t)tag;
    switch ((tag >> 32) & 0xff) {
    case OP_ACCEPT:
        if (res >= 0 && res < MAX_FD)
            on_accept(res, &up);
        else if (res >= 0)
            close(res);
        if (!(flags & IORING_CQE_F_MORE))
            floor_arm_accept(lfd, TAG(OP_ACCEPT, 0, 0));
        break;
    case OP_RECV:
        on_recv(fd, res, flags);
        break;
    case OP_SEND:
        on_send(fd, (unsigned)(tag >> 40) & 0xffff, res);
        break;
    default: /* OP_CANCEL: what it stopped reports on its own */
        break;
    }
}

int main(int argc, char **argv)
{
    int port = 8080;
    const char *host = "127.0.0.1";
    const char *upstream = NULL;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) {
            usage(argv[0]);
            return 2;
        }
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else if (!strcmp(argv[i], "--upstream"))
            upstream = argv[i + 1];
        else {
            usage(argv[0]);
            return 2;
        }
    }
    up.sin_family = AF_INET;
    char uphost[64];
    const char *colon = upstream ? strrchr(upstream, ':') : NULL;
    if (!colon || (size_t)(colon - upstream) >= sizeof(uphost) || atoi(colon + 1) <= 0 ||
        atoi(colon + 1) > 65535) {
        usage(argv[0]);
        return 2;
    }
    memcpy(uphost, upstream, (size_t)(colon - upstream));
    uphost[colon - upstream] = '\0';
    up.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, uphost, &up.sin_addr) != 1) {
        usage(argv[0]);
        return 2;
    }
    for (int i = 0; i < MAX_FD; i++) {
        peer[i] = -1;
        q_head[i] = q_tail[i] = NO_BUF;
    }

    if (floor_uring_init() < 0)
        return 1;
    lfd = floor_listen(host, port);
    if (lfd < 0)
        return 1;
    floor_arm_accept(lfd, TAG(OP_ACCEPT, 0, 0));
    fprintf(stderr, "listening on %s:%d (io_uring relay)\n", host, port);

    floor_run(on_cqe);
    floor_uring_exit(lfd);
    return 0;
}
