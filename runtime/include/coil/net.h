/*
 * Sockets and the operations on them. Every operation that can wait suspends
 * only the calling task, takes an absolute deadline (COIL_NO_DEADLINE for
 * none; coil_deadline_in() makes one) and returns a negative errno on failure:
 * -ETIMEDOUT when the deadline passed, -ECANCELED when the task was cancelled,
 * or the error a coil_interrupt() chose. When one of those is returned the
 * kernel is done with the operation's memory: buffers on the task's stack may
 * be reused at once.
 *
 * At most one receive-type operation (recv, recv_buf, accept, splice as
 * source) and one send-type operation (send, sendv, send_buf, splice as sink)
 * may wait on a socket at a time; a second one gets -EBUSY.
 *
 * Threading: loop thread only; operations that wait must be called from a task
 * (-EPERM otherwise).
 */
#ifndef COIL_NET_H
#define COIL_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "coil/buf.h"
#include "coil/loop.h"
#include "coil/task.h"
#include "coil/timer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct coil__waiter;
struct coil__sock_rx;

/* A socket owned by one loop. Caller-allocated; its memory must stay valid
 * from coil_sock_open() (or the call that opened it) until coil_close()
 * returned. */
typedef struct coil_sock {
    void *data;                  /* public: the embedder's */
    int fd;                      /* read-only: -1 when closed */
    /* private */
    struct coil__loop *loop;
    uint32_t flags;
    uint32_t inflight;           /* kernel operations not yet finally completed */
    struct coil__waiter *rd;     /* task waiting to receive (or for the socket to close) */
    struct coil__waiter *wr;     /* task waiting to send */
    struct coil__sock_rx *rx;    /* multishot accept/recv state while armed */
    void *closer;                /* the coil_close() waiting for the kernel */
    coil_task_fn park_fn;
    void *park_arg;
    coil_timer park_timer;
} coil_sock;

/* Flags for coil_tcp_listen(). */
enum {
    COIL_LISTEN_REUSEPORT = 1u << 0, /* SO_REUSEPORT: one listener per core */
};

/* Adopts an open socket fd (made non-blocking here); on success the socket
 * owns fd and coil_close() closes it; on failure fd stays the caller's.
 * sock is caller memory (see coil_sock). Returns 0, -EBADF, -ENOMEM. Loop
 * thread, inside or outside a task. */
int coil_sock_open(coil_loop *loop, coil_sock *sock, int fd);

/* Creates a TCP listener bound to addr (SO_REUSEADDR always; SO_REUSEPORT with
 * COIL_LISTEN_REUSEPORT). Port 0 picks a free port: read it back with
 * coil_sock_port(). addr is only read during the call. Returns 0 or -errno of
 * socket/bind/listen. Loop thread, inside or outside a task. */
int coil_tcp_listen(coil_loop *loop, coil_sock *sock, const struct sockaddr *addr,
                    socklen_t addrlen, int backlog, unsigned flags);

/* Same for a numeric IPv4/IPv6 host ("127.0.0.1", "::", NULL = 0.0.0.0); host
 * is read during the call only. Returns 0, -EINVAL (host is not a numeric
 * address: no name is looked up), or -errno of socket/bind/listen. Loop
 * thread, inside or outside a task. */
int coil_tcp_listen_host(coil_loop *loop, coil_sock *sock, const char *host,
                         uint16_t port, int backlog, unsigned flags);

/* The local port a socket is bound to, or -errno of getsockname (-EBADF on a
 * closed socket), -EAFNOSUPPORT (not an IP socket). Loop thread, inside or
 * outside a task; does not wait. */
int coil_sock_port(const coil_sock *sock);

/* Waits for a connection on listener and opens it in *conn (on io_uring, from
 * a multishot accept that keeps running between calls). conn is caller
 * memory that becomes an open socket (see coil_sock) only on success. peer,
 * if not NULL, receives the peer address; it is written before the call
 * returns and not kept. Returns 0, or -ETIMEDOUT, -ECANCELED, -EMFILE,
 * -ENFILE, -ENOMEM, -EBUSY (another task is accepting on listener), -EPERM
 * (not in a task), ... From a task. */
int coil_accept(coil_sock *listener, coil_sock *conn, struct sockaddr_storage *peer,
                int64_t deadline);

/* Opens a TCP socket in *sock (caller memory, see coil_sock) and connects it
 * to addr, which is read during the call only. Returns 0, or -ECONNREFUSED,
 * -ETIMEDOUT, -ENETUNREACH, -ECANCELED, -EPERM (not in a task), ...; on
 * failure *sock is not open and needs no coil_close(). From a task. */
int coil_tcp_connect(coil_loop *loop, coil_sock *sock, const struct sockaddr *addr,
                     socklen_t addrlen, int64_t deadline);

/* Receives up to len bytes into caller memory (which may be on the task's
 * stack; it is written until the call returns, never after). Returns the
 * byte count, 0 at end of stream, or a negative errno (-ECONNRESET,
 * -ETIMEDOUT, -ECANCELED, -EBUSY, -EPERM, ...). From a task. */
ssize_t coil_recv(coil_sock *sock, void *buf, size_t len, int64_t deadline);

/* Receives into a borrowed buffer from the loop's pool (see buf.h) and
 * stores the view in *out (caller memory); the caller then owns the view
 * until it releases or sends it. Returns the byte count (> 0), 0 at end of
 * stream (*out empty), or a negative errno as coil_recv() (*out empty). From
 * a task. On io_uring this arms a
 * multishot receive that keeps filling buffers between calls, up to
 * bufs_per_sock of them; coil_sock_rx_stop() turns it off for backpressure. */
ssize_t coil_recv_buf(coil_sock *sock, coil_buf *out, int64_t deadline);

/* True when bytes (or the end of stream) already received on the socket wait
 * in its queue, so a receive would return without waiting: a task that
 * wants to park checks this first. Loop thread. */
bool coil_sock_rx_pending(const coil_sock *sock);

/* True when a receive stays armed on the socket (io_uring's multishot), so
 * that anything the peer sends, its end of stream included, reaches the
 * queue coil_sock_rx_pending() looks at without a system call: as of the
 * loop's last poll. False on epoll, and while receives are single-shot or
 * stopped; then only asking the kernel (recv with MSG_PEEK) tells. Loop
 * thread. */
bool coil_sock_rx_watched(const coil_sock *sock);

/* True when nothing has arrived on the socket since it was last drained, as
 * of the loop's last poll, so that asking the kernel (recv with MSG_PEEK)
 * would only confirm it: on io_uring a receive stays armed
 * (coil_sock_rx_watched) and nothing waits in the queue; on epoll no
 * readable edge, end of stream or error has been reported since a receive
 * got fewer bytes than it asked for. False when not known. What the peer
 * sent after the last poll shows only in the next one, whatever the answer.
 * Loop thread. */
bool coil_sock_rx_quiet(const coil_sock *sock);

/* True when the next receive is known to return bytes without waiting for
 * the peer: bytes already received wait in the socket's queue
 * (coil_sock_rx_pending), or the last coil_recv_buf() left bytes in the
 * kernel's queue (io_uring: the completion said the socket was still
 * readable; epoll: a receive that filled its buffer asks the kernel how
 * much is left). False when nothing is known. Loop thread. */
bool coil_sock_rx_more(const coil_sock *sock);

/* With single set, coil_recv_buf uses one single-shot receive per call (on
 * io_uring still from the buffer ring) and keeps nothing armed between
 * calls: for a body streamed under backpressure, since a multishot receive
 * cannot be paused without cancelling it. Parking clears nothing: a parked
 * socket still waits with a multishot. Cannot fail; a multishot already
 * armed runs on until coil_sock_rx_stop(). Loop thread. */
void coil_sock_rx_single(coil_sock *sock, bool single);

/* Stops a socket's multishot receive so that the kernel stops taking buffers
 * for it (a task about to apply backpressure does this). Buffers already
 * filled stay queued and are returned by the next receives. Waits for the
 * multishot's final completion. From a task. Returns 0 or -EPERM. */
int coil_sock_rx_stop(coil_sock *sock);

/* Sends all len bytes (short sends are continued). buf is read until the call
 * returns, never after (it may be on the task's stack). Returns len, or a
 * negative errno (-EPIPE, -ECONNRESET, -ETIMEDOUT, -ECANCELED, -EBUSY,
 * -EPERM, ...) in which case an unknown prefix was sent. Never raises
 * SIGPIPE. From a task. */
ssize_t coil_send(coil_sock *sock, const void *buf, size_t len, int64_t deadline);

/* Sends all bytes of iov[0..iovcnt) (iovcnt <= IOV_MAX). The iov array may be
 * modified during the call; the memory it points to is read until the call
 * returns. Returns the total, or a negative errno as coil_send() (-EINVAL for
 * a bad iovcnt). From a task. */
ssize_t coil_sendv(coil_sock *sock, struct iovec *iov, int iovcnt, int64_t deadline);

/* coil_sendv() telling the kernel whether more bytes follow at once
 * (MSG_MORE on each of this call's sends): with more set, a partial TCP
 * segment is held back until the next send fills it or a send without the
 * hint pushes it, so a stream sent piece by piece leaves in full segments
 * (fewer packets for both ends to process). Pass true only while the next
 * bytes to send are already in hand (received, see coil_sock_rx_more), and
 * false for the last send of a burst: bytes held back otherwise wait for the
 * peer's next acknowledgement or the next send. The hint holds for this call
 * only. On io_uring a send with the hint also skips the ring whatever its
 * size (the next send follows at once, nothing is batched with it). Returns
 * and fails as coil_sendv(); same lifetimes. From a task. */
ssize_t coil_sendv_more(coil_sock *sock, struct iovec *iov, int iovcnt, bool more,
                        int64_t deadline);

/* Sends the bytes of a borrowed buffer (possibly received on another socket
 * of the same loop) and releases it, whatever the outcome: *buf is empty
 * when the call returns and the caller no longer owns the view. Returns the
 * byte count or a negative errno as coil_send(). From a task. */
ssize_t coil_send_buf(coil_sock *sock, coil_buf *buf, int64_t deadline);

/* From a task; from and to must be sockets of the calling task's loop.
 * Moves up to max bytes from one socket to another inside the kernel
 * (splice through a pipe from the loop's pipe pool), returning once the bytes
 * read were all written. Bytes already received into borrowed buffers on
 * from (see coil_recv_buf) go first, sent from those buffers; if they exceed
 * max the call fails with -EINVAL, so pass max >= buf_size or drain them with
 * coil_recv_buf first. Returns the bytes moved, 0 at end of stream on from,
 * or a negative errno (bytes read but not written are then lost). */
ssize_t coil_splice(coil_sock *from, coil_sock *to, size_t max, int64_t deadline);

/* shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR. Does not wait. Returns 0,
 * -EBADF (closed), or -errno of shutdown(2) (-ENOTCONN, -EINVAL). Loop
 * thread, inside or outside a task. */
int coil_shutdown(coil_sock *sock, int how);

/* Parks an idle socket: the calling task stops using it (and may return),
 * while the socket holds no task stack and no receive buffer. sock's memory
 * must stay valid while parked; arg is passed to fn untouched. When bytes, end
 * of stream or an error arrive — or when deadline passes — the loop spawns a
 * detached task fn(arg); its first receive returns the data (or 0, the error,
 * or -ETIMEDOUT for the deadline). Returns 0, -EINVAL (already parked or busy),
 * -ENOMEM. Loop thread, inside or outside a task. */
int coil_park(coil_sock *sock, coil_task_fn fn, void *arg, int64_t deadline);

/* Takes a parked socket back: no task will be spawned for it. Returns 0, or
 * -EALREADY when it is not parked (its park already fired: the task it
 * spawned owns the socket now). Loop thread. */
int coil_unpark(coil_sock *sock);

/* Closes the socket: cancels everything in flight or parked on it, waits for
 * the final completions, releases queued buffers, closes fd. After it returns
 * the socket's memory may be reused. From a task, or from outside the loop's
 * run functions (then it turns the backend itself until the kernel is done);
 * -EBUSY from a timer or message callback while operations are in flight.
 * Returns 0, -EBADF, -EBUSY. Cancellation of the caller does not interrupt
 * it. */
int coil_close(coil_sock *sock);

#ifdef __cplusplus
}
#endif
#endif
