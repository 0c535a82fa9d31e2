#!/usr/bin/env python3
"""coil-proxy soak: a bounded run of mixed traffic, watching for slow leaks.

    bench/soak.py [--seconds 300] [--backend io_uring|epoll] [--build-dir build]
                  [--clients 4] [--pause-ms 5]

Not part of the default tests (it takes minutes). coil-proxy runs on one
core in front of a Python upstream; client threads loop over a weighted mix:

    get         GET, keep-alive, Content-Length body of 0..256 KiB, checked
    get_close   GET with Connection: close
    get_chunked GET of a chunked response, checked
    post        POST of 0..1 MiB with Content-Length, echoed digest checked
    post_chunk  POST with Transfer-Encoding: chunked, digest checked
    abort       POST announcing 1 MiB, sending part of it, then closing
    slow        GET the upstream answers after 300 ms
    reset       GET the upstream resets without answering   (fault: 502 expected)
    reset_mid   GET the upstream resets mid-body            (fault: cut body expected)

Checked: no unexpected answer (a 502 only where a fault was injected, every
other request 200 with the right bytes); the proxy's descriptor count does
not grow (at the end, with traffic stopped, it is back to its baseline plus
the pooled upstream connections the upstream still sees); RSS stays flat
(VmRSS sampled every 5 s; the last quarter of the run may not sit more than
25% + 4 MiB above the first sample taken after the first quarter). Prints a
summary; exits 0 if every check passed.
"""
import argparse
import re
import hashlib
import http.client
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

# The integration tests' helpers (ports, a threaded upstream).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import testlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIX = [("get", 30), ("get_close", 8), ("get_chunked", 8), ("post", 16), ("post_chunk", 8),
       ("abort", 4), ("slow", 4), ("reset", 3), ("reset_mid", 3)]


# ---- the upstream ----

up_live = [0]
up_lock = threading.Lock()


def read_head(c, buf):
    while b"\r\n\r\n" not in buf:
        b = c.recv(65536)
        if not b:
            return None, None
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def read_body(c, head, rest):
    """Returns (body, leftover) for a Content-Length or chunked body."""
    low = head.lower()
    if "transfer-encoding: chunked" in low:
        body, buf = b"", rest
        while True:
            while b"\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    raise OSError("eof in chunked body")
                buf += b
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                b = c.recv(65536)
                if not b:
                    raise OSError("eof in chunk")
                buf += b
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                return body, buf
    n = 0
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            n = int(v.strip())
    buf = rest
    while len(buf) < n:
        b = c.recv(1 << 20)
        if not b:
            raise OSError("eof in body")
        buf += b
    return buf[:n], buf[n:]


def pattern(n):
    """n deterministic bytes, so the client can check what it got."""
    block = bytes(range(256)) * 64
    return (block * (n // len(block) + 1))[:n]


def reset(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def serve(c):
    with up_lock:
        up_live[0] += 1
    buf = b""
    try:
        while True:
            head, rest = read_head(c, buf)
            if head is None:
                return
            path = head.split(" ")[1]
            body, buf = read_body(c, head, rest)
            if path.startswith("/get?"):
                n = int(path[5:])
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + pattern(n))
            elif path.startswith("/chunked?"):
                data = pattern(int(path[9:]))
                out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
                for i in range(0, len(data), 10000):
                    piece = data[i:i + 10000]
                    out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
                out.append(b"0\r\n\r\n")
                c.sendall(b"".join(out))
            elif path == "/echo":
                digest = hashlib.sha1(body).hexdigest().encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(digest) + digest)
            elif path == "/slow":
                time.sleep(0.3)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
            elif path == "/reset":
                reset(c)
                return
            elif path == "/reset_mid":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + pattern(1000))
                time.sleep(0.05)
                reset(c)
                return
            else:
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except OSError:
        pass
    finally:
        try:
            c.close()
        except OSError:
            pass
        with up_lock:
            up_live[0] -= 1


def start_upstream():
    lsn = socket.socket()
    lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(512)

    def loop():
        while True:
            c, _ = lsn.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return lsn.getsockname()[1]


# ---- clients ----

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = {}
        self.unexpected = []
        self.faults_seen = {"reset": 0, "reset_mid": 0}

    def add(self, name, ok, detail=""):
        with self.lock:
            self.count[name] = self.count.get(name, 0) + 1
            if not ok:
                self.unexpected.append("%s: %s" % (name, detail))


def raw_request(port, data, timeout=30):
    """Sends data on a fresh connection, reads to the end: (bytes, error)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            out += b
        return out, None
    except OSError as e:
        return out, e
    finally:
        s.close()


def client(port, stats, until, pause, seed):
    rnd = random.Random(seed)
    names = [n for n, w in MIX for _ in range(w)]
    conn = None
    while time.time() < until:
        name = rnd.choice(names)
        try:
            if name in ("get", "post", "post_chunk", "get_chunked"):
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                if name == "get":
                    n = rnd.randrange(0, 256 << 10)
                    conn.request("GET", "/get?%d" % n)
                    r = conn.getresponse()
                    body = r.read()
                    stats.add(name, r.status == 200 and body == pattern(n), (r.status, len(body), n))
                elif name == "get_chunked":
                    n = rnd.randrange(0, 256 << 10)
                    conn.request("GET", "/chunked?%d" % n)
                    r = conn.getresponse()
                    body = r.read()
                    stats.add(name, r.status == 200 and body == pattern(n), (r.status, len(body), n))
                else:
                    data = rnd.randbytes(rnd.randrange(0, 1 << 20))
                    if name == "post":
                        conn.request("POST", "/echo", body=data)
                    else:
                        pieces = [data[i:i + 32768] for i in range(0, len(data), 32768)]
                        conn.request("POST", "/echo", body=iter(pieces), encode_chunked=True,
                                     headers={"Transfer-Encoding": "chunked"})
                    r = conn.getresponse()
                    got = r.read()
                    stats.add(name, r.status == 200 and got == hashlib.sha1(data).hexdigest().encode(),
                              (r.status, got[:60]))
                if r.will_close:
                    conn.close()
                    conn = None
            elif name == "get_close":
                out, err = raw_request(port, b"GET /get?1000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                stats.add(name, err is None and out.startswith(b"HTTP/1.1 200 ") and out.endswith(pattern(1000)),
                          (err, out[:60]))
            elif name == "slow":
                out, err = raw_request(port, b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                stats.add(name, err is None and out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"slow"),
                          (err, out[:60]))
            elif name == "reset":
                # fault: the upstream resets before answering; 502 expected
                out, err = raw_request(port, b"GET /reset HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                stats.add(name, err is None and out.startswith(b"HTTP/1.1 502 "), (err, out[:60]))
            elif name == "reset_mid":
                # fault: the head went through, the body is cut; the client
                # must see a short body and the connection end
                out, err = raw_request(port, b"GET /reset_mid HTTP/1.1\r\nHost: a\r\n\r\n")
                body = out.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in out else b""
                stats.add(name, out.startswith(b"HTTP/1.1 200 ") and len(body) < 100000,
                          (err, out[:60], len(body)))
            elif name == "abort":
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n")
                s.sendall(rnd.randbytes(rnd.randrange(0, 200000)))
                s.close()
                stats.add(name, True)
        except (OSError, http.client.HTTPException) as e:
            stats.add(name, False, repr(e))
            if conn is not None:
                conn.close()
                conn = None
        time.sleep(pause)
    if conn is not None:
        conn.close()


# ---- the proxy ----

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


FAULTS_LINE = re.compile(r"coil: faults injected: (.*?) \(calls: (.*)\)")


def parse_runtime_faults(lines):
    """Sums the "coil: faults injected: ..." lines coil-proxy's loops print
    at exit (one per core), kinds and calls alike; None if there is none."""
    total = None
    for line in lines:
        m = FAULTS_LINE.search(line)
        if not m:
            continue
        total = total or {}
        for part in (m.group(1) + ", " + ", ".join("calls_" + c for c in m.group(2).split(", "))).split(", "):
            name, _, n = part.rpartition(" ")
            total[name] = total.get(name, 0) + int(n)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--backend", choices=["io_uring", "epoll"], default=None)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--pause-ms", type=float, default=5)
    ap.add_argument("--faults", metavar="SPEC", default=None,
                    help="fault injection inside coil-proxy (COIL_FAULTS, see docs/reliability.md), "
                         "e.g. send_short=3,recv_short=3,recv_nobufs=50,accept_emfile=20; "
                         "send_reset/recv_reset make client-visible failures, counted as unexpected")
    args = ap.parse_args()

    bin_path = os.path.join(ROOT, args.build_dir, "proxy", "coil-proxy")
    if not os.path.exists(bin_path):
        sys.exit("soak: %s not found (build first, or give --build-dir)" % bin_path)
    up_port = start_upstream()
    px_port = testlib.free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write("[proxy]\ncores = 0\naccess_log = off\nmetrics = off\nmax_body = 0\n\n"
               "[listen]\naddress = 127.0.0.1:%d\n\n"
               "[upstream app]\nserver = 127.0.0.1:%d\nretries = 0\nfail_threshold = 0\n"
               "response_timeout = 10s\n\n[route]\nupstream = app\n" % (px_port, up_port))
    conf.close()
    cmd = [bin_path, "-c", conf.name]
    if args.backend:
        cmd += ["--backend", args.backend]
    env = dict(os.environ, COIL_QUIET="1")
    env.pop("COIL_FAULTS", None)
    if args.faults:
        env["COIL_FAULTS"] = args.faults
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    errlines = []
    errt = threading.Thread(target=lambda: errlines.extend(iter(proc.stderr.readline, "")), daemon=True)
    errt.start()
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", px_port)).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.3)
        fd_base = fd_count(proc.pid)
        stats = Stats()
        t0 = time.time()
        until = t0 + args.seconds
        threads = [threading.Thread(target=client, args=(px_port, stats, until, args.pause_ms / 1000, i))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        samples = []  # (t, rss KiB, fds)
        while time.time() < until:
            samples.append((time.time() - t0, rss_kib(proc.pid), fd_count(proc.pid)))
            time.sleep(min(5, max(0.1, until - time.time())))
        for t in threads:
            t.join()
        samples.append((time.time() - t0, rss_kib(proc.pid), fd_count(proc.pid)))

        # traffic stopped: descriptors back to the baseline plus what the
        # pool rightly keeps (connections the upstream still sees open)
        deadline = time.time() + 10
        while True:
            fd_end, pooled = fd_count(proc.pid), up_live[0]
            if fd_end <= fd_base + pooled or time.time() > deadline:
                break
            time.sleep(0.2)
        rss_end = rss_kib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        errt.join(5)  # the exit lines (fault counts) are read before the summary
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(conf.name)

    q = args.seconds / 4
    early = [s for s in samples if s[0] >= q]
    late = [s for s in samples if s[0] >= 3 * q]
    rss_ref = early[0][1] if early else samples[0][1]
    rss_late = max(s[1] for s in late) if late else rss_end
    rss_max = max(s[1] for s in samples)
    fd_max = max(s[2] for s in samples)
    total = sum(stats.count.values())
    checks = [
        ("no unexpected answer", not stats.unexpected),
        ("descriptors back to baseline + pooled upstream connections", fd_end <= fd_base + pooled),
        ("RSS flat (last quarter within 25%% + 4 MiB of %d KiB)" % rss_ref,
         rss_late <= rss_ref * 1.25 + 4096),
        ("clean exit on SIGTERM", rc == 0),
    ]
    runtime_faults = parse_runtime_faults(errlines)
    if args.faults:
        checks.append(("coil-proxy reported the faults it injected", runtime_faults is not None))
    backend = args.backend or os.environ.get("COIL_BACKEND", "default")
    print("soak: coil-proxy (%s backend), %d s, %d clients, %.0f ms pause"
          % (backend, args.seconds, args.clients, args.pause_ms))
    print("requests: %d (%.0f/s): %s" % (total, total / args.seconds,
                                         ", ".join("%s %d" % kv for kv in sorted(stats.count.items()))))
    print("faults injected: %d upstream resets before the answer (502 each), %d mid-body resets (cut each)"
          % (stats.count.get("reset", 0), stats.count.get("reset_mid", 0)))
    if args.faults:
        print("runtime faults (%s): %s" % (args.faults, "not reported" if runtime_faults is None else
                                           ", ".join("%s %d" % kv for kv in runtime_faults.items())))
    print("unexpected: %d%s" % (len(stats.unexpected), "".join("\n  " + u for u in stats.unexpected[:10])))
    print("descriptors: baseline %d, max %d during the run, %d at the end (%d pooled upstream)"
          % (fd_base, fd_max, fd_end, pooled))
    print("RSS KiB: %d after the first quarter, %d max in the last quarter, %d max overall, %d at the end"
          % (rss_ref, rss_late, rss_max, rss_end))
    print("RSS samples (s: KiB): " + " ".join("%d:%d" % (s[0], s[1]) for s in samples[::max(1, len(samples) // 12)]))
    ok = True
    for name, passed in checks:
        print("%s %s" % ("ok    " if passed else "FAILED", name))
        ok &= passed
    if rc != 0:
        print("".join(errlines[-20:]))
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
