"""Preflight: fail before any broker exists when the host cannot take the deployment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.hostexec import HostAccess
from components.render.host_scripts import NofileClaim, PortClaim, preflight_script


@dataclass(frozen=True)
class PreflightArgs:
    claims: Sequence[PortClaim]
    nofile: Sequence[NofileClaim]
    data_dir: str
    host: HostAccess


class Preflight(pulumi.ComponentResource):
    """Checks Docker, every planned port, the containers' nofile limits and the data dir; runs again whenever the plan changes."""

    def __init__(self, name: str, args: PreflightArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emqx-cluster:index:Preflight", name, None, opts)
        script = preflight_script(args.claims, args.data_dir, args.nofile)
        self.check = args.host.command(
            f"{name}-check",
            create=script,
            update=script,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
