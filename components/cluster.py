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

    A membership's `triggers` hold its container's ID and it has an `update` command, so a
    replaced container re-runs the (idempotent) join as an *update*: the delete command,
    `cluster leave`, runs only when the node is really removed (scale-down or destroy).
    Each join depends on its own container and the seed's only, so the critical path does
    not grow with N.
    """

    def __init__(self, name: str, args: ClusterFormationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emqx-cluster:index:ClusterFormation", name, None, opts)
        self._args = args
        self._verified: list[StartedNode] = []
        self.memberships: list[HostCommand] = []
        self.gates: list[HostCommand] = []

    def add_wave(self, wave: int, started: Sequence[StartedNode]) -> HostCommand:
        """Join this wave's nodes, then return the command that verifies all nodes so far."""
        args = self._args
        seed = args.seed
        joins: list[HostCommand] = []
        for node in started:
            if node.plan.index == seed.plan.index:
                continue
            join = join_script(
                node.plan.container_name, node.plan.node_name, seed.plan.node_name, args.join_timeout_seconds
            )
            joins.append(
                args.host.command(
                    f"{node.plan.short_name}-membership",
                    create=join,
                    update=join,
                    delete=leave_script(node.plan.container_name, node.plan.node_name, seed.plan.container_name),
                    triggers=[node.container.id],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[node.container, seed.container]),
                )
            )
        self.memberships.extend(joins)
        self._verified.extend(started)
        expected = [node.plan.node_name for node in self._verified]
        check = verify_script(seed.plan.container_name, expected, args.join_timeout_seconds, f"wave {wave}")
        gate = args.host.command(
            f"wave{wave}-verify",
            create=check,
            update=check,  # in place: the gate's ID must stay stable, later waves' images hang on it
            # Every node so far: the last gate re-verifies the whole cluster after any change.
            triggers=[node.container.id for node in self._verified],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*joins, *(node.container for node in started)]),
        )
        self.gates.append(gate)
        return gate

    def finish(self) -> None:
        self.register_outputs({"verifiedNodes": [node.plan.node_name for node in self._verified]})
