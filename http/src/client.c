/*
 * Upstream side: one HTTP/1.1 client connection, parsing responses with the
 * same parser and checks as requests.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "coil/http_client.h"
#include "http_impl.h"

struct coil_http_client {
    coil_sock sock;
    coil_loop *loop;
    coil_buf rx;               /* received, not parsed yet */
    coil__http_parser parser;
    bool head_pending;         /* a response head is being read (resumable after a timeout) */
    bool head_done;
    bool body_done;
    bool broken;
    bool report_continue;      /* read_head returns a 100 (Continue) head */
    int recv_error;            /* of the last receive that failed */
    size_t arena_size;
    char arena[];
};

int coil_http_client_connect(coil_loop *loop, const struct sockaddr *addr, socklen_t len,
                             uint32_t max_header_bytes, int64_t deadline, coil_http_client **out)
{
    if (!max_header_bytes)
        max_header_bytes = 16384;
    uint32_t max_fields = 128;
    size_t arena = 8192 + max_header_bytes + max_fields * sizeof(coil__http_field);
    coil_http_client *c = calloc(1, sizeof(*c) + arena);
    if (!c)
        return -ENOMEM;
    c->arena_size = arena;
    c->loop = loop;
    coil__http_limits lim = {
        .max_request_line = 8192,
        .max_header_bytes = max_header_bytes,
        .max_headers = max_fields,
        .max_chunk_ext = 1024,
        .max_body = 0,
    };
    coil__http_parser_init(&c->parser, false, &lim, c->arena, arena);
    int err = coil_tcp_connect(loop, &c->sock, addr, len, deadline);
    if (err < 0) {
        free(c);
        return err;
    }
    /* A head and its body go out in separate sends: without this, Nagle and
     * the peer's delayed ACK hold the second back for 40 ms. */
    int one = 1;
    setsockopt(c->sock.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out = c;
    return 0;
}

coil_sock *coil_http_client_sock(coil_http_client *c)
{
    return &c->sock;
}

/* Feeds until an event other than NEED_MORE; at end of stream lets the
 * parser decide (a body delimited by the close ends there). */
static coil__http_event next_event(coil_http_client *c, int64_t deadline, size_t *used)
{
    for (;;) {
        if (c->rx.len || !c->head_done || c->parser.head.has_body) {
            coil__http_event ev = coil__http_parser_feed(&c->parser, c->rx.data, c->rx.len, used);
            if (ev != COIL__HTTP_NEED_MORE)
                return ev;
            coil__http_buf_consume(&c->rx, *used);
        }
        coil_buf_release(&c->rx);
        ssize_t n = coil_recv_buf(&c->sock, &c->rx, deadline);
        if (n == 0) {
            *used = 0;
            return coil__http_parser_finish(&c->parser);
        }
        if (n < 0) {
            *used = 0;
            c->recv_error = (int)n;
            /* Waiting for a head can resume after a deadline: the parser
             * keeps what it has. Anything else leaves the stream unknown. */
            if (!(n == -ETIMEDOUT && c->head_pending))
                c->broken = true;
            return COIL__HTTP_ERROR;
        }
    }
}

static int event_error(coil_http_client *c)
{
    int e = c->recv_error;
    c->recv_error = 0;
    if (e == -ETIMEDOUT && !c->broken)
        return e;
    c->broken = true;
    return e < 0 ? e : -EPROTO;
}

int coil_http_client_read_head(coil_http_client *c, const char *method, int64_t deadline,
                               coil_http_response_head *out)
{
    if (c->broken)
        return -EPIPE;
    int mid = HTTP_GET;
    bool get = strcmp(method, "GET") == 0; /* most requests: skip the search */
    for (int m = 0; m < 64 && !get; m++) {
        const char *name = llhttp_method_name((llhttp_method_t)m);
        if (name && strcmp(name, method) == 0) {
            mid = m;
            break;
        }
    }
    if (!c->head_pending) {
        coil__http_parser_reset(&c->parser);
        coil__http_parser_set_request_method(&c->parser, mid);
        c->head_done = c->body_done = false;
        c->head_pending = true;
    }
    for (;;) {
        size_t used = 0;
        coil__http_event ev = next_event(c, deadline, &used);
        if (ev == COIL__HTTP_ERROR) {
            int err = event_error(c);
            if (c->broken)
                c->head_pending = false;
            return err == -EPROTO && !c->parser.head.status ? -ECONNRESET : err;
        }
        coil__http_buf_consume(&c->rx, used);
        if (ev != COIL__HTTP_HEAD)
            continue;
        const coil__http_head *h = &c->parser.head;
        if (h->status >= 100 && h->status < 200 && h->status != 101) {
            /* An interim answer: the final one follows. */
            bool report = h->status == 100 && c->report_continue;
            coil__http_parser_reset(&c->parser);
            if (report) {
                *out = (coil_http_response_head){ .status = 100, .version_minor = 1,
                                                  .content_length = -1 };
                return 0;
            }
            continue;
        }
        c->head_pending = false;
        c->head_done = true;
        c->body_done = !h->has_body;
        *out = (coil_http_response_head){
            .status = h->status,
            .version_minor = h->version_minor,
            .fields = (const coil_http_field *)h->fields,
            .nfields = h->nfields,
            .content_length = h->content_length,
            .chunked = h->chunked,
            .keep_alive = h->keep_alive,
            .has_body = h->has_body,
        };
        return 0;
    }
}

ssize_t coil_http_client_read_body(coil_http_client *c, coil_buf *out, int64_t deadline)
{
    *out = (coil_buf){ 0 };
    if (c->body_done)
        return 0;
    if (c->broken || !c->head_done)
        return -EPROTO;
    for (;;) {
        size_t used = 0;
        coil__http_event ev = next_event(c, deadline, &used);
        if (ev == COIL__HTTP_BODY) {
            size_t off = (size_t)(c->parser.chunk - c->rx.data);
            int err = coil_buf_share(&c->rx, off, c->parser.chunk_len, out);
            coil__http_buf_consume(&c->rx, used);
            if (err < 0) {
                c->broken = true;
                return err;
            }
            return (ssize_t)out->len;
        }
        if (ev == COIL__HTTP_DONE) {
            coil__http_buf_consume(&c->rx, used);
            c->body_done = true;
            return 0;
        }
        if (ev == COIL__HTTP_ERROR)
            return event_error(c);
        coil__http_buf_consume(&c->rx, used);
    }
}

bool coil_http_client_body_ahead(const coil_http_client *c)
{
    if (c->body_done || c->broken || !c->head_done)
        return false;
    return coil__http_parser_body_ahead(&c->parser, c->rx.data, c->rx.len,
                                        coil_sock_rx_more(&c->sock));
}

ssize_t coil_http_client_body_splice(coil_http_client *c, coil_sock *to, int64_t idle_ns)
{
    if (c->body_done)
        return 0;
    if (c->broken || !c->head_done)
        return -EPROTO;
    const coil__http_head *h = &c->parser.head;
    if (h->chunked || h->content_length < 0)
        return -EINVAL;
    /* As on the server side: nothing is received behind the parser's back,
     * so after the bytes already here the socket holds exactly the rest of
     * the body. */
    coil_sock_rx_single(&c->sock, true);
    int err = coil_sock_rx_stop(&c->sock);
    if (err < 0) {
        c->broken = true;
        return err;
    }
    ssize_t moved = 0;
    for (;;) {
        size_t used = 0;
        coil__http_event ev = coil__http_parser_feed(&c->parser, c->rx.data, c->rx.len, &used);
        if (ev == COIL__HTTP_BODY) {
            size_t len = c->parser.chunk_len;
            ssize_t n = coil_send(to, c->parser.chunk, len, coil_deadline_in(c->loop, idle_ns));
            coil__http_buf_consume(&c->rx, used);
            if (n < 0) {
                c->broken = true;
                return -EPIPE;
            }
            moved += (ssize_t)len;
            continue;
        }
        coil__http_buf_consume(&c->rx, used);
        if (ev == COIL__HTTP_DONE) {
            c->body_done = true;
            coil_sock_rx_single(&c->sock, false);
            return moved;
        }
        if (ev == COIL__HTTP_ERROR)
            return event_error(c);
        coil_buf_release(&c->rx);
        if (!coil_sock_rx_pending(&c->sock))
            break;
        ssize_t n = coil_recv_buf(&c->sock, &c->rx, coil_deadline_in(c->loop, idle_ns));
        if (n <= 0) {
            c->broken = true;
            return n == 0 ? -EPROTO : n;
        }
    }
    /* The rest moves socket to socket, unseen by the parser: the body is
     * marked done once it all moved, and the next coil_http_client_read_head()
     * resets the parser before feeding it. */
    uint64_t left = (uint64_t)h->content_length - c->parser.body_seen;
    while (left) {
        ssize_t n = coil_splice(&c->sock, to, left, coil_deadline_in(c->loop, idle_ns));
        if (n == 0) {
            c->broken = true;
            return -EPROTO;
        }
        if (n < 0) {
            c->broken = true;
            if (!coil__http_splice_source_failed(&c->sock, n))
                return n == -ECANCELED ? -ECANCELED : -EPIPE;
            return n == -EPIPE ? -ECONNRESET : n;
        }
        left -= (uint64_t)n;
        moved += n;
    }
    c->body_done = true;
    /* Back to a multishot receive for the next response on a pooled
     * connection. */
    coil_sock_rx_single(&c->sock, false);
    return moved;
}

ssize_t coil_http_response_splice_from(coil_http_request *req, coil_http_client *c,
                                       int64_t idle_ns)
{
    coil__http_exchange *x = req->x;
    if (x->resp_state != RESP_BEGUN)
        return x->resp_state == RESP_NONE ? -EINVAL : -EALREADY;
    const coil__http_head *h = &c->parser.head;
    if (x->chunked || x->until_close || x->no_body || x->resp_len < 0 || h->chunked ||
        h->content_length < 0 || !c->head_done || c->broken)
        return -EINVAL;
    uint64_t left = c->body_done ? 0 : (uint64_t)h->content_length - c->parser.body_seen;
    if (x->resp_written + left > (uint64_t)x->resp_len)
        return -EMSGSIZE;
    /* The head (and answers to earlier pipelined requests) must reach the
     * socket before body bytes do: the splice bypasses x->out. */
    if (coil__http_flush(x) < 0) {
        x->resp_state = RESP_FAILED;
        return -EPIPE;
    }
    coil__http_conn *conn = x->conn;
    int64_t send_ns = conn->srv->cfg.timeouts.send_idle_ns;
    ssize_t n = coil_http_client_body_splice(c, &conn->sock, idle_ns > send_ns ? idle_ns : send_ns);
    if (n < 0) {
        x->resp_state = RESP_FAILED;
        conn->close_after = true;
        return n;
    }
    x->resp_written += (uint64_t)n;
    x->bytes_out += (uint64_t)n;
    return n;
}

void coil_http_client_report_continue(coil_http_client *c, bool on)
{
    c->report_continue = on;
}

void coil_http_client_take_rest(coil_http_client *c, coil_buf *out)
{
    *out = c->rx;
    c->rx = (coil_buf){ 0 };
    c->broken = true;
}

bool coil_http_client_reusable(const coil_http_client *c)
{
    return !c->broken && c->head_done && c->body_done && c->parser.head.keep_alive && !c->rx.len;
}

bool coil_http_client_stale(coil_http_client *c)
{
    if (c->broken || c->rx.len || coil_sock_rx_pending(&c->sock))
        return true;
    /* A close or stray bytes would have shown in the last poll: no system
     * call per reused connection. One that came later fails the request
     * sent on it, which the caller retries on a fresh connection. */
    if (coil_sock_rx_quiet(&c->sock))
        return false;
    char b;
    ssize_t n = recv(c->sock.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    /* Anything but "nothing to read yet" means closed or out of step. */
    return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

void coil_http_client_close(coil_http_client *c)
{
    coil_buf_release(&c->rx);
    coil_close(&c->sock);
    free(c);
}
