#!/usr/bin/env python3
"""Slow clients against coil-proxy: 1000 slowloris connections (a partial
request head, then a byte now and then) and 200 slow POSTs (a full head with
Content-Length: 1000000, then a byte now and then) held open at once, while
normal clients keep making requests through the proxy.

Asserted:
  - every normal request gets its 200 while the offenders are held (the
    worst latency is printed, never asserted);
  - each slowloris connection is closed by the server by its deadline
    (accept + header_timeout), within a grace of 10 s;
  - each slow POST is closed by its deadline, within the same grace. The
    deadline depends on what the proxy can be told: with `body_timeout` and
    `body_min_rate` in [proxy] (looked for with --check) bodies trickled
    below the rate are cut; without them only the server's fixed body idle
    timeout (30 s) applies, so the slow POSTs trickle for a few seconds and
    then go quiet, and the test says so;
  - the proxy's descriptor count returns to its baseline, it still answers,
    and it stops cleanly (leakcheck.py; under ASan no LeakSanitizer report).

usage: slow_clients_test.py PATH_TO_coil-proxy
The backend comes from COIL_BACKEND. Exits 77 if the descriptor limit cannot
be raised far enough. Prints 'N passed, N failed'."""

import errno
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

import leakcheck
import testlib

BIN = sys.argv[1]
SLOWLORIS = 1000
SLOWPOST = 200
HEADER_TIMEOUT = 3          # s, the proxy's header_timeout
BODY_IDLE_DEFAULT = 30      # s, the server's body idle timeout when the proxy cannot set it
BODY_TIMEOUT = 3            # s, body_timeout when the proxy has the knob
BODY_MIN_RATE = 100         # bytes/s, body_min_rate when the proxy has the knob
GRACE = 10                  # s beyond each deadline
TRICKLE = 1.0               # s between two bytes of an offender
NORMAL_SECONDS = 2          # normal traffic after the offenders are in
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok     " if cond else "FAILED ") + name + ("" if cond else "  " + repr(detail)[:400]))


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return True
    if hard != resource.RLIM_INFINITY and hard < need:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return True


# ---- the upstream: GET answers at once; POST bodies are read as they come ----

up_live = [0]
up_lock = threading.Lock()


def upstream_serve(c):
    with up_lock:
        up_live[0] += 1
    try:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            head, buf = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(buf) < length:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            buf = buf[length:]
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    finally:
        c.close()
        with up_lock:
            up_live[0] -= 1


def upstream():
    return testlib.serve_threaded(upstream_serve, backlog=1024)


def has_keys(extra):
    """Whether coil-proxy accepts these [proxy] lines (probe with --check)."""
    f = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    f.write("[proxy]\n%s\n[listen]\naddress = 127.0.0.1:1\n[upstream u]\nserver = 127.0.0.1:1\n"
            "[route]\nupstream = u\n" % extra)
    f.close()
    try:
        return subprocess.run([BIN, "--check", f.name], capture_output=True).returncode == 0
    finally:
        os.unlink(f.name)


def get_ok(port, timeout=30):
    """One GET through the proxy on a fresh connection: (status, seconds)."""
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            out += b
    finally:
        s.close()
    status = int(out[9:12]) if out.startswith(b"HTTP/1.1 ") else 0
    return status, time.time() - t0


# ---- offenders: non-blocking sockets driven by one selector loop ----

class Offender:
    def __init__(self, kind, sock, deadline_after):
        self.kind = kind
        self.sock = sock
        self.start = time.time()       # connected: the server's clock starts about here
        self.last_byte = self.start
        self.deadline_after = deadline_after
        self.closed_at = None
        self.how = None
        self.answer = b""

    def deadline(self):
        return self.deadline_after(self)


def open_offenders(port, kind, n, first, deadline_after):
    out = []
    for i in range(0, n, 100):
        batch = []
        for _ in range(min(100, n - i)):
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, "connect")
            batch.append(s)
        sel = selectors.DefaultSelector()
        for s in batch:
            sel.register(s, selectors.EVENT_WRITE)
        pending = len(batch)
        t_end = time.time() + 10
        while pending and time.time() < t_end:
            for key, _ in sel.select(timeout=1):
                sel.unregister(key.fileobj)
                pending -= 1
        sel.close()
        for s in batch:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                raise OSError("offender could not connect")
            s.send(first)
            out.append(Offender(kind, s, deadline_after))
    return out


def mark_closed(o, how):
    if o.closed_at is None:
        o.closed_at = time.time()
        o.how = how


def drive(offenders, until, trickle_body_until, stop_when_all_closed=True):
    """Trickles one byte per TRICKLE seconds into each open offender (slow
    POSTs only until trickle_body_until) and notes when the server ends
    each connection (EOF or reset), until the time until() returns."""
    sel = selectors.DefaultSelector()
    for o in offenders:
        if o.closed_at is None:
            sel.register(o.sock, selectors.EVENT_READ, o)
    next_trickle = time.time() + TRICKLE
    while time.time() < until():
        if stop_when_all_closed and all(o.closed_at is not None for o in offenders):
            break
        for key, _ in sel.select(timeout=0.1):
            o = key.data
            try:
                b = o.sock.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                b = None
            except BlockingIOError:
                continue
            if b:
                o.answer += b
                continue
            mark_closed(o, "reset" if b is None else "eof")
            sel.unregister(o.sock)
        now = time.time()
        if now >= next_trickle:
            next_trickle = now + TRICKLE
            for o in offenders:
                if o.closed_at is not None:
                    continue
                if o.kind == "post" and now >= trickle_body_until:
                    continue
                try:
                    o.sock.send(b"X" if o.kind == "post" else b"x")
                    o.last_byte = now
                except BlockingIOError:
                    pass
                except OSError:
                    mark_closed(o, "reset")
                    sel.unregister(o.sock)
    sel.close()


def main():
    if not raise_nofile(SLOWLORIS + 2 * SLOWPOST + 1024):
        print("skipped: RLIMIT_NOFILE hard limit %d is below the %d descriptors this test needs"
              % (resource.getrlimit(resource.RLIMIT_NOFILE)[1], SLOWLORIS + 2 * SLOWPOST + 1024))
        return 77

    knob_rate = has_keys("body_timeout = %ds\nbody_min_rate = %d" % (BODY_TIMEOUT, BODY_MIN_RATE))
    knob_idle = knob_rate or has_keys("body_timeout = %ds" % BODY_TIMEOUT)
    body_lines = ""
    if knob_rate:
        body_lines = "body_timeout = %ds\nbody_min_rate = %d\n" % (BODY_TIMEOUT, BODY_MIN_RATE)
        print("# slow POSTs: body_timeout %d s with body_min_rate %d B/s; they trickle until cut"
              % (BODY_TIMEOUT, BODY_MIN_RATE))
    elif knob_idle:
        body_lines = "body_timeout = %ds\n" % BODY_TIMEOUT
        print("# slow POSTs: body_timeout %d s, no minimum rate: a trickle would hold them forever, "
              "so they trickle for a while and then go quiet" % BODY_TIMEOUT)
    else:
        print("# slow POSTs: coil-proxy has no body timeout setting; only the server's %d s body "
              "idle timeout applies, and a byte every %.0f s would hold a connection forever, "
              "so they trickle for a while and then go quiet" % (BODY_IDLE_DEFAULT, TRICKLE))
    body_idle = BODY_TIMEOUT if knob_idle else BODY_IDLE_DEFAULT

    up_port = upstream()
    px_port = testlib.free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    # keepalive = 0: no pooled upstream connection, so the descriptor count
    # must return exactly to its baseline. The upstream is a Python thread
    # per connection sharing two CPUs with 1200 offenders (and ASan): a
    # generous connect_timeout keeps its slowness from reading as a 502.
    conf.write("[proxy]\ncores = 0\naccess_log = off\nmetrics = off\nmax_body = 0\n"
               "header_timeout = %ds\nkeepalive_timeout = 5s\nsend_timeout = 5s\n"
               "drain_timeout = 2s\n%s\n[listen]\naddress = 127.0.0.1:%d\n\n"
               "[upstream app]\nserver = 127.0.0.1:%d\nkeepalive = 0\nconnect_timeout = 10s\n\n"
               "[route]\nupstream = app\n" % (HEADER_TIMEOUT, body_lines, px_port, up_port))
    conf.close()
    proc = subprocess.Popen([BIN, "-c", conf.name], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, COIL_QUIET="1"))
    tail = leakcheck.StderrTail(proc)
    offenders = []
    try:
        testlib.wait_listening(px_port)
        check("proxy answers before the offenders come", get_ok(px_port)[0] == 200)
        base = leakcheck.fd_baseline(proc.pid)

        # normal clients from before the offenders arrive until after
        statuses, latencies, errors = [], [], []
        stop = threading.Event()

        def normal():
            while not stop.is_set():
                try:
                    st, took = get_ok(px_port)
                    statuses.append(st)
                    latencies.append(took)
                except OSError as e:
                    errors.append(str(e))

        threads = [threading.Thread(target=normal) for _ in range(4)]
        for t in threads:
            t.start()

        # slow POSTs first: they are held longest
        if knob_rate:
            post_deadline = lambda o: o.start + body_idle + 2 * TRICKLE  # noqa: E731
        else:
            post_deadline = lambda o: o.last_byte + body_idle  # noqa: E731
        posts = open_offenders(px_port, "post", SLOWPOST,
                               b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nX",
                               post_deadline)
        loris = open_offenders(px_port, "loris", SLOWLORIS,
                               b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: ",
                               lambda o: o.start + HEADER_TIMEOUT)
        offenders = posts + loris
        opened = time.time()
        trickle_until = opened + (10**9 if knob_rate else 5)
        drive(offenders, lambda: opened + NORMAL_SECONDS, trickle_until, stop_when_all_closed=False)
        held = leakcheck.fd_count(proc.pid) - base
        print("# %d slowloris and %d slow POST connections open; the proxy holds %d descriptors "
              "more than at rest" % (len(loris), len(posts), held))
        stop.set()
        for t in threads:
            t.join()
        still = sum(1 for o in offenders if o.closed_at is None)
        check("normal clients: every request answered 200 while offenders were held "
              "(%d requests, %d offenders still open at the end)" % (len(statuses), still),
              statuses and all(s == 200 for s in statuses) and not errors,
              (sorted(set(statuses)), errors[:3]))
        if latencies:
            print("# normal clients: %d requests, worst latency %.3f s, median %.3f s"
                  % (len(latencies), max(latencies), sorted(latencies)[len(latencies) // 2]))

        # every offender must be ended by the server by its deadline (a
        # trickling one's deadline moves with its last byte)
        drive(offenders, lambda: max(o.deadline() for o in offenders) + GRACE, trickle_until)
        for kind, group, what in (("loris", loris, "header_timeout %d s" % HEADER_TIMEOUT),
                                  ("post", posts, "body deadline")):
            late = [o for o in group if o.closed_at is None or o.closed_at > o.deadline() + GRACE]
            closed = [o for o in group if o.closed_at is not None]
            answered = {}
            for o in closed:
                code = o.answer[9:12].decode("latin-1") if o.answer.startswith(b"HTTP/1.1 ") else "none"
                answered[code] = answered.get(code, 0) + 1
            after = sorted(o.closed_at - o.start for o in closed)
            print("# %s: %d closed by the server (%d eof, %d reset), answers %s, closed %.1f..%.1f s "
                  "after connecting" % (kind, len(closed), sum(o.how == "eof" for o in closed),
                                        sum(o.how == "reset" for o in closed), answered,
                                        after[0] if after else -1, after[-1] if after else -1))
            check("%s: all %d closed by the server by their deadline (%s) + %d s"
                  % (kind, len(group), what, GRACE), not late,
                  "%d late or still open" % len(late))
        for o in offenders:
            o.sock.close()

        ok, detail = leakcheck.fds_back(proc.pid, base, timeout=15, allowance=lambda: up_live[0])
        check("proxy descriptors back to the baseline", ok, detail)
        check("proxy still answers afterwards", get_ok(px_port)[0] == 200)
    finally:
        for o in offenders:
            o.sock.close()
        ok, detail = leakcheck.stop(proc, stderr=tail)
        check("graceful stop on SIGTERM, exit 0 and no leak report", ok, detail)
        print("# " + detail)
        os.unlink(conf.name)

    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if passed == len(results) else 1


sys.exit(main())
