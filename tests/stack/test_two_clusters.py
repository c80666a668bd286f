"""Two EmqxClusters in one program: every resource name derives from the cluster's name, so no
two resources share a URN, and the cluster named `emqx` declares what the stack-config program
declares; two clusters on one Docker host are refused before either declares a resource there."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pytest

from components.args_config import stack_args
from components.emqx_cluster import EmqxCluster
from tests.support.program import ProgramRun, run_program
from tests.support.stackfiles import parse_config, stack_config, with_changes

FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----\n"
EDGE_HOST = {
    "dockerHost": "ssh://deploy@10.0.0.21",
    "sshHost": "10.0.0.21",
    "sshUser": "deploy",
    "advertiseAddress": "10.0.0.21",
}


def clusters(*declared: tuple[str, Mapping[str, Any], Mapping[str, str]]) -> Callable[[], None]:
    """A program declaring one EmqxCluster per (name, config, secrets), in that order."""

    def program() -> None:
        for name, config, secrets in declared:
            EmqxCluster(name, stack_args(parse_config(config, secrets)))

    return program


def descendants(run: ProgramRun, name: str) -> list[str]:
    """The names of the component called `name` and of everything under it."""
    top = run.named(name, custom=False)
    by_urn = run.by_urn()
    found = []
    for resource in run.resources:
        parent: str | None = resource.urn
        while parent and parent != top.urn:
            parent = by_urn[parent].parent if parent in by_urn else None
        if parent == top.urn:
            found.append(resource.name)
    return found


@pytest.fixture(scope="module")
def side_by_side() -> ProgramRun:
    edge = with_changes(stack_config("dev"), **EDGE_HOST)
    program = clusters(("emqx", stack_config("dev"), {}), ("edge", edge, {"sshPrivateKey": FAKE_KEY}))
    return run_program({}, program=program, stack="dev")


def test_two_clusters_in_one_program_share_no_urn(side_by_side: ProgramRun) -> None:
    repeated = [urn for urn, count in Counter(r.urn for r in side_by_side.resources).items() if count > 1]
    assert repeated == []
    assert len(side_by_side.of_type("docker:index/container:Container")) == 2 * (3 + 1)


def test_every_resource_of_a_cluster_is_named_after_it(side_by_side: ProgramRun) -> None:
    edge = descendants(side_by_side, "edge")
    assert len(edge) == len(descendants(side_by_side, "emqx"))  # the same cluster on another host
    assert [name for name in edge if name != "edge" and not name.startswith("edge-")] == []
    for name in ("edge-emqx1-dirs", "edge-emqx2-membership", "edge-wave1-verify", "edge-lb", "edge-emqx1"):
        assert name in edge, name


def test_the_cluster_named_emqx_declares_what_the_stack_config_program_declares(side_by_side: ProgramRun) -> None:
    alone = run_program(stack_config("dev"), stack="dev")
    first = set(descendants(side_by_side, "emqx"))
    urns = {r.urn for r in side_by_side.resources if r.name in first}
    assert urns == {r.urn for r in alone.resources}


def test_two_clusters_on_one_docker_host_are_refused_naming_both_and_what_they_would_share() -> None:
    program = clusters(("emqx", stack_config("dev"), {}), ("edge", stack_config("dev"), {}))
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as raised:
        run_program({}, program=program, stack="dev", into=run)
    message = str(raised.value)
    assert (
        "EmqxCluster 'edge' and EmqxCluster 'emqx' both take, on Docker host 'unix:///var/run/docker.sock'" in message
    )
    assert "container 'emqx1' (emqx1's container; emqx1's container in 'emqx')" in message
    assert "port 8884 (emqx-lb's TLS listener; emqx-lb's TLS listener in 'emqx')" in message
    assert "path '/var/lib/emqx-cluster/dev/emqx1'" in message
    # Refused before the second cluster declared anything.
    assert not [r for r in run.resources if r.name.startswith("edge")]
