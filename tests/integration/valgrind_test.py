#!/usr/bin/env python3
"""coil-proxy under Valgrind's memcheck, on the backend COIL_BACKEND names.

memcheck cannot see what the kernel writes or reads through io_uring
(runtime/src/valgrind_io.h): without the backend's marks every received
byte reads as undefined and each parse of it is an error; and Valgrind 3.19
does not let other threads run while one sleeps in io_uring_enter, so an
idle server ignored SIGTERM. Traffic that takes the paths where the kernel
fills or reads memory (accepts, receives on both sides, small sends through
the ring, a large gathered response, an echoed upload, pipelining, a bad
request), then an idle pause, then SIGTERM. Checked: every answer right;
the proxy exits by itself within 20 s of SIGTERM, with status 0 and no
memcheck error or definite leak (--error-exitcode).

usage: valgrind_test.py PATH_TO_coil-proxy
Exit 77 (skipped) without valgrind, or in a sanitizer build (ASan and
Valgrind do not run together)."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import leakcheck
import testlib

BIN = sys.argv[1]
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok     " if cond else "FAILED ") + name + ("" if cond else "  " + repr(detail)[:300]))


if leakcheck.asan():
    print("skipped: a sanitizer build cannot run under Valgrind")
    sys.exit(77)
VALGRIND = shutil.which("valgrind")
if not VALGRIND:
    print("skipped: valgrind is not installed (tools/setup.sh installs it)")
    sys.exit(77)

BIG = bytes((i * 7919 + (i >> 8)) & 0xFF for i in range(300000))


def read_head(c, buf):
    while b"\r\n\r\n" not in buf:
        b = c.recv(65536)
        if not b:
            return None, None, buf
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    fields = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        fields[k.strip().lower()] = v.strip()
    return lines[0], fields, rest


def read_at_least(c, buf, n):
    """buf and what c sends next until it holds n bytes or c ends."""
    while len(buf) < n:
        b = c.recv(65536)
        if not b:
            break
        buf += b
    return buf


def serve(c):
    """Keep-alive upstream: GET /big answers 300 000 bytes in pieces (the
    proxy gathers what it holds), POST echoes its body, anything else a
    short answer naming the path."""
    buf = b""
    try:
        while True:
            line, fields, buf = read_head(c, buf)
            if line is None:
                return
            path = line.split(b" ")[1]
            n = int(fields.get(b"content-length", b"0"))
            buf = read_at_least(c, buf, n)
            if len(buf) < n:
                return
            body, buf = buf[:n], buf[n:]
            if path == b"/big":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BIG))
                for i in range(0, len(BIG), 70000):
                    c.sendall(BIG[i:i + 70000])
            elif line.startswith(b"POST"):
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
    except OSError:
        pass
    finally:
        c.close()


def answer(c, buf=b""):
    """One response from c: (status line, body, bytes after it)."""
    line, fields, buf = read_head(c, buf)
    if line is None:
        return None, b"", buf
    n = int(fields.get(b"content-length", b"0"))
    buf = read_at_least(c, buf, n)
    return line, buf[:n], buf[n:]


up_port = testlib.serve_threaded(serve)
px_port = testlib.free_port()
conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
conf.write("[proxy]\ncores = 0\n\n[listen]\naddress = 127.0.0.1:%d\n\n"
           "[upstream up]\nserver = 127.0.0.1:%d\n\n[route]\nupstream = up\n" % (px_port, up_port))
conf.close()
proc = subprocess.Popen([VALGRIND, "-q", "--error-exitcode=99", "--leak-check=full",
                         "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                         BIN, "-c", conf.name],
                        stderr=subprocess.PIPE, text=True, env=dict(os.environ, COIL_QUIET="1"))
tail = leakcheck.StderrTail(proc)
try:
    check("coil-proxy listens under valgrind", testlib.wait_listening(px_port, timeout=60))
    c = socket.create_connection(("127.0.0.1", px_port), timeout=30)
    for i in range(3):
        c.sendall(b"GET /small%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        line, body, rest = answer(c)
        check("keep-alive GET %d" % i, line and b" 200 " in line and body == b"/small%d" % i, (line, body))
    c.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
    line, body, rest = answer(c)
    check("300 000-byte response arrives byte for byte",
          line and b" 200 " in line and hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest(),
          (line, len(body)))
    up = BIG[:100000]
    c.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(up) + up)
    line, body, rest = answer(c)
    check("100 000-byte upload echoed", line and b" 200 " in line and body == up, (line, len(body)))
    c.sendall(b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\n")
    l1, b1, rest = answer(c)
    l2, b2, rest = answer(c, rest)
    check("two pipelined GETs answered in order", b1 == b"/p1" and b2 == b"/p2", (b1, b2))
    c.close()
    bad = socket.create_connection(("127.0.0.1", px_port), timeout=30)
    bad.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Field: x\r\n\r\n")
    line, _, _ = answer(bad)
    check("a malformed head gets 400", line and b" 400 " in line, line)
    bad.close()
    time.sleep(1.0)  # every task parked: the loop sleeps in the kernel
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
        check("exits within 20 s of SIGTERM while idle", False, "killed")
    else:
        check("exits within 20 s of SIGTERM while idle", True)
    tail.join()
    errors = [ln for ln in tail.lines if ln.startswith("==")]
    check("exit status 0: no memcheck error, no definite leak", code == 0,
          (code, "\n".join(errors[:12])))
    os.unlink(conf.name)

passed = sum(results)
print("%d passed, %d failed" % (passed, len(results) - passed))
sys.exit(0 if passed == len(results) else 1)
