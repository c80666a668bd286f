"""LoadBalancer: the official nginx image on the host network, with the rendered stream config.

Creates `emqx-lb-image` (the nginx image; an image already on the host is used as is, never
pulled: terraform-provider-docker v4.5.0 resource_docker_image_funcs.go findImage looks locally
first) and `emqx-lb` (the container, with nginx.conf, certificate and key as uploads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components import names
from components.config import StackConfig
from components.host_site import HostSite
from components.names import ResourceNames
from components.plan import ClusterPlan
from components.render.nginx import CONTAINER_RUNTIME, nginx_settings, render_nginx_conf
from components.tls import TlsMaterial


@dataclass(frozen=True)
class LoadBalancerArgs:
    host_name: str | None  # the host's name over several hosts (names its resources), None on one
    names: ResourceNames  # the cluster's
    image: str  # nginx:<tag>; the official image has the stream module built in
    nginx_conf: str
    certificate_pem: pulumi.Input[str]
    private_key_pem: pulumi.Input[str]  # secret
    client_ca_pem: pulumi.Input[str] | None  # clients must present a certificate it signed
    client_crl_pem: pulumi.Input[str] | None
    ticket_keys: Sequence[pulumi.Output[str]]  # base64, secret; the issuing one first
    nofile_limit: int
    keep_image: bool
    log_opts: Mapping[str, str]  # json-file rotation, bounded
    stop_grace_seconds: int
    provider: docker.Provider
    ready: Sequence[pulumi.Resource]  # host tuning and preflight: ports reserved, checked

    @classmethod
    def of(cls, config: StackConfig, plan: ClusterPlan, site: HostSite, tls: TlsMaterial) -> LoadBalancerArgs:
        return cls(
            host_name=site.host.name,
            names=site.names,
            image=config.lb.image,
            nginx_conf=render_nginx_conf(nginx_settings(config, plan, site.host)),
            certificate_pem=tls.certificate_pem,
            private_key_pem=tls.private_key_pem,
            client_ca_pem=tls.client_ca_pem,
            client_crl_pem=tls.client_crl_pem,
            ticket_keys=tls.ticket_keys,
            nofile_limit=config.lb.nofile_limit,
            keep_image=config.keep_image,
            log_opts=config.container_log_opts,
            stop_grace_seconds=config.lb.stop_grace_seconds,
            provider=site.provider,
            ready=list(site.ready),
        )


class LoadBalancer(pulumi.ComponentResource):
    """Nginx terminating TLS and passing PROXY protocol to the brokers.

    Config, certificate and key are container uploads, so any change replaces the container
    (delete first: it holds fixed host ports); clients reconnect once, as on any LB restart.
    """

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The stack-config program's first deployments named it as its container (emqx-lb): the
        # alias keeps its URN and, through it, its children's. Other clusters never had that name.
        super().__init__(
            names.component_type("LoadBalancer"),
            name,
            None,
            pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(
                    aliases=[pulumi.Alias(name=args.names.lb_container(None), parent=opts.parent if opts else None)]
                ),
            )
            if args.host_name is None and args.names.top == names.TOP
            else opts,
        )
        child = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(args.ready))
        container_name = args.names.lb_container(args.host_name)
        image = docker.RemoteImage(
            f"{container_name}-image",
            name=args.image,
            keep_locally=args.keep_image,
            opts=child,
        )
        runtime = CONTAINER_RUNTIME
        self.container = docker.Container(
            container_name,
            name=names.LB_CONTAINER,
            image=image.image_id,
            network_mode="host",
            restart="always",
            must_run=True,
            ulimits=[docker.ContainerUlimitArgs(name="nofile", soft=args.nofile_limit, hard=args.nofile_limit)],
            uploads=[
                docker.ContainerUploadArgs(file="/etc/nginx/nginx.conf", content=args.nginx_conf),
                docker.ContainerUploadArgs(file=runtime.certificate_path, content=args.certificate_pem),
                docker.ContainerUploadArgs(
                    file=runtime.private_key_path,
                    content=pulumi.Output.secret(args.private_key_pem),
                    permissions="0600",
                ),
                # Public by nature, but kept secret in state: it may have been set as a secret.
                *(
                    docker.ContainerUploadArgs(file=path, content=pulumi.Output.secret(content))
                    for path, content in (
                        (runtime.client_ca_path, args.client_ca_pem),
                        (runtime.client_crl_path, args.client_crl_pem),
                    )
                    if content is not None
                ),
                *(
                    docker.ContainerUploadArgs(
                        file=runtime.ticket_key_path(number), content_base64=key, permissions="0600"
                    )
                    for number, key in enumerate(args.ticket_keys, start=1)
                ),
            ],
            log_driver="json-file",
            log_opts=dict(args.log_opts),
            labels=[docker.ContainerLabelArgs(label=names.ROLE_LABEL, value="load-balancer")],
            # The nginx image stops with SIGQUIT (graceful: stop accepting, drain). The provider's
            # delete would SIGKILL at once unless destroy_grace_seconds > 0 (terraform-provider-docker
            # v4.5.0, resource_docker_container_funcs.go, resourceDockerContainerDelete).
            destroy_grace_seconds=args.stop_grace_seconds,
            stop_timeout=args.stop_grace_seconds,
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(delete_before_replace=True, additional_secret_outputs=["uploads"]),
            ),
        )
        self.register_outputs({"container": self.container.name})
