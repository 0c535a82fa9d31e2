/* Tasks: spawn, join, yield, sleep, cancel, interrupt, events. */
#include "loop_fixture.h"

static int add_one(void *arg)
{
    return *(int *)arg + 1;
}

static int spawn_join_main(void *arg)
{
    (void)arg;
    int v = 41, r = 0;
    coil_task *t;
    assert_int_equal(coil_spawn(&loop, add_one, &v, &t), 0);
    assert_int_equal(coil_join(t, &r), 0);
    assert_int_equal(r, 42);
    assert_int_equal(coil_join(coil_self(), NULL), -EINVAL);
    return 7;
}

static void test_spawn_join(void **state)
{
    (void)state;
    assert_int_equal(harness_run(&loop, spawn_join_main, NULL), 7);
}

static void test_outside_task(void **state)
{
    (void)state;
    assert_int_equal(coil_yield(), -EPERM);
    assert_int_equal(coil_sleep(1), -EPERM);
    assert_null(coil_self());
}

typedef struct order_log {
    int seq[16];
    int n;
} order_log;

static order_log olog;

static int yielder(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < 3; i++) {
        olog.seq[olog.n++] = id;
        coil_yield();
    }
    return 0;
}

static int yield_main(void *arg)
{
    (void)arg;
    coil_task *a, *b;
    olog.n = 0;
    coil_spawn(&loop, yielder, (void *)1, &a);
    coil_spawn(&loop, yielder, (void *)2, &b);
    coil_join(a, NULL);
    coil_join(b, NULL);
    return 0;
}

static void test_yield_interleaves(void **state)
{
    (void)state;
    harness_run(&loop, yield_main, NULL);
    int want[] = { 1, 2, 1, 2, 1, 2 };
    assert_int_equal(olog.n, 6);
    assert_memory_equal(olog.seq, want, sizeof(want));
}

/* Thousands of tasks passing a token around a ring of events. */
#define RING 2000
#define ROUNDS 5
static coil_event ring_ev[RING];
static int ring_hits[RING];

static int ring_member(void *arg)
{
    int i = (int)(intptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        if (coil_event_wait(&ring_ev[i], COIL_NO_DEADLINE) != 0)
            return -1;
        coil_event_reset(&ring_ev[i]);
        ring_hits[i]++;
        coil_event_set(&ring_ev[(i + 1) % RING]);
    }
    return 0;
}

static int ring_main(void *arg)
{
    (void)arg;
    static coil_task *t[RING];
    for (int i = 0; i < RING; i++) {
        coil_event_init(&ring_ev[i]);
        ring_hits[i] = 0;
        assert_int_equal(coil_spawn(&loop, ring_member, (void *)(intptr_t)i, &t[i]), 0);
    }
    coil_event_set(&ring_ev[0]);
    int bad = 0;
    for (int i = 0; i < RING; i++) {
        int r;
        assert_int_equal(coil_join(t[i], &r), 0);
        bad += r != 0;
    }
    return bad;
}

static void test_thousands_ping_pong(void **state)
{
    (void)state;
    assert_int_equal(harness_run(&loop, ring_main, NULL), 0);
    for (int i = 0; i < RING; i++)
        assert_int_equal(ring_hits[i], ROUNDS);
    /* Stacks came back to the pool; beyond its hot limit their pages went. */
    assert_int_equal(loop_stats().stacks_in_use, 0);
}

static int sleeper(void *arg)
{
    int ms = (int)(intptr_t)arg;
    int64_t t0 = coil_now(&loop);
    assert_int_equal(coil_sleep(ms * MS), 0);
    assert_true(coil_now(&loop) - t0 >= ms * MS);
    olog.seq[olog.n++] = ms;
    return 0;
}

static int sleep_main(void *arg)
{
    (void)arg;
    olog.n = 0;
    int order[] = { 30, 10, 20, 0, 5 };
    coil_task *t[5];
    for (int i = 0; i < 5; i++)
        coil_spawn(&loop, sleeper, (void *)(intptr_t)order[i], &t[i]);
    for (int i = 0; i < 5; i++)
        coil_join(t[i], NULL);
    return 0;
}

static void test_sleep_order(void **state)
{
    (void)state;
    harness_run(&loop, sleep_main, NULL);
    int want[] = { 0, 5, 10, 20, 30 };
    assert_int_equal(olog.n, 5);
    assert_memory_equal(olog.seq, want, sizeof(want));
}

static int long_sleeper(void *arg)
{
    int *out = arg;
    *out = coil_sleep(10000 * MS);
    /* Cancellation is sticky. */
    out[1] = coil_yield();
    out[2] = coil_sleep(1);
    return 0;
}

static int cancel_main(void *arg)
{
    (void)arg;
    int res[3] = { 1, 1, 1 };
    coil_task *t;
    coil_spawn(&loop, long_sleeper, res, &t);
    coil_sleep(5 * MS);
    int64_t t0 = coil_now(&loop);
    coil_cancel(t);
    assert_int_equal(coil_join(t, NULL), 0);
    assert_true(coil_now(&loop) - t0 < 5000 * MS);
    assert_int_equal(res[0], -ECANCELED);
    assert_int_equal(res[1], -ECANCELED);
    assert_int_equal(res[2], -ECANCELED);
    return 0;
}

static void test_cancel_sleep(void **state)
{
    (void)state;
    harness_run(&loop, cancel_main, NULL);
}

static int interrupted(void *arg)
{
    int *out = arg;
    out[0] = coil_sleep(10000 * MS);
    out[1] = coil_sleep(1 * MS); /* an interrupt is not sticky */
    return 0;
}

static int interrupt_main(void *arg)
{
    (void)arg;
    int res[2] = { 1, 1 };
    coil_task *t;
    coil_spawn(&loop, interrupted, res, &t);
    coil_sleep(2 * MS);
    coil_interrupt(t, -ETIMEDOUT);
    coil_join(t, NULL);
    assert_int_equal(res[0], -ETIMEDOUT);
    assert_int_equal(res[1], 0);
    return 0;
}

static void test_interrupt(void **state)
{
    (void)state;
    harness_run(&loop, interrupt_main, NULL);
}

static coil_event ev;

static int ev_waiter(void *arg)
{
    (void)arg;
    return coil_event_wait(&ev, coil_deadline_in(&loop, 5000 * MS));
}

static int event_main(void *arg)
{
    (void)arg;
    coil_event_init(&ev);
    assert_int_equal(coil_event_wait(&ev, coil_deadline_in(&loop, 5 * MS)), -ETIMEDOUT);
    coil_task *a, *b;
    coil_spawn(&loop, ev_waiter, NULL, &a);
    coil_spawn(&loop, ev_waiter, NULL, &b);
    coil_yield();
    coil_event_notify_one(&ev);
    int ra = 1, rb = 1;
    coil_join(a, &ra);
    assert_int_equal(ra, 0);
    coil_cancel(b);
    coil_join(b, &rb);
    assert_int_equal(rb, -ECANCELED);
    coil_event_set(&ev);
    assert_int_equal(coil_event_wait(&ev, COIL_NO_DEADLINE), 0);
    return 0;
}

static void test_event(void **state)
{
    (void)state;
    harness_run(&loop, event_main, NULL);
}

static int forever(void *arg)
{
    (void)arg;
    return coil_sleep(100000 * MS);
}

static int join_cancel_main(void *arg)
{
    coil_task **t = arg;
    return coil_join(*t, NULL);
}

static void test_exit_busy_and_join_cancel(void **state)
{
    (void)state;
    coil_task *t, *j;
    assert_int_equal(coil_spawn(&loop, forever, NULL, &t), 0);
    assert_int_equal(coil_spawn(&loop, join_cancel_main, &t, &j), 0);
    coil_loop_run_once(&loop, 0);
    assert_int_equal(coil_loop_exit(&loop), -EBUSY);
    /* the joiner is cancelled: its join returns, t stays joinable */
    coil_cancel(j);
    coil_loop_run_once(&loop, 0);
    coil_detach(j);
    coil_cancel(t);
    coil_detach(t);
    for (int i = 0; i < 10 && coil_loop_run_once(&loop, 0) > 0; i++) {
    }
    assert_int_equal(loop_stats().tasks_live, 0);
}

/* A parent cancelled while its child still uses the parent's memory: the
 * shielded join waits for the child to finish all the same. */
typedef struct shield_state {
    coil_task *child;
    int child_steps;
    bool parent_saw_cancel;
    int join_result;
} shield_state;

static int slow_child(void *arg)
{
    shield_state *s = arg;
    /* Cancelled along with its parent, it still takes three turns to wind
     * down, touching the parent's stack-held state each time. */
    coil_sleep(100000 * MS);
    for (int i = 0; i < 3; i++) {
        coil_yield();
        s->child_steps++;
    }
    return 5;
}

static int shielded_parent(void *arg)
{
    shield_state *s = arg;
    assert_int_equal(coil_spawn(&loop, slow_child, s, &s->child), 0);
    s->parent_saw_cancel = coil_sleep(100000 * MS) == -ECANCELED;
    coil_cancel(s->child);
    int r = 0;
    s->join_result = coil_join_shielded(s->child, &r);
    assert_int_equal(s->child_steps, 3);
    assert_int_equal(r, 5);
    return 0;
}

static void test_join_shielded(void **state)
{
    (void)state;
    shield_state s = { 0 };
    coil_task *p;
    assert_int_equal(coil_spawn(&loop, shielded_parent, &s, &p), 0);
    coil_loop_run_once(&loop, 0);
    coil_loop_run_once(&loop, 0);
    coil_cancel(p);
    for (int i = 0; i < 20 && coil_loop_run_once(&loop, 0) > 0; i++) {
    }
    assert_true(s.parent_saw_cancel);
    assert_int_equal(s.join_result, 0);
    assert_int_equal(s.child_steps, 3);
    coil_detach(p);
    assert_int_equal(loop_stats().tasks_live, 0);
}

static void test_run_once_timeout(void **state)
{
    (void)state;
    coil_loop_ref(&loop);
    int64_t t0 = coil_now(&loop);
    assert_int_equal(coil_loop_run_once(&loop, 20 * MS), 1);
    int64_t waited = coil_now(&loop) - t0;
    coil_loop_unref(&loop);
    assert_true(waited >= 15 * MS);
    assert_int_equal(coil_loop_run_once(&loop, 0), 0);
    assert_int_equal(coil_loop_timeout_ns(&loop), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_TEST(test_spawn_join),
        LOOP_TEST(test_outside_task),
        LOOP_TEST(test_yield_interleaves),
        LOOP_TEST(test_thousands_ping_pong),
        LOOP_TEST(test_sleep_order),
        LOOP_TEST(test_cancel_sleep),
        LOOP_TEST(test_interrupt),
        LOOP_TEST(test_event),
        LOOP_TEST(test_exit_busy_and_join_cancel),
        LOOP_TEST(test_run_once_timeout),
        LOOP_TEST(test_join_shielded),
    };
    return HARNESS_RUN(tests);
}
