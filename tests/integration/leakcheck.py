"""Leak checks for the integration tests: descriptors and a clean exit.

    import leakcheck
    base = leakcheck.fd_baseline(proc.pid)          # once the server is up
    ...                                             # the test's traffic
    ok, detail = leakcheck.fds_back(proc.pid, base) # every socket closed again?
    check("no descriptor left behind", ok, detail)
    ...
    ok, detail = leakcheck.stop(proc)               # SIGTERM, exit 0, no leak report
    check("graceful stop on SIGTERM, no leak", ok, detail)

Closes are asynchronous (a connection is closed by its own task after the
peer has gone; io_uring closes complete later still), so fds_back() retries
for a while before it fails.

Under the sanitizer build (COIL_ASAN=1 in the environment, set by
tests/integration/CMakeLists.txt) LeakSanitizer runs when the process exits:
a leak makes the exit code non-zero and prints "LeakSanitizer" on stderr, and
stop() fails on either. asan() says whether leak detection is on, so a test
can say what it checked."""

import os
import signal
import subprocess
import threading
import time


def asan():
    """True when the programs under test are built with ASan."""
    return os.environ.get("COIL_ASAN") == "1"


def leak_detection():
    """True when LeakSanitizer checks the programs at exit (ASan build and
    not switched off through ASAN_OPTIONS, as tools/test.sh does where
    LeakSanitizer cannot run)."""
    return asan() and "detect_leaks=0" not in os.environ.get("ASAN_OPTIONS", "")


def fd_count(pid):
    """Open descriptors of process pid."""
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_baseline(pid, settle=0.2):
    """The descriptor count to come back to; taken once the count has held
    still for settle seconds (start-up may still be opening things)."""
    last = fd_count(pid)
    deadline = time.time() + 5
    while time.time() < deadline:
        time.sleep(settle)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


def fds_back(pid, baseline, timeout=10.0, allowance=None):
    """Waits up to timeout seconds for pid's descriptor count to come back
    to baseline or below. allowance: a function returning how many more
    descriptors are rightly open at the moment (say, pooled upstream
    connections the upstream still sees). Returns (ok, detail)."""
    deadline = time.time() + timeout
    while True:
        now = fd_count(pid)
        extra = allowance() if allowance else 0
        if now <= baseline + extra:
            return True, "%d descriptors (baseline %d + %d allowed)" % (now, baseline, extra)
        if time.time() >= deadline:
            return False, "%d descriptors after %.0f s, baseline %d + %d allowed: %s" % (
                now, timeout, baseline, extra, _fd_kinds(pid))
        time.sleep(0.1)


def _fd_kinds(pid):
    """What the open descriptors are, counted by kind (socket, pipe, ...)."""
    kinds = {}
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            kind = target.split(":")[0] if ":" in target else "file"
            kinds[kind] = kinds.get(kind, 0) + 1
    except OSError:
        pass
    return ", ".join("%s %d" % kv for kv in sorted(kinds.items()))


class StderrTail:
    """Collects a process's stderr (text mode pipe) in a thread, so the pipe
    never fills, keeping every line for later checks."""

    def __init__(self, proc):
        self.lines = []
        self._t = threading.Thread(target=self._run, args=(proc.stderr,), daemon=True)
        self._t.start()

    def _run(self, f):
        for line in iter(f.readline, ""):
            self.lines.append(line)

    def join(self, timeout=5):
        self._t.join(timeout)

    def text(self):
        return "".join(self.lines)


def stop(proc, timeout=30, stderr=None):
    """Stops proc with SIGTERM and checks it exits cleanly: exit code 0 and
    no LeakSanitizer report. stderr: a StderrTail already reading the
    process's stderr, or None to read what is left of proc.stderr (if it is
    a pipe) here. Returns (ok, detail)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    err = ""
    try:
        if stderr is None and proc.stderr is not None:
            _, err = proc.communicate(timeout=timeout)
        else:
            proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False, "still running %d s after SIGTERM (killed)" % timeout
    if stderr is not None:
        stderr.join()
        err = stderr.text()
    if isinstance(err, bytes):
        err = err.decode("utf-8", "replace")
    err = err or ""
    rc = proc.returncode
    if "LeakSanitizer" in err:
        at = err.find("LeakSanitizer")
        return False, "exit %s, LeakSanitizer report: %s" % (rc, err[at:at + 1500])
    if rc != 0:
        return False, "exit %s: %s" % (rc, err[-800:])
    what = "leak check by LeakSanitizer" if leak_detection() else "no leak check (not an ASan build)"
    if asan() and not leak_detection():
        what = "no leak check (LeakSanitizer off in ASAN_OPTIONS)"
    return True, "exit 0, %s" % what
