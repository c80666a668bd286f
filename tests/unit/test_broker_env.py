"""The EMQX environment of each node: the whole per-node config, with no secret in it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from components.config import StackConfig
from components.config_parse import parse_stack_config
from components.plan import ClusterPlan, plan_cluster
from components.render.broker_env import (
    COOKIE_VARIABLE,
    DASHBOARD_PASSWORD_VARIABLE,
    broker_environment,
)
from components.render.templating import double_quoted
from tests.support.stackfiles import stack_raw, validate

COOKIE = "Cookie_0123456789abcdefXYZ"
PASSWORD = "Dashboard-Pa55word!"


@pytest.fixture
def cluster() -> tuple[StackConfig, ClusterPlan]:
    raw = stack_raw("dev")
    raw.update(erlangCookie=COOKIE, dashboardPassword=PASSWORD)
    return validate(raw)


def test_node_identity_and_discovery(cluster: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = cluster
    for node in plan.nodes:
        env = broker_environment(node, plan, config)
        assert env["EMQX_NODE__NAME"] == node.node_name
        assert env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "manual"
        # `stateless` makes EMQX listen on 5370 + N, the RPC port the plan reserved for this node.
        assert env["EMQX_RPC__PORT_DISCOVERY"] == "stateless"
        assert node.ports.rpc == 5370 + int(node.node_name.split("@")[0].removeprefix("emqx"))


def test_binds_are_hocon_quoted_node_addresses(cluster: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = cluster
    for node in plan.nodes:
        env = broker_environment(node, plan, config)
        assert env["EMQX_LISTENERS__TCP__DEFAULT__BIND"] == f'"{node.address}:{node.ports.mqtt}"'
        assert "0.0.0.0" not in env["EMQX_LISTENERS__TCP__DEFAULT__BIND"]


def test_the_dashboard_api_and_prometheus_listen_on_loopback_on_every_host() -> None:
    """Over several hosts too: the admin listener never binds a routable address."""
    hosts = [
        {"name": name, "address": address, "nodes": 2} for name, address in (("a", "10.0.0.11"), ("b", "10.0.0.12"))
    ]
    config = parse_stack_config({"tlsMode": "self-signed", "hosts": json.dumps(hosts)})
    plan = plan_cluster(config)
    for node in plan.nodes:
        env = broker_environment(node, plan, config)
        assert env["EMQX_DASHBOARD__LISTENERS__HTTP__BIND"] == f'"127.0.0.1:{node.ports.dashboard}"'
        assert node.dashboard_url == f"http://127.0.0.1:{node.ports.dashboard}"


@pytest.mark.parametrize("value", ["127.0.0.1:61001", "mqtt.example.net:1883", 'say "hi"', "back\\slash", ""])
def test_double_quoted_round_trips(value: str) -> None:
    """A HOCON quoted string uses JSON's escapes: what EMQX reads back is the original value."""
    quoted = double_quoted(value)
    assert quoted.startswith('"')
    assert quoted.endswith('"')
    assert json.loads(quoted) == value


def test_proxy_protocol_matches_the_plan(cluster: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = cluster
    assert plan.proxy_protocol
    for proxy_protocol in (True, False):
        variant = replace(plan, proxy_protocol=proxy_protocol)
        env = broker_environment(variant.nodes[0], variant, config)
        assert env["EMQX_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL"] == str(proxy_protocol).lower()


def test_unused_default_listeners_are_disabled(cluster: tuple[StackConfig, ClusterPlan]) -> None:
    """8883/8083/8084 are fixed ports: on one host network the second node could not bind them."""
    config, plan = cluster
    for node in plan.nodes:
        env = broker_environment(node, plan, config)
        for listener in ("SSL", "WS", "WSS"):
            assert env[f"EMQX_LISTENERS__{listener}__DEFAULT__ENABLE"] == "false"
        assert (
            "EMQX_LISTENERS__TCP__DEFAULT__ENABLE" not in env or env["EMQX_LISTENERS__TCP__DEFAULT__ENABLE"] == "true"
        )


def test_logs_are_bounded(cluster: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = cluster
    env = broker_environment(plan.nodes[0], plan, config)
    assert env["EMQX_LOG__FILE__ENABLE"] == "true"
    assert int(env["EMQX_LOG__FILE__ROTATION_COUNT"]) > 0
    assert env["EMQX_LOG__FILE__ROTATION_SIZE"].endswith("MB")


def test_no_secret_in_the_plain_environment(cluster: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = cluster
    assert config.erlang_cookie is not None
    assert config.erlang_cookie.get_secret_value() == COOKIE
    for node in plan.nodes:
        env = broker_environment(node, plan, config)
        assert COOKIE_VARIABLE not in env
        assert DASHBOARD_PASSWORD_VARIABLE not in env
        text = json.dumps(env)
        assert COOKIE not in text
        assert PASSWORD not in text


def test_nodes_differ_only_in_their_own_name_and_ports(cluster: tuple[StackConfig, ClusterPlan]) -> None:
    config, plan = cluster
    environments = [broker_environment(node, plan, config) for node in plan.nodes]
    assert all(env.keys() == environments[0].keys() for env in environments)
    assert all(isinstance(value, str) for env in environments for value in env.values())
    varying = {key for key in environments[0] if len({env[key] for env in environments}) > 1}
    assert varying == {
        "EMQX_NODE__NAME",
        "EMQX_LISTENERS__TCP__DEFAULT__BIND",
        "EMQX_DASHBOARD__LISTENERS__HTTP__BIND",
    }
