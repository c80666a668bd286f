"""A real load-balancer stack on loopback: Nginx from our renderer in front of mosquitto brokers.

Shared by tests/integration/test_load_balancer.py and bench/lb_throughput.py, so the benchmark
measures exactly the path the tests prove. Nginx only ever runs a config produced by
`components.render.nginx.render_nginx_conf` (Debian's nginx: stream module loaded by path).
Each backend is mosquitto (MQTT 3.1.1 + 5) behind `proxy_shim.py`, which stands in for EMQX's
`proxy_protocol = true` listener: header required, client's real address passed to the broker.
Everything listens on 127.0.0.0/8 and every process is stopped by its own PID.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import queue
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import trustme
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from components.config import StackConfig
from components.plan import ClusterPlan, HostPlan
from components.render.nginx import (
    DEBIAN_STREAM_MODULE,
    NginxRuntime,
    NginxSettings,
    nginx_settings,
    render_nginx_conf,
    standalone_runtime,
)
from tests.support.ports import free_port, wait_until
from tests.support.processes import stop_process

LOOPBACK = "127.0.0.1"
STREAM_MODULE_PATH = DEBIAN_STREAM_MODULE
NGINX_BIN = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
MOSQUITTO_BIN = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
SHIM_SCRIPT = Path(__file__).parent / "emqx" / "proxy_shim.py"

MQTT_V311 = MQTTProtocolVersion.MQTTv311
MQTT_V5 = MQTTProtocolVersion.MQTTv5
# mosquitto's `(pN, ...)` in its connect log line: enum mosquitto_protocol.
MOSQUITTO_PROTOCOL_CODES = {MQTT_V311: 2, MQTT_V5: 5}
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the stack; empty when everything is there."""
    missing = []
    if NGINX_BIN is None:
        missing.append("nginx binary")
    elif not Path(STREAM_MODULE_PATH).is_file():
        missing.append(f"nginx stream module ({STREAM_MODULE_PATH}; apt-get install libnginx-mod-stream)")
    if MOSQUITTO_BIN is None:
        missing.append("mosquitto binary")
    return missing


def source_address(index: int) -> str:
    """A distinct loopback client address (127.0.0.2, .3, ...): Linux routes all of 127/8 to lo."""
    return f"127.0.0.{index + 2}"


# --------------------------------------------------------------------------- waiting, ports


@dataclass(frozen=True)
class TcpEntry:
    """One IPv4 socket from /proc/net/tcp."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: int
    inode: int


TCP_ESTABLISHED = 0x01
TCP_LISTEN = 0x0A


def _proc_address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    return socket.inet_ntoa(bytes.fromhex(host)[::-1]), int(port, 16)


def tcp_table(path: str = "/proc/net/tcp") -> list[TcpEntry]:
    """The kernel's IPv4 TCP sockets: lets us see listeners and owners without connecting.

    `path`: another network namespace's table, `/proc/<pid>/net/tcp` of a process inside it.
    """
    entries = []
    with open(path, encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            entries.append(
                TcpEntry(_proc_address(fields[1]), _proc_address(fields[2]), int(fields[3], 16), int(fields[9]))
            )
    return entries


def is_listening(host: str, port: int) -> bool:
    """Checked in /proc rather than by connecting, so readiness probes never show up in logs."""
    return any(e.state == TCP_LISTEN and e.local == (host, port) for e in tcp_table())


def wait_for_listener(host: str, port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            details = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{name} exited with {process.returncode} before listening:\n{details}")
        return is_listening(host, port)

    wait_until(ready, what=f"{name} to listen on {host}:{port}")


def start_process(argv: Sequence[str], output: Path) -> subprocess.Popen[bytes]:
    """Own session, so stopping it can never signal the test runner's group."""
    with output.open("ab") as sink:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    """Test PKI: root CA -> intermediate -> server leaf for localhost and 127.0.0.1.

    The intermediate makes "chain verifies against the CA" mean Nginx really serves the chain.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path
    # Client certificates: one from the client CA a stack may declare (tlsClientCa), one from
    # a CA nobody declared.
    client_ca_cert: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def client_context(
        self,
        *,
        trust: Path | None = None,
        minimum: ssl.TLSVersion | None = None,
        maximum: ssl.TLSVersion | None = None,
        ciphers: str | None = None,
    ) -> ssl.SSLContext:
        """A verifying client context (hostname checked) trusting our CA unless told otherwise."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if ciphers is not None:
            context.set_ciphers(ciphers)
        with warnings.catch_warnings():
            # Tests pin TLS 1.0/1.1 on purpose, to prove the server refuses them.
            warnings.simplefilter("ignore", DeprecationWarning)
            if minimum is not None:
                context.minimum_version = minimum
            if maximum is not None:
                context.maximum_version = maximum
        context.load_verify_locations(cafile=str(trust or self.ca_cert))
        return context


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("localhost", LOOPBACK)
    pki = Pki(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server-chain.pem",
        server_key=directory / "server.key",
        other_ca_cert=directory / "other-ca.pem",
        client_ca_cert=directory / "client-ca.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        stranger_cert=directory / "stranger.pem",
        stranger_key=directory / "stranger.key",
    )
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(pki.client_ca_cert))
    for authority, cert_path, key_path in (
        (client_ca, pki.client_cert, pki.client_key),
        (trustme.CA(), pki.stranger_cert, pki.stranger_key),
    ):
        issued = authority.issue_cert("device-1.clients.example")
        issued.cert_chain_pems[0].write_to_path(str(cert_path))
        issued.private_key_pem.write_to_path(str(key_path))
    root.cert_pem.write_to_path(str(pki.ca_cert))
    pki.server_cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(pki.server_key))
    pki.server_key.chmod(0o600)
    trustme.CA().cert_pem.write_to_path(str(pki.other_ca_cert))
    return pki


# --------------------------------------------------------------------------- mosquitto


@dataclass(frozen=True)
class BrokerConnection:
    """One `New client connected from HOST:PORT as ID (pN, ...)` line of a mosquitto log."""

    host: str
    port: int
    client_id: str
    protocol: int


CONNECTED_LINE = re.compile(
    r"New client connected from (?P<host>[0-9.]+):(?P<port>\d+) as (?P<client_id>\S+) \(p(?P<protocol>\d+),"
)


class ChildProcess:
    """A server this module started: crash it, stop it, or ask whether it still runs."""

    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """Crash it: SIGKILL, no goodbye to clients."""
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL, group=True)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, group=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Mosquitto(ChildProcess):
    """One mosquitto process with a plain loopback listener and optionally a TLS one."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int,
        tls_port: int | None = None,
        pki: Pki | None = None,
        verbose_log: bool = True,
    ) -> None:
        if tls_port is not None and pki is None:
            raise ValueError("a TLS listener needs the test PKI")
        self.directory = directory
        self.port = port
        self.tls_port = tls_port
        self.pki = pki
        self.verbose_log = verbose_log
        self.conf_path = directory / "mosquitto.conf"
        self.log_path = directory / "mosquitto.log"
        self.output_path = directory / "mosquitto.out"
        self.process: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        # Run as the invoking user: as root, mosquitto would otherwise drop to `mosquitto` and
        # lose access to our temp files.
        lines = [
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "persistence false",
            # Like EMQX's listeners (tcp_options.nodelay) and Nginx's tcp_nodelay: without it the
            # CONNACK after TLS 1.3 session tickets waits out the client's delayed ACK (~40 ms).
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            # `all` logs every packet (tests check PUBACKs); the benchmark keeps it out of the way.
            *(["log_type all"] if self.verbose_log else ["log_type error", "log_type warning", "log_type notice"]),
            "connection_messages true",
            "allow_anonymous true",
            f"listener {self.port} {LOOPBACK}",
        ]
        if self.tls_port is not None and self.pki is not None:
            lines += [
                f"listener {self.tls_port} {LOOPBACK}",
                f"certfile {self.pki.server_cert}",
                f"keyfile {self.pki.server_key}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        if MOSQUITTO_BIN is None:
            raise RuntimeError("mosquitto is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config_text())
        self.process = start_process([MOSQUITTO_BIN, "-c", str(self.conf_path)], self.output_path)
        for port in (self.port, self.tls_port):
            if port is not None:
                wait_for_listener(LOOPBACK, port, self.process, "mosquitto", self.log_path)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def connections(self) -> list[BrokerConnection]:
        return [
            BrokerConnection(m["host"], int(m["port"]), m["client_id"], int(m["protocol"]))
            for m in CONNECTED_LINE.finditer(self.log_text())
        ]

    def connection_of(self, client_id: str) -> BrokerConnection | None:
        return next((c for c in self.connections() if c.client_id == client_id), None)


# --------------------------------------------------------------------------- PROXY shim


@dataclass(frozen=True)
class ShimSession:
    """A connection the shim accepted: who Nginx said the client is, and how we reached the broker."""

    peer: tuple[str, int]
    source: tuple[str, int] | None
    upstream_local: tuple[str, int]


class ProxyShim(ChildProcess):
    """proxy_shim.py as a subprocess: listens where Nginx's upstream points."""

    def __init__(self, directory: Path, *, listen_port: int, target_port: int) -> None:
        self.directory = directory
        self.listen_port = listen_port
        self.target_port = target_port
        self.events_path = directory / "shim-events.jsonl"
        self.output_path = directory / "shim.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, str(SHIM_SCRIPT),
            "--listen-port", str(self.listen_port),
            "--target-port", str(self.target_port),
            "--events", str(self.events_path),
        ]  # fmt: skip
        self.process = start_process(argv, self.output_path)
        wait_for_listener(LOOPBACK, self.listen_port, self.process, "proxy shim", self.output_path)

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        events = []
        for line in self.events_path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # a line still being written
                continue
        return events

    def sessions(self) -> list[ShimSession]:
        return [
            ShimSession(
                peer=(e["peer"][0], e["peer"][1]),
                source=(e["source"][0], e["source"][1]) if e["source"] else None,
                upstream_local=(e["upstream_local"][0], e["upstream_local"][1]),
            )
            for e in self.events()
            if e["event"] == "proxied"
        ]

    def rejections(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == "rejected"]


class Backend:
    """One "EMQX node": mosquitto plus its PROXY shim, started, crashed and restarted together."""

    def __init__(
        self, directory: Path, name: str, *, pki: Pki | None = None, tls: bool = False, verbose_log: bool = True
    ) -> None:
        self.name = name
        self.directory = directory / name
        self.mosquitto = Mosquitto(
            self.directory,
            port=free_port(),
            tls_port=free_port() if tls else None,
            pki=pki,
            verbose_log=verbose_log,
        )
        self.shim = ProxyShim(self.directory, listen_port=free_port(), target_port=self.mosquitto.port)

    @property
    def listener_port(self) -> int:
        """The broker listener Nginx proxies to (PROXY header required)."""
        return self.shim.listen_port

    @property
    def upstream(self) -> str:
        return f"{LOOPBACK}:{self.listener_port}"

    def start(self) -> None:
        self.mosquitto.start()
        self.shim.start()

    restart = start

    def kill(self) -> None:
        self.shim.kill()
        self.mosquitto.kill()

    def stop(self) -> None:
        self.shim.stop()
        self.mosquitto.stop()

    @property
    def running(self) -> bool:
        return self.mosquitto.running and self.shim.running

    def __repr__(self) -> str:
        return f"Backend({self.name}, listener={self.upstream}, broker={self.mosquitto.port})"


@contextmanager
def running_backends(
    directory: Path, count: int, *, pki: Pki | None = None, tls: bool = False, verbose_log: bool = True
) -> Iterator[list[Backend]]:
    """Start `count` backends; all are stopped on exit even if a later one fails to start."""
    with ExitStack() as stack:
        backends = []
        for index in range(count):
            backend = Backend(directory, f"broker{index}", pki=pki, tls=tls, verbose_log=verbose_log)
            stack.callback(backend.stop)
            backend.start()
            backends.append(backend)
        yield backends


def backend_of(backends: Sequence[Backend], client_id: str) -> tuple[Backend, BrokerConnection] | None:
    """Which broker logged this client's connection, and from which address."""
    for backend in backends:
        record = backend.mosquitto.connection_of(client_id)
        if record is not None:
            return backend, record
    return None


def wait_backend_of(backends: Sequence[Backend], client_id: str) -> tuple[Backend, BrokerConnection]:
    return wait_until(lambda: backend_of(backends, client_id), what=f"a broker to log {client_id}")


# --------------------------------------------------------------------------- nginx


def nginx_runtime(directory: Path, pki: Pki) -> NginxRuntime:
    """Debian's nginx: stream module by path, every file in our temp dir, no user switch."""
    return standalone_runtime(str(directory), str(pki.server_cert), str(pki.server_key))


def lb_settings(
    listen_port: int,
    upstreams: Sequence[str],
    *,
    balancing: str = "round_robin",
    max_fails: int = 1,
    fail_timeout: str = "1s",
    connect_timeout: str = "2s",
    proxy_protocol: bool = True,
    worker_connections: int = 1024,
    client_verify_depth: int | None = None,
    max_conns: int = 0,
    ticket_keys: int = 0,
) -> NginxSettings:
    """Test-sized settings: short fail_timeout so failover/recovery happen within a test."""
    return NginxSettings(
        listen_address=LOOPBACK,
        listen_port=listen_port,
        upstreams=tuple(upstreams),
        balancing=balancing,
        max_fails=max_fails,
        fail_timeout=fail_timeout,
        connect_timeout=connect_timeout,
        proxy_protocol=proxy_protocol,
        worker_connections=worker_connections,
        client_verify_depth=client_verify_depth,
        max_conns=max_conns,
        ticket_keys=ticket_keys,
    )


class Nginx:
    """Nginx in the foreground running exactly what `render_nginx_conf` produced."""

    def __init__(self, directory: Path, settings: NginxSettings, pki: Pki) -> None:
        self.directory = directory
        self.settings = settings
        self.pki = pki
        self.runtime = nginx_runtime(directory, pki)
        self.conf_path = directory / "nginx.conf"
        self.startup_log = directory / "startup-error.log"
        self.output_path = directory / "nginx.out"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.listen_address, self.settings.listen_port

    def _argv(self, *extra: str) -> list[str]:
        if NGINX_BIN is None:
            raise RuntimeError("nginx is not installed")
        # -e: log startup errors here, not to the compiled-in /var/log/nginx/error.log.
        return [NGINX_BIN, "-c", str(self.conf_path), "-p", f"{self.directory}/", "-e", str(self.startup_log), *extra]

    def write_config(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.settings.client_verify_depth:  # where the container gets the stack's tlsClientCa
            shutil.copyfile(self.pki.client_ca_cert, self.runtime.client_ca_path)
        for number in range(1, self.settings.ticket_keys + 1):  # as the container's uploads: kept
            key = Path(self.runtime.ticket_key_path(number))
            if not key.exists():
                key.write_bytes(os.urandom(80))
                key.chmod(0o600)
        text = render_nginx_conf(self.settings, self.runtime)
        self.conf_path.write_text(text)
        return text

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the rendered config."""
        self.write_config()
        return subprocess.run(self._argv("-t"), capture_output=True, text=True, timeout=30, check=False)

    def start(self) -> None:
        checked = self.check()
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{checked.stderr}")
        self.process = start_process(self._argv("-g", "daemon off;"), self.output_path)
        host, port = self.address
        wait_for_listener(host, port, self.process, "nginx", self.startup_log)
        wait_until(self.worker_pids, what="nginx workers")

    def stop(self) -> None:
        """SIGTERM (fast shutdown): SIGQUIT would wait for open MQTT sessions up to proxy_timeout."""
        if self.process is not None:
            stop_process(self.process, group=True)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        workers = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                workers.append(int(entry.name))
        return sorted(workers)

    def worker_serving(self, client: tuple[str, int]) -> int:
        """The worker PID holding this client's connection.

        The template has no upstream `zone`, so each worker balances with its own state;
        exact balancing assertions have to be made per worker.
        """
        inodes = {
            e.inode
            for e in tcp_table()
            if e.state == TCP_ESTABLISHED and e.local == self.address and e.remote == client and e.inode
        }
        if not inodes:
            raise LookupError(f"no nginx-side socket for client {client}")
        wanted = {f"socket:[{inode}]" for inode in inodes}
        for pid in self.worker_pids():
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) in wanted:
                        return pid
                except OSError:
                    continue
        raise LookupError(f"no nginx worker owns the connection from {client}")

    def access_log_lines(self) -> list[str]:
        path = Path(self.runtime.access_log)
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def session_logged(self, client: tuple[str, int]) -> bool:
        """Nginx logs a stream session when it ends (after releasing its upstream peer)."""
        prefix = f"{client[0]}:{client[1]} "
        return any(line.startswith(prefix) for line in self.access_log_lines())

    def error_log_text(self) -> str:
        path = Path(self.runtime.error_log)
        return path.read_text(errors="replace") if path.exists() else ""


# --------------------------------------------------------------------------- MQTT clients


class MqttSession:
    """A connected paho-mqtt 2.x client (VERSION2 callbacks) with blocking helpers for tests."""

    def __init__(self, client: mqtt.Client, client_id: str) -> None:
        self.client = client
        self.client_id = client_id
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connect_reason: ReasonCode | None = None
        self._subscribed: dict[int, list[ReasonCode]] = {}
        self._subscribe_done = threading.Condition()
        self.publish_reasons: dict[int, int] = {}  # message id -> PUBACK reason code (MQTT 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        self.publish_reasons[mid] = int(reason.value)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        self.connect_reason = reason
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self.disconnected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        with self._subscribe_done:
            self._subscribed[mid] = list(reasons)
            self._subscribe_done.notify_all()

    @property
    def local_address(self) -> tuple[str, int]:
        """This client's own (address, port): what the PROXY header must announce."""
        sock = self.client.socket()
        if not isinstance(sock, socket.socket):  # SSLSocket is one too
            raise RuntimeError(f"{self.client_id} has no socket")
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def tls_version(self) -> str | None:
        sock = self.client.socket()
        return sock.version() if isinstance(sock, ssl.SSLSocket) else None

    def subscribe(self, topic: str | list[tuple[str, int]], qos: int = 0, timeout: float = 10.0) -> list[int]:
        """Subscribe (one filter, or several in one SUBSCRIBE) and return the SUBACK's codes."""
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise RuntimeError(f"subscribe failed: {mqtt.error_string(result)}")
        with self._subscribe_done:
            if not self._subscribe_done.wait_for(lambda: mid in self._subscribed, timeout):
                raise TimeoutError(f"no SUBACK for {self.client_id}")
            return [int(reason.value) for reason in self._subscribed[mid]]

    def publish(self, topic: str, payload: bytes, qos: int, timeout: float = 10.0) -> mqtt.MQTTMessageInfo:
        """Publish and wait until it is sent (QoS 0) or acknowledged with PUBACK (QoS 1)."""
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(timeout)
        return info

    def receive(self, timeout: float = 10.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def disconnect(self, timeout: float = 10.0) -> None:
        self.client.disconnect()
        self.disconnected.wait(timeout)
        self.client.loop_stop()

    def close(self) -> None:
        """Idempotent teardown for finalizers."""
        if not self.disconnected.is_set():
            with suppress(Exception):  # best effort: the broker may already be gone
                self.disconnect(timeout=2.0)
        self.client.loop_stop()


def proxy_v1_header(sock: socket.socket) -> bytes:
    """The PROXY protocol v1 line announcing `sock`'s own connection as it is (what Nginx sends)."""
    source, source_port = sock.getsockname()[:2]
    target, target_port = sock.getpeername()[:2]
    return f"PROXY TCP4 {source} {target} {source_port} {target_port}\r\n".encode()


class ProxyProtocolClient(mqtt.Client):
    """A paho client that opens each connection with a PROXY v1 header, for a broker listener
    with `proxy_protocol = true` (an EMQX node as the program configures it, without Nginx)."""

    def _create_socket_connection(self) -> socket.socket:
        sock = super()._create_socket_connection()
        sock.sendall(proxy_v1_header(sock))
        return sock


def connect_mqtt(
    host: str,
    port: int,
    *,
    client_id: str,
    tls_context: ssl.SSLContext | None = None,
    protocol: MQTTProtocolVersion = MQTT_V5,
    bind_address: str = "",
    keepalive: int = 60,
    timeout: float = 10.0,
    username: str | None = None,
    password: str | None = None,
    proxy_protocol: bool = False,
) -> MqttSession:
    """Connect (TCP, TLS, CONNECT) and wait for an accepting CONNACK; raises otherwise.
    `proxy_protocol`: a PROXY v1 header first (ProxyProtocolClient)."""
    client = (ProxyProtocolClient if proxy_protocol else mqtt.Client)(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=True if protocol != MQTT_V5 else None,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if tls_context is not None:
        client.tls_set_context(tls_context)
    session = MqttSession(client, client_id)
    client.connect(host, port, keepalive=keepalive, bind_address=bind_address)
    client.loop_start()
    if not session.connected.wait(timeout) or session.connect_reason is None:
        session.close()
        raise TimeoutError(f"no CONNACK for {client_id} from {host}:{port}")
    if session.connect_reason.is_failure:
        session.close()
        raise MqttRefusedError(int(session.connect_reason.value), f"{client_id} refused: {session.connect_reason}")
    return session


class MqttRefusedError(ConnectionRefusedError):
    """A CONNACK with a failure code (`code`: the MQTT 5 reason code; paho maps 3.1.1's to them)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def mqtt_sessions() -> Iterator[list[MqttSession]]:
    """A list to append sessions to; every one is closed on exit."""
    sessions: list[MqttSession] = []
    try:
        yield sessions
    finally:
        for session in sessions:
            session.close()


def mqtt_remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def mqtt_connect_packet(
    client_id: str, keepalive: int = 60, username: str | None = None, password: str | None = None
) -> bytes:
    """A bare MQTT 3.1.1 CONNECT (clean session): for raw-socket probes without paho."""

    def field(text: str) -> bytes:
        return len(text.encode()).to_bytes(2, "big") + text.encode()

    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive.to_bytes(2, "big") + field(client_id)
    body += b"".join(field(value) for value in (username, password) if value is not None)
    return b"\x10" + mqtt_remaining_length(len(body)) + body


def mqtt_publish_packet(topic: str, payload: bytes, qos: int, packet_id: int = 0) -> bytes:
    """A bare MQTT 3.1.1 PUBLISH (packet id only for QoS > 0)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | qos << 1]) + mqtt_remaining_length(len(body)) + body


def recv_up_to(sock: socket.socket, size: int) -> bytes:
    """Read `size` bytes or whatever arrived before the peer closed (b"" = closed at once)."""
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def raw_mqtt_connect(
    host: str,
    port: int,
    client_id: str,
    *,
    tls_context: ssl.SSLContext | None = None,
    preamble: bytes = b"",
    proxy_protocol: bool = False,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> bytes:
    """One CONNECT on a fresh connection (after `preamble`, or the PROXY line Nginx would send for
    it); returns the reply's first 4 bytes (CONNACK or less)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if proxy_protocol:
            preamble = proxy_v1_header(sock)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=host)  # detaches the plain one
        sock.sendall(preamble + mqtt_connect_packet(client_id, username=username, password=password))
        reply = recv_up_to(sock, 4)
        if reply == CONNACK_ACCEPTED:
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so brokers log a clean goodbye
        return reply
    finally:
        sock.close()


@contextmanager
def soft_nofile(limit: int) -> Iterator[None]:
    """Processes started meanwhile get `limit` open files (a container's nofile, at small scale)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def host_edge(
    stack: ExitStack,
    config: StackConfig,
    plan: ClusterPlan,
    host: HostPlan,
    directory: Path,
    pki: Pki,
    **nginx_overrides: Any,
) -> tuple[list[Mosquitto], Nginx]:
    """One host's edge as the plan has it, stopped with `stack`: a mosquitto per node on the node's
    port (with the brokers' open-files limit), and Nginx running the config the program renders
    for the host, `proxy_protocol` off (mosquitto takes no PROXY header) and `nginx_overrides`."""
    brokers = []
    with soft_nofile(config.broker_nofile_limit):
        for node in host.nodes:
            broker = Mosquitto(directory / node.short_name, port=node.ports.mqtt, verbose_log=False)
            stack.callback(broker.stop)
            broker.start()
            brokers.append(broker)
    settings = dataclasses.replace(nginx_settings(config, plan, host), proxy_protocol=False, **nginx_overrides)
    return brokers, stack.enter_context(Nginx(directory / "nginx", settings, pki))
