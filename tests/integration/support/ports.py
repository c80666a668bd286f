"""Loopback TCP helpers: pick free ports, occupy a port, wait for a server to listen."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick; racy, so retry on EADDRINUSE)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def listening_socket(host: str = "127.0.0.1", port: int = 0, *, reuse_addr: bool = False) -> Iterator[socket.socket]:
    """A real listening TCP socket on (host, port) for the duration, e.g. to fail a preflight.

    port=0 lets the kernel pick; read it back with `sock.getsockname()[1]`.  Connections are
    accepted by the kernel backlog and never served.
    """
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
        yield sock
    finally:
        sock.close()


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connect to (host, port) succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until (host, port) accepts TCP connections; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if port_is_open(host, port):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
        time.sleep(0.05)
