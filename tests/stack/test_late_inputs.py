"""Args given as Outputs of other resources (unknown at preview): the fields that take one reach
their resources as those Outputs, never as the placeholder the config model validated meanwhile,
and a value that fails its field's check once known stops the update naming the field."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, cast

import pulumi
import pulumi_random as random
import pytest

from components.args_config import LATE_MARK, stack_args
from components.cluster_args import EmqxClusterArgs
from components.emqx_cluster import EmqxCluster
from components.render.broker_env import COOKIE_VARIABLE, DASHBOARD_PASSWORD_VARIABLE
from components.render.nginx import CONTAINER_RUNTIME
from components.render.prometheus import CONFIG_PATH
from tests.support.program import CONTAINER, REMOTE_COMMAND, ProgramRun, run_program
from tests.support.stackfiles import parse_config, stack_config, with_changes
from tests.support.views import brokers, envs, lb_container, walk_strings

REMOTE = {"dockerHost": "ssh://deploy@10.0.0.11", "sshHost": "10.0.0.11", "advertiseAddress": "10.0.0.11"}
KNOWN = {  # what the stack config says before the Outputs replace it
    "tlsCertificate": "-----BEGIN CERTIFICATE-----\nMIIstack\n-----END CERTIFICATE-----\n",
    "tlsPrivateKey": "-----BEGIN PRIVATE KEY-----\nstack\n-----END PRIVATE KEY-----\n",
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nc3RhY2s=\n-----END OPENSSH PRIVATE KEY-----\n",
}
LATE = {  # args field -> the value its Output resolves to
    "tls_certificate": "-----BEGIN CERTIFICATE-----\nMIIlate\n-----END CERTIFICATE-----\n",
    "tls_private_key": "-----BEGIN PRIVATE KEY-----\nlate\n-----END PRIVATE KEY-----\n",
    "tls_client_ca": "-----BEGIN CERTIFICATE-----\nMIIlateca\n-----END CERTIFICATE-----\n",
    "tls_client_crl": "-----BEGIN X509 CRL-----\nMIIlatecrl\n-----END X509 CRL-----\n",
    "erlang_cookie": "LateCookie0123456789",
    "dashboard_password": "late-Password-1",
    "ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nbGF0ZQ==\n-----END OPENSSH PRIVATE KEY-----\n",
    "ssh_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILateHostKey",
}


def late_program(base: Mapping[str, Any], late: Mapping[str, Any]) -> Callable[[], None]:
    """EmqxCluster `emqx` with `base`'s stack config as args, each field of `late` replaced by an
    Output of another resource (a password: unknown in preview, known after update)."""

    def program() -> None:
        args: dict[str, Any] = dict(stack_args(parse_config(base)))
        source = random.RandomPassword("source", length=8)
        for field, value in late.items():
            args[field] = source.result.apply(partial(_then, value))
        EmqxCluster("emqx", cast(EmqxClusterArgs, args))

    return program


def _then(value: Any, _: str) -> Any:
    return value


def refusal(program: Callable[[], None], stack: str = "test") -> str:
    """What stops the update of `program` (a RunError's message)."""
    with pytest.raises(pulumi.RunError) as raised:
        run_program({}, program=program, stack=stack)
    return str(raised.value)


def single_host_base() -> dict[str, Any]:
    return with_changes(stack_config("dev"), **REMOTE, **KNOWN, tlsMode="provided")


@pytest.fixture(scope="module")
def runs() -> dict[str, ProgramRun]:
    program = late_program(single_host_base(), LATE)
    return {mode: run_program({}, program=program, preview=mode == "preview") for mode in ("update", "preview")}


@pytest.fixture(params=["update", "preview"])
def run(request: pytest.FixtureRequest, runs: dict[str, ProgramRun]) -> ProgramRun:
    return runs[request.param]


def test_no_placeholder_reaches_a_resource(run: ProgramRun) -> None:
    for resource in run.resources:
        assert not [text for text in walk_strings(resource.inputs) if LATE_MARK in text], resource.name


def test_preview_and_update_declare_the_same_resources(runs: dict[str, ProgramRun]) -> None:
    update, preview = runs["update"], runs["preview"]
    assert sorted(r.urn for r in update.resources) == sorted(r.urn for r in preview.resources)


def test_the_outputs_reach_the_load_balancer_brokers_and_host_commands(runs: dict[str, ProgramRun]) -> None:
    run = runs["update"]
    uploads = {upload["file"]: upload for upload in lb_container(run).inputs["uploads"]}
    for path, field in (
        (CONTAINER_RUNTIME.certificate_path, "tls_certificate"),
        (CONTAINER_RUNTIME.private_key_path, "tls_private_key"),
        (CONTAINER_RUNTIME.client_ca_path, "tls_client_ca"),
        (CONTAINER_RUNTIME.client_crl_path, "tls_client_crl"),
    ):
        assert uploads[path]["content"] == LATE[field], field
    crl_digest = hashlib.sha256(LATE["tls_client_crl"].encode()).hexdigest()
    for key in run.of_type("random:index/randomBytes:RandomBytes"):
        assert key.inputs["keepers"] == {"clientCrlSha256": crl_digest}
    for broker in brokers(run):
        env = envs(broker)
        assert env[COOKIE_VARIABLE] == LATE["erlang_cookie"]
        assert LATE["dashboard_password"] in env[DASHBOARD_PASSWORD_VARIABLE]
        assert "envs" in broker.secret_inputs
    commands = run.of_type(REMOTE_COMMAND)
    assert commands
    for command in commands:
        assert command.connection is not None
        assert command.connection["privateKey"] == LATE["ssh_private_key"], command.name
        assert command.connection["hostKey"] == LATE["ssh_host_key"], command.name
        assert "connection" in command.secret_inputs


def test_a_hosts_own_key_may_be_an_output_the_others_keep_the_stacks() -> None:
    hosts = [
        {"name": "a", "address": "10.0.0.11", "nodes": 1, "sshUser": "deploy"},
        {"name": "b", "address": "10.0.0.12", "nodes": 2, "sshUser": "deploy"},
    ]
    base = {
        **{
            k: v
            for k, v in stack_config("dev").items()
            if k.split(":", 1)[1] not in ("nodes", "advertiseAddress", "dockerHost", "lbListenAddress")
        },
        "emqx-cluster:hosts": hosts,
        "emqx-cluster:sshPrivateKey": KNOWN["sshPrivateKey"],
    }

    def program() -> None:
        args: dict[str, Any] = dict(stack_args(parse_config(base)))
        source = random.RandomPassword("source", length=8)
        args["hosts"][1]["ssh_private_key"] = source.result.apply(lambda _: LATE["ssh_private_key"])
        EmqxCluster("emqx", cast(EmqxClusterArgs, args))

    run = run_program({}, program=program)
    for name, key in (("a", KNOWN["sshPrivateKey"]), ("b", LATE["ssh_private_key"])):
        command = run.named(f"emqx-{name}-preflight-check")
        assert command.connection is not None and command.connection["privateKey"] == key, name
    assert not [r.name for r in run.resources if any(LATE_MARK in text for text in walk_strings(r.inputs))]


def test_a_late_value_that_fails_its_check_stops_the_update_naming_the_field() -> None:
    program = late_program(single_host_base(), {"tls_certificate": "not a certificate"})
    assert (
        "emqx-cluster:tlsCertificate = (hidden: secret): allowed: a PEM certificate chain "
        "(-----BEGIN CERTIFICATE-----); value not shown"
    ) in refusal(program)


def test_the_containers_of_a_late_stack_are_the_known_stacks() -> None:
    """Outputs change values, not the shape: the same containers as with the values known."""
    known = run_program({}, program=late_program(single_host_base(), {}))
    late = run_program({}, program=late_program(single_host_base(), LATE))
    assert sorted(r.name for r in known.of_type(CONTAINER)) == sorted(r.name for r in late.of_type(CONTAINER))


CLIENT_PASSWORDS = ("declared-password-0123456789", "ops-password-0123456789")
CLIENT_HASH = "$2b$12$" + "a" * 53  # a bcrypt hash as EMQX stores it


def with_clients(late: bool) -> ProgramRun:
    """The dev stack with two declared clients (bcrypt: one by password, one by hash), each value
    given plainly or as an Output of another resource."""
    clients = [
        {"username": "sensor-1", "password": CLIENT_PASSWORDS[0]},
        {"username": "ops", "passwordHash": CLIENT_HASH},
    ]
    base = with_changes(stack_config("dev"), mqttClients=clients, mqttPasswordHash="bcrypt")

    def program() -> None:
        args: dict[str, Any] = dict(stack_args(parse_config(base)))
        if late:
            source = random.RandomPassword("source", length=8)
            args["mqtt_clients"][0]["password"] = source.result.apply(partial(_then, CLIENT_PASSWORDS[0]))
            args["mqtt_clients"][1]["password_hash"] = source.result.apply(partial(_then, CLIENT_HASH))
        EmqxCluster("emqx", cast(EmqxClusterArgs, args))

    return run_program({}, program=program, stack="dev")


def test_client_passwords_given_as_outputs_are_hashed_into_the_same_files_and_calls() -> None:
    """bcrypt's salt derives from the password (render/access.py salt_seed): the same inputs
    whether the password was known at preview or not."""
    known, late = with_clients(late=False), with_clients(late=True)
    for name in ("emqx1-access-files", "emqx-mqtt-client-sensor-1", "emqx-mqtt-client-ops"):
        assert late.named(name).stdin == known.named(name).stdin, name
        assert "stdin" in late.named(name).secret_inputs, name
    assert not [r.name for r in late.resources if any(LATE_MARK in text for text in walk_strings(r.inputs))]


def test_a_late_client_password_too_short_for_the_hash_is_refused_naming_the_client() -> None:
    base = with_changes(stack_config("dev"), mqttClients=[{"username": "sensor-1", "password": "x" * 16}])

    def program() -> None:
        args: dict[str, Any] = dict(stack_args(parse_config(base)))
        source = random.RandomPassword("source", length=8)
        args["mqtt_clients"][0]["password"] = source.result.apply(partial(_then, "short-password"))
        EmqxCluster("emqx", cast(EmqxClusterArgs, args))

    assert (
        "emqx-cluster:mqttClients[0].password = (hidden: secret, 14 characters): allowed: at least 16 characters "
        "with mqttPasswordHash = 'sha256'"
    ) in refusal(program, stack="dev")


def prometheus_config(late: bool, second: str = "am.example.net:9093") -> str:
    """Prometheus's config on the dev host, its second Alertmanager given plainly or as an Output."""
    base = with_changes(
        stack_config("dev"), metrics=True, metricsAlertmanagers=["10.0.0.5:9093", "am.example.net:9093"]
    )

    def program() -> None:
        args: dict[str, Any] = dict(stack_args(parse_config(base)))
        if late:
            source = random.RandomPassword("source", length=8)
            args["metrics_alertmanagers"][1] = source.result.apply(partial(_then, second))
        EmqxCluster("emqx", cast(EmqxClusterArgs, args))

    run = run_program({}, program=program, stack="dev")
    container = run.named("emqx-prometheus", custom=True)
    uploads = {upload["file"]: upload for upload in container.inputs["uploads"]}
    return str(uploads[CONFIG_PATH]["content"])


def test_an_alertmanager_given_as_an_output_reaches_prometheus_config() -> None:
    known = prometheus_config(late=False)
    assert "am.example.net:9093" in known and LATE_MARK not in known
    assert prometheus_config(late=True) == known


def test_a_late_alertmanager_that_is_no_host_port_is_refused_naming_its_item() -> None:
    with pytest.raises(pulumi.RunError) as raised:
        prometheus_config(late=True, second="http://am:9093")
    assert "emqx-cluster:metricsAlertmanagers[1] = 'http://am:9093': allowed: host:port" in str(raised.value)


def firewall_rules(late: bool, first: str = "10.20.0.0/24") -> str:
    """The single remote host's firewall program, its second admin network given plainly or as an Output."""
    base = with_changes(single_host_base(), adminNetworks=[first, "10.30.0.0/24"])

    def program() -> None:
        args: dict[str, Any] = dict(stack_args(parse_config(base)))
        if late:
            source = random.RandomPassword("source", length=8)
            args["admin_networks"][1] = source.result.apply(partial(_then, "10.30.0.0/24"))
        EmqxCluster("emqx", cast(EmqxClusterArgs, args))

    run = run_program({}, program=program)
    return str(run.named("emqx-firewall-rules").stdin)


def test_an_admin_network_given_as_an_output_reaches_the_firewall() -> None:
    known = firewall_rules(late=False)
    assert "10.30.0.0/24" in known and "198.18." not in known
    assert firewall_rules(late=True) == known


def test_a_plain_admin_network_equal_to_a_late_ones_stand_in_is_refused() -> None:
    with pytest.raises(pulumi.RunError) as raised:
        firewall_rules(late=True, first="198.18.0.1/32")
    assert (
        "emqx-cluster:adminNetworks[0] = '198.18.0.1/32': allowed: a value without '198.18.0.1/32' (the program "
        "writes it for adminNetworks[1], an Output, until that is known)"
    ) in str(raised.value)


def test_a_plain_value_holding_a_late_address_stand_in_is_refused() -> None:
    """The stand-in would be replaced inside it too: 198.19.0.0/16 would open the host's address."""
    program = late_program(
        with_changes(single_host_base(), adminNetworks=["198.19.0.0/16"]), {"advertise_address": "10.0.0.11"}
    )
    assert (
        "emqx-cluster:adminNetworks[0] = '198.19.0.0/16': allowed: a value without '198.19.0.0' (the program "
        "writes it for advertiseAddress, an Output, until that is known)"
    ) in refusal(program)


def test_two_clusters_whose_engines_are_outputs_are_not_taken_for_one_host() -> None:
    """Their stand-ins are alike; the engines are not compared (Docker refuses a true clash at up)."""

    def program() -> None:
        for name, address in (("edge", "10.0.0.11"), ("core", "10.0.0.12")):
            base = with_changes(single_host_base(), dockerHost=f"ssh://deploy@{address}", sshHost=address)
            args: dict[str, Any] = dict(stack_args(parse_config(base)))
            source = random.RandomPassword(f"{name}-source", length=8)
            args["docker_host"] = source.result.apply(partial(_then, f"ssh://deploy@{address}"))
            EmqxCluster(name, cast(EmqxClusterArgs, args))

    run = run_program({}, program=program)
    engines = sorted(r.inputs["host"] for r in run.resources if r.type == "pulumi:providers:docker")
    assert engines == ["ssh://deploy@10.0.0.11", "ssh://deploy@10.0.0.12"]


def test_a_late_loopback_address_is_judged_with_loopback_source_addresses_once_known() -> None:
    """Nodes on loopback reached from 127.0.0.2: valid; the stand-in (not loopback) is not judged."""
    base = with_changes(stack_config("dev"), lbSourceAddresses=["127.0.0.2"])
    run = run_program({}, program=late_program(base, {"advertise_address": "127.0.0.1"}), stack="dev")
    assert "127.0.0.2" in str(run.named("emqx-lb").inputs["uploads"])


# A host's address, Docker engine and SSH login as Outputs (a VM's IP, say): written into node
# names, nginx.conf, scripts, certificates and the engine's address, so every child resource must
# get exactly what the same values given plainly give it.
SEVERAL_HOSTS = [
    {"name": "a", "address": "10.0.0.11", "nodes": 2, "sshUser": "deploy"},
    {"name": "b", "address": "10.0.0.12", "nodes": 1, "sshUser": "ops", "dockerHost": "ssh://ops@10.0.0.12:2222"},
]
HOST_FIELDS = ("address", "docker_host", "ssh_host", "ssh_user")


def several_hosts_base(hosts: list[dict[str, Any]] = SEVERAL_HOSTS) -> dict[str, Any]:
    return {
        **{
            k: v
            for k, v in stack_config("dev").items()
            if k.split(":", 1)[1] not in ("nodes", "advertiseAddress", "dockerHost", "lbListenAddress")
        },
        "emqx-cluster:hosts": hosts,
        "emqx-cluster:sshPrivateKey": KNOWN["sshPrivateKey"],
        "emqx-cluster:adminNetworks": ["10.20.0.0/24"],
        "emqx-cluster:metrics": True,
        "emqx-cluster:metricsAlertmanagers": ["10.0.0.5:9093"],
    }


def hosts_program(base: Mapping[str, Any], late: bool) -> Callable[[], None]:
    """EmqxCluster `emqx` with `base`'s stack config as args, each host's address, dockerHost,
    sshHost and sshUser (those set), admin networks and Alertmanagers given plainly or as Outputs
    of another resource."""

    def program() -> None:
        args: dict[str, Any] = dict(stack_args(parse_config(base)))
        source = random.RandomPassword("source", length=8)
        if late:
            entries = args.get("hosts", [args])
            for entry in entries:
                for name in (*HOST_FIELDS, "advertise_address"):
                    if name in entry:
                        entry[name] = source.result.apply(partial(_then, entry[name]))
            for items in ("admin_networks", "metrics_alertmanagers"):  # written into text as well
                if items in args:
                    args[items] = [source.result.apply(partial(_then, item)) for item in args[items]]
        cluster = EmqxCluster("emqx", cast(EmqxClusterArgs, args))
        for name in ("endpoint", "endpoints", "dns_round_robin", "nodes", "dashboards", "capacity", "metrics"):
            pulumi.export(name, getattr(cluster, name))

    return program


def inputs_by_name(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {resource.name: resource.inputs for resource in run.resources}


@pytest.mark.parametrize(
    "base",
    [several_hosts_base(), with_changes(single_host_base(), sshUser="deploy", metrics=True)],
    ids=["several-hosts", "single-host"],
)
def test_host_addresses_engines_and_logins_given_as_outputs_give_every_resource_the_same_inputs(
    base: dict[str, Any],
) -> None:
    known = run_program({}, program=hosts_program(base, late=False))
    late = run_program({}, program=hosts_program(base, late=True))
    assert inputs_by_name(late) == inputs_by_name(known)
    assert late.outputs == known.outputs


def test_a_late_address_is_checked_with_the_other_hosts_once_known() -> None:
    """One address per host, not loopback with several: checks across hosts, run once the Output is known."""
    for address, expected in (
        (
            "10.0.0.11",
            "emqx-cluster:hosts[1].address = '10.0.0.11': allowed: addresses used once; hosts[0] has it already",
        ),
        (
            "127.0.0.1",
            "emqx-cluster:hosts[1].address = '127.0.0.1': allowed with several hosts: an address the other hosts reach",
        ),
    ):

        def program(address: str = address) -> None:
            args: dict[str, Any] = dict(stack_args(parse_config(several_hosts_base())))
            source = random.RandomPassword("source", length=8)
            args["hosts"][1]["address"] = source.result.apply(partial(_then, address))
            EmqxCluster("emqx", cast(EmqxClusterArgs, args))

        assert expected in refusal(program), address
