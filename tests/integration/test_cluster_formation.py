"""Cluster formation: the declared join / leave / verify commands against a fake `docker`.

The fake answers `docker exec <c> /opt/emqx/bin/emqx ctl cluster join|leave|force-leave|status
--json` with the texts of EMQX 5.8's emqx_mgmt_cli.erl (github.com/emqx/emqx,
apps/emqx_management/src/emqx_mgmt_cli.erl, cluster/1): "Join the cluster successfully.",
"Failed to join the cluster: {node_down,...}" / "{already_in_cluster,...}", "Leave the cluster
successfully.", "Failed to leave the cluster: node_not_in_cluster", "Remove the node from
cluster successfully." and the `--json` status map; `emqx ctl` exits 0 after all of them, so
the scripts must read the text.  Each command string is the one the mocked program declares
for a 3-node, 1-wave stack with joinTimeoutSeconds = 5.
"""

from __future__ import annotations

import itertools
import socket
import subprocess

import pytest

from tests.support.emqx.fake_docker import Call, FakeDocker
from tests.support.program import Operation, Recorded, run_program
from tests.support.stackfiles import throwaway_config

pytestmark = pytest.mark.integration

JOIN_TIMEOUT = 5
N1, N2, N3 = "emqx1@127.0.0.1", "emqx2@127.0.0.1", "emqx3@127.0.0.1"
PERMANENT = "{cannot_join_to_replicant,'emqx1@127.0.0.1'}"


@pytest.fixture(scope="module")
def commands(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recorded]:
    root = tmp_path_factory.mktemp("formation")
    stack = run_program(throwaway_config(root, nodes=3, waves=1, joinTimeoutSeconds=JOIN_TIMEOUT))
    return stack.commands


@pytest.fixture
def fake(fake_docker: FakeDocker) -> FakeDocker:
    """emqx1..3 running, each a cluster of itself."""
    assert fake_docker.add_emqx_containers(3) == [N1, N2, N3]
    return fake_docker


def run(command: Recorded, operation: Operation, fake: FakeDocker) -> subprocess.CompletedProcess[str]:
    return command.run_local(operation, fake.env(), timeout=60)


def joins(fake: FakeDocker, container: str) -> list[Call]:
    return [call for call in fake.ctl_calls(container) if call.ctl_args[:2] == ["cluster", "join"]]


# ------------------------------------------------------------------------------------ join


def test_join_succeeds_on_the_first_attempt(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    result = run(commands["emqx2-membership"], "create", fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} joined {N1} (attempt 1)\n"
    assert [call.ctl_args for call in joins(fake, "emqx2")] == [["cluster", "join", N1]]
    assert fake.members(N1) == [N1, N2]


def test_transient_node_down_is_retried_with_growing_backoff(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    transient = 2
    fake.set_knobs("emqx2", join_failures_before_success=transient)
    result = run(commands["emqx2-membership"], "create", fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} joined {N1} (attempt {transient + 1})\n"

    attempts = joins(fake, "emqx2")
    assert len(attempts) == transient + 1
    assert [call.stdout.splitlines()[0] for call in attempts] == [
        *[f"Failed to join the cluster: {{node_down,'{N1}'}}"] * transient,
        "Join the cluster successfully.",
    ]
    # The waits double (1 s, then 2 s): lower bounds only, so a slow machine cannot fail this,
    # while a fixed delay (or none) would.
    gaps = [later.mono - earlier.mono for earlier, later in itertools.pairwise(attempts)]
    assert [gap >= 0.95 * 2**i for i, gap in enumerate(gaps)] == [True] * transient, gaps
    assert fake.members(N1) == [N1, N2]


def test_already_in_cluster_counts_as_success(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    fake.form_cluster(N1, N2)
    result = run(commands["emqx2-membership"], "create", fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} is already in the cluster of {N1}\n"
    (attempt,) = joins(fake, "emqx2")
    assert "already_in_cluster" in attempt.stdout
    assert fake.members(N1) == [N1, N2]


def test_update_is_the_same_idempotent_join(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    """A replaced container re-runs the join as an update; it must not leave or fail."""
    membership = commands["emqx2-membership"]
    assert membership.operation_script("update") == membership.operation_script("create")
    assert run(membership, "update", fake).returncode == 0
    assert run(membership, "update", fake).returncode == 0
    assert [call.ctl_args[1] for call in fake.ctl_calls("emqx2")] == ["join", "join"]
    assert fake.members(N1) == [N1, N2]


def test_permanent_join_failure_gives_up_at_the_deadline_naming_node_and_error(
    commands: dict[str, Recorded], fake: FakeDocker
) -> None:
    fake.set_knobs("emqx3", join_permanent_error=PERMANENT)
    result = run(commands["emqx3-membership"], "create", fake)
    attempts = joins(fake, "emqx3")
    assert result.returncode == 1
    headline, action = result.stderr.splitlines()
    assert headline == (
        f"{N3} (container emqx3 on {socket.gethostname()}) could not join {N1} after {len(attempts)} attempts; "
        f"last error: Failed to join the cluster: {PERMANENT}"
    )
    assert action.startswith(f"Check that {N1} runs and both nodes reach each other's cluster ports")
    assert "emqx-cluster:joinTimeoutSeconds" in action
    assert len(attempts) >= 2  # it did retry
    # Bounded by joinTimeoutSeconds: a new wait only starts before the deadline, so every attempt
    # but the last began within JOIN_TIMEOUT s of the first (deterministic: the deadline is fixed).
    assert attempts[-2].mono - attempts[0].mono < JOIN_TIMEOUT + 1
    assert fake.members(N1) == [N1]
    assert fake.members(N3) == [N3]


# ------------------------------------------------------------------------------ verify gate


def test_gate_fails_listing_the_node_that_is_not_running(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    fake.form_cluster(N1, N2, N3)
    fake.set_knobs("emqx1", status_hides=[N3])  # the seed sees emqx3 as stopped
    result = run(commands["wave1-verify"], "create", fake)
    assert result.returncode == 1
    headline, action, details = result.stderr.split("\n", 2)
    assert headline.startswith("wave 1: cluster verification failed; not running:")
    assert headline.split("not running:")[1].split() == [N3]  # only the missing node is listed
    assert "docker logs <container>" in action and "scripts/verify-cluster" in action
    assert details.startswith(f'(running_nodes=["{N1}","{N2}"] stopped_nodes=["{N3}"]; raw: ')
    statuses = [call for call in fake.ctl_calls("emqx1") if call.ctl_args == ["cluster", "status", "--json"]]
    assert len(statuses) >= 2  # retried until the deadline
    assert statuses[-2].mono - statuses[0].mono < JOIN_TIMEOUT + 1


def test_gate_passes_when_every_expected_node_is_running(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    fake.form_cluster(N1, N2, N3)
    result = run(commands["wave1-verify"], "create", fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wave 1: all 3 expected nodes are running in the cluster\n"
    assert [call.ctl_args for call in fake.ctl_calls()] == [["cluster", "status", "--json"]]


# ------------------------------------------------------------------------------------ leave


def test_delete_makes_the_node_leave_the_cluster(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    fake.form_cluster(N1, N2, N3)
    result = run(commands["emqx2-membership"], "delete", fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} left the cluster\n"
    assert [(call.exec_container, call.ctl_args) for call in fake.ctl_calls()] == [("emqx2", ["cluster", "leave"])]
    assert fake.members(N1) == [N1, N3]
    assert fake.members(N2) == [N2]


def test_delete_of_a_node_not_in_a_cluster_succeeds(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    result = run(commands["emqx2-membership"], "delete", fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{N2} was not in a cluster\n"


def test_delete_of_a_stopped_node_force_leaves_it_from_the_seed(
    commands: dict[str, Recorded], fake: FakeDocker
) -> None:
    fake.form_cluster(N1, N2, N3)
    fake.set_running("emqx2", False)
    result = run(commands["emqx2-membership"], "delete", fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{N2} was removed from the cluster by force-leave (")
    leave, force_leave = fake.ctl_calls()
    assert (leave.exec_container, leave.ctl_args, leave.rc) == ("emqx2", ["cluster", "leave"], 1)  # not running
    assert (force_leave.exec_container, force_leave.ctl_args) == ("emqx1", ["cluster", "force-leave", N2])
    assert fake.members(N1) == [N1, N3]


def test_delete_fails_when_neither_leave_nor_force_leave_works(commands: dict[str, Recorded], fake: FakeDocker) -> None:
    fake.form_cluster(N1, N2, N3)
    fake.set_running("emqx2", False)
    fake.set_knobs("emqx1", force_leave_permanent_error="timeout")
    result = run(commands["emqx2-membership"], "delete", fake)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{N2} could not leave the cluster: ")
    assert "force-leave: Failed to remove the node from cluster: timeout" in result.stderr
    assert fake.members(N1) == [N1, N2, N3]
