/* The fuzzers' input-feeding loop: see fuzz_feed.h. */
#include "fuzz_feed.h"

#include <stdlib.h>
#include <string.h>

bool fz_feed(fz_input *in, coil__http_parser *p, fz_event_fn on_event, void *ctx)
{
    unsigned steps = 0;
    uint64_t pos = 0;
    while (pos < in->len) {
        size_t plen = fz_next_piece(in, (size_t)(in->len - pos));
        char *piece = malloc(plen);
        FZ_CHECK(piece);
        memcpy(piece, in->data + pos, plen);
        size_t off = 0;
        for (;;) {
            FZ_CHECK(++steps < 4 * in->len + 64); /* every event makes progress */
            size_t used = (size_t)-1;
            const char *fed = piece + off;
            coil__http_event ev = coil__http_parser_feed(p, fed, plen - off, &used);
            FZ_CHECK(used <= plen - off);
            /* A verdict needs a byte to judge: an error from a feed of
             * nothing was decided after the head went out (the head was
             * handed over for a message the parser then refuses). */
            FZ_CHECK(!(ev == COIL__HTTP_ERROR && off == plen));
            off += used;
            if (ev == COIL__HTTP_NEED_MORE) {
                FZ_CHECK(off == plen && p->error_status == 0);
                break;
            }
            fz_event_at at = { .piece = piece,
                               .piece_off = pos,
                               .fed = fed,
                               .used = used,
                               .end = pos + off,
                               .piece_left = off < plen };
            if (!on_event(ctx, ev, &at)) {
                free(piece);
                return false;
            }
        }
        free(piece);
        pos += plen;
    }
    return true;
}

void fz_feed_body(fz_body *b, const coil__http_parser *p, const fz_event_at *at)
{
    FZ_CHECK(p->chunk_len > 0 && p->chunk >= at->fed &&
             p->chunk + p->chunk_len <= at->fed + at->used);
    fz_body_chunk(b, at->piece_off + (uint64_t)(p->chunk - at->piece), p->chunk_len);
    FZ_CHECK(p->body_seen == b->seen);
}
