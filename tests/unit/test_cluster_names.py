"""One cluster's resource names derive from its name; what two clusters would share on one Docker
host (containers, ports, paths) is refused naming both clusters."""

from __future__ import annotations

from collections.abc import Callable

from components.config_parse import parse_stack_config
from components.host_claims import ClaimLedger, cluster_claims
from components.names import ResourceNames
from components.plan import plan_cluster

DEV = {"tlsMode": "self-signed", "nodes": "3", "dataDir": "/var/lib/emqx-cluster/dev"}


def test_the_cluster_named_emqx_keeps_its_first_names_another_prefixes_every_name() -> None:
    first, other = ResourceNames(), ResourceNames("edge")
    cases: tuple[tuple[str, Callable[[ResourceNames], str]], ...] = (
        ("emqx1", lambda n: n.node_container("emqx1")),
        ("emqx1-dirs", lambda n: n.node_dirs("emqx1")),
        ("emqx1-access-files", lambda n: n.node_access_files("emqx1")),
        ("emqx2-membership", lambda n: n.node_membership("emqx2")),
        ("emqx2-eviction", lambda n: n.node_eviction("emqx2")),
        ("emqx1-tls-cert", lambda n: n.node_certificate("emqx1", "cert")),
        ("wave1-verify", lambda n: n.wave_gate(1)),
        ("emqx-lb", lambda n: n.lb_container(None)),
        ("emqx-b-lb", lambda n: n.lb_container("b")),
        ("emqx-brokers", lambda n: n.resource("brokers")),
        ("emqx-mqtt-client-dev", lambda n: n.mqtt_client("dev")),
    )
    for kept, call in cases:
        assert call(first) == kept
        renamed = call(other)
        assert renamed.startswith("edge-") and renamed != kept, renamed
    assert other.node_dirs("emqx1") == "edge-emqx1-dirs"
    assert other.lb_container(None) == "edge-lb"
    assert other.single_host_name("edge-a-lb-image", "a") == "edge-lb-image"


def test_a_cluster_on_docker_hosts_of_its_own_takes_nothing_from_another() -> None:
    ledger = ClaimLedger()
    config = parse_stack_config(DEV)
    assert ledger.claim("emqx", cluster_claims(config, plan_cluster(config))) == []
    remote = parse_stack_config(
        {**DEV, "dockerHost": "ssh://deploy@10.0.0.21", "sshHost": "10.0.0.21", "advertiseAddress": "10.0.0.21"}
    )
    assert ledger.claim("edge", cluster_claims(remote, plan_cluster(remote))) == []


def test_a_second_cluster_on_the_same_docker_host_is_refused_naming_both_and_each_clash() -> None:
    ledger = ClaimLedger()
    config = parse_stack_config(DEV)
    ledger.claim("emqx", cluster_claims(config, plan_cluster(config)))
    # Other ports, other data dir, no sysctls: the containers' fixed names still clash.
    other = parse_stack_config(
        {
            **DEV,
            "nodes": "1",
            "mqttPortBase": "51001",
            "dashboardPortBase": "52001",
            "lbPort": "9884",
            "dataDir": "/srv/edge",
            "manageSysctls": "false",
            "ipLocalPortRange": "32768 50999",
        }
    )
    (problem,) = ledger.claim("edge", cluster_claims(other, plan_cluster(other)))
    assert problem.startswith(
        "EmqxCluster 'edge' and EmqxCluster 'emqx' both take, on Docker host 'unix:///var/run/docker.sock': "
        "container 'emqx-lb' (emqx-lb's container; emqx-lb's container in 'emqx'), "
        "container 'emqx1' (emqx1's container; emqx1's container in 'emqx'), "
        "port 4371 (emqx1's distribution; emqx1's distribution in 'emqx'), "
        "port 5371 (emqx1's rpc; emqx1's rpc in 'emqx'): allowed: each cluster on Docker hosts of its own"
    ), problem
    # Refused: the ledger keeps the first cluster's claims only, so a third may still come.
    assert all(cluster == "emqx" for cluster, _ in ledger.held.values())


def test_every_port_container_and_path_of_a_host_is_claimed() -> None:
    config = parse_stack_config({**DEV, "metrics": "true"})
    plan = plan_cluster(config)
    claims = {(claim.kind, claim.value) for claim in cluster_claims(config, plan)}
    host = plan.hosts[0]
    assert {("port", str(port)) for port in host.ports()} <= claims
    assert {("container", node.container_name) for node in plan.nodes} <= claims
    assert {("container", "emqx-lb"), ("container", "emqx-prometheus")} <= claims
    assert {("path", node.host_dir) for node in plan.nodes} <= claims
    assert {("path", "/var/lib/emqx-cluster/dev/prometheus"), ("path", "/etc/sysctl.d/60-emqx-cluster.conf")} <= claims


def test_the_same_cluster_declared_again_is_no_clash() -> None:
    """A provider process may construct a program's clusters for its preview, then for its update."""
    ledger = ClaimLedger()
    config = parse_stack_config(DEV)
    assert ledger.claim("emqx", cluster_claims(config, plan_cluster(config))) == []
    assert ledger.claim("emqx", cluster_claims(config, plan_cluster(config))) == []
    assert ledger.claim("edge", cluster_claims(config, plan_cluster(config))) != []


def test_a_name_that_begins_with_another_clusters_and_a_dash_is_refused() -> None:
    """`edge` on host `a` and a cluster `edge-a` would both name `edge-a-preflight`."""
    ledger = ClaimLedger()
    local = parse_stack_config(DEV)
    assert ledger.claim("edge", {}) == []
    (problem,) = ledger.claim("edge-a", cluster_claims(local, plan_cluster(local)))
    assert "EmqxCluster 'edge-a' and EmqxCluster 'edge'" in problem
    assert "allowed: cluster names neither of which begins with the other's and a '-'" in problem
    assert ledger.claim("edgeway", {}) == []
