"""Metrics, measured: Debian's Prometheus running the scrape config and alert rules the program
renders for a host, scraping real Nginx (the program's nginx.conf with its metrics listener) and
each node's stats endpoint, inside a network namespace with the plan's ports. Scrapes every
second (metricsScrapeInterval 1s), so a critical alert needs 4 s and a warning 20 s.

The nodes' stats endpoints are EMQX's as tests/support/emqx/stats.py serves them (no EMQX here);
the brokers behind Nginx are mosquitto, without PROXY protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.config_parse import parse_stack_config
from components.plan import ClusterPlan, plan_cluster
from tests.support.emqx.stats import StatsEndpoint, serving
from tests.support.lb_stack import (
    MqttSession,
    Nginx,
    Pki,
    connect_mqtt,
    host_edge,
    make_pki,
    missing_prerequisites,
)
from tests.support.netns import NetNamespace, entered
from tests.support.ports import wait_until
from tests.support.prometheus import RunningPrometheus, missing_prometheus, running_prometheus

MISSING = missing_prerequisites() + missing_prometheus()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(MISSING), reason=f"metrics integration tests need: {', '.join(MISSING)}"),
]

# Two nodes, each capped at 10 clients (brokerNofileLimit 1,034: EMQX keeps 1,024): a ceiling of
# 20, so 80% is 16 and 17 held clients are near it.
STACK = {
    "tlsMode": "self-signed",
    "nodes": "2",
    "metrics": "true",
    "metricsScrapeInterval": "1s",
    "brokerNofileLimit": "1034",
}


@dataclass
class MonitoredHost:
    plan: ClusterPlan
    nginx: Nginx
    stats: list[StatsEndpoint]
    prometheus: RunningPrometheus
    pki: Pki

    def targets(self) -> dict[str, str]:
        return self.prometheus.targets()

    def firing(self) -> set[str]:
        return self.prometheus.firing()

    def value(self, expression: str) -> float:
        return self.prometheus.value(expression)

    def clients(self, count: int) -> list[MqttSession]:
        return [
            connect_mqtt(
                "localhost", self.plan.lb_port, client_id=f"metrics-{n}", tls_context=self.pki.client_context()
            )
            for n in range(count)
        ]


@pytest.fixture
def monitored(netns: NetNamespace, tmp_path: Path) -> Iterator[MonitoredHost]:
    config = parse_stack_config(STACK)
    plan = plan_cluster(config)
    host = plan.hosts[0]
    pki = make_pki(tmp_path / "pki")
    with ExitStack() as stack:
        stack.enter_context(entered(netns))
        _, nginx = host_edge(stack, config, plan, host, tmp_path, pki)
        running = {"emqx_cluster_nodes_running": len(plan.nodes), "emqx_vm_total_memory": 8e9}
        stats = [stack.enter_context(serving(node.ports.dashboard, running)) for node in host.nodes]
        prometheus = stack.enter_context(running_prometheus(config, plan, host, tmp_path / "prometheus"))
        yield MonitoredHost(plan, nginx, stats, prometheus, pki)


def test_prometheus_scrapes_every_node_and_nginx_which_counts_the_held_clients(monitored: MonitoredHost) -> None:
    wait_until(
        lambda: set(monitored.targets().values()) == {"up"} and len(monitored.targets()) == 4,
        "every target up (2 nodes, nginx, prometheus)",
        timeout=30,
        interval=0.5,
    )
    assert monitored.firing() == set()
    held = monitored.clients(5)
    try:
        # Five clients and the scrape itself.
        wait_until(lambda: monitored.value("nginx_connections_active") == 6, "nginx counting 5 clients", timeout=15)
    finally:
        for session in held:
            session.close()


def test_the_load_balancer_near_its_ceiling_fires_and_clears(monitored: MonitoredHost) -> None:
    held = monitored.clients(17)
    try:
        wait_until(lambda: "LoadBalancerNearCeiling" in monitored.firing(), "LoadBalancerNearCeiling", timeout=60)
    finally:
        for session in held:
            session.close()
    wait_until(lambda: "LoadBalancerNearCeiling" not in monitored.firing(), "the alert to clear", timeout=30)


def test_a_node_not_answering_and_a_stopped_nginx_fire_and_clear(monitored: MonitoredHost) -> None:
    wait_until(lambda: set(monitored.targets().values()) == {"up"}, "every target up", timeout=30, interval=0.5)
    node = monitored.stats[1]
    node.stop()
    monitored.nginx.stop()
    wait_until(
        lambda: {"EmqxNodeDown", "LoadBalancerDown"} <= monitored.firing(),
        "EmqxNodeDown and LoadBalancerDown",
        timeout=30,
    )
    restarted = StatsEndpoint(node.server.server_address[1], node.values)
    restarted.start()
    monitored.nginx.start()
    try:
        wait_until(lambda: monitored.firing() == set(), "both alerts to clear", timeout=30)
    finally:
        restarted.stop()


# What the nodes report to drive each rule the stats decide: every node sees a stopped member
# (so one node running of the two declared); the first has 9 clients (above 80% of its cap of
# 10), 95% of its host's memory in use, and counters climbing while the condition lasts (failed
# logins, messages dropped).
CLUSTER_TROUBLE = {"emqx_cluster_nodes_running": 1, "emqx_cluster_nodes_stopped": 1}
NODE_TROUBLE = {"emqx_live_connections_count": 9, "emqx_vm_used_memory": 7.6e9}
CLIMBING = ("emqx_authentication_failure", "emqx_messages_dropped")
STATS_ALERTS = {
    "EmqxNodeStoppedInCluster",
    "EmqxFewerNodesThanDeclared",
    "EmqxNodeNearConnectionCap",
    "EmqxAuthenticationFailures",
    "EmqxMessagesDropped",
    "EmqxHostMemoryHigh",
}


def test_every_rule_the_nodes_stats_drive_fires_and_clears(monitored: MonitoredHost) -> None:
    """Each condition produced on the nodes' stats pages at once; every rule fires (a warning after
    20 scrapes), then the nodes are well again and every rule clears (rates over 20 scrapes)."""
    wait_until(lambda: set(monitored.targets().values()) == {"up"}, "every target up", timeout=30, interval=0.5)
    first = monitored.stats[0]
    healthy = [dict(node.values) for node in monitored.stats]
    for node in monitored.stats:
        node.values.update(CLUSTER_TROUBLE)
    first.values.update(NODE_TROUBLE)
    climbing = threading.Event()

    def climb() -> None:
        while not climbing.wait(0.5):
            for name in CLIMBING:
                first.values[name] = first.values.get(name, 0) + 50  # 6,000 a minute

    climber = threading.Thread(target=climb, daemon=True)
    climber.start()
    try:
        wait_until(lambda: monitored.firing() >= STATS_ALERTS, f"all of {sorted(STATS_ALERTS)}", timeout=90, interval=1)
    finally:
        climbing.set()
        climber.join()
        for node, values in zip(monitored.stats, healthy, strict=True):
            for name in (*CLUSTER_TROUBLE, *NODE_TROUBLE):
                node.values[name] = values.get(name, 0)
    wait_until(lambda: monitored.firing() == set(), "every alert to clear", timeout=90, interval=1)
