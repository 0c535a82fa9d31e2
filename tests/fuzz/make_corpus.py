#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (tests/fuzz/corpus/request/, .../response/)
from the readable tables below. Rerun after editing a table; the files are
kept in the repository so the fuzz stage needs no generation step.

Each file is: a mode byte, 8 piece lengths (0 = all that is left), then the
bytes the peer sends (see fuzz_common.h). Request mode: bits 0-1 limits
(0 server defaults, 1 coil-proxy's, 3 tiny), bit 2 a route lowers the body
limit to (mode >> 3) * 3. Response mode: bit 0 the smallest head limit,
bits 1-3 the first request's method (0 GET, 1 HEAD, 2 CONNECT, 3 POST),
bits 4-7 how the method changes for later requests.

usage: make_corpus.py"""

import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ONE = [0] * 8                       # everything in one piece
SMALL = [1, 2, 3, 5, 8, 13, 21, 34]  # many small pieces
BYTE = [1] * 8                       # one byte at a time
H = b" HTTP/1.1\r\nHost: a\r\n"

REQUESTS = [
    # (name, mode, splits, bytes)
    ("get", 0, ONE, b"GET /" + H + b"\r\n"),
    ("get-query-split", 0, SMALL, b"GET /p/q?x=1&y" + H + b"User-Agent: t\r\nAccept: */*\r\n\r\n"),
    ("http10", 0, ONE, b"GET / HTTP/1.0\r\n\r\n"),
    ("http10-keepalive", 0, ONE, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"),
    ("post-length", 0, BYTE, b"POST /up" + H + b"Content-Length: 5\r\n\r\nhello"),
    ("post-chunked", 0, SMALL, b"POST /" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5;a=b\r\nhello\r\n3;x;y=\"q s\"\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"),
    ("pipelined", 0, ONE, b"GET /a" + H + b"\r\nPOST /b" + H + b"Content-Length: 3\r\n\r\nabcGET /c" + H + b"\r\n"),
    ("pipelined-split", 0, SMALL, b"GET /a" + H + b"\r\nPOST /b" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"2\r\nhi\r\n0\r\n\r\nGET /c" + H + b"Connection: close\r\n\r\n"),
    ("connect", 0, ONE, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
    ("options-star", 0, ONE, b"OPTIONS *" + H + b"\r\n"),
    ("absolute-form", 0, ONE, b"GET http://example.com:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n"),
    ("expect-continue", 0, ONE, b"POST /" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"),
    ("upgrade", 0, ONE, b"GET /ws" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
    ("leading-crlf", 0, ONE, b"\r\n\r\nGET /" + H + b"\r\n"),
    ("route-limit", 4 | (3 << 3), SMALL, b"POST /" + H + b"Content-Length: 20\r\n\r\n01234567890123456789"),
    ("tiny-limits", 3, ONE, b"POST /" + H + b"B: 1\r\nC: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\n01234\r\n5;a=bcde\r\n56789\r\n0\r\n\r\n"),
    ("proxy-limits-big-length", 1, ONE, b"POST /" + H + b"Content-Length: 2000000\r\n\r\nabc"),
    ("too-large-length", 0, ONE, b"POST /" + H + b"Content-Length: 2000000\r\n\r\nabc"),
    ("long-target-414", 0, ONE, b"GET /" + b"a" * 8200 + H + b"\r\n"),
    ("many-fields-431", 0, ONE, b"GET /" + H + b"X-A: b\r\n" * 101 + b"\r\n"),
    ("http2-505", 0, ONE, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
    ("http09", 0, ONE, b"GET /\r\n\r\n"),
    ("te-gzip-501", 0, ONE, b"POST /" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    # smuggling attempts: each must be refused, never framed one way or another
    ("smuggle-cl-te", 0, ONE, b"POST /" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\nGET /admin" + H + b"\r\n"),
    ("smuggle-te-cl", 0, ONE, b"POST /" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
     b"0\r\n\r\n"),
    ("smuggle-two-cl", 0, ONE, b"POST /" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
    ("smuggle-cl-list", 0, ONE, b"POST /" + H + b"Content-Length: 5, 6\r\n\r\nhello!"),
    ("same-cl-list", 0, ONE, b"POST /" + H + b"Content-Length: 5, 5\r\n\r\nhello"),
    ("smuggle-obs-fold-cl", 0, ONE, b"POST /hello" + H + b"Foo: bar\r\n Content-Length: 38\r\n\r\n"
     b"GET /bye" + H + b"\r\n"),
    ("smuggle-te-twice", 0, ONE, b"POST /" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n"),
    ("smuggle-xchunked", 0, ONE, b"POST /" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("smuggle-te-http10", 0, ONE, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("smuggle-te-trailing-comma", 0, ONE, b"POST /" + H + b"Transfer-Encoding: chunked,\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n"),
    ("smuggle-space-before-colon", 0, ONE, b"POST /" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("smuggle-vtab-te", 0, ONE, b"POST /" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"),
    ("smuggle-chunk-17-digits", 0, ONE, b"POST /" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("smuggle-chunk-0x", 0, ONE, b"POST /" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
    ("smuggle-chunk-overflow", 0, ONE, b"POST /" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("smuggle-negative-cl", 0, ONE, b"POST /" + H + b"Content-Length: -1\r\n\r\n"),
    ("smuggle-plus-cl", 0, ONE, b"POST /" + H + b"Content-Length: +5\r\n\r\nhello"),
    ("smuggle-bare-lf", 0, ONE, b"GET / HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello"),
    ("smuggle-bare-cr", 0, ONE, b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"),
    ("smuggle-nul", 0, ONE, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"),
    ("smuggle-cl0-pipelined", 0, SMALL, b"POST /x" + H + b"Content-Length: 0\r\n\r\nGET /admin" + H + b"\r\n"),
    ("smuggle-chunk-ext-long", 3, ONE, b"POST /" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"1;aaaaaaaaaaaaaaaaaaaaaaaaa=b\r\nx\r\n0\r\n\r\n"),
    ("smuggle-trailer-cl", 0, ONE, b"POST /" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"1\r\nx\r\n0\r\nContent-Length: 5\r\nConnection: close\r\n\r\nGET /n" + H + b"\r\n"),
    ("two-hosts", 0, ONE, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("no-host", 0, ONE, b"GET / HTTP/1.1\r\n\r\n"),
    ("fragment", 0, ONE, b"GET /a#b" + H + b"\r\n"),
    ("userinfo", 0, ONE, b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("space-before-first-field", 0, ONE, b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
    ("empty-field-name", 0, ONE, b"GET /" + H + b": a\r\n\r\n"),
    ("double-space-request-line", 0, ONE, b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("connect-with-body", 0, ONE, b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nContent-Length: 3\r\n\r\nabc"),
    ("cut-short", 0, SMALL, b"POST /" + H + b"Content-Length: 50\r\n\r\nabc"),
]

RESPONSES = [
    ("ok-length", 0, ONE, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ("ok-chunked", 0, SMALL, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    ("no-content-204", 0, ONE, b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
    ("not-modified-304", 0, ONE, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
    ("head-response", 1 << 1, ONE, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
    ("continue-then-ok", 0, SMALL, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("early-hints", 0, ONE, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("switching-101", 0, ONE, b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05"),
    ("connect-200", 2 << 1, ONE, b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01"),
    ("until-close-10", 0, SMALL, b"HTTP/1.0 200 OK\r\n\r\nthe body runs to the close"),
    ("until-close-11", 0, ONE, b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nbody"),
    ("keepalive-two", 3 << 1 | 1 << 4, [40, 0, 0, 0, 0, 0, 0, 0],
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes"),
    ("small-limit", 1, ONE, b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"v" * 300 + b"\r\n\r\n"),
    ("no-reason", 0, ONE, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
    ("empty-reason", 0, ONE, b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"),
    ("smuggle-cl-te", 0, ONE, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("smuggle-two-cl", 0, ONE, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("smuggle-obs-fold", 0, ONE, b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
    ("smuggle-folded-cl", 0, ONE, b"HTTP/1.1 200 OK\r\nX: a\r\n Content-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
    ("smuggle-te-http10", 0, ONE, b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("smuggle-te-gzip", 0, ONE, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("smuggle-bare-lf", 0, ONE, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    ("smuggle-nul", 0, ONE, b"HTTP/1.1 200 OK\r\nX: \x00\r\nContent-Length: 0\r\n\r\n"),
    ("smuggle-chunk-17-digits", 0, ONE, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"00000000000000002\r\nok\r\n0\r\n\r\n"),
    ("smuggle-space-colon", 0, ONE, b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
    ("garbage", 0, ONE, b"this is not http\r\n\r\n"),
    ("status-two-digits", 0, ONE, b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-600", 0, ONE, b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n"),
    ("reason-control", 0, ONE, b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n"),
    ("http09-like", 0, ONE, b"hello"),
    ("cut-short", 0, SMALL, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
    ("head-then-get", 1 << 1 | 1 << 4, [38, 0, 0, 0, 0, 0, 0, 0],
     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ("negative-cl", 0, ONE, b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"),
]


def write(kind, table):
    out = os.path.join(HERE, "corpus", kind)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name, mode, splits, data in table:
        assert len(splits) == 8
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([mode]) + bytes(splits) + data)
    print("%s: %d seeds" % (out, len(table)))


write("request", REQUESTS)
write("response", RESPONSES)
