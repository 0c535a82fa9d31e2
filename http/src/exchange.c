/*
 * One request and its response on a connection: the body read as borrowed
 * views of the receive buffer it arrived in, and the response head queued in
 * a small output buffer so that a head and a short body — or several
 * pipelined responses — leave in one send.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http_impl.h"

/* Bytes handed to one coil_sendv() by send_all(), give or take SEND_SLACK:
 * a rest that small rides with the slice before it, so that a write's
 * worth of body with its chunk framing leaves in one send, not a full
 * slice and a few bytes of framing in a packet of their own. A slice is
 * what the client must take within the send timeout; 64 KiB, one loopback
 * segment, takes the buffers of coil_http_response_write_bufs() whole. */
#define SEND_SLICE (64 * 1024)
#define SEND_SLACK 64
/* iovecs in one slice: output, chunk line, the buffers, CRLF. */
#define SLICE_IOV (COIL_HTTP_WRITE_BUFS_MAX + 3)

/* Sends all of iov[0..iovcnt) to the client, failing with -ETIMEDOUT only
 * when the client takes nothing for send_idle_ns. coil_sendv()'s deadline
 * covers the whole call, so one large write to a slow but steady reader
 * would be cut off although it never stalled: the bytes go in slices of at
 * most SEND_SLICE, each with a fresh deadline. more is the coil_sendv_more()
 * hint for the whole burst, so every slice carries it. The iov array is
 * modified. */
static ssize_t send_all(coil__http_conn *c, struct iovec *iov, int iovcnt, bool more)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    int64_t idle_ns = c->srv->cfg.timeouts.send_idle_ns;
    if (total && total <= SEND_SLICE + SEND_SLACK && iovcnt <= SLICE_IOV) {
        /* One slice, the usual answer: sent as it is. */
        ssize_t r = coil_sendv_more(&c->sock, iov, iovcnt, more,
                                    coil_deadline_in(c->srv->loop, idle_ns));
        return r < 0 ? r : (ssize_t)total;
    }
    for (size_t sent = 0; sent < total;) {
        while (iovcnt > 0 && iov->iov_len == 0) {
            iov++;
            iovcnt--;
        }
        struct iovec slice[SLICE_IOV];
        int n = 0;
        size_t len = 0;
        size_t cap = total - sent <= SEND_SLICE + SEND_SLACK ? total - sent : SEND_SLICE;
        for (; n < iovcnt && n < SLICE_IOV && len < cap; n++) {
            size_t take = iov[n].iov_len < cap - len ? iov[n].iov_len : cap - len;
            slice[n] = (struct iovec){ iov[n].iov_base, take };
            len += take;
        }
        ssize_t r = coil_sendv_more(&c->sock, slice, n, more,
                                    coil_deadline_in(c->srv->loop, idle_ns));
        if (r < 0)
            return r;
        sent += len;
        while (len) {
            size_t take = iov->iov_len < len ? iov->iov_len : len;
            iov->iov_base = (char *)iov->iov_base + take;
            iov->iov_len -= take;
            len -= take;
            if (!iov->iov_len) {
                iov++;
                iovcnt--;
            }
        }
    }
    return (ssize_t)total;
}

static ssize_t send_bytes(coil__http_conn *c, const void *p, size_t len)
{
    struct iovec iov = { (void *)p, len };
    return send_all(c, &iov, 1, false);
}

void coil__http_exchange_init(coil__http_exchange *x, coil__http_conn *c, coil__http_parser *p,
                              char *out)
{
    memset(x, 0, offsetof(coil__http_exchange, req));
    x->conn = c;
    x->parser = p;
    x->out = out;
    x->resp_len = -1;
    x->log_note[0] = '\0';
    const coil__http_head *h = &p->head;
    coil_http_request *r = &x->req;
    int64_t now = coil_now(c->srv->loop);
    *r = (coil_http_request){
        .method = h->method,
        .method_len = h->method_len,
        .target = h->target,
        .target_len = h->target_len,
        .path = h->path,
        .path_len = h->path_len,
        .query = h->query,
        .query_len = h->query_len,
        .host = h->host,
        .host_len = h->host_len,
        .version_minor = h->version_minor,
        .fields = (const coil_http_field *)h->fields,
        .nfields = h->nfields,
        .content_length = h->content_length,
        .chunked = h->chunked,
        .keep_alive = h->keep_alive,
        .expect_continue = h->expect_continue,
        .upgrade = h->upgrade,
        .peer = &c->peer,
        .loop = c->srv->loop,
        .core = c->srv->cfg.core,
        .start_ns = now,
        .x = x,
    };
    x->body_state = h->has_body ? BODY_READING : BODY_DONE;
    x->body_limit = c->srv->cfg.limits.max_body;
}

bool coil_http_method_is(const coil_http_request *req, const char *m)
{
    /* Byte by byte, without a strlen(m) first: the method is a token (no
     * NUL), so a shorter m differs at its NUL, and a longer one is caught
     * by the last test. */
    uint32_t n = req->method_len;
    for (uint32_t i = 0; i < n; i++)
        if (req->method[i] != m[i])
            return false;
    return m[n] == '\0';
}

const coil_http_field *coil_http_field_find(const coil_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < req->nfields; i++) {
        const coil_http_field *f = &req->fields[i];
        if (f->name_len == n && strncasecmp(f->name, name, n) == 0)
            return f;
    }
    return NULL;
}

/* ---- output ---- */

int coil__http_flush(coil__http_exchange *x)
{
    if (!x->out_len)
        return 0;
    ssize_t n = send_bytes(x->conn, x->out, x->out_len);
    x->out_len = 0;
    x->out_prev = 0;
    return n < 0 ? (int)n : 0;
}

int coil__http_out_append(coil__http_exchange *x, const void *p, size_t len)
{
    if (x->out_len + len > COIL__HTTP_OUT_CAP) {
        int err = coil__http_flush(x);
        if (err < 0)
            return err;
        if (len > COIL__HTTP_OUT_CAP) {
            ssize_t n = send_bytes(x->conn, p, len);
            return n < 0 ? (int)n : 0;
        }
    }
    memcpy(x->out + x->out_len, p, len);
    x->out_len += len;
    return 0;
}

/* Sends what waits in out, then data, in one system call when possible. */
static ssize_t send_with_out(coil__http_exchange *x, const void *data, size_t len)
{
    struct iovec iov[2] = { { x->out, x->out_len }, { (void *)data, len } };
    ssize_t n = send_all(x->conn, iov, 2, false);
    x->out_len = 0;
    x->out_prev = 0;
    return n;
}

static bool is_bodyless_status(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* Appends "name: value\r\n"; CR or LF would split the response, and ':'
 * in the name move where its value starts, so those are refused. */
int coil__http_out_field(coil__http_exchange *x, const coil_http_field *f)
{
    if (coil__http_run(f->name, f->name_len, COIL__HTTP_ENDS_NAME) != f->name_len ||
        coil__http_run(f->value, f->value_len, COIL__HTTP_ENDS_LINE) != f->value_len)
        return -EINVAL;
    size_t len = (size_t)f->name_len + f->value_len + 4;
    if (x->out_len + len <= COIL__HTTP_OUT_CAP) {
        /* The common case: the line fits, in one piece. */
        char *e = x->out + x->out_len;
        memcpy(e, f->name, f->name_len);
        e += f->name_len;
        *e++ = ':';
        *e++ = ' ';
        memcpy(e, f->value, f->value_len);
        e += f->value_len;
        *e++ = '\r';
        *e++ = '\n';
        x->out_len += len;
        return 0;
    }
    int err = coil__http_out_append(x, f->name, f->name_len);
    if (!err)
        err = coil__http_out_append(x, ": ", 2);
    if (!err)
        err = coil__http_out_append(x, f->value, f->value_len);
    if (!err)
        err = coil__http_out_append(x, "\r\n", 2);
    return err;
}

/* The head is built by hand: snprintf cost more than the rest of an
 * answer's head together (four calls per proxied request). */
static char *put_mem(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* A string literal: its length is known when compiled. */
#define PUT_LIT(p, lit) put_mem((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static int write_head(coil__http_exchange *x, int status, const coil_http_field *fields,
                      unsigned nfields)
{
    coil__http_conn *c = x->conn;
    size_t len;
    const char *status_line = coil__http_status_date(status, &len); /* begin() took 100..999 */
    int err = coil__http_out_append(x, status_line, len);
    for (unsigned i = 0; i < nfields && !err; i++) {
        const coil_http_field *f = &fields[i];
        /* Framing belongs to the server: a handler's own would contradict
         * it and open the door to response splitting. */
        if (coil__http_field_is(f, "content-length") || coil__http_field_is(f, "transfer-encoding") ||
            coil__http_field_is(f, "connection") || coil__http_field_is(f, "date"))
            continue;
        err = coil__http_out_field(x, f);
    }
    if (err)
        return err;
    char line[128];
    char *e = line;
    if (!is_bodyless_status(status)) {
        if (x->chunked) {
            e = PUT_LIT(e, "Transfer-Encoding: chunked\r\n");
        } else if (x->resp_len >= 0) {
            e = PUT_LIT(e, "Content-Length: ");
            e = put_u64(e, (uint64_t)x->resp_len);
            e = PUT_LIT(e, "\r\n");
        }
    }
    /* A client that asked for 100-continue and gets a final answer first
     * will not send the body, so the connection cannot be reused (see
     * coil__http_body_discard): say so in this answer (RFC 9110 10.1.1). */
    bool body_withheld = x->parser->head.expect_continue && !x->continue_sent &&
                         x->body_state == BODY_READING;
    bool keep = x->req.keep_alive && !c->close_after && !c->srv->stopping && !x->until_close &&
                !body_withheld;
    if (!keep)
        c->close_after = true;
    if (!keep)
        e = PUT_LIT(e, "Connection: close\r\n");
    else if (x->req.version_minor == 0)
        e = PUT_LIT(e, "Connection: keep-alive\r\n");
    e = PUT_LIT(e, "\r\n");
    return coil__http_out_append(x, line, (size_t)(e - line));
}

static int begin(coil__http_exchange *x, int status, const coil_http_field *fields,
                 unsigned nfields, int64_t len)
{
    if (x->resp_state != RESP_NONE)
        return -EALREADY;
    if (status < 100 || status > 999)
        return -EINVAL;
    x->status = status;
    x->no_body = coil_http_method_is(&x->req, "HEAD") || is_bodyless_status(status);
    x->resp_len = len;
    x->chunked = len < 0 && !x->no_body && x->req.version_minor >= 1;
    x->until_close = len < 0 && !x->no_body && x->req.version_minor == 0;
    size_t before = x->out_len;
    int err = write_head(x, status, fields, nfields);
    if (err < 0) {
        x->out_len = before < x->out_len ? before : x->out_len; /* drop only this head */
        if (x->out_prev > x->out_len)
            x->out_prev = x->out_len;
        return err;
    }
    x->resp_state = RESP_BEGUN;
    return 0;
}

int coil_http_respond(coil_http_request *req, int status, const coil_http_field *fields,
                      unsigned nfields, const void *body, size_t len)
{
    coil__http_exchange *x = req->x;
    int err = begin(x, status, fields, nfields, (int64_t)len);
    if (err < 0)
        return err;
    x->resp_state = RESP_ENDED;
    if (x->no_body || !len)
        return 0;
    x->resp_written = len;
    x->bytes_out += len;
    if (x->out_len + len <= COIL__HTTP_OUT_CAP)
        return coil__http_out_append(x, body, len);
    ssize_t n = send_with_out(x, body, len);
    if (n < 0) {
        x->resp_state = RESP_FAILED;
        return (int)n;
    }
    return 0;
}

int coil_http_response_begin(coil_http_request *req, int status, const coil_http_field *fields,
                             unsigned nfields, int64_t content_length)
{
    return begin(req->x, status, fields, nfields, content_length < 0 ? -1 : content_length);
}

bool coil_http_response_started(const coil_http_request *req)
{
    return req->x->resp_state != RESP_NONE;
}

/* By hand, as the head is (see write_head): one per chunk on a stream. */
size_t coil_http_chunk_line(char out[COIL_HTTP_CHUNK_LINE_MAX], size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t digits = 1;
    while (digits < 2 * sizeof(len) && len >> (4 * digits))
        digits++;
    for (size_t i = digits; i-- > 0; len >>= 4)
        out[i] = hex[len & 0xf];
    out[digits] = '\r';
    out[digits + 1] = '\n';
    return digits + 2;
}

static void release_all(coil_buf *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        coil_buf_release(&bufs[i]);
}

/* The body bytes piece[0..n) as one write (one chunk), then bufs[0..nbufs)
 * released, whatever the outcome. */
static ssize_t write_body(coil__http_exchange *x, const struct iovec *piece, unsigned n,
                          coil_buf *bufs, unsigned nbufs, bool more)
{
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += piece[i].iov_len;
    if (x->resp_state != RESP_BEGUN) {
        release_all(bufs, nbufs);
        return x->resp_state == RESP_NONE ? -EINVAL : -EALREADY;
    }
    if (x->resp_len >= 0 && x->resp_written + len > (uint64_t)x->resp_len) {
        release_all(bufs, nbufs);
        return -EMSGSIZE;
    }
    x->resp_written += len;
    if (x->no_body || len == 0) {
        release_all(bufs, nbufs);
        return (ssize_t)len;
    }
    char hdr[COIL_HTTP_CHUNK_LINE_MAX];
    size_t hlen = x->chunked ? coil_http_chunk_line(hdr, len) : 0;
    struct iovec iov[SLICE_IOV];
    int k = 0;
    if (x->out_len)
        iov[k++] = (struct iovec){ x->out, x->out_len };
    if (hlen)
        iov[k++] = (struct iovec){ hdr, hlen };
    for (unsigned i = 0; i < n; i++)
        iov[k++] = piece[i];
    if (x->chunked)
        iov[k++] = (struct iovec){ "\r\n", 2 };
    ssize_t r = send_all(x->conn, iov, k, more);
    x->out_len = 0;
    x->out_prev = 0;
    release_all(bufs, nbufs);
    if (r < 0) {
        x->resp_state = RESP_FAILED;
        return r;
    }
    x->bytes_out += len;
    return (ssize_t)len;
}

static ssize_t write_one(coil__http_exchange *x, const void *data, size_t len, coil_buf *b,
                         bool more)
{
    struct iovec piece = { (void *)data, len };
    return write_body(x, &piece, 1, b, 1, more);
}

ssize_t coil_http_response_write_buf_more(coil_http_request *req, coil_buf *buf, bool more)
{
    return write_one(req->x, buf->data, buf->len, buf, more);
}

ssize_t coil_http_response_write_bufs(coil_http_request *req, coil_buf *bufs, unsigned n,
                                      bool more)
{
    if (n == 0 || n > COIL_HTTP_WRITE_BUFS_MAX) {
        release_all(bufs, n);
        return -EINVAL;
    }
    struct iovec piece[COIL_HTTP_WRITE_BUFS_MAX];
    for (unsigned i = 0; i < n; i++)
        piece[i] = (struct iovec){ (void *)bufs[i].data, bufs[i].len };
    return write_body(req->x, piece, n, bufs, n, more);
}

ssize_t coil_http_response_write(coil_http_request *req, const void *data, size_t len)
{
    return write_one(req->x, data, len, &(coil_buf){ 0 }, false);
}

ssize_t coil_http_response_write_buf(coil_http_request *req, coil_buf *buf)
{
    return write_one(req->x, buf->data, buf->len, buf, false);
}

int coil_http_response_end(coil_http_request *req, const coil_http_field *trailers,
                           unsigned ntrailers)
{
    coil__http_exchange *x = req->x;
    if (x->resp_state != RESP_BEGUN)
        return x->resp_state == RESP_NONE ? -EINVAL : -EALREADY;
    x->resp_state = RESP_ENDED;
    if (x->resp_len >= 0 && x->resp_written != (uint64_t)x->resp_len && !x->no_body) {
        x->conn->close_after = true;
        x->resp_state = RESP_FAILED;
        return -EPROTO;
    }
    if (!x->chunked)
        return 0;
    int err = coil__http_out_append(x, "0\r\n", 3);
    for (unsigned i = 0; i < ntrailers && !err; i++)
        err = coil__http_out_field(x, &trailers[i]);
    if (!err)
        err = coil__http_out_append(x, "\r\n", 2);
    return err;
}

int coil__http_respond_error(coil__http_exchange *x, int status, const char *why)
{
    x->conn->close_after = true;
    char body[160];
    int n = snprintf(body, sizeof(body), "%d %s%s%s\n", status, coil_http_reason(status),
                     why ? ": " : "", why ? why : "");
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    return coil_http_respond(&x->req, status, &ct, 1, body, (size_t)n);
}

/* ---- request body ---- */

void coil_http_set_body_limit(coil_http_request *req, uint64_t max)
{
    coil__http_exchange *x = req->x;
    uint64_t ceiling = x->conn->srv->cfg.limits.max_body;
    if (!max || (ceiling && max > ceiling))
        max = ceiling;
    x->body_limit = max;
    x->parser->limits.max_body = max;
}

static int body_fail(coil__http_exchange *x, int err)
{
    x->body_state = BODY_FAILED;
    x->body_error = err;
    x->conn->close_after = true;
    return err;
}

/* 100 Continue goes after the answers to earlier pipelined requests but
 * before this request's own head, which may already wait in out (a handler
 * that begins its response before reading the body). */
static int send_continue(coil__http_exchange *x)
{
    x->continue_sent = true;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t own = x->out_len - x->out_prev;
    struct iovec iov[2] = { { x->out, x->out_prev }, { (void *)cont, sizeof(cont) - 1 } };
    ssize_t n = coil_sendv(&x->conn->sock, iov, 2,
                           coil_deadline_in(x->conn->srv->loop, x->conn->srv->cfg.timeouts.send_idle_ns));
    memmove(x->out, x->out + x->out_prev, own);
    x->out_len = own;
    x->out_prev = 0;
    return n < 0 ? (int)n : 0;
}

/* The client asked for 100-continue and has had neither it nor a final
 * answer (a head only queued does not count). */
static bool continue_due(const coil__http_exchange *x)
{
    bool final_sent = x->resp_state == RESP_ENDED ||
                      (x->resp_state == RESP_BEGUN && x->out_len == x->out_prev);
    return x->parser->head.expect_continue && !x->continue_sent && !final_sent;
}

/* Before the first body byte is waited for: "100 Continue" if the client
 * asked for it, and the body limit handed to the parser. */
static int body_start(coil__http_exchange *x)
{
    /* A limit set by the handler (the server's own was checked at the
     * head): refused before the client is invited to send. */
    if (x->body_limit && x->req.content_length > 0 && (uint64_t)x->req.content_length > x->body_limit)
        return body_fail(x, -EMSGSIZE);
    if (continue_due(x)) {
        int err = send_continue(x);
        if (err < 0)
            return body_fail(x, err);
    }
    x->parser->limits.max_body = x->body_limit;
    return 0;
}

int coil_http_send_continue(coil_http_request *req)
{
    coil__http_exchange *x = req->x;
    if (x->body_state != BODY_READING || !continue_due(x))
        return 0;
    int err = send_continue(x);
    return err < 0 ? body_fail(x, err) : 0;
}

int coil_http_body_error_status(int err)
{
    switch (err) {
    case -EMSGSIZE: return 413;
    case -ETIMEDOUT: return 408;
    case -EPROTO: return 400;
    default: return 0; /* the client is gone: nobody to answer */
    }
}

void coil_http_connection_close(coil_http_request *req)
{
    req->x->conn->close_after = true;
}

void coil_http_log_note(coil_http_request *req, const char *text)
{
    snprintf(req->x->log_note, sizeof(req->x->log_note), "%s", text ? text : "");
}

/* Past body_idle_ns, a body arriving slower than body_min_rate is cut off. */
static bool body_too_slow(coil__http_exchange *x)
{
    coil_http_server *srv = x->conn->srv;
    int64_t now = coil_now(srv->loop);
    if (!x->body_first_ns)
        x->body_first_ns = now;
    const coil_http_timeouts *t = &srv->cfg.timeouts;
    int64_t elapsed = now - x->body_first_ns;
    return t->body_min_rate && elapsed > t->body_idle_ns &&
           x->body_read * 1000000000ull / (uint64_t)elapsed < t->body_min_rate;
}

ssize_t coil_http_body_read(coil_http_request *req, coil_buf *out)
{
    coil__http_exchange *x = req->x;
    coil__http_conn *c = x->conn;
    coil_http_server *srv = c->srv;
    *out = (coil_buf){ 0 };
    if (x->body_state == BODY_DONE)
        return 0;
    if (x->body_state == BODY_FAILED)
        return x->body_error;
    int err = body_start(x);
    if (err < 0)
        return err;
    /* The body is read at the handler's pace: single-shot receives, so a
     * handler that stops reading leaves the bytes in the kernel and TCP
     * pushes back on the client. */
    coil_sock_rx_single(&c->sock, true);
    for (;;) {
        /* Feed first, even zero bytes: a body that ended with the last
         * buffer is reported DONE by a feed of nothing, and waiting for
         * bytes here would wait for a client that has sent everything. */
        size_t used = 0;
        coil__http_event ev = coil__http_parser_feed(x->parser, c->rx.data, c->rx.len, &used);
        if (ev == COIL__HTTP_BODY) {
            size_t off = (size_t)(x->parser->chunk - c->rx.data);
            int err = coil_buf_share(&c->rx, off, x->parser->chunk_len, out);
            coil__http_buf_consume(&c->rx, used);
            if (err < 0)
                return body_fail(x, err);
            x->body_read += out->len;
            return (ssize_t)out->len;
        }
        if (used)
            coil__http_buf_consume(&c->rx, used);
        if (ev == COIL__HTTP_DONE) {
            x->body_state = BODY_DONE;
            return 0;
        }
        if (ev == COIL__HTTP_ERROR)
            return body_fail(x, x->parser->error_status == 413 ? -EMSGSIZE : -EPROTO);
        /* NEED_MORE: every received byte was consumed. */
        coil_buf_release(&c->rx);
        /* A declared body larger than allowed was refused at the head;
         * here the bytes arrive: each read must make progress within the
         * idle timeout, and overall at the minimum rate. */
        if (body_too_slow(x)) {
            srv->stats.timeouts++;
            return body_fail(x, -ETIMEDOUT);
        }
        ssize_t n = coil_recv_buf(&c->sock, &c->rx,
                                  coil_deadline_in(srv->loop, srv->cfg.timeouts.body_idle_ns));
        if (n == 0)
            return body_fail(x, -ECONNRESET);
        if (n < 0) {
            if (n == -ETIMEDOUT)
                srv->stats.timeouts++;
            return body_fail(x, (int)n);
        }
    }
}

bool coil_http_body_ahead(const coil_http_request *req)
{
    const coil__http_exchange *x = req->x;
    if (x->body_state == BODY_DONE || x->body_state == BODY_FAILED)
        return false;
    const coil__http_conn *c = x->conn;
    return coil__http_parser_body_ahead(x->parser, c->rx.data, c->rx.len,
                                        coil_sock_rx_more(&c->sock));
}

bool coil__http_splice_source_failed(coil_sock *from, ssize_t err)
{
    if (err == -ECANCELED)
        return false;
    char b;
    ssize_t n = recv(from->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return false; /* bytes wait on the source: the sink did not take them */
    if (n == 0)
        return true;  /* end of stream before the body ended */
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return err == -ETIMEDOUT; /* source alive but silent: it was too slow */
    return true;
}

ssize_t coil_http_body_splice(coil_http_request *req, coil_sock *to, int64_t idle_ns)
{
    coil__http_exchange *x = req->x;
    coil__http_conn *c = x->conn;
    coil_http_server *srv = c->srv;
    if (x->body_state == BODY_DONE)
        return 0;
    if (x->body_state == BODY_FAILED)
        return x->body_error;
    if (req->chunked || req->content_length < 0)
        return -EINVAL;
    if (x->body_limit && (uint64_t)req->content_length > x->body_limit)
        return body_fail(x, -EMSGSIZE);
    int err = body_start(x);
    if (err < 0)
        return err;
    const coil_http_timeouts *t = &srv->cfg.timeouts;
    int64_t step_ns = idle_ns > t->body_idle_ns ? idle_ns : t->body_idle_ns;
    /* Nothing may be received behind the parser's back: single-shot
     * receives, and the multishot stopped, so that after the bytes already
     * received the kernel holds exactly the rest of the body (and whatever
     * a pipelining client sent after it). */
    coil_sock_rx_single(&c->sock, true);
    err = coil_sock_rx_stop(&c->sock);
    if (err < 0)
        return body_fail(x, err);
    ssize_t moved = 0;
    /* Bytes already received — in rx, then in buffers the multishot had
     * filled — go through the parser as usual, which keeps its count right
     * and stops at the body's end even when the next request follows in
     * the same buffer. */
    for (;;) {
        size_t used = 0;
        coil__http_event ev = coil__http_parser_feed(x->parser, c->rx.data, c->rx.len, &used);
        if (ev == COIL__HTTP_BODY) {
            size_t len = x->parser->chunk_len;
            ssize_t n = coil_send(to, x->parser->chunk, len, coil_deadline_in(srv->loop, step_ns));
            coil__http_buf_consume(&c->rx, used);
            if (n < 0)
                return body_fail(x, -EPIPE);
            x->body_read += len;
            moved += (ssize_t)len;
            continue;
        }
        if (used)
            coil__http_buf_consume(&c->rx, used);
        if (ev == COIL__HTTP_DONE) {
            x->body_state = BODY_DONE;
            return moved;
        }
        if (ev == COIL__HTTP_ERROR)
            return body_fail(x, x->parser->error_status == 413 ? -EMSGSIZE : -EPROTO);
        coil_buf_release(&c->rx);
        if (!coil_sock_rx_pending(&c->sock))
            break;
        ssize_t n = coil_recv_buf(&c->sock, &c->rx, coil_deadline_in(srv->loop, t->body_idle_ns));
        if (n == 0)
            return body_fail(x, -ECONNRESET);
        if (n < 0)
            return body_fail(x, (int)n);
    }
    /* The rest moves socket to socket. The parser never sees these bytes:
     * once they are all moved the body is marked done, and the parser is
     * reset before the next request is fed to it (server.c), so its state
     * inside this body does not matter any more. */
    uint64_t left = (uint64_t)req->content_length - x->parser->body_seen;
    while (left) {
        if (body_too_slow(x)) {
            srv->stats.timeouts++;
            return body_fail(x, -ETIMEDOUT);
        }
        ssize_t n = coil_splice(&c->sock, to, left, coil_deadline_in(srv->loop, step_ns));
        if (n == 0)
            return body_fail(x, -ECONNRESET);
        if (n < 0) {
            if (!coil__http_splice_source_failed(&c->sock, n))
                return body_fail(x, n == -ECANCELED ? -ECANCELED : -EPIPE);
            if (n == -ETIMEDOUT)
                srv->stats.timeouts++;
            return body_fail(x, n == -EPIPE ? -ECONNRESET : (int)n);
        }
        left -= (uint64_t)n;
        x->body_read += (uint64_t)n;
        moved += n;
    }
    x->body_state = BODY_DONE;
    return moved;
}

ssize_t coil_http_body_read_into(coil_http_request *req, void *buf, size_t len)
{
    coil__http_exchange *x = req->x;
    /* A view bigger than the caller's room is kept and drained first. */
    if (!x->held.len) {
        coil_buf_release(&x->held);
        ssize_t n = coil_http_body_read(req, &x->held);
        if (n <= 0)
            return n;
    }
    size_t n = x->held.len < len ? x->held.len : len;
    memcpy(buf, x->held.data, n);
    x->held.data += n;
    x->held.len -= n;
    if (!x->held.len)
        coil_buf_release(&x->held);
    return (ssize_t)n;
}

ssize_t coil_http_body_read_all(coil_http_request *req, char **out, size_t max)
{
    *out = NULL;
    size_t cap = 0, len = 0;
    char *p = NULL;
    coil_http_set_body_limit(req, max ? max : req->x->body_limit);
    for (;;) {
        coil_buf b;
        ssize_t n = coil_http_body_read(req, &b);
        if (n < 0) {
            free(p);
            return n;
        }
        if (n == 0)
            break;
        if (len + (size_t)n + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            while (ncap < len + (size_t)n + 1)
                ncap *= 2;
            char *np = realloc(p, ncap);
            if (!np) {
                coil_buf_release(&b);
                free(p);
                return -ENOMEM;
            }
            p = np;
            cap = ncap;
        }
        memcpy(p + len, b.data, (size_t)n);
        len += (size_t)n;
        coil_buf_release(&b);
    }
    if (!p && !(p = malloc(1)))
        return -ENOMEM;
    p[len] = '\0';
    *out = p;
    return (ssize_t)len;
}

int coil__http_body_discard(coil__http_exchange *x)
{
    if (x->body_state == BODY_DONE)
        return 0;
    if (x->body_state == BODY_FAILED)
        return x->body_error;
    /* A client that sent Expect: 100-continue and got a final answer will
     * not send the body; the connection cannot be reused safely. */
    if (x->parser->head.expect_continue && !x->continue_sent)
        return body_fail(x, -ECANCELED);
    for (;;) {
        coil_buf b;
        ssize_t n = coil_http_body_read(&x->req, &b);
        coil_buf_release(&b);
        if (n <= 0)
            return (int)n;
    }
}

int coil__http_exchange_finish(coil__http_exchange *x, int handler_result)
{
    coil_buf_release(&x->held);
    /* A limit the handler set was this request's: the next head on the
     * connection is judged by the server's own. */
    x->parser->limits.max_body = x->conn->srv->cfg.limits.max_body;
    if (x->resp_state == RESP_NONE) {
        int status = 500;
        const char *why = NULL;
        if (x->body_state == BODY_FAILED) {
            status = coil_http_body_error_status(x->body_error);
            if (x->body_error == -EPROTO)
                why = x->parser->error_reason;
        } else if (handler_result == -ETIMEDOUT) {
            status = 503;
        }
        if (!status)
            return -ECONNRESET;
        int err = coil__http_respond_error(x, status, why);
        if (err < 0)
            return err;
    } else if (x->resp_state == RESP_BEGUN) {
        if (handler_result < 0 || coil_http_response_end(&x->req, NULL, 0) < 0)
            x->conn->close_after = true;
    } else if (x->resp_state == RESP_FAILED) {
        x->conn->close_after = true;
    }
    if (x->until_close)
        x->conn->close_after = true;
    if (handler_result < 0 && x->resp_state != RESP_ENDED)
        x->conn->close_after = true;
    return 0;
}

int coil_http_wait_client_gone(coil_http_request *req, int64_t deadline)
{
    coil__http_conn *c = req->x->conn;
    for (;;) {
        if (c->rx.len) {
            /* Bytes of a next request are already here: they are kept for
             * it, and only the deadline can end this wait. */
            int err = coil_sleep_until(deadline);
            return err ? err : -ETIMEDOUT;
        }
        coil_buf_release(&c->rx);
        ssize_t n = coil_recv_buf(&c->sock, &c->rx, deadline);
        if (n == 0 || n == -ECONNRESET) {
            c->close_after = true;
            return 0;
        }
        if (n < 0)
            return (int)n;
    }
}
