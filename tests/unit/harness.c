#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *harness_backend(void)
{
    const char *b = getenv("COIL_BACKEND");
    return b && *b ? b : "io_uring";
}

bool harness_is_uring(void)
{
    return strcmp(harness_backend(), "io_uring") == 0;
}

void harness_loop_init(coil_loop *loop, const coil_loop_options *opts)
{
    harness_loop_init_on(loop, opts, harness_backend());
}

void harness_loop_init_on(coil_loop *loop, const coil_loop_options *opts, const char *backend)
{
    coil_loop_options o;
    if (opts)
        o = *opts;
    else
        coil_loop_options_default(&o);
    o.backend = backend;
    int err = coil_loop_init(loop, &o);
    if (err < 0)
        fail_msg("coil_loop_init(%s): %s", o.backend, strerror(-err));
    assert_string_equal(coil_loop_backend(loop), o.backend);
}

void harness_loop_exit(coil_loop *loop)
{
    coil_loop_stats st;
    coil_loop_stats_get(loop, &st);
    assert_int_equal(st.tasks_live, 0);
    assert_int_equal(st.bufs_in_use, 0);
    assert_int_equal(st.stale_completions, 0);
    assert_int_equal(coil_loop_exit(loop), 0);
}

typedef struct run_box {
    coil_task_fn fn;
    void *arg;
    int result;
    bool done;
} run_box;

static int run_trampoline(void *arg)
{
    run_box *b = arg;
    b->result = b->fn(b->arg);
    b->done = true;
    return 0;
}

static int run_turns(coil_loop *loop, coil_task_fn fn, void *arg, int64_t turn)
{
    run_box b = { .fn = fn, .arg = arg };
    assert_int_equal(coil_spawn(loop, run_trampoline, &b, NULL), 0);
    int64_t until = coil_now(loop) + 20000 * MS;
    while (!b.done) {
        int r = coil_loop_run_once(loop, turn);
        assert_true(r >= 0);
        if (coil_now(loop) > until)
            fail_msg("task did not finish within 20 s");
    }
    /* Let tasks the main one left behind (detached handlers) wind down. */
    for (int i = 0; i < 100 && coil_loop_run_once(loop, 0) > 0; i++) {
    }
    return b.result;
}

int harness_run(coil_loop *loop, coil_task_fn fn, void *arg)
{
    return run_turns(loop, fn, arg, 100 * MS);
}

int harness_run_long_turns(coil_loop *loop, coil_task_fn fn, void *arg)
{
    return run_turns(loop, fn, arg, 20000 * MS);
}

void harness_listen(coil_loop *loop, coil_sock *listener)
{
    int err = coil_tcp_listen_host(loop, listener, "127.0.0.1", 0, 1024, 0);
    assert_int_equal(err, 0);
    assert_true(coil_sock_port(listener) > 0);
}

struct sockaddr_in harness_addr(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int harness_connect(coil_loop *loop, coil_sock *s, int port, int64_t deadline)
{
    struct sockaddr_in a = harness_addr(port);
    return coil_tcp_connect(loop, s, (struct sockaddr *)&a, sizeof(a), deadline);
}

int harness_client(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = harness_addr(port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

int harness_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

bool harness_raise_nofile(unsigned long want)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur >= want;
}

int harness_fork_wait(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    int status;
    pid_t w;
    do
        w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    assert_int_equal(w, pid);
    return status;
}
