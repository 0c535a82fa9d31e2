/*
 * echo_server: a TCP echo server on every core, the smallest complete coil
 * program. Each core listens on the same port (SO_REUSEPORT), so a
 * connection is accepted, served and closed on one core. Between reads a
 * connection is parked: it holds no task stack and no receive buffer.
 *
 *   echo_server [--port N] [--host ADDR] [--cores N] [--idle-ms N]
 *
 * SIGINT or SIGTERM stops it gracefully.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coil/coil.h"

typedef struct conn conn;

typedef struct core_state {
    coil_sock listener;
    coil_task *acceptor;
    conn *conns;          /* every open connection of this core */
    int64_t idle_ns;
} core_state;

struct conn {
    coil_sock sock;
    core_state *core;
    coil_task *task;      /* NULL while parked */
    conn *prev, *next;
};

static struct {
    const char *host;
    int port;
    unsigned cores;
    int64_t idle_ns;
    core_state *state;
} cfg = { "0.0.0.0", 8080, 0, 60LL * 1000 * 1000 * 1000, NULL };

static void conn_unlink(conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->core->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static int serve(void *arg);

/* Echo what is there, then park until more arrives. */
static int serve(void *arg)
{
    conn *c = arg;
    c->task = coil_self();
    coil_loop *loop = coil_loop_current();
    for (;;) {
        coil_buf b;
        ssize_t n = coil_recv_buf(&c->sock, &b, coil_deadline_in(loop, c->core->idle_ns));
        if (n <= 0)
            break;
        /* The received view is sent as it is and released once sent. */
        if (coil_send_buf(&c->sock, &b, coil_deadline_in(loop, c->core->idle_ns)) < 0)
            break;
        if (!coil_sock_rx_pending(&c->sock)) {
            c->task = NULL;
            if (coil_park(&c->sock, serve, c, coil_deadline_in(loop, c->core->idle_ns)) == 0)
                return 0;
            c->task = coil_self();
        }
    }
    conn_unlink(c);
    coil_close(&c->sock);
    free(c);
    return 0;
}

static int accept_loop(void *arg)
{
    core_state *cs = arg;
    for (;;) {
        conn *c = calloc(1, sizeof(*c));
        if (!c) {
            coil_sleep(10 * 1000 * 1000);
            continue;
        }
        int err = coil_accept(&cs->listener, &c->sock, NULL, COIL_NO_DEADLINE);
        if (err == -ECANCELED) {
            free(c);
            return 0;
        }
        if (err < 0) {
            free(c);
            /* Out of descriptors or memory: back off instead of spinning. */
            coil_sleep(10 * 1000 * 1000);
            continue;
        }
        c->core = cs;
        c->next = cs->conns;
        if (c->next)
            c->next->prev = c;
        cs->conns = c;
        if (coil_spawn(coil_loop_current(), serve, c, NULL) < 0) {
            conn_unlink(c);
            coil_close(&c->sock);
            free(c);
        }
    }
}

static int on_start(coil_loop *loop, unsigned core, void *data)
{
    (void)data;
    core_state *cs = &cfg.state[core];
    cs->idle_ns = cfg.idle_ns;
    int err = coil_tcp_listen_host(loop, &cs->listener, cfg.host, (uint16_t)cfg.port, 1024,
                                   COIL_LISTEN_REUSEPORT);
    if (err < 0) {
        fprintf(stderr, "echo_server: listen on %s:%d: %s\n", cfg.host, cfg.port, strerror(-err));
        return err;
    }
    if (core == 0)
        fprintf(stderr, "echo_server: listening on %s:%d (%s)\n", cfg.host,
                coil_sock_port(&cs->listener), coil_loop_backend(loop));
    return coil_spawn(loop, accept_loop, cs, &cs->acceptor);
}

static void on_stop(coil_loop *loop, unsigned core, void *data)
{
    (void)loop;
    (void)data;
    core_state *cs = &cfg.state[core];
    if (cs->acceptor) {
        coil_cancel(cs->acceptor);
        coil_detach(cs->acceptor);
    }
    /* Busy connections are cancelled and close themselves; parked ones have
     * no task, so they are closed here. */
    for (conn *c = cs->conns, *next; c; c = next) {
        next = c->next;
        if (c->task) {
            coil_cancel(c->task);
        } else {
            conn_unlink(c);
            coil_close(&c->sock);
            free(c);
        }
    }
    coil_close(&cs->listener);
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: echo_server [--port N] [--host ADDR] [--cores N] [--idle-ms N]\n");
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "echo_server: %s needs a value\n", a);
            return -1;
        }
        char *end;
        long n = strtol(v, &end, 10);
        if (!strcmp(a, "--host")) {
            cfg.host = v;
        } else if (*end || n < 0) {
            fprintf(stderr, "echo_server: %s: not a number: %s\n", a, v);
            return -1;
        } else if (!strcmp(a, "--port") && n <= 65535) {
            cfg.port = (int)n;
        } else if (!strcmp(a, "--cores") && n <= COIL_RT_MAX_CORES) {
            cfg.cores = (unsigned)n;
        } else if (!strcmp(a, "--idle-ms")) {
            cfg.idle_ns = n * 1000 * 1000;
        } else {
            fprintf(stderr, "echo_server: unknown or out-of-range option %s %s\n", a, v);
            return -1;
        }
        i++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    coil_rt_options o = { .on_start = on_start, .on_stop = on_stop, .handle_signals = true };
    coil_loop_options_default(&o.loop);
    int cpus[COIL_RT_MAX_CORES];
    if (cfg.cores) {
        for (unsigned i = 0; i < cfg.cores; i++)
            cpus[i] = (int)i;
        o.cpus = cpus;
        o.ncpus = cfg.cores;
    }
    cfg.state = calloc(COIL_RT_MAX_CORES, sizeof(core_state));
    coil_rt *rt;
    int err = coil_rt_start(&rt, &o);
    if (err < 0) {
        fprintf(stderr, "echo_server: cannot start: %s\n", strerror(-err));
        free(cfg.state);
        return 1;
    }
    err = coil_rt_wait(rt);
    free(cfg.state);
    if (err < 0) {
        fprintf(stderr, "echo_server: stopped with error: %s\n", strerror(-err));
        return 1;
    }
    fprintf(stderr, "echo_server: stopped\n");
    return 0;
}
