/*
 * coil_buf: a borrowed view of received bytes.
 *
 * A buffer filled by coil_recv_buf() belongs to the loop's receive-buffer pool
 * (on io_uring, the provided-buffer ring the kernel picks from). The task only
 * borrows it: it must give it back with coil_buf_release(), or hand it to
 * coil_send_buf(), which gives it back once the kernel no longer reads it.
 * A task may hold at most coil_loop_options.bufs_per_sock buffers per socket;
 * a buffer held for long starves every connection of its core.
 *
 * Threading: loop thread only; a buffer never leaves its loop.
 */
#ifndef COIL_BUF_H
#define COIL_BUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_buf {
    char *data;      /* public: first unread byte; the holder may advance it */
    size_t len;      /* public: bytes at data; the holder may shrink it */
    /* private */
    struct coil__loop *loop;   /* NULL when the view holds nothing */
    uint32_t id;
} coil_buf;

/* Makes *out a second view of bytes [off, off + len) of b's buffer (b is
 * only read; *out is caller memory, and the view it holds is then the
 * caller's to release). The
 * buffer goes back to its pool only when every view was released (or sent
 * with coil_send_buf). Used to hand out part of a received buffer — a body
 * chunk — while the rest stays with its first holder. Returns 0, -EINVAL
 * (empty b or range outside it), -EOVERFLOW (65535 views). */
int coil_buf_share(const coil_buf *b, size_t off, size_t len, coil_buf *out);

/* Gives up this view; the memory returns to its pool when no other view
 * holds it, and b->data must not be read afterwards. Empties *b. Harmless on
 * an empty view. Cannot fail. Thread of the loop the buffer came from, inside
 * or outside a task, before that loop's coil_loop_exit(). */
void coil_buf_release(coil_buf *b);

#ifdef __cplusplus
}
#endif
#endif
