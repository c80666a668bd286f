"""A tiny `pulumi up`: recorded program runs executed in the engine's order against the fake docker.

It walks a run's resources in dependency order, one step at a time: each as early as `pulumi up`
would start it, ties in the order the program declared them (tests/support/graph.py
`topological_order`; the same on every run, whatever order the mocks saw registrations in).
A broker `docker.Container` is created (or replaced) in the fake docker world with its declared
environment and data dir, its node modelled by tests/support/emqx/fake_docker.py (membership and
`cluster status` only: the rollout order is what this engine tests; the real EMQX runs in the
integration and e2e tiers), and
with `wait: true` the step fails unless the node turns healthy (as the docker provider waits for
the health check); a command runs its real `create` / `update` string, anything else is only
recorded.  It stops at the first failure, like `pulumi up`; deletions (removed resources, and the
old copy of a replaced create-before-delete command) run at the end in reverse dependency order,
like the engine's.  A command with an `update` string whose inputs (e.g. `triggers`) changed is
updated in place; without one it is replaced (create the new, later delete the old), as
pulumi-command does.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

from components.render.access import ACCESS_FILES
from tests.support.emqx.fake_docker import BROKER_DATA_DIR, FakeDocker, locked_state
from tests.support.graph import RolloutGraph
from tests.support.program import CONTAINER, LOCAL_COMMAND, Operation, ProgramRun, Recorded


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

    def up(self, new: ProgramRun, old: ProgramRun | None = None) -> list[Step]:
        """`pulumi up` from `old` (None: empty stack) to `new`; returns this run's steps."""
        start = len(self.steps)
        previous = old.by_urn() if old is not None else {}
        deferred: list[Recorded] = []  # old copies of create-before-delete replacements
        for res in RolloutGraph(new).topological_order():
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
            current = new.by_urn()
            removed = [r for r in old.resources if r.custom and r.urn not in current]
            doomed = {r.urn for r in [*removed, *deferred]}
            for res in reversed(RolloutGraph(old).topological_order()):
                if res.urn in doomed:
                    self._delete(res)
        return self.steps[start:]

    # -- steps -------------------------------------------------------------------------------

    def _record(self, step: Step) -> Step:
        self.steps.append(step)
        if step.result is not None and step.result.returncode != 0:
            raise RolloutFailedError(step, self.steps)
        return step

    def _create(self, res: Recorded, op: str = "create") -> None:
        if res.type == LOCAL_COMMAND:
            self._command(res, "create", op)
        elif res.node_name is not None:
            self.fake.add_container(
                res.name,
                res.node_name,
                env=res.container_env,
                data_dir=res.host_path_of(BROKER_DATA_DIR),
                access_dir=res.host_path_of(ACCESS_FILES.directory),
                **self.knobs.get(res.name, {}),
            )
            self._record(Step(op, res.name, res.type, result=self._waited(res)))
        else:
            self._record(Step(op, res.name, res.type))  # images, passwords, the LB...: nothing to run

    def _replace_container(self, res: Recorded) -> None:
        result = None
        if res.node_name is not None:  # delete_before_replace: the old one stops, the new one starts
            self.fake.recreate_container(res.name, env=res.container_env, **self.knobs.get(res.name, {}))
            result = self._waited(res)
        self._record(Step("replace", res.name, res.type, result=result))

    def _waited(self, res: Recorded) -> subprocess.CompletedProcess[str] | None:
        """The provider's `wait`: a container that is not healthy fails its create/replace."""
        if not res.inputs.get("wait"):
            return None
        health = self.fake.health(res.name)
        detail = self.fake.boot_error(res.name) or f"health: {health}"
        failed = health != "healthy"
        return subprocess.CompletedProcess(["wait", res.name], int(failed), "", f"{detail}\n" if failed else "")

    def _delete(self, res: Recorded) -> None:
        if res.type == LOCAL_COMMAND:
            if res.inputs.get("delete") is not None:
                self._command(res, "delete", "delete")
            return
        if res.node_name is not None:
            with locked_state(self.fake.state_path) as state:
                del state["containers"][res.name]
        self._record(Step("delete", res.name, res.type))

    def _command(self, res: Recorded, operation: Operation, op: str) -> None:
        first = len(self.fake.calls())
        result = res.run_local(operation, self.fake.env(), timeout=120)
        self._record(Step(op, res.name, res.type, (first, len(self.fake.calls())), result))
