"""What a held MQTT-over-TLS client costs a host, how fast Nginx shakes hands, and how long a
reconnect storm after an Nginx restart takes: measured on a host's edge as the plan has it.

Each measurement runs a fresh edge in its own network namespace (tests/support/netns.py, with
the plan's ip_local_port_range and reserved ports): real Nginx running the config the program
renders (components/render/nginx.py: `nginx_settings` of the plan, `proxy_protocol` off since
mosquitto takes no PROXY header), one mosquitto per planned node on the node's port
(tests/support/lb_stack.py), and the native load generator (tools/loadgen, Go), its clients
dialing from many 127.x source addresses. Every process here may hold 20,000 descriptors at
most, so the clients are spread over several generator processes (one per thread, each its own
client ids and source range), several Nginx workers and several brokers.

1. Memory per held connection, per component, at each --steps count of held clients, for
   `proxy_buffer_size` 4k (ours) and 16k (Nginx's default). The generators hold their clients
   (idle: no keepalive ping falls in the hold); once every client's connection is established
   on Nginx's and on the brokers' side, we sample:
     Nginx    Pss of master and workers (/proc/PID/smaps_rollup), and of it the shared zones
              (session cache, upstream zones: the `/dev/zero` mappings of /proc/PID/smaps);
     kernel   the delta since just before the clients came of the slab objects in use
              (/proc/slabinfo: active objects x object size, all caches) plus the TCP buffer
              pages (/proc/net/sockstat `TCP ... mem`, pages x 4 KiB); /proc/meminfo `Slab` is
              printed beside it (pages: it misses objects reused from earlier runs). Both are
              machine-wide counters: what else runs on the machine shows up as noise;
     brokers  Pss of the mosquitto processes (not EMQX: the plan's figure for EMQX is a setting);
     loadgen  the generators' own peak RSS (their report's maxRssKiB), summed.
   The per-connection figure is the least-squares slope over the steps. Every client has four
   sockets here (its own, Nginx's two, the broker's); on a real host the client's is elsewhere,
   so the kernel figure is also shown x 3/4 beside KERNEL_KIB_PER_CONNECTION.
2. Handshake rate: `-churn -rounds 2 -resume` (connect, CONNACK, drop; then again with the TLS
   session each client got): round 1 full handshakes per second, round 2 resumed ones, with
   session tickets (ticket_keys=1) and with the session cache alone (ticket_keys=0); Nginx's CPU
   seconds per round give handshakes per Nginx CPU-second, compared with what
   `openssl speed ecdsap256 ecdhx25519` says one core signs and derives.
3. Reconnect storm: --storm-clients clients connect and hold, all drop, Nginx restarts
   (stop, start), all come back with the session they had (`-rounds 2 -resume -hold 0s`): how
   long until all are back (round 2), how many resumed, tickets vs cache only, and the seconds
   100,000 clients would take at that rate.

A benchmark, not a test: it asserts nothing and the figures depend on the machine; the
generators share its cores with Nginx and the brokers. Needs root (network namespaces, and
/proc/slabinfo), nginx with the stream module, mosquitto, Go (to build the generator) and
openssl. From the project root:

    sudo .venv/bin/python -m bench.connection_capacity            # ~4 minutes
    sudo .venv/bin/python -m bench.connection_capacity --quick    # ~2 minutes, smaller counts
    sudo .venv/bin/python -m bench.connection_capacity --only memory --steps 0,2000,4000
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from components.capacity import KERNEL_KIB_PER_CONNECTION, NGINX_KIB_PER_CONNECTION
from components.config import StackConfig, lb_nofile_limit
from components.config_parse import parse_stack_config
from components.plan import ClusterPlan, plan_cluster
from tests.support.lb_stack import Mosquitto, Nginx, Pki, host_edge, make_pki, missing_prerequisites
from tests.support.loadgen import build_loadgen, run_loadgen
from tests.support.netns import entered, scratch_namespace

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Sockets of one client on this machine (its own, Nginx's two, the broker's) and on a real host.
SOCKETS_HERE, SOCKETS_ON_HOST = 4, 3
EXTRAPOLATED_CLIENTS = 100_000


# --------------------------------------------------------------------------- the edge


@dataclass(frozen=True)
class Edge:
    """One host's edge running in its own network namespace."""

    config: StackConfig
    plan: ClusterPlan
    nginx: Nginx
    brokers: list[Mosquitto]
    pki: Pki

    @property
    def broker_ports(self) -> list[int]:
        return [broker.port for broker in self.brokers]

    def loadgen_args(self, clients: int, sources: str, prefix: str, parallel: int) -> list[str]:
        return [
            *("-addr", f"127.0.0.1:{self.plan.lb_port}", "-ca", str(self.pki.ca_cert), "-server-name", "localhost"),
            *("-clients", str(clients), "-sources", sources, "-client-id-prefix", prefix),
            *("-parallel", str(parallel)),
        ]

    def nginx_pids(self) -> list[int]:
        process = self.nginx.process
        return [] if process is None else [process.pid, *self.nginx.worker_pids()]


@dataclass(frozen=True)
class EdgeShape:
    """What every edge of a run shares: the stack-config keys and the PKI."""

    brokers: int
    workers: int
    worker_connections: int
    pki: Pki
    directory: Path

    def config(self) -> StackConfig:
        return parse_stack_config(
            {
                "tlsMode": "self-signed",
                "nodes": str(self.brokers),
                "lbWorkerProcesses": str(self.workers),
                "lbWorkerConnections": str(self.worker_connections),
            }
        )


_edges = iter(range(1, 1_000_000))


@contextmanager
def running_edge(shape: EdgeShape, **nginx_overrides: Any) -> Iterator[Edge]:
    """A fresh namespace (no sockets, TIME_WAIT ones included, left from an earlier run) with the
    plan's port sysctls, the plan's brokers and its Nginx with `nginx_overrides`; this thread
    (and every thread and process it starts meanwhile) inside it."""
    config = shape.config()
    plan = plan_cluster(config)
    host = plan.hosts[0]
    directory = shape.directory / f"edge{next(_edges)}"
    with ExitStack() as stack:
        netns = stack.enter_context(scratch_namespace("emqx-bench"))
        netns.set_sysctl("net.ipv4.ip_local_port_range", plan.port_range_sysctl)
        netns.set_sysctl("net.ipv4.ip_local_reserved_ports", host.reserved_ports_sysctl)
        stack.enter_context(entered(netns))
        brokers, nginx = host_edge(stack, config, plan, host, directory, shape.pki, **nginx_overrides)
        yield Edge(config, plan, nginx, brokers, shape.pki)


def client_sources(generator: int, addresses: int) -> str:
    """Generator `generator`'s own source range: 127.(10+g).0.1 onward."""
    return f"127.{10 + generator}.0.1-127.{10 + generator}.0.{addresses}"


def established(*ports: int) -> int:
    """ESTABLISHED sockets whose local port is one of `ports` in this namespace (ss: netlink, fast)."""
    condition = " or ".join(f"sport = :{port}" for port in ports)
    listing = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( {condition} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return len(listing.stdout.splitlines())


# --------------------------------------------------------------------------- /proc readings


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise LookupError(f"no Pss in /proc/{pid}/smaps_rollup")


def shared_zone_pss_kib(pid: int) -> int:
    """Pss of the process's shared anonymous mappings (Nginx's zones: mmap(MAP_SHARED|MAP_ANON)
    shows as `/dev/zero (deleted)`)."""
    total, counting = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            counting = len(fields) >= 6 and fields[5] == "/dev/zero" and fields[1].endswith("s")
        elif counting and fields[0] == "Pss:":
            total += int(fields[1])
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of `pids` (clock ticks of /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


@dataclass(frozen=True)
class KernelSample:
    slab_objects_kib: float | None  # None: /proc/slabinfo unreadable (not root)
    slab_kib: int
    tcp_mem_kib: int

    def minus(self, other: KernelSample) -> KernelSample:
        objects = (
            None
            if self.slab_objects_kib is None or other.slab_objects_kib is None
            else self.slab_objects_kib - other.slab_objects_kib
        )
        return KernelSample(objects, self.slab_kib - other.slab_kib, self.tcp_mem_kib - other.tcp_mem_kib)

    @property
    def kib(self) -> float:
        """The kernel's figure: slab objects in use (Slab pages without slabinfo) plus TCP buffers."""
        return (self.slab_objects_kib if self.slab_objects_kib is not None else self.slab_kib) + self.tcp_mem_kib


def kernel_sample() -> KernelSample:
    objects: float | None = None
    try:
        lines = Path("/proc/slabinfo").read_text().splitlines()[2:]
        objects = sum(int(f[1]) * int(f[3]) for f in (line.split() for line in lines)) / 1024
    except PermissionError:
        pass
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    slab = int(meminfo["Slab"].split()[0])
    tcp_mem = 0
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            tcp_mem = int(fields[fields.index("mem") + 1]) * PAGE_KIB
    return KernelSample(objects, slab, tcp_mem)


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None under two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


# --------------------------------------------------------------------------- 1. memory


@dataclass(frozen=True)
class MemorySample:
    clients: int
    held: int  # Nginx's client-side connections when sampled
    nginx_kib: int
    nginx_shared_kib: int
    kernel: KernelSample  # delta since just before the clients came
    brokers_kib: int
    loadgen_kib: int  # sum of the generators' maxRssKiB
    failed: int
    worker_fds: tuple[int, ...]


def run_generators(jobs: Sequence[Sequence[str]], timeout: float) -> tuple[list[threading.Thread], list[Any]]:
    """Each job's `run_loadgen` in a thread of its own (started here, in this namespace); the
    threads and the list their reports (or exceptions) land in, by job."""
    results: list[Any] = [None] * len(jobs)

    def body(index: int) -> None:
        try:
            results[index] = run_loadgen(jobs[index], timeout=timeout)
        except Exception as exc:  # reported by the caller
            results[index] = exc

    threads = [threading.Thread(target=body, args=(index,), daemon=True) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    return threads, results


def memory_step(edge: Edge, clients: int, args: argparse.Namespace, tag: str) -> MemorySample:
    generators = min(args.loadgens, max(1, clients))
    shares = [clients // generators + (1 if index < clients % generators else 0) for index in range(generators)]
    before = kernel_sample()
    threads: list[threading.Thread] = []
    results: list[Any] = []
    if clients:
        jobs = [
            [
                *edge.loadgen_args(share, client_sources(index, args.sources), f"{tag}-g{index}", args.parallel),
                *("-hold", f"{args.hold}s", "-keepalive", "60s"),
            ]
            for index, share in enumerate(shares)
        ]
        threads, results = run_generators(jobs, timeout=args.hold + 600)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and any(thread.is_alive() for thread in threads):
            if established(edge.plan.lb_port) >= clients and established(*edge.broker_ports) >= clients:
                break
            time.sleep(0.5)
    time.sleep(args.settle)
    nginx_pids = edge.nginx_pids()
    nginx_kib = sum(pss_kib(pid) for pid in nginx_pids)
    nginx_shared = sum(shared_zone_pss_kib(pid) for pid in nginx_pids)
    brokers_kib = sum(pss_kib(broker.process.pid) for broker in edge.brokers if broker.process is not None)
    kernel = kernel_sample().minus(before)
    held = established(edge.plan.lb_port)
    worker_fds = tuple(len(os.listdir(f"/proc/{pid}/fd")) for pid in edge.nginx.worker_pids())
    for thread in threads:
        thread.join()
    failed, loadgen_kib = 0, 0
    for result in results:
        if isinstance(result, BaseException):
            print(f"    a generator failed: {result}", flush=True)
            continue
        failed += sum(result["failed"].values())
        loadgen_kib += result["maxRssKiB"]
    return MemorySample(
        clients, held, nginx_kib, nginx_shared, kernel, brokers_kib, loadgen_kib, failed + clients - held, worker_fds
    )


def measure_memory(shape: EdgeShape, args: argparse.Namespace) -> None:
    print("\n== 1. memory per held TLS connection", flush=True)
    print(
        f"   {args.loadgens} generators x {args.sources} source addresses, {shape.workers} Nginx workers "
        f"(worker_connections {shape.worker_connections}), {shape.brokers} brokers; idle clients held "
        f"{args.hold}s, sampled {args.settle}s after all were established"
    )
    for size in args.buffer_sizes:
        samples = []
        for clients in args.steps:
            with running_edge(shape, proxy_buffer_size=size) as edge:
                samples.append(memory_step(edge, clients, args, f"mem{size}-{clients}"))
            sample = samples[-1]
            print(
                f"   [{size}] {clients} clients: {sample.held} held, nginx workers' fds {list(sample.worker_fds)}",
                flush=True,
            )
        print_memory_table(size, samples)


def print_memory_table(size: str, samples: Sequence[MemorySample]) -> None:
    objects_known = all(s.kernel.slab_objects_kib is not None for s in samples)
    notes = {"4k": "  (ours)", "16k": "  (Nginx's default)"}
    print(f"\n   proxy_buffer_size {size}{notes.get(size, '')}")
    header = (
        f"   {'clients':>8} {'held':>7} {'failed':>6} {'nginx Pss':>10} {'of it shm':>10} "
        f"{'kernel':>9} {'slab objs':>10} {'Slab':>9} {'tcp mem':>8} {'brokers':>9} {'loadgen':>9}"
    )
    print(header + "   (KiB)")
    print("   " + "-" * (len(header) - 3))
    for s in samples:
        objects = f"{s.kernel.slab_objects_kib:.0f}" if s.kernel.slab_objects_kib is not None else "n/a"
        print(
            f"   {s.clients:>8} {s.held:>7} {s.failed:>6} {s.nginx_kib:>10} {s.nginx_shared_kib:>10} "
            f"{s.kernel.kib:>9.0f} {objects:>10} {s.kernel.slab_kib:>9} {s.kernel.tcp_mem_kib:>8} "
            f"{s.brokers_kib:>9} {s.loadgen_kib:>9}"
        )

    def per(values: Callable[[MemorySample], float], only_loaded: bool = False) -> str:
        points = [(s.held, values(s)) for s in samples if s.held or not only_loaded]
        if len(points) == 1 and points[0][0]:
            return f"{points[0][1] / points[0][0]:.2f}"
        value = slope(points)
        return "n/a" if value is None else f"{value:.2f}"

    kernel = per(lambda s: s.kernel.kib)
    kernel_value = slope([(s.held, s.kernel.kib) for s in samples])
    print("   KiB per held connection (least-squares slope over the steps):")
    print(
        f"     nginx      {per(lambda s: s.nginx_kib):>7}   (of it shared zones {per(lambda s: s.nginx_shared_kib)}; "
        f"plan: NGINX_KIB_PER_CONNECTION = {NGINX_KIB_PER_CONNECTION}, for 4k)"
    )
    host_share = "n/a" if kernel_value is None else f"{kernel_value * SOCKETS_ON_HOST / SOCKETS_HERE:.2f}"
    source = "slab objects" if objects_known else "Slab pages"
    print(
        f"     kernel     {kernel:>7}   ({source} + tcp mem, {SOCKETS_HERE} sockets per client here; x 3/4 for a "
        f"host's {SOCKETS_ON_HOST}: {host_share}; plan: KERNEL_KIB_PER_CONNECTION = {KERNEL_KIB_PER_CONNECTION}; "
        f"Slab pages alone: {per(lambda s: s.kernel.slab_kib)})"
    )
    print(f"     brokers    {per(lambda s: s.brokers_kib):>7}   (mosquitto; EMQX's is brokerMemoryPerConnectionKib)")
    print(f"     loadgen    {per(lambda s: s.loadgen_kib, only_loaded=True):>7}   (Go clients' peak RSS, steps > 0)")


# --------------------------------------------------------------------------- 2. handshakes


@dataclass(frozen=True)
class CryptoSpeed:
    """One core's rates from `openssl speed`."""

    ecdsa_sign: float
    ecdsa_verify: float
    x25519: float

    @property
    def full_bound(self) -> float:
        """Full TLS 1.3 handshakes one server core could do on crypto alone: one ECDSA P-256
        signature and two X25519 operations (key generation, shared secret)."""
        return 1 / (1 / self.ecdsa_sign + 2 / self.x25519)

    @property
    def resumed_bound(self) -> float:
        """Resumed (psk_dhe_ke, the only mode Go offers): the two X25519 operations, no signature."""
        return self.x25519 / 2


def openssl_speed(seconds: int) -> tuple[CryptoSpeed | None, str]:
    command = ["openssl", "speed", "-seconds", str(seconds), "ecdsap256", "ecdhx25519"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    ecdsa = re.search(r"ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", done.stdout)
    ecdh = re.search(r"ecdh \(X25519\)\s+\S+s\s+([\d.]+)", done.stdout)
    if ecdsa is None or ecdh is None:
        return None, " ".join(command)
    return CryptoSpeed(float(ecdsa[1]), float(ecdsa[2]), float(ecdh[1])), " ".join(command)


def certificate_key(pki: Pki) -> str:
    leaf = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    key = leaf.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name} ({key.key_size} bits)"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    return type(key).__name__


def negotiated_tls(edge: Edge) -> str:
    """`$ssl_protocol/$ssl_cipher` of the access log's first session."""
    for line in edge.nginx.access_log_lines():
        if match := re.search(r"tls=(\S+)", line):
            return match[1]
    return "unknown"


@dataclass(frozen=True)
class RoundFigures:
    established: int
    resumed: int
    failed: int
    seconds: float
    rate: float
    nginx_cpu: float
    brokers_cpu: float

    @classmethod
    def of(cls, report: dict[str, Any], nginx_cpu: float, brokers_cpu: float) -> RoundFigures:
        return cls(
            report["established"],
            report["resumed"],
            sum(report["failed"].values()),
            report["connectSeconds"],
            report["connectsPerSecond"],
            nginx_cpu,
            brokers_cpu,
        )

    @property
    def per_cpu_second(self) -> float:
        return self.established / self.nginx_cpu if self.nginx_cpu else float("nan")


def two_rounds(edge: Edge, args: list[str], between: Callable[[], None] | None = None) -> list[RoundFigures]:
    """`args` with -rounds 2: each round's figures with the Nginx and broker CPU it took (read
    between the rounds, while the generator waits; `between` runs after that reading)."""
    brokers = [broker.process.pid for broker in edge.brokers if broker.process is not None]

    def mark() -> tuple[float, float]:
        return cpu_seconds(edge.nginx_pids()), cpu_seconds(brokers)

    marks = [mark()]

    def pause() -> None:
        marks.append(mark())
        if between is not None:
            between()
            marks.append(mark())

    report = run_loadgen([*args, "-rounds", "2"], timeout=900, between_rounds=pause)
    marks.append(mark())
    first, second = report["rounds"]
    return [
        RoundFigures.of(first, marks[1][0] - marks[0][0], marks[1][1] - marks[0][1]),
        RoundFigures.of(second, marks[-1][0] - marks[-2][0], marks[-1][1] - marks[-2][1]),
    ]


def measure_handshakes(shape: EdgeShape, args: argparse.Namespace) -> None:
    print("\n== 2. handshake rate", flush=True)
    speed, command = openssl_speed(args.openssl_seconds)
    cores = len(os.sched_getaffinity(0))
    print(f"   certificate key: {certificate_key(shape.pki)} (make_pki: trustme's default key type)")
    if speed is None:
        print(f"   `{command}` gave no figures")
    else:
        print(
            f"   `{command}`, one core: ECDSA P-256 {speed.ecdsa_sign:.0f} sign/s, {speed.ecdsa_verify:.0f} "
            f"verify/s; X25519 {speed.x25519:.0f} op/s -> crypto bound per core: full handshake "
            f"{speed.full_bound:.0f}/s (1 sign + 2 X25519), resumed {speed.resumed_bound:.0f}/s (2 X25519)"
        )
    print(
        f"   {args.handshake_clients} clients, -churn -rounds 2 -resume, -parallel {args.parallel}, "
        f"{args.sources} source addresses; {cores} CPUs shared by Nginx ({shape.workers} workers), the brokers "
        "and the generator"
    )
    rows: list[tuple[str, RoundFigures]] = []
    spent: list[str] = []
    tls = "unknown"
    for label, ticket_keys in (("tickets", 1), ("cache only", 0)):
        with running_edge(shape, ticket_keys=ticket_keys) as edge:
            base = edge.loadgen_args(args.handshake_clients, client_sources(0, args.sources), "hs", args.parallel)
            # The generator is the only child reaped meanwhile: its CPU is RUSAGE_CHILDREN's growth.
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            rounds = two_rounds(edge, [*base, "-churn", "-resume", "-hold", "0s"])
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            tls = negotiated_tls(edge)
        rows += [(f"{label}, round 1 (full)", rounds[0]), (f"{label}, round 2 (resume)", rounds[1])]
        generator = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        spent.append(
            f"{label}: nginx {sum(r.nginx_cpu for r in rounds):.2f}, brokers {sum(r.brokers_cpu for r in rounds):.2f}, "
            f"generator {generator:.2f} of {cores} cores x {sum(r.seconds for r in rounds):.2f} s connecting"
        )
    print(f"   negotiated (Nginx's access log): {tls}")
    header = (
        f"   {'':<28} {'established':>11} {'resumed':>8} {'failed':>6} {'seconds':>8} {'per s':>8} "
        f"{'nginx CPU s':>11} {'per CPU s':>9} {'of bound':>8}"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    for label, r in rows:
        # A round is full handshakes unless most of it resumed.
        bound = None if speed is None else (speed.resumed_bound if r.resumed * 2 > r.established else speed.full_bound)
        ratio = "n/a" if bound is None else f"{r.per_cpu_second / bound:.2f}"
        print(
            f"   {label:<28} {r.established:>11} {r.resumed:>8} {r.failed:>6} {r.seconds:>8.2f} {r.rate:>8.0f} "
            f"{r.nginx_cpu:>11.2f} {r.per_cpu_second:>9.0f} {ratio:>8}"
        )
    print(
        "   per CPU s: handshakes per second of Nginx CPU; of bound: that / the crypto bound of one core "
        "(openssl speed above)"
    )
    print("   CPU seconds over both rounds: " + "; ".join(spent))
    if speed is not None:
        full = [r.rate for label, r in rows if "full" in label]
        print(
            f"   wall-clock full handshakes/s / ({cores} cores x full bound {speed.full_bound:.0f}): "
            + ", ".join(f"{rate / (cores * speed.full_bound):.2f}" for rate in full)
        )


# --------------------------------------------------------------------------- 3. storm


def measure_storm(shape: EdgeShape, args: argparse.Namespace) -> None:
    print("\n== 3. reconnect storm after an Nginx restart", flush=True)
    print(
        f"   {args.storm_clients} clients connect and hold, all drop, Nginx stops and starts, all come back "
        f"(-rounds 2 -resume -hold 0s, -parallel {args.parallel}); round 2's clock starts after the restart"
    )
    rows: list[tuple[str, list[RoundFigures], float]] = []
    for label, ticket_keys in (("tickets", 1), ("cache only", 0)):
        with running_edge(shape, ticket_keys=ticket_keys) as edge:
            restart: list[float] = []

            def restart_nginx(nginx: Nginx = edge.nginx, took: list[float] = restart) -> None:
                started = time.perf_counter()
                nginx.stop()
                nginx.start()
                took.append(time.perf_counter() - started)

            base = edge.loadgen_args(args.storm_clients, client_sources(0, args.sources), "storm", args.parallel)
            rounds = two_rounds(edge, [*base, "-resume", "-hold", "0s", "-keepalive", "60s"], restart_nginx)
        rows.append((label, rounds, restart[0] if restart else float("nan")))
    header = (
        f"   {'':<11} {'round 1 /s':>10} {'restart s':>9} {'back':>6} {'resumed':>8} {'failed':>6} "
        f"{'storm s':>8} {'storm /s':>8} {f'{EXTRAPOLATED_CLIENTS // 1000}k clients s':>14}"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    for label, (first, storm), restart_seconds in rows:
        extrapolated = EXTRAPOLATED_CLIENTS / storm.rate if storm.rate else float("nan")
        print(
            f"   {label:<11} {first.rate:>10.0f} {restart_seconds:>9.2f} {storm.established:>6} {storm.resumed:>8} "
            f"{storm.failed:>6} {storm.seconds:>8.2f} {storm.rate:>8.0f} {extrapolated:>14.0f}"
        )
    print(
        f"   {EXTRAPOLATED_CLIENTS // 1000}k clients s: {EXTRAPOLATED_CLIENTS} / the storm's rate, on this machine's "
        "cores (shared with the generator), every client reconnecting at once"
    )


# --------------------------------------------------------------------------- main


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: steps 0,2000,4000, 1000 clients")
    parser.add_argument("--only", choices=("memory", "handshake", "storm"), action="append", help="run only these")
    parser.add_argument("--steps", type=counts, help="held clients per memory step (default 0,4000,8000,12000)")
    parser.add_argument("--buffer-sizes", type=lambda t: t.split(","), default=["4k", "16k"])
    parser.add_argument("--handshake-clients", type=int, help="clients of the handshake rounds (default 3000)")
    parser.add_argument("--storm-clients", type=int, help="clients of the reconnect storm (default 5000)")
    parser.add_argument("--loadgens", type=int, default=4, help="generator processes holding the memory steps")
    parser.add_argument("--sources", type=int, default=16, help="source addresses per generator (default 16)")
    parser.add_argument("--workers", type=int, default=4, help="Nginx worker processes (default 4)")
    parser.add_argument("--brokers", type=int, default=3, help="brokers, the plan's nodes (default 3)")
    parser.add_argument("--parallel", type=int, default=128, help="connects in flight per generator")
    parser.add_argument("--hold", type=float, default=10, help="seconds the generators hold (default 10)")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds between all held and sampling")
    parser.add_argument("--openssl-seconds", type=int, default=2)
    args = parser.parse_args(argv)
    args.steps = args.steps or ([0, 2000, 4000] if args.quick else [0, 4000, 8000, 12000])
    args.handshake_clients = args.handshake_clients or (1000 if args.quick else 3000)
    args.storm_clients = args.storm_clients or (1000 if args.quick else 5000)
    parts = args.only or ["memory", "handshake", "storm"]
    if missing := missing_prerequisites():
        parser.error(f"missing: {', '.join(missing)}")
    if os.geteuid() != 0:
        parser.error("needs root: network namespaces (sudo .venv/bin/python -m bench.connection_capacity)")

    # Every process here may hold `hard` descriptors: Nginx's two per client, a broker's and a
    # generator's one per client must fit, so the counts are spread.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    worker_connections = max(1024, min(65536, (hard - 1024) // 2))
    headroom = int(hard * 0.9)
    top = max(args.steps)
    for what, per_process in (
        ("generator", top / args.loadgens),
        ("broker", max(top, args.storm_clients) / args.brokers),
        ("generator (storm, one process)", args.storm_clients),
    ):
        if per_process > headroom:
            parser.error(f"{per_process:.0f} clients per {what} exceed the {hard} open files each process may have")
    if top * 2 > args.workers * worker_connections * 0.8:
        print(f"warning: {top} clients may overflow {args.workers} workers x {worker_connections} worker_connections")

    print(
        f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, nofile {hard}, "
        f"nginx worker_connections {worker_connections} (worker_rlimit_nofile {lb_nofile_limit(worker_connections)})"
    )
    build_loadgen()  # built before any clock runs
    with tempfile.TemporaryDirectory(prefix="capacity-bench-") as work:
        directory = Path(work)
        shape = EdgeShape(args.brokers, args.workers, worker_connections, make_pki(directory / "pki"), directory)
        started = time.monotonic()
        try:
            if "memory" in parts:
                measure_memory(shape, args)
            if "handshake" in parts:
                measure_handshakes(shape, args)
            if "storm" in parts:
                measure_storm(shape, args)
        except pytest.skip.Exception as skipped:  # scratch_namespace's way to say "cannot here"
            print(f"cannot run: {skipped.msg}")
            return 1
        print(f"\n(ran {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
