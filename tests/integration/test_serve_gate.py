"""A node lets MQTT clients in only while it can authenticate them, on REAL EMQX 5.8.6 nodes run
under the broker image's entrypoint (docker/emqx, as the containers run it; tests/support/
emqx_nodes.py): while it boots and while a join reboots its apps, its listener refuses
connections; then it answers as a booted node does. EMQX's own boot opens the listener first and
lets anyone in until its authentication app runs (docker/emqx/emqx-cluster-serve.erl). Three
clients CONNECT over and over all along: the declared one, one without credentials, one of an
unknown user (tests/support/serve_probe.py). The containers' health check says whether a node
serves."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest

from components.broker_cluster import HEALTHCHECK
from tests.support.emqx_nodes import ReleaseCluster, ReleaseNode, release_cluster, release_stack
from tests.support.ports import wait_until
from tests.support.serve_probe import ACCEPTED, BAD_CREDENTIALS, NOT_AUTHORIZED, ServeProbe, serve_probe, wrong_answers

pytestmark = pytest.mark.integration

USERNAME, PASSWORD = "alice", "alice-password-0123456789"
REFUSED = "ConnectionRefusedError"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseCluster]:
    stack = release_stack(
        tmp_path_factory.mktemp("serve-gate"),
        nodes=2,
        mqttClients=json.dumps([{"username": USERNAME, "password": PASSWORD}]),
    )
    with release_cluster(stack, start=False) as cluster:
        yield cluster


def probing(node: ReleaseNode) -> AbstractContextManager[ServeProbe]:
    return serve_probe(*node.mqtt_address, USERNAME, PASSWORD)


def served_after(probe: ServeProbe, before: Counter[tuple[str, str]]) -> bool:
    """The declared client was let in since `before`, and the others refused as a booted node does."""
    new = probe.counts - before
    return all(
        new[answer] for answer in (("declared", ACCEPTED), ("anonymous", BAD_CREDENTIALS), ("unknown", NOT_AUTHORIZED))
    )


def health_check(cluster: ReleaseCluster, node: ReleaseNode) -> tuple[int, str]:
    """The containers' declared health check, run as Docker runs it (`docker exec`, here the
    shim onto the node's copy): its exit code and what it printed."""
    done = subprocess.run(
        ["docker", "exec", node.container, *HEALTHCHECK.test[1:]],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout.strip()


def test_0_a_node_whose_listener_cannot_start_stops(cluster: ReleaseCluster) -> None:
    """As EMQX's own boot does when a listener cannot start: exit status 1, the reason logged."""
    node = cluster.node(1)
    with socket.create_server(node.mqtt_address):
        node.start(through_entrypoint=True)
        assert node.process is not None
        assert node.process.wait(timeout=120) == 1, node.console_tail()
    assert f"Failed to start listener tcp:default on {node.plan.mqtt_endpoint}: " in node.console_tail(80)
    assert "eaddrinuse" in node.console_tail(80)


def test_1_a_booting_node_refuses_connections_until_it_can_authenticate(cluster: ReleaseCluster) -> None:
    node = cluster.node(1)
    with probing(node) as probe:
        node.start(through_entrypoint=True)
        wait_until(lambda: served_after(probe, Counter()), "the booted node's answers", timeout=120, interval=0.2)
        time.sleep(1)
    assert wrong_answers(probe.counts) == {}, probe.counts
    assert health_check(cluster, node) == (0, "serving")


def test_2_a_joining_node_closes_its_listener_until_its_apps_run_again(cluster: ReleaseCluster) -> None:
    seed, node = cluster.node(1), cluster.node(2)
    assert health_check(cluster, node)[0] != 0  # not running
    with probing(node) as probe:
        node.start(through_entrypoint=True)
        wait_until(lambda: served_after(probe, Counter()), "node 2 serving alone", timeout=120, interval=0.2)
        before_join = Counter(probe.counts)
        joined = node.ctl("cluster", "join", seed.name)
        assert "Join the cluster successfully" in joined.stdout, joined
        wait_until(lambda: served_after(probe, before_join), "node 2 serving again", timeout=60, interval=0.2)
    during_join = probe.counts - before_join
    assert wrong_answers(probe.counts) == {}, probe.counts
    assert during_join[("declared", REFUSED)], during_join  # closed while its apps restarted
    assert seed.cluster_status()["running_nodes"] == sorted([seed.name, node.name])


def test_3_a_started_node_with_a_closed_listener_is_unhealthy(cluster: ReleaseCluster) -> None:
    node = cluster.node(2)
    assert health_check(cluster, node) == (0, "serving")
    assert "successfully" in node.ctl("listeners", "stop", "tcp:default").stdout
    try:
        assert health_check(cluster, node) == (1, "{listeners_closed,['tcp:default']}")
    finally:
        assert "successfully" in node.ctl("listeners", "start", "tcp:default").stdout
    assert health_check(cluster, node) == (0, "serving")
