"""Prometheus on one host: its scrape config and its alert rules, rendered from the plan.

Pure Python (no Pulumi). Each host's Prometheus scrapes what its own loopback reaches: its
nodes' stats endpoints (on their dashboard listener, which binds loopback), its Nginx's metrics
listener (loopback) and itself. One per host rather than one per stack: nothing is opened
between hosts for it, and a host's Prometheus keeps telling what it sees when another host is
gone; every node reports the cluster's running and stopped node counts, so each one sees the
whole cluster's membership.

The thresholds come from the plan: the declared nodes, the host's connection ceiling (with the
memory bound its preflight computed) and each node's cap in Nginx (`max_conns`, once per source
address).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.capacity import HostCapacity, node_connection_cap, source_budgets
from components.config import StackConfig
from components.config_types import duration_seconds
from components.plan import ADMIN_ADDRESS, ClusterPlan, HostPlan
from components.render.access import API_KEY_NAME
from components.render.templating import render

# Where the official image (prom/prometheus) reads its files and keeps its data, and the user
# it runs as (its Dockerfile: `USER nobody`, `WORKDIR /prometheus`).
CONFIG_PATH = "/etc/prometheus/prometheus.yml"
RULES_PATH = "/etc/prometheus/alert-rules.yml"
# The API secret, when the nodes' stats need it (the file's group, root, reads it).
STATS_SECRET_PATH = "/etc/prometheus/emqx-api-secret"
DATA_PATH = "/prometheus"
PROMETHEUS_UID = 65534
# The stats endpoint of an EMQX 5.8 node, on its dashboard listener (emqx_prometheus_api.erl).
EMQX_STATS_PATH = "/api/v5/prometheus/stats"
CRITICAL_SCRAPES = 4
WARNING_SCRAPES = 20


def prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration, in whole minutes where it is some (`5m`, `20s`, `500ms`)."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60:g}m"
    if seconds == int(seconds):
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


@dataclass(frozen=True)
class ScrapeTarget:
    name: str
    endpoint: str  # host:port as the host itself reaches it


@dataclass(frozen=True)
class PrometheusSettings:
    host: str  # the host's label
    scrape_interval: str
    nodes: tuple[ScrapeTarget, ...]
    lb_endpoint: str
    self_endpoint: str
    listen_address: str
    port: int
    retention: str
    retention_size: str
    # With adminNetworks the nodes' stats ask for the API key (broker_env.admin_https_environment
    # sets prometheus.enable_basic_auth; emqx_dashboard.erl takes an API key and secret as basic
    # credentials), else they answer anyone on loopback.
    stats_username: str | None = None
    alertmanagers: tuple[str, ...] = ()

    @property
    def arguments(self) -> list[str]:
        """The Prometheus command line (the image's entrypoint is the binary)."""
        return [
            f"--config.file={CONFIG_PATH}",
            f"--storage.tsdb.path={DATA_PATH}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--storage.tsdb.retention.size={self.retention_size}",
            f"--web.listen-address={self.listen_address}:{self.port}",
        ]


def prometheus_settings(config: StackConfig, host: HostPlan) -> PrometheusSettings:
    metrics = config.monitoring
    assert host.lb_metrics_port is not None, "metrics are off"
    own_address = ADMIN_ADDRESS if metrics.listen_address == "0.0.0.0" else metrics.listen_address
    return PrometheusSettings(
        host=host.label,
        scrape_interval=metrics.scrape_interval,
        nodes=tuple(ScrapeTarget(node.node_name, node.dashboard_endpoint) for node in host.nodes),
        lb_endpoint=f"{ADMIN_ADDRESS}:{host.lb_metrics_port}",
        self_endpoint=f"{own_address}:{metrics.port}",
        listen_address=metrics.listen_address,
        port=metrics.port,
        retention=metrics.retention,
        retention_size=metrics.retention_size,
        stats_username=API_KEY_NAME if config.access.admin_networks else None,
        alertmanagers=tuple(metrics.alertmanagers),
    )


@dataclass(frozen=True)
class AlertThresholds:
    """What the alert rules compare with, all from the plan and the stack config."""

    declared_nodes: int
    ceiling: int
    deciding_bound: str
    lifted_by: str
    node_cap: int  # client connections Nginx lets one node of the host hold
    share: float
    auth_failures_per_minute: float
    memory_share: float
    scrape_seconds: float

    @property
    def critical_for(self) -> str:
        """How long a critical condition must hold: 4 scrapes (a minute at 15s), not one missed."""
        return prometheus_duration(self.scrape_seconds * CRITICAL_SCRAPES)

    @property
    def warning_for(self) -> str:
        """How long a warning condition must hold: 20 scrapes (5 minutes at 15s), a trend."""
        return prometheus_duration(self.scrape_seconds * WARNING_SCRAPES)

    @property
    def window(self) -> str:
        """The range rates and increases are taken over: as long as a warning must hold."""
        return self.warning_for

    @property
    def lb_connections(self) -> int:
        return int(self.ceiling * self.share)

    @property
    def node_connections(self) -> int:
        return int(self.node_cap * self.share)

    @property
    def share_text(self) -> str:
        return f"{self.share:.0%}"

    @property
    def memory_share_text(self) -> str:
        return f"{self.memory_share:.0%}"


def alert_thresholds(config: StackConfig, plan: ClusterPlan, host: HostPlan, capacity: HostCapacity) -> AlertThresholds:
    """The thresholds of `host`'s rules; `capacity` with its memory bound when the host has told it."""
    metrics = config.monitoring
    return AlertThresholds(
        declared_nodes=len(plan.nodes),
        ceiling=capacity.ceiling,
        deciding_bound=capacity.deciding.name,
        lifted_by=capacity.deciding.lifted_by,
        node_cap=node_connection_cap(config, plan, host) * source_budgets(host),
        share=metrics.alert_connections_share,
        auth_failures_per_minute=metrics.alert_auth_failures_per_minute,
        memory_share=metrics.alert_memory_share,
        scrape_seconds=duration_seconds(metrics.scrape_interval),
    )


def render_prometheus_config(settings: PrometheusSettings, rules_path: str = RULES_PATH) -> str:
    return render(
        "prometheus.yml.j2",
        settings=settings,
        rules_path=rules_path,
        stats_path=EMQX_STATS_PATH,
        stats_password_file=STATS_SECRET_PATH,
    )


def render_alert_rules(host: str, thresholds: AlertThresholds) -> str:
    return render("alert-rules.yml.j2", host=host, thresholds=thresholds)
