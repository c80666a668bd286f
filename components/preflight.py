"""Preflight: fail before any broker exists when the host cannot take the deployment.

Creates one host command, `<name>-check`, run on create and on every update (the plan may
have changed): Docker answers, every planned port is free (or held by its own container), the
containers' nofile limits fit the Docker daemon's, the data dir is writable, Nginx's declared
source addresses are the host's, and the host's memory holds the expected connections. It
prints the host's memory bound, which the `capacity` output reads (`memory_ceiling`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components import names
from components.capacity import memory_budget
from components.config import StackConfig
from components.config_types import NAMESPACE
from components.host_site import HostSite
from components.hostexec import HostShell
from components.plan import Listener
from components.render.host_scripts import MemoryCheck, NofileClaim, preflight_script

# What the preflight prints last (preflight.sh.j2), read back for the `capacity` output.
MEMORY_LINE = re.compile(r"^memory ceiling: (\d+) connections \(MemTotal (\d+) kB\)$", re.MULTILINE)


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
    claims: Sequence[Listener]
    nofile: Sequence[NofileClaim]
    data_dir: str
    shell: HostShell
    memory: MemoryCheck
    # Nginx's source addresses that must be the host's own: any 127.0.0.0/8 address is.
    local_addresses: Sequence[str]
    local_addresses_key: str

    @classmethod
    def of(cls, config: StackConfig, site: HostSite) -> PreflightArgs:
        host = site.host
        return cls(
            claims=host.listeners,
            nofile=nofile_claims(config),
            data_dir=config.data_dir,
            shell=site.shell,
            memory=MemoryCheck(memory_budget(config, host), config.lb.expected_connections),
            local_addresses=[a for a in host.lb_source_addresses if not ipaddress.IPv4Address(a).is_loopback],
            local_addresses_key=host.config_key("lbSourceAddresses"),
        )


def memory_ceiling(stdout: str) -> tuple[int, int]:
    """(connections, MemTotal kB) from the preflight's output."""
    found = MEMORY_LINE.search(stdout)
    if found is None:
        raise ValueError(f"the preflight printed no memory ceiling: {stdout[-500:]!r}")
    return int(found.group(1)), int(found.group(2))


class Preflight(pulumi.ComponentResource):
    """Checks Docker, every planned port, the containers' nofile limits and the data dir."""

    def __init__(self, name: str, args: PreflightArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.component_type("Preflight"), name, None, opts)
        script = preflight_script(
            args.claims, args.data_dir, args.nofile, args.memory, args.local_addresses, args.local_addresses_key
        )
        self.check = args.shell.command(
            f"{name}-check",
            create=script,
            update=script,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.memory_ceiling: pulumi.Output[tuple[int, int]] = self.check.stdout.apply(memory_ceiling)
        self.register_outputs({})
