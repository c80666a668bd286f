"""HostSite: one Docker host as the per-host steps and the brokers see it.

Every per-host step is a component under `site.opts`, named `site.resource_name(...)`, with
args from `<Step>Args.of(config, plan, site, ...)`: host tuning, the firewall, the preflight
and the broker image take those three (whether or not they read all of them), the load
balancer also the stack's TLS material, and monitoring also the host's capacity (with the
memory bound its preflight reads) and the API secret. The brokers and the client registry span
hosts: their args are built in components/emqx_cluster.py from every site (the seed's, for the
registry). What must be in place before the host's nodes start goes into `site.ready`
(tuning, firewall, preflight).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.hostexec import HostShell
from components.names import ResourceNames
from components.plan import HostPlan


@dataclass
class HostSite:
    """A host's plan, its shell, its Docker engine, and what runs on it before its nodes."""

    host: HostPlan
    shell: HostShell
    provider: docker.Provider
    names: ResourceNames  # the cluster's
    opts: pulumi.ResourceOptions  # parent, and for the first host the aliases to single-host names
    ready: list[pulumi.Resource] = field(default_factory=list)

    def resource_name(self, what: str) -> str:
        """`<cluster>-<host>-<what>`, or `<cluster>-<what>` for the one host of a single-host stack."""
        return self.names.host_resource(self.host.name, what)
