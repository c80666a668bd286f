"""BrokerCluster: the N EMQX nodes, wave by wave, on their hosts, formed into one verified cluster.

Creates, all inside `__init__`:
- per node, on its host: `<node>-dirs` (host dirs, owned by the image's user),
  `<node>-access-files` (MQTT users, API key, ACL: render/access.py), with cluster TLS
  `<node>-tls-files` (its certificate, key and the cluster CA), both in secret scripts on stdin,
  `<node>` (the container on the host network), and, for every node but the seed,
  `<node>-membership` (join the seed on create and update, `cluster leave` on delete);
- per wave: `wave<k>-verify`, the gate: every node so far is running in the cluster.
Memberships and gates are grouped under a `ClusterFormation` child, as they were first deployed.

The rollout order is explicit: the dirs and containers of wave k+1 depend on the gate of wave
k, so on an upgrade wave k+1 is replaced only once wave k is healthy and verified back in the
cluster. No `triggers` on memberships and gates: pulumi-command replaces a command whose
triggers change (its SDK sets replace_on_changes=["triggers[*]"]), and a replaced membership
would run `cluster leave` on a node that stays. The container IDs are written into the script
text instead, so a replaced container makes an in-place *update* that re-runs the idempotent
join (or check).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components import names
from components.broker_image import BrokerImage
from components.cluster_tls import NodeTls
from components.config import StackConfig
from components.host_site import HostSite
from components.hostexec import HostCommand
from components.plan import BROKER_DATA_DIR, BROKER_LOG_DIR, ClusterPlan, NodePlan
from components.render.access import ACCESS_FILES
from components.render.broker_env import CLUSTER_TLS_FILES, broker_environment, with_secrets
from components.render.cluster_scripts import evict_script, join_script, leave_script, note_script, verify_script
from components.render.host_scripts import (
    node_dirs_delete_script,
    node_dirs_script,
    node_files_delete_script,
    node_files_script,
)


def broker_environments(
    plan: ClusterPlan, config: StackConfig, cookie: pulumi.Output[str], password: pulumi.Output[str]
) -> dict[str, pulumi.Output[dict[str, str]]]:
    """Node short name -> its whole environment, a secret output (the plain part is plan data)."""
    secrets = pulumi.Output.all(cookie, password)

    def environment(public: dict[str, str]) -> pulumi.Output[dict[str, str]]:
        return pulumi.Output.secret(secrets.apply(lambda pair: with_secrets(public, pair[0], pair[1])))

    return {node.short_name: environment(broker_environment(node, plan, config)) for node in plan.nodes}


@dataclass(frozen=True)
class Healthcheck:
    """The node's Docker health check, declared on each container (the script is baked into docker/emqx)."""

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

    @property
    def verdict_seconds(self) -> int:
        """How long Docker gives a starting node before it can call it unhealthy: the start
        period, then `retries` failed checks `interval` apart (Docker's health check docs)."""
        return _seconds(self.start_period) + self.retries * _seconds(self.interval)

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


def _seconds(duration: str) -> int:
    """A Docker duration of whole seconds or minutes ("5s", "2m") as seconds."""
    units = {"s": 1, "m": 60}
    return int(duration[:-1]) * units[duration[-1]]


# EMQX CI's cadence (.ci/docker-compose-file/docker-compose-emqx-cluster.yaml: 5s interval, 25s
# timeout, 5 retries), written here only: the image declares none.
HEALTHCHECK = Healthcheck(
    test=("CMD", "/opt/emqx/bin/emqx-cluster-healthcheck"), interval="5s", timeout="25s", retries=5, start_period="30s"
)


@dataclass(frozen=True)
class BrokerClusterArgs:
    plan: ClusterPlan
    sites: Mapping[str, HostSite]  # host label -> its site (shell, engine, what is ready before nodes)
    images: Mapping[str, BrokerImage]  # host label -> the broker image built there
    environments: Mapping[str, pulumi.Output[dict[str, str]]]  # node short name -> env (secret)
    tls: Mapping[str, NodeTls]  # node short name -> its TLS files; empty without cluster TLS
    access_files: pulumi.Output[str]  # secret: every node's access files, as file_bundle frames
    admin_https: bool  # adminNetworks: each node's dashboard also serves HTTPS on its address
    admin_certificate_digest: pulumi.Output[str] | None  # then: its certificate's digest
    log_opts: Mapping[str, str]  # json-file rotation, bounded
    purge_data: bool
    join_timeout_seconds: int  # health waits, joins and gates
    nofile_limit: int
    stop_grace_seconds: int


@dataclass(frozen=True)
class StartedNode:
    plan: NodePlan
    container: docker.Container


class ClusterFormation(pulumi.ComponentResource):
    """Groups the memberships and wave gates that BrokerCluster declares."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions) -> None:
        super().__init__(names.component_type("ClusterFormation"), name, None, opts)


class BrokerCluster(pulumi.ComponentResource):
    """Every node's dirs and container, every membership and gate, in rollout order."""

    def __init__(self, name: str, args: BrokerClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # First deployed as BrokerNodes (dirs, containers) beside ClusterFormation (memberships,
        # gates), both children of the top component; the aliases keep every URN (children
        # inherit their parent's), so an existing stack sees no replacement and no deletion.
        top = opts.parent if opts is not None else None
        super().__init__(
            names.component_type("BrokerCluster"),
            name,
            None,
            pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=names.component_type("BrokerNodes"), parent=top)]),
            ),
        )
        self._args = args
        formation = ClusterFormation(
            args.plan.names.resource("cluster"),
            pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=top)] if top is not None else []),
        )
        seed = self._node(args.plan.seed, after=self._host_ready(args.plan.seed))
        verified: list[StartedNode] = []
        gate_of_previous_wave: list[pulumi.Resource] = []
        for wave_number, wave in enumerate(args.plan.waves, start=1):
            started: list[StartedNode] = []
            for node in wave:
                if node is args.plan.seed:
                    started.append(seed)
                    continue
                # A node waits for its own host to be ready and, after wave 1, for the previous gate.
                after = [*gate_of_previous_wave, *self._host_ready(node)]
                if args.plan.several_hosts:
                    after.append(self._eviction(formation, node, seed))
                started.append(self._node(node, after=after))
            # Every node but emqx1 has a membership, the seed too when placement left emqx1 out: a
            # node that becomes the seed (its predecessor's host retired) keeps its membership
            # (an update, nothing to join) instead of losing it, whose delete would `cluster leave`.
            joins = [self._membership(formation, node, seed) for node in started if node.plan.index != 1]
            verified.extend(started)
            gate_of_previous_wave = [self._gate(formation, wave_number, tuple(verified), joins, started)]
        # Short names: a node name holds its address, which may stand for an Output here (args_config).
        formation.register_outputs({"verifiedNodes": [node.plan.short_name for node in verified]})
        self.nodes = sorted(verified, key=lambda node: node.plan.index)
        self.verified = gate_of_previous_wave  # the last gate: the whole cluster runs
        self.register_outputs({"containers": [node.container.name for node in self.nodes]})

    def _host_ready(self, node: NodePlan) -> list[pulumi.Resource]:
        """What must be in place on the node's host before it starts: tuning, firewall, preflight
        and the image (so on destroy the image goes after the containers that use it: deletes run
        in reverse dependency order)."""
        return [*self._args.sites[node.host_label].ready, self._args.images[node.host_label]]

    def _node(self, node: NodePlan, after: Sequence[pulumi.Resource]) -> StartedNode:
        args = self._args
        site = args.sites[node.host_label]
        child = pulumi.ResourceOptions(parent=self)
        dirs = site.shell.command(
            args.plan.names.node_dirs(node.short_name),
            create=node_dirs_script(node.host_dir),
            delete=node_dirs_delete_script(node.host_dir, node.node_name, args.purge_data, node.container_name),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(after))),
        )
        after_dirs = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[dirs]))
        # Read at boot; a change reaches running nodes through the client registry's REST calls,
        # so the container does not depend on their content (no label): nothing restarts.
        access = args.access_files.apply(
            lambda bundle: node_files_script(node.access_dir, ACCESS_FILES.names(args.admin_https), bundle, "access")
        )
        access_files = site.shell.command(
            args.plan.names.node_access_files(node.short_name),
            create=access,
            update=access,
            delete=node_files_delete_script(node.access_dir, node.container_name, ACCESS_FILES.directory),
            # Beside the dirs, not after them (the script makes its own dir): no longer path.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(after))),
        )
        ready: list[pulumi.Resource] = [dirs, access_files]
        volumes = [
            docker.ContainerVolumeArgs(host_path=node.data_dir, container_path=BROKER_DATA_DIR),
            docker.ContainerVolumeArgs(host_path=node.log_dir, container_path=BROKER_LOG_DIR),
            docker.ContainerVolumeArgs(
                host_path=node.access_dir, container_path=ACCESS_FILES.directory, read_only=True
            ),
        ]
        labels = [
            docker.ContainerLabelArgs(label=names.NODE_LABEL, value=node.node_name),
            docker.ContainerLabelArgs(label=names.HEALTHCHECK_LABEL, value=HEALTHCHECK.label()),
        ]
        if args.admin_https and args.admin_certificate_digest is not None:
            # The HTTPS dashboard reads its certificate at boot: a renewed one (a new digest;
            # labels are ForceNew) replaces the node, wave by wave.
            labels.append(
                docker.ContainerLabelArgs(label=names.ADMIN_CERTIFICATE_LABEL, value=args.admin_certificate_digest)
            )
        tls = args.tls.get(node.short_name)
        if tls is not None:
            script = tls.bundle.apply(
                lambda bundle: node_files_script(node.tls_dir, CLUSTER_TLS_FILES.names(), bundle, "cluster TLS")
            )
            ready.append(
                site.shell.command(
                    args.plan.names.node_certificate(node.short_name, "files"),
                    create=script,
                    update=script,
                    delete=node_files_delete_script(node.tls_dir, node.container_name, CLUSTER_TLS_FILES.directory),
                    opts=after_dirs,
                )
            )
            volumes.append(
                docker.ContainerVolumeArgs(
                    host_path=node.tls_dir, container_path=CLUSTER_TLS_FILES.directory, read_only=True
                )
            )
            # EMQX reads the files at boot only: a renewed certificate (a new fingerprint; labels
            # are ForceNew) replaces the container, wave by wave like any other change.
            labels.append(docker.ContainerLabelArgs(label=names.CERTIFICATE_LABEL, value=tls.fingerprint))
        envs = args.environments[node.short_name].apply(
            lambda env: [f"{key}={value}" for key, value in sorted(env.items())]
        )
        container = docker.Container(
            args.plan.names.node_container(node.short_name),
            name=node.container_name,
            image=args.images[node.host_label].image_id,
            network_mode="host",  # no `ports`: with host networking the provider would lose them
            restart="always",
            must_run=True,
            envs=envs,
            ulimits=[docker.ContainerUlimitArgs(name="nofile", soft=args.nofile_limit, hard=args.nofile_limit)],
            volumes=volumes,
            healthcheck=HEALTHCHECK.args(),
            wait=True,  # `pulumi up` moves on only once the node reports healthy
            # Never shorter than Docker's own verdict: a real EMQX node boots in 10-20 s, and
            # the first check passes one interval later; joinTimeoutSeconds may be shorter.
            wait_timeout=max(args.join_timeout_seconds, HEALTHCHECK.verdict_seconds),
            log_driver="json-file",
            log_opts=dict(args.log_opts),
            labels=labels,
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
                    provider=site.provider,
                    depends_on=[*ready, *after],
                    # Fixed name and fixed host ports: the old container must go first, or the
                    # new one cannot bind them.
                    delete_before_replace=True,
                    additional_secret_outputs=["envs"],
                ),
            ),
        )
        return StartedNode(plan=node, container=container)

    def _membership(self, formation: ClusterFormation, node: StartedNode, seed: StartedNode) -> HostCommand:
        """Join the seed once the node's container (and the seed's) is up; leave when removed."""
        args = self._args
        if node is seed:
            # The others join it, it joins no one: the resource exists for its delete (leave).
            script = note_script(f"{node.plan.node_name} is the seed: the other nodes join it")
        else:
            script = join_script(
                node.plan.container_name, node.plan.node_name, seed.plan.node_name, args.join_timeout_seconds
            )
        join = _pinned_to([node], script)
        # A node that cannot leave by itself is forced out by the seed: here when it runs on this
        # host (and is another node), else by the node's eviction on the seed's host.
        same_host = node.plan.host_label == seed.plan.host_label and node is not seed
        return args.sites[node.plan.host_label].shell.command(
            args.plan.names.node_membership(node.plan.short_name),
            create=join,
            update=join,
            delete=leave_script(
                node.plan.container_name, node.plan.node_name, seed.plan.container_name if same_host else None
            ),
            # Its own container and the seed's only: the critical path does not grow with N.
            opts=pulumi.ResourceOptions(parent=formation, depends_on=[node.container, seed.container]),
        )

    def _eviction(self, formation: ClusterFormation, node: NodePlan, seed: StartedNode) -> HostCommand:
        """On the seed's host, force `node` out of the cluster once it is gone, if it is still a
        member (stacks over several hosts). A node leaves by itself first (its membership), but a
        host being retired is already dropped by the other hosts' firewalls, so its nodes' leave
        may not reach them. The node's container depends on this command, so on removal it runs
        after the container went; it never touches a node that runs."""
        args = self._args
        return args.sites[seed.plan.host_label].shell.command(
            args.plan.names.node_eviction(node.short_name),
            create=note_script(
                f"{node.node_name}: forced out of the cluster from the seed's host if it does not leave"
            ),
            delete=evict_script(seed.plan.container_name, node.node_name),
            opts=pulumi.ResourceOptions(parent=formation, depends_on=[seed.container]),
        )

    def _gate(
        self,
        formation: ClusterFormation,
        wave: int,
        verified: Sequence[StartedNode],
        joins: Sequence[HostCommand],
        started: Sequence[StartedNode],
    ) -> HostCommand:
        """Every node so far is running in the cluster; pinned to all of them, so the last gate
        re-verifies the whole cluster after any change."""
        args = self._args
        check = _pinned_to(
            verified,
            verify_script(
                args.plan.seed.container_name,
                [node.plan.node_name for node in verified],
                args.join_timeout_seconds,
                f"wave {wave}",
            ),
        )
        # On the seed's host: `cluster status` there lists every node of every host.
        return args.sites[args.plan.seed.host_label].shell.command(
            args.plan.names.wave_gate(wave),
            create=check,
            update=check,
            opts=pulumi.ResourceOptions(parent=formation, depends_on=[*joins, *(node.container for node in started)]),
        )


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
