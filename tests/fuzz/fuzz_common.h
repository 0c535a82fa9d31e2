/*
 * Shared pieces of the HTTP parser fuzzers (fuzz_http_request.c,
 * fuzz_http_response.c): how an input is cut into control bytes and the
 * pieces the parser is fed, and an oracle that re-reads the raw bytes of a
 * head or a chunked body on its own and says what the parser must have
 * seen. The oracle is deliberately naive and lenient: where the parser is
 * stricter (refuses what the oracle would take) nothing is wrong; where the
 * parser accepts a message, both must agree on every field and boundary.
 */
#ifndef COIL_FUZZ_COMMON_H
#define COIL_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parser.h"

/* Bytes at the start of every input that steer the harness rather than
 * reach the parser: byte 0 is a mode byte, bytes 1..FZ_SPLITS are piece
 * lengths (0: all that is left), used in turn. */
#define FZ_SPLITS 8
#define FZ_CTL (1 + FZ_SPLITS)

typedef struct fz_input {
    uint8_t mode;
    uint8_t split[FZ_SPLITS];
    unsigned next_split;
    const char *data;          /* the bytes the peer sends */
    size_t len;
} fz_input;

void fz_input_init(fz_input *in, const uint8_t *d, size_t n);

/* Length of the next piece that arrives, given how many bytes are left. */
size_t fz_next_piece(fz_input *in, size_t left);

/* Reports a broken invariant and aborts, so the fuzzer keeps the input. */
_Noreturn void fz_fail(const char *file, int line, const char *what);

#define FZ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail(__FILE__, __LINE__, #cond);                                                    \
    } while (0)

/* ---- what the raw head says ---- */

/* Re-reads the head raw[0..n) — the bytes of one message from its first
 * byte to the end of the empty line, leading empty lines included — and
 * checks the parser's head h against it: line syntax (CRLF only, no NUL,
 * no obs-fold, no whitespace before a colon), the start line, every field
 * name and value in order, and what Content-Length, Transfer-Encoding,
 * Connection, Host, Expect and Upgrade mean. lim: the limits in force. */
void fz_check_head(const coil__http_head *h, const char *raw, size_t n, bool request,
                   int request_method, const coil__http_limits *lim);

/* ---- the two head paths ---- */

/* Folds one event, where it happened and what the parser reports with it
 * (the whole head after HEAD, the chunk after BODY, the verdict after
 * ERROR) into the running digest h. The harnesses run every input twice,
 * with the plain-head path and without it (llhttp and the scanner for
 * every head), and the two digests must be equal. */
uint64_t fz_digest(uint64_t h, coil__http_event ev, uint64_t at, const coil__http_parser *p);

/* ---- what a chunked body is ---- */

typedef struct fz_segment {
    uint64_t start, len;       /* chunk data, as offsets in the input */
} fz_segment;

typedef struct fz_chunked {
    fz_segment *seg;           /* heap; fz_chunked_free() */
    size_t nseg;
    bool complete;             /* the body, trailers and empty line were all there */
    uint64_t end;              /* if complete: offset just past the empty line */
} fz_chunked;

/* Decodes a chunked body starting at data[start] (the byte after the head)
 * up to data[len]. */
void fz_chunked_decode(fz_chunked *c, const char *data, size_t len, uint64_t start);
void fz_chunked_free(fz_chunked *c);

/* ---- body bookkeeping shared by both harnesses ---- */

typedef enum { FZ_FRAME_NONE, FZ_FRAME_LENGTH, FZ_FRAME_CHUNKED, FZ_FRAME_CLOSE } fz_frame;

typedef struct fz_body {
    fz_frame frame;
    uint64_t start;            /* offset of the first body byte in the input */
    uint64_t length;           /* FZ_FRAME_LENGTH */
    uint64_t seen;             /* body bytes reported so far */
    uint64_t pos;              /* offset just past the last reported byte */
    fz_chunked ch;
    size_t cur;                /* chunked: segment being reported */
    uint64_t in_seg;           /* chunked: bytes of it reported so far */
} fz_body;

/* After HEAD at input offset head_end: what framing the body has. */
void fz_body_begin(fz_body *b, const coil__http_head *h, const fz_input *in, uint64_t head_end);

/* A BODY event: the chunk is at input offset off. Checks it is the next
 * run of body bytes the framing allows. */
void fz_body_chunk(fz_body *b, uint64_t off, size_t len);

/* DONE at input offset pos: the body must be complete and end there. */
void fz_body_done(fz_body *b, uint64_t pos);

void fz_body_free(fz_body *b);

#endif
