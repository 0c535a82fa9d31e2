/*
 * Services and middleware: a function as a service, timeout, concurrency
 * limit, load shedding, access log. Each wraps an inner service the way a
 * tower Layer does; users write their own the same way (a struct beginning
 * with coil_http_service whose call ends in coil_http_call(self->inner, req)).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_impl.h"

#define MS (1000LL * 1000)

static int fn_call(coil_http_service *self, coil_http_request *req)
{
    coil_http_fn_service *s = (coil_http_fn_service *)self;
    return s->fn(req, self->data);
}

coil_http_service *coil_http_fn_init(coil_http_fn_service *s, coil_http_handler_fn fn, void *data)
{
    *s = (coil_http_fn_service){ .svc = { .call = fn_call, .data = data }, .fn = fn };
    return &s->svc;
}

/* ---- timeout ---- */

typedef struct timeout_ctx {
    coil_timer timer;
    coil_task *task;
    coil_loop *loop;
    bool fired;
} timeout_ctx;

/* How often the waits of a handler past its budget are interrupted again. */
#define TIMEOUT_REPEAT_NS (1 * MS)

static void timeout_fired(coil_timer *t)
{
    timeout_ctx *ctx = t->data;
    ctx->fired = true;
    /* Not coil_cancel(): cancellation is sticky for the whole connection
     * task, and the server could then not send the 503 (nor anything else)
     * after the handler returned. An interrupt ends the current wait only;
     * repeating it until the handler returns makes its later waits fail
     * too, so a handler that ignores one error cannot outlive its budget. */
    coil_interrupt(ctx->task, -ETIMEDOUT);
    coil_timer_start(t, coil_deadline_in(ctx->loop, TIMEOUT_REPEAT_NS));
}

static int timeout_call(coil_http_service *self, coil_http_request *req)
{
    coil_http_timeout *t = (coil_http_timeout *)self;
    timeout_ctx ctx = { .task = coil_self(), .loop = req->loop };
    coil_timer_init(req->loop, &ctx.timer, timeout_fired);
    ctx.timer.data = &ctx;
    coil_timer_start(&ctx.timer, coil_deadline_in(req->loop, t->ns));
    int r = coil_http_call(self->inner, req);
    coil_timer_stop(&ctx.timer);
    if (ctx.fired) {
        /* An interrupt that no wait consumed would fail the server's next
         * send: a yield takes it. */
        coil_yield();
        if (!coil_http_response_started(req))
            req->x->conn->close_after = true;
        return -ETIMEDOUT; /* the server answers 503 if nothing was sent */
    }
    return r;
}

coil_http_service *coil_http_timeout_init(coil_http_timeout *t, coil_http_service *inner, int64_t ns)
{
    *t = (coil_http_timeout){ .svc = { .call = timeout_call, .inner = inner }, .ns = ns };
    return &t->svc;
}

/* ---- concurrency limit ---- */

static int overloaded(coil_http_request *req)
{
    coil_http_field ra = COIL_HTTP_FIELD("Retry-After", "1");
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    coil_http_field f[2] = { ra, ct };
    static const char body[] = "503 Service Unavailable: overloaded\n";
    return coil_http_respond(req, 503, f, 2, body, sizeof(body) - 1);
}

static int concurrency_call(coil_http_service *self, coil_http_request *req)
{
    coil_http_concurrency *c = (coil_http_concurrency *)self;
    int64_t deadline = coil_deadline_in(req->loop, c->wait_ns);
    while (c->running >= c->max) {
        int err = coil_event_wait(&c->freed, deadline);
        if (err == -ETIMEDOUT)
            return overloaded(req);
        if (err < 0)
            return err;
    }
    c->running++;
    int r = coil_http_call(self->inner, req);
    c->running--;
    coil_event_notify_one(&c->freed);
    return r;
}

coil_http_service *coil_http_concurrency_init(coil_http_concurrency *c, coil_http_service *inner,
                                              unsigned max, int64_t wait_ns)
{
    *c = (coil_http_concurrency){ .svc = { .call = concurrency_call, .inner = inner },
                                  .max = max ? max : 1,
                                  .wait_ns = wait_ns };
    coil_event_init(&c->freed);
    return &c->svc;
}

/* ---- load shedding ---- */

static int shed_call(coil_http_service *self, coil_http_request *req)
{
    coil_http_shed *s = (coil_http_shed *)self;
    if (s->running >= s->max) {
        s->shed++;
        return overloaded(req);
    }
    s->running++;
    int r = coil_http_call(self->inner, req);
    s->running--;
    return r;
}

coil_http_service *coil_http_shed_init(coil_http_shed *s, coil_http_service *inner, unsigned max)
{
    *s = (coil_http_shed){ .svc = { .call = shed_call, .inner = inner }, .max = max };
    return &s->svc;
}

/* ---- access log ---- */

#define LOG_FLUSH_BYTES 8192

static void log_write_out(coil_http_access_log *a)
{
    if (a->sink) {
        coil_http_log_sink_put(a->sink, a->buf, a->len);
        a->len = 0;
        return;
    }
    size_t off = 0;
    while (off < a->len) {
        ssize_t n = write(a->fd, a->buf + off, a->len - off);
        if (n <= 0)
            break; /* a failing log must not stop serving */
        off += (size_t)n;
    }
    a->len = 0;
}

static void log_flush_timer(coil_timer *t)
{
    log_write_out(t->data);
}

static void peer_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)len);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)len);
    else
        snprintf(out, len, "-");
}

static int log_call(coil_http_service *self, coil_http_request *req)
{
    coil_http_access_log *a = (coil_http_access_log *)self;
    int r = coil_http_call(self->inner, req);
    coil__http_exchange *x = req->x;
    char peer[64], when[40];
    peer_text(req->peer, peer, sizeof(peer));
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int64_t took_us = (coil_now(req->loop) - req->start_ns) / 1000;
    char line[768];
    int n = snprintf(line, sizeof(line), "%s %s \"%.*s %.*s\" %d %llu %llu %lldus core=%u%s%s\n",
                     when, peer, (int)req->method_len, req->method,
                     (int)(req->target_len > 256 ? 256 : req->target_len), req->target,
                     x->status ? x->status : 500, (unsigned long long)x->body_read,
                     (unsigned long long)x->bytes_out, (long long)took_us, req->core,
                     x->log_note[0] ? " " : "", x->log_note);
    if (n > 0) {
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        if (a->len + len > a->cap)
            log_write_out(a);
        if (len <= a->cap) {
            memcpy(a->buf + a->len, line, len);
            a->len += len;
        }
        if (a->len >= LOG_FLUSH_BYTES)
            log_write_out(a);
        else if (!coil_timer_active(&a->flush_timer))
            coil_timer_start(&a->flush_timer, coil_deadline_in(req->loop, 1000 * MS));
    }
    return r;
}

coil_http_service *coil_http_access_log_init(coil_http_access_log *a, coil_http_service *inner,
                                             coil_loop *loop, int fd)
{
    *a = (coil_http_access_log){ .svc = { .call = log_call, .inner = inner }, .fd = fd };
    a->cap = 2 * LOG_FLUSH_BYTES;
    a->buf = malloc(a->cap);
    if (!a->buf)
        a->cap = 0;
    coil_timer_init(loop, &a->flush_timer, log_flush_timer);
    a->flush_timer.data = a;
    return &a->svc;
}

coil_http_service *coil_http_access_log_init_sink(coil_http_access_log *a, coil_http_service *inner,
                                                  coil_loop *loop, coil_http_log_sink *sink)
{
    coil_http_service *svc = coil_http_access_log_init(a, inner, loop, -1);
    a->sink = sink;
    return svc;
}

void coil_http_access_log_exit(coil_http_access_log *a)
{
    coil_timer_stop(&a->flush_timer);
    log_write_out(a);
    free(a->buf);
    a->buf = NULL;
    a->cap = 0;
}
