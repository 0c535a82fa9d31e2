/*
 * coil-proxy's forwarding service, in parts: the heads it writes
 * (forward_head.c), the request body going up while the response comes
 * down (upload.c), and the tunnel after a protocol switch (tunnel.c).
 */
#ifndef COIL_PROXY_FORWARD_H
#define COIL_PROXY_FORWARD_H

#include "proxy.h"

/* ---- forward_head.c ---- */

typedef struct px_head_buf {
    char *p;
    size_t len, cap;
    bool overflow;             /* set when the head did not fit in cap */
} px_head_buf;

/* The request's Upgrade field if it asks for a protocol switch, else NULL. */
const coil_http_field *px_upgrade_field(const coil_http_request *req);

/* Writes the request head for the upstream into h: the client's fields
 * minus hop-by-hop ones, X-Forwarded-For/-Proto/-Host and Via, and the
 * framing (chunked, or the Content-Length). tunnel keeps Connection: upgrade
 * and the Upgrade field. */
void px_build_request_head(px_head_buf *h, coil_http_request *req, bool chunked, bool tunnel);

/* The response fields to hand on: the upstream's minus hop-by-hop ones (a
 * 101 keeps its Upgrade) and Date, plus Via. out has cap entries, pointing
 * into rh. Returns the count. */
unsigned px_response_fields(const coil_http_response_head *rh, coil_http_field *out, unsigned cap);

/* ---- upload.c ---- */

/* The request body on its way up, moved by a task of its own so that the
 * response can come down meanwhile (an upstream may answer before it read
 * the whole body, or echo it as it arrives). */
typedef struct px_upload {
    px_core *core;
    coil_http_request *req;
    coil_sock *to;             /* the upstream's socket */
    bool chunked;              /* re-framed as chunks */
    bool splice;               /* forward = splice (Content-Length bodies) */
    int64_t idle_ns;
    bool gated;                /* waits for px_upload_open() first (Expect: 100-continue) */
    coil_event go;
    bool skip;                 /* told not to send the body after all */
    coil_buf first;            /* body bytes read before the upstream was chosen: sent first */
    /* results, read once done */
    bool done;
    int64_t done_ns;           /* loop clock when it ended */
    int client_error;          /* reading the client failed (or passed the limit): < 0 */
    bool upstream_failed;      /* the upstream stopped taking the body */
    uint64_t bytes;
    coil_task *task;
} px_upload;

/* Starts moving req's body to the socket to, beginning with *first (body
 * bytes already read, taken over and emptied; may be empty). With gated,
 * nothing is read until px_upload_open(). When the client fails, to is shut
 * down so that a task reading the response learns it at once. Returns 0 or
 * -ENOMEM (*first is released either way). */
int px_upload_start(px_upload *u, px_core *core, coil_http_request *req, coil_sock *to,
                    coil_buf *first, bool chunked, bool splice, int64_t idle_ns, bool gated);

/* Lets a gated upload read the body (send = true), or end without reading
 * it (send = false: a final answer came first). */
void px_upload_open(px_upload *u, bool send);

/* Waits for the upload to end; cancels it first if cancel. True if the
 * whole body went up. From the task that started it. */
bool px_upload_finish(px_upload *u, bool cancel);

/* ---- tunnel.c ---- */

/* Relays bytes both ways between the client's socket and the upstream's
 * until both sides closed their direction, either fails, or nothing moved
 * for idle_ns. client_early and up_early (released here) are bytes each
 * side sent before the switch. Returns the bytes moved up and down. */
void px_tunnel(px_core *core, coil_sock *client, coil_buf *client_early, coil_sock *up,
               coil_buf *up_early, int64_t idle_ns, uint64_t *bytes_up, uint64_t *bytes_down);

#endif
