/*
 * The heads the proxy sends: the request re-serialised for the upstream
 * (never the client's raw bytes, so nothing ambiguous passes), and the
 * response fields handed to the client. Hop-by-hop fields stop here
 * (RFC 9110 7.6.1); the forwarding fields say who the client was.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "forward.h"

/* Case-insensitive, after the length and the first letter: most names
 * differ there, and every field of every head passes here. lower is the
 * name in lower case, beginning with a letter. */
static bool name_is(const coil_http_field *f, const char *lower, size_t n)
{
    return f->name_len == n && (f->name[0] | 0x20) == lower[0] &&
           strncasecmp(f->name, lower, n) == 0;
}

#define NAME_IS(f, lit) name_is((f), (lit), sizeof(lit) - 1)

/* The fields the proxy acts on. */
enum field_kind {
    FK_OTHER,
    FK_HOP,                    /* hop-by-hop (RFC 9110 7.6.1), or framing the proxy sets */
    FK_CONNECTION,             /* hop-by-hop, and names more of them */
    FK_UPGRADE,                /* hop-by-hop, but a 101 hands it on */
    FK_HOST,
    FK_DATE,
    FK_XFF,                    /* X-Forwarded-For: extended */
    FK_XF_OTHER,               /* X-Forwarded-Proto, -Host: replaced */
};

/* The length picks the few names worth comparing. */
static enum field_kind field_kind(const coil_http_field *f)
{
    switch (f->name_len) {
    case 2:
        return NAME_IS(f, "te") ? FK_HOP : FK_OTHER;
    case 4:
        return NAME_IS(f, "host") ? FK_HOST : NAME_IS(f, "date") ? FK_DATE : FK_OTHER;
    case 7:
        return NAME_IS(f, "upgrade") ? FK_UPGRADE : NAME_IS(f, "trailer") ? FK_HOP : FK_OTHER;
    case 10:
        return NAME_IS(f, "connection") ? FK_CONNECTION
               : NAME_IS(f, "keep-alive") ? FK_HOP
                                           : FK_OTHER;
    case 14:
        return NAME_IS(f, "content-length") ? FK_HOP : FK_OTHER;
    case 15:
        return NAME_IS(f, "x-forwarded-for") ? FK_XFF : FK_OTHER;
    case 16:
        return NAME_IS(f, "proxy-connection") ? FK_HOP
               : NAME_IS(f, "x-forwarded-host") ? FK_XF_OTHER
                                                 : FK_OTHER;
    case 17:
        return NAME_IS(f, "transfer-encoding") ? FK_HOP
               : NAME_IS(f, "x-forwarded-proto") ? FK_XF_OTHER
                                                  : FK_OTHER;
    default:
        return FK_OTHER;
    }
}

static bool has_connection(const coil_http_field *fields, uint32_t nfields)
{
    for (uint32_t i = 0; i < nfields; i++)
        if (NAME_IS(&fields[i], "connection"))
            return true;
    return false;
}

/* Is name listed in a Connection field (comma-separated tokens)? */
static bool named_by_connection(const coil_http_field *fields, uint32_t nfields,
                                const coil_http_field *f)
{
    for (uint32_t i = 0; i < nfields; i++) {
        if (!NAME_IS(&fields[i], "connection"))
            continue;
        const char *v = fields[i].value, *end = v + fields[i].value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                v++;
            const char *t = v;
            while (v < end && *v != ',' && *v != ' ' && *v != '\t')
                v++;
            if ((size_t)(v - t) == f->name_len && strncasecmp(t, f->name, f->name_len) == 0)
                return true;
        }
    }
    return false;
}

/* Hop-by-hop fields and the framing the proxy sets itself. connection:
 * whether the head has a Connection field at all (which may name more). */
static bool hop_by_hop(const coil_http_field *fields, uint32_t n, const coil_http_field *f,
                       enum field_kind kind, bool connection)
{
    if (kind == FK_HOP || kind == FK_CONNECTION || kind == FK_UPGRADE)
        return true;
    return connection && named_by_connection(fields, n, f);
}

/* Inline: the many literals below then copy with their size known. */
static inline void put(px_head_buf *h, const void *s, size_t n)
{
    if (h->len + n > h->cap) {
        h->overflow = true;
        return;
    }
    memcpy(h->p + h->len, s, n);
    h->len += n;
}

/* A string literal: no strlen. */
#define PUT_LIT(h, lit) put((h), (lit), sizeof(lit) - 1)

/* "name: value\r\n", in one piece (the buffer overflows as a whole). */
static void put_field(px_head_buf *h, const char *name, size_t nlen, const char *v, size_t vlen)
{
    size_t n = nlen + vlen + 4;
    if (h->len + n > h->cap) {
        h->overflow = true;
        return;
    }
    char *e = h->p + h->len;
    memcpy(e, name, nlen);
    e += nlen;
    *e++ = ':';
    *e++ = ' ';
    memcpy(e, v, vlen);
    e += vlen;
    *e++ = '\r';
    *e = '\n';
    h->len += n;
}

/* Dotted quad by hand: glibc's inet_ntop formats IPv4 with sprintf, which
 * cost more than building the rest of the head. */
static void ipv4_text(const struct in_addr *a, char *out)
{
    const unsigned char *b = (const unsigned char *)&a->s_addr;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *out++ = (char)('0' + v / 100);
        if (v >= 10)
            *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

/* The last IPv4 client address seen on this thread (one core) and its
 * text: a keep-alive connection's requests all come from one address. */
static _Thread_local struct {
    bool set;
    struct in_addr addr;
    char text[INET_ADDRSTRLEN];
} last_v4;

static void client_ip(const coil_http_request *req, char *out, size_t len)
{
    const struct sockaddr_storage *ss = req->peer;
    if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)len);
    } else if (ss->ss_family == AF_INET && len >= INET_ADDRSTRLEN) {
        const struct in_addr *a = &((const struct sockaddr_in *)ss)->sin_addr;
        if (!last_v4.set || last_v4.addr.s_addr != a->s_addr) {
            ipv4_text(a, last_v4.text);
            last_v4.addr = *a;
            last_v4.set = true;
        }
        memcpy(out, last_v4.text, sizeof(last_v4.text));
    } else {
        snprintf(out, len, "unknown");
    }
}

const coil_http_field *px_upgrade_field(const coil_http_request *req)
{
    return req->upgrade ? coil_http_field_find(req, "upgrade") : NULL;
}

void px_build_request_head(px_head_buf *h, coil_http_request *req, bool chunked, bool tunnel)
{
    put(h, req->method, req->method_len);
    PUT_LIT(h, " ");
    put(h, req->target, req->target_len);
    PUT_LIT(h, " HTTP/1.1\r\n");
    const coil_http_field *xff = NULL;
    bool have_host = false;
    bool connection = has_connection(req->fields, req->nfields);
    for (uint32_t i = 0; i < req->nfields; i++) {
        const coil_http_field *f = &req->fields[i];
        enum field_kind kind = field_kind(f);
        if (hop_by_hop(req->fields, req->nfields, f, kind, connection))
            continue;
        if (kind == FK_XFF) {
            xff = f;
            continue;
        }
        if (kind == FK_XF_OTHER)
            continue;
        have_host |= kind == FK_HOST;
        put_field(h, f->name, f->name_len, f->value, f->value_len);
    }
    if (!have_host && req->host_len)
        put_field(h, "Host", 4, req->host, req->host_len);
    char ip[64];
    client_ip(req, ip, sizeof(ip));
    PUT_LIT(h, "X-Forwarded-For: ");
    if (xff) {
        put(h, xff->value, xff->value_len);
        PUT_LIT(h, ", ");
    }
    put(h, ip, strlen(ip));
    PUT_LIT(h, "\r\nX-Forwarded-Proto: http\r\n");
    if (req->host_len)
        put_field(h, "X-Forwarded-Host", 16, req->host, req->host_len);
    PUT_LIT(h, "Via: 1.1 coil-proxy\r\n");
    const coil_http_field *up = tunnel ? px_upgrade_field(req) : NULL;
    if (up) {
        /* The one hop-by-hop pair that goes on: the upstream must agree to
         * the switch itself. */
        PUT_LIT(h, "Connection: upgrade\r\n");
        put_field(h, "Upgrade", 7, up->value, up->value_len);
    }
    char line[64];
    if (chunked)
        PUT_LIT(h, "Transfer-Encoding: chunked\r\n");
    else if (req->content_length > 0) {
        int n = snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)req->content_length);
        put(h, line, (size_t)n);
    }
    PUT_LIT(h, "\r\n");
}

unsigned px_response_fields(const coil_http_response_head *rh, coil_http_field *out, unsigned cap)
{
    unsigned n = 0;
    bool connection = has_connection(rh->fields, rh->nfields);
    for (uint32_t i = 0; i < rh->nfields && n + 2 < cap; i++) {
        const coil_http_field *f = &rh->fields[i];
        enum field_kind kind = field_kind(f);
        /* A 101's Upgrade names the protocol switched to: the client needs it. */
        bool upgrade = rh->status == 101 && kind == FK_UPGRADE;
        if (!upgrade && (hop_by_hop(rh->fields, rh->nfields, f, kind, connection) || kind == FK_DATE))
            continue;
        out[n++] = *f;
    }
    out[n++] = (coil_http_field)COIL_HTTP_FIELD("Via", "1.1 coil-proxy");
    return n;
}
