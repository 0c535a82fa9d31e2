/* The HTTP tests' fixture: see http_fixture.h. */
#include "http_fixture.h"

#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>

coil_loop loop;
coil_http_server *srv;
int port;
static int fds_at_setup;

/* ---- failure recording for tasks ---- */

int fail_line;
char fail_what[256];
char fail_where[128];

void note_fail(int line, const char *fmt, ...)
{
    if (fail_line)
        return;
    fail_line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fail_what, sizeof(fail_what), fmt, ap);
    va_end(ap);
}

int64_t dl(int64_t ms)
{
    return coil_deadline_in(&loop, ms * MS);
}

/* ---- fixture ---- */

int setup(void **state)
{
    (void)state;
    fds_at_setup = harness_fd_count();
    harness_loop_init(&loop, NULL);
    srv = NULL;
    return 0;
}

int teardown(void **state)
{
    (void)state;
    harness_loop_exit(&loop);
    assert_int_equal(harness_fd_count(), fds_at_setup);
    return 0;
}

coil_http_server_config base_cfg(coil_http_service *svc)
{
    coil_http_server_config cfg;
    coil_http_server_config_default(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.service = svc;
    return cfg;
}

void server_start(const coil_http_server_config *cfg)
{
    assert_int_equal(coil_http_server_start(&loop, cfg, &srv), 0);
    port = coil_http_server_port(srv);
    assert_true(port > 0);
}

void run_until_idle(void)
{
    int64_t until = coil_now(&loop) + 10000 * MS;
    int r;
    while ((r = coil_loop_run_once(&loop, 50 * MS)) > 0)
        if (coil_now(&loop) > until)
            fail_msg("the loop did not become idle within 10 s");
    assert_int_equal(r, 0);
}

void run_main(coil_task_fn fn, void *arg)
{
    fail_line = 0;
    fail_what[0] = fail_where[0] = '\0';
    int r = harness_run(&loop, fn, arg);
    if (srv) {
        coil_http_server_stop(srv);
        srv = NULL;
    }
    run_until_idle();
    if (fail_line || r)
        fail_msg("%s: line %d: %s (task returned %d)", fail_where[0] ? fail_where : "-", fail_line,
                 fail_what, r);
}

/* ---- a small raw HTTP client ---- */

int cli_open(cli *c)
{
    *c = (cli){ 0 };
    int err = harness_connect(&loop, &c->s, port, dl(5000));
    if (err < 0)
        return err;
    c->open = true;
    /* Byte-by-byte sends would otherwise wait on Nagle and delayed ACKs. */
    int one = 1;
    setsockopt(c->s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->buf = malloc(CLI_CAP);
    return c->buf ? 0 : -ENOMEM;
}

void cli_close(cli *c)
{
    if (c->open)
        coil_close(&c->s);
    c->open = false;
    free(c->buf);
    c->buf = NULL;
    c->len = 0;
}

int cli_send(cli *c, const char *p, size_t n, bool bytewise)
{
    if (!bytewise) {
        ssize_t r = coil_send(&c->s, p, n, dl(5000));
        return r < 0 ? (int)r : 0;
    }
    for (size_t i = 0; i < n; i++) {
        ssize_t r = coil_send(&c->s, p + i, 1, dl(5000));
        if (r < 0)
            return (int)r;
        coil_yield();
    }
    return 0;
}

int cli_send_str(cli *c, const char *s)
{
    return cli_send(c, s, strlen(s), false);
}

ssize_t cli_fill(cli *c, int64_t deadline)
{
    if (c->len == CLI_CAP)
        return -ENOBUFS;
    ssize_t n = coil_recv(&c->s, c->buf + c->len, CLI_CAP - c->len, deadline);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

void cli_consume(cli *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

int cli_want(cli *c, size_t n)
{
    while (c->len < n) {
        ssize_t k = cli_fill(c, dl(5000));
        if (k <= 0)
            return k == 0 ? -EPIPE : (int)k;
    }
    return 0;
}

bool cli_expect(cli *c, const char *s)
{
    size_t n = strlen(s);
    if (cli_want(c, n) < 0 || memcmp(c->buf, s, n) != 0)
        return false;
    cli_consume(c, n);
    return true;
}

int cli_closed(cli *c, int64_t wait_ns)
{
    if (c->len)
        return -EPROTO;
    char b[256];
    ssize_t n = coil_recv(&c->s, b, sizeof(b), coil_deadline_in(&loop, wait_ns));
    if (n == 0 || n == -ECONNRESET)
        return 1;
    if (n == -ETIMEDOUT)
        return 0;
    return n > 0 ? -EPROTO : (int)n;
}

bool resp_field(const resp *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2] != '\r' && p[2]) {
        p += 2;
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if (out)
                snprintf(out, outlen, "%.*s", (int)(e - v), v);
            return true;
        }
        p = e;
    }
    return false;
}

bool body_is(const resp *r, const char *s)
{
    size_t n = strlen(s);
    return r->body_len == n && memcmp(r->body, s, n) == 0;
}

static void body_put(resp *r, const char *p, size_t n)
{
    size_t room = sizeof(r->body) - (r->body_len < sizeof(r->body) ? r->body_len : sizeof(r->body));
    memcpy(r->body + sizeof(r->body) - room, p, n < room ? n : room);
    r->body_len += n;
}

int read_one_head(cli *c, resp *r, int64_t deadline)
{
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - c->buf) + 4;
            if (hl >= sizeof(r->head))
                return -E2BIG;
            memcpy(r->head, c->buf, hl);
            r->head[hl] = '\0';
            cli_consume(c, hl);
            if (strncmp(r->head, "HTTP/1.1 ", 9) != 0)
                return -EPROTO;
            r->status = atoi(r->head + 9);
            return 0;
        }
        ssize_t n = cli_fill(c, deadline);
        if (n == 0 || n == -ECONNRESET)
            return c->len ? -EPROTO : -EPIPE;
        if (n < 0)
            return (int)n;
    }
}

static int read_exact(cli *c, resp *r, size_t n, int64_t deadline)
{
    while (n) {
        if (!c->len) {
            ssize_t k = cli_fill(c, deadline);
            if (k == 0)
                return -EPIPE; /* closed before the announced end */
            if (k < 0)
                return (int)k;
        }
        size_t take = c->len < n ? c->len : n;
        body_put(r, c->buf, take);
        cli_consume(c, take);
        n -= take;
    }
    return 0;
}

static int read_line(cli *c, char *out, size_t outlen, int64_t deadline)
{
    for (;;) {
        char *e = memmem(c->buf, c->len, "\r\n", 2);
        if (e) {
            size_t n = (size_t)(e - c->buf);
            if (n >= outlen)
                return -E2BIG;
            memcpy(out, c->buf, n);
            out[n] = '\0';
            cli_consume(c, n + 2);
            return 0;
        }
        ssize_t k = cli_fill(c, deadline);
        if (k == 0)
            return -EPIPE;
        if (k < 0)
            return (int)k;
    }
}

static int read_chunked(cli *c, resp *r, int64_t deadline)
{
    char line[256];
    for (;;) {
        int err = read_line(c, line, sizeof(line), deadline);
        if (err)
            return err;
        char *end;
        unsigned long long n = strtoull(line, &end, 16);
        if (end == line)
            return -EPROTO;
        if (n == 0)
            break;
        if ((err = read_exact(c, r, (size_t)n, deadline)) ||
            (err = read_line(c, line, sizeof(line), deadline)))
            return err;
        if (line[0])
            return -EPROTO;
    }
    for (;;) {
        int err = read_line(c, line, sizeof(line), deadline);
        if (err)
            return err;
        if (!line[0])
            return 0;
        size_t tl = strlen(r->trailers);
        snprintf(r->trailers + tl, sizeof(r->trailers) - tl, "%s\n", line);
    }
}

int read_response(cli *c, resp *r, bool head_req, int64_t deadline)
{
    memset(r, 0, sizeof(*r));
    for (;;) {
        int interim = r->interim;
        int err = read_one_head(c, r, deadline);
        if (err)
            return err;
        r->interim = interim;
        if (r->status >= 200)
            break;
        r->interim++;
    }
    char v[64];
    r->close = resp_field(r, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0;
    if (resp_field(r, "Content-Length", v, sizeof(v))) {
        r->has_length = true;
        r->length = strtoll(v, NULL, 10);
    }
    r->chunked = resp_field(r, "Transfer-Encoding", v, sizeof(v)) && strcasecmp(v, "chunked") == 0;
    if (head_req || r->status == 204 || r->status == 304)
        return 0;
    if (r->chunked)
        return read_chunked(c, r, deadline);
    if (r->has_length)
        return read_exact(c, r, (size_t)r->length, deadline);
    r->until_eof = true;
    for (;;) {
        if (c->len) {
            body_put(r, c->buf, c->len);
            cli_consume(c, c->len);
        }
        ssize_t k = cli_fill(c, deadline);
        if (k == 0)
            return 0;
        if (k < 0)
            return (int)k;
    }
}

int roundtrip(cli *c, const char *req, resp *r)
{
    int err = cli_send_str(c, req);
    if (err)
        return err;
    return read_response(c, r, strncmp(req, "HEAD ", 5) == 0, dl(5000));
}

/* ---- a client's steps as a test's main task ---- */

static resp client_resp; /* large for a task's stack */

static int client_main(void *arg)
{
    client_steps steps = *(client_steps *)arg;
    cli c = { 0 };
    int res = -1;
    CHECK_EQ(cli_open(&c), 0);
    res = steps(&c, &client_resp);
out:
    cli_close(&c);
    return fail_line ? -1 : res;
}

void run_client(client_steps steps)
{
    run_main(client_main, &steps);
}

/* ---- handler helpers ---- */

bool path_is(const coil_http_request *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

int respond_text(coil_http_request *req, int status, const char *text)
{
    return coil_http_respond(req, status, NULL, 0, text, strlen(text));
}

int respond_echo(coil_http_request *req, ssize_t *read_result)
{
    char *body = NULL;
    ssize_t n = coil_http_body_read_all(req, &body, 0);
    if (read_result)
        *read_result = n;
    if (n < 0)
        return (int)n;
    int r = coil_http_respond(req, 200, NULL, 0, body, (size_t)n);
    free(body);
    return r;
}

bool wait_flag(const volatile int *flag)
{
    int64_t until = coil_now(&loop) + 5000 * MS;
    while (!*flag) {
        if (coil_now(&loop) > until)
            return false;
        coil_sleep(1 * MS);
    }
    return true;
}
