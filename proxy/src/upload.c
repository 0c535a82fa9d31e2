/*
 * The request body going up in a task of its own. The handler's task reads
 * the response meanwhile, so the two directions never wait on each other:
 * the client socket has one task receiving (this one) and one sending (the
 * handler's), as does the upstream's, which the runtime allows. Body chunks
 * still travel as borrowed views, from the buffer they arrived in.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "forward.h"

/* One body chunk up, re-framed when chunked, and released. With more, the
 * next chunk is in hand already (coil_http_body_ahead): the kernel may hold
 * a partial segment for it (coil_sendv_more), so the body goes up in full
 * segments rather than one per receive buffer. */
static ssize_t send_up(coil_sock *s, coil_buf *b, bool chunked, bool more, int64_t deadline)
{
    char line[COIL_HTTP_CHUNK_LINE_MAX];
    struct iovec iov[3] = { { line, 0 }, { b->data, b->len }, { "\r\n", 2 } };
    ssize_t r;
    if (!chunked) {
        r = coil_sendv_more(s, &iov[1], 1, more, deadline);
    } else {
        iov[0].iov_len = coil_http_chunk_line(line, b->len);
        r = coil_sendv_more(s, iov, 3, more, deadline);
    }
    coil_buf_release(b);
    return r;
}

static void client_failed(px_upload *u, int err)
{
    u->client_error = err;
    /* The handler's task may be waiting for the response: the upstream
     * request is abandoned, and this wakes it. */
    coil_shutdown(u->to, SHUT_RDWR);
}

/* Moves the rest of a Content-Length body inside the kernel. True when that
 * settled the upload (moved, or failed); false when it cannot (-EINVAL,
 * nothing was read) and the body must be read instead. */
static bool splice_up(px_upload *u)
{
    ssize_t n = coil_http_body_splice(u->req, u->to, u->idle_ns);
    if (n >= 0)
        u->bytes += (uint64_t)n;
    else if (n == -EPIPE)
        u->upstream_failed = true;
    else if (n != -EINVAL)
        client_failed(u, (int)n);
    return n != -EINVAL;
}

static void move_body(px_upload *u)
{
    coil_loop *loop = u->core->loop;
    bool splice = u->splice && !u->chunked && u->req->content_length > 0;
    /* The bytes read before the upstream was chosen go up first, before a
     * splice starts. They count once sent (as a splice counts what it
     * moved), the bytes read here once read. */
    coil_buf b = u->first;
    u->first = (coil_buf){ 0 };
    for (;;) {
        size_t preread = b.len;
        if (!preread) {
            coil_buf_release(&b);
            if (splice && splice_up(u))
                return;
            splice = false;
            ssize_t n = coil_http_body_read(u->req, &b);
            if (n == 0)
                break;
            if (n < 0) {
                client_failed(u, (int)n);
                return;
            }
            u->bytes += (uint64_t)n;
        }
        bool more = coil_http_body_ahead(u->req);
        if (send_up(u->to, &b, u->chunked, more, coil_deadline_in(loop, u->idle_ns)) < 0) {
            u->upstream_failed = true;
            return;
        }
        u->bytes += preread;
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
