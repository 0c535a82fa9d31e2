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
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 1024
#define NBUFS 512
#define BUF_SIZE 4096
#define BGID 0
#define MAX_FD 65536
#define BATCH_ANSWERS 64

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

static const char hello[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";
#define HELLO_LEN (sizeof(hello) - 1)

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static unsigned char matched[MAX_FD]; /* bytes of "\r\n\r\n" matched so far */
static char answers[HELLO_LEN * BATCH_ANSWERS];
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ((uint64_t)OP_RECV << 32) | (uint32_t)fd);
}

static void send_answers(int fd, uint64_t n)
{
    while (n > 0) {
        uint64_t k = n < BATCH_ANSWERS ? n : BATCH_ANSWERS;
        struct io_uring_sqe *sqe = sqe_get();
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
    char *buf = bufs + (size_t)bid * BUF_SIZE;
    send_answers(fd, count_requests(fd, buf, (size_t)res));
    io_uring_buf_ring_add(br, buf, BUF_SIZE, (unsigned short)bid, io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(br, 1);
    if (!(flags & IORING_CQE_F_MORE))
        arm_recv(fd);
}

static void arm_accept(int lfd)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)OP_ACCEPT << 32);
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
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    for (size_t i = 0; i < BATCH_ANSWERS; i++)
        memcpy(answers + i * HELLO_LEN, hello, HELLO_LEN);

    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = RING_ENTRIES * 4;
    int err = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
    if (err < 0) {
        memset(&p, 0, sizeof(p));
        err = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
    }
    if (err < 0) {
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-err));
        return 1;
    }
    br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bufs = malloc((size_t)NBUFS * BUF_SIZE);
    if (br == MAP_FAILED || !bufs) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = NBUFS,
                                    .bgid = BGID };
    err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0) {
        fprintf(stderr, "buffer ring: %s\n", strerror(-err));
        return 1;
    }
    for (unsigned i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(NBUFS), (int)i);
    io_uring_buf_ring_advance(br, NBUFS);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(lfd, 4096) < 0) {
        fprintf(stderr, "listen %s:%d: %s\n", host, port, strerror(errno));
        return 1;
    }
    arm_accept(lfd);
    fprintf(stderr, "listening on %s:%d (io_uring)\n", host, port);

    while (!stop) {
        int ret = io_uring_submit_and_wait(&ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -ETIME)
            break;
        struct io_uring_cqe *cqes[128];
        unsigned n;
        while ((n = io_uring_peek_batch_cqe(&ring, cqes, 128)) > 0) {
            for (unsigned i = 0; i < n; i++) {
                uint64_t tag = io_uring_cqe_get_data64(cqes[i]);
                int fd = (int)(uint32_t)tag;
                int res = cqes[i]->res;
                unsigned flags = cqes[i]->flags;
                switch (tag >> 32) {
                case OP_ACCEPT:
                    if (res >= 0 && res < MAX_FD) {
                        setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                        matched[res] = 0;
                        arm_recv(res);
                    } else if (res >= 0) {
                        close(res);
                    }
                    if (!(flags & IORING_CQE_F_MORE))
                        arm_accept(lfd);
                    break;
                case OP_RECV:
                    on_recv(fd, res, flags);
                    break;
                default: /* OP_SEND: a short or failed send ends with the recv's close */
                    break;
                }
            }
            io_uring_cq_advance(&ring, n);
        }
    }
    /* The multishot accept holds the listening socket inside the ring, whose
     * teardown finishes after exit: stop listening now so the port is free
     * for the next server when this process is gone. */
    shutdown(lfd, SHUT_RDWR);
    io_uring_queue_exit(&ring);
    close(lfd);
    free(bufs);
    return 0;
}
