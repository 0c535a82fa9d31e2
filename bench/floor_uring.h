/*
 * What the two io_uring floors (bench_responder_uring, bench_relay_uring)
 * share: one ring set up the way a careful io_uring server would, one
 * provided-buffer ring its multishot receives draw from, the listening
 * socket, and the SQE, receive and accept helpers. One thread only: the
 * state is global because each floor is one loop in one process.
 */
#ifndef COIL_BENCH_FLOOR_URING_H
#define COIL_BENCH_FLOOR_URING_H

#include <liburing.h>
#include <stdint.h>

#define FLOOR_NBUFS 512
#define FLOOR_BUF_SIZE 4096

struct floor_uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs; /* FLOOR_NBUFS buffers of FLOOR_BUF_SIZE bytes, by buffer id */
};

extern struct floor_uring floor_uring;

/* Sets up the ring (SINGLE_ISSUER + DEFER_TASKRUN when the kernel has them,
 * a plain ring otherwise) and registers the buffer ring with every buffer in
 * it; ignores SIGPIPE and makes SIGTERM and SIGINT end floor_run. Returns
 * 0, or -1 after saying why on stderr. */
int floor_uring_init(void);

/* A listening TCP socket on host:port (IPv4 literal), backlog 4096. Returns
 * the fd, or -1 after saying why on stderr. */
int floor_listen(const char *host, int port);

/* The next SQE, submitting what is queued first if the ring is full. */
struct io_uring_sqe *floor_sqe(void);

/* A multishot receive on fd into the buffer ring, tagged with user_data. */
void floor_arm_recv(int fd, uint64_t user_data);

/* A multishot accept on lfd, tagged with user_data. */
void floor_arm_accept(int lfd, uint64_t user_data);

/* Buffer bid's memory, and giving it back to the kernel once done with it. */
char *floor_buf(unsigned bid);
void floor_buf_put(unsigned bid);

/* The loop: submits what is queued together with the wait for at least one
 * completion, in one io_uring_enter, and hands every completion to on_cqe
 * (tag = its user_data), until SIGTERM or SIGINT. */
void floor_run(void (*on_cqe)(uint64_t tag, int res, unsigned flags));

/* Ends the loop's life: stops listening first (the multishot accept holds
 * the listening socket inside the ring, whose teardown finishes after exit,
 * so the port would stay taken for the next server), then frees the ring. */
void floor_uring_exit(int lfd);

#endif
