"""What the Nginx TLS load balancer costs: MQTT publish throughput and connection-setup rate.

Starts the stack the integration tests prove (tests/support/lb_stack.py: Nginx from our
renderer, mosquitto brokers behind the PROXY shim) and measures the same workload along:

  direct TCP        one mosquitto's plain listener (the baseline)
  direct TLS        one mosquitto's own TLS listener (same trustme cert), no load balancer
  nginx TLS         Nginx TLS -> brokers' plain listeners, proxy_protocol off (Nginx alone)
  nginx TLS+PROXY   Nginx TLS -> PROXY header -> shim -> brokers: the tested path

Throughput: N clients (MQTT 3.1.1) each publish M messages, at most --inflight unacknowledged,
and wait for every PUBACK.
Connects: N threads open fresh connections (TCP [+TLS] + CONNECT/CONNACK + DISCONNECT).
A benchmark, not a test: numbers depend on the machine; the clients are Python and share
its cores with the brokers, so read the ratios, not the absolute figures.

    .venv/bin/python -m bench.lb_throughput --clients 8 --messages 500 --qos 1 --brokers 3

(from the project root: the stack is imported as the package `tests.support.lb_stack`)
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.lb_stack import (
    CONNACK_ACCEPTED,
    LOOPBACK,
    Nginx,
    lb_settings,
    make_pki,
    missing_prerequisites,
    mqtt_connect_packet,
    mqtt_publish_packet,
    raw_mqtt_connect,
    recv_up_to,
    running_backends,
)
from tests.support.ports import free_port

PINGREQ, PINGRESP, DISCONNECT = b"\xc0\x00", b"\xd0\x00", b"\xe0\x00"
PUBACK_TYPE = 0x40


@dataclass(frozen=True)
class Route:
    """One way into the brokers."""

    label: str
    host: str
    port: int
    tls: ssl.SSLContext | None
    brokers: int


@dataclass(frozen=True)
class Result:
    route: Route
    connects_per_s: float
    msgs_per_s: float


def take_pubacks(pending: bytes) -> tuple[int, bytes]:
    """The complete PUBACKs (4 bytes each) at the head of what a publisher read, and the rest."""
    complete = len(pending) // 4
    if any(pending[k * 4] != PUBACK_TYPE for k in range(complete)):
        raise RuntimeError(f"unexpected packet in {pending[:16]!r}")
    return complete, pending[complete * 4 :]


def run_threads(count: int, work: Callable[[int], None]) -> float:
    """Run `work(i)` in `count` threads released together; seconds until the last one ends."""
    barrier = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} worker(s) failed; first: {errors[0]!r}") from errors[0]
    return elapsed


def connect_rate(route: Route, clients: int, connects: int, tag: str) -> float:
    per_client = max(1, connects // clients)

    def work(index: int) -> None:
        for n in range(per_client):
            reply = raw_mqtt_connect(route.host, route.port, f"{tag}-c{index}-{n}", tls_context=route.tls)
            if reply != CONNACK_ACCEPTED:
                raise RuntimeError(f"{route.label}: CONNECT got {reply!r}")

    return clients * per_client / run_threads(clients, work)


def open_session(route: Route, client_id: str) -> socket.socket:
    """TCP [+TLS] + CONNECT, returning the socket once the broker accepted it."""
    sock = socket.create_connection((route.host, route.port), timeout=30)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if route.tls is not None:
            sock = route.tls.wrap_socket(sock, server_hostname=route.host)
        sock.sendall(mqtt_connect_packet(client_id))
        if (reply := recv_up_to(sock, 4)) != CONNACK_ACCEPTED:
            raise RuntimeError(f"{route.label}: CONNECT got {reply!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def publish_all(sock: socket.socket, topic: str, payload: bytes, messages: int, qos: int, inflight: int) -> None:
    """Publish `messages` keeping at most `inflight` unacknowledged, and wait for every PUBACK.

    A lean pipelined client: paho's Python loop tops out well below what the brokers and
    Nginx can do here, and would make every route look alike.
    """
    if qos == 0:
        sock.sendall(b"".join(mqtt_publish_packet(topic, payload, 0) for _ in range(messages)))
        sock.sendall(PINGREQ)  # answered after everything before it was processed
        if recv_up_to(sock, 2) != PINGRESP:
            raise RuntimeError("no PINGRESP")
        return
    sent = acked = 0
    pending = b""
    while acked < messages:
        room = min(inflight - (sent - acked), messages - sent)
        if room > 0:
            sock.sendall(b"".join(mqtt_publish_packet(topic, payload, 1, (sent + k) % 65535 + 1) for k in range(room)))
            sent += room
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"connection closed after {acked} PUBACKs")
        complete, pending = take_pubacks(pending + data)
        acked += complete


def publish_rate(routes: Sequence[Route], clients: int, messages: int, qos: int, inflight: int, tag: str) -> float:
    """Messages per second from `clients` publishers, spread round-robin over `routes`."""
    payload = os.urandom(64)
    sessions: list[socket.socket] = []
    try:
        for index in range(clients):
            sessions.append(open_session(routes[index % len(routes)], f"{tag}-p{index}"))

        def work(index: int) -> None:
            publish_all(sessions[index], f"bench/{tag}/{index}", payload, messages, qos, inflight)

        return clients * messages / run_threads(clients, work)
    finally:
        for sock in sessions:
            with suppress(OSError):
                sock.sendall(DISCONNECT)
            sock.close()


def e2e_toolchain() -> Path | None:
    """The e2e toolchain's bin dir where the real engine can run here (printing the machine),
    else None after saying why: the benchmarks that deploy stacks need both."""
    from tests.support.e2e.host import missing_requirements
    from tests.support.e2e.pulumi_cli import toolchain_bin

    missing = missing_requirements()
    bin_dir = toolchain_bin()
    if missing or bin_dir is None:
        print("cannot run:", "; ".join(missing) or "build the toolchain with scripts/e2e-toolchain")
        return None
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    return bin_dir


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    tcp, tls = results[0], results[1]
    print()
    print(
        f"CPU: {cpu_model()} x {os.cpu_count()} (nproc {len(os.sched_getaffinity(0))}); Python {platform.python_version()}"
    )
    print(
        f"workload: {args.clients} clients x {args.messages} msgs QoS {args.qos} (64 B, inflight {args.inflight}), "
        f"{args.connects} connects; LB balancing {args.balancing} over {args.brokers} brokers; "
        f"median of {args.repeat} runs"
    )
    header = f"{'route':<34} {'brokers':>7} {'connects/s':>11} {'msgs/s':>9} {'conn/TCP':>9} {'msgs/TCP':>9} {'conn/TLS':>9} {'msgs/TLS':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.route.label:<34} {r.route.brokers:>7} {r.connects_per_s:>11.0f} {r.msgs_per_s:>9.0f} "
            f"{r.connects_per_s / tcp.connects_per_s:>9.2f} {r.msgs_per_s / tcp.msgs_per_s:>9.2f} "
            f"{r.connects_per_s / tls.connects_per_s:>9.2f} {r.msgs_per_s / tls.msgs_per_s:>9.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--messages", type=int, default=5000, help="messages per client (default 5000)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--brokers", type=int, default=3, help="brokers behind the load balancer (default 3)")
    parser.add_argument("--connects", type=int, default=800, help="connections per route for connects/s (default 800)")
    parser.add_argument("--inflight", type=int, default=32, help="unacked QoS 1 messages per client (default 32)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per route; the table shows medians (default 3)")
    parser.add_argument(
        "--balancing",
        choices=("round_robin", "least_conn", "random", "hash_client_address"),
        default="least_conn",
    )
    args = parser.parse_args(argv)
    if missing := missing_prerequisites():
        parser.error(f"missing: {', '.join(missing)}")

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lb-bench-")))
        pki = make_pki(tmp / "pki")
        backends = stack.enter_context(running_backends(tmp, args.brokers, pki=pki, tls=True, verbose_log=False))
        with_proxy = Nginx(
            tmp / "nginx-proxy",
            lb_settings(free_port(), [b.upstream for b in backends], balancing=args.balancing),
            pki,
        )
        without_proxy = Nginx(
            tmp / "nginx-plain",
            lb_settings(
                free_port(),
                [f"{LOOPBACK}:{b.mosquitto.port}" for b in backends],
                balancing=args.balancing,
                proxy_protocol=False,
            ),
            pki,
        )
        stack.enter_context(with_proxy)
        stack.enter_context(without_proxy)

        first = backends[0].mosquitto
        assert first.tls_port is not None
        routes = [
            Route("direct TCP (mosquitto)", LOOPBACK, first.port, None, 1),
            Route("direct TLS (mosquitto)", LOOPBACK, first.tls_port, pki.client_context(), 1),
            Route("nginx TLS, no PROXY", *without_proxy.address, pki.client_context(), args.brokers),
            Route("nginx TLS + PROXY + shim (tested)", *with_proxy.address, pki.client_context(), args.brokers),
        ]
        results = []
        for number, route in enumerate(routes):
            connects, msgs = [], []
            for run in range(args.repeat):
                tag = f"b{number}r{run}"
                connects.append(connect_rate(route, args.clients, args.connects, tag))
                msgs.append(publish_rate([route], args.clients, args.messages, args.qos, args.inflight, tag))
            runs = ", ".join(f"{c:.0f}/{m:.0f}" for c, m in zip(connects, msgs, strict=True))
            print(f"  {route.label}: connects/s / msgs/s per run: {runs}", flush=True)
            results.append(Result(route, statistics.median(connects), statistics.median(msgs)))
    print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
