"""Rollout in waves: the declared resources executed in the engine's order against a fake docker.

The engine (tests/support/engine.py) walks the mocked program's resources in dependency order,
as `pulumi up` would, creating broker containers in the fake docker world (EMQX 5.8's rules
apply) and running every command's real `create` / `update` / `delete` string.

Stacks use manageSysctls: false (the sysctl script is exercised in test_host_tuning.py, inside
a network namespace) and ports outside ipLocalPortRange, so the real preflight runs too.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from components.plan import DISTRIBUTION_PORT_BASE, RPC_PORT_BASE
from tests.support.emqx.fake_docker import FakeDocker, locked_state
from tests.support.engine import Engine, RolloutFailedError, Step
from tests.support.graph import RolloutGraph
from tests.support.ports import busy_ports, free_port, free_port_block
from tests.support.program import ProgramRun, run_program
from tests.support.stackfiles import throwaway_config, with_changes

pytestmark = pytest.mark.integration

JOIN_TIMEOUT = 5
NODES = 5
SEED = "emqx1@127.0.0.1"
WAVE1 = ("emqx1", "emqx3", "emqx5")  # round-robin waves: odd indexes first
WAVE2 = ("emqx2", "emqx4")
PERMANENT = "{cannot_join_to_replicant,'emqx1@127.0.0.1'}"


def node(container: str) -> str:
    return f"{container}@127.0.0.1"


# ------------------------------------------------------------------------------------ stacks


@pytest.fixture(scope="module")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """5 nodes in 2 waves on free ports, no sysctls, paths in a throwaway dir."""
    fixed = [base + index for base in (DISTRIBUTION_PORT_BASE, RPC_PORT_BASE) for index in range(1, NODES + 1)]
    taken = busy_ports(fixed)
    if taken:
        pytest.skip(f"ports {taken} are in use on this host: the real preflight would (rightly) fail")
    mqtt = free_port_block(NODES)
    dashboard = free_port_block(NODES, avoid=set(range(mqtt, mqtt + NODES)))
    lb = free_port()
    while lb in range(mqtt, mqtt + NODES) or lb in range(dashboard, dashboard + NODES):
        lb = free_port()
    return throwaway_config(
        tmp_path_factory.mktemp("rollout"),
        nodes=NODES,
        waves=2,
        joinTimeoutSeconds=JOIN_TIMEOUT,
        manageSysctls=False,
        # Every planned port (4371+, 5371+ and the kernel-picked ones above) lies outside this range.
        ipLocalPortRange="1024 4000",
        mqttPortBase=mqtt,
        dashboardPortBase=dashboard,
        lbPort=lb,
    )


@pytest.fixture(scope="module")
def v1(base_config: dict[str, Any]) -> ProgramRun:
    return run_program(base_config)


@pytest.fixture(scope="module")
def v2(base_config: dict[str, Any]) -> ProgramRun:
    """The same stack one EMQX patch release later."""
    return run_program(with_changes(base_config, emqxVersion="5.8.7"))


@pytest.fixture
def root(base_config: dict[str, Any]) -> Path:
    """The stack's data dir, emptied for each test (the module shares the config)."""
    data = Path(base_config["emqx-cluster:dataDir"])
    shutil.rmtree(data, ignore_errors=True)
    return data


# ----------------------------------------------------------------------------------- helpers


def names(steps: list[Step], op: str | None = None) -> list[str]:
    return [s.name for s in steps if op is None or s.op == op]


def index_of(steps: list[Step], name: str, op: str | None = None) -> int:
    matches = [i for i, s in enumerate(steps) if s.name == name and (op is None or s.op == op)]
    assert len(matches) == 1, (name, op, [(s.op, s.name) for s in steps])
    return matches[0]


def running_in_status(stdout: str) -> set[str]:
    return set(json.loads(stdout)["running_nodes"])


def assert_wave2_starts_after_wave1_gate_passed(fake: FakeDocker, steps: list[Step]) -> None:
    """From the call log: the first ctl call into a wave-2 node follows wave 1's passing gate."""
    gate = steps[index_of(steps, "wave1-verify")]
    assert gate.result is not None and gate.result.returncode == 0
    calls = fake.calls()
    first_wave2 = min(i for i, call in enumerate(calls) if call.ctl_args and call.exec_container in WAVE2)
    gate_first, gate_end = gate.calls
    assert gate_end <= first_wave2
    last_status = calls[gate_end - 1]
    assert last_status.ctl_args == ["cluster", "status", "--json"] and last_status.exec_container == "emqx1"
    assert running_in_status(last_status.stdout) >= {node(c) for c in WAVE1}
    assert last_status.mono <= calls[first_wave2].mono
    assert gate_first < gate_end


# ------------------------------------------------------------------------------------- tests


def test_five_nodes_in_two_waves_form_one_verified_cluster(fake_docker: FakeDocker, v1: ProgramRun, root: Path) -> None:
    engine = Engine(fake_docker)
    steps = engine.up(v1)

    assert fake_docker.clusters() == [sorted(node(f"emqx{i}") for i in range(1, NODES + 1))]
    gates = [s for s in steps if s.name.endswith("-verify")]
    assert [g.name for g in gates] == ["wave1-verify", "wave2-verify"]
    assert [g.result.stdout for g in gates if g.result is not None] == [
        "wave 1: all 3 expected nodes are running in the cluster\n",
        "wave 2: all 5 expected nodes are running in the cluster\n",
    ]
    # Wave 2's dirs and containers exist only after wave 1's gate.
    gate1 = index_of(steps, "wave1-verify")
    for container in WAVE2:
        assert index_of(steps, f"{container}-dirs") > gate1
        assert index_of(steps, container) > gate1
    for container in WAVE1:
        assert index_of(steps, container) < gate1
    assert index_of(steps, "emqx-preflight-check") < min(index_of(steps, c) for c in (*WAVE1, *WAVE2))
    assert_wave2_starts_after_wave1_gate_passed(fake_docker, steps)
    for i in range(1, NODES + 1):
        assert (root / f"emqx{i}" / "data").is_dir()
    # Once the whole cluster is verified: the declared client and the topic rules, through the
    # seed's REST API with the API key its access files hold.
    assert index_of(steps, "emqx-mqtt-client-dev-client") > index_of(steps, "wave2-verify")
    with locked_state(fake_docker.state_path) as state:
        assert [user["user_id"] for user in state["authn_users"]] == ["dev-client"]
        assert state["authz_rules"].rstrip().endswith("{deny, all}.")


def test_upgrade_replaces_wave_by_wave_and_updates_memberships_without_leaving(
    fake_docker: FakeDocker, v1: ProgramRun, v2: ProgramRun, root: Path
) -> None:
    engine = Engine(fake_docker)
    engine.up(v1)
    fake_docker.clear_calls()

    steps = engine.up(v2, v1)

    brokers = [*WAVE1, *WAVE2]
    assert sorted(names(steps, "replace")) == sorted([*brokers, "emqx-broker-image-build"])
    memberships = [f"{c}-membership" for c in brokers if c != "emqx1"]
    assert sorted(names(steps, "update")) == sorted([*memberships, "wave1-verify", "wave2-verify"])
    assert not [s for s in steps if s.name.endswith("-membership") and s.op != "update"]
    assert not [
        c for c in fake_docker.ctl_calls() if c.ctl_args[:2] in (["cluster", "leave"], ["cluster", "force-leave"])
    ]

    # Per wave: its containers are replaced, then their memberships re-join, then the gate; wave 2 after.
    gate1, gate2 = index_of(steps, "wave1-verify"), index_of(steps, "wave2-verify")
    for container in WAVE1:
        assert index_of(steps, container, "replace") < gate1
        if container != "emqx1":
            assert index_of(steps, container, "replace") < index_of(steps, f"{container}-membership") < gate1
    for container in WAVE2:
        assert gate1 < index_of(steps, container, "replace") < index_of(steps, f"{container}-membership") < gate2
    assert_wave2_starts_after_wave1_gate_passed(fake_docker, steps)
    assert fake_docker.clusters() == [sorted(node(c) for c in brokers)]
    # The old image goes only once every node has moved to the new one.
    old_image = v1.named("emqx1").inputs["image"]
    assert old_image != v2.named("emqx1").inputs["image"]
    # (the provider removes the old image's name when it deletes the replaced RemoteImage)
    assert index_of(steps, "emqx-broker-image-build", "delete") > gate2


def test_the_schedule_does_not_depend_on_the_order_of_registration(v1: ProgramRun) -> None:
    """The SDK registers resources in an order that varies with timing; the engine's schedule
    follows what the program declared, so every run of it steps through the same order."""
    schedule = [r.urn for r in RolloutGraph(v1).topological_order()]
    for seed in range(20):
        arrived = random.Random(seed).sample(v1.resources, len(v1.resources))
        assert [r.urn for r in RolloutGraph(dataclasses.replace(v1, resources=arrived)).topological_order()] == schedule
    # As `pulumi up`'s parallel steps do: every wave-1 container is up before a wave-1 node joins.
    order = [r.name for r in RolloutGraph(v1).topological_order() if r.custom]
    assert max(map(order.index, WAVE1)) < min(order.index(f"{c}-membership") for c in WAVE1 if c != "emqx1")


def test_a_node_failing_to_join_stops_the_rollout_at_wave_1(
    fake_docker: FakeDocker, v1: ProgramRun, root: Path
) -> None:
    engine = Engine(fake_docker, knobs={"emqx3": {"join_permanent_error": PERMANENT}})
    with pytest.raises(RolloutFailedError) as failed:
        engine.up(v1)

    step = failed.value.step
    assert (step.name, step.op) == ("emqx3-membership", "create")
    assert step.result is not None
    assert step.result.stderr.startswith(
        f"{node('emqx3')} (container emqx3 on {socket.gethostname()}) could not join {SEED} after "
    )
    assert f"last error: Failed to join the cluster: {PERMANENT}" in step.result.stderr
    done = names(failed.value.steps)
    assert "wave1-verify" not in done
    assert not [name for name in done if name.startswith(WAVE2) or name == "wave2-verify"]
    assert set(fake_docker.state()["containers"]) == set(WAVE1)  # wave 2 never started
    assert not [c for c in fake_docker.calls() if c.exec_container in WAVE2]
    assert not (root / "emqx2").exists() and not (root / "emqx4").exists()


def test_a_node_not_coming_back_during_an_upgrade_leaves_wave_2_untouched(
    fake_docker: FakeDocker, v1: ProgramRun, v2: ProgramRun, root: Path
) -> None:
    engine = Engine(fake_docker)
    engine.up(v1)
    fake_docker.clear_calls()
    engine.knobs["emqx3"] = {"emqx_running": False}  # the replacement starts, EMQX in it never answers

    start = len(engine.steps)
    with pytest.raises(RolloutFailedError) as failed:
        engine.up(v2, v1)

    upgrade = failed.value.steps[start:]
    step = failed.value.step
    # The provider waits for the health check (`wait: true`), so the replacement itself fails.
    assert (step.name, step.op) == ("emqx3", "replace")
    assert step.result is not None and step.result.stderr == "health: starting\n"
    assert "emqx3-membership" not in names(upgrade)
    assert "wave1-verify" not in names(upgrade)
    assert not [name for name in names(upgrade) if name.startswith(WAVE2) or name == "wave2-verify"]
    assert not [c for c in fake_docker.calls() if c.exec_container in WAVE2]
    assert not [c for c in fake_docker.ctl_calls() if c.ctl_args[:2] == ["cluster", "leave"]]
    assert all(fake_docker.container(c)["running"] for c in WAVE2)  # never stopped for replacement


def test_scale_down_makes_the_removed_nodes_leave(
    fake_docker: FakeDocker, v1: ProgramRun, base_config: dict[str, Any], root: Path
) -> None:
    engine = Engine(fake_docker)
    engine.up(v1)
    fake_docker.clear_calls()
    smaller = run_program(with_changes(base_config, nodes=3))

    steps = engine.up(smaller, v1)

    deleted = names(steps, "delete")
    assert {"emqx4-membership", "emqx5-membership", "emqx4", "emqx5"} <= set(deleted)
    assert not [name for name in deleted if name.startswith(("emqx1", "emqx2", "emqx3"))]
    for container in ("emqx4", "emqx5"):
        leave = steps[index_of(steps, f"{container}-membership", "delete")]
        assert leave.result is not None and leave.result.stdout == f"{node(container)} left the cluster\n"
        assert index_of(steps, f"{container}-membership", "delete") < index_of(steps, container, "delete")
    leaves = [c for c in fake_docker.ctl_calls() if c.ctl_args == ["cluster", "leave"]]
    assert sorted(c.exec_container or "" for c in leaves) == ["emqx4", "emqx5"]
    assert fake_docker.members(SEED) == [node("emqx1"), node("emqx2"), node("emqx3")]
    assert set(fake_docker.state()["containers"]) == {"emqx1", "emqx2", "emqx3"}
    assert not [s for s in steps if s.name in ("emqx2-membership", "emqx3-membership")]
