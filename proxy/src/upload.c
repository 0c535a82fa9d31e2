/*
 * The request body going up in a task of its own. The handler's task reads
 * the response meanwhile, so the two directions never wait on each other:
 * the client socket has one task receiving (this one) and one sending (the
 * handler's), as does the upstream's, which the runtime allows. Body chunks
 * still travel as borrowed views, from the buffer they arrived in.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "forward.h"

/* One body chunk up, re-framed when chunked. With more, the next chunk is
 * in hand already (coil_http_body_ahead): the kernel may hold a partial
 * segment for it (coil_sock_tx_more), so the body goes up in full segments
 * rather than one per receive buffer. */
static ssize_t send_up(coil_sock *s, coil_buf *b, bool chunked, bool more, int64_t deadline)
{
    coil_sock_tx_more(s, more);
    ssize_t r;
    if (!chunked) {
        r = coil_send_buf(s, b, deadline);
    } else {
        char size[24];
        int n = snprintf(size, sizeof(size), "%zx\r\n", b->len);
        struct iovec iov[3] = { { size, (size_t)n }, { b->data, b->len }, { "\r\n", 2 } };
        r = coil_sendv(s, iov, 3, deadline);
        coil_buf_release(b);
    }
    coil_sock_tx_more(s, false);
    return r;
}

static void client_failed(px_upload *u, int err)
{
    u->client_error = err;
    /* The handler's task may be waiting for the response: the upstream
     * request is abandoned, and this wakes it. */
    coil_shutdown(u->to, SHUT_RDWR);
}

static void move_body(px_upload *u)
{
    coil_loop *loop = u->core->loop;
    if (u->first.len) {
        size_t n = u->first.len;
        bool more = coil_http_body_ahead(u->req);
        if (send_up(u->to, &u->first, u->chunked, more, coil_deadline_in(loop, u->idle_ns)) < 0) {
            u->upstream_failed = true;
            return;
        }
        u->bytes += n;
    }
    coil_buf_release(&u->first);
    if (u->splice && !u->chunked && u->req->content_length > 0) {
        ssize_t n = coil_http_body_splice(u->req, u->to, u->idle_ns);
        if (n >= 0) {
            u->bytes += (uint64_t)n;
            return;
        }
        if (n == -EPIPE) {
            u->upstream_failed = true;
            return;
        }
        if (n != -EINVAL) {
            client_failed(u, (int)n);
            return;
        }
    }
    for (;;) {
        coil_buf b;
        ssize_t n = coil_http_body_read(u->req, &b);
        if (n == 0)
            break;
        if (n < 0) {
            client_failed(u, (int)n);
            return;
        }
        u->bytes += (uint64_t)n;
        bool more = coil_http_body_ahead(u->req);
        if (send_up(u->to, &b, u->chunked, more, coil_deadline_in(loop, u->idle_ns)) < 0) {
            u->upstream_failed = true;
            return;
        }
    }
    if (u->chunked && coil_send(u->to, "0\r\n\r\n", 5, coil_deadline_in(loop, u->idle_ns)) < 0)
        u->upstream_failed = true;
}

static int upload_task(void *arg)
{
    px_upload *u = arg;
    if (!u->gated || (coil_event_wait(&u->go, COIL_NO_DEADLINE) == 0 && !u->skip))
        move_body(u);
    coil_buf_release(&u->first);
    u->done = true;
    u->done_ns = coil_now(u->core->loop);
    return 0;
}

int px_upload_start(px_upload *u, px_core *core, coil_http_request *req, coil_sock *to,
                    coil_buf *first, bool chunked, bool splice, int64_t idle_ns, bool gated)
{
    *u = (px_upload){ .core = core, .req = req, .to = to, .chunked = chunked, .splice = splice,
                      .idle_ns = idle_ns, .gated = gated, .first = *first };
    *first = (coil_buf){ 0 };
    coil_event_init(&u->go);
    int err = coil_spawn(core->loop, upload_task, u, &u->task);
    if (err < 0)
        coil_buf_release(&u->first);
    return err;
}

void px_upload_open(px_upload *u, bool send)
{
    u->skip = !send;
    coil_event_set(&u->go);
}

bool px_upload_finish(px_upload *u, bool cancel)
{
    if (!u->task)
        return u->done && !u->skip && !u->client_error && !u->upstream_failed;
    if (cancel && !u->done)
        coil_cancel(u->task);
    else if (u->gated && !u->go.set)
        px_upload_open(u, false);
    /* The upload must be gone before the request it reads is, even when
     * this task is being cancelled. */
    if (coil_cancelled())
        coil_cancel(u->task);
    coil_join_shielded(u->task, NULL);
    u->task = NULL;
    return !cancel && !u->skip && !u->client_error && !u->upstream_failed;
}
