#!/usr/bin/env python3
"""Worst latency of normal clients while 1000 slowloris and 200 slow-POST
connections are held against coil-proxy (issue #6: target under 100 ms).

usage: bench/slow_latency.py BUILD_DIR BACKEND

coil-proxy runs pinned to CPU 0 in front of bench_responder; wrk (16
connections, 8 s) on CPU 1 measures the normal clients while the offenders,
opened first from this one process, trickle a byte before and after. A
measurement, not a test: nothing is asserted. Prints wrk's latency lines and
how many offenders the proxy still holds (slowloris heads stay within
header_timeout = 10 s; slow POSTs fall under body_min_rate)."""
import os, resource, socket, subprocess, sys, tempfile, time
B, backend = sys.argv[1], sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
up = subprocess.Popen(["taskset", "-c", "1", B + "/bench/bench_responder", "--port", "18802"], stderr=subprocess.DEVNULL)
conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
conf.write("[proxy]\ncores = 0\nheader_timeout = 10s\nbody_timeout = 10s\nbody_min_rate = 10\n"
           "[listen]\naddress = 127.0.0.1:18801\n[upstream a]\nserver = 127.0.0.1:18802\n[route]\nupstream = a\n")
conf.close()
px = subprocess.Popen(["taskset", "-c", "0", B + "/proxy/coil-proxy", "-c", conf.name],
                      env=dict(os.environ, COIL_BACKEND=backend, COIL_QUIET="1"), stderr=subprocess.DEVNULL)
time.sleep(0.5)
slow = []
for i in range(1200):
    s = socket.create_connection(("127.0.0.1", 18801))
    s.setblocking(False)
    if i < 1000:
        s.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
    else:
        s.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nx")
    slow.append(s)
def trickle():
    for s in slow:
        try:
            s.send(b"X-a: b\r\n" if slow.index(s) < 1000 else b"y")
        except OSError:
            pass
trickle()
out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d8", "--latency", "http://127.0.0.1:18801/"],
                     capture_output=True, text=True).stdout
trickle()
held = 0
for s in slow:
    try:
        s.recv(100)  # an answer (408) or the end: the proxy let it go
    except BlockingIOError:
        held += 1    # nothing yet: still held
    except OSError:
        pass
    s.close()
print(backend, "offenders still held after the run: %d of 1200" % held)
for line in out.splitlines():
    if "Latency" in line or "99%" in line or "Requests/sec" in line or "Non-2xx" in line or "requests in" in line:
        print(" ", line.strip())
px.terminate(); px.wait(); up.terminate(); up.wait(); os.unlink(conf.name)
