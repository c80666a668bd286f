"""EmqxClusterArgs: a described field for every stack-config key (as pulumi's component analyzer
sees them, the schema a generated SDK documents), the stack config as args and back unchanged,
bad args refused with the stack config's messages, Outputs refused where the plan needs values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.provider.experimental.analyzer import Analyzer, AnalyzeResult
from pulumi.provider.experimental.util import camel_case

from components.args_config import LATE_MARK, config_of, placeholder, stack_args
from components.cluster_args import AclRule, ClusterHost, EmqxClusterArgs, MqttClient
from components.config import config_keys
from components.config_access import AclRuleConfig, MqttClientConfig
from components.config_parse import ConfigError, host_config_keys, parse_stack_config
from components.emqx_cluster import EmqxCluster
from tests.support.stackfiles import stack_raw

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nstack\n-----END OPENSSH PRIVATE KEY-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
TLS_KEY = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"


@pytest.fixture(scope="module")
def schema() -> AnalyzeResult:
    """What `component_provider_host` would publish for EmqxCluster (no engine needed)."""
    return Analyzer("emqx-cluster").analyze([EmqxCluster])


def test_every_args_field_has_a_description_in_the_schema(schema: AnalyzeResult) -> None:
    inputs = schema["component_definitions"]["EmqxCluster"].inputs
    assert [name for name, prop in inputs.items() if not prop.description] == []
    types = schema["type_definitions"]
    assert set(types) == {"ClusterHost", "MqttClient", "AclRule"}
    for name, definition in types.items():
        assert definition.description, name
        assert [field for field, prop in definition.properties.items() if not prop.description] == [], name


def test_every_stack_config_key_is_an_args_field_of_the_same_name(schema: AnalyzeResult) -> None:
    inputs = schema["component_definitions"]["EmqxCluster"].inputs
    assert sorted(inputs) == sorted(config_keys())
    types = schema["type_definitions"]
    assert sorted(types["ClusterHost"].properties) == sorted(host_config_keys())
    assert sorted(types["MqttClient"].properties) == sorted(camel_case(n) for n in MqttClientConfig.model_fields)
    assert sorted(types["AclRule"].properties) == sorted(camel_case(n) for n in AclRuleConfig.model_fields)
    for typed in (EmqxClusterArgs, ClusterHost, MqttClient, AclRule):
        assert typed.__optional_keys__ | typed.__required_keys__ == set(typed.__annotations__)


def test_shape_values_are_plain_and_values_other_resources_produce_are_inputs(schema: AnalyzeResult) -> None:
    """`plain` in the schema: a generated SDK takes a plain value there, an Input elsewhere."""
    inputs = schema["component_definitions"]["EmqxCluster"].inputs
    for plain in ("nodes", "waves", "hosts", "placement", "mqttPortBase", "dashboardPortBase", "lbPort"):
        assert inputs[plain].plain, plain
    for late in ("dockerHost", "advertiseAddress", "sshUser", "sshPrivateKey", "tlsCertificate", "tlsClientCrl"):
        assert not inputs[late].plain, late
    host = schema["type_definitions"]["ClusterHost"].properties
    assert host["nodes"].plain and host["name"].plain and not host["address"].plain
    assert not host["address"].optional and host["dockerHost"].optional


def test_each_stack_becomes_args_that_validate_to_the_same_config() -> None:
    for stack, extra in (
        ("dev", {}),
        ("prod", {"tlsCertificate": CERT, "tlsPrivateKey": TLS_KEY, "sshPrivateKey": KEY}),
    ):
        config = parse_stack_config({**stack_raw(stack), **extra})
        args = stack_args(config)
        again, late = config_of(args)
        assert again == config, stack
        assert again.model_fields_set == config.model_fields_set, stack
        assert late.by_placeholder == {}
    hosts = '[{"name": "a", "address": "10.0.0.11", "nodes": 2, "sshUser": "deploy"}, {"name": "b", "address": "10.0.0.12", "nodes": 1}]'
    config = parse_stack_config({"tlsMode": "self-signed", "hosts": hosts, "sshPrivateKey": KEY})
    args = stack_args(config)
    assert args["hosts"][0] == {"name": "a", "address": "10.0.0.11", "nodes": 2, "ssh_user": "deploy"}
    assert config_of(args)[0] == config


def refusal(args: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_of(args)
    return str(caught.value).splitlines()[1:]


def test_bad_args_are_refused_with_the_stack_configs_messages_and_keys() -> None:
    assert refusal({"nodes": 0, "tls_mode": "self-signed"}) == [
        "  emqx-cluster:nodes = 0: allowed: a whole number from 1 to 999"
    ]
    lines = refusal(
        {"tls_mode": "self-signed", "hosts": [{"name": "a", "address": "224.0.0.1", "nodes": 1}], "lb_prot": 1}
    )
    assert any(
        line.startswith("  emqx-cluster:hosts[0].address = '224.0.0.1': allowed: a unicast IPv4") for line in lines
    )
    assert any(line.startswith("  emqx-cluster:lbProt = 1: unknown key; allowed keys: nodes, waves") for line in lines)
    (hidden,) = refusal({"tls_mode": "self-signed", "erlang_cookie": "short"})
    assert hidden.startswith("  emqx-cluster:erlangCookie = (hidden: secret): allowed: 16 to 255 characters")


def test_an_output_is_refused_at_preview_naming_its_field_where_the_plan_needs_its_value() -> None:
    lines = refusal(
        {
            "nodes": pulumi.Output.from_input(3),
            "tls_mode": "self-signed",
            "hosts": [
                {"name": "a", "address": "10.0.0.11", "nodes": pulumi.Output.from_input(1)},
                {"name": "b", "address": pulumi.Output.from_input("10.0.0.12"), "nodes": 1},
            ],
        }
    )
    assert lines == [
        "  emqx-cluster:nodes = (an Output, known only once other resources exist): allowed: a plain value, known "
        "at preview (EmqxClusterArgs declares it plain: it decides how many resources exist, their names, ports "
        "or settings, which Pulumi must know before it declares them)",
        "  emqx-cluster:hosts[0].nodes = (an Output, known only once other resources exist): allowed: a plain "
        "value, known at preview (EmqxClusterArgs declares it plain: it decides how many resources exist, their "
        "names, ports or settings, which Pulumi must know before it declares them)",
    ]


def test_every_field_the_schema_offers_as_an_input_has_a_placeholder(schema: AnalyzeResult) -> None:
    """What a generated SDK takes as an Input, config_of takes as an Output: the model validates a
    stand-in meanwhile (LATE_FORMS), so each such field needs one."""
    types = schema["type_definitions"]
    paths = [name for name, prop in schema["component_definitions"]["EmqxCluster"].inputs.items() if not prop.plain]
    paths += [f"hosts[0].{name}" for name, prop in types["ClusterHost"].properties.items() if not prop.plain]
    paths += [f"mqttClients[0].{name}" for name, prop in types["MqttClient"].properties.items() if not prop.plain]
    assert {"advertiseAddress", "dockerHost", "sshUser", "hosts[0].address", "hosts[0].sshHost"} <= set(paths)
    for path in paths:
        assert placeholder(path), path


def test_fields_that_take_an_output_validate_with_a_placeholder_and_keep_the_output() -> None:
    certificate = pulumi.Output.from_input(CERT)
    host_key = pulumi.Output.from_input("ssh-ed25519 AAAA")
    config, late = config_of(
        {
            "tls_certificate": certificate,
            "tls_private_key": TLS_KEY,
            "hosts": [{"name": "a", "address": "10.0.0.11", "nodes": 1, "ssh_host_key": host_key}],
        }
    )
    assert config.tls.certificate is not None and config.hosts is not None
    held = config.tls.certificate.get_secret_value()
    assert LATE_MARK in held and "-----BEGIN CERTIFICATE-----" in held
    assert isinstance(late.resolve(held), pulumi.Output)
    assert isinstance(late.resolve(str(config.hosts[0].ssh_host_key)), pulumi.Output)
    assert late.resolve(TLS_KEY) == TLS_KEY  # a known value is itself
    assert len(late.by_placeholder) == 2


def test_validating_args_leaves_them_as_given() -> None:
    """The model validates placeholders in a copy: the caller's args (perhaps another cluster's
    too) keep their Outputs."""
    network = pulumi.Output.from_input("10.20.0.0/24")
    key = pulumi.Output.from_input(KEY)
    args: dict[str, Any] = {
        "tls_mode": "self-signed",
        "admin_networks": [network],
        "hosts": [{"name": "a", "address": "10.0.0.11", "nodes": 1, "ssh_private_key": key}],
    }
    config_of(args)
    assert args["admin_networks"] == [network]
    assert args["hosts"] == [{"name": "a", "address": "10.0.0.11", "nodes": 1, "ssh_private_key": key}]


def test_every_output_is_described_and_is_one_the_program_exports(schema: AnalyzeResult) -> None:
    """The component's outputs are the stack's exports: one name for each, in both places."""
    outputs = schema["component_definitions"]["EmqxCluster"].outputs
    assert [name for name, prop in outputs.items() if not prop.description] == []
    program = (Path(__file__).parents[2] / "__main__.py").read_text()
    assert sorted(outputs) == sorted(re.findall(r'pulumi\.export\("(\w+)"', program))
    assert outputs["mqttClient"].optional and outputs["metrics"].optional and not outputs["endpoint"].optional
