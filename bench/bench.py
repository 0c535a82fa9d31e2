#!/usr/bin/env python3
"""coil benchmarks: the one command.

    bench/bench.py [--build-dir build] [--rounds 3] [--duration 10]
                   [--cases hello,pipeline,proxy,big,idle] [--idle-conns 10000]
                   [--no-big] [--smoke] [--out DIR]

The machine has two CPUs. The server under test runs on CPU 0 (taskset -c 0;
http_hello --cores 1 = one worker on CPU 0; coil-proxy --cores 0), the load
generator on CPU 1 (taskset -c 1). In the proxy cases the upstream also runs
on CPU 1, next to wrk, so that CPU 0 carries the proxy and nothing else.

Contenders are interleaved run by run: round r runs every contender once, in
an order rotated by r, so a slow drift of the machine (thermal, noisy
neighbour) spreads over all of them instead of landing on one.

Per case and contender: requests/s, latency p50/p99 (wrk --latency), server
CPU microseconds per request (utime+stime of the server's process tree from
/proc, all threads), syscalls per request (a separate short run under
`perf stat -e raw_syscalls:sys_enter`, every round), peak RSS (VmHWM) and, in the idle
case, RSS per idle keep-alive connection. Each is given absolute and as a
ratio to nginx, with the spread (min..max over rounds).

Without --smoke the results go to docs/benchmarks.md (between the
<!-- results --> markers) and docs/benchmarks.png. With --smoke: one round of
2 s, the hello/pipeline/proxy/idle cases with few connections, peers only if
installed, output in a temp dir, docs/ untouched; exits 0 if every coil
contender answered. Timings are never asserted.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "bench", "conf")
TICK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30

SERVER_CPU = "0"
CLIENT_CPU = "1"

# Ports: fixed, far from the ones the tests use.
PORT = 18480
UPSTREAM_PORT = 18481
BIG_UPSTREAM_PORT = 18482

PIPELINE_LUA = """
-- 16 requests per write: wrk counts every response, so requests/s is per
-- request; latency is per batch of 16.
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tree_pids(pid):
    """pid and all its descendants (nginx master + worker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_split(pid):
    """(utime+stime, stime) of the process tree, read once;
    /proc/PID/stat covers all threads."""
    total = kernel = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            kernel += int(fields[12])
        except OSError:
            pass
    return total, kernel


def cpu_ticks(pid):
    """utime+stime of the process tree."""
    return cpu_split(pid)[0]


def status_kb(pid, key):
    """Sum of a /proc/PID/status field (VmRSS, VmHWM) over the tree, in kB.
    Shared pages (nginx master and worker) are counted twice: a small
    overstatement against nginx, noted in the doc."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_port(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    """A process started pinned to a CPU, stopped with SIGTERM then SIGKILL."""

    def __init__(self, argv, cpu, port, env=None, logpath=None):
        self.argv, self.port = argv, port
        # coil listens with SO_REUSEPORT: a stale server on the same port would
        # silently take half the connections, so a busy port is an error.
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            raise RuntimeError(f"port {port} is already in use")
        except OSError:
            pass
        e = dict(os.environ)
        e.update(env or {})
        self.logf = open(logpath or os.devnull, "ab")
        self.proc = subprocess.Popen(["taskset", "-c", cpu] + argv, env=e,
                                     stdout=self.logf, stderr=self.logf,
                                     preexec_fn=raise_nofile, start_new_session=True)
        if not wait_port(port, self.proc):
            self.stop()
            raise RuntimeError(f"{argv[0]} did not listen on {port} (log: {logpath})")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()


# ---------------------------------------------------------------- contenders

def fill(template, out, **kv):
    with open(os.path.join(CONF, template)) as f:
        text = f.read()
    for k, v in kv.items():
        text = text.replace("@" + k + "@", str(v))
    with open(out, "w") as f:
        f.write(text)
    return out


class Env:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        b = args.build_dir
        self.hello = os.path.join(b, "docs", "examples", "http_hello")
        self.proxy = os.path.join(b, "proxy", "coil-proxy")
        self.responder = os.path.join(b, "bench", "bench_responder")
        self.responder_uring = os.path.join(b, "bench", "bench_responder_uring")
        self.relay_uring = os.path.join(b, "bench", "bench_relay_uring")
        self.nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        self.haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
        self.n = 0

    def rundir(self):
        self.n += 1
        d = os.path.join(self.tmp, f"run{self.n}")
        os.makedirs(d)
        return d

    # Each starter returns a Server listening on PORT, pinned to CPU 0.
    def start_hello(self, name):
        d = self.rundir()
        if name in ("coil-io_uring", "coil-epoll"):
            backend = name.split("-", 1)[1]
            return Server([self.hello, "--port", str(PORT), "--host", "127.0.0.1", "--cores", "1"],
                          SERVER_CPU, PORT, env={"COIL_BACKEND": backend}, logpath=f"{d}/log")
        if name == "nginx":
            conf = fill("nginx.conf.in", f"{d}/nginx.conf", DIR=d, PORT=PORT,
                        UPSTREAM="127.0.0.1:1", HANDLER='return 200 "Hello, World!";')
            return Server([self.nginx, "-p", d, "-e", f"{d}/error.log", "-c", conf],
                          SERVER_CPU, PORT, logpath=f"{d}/log")
        if name == "responder":
            return Server([self.responder, "--port", str(PORT)], SERVER_CPU, PORT, logpath=f"{d}/log")
        if name == "responder-io_uring":
            return Server([self.responder_uring, "--port", str(PORT)], SERVER_CPU, PORT, logpath=f"{d}/log")
        raise ValueError(name)

    def start_proxy(self, name, upstream_port):
        d = self.rundir()
        up = f"127.0.0.1:{upstream_port}"
        if name in ("coil-io_uring", "coil-epoll"):
            backend = name.split("-", 1)[1]
            conf = f"{d}/coil-proxy.conf"
            with open(conf, "w") as f:
                f.write(f"""[proxy]
cores = {SERVER_CPU}
keepalive_timeout = 600s
send_timeout = 600s

[listen]
address = 127.0.0.1:{PORT}

[upstream up]
server = {up}
keepalive = 64
response_timeout = 600s
idle_timeout = 600s

[route]
upstream = up
""")
            return Server([self.proxy, "-c", conf, "--backend", backend],
                          SERVER_CPU, PORT, logpath=f"{d}/log")
        if name == "nginx":
            conf = fill("nginx.conf.in", f"{d}/nginx.conf", DIR=d, PORT=PORT, UPSTREAM=up,
                        HANDLER="proxy_pass http://up;")
            return Server([self.nginx, "-p", d, "-e", f"{d}/error.log", "-c", conf],
                          SERVER_CPU, PORT, logpath=f"{d}/log")
        if name == "haproxy":
            conf = fill("haproxy.cfg.in", f"{d}/haproxy.cfg", PORT=PORT, UPSTREAM=up)
            return Server([self.haproxy, "-db", "-f", conf], SERVER_CPU, PORT, logpath=f"{d}/log")
        if name == "relay-io_uring":
            return Server([self.relay_uring, "--port", str(PORT), "--upstream", up], SERVER_CPU, PORT,
                          logpath=f"{d}/log")
        raise ValueError(name)

    def available(self, name):
        return {"nginx": self.nginx, "haproxy": self.haproxy}.get(name, True) is not None


# ---------------------------------------------------------------- measuring

def parse_dur(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)", s)
    v = float(m.group(1))
    return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def run_wrk(conns, duration, script=None, extra=()):
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
    if script:
        argv += ["-s", script]
    argv += list(extra) + [f"http://127.0.0.1:{PORT}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    res = {}
    m = re.search(r"^\s*(\d+) requests in", out, re.M)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for q in ("50", "99"):
        m = re.search(rf"^\s*{q}(?:\.000)?%\s+(\S+)", out, re.M)
        # wrk prints 0.00us for a percentile beyond its histogram (seen with
        # pipelining): no value rather than a false zero.
        v = parse_dur(m.group(1)) if m else 0.0
        res[f"p{q}"] = v if v > 0 else None
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    res["bad"] = int(bad.group(1)) if bad else 0
    res["errors"] = errs.group(0) if errs else ""
    res["raw"] = out
    return res


def count_syscalls(pid, seconds, load):
    """Syscalls made by the server tree during a short extra run of `load`."""
    if not shutil.which("perf"):
        return None
    pids = ",".join(str(p) for p in tree_pids(pid))
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", pids],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    r = load(seconds)
    perf.send_signal(signal.SIGINT)
    err = perf.communicate(timeout=10)[1]
    m = re.search(r"^(\d+),", err, re.M)
    if not m or not r.get("requests"):
        return None
    return int(m.group(1)) / r["requests"]


def idle_client(n, port, hold_file):
    """Runs in a child: opens n keep-alive connections, one request each,
    reads each answer, then holds them until hold_file disappears."""
    raise_nofile()
    socks = []
    req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(req)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"!"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("server closed an idle connection")
            data += chunk
        socks.append(s)
    with open(hold_file + ".ready", "w") as f:
        f.write(str(len(socks)))
    while os.path.exists(hold_file):
        time.sleep(0.05)


# ---------------------------------------------------------------- cases

class Case:
    """base: the contender every other one is given as a ratio to. pairs:
    (contender, reference) whose CPU per request is also given as a paired
    ratio under the table (the targets compare them directly)."""
    def __init__(self, key, title, contenders, kind, base="nginx", pairs=()):
        self.key, self.title, self.contenders, self.kind = key, title, contenders, kind
        self.base, self.pairs = base, pairs


def measure_wrk_case(env, case, name, rnd, args, tmp):
    if case.kind == "proxy":
        srv = env.start_proxy(name, UPSTREAM_PORT)
    else:
        srv = env.start_hello(name)
    try:
        script = None
        if case.key == "pipeline":
            script = os.path.join(tmp, "pipeline.lua")
            with open(script, "w") as f:
                f.write(PIPELINE_LUA)

        def load(sec):
            return run_wrk(args.conns, sec, script)

        load(1)  # warm up: connections, pools, page faults out of the numbers
        t0, k0 = cpu_split(srv.pid)
        r = load(args.duration)
        t1, k1 = cpu_split(srv.pid)
        res = {"rps": r["rps"], "p50": r["p50"], "p99": r["p99"]}
        ok = r["requests"] > 0 and r["bad"] == 0
        if not ok:
            log(f"  {name}: no valid answers: {r['raw'].strip()[-300:]}")
        res["cpu_us"] = (t1 - t0) * 1e6 / TICK / r["requests"] if r["requests"] else None
        res["sys_us"] = (k1 - k0) * 1e6 / TICK / r["requests"] if r["requests"] else None
        # Every round, so that the count gets a spread like the rest: one
        # short run under tracepoints moved by up to 4x between runs.
        if not args.no_syscalls:
            res["syscalls"] = count_syscalls(srv.pid, min(2, args.duration), load)
        res["hwm_kb"] = status_kb(srv.pid, "VmHWM")
        return ok, res
    finally:
        srv.stop()


def measure_idle(env, case, name, rnd, args, tmp):
    srv = env.start_hello(name)
    hold = os.path.join(tmp, f"hold-{name}-{rnd}")
    open(hold, "w").close()
    cli = None
    try:
        time.sleep(0.2)
        before = status_kb(srv.pid, "VmRSS")
        cli = subprocess.Popen(["taskset", "-c", CLIENT_CPU, sys.executable, os.path.abspath(__file__),
                                "--idle-client", str(args.idle_conns), str(PORT), hold])
        end = time.time() + 120
        while not os.path.exists(hold + ".ready") and time.time() < end and cli.poll() is None:
            time.sleep(0.1)
        if not os.path.exists(hold + ".ready"):
            log(f"  {name}: idle client failed")
            return False, {}
        time.sleep(0.5)
        after = status_kb(srv.pid, "VmRSS")
        res = {"rss_per_conn": (after - before) * 1024 / args.idle_conns,
               "hwm_kb": status_kb(srv.pid, "VmHWM")}
        return True, res
    finally:
        if os.path.exists(hold):
            os.unlink(hold)
        if cli:
            try:
                cli.wait(10)
            except subprocess.TimeoutExpired:
                cli.kill()
        srv.stop()


def measure_big(env, case, name, rnd, args, tmp):
    """1 GiB download (responder upstream) and 1 GiB upload echoed back
    (http_hello POST /echo upstream), hyperfine over curl. curl -T streams
    the file (--data-binary would load all of it into memory first)."""
    upfile = os.path.join(tmp, "upload.bin")
    if not os.path.exists(upfile):
        with open(upfile, "wb") as f:
            f.truncate(GIB)  # sparse: reading it costs no disk
        # The first read of even a sparse file fills the page cache with a
        # GiB of zeroed pages on CPU 1, next to curl: read it once now, or
        # the first contender of round 1 pays for that (5.8 s instead of 2.5).
        chunk = bytearray(1 << 20)
        with open(upfile, "rb") as f:
            while f.readinto(chunk):
                pass
    res = {}
    for sub, upstream_argv, curl in (
        ("down", [env.responder, "--port", str(BIG_UPSTREAM_PORT), "--body", str(GIB)],
         f"curl -fsS -m 60 -o /dev/null http://127.0.0.1:{PORT}/"),
        ("echo", [env.hello, "--port", str(BIG_UPSTREAM_PORT), "--host", "127.0.0.1"],
         f"curl -fsS -m 60 -o /dev/null -H 'Expect:' -X POST -T {upfile} http://127.0.0.1:{PORT}/echo"),
    ):
        if sub == "echo" and name == "nginx":
            # nginx stops reading the upstream's response while the request
            # body is still going up, so an echo stalls until the upstream
            # gives up on its send (30 s) and curl gets a truncated body.
            continue
        # The upstream is pinned with the client. http_hello without --cores
        # runs one worker per CPU of its affinity mask, so under taskset -c 1
        # that is one worker on CPU 1 (--cores 1 would pin it to CPU 0, on
        # top of the proxy).
        upstream = Server(upstream_argv, CLIENT_CPU, BIG_UPSTREAM_PORT, env={"COIL_BACKEND": "epoll"},
                          logpath=os.path.join(tmp, "big-upstream.log"))
        srv = None
        try:
            srv = env.start_proxy(name, BIG_UPSTREAM_PORT)
            js = os.path.join(tmp, f"hf-{name}-{sub}-{rnd}.json")
            t0 = cpu_ticks(srv.pid)
            p = subprocess.run(["taskset", "-c", CLIENT_CPU, "hyperfine", "-N", "--warmup", "0",
                                "--runs", str(args.big_runs), "--export-json", js, curl],
                               capture_output=True, text=True, timeout=900)
            t1 = cpu_ticks(srv.pid)
            if p.returncode != 0:
                log(f"  {name} {sub}: hyperfine failed: {p.stderr.strip()[-300:]}")
                continue
            with open(js) as f:
                mean = json.load(f)["results"][0]["mean"]
            res[f"{sub}_s"] = mean
            res[f"{sub}_cpu_ms"] = (t1 - t0) * 1e3 / TICK / args.big_runs
            res[f"{sub}_hwm_kb"] = status_kb(srv.pid, "VmHWM")
        finally:
            if srv:
                srv.stop()
            upstream.stop()
    # A transfer that failed shows as "–"; the other one still counts.
    return bool(res), res


# ---------------------------------------------------------------- report

METRICS = {
    # key: (label, format, higher is better)
    "rps": ("req/s", "{:,.0f}", True),
    "p50": ("p50 ms", "{:.3f}", False),
    "p99": ("p99 ms", "{:.3f}", False),
    "cpu_us": ("CPU µs/req", "{:.2f}", False),
    "sys_us": ("of it kernel µs", "{:.2f}", False),
    "syscalls": ("syscalls/req", "{:.2f}", False),
    "hwm_kb": ("peak RSS MiB", None, False),
    "rss_per_conn": ("RSS B/idle conn", "{:,.0f}", False),
    "down_s": ("1 GiB down s", "{:.2f}", False),
    "down_cpu_ms": ("down CPU ms", "{:.0f}", False),
    "echo_s": ("1 GiB up+echo s", "{:.2f}", False),
    "echo_cpu_ms": ("up+echo CPU ms", "{:.0f}", False),
    "down_hwm_kb": ("down peak RSS MiB", None, False),
    "echo_hwm_kb": ("up+echo peak RSS MiB", None, False),
}


def fmt(key, v):
    if v is None:
        return "–"
    if key.endswith("hwm_kb"):
        return f"{v / 1024:.1f}"
    return METRICS[key][1].format(v)


def summarize(samples):
    """samples: list of dicts (one per round) -> key -> (median, min, max)."""
    out = {}
    keys = {k for s in samples for k in s if k != "round"}
    for k in keys:
        vals = [s[k] for s in samples if s.get(k) is not None]
        if vals:
            out[k] = (statistics.median(vals), min(vals), max(vals))
    return out


def round_ratios(samples, base_samples, figure):
    """Sorted per-round ratios figure(sample) / figure(base sample) over the
    rounds both ran: each round runs the contenders back to back, so a ratio
    within a round cancels most of what the shared machine was doing at the
    time. figure reads a sample (None: not measured)."""
    base = {}
    for s in base_samples:
        v = figure(s)
        if v:
            base[s["round"]] = v
    out = []
    for s in samples:
        v = figure(s)
        if v is not None and s["round"] in base:
            out.append(v / base[s["round"]])
    return sorted(out)


def paired_ratio(samples, base_samples, key):
    """Median of round_ratios() for key; None without a common round."""
    ratios = round_ratios(samples, base_samples, lambda s: s.get(key))
    return statistics.median(ratios) if ratios else None


def pair_lines(case, results):
    """One line per (contender, reference) pair: CPU per request as the
    median of same-round ratios, with their range."""
    out = []
    for a, b in case.pairs:
        ratios = paired_ratios(results, case.key, a, b, lambda s: s.get("cpu_us"))
        if ratios:
            out.append(f"- CPU µs/req, {a} to {b} in the same round: **×{statistics.median(ratios):.2f}** "
                       f"({ratios[0]:.2f}..{ratios[-1]:.2f})")
    return out


def table(cases, results):
    lines = []
    for case in cases:
        per = {n: summarize(results[case.key][n]) for n in case.contenders if results[case.key].get(n)}
        if not per:
            continue
        keys = [k for k in METRICS if any(k in s for s in per.values())]
        lines.append(f"### {case.title}\n")
        lines.append("| contender | " + " | ".join(METRICS[k][0] for k in keys) + " |")
        lines.append("| --- |" + " --- |" * len(keys))
        for n in case.contenders:
            if n not in per:
                continue
            cells = []
            for k in keys:
                if k not in per[n]:
                    cells.append("–")
                    continue
                med, lo, hi = per[n][k]
                cell = fmt(k, med)
                if hi != lo:
                    cell += f" ({fmt(k, lo)}..{fmt(k, hi)})"
                ratio = paired_ratio(results[case.key][n], results[case.key].get(case.base, []), k)
                if ratio is not None and n != case.base:
                    cell += f" **×{ratio:.2f}**"
                cells.append(cell)
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        extra = pair_lines(case, results)
        if extra:
            lines.append("")
            lines.extend(extra)
        lines.append("")
    return "\n".join(lines)


class Target:
    """One performance target: `contender`'s figure over `reference`'s, paired
    by round, must be at most `bound`. `floor` names the pair that shows the
    best any server could do on the day: the bare loops, which parse nothing,
    measured the same way. `figure` reads a sample (None: not measured)."""
    def __init__(self, text, case, contender, reference, bound, floor=None, figure=None, key="cpu_us"):
        self.text, self.case, self.contender, self.reference = text, case, contender, reference
        self.bound, self.floor = bound, floor
        self.figure = figure or (lambda s: s.get(key))


def peak_rss(s):
    """The larger peak of a 1 GiB run's two transfers (nginx only downloads)."""
    peaks = [s[k] for k in ("down_hwm_kb", "echo_hwm_kb") if s.get(k) is not None]
    return max(peaks) if peaks else None


TARGETS = [
    Target("hello: CPU/request ≤ ×0.7 nginx", "hello", "coil-io_uring", "nginx", 0.7,
           floor=("responder-io_uring", "nginx")),
    Target("hello: io_uring ≤ ×0.8 epoll", "hello", "coil-io_uring", "coil-epoll", 0.8,
           floor=("responder-io_uring", "responder")),
    Target("pipelined: CPU/request ≤ 1/8 nginx", "pipeline", "coil-io_uring", "nginx", 1 / 8,
           floor=("responder-io_uring", "nginx")),
    Target("proxy small GET: CPU/request ≤ ×0.65 haproxy", "proxy", "coil-io_uring", "haproxy", 0.65,
           floor=("relay-io_uring", "haproxy")),
    Target("1 GiB upload (echoed) through the proxy: time ≤ haproxy", "big", "coil-io_uring", "haproxy", 1.0,
           key="echo_s"),
    Target("1 GiB through the proxy: peak RSS ≤ nginx", "big", "coil-io_uring", "nginx", 1.0, figure=peak_rss),
    Target("idle keep-alive connection: RSS ≤ nginx", "idle", "coil-io_uring", "nginx", 1.0, key="rss_per_conn"),
]


def paired_ratios(results, case, a, b, figure):
    """round_ratios() of contender a to contender b in case."""
    per = results.get(case, {})
    return round_ratios(per.get(a, []), per.get(b, []), figure)


def ratio_cell(ratios):
    if not ratios:
        return "–"
    cell = f"×{statistics.median(ratios):.2f}"
    if len(ratios) > 1:
        cell += f" ({ratios[0]:.2f}..{ratios[-1]:.2f})"
    return cell


def targets_table(cases, results):
    """Each target of the cases run, read from this run alone: the paired
    ratio (median over rounds, range), the floor's ratio beside it, and
    whether the median is within the bound. It reports; it asserts nothing."""
    run = {c.key for c in cases}
    lines = []
    for t in TARGETS:
        if t.case not in run:
            continue
        ratios = paired_ratios(results, t.case, t.contender, t.reference, t.figure)
        floor = "–"
        if t.floor:
            floor_ratios = paired_ratios(results, t.case, t.floor[0], t.floor[1], t.figure)
            if floor_ratios:
                floor = f"{t.floor[0]} to {t.floor[1]} {ratio_cell(floor_ratios)}"
        verdict = "–" if not ratios else ("met" if statistics.median(ratios) <= t.bound else "not met")
        lines.append(f"| {t.text} | {t.contender} to {t.reference} **{ratio_cell(ratios)}** | {floor} | {verdict} |")
    if not lines:
        return ""
    head = ["### Targets in this run", "",
            "Paired by round like the ratios above: median (min..max). The floor is the same ratio "
            "for the bare loops and the relay, which parse nothing.", "",
            "| target | measured | floor | |", "| --- | --- | --- | --- |"]
    return "\n".join(head + lines) + "\n"


def chart(cases, results, png, tmp):
    """Grouped bars: CPU µs per request, one group per case."""
    if not shutil.which("gnuplot"):
        log("gnuplot missing: no chart")
        return False
    names = [n for n in ("coil-io_uring", "coil-epoll", "nginx", "haproxy", "responder", "responder-io_uring",
                         "relay-io_uring")
             if any(results[c.key].get(n) for c in cases if c.kind not in ("idle", "big"))]
    rows = []
    for case in cases:
        if case.kind == "idle" or case.kind == "big":
            continue
        row = [case.key]
        for n in names:
            s = summarize(results[case.key].get(n, []))
            row.append(f"{s['cpu_us'][0]:.3f}" if "cpu_us" in s else "NaN")
        rows.append(" ".join(row))
    if not rows:
        return False
    dat = os.path.join(tmp, "chart.dat")
    with open(dat, "w") as f:
        f.write("case " + " ".join(names) + "\n" + "\n".join(rows) + "\n")
    gp = f"""
set terminal pngcairo size 900,480 font ",10" noenhanced
set output "{png}"
set title "Server CPU per request (µs, lower is better; server pinned to one core)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key top left
set ylabel "CPU µs / request"
set yrange [0:*]
set grid ytics
plot for [i=2:{len(names) + 1}] "{dat}" using i:xtic(1) title columnheader(i)
"""
    p = subprocess.run(["gnuplot"], input=gp, capture_output=True, text=True)
    if p.returncode != 0:
        log("gnuplot failed:", p.stderr.strip())
        return False
    return True


def write_doc(md_table, meta):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as f:
        text = f.read()
    start, end = "<!-- results -->", "<!-- /results -->"
    i, j = text.index(start) + len(start), text.index(end)
    body = f"\n{meta}\n\n![CPU µs per request](benchmarks.png)\n\n{md_table}\n"
    with open(path, "w") as f:
        f.write(text[:i] + body + text[j:])


# ---------------------------------------------------------------- main

def ensure_peers(smoke):
    """Installs nginx, haproxy and gnuplot from Debian when missing (not in
    smoke mode: there missing peers are just skipped)."""
    missing = [pkg for tool, pkg in (("nginx", "nginx-light"), ("haproxy", "haproxy"),
                                     ("gnuplot", "gnuplot-nox"), ("perf", "linux-perf"))
               if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}")]
    if smoke or not missing:
        return
    log("installing:", " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--idle-client":
        idle_client(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--big-runs", type=int, default=2, help="hyperfine runs per 1 GiB transfer")
    ap.add_argument("--cases", default="hello,pipeline,proxy,big,idle")
    ap.add_argument("--no-big", action="store_true", help="skip the 1 GiB case")
    ap.add_argument("--no-syscalls", action="store_true")
    ap.add_argument("--no-build", action="store_true",
                    help="use the binaries as they are (ctest: the build is done, and a build "
                         "while other tests run their binaries is not wanted)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", help="write the table and chart here instead of docs/")
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)

    if os.cpu_count() < 2:
        log("bench: needs 2 CPUs (server on 0, load on 1)")
        return 77 if args.smoke else 1
    for tool in ("wrk", "taskset") + (() if args.no_big else ("hyperfine", "curl")):
        if not shutil.which(tool):
            log(f"bench: {tool} missing (tools/setup.sh installs it)")
            return 77 if args.smoke else 1

    if args.smoke:
        args.rounds, args.duration, args.conns = 1, 2, 16
        args.idle_conns = min(args.idle_conns, 200)
        args.no_big = True
        args.no_syscalls = True
    ensure_peers(args.smoke)

    if not args.no_build:
        p = subprocess.run(["cmake", "--build", args.build_dir, "-j2"], capture_output=True, text=True)
        if p.returncode != 0:
            log(p.stdout[-2000:], p.stderr[-2000:])
            log("bench: build failed")
            return 1

    # Another bench run (a real one, or bench_smoke in a second build's
    # ctest) holds the fixed ports: its numbers would be spoiled and ours
    # meaningless. Smoke mode skips; a real run stops.
    for port in (PORT, UPSTREAM_PORT, BIG_UPSTREAM_PORT):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            continue
        log(f"bench: port {port} is in use (another bench running?)")
        return 77 if args.smoke else 1

    tmp = tempfile.mkdtemp(prefix="coil-bench-")
    env = Env(args, tmp)
    missing = [b for b in (env.hello, env.proxy, env.responder, env.responder_uring, env.relay_uring)
               if not os.access(b, os.X_OK)]
    if missing:
        log("bench: not built: " + ", ".join(missing))
        shutil.rmtree(tmp, ignore_errors=True)
        return 77 if args.smoke else 1
    raise_nofile()

    all_cases = [
        Case("hello", f"hello, keep-alive, {args.conns} connections",
             ["coil-io_uring", "coil-epoll", "nginx", "responder", "responder-io_uring"], "hello",
             pairs=[("coil-io_uring", "coil-epoll"), ("coil-io_uring", "responder-io_uring"),
                    ("responder-io_uring", "responder")]),
        Case("pipeline", f"hello, {args.conns} connections, pipelined 16 deep",
             ["coil-io_uring", "coil-epoll", "nginx", "responder", "responder-io_uring"], "hello"),
        Case("proxy", f"small GET through the proxy, {args.conns} connections (upstream: bench_responder on CPU 1)",
             ["coil-io_uring", "coil-epoll", "nginx", "haproxy", "relay-io_uring"], "proxy",
             pairs=[("coil-io_uring", "haproxy"), ("coil-epoll", "haproxy"),
                    ("coil-io_uring", "relay-io_uring"), ("relay-io_uring", "haproxy")]),
        Case("big", "1 GiB through the proxy, hyperfine over curl (upstream on CPU 1; ×N to haproxy, nginx cannot echo)",
             ["coil-io_uring", "coil-epoll", "nginx", "haproxy"], "big", base="haproxy"),
        Case("idle", f"{args.idle_conns} idle keep-alive connections",
             ["coil-io_uring", "coil-epoll", "nginx", "responder", "responder-io_uring"], "idle"),
    ]
    wanted = args.cases.split(",")
    cases = [c for c in all_cases if c.key in wanted and not (c.key == "big" and args.no_big)]
    for c in cases:
        c.contenders = [n for n in c.contenders if env.available(n)]

    results = {c.key: {} for c in cases}
    passed = failed = 0
    coil_failed = False
    upstream = None
    try:
        if any(c.kind == "proxy" for c in cases):
            # A failure here (the port taken meanwhile) ends the run through
            # the finally below, which still stops what was started.
            upstream = Server([env.responder, "--port", str(UPSTREAM_PORT)], CLIENT_CPU, UPSTREAM_PORT,
                              logpath=os.path.join(tmp, "upstream.log"))
        for rnd in range(args.rounds):
            for case in cases:
                k = rnd % len(case.contenders)
                order = case.contenders[k:] + case.contenders[:k]
                for name in order:
                    log(f"round {rnd + 1}/{args.rounds} {case.key}: {name}")
                    fn = {"idle": measure_idle, "big": measure_big}.get(case.kind, measure_wrk_case)
                    try:
                        ok, res = fn(env, case, name, rnd, args, tmp)
                    except Exception as e:  # one broken contender must not end the run
                        log(f"  {name}: {e}")
                        ok, res = False, {}
                    if ok:
                        passed += 1
                        res["round"] = rnd
                        results[case.key].setdefault(name, []).append(res)
                        log("  " + ", ".join(f"{k}={fmt(k, v)}" for k, v in res.items() if k in METRICS))
                    else:
                        failed += 1
                        if name.startswith("coil"):
                            coil_failed = True
    finally:
        if upstream:
            upstream.stop()

    md = table(cases, results) + "\n" + targets_table(cases, results)
    meta = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs "
            f"({platform_line()}): {args.rounds} rounds, {args.duration} s wrk runs, "
            f"median (min..max over rounds), **×N** = median over rounds of the ratio to nginx (haproxy in the 1 GiB case) in the same round.")
    out = args.out or (tmp if args.smoke else None)
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "benchmarks.md"), "w") as f:
            f.write(meta + "\n\n" + md)
        chart(cases, results, os.path.join(out, "benchmarks.png"), tmp)
        if args.out:
            log(f"results in {out}")
    else:
        chart(cases, results, os.path.join(ROOT, "docs", "benchmarks.png"), tmp)
        write_doc(md, meta)
        log("results in docs/benchmarks.md and docs/benchmarks.png")
    print(md)
    print(f"{passed} passed, {failed} failed")
    # Smoke mode wrote its table and chart into tmp only to exercise that
    # path; the table is on stdout, so nothing is left behind.
    if not args.out:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.smoke:
        return 1 if coil_failed else 0
    return 1 if failed else 0


def platform_line():
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except Exception:
        model = "unknown CPU"
    return f"{model}, Linux {os.uname().release}"


if __name__ == "__main__":
    sys.exit(main())
