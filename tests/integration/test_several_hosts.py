"""Several hosts for real: three network namespaces on one bridge, each with its own sshd.

What one host on loopback cannot show: host commands reaching each host over SSH, the cluster
ports open to the cluster's hosts and reset for everyone else, and each host's Nginx sending
clients to its own nodes first and to the other hosts' nodes only while none of its own is up.
Every script and nginx.conf comes from the program's renderers, fed the plan the program builds.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from components.config import StackConfig
from components.config_parse import parse_stack_config
from components.firewall import ClusterFirewallArgs, cluster_ports
from components.hostexec import HostAccess
from components.plan import ClusterPlan, HostPlan, plan_cluster
from components.render.host_scripts import (
    FIREWALL_CHAIN,
    FIREWALL_PEERS_CHAIN,
    HostOperation,
    firewall_apply_script,
    firewall_remove_script,
    host_program,
    shell_command,
)
from components.render.nginx import nginx_settings
from tests.support.bridge import (
    Bridge,
    Host,
    NamespacedNginx,
    Outcome,
    ProxyHeader,
    ProxyNode,
    Station,
    bridged_hosts,
    tls_exchange,
)
from tests.support.lb_stack import Pki, make_pki
from tests.support.lb_stack import missing_prerequisites as lb_missing

pytestmark = pytest.mark.integration

NODES_PER_HOST = 2
NEEDS_IPTABLES = pytest.mark.skipif(
    shutil.which("iptables", path="/usr/sbin:/sbin:/usr/bin:/bin") is None,
    reason="the firewall tests read the rules back with iptables (the nft-only path is not covered here)",
)
NGINX_MISSING = [item for item in lb_missing() if "mosquitto" not in item]
NEEDS_NGINX = pytest.mark.skipif(bool(NGINX_MISSING), reason=f"the Nginx test needs: {', '.join(NGINX_MISSING)}")


@pytest.fixture(scope="module")
def bridge() -> Iterator[Bridge]:
    with bridged_hosts(3) as hosts:
        yield hosts


def stack_config(bridge: Bridge, hosts: tuple[Host, ...] | None = None) -> StackConfig:
    """The several-host stack over `hosts` (default: all), logging in as the hosts' sshd expects."""
    entries = [
        {
            "name": host.name,
            "address": host.address,
            "nodes": NODES_PER_HOST,
            "sshUser": host.ssh.user,
            "sshPort": host.ssh.port,
            "useSudo": True,
        }
        for host in hosts or bridge.hosts
    ]
    return parse_stack_config({"hosts": json.dumps(entries), "tlsMode": "self-signed"})


@pytest.fixture(scope="module")
def config(bridge: Bridge) -> StackConfig:
    return stack_config(bridge)


@pytest.fixture(scope="module")
def plan(config: StackConfig) -> ClusterPlan:
    return plan_cluster(config)


def firewall_args(plan: ClusterPlan, host_plan: HostPlan) -> ClusterFirewallArgs:
    """The ClusterFirewall's inputs for `host_plan`, as the program builds them (no connection:
    these tests log in themselves)."""
    return ClusterFirewallArgs(
        ports=cluster_ports(host_plan),
        peers=[peer.address for peer in plan.hosts],
        access=HostAccess(None, host_plan.use_sudo, host_plan.docker_host),
    )


def firewall_command(
    host: Host, plan: ClusterPlan, host_plan: HostPlan, operation: HostOperation
) -> subprocess.CompletedProcess[str]:
    """The ClusterFirewall's command for `operation`, sent over SSH as remote.Command sends it:
    the command line, and every operation's script on standard input."""
    args = firewall_args(plan, host_plan)
    rules = firewall_apply_script(args.ports, args.peers)
    program = host_program({"create": rules, "update": rules, "delete": firewall_remove_script()})
    return host.ssh_run(shell_command(operation, args.access.use_sudo), stdin=program)


def apply_rules(host: Host, plan: ClusterPlan, host_plan: HostPlan) -> subprocess.CompletedProcess[str]:
    return firewall_command(host, plan, host_plan, "update")


def remove_rules(host: Host, plan: ClusterPlan, host_plan: HostPlan) -> subprocess.CompletedProcess[str]:
    return firewall_command(host, plan, host_plan, "delete")


def iptables(host: Host, *args: str) -> str:
    """`iptables ARGS` output read in the host's namespace (as root, not through the program)."""
    proc = host.run(" ".join(["iptables", "-w", *args]))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def chain_ports(host: Host) -> list[int]:
    """The ports our chain sends to the peer check, its multiport `low:high` ranges expanded."""
    ports: list[int] = []
    for match in re.finditer(r"--dports (\S+)", iptables(host, "-S", FIREWALL_CHAIN)):
        for item in match[1].split(","):
            low, _, high = item.partition(":")
            ports.extend(range(int(low), int(high or low) + 1))
    return sorted(ports)


@pytest.fixture
def cluster_listeners(bridge: Bridge, plan: ClusterPlan) -> Iterator[None]:
    """On every host: a listener on each cluster port and on its first node's MQTT port."""
    with ExitStack() as stack:
        for host_plan in plan.hosts:
            host = bridge.host(host_plan.label)
            for port in [*cluster_ports(host_plan), host_plan.nodes[0].ports.mqtt]:
                stack.enter_context(host.listen(port))
        yield


@pytest.fixture
def clean_rules(bridge: Bridge) -> Iterator[None]:
    """Every host's filter table empty afterwards, even when a test failed half-way."""
    yield
    for host in bridge.hosts:
        host.run(firewall_remove_script())
        host.run("iptables -w -F && iptables -w -X")


# Rules the host had before the deployment (the operator's, Docker's): ours must leave them be.
OPERATOR_RULES = (
    "-N DOCKER-USER",
    "-A INPUT -s 192.0.2.99/32 -p tcp -m tcp --dport 2222 -j DROP",
    "-A DOCKER-USER -j RETURN",
)


@pytest.fixture
def operator_rules(bridge: Bridge) -> list[str]:
    """OPERATOR_RULES on host a (removed by clean_rules)."""
    a = bridge.host("a")
    for rule in OPERATOR_RULES:
        iptables(a, *rule.split())
    return list(OPERATOR_RULES)


def kept(host: Host, rules: list[str]) -> list[str]:
    """Those of `rules` still in the host's filter table."""
    present = iptables(host, "-S").splitlines()
    return [rule for rule in rules if rule in present]


def probes(sources: list[Station], targets: list[tuple[Host, HostPlan]]) -> dict[tuple[str, str, int], Outcome]:
    """(source, target host, port) -> how a connect ends, for every target's cluster port.

    All at once: a broken rule that drops instead of resetting costs one connect timeout, not dozens.
    """
    cases = [
        (source, host, port) for source in sources for host, host_plan in targets for port in cluster_ports(host_plan)
    ]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        outcomes = pool.map(lambda case: case[0].probe(case[1].address, case[2]), cases)
        return {
            (source.name, host.name, port): outcome
            for (source, host, port), outcome in zip(cases, outcomes, strict=True)
        }


@NEEDS_IPTABLES
@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_each_host_gets_its_own_rules_over_ssh_and_the_cluster_can_still_dial_every_node(
    bridge: Bridge, plan: ClusterPlan
) -> None:
    """The firewall command, rendered per host and run over SSH through sudo on all three hosts,
    lands on the right host (its own ports), and leaves every node reachable from every cluster
    host while the outsider is reset everywhere."""
    targets = [(bridge.host(host_plan.label), host_plan) for host_plan in plan.hosts]
    for host, host_plan in targets:
        assert host_plan.ssh is not None
        assert (host_plan.ssh.host, host_plan.ssh.port, host_plan.ssh.user) == (
            host.ssh.host,
            host.ssh.port,
            host.ssh.user,
        )
        applied = apply_rules(host, plan, host_plan)
        assert applied.returncode == 0, f"{host.name}: {applied.stderr}"
        assert "iptables: ports" in applied.stdout
    assert {host.name: chain_ports(host) for host, _ in targets} == {
        host.name: cluster_ports(host_plan) for host, host_plan in targets
    }

    members: list[Station] = list(bridge.hosts)
    from_members = probes(members, targets)
    assert set(from_members.values()) == {"accepted"}, {k: v for k, v in from_members.items() if v != "accepted"}
    from_outsider = probes([bridge.outsider], targets)
    assert set(from_outsider.values()) == {"refused"}, {k: v for k, v in from_outsider.items() if v != "refused"}

    for host, host_plan in targets:
        removed = remove_rules(host, plan, host_plan)
        assert removed.returncode == 0, f"{host.name}: {removed.stderr}"
    after = probes([bridge.outsider], targets)
    assert set(after.values()) == {"accepted"}, {k: v for k, v in after.items() if v != "accepted"}


@NEEDS_IPTABLES
@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_firewall_resets_outsiders_at_cluster_ports_only(
    bridge: Bridge, plan: ClusterPlan, operator_rules: list[str]
) -> None:
    """On host a: a cluster host may dial the distribution and RPC ports, the outsider gets an
    immediate reset (a REJECT, not a silent drop that would hang a node for the connect
    timeout); ports outside the list, like MQTT, stay open to everyone, and the host's own rules
    stay in place."""
    a, b = bridge.host("a"), bridge.host("b")
    a_plan = plan.host("a")
    node = a_plan.nodes[0]
    applied = apply_rules(a, plan, a_plan)
    assert applied.returncode == 0, applied.stderr

    assert b.probe(a.address, node.ports.distribution) == "accepted"
    assert b.probe(a.address, node.ports.rpc) == "accepted"
    assert a.probe(a.address, node.ports.distribution) == "accepted"  # its own nodes, over lo
    assert bridge.outsider.probe(a.address, node.ports.distribution) == "refused"
    assert bridge.outsider.probe(a.address, node.ports.rpc) == "refused"
    assert bridge.outsider.probe(a.address, node.ports.mqtt) == "accepted"
    assert kept(a, operator_rules) == operator_rules


@NEEDS_IPTABLES
@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_reapplying_the_rules_replaces_them_and_follows_the_peer_list(
    bridge: Bridge, plan: ClusterPlan, operator_rules: list[str]
) -> None:
    """`pulumi up` runs the command again on every update: one INPUT jump, no duplicated rules,
    and a host dropped from the peer list (host c leaving the stack) loses access."""
    a, b, c = bridge.host("a"), bridge.host("b"), bridge.host("c")
    a_plan = plan.host("a")
    distribution = a_plan.nodes[0].ports.distribution
    assert apply_rules(a, plan, a_plan).returncode == 0
    first = iptables(a, "-S")
    second = apply_rules(a, plan, a_plan)
    assert second.returncode == 0, second.stderr
    assert iptables(a, "-S") == first
    assert iptables(a, "-S", "INPUT").splitlines().count(f"-A INPUT -j {FIREWALL_CHAIN}") == 1

    smaller = plan_cluster(stack_config(bridge, (a, b)))
    assert cluster_ports(smaller.host("a")) == cluster_ports(a_plan)
    updated = apply_rules(a, smaller, smaller.host("a"))
    assert updated.returncode == 0, updated.stderr
    assert iptables(a, "-S", "INPUT").splitlines().count(f"-A INPUT -j {FIREWALL_CHAIN}") == 1
    assert b.probe(a.address, distribution) == "accepted"
    assert c.probe(a.address, distribution) == "refused"
    assert kept(a, operator_rules) == operator_rules


@NEEDS_IPTABLES
@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_removing_the_rules_opens_the_ports_again_and_is_safe_twice(
    bridge: Bridge, plan: ClusterPlan, operator_rules: list[str]
) -> None:
    """`pulumi destroy` (or dropping to one host) runs the delete command: nothing of ours stays,
    nothing else goes, and a second run, e.g. after a failed destroy, still succeeds."""
    a, a_plan = bridge.host("a"), plan.host("a")
    distribution = a_plan.nodes[0].ports.distribution
    assert apply_rules(a, plan, a_plan).returncode == 0
    assert bridge.outsider.probe(a.address, distribution) == "refused"

    for attempt in (1, 2):
        removed = remove_rules(a, plan, a_plan)
        assert removed.returncode == 0, f"remove #{attempt}: {removed.stderr}"
        rules = iptables(a, "-S")
        assert FIREWALL_CHAIN not in rules and FIREWALL_PEERS_CHAIN not in rules, rules
        assert bridge.outsider.probe(a.address, distribution) == "accepted"
        assert kept(a, operator_rules) == operator_rules


# --------------------------------------------------------------------------- Nginx per host


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def upstream_servers(conf: str) -> dict[str, bool]:
    """`server` lines of the upstream block: endpoint -> whether it is a `backup` server."""
    return {match[1]: match[2].endswith(" backup") for match in re.finditer(r"^\s*server (\S+)(.*);$", conf, re.M)}


@NEEDS_NGINX
def test_nginx_serves_clients_from_local_nodes_and_falls_back_to_remote_ones(
    bridge: Bridge, config: StackConfig, plan: ClusterPlan, pki: Pki, tmp_path: Path
) -> None:
    """Host a's load balancer, as rendered for a: clients go to a's own nodes with their real
    address in the PROXY header; the other hosts' nodes are `backup` servers, idle while a local
    node is up and taking new clients once none is."""
    a, a_plan = bridge.host("a"), plan.host("a")
    settings = nginx_settings(config, plan, a_plan)
    nginx = NamespacedNginx(a, tmp_path / "nginx", settings, pki)
    assert upstream_servers(nginx.write_config()) == {node.mqtt_endpoint: node.host_label != "a" for node in plan.nodes}

    with ExitStack() as stack:
        nodes: dict[str, ProxyNode] = {}
        for node in plan.nodes:
            stand_in = ProxyNode(bridge.host(node.host_label), node.short_name, node.address, node.ports.mqtt)
            stack.callback(stand_in.stop)
            nodes[node.short_name] = stand_in
        stack.enter_context(nginx)
        local = {node.short_name for node in a_plan.nodes}
        remote = set(nodes) - local

        def connect() -> tuple[str, ProxyHeader]:
            # The test PKI's server certificate names localhost, whatever address Nginx listens on.
            served = tls_exchange(bridge.outsider, a.address, settings.listen_port, pki.client_context(), "localhost")
            assert served.node in nodes, f"no node answered: {served}"
            headers = [h for h in nodes[served.node].headers if h.source == served.client]
            assert len(headers) == 1, f"{served.node} has no PROXY header for {served.client}"
            return served.node, headers[0]

        # connect() found each header by the client's own address and port: the real one.
        first = [connect() for _ in range(2 * len(local))]
        assert {name for name, _ in first} <= local
        assert {header.destination for _, header in first} == {(a.address, settings.listen_port)}
        assert {name: nodes[name].headers for name in remote} == {name: [] for name in remote}

        for name in local:
            nodes[name].stop()
        fallback = [connect() for _ in range(2)]
        assert {name for name, _ in fallback} <= remote
        assert {name: node.rejected for name, node in nodes.items() if node.rejected} == {}


@NEEDS_IPTABLES
@pytest.mark.usefixtures("clean_rules")
def test_a_host_dropped_from_the_peers_keeps_its_open_connections(bridge: Bridge, plan: ClusterPlan) -> None:
    """When a host leaves the stack, the other hosts' rules are updated before its nodes' deletes
    run `cluster leave`: only new connections are judged, so the leaving nodes still talk over
    the connections they have, while nothing new from that host gets in."""
    a, b, c = bridge.host("a"), bridge.host("b"), bridge.host("c")
    port = plan.host("a").nodes[0].ports.distribution
    with a.listen(port) as listener, c.connect(a.address, port) as leaving:
        listener.settimeout(10)
        served, _ = listener.accept()
        with served:
            assert apply_rules(a, plan, plan.host("a")).returncode == 0
            smaller = plan_cluster(stack_config(bridge, (a, b)))
            assert apply_rules(a, smaller, smaller.host("a")).returncode == 0
            leaving.sendall(b"leave")
            served.settimeout(10)
            assert served.recv(5) == b"leave"
            assert c.probe(a.address, port) == "refused"
            assert b.probe(a.address, port) == "accepted"


NFT = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin")


@pytest.mark.skipif(NFT is None, reason="nft (Debian package nftables) is not installed")
@pytest.mark.usefixtures("cluster_listeners")
def test_where_only_nft_exists_the_rules_are_an_nftables_table(
    bridge: Bridge, plan: ClusterPlan, tmp_path: Path
) -> None:
    """A host with nftables and no iptables: the same rules as one table of ours, replaced in one
    transaction, removed on delete."""
    assert NFT is not None
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nft").symlink_to(NFT)
    only_nft = f"PATH={tools}:/usr/bin:/bin"  # iptables lives in /usr/sbin
    b, c = bridge.host("b"), bridge.host("c")
    b_plan = plan.host("b")
    port = b_plan.nodes[0].ports.distribution
    args = firewall_args(plan, b_plan)
    try:
        for _ in range(2):  # a re-run replaces the table
            applied = b.run(f"env {only_nft} sh -c {shlex.quote(firewall_apply_script(args.ports, args.peers))}")
            assert applied.returncode == 0 and "nftables: ports" in applied.stdout, applied.stderr
        assert b.run("nft list tables").stdout.count("emqx_cluster") == 1
        assert bridge.outsider.probe(b.address, port) == "refused"
        assert c.probe(b.address, port) == "accepted"
        assert bridge.outsider.probe(b.address, b_plan.nodes[0].ports.mqtt) == "accepted"
    finally:
        removed = b.run(f"env {only_nft} sh -c {shlex.quote(firewall_remove_script())}")
    assert removed.returncode == 0, removed.stderr
    assert "emqx_cluster" not in b.run("nft list tables").stdout
    assert bridge.outsider.probe(b.address, port) == "accepted"
