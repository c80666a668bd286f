"""The first real `pulumi up`: the real engine and providers against a real Docker engine.

One dev-like stack lives through the module in the order a user's stack would (new stack,
deploy, no-op, scale up, upgrade, a crash, scale down, a port conflict, destroy), then a
prod-like stack goes over SSH. The Pulumi CLI of the dev stack runs inside the e2e host's
network namespace, like a deployer on the Docker host itself; the prod stack's deployer is the
machine, reaching the host over SSH. Assertions come from `pulumi stack export`,
`pulumi preview --json`, `docker inspect` and MQTT clients.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme

from components.capacity import BROKER_RESERVED_FILES, cluster_capacity, memory_budget
from components.config_types import NAMESPACE
from tests.support.e2e.cluster_probe import (
    RolloutWatch,
    client_context,
    client_peers,
    cluster_status,
    container_names,
    delivered_across_nodes,
    health,
    inspect,
    listener_probe,
    most_allowed_down,
    peers_through_lb,
    round_trip,
)
from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import E2eImages, ensure_images
from tests.support.e2e.pulumi_cli import PulumiProject, changed, step_ops
from tests.support.e2e.qos_traffic import qos1_traffic
from tests.support.e2e.stacks import (
    DEV_ACL,
    DEV_CLIENT,
    PROBE_ACL,
    PROBE_PASSWORD,
    PROBE_USERNAME,
    dev_like,
    lb_answers,
    lb_attempt,
    probe_secrets,
    prod_like,
)
from tests.support.emqx_reason_codes import BAD_USERNAME_OR_PASSWORD, NOT_AUTHORIZED
from tests.support.lb_stack import MqttRefusedError, MqttSession, connect_mqtt
from tests.support.ports import WaitTimeoutError, wait_until
from tests.support.serve_probe import ACCEPTED, wrong_answers
from tests.support.stackfiles import validate

pytestmark = pytest.mark.e2e

WATCHED_SYSCTLS = ("net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports")


@pytest.fixture(scope="module")
def dev(
    bin_dir: Path, e2e_host_session: E2eHost, e2e_images: E2eImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PulumiProject]:
    ensure_images(e2e_host_session)  # an earlier stack's destroy removed the nginx image, as on a real host
    root = tmp_path_factory.mktemp("dev-stack")
    project = PulumiProject.create(root / "project", bin_dir, stack="dev", netns=e2e_host_session.netns_path)
    project.init_stack(dev_like(e2e_host_session, root), probe_secrets())
    yield project
    if project.resources():
        project.destroy()


def sysctls(host: E2eHost) -> dict[str, str]:
    script = "; ".join(f"cat /proc/sys/{key.replace('.', '/')}" for key in WATCHED_SYSCTLS)
    lines = host.run_in_ns(script).stdout.splitlines()
    return dict(zip(WATCHED_SYSCTLS, (" ".join(line.split()) for line in lines), strict=True))


def container_ids(host: E2eHost, names: list[str]) -> dict[str, str]:
    out = host.docker("inspect", "--format", "{{.Name}} {{.Id}}", *names).stdout
    return {name.lstrip("/"): cid for name, cid in (line.split() for line in out.splitlines())}


def stack_built_tags(host: E2eHost) -> list[str]:
    """Tags of broker images the stack built: `<version>-<digest of the build inputs>`."""
    tags = host.docker("images", "--format", "{{.Tag}}", "emqx-cluster/emqx").stdout.split()
    return [tag for tag in tags if re.fullmatch(r"[0-9.]+-[0-9a-f]{12}", tag)]


def appears_in(secret: str, json_text: str) -> bool:
    """Whether `secret` is in a JSON document's text (multi-line PEMs appear with escaped newlines)."""
    return json.dumps(secret)[1:-1] in json_text


def nodes_of(count: int) -> list[str]:
    return [f"emqx{i}" for i in range(1, count + 1)]


def node_names(count: int, address: str = "127.0.0.1") -> list[str]:
    return [f"emqx{i}@{address}" for i in range(1, count + 1)]


class State:
    """What earlier steps of the module learnt, for later ones."""

    sysctls_before: ClassVar[dict[str, str]] = {}
    ids_at_three: ClassVar[dict[str, str]] = {}


def test_1_preview_of_a_new_stack_plans_every_resource(dev: PulumiProject, e2e_host_session: E2eHost) -> None:
    State.sysctls_before = sysctls(e2e_host_session)
    preview = dev.preview()
    ops = step_ops(preview)
    assert {name: op for name, op in ops.items() if set(op) != {"create"}} == {}
    for name in ("emqx1", "emqx2", "emqx3", "emqx-lb", "emqx-broker-image-build", "emqx-host-sysctls"):
        assert name in ops, sorted(ops)
    assert preview["changeSummary"]["create"] == sum(len(op) for op in ops.values())


def test_2_up_deploys_a_healthy_cluster_behind_nginx(dev: PulumiProject, e2e_host_session: E2eHost) -> None:
    host = e2e_host_session
    result = dev.up()
    print(f"pulumi up (3 nodes, 2 waves): {result.seconds:.1f}s")
    assert health(host, *nodes_of(3), "emqx-lb") == dict.fromkeys([*nodes_of(3), "emqx-lb"], "healthy") | {
        "emqx-lb": "running"
    }
    assert cluster_status(host, "emqx1") == {"running_nodes": node_names(3), "stopped_nodes": []}
    outputs = dev.outputs()
    assert outputs["endpoint"] == f"{host.address}:8884"
    context = client_context(outputs["tlsCertificate"])
    round_trip(host.address, 8884, context)
    # Nginx passes the client's own address in the PROXY header: the machine's end of the veth.
    assert peers_through_lb(host, nodes_of(3), host.address, 8884, context) == {host.gateway}
    # The dashboard password and the cookie are secrets in state: never there in plain text.
    text = json.dumps(dev.export())
    cookie = next(
        line.split("=", 1)[1]
        for line in json.loads(host.docker("inspect", "--format", "{{json .Config.Env}}", "emqx1").stdout)
        if line.startswith("EMQX_NODE__COOKIE=")
    )
    # So are the MQTT passwords (declared and generated) and the API key, in state and in the
    # node's access files' here-document (the command's stdin).
    api_key = host.docker("exec", "emqx1", "cat", "/opt/emqx/etc/access/api-keys").stdout.split(":")[1]
    for secret in (outputs["dashboardPassword"], cookie, outputs["mqttClient"]["password"], PROBE_PASSWORD, api_key):
        assert not appears_in(secret, text)
    State.ids_at_three = container_ids(host, nodes_of(3))


def test_2a_a_message_reaches_subscribers_on_every_node(dev: PulumiProject, e2e_host_session: E2eHost) -> None:
    host = e2e_host_session
    context = client_context(dev.outputs()["tlsCertificate"])
    assert delivered_across_nodes([(host, nodes_of(3))], 8884, context) == dict.fromkeys(nodes_of(3), True)


def test_3_up_again_changes_nothing(dev: PulumiProject) -> None:
    """No perpetual diff: every resource reads back as declared."""
    preview = dev.preview("--diff")
    assert changed(preview) == {}, changed(preview)
    result = dev.up("--expect-no-changes")
    print(f"no-op pulumi up: {result.seconds:.1f}s")


def test_3a_a_client_ca_admits_only_clients_with_its_certificate(dev: PulumiProject, e2e_host_session: E2eHost) -> None:
    """tlsClientCa: the load balancer refuses a client without a certificate the client CA signed
    in the TLS handshake; another CA's certificate too; without the key again, anyone with TLS."""
    host = e2e_host_session
    client_ca = trustme.CA()
    dev.set_config({"tlsClientCa": client_ca.cert_pem.bytes().decode()})
    try:
        dev.up()
        server_ca = dev.outputs()["tlsCertificate"]
        assert not lb_answers(host.address, 8884, client_context(server_ca), host.address)
        for authority, admitted in ((trustme.CA(), False), (client_ca, True)):
            device = authority.issue_cert("device-1.clients.example")
            context = client_context(server_ca)
            with device.cert_chain_pems[0].tempfile() as cert, device.private_key_pem.tempfile() as key:
                context.load_cert_chain(cert, key)
            assert lb_answers(host.address, 8884, context, host.address) is admitted
    finally:
        dev.set_config({"tlsClientCa": None})
        dev.up()
    assert lb_answers(host.address, 8884, client_context(dev.outputs()["tlsCertificate"]), host.address)


def test_3d_the_capacity_output_is_the_plans_with_the_hosts_memory(
    dev: PulumiProject, e2e_host_session: E2eHost
) -> None:
    """The `capacity` output of the deployed stack: the plan's bounds for the config it runs, and
    the memory bound its preflight computed from the host's MemTotal; the least of them decides."""
    shown = json.loads(dev.run("config", "--stack", dev.stack, "--json", "--show-secrets").stdout)
    config, plan = validate({key.split(":", 1)[1]: entry["value"] for key, entry in shown.items()})
    (label, capacity), *others = dev.outputs()["capacity"].items()
    assert others == []
    planned = cluster_capacity(config, plan)[label]
    budget = memory_budget(config, plan.host(label))
    meminfo = e2e_host_session.run_in_ns("cat /proc/meminfo").stdout
    mem_total = next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:"))
    memory = max(0, (mem_total - budget.reserved_kib) // budget.kib_per_connection)
    bounds = {bound.name: bound.connections for bound in planned.bounds} | {"memory": memory}
    assert capacity["bounds"] == bounds
    decided_by = min(bounds, key=bounds.__getitem__)
    assert (capacity["ceiling"], capacity["decidedBy"]) == (bounds[decided_by], decided_by)


def prometheus_api(host: E2eHost, path: str) -> Any:
    """The dev stack's Prometheus API, on the host's loopback (metrics' default listener)."""
    answer = host.run_in_ns(f"curl --silent --fail --max-time 10 'http://127.0.0.1:9090{path}'")
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)["data"]


def firing_alerts(host: E2eHost) -> dict[str, list[dict[str, str]]]:
    alerts: dict[str, list[dict[str, str]]] = {}
    for alert in prometheus_api(host, "/api/v1/alerts")["alerts"]:
        if alert["state"] == "firing":
            alerts.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
    return alerts


def test_3e_metrics_show_every_node_alert_on_a_stopped_one_and_leave_when_turned_off(
    dev: PulumiProject, e2e_host_session: E2eHost
) -> None:
    """metrics on: Prometheus (Debian's, in the e2e image) scrapes the three nodes and Nginx;
    a stopped node fires EmqxNodeDown for that node, which clears once it is back; metrics off
    removes the container and Nginx's metrics listener."""
    host = e2e_host_session
    dev.set_config({"metrics": True, "metricsScrapeInterval": "1s"})
    try:
        dev.up()
        expected = {f"http://127.0.0.1:{62000 + n}/api/v5/prometheus/stats" for n in (1, 2, 3)}
        expected |= {"http://127.0.0.1:9113/metrics", "http://127.0.0.1:9090/metrics"}

        def healthy_targets() -> set[str]:
            targets = prometheus_api(host, "/api/v1/targets")["activeTargets"]
            return {target["scrapeUrl"] for target in targets if target["health"] == "up"}

        # Listening is not serving: the API answers 503 until the storage is open (`/-/ready`).
        wait_until(
            lambda: host.run_in_ns("curl --silent --fail http://127.0.0.1:9090/-/ready").returncode == 0,
            "Prometheus ready",
            timeout=90,
            interval=1,
        )
        wait_until(lambda: healthy_targets() == expected, "every node, Nginx and Prometheus up", timeout=90, interval=1)
        assert firing_alerts(host) == {}
        host.docker("stop", "emqx3")
        try:
            wait_until(lambda: "EmqxNodeDown" in firing_alerts(host), "EmqxNodeDown", timeout=90, interval=1)
            assert [alert["node"] for alert in firing_alerts(host)["EmqxNodeDown"]] == ["emqx3@127.0.0.1"]
        finally:
            host.docker("start", "emqx3")
        wait_until(
            lambda: cluster_status(host, "emqx1") == {"running_nodes": node_names(3), "stopped_nodes": []},
            "emqx3 back in the cluster",
            timeout=120,
            interval=1,
        )
        wait_until(lambda: firing_alerts(host) == {}, "every alert cleared", timeout=90, interval=1)
    finally:
        dev.set_config({"metrics": None, "metricsScrapeInterval": None})
        dev.up()
    assert container_names(host, "io.emqx-cluster.role=metrics") == []
    # LISTEN (state 0A) sockets' local ports: neither Nginx's metrics port nor Prometheus's.
    listening = host.run_in_ns("awk '$4 == \"0A\" { print $2 }' /proc/net/tcp").stdout.split()
    assert {int(address.rsplit(":", 1)[1], 16) for address in listening}.isdisjoint({9113, 9090}), listening


def mqtt_through_lb(
    host: E2eHost, dev: PulumiProject, username: str | None, password: str | None, client_id: str | None = None
) -> MqttSession:
    """An MQTT 5 client through the dev stack's load balancer (TLS with the stack's CA)."""
    context = client_context(dev.outputs()["tlsCertificate"])
    return connect_mqtt(
        host.address,
        8884,
        client_id=client_id or f"e2e-{uuid.uuid4().hex[:8]}",
        tls_context=context,
        username=username,
        password=password,
    )


def refusal(host: E2eHost, dev: PulumiProject, username: str | None, password: str | None) -> int:
    """The CONNACK reason code a client gets through the load balancer (0: accepted)."""
    try:
        mqtt_through_lb(host, dev, username, password).close()
    except MqttRefusedError as refused:
        return refused.code
    return 0


def test_3b_only_declared_clients_connect_and_only_to_their_topics(
    dev: PulumiProject, e2e_host_session: E2eHost
) -> None:
    """Secure by default: no anonymous client, no wrong password; the generated dev client (the
    `mqttClient` output, as the README's first connection uses it) may use dev/# only."""
    host = e2e_host_session
    assert refusal(host, dev, None, None) == BAD_USERNAME_OR_PASSWORD  # no password at all
    assert refusal(host, dev, "mallory", "any-password-at-all") == NOT_AUTHORIZED  # no such client
    assert refusal(host, dev, PROBE_USERNAME, "not-the-password-at-all") == BAD_USERNAME_OR_PASSWORD
    generated = dev.outputs()["mqttClient"]
    shown = json.loads(dev.run("stack", "output", "--stack", dev.stack, "--json").stdout)
    assert shown["mqttClient"] == "[secret]"
    client = mqtt_through_lb(host, dev, generated["username"], generated["password"])
    try:
        assert client.subscribe([("dev/#", 1), ("other/#", 1)]) == [1, NOT_AUTHORIZED]
        inside = client.publish("dev/hello", b"first connection", qos=1)
        outside = client.publish("other/hello", b"nope", qos=1)
        assert client.receive(timeout=15).payload == b"first connection"
        assert client.publish_reasons[inside.mid] == 0
        assert client.publish_reasons[outside.mid] == NOT_AUTHORIZED
    finally:
        client.close()


def test_3c_clients_and_rules_change_with_pulumi_up_and_no_node_restarts(
    dev: PulumiProject, e2e_host_session: E2eHost
) -> None:
    """A new password, an added client, a new rule, then a removed client: each applied by
    `pulumi up` through the REST API, no container replaced or restarted."""
    host = e2e_host_session
    started = host.docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *nodes_of(3)).stdout
    generated = dev.outputs()["mqttClient"]
    added = {"username": "e2e-added", "password": "e2e-added-password-0001"}
    new_probe = {"username": PROBE_USERNAME, "password": "e2e-probe-rotated-password"}
    dev.set_secret("mqttClients", [new_probe, added])
    dev.set_config(
        {"mqttAcl": [*DEV_ACL, *PROBE_ACL, {"permission": "allow", "username": DEV_CLIENT, "topics": ["extra/#"]}]}
    )
    try:
        ops = step_ops(dev.preview())
        touched = {name: op for name, op in ops.items() if op != ["same"] and name != "emqx-clients"}
        assert set(touched) == {
            *(f"emqx{i}-access-files" for i in (1, 2, 3)),
            f"emqx-mqtt-client-{PROBE_USERNAME}",
            "emqx-mqtt-client-e2e-added",
            "emqx-mqtt-acl",
        }, touched
        assert touched["emqx-mqtt-client-e2e-added"] == ["create"]
        dev.up()
        assert refusal(host, dev, PROBE_USERNAME, PROBE_PASSWORD) == BAD_USERNAME_OR_PASSWORD
        assert refusal(host, dev, PROBE_USERNAME, new_probe["password"]) == 0
        assert refusal(host, dev, added["username"], added["password"]) == 0
        client = mqtt_through_lb(host, dev, generated["username"], generated["password"])
        try:
            allowed = client.publish("extra/x", b"now allowed", qos=1)
            assert client.publish_reasons[allowed.mid] < 0x80  # 0x10: allowed, nobody subscribed
        finally:
            client.close()

        dev.set_secret("mqttClients", [new_probe])
        dev.up()
        assert refusal(host, dev, added["username"], added["password"]) == NOT_AUTHORIZED
    finally:
        dev.set_secret("mqttClients", probe_secrets()["mqttClients"])
        dev.set_config({"mqttAcl": [*DEV_ACL, *PROBE_ACL]})
        dev.up()
    assert refusal(host, dev, PROBE_USERNAME, PROBE_PASSWORD) == 0
    assert host.docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *nodes_of(3)).stdout == started


def test_4_scale_up_adds_a_node_and_touches_no_existing_container(
    dev: PulumiProject, e2e_host_session: E2eHost
) -> None:
    host = e2e_host_session
    dev.set_config({"nodes": 4})
    preview = dev.preview()
    diff = changed(preview)
    # What the README promises: the new node's dirs, access files, container and membership; the LB (its
    # upstream list); the host tuning and preflight (new ports); the gates re-check.
    created = {name for name, ops in diff.items() if ops == ["create"]}
    assert created == {"emqx4", "emqx4-dirs", "emqx4-access-files", "emqx4-membership"}
    for name in nodes_of(3):
        assert name not in diff, diff
    dev.up()
    assert container_ids(host, nodes_of(3)) == State.ids_at_three
    assert cluster_status(host, "emqx1") == {"running_nodes": node_names(4), "stopped_nodes": []}


def test_5_upgrade_replaces_nodes_wave_by_wave(dev: PulumiProject, e2e_host_session: E2eHost) -> None:
    """Wave by wave, and with QoS 1 traffic on persistent sessions all along: every stopping
    node drains first (docker/emqx/emqx-cluster-drain.erl), so its subscribers move to the other
    nodes and take their sessions over, with what was queued for them. What EMQX 5.8 itself can
    still lose is a message forwarded to the old node while a takeover moves its subscriber:
    routes point there until the move is done, and a node that has no subscriber left drops it
    (emqx_broker.erl forward/4 to the route's node, then `no_subscribers`, :371). Measured here:
    1 message for 2 of 8 subscribers, of 1,552 (12,416 deliveries) in one run."""
    host = e2e_host_session
    context = client_context(dev.outputs()["tlsCertificate"])
    dev.set_config({"emqxVersion": "5.8.7"})
    with (
        qos1_traffic(host.address, 8884, client_context(dev.outputs()["tlsCertificate"]), subscribers=8) as traffic,
        RolloutWatch(host, nodes_of(4), lambda: lb_attempt(host.address, 8884, context, host.address)) as watch,
    ):
        result = dev.up()
    moved = sum(s.connects - 1 for s in traffic.subscribers)
    resumed = sum(s.resumed for s in traffic.subscribers)
    print(
        f"rolling upgrade of 4 nodes in 2 waves: {result.seconds:.1f}s, {len(watch.samples)} samples; "
        f"{traffic.sent} QoS 1 messages sent, {len(traffic.publisher.acknowledged)} acknowledged, "
        f"{moved} subscriber reconnects, {resumed} with the session present"
    )
    acknowledged = traffic.publisher.acknowledged
    lost = sum(len(missing) for missing in traffic.lost().values())
    print(f"lost {lost} of {len(acknowledged) * len(traffic.subscribers)} deliveries: {traffic.lost()}")
    assert len(acknowledged) > 100
    # Every node was replaced, so every subscriber moved at least once, and kept its session
    # every time: without the drain EMQX's own shutdown ends them all (emqx_app.erl prep_stop).
    assert all(s.connects >= 2 for s in traffic.subscribers), [(s.client_id, s.connects) for s in traffic.subscribers]
    assert resumed == moved, (resumed, moved)
    # What a takeover window may drop, and no more: well under 1% of the deliveries, and every
    # subscriber got the last message.
    assert lost * 200 <= len(acknowledged) * len(traffic.subscribers), traffic.lost()
    assert all(max(acknowledged) in s.received for s in traffic.subscribers)
    assert len(watch.samples) > 10
    assert 0 < watch.most_down_at_once <= most_allowed_down(4, 2), watch.samples
    # Wave by wave: whenever nodes are down, they all belong to one wave (odd, or even).
    waves = ({"emqx1", "emqx3"}, {"emqx2", "emqx4"})
    for _, states, _ in watch.samples:
        down = {node for node, state in states.items() if state != "healthy"}
        assert any(down <= wave for wave in waves), states
    assert watch.lb_failures == []
    for name, cid in container_ids(host, nodes_of(3)).items():
        assert cid != State.ids_at_three[name]
    # The 5.8.6 image went once no node used it any more.
    tags = stack_built_tags(host)
    assert tags and all(tag.startswith("5.8.7-") for tag in tags), tags
    # Every node runs the new image (the e2e tier's 5.8.7 is the 5.8.6 release under the next
    # tag, images/emqx-next: the node itself still reports 5.8.6) and is started.
    # The program starts containers by image ID (broker_cluster.py, `image_id`): the ID they
    # run is the built 5.8.7 image's.
    built = host.docker("image", "inspect", "--format", "{{.Id}}", f"emqx-cluster/emqx:{tags[0]}").stdout.strip()
    images = {node: inspect(host, node)[node]["Config"]["Image"] for node in nodes_of(4)}
    assert set(images.values()) == {built}, (built, images)
    statuses = {node: host.docker("exec", node, "/opt/emqx/bin/emqx", "ctl", "status").stdout for node in nodes_of(4)}
    assert all(text.strip().endswith("is started") for text in statuses.values()), statuses
    assert cluster_status(host, "emqx1") == {"running_nodes": node_names(4), "stopped_nodes": []}


def beam_pid(host: E2eHost, container: str) -> int:
    """The host PID of the node's Erlang VM (what an OOM kill would pick). Not any beam.smp:
    every `emqx ctl`, the health check's included, runs a short-lived VM of its own through
    bin/nodetool (a CI run killed one of those, and the node never went down)."""
    table = host.docker("top", container, "-eo", "pid,comm,args").stdout.splitlines()[1:]
    return next(int(line.split()[0]) for line in table if line.split()[1] == "beam.smp" and "nodetool" not in line)


def test_6_a_crashed_node_is_restarted_by_docker_and_rejoins(dev: PulumiProject, e2e_host_session: E2eHost) -> None:
    """A crash under QoS 1 load, not `docker kill`: Docker counts `docker kill` as a manual stop
    and then ignores the restart policy (seen here), as it does for `docker stop`. SIGKILL of the
    node's VM (an OOM kill, a segfault) is what `restart: always` is for; no drain runs. While
    Docker restarts it, its own listener is probed: refused until it can authenticate clients."""
    host = e2e_host_session
    context = client_context(dev.outputs()["tlsCertificate"])
    with ExitStack() as stack, qos1_traffic(host.address, 8884, context, subscribers=8) as traffic:
        # A node with subscribers, survivors elsewhere, and not the publisher's: a crashed
        # publisher's session goes too, and what it had in flight (seen: the last message then
        # went out before the crashed subscribers had subscribed again).
        peers = {node: set(client_peers(host, node)) for node in nodes_of(4)}
        target = next(
            node
            for node, on in peers.items()
            if traffic.publisher.client_id not in on and 0 < sum(s.client_id in on for s in traffic.subscribers) < 8
        )
        before = host.docker("inspect", "--format", "{{.RestartCount}}", target).stdout.strip()
        crashed = [s for s in traffic.subscribers if s.client_id in peers[target]]
        os.kill(beam_pid(host, target), signal.SIGKILL)
        restarting = stack.enter_context(listener_probe(host, target))  # from the crash on
        # Under load, the crashed node's clients reconnect through Nginx to the other nodes (or
        # to it once Docker restarted it). Bounded by a restart and boot (the health check's
        # verdict, 55 s) plus one reconnect that finds a node not yet serving and waits out its
        # keepalive (30 s): what a loaded CI machine takes, not what a client usually sees.
        try:
            wait_until(lambda: all(s.connects >= 2 for s in crashed), "its clients back", timeout=90)
        except WaitTimeoutError as error:
            states = host.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
            raise AssertionError(f"{error}: {[(s.client_id, s.connects) for s in crashed]}; {states}") from None
        wait_until(
            lambda: host.docker("inspect", "--format", "{{.RestartCount}}", target).stdout.strip() != before,
            f"docker to restart {target}",
            timeout=120,
            interval=0.5,
        )
        # Healthy: started, with its listeners open (docker/emqx/emqx-cluster-healthcheck).
        wait_until(
            lambda: health(host, target)[target] == "healthy", f"{target} healthy again", timeout=120, interval=0.5
        )
    # The restarted node refused connections until it could authenticate them, then let the
    # declared client in and refused the others (docker/emqx/emqx-cluster-serve.erl).
    assert wrong_answers(restarting) == {}, restarting
    assert restarting[("declared", ACCEPTED)] and restarting[("declared", "ConnectionRefusedError")], restarting
    print(
        f"crash under load: {traffic.sent} QoS 1 messages sent, {len(traffic.publisher.acknowledged)} acknowledged; "
        f"{len(crashed)} subscribers on the crashed node, lost {sum(len(v) for v in traffic.lost().values())} messages"
    )
    # The other nodes' sessions lost nothing. The crashed node's sessions died with it: EMQX
    # 5.8's open-source sessions live in their channel process (emqx_channel.erl), and a
    # takeover needs the old node running (emqx_cm.erl takeover_session); a clustered durable
    # store is not in this edition (emqx_ds_builtin_local/README.md). So those clients found
    # no session (CONNACK session present 0), subscribed again and got the rest.
    assert set(traffic.lost()) <= {s.client_id for s in crashed}, traffic.lost()
    assert all(s.resumed == 0 for s in crashed), [(s.client_id, s.resumed) for s in crashed]
    last = max(traffic.publisher.acknowledged)
    assert all(last in s.received for s in traffic.subscribers), "a subscriber missed the last message"
    wait_until(
        lambda: cluster_status(host, "emqx1") == {"running_nodes": node_names(4), "stopped_nodes": []},
        f"{target} back in the cluster",
        timeout=120,
        interval=0.5,
    )
    # From its own data dir, without a Pulumi run: the stack has nothing to do.
    assert changed(dev.preview()) == {}


def test_7_scale_down_leaves_the_cluster_before_the_container_goes(
    dev: PulumiProject, e2e_host_session: E2eHost
) -> None:
    host = e2e_host_session
    dev.set_config({"nodes": 3})
    dev.up()
    assert "emqx4" not in container_names(host)
    # Had the container gone without `cluster leave`, the others would list emqx4 as stopped
    # (EMQX keeps a member that went away without leaving): the leave ran while it still answered.
    assert cluster_status(host, "emqx1") == {"running_nodes": node_names(3), "stopped_nodes": []}


def test_10_a_taken_port_fails_preflight_with_its_message(dev: PulumiProject, e2e_host_session: E2eHost) -> None:
    host = e2e_host_session
    port = 61004  # node 4's MQTT port (mqttPortBase + 3)
    # SO_REUSEADDR: emqx4, gone in test 7, can leave its accepted connections in TIME_WAIT on
    # this port for a minute, and a plain bind fails on those (CI saw it: the holder died, the
    # port stayed free and the up passed). Those sockets carry SO_REUSEADDR too (EMQX's listener
    # default, emqx_schema.erl tcp_opts `reuseaddr`), so this bind succeeds beside them, and a
    # listener is what the preflight looks for.
    holder = subprocess.Popen(
        host.nsenter_argv(
            sys.executable,
            "-c",
            "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('127.0.0.1',{port})); s.listen(); print('held', flush=True); time.sleep(300)",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n", f"nothing could listen on port {port}"
        dev.set_config({"nodes": 4})
        failed = dev.run("up", "--stack", dev.stack, "--yes", "--skip-preview", check=False, timeout=900)
    finally:
        holder.kill()
        holder.wait()
        dev.set_config({"nodes": 3})
    assert failed.returncode != 0
    assert f"port {port} (mqtt of emqx4) is already in use on this host" in failed.output, failed.output
    assert "emqx4" not in container_names(host)


def test_9a_a_client_past_max_conns_is_refused_and_the_cluster_stays_healthy(
    dev: PulumiProject, e2e_host_session: E2eHost
) -> None:
    """brokerNofileLimit 1,026: EMQX keeps 1,024, so Nginx caps each of the 3 nodes at 2 clients
    (`max_conns`) and the stack holds 6 (the broker open files decide). The 7th client is refused
    at the edge, no node is marked down or leaves the cluster, and a freed place is taken again."""
    host = e2e_host_session
    previous = dev.run("config", "get", "--stack", dev.stack, f"{NAMESPACE}:brokerNofileLimit").stdout.strip()
    dev.set_config({"brokerNofileLimit": BROKER_RESERVED_FILES + 2})
    held: list[MqttSession] = []
    try:
        dev.up()
        capacity = next(iter(dev.outputs()["capacity"].values()))
        assert (capacity["ceiling"], capacity["decidedBy"]) == (6, "broker open files")
        held += [mqtt_through_lb(host, dev, PROBE_USERNAME, PROBE_PASSWORD) for _ in range(6)]
        with pytest.raises((TimeoutError, OSError)) as refused:
            mqtt_through_lb(host, dev, PROBE_USERNAME, PROBE_PASSWORD).close()
        assert not isinstance(refused.value, MqttRefusedError), "the edge refuses it, not a node's CONNACK"
        assert health(host, *nodes_of(3)) == dict.fromkeys(nodes_of(3), "healthy")
        assert cluster_status(host, "emqx1") == {"running_nodes": node_names(3), "stopped_nodes": []}
        assert all(session.client.is_connected() for session in held)
        held.pop().close()
        held.append(mqtt_through_lb(host, dev, PROBE_USERNAME, PROBE_PASSWORD))
    finally:
        for session in held:
            session.close()
        dev.set_config({"brokerNofileLimit": int(previous)})


def test_9_destroy_removes_containers_and_image_restores_sysctls_keeps_data(
    dev: PulumiProject, e2e_host_session: E2eHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    host = e2e_host_session
    dev.up()  # back to the 3-node state after the refused scale-up, and brokerNofileLimit back
    dev.destroy()
    assert container_names(host) == []
    assert container_names(host, "io.emqx-cluster.role") == []
    # Every broker image the stack built is gone (the 5.8.6 one already when the upgrade ended).
    assert stack_built_tags(host) == []
    assert sysctls(host) == State.sysctls_before
    data_dir = Path(dev.directory.parent / "data")
    for node in nodes_of(3):
        assert (data_dir / node / "data").is_dir(), f"{node}'s data dir must survive destroy (purgeData false)"
    assert dev.resources() == []


# --------------------------------------------------------------------------- prod over SSH


@pytest.fixture(scope="module")
def ssh_client_bin(e2e_host_session: E2eHost, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An `ssh` first on PATH that uses the deploy key and the host's known key, as a user's
    ~/.ssh/config would: the docker provider runs `ssh ... docker system dial-stdio`."""
    assert e2e_host_session.ssh is not None
    directory = tmp_path_factory.mktemp("ssh-bin")
    wrapper = directory / "ssh"
    ssh = shutil.which("ssh") or "/usr/bin/ssh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {ssh} -i {e2e_host_session.ssh.key_file} -o IdentitiesOnly=yes "
        f"-o UserKnownHostsFile={e2e_host_session.ssh.known_hosts_file} -o StrictHostKeyChecking=yes "
        '-o BatchMode=yes "$@"\n'
    )
    wrapper.chmod(0o755)
    return directory


def test_8_prod_like_stack_over_ssh_up_update_destroy(
    bin_dir: Path,
    e2e_host_session: E2eHost,
    ssh_client_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    host = e2e_host_session
    assert host.ssh is not None
    ensure_images(host)  # the dev stack's destroy removed the nginx image it pulled "from the registry"
    root = tmp_path_factory.mktemp("prod-stack")
    authority = trustme.CA()
    issued = authority.issue_cert("mqtt.e2e.internal")
    secrets: dict[str, Any] = {
        "tlsCertificate": "".join(blob.bytes().decode() for blob in issued.cert_chain_pems),
        "tlsPrivateKey": issued.private_key_pem.bytes().decode(),
        "sshPrivateKey": host.ssh.private_key_pem,
    }
    prod = PulumiProject.create(
        root / "project",
        bin_dir,
        stack="prod",
        extra_env={"PATH": f"{ssh_client_bin}:{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    prod.init_stack(prod_like(host, root), {**secrets, **probe_secrets()})
    try:
        prod.up()
        assert health(host, "emqx1", "emqx2") == {"emqx1": "healthy", "emqx2": "healthy"}
        address = host.address
        assert cluster_status(host, "emqx1") == {"running_nodes": node_names(2, address), "stopped_nodes": []}
        context = client_context(authority.cert_pem.bytes().decode())
        assert lb_answers(address, 8883, context, "mqtt.e2e.internal")
        text = json.dumps(prod.export())
        for secret in secrets.values():
            assert not appears_in(secret, text)
        # An update: a load-balancer setting replaces Nginx only.
        prod.set_config({"lbMaxFails": 3})
        diff = changed(prod.preview())
        assert set(diff) == {"emqx-lb"} and "replace" in diff["emqx-lb"], diff
        prod.up()
        assert lb_answers(address, 8883, context, "mqtt.e2e.internal")
    finally:
        prod.destroy()
    assert container_names(host) == []
    for node in ("emqx1", "emqx2"):
        assert not (root / "data" / node).exists(), f"purgeData: true must remove {node}'s dirs"
