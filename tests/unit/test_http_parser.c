/*
 * The HTTP/1.x parser (llhttp strict + coil's checks): raw bytes in, events
 * and verdicts out. Every case runs twice: the whole input in one feed, and
 * one byte at a time (a byte arrives, the parser sees everything not yet
 * consumed), so no check may depend on how the bytes were split. Also the
 * sender's side of chunked framing, coil_http_chunk_line.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coil/http.h"
#include "harness.h"
#include "parser.h"

enum { ANY = 0, YES, NO };

typedef struct tcase {
    const char *name;
    const char *raw;
    size_t len;
    bool response;
    const char *req_method;   /* responses: the request's method (default GET) */
    const coil__http_limits *limits;
    bool finish;              /* the peer closes after the input */
    int status;               /* 0: no error; else the error_status expected */
    int messages;             /* DONE events expected */
    bool stop_after_done;     /* CONNECT / upgrade: bytes after DONE are not HTTP */
    const char *rest;         /* with stop_after_done: the bytes left unconsumed */
    /* first message */
    const char *method, *target, *host, *path, *query;
    const char *cl;           /* content_length as text, "-1" for none */
    int chunked, keep_alive, expect, upgrade, has_body;
    int resp_status;
    int version_minor;        /* 0: not checked; else minor + 1 */
    const char *field, *value; /* a field that must be present with this value */
    const char *absent;       /* a field that must not be present */
    /* all messages */
    const char *body;         /* all body bytes, concatenated */
    size_t body_len;          /* 0: strlen(body) */
    const char *targets;      /* targets (or statuses) of every message, space-separated */
} tcase;

#define RAW(s) .raw = (s), .len = sizeof(s) - 1

static const coil__http_limits default_limits = {
    .max_request_line = 8192,
    .max_header_bytes = 8192,
    .max_headers = 100,
    .max_chunk_ext = 64,
    .max_body = 1 << 20,
};

static const coil__http_limits small = {
    .max_request_line = 32,
    .max_header_bytes = 64,
    .max_headers = 3,
    .max_chunk_ext = 8,
    .max_body = 10,
};

#define H11 " HTTP/1.1\r\nHost: a\r\n"
#define POST_CHUNKED "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

static const tcase cases[] = {
    /* ---------------- valid requests ---------------- */
    { "get minimal", RAW("GET /" H11 "\r\n"), .messages = 1, .method = "GET", .target = "/",
      .host = "a", .path = "/", .cl = "-1", .chunked = NO, .keep_alive = YES, .has_body = NO,
      .expect = NO, .upgrade = NO, .version_minor = 2, .body = "" },
    { "get path and query", RAW("GET /p/q?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"),
      .messages = 1, .path = "/p/q", .query = "x=1&y", .host = "example.com:8080" },
    { "field values trimmed, empty value kept",
      RAW("GET / HTTP/1.1\r\nHost:  a \r\nX-A:\t v a l \t\r\nX-Empty:\r\n\r\n"), .messages = 1,
      .host = "a", .field = "X-A", .value = "v a l" },
    { "empty field value", RAW("GET /" H11 "X-Empty:   \r\n\r\n"), .messages = 1,
      .field = "x-empty", .value = "" },
    { "obs-text in a value", RAW("GET /" H11 "X-Name: caf\xc3\xa9\r\n\r\n"), .messages = 1,
      .field = "X-Name", .value = "caf\xc3\xa9" },
    { "HTAB inside a value", RAW("GET /" H11 "X-T: a\tb\r\n\r\n"), .messages = 1,
      .field = "X-T", .value = "a\tb" },
    { "empty Host on HTTP/1.1", RAW("GET / HTTP/1.1\r\nHost:\r\n\r\n"), .messages = 1,
      .host = "" },
    { "Host with IPv6 literal", RAW("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), .messages = 1,
      .host = "[::1]:8080" },
    { "Host with pct-encoding", RAW("GET / HTTP/1.1\r\nHost: ex%41mple\r\n\r\n"), .messages = 1,
      .host = "ex%41mple" },
    { "lowercase host field name", RAW("GET / HTTP/1.1\r\nhOsT: b\r\n\r\n"), .messages = 1,
      .host = "b" },
    { "empty lines before the request line", RAW("\r\n\r\nGET /" H11 "\r\n"), .messages = 1,
      .target = "/" },
    { "HEAD request", RAW("HEAD /x" H11 "\r\n"), .messages = 1, .method = "HEAD" },
    { "DELETE request", RAW("DELETE /x" H11 "\r\n"), .messages = 1, .method = "DELETE" },
    { "POST with Content-Length",
      RAW("POST /up" H11 "Content-Length: 5\r\n\r\nhello"), .messages = 1, .method = "POST",
      .cl = "5", .chunked = NO, .has_body = YES, .body = "hello" },
    { "POST with Content-Length 0", RAW("POST /" H11 "Content-Length: 0\r\n\r\n"), .messages = 1,
      .cl = "0", .has_body = NO, .body = "" },
    { "body bytes that look like a head are not scanned",
      RAW("POST /" H11 "Content-Length: 17\r\n\r\n\r\n Host: x\r\n\0\n\r\r\n"), .messages = 1,
      .body = "\r\n Host: x\r\n\0\n\r\r\n", .body_len = 17 },
    { "chunked body", RAW(POST_CHUNKED "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), .messages = 1,
      .chunked = YES, .cl = "-1", .has_body = YES, .body = "hello world" },
    { "chunked with extensions within limits",
      RAW(POST_CHUNKED "5;a=b\r\nhello\r\n3;x;y\r\nabc\r\n0;end=\"q s\"\r\n\r\n"),
      .messages = 1, .body = "helloabc" },
    { "chunked hex sizes", RAW(POST_CHUNKED "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n"),
      .messages = 1, .body = "0123456789abcdefghijk" },
    { "chunked size with 16 digits", RAW(POST_CHUNKED "0000000000000003\r\nabc\r\n0\r\n\r\n"),
      .messages = 1, .body = "abc" },
    { "chunk data holding CRLFs", RAW(POST_CHUNKED "4\r\n\r\n\r\n\r\n0\r\n\r\n"),
      .messages = 1, .body = "\r\n\r\n" },
    { "chunked with trailers that never become fields",
      RAW(POST_CHUNKED "3\r\nabc\r\n0\r\nX-Trailer: t\r\nContent-Type: u\r\n\r\n"),
      .messages = 1, .body = "abc", .absent = "X-Trailer" },
    { "trailers change neither framing nor the connection",
      RAW(POST_CHUNKED "1\r\nx\r\n0\r\nConnection: close\r\nContent-Length: 5\r\nHost: b\r\n\r\n"
          "GET /n" H11 "\r\n"), .messages = 2, .keep_alive = YES, .host = "a", .cl = "-1",
      .absent = "Connection", .targets = "/ /n", .body = "x" },
    { "Transfer-Encoding is case-insensitive",
      RAW("POST /" H11 "Transfer-Encoding: Chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"), .messages = 1,
      .chunked = YES, .body = "x" },
    { "Transfer-Encoding with empty list elements",
      RAW("POST /" H11 "Transfer-Encoding: , chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
      .messages = 1, .chunked = YES, .body = "x" },
    { "pipelined: three requests in one buffer, one at a time",
      RAW("GET /a" H11 "\r\nPOST /b" H11 "Content-Length: 3\r\n\r\nabcGET /c" H11 "\r\n"),
      .messages = 3, .targets = "/a /b /c", .body = "abc" },
    { "pipelined: chunked then GET",
      RAW(POST_CHUNKED "2\r\nhi\r\n0\r\n\r\nGET /n" H11 "\r\n"), .messages = 2,
      .targets = "/ /n", .body = "hi" },
    { "pipelined: Content-Length 0 then GET",
      RAW("POST /x" H11 "Content-Length: 0\r\n\r\nGET /admin" H11 "\r\n"), .messages = 2,
      .targets = "/x /admin" },
    { "HTTP/1.0 closes by default", RAW("GET / HTTP/1.0\r\n\r\n"), .messages = 1,
      .keep_alive = NO, .version_minor = 1 },
    { "HTTP/1.0 keep-alive", RAW("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
      .messages = 1, .keep_alive = YES },
    { "HTTP/1.0 keep-alive and close: close wins",
      RAW("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), .messages = 1,
      .keep_alive = NO },
    { "HTTP/1.1 Connection: close", RAW("GET /" H11 "Connection: close\r\n\r\n"), .messages = 1,
      .keep_alive = NO },
    { "Connection list, any case", RAW("GET /" H11 "Connection: foo\r\nConnection: x, CLOSE\r\n\r\n"),
      .messages = 1, .keep_alive = NO },
    { "absolute-form: the target's authority wins over Host",
      RAW("GET http://example.com:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n"), .messages = 1,
      .host = "example.com:81", .path = "/p", .query = "q=1",
      .target = "http://example.com:81/p?q=1" },
    { "absolute-form without a path", RAW("GET HTTP://Example.com HTTP/1.1\r\nHost: x\r\n\r\n"),
      .messages = 1, .host = "Example.com", .path = "/" },
    { "absolute-form https with a query only", RAW("GET https://h?x HTTP/1.1\r\nHost: h\r\n\r\n"),
      .messages = 1, .host = "h", .path = "/", .query = "x" },
    { "OPTIONS *", RAW("OPTIONS *" H11 "\r\n"), .messages = 1, .method = "OPTIONS",
      .target = "*", .path = "*" },
    { "CONNECT authority-form; tunnel bytes left alone",
      RAW("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"),
      .messages = 1, .stop_after_done = true, .rest = "\x16\x03\x01", .method = "CONNECT",
      .path = "example.com:443", .has_body = NO },
    { "CONNECT to an IPv6 literal", RAW("CONNECT [::1]:8443" H11 "\r\n"), .messages = 1,
      .stop_after_done = true, .rest = "", .path = "[::1]:8443" },
    { "Expect: 100-continue", RAW("POST /" H11 "Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi"),
      .messages = 1, .expect = YES, .body = "hi" },
    { "other expectations are not 100-continue", RAW("GET /" H11 "Expect: 100-continue-x\r\n\r\n"),
      .messages = 1, .expect = NO },
    { "Expect ignored on HTTP/1.0",
      RAW("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"),
      .messages = 1, .expect = NO, .body = "x" },
    { "upgrade: Connection token and Upgrade field",
      RAW("GET /ws" H11 "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05"),
      .messages = 1, .stop_after_done = true, .rest = "\x81\x05", .upgrade = YES },
    { "Upgrade field without the Connection token", RAW("GET /" H11 "Upgrade: websocket\r\n\r\n"),
      .messages = 1, .upgrade = NO },
    { "Connection upgrade without an Upgrade field", RAW("GET /" H11 "Connection: upgrade\r\n\r\n"),
      .messages = 1, .upgrade = NO },
    { "limits: fields exactly at the limits",
      RAW("GET /" H11 "B: 1\r\nC: 2\r\n\r\n"), .limits = &small, .messages = 1 },
    { "limits: body exactly at the limit", RAW("POST /" H11 "Content-Length: 10\r\n\r\n0123456789"),
      .limits = &small, .messages = 1, .body = "0123456789" },
    { "limits: chunked body exactly at the limit",
      RAW(POST_CHUNKED "5\r\n01234\r\n5;a=bcde\r\n56789\r\n0\r\n\r\n"), .limits = &small,
      .messages = 1, .body = "0123456789" },
    { "request cut short: finish is an error", RAW("POST /" H11 "Content-Length: 5\r\n\r\nab"),
      .finish = true, .status = 400, .messages = 0, .body = "ab" },

    /* ---------------- field syntax ---------------- */
    { "obs-fold", RAW("GET /" H11 "X: b\r\n c\r\n\r\n"), .status = 400 },
    { "obs-fold with HTAB", RAW("GET /" H11 "X: b\r\n\tc\r\n\r\n"), .status = 400 },
    { "obs-fold of an empty line", RAW("GET /" H11 "X:\r\n \r\n\r\n"), .status = 400 },
    { "CVE-2024-27982: a folded Content-Length",
      RAW("POST /hello HTTP/1.1\r\nHost: localhost\r\nFoo: bar\r\n Content-Length: 38\r\n\r\n"
          "GET /bye HTTP/1.1\r\nHost: localhost\r\n\r\n"), .status = 400, .messages = 0 },
    { "obs-fold continuing Content-Length",
      RAW("POST /" H11 "Content-Length: 5\r\n 0\r\n\r\nhello"), .status = 400 },
    { "whitespace before the first field line", RAW("GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
      .status = 400 },
    { "space between field name and colon", RAW("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
      .status = 400 },
    { "HTAB between field name and colon", RAW("GET /" H11 "X\t: a\r\n\r\n"), .status = 400 },
    { "empty field name", RAW("GET /" H11 ": a\r\n\r\n"), .status = 400 },
    { "field line without a colon", RAW("GET /" H11 "Xfoo\r\n\r\n"), .status = 400 },
    { "NUL in a field value", RAW("GET /" H11 "X: a\0b\r\n\r\n"), .status = 400 },
    { "CR in a field value", RAW("GET /" H11 "X: a\rb\r\n\r\n"), .status = 400 },
    { "CR hiding a Transfer-Encoding",
      RAW("POST /" H11 "X-Abc: \rxTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n"),
      .status = 400 },
    { "bare LF ending a field line", RAW("GET /" H11 "X: a\nY: b\r\n\r\n"), .status = 400 },
    { "bare LF hiding a Transfer-Encoding",
      RAW("POST /" H11 "X: X\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), .status = 400 },
    { "DEL in a field value", RAW("GET /" H11 "X: a\x7f" "b\r\n\r\n"), .status = 400 },
    { "non-token field name", RAW("GET /" H11 "X@Y: 1\r\n\r\n"), .status = 400 },
    { "head cut short by CR without LF", RAW("GET /" H11 "\rX"), .status = 400 },

    /* ---------------- request line and version ---------------- */
    { "HTTP/0.9 request", RAW("GET /\r\n\r\n"), .status = 505 },
    { "HTTP/0.9 request with fields", RAW("GET /a\r\nHost: a\r\n\r\n"), .status = 505 },
    { "HTTP/0.9 by number", RAW("GET / HTTP/0.9\r\n\r\n"), .status = 505 },
    { "HTTP/2.0 in an HTTP/1 request line", RAW("GET / HTTP/2.0" "\r\nHost: a\r\n\r\n"),
      .status = 505 },
    { "HTTP/1.2", RAW("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), .status = 505 },
    { "HTTP/1.10 is malformed", RAW("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), .status = 400 },
    { "HTTP/1 is malformed", RAW("GET / HTTP/1\r\nHost: a\r\n\r\n"), .status = 400 },
    { "lowercase http is malformed", RAW("GET / http/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
    { "HTTX is malformed", RAW("GET / HTTX/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
    { "trailing space after the version", RAW("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
      .status = 400 },
    { "two spaces after the target", RAW("GET /a  HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
    { "two spaces after the method", RAW("GET  /a HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
    { "two spaces after an asterisk", RAW("OPTIONS *  HTTP/1.1\r\nHost: a\r\n\r\n"),
      .status = 400 },
    { "space before the method", RAW(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
    { "HTAB in the request line", RAW("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
    { "lowercase method", RAW("get /" H11 "\r\n"), .status = 400 },
    { "invalid method", RAW("G@T /" H11 "\r\n"), .status = 400 },
    { "DEL in the target", RAW("GET /a\x7f" H11 "\r\n"), .status = 400 },
    { "NUL in the target", RAW("GET /a\0b" H11 "\r\n"), .status = 400 },
    { "fragment in the target", RAW("GET /a#b" H11 "\r\n"), .status = 400 },
    { "fragment in an absolute-form target", RAW("GET http://a/b#f" H11 "\r\n"), .status = 400 },
    { "asterisk-form with GET", RAW("GET *" H11 "\r\n"), .status = 400 },
    { "authority-form with GET", RAW("GET a:80" H11 "\r\n"), .status = 400 },
    { "CONNECT with an origin-form target", RAW("CONNECT /x" H11 "\r\n"), .status = 400 },
    { "CONNECT without a port", RAW("CONNECT example.com" H11 "\r\n"), .status = 400 },
    { "CONNECT with an absolute-form target", RAW("CONNECT http://a/" H11 "\r\n"), .status = 400 },
    { "CONNECT with content", RAW("CONNECT a:443" H11 "Content-Length: 3\r\n\r\nabc"),
      .status = 400 },
    { "absolute-form with userinfo", RAW("GET http://u@a/" H11 "\r\n"), .status = 400 },
    { "absolute-form with another scheme", RAW("GET ftp://a/b" H11 "\r\n"), .status = 400 },
    { "absolute-form with an empty host", RAW("GET http:///p" H11 "\r\n"), .status = 400 },
    { "request line over the limit: 414",
      RAW("GET /0123456789012345678901234567 HTTP/1.1\r\nHost: a\r\n\r\n"), .limits = &small,
      .status = 414 },

    /* ---------------- Host ---------------- */
    { "missing Host on HTTP/1.1", RAW("GET / HTTP/1.1\r\n\r\n"), .status = 400 },
    { "missing Host with absolute-form", RAW("GET http://a/ HTTP/1.1\r\n\r\n"), .status = 400 },
    { "two Host fields", RAW("GET /" H11 "Host: a\r\n\r\n"), .status = 400 },
    { "two Host fields on HTTP/1.0", RAW("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
      .status = 400 },
    { "Host with a space", RAW("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), .status = 400 },
    { "Host with a path", RAW("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), .status = 400 },
    { "Host with userinfo", RAW("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), .status = 400 },
    { "Host with a bad port", RAW("GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n"), .status = 400 },
    { "Host with a port past 65535", RAW("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"), .status = 400 },
    { "Host with an open bracket", RAW("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), .status = 400 },
    { "Host with a bad pct-encoding", RAW("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"), .status = 400 },

    /* ---------------- framing and smuggling ---------------- */
    { "CL.TE: Content-Length then Transfer-Encoding",
      RAW("POST /" H11 "Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED"),
      .status = 400, .messages = 0 },
    { "TE.CL: Transfer-Encoding then Content-Length",
      RAW("POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
          "8\r\nSMUGGLED\r\n0\r\n\r\n"), .status = 400, .messages = 0 },
    { "TE.TE: xchunked", RAW("POST /" H11 "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
      .status = 400 },
    { "TE.TE: space before the colon",
      RAW("POST /" H11 "Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
      .status = 400 },
    { "TE.TE: chunked, identity", RAW("POST /" H11 "Transfer-Encoding: chunked, identity\r\n\r\n"),
      .status = 400 },
    { "TE.TE: chunked then a second TE field",
      RAW("POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n0\r\n\r\n"),
      .status = 400 },
    { "TE.TE: folded Transfer-Encoding",
      RAW("POST /" H11 "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"), .status = 400 },
    { "TE.TE: HTAB OWS is fine", RAW("POST /" H11 "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n"),
      .messages = 1, .chunked = YES },
    { "Transfer-Encoding: identity", RAW("POST /" H11 "Transfer-Encoding: identity\r\n\r\n"),
      .status = 400 },
    { "final coding gzip", RAW("POST /" H11 "Transfer-Encoding: gzip\r\n\r\n"), .status = 400 },
    { "unknown coding before chunked: 501",
      RAW("POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), .status = 501 },
    { "unknown coding in a second field: 501",
      RAW("POST /" H11 "Transfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
      .status = 501 },
    { "chunked twice in one field", RAW("POST /" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n"),
      .status = 400 },
    /* Found by fuzzing: coil trimmed the tab (or skipped the empty list
     * element) and took the body as chunked, llhttp did not. */
    { "chunked followed by a tab", RAW("POST /" H11 "Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n"),
      .status = 400 },
    { "chunked with a trailing comma", RAW("POST /" H11 "Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n"),
      .status = 400 },
    { "response: chunked followed by a tab",
      RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
      .response = true, .status = 502 },
    { "response: chunked with a trailing comma",
      RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
      .response = true, .status = 502 },
    { "chunked twice in two fields",
      RAW("POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .status = 400 },
    { "chunked with a parameter", RAW("POST /" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n"),
      .status = 400 },
    { "empty Transfer-Encoding", RAW("POST /" H11 "Transfer-Encoding:\r\n\r\n0\r\n\r\n"),
      .status = 400 },
    { "Transfer-Encoding on HTTP/1.0",
      RAW("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), .status = 400 },
    { "identical duplicate Content-Length",
      RAW("POST /" H11 "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"), .status = 400 },
    { "differing duplicate Content-Length",
      RAW("POST /" H11 "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxy"), .status = 400 },
    { "Content-Length list with identical values", RAW("POST /" H11 "Content-Length: 1, 1\r\n\r\nx"),
      .status = 400 },
    { "Content-Length list with differing values", RAW("POST /" H11 "Content-Length: 1, 2\r\n\r\nx"),
      .status = 400 },
    { "Content-Length with a sign", RAW("POST /" H11 "Content-Length: +1\r\n\r\nx"), .status = 400 },
    { "negative Content-Length", RAW("POST /" H11 "Content-Length: -1\r\n\r\n"), .status = 400 },
    { "hex Content-Length", RAW("POST /" H11 "Content-Length: 0x5\r\n\r\n"), .status = 400 },
    { "Content-Length with a space inside", RAW("POST /" H11 "Content-Length: 1 1\r\n\r\n"),
      .status = 400 },
    { "empty Content-Length", RAW("POST /" H11 "Content-Length:\r\n\r\n"), .status = 400 },
    { "Content-Length past 64 bits", RAW("POST /" H11 "Content-Length: 99999999999999999999\r\n\r\n"),
      .status = 400 },
    { "Content-Length past int64",
      RAW("POST /" H11 "Content-Length: 9223372036854775808\r\n\r\n"), .status = 400 },
    { "declared body over the limit: 413 at the head",
      RAW("POST /" H11 "Content-Length: 11\r\n\r\n0123456789a"), .limits = &small, .status = 413,
      .body = "" },

    /* ---------------- chunked bodies ---------------- */
    { "chunk size past 64 bits", RAW(POST_CHUNKED "10000000000000000\r\n"), .status = 400 },
    { "chunk size of 17 digits with leading zeros",
      RAW(POST_CHUNKED "00000000000000001\r\nx\r\n0\r\n\r\n"), .status = 400 },
    { "chunk size with a non-hex digit", RAW(POST_CHUNKED "g\r\n"), .status = 400 },
    { "negative chunk size", RAW(POST_CHUNKED "-1\r\n"), .status = 400 },
    { "empty chunk size", RAW(POST_CHUNKED "\r\nx\r\n"), .status = 400 },
    { "chunk data without CRLF", RAW(POST_CHUNKED "1\r\naXX0\r\n\r\n"), .status = 400 },
    { "chunk line ending in a bare LF (node's smuggling test)",
      RAW(POST_CHUNKED "2;\nxx\r\n4c\r\n0\r\n\r\nGET /admin" H11 "\r\n0\r\n\r\n"),
      .status = 400, .messages = 0 },
    { "whitespace before a chunk extension", RAW(POST_CHUNKED "1 ;a=b\r\nx\r\n0\r\n\r\n"),
      .status = 400 },
    { "one chunk extension over the limit",
      RAW(POST_CHUNKED "1;abcdefgh\r\nx\r\n0\r\n\r\n"), .limits = &small, .status = 400 },
    { "chunk extensions over the limit together",
      RAW(POST_CHUNKED "1;ab;cd;ef\r\nx\r\n0\r\n\r\n"), .limits = &small, .status = 400 },
    { "chunk extensions within the limit",
      RAW(POST_CHUNKED "1;a;b;cd\r\nx\r\n0;abcdef\r\n\r\n"), .limits = &small, .messages = 1,
      .body = "x" },
    { "chunked body passing the limit: 413 after what fit",
      RAW(POST_CHUNKED "6\r\n012345\r\n6\r\n6789ab\r\n0\r\n\r\n"), .limits = &small,
      .status = 413, .body = "012345" },
    { "one chunk declared over the limit: 413 before its bytes",
      RAW(POST_CHUNKED "b\r\n0123456789a\r\n0\r\n\r\n"), .limits = &small, .status = 413,
      .body = "" },
    { "obs-fold in the trailers", RAW(POST_CHUNKED "1\r\nx\r\n0\r\nX: a\r\n b\r\n\r\n"),
      .status = 400, .body = "x" },
    { "NUL in a trailer", RAW(POST_CHUNKED "1\r\nx\r\n0\r\nX: a\0\r\n\r\n"), .status = 400,
      .body = "x" },
    { "empty trailer name", RAW(POST_CHUNKED "1\r\nx\r\n0\r\n: a\r\n\r\n"), .status = 400,
      .body = "x" },
    { "trailers over max_header_bytes: 431",
      RAW(POST_CHUNKED "1\r\nx\r\n0\r\nX: 0123456789012345678901234567890123456789012345678901234567890"
          "\r\n\r\n"), .limits = &small, .status = 431, .body = "x" },
    { "trailers over max_headers: 431",
      RAW(POST_CHUNKED "1\r\nx\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), .limits = &small,
      .status = 431, .body = "x" },
    { "chunked body cut short: finish is an error", RAW(POST_CHUNKED "5\r\nab"), .finish = true,
      .status = 400, .body = "ab" },

    /* ---------------- limits on the head ---------------- */
    { "header section over max_header_bytes: 431",
      RAW("GET / HTTP/1.1\r\nHost: a\r\nX: 012345678901234567890123456789012345678901234567890123"
          "\r\n\r\n"), .limits = &small, .status = 431 },
    { "more fields than max_headers: 431", RAW("GET /" H11 "B: 1\r\nC: 2\r\nD: 3\r\n\r\n"),
      .limits = &small, .status = 431 },
    { "OWS after the colon is trimmed",
      RAW("GET /" H11 "B:      1\r\n\r\n"), .limits = &small, .messages = 1, .field = "B",
      .value = "1" },

    /* ---------------- responses ---------------- */
    { "response with Content-Length", RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
      .response = true, .messages = 1, .resp_status = 200, .cl = "5", .keep_alive = YES,
      .has_body = YES, .body = "hello" },
    { "response chunked with trailers",
      RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
      .response = true, .messages = 1, .chunked = YES, .body = "abc", .absent = "X-T" },
    { "response until close, finished by finish()", RAW("HTTP/1.1 200 OK\r\n\r\nabc\r\n\r\ndef"),
      .response = true, .finish = true, .messages = 1, .keep_alive = NO, .has_body = YES,
      .body = "abc\r\n\r\ndef" },
    { "HTTP/1.0 response until close", RAW("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nab"),
      .response = true, .finish = true, .messages = 1, .keep_alive = NO, .body = "ab" },
    { "HTTP/1.0 response with keep-alive and a length",
      RAW("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab"),
      .response = true, .messages = 1, .keep_alive = YES, .body = "ab" },
    { "response to HEAD: Content-Length but no body",
      RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 404 X\r\nContent-Length: 0\r\n\r\n"),
      .response = true, .req_method = "HEAD", .messages = 2, .cl = "5", .has_body = NO,
      .body = "", .targets = "200 404" },
    { "response to HEAD: chunked but no body",
      RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .response = true,
      .req_method = "HEAD", .messages = 1, .has_body = NO, .chunked = YES, .body = "" },
    { "204 with Content-Length has no body",
      RAW("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
      .response = true, .messages = 2, .has_body = NO, .targets = "204 200", .body = "" },
    { "304 has no body", RAW("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
      .response = true, .messages = 1, .has_body = NO, .body = "" },
    { "100 Continue then the final response",
      RAW("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
      .response = true, .messages = 2, .targets = "100 201", .body = "ok" },
    { "101 Switching Protocols: upgrade",
      RAW("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81"),
      .response = true, .messages = 1, .stop_after_done = true, .rest = "\x81", .upgrade = YES,
      .has_body = NO },
    { "200 to CONNECT: the tunnel follows", RAW("HTTP/1.1 200 OK\r\n\r\n\x16\x03"),
      .response = true, .req_method = "CONNECT", .messages = 1, .stop_after_done = true,
      .rest = "\x16\x03", .has_body = NO },
    { "status line without a reason", RAW("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
      .response = true, .messages = 1, .resp_status = 200 },
    { "status line with an empty reason", RAW("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
      .response = true, .messages = 1, .resp_status = 200 },
    { "reason with spaces and HTAB", RAW("HTTP/1.1 404 Not\tFound Here\r\nContent-Length: 0\r\n\r\n"),
      .response = true, .messages = 1, .resp_status = 404 },
    { "pipelined responses", RAW("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"),
      .response = true, .messages = 2, .body = "ab" },
    { "response: Content-Length with Transfer-Encoding",
      RAW("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .response = true, .status = 502 },
    { "response: differing duplicate Content-Length",
      RAW("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"), .response = true,
      .status = 502 },
    { "response: obs-fold", RAW("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
      .response = true, .status = 502 },
    { "response: empty field name", RAW("HTTP/1.1 200 OK\r\n: a\r\n\r\n"), .response = true,
      .status = 502 },
    { "response: NUL in a value", RAW("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"), .response = true,
      .status = 502 },
    { "response: final coding gzip", RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
      .response = true, .finish = true, .status = 502 },
    { "response: gzip, chunked", RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
      .response = true, .status = 502 },
    { "response: Transfer-Encoding on HTTP/1.0",
      RAW("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), .response = true,
      .status = 502 },
    { "response: two-digit status", RAW("HTTP/1.1 20 OK\r\n\r\n"), .response = true, .status = 502 },
    { "response: status digits split by a space", RAW("HTTP/1.1 2 00 OK\r\n\r\n"),
      .response = true, .status = 502 },
    { "response: four-digit status", RAW("HTTP/1.1 2000 OK\r\n\r\n"), .response = true,
      .status = 502 },
    { "response: status below 100", RAW("HTTP/1.1 099 X\r\n\r\n"), .response = true, .status = 502 },
    { "response: status above 599", RAW("HTTP/1.1 600 X\r\n\r\n"), .response = true, .status = 502 },
    { "response: two spaces before the status", RAW("HTTP/1.1  200 OK\r\n\r\n"), .response = true,
      .status = 502 },
    { "response: bad protocol name", RAW("HTTX/1.1 200 OK\r\n\r\n"), .response = true,
      .status = 502 },
    { "response: HTTP/2.0", RAW("HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), .response = true,
      .status = 502 },
    { "response: control character in the reason", RAW("HTTP/1.1 200 O\x01K\r\n\r\n"),
      .response = true, .status = 502 },
    { "response cut short: finish is an error",
      RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"), .response = true, .finish = true,
      .status = 502, .body = "ab" },
    { "response: body over max_body", RAW("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"),
      .response = true, .limits = &small, .status = 502 },
};

/* ---- the runner ---- */

#define ARENA_SIZE (8192 + 8192 + 100 * sizeof(coil__http_field))

struct run {
    const tcase *tc;
    const char *mode;
    char body[512];
    size_t body_len;
    char targets[256];
    int messages;
    int status;
    int failures;
};

static void failf(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(struct run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    print_error("[%s] %s: %s\n", r->mode, r->tc->name, msg);
    r->failures++;
}

static void expect_str(struct run *r, const char *what, const char *want, const char *got,
                       uint32_t got_len)
{
    if (!want)
        return;
    if (!got || strlen(want) != got_len || memcmp(want, got, got_len) != 0)
        failf(r, "%s: want \"%s\", got \"%.*s\"%s", what, want, got ? (int)got_len : 0,
              got ? got : "", got ? "" : " (NULL)");
}

static void expect_flag(struct run *r, const char *what, int want, bool got)
{
    if (want != ANY && (want == YES) != got)
        failf(r, "%s: want %s", what, want == YES ? "true" : "false");
}

static void check_head(struct run *r, const coil__http_parser *p)
{
    const tcase *tc = r->tc;
    const coil__http_head *h = &p->head;
    expect_str(r, "method", tc->method, h->method, h->method_len);
    expect_str(r, "target", tc->target, h->target, h->target_len);
    expect_str(r, "host", tc->host, h->host, h->host_len);
    expect_str(r, "path", tc->path, h->path, h->path_len);
    expect_str(r, "query", tc->query, h->query, h->query_len);
    if (tc->cl) {
        char got[32];
        snprintf(got, sizeof(got), "%" PRId64, h->content_length);
        expect_str(r, "content_length", tc->cl, got, (uint32_t)strlen(got));
    }
    expect_flag(r, "chunked", tc->chunked, h->chunked);
    expect_flag(r, "keep_alive", tc->keep_alive, h->keep_alive);
    expect_flag(r, "expect_continue", tc->expect, h->expect_continue);
    expect_flag(r, "upgrade", tc->upgrade, h->upgrade);
    expect_flag(r, "has_body", tc->has_body, h->has_body);
    if (tc->resp_status && h->status != tc->resp_status)
        failf(r, "status: want %d, got %d", tc->resp_status, h->status);
    if (tc->version_minor && h->version_minor != tc->version_minor - 1)
        failf(r, "version_minor: want %d, got %d", tc->version_minor - 1, h->version_minor);
    if (tc->field) {
        const coil__http_field *f = coil__http_field_get(h, tc->field);
        if (!f)
            failf(r, "field %s missing", tc->field);
        else
            expect_str(r, tc->field, tc->value, f->value, f->value_len);
    }
    if (tc->absent && coil__http_field_get(h, tc->absent))
        failf(r, "field %s present", tc->absent);
    for (uint32_t i = 0; i < h->nfields; i++)
        if (!h->fields[i].name_len)
            failf(r, "field %u has an empty name", i);
}

static void note_target(struct run *r, const coil__http_parser *p)
{
    char one[64];
    if (r->tc->response)
        snprintf(one, sizeof(one), "%d", p->head.status);
    else
        snprintf(one, sizeof(one), "%.*s", (int)p->head.target_len, p->head.target);
    size_t have = strlen(r->targets);
    snprintf(r->targets + have, sizeof(r->targets) - have, "%s%s", have ? " " : "", one);
}

static int method_id(const char *m)
{
    if (!m || !strcmp(m, "GET"))
        return HTTP_GET;
    if (!strcmp(m, "HEAD"))
        return HTTP_HEAD;
    if (!strcmp(m, "CONNECT"))
        return HTTP_CONNECT;
    return HTTP_POST;
}

static int run_case(const tcase *tc, bool bytewise)
{
    static char arena[ARENA_SIZE] __attribute__((aligned(16)));
    struct run r = { .tc = tc, .mode = bytewise ? "bytewise" : "whole" };
    coil__http_parser p;
    coil__http_parser_init(&p, !tc->response, tc->limits ? tc->limits : &default_limits, arena,
                           sizeof(arena));
    if (tc->response)
        coil__http_parser_set_request_method(&p, method_id(tc->req_method));

    const char *raw = tc->raw;
    size_t total = tc->len, off = 0, avail = bytewise ? 0 : total;
    bool errored = false, stopped = false;
    for (size_t guard = 0;; guard++) {
        if (guard > 4 * total + 64) {
            failf(&r, "no progress at byte %zu", off);
            break;
        }
        /* Each feed gets its own heap copy of exactly the bytes available,
         * scribbled over and freed afterwards: reading past them, or keeping
         * a pointer into them (other than the BODY chunk being handled),
         * shows up under ASan or as corrupted results. */
        size_t n = avail - off;
        char *fed = malloc(n ? n : 1);
        assert_non_null(fed);
        memcpy(fed, raw + off, n);
        size_t used = (size_t)-1;
        coil__http_event ev = coil__http_parser_feed(&p, fed, n, &used);
        bool stop = false;
        if (used > n) {
            failf(&r, "used %zu of %zu", used, n);
            stop = true;
        } else {
            off += used;
        }
        if (stop) {
        } else if (ev == COIL__HTTP_NEED_MORE) {
            if (off != avail)
                failf(&r, "NEED_MORE left %zu bytes unconsumed", avail - off);
            if (avail == total)
                stop = true;
            avail = bytewise ? avail + 1 : total;
        } else if (ev == COIL__HTTP_HEAD) {
            memset(fed, 'Z', n);
            if (r.messages == 0)
                check_head(&r, &p);
            note_target(&r, &p);
        } else if (ev == COIL__HTTP_BODY) {
            if (p.chunk < fed || p.chunk + p.chunk_len > fed + used || !p.chunk_len)
                failf(&r, "BODY chunk outside the consumed bytes");
            else if (r.body_len + p.chunk_len <= sizeof(r.body)) {
                memcpy(r.body + r.body_len, p.chunk, p.chunk_len);
                r.body_len += p.chunk_len;
            }
        } else if (ev == COIL__HTTP_DONE) {
            r.messages++;
            if (tc->stop_after_done)
                stopped = stop = true;
            else
                coil__http_parser_reset(&p);
        } else {
            errored = stop = true;
            r.status = p.error_status;
            if (!p.error_reason)
                failf(&r, "ERROR without a reason");
            size_t again = 1;
            if (coil__http_parser_feed(&p, fed + used, n - used, &again) != COIL__HTTP_ERROR ||
                again)
                failf(&r, "feeding after ERROR did not stay an ERROR");
        }
        memset(fed, 'Z', n);
        free(fed);
        if (stop)
            break;
    }
    if (!errored && !stopped && tc->finish) {
        coil__http_event ev = coil__http_parser_finish(&p);
        if (ev == COIL__HTTP_DONE) {
            r.messages++;
        } else if (ev == COIL__HTTP_ERROR) {
            errored = true;
            r.status = p.error_status;
        } else {
            failf(&r, "finish returned %d", (int)ev);
        }
    }

    if (getenv("COIL_TEST_VERBOSE") && !bytewise)
        print_message("%-60s %d %s\n", tc->name, errored ? r.status : 0,
                      errored && p.error_reason ? p.error_reason : "");
    if (tc->status && !errored)
        failf(&r, "want error %d, parsed %d message(s)", tc->status, r.messages);
    if (!tc->status && errored)
        failf(&r, "unexpected error %d (%s)", r.status, p.error_reason ? p.error_reason : "");
    if (tc->status && errored && r.status != tc->status)
        failf(&r, "want error %d, got %d (%s)", tc->status, r.status,
              p.error_reason ? p.error_reason : "");
    if (r.messages != tc->messages)
        failf(&r, "want %d message(s), got %d", tc->messages, r.messages);
    size_t body_len = tc->body ? (tc->body_len ? tc->body_len : strlen(tc->body)) : 0;
    if (tc->body && (body_len != r.body_len || memcmp(tc->body, r.body, r.body_len) != 0))
        failf(&r, "body: want %zu bytes \"%s\", got %zu bytes \"%.*s\"", body_len, tc->body,
              r.body_len, (int)r.body_len, r.body);
    if (tc->targets && strcmp(tc->targets, r.targets) != 0)
        failf(&r, "targets: want \"%s\", got \"%s\"", tc->targets, r.targets);
    if (tc->stop_after_done) {
        size_t want = strlen(tc->rest);
        if (total - off != want || memcmp(raw + off, tc->rest, want) != 0)
            failf(&r, "after DONE: want %zu bytes left, got %zu", want, total - off);
    }
    return r.failures;
}

static void run_all(bool bytewise)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        failed += run_case(&cases[i], bytewise) ? 1 : 0;
    if (failed)
        fail_msg("%d of %zu cases failed (%s)", failed, sizeof(cases) / sizeof(cases[0]),
                 bytewise ? "byte by byte" : "whole input");
}

static void test_cases_whole(void **state)
{
    (void)state;
    run_all(false);
}

static void test_cases_bytewise(void **state)
{
    (void)state;
    run_all(true);
}

/* coil__http_parser_body_ahead: more body without waiting, framing alone
 * never counts. Each case feeds the head and a first BODY event, then asks
 * about the bytes left after it. */
static void feed_to_first_body(coil__http_parser *p, const char *in, size_t len, size_t *off)
{
    size_t used;
    *off = 0;
    assert_int_equal(coil__http_parser_feed(p, in, len, &used), COIL__HTTP_HEAD);
    *off += used;
    assert_int_equal(coil__http_parser_feed(p, in + *off, len - *off, &used), COIL__HTTP_BODY);
    *off += used;
}

static void test_body_ahead(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool sock_more;
        bool ahead;
    } cases[] = {
        /* Content-Length: bytes of the body left, or owed with the socket non-empty */
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc", false, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc", true, true },
        /* the body is complete: what follows is the next request */
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n", true, false },
        /* chunked, inside a chunk: the socket decides */
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabc", true, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabc", false, false },
        /* at a chunk's end: only a next size line with data after it counts */
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\nd", false, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3;x=y\r\nd", false, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\nd", false, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\n", true, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3", true, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", true, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc", true, false },
        /* the last chunk is no data */
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", true, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n00\r\n\r\n", true, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char arena[4096];
        coil__http_parser p;
        size_t off, len = strlen(cases[i].in);
        coil__http_parser_init(&p, true, &default_limits, arena, sizeof(arena));
        feed_to_first_body(&p, cases[i].in, len, &off);
        bool ahead = coil__http_parser_body_ahead(&p, cases[i].in + off, len - off, cases[i].sock_more);
        if (ahead != cases[i].ahead)
            fail_msg("case %zu: body_ahead %d, expected %d", i, ahead, cases[i].ahead);
    }
    /* A response delimited by the close: any byte is body. */
    static const char resp[] = "HTTP/1.1 200 OK\r\n\r\nabcdef";
    char arena[4096];
    coil__http_parser p;
    size_t used;
    coil__http_parser_init(&p, false, &default_limits, arena, sizeof(arena));
    assert_int_equal(coil__http_parser_feed(&p, resp, 19, &used), COIL__HTTP_HEAD);
    assert_int_equal(coil__http_parser_feed(&p, resp + 19, 3, &used), COIL__HTTP_BODY);
    assert_true(coil__http_parser_body_ahead(&p, resp + 22, 3, false));
    assert_false(coil__http_parser_body_ahead(&p, resp + 25, 0, false));
    assert_true(coil__http_parser_body_ahead(&p, resp + 25, 0, true));
}

/* ---- the writer's side of the chunk-size line ---- */

static void test_chunk_line(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        const char *line;
    } cases[] = {
        { 0, "0\r\n" },
        { 1, "1\r\n" },
        { 0xf, "f\r\n" },
        { 0x10, "10\r\n" },
        { 0xabc, "abc\r\n" },
        /* every digit of the widest size, and no more room than the macro's */
        { SIZE_MAX, SIZE_MAX == UINT64_MAX ? "ffffffffffffffff\r\n" : "ffffffff\r\n" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[COIL_HTTP_CHUNK_LINE_MAX + 1];
        memset(out, '#', sizeof(out));
        size_t n = coil_http_chunk_line(out, cases[i].len);
        size_t want = strlen(cases[i].line);
        if (n != want || memcmp(out, cases[i].line, want) != 0)
            fail_msg("case %zu: \"%.*s\" (%zu bytes), expected \"%s\"", i, (int)n, out, n,
                     cases[i].line);
        for (size_t j = n; j < sizeof(out); j++)
            if (out[j] != '#')
                fail_msg("case %zu: byte %zu written past the line", i, j);
    }
    char out[COIL_HTTP_CHUNK_LINE_MAX];
    assert_int_equal(coil_http_chunk_line(out, SIZE_MAX), COIL_HTTP_CHUNK_LINE_MAX);
}

/* ---- event sequences the table does not show ---- */

/* A request without a body: HEAD consumes exactly the head, DONE consumes
 * nothing, and the next request's bytes stay for the next message. */
static void test_pipelined_offsets(void **state)
{
    (void)state;
    static const char in[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    const size_t first = sizeof("GET /a HTTP/1.1\r\nHost: a\r\n\r\n") - 1;
    char arena[4096];
    coil__http_parser p;
    size_t used;
    coil__http_parser_init(&p, true, &default_limits, arena, sizeof(arena));
    assert_int_equal(coil__http_parser_feed(&p, in, sizeof(in) - 1, &used), COIL__HTTP_HEAD);
    assert_int_equal(used, first);
    assert_false(p.head.has_body);
    assert_int_equal(coil__http_parser_feed(&p, in + first, sizeof(in) - 1 - first, &used),
                     COIL__HTTP_DONE);
    assert_int_equal(used, 0);
    /* DONE is sticky until reset. */
    assert_int_equal(coil__http_parser_feed(&p, in + first, sizeof(in) - 1 - first, &used),
                     COIL__HTTP_DONE);
    assert_int_equal(used, 0);
    coil__http_parser_reset(&p);
    assert_int_equal(coil__http_parser_feed(&p, in + first, sizeof(in) - 1 - first, &used),
                     COIL__HTTP_HEAD);
    assert_int_equal(used, sizeof(in) - 1 - first);
    assert_memory_equal(p.head.target, "/b", 2);
    assert_int_equal(coil__http_parser_feed(&p, NULL, 0, &used), COIL__HTTP_DONE);
    assert_int_equal(used, 0);
}

/* A Content-Length body that ends with the buffer: the last BODY, then DONE
 * from a feed of zero bytes. */
static void test_body_end_needs_no_bytes(void **state)
{
    (void)state;
    static const char in[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    char arena[4096];
    coil__http_parser p;
    size_t used, off = 0;
    coil__http_parser_init(&p, true, &default_limits, arena, sizeof(arena));
    assert_int_equal(coil__http_parser_feed(&p, in, sizeof(in) - 1, &used), COIL__HTTP_HEAD);
    off += used;
    assert_int_equal(coil__http_parser_feed(&p, in + off, sizeof(in) - 1 - off, &used),
                     COIL__HTTP_BODY);
    assert_ptr_equal(p.chunk, in + off);
    assert_int_equal(p.chunk_len, 3);
    off += used;
    assert_int_equal(off, sizeof(in) - 1);
    assert_int_equal(coil__http_parser_feed(&p, in + off, 0, &used), COIL__HTTP_DONE);
    assert_int_equal(p.body_seen, 3);
}

/* An arena too small for the head is a 431, never an overflow. */
static void test_small_arena(void **state)
{
    (void)state;
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789012345678901234567890123456789\r\n\r\n";
    char arena[96];
    coil__http_parser p;
    size_t used;
    coil__http_parser_init(&p, true, &default_limits, arena, sizeof(arena));
    assert_int_equal(coil__http_parser_feed(&p, in, sizeof(in) - 1, &used), COIL__HTTP_ERROR);
    assert_int_equal(p.error_status, 431);
}

/* A head that arrives in pieces keeps its fields whole. */
static void test_fields_split_across_feeds(void **state)
{
    (void)state;
    static const char in[] = "GET / HTTP/1.1\r\nHost: exa";
    static const char in2[] = "mple.org\r\nX-Split: one two\r\n\r\n";
    char arena[4096];
    char buf[64];
    coil__http_parser p;
    size_t used;
    coil__http_parser_init(&p, true, &default_limits, arena, sizeof(arena));
    memcpy(buf, in, sizeof(in) - 1);
    assert_int_equal(coil__http_parser_feed(&p, buf, sizeof(in) - 1, &used), COIL__HTTP_NEED_MORE);
    assert_int_equal(used, sizeof(in) - 1);
    memset(buf, 'Z', sizeof(buf)); /* the first piece is gone */
    memcpy(buf, in2, sizeof(in2) - 1);
    assert_int_equal(coil__http_parser_feed(&p, buf, sizeof(in2) - 1, &used), COIL__HTTP_HEAD);
    assert_int_equal(p.head.host_len, 11);
    assert_memory_equal(p.head.host, "example.org", 11);
    const coil__http_field *f = coil__http_field_get(&p.head, "x-split");
    assert_non_null(f);
    assert_int_equal(f->value_len, 7);
    assert_memory_equal(f->value, "one two", 7);
    assert_int_equal(p.head.nfields, 2);
}

/* --dump-rejected: the request cases the parser refuses under the default
 * limits before a first message completes, one per line as "STATUS HEX-BYTES NAME", so the same table can be
 * sent through a running server or proxy (tests/integration/proxy_test.py
 * checks that none of them reaches an upstream). */
static int dump_rejected(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const tcase *tc = &cases[i];
        if (tc->response || tc->status == 0 || tc->finish || tc->messages ||
            (tc->limits && tc->limits != &default_limits))
            continue;
        printf("%d ", tc->status);
        for (size_t k = 0; k < tc->len; k++)
            printf("%02x", (unsigned char)tc->raw[k]);
        printf(" %s\n", tc->name);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--dump-rejected") == 0)
        return dump_rejected();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_whole),
        cmocka_unit_test(test_cases_bytewise),
        cmocka_unit_test(test_pipelined_offsets),
        cmocka_unit_test(test_body_end_needs_no_bytes),
        cmocka_unit_test(test_body_ahead),
        cmocka_unit_test(test_chunk_line),
        cmocka_unit_test(test_small_arena),
        cmocka_unit_test(test_fields_split_across_feeds),
    };
    return HARNESS_RUN(tests);
}
