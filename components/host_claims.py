"""What a cluster takes on each Docker host that no other cluster may take there: container
names, host-network ports and host paths.

Pure Python. Pulumi names derive from the cluster's name (names.ResourceNames), but these do not:
the broker containers are `emqx<i>` and the load balancer `emqx-lb` on every host, every
container runs on the host network, and the data dirs and the sysctl drop-in come from the
config. Two clusters of one program that reach the same Docker engine would fight over them, so
:class:`ClaimLedger` records what each cluster of a program run claims and names every clash
before the second cluster declares anything. A Docker host is known by its engine address as
configured: two addresses of one machine (a socket and `ssh://`) are not recognised as one, and
an engine given as an Output (its placeholder, args_config) matches no other (then Docker
refuses the second cluster's containers at `pulumi up`: their names are taken).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from components import names
from components.config import StackConfig
from components.plan import ClusterPlan

ClaimKind = Literal["container", "port", "path"]


@dataclass(frozen=True, order=True)
class Claim:
    """One thing on one Docker host that only one cluster can have."""

    docker_host: str  # the engine's address
    kind: ClaimKind
    value: str  # a container name, a port number, a host path

    def text(self) -> str:
        return f"{self.kind} {self.value!r}" if self.kind != "port" else f"port {self.value}"


def cluster_claims(
    config: StackConfig, plan: ClusterPlan, stands_in: Callable[[str], bool] = lambda _: False
) -> dict[Claim, str]:
    """Each claim of a cluster -> what holds it (for messages). A host whose engine address
    `stands_in` for an Output (args_config: the same stand-in in every cluster) claims nothing."""
    claims: dict[Claim, str] = {}
    for host in plan.hosts:
        engine = host.docker_host
        if stands_in(engine):
            continue
        containers = [node.container_name for node in host.nodes] + [names.LB_CONTAINER]
        if config.monitoring.enabled:
            containers.append(names.PROMETHEUS_CONTAINER)
        claims.update({Claim(engine, "container", name): f"{name}'s container" for name in containers})
        claims.update({Claim(engine, "port", str(port.port)): f"{port.owner}'s {port.role}" for port in host.listeners})
        paths = {node.host_dir: f"{node.short_name}'s data dir" for node in host.nodes}
        if config.monitoring.enabled:
            paths[f"{config.data_dir}/prometheus"] = "Prometheus's data dir"
        if config.tuning.manage:
            paths[config.tuning.drop_in] = "the sysctl drop-in"
        claims.update({Claim(engine, "path", path): holder for path, holder in paths.items()})
    return claims


@dataclass
class ClaimLedger:
    """The claims of every cluster declared so far in one program run."""

    held: dict[Claim, tuple[str, str]] = field(default_factory=dict)  # claim -> (cluster, holder)
    clusters: set[str] = field(default_factory=set)

    def claim(self, cluster: str, claims: Mapping[Claim, str]) -> list[str]:
        """Record `cluster`'s claims, or leave the ledger as it was and return one line per other
        cluster and Docker host they clash on, naming both clusters and everything both would take."""
        # Resource names join the cluster's name, a host's and a step's with "-": cluster "edge"
        # on host "a" and a cluster "edge-a" would both name `edge-a-preflight`.
        overlapping = sorted(
            other
            for other in self.clusters
            if other != cluster and (cluster.startswith(f"{other}-") or other.startswith(f"{cluster}-"))
        )
        if overlapping:
            return [
                f"EmqxCluster {cluster!r} and EmqxCluster {other!r}: one name begins with the other's and a "
                f"'-', so their resources' names can be the same ({other}-<host>-<step> and "
                f"{cluster}-<step>): allowed: cluster names neither of which begins with the other's and a '-'"
                for other in overlapping
            ]
        clashes: dict[tuple[str, str], list[str]] = {}
        for claim, holder in sorted(claims.items()):
            # The same cluster claiming again is the same program declared again (a provider
            # process may construct it for the preview and then for the update).
            if claim in self.held and self.held[claim][0] != cluster:
                other, other_holder = self.held[claim]
                clashes.setdefault((other, claim.docker_host), []).append(
                    f"{claim.text()} ({holder}; {other_holder} in {other!r})"
                )
        if not clashes:
            self.clusters.add(cluster)
            self.held.update({claim: (cluster, holder) for claim, holder in claims.items()})
        return [
            f"EmqxCluster {cluster!r} and EmqxCluster {other!r} both take, on Docker host {engine!r}: "
            f"{', '.join(taken)}: allowed: each cluster on Docker hosts of its own (the broker containers are "
            f"named emqx<i> and the load balancer {names.LB_CONTAINER} on every host, all on the host's network)"
            for (other, engine), taken in clashes.items()
        ]
