/* The socket tests' fixture: see net_fixture.h. */
#include "net_fixture.h"

coil_sock lsn;
int port;

void net_open(const char *backend, const coil_loop_options *opts)
{
    harness_loop_init_on(&loop, opts, backend ? backend : harness_backend());
    harness_listen(&loop, &lsn);
    port = coil_sock_port(&lsn);
}

int net_setup(void **state)
{
    (void)state;
    net_open(NULL, NULL);
    return 0;
}

int net_teardown(void **state)
{
    (void)state;
    assert_int_equal(coil_close(&lsn), 0);
    harness_loop_exit(&loop);
    return 0;
}

int pair(coil_sock *client, coil_sock *server)
{
    int err = harness_connect(&loop, client, port, coil_deadline_in(&loop, 5000 * MS));
    if (err < 0)
        return err;
    err = coil_accept(&lsn, server, NULL, coil_deadline_in(&loop, 5000 * MS));
    if (err < 0)
        coil_close(client);
    return err;
}

ssize_t recv_all(coil_sock *s, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = coil_recv(s, (char *)buf + got, len - got, coil_deadline_in(&loop, 10000 * MS));
        if (n <= 0)
            return n < 0 ? n : (ssize_t)got;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

unsigned char pattern(size_t i, unsigned seed)
{
    return (unsigned char)((i * 131 + seed * 17) ^ (i >> 9) ^ (seed >> 3));
}

void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(i, seed);
}
