"""A throwaway network namespace, so tests can change net.* sysctls without touching the host.

net.ipv4.ip_local_port_range and net.ipv4.ip_local_reserved_ports are per network namespace
(since Linux 4.x), so the host scripts' sysctl tuning can run for real inside one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from tests.support.processes import run_captured


def run_script(prefix: Sequence[str], script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`<prefix> sh -c script` (prefix: `ip netns exec NAME`, `nsenter --net=PATH`); never raises on exit code."""
    return run_captured([*prefix, "sh", "-c", script], timeout=timeout)


@dataclass(frozen=True)
class NetNamespace:
    """A named netns (`ip netns add`); loopback is up inside it."""

    name: str

    def exec_argv(self, *argv: str) -> list[str]:
        """`argv` prefixed to run inside the namespace, e.g. for Popen."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a `sh -c` script inside the namespace; never raises on exit code."""
        return run_script(self.exec_argv(), script, timeout)

    def sysctl(self, key: str) -> str:
        """`sysctl -n key` inside the namespace, stripped (multi-value keys stay tab-separated)."""
        proc = subprocess.run(
            self.exec_argv("sysctl", "-n", key),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return proc.stdout.strip()

    def set_sysctl(self, key: str, value: str) -> None:
        """`sysctl -w key=value` inside the namespace."""
        subprocess.run(
            self.exec_argv("sysctl", "-q", "-w", f"{key}={value}"),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )


def host_sysctl(key: str) -> str:
    """The same key read in the test process's own namespace, for isolation checks."""
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path) as fh:
        return fh.read().strip()


@contextlib.contextmanager
def scratch_namespace(prefix: str = "emqx-test") -> Iterator[NetNamespace]:
    """A fresh `<prefix>-<random>` network namespace with loopback up, deleted afterwards.

    Skips the test (with the reason) where `ip netns add` is missing or not permitted; `unshare
    -n` would give a namespace per process only, useless across run() calls.
    """
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is not installed")
    name = f"{prefix}-{secrets.token_hex(4)}"
    added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if added.returncode != 0:
        pytest.skip(f"`ip netns add` not permitted here: {added.stderr.strip()}")
    ns = NetNamespace(name)
    try:
        ns.run("ip link set lo up").check_returncode()
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def entered(ns: NetNamespace) -> Iterator[None]:
    """The test process itself inside `ns` (setns(2), as `ip netns exec` does, on the calling
    thread: the test's). Everything it starts inherits the namespace, its sockets are opened in
    it and /proc/net shows it; back home on exit. Python 3.11 has no os.setns: libc's, by ctypes."""
    with open("/proc/self/ns/net") as home, open(f"/var/run/netns/{ns.name}") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


@pytest.fixture
def netns() -> Iterator[NetNamespace]:
    """A fresh `emqx-test-<random>` network namespace, deleted afterwards."""
    with scratch_namespace() as ns:
        yield ns
