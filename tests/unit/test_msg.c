/* Cross-core messages between loops on their own threads: ping-pong, bursts
 * from several senders, a foreign thread, a loop posting to itself, waking a
 * loop blocked in a long wait, and a flood into a small completion queue.
 *
 * Each loop is initialised on the thread that runs it (an io_uring ring with
 * SINGLE_ISSUER belongs to that thread). cmocka assertions are only made on
 * the main thread: the loop threads record what they saw. A watchdog on the
 * main thread turns a lost wake-up into a failure instead of a hang. */
#include "harness.h"
#include "loop_impl.h" /* coil__eventfd_ring: the watchdog's kick */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define N 100000
#define WATCHDOG_MS 5000
#define MAX_PEERS 4

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- loops on their own threads ---- */

typedef struct peer peer;
struct peer {
    coil_loop loop;
    coil_loop_options opts;
    pthread_t th;
    /* Runs on the loop thread once every peer's loop exists, before it runs. */
    void (*on_start)(peer *p);
    struct group *g;
    int init_err, run_err, exit_err;
    coil_loop_stats stats;   /* taken on the loop thread after the run */
    atomic_bool ran;         /* coil_loop_run returned */
};

/* Set when the watchdog stops the loops: messages still in flight may then
 * run after their peer loop is gone (every loop drains and exits once the
 * group is released), so from then on no handler posts to another loop and
 * the test fails on the watchdog's report rather than crashing. */
static atomic_bool watchdog_fired;

typedef struct group {
    peer p[MAX_PEERS];
    int n;
    pthread_barrier_t ready, go, release;
    atomic_bool abort;
} group;

static void stop_fn(coil_loop *l, void *arg)
{
    (void)arg;
    coil_loop_stop(l);
}

static void *peer_main(void *arg)
{
    peer *p = arg;
    group *g = p->g;
    p->init_err = coil_loop_init(&p->loop, &p->opts);
    pthread_barrier_wait(&g->ready);
    /* The main thread checks every init between the two barriers: nobody may
     * post to a loop that does not exist. */
    pthread_barrier_wait(&g->go);
    if (p->init_err || atomic_load(&g->abort)) {
        atomic_store(&p->ran, true);
        pthread_barrier_wait(&g->release);
        if (!p->init_err)
            p->exit_err = coil_loop_exit(&p->loop);
        return NULL;
    }
    if (p->on_start)
        p->on_start(p);
    coil_loop_ref(&p->loop);
    p->run_err = coil_loop_run(&p->loop);
    coil_loop_unref(&p->loop);
    coil_loop_stats_get(&p->loop, &p->stats);
    atomic_store(&p->ran, true);
    /* Every loop stopped: nobody posts any more, so the loop may go. */
    pthread_barrier_wait(&g->release);
    for (int i = 0; i < 100 && coil_loop_run_once(&p->loop, 0) > 0; i++) {
    }
    p->exit_err = coil_loop_exit(&p->loop);
    return NULL;
}

static void group_init(group *g, int n)
{
    memset(g, 0, sizeof(*g));
    g->n = n;
    for (int i = 0; i < n; i++) {
        coil_loop_options_default(&g->p[i].opts);
        g->p[i].opts.backend = harness_backend();
        g->p[i].g = g;
    }
}

static void group_start(group *g)
{
    atomic_store(&watchdog_fired, false);
    pthread_barrier_init(&g->ready, NULL, (unsigned)g->n + 1);
    pthread_barrier_init(&g->go, NULL, (unsigned)g->n + 1);
    pthread_barrier_init(&g->release, NULL, (unsigned)g->n + 1);
    for (int i = 0; i < g->n; i++)
        assert_int_equal(pthread_create(&g->p[i].th, NULL, peer_main, &g->p[i]), 0);
    pthread_barrier_wait(&g->ready);
    bool bad = false;
    for (int i = 0; i < g->n; i++)
        bad |= g->p[i].init_err != 0;
    atomic_store(&g->abort, bad);
    pthread_barrier_wait(&g->go);
    if (bad) {
        pthread_barrier_wait(&g->release);
        for (int i = 0; i < g->n; i++)
            pthread_join(g->p[i].th, NULL);
        for (int i = 0; i < g->n; i++)
            if (g->p[i].init_err)
                fail_msg("loop %d init: %s", i, strerror(-g->p[i].init_err));
    }
}

/* Waits until every loop's run returned. On timeout, stops them from this
 * (foreign) thread, which rings their eventfd, and reports which were stuck. */
static bool group_wait(group *g, int ms, char *why, size_t whylen)
{
    int64_t until = mono_ns() + (int64_t)ms * MS;
    for (;;) {
        bool all = true;
        for (int i = 0; i < g->n; i++)
            all &= atomic_load(&g->p[i].ran);
        if (all)
            return true;
        if (mono_ns() > until)
            break;
        usleep(1000);
    }
    atomic_store(&watchdog_fired, true);
    size_t off = 0;
    off += (size_t)snprintf(why + off, whylen - off, "still running after %d ms:", ms);
    for (int i = 0; i < g->n; i++) {
        if (!atomic_load(&g->p[i].ran)) {
            if (off < whylen)
                off += (size_t)snprintf(why + off, whylen - off, " loop %d", i);
            coil_post(&g->p[i].loop, stop_fn, NULL);
            /* A post rings only when it finds the inbox empty: after a lost
             * doorbell the inbox stays non-empty and no later post rings, so
             * kick the eventfd directly. */
            coil__eventfd_ring(g->p[i].loop.impl);
        }
    }
    for (;;) {
        bool all = true;
        for (int i = 0; i < g->n; i++)
            all &= atomic_load(&g->p[i].ran);
        if (all)
            break;
        usleep(1000);
    }
    return false;
}

static void group_finish(group *g)
{
    pthread_barrier_wait(&g->release);
    for (int i = 0; i < g->n; i++)
        pthread_join(g->p[i].th, NULL);
    pthread_barrier_destroy(&g->ready);
    pthread_barrier_destroy(&g->go);
    pthread_barrier_destroy(&g->release);
    for (int i = 0; i < g->n; i++) {
        assert_int_equal(g->p[i].run_err, 0);
        assert_int_equal(g->p[i].exit_err, 0);
    }
}

static void group_run(group *g)
{
    char why[256];
    group_start(g);
    bool ok = group_wait(g, WATCHDOG_MS, why, sizeof(why));
    group_finish(g);
    if (!ok)
        fail_msg("%s", why);
}

/* ---- ping-pong ---- */

/* One message in flight each way at a time, so one caller-owned coil_msg per
 * direction is enough: it may be reused once its fn started. Even sequence
 * numbers go through coil_post, odd ones through coil_post_msg. */
static struct {
    peer *a, *b;
    coil_msg to_a, to_b;
    uint32_t a_expect, b_expect;
    uint32_t errors;
} pp;

static void ping_fn(coil_loop *l, void *arg);
static void pong_fn(coil_loop *l, void *arg);

static void send_seq(coil_loop *to, coil_msg *m, coil_msg_fn fn, uint32_t seq)
{
    if (atomic_load(&watchdog_fired))
        return;
    int r;
    if (seq % 2 == 0) {
        r = coil_post(to, fn, (void *)(uintptr_t)seq);
    } else {
        m->fn = fn;
        m->arg = (void *)(uintptr_t)seq;
        r = coil_post_msg(to, m);
    }
    if (r != 0)
        pp.errors++;
}

static void ping_fn(coil_loop *l, void *arg)
{
    uint32_t seq = (uint32_t)(uintptr_t)arg;
    if (l != &pp.b->loop || coil_loop_current() != l || seq != pp.b_expect)
        pp.errors++;
    pp.b_expect = seq + 1;
    send_seq(&pp.a->loop, &pp.to_a, pong_fn, seq);
    /* B is done after its last reply. The reply must still reach A although
     * B stops turning right after posting it. */
    if (seq == N - 1)
        coil_loop_stop(l);
}

static void pong_fn(coil_loop *l, void *arg)
{
    uint32_t seq = (uint32_t)(uintptr_t)arg;
    if (l != &pp.a->loop || seq != pp.a_expect)
        pp.errors++;
    pp.a_expect = seq + 1;
    if (seq + 1 < N)
        send_seq(&pp.b->loop, &pp.to_b, ping_fn, seq + 1);
    else
        coil_loop_stop(l);
}

static void pp_start(peer *p)
{
    /* Posted outside any turn: the eventfd doorbell; every later message goes
     * loop to loop (MSG_RING on io_uring). */
    send_seq(&pp.b->loop, &pp.to_b, ping_fn, 0);
    (void)p;
}

static void test_ping_pong(void **state)
{
    (void)state;
    static group g;
    group_init(&g, 2);
    memset(&pp, 0, sizeof(pp));
    pp.a = &g.p[0];
    pp.b = &g.p[1];
    g.p[0].on_start = pp_start;
    group_run(&g);
    assert_int_equal(pp.errors, 0);
    assert_int_equal(pp.a_expect, N);
    assert_int_equal(pp.b_expect, N);
    assert_int_equal(g.p[0].stats.msgs_received, N);
    assert_int_equal(g.p[1].stats.msgs_received, N);
}

/* ---- bursts from two loops and a foreign thread at once ---- */

enum { SRC_A, SRC_B, SRC_F, NSRC };

typedef struct burst_side {
    peer *self, *other;
    int src;               /* this loop's sender id */
    uint32_t expect[NSRC]; /* next sequence number per sender */
    uint32_t got;
    uint32_t errors;
    bool send_done;
    coil_msg *out;         /* N messages this loop sends with coil_post_msg */
    coil_msg *foreign;     /* N messages the foreign thread sends here */
} burst_side;

static burst_side bs[2];

static void *encode(int src, uint32_t seq)
{
    return (void *)(uintptr_t)(((uint32_t)src << 24) | seq);
}

static void burst_maybe_stop(burst_side *s)
{
    if (s->send_done && s->got == 2 * N)
        coil_loop_stop(&s->self->loop);
}

static void burst_recv(coil_loop *l, void *arg)
{
    burst_side *s = l == &bs[0].self->loop ? &bs[0] : &bs[1];
    uint32_t v = (uint32_t)(uintptr_t)arg;
    uint32_t src = v >> 24, seq = v & 0xffffff;
    if (src >= NSRC || src == (uint32_t)s->src || seq != s->expect[src])
        s->errors++;
    else
        s->expect[src]++;
    s->got++;
    burst_maybe_stop(s);
}

static int burst_sender(void *arg)
{
    burst_side *s = arg;
    for (uint32_t i = 0; i < N && !atomic_load(&watchdog_fired); i++) {
        int r;
        if (i % 2 == 0) {
            r = coil_post(&s->other->loop, burst_recv, encode(s->src, i));
        } else {
            s->out[i].fn = burst_recv;
            s->out[i].arg = encode(s->src, i);
            r = coil_post_msg(&s->other->loop, &s->out[i]);
        }
        if (r != 0)
            s->errors++;
        /* Bursts of 1000, then let the loop turn (and take its messages). */
        if (i % 1000 == 999)
            coil_sleep(0);
    }
    s->send_done = true;
    burst_maybe_stop(s);
    return 0;
}

static void burst_start(peer *p)
{
    burst_side *s = p == bs[0].self ? &bs[0] : &bs[1];
    if (coil_spawn(&p->loop, burst_sender, s, NULL) != 0)
        s->errors++;
}

static void test_bursts(void **state)
{
    (void)state;
    static group g;
    group_init(&g, 2);
    memset(bs, 0, sizeof(bs));
    for (int i = 0; i < 2; i++) {
        bs[i].self = &g.p[i];
        bs[i].other = &g.p[1 - i];
        bs[i].src = i == 0 ? SRC_A : SRC_B;
        bs[i].out = calloc(N, sizeof(coil_msg));
        bs[i].foreign = calloc(N, sizeof(coil_msg));
        assert_non_null(bs[i].out);
        assert_non_null(bs[i].foreign);
        g.p[i].on_start = burst_start;
    }
    char why[256];
    group_start(&g);
    /* This thread owns no loop: a foreign sender, interleaved to both. */
    for (uint32_t i = 0; i < N; i++) {
        for (int k = 0; k < 2; k++) {
            if (i % 2 == 0) {
                assert_int_equal(coil_post(&g.p[k].loop, burst_recv, encode(SRC_F, i)), 0);
            } else {
                bs[k].foreign[i].fn = burst_recv;
                bs[k].foreign[i].arg = encode(SRC_F, i);
                assert_int_equal(coil_post_msg(&g.p[k].loop, &bs[k].foreign[i]), 0);
            }
        }
    }
    bool ok = group_wait(&g, WATCHDOG_MS, why, sizeof(why));
    group_finish(&g);
    if (!ok)
        fail_msg("%s (got %u and %u of %u)", why, bs[0].got, bs[1].got, 2 * N);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(bs[i].errors, 0);
        assert_int_equal(bs[i].got, 2 * N);
        assert_int_equal(bs[i].expect[SRC_F], N);
        assert_int_equal(bs[i].expect[bs[i].other == &g.p[0] ? SRC_A : SRC_B], N);
        assert_int_equal(g.p[i].stats.msgs_received, 2 * N);
        free(bs[i].out);
        free(bs[i].foreign);
    }
}

/* ---- a loop posting to itself ---- */

#define SELF_N 1000

static struct {
    coil_loop loop;
    uint32_t task_expect, chain_expect;
    uint32_t errors;
} self;

static void self_task_msg(coil_loop *l, void *arg)
{
    uint32_t seq = (uint32_t)(uintptr_t)arg;
    if (l != &self.loop || seq != self.task_expect)
        self.errors++;
    self.task_expect = seq + 1;
}

/* Each link posts the next from inside the message: the loop must come back
 * for it although nothing else wakes it (only its keep-alive ref holds it). */
static void self_chain_msg(coil_loop *l, void *arg)
{
    uint32_t seq = (uint32_t)(uintptr_t)arg;
    if (seq != self.chain_expect)
        self.errors++;
    self.chain_expect = seq + 1;
    if (seq + 1 < SELF_N) {
        if (coil_post(l, self_chain_msg, (void *)(uintptr_t)(seq + 1)) != 0)
            self.errors++;
    } else {
        coil_loop_unref(l);
    }
}

static int self_poster(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < SELF_N; i++)
        if (coil_post(&self.loop, self_task_msg, (void *)(uintptr_t)i) != 0)
            self.errors++;
    if (coil_post(&self.loop, self_chain_msg, (void *)(uintptr_t)0) != 0)
        self.errors++;
    return 0;
}

static void test_post_to_self(void **state)
{
    (void)state;
    memset(&self, 0, sizeof(self));
    harness_loop_init(&self.loop, NULL);
    coil_loop_ref(&self.loop);
    assert_int_equal(coil_spawn(&self.loop, self_poster, NULL, NULL), 0);
    int64_t t0 = mono_ns();
    assert_int_equal(coil_loop_run(&self.loop), 0);
    assert_true(mono_ns() - t0 < 5000 * MS);
    assert_int_equal(self.errors, 0);
    assert_int_equal(self.task_expect, SELF_N);
    assert_int_equal(self.chain_expect, SELF_N);
    coil_loop_stats st;
    coil_loop_stats_get(&self.loop, &st);
    assert_int_equal(st.msgs_received, 2 * SELF_N);
    harness_loop_exit(&self.loop);
}

/* ---- waking a loop blocked in a long wait ---- */

static struct {
    peer *target, *sender;
    _Atomic int64_t posted_at, ran_at;
    atomic_int runs;
    int64_t sleep_ms;
    bool stop_sender;   /* the sending loop stops right after posting */
} wk;

static void wake_msg(coil_loop *l, void *arg)
{
    (void)arg;
    atomic_store(&wk.ran_at, mono_ns());
    atomic_fetch_add(&wk.runs, 1);
    coil_loop_stop(l);
}

static int wake_sender_task(void *arg)
{
    peer *p = arg;
    /* Long enough for the target to be asleep in the kernel. */
    coil_sleep(wk.sleep_ms * MS);
    atomic_store(&wk.posted_at, mono_ns());
    coil_post(&wk.target->loop, wake_msg, NULL);
    if (wk.stop_sender)
        coil_loop_stop(&p->loop);
    return 0;
}

static void wake_sender_start(peer *p)
{
    coil_spawn(&p->loop, wake_sender_task, p, NULL);
}

static void reset_wake(void)
{
    atomic_store(&wk.posted_at, 0);
    atomic_store(&wk.ran_at, 0);
    atomic_store(&wk.runs, 0);
    wk.sleep_ms = 50;
}

static void check_wake(const char *what)
{
    assert_int_equal(atomic_load(&wk.runs), 1);
    int64_t delay = atomic_load(&wk.ran_at) - atomic_load(&wk.posted_at);
    if (delay < 0 || delay > 5000 * MS)
        fail_msg("%s: message ran %lld ms after it was posted", what, (long long)(delay / MS));
}

static void test_wake_from_foreign_thread(void **state)
{
    (void)state;
    static group g;
    group_init(&g, 1);
    reset_wake();
    wk.target = &g.p[0];
    group_start(&g);
    usleep(50 * 1000); /* the target is blocked in its wait by now */
    atomic_store(&wk.posted_at, mono_ns());
    assert_int_equal(coil_post(&g.p[0].loop, wake_msg, NULL), 0);
    char why[256];
    bool ok = group_wait(&g, WATCHDOG_MS, why, sizeof(why));
    group_finish(&g);
    if (!ok)
        fail_msg("%s", why);
    check_wake("foreign thread");
    assert_int_equal(g.p[0].stats.msgs_received, 1);
}

static void wake_between_loops(bool stop_sender)
{
    static group g;
    group_init(&g, 2);
    reset_wake();
    wk.target = &g.p[0];
    wk.sender = &g.p[1];
    wk.stop_sender = stop_sender;
    g.p[1].on_start = wake_sender_start;
    group_start(&g);
    char why[256];
    if (!stop_sender) {
        /* Wait for the target alone, then release the sender. */
        int64_t until = mono_ns() + WATCHDOG_MS * MS;
        while (!atomic_load(&g.p[0].ran) && mono_ns() < until)
            usleep(1000);
        coil_post(&g.p[1].loop, stop_fn, NULL);
    }
    bool ok = group_wait(&g, WATCHDOG_MS, why, sizeof(why));
    group_finish(&g);
    if (!ok || atomic_load(&wk.runs) != 1)
        fail_msg("a message posted by a loop%s did not wake the blocked target: %s",
                 stop_sender ? " that stopped right after posting" : "", ok ? "" : why);
    check_wake(stop_sender ? "loop sender that stopped" : "loop sender");
    assert_int_equal(g.p[0].stats.msgs_received, 1);
}

static void test_wake_from_loop(void **state)
{
    (void)state;
    wake_between_loops(false);
}

/* A loop that posts and then stops (its last turn) must not strand the
 * message: the target is asleep and nothing else will wake it. */
static void test_wake_from_loop_that_stops(void **state)
{
    (void)state;
    wake_between_loops(true);
}

/* ---- a flood into a completion queue of 16 entries ----
 *
 * A post rings only when it finds the inbox empty, so a plain burst coalesces
 * into a handful of doorbells. The lockstep mode makes every post ring while
 * the sender's doorbells reach the kernel in batches (as long as MSG_RINGs wait
 * in the sender's submission queue for its next submit), overflowing the
 * target's 16 completion entries; the count is printed. On kernels that queue
 * an overflowing MSG_RING completion instead of failing it, the -EOVERFLOW
 * eventfd fallback is not reached; either way every message must arrive. */

#define FLOOD 30000
#define LOCKSTEP 2000
#define MAX_SENDERS 2

static struct {
    peer *target;
    int senders;
    bool lockstep;
    uint32_t per_sender;
    atomic_uint got;
    uint32_t expect[MAX_SENDERS];
    uint32_t errors;
} fl;

static void flood_recv(coil_loop *l, void *arg)
{
    uint32_t v = (uint32_t)(uintptr_t)arg;
    uint32_t src = v >> 24, seq = v & 0xffffff;
    if (src >= (uint32_t)fl.senders || seq != fl.expect[src])
        fl.errors++;
    else
        fl.expect[src]++;
    if (atomic_fetch_add(&fl.got, 1) + 1 == fl.senders * fl.per_sender + fl.lockstep)
        coil_loop_stop(l);
}

static int flood_sender(void *arg)
{
    int src = (int)(intptr_t)arg;
    for (uint32_t i = 0; i < fl.per_sender; i++) {
        coil_post(&fl.target->loop, flood_recv, encode(src, i));
        /* Lockstep: wait, without letting this loop turn, until the target
         * took the message. Every post then finds the inbox empty and rings,
         * and the doorbells pile up in this loop's submission queue until it
         * fills and goes to the kernel in one batch of MSG_RINGs. */
        if (fl.lockstep) {
            int64_t until = mono_ns() + WATCHDOG_MS * MS;
            while (atomic_load(&fl.got) <= i && mono_ns() < until) {
            }
            /* Stuck (the watchdog will report it): stop spinning, or this
             * task would hold its loop for a watchdog period per message. */
            if (atomic_load(&fl.got) <= i)
                return 0;
        }
    }
    if (fl.lockstep) {
        /* The target stopped spinning and sleeps: after all that overflow a
         * doorbell must still wake it. */
        coil_sleep(20 * MS);
        coil_post(&fl.target->loop, flood_recv, encode(src, fl.per_sender));
    }
    return 0;
}

static void flood_sender_start(peer *p)
{
    int src = (int)(p - fl.target) - 1;
    coil_spawn(&p->loop, flood_sender, (void *)(intptr_t)src, NULL);
}

/* A target that yields in a loop empties its inbox every turn, without
 * waiting for a doorbell. */
static int flood_spinner(void *arg)
{
    (void)arg;
    while (atomic_load(&fl.got) < fl.per_sender)
        if (coil_yield() != 0)
            break;
    return 0;
}

static void flood_target_start(peer *p)
{
    coil_spawn(&p->loop, flood_spinner, NULL, NULL);
}

static void flood(unsigned target_flags, bool lockstep)
{
    static group g;
    memset(&fl, 0, sizeof(fl));
    fl.lockstep = lockstep;
    fl.senders = lockstep ? 1 : MAX_SENDERS;
    fl.per_sender = lockstep ? LOCKSTEP : FLOOD;
    group_init(&g, 1 + fl.senders);
    fl.target = &g.p[0];
    g.p[0].opts.ring_entries = 4; /* CQ of 16 */
    g.p[0].opts.flags = target_flags;
    if (lockstep)
        g.p[0].on_start = flood_target_start;
    for (int i = 1; i <= fl.senders; i++)
        g.p[i].on_start = flood_sender_start;
    group_start(&g);
    int64_t until = mono_ns() + WATCHDOG_MS * MS;
    while (!atomic_load(&g.p[0].ran) && mono_ns() < until)
        usleep(1000);
    for (int i = 1; i <= fl.senders; i++)
        coil_post(&g.p[i].loop, stop_fn, NULL);
    char why[256];
    bool ok = group_wait(&g, WATCHDOG_MS, why, sizeof(why));
    group_finish(&g);
    print_message("flood (%s, %s target %s): %u messages, %llu CQ overflows seen by the target\n",
                  lockstep ? "lockstep" : "burst", harness_backend(),
                  target_flags ? "without taskrun flags" : "with taskrun flags",
                  atomic_load(&fl.got), (unsigned long long)g.p[0].stats.cq_overflows);
    uint32_t total = (uint32_t)fl.senders * fl.per_sender + lockstep;
    if (!ok)
        fail_msg("%s (target got %u of %u)", why, atomic_load(&fl.got), total);
    assert_int_equal(fl.errors, 0);
    assert_int_equal(atomic_load(&fl.got), total);
    assert_int_equal(g.p[0].stats.msgs_received, total);
}

static void test_flood_small_cq(void **state)
{
    (void)state;
    /* On epoll every doorbell is the eventfd and ring_entries means nothing:
     * a plain flood, which must deliver every message all the same. */
    flood(0, false);
    flood(0, true);
    flood(COIL_LOOP_NO_TASKRUN_FLAGS, false);
    flood(COIL_LOOP_NO_TASKRUN_FLAGS, true);
}

/* ---- argument checks ---- */

static void test_bad_args(void **state)
{
    (void)state;
    coil_loop loop;
    harness_loop_init(&loop, NULL);
    assert_int_equal(coil_post(&loop, NULL, NULL), -EINVAL);
    coil_msg m = { .fn = NULL };
    assert_int_equal(coil_post_msg(&loop, &m), -EINVAL);
    assert_int_equal(coil_post_msg(&loop, NULL), -EINVAL);
    assert_int_equal(coil_loop_run_once(&loop, 0), 0);
    coil_loop_stats st;
    coil_loop_stats_get(&loop, &st);
    assert_int_equal(st.msgs_received, 0);
    harness_loop_exit(&loop);
}

int main(void)
{
    setenv("COIL_QUIET", "1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_post_to_self),
        cmocka_unit_test(test_wake_from_foreign_thread),
        cmocka_unit_test(test_wake_from_loop),
        cmocka_unit_test(test_wake_from_loop_that_stops),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_bursts),
        cmocka_unit_test(test_flood_small_cq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
