"""HostSite: one Docker host as the per-host steps and the brokers see it.

Every per-host step is built the same way: `<Step>Args.of(config, plan, site)` (the load
balancer also takes the stack's TLS material) and the step's component under `site.opts`; each
`of` takes the same three whether or not it reads all of them. What must be in place before
the host's nodes start goes into `site.ready` (tuning, firewall, preflight).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components import names
from components.hostexec import HostAccess
from components.plan import HostPlan


@dataclass
class HostSite:
    """A host's plan, its shell, its Docker engine, and what runs on it before its nodes."""

    host: HostPlan
    access: HostAccess
    provider: docker.Provider
    opts: pulumi.ResourceOptions  # parent, and for the first host the aliases to single-host names
    ready: list[pulumi.Resource] = field(default_factory=list)

    def resource_name(self, what: str) -> str:
        """`emqx-<host>-<what>`, or `emqx-<what>` for the one host of a single-host stack."""
        return names.host_resource(self.host.name, what)
