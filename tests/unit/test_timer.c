/* Timers: firing order under load, re-arming, stopping, zero-delay re-arms,
 * the cost of re-arming, what the loop reports about them, and sleeps that
 * are already due. Timers themselves are backend-independent, but their
 * firing depends on the backend's wait honouring the timeout it is given,
 * so the file runs on both backends. */
#include "loop_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/seccomp.h>

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Turns the loop until no timer is armed, or fails after limit_ms. */
static void run_until_no_timers(int64_t limit_ms)
{
    int64_t until = coil_now(&loop) + limit_ms * MS;
    while (loop_stats().timers_active > 0) {
        assert_true(coil_loop_run_once(&loop, 100 * MS) >= 0);
        if (coil_now(&loop) > until)
            fail_msg("timers still armed after %lld ms", (long long)limit_ms);
    }
}

/* Callbacks record what they saw instead of asserting: they run inside
 * coil_loop_run_once(), and a failing assertion there would leave the loop
 * marked as running. */
typedef struct tbox {
    coil_timer t;
    int64_t deadline;
    int fired;
    bool armed;     /* what the test believes */
} tbox;

#define NT 10000
static tbox tb[NT];
static int64_t fire_log[NT];
static int nfired;
static int fired_early;

static void log_cb(coil_timer *t)
{
    tbox *b = t->data;
    b->fired++;
    if (coil_now(&loop) < b->deadline)
        fired_early++;
    if (nfired < NT)
        fire_log[nfired] = b->deadline;
    nfired++;
}

/* tb[0..n): fresh timers calling cb, none fired, none armed; the log empty. */
static void tb_init(int n, coil_timer_cb cb)
{
    nfired = 0;
    fired_early = 0;
    for (int i = 0; i < n; i++) {
        coil_timer_init(&loop, &tb[i].t, cb);
        tb[i].t.data = &tb[i];
        tb[i].fired = 0;
        tb[i].armed = false;
    }
}

/* ---- ordering ---- */

static void test_ten_thousand_in_order(void **state)
{
    (void)state;
    tb_init(NT, log_cb);
    rng_state = 0x9e3779b97f4a7c15ull;
    int64_t now = coil_now(&loop);
    for (int i = 0; i < NT; i++) {
        /* Every eighth timer shares one of a few deadlines: ties must all
         * fire, in any order. */
        int64_t off = (i % 8 == 0) ? (int64_t)(rng() % 4) * 10 * MS : (int64_t)(rng() % (50 * MS));
        tb[i].deadline = now + 1 * MS + off;
        assert_int_equal(coil_timer_start(&tb[i].t, tb[i].deadline), 0);
    }
    assert_int_equal(loop_stats().timers_active, NT);
    run_until_no_timers(10000);
    assert_int_equal(nfired, NT);
    assert_int_equal(fired_early, 0);
    for (int i = 0; i < NT; i++)
        assert_int_equal(tb[i].fired, 1);
    for (int i = 1; i < NT; i++)
        if (fire_log[i] < fire_log[i - 1])
            fail_msg("timer %d fired before an earlier deadline (%lld < %lld)", i,
                     (long long)fire_log[i], (long long)fire_log[i - 1]);
}

/* ---- re-arming and stopping ---- */

static void test_rearm_moves(void **state)
{
    (void)state;
    tb_init(3, log_cb);
    int64_t now = coil_now(&loop);
    for (int i = 0; i < 3; i++) {
        tb[i].deadline = now + (30 + 30 * i) * MS;
        assert_int_equal(coil_timer_start(&tb[i].t, tb[i].deadline), 0);
    }
    /* 0 at +30, 1 at +60, 2 at +90: pull 2 ahead of everyone, push 0 behind */
    tb[2].deadline = now + 10 * MS;
    assert_int_equal(coil_timer_start(&tb[2].t, tb[2].deadline), 0);
    tb[0].deadline = now + 120 * MS;
    assert_int_equal(coil_timer_start(&tb[0].t, tb[0].deadline), 0);
    assert_int_equal(loop_stats().timers_active, 3); /* re-arming adds nothing */
    run_until_no_timers(5000);
    int64_t want[] = { now + 10 * MS, now + 60 * MS, now + 120 * MS };
    assert_int_equal(nfired, 3);
    assert_int_equal(fired_early, 0);
    assert_memory_equal(fire_log, want, sizeof(want));
}

/* Random starts, re-arms (both directions) and stops from anywhere in the
 * heap: the survivors fire once each, in deadline order; stopped ones never. */
static void test_rearm_stop_shuffle(void **state)
{
    (void)state;
    enum { N = 2000, OPS = 20000 };
    tb_init(N, log_cb);
    rng_state = 12345;
    int64_t now = coil_now(&loop);
    for (int k = 0; k < OPS; k++) {
        int i = (int)(rng() % N);
        if (rng() % 4 == 0) {
            coil_timer_stop(&tb[i].t);
            tb[i].armed = false;
        } else {
            tb[i].deadline = now + 1 * MS + (int64_t)(rng() % (40 * MS));
            assert_int_equal(coil_timer_start(&tb[i].t, tb[i].deadline), 0);
            tb[i].armed = true;
        }
    }
    int armed = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(coil_timer_active(&tb[i].t), tb[i].armed);
        armed += tb[i].armed;
    }
    assert_int_equal(loop_stats().timers_active, armed);
    run_until_no_timers(5000);
    assert_int_equal(nfired, armed);
    assert_int_equal(fired_early, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(tb[i].fired, tb[i].armed ? 1 : 0);
    for (int i = 1; i < armed; i++)
        assert_true(fire_log[i] >= fire_log[i - 1]);
}

static void test_stop(void **state)
{
    (void)state;
    tb_init(3, log_cb);
    int64_t now = coil_now(&loop);
    for (int i = 0; i < 3; i++)
        tb[i].deadline = now + (5 + 5 * i) * MS;
    assert_false(coil_timer_active(&tb[0].t));
    coil_timer_stop(&tb[0].t); /* never armed: harmless */
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_timer_start(&tb[i].t, tb[i].deadline), 0);
    assert_int_equal(loop_stats().timers_active, 3);
    coil_timer_stop(&tb[1].t); /* the middle one */
    assert_false(coil_timer_active(&tb[1].t));
    assert_int_equal(loop_stats().timers_active, 2);
    coil_timer_stop(&tb[1].t); /* twice: harmless */
    assert_int_equal(loop_stats().timers_active, 2);
    coil_timer_stop(&tb[0].t); /* the earliest, the heap's root */
    assert_int_equal(loop_stats().timers_active, 1);
    run_until_no_timers(5000);
    assert_int_equal(tb[0].fired, 0);
    assert_int_equal(tb[1].fired, 0);
    assert_int_equal(tb[2].fired, 1);
    /* A stopped timer can be armed again. */
    tb[1].deadline = coil_now(&loop);
    assert_int_equal(coil_timer_start(&tb[1].t, tb[1].deadline), 0);
    run_until_no_timers(5000);
    assert_int_equal(tb[1].fired, 1);
}

/* ---- a callback re-arming its own timer for "now" ---- */

static int spin_count;
static int spin_limit;

static void spin_cb(coil_timer *t)
{
    spin_count++;
    if (spin_count < spin_limit)
        coil_timer_start(t, coil_now(&loop));
}

static void check_rearm_now_one_per_turn(int others)
{
    static coil_timer far[128];
    coil_timer spin;
    spin_count = 0;
    spin_limit = 1000;
    for (int i = 0; i < others; i++) {
        coil_timer_init(&loop, &far[i], log_cb);
        far[i].data = &tb[i];
        assert_int_equal(coil_timer_start(&far[i], coil_now(&loop) + 60000 * MS), 0);
    }
    coil_timer_init(&loop, &spin, spin_cb);
    assert_int_equal(coil_timer_start(&spin, coil_now(&loop)), 0);
    int per_turn[3];
    for (int turn = 0; turn < 3; turn++) {
        int before = spin_count;
        assert_true(coil_loop_run_once(&loop, 0) >= 0);
        per_turn[turn] = spin_count - before;
    }
    coil_timer_stop(&spin);
    for (int i = 0; i < others; i++)
        coil_timer_stop(&far[i]);
    for (int turn = 0; turn < 3; turn++)
        if (per_turn[turn] != 1)
            fail_msg("with %d other timers armed, a timer re-armed for now fired %d times in "
                     "turn %d (want once per turn)",
                     others, per_turn[turn], turn);
}

static void test_rearm_now_alone(void **state)
{
    (void)state;
    check_rearm_now_one_per_turn(0);
}

/* The same with other timers armed far in the future (keep-alive timers of
 * idle connections): they must not buy the zero-delay timer extra runs. */
static void test_rearm_now_among_others(void **state)
{
    (void)state;
    check_rearm_now_one_per_turn(100);
}

/* ---- re-arming costs no system call ---- */

static void noop_cb(coil_timer *t)
{
    tbox *b = t->data;
    b->fired++;
}

/* Runs the re-arm loop in a child under seccomp strict mode, in which any
 * system call but read/write/exit/sigreturn kills the process: if the child
 * exits normally, re-arming made no such call. */
static int rearm_in_strict_child(int64_t base)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
            syscall(SYS_exit, 3);
        for (int round = 0; round < 100; round++)
            for (int i = 0; i < NT; i++)
                if (coil_timer_start(&tb[i].t, base + (int64_t)round * MS + i) != 0)
                    syscall(SYS_exit, 2);
        syscall(SYS_exit, 0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return WEXITSTATUS(status);
}

static void test_rearm_costs_no_syscall(void **state)
{
    (void)state;
    tb_init(NT, noop_cb);
    int64_t now = coil_now(&loop);
    for (int i = 0; i < NT; i++)
        assert_int_equal(coil_timer_start(&tb[i].t, now + 60000 * MS + i), 0);
    coil_loop_stats before = loop_stats();
    /* Keep-alive style: every connection pushes its deadline on activity. */
    for (int round = 0; round < 100; round++)
        for (int i = 0; i < NT; i++)
            assert_int_equal(coil_timer_start(&tb[i].t, now + 60000 * MS + round * MS + i), 0);
    coil_loop_stats after = loop_stats();
    assert_int_equal(after.loop_turns, before.loop_turns);
    assert_int_equal(after.timers_active, NT);
    /* The earliest is timer 0's last deadline, about a minute away. */
    int64_t to = coil_loop_timeout_ns(&loop);
    assert_true(to > 50000 * MS && to <= 60000 * MS + 99 * MS);

    int r = rearm_in_strict_child(now + 60000 * MS);
    if (r == 3)
        printf("# seccomp strict mode unavailable: system calls not counted\n");
    else if (r != 0)
        fail_msg("re-arming in a seccomp-strict child ended with %d (negative: killed by "
                 "signal, i.e. a system call was made)",
                 r);

    /* Pull them all in: each fires exactly once. */
    now = coil_now(&loop);
    for (int i = 0; i < NT; i++)
        assert_int_equal(coil_timer_start(&tb[i].t, now + (i % 5) * MS), 0);
    run_until_no_timers(5000);
    for (int i = 0; i < NT; i++)
        assert_int_equal(tb[i].fired, 1);
}

/* ---- what the loop reports ---- */

static int sleep_long(void *arg)
{
    (void)arg;
    return coil_sleep(60000 * MS);
}

static void test_timeout_ns(void **state)
{
    (void)state;
    coil_timer a, b, c;
    coil_timer_init(&loop, &a, noop_cb);
    coil_timer_init(&loop, &b, noop_cb);
    coil_timer_init(&loop, &c, noop_cb);
    a.data = b.data = c.data = &tb[0];
    assert_int_equal(coil_loop_timeout_ns(&loop), -1); /* nothing timed */
    int64_t now = coil_now(&loop);
    assert_int_equal(coil_timer_start(&a, now + 5000 * MS), 0);
    int64_t t = coil_loop_timeout_ns(&loop);
    assert_true(t > 4000 * MS && t <= 5000 * MS);
    assert_int_equal(coil_timer_start(&b, now + 2000 * MS), 0);
    t = coil_loop_timeout_ns(&loop);
    assert_true(t > 1000 * MS && t <= 2000 * MS);
    /* re-arming the earliest later, then earlier */
    assert_int_equal(coil_timer_start(&b, now + 8000 * MS), 0);
    t = coil_loop_timeout_ns(&loop);
    assert_true(t > 4000 * MS && t <= 5000 * MS);
    assert_int_equal(coil_timer_start(&b, now + 1000 * MS), 0);
    t = coil_loop_timeout_ns(&loop);
    assert_true(t > 0 && t <= 1000 * MS);
    coil_timer_stop(&b);
    t = coil_loop_timeout_ns(&loop);
    assert_true(t > 4000 * MS && t <= 5000 * MS);
    /* a deadline already passed: no sleeping at all */
    assert_int_equal(coil_timer_start(&c, now - 1000 * MS), 0);
    assert_int_equal(coil_loop_timeout_ns(&loop), 0);
    coil_timer_stop(&c);
    /* a ready task: no sleeping either, whatever the timers say */
    coil_task *task;
    assert_int_equal(coil_spawn(&loop, sleep_long, NULL, &task), 0);
    assert_int_equal(coil_loop_timeout_ns(&loop), 0);
    assert_true(coil_loop_run_once(&loop, 0) >= 0); /* now it sleeps */
    t = coil_loop_timeout_ns(&loop);
    assert_true(t > 4000 * MS && t <= 5000 * MS);
    coil_cancel(task);
    coil_detach(task);
    for (int i = 0; i < 10 && loop_stats().tasks_live; i++)
        assert_true(coil_loop_run_once(&loop, 0) >= 0);
    assert_int_equal(loop_stats().tasks_live, 0);
    coil_timer_stop(&a);
    assert_int_equal(coil_loop_timeout_ns(&loop), -1);
}

static void test_timers_active(void **state)
{
    (void)state;
    coil_timer a, b, c;
    coil_timer_init(&loop, &a, noop_cb);
    coil_timer_init(&loop, &b, noop_cb);
    coil_timer_init(&loop, &c, noop_cb);
    tb[0].fired = 0;
    a.data = b.data = c.data = &tb[0];
    assert_int_equal(loop_stats().timers_active, 0);
    int64_t now = coil_now(&loop);
    assert_int_equal(coil_timer_start(&a, now + 60000 * MS), 0);
    assert_int_equal(coil_timer_start(&b, now + 60000 * MS), 0);
    assert_int_equal(coil_timer_start(&c, now), 0);
    assert_int_equal(loop_stats().timers_active, 3);
    assert_int_equal(coil_timer_start(&a, now + 30000 * MS), 0);
    assert_int_equal(loop_stats().timers_active, 3);
    /* c fires on the next turn and leaves the count */
    assert_true(coil_loop_run_once(&loop, 0) >= 0);
    assert_int_equal(tb[0].fired, 1);
    assert_false(coil_timer_active(&c));
    assert_int_equal(loop_stats().timers_active, 2);
    /* a sleeping task holds one timer while it sleeps */
    coil_task *task;
    assert_int_equal(coil_spawn(&loop, sleep_long, NULL, &task), 0);
    assert_true(coil_loop_run_once(&loop, 0) >= 0);
    assert_int_equal(loop_stats().timers_active, 3);
    coil_cancel(task);
    coil_detach(task);
    for (int i = 0; i < 10 && loop_stats().tasks_live; i++)
        assert_true(coil_loop_run_once(&loop, 0) >= 0);
    assert_int_equal(loop_stats().timers_active, 2);
    coil_timer_stop(&a);
    assert_int_equal(loop_stats().timers_active, 1);
    coil_timer_stop(&b);
    assert_int_equal(loop_stats().timers_active, 0);
}

/* ---- sleeps that are already due ---- */

typedef struct due_box {
    int r_zero, r_past, r_negative;
    uint64_t turns;
    int64_t took;
} due_box;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void guard_cb(coil_timer *t)
{
    (void)t;
}

static int due_main(void *arg)
{
    due_box *db = arg;
    /* The loop has a long wait to fall into if a due sleep were not treated
     * as due: a timer ten seconds out. */
    coil_timer guard;
    coil_timer_init(&loop, &guard, guard_cb);
    coil_timer_start(&guard, coil_now(&loop) + 10000 * MS);
    uint64_t turns0 = loop_stats().loop_turns;
    int64_t t0 = mono_ns();
    db->r_zero = coil_sleep(0);
    db->r_past = coil_sleep_until(coil_now(&loop) - 1000 * MS);
    db->r_negative = coil_sleep(-5 * MS);
    db->took = mono_ns() - t0;
    db->turns = loop_stats().loop_turns - turns0;
    coil_timer_stop(&guard);
    return 0;
}

static void test_due_sleeps_return_promptly(void **state)
{
    (void)state;
    due_box db = { 1, 1, 1, 0, 0 };
    assert_int_equal(harness_run(&loop, due_main, &db), 0);
    assert_int_equal(db.r_zero, 0);
    assert_int_equal(db.r_past, 0);
    assert_int_equal(db.r_negative, 0);
    assert_true(db.took < 5000 * MS);
    /* each due sleep ends within a turn or two, not after the guard */
    assert_true(db.turns <= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_TEST(test_ten_thousand_in_order),
        LOOP_TEST(test_rearm_moves),
        LOOP_TEST(test_rearm_stop_shuffle),
        LOOP_TEST(test_stop),
        LOOP_TEST(test_rearm_now_alone),
        LOOP_TEST(test_rearm_now_among_others),
        LOOP_TEST(test_rearm_costs_no_syscall),
        LOOP_TEST(test_timeout_ns),
        LOOP_TEST(test_timers_active),
        LOOP_TEST(test_due_sleeps_return_promptly),
    };
    return HARNESS_RUN(tests);
}
