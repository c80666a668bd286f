"""The broker's part, measured on real EMQX: boot and join times, QoS 1 throughput and latency.

Three nodes of the real EMQX 5.8.6 release (../shared/emqx, extracted by `python -m
tests.support.emqx_release`), each configured exactly as the program configures its container
(tests/support/emqx_nodes.py: the dev stack's environment), in a network namespace of their own.

Boot and join, one node at a time:
  boot      from `bin/emqx foreground` to `emqx ctl status` printing `is started` (polled; one
            `ctl` call takes about a second, so the figure is late by up to one call), and, in
            brackets, to `GET /api/v5/status` saying running (polled every 0.2 s alongside);
  join      `emqx ctl cluster join <seed>` on nodes 2 and 3, until the seed's `cluster status
            --json` lists the node as running;
  rollout   one node replaced as a wave replaces it (its data kept, as the host's data dir is):
            SIGTERM until it exits, boot again, `cluster join` again (the program's join script
            runs it after every start; an `already_in_cluster` answer is success), until the
            seed lists it running. Nodes of one wave roll side by side: a wave takes about one
            node's time.

Throughput and latency: one publisher sends QoS 1 messages (MQTT 3.1.1, 64 B, the send time of
CLOCK_MONOTONIC in the payload) with at most --inflight unacknowledged; --subscribers
subscribers (QoS 1, separate processes, each PUBACKs every delivery) take every message and
note receive time - send time. Clients log in as the dev stack's generated client. Routes:
  same node        publisher and subscribers on node 1's plain listener (a PROXY v1 header
                   first when the listener expects it, as Nginx's connections have it);
  other node       publisher on node 1, subscribers on node 2 (the message crosses the cluster);
  nginx TLS        every client through Nginx running the config the program renders for the
                   stack (tests/support/lb_stack.py's Nginx, the test PKI's certificate), TLS 1.3,
                   PROXY protocol to the nodes; Nginx balances them over the 3 nodes.
Each route flat out (msgs/s = messages / time to the last PUBACK; the latencies then
include the queue the inflight window builds, and a publisher faster than its subscribers fills
their sessions' queues: EMQX then drops (the cluster's `delivery.dropped.*` counters are printed);
and paced at each of --modes' rates (latency below saturation).

A benchmark, not a test: it asserts nothing. The clients are Python and share the machine's
cores with the nodes and Nginx: read the routes against each other. Needs root (network
namespace, the nodes' user), nginx and the extracted release. From the project root:

    sudo .venv/bin/python -m bench.broker_throughput                 # ~4 minutes
    sudo .venv/bin/python -m bench.broker_throughput --messages 20000 --subscribers 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.lb_throughput import cpu_model, take_pubacks
from components.render.nginx import nginx_settings
from tests.support.emqx_nodes import GENERATED_PASSWORD, ReleaseCluster, ReleaseNode, release_cluster, release_stack
from tests.support.lb_stack import (
    CONNACK_ACCEPTED,
    Nginx,
    make_pki,
    missing_prerequisites,
    mqtt_connect_packet,
    mqtt_publish_packet,
    mqtt_remaining_length,
    proxy_v1_header,
    recv_up_to,
)
from tests.support.netns import entered, scratch_namespace

DISCONNECT = b"\xe0\x00"
PUBLISH_TYPE = 0x3
SUBACK_QOS1 = b"\x90\x03\x00\x01\x01"
STAMP = struct.Struct("!QQ")  # send time (ns, CLOCK_MONOTONIC), sequence number
PAYLOAD_SIZE = 64
TOPIC = "dev/bench/throughput"  # the dev stack's ACL allows its client dev/#


# --------------------------------------------------------------------------- boot and join


def wait_ctl_started(node: ReleaseNode, timeout: float = 120) -> float:
    """Seconds from now until `emqx ctl status` says the node is started."""
    started = time.monotonic()
    while True:
        done = node.ctl("status")
        if "is started" in done.stdout:
            return time.monotonic() - started
        if not node.running:
            raise RuntimeError(f"{node.name} exited while booting:\n{node.console_tail()}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{node.name} not started after {timeout:.0f}s:\n{node.console_tail()}")
        time.sleep(0.1)


def wait_listed_running(seed: ReleaseNode, node: ReleaseNode, timeout: float = 120) -> float:
    """Seconds from now until the seed's `cluster status --json` lists `node` as running."""
    started = time.monotonic()
    while node.name not in seed.cluster_status().get("running_nodes", []):
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{node.name} not running in {seed.name}'s cluster after {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started


def boot(node: ReleaseNode) -> tuple[float, float]:
    """Start `node`: seconds until `emqx ctl status` says started, and until its `GET
    /api/v5/status` (polled every 0.2 s alongside, ReleaseNode.wait_started) said running."""
    api: list[float] = []
    watcher = threading.Thread(target=lambda: api.append(node.wait_started()), daemon=True)
    node.start()
    watcher.start()
    ctl = wait_ctl_started(node)
    watcher.join(130)
    return ctl, api[0] if api else float("nan")


def join(seed: ReleaseNode, node: ReleaseNode) -> tuple[float, str]:
    """`cluster join <seed>` on `node`, until the seed lists it running: seconds, and the
    command's answer (first line)."""
    started = time.monotonic()
    done = node.ctl("cluster", "join", seed.name)
    wait_listed_running(seed, node)
    answer = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if not answer:
        return time.monotonic() - started, f"exit {done.returncode}"
    return time.monotonic() - started, answer[0] if len(answer[0]) <= 50 else answer[0][:47] + "..."


def measure_formation(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    print("\n   node             boot: ctl status started (API status)   join: until the seed lists it running")
    for node in cluster.nodes:
        ctl, api = boot(node)
        if node is seed:
            print(f"   {node.name:<16} {ctl:>6.1f}s ({api:.1f}s)", flush=True)
            continue
        joined, answer = join(seed, node)
        print(f"   {node.name:<16} {ctl:>6.1f}s ({api:.1f}s)   {joined:>6.1f}s  ({answer})", flush=True)
    one_call = time.monotonic()
    seed.ctl("status")
    print(f"   (one `emqx ctl status` call takes {time.monotonic() - one_call:.2f}s: the boot figures' resolution)")

    node = cluster.node(len(cluster.nodes))
    started = time.monotonic()
    node.stop()
    stopped = time.monotonic() - started
    booted, api = boot(node)
    joined, answer = join(seed, node)
    print(
        f"\n   rollout of {node.name} (data kept): stop {stopped:.1f}s + boot {booted:.1f}s ({api:.1f}s) "
        f"+ join {joined:.1f}s = {stopped + booted + joined:.1f}s per wave  ({answer})",
        flush=True,
    )


# --------------------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects, and how."""

    host: str
    port: int
    proxy_header: bool  # a PROXY v1 header first (a node's listener with proxy_protocol)
    ca_file: str | None  # TLS, trusting this CA


def session(endpoint: Endpoint, client_id: str, username: str) -> socket.socket:
    """TCP [+TLS] [+PROXY header] + CONNECT, returned once the broker accepted it."""
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=30)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        preamble = proxy_v1_header(sock) if endpoint.proxy_header else b""
        if endpoint.ca_file is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cafile=endpoint.ca_file)
            sock = context.wrap_socket(sock, server_hostname=endpoint.host)
        sock.sendall(preamble + mqtt_connect_packet(client_id, 60, username, GENERATED_PASSWORD))
        if (reply := recv_up_to(sock, 4)) != CONNACK_ACCEPTED:
            raise RuntimeError(f"{client_id} at {endpoint.host}:{endpoint.port}: CONNECT got {reply!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def subscribe_packet(topic: str, packet_id: int = 1) -> bytes:
    name = topic.encode()
    body = packet_id.to_bytes(2, "big") + len(name).to_bytes(2, "big") + name + b"\x01"
    return b"\x82" + mqtt_remaining_length(len(body)) + body


def subscriber(
    endpoint: Endpoint, client_id: str, username: str, expected: int, pipe: multiprocessing.connection.Connection
) -> None:
    """A subscriber process: subscribe, say "ready", then take `expected` messages (or until
    nothing came for 20 s) and send back the latencies (ns) and the last receive time."""
    latencies: list[int] = []
    last = 0
    try:
        sock = session(endpoint, client_id, username)
        sock.sendall(subscribe_packet(TOPIC))
        if (reply := recv_up_to(sock, 5)) != SUBACK_QOS1:
            raise RuntimeError(f"SUBSCRIBE got {reply!r}")
        pipe.send("ready")
        sock.settimeout(20)
        pending = b""
        while len(latencies) < expected:
            try:
                data = sock.recv(262144)
            except TimeoutError:
                break
            now = time.monotonic_ns()
            if not data:
                break
            pending += data
            acks = []
            offset = 0
            while True:  # whole packets only
                if len(pending) - offset < 2:
                    break
                length = multiplier = 0
                index = offset + 1
                while True:
                    if index >= len(pending):
                        length = -1
                        break
                    byte = pending[index]
                    length += (byte & 0x7F) << multiplier
                    multiplier += 7
                    index += 1
                    if not byte & 0x80:
                        break
                if length < 0 or index + length > len(pending):
                    break
                first = pending[offset]
                if first >> 4 == PUBLISH_TYPE:
                    topic_length = int.from_bytes(pending[index : index + 2], "big")
                    at = index + 2 + topic_length
                    if first & 0x06:  # QoS 1: a packet id to acknowledge
                        acks.append(b"\x40\x02" + pending[at : at + 2])
                        at += 2
                    sent, _ = STAMP.unpack_from(pending, at)
                    latencies.append(now - sent)
                    last = now
                offset = index + length
            pending = pending[offset:]
            if acks:
                sock.sendall(b"".join(acks))
        with suppress(OSError):
            sock.sendall(DISCONNECT)
        sock.close()
    except BaseException as error:  # reported by the parent
        pipe.send(f"error: {error!r}")
        return
    pipe.send(json.dumps({"latencies": latencies, "last": last}))


def publish(sock: socket.socket, messages: int, inflight: int, rate: float | None) -> tuple[int, int]:
    """QoS 1 PUBLISHes, each stamped with its send time, at most `inflight` unacknowledged and,
    with `rate`, no faster than `rate` per second; until every PUBACK. (start, end) in ns."""
    padding = b"\x00" * (PAYLOAD_SIZE - STAMP.size)
    sent = acked = 0
    pending = b""
    start = time.monotonic_ns()
    while acked < messages:
        now = time.monotonic_ns()
        due = messages if rate is None else min(messages, int((now - start) * rate / 1e9) + 1)
        room = min(inflight - (sent - acked), due - sent)
        if room > 0:
            stamp = time.monotonic_ns()
            sock.sendall(
                b"".join(
                    mqtt_publish_packet(TOPIC, STAMP.pack(stamp, sent + k) + padding, 1, (sent + k) % 65535 + 1)
                    for k in range(room)
                )
            )
            sent += room
        if rate is not None and sent < messages and sent - acked < inflight:
            wait = (start + sent * 1e9 / rate - time.monotonic_ns()) / 1e9
            sock.settimeout(max(wait, 0.0001))
        else:
            sock.settimeout(30)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            raise RuntimeError(f"connection closed after {acked} PUBACKs")
        complete, pending = take_pubacks(pending + data)
        acked += complete
    return start, time.monotonic_ns()


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Route:
    label: str
    publisher: Endpoint
    subscribers: Endpoint


@dataclass(frozen=True)
class Result:
    route: str
    mode: str
    published_per_s: float  # messages / time to the last PUBACK
    delivered_per_s: float  # deliveries (all subscribers) / time to the last one
    received: int
    expected: int
    p50_ms: float
    p99_ms: float
    load: tuple[float, float, float]
    placed: str  # which nodes the clients landed on
    drops: dict[str, int]  # the cluster's dropped counters that grew meanwhile


def percentile(values: Sequence[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6 if ordered else float("nan")


def placement(cluster: ReleaseCluster, client_ids: Sequence[str]) -> str:
    """Which node holds each client (the REST API's clients/{id}), shortened: p:emqx1 s:emqx2,..."""
    places = []
    for client_id in client_ids:
        status, body = cluster.node(1).api("GET", f"/api/v5/clients/{client_id}")
        node = json.loads(body).get("node", "?") if status == 200 else f"HTTP {status}"
        places.append(f"{client_id.rsplit('-', 1)[-1]}:{str(node).split('@', 1)[0]}")
    return " ".join(places)


def dropped(cluster: ReleaseCluster) -> dict[str, int]:
    """The cluster's `delivery.dropped*` and `messages.dropped*` counters (GET /api/v5/metrics
    ?aggregate=true): where undelivered messages went."""
    status, body = cluster.node(1).api("GET", "/api/v5/metrics?aggregate=true")
    if status != 200:
        return {}
    document = json.loads(body)
    rows = document if isinstance(document, list) else [document]
    totals: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            if "dropped" in key and isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    return totals


def run_route(
    cluster: ReleaseCluster, route: Route, mode: str, args: argparse.Namespace, tag: str, username: str
) -> Result:
    rate = None if mode == "flat" else float(mode.removesuffix("/s"))
    messages = args.messages if rate is None else args.paced_messages
    context = multiprocessing.get_context("fork")  # the children stay in this thread's namespace
    children: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []
    ids = [f"{tag}-s{n}" for n in range(args.subscribers)]
    try:
        for client_id in ids:
            parent, child = context.Pipe(duplex=False)
            process = context.Process(
                target=subscriber, args=(route.subscribers, client_id, username, messages, child), daemon=True
            )
            process.start()
            child.close()
            children.append((process, parent))
        for _, pipe in children:
            if not pipe.poll(60) or (answer := pipe.recv()) != "ready":
                raise RuntimeError(f"{route.label}: a subscriber did not subscribe")
        publisher_id = f"{tag}-p"
        sock = session(route.publisher, publisher_id, username)
        placed = placement(cluster, [publisher_id, *ids])
        time.sleep(1)  # the subscriptions' routes reach every node
        before = dropped(cluster)
        try:
            start, end = publish(sock, messages, args.inflight, rate)
        finally:
            with suppress(OSError):
                sock.sendall(DISCONNECT)
            sock.close()
        latencies: list[int] = []
        last = end
        for child_process, pipe in children:
            answer = pipe.recv() if pipe.poll(60) else "error: no answer"
            if answer.startswith("error"):
                raise RuntimeError(f"{route.label}: subscriber: {answer}")
            report = json.loads(answer)
            latencies.extend(report["latencies"])
            last = max(last, report["last"])
            child_process.join(10)
        after = dropped(cluster)
    finally:
        for child_process, pipe in children:
            if child_process.is_alive():
                child_process.kill()
            pipe.close()
    return Result(
        route.label,
        mode,
        messages / ((end - start) / 1e9),
        len(latencies) / ((last - start) / 1e9),
        len(latencies),
        messages * args.subscribers,
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        os.getloadavg(),
        placed,
        {key: value - before.get(key, 0) for key, value in after.items() if value > before.get(key, 0)},
    )


def measure_routes(cluster: ReleaseCluster, args: argparse.Namespace, work: Path, stack: ExitStack) -> list[Result]:
    node1, node2 = cluster.node(1), cluster.node(2)
    proxy = cluster.plan.proxy_protocol

    def plain(node: ReleaseNode) -> Endpoint:
        host, port = node.plan.mqtt_endpoint.rsplit(":", 1)
        return Endpoint(host, int(port), proxy, None)

    routes = [
        Route("same node (plain)", plain(node1), plain(node1)),
        Route("other node (plain)", plain(node1), plain(node2)),
    ]
    if args.nginx:
        pki = make_pki(work / "pki")
        nginx = stack.enter_context(Nginx(work / "nginx", nginx_settings(cluster.config, cluster.plan), pki))
        host, port = nginx.address
        through = Endpoint(host, port, False, str(pki.ca_cert))
        routes.append(Route(f"nginx TLS ({nginx.settings.balancing})", through, through))
        print(
            f"\n   Nginx: the rendered config, {host}:{port} -> {', '.join(nginx.settings.upstreams)} "
            f"(proxy_protocol {'on' if nginx.settings.proxy_protocol else 'off'})",
            flush=True,
        )
    username = cluster.config.access.generated_client or ""
    results = []
    for number, route in enumerate(routes):
        for mode in args.modes:
            best: Result | None = None
            for run in range(args.repeat):
                result = run_route(cluster, route, mode, args, f"b{number}m{args.modes.index(mode)}r{run}", username)
                print(
                    f"   {route.label:<28} {mode:<6} run {run + 1}: {result.published_per_s:>7.0f} msgs/s, "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, {result.received}/{result.expected} "
                    f"delivered; clients {result.placed}; load {result.load[0]:.2f}"
                    + (f"; EMQX dropped {result.drops}" if result.drops else ""),
                    flush=True,
                )
                if best is None or result.delivered_per_s > best.delivered_per_s:
                    best = result
            assert best is not None
            results.append(best)
    return results


def print_table(results: Sequence[Result], args: argparse.Namespace) -> None:
    print(
        f"\n   QoS 1, 1 publisher -> {args.subscribers} subscriber(s), {PAYLOAD_SIZE} B; flat out: {args.messages} "
        f"messages, inflight {args.inflight}; paced: {args.paced_messages} at each rate; "
        f"best of {args.repeat} by delivered/s"
    )
    header = (
        f"   {'route':<28} {'mode':<6} {'msgs/s':>8} {'delivered/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'lost':>5}  load avg (1, 5, 15 min)"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    for r in results:
        print(
            f"   {r.route:<28} {r.mode:<6} {r.published_per_s:>8.0f} {r.delivered_per_s:>11.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.expected - r.received:>5}  {r.load[0]:.2f} {r.load[1]:.2f} {r.load[2]:.2f}"
        )


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000, help="messages flat out (default 10000)")
    parser.add_argument("--paced-messages", type=int, default=5000, help="messages paced (default 5000)")
    parser.add_argument("--subscribers", type=int, default=2, help="subscribers, each takes every message")
    parser.add_argument("--inflight", type=int, default=32, help="unacknowledged PUBLISHes at most (default 32)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per route and mode; the best shown")
    parser.add_argument(
        "--modes",
        type=lambda text: [mode if mode == "flat" else f"{int(mode)}/s" for mode in text.split(",")],
        default=["flat", "1000/s", "5000/s"],
        help="flat (as fast as PUBACKs come) and paced rates in msgs/s (default flat,1000,5000)",
    )
    parser.add_argument("--no-nginx", dest="nginx", action="store_false", help="direct routes only")
    parser.add_argument("--no-formation", dest="formation", action="store_false", help="skip boot and join")
    args = parser.parse_args(argv)
    if args.nginx and (missing := [m for m in missing_prerequisites() if "mosquitto" not in m]):
        parser.error(f"missing: {', '.join(missing)} (or --no-nginx)")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    print(
        f"EMQX 5.8.6 release, 3 nodes; CPU {cpu_model()} x {os.cpu_count()}; load average {load()}; nofile {hard}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-broker-throughput-") as work, ExitStack() as stack:
        netns = stack.enter_context(scratch_namespace("emqx-bench"))
        stack.enter_context(entered(netns))
        config = release_stack(Path(work) / "stack", nodes=3)
        cluster = stack.enter_context(release_cluster(config, start=not args.formation))
        if args.formation:
            measure_formation(cluster)
        else:
            cluster.arrange(members=range(2, len(cluster.nodes) + 1))
        print(f"   load average after boot and join: {load()}", flush=True)
        results = measure_routes(cluster, args, Path(work), stack)
    print_table(results, args)
    print(f"   load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
