"""Every derived name in one place: EMQX nodes, containers, images, Docker labels, and the
Pulumi resources' names and component type tokens.

Pure Python. Names are identities: EMQX keys a node's database by its node name, Docker finds a
container by its name, Pulumi keys state by resource name (the URN). None of them may change for
an existing stack, which is why they derive from the node index and the config only, and why a
renamed Pulumi resource carries an alias to its old name.

Resource names follow one rule: the top component's name (`emqx`) as prefix, then the host's
name for a host's resources over several hosts (`emqx-b-preflight`), a node's resources prefixed
by its short name (`emqx1-dirs`), a wave's gate by its wave (`wave1-verify`, as first deployed).
"""

from __future__ import annotations

TOP = "emqx"  # the top component; every other resource name derives from it
LB_CONTAINER = "emqx-lb"
PROMETHEUS_CONTAINER = "emqx-prometheus"
IMAGE_REPOSITORY_PREFIX = "emqx-cluster"

# Docker labels on the stack's containers.
NODE_LABEL = "io.emqx-cluster.node"  # a broker's EMQX node name
HEALTHCHECK_LABEL = "io.emqx-cluster.healthcheck"  # a broker's health check, as text
CERTIFICATE_LABEL = "io.emqx-cluster.certificate"  # a broker's cluster certificate fingerprint
ROLE_LABEL = "io.emqx-cluster.role"  # the load balancer's role
ADMIN_CERTIFICATE_LABEL = "io.emqx-cluster.admin-certificate"  # the HTTPS dashboard's certificate digest


def component_type(kind: str) -> str:
    """The type token of one of the program's components: `emqx-cluster:index:<kind>` (the
    Pulumi package the URNs of every deployed stack carry: it never changes)."""
    return f"emqx-cluster:index:{kind}"


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


def resource(what: str) -> str:
    """A resource of the stack as a whole: `emqx-<what>`."""
    return f"{TOP}-{what}"


def host_resource(host_name: str | None, what: str) -> str:
    """A resource of one host: `emqx-<host name>-<what>`; the one host of a single-host stack
    (None) keeps the stack-wide name it was first deployed with, `emqx-<what>`."""
    return resource(what if host_name is None else f"{host_name}-{what}")


def single_host_name(name: str, host_name: str) -> str:
    """The name a resource of host `host_name` had when the stack ran on that host alone: growing
    a single-host stack to several hosts hands its resources to the first host (an alias)."""
    return name.replace(f"{TOP}-{host_name}-", f"{TOP}-", 1)


def node_certificate(short_name: str, what: str) -> str:
    return f"{short_name}-tls-{what}"


def lb_container(host_name: str | None) -> str:
    """The load balancer's Pulumi name; its Docker name is LB_CONTAINER on every host."""
    return LB_CONTAINER if host_name is None else host_resource(host_name, "lb")


def node_dirs(short_name: str) -> str:
    return f"{short_name}-dirs"


def node_membership(short_name: str) -> str:
    return f"{short_name}-membership"


def node_eviction(short_name: str) -> str:
    return f"{short_name}-eviction"


def wave_gate(wave: int) -> str:
    return f"wave{wave}-verify"


def node_access_files(short_name: str) -> str:
    return f"{short_name}-access-files"


def mqtt_client(user_id: str) -> str:
    """A declared MQTT client's registration: `emqx-mqtt-client-<id>` (ids are URL- and URN-safe)."""
    return resource(f"mqtt-client-{user_id}")
