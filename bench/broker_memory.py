"""What one idle MQTT client costs an EMQX node: the real EMQX 5.8.6 release (../shared/emqx,
extracted by `python -m tests.support.emqx_release`), one node configured exactly as the program
configures its container (tests/support/emqx_nodes.py: the dev stack's environment, one node),
in a network namespace of its own.

Clients reach the node's plain TCP listener as Nginx's connections do: a PROXY v1 header first
(the listener has `proxy_protocol` on), then an MQTT 3.1.1 CONNECT with clean session and a
60 s keepalive; then they stay idle. Two runs, each on a fresh node:
  authenticated  the program's default: EMQX's built-in database authenticator with the users
                 file the program renders (sha256), every client with the generated client's
                 username and password (and its own client id);
  anonymous      `allowAnonymous: true`: no authenticator, no username or password.
At each --steps count of held clients (added to those of the step before) every client sends a
PINGREQ and reads its PINGRESP, and --settle seconds later we sample the node's VM:
  awake      every connection process has just handled a packet. An idle one hibernates (its
             heap shrunk to fit) after mqtt.idle_timeout (15 s) without a message, and EMQX's
             keepalive check wakes it every mqtt.keepalive_check_interval (30 s): awake half
             the time, all at once after a reconnect storm. The worst case;
  after GC   then `erlang:garbage_collect/1` of every process: close to all hibernated;
each with
  RSS        VmRSS of beam.smp (/proc/PID/status): what the host gives the container. The VM
             keeps the memory it took, so after GC it is the high-water mark;
  erlang     `emqx eval 'erlang:memory().'`: total, and of it processes, ets, binary;
and the node's own count of live connections. KiB per connection: the least-squares slope over
the steps. The figure brokerMemoryPerConnectionKib stands for (the kernel's socket memory is
not in RSS: capacity.py counts it apart).

A benchmark, not a test: it asserts nothing. Needs root (network namespace, the nodes' user)
and the extracted release. Every process here may hold 20,000 descriptors, so the counts stay
small (the slope is what counts). From the project root:

    sudo .venv/bin/python -m bench.broker_memory                       # ~5 minutes
    sudo .venv/bin/python -m bench.broker_memory --steps 0,500,1000 --runs authenticated
"""

from __future__ import annotations

import argparse
import re
import resource
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.connection_capacity import established, slope
from components.config_types import NAMESPACE
from tests.support.emqx_nodes import GENERATED_PASSWORD, ReleaseNode, release_cluster, release_stack
from tests.support.lb_stack import CONNACK_ACCEPTED, mqtt_connect_packet, proxy_v1_header, recv_up_to
from tests.support.netns import entered, scratch_namespace

PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"
RUNS = ("authenticated", "anonymous")
ZONE_KEYS = ("idle_timeout", "keepalive_check_interval")


# --------------------------------------------------------------------------- the node's VM


def beam_pid(node: ReleaseNode) -> int:
    """The node's beam.smp: the PID `bin/emqx foreground` started (it execs the VM), else a
    descendant of it called so."""
    assert node.process is not None
    pending = [node.process.pid]
    while pending:
        pid = pending.pop()
        if Path(f"/proc/{pid}/comm").read_text().strip().startswith("beam"):
            return pid
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pending.extend(int(child) for child in children)
    raise LookupError(f"no beam.smp under PID {node.process.pid}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS in /proc/{pid}/status")


def evaluated(node: ReleaseNode, expression: str) -> str:
    """`emqx eval <expression>` as the node's user: what it printed."""
    done = node.emqx("eval", expression, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"emqx eval {expression!r} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done.stdout.strip()


def erlang_memory(node: ReleaseNode) -> dict[str, int]:
    """erlang:memory() of the node, bytes by type."""
    text = evaluated(node, "erlang:memory().")
    return {kind: int(value) for kind, value in re.findall(r"\{(\w+),\s*(\d+)\}", text)}


def live_connections(node: ReleaseNode) -> int:
    """The node's own count (emqx_stats, what `emqx ctl broker stats` prints)."""
    return int(evaluated(node, "emqx_stats:getstat('live_connections.count')."))


# --------------------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Login:
    username: str | None
    password: str | None


class HeldClients:
    """Idle MQTT clients on plain sockets: PROXY v1 header, CONNECT, CONNACK; afterwards only the
    PINGREQs `ping_all` sends (each step, well within EMQX's 1.5 x keepalive)."""

    def __init__(self, host: str, port: int, login: Login, keepalive: int, parallel: int) -> None:
        self.host, self.port, self.login, self.keepalive, self.parallel = host, port, login, keepalive, parallel
        self.sockets: list[socket.socket] = []
        self.failed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _connect(self, client_id: str) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=15)
        except OSError as error:
            with self._lock:
                self.failed[type(error).__name__] += 1
            return
        try:
            connect = mqtt_connect_packet(client_id, self.keepalive, self.login.username, self.login.password)
            sock.sendall(proxy_v1_header(sock) + connect)
            reply = recv_up_to(sock, 4)
        except OSError as error:
            reply = type(error).__name__.encode()
        with self._lock:
            if reply == CONNACK_ACCEPTED:
                self.sockets.append(sock)
                return
            self.failed[reply.hex() if reply[:1] == b"\x20" else reply.decode(errors="replace") or "closed"] += 1
        sock.close()

    def grow_to(self, count: int, prefix: str) -> float:
        """Connect clients until `count` are held (or tried); the seconds it took."""
        started = time.monotonic()
        first = len(self.sockets) + sum(self.failed.values())
        with ThreadPoolExecutor(self.parallel) as pool:
            list(pool.map(self._connect, (f"{prefix}-{n}" for n in range(first, count))))
        return time.monotonic() - started

    def ping_all(self) -> int:
        """A PINGREQ from every held client, then its PINGRESP read: every client's connection
        process has just handled a packet (awake, not hibernated). How many answered."""
        for sock in self.sockets:
            with suppress(OSError):
                sock.sendall(PINGREQ)
        answered = 0
        for sock in self.sockets:
            with suppress(OSError):
                answered += recv_up_to(sock, 2) == PINGRESP
        return answered

    def close(self) -> None:
        for sock in self.sockets:
            with suppress(OSError):
                sock.sendall(DISCONNECT)
            sock.close()


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Reading:
    rss_kib: int
    memory: dict[str, int]  # erlang:memory(), bytes

    def kib(self, kind: str) -> float:
        """KiB of `kind`: "RSS", or an erlang:memory() type."""
        return self.rss_kib if kind == "RSS" else self.memory.get(kind, 0) / 1024


@dataclass(frozen=True)
class Sample:
    clients: int
    held: int  # ESTABLISHED sockets of the node's listener
    live: int  # the node's live_connections.count
    answered: int  # PINGRESPs to the step's pings
    awake: Reading  # just after every client's PINGREQ was answered
    collected: Reading  # then after a garbage collection of every process


COLUMNS = ("RSS", "total", "processes", "ets", "binary")  # what a Reading shows
COLLECT_ALL = "lists:foreach(fun erlang:garbage_collect/1, erlang:processes())."


def reading(node: ReleaseNode, pid: int) -> Reading:
    return Reading(rss_kib(pid), erlang_memory(node))


def stack_for(run: str, directory: Path) -> dict[str, Any]:
    """The dev stack with one node; without authentication for `anonymous` (the dev stack's
    generated client and its rule go with it)."""
    if run == "authenticated":
        return release_stack(directory / run, nodes=1)
    stack = release_stack(directory / run, nodes=1, allowAnonymous=True)
    dropped = {f"{NAMESPACE}:mqttGeneratedClient", f"{NAMESPACE}:mqttAcl"}
    return {key: value for key, value in stack.items() if key not in dropped}


def measure_run(run: str, args: argparse.Namespace, directory: Path) -> list[Sample]:
    samples: list[Sample] = []
    with release_cluster(stack_for(run, directory)) as cluster:
        node = cluster.node(1)
        pid = beam_pid(node)
        host, port = node.plan.mqtt_endpoint.rsplit(":", 1)
        generated = cluster.config.access.generated_client
        login = Login(generated, GENERATED_PASSWORD) if run == "authenticated" else Login(None, None)
        zone = {key: evaluated(node, f"emqx_config:get_zone_conf(default, [mqtt, {key}]).") for key in ZONE_KEYS}
        print(
            f"\n   [{run}] node {node.name} booted in {cluster.boot_seconds[node.name]:.1f}s, beam.smp PID {pid}, "
            f"MQTT {node.plan.mqtt_endpoint} (PROXY v1 + CONNECT, username {login.username or '-'}); "
            + ", ".join(f"mqtt.{key} {value} ms" for key, value in zone.items()),
            flush=True,
        )
        time.sleep(args.settle)
        clients = HeldClients(host, int(port), login, args.keepalive, args.parallel)
        try:
            for count in args.steps:
                seconds = clients.grow_to(count, f"bench-{run}")
                answered = clients.ping_all()
                time.sleep(args.settle)
                awake = reading(node, pid)
                evaluated(node, COLLECT_ALL)
                collected = reading(node, pid)
                held, live = established(int(port)), live_connections(node)
                samples.append(Sample(count, held, live, answered, awake, collected))
                print(
                    f"   [{run}] {count} clients: {held} held, {live} live on the node, {answered} answered a ping, "
                    f"failed {dict(clients.failed) or 0}, connected in {seconds:.1f}s",
                    flush=True,
                )
        finally:
            clients.close()
    return samples


def per_connection(samples: Sequence[Sample], state: str) -> dict[str, float | None]:
    """KiB per held connection of each column in `state` ("awake", "collected"): the
    least-squares slope over `samples`."""
    return {kind: slope([(s.held, getattr(s, state).kib(kind)) for s in samples]) for kind in COLUMNS}


def print_table(run: str, samples: Sequence[Sample]) -> dict[str, dict[str, float | None]]:
    print(f"\n   {run}: awake (every client's PINGREQ just answered) | after a GC of every process")
    names = [f"{'erl ' if kind != 'RSS' else ''}{kind}" for kind in COLUMNS]
    header = (
        f"   {'clients':>8} {'held':>6} "
        + " ".join(f"{n:>13}" for n in names)
        + " | "
        + " ".join(f"{n:>13}" for n in names)
    )
    print(header + "   (KiB)")
    print("   " + "-" * (len(header) - 3))
    for s in samples:
        print(
            f"   {s.clients:>8} {s.held:>6} "
            + " ".join(f"{s.awake.kib(kind):>13.0f}" for kind in COLUMNS)
            + " | "
            + " ".join(f"{s.collected.kib(kind):>13.0f}" for kind in COLUMNS)
        )
    slopes = {state: per_connection(samples, state) for state in ("awake", "collected")}

    def shown(values: dict[str, float | None]) -> str:
        return " ".join(f"{'n/a' if values[kind] is None else f'{values[kind]:.1f}':>13}" for kind in COLUMNS)

    print(f"   {'KiB/conn':>15} {shown(slopes['awake'])} | {shown(slopes['collected'])}")
    return slopes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=lambda text: [int(n) for n in text.split(",")], default=[0, 1000, 2000, 4000, 8000]
    )
    parser.add_argument("--runs", type=lambda text: text.split(","), default=list(RUNS))
    parser.add_argument(
        "--settle", type=float, default=3, help="seconds from the pings' answers to a sample (under mqtt.idle_timeout)"
    )
    parser.add_argument("--keepalive", type=int, default=60, help="the clients' MQTT keepalive, seconds")
    parser.add_argument("--parallel", type=int, default=8, help="connects in flight at once")
    args = parser.parse_args(argv)
    unknown = set(args.runs) - set(RUNS)
    if unknown:
        parser.error(f"--runs: {sorted(unknown)}: allowed: {', '.join(RUNS)}")
    # Clients and node inherit this: every held client is a descriptor on each side.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(args.steps) + 1024 > hard:
        parser.error(f"--steps: at most {hard - 1024} clients (nofile limit {hard}, 1024 kept by EMQX)")

    print(
        f"EMQX 5.8.6 release, one node; {', '.join(args.runs)} clients, keepalive {args.keepalive}s; "
        f"steps {args.steps}, sampled {args.settle:.0f}s after every client's ping; nofile {hard}",
        flush=True,
    )
    results: dict[str, dict[str, dict[str, float | None]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-broker-memory-") as work, ExitStack() as stack:
        netns = stack.enter_context(scratch_namespace("emqx-bench"))
        stack.enter_context(entered(netns))
        for run in args.runs:
            results[run] = print_table(run, measure_run(run, args, Path(work)))

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    print("\n   KiB per idle connection    RSS   erlang:memory(total)   (after a GC: RSS, total)")
    for run, slopes in results.items():
        awake, collected = slopes["awake"], slopes["collected"]
        print(
            f"   {run:<22} {shown(awake['RSS']):>7}   {shown(awake['total']):>20}   "
            f"({shown(collected['RSS'])}, {shown(collected['total'])})"
        )
    print("   (brokerMemoryPerConnectionKib: the highest of these, with a margin; the kernel's sockets apart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
