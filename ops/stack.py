"""A deployed stack as the operations scripts see it: its outputs and its nodes' containers.

`pulumi stack output --stack <stack> --json --show-secrets` runs in the project directory (the
current one when it holds Pulumi.yaml, else this repository) with the state backend the user
set, or the dev stack's `.pulumi-state/` as scripts/deploy-dev uses it. Each node is reached as
`docker -H <dockerHost> exec <container> /opt/emqx/bin/emqx ctl ...` (its `nodes` row): the
engine the stack deploys it with, `unix://...` or `ssh://user@host[:port]` (the docker CLI then
uses your ssh client and agent, as the stack's docker provider does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.emqx import EmqxTextError, NodeStatus, parse_status

REPO = Path(__file__).resolve().parents[1]
EMQX_BIN = "/opt/emqx/bin/emqx"
CTL_TIMEOUT = 120.0


class OpsError(RuntimeError):
    """What the operator is told, then exit 1 (no traceback)."""


@dataclass(frozen=True)
class Node:
    name: str  # emqx1@10.0.0.11
    host: str  # the host label
    container: str
    docker_host: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Node:
        try:
            return cls(str(row["name"]), str(row["host"]), str(row["container"]), str(row["dockerHost"]))
        except KeyError as exc:
            raise OpsError(
                f"the stack's `nodes` output has no {exc.args[0]!r}: run `pulumi up` with this version of the program"
            ) from exc


def project_dir() -> Path:
    """The current directory or a parent when one holds Pulumi.yaml, else this repository."""
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    return REPO


def pulumi_env(project: Path) -> dict[str, str]:
    """The environment, with the dev stack's local backend (scripts/deploy-dev) when no backend is set."""
    env = dict(os.environ)
    state = project / ".pulumi-state"
    if "PULUMI_BACKEND_URL" not in env and state.is_dir():
        env["PULUMI_BACKEND_URL"] = f"file://{state}"
        passphrase = state / "passphrase"
        if (
            "PULUMI_CONFIG_PASSPHRASE" not in env
            and "PULUMI_CONFIG_PASSPHRASE_FILE" not in env
            and passphrase.is_file()
        ):
            env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase)
    return env


def stack_outputs(stack: str) -> dict[str, Any]:
    """The stack's outputs, secrets shown (kept in memory, never printed)."""
    project = project_dir()
    argv = ["pulumi", "stack", "output", "--stack", stack, "--json", "--show-secrets", "--non-interactive"]
    try:
        done = subprocess.run(
            argv, cwd=project, env=pulumi_env(project), capture_output=True, text=True, timeout=300, check=False
        )
    except FileNotFoundError as exc:
        raise OpsError("no `pulumi` CLI on PATH") from exc
    if done.returncode != 0:
        raise OpsError(f"`pulumi stack output --stack {stack}` failed in {project}:\n{done.stderr.strip()}")
    try:
        outputs = json.loads(done.stdout or "{}")
    except ValueError as exc:
        raise OpsError(f"`pulumi stack output --stack {stack}` did not print JSON") from exc
    if not isinstance(outputs, dict) or not outputs.get("nodes"):
        raise OpsError(f"stack {stack} has no `nodes` output: is it deployed (`pulumi up --stack {stack}`)?")
    return outputs


def nodes_of(outputs: Mapping[str, Any]) -> list[Node]:
    return [Node.from_row(row) for row in outputs["nodes"]]


def docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        raise OpsError("no `docker` CLI on PATH (it reaches the nodes' engines: docker -H <dockerHost>)")
    return found


def docker(
    node: Node, *args: str, input_bytes: bytes | None = None, timeout: float = CTL_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """`docker -H <node's engine> <args>`; never raises on the exit code."""
    try:
        return subprocess.run(
            [docker_cli(), "-H", node.docker_host, *args],
            input=input_bytes,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OpsError(
            f"`docker -H {node.docker_host} {' '.join(args[:3])} ...` did not answer in {timeout:.0f}s"
        ) from exc


def ctl(node: Node, *args: str, timeout: float = CTL_TIMEOUT) -> tuple[int, str]:
    """`emqx ctl <args>` in the node's container: (exit code, stdout + stderr)."""
    done = docker(node, "exec", node.container, EMQX_BIN, "ctl", *args, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def node_status(node: Node) -> NodeStatus | None:
    """The node's `emqx ctl status`, or None when its container or node does not answer."""
    code, text = ctl(node, "status", timeout=30)
    if code != 0:
        return None
    try:
        return parse_status(text)
    except EmqxTextError:
        return None


def running_node(nodes: Sequence[Node]) -> tuple[Node, NodeStatus]:
    """The first node (in the `nodes` order: the seed first) whose EMQX is started."""
    for node in nodes:
        status = node_status(node)
        if status is not None and status.started:
            return node, status
    raise OpsError(
        "no node of the stack answers `emqx ctl status` as started: "
        + ", ".join(f"{n.container} on {n.docker_host}" for n in nodes)
    )


def run_script(
    argv: Sequence[str],
    arities: range,
    usage: str,
    action: Callable[[Sequence[str]], object],
    failure: str,
    errors: tuple[type[Exception], ...] = (OpsError,),
) -> int:
    """A script's exit code: 2 with `usage` for wrong arguments, 1 with `failure: <why>` when
    `action` raises one of `errors`, else 0."""
    if len(argv) not in arities or argv[0].startswith("-"):
        print(usage, file=sys.stderr)
        return 2
    try:
        action(argv)
    except errors as exc:
        print(f"{failure}: {exc}", file=sys.stderr)
        return 1
    return 0
