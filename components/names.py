"""Every derived name in one place: EMQX nodes, containers, images, Docker labels, and the
Pulumi resources' names and component type tokens.

Pure Python. Names are identities: EMQX keys a node's database by its node name, Docker finds a
container by its name, Pulumi keys state by resource name (the URN). None of them may change for
an existing stack, which is why they derive from the node index and the config only, and why a
renamed Pulumi resource carries an alias to its old name.

Resource names follow one rule (:class:`ResourceNames`): the cluster component's name (`emqx` in
the stack-config program) as prefix, then the host's name for a host's resources over several
hosts (`emqx-b-preflight`), a node's resources by its short name and a wave's gate by its wave;
the cluster named `emqx` writes those last two without its prefix (`emqx1-dirs`, `wave1-verify`),
as first deployed.
"""

from __future__ import annotations

from dataclasses import dataclass

TOP = "emqx"  # the stack-config program's cluster: its resources keep their first names
LB_CONTAINER = "emqx-lb"
PROMETHEUS_CONTAINER = "emqx-prometheus"
IMAGE_REPOSITORY_PREFIX = "emqx-cluster"

# Docker labels on the stack's containers.
NODE_LABEL = "io.emqx-cluster.node"  # a broker's EMQX node name
HEALTHCHECK_LABEL = "io.emqx-cluster.healthcheck"  # a broker's health check, as text
CERTIFICATE_LABEL = "io.emqx-cluster.certificate"  # a broker's cluster certificate fingerprint
ROLE_LABEL = "io.emqx-cluster.role"  # the load balancer's role
ADMIN_CERTIFICATE_LABEL = "io.emqx-cluster.admin-certificate"  # the HTTPS dashboard's certificate digest


# The Pulumi package: the component package's name (PulumiPlugin.yaml, provider.py) and the
# first part of every component's type token, which the URNs of every deployed stack carry.
PACKAGE = "emqx-cluster"


def component_type(kind: str) -> str:
    """The type token of one of the program's components: `emqx-cluster:index:<kind>` (it never
    changes; the component provider serves EmqxCluster under it)."""
    return f"{PACKAGE}:index:{kind}"


def node_short_name(index: int) -> str:
    """`emqx<index>`: EMQX derives the distribution and RPC ports from the trailing number."""
    return f"emqx{index}"


def node_name(index: int, address: str) -> str:
    return f"{node_short_name(index)}@{address}"


def broker_image_repository(emqx_repository: str) -> str:
    """The local repository of the built broker image: emqx/emqx -> emqx-cluster/emqx."""
    return f"{IMAGE_REPOSITORY_PREFIX}/{emqx_repository.split('/')[-1]}"


def broker_image_tag(emqx_repository: str, version: str, context_digest: str) -> str:
    return f"{broker_image_repository(emqx_repository)}:{version}-{context_digest}"


# ------------------------------------------------------------------------ Pulumi resources


@dataclass(frozen=True)
class ResourceNames:
    """The Pulumi names of one cluster's resources, every one derived from the cluster's own name
    (`top`, the EmqxCluster's `name`), so two clusters in one program never share a URN.

    A node's and a wave's resources were first deployed without a prefix (`emqx1-dirs`,
    `wave1-verify`) by the stack-config program, whose cluster is named TOP: that cluster keeps
    those names (its stacks' URNs); a cluster with any other name prefixes them too
    (`<top>-emqx1-dirs`, `<top>-wave1-verify`).
    """

    top: str = TOP

    def resource(self, what: str) -> str:
        """A resource of the cluster as a whole: `<top>-<what>`."""
        return f"{self.top}-{what}"

    def host_resource(self, host_name: str | None, what: str) -> str:
        """A resource of one host: `<top>-<host name>-<what>`; the one host of a single-host stack
        (None) keeps the cluster-wide name it was first deployed with, `<top>-<what>`."""
        return self.resource(what if host_name is None else f"{host_name}-{what}")

    def single_host_name(self, name: str, host_name: str) -> str:
        """The name a resource of host `host_name` had when the stack ran on that host alone: growing
        a single-host stack to several hosts hands its resources to the first host (an alias)."""
        return name.replace(f"{self.top}-{host_name}-", f"{self.top}-", 1)

    def lb_container(self, host_name: str | None) -> str:
        """The load balancer's Pulumi name (`<top>-lb`, `<top>-<host>-lb`); its Docker name is
        LB_CONTAINER on every host."""
        return self.host_resource(host_name, "lb")

    def _node_level(self, name: str) -> str:
        """A node's or a wave's resource: unprefixed for the cluster named TOP (as first deployed)."""
        return name if self.top == TOP else self.resource(name)

    def node_container(self, short_name: str) -> str:
        return self._node_level(short_name)

    def node_certificate(self, short_name: str, what: str) -> str:
        return self._node_level(f"{short_name}-tls-{what}")

    def node_dirs(self, short_name: str) -> str:
        return self._node_level(f"{short_name}-dirs")

    def node_membership(self, short_name: str) -> str:
        return self._node_level(f"{short_name}-membership")

    def node_eviction(self, short_name: str) -> str:
        return self._node_level(f"{short_name}-eviction")

    def wave_gate(self, wave: int) -> str:
        return self._node_level(f"wave{wave}-verify")

    def node_access_files(self, short_name: str) -> str:
        return self._node_level(f"{short_name}-access-files")

    def mqtt_client(self, user_id: str) -> str:
        """A declared MQTT client's registration: `<top>-mqtt-client-<id>` (ids are URL- and URN-safe)."""
        return self.resource(f"mqtt-client-{user_id}")
