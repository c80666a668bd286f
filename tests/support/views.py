"""Small readers over recorded runs: env lists, uploads, secret markers, input diffs."""

from __future__ import annotations

from typing import Any

from tests.support.program import CONTAINER, ProgramRun, Recorded, SecretPath

LB_CONTAINER = "emqx-lb"


def broker_names(nodes: int) -> list[str]:
    return [f"emqx{index}" for index in range(1, nodes + 1)]


def brokers(run: ProgramRun) -> list[Recorded]:
    """Every broker container (the load balancer excluded), in node order."""
    found = [r for r in run.of_type(CONTAINER) if r.node_name is not None]
    return sorted(found, key=lambda r: int(r.name.removeprefix("emqx")))


def lb_container(run: ProgramRun) -> Recorded:
    return run.named(LB_CONTAINER, custom=True)


def command_type(stack: str) -> str:
    """dev runs host commands locally, prod over SSH."""
    return "command:local:Command" if stack == "dev" else "command:remote:Command"


def envs(container: Recorded) -> dict[str, str]:
    """A container's `envs` list (KEY=value) as a mapping."""
    pairs = [entry.split("=", 1) for entry in container.inputs["envs"]]
    assert all(len(pair) == 2 for pair in pairs), container.inputs["envs"]
    return dict((key, value) for key, value in pairs)


def uploads(container: Recorded) -> dict[str, tuple[int, dict[str, Any]]]:
    """A container's uploads by target file: (position in the list, upload)."""
    return {upload["file"]: (index, upload) for index, upload in enumerate(container.inputs["uploads"])}


def is_secret_at(resource: Recorded, path: SecretPath) -> bool:
    """The value at `path` was sent as a secret (itself or as part of a secret around it)."""
    return any(path[: len(marked)] == marked for marked in resource.secret_paths)


def changed_inputs(before: ProgramRun, after: ProgramRun) -> dict[str, set[str]]:
    """For each resource in both runs (matched by URN): the top-level inputs whose values differ."""
    old = before.by_urn()
    changes: dict[str, set[str]] = {}
    for resource in after.resources:
        previous = old.get(resource.urn)
        if previous is None:
            continue
        keys = {
            key
            for key in previous.inputs.keys() | resource.inputs.keys()
            if previous.inputs.get(key) != resource.inputs.get(key)
        }
        if keys:
            changes[resource.name] = keys
    return changes


def names(run: ProgramRun) -> dict[str, str]:
    """URN -> name of every resource in a run."""
    return {r.urn: r.name for r in run.resources}


def walk_strings(value: Any) -> list[str]:
    """Every string inside a (nested) output value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in walk_strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in walk_strings(item)]
    return []
