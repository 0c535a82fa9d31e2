/*
 * The demo upstream bundled with the built-in configuration, so that
 * `coil-proxy` with no file shows the product working: GET / says hello,
 * POST /echo streams the body back, anything else is 404.
 */
#include <errno.h>
#include <string.h>

#include "demo.h"

static int demo_hello(coil_http_request *req, void *data)
{
    (void)data;
    static const char body[] = "Hello from the coil-proxy demo upstream.\n";
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    return coil_http_respond(req, 200, &ct, 1, body, sizeof(body) - 1);
}

static int demo_echo(coil_http_request *req, void *data)
{
    (void)data;
    int64_t len = req->chunked ? -1 : (req->content_length > 0 ? req->content_length : 0);
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "application/octet-stream");
    int err = coil_http_response_begin(req, 200, &ct, 1, len);
    if (err < 0)
        return err;
    for (;;) {
        coil_buf b;
        ssize_t n = coil_http_body_read(req, &b);
        if (n <= 0)
            return (int)n;
        if (coil_http_response_write_buf(req, &b) < 0)
            return -EPIPE;
    }
}

static coil_http_fn_service hello_svc, echo_svc;
static coil_http_route demo_routes[2];
static coil_http_router demo_router;

void px_demo_init(void)
{
    demo_routes[0] = (coil_http_route){ "GET", "/", false, coil_http_fn_init(&hello_svc, demo_hello, NULL), 0 };
    demo_routes[1] = (coil_http_route){ "POST", "/echo", false, coil_http_fn_init(&echo_svc, demo_echo, NULL), 0 };
    coil_http_router_init(&demo_router, demo_routes, 2);
}

int px_demo_start(coil_loop *loop, unsigned core, const char *host, uint16_t port,
                  coil_http_server **out)
{
    coil_http_server_config cfg;
    coil_http_server_config_default(&cfg);
    cfg.host = host;
    cfg.port = port;
    cfg.reuseport = true;
    cfg.service = &demo_router.svc;
    cfg.core = core;
    cfg.limits.max_body = 0;
    return coil_http_server_start(loop, &cfg, out);
}
