"""The cluster plan: nodes, names, ports, reserved ports and waves, derived from the config.

Pure Python. Every port a node owns comes from its index alone, so adding node N+1 never moves
the ports of nodes 1..N (the containers of existing nodes stay untouched on scale-up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from components import names
from components.config import NAMESPACE, ConfigError, StackConfig

# Erlang distribution and cluster RPC ports: 4370 + N and 5370 + N, N = trailing digits of the
# node's short name (ekka's static-port distribution; rpc.port_discovery = stateless). Keys exist
# (`rpc.server_port`, alias tcp_server_port, in emqx_conf_schema.erl; the kernel's
# `inet_dist_listen_min`) but set ONE port for every node,
# so they cannot give the nodes of one host distinct ports: the name's number does.
DISTRIBUTION_PORT_BASE = 4370
RPC_PORT_BASE = 5370

BROKER_DATA_DIR = "/opt/emqx/data"
BROKER_LOG_DIR = "/opt/emqx/log"


@dataclass(frozen=True)
class NodePorts:
    """Every port one node listens on, on the host network."""

    mqtt: int  # the TCP listener behind Nginx (PROXY protocol on)
    dashboard: int  # dashboard + REST API (`GET /status` answers without auth)
    distribution: int  # Erlang distribution, 4370 + index
    rpc: int  # gen_rpc, 5370 + index

    def as_dict(self) -> dict[str, int]:
        return {"mqtt": self.mqtt, "dashboard": self.dashboard, "distribution": self.distribution, "rpc": self.rpc}


@dataclass(frozen=True)
class NodePlan:
    """One EMQX broker node: identity, ports, host directories and rollout wave."""

    index: int
    short_name: str
    node_name: str
    address: str
    ports: NodePorts
    host_dir: str
    wave: int

    @property
    def container_name(self) -> str:
        return self.short_name

    @property
    def data_dir(self) -> str:
        return f"{self.host_dir}/data"

    @property
    def log_dir(self) -> str:
        return f"{self.host_dir}/log"

    @property
    def mqtt_endpoint(self) -> str:
        return f"{self.address}:{self.ports.mqtt}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.address}:{self.ports.dashboard}"


@dataclass(frozen=True)
class ClusterPlan:
    """What will exist: the nodes, their waves, the LB port and the kernel port settings."""

    nodes: tuple[NodePlan, ...]
    lb_port: int
    port_range: tuple[int, int]
    reserved_ports: tuple[int, ...]
    # One source of truth for both ends: Nginx sends a PROXY header iff the brokers' listeners
    # expect one (a mismatch breaks every client, or floods EMQX with `Parse failed`).
    proxy_protocol: bool = True

    @property
    def seed(self) -> NodePlan:
        """The node every other node joins; node 1, which is always in the first wave."""
        return self.nodes[0]

    @property
    def waves(self) -> tuple[tuple[NodePlan, ...], ...]:
        count = max(node.wave for node in self.nodes)
        return tuple(tuple(n for n in self.nodes if n.wave == wave) for wave in range(1, count + 1))

    @property
    def reserved_ports_sysctl(self) -> str:
        """`net.ipv4.ip_local_reserved_ports` value: the reserved ports as comma-joined ranges."""
        return compress_ports(self.reserved_ports)

    @property
    def port_range_sysctl(self) -> str:
        return f"{self.port_range[0]} {self.port_range[1]}"

    def all_ports(self) -> tuple[int, ...]:
        return _all_ports(self.nodes, self.lb_port)


def plan_cluster(config: StackConfig) -> ClusterPlan:
    """Derive the plan, or raise ConfigError naming the keys whose ports collide or cannot be reserved."""
    wave_count = config.effective_waves
    nodes = tuple(
        NodePlan(
            index=index,
            short_name=names.node_short_name(index),
            node_name=names.node_name(index, config.advertise_address),
            address=config.advertise_address,
            ports=NodePorts(
                mqtt=config.mqtt_port_base + index - 1,
                dashboard=config.dashboard_port_base + index - 1,
                distribution=DISTRIBUTION_PORT_BASE + index,
                rpc=RPC_PORT_BASE + index,
            ),
            host_dir=f"{config.data_dir}/{names.node_short_name(index)}",
            # Round-robin waves (odd/even for two): each wave is spread over the index range, so
            # the seed's wave never holds more than ceil(N / waves) nodes.
            wave=(index - 1) % wave_count + 1,
        )
        for index in range(1, config.nodes + 1)
    )
    _check_ports(config, nodes)
    low, high = config.port_range
    reserved = tuple(sorted({port for port in _all_ports(nodes, config.lb_port) if low <= port <= high}))
    if reserved and not config.manage_sysctls:
        raise ConfigError(
            f"invalid stack configuration:\n  {NAMESPACE}:manageSysctls = false while planned ports "
            f"{compress_ports(reserved)} lie inside ipLocalPortRange {config.ip_local_port_range!r}: allowed: "
            "manageSysctls: true (so they are reserved in net.ipv4.ip_local_reserved_ports), or port bases "
            "and an ipLocalPortRange that keep every planned port outside the ephemeral range"
        )
    if len(reserved) * 2 > high - low + 1:
        raise ConfigError(
            f"invalid stack configuration:\n  {NAMESPACE}:ipLocalPortRange = {config.ip_local_port_range!r}: "
            f"allowed: a range in which the {len(reserved)} reserved ports take at most half, so outgoing "
            "connections still find ephemeral ports"
        )
    return ClusterPlan(nodes=nodes, lb_port=config.lb_port, port_range=(low, high), reserved_ports=reserved)


def _all_ports(nodes: tuple[NodePlan, ...], lb_port: int) -> tuple[int, ...]:
    return (*(port for node in nodes for port in node.ports.as_dict().values()), lb_port)


def _check_ports(config: StackConfig, nodes: tuple[NodePlan, ...]) -> None:
    """Every planned port must be a valid port, used once, and never the LB's port."""
    owners: dict[int, str] = {config.lb_port: f"{NAMESPACE}:lbPort = {config.lb_port}"}
    problems: list[str] = []
    # Each line names the key (and its value) that placed the port, so the user knows what to change.
    sources = {
        "mqtt": f"{NAMESPACE}:mqttPortBase = {config.mqtt_port_base}",
        "dashboard": f"{NAMESPACE}:dashboardPortBase = {config.dashboard_port_base}",
        "distribution": "the Erlang distribution port (4370 + node index)",
        "rpc": "the cluster RPC port (5370 + node index)",
    }
    for node in nodes:
        for role, port in node.ports.as_dict().items():
            source = sources[role]
            if not 1 <= port <= 65535:
                problems.append(
                    f"{source}: node {node.short_name} would get {role} port {port}: allowed: bases that keep "
                    f"every node's port within 1-65535 ({config.nodes} nodes)"
                )
                continue
            if port in owners:
                problems.append(
                    f"{source}: {node.short_name}'s {role} port {port} is already taken by {owners[port]}: "
                    "allowed: port bases whose ranges (base .. base + nodes - 1) do not overlap each other, "
                    "4371-5369 / 5371-6369 (distribution / RPC) or lbPort"
                )
                continue
            owners[port] = f"{node.short_name}'s {role} port ({source})"
    if problems:
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(dict.fromkeys(problems)))


def compress_ports(ports: Iterable[int]) -> str:
    """Render ports as the kernel's list syntax: '4371-4373,5371-5373,8884'."""
    ordered = sorted(set(ports))
    ranges: list[str] = []
    start = previous = None
    for port in ordered:
        if start is None:
            start = previous = port
        elif previous is not None and port == previous + 1:
            previous = port
        else:
            ranges.append(_range(start, previous))
            start = previous = port
    if start is not None:
        ranges.append(_range(start, previous))
    return ",".join(ranges)


def _range(start: int, end: int | None) -> str:
    return str(start) if end is None or end == start else f"{start}-{end}"
