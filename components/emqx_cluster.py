"""EmqxCluster: the top component, the operator's step list from config to a verified cluster.

host tuning -> preflight -> broker image -> broker cluster (waves, memberships, gates) -> load
balancer; the secrets and TLS material feed the brokers and the load balancer.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components import names
from components.broker_cluster import BrokerCluster, BrokerClusterArgs, StartedNode
from components.broker_image import BrokerImage, BrokerImageArgs
from components.config import StackConfig
from components.host_tuning import host_tuning
from components.hostexec import HostAccess
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.plan import plan_cluster
from components.preflight import Preflight, PreflightArgs, nofile_claims, port_claims
from components.render.nginx import nginx_settings, render_nginx_conf
from components.secrets import broker_environments, dashboard_password, erlang_cookie
from components.tls import tls_material


class EmqxCluster(pulumi.ComponentResource):
    """N EMQX nodes behind Nginx on one Docker host, tuned, clustered and verified."""

    def __init__(self, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        # Plan first: a ConfigError from the port plan must surface before any resource is declared.
        plan = plan_cluster(config)
        super().__init__("emqx-cluster:index:EmqxCluster", names.TOP, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        host = HostAccess.from_config(config, warn_on=self)
        provider = docker.Provider(names.resource("docker"), host=config.docker_host, opts=child)

        tuning = host_tuning(config, plan, host, parent=self)
        preflight = Preflight(
            names.resource("preflight"),
            PreflightArgs(port_claims(plan), nofile_claims(config, plan), config.data_dir, host),
            opts=child,
        )
        image = BrokerImage(
            names.resource("broker-image"),
            BrokerImageArgs(
                config.broker_image_base,
                config.emqx_repository,
                config.emqx_version,
                config.image_platform,
                config.keep_image,
                provider,
            ),
            opts=child,
        )
        cookie = erlang_cookie(config.erlang_cookie, names.resource("erlang-cookie"), self)
        password = dashboard_password(config.dashboard_password, names.resource("dashboard-password"), self)
        brokers = BrokerCluster(
            names.resource("brokers"),
            BrokerClusterArgs(
                plan=plan,
                image_id=image.image_id,
                environments=broker_environments(plan, config, cookie, password),
                log_opts=config.container_log_opts,
                purge_data=config.purge_data,
                join_timeout_seconds=config.join_timeout_seconds,
                nofile_limit=config.broker_nofile_limit,
                stop_grace_seconds=config.broker_stop_grace_seconds,
                host=host,
                provider=provider,
                # The image too: deletes go in reverse dependency order, so on destroy the image
                # is removed after the containers that use it.
                after=[*tuning, preflight, image],
            ),
            opts=child,
        )
        tls = tls_material(config, parent=self)
        settings = nginx_settings(config, plan)
        LoadBalancer(
            names.resource("load-balancer"),
            LoadBalancerArgs(
                image=config.nginx_image,
                nginx_conf=render_nginx_conf(settings),
                certificate_pem=tls.certificate_pem,
                private_key_pem=tls.private_key_pem,
                nofile_limit=settings.worker_rlimit_nofile,
                keep_image=config.keep_image,
                log_opts=config.container_log_opts,
                stop_grace_seconds=config.lb_stop_grace_seconds,
                provider=provider,
                after=[*tuning, preflight],
            ),
            opts=child,
        )

        self.endpoint = f"{config.client_hostname}:{plan.lb_port}"
        self.node_table = [_node_row(node) for node in brokers.nodes]
        self.dashboard_urls = [node.dashboard_url for node in plan.nodes]
        self.certificate_pem = tls.certificate_pem
        self.dashboard_password = password
        self.register_outputs(
            {"endpoint": self.endpoint, "nodes": self.node_table, "dashboardUrls": self.dashboard_urls}
        )


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
