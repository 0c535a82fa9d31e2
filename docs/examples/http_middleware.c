/*
 * http_middleware: handlers wrapped in middleware, built-in and hand-written.
 *
 * Each core composes, outermost first:
 *   access log  ->  timeout  ->  bearer_auth (written here)  ->  router
 *
 *   GET /        "hello" for a client that sent the token
 *   GET /slow    sleeps far past the timeout: the client gets 503
 *   anything without "Authorization: Bearer TOKEN" gets 401
 *
 *   http_middleware [--port N] [--host ADDR] [--cores N] [--token T] [--timeout-ms N]
 *
 * The access log goes to standard error. SIGINT or SIGTERM stops it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coil/http.h"

#define MS (1000LL * 1000)

/* ---- a middleware of our own ---- */

/* A middleware is a struct that begins with coil_http_service: its call
 * either answers the request itself or passes it on to inner. */
typedef struct bearer_auth {
    coil_http_service svc;
    const char *token;
    uint64_t refused;          /* this core's count: cores share nothing */
} bearer_auth;

static bool has_token(const coil_http_request *req, const char *token)
{
    const coil_http_field *f = coil_http_field_find(req, "Authorization");
    size_t len = strlen(token);
    return f && f->value_len == 7 + len && !strncmp(f->value, "Bearer ", 7) &&
           !memcmp(f->value + 7, token, len);
}

static int bearer_auth_call(coil_http_service *self, coil_http_request *req)
{
    bearer_auth *a = (bearer_auth *)self;
    if (!has_token(req, a->token)) {
        a->refused++;
        static const char body[] = "token required\n";
        coil_http_field f = COIL_HTTP_FIELD("WWW-Authenticate", "Bearer");
        return coil_http_respond(req, 401, &f, 1, body, sizeof(body) - 1);
    }
    return coil_http_call(self->inner, req);
}

static coil_http_service *bearer_auth_init(bearer_auth *a, coil_http_service *inner,
                                           const char *token)
{
    *a = (bearer_auth){ .svc = { .call = bearer_auth_call, .inner = inner }, .token = token };
    return &a->svc;
}

/* ---- handlers ---- */

static int hello(coil_http_request *req, void *data)
{
    (void)data;
    static const char body[] = "hello\n";
    return coil_http_respond(req, 200, NULL, 0, body, sizeof(body) - 1);
}

static int slow(coil_http_request *req, void *data)
{
    (void)data;
    /* Past the budget the timeout middleware makes this wait fail with
     * -ETIMEDOUT; returning it lets the server answer 503. */
    int err = coil_sleep(60 * 1000 * MS);
    if (err < 0)
        return err;
    return coil_http_respond(req, 200, NULL, 0, "late\n", 5);
}

/* ---- one chain per core ---- */

typedef struct core_chain {
    coil_http_fn_service hello, slow;
    coil_http_route routes[2];
    coil_http_router router;
    bearer_auth auth;
    coil_http_timeout timeout;
    coil_http_access_log log;
    coil_http_server *server;
} core_chain;

static struct {
    const char *host;
    int port;
    const char *token;
    int64_t timeout_ns;
    core_chain *cores;
} opt = { "127.0.0.1", 8080, "secret", 500 * MS, NULL };

static int on_start(coil_loop *loop, unsigned core, void *data)
{
    (void)data;
    core_chain *c = &opt.cores[core];
    c->routes[0] = (coil_http_route){ .method = "GET", .path = "/",
                                      .service = coil_http_fn_init(&c->hello, hello, NULL) };
    c->routes[1] = (coil_http_route){ .method = "GET", .path = "/slow",
                                      .service = coil_http_fn_init(&c->slow, slow, NULL) };
    coil_http_service *svc = coil_http_router_init(&c->router, c->routes, 2);
    svc = bearer_auth_init(&c->auth, svc, opt.token);
    svc = coil_http_timeout_init(&c->timeout, svc, opt.timeout_ns);
    svc = coil_http_access_log_init(&c->log, svc, loop, STDERR_FILENO);

    coil_http_server_config cfg;
    coil_http_server_config_default(&cfg);
    cfg.host = opt.host;
    cfg.port = (uint16_t)opt.port;
    cfg.reuseport = true;
    cfg.service = svc;
    cfg.core = core;
    int err = coil_http_server_start(loop, &cfg, &c->server);
    if (err < 0) {
        fprintf(stderr, "http_middleware: listen on %s:%d: %s\n", opt.host, opt.port, strerror(-err));
        coil_http_access_log_exit(&c->log);
        return err;
    }
    if (core == 0)
        fprintf(stderr, "http_middleware: listening on %s:%d (%s)\n", opt.host,
                coil_http_server_port(c->server), coil_loop_backend(loop));
    return 0;
}

static void on_stop(coil_loop *loop, unsigned core, void *data)
{
    (void)data;
    core_chain *c = &opt.cores[core];
    if (!c->server)
        return;
    coil_http_server_stop(c->server);
    coil_loop_run(loop); /* let requests in flight finish before the log goes */
    coil_http_access_log_exit(&c->log);
    fprintf(stderr, "http_middleware: core %u refused %llu request(s) without the token\n", core,
            (unsigned long long)c->auth.refused);
}

int main(int argc, char **argv)
{
    unsigned ncores = 0;
    bool bad = argc % 2 == 0; /* options come in pairs */
    for (int i = 1; !bad && i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--port"))
            opt.port = atoi(v);
        else if (!strcmp(a, "--host"))
            opt.host = v;
        else if (!strcmp(a, "--cores"))
            ncores = (unsigned)atoi(v);
        else if (!strcmp(a, "--token"))
            opt.token = v;
        else if (!strcmp(a, "--timeout-ms"))
            opt.timeout_ns = atoll(v) * MS;
        else
            bad = true;
    }
    if (bad || ncores > COIL_RT_MAX_CORES) {
        fprintf(stderr, "usage: http_middleware [--port N] [--host ADDR] [--cores N] [--token T]"
                        " [--timeout-ms N]\n");
        return 2;
    }
    coil_rt_options o = { .on_start = on_start, .on_stop = on_stop, .handle_signals = true };
    coil_loop_options_default(&o.loop);
    int cpus[COIL_RT_MAX_CORES];
    for (unsigned i = 0; i < ncores; i++)
        cpus[i] = (int)i;
    if (ncores) {
        o.cpus = cpus;
        o.ncpus = ncores;
    }
    opt.cores = calloc(COIL_RT_MAX_CORES, sizeof(core_chain));
    if (!opt.cores)
        return 1;
    coil_rt *rt;
    int err = coil_rt_start(&rt, &o);
    if (err == 0)
        err = coil_rt_wait(rt);
    else
        fprintf(stderr, "http_middleware: cannot start: %s\n", strerror(-err));
    free(opt.cores);
    return err < 0 ? 1 : 0;
}
