"""Every derived name in one place: EMQX nodes, containers, images and Pulumi resources.

Pure Python. Names are identities: EMQX keys a node's database by its node name, Docker finds a
container by its name, Pulumi keys state by resource name (the URN). None of them may change for
an existing stack, which is why they derive from the node index and the config only, and why a
renamed Pulumi resource carries an alias to its old name.

Resource names follow one rule: the top component's name (`emqx`) as prefix, a node's resources
prefixed by its short name (`emqx1-dirs`), a wave's gate by its wave (`wave1-verify`, as first
deployed).
"""

from __future__ import annotations

TOP = "emqx"  # the top component; every other resource name derives from it
LB_CONTAINER = "emqx-lb"
IMAGE_REPOSITORY_PREFIX = "emqx-cluster"


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


def node_dirs(short_name: str) -> str:
    return f"{short_name}-dirs"


def node_membership(short_name: str) -> str:
    return f"{short_name}-membership"


def wave_gate(wave: int) -> str:
    return f"wave{wave}-verify"
