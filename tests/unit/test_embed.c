/* Embedding: a plain epoll loop owned by the test drives a coil loop through
 * coil_loop_fd() and coil_loop_timeout_ns() alone. It calls
 * coil_loop_run_once(loop, 0) only when epoll says the fd is readable or the
 * timeout coil asked for has passed, so work that does not make the fd
 * readable is never done: the test hangs (until its watchdog) instead of
 * passing by luck. On io_uring the loop normally has DEFER_TASKRUN, under
 * which completions are posted only when the owning thread enters the kernel;
 * the fd must become readable all the same. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_MS 2000
#define ROUNDS 5

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static coil_loop loop;

/* What the scenario has done so far; every step counts as progress. */
static struct {
    bool timers;        /* sleeping tasks, and sleeps between rounds */
    unsigned progress;
    int sleeps_done;
    int server_rounds, client_rounds;
    int server_err, client_err;
    bool msg_ran;
    int port;
    coil_sock lsn;
} sc;

static bool scenario_done(void)
{
    return sc.sleeps_done == (sc.timers ? 3 : 0) && sc.server_rounds == ROUNDS && sc.client_rounds == ROUNDS &&
           sc.msg_ran;
}

static int sleeper(void *arg)
{
    int ms = (int)(intptr_t)arg;
    for (int i = 0; i < 2; i++) {
        if (coil_sleep(ms * MS) != 0)
            return -1;
        sc.progress++;
    }
    sc.sleeps_done++;
    return 0;
}

static int server(void *arg)
{
    (void)arg;
    coil_sock c;
    int err = coil_accept(&sc.lsn, &c, NULL, coil_deadline_in(&loop, 5000 * MS));
    /* One connection only: the listener goes now, from a task, since a
     * multishot accept may still be armed on it. */
    coil_close(&sc.lsn);
    if (err < 0) {
        sc.server_err = err;
        return err;
    }
    sc.progress++;
    char buf[64];
    for (;;) {
        ssize_t n = coil_recv(&c, buf, sizeof(buf), coil_deadline_in(&loop, 5000 * MS));
        if (n <= 0) {
            if (n < 0)
                sc.server_err = (int)n;
            break;
        }
        sc.progress++;
        if (coil_send(&c, buf, (size_t)n, coil_deadline_in(&loop, 5000 * MS)) != n) {
            sc.server_err = -EIO;
            break;
        }
        sc.server_rounds++;
        sc.progress++;
    }
    coil_close(&c);
    return 0;
}

static int client(void *arg)
{
    (void)arg;
    coil_sock s;
    int err = harness_connect(&loop, &s, sc.port, coil_deadline_in(&loop, 5000 * MS));
    if (err < 0) {
        sc.client_err = err;
        return err;
    }
    sc.progress++;
    for (int i = 0; i < ROUNDS; i++) {
        char out[32], in[32];
        int len = snprintf(out, sizeof(out), "round %d", i);
        if (coil_send(&s, out, (size_t)len, coil_deadline_in(&loop, 5000 * MS)) != len) {
            sc.client_err = -EIO;
            break;
        }
        sc.progress++;
        int got = 0;
        while (got < len) {
            ssize_t n = coil_recv(&s, in + got, (size_t)(len - got), coil_deadline_in(&loop, 5000 * MS));
            if (n <= 0) {
                sc.client_err = n < 0 ? (int)n : -EPIPE;
                goto out;
            }
            got += (int)n;
        }
        if (memcmp(in, out, (size_t)len) != 0) {
            sc.client_err = -EBADMSG;
            break;
        }
        sc.client_rounds++;
        sc.progress++;
        /* Spread the rounds over time: the loop sleeps in between. */
        if (sc.timers)
            coil_sleep(10 * MS);
    }
out:
    coil_close(&s);
    return 0;
}

static void foreign_msg(coil_loop *l, void *arg)
{
    (void)arg;
    sc.msg_ran = true;
    sc.progress++;
    coil_loop_unref(l); /* taken while the message was on its way */
}

static void *foreign_thread(void *arg)
{
    (void)arg;
    usleep(60 * 1000);
    coil_post(&loop, foreign_msg, NULL);
    return NULL;
}

typedef struct drive_stats {
    unsigned wakeups;   /* epoll_wait returns */
    unsigned readable;  /* ... that reported the fd readable */
    unsigned idle;      /* ... after which run_once made no progress */
    int64_t elapsed_ns;
} drive_stats;

/* The embedder's loop. Returns false if the watchdog expired. */
static bool drive(drive_stats *ds)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    struct epoll_event ev = { .events = EPOLLIN };
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, coil_loop_fd(&loop), &ev), 0);
    *ds = (drive_stats){ 0 };
    int64_t t0 = mono_ns();
    int64_t watchdog = t0 + WATCHDOG_MS * MS;
    bool ok = true;
    /* The spawned tasks are ready: coil says so with a timeout of 0. */
    int alive = 1;
    while (alive > 0) {
        int64_t t = coil_loop_timeout_ns(&loop);
        int64_t left = watchdog - mono_ns();
        if (left <= 0) {
            ok = false;
            break;
        }
        /* ns to ms rounding up: waking early would just spin. */
        int64_t want_ms = t < 0 ? -1 : (t + MS - 1) / MS;
        int64_t cap_ms = (left + MS - 1) / MS;
        int ms = (int)(want_ms < 0 || want_ms > cap_ms ? cap_ms : want_ms);
        struct epoll_event got;
        int n = epoll_wait(ep, &got, 1, ms);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        ds->wakeups++;
        if (n == 0) {
            /* Woken by our own cap rather than by coil's timeout: coil said
             * there was nothing to do until later, and nothing came. */
            if (want_ms < 0 || want_ms > cap_ms) {
                ok = false;
                break;
            }
        } else {
            ds->readable++;
        }
        unsigned before = sc.progress;
        alive = coil_loop_run_once(&loop, 0);
        assert_true(alive >= 0);
        if (sc.progress == before)
            ds->idle++;
    }
    ds->elapsed_ns = mono_ns() - t0;
    close(ep);
    return ok;
}

static void run_scenario(unsigned flags, bool timers)
{
    memset(&sc, 0, sizeof(sc));
    sc.timers = timers;
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.flags = flags;
    harness_loop_init(&loop, &o);
    harness_listen(&loop, &sc.lsn);
    sc.port = coil_sock_port(&sc.lsn);
    for (int i = 0; timers && i < 3; i++)
        assert_int_equal(coil_spawn(&loop, sleeper, (void *)(intptr_t)(20 + 20 * i), NULL), 0);
    assert_int_equal(coil_spawn(&loop, server, NULL, NULL), 0);
    assert_int_equal(coil_spawn(&loop, client, NULL, NULL), 0);
    coil_loop_ref(&loop);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, foreign_thread, NULL), 0);

    drive_stats ds;
    bool ok = drive(&ds);
    pthread_join(th, NULL);
    print_message("embedded %s loop%s%s: %u wakeups (%u readable, %u without progress) in %lld ms\n",
                  coil_loop_backend(&loop), flags ? " without taskrun flags" : "",
                  timers ? "" : ", socket I/O and a message only", ds.wakeups,
                  ds.readable, ds.idle, (long long)(ds.elapsed_ns / MS));
    if (!ok) {
        coil_loop_stats st;
        coil_loop_stats_get(&loop, &st);
        char why[512];
        snprintf(why, sizeof(why),
                 "the embedded %s loop stalled: its fd was not readable although work was due "
                 "(sleeps %d, server rounds %d/%d, client rounds %d/%d, message %s; %llu tasks "
                 "live, coil timeout %lld ms)",
                 coil_loop_backend(&loop), sc.sleeps_done, sc.server_rounds, ROUNDS,
                 sc.client_rounds, ROUNDS, sc.msg_ran ? "ran" : "not run",
                 (unsigned long long)st.tasks_live, (long long)(coil_loop_timeout_ns(&loop) / MS));
        /* Leave nothing behind for the next test: finish the loop by plain
         * polling, which needs no readable fd. */
        int64_t until = mono_ns() + 6000 * MS;
        while (!sc.msg_ran && mono_ns() < until)
            coil_loop_run_once(&loop, 10 * MS);
        while (coil_loop_run_once(&loop, 10 * MS) > 0 && mono_ns() < until) {
        }
        coil_loop_exit(&loop);
        fail_msg("%s", why);
    }
    assert_true(scenario_done());
    assert_int_equal(sc.server_err, 0);
    assert_int_equal(sc.client_err, 0);
    /* About 120 ms of sleeping and a few dozen events: a loop that spins
     * on a readable fd or a zero timeout would wake thousands of times. */
    assert_true(ds.wakeups < 1000);
    assert_true(ds.idle < 500);
    coil_loop_stats st;
    coil_loop_stats_get(&loop, &st);
    assert_int_equal(st.msgs_received, 1);
    harness_loop_exit(&loop);
}

static void test_embed(void **state)
{
    (void)state;
    run_scenario(0, true);
}

/* The same without DEFER_TASKRUN / SINGLE_ISSUER / COOP_TASKRUN: if only the
 * default-flag variant fails, the taskrun flags are what keeps the fd from
 * becoming readable. */
static void test_embed_no_taskrun_flags(void **state)
{
    (void)state;
    run_scenario(COIL_LOOP_NO_TASKRUN_FLAGS, true);
}

/* No timer at all: nothing but the fd can wake the embedder, so every
 * completion must make it readable (sleeping tasks would wake the embedder
 * now and then and hide a missing wake-up). */
static void test_embed_io_only(void **state)
{
    (void)state;
    run_scenario(0, false);
}

static void test_embed_io_only_no_taskrun_flags(void **state)
{
    (void)state;
    run_scenario(COIL_LOOP_NO_TASKRUN_FLAGS, false);
}

/* Idle: nothing timed, nothing ready. coil says "no limit" and the fd stays
 * quiet, then a message from another thread makes it readable. */
/* epoll_wait for up to ms in all. io_uring's task work may interrupt it
 * (EINTR) without the fd being readable: that is not a wake-up. */
static int epoll_wait_ms(int ep, struct epoll_event *got, int ms)
{
    int64_t until = mono_ns() + (int64_t)ms * MS;
    for (;;) {
        int64_t left = until - mono_ns();
        int n = epoll_wait(ep, got, 1, left > 0 ? (int)((left + MS - 1) / MS) : 0);
        if (n >= 0 || errno != EINTR)
            return n;
    }
}

static void idle_until_message(unsigned flags)
{
    memset(&sc, 0, sizeof(sc));
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.flags = flags;
    harness_loop_init(&loop, &o);
    coil_loop_ref(&loop);
    assert_int_equal(coil_loop_run_once(&loop, 0), 1);
    assert_int_equal(coil_loop_timeout_ns(&loop), -1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN };
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, coil_loop_fd(&loop), &ev), 0);
    struct epoll_event got;
    assert_int_equal(epoll_wait_ms(ep, &got, 30), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, foreign_thread, NULL), 0);
    int n = epoll_wait_ms(ep, &got, WATCHDOG_MS);
    pthread_join(th, NULL);
    if (n != 1) {
        const char *name = coil_loop_backend(&loop);
        coil_loop_run_once(&loop, 100 * MS);
        close(ep);
        coil_loop_exit(&loop);
        fail_msg("a message from another thread did not make the %s loop's fd readable%s", name,
                 flags ? " (without taskrun flags)" : "");
    }
    assert_int_equal(coil_loop_run_once(&loop, 0), 0);
    assert_true(sc.msg_ran);
    close(ep);
    harness_loop_exit(&loop);
}

static void test_idle_fd_quiet_until_message(void **state)
{
    (void)state;
    idle_until_message(0);
}

static void test_idle_fd_quiet_until_message_no_taskrun_flags(void **state)
{
    (void)state;
    idle_until_message(COIL_LOOP_NO_TASKRUN_FLAGS);
}

int main(void)
{
    setenv("COIL_QUIET", "1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_fd_quiet_until_message),
        cmocka_unit_test(test_idle_fd_quiet_until_message_no_taskrun_flags),
        cmocka_unit_test(test_embed_io_only),
        cmocka_unit_test(test_embed_io_only_no_taskrun_flags),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_embed_no_taskrun_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
