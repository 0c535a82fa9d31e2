/*
 * Shared by the HTTP unit tests: a coil_http_server on the test's loop,
 * driven by client tasks on the same loop that write raw bytes and parse
 * the responses back.
 *
 * Client tasks never assert: a failed CHECK records its line and jumps to
 * the task's `out:` label, so sockets are closed before cmocka unwinds;
 * run_main() reports the failure after the server stopped and the loop went
 * idle. A task returns `fail_line ? -1 : 0`.
 */
#ifndef COIL_TEST_HTTP_FIXTURE_H
#define COIL_TEST_HTTP_FIXTURE_H

#include "harness.h"

#include <stdio.h>
#include <sys/types.h>

#include "coil/http.h"

/* The test's loop, its server (NULL once stopped) and the port it listens
 * on. setup() and server_start() fill them. */
extern coil_loop loop;
extern coil_http_server *srv;
extern int port;

/* ---- failure recording for tasks ---- */

/* The first failure of the current test: its line (0: none), what failed,
 * and the table case or step being run (tests fill fail_where). */
extern int fail_line;
extern char fail_what[256];
extern char fail_where[128];

/* Records a failure unless one is recorded already. */
void note_fail(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            note_fail(__LINE__, "%s", #cond);                                                      \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            note_fail(__LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);                         \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* A deadline ms milliseconds from now on the test's loop. */
int64_t dl(int64_t ms);

/* ---- fixture ---- */

/* cmocka setup/teardown: a fresh loop per test; teardown fails the test if
 * it left a descriptor open. */
int setup(void **state);
int teardown(void **state);

/* The default configuration on 127.0.0.1, any port, serving svc. */
coil_http_server_config base_cfg(coil_http_service *svc);
/* Starts srv with cfg (asserts it started) and sets port. */
void server_start(const coil_http_server_config *cfg);
/* Runs the loop until nothing is left (the stopped server freed itself). */
void run_until_idle(void);
/* Runs a test's main task, stops the server, lets it wind down, and only
 * then reports what the task found. */
void run_main(coil_task_fn fn, void *arg);

/* ---- a small raw HTTP client ---- */

#define CLI_CAP (64 * 1024)

typedef struct cli {
    coil_sock s;
    bool open;
    char *buf; /* received, not consumed: buf[0..len) */
    size_t len;
} cli;

/* Connects to port (TCP_NODELAY). Returns 0 or a negative errno. c must be
 * closed with cli_close() either way. */
int cli_open(cli *c);
void cli_close(cli *c);
/* Sends in one write, or one byte per send with a yield between. Returns 0
 * or a negative errno. */
int cli_send(cli *c, const char *p, size_t n, bool bytewise);
int cli_send_str(cli *c, const char *s);
/* One receive appended to buf. Returns what coil_recv returned, -ENOBUFS
 * when buf is full. */
ssize_t cli_fill(cli *c, int64_t deadline);
/* Drops the first n received bytes. */
void cli_consume(cli *c, size_t n);
/* Receives (5 s at most) until n bytes wait in buf. Returns 0, -EPIPE
 * (closed before), -ENOBUFS (n > CLI_CAP) or the receive's error. */
int cli_want(cli *c, size_t n);
/* True if the next received bytes are exactly s; they are consumed. */
bool cli_expect(cli *c, const char *s);
/* 1: the server closed (end of stream or reset); 0: still open after
 * wait_ns; negative: it sent more bytes (-EPROTO) or the receive failed. */
int cli_closed(cli *c, int64_t wait_ns);

typedef struct resp {
    int status;
    int interim;              /* 1xx heads before the final one */
    char head[4096];          /* the final head, NUL-terminated */
    bool has_length;
    int64_t length;
    bool chunked, close, until_eof;
    char body[8192];          /* the first bytes of the body */
    size_t body_len;          /* all bytes of the body */
    char trailers[512];
} resp;

/* The value of the first field called name, NUL-terminated into out (out
 * may be NULL to test for presence). */
bool resp_field(const resp *r, const char *name, char *out, size_t outlen);
/* True if the body is exactly s. */
bool body_is(const resp *r, const char *s);
/* Reads one response head (final or 1xx) into r->head and r->status.
 * -EPIPE: closed before a byte. */
int read_one_head(cli *c, resp *r, int64_t deadline);
/* Reads a whole response, 1xx heads first (counted in r->interim).
 * head_req: no body follows. */
int read_response(cli *c, resp *r, bool head_req, int64_t deadline);
/* One request on c, its response into r. */
int roundtrip(cli *c, const char *req, resp *r);

/* ---- a client's steps as a test's main task ---- */

/* Steps of one client on the open connection c, r to read responses into.
 * They CHECK, with an out: label, and return fail_line ? -1 : 0. */
typedef int (*client_steps)(cli *c, resp *r);

/* run_main() with a task that opens a connection to the server (a failed
 * open is a failure), runs steps on it with a response buffer of its own,
 * and closes it. */
void run_client(client_steps steps);

/* ---- handler helpers ---- */

bool path_is(const coil_http_request *req, const char *p);
int respond_text(coil_http_request *req, int status, const char *text);
/* Reads the whole body (within the server's limit) and answers 200 with it;
 * returns the read's error if it failed, else what the answer returned.
 * read_result (may be NULL) gets what the read returned. */
int respond_echo(coil_http_request *req, ssize_t *read_result);
/* Waits (sleeping 1 ms at a time) until *flag is set; false after 5 s. */
bool wait_flag(const volatile int *flag);

#endif
