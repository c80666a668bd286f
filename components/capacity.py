"""How many client connections each host's load balancer holds, and which bound decides.

Pure Python (no Pulumi). Every client connection is two connections on its host: the client's to
Nginx, and Nginx's to one of the host's nodes. The bounds, each in connections per host:

- upstream ports: Nginx connects to a node from one of the host's addresses, and each of those
  connections takes a local port of `ip_local_port_range` (the ports the plan reserves for its
  own listeners excluded): the kernel keeps a connection's (source address, source port,
  node address, node port) unique, so at most `free ports` per node and source address,
  `nodes x sources x free ports` per host. Past it connect() fails with EADDRNOTAVAIL, which
  Nginx's passive health counts as the node failing: one node after the other is marked down,
  and every client is refused. The rendered upstream caps each node (`max_conns`, see
  node_connection_cap), so the edge refuses the one client too many and leaves every node up;
  `lbSourceAddresses` gives Nginx several source addresses (`proxy_bind`), each its own budget;
- Nginx connections: each proxied client holds two of a worker's `worker_connections`;
  `lbWorkerProcesses` workers (with `auto`, one per CPU: counted once, the floor);
- broker open files: each client holds one descriptor of its node (`brokerNofileLimit`), less
  what EMQX keeps for itself (BROKER_RESERVED_FILES); the same `max_conns` keeps every node
  within it, so a full node refuses no connection of its own accord (EMQX's acceptor would
  pause on EMFILE and leave clients hanging in the backlog).
- memory: what one connection costs (MemoryBudget: Nginx and the kernel measured by
  bench/connection_capacity.py, EMQX from `brokerMemoryPerConnectionKib`) against the host's
  MemTotal, less what the OS and the nodes keep: only the host knows its memory, so the
  preflight reads it, computes this bound, refuses expectedConnections above it, and prints it
  for the `capacity` output (HostCapacity.with_memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.config import StackConfig
from components.config_types import NAMESPACE
from components.plan import ClusterPlan, HostPlan

# Descriptors a node keeps for itself (data and log files, the cluster's connections, its
# listeners, the dashboard): a round allowance, far above what an idle node holds.
BROKER_RESERVED_FILES = 1024

# KiB one idle proxied MQTT-over-TLS connection costs (bench/connection_capacity.py: Debian nginx
# 1.22 + OpenSSL 3.0): Nginx with `proxy_buffer_size 4k` (a 4k buffer each way, the TLS state);
# the kernel's sockets of one client on the host (Nginx's two, the node's one).
NGINX_KIB_PER_CONNECTION = 24
KERNEL_KIB_PER_CONNECTION = 15
# Kept back from clients: the OS, Docker and Nginx's own baseline, and each node's (an idle EMQX
# 5.8 node holds a few hundred MiB).
HOST_RESERVED_KIB = 1024 * 1024
NODE_RESERVED_KIB = 512 * 1024


@dataclass(frozen=True)
class Bound:
    """One limit on a host's client connections, the arithmetic behind it, and the key that lifts it."""

    name: str
    connections: int
    arithmetic: str
    lifted_by: str


@dataclass(frozen=True)
class HostCapacity:
    host: str
    bounds: tuple[Bound, ...]

    @property
    def deciding(self) -> Bound:
        return min(self.bounds, key=lambda bound: bound.connections)

    @property
    def ceiling(self) -> int:
        return self.deciding.connections

    def with_memory(self, budget: MemoryBudget, connections: int, mem_total_kib: int) -> HostCapacity:
        """The host's capacity with its memory bound, as its preflight computed it."""
        arithmetic = f"{budget.arithmetic}, MemTotal {mem_total_kib} kB"
        memory = Bound(
            "memory",
            connections,
            arithmetic,
            f"the host's memory, or fewer nodes on it ({NAMESPACE}:brokerMemoryPerConnectionKib if measured lower)",
        )
        return HostCapacity(self.host, (*self.bounds, memory))

    @property
    def bound_connections(self) -> dict[str, int]:
        return {bound.name: bound.connections for bound in self.bounds}

    def as_output(self) -> dict[str, object]:
        return {
            "ceiling": self.ceiling,
            "decidedBy": self.deciding.name,
            "liftedBy": self.deciding.lifted_by,
            "bounds": self.bound_connections,
        }


def free_ports(plan: ClusterPlan, host: HostPlan) -> int:
    """Ports of the ephemeral range a connection from this host may take: the range, less the
    ports reserved in it for the host's own listeners (net.ipv4.ip_local_reserved_ports)."""
    low, high = plan.port_range
    return high - low + 1 - len(host.reserved_ports)


def source_budgets(host: HostPlan) -> int:
    """Port budgets of the host's Nginx toward each node: one per source address (one upstream
    group each), or the one address the route picks."""
    return max(1, len(host.lb_source_addresses))


def broker_files(config: StackConfig) -> int:
    """Client connections one node's open-files limit leaves room for."""
    return config.broker_nofile_limit - BROKER_RESERVED_FILES


def node_connection_cap(config: StackConfig, plan: ClusterPlan, host: HostPlan) -> int:
    """`max_conns` of each node in each of the host's upstream groups: the free ports of one source
    address, and the node's share of its open files per group. Shared by the workers (the group's
    `zone`), so it is the count of the whole Nginx, whatever `worker_processes`."""
    return min(free_ports(plan, host), broker_files(config) // source_budgets(host))


def host_capacity(config: StackConfig, plan: ClusterPlan, host: HostPlan) -> HostCapacity:
    nodes = len(host.nodes)
    ports = free_ports(plan, host)
    budgets = source_budgets(host)
    sources = (
        f"{budgets} lbSourceAddresses" if host.lb_source_addresses else "1 source address (lbSourceAddresses unset)"
    )
    lb = config.lb
    workers = lb.worker_processes or 1
    per_worker = lb.worker_connections // 2
    worker_text = (
        f"{lb.worker_processes} worker processes"
        if lb.worker_processes
        else "1 worker process counted (worker_processes auto: one per CPU, each holding as many)"
    )
    per_group = broker_files(config) // budgets
    return HostCapacity(
        host=host.label,
        bounds=(
            Bound(
                "upstream ports",
                nodes * budgets * ports,
                f"{nodes} nodes x {sources} x {ports} free ports of ipLocalPortRange "
                f"{plan.port_range_sysctl!r} ({len(host.reserved_ports)} reserved)",
                f"{host.config_key('lbSourceAddresses')} or {NAMESPACE}:ipLocalPortRange (or nodes on the host)",
            ),
            Bound(
                "nginx connections",
                workers * per_worker,
                f"{worker_text} x lbWorkerConnections {lb.worker_connections} / 2 (client and node side)",
                f"{NAMESPACE}:lbWorkerConnections or lbWorkerProcesses",
            ),
            Bound(
                "broker open files",
                nodes * budgets * per_group,
                f"{nodes} nodes x (brokerNofileLimit {config.broker_nofile_limit} - {BROKER_RESERVED_FILES} "
                "kept by EMQX)" + (f", split over {budgets} upstream groups" if budgets > 1 else ""),
                f"{NAMESPACE}:brokerNofileLimit (or nodes on the host)",
            ),
        ),
    )


@dataclass(frozen=True)
class MemoryBudget:
    """What one client connection costs the host and what is kept back from clients, for the
    preflight to weigh against the host's MemTotal."""

    kib_per_connection: int
    reserved_kib: int
    arithmetic: str


def memory_budget(config: StackConfig, host: HostPlan) -> MemoryBudget:
    broker = config.broker_memory_per_connection_kib
    nodes = len(host.nodes)
    return MemoryBudget(
        kib_per_connection=NGINX_KIB_PER_CONNECTION + KERNEL_KIB_PER_CONNECTION + broker,
        reserved_kib=HOST_RESERVED_KIB + nodes * NODE_RESERVED_KIB,
        arithmetic=(
            f"(MemTotal - {HOST_RESERVED_KIB // 1024} MiB for the host - {nodes} nodes x "
            f"{NODE_RESERVED_KIB // 1024} MiB) / (Nginx {NGINX_KIB_PER_CONNECTION} + kernel "
            f"{KERNEL_KIB_PER_CONNECTION} + EMQX {broker} (brokerMemoryPerConnectionKib) KiB per connection)"
        ),
    )


def cluster_capacity(config: StackConfig, plan: ClusterPlan) -> dict[str, HostCapacity]:
    return {host.label: host_capacity(config, plan, host) for host in plan.hosts}


def capacity_problems(config: StackConfig, plan: ClusterPlan) -> list[str]:
    """A node's cap of 0 (nginx reads `max_conns=0` as no limit at all), and expectedConnections
    above a host's ceiling: the bound that decides and the key that lifts it."""
    problems = [
        f"{NAMESPACE}:brokerNofileLimit = {config.broker_nofile_limit}: allowed: at least "
        f"{BROKER_RESERVED_FILES + source_budgets(host)} on host {host.label!r}: {BROKER_RESERVED_FILES} kept by "
        f"EMQX and one connection per node for each of its {source_budgets(host)} source addresses"
        for host in plan.hosts
        if node_connection_cap(config, plan, host) < 1
    ]
    expected = config.lb.expected_connections
    if expected is None:
        return problems
    return problems + [
        f"{NAMESPACE}:expectedConnections = {expected}: allowed: at most {capacity.ceiling} per host; on host "
        f"{capacity.host!r} {capacity.deciding.name} decide ({capacity.deciding.arithmetic}): raise "
        f"{capacity.deciding.lifted_by}"
        for capacity in cluster_capacity(config, plan).values()
        if expected > capacity.ceiling
    ]
