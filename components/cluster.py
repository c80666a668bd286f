"""ClusterFormation: join every node to the seed, leave on removal, verify after each wave."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.broker import StartedNode
from components.hostexec import HostAccess, HostCommand
from components.render.cluster_scripts import join_script, leave_script, verify_script


@dataclass(frozen=True)
class ClusterFormationArgs:
    seed: StartedNode
    join_timeout_seconds: int
    host: HostAccess


class ClusterFormation(pulumi.ComponentResource):
    """Per-node membership commands plus one verification gate per wave.

    No `triggers` here: pulumi-command marks them `replaceOnChanges` (its SDK adds
    `replace_on_changes=["triggers[*]"]`), and a replaced membership would run its delete,
    `cluster leave`, on a node that stays. Instead the container IDs are written into the
    script text: a changed `create` is an in-place *update* that re-runs the idempotent join
    (or check), so `cluster leave` runs only when a node is really removed (scale-down,
    destroy), and a gate's ID, which later waves' images hang on, never changes. Each join
    depends on its own container and the seed's only, so the critical path does not grow with N.
    """

    def __init__(self, name: str, args: ClusterFormationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emqx-cluster:index:ClusterFormation", name, None, opts)
        self._args = args
        self._verified: list[StartedNode] = []

    def add_wave(self, wave: int, started: Sequence[StartedNode]) -> HostCommand:
        """Join this wave's nodes, then return the command that verifies all nodes so far."""
        args = self._args
        seed = args.seed
        joins: list[HostCommand] = []
        for node in started:
            if node.plan.index == seed.plan.index:
                continue
            join = _pinned_to(
                [node],
                join_script(
                    node.plan.container_name, node.plan.node_name, seed.plan.node_name, args.join_timeout_seconds
                ),
            )
            joins.append(
                args.host.command(
                    f"{node.plan.short_name}-membership",
                    create=join,
                    update=join,
                    delete=leave_script(node.plan.container_name, node.plan.node_name, seed.plan.container_name),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[node.container, seed.container]),
                )
            )
        self._verified.extend(started)
        expected = [node.plan.node_name for node in self._verified]
        # Pinned to every node so far: the last gate re-verifies the whole cluster after any change.
        check = _pinned_to(
            list(self._verified),
            verify_script(seed.plan.container_name, expected, args.join_timeout_seconds, f"wave {wave}"),
        )
        gate = args.host.command(
            f"wave{wave}-verify",
            create=check,
            update=check,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*joins, *(node.container for node in started)]),
        )
        return gate

    def finish(self) -> None:
        self.register_outputs({"verifiedNodes": [node.plan.node_name for node in self._verified]})


def _pinned_to(nodes: Sequence[StartedNode], script: str) -> pulumi.Output[str]:
    """Prefix `script` with the nodes' container IDs, so a replaced container changes its text."""
    ids = pulumi.Output.all(*(node.container.id for node in nodes))
    return ids.apply(
        lambda values: (
            "".join(
                f"# {node.plan.container_name} container {value}\n" for node, value in zip(nodes, values, strict=True)
            )
            + script
        )
    )
