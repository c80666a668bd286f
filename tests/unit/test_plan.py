"""The cluster plan: unique ports, stable identities on scale-up, reserved ports and rollout waves."""

from __future__ import annotations

import random
from typing import Any

import pytest

from components.config import StackConfig
from components.config_parse import ConfigError
from components.plan import ClusterPlan, compress_ports, plan_cluster

MAX_TESTED_NODES = 50


def config(**overrides: Any) -> StackConfig:
    """A stack config with self-signed TLS; only the given keys count as set by the user."""
    return StackConfig.model_validate({"tls_mode": "self-signed", **overrides})


def plan(**overrides: Any) -> ClusterPlan:
    return plan_cluster(config(**overrides))


def node_ports(cluster: ClusterPlan) -> list[int]:
    return [port for node in cluster.nodes for port in node.ports.as_dict().values()]


def expand(ranges: str) -> set[int]:
    """Parse the kernel's list syntax back into ports."""
    ports: set[int] = set()
    for part in filter(None, ranges.split(",")):
        low, _, high = part.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


# ----------------------------------------------------------------------------- ports


@pytest.mark.parametrize("nodes", range(1, MAX_TESTED_NODES + 1))
def test_every_port_is_unique_and_never_the_lb_port(nodes: int) -> None:
    cluster = plan(nodes=nodes)
    ports = node_ports(cluster)
    assert len(ports) == 4 * nodes
    assert len(set(ports)) == len(ports)
    assert cluster.lb_port not in ports
    assert len(set(cluster.hosts[0].ports())) == 4 * nodes + 1
    assert all(1 <= port <= 65535 for port in cluster.hosts[0].ports())


def test_random_port_bases_either_plan_unique_ports_or_are_refused() -> None:
    """Property check over deterministic random bases: no accepted plan ever has a clash."""
    accepted = refused = 0
    for seed in range(300):
        rng = random.Random(seed)
        nodes = rng.randint(1, MAX_TESTED_NODES)
        mqtt_base = rng.randint(1024, 65535)
        # Half the cases put the dashboard range next to (often over) the MQTT range.
        dashboard_base = mqtt_base + rng.randint(-nodes, nodes) if seed % 2 else rng.randint(1024, 65535)
        dashboard_base = min(max(dashboard_base, 1), 65535)
        lb_port = rng.choice([rng.randint(1, 65535), mqtt_base + rng.randint(0, nodes), 4370 + rng.randint(1, nodes)])
        lb_port = min(lb_port, 65535)

        expected = [
            *(mqtt_base + i for i in range(nodes)),
            *(dashboard_base + i for i in range(nodes)),
            *(4371 + i for i in range(nodes)),
            *(5371 + i for i in range(nodes)),
            lb_port,
        ]
        feasible = len(set(expected)) == len(expected) and max(expected) <= 65535
        stack = config(nodes=nodes, mqtt_port_base=mqtt_base, dashboard_port_base=dashboard_base, lb_port=lb_port)
        if feasible:
            cluster = plan_cluster(stack)
            assert sorted(cluster.hosts[0].ports()) == sorted(expected), seed
            accepted += 1
        else:
            with pytest.raises(ConfigError, match="allowed"):
                plan_cluster(stack)
            refused += 1
    assert accepted > 50
    assert refused > 50


def test_distribution_and_rpc_ports_follow_the_node_index() -> None:
    """EMQX derives them from the node name's number: 4370 + N and 5370 + N."""
    cluster = plan(nodes=MAX_TESTED_NODES)
    for node in cluster.nodes:
        assert node.ports.distribution == 4370 + node.index
        assert node.ports.rpc == 5370 + node.index
        assert node.short_name == f"emqx{node.index}"


def test_mqtt_and_dashboard_ports_count_up_from_their_bases() -> None:
    cluster = plan(nodes=4, mqtt_port_base=30001, dashboard_port_base=40001)
    assert [node.ports.mqtt for node in cluster.nodes] == [30001, 30002, 30003, 30004]
    assert [node.ports.dashboard for node in cluster.nodes] == [40001, 40002, 40003, 40004]


# ----------------------------------------------------------------------------- stability


def test_scaling_up_keeps_existing_nodes_identical() -> None:
    """Adding node N+1 must not change anything about nodes 1..N (their containers stay put)."""
    previous = plan(nodes=1)
    for nodes in range(2, MAX_TESTED_NODES + 1):
        current = plan(nodes=nodes)
        assert current.nodes[: nodes - 1] == previous.nodes, nodes
        previous = current


def test_scaling_up_with_three_waves_keeps_existing_nodes_identical() -> None:
    previous = plan(nodes=3, waves=3)
    for nodes in range(4, MAX_TESTED_NODES + 1):
        current = plan(nodes=nodes, waves=3)
        assert current.nodes[: nodes - 1] == previous.nodes, nodes
        previous = current


# ----------------------------------------------------------------------------- reserved ports


def test_default_plan_reserves_exactly_its_ephemeral_range_ports() -> None:
    cluster = plan(nodes=3)
    assert cluster.port_range == (1024, 60999)
    assert cluster.port_range_sysctl == "1024 60999"
    # MQTT (61001+) and dashboard (62001+) ports lie above the range: nothing to reserve.
    assert cluster.hosts[0].reserved_ports == (4371, 4372, 4373, 5371, 5372, 5373, 8884)
    assert cluster.hosts[0].reserved_ports_sysctl == "4371-4373,5371-5373,8884"


@pytest.mark.parametrize(
    ("port_range", "nodes"),
    [("1024 60999", 7), ("1024 65000", 5), ("5000 65535", 12), ("30000 61001", 3), ("61002 64000", 9)],
)
def test_reserved_ports_are_exactly_the_planned_ports_inside_the_range(port_range: str, nodes: int) -> None:
    cluster = plan(nodes=nodes, ip_local_port_range=port_range)
    low, high = (int(part) for part in port_range.split())
    inside = sorted(port for port in cluster.hosts[0].ports() if low <= port <= high)
    assert list(cluster.hosts[0].reserved_ports) == inside
    assert expand(cluster.hosts[0].reserved_ports_sysctl) == set(inside)


def test_a_planned_port_inside_the_range_without_managed_sysctls_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"manageSysctls = false while planned ports 4371-4373,5371-5373,8884"):
        plan(nodes=3, manage_sysctls=False)


@pytest.mark.parametrize(
    ("ports", "text"),
    [
        ([], ""),
        ([8884], "8884"),
        ([4371, 4372, 4373, 5371, 5372, 5373, 8884], "4371-4373,5371-5373,8884"),
        ([8884, 4373, 4371, 4372, 4372], "4371-4373,8884"),
        ([1, 3, 5], "1,3,5"),
        ([10, 11], "10-11"),
        ([65534, 65535, 1024], "1024,65534-65535"),
    ],
)
def test_compress_ports_uses_the_kernel_list_syntax(ports: list[int], text: str) -> None:
    assert compress_ports(ports) == text


def test_compress_ports_round_trips_random_port_sets() -> None:
    for seed in range(100):
        rng = random.Random(seed)
        ports = {rng.randint(1, 400) for _ in range(rng.randint(0, 120))}
        text = compress_ports(ports)
        assert expand(text) == ports, seed
        assert text == "" or all(part[0].isdigit() for part in text.split(",")), text


# ----------------------------------------------------------------------------- waves


def test_two_waves_split_nodes_into_odd_and_even() -> None:
    cluster = plan(nodes=5, waves=2)
    assert [[node.index for node in wave] for wave in cluster.waves] == [[1, 3, 5], [2, 4]]


@pytest.mark.parametrize("waves", range(1, 6))
def test_waves_are_round_robin_non_empty_and_start_with_the_seed(waves: int) -> None:
    for nodes in range(waves, 21):
        cluster = plan(nodes=nodes, waves=waves)
        assert len(cluster.waves) == waves
        assert all(cluster.waves), (nodes, waves)
        assert cluster.seed.index == 1
        assert cluster.seed.wave == 1
        assert cluster.waves[0][0] == cluster.seed
        assert sorted(node.index for wave in cluster.waves for node in wave) == list(range(1, nodes + 1))
        sizes = [len(wave) for wave in cluster.waves]
        assert max(sizes) - min(sizes) <= 1
        for node in cluster.nodes:
            assert node.wave == (node.index - 1) % waves + 1


# ----------------------------------------------------------------------------- names


def test_node_names_containers_and_directories() -> None:
    cluster = plan(nodes=3, advertise_address="10.20.0.7", data_dir="/srv/emqx")
    for index, node in enumerate(cluster.nodes, start=1):
        assert node.node_name == f"emqx{index}@10.20.0.7"
        assert node.container_name == f"emqx{index}"
        assert node.host_dir == f"/srv/emqx/emqx{index}"
        assert node.data_dir == f"/srv/emqx/emqx{index}/data"
        assert node.log_dir == f"/srv/emqx/emqx{index}/log"
        assert node.mqtt_endpoint == f"10.20.0.7:{61000 + index}"
        assert node.dashboard_url == f"http://127.0.0.1:{62000 + index}"  # loopback, whatever the address
    assert len({node.container_name for node in cluster.nodes}) == 3


def test_proxy_protocol_is_on_by_default() -> None:
    assert plan().proxy_protocol is True
