"""Several hosts under mocks: what `pulumi up` declares on each host, how the nodes reach each
other (cluster TLS, firewall), the outputs, and a single-host stack left exactly as it was."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.config_hosts import SINGLE_HOST_KEYS
from components.render.broker_env import CLUSTER_TLS_FILES
from components.render.host_scripts import firewall_apply_script, firewall_remove_script, host_program
from tests.support.program import CONTAINER, ProgramRun, Recorded, input_digest, run_program
from tests.support.stackfiles import stack_config, with_changes
from tests.support.views import brokers, envs, walk_strings

HOSTS = {"a": "10.0.0.11", "b": "10.0.0.12", "c": "10.0.0.13"}
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----\n"
BASELINE = Path(__file__).parent / "baselines" / "single-host-mqtt-access.json"
# The keys a `hosts` list replaces (the program's list, and `nodes`, which hosts count).
REPLACED_BY_HOSTS = (*SINGLE_HOST_KEYS, "nodes")


def several_hosts_config(**changes: Any) -> dict[str, Any]:
    """The dev stack moved to three SSH hosts with two nodes each."""
    base = {key: value for key, value in stack_config("dev").items() if key.split(":", 1)[1] not in REPLACED_BY_HOSTS}
    hosts = [
        {"name": name, "address": address, "nodes": 2, "sshUser": "deploy", "useSudo": True}
        for name, address in HOSTS.items()
    ]
    defaults = {"hosts": hosts, "publicHostname": "mqtt.example.net", "lbListenAddress": "0.0.0.0"}
    return with_changes(base, **{**defaults, **changes})


@pytest.fixture(scope="module")
def spread() -> ProgramRun:
    return run_program(several_hosts_config(), secrets={"sshPrivateKey": FAKE_KEY}, stack="dev")


def on_host(resource: Recorded) -> str:
    """The host a remote command runs on."""
    assert resource.connection is not None, resource.name
    return str(resource.connection["host"])


def provider_host(run: ProgramRun, resource: Recorded) -> str:
    return str(run.by_urn()[resource.provider].inputs["host"])


def test_every_host_gets_its_own_engine_tuning_firewall_preflight_image_and_load_balancer(spread: ProgramRun) -> None:
    for name, address in HOSTS.items():
        assert spread.named(f"emqx-{name}-docker").inputs["host"] == f"ssh://deploy@{address}:22"
        for command in (f"emqx-{name}-host-sysctls", f"emqx-{name}-firewall-rules", f"emqx-{name}-preflight-check"):
            assert on_host(spread.named(command)) == address
        image = spread.named(f"emqx-{name}-broker-image-build")
        lb = spread.named(f"emqx-{name}-lb")
        assert provider_host(spread, image) == provider_host(spread, lb) == f"ssh://deploy@{address}:22"
        assert lb.inputs["name"] == "emqx-lb"


def test_nodes_run_on_their_host_and_cluster_commands_where_their_containers_are(spread: ProgramRun) -> None:
    placed = {f"emqx{i}": HOSTS["abc"[(i - 1) // 2]] for i in range(1, 7)}
    for container in brokers(spread):
        address = placed[container.name]
        assert container.node_name == f"{container.name}@{address}"
        assert provider_host(spread, container) == f"ssh://deploy@{address}:22"
        assert on_host(spread.named(f"{container.name}-dirs")) == address
        assert on_host(spread.named(f"{container.name}-tls-files")) == address
    for index in range(2, 7):
        assert on_host(spread.named(f"emqx{index}-membership")) == placed[f"emqx{index}"]
    for gate in ("wave1-verify", "wave2-verify"):
        assert on_host(spread.named(gate)) == HOSTS["a"]  # the seed's host


def test_cluster_traffic_is_tls_with_files_from_stdin_and_a_read_only_mount(spread: ProgramRun) -> None:
    for container in brokers(spread):
        env = envs(container)
        assert env["EMQX_CLUSTER__PROTO_DIST"] == "inet_tls"
        assert env["EMQX_RPC__PROTOCOL"] == "ssl"
        assert env["EMQX_SSL_DIST_OPTFILE"] == CLUSTER_TLS_FILES.path(CLUSTER_TLS_FILES.dist_options)
        mount = next(v for v in container.inputs["volumes"] if v["containerPath"] == CLUSTER_TLS_FILES.directory)
        assert mount["readOnly"] is True and mount["hostPath"].endswith(f"/{container.name}/tls")
        files = spread.named(f"{container.name}-tls-files")
        assert "stdin" in files.secret_inputs
        assert str(files.stdin).count("PRIVATE KEY-----") == 2  # its BEGIN and END lines: sent once
        assert files.create == "sudo -n sh -s create", "the key must never be on a command line"
        assert files.urn in container.dependencies
        # A renewed certificate replaces the node (labels are ForceNew).
        assert any(label["label"] == "io.emqx-cluster.certificate" for label in container.inputs["labels"])


def test_node_certificates_name_the_node_and_carry_its_address_as_dns_name_and_ip(spread: ProgramRun) -> None:
    for index in range(1, 7):
        address = HOSTS["abc"[(index - 1) // 2]]
        request = spread.named(f"emqx{index}-tls-request")
        assert request.inputs["subject"]["commonName"] == f"emqx{index}@{address}"
        assert request.inputs["dnsNames"] == [address] and request.inputs["ipAddresses"] == [address]
        cert = spread.named(f"emqx{index}-tls-cert")
        assert set(cert.inputs["allowedUses"]) >= {"server_auth", "client_auth"}
        assert spread.named(f"emqx{index}-tls-key").type == "tls:index/privateKey:PrivateKey"
    assert spread.named("emqx-cluster-ca").inputs["isCaCertificate"] is True


def test_each_firewall_opens_its_nodes_cluster_ports_to_the_three_hosts(spread: ProgramRun) -> None:
    rules = spread.named("emqx-b-firewall-rules")
    expected = firewall_apply_script([4373, 4374, 5373, 5374], list(HOSTS.values()))
    assert rules.stdin == host_program({"create": expected, "update": expected, "delete": firewall_remove_script()})
    assert (rules.create, rules.update, rules.delete) == (
        "sudo -n sh -s create",
        "sudo -n sh -s update",
        "sudo -n sh -s delete",
    )
    firewall = spread.named("emqx-b-firewall")
    for node in ("emqx3", "emqx4"):  # its nodes start behind it
        assert {firewall.urn, rules.urn} & set(spread.named(node, custom=True).dependencies), node


def test_every_load_balancer_prefers_its_host_nodes(spread: ProgramRun) -> None:
    lb = spread.named("emqx-c-lb")
    conf = next(u["content"] for u in lb.inputs["uploads"] if u["file"] == "/etc/nginx/nginx.conf")
    assert re.search(rf"server {HOSTS['c']}:61005 max_conns=\d+ max_fails=2 fail_timeout=10s;", conf)
    assert re.search(rf"server {HOSTS['a']}:61001 max_conns=\d+ max_fails=2 fail_timeout=10s backup;", conf)


def test_outputs_give_one_endpoint_per_host_a_dns_hint_and_the_host_of_each_node(spread: ProgramRun) -> None:
    assert spread.outputs["endpoints"] == {name: f"{address}:8884" for name, address in HOSTS.items()}
    assert spread.outputs["dnsRoundRobin"] == {"name": "mqtt.example.net", "aRecords": list(HOSTS.values())}
    assert [row["host"] for row in spread.outputs["nodes"]] == ["a", "a", "b", "b", "c", "c"]
    # Each node's Docker engine, as its host's provider has it (scripts/backup, restore, status).
    assert [row["dockerHost"] for row in spread.outputs["nodes"]] == [
        f"ssh://deploy@{HOSTS[label]}:22" for label in ("a", "a", "b", "b", "c", "c")
    ]


def test_no_secret_reaches_a_plain_input_or_output(spread: ProgramRun) -> None:
    for resource in spread.resources:
        for key, value in resource.inputs.items():
            if key in resource.secret_inputs:
                continue
            assert not any("PRIVATE KEY" in text for text in walk_strings(value)), (resource.name, key)
    for name, value in spread.outputs.items():
        if name not in spread.secret_outputs:
            assert not any("PRIVATE KEY" in text for text in walk_strings(value)), name


# ------------------------------------------------------------- single-host stacks unchanged


def digests(run: ProgramRun) -> dict[str, str]:
    return {r.urn: input_digest(r.type, r.name, r.inputs) for r in run.resources}


REMOTE = {
    "nodes": 5,
    "waves": 3,
    "dockerHost": "ssh://deploy@10.0.0.11",
    "sshHost": "10.0.0.11",
    "sshUser": "deploy",
    "hostUseSudo": True,
    "advertiseAddress": "10.0.0.11",
    "sshHostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKeyForTheBaselineOnly",
}


def single_host_runs() -> dict[str, ProgramRun]:
    return {
        "dev": run_program(stack_config("dev"), stack="dev"),
        "remote": run_program(
            with_changes(stack_config("dev"), **REMOTE), secrets={"sshPrivateKey": FAKE_KEY}, stack="dev"
        ),
    }


def test_single_host_stacks_declare_what_they_declared_at_the_baseline() -> None:
    """Same URNs, same inputs: nothing replaced, nothing even updated. The baseline holds
    {stack: {URN: input_digest}} of the dev stack and a remote variant with this test's configs,
    recorded by the program when MQTT access arrived (`digests(run)` for `single_host_runs()`,
    written as JSON).
    Its history: recorded at 4b5c075 (the last single-host commit); at 3a23950 the host
    commands' scripts moved to stdin (their inputs only); the restructure that followed
    (c97b9a2) declared the very same inputs; at 64e77eb the remote variant's brokers bind their
    dashboard to loopback (its nodes and the commands pinned to them), the dev stack unchanged;
    at b8b9261 the host commands' programs changed (one branch per script, the sysctl apply's undo);
    with MQTT access (authentication, ACL, API key) every broker's environment and volumes changed
    (a rolling replacement, wave by wave) and the access files, client registry and their
    secrets were added; with the connection ceiling, nginx.conf caps each node (`max_conns`); with
    the memory bound and source addresses the preflight script changed (the host's memory, local
    addresses) and nginx.conf took `proxy_buffer_size 4k`, and session tickets added the ticket key
    (`emqx-tls-ticket-key-1`) and its upload; a comment of nginx.conf names the benchmark it cites,
    and the preflight refuses to guess a memory bound when MemTotal cannot be read; with the
    real EMQX the broker image drains a stopping node (its entrypoint and BROKER_DRAIN_SECONDS:
    the image, every broker and the commands pinned to their container IDs), and a
    `cluster leave` bounded in time (the memberships' delete script); with
    brokerMemoryPerConnectionKib measured on the real EMQX (default 32 -> 48) the preflight's
    memory arithmetic changed (`emqx-preflight-check` of both stacks, nothing else); with the
    listeners opened only once a node can authenticate clients the broker image changed (its
    entrypoint, health check and emqx-cluster-serve.erl: the image, every broker and the commands
    pinned to their container IDs, nothing else)."""
    recorded = json.loads(BASELINE.read_text())
    for stack, run in single_host_runs().items():
        assert digests(run) == recorded[stack], stack


def test_a_single_host_moved_into_a_hosts_list_keeps_every_resource_through_aliases() -> None:
    """The remote stack written as `hosts: [{name: a, ...}]`: each resource either keeps its URN or
    carries an alias to its single-host URN, with the very same inputs (the engine moves it)."""
    recorded = json.loads(BASELINE.read_text())["remote"]
    base = {
        k: v
        for k, v in with_changes(stack_config("dev"), **REMOTE).items()
        if k.split(":", 1)[1] not in REPLACED_BY_HOSTS
    }
    host = {
        "name": "a",
        "address": "10.0.0.11",
        "nodes": 5,
        "dockerHost": "ssh://deploy@10.0.0.11",
        "sshUser": "deploy",
        "useSudo": True,
        "sshHostKey": REMOTE["sshHostKey"],
    }
    run = run_program(with_changes(base, hosts=[host]), secrets={"sshPrivateKey": FAKE_KEY}, stack="dev")
    matched = set()
    for resource in run.resources:
        old_names = [resource.name] + [alias["spec"]["name"] for alias in resource.aliases if "name" in alias["spec"]]
        candidates = [resource.urn.rsplit("::", 1)[0] + "::" + name for name in old_names]
        hit = next((urn for urn in candidates if urn in recorded), None)
        assert hit is not None, f"{resource.urn} neither kept nor aliased to a single-host URN"
        old_name = hit.rsplit("::", 1)[1]
        assert input_digest(resource.type, old_name, resource.inputs) == recorded[hit], resource.name
        matched.add(hit)
    assert matched == set(recorded)


def test_each_engine_runs_its_two_nodes_and_its_load_balancer(spread: ProgramRun) -> None:
    per_engine: dict[str, set[str]] = {}
    for container in spread.of_type(CONTAINER):
        per_engine.setdefault(provider_host(spread, container), set()).add(container.name)
    assert per_engine == {
        f"ssh://deploy@{HOSTS['a']}:22": {"emqx1", "emqx2", "emqx-a-lb"},
        f"ssh://deploy@{HOSTS['b']}:22": {"emqx3", "emqx4", "emqx-b-lb"},
        f"ssh://deploy@{HOSTS['c']}:22": {"emqx5", "emqx6", "emqx-c-lb"},
    }


# ------------------------------------------------------------------------- per-host SSH keys

OTHER_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3RoZXI=\n-----END OPENSSH PRIVATE KEY-----\n"


def test_a_host_with_its_own_ssh_key_is_reached_with_it_the_others_with_the_stack_key() -> None:
    config = several_hosts_config()
    hosts = json.loads(json.dumps(config["emqx-cluster:hosts"]))
    hosts[1]["sshPrivateKey"] = OTHER_KEY  # `pulumi config set --secret --path 'hosts[1].sshPrivateKey'`
    del config["emqx-cluster:hosts"]
    run = run_program(config, secrets={"sshPrivateKey": FAKE_KEY, "hosts": json.dumps(hosts)}, stack="dev")
    for name, key in (("a", FAKE_KEY), ("b", OTHER_KEY), ("c", FAKE_KEY)):
        command = run.named(f"emqx-{name}-preflight-check")
        assert command.connection is not None and command.connection["privateKey"] == key, name
        assert "connection" in command.secret_inputs
    assert not any(OTHER_KEY in text for text in walk_strings(run.outputs)), "a host key in the outputs"


def test_a_host_ssh_key_in_plain_config_is_refused_before_anything_is_declared() -> None:
    config = several_hosts_config()
    config["emqx-cluster:hosts"][0]["sshPrivateKey"] = OTHER_KEY
    with pytest.raises(pulumi.RunError) as raised:
        run_program(config, secrets={"sshPrivateKey": FAKE_KEY}, stack="dev")
    message = str(raised.value)
    assert "emqx-cluster:hosts is stored in plain text: allowed: a secret value" in message
    assert "--path 'hosts[i].sshPrivateKey'" in message
    assert "b3RoZXI" not in message


def test_retiring_the_seed_host_keeps_every_other_membership() -> None:
    """Host a (emqx1, the seed, and emqx2) retired: emqx3 becomes the seed and keeps its
    membership (now with nothing to join), so no delete makes a node that stays leave."""
    hosts = [{k: v for k, v in h.items() if k != "nodes"} for h in several_hosts_config()["emqx-cluster:hosts"]]
    everyone = {f"emqx{i}": "abc"[(i - 1) // 2] for i in range(1, 7)}
    before = run_program(
        several_hosts_config(hosts=hosts, placement=everyone), secrets={"sshPrivateKey": FAKE_KEY}, stack="dev"
    )
    remaining = {node: host for node, host in everyone.items() if host != "a"}
    after = run_program(
        several_hosts_config(hosts=hosts[1:], placement=remaining), secrets={"sshPrivateKey": FAKE_KEY}, stack="dev"
    )

    def memberships(run: ProgramRun) -> set[str]:
        return {r.name for r in run.resources if r.name.endswith("-membership")}

    assert memberships(before) == {f"emqx{i}-membership" for i in range(2, 7)}
    assert memberships(after) == {f"emqx{i}-membership" for i in range(3, 7)}
    seed = after.named("emqx3-membership")
    assert seed.stdin is not None and "is the seed: the other nodes join it" in seed.stdin
    assert f"seed=emqx3@{HOSTS['b']}\n" in str(after.named("emqx5-membership").stdin)
    for gate in ("wave1-verify", "wave2-verify"):
        assert on_host(after.named(gate)) == HOSTS["b"]


def test_every_node_but_the_seed_is_forced_out_from_the_seed_host_once_its_container_is_gone(
    spread: ProgramRun,
) -> None:
    for index in range(2, 7):
        eviction = spread.named(f"emqx{index}-eviction")
        assert on_host(eviction) == HOSTS["a"]
        assert eviction.delete is not None and f"\nnode=emqx{index}@" in str(eviction.stdin)
        # The container depends on it: removing the node deletes the container first.
        assert eviction.urn in spread.named(f"emqx{index}", custom=True).dependencies
    assert not any(r.name == "emqx1-eviction" for r in spread.resources)


def test_one_host_has_no_evictions() -> None:
    run = run_program(stack_config("dev"), stack="dev")
    assert not any(r.name.endswith("-eviction") for r in run.resources)


def test_every_host_command_is_valid_sh_as_sent(spread: ProgramRun) -> None:
    """Each command exactly as the host receives it: a command line naming the operation, every
    script on standard input, parsed by `sh -n` (parsed, never run); no line holds a script."""
    checked = 0
    for resource in spread.resources:
        if not resource.type.startswith("command:"):
            continue
        for operation in ("create", "update", "delete"):
            line = resource.inputs.get(operation)
            assert line in (None, f"sudo -n sh -s {operation}"), f"{resource.name}: {str(line)[:40]}"
        proc = subprocess.run(["/bin/sh", "-n"], input=resource.stdin, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{resource.name}: {proc.stderr}"
        checked += 1
    assert checked > 20
