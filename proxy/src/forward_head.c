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

static bool name_is(const coil_http_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

/* Is name listed in a Connection field (comma-separated tokens)? */
static bool named_by_connection(const coil_http_field *fields, uint32_t nfields,
                                const coil_http_field *f)
{
    for (uint32_t i = 0; i < nfields; i++) {
        if (!name_is(&fields[i], "connection"))
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

/* Hop-by-hop fields and the framing the proxy sets itself. */
static bool hop_by_hop(const coil_http_field *fields, uint32_t n, const coil_http_field *f)
{
    static const char *const names[] = { "connection", "keep-alive", "te", "trailer", "upgrade",
                                         "proxy-connection", "transfer-encoding",
                                         "content-length" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name_is(f, names[i]))
            return true;
    return named_by_connection(fields, n, f);
}

static void put(px_head_buf *h, const void *s, size_t n)
{
    if (h->len + n > h->cap) {
        h->overflow = true;
        return;
    }
    memcpy(h->p + h->len, s, n);
    h->len += n;
}

static void puts_(px_head_buf *h, const char *s)
{
    put(h, s, strlen(s));
}

static void put_field(px_head_buf *h, const char *name, size_t nlen, const char *v, size_t vlen)
{
    put(h, name, nlen);
    puts_(h, ": ");
    put(h, v, vlen);
    puts_(h, "\r\n");
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

static void client_ip(const coil_http_request *req, char *out, size_t len)
{
    const struct sockaddr_storage *ss = req->peer;
    if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)len);
    else if (ss->ss_family == AF_INET && len >= INET_ADDRSTRLEN)
        ipv4_text(&((const struct sockaddr_in *)ss)->sin_addr, out);
    else
        snprintf(out, len, "unknown");
}

const coil_http_field *px_upgrade_field(const coil_http_request *req)
{
    return req->upgrade ? coil_http_field_find(req, "upgrade") : NULL;
}

void px_build_request_head(px_head_buf *h, coil_http_request *req, bool chunked, bool tunnel)
{
    put(h, req->method, req->method_len);
    puts_(h, " ");
    put(h, req->target, req->target_len);
    puts_(h, " HTTP/1.1\r\n");
    const coil_http_field *xff = NULL;
    bool have_host = false;
    for (uint32_t i = 0; i < req->nfields; i++) {
        const coil_http_field *f = &req->fields[i];
        if (hop_by_hop(req->fields, req->nfields, f))
            continue;
        if (name_is(f, "x-forwarded-for")) {
            xff = f;
            continue;
        }
        if (name_is(f, "x-forwarded-proto") || name_is(f, "x-forwarded-host"))
            continue;
        have_host |= name_is(f, "host");
        put_field(h, f->name, f->name_len, f->value, f->value_len);
    }
    if (!have_host && req->host_len)
        put_field(h, "Host", 4, req->host, req->host_len);
    char ip[64];
    client_ip(req, ip, sizeof(ip));
    puts_(h, "X-Forwarded-For: ");
    if (xff) {
        put(h, xff->value, xff->value_len);
        puts_(h, ", ");
    }
    puts_(h, ip);
    puts_(h, "\r\nX-Forwarded-Proto: http\r\n");
    if (req->host_len)
        put_field(h, "X-Forwarded-Host", 16, req->host, req->host_len);
    puts_(h, "Via: 1.1 coil-proxy\r\n");
    const coil_http_field *up = tunnel ? px_upgrade_field(req) : NULL;
    if (up) {
        /* The one hop-by-hop pair that goes on: the upstream must agree to
         * the switch itself. */
        puts_(h, "Connection: upgrade\r\n");
        put_field(h, "Upgrade", 7, up->value, up->value_len);
    }
    char line[64];
    if (chunked)
        puts_(h, "Transfer-Encoding: chunked\r\n");
    else if (req->content_length > 0) {
        snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)req->content_length);
        puts_(h, line);
    }
    puts_(h, "\r\n");
}

unsigned px_response_fields(const coil_http_response_head *rh, coil_http_field *out, unsigned cap)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < rh->nfields && n + 2 < cap; i++) {
        const coil_http_field *f = &rh->fields[i];
        /* A 101's Upgrade names the protocol switched to: the client needs it. */
        bool upgrade = rh->status == 101 && name_is(f, "upgrade");
        if (!upgrade && (hop_by_hop(rh->fields, rh->nfields, f) || name_is(f, "date")))
            continue;
        out[n++] = *f;
    }
    out[n++] = (coil_http_field)COIL_HTTP_FIELD("Via", "1.1 coil-proxy");
    return n;
}
