"""Issue 5, rollout in waves: the declared resources executed in the engine's order against a fake docker.

A tiny engine walks the mocked program's resources in dependency order, as `pulumi up` would:
a broker `docker.Container` is created (or replaced) in the fake docker world with its declared
environment and data dir, so EMQX 5.8's rules apply to it (tests/integration/support/emqx58.py),
and with `wait: true` the step fails unless the node turns healthy (as the docker provider
waits for the health check); a command runs
its real `create` / `update` string, anything else is only recorded.  It stops at the first
failure, like `pulumi up`; deletions (removed resources, and the old copy of a replaced
create-before-delete command) run at the end in reverse dependency order, like the engine's.
A command with an `update` string whose inputs (e.g. `triggers`) changed is updated in place;
without one it is replaced (create the new, later delete the old), as pulumi-command does.

Stacks use manageSysctls: false (the sysctl script is exercised in test_host_tuning.py, inside
a network namespace) and ports outside ipLocalPortRange, so the real preflight runs too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.plan import DISTRIBUTION_PORT_BASE, RPC_PORT_BASE
from tests.integration.declared import (
    CONTAINER,
    LOCAL_COMMAND,
    DeclaredResource,
    DeclaredStack,
    Operation,
    busy_ports,
    declare,
    free_port_block,
    throwaway_config,
)
from tests.integration.support.fake_docker import BROKER_DATA_DIR, FakeDocker, locked_state
from tests.integration.support.ports import free_port

pytestmark = pytest.mark.integration

JOIN_TIMEOUT = 5
NODES = 5
SEED = "emqx1@127.0.0.1"
WAVE1 = ("emqx1", "emqx3", "emqx5")  # round-robin waves: odd indexes first
WAVE2 = ("emqx2", "emqx4")
PERMANENT = "{cannot_join_to_replicant,'emqx1@127.0.0.1'}"


def node(container: str) -> str:
    return f"{container}@127.0.0.1"


# ------------------------------------------------------------------------------------ engine


@dataclass(frozen=True)
class Step:
    """One thing the engine did; `calls` is the fake docker call-log slice it produced."""

    op: str  # create | update | replace | delete
    name: str
    type: str
    calls: tuple[int, int] = (0, 0)
    result: subprocess.CompletedProcess[str] | None = None


class RolloutFailedError(Exception):
    def __init__(self, step: Step, steps: list[Step]) -> None:
        assert step.result is not None
        super().__init__(f"{step.name} {step.op} failed (exit {step.result.returncode}): {step.result.stderr}")
        self.step = step
        self.steps = steps


@dataclass
class Engine:
    """Executes declared stacks against one fake docker world, keeping the 'state' between runs."""

    fake: FakeDocker
    # Knobs for a broker container whenever this engine creates or replaces it.
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def up(self, new: DeclaredStack, old: DeclaredStack | None = None) -> list[Step]:
        """`pulumi up` from `old` (None: empty stack) to `new`; returns this run's steps."""
        start = len(self.steps)
        previous = old.resources if old is not None else {}
        deferred: list[DeclaredResource] = []  # old copies of create-before-delete replacements
        for res in new.topological_order():
            if not res.custom:
                continue
            before = previous.get(res.urn)
            if before is None:
                self._create(res)
            elif dict(before.inputs) != dict(res.inputs):
                if res.type == LOCAL_COMMAND and res.inputs.get("update") is not None:
                    self._command(res, "update", "update")
                elif res.type == CONTAINER:
                    self._replace_container(res)
                else:
                    self._create(res, op="replace")
                    deferred.append(before)
        if old is not None:
            removed = [r for r in old.resources.values() if r.custom and r.urn not in new.resources]
            doomed = {r.urn for r in [*removed, *deferred]}
            for res in reversed(old.topological_order()):
                if res.urn in doomed:
                    self._delete(res)
        return self.steps[start:]

    # -- steps -------------------------------------------------------------------------------

    def _record(self, step: Step) -> Step:
        self.steps.append(step)
        if step.result is not None and step.result.returncode != 0:
            raise RolloutFailedError(step, self.steps)
        return step

    def _create(self, res: DeclaredResource, op: str = "create") -> None:
        if res.type == LOCAL_COMMAND:
            self._command(res, "create", op)
        elif res.node_name is not None:
            self.fake.add_container(
                res.name,
                res.node_name,
                env=res.container_env,
                data_dir=res.host_path_of(BROKER_DATA_DIR),
                **self.knobs.get(res.name, {}),
            )
            self._record(Step(op, res.name, res.type, result=self._waited(res)))
        else:
            self._record(Step(op, res.name, res.type))  # images, passwords, the LB...: nothing to run

    def _replace_container(self, res: DeclaredResource) -> None:
        result = None
        if res.node_name is not None:  # delete_before_replace: the old one stops, the new one starts
            self.fake.recreate_container(res.name, env=res.container_env, **self.knobs.get(res.name, {}))
            result = self._waited(res)
        self._record(Step("replace", res.name, res.type, result=result))

    def _waited(self, res: DeclaredResource) -> subprocess.CompletedProcess[str] | None:
        """The provider's `wait`: a container that is not healthy fails its create/replace."""
        if not res.inputs.get("wait"):
            return None
        health = self.fake.health(res.name)
        detail = self.fake.boot_error(res.name) or f"health: {health}"
        failed = health != "healthy"
        return subprocess.CompletedProcess(["wait", res.name], int(failed), "", f"{detail}\n" if failed else "")

    def _delete(self, res: DeclaredResource) -> None:
        if res.type == LOCAL_COMMAND:
            if res.inputs.get("delete") is not None:
                self._command(res, "delete", "delete")
            return
        if res.node_name is not None:
            with locked_state(self.fake.state_path) as state:
                del state["containers"][res.name]
        self._record(Step("delete", res.name, res.type))

    def _command(self, res: DeclaredResource, operation: Operation, op: str) -> None:
        script = res.inputs[operation]
        assert isinstance(script, str)
        env: Mapping[str, str] = {**self.fake.env(), **(res.inputs.get("environment") or {})}
        first = len(self.fake.calls())
        result = subprocess.run(
            ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        self._record(Step(op, res.name, res.type, (first, len(self.fake.calls())), result))


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
def v1(base_config: dict[str, Any]) -> DeclaredStack:
    return declare(base_config)


@pytest.fixture(scope="module")
def v2(base_config: dict[str, Any]) -> DeclaredStack:
    """The same stack one EMQX patch release later."""
    return declare(with_changes(base_config, emqxVersion="5.8.7"))


@pytest.fixture
def root(base_config: dict[str, Any]) -> Path:
    """The stack's data dir, emptied for each test (the module shares the config)."""
    data = Path(base_config["emqx-cluster:dataDir"])
    shutil.rmtree(data, ignore_errors=True)
    return data


def with_changes(config: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    return {**config, **{f"emqx-cluster:{key}": value for key, value in changes.items()}}


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


def test_five_nodes_in_two_waves_form_one_verified_cluster(
    fake_docker: FakeDocker, v1: DeclaredStack, root: Path
) -> None:
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


def test_upgrade_replaces_wave_by_wave_and_updates_memberships_without_leaving(
    fake_docker: FakeDocker, v1: DeclaredStack, v2: DeclaredStack, root: Path
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


def test_a_node_failing_to_join_stops_the_rollout_at_wave_1(
    fake_docker: FakeDocker, v1: DeclaredStack, root: Path
) -> None:
    engine = Engine(fake_docker, knobs={"emqx3": {"join_permanent_error": PERMANENT}})
    with pytest.raises(RolloutFailedError) as failed:
        engine.up(v1)

    step = failed.value.step
    assert (step.name, step.op) == ("emqx3-membership", "create")
    assert step.result is not None
    assert step.result.stderr.startswith(f"{node('emqx3')} could not join {SEED} after ")
    assert f"last error: Failed to join the cluster: {PERMANENT}" in step.result.stderr
    done = names(failed.value.steps)
    assert "wave1-verify" not in done
    assert not [name for name in done if name.startswith(WAVE2) or name == "wave2-verify"]
    assert set(fake_docker.state()["containers"]) == set(WAVE1)  # wave 2 never started
    assert not [c for c in fake_docker.calls() if c.exec_container in WAVE2]
    assert not (root / "emqx2").exists() and not (root / "emqx4").exists()


def test_a_node_not_coming_back_during_an_upgrade_leaves_wave_2_untouched(
    fake_docker: FakeDocker, v1: DeclaredStack, v2: DeclaredStack, root: Path
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
    fake_docker: FakeDocker, v1: DeclaredStack, base_config: dict[str, Any], root: Path
) -> None:
    engine = Engine(fake_docker)
    engine.up(v1)
    fake_docker.clear_calls()
    smaller = declare(with_changes(base_config, nodes=3))

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
