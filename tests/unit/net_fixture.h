/*
 * The socket tests' fixture (test_net, test_epoll, test_uring): the test's
 * loop (loop_fixture.h) with a listener on 127.0.0.1, connected pairs of
 * coil sockets through it, and the byte pattern their payloads are made of.
 */
#ifndef COIL_TEST_NET_FIXTURE_H
#define COIL_TEST_NET_FIXTURE_H

#include "loop_fixture.h"

/* The listener on loop and its port. net_open() fills them. */
extern coil_sock lsn;
extern int port;

/* Initialises loop with opts (NULL: defaults) on backend (NULL: the one
 * under test, else "io_uring" or "epoll" whatever COIL_BACKEND says), then
 * listens on lsn. */
void net_open(const char *backend, const coil_loop_options *opts);
/* cmocka setup/teardown: net_open(NULL, NULL); closing lsn, then
 * harness_loop_exit(). */
int net_setup(void **state);
int net_teardown(void **state);
/* A cmocka test f with that fixture. */
#define NET_TEST(f) cmocka_unit_test_setup_teardown(f, net_setup, net_teardown)

/* In a task: connects *client to lsn (5 s) and accepts its peer into
 * *server (5 s). Returns 0, or a negative errno with nothing left open. */
int pair(coil_sock *client, coil_sock *server);
/* In a task: receives until len bytes are in buf, each receive within
 * 10 s. Returns len, fewer at end of stream, or a negative errno. */
ssize_t recv_all(coil_sock *s, void *buf, size_t len);

/* Byte i of the stream numbered seed. */
unsigned char pattern(size_t i, unsigned seed);
/* p[0..n) = the first n bytes of stream seed. */
void fill_pattern(unsigned char *p, size_t n, unsigned seed);

#endif
