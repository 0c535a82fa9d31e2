"""What the integration tests share: ports, a threaded upstream, waiting for
a program to listen."""

import socket
import threading
import time


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve_threaded(handle, backlog=256):
    """Listens on 127.0.0.1 (an ephemeral port) and runs handle(conn) in a
    thread of its own for every connection accepted. Returns the port."""
    lsn = socket.socket()
    lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(backlog)

    def accept_loop():
        while True:
            try:
                c, _ = lsn.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return lsn.getsockname()[1]


def wait_listening(port, timeout=10.0):
    """Waits until something accepts connections on 127.0.0.1:port.
    Returns True if it did within timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False
