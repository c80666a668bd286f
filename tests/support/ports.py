"""TCP port helpers: pick free ports (one or a block), occupy a port, wait for a listener; and `wait_until`."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


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


def port_is_free(port: int) -> bool:
    """Whether a listener could bind `port` on every address (nothing listens there now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_block(count: int, *, avoid: set[int] | None = None, attempts: int = 100) -> int:
    """The first of `count` consecutive ports that are all free (and not in `avoid`)."""
    taken = avoid or set()
    for _ in range(attempts):
        base = free_port()
        block = range(base, base + count)
        if base + count - 1 <= 65535 and not taken.intersection(block) and all(port_is_free(p) for p in block):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def busy_ports(ports: Iterable[int]) -> list[int]:
    """Which of `ports` something on this host already listens on."""
    return [port for port in ports if not port_is_free(port)]


class WaitTimeoutError(AssertionError, TimeoutError):
    """`wait_until` gave up: a failed expectation in a test, a timeout to the benchmark."""


def wait_until(predicate: Callable[[], T | None], what: str, timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll `predicate` every `interval` s until it returns something truthy (returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
