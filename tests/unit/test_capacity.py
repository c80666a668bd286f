"""The connection ceiling per host: every bound, each deciding in some shape; the cap the upstream
renders from it; expectedConnections refused above it, naming the bound and the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.capacity import (
    BROKER_RESERVED_FILES,
    HOST_RESERVED_KIB,
    KERNEL_KIB_PER_CONNECTION,
    NGINX_KIB_PER_CONNECTION,
    NODE_RESERVED_KIB,
    capacity_problems,
    cluster_capacity,
    free_ports,
    memory_budget,
)
from components.config_parse import ConfigError, parse_stack_config
from components.plan import plan_cluster
from components.render.nginx import NginxSettings, nginx_settings, render_nginx_conf


def capacity(**keys: Any) -> Any:
    config = parse_stack_config({"tlsMode": "self-signed", **{k: str(v) for k, v in keys.items()}})
    plan = plan_cluster(config)
    return config, plan, cluster_capacity(config, plan)["127.0.0.1"]


def test_the_port_range_decides_with_few_ports_and_caps_each_node_at_its_free_ports() -> None:
    config, plan, host = capacity(nodes=2, ipLocalPortRange="40000 40999")
    assert free_ports(plan, plan.hosts[0]) == 1000  # no planned port inside the range
    assert host.ceiling == 2000
    assert host.deciding.name == "upstream ports"
    assert "ipLocalPortRange" in host.deciding.lifted_by
    conf = render_nginx_conf(nginx_settings(config, plan))
    assert conf.count("max_conns=1000 ") == 2


def test_ports_reserved_inside_the_range_are_not_counted() -> None:
    _, plan, host = capacity(nodes=1, ipLocalPortRange="8000 8999")  # lbPort 8884 is reserved in it
    assert plan.hosts[0].reserved_ports == (8884,)
    assert host.bounds[0].connections == 999
    assert "(1 reserved)" in host.bounds[0].arithmetic


def test_nginx_worker_connections_decide_when_low_counting_one_worker_unless_told() -> None:
    _, _, one = capacity(lbWorkerConnections=1024)
    assert (one.ceiling, one.deciding.name) == (512, "nginx connections")
    assert "worker_processes auto" in one.deciding.arithmetic
    _, _, four = capacity(lbWorkerConnections=1024, lbWorkerProcesses=4)
    assert four.ceiling == 4 * 512


def test_the_brokers_open_files_decide_when_their_limit_is_low_and_cap_each_node() -> None:
    config, plan, host = capacity(nodes=3, brokerNofileLimit=2048)
    assert host.deciding.name == "broker open files"
    assert host.ceiling == 3 * (2048 - BROKER_RESERVED_FILES)
    assert "brokerNofileLimit" in host.deciding.lifted_by
    # Nginx keeps each node within its files: a full node never pauses its acceptor on EMFILE.
    assert render_nginx_conf(nginx_settings(config, plan)).count(f"max_conns={2048 - BROKER_RESERVED_FILES} ") == 3


def test_each_source_address_is_a_port_budget_of_its_own_with_its_own_capped_group() -> None:
    sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    config, plan, host = capacity(nodes=2, ipLocalPortRange="40000 40999", lbSourceAddresses=json.dumps(sources))
    assert (host.ceiling, host.deciding.name) == (3 * 2 * 1000, "upstream ports")
    assert "2 nodes x 3 lbSourceAddresses x 1000 free ports" in host.deciding.arithmetic
    conf = render_nginx_conf(nginx_settings(config, plan))
    for index, source in enumerate(sources, start=1):
        group = conf[conf.index(f"upstream emqx_mqtt_{index} {{") :].split("}", 1)[0]
        assert group.count("max_conns=1000 ") == 2
        assert f"        {source} emqx_mqtt_{index};" in conf  # the map: source -> its group
    assert "        33.34% 127.0.0.2;\n        33.33% 127.0.0.3;\n        * 127.0.0.4;" in conf
    assert "proxy_bind $emqx_mqtt_source;" in conf and "proxy_pass $emqx_mqtt_upstream;" in conf


@pytest.mark.parametrize("count", [2, 3, 7, 63, 64])
def test_the_source_addresses_share_the_clients_evenly_to_a_hundredth_of_a_percent(count: int) -> None:
    """split_clients takes hundredths and refuses more than 100%: the explicit shares never pass
    it, and what the last group (`*`) is left with is within a hundredth of the others' share,
    so no group fills (and refuses clients) long before the others."""
    sources = [f"127.0.1.{index}" for index in range(1, count + 1)]
    settings = NginxSettings(
        listen_address="0.0.0.0",
        listen_port=8884,
        upstreams=("127.0.0.1:61001",),
        max_conns=10,
        source_addresses=tuple(sources),
    )
    groups = settings.upstream_groups
    assert [group.source for group in groups] == sources
    assert groups[-1].share == "*"
    hundredths = [round(float(group.share.rstrip("%")) * 100) for group in groups[:-1]]
    hundredths.append(10000 - sum(hundredths))
    assert max(hundredths) - min(hundredths) <= 1, hundredths


def test_without_source_addresses_nginx_keeps_one_group_and_the_routed_address() -> None:
    config, plan, _ = capacity()
    conf = render_nginx_conf(nginx_settings(config, plan))
    assert "proxy_pass emqx_mqtt;" in conf
    assert "proxy_bind" not in conf and "split_clients" not in conf


def test_the_open_files_of_a_node_are_split_over_its_source_groups() -> None:
    config, plan, host = capacity(nodes=2, brokerNofileLimit=1024 + 301, lbSourceAddresses='["127.0.0.2","127.0.0.3"]')
    assert (host.ceiling, host.deciding.name) == (2 * 2 * 150, "broker open files")
    assert render_nginx_conf(nginx_settings(config, plan)).count("max_conns=150 ") == 4


def test_a_node_left_no_connection_per_source_address_is_refused() -> None:
    sources = json.dumps([f"127.0.0.{last}" for last in range(2, 5)])
    config, plan, _ = capacity(brokerNofileLimit=1026, lbSourceAddresses=sources)
    [problem] = capacity_problems(config, plan)
    assert problem.startswith("emqx-cluster:brokerNofileLimit = 1026: allowed: at least 1027 on host '127.0.0.1'")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"lbSourceAddresses": '["10.1.2.3"]'},
            "'10.1.2.3' is not allowed: a 127.0.0.0/8 address, as the nodes are on",
        ),
        ({"lbSourceAddresses": '["127.0.0.2","127.0.0.2"]'}, "allowed: each address once; repeated: 127.0.0.2"),
        ({"lbSourceAddresses": '["224.0.0.9"]'}, "allowed: a unicast IPv4 address of the host"),
        (
            {"advertiseAddress": "10.1.2.3", "lbSourceAddresses": '["127.0.0.2"]'},
            "an address of the host, not loopback",
        ),
        (
            {"brokerNofileLimit": "1024"},
            "emqx-cluster:brokerNofileLimit = '1024': allowed: a whole number from 1025 to 2097152",
        ),
    ],
)
def test_source_addresses_that_cannot_reach_the_nodes_are_refused_at_preview(
    keys: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config({"tlsMode": "self-signed", **keys})
    assert message in str(raised.value)


def test_the_memory_budget_adds_nginx_kernel_and_the_brokers_share_and_keeps_back_each_node() -> None:
    config, plan, _ = capacity(nodes=3, brokerMemoryPerConnectionKib=40)
    budget = memory_budget(config, plan.hosts[0])
    assert budget.kib_per_connection == NGINX_KIB_PER_CONNECTION + KERNEL_KIB_PER_CONNECTION + 40
    assert budget.reserved_kib == HOST_RESERVED_KIB + 3 * NODE_RESERVED_KIB
    assert "brokerMemoryPerConnectionKib" in budget.arithmetic


def test_the_memory_bound_decides_on_a_small_host() -> None:
    config, plan, host = capacity(nodes=2)
    budget = memory_budget(config, plan.hosts[0])
    small = host.with_memory(budget, 1234, 4 * 1024 * 1024)
    assert (small.ceiling, small.deciding.name) == (1234, "memory")
    assert "MemTotal 4194304 kB" in small.deciding.arithmetic
    assert small.as_output()["bounds"]["memory"] == 1234


def test_expected_connections_above_the_ceiling_are_refused_naming_bound_and_key() -> None:
    config, plan, _ = capacity(nodes=2, ipLocalPortRange="40000 40999", expectedConnections=2001)
    [problem] = capacity_problems(config, plan)
    assert problem.startswith("emqx-cluster:expectedConnections = 2001: allowed: at most 2000 per host")
    assert "upstream ports decide (2 nodes x 1 source address (lbSourceAddresses unset) x 1000 free ports" in problem
    assert "raise emqx-cluster:lbSourceAddresses or emqx-cluster:ipLocalPortRange" in problem
    config, plan, _ = capacity(nodes=2, ipLocalPortRange="40000 40999", expectedConnections=2000)
    assert capacity_problems(config, plan) == []


@pytest.mark.parametrize("workers", [None, 3])
def test_worker_processes_render_as_set_or_auto(workers: int | None) -> None:
    keys = {"lbWorkerProcesses": workers} if workers else {}
    config, plan, _ = capacity(**keys)
    assert f"worker_processes {workers or 'auto'};" in render_nginx_conf(nginx_settings(config, plan))
