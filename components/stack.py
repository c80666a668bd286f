"""EmqxCluster: the top component, wiring config -> plan -> resources in rollout order."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from components.broker import BrokerNodes, BrokerNodesArgs, StartedNode
from components.cluster import ClusterFormation, ClusterFormationArgs
from components.config import NAMESPACE, StackConfig
from components.host import HostTuning, HostTuningArgs
from components.hostexec import HostAccess
from components.image import BrokerImage, BrokerImageArgs
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.plan import LB_CONTAINER_NAME, ClusterPlan, NodePlan, plan_cluster
from components.preflight import Preflight, PreflightArgs
from components.render.broker_env import broker_environment, with_secrets
from components.render.host_scripts import NofileClaim, PortClaim
from components.render.nginx import nginx_settings, render_nginx_conf
from components.secrets import dashboard_password as dashboard_password_of
from components.secrets import erlang_cookie

SELF_SIGNED_VALIDITY_HOURS = 24 * 365
# pulumi-tls replaces a self-signed certificate only once it counts as expired; with this, a
# `pulumi up` in its last 30 days renews it before clients see an expired one.
SELF_SIGNED_EARLY_RENEWAL_HOURS = 24 * 30


def host_sysctls(config: StackConfig, plan: ClusterPlan) -> dict[str, str]:
    """EMQX's tuning values, the user's overrides, and the plan's ephemeral-port settings."""
    settings = config.sysctl_settings()
    settings["net.ipv4.ip_local_port_range"] = plan.port_range_sysctl
    if plan.reserved_ports:
        settings["net.ipv4.ip_local_reserved_ports"] = plan.reserved_ports_sysctl
    return settings


def port_claims(plan: ClusterPlan) -> list[PortClaim]:
    claims = [
        PortClaim(port=port, owner=node.container_name, role=role)
        for node in plan.nodes
        for role, port in node.ports.as_dict().items()
    ]
    return [*claims, PortClaim(port=plan.lb_port, owner=LB_CONTAINER_NAME, role="TLS listener")]


def nofile_claims(config: StackConfig, plan: ClusterPlan) -> list[NofileClaim]:
    return [
        NofileClaim(config.broker_nofile_limit, "the brokers", f"{NAMESPACE}:brokerNofileLimit"),
        NofileClaim(
            nginx_settings(config, plan).worker_rlimit_nofile,
            "the load balancer (2 x lbWorkerConnections + 1024)",
            f"{NAMESPACE}:lbWorkerConnections",
        ),
    ]


class EmqxCluster(pulumi.ComponentResource):
    """N EMQX nodes behind Nginx on one Docker host, tuned, clustered and verified."""

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        # Plan first: a ConfigError from the port plan must surface before any resource is declared.
        plan = plan_cluster(config)
        super().__init__("emqx-cluster:index:EmqxCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        host = HostAccess.from_config(config)
        if config.runs_remotely and config.ssh_host_key is None:
            pulumi.log.warn(
                "emqx-cluster:sshHostKey is unset: host commands will not verify the SSH host key; "
                "set it (e.g. from `ssh-keyscan`) to rule out a man in the middle",
                self,
            )
        provider = docker.Provider(f"{name}-docker", host=config.docker_host, opts=child)

        tuning_deps: list[pulumi.Resource] = []
        if config.manage_sysctls:
            tuning = HostTuning(
                f"{name}-host",
                HostTuningArgs(settings=host_sysctls(config, plan), drop_in=config.sysctl_drop_in, host=host),
                opts=child,
            )
            tuning_deps.append(tuning)
        preflight = Preflight(
            f"{name}-preflight",
            PreflightArgs(
                claims=port_claims(plan), nofile=nofile_claims(config, plan), data_dir=config.data_dir, host=host
            ),
            opts=child,
        )
        image = BrokerImage(
            f"{name}-broker-image",
            BrokerImageArgs(
                base_image=config.broker_image_base,
                repository=f"emqx-cluster/{config.emqx_repository.split('/')[-1]}",
                version=config.emqx_version,
                platform=config.image_platform,
                keep_image=config.keep_image,
                provider=provider,
            ),
            opts=child,
        )

        cookie = erlang_cookie(config.erlang_cookie, f"{name}-erlang-cookie", self)
        dashboard_password = dashboard_password_of(config.dashboard_password, f"{name}-dashboard-password", self)
        secrets = pulumi.Output.all(cookie, dashboard_password)

        def with_node_secrets(node: NodePlan) -> pulumi.Output[dict[str, str]]:
            public = broker_environment(node, plan, config)
            return pulumi.Output.secret(secrets.apply(lambda pair: with_secrets(public, pair[0], pair[1])))

        environments = {node.short_name: with_node_secrets(node) for node in plan.nodes}
        brokers = BrokerNodes(
            f"{name}-brokers",
            BrokerNodesArgs(
                environments=environments,
                log_opts=config.container_log_opts,
                purge_data=config.purge_data,
                wait_timeout_seconds=config.join_timeout_seconds,
                nofile_limit=config.broker_nofile_limit,
                stop_grace_seconds=config.broker_stop_grace_seconds,
                host=host,
                provider=provider,
            ),
            opts=child,
        )

        # Rollout: wave k+1 starts (or is replaced) only after wave k's nodes are healthy and
        # verified in the cluster. The SDK registers a resource only once its dependencies'
        # registrations have completed, so `depends_on` alone orders the steps; the image of a
        # later wave is additionally derived from the previous gate's ID (stable across
        # updates), so its new value cannot even exist before that gate has run.
        # The image component too: deletes go in reverse dependency order, so on destroy the
        # image is removed after the containers that use it.
        gate_deps: list[pulumi.Resource] = [*tuning_deps, preflight, image]
        wave_image: pulumi.Output[str] = image.image_id
        cluster: ClusterFormation | None = None
        for wave_number, wave in enumerate(plan.waves, start=1):
            started = brokers.add_wave(wave, wave_image, after=gate_deps)
            if cluster is None:
                cluster = ClusterFormation(
                    f"{name}-cluster",
                    ClusterFormationArgs(seed=started[0], join_timeout_seconds=config.join_timeout_seconds, host=host),
                    opts=child,
                )
            gate = cluster.add_wave(wave_number, started)
            gate_deps = [gate]
            wave_image = pulumi.Output.all(image.image_id, gate.id).apply(lambda values: str(values[0]))
        brokers.finish()
        assert cluster is not None  # plan.waves is never empty: nodes >= 1
        cluster.finish()

        certificate_pem, private_key_pem = self._tls_material(config, name)
        settings = nginx_settings(config, plan)
        self.load_balancer = LoadBalancer(
            f"{name}-lb",
            LoadBalancerArgs(
                image=config.nginx_image,
                nginx_conf=render_nginx_conf(settings),
                certificate_pem=certificate_pem,
                private_key_pem=private_key_pem,
                nofile_limit=settings.worker_rlimit_nofile,
                keep_image=config.keep_image,
                log_opts=config.container_log_opts,
                stop_grace_seconds=config.lb_stop_grace_seconds,
                provider=provider,
                after=[*tuning_deps, preflight],
            ),
            opts=child,
        )

        self.endpoint = f"{config.client_hostname}:{plan.lb_port}"
        self.node_table = [_node_row(started) for started in sorted(brokers.nodes, key=lambda s: s.plan.index)]
        self.dashboard_urls = [node.dashboard_url for node in plan.nodes]
        self.certificate_pem = pulumi.Output.from_input(certificate_pem)
        self.dashboard_password = dashboard_password
        self.register_outputs(
            {"endpoint": self.endpoint, "nodes": self.node_table, "dashboardUrls": self.dashboard_urls}
        )

    def _tls_material(self, config: StackConfig, name: str) -> tuple[pulumi.Input[str], pulumi.Output[str]]:
        if config.tls_certificate is not None and config.tls_private_key is not None:
            return (
                config.tls_certificate.get_secret_value(),
                pulumi.Output.secret(config.tls_private_key.get_secret_value()),
            )
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        dns_names, ip_addresses = config.self_signed_subjects()
        cert = tls.SelfSignedCert(
            f"{name}-tls-cert",
            private_key_pem=key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=config.client_hostname, organization="emqx-cluster"),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            validity_period_hours=SELF_SIGNED_VALIDITY_HOURS,
            early_renewal_hours=SELF_SIGNED_EARLY_RENEWAL_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child,
        )
        return cert.cert_pem, pulumi.Output.secret(key.private_key_pem)


def _node_row(started: StartedNode) -> dict[str, object]:
    node = started.plan
    return {
        "name": node.node_name,
        "container": node.container_name,
        "wave": node.wave,
        "ports": node.ports.as_dict(),
        "dataDir": node.data_dir,
        "logDir": node.log_dir,
        "dashboard": node.dashboard_url,
    }
