"""Preflight: fail before any broker exists when the host cannot take the deployment.

Creates one host command, `<name>-check`, run on create and on every update (the plan may
have changed): Docker answers, every planned port is free (or held by its own container), the
containers' nofile limits fit the Docker daemon's, the data dir is writable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components import names
from components.config import StackConfig
from components.config_types import NAMESPACE
from components.host_site import HostSite
from components.hostexec import HostAccess
from components.plan import ClusterPlan, HostPlan
from components.render.host_scripts import NofileClaim, PortClaim, preflight_script


def port_claims(host: HostPlan) -> list[PortClaim]:
    """Every port the host's containers will listen on: its nodes' and its load balancer's."""
    claims = [
        PortClaim(port=port, owner=node.container_name, role=role)
        for node in host.nodes
        for role, port in node.ports.as_dict().items()
    ]
    return [*claims, PortClaim(port=host.lb_port, owner=names.LB_CONTAINER, role="TLS listener")]


def nofile_claims(config: StackConfig) -> list[NofileClaim]:
    return [
        NofileClaim(config.broker_nofile_limit, "the brokers", f"{NAMESPACE}:brokerNofileLimit"),
        NofileClaim(
            config.lb.nofile_limit,
            "the load balancer (2 x lbWorkerConnections + 1024)",
            f"{NAMESPACE}:lbWorkerConnections",
        ),
    ]


@dataclass(frozen=True)
class PreflightArgs:
    claims: Sequence[PortClaim]
    nofile: Sequence[NofileClaim]
    data_dir: str
    access: HostAccess

    @classmethod
    def of(cls, config: StackConfig, plan: ClusterPlan, site: HostSite) -> PreflightArgs:
        return cls(port_claims(site.host), nofile_claims(config), config.data_dir, site.access)


class Preflight(pulumi.ComponentResource):
    """Checks Docker, every planned port, the containers' nofile limits and the data dir."""

    def __init__(self, name: str, args: PreflightArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.component_type("Preflight"), name, None, opts)
        script = preflight_script(args.claims, args.data_dir, args.nofile)
        self.check = args.access.command(
            f"{name}-check",
            create=script,
            update=script,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
