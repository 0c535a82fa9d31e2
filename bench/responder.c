/*
 * bench_responder: the floor for the HTTP benchmarks.
 *
 *   bench_responder [--port N] [--host ADDR] [--body BYTES]
 *
 * One thread, epoll, edge-free (level-triggered) and no HTTP parsing at all:
 * every "\r\n\r\n" seen in the received bytes counts as one request and is
 * answered with a fixed response, so pipelined requests get one answer each
 * and the cost measured is that of the kernel's TCP path plus the smallest
 * possible amount of user-space work. Anything a real server does on top of
 * this (parsing, routing, timers, buffers) shows up as the distance to it.
 *
 * With --body BYTES every answer carries a body of BYTES zero bytes instead of
 * "Hello, World!", which makes it a download source for the proxy benchmark;
 * large bodies are sent from one static zero page in a loop, so the responder
 * itself stays a few kilobytes of memory whatever the size.
 *
 * Prints "listening on HOST:PORT (epoll)" on stderr once ready.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define RBUF 16384
#define ZPAGE 65536

static const char hello[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";

/* Per-connection state: the bytes of a "\r\n\r\n" matched so far (a
 * terminator may straddle two reads) and, with --body, how much of the
 * current large response is still to be written. */
struct conn {
    int fd;
    int matched;
    uint64_t pending_requests;
    uint64_t body_left; /* bytes of body still to send for the current answer */
    int head_left;      /* bytes of head still to send for the current answer */
    int head_len;
    char head[128];
};

static long long body_size = -1; /* -1: the fixed hello answer */
static char zeros[ZPAGE];
static char out[RBUF * 4];

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Counts the request terminators in buf, carrying a partial match across
 * reads. */
static uint64_t count_requests(struct conn *c, const char *buf, ssize_t n)
{
    static const char term[4] = { '\r', '\n', '\r', '\n' };
    uint64_t found = 0;
    int m = c->matched;
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == term[m]) {
            if (++m == 4) {
                found++;
                m = 0;
            }
        } else {
            m = buf[i] == '\r' ? 1 : 0;
        }
    }
    c->matched = m;
    return found;
}

/* Hello mode: answers all counted requests with as few writes as possible.
 * Returns -1 if the connection must go. A short write is treated as fatal:
 * with 13-byte bodies and wrk reading as fast as it can this does not happen,
 * and handling it would add exactly the bookkeeping the floor is meant to
 * leave out. */
static int answer_hello(struct conn *c)
{
    while (c->pending_requests) {
        size_t per = sizeof(hello) - 1;
        size_t k = sizeof(out) / per;
        if (k > c->pending_requests)
            k = c->pending_requests;
        for (size_t i = 0; i < k; i++)
            memcpy(out + i * per, hello, per);
        ssize_t w = send(c->fd, out, k * per, MSG_NOSIGNAL);
        if (w != (ssize_t)(k * per))
            return -1;
        c->pending_requests -= k;
    }
    return 0;
}

/* Body mode: sends as much of the current answer(s) as the socket takes.
 * Returns 1 if blocked (wait for EPOLLOUT), 0 if all sent, -1 on error. */
static int answer_body(struct conn *c)
{
    for (;;) {
        if (c->head_left == 0 && c->body_left == 0) {
            if (!c->pending_requests)
                return 0;
            c->pending_requests--;
            c->head_len = snprintf(c->head, sizeof(c->head),
                                   "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\n\r\n", body_size);
            c->head_left = c->head_len;
            c->body_left = (uint64_t)body_size;
        }
        ssize_t w;
        if (c->head_left) {
            w = send(c->fd, c->head + (c->head_len - c->head_left), (size_t)c->head_left,
                     MSG_NOSIGNAL);
            if (w > 0)
                c->head_left -= (int)w;
        } else {
            size_t n = c->body_left < ZPAGE ? (size_t)c->body_left : ZPAGE;
            w = send(c->fd, zeros, n, MSG_NOSIGNAL);
            if (w > 0)
                c->body_left -= (uint64_t)w;
        }
        if (w < 0)
            return errno == EAGAIN ? 1 : -1;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 8080;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else if (!strcmp(argv[i], "--body"))
            body_size = atoll(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_responder [--port N] [--host ADDR] [--body BYTES]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bench_responder: bad host %s\n", host);
        return 2;
    }
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4096) < 0) {
        perror("bench_responder: bind/listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    fprintf(stderr, "listening on %s:%d (epoll)\n", host, port);

    static char buf[RBUF];
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("bench_responder: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    struct conn *nc = calloc(1, sizeof(*nc));
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event cev = { .events = EPOLLIN, .data.ptr = nc };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (evs[i].events & EPOLLIN) {
                ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    conn_close(ep, c);
                    continue;
                }
                if (r > 0)
                    c->pending_requests += count_requests(c, buf, r);
            }
            int st;
            if (body_size < 0) {
                st = answer_hello(c);
            } else {
                st = answer_body(c);
                /* Blocked: wait for room instead of spinning on EPOLLIN. */
                struct epoll_event mev = { .events = st == 1 ? EPOLLOUT : EPOLLIN, .data.ptr = c };
                if (st >= 0)
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &mev);
            }
            if (st < 0)
                conn_close(ep, c);
        }
    }
}
