/*
 * coil HTTP/1.1 server layer: per-core listeners, keep-alive and pipelining,
 * request bodies read as streams of borrowed chunks, responses streamed with
 * Content-Length or chunked, and handlers composed from services and
 * middleware in the spirit of tower's Service/Layer.
 *
 * Threading: everything here runs on one loop's thread. A handler runs in
 * the connection's task: it may wait (read the body, sleep, call an
 * upstream) without blocking its core.
 *
 * Conventions for every function below that takes a request: req is the
 * one the handler was given; it, and every pointer read from it, is valid
 * until the handler returns, and the function must be called from the
 * handler's task (or a task it joins before returning). Arguments that
 * point to caller memory (fields, bodies, names) are read during the call
 * only unless a comment says otherwise. Errors are negative errno values.
 */
#ifndef COIL_HTTP_H
#define COIL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "coil/coil.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A header field. Name and value are not NUL-terminated. */
typedef struct coil_http_field {
    const char *name;
    uint32_t name_len;
    const char *value;
    uint32_t value_len;
} coil_http_field;

/* Builds a field from two C strings (for responses). */
#define COIL_HTTP_FIELD(n, v) { (n), (uint32_t)(sizeof(n) - 1), (v), (uint32_t)__builtin_strlen(v) }

struct coil__http_exchange;

/* A request as the handler sees it. Every pointer in it is valid until the
 * handler returns. */
typedef struct coil_http_request {
    void *data;                   /* public: for handlers and middleware */
    /* read-only */
    const char *method;
    uint32_t method_len;
    const char *target;           /* as received */
    uint32_t target_len;
    const char *path;             /* without the query */
    uint32_t path_len;
    const char *query;            /* NULL if none */
    uint32_t query_len;
    const char *host;
    uint32_t host_len;
    int version_minor;            /* HTTP/1.<version_minor> */
    const coil_http_field *fields;
    uint32_t nfields;
    int64_t content_length;       /* -1 when not declared */
    bool chunked;
    bool keep_alive;              /* the client wants the connection kept */
    bool expect_continue;         /* Expect: 100-continue (HTTP/1.1 only) */
    bool upgrade;                 /* asks to switch protocols: Connection: upgrade and an
                                   * Upgrade field (HTTP/1.1 only); see coil_http_upgrade() */
    const struct sockaddr_storage *peer;
    coil_loop *loop;
    unsigned core;                /* index given to coil_http_server_start */
    int64_t start_ns;             /* loop clock when the head was complete */
    /* private */
    struct coil__http_exchange *x;
} coil_http_request;

/* True if the method is exactly m (case-sensitive, as RFC 9110 says); m is a
 * NUL-terminated string. Cannot fail. */
bool coil_http_method_is(const coil_http_request *req, const char *m);

/* The first field called name (case-insensitive), or NULL. The field points
 * into the request and is valid until the handler returns. Cannot fail. */
const coil_http_field *coil_http_field_find(const coil_http_request *req, const char *name);

/* ---- request body ---- */

/* Reads the next piece of the request body as a borrowed view (see buf.h:
 * release it, or send it with coil_send_buf / coil_http_response_write_buf).
 * Sends "100 Continue" first if the client asked for it and nothing was
 * answered yet. Returns the byte count (> 0), 0 at the end of the body,
 * -EMSGSIZE when the body passes the limit (the server then answers 413 if
 * no response started), -ETIMEDOUT (idle or too slow: 408), -EPROTO (bad
 * framing: 400), -ECONNRESET / -EPIPE (client gone), -ECANCELED. */
ssize_t coil_http_body_read(coil_http_request *req, coil_buf *out);

/* True when the next coil_http_body_read() would return body bytes without
 * waiting for the client (received already, or known to wait on the
 * socket: coil_sock_rx_more). Loop thread. */
bool coil_http_body_ahead(const coil_http_request *req);

/* Same, copying into buf[0..len) (caller memory, written during the call
 * only; it may be on the task's stack). Returns the bytes copied, 0 at the
 * end of the body, or the errors of coil_http_body_read. */
ssize_t coil_http_body_read_into(coil_http_request *req, void *buf, size_t len);

/* Reads the whole body into a malloc'd buffer (*out, NUL-terminated for
 * convenience, free() it) of at most max bytes. Returns its length or an
 * error as coil_http_body_read (-EMSGSIZE past max). */
ssize_t coil_http_body_read_all(coil_http_request *req, char **out, size_t max);

/* Moves the whole request body, which must have a Content-Length, to the
 * socket to, inside the kernel where it can: body bytes the connection
 * already received are sent from its buffers, the rest goes with
 * coil_splice() straight from the client's socket (so it is neither copied
 * to user space nor seen by middleware). Sends "100 Continue" first as
 * coil_http_body_read does. Afterwards the body is done (a next
 * coil_http_body_read returns 0) and the next pipelined request is parsed as
 * usual. Each step — a read from the client, a write to to — must make
 * progress within the larger of idle_ns and the server's body_idle_ns; the
 * server's body_min_rate applies. to must be a socket of the same loop,
 * valid for the call, with no other send on it under way.
 * Returns the bytes moved (0 when the body was already read), or
 * -EINVAL: the body is chunked (nothing was read: use coil_http_body_read),
 * -EMSGSIZE: the declared length passes the body limit (413 if no response
 *  started), -EPIPE: to failed or stalled (an unknown part of the body went
 *  out; the connection to the client will close), and the client-side errors
 *  of coil_http_body_read: -ETIMEDOUT, -EPROTO, -ECONNRESET, -ECANCELED.
 * Which side failed is inferred from the client socket's state afterwards
 * (see the source): a client that closes just as to stalls may be reported
 * as -ECONNRESET. Loop thread, from the handler's task. */
ssize_t coil_http_body_splice(coil_http_request *req, coil_sock *to, int64_t idle_ns);

/* Sets this request's body limit (bytes) before the body is read; routes
 * use it. The server's limits.max_body stays the ceiling: a declared length
 * above it was refused with 413 before the handler ran, so a route can only
 * lower the limit (0 here means "the server's"). A server that leaves
 * limits.max_body at 0 lets each request choose any limit. A declared
 * length above the limit fails the first body read with -EMSGSIZE, before
 * "100 Continue" and before any body byte is read. Loop thread, from the
 * handler's task (or a task it waits for). */
void coil_http_set_body_limit(coil_http_request *req, uint64_t max);

/* The status the server answers with when reading the request body
 * failed with err and no response began: 413 (-EMSGSIZE), 408
 * (-ETIMEDOUT), 400 (-EPROTO), else 0 (the client is gone, nobody is
 * answered). For handlers that count answers before the server sends
 * them. Any thread. */
int coil_http_body_error_status(int err);

/* Sends "100 Continue" now, if the client asked for it (expect_continue) and
 * neither it nor a final response went out yet; otherwise does nothing.
 * For handlers that decide when the client may send the body, such as a
 * proxy relaying its upstream's 100. Reading the body sends it anyway.
 * Returns 0, or -EPIPE / -ETIMEDOUT (the connection will close). Loop
 * thread, from the handler's task; not while another task sends on this
 * connection. */
int coil_http_send_continue(coil_http_request *req);

/* The connection closes after this response (with Connection: close in
 * its head when no response began yet; a head already queued by
 * coil_http_response_begin keeps what it says). For a handler that leaves a request body unread and
 * does not want the server to read and drop the rest. Loop thread. */
void coil_http_connection_close(coil_http_request *req);

/* Switches the connection to another protocol (RFC 9110 7.8): sends
 * "101 Switching Protocols" with Connection: upgrade and fields (which
 * should hold the Upgrade field of the protocol chosen; Content-Length,
 * Transfer-Encoding and Connection fields among them are dropped), then
 * hands over the connection. *sock is the client's socket, the handler's
 * to use until it returns; the server closes it afterwards. *early receives
 * the bytes the client already sent after the request (they belong to the
 * new protocol; may be empty): the caller releases it. Answers to earlier
 * pipelined requests go out first. Returns 0, -EINVAL (req->upgrade is
 * false, its body is not read to the end, or a response already began),
 * -EPIPE / -ETIMEDOUT (the 101 could not be sent; the connection closes).
 * Loop thread, from the handler's task. */
int coil_http_upgrade(coil_http_request *req, const coil_http_field *fields, unsigned nfields,
                      coil_sock **sock, coil_buf *early);

/* Text appended to this request's access log line (coil_http_access_log),
 * e.g. "upstream=10.0.0.2:80 upstream_us=1234". Copied (at most 191 bytes
 * are kept); a later call replaces it. Loop thread. */
void coil_http_log_note(coil_http_request *req, const char *text);

/* ---- response ---- */

/* Sends a complete response with a fixed body; fields and body are read
 * during the call only (they may be on the stack). fields may be NULL; Date,
 * Content-Length and Connection are added by the server. Body bytes are not
 * sent for HEAD requests and 1xx/204/304 statuses. Returns 0 or a negative
 * errno (-EALREADY if a response already started, -EPIPE, -ETIMEDOUT...). */
int coil_http_respond(coil_http_request *req, int status, const coil_http_field *fields,
                      unsigned nfields, const void *body, size_t len);

/* Starts a streamed response: content_length >= 0 announces the length,
 * -1 streams chunked (HTTP/1.1) or until close (HTTP/1.0). The head is
 * serialised here (fields are not kept) and sent with the first write.
 * Returns 0, -EALREADY (a response already began), -EINVAL (status outside
 * 100..999, or a field that would split the head: CR or LF in it, ':' in
 * a name), or an error of sending queued output. */
int coil_http_response_begin(coil_http_request *req, int status, const coil_http_field *fields,
                             unsigned nfields, int64_t content_length);

/* Sends body bytes of a streamed response (one chunk when chunked); data is
 * read until the call returns, never after. Waits
 * while the client is slow, but a client that makes no progress for the
 * server's send timeout gets -ETIMEDOUT. Returns len, or -EPIPE /
 * -ECONNRESET (client gone), -ETIMEDOUT, -EMSGSIZE (more than announced). */
ssize_t coil_http_response_write(coil_http_request *req, const void *data, size_t len);

/* Same with a borrowed buffer, sent from where it is and released whatever
 * the outcome (*buf is empty afterwards, the caller no longer owns it).
 * Returns the byte count or the errors of coil_http_response_write. */
ssize_t coil_http_response_write_buf(coil_http_request *req, coil_buf *buf);

/* Same, telling the kernel whether more body bytes follow at once (see
 * coil_sendv_more): with more set, a partial TCP segment waits for the
 * next write to fill it. Pass true only when the next bytes are in hand
 * (coil_http_client_body_ahead, coil_http_body_ahead), never for the last
 * write. */
ssize_t coil_http_response_write_buf_more(coil_http_request *req, coil_buf *buf, bool more);

/* Most buffers coil_http_response_write_bufs() takes at once. */
#define COIL_HTTP_WRITE_BUFS_MAX 8

/* Sends bufs[0..n) as one piece of the body (one chunk when chunked), in
 * a single send where the bytes allow: a relay holding several received
 * pieces hands them over together, rather than one send each or a
 * partial segment corked for the next (more, as in
 * coil_http_response_write_buf_more, is for bytes beyond these). n is 1
 * to COIL_HTTP_WRITE_BUFS_MAX. Every buffer is released whatever the
 * outcome (each is empty afterwards). Returns the total byte count, or
 * -EINVAL (n out of range) and the errors of coil_http_response_write.
 * Loop thread only, like every response call. */
ssize_t coil_http_response_write_bufs(coil_http_request *req, coil_buf *bufs, unsigned n,
                                      bool more);

/* Ends a streamed response (the last chunk, with trailers if chunked;
 * trailers are ignored otherwise). Returns 0 or a negative errno; -EPROTO if
 * fewer bytes than announced were written (the connection is then closed). */
int coil_http_response_end(coil_http_request *req, const coil_http_field *trailers,
                           unsigned ntrailers);

/* True once a response head was queued. Cannot fail. */
bool coil_http_response_started(const coil_http_request *req);

/* Room for the longest chunk-size line: SIZE_MAX in hex, then CRLF. */
#define COIL_HTTP_CHUNK_LINE_MAX (2 * sizeof(size_t) + 2)

/* Writes the line that opens a chunk of len bytes in a chunked body: len in
 * lower-case hex without leading zeros, then CRLF (len 0 gives "0\r\n", the
 * last chunk's). out is caller memory, written during the call only, with no
 * terminating NUL. For code that frames a chunked body itself (a relay
 * re-framing a request body); coil_http_response_write frames its own.
 * Returns the line's length. Cannot fail. Any thread. */
size_t coil_http_chunk_line(char out[COIL_HTTP_CHUNK_LINE_MAX], size_t len);

/* Waits until the client closes the connection or the deadline passes, for
 * long-lived responses that otherwise only learn it at their next write.
 * Returns 0 (closed), -ETIMEDOUT, -ECANCELED. */
int coil_http_wait_client_gone(coil_http_request *req, int64_t deadline);

/* ---- services and middleware ---- */

typedef struct coil_http_service coil_http_service;

/* Handles one request. Return 0 when handled (if no response was started the
 * server answers 500); a negative errno for failure (500 if nothing was sent,
 * else the connection is closed). */
typedef int (*coil_http_call_fn)(coil_http_service *self, coil_http_request *req);

/* A service: something that answers requests. Middleware is a service that
 * wraps another (inner). Caller-allocated; must outlive the server. */
struct coil_http_service {
    coil_http_call_fn call;
    coil_http_service *inner;  /* the wrapped service, for middleware */
    void *data;                /* public */
};

static inline int coil_http_call(coil_http_service *svc, coil_http_request *req)
{
    return svc->call(svc, req);
}

/* A plain function as a service. */
typedef int (*coil_http_handler_fn)(coil_http_request *req, void *data);
typedef struct coil_http_fn_service {
    coil_http_service svc;
    coil_http_handler_fn fn;
} coil_http_fn_service;
/* The init functions of this section fill caller memory (s, t, c, a, r)
 * that must outlive every server using the service, link it to inner, and
 * return the service to pass on; they cannot fail (a failed allocation in
 * coil_http_access_log_init only turns buffering off) and do not wait. Any
 * thread, before the service is used; the service then belongs to the
 * loop whose server calls it. data is passed to fn untouched. */
coil_http_service *coil_http_fn_init(coil_http_fn_service *s, coil_http_handler_fn fn, void *data);

/* Timeout: the inner service gets ns nanoseconds; past that its current wait
 * returns -ETIMEDOUT and, if it had not started a response, the client gets
 * 503. */
typedef struct coil_http_timeout {
    coil_http_service svc;
    int64_t ns;
} coil_http_timeout;
coil_http_service *coil_http_timeout_init(coil_http_timeout *t, coil_http_service *inner, int64_t ns);

/* Concurrency limit: at most max requests run the inner service at once on
 * this core; others wait (up to wait_ns, then 503). */
typedef struct coil_http_concurrency {
    coil_http_service svc;
    unsigned max, running;
    int64_t wait_ns;
    coil_event freed;
} coil_http_concurrency;
coil_http_service *coil_http_concurrency_init(coil_http_concurrency *c, coil_http_service *inner,
                                              unsigned max, int64_t wait_ns);

/* Load shedding: when max requests already run on this core, answer 503
 * with Retry-After at once instead of queueing. */
typedef struct coil_http_shed {
    coil_http_service svc;
    unsigned max, running;
    uint64_t shed;             /* read-only: requests refused */
} coil_http_shed;
coil_http_service *coil_http_shed_init(coil_http_shed *s, coil_http_service *inner, unsigned max);

/* A log sink: a thread of its own that writes batches of log lines to fd,
 * so that a slow disk or a full pipe never blocks a core. Shared by the
 * access logs of all cores. */
typedef struct coil_http_log_sink coil_http_log_sink;

/* Starts the writer thread for fd (not closed by coil). At most
 * max_pending bytes wait to be written (0: 16 MiB); beyond that, batches
 * are dropped and counted. Returns 0, -ENOMEM, -EAGAIN (no thread). Any
 * thread. */
int coil_http_log_sink_start(int fd, size_t max_pending, coil_http_log_sink **out);

/* Queues len bytes (copied). Returns 0, or -ENOBUFS when they were dropped
 * (too much pending, or the sink is stopping). Any thread; never waits for
 * the write itself. */
int coil_http_log_sink_put(coil_http_log_sink *s, const char *data, size_t len);

/* Bytes dropped so far. Any thread. */
uint64_t coil_http_log_sink_dropped(coil_http_log_sink *s);

/* Writes what is queued, stops the thread and frees s. Call once every
 * access log using it was exited (coil_http_access_log_exit). NULL is
 * harmless. Not from a thread that is one of its writers' loops while they
 * still run. */
void coil_http_log_sink_stop(coil_http_log_sink *s);

/* Access log: one line per request (time, client, method, target, status,
 * bytes in/out, duration, core, and the handler's coil_http_log_note),
 * buffered per core and handed over in batches (at 8 KiB, or after 1 s). */
typedef struct coil_http_access_log {
    coil_http_service svc;
    int fd;
    coil_http_log_sink *sink;
    char *buf;
    size_t len, cap;
    coil_timer flush_timer;
} coil_http_access_log;

/* Writes the batches to fd with write(2) on the loop's thread: for an fd
 * that never blocks for long (a terminal, a fast local file). fd is not
 * closed by coil. Returns &a->svc. Loop thread. */
coil_http_service *coil_http_access_log_init(coil_http_access_log *a, coil_http_service *inner,
                                             coil_loop *loop, int fd);

/* Hands the batches to sink (which must outlive a) instead, so the loop
 * never waits on the write. Returns &a->svc. Loop thread. */
coil_http_service *coil_http_access_log_init_sink(coil_http_access_log *a, coil_http_service *inner,
                                                  coil_loop *loop, coil_http_log_sink *sink);
/* Writes what is buffered, stops the flush timer and frees the buffer; a
 * must not serve requests afterwards. Call it on a's loop thread once its
 * servers have stopped and drained. Cannot fail. */
void coil_http_access_log_exit(coil_http_access_log *a);

/* ---- router ---- */

typedef struct coil_http_route {
    const char *method;        /* NULL: any method */
    const char *path;          /* exact path, or prefix when prefix is set */
    bool prefix;
    coil_http_service *service;
    uint64_t max_body;         /* 0: the server's limit; never above it */
} coil_http_route;

/* Picks the route whose path matches (exact before prefix, longest prefix
 * first); 404 when none matches the path, 405 with Allow when the path
 * matches but not the method. routes must outlive the router. */
typedef struct coil_http_router {
    coil_http_service svc;
    const coil_http_route *routes;
    unsigned nroutes;
} coil_http_router;
coil_http_service *coil_http_router_init(coil_http_router *r, const coil_http_route *routes,
                                         unsigned nroutes);

/* ---- server ---- */

typedef struct coil_http_limits {
    uint32_t max_request_line;   /* default 8 KiB (414) */
    uint32_t max_header_bytes;   /* default 16 KiB (431) */
    uint32_t max_headers;        /* default 100 (431) */
    uint32_t max_chunk_ext;      /* default 1 KiB per chunk line (400) */
    uint64_t max_body;           /* default 1 MiB (413); 0 = none */
} coil_http_limits;

typedef struct coil_http_timeouts {
    int64_t header_ns;           /* request line + fields, in total (slowloris): 10 s */
    int64_t body_idle_ns;        /* between body bytes: 30 s */
    uint64_t body_min_rate;      /* bytes/s averaged after body_idle_ns; 0 = off */
    int64_t keepalive_ns;        /* idle between requests: 60 s */
    int64_t send_idle_ns;        /* a send that makes no progress: 30 s */
    int64_t drain_ns;            /* graceful stop: in-flight work gets this long: 10 s */
} coil_http_timeouts;

typedef struct coil_http_server_config {
    const char *host;            /* numeric address; NULL = 0.0.0.0 */
    uint16_t port;               /* 0 = any (read back with coil_http_server_port) */
    int backlog;                 /* default 1024 */
    bool reuseport;              /* one listener per core on the same port */
    coil_http_service *service;
    coil_http_limits limits;
    coil_http_timeouts timeouts;
    unsigned core;               /* reported in coil_http_request.core */
} coil_http_server_config;

typedef struct coil_http_server coil_http_server;

/* Counters of one server (one core). */
typedef struct coil_http_server_stats {
    uint64_t connections_accepted;
    uint64_t connections_open;
    uint64_t requests;
    uint64_t errors_4xx_parse;   /* requests rejected by the parser */
    uint64_t timeouts;
} coil_http_server_stats;

/* Fills *cfg with the defaults listed above (port 0, no service). Cannot
 * fail. Any thread. */
void coil_http_server_config_default(coil_http_server_config *cfg);

/* Listens and starts accepting on loop. cfg is copied (cfg->host is read
 * during the call only); cfg->service must outlive the server. *out is
 * valid until coil_http_server_stop(). Returns 0, or -errno from listen,
 * -ENOMEM, -EINVAL (no service, limits too small, or a host that is not a
 * numeric address). Loop thread, inside or outside a task. */
int coil_http_server_start(coil_loop *loop, const coil_http_server_config *cfg,
                           coil_http_server **out);

/* The port the server listens on (the one chosen when cfg.port was 0), or
 * a negative errno as coil_sock_port(). Loop thread, until
 * coil_http_server_stop(). */
int coil_http_server_port(const coil_http_server *srv);
/* Copies the server's counters into *out (written during the call only).
 * Cannot fail. Loop thread, until coil_http_server_stop(). */
void coil_http_server_stats_get(const coil_http_server *srv, coil_http_server_stats *out);

/* Graceful stop: stops accepting (the listener closes), closes idle
 * connections, lets requests in flight finish within drain_ns (then cancels
 * them), and frees the server once its last connection is gone — run the
 * loop until then (coil_loop_run returns when nothing is left). srv is
 * invalid after this call. Loop thread, outside any of the server's tasks. */
void coil_http_server_stop(coil_http_server *srv);

/* The reason phrase of a status code ("OK", "Not Found"...), or "". The
 * string is static. Cannot fail. Any thread. */
const char *coil_http_reason(int status);

#ifdef __cplusplus
}
#endif
#endif
