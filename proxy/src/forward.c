/*
 * The forwarding service: route, pick a peer, re-serialise the request head
 * (never the raw bytes of the client's message), then move the request body
 * up while the response comes down. Bodies move as borrowed views: a chunk
 * received from one socket is sent to the other from the buffer it arrived
 * in. A request without a body runs in the handler's task alone; one with a
 * body gets a second task for the way up (upload.c), so an upstream that
 * answers early, or echoes the body as it comes, is never stuck behind it.
 * With forward = splice, Content-Length bodies skip user space altogether
 * (coil_splice through a pipe); chunked bodies, which are re-framed, still
 * take the buffers. Expect: 100-continue goes to the upstream, whose 100 is
 * relayed; Upgrade requests become a tunnel after a 101 (tunnel.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "forward.h"

#define HEAD_CAP (64 * 1024)

/* How long a request with Expect: 100-continue waits for the upstream's 100
 * before its body goes up anyway (an upstream may ignore expectations;
 * clients give up waiting after about as long). */
#define EXPECT_WAIT_NS (1000 * 1000 * 1000LL)

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
    /* A body not read to its end is not worth reading just to drop it. */
    if (req->chunked || req->content_length > 0)
        coil_http_connection_close(req);
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, coil_http_reason(status), why);
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    coil_http_respond(req, status, &ct, 1, body, (size_t)n);
    return 0;
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

/* One request on its way through. */
typedef struct fwd {
    px_core *core;
    px_group *g;
    px_peer *peer;
    coil_http_request *req;
    coil_http_client *up;
    char method[32];
    px_upload upload;
    bool uploading;            /* upload holds a task */
    bool reusable;             /* the upstream connection may be pooled afterwards */
    bool reused;               /* the connection came from the pool */
    int64_t up_start_ns;       /* first connect attempt */
    int64_t head_sent_ns;
    int status;                /* for metrics and the log */
} fwd;

static void log_note(fwd *f)
{
    if (!f->core->cfg->access_log[0])
        return; /* nobody reads it */
    char note[192];
    if (f->peer)
        snprintf(note, sizeof(note), "upstream=%s upstream_us=%lld", f->peer->conf->addr_text,
                 (long long)((coil_now(f->core->loop) - f->up_start_ns) / 1000));
    else
        snprintf(note, sizeof(note), "upstream=- upstream_us=-");
    coil_http_log_note(f->req, note);
}

/* Connects (pooled or new) and sends the head, trying other peers while it
 * is safe: nothing of the body was read yet, so a failed head can go again
 * elsewhere. Returns 0, or the last error. */
static int connect_and_send(fwd *f, const char *head, size_t len)
{
    px_core *core = f->core;
    px_group *g = f->g;
    int err = -ECONNREFUSED;
    unsigned attempts = 1 + g->conf->retries;
    f->up_start_ns = coil_now(core->loop);
    for (unsigned a = 0; a < attempts; a++) {
        px_peer *p = px_pick(core, g, f->req, a ? f->peer : NULL);
        if (!p)
            break;
        f->peer = p;
        bool reused;
        err = px_connect(core, g, p, &f->up, &reused);
        f->reused = reused;
        if (err < 0) {
            px_peer_failed(core, g, p);
            continue;
        }
        ssize_t n = coil_send(coil_http_client_sock(f->up), head, len,
                              coil_deadline_in(core->loop, g->conf->idle_timeout_ns));
        if (n >= 0) {
            f->head_sent_ns = coil_now(core->loop);
            return 0;
        }
        coil_http_client_close(f->up);
        f->up = NULL;
        err = (int)n;
        if (!reused)
            px_peer_failed(core, g, p);
    }
    return err;
}

/* The request body may go up now: after the upstream's 100, or after
 * waiting for it long enough. */
static int open_body(fwd *f)
{
    coil_http_client_report_continue(f->up, false);
    int err = coil_http_send_continue(f->req);
    px_upload_open(&f->upload, err == 0);
    return err;
}

/* Waits for the final response head. The response timeout runs from the
 * moment the whole request went up: while the body still moves, the wait
 * goes on in steps. */
static int read_final_head(fwd *f, bool expect, coil_http_response_head *rh)
{
    coil_loop *loop = f->core->loop;
    int64_t rt = f->g->conf->response_timeout_ns;
    int64_t expect_deadline = expect ? coil_deadline_in(loop, EXPECT_WAIT_NS) : 0;
    coil_http_client_report_continue(f->up, expect);
    for (;;) {
        bool body_moving = f->uploading && !f->upload.done;
        int64_t sent = f->uploading ? f->upload.done_ns : f->head_sent_ns;
        int64_t deadline = body_moving ? coil_deadline_in(loop, rt) : sent + rt;
        if (expect_deadline && expect_deadline < deadline)
            deadline = expect_deadline;
        int err = coil_http_client_read_head(f->up, f->method, deadline, rh);
        if (err == 0 && rh->status == 100) {
            expect_deadline = 0;
            if (open_body(f) < 0)
                return -ECONNABORTED; /* the client is gone */
            continue;
        }
        if (err != -ETIMEDOUT)
            return err;
        if (expect_deadline && coil_now(loop) >= expect_deadline) {
            expect_deadline = 0;
            if (open_body(f) < 0)
                return -ECONNABORTED; /* the client is gone */
            continue;
        }
        if (f->uploading && !f->upload.done)
            continue; /* the clock starts once the body is up */
        sent = f->uploading ? f->upload.done_ns : f->head_sent_ns;
        if (coil_now(loop) < sent + rt)
            continue;
        return -ETIMEDOUT;
    }
}

/* Ends the upload: cancelled if still under way. A body that did not go up
 * whole leaves neither connection fit for another request. */
static void upload_end(fwd *f)
{
    if (!f->uploading)
        return;
    bool whole = px_upload_finish(&f->upload, !f->upload.done);
    f->uploading = false;
    f->core->metrics.bytes_in += f->upload.bytes;
    if (!whole) {
        f->reusable = false;
        if (f->upload.client_error == 0)
            coil_http_connection_close(f->req);
    }
}

/* The upstream failed before a usable response head: answer for it. */
static int head_failed(fwd *f, int err)
{
    px_core *core = f->core;
    int client_error = f->uploading ? f->upload.client_error : 0;
    bool upstream_stopped = f->uploading && f->upload.upstream_failed;
    upload_end(f);
    if (client_error < 0 || err == -ECANCELED || err == -ECONNABORTED) {
        /* The client failed or went away (the server answers 413, 408 or
         * 400 as the body error says): nothing to blame on the upstream. */
        f->status = coil_http_body_error_status(client_error);
        return client_error < 0 ? client_error : err;
    }
    px_peer_failed(core, f->g, f->peer);
    if (err == -ETIMEDOUT) {
        core->metrics.upstream_timeouts++;
        f->status = 504;
        return error_answer(f->req, 504, "upstream timed out");
    }
    core->metrics.upstream_errors++;
    f->status = 502;
    return error_answer(f->req, 502, upstream_stopped  ? "upstream stopped reading the request"
                                     : err == -EPROTO ? "malformed upstream response"
                                                      : "upstream closed the connection");
}

/* Response body pieces already received are gathered for one send until
 * they reach this many bytes (a receive buffer is 16 KiB, so a send
 * carries about one 64 KiB loopback segment) or COIL_HTTP_WRITE_BUFS_MAX
 * pieces: a send per receive buffer cost a 1 GiB download 850 to 1 060 ms
 * of CPU, gathered 590 to 770. (The request body going up gained nothing
 * measurable from the same: upload.c sends piece by piece.) */
#define PX_GATHER_BYTES (48 * 1024)

/* The response body down, as it arrives: the pieces already here leave
 * together, in one send (coil_http_response_write_bufs). Returns 0 or a
 * negative errno (the client then sees no clean end). */
static int response_body(fwd *f, const coil_http_response_head *rh, int64_t len)
{
    px_core *core = f->core;
    int64_t idle = f->g->conf->idle_timeout_ns;
    if (!strcmp(core->cfg->forward_mode, "splice") && rh->has_body && !rh->chunked && len > 0) {
        ssize_t n = coil_http_response_splice_from(f->req, f->up, idle);
        if (n >= 0) {
            core->metrics.bytes_out += (uint64_t)n;
            return 0;
        }
        if (n == -EPIPE)
            return -EPIPE;
        if (n != -EINVAL)
            goto upstream_died;
    }
    for (;;) {
        coil_buf b[COIL_HTTP_WRITE_BUFS_MAX];
        unsigned k = 0;
        size_t held = 0;
        ssize_t n;
        bool ahead = false; /* more of the body already received */
        do {
            n = coil_http_client_read_body(f->up, &b[k], coil_deadline_in(core->loop, idle));
            if (n <= 0)
                break;
            held += (size_t)n;
            k++;
            ahead = coil_http_client_body_ahead(f->up);
        } while (k < COIL_HTTP_WRITE_BUFS_MAX && held < PX_GATHER_BYTES && ahead);
        if (k) {
            core->metrics.bytes_out += held;
            bool more = n > 0 && ahead;
            if (coil_http_response_write_bufs(f->req, b, k, more) < 0)
                return -EPIPE;
        }
        if (n == 0)
            return 0;
        if (n < 0)
            goto upstream_died;
    }
upstream_died:
    /* The client must not see a clean end: the handler fails and the
     * connection closes. */
    px_peer_failed(core, f->g, f->peer);
    core->metrics.upstream_errors++;
    return -EPROTO;
}

/* After a 101: the client's connection and the upstream's carry the new
 * protocol until either side is done. */
static int tunnel(fwd *f, const coil_http_response_head *rh)
{
    coil_http_field fields[130];
    unsigned nf = px_response_fields(rh, fields, 130);
    coil_sock *client;
    coil_buf client_early, up_early;
    int err = coil_http_upgrade(f->req, fields, nf, &client, &client_early);
    f->reusable = false;
    if (err < 0)
        return err;
    coil_http_client_take_rest(f->up, &up_early);
    uint64_t up_bytes, down_bytes;
    px_tunnel(f->core, client, &client_early, coil_http_client_sock(f->up), &up_early,
              f->g->conf->tunnel_timeout_ns, &up_bytes, &down_bytes);
    f->core->metrics.bytes_in += up_bytes;
    f->core->metrics.bytes_out += down_bytes;
    return 0;
}

/* A request that may go again after a pooled connection turned out to be
 * closed: nothing of it was acted on (no byte of an answer came), it has
 * no body to send twice, and its method is idempotent. */
static bool may_resend(const fwd *f, int err)
{
    static const char *const m[] = { "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE" };
    const coil_http_request *req = f->req;
    if (err != -ECONNRESET || !f->reused || req->chunked || req->content_length > 0)
        return false;
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (coil_http_method_is(req, m[i]))
            return true;
    return false;
}

/* Returns -EAGAIN, without answering, when the request may go again on
 * another connection (retry: see may_resend). */
static int relay(fwd *f, bool tunnelling, coil_buf *first, bool retry)
{
    coil_http_request *req = f->req;
    bool has_body = req->chunked || req->content_length > 0;
    bool expect = has_body && req->expect_continue;
    if (has_body) {
        int err = px_upload_start(&f->upload, f->core, req, coil_http_client_sock(f->up), first,
                                  req->chunked, !strcmp(f->core->cfg->forward_mode, "splice"),
                                  f->g->conf->idle_timeout_ns, expect);
        if (err < 0)
            return err;
        f->uploading = true;
    }
    coil_http_response_head rh;
    int err = read_final_head(f, expect, &rh);
    if (err < 0 && retry && may_resend(f, err))
        return -EAGAIN; /* the upstream closed a pooled connection as we used it */
    if (err < 0)
        return head_failed(f, err);
    px_peer_ok(f->peer);
    f->status = rh.status;
    if (rh.status == 101) {
        if (!tunnelling) {
            upload_end(f);
            f->status = 502;
            return error_answer(req, 502, "upstream switched protocols unasked");
        }
        return tunnel(f, &rh);
    }
    coil_http_field fields[130];
    unsigned nf = px_response_fields(&rh, fields, 130);
    int64_t len = rh.chunked || !rh.has_body ? (rh.has_body ? -1 : 0) : rh.content_length;
    if (!rh.has_body && rh.content_length >= 0)
        len = rh.content_length; /* HEAD / 304: keep the announced length */
    err = coil_http_response_begin(req, rh.status, fields, nf, len);
    if (err == 0)
        err = response_body(f, &rh, len);
    /* An upstream that answered before taking the whole body does not get
     * the rest: the upload ends here. */
    upload_end(f);
    if (err < 0) {
        f->reusable = false;
        return err;
    }
    coil_http_response_end(req, NULL, 0);
    return 0;
}

static int forward(coil_http_service *self, coil_http_request *req)
{
    px_core *core = self->data;
    fwd f = { .core = core, .req = req, .reusable = true };
    const px_route *route = route_for(core->cfg, req);
    if (!route) {
        account(core, req, 404);
        return error_answer(req, 404, "no route");
    }
    f.g = &core->groups[route->upstream - core->cfg->upstreams];
    uint64_t limit = route->max_body ? route->max_body : core->cfg->max_body;
    coil_http_set_body_limit(req, limit);
    if (limit && req->content_length > 0 && (uint64_t)req->content_length > limit) {
        account(core, req, 413);
        return error_answer(req, 413, "request body too large");
    }
    bool has_body = req->chunked || req->content_length > 0;
    bool tunnelling = req->upgrade && !has_body;
    size_t mlen = req->method_len < sizeof(f.method) - 1 ? req->method_len : sizeof(f.method) - 1;
    memcpy(f.method, req->method, mlen);
    f.method[mlen] = '\0';

    /* The first body bytes before any upstream is chosen: a client that
     * sends a head and nothing more holds no upstream connection, and a
     * body malformed from its first chunk line never reaches one. A client
     * that expects 100-continue waits for the upstream's word instead. */
    coil_buf first = { 0 };
    if (has_body && !req->expect_continue) {
        ssize_t n = coil_http_body_read(req, &first);
        if (n < 0) {
            account(core, req, coil_http_body_error_status((int)n));
            return (int)n;
        }
    }

    /* Most heads fit in a page on the task's stack; a large one is built
     * again in a bigger buffer. */
    char small[4096];
    char *big = NULL;
    px_head_buf hb = { .p = small, .cap = sizeof(small) };
    px_build_request_head(&hb, req, req->chunked, tunnelling);
    if (hb.overflow) {
        if (!(big = malloc(HEAD_CAP))) {
            coil_buf_release(&first);
            return -ENOMEM;
        }
        hb = (px_head_buf){ .p = big, .cap = HEAD_CAP };
        px_build_request_head(&hb, req, req->chunked, tunnelling);
    }
    if (hb.overflow) {
        free(big);
        account(core, req, 431);
        return error_answer(req, 431, "request head too large to forward");
    }
    int result;
    for (unsigned again = f.g->conf->retries;; again--) {
        int err = connect_and_send(&f, hb.p, hb.len);
        if (err < 0) {
            free(big);
            coil_buf_release(&first);
            core->metrics.upstream_errors++;
            account(core, req, 502);
            log_note(&f);
            return error_answer(req, 502, err == -ETIMEDOUT ? "upstream connect timed out"
                                                            : "upstream unreachable");
        }
        f.peer->outstanding++;
        f.peer->requests++;
        result = relay(&f, tunnelling, &first, again > 0);
        f.peer->outstanding--;
        if (result != -EAGAIN)
            break;
        coil_http_client_close(f.up);
        f.up = NULL;
        f.reusable = true;
    }
    free(big);
    if (f.reusable && result == 0)
        px_release(core, f.g, f.peer, f.up);
    else
        coil_http_client_close(f.up);
    log_note(&f);
    account(core, req, f.status);
    return result;
}

void px_service_init(px_core *core)
{
    core->svc = (coil_http_service){ .call = forward, .data = core };
}
