/* coil-doctor: reports a usable io_uring on this machine, and under a seccomp
 * filter that refuses io_uring_setup it names seccomp as the cause, gives the
 * fix, and says coil falls back to epoll. */
#include "harness.h"

#include <seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef COIL_DOCTOR_PATH
#error "COIL_DOCTOR_PATH must name the coil-doctor binary"
#endif

/* Runs coil-doctor, optionally under the filter; returns its output. */
static char *run_doctor(bool filtered, int *status)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], STDOUT_FILENO);
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        unsetenv("COIL_BACKEND");
        if (filtered) {
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
            if (!ctx || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0) ||
                seccomp_load(ctx))
                _exit(77);
        }
        execl(COIL_DOCTOR_PATH, "coil-doctor", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    ssize_t n;
    while ((n = read(pfd[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(pfd[0]);
    waitpid(pid, status, 0);
    return out;
}

static void test_doctor_plain(void **state)
{
    (void)state;
    int st;
    char *out = run_doctor(false, &st);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_non_null(strstr(out, "kernel"));
    assert_non_null(strstr(out, "open files"));
    if (strstr(out, "io_uring                     available"))
        assert_non_null(strstr(out, "coil would use               io_uring"));
    else
        assert_non_null(strstr(out, "coil would use               epoll"));
    free(out);
}

static void test_doctor_under_seccomp(void **state)
{
    (void)state;
    int st;
    char *out = run_doctor(true, &st);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        free(out);
        skip(); /* seccomp cannot be loaded here */
    }
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0); /* epoll still works */
    assert_non_null(strstr(out, "cannot be set up"));
    assert_non_null(strstr(out, "seccomp filter"));
    assert_non_null(strstr(out, "falls back to epoll"));
    assert_non_null(strstr(out, "coil would use               epoll"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doctor_plain),
        cmocka_unit_test(test_doctor_under_seccomp),
    };
    return HARNESS_RUN(tests);
}
