/*
 * llhttp (strict mode) plus coil's checks, RFC 9112 first.
 *
 * Three layers look at a head:
 *   - llhttp tokenises the message and frames the body;
 *   - a raw line scanner (scan()) walks the very bytes llhttp consumed in
 *     the head and the trailer section. It exists because llhttp 8.1 accepts
 *     things that change where a message ends or what its fields are:
 *     obs-fold (CVE-2024-27982), empty field names, several spaces in the
 *     request line, two-digit status codes, HTTP/0.9. Working on raw bytes,
 *     it sees what llhttp's callbacks hide (the CRLF and whitespace of a
 *     folded line produce no span at all when the fold is empty);
 *   - field semantics (Host, Content-Length, Transfer-Encoding, Connection,
 *     Expect, Upgrade, the target's form) checked on the copies in the
 *     arena when the head is complete.
 *
 * A plain head that arrived whole skips the first two (plain_head.c: one
 * pass over it, declining anything it is not sure llhttp and the scanner
 * would take the same way) and gets the third, and its Content-Length
 * body is counted down here instead of by llhttp.
 *
 * Each event is a pause of llhttp: a callback records what happened and
 * returns HPE_PAUSED, llhttp_get_error_pos() says how far it got, and
 * llhttp_resume() lets the next feed carry on from there. The scanner runs
 * after each llhttp_execute() over the bytes it consumed and before any
 * event is handed out, so nothing it would reject is ever reported.
 */
#include <stddef.h>
#include <string.h>

#include "fields.h"
#include "parser.h"

enum { ST_HEAD, ST_BODY, ST_TRAILERS, ST_DONE, ST_ERROR };
enum { PEND_NONE, PEND_HEAD, PEND_BODY, PEND_DONE, PEND_CHUNK };

/* 16 hex digits are 64 bits; more can only be leading zeros, which some
 * parsers truncate and others do not: refuse them rather than disagree. */
#define MAX_CHUNK_DIGITS 16

static coil__http_parser *P(llhttp_t *ll)
{
    return (coil__http_parser *)((char *)ll - offsetof(coil__http_parser, ll));
}

/* Offset in the message of a pointer into the data being executed. */
static uint64_t off_of(const coil__http_parser *p, const char *at)
{
    return p->m.base_off + (uint64_t)(at - p->m.base);
}

/* Records the error (the latest wins: the scanner runs after llhttp and
 * overrides a callback's verdict only for bytes before it) and returns the
 * value that stops llhttp. Responses always map to 502: the proxy answers
 * its client, not the upstream. */
static int fail(coil__http_parser *p, int status, const char *reason)
{
    p->error_status = p->is_request ? status : 502;
    p->error_reason = reason;
    return HPE_USER;
}

static bool arena_put(coil__http_parser *p, const char *at, size_t len)
{
    if (len > p->strings_cap - p->arena_used)
        return false;
    memcpy(p->arena + p->arena_used, at, len);
    p->arena_used += len;
    return true;
}

static int start_line_full(coil__http_parser *p)
{
    return fail(p, 414, "request line too long");
}

static int fields_full(coil__http_parser *p)
{
    return fail(p, 431, "header section too large");
}

/* ---- raw line scanner ---- */

static void scan_start(coil__http_parser *p, bool start_line)
{
    memset(&p->m.sc, 0, sizeof(p->m.sc));
    p->m.sc.start_line = start_line;
    p->m.sc.line_start = !start_line;
    p->m.sc.in_name = !start_line;
}

static bool scan_fail(coil__http_parser *p, int status, const char *reason)
{
    fail(p, status, reason);
    return false;
}

/* The scanner works on a copy of its state, written back when it stops:
 * kept in the parser, every field would be stored again after each byte
 * (a char read may alias anything), several times the work of the checks. */
typedef __typeof__(((coil__http_parser *)0)->m.sc) scan_state;

static bool start_line_byte(coil__http_parser *p, scan_state *sc, unsigned char c)
{
    uint32_t pos = ++sc->line_len; /* 1-based */
    if (pos > p->limits.max_request_line)
        return scan_fail(p, 414, "request line too long");
    if (p->is_request) {
        /* RFC 9112 3: method SP request-target SP HTTP-version, single SPs. */
        if (c == '\t')
            return scan_fail(p, 400, "HTAB in the request line");
        if (c == ' ') {
            if (sc->prev_sp || pos == 1)
                return scan_fail(p, 400, "extra whitespace in the request line");
            sc->spaces++;
        }
        sc->prev_sp = c == ' ';
        return true;
    }
    /* RFC 9112 4: HTTP-version SP 3DIGIT SP [ reason-phrase ]. llhttp 8.1
     * takes "HTTP/1.1 20 OK" as status 20 and "HTTP/1.1  200" as status 0. */
    if ((pos == 9 && c != ' ') || (pos >= 10 && pos <= 12 && (c < '0' || c > '9')) ||
        (pos == 13 && c != ' '))
        return scan_fail(p, 502, "malformed status line");
    return true;
}

static bool end_line(coil__http_parser *p, scan_state *sc)
{
    if (sc->start_line) {
        if (sc->line_len == 0) {
            /* RFC 9112 2.2: empty lines before the request line are ignored,
             * within the request line's budget. */
            sc->skipped += 2;
            if (sc->skipped > p->limits.max_request_line)
                return scan_fail(p, 400, "too many empty lines before the request line");
            return true;
        }
        if (p->is_request && sc->spaces == 1)
            return scan_fail(p, 505, "HTTP/0.9 is not supported");
        if (p->is_request && sc->spaces != 2)
            return scan_fail(p, 400, "malformed request line");
        if (!p->is_request && sc->line_len < 12)
            return scan_fail(p, 502, "malformed status line");
        sc->start_line = false;
    } else if (sc->line_start) {
        sc->done = true; /* the empty line that ends the section */
        return true;
    } else if (sc->in_name) {
        return scan_fail(p, 400, "field line without a colon");
    }
    sc->line_start = true;
    sc->in_name = true;
    sc->line_len = 0;
    return true;
}

/* Where a line that begins at s[0] ends, when plainly: CR at s[len], LF
 * right after it, both within s[0..n). */
static bool crlf_at(const char *s, size_t n, size_t len)
{
    return len + 2 <= n && s[len] == '\r' && s[len + 1] == '\n';
}

/* The request line at the start of s[0..n): true if it is complete and the
 * byte-wise walk below would take it without a word; *len is then its
 * length without the CRLF, and *prev_sp what the walk would leave. */
static bool plain_request_line(const char *s, size_t n, size_t *len, bool *prev_sp)
{
    unsigned spaces = 0;
    bool sp = false;
    size_t i = 0;
    for (;;) {
        size_t run = coil__http_token_run(s + i, n - i);
        if (run)
            sp = false;
        i += run;
        if (i == n)
            return false; /* not complete here */
        if (s[i] == ':') {
            sp = false;
        } else if (s[i] == ' ' && !sp && i != 0) {
            spaces++;
            sp = true;
        } else {
            break; /* the CR, or something for the walk to name */
        }
        i++;
    }
    *len = i;
    *prev_sp = sp;
    return spaces == 2 && crlf_at(s, n, i);
}

/* The same for a status line: HTTP-version SP 3DIGIT, then SP and the
 * reason if any, as start_line_byte() wants. */
static bool plain_status_line(const char *s, size_t n, size_t *len)
{
    size_t l = *len = coil__http_value_run(s, n);
    return l >= 12 && s[8] == ' ' && s[9] >= '0' && s[9] <= '9' && s[10] >= '0' &&
           s[10] <= '9' && s[11] >= '0' && s[11] <= '9' && (l == 12 || s[12] == ' ') &&
           crlf_at(s, n, l);
}

/* A line scanned whole from its first byte, the common case: the byte-wise
 * walk below costs several times more per byte. Takes s[0..n) up to and
 * including the line's LF, and returns how many bytes that is, leaving sc
 * as the walk would. Returns 0 when the line is not complete in s, or is
 * anything but plainly valid (an empty line before the request line,
 * whitespace or a missing colon, a limit reached): the walk then takes it
 * and names what is wrong. */
static inline size_t scan_whole_line(const coil__http_parser *p, scan_state *sc, const char *s,
                                     size_t n)
{
    size_t len; /* without the CRLF */
    if (sc->start_line) {
        bool prev_sp = sc->prev_sp;
        if (p->is_request ? !plain_request_line(s, n, &len, &prev_sp)
                          : !plain_status_line(s, n, &len))
            return 0;
        if (len > p->limits.max_request_line)
            return 0;
        if (p->is_request) {
            sc->spaces = 2;
            sc->prev_sp = prev_sp;
        }
        sc->start_line = false;
    } else {
        /* name ':' value, the name a non-empty run without whitespace. */
        size_t name = coil__http_token_run(s, n);
        if (name == 0) {
            if (!crlf_at(s, n, 0) || 2 > p->limits.max_header_bytes - sc->head_bytes)
                return 0;
            sc->head_bytes += 2;
            sc->done = true; /* the empty line that ends the section */
            return 2;
        }
        if (name == n || s[name] != ':')
            return 0;
        len = name + 1 + coil__http_value_run(s + name + 1, n - name - 1);
        if (!crlf_at(s, n, len) || len + 2 > p->limits.max_header_bytes - sc->head_bytes ||
            sc->lines >= p->limits.max_headers)
            return 0;
        sc->head_bytes += (uint32_t)len + 2;
        sc->lines++;
    }
    sc->line_start = true;
    sc->in_name = true;
    sc->line_len = 0;
    return len + 2;
}

/* Where scan_whole_line() may be tried. */
static bool at_line_start(const scan_state *sc)
{
    return !sc->cr && (sc->start_line ? sc->line_len == 0 : sc->line_start);
}

/* As many whole lines from s[0] as scan_whole_line() takes, up to the end
 * of the section: returns the bytes taken. One call for them all, so that
 * what the word-wise runs need is set up once per head. */
static size_t scan_whole_lines(const coil__http_parser *p, scan_state *sc, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !sc->done && at_line_start(sc)) {
        size_t took = scan_whole_line(p, sc, s + i, n - i);
        if (!took)
            break;
        i += took;
    }
    return i;
}

static bool scan_bytes(coil__http_parser *p, scan_state *sc, const char *s, size_t n,
                       size_t *scanned)
{
    size_t i = 0;
    while (i < n && !sc->done) {
        if (at_line_start(sc)) {
            size_t took = scan_whole_lines(p, sc, s + i, n - i);
            if (took) {
                i += took;
                continue;
            }
        }
        /* Runs of ordinary bytes inside a line: only their count matters,
         * and the byte after them takes the full path below. */
        if (!sc->cr && !sc->line_start) {
            size_t run = 0;
            if (!sc->start_line) {
                run = sc->in_name ? coil__http_token_run(s + i, n - i)
                                  : coil__http_value_run(s + i, n - i);
                if (run > p->limits.max_header_bytes - sc->head_bytes)
                    return scan_fail(p, 431, "header section too large");
                sc->head_bytes += (uint32_t)run;
            } else if (p->is_request) {
                run = coil__http_token_run(s + i, n - i);
                if (run > p->limits.max_request_line - sc->line_len)
                    return scan_fail(p, 414, "request line too long");
                if (run)
                    sc->prev_sp = false;
            }
            if (run) {
                sc->line_len += (uint32_t)run;
                i += run;
                continue;
            }
        }
        unsigned char c = (unsigned char)s[i++];
        if (!sc->start_line && ++sc->head_bytes > p->limits.max_header_bytes)
            return scan_fail(p, 431, "header section too large");
        if (sc->cr) {
            if (c != '\n')
                return scan_fail(p, 400, "CR without LF");
            sc->cr = false;
            if (!end_line(p, sc))
                return false;
            continue;
        }
        if (c == '\r') {
            sc->cr = true;
            continue;
        }
        if (c == '\n')
            return scan_fail(p, 400, "LF without CR");
        if (c == '\0')
            return scan_fail(p, 400, "NUL in the head");
        if (sc->start_line) {
            if (!start_line_byte(p, sc, c))
                return false;
            continue;
        }
        if (sc->line_start) {
            sc->line_start = false;
            /* RFC 9112 5.2: obs-fold must be rejected (or replaced) by a
             * server; RFC 9112 2.2: whitespace before the first field line
             * must be rejected. Either way the line would smuggle a field. */
            if (c == ' ' || c == '\t')
                return scan_fail(p, 400, sc->lines ? "obs-fold in the field section"
                                                   : "whitespace before the first field line");
            if (++sc->lines > p->limits.max_headers)
                return scan_fail(p, 431, "too many header fields");
        }
        if (sc->in_name) {
            if (c == ':') {
                if (sc->line_len == 0)
                    return scan_fail(p, 400, "empty field name");
                sc->in_name = false;
            } else if (c == ' ' || c == '\t') {
                /* RFC 9112 5.1: no whitespace between name and colon. */
                return scan_fail(p, 400, "whitespace in a field name");
            }
        }
        sc->line_len++;
    }
    *scanned = i;
    return true;
}

/* Walks head or trailer bytes s[0..n), stopping after the empty line that
 * ends the section; *scanned says how far it got. False (error set) at the
 * first violation. */
static bool scan(coil__http_parser *p, const char *s, size_t n, size_t *scanned)
{
    /* Whole lines, the usual case, are taken on the parser's own state:
     * the copy the walk needs would cost more than they do. */
    size_t i = scan_whole_lines(p, &p->m.sc, s, n);
    if (i == n || p->m.sc.done) {
        *scanned = i;
        return true;
    }
    scan_state sc = p->m.sc;
    size_t rest;
    bool ok = scan_bytes(p, &sc, s + i, n - i, &rest);
    p->m.sc = sc;
    if (ok)
        *scanned = i + rest;
    return ok;
}

/* ---- field semantics ---- */

static bool version_is_digits(const coil__http_parser *p)
{
    const char *v = p->m.version;
    return p->m.version_len == 3 && v[0] >= '0' && v[0] <= '9' && v[1] == '.' && v[2] >= '0' &&
           v[2] <= '9';
}

static bool version_supported(const coil__http_parser *p)
{
    return p->m.version_len == 3 && p->m.version[0] == '1' && p->m.version[1] == '.' &&
           (p->m.version[2] == '0' || p->m.version[2] == '1');
}

static int field_transfer_encoding(coil__http_parser *p, const char *v, size_t n)
{
    const char *cur = v, *elem;
    size_t len;
    p->m.te_count++;
    while (coil__http_list_next(&cur, v + n, &elem, &len)) {
        const char *semi = memchr(elem, ';', len);
        const char *name = elem;
        size_t name_len = semi ? (size_t)(semi - elem) : len;
        coil__http_trim(&name, &name_len);
        if (!coil__http_is_token(name, name_len))
            return fail(p, 400, "invalid Transfer-Encoding");
        p->m.te_elems++;
        if (COIL__HTTP_IS(name, name_len, "chunked")) {
            if (semi)
                return fail(p, 400, "parameters on chunked");
            p->m.te_chunked++;
            p->m.te_last_chunked = true;
        } else {
            p->m.te_other++;
            p->m.te_last_chunked = false;
        }
    }
    return 0;
}

static int field_content_length(coil__http_parser *p, const char *v, size_t n)
{
    const char *cur = v, *elem;
    size_t len;
    bool any = false;
    int64_t cl;
    /* The usual value, digits only, is a list of one: no walk needed. */
    if (coil__http_parse_length(v, n, &cl) == 0) {
        if (p->m.cl_count && cl != p->m.cl_value)
            return fail(p, 400, "conflicting Content-Length");
        p->m.cl_value = cl;
        p->m.cl_count++;
        return 0;
    }
    /* RFC 9110 8.6: a list of identical values may be taken as one value;
     * anything else is unrecoverable framing. */
    while (coil__http_list_next(&cur, v + n, &elem, &len)) {
        if (coil__http_parse_length(elem, len, &cl) < 0)
            return fail(p, 400, "invalid Content-Length");
        if ((p->m.cl_count || any) && cl != p->m.cl_value)
            return fail(p, 400, "conflicting Content-Length");
        p->m.cl_value = cl;
        any = true;
    }
    if (!any)
        return fail(p, 400, "invalid Content-Length");
    p->m.cl_count++;
    return 0;
}

static void field_connection(coil__http_parser *p, const char *v, size_t n)
{
    const char *cur = v, *elem;
    size_t len;
    while (coil__http_list_next(&cur, v + n, &elem, &len)) {
        if (COIL__HTTP_IS(elem, len, "close"))
            p->m.conn_close = true;
        else if (COIL__HTTP_IS(elem, len, "keep-alive"))
            p->m.conn_keep_alive = true;
        else if (COIL__HTTP_IS(elem, len, "upgrade"))
            p->m.conn_upgrade = true;
    }
}

/* What a field means for framing and the connection. */
static int field_meaning(coil__http_parser *p, const coil__http_field *f)
{
    const char *n = f->name, *v = f->value;
    size_t nl = f->name_len, vl = f->value_len;
    /* The length picks the one name worth comparing (COIL__HTTP_IS looks
     * at it first): most fields mean nothing here, and every head has
     * several. */
    if (COIL__HTTP_IS(n, nl, "content-length"))
        return field_content_length(p, v, vl);
    if (COIL__HTTP_IS(n, nl, "transfer-encoding"))
        return field_transfer_encoding(p, v, vl);
    if (COIL__HTTP_IS(n, nl, "connection")) {
        field_connection(p, v, vl);
    } else if (COIL__HTTP_IS(n, nl, "upgrade")) {
        p->m.upgrade_field = true;
    } else if (COIL__HTTP_IS(n, nl, "expect")) {
        if (COIL__HTTP_IS(v, vl, "100-continue"))
            p->m.expect_100 = true;
    } else if (p->is_request && COIL__HTTP_IS(n, nl, "host")) {
        /* RFC 9112 3.2: exactly one Host, with a valid value. */
        if (++p->m.host_count > 1)
            return fail(p, 400, "more than one Host");
        if (!coil__http_valid_authority(v, vl, true, false))
            return fail(p, 400, "invalid Host");
        p->head.host = v;
        p->head.host_len = (uint32_t)vl;
    }
    return 0;
}

static int store_field(coil__http_parser *p)
{
    const char *value = p->arena + p->m.value_off;
    size_t vlen = p->m.value_len;
    coil__http_trim(&value, &vlen);
    if (!coil__http_value_safe(value, vlen))
        return fail(p, 400, "CR, LF or NUL in a field value");
    if (p->head.nfields >= p->max_fields)
        return fail(p, 431, "too many header fields");
    coil__http_field *f = &p->field_mem[p->head.nfields++];
    *f = (coil__http_field){
        .name = p->arena + p->m.name_off,
        .name_len = p->m.name_len,
        .value = value,
        .value_len = (uint32_t)vlen,
    };
    return field_meaning(p, f);
}

static void split_path(coil__http_head *h, const char *t, size_t n)
{
    const char *q = memchr(t, '?', n);
    h->path = t;
    h->path_len = (uint32_t)(q ? (size_t)(q - t) : n);
    if (q) {
        h->query = q + 1;
        h->query_len = (uint32_t)(n - (size_t)(q + 1 - t));
    }
}

static bool is_scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '-' || c == '.';
}

/* RFC 9112 3.2: the four forms of request-target, each with its method. */
static int check_target(coil__http_parser *p)
{
    coil__http_head *h = &p->head;
    const char *t = h->target;
    size_t n = h->target_len;
    if (!n)
        return fail(p, 400, "empty request-target");
    if (memchr(t, '#', n))
        return fail(p, 400, "fragment in the request-target");
    if (h->method_id == HTTP_CONNECT) {
        if (!coil__http_valid_authority(t, n, false, true))
            return fail(p, 400, "CONNECT needs an authority-form target");
        h->path = t;
        h->path_len = (uint32_t)n;
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (h->method_id != HTTP_OPTIONS)
            return fail(p, 400, "asterisk-form is only for OPTIONS");
        h->path = t;
        h->path_len = 1;
        return 0;
    }
    if (t[0] == '/') {
        split_path(h, t, n);
        return 0;
    }
    /* absolute-form */
    size_t i = 0;
    while (i < n && is_scheme_char(t[i]))
        i++;
    if (i == 0 || n - i < 3 || memcmp(t + i, "://", 3) != 0)
        return fail(p, 400, "malformed request-target");
    if (!COIL__HTTP_IS(t, i, "http") && !COIL__HTTP_IS(t, i, "https"))
        return fail(p, 400, "unsupported URI scheme");
    const char *auth = t + i + 3, *end = t + n, *a = auth;
    while (a < end && *a != '/' && *a != '?')
        a++;
    size_t alen = (size_t)(a - auth);
    if (memchr(auth, '@', alen))
        return fail(p, 400, "userinfo in the request-target");
    if (!coil__http_valid_authority(auth, alen, false, false))
        return fail(p, 400, "invalid authority in the request-target");
    /* RFC 9112 3.2.2: the target's authority wins over Host. */
    h->host = auth;
    h->host_len = (uint32_t)alen;
    if (a == end || *a == '?') {
        h->path = "/";
        h->path_len = 1;
        if (a != end) {
            h->query = a + 1;
            h->query_len = (uint32_t)(end - a - 1);
        }
    } else {
        split_path(h, a, (size_t)(end - a));
    }
    return 0;
}

/* Framing (RFC 9112 6.1, 6.3) from the Transfer-Encoding and
 * Content-Length fields seen. */
static int check_framing(coil__http_parser *p, bool v11, bool ll_chunked)
{
    coil__http_head *h = &p->head;
    h->content_length = p->m.cl_count ? p->m.cl_value : -1;
    /* llhttp frames the body; coil decides whether a head is handed out.
     * Where their readings of Transfer-Encoding differ ("chunked" followed
     * by a tab, a trailing comma), one would read a body the other does
     * not: refuse rather than pick one. */
    if (!p->m.te_count)
        return ll_chunked ? fail(p, 400, "ambiguous Transfer-Encoding") : 0;
    if (!v11)
        return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
    if (p->m.cl_count)
        return fail(p, 400, "both Content-Length and Transfer-Encoding");
    if (!p->m.te_elems)
        return fail(p, 400, "empty Transfer-Encoding");
    if (p->m.te_chunked > 1)
        return fail(p, 400, "chunked applied more than once");
    if (!p->m.te_last_chunked)
        return fail(p, 400, "final transfer coding is not chunked");
    if (p->m.te_other)
        return fail(p, 501, "unsupported transfer coding");
    if (!ll_chunked)
        return fail(p, 400, "ambiguous Transfer-Encoding");
    h->chunked = true;
    return 0;
}

/* The head is complete, its start line and fields in p->head (whichever
 * path took it): what it means for the target, the framing and the
 * connection. ll_chunked: llhttp's own reading of Transfer-Encoding. */
static int head_complete(coil__http_parser *p, bool ll_chunked)
{
    coil__http_head *h = &p->head;
    bool v11 = h->version_minor == 1;
    int err;
    if (p->is_request) {
        if ((err = check_target(p)) != 0)
            return err;
        if (v11 && !p->m.host_count)
            return fail(p, 400, "missing Host");
    } else {
        if (h->status < 100 || h->status > 599)
            return fail(p, 502, "invalid status code");
    }
    if ((err = check_framing(p, v11, ll_chunked)) != 0)
        return err;

    if (p->is_request) {
        if (h->method_id == HTTP_CONNECT) {
            /* RFC 9110 9.3.6: CONNECT has no content; whatever follows is
             * the tunnel, so a declared body would be read two ways. */
            if (h->chunked || h->content_length > 0)
                return fail(p, 400, "CONNECT with content");
        } else {
            h->has_body = h->chunked || h->content_length > 0;
        }
    } else {
        int s = h->status, m = p->request_method;
        /* RFC 9112 6.3 (1, 2): these responses end with their head whatever
         * their fields say; llhttp 8.1 would read a 204's Content-Length. */
        if (m == HTTP_HEAD || s / 100 == 1 || s == 204 || s == 304 ||
            (m == HTTP_CONNECT && s / 100 == 2)) {
            p->m.skip_body = true;
        } else if (h->chunked || p->m.cl_count) {
            h->has_body = h->chunked || h->content_length > 0;
        } else {
            h->has_body = true;
            p->m.until_close = true;
        }
    }
    if (p->limits.max_body && h->has_body && h->content_length > 0 &&
        (uint64_t)h->content_length > p->limits.max_body)
        return fail(p, 413, "body too large");

    h->keep_alive = v11 ? !p->m.conn_close : (p->m.conn_keep_alive && !p->m.conn_close);
    if (p->m.until_close)
        h->keep_alive = false;
    if (p->is_request) {
        /* RFC 9110 10.1.1 and 7.8: HTTP/1.0 expectations and upgrades are
         * ignored. */
        h->expect_continue = v11 && p->m.expect_100;
        h->upgrade = v11 && p->m.conn_upgrade && p->m.upgrade_field;
    } else {
        h->upgrade = h->status == 101 && p->m.conn_upgrade && p->m.upgrade_field;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    coil__http_parser *p = P(ll);
    coil__http_head *h = &p->head;
    if (!p->m.version_seen)
        return fail(p, 505, "HTTP/0.9 is not supported");
    h->version_major = ll->http_major;
    h->version_minor = ll->http_minor;
    if (p->is_request)
        h->method_id = ll->method;
    else
        h->status = ll->status_code;
    int err = head_complete(p, (ll->flags & F_CHUNKED) != 0);
    if (err)
        return err;
    if (p->m.skip_body)
        ll->flags |= F_SKIPBODY;
    p->m.pending = PEND_HEAD;
    return HPE_PAUSED;
}

/* ---- llhttp callbacks ---- */

static int on_method(llhttp_t *ll, const char *at, size_t len)
{
    coil__http_parser *p = P(ll);
    if (!p->head.method)
        p->head.method = p->arena + p->arena_used;
    if (!arena_put(p, at, len))
        return start_line_full(p);
    p->head.method_len += (uint32_t)len;
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    coil__http_parser *p = P(ll);
    if (!p->head.target)
        p->head.target = p->arena + p->arena_used;
    if (!arena_put(p, at, len))
        return start_line_full(p);
    p->head.target_len += (uint32_t)len;
    return 0;
}

static int on_status(llhttp_t *ll, const char *at, size_t len)
{
    coil__http_parser *p = P(ll);
    if (!coil__http_valid_reason(at, len))
        return fail(p, 502, "control character in the reason phrase");
    if (!p->head.reason)
        p->head.reason = p->arena + p->arena_used;
    if (!arena_put(p, at, len))
        return start_line_full(p);
    p->head.reason_len += (uint32_t)len;
    return 0;
}

static int on_version(llhttp_t *ll, const char *at, size_t len)
{
    coil__http_parser *p = P(ll);
    uint32_t n = p->m.version_len; /* a local: the stores below may alias it */
    for (size_t i = 0; i < len; i++, n++)
        if (n < sizeof(p->m.version))
            p->m.version[n] = at[i];
    p->m.version_len = n;
    return 0;
}

static int on_version_complete(llhttp_t *ll)
{
    coil__http_parser *p = P(ll);
    p->m.version_seen = true;
    if (version_supported(p))
        return 0;
    /* RFC 9110 15.6.6: a well-formed version we do not speak is 505. */
    if (version_is_digits(p))
        return fail(p, 505, "HTTP version not supported");
    return fail(p, 400, "malformed HTTP version");
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    coil__http_parser *p = P(ll);
    if (p->m.state == ST_TRAILERS)
        return 0; /* trailers are checked by the scanner, never kept */
    if (!p->m.name_open) {
        p->m.name_open = true;
        p->m.name_off = (uint32_t)p->arena_used;
        p->m.name_len = 0;
    }
    if (!arena_put(p, at, len))
        return fields_full(p);
    p->m.name_len += (uint32_t)len;
    return 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
    coil__http_parser *p = P(ll);
    if (p->m.state == ST_TRAILERS)
        return 0;
    bool had_name = p->m.name_open && p->m.name_len;
    p->m.name_open = false;
    if (!had_name)
        return fail(p, 400, "empty field name");
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    coil__http_parser *p = P(ll);
    if (p->m.state == ST_TRAILERS)
        return 0;
    if (!p->m.field_open) {
        p->m.field_open = true;
        p->m.value_off = (uint32_t)p->arena_used;
        p->m.value_len = 0;
    }
    if (!arena_put(p, at, len))
        return fields_full(p);
    p->m.value_len += (uint32_t)len;
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    coil__http_parser *p = P(ll);
    if (p->m.state == ST_TRAILERS)
        return 0;
    if (!p->m.field_open) {
        p->m.value_off = (uint32_t)p->arena_used;
        p->m.value_len = 0;
    }
    p->m.field_open = false;
    return store_field(p);
}

/* The limit may be lowered while the body is read (a route's own limit). */
static bool over_body_limit(const coil__http_parser *p, uint64_t more)
{
    uint64_t max = p->limits.max_body;
    return max && (p->body_seen > max || more > max - p->body_seen);
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    coil__http_parser *p = P(ll);
    if (!len)
        return 0;
    if (over_body_limit(p, len))
        return fail(p, 413, "body too large");
    p->body_seen += len;
    p->chunk = at;
    p->chunk_len = len;
    /* For chunked bodies: where the next chunk line starts, after CRLF. */
    p->m.chunk_line_start = off_of(p, at + len) + 2;
    p->m.pending = PEND_BODY;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *ll)
{
    P(ll)->m.pending = PEND_DONE;
    return HPE_PAUSED;
}

static int on_chunk_header(llhttp_t *ll)
{
    /* Checked in the feed loop, which knows where the line ended. */
    P(ll)->m.pending = PEND_CHUNK;
    return HPE_PAUSED;
}

static int chunk_ext(coil__http_parser *p, size_t n)
{
    p->m.chunk_ext_bytes += (uint32_t)n;
    if (p->m.chunk_ext_bytes > p->limits.max_chunk_ext)
        return fail(p, 400, "chunk extensions too long");
    return 0;
}

/* llhttp 8.1 in strict mode allows no whitespace in chunk extensions, so
 * the spans plus one byte for each ';' and '=' are the extension bytes. */
static int on_chunk_ext_span(llhttp_t *ll, const char *at, size_t len)
{
    (void)at;
    return chunk_ext(P(ll), len);
}

static int on_chunk_ext_delim(llhttp_t *ll)
{
    return chunk_ext(P(ll), 1);
}

static const llhttp_settings_t settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_status = on_status,
    .on_version = on_version,
    .on_version_complete = on_version_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_extension_name = on_chunk_ext_span,
    .on_chunk_extension_name_complete = on_chunk_ext_delim,
    .on_chunk_extension_value = on_chunk_ext_span,
    .on_chunk_extension_value_complete = on_chunk_ext_delim,
};

/* ---- feeding ---- */

/* A chunk line just ended at msg_bytes: its size digits, extensions and
 * what the declared size means for the body limit. */
static bool chunk_line(coil__http_parser *p)
{
    uint64_t line = p->m.msg_bytes - p->m.chunk_line_start;
    uint64_t ext = p->m.chunk_ext_bytes;
    p->m.chunk_ext_bytes = 0;
    if (line < 3 + ext || line - 2 - ext > MAX_CHUNK_DIGITS) {
        fail(p, 400, "chunk size too long");
        return false;
    }
    uint64_t size = p->ll.content_length;
    if (size == 0) {
        p->m.state = ST_TRAILERS;
        scan_start(p, false);
        return true;
    }
    /* A chunk declared past the limit is refused before its first byte. */
    if (over_body_limit(p, size)) {
        fail(p, 413, "body too large");
        return false;
    }
    return true;
}

static void map_llhttp_error(coil__http_parser *p, llhttp_errno_t err)
{
    if (err == HPE_INVALID_VERSION && version_is_digits(p) && !version_supported(p)) {
        fail(p, 505, "HTTP version not supported");
        return;
    }
    const char *why = llhttp_get_error_reason(&p->ll);
    fail(p, 400, why ? why : llhttp_errno_name(err));
}

static coil__http_event stop(coil__http_parser *p, int state, coil__http_event ev, size_t off,
                             size_t *used)
{
    p->m.state = state;
    *used = off;
    return ev;
}

/* Everything kept per message, except llhttp's own state. */
static void reset_message(coil__http_parser *p)
{
    p->head = (coil__http_head){ .method_id = -1, .content_length = -1, .fields = p->field_mem };
    p->chunk = NULL;
    p->chunk_len = 0;
    p->error_status = 0;
    p->error_reason = NULL;
    p->body_seen = 0;
    p->arena_used = 0;
    memset(&p->m, 0, sizeof(p->m));
    p->m.state = ST_HEAD;
    scan_start(p, true);
}

/* ---- the plain head (plain_head.c) and its sized body ---- */

/* What coil__http_plain_head() took, read as on_headers_complete() reads
 * llhttp's. False, with the message reset, for a head whose meaning needs
 * llhttp (a coding to frame, an upgrade, a response that ends with its
 * head or with the connection) or that is wrong: llhttp then reads it
 * again, and names the error where llhttp would. */
static bool plain_head_means(coil__http_parser *p)
{
    coil__http_head *h = &p->head;
    for (uint32_t i = 0; i < h->nfields; i++) {
        const coil__http_field *f = &h->fields[i];
        int64_t cl;
        if (COIL__HTTP_IS(f->name, f->name_len, "transfer-encoding") ||
            COIL__HTTP_IS(f->name, f->name_len, "upgrade"))
            return false;
        /* llhttp refuses a second Content-Length, lists, and HTAB around
         * the digits (the raw line is in the arena, up to its CR). */
        if (COIL__HTTP_IS(f->name, f->name_len, "content-length")) {
            if (p->m.cl_count || coil__http_parse_length(f->value, f->value_len, &cl) < 0)
                return false;
            for (const char *c = f->name + f->name_len + 1; *c != '\r'; c++)
                if (*c == '\t')
                    return false;
        }
        if (field_meaning(p, f) != 0)
            return false;
    }
    if (!p->is_request) {
        int st = h->status, m = p->request_method;
        if (!p->m.cl_count || m == HTTP_HEAD || m == HTTP_CONNECT || st < 200 || st == 204 ||
            st == 304)
            return false;
    }
    return head_complete(p, false) == 0;
}

/* False when the plain path declines the head, which llhttp then reads from
 * its first byte; true when it took it, with its event in *ev. */
static bool plain_head(coil__http_parser *p, const char *data, size_t len, size_t *used,
                       coil__http_event *ev)
{
    size_t n = coil__http_plain_head(p, data, len);
    if (!n || !plain_head_means(p)) {
        reset_message(p);
        return false;
    }
    p->m.sized_body = true;
    p->m.body_left = p->head.has_body ? (uint64_t)p->head.content_length : 0;
    p->m.msg_bytes = n;
    *ev = stop(p, ST_BODY, COIL__HTTP_HEAD, n, used);
    return true;
}

static coil__http_event sized_body(coil__http_parser *p, const char *data, size_t len,
                                   size_t *used)
{
    uint64_t left = p->m.body_left;
    if (!left)
        return stop(p, ST_DONE, COIL__HTTP_DONE, 0, used);
    if (!len)
        return stop(p, ST_BODY, COIL__HTTP_NEED_MORE, 0, used);
    size_t n = len < left ? len : (size_t)left;
    if (over_body_limit(p, n)) {
        /* Consumed, as llhttp reports the bytes of a span it was given. */
        fail(p, 413, "body too large");
        return stop(p, ST_ERROR, COIL__HTTP_ERROR, n, used);
    }
    p->body_seen += n;
    p->chunk = data;
    p->chunk_len = n;
    p->m.body_left = left - n;
    p->m.msg_bytes += n;
    return stop(p, ST_BODY, COIL__HTTP_BODY, n, used);
}

coil__http_event coil__http_parser_feed(coil__http_parser *p, const char *data, size_t len,
                                        size_t *used)
{
    *used = 0;
    if (p->m.state == ST_ERROR)
        return COIL__HTTP_ERROR;
    if (p->m.state == ST_DONE)
        return COIL__HTTP_DONE;
    if (!data) {
        data = "";
        len = 0;
    }
    if (p->m.sized_body)
        return sized_body(p, data, len, used);
    if (p->m.msg_bytes == 0 && p->m.state == ST_HEAD) {
        /* Nothing of a message yet: llhttp would take nothing either (a
         * client asks before its first receive). */
        if (!len)
            return stop(p, ST_HEAD, COIL__HTTP_NEED_MORE, 0, used);
        coil__http_event ev;
        if (!p->plain_head_off && plain_head(p, data, len, used, &ev))
            return ev;
    }
    size_t off = 0;
    for (;;) {
        const char *start = data + off;
        size_t n = len - off;
        p->m.pending = PEND_NONE;
        p->m.base = start;
        p->m.base_off = p->m.msg_bytes;
        llhttp_errno_t err = llhttp_execute(&p->ll, start, n);
        bool cb_failed = p->error_status != 0;
        size_t done = n;
        if (err != HPE_OK)
            done = (size_t)(llhttp_get_error_pos(&p->ll) - start);

        if (p->m.state == ST_HEAD || p->m.state == ST_TRAILERS) {
            /* On llhttp's own errors the offending byte is scanned too, so
             * a violation coil checks for is named as such. */
            size_t scan_n = done;
            bool own = err != HPE_OK && err != HPE_PAUSED && !cb_failed;
            if (own && done < n)
                scan_n++;
            size_t scanned;
            if (!scan(p, start, scan_n, &scanned))
                return stop(p, ST_ERROR, COIL__HTTP_ERROR, off + done, used);
            /* llhttp went on past the end the scanner saw: they disagree
             * about where the section ends, so neither can be trusted. */
            if (p->m.sc.done && scanned < done) {
                fail(p, 400, "message framing disagreement");
                return stop(p, ST_ERROR, COIL__HTTP_ERROR, off + done, used);
            }
        }
        off += done;
        p->m.msg_bytes += done;

        if (err == HPE_OK) {
            if (p->m.sc.done && (p->m.state == ST_HEAD || p->m.state == ST_TRAILERS)) {
                fail(p, 400, "message framing disagreement");
                return stop(p, ST_ERROR, COIL__HTTP_ERROR, off, used);
            }
            return stop(p, p->m.state, COIL__HTTP_NEED_MORE, off, used);
        }
        if (err != HPE_PAUSED) {
            if (!p->error_status)
                map_llhttp_error(p, err);
            return stop(p, ST_ERROR, COIL__HTTP_ERROR, off, used);
        }

        llhttp_resume(&p->ll);
        switch (p->m.pending) {
        case PEND_HEAD:
            if (!p->m.sc.done) {
                fail(p, 400, "message framing disagreement");
                return stop(p, ST_ERROR, COIL__HTTP_ERROR, off, used);
            }
            p->m.chunk_line_start = p->m.msg_bytes;
            return stop(p, ST_BODY, COIL__HTTP_HEAD, off, used);
        case PEND_BODY:
            return stop(p, ST_BODY, COIL__HTTP_BODY, off, used);
        case PEND_DONE:
            if (p->m.state == ST_TRAILERS && !p->m.sc.done) {
                fail(p, 400, "message framing disagreement");
                return stop(p, ST_ERROR, COIL__HTTP_ERROR, off, used);
            }
            return stop(p, ST_DONE, COIL__HTTP_DONE, off, used);
        case PEND_CHUNK:
            if (!chunk_line(p))
                return stop(p, ST_ERROR, COIL__HTTP_ERROR, off, used);
            continue;
        default:
            fail(p, 400, "unexpected parser pause");
            return stop(p, ST_ERROR, COIL__HTTP_ERROR, off, used);
        }
    }
}

coil__http_event coil__http_parser_finish(coil__http_parser *p)
{
    if (p->m.state == ST_DONE)
        return COIL__HTTP_DONE;
    if (p->m.state == ST_ERROR)
        return COIL__HTTP_ERROR;
    if (p->m.state == ST_BODY && p->m.until_close) {
        llhttp_errno_t err = llhttp_finish(&p->ll);
        if (err == HPE_OK || err == HPE_PAUSED) {
            p->m.state = ST_DONE;
            return COIL__HTTP_DONE;
        }
    }
    fail(p, 400, "connection closed before the message was complete");
    p->m.state = ST_ERROR;
    return COIL__HTTP_ERROR;
}

bool coil__http_parser_body_ahead(const coil__http_parser *p, const char *data, size_t len,
                                  bool sock_more)
{
    if (p->m.state != ST_BODY)
        return false;
    /* llhttp counts down what the body (or the current chunk) still owes. */
    uint64_t owed = p->m.sized_body ? p->m.body_left : p->ll.content_length;
    if (!p->head.chunked) {
        if (!p->m.until_close && owed == 0)
            return false; /* a sized body that is complete */
        return len > 0 || sock_more;
    }
    if (owed > 0)
        return len > 0 || sock_more; /* inside a chunk's data */
    /* At a chunk's end: its CRLF, the next size line and a first data byte
     * must all be here already. */
    if (len < 2 || data[0] != '\r' || data[1] != '\n')
        return false;
    const char *nl = memchr(data + 2, '\n', len - 2);
    if (!nl || (size_t)(nl - data) + 1 >= len)
        return false;
    for (const char *q = data + 2; q < nl && *q != ';' && *q != '\r'; q++)
        if (*q != '0')
            return true; /* a size other than 0: not the last chunk */
    return false;
}

void coil__http_parser_reset(coil__http_parser *p)
{
    llhttp_reset(&p->ll);
    reset_message(p);
}

void coil__http_parser_init(coil__http_parser *p, bool is_request, const coil__http_limits *limits,
                            char *arena, size_t arena_size)
{
    /* Every field is set here, by llhttp_init() or by reset_message(),
     * rather than the whole parser cleared first: the server initialises
     * one for each request of a keep-alive connection (the connection's
     * task starts afresh after every park). */
    p->is_request = is_request;
    p->limits = *limits;
    p->arena = arena;
    p->arena_size = arena_size;
    p->request_method = -1;
    p->plain_head_off = false;

    /* The fields array takes the aligned end of the arena, at most half. */
    const size_t fsz = sizeof(coil__http_field), falign = _Alignof(coil__http_field);
    size_t max_fields = limits->max_headers;
    if (max_fields > arena_size / 2 / fsz)
        max_fields = arena_size / 2 / fsz;
    uintptr_t end = (uintptr_t)arena + arena_size;
    uintptr_t fstart = (end - max_fields * fsz) & ~(uintptr_t)(falign - 1);
    if (fstart < (uintptr_t)arena) { /* a tiny arena: no room for fields */
        max_fields = 0;
        fstart = end;
    }
    p->max_fields = (uint32_t)max_fields;
    p->field_mem = max_fields ? (coil__http_field *)fstart : NULL;
    p->strings_cap = (size_t)(fstart - (uintptr_t)arena);

    llhttp_init(&p->ll, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    reset_message(p);
}

void coil__http_parser_set_request_method(coil__http_parser *p, int method_id)
{
    p->request_method = method_id;
}
