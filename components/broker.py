"""BrokerNodes: the N EMQX broker containers on the host network, added wave by wave."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.hostexec import HostAccess, HostCommand
from components.plan import BROKER_DATA_DIR, BROKER_LOG_DIR, NodePlan
from components.render.host_scripts import node_dirs_delete_script, node_dirs_script


@dataclass(frozen=True)
class Healthcheck:
    """The node's Docker health check, declared on the container and baked into docker/emqx."""

    test: tuple[str, ...]
    interval: str
    timeout: str
    retries: int
    start_period: str

    def args(self) -> docker.ContainerHealthcheckArgs:
        return docker.ContainerHealthcheckArgs(
            tests=list(self.test),
            interval=self.interval,
            timeout=self.timeout,
            retries=self.retries,
            start_period=self.start_period,
        )

    def label(self) -> str:
        """The whole check as text. The docker provider neither replaces a container whose
        `healthcheck` changed nor applies it on update (terraform-provider-docker v4.5.0,
        resource_docker_container.go: `healthcheck` is Optional+Computed, not ForceNew, and
        resourceDockerContainerUpdate never sends it); labels are ForceNew, so a label carrying
        the check makes a changed check replace the container."""
        return (
            f"{' '.join(self.test)} interval={self.interval} timeout={self.timeout} "
            f"retries={self.retries} start_period={self.start_period}"
        )


# EMQX CI's cadence (.ci/docker-compose-file/docker-compose-emqx-cluster.yaml: 5s interval, 25s
# timeout, 5 retries); docker/emqx/Dockerfile's HEALTHCHECK repeats these values.
HEALTHCHECK = Healthcheck(
    test=("CMD", "/opt/emqx/bin/emqx-cluster-healthcheck"), interval="5s", timeout="25s", retries=5, start_period="30s"
)


@dataclass(frozen=True)
class BrokerNodesArgs:
    environments: Mapping[str, pulumi.Output[dict[str, str]]]  # node short name -> env (secret)
    log_opts: Mapping[str, str]  # json-file rotation, bounded
    purge_data: bool
    wait_timeout_seconds: int
    nofile_limit: int
    stop_grace_seconds: int
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
            ulimits=[docker.ContainerUlimitArgs(name="nofile", soft=args.nofile_limit, hard=args.nofile_limit)],
            volumes=[
                docker.ContainerVolumeArgs(host_path=node.data_dir, container_path=BROKER_DATA_DIR),
                docker.ContainerVolumeArgs(host_path=node.log_dir, container_path=BROKER_LOG_DIR),
            ],
            healthcheck=HEALTHCHECK.args(),
            wait=True,  # `pulumi up` moves on only once the node reports healthy
            wait_timeout=args.wait_timeout_seconds,
            log_driver="json-file",
            log_opts=dict(args.log_opts),
            labels=[
                docker.ContainerLabelArgs(label="io.emqx-cluster.node", value=node.node_name),
                docker.ContainerLabelArgs(label="io.emqx-cluster.healthcheck", value=HEALTHCHECK.label()),
            ],
            # EMQX stops cleanly on SIGTERM, handing sessions over. The provider's delete (every
            # replace and destroy) stops with a timeout of 0, i.e. SIGKILL, unless
            # destroy_grace_seconds > 0 (terraform-provider-docker v4.5.0,
            # resource_docker_container_funcs.go, resourceDockerContainerDelete); stop_timeout
            # covers Docker's own stops (`docker stop`, daemon shutdown).
            destroy_grace_seconds=args.stop_grace_seconds,
            stop_timeout=args.stop_grace_seconds,
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
