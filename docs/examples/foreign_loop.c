/*
 * foreign_loop: a coil loop driven by another event loop, here a plain
 * poll(2) loop that also reads the program's standard input.
 *
 * coil serves HTTP on the same thread: GET / answers the last line read
 * from standard input. Because both loops run on one thread, the handler
 * reads that line without a lock. When standard input ends, the server stops
 * gracefully and the program exits once coil has nothing left to do.
 *
 *   foreign_loop [--port N]     (listens on 127.0.0.1; port 0 picks one)
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coil/http.h"

/* The last complete line read from standard input. */
static char message[256] = "(nothing yet)";

static int show_message(coil_http_request *req, void *data)
{
    (void)data;
    char body[sizeof(message) + 1];
    int n = snprintf(body, sizeof(body), "%s\n", message);
    coil_http_field ct = COIL_HTTP_FIELD("Content-Type", "text/plain");
    return coil_http_respond(req, 200, &ct, 1, body, (size_t)n);
}

/* Reads what standard input has; keeps the last complete line. Returns false
 * at end of input. */
static bool read_input(void)
{
    static char line[sizeof(message)];
    static size_t len;
    char buf[512];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n <= 0)
        return n < 0 && errno == EINTR;
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
            if (len < sizeof(line) - 1)
                line[len++] = buf[i];
            continue;
        }
        line[len] = '\0';
        memcpy(message, line, len + 1);
        len = 0;
        fprintf(stderr, "foreign_loop: message: %s\n", message);
    }
    return true;
}

/* poll(2) wants milliseconds; coil says nanoseconds, -1 for "no limit".
 * Rounded up, so the loop never wakes just before a timer is due. */
static int poll_timeout_ms(coil_loop *loop)
{
    int64_t ns = coil_loop_timeout_ns(loop);
    if (ns < 0)
        return -1;
    int64_t ms = (ns + 999999) / 1000000;
    return ms > 60000 ? 60000 : (int)ms;
}

int main(int argc, char **argv)
{
    int port = 0;
    if (argc == 3 && !strcmp(argv[1], "--port")) {
        port = atoi(argv[2]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: foreign_loop [--port N]\n");
        return 2;
    }
    coil_loop loop;
    int err = coil_loop_init(&loop, NULL);
    if (err < 0) {
        fprintf(stderr, "foreign_loop: cannot start a loop: %s\n", strerror(-err));
        return 1;
    }
    coil_http_fn_service svc;
    coil_http_server_config cfg;
    coil_http_server_config_default(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = (uint16_t)port;
    cfg.service = coil_http_fn_init(&svc, show_message, NULL);
    coil_http_server *srv;
    err = coil_http_server_start(&loop, &cfg, &srv);
    if (err < 0) {
        fprintf(stderr, "foreign_loop: listen: %s\n", strerror(-err));
        coil_loop_exit(&loop);
        return 1;
    }
    fprintf(stderr, "foreign_loop: listening on 127.0.0.1:%d (%s)\n", coil_http_server_port(srv),
            coil_loop_backend(&loop));

    /* The program's own loop. coil's fd becomes readable when coil has work;
     * coil_loop_timeout_ns says how long the program may sleep at most. */
    bool input_open = true;
    for (;;) {
        struct pollfd fds[2] = {
            { .fd = coil_loop_fd(&loop), .events = POLLIN },
            { .fd = input_open ? STDIN_FILENO : -1, .events = POLLIN },
        };
        if (poll(fds, 2, poll_timeout_ms(&loop)) < 0 && errno != EINTR) {
            perror("foreign_loop: poll");
            return 1;
        }
        if (fds[1].revents && !read_input()) {
            input_open = false;
            coil_http_server_stop(srv); /* graceful: requests in flight finish */
        }
        /* Never blocks (timeout 0): this thread sleeps only in poll(). */
        int alive = coil_loop_run_once(&loop, 0);
        if (alive < 0) {
            fprintf(stderr, "foreign_loop: %s\n", strerror(-alive));
            return 1;
        }
        if (alive == 0 && !input_open)
            break;
    }
    if (coil_loop_exit(&loop) < 0)
        abort(); /* -EBUSY: something is still open, a bug in this program */
    fprintf(stderr, "foreign_loop: stopped\n");
    return 0;
}
