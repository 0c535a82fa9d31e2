/*
 * Private to the HTTP layer: the server, its connections, and the exchange
 * (one request and its response) that lives on a connection task's stack.
 */
#ifndef COIL_HTTP_IMPL_H
#define COIL_HTTP_IMPL_H

#include "coil/http.h"
#include "fields.h"
#include "parser.h"

_Static_assert(sizeof(coil_http_field) == sizeof(coil__http_field),
               "public and parser fields share one layout");

#define COIL__HTTP_OUT_CAP 16384

typedef struct coil__http_conn coil__http_conn;

struct coil_http_server {
    coil_loop *loop;
    coil_http_server_config cfg;
    coil_sock listener;
    coil_task *acceptor;
    coil__http_conn *conns;
    unsigned nconns;
    bool stopping;
    bool acceptor_done;
    coil_timer drain_timer;
    coil_http_server_stats stats;
};

struct coil__http_conn {
    coil_sock sock;
    coil_http_server *srv;
    struct sockaddr_storage peer;
    coil_buf rx;               /* received bytes not parsed yet */
    coil_task *task;           /* NULL while parked */
    coil__http_conn *prev, *next;
    bool close_after;          /* close once the current exchange ends */
    bool awaiting;             /* the task waits for the first byte of a request */
};

enum { BODY_NONE, BODY_READING, BODY_DONE, BODY_FAILED };
enum { RESP_NONE, RESP_BEGUN, RESP_ENDED, RESP_FAILED };

typedef struct coil__http_exchange {
    coil__http_conn *conn;
    coil__http_parser *parser;
    /* body */
    int body_state;
    int body_error;
    uint64_t body_limit;
    uint64_t body_read;
    int64_t body_first_ns;
    bool continue_sent;
    coil_buf held;             /* rest of a view coil_http_body_read_into had no room for */
    /* response */
    int resp_state;
    int status;
    bool chunked;              /* response framed chunked */
    bool no_body;              /* HEAD, 1xx, 204, 304 */
    bool until_close;          /* HTTP/1.0 stream without length */
    int64_t resp_len;          /* announced, -1 none */
    uint64_t resp_written;
    char *out;                 /* head bytes and small bodies waiting to be sent */
    size_t out_len;
    size_t out_prev;           /* bytes of out that answer earlier pipelined requests */
    uint64_t bytes_out;
    /* Everything above starts cleared; what follows is set field by field
     * (coil__http_exchange_init): clearing it all cost more than the rest
     * of an exchange's set-up. */
    coil_http_request req;
    char log_note[192];        /* coil_http_log_note(), for the access log */
} coil__http_exchange;

/* exchange.c */
void coil__http_exchange_init(coil__http_exchange *x, coil__http_conn *c, coil__http_parser *p,
                              char *out);
/* Sends what waits in x->out. Returns 0 or a negative errno. */
int coil__http_flush(coil__http_exchange *x);
/* Queues bytes behind what waits in x->out (sending first when full).
 * Returns 0 or a negative errno. */
int coil__http_out_append(coil__http_exchange *x, const void *p, size_t len);
/* Queues "name: value\r\n". Returns 0 or a negative errno. */
int coil__http_out_field(coil__http_exchange *x, const coil_http_field *f);
/* True if the field is called lit, a lower-case string literal (the case
 * of the field's name does not matter). */
#define coil__http_field_is(f, lit) COIL__HTTP_IS((f)->name, (f)->name_len, lit)
/* Answers with a short plain-text error and marks the connection to close. */
int coil__http_respond_error(coil__http_exchange *x, int status, const char *why);
/* Reads and drops the rest of the request body (up to its limit). Returns 0
 * when the body ended, a negative errno when the connection cannot be
 * reused. */
int coil__http_body_discard(coil__http_exchange *x);
/* Finishes the response after the handler returned. */
int coil__http_exchange_finish(coil__http_exchange *x, int handler_result);

/* After a coil_splice() from `from` failed with err: true when the source
 * is to blame (closed, reset, or silent past the deadline), false when the
 * sink is (it refused or stalled while the source still had bytes). A
 * heuristic — the call reports one errno for both sides — good enough to
 * pick the status to answer with. */
bool coil__http_splice_source_failed(coil_sock *from, ssize_t err);

/* date.c: "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" for a
 * three-digit status, cached per thread for the last status and second;
 * its length in *len. Valid until the thread's next call. */
const char *coil__http_status_date(int status, size_t *len);

/* Drops the first n bytes of a received view (they were parsed); the
 * buffer goes back to its pool once nothing of it is left. */
static inline void coil__http_buf_consume(coil_buf *b, size_t n)
{
    b->data += n;
    b->len -= n;
    if (!b->len)
        coil_buf_release(b);
}

#endif
