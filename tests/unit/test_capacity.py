"""The connection ceiling per host: every bound, each deciding in some shape; the cap the upstream
renders from it; expectedConnections refused above it, naming the bound and the key."""

from __future__ import annotations

from typing import Any

import pytest

from components.capacity import BROKER_RESERVED_FILES, capacity_problems, cluster_capacity, free_ports
from components.config_parse import parse_stack_config
from components.plan import plan_cluster
from components.render.nginx import nginx_settings, render_nginx_conf


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


def test_the_brokers_open_files_decide_when_their_limit_is_low() -> None:
    _, _, host = capacity(nodes=3, brokerNofileLimit=2048)
    assert host.deciding.name == "broker open files"
    assert host.ceiling == 3 * (2048 - BROKER_RESERVED_FILES)
    assert "brokerNofileLimit" in host.deciding.lifted_by


def test_expected_connections_above_the_ceiling_are_refused_naming_bound_and_key() -> None:
    config, plan, _ = capacity(nodes=2, ipLocalPortRange="40000 40999", expectedConnections=2001)
    [problem] = capacity_problems(config, plan)
    assert problem.startswith("emqx-cluster:expectedConnections = 2001: allowed: at most 2000 per host")
    assert "upstream ports decide (2 nodes x 1000 free ports" in problem
    assert "raise emqx-cluster:ipLocalPortRange" in problem
    config, plan, _ = capacity(nodes=2, ipLocalPortRange="40000 40999", expectedConnections=2000)
    assert capacity_problems(config, plan) == []


@pytest.mark.parametrize("workers", [None, 3])
def test_worker_processes_render_as_set_or_auto(workers: int | None) -> None:
    keys = {"lbWorkerProcesses": workers} if workers else {}
    config, plan, _ = capacity(**keys)
    assert f"worker_processes {workers or 'auto'};" in render_nginx_conf(nginx_settings(config, plan))
