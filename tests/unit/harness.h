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

#include "coil/coil.h"

#define MS (1000LL * 1000)

/* Initialises loop with opts (NULL: defaults) on the backend under test and
 * checks that the backend really is the one asked for. */
void harness_loop_init(coil_loop *loop, const coil_loop_options *opts);
/* Exits loop, asserting nothing is left behind. */
void harness_loop_exit(coil_loop *loop);
/* Spawns fn(arg) on loop, runs the loop until it returns, and returns its
 * result. Fails the test if the loop does not finish within 20 s. */
int harness_run(coil_loop *loop, coil_task_fn fn, void *arg);
/* Backend under test: "io_uring" or "epoll". */
const char *harness_backend(void);
bool harness_is_uring(void);
/* A connected pair: *listener listening on 127.0.0.1, port 0. */
void harness_listen(coil_loop *loop, coil_sock *listener);
/* A plain blocking client socket connected to port (outside coil). */
int harness_client(int port);
/* Count of open fds of this process. */
int harness_fd_count(void);

/* Runs a cmocka group; COIL_TEST_FILTER (a cmocka glob) picks tests. */
#define HARNESS_RUN(tests)                                                                         \
    (getenv("COIL_TEST_FILTER") ? cmocka_set_test_filter(getenv("COIL_TEST_FILTER")) : (void)0,    \
     cmocka_run_group_tests(tests, NULL, NULL))

#endif
