/*
 * The plain-head path (http/src/plain_head.c) against llhttp and the
 * scanner: the same bytes through both must give the same events, heads,
 * bodies and verdicts. Each base message below is taken by the plain path
 * (checked), then every byte of its head is replaced by each of the 256
 * values, every byte deleted, and each value inserted before every byte:
 * wherever the plain path still accepts, llhttp must accept the same, and
 * wherever it declines, the other path must be what answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coil/http.h"
#include "harness.h"
#include "parser.h"

#define ARENA_SIZE 16384
#define TRACE_CAP 4096

static const coil__http_limits roomy = {
    .max_request_line = 8192,
    .max_header_bytes = 8192,
    .max_headers = 100,
    .max_chunk_ext = 64,
    .max_body = 1 << 20,
};

static const coil__http_limits tight = {
    .max_request_line = 24,
    .max_header_bytes = 40,
    .max_headers = 3,
    .max_chunk_ext = 8,
    .max_body = 4,
};

typedef struct base {
    const char *raw;
    bool response;
    const coil__http_limits *limits;
} base;

static const base bases[] = {
    { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, &roomy },
    { "POST /up?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 5\r\n"
      "Connection: close\r\n\r\nhello",
      false, &roomy },
    { "GET /a HTTP/1.0\r\nConnection: keep-alive\r\nX-A: \t v a l\t \r\n\r\n"
      "GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
      false, &roomy },
    { "PUT /x HTTP/1.1\r\nHost: [::1]:80\r\nExpect: 100-continue\r\nContent-Length: 03\r\n\r\nabc",
      false, &roomy },
    { "DELETE /d HTTP/1.1\r\nhost: a\r\nX:\r\n\r\n", false, &roomy },
    { "PATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", false, &roomy },
    { "HEAD /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false, &roomy },
    { "OPTIONS /o HTTP/1.1\r\nHost: a\r\nUser-Agent: t/1 (x; y)\r\n\r\n", false, &roomy },
    /* right at each of the tight limits: a byte more crosses one */
    { "GET /abcdef HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 12345\r\n\r\n", false, &tight },
    { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd", false, &tight },
    { "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!", true, &roomy },
    { "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
      "HTTP/1.1 503 \r\nContent-Length: 2\r\nRetry-After: 1\r\n\r\nab",
      true, &roomy },
    { "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", true, &tight },
};

typedef struct trace {
    char s[TRACE_CAP];
    size_t len;
    bool plain_taken; /* the first head went through the plain path */
} trace;

static void add(trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(trace *t, const char *fmt, ...)
{
    if (t->len >= sizeof(t->s))
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->s + t->len, sizeof(t->s) - t->len, fmt, ap);
    va_end(ap);
    t->len += n > 0 ? (size_t)n : 0;
}

static void add_str(trace *t, const char *what, const char *s, uint32_t n)
{
    if (s)
        add(t, " %s=[%.*s]", what, (int)n, s);
    else
        add(t, " %s=NULL", what);
}

static void add_head(trace *t, const coil__http_head *h, size_t at)
{
    add(t, "HEAD@%zu", at);
    add_str(t, "method", h->method, h->method_len);
    add_str(t, "target", h->target, h->target_len);
    add_str(t, "path", h->path, h->path_len);
    add_str(t, "query", h->query, h->query_len);
    add_str(t, "host", h->host, h->host_len);
    add_str(t, "reason", h->reason, h->reason_len);
    add(t, " id=%d status=%d v=%d.%d cl=%lld ch=%d ka=%d ec=%d up=%d hb=%d n=%u",
        h->method_id, h->status, h->version_major, h->version_minor,
        (long long)h->content_length, h->chunked, h->keep_alive, h->expect_continue,
        h->upgrade, h->has_body, h->nfields);
    for (uint32_t i = 0; i < h->nfields; i++) {
        add_str(t, "name", h->fields[i].name, h->fields[i].name_len);
        add_str(t, "value", h->fields[i].value, h->fields[i].value_len);
    }
    add(t, ";");
}

/* Feeds in[0..len) whole, the way the server and the proxy drive the
 * parser, and writes down everything it reports. */
static void run(const base *b, const char *in, size_t len, bool plain_off, trace *t)
{
    static char arena[ARENA_SIZE] __attribute__((aligned(16)));
    coil__http_parser p;
    coil__http_parser_init(&p, !b->response, b->limits, arena, sizeof(arena));
    coil__http_parser_set_request_method(&p, HTTP_GET);
    p.plain_head_off = plain_off;
    t->len = 0;
    t->plain_taken = false;
    size_t off = 0, msg_start = 0;
    bool first = true;
    for (int guard = 0; guard < 64; guard++) {
        size_t used = 0;
        coil__http_event ev = coil__http_parser_feed(&p, in + off, len - off, &used);
        off += used;
        switch (ev) {
        case COIL__HTTP_HEAD:
            if (first)
                t->plain_taken = p.m.sized_body;
            first = false;
            add_head(t, &p.head, off);
            break;
        case COIL__HTTP_BODY:
            add(t, "BODY@%zu[%.*s];", off, (int)p.chunk_len, p.chunk);
            break;
        case COIL__HTTP_DONE:
            add(t, "DONE@%zu;", off);
            if (!p.head.keep_alive)
                return;
            coil__http_parser_reset(&p);
            msg_start = off;
            break;
        case COIL__HTTP_ERROR:
            add(t, "ERROR@%zu %d %s;", off, p.error_status, p.error_reason);
            return;
        case COIL__HTTP_NEED_MORE:
            if (off == msg_start) { /* the peer closed between messages */
                add(t, "CLOSED;");
                return;
            }
            ev = coil__http_parser_finish(&p);
            add(t, "END %d %d;", (int)ev, ev == COIL__HTTP_ERROR ? p.error_status : 0);
            return;
        }
    }
    add(t, "NO PROGRESS;");
}

typedef struct tally {
    unsigned inputs, plain; /* inputs tried, and taken by the plain path */
    unsigned mismatches;
} tally;

static void compare(const base *b, const char *in, size_t len, tally *y)
{
    static trace with, without;
    run(b, in, len, false, &with);
    run(b, in, len, true, &without);
    y->inputs++;
    y->plain += with.plain_taken;
    if (without.plain_taken)
        fail_msg("plain_head_off did not keep the plain path out");
    if (with.len != without.len || memcmp(with.s, without.s, with.len) != 0) {
        if (y->mismatches++ < 5)
            print_error("input \"%.*s\"\n  plain: %.*s\n  llhttp: %.*s\n", (int)len, in,
                        (int)with.len, with.s, (int)without.len, without.s);
    }
}

/* Where the base's first head ends: mutations stay inside it. */
static size_t head_len(const char *raw)
{
    const char *e = strstr(raw, "\r\n\r\n");
    return (size_t)(e - raw) + 4;
}

static void test_bases_take_the_plain_path(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        static trace t;
        run(&bases[i], bases[i].raw, strlen(bases[i].raw), false, &t);
        if (!t.plain_taken)
            fail_msg("base %zu was not taken by the plain path: %.*s", i, (int)t.len, t.s);
        if (strstr(t.s, "ERROR") || strstr(t.s, "END 4"))
            fail_msg("base %zu does not parse: %.*s", i, (int)t.len, t.s);
    }
}

static void test_mutations_agree(void **state)
{
    (void)state;
    tally y = { 0 };
    static char buf[512];
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        const base *b = &bases[i];
        size_t len = strlen(b->raw), head = head_len(b->raw);
        assert_true(len + 1 <= sizeof(buf));
        for (size_t at = 0; at < head; at++) {
            for (unsigned c = 0; c < 256; c++) {
                memcpy(buf, b->raw, len);
                buf[at] = (char)c;
                compare(b, buf, len, &y);
                memcpy(buf, b->raw, at);
                buf[at] = (char)c;
                memcpy(buf + at + 1, b->raw + at, len - at);
                compare(b, buf, len + 1, &y);
            }
            memcpy(buf, b->raw, at);
            memcpy(buf + at, b->raw + at + 1, len - at - 1);
            compare(b, buf, len - 1, &y);
        }
    }
    print_message("%u inputs, %u taken by the plain path\n", y.inputs, y.plain);
    if (y.mismatches)
        fail_msg("%u of %u inputs parsed differently", y.mismatches, y.inputs);
    /* A letter or digit for another keeps a head plain: tens of thousands
     * of the heads compared are ones both paths accept. */
    assert_true(y.plain > y.inputs / 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bases_take_the_plain_path),
        cmocka_unit_test(test_mutations_agree),
    };
    return HARNESS_RUN(tests);
}
