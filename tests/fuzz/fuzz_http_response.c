/*
 * libFuzzer harness: bytes from an upstream, through the parser the way
 * coil-proxy's upstream connection drives it (http/src/client.c), with no
 * socket in between.
 *
 * Input: byte 0 picks the head limit (coil-proxy's default or the least it
 * accepts) and the methods of the requests being answered (GET, HEAD,
 * CONNECT, POST...: HEAD and CONNECT change whether a body follows); bytes
 * 1..8 cut the rest into arriving pieces (fuzz_feed.h), each in a heap
 * block of its exact size.
 *
 * As in client.c: an interim 1xx head is dropped and the final response
 * read after it; after a complete response the connection is reused only
 * if it keeps alive and nothing beyond the response has arrived; the end of
 * the input is the upstream closing (coil__http_parser_finish).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_feed.h"

static const int methods[8] = {
    HTTP_GET, HTTP_HEAD, HTTP_CONNECT, HTTP_POST, HTTP_PUT, HTTP_DELETE, HTTP_OPTIONS, HTTP_PATCH,
};

typedef struct run {
    fz_input in;
    coil__http_limits lim;
    coil__http_parser p;
    fz_body body;
    int method;
    unsigned responses;       /* final responses completed */
    bool in_head;
    uint64_t msg_start;
    uint64_t digest;          /* fz_digest() of every event */
} run;

static void next_request(run *r)
{
    unsigned step = (r->in.mode >> 4) | 1;
    r->method = methods[((r->in.mode >> 1) + r->responses * step) & 7];
    coil__http_parser_reset(&r->p);
    coil__http_parser_set_request_method(&r->p, r->method);
    r->in_head = true;
}

/* One event (fz_event_fn). Returns false when the connection would not be
 * used again. */
static bool on_event(void *ctx, coil__http_event ev, const fz_event_at *where)
{
    run *r = ctx;
    coil__http_parser *p = &r->p;
    r->digest = fz_digest(r->digest, ev, where->end, p);
    uint64_t at = where->end;
    if (ev == COIL__HTTP_ERROR) {
        /* The proxy answers its own client: every upstream fault is 502. */
        FZ_CHECK(p->error_status == 502 && p->error_reason);
        return false;
    }
    FZ_CHECK(p->error_status == 0);
    if (ev == COIL__HTTP_HEAD) {
        FZ_CHECK(r->in_head);
        fz_check_head(&p->head, r->in.data + r->msg_start, (size_t)(at - r->msg_start), false,
                      r->method, &p->limits);
        int s = p->head.status;
        if (s / 100 == 1 && s != 101) {
            FZ_CHECK(!p->head.has_body);
            coil__http_parser_reset(p); /* the method stays set */
            r->msg_start = at;
            return true;
        }
        r->in_head = false;
        fz_body_begin(&r->body, &p->head, &r->in, at);
        return true;
    }
    FZ_CHECK(!r->in_head);
    if (ev == COIL__HTTP_BODY) {
        fz_feed_body(&r->body, p, where);
        return true;
    }
    /* DONE, from a feed: a body delimited by the close ends only there. */
    FZ_CHECK(r->body.frame != FZ_FRAME_CLOSE);
    fz_body_done(&r->body, at);
    fz_body_free(&r->body);
    r->responses++;
    int s = p->head.status;
    bool tunnel = s == 101 || (r->method == HTTP_CONNECT && s / 100 == 2);
    if (tunnel || !p->head.keep_alive || where->piece_left)
        return false;
    r->msg_start = at;
    next_request(r);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One run of the input; returns its digest. */
static uint64_t one_pass(const uint8_t *data, size_t size, bool plain_off)
{
    static run r;
    memset(&r, 0, sizeof(r));
    fz_input_init(&r.in, data, size);
    /* client.c's limits; max_header_bytes is coil-proxy's setting */
    r.lim = (coil__http_limits){
        .max_request_line = 8192,
        .max_header_bytes = (r.in.mode & 1) ? 256 : 16384,
        .max_headers = 128,
        .max_chunk_ext = 1024,
        .max_body = 0,
    };
    size_t arena_size = 8192 + r.lim.max_header_bytes + r.lim.max_headers * sizeof(coil__http_field);
    char *arena = malloc(arena_size);
    FZ_CHECK(arena);
    coil__http_parser_init(&r.p, false, &r.lim, arena, arena_size);
    r.p.plain_head_off = plain_off;
    next_request(&r);

    bool open = fz_feed(&r.in, &r.p, on_event, &r);
    /* The upstream closed. */
    if (open && (!r.in_head || r.msg_start < r.in.len)) {
        coil__http_event ev = coil__http_parser_finish(&r.p);
        if (!r.in_head && r.body.frame == FZ_FRAME_CLOSE) {
            FZ_CHECK(ev == COIL__HTTP_DONE);
            fz_body_done(&r.body, r.in.len);
        } else {
            FZ_CHECK(ev == COIL__HTTP_ERROR && r.p.error_status == 502);
        }
    }
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
