/*
 * The forwarding service: route, pick a peer, re-serialise the request head
 * (never the raw bytes of the client's message), stream the body up, read
 * the response head, stream the body down. Bodies move as borrowed views:
 * a chunk received from one socket is sent to the other from the buffer it
 * arrived in, inside this one task. With forward = splice, Content-Length
 * bodies skip user space altogether (coil_splice through a pipe); chunked
 * bodies, which are re-framed, still take the buffers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

#define HEAD_CAP (64 * 1024)

static bool name_is(const coil_http_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

/* Is name listed in a Connection field (comma-separated tokens)? */
static bool named_by_connection(const coil_http_field *fields, uint32_t nfields,
                                const coil_http_field *f)
{
    for (uint32_t i = 0; i < nfields; i++) {
        if (!name_is(&fields[i], "connection"))
            continue;
        const char *v = fields[i].value, *end = v + fields[i].value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                v++;
            const char *t = v;
            while (v < end && *v != ',' && *v != ' ' && *v != '\t')
                v++;
            if ((size_t)(v - t) == f->name_len && strncasecmp(t, f->name, f->name_len) == 0)
                return true;
        }
    }
    return false;
}

/* Hop-by-hop fields (RFC 9110 7.6.1) and the framing we set ourselves. */
static bool hop_by_hop(const coil_http_field *fields, uint32_t n, const coil_http_field *f)
{
    static const char *const names[] = { "connection", "keep-alive", "te", "trailer", "upgrade",
                                         "proxy-connection", "transfer-encoding",
                                         "content-length" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name_is(f, names[i]))
            return true;
    return named_by_connection(fields, n, f);
}

typedef struct head_buf {
    char *p;
    size_t len, cap;
    bool overflow;
} head_buf;

static void put(head_buf *h, const void *s, size_t n)
{
    if (h->len + n > h->cap) {
        h->overflow = true;
        return;
    }
    memcpy(h->p + h->len, s, n);
    h->len += n;
}

static void puts_(head_buf *h, const char *s)
{
    put(h, s, strlen(s));
}

static void client_ip(const coil_http_request *req, char *out, size_t len)
{
    const struct sockaddr_storage *ss = req->peer;
    if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)len);
    else if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)len);
    else
        snprintf(out, len, "unknown");
}

static void build_request_head(head_buf *h, coil_http_request *req, bool chunked)
{
    put(h, req->method, req->method_len);
    puts_(h, " ");
    put(h, req->target, req->target_len);
    puts_(h, " HTTP/1.1\r\n");
    const coil_http_field *xff = NULL;
    bool have_host = false;
    for (uint32_t i = 0; i < req->nfields; i++) {
        const coil_http_field *f = &req->fields[i];
        if (hop_by_hop(req->fields, req->nfields, f))
            continue;
        if (name_is(f, "x-forwarded-for")) {
            xff = f;
            continue;
        }
        if (name_is(f, "x-forwarded-proto") || name_is(f, "x-forwarded-host"))
            continue;
        have_host |= name_is(f, "host");
        put(h, f->name, f->name_len);
        puts_(h, ": ");
        put(h, f->value, f->value_len);
        puts_(h, "\r\n");
    }
    if (!have_host && req->host_len) {
        puts_(h, "Host: ");
        put(h, req->host, req->host_len);
        puts_(h, "\r\n");
    }
    char ip[64];
    client_ip(req, ip, sizeof(ip));
    puts_(h, "X-Forwarded-For: ");
    if (xff) {
        put(h, xff->value, xff->value_len);
        puts_(h, ", ");
    }
    puts_(h, ip);
    puts_(h, "\r\nX-Forwarded-Proto: http\r\n");
    if (req->host_len) {
        puts_(h, "X-Forwarded-Host: ");
        put(h, req->host, req->host_len);
        puts_(h, "\r\n");
    }
    puts_(h, "Via: 1.1 coil-proxy\r\n");
    char line[64];
    if (chunked)
        puts_(h, "Transfer-Encoding: chunked\r\n");
    else if (req->content_length > 0) {
        snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)req->content_length);
        puts_(h, line);
    }
    puts_(h, "\r\n");
}

static const px_route *route_for(const px_config *cfg, const coil_http_request *req)
{
    const px_route *best = NULL;
    /* The port is not part of a route's host: "a:8080" -> "a",
     * "[::1]:8080" -> "[::1]". */
    size_t host_len = req->host_len;
    if (req->host && host_len && req->host[0] == '[') {
        const char *close = memchr(req->host, ']', host_len);
        if (close)
            host_len = (size_t)(close - req->host) + 1;
    } else if (req->host) {
        const char *colon = memchr(req->host, ':', host_len);
        if (colon)
            host_len = (size_t)(colon - req->host);
    }
    for (unsigned i = 0; i < cfg->nroutes; i++) {
        const px_route *r = &cfg->routes[i];
        if (r->host[0] && (strlen(r->host) != host_len || strncasecmp(r->host, req->host, host_len)))
            continue;
        size_t pl = strlen(r->path_prefix);
        if (req->path_len < pl || memcmp(req->path, r->path_prefix, pl) != 0)
            continue;
        /* A route for this very host beats a catch-all; then the longest prefix. */
        if (!best || (r->host[0] && !best->host[0]) ||
            (!!r->host[0] == !!best->host[0] && pl > strlen(best->path_prefix)))
            best = r;
    }
    return best;
}

static int error_answer(coil_http_request *req, int status, const char *why)
{
    if (coil_http_response_started(req))
        return -EPIPE;
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, coil_http_reason(status), why);
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    coil_http_respond(req, status, &ct, 1, body, (size_t)n);
    return 0;
}

/* One body chunk up, re-framed when chunked. */
static ssize_t send_up(coil_sock *s, coil_buf *b, bool chunked, int64_t deadline)
{
    if (!chunked)
        return coil_send_buf(s, b, deadline);
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", b->len);
    struct iovec iov[3] = { { size, (size_t)n }, { b->data, b->len }, { "\r\n", 2 } };
    ssize_t r = coil_sendv(s, iov, 3, deadline);
    coil_buf_release(b);
    return r;
}

static bool idempotent(const coil_http_request *req)
{
    static const char *const m[] = { "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE" };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (coil_http_method_is(req, m[i]))
            return true;
    return false;
}

static void account(px_core *core, coil_http_request *req, int status)
{
    px_metrics *m = &core->metrics;
    m->requests++;
    m->by_class[status >= 100 && status < 600 ? status / 100 : 0]++;
    int64_t us = (coil_now(core->loop) - req->start_ns) / 1000;
    static const int64_t bounds_us[] = { 1000, 2500, 5000, 10000, 25000, 50000, 100000,
                                         250000, 500000, 1000000, 2500000 };
    unsigned b = 0;
    while (b < 11 && us > bounds_us[b])
        b++;
    m->latency_buckets[b]++;
    m->latency_sum_us += (uint64_t)(us > 0 ? us : 0);
}

static int forward(coil_http_service *self, coil_http_request *req)
{
    px_core *core = self->data;
    const px_route *route = route_for(core->cfg, req);
    if (!route) {
        account(core, req, 404);
        return error_answer(req, 404, "no route");
    }
    px_group *g = &core->groups[route->upstream - core->cfg->upstreams];
    if (route->max_body)
        coil_http_set_body_limit(req, route->max_body);
    bool chunked_up = req->chunked;
    char *head = malloc(HEAD_CAP);
    if (!head)
        return -ENOMEM;
    head_buf hb = { .p = head, .cap = HEAD_CAP };
    build_request_head(&hb, req, chunked_up);
    if (hb.overflow) {
        free(head);
        account(core, req, 431);
        return error_answer(req, 431, "request head too large to forward");
    }

    px_peer *peer = NULL;
    coil_http_client *up = NULL;
    int err = -ECONNREFUSED;
    unsigned attempts = 1 + g->conf->retries;
    for (unsigned a = 0; a < attempts && !up; a++) {
        peer = px_pick(core, g, req, a ? peer : NULL);
        if (!peer)
            break;
        bool reused;
        err = px_connect(core, g, peer, &up, &reused);
        if (err < 0) {
            px_peer_failed(core, g, peer);
            continue;
        }
        /* Nothing of the body was read yet, so a failed head is safe to
         * send again elsewhere. */
        ssize_t n = coil_send(coil_http_client_sock(up), head, hb.len,
                              coil_deadline_in(core->loop, g->conf->idle_timeout_ns));
        if (n < 0) {
            coil_http_client_close(up);
            up = NULL;
            err = (int)n;
            if (!reused)
                px_peer_failed(core, g, peer);
        }
    }
    free(head);
    if (!up) {
        core->metrics.upstream_errors++;
        account(core, req, 502);
        return error_answer(req, 502, err == -ETIMEDOUT ? "upstream connect timed out"
                                                        : "upstream unreachable");
    }
    peer->outstanding++;
    peer->requests++;
    int64_t idle = g->conf->idle_timeout_ns;
    int status = 0;
    int result = 0;

    /* forward = splice: a Content-Length body goes socket to socket in the
     * kernel; a chunked one is re-framed, so it always takes the buffers. */
    bool splice = strcmp(core->cfg->forward_mode, "splice") == 0;
    bool body_moved = false;
    if (splice && !chunked_up && req->content_length > 0) {
        ssize_t n = coil_http_body_splice(req, coil_http_client_sock(up), idle);
        if (n == -EPIPE) {
            px_peer_failed(core, g, peer);
            error_answer(req, 502, "upstream stopped reading the request");
            status = 502;
            goto drop;
        }
        if (n < 0 && n != -EINVAL) {
            result = (int)n;
            goto drop;
        }
        if (n >= 0) {
            core->metrics.bytes_in += (uint64_t)n;
            body_moved = true;
        }
    }

    /* Request body up, chunk by chunk, at the client's pace. */
    while (!body_moved) {
        coil_buf b;
        ssize_t n = coil_http_body_read(req, &b);
        if (n == 0)
            break;
        if (n < 0) {
            /* The client failed (or sent too much): the upstream request is
             * abandoned and its connection not reused. */
            result = (int)n;
            goto drop;
        }
        core->metrics.bytes_in += (uint64_t)n;
        if (send_up(coil_http_client_sock(up), &b, chunked_up, coil_deadline_in(core->loop, idle)) < 0) {
            px_peer_failed(core, g, peer);
            error_answer(req, 502, "upstream stopped reading the request");
            status = 502;
            goto drop;
        }
    }
    if (chunked_up && coil_send(coil_http_client_sock(up), "0\r\n\r\n", 5,
                                coil_deadline_in(core->loop, idle)) < 0) {
        px_peer_failed(core, g, peer);
        error_answer(req, 502, "upstream stopped reading the request");
        status = 502;
        goto drop;
    }

    coil_http_response_head rh;
    char method[32];
    snprintf(method, sizeof(method), "%.*s", (int)req->method_len, req->method);
    err = coil_http_client_read_head(up, method, coil_deadline_in(core->loop, g->conf->response_timeout_ns), &rh);
    if (err < 0) {
        px_peer_failed(core, g, peer);
        if (err == -ETIMEDOUT) {
            core->metrics.upstream_timeouts++;
            error_answer(req, 504, "upstream timed out");
            status = 504;
        } else {
            core->metrics.upstream_errors++;
            error_answer(req, 502, err == -EPROTO ? "malformed upstream response"
                                                  : "upstream closed the connection");
            status = 502;
        }
        (void)idempotent;
        goto drop;
    }
    px_peer_ok(peer);
    status = rh.status;

    /* Response head down: the upstream's fields minus hop-by-hop ones. */
    coil_http_field fields[130];
    unsigned nf = 0;
    for (uint32_t i = 0; i < rh.nfields && nf < 128; i++) {
        const coil_http_field *f = &rh.fields[i];
        if (hop_by_hop(rh.fields, rh.nfields, f) || name_is(f, "date"))
            continue;
        fields[nf++] = *f;
    }
    fields[nf++] = (coil_http_field)COIL_HTTP_FIELD("Via", "1.1 coil-proxy");
    int64_t len = rh.chunked || !rh.has_body ? (rh.has_body ? -1 : 0) : rh.content_length;
    if (!rh.has_body && rh.content_length >= 0)
        len = rh.content_length; /* HEAD / 304: keep the announced length */
    err = coil_http_response_begin(req, rh.status, fields, nf, len);
    if (err < 0) {
        result = err;
        goto drop;
    }
    body_moved = false;
    if (splice && rh.has_body && !rh.chunked && len > 0) {
        ssize_t n = coil_http_response_splice_from(req, up, idle);
        if (n == -EPIPE) {
            result = -EPIPE;
            goto drop;
        }
        if (n < 0 && n != -EINVAL) {
            /* The upstream died mid-body: as below. */
            px_peer_failed(core, g, peer);
            core->metrics.upstream_errors++;
            result = -EPROTO;
            goto drop;
        }
        if (n >= 0) {
            core->metrics.bytes_out += (uint64_t)n;
            body_moved = true;
        }
    }
    while (!body_moved) {
        coil_buf b;
        ssize_t n = coil_http_client_read_body(up, &b, coil_deadline_in(core->loop, idle));
        if (n == 0)
            break;
        if (n < 0) {
            /* The upstream died mid-body: the client must not see a clean
             * end, so the handler fails and the connection is closed. */
            px_peer_failed(core, g, peer);
            core->metrics.upstream_errors++;
            result = -EPROTO;
            goto drop;
        }
        core->metrics.bytes_out += (uint64_t)n;
        if (coil_http_response_write_buf(req, &b) < 0) {
            result = -EPIPE;
            goto drop;
        }
    }
    coil_http_response_end(req, NULL, 0);
    peer->outstanding--;
    px_release(core, g, peer, up);
    account(core, req, status);
    return 0;

drop:
    peer->outstanding--;
    coil_http_client_close(up);
    account(core, req, status);
    return result;
}

void px_service_init(px_core *core)
{
    core->svc = (coil_http_service){ .call = forward, .data = core };
}
