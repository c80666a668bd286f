"""HostTuning: kernel settings on the Docker host, as a sysctl.d drop-in applied at once.

Creates one host command, `<name>-sysctls`: apply (saving the values found first) on create and
update, restore those values and remove the drop-in on delete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from components import names
from components.config import StackConfig
from components.host_site import HostSite
from components.hostexec import HostShell
from components.plan import ClusterPlan, HostPlan
from components.render.host_scripts import sysctl_apply_script, sysctl_restore_script


def host_sysctls(config: StackConfig, plan: ClusterPlan, host: HostPlan) -> dict[str, str]:
    """EMQX's tuning values, the user's overrides, and the host's ephemeral-port settings."""
    settings = config.tuning.settings()
    settings["net.ipv4.ip_local_port_range"] = plan.port_range_sysctl
    if host.reserved_ports:
        settings["net.ipv4.ip_local_reserved_ports"] = host.reserved_ports_sysctl
    return settings


@dataclass(frozen=True)
class HostTuningArgs:
    settings: Mapping[str, str]  # EMQX tuning + overrides + the plan's port range and reservations
    drop_in: str
    shell: HostShell

    @classmethod
    def of(cls, config: StackConfig, plan: ClusterPlan, site: HostSite) -> HostTuningArgs:
        return cls(settings=host_sysctls(config, plan, site.host), drop_in=config.tuning.drop_in, shell=site.shell)


class HostTuning(pulumi.ComponentResource):
    """Applies sysctls idempotently; deleting it restores the values found before the first apply."""

    def __init__(self, name: str, args: HostTuningArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.component_type("HostTuning"), name, None, opts)
        self.sysctls = args.shell.command(
            f"{name}-sysctls",
            create=sysctl_apply_script(args.settings, args.drop_in),
            delete=sysctl_restore_script(args.drop_in),
            # A settings or connection change is an in-place update (re-runs the idempotent apply).
            # A replacement happens only on request (`pulumi up --replace`): then restore first,
            # then apply; the default order would apply, then let the old delete restore the old
            # values and remove the shared drop-in, leaving the host untuned.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"dropIn": args.drop_in, "settings": dict(args.settings)})
