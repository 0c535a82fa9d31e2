/*
 * Field syntax helpers shared by the parser and its checks. Everything is
 * ASCII and locale-free: a locale must never change what a message means.
 */
#include <string.h>

#include "fields.h"
#include "parser.h"

bool coil__http_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool coil__http_is_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!coil__http_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

bool coil__http_ieq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n; i++) {
        if (!lit[i] || lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
            return false;
    }
    return lit[i] == '\0';
}

void coil__http_trim(const char **s, size_t *n)
{
    const char *p = *s;
    size_t len = *n;
    while (len && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        len--;
    }
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    *s = p;
    *n = len;
}

bool coil__http_list_next(const char **cur, const char *end, const char **elem, size_t *elem_len)
{
    const char *p = *cur;
    while (p < end) {
        const char *start = p;
        while (p < end && *p != ',')
            p++;
        const char *e = start;
        size_t n = (size_t)(p - start);
        if (p < end)
            p++; /* the comma */
        coil__http_trim(&e, &n);
        if (n) {
            *cur = p;
            *elem = e;
            *elem_len = n;
            return true;
        }
    }
    *cur = end;
    return false;
}

int coil__http_parse_length(const char *s, size_t n, int64_t *out)
{
    if (!n)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The bytes of an authority (RFC 3986 2.2, 2.3, 3.2.2), besides the
 * pct-encoding and the port: unreserved and sub-delims make a reg-name; an
 * IP-literal takes ':' as well. One table look-up per byte: a Host field is
 * checked in every request. */
enum { REG_NAME = 1, IP_LITERAL = 2 };
#define AUTH_BOTH (REG_NAME | IP_LITERAL)
static const unsigned char authority_byte[256] = {
    ['0' ... '9'] = AUTH_BOTH, ['a' ... 'z'] = AUTH_BOTH, ['A' ... 'Z'] = AUTH_BOTH,
    ['-'] = AUTH_BOTH,  ['.'] = AUTH_BOTH,  ['_'] = AUTH_BOTH, ['~'] = AUTH_BOTH,
    ['!'] = AUTH_BOTH,  ['$'] = AUTH_BOTH,  ['&'] = AUTH_BOTH, ['\''] = AUTH_BOTH,
    ['('] = AUTH_BOTH,  [')'] = AUTH_BOTH,  ['*'] = AUTH_BOTH, ['+'] = AUTH_BOTH,
    [','] = AUTH_BOTH,  [';'] = AUTH_BOTH,  ['='] = AUTH_BOTH, [':'] = IP_LITERAL,
};

bool coil__http_valid_authority(const char *s, size_t n, bool allow_empty, bool need_port)
{
    if (!n)
        return allow_empty && !need_port;
    size_t i = 0;
    if (s[0] == '[') {
        /* IP-literal: IPv6address or IPvFuture; the exact address grammar
         * is left to whoever connects to it, only the alphabet is checked. */
        i = 1;
        while (i < n && s[i] != ']') {
            if (!(authority_byte[(unsigned char)s[i]] & IP_LITERAL))
                return false;
            i++;
        }
        if (i == n || i == 1)
            return false;
        i++; /* ']' */
    } else {
        while (i < n) {
            unsigned char c = (unsigned char)s[i];
            if (authority_byte[c] & REG_NAME) {
                i++;
                continue;
            }
            if (c == ':')
                break;
            if (c != '%' || i + 2 >= n || !is_hex((unsigned char)s[i + 1]) ||
                !is_hex((unsigned char)s[i + 2]))
                return false;
            i += 3;
        }
        if (i == 0)
            return false; /* ":80" names no host */
    }
    if (i == n)
        return !need_port;
    if (s[i] != ':')
        return false;
    i++;
    size_t digits = n - i;
    if (digits == 0)
        return !need_port; /* RFC 3986 allows "host:" */
    if (digits > 5)
        return false;
    unsigned port = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned)(s[i] - '0');
    }
    return port <= 65535;
}

bool coil__http_valid_reason(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\t' && (c < 0x20 || c == 0x7f))
            return false;
    }
    return true;
}

const unsigned char coil__http_run_end[256] = {
    ['\0'] = COIL__HTTP_ENDS_VALUE | COIL__HTTP_ENDS_TOKEN,
    ['\n'] = COIL__HTTP_ENDS_VALUE | COIL__HTTP_ENDS_TOKEN | COIL__HTTP_ENDS_LINE | COIL__HTTP_ENDS_NAME,
    ['\r'] = COIL__HTTP_ENDS_VALUE | COIL__HTTP_ENDS_TOKEN | COIL__HTTP_ENDS_LINE | COIL__HTTP_ENDS_NAME,
    ['\t'] = COIL__HTTP_ENDS_TOKEN,
    [' '] = COIL__HTTP_ENDS_TOKEN,
    [':'] = COIL__HTTP_ENDS_TOKEN | COIL__HTTP_ENDS_NAME,
};

const coil__http_field *coil__http_field_get(const coil__http_head *h, const char *name)
{
    for (uint32_t i = 0; i < h->nfields; i++) {
        const coil__http_field *f = &h->fields[i];
        if (coil__http_ieq(f->name, f->name_len, name))
            return f;
    }
    return NULL;
}
