#define _GNU_SOURCE
#include "floor_uring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 1024
#define BGID 0

struct floor_uring floor_uring;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int floor_uring_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = RING_ENTRIES * 4;
    int err = io_uring_queue_init_params(RING_ENTRIES, &floor_uring.ring, &p);
    if (err < 0) {
        memset(&p, 0, sizeof(p));
        err = io_uring_queue_init_params(RING_ENTRIES, &floor_uring.ring, &p);
    }
    if (err < 0) {
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-err));
        return -1;
    }
    floor_uring.br = mmap(NULL, FLOOR_NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    floor_uring.bufs = malloc((size_t)FLOOR_NBUFS * FLOOR_BUF_SIZE);
    if (floor_uring.br == MAP_FAILED || !floor_uring.bufs) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    io_uring_buf_ring_init(floor_uring.br);
    struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)floor_uring.br,
                                    .ring_entries = FLOOR_NBUFS, .bgid = BGID };
    err = io_uring_register_buf_ring(&floor_uring.ring, &reg, 0);
    if (err < 0) {
        fprintf(stderr, "buffer ring: %s\n", strerror(-err));
        return -1;
    }
    for (unsigned i = 0; i < FLOOR_NBUFS; i++)
        io_uring_buf_ring_add(floor_uring.br, floor_buf(i), FLOOR_BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(FLOOR_NBUFS), (int)i);
    io_uring_buf_ring_advance(floor_uring.br, FLOOR_NBUFS);
    return 0;
}

int floor_listen(const char *host, int port)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (lfd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
        fprintf(stderr, "listen %s:%d: %s\n", host, port, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    return lfd;
}

struct io_uring_sqe *floor_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&floor_uring.ring);
    if (!sqe) {
        io_uring_submit(&floor_uring.ring);
        sqe = io_uring_get_sqe(&floor_uring.ring);
    }
    return sqe;
}

void floor_arm_recv(int fd, uint64_t user_data)
{
    struct io_uring_sqe *sqe = floor_sqe();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, user_data);
}

void floor_arm_accept(int lfd, uint64_t user_data)
{
    struct io_uring_sqe *sqe = floor_sqe();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, user_data);
}

char *floor_buf(unsigned bid)
{
    return floor_uring.bufs + (size_t)bid * FLOOR_BUF_SIZE;
}

void floor_buf_put(unsigned bid)
{
    io_uring_buf_ring_add(floor_uring.br, floor_buf(bid), FLOOR_BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(FLOOR_NBUFS), 0);
    io_uring_buf_ring_advance(floor_uring.br, 1);
}

void floor_run(void (*on_cqe)(uint64_t tag, int res, unsigned flags))
{
    while (!stop) {
        int ret = io_uring_submit_and_wait(&floor_uring.ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -ETIME)
            return;
        struct io_uring_cqe *cqes[128];
        unsigned n;
        while ((n = io_uring_peek_batch_cqe(&floor_uring.ring, cqes, 128)) > 0) {
            for (unsigned i = 0; i < n; i++)
                on_cqe(io_uring_cqe_get_data64(cqes[i]), cqes[i]->res, cqes[i]->flags);
            io_uring_cq_advance(&floor_uring.ring, n);
        }
    }
}

void floor_uring_exit(int lfd)
{
    shutdown(lfd, SHUT_RDWR);
    io_uring_queue_exit(&floor_uring.ring);
    close(lfd);
    free(floor_uring.bufs);
}
