"""The plan's connection ceiling, measured: real Nginx running the config the program renders,
real brokers (mosquitto) on the plan's ports, and the native load generator, all inside a network
namespace whose ephemeral port range is shrunk to the plan's (1,000 ports), at small scale (these
machines allow 20,000 descriptors per process).

The clients dial Nginx from 127.0.0.10-29 with IP_BIND_ADDRESS_NO_PORT: their ports are per
destination and leave the range to Nginx's connections toward the nodes, the bound under test.
The brokers take no PROXY header (mosquitto), so Nginx's `proxy_protocol` is off here: it changes
no count.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from components.capacity import BROKER_RESERVED_FILES, HostCapacity, cluster_capacity
from components.config import StackConfig
from components.config_parse import parse_stack_config
from components.plan import ClusterPlan, plan_cluster
from tests.support.lb_stack import Mosquitto, Nginx, Pki, host_edge, make_pki, missing_prerequisites
from tests.support.loadgen import run_loadgen
from tests.support.netns import NetNamespace, entered

MISSING = missing_prerequisites()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(MISSING), reason=f"capacity integration tests need: {', '.join(MISSING)}"),
]

PORT_RANGE = "20000 20999"  # 1,000 ports; every planned listener (8884, 61001...) outside it
CLIENT_SOURCES = "127.0.0.10-127.0.0.29"


@dataclasses.dataclass(frozen=True)
class Edge:
    """One host as the plan has it, running: Nginx in front of its nodes."""

    config: StackConfig
    plan: ClusterPlan
    capacity: HostCapacity
    nginx: Nginx
    brokers: list[Mosquitto]
    pki: Pki

    def load(self, clients: int) -> dict[str, Any]:
        """`clients` connect at once and hold their connection (3 s keepalive, two pings) for 7 s."""
        return run_loadgen(
            [
                *("-addr", f"127.0.0.1:{self.plan.lb_port}", "-ca", str(self.pki.ca_cert)),
                *("-server-name", "localhost", "-clients", str(clients), "-sources", CLIENT_SOURCES),
                *("-hold", "7s", "-keepalive", "3s", "-parallel", "128"),
            ]
        )

    def nodes_marked_down(self) -> list[str]:
        log = self.nginx.error_log_text()
        return [line for line in log.splitlines() if "temporarily disabled" in line or "(99: " in line]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def edge(netns: NetNamespace, pki: Pki, tmp_path: Path) -> Iterator[Any]:
    """Start a host's edge from stack-config keys, inside the namespace with the plan's port range."""
    with ExitStack() as stack:

        def start(**keys: str) -> Edge:
            defaults = {"tlsMode": "self-signed", "ipLocalPortRange": PORT_RANGE, "lbWorkerConnections": "8192"}
            config = parse_stack_config({**defaults, **keys})
            plan = plan_cluster(config)
            host = plan.hosts[0]
            netns.set_sysctl("net.ipv4.ip_local_port_range", plan.port_range_sysctl)
            netns.set_sysctl("net.ipv4.ip_local_reserved_ports", host.reserved_ports_sysctl)
            stack.enter_context(entered(netns))
            brokers, nginx = host_edge(stack, config, plan, host, tmp_path, pki)
            return Edge(config, plan, cluster_capacity(config, plan)[host.label], nginx, brokers, pki)

        yield start


def test_the_measured_ceiling_is_the_plans_and_the_client_past_it_is_refused_with_every_node_up(edge: Any) -> None:
    """2 nodes x 1,000 ports: the plan says 2,000, decided by the upstream ports; of 2,020 clients
    exactly 2,000 are held through their pings, the rest refused, and no node is marked down."""
    running: Edge = edge(nodes="2")
    assert (running.capacity.ceiling, running.capacity.deciding.name) == (2000, "upstream ports")
    report = running.load(2020)
    assert report["established"] == report["stillHeld"] == running.capacity.ceiling, json.dumps(report)
    assert sum(report["failed"].values()) == 20, json.dumps(report)
    assert running.nodes_marked_down() == []
    # Both nodes up: a new client gets in as soon as the held ones leave.
    assert running.load(2)["stillHeld"] == 2


def test_three_source_addresses_triple_the_ceiling(edge: Any) -> None:
    """500 ports (one Nginx worker's 4,096 clients stay above): each address its own 500 ports
    toward each node, its own capped group: 3,000 held of 3,300 (the split is by hash, so some
    clients meet a full group before every group is full)."""
    sources = '["127.0.0.2", "127.0.0.3", "127.0.0.4"]'
    running: Edge = edge(nodes="2", ipLocalPortRange="20000 20499", lbSourceAddresses=sources)
    assert (running.capacity.ceiling, running.capacity.deciding.name) == (3000, "upstream ports")
    report = running.load(3300)
    assert report["established"] == report["stillHeld"] == 3000, json.dumps(report)
    assert running.nodes_marked_down() == []


def test_with_the_brokers_open_files_shrunk_that_bound_decides_and_holds(edge: Any) -> None:
    """brokerNofileLimit 1,324 (300 clients per node above EMQX's own 1,024): the plan says the
    brokers' open files decide at 600, and Nginx keeps each node there."""
    running: Edge = edge(nodes="2", brokerNofileLimit=str(BROKER_RESERVED_FILES + 300))
    assert (running.capacity.ceiling, running.capacity.deciding.name) == (600, "broker open files")
    report = running.load(660)
    assert report["established"] == report["stillHeld"] == 600, json.dumps(report)
    assert sum(report["failed"].values()) == 60
    assert running.nodes_marked_down() == []
