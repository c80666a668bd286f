"""Cluster formation: the program's join, gate and leave commands, and the eviction script, run
against three REAL EMQX 5.8.6 nodes (tests/support/emqx_nodes.py: the release run without Docker,
each node with the environment the program renders for its container).

The commands are the ones the mocked program declares for a 3-node, 1-wave stack on those nodes'
ports, run as the provider runs them with a `docker` on PATH that maps `docker exec <container>`
onto the node of that container name (tests/support/emqx_docker.py; it logs every call, with
its monotonic start and end). EMQX answers with its own texts (emqx_mgmt_cli.erl:101-147 at
v5.8.6: "Join the cluster successfully.", "Failed to join the cluster: {node_down,...}" /
"{already_in_cluster,...}", "Leave the cluster successfully.", "Failed to leave the cluster:
node_not_in_cluster", "Remove the node from cluster successfully.", the `--json` status) and
exits 0 after each (bin/nodetool:142-152 rpc_infinity halts 0 on `ok`, which cluster/1
returns), so the scripts must read the text. Each test first brings the nodes to the state it
needs (`ReleaseCluster.arrange`): a node is stopped and started for real.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.render.cluster_scripts import evict_script
from tests.support.emqx.fake_docker import FakeDocker
from tests.support.emqx_nodes import DockerCall, ReleaseCluster, release_cluster, release_stack
from tests.support.ports import wait_until
from tests.support.program import Operation, Recorded, run_program
from tests.support.stackfiles import with_changes

pytestmark = pytest.mark.integration

JOIN_TIMEOUT = 5  # the gate and a join that cannot succeed give up after this long
PATIENT_TIMEOUT = 60  # long enough for the seed to boot while a join retries
N1, N2, N3 = "emqx1@127.0.0.1", "emqx2@127.0.0.1", "emqx3@127.0.0.1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return release_stack(tmp_path_factory.mktemp("formation"), nodes=3, joinTimeoutSeconds=JOIN_TIMEOUT)


@pytest.fixture(scope="module")
def commands(stack: dict[str, Any]) -> dict[str, Recorded]:
    return run_program(stack).commands


@pytest.fixture(scope="module")
def patient(stack: dict[str, Any]) -> dict[str, Recorded]:
    """The same stack with a join deadline the seed's boot fits in."""
    return run_program(with_changes(stack, joinTimeoutSeconds=PATIENT_TIMEOUT)).commands


@pytest.fixture(scope="module")
def nodes(stack: dict[str, Any]) -> Iterator[ReleaseCluster]:
    with release_cluster(stack) as cluster:
        assert [node.name for node in cluster.nodes] == [N1, N2, N3]
        yield cluster


@pytest.fixture
def cluster(nodes: ReleaseCluster) -> ReleaseCluster:
    nodes.clear_calls()
    return nodes


def run(command: Recorded, operation: Operation, cluster: ReleaseCluster) -> Any:
    cluster.clear_calls()
    return command.run_local(operation, cluster.env(), timeout=180)


def joins(cluster: ReleaseCluster, container: str) -> list[DockerCall]:
    return [call for call in cluster.ctl_calls(container) if call.ctl_args[:2] == ["cluster", "join"]]


def seed_view(cluster: ReleaseCluster) -> dict[str, list[str]]:
    return cluster.node(1).cluster_status()


def test_the_nodes_are_the_real_emqx_release(cluster: ReleaseCluster) -> None:
    node = cluster.node(1)
    otp = node.emqx("eval", "erlang:system_info(otp_release).")
    assert otp.stdout.strip() == '"26"', otp
    assert node.ctl("status").stdout == f"Node '{N1}' 5.8.6 is started\n"


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP (address, port) pairs process `pid` listens on, as `ss` reports them."""
    table = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in table.splitlines():
        if f"pid={pid}," in line:
            address, _, port = line.split()[3].rpartition(":")
            found.add((address, int(port)))
    return found


def test_each_node_listens_only_where_the_plan_says(cluster: ReleaseCluster) -> None:
    """The program's environment on one host: every socket on the node address or loopback, on its
    planned port (distribution 4370 + N via ERL_AFLAGS, gen_rpc 5370 + N, MQTT, dashboard), the
    image's default listeners (ssl 8883, ws 8083, wss 8084) off."""
    cluster.arrange()
    for node in cluster.nodes:
        assert node.process is not None
        ports = node.plan.ports
        assert listening(node.process.pid) == {
            ("127.0.0.1", ports.distribution),
            ("127.0.0.1", ports.rpc),
            ("127.0.0.1", ports.mqtt),
            ("127.0.0.1", ports.dashboard),
        }, node.name


# What the scripts read, in both worlds: (container, ctl arguments, whole output compared?).
CONFORMANCE = [
    ("emqx2", ["cluster", "join", N1], False),  # EMQX's `Cluster status: ~p` after it wraps lines
    ("emqx2", ["cluster", "join", N1], True),
    ("emqx1", ["cluster", "status", "--json"], True),
    ("emqx2", ["cluster", "leave"], False),
    ("emqx2", ["cluster", "leave"], True),
    ("emqx1", ["cluster", "force-leave", N2], True),
]


def test_the_fake_docker_kept_for_the_rollout_answers_as_real_emqx(
    cluster: ReleaseCluster, fake_docker: FakeDocker
) -> None:
    """tests/integration/test_rollout_order.py runs whole stacks against the fake docker (real
    nodes would take minutes there): its `emqx ctl` answers must be these nodes' own."""
    cluster.arrange()
    for index in (1, 2, 3):
        fake_docker.add_container(f"emqx{index}", cluster.node(index).name)
    env = cluster.env()
    for container, args, whole in CONFORMANCE:
        argv = ["docker", "exec", container, "/opt/emqx/bin/emqx", "ctl", *args]
        real = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        fake = subprocess.run(argv, env=fake_docker.env(), capture_output=True, text=True, timeout=60)
        seen = (fake.returncode, fake.stdout if whole else fake.stdout.splitlines()[0], fake.stderr)
        assert seen == (real.returncode, real.stdout if whole else real.stdout.splitlines()[0], real.stderr), args


# The tests run in this order, each from the state the one before leaves where it can: starting
# and stopping a node takes seconds.

# ------------------------------------------------------------------------------------ join


def test_join_succeeds_on_the_first_attempt(commands: dict[str, Recorded], cluster: ReleaseCluster) -> None:
    cluster.arrange()
    result = run(commands["emqx2-membership"], "create", cluster)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} joined {N1} (attempt 1)\n"
    assert [call.ctl_args for call in joins(cluster, "emqx2")] == [["cluster", "join", N1]]
    assert seed_view(cluster) == {"running_nodes": [N1, N2], "stopped_nodes": []}


def test_already_in_cluster_counts_as_success(commands: dict[str, Recorded], cluster: ReleaseCluster) -> None:
    cluster.arrange(members=[2])
    result = run(commands["emqx2-membership"], "create", cluster)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} is already in the cluster of {N1}\n"
    (attempt,) = joins(cluster, "emqx2")
    assert attempt.stdout == f"Failed to join the cluster: {{already_in_cluster,'{N1}'}}\n"
    assert seed_view(cluster) == {"running_nodes": [N1, N2], "stopped_nodes": []}


def test_update_is_the_same_idempotent_join(commands: dict[str, Recorded], cluster: ReleaseCluster) -> None:
    """A replaced container re-runs the join as an update; it must not leave or fail."""
    cluster.arrange()
    membership = commands["emqx2-membership"]
    assert membership.operation_script("update") == membership.operation_script("create")
    first = run(membership, "update", cluster)
    assert first.stdout == f"{N2} joined {N1} (attempt 1)\n", first.stderr
    again = run(membership, "update", cluster)
    assert again.stdout == f"{N2} is already in the cluster of {N1}\n", again.stderr
    assert [call.ctl_args[1] for call in cluster.ctl_calls("emqx2")] == ["join"]  # the second run's only
    assert seed_view(cluster) == {"running_nodes": [N1, N2], "stopped_nodes": []}


# ------------------------------------------------------------------ verify gate, eviction


def test_gate_passes_when_every_expected_node_is_running(
    commands: dict[str, Recorded], cluster: ReleaseCluster
) -> None:
    cluster.arrange(members=[2, 3])
    result = run(commands["wave1-verify"], "create", cluster)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wave 1: all 3 expected nodes are running in the cluster\n"
    assert [(call.exec_container, call.ctl_args) for call in cluster.ctl_calls()] == [
        ("emqx1", ["cluster", "status", "--json"])
    ]


def evict(cluster: ReleaseCluster, node: str) -> Any:
    """The eviction script (a node of another host, run on the seed's host) for `node`: the
    program declares it with several hosts only; the same renderer, the same seed container."""
    cluster.clear_calls()
    script = evict_script("emqx1", node)
    return subprocess.run(["/bin/sh", "-c", script], env=cluster.env(), capture_output=True, text=True, timeout=60)


def test_eviction_leaves_a_running_member_alone(cluster: ReleaseCluster) -> None:
    cluster.arrange(members=[2, 3])
    result = evict(cluster, N3)
    assert (result.returncode, result.stdout) == (0, f"{N3} runs: it stays, or leaves by itself\n")
    assert [call.ctl_args for call in cluster.ctl_calls()] == [["cluster", "status", "--json"]]


def test_delete_makes_the_node_leave_the_cluster(commands: dict[str, Recorded], cluster: ReleaseCluster) -> None:
    cluster.arrange(members=[2, 3])
    result = run(commands["emqx2-membership"], "delete", cluster)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} left the cluster\n"
    assert [(call.exec_container, call.ctl_args) for call in cluster.ctl_calls()] == [("emqx2", ["cluster", "leave"])]
    assert seed_view(cluster) == {"running_nodes": [N1, N3], "stopped_nodes": []}
    assert cluster.node(2).cluster_status() == {"running_nodes": [N2], "stopped_nodes": []}


def test_delete_of_a_node_not_in_a_cluster_succeeds(commands: dict[str, Recorded], cluster: ReleaseCluster) -> None:
    cluster.arrange(members=[3])
    result = run(commands["emqx2-membership"], "delete", cluster)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} was not in a cluster\n"


def test_gate_fails_listing_the_node_that_is_not_running(
    commands: dict[str, Recorded], cluster: ReleaseCluster
) -> None:
    cluster.arrange(members=[2, 3], stopped=[3])  # the seed lists emqx3 as a stopped member
    started = time.monotonic()
    result = run(commands["wave1-verify"], "create", cluster)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    headline, action, details = result.stderr.split("\n", 2)
    assert headline == f"wave 1: cluster verification failed; not running: {N3}"
    assert "docker logs <container>" in action and "scripts/verify-cluster" in action
    assert details.startswith(f'(running_nodes=["{N1}","{N2}"] stopped_nodes=["{N3}"]; raw: {{')
    statuses = [call for call in cluster.ctl_calls("emqx1") if call.ctl_args == ["cluster", "status", "--json"]]
    assert elapsed >= JOIN_TIMEOUT  # retried until the deadline, and no longer
    assert all(status.start - statuses[0].start < JOIN_TIMEOUT + 1 for status in statuses[:-1])


def test_eviction_forces_out_a_stopped_member_and_nothing_else(cluster: ReleaseCluster) -> None:
    cluster.arrange(members=[2, 3], stopped=[3])
    result = evict(cluster, N3)
    assert (result.returncode, result.stdout) == (0, f"{N3} was forced out of the cluster from the seed\n"), result
    forced = cluster.ctl_calls()[-1]
    assert forced.ctl_args == ["cluster", "force-leave", N3]
    assert forced.stdout.startswith("Remove the node from cluster successfully.\n")
    assert seed_view(cluster) == {"running_nodes": [N1, N2], "stopped_nodes": []}
    again = evict(cluster, N3)
    assert (again.returncode, again.stdout) == (0, f"{N3} is not in the cluster\n")


# ------------------------------------------------------------------- leave of a stopped node


def test_delete_of_a_stopped_node_force_leaves_it_from_the_seed(
    commands: dict[str, Recorded], cluster: ReleaseCluster
) -> None:
    cluster.arrange(members=[2], stopped=[2, 3])
    result = run(commands["emqx2-membership"], "delete", cluster)
    assert result.returncode == 0, result.stderr
    leave, force_leave = cluster.calls()
    assert (leave.exec_container, leave.ctl_args, leave.rc) == ("emqx2", ["cluster", "leave"], 1)  # not running
    assert leave.stderr.startswith("Error response from daemon: container ") and "is not running" in leave.stderr
    assert result.stdout == f"{N2} was removed from the cluster by force-leave ({leave.stderr.strip()})\n"
    assert (force_leave.exec_container, force_leave.ctl_args) == ("emqx1", ["cluster", "force-leave", N2])
    assert seed_view(cluster) == {"running_nodes": [N1], "stopped_nodes": []}


def test_delete_of_a_stopped_node_the_seed_no_longer_lists_succeeds(
    commands: dict[str, Recorded], cluster: ReleaseCluster
) -> None:
    """Stopped and not a member (it never joined, or an eviction forced it out already): EMQX's
    force-leave answers node_not_in_cluster, and there is nothing left to remove."""
    cluster.arrange(stopped=[2, 3])
    result = run(commands["emqx2-membership"], "delete", cluster)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{N2} was not in the cluster (Error response from daemon: container ")
    force_leave = cluster.calls()[-1]
    assert force_leave.stdout == "Failed to remove the node from cluster: node_not_in_cluster\n"


# ------------------------------------------------------------------------- join, seed down


def test_a_join_that_cannot_succeed_gives_up_at_the_deadline_naming_node_and_error(
    commands: dict[str, Recorded], cluster: ReleaseCluster
) -> None:
    cluster.arrange(stopped=[1, 2])  # the seed never answers
    started = time.monotonic()
    result = run(commands["emqx3-membership"], "create", cluster)
    elapsed = time.monotonic() - started
    attempts = joins(cluster, "emqx3")
    assert result.returncode == 1
    headline, action = result.stderr.splitlines()
    assert headline == (
        f"{N3} (container emqx3 on {socket.gethostname()}) could not join {N1} after {len(attempts)} attempts; "
        f"last error: Failed to join the cluster: {{node_down,'{N1}'}}"
    )
    assert action.startswith(f"Check that {N1} runs and both nodes reach each other's cluster ports")
    assert "emqx-cluster:joinTimeoutSeconds" in action
    # It retried until the deadline (how often depends on how long each `emqx ctl` takes here),
    # and no longer: a new wait only starts before the deadline, so every attempt but the last
    # began within JOIN_TIMEOUT s of the first.
    assert elapsed >= JOIN_TIMEOUT
    assert all(attempt.start - attempts[0].start < JOIN_TIMEOUT + 1 for attempt in attempts[:-1])


def test_a_seed_still_booting_is_waited_for_with_growing_backoff(
    patient: dict[str, Recorded], cluster: ReleaseCluster
) -> None:
    cluster.arrange(stopped=[1, 2])
    outcome: list[Any] = []
    joining = threading.Thread(target=lambda: outcome.append(run(patient["emqx3-membership"], "create", cluster)))
    joining.start()
    wait_until(lambda: joins(cluster, "emqx3"), "a first join attempt", timeout=30, interval=0.2)
    started = time.monotonic()
    cluster.start(cluster.node(1))
    joining.join(PATIENT_TIMEOUT + 30)
    (result,) = outcome
    assert result.returncode == 0, result.stderr
    attempts = joins(cluster, "emqx3")
    assert result.stdout == f"{N3} joined {N1} (attempt {len(attempts)})\n"
    assert len(attempts) >= 3, [a.stdout for a in attempts]
    assert attempts[0].stdout == f"Failed to join the cluster: {{node_down,'{N1}'}}\n"
    assert all(a.stdout.startswith("Failed to join the cluster: ") for a in attempts[:-1])
    assert attempts[-1].stdout.startswith("Join the cluster successfully.\n")
    assert attempts[-1].start > started
    # The waits between attempts double (1 s, 2 s, 4 s, ...): lower bounds only, so a slow
    # machine cannot fail this, while a fixed delay (or none) would.
    gaps = [later.start - earlier.end for earlier, later in itertools.pairwise(attempts)]
    assert [gap >= 0.95 * 2**i for i, gap in enumerate(gaps)] == [True] * len(gaps), gaps
    assert seed_view(cluster) == {"running_nodes": [N1, N3], "stopped_nodes": []}


def test_delete_fails_when_neither_leave_nor_force_leave_works(
    commands: dict[str, Recorded], cluster: ReleaseCluster
) -> None:
    cluster.arrange(members=[3], stopped=[1, 2, 3])  # the node and the seed both down
    result = run(commands["emqx3-membership"], "delete", cluster)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{N3} could not leave the cluster: Error response from daemon: container ")
    assert "; force-leave: Error response from daemon: container " in result.stderr
