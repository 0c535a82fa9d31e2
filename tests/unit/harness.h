/*
 * Shared by the unit tests: a loop per test on the backend named by
 * COIL_BACKEND (ctest runs each backend-shared test once per backend), and
 * helpers to run a task to completion.
 */
#ifndef COIL_TEST_HARNESS_H
#define COIL_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "coil/coil.h"

#define MS (1000LL * 1000)

/* Initialises loop with opts (NULL: defaults) on the backend under test and
 * checks that the backend really is the one asked for. */
void harness_loop_init(coil_loop *loop, const coil_loop_options *opts);
/* The same on backend ("io_uring" or "epoll"), whatever COIL_BACKEND says. */
void harness_loop_init_on(coil_loop *loop, const coil_loop_options *opts, const char *backend);
/* Exits loop, asserting nothing is left behind. */
void harness_loop_exit(coil_loop *loop);
/* Spawns fn(arg) on loop, runs the loop until it returns, and returns its
 * result. Fails the test if the loop does not finish within 20 s. */
int harness_run(coil_loop *loop, coil_task_fn fn, void *arg);
/* The same, but each turn of the loop may wait up to 20 s, where
 * harness_run's turns end every 100 ms: for tests of what ends the loop's
 * wait, which a turn boundary would otherwise end for them. */
int harness_run_long_turns(coil_loop *loop, coil_task_fn fn, void *arg);
/* Backend under test: "io_uring" or "epoll". */
const char *harness_backend(void);
bool harness_is_uring(void);
/* *listener listening on 127.0.0.1, port 0 (any free port). */
void harness_listen(coil_loop *loop, coil_sock *listener);
/* 127.0.0.1:port. */
struct sockaddr_in harness_addr(int port);
/* coil_tcp_connect() to 127.0.0.1:port: 0 or a negative errno. */
int harness_connect(coil_loop *loop, coil_sock *s, int port, int64_t deadline);
/* A plain blocking client socket connected to port (outside coil). */
int harness_client(int port);
/* Count of open fds of this process. */
int harness_fd_count(void);
/* Forks a child that runs fn(arg) with SIGSEGV and SIGBUS at their default
 * action (a fault kills it from the kernel, not from a handler that would
 * itself need stack) and exits 0 if fn returns. Returns the child's wait
 * status. */
int harness_fork_wait(void (*fn)(void *), void *arg);
/* Raises the soft RLIMIT_NOFILE to the hard one if it is below want. True
 * if want descriptors may now be open (a test skips otherwise). */
bool harness_raise_nofile(unsigned long want);

/* Runs a cmocka group; COIL_TEST_FILTER (a cmocka glob) picks tests. */
#define HARNESS_RUN(tests)                                                                         \
    (getenv("COIL_TEST_FILTER") ? cmocka_set_test_filter(getenv("COIL_TEST_FILTER")) : (void)0,    \
     cmocka_run_group_tests(tests, NULL, NULL))

#endif
