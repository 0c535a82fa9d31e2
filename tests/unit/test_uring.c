/* The io_uring backend's own hazards, whatever COIL_BACKEND says: a buffer
 * ring that runs dry (and the window it widens), a completion queue that
 * overflows, the single-shot fallback, completions of cancelled operations,
 * parked connections that hold neither a buffer nor a stack, and the
 * receive's byte cap (kept to by a fast stream, dropped when a kernel
 * refuses it). Skips (77) where io_uring is not allowed. */
#include "net_fixture.h"
#include "uring_impl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

static int setup_default(void **state)
{
    (void)state;
    net_open("io_uring", NULL);
    return 0;
}

/* Four 1 KiB buffers: a ring that thirty-two busy connections empty at once. */
static int setup_tiny_ring(void **state)
{
    (void)state;
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.buf_count = 4;
    o.buf_size = 1024;
    net_open("io_uring", &o);
    return 0;
}

/* A submission queue of 4, hence a completion queue of 16. */
static int setup_tiny_cq(void **state)
{
    (void)state;
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.ring_entries = 4;
    net_open("io_uring", &o);
    return 0;
}

static int setup_single_shot(void **state)
{
    (void)state;
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.flags = COIL_LOOP_NO_MULTISHOT;
    net_open("io_uring", &o);
    return 0;
}

/* The runtime uses multishot receives and buffer rings from 6.0 on. */
static bool kernel_has_multishot(void)
{
    struct utsname u;
    int ma = 0, mi = 0;
    if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return false;
    return ma > 6 || (ma == 6 && mi >= 0);
}

/* ---- a. the buffer ring runs dry ---- */

#define EX_CONNS 32
#define EX_LEN (256 * 1024)

typedef struct ex_conn {
    coil_sock c, s;
    unsigned seed;
    size_t got;
    size_t bad;            /* first wrong offset + 1 */
    ssize_t last;
    int send_res;
} ex_conn;

static ex_conn *exc;

/* Sends the first len bytes of stream seed on c, chunk_len at a time through
 * the caller's chunk, then shuts the sending side. Returns 0, or the failed
 * send's error (-EPIPE for a short one) with the stream left open. */
static int send_pattern(coil_sock *c, size_t len, unsigned seed, unsigned char *chunk,
                        size_t chunk_len)
{
    for (size_t off = 0; off < len; off += chunk_len) {
        for (size_t k = 0; k < chunk_len; k++)
            chunk[k] = pattern(off + k, seed);
        ssize_t n = coil_send(c, chunk, chunk_len, coil_deadline_in(&loop, 20000 * MS));
        if (n != (ssize_t)chunk_len)
            return n < 0 ? (int)n : -EPIPE;
    }
    return coil_shutdown(c, SHUT_WR);
}

static int ex_sender(void *arg)
{
    ex_conn *x = arg;
    unsigned char chunk[4096];
    x->send_res = send_pattern(&x->c, EX_LEN, x->seed, chunk, sizeof(chunk));
    return 0;
}

/* Sets *bad to the first offset + 1 where b, received at offset got of a
 * stream, differs from pattern(seed); leaves it once set. */
static void check_pattern(const coil_buf *b, size_t got, unsigned seed, size_t *bad)
{
    for (size_t k = 0; k < b->len && !*bad; k++)
        if ((unsigned char)b->data[k] != pattern(got + k, seed))
            *bad = got + k + 1;
}

static int ex_reader(void *arg)
{
    ex_conn *x = arg;
    for (;;) {
        coil_buf b;
        ssize_t n = coil_recv_buf(&x->s, &b, coil_deadline_in(&loop, 20000 * MS));
        x->last = n;
        if (n <= 0)
            break;
        check_pattern(&b, x->got, x->seed, &x->bad);
        x->got += (size_t)n;
        /* Hold the borrowed buffer across a turn or two, as a task that
         * forwards it would: the ring empties while others still receive. */
        coil_yield();
        if (x->got / 1024 % 2)
            coil_yield();
        coil_buf_release(&b);
    }
    return 0;
}

static int ex_main(void *arg)
{
    (void)arg;
    int opened = 0, err = 0;
    for (; opened < EX_CONNS; opened++)
        if ((err = pair(&exc[opened].c, &exc[opened].s)) < 0)
            break;
    if (opened == EX_CONNS) {
        coil_task *r[EX_CONNS], *w[EX_CONNS];
        for (int i = 0; i < EX_CONNS; i++)
            coil_spawn(&loop, ex_reader, &exc[i], &r[i]);
        for (int i = 0; i < EX_CONNS; i++)
            coil_spawn(&loop, ex_sender, &exc[i], &w[i]);
        for (int i = 0; i < EX_CONNS; i++) {
            coil_join(w[i], NULL);
            coil_join(r[i], NULL);
        }
    }
    for (int i = 0; i < opened; i++) {
        coil_close(&exc[i].c);
        coil_close(&exc[i].s);
    }
    return err;
}

static void test_buffer_ring_exhaustion(void **state)
{
    (void)state;
    if (!kernel_has_multishot())
        skip();
    exc = calloc(EX_CONNS, sizeof(*exc));
    for (int i = 0; i < EX_CONNS; i++)
        exc[i].seed = (unsigned)i + 1;
    int fds = harness_fd_count();
    assert_int_equal(harness_run(&loop, ex_main, NULL), 0);
    assert_int_equal(harness_fd_count(), fds);
    coil_loop_stats st = loop_stats();
    for (int i = 0; i < EX_CONNS; i++) {
        if (exc[i].send_res != 0 || exc[i].last != 0 || exc[i].got != EX_LEN || exc[i].bad)
            fail_msg("connection %d: send %d, last receive %zd, %zu of %d bytes, first bad "
                     "offset %zd",
                     i, exc[i].send_res, exc[i].last, exc[i].got, EX_LEN, (ssize_t)exc[i].bad - 1);
    }
    assert_true(st.bufs_exhausted > 0);
    assert_int_equal(st.bufs_in_use, 0);
    printf("# ring of 4 x 1 KiB, %d connections x %d bytes: ran dry %llu times, %llu heap "
           "buffers\n",
           EX_CONNS, EX_LEN, (unsigned long long)st.bufs_exhausted,
           (unsigned long long)st.bufs_overflow);
    free(exc);
}

/* ---- b. more completions at once than the completion queue holds ---- */

#define OV_CONNS 200
#define OV_LEN 3000

typedef struct ov_conn {
    coil_sock s;
    int who;               /* client index, sent in the first four bytes */
    size_t got;
    bool bad;
    ssize_t last;
} ov_conn;

static ov_conn *ovc;
static int ov_clients[OV_CONNS];
static int ov_accepted;

static unsigned char ov_byte(int who, size_t i)
{
    if (i < sizeof(int32_t))
        return (unsigned char)((uint32_t)who >> (8 * i));
    return pattern(i, (unsigned)who + 100);
}

static void ov_take(ov_conn *x, const unsigned char *p, size_t n)
{
    for (size_t k = 0; k < n; k++, x->got++) {
        if (x->got < sizeof(int32_t))
            x->who |= (int)p[k] << (8 * x->got);
        else if (x->who < 0 || x->who >= OV_CONNS || p[k] != ov_byte(x->who, x->got))
            x->bad = true;
    }
}

/* Even ones read borrowed buffers (multishot), odd ones into their stack
 * (single-shot): both kinds of completion pile up. */
static int ov_reader(void *arg)
{
    ov_conn *x = arg;
    bool with_buf = (x - ovc) % 2 == 0;
    for (;;) {
        ssize_t n;
        if (with_buf) {
            coil_buf b;
            n = coil_recv_buf(&x->s, &b, coil_deadline_in(&loop, 10000 * MS));
            if (n > 0)
                ov_take(x, (unsigned char *)b.data, (size_t)n);
            coil_buf_release(&b);
        } else {
            unsigned char buf[1024];
            n = coil_recv(&x->s, buf, sizeof(buf), coil_deadline_in(&loop, 10000 * MS));
            if (n > 0)
                ov_take(x, buf, (size_t)n);
        }
        x->last = n;
        if (n <= 0)
            break;
    }
    coil_close(&x->s);
    return 0;
}

static int ov_main(void *arg)
{
    (void)arg;
    int err = 0;
    for (ov_accepted = 0; ov_accepted < OV_CONNS; ov_accepted++) {
        ovc[ov_accepted].who = 0;
        if ((err = coil_accept(&lsn, &ovc[ov_accepted].s, NULL, coil_deadline_in(&loop, 5000 * MS))) < 0)
            break;
    }
    /* All readers start in one batch, so every receive completes in one
     * submission: far more completions than the queue has room for. */
    coil_task *t[OV_CONNS];
    for (int i = 0; i < ov_accepted; i++)
        coil_spawn(&loop, ov_reader, &ovc[i], &t[i]);
    for (int i = 0; i < ov_accepted; i++)
        coil_join(t[i], NULL);
    return err;
}

static void test_cq_overflow(void **state)
{
    (void)state;
    if (!harness_raise_nofile(2 * OV_CONNS + 64))
        skip();
    ovc = calloc(OV_CONNS, sizeof(*ovc));
    /* Everything is sent, and the write side shut, before the loop runs. */
    unsigned char data[OV_LEN];
    for (int i = 0; i < OV_CONNS; i++) {
        ov_clients[i] = harness_client(port);
        for (size_t k = 0; k < OV_LEN; k++)
            data[k] = ov_byte(i, k);
        assert_int_equal(send(ov_clients[i], data, OV_LEN, 0), OV_LEN);
        assert_int_equal(shutdown(ov_clients[i], SHUT_WR), 0);
    }
    int fds = harness_fd_count();
    int err = harness_run(&loop, ov_main, NULL);
    coil_loop_stats st = loop_stats();
    for (int i = 0; i < OV_CONNS; i++)
        close(ov_clients[i]);
    assert_int_equal(err, 0);
    assert_int_equal(ov_accepted, OV_CONNS);
    assert_int_equal(harness_fd_count(), fds - OV_CONNS);
    bool seen[OV_CONNS] = { false };
    for (int i = 0; i < OV_CONNS; i++) {
        ov_conn *x = &ovc[i];
        if (x->last != 0 || x->got != OV_LEN || x->bad || x->who < 0 || x->who >= OV_CONNS ||
            seen[x->who])
            fail_msg("connection %d (client %d): last receive %zd, %zu of %d bytes, %s", i, x->who,
                     x->last, x->got, OV_LEN, x->bad ? "wrong bytes" : "bytes right");
        seen[x->who] = true;
    }
    assert_int_equal(st.bufs_in_use, 0);
    printf("# %d connections through a 16-entry completion queue: cq_overflows = %llu\n", OV_CONNS,
           (unsigned long long)st.cq_overflows);
    free(ovc);
}

/* ---- c. the single-shot path ---- */

typedef struct ss_box {
    coil_sock c, s;
    int echoed;            /* server: bytes sent back */
    int server_res;
    int park_runs;
} ss_box;

static int ss_server(void *arg)
{
    ss_box *bx = arg;
    for (;;) {
        coil_buf b;
        ssize_t n = coil_recv_buf(&bx->s, &b, coil_deadline_in(&loop, 5000 * MS));
        if (n <= 0) {
            bx->server_res = (int)n;
            return 0;
        }
        ssize_t w = coil_send_buf(&bx->s, &b, coil_deadline_in(&loop, 5000 * MS));
        if (w != n) {
            bx->server_res = w < 0 ? (int)w : -EPIPE;
            return 0;
        }
        bx->echoed += (int)n;
    }
}

static int ss_park_handler(void *arg)
{
    ss_box *bx = arg;
    bx->park_runs++;
    coil_buf b;
    ssize_t n = coil_recv_buf(&bx->s, &b, coil_deadline_in(&loop, 5000 * MS));
    if (n > 0)
        coil_send_buf(&bx->s, &b, coil_deadline_in(&loop, 5000 * MS));
    coil_buf_release(&b);
    return 0;
}

static int ss_main(void *arg)
{
    (void)arg;
    enum { ROUNDS = 8, MAXLEN = 40000 };
    int failures = 0;
    static unsigned char out[MAXLEN], in[MAXLEN];
    for (int conn = 0; conn < 4; conn++) {
        ss_box bx = { 0 };
        int err = pair(&bx.c, &bx.s);
        if (err < 0)
            return err;
        coil_task *srv;
        coil_spawn(&loop, ss_server, &bx, &srv);
        int sent = 0;
        for (int r = 0; r < ROUNDS; r++) {
            /* sizes from one byte to more than two receive buffers */
            size_t len = 1 + (size_t)(r * 5717 + conn * 311) % MAXLEN;
            for (size_t k = 0; k < len; k++)
                out[k] = pattern(k, (unsigned)(conn * ROUNDS + r));
            if (coil_send(&bx.c, out, len, coil_deadline_in(&loop, 5000 * MS)) != (ssize_t)len ||
                recv_all(&bx.c, in, len) != (ssize_t)len || memcmp(in, out, len) != 0) {
                failures++;
                break;
            }
            sent += (int)len;
        }
        coil_shutdown(&bx.c, SHUT_WR);
        coil_join(srv, NULL);
        if (bx.server_res != 0 || bx.echoed != sent)
            failures++;
        coil_close(&bx.c);
        coil_close(&bx.s);
    }
    /* Parking without multishot: a readiness poll, then the handler's own
     * receive. */
    ss_box bx = { 0 };
    int err = pair(&bx.c, &bx.s);
    if (err < 0)
        return err;
    if (coil_park(&bx.s, ss_park_handler, &bx, COIL_NO_DEADLINE) < 0) {
        failures++;
    } else {
        for (int i = 0; i < 10; i++)
            coil_yield();
        if (bx.park_runs != 0)
            failures++; /* woken with nothing to read */
        if (coil_send(&bx.c, "ping", 4, COIL_NO_DEADLINE) != 4 ||
            recv_all(&bx.c, in, 4) != 4 || memcmp(in, "ping", 4) != 0 || bx.park_runs != 1)
            failures++;
    }
    coil_close(&bx.c);
    coil_close(&bx.s);
    return failures;
}

static void test_single_shot_echo(void **state)
{
    (void)state;
    int fds = harness_fd_count();
    assert_int_equal(harness_run(&loop, ss_main, NULL), 0);
    assert_int_equal(harness_fd_count(), fds);
    coil_loop_stats st = loop_stats();
    assert_int_equal(st.bufs_in_use, 0);
    assert_int_equal(st.bufs_exhausted, 0);
    assert_int_equal(st.stale_completions, 0);
}

/* ---- d. cancelled receives leave no stale completion behind ---- */

#define ST_CONNS 50
#define ST_ROUNDS 100

typedef struct st_conn {
    coil_sock c, s;
    int timeouts;          /* receives that returned -ETIMEDOUT with the deadline passed */
    int wrong;             /* anything else */
    ssize_t first_wrong;
    ssize_t final;         /* the receive after data was sent */
    char final_byte;
} st_conn;

static st_conn *stc;

static int st_waiter(void *arg)
{
    st_conn *x = arg;
    bool with_buf = (x - stc) % 5 == 4; /* a few multishot ones for contrast */
    char buf[16];
    for (int r = 0; r < ST_ROUNDS + 20; r++) {
        /* 1 ms deadlines, then some that are due before the receive starts */
        int64_t deadline = coil_deadline_in(&loop, r < ST_ROUNDS ? 1 * MS : 0);
        ssize_t n;
        if (with_buf) {
            coil_buf b;
            n = coil_recv_buf(&x->s, &b, deadline);
            coil_buf_release(&b);
        } else {
            n = coil_recv(&x->s, buf, sizeof(buf), deadline);
        }
        if (n == -ETIMEDOUT && coil_now(&loop) >= deadline) {
            x->timeouts++;
        } else {
            if (!x->wrong)
                x->first_wrong = n;
            x->wrong++;
        }
    }
    /* Wait for the main task's byte: the connection still works. */
    x->final = coil_recv(&x->s, buf, sizeof(buf), coil_deadline_in(&loop, 5000 * MS));
    x->final_byte = buf[0];
    return 0;
}

static int st_main(void *arg)
{
    (void)arg;
    int opened = 0, err = 0;
    for (; opened < ST_CONNS; opened++)
        if ((err = pair(&stc[opened].c, &stc[opened].s)) < 0)
            break;
    if (opened == ST_CONNS) {
        coil_task *t[ST_CONNS];
        for (int i = 0; i < ST_CONNS; i++)
            coil_spawn(&loop, st_waiter, &stc[i], &t[i]);
        /* Send only once every waiter is past its timed receives. */
        for (;;) {
            int busy = 0;
            for (int i = 0; i < ST_CONNS; i++)
                busy += stc[i].timeouts + stc[i].wrong < ST_ROUNDS + 20;
            if (!busy)
                break;
            coil_sleep(1 * MS);
        }
        coil_sleep(5 * MS);
        for (int i = 0; i < ST_CONNS; i++)
            coil_send(&stc[i].c, "z", 1, COIL_NO_DEADLINE);
        for (int i = 0; i < ST_CONNS; i++)
            coil_join(t[i], NULL);
    }
    for (int i = 0; i < opened; i++) {
        coil_close(&stc[i].c);
        coil_close(&stc[i].s);
    }
    return err;
}

static void test_cancels_leave_no_stale_completions(void **state)
{
    (void)state;
    stc = calloc(ST_CONNS, sizeof(*stc));
    assert_int_equal(harness_run(&loop, st_main, NULL), 0);
    for (int i = 0; i < ST_CONNS; i++) {
        st_conn *x = &stc[i];
        if (x->wrong || x->timeouts != ST_ROUNDS + 20 || x->final != 1 || x->final_byte != 'z')
            fail_msg("connection %d: %d timeouts, %d other results (first %zd), final receive "
                     "%zd",
                     i, x->timeouts, x->wrong, x->first_wrong, x->final);
    }
    coil_loop_stats st = loop_stats();
    assert_int_equal(st.stale_completions, 0);
    assert_int_equal(st.bufs_in_use, 0);
    free(stc);
}

/* ---- e. parked connections hold no buffer and no stack ---- */

#define PK_CONNS 1000

typedef struct pk_conn {
    coil_sock s;
    int client;            /* index of the peer in pk_clients */
    int runs;
    ssize_t got;
    unsigned char byte;
} pk_conn;

static pk_conn *pkc;
static int pk_clients[PK_CONNS];
static int16_t pk_by_port[65536];

static unsigned char pk_byte(int client)
{
    return (unsigned char)(client * 7 + 1);
}

static int pk_handler(void *arg)
{
    pk_conn *x = arg;
    x->runs++;
    unsigned char c = 0;
    x->got = coil_recv(&x->s, &c, 1, coil_deadline_in(&loop, 5000 * MS));
    x->byte = c;
    coil_close(&x->s);
    return 0;
}

static int pk_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < PK_CONNS; i++) {
        struct sockaddr_storage peer;
        int err = coil_accept(&lsn, &pkc[i].s, &peer, coil_deadline_in(&loop, 5000 * MS));
        if (err < 0) {
            for (int k = 0; k < i; k++)
                coil_close(&pkc[k].s);
            return err;
        }
        pkc[i].client = pk_by_port[ntohs(((struct sockaddr_in *)&peer)->sin_port)];
        err = coil_park(&pkc[i].s, pk_handler, &pkc[i], COIL_NO_DEADLINE);
        if (err < 0) {
            for (int k = 0; k <= i; k++)
                coil_close(&pkc[k].s);
            return err;
        }
    }
    return 0;
}

static void test_park_thousand(void **state)
{
    (void)state;
    if (!harness_raise_nofile(2 * PK_CONNS + 64))
        skip();
    pkc = calloc(PK_CONNS, sizeof(*pkc));
    memset(pk_by_port, 0xff, sizeof(pk_by_port));
    for (int i = 0; i < PK_CONNS; i++) {
        pk_clients[i] = harness_client(port);
        struct sockaddr_in a;
        socklen_t al = sizeof(a);
        assert_int_equal(getsockname(pk_clients[i], (struct sockaddr *)&a, &al), 0);
        pk_by_port[ntohs(a.sin_port)] = (int16_t)i;
    }
    assert_int_equal(harness_run(&loop, pk_main, NULL), 0);
    /* The accepting task is gone; only the parked sockets remain. A few
     * turns more, some sleeping: nothing wakes them. */
    for (int turn = 0; turn < 6; turn++)
        assert_true(coil_loop_run_once(&loop, turn % 2 ? 2 * MS : 0) >= 0);
    coil_loop_stats st = loop_stats();
    assert_int_equal(st.socks_parked, PK_CONNS);
    assert_int_equal(st.stacks_in_use, 0);
    assert_int_equal(st.bufs_in_use, 0);
    assert_int_equal(st.tasks_live, 0);
    for (int i = 0; i < PK_CONNS; i++) {
        assert_int_equal(pkc[i].runs, 0);
        assert_true(pkc[i].client >= 0);
        unsigned char b = pk_byte(pkc[i].client);
        assert_int_equal(send(pk_clients[pkc[i].client], &b, 1, 0), 1);
    }
    int64_t until = coil_now(&loop) + 10000 * MS;
    while (loop_stats().socks_parked || loop_stats().tasks_live) {
        assert_true(coil_loop_run_once(&loop, 10 * MS) >= 0);
        if (coil_now(&loop) > until)
            fail_msg("%llu sockets still parked, %llu tasks live after 10 s",
                     (unsigned long long)loop_stats().socks_parked,
                     (unsigned long long)loop_stats().tasks_live);
    }
    for (int i = 0; i < PK_CONNS; i++) {
        pk_conn *x = &pkc[i];
        if (x->runs != 1 || x->got != 1 || x->byte != pk_byte(x->client))
            fail_msg("connection %d: handler ran %d times, receive %zd, byte %u (want %u)", i,
                     x->runs, x->got, x->byte, pk_byte(x->client));
    }
    /* Each handler closed its socket: every client sees the end. */
    for (int i = 0; i < PK_CONNS; i++) {
        char c;
        assert_int_equal(recv(pk_clients[i], &c, 1, 0), 0);
        close(pk_clients[i]);
    }
    st = loop_stats();
    assert_int_equal(st.bufs_in_use, 0);
    assert_int_equal(st.stacks_in_use, 0);
    printf("# %d parked connections woken once each; ring ran dry %llu times\n", PK_CONNS,
           (unsigned long long)st.bufs_exhausted);
    free(pkc);
}

/* ---- a parked socket's record, and the buffers a quiet loop touches ---- */

static int never_runs(void *arg)
{
    (void)arg;
    return 0;
}

static int small_record_main(void *arg)
{
    int *ok = arg;
    coil_sock c, s;
    if (pair(&c, &s) < 0)
        return -1;
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    coil_buf b;
    int64_t dl = coil_deadline_in(&loop, 5000 * MS);
    /* The first receive arms the multishot; three more writes queue three
     * completions while nobody reads: more than the record holds inline. */
    if (coil_send(&c, "a", 1, dl) != 1 || coil_recv_buf(&s, &b, dl) != 1)
        goto out;
    coil_buf_release(&b);
    for (int i = 0; i < 3; i++) {
        if (coil_send(&c, "b", 1, dl) != 1)
            goto out;
        coil_sleep(5 * MS);
    }
    while (s.rx->count < 3 && coil_now(&loop) < dl)
        coil_sleep(MS);
    ok[0] = s.rx->count == 3 && s.rx->size > 1;
    while (coil_sock_rx_pending(&s)) {
        if (coil_recv_buf(&s, &b, dl) <= 0)
            goto out;
        coil_buf_release(&b);
    }
    /* Parked and idle: the multishot stays armed, the record is all. */
    if (coil_park(&s, never_runs, NULL, COIL_NO_DEADLINE) < 0)
        goto out;
    ok[1] = s.rx && s.rx->armed && s.rx->size == 1 && s.rx->count == 0;
    coil_unpark(&s);
out:
    coil_close(&c);
    coil_close(&s);
    return 0;
}

static void test_parked_record_is_small(void **state)
{
    (void)state;
    int ok[2] = { 0, 0 };
    assert_true(sizeof(struct coil__sock_rx) <= 56);
    assert_int_equal(harness_run(&loop, small_record_main, ok), 0);
    assert_int_equal(ok[0], 1); /* a burst moved the queue to the heap */
    assert_int_equal(ok[1], 1); /* parking gave it back */
    assert_int_equal(loop_stats().bufs_in_use, 0);
}

#define QUIET_ROUNDS 400

static int quiet_main(void *arg)
{
    unsigned *distinct = arg;
    coil_sock c, s;
    if (pair(&c, &s) < 0)
        return -1;
    static bool seen[1 << 15];
    memset(seen, 0, sizeof(seen));
    int64_t dl = coil_deadline_in(&loop, 10000 * MS);
    for (int i = 0; i < QUIET_ROUNDS; i++) {
        coil_buf b;
        if (coil_send(&c, "x", 1, dl) != 1 || coil_recv_buf(&s, &b, dl) != 1)
            break;
        if (!seen[b.id]) {
            seen[b.id] = true;
            (*distinct)++;
        }
        coil_buf_release(&b);
    }
    coil_close(&c);
    coil_close(&s);
    return 0;
}

/* The kernel hands out ring buffers oldest first: offered all at once, one
 * quiet connection would touch a page of every buffer in turn. */
static void test_quiet_loop_touches_few_buffers(void **state)
{
    (void)state;
    unsigned distinct = 0;
    assert_int_equal(harness_run(&loop, quiet_main, &distinct), 0);
    coil_loop_stats st = loop_stats();
    assert_true(distinct > 0);
    if (distinct > st.bufs_total / 2)
        fail_msg("%u of %llu buffers used for %d one-byte messages", distinct,
                 (unsigned long long)st.bufs_total, QUIET_ROUNDS);
    assert_int_equal(st.bufs_exhausted, 0);
    assert_int_equal(st.bufs_in_use, 0);
}

/* ---- a fast stream leaves the ring to the others ---- */

#define FS_LEN (4 * 1024 * 1024)
#define FS_CHUNK (64 * 1024)
#define FS_SEED 7

typedef struct fast_stream {
    coil_sock c, s;
    int send_res;
    size_t got, bad;       /* bad: first wrong offset + 1 */
    uint64_t most_in_use;  /* receive buffers borrowed at once, at most */
} fast_stream;

static int fs_sender(void *arg)
{
    fast_stream *f = arg;
    static unsigned char chunk[FS_CHUNK]; /* larger than a task's stack likes */
    f->send_res = send_pattern(&f->c, FS_LEN, FS_SEED, chunk, FS_CHUNK);
    return 0;
}

/* Reads slowly, so that the stream piles up in the socket between reads. */
static int fs_reader(void *arg)
{
    fast_stream *f = arg;
    for (;;) {
        coil_buf b;
        ssize_t n = coil_recv_buf(&f->s, &b, coil_deadline_in(&loop, 20000 * MS));
        coil_loop_stats st = loop_stats();
        if (st.bufs_in_use > f->most_in_use)
            f->most_in_use = st.bufs_in_use;
        if (n <= 0)
            return n < 0 ? (int)n : 0;
        check_pattern(&b, f->got, FS_SEED, &f->bad);
        f->got += (size_t)n;
        coil_buf_release(&b);
        for (int i = 0; i < 4; i++)
            coil_yield();
    }
}

static int fs_main(void *arg)
{
    fast_stream *f = arg;
    if (pair(&f->c, &f->s) < 0)
        return -1;
    coil_task *r, *w;
    coil_spawn(&loop, fs_reader, f, &r);
    coil_spawn(&loop, fs_sender, f, &w);
    int rres = 0;
    coil_join(w, NULL);
    coil_join(r, &rres);
    coil_close(&f->c);
    coil_close(&f->s);
    return rres;
}

/* A multishot receive that only a cancel stops keeps taking buffers for a
 * fast stream until its task next runs: one stream drained the shared ring
 * and moved every socket of the loop to single-shot receives. The kernel's
 * byte cap ends it after the socket's share. */
static void test_fast_stream_keeps_to_its_share(void **state)
{
    (void)state;
    if (!US(coil__L(&loop))->recv_cap)
        skip(); /* this kernel refused the cap: the cancel alone bounds it */
    fast_stream f = { 0 };
    assert_int_equal(harness_run(&loop, fs_main, &f), 0);
    assert_int_equal(f.send_res, 0);
    if (f.got != FS_LEN || f.bad)
        fail_msg("%zu of %d bytes, first bad offset %zd", f.got, FS_LEN, (ssize_t)f.bad - 1);
    coil_loop_stats st = loop_stats();
    coil_loop_options d;
    coil_loop_options_default(&d);
    if (st.bufs_exhausted || f.most_in_use > 2 * d.bufs_per_sock)
        fail_msg("ring ran dry %llu times, %llu buffers held at once (share %u)",
                 (unsigned long long)st.bufs_exhausted, (unsigned long long)f.most_in_use,
                 d.bufs_per_sock);
    assert_int_equal(st.bufs_in_use, 0);
    printf("# %d MiB to a slow reader: at most %llu buffers held at once, ring never dry\n",
           FS_LEN >> 20, (unsigned long long)f.most_in_use);
}

/* ---- one dry ring widens the window once ---- */

#define WD_CONNS 48

typedef struct widen {
    coil_sock c[WD_CONNS], s[WD_CONNS];
    int got;               /* readers that received their byte */
    bool release;          /* readers may give their buffers back */
} widen;

typedef struct widen_reader {
    widen *w;
    int i;
} widen_reader;

static int widen_read(void *arg)
{
    widen_reader *r = arg;
    coil_buf b;
    if (coil_recv_buf(&r->w->s[r->i], &b, coil_deadline_in(&loop, 5000 * MS)) == 1) {
        r->w->got++;
        while (!r->w->release) /* hold the buffer, as a task still forwarding it */
            coil_yield();
        coil_buf_release(&b);
    }
    return 0;
}

/* One task per byte: a send waits for its completion, and the bytes are
 * to arrive together. */
static int widen_send(void *arg)
{
    widen_reader *r = arg;
    return coil_send(&r->w->c[r->i], "x", 1, COIL_NO_DEADLINE) == 1 ? 0 : -EIO;
}

static int widen_main(void *arg)
{
    widen *w = arg;
    widen_reader rd[WD_CONNS];
    coil_task *t[WD_CONNS], *snd[WD_CONNS];
    int opened = 0, err = 0;
    for (; opened < WD_CONNS && !err; opened++)
        err = pair(&w->c[opened], &w->s[opened]);
    if (err)
        return err;
    for (int i = 0; i < WD_CONNS; i++) {
        rd[i] = (widen_reader){ w, i };
        coil_spawn(&loop, widen_read, &rd[i], &t[i]);
    }
    coil_sleep(10 * MS); /* every reader's receive is armed before a byte is sent */
    for (int i = 0; i < WD_CONNS; i++)
        coil_spawn(&loop, widen_send, &rd[i], &snd[i]);
    for (int i = 0; i < WD_CONNS; i++) {
        int res = 0;
        coil_join(snd[i], &res);
        err = err ? err : res;
    }
    while (!err && w->got < WD_CONNS)
        if ((err = coil_sleep(1 * MS)) != 0)
            break;
    w->release = true;
    for (int i = 0; i < WD_CONNS; i++)
        coil_join(t[i], NULL);
    for (int i = 0; i < opened; i++) {
        coil_close(&w->c[i]);
        coil_close(&w->s[i]);
    }
    return err;
}

/* Forty-eight sockets receive at once while the window offers sixteen
 * buffers: the kernel answers ENOBUFS to each of the rest in the same turn.
 * The window widens once for that, not once per socket (which took it to
 * the whole pool at the first burst), and every reader still gets its byte
 * through a single-shot receive. */
static void test_dry_ring_widens_once(void **state)
{
    (void)state;
    if (!kernel_has_multishot())
        skip();
    uring_state *st = US(coil__L(&loop));
    uint32_t start = st->br_target;
    widen w = { 0 };
    assert_int_equal(harness_run(&loop, widen_main, &w), 0);
    assert_int_equal(w.got, WD_CONNS);
    coil_loop_stats s = loop_stats();
    if (s.bufs_exhausted < 4 || st->br_target >= s.bufs_total)
        fail_msg("window %u -> %u after %llu ENOBUFS (pool %llu)", start, st->br_target,
                 (unsigned long long)s.bufs_exhausted, (unsigned long long)s.bufs_total);
    printf("# %d sockets at once: %llu ENOBUFS, window %u -> %u of %llu\n", WD_CONNS,
           (unsigned long long)s.bufs_exhausted, start, st->br_target,
           (unsigned long long)s.bufs_total);
}

/* ---- a kernel that refuses the cap ---- */

typedef struct refusal {
    coil_sock c, s, c2, s2;
    char parked_got[8], read_got[8];
    ssize_t parked_n, read_n;
    bool sent;             /* the bytes went out */
    bool parked_early;     /* the parked socket's task ran before they did */
    bool capped_after;
} refusal;

static int refusal_parked(void *arg)
{
    refusal *r = arg;
    r->parked_early = !r->sent;
    r->parked_n = coil_recv(&r->s, r->parked_got, sizeof(r->parked_got),
                            coil_deadline_in(&loop, 5000 * MS));
    return 0;
}

static int refusal_reader(void *arg)
{
    refusal *r = arg;
    coil_buf b;
    r->read_n = coil_recv_buf(&r->s2, &b, coil_deadline_in(&loop, 5000 * MS));
    if (r->read_n > 0) {
        memcpy(r->read_got, b.data, b.len < sizeof(r->read_got) ? b.len : sizeof(r->read_got));
        coil_buf_release(&b);
    }
    r->capped_after = r->s2.rx && r->s2.rx->capped;
    return 0;
}

static int refusal_main(void *arg)
{
    refusal *r = arg;
    if (pair(&r->c, &r->s) < 0 || pair(&r->c2, &r->s2) < 0)
        return -1;
    /* Both receives are armed capped in this turn, before the refusal of
     * either comes back: one parked socket, one with a reader waiting. */
    coil_task *reader;
    coil_spawn(&loop, refusal_reader, r, &reader);
    int err = coil_park(&r->s, refusal_parked, r, coil_deadline_in(&loop, 5000 * MS));
    coil_yield();
    coil_sleep(20 * MS);
    r->sent = true;
    if (!err && (coil_send(&r->c, "ab", 2, COIL_NO_DEADLINE) != 2 ||
                 coil_send(&r->c2, "cd", 2, COIL_NO_DEADLINE) != 2))
        err = -EIO;
    coil_join(reader, NULL);
    while (!err && !r->parked_n)
        coil_sleep(1 * MS);
    coil_close(&r->c);
    coil_close(&r->s);
    coil_close(&r->c2);
    coil_close(&r->s2);
    return err;
}

/* Kernels without the receive's byte cap refuse it with EINVAL before
 * receiving anything. The loop then drops the cap and arms again, for a
 * parked socket as for one with a reader; no error reaches either. */
static void test_refused_cap_is_dropped(void **state)
{
    (void)state;
    uring_state *st = US(coil__L(&loop));
    if (!st->recv_cap)
        skip(); /* this kernel refused the cap already */
    st->refuse_cap = true;
    refusal r = { 0 };
    assert_int_equal(harness_run(&loop, refusal_main, &r), 0);
    assert_false(st->recv_cap);
    assert_false(r.parked_early); /* armed again, not handed to a task */
    assert_int_equal(r.parked_n, 2);
    assert_memory_equal(r.parked_got, "ab", 2);
    assert_int_equal(r.read_n, 2);
    assert_memory_equal(r.read_got, "cd", 2);
    assert_false(r.capped_after);
}

/* Exits 77 when io_uring cannot be used here, as liburing's tests do. */
static int probe(void)
{
    coil_loop probe_loop;
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.backend = "io_uring";
    int err = coil_loop_init(&probe_loop, &o);
    if (err == -EPERM || err == -ENOSYS || err == -EOPNOTSUPP) {
        printf("# io_uring unavailable here (%s): skipping\n", strerror(-err));
        return 77;
    }
    if (err < 0) {
        printf("# io_uring set-up failed: %s\n", strerror(-err));
        return 1;
    }
    coil_loop_exit(&probe_loop);
    return 0;
}

/* Backpressure: with single-shot receives nothing stays armed between
 * reads, so the kernel takes no buffer for a socket whose task is not
 * reading; switching back re-arms the multishot. */
static bool multishot_armed(const coil_sock *s)
{
    return s->rx && s->rx->armed && !s->rx->is_poll;
}

static int single_main(void *arg)
{
    int *armed = arg;
    coil_sock c, s;
    if (pair(&c, &s) < 0)
        return -1;
    coil_sock_rx_single(&s, true);
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        if (coil_send(&c, "abcd", 4, COIL_NO_DEADLINE) != 4)
            bad++;
        coil_buf b;
        ssize_t n = coil_recv_buf(&s, &b, coil_deadline_in(&loop, 5000 * MS));
        bad += n != 4 || memcmp(b.data, "abcd", 4) != 0;
        coil_buf_release(&b);
        armed[0] += multishot_armed(&s);
    }
    coil_sock_rx_single(&s, false);
    coil_send(&c, "efgh", 4, COIL_NO_DEADLINE);
    coil_buf b;
    bad += coil_recv_buf(&s, &b, coil_deadline_in(&loop, 5000 * MS)) != 4;
    coil_buf_release(&b);
    armed[1] = multishot_armed(&s);
    coil_close(&c);
    coil_close(&s);
    return bad;
}

static void test_single_shot_for_backpressure(void **state)
{
    (void)state;
    int armed[2] = { 0, 0 };
    assert_int_equal(harness_run(&loop, single_main, armed), 0);
    assert_int_equal(armed[0], 0); /* single-shot: nothing left armed */
    assert_int_equal(armed[1], 1); /* multishot again once switched back */
}

int main(void)
{
    int p = probe();
    if (p)
        return p;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_buffer_ring_exhaustion, setup_tiny_ring, net_teardown),
        cmocka_unit_test_setup_teardown(test_cq_overflow, setup_tiny_cq, net_teardown),
        cmocka_unit_test_setup_teardown(test_single_shot_echo, setup_single_shot, net_teardown),
        cmocka_unit_test_setup_teardown(test_cancels_leave_no_stale_completions, setup_default,
                                        net_teardown),
        cmocka_unit_test_setup_teardown(test_park_thousand, setup_default, net_teardown),
        cmocka_unit_test_setup_teardown(test_single_shot_for_backpressure, setup_default,
                                        net_teardown),
        cmocka_unit_test_setup_teardown(test_parked_record_is_small, setup_default, net_teardown),
        cmocka_unit_test_setup_teardown(test_quiet_loop_touches_few_buffers, setup_default,
                                        net_teardown),
        cmocka_unit_test_setup_teardown(test_fast_stream_keeps_to_its_share, setup_default,
                                        net_teardown),
        cmocka_unit_test_setup_teardown(test_refused_cap_is_dropped, setup_default, net_teardown),
        cmocka_unit_test_setup_teardown(test_dry_ring_widens_once, setup_default, net_teardown),
    };
    return HARNESS_RUN(tests);
}
