/* The epoll backend's own hazards, whatever COIL_BACKEND says: edge-triggered
 * readiness under a storm of tiny writes, senders blocked on full socket
 * buffers, edges that arrive while no task waits (they are not repeated, so
 * the runtime must remember them), and parked sockets that must stay quiet. */
#include "net_fixture.h"
#include "loop_impl.h" /* COIL__SOCK_RD_READY: proof that an edge was taken while nobody waited */

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int setup_epoll(void **state)
{
    (void)state;
    net_open("epoll", NULL);
    return 0;
}

#define EPOLL_TEST(f) cmocka_unit_test_setup_teardown(f, setup_epoll, net_teardown)

/* ---- an EAGAIN storm: one byte at a time ---- */

#define STORM 10000

typedef struct storm_box {
    coil_sock c, s;
    bool use_buf;          /* reader uses coil_recv_buf */
    int got;
    int reads;             /* receives that returned data */
    int bad;               /* first mismatching offset + 1, or an error */
    ssize_t last;
} storm_box;

static int storm_writer(void *arg)
{
    storm_box *sb = arg;
    for (int i = 0; i < STORM; i++) {
        unsigned char b = pattern((size_t)i, 1);
        if (coil_send(&sb->c, &b, 1, coil_deadline_in(&loop, 5000 * MS)) != 1)
            return -1;
        coil_yield();
    }
    return 0;
}

static int storm_reader(void *arg)
{
    storm_box *sb = arg;
    unsigned char buf[64];
    while (sb->got < STORM) {
        const unsigned char *p;
        coil_buf b = { 0 };
        ssize_t n;
        if (sb->use_buf) {
            n = coil_recv_buf(&sb->s, &b, coil_deadline_in(&loop, 5000 * MS));
            p = (const unsigned char *)b.data;
        } else {
            n = coil_recv(&sb->s, buf, sizeof(buf), coil_deadline_in(&loop, 5000 * MS));
            p = buf;
        }
        sb->last = n;
        if (n <= 0)
            return -1;
        sb->reads++;
        for (ssize_t k = 0; k < n; k++)
            if (!sb->bad && p[k] != pattern((size_t)sb->got + (size_t)k, 1))
                sb->bad = sb->got + (int)k + 1;
        sb->got += (int)n;
        coil_buf_release(&b);
    }
    return 0;
}

static int storm_main(void *arg)
{
    storm_box *sb = arg;
    int err = pair(&sb->c, &sb->s);
    if (err < 0)
        return err;
    int one = 1;
    /* Every byte its own segment, so every byte is its own edge. */
    setsockopt(sb->c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    coil_task *r, *w;
    coil_spawn(&loop, storm_reader, sb, &r);
    coil_spawn(&loop, storm_writer, sb, &w);
    int rr = -1, wr = -1;
    coil_join(w, &wr);
    coil_join(r, &rr);
    coil_close(&sb->c);
    coil_close(&sb->s);
    return rr == 0 && wr == 0 ? 0 : -1;
}

static void check_storm(bool use_buf)
{
    storm_box sb = { .use_buf = use_buf };
    uint64_t turns0 = loop_stats().loop_turns;
    assert_int_equal(harness_run(&loop, storm_main, &sb), 0);
    uint64_t turns = loop_stats().loop_turns - turns0;
    assert_int_equal(sb.bad, 0);
    assert_int_equal(sb.got, STORM);
    /* The reader wakes at most once per byte; the loop does not spin on
     * readiness that is not there (each writer byte costs about one turn). */
    assert_true(sb.reads >= 1 && sb.reads <= STORM);
    assert_true(turns <= 3 * STORM + 100);
    assert_int_equal(loop_stats().bufs_in_use, 0);
    printf("# %d one-byte writes: %d receives, %llu loop turns\n", STORM, sb.reads,
           (unsigned long long)turns);
}

static void test_eagain_storm_recv(void **state)
{
    (void)state;
    check_storm(false);
}

static void test_eagain_storm_recv_buf(void **state)
{
    (void)state;
    check_storm(true);
}

/* ---- many senders blocked on peers that do not read ---- */

#define SENDERS 32
#define SEND_LEN (512 * 1024)

typedef struct send_box {
    coil_sock c[SENDERS], s[SENDERS];
    unsigned char *src;    /* SEND_LEN + SENDERS bytes; sender i sends from src + i */
    ssize_t sent[SENDERS];
    int done;
    int received_ok;
} send_box;

static send_box *sbx;

static int blocked_sender(void *arg)
{
    int i = (int)(intptr_t)arg;
    sbx->sent[i] = coil_send(&sbx->c[i], sbx->src + i, SEND_LEN, coil_deadline_in(&loop, 20000 * MS));
    sbx->done++;
    return 0;
}

static int late_reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    unsigned char *got = malloc(SEND_LEN);
    size_t n = 0;
    while (n < SEND_LEN) {
        ssize_t r = coil_recv(&sbx->s[i], got + n, SEND_LEN - n, coil_deadline_in(&loop, 20000 * MS));
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    if (n == SEND_LEN && memcmp(got, sbx->src + i, SEND_LEN) == 0)
        sbx->received_ok++;
    free(got);
    return 0;
}

static int senders_main(void *arg)
{
    (void)arg;
    int opened = 0, err = 0;
    for (; opened < SENDERS; opened++) {
        if ((err = pair(&sbx->c[opened], &sbx->s[opened])) < 0)
            break;
        int small = 4096;
        setsockopt(sbx->c[opened].fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    int blocked_early = -1;
    if (opened == SENDERS) {
        coil_task *w[SENDERS], *r[SENDERS];
        for (int i = 0; i < SENDERS; i++)
            coil_spawn(&loop, blocked_sender, (void *)(intptr_t)i, &w[i]);
        /* Nobody reads yet: every sender must be stuck on a full buffer. */
        coil_sleep(50 * MS);
        blocked_early = sbx->done;
        for (int i = 0; i < SENDERS; i++)
            coil_spawn(&loop, late_reader, (void *)(intptr_t)i, &r[i]);
        for (int i = 0; i < SENDERS; i++) {
            coil_join(w[i], NULL);
            coil_join(r[i], NULL);
        }
    }
    for (int i = 0; i < opened; i++) {
        coil_close(&sbx->c[i]);
        coil_close(&sbx->s[i]);
    }
    if (err < 0)
        return err;
    return blocked_early;
}

static void test_blocked_senders_complete(void **state)
{
    (void)state;
    /* Small receive buffers, inherited by accepted sockets, so a peer that
     * does not read stops the sender quickly. */
    int small = 4096;
    assert_int_equal(setsockopt(lsn.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    sbx = calloc(1, sizeof(*sbx));
    sbx->src = malloc(SEND_LEN + SENDERS);
    fill_pattern(sbx->src, SEND_LEN + SENDERS, 2);
    uint64_t cont0 = loop_stats().sends_continued;
    int fds = harness_fd_count();
    assert_int_equal(harness_run(&loop, senders_main, NULL), 0); /* none finished early */
    assert_int_equal(harness_fd_count(), fds);
    for (int i = 0; i < SENDERS; i++)
        assert_int_equal(sbx->sent[i], SEND_LEN);
    assert_int_equal(sbx->done, SENDERS);
    assert_int_equal(sbx->received_ok, SENDERS);
    uint64_t cont = loop_stats().sends_continued - cont0;
    assert_true(cont > 0);
    printf("# %d blocked senders x %d bytes: %llu sends continued after a short send\n", SENDERS,
           SEND_LEN, (unsigned long long)cont);
    free(sbx->src);
    free(sbx);
}

/* ---- edges that arrive while no task waits ---- */

typedef struct edge_box {
    int cfd;               /* plain client socket, outside coil */
    coil_sock s;
    bool let_loop_see;     /* let the loop take the edge before parking */
    ssize_t timed_out;     /* the receive that drained the socket */
    bool edge_remembered;
    int park_err;
    int handler_runs;
    ssize_t handler_got;
    char handler_byte;
    int yields_to_fire;
} edge_box;

static int edge_handler(void *arg)
{
    edge_box *eb = arg;
    eb->handler_runs++;
    char c = 0;
    eb->handler_got = coil_recv(&eb->s, &c, 1, coil_deadline_in(&loop, 5000 * MS));
    eb->handler_byte = c;
    coil_close(&eb->s);
    return 0;
}

static int edge_main(void *arg)
{
    edge_box *eb = arg;
    int err = coil_accept(&lsn, &eb->s, NULL, coil_deadline_in(&loop, 5000 * MS));
    if (err < 0)
        return err;
    /* Drain to EAGAIN so that the next byte really is a new edge. */
    char c;
    eb->timed_out = coil_recv(&eb->s, &c, 1, coil_deadline_in(&loop, 5 * MS));
    /* The task is busy (not receiving) when the byte comes. */
    if (send(eb->cfd, "x", 1, 0) != 1) {
        coil_close(&eb->s);
        return -errno;
    }
    if (eb->let_loop_see) {
        /* Turns of the loop with nobody waiting: the edge is reported now
         * and never again. */
        coil_sleep(10 * MS);
        eb->edge_remembered = (eb->s.flags & COIL__SOCK_RD_READY) != 0;
    }
    eb->park_err = coil_park(&eb->s, edge_handler, eb, coil_deadline_in(&loop, 5000 * MS));
    if (eb->park_err < 0) {
        coil_close(&eb->s);
        return eb->park_err;
    }
    /* "At once": a few yields (turns that do not sleep), no waiting for the
     * park deadline. */
    for (eb->yields_to_fire = 0; eb->yields_to_fire < 100 && !eb->handler_runs; eb->yields_to_fire++)
        coil_yield();
    if (!eb->handler_runs) {
        coil_close(&eb->s);
        return -EAGAIN;
    }
    while (eb->s.fd >= 0) /* the handler closes it */
        coil_yield();
    return 0;
}

static void check_edge(bool let_loop_see)
{
    edge_box eb = { .let_loop_see = let_loop_see };
    eb.cfd = harness_client(port);
    assert_int_equal(harness_run(&loop, edge_main, &eb), 0);
    close(eb.cfd);
    assert_int_equal(eb.timed_out, -ETIMEDOUT);
    if (let_loop_see)
        assert_true(eb.edge_remembered);
    assert_int_equal(eb.park_err, 0);
    assert_int_equal(eb.handler_runs, 1);
    assert_int_equal(eb.handler_got, 1);
    assert_int_equal(eb.handler_byte, 'x');
    assert_int_equal(loop_stats().socks_parked, 0);
}

/* The edge was reported to the loop before the park: only the runtime's
 * memory of it can wake the parked socket. */
static void test_edge_while_busy_then_park(void **state)
{
    (void)state;
    check_edge(true);
}

/* The edge is still queued in epoll when the socket is parked. */
static void test_edge_pending_at_park(void **state)
{
    (void)state;
    check_edge(false);
}

/* ---- parked sockets with no data stay parked ---- */

typedef struct quiet_box {
    int cfd[2];
    coil_sock s[2];
    int runs[2];
    ssize_t got[2];
    char byte[2];
    int err;
} quiet_box;

static quiet_box *qbx;

static int quiet_handler(void *arg)
{
    int i = (int)(intptr_t)arg;
    qbx->runs[i]++;
    char c = 0;
    qbx->got[i] = coil_recv(&qbx->s[i], &c, 1, coil_deadline_in(&loop, 5000 * MS));
    qbx->byte[i] = c;
    coil_close(&qbx->s[i]);
    return 0;
}

static int quiet_main(void *arg)
{
    (void)arg;
    /* Socket 0: parked straight after accept (it starts out assumed
     * readable). Socket 1: its three bytes read exactly, without the EAGAIN
     * that would clear the readable mark. Neither has anything to read. */
    int opened = 0;
    for (; opened < 2; opened++)
        if ((qbx->err = coil_accept(&lsn, &qbx->s[opened], NULL, coil_deadline_in(&loop, 5000 * MS))) < 0)
            break;
    if (opened == 2) {
        char buf[3];
        size_t got = 0;
        while (got < 3) {
            ssize_t n = coil_recv(&qbx->s[1], buf + got, 3 - got, coil_deadline_in(&loop, 5000 * MS));
            if (n <= 0) {
                qbx->err = n < 0 ? (int)n : -EPIPE;
                break;
            }
            got += (size_t)n;
        }
    }
    for (int i = 0; i < opened; i++) {
        int err = qbx->err ? qbx->err
                           : coil_park(&qbx->s[i], quiet_handler, (void *)(intptr_t)i, COIL_NO_DEADLINE);
        if (err < 0) {
            qbx->err = err;
            coil_close(&qbx->s[i]);
        }
    }
    return qbx->err;
}

static void test_parked_without_data_stays_quiet(void **state)
{
    (void)state;
    qbx = calloc(1, sizeof(*qbx));
    /* One listener accepts in connect order: s[i] is cfd[i]'s peer. */
    for (int i = 0; i < 2; i++)
        qbx->cfd[i] = harness_client(port);
    assert_int_equal(send(qbx->cfd[1], "abc", 3, 0), 3);
    int err = harness_run(&loop, quiet_main, NULL);
    if (err < 0) {
        for (int i = 0; i < 2; i++)
            close(qbx->cfd[i]);
        fail_msg("set-up failed: %s", strerror(-err));
    }
    /* Several turns, some of them sleeping: nothing may wake either socket. */
    for (int turn = 0; turn < 10; turn++)
        assert_true(coil_loop_run_once(&loop, turn % 2 ? 2 * MS : 0) >= 0);
    coil_loop_stats st = loop_stats();
    assert_int_equal(st.socks_parked, 2);
    assert_int_equal(st.stacks_in_use, 0);
    assert_int_equal(st.tasks_live, 0);
    assert_int_equal(st.bufs_in_use, 0);
    assert_int_equal(qbx->runs[0] + qbx->runs[1], 0);
    /* Data for one wakes that one only; end of stream wakes the other. */
    assert_int_equal(send(qbx->cfd[0], "y", 1, 0), 1);
    for (int turn = 0; turn < 200 && !qbx->runs[0]; turn++)
        assert_true(coil_loop_run_once(&loop, 10 * MS) >= 0);
    for (int turn = 0; turn < 10; turn++)
        assert_true(coil_loop_run_once(&loop, 0) >= 0);
    assert_int_equal(qbx->runs[0], 1);
    assert_int_equal(qbx->got[0], 1);
    assert_int_equal(qbx->byte[0], 'y');
    assert_int_equal(qbx->runs[1], 0);
    assert_int_equal(loop_stats().socks_parked, 1);
    close(qbx->cfd[1]);
    for (int turn = 0; turn < 200 && !qbx->runs[1]; turn++)
        assert_true(coil_loop_run_once(&loop, 10 * MS) >= 0);
    for (int turn = 0; turn < 10; turn++)
        assert_true(coil_loop_run_once(&loop, 0) >= 0);
    assert_int_equal(qbx->runs[1], 1);
    assert_int_equal(qbx->got[1], 0);
    assert_int_equal(loop_stats().socks_parked, 0);
    assert_int_equal(loop_stats().tasks_live, 0);
    close(qbx->cfd[0]);
    free(qbx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EPOLL_TEST(test_eagain_storm_recv),
        EPOLL_TEST(test_eagain_storm_recv_buf),
        EPOLL_TEST(test_blocked_senders_complete),
        EPOLL_TEST(test_edge_while_busy_then_park),
        EPOLL_TEST(test_edge_pending_at_park),
        EPOLL_TEST(test_parked_without_data_stays_quiet),
    };
    return HARNESS_RUN(tests);
}
