/*
 * The plain head in one pass (parser.h, coil__http_plain_head).
 *
 * Most heads are plain: a common method, an origin-form target, HTTP/1.1
 * or 1.0, a few "Name: value" lines of printable ASCII, all in one read.
 * For them, llhttp's state machine and the raw line scanner beside it cost
 * some 50 instructions per byte, most of what a small request costs in
 * user space. This recogniser takes such a head whole, byte classes from
 * one table, and declines (returns 0) at the first thing that is not
 * plainly valid, or that llhttp would frame (Transfer-Encoding, Upgrade,
 * a second Content-Length): the parser then feeds the same bytes to
 * llhttp and the scanner, which name what is wrong. Declining is always
 * safe; accepting must agree with that path, which the differential
 * checks in test_http_parser and both fuzzers hold it to.
 */
#include <string.h>

#include "fields.h"
#include "parser.h"

enum {
    C_TCHAR = 1,  /* tchar: field names */
    C_TARGET = 2, /* an origin-form target's bytes after the '/' */
    C_TEXT = 4,   /* HTAB, SP, VCHAR: field values and reason phrases */
};

/* ASCII only: obs-text (0x80-0xff) is left to llhttp and the scanner. */
static const unsigned char cls[256] = {
    ['\t'] = C_TEXT, [' '] = C_TEXT,
    ['!'] = C_TCHAR | C_TARGET | C_TEXT, ['"'] = C_TEXT,
    ['#'] = C_TCHAR | C_TEXT, /* a fragment is refused: left to check_target */
    ['$'] = C_TCHAR | C_TARGET | C_TEXT, ['%'] = C_TCHAR | C_TARGET | C_TEXT,
    ['&'] = C_TCHAR | C_TARGET | C_TEXT, ['\''] = C_TCHAR | C_TARGET | C_TEXT,
    ['('] = C_TARGET | C_TEXT, [')'] = C_TARGET | C_TEXT,
    ['*'] = C_TCHAR | C_TARGET | C_TEXT, ['+'] = C_TCHAR | C_TARGET | C_TEXT,
    [','] = C_TARGET | C_TEXT, ['-'] = C_TCHAR | C_TARGET | C_TEXT,
    ['.'] = C_TCHAR | C_TARGET | C_TEXT, ['/'] = C_TARGET | C_TEXT,
    ['0' ... '9'] = C_TCHAR | C_TARGET | C_TEXT,
    [':'] = C_TARGET | C_TEXT, [';'] = C_TARGET | C_TEXT,
    ['<'] = C_TEXT, ['='] = C_TARGET | C_TEXT, ['>'] = C_TEXT,
    ['?'] = C_TARGET | C_TEXT, ['@'] = C_TARGET | C_TEXT,
    ['A' ... 'Z'] = C_TCHAR | C_TARGET | C_TEXT,
    ['['] = C_TEXT, ['\\'] = C_TEXT, [']'] = C_TEXT,
    ['^'] = C_TCHAR | C_TEXT, ['_'] = C_TCHAR | C_TARGET | C_TEXT,
    ['`'] = C_TCHAR | C_TEXT,
    ['a' ... 'z'] = C_TCHAR | C_TARGET | C_TEXT,
    ['{'] = C_TEXT, ['|'] = C_TCHAR | C_TEXT, ['}'] = C_TEXT,
    ['~'] = C_TCHAR | C_TARGET | C_TEXT,
};

static size_t run_of(const char *s, size_t i, size_t n, unsigned c)
{
    while (i < n && (cls[(unsigned char)s[i]] & c))
        i++;
    return i;
}

/* The method at s[0..n) and its llhttp id, or -1 for one left to llhttp
 * (which knows some thirty more). */
static int method_id(const char *s, size_t n)
{
    switch (n) {
    case 3:
        return !memcmp(s, "GET", 3) ? HTTP_GET : !memcmp(s, "PUT", 3) ? HTTP_PUT : -1;
    case 4:
        return !memcmp(s, "POST", 4) ? HTTP_POST : !memcmp(s, "HEAD", 4) ? HTTP_HEAD : -1;
    case 5:
        return !memcmp(s, "PATCH", 5) ? HTTP_PATCH : -1;
    case 6:
        return !memcmp(s, "DELETE", 6) ? HTTP_DELETE : -1;
    case 7:
        return !memcmp(s, "OPTIONS", 7) ? HTTP_OPTIONS : -1;
    default:
        return -1;
    }
}

static bool crlf(const char *s, size_t i, size_t n)
{
    return i + 2 <= n && s[i] == '\r' && s[i + 1] == '\n';
}

/* "HTTP/1.1" or "HTTP/1.0" at s[i..): the minor version, or -1. */
static int version_at(const char *s, size_t i, size_t n)
{
    if (n - i < 8 || memcmp(s + i, "HTTP/1.", 7) != 0)
        return -1;
    return s[i + 7] == '1' ? 1 : s[i + 7] == '0' ? 0 : -1;
}

/* The start line at s[0..n): its length without the CRLF, or 0. */
static size_t start_line(coil__http_parser *p, const char *s, size_t n)
{
    coil__http_head *h = &p->head;
    size_t i, len;
    int minor;
    if (p->is_request) {
        i = run_of(s, 0, n, C_TCHAR);
        int id = method_id(s, i);
        if (id < 0 || i + 1 >= n || s[i] != ' ' || s[i + 1] != '/')
            return 0;
        h->method = s;
        h->method_len = (uint32_t)i;
        h->method_id = id;
        size_t t = i + 1;
        i = run_of(s, t + 1, n, C_TARGET);
        if (i >= n || s[i] != ' ')
            return 0;
        h->target = s + t;
        h->target_len = (uint32_t)(i - t);
        if ((minor = version_at(s, i + 1, n)) < 0)
            return 0;
        len = i + 9;
    } else {
        /* HTTP-version SP 3DIGIT SP reason, the reason possibly empty. */
        if ((minor = version_at(s, 0, n)) < 0 || n < 13 || s[8] != ' ' || s[12] != ' ')
            return 0;
        int status = 0;
        for (i = 9; i < 12; i++) {
            if (s[i] < '0' || s[i] > '9')
                return 0;
            status = status * 10 + (s[i] - '0');
        }
        len = run_of(s, 13, n, C_TEXT);
        h->status = status;
        if (len > 13) {
            h->reason = s + 13;
            h->reason_len = (uint32_t)(len - 13);
        }
    }
    if (!crlf(s, len, n) || len > p->limits.max_request_line)
        return 0;
    h->version_major = 1;
    h->version_minor = minor;
    memcpy(p->m.version, minor ? "1.1" : "1.0", 3);
    p->m.version_len = 3;
    p->m.version_seen = true;
    return len;
}

/* The head's strings point into s[0..len): they move to the same places
 * in the arena. */
static void move_to_arena(coil__http_parser *p, const char *s, size_t len)
{
    char *a = p->arena;
    coil__http_head *h = &p->head;
    memcpy(a, s, len);
    p->arena_used = len;
    if (h->method)
        h->method = a + (h->method - s);
    if (h->target)
        h->target = a + (h->target - s);
    if (h->reason)
        h->reason = a + (h->reason - s);
    for (uint32_t f = 0; f < h->nfields; f++) {
        h->fields[f].name = a + (h->fields[f].name - s);
        h->fields[f].value = a + (h->fields[f].value - s);
    }
}

size_t coil__http_plain_head(coil__http_parser *p, const char *s, size_t n)
{
    coil__http_head *h = &p->head;
    size_t i = start_line(p, s, n);
    if (!i)
        return 0;
    i += 2;
    size_t section = 0; /* the field section's bytes, as the scanner counts them */
    for (;;) {
        if (crlf(s, i, n)) {
            section += 2;
            i += 2;
            break;
        }
        size_t name = i, colon = run_of(s, i, n, C_TCHAR);
        if (colon == name || colon >= n || s[colon] != ':')
            return 0;
        size_t v = colon + 1, end = run_of(s, v, n, C_TEXT);
        if (!crlf(s, end, n))
            return 0;
        section += end + 2 - name;
        if (section > p->limits.max_header_bytes || h->nfields >= p->max_fields ||
            h->nfields >= p->limits.max_headers)
            return 0;
        const char *value = s + v;
        size_t vlen = end - v;
        coil__http_trim(&value, &vlen);
        h->fields[h->nfields++] = (coil__http_field){
            .name = s + name,
            .name_len = (uint32_t)(colon - name),
            .value = value,
            .value_len = (uint32_t)vlen,
        };
        i = end + 2;
    }
    /* The other path copies less (no separators) and names the limit it
     * reaches: a head that does not fit whole is left to it. */
    if (section > p->limits.max_header_bytes || i > p->strings_cap)
        return 0;
    move_to_arena(p, s, i);
    return i;
}
