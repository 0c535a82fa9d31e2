/* The connection-level calls on both backends: protocol switch
 * (coil_http_upgrade), 100 Continue on demand, closing after a response,
 * per-request body limits, access log notes, and the client side of the
 * same exchanges (resumable head reads, interim heads, bytes after a 101)
 * against a scripted raw-socket upstream. Fixture: http_fixture.h. */
#include "http_fixture.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil/http_client.h"

/* What the handlers saw, for the test to check after the client task. */
static struct {
    bool upgrade_flag;        /* req->upgrade */
    int upgrade_err;          /* coil_http_upgrade() */
    char early[64];
    size_t early_len;
    int echo_err;             /* the echo over the switched connection */
    int cont_first, cont_second;
    volatile int client_saw_100;
    ssize_t first_read;       /* the first coil_http_body_read() */
    int after_runs;           /* /after: behind a closing response, must stay 0 */
} st;

/* Echoes what arrives until the bytes received end with "quit". */
static int echo_until_quit(coil_sock *s)
{
    char seen[4] = { 0 };
    for (;;) {
        char b[256];
        ssize_t n = coil_recv(s, b, sizeof(b), dl(5000));
        if (n <= 0)
            return n == 0 ? -EPIPE : (int)n;
        ssize_t w = coil_send(s, b, (size_t)n, dl(5000));
        if (w < 0)
            return (int)w;
        for (ssize_t i = 0; i < n; i++) {
            memmove(seen, seen + 1, 3);
            seen[3] = b[i];
        }
        if (memcmp(seen, "quit", 4) == 0)
            return 0;
    }
}

static int upgrade_handler(coil_http_request *req)
{
    st.upgrade_flag = req->upgrade;
    /* Framing and Connection fields have no place in a 101: dropped. */
    coil_http_field f[3] = { COIL_HTTP_FIELD("Upgrade", "x-test"),
                             COIL_HTTP_FIELD("Content-Length", "5"),
                             COIL_HTTP_FIELD("Connection", "keep-alive") };
    coil_sock *s = NULL;
    coil_buf early;
    st.upgrade_err = coil_http_upgrade(req, f, 3, &s, &early);
    if (st.upgrade_err)
        return respond_text(req, 200, "not upgraded");
    st.early_len = early.len;
    if (early.len)
        memcpy(st.early, early.data, early.len < sizeof(st.early) ? early.len : sizeof(st.early));
    /* The early bytes are the new protocol's first: echoed like the rest. */
    ssize_t w = early.len ? coil_send(s, early.data, early.len, dl(5000)) : 0;
    coil_buf_release(&early);
    st.echo_err = w < 0 ? (int)w : echo_until_quit(s);
    return 0;
}

/* Reads the body under limit; the first read's result is kept. A refused
 * body is left to the server to answer. */
static int limited_handler(coil_http_request *req, uint64_t limit)
{
    coil_http_set_body_limit(req, limit);
    char body[2048];
    size_t len = 0;
    for (bool first = true;; first = false) {
        coil_buf b;
        ssize_t n = coil_http_body_read(req, &b);
        if (first)
            st.first_read = n;
        if (n <= 0) {
            if (n < 0)
                return (int)n;
            break;
        }
        size_t take = (size_t)n < sizeof(body) - len ? (size_t)n : sizeof(body) - len;
        memcpy(body + len, b.data, take);
        len += take;
        coil_buf_release(&b);
    }
    return coil_http_respond(req, 200, NULL, 0, body, len);
}

static int handler(coil_http_request *req, void *data)
{
    (void)data;
    if (path_is(req, "/up"))
        return upgrade_handler(req);
    if (path_is(req, "/up-begun")) {
        int err = coil_http_response_begin(req, 200, NULL, 0, 2);
        if (err)
            return err;
        coil_sock *s = NULL;
        coil_buf early;
        st.upgrade_err = coil_http_upgrade(req, NULL, 0, &s, &early);
        ssize_t n = coil_http_response_write(req, "ok", 2);
        return n < 0 ? (int)n : coil_http_response_end(req, NULL, 0);
    }
    if (path_is(req, "/first"))
        return respond_text(req, 200, "first");
    if (path_is(req, "/cont") || path_is(req, "/cont2")) {
        st.cont_first = coil_http_send_continue(req);
        if (path_is(req, "/cont2"))
            st.cont_second = coil_http_send_continue(req);
        /* The client sends the body only once it saw the 100: it must be
         * this call's, not the body read's. */
        if (req->expect_continue && !wait_flag(&st.client_saw_100))
            return -ETIMEDOUT;
        return respond_echo(req, NULL);
    }
    if (path_is(req, "/final"))
        return respond_text(req, 403, "denied"); /* body neither invited nor read */
    if (path_is(req, "/close")) {
        coil_http_connection_close(req);
        return respond_text(req, 200, "bye");
    }
    if (path_is(req, "/after")) {
        st.after_runs++;
        return respond_text(req, 200, "after");
    }
    if (path_is(req, "/limit10"))
        return limited_handler(req, 10);
    if (path_is(req, "/limit1000"))
        return limited_handler(req, 1000);
    if (path_is(req, "/note")) {
        coil_http_log_note(req, "first=1");
        coil_http_log_note(req, "upstream=10.0.0.2:80 upstream_us=1234");
        return respond_text(req, 200, "noted");
    }
    if (path_is(req, "/long")) {
        char note[300];
        memset(note, 'n', sizeof(note) - 1);
        note[sizeof(note) - 1] = '\0';
        coil_http_log_note(req, note);
        return respond_text(req, 200, "long");
    }
    return respond_text(req, 200, "plain");
}

static coil_http_fn_service svc;

static void start(uint64_t max_body)
{
    memset(&st, 0, sizeof(st));
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&svc, handler, NULL));
    cfg.limits.max_body = max_body;
    server_start(&cfg);
}

static resp rsp;

/* ====================================================================== */
/* coil_http_upgrade                                                       */
/* ====================================================================== */

#define UP_HEAD "GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n"
#define SWITCHED                                                                                   \
    "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x-test\r\n\r\n"

static int upgrade_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    CHECK_EQ(cli_open(&c), 0);
    /* The new protocol's first bytes ride in the request's segment. */
    CHECK_EQ(cli_send_str(&c, UP_HEAD "EARLY"), 0);
    CHECK(cli_expect(&c, SWITCHED));
    CHECK(cli_expect(&c, "EARLY"));
    CHECK_EQ(cli_send_str(&c, "ping"), 0);
    CHECK(cli_expect(&c, "ping"));
    CHECK_EQ(cli_send_str(&c, "quit"), 0);
    CHECK(cli_expect(&c, "quit"));
    /* The handler returned: the server closes, and sends no HTTP after. */
    CHECK_EQ(cli_closed(&c, 2000 * MS), 1);
    CHECK(st.upgrade_flag);
    CHECK_EQ(st.upgrade_err, 0);
    CHECK_EQ(st.early_len, 5);
    CHECK(memcmp(st.early, "EARLY", 5) == 0);
    CHECK_EQ(st.echo_err, 0);
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

static int upgrade_refused_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    CHECK_EQ(cli_open(&c), 0);
    /* An Upgrade field without Connection: upgrade asks for nothing. */
    snprintf(fail_where, sizeof(fail_where), "Upgrade without Connection: upgrade");
    CHECK_EQ(roundtrip(&c, "GET /up HTTP/1.1\r\nHost: a\r\nUpgrade: x-test\r\n\r\n", &rsp), 0);
    CHECK(!st.upgrade_flag);
    CHECK_EQ(st.upgrade_err, -EINVAL);
    CHECK_EQ(rsp.status, 200);
    CHECK_EQ(rsp.interim, 0);
    CHECK(body_is(&rsp, "not upgraded"));
    CHECK(!rsp.close);
    /* Still HTTP on the same connection. */
    snprintf(fail_where, sizeof(fail_where), "response already begun");
    st.upgrade_err = 0;
    CHECK_EQ(roundtrip(&c,
                       "GET /up-begun HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                       "Upgrade: x-test\r\n\r\n",
                       &rsp),
             0);
    CHECK_EQ(st.upgrade_err, -EINVAL);
    CHECK_EQ(rsp.status, 200);
    CHECK_EQ(rsp.interim, 0);
    CHECK(body_is(&rsp, "ok"));
    CHECK(!rsp.close);
    /* A declined upgrade leaves the connection to HTTP. */
    snprintf(fail_where, sizeof(fail_where), "after the declined upgrade");
    CHECK_EQ(roundtrip(&c, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n", &rsp), 0);
    CHECK_EQ(rsp.status, 200);
    CHECK(body_is(&rsp, "plain"));
    fail_where[0] = '\0';
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

static int upgrade_pipelined_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    CHECK_EQ(cli_open(&c), 0);
    CHECK_EQ(cli_send_str(&c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n" UP_HEAD), 0);
    /* The earlier answer first, then the 101, with nothing in between. */
    CHECK_EQ(read_response(&c, &rsp, false, dl(5000)), 0);
    CHECK_EQ(rsp.status, 200);
    CHECK(body_is(&rsp, "first"));
    CHECK(cli_expect(&c, SWITCHED));
    CHECK_EQ(cli_send_str(&c, "quit"), 0);
    CHECK(cli_expect(&c, "quit"));
    CHECK_EQ(cli_closed(&c, 2000 * MS), 1);
    CHECK_EQ(st.upgrade_err, 0);
    CHECK_EQ(st.early_len, 0);
    CHECK_EQ(st.echo_err, 0);
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

/* ====================================================================== */
/* coil_http_send_continue                                                 */
/* ====================================================================== */

#define CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* Sends a head with Expect: 100-continue, waits for exactly one 100, then
 * sends the body and reads the final answer. */
static int continue_exchange(cli *c, const char *path)
{
    char head[256];
    snprintf(head, sizeof(head),
             "POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
             path);
    snprintf(fail_where, sizeof(fail_where), "%s", path);
    st.client_saw_100 = 0;
    CHECK_EQ(cli_send_str(c, head), 0);
    CHECK(cli_expect(c, CONTINUE));
    st.client_saw_100 = 1;
    CHECK_EQ(cli_send_str(c, "hello"), 0);
    CHECK_EQ(read_response(c, &rsp, false, dl(5000)), 0);
    CHECK_EQ(rsp.interim, 0); /* no second 100 */
    CHECK_EQ(rsp.status, 200);
    CHECK(body_is(&rsp, "hello"));
    CHECK(!rsp.close);
    CHECK_EQ(st.cont_first, 0);
    CHECK_EQ(st.cont_second, 0);
out:
    return fail_line ? -1 : 0;
}

static int continue_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    CHECK_EQ(cli_open(&c), 0);
    CHECK_EQ(continue_exchange(&c, "/cont"), 0);
    CHECK_EQ(continue_exchange(&c, "/cont2"), 0);
    /* Without Expect: nothing before the answer. */
    snprintf(fail_where, sizeof(fail_where), "no Expect");
    CHECK_EQ(cli_send_str(&c, "POST /cont2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
             0);
    CHECK_EQ(read_one_head(&c, &rsp, dl(5000)), 0);
    CHECK_EQ(rsp.status, 200);
    CHECK(cli_expect(&c, "hello"));
    CHECK_EQ(st.cont_first, 0);
    CHECK_EQ(st.cont_second, 0);
    fail_where[0] = '\0';
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

static int continue_refused_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    CHECK_EQ(cli_open(&c), 0);
    CHECK_EQ(cli_send_str(&c, "POST /final HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                              "Expect: 100-continue\r\n\r\n"),
             0);
    CHECK_EQ(read_response(&c, &rsp, false, dl(5000)), 0);
    CHECK_EQ(rsp.interim, 0);
    CHECK_EQ(rsp.status, 403);
    CHECK(body_is(&rsp, "denied"));
    /* The client will not send the body: the connection cannot go on. */
    CHECK(rsp.close);
    CHECK_EQ(cli_closed(&c, 2000 * MS), 1);
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

/* ====================================================================== */
/* coil_http_connection_close                                              */
/* ====================================================================== */

static int close_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    CHECK_EQ(cli_open(&c), 0);
    snprintf(fail_where, sizeof(fail_where), "alone");
    CHECK_EQ(roundtrip(&c, "GET /close HTTP/1.1\r\nHost: a\r\n\r\n", &rsp), 0);
    CHECK_EQ(rsp.status, 200);
    CHECK(body_is(&rsp, "bye"));
    CHECK(rsp.close);
    CHECK_EQ(cli_closed(&c, 2000 * MS), 1);
    cli_close(&c);

    snprintf(fail_where, sizeof(fail_where), "pipelined");
    CHECK_EQ(cli_open(&c), 0);
    CHECK_EQ(cli_send_str(&c, "GET /close HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
                              "GET /after HTTP/1.1\r\nHost: a\r\n\r\n"),
             0);
    CHECK_EQ(read_response(&c, &rsp, false, dl(5000)), 0);
    CHECK_EQ(rsp.status, 200);
    CHECK(body_is(&rsp, "bye"));
    CHECK(rsp.close);
    /* -EPROTO here would be the answer to /after. */
    CHECK_EQ(cli_closed(&c, 2000 * MS), 1);
    CHECK_EQ(st.after_runs, 0);
    fail_where[0] = '\0';
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

/* ====================================================================== */
/* coil_http_set_body_limit                                                */
/* ====================================================================== */

typedef struct limit_case {
    const char *name;
    const char *in;
    int status;
    ssize_t first_read;
    const char *body;   /* of a 200 */
} limit_case;

#define X50 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

/* On a server without a limit of its own: the handler's 10 holds. */
static const limit_case unlimited_cases[] = {
    { "11 declared, Expect", "POST /limit10 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
      "Expect: 100-continue\r\n\r\n", 413, -EMSGSIZE, NULL },
    { "11 declared and sent", "POST /limit10 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
      "0123456789a", 413, -EMSGSIZE, NULL },
    { "10 declared and sent", "POST /limit10 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
      "0123456789", 200, 10, "0123456789" },
    { NULL },
};

/* On a server with 100: the handler's 1000 stays 100. A chunked body, since
 * a declared length over 100 is refused before the handler runs. */
static const limit_case capped_cases[] = {
    { "150 chunked", "POST /limit1000 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "96\r\n" X50 X50 X50 "\r\n0\r\n\r\n", 413, -EMSGSIZE, NULL },
    { "100 chunked", "POST /limit1000 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "64\r\n" X50 X50 "\r\n0\r\n\r\n", 200, 100, X50 X50 },
    { NULL },
};

static int limit_main(void *arg)
{
    cli c = { 0 };
    for (const limit_case *lc = arg; lc->name; lc++) {
        snprintf(fail_where, sizeof(fail_where), "case \"%s\"", lc->name);
        st.first_read = 0;
        CHECK_EQ(cli_open(&c), 0);
        CHECK_EQ(cli_send_str(&c, lc->in), 0);
        CHECK_EQ(read_response(&c, &rsp, false, dl(5000)), 0);
        CHECK_EQ(rsp.interim, 0); /* never invited to send what is refused */
        CHECK_EQ(rsp.status, lc->status);
        CHECK_EQ(st.first_read, lc->first_read);
        if (lc->body)
            CHECK(body_is(&rsp, lc->body));
        if (lc->status == 413) {
            CHECK(rsp.close);
            CHECK_EQ(cli_closed(&c, 2000 * MS), 1);
        } else {
            CHECK(!rsp.close);
        }
        cli_close(&c);
    }
    fail_where[0] = '\0';
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

/* ====================================================================== */
/* coil_http_log_note                                                      */
/* ====================================================================== */

static coil_http_access_log alog;

static int log_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    CHECK_EQ(cli_open(&c), 0);
    CHECK_EQ(roundtrip(&c, "GET /note HTTP/1.1\r\nHost: a\r\n\r\n", &rsp), 0);
    CHECK_EQ(rsp.status, 200);
    CHECK_EQ(roundtrip(&c, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n", &rsp), 0);
    CHECK_EQ(rsp.status, 200);
    CHECK_EQ(roundtrip(&c, "GET /long HTTP/1.1\r\nHost: a\r\n\r\n", &rsp), 0);
    CHECK_EQ(rsp.status, 200);
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

/* The log line of the request for target, without its newline. */
static const char *log_line(const char *log, const char *target, char *out, size_t outlen)
{
    char key[64];
    snprintf(key, sizeof(key), "\"GET %s\" ", target);
    const char *p = strstr(log, key);
    if (!p)
        return NULL;
    while (p > log && p[-1] != '\n')
        p--;
    const char *e = strchr(p, '\n');
    if (!e)
        return NULL;
    snprintf(out, outlen, "%.*s", (int)(e - p), p);
    return out;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void test_log_note(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
    memset(&st, 0, sizeof(st));
    coil_http_server_config cfg =
        base_cfg(coil_http_access_log_init(&alog, coil_http_fn_init(&svc, handler, NULL), &loop,
                                           pfd[1]));
    server_start(&cfg);
    run_main(log_main, NULL);
    coil_http_access_log_exit(&alog);
    static char text[8192];
    ssize_t n = read(pfd[0], text, sizeof(text) - 1);
    close(pfd[0]);
    close(pfd[1]);
    assert_true(n > 0);
    text[n] = '\0';

    char line[1024];
    assert_non_null(log_line(text, "/note", line, sizeof(line)));
    /* The second note replaced the first. */
    assert_true(ends_with(line, " core=0 upstream=10.0.0.2:80 upstream_us=1234"));
    assert_null(strstr(line, "first=1"));

    assert_non_null(log_line(text, "/plain", line, sizeof(line)));
    assert_true(ends_with(line, " core=0"));

    char want[256] = " core=0 ";
    memset(want + 8, 'n', 191); /* the note's first 191 bytes are kept */
    want[8 + 191] = '\0';
    assert_non_null(log_line(text, "/long", line, sizeof(line)));
    assert_true(ends_with(line, want));
}

/* ====================================================================== */
/* coil_http_client_*: against a scripted upstream                         */
/* ====================================================================== */

typedef struct upstream {
    coil_sock listener;
    int (*script)(struct upstream *u, coil_sock *s);
    volatile int half_sent; /* the first half of a head went out */
    volatile int go;        /* the client is ready for the rest */
    char req[1024];         /* the request head it received */
} upstream;

static int sock_send(coil_sock *s, const char *text)
{
    ssize_t n = coil_send(s, text, strlen(text), dl(5000));
    return n < 0 ? (int)n : 0;
}

/* Receives exactly n bytes into buf, which has room for a NUL after them. */
static int sock_recv_exact(coil_sock *s, char *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t k = coil_recv(s, buf + got, n - got, dl(5000));
        if (k <= 0)
            return k == 0 ? -EPIPE : (int)k;
        got += (size_t)k;
    }
    buf[n] = '\0';
    return 0;
}

/* Receives the request head byte by byte, so nothing behind it is taken. */
static int up_recv_head(upstream *u, coil_sock *s)
{
    size_t len = 0;
    while (len < 4 || memcmp(u->req + len - 4, "\r\n\r\n", 4) != 0) {
        if (len + 1 >= sizeof(u->req))
            return -E2BIG;
        int err = sock_recv_exact(s, u->req + len, 1);
        if (err)
            return err;
        len++;
    }
    return 0;
}

static int upstream_task(void *arg)
{
    upstream *u = arg;
    coil_sock s;
    int err = coil_accept(&u->listener, &s, NULL, dl(5000));
    if (err < 0) {
        note_fail(__LINE__, "upstream accept: %d", err);
        return err;
    }
    err = up_recv_head(u, &s);
    if (!err)
        err = u->script(u, &s);
    if (err)
        note_fail(__LINE__, "upstream script: %d", err);
    /* Until the client closes, so it never reads an early end of stream. */
    char b[64];
    while (!err && coil_recv(&s, b, sizeof(b), dl(5000)) > 0) {
    }
    coil_close(&s);
    return err;
}

typedef struct upstream_case {
    int (*script)(upstream *u, coil_sock *s);
    int (*client)(coil_http_client *c, upstream *u);
} upstream_case;

/* A main task: runs the case's script as the upstream and its client
 * against it. */
static int with_upstream(void *arg)
{
    const upstream_case *uc = arg;
    static upstream u;
    memset(&u, 0, sizeof(u));
    u.script = uc->script;
    coil_http_client *c = NULL;
    coil_task *t = NULL;
    bool listening = false;
    CHECK_EQ(coil_tcp_listen_host(&loop, &u.listener, "127.0.0.1", 0, 16, 0), 0);
    listening = true;
    struct sockaddr_in a = harness_addr(coil_sock_port(&u.listener));
    CHECK_EQ(coil_spawn(&loop, upstream_task, &u, &t), 0);
    CHECK_EQ(coil_http_client_connect(&loop, (struct sockaddr *)&a, sizeof(a), 0, dl(5000), &c), 0);
    CHECK_EQ(uc->client(c, &u), 0);
out:
    if (c)
        coil_http_client_close(c);
    if (t)
        coil_join(t, NULL);
    if (listening)
        coil_close(&u.listener);
    return fail_line ? -1 : 0;
}

static int client_send(coil_http_client *c, const char *text)
{
    return sock_send(coil_http_client_sock(c), text);
}

static bool head_has(const coil_http_response_head *h, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    for (uint32_t i = 0; i < h->nfields; i++) {
        const coil_http_field *f = &h->fields[i];
        if (f->name_len == nl && memcmp(f->name, name, nl) == 0)
            return f->value_len == vl && memcmp(f->value, value, vl) == 0;
    }
    return false;
}

/* Reads the whole body into out (NUL-terminated). Returns its length. */
static ssize_t client_body(coil_http_client *c, char *out, size_t outlen)
{
    size_t len = 0;
    for (;;) {
        coil_buf b;
        ssize_t n = coil_http_client_read_body(c, &b, dl(5000));
        if (n <= 0) {
            out[len] = '\0';
            return n < 0 ? n : (ssize_t)len;
        }
        size_t take = (size_t)n < outlen - 1 - len ? (size_t)n : outlen - 1 - len;
        memcpy(out + len, b.data, take);
        len += take;
        coil_buf_release(&b);
    }
}

/* -- a head that arrives in two halves, the client's first wait too short -- */

static int half_script(upstream *u, coil_sock *s)
{
    /* Cut inside a field name, after a complete field. */
    int err = sock_send(s, "HTTP/1.1 200 OK\r\nX-First: one\r\nContent-Le");
    if (err)
        return err;
    u->half_sent = 1;
    if (!wait_flag(&u->go))
        return -ETIMEDOUT;
    return sock_send(s, "ngth: 5\r\nX-Test: yes\r\n\r\nhello");
}

static int half_client(coil_http_client *c, upstream *u)
{
    coil_http_response_head h;
    char body[64];
    CHECK_EQ(client_send(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK(wait_flag(&u->half_sent));
    CHECK_EQ(coil_http_client_read_head(c, "GET", dl(200), &h), -ETIMEDOUT);
    u->go = 1;
    CHECK_EQ(coil_http_client_read_head(c, "GET", dl(5000), &h), 0);
    CHECK_EQ(h.status, 200);
    CHECK_EQ(h.nfields, 3);
    CHECK(head_has(&h, "X-First", "one"));
    CHECK(head_has(&h, "Content-Length", "5"));
    CHECK(head_has(&h, "X-Test", "yes"));
    CHECK_EQ(h.content_length, 5);
    CHECK(h.keep_alive);
    CHECK_EQ(client_body(c, body, sizeof(body)), 5);
    CHECK(strcmp(body, "hello") == 0);
    CHECK(coil_http_client_reusable(c));
out:
    return fail_line ? -1 : 0;
}

/* -- interim heads, reported or skipped -- */

static int continue_on_script(upstream *u, coil_sock *s)
{
    (void)u;
    /* 103 is skipped even while 100s are reported. */
    int err = sock_send(s, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" CONTINUE);
    char body[8];
    if (!err)
        err = sock_recv_exact(s, body, 4);
    if (!err && strcmp(body, "data") != 0)
        err = -EPROTO;
    if (!err)
        err = sock_send(s, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
    return err;
}

static int continue_on_client(coil_http_client *c, upstream *u)
{
    coil_http_response_head h;
    char body[64];
    coil_http_client_report_continue(c, true);
    CHECK_EQ(client_send(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                            "Expect: 100-continue\r\n\r\n"),
             0);
    CHECK_EQ(coil_http_client_read_head(c, "POST", dl(5000), &h), 0);
    CHECK_EQ(h.status, 100);
    CHECK_EQ(h.nfields, 0);
    CHECK(strstr(u->req, "Expect: 100-continue\r\n"));
    CHECK_EQ(client_send(c, "data"), 0);
    CHECK_EQ(coil_http_client_read_head(c, "POST", dl(5000), &h), 0);
    CHECK_EQ(h.status, 201);
    CHECK_EQ(h.content_length, 2);
    CHECK_EQ(client_body(c, body, sizeof(body)), 2);
    CHECK(strcmp(body, "ok") == 0);
out:
    return fail_line ? -1 : 0;
}

static int continue_off_script(upstream *u, coil_sock *s)
{
    (void)u;
    return sock_send(s, CONTINUE "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
}

static int continue_off_client(coil_http_client *c, upstream *u)
{
    (void)u;
    coil_http_response_head h;
    char body[64];
    CHECK_EQ(client_send(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), 0);
    CHECK_EQ(coil_http_client_read_head(c, "POST", dl(5000), &h), 0);
    CHECK_EQ(h.status, 200);
    CHECK_EQ(h.content_length, 3);
    CHECK_EQ(client_body(c, body, sizeof(body)), 3);
    CHECK(strcmp(body, "abc") == 0);
out:
    return fail_line ? -1 : 0;
}

/* -- 101 and the bytes behind it -- */

static int switch_script(upstream *u, coil_sock *s)
{
    (void)u;
    int err = sock_send(s, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         "Upgrade: x-test\r\n\r\nREST-BYTES");
    char b[8];
    if (!err)
        err = sock_recv_exact(s, b, 4);
    if (!err && strcmp(b, "ping") != 0)
        err = -EPROTO;
    if (!err)
        err = sock_send(s, "pong");
    return err;
}

static int switch_client(coil_http_client *c, upstream *u)
{
    (void)u;
    coil_http_response_head h;
    coil_buf rest = { 0 };
    char b[8];
    CHECK_EQ(client_send(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                            "Upgrade: x-test\r\n\r\n"),
             0);
    CHECK_EQ(coil_http_client_read_head(c, "GET", dl(5000), &h), 0);
    CHECK_EQ(h.status, 101);
    CHECK(head_has(&h, "Upgrade", "x-test"));
    coil_http_client_take_rest(c, &rest);
    CHECK_EQ(rest.len, 10);
    CHECK(memcmp(rest.data, "REST-BYTES", 10) == 0);
    CHECK(!coil_http_client_reusable(c));
    /* The socket now carries the new protocol. */
    CHECK_EQ(client_send(c, "ping"), 0);
    CHECK_EQ(sock_recv_exact(coil_http_client_sock(c), b, 4), 0);
    CHECK(strcmp(b, "pong") == 0);
out:
    coil_buf_release(&rest);
    return fail_line ? -1 : 0;
}

/* A test: its main task, on a server with max_body unless it is a client
 * test (whose upstream is a task of its own). */
typedef struct http_case {
    coil_task_fn main;
    const void *arg;
    bool server;
    uint64_t max_body;
} http_case;

static void run_case(void **state)
{
    const http_case *hc = *state;
    if (hc->server)
        start(hc->max_body);
    run_main(hc->main, (void *)hc->arg);
}

#define CASE(test, fn, arg_, server_, max_body_)                                                   \
    {                                                                                              \
        .name = #test, .test_func = run_case, .setup_func = setup, .teardown_func = teardown,      \
        .initial_state = &(http_case){ fn, arg_, server_, max_body_ },                             \
    }
#define SERVER_CASE(test, fn, arg, max_body) CASE(test, fn, arg, true, max_body)
#define CLIENT_CASE(test, script, client)                                                          \
    CASE(test, with_upstream, (&(upstream_case){ script, client }), false, 0)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SERVER_CASE(test_upgrade_echo, upgrade_main, NULL, 1 << 20),
        SERVER_CASE(test_upgrade_refused, upgrade_refused_main, NULL, 1 << 20),
        SERVER_CASE(test_upgrade_after_pipelined, upgrade_pipelined_main, NULL, 1 << 20),
        SERVER_CASE(test_send_continue, continue_main, NULL, 1 << 20),
        SERVER_CASE(test_final_answer_without_continue_closes, continue_refused_main, NULL,
                    1 << 20),
        SERVER_CASE(test_connection_close, close_main, NULL, 1 << 20),
        SERVER_CASE(test_body_limit_without_server_limit, limit_main, unlimited_cases, 0),
        SERVER_CASE(test_body_limit_capped_by_server, limit_main, capped_cases, 100),
        cmocka_unit_test_setup_teardown(test_log_note, setup, teardown),
        CLIENT_CASE(test_client_head_resumes_after_timeout, half_script, half_client),
        CLIENT_CASE(test_client_continue_reported, continue_on_script, continue_on_client),
        CLIENT_CASE(test_client_continue_skipped, continue_off_script, continue_off_client),
        CLIENT_CASE(test_client_switching_protocols, switch_script, switch_client),
    };
    return HARNESS_RUN(tests);
}
