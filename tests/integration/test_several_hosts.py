"""Several hosts for real: three network namespaces on one bridge, each with its own sshd.

What one host on loopback cannot show: host commands reaching each host over SSH, the cluster
ports open to the cluster's hosts and reset for everyone else, and each host's Nginx sending
clients to its own nodes first and to the other hosts' nodes only while none of its own is up.
Every script and nginx.conf comes from the program's renderers, fed the plan the program builds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from components.config import StackConfig
from components.config_parse import parse_stack_config
from components.firewall import ClusterFirewallArgs
from components.hostexec import HostShell
from components.plan import ClusterPlan, HostPlan, plan_cluster
from components.render.host_scripts import (
    FIREWALL_CHAIN,
    FIREWALL_TABLE,
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


def firewall_args(plan: ClusterPlan, host_plan: HostPlan, admin_networks: Sequence[str] = ()) -> ClusterFirewallArgs:
    """The ClusterFirewall's inputs for `host_plan`, as the program builds them (no connection:
    these tests log in themselves)."""
    return ClusterFirewallArgs(
        ports=host_plan.ports("cluster"),
        peers=[peer.address for peer in plan.hosts],
        shell=HostShell(None, host_plan.use_sudo, host_plan.docker_host),
        admin_ports=sorted(node.ports.dashboard for node in host_plan.nodes),
        admin_networks=admin_networks,
    )


def firewall_command(
    host: Host,
    plan: ClusterPlan,
    host_plan: HostPlan,
    operation: HostOperation,
    backend: Backend,
    admin_networks: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """The ClusterFirewall's command for `operation`, sent over SSH as remote.Command sends it:
    the command line, and every operation's script on standard input (on the nft backend, each
    script first drops iptables from its PATH, as on a host with nftables alone)."""
    args = firewall_args(plan, host_plan, admin_networks)
    rules = backend.confined(firewall_apply_script(args.ports, args.peers, args.admin_ports, admin_networks))
    program = host_program({"create": rules, "update": rules, "delete": backend.confined(firewall_remove_script())})
    return host.ssh_run(shell_command(operation, args.shell.use_sudo), stdin=program)


class Backend:
    """How a host filters: iptables (legacy or nf_tables), or nftables where iptables is absent.

    The same tests run on both: the rules are read back with the backend's own tool.
    """

    def __init__(self, name: str, tools: Path) -> None:
        self.name = name
        self.tools = tools  # a dir with `nft` alone, for the nft backend

    def confined(self, script: str) -> str:
        if self.name == "iptables":
            return script
        return f"PATH={self.tools}:/usr/bin:/bin; export PATH\n{script}"

    @property
    def banner(self) -> str:
        return {"iptables": "iptables: cluster ports", "nft": "nftables: cluster ports"}[self.name]

    def ours(self, host: Host) -> str:
        """Our rules as the backend lists them ("" when there are none)."""
        if self.name == "iptables":
            listed = run_ok(host, "iptables -w -S")
            return "\n".join(line for line in listed.splitlines() if FIREWALL_CHAIN in line)
        return host.run(f"nft list table inet {FIREWALL_TABLE}").stdout

    def entries(self, host: Host) -> int:
        """How often the host's input path enters our rules: the INPUT jump, or our table."""
        if self.name == "iptables":
            return run_ok(host, "iptables -w -S INPUT").splitlines().count(f"-A INPUT -j {FIREWALL_CHAIN}")
        return run_ok(host, "nft list tables").split().count(FIREWALL_TABLE)

    def ports(self, host: Host) -> list[int]:
        """The ports our rules send to the peer check, ranges expanded."""
        if self.name == "iptables":
            spans = [item for match in re.finditer(r"--dports (\S+)", self.ours(host)) for item in match[1].split(",")]
            bounds = [span.partition(":")[::2] for span in spans]
        else:
            found = re.search(r"tcp dport \{ ([^}]*) \} iifname", self.ours(host))
            assert found is not None, self.ours(host)
            bounds = [span.strip().partition("-")[::2] for span in found[1].split(",")]
        return sorted(port for low, high in bounds for port in range(int(low), int(high or low) + 1))

    def add_operator_rules(self, host: Host) -> list[str]:
        """Rules the host had before the deployment (the operator's, Docker's): ours leave them be."""
        if self.name == "iptables":
            for rule in OPERATOR_RULES:
                run_ok(host, f"iptables -w {rule}")
            return list(OPERATOR_RULES)
        run_ok(host, f"nft -f - <<'RULES'\n{OPERATOR_TABLE}\nRULES")
        return [OPERATOR_NFT_RULE]

    def kept(self, host: Host, rules: list[str]) -> list[str]:
        """Those of `rules` still in the host's rule set."""
        listed = run_ok(host, "iptables -w -S" if self.name == "iptables" else "nft list ruleset")
        return [rule for rule in rules if rule in listed]

    def clean(self, host: Host) -> None:
        host.run(self.confined(firewall_remove_script()))
        host.run("iptables -w -F && iptables -w -X")
        host.run("nft delete table inet operator")


def run_ok(host: Host, script: str) -> str:
    """`script` in the host's namespace as root (not through the program); its stdout."""
    proc = host.run(script)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module", params=["iptables", "nft"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    tools = tmp_path_factory.mktemp("only-nft")
    nft = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert nft is not None, "nft (Debian package nftables) is missing: scripts/install-test-deps installs it"
    assert shutil.which("iptables", path="/usr/sbin:/sbin"), (
        "iptables is missing: scripts/install-test-deps installs it"
    )
    (tools / "nft").symlink_to(nft)
    return Backend(request.param, tools)


def apply_rules(
    host: Host, plan: ClusterPlan, host_plan: HostPlan, backend: Backend
) -> subprocess.CompletedProcess[str]:
    return firewall_command(host, plan, host_plan, "update", backend)


def remove_rules(
    host: Host, plan: ClusterPlan, host_plan: HostPlan, backend: Backend
) -> subprocess.CompletedProcess[str]:
    return firewall_command(host, plan, host_plan, "delete", backend)


@pytest.fixture
def cluster_listeners(bridge: Bridge, plan: ClusterPlan) -> Iterator[None]:
    """On every host: a listener on each cluster port and on its first node's MQTT port."""
    with ExitStack() as stack:
        for host_plan in plan.hosts:
            host = bridge.host(host_plan.label)
            for port in [*host_plan.ports("cluster"), host_plan.nodes[0].ports.mqtt]:
                stack.enter_context(host.listen(port))
        yield


@pytest.fixture
def clean_rules(bridge: Bridge, backend: Backend) -> Iterator[None]:
    """Every host's rules gone afterwards, even when a test failed half-way."""
    yield
    for host in bridge.hosts:
        backend.clean(host)


OPERATOR_RULES = (
    "-N DOCKER-USER",
    "-A INPUT -s 192.0.2.99/32 -p tcp -m tcp --dport 2222 -j DROP",
    "-A DOCKER-USER -j RETURN",
)
OPERATOR_NFT_RULE = "ip saddr 192.0.2.99 tcp dport 2222 drop"
OPERATOR_TABLE = f"""table inet operator {{
  chain input {{
    type filter hook input priority filter; policy accept;
    {OPERATOR_NFT_RULE}
  }}
}}"""


@pytest.fixture
def operator_rules(bridge: Bridge, backend: Backend) -> list[str]:
    """The operator's own rules on host a (removed by clean_rules)."""
    return backend.add_operator_rules(bridge.host("a"))


def probes(sources: list[Station], targets: list[tuple[Host, HostPlan]]) -> dict[tuple[str, str, int], Outcome]:
    """(source, target host, port) -> how a connect ends, for every target's cluster port.

    All at once: a broken rule that drops instead of resetting costs one connect timeout, not dozens.
    """
    cases = [
        (source, host, port) for source in sources for host, host_plan in targets for port in host_plan.ports("cluster")
    ]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        outcomes = pool.map(lambda case: case[0].probe(case[1].address, case[2]), cases)
        return {
            (source.name, host.name, port): outcome
            for (source, host, port), outcome in zip(cases, outcomes, strict=True)
        }


@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_each_host_gets_its_own_rules_over_ssh_and_the_cluster_can_still_dial_every_node(
    bridge: Bridge, plan: ClusterPlan, backend: Backend
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
        applied = apply_rules(host, plan, host_plan, backend)
        assert applied.returncode == 0, f"{host.name}: {applied.stderr}"
        assert backend.banner in applied.stdout
    assert {host.name: backend.ports(host) for host, _ in targets} == {
        host.name: host_plan.ports("cluster") for host, host_plan in targets
    }

    members: list[Station] = list(bridge.hosts)
    from_members = probes(members, targets)
    assert set(from_members.values()) == {"accepted"}, {k: v for k, v in from_members.items() if v != "accepted"}
    from_outsider = probes([bridge.outsider], targets)
    assert set(from_outsider.values()) == {"refused"}, {k: v for k, v in from_outsider.items() if v != "refused"}

    for host, host_plan in targets:
        removed = remove_rules(host, plan, host_plan, backend)
        assert removed.returncode == 0, f"{host.name}: {removed.stderr}"
    after = probes([bridge.outsider], targets)
    assert set(after.values()) == {"accepted"}, {k: v for k, v in after.items() if v != "accepted"}


@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_firewall_resets_outsiders_at_cluster_ports_only(
    bridge: Bridge, plan: ClusterPlan, backend: Backend, operator_rules: list[str]
) -> None:
    """On host a: a cluster host may dial the distribution and RPC ports, the outsider gets an
    immediate reset (a REJECT, not a silent drop that would hang a node for the connect
    timeout); ports outside the list, like MQTT, stay open to everyone, and the host's own rules
    stay in place."""
    a, b = bridge.host("a"), bridge.host("b")
    a_plan = plan.host("a")
    node = a_plan.nodes[0]
    applied = apply_rules(a, plan, a_plan, backend)
    assert applied.returncode == 0, applied.stderr

    assert b.probe(a.address, node.ports.distribution) == "accepted"
    assert b.probe(a.address, node.ports.rpc) == "accepted"
    assert a.probe(a.address, node.ports.distribution) == "accepted"  # its own nodes, over lo
    assert bridge.outsider.probe(a.address, node.ports.distribution) == "refused"
    assert bridge.outsider.probe(a.address, node.ports.rpc) == "refused"
    assert bridge.outsider.probe(a.address, node.ports.mqtt) == "accepted"
    assert backend.kept(a, operator_rules) == operator_rules


@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_admin_ports_open_to_the_admin_networks_alone(bridge: Bridge, plan: ClusterPlan, backend: Backend) -> None:
    """adminNetworks: the nodes' HTTPS dashboard ports on host a admit those networks (here host
    b's address) and loopback; another cluster host and the outsider get a reset; the cluster
    ports keep their own rule."""
    a, b, c = bridge.host("a"), bridge.host("b"), bridge.host("c")
    a_plan = plan.host("a")
    node = a_plan.nodes[0]
    with a.listen(node.ports.dashboard):
        applied = firewall_command(a, plan, a_plan, "update", backend, admin_networks=[f"{b.address}/32"])
        assert applied.returncode == 0, applied.stderr
        assert f"admin ports {node.ports.dashboard}" in applied.stdout
        assert b.probe(a.address, node.ports.dashboard) == "accepted"
        assert a.probe(a.address, node.ports.dashboard) == "accepted"  # over lo
        assert c.probe(a.address, node.ports.dashboard) == "refused"
        assert bridge.outsider.probe(a.address, node.ports.dashboard) == "refused"
        assert c.probe(a.address, node.ports.distribution) == "accepted"
        assert bridge.outsider.probe(a.address, node.ports.distribution) == "refused"
    removed = firewall_command(a, plan, a_plan, "delete", backend)
    assert removed.returncode == 0 and backend.ours(a) == "", removed.stderr


@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_reapplying_the_rules_replaces_them_and_follows_the_peer_list(
    bridge: Bridge, plan: ClusterPlan, backend: Backend, operator_rules: list[str]
) -> None:
    """`pulumi up` runs the command again on every update: our rules entered once (one INPUT
    jump, one table), nothing duplicated, and a host dropped from the peer list (host c leaving
    the stack) loses access."""
    a, b, c = bridge.host("a"), bridge.host("b"), bridge.host("c")
    a_plan = plan.host("a")
    distribution = a_plan.nodes[0].ports.distribution
    assert apply_rules(a, plan, a_plan, backend).returncode == 0
    first = backend.ours(a)
    second = apply_rules(a, plan, a_plan, backend)
    assert second.returncode == 0, second.stderr
    assert backend.ours(a) == first
    assert backend.entries(a) == 1

    smaller = plan_cluster(stack_config(bridge, (a, b)))
    assert smaller.host("a").ports("cluster") == a_plan.ports("cluster")
    updated = apply_rules(a, smaller, smaller.host("a"), backend)
    assert updated.returncode == 0, updated.stderr
    assert backend.entries(a) == 1
    assert b.probe(a.address, distribution) == "accepted"
    assert c.probe(a.address, distribution) == "refused"
    assert backend.kept(a, operator_rules) == operator_rules


@pytest.mark.usefixtures("cluster_listeners", "clean_rules")
def test_removing_the_rules_opens_the_ports_again_and_is_safe_twice(
    bridge: Bridge, plan: ClusterPlan, backend: Backend, operator_rules: list[str]
) -> None:
    """`pulumi destroy` (or dropping to one host) runs the delete command: nothing of ours stays,
    nothing else goes, and a second run, e.g. after a failed destroy, still succeeds."""
    a, a_plan = bridge.host("a"), plan.host("a")
    distribution = a_plan.nodes[0].ports.distribution
    assert apply_rules(a, plan, a_plan, backend).returncode == 0
    assert bridge.outsider.probe(a.address, distribution) == "refused"

    for attempt in (1, 2):
        removed = remove_rules(a, plan, a_plan, backend)
        assert removed.returncode == 0, f"remove #{attempt}: {removed.stderr}"
        assert backend.ours(a) == "" and backend.entries(a) == 0
        assert bridge.outsider.probe(a.address, distribution) == "accepted"
        assert backend.kept(a, operator_rules) == operator_rules


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


@pytest.mark.usefixtures("clean_rules")
def test_a_host_dropped_from_the_peers_keeps_its_open_connections(
    bridge: Bridge, plan: ClusterPlan, backend: Backend
) -> None:
    """When a host leaves the stack, the other hosts' rules are updated before its nodes' deletes
    run `cluster leave`: only new connections are judged, so the leaving nodes still talk over
    the connections they have, while nothing new from that host gets in."""
    a, b, c = bridge.host("a"), bridge.host("b"), bridge.host("c")
    port = plan.host("a").nodes[0].ports.distribution
    with a.listen(port) as listener, c.connect(a.address, port) as leaving:
        listener.settimeout(10)
        served, _ = listener.accept()
        with served:
            assert apply_rules(a, plan, plan.host("a"), backend).returncode == 0
            smaller = plan_cluster(stack_config(bridge, (a, b)))
            assert apply_rules(a, smaller, smaller.host("a"), backend).returncode == 0
            leaving.sendall(b"leave")
            served.settimeout(10)
            assert served.recv(5) == b"leave"
            assert c.probe(a.address, port) == "refused"
            assert b.probe(a.address, port) == "accepted"
