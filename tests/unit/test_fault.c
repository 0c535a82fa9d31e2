/* Fault injection (runtime/src/fault.c): each recovery path the faults
 * exercise, on both backends. Faults count calls on the whole loop, so the
 * HTTP tests whose client must not be hit (resets, accept errors, the
 * descriptor limit) drive the server from a thread with plain blocking
 * sockets; the others let the client tasks share the faults. */
#include "http_fixture.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault.h"
#include "loop_impl.h" /* whether the wrapper is installed */

static coil__fault_counts counts(void)
{
    coil__fault_counts c;
    coil__faults_get(&loop, &c);
    return c;
}

static unsigned char pat(size_t i)
{
    return (unsigned char)((i * 131u + (i >> 9)) & 0xff);
}

/* ---- grammar ---- */

static void test_parse(void **state)
{
    (void)state;
    uint32_t e[COIL__FAULT_KINDS];
    char why[160];
    assert_int_equal(coil__faults_parse("send_short=3,recv_short=2,recv_reset=50,accept_emfile=4,recv_nobufs=7",
                                        e, why, sizeof(why)),
                     0);
    assert_int_equal(e[COIL__FAULT_SEND_SHORT], 3);
    assert_int_equal(e[COIL__FAULT_SEND_RESET], 0);
    assert_int_equal(e[COIL__FAULT_RECV_SHORT], 2);
    assert_int_equal(e[COIL__FAULT_RECV_RESET], 50);
    assert_int_equal(e[COIL__FAULT_RECV_NOBUFS], 7);
    assert_int_equal(e[COIL__FAULT_ACCEPT_EMFILE], 4);
    assert_int_equal(coil__faults_parse("", e, why, sizeof(why)), 0);
    assert_int_equal(coil__faults_parse("send_reset=0", e, why, sizeof(why)), 0);
    const char *bad[] = { "send_shrt=3", "send_short", "send_short=", "send_short=x",
                          "send_short=-1", "send_short=3,", "send_short=3,,recv_short=1",
                          "send_short=3,send_short=4", " send_short=3", "send_short=3 ",
                          "send_short=1000000001", "send_short=99999999999", "=3" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        if (coil__faults_parse(bad[i], e, why, sizeof(why)) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(why[0] != '\0');
    }
}

/* A bad COIL_FAULTS makes loop init fail; unset, nothing is installed. */
static void test_env(void **state)
{
    (void)state;
    coil_loop l2;
    setenv("COIL_FAULTS", "recv_short=two", 1);
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.backend = harness_backend();
    assert_int_equal(coil_loop_init(&l2, &o), -EINVAL);
    setenv("COIL_FAULTS", "no_such_fault=1", 1);
    assert_int_equal(coil_loop_init(&l2, &o), -EINVAL);
    setenv("COIL_FAULTS", "recv_short=2", 1);
    assert_int_equal(coil_loop_init(&l2, &o), 0);
    assert_non_null(l2.impl->faults);
    assert_string_equal(coil_loop_backend(&l2), harness_backend());
    assert_int_equal(coil_loop_exit(&l2), 0);
    unsetenv("COIL_FAULTS");
    assert_int_equal(coil_loop_init(&l2, &o), 0);
    assert_null(l2.impl->faults);
    assert_true(l2.impl->be == &coil__backend_uring || l2.impl->be == &coil__backend_epoll);
    assert_int_equal(coil_loop_exit(&l2), 0);
}

/* ---- raw sockets: a pair on the test's loop ---- */

typedef struct pair {
    coil_sock lsn, a, b; /* a: connected side, b: accepted side */
    size_t total;
    int mode;            /* receiver: 0 coil_recv, 1 coil_recv_buf, 2 both in turn */
    bool paced;          /* sender: 4 KiB at a time with a yield between, so
                          * that the receiver's queue runs empty */
    size_t got;
    bool bad_byte;
} pair;

static int sender(void *arg)
{
    pair *p = arg;
    size_t chunk = p->paced ? 4096 : 64 * 1024;
    char *buf = malloc(chunk);
    size_t off = 0;
    int err = 0;
    while (off < p->total) {
        size_t n = p->total - off < chunk ? p->total - off : chunk;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)pat(off + i);
        /* Two pieces per call: a short send must be continued across iovecs. */
        struct iovec iov[2] = { { buf, n / 3 }, { buf + n / 3, n - n / 3 } };
        ssize_t r = coil_sendv(&p->a, iov, 2, coil_deadline_in(&loop, 10000 * MS));
        if (r != (ssize_t)n) {
            err = -1;
            break;
        }
        off += n;
        if (p->paced)
            coil_yield();
    }
    free(buf);
    coil_shutdown(&p->a, SHUT_WR);
    return err;
}

static void check_bytes(pair *p, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)d[i] != pat(p->got + i))
            p->bad_byte = true;
    p->got += n;
}

static int receiver(void *arg)
{
    pair *p = arg;
    char buf[8192];
    for (unsigned i = 0;; i++) {
        bool use_buf = p->mode == 1 || (p->mode == 2 && (i & 1));
        ssize_t n;
        if (use_buf) {
            coil_buf b;
            n = coil_recv_buf(&p->b, &b, coil_deadline_in(&loop, 10000 * MS));
            if (n > 0)
                check_bytes(p, b.data, b.len);
            coil_buf_release(&b);
        } else {
            n = coil_recv(&p->b, buf, sizeof(buf), coil_deadline_in(&loop, 10000 * MS));
            if (n > 0)
                check_bytes(p, buf, (size_t)n);
        }
        if (n <= 0)
            return (int)n;
    }
}

static int pair_main(void *arg)
{
    pair *p = arg;
    harness_listen(&loop, &p->lsn);
    int err = harness_connect(&loop, &p->a, coil_sock_port(&p->lsn), dl(5000));
    if (err)
        return err;
    err = coil_accept(&p->lsn, &p->b, NULL, dl(5000));
    if (err)
        return err;
    coil_task *ts, *tr;
    coil_spawn(&loop, sender, p, &ts);
    coil_spawn(&loop, receiver, p, &tr);
    int rs = -1, rr = -1;
    coil_join(ts, &rs);
    coil_join(tr, &rr);
    coil_close(&p->a);
    coil_close(&p->b);
    coil_close(&p->lsn);
    return rs ? rs : rr;
}

static void run_pair(const char *spec, size_t total, int mode, coil_loop_options *o)
{
    if (o)
        harness_loop_init(&loop, o);
    else
        harness_loop_init(&loop, NULL);
    assert_int_equal(coil__faults_set(&loop, spec), 0);
    pair p = { .total = total, .mode = mode, .paced = strstr(spec, "nobufs") != NULL };
    assert_int_equal(harness_run(&loop, pair_main, &p), 0);
    assert_int_equal(p.got, total);
    assert_false(p.bad_byte);
}

/* (1) Short sends: coil_sendv goes on from the first unsent byte. */
static void test_send_short(void **state)
{
    (void)state;
    const char *specs[] = { "send_short=1", "send_short=2", "send_short=3" };
    for (int i = 0; i < 3; i++) {
        run_pair(specs[i], 1u << 20, 0, NULL);
        coil__fault_counts c = counts();
        coil_loop_stats st;
        coil_loop_stats_get(&loop, &st);
        print_message("%s: %llu of %llu sends cut, %llu sends continued\n", specs[i],
                      (unsigned long long)c.injected[COIL__FAULT_SEND_SHORT],
                      (unsigned long long)c.sends, (unsigned long long)st.sends_continued);
        assert_true(c.injected[COIL__FAULT_SEND_SHORT] >= c.sends / (unsigned)(i + 1) / 2);
        assert_true(c.injected[COIL__FAULT_SEND_SHORT] > 0);
        assert_true(st.sends_continued >= c.injected[COIL__FAULT_SEND_SHORT]);
        harness_loop_exit(&loop);
    }
}

/* (2) Short receives reassemble in order: into caller memory, into borrowed
 * buffers (the rest held for the socket) and both in turn, also with the
 * buffer pool made to look dry. */
static void test_recv_short(void **state)
{
    (void)state;
    struct {
        const char *spec;
        int mode;
    } cases[] = {
        { "recv_short=1", 0 },
        { "recv_short=2", 0 },
        { "recv_short=1", 1 },
        { "recv_short=3", 1 },
        { "recv_short=1", 2 },
        { "recv_short=2,recv_nobufs=3,send_short=5", 2 },
        { "recv_nobufs=2", 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_pair(cases[i].spec, 512u * 1024, cases[i].mode, NULL);
        coil__fault_counts c = counts();
        coil_loop_stats st;
        coil_loop_stats_get(&loop, &st);
        print_message("%s mode %d: %llu short, %llu nobufs of %llu receives, %llu overflow buffers\n",
                      cases[i].spec, cases[i].mode,
                      (unsigned long long)c.injected[COIL__FAULT_RECV_SHORT],
                      (unsigned long long)c.injected[COIL__FAULT_RECV_NOBUFS],
                      (unsigned long long)c.recvs, (unsigned long long)st.bufs_overflow);
        if (strstr(cases[i].spec, "recv_short"))
            assert_true(c.injected[COIL__FAULT_RECV_SHORT] > 0);
        if (strstr(cases[i].spec, "recv_nobufs")) {
            assert_true(c.injected[COIL__FAULT_RECV_NOBUFS] > 0);
            if (cases[i].mode == 1)
                assert_true(st.bufs_overflow > 0);
        }
        harness_loop_exit(&loop);
    }
    /* Without multishot (io_uring's single-shot path; epoll as usual). */
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.flags = COIL_LOOP_NO_MULTISHOT;
    run_pair("recv_short=1,recv_nobufs=4", 256u * 1024, 2, &o);
    assert_true(counts().injected[COIL__FAULT_RECV_SHORT] > 0);
    harness_loop_exit(&loop);
}

/* ---- HTTP: a client thread with blocking sockets ---- */

static coil_http_fn_service svc;

static int handler(coil_http_request *req, void *data)
{
    (void)data;
    char *body = NULL;
    ssize_t n = coil_http_body_read_all(req, &body, 1u << 20);
    if (n < 0)
        return (int)n;
    unsigned sum = 0;
    for (ssize_t i = 0; i < n; i++)
        sum = sum * 31 + (unsigned char)body[i];
    free(body);
    char text[64];
    snprintf(text, sizeof(text), "n=%zd sum=%u", n, sum);
    return respond_text(req, 200, text);
}

typedef struct client_run {
    void *(*fn)(void *);
    atomic_int done;
    atomic_int emfile_seen;      /* set by the loop side */
    atomic_llong conns_open;     /* published by the loop side */
    atomic_llong conns_accepted;
    char fail[256];
    int nclients;
    int served, cut, attempts, held;
    int *fds;
} client_run;

static void cfail(client_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cfail(client_run *r, const char *fmt, ...)
{
    if (r->fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fail, sizeof(r->fail), fmt, ap);
    va_end(ap);
}

static int tconnect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 10 }; /* a hang fails, it is not measured */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = harness_addr(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Reads one response with a Content-Length body. 1: read (body into out),
 * 0: closed (or reset) before a byte, -1: anything else. */
static int read_resp(int fd, char *out, size_t outcap)
{
    char buf[4096];
    size_t len = 0;
    for (;;) {
        char *e = memmem(buf, len, "\r\n\r\n", 4);
        if (e) {
            const char *cl = strstr(buf, "Content-Length: ");
            if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 || !cl)
                return -1;
            size_t want = (size_t)atol(cl + 16);
            size_t hl = (size_t)(e - buf) + 4;
            while (len < hl + want) {
                ssize_t k = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
                if (k <= 0)
                    return -1;
                len += (size_t)k;
            }
            if (len != hl + want || want >= outcap)
                return -1;
            memcpy(out, buf + hl, want);
            out[want] = '\0';
            return 1;
        }
        if (len == sizeof(buf) - 1)
            return -1;
        ssize_t k = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return len ? -1 : 0;
        if (k < 0)
            return -1;
        len += (size_t)k;
        buf[len] = '\0';
    }
}

static void *client_trampoline(void *arg)
{
    client_run *r = arg;
    r->fn(r);
    atomic_store(&r->done, 1);
    return NULL;
}

/* Runs the loop (server) until the client thread is done. */
static void run_with_client_thread(client_run *r)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_trampoline, r), 0);
    int64_t until = coil_now(&loop) + 60000 * MS;
    while (!atomic_load(&r->done)) {
        assert_true(coil_loop_run_once(&loop, 5 * MS) >= 0);
        coil_http_server_stats ss;
        coil_http_server_stats_get(srv, &ss);
        atomic_store(&r->conns_open, (long long)ss.connections_open);
        atomic_store(&r->conns_accepted, (long long)ss.connections_accepted);
        if (counts().accept_errors)
            atomic_store(&r->emfile_seen, 1);
        if (coil_now(&loop) > until) {
            cfail(r, "the client thread did not finish within 60 s");
            break;
        }
    }
    pthread_join(th, NULL);
    coil_http_server_stop(srv);
    srv = NULL;
    run_until_idle();
    if (r->fail[0])
        fail_msg("%s", r->fail);
}

#define REQ "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"

/* (3) A reset while reading a request: that connection is closed, with
 * nothing sent on it, and the next one is served. */
static void *reset_clients(void *arg)
{
    client_run *r = arg;
    while (r->served < 20 && r->attempts < 200) {
        r->attempts++;
        int fd = tconnect();
        if (fd < 0) {
            cfail(r, "connect failed");
            return NULL;
        }
        char body[64];
        int got = send_all(fd, REQ, strlen(REQ)) ? read_resp(fd, body, sizeof(body)) : 0;
        /* A keep-alive connection: the second request may be the one cut. */
        if (got == 1)
            got = send_all(fd, REQ, strlen(REQ)) ? read_resp(fd, body, sizeof(body)) : 0;
        close(fd);
        if (got < 0) {
            cfail(r, "attempt %d: a partial or wrong answer", r->attempts);
            return NULL;
        }
        if (got == 1 && strcmp(body, "n=0 sum=0") != 0) {
            cfail(r, "attempt %d: body '%s'", r->attempts, body);
            return NULL;
        }
        if (got == 1)
            r->served++;
        else
            r->cut++;
    }
    return NULL;
}

static void test_recv_reset_http(void **state)
{
    (void)state;
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&svc, handler, NULL));
    server_start(&cfg);
    assert_int_equal(coil__faults_set(&loop, "recv_reset=5"), 0);
    client_run r = { .fn = reset_clients };
    run_with_client_thread(&r);
    coil__fault_counts c = counts();
    print_message("recv_reset=5: %d served, %d cut, %llu resets injected in %llu receives\n", r.served,
                  r.cut, (unsigned long long)c.injected[COIL__FAULT_RECV_RESET],
                  (unsigned long long)c.recvs);
    assert_int_equal(r.served, 20);
    assert_true(r.cut >= 1);
    /* Every cut connection is one an injected reset explains. */
    assert_true((uint64_t)r.cut <= c.injected[COIL__FAULT_RECV_RESET]);
}

/* (4) Injected EMFILE on accept: every client is served, and the acceptor
 * pauses after each error instead of calling accept again at once. */
static void *emfile_clients(void *arg)
{
    client_run *r = arg;
    int fds[20];
    for (int i = 0; i < 20; i++)
        if ((fds[i] = tconnect()) < 0) {
            cfail(r, "connect %d failed", i);
            for (int j = 0; j < i; j++)
                close(fds[j]);
            return NULL;
        }
    for (int i = 0; i < 20; i++) {
        char body[64];
        if (!send_all(fds[i], REQ, strlen(REQ)) || read_resp(fds[i], body, sizeof(body)) != 1)
            cfail(r, "client %d not served", i);
        else
            r->served++;
    }
    for (int i = 0; i < 20; i++)
        close(fds[i]);
    return NULL;
}

static void test_accept_emfile(void **state)
{
    (void)state;
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&svc, handler, NULL));
    server_start(&cfg);
    assert_int_equal(coil__faults_set(&loop, "accept_emfile=2"), 0);
    client_run r = { .fn = emfile_clients };
    run_with_client_thread(&r);
    coil__fault_counts c = counts();
    print_message("accept_emfile=2: %d served, %llu accept calls, %llu EMFILE injected\n", r.served,
                  (unsigned long long)c.accepts, (unsigned long long)c.injected[COIL__FAULT_ACCEPT_EMFILE]);
    assert_int_equal(r.served, 20);
    assert_true(c.injected[COIL__FAULT_ACCEPT_EMFILE] >= 10);
    assert_true(c.accepts < 20 + 20 * 3);
}

/* (5) A real EMFILE: with the descriptor limit just above what is open, the
 * server holds what fits, keeps answering those, and serves the waiting
 * clients once descriptors come free. */
static void *limit_clients(void *arg)
{
    client_run *r = arg;
    struct sockaddr_in a = harness_addr(port);
    for (int i = 0; i < r->nclients; i++)
        if (connect(r->fds[i], (struct sockaddr *)&a, sizeof(a)) < 0 ||
            !send_all(r->fds[i], REQ, strlen(REQ))) {
            cfail(r, "client %d: connect or send failed", i);
            return NULL;
        }
    /* Wait for the server to run out of descriptors (it holds all it can). */
    for (int i = 0; !atomic_load(&r->emfile_seen); i++) {
        if (i > 10000) {
            cfail(r, "the server never hit EMFILE (accepted %lld, open %lld)",
                  (long long)atomic_load(&r->conns_accepted), (long long)atomic_load(&r->conns_open));
            return NULL;
        }
        usleep(1000);
    }
    int held = (int)atomic_load(&r->conns_open);
    r->held = held;
    if (held < 1 || held >= r->nclients) {
        cfail(r, "server holds %d of %d", held, r->nclients);
        return NULL;
    }
    /* The held ones are answered: the first held, in connect order. */
    char body[64];
    bool *answered = calloc((size_t)r->nclients, sizeof(bool));
    int n_answered = 0;
    while (n_answered < held) {
        struct pollfd pf[64];
        for (int i = 0; i < r->nclients; i++)
            pf[i] = (struct pollfd){ .fd = answered[i] ? -1 : r->fds[i], .events = POLLIN };
        if (poll(pf, (nfds_t)r->nclients, 10000) <= 0) {
            cfail(r, "held clients not answered");
            goto out;
        }
        for (int i = 0; i < r->nclients; i++)
            if (pf[i].revents) {
                if (read_resp(r->fds[i], body, sizeof(body)) != 1) {
                    cfail(r, "client %d: bad answer", i);
                    goto out;
                }
                answered[i] = true;
                n_answered++;
            }
    }
    if (n_answered != held) {
        cfail(r, "%d answered, %d held", n_answered, held);
        goto out;
    }
    /* Still at the limit: the held connections keep being served. */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < r->nclients; i++)
            if (answered[i] && (!send_all(r->fds[i], REQ, strlen(REQ)) ||
                                read_resp(r->fds[i], body, sizeof(body)) != 1)) {
                cfail(r, "held client %d: not answered again", i);
                goto out;
            }
    if (atomic_load(&r->conns_accepted) != held) {
        cfail(r, "accepted %lld while at the limit with %d held",
              (long long)atomic_load(&r->conns_accepted), held);
        goto out;
    }
    for (int i = 0; i < r->nclients; i++)
        if (answered[i]) {
            close(r->fds[i]);
            r->fds[i] = -1;
        }
    /* Descriptors come free: the waiting ones are served (several rounds of
     * the limit if there are more of them than fit). */
    for (int i = 0; i < r->nclients; i++) {
        if (r->fds[i] < 0)
            continue;
        if (read_resp(r->fds[i], body, sizeof(body)) != 1) {
            cfail(r, "waiting client %d not served", i);
            goto out;
        }
        close(r->fds[i]);
        r->fds[i] = -1;
        r->served++;
    }
out:
    free(answered);
    return NULL;
}

static void test_real_emfile(void **state)
{
    (void)state;
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&svc, handler, NULL));
    assert_int_equal(coil__faults_set(&loop, ""), 0); /* counts accepts, injects nothing */
    client_run r = { .fn = limit_clients };
    /* The client sockets exist before the limit: only the server's accepted
     * ones count against it. A new descriptor takes the lowest free number,
     * and fails once that number reaches the limit: so the limit goes just
     * past the fourth free number, the listener takes one, and the server
     * can hold three connections. The server starts after the limit is set:
     * io_uring reads the limit when an accept is prepared, and a multishot
     * accept armed before would go on with the old one. */
    enum { MAXC = 7, FIT = 3 };
    int fds[MAXC];
    r.nclients = MAXC;
    for (int i = 0; i < MAXC; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fds[i] >= 0);
        struct timeval tv = { .tv_sec = 10 }; /* a hang fails, it is not measured */
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    int limit = 0;
    for (int free_seen = 0; free_seen < FIT + 1; limit++)
        if (fcntl(limit, F_GETFD) < 0)
            free_seen++;
    r.fds = fds;
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)limit;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    server_start(&cfg);
    pthread_t th;
    int perr = pthread_create(&th, NULL, client_trampoline, &r);
    int64_t until = coil_now(&loop) + 60000 * MS;
    while (!perr && !atomic_load(&r.done)) {
        if (coil_loop_run_once(&loop, 5 * MS) < 0 || coil_now(&loop) > until) {
            cfail(&r, "loop failed or the clients did not finish within 60 s");
            break;
        }
        coil_http_server_stats ss;
        coil_http_server_stats_get(srv, &ss);
        atomic_store(&r.conns_open, (long long)ss.connections_open);
        atomic_store(&r.conns_accepted, (long long)ss.connections_accepted);
        if (counts().accept_errors)
            atomic_store(&r.emfile_seen, 1);
    }
    if (!perr)
        pthread_join(th, NULL);
    setrlimit(RLIMIT_NOFILE, &old);
    for (int i = 0; i < MAXC; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    coil__fault_counts c = counts();
    coil_http_server_stop(srv);
    srv = NULL;
    run_until_idle();
    assert_int_equal(perr, 0);
    if (r.fail[0])
        fail_msg("%s", r.fail);
    print_message("RLIMIT_NOFILE %llu: held %d of %d, %d served after, %llu accept calls, %llu failed\n",
                  (unsigned long long)low.rlim_cur, r.held, r.nclients, r.served,
                  (unsigned long long)c.accepts, (unsigned long long)c.accept_errors);
    assert_int_equal(r.held, FIT);
    assert_int_equal(r.held + r.served, r.nclients);
    assert_true(c.accept_errors >= 1);
}

/* (6) The server with every send and every receive short, on both ends:
 * pipelined requests with bodies, both framings. */
static int short_http_main(void *arg)
{
    (void)arg;
    cli c = { 0 };
    resp r;
    size_t big = 100000;
    char *req = malloc(big + 1024);
    CHECK(req);
    CHECK_EQ(cli_open(&c), 0);
    for (int round = 0; round < 3; round++) {
        size_t n = 0;
        n += (size_t)sprintf(req + n, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", big);
        unsigned sum_big = 0;
        for (size_t i = 0; i < big; i++) {
            req[n + i] = (char)('a' + (i * 7 + (size_t)round) % 26);
            sum_big = sum_big * 31 + (unsigned char)req[n + i];
        }
        n += big;
        n += (size_t)sprintf(req + n, "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        n += (size_t)sprintf(req + n, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
        CHECK_EQ(cli_send(&c, req, n, false), 0);
        char want[64];
        snprintf(want, sizeof(want), "n=%zu sum=%u", big, sum_big);
        CHECK_EQ(read_response(&c, &r, false, dl(10000)), 0);
        CHECK_EQ(r.status, 200);
        CHECK(body_is(&r, want));
        unsigned s = 0;
        for (const char *p = "hello world"; *p; p++)
            s = s * 31 + (unsigned char)*p;
        snprintf(want, sizeof(want), "n=11 sum=%u", s);
        CHECK_EQ(read_response(&c, &r, false, dl(10000)), 0);
        CHECK(body_is(&r, want));
        CHECK_EQ(read_response(&c, &r, false, dl(10000)), 0);
        CHECK(body_is(&r, "n=0 sum=0"));
        CHECK(!r.close);
    }
out:
    free(req);
    cli_close(&c);
    return fail_line ? -1 : 0;
}

static void test_short_http(void **state)
{
    (void)state;
    const char *specs[] = { "send_short=1,recv_short=1", "send_short=2,recv_short=3,recv_nobufs=4" };
    for (int i = 0; i < 2; i++) {
        coil_http_server_config cfg = base_cfg(coil_http_fn_init(&svc, handler, NULL));
        server_start(&cfg);
        assert_int_equal(coil__faults_set(&loop, specs[i]), 0);
        run_main(short_http_main, NULL);
        coil__fault_counts c = counts();
        print_message("%s: %llu short sends of %llu, %llu short receives of %llu, %llu nobufs\n", specs[i],
                      (unsigned long long)c.injected[COIL__FAULT_SEND_SHORT], (unsigned long long)c.sends,
                      (unsigned long long)c.injected[COIL__FAULT_RECV_SHORT], (unsigned long long)c.recvs,
                      (unsigned long long)c.injected[COIL__FAULT_RECV_NOBUFS]);
        assert_true(c.injected[COIL__FAULT_SEND_SHORT] > 0);
        assert_true(c.injected[COIL__FAULT_RECV_SHORT] > 0);
    }
}

static int plain_setup(void **state)
{
    (void)state;
    unsetenv("COIL_FAULTS");
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_parse, plain_setup),
        cmocka_unit_test_setup(test_env, plain_setup),
        cmocka_unit_test_setup(test_send_short, plain_setup),
        cmocka_unit_test_setup(test_recv_short, plain_setup),
        cmocka_unit_test_setup_teardown(test_recv_reset_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_emfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_emfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_http, setup, teardown),
    };
    return HARNESS_RUN(tests);
}
