"""MQTT access through the whole program under mocks: every stack's brokers authenticate, the
access files and the client registry carry the declared clients as secrets, and a declared client
list stored in plain text is refused before anything is declared."""

from __future__ import annotations

import json

import pulumi
import pytest

from tests.support.program import ProgramRun, run_program
from tests.support.stackfiles import StackCase, stack_config, with_changes
from tests.support.views import brokers, envs, is_secret_at, walk_strings

PASSWORD = "declared-password-0123456789"
CLIENTS = json.dumps([{"username": "sensor-1", "password": PASSWORD}, {"username": "ops", "password": PASSWORD + "x"}])


def run_with_clients(**changes: object) -> ProgramRun:
    return run_program(with_changes(stack_config("dev"), **changes), secrets={"mqttClients": CLIENTS}, stack="dev")


def test_every_stack_has_an_enabled_authenticator_and_a_deny_by_default_acl(deployed: ProgramRun) -> None:
    for container in brokers(deployed):
        env = envs(container)
        assert env["EMQX_AUTHENTICATION__1__MECHANISM"] == "password_based"
        assert env["EMQX_AUTHENTICATION__1__BACKEND"] == "built_in_database"
        assert env["EMQX_AUTHENTICATION__1__ENABLE"] == "true"
        assert env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
        assert env["EMQX_AUTHORIZATION__SOURCES__1__PATH"] == '"/opt/emqx/etc/access/acl.conf"'


def test_allow_anonymous_drops_the_authenticator_and_keeps_the_acl(stacks: dict[str, StackCase]) -> None:
    dev = stacks["dev"]
    config = {
        k: v for k, v in dev.config.items() if k not in ("emqx-cluster:mqttGeneratedClient", "emqx-cluster:mqttAcl")
    }
    run = run_program(with_changes(config, allowAnonymous=True), secrets=dev.secrets, stack="dev")
    for container in brokers(run):
        env = envs(container)
        assert not [key for key in env if key.startswith("EMQX_AUTHENTICATION")]
        assert env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
    assert not [r.name for r in run.resources if r.name.startswith("emqx-mqtt-client-")]
    assert "anonymous" in run.outputs["mqttAuthentication"]


def test_declared_clients_reach_hosts_only_as_secrets_and_never_in_plain_text() -> None:
    run = run_with_clients()
    access_files = [r for r in run.resources if r.name.endswith("-access-files")]
    registrations = {r.name: r for r in run.resources if r.name.startswith("emqx-mqtt-client-")}
    assert len(access_files) == 3
    assert set(registrations) == {
        "emqx-mqtt-client-sensor-1",
        "emqx-mqtt-client-ops",
        "emqx-mqtt-client-dev-client",  # Pulumi.dev.yaml's generated client
    }
    for command in [*access_files, *registrations.values()]:
        assert is_secret_at(command, ("stdin",)), command.name
        assert not any(PASSWORD in text for text in walk_strings(command.inputs)), command.name
    # The registration holds that client's hash only, and removes that client on delete.
    sensor = registrations["emqx-mqtt-client-sensor-1"]
    assert '\\"user_id\\": \\"sensor-1\\"' in str(sensor.operation_script("create"))
    assert '\\"ops\\"' not in str(sensor.operation_script("create"))
    assert "/users/sensor-1" in str(sensor.operation_script("delete"))


def test_registrations_run_on_the_seed_once_the_whole_cluster_is_verified() -> None:
    run = run_with_clients()
    last_gate = run.named("wave2-verify")
    for name in ("emqx-mqtt-client-sensor-1", "emqx-mqtt-acl"):
        command = run.named(name)
        assert last_gate.urn in command.dependencies, name
        assert "docker exec -i emqx1 curl" in str(command.operation_script("create")).replace('"$container"', "emqx1")


def test_a_client_list_stored_in_plain_text_is_refused_before_anything_is_declared() -> None:
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as raised:
        run_program(with_changes(stack_config("dev"), mqttClients=json.loads(CLIENTS)), stack="dev", into=run)
    message = str(raised.value)
    assert "emqx-cluster:mqttClients is stored in plain text: allowed: a secret value" in message
    assert PASSWORD not in message
    assert run.resources == []


def test_the_generated_client_is_a_secret_output(deployed: ProgramRun, case: StackCase) -> None:
    if case.stack != "dev":
        assert "mqttClient" not in deployed.outputs
        return
    assert "mqttClient" in deployed.secret_outputs
    assert deployed.outputs["mqttClient"]["username"] == "dev-client"
    assert "username and password" in deployed.outputs["mqttAuthentication"]


def test_admin_networks_open_https_dashboards_to_those_networks_through_the_firewall() -> None:
    config = with_changes(stack_config("dev"), advertiseAddress="10.0.0.11", adminNetworks=["10.20.0.0/24"])
    run = run_program(config, stack="dev")
    rules = str(run.named("emqx-firewall-rules").operation_script("create"))
    assert "-A EMQX-CLUSTER -p tcp --syn -m multiport --dports 62001:62003 -j EMQX-CLUSTER-ADMIN" in rules
    assert "-A EMQX-CLUSTER-ADMIN -s 10.20.0.0/24 -j ACCEPT" in rules
    assert "tcp dport { 62001-62003 } ip saddr { 10.20.0.0/24 } accept" in rules
    # One host: its cluster ports are kept to itself while the firewall runs.
    assert "-A EMQX-CLUSTER-PEERS -s 10.0.0.11/32 -j ACCEPT" in rules
    for container in brokers(run):
        labels = {label["label"]: label["value"] for label in container.inputs["labels"]}
        assert len(labels["io.emqx-cluster.admin-certificate"]) == 16
    access_files = run.named("emqx1-access-files")
    assert is_secret_at(access_files, ("stdin",))
    assert "admin-cert.pem admin-key.pem" in str(access_files.operation_script("create"))
    assert [row["https"] for row in run.outputs["dashboards"]] == [
        f"https://10.0.0.11:{port}" for port in (62001, 62002, 62003)
    ]


def test_without_admin_networks_one_host_gets_no_firewall_and_no_https(deployed: ProgramRun, case: StackCase) -> None:
    assert not [r for r in deployed.resources if "firewall" in r.name]
    assert all(row["https"] is None for row in deployed.outputs["dashboards"])
