/* coil_rt: two pinned cores each serving one SO_REUSEPORT listener on a shared
 * port, cross-core messages, stopping from the main thread, signals (in a
 * forked child, so this process's signal mask stays as it was), and bad CPU
 * lists.
 *
 * The callbacks run on the cores' threads, where cmocka must not be used:
 * they record what they saw and the main thread asserts after coil_rt_wait(). */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NCORES 2
#define CLIENTS 64
#define MAX_CONNS 128
#define WATCHDOG_MS 5000

static const int cpus[NCORES] = { 0, 1 };

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool wait_until(atomic_int *v, int want, int ms)
{
    int64_t until = mono_ns() + (int64_t)ms * MS;
    while (atomic_load(v) < want) {
        if (mono_ns() > until)
            return false;
        usleep(1000);
    }
    return true;
}

/* ---- two cores serving one port ---- */

typedef struct conn {
    coil_sock s;
    struct core_state *core;
    int slot;
} conn;

typedef struct core_state {
    coil_loop *loop;
    unsigned index;
    coil_sock lsn;
    coil_task *lsn_task;
    conn *conns[MAX_CONNS];   /* live connections, so on_stop can cancel them */
    coil_task *conn_tasks[MAX_CONNS];
    int cpu_seen;             /* sched_getcpu() in on_start */
    int affinity_count;       /* CPUs in the thread's affinity mask */
    int accepted;
    int errors;
    int start_calls, stop_calls;
    int hop_cpu;              /* sched_getcpu() in the cross-core message */
    coil_loop *current_in_start; /* coil_loop_current() in on_start */
} core_state;

static struct {
    coil_rt *_Atomic rt;
    core_state core[NCORES];
    atomic_int port;          /* core 0's listener port, once bound */
    atomic_int listening;
    atomic_int hops_done;
    atomic_int stop_calls;
} srv;

static int echo_task(void *arg)
{
    conn *c = arg;
    core_state *cs = c->core;
    char buf[256];
    for (;;) {
        ssize_t n = coil_recv(&c->s, buf, sizeof(buf), COIL_NO_DEADLINE);
        if (n <= 0)
            break;
        if (coil_send(&c->s, buf, (size_t)n, COIL_NO_DEADLINE) != n)
            break;
    }
    coil_close(&c->s);
    cs->conns[c->slot] = NULL;
    cs->conn_tasks[c->slot] = NULL;
    free(c);
    return 0;
}

static int listener_task(void *arg)
{
    core_state *cs = arg;
    if (cs->index != 0) {
        /* Core 0 picks the port; the cores started together, so wait for it
         * here rather than block the core's thread in on_start. */
        int64_t until = coil_now(cs->loop) + WATCHDOG_MS * MS;
        while (atomic_load(&srv.port) == 0) {
            if (coil_now(cs->loop) > until || coil_sleep(1 * MS) != 0) {
                cs->errors++;
                return -1;
            }
        }
    }
    int err = coil_tcp_listen_host(cs->loop, &cs->lsn, "127.0.0.1",
                                   (uint16_t)atomic_load(&srv.port), 128, COIL_LISTEN_REUSEPORT);
    if (err < 0) {
        cs->errors++;
        return err;
    }
    if (cs->index == 0)
        atomic_store(&srv.port, coil_sock_port(&cs->lsn));
    atomic_fetch_add(&srv.listening, 1);
    for (;;) {
        conn *c = malloc(sizeof(*c));
        if (!c) {
            cs->errors++;
            break;
        }
        err = coil_accept(&cs->lsn, &c->s, NULL, COIL_NO_DEADLINE);
        if (err < 0) {
            free(c);
            if (err != -ECANCELED)
                cs->errors++;
            break;
        }
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++)
            if (!cs->conns[i])
                slot = i;
        c->core = cs;
        c->slot = slot;
        coil_task *t;
        if (slot < 0 || coil_spawn(cs->loop, echo_task, c, &t) != 0) {
            cs->errors++;
            coil_close(&c->s);
            free(c);
            continue;
        }
        /* The handle stays valid while the task lives; the task clears its
         * slot before it returns. */
        coil_detach(t);
        cs->conns[slot] = c;
        cs->conn_tasks[slot] = t;
        cs->accepted++;
    }
    coil_close(&cs->lsn);
    return 0;
}

static int srv_on_start(coil_loop *loop, unsigned core, void *data)
{
    (void)data;
    core_state *cs = &srv.core[core];
    cs->loop = loop;
    cs->index = core;
    cs->start_calls++;
    cs->cpu_seen = sched_getcpu();
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cs->affinity_count = CPU_COUNT(&set);
    cs->current_in_start = coil_loop_current();
    return coil_spawn(loop, listener_task, cs, &cs->lsn_task);
}

static void srv_on_stop(coil_loop *loop, unsigned core, void *data)
{
    (void)data;
    core_state *cs = &srv.core[core];
    cs->stop_calls++;
    atomic_fetch_add(&srv.stop_calls, 1);
    if (cs->loop != loop)
        cs->errors++;
    /* The tasks close their sockets on the way out; the runtime runs the loop
     * until they are gone. */
    coil_cancel(cs->lsn_task);
    coil_detach(cs->lsn_task);
    cs->lsn_task = NULL;
    for (int i = 0; i < MAX_CONNS; i++)
        if (cs->conn_tasks[i])
            coil_cancel(cs->conn_tasks[i]);
}

/* Core 0 -> core 1 -> core 0, each hop posted from inside a loop. */
static void hop_back(coil_loop *loop, void *arg)
{
    (void)arg;
    if (loop != coil_rt_loop(atomic_load(&srv.rt), 0))
        srv.core[0].errors++;
    atomic_fetch_add(&srv.hops_done, 1);
}

static void hop_to_1(coil_loop *loop, void *arg)
{
    (void)arg;
    coil_rt *rt = atomic_load(&srv.rt);
    srv.core[1].hop_cpu = sched_getcpu();
    if (loop != coil_rt_loop(rt, 1) || coil_post(coil_rt_loop(rt, 0), hop_back, NULL) != 0)
        srv.core[1].errors++;
}

static void hop_to_0(coil_loop *loop, void *arg)
{
    (void)arg;
    coil_rt *rt = atomic_load(&srv.rt);
    srv.core[0].hop_cpu = sched_getcpu();
    if (loop != coil_rt_loop(rt, 0) || coil_post(coil_rt_loop(rt, 1), hop_to_1, NULL) != 0)
        srv.core[0].errors++;
}

static void echo_once(int port, int k)
{
    int fd = harness_client(port);
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char out[32], in[32];
    int len = snprintf(out, sizeof(out), "hello %d", k);
    assert_int_equal(send(fd, out, (size_t)len, MSG_NOSIGNAL), len);
    int got = 0;
    while (got < len) {
        ssize_t n = recv(fd, in + got, (size_t)(len - got), 0);
        if (n <= 0)
            fail_msg("echo %d: recv returned %zd (%s)", k, n, n < 0 ? strerror(errno) : "EOF");
        got += (int)n;
    }
    assert_memory_equal(in, out, (size_t)len);
    close(fd);
}

static void test_two_cores_echo(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof(srv));
    coil_rt_options o = { 0 };
    o.cpus = cpus;
    o.ncpus = NCORES;
    coil_loop_options_default(&o.loop);
    o.loop.backend = harness_backend();
    o.on_start = srv_on_start;
    o.on_stop = srv_on_stop;
    coil_rt *rt = NULL;
    assert_int_equal(coil_rt_start(&rt, &o), 0);
    assert_non_null(rt);
    atomic_store(&srv.rt, rt);
    assert_int_equal(coil_rt_cores(rt), NCORES);
    for (unsigned i = 0; i < NCORES; i++) {
        assert_int_equal(coil_rt_cpu(rt, i), cpus[i]);
        assert_ptr_equal(coil_rt_loop(rt, i), srv.core[i].loop);
    }
    assert_null(coil_rt_loop(rt, NCORES));
    assert_int_equal(coil_rt_cpu(rt, NCORES), -EINVAL);

    bool listening = wait_until(&srv.listening, NCORES, WATCHDOG_MS);
    if (listening) {
        int port = atomic_load(&srv.port);
        for (int k = 0; k < CLIENTS; k++)
            echo_once(port, k);
    }
    /* From this thread (no loop): to core 0, which forwards to core 1. */
    assert_int_equal(coil_post(coil_rt_loop(rt, 0), hop_to_0, NULL), 0);
    bool hopped = wait_until(&srv.hops_done, 1, WATCHDOG_MS);

    coil_rt_stop(rt);
    coil_rt_stop(rt); /* idempotent */
    assert_int_equal(coil_rt_wait(rt), 0);

    assert_true(listening);
    assert_true(hopped);
    assert_int_equal(atomic_load(&srv.stop_calls), NCORES);
    int total = 0;
    for (int i = 0; i < NCORES; i++) {
        core_state *cs = &srv.core[i];
        assert_int_equal(cs->errors, 0);
        assert_int_equal(cs->start_calls, 1);
        assert_int_equal(cs->stop_calls, 1);
        /* pinned: the thread runs on its CPU and may run nowhere else */
        assert_int_equal(cs->cpu_seen, cpus[i]);
        assert_int_equal(cs->affinity_count, 1);
        assert_int_equal(cs->hop_cpu, cpus[i]);
        /* SO_REUSEPORT spreads 64 connections over both listeners; all on one
         * would happen with probability 2^-63. */
        assert_true(cs->accepted > 0);
        total += cs->accepted;
    }
    assert_int_equal(total, CLIENTS);
    /* loop.h: coil_loop_current() is "the loop whose task is running on this
     * thread, or whose owner this thread is"; on_start runs on the owner. */
    for (int i = 0; i < NCORES; i++)
        if (srv.core[i].current_in_start != srv.core[i].loop)
            fail_msg("core %d: coil_loop_current() in on_start returned %p, not its loop %p", i,
                     (void *)srv.core[i].current_in_start, (void *)srv.core[i].loop);
}

/* ---- signals, in a child process ---- */

static atomic_int sig_calls[NCORES];
static atomic_int sig_last[NCORES];

static void on_signal(coil_loop *loop, unsigned core, int signo, void *data)
{
    (void)loop;
    (void)data;
    atomic_store(&sig_last[core], signo);
    atomic_fetch_add(&sig_calls[core], 1);
}

/* Exit codes: 0 passed; otherwise the step that failed. */
static int child_signals(bool with_handler)
{
    coil_rt_options o = { 0 };
    o.cpus = cpus;
    o.ncpus = NCORES;
    coil_loop_options_default(&o.loop);
    o.loop.backend = harness_backend();
    o.handle_signals = true;
    if (with_handler)
        o.on_signal = on_signal;
    coil_rt *rt;
    if (coil_rt_start(&rt, &o) != 0)
        return 10;
    /* A stuck runtime must not hang the test: SIGALRM is not taken by it. */
    alarm(10);
    if (!with_handler) {
        /* SIGHUP alone does not stop a runtime without on_signal; SIGTERM does. */
        kill(getpid(), SIGHUP);
        kill(getpid(), SIGTERM);
        return coil_rt_wait(rt) == 0 ? 0 : 11;
    }
    kill(getpid(), SIGTERM);
    for (int c = 0; c < NCORES; c++)
        if (!wait_until(&sig_calls[c], 1, WATCHDOG_MS))
            return 20 + c;
    for (int c = 0; c < NCORES; c++)
        if (atomic_load(&sig_last[c]) != SIGTERM)
            return 30 + c;
    /* With on_signal the runtime keeps running: the handler decides. */
    kill(getpid(), SIGHUP);
    for (int c = 0; c < NCORES; c++)
        if (!wait_until(&sig_calls[c], 2, WATCHDOG_MS))
            return 40 + c;
    for (int c = 0; c < NCORES; c++)
        if (atomic_load(&sig_last[c]) != SIGHUP)
            return 50 + c;
    coil_rt_stop(rt);
    if (coil_rt_wait(rt) != 0)
        return 60;
    /* The runtime gave this thread its signal mask back. */
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    if (sigismember(&now, SIGTERM) || sigismember(&now, SIGINT) || sigismember(&now, SIGHUP))
        return 61;
    for (int c = 0; c < NCORES; c++)
        if (atomic_load(&sig_calls[c]) != 2)
            return 70 + c;
    return 0;
}

static void run_child(bool with_handler)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_signals(with_handler));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("child killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child failed at step %d", WEXITSTATUS(status));
}

static void test_signals_reach_every_core(void **state)
{
    (void)state;
    run_child(true);
}

static void test_sigterm_stops_without_handler(void **state)
{
    (void)state;
    run_child(false);
}

/* ---- bad CPU lists and failing starts ---- */

static atomic_int bad_start_calls, bad_stop_calls;

static int count_start(coil_loop *loop, unsigned core, void *data)
{
    (void)loop;
    (void)core;
    (void)data;
    atomic_fetch_add(&bad_start_calls, 1);
    return 0;
}

static void count_stop(coil_loop *loop, unsigned core, void *data)
{
    (void)loop;
    (void)core;
    (void)data;
    atomic_fetch_add(&bad_stop_calls, 1);
}

static void test_bad_cpu_list(void **state)
{
    (void)state;
    coil_rt_options o = { 0 };
    coil_loop_options_default(&o.loop);
    o.loop.backend = harness_backend();
    o.on_start = count_start;
    o.on_stop = count_stop;
    coil_rt *rt = (coil_rt *)(uintptr_t)1;

    static const int huge[] = { 9999 };
    o.cpus = huge;
    o.ncpus = 1;
    assert_int_equal(coil_rt_start(&rt, &o), -EINVAL);
    static const int negative[] = { 0, -1 };
    o.cpus = negative;
    o.ncpus = 2;
    assert_int_equal(coil_rt_start(&rt, &o), -EINVAL);
    o.cpus = cpus;
    o.ncpus = 0;
    assert_int_equal(coil_rt_start(&rt, &o), -EINVAL);
    assert_ptr_equal(rt, (coil_rt *)(uintptr_t)1);
    assert_int_equal(atomic_load(&bad_start_calls), 0);

    /* In range but absent from the machine: pinning fails on core 1's thread
     * after core 0 may already have made its loop. */
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    int absent = -1;
    for (int c = CPU_SETSIZE - 1; c >= 0 && absent < 0; c--)
        if (!CPU_ISSET(c, &set))
            absent = c;
    static int mixed[2];
    mixed[0] = 0;
    mixed[1] = absent;
    o.cpus = mixed;
    o.ncpus = 2;
    int fds = harness_fd_count();
    assert_int_equal(coil_rt_start(&rt, &o), -EINVAL);
    assert_ptr_equal(rt, (coil_rt *)(uintptr_t)1);
    assert_int_equal(atomic_load(&bad_start_calls), 0);
    /* on_stop closes what on_start opened: with no on_start, no on_stop. */
    assert_int_equal(atomic_load(&bad_stop_calls), 0);
    assert_int_equal(harness_fd_count(), fds);
}

static int fail_on_core_1(coil_loop *loop, unsigned core, void *data)
{
    (void)loop;
    (void)data;
    if (core == 1)
        return -EADDRINUSE;
    atomic_fetch_add(&bad_start_calls, 1);
    return 0;
}

static void test_on_start_failure(void **state)
{
    (void)state;
    atomic_store(&bad_start_calls, 0);
    atomic_store(&bad_stop_calls, 0);
    coil_rt_options o = { 0 };
    o.cpus = cpus;
    o.ncpus = NCORES;
    coil_loop_options_default(&o.loop);
    o.loop.backend = harness_backend();
    o.on_start = fail_on_core_1;
    o.on_stop = count_stop;
    coil_rt *rt = NULL;
    int fds = harness_fd_count();
    assert_int_equal(coil_rt_start(&rt, &o), -EADDRINUSE);
    assert_null(rt);
    /* Core 0 may see core 1's failure before its own on_start and skip it;
     * either way on_stop runs exactly where on_start succeeded. */
    assert_int_equal(atomic_load(&bad_stop_calls), atomic_load(&bad_start_calls));
    assert_int_equal(harness_fd_count(), fds);
}

int main(void)
{
    setenv("COIL_QUIET", "1", 0);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0 || !CPU_ISSET(0, &set) ||
        !CPU_ISSET(1, &set)) {
        printf("test_rt: needs CPUs 0 and 1 in the affinity mask (has %d CPUs); skipped\n",
               CPU_COUNT(&set));
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_cpu_list),
        cmocka_unit_test(test_on_start_failure),
        cmocka_unit_test(test_two_cores_echo),
        cmocka_unit_test(test_signals_reach_every_core),
        cmocka_unit_test(test_sigterm_stops_without_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
