"""BrokerNodes: the N EMQX broker containers on the host network, added wave by wave."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.hostexec import HostAccess, HostCommand
from components.plan import BROKER_DATA_DIR, BROKER_LOG_DIR, NodePlan
from components.render.host_scripts import node_dirs_delete_script, node_dirs_script

HEALTHCHECK = ["CMD", "/opt/emqx/bin/emqx-cluster-healthcheck"]  # baked in by docker/emqx
NOFILE_LIMIT = 1048576


@dataclass(frozen=True)
class BrokerNodesArgs:
    environments: Mapping[str, pulumi.Output[dict[str, str]]]  # node short name -> env (secret)
    log_opts: Mapping[str, str]  # json-file rotation, bounded
    purge_data: bool
    wait_timeout_seconds: int
    host: HostAccess
    provider: docker.Provider


@dataclass(frozen=True)
class StartedNode:
    plan: NodePlan
    container: docker.Container
    dirs: HostCommand


class BrokerNodes(pulumi.ComponentResource):
    """Owns every node's host dirs and container; the stack adds one wave at a time.

    Adding by wave lets the stack gate wave k+1 on wave k's cluster check, while every node
    keeps the same URN whatever wave it is in (changing `waves` never replaces a node).
    """

    def __init__(self, name: str, args: BrokerNodesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emqx-cluster:index:BrokerNodes", name, None, opts)
        self._args = args
        self.nodes: list[StartedNode] = []

    def add_wave(
        self, nodes: Sequence[NodePlan], image: pulumi.Input[str], after: Sequence[pulumi.Resource]
    ) -> list[StartedNode]:
        """Declare `nodes`' dirs and containers, created (or replaced) only once `after` is done."""
        started = [self._add_node(node, image, after) for node in nodes]
        self.nodes.extend(started)
        return started

    def finish(self) -> None:
        self.register_outputs({"containers": [n.container.name for n in self.nodes]})

    def _add_node(self, node: NodePlan, image: pulumi.Input[str], after: Sequence[pulumi.Resource]) -> StartedNode:
        args = self._args
        child = pulumi.ResourceOptions(parent=self)
        dirs = args.host.command(
            f"{node.short_name}-dirs",
            create=node_dirs_script(node.host_dir),
            delete=node_dirs_delete_script(node.host_dir, node.node_name, args.purge_data, node.container_name),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(after))),
        )
        envs = args.environments[node.short_name].apply(
            lambda env: [f"{key}={value}" for key, value in sorted(env.items())]
        )
        container = docker.Container(
            node.short_name,
            name=node.container_name,
            image=image,
            network_mode="host",  # no `ports`: with host networking the provider would lose them
            restart="always",
            must_run=True,
            envs=envs,
            ulimits=[docker.ContainerUlimitArgs(name="nofile", soft=NOFILE_LIMIT, hard=NOFILE_LIMIT)],
            volumes=[
                docker.ContainerVolumeArgs(host_path=node.data_dir, container_path=BROKER_DATA_DIR),
                docker.ContainerVolumeArgs(host_path=node.log_dir, container_path=BROKER_LOG_DIR),
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=HEALTHCHECK, interval="5s", timeout="25s", retries=5, start_period="30s"
            ),
            wait=True,  # `pulumi up` moves on only once the node reports healthy
            wait_timeout=args.wait_timeout_seconds,
            log_driver="json-file",
            log_opts=dict(args.log_opts),
            labels=[docker.ContainerLabelArgs(label="io.emqx-cluster.node", value=node.node_name)],
            # EMQX stops cleanly on SIGTERM; give it time to hand sessions over.
            stop_timeout=30,
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    provider=args.provider,
                    depends_on=[dirs, *after],
                    # Fixed name and fixed host ports: the old container must go first, or the
                    # new one cannot bind them.
                    delete_before_replace=True,
                    additional_secret_outputs=["envs"],
                ),
            ),
        )
        return StartedNode(plan=node, container=container, dirs=dirs)
