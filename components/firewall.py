"""ClusterFirewall: the host's cluster ports open to the cluster's hosts only, and with
adminNetworks its nodes' HTTPS dashboard ports open to those networks only.

Creates one host command, `<name>-rules`: on create and update it (re)writes the rules for the
host's distribution and RPC ports and its admin ports (iptables chains or an nftables table of
ours, replaced in one transaction); on delete it removes them. For stacks over several hosts and
for any stack with adminNetworks (StackConfig.opens_firewall), unless manageFirewall is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components import names
from components.config import StackConfig
from components.host_site import HostSite
from components.hostexec import HostShell
from components.plan import ClusterPlan
from components.render.host_scripts import firewall_apply_script, firewall_remove_script


@dataclass(frozen=True)
class ClusterFirewallArgs:
    ports: Sequence[int]
    peers: Sequence[str]  # every cluster host's address, this host's included
    shell: HostShell
    admin_ports: Sequence[int] = ()  # the nodes' dashboard ports (and Prometheus's), with adminNetworks
    admin_networks: Sequence[str] = ()

    @classmethod
    def of(cls, config: StackConfig, plan: ClusterPlan, site: HostSite) -> ClusterFirewallArgs:
        return cls(
            ports=site.host.ports("cluster"),
            peers=[peer.address for peer in plan.hosts],
            shell=site.shell,
            admin_ports=site.host.ports("admin"),
            admin_networks=config.access.admin_networks,
        )


class ClusterFirewall(pulumi.ComponentResource):
    """Resets connections to the host's cluster ports from anywhere but the cluster's hosts."""

    def __init__(self, name: str, args: ClusterFirewallArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.component_type("ClusterFirewall"), name, None, opts)
        rules = firewall_apply_script(args.ports, args.peers, args.admin_ports, args.admin_networks)
        self.rules = args.shell.command(
            f"{name}-rules",
            create=rules,
            update=rules,
            delete=firewall_remove_script(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Ports only: addresses and networks may stand for Outputs here (args_config), resolved in
        # the rules command's inputs, not in a component's outputs.
        self.register_outputs({"ports": list(args.ports), "adminPorts": list(args.admin_ports)})
