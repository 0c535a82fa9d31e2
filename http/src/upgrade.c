/*
 * Protocol switch (RFC 9110 7.8): the 101 answer, then the connection is the
 * handler's until it returns. The server keeps ownership of the socket so
 * that closing it stays in one place (the connection task).
 */
#include <errno.h>
#include <string.h>

#include "http_impl.h"

int coil_http_upgrade(coil_http_request *req, const coil_http_field *fields, unsigned nfields,
                      coil_sock **sock, coil_buf *early)
{
    coil__http_exchange *x = req->x;
    coil__http_conn *c = x->conn;
    *early = (coil_buf){ 0 };
    if (!req->upgrade || x->resp_state != RESP_NONE)
        return -EINVAL;
    /* Bytes still owed to the request body would be read as the new
     * protocol's. */
    if (x->body_state != BODY_DONE) {
        size_t used = 0;
        if (x->body_state != BODY_READING || req->content_length > 0 || req->chunked ||
            coil__http_parser_feed(x->parser, c->rx.data, c->rx.len, &used) != COIL__HTTP_DONE)
            return -EINVAL;
        x->body_state = BODY_DONE;
    }
    static const char line[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n";
    int err = coil__http_out_append(x, line, sizeof(line) - 1);
    for (unsigned i = 0; i < nfields && !err; i++) {
        const coil_http_field *f = &fields[i];
        if (coil__http_field_is(f, "content-length") || coil__http_field_is(f, "transfer-encoding") ||
            coil__http_field_is(f, "connection"))
            continue;
        err = coil__http_out_field(x, f);
    }
    if (!err)
        err = coil__http_out_append(x, "\r\n", 2);
    if (!err)
        err = coil__http_flush(x);
    x->status = 101;
    c->close_after = true;
    if (err < 0) {
        x->resp_state = RESP_FAILED;
        return err;
    }
    x->resp_state = RESP_ENDED;
    *early = c->rx;
    c->rx = (coil_buf){ 0 };
    *sock = &c->sock;
    return 0;
}
