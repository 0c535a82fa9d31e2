/*
 * bench_responder_uring: the io_uring floor for the HTTP benchmarks.
 *
 *   bench_responder_uring [--port N] [--host ADDR]
 *
 * The io_uring twin of bench_responder: one thread, one ring, no HTTP
 * parsing. Every "\r\n\r\n" seen counts as one request and is answered with a
 * fixed response. It uses what a careful io_uring server would: a multishot
 * accept, a multishot receive per connection into a provided-buffer ring,
 * sends queued as SQEs and submitted together with the wait in one
 * io_uring_enter, and DEFER_TASKRUN + SINGLE_ISSUER when the kernel has them.
 * Nothing else: no timers, no tasks, no per-request state beyond a counter.
 * The distance from coil's io_uring backend to this is what coil's runtime
 * and HTTP layer cost on top of the kernel.
 *
 * Prints "listening on HOST:PORT (io_uring)" on stderr once ready.
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
#define BATCH_ANSWERS 64

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

static const char hello[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";
#define HELLO_LEN (sizeof(hello) - 1)

static unsigned char matched[MAX_FD]; /* bytes of "\r\n\r\n" matched so far */
static char answers[HELLO_LEN * BATCH_ANSWERS];

static void arm_recv(int fd)
{
    floor_arm_recv(fd, ((uint64_t)OP_RECV << 32) | (uint32_t)fd);
}

static void send_answers(int fd, uint64_t n)
{
    while (n > 0) {
        uint64_t k = n < BATCH_ANSWERS ? n : BATCH_ANSWERS;
        struct io_uring_sqe *sqe = floor_sqe();
        io_uring_prep_send(sqe, fd, answers, k * HELLO_LEN, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ((uint64_t)OP_SEND << 32) | (uint32_t)fd);
        n -= k;
    }
}

static uint64_t count_requests(int fd, const char *p, size_t len)
{
    static const char term[] = "\r\n\r\n";
    uint64_t n = 0;
    unsigned m = matched[fd];
    for (size_t i = 0; i < len; i++) {
        if (p[i] == term[m]) {
            if (++m == 4) {
                n++;
                m = 0;
            }
        } else {
            m = p[i] == '\r' ? 1 : 0;
        }
    }
    matched[fd] = (unsigned char)m;
    return n;
}

static void on_recv(int fd, int res, unsigned flags)
{
    if (res <= 0) {
        if (res == -ENOBUFS) {
            arm_recv(fd);
            return;
        }
        if (!(flags & IORING_CQE_F_MORE))
            close(fd);
        return;
    }
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    send_answers(fd, count_requests(fd, floor_buf(bid), (size_t)res));
    floor_buf_put(bid);
    if (!(flags & IORING_CQE_F_MORE))
        arm_recv(fd);
}

static int lfd;

static void on_cqe(uint64_t tag, int res, unsigned flags)
{
    int fd = (int)(uint32_t)tag;
    switch (tag >> 32) {
    case OP_ACCEPT:
        if (res >= 0 && res < MAX_FD) {
            int one = 1;
            setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            matched[res] = 0;
            arm_recv(res);
        } else if (res >= 0) {
            close(res);
        }
        if (!(flags & IORING_CQE_F_MORE))
            floor_arm_accept(lfd, (uint64_t)OP_ACCEPT << 32);
        break;
    case OP_RECV:
        on_recv(fd, res, flags);
        break;
    default: /* OP_SEND: a short or failed send ends with the recv's close */
        break;
    }
}

int main(int argc, char **argv)
{
    int port = 8080;
    const char *host = "127.0.0.1";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else {
            fprintf(stderr, "usage: %s [--port N] [--host ADDR]\n", argv[0]);
            return 2;
        }
    }
    for (size_t i = 0; i < BATCH_ANSWERS; i++)
        memcpy(answers + i * HELLO_LEN, hello, HELLO_LEN);

    if (floor_uring_init() < 0)
        return 1;
    lfd = floor_listen(host, port);
    if (lfd < 0)
        return 1;
    floor_arm_accept(lfd, (uint64_t)OP_ACCEPT << 32);
    fprintf(stderr, "listening on %s:%d (io_uring)\n", host, port);

    floor_run(on_cqe);
    floor_uring_exit(lfd);
    return 0;
}
