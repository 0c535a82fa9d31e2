/*
 * libFuzzer harness: bytes from a client, through the parser the way the
 * server's connection task drives it (http/src/server.c read_head, then
 * exchange.c's body reads), with no socket in between.
 *
 * Input: byte 0 picks the limits (server defaults, coil-proxy's defaults
 * with no body limit, or tiny ones that put every limit within a short
 * input) and whether a route lowers the body limit after the head; bytes
 * 1..8 cut the rest into the pieces that "arrive" (fuzz_common.h). Each
 * piece lives in a heap block of its exact size, freed once consumed, so a
 * read past a piece or a pointer kept into an old one is caught by ASan.
 *
 * The loop is the server's: HEAD, BODY..., DONE, reset, the next pipelined
 * request, until ERROR or a message that does not keep the connection.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

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
    uint64_t msg_start;       /* input offset of its first byte */
    unsigned steps;
} run;

/* One event at input offset at (just past the bytes consumed). Returns
 * false when the connection would end. */
static bool on_event(run *r, coil__http_event ev, const char *piece, uint64_t piece_off,
                     const char *fed, size_t used, uint64_t at)
{
    coil__http_parser *p = &r->p;
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
        FZ_CHECK(p->chunk_len > 0 && p->chunk >= fed && p->chunk + p->chunk_len <= fed + used);
        fz_body_chunk(&r->body, piece_off + (uint64_t)(p->chunk - piece), p->chunk_len);
        FZ_CHECK(p->body_seen == r->body.seen);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
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
    r.in_head = true;

    bool open = true;
    uint64_t pos = 0;
    while (open && pos < r.in.len) {
        size_t plen = fz_next_piece(&r.in, (size_t)(r.in.len - pos));
        char *piece = malloc(plen);
        FZ_CHECK(piece);
        memcpy(piece, r.in.data + pos, plen);
        size_t off = 0;
        for (;;) {
            FZ_CHECK(++r.steps < 4 * r.in.len + 64); /* every event makes progress */
            size_t used = (size_t)-1;
            const char *fed = piece + off;
            coil__http_event ev = coil__http_parser_feed(&r.p, fed, plen - off, &used);
            FZ_CHECK(used <= plen - off);
            /* A verdict needs a byte to judge: an error from a feed of
             * nothing was decided after the head went out (the head was
             * handed over for a message the parser then refuses). */
            FZ_CHECK(!(ev == COIL__HTTP_ERROR && off == plen));
            off += used;
            if (ev == COIL__HTTP_NEED_MORE) {
                FZ_CHECK(off == plen && r.p.error_status == 0);
                break;
            }
            if (!on_event(&r, ev, piece, pos, fed, used, pos + off)) {
                open = false;
                break;
            }
        }
        free(piece);
        pos += plen;
    }
    /* The client closed: a message under way is cut short (requests never
     * end with the connection). */
    if (open && (!r.in_head || r.msg_start < r.in.len)) {
        FZ_CHECK(coil__http_parser_finish(&r.p) == COIL__HTTP_ERROR);
        FZ_CHECK(request_error_status(r.p.error_status));
    }
    if (!r.in_head)
        fz_body_free(&r.body);
    free(arena);
    return 0;
}
