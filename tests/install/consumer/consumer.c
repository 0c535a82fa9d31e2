/*
 * A program built against an installed coil, outside the source tree: one
 * loop on the main thread, an HTTP server on an ephemeral port, and a client
 * task in the same loop that sends it one request and checks the answer.
 * Exit status: 0 when the answer was right, 1 when not, 77 when the backend
 * named in COIL_BACKEND cannot run here.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil/coil.h>
#include <coil/http.h>

static int greet(coil_http_request *req, void *data)
{
    (void)data;
    static const char body[] = "hello from an installed coil\n";
    return coil_http_respond(req, 200, NULL, 0, body, sizeof(body) - 1);
}

typedef struct client_state {
    coil_http_server *server;
    int port;
    char answer[1024];
    size_t len;
    int err;
} client_state;

static int client(void *arg)
{
    client_state *st = arg;
    coil_loop *loop = coil_loop_current();
    int64_t deadline = coil_deadline_in(loop, 10LL * 1000 * 1000 * 1000);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)st->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    coil_sock s;
    st->err = coil_tcp_connect(loop, &s, (struct sockaddr *)&a, sizeof(a), deadline);
    if (st->err == 0) {
        static const char request[] = "GET /greeting HTTP/1.1\r\nHost: localhost\r\n"
                                      "Connection: close\r\n\r\n";
        ssize_t n = coil_send(&s, request, sizeof(request) - 1, deadline);
        st->err = n < 0 ? (int)n : 0;
        /* The server closes after its answer (Connection: close). */
        while (st->err == 0 && st->len < sizeof(st->answer) - 1) {
            n = coil_recv(&s, st->answer + st->len, sizeof(st->answer) - 1 - st->len, deadline);
            if (n < 0)
                st->err = (int)n;
            if (n <= 0)
                break;
            st->len += (size_t)n;
        }
        coil_close(&s);
    }
    /* With the server gone nothing is left alive: coil_loop_run() returns. */
    coil_http_server_stop(st->server);
    return 0;
}

int main(void)
{
    coil_loop loop;
    int err = coil_loop_init(&loop, NULL);
    if (err < 0) {
        const char *named = getenv("COIL_BACKEND");
        fprintf(stderr, "consumer: no loop (%s%s): %s\n", named ? "COIL_BACKEND=" : "default",
                named ? named : "", strerror(-err));
        return named ? 77 : 1;
    }
    coil_http_fn_service svc;
    coil_http_server_config cfg;
    coil_http_server_config_default(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.service = coil_http_fn_init(&svc, greet, NULL);
    client_state st = { 0 };
    err = coil_http_server_start(&loop, &cfg, &st.server);
    if (err == 0) {
        st.port = coil_http_server_port(st.server);
        err = coil_spawn(&loop, client, &st, NULL);
    }
    if (err == 0)
        err = coil_loop_run(&loop);
    const char *backend = coil_loop_backend(&loop); /* static: outlives the loop */
    int exit_err = coil_loop_exit(&loop);
    st.answer[st.len] = '\0';
    bool ok = err == 0 && exit_err == 0 && st.err == 0 &&
              strncmp(st.answer, "HTTP/1.1 200 OK\r\n", 17) == 0 &&
              strstr(st.answer, "\r\n\r\nhello from an installed coil\n") != NULL;
    printf("consumer (%s): %s\n", backend, ok ? "ok" : "FAILED");
    if (!ok)
        fprintf(stderr, "consumer: run %d, exit %d, client %d, answer:\n%s\n", err, exit_err, st.err,
                st.answer);
    return ok ? 0 : 1;
}
