/*
 * The input-feeding loop both HTTP parser fuzzers share (fuzz_http_request.c,
 * fuzz_http_response.c): the peer's bytes arrive in the pieces the input's
 * split bytes choose (fz_next_piece), each in a heap block of its exact
 * size, freed once consumed, so a read past a piece or a pointer kept into
 * an old one is caught by ASan; each piece is fed to the parser until it
 * needs more, and every other event goes to the harness.
 */
#ifndef COIL_FUZZ_FEED_H
#define COIL_FUZZ_FEED_H

#include "fuzz_common.h"

/* Where an event happened. The pointers are valid during the callback only. */
typedef struct fz_event_at {
    const char *piece;         /* the piece being fed */
    uint64_t piece_off;        /* input offset of piece[0] */
    const char *fed;           /* what the feed was given: a suffix of piece */
    size_t used;               /* bytes the feed consumed */
    uint64_t end;              /* input offset just past them */
    bool piece_left;           /* bytes of the piece are still unfed */
} fz_event_at;

/* An event other than COIL__HTTP_NEED_MORE. Returns false when the
 * connection would end: nothing more is fed. */
typedef bool (*fz_event_fn)(void *ctx, coil__http_event ev, const fz_event_at *at);

/* Feeds in->data to p as described above, checking what holds for every
 * feed: each event makes progress, a feed consumes no more than it was
 * given, an error needs a byte to judge, and NEED_MORE comes only with the
 * piece used up and no error. Returns true if the input ran out with the
 * connection still open (the peer closed), false if on_event ended it.
 * in's split bytes are used up in turn, as fz_next_piece() does. */
bool fz_feed(fz_input *in, coil__http_parser *p, fz_event_fn on_event, void *ctx);

/* A BODY event: the parser's chunk must lie within the bytes this feed
 * consumed; it is checked against the framing (fz_body_chunk) and the
 * parser's count of body bytes must agree. */
void fz_feed_body(fz_body *b, const coil__http_parser *p, const fz_event_at *at);

#endif
