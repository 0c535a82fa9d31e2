/* The HTTP server end to end on both backends (fixture: http_fixture.h):
 * raw-byte table (one write and byte by byte), timeouts, middleware,
 * router, response framing, graceful stop. */
#include "http_fixture.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Private: a handler reaches its connection's socket to shrink the kernel's
 * send buffer, so that a slow reader really holds the server back. */
#include "http_impl.h"

/* ====================================================================== */
/* 1. Raw-byte table                                                       */
/* ====================================================================== */

static struct {
    int runs;       /* handler calls, /ping excluded */
    int smuggled;   /* calls for /smuggled: must stay 0 */
    ssize_t read_result;
} tb;

static int table_handler(coil_http_request *req, void *data)
{
    (void)data;
    if (path_is(req, "/ping"))
        return respond_text(req, 200, "/ping");
    tb.runs++;
    if (path_is(req, "/smuggled"))
        tb.smuggled++;
    if (path_is(req, "/echo"))
        return respond_echo(req, &tb.read_result);
    /* Anything else is answered with its target, body left unread. */
    return coil_http_respond(req, 200, NULL, 0, req->target, req->target_len);
}

typedef struct table_case {
    const char *name;
    const char *in;
    int status;               /* of every response; 0: no response at all */
    int nresp;
    const char *bodies[2];    /* expected bodies, NULL: not checked */
    bool close;               /* the server must close after answering */
    int runs;                 /* handler calls expected */
    bool shut;                /* the client ends its side after sending */
} table_case;

#define HOST "Host: a\r\n"
#define SMUG "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
_Static_assert(sizeof(SMUG) - 1 == 35, "SMUG's length is written into the cases below");
#define X10 "xxxxxxxxxx"
#define X40 X10 X10 X10 X10
#define PING "GET /ping HTTP/1.1\r\nHost: a\r\n\r\n"

/* Server limits for the table: request line 64, 8 fields, body 64. */
static const table_case cases[] = {
    { "valid GET", "GET / HTTP/1.1\r\n" HOST "\r\n", 200, 1, { "/" }, false, 1, false },
    { "POST with Content-Length", "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 5\r\n\r\nhello",
      200, 1, { "hello" }, false, 1, false },
    { "chunked body",
      "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
      200, 1, { "hello world" }, false, 1, false },
    { "chunked body with trailer",
      "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n",
      200, 1, { "abc" }, false, 1, false },
    { "pipelined", "GET /?1 HTTP/1.1\r\n" HOST "\r\nGET /?2 HTTP/1.1\r\n" HOST "\r\n", 200, 2,
      { "/?1", "/?2" }, false, 2, false },
    { "pipelined after a body",
      "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 3\r\n\r\nabcGET /?2 HTTP/1.1\r\n" HOST "\r\n",
      200, 2, { "abc", "/?2" }, false, 2, false },
    { "missing Host", "GET / HTTP/1.1\r\n\r\n", 400, 1, { NULL }, true, 0, false },
    { "two Host fields", "GET / HTTP/1.1\r\n" HOST HOST "\r\n", 400, 1, { NULL }, true, 0, false },
    { "Content-Length with Transfer-Encoding",
      "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n",
      400, 1, { NULL }, true, 0, false },
    { "obs-fold", "GET / HTTP/1.1\r\n" HOST "X-Long: a\r\n b\r\n\r\n", 400, 1, { NULL }, true, 0,
      false },
    { "bad version", "GET / HTTP/1.2\r\n" HOST "\r\n", 505, 1, { NULL }, true, 0, false },
    { "request line too long", "GET /" X40 X40 " HTTP/1.1\r\n" HOST "\r\n", 414, 1, { NULL }, true,
      0, false },
    { "too many header fields",
      "GET / HTTP/1.1\r\n" HOST "A: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\n"
      "I: 1\r\nJ: 1\r\n\r\n",
      431, 1, { NULL }, true, 0, false },
    { "declared body over the limit",
      "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 1000\r\n\r\n" X10, 413, 1, { NULL }, true, 0,
      false },
    { "chunked body over the limit while read",
      "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"
      "28\r\n" X40 "\r\n28\r\n" X40 "\r\n0\r\n\r\n",
      413, 1, { NULL }, true, 1, false },
    { "incomplete head, then the client ends", "GET / HTTP/1.1\r\n" HOST, 0, 0, { NULL }, true, 0,
      true },
    /* Smuggling: a request hidden where a rejected message's body was must
     * never run. */
    { "smuggled behind Content-Length + Transfer-Encoding",
      "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n" SMUG,
      400, 1, { NULL }, true, 0, false },
    { "smuggled behind two Content-Lengths",
      "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 0\r\nContent-Length: 35\r\n\r\n" SMUG, 400, 1,
      { NULL }, true, 0, false },
    { "smuggled in a declared body over the limit",
      "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 100\r\n\r\n" SMUG, 413, 1, { NULL }, true, 0,
      false },
    { "smuggled after a chunked body over the limit",
      "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"
      "50\r\n" X40 X40 "\r\n0\r\n\r\n" SMUG,
      413, 1, { NULL }, true, 1, false },
    { "smuggled after a bad chunk size",
      "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nzz\r\n" SMUG, 400, 1,
      { NULL }, true, 1, false },
    { "smuggled after an obs-fold",
      "GET / HTTP/1.1\r\n" HOST "X-Long: a\r\n b\r\n\r\n" SMUG, 400, 1, { NULL }, true, 0, false },
    /* A body the handler leaves unread is skipped, never parsed as a
     * request; the connection stays usable. */
    { "request inside an unread body",
      "POST /ignore HTTP/1.1\r\n" HOST "Content-Length: 35\r\n\r\n" SMUG, 200, 1, { "/ignore" },
      false, 1, false },
};

static resp table_resp;

static int run_case(const table_case *tc, bool bytewise)
{
    cli c = { 0 };
    resp *r = &table_resp;
    memset(&tb, 0, sizeof(tb));
    snprintf(fail_where, sizeof(fail_where), "case \"%s\" (%s)", tc->name,
             bytewise ? "byte by byte" : "one write");
    CHECK_EQ(cli_open(&c), 0);
    int serr = cli_send(&c, tc->in, strlen(tc->in), bytewise);
    /* A rejecting server may close while the rest still arrives. */
    if (!tc->close)
        CHECK_EQ(serr, 0);
    if (tc->shut)
        coil_shutdown(&c.s, SHUT_WR);
    if (!tc->status) {
        int err = read_response(&c, r, false, dl(5000));
        CHECK(err == -EPIPE || err == -ECONNRESET);
    }
    for (int i = 0; i < tc->nresp; i++) {
        CHECK_EQ(read_response(&c, r, false, dl(5000)), 0);
        CHECK_EQ(r->status, tc->status);
        CHECK_EQ(r->interim, 0);
        if (tc->bodies[i])
            CHECK(body_is(r, tc->bodies[i]));
        if (tc->close && i == tc->nresp - 1)
            CHECK(r->close); /* the answer says so */
        if (!tc->close)
            CHECK(!r->close);
    }
    if (tc->close) {
        CHECK_EQ(cli_closed(&c, 2000 * MS), 1);
    } else {
        /* Still in step: the next request gets its own answer. */
        CHECK_EQ(cli_send_str(&c, PING), 0);
        CHECK_EQ(read_response(&c, r, false, dl(5000)), 0);
        CHECK_EQ(r->status, 200);
        CHECK(body_is(r, "/ping"));
    }
    CHECK_EQ(tb.runs, tc->runs);
    CHECK_EQ(tb.smuggled, 0);
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

static int table_main(void *arg)
{
    bool bytewise = *(bool *)arg;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (run_case(&cases[i], bytewise) < 0)
            return -1;
    return 0;
}

static coil_http_fn_service table_svc;

static void run_table(bool bytewise)
{
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&table_svc, table_handler, NULL));
    cfg.limits.max_request_line = 64;
    cfg.limits.max_headers = 8;
    cfg.limits.max_body = 64;
    server_start(&cfg);
    run_main(table_main, &bytewise);
}

static void test_table_one_write(void **state)
{
    (void)state;
    run_table(false);
}

static void test_table_byte_by_byte(void **state)
{
    (void)state;
    run_table(true);
}

/* ====================================================================== */
/* 2. Timeouts                                                             */
/* ====================================================================== */

static struct {
    int runs;
    int done;
    ssize_t read_result;
    ssize_t write_result[2];
    uint64_t written;
} tm;

static int timeout_handler(coil_http_request *req, void *data)
{
    (void)data;
    tm.runs++;
    if (path_is(req, "/read")) {
        /* Reads without answering: the server answers a failed read. */
        for (;;) {
            coil_buf b;
            ssize_t n = coil_http_body_read(req, &b);
            coil_buf_release(&b);
            if (n <= 0) {
                tm.read_result = n;
                tm.done = 1;
                return (int)n;
            }
        }
    }
    if (path_is(req, "/flood") || path_is(req, "/big")) {
        /* A small kernel send buffer: the client's pace shows at once. */
        int small = 16 * 1024;
        setsockopt(req->x->conn->sock.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    if (path_is(req, "/flood")) {
        static char chunk[64 * 1024];
        int err = coil_http_response_begin(req, 200, NULL, 0, -1);
        ssize_t n = err;
        while (!err && tm.written < (256u << 20)) {
            n = coil_http_response_write(req, chunk, sizeof(chunk));
            if (n < 0)
                break;
            tm.written += (uint64_t)n;
        }
        tm.write_result[0] = n;
        tm.done = 1;
        return n < 0 ? (int)n : 0;
    }
    if (path_is(req, "/big")) {
        /* Two writes, each far larger than what the kernel buffers hold:
         * each lasts much longer than the send timeout while the client
         * keeps reading. */
        static char half[1024 * 1024];
        memset(half, 'b', sizeof(half));
        int err = coil_http_response_begin(req, 200, NULL, 0, 2 * (int64_t)sizeof(half));
        if (!err) {
            tm.write_result[0] = coil_http_response_write(req, half, sizeof(half));
            tm.write_result[1] = coil_http_response_write(req, half, sizeof(half));
        }
        tm.done = 1;
        return err;
    }
    return respond_text(req, 200, "ok");
}

static coil_http_fn_service timeout_svc;

/* Runs steps against timeout_handler on a server with the default timeouts
 * but those set (non-zero) in t. */
static void timeout_test(coil_http_timeouts t, client_steps steps)
{
    memset(&tm, 0, sizeof(tm));
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&timeout_svc, timeout_handler, NULL));
    coil_http_timeouts *d = &cfg.timeouts;
    d->header_ns = t.header_ns ? t.header_ns : d->header_ns;
    d->body_idle_ns = t.body_idle_ns ? t.body_idle_ns : d->body_idle_ns;
    d->body_min_rate = t.body_min_rate ? t.body_min_rate : d->body_min_rate;
    d->keepalive_ns = t.keepalive_ns ? t.keepalive_ns : d->keepalive_ns;
    d->send_idle_ns = t.send_idle_ns ? t.send_idle_ns : d->send_idle_ns;
    d->drain_ns = t.drain_ns ? t.drain_ns : d->drain_ns;
    server_start(&cfg);
    run_client(steps);
}

/* Slowloris: the head has a total budget, not a per-byte one. */
static int slowloris_steps(cli *c, resp *r)
{
    cli d = { 0 };
    int64_t t0 = coil_now(&loop);
    CHECK_EQ(cli_send_str(c, "GET / HTTP/1.1\r\n"), 0);
    CHECK_EQ(read_response(c, r, false, dl(3000)), 0);
    CHECK_EQ(r->status, 408);
    CHECK(r->close);
    CHECK(coil_now(&loop) - t0 >= 50 * MS);
    CHECK_EQ(cli_closed(c, 2000 * MS), 1);
    /* One byte of a field every 10 ms: progress, but the head never ends. */
    CHECK_EQ(cli_open(&d), 0);
    t0 = coil_now(&loop);
    CHECK_EQ(cli_send_str(&d, "GET / HTTP/1.1\r\nX-Slow: "), 0);
    int err = 0;
    for (int i = 0; i < 100 && !err; i++) {
        coil_sleep(10 * MS);
        err = cli_send_str(&d, "a");
        /* The client's socket has no receive armed (coil_recv is
         * single-shot), so a peek at the kernel's queue tells whether the
         * answer came. */
        char peek;
        if (recv(d.s.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) == 1)
            break;
    }
    CHECK_EQ(read_response(&d, r, false, dl(3000)), 0);
    CHECK_EQ(r->status, 408);
    int64_t took = coil_now(&loop) - t0;
    CHECK(took >= 50 * MS && took < 5000 * MS); /* generous: a loaded machine is slow */
    CHECK_EQ(cli_closed(&d, 2000 * MS), 1);
    CHECK_EQ(tm.runs, 0);
out:
    cli_close(&d);
    return fail_line ? -1 : 0;
}

static void test_header_timeout(void **state)
{
    (void)state;
    timeout_test((coil_http_timeouts){ .header_ns = 60 * MS }, slowloris_steps);
}

static int keepalive_steps(cli *c, resp *r)
{
    CHECK_EQ(roundtrip(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    /* A request within the idle period is served... */
    coil_sleep(20 * MS);
    CHECK_EQ(roundtrip(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(!r->close);
    /* ...then silence: the server closes without a word. */
    int64_t t0 = coil_now(&loop);
    CHECK_EQ(cli_closed(c, 3000 * MS), 1);
    int64_t took = coil_now(&loop) - t0;
    CHECK(took >= 50 * MS && took < 5000 * MS);
    CHECK_EQ(tm.runs, 2);
out:
    return fail_line ? -1 : 0;
}

static void test_keepalive_timeout(void **state)
{
    (void)state;
    timeout_test((coil_http_timeouts){ .keepalive_ns = 60 * MS }, keepalive_steps);
}

static int body_idle_steps(cli *c, resp *r)
{
    CHECK_EQ(cli_send_str(c, "POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
                             "0123456789"),
             0);
    CHECK_EQ(read_response(c, r, false, dl(3000)), 0);
    CHECK_EQ(r->status, 408);
    CHECK(r->close);
    CHECK_EQ(cli_closed(c, 2000 * MS), 1);
    CHECK(tm.done);
    CHECK_EQ(tm.read_result, -ETIMEDOUT);
    coil_http_server_stats st;
    coil_http_server_stats_get(srv, &st);
    CHECK(st.timeouts >= 1);
out:
    return fail_line ? -1 : 0;
}

/* A client that trickles a byte every 10 ms is never idle for body_idle_ns,
 * but it is far below body_min_rate: the request ends with 408. */
static int body_min_rate_steps(cli *c, resp *r)
{
    CHECK_EQ(cli_send_str(c, "POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"), 0);
    for (int i = 0; i < 100; i++) {
        char peek;
        /* Stop once the answer is there: writing into a closed connection
         * would provoke a reset that can discard it. */
        if (recv(c->s.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) >= 0)
            break;
        if (coil_send(&c->s, "x", 1, dl(1000)) != 1)
            break;
        coil_sleep(10 * MS);
    }
    CHECK_EQ(read_response(c, r, false, dl(3000)), 0);
    CHECK_EQ(r->status, 408);
    CHECK(r->close);
    CHECK(tm.done);
    CHECK_EQ(tm.read_result, -ETIMEDOUT);
out:
    return fail_line ? -1 : 0;
}

static void test_body_min_rate(void **state)
{
    (void)state;
    timeout_test((coil_http_timeouts){ .body_idle_ns = 40 * MS, .body_min_rate = 10000 },
                 body_min_rate_steps);
}

static void test_body_idle_timeout(void **state)
{
    (void)state;
    timeout_test((coil_http_timeouts){ .body_idle_ns = 50 * MS }, body_idle_steps);
}

static int send_stalled_steps(cli *c, resp *r)
{
    (void)r;
    int small = 16 * 1024;
    setsockopt(c->s.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    CHECK_EQ(cli_send_str(c, "GET /flood HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    /* Never reads. */
    CHECK(wait_flag(&tm.done));
    CHECK_EQ(tm.write_result[0], -ETIMEDOUT);
    CHECK(tm.written < (256u << 20));
out:
    return fail_line ? -1 : 0;
}

static void test_send_timeout_stalled_client(void **state)
{
    (void)state;
    timeout_test((coil_http_timeouts){ .send_idle_ns = 50 * MS }, send_stalled_steps);
}

static int send_slow_steps(cli *c, resp *r)
{
    (void)r;
    /* A fixed receive buffer: the server sees progress only when the
     * kernel reopens the window, which it does after the reader drained a
     * good part of the buffer; autotuned, that part could take longer than
     * the send timeout at this pace. (Much smaller and loopback's 64 KiB
     * MSS leaves the window shut until the persist timer fires.) */
    int rcvbuf = 32 * 1024;
    setsockopt(c->s.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    CHECK_EQ(cli_send_str(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    int64_t t0 = coil_now(&loop);
    /* 4 KiB every 3 ms, about 1.3 MB/s: slow, but never idle for long (the
     * longest the server waits for room is about 50 ms here, or one TCP
     * persist probe, 200 ms, when a window update is late: the send timeout
     * of 500 ms leaves room for that on a loaded machine). */
    size_t total = 0, head = 0;
    const size_t want = 2 * 1024 * 1024;
    char buf[4096];
    for (;;) {
        ssize_t n = coil_recv(&c->s, buf, sizeof(buf), dl(2000));
        if (n <= 0) {
            note_fail(__LINE__, "cut off after %zu body bytes: recv %zd, server writes %zd, %zd",
                      total, n, tm.write_result[0], tm.write_result[1]);
            goto out;
        }
        if (!head) {
            /* The head is the first thing; it fits in the first read. */
            char *e = memmem(buf, (size_t)n, "\r\n\r\n", 4);
            CHECK(e);
            CHECK(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
            head = (size_t)(e - buf) + 4;
            total = (size_t)n - head;
        } else {
            total += (size_t)n;
        }
        if (total >= want)
            break;
        coil_sleep(3 * MS);
    }
    CHECK_EQ(total, want);
    /* The transfer lasted several send timeouts: the test means something. */
    CHECK(coil_now(&loop) - t0 > 2 * 500 * MS);
    CHECK(wait_flag(&tm.done));
    CHECK_EQ(tm.write_result[0], 1024 * 1024);
    CHECK_EQ(tm.write_result[1], 1024 * 1024);
    CHECK_EQ(cli_closed(c, 20 * MS), 0); /* kept alive */
out:
    return fail_line ? -1 : 0;
}

static void test_send_timeout_spares_slow_reader(void **state)
{
    (void)state;
    timeout_test((coil_http_timeouts){ .send_idle_ns = 500 * MS }, send_slow_steps);
}

/* ====================================================================== */
/* 3. Middleware                                                           */
/* ====================================================================== */

static struct {
    volatile int holding;     /* a /hold handler is inside */
    int calls;
    int sleep_result;
} mw;

static int mw_handler(coil_http_request *req, void *data)
{
    (void)data;
    mw.calls++;
    if (path_is(req, "/hold")) {
        mw.holding++;
        mw.sleep_result = coil_sleep(100 * MS);
        mw.holding--;
        return respond_text(req, 200, "held");
    }
    if (path_is(req, "/sleep")) {
        mw.sleep_result = coil_sleep(300 * MS);
        if (mw.sleep_result < 0)
            return mw.sleep_result;
        return respond_text(req, 200, "slept");
    }
    return respond_text(req, 200, "ok");
}

static coil_http_fn_service mw_fn;

static coil_http_service *mw_inner(void)
{
    memset((void *)&mw, 0, sizeof(mw));
    return coil_http_fn_init(&mw_fn, mw_handler, NULL);
}

static int timeout_mw_steps(cli *c, resp *r)
{
    int64_t t0 = coil_now(&loop);
    CHECK_EQ(roundtrip(c, "GET /sleep HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 503);
    int64_t took = coil_now(&loop) - t0;
    CHECK(took >= 25 * MS && took < 5000 * MS);
    CHECK(mw.sleep_result < 0);
    /* A fast request under the same budget is untouched. */
    cli_close(c);
    CHECK_EQ(cli_open(c), 0);
    CHECK_EQ(roundtrip(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(body_is(r, "ok"));
out:
    return fail_line ? -1 : 0;
}

static void test_timeout_middleware(void **state)
{
    (void)state;
    static coil_http_timeout to;
    coil_http_server_config cfg = base_cfg(coil_http_timeout_init(&to, mw_inner(), 30 * MS));
    server_start(&cfg);
    run_client(timeout_mw_steps);
}

/* A client task: one request, its response and when it arrived. */
typedef struct bg_req {
    const char *req;
    resp r;
    int err;
    int64_t done_at;
} bg_req;

static int bg_client(void *arg)
{
    bg_req *b = arg;
    cli c = { 0 };
    b->err = cli_open(&c);
    if (!b->err)
        b->err = roundtrip(&c, b->req, &b->r);
    b->done_at = coil_now(&loop);
    cli_close(&c);
    return 0;
}

static bg_req bg_a, bg_b;

/* A holds the only slot; B arrives while it does. A must be answered 200,
 * B b_status (a refusal, 503, with Retry-After). */
static int two_requests(int b_status)
{
    bg_a = (bg_req){ .req = "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n" };
    bg_b = (bg_req){ .req = "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n" };
    coil_task *ta = NULL;
    if (coil_spawn(&loop, bg_client, &bg_a, &ta) < 0)
        return -1;
    bool held = wait_flag(&mw.holding);
    int64_t t0 = coil_now(&loop);
    bg_client(&bg_b);
    coil_join(ta, NULL);
    if (!held)
        return -1;
    /* B's wait, measured from when A held the slot. */
    bg_b.done_at -= t0;
    bg_a.done_at -= t0;
    CHECK_EQ(bg_a.err, 0);
    CHECK_EQ(bg_a.r.status, 200);
    CHECK_EQ(bg_b.err, 0);
    CHECK_EQ(bg_b.r.status, b_status);
    if (b_status == 503)
        CHECK(resp_field(&bg_b.r, "Retry-After", NULL, 0));
out:
    return fail_line ? -1 : 0;
}

static int concurrency_short_main(void *arg)
{
    (void)arg;
    CHECK_EQ(two_requests(503), 0);
    CHECK(bg_b.done_at >= 15 * MS);       /* it did wait wait_ns */
    CHECK(bg_b.done_at < bg_a.done_at);   /* and no longer */
    CHECK_EQ(mw.calls, 1);
out:
    return fail_line ? -1 : 0;
}

static void test_concurrency_limit_refuses(void **state)
{
    (void)state;
    static coil_http_concurrency cl;
    coil_http_server_config cfg =
        base_cfg(coil_http_concurrency_init(&cl, mw_inner(), 1, 20 * MS));
    server_start(&cfg);
    run_main(concurrency_short_main, NULL);
}

static int concurrency_long_main(void *arg)
{
    (void)arg;
    CHECK_EQ(two_requests(200), 0);
    /* B ran after A, never beside it. */
    CHECK(bg_b.done_at >= bg_a.done_at);
    CHECK(bg_b.done_at >= 150 * MS);
    CHECK_EQ(mw.calls, 2);
out:
    return fail_line ? -1 : 0;
}

static void test_concurrency_limit_queues(void **state)
{
    (void)state;
    static coil_http_concurrency cl;
    coil_http_server_config cfg =
        base_cfg(coil_http_concurrency_init(&cl, mw_inner(), 1, 1000 * MS));
    server_start(&cfg);
    run_main(concurrency_long_main, NULL);
}

static coil_http_shed shed;

static int shed_main(void *arg)
{
    (void)arg;
    CHECK_EQ(two_requests(503), 0);
    CHECK(bg_b.done_at < 50 * MS); /* at once, not queued */
    CHECK_EQ(shed.shed, 1);
    CHECK_EQ(shed.running, 0);
    CHECK_EQ(mw.calls, 1);
out:
    return fail_line ? -1 : 0;
}

static void test_load_shedding(void **state)
{
    (void)state;
    coil_http_server_config cfg = base_cfg(coil_http_shed_init(&shed, mw_inner(), 1));
    server_start(&cfg);
    run_main(shed_main, NULL);
}

static coil_http_access_log alog;
static int log_pipe[2];
static char log_text[4096];

static int log_steps(cli *c, resp *r)
{
    CHECK_EQ(roundtrip(c, "GET /logged?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK_EQ(roundtrip(c, "POST /missing HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", r),
             0);
    CHECK_EQ(r->status, 404);
    /* Writes what is buffered now instead of after the batch period. */
    coil_http_access_log_exit(&alog);
    ssize_t n = read(log_pipe[0], log_text, sizeof(log_text) - 1);
    CHECK(n > 0);
    log_text[n] = '\0';
    int lines = 0;
    for (char *p = log_text; (p = strchr(p, '\n')); p++)
        lines++;
    CHECK_EQ(lines, 2);
    char *first = strstr(log_text, "\"GET /logged?x=1\" 200 ");
    char *second = strstr(log_text, "\"POST /missing\" 404 ");
    CHECK(first && second && first < second);
    CHECK(strstr(log_text, "127.0.0.1"));
out:
    return fail_line ? -1 : 0;
}

static void test_access_log(void **state)
{
    (void)state;
    assert_int_equal(pipe2(log_pipe, O_CLOEXEC | O_NONBLOCK), 0);
    static coil_http_route routes[1];
    static coil_http_router router;
    routes[0] = (coil_http_route){ .method = "GET", .path = "/logged", .service = mw_inner() };
    coil_http_router_init(&router, routes, 1);
    coil_http_server_config cfg =
        base_cfg(coil_http_access_log_init(&alog, &router.svc, &loop, log_pipe[1]));
    server_start(&cfg);
    run_client(log_steps);
    close(log_pipe[0]);
    close(log_pipe[1]);
}

/* A user-written middleware: a struct that begins with coil_http_service,
 * wrapping the router. It answers 401 itself (with its header) when the key
 * is missing, and otherwise hands its header to the handlers behind it
 * through req->data. */
typedef struct tag_layer {
    coil_http_service svc;
    coil_http_field tag;
    unsigned calls, passed;
} tag_layer;

static int tag_call(coil_http_service *self, coil_http_request *req)
{
    tag_layer *t = (tag_layer *)self;
    t->calls++;
    if (!coil_http_field_find(req, "X-Key")) {
        coil_http_field f[2] = { t->tag, COIL_HTTP_FIELD("WWW-Authenticate", "Key") };
        return coil_http_respond(req, 401, f, 2, "key?\n", 5);
    }
    t->passed++;
    req->data = &t->tag;
    return coil_http_call(self->inner, req);
}

static int tagged_handler(coil_http_request *req, void *data)
{
    const coil_http_field *extra = req->data;
    return coil_http_respond(req, 200, extra, extra ? 1 : 0, data, strlen(data));
}

static tag_layer tag;

static int user_mw_steps(cli *c, resp *r)
{
    char v[64];
    CHECK_EQ(roundtrip(c, "GET /t HTTP/1.1\r\nHost: a\r\nX-Key: k\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(body_is(r, "routed"));
    CHECK(resp_field(r, "X-Tag", v, sizeof(v)) && strcmp(v, "layer") == 0);
    CHECK_EQ(roundtrip(c, "GET /t HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 401);
    CHECK(resp_field(r, "X-Tag", v, sizeof(v)) && strcmp(v, "layer") == 0);
    CHECK(resp_field(r, "WWW-Authenticate", NULL, 0));
    /* The router behind the layer still answers what it does not know. */
    CHECK_EQ(roundtrip(c, "GET /nowhere HTTP/1.1\r\nHost: a\r\nX-Key: k\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 404);
    CHECK_EQ(tag.calls, 3);
    CHECK_EQ(tag.passed, 2);
out:
    return fail_line ? -1 : 0;
}

static void test_user_middleware(void **state)
{
    (void)state;
    static coil_http_fn_service h;
    static coil_http_route routes[1];
    static coil_http_router router;
    routes[0] = (coil_http_route){ .method = "GET",
                                   .path = "/t",
                                   .service = coil_http_fn_init(&h, tagged_handler, "routed") };
    coil_http_router_init(&router, routes, 1);
    tag = (tag_layer){ .svc = { .call = tag_call, .inner = &router.svc },
                       .tag = COIL_HTTP_FIELD("X-Tag", "layer") };
    coil_http_server_config cfg = base_cfg(&tag.svc);
    server_start(&cfg);
    run_client(user_mw_steps);
}

/* ====================================================================== */
/* 4. Router                                                               */
/* ====================================================================== */

static int named_handler(coil_http_request *req, void *data)
{
    if (path_is(req, "/upload")) {
        char *body = NULL;
        ssize_t n = coil_http_body_read_all(req, &body, 0);
        if (n < 0)
            return (int)n;
        free(body);
    }
    return respond_text(req, 200, data);
}

static int router_steps(cli *c, resp *r)
{
    static const struct {
        const char *req;
        int status;
        const char *body;
    } rt[] = {
        { "GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 200, "exact /a" },
        { "GET /ab HTTP/1.1\r\nHost: a\r\n\r\n", 200, "prefix /a" },
        { "GET /a/x HTTP/1.1\r\nHost: a\r\n\r\n", 200, "prefix /a" },
        { "GET /a/b/c HTTP/1.1\r\nHost: a\r\n\r\n", 200, "prefix /a/b/" },
        { "GET /a/b HTTP/1.1\r\nHost: a\r\n\r\n", 200, "prefix /a" },
        { "DELETE /a HTTP/1.1\r\nHost: a\r\n\r\n", 200, "prefix /a" }, /* any method */
        { "GET /zzz HTTP/1.1\r\nHost: a\r\n\r\n", 404, NULL },
        { "GET /p HTTP/1.1\r\nHost: a\r\n\r\n", 405, NULL },
        { "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 200, "post /p" },
        { "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", 200,
          "upload" },
    };
    char v[128];
    for (size_t i = 0; i < sizeof(rt) / sizeof(rt[0]); i++) {
        snprintf(fail_where, sizeof(fail_where), "request %zu", i);
        CHECK_EQ(roundtrip(c, rt[i].req, r), 0);
        CHECK_EQ(r->status, rt[i].status);
        if (rt[i].body)
            CHECK(body_is(r, rt[i].body));
    }
    fail_where[0] = '\0';
    /* 405 names the methods that would do. */
    CHECK_EQ(roundtrip(c, "GET /p HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 405);
    CHECK(resp_field(r, "Allow", v, sizeof(v)));
    CHECK(strstr(v, "POST") && strstr(v, "PUT") && !strstr(v, "GET"));
    /* A GET route answers HEAD: the length, no body. */
    CHECK_EQ(roundtrip(c, "HEAD /a HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(r->has_length && r->length == 8);
    CHECK_EQ(roundtrip(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n", r), 0); /* nothing stray before */
    CHECK(body_is(r, "exact /a"));
    /* The route's own body limit (16) is below the server's. */
    CHECK_EQ(roundtrip(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 32\r\n\r\n"
                          "0123456789abcdef0123456789abcdef", r), 0);
    CHECK_EQ(r->status, 413);
    CHECK(r->close);
    CHECK_EQ(cli_closed(c, 2000 * MS), 1);
out:
    return fail_line ? -1 : 0;
}

static void test_router(void **state)
{
    (void)state;
    static coil_http_fn_service s_exact, s_pa, s_pab, s_post, s_put, s_up;
    static coil_http_route routes[6];
    static coil_http_router router;
#define ROUTE(m, p, pre, svc, text, max)                                                           \
    (coil_http_route){ (m), (p), (pre), coil_http_fn_init(&(svc), named_handler, (text)), (max) }
    routes[0] = ROUTE("GET", "/a", false, s_exact, "exact /a", 0);
    routes[1] = ROUTE(NULL, "/a", true, s_pa, "prefix /a", 0);
    routes[2] = ROUTE(NULL, "/a/b/", true, s_pab, "prefix /a/b/", 0);
    routes[3] = ROUTE("POST", "/p", false, s_post, "post /p", 0);
    routes[4] = ROUTE("PUT", "/p", false, s_put, "put /p", 0);
    routes[5] = ROUTE("POST", "/upload", false, s_up, "upload", 16);
#undef ROUTE
    coil_http_router_init(&router, routes, 6);
    coil_http_server_config cfg = base_cfg(&router.svc);
    server_start(&cfg);
    run_client(router_steps);
}

/* ====================================================================== */
/* 5. Responses                                                            */
/* ====================================================================== */

static struct {
    int reads;        /* /read-body handler: body reads attempted */
    int end_result;
    ssize_t gather[4]; /* /gather: no buffers, too many, past the length, the write */
    bool gather_released; /* every view given to a refused write came back empty */
} rs;

/* /gather: the request body, split into views, goes back as one write of
 * several buffers (one chunk); the refused calls first. */
static int gather_handler(coil_http_request *req)
{
    coil_buf body;
    ssize_t n = coil_http_body_read(req, &body);
    if (n != 10) {
        coil_buf_release(&body);
        return -EIO;
    }
    coil_buf v[COIL_HTTP_WRITE_BUFS_MAX + 1];
    rs.gather[0] = coil_http_response_write_bufs(req, v, 0, false);
    for (unsigned i = 0; i < COIL_HTTP_WRITE_BUFS_MAX + 1; i++)
        coil_buf_share(&body, i % 10, 1, &v[i]);
    rs.gather[1] = coil_http_response_write_bufs(req, v, COIL_HTTP_WRITE_BUFS_MAX + 1, false);
    rs.gather_released = true;
    for (unsigned i = 0; i < COIL_HTTP_WRITE_BUFS_MAX + 1; i++)
        rs.gather_released &= v[i].loop == NULL && v[i].len == 0;
    int err = coil_http_response_begin(req, 200, NULL, 0, -1);
    static const size_t cut[] = { 0, 3, 7, 10 };
    for (unsigned i = 0; i < 3; i++)
        coil_buf_share(&body, cut[i], cut[i + 1] - cut[i], &v[i]);
    coil_buf_release(&body);
    if (err) {
        for (unsigned i = 0; i < 3; i++)
            coil_buf_release(&v[i]);
        return err;
    }
    rs.gather[3] = coil_http_response_write_bufs(req, v, 3, false);
    return coil_http_response_end(req, NULL, 0);
}

static int resp_handler(coil_http_request *req, void *data)
{
    (void)data;
    if (path_is(req, "/text"))
        return respond_text(req, 200, "hello");
    if (path_is(req, "/204"))
        return respond_text(req, 204, "must not be sent");
    if (path_is(req, "/304")) {
        coil_http_field etag = COIL_HTTP_FIELD("ETag", "\"v1\"");
        return coil_http_respond(req, 304, &etag, 1, "must not be sent", 16);
    }
    if (path_is(req, "/chunked")) {
        int err = coil_http_response_begin(req, 200, NULL, 0, -1);
        if (!err && coil_http_response_write(req, "hello, ", 7) != 7)
            err = -EIO;
        if (!err && coil_http_response_write(req, "world", 5) != 5)
            err = -EIO;
        coil_http_field tr[2] = { COIL_HTTP_FIELD("X-Sum", "42"), COIL_HTTP_FIELD("X-Parts", "2") };
        if (!err)
            err = coil_http_response_end(req, tr, 2);
        return err;
    }
    if (path_is(req, "/short")) {
        int err = coil_http_response_begin(req, 200, NULL, 0, 10);
        if (!err && coil_http_response_write(req, "12345", 5) != 5)
            err = -EIO;
        rs.end_result = coil_http_response_end(req, NULL, 0);
        return err;
    }
    if (path_is(req, "/stream")) {
        int err = coil_http_response_begin(req, 200, NULL, 0, -1);
        if (!err && coil_http_response_write(req, "abc", 3) != 3)
            err = -EIO;
        if (!err && coil_http_response_write(req, "def", 3) != 3)
            err = -EIO;
        return err;
    }
    if (path_is(req, "/gather"))
        return gather_handler(req);
    if (path_is(req, "/read-body")) {
        rs.reads++;
        return respond_echo(req, NULL);
    }
    if (path_is(req, "/refuse"))
        return respond_text(req, 413, "too big\n");
    return respond_text(req, 404, "no\n");
}

static coil_http_fn_service resp_svc;

/* Runs steps against resp_handler. */
static void resp_test(client_steps steps)
{
    memset(&rs, 0, sizeof(rs));
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&resp_svc, resp_handler, NULL));
    server_start(&cfg);
    run_client(steps);
}

static int head_steps(cli *c, resp *r)
{
    CHECK_EQ(roundtrip(c, "HEAD /text HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(r->has_length && r->length == 5);
    CHECK(!r->chunked);
    /* Had body bytes followed, this response would not parse. */
    CHECK_EQ(roundtrip(c, "GET /text HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(body_is(r, "hello"));
    CHECK_EQ(cli_closed(c, 20 * MS), 0);
out:
    return fail_line ? -1 : 0;
}

static void test_head_response(void **state)
{
    (void)state;
    resp_test(head_steps);
}

static int no_body_steps(cli *c, resp *r)
{
    static const char *const reqs[] = { "GET /204 HTTP/1.1\r\nHost: a\r\n\r\n",
                                        "GET /304 HTTP/1.1\r\nHost: a\r\n\r\n" };
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(roundtrip(c, reqs[i], r), 0);
        CHECK_EQ(r->status, i ? 304 : 204);
        CHECK(!r->has_length);
        CHECK(!resp_field(r, "Transfer-Encoding", NULL, 0));
        if (i)
            CHECK(resp_field(r, "ETag", NULL, 0));
        /* Nothing follows the head but the next answer. */
        CHECK_EQ(roundtrip(c, "GET /text HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
        CHECK(body_is(r, "hello"));
    }
out:
    return fail_line ? -1 : 0;
}

static void test_204_304_no_body(void **state)
{
    (void)state;
    resp_test(no_body_steps);
}

static int chunked_steps(cli *c, resp *r)
{
    CHECK_EQ(roundtrip(c, "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(r->chunked);
    CHECK(!r->has_length);
    CHECK(body_is(r, "hello, world"));
    CHECK(strstr(r->trailers, "X-Sum: 42\n") && strstr(r->trailers, "X-Parts: 2\n"));
    CHECK_EQ(roundtrip(c, "GET /text HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK(body_is(r, "hello"));
out:
    return fail_line ? -1 : 0;
}

static void test_chunked_response_trailers(void **state)
{
    (void)state;
    resp_test(chunked_steps);
}

static int gather_steps(cli *c, resp *r)
{
    (void)r;
    CHECK_EQ(cli_send_str(c, "POST /gather HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
                             "abcdefghij"),
             0);
    static const char body[] = "a\r\nabcdefghij\r\n0\r\n\r\n"; /* one chunk of all three */
    const char *end = NULL;
    while (!end && c->len < CLI_CAP) {
        c->buf[c->len] = '\0';
        end = strstr(c->buf, "\r\n\r\n");
        if (end && c->len - (size_t)(end + 4 - c->buf) < sizeof(body) - 1)
            end = NULL;
        if (!end && cli_fill(c, dl(5000)) <= 0)
            break;
    }
    CHECK(end != NULL);
    CHECK(strncmp(c->buf, "HTTP/1.1 200 ", 13) == 0);
    CHECK_EQ(c->len - (size_t)(end + 4 - c->buf), sizeof(body) - 1);
    CHECK(memcmp(end + 4, body, sizeof(body) - 1) == 0);
    CHECK_EQ(rs.gather[0], -EINVAL);
    CHECK_EQ(rs.gather[1], -EINVAL);
    CHECK(rs.gather_released);
    CHECK_EQ(rs.gather[3], 10);
out:
    return fail_line ? -1 : 0;
}

static void test_write_several_buffers(void **state)
{
    (void)state;
    resp_test(gather_steps);
}

static int short_steps(cli *c, resp *r)
{
    /* Announced 10, sent 5: the only honest signal left is the close. */
    CHECK_EQ(roundtrip(c, "GET /short HTTP/1.1\r\nHost: a\r\n\r\n", r), -EPIPE);
    CHECK_EQ(r->status, 200);
    CHECK(r->has_length && r->length == 10);
    CHECK_EQ(r->body_len, 5);
    CHECK_EQ(rs.end_result, -EPROTO);
out:
    return fail_line ? -1 : 0;
}

static void test_short_response_closes(void **state)
{
    (void)state;
    resp_test(short_steps);
}

static int http10_steps(cli *c, resp *r)
{
    CHECK_EQ(roundtrip(c, "GET /stream HTTP/1.0\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(!r->has_length && !r->chunked);
    CHECK(r->until_eof);
    CHECK(r->close);
    CHECK(body_is(r, "abcdef"));
out:
    return fail_line ? -1 : 0;
}

static void test_http10_close_delimited(void **state)
{
    (void)state;
    resp_test(http10_steps);
}

static int continue_steps(cli *c, resp *r)
{
    CHECK_EQ(cli_send_str(c, "POST /read-body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                             "Expect: 100-continue\r\n\r\n"), 0);
    /* The body is held back until the server asks for it. */
    memset(r, 0, sizeof(*r));
    CHECK_EQ(read_one_head(c, r, dl(3000)), 0);
    CHECK_EQ(r->status, 100);
    CHECK_EQ(cli_send_str(c, "hello"), 0);
    CHECK_EQ(read_response(c, r, false, dl(3000)), 0);
    CHECK_EQ(r->status, 200);
    CHECK_EQ(r->interim, 0);
    CHECK(body_is(r, "hello"));
    CHECK_EQ(rs.reads, 1);
    /* The connection is still in step. */
    CHECK_EQ(roundtrip(c, "GET /text HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK(body_is(r, "hello"));
out:
    return fail_line ? -1 : 0;
}

static void test_expect_continue_on_read(void **state)
{
    (void)state;
    resp_test(continue_steps);
}

static int refuse_steps(cli *c, resp *r)
{
    CHECK_EQ(cli_send_str(c, "POST /refuse HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n"
                             "Expect: 100-continue\r\n\r\n"), 0);
    CHECK_EQ(read_response(c, r, false, dl(3000)), 0);
    CHECK_EQ(r->interim, 0); /* no 100 Continue before the refusal */
    CHECK_EQ(r->status, 413);
    /* The body never comes, so the connection cannot go on: the answer says
     * so and the server closes. */
    CHECK(r->close);
    CHECK_EQ(cli_closed(c, 2000 * MS), 1);
out:
    return fail_line ? -1 : 0;
}

static void test_expect_continue_not_on_refusal(void **state)
{
    (void)state;
    resp_test(refuse_steps);
}

/* ====================================================================== */
/* 6. Graceful stop                                                        */
/* ====================================================================== */

static struct {
    volatile int in_flight;
    int sleep_result;
} gs;

static int stop_handler(coil_http_request *req, void *data)
{
    (void)data;
    if (path_is(req, "/slow")) {
        gs.in_flight = 1;
        gs.sleep_result = coil_sleep(50 * MS);
        return respond_text(req, 200, "slow done");
    }
    return respond_text(req, 200, "fast");
}

typedef struct stop_client {
    resp r;
    int err, closed;
    int64_t answered_at;
} stop_client;

static int stop_slow_client(void *arg)
{
    stop_client *sc = arg;
    cli c = { 0 };
    sc->err = cli_open(&c);
    if (!sc->err)
        sc->err = roundtrip(&c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n", &sc->r);
    sc->answered_at = coil_now(&loop);
    if (!sc->err)
        sc->closed = cli_closed(&c, 2000 * MS);
    cli_close(&c);
    return 0;
}

static stop_client slow_client;

static int stop_main(void *arg)
{
    (void)arg;
    cli idle = { 0 }, fresh = { 0 }, late = { 0 };
    resp *r = &table_resp;
    coil_task *ta = NULL;
    memset((void *)&gs, 0, sizeof(gs));
    memset(&slow_client, 0, sizeof(slow_client));
    /* An idle keep-alive connection, parked. */
    CHECK_EQ(cli_open(&idle), 0);
    CHECK_EQ(roundtrip(&idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", r), 0);
    CHECK_EQ(r->status, 200);
    CHECK(!r->close);
    /* A connection accepted that has not sent a byte yet: idle too. */
    CHECK_EQ(cli_open(&fresh), 0);
    /* A request in flight. */
    CHECK_EQ(coil_spawn(&loop, stop_slow_client, &slow_client, &ta), 0);
    CHECK(wait_flag(&gs.in_flight));
    coil_loop_stats st;
    coil_loop_stats_get(&loop, &st);
    CHECK_EQ(st.socks_parked, 1);
    coil_http_server_stats ss;
    coil_http_server_stats_get(srv, &ss);
    CHECK_EQ(ss.connections_open, 3);
    coil_http_server_stop(srv);
    srv = NULL;
    /* The idle one goes at once, well before the slow answer. */
    CHECK_EQ(cli_closed(&idle, 2000 * MS), 1);
    CHECK_EQ(cli_closed(&fresh, 2000 * MS), 1);
    CHECK(!slow_client.answered_at); /* both closed before the slow answer came */
    /* Nobody is accepted any more. */
    int err = harness_connect(&loop, &late.s, port, dl(2000));
    late.open = err == 0;
    CHECK_EQ(err, -ECONNREFUSED);
    /* The request in flight completes, told the connection will close. */
    coil_join(ta, NULL);
    ta = NULL;
    CHECK_EQ(slow_client.err, 0);
    CHECK_EQ(slow_client.r.status, 200);
    CHECK(body_is(&slow_client.r, "slow done"));
    CHECK(slow_client.r.close);
    CHECK_EQ(slow_client.closed, 1);
    CHECK_EQ(gs.sleep_result, 0);
out:
    if (ta)
        coil_join(ta, NULL);
    cli_close(&idle);
    cli_close(&fresh);
    cli_close(&late);
    return fail_line ? -1 : 0;
}

static void test_graceful_stop(void **state)
{
    (void)state;
    int fds = harness_fd_count();
    static coil_http_fn_service s;
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&s, stop_handler, NULL));
    server_start(&cfg);
    fail_line = 0;
    fail_what[0] = fail_where[0] = '\0';
    int r = harness_run(&loop, stop_main, NULL);
    if (srv) { /* the task failed before it stopped the server */
        coil_http_server_stop(srv);
        srv = NULL;
    }
    /* Nothing left: the server freed itself, and the loop says so by
     * returning. A watchdog turns a hang into a failure. */
    alarm(20);
    assert_int_equal(coil_loop_run(&loop), 0);
    alarm(0);
    if (fail_line || r)
        fail_msg("line %d: %s (task returned %d)", fail_line, fail_what, r);
    coil_loop_stats st;
    coil_loop_stats_get(&loop, &st);
    assert_int_equal(st.tasks_live, 0);
    assert_int_equal(st.socks_parked, 0);
    assert_int_equal(harness_fd_count(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_byte_by_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_min_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_timeout_stalled_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_timeout_spares_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_middleware, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_limit_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_limit_queues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_shedding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_middleware, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_204_304_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_response_trailers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_several_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_response_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10_close_delimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue_on_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue_not_on_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_stop, setup, teardown),
    };
    return HARNESS_RUN(tests);
}
