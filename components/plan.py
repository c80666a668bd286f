"""The cluster plan: hosts, nodes, names, ports, reserved ports and waves, derived from the config.

Pure Python. Every port a node owns comes from its index alone, so adding node N+1 never moves
the ports of nodes 1..N (the containers of existing nodes stay untouched on scale-up), and a
node keeps its ports when it moves to another host.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from components import names
from components.config import StackConfig
from components.config_hosts import Host
from components.config_parse import ConfigError
from components.config_types import NAMESPACE
from components.names import ResourceNames

# Erlang distribution and cluster RPC ports: 4370 + N and 5370 + N, N = trailing digits of the
# node's short name (ekka's static-port distribution; rpc.port_discovery = stateless). Keys exist
# (`rpc.server_port`, alias tcp_server_port, in emqx_conf_schema.erl; the kernel's
# `inet_dist_listen_min`) but set ONE port for every node,
# so they cannot give the nodes of one host distinct ports: the name's number does.
DISTRIBUTION_PORT_BASE = 4370
RPC_PORT_BASE = 5370

# The dashboard, REST API and Prometheus stats listener of every node (EMQX serves all three on
# `dashboard.listeners.http`; emqx/emqx rel/config/examples/prometheus.conf.example, read at
# 4ed422c: "EMQX's Prometheus scraping endpoint is enabled by default without authentication.
# And there is no way to turn it off.") binds the host's loopback: nothing on the network
# reaches it; operators use `ssh -L`.
ADMIN_ADDRESS = "127.0.0.1"

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


# Whom the host's firewall (firewall.py) lets reach a listener: the cluster's hosts only (the
# nodes' distribution and RPC), the admin networks only (dashboards; Prometheus beyond loopback),
# or it leaves the port alone (MQTT behind Nginx, Nginx's TLS port, loopback listeners).
FirewallScope = Literal["cluster", "admin", "unfiltered"]


@dataclass(frozen=True)
class Listener:
    """A port one of the host's containers listens on (host network). The preflight finds it
    free (or held by its owner), the ephemeral range keeps out of it, the firewall filters it
    by scope, and two clusters on one host cannot both claim it."""

    port: int
    owner: str  # container name; while it runs, the port is legitimately in use
    role: str
    scope: FirewallScope = "unfiltered"


# The firewall scope of each port a node owns (NodePorts.as_dict's keys).
_NODE_PORT_SCOPES: dict[str, FirewallScope] = {
    "mqtt": "unfiltered",
    "dashboard": "admin",
    "distribution": "cluster",
    "rpc": "cluster",
}


@dataclass(frozen=True)
class NodePlan:
    """One EMQX broker node: identity, ports, host directories and rollout wave."""

    index: int
    short_name: str
    node_name: str
    host_label: str  # the label of the host it runs on
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
    def tls_dir(self) -> str:
        """Its cluster TLS files (certificate, key, cluster CA), with cluster TLS on."""
        return f"{self.host_dir}/tls"

    @property
    def access_dir(self) -> str:
        """Its access files (MQTT users, API key, ACL): render/access.py."""
        return f"{self.host_dir}/access"

    @property
    def mqtt_endpoint(self) -> str:
        return f"{self.address}:{self.ports.mqtt}"

    @property
    def dashboard_endpoint(self) -> str:
        return f"{ADMIN_ADDRESS}:{self.ports.dashboard}"

    @property
    def admin_url(self) -> str:
        """The node's dashboard over HTTPS on its host's address (with adminNetworks set)."""
        return f"https://{self.address}:{self.ports.dashboard}"

    @property
    def dashboard_url(self) -> str:
        """The node's dashboard as its own host sees it (elsewhere: through `HostPlan.tunnel`)."""
        return f"http://{self.dashboard_endpoint}"


@dataclass(frozen=True)
class HostPlan(Host):
    """A Docker host with what the plan gives it: its nodes, every port its containers listen
    on, and those it must keep out of the ephemeral range."""

    nodes: tuple[NodePlan, ...]
    lb_port: int
    # Its nodes' (node by node), then its load balancer's and, with metrics on, the metrics listeners'.
    listeners: tuple[Listener, ...]
    reserved_ports: tuple[int, ...]
    # With metrics on: Prometheus's listener and Nginx's metrics listener.
    metrics_port: int | None = None
    lb_metrics_port: int | None = None

    @property
    def reserved_ports_sysctl(self) -> str:
        """`net.ipv4.ip_local_reserved_ports` value: the reserved ports as comma-joined ranges."""
        return compress_ports(self.reserved_ports)

    def ports(self, scope: FirewallScope | None = None) -> list[int]:
        """The ports of the host's listeners, sorted: all, or those of one firewall scope."""
        return sorted(listener.port for listener in self.listeners if scope in (None, listener.scope))

    def tunnel(self, port: int) -> str | None:
        """The `ssh -L` command that brings the host's loopback `port` to the deployer's machine
        (None for the deployer's own machine: the port is local already)."""
        if self.ssh is None:
            return None
        return f"ssh -N -L {port}:{ADMIN_ADDRESS}:{port} -p {self.ssh.port} {self.ssh.user}@{self.ssh.host}"


@dataclass(frozen=True)
class ClusterPlan:
    """What will exist: the hosts and their nodes, the waves, the LB port and the kernel port range."""

    hosts: tuple[HostPlan, ...]
    nodes: tuple[NodePlan, ...]  # every host's, by index
    lb_port: int
    port_range: tuple[int, int]
    several_hosts: bool
    # One source of truth for both ends: Nginx sends a PROXY header iff the brokers' listeners
    # expect one (a mismatch breaks every client, or floods EMQX with `Parse failed`).
    proxy_protocol: bool = True
    # The Pulumi names of the cluster's resources (its component's name as prefix).
    names: ResourceNames = field(default_factory=ResourceNames)

    @property
    def seed(self) -> NodePlan:
        """The node every other node joins: the lowest index (node 1 unless placement left it out),
        always in the first wave."""
        return self.nodes[0]

    @property
    def waves(self) -> tuple[tuple[NodePlan, ...], ...]:
        count = max(node.wave for node in self.nodes)
        return tuple(tuple(n for n in self.nodes if n.wave == wave) for wave in range(1, count + 1))

    @property
    def port_range_sysctl(self) -> str:
        return f"{self.port_range[0]} {self.port_range[1]}"

    def host(self, label: str) -> HostPlan:
        return next(host for host in self.hosts if host.label == label)


def plan_cluster(config: StackConfig, resource_names: ResourceNames | None = None) -> ClusterPlan:
    """Derive the plan, or raise ConfigError naming the keys whose ports collide or cannot be reserved;
    its resources are named by `resource_names` (by default, the stack-config program's cluster's)."""
    hosts = config.cluster_hosts
    waves = _waves([host.node_indexes for host in hosts], config.effective_waves)
    host_nodes = [
        tuple(_node(config, index, host.label, host.address, waves[index]) for index in host.node_indexes)
        for host in hosts
    ]
    problems = [problem for hosted in host_nodes for problem in _port_problems(config, hosted)]
    if config.several_hosts:
        problems.extend(_wave_problems(config, hosts, waves))
    if problems:
        raise ConfigError.of(problems)
    planned = tuple(
        HostPlan(
            **{field.name: getattr(host, field.name) for field in fields(Host)},
            nodes=hosted,
            lb_port=config.lb.port,
            listeners=listeners,
            reserved_ports=_reserved(config, listeners),
            metrics_port=config.monitoring.port if config.monitoring.enabled else None,
            lb_metrics_port=config.monitoring.lb_port if config.monitoring.enabled else None,
        )
        for host, hosted in zip(hosts, host_nodes, strict=True)
        for listeners in [_listeners(config, hosted)]
    )
    nodes = tuple(sorted((node for hosted in host_nodes for node in hosted), key=lambda node: node.index))
    return ClusterPlan(
        hosts=planned,
        nodes=nodes,
        lb_port=config.lb.port,
        port_range=config.port_range,
        several_hosts=config.several_hosts,
        names=resource_names or ResourceNames(),
    )


def _waves(host_indexes: Sequence[tuple[int, ...]], wave_count: int) -> dict[int, int]:
    """Node index -> wave: round-robin over the nodes host by host, starting with the seed's host.

    On one host this is index order (odd/even for two waves). Over several, each host's nodes are
    spread over consecutive waves, so no wave holds more than ceil(n / waves) of a host's n nodes,
    nor more than ceil(N / waves) in total; the seed (the lowest index) comes first, so it is in
    wave 1.
    """
    seed = min(index for indexes in host_indexes for index in indexes)
    seed_host = next(position for position, indexes in enumerate(host_indexes) if seed in indexes)
    ordered = [*host_indexes[seed_host:], *host_indexes[:seed_host]]
    sequence = [index for indexes in ordered for index in sorted(indexes)]
    return {index: position % wave_count + 1 for position, index in enumerate(sequence)}


def _wave_problems(config: StackConfig, hosts: Sequence[Host], waves: dict[int, int]) -> list[str]:
    """With several hosts, a wave may restart at most half of any host's nodes (one, on a host with
    one or two), so every host's load balancer keeps local nodes to send clients to."""
    problems = []
    for host in hosts:
        indexes = host.node_indexes
        allowed = max(1, len(indexes) // 2)
        worst = max(sum(1 for index in indexes if waves[index] == wave) for wave in set(waves.values()))
        if worst > allowed:
            problems.append(
                f"{NAMESPACE}:waves = {config.effective_waves}: allowed: {math.ceil(len(indexes) / allowed)} "
                f"or more, because host {host.label!r} runs {len(indexes)} nodes and one wave would restart "
                f"{worst} of them; a wave may restart at most {allowed} (never a majority of a host's nodes)"
            )
    return problems


def _node(config: StackConfig, index: int, host_label: str, address: str, wave: int) -> NodePlan:
    short_name = names.node_short_name(index)
    return NodePlan(
        index=index,
        short_name=short_name,
        node_name=names.node_name(index, address),
        host_label=host_label,
        address=address,
        ports=NodePorts(
            mqtt=config.mqtt_port_base + index - 1,
            dashboard=config.dashboard_port_base + index - 1,
            distribution=DISTRIBUTION_PORT_BASE + index,
            rpc=RPC_PORT_BASE + index,
        ),
        host_dir=f"{config.data_dir}/{short_name}",
        wave=wave,
    )


def _listeners(config: StackConfig, nodes: tuple[NodePlan, ...]) -> tuple[Listener, ...]:
    """Every port a host's containers listen on: its nodes', its load balancer's and, with
    metrics on, Prometheus's (admin networks only beyond loopback) and Nginx's metrics listener."""
    services = [Listener(config.lb.port, names.LB_CONTAINER, "TLS listener")]
    if config.monitoring.enabled:
        services += [
            Listener(
                config.monitoring.port,
                names.PROMETHEUS_CONTAINER,
                "Prometheus listener",
                "admin" if config.monitoring.opens_beyond_loopback else "unfiltered",
            ),
            Listener(config.monitoring.lb_port, names.LB_CONTAINER, "metrics listener"),
        ]
    return (
        *(
            Listener(port, node.container_name, role, _NODE_PORT_SCOPES[role])
            for node in nodes
            for role, port in node.ports.as_dict().items()
        ),
        *services,
    )


def _service_ports(config: StackConfig) -> dict[int, str]:
    """The ports of each host's own services, the load balancer's first, with the key that placed
    each (a port set twice keeps its first owner; _port_problems reports the clash)."""
    owners = {config.lb.port: f"{NAMESPACE}:lbPort = {config.lb.port}"}
    if config.monitoring.enabled:
        for key, port in (("metricsPort", config.monitoring.port), ("lbMetricsPort", config.monitoring.lb_port)):
            owners.setdefault(port, f"{NAMESPACE}:{key} = {port}")
    return owners


def _reserved(config: StackConfig, listeners: Iterable[Listener]) -> tuple[int, ...]:
    """The host's planned ports inside the ephemeral range, or ConfigError when they cannot be reserved."""
    low, high = config.port_range
    reserved = tuple(sorted({listener.port for listener in listeners if low <= listener.port <= high}))
    if reserved and not config.tuning.manage:
        raise ConfigError.of(
            [
                f"{NAMESPACE}:manageSysctls = false while planned ports {compress_ports(reserved)} lie inside "
                f"ipLocalPortRange {config.ip_local_port_range!r}: allowed: manageSysctls: true (so they are "
                "reserved in net.ipv4.ip_local_reserved_ports), or port bases and an ipLocalPortRange that keep "
                "every planned port outside the ephemeral range"
            ]
        )
    if len(reserved) * 2 > high - low + 1:
        raise ConfigError.of(
            [
                f"{NAMESPACE}:ipLocalPortRange = {config.ip_local_port_range!r}: allowed: a range in which the "
                f"{len(reserved)} reserved ports take at most half, so outgoing connections still find ephemeral ports"
            ]
        )
    return reserved


def _port_problems(config: StackConfig, nodes: tuple[NodePlan, ...]) -> list[str]:
    """On one host, every planned port must be a valid port, used once, and never a port of the
    host's own services (the LB's, with metrics on Prometheus's and Nginx's metrics)."""
    owners = _service_ports(config)
    problems: list[str] = []
    if config.monitoring.enabled and config.lb.port in (config.monitoring.port, config.monitoring.lb_port):
        problems.append(
            f"{NAMESPACE}:lbPort = {config.lb.port}: allowed: a port other than metricsPort "
            f"({config.monitoring.port}) and lbMetricsPort ({config.monitoring.lb_port})"
        )
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
                    f"every node's port within 1-65535 ({config.node_count} nodes)"
                )
                continue
            if port in owners:
                problems.append(
                    f"{source}: {node.short_name}'s {role} port {port} is already taken by {owners[port]}: "
                    "allowed: port bases whose ranges (base .. base + nodes - 1) do not overlap each other, "
                    "4371-5369 / 5371-6369 (distribution / RPC), lbPort or the metrics ports"
                )
                continue
            owners[port] = f"{node.short_name}'s {role} port ({source})"
    return problems


def port_ranges(ports: Iterable[int]) -> list[tuple[int, int]]:
    """`ports` as sorted runs of consecutive ports: [4371, 4372, 8884] -> [(4371, 4372), (8884, 8884)]."""
    ranges: list[tuple[int, int]] = []
    for port in sorted(set(ports)):
        if ranges and port == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], port)
        else:
            ranges.append((port, port))
    return ranges


def compress_ports(ports: Iterable[int]) -> str:
    """Render ports as the kernel's list syntax: '4371-4373,5371-5373,8884'."""
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in port_ranges(ports))
