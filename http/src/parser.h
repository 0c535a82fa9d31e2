/*
 * Private: an HTTP/1.x message parser — llhttp (strict mode) plus coil's own
 * checks, RFC 9112 first. It is fed bytes as they arrive and reports events;
 * it never allocates, never does I/O, and never hands out a message that is
 * ambiguous (smuggling) or over a limit.
 *
 * Header names and values are copied into a caller-provided arena (a field
 * may arrive split across reads); body bytes are reported as pointers into
 * the fed data (no copy), so the caller can forward them from the very
 * buffer they arrived in.
 */
#ifndef COIL_HTTP_PARSER_H
#define COIL_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#ifndef LLHTTP_STRICT_MODE
#error "llhttp must be compiled and included with LLHTTP_STRICT_MODE=1"
#endif

typedef struct coil__http_field {
    const char *name;    /* in the arena, not NUL-terminated */
    uint32_t name_len;
    const char *value;   /* in the arena, OWS trimmed, not NUL-terminated */
    uint32_t value_len;
} coil__http_field;

typedef struct coil__http_limits {
    uint32_t max_request_line;  /* request (or status) line without CRLF: 414 beyond */
    uint32_t max_header_bytes;  /* whole field section: 431 beyond; trailers alike */
    uint32_t max_headers;       /* field lines: 431 beyond; trailers alike */
    uint32_t max_chunk_ext;     /* bytes of extensions on one chunk line: 400 beyond (0: none) */
    uint64_t max_body;          /* 413 beyond (0 = no limit); declared length or bytes seen */
} coil__http_limits;

/* What is known once the head is parsed. Pointers are into the arena and
 * valid until coil__http_parser_reset(). */
typedef struct coil__http_head {
    /* requests */
    const char *method;
    uint32_t method_len;
    int method_id;            /* llhttp_method_t */
    const char *target;       /* request-target as received */
    uint32_t target_len;
    const char *path;         /* origin-form path (absolute-form: the path part, "/" if empty;
                               * CONNECT: the authority; OPTIONS *: "*") */
    uint32_t path_len;
    const char *query;        /* after '?', without it; NULL if none */
    uint32_t query_len;
    const char *host;         /* Host field value (or authority of an absolute-form target) */
    uint32_t host_len;
    /* responses */
    int status;
    const char *reason;
    uint32_t reason_len;
    /* both */
    int version_major, version_minor;
    coil__http_field *fields; /* in the arena, count nfields */
    uint32_t nfields;
    int64_t content_length;   /* -1: none declared */
    bool chunked;             /* Transfer-Encoding: chunked (final coding) */
    bool keep_alive;          /* persistent after this message (version + Connection) */
    bool expect_continue;     /* Expect: 100-continue */
    bool upgrade;             /* Connection: upgrade with an Upgrade field (HTTP/1.1 requests;
                               * responses: only 101) */
    bool has_body;            /* a body follows the head */
} coil__http_head;

typedef enum coil__http_event {
    COIL__HTTP_NEED_MORE,     /* all bytes consumed; feed more */
    COIL__HTTP_HEAD,          /* the head is complete: see head */
    COIL__HTTP_BODY,          /* body bytes: [chunk, chunk + chunk_len) of the fed data */
    COIL__HTTP_DONE,          /* the message is complete (trailers, if any, were skipped) */
    COIL__HTTP_ERROR,         /* see status / reason; the connection must close */
} coil__http_event;

typedef struct coil__http_parser {
    /* results, read-only for the caller */
    coil__http_head head;
    const char *chunk;
    size_t chunk_len;
    int error_status;         /* HTTP status to answer with (400, 413, 414, 431, 501, 505) */
    const char *error_reason; /* short static text for logs and the error body */
    uint64_t body_seen;
    /* private */
    llhttp_t ll;
    coil__http_limits limits;
    char *arena;
    size_t arena_size, arena_used;
    size_t strings_cap;       /* strings live in arena[0..strings_cap), the fields array after */
    coil__http_field *field_mem;
    uint32_t max_fields;      /* capacity of the fields array carved from the arena */
    bool is_request;
    /* response parsing: the request method decides whether a body follows */
    int request_method;
    /* Every head through llhttp and the scanner, none through
     * coil__http_plain_head(): for the tests that compare the two. */
    bool plain_head_off;
    struct {                  /* per message: zeroed by coil__http_parser_reset() */
        int state;
        int pending;          /* event recorded by a callback */
        bool name_open;       /* collecting a field name */
        bool field_open;      /* collecting a field value */
        bool version_seen;
        bool until_close;     /* response body delimited by the end of the connection */
        bool sized_body;      /* a plain head: the body is framed here, not by llhttp */
        bool skip_body;       /* a response that ends with its head (HEAD, 1xx, 204, 304) */
        uint64_t body_left;   /* sized_body: bytes of it still to come */
        bool conn_close, conn_keep_alive, conn_upgrade, upgrade_field, expect_100;
        char version[4];      /* "1.1"; longer versions only counted */
        uint32_t version_len;
        uint32_t name_off, name_len, value_off, value_len;
        uint32_t chunk_ext_bytes;
        unsigned cl_count, te_count, host_count;
        unsigned te_elems, te_chunked, te_other;
        bool te_last_chunked;
        int64_t cl_value;
        /* Positions within the message: the data given to llhttp_execute()
         * starts at base, which is message byte base_off. */
        const char *base;
        uint64_t base_off;
        uint64_t msg_bytes;
        uint64_t chunk_line_start;
        /* The raw line scanner run over head and trailer bytes (parser.c). */
        struct {
            bool start_line, line_start, in_name, cr, prev_sp, done;
            uint32_t line_len, spaces, lines, skipped;
            uint32_t head_bytes;
        } sc;
    } m;
} coil__http_parser;

/* Prepares p to parse requests (is_request) or responses, with the given
 * limits, copying the head into arena[0..arena_size) (the fields array is
 * carved from its end, at most half the arena: size the arena as
 * max_request_line + max_header_bytes + max_headers * sizeof(coil__http_field)).
 * The arena must outlive p; p may be moved between calls. */
void coil__http_parser_init(coil__http_parser *p, bool is_request, const coil__http_limits *limits,
                            char *arena, size_t arena_size);

/* For response parsing: the method of the request this response answers
 * (HEAD and CONNECT change whether a body follows). It stays set across
 * coil__http_parser_reset(), so the final response after a 1xx needs no new
 * call; set it again for each new request. */
void coil__http_parser_set_request_method(coil__http_parser *p, int method_id);

/* Feeds data[0..len). Stops at the first event and stores in *used how many
 * bytes it consumed; the caller feeds the rest again after handling the
 * event (BODY chunks point into data, so data must stay valid until then).
 * After HEAD and after BODY, call feed again before waiting for more bytes,
 * with len 0 if nothing is left: a message that ends there (no body, or the
 * last byte of a Content-Length body) reports DONE without consuming
 * anything. data may be NULL when len is 0.
 * After DONE, bytes beyond *used belong to the next message (or, after
 * CONNECT or an upgrade, to the tunnel): call coil__http_parser_reset()
 * and feed them. After ERROR, feed nothing more: error_status and
 * error_reason say why (responses: always 502). */
coil__http_event coil__http_parser_feed(coil__http_parser *p, const char *data, size_t len,
                                        size_t *used);

/* The peer closed: completes a response whose body runs to the end of the
 * connection (DONE), or reports ERROR for a message cut short (and for one
 * not begun: a close between messages needs no call). */
coil__http_event coil__http_parser_finish(coil__http_parser *p);

/* Right after a BODY event, with data[0..len) the bytes after it not fed
 * yet: whether more body bytes can be had without waiting for the peer,
 * from data or (sock_more: the socket is known to hold bytes) the next
 * receive. Conservative: framing alone (a chunk's CRLF, a size line without
 * data after it, the last chunk) does not count. */
bool coil__http_parser_body_ahead(const coil__http_parser *p, const char *data, size_t len,
                                  bool sock_more);

/* plain_head.c: if data[0..len) starts with a whole head of the plainest
 * kind (a common method, an origin-form target, HTTP/1.1 or 1.0, fields of
 * printable ASCII, within every limit), copies it into the arena, fills
 * p->head's start line and fields (no field's meaning is looked at) and
 * returns its length through the empty line. Returns 0 for anything else,
 * having written p->head in part: reset the message and leave the bytes to
 * llhttp. Call only at a message's first byte. */
size_t coil__http_plain_head(coil__http_parser *p, const char *data, size_t len);

/* Readies p for the next message on the same connection. */
void coil__http_parser_reset(coil__http_parser *p);

/* Looks up a field by name, case-insensitively; NULL if absent. */
const coil__http_field *coil__http_field_get(const coil__http_head *h, const char *name);

#endif
