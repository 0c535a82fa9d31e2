/*
 * Input cutting and the raw-byte oracle shared by the parser fuzzers. The
 * oracle does not call anything in http/src: it is a second, independent
 * reading of the same bytes, so a disagreement is a finding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

void fz_input_init(fz_input *in, const uint8_t *d, size_t n)
{
    memset(in, 0, sizeof(*in));
    size_t ctl = n < FZ_CTL ? n : FZ_CTL;
    if (ctl > 0)
        in->mode = d[0];
    for (size_t i = 1; i < ctl; i++)
        in->split[i - 1] = d[i];
    in->data = (const char *)d + ctl;
    in->len = n - ctl;
}

size_t fz_next_piece(fz_input *in, size_t left)
{
    size_t want = in->split[in->next_split++ % FZ_SPLITS];
    return want == 0 || want > left ? left : want;
}

void fz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

/* ---- small byte helpers (independent of http/src/fields.c on purpose) ---- */

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool ieq(const char *s, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != lit[i])
            return false;
    return true;
}

static bool same(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* Next non-empty comma-separated element, trimmed. */
static bool next_elem(const char **cur, const char *end, const char **e, size_t *en)
{
    while (*cur < end) {
        const char *s = *cur, *c = memchr(s, ',', (size_t)(end - s));
        const char *stop = c ? c : end;
        *cur = c ? c + 1 : end;
        size_t n = (size_t)(stop - s);
        trim(&s, &n);
        if (n) {
            *e = s;
            *en = n;
            return true;
        }
    }
    return false;
}

static bool list_has(const char *v, size_t n, const char *tok)
{
    const char *cur = v, *e;
    size_t en;
    while (next_elem(&cur, v + n, &e, &en))
        if (ieq(e, en, tok))
            return true;
    return false;
}

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* ---- the head ---- */

typedef struct raw_line {
    const char *s;
    size_t n;
} raw_line;

/* What the fields say, read from the raw lines. */
typedef struct meaning {
    unsigned cl_fields, te_fields, te_elems, host_fields;
    bool cl_bad, te_is_chunked, conn_close, conn_ka, conn_upgrade, upgrade_field, expect_100;
    int64_t cl;
    const char *host;
    size_t host_len;
} meaning;

static void content_length(meaning *m, const char *v, size_t n)
{
    const char *cur = v, *e;
    size_t en;
    bool any = false;
    while (next_elem(&cur, v + n, &e, &en)) {
        int64_t x = 0;
        for (size_t i = 0; i < en; i++) {
            /* Exact at the top: every value up to INT64_MAX is a length. */
            if (e[i] < '0' || e[i] > '9' || x > (INT64_MAX - (e[i] - '0')) / 10) {
                m->cl_bad = true;
                return;
            }
            x = x * 10 + (e[i] - '0');
        }
        if ((m->cl_fields || any) && x != m->cl)
            m->cl_bad = true;
        m->cl = x;
        any = true;
    }
    if (!any)
        m->cl_bad = true;
    m->cl_fields++;
}

static void field_meaning(meaning *m, const char *name, size_t nl, const char *v, size_t vl,
                          bool request)
{
    const char *cur = v, *e;
    size_t en;
    if (ieq(name, nl, "content-length")) {
        content_length(m, v, vl);
    } else if (ieq(name, nl, "transfer-encoding")) {
        m->te_fields++;
        while (next_elem(&cur, v + vl, &e, &en)) {
            m->te_elems++;
            m->te_is_chunked = ieq(e, en, "chunked");
        }
    } else if (ieq(name, nl, "connection")) {
        m->conn_close |= list_has(v, vl, "close");
        m->conn_ka |= list_has(v, vl, "keep-alive");
        m->conn_upgrade |= list_has(v, vl, "upgrade");
    } else if (ieq(name, nl, "upgrade")) {
        m->upgrade_field = true;
    } else if (ieq(name, nl, "expect")) {
        m->expect_100 |= ieq(v, vl, "100-continue");
    } else if (request && ieq(name, nl, "host")) {
        m->host_fields++;
        m->host = v;
        m->host_len = vl;
    }
}

static void check_request_line(const coil__http_head *h, raw_line l)
{
    const char *sp1 = memchr(l.s, ' ', l.n);
    FZ_CHECK(sp1 && sp1 > l.s);
    const char *t = sp1 + 1, *end = l.s + l.n;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    FZ_CHECK(sp2 && sp2 > t);
    FZ_CHECK(!memchr(sp2 + 1, ' ', (size_t)(end - sp2 - 1)));
    FZ_CHECK(!memchr(l.s, '\t', l.n));
    FZ_CHECK(same(h->method, h->method_len, l.s, (size_t)(sp1 - l.s)));
    const char *name = llhttp_method_name((llhttp_method_t)h->method_id);
    FZ_CHECK(name && same(name, strlen(name), h->method, h->method_len));
    FZ_CHECK(same(h->target, h->target_len, t, (size_t)(sp2 - t)));
    FZ_CHECK(!memchr(h->target, '#', h->target_len));
    const char *v = sp2 + 1;
    size_t vn = (size_t)(end - v);
    FZ_CHECK(same(v, vn, "HTTP/1.1", 8) || same(v, vn, "HTTP/1.0", 8));
    FZ_CHECK(h->version_major == 1 && h->version_minor == v[7] - '0');
    if (h->target[0] == '/') {
        /* origin-form: path and query split at the first '?' */
        const char *q = memchr(h->target, '?', h->target_len);
        size_t pl = q ? (size_t)(q - h->target) : h->target_len;
        FZ_CHECK(same(h->path, h->path_len, h->target, pl));
        FZ_CHECK(q ? h->query && same(h->query, h->query_len, q + 1, h->target_len - pl - 1)
                   : !h->query);
    } else if (same(h->target, h->target_len, "*", 1)) {
        FZ_CHECK(h->method_id == HTTP_OPTIONS);
    }
}

static void check_status_line(const coil__http_head *h, raw_line l)
{
    FZ_CHECK(l.n >= 12);
    FZ_CHECK(same(l.s, 8, "HTTP/1.1", 8) || same(l.s, 8, "HTTP/1.0", 8));
    FZ_CHECK(h->version_major == 1 && h->version_minor == l.s[7] - '0');
    FZ_CHECK(l.s[8] == ' ');
    int st = 0;
    for (int i = 9; i < 12; i++) {
        FZ_CHECK(l.s[i] >= '0' && l.s[i] <= '9');
        st = st * 10 + (l.s[i] - '0');
    }
    FZ_CHECK(h->status == st && st >= 100 && st <= 599);
    const char *reason = l.s + 13;
    size_t rn = l.n > 13 ? l.n - 13 : 0;
    if (l.n > 12)
        FZ_CHECK(l.s[12] == ' ');
    for (size_t i = 0; i < rn; i++) {
        unsigned char c = (unsigned char)reason[i];
        FZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    FZ_CHECK(same(h->reason, h->reason_len, reason, rn));
}

/* A response that ends with its head whatever its fields say. */
static bool bodyless_response(int status, int method)
{
    return method == HTTP_HEAD || status / 100 == 1 || status == 204 || status == 304 ||
           (method == HTTP_CONNECT && status / 100 == 2);
}

static void check_meaning(const coil__http_head *h, const meaning *m, bool request, int method,
                          const coil__http_limits *lim)
{
    bool v11 = h->version_minor == 1;
    /* Framing: never two ways to find the end of the body. */
    FZ_CHECK(!m->cl_bad);
    FZ_CHECK(!(m->cl_fields && m->te_fields));
    FZ_CHECK(h->content_length == (m->cl_fields ? m->cl : -1));
    if (m->te_fields) {
        FZ_CHECK(v11 && m->te_elems == 1 && m->te_is_chunked);
        FZ_CHECK(h->chunked && h->content_length == -1);
    } else {
        FZ_CHECK(!h->chunked);
    }
    bool until_close = false;
    if (request) {
        FZ_CHECK(m->host_fields <= 1);
        FZ_CHECK(!v11 || m->host_fields == 1);
        bool absolute = h->target[0] != '/' && h->method_id != HTTP_CONNECT && h->target_len != 1;
        if (!absolute)
            FZ_CHECK(m->host_fields ? same(h->host, h->host_len, m->host, m->host_len)
                                    : h->host_len == 0);
        if (h->method_id == HTTP_CONNECT)
            FZ_CHECK(!h->has_body && !h->chunked && h->content_length <= 0);
        else
            FZ_CHECK(h->has_body == (h->chunked || h->content_length > 0));
        FZ_CHECK(h->expect_continue == (v11 && m->expect_100));
        FZ_CHECK(h->upgrade == (v11 && m->conn_upgrade && m->upgrade_field));
    } else {
        if (bodyless_response(h->status, method)) {
            FZ_CHECK(!h->has_body);
        } else if (h->chunked || m->cl_fields) {
            FZ_CHECK(h->has_body == (h->chunked || h->content_length > 0));
        } else {
            FZ_CHECK(h->has_body);
            until_close = true;
        }
        FZ_CHECK(h->upgrade == (h->status == 101 && m->conn_upgrade && m->upgrade_field));
    }
    bool ka = v11 ? !m->conn_close : (m->conn_ka && !m->conn_close);
    FZ_CHECK(h->keep_alive == (ka && !until_close));
    if (lim->max_body && h->has_body && h->content_length > 0)
        FZ_CHECK((uint64_t)h->content_length <= lim->max_body);
}

void fz_check_head(const coil__http_head *h, const char *raw, size_t n, bool request,
                   int request_method, const coil__http_limits *lim)
{
    FZ_CHECK(n >= 4 && memcmp(raw + n - 4, "\r\n\r\n", 4) == 0);
    FZ_CHECK(!memchr(raw, '\0', n));
    size_t i = 0, skipped = 0;
    while (i + 1 < n && raw[i] == '\r' && raw[i + 1] == '\n') {
        i += 2;
        skipped += 2;
    }
    FZ_CHECK(skipped <= lim->max_request_line);
    meaning m = { 0 };
    uint32_t nfields = 0;
    bool start = true;
    size_t section_start = 0;
    for (;;) {
        /* Every line ends with CRLF; a CR or LF anywhere else is refused. */
        const char *s = raw + i;
        const char *cr = memchr(s, '\r', n - i);
        FZ_CHECK(cr && cr + 1 < raw + n && cr[1] == '\n');
        raw_line l = { s, (size_t)(cr - s) };
        FZ_CHECK(!memchr(l.s, '\n', l.n));
        i += l.n + 2;
        if (start) {
            FZ_CHECK(l.n > 0 && l.n <= lim->max_request_line);
            if (request)
                check_request_line(h, l);
            else
                check_status_line(h, l);
            start = false;
            section_start = i;
            continue;
        }
        if (l.n == 0)
            break;
        /* A field line: no fold, no whitespace before the colon, a token
         * for a name; the parser must report exactly these bytes. */
        FZ_CHECK(l.s[0] != ' ' && l.s[0] != '\t');
        const char *colon = memchr(l.s, ':', l.n);
        FZ_CHECK(colon && colon > l.s);
        size_t nl = (size_t)(colon - l.s);
        for (size_t k = 0; k < nl; k++)
            FZ_CHECK(is_tchar((unsigned char)l.s[k]));
        const char *v = colon + 1;
        size_t vl = l.n - nl - 1;
        trim(&v, &vl);
        FZ_CHECK(nfields < h->nfields);
        const coil__http_field *f = &h->fields[nfields++];
        FZ_CHECK(same(f->name, f->name_len, l.s, nl));
        FZ_CHECK(same(f->value, f->value_len, v, vl));
        field_meaning(&m, l.s, nl, v, vl, request);
    }
    FZ_CHECK(i == n);
    FZ_CHECK(nfields == h->nfields && nfields <= lim->max_headers);
    FZ_CHECK(n - section_start <= lim->max_header_bytes);
    check_meaning(h, &m, request, request_method, lim);
}

/* ---- chunked bodies ---- */

static void push_segment(fz_chunked *c, uint64_t start, uint64_t len, size_t *cap)
{
    if (c->nseg == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        c->seg = realloc(c->seg, *cap * sizeof(*c->seg));
        FZ_CHECK(c->seg);
    }
    c->seg[c->nseg++] = (fz_segment){ start, len };
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reads to the CRLF that ends a line; false if the data ends first or a
 * bare CR or LF comes before it. *i moves past the CRLF. */
static bool to_line_end(const char *d, size_t len, size_t *i)
{
    while (*i < len && d[*i] != '\r' && d[*i] != '\n')
        (*i)++;
    if (*i + 1 >= len || d[*i] != '\r' || d[*i + 1] != '\n')
        return false;
    *i += 2;
    return true;
}

void fz_chunked_decode(fz_chunked *c, const char *d, size_t len, uint64_t start)
{
    memset(c, 0, sizeof(*c));
    size_t cap = 0, i = (size_t)start;
    for (;;) {
        uint64_t size = 0;
        unsigned digits = 0;
        int x;
        while (i < len && (x = hexval(d[i])) >= 0) {
            if (++digits > 16)
                return;
            size = size * 16 + (uint64_t)x;
            i++;
        }
        /* Extensions are taken as anything up to the line end: lenient,
         * so only a boundary the parser sees differently can fail. */
        if (!digits || !to_line_end(d, len, &i))
            return;
        if (size == 0)
            break;
        uint64_t avail = len - i;
        push_segment(c, i, size < avail ? size : avail, &cap);
        if (size > avail)
            return;
        i += (size_t)size;
        if (i + 1 >= len || d[i] != '\r' || d[i + 1] != '\n')
            return;
        i += 2;
    }
    for (;;) { /* trailer lines, then the empty line */
        size_t ls = i;
        if (!to_line_end(d, len, &i))
            return;
        if (i - 2 == ls) {
            c->complete = true;
            c->end = i;
            return;
        }
    }
}

void fz_chunked_free(fz_chunked *c)
{
    free(c->seg);
    memset(c, 0, sizeof(*c));
}

/* ---- body bookkeeping ---- */

void fz_body_begin(fz_body *b, const coil__http_head *h, const fz_input *in, uint64_t head_end)
{
    memset(b, 0, sizeof(*b));
    b->start = b->pos = head_end;
    if (!h->has_body) {
        b->frame = FZ_FRAME_NONE;
    } else if (h->chunked) {
        b->frame = FZ_FRAME_CHUNKED;
        fz_chunked_decode(&b->ch, in->data, in->len, head_end);
    } else if (h->content_length >= 0) {
        b->frame = FZ_FRAME_LENGTH;
        b->length = (uint64_t)h->content_length;
    } else {
        b->frame = FZ_FRAME_CLOSE;
    }
}

void fz_body_chunk(fz_body *b, uint64_t off, size_t len)
{
    FZ_CHECK(b->frame != FZ_FRAME_NONE);
    if (b->frame == FZ_FRAME_CHUNKED) {
        while (b->cur < b->ch.nseg && b->in_seg == b->ch.seg[b->cur].len) {
            b->cur++;
            b->in_seg = 0;
        }
        FZ_CHECK(b->cur < b->ch.nseg);
        const fz_segment *s = &b->ch.seg[b->cur];
        FZ_CHECK(off == s->start + b->in_seg);
        FZ_CHECK(len <= s->len - b->in_seg);
        b->in_seg += len;
    } else {
        /* Content-Length and until-close bodies are one contiguous run. */
        FZ_CHECK(off == b->pos);
        if (b->frame == FZ_FRAME_LENGTH)
            FZ_CHECK(len <= b->length - b->seen);
    }
    b->seen += len;
    b->pos = off + len;
}

void fz_body_done(fz_body *b, uint64_t pos)
{
    switch (b->frame) {
    case FZ_FRAME_NONE:
        FZ_CHECK(b->seen == 0 && pos == b->start);
        break;
    case FZ_FRAME_LENGTH:
        FZ_CHECK(b->seen == b->length && pos == b->start + b->length);
        break;
    case FZ_FRAME_CLOSE:
        FZ_CHECK(pos == b->pos);
        break;
    case FZ_FRAME_CHUNKED: {
        FZ_CHECK(b->ch.complete && pos == b->ch.end);
        uint64_t total = 0;
        for (size_t i = 0; i < b->ch.nseg; i++)
            total += b->ch.seg[i].len;
        FZ_CHECK(b->seen == total);
        break;
    }
    }
}

void fz_body_free(fz_body *b)
{
    fz_chunked_free(&b->ch);
}

/* FNV-1a over the bytes. */
static uint64_t mix(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t mix_str(uint64_t h, const char *s, uint32_t n)
{
    uint32_t len = s ? n : UINT32_MAX; /* NULL differs from empty */
    h = mix(h, &len, sizeof(len));
    return s ? mix(h, s, n) : h;
}

uint64_t fz_digest(uint64_t h, coil__http_event ev, uint64_t at, const coil__http_parser *p)
{
    if (!h)
        h = 0xcbf29ce484222325ull;
    int e = (int)ev;
    h = mix(h, &e, sizeof(e));
    h = mix(h, &at, sizeof(at));
    if (ev == COIL__HTTP_ERROR) {
        h = mix(h, &p->error_status, sizeof(p->error_status));
        return mix_str(h, p->error_reason, (uint32_t)strlen(p->error_reason));
    }
    if (ev == COIL__HTTP_BODY)
        return mix_str(h, p->chunk, (uint32_t)p->chunk_len);
    if (ev != COIL__HTTP_HEAD)
        return h;
    const coil__http_head *d = &p->head;
    h = mix_str(h, d->method, d->method_len);
    h = mix_str(h, d->target, d->target_len);
    h = mix_str(h, d->path, d->path_len);
    h = mix_str(h, d->query, d->query_len);
    h = mix_str(h, d->host, d->host_len);
    h = mix_str(h, d->reason, d->reason_len);
    int64_t nums[] = { d->method_id, d->status, d->version_major, d->version_minor,
                       d->content_length, d->chunked, d->keep_alive, d->expect_continue,
                       d->upgrade, d->has_body, d->nfields };
    h = mix(h, nums, sizeof(nums));
    for (uint32_t i = 0; i < d->nfields; i++) {
        h = mix_str(h, d->fields[i].name, d->fields[i].name_len);
        h = mix_str(h, d->fields[i].value, d->fields[i].value_len);
    }
    return h;
}
