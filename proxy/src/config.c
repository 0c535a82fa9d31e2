/*
 * coil-proxy configuration parser: an INI-like format read line by line
 * (docs/proxy.md). Hand-written and strict on purpose: a proxy that silently
 * ignores a misspelt key runs with a default nobody asked for, so every
 * unknown name, malformed value and missing piece is an error naming the
 * file and line, and the first error stops the parse.
 *
 * Objects live in arrays that grow with realloc while parsing; the object of
 * the current section is always addressed by index (never by a pointer kept
 * across a line), and routes are linked to their upstreams only at the end,
 * when the upstream array no longer moves.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define MS_NS (1000LL * 1000)
#define S_NS (1000 * MS_NS)
#define MAX_LINE 4096
#define MAX_FILE (16u << 20)
/* Longest duration accepted: a day. Bounding it keeps "now + timeout"
 * far from int64 overflow anywhere a deadline is computed. */
#define MAX_DURATION_NS (1440 * 60 * S_NS)

_Static_assert(sizeof(unsigned) == sizeof(uint32_t), "unsigned fields are written as uint32_t");

typedef enum section {
    SEC_NONE,
    SEC_PROXY,
    SEC_LISTEN,
    SEC_UPSTREAM,
    SEC_ROUTE,
} section;

typedef struct parser parser;
typedef struct key_def key_def;

/* Stores value v (trimmed, NUL-terminated, writable) into obj. Returns 0, or
 * -1 after fail() wrote the error. */
typedef int (*setter)(parser *p, void *obj, const key_def *k, char *v);

struct key_def {
    const char *name;
    setter set;
    size_t off;            /* field in the section's object, for the generic setters */
    uint64_t lo, hi;       /* accepted range, for numbers and sizes */
    const char *range;     /* the range as the error message shows it */
    bool repeat;           /* may appear more than once in a section */
};

#define MAX_KEYS 16

struct parser {
    px_config *cfg;
    const char *name;
    char *err;
    size_t errlen;
    unsigned line;
    section sec;
    unsigned sec_line;
    unsigned proxy_line;          /* first [proxy]; 0 = none yet */
    unsigned seen[MAX_KEYS];      /* line of each key of the current section; 0 = unset */
    unsigned *route_up_line;      /* per route: the line of its "upstream" key */
};

__attribute__((format(printf, 3, 4))) static int fail(parser *p, unsigned line, const char *fmt, ...)
{
    if (!p->err || !p->errlen)
        return -1;
    int n = line ? snprintf(p->err, p->errlen, "%s:%u: ", p->name, line)
                 : snprintf(p->err, p->errlen, "%s: ", p->name);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int oom(parser *p)
{
    return fail(p, 0, "out of memory");
}

/* ---- values ---- */

static bool is_digits(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Decimal digits only (no sign, no spaces). false on syntax or overflow;
 * *overflow tells which. */
static bool parse_u64(const char *s, size_t n, uint64_t *out, bool *overflow)
{
    *overflow = false;
    if (!is_digits(s, n))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            *overflow = true;
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int get_number(parser *p, const key_def *k, const char *v, uint64_t *out)
{
    bool overflow;
    if (!parse_u64(v, strlen(v), out, &overflow) && !overflow)
        return fail(p, p->line, "bad number '%s'", v);
    if (overflow || *out < k->lo || *out > k->hi)
        return fail(p, p->line, "number '%s' out of range for '%s' (%s)", v, k->name, k->range);
    return 0;
}

/* "0", "512", "64k", "1m", "1g": binary multiples. */
static int get_size(parser *p, const key_def *k, const char *v, uint64_t *out)
{
    size_t n = strlen(v);
    unsigned shift = 0;
    if (n) {
        switch (v[n - 1]) {
        case 'k': case 'K': shift = 10; n--; break;
        case 'm': case 'M': shift = 20; n--; break;
        case 'g': case 'G': shift = 30; n--; break;
        default: break;
        }
    }
    uint64_t x = 0;
    bool overflow;
    if (!parse_u64(v, n, &x, &overflow) && !overflow)
        return fail(p, p->line, "bad size '%s' (use k, m or g)", v);
    if (overflow || x > (UINT64_MAX >> shift) || (x << shift) < k->lo || (x << shift) > k->hi)
        return fail(p, p->line, "size '%s' out of range for '%s' (%s)", v, k->name, k->range);
    *out = x << shift;
    return 0;
}

/* "250ms", "10s", "1m", "1h": a unit is required, so "10" is not silently seconds
 * to one reader and milliseconds to another. */
static int get_duration(parser *p, const key_def *k, const char *v, int64_t *out)
{
    size_t n = strlen(v);
    int64_t unit;
    if (n > 2 && !strcmp(v + n - 2, "ms")) {
        unit = MS_NS;
        n -= 2;
    } else if (n > 1 && v[n - 1] == 's') {
        unit = S_NS;
        n -= 1;
    } else if (n > 1 && v[n - 1] == 'm') {
        unit = 60 * S_NS;
        n -= 1;
    } else if (n > 1 && v[n - 1] == 'h') {
        unit = 3600 * S_NS;
        n -= 1;
    } else {
        return fail(p, p->line, "bad duration '%s' (use ms, s, m or h)", v);
    }
    uint64_t x = 0;
    bool overflow;
    if (!parse_u64(v, n, &x, &overflow) && !overflow)
        return fail(p, p->line, "bad duration '%s' (use ms, s, m or h)", v);
    if (overflow || x == 0 || x > (uint64_t)(MAX_DURATION_NS / unit))
        return fail(p, p->line, "duration '%s' out of range for '%s' (1ms..1440m)", v, k->name);
    *out = (int64_t)x * unit;
    return 0;
}

static int copy_str(parser *p, char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return fail(p, p->line, "value too long (max %zu bytes)", cap - 1);
    memcpy(dst, v, n + 1);
    return 0;
}

/* Numeric IPv4 "a.b.c.d:port" or IPv6 "[x::y]:port"; names are not
 * resolved (a proxy must not depend on DNS to start). host gets the address
 * without brackets. */
static int get_addr(parser *p, const char *v, struct sockaddr_storage *ss, socklen_t *len,
                    char *host, size_t hostcap, uint16_t *port)
{
    const char *h, *hend, *ptext;
    if (v[0] == '[') {
        h = v + 1;
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            goto bad;
        ptext = hend + 2;
    } else {
        hend = strchr(v, ':');
        if (!hend)
            goto bad;
        if (strchr(hend + 1, ':'))
            return fail(p, p->line, "bad address '%s' (IPv6 needs brackets, as [::1]:8080)", v);
        h = v;
        ptext = hend + 1;
    }
    size_t hl = (size_t)(hend - h);
    char hbuf[INET6_ADDRSTRLEN];
    if (!hl || hl >= sizeof(hbuf) || hl >= hostcap)
        goto bad;
    memcpy(hbuf, h, hl);
    hbuf[hl] = 0;
    memset(ss, 0, sizeof(*ss));
    if (v[0] == '[') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, hbuf, &a->sin6_addr) != 1)
            goto bad;
        a->sin6_family = AF_INET6;
        *len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, hbuf, &a->sin_addr) != 1)
            goto bad;
        a->sin_family = AF_INET;
        *len = sizeof(*a);
    }
    uint64_t pn;
    bool overflow;
    if (!parse_u64(ptext, strlen(ptext), &pn, &overflow) || pn < 1 || pn > 65535)
        return fail(p, p->line, "bad port in '%s' (1..65535)", v);
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)pn);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)pn);
    memcpy(host, hbuf, hl + 1);
    *port = (uint16_t)pn;
    return 0;
bad:
    return fail(p, p->line, "bad address '%s' (use a numeric IPv4:port or [IPv6]:port)", v);
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.';
}

/* Upstream names: what a route can spell back without quoting. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (!n || n >= PX_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return false;
    return true;
}

/* RFC 9110 token, for header field names. */
static bool valid_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return false;
    return true;
}

/* A path: starts with '/', visible ASCII only (paths arrive
 * percent-encoded, so a raw space or non-ASCII byte could never match). */
static bool valid_path(const char *s, bool allow_query)
{
    if (s[0] != '/')
        return false;
    for (; *s; s++) {
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || *s == '#')
            return false;
        if (*s == '?' && !allow_query)
            return false;
    }
    return true;
}

/* A route host: a name (letters, digits, '-', '.', '_') or an IPv6 literal
 * in brackets; no port, since matching ignores the request's port. */
static bool valid_host(const char *s)
{
    size_t n = strlen(s);
    if (s[0] == '[') {
        char buf[INET6_ADDRSTRLEN];
        struct in6_addr a;
        if (n < 3 || s[n - 1] != ']' || n - 2 >= sizeof(buf))
            return false;
        memcpy(buf, s + 1, n - 2);
        buf[n - 2] = 0;
        return inet_pton(AF_INET6, buf, &a) == 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return false;
    return n > 0;
}

/* ---- generic setters ---- */

static int set_u32(parser *p, void *obj, const key_def *k, char *v)
{
    uint64_t x = 0;
    if (get_number(p, k, v, &x) < 0)
        return -1;
    *(uint32_t *)((char *)obj + k->off) = (uint32_t)x;
    return 0;
}

static int set_size32(parser *p, void *obj, const key_def *k, char *v)
{
    uint64_t x = 0;
    if (get_size(p, k, v, &x) < 0)
        return -1;
    *(uint32_t *)((char *)obj + k->off) = (uint32_t)x;
    return 0;
}

static int set_size64(parser *p, void *obj, const key_def *k, char *v)
{
    uint64_t x = 0;
    if (get_size(p, k, v, &x) < 0)
        return -1;
    *(uint64_t *)((char *)obj + k->off) = x;
    return 0;
}

static int set_duration(parser *p, void *obj, const key_def *k, char *v)
{
    return get_duration(p, k, v, (int64_t *)((char *)obj + k->off));
}

/* ---- [proxy] ---- */

static int set_cores(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_config *c = obj;
    c->ncpus = 0;
    if (!strcmp(v, "all"))
        return 0;
    bool used[256] = { false };
    char *s = v;
    for (;;) {
        char *comma = strchr(s, ',');
        char *end = comma ? comma : s + strlen(s);
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        char *e = end;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        uint64_t cpu;
        bool overflow;
        if (!parse_u64(s, (size_t)(e - s), &cpu, &overflow) && !overflow) {
            c->ncpus = 0;
            return fail(p, p->line, "bad cores '%s' (use a list like 0,1 or all)", v);
        }
        if (overflow || cpu > 255) {
            c->ncpus = 0;
            return fail(p, p->line, "CPU %.*s in cores is over 255", (int)(e - s), s);
        }
        if (used[cpu]) {
            c->ncpus = 0;
            return fail(p, p->line, "duplicate CPU %u in cores", (unsigned)cpu);
        }
        used[cpu] = true;
        c->cpus[c->ncpus++] = (int)cpu;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}

static int set_access_log(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_config *c = obj;
    if (!strcmp(v, "off")) {
        c->access_log[0] = 0;
        return 0;
    }
    return copy_str(p, c->access_log, sizeof(c->access_log), v);
}

static int set_metrics(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_config *c = obj;
    c->metrics_addr[0] = c->metrics_host[0] = 0;
    c->metrics_port = 0;
    if (!strcmp(v, "off"))
        return 0;
    struct sockaddr_storage ss;
    socklen_t len;
    if (strlen(v) >= sizeof(c->metrics_addr))
        return fail(p, p->line, "bad address '%s' (use a numeric IPv4:port or [IPv6]:port)", v);
    if (get_addr(p, v, &ss, &len, c->metrics_host, sizeof(c->metrics_host), &c->metrics_port) < 0)
        return -1;
    strcpy(c->metrics_addr, v);
    return 0;
}

static int set_forward(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_config *c = obj;
    if (strcmp(v, "buffers") && strcmp(v, "splice"))
        return fail(p, p->line, "unknown forward mode '%s' (buffers or splice)", v);
    strcpy(c->forward_mode, v);
    return 0;
}

/* ---- [listen] ---- */

static int set_listen_address(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_listener *l = obj;
    if (strlen(v) >= sizeof(l->addr_text))
        return fail(p, p->line, "bad address '%s' (use a numeric IPv4:port or [IPv6]:port)", v);
    /* Port 0 is refused by get_addr: with one SO_REUSEPORT listener per
     * core, each core would get a different ephemeral port. */
    if (get_addr(p, v, &l->addr, &l->addr_len, l->host, sizeof(l->host), &l->port) < 0)
        return -1;
    strcpy(l->addr_text, v);
    /* Two identical listeners would both bind (SO_REUSEPORT) and split the
     * traffic: surely a mistake. */
    for (unsigned i = 0; i + 1 < p->cfg->nlisteners; i++) {
        const px_listener *o = &p->cfg->listeners[i];
        if (o->addr_len == l->addr_len && !memcmp(&o->addr, &l->addr, l->addr_len))
            return fail(p, p->line, "duplicate listener '%s' (first at line %u)", v, o->line);
    }
    return 0;
}

/* ---- [upstream NAME] ---- */

static int set_server(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_upstream *u = obj;
    px_server srv = { .weight = 1 };
    char *save = NULL;
    char *addr = strtok_r(v, " \t", &save);
    if (strlen(addr) >= sizeof(srv.addr_text))
        return fail(p, p->line, "bad address '%s' (use a numeric IPv4:port or [IPv6]:port)", addr);
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    if (get_addr(p, addr, &srv.addr, &srv.addr_len, host, sizeof(host), &port) < 0)
        return -1;
    strcpy(srv.addr_text, addr);
    bool weighted = false;
    for (char *opt; (opt = strtok_r(NULL, " \t", &save));) {
        if (strncmp(opt, "weight=", 7))
            return fail(p, p->line, "unknown server option '%s' (weight=N)", opt);
        if (weighted)
            return fail(p, p->line, "weight given twice");
        uint64_t w;
        bool overflow;
        if (!parse_u64(opt + 7, strlen(opt + 7), &w, &overflow) || w < 1 || w > 1000)
            return fail(p, p->line, "bad weight '%s' (1..1000)", opt + 7);
        srv.weight = (unsigned)w;
        weighted = true;
    }
    px_server *s = realloc(u->servers, (u->nservers + 1) * sizeof(*s));
    if (!s)
        return oom(p);
    u->servers = s;
    u->servers[u->nservers++] = srv;
    return 0;
}

static int set_balance(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_upstream *u = obj;
    u->hash_header[0] = 0;
    if (!strcmp(v, "round_robin")) {
        u->balance = PX_BALANCE_ROUND_ROBIN;
    } else if (!strcmp(v, "least_outstanding")) {
        u->balance = PX_BALANCE_LEAST_OUTSTANDING;
    } else if (!strcmp(v, "hash_client")) {
        u->balance = PX_BALANCE_HASH_CLIENT;
    } else if (!strncmp(v, "hash_header", 11) && (v[11] == 0 || v[11] == ' ' || v[11] == '\t')) {
        const char *h = v + 11;
        while (*h == ' ' || *h == '\t')
            h++;
        if (!*h)
            return fail(p, p->line, "hash_header needs a header name");
        if (!valid_token(h) || strlen(h) >= sizeof(u->hash_header))
            return fail(p, p->line, "bad header name '%s'", h);
        strcpy(u->hash_header, h);
        u->balance = PX_BALANCE_HASH_HEADER;
    } else {
        return fail(p, p->line,
                    "unknown balance '%s' (round_robin, least_outstanding, hash_header NAME or "
                    "hash_client)",
                    v);
    }
    return 0;
}

static int set_health_check(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_upstream *u = obj;
    if (!strcmp(v, "off")) {
        u->health_path[0] = 0;
        return 0;
    }
    if (!valid_path(v, true))
        return fail(p, p->line, "bad health_check '%s' (a path starting with /, or off)", v);
    return copy_str(p, u->health_path, sizeof(u->health_path), v);
}

/* ---- [route] ---- */

static int set_route_host(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_route *r = obj;
    if (!valid_host(v))
        return fail(p, p->line, "bad host '%s' (a name or [IPv6] without port)", v);
    return copy_str(p, r->host, sizeof(r->host), v);
}

static int set_route_path(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_route *r = obj;
    if (!valid_path(v, false))
        return fail(p, p->line, "bad path '%s' (a prefix starting with /)", v);
    return copy_str(p, r->path_prefix, sizeof(r->path_prefix), v);
}

static int set_route_upstream(parser *p, void *obj, const key_def *k, char *v)
{
    (void)k;
    px_route *r = obj;
    if (!valid_name(v))
        return fail(p, p->line, "route uses unknown upstream '%s'", v);
    strcpy(r->upstream_name, v);
    p->route_up_line[p->cfg->nroutes - 1] = p->line;
    return 0;
}

/* ---- key tables ---- */

#define F(type, field) offsetof(type, field)

static const key_def proxy_keys[] = {
    { "cores", set_cores, 0, 0, 0, NULL, false },
    { "access_log", set_access_log, 0, 0, 0, NULL, false },
    { "metrics", set_metrics, 0, 0, 0, NULL, false },
    { "max_body", set_size64, F(px_config, max_body), 0, UINT64_MAX, "any size", false },
    { "max_header_bytes", set_size32, F(px_config, max_header_bytes), 256, 1 << 20, "256..1m",
      false },
    { "max_headers", set_u32, F(px_config, max_headers), 1, 10000, "1..10000", false },
    { "header_timeout", set_duration, F(px_config, header_timeout_ns), 0, 0, NULL, false },
    { "keepalive_timeout", set_duration, F(px_config, keepalive_timeout_ns), 0, 0, NULL, false },
    { "send_timeout", set_duration, F(px_config, send_timeout_ns), 0, 0, NULL, false },
    { "body_timeout", set_duration, F(px_config, body_timeout_ns), 0, 0, NULL, false },
    { "body_min_rate", set_size64, F(px_config, body_min_rate), 0, UINT64_MAX, "any size", false },
    { "drain_timeout", set_duration, F(px_config, drain_timeout_ns), 0, 0, NULL, false },
    { "forward", set_forward, 0, 0, 0, NULL, false },
    { NULL, NULL, 0, 0, 0, NULL, false },
};

static const key_def listen_keys[] = {
    { "address", set_listen_address, 0, 0, 0, NULL, false },
    { NULL, NULL, 0, 0, 0, NULL, false },
};

static const key_def upstream_keys[] = {
    { "server", set_server, 0, 0, 0, NULL, true },
    { "balance", set_balance, 0, 0, 0, NULL, false },
    { "keepalive", set_u32, F(px_upstream, keepalive), 0, 10000, "0..10000", false },
    { "connect_timeout", set_duration, F(px_upstream, connect_timeout_ns), 0, 0, NULL, false },
    { "response_timeout", set_duration, F(px_upstream, response_timeout_ns), 0, 0, NULL, false },
    { "idle_timeout", set_duration, F(px_upstream, idle_timeout_ns), 0, 0, NULL, false },
    { "tunnel_timeout", set_duration, F(px_upstream, tunnel_timeout_ns), 0, 0, NULL, false },
    { "fail_threshold", set_u32, F(px_upstream, fail_threshold), 0, 10000, "0..10000", false },
    { "cooldown", set_duration, F(px_upstream, cooldown_ns), 0, 0, NULL, false },
    { "health_check", set_health_check, 0, 0, 0, NULL, false },
    { "health_interval", set_duration, F(px_upstream, health_interval_ns), 0, 0, NULL, false },
    { "health_timeout", set_duration, F(px_upstream, health_timeout_ns), 0, 0, NULL, false },
    { "retries", set_u32, F(px_upstream, retries), 0, 10, "0..10", false },
    { NULL, NULL, 0, 0, 0, NULL, false },
};

static const key_def route_keys[] = {
    { "host", set_route_host, 0, 0, 0, NULL, false },
    { "path", set_route_path, 0, 0, 0, NULL, false },
    { "upstream", set_route_upstream, 0, 0, 0, NULL, false },
    { "max_body", set_size64, F(px_route, max_body), 0, UINT64_MAX, "any size", false },
    { NULL, NULL, 0, 0, 0, NULL, false },
};

/* ---- sections ---- */

/* Checks run when a section ends (at the next header or the end of the
 * file): what a section must contain is reported at its header line. */
static int close_section(parser *p)
{
    px_config *c = p->cfg;
    switch (p->sec) {
    case SEC_LISTEN:
        if (!c->listeners[c->nlisteners - 1].addr_len)
            return fail(p, p->sec_line, "[listen] has no address");
        break;
    case SEC_UPSTREAM: {
        const px_upstream *u = &c->upstreams[c->nupstreams - 1];
        if (!u->nservers)
            return fail(p, p->sec_line, "upstream '%s' has no server", u->name);
        break;
    }
    case SEC_ROUTE: {
        const px_route *r = &c->routes[c->nroutes - 1];
        if (!r->upstream_name[0])
            return fail(p, p->sec_line, "[route] has no upstream");
        /* The same host and prefix twice: the second could never be chosen. */
        for (unsigned i = 0; i + 1 < c->nroutes; i++) {
            const px_route *o = &c->routes[i];
            if (!strcasecmp(o->host, r->host) && !strcmp(o->path_prefix, r->path_prefix))
                return fail(p, p->sec_line,
                            "duplicate route for host '%s' path '%s' (first at line %u)", r->host,
                            r->path_prefix, o->line);
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

static void upstream_defaults(px_upstream *u)
{
    *u = (px_upstream){
        .balance = PX_BALANCE_ROUND_ROBIN,
        .keepalive = 32,
        .connect_timeout_ns = 2 * S_NS,
        .response_timeout_ns = 30 * S_NS,
        .idle_timeout_ns = 60 * S_NS,
        .tunnel_timeout_ns = 3600 * S_NS,
        .fail_threshold = 3,
        .cooldown_ns = 10 * S_NS,
        .health_interval_ns = 5 * S_NS,
        .health_timeout_ns = 2 * S_NS,
        .retries = 1,
    };
}

/* s is the text between '[' and ']', trimmed. */
static int open_section(parser *p, char *s)
{
    px_config *c = p->cfg;
    if (close_section(p) < 0)
        return -1;
    char *word = s, *rest = s;
    while (*rest && *rest != ' ' && *rest != '\t')
        rest++;
    size_t wl = (size_t)(rest - word);
    while (*rest == ' ' || *rest == '\t')
        rest++;
    memset(p->seen, 0, sizeof(p->seen));
    p->sec_line = p->line;

    if (wl == 8 && !strncmp(word, "upstream", 8)) {
        if (!*rest)
            return fail(p, p->line, "[upstream] needs a name, as [upstream app]");
        if (!valid_name(rest))
            return fail(p, p->line, "bad upstream name '%s' (letters, digits, '-', '_', '.')",
                        rest);
        for (unsigned i = 0; i < c->nupstreams; i++)
            if (!strcmp(c->upstreams[i].name, rest))
                return fail(p, p->line, "duplicate upstream '%s' (first at line %u)", rest,
                            c->upstreams[i].line);
        px_upstream *u = realloc(c->upstreams, (c->nupstreams + 1) * sizeof(*u));
        if (!u)
            return oom(p);
        c->upstreams = u;
        u = &c->upstreams[c->nupstreams++];
        upstream_defaults(u);
        strcpy(u->name, rest);
        u->line = p->line;
        p->sec = SEC_UPSTREAM;
        return 0;
    }

    const char *names[] = { "proxy", "listen", "route" };
    section secs[] = { SEC_PROXY, SEC_LISTEN, SEC_ROUTE };
    section sec = SEC_NONE;
    for (unsigned i = 0; i < 3; i++)
        if (wl == strlen(names[i]) && !strncmp(word, names[i], wl))
            sec = secs[i];
    if (sec == SEC_NONE)
        return fail(p, p->line, "unknown section '[%s]'", s);
    if (*rest)
        return fail(p, p->line, "[%.*s] takes no name", (int)wl, word);

    switch (sec) {
    case SEC_PROXY:
        /* One [proxy]: two would make "which cores value wins" a question. */
        if (p->proxy_line)
            return fail(p, p->line, "duplicate [proxy] section (first at line %u)", p->proxy_line);
        p->proxy_line = p->line;
        break;
    case SEC_LISTEN: {
        px_listener *l = realloc(c->listeners, (c->nlisteners + 1) * sizeof(*l));
        if (!l)
            return oom(p);
        c->listeners = l;
        c->listeners[c->nlisteners++] = (px_listener){ .line = p->line };
        break;
    }
    case SEC_ROUTE: {
        px_route *r = realloc(c->routes, (c->nroutes + 1) * sizeof(*r));
        if (!r)
            return oom(p);
        c->routes = r;
        unsigned *ul = realloc(p->route_up_line, (c->nroutes + 1) * sizeof(*ul));
        if (!ul)
            return oom(p);
        p->route_up_line = ul;
        ul[c->nroutes] = 0;
        c->routes[c->nroutes++] = (px_route){ .path_prefix = "/", .line = p->line };
        break;
    }
    default:
        break;
    }
    p->sec = sec;
    return 0;
}

static int key_value(parser *p, char *s)
{
    char *eq = strchr(s, '=');
    if (!eq)
        return fail(p, p->line, "missing '=' in '%s'", s);
    char *k = s, *ke = eq, *v = eq + 1;
    while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
        ke--;
    *ke = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!*k)
        return fail(p, p->line, "missing key before '='");
    if (!*v)
        return fail(p, p->line, "missing value for '%s'", k);

    px_config *c = p->cfg;
    const key_def *keys;
    void *obj;
    char where[PX_MAX_NAME + 16];
    switch (p->sec) {
    case SEC_PROXY:
        keys = proxy_keys;
        obj = c;
        strcpy(where, "[proxy]");
        break;
    case SEC_LISTEN:
        keys = listen_keys;
        obj = &c->listeners[c->nlisteners - 1];
        strcpy(where, "[listen]");
        break;
    case SEC_UPSTREAM:
        keys = upstream_keys;
        obj = &c->upstreams[c->nupstreams - 1];
        snprintf(where, sizeof(where), "[upstream %s]", c->upstreams[c->nupstreams - 1].name);
        break;
    case SEC_ROUTE:
        keys = route_keys;
        obj = &c->routes[c->nroutes - 1];
        strcpy(where, "[route]");
        break;
    default:
        return fail(p, p->line, "key '%s' outside any section", k);
    }
    for (unsigned i = 0; keys[i].name; i++) {
        if (strcmp(keys[i].name, k))
            continue;
        if (!keys[i].repeat && p->seen[i])
            return fail(p, p->line, "duplicate key '%s' (first at line %u)", k, p->seen[i]);
        p->seen[i] = p->line;
        return keys[i].set(p, obj, &keys[i], v);
    }
    return fail(p, p->line, "unknown key '%s' in %s", k, where);
}

/* ---- lines ---- */

/* Length of the UTF-8 sequence at s (n bytes available), or 0 if it is
 * malformed: overlong forms, surrogates and code points past U+10FFFF are
 * refused. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Control bytes (other than tab) and invalid UTF-8 are refused anywhere on
 * a line: they could end up in a path or a log file name, and a stray NUL
 * would silently cut a value short. */
static int check_bytes(parser *p, const char *line, size_t n)
{
    const unsigned char *s = (const unsigned char *)line;
    for (size_t i = 0; i < n;) {
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return fail(p, p->line, "control character 0x%02x", s[i]);
        size_t l = utf8_len(s + i, n - i);
        if (!l)
            return fail(p, p->line, "invalid UTF-8");
        i += l;
    }
    return 0;
}

static int parse_line(parser *p, const char *raw, size_t n)
{
    if (n && raw[n - 1] == '\r')
        n--;
    if (n > MAX_LINE)
        return fail(p, p->line, "line longer than %d bytes", MAX_LINE);
    if (check_bytes(p, raw, n) < 0)
        return -1;
    char buf[MAX_LINE + 1];
    memcpy(buf, raw, n);
    buf[n] = 0;
    /* A comment starts at '#' or ';' at the start of the line or after
     * whitespace, so "path = /a;b" keeps its ';'. */
    for (size_t i = 0; i < n; i++) {
        if ((buf[i] == '#' || buf[i] == ';') && (i == 0 || buf[i - 1] == ' ' || buf[i - 1] == '\t')) {
            buf[i] = 0;
            n = i;
            break;
        }
    }
    char *s = buf;
    while (*s == ' ' || *s == '\t')
        s++;
    while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = 0;
    if (!*s)
        return 0;
    if (*s != '[')
        return key_value(p, s);
    char *close = strchr(s, ']');
    if (!close)
        return fail(p, p->line, "missing ']' in section header");
    if (close[1])
        return fail(p, p->line, "unexpected text after ']'");
    *close = 0;
    s++;
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = close;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = 0;
    return open_section(p, s);
}

static int finish(parser *p)
{
    px_config *c = p->cfg;
    if (close_section(p) < 0)
        return -1;
    for (unsigned i = 0; i < c->nroutes; i++) {
        px_route *r = &c->routes[i];
        for (unsigned j = 0; j < c->nupstreams && !r->upstream; j++)
            if (!strcmp(c->upstreams[j].name, r->upstream_name))
                r->upstream = &c->upstreams[j];
        if (!r->upstream)
            return fail(p, p->route_up_line[i], "route uses unknown upstream '%s'",
                        r->upstream_name);
    }
    if (!c->nlisteners)
        return fail(p, 0, "no [listen] section");
    if (!c->nroutes)
        return fail(p, 0, "no [route] section");
    return 0;
}

static void config_defaults(px_config *c)
{
    *c = (px_config){
        .max_body = 0,
        .max_header_bytes = 16384,
        .max_headers = 100,
        .header_timeout_ns = 10 * S_NS,
        .keepalive_timeout_ns = 60 * S_NS,
        .send_timeout_ns = 30 * S_NS,
        .drain_timeout_ns = 10 * S_NS,
        .forward_mode = "buffers",
    };
}

static int parse_text(px_config *cfg, const char *name, const char *text, size_t len, char *err,
                      size_t errlen)
{
    config_defaults(cfg);
    parser p = { .cfg = cfg, .name = name ? name : "(config)", .err = err, .errlen = errlen };
    if (err && errlen)
        err[0] = 0;
    /* A byte-order mark some editors write is not part of the first line. */
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) {
        text += 3;
        len -= 3;
    }
    int rc = 0;
    for (size_t pos = 0; pos < len && rc == 0;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        p.line++;
        rc = parse_line(&p, text + pos, n);
        pos += n + 1;
    }
    if (rc == 0)
        rc = finish(&p);
    free(p.route_up_line);
    if (rc < 0)
        px_config_free(cfg);
    return rc;
}

int px_config_parse(px_config *cfg, const char *name, const char *text, char *err, size_t errlen)
{
    return parse_text(cfg, name, text, strlen(text), err, errlen);
}

int px_config_load(px_config *cfg, const char *path, char *err, size_t errlen)
{
    parser p = { .name = path, .err = err, .errlen = errlen };
    memset(cfg, 0, sizeof(*cfg));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(&p, 0, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(&p, 0, "%s", strerror(e));
    }
    if (!S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
        close(fd);
        if (!S_ISREG(st.st_mode))
            return fail(&p, 0, "not a regular file");
        return fail(&p, 0, "larger than %u bytes", MAX_FILE);
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *text = malloc(size + 1);
    if (!text) {
        close(fd);
        return oom(&p);
    }
    while (got < size) {
        ssize_t r = read(fd, text + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            size = got; /* shrank since fstat: parse what is there */
            break;
        }
        if (r < 0) {
            int e = errno;
            free(text);
            close(fd);
            return fail(&p, 0, "%s", strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    text[size] = 0;
    /* The length, not strlen: a NUL in the file is reported, not a
     * truncation point. */
    int rc = parse_text(cfg, path, text, size, err, errlen);
    free(text);
    return rc;
}

void px_config_free(px_config *cfg)
{
    for (unsigned i = 0; cfg->upstreams && i < cfg->nupstreams; i++)
        free(cfg->upstreams[i].servers);
    free(cfg->upstreams);
    free(cfg->listeners);
    free(cfg->routes);
    memset(cfg, 0, sizeof(*cfg));
}
