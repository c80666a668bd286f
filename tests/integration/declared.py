"""What the Pulumi program declares, captured from a mocked run, for tests that execute it for real.

Integration tests never copy a host script by hand: they run the real program under the
stack harness's mocks (tests/stack/harness.py) and take the exact `create` / `update` /
`delete` strings each command resource would hand to pulumi-command, plus the dependency
graph the engine would schedule them by.  `DeclaredCommand.run_local` then runs a string the
way `command.local.Command` does (`/bin/sh -c <string>`, the provider's environment plus the
resource's `environment`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from components.config import StackConfig, parse_stack_config
from components.plan import ClusterPlan, plan_cluster
from tests.integration.support.ports import free_port
from tests.stack.harness import PROJECT, ProgramRun, run_program, stack_config

Operation = Literal["create", "update", "delete"]

LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
CONTAINER = "docker:index/container:Container"
NODE_LABEL = "io.emqx-cluster.node"  # the label BrokerNodes puts on every broker container

# pulumi-command's local.Command default interpreter on Linux.
LOCAL_INTERPRETER = ("/bin/sh", "-c")


@dataclass(frozen=True)
class DeclaredResource:
    """One registered resource: its inputs as the engine would receive them, and what it waits for."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    id: str | None
    inputs: Mapping[str, Any]
    dependencies: tuple[str, ...]  # URNs (components already expanded to their children by the SDK)

    @property
    def node_name(self) -> str | None:
        """The EMQX node name of a broker container (from its label), else None."""
        if self.type != CONTAINER:
            return None
        for label in self.inputs.get("labels") or []:
            if label.get("label") == NODE_LABEL:
                return str(label.get("value"))
        return None

    @property
    def container_env(self) -> dict[str, str] | None:
        """A container's environment (`envs`, "K=V" strings, as the provider passes them), else None."""
        if self.type != CONTAINER or self.inputs.get("envs") is None:
            return None
        return dict(str(item).split("=", 1) for item in self.inputs["envs"])

    def host_path_of(self, container_path: str) -> str | None:
        """The host dir a container mounts on `container_path` (its `volumes`), else None."""
        for volume in self.inputs.get("volumes") or []:
            if volume.get("containerPath") == container_path:
                return str(volume.get("hostPath"))
        return None


@dataclass(frozen=True)
class DeclaredCommand:
    """A pulumi-command resource's declared strings, exactly as the provider would run them."""

    name: str
    type: str
    urn: str
    create: str | None
    update: str | None
    delete: str | None
    triggers: list[Any] | None
    connection: Mapping[str, Any] | None
    environment: Mapping[str, str] | None
    dependencies: tuple[str, ...]  # names of the resources it directly depends on

    @property
    def is_remote(self) -> bool:
        return self.type == REMOTE_COMMAND

    def script(self, operation: Operation) -> str:
        text: str | None = getattr(self, operation)
        if text is None:
            raise AssertionError(f"{self.name} declares no {operation} command")
        return text

    def run_local(
        self,
        operation: Operation,
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = 60,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `operation` like local.Command: `/bin/sh -c <string>`, `env` + the declared environment.

        Never raises on the exit code (a failed command is a result, as for the engine).
        """
        full_env = {**(os.environ if env is None else env), **(self.environment or {})}
        return subprocess.run(
            [*LOCAL_INTERPRETER, self.script(operation)],
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@dataclass
class DeclaredStack:
    """Every resource of one mocked `pulumi up`, with the dependency graph between them."""

    config: dict[str, Any]
    secrets: dict[str, str]
    program: ProgramRun
    resources: dict[str, DeclaredResource] = field(default_factory=dict)  # by URN, registration order

    # -- lookup ------------------------------------------------------------------------------

    def named(self, name: str, *, custom: bool = True) -> DeclaredResource:
        """The resource called `name` (custom by default: a component may share a child's name)."""
        found = [r for r in self.resources.values() if r.name == name and r.custom == custom]
        if len(found) != 1:
            raise KeyError(f"expected one {'custom' if custom else 'component'} resource {name!r}, found {len(found)}")
        return found[0]

    @property
    def commands(self) -> dict[str, DeclaredCommand]:
        """Every pulumi-command resource by name."""
        result: dict[str, DeclaredCommand] = {}
        for res in self.resources.values():
            if res.type not in (LOCAL_COMMAND, REMOTE_COMMAND):
                continue
            inputs = res.inputs
            result[res.name] = DeclaredCommand(
                name=res.name,
                type=res.type,
                urn=res.urn,
                create=inputs.get("create"),
                update=inputs.get("update"),
                delete=inputs.get("delete"),
                triggers=inputs.get("triggers"),
                connection=inputs.get("connection"),
                environment=inputs.get("environment"),
                dependencies=tuple(self.resources[d].name for d in res.dependencies if d in self.resources),
            )
        return result

    def stack_config(self) -> StackConfig:
        return parse_config(self.config, self.secrets)

    def plan(self) -> ClusterPlan:
        return plan_cluster(self.stack_config())

    # -- graph -------------------------------------------------------------------------------

    def edges(self, urn: str) -> set[str]:
        """What must exist before `urn`: its dependencies and its parent (the engine's order)."""
        res = self.resources[urn]
        before = {d for d in res.dependencies if d in self.resources}
        if res.parent in self.resources:
            before.add(res.parent)
        return before

    def graph(self) -> dict[str, set[str]]:
        """URN -> URNs it waits for."""
        return {urn: self.edges(urn) for urn in self.resources}

    def ancestors(self, urn: str) -> set[str]:
        """Everything `urn` transitively waits for."""
        seen: set[str] = set()
        stack = list(self.edges(urn))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.edges(current))
        return seen

    def waits_for(self, later: str, earlier: str) -> bool:
        """Whether custom resource `later` (by name) transitively depends on custom resource `earlier`."""
        return self.named(earlier).urn in self.ancestors(self.named(later).urn)

    def topological_order(self) -> list[DeclaredResource]:
        """A schedule the engine could follow: every resource after what it waits for.

        Ties are broken by registration order, so the order is deterministic.
        """
        position = {urn: i for i, urn in enumerate(self.resources)}
        waiting = {urn: set(before) for urn, before in self.graph().items()}
        done: list[DeclaredResource] = []
        while waiting:
            ready = sorted((urn for urn, before in waiting.items() if not before), key=position.__getitem__)
            if not ready:
                raise AssertionError(f"dependency cycle among {sorted(waiting)}")
            urn = ready[0]
            done.append(self.resources[urn])
            del waiting[urn]
            for before in waiting.values():
                before.discard(urn)
        return done


# ------------------------------------------------------------------------------------------
# Running the program
# ------------------------------------------------------------------------------------------


def _namespaced(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


def parse_config(config: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> StackConfig:
    """The StackConfig the program builds from the same values (as the harness passes them)."""
    raw: dict[str, str | None] = {}
    for key, value in {**config, **(secrets or {})}.items():
        bare = _namespaced(key).split(":", 1)[1]
        raw[bare] = value if isinstance(value, str) else json.dumps(value)
    return parse_stack_config(raw)


def declare(config: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> DeclaredStack:
    """Run the program under mocks (update mode: IDs and digests are known) and record it."""
    program = run_program(config, secrets=secrets, preview=False)
    stack = DeclaredStack(config=dict(config), secrets=dict(secrets or {}), program=program)
    for rec in program.resources:
        stack.resources[rec.urn] = DeclaredResource(
            urn=rec.urn,
            type=rec.type,
            name=rec.name,
            parent=rec.parent,
            custom=rec.custom,
            id=getattr(rec, "id", None),
            inputs=rec.inputs,
            dependencies=tuple(rec.dependencies),
        )
    return stack


def declared_commands(
    config: Mapping[str, Any], secrets: Mapping[str, str] | None = None
) -> dict[str, DeclaredCommand]:
    """Every command the program declares for `config`, by resource name."""
    return declare(config, secrets).commands


def throwaway_config(root: Path, *, base: str = "dev", **overrides: Any) -> dict[str, Any]:
    """`base`'s stack config with every host path under `root` (data dir, sysctl drop-in).

    `overrides` are camelCase keys without namespace, e.g. `nodes=5, joinTimeoutSeconds=5`.
    """
    config = dict(stack_config(base))
    config[_namespaced("dataDir")] = str(root / "data")
    config[_namespaced("sysctlDropIn")] = str(root / "sysctl.d" / "60-emqx-cluster.conf")
    # Within the hard nofile limit of these machines (20000), which any Docker daemon running
    # here (the e2e tier's) inherits: preflight would rightly refuse the production defaults.
    config[_namespaced("brokerNofileLimit")] = 16384
    config[_namespaced("lbWorkerConnections")] = 4096
    for key, value in overrides.items():
        config[_namespaced(key)] = value
    return config


# ------------------------------------------------------------------------------------------
# Ports for configs whose preflight runs for real
# ------------------------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    """Whether a listener could bind `port` on every address (nothing listens there now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_block(count: int, *, avoid: set[int] | None = None, attempts: int = 100) -> int:
    """The first of `count` consecutive ports that are all free (and not in `avoid`)."""
    taken = avoid or set()
    for _ in range(attempts):
        base = free_port()
        block = range(base, base + count)
        if base + count - 1 <= 65535 and not taken.intersection(block) and all(port_is_free(p) for p in block):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def busy_ports(ports: Iterable[int]) -> list[int]:
    """Which of `ports` something on this host already listens on."""
    return [port for port in ports if not port_is_free(port)]
