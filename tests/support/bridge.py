"""Several hosts on one Ethernet segment: network namespaces on a Linux bridge, each with its own sshd.

A several-host stack behaves by address (which host may dial a cluster port, which node is local
to a load balancer), which loopback cannot show. Layout, all in one /24:

- a "switch" namespace holds the bridge, so nothing is added to the test machine's own
  namespace and its firewall (e.g. Docker's FORWARD policy with br_netfilter) never sees the
  frames;
- each host (`a`, `b`, `c`, ...) is a namespace with one veth on the bridge and an sshd on port
  22 of its address, for the non-root deploy user with NOPASSWD sudo (tests/support/sshd.py);
- the outsider is one more namespace on the bridge, no cluster host. The deployer's `ssh` runs
  there too: the operator's machine is no cluster host either.

A socket belongs to the namespace it was created in, so one thread per namespace, moved into it
with setns(2), creates the sockets and the test uses them from anywhere: listeners and probes need
no subprocess. Also here: the PROXY-protocol stand-in for a node's MQTT listener on its host's
address, and lb_stack's Nginx run inside a host's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import random
import re
import shutil
import socket
import ssl
import string
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from components.render.nginx import NginxSettings
from tests.support.lb_stack import TCP_LISTEN, Nginx, Pki, start_process, tcp_table
from tests.support.netns import NetNamespace, scratch_namespace
from tests.support.ports import wait_until
from tests.support.processes import run_captured, stop_process
from tests.support.sshd import DEPLOY_USER, SSHD, SshEndpoint, ensure_user, passwordless_sudo, ssh_endpoint, ssh_keys
from tests.support.sshd import sshd_config as render_sshd_config

SSH_PORT = 22
BRIDGE = "br0"
HOST_DEVICE = "eth0"
SUBNET_POOL = "10.233.0.0/16"  # /24s from here, one not routed on this machine
OUTSIDER_OCTET = 200
CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)

Outcome = Literal["accepted", "refused", "timed out"]


def _enter_netns(path: str) -> None:
    """Move the calling thread (only) into the network namespace at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _LIBC.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def listens(pid: int, address: str, port: int) -> bool:
    """Whether (address, port) listens in the namespace of process `pid`, read from its /proc."""
    return any(e.state == TCP_LISTEN and e.local == (address, port) for e in tcp_table(f"/proc/{pid}/net/tcp"))


@dataclass(frozen=True)
class Station:
    """A namespace with one address on the bridge: run commands in it, open sockets from it."""

    name: str
    address: str
    netns: NetNamespace
    _socket_maker: ThreadPoolExecutor = field(repr=False, compare=False)

    def exec_argv(self, *argv: str) -> list[str]:
        """`argv` prefixed to run inside the namespace (the PID stays the command's own)."""
        return self.netns.exec_argv(*argv)

    def run(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A `sh -c` script inside the namespace, as root; never raises on exit code."""
        return self.netns.run(script, timeout)

    def tcp_socket(self) -> socket.socket:
        """A TCP socket of this namespace, usable from any thread."""
        return self._socket_maker.submit(socket.socket, socket.AF_INET, socket.SOCK_STREAM).result()

    def listen(self, port: int, address: str | None = None) -> socket.socket:
        """A listening socket on (address or ours, port); the kernel completes handshakes unserved."""
        sock = self.tcp_socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address or self.address, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self, address: str, port: int, timeout: float = 10.0) -> socket.socket:
        """A connection from our own address (never another route's) to (address, port)."""
        sock = self.tcp_socket()
        try:
            sock.settimeout(timeout)
            sock.bind((self.address, 0))
            sock.connect((address, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def probe(self, address: str, port: int, timeout: float = 5.0) -> Outcome:
        """How a connect from here ends: a TCP reset reads "refused", a dropped SYN "timed out"."""
        try:
            self.connect(address, port, timeout).close()
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timed out"
        return "accepted"


@dataclass(frozen=True)
class Host(Station):
    """A cluster host: a Station with its own sshd, reached from the deployer's namespace."""

    ssh: SshEndpoint
    ssh_prefix: tuple[str, ...]  # runs the `ssh` client in the deployer's namespace
    sshd: subprocess.Popen[bytes] = field(repr=False, compare=False)

    def ssh_run(self, command: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`command` as the one exec-request string over real SSH, as remote.Command sends it.

        Exit code 255 is ssh's own failure (connect/auth), anything else the command's.
        """
        return run_captured([*self.ssh_prefix, *self.ssh.ssh_argv(command)], input=stdin, timeout=timeout)


@dataclass(frozen=True)
class Bridge:
    """The hosts and the outsider on one bridge (in `switch`), addresses in `subnet`."""

    subnet: ipaddress.IPv4Network
    switch: NetNamespace
    hosts: tuple[Host, ...]
    outsider: Station

    def host(self, name: str) -> Host:
        return next(host for host in self.hosts if host.name == name)


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has an address or a route in."""
    networks = []
    for argv in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for match in re.finditer(r"(?:inet |^(?:\w+ )?)(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", out, re.MULTILINE):
            networks.append(ipaddress.IPv4Interface(match.group(1)).network)
    return networks


def free_subnet() -> ipaddress.IPv4Network:
    """A random /24 of SUBNET_POOL that no address or route here overlaps."""
    used = used_networks()
    candidates = list(ipaddress.IPv4Network(SUBNET_POOL).subnets(new_prefix=24))
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise RuntimeError(f"every /24 of {SUBNET_POOL} is in use here")


def _checked(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def _station(
    stack: contextlib.ExitStack, switch: NetNamespace, name: str, port: str, address: str, prefix_length: int
) -> Station:
    """A namespace with a veth into the bridge (switch side `port`, ours eth0) holding `address`."""
    ns = stack.enter_context(scratch_namespace(f"emqx-{name}"))
    _checked(
        switch.run(
            f"ip link add {port} type veth peer name {HOST_DEVICE} netns {ns.name}"
            f" && ip link set {port} master {BRIDGE} up"
        ),
        f"attaching {name} to the bridge",
    )
    _checked(
        ns.run(f"ip addr add {address}/{prefix_length} dev {HOST_DEVICE} && ip link set {HOST_DEVICE} up"),
        f"addressing {name}",
    )
    return stack.enter_context(station_in(name, address, ns, f"/run/netns/{ns.name}"))


@contextlib.contextmanager
def station_in(name: str, address: str, netns: NetNamespace, netns_path: str) -> Iterator[Station]:
    """A Station of an existing namespace (this module's, or an e2e host's): one thread moved
    into it makes its sockets, and stops on exit."""
    maker = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix=f"netns-{name}", initializer=_enter_netns, initargs=(netns_path,)
    )
    try:
        yield Station(name, address, netns, maker)
    finally:
        maker.shutdown(wait=True)


def _start_sshd(station: Station, workdir: Path, user: str) -> tuple[SshEndpoint, subprocess.Popen[bytes]]:
    """sshd in the station's namespace on its address, port 22; its own host and client keys."""
    workdir.mkdir(mode=0o755)
    workdir.chmod(0o755)  # sshd reads AuthorizedKeysFile with the user's privileges
    host_pub = ssh_keys(workdir, f"emqx-bridge-{station.name}")
    config = workdir / "sshd_config"
    config.write_text(render_sshd_config(workdir, SSH_PORT, user, listen=station.address))
    subprocess.run([str(SSHD), "-t", "-f", str(config)], check=True, capture_output=True)
    log = workdir / "sshd.log"
    proc = start_process(station.exec_argv(str(SSHD), "-D", "-e", "-f", str(config)), log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on {station.name} exited with {proc.returncode}:\n{log.read_text()}")
        return listens(proc.pid, station.address, SSH_PORT)

    try:
        wait_until(ready, what=f"sshd on {station.name} ({station.address}:{SSH_PORT})", timeout=15)
    except BaseException:
        stop_process(proc, grace=10, group=True)
        raise
    return ssh_endpoint(workdir, station.address, SSH_PORT, user, host_pub, log), proc


def missing_prerequisites() -> list[str]:
    """What this machine lacks for bridged hosts; empty when everything is there."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, a bridge, sshd on port 22)")
    for tool, package in (("ip", "iproute2"), ("ssh", "openssh-client"), ("visudo", "sudo")):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            missing.append(f"`{tool}` ({package})")
    if not SSHD.exists():
        missing.append(f"{SSHD} (openssh-server)")
    return missing


@contextlib.contextmanager
def bridged_hosts(count: int = 3, *, user: str = DEPLOY_USER) -> Iterator[Bridge]:
    """`count` hosts (`a`, `b`, ...) and the outsider on one bridge; everything removed afterwards.

    Skips the test, with the reason, where root, iproute2, OpenSSH or bridges are missing.
    """
    missing = missing_prerequisites()
    if missing:
        pytest.skip(f"bridged hosts need: {', '.join(missing)}")
    if not 1 <= count <= 26:
        raise ValueError(f"count must be 1..26, not {count}")
    subnet = free_subnet()
    with contextlib.ExitStack() as stack:
        switch = stack.enter_context(scratch_namespace("emqx-switch"))
        made = switch.run(f"ip link add {BRIDGE} type bridge && ip link set {BRIDGE} up")
        if made.returncode != 0:
            pytest.skip(f"no Linux bridge here: {made.stderr.strip()}")
        base = subnet.network_address
        names = string.ascii_lowercase[:count]
        stations = [
            _station(stack, switch, name, f"p-{name}", str(base + 11 + index), subnet.prefixlen)
            for index, name in enumerate(names)
        ]
        outsider = _station(stack, switch, "outsider", "p-outsider", str(base + OUTSIDER_OCTET), subnet.prefixlen)

        ensure_user(user)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        stack.enter_context(passwordless_sudo(user, tag="bridge"))
        workdir = Path(tempfile.mkdtemp(prefix="emqx-bridge-"))
        workdir.chmod(0o755)
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        hosts = []
        for station in stations:
            endpoint, sshd = _start_sshd(station, workdir / station.name, user)
            stack.callback(stop_process, sshd, grace=10, group=True)
            hosts.append(
                Host(
                    station.name,
                    station.address,
                    station.netns,
                    station._socket_maker,
                    ssh=endpoint,
                    ssh_prefix=tuple(outsider.exec_argv()),
                    sshd=sshd,
                )
            )
        yield Bridge(subnet=subnet, switch=switch, hosts=tuple(hosts), outsider=outsider)


# --------------------------------------------------------------------------- PROXY-protocol nodes

PROXY_V1 = re.compile(rb"PROXY TCP4 (\S+) (\S+) (\d+) (\d+)\r\n")
PROXY_V1_MAX = 107  # the longest v1 header, CRLF included (haproxy's proxy-protocol.txt)


@dataclass(frozen=True)
class ProxyHeader:
    """What a PROXY v1 header announced: the client's address and the address it connected to."""

    source: tuple[str, int]
    destination: tuple[str, int]


class ProxyNode:
    """A node's MQTT listener with `proxy_protocol = true`, on its host's address, in its namespace.

    Like EMQX it closes a connection that does not start with a PROXY header; otherwise it
    records the header and answers with the node's name, so a client learns who served it.
    """

    def __init__(self, station: Station, name: str, address: str, port: int) -> None:
        self.station = station
        self.name = name
        self.endpoint = (address, port)
        self.headers: list[ProxyHeader] = []
        self.rejected: list[bytes] = []
        self._listener = station.listen(port, address)
        self._thread = threading.Thread(target=self._serve, name=f"proxy-node-{name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # stop(): shutdown() wakes accept()
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n" not in data and len(data) < PROXY_V1_MAX:
                    chunk = conn.recv(PROXY_V1_MAX - len(data))
                    if not chunk:
                        break
                    data += chunk
            match = PROXY_V1.match(data)
            if match is None:
                self.rejected.append(data)
                return
            source, destination, source_port, destination_port = (part.decode() for part in match.groups())
            self.headers.append(ProxyHeader((source, int(source_port)), (destination, int(destination_port))))
            with contextlib.suppress(OSError):
                conn.sendall(f"{self.name}\n".encode())
                while conn.recv(4096):  # until the client leaves: closing with unread data would reset
                    pass

    def stop(self) -> None:
        """Close the listener: connections to it are refused from now on, as to a stopped node."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class Served:
    """Which node answered a client, and the client's own (address, port)."""

    node: str
    client: tuple[str, int]


def tls_exchange(station: Station, address: str, port: int, context: ssl.SSLContext, server_hostname: str) -> Served:
    """A TLS client from `station` to (address, port): the serving node's answer and our address."""
    with station.connect(address, port) as raw:
        client = raw.getsockname()
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            # Clients speak first (MQTT CONNECT): a node missing its PROXY header rejects at once.
            tls.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = tls.recv(256)
                if not chunk:
                    break
                reply += chunk
    return Served(reply.decode().strip(), (str(client[0]), int(client[1])))


class NamespacedNginx(Nginx):
    """lb_stack's Nginx (the rendered config, Debian's nginx) started inside a host's namespace."""

    def __init__(self, station: Station, directory: Path, settings: NginxSettings, pki: Pki) -> None:
        super().__init__(directory, settings, pki)
        self.station = station

    def _argv(self, *extra: str) -> list[str]:
        return self.station.exec_argv(*super()._argv(*extra))

    def start(self) -> None:
        checked = self.check()
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{checked.stderr}")
        process = self.process = start_process(self._argv("-g", "daemon off;"), self.output_path)
        host, port = self.address

        def ready() -> bool:
            if process.poll() is not None:
                log = self.startup_log.read_text(errors="replace") if self.startup_log.exists() else ""
                raise RuntimeError(f"nginx exited with {process.returncode} before listening:\n{log}")
            return listens(process.pid, host, port)

        wait_until(ready, what=f"nginx to listen on {host}:{port} in {self.station.name}")
        wait_until(self.worker_pids, what="nginx workers")
