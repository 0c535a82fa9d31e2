#!/usr/bin/env python3
"""coil-proxy reload on SIGHUP: new routes take effect, the listening sockets
stay (no refused or reset connection while clients keep coming), a
connection kept alive across the reload keeps working, and a broken file is
refused with its file and line while the running configuration stays.
At the end (leakcheck.py): the old configuration's pooled upstream
connections are closed once nothing uses them, the proxy holds no descriptor
beyond its start-up set and its live upstream connections, and it stops
cleanly on SIGTERM (under ASan: no LeakSanitizer report).

usage: proxy_reload_test.py PATH_TO_coil-proxy"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import leakcheck
import testlib

BIN = sys.argv[1]
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok     " if cond else "FAILED ") + name + ("" if cond else "  " + repr(detail)[:300]))


live = {}  # upstream tag -> connections it has open now
live_lock = threading.Lock()


def upstream(tag):
    """A keep-alive upstream answering every request with its tag."""
    live[tag] = 0

    def serve(c):
        with live_lock:
            live[tag] += 1
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    b = c.recv(65536)
                    if not b:
                        return
                    buf += b
                _, buf = buf.split(b"\r\n\r\n", 1)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(tag), tag))
        except OSError:
            pass
        finally:
            c.close()
            with live_lock:
                live[tag] -= 1

    return testlib.serve_threaded(serve, backlog=128)


def config(px_port, up_port):
    return ("[proxy]\ncores = 0,1\naccess_log = off\nmetrics = off\n\n"
            "[listen]\naddress = 127.0.0.1:%d\n\n"
            "[upstream app]\nserver = 127.0.0.1:%d\n\n"
            "[route]\npath = /\nupstream = app\n" % (px_port, up_port))


def get(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        out += b
    s.close()
    return out


up_a = upstream(b"A")
up_b = upstream(b"B")
px_port = testlib.free_port()
conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
conf.write(config(px_port, up_a))
conf.close()
if os.cpu_count() < 2:
    print("needs 2 CPUs")
    sys.exit(77)
proc = subprocess.Popen([BIN, "-c", conf.name], stderr=subprocess.PIPE, text=True,
                        env=dict(os.environ, COIL_QUIET="1"))
tail = leakcheck.StderrTail(proc)
log = tail.lines
testlib.wait_listening(px_port)
fds0 = leakcheck.fd_baseline(proc.pid)
try:
    check("before the reload: upstream A", get(px_port).endswith(b"A"))
    # a client connection kept alive across the reload
    keep = socket.create_connection(("127.0.0.1", px_port), timeout=5)
    keep.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    first = keep.recv(4096)

    # clients keep coming during the reload: none may be refused or reset
    errors = []
    answers = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                answers.append(get(px_port)[-1:])
            except OSError as e:
                errors.append(str(e))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    def wait_for(cond, timeout=20):
        deadline = time.time() + timeout
        while not cond() and time.time() < deadline:
            time.sleep(0.02)

    # counts, not durations: a loaded (or sanitizer) build is slower
    wait_for(lambda: len(answers) >= 10)
    with open(conf.name, "w") as f:
        f.write(config(px_port, up_b))
    before = len(answers)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: answers[before:].count(b"B") >= 10)
    stop.set()
    for t in threads:
        t.join()
    check("no client refused or reset during the reload (%d requests)" % len(answers),
          not errors and len(answers) > 20, errors[:3])
    check("after the reload: upstream B", get(px_port).endswith(b"B"))
    check("answers switched from A to B", b"A" in answers and answers[-1] == b"B", answers[-5:])
    keep.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    second = b""
    while True:
        b = keep.recv(4096)
        if not b:
            break
        second += b
    keep.close()
    check("a connection kept alive across the reload still works",
          first.endswith(b"A") and second.startswith(b"HTTP/1.1 200"), (first, second))

    # a broken file is refused; the running configuration stays
    with open(conf.name, "w") as f:
        f.write(config(px_port, up_a) + "\n[upstream app]\nserver = 127.0.0.1:1\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    refused = [l for l in log if "reload refused" in l]
    check("a broken file is refused with file and line",
          refused and re.search(re.escape(conf.name) + r":\d+: ", refused[-1]), log[-3:])
    check("the running configuration stays", get(px_port).endswith(b"B"))

    # the old configuration's pool goes once nothing uses it; what stays
    # open is the start-up set plus the pooled connections to B
    deadline = time.time() + 10
    while live[b"A"] and time.time() < deadline:
        time.sleep(0.1)
    check("old configuration's upstream connections closed after the reload", live[b"A"] == 0,
          live)
    ok, detail = leakcheck.fds_back(proc.pid, fds0, allowance=lambda: live[b"A"] + live[b"B"])
    check("no descriptor left behind (beyond pooled upstream connections)", ok, detail)
finally:
    ok, detail = leakcheck.stop(proc, stderr=tail)
    check("graceful stop on SIGTERM, exit 0 and no leak report", ok, detail)
    print("# " + detail)
    os.unlink(conf.name)

passed = sum(results)
print("%d passed, %d failed" % (passed, len(results) - passed))
sys.exit(0 if passed == len(results) else 1)
