/*
 * The HTTP server of one core: a listener, an acceptor task, and one task per
 * busy connection. Between requests a connection is parked (no task, no
 * stack, no buffer) and its task ends; the runtime starts a new one when the
 * next bytes arrive. Requests on a connection are answered in order; the
 * responses to pipelined requests leave together.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "http_impl.h"

#define MS (1000LL * 1000)

void coil_http_server_config_default(coil_http_server_config *cfg)
{
    *cfg = (coil_http_server_config){
        .backlog = 1024,
        .limits = {
            .max_request_line = 8192,
            .max_header_bytes = 16384,
            .max_headers = 100,
            .max_chunk_ext = 1024,
            .max_body = 1 << 20,
        },
        .timeouts = {
            .header_ns = 10000 * MS,
            .body_idle_ns = 30000 * MS,
            .body_min_rate = 0,
            .keepalive_ns = 60000 * MS,
            .send_idle_ns = 30000 * MS,
            .drain_ns = 10000 * MS,
        },
    };
}

/* Head arenas (about 28 KiB with the default limits) kept for reuse on this
 * thread, which is one core: a keep-alive connection's task ends at every
 * park, and a fresh allocation and free per request showed in profiles.
 * Bounded; given back when the thread's last server has stopped. */
#define ARENA_CACHE 32

static _Thread_local struct {
    char *mem[ARENA_CACHE];
    unsigned n;
    size_t size;      /* the one size cached */
    unsigned servers; /* servers started and not yet stopped on this thread */
} arenas;

static char *arena_get(size_t size)
{
    if (arenas.n && arenas.size == size)
        return arenas.mem[--arenas.n];
    return malloc(size);
}

static void arena_put(char *mem, size_t size)
{
    if (!arenas.n)
        arenas.size = size;
    if (arenas.n < ARENA_CACHE && arenas.size == size && arenas.servers)
        arenas.mem[arenas.n++] = mem;
    else
        free(mem);
}

static void arenas_release(void)
{
    while (arenas.n)
        free(arenas.mem[--arenas.n]);
}

static void conn_free(coil__http_conn *c)
{
    coil_http_server *srv = c->srv;
    coil_buf_release(&c->rx);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    srv->stats.connections_open--;
    coil_close(&c->sock);
    free(c);
}

/* RFC 9112 9.6: after an error answer, close in stages — stop sending, keep
 * reading (and dropping) for a while so the client sees the answer rather
 * than a reset — and never act on what followed. */
static void drain_and_close(coil__http_conn *c)
{
    coil_loop *loop = c->srv->loop;
    coil_shutdown(&c->sock, SHUT_WR);
    int64_t until = coil_deadline_in(loop, 2000 * MS);
    size_t dropped = 0;
    coil_buf_release(&c->rx);
    while (dropped < (1u << 20)) {
        coil_buf b;
        ssize_t n = coil_recv_buf(&c->sock, &b, until);
        coil_buf_release(&b);
        if (n <= 0)
            break;
        dropped += (size_t)n;
    }
    conn_free(c);
}

static int conn_task(void *arg);

/* Reads until the head is complete. Returns HEAD, ERROR, or NEED_MORE when
 * the connection should just close (end of stream or timeout before a byte
 * of this request). */
static coil__http_event read_head(coil__http_conn *c, coil__http_parser *p, coil__http_exchange *prev,
                                  bool *timed_out)
{
    coil_http_server *srv = c->srv;
    int64_t deadline = coil_deadline_in(srv->loop, srv->cfg.timeouts.header_ns);
    /* Heads arrive through the multishot receive (parked connections too). */
    coil_sock_rx_single(&c->sock, false);
    bool any = false;
    *timed_out = false;
    for (;;) {
        if (!c->rx.len) {
            /* About to wait for the client: what the previous pipelined
             * requests produced goes out first. */
            if (prev && coil__http_flush(prev) < 0)
                return COIL__HTTP_NEED_MORE;
            /* Stopping: a connection with no request under way is idle,
             * closed rather than kept for one more. */
            if (srv->stopping && !any)
                return COIL__HTTP_NEED_MORE;
            c->awaiting = !any;
            ssize_t n = coil_recv_buf(&c->sock, &c->rx, deadline);
            c->awaiting = false;
            if (n <= 0) {
                if (n == -ETIMEDOUT && any) {
                    srv->stats.timeouts++;
                    *timed_out = true;
                    return COIL__HTTP_ERROR;
                }
                return COIL__HTTP_NEED_MORE;
            }
        }
        size_t used = 0;
        coil__http_event ev = coil__http_parser_feed(p, c->rx.data, c->rx.len, &used);
        any = true;
        coil__http_buf_consume(&c->rx, used);
        if (ev != COIL__HTTP_NEED_MORE)
            return ev;
    }
}

static int conn_task(void *arg)
{
    coil__http_conn *c = arg;
    coil_http_server *srv = c->srv;
    const coil_http_limits *lim = &srv->cfg.limits;
    c->task = coil_self();

    size_t arena_size = lim->max_request_line + lim->max_header_bytes +
                        lim->max_headers * sizeof(coil__http_field) + 1024;
    char *arena = arena_get(arena_size);
    char out[COIL__HTTP_OUT_CAP];
    coil__http_limits plim = {
        .max_request_line = lim->max_request_line,
        .max_header_bytes = lim->max_header_bytes,
        .max_headers = lim->max_headers,
        .max_chunk_ext = lim->max_chunk_ext,
        .max_body = lim->max_body,
    };
    coil__http_parser parser;
    coil__http_exchange x;
    bool have_prev = false;
    if (!arena) {
        conn_free(c);
        return 0;
    }
    coil__http_parser_init(&parser, true, &plim, arena, arena_size);
    for (;;) {
        bool timed_out;
        coil__http_event ev = read_head(c, &parser, have_prev ? &x : NULL, &timed_out);
        if (ev == COIL__HTTP_NEED_MORE)
            break; /* closed, idle timeout, or cancelled */
        size_t pending_out = have_prev ? x.out_len : 0;
        coil__http_exchange_init(&x, c, &parser, out);
        x.out_len = pending_out; /* earlier pipelined answers not sent yet */
        x.out_prev = pending_out;
        have_prev = true;
        if (ev == COIL__HTTP_ERROR) {
            srv->stats.errors_4xx_parse++;
            x.req.keep_alive = false;
            if (timed_out)
                coil__http_respond_error(&x, 408, NULL);
            else
                coil__http_respond_error(&x, parser.error_status, parser.error_reason);
            coil__http_flush(&x);
            arena_put(arena, arena_size);
            drain_and_close(c);
            return 0;
        }
        srv->stats.requests++;
        int r = coil_http_call(srv->cfg.service, &x.req);
        if (coil__http_exchange_finish(&x, r) < 0)
            break;
        if (!c->close_after && coil__http_body_discard(&x) < 0)
            c->close_after = true;
        if (c->close_after || srv->stopping || coil_cancelled())
            break;
        if (c->rx.len) {
            coil__http_parser_reset(&parser);
            continue; /* the next request is already here */
        }
        if (coil__http_flush(&x) < 0)
            break;
        have_prev = false;
        /* The next request came in while this one was answered (it waits in
         * the socket's receive queue): go on with it here rather than park
         * and have a new task started for it. */
        if (coil_sock_rx_pending(&c->sock)) {
            coil__http_parser_reset(&parser);
            continue;
        }
        /* Idle: park until the next request, holding no stack or buffer. */
        arena_put(arena, arena_size);
        c->task = NULL;
        if (coil_park(&c->sock, conn_task, c, coil_deadline_in(srv->loop, srv->cfg.timeouts.keepalive_ns)) == 0)
            return 0;
        c->task = coil_self();
        conn_free(c);
        return 0;
    }
    if (have_prev)
        coil__http_flush(&x);
    arena_put(arena, arena_size);
    conn_free(c);
    return 0;
}

static int acceptor(void *arg)
{
    coil_http_server *srv = arg;
    for (;;) {
        coil__http_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            coil_sleep(10 * MS);
            continue;
        }
        int err = coil_accept(&srv->listener, &c->sock, &c->peer, COIL_NO_DEADLINE);
        if (err < 0) {
            free(c);
            if (err == -ECANCELED || srv->stopping)
                break;
            /* Out of descriptors or memory: pause accepting for a moment
             * rather than spin on the error. */
            coil_sleep(10 * MS);
            continue;
        }
        c->srv = srv;
        /* Responses leave in more than one send when streamed: no Nagle. */
        int one = 1;
        setsockopt(c->sock.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->next = srv->conns;
        if (c->next)
            c->next->prev = c;
        srv->conns = c;
        srv->nconns++;
        srv->stats.connections_accepted++;
        srv->stats.connections_open++;
        if (coil_spawn(srv->loop, conn_task, c, NULL) < 0)
            conn_free(c);
    }
    coil_close(&srv->listener);
    srv->acceptor_done = true;
    return 0;
}

int coil_http_server_start(coil_loop *loop, const coil_http_server_config *cfg,
                           coil_http_server **out)
{
    if (!cfg->service || cfg->limits.max_header_bytes < 256 || !cfg->limits.max_headers)
        return -EINVAL;
    coil_http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->loop = loop;
    srv->cfg = *cfg;
    int err = coil_tcp_listen_host(loop, &srv->listener, cfg->host, cfg->port,
                                   cfg->backlog > 0 ? cfg->backlog : 1024,
                                   cfg->reuseport ? COIL_LISTEN_REUSEPORT : 0);
    if (err < 0) {
        free(srv);
        return err;
    }
    err = coil_spawn(loop, acceptor, srv, &srv->acceptor);
    if (err < 0) {
        coil_close(&srv->listener);
        free(srv);
        return err;
    }
    arenas.servers++;
    *out = srv;
    return 0;
}

int coil_http_server_port(const coil_http_server *srv)
{
    return coil_sock_port(&srv->listener);
}

void coil_http_server_stats_get(const coil_http_server *srv, coil_http_server_stats *out)
{
    *out = srv->stats;
}

/* The graceful stop runs as a task of its own: closing sockets that the
 * kernel still holds operations on means waiting. */
static int stopper(void *arg)
{
    coil_http_server *srv = arg;
    coil_cancel(srv->acceptor);
    coil_join(srv->acceptor, NULL);
    int64_t deadline = coil_deadline_in(srv->loop, srv->cfg.timeouts.drain_ns);
    bool cancelled = false;
    while (srv->conns) {
        for (coil__http_conn *c = srv->conns, *next; c; c = next) {
            next = c->next;
            /* Idle connections close now — parked ones, and those whose
             * task still waits for a request's first byte; busy ones
             * finish their request (they see stopping and close after
             * it). */
            if (!c->task && coil_unpark(&c->sock) == 0)
                conn_free(c);
            else if (c->task && c->awaiting)
                coil_cancel(c->task);
        }
        if (!srv->conns)
            break;
        if (!cancelled && coil_now(srv->loop) >= deadline) {
            for (coil__http_conn *c = srv->conns; c; c = c->next)
                if (c->task)
                    coil_cancel(c->task);
            cancelled = true;
        }
        coil_sleep(5 * MS);
    }
    free(srv);
    if (!--arenas.servers)
        arenas_release();
    return 0;
}

void coil_http_server_stop(coil_http_server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    if (coil_spawn(srv->loop, stopper, srv, NULL) < 0) {
        /* No memory for the stopper: at least stop accepting. */
        coil_cancel(srv->acceptor);
    }
}
