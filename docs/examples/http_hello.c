/*
 * http_hello: the HTTP layer on every core.
 *
 *   GET  /           plaintext hello
 *   POST /echo       streams the request body back as it arrives (chunked),
 *                    from the very buffers it was received in
 *   GET  /events     server-sent events: one event every 100 ms, forever;
 *                    the handler holds no thread and ends when the client goes
 *
 *   http_hello [--port N] [--host ADDR] [--cores N]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coil/http.h"

#define MS (1000LL * 1000)

static int hello(coil_http_request *req, void *data)
{
    (void)data;
    static const char body[] = "Hello, World!\n";
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    return coil_http_respond(req, 200, &ct, 1, body, sizeof(body) - 1);
}

static int echo(coil_http_request *req, void *data)
{
    (void)data;
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "application/octet-stream");
    int err = coil_http_response_begin(req, 200, &ct, 1, -1);
    if (err < 0)
        return err;
    for (;;) {
        coil_buf b;
        ssize_t n = coil_http_body_read(req, &b);
        if (n <= 0)
            return (int)n;
        /* The chunk goes back out from the receive buffer it arrived in. */
        if (coil_http_response_write_buf(req, &b) < 0)
            return -EPIPE;
    }
}

static int events(coil_http_request *req, void *data)
{
    (void)data;
    coil_http_field f[2] = { COIL_HTTP_FIELD("Content-Type", "text/event-stream"),
                             COIL_HTTP_FIELD("Cache-Control", "no-cache") };
    int err = coil_http_response_begin(req, 200, f, 2, -1);
    if (err < 0)
        return err;
    for (unsigned long id = 1;; id++) {
        char ev[64];
        int n = snprintf(ev, sizeof(ev), "id: %lu\ndata: tick %lu\n\n", id, id);
        if (coil_http_response_write(req, ev, (size_t)n) < 0)
            return 0; /* the client went away */
        /* Sleeps without a thread; a client that closes ends the wait. */
        if (coil_http_wait_client_gone(req, coil_deadline_in(req->loop, 100 * MS)) == 0)
            return 0;
    }
}

static coil_http_fn_service hello_svc, echo_svc, events_svc;
static coil_http_route routes[3];
static coil_http_router router;
static coil_http_server *servers[COIL_RT_MAX_CORES];
static const char *host = "0.0.0.0";
static int port = 8080;

static int on_start(coil_loop *loop, unsigned core, void *data)
{
    (void)data;
    coil_http_server_config cfg;
    coil_http_server_config_default(&cfg);
    cfg.host = host;
    cfg.port = (uint16_t)port;
    cfg.reuseport = true;
    cfg.service = &router.svc;
    cfg.core = core;
    cfg.limits.max_body = 0; /* /echo streams any size */
    int err = coil_http_server_start(loop, &cfg, &servers[core]);
    if (err < 0) {
        fprintf(stderr, "http_hello: listen on %s:%d: %s\n", host, port, strerror(-err));
        return err;
    }
    if (core == 0)
        fprintf(stderr, "http_hello: listening on %s:%d (%s)\n", host,
                coil_http_server_port(servers[core]), coil_loop_backend(loop));
    return 0;
}

static void on_stop(coil_loop *loop, unsigned core, void *data)
{
    (void)loop;
    (void)data;
    coil_http_server_stop(servers[core]);
}

int main(int argc, char **argv)
{
    unsigned cores = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else if (!strcmp(argv[i], "--cores"))
            cores = (unsigned)atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: http_hello [--port N] [--host ADDR] [--cores N]\n");
            return 2;
        }
    }
    routes[0] = (coil_http_route){ "GET", "/", false, coil_http_fn_init(&hello_svc, hello, NULL), 0 };
    routes[1] = (coil_http_route){ "POST", "/echo", false, coil_http_fn_init(&echo_svc, echo, NULL), 0 };
    routes[2] = (coil_http_route){ "GET", "/events", false, coil_http_fn_init(&events_svc, events, NULL), 0 };
    coil_http_router_init(&router, routes, 3);

    coil_rt_options o = { .on_start = on_start, .on_stop = on_stop, .handle_signals = true };
    coil_loop_options_default(&o.loop);
    int cpus[COIL_RT_MAX_CORES];
    if (cores) {
        for (unsigned i = 0; i < cores && i < COIL_RT_MAX_CORES; i++)
            cpus[i] = (int)i;
        o.cpus = cpus;
        o.ncpus = cores;
    }
    coil_rt *rt;
    int err = coil_rt_start(&rt, &o);
    if (err < 0) {
        fprintf(stderr, "http_hello: cannot start: %s\n", strerror(-err));
        return 1;
    }
    err = coil_rt_wait(rt);
    return err < 0 ? 1 : 0;
}
