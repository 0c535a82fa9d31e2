/* Backend choice: io_uring forbidden by a seccomp filter (as Docker's default
 * profile does) falls back to epoll when no backend was named, and fails with
 * -EPERM when io_uring was named; COIL_BACKEND picks the backend when the
 * options name none.
 *
 * Each filtered case runs in a forked child (a seccomp filter cannot be
 * removed) with its stderr captured through a pipe, because the fallback must
 * be logged. The children do not use cmocka: they exit with the number of the
 * step that failed and say why on stderr, which the parent shows. */
#include "harness.h"

#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/io_uring.h>

#define SKIP_CODE 77

/* ---- in the child ---- */

#define CHILD_CHECK(step, cond, ...)                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "step %d: ", step);                                                    \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            return step;                                                                           \
        }                                                                                          \
    } while (0)

/* Forbids io_uring_setup with EPERM. Returns 0, or SKIP_CODE after saying
 * why the filter cannot be had here. */
static int forbid_io_uring(void)
{
    /* Without CAP_SYS_ADMIN a filter may only be loaded under no_new_privs. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        fprintf(stderr, "skip: PR_SET_NO_NEW_PRIVS: %s\n", strerror(errno));
        return SKIP_CODE;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        fprintf(stderr, "skip: seccomp_init failed\n");
        return SKIP_CODE;
    }
    int err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0);
    if (err == 0)
        err = seccomp_load(ctx);
    seccomp_release(ctx);
    if (err != 0) {
        fprintf(stderr, "skip: seccomp filter not loaded: %s\n", strerror(-err));
        return SKIP_CODE;
    }
    /* The filter must really be in force, or the test would prove nothing. */
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    long r = syscall(__NR_io_uring_setup, 4, &p);
    if (r >= 0 || errno != EPERM) {
        fprintf(stderr, "step 1: io_uring_setup under the filter returned %ld (%s)\n", r,
                r < 0 ? strerror(errno) : "a ring");
        if (r >= 0)
            close((int)r);
        return 1;
    }
    return 0;
}

static coil_loop cl;
static coil_sock lsn;

typedef struct echo_state {
    int server_err, client_err;
    bool done;
} echo_state;

static int echo_server(void *arg)
{
    echo_state *st = arg;
    coil_sock c;
    int err = coil_accept(&lsn, &c, NULL, coil_deadline_in(&cl, 5000 * MS));
    coil_close(&lsn);
    if (err < 0)
        return st->server_err = err;
    char buf[64];
    ssize_t n = coil_recv(&c, buf, sizeof(buf), coil_deadline_in(&cl, 5000 * MS));
    if (n <= 0)
        st->server_err = n < 0 ? (int)n : -EPIPE;
    else if (coil_send(&c, buf, (size_t)n, coil_deadline_in(&cl, 5000 * MS)) != n)
        st->server_err = -EIO;
    coil_close(&c);
    return 0;
}

static int echo_client(void *arg)
{
    echo_state *st = arg;
    coil_sock s;
    int err = harness_connect(&cl, &s, coil_sock_port(&lsn), coil_deadline_in(&cl, 5000 * MS));
    if (err < 0)
        return st->client_err = err;
    static const char msg[] = "through the fallback";
    char back[sizeof(msg)];
    if (coil_send(&s, msg, sizeof(msg), coil_deadline_in(&cl, 5000 * MS)) != (ssize_t)sizeof(msg)) {
        st->client_err = -EIO;
    } else {
        size_t got = 0;
        while (got < sizeof(back)) {
            ssize_t n = coil_recv(&s, back + got, sizeof(back) - got, coil_deadline_in(&cl, 5000 * MS));
            if (n <= 0) {
                st->client_err = n < 0 ? (int)n : -EPIPE;
                break;
            }
            got += (size_t)n;
        }
        if (got == sizeof(back) && memcmp(back, msg, sizeof(msg)) != 0)
            st->client_err = -EBADMSG;
    }
    coil_close(&s);
    st->done = true;
    return 0;
}

/* A small echo over TCP on the loop cl, driven to completion. */
static int echo_on_loop(int step)
{
    CHILD_CHECK(step, coil_tcp_listen_host(&cl, &lsn, "127.0.0.1", 0, 16, 0) == 0, "listen");
    echo_state st = { 0 };
    CHILD_CHECK(step, coil_spawn(&cl, echo_server, &st, NULL) == 0, "spawn server");
    CHILD_CHECK(step, coil_spawn(&cl, echo_client, &st, NULL) == 0, "spawn client");
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r;
    while ((r = coil_loop_run_once(&cl, 100 * MS)) > 0) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        CHILD_CHECK(step, t.tv_sec - t0.tv_sec < 10, "echo did not finish within 10 s");
    }
    CHILD_CHECK(step, r == 0, "run_once: %s", strerror(-r));
    CHILD_CHECK(step, st.done && !st.server_err && !st.client_err, "echo failed: server %d, client %d",
                st.server_err, st.client_err);
    CHILD_CHECK(step, coil_loop_exit(&cl) == 0, "loop exit");
    return 0;
}

static int child_fallback(void)
{
    unsetenv("COIL_BACKEND");
    unsetenv("COIL_QUIET");
    int err = forbid_io_uring();
    if (err)
        return err;
    err = coil_loop_init(&cl, NULL);
    CHILD_CHECK(2, err == 0, "coil_loop_init with io_uring forbidden: %s", strerror(-err));
    CHILD_CHECK(3, strcmp(coil_loop_backend(&cl), "epoll") == 0, "backend %s",
                coil_loop_backend(&cl));
    return echo_on_loop(4);
}

static int child_named(void)
{
    unsetenv("COIL_QUIET");
    int err = forbid_io_uring();
    if (err)
        return err;
    unsetenv("COIL_BACKEND");
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.backend = "io_uring";
    err = coil_loop_init(&cl, &o);
    CHILD_CHECK(2, err == -EPERM, "named io_uring under the filter: %d (%s), want -EPERM", err,
                strerror(-err));
    /* Named through the environment is named too. */
    setenv("COIL_BACKEND", "io_uring", 1);
    err = coil_loop_init(&cl, NULL);
    CHILD_CHECK(3, err == -EPERM, "COIL_BACKEND=io_uring under the filter: %d (%s), want -EPERM",
                err, strerror(-err));
    return 0;
}

/* ---- in the parent ---- */

static bool seccomp_skipped;

typedef struct child_result {
    int code;          /* exit code, or -signal */
    char err[8192];    /* its stderr */
} child_result;

static void run_child(int (*fn)(void), child_result *res)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[1]);
        int code = fn();
        fflush(stderr);
        _exit(code);
    }
    close(pfd[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(pfd[0], res->err + len, sizeof(res->err) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(res->err) - 1)
            break;
    }
    res->err[len] = '\0';
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    res->code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    if (res->code == SKIP_CODE) {
        print_message("%s", res->err);
        seccomp_skipped = true;
        skip();
    }
    if (res->code != 0)
        fail_msg("child exited with %d; its stderr:\n%s", res->code, res->err);
}

static void test_seccomp_falls_back_to_epoll(void **state)
{
    (void)state;
    static child_result res;
    run_child(child_fallback, &res);
    if (!strstr(res.err, "coil: io_uring cannot be set up (Operation not permitted); "
                         "falling back to epoll"))
        fail_msg("no fallback line in the child's stderr:\n%s", res.err);
    if (!strstr(res.err, "coil: backend: epoll"))
        fail_msg("the chosen backend was not logged:\n%s", res.err);
}

static void test_seccomp_named_io_uring_fails(void **state)
{
    (void)state;
    static child_result res;
    run_child(child_named, &res);
    if (!strstr(res.err, "backend io_uring requested but cannot be set up"))
        fail_msg("the failure was not logged:\n%s", res.err);
    if (strstr(res.err, "falling back"))
        fail_msg("a named backend fell back:\n%s", res.err);
}

static bool io_uring_usable(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    long fd = syscall(__NR_io_uring_setup, 4, &p);
    if (fd < 0)
        return false;
    close((int)fd);
    return true;
}

static void test_env_var_chooses(void **state)
{
    (void)state;
    const char *saved = getenv("COIL_BACKEND");
    char *keep = saved ? strdup(saved) : NULL;
    coil_loop loop;

    setenv("COIL_BACKEND", "epoll", 1);
    assert_int_equal(coil_loop_init(&loop, NULL), 0);
    assert_string_equal(coil_loop_backend(&loop), "epoll");
    assert_int_equal(coil_loop_exit(&loop), 0);

    /* The options win over the environment. */
    if (io_uring_usable()) {
        coil_loop_options o;
        coil_loop_options_default(&o);
        o.backend = "io_uring";
        assert_int_equal(coil_loop_init(&loop, &o), 0);
        assert_string_equal(coil_loop_backend(&loop), "io_uring");
        assert_int_equal(coil_loop_exit(&loop), 0);
    }

    setenv("COIL_BACKEND", "kqueue", 1);
    assert_int_equal(coil_loop_init(&loop, NULL), -EINVAL);
    coil_loop_options o;
    coil_loop_options_default(&o);
    o.backend = "select";
    assert_int_equal(coil_loop_init(&loop, &o), -EINVAL);

    /* Empty means unset: io_uring first. */
    setenv("COIL_BACKEND", "", 1);
    assert_int_equal(coil_loop_init(&loop, NULL), 0);
    assert_string_equal(coil_loop_backend(&loop), io_uring_usable() ? "io_uring" : "epoll");
    assert_int_equal(coil_loop_exit(&loop), 0);

    if (keep) {
        setenv("COIL_BACKEND", keep, 1);
        free(keep);
    } else {
        unsetenv("COIL_BACKEND");
    }
}

int main(void)
{
    /* The children unset it: the fallback must be logged. The parent creates
     * no loop before they run, so they still log the backend they chose
     * (that line is printed once per process). */
    setenv("COIL_QUIET", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seccomp_falls_back_to_epoll),
        cmocka_unit_test(test_seccomp_named_io_uring_fails),
        cmocka_unit_test(test_env_var_chooses),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (!failed && seccomp_skipped) {
        printf("test_fallback: no seccomp filter could be loaded here; skipped\n");
        return SKIP_CODE;
    }
    return failed;
}
