"""EmqxCluster: the top component, the operator's step list from config to a verified cluster.

Per host: host tuning -> firewall (several hosts) -> preflight -> broker image; then the broker
cluster over every host (waves, memberships, gates) -> a load balancer on every host. The
secrets and the TLS material feed the brokers and the load balancers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components import names
from components.broker_cluster import BrokerCluster, BrokerClusterArgs, NodeSite, StartedNode
from components.broker_image import BrokerImage, BrokerImageArgs
from components.cluster_tls import cluster_tls
from components.config import StackConfig
from components.firewall import ClusterFirewall, ClusterFirewallArgs
from components.host_tuning import host_tuning
from components.hostexec import HostAccess
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.plan import ClusterPlan, HostPlan, plan_cluster
from components.preflight import Preflight, PreflightArgs, nofile_claims, port_claims
from components.render.nginx import nginx_settings, render_nginx_conf
from components.secrets import broker_environments, dashboard_password, erlang_cookie
from components.tls import TlsMaterial, tls_material


@dataclass(frozen=True)
class HostSite:
    """What one host holds besides its nodes: its shell and engine, and what runs before them."""

    plan: HostPlan
    access: HostAccess
    provider: docker.Provider
    ready: list[pulumi.Resource]  # tuning, firewall, preflight
    image: BrokerImage
    opts: pulumi.ResourceOptions  # parent, and for the first host the aliases to single-host names

    def node_site(self) -> NodeSite:
        # The image too: deletes go in reverse dependency order, so on destroy the image is
        # removed after the containers that use it.
        return NodeSite(self.access, self.provider, self.image.image_id, [*self.ready, self.image])


class EmqxCluster(pulumi.ComponentResource):
    """N EMQX nodes on one or several Docker hosts, each host behind its own Nginx, tuned,
    clustered and verified."""

    def __init__(self, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        # Plan first: a ConfigError from the port plan must surface before any resource is declared.
        plan = plan_cluster(config)
        super().__init__("emqx-cluster:index:EmqxCluster", names.TOP, None, opts)
        sites = [self._host_site(config, plan, host, first=position == 0) for position, host in enumerate(plan.hosts)]
        cookie = erlang_cookie(config.erlang_cookie, names.resource("erlang-cookie"), self)
        password = dashboard_password(config.dashboard_password, names.resource("dashboard-password"), self)
        brokers = BrokerCluster(
            names.resource("brokers"),
            BrokerClusterArgs(
                plan=plan,
                sites={site.plan.label: site.node_site() for site in sites},
                environments=broker_environments(plan, config, cookie, password),
                tls=cluster_tls(plan, parent=self) if config.encrypts_cluster_traffic else {},
                log_opts=config.container_log_opts,
                purge_data=config.purge_data,
                join_timeout_seconds=config.join_timeout_seconds,
                nofile_limit=config.broker_nofile_limit,
                stop_grace_seconds=config.broker_stop_grace_seconds,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        tls = tls_material(config, parent=self)
        for site in sites:
            self._load_balancer(config, plan, site, tls)

        self.endpoint = f"{config.client_hostname}:{plan.lb_port}"
        self.endpoints = {host.label: f"{host.address}:{plan.lb_port}" for host in plan.hosts}
        # One A record per host under the name clients use (None until publicHostname is set).
        self.dns_round_robin = {"name": config.public_hostname, "aRecords": [host.address for host in plan.hosts]}
        self.node_table = [_node_row(node) for node in brokers.nodes]
        self.dashboard_urls = [node.dashboard_url for node in plan.nodes]
        self.certificate_pem = tls.certificate_pem
        self.dashboard_password = password
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "endpoints": self.endpoints,
                "dnsRoundRobin": self.dns_round_robin,
                "nodes": self.node_table,
                "dashboardUrls": self.dashboard_urls,
            }
        )

    def _host_site(self, config: StackConfig, plan: ClusterPlan, host: HostPlan, first: bool) -> HostSite:
        """The host's provider, tuning, firewall, preflight and image, named after the host."""
        opts = pulumi.ResourceOptions(parent=self)
        if first and host.name is not None:
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(transformations=[_as_single_host(host.name)])
            )
        access = HostAccess.to(host, host.ssh_private_key or config.ssh_private_key, warn_on=self)
        provider = docker.Provider(names.host_resource(host.name, "docker"), host=host.docker_host, opts=opts)
        ready: list[pulumi.Resource] = [*host_tuning(config, plan, host, access, opts)]
        if config.several_hosts and config.manage_firewall:
            ready.append(
                ClusterFirewall(
                    names.host_resource(host.name, "firewall"), ClusterFirewallArgs.of(plan, host, access), opts=opts
                )
            )
        ready.append(
            Preflight(
                names.host_resource(host.name, "preflight"),
                PreflightArgs(port_claims(host), nofile_claims(config, plan), config.data_dir, access),
                opts=opts,
            )
        )
        image = BrokerImage(
            names.host_resource(host.name, "broker-image"),
            BrokerImageArgs(
                config.broker_image_base,
                config.emqx_repository,
                config.emqx_version,
                config.image_platform,
                config.keep_image,
                provider,
            ),
            opts=opts,
        )
        return HostSite(plan=host, access=access, provider=provider, ready=ready, image=image, opts=opts)

    @staticmethod
    def _load_balancer(config: StackConfig, plan: ClusterPlan, site: HostSite, tls: TlsMaterial) -> LoadBalancer:
        settings = nginx_settings(config, plan, site.plan)
        return LoadBalancer(
            names.host_resource(site.plan.name, "load-balancer"),
            LoadBalancerArgs(
                host=site.plan.name,
                image=config.nginx_image,
                nginx_conf=render_nginx_conf(settings),
                certificate_pem=tls.certificate_pem,
                private_key_pem=tls.private_key_pem,
                nofile_limit=settings.worker_rlimit_nofile,
                keep_image=config.keep_image,
                log_opts=config.container_log_opts,
                stop_grace_seconds=config.lb_stop_grace_seconds,
                provider=site.provider,
                after=site.ready,
            ),
            opts=site.opts,
        )


def _as_single_host(host: str) -> pulumi.ResourceTransformation:
    """Aliases every resource of the first host to the name it had in a single-host stack, so
    moving such a stack to a `hosts` list (or growing it to several hosts) keeps its resources."""

    def add_alias(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        previous = names.single_host_name(args.name, host)
        if previous == args.name:
            return None
        return pulumi.ResourceTransformationResult(
            args.props,
            pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name=previous)])),
        )

    return add_alias


def _node_row(started: StartedNode) -> dict[str, object]:
    node = started.plan
    return {
        "name": node.node_name,
        "host": node.host,
        "container": node.container_name,
        "wave": node.wave,
        "ports": node.ports.as_dict(),
        "dataDir": node.data_dir,
        "logDir": node.log_dir,
        "dashboard": node.dashboard_url,
    }
