"""How many client connections each host's load balancer holds, and which bound decides.

Pure Python (no Pulumi). Every client connection is two connections on its host: the client's to
Nginx, and Nginx's to one of the host's nodes. The bounds, each in connections per host:

- upstream ports: Nginx connects to a node from the host's address, and each of those
  connections takes a local port of `ip_local_port_range` (the ports the plan reserves for its
  own listeners excluded): at most `free ports` per node, `nodes x free ports` per host. Past it
  connect() fails with EADDRNOTAVAIL, which Nginx's passive health counts as the node failing:
  one node after the other is marked down, and every client is refused. The rendered upstream
  caps each node at its free ports (`max_conns`), so the edge refuses the one client too many
  and leaves every node up;
- Nginx connections: each proxied client holds two of a worker's `worker_connections`;
  `lbWorkerProcesses` workers (with `auto`, one per CPU: counted once, the floor);
- broker open files: each client holds one descriptor of its node (`brokerNofileLimit`), less
  what EMQX keeps for itself (BROKER_RESERVED_FILES).
Memory is not a bound here: it needs the host's memory, which only the host knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.config import StackConfig
from components.config_types import NAMESPACE
from components.plan import ClusterPlan, HostPlan

# Descriptors a node keeps for itself (data and log files, the cluster's connections, its
# listeners, the dashboard): a round allowance, far above what an idle node holds.
BROKER_RESERVED_FILES = 1024


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

    def as_output(self) -> dict[str, object]:
        return {
            "ceiling": self.ceiling,
            "decidedBy": self.deciding.name,
            "liftedBy": self.deciding.lifted_by,
            "bounds": {bound.name: bound.connections for bound in self.bounds},
        }


def free_ports(plan: ClusterPlan, host: HostPlan) -> int:
    """Ports of the ephemeral range a connection from this host may take: the range, less the
    ports reserved in it for the host's own listeners (net.ipv4.ip_local_reserved_ports)."""
    low, high = plan.port_range
    return high - low + 1 - len(host.reserved_ports)


def host_capacity(config: StackConfig, plan: ClusterPlan, host: HostPlan) -> HostCapacity:
    nodes = len(host.nodes)
    ports = free_ports(plan, host)
    lb = config.lb
    workers = lb.worker_processes or 1
    per_worker = lb.worker_connections // 2
    worker_text = (
        f"{lb.worker_processes} worker processes"
        if lb.worker_processes
        else "1 worker process counted (worker_processes auto: one per CPU, each holding as many)"
    )
    broker_files = config.broker_nofile_limit - BROKER_RESERVED_FILES
    return HostCapacity(
        host=host.label,
        bounds=(
            Bound(
                "upstream ports",
                nodes * ports,
                f"{nodes} nodes x {ports} free ports of ipLocalPortRange {plan.port_range_sysctl!r} "
                f"({len(host.reserved_ports)} reserved)",
                f"{NAMESPACE}:ipLocalPortRange (or nodes on the host)",
            ),
            Bound(
                "nginx connections",
                workers * per_worker,
                f"{worker_text} x lbWorkerConnections {lb.worker_connections} / 2 (client and node side)",
                f"{NAMESPACE}:lbWorkerConnections or lbWorkerProcesses",
            ),
            Bound(
                "broker open files",
                nodes * broker_files,
                f"{nodes} nodes x (brokerNofileLimit {config.broker_nofile_limit} - {BROKER_RESERVED_FILES} "
                "kept by EMQX)",
                f"{NAMESPACE}:brokerNofileLimit (or nodes on the host)",
            ),
        ),
    )


def cluster_capacity(config: StackConfig, plan: ClusterPlan) -> dict[str, HostCapacity]:
    return {host.label: host_capacity(config, plan, host) for host in plan.hosts}


def capacity_problems(config: StackConfig, plan: ClusterPlan) -> list[str]:
    """expectedConnections above a host's ceiling: the bound that decides and the key that lifts it."""
    expected = config.lb.expected_connections
    if expected is None:
        return []
    return [
        f"{NAMESPACE}:expectedConnections = {expected}: allowed: at most {capacity.ceiling} per host; on host "
        f"{capacity.host!r} {capacity.deciding.name} decide ({capacity.deciding.arithmetic}): raise "
        f"{capacity.deciding.lifted_by}"
        for capacity in cluster_capacity(config, plan).values()
        if expected > capacity.ceiling
    ]
