/*
 * loop_thread: one coil loop in a thread the program owns.
 *
 * The program keeps its main thread. It starts one thread of its own that
 * creates a coil loop and serves a TCP service on it (every line sent comes
 * back in upper case), then waits for its standard input to end and asks
 * the loop to stop with coil_post(), the one call a thread may make on a
 * loop it does not own.
 *
 *   loop_thread [--port N]     (listens on 127.0.0.1; port 0 picks one)
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coil/coil.h"

typedef struct conn {
    coil_sock sock;
    coil_task *task;           /* set by the task itself once it runs */
    struct conn *prev, *next;
} conn;

/* Everything the loop thread owns. Only `ready`, `err` and `port` are
 * shared with the main thread, under `lock`, until the loop is running. */
typedef struct server {
    coil_loop loop;
    coil_sock listener;
    coil_task *acceptor;
    conn *conns;               /* live connections, so a stop can cancel them */
    int port;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
    int err;
    bool stopping;             /* loop thread only */
} server;

static void conn_unlink(server *s, conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static int serve(void *arg)
{
    conn *c = arg;
    server *s = c->sock.data;
    c->task = coil_self();
    /* The buffer lives on the task's stack: a receive returns only once the
     * kernel is done with it, whatever ends the wait. */
    char buf[4096];
    while (!s->stopping) {
        ssize_t n = coil_recv(&c->sock, buf, sizeof(buf), COIL_NO_DEADLINE);
        if (n <= 0)
            break; /* end of stream, error, or -ECANCELED from a stop */
        for (ssize_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)buf[i]);
        if (coil_send(&c->sock, buf, (size_t)n, COIL_NO_DEADLINE) < 0)
            break;
    }
    conn_unlink(s, c);
    coil_close(&c->sock);
    free(c);
    return 0;
}

static int accept_loop(void *arg)
{
    server *s = arg;
    for (;;) {
        conn *c = calloc(1, sizeof(*c));
        if (!c)
            break;
        int err = coil_accept(&s->listener, &c->sock, NULL, COIL_NO_DEADLINE);
        if (err < 0) {
            free(c);
            if (err == -ECANCELED)
                break;
            coil_sleep(10 * 1000 * 1000); /* out of descriptors: back off */
            continue;
        }
        c->sock.data = s;
        if (coil_spawn(&s->loop, serve, c, NULL) < 0) {
            coil_close(&c->sock);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (c->next)
            c->next->prev = c;
        s->conns = c;
    }
    coil_close(&s->listener);
    return 0;
}

/* Runs on the loop's thread, between turns, outside any task. */
static void stop_serving(coil_loop *loop, void *arg)
{
    (void)loop;
    server *s = arg;
    s->stopping = true; /* for connections whose task has not run yet */
    coil_cancel(s->acceptor);
    coil_detach(s->acceptor);
    for (conn *c = s->conns; c; c = c->next)
        if (c->task)
            coil_cancel(c->task);
    /* Once every task has returned nothing is alive: coil_loop_run returns. */
}

static void report(server *s, int err)
{
    pthread_mutex_lock(&s->lock);
    s->ready = true;
    s->err = err;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* The thread the program owns: the loop is created here, so this thread
 * is its owner and the only one that may run it. */
static void *loop_thread(void *arg)
{
    server *s = arg;
    int err = coil_loop_init(&s->loop, NULL);
    if (err < 0) {
        report(s, err);
        return NULL;
    }
    err = coil_tcp_listen_host(&s->loop, &s->listener, "127.0.0.1", (uint16_t)s->port, 128, 0);
    if (err == 0) {
        s->port = coil_sock_port(&s->listener);
        err = coil_spawn(&s->loop, accept_loop, s, &s->acceptor);
        if (err < 0)
            coil_close(&s->listener);
    }
    if (err == 0)
        fprintf(stderr, "loop_thread: listening on 127.0.0.1:%d (%s)\n", s->port,
                coil_loop_backend(&s->loop));
    report(s, err);
    if (err == 0)
        err = coil_loop_run(&s->loop);
    if (err < 0)
        fprintf(stderr, "loop_thread: loop failed: %s\n", strerror(-err));
    /* -EBUSY would mean something is still open: a bug in this program. */
    if (coil_loop_exit(&s->loop) < 0)
        abort();
    return NULL;
}

int main(int argc, char **argv)
{
    server s = { .port = 0 };
    if (argc == 3 && !strcmp(argv[1], "--port")) {
        s.port = atoi(argv[2]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: loop_thread [--port N]\n");
        return 2;
    }
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, loop_thread, &s) != 0)
        return 1;
    pthread_mutex_lock(&s.lock);
    while (!s.ready)
        pthread_cond_wait(&s.cond, &s.lock);
    int err = s.err;
    pthread_mutex_unlock(&s.lock);
    if (err < 0) {
        fprintf(stderr, "loop_thread: cannot start: %s\n", strerror(-err));
        pthread_join(t, NULL);
        return 1;
    }

    /* The main thread is the program's: here it just waits for the end of
     * its input, then asks the loop to stop. */
    char sink[256];
    while (read(STDIN_FILENO, sink, sizeof(sink)) > 0)
        ;
    if (coil_post(&s.loop, stop_serving, &s) < 0)
        abort();
    pthread_join(t, NULL);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    fprintf(stderr, "loop_thread: stopped\n");
    return 0;
}
