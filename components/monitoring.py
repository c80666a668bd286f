"""Monitoring: Prometheus on one host (metrics on), scraping that host's nodes and its Nginx,
with the alert rules of the plan.

Creates `emqx[-<host>]-prometheus-dirs` (its data dir on the host, owned by the image's user;
kept on destroy unless purgeData), `emqx[-<host>]-prometheus-image` (prom/prometheus, used as
is when already on the host) and `emqx[-<host>]-prometheus` (the container, host network, its
listener on metricsListenAddress, loopback unless set; config and rules as uploads, so a change
replaces it and the data dir keeps the history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components import names
from components.capacity import HostCapacity
from components.config import StackConfig
from components.host_site import HostSite
from components.plan import ClusterPlan
from components.render.host_scripts import kept_dirs_delete_script, node_dirs_script
from components.render.prometheus import (
    CONFIG_PATH,
    DATA_PATH,
    PROMETHEUS_UID,
    RULES_PATH,
    STATS_SECRET_PATH,
    alert_thresholds,
    prometheus_settings,
    render_alert_rules,
    render_prometheus_config,
)

# Prometheus stops on SIGTERM, writing its head block out: a few seconds for a small store.
STOP_GRACE_SECONDS = 30


@dataclass(frozen=True)
class MonitoringArgs:
    image: str
    arguments: Sequence[str]
    config_text: str
    rules_text: pulumi.Output[str]  # the thresholds include the memory bound the host computed
    stats_secret: pulumi.Output[str] | None  # the API secret, when the nodes' stats ask for it
    host_dir: str
    purge_data: bool
    keep_image: bool
    log_opts: Mapping[str, str]
    site: HostSite

    @classmethod
    def of(
        cls,
        config: StackConfig,
        plan: ClusterPlan,
        site: HostSite,
        capacity: pulumi.Output[HostCapacity],
        api_secret: pulumi.Output[str],
    ) -> MonitoringArgs:
        host = site.host
        settings = prometheus_settings(config, host)
        return cls(
            image=config.monitoring.image,
            arguments=settings.arguments,
            config_text=render_prometheus_config(settings),
            rules_text=capacity.apply(
                lambda known: render_alert_rules(host.label, alert_thresholds(config, plan, host, known))
            ),
            stats_secret=api_secret if settings.stats_username else None,
            host_dir=f"{config.data_dir}/prometheus",
            purge_data=config.purge_data,
            keep_image=config.keep_image,
            log_opts=config.container_log_opts,
            site=site,
        )


class Monitoring(pulumi.ComponentResource):
    """One host's Prometheus: what it scrapes and when it alerts, all from the plan."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.component_type("Monitoring"), name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self, depends_on=list(site.ready))
        dirs = site.shell.command(
            site.resource_name("prometheus-dirs"),
            create=node_dirs_script(args.host_dir, ("data",), PROMETHEUS_UID),
            delete=kept_dirs_delete_script(
                args.host_dir, "Prometheus's metrics history", args.purge_data, names.PROMETHEUS_CONTAINER
            ),
            opts=child,
        )
        on_host = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(provider=site.provider))
        image = docker.RemoteImage(
            site.resource_name("prometheus-image"), name=args.image, keep_locally=args.keep_image, opts=on_host
        )
        self.container = docker.Container(
            site.resource_name("prometheus"),
            name=names.PROMETHEUS_CONTAINER,
            image=image.image_id,
            network_mode="host",
            restart="always",
            must_run=True,
            user=f"{PROMETHEUS_UID}:{PROMETHEUS_UID}",
            entrypoints=["/bin/prometheus"],
            command=list(args.arguments),
            volumes=[docker.ContainerVolumeArgs(host_path=f"{args.host_dir}/data", container_path=DATA_PATH)],
            uploads=[
                # Readable by the image's user (nobody); nothing secret in either.
                docker.ContainerUploadArgs(file=CONFIG_PATH, content=args.config_text, permissions="0644"),
                docker.ContainerUploadArgs(file=RULES_PATH, content=args.rules_text, permissions="0644"),
                # Uploads are root's (terraform-provider-docker v4.5.0 resource_docker_container_funcs.go:
                # a tar header without Uid/Gid, CopyToContainerOptions without CopyUIDGID): the secret
                # is the root group's alone, and Prometheus runs in that group too (group_adds).
                *(
                    [
                        docker.ContainerUploadArgs(
                            file=STATS_SECRET_PATH, content=pulumi.Output.secret(args.stats_secret), permissions="0440"
                        )
                    ]
                    if args.stats_secret is not None
                    else []
                ),
            ],
            group_adds=["0"] if args.stats_secret is not None else None,
            log_driver="json-file",
            log_opts=dict(args.log_opts),
            labels=[docker.ContainerLabelArgs(label=names.ROLE_LABEL, value="metrics")],
            destroy_grace_seconds=STOP_GRACE_SECONDS,
            stop_timeout=STOP_GRACE_SECONDS,
            opts=pulumi.ResourceOptions.merge(
                on_host,
                pulumi.ResourceOptions(
                    depends_on=[dirs, *site.ready], delete_before_replace=True, additional_secret_outputs=["uploads"]
                ),
            ),
        )
        self.register_outputs({"container": self.container.name})
