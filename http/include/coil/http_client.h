/*
 * An HTTP/1.1 client connection (the proxy's upstream side): send a request
 * head you composed, stream its body, read the response head, then the
 * response body as borrowed views of the buffers it arrived in. The response
 * goes through the same parser and checks as requests do; anything
 * ambiguous (Content-Length with Transfer-Encoding, differing lengths,
 * obs-fold, unknown codings, a bad status line) is an error, never passed on.
 *
 * Threading: loop thread; every call that waits is made from a task.
 */
#ifndef COIL_HTTP_CLIENT_H
#define COIL_HTTP_CLIENT_H

#include "coil/http.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_http_client coil_http_client;

/* The head of a response. Pointers are valid until the next
 * coil_http_client_read_head() or coil_http_client_close(). */
typedef struct coil_http_response_head {
    int status;
    int version_minor;
    const coil_http_field *fields;
    uint32_t nfields;
    int64_t content_length;    /* -1 when not declared */
    bool chunked;
    bool keep_alive;           /* the server keeps the connection after this response */
    bool has_body;
} coil_http_response_head;

/* Connects to addr (addr is read during the call only). max_header_bytes
 * bounds the response head (0: 16 KiB). Returns 0 and *out, valid until
 * coil_http_client_close(), or -ECONNREFUSED, -ETIMEDOUT, -ECANCELED,
 * -ENOMEM, ... (*out is then not set). From a task of loop. */
int coil_http_client_connect(coil_loop *loop, const struct sockaddr *addr, socklen_t len,
                             uint32_t max_header_bytes, int64_t deadline, coil_http_client **out);

/* The connection's socket, for sending the request (coil_send, coil_sendv,
 * coil_send_buf). It belongs to c: valid until coil_http_client_close(),
 * never to be closed by the caller. Cannot fail. Loop thread. */
coil_sock *coil_http_client_sock(coil_http_client *c);

/* Reads the head of the response to a request with this method (HEAD and
 * CONNECT change whether a body follows; method is read during the call
 * only) into *out. From a task. Interim 1xx responses other than
 * 101 are skipped (100 is returned, with no fields, while
 * coil_http_client_report_continue() is on; call again for the final head).
 * After -ETIMEDOUT the connection stays usable and a new call (with a later
 * deadline; method is then ignored) resumes the same head, so a caller can
 * wait in steps. Returns 0, -EPROTO (malformed or ambiguous response),
 * -ECONNRESET (closed before a complete head), -ETIMEDOUT, -ECANCELED, ...
 * out's pointers live until the next call or coil_http_client_close(). */
int coil_http_client_read_head(coil_http_client *c, const char *method, int64_t deadline,
                               coil_http_response_head *out);

/* Reads the next piece of the response body as a borrowed view into *out
 * (the caller then owns the view: release it or send it; see buf.h).
 * Returns the byte count, 0 at the end of the body, -EPROTO (bad framing,
 * or the connection closed before the body ended), -ETIMEDOUT,
 * -ECANCELED, ... From a task. */
ssize_t coil_http_client_read_body(coil_http_client *c, coil_buf *out, int64_t deadline);

/* True when the next coil_http_client_read_body() would return body bytes
 * without waiting for the upstream (they were received already, or the
 * socket is known to hold them: coil_sock_rx_more). A relay passes it as
 * the "more" of its next write (coil_http_response_write_buf_more). Loop
 * thread. */
bool coil_http_client_body_ahead(const coil_http_client *c);

/* Moves the whole response body, which must have a Content-Length, to the
 * socket to: bytes already received are sent from their buffers, the rest
 * goes with coil_splice() from the upstream socket, never through user
 * space. Each step must make progress within idle_ns. Afterwards the
 * response is read completely (coil_http_client_reusable() may hold).
 * to must be a socket of the same loop, valid for the call, with no other
 * send on it under way. Returns the bytes moved (0 when the body was
 * already read, or there is none), or -EINVAL: chunked or delimited by the
 * close (nothing was read: use coil_http_client_read_body), -EPIPE: to
 * failed or stalled, -EPROTO: the upstream closed before the body ended,
 * -ECONNRESET, -ETIMEDOUT (the upstream sent nothing within idle_ns),
 * -ECANCELED. After any error the connection is not reusable. */
ssize_t coil_http_client_body_splice(coil_http_client *c, coil_sock *to, int64_t idle_ns);

/* The streamed response to req continues with the body of c's response:
 * sends the head queued by coil_http_response_begin() (which must have
 * announced the same Content-Length as the upstream's), then moves the body
 * with coil_http_client_body_splice() to the client's socket and counts it
 * as written, so coil_http_response_end() finds the announced length.
 * Each step must make progress within the larger of idle_ns and the
 * server's send_idle_ns. Returns the bytes moved, or -EINVAL (no response
 * begun with a Content-Length, or c's body is chunked or runs to the close:
 * nothing was sent, stream it with coil_http_response_write_buf), -EMSGSIZE
 * (c's body is longer than announced), -EPIPE (the client is gone or
 * stalled), or the upstream's errors as coil_http_client_body_splice
 * (-EPROTO, -ECONNRESET, -ETIMEDOUT, -ECANCELED). After an error other
 * than -EINVAL the response failed, the client's connection closes and c is
 * not reusable. req and c must stay valid for the call. */
ssize_t coil_http_response_splice_from(coil_http_request *req, coil_http_client *c,
                                       int64_t idle_ns);

/* While on, coil_http_client_read_head() returns interim 100 (Continue)
 * heads instead of skipping them: for relaying Expect: 100-continue. Cannot
 * fail. Loop thread. */
void coil_http_client_report_continue(coil_http_client *c, bool on);

/* After a 101 (Switching Protocols) head: moves the bytes received beyond
 * it (the new protocol's; may be empty) to *out, which the caller releases.
 * The connection then carries no more HTTP: it is not reusable, and the
 * caller reads and writes its socket directly until
 * coil_http_client_close(). Cannot fail (*out is empty when nothing is
 * there). Loop thread. */
void coil_http_client_take_rest(coil_http_client *c, coil_buf *out);

/* True when the last response was read completely and both sides want to
 * keep the connection: it may carry another request. Loop thread. */
bool coil_http_client_reusable(const coil_http_client *c);

/* True if the peer closed or sent something unexpected while idle (checked
 * without waiting): a pooled connection in that state must not be reused.
 * Loop thread. */
bool coil_http_client_stale(coil_http_client *c);

/* Closes and frees the connection, waiting for the kernel to let go of its
 * socket (see coil_close()); c and the pointers it gave out are invalid
 * afterwards. Cannot fail. From a task. */
void coil_http_client_close(coil_http_client *c);

#ifdef __cplusplus
}
#endif
#endif
