/*
 * libFuzzer harness: bytes from a client, through the parser the way the
 * server's connection task drives it (http/src/server.c read_head, then
 * exchange.c's body reads), with no socket in between.
 *
 * Input: byte 0 picks the limits (server defaults, coil-proxy's defaults
 * with no body limit, or tiny ones that put every limit within a short
 * input) and whether a route lowers the body limit after the head; bytes
 * 1..8 cut the rest into the pieces that "arrive" (fuzz_feed.h: each in a
 * heap block of its exact size, so ASan catches a read past a piece or a
 * pointer kept into an old one).
 *
 * The loop is the server's: HEAD, BODY..., DONE, reset, the next pipelined
 * request, until ERROR or a message that does not keep the connection.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_feed.h"

static const coil__http_limits server_limits = {
    /* coil_http_server_config_default() */
    .max_request_line = 8192,
    .max_header_bytes = 16384,
    .max_headers = 100,
    .max_chunk_ext = 1024,
    .max_body = 1 << 20,
};

static const coil__http_limits proxy_limits = {
    /* coil-proxy's [proxy] defaults: the server's, but bodies unlimited */
    .max_request_line = 8192,
    .max_header_bytes = 16384,
    .max_headers = 100,
    .max_chunk_ext = 1024,
    .max_body = 0,
};

static const coil__http_limits tiny_limits = {
    .max_request_line = 64,
    .max_header_bytes = 256, /* the least coil_http_server_start() accepts */
    .max_headers = 8,
    .max_chunk_ext = 16,
    .max_body = 64,
};

static bool request_error_status(int s)
{
    return s == 400 || s == 413 || s == 414 || s == 431 || s == 501 || s == 505;
}

/* coil_http_set_body_limit(): a route may lower the limit, never raise it. */
static void route_limit(coil__http_parser *p, const coil__http_limits *lim, uint64_t max)
{
    if (!max || (lim->max_body && max > lim->max_body))
        max = lim->max_body;
    p->limits.max_body = max;
}

typedef struct run {
    fz_input in;
    coil__http_limits lim;
    coil__http_parser p;
    fz_body body;
    bool in_head;             /* the current message has not reached HEAD */
    uint64_t msg_start;
    uint64_t digest;          /* fz_digest() of every event */       /* input offset of its first byte */
} run;

/* One event (fz_event_fn). Returns false when the connection would end. */
static bool on_event(void *ctx, coil__http_event ev, const fz_event_at *where)
{
    run *r = ctx;
    coil__http_parser *p = &r->p;
    r->digest = fz_digest(r->digest, ev, where->end, p);
    uint64_t at = where->end; /* just past the bytes consumed */
    if (ev == COIL__HTTP_ERROR) {
        FZ_CHECK(request_error_status(p->error_status) && p->error_reason);
        /* A body limit a route set applies to that request's body only: a
         * declared length is judged at the head against the server's own
         * limit, whatever an earlier request on the connection set. */
        if (r->in_head && p->error_status == 413)
            FZ_CHECK(p->limits.max_body == r->lim.max_body);
        size_t again = 1;
        FZ_CHECK(coil__http_parser_feed(p, "x", 1, &again) == COIL__HTTP_ERROR && again == 0);
        return false;
    }
    FZ_CHECK(p->error_status == 0);
    if (ev == COIL__HTTP_HEAD) {
        FZ_CHECK(r->in_head);
        /* Checked against the limits in force, which a previous request's
         * route may have lowered, as on a real connection. */
        fz_check_head(&p->head, r->in.data + r->msg_start, (size_t)(at - r->msg_start), true, -1,
                      &p->limits);
        r->in_head = false;
        fz_body_begin(&r->body, &p->head, &r->in, at);
        if (r->in.mode & 4)
            route_limit(p, &r->lim, (uint64_t)(r->in.mode >> 3) * 3);
        return true;
    }
    FZ_CHECK(!r->in_head);
    if (ev == COIL__HTTP_BODY) {
        fz_feed_body(&r->body, p, where);
        if (p->limits.max_body)
            FZ_CHECK(p->body_seen <= p->limits.max_body);
        if (p->head.content_length >= 0)
            FZ_CHECK(p->body_seen <= (uint64_t)p->head.content_length);
        return true;
    }
    /* DONE */
    fz_body_done(&r->body, at);
    fz_body_free(&r->body);
    if (!p->head.keep_alive)
        return false; /* the server answers and closes */
    /* As the server does: the exchange's end puts the server's body limit
     * back (a route's was for its own request), then the parser is reset. */
    p->limits.max_body = r->lim.max_body;
    coil__http_parser_reset(p);
    r->in_head = true;
    r->msg_start = at;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One run of the input; returns its digest. */
static uint64_t one_pass(const uint8_t *data, size_t size, bool plain_off)
{
    static run r; /* big; one input at a time */
    memset(&r, 0, sizeof(r));
    fz_input_init(&r.in, data, size);
    unsigned which = r.in.mode & 3;
    r.lim = which == 1 ? proxy_limits : which == 3 ? tiny_limits : server_limits;

    /* The arena exactly as server.c sizes it. */
    size_t arena_size = r.lim.max_request_line + r.lim.max_header_bytes +
                        r.lim.max_headers * sizeof(coil__http_field) + 1024;
    char *arena = malloc(arena_size);
    FZ_CHECK(arena);
    coil__http_parser_init(&r.p, true, &r.lim, arena, arena_size);
    r.p.plain_head_off = plain_off;
    r.in_head = true;

    bool open = fz_feed(&r.in, &r.p, on_event, &r);
    /* The client closed: a message under way is cut short (requests never
     * end with the connection). */
    if (open && (!r.in_head || r.msg_start < r.in.len)) {
        FZ_CHECK(coil__http_parser_finish(&r.p) == COIL__HTTP_ERROR);
        FZ_CHECK(request_error_status(r.p.error_status));
    }
    if (!r.in_head)
        fz_body_free(&r.body);
    free(arena);
    return r.digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The plain-head path must agree with llhttp's wherever it is taken. */
    FZ_CHECK(one_pass(data, size, false) == one_pass(data, size, true));
    return 0;
}
