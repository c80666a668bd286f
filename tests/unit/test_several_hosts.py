"""Several hosts: placement, names, per-host ports, the waves rule, the load balancers' upstreams,
the firewall and cluster-TLS texts, and bad `hosts` input refused at preview."""

from __future__ import annotations

import json
import math
import subprocess
from typing import Any

import pytest

from components import names
from components.capacity import free_ports
from components.config import StackConfig
from components.config_parse import ConfigError, parse_stack_config
from components.plan import ClusterPlan, plan_cluster
from components.render.cluster_scripts import evict_script
from components.render.host_scripts import (
    file_bundle,
    firewall_apply_script,
    firewall_remove_script,
    host_program,
    node_files_delete_script,
    node_files_script,
)
from components.render.nginx import nginx_settings, render_nginx_conf

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nstack\n-----END OPENSSH PRIVATE KEY-----\n"
OTHER_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nhost-a\n-----END OPENSSH PRIVATE KEY-----\n"


def three_hosts(**extra: Any) -> dict[str, str]:
    """Raw stack config: hosts a, b, c with two nodes each."""
    hosts = [{"name": name, "address": address, "nodes": 2} for name, address in (("a", A), ("b", B), ("c", C))]
    raw = {"tlsMode": "self-signed", "hosts": json.dumps(hosts)}
    raw.update({key: value if isinstance(value, str) else json.dumps(value) for key, value in extra.items()})
    return raw


def parsed(raw: dict[str, str]) -> tuple[StackConfig, ClusterPlan]:
    config = parse_stack_config(raw)
    return config, plan_cluster(config)


def refusal(raw: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        plan_cluster(parse_stack_config(raw))
    return str(caught.value)


# ------------------------------------------------------------------------- hosts, resolved once


def test_a_single_host_stack_is_one_unnamed_host_from_the_single_host_keys() -> None:
    raw = {
        "tlsMode": "self-signed",
        "nodes": "4",
        "advertiseAddress": A,
        "sshHost": "mqtt-01.example.net",
        "sshUser": "deploy",
        "hostUseSudo": "true",
        "dockerHost": "ssh://deploy@mqtt-01.example.net",
        "sshPrivateKey": KEY,
    }
    (host,) = parse_stack_config(raw).cluster_hosts
    assert (host.name, host.label, host.address, host.node_indexes) == (None, A, A, (1, 2, 3, 4))
    assert host.ssh is not None and (host.ssh.host, host.ssh.port, host.ssh.user) == (
        "mqtt-01.example.net",
        22,
        "deploy",
    )
    assert host.use_sudo and host.docker_host == "ssh://deploy@mqtt-01.example.net"
    assert host.ssh_private_key is not None and host.ssh_private_key.get_secret_value() == KEY
    assert host.config_key("sshHostKey") == "emqx-cluster:sshHostKey"


def test_a_local_single_host_has_no_ssh_login() -> None:
    (host,) = parse_stack_config({"tlsMode": "self-signed"}).cluster_hosts
    assert (host.ssh, host.docker_host, host.node_indexes) == (None, "unix:///var/run/docker.sock", (1, 2, 3))


def test_each_listed_host_takes_its_own_key_or_the_stack_s() -> None:
    hosts = [
        {"name": "a", "address": A, "nodes": 1, "sshPrivateKey": OTHER_KEY},
        {"name": "b", "address": B, "nodes": 2},
    ]
    config = parse_stack_config({"tlsMode": "self-signed", "hosts": json.dumps(hosts), "sshPrivateKey": KEY})
    a, b = config.cluster_hosts
    assert [a.node_indexes, b.node_indexes] == [(1,), (2, 3)] and config.node_count == 3 and config.several_hosts
    assert a.ssh_private_key is not None and a.ssh_private_key.get_secret_value() == OTHER_KEY
    assert b.ssh_private_key is not None and b.ssh_private_key.get_secret_value() == KEY
    assert b.ssh is not None and b.ssh.host == B and b.docker_host == f"ssh://root@{B}:22"
    assert b.config_key("sshHostKey") == "emqx-cluster:hosts[1].sshHostKey"
    assert a.config_key("sshPrivateKey") == "emqx-cluster:hosts[0].sshPrivateKey"
    assert parse_stack_config({"tlsMode": "self-signed"}).cluster_hosts[0].config_key("sshPrivateKey") == (
        "emqx-cluster:sshPrivateKey"
    )


# ------------------------------------------------------------------------- placement, names


def test_counts_place_nodes_host_after_host_with_names_of_their_host_address() -> None:
    _, plan = parsed(three_hosts())
    assert [(node.short_name, node.host_label, node.node_name) for node in plan.nodes] == [
        ("emqx1", "a", f"emqx1@{A}"),
        ("emqx2", "a", f"emqx2@{A}"),
        ("emqx3", "b", f"emqx3@{B}"),
        ("emqx4", "b", f"emqx4@{B}"),
        ("emqx5", "c", f"emqx5@{C}"),
        ("emqx6", "c", f"emqx6@{C}"),
    ]
    assert [host.name for host in plan.hosts] == ["a", "b", "c"]
    assert [node.short_name for node in plan.host("b").nodes] == ["emqx3", "emqx4"]


def test_explicit_placement_puts_each_node_on_its_host() -> None:
    hosts = [{"name": "a", "address": A}, {"name": "b", "address": B}]
    placement = {"emqx1": "a", "emqx2": "b", "emqx3": "a", "emqx4": "b"}
    _, plan = parsed({"tlsMode": "self-signed", "hosts": json.dumps(hosts), "placement": json.dumps(placement)})
    assert {node.short_name: node.host_label for node in plan.nodes} == placement
    assert plan.host("b").nodes[0].node_name == f"emqx2@{B}"


def test_a_node_keeps_its_ports_on_any_host() -> None:
    _, by_count = parsed(three_hosts())
    hosts = [{"name": "a", "address": A}, {"name": "b", "address": B}]
    placement = {f"emqx{i}": "ab"[i % 2] for i in range(1, 7)}
    _, by_map = parsed(
        {"tlsMode": "self-signed", "hosts": json.dumps(hosts), "placement": json.dumps(placement), "waves": "3"}
    )
    assert [node.ports for node in by_count.nodes] == [node.ports for node in by_map.nodes]


def test_each_host_reserves_only_its_own_ports() -> None:
    _, plan = parsed(three_hosts())
    assert plan.host("b").reserved_ports_sysctl == "4373-4374,5373-5374,8884"
    assert plan.host("c").reserved_ports_sysctl == "4375-4376,5375-5376,8884"


def test_host_resources_are_named_after_their_host_and_a_single_host_keeps_its_names() -> None:
    stack = names.ResourceNames()  # the stack-config program's cluster, `emqx`
    assert stack.host_resource("b", "preflight") == "emqx-b-preflight"
    assert stack.host_resource(None, "preflight") == "emqx-preflight"
    assert stack.lb_container("b") == "emqx-b-lb"
    assert stack.lb_container(None) == "emqx-lb"
    assert stack.single_host_name("emqx-a-lb-image", "a") == "emqx-lb-image"
    assert stack.single_host_name("emqx1-dirs", "a") == "emqx1-dirs"


def test_a_single_host_stack_has_one_unnamed_host_with_every_node() -> None:
    _, plan = parsed({"tlsMode": "self-signed", "advertiseAddress": A})
    (host,) = plan.hosts
    assert host.name is None and host.label == A and host.ssh is None
    assert host.nodes == plan.nodes
    assert host.reserved_ports_sysctl == "4371-4373,5371-5373,8884"


def test_hosts_are_reached_over_ssh_by_default() -> None:
    hosts = [
        {"name": "a", "address": A, "nodes": 1, "sshUser": "deploy", "useSudo": True},
        {"name": "b", "address": B, "nodes": 1, "sshHost": "b.example.net", "dockerHost": "unix:///run/docker.sock"},
    ]
    _, plan = parsed({"tlsMode": "self-signed", "hosts": json.dumps(hosts)})
    a, b = plan.hosts
    assert a.docker_host == f"ssh://deploy@{A}:22" and a.ssh is not None and a.ssh.host == A and a.use_sudo
    assert b.docker_host == "unix:///run/docker.sock" and b.ssh is not None and b.ssh.host == "b.example.net"


def test_cluster_tls_is_on_with_several_hosts_and_off_on_one() -> None:
    assert parse_stack_config(three_hosts()).encrypts_cluster_traffic
    assert not parse_stack_config({"tlsMode": "self-signed"}).encrypts_cluster_traffic
    assert parse_stack_config({"tlsMode": "self-signed", "clusterTls": "true"}).encrypts_cluster_traffic
    assert not parse_stack_config(three_hosts(clusterTls="false")).encrypts_cluster_traffic


# ----------------------------------------------------------------------------------- waves


@pytest.mark.parametrize(
    ("counts", "waves"),
    [((2, 2, 2), 2), ((1, 1, 1), 1), ((1, 1, 1), 3), ((3, 3), 3), ((4, 2, 1), 2), ((5, 1), 3), ((2, 6, 4), 3)],
)
def test_a_wave_never_restarts_a_majority_of_a_host_nor_more_than_its_share(
    counts: tuple[int, ...], waves: int
) -> None:
    hosts = [{"name": f"h{i}", "address": f"10.0.1.{i + 1}", "nodes": n} for i, n in enumerate(counts)]
    config, plan = parsed({"tlsMode": "self-signed", "hosts": json.dumps(hosts), "waves": str(waves)})
    total = sum(counts)
    assert plan.seed.wave == 1
    for wave in plan.waves:
        assert len(wave) <= math.ceil(total / config.effective_waves)
        for host in plan.hosts:
            restarted = sum(1 for node in wave if node.host_label == host.label)
            assert restarted <= max(1, len(host.nodes) // 2), (host.label, [n.short_name for n in wave])


def test_waves_that_would_restart_a_majority_of_a_host_are_refused_with_the_count_needed() -> None:
    hosts = [{"name": "a", "address": A, "nodes": 3}, {"name": "b", "address": B, "nodes": 1}]
    message = refusal({"tlsMode": "self-signed", "hosts": json.dumps(hosts), "waves": "2"})
    assert "emqx-cluster:waves = 2: allowed: 3 or more, because host 'a' runs 3 nodes" in message


def test_placement_may_leave_gaps_and_the_lowest_node_is_the_seed() -> None:
    """After host a (emqx1, emqx2) is gone for good: the others keep their names, emqx3 seeds."""
    hosts = [{"name": "b", "address": B}, {"name": "c", "address": C}]
    placement = {"emqx3": "b", "emqx4": "b", "emqx5": "c", "emqx6": "c"}
    _, plan = parsed({"tlsMode": "self-signed", "hosts": json.dumps(hosts), "placement": json.dumps(placement)})
    assert [node.node_name for node in plan.nodes] == [f"emqx3@{B}", f"emqx4@{B}", f"emqx5@{C}", f"emqx6@{C}"]
    assert plan.seed.short_name == "emqx3" and plan.seed.wave == 1
    assert plan.nodes[0].ports.distribution == 4373


def test_a_host_list_holding_a_key_in_the_wrong_shape_never_shows_it() -> None:
    raw = {"tlsMode": "self-signed", "hosts": json.dumps({"a": {"sshPrivateKey": "-----BEGIN PRIVATE KEY-----\nx"}})}
    message = refusal(raw)
    assert "emqx-cluster:hosts = (hidden: secret)" in message and "BEGIN" not in message


def test_the_seed_is_in_wave_one_wherever_it_is_placed() -> None:
    hosts = [{"name": "a", "address": A}, {"name": "b", "address": B}]
    placement = {"emqx1": "b", "emqx2": "a", "emqx3": "a", "emqx4": "b"}
    _, plan = parsed({"tlsMode": "self-signed", "hosts": json.dumps(hosts), "placement": json.dumps(placement)})
    assert plan.seed.short_name == "emqx1" and plan.seed.wave == 1


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("hosts", "extra", "expected"),
    [
        (
            [{"name": "a", "address": A, "nodes": 1}, {"name": "b", "address": A, "nodes": 1}],
            {},
            f"emqx-cluster:hosts[1].address = '{A}': allowed: addresses used once; hosts[0] has it already",
        ),
        (
            [{"name": "a", "address": A, "nodes": 1}, {"name": "a", "address": B, "nodes": 1}],
            {},
            "emqx-cluster:hosts[1].name = 'a': allowed: names used once",
        ),
        (
            [{"name": "a", "address": A, "nodes": 1}, {"name": "b", "address": B}],
            {},
            "emqx-cluster:hosts[1].nodes = (unset): allowed: a node count of 1 or more for host 'b'",
        ),
        (
            [{"name": "a", "address": A}, {"name": "b", "address": B}],
            {"placement": {"emqx1": "a", "emqx2": "z"}},
            "emqx-cluster:placement.emqx2 = 'z': allowed: one of the hosts' names (a, b)",
        ),
        (
            [{"name": "a", "address": A}, {"name": "b", "address": B}],
            {"placement": {"emqx1": "a", "emqx2": "a"}},
            "emqx-cluster:placement: no node on host 'b': allowed: at least one node per host",
        ),
        (
            [{"name": "a", "address": A}, {"name": "b", "address": B}],
            {"placement": {"emqx1": "a", "node2": "b", "emqx02": "b"}},
            "emqx-cluster:placement.node2 = 'b': allowed: node names emqx1 to emqx999",
        ),
        (
            [{"name": "a", "address": A, "nodes": 1}, {"name": "b", "address": B, "nodes": 1, "sshHost": A}],
            {},
            f"emqx-cluster:hosts[1].sshHost = '{A}:22': allowed: SSH logins used once; hosts[0] has it already",
        ),
        (
            [
                {"name": "a", "address": A, "nodes": 1, "dockerHost": "unix:///run/docker.sock"},
                {"name": "b", "address": B, "nodes": 1, "dockerHost": "unix:///run/docker.sock"},
            ],
            {},
            "emqx-cluster:hosts[1].dockerHost = 'unix:///run/docker.sock': allowed: Docker engines used once",
        ),
        (
            [{"name": "a", "address": "127.0.0.1", "nodes": 1}, {"name": "b", "address": B, "nodes": 1}],
            {},
            "emqx-cluster:hosts[0].address = '127.0.0.1': allowed with several hosts: an address the other hosts reach",
        ),
        (
            [{"name": "a", "address": A, "nodes": 1}, {"name": "b", "address": B, "nodes": 1}],
            {"lbListenAddress": A},
            f"emqx-cluster:lbListenAddress = '{A}': allowed with several hosts: 0.0.0.0",
        ),
        (
            [{"name": "a", "address": "224.0.0.1", "nodes": 1}],
            {},
            "emqx-cluster:hosts[0].address = '224.0.0.1': allowed: a unicast IPv4 address",
        ),
        (
            [{"name": "a", "address": "mqtt.example.net", "nodes": 1}],
            {},
            "emqx-cluster:hosts[0].address = 'mqtt.example.net': allowed: a unicast IPv4 address",
        ),
        (
            [{"name": "a", "address": A, "nodes": 1}],
            {"advertiseAddress": B},
            f"emqx-cluster:advertiseAddress = '{B}': allowed: unset when hosts is set (set it per host: hosts[].address)",
        ),
        (
            [{"name": "a", "address": A, "nodes": 2}],
            {"nodes": "3"},
            "emqx-cluster:nodes = 3: allowed: unset with hosts (or 2, the nodes the hosts list places)",
        ),
        (
            [{"name": "a", "address": A, "nodes": 1}, {"name": "b", "address": B, "nodes": 1}],
            {"lbBalancing": "hash_client_address"},
            "emqx-cluster:lbBalancing = 'hash_client_address': allowed with several hosts: round_robin or least_conn",
        ),
        (
            [{"name": "a", "address": A, "nodes": 2, "port": 1}],
            {},
            "emqx-cluster:hosts[0].port = 1: unknown key; allowed keys: name, address, nodes, dockerHost",
        ),
        (
            [{"name": "a", "address": A, "nodes": 2}],
            {"mqttPortBase": "4370"},
            "emqx-cluster:mqttPortBase = 4370: emqx2's mqtt port 4371 is already taken by emqx1's distribution port",
        ),
        (
            [{"name": "a", "address": A, "nodes": 2, "sshPrivateKey": "hunter2-not-a-key"}],
            {},
            "emqx-cluster:hosts[0].sshPrivateKey = (hidden: secret): allowed: a PEM private key",
        ),
    ],
    ids=[
        "duplicate-address",
        "duplicate-name",
        "host-without-nodes",
        "node-on-unknown-host",
        "host-left-empty-by-placement",
        "placement-key-not-a-node-name",
        "one-ssh-login-twice",
        "one-engine-twice",
        "loopback-with-several-hosts",
        "listen-address-of-one-host",
        "multicast-address",
        "address-not-ipv4",
        "single-host-key-with-hosts",
        "nodes-disagrees",
        "hash-balancing-with-backups",
        "unknown-host-key",
        "ports-collide-on-a-host",
        "host-ssh-key-not-pem",
    ],
)
def test_bad_hosts_input_is_refused_at_preview_naming_key_value_and_what_is_allowed(
    hosts: list[dict[str, Any]], extra: dict[str, Any], expected: str
) -> None:
    raw = {"tlsMode": "self-signed", "hosts": json.dumps(hosts)}
    raw.update({key: value if isinstance(value, str) else json.dumps(value) for key, value in extra.items()})
    message = refusal(raw)
    assert expected in message
    assert "hunter2" not in message


def test_ports_collide_per_host_only() -> None:
    # With mqttPortBase 4370, node i's MQTT port is node i-1's distribution port: a clash only
    # where both run on one host.
    hosts = json.dumps([{"name": "a", "address": A}, {"name": "b", "address": B}])
    apart = {f"emqx{i}": "ab"[i % 2] for i in range(1, 5)}
    parsed({"tlsMode": "self-signed", "hosts": hosts, "placement": json.dumps(apart), "mqttPortBase": "4370"})
    together = {"emqx1": "a", "emqx2": "a", "emqx3": "b", "emqx4": "b"}
    assert "emqx2's mqtt port 4371 is already taken by emqx1's distribution port" in refusal(
        {"tlsMode": "self-signed", "hosts": hosts, "placement": json.dumps(together), "mqttPortBase": "4370"}
    )


# ------------------------------------------------------------------------ load balancers


def test_every_load_balancer_lists_its_host_nodes_first_and_the_others_as_backup() -> None:
    config, plan = parsed(three_hosts())
    settings = nginx_settings(config, plan, plan.host("b"))
    assert settings.upstreams == (f"{B}:61003", f"{B}:61004")
    assert settings.backups == (f"{A}:61001", f"{A}:61002", f"{C}:61005", f"{C}:61006")
    assert settings.next_upstream_tries == 6
    conf = render_nginx_conf(settings)
    cap = free_ports(plan, plan.host("b"))  # each node, local or backup: one port per connection
    assert f"server {B}:61003 max_conns={cap} max_fails=2 fail_timeout=10s;" in conf
    assert f"server {A}:61001 max_conns={cap} max_fails=2 fail_timeout=10s backup;" in conf


def test_a_single_host_load_balancer_has_no_backup_servers() -> None:
    config, plan = parsed({"tlsMode": "self-signed"})
    assert "backup" not in render_nginx_conf(nginx_settings(config, plan))


def test_the_self_signed_certificate_names_every_host_address() -> None:
    config = parse_stack_config(three_hosts(publicHostname="mqtt.example.net"))
    dns_names, ips = config.self_signed_subjects()
    assert "mqtt.example.net" in dns_names
    assert {A, B, C} <= set(ips)


# -------------------------------------------------------------------- firewall, TLS files


def test_the_firewall_opens_a_host_cluster_ports_to_every_cluster_host_only() -> None:
    _, plan = parsed(three_hosts())
    host = plan.host("b")
    assert host.ports("cluster") == [4373, 4374, 5373, 5374]
    script = firewall_apply_script(host.ports("cluster"), [peer.address for peer in plan.hosts])
    assert "-A EMQX-CLUSTER -p tcp --syn -m multiport --dports 4373:4374,5373:5374 -j EMQX-CLUSTER-PEERS" in script
    for address in (A, B, C):
        assert f"-A EMQX-CLUSTER-PEERS -s {address}/32 -j ACCEPT" in script
    assert script.index("-s 10.0.0.13/32") < script.index("-j REJECT --reject-with tcp-reset")


def test_many_scattered_ports_are_split_within_the_multiport_limit() -> None:
    ports = list(range(4371, 4400, 2))  # 15 single ports, no ranges
    script = firewall_apply_script(ports, [A])
    rules = [line for line in script.splitlines() if "--dports" in line]
    assert len(rules) == 3
    assert sorted(int(port) for rule in rules for port in rule.split("--dports ")[1].split()[0].split(",")) == ports


def test_node_tls_files_are_written_from_the_script_on_stdin_private_to_the_node_user(tmp_path: Any) -> None:
    files = {"ca.pem": "CA\n", "node.pem": "CERT\nCHAIN\n", "node.key": "KEY"}
    tls_dir = tmp_path / "emqx1" / "tls"
    script = node_files_script(
        str(tls_dir), ("ca.pem", "node.pem", "node.key"), file_bundle(files), "cluster TLS"
    ).replace("chown ", ": chown ")  # unprivileged test run
    program = host_program({"create": script})
    proc = subprocess.run(["sh", "-s", "create"], input=program, text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert {path.name: path.read_text() for path in tls_dir.iterdir()} == {
        "ca.pem": "CA\n",
        "node.pem": "CERT\nCHAIN\n",
        "node.key": "KEY\n",
    }
    assert all(path.stat().st_mode & 0o077 == 0 for path in [tls_dir, *tls_dir.iterdir()])


def test_a_node_tls_bundle_missing_a_file_is_refused(tmp_path: Any) -> None:
    script = node_files_script(
        str(tmp_path / "tls"), ("ca.pem", "node.pem", "node.key"), file_bundle({"ca.pem": "CA"}), "cluster TLS"
    ).replace("chown ", ": chown ")
    proc = subprocess.run(["sh", "-c", script], text=True, capture_output=True, check=False)
    assert proc.returncode == 1 and "node.pem missing" in proc.stderr


def test_stale_node_files_are_removed_when_no_longer_listed(tmp_path: Any) -> None:
    """The admin key does not stay on disk once adminNetworks is unset."""
    directory = tmp_path / "access"
    directory.mkdir()
    (directory / "admin-key.pem").write_text("KEY")
    files = {"mqtt-users.json": "[]", "api-keys": "k:s:administrator", "acl.conf": "{deny, all}."}
    script = node_files_script(str(directory), tuple(files), file_bundle(files), "access").replace("chown ", ": chown ")
    proc = subprocess.run(["sh", "-c", script], text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(path.name for path in directory.iterdir()) == sorted(files)


def test_admin_ports_are_not_left_open_on_a_host_without_iptables_or_nft(tmp_path: Any) -> None:
    script = firewall_apply_script([4371, 5371], [A], admin_ports=[62001], admin_networks=["10.20.0.0/24"])
    proc = subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(tmp_path)}, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "adminNetworks needs iptables or nft" in proc.stderr and "manageFirewall: false" in proc.stderr


def test_a_host_without_iptables_or_nft_is_left_alone_with_a_message(tmp_path: Any) -> None:
    script = firewall_apply_script([4371, 5371], [A, B])
    bare = {"PATH": str(tmp_path)}  # no iptables, iptables-restore or nft on it
    proc = subprocess.run(["/bin/sh", "-c", script], env=bare, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "neither iptables nor nft found: cluster ports 4371,5371 left open" in proc.stderr
    removed = subprocess.run(
        ["/bin/sh", "-c", firewall_remove_script()], env=bare, capture_output=True, text=True, check=False
    )
    assert removed.returncode == 0, removed.stderr


@pytest.mark.parametrize(
    ("inspect", "kept"),
    [
        ("echo '/opt/emqx/data /opt/emqx/etc/cluster-tls '", True),  # the node (or its replacement) mounts them
        ("echo '/opt/emqx/data '", False),  # its replacement runs without cluster TLS
        ("echo 'Error: No such object: emqx1' >&2; exit 1", False),  # the container is gone
    ],
    ids=["mounted", "replacement-without-tls", "no-container"],
)
def test_node_tls_files_go_only_when_no_container_of_the_node_mounts_them(
    tmp_path: Any, inspect: str, kept: bool
) -> None:
    tls_dir = tmp_path / "emqx1" / "tls"
    tls_dir.mkdir(parents=True)
    (tls_dir / "node.key").write_text("KEY")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\n" + inspect + "\n")
    docker.chmod(0o755)
    script = node_files_delete_script(str(tls_dir), "emqx1", "/opt/emqx/etc/cluster-tls")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert tls_dir.exists() is kept


FAKE_CTL = """#!/bin/sh
# docker exec <container> /opt/emqx/bin/emqx ctl cluster (status --json | force-leave <node>)
echo "$*" >> {calls}
case "$*" in
  *"status --json"*) printf '%s\\n' '{status}' ;;
  *force-leave*) echo 'Remove the node from cluster successfully.' ;;
esac
"""


@pytest.mark.parametrize(
    ("status", "forced"),
    [
        ('{"running_nodes":["emqx1@h"],"stopped_nodes":["emqx5@c"]}', True),  # gone, still a member
        ('{"running_nodes":["emqx1@h","emqx5@c"],"stopped_nodes":[]}', False),  # it runs: stays
        ('{"running_nodes":["emqx1@h"],"stopped_nodes":["emqx15@c"]}', False),  # it left (another is stopped)
    ],
    ids=["stopped-member", "running", "not-a-member"],
)
def test_a_gone_node_is_forced_out_from_the_seed_and_a_running_one_never(
    tmp_path: Any, status: str, forced: bool
) -> None:
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(FAKE_CTL.format(calls=calls, status=status))
    docker.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    proc = subprocess.run(
        ["/bin/sh", "-c", evict_script("emqx1", "emqx5@c")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert ("cluster force-leave emqx5@c" in calls.read_text()) is forced
