"""Stacks deployed by earlier commits upgrade with nothing lost.

A stack deployed with the first layout upgrades to the current one with no deletion and no
replacement of anything the layout moved: the real engine resolves the aliases of moved and
renamed components (without them, every moved resource would be created anew and its old URN
deleted).

The first layout is the commit before the restructure (BrokerNodes and ClusterFormation side by
side under the top component, the load balancer component named like its container). It is
deployed with the real engine, then the project's files are swapped for the working tree's.
The one thing allowed to be replaced is a new broker image and, rolling wave by wave onto it,
the broker containers: the image's tag names a digest of its build inputs, and that digest was
refined after the restructure (it now covers the base image and platform), MQTT access
changed every broker's environment, and the capacity caps changed Nginx's config (its
container is replaced). What access added (each node's access files, the client
registry and its secrets) is created, nothing else. At the restructure itself (commit
RESTRUCTURE) the preview planned `same` for every resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.e2e.cluster_probe import cluster_status
from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import E2eImages, ensure_images
from tests.support.e2e.pulumi_cli import (
    AFTER_STDIN_SCRIPTS,
    BEFORE_STDIN_SCRIPTS,
    PulumiProject,
    in_place_only,
    step_ops,
)
from tests.support.e2e.stacks import before_access, dev_like

pytestmark = pytest.mark.e2e

FIRST_LAYOUT = "f79e218c73cbede6172a908138feb03b229736f0"
RESTRUCTURE = "f34b96f"
# A new image name replaces the image and rolls the brokers onto it (by design, wave by wave);
# MQTT access changes every broker's environment too, and the capacity caps (max_conns) Nginx's
# config, whose uploads replace its container (clients reconnect once).
FOLLOWS_A_NEW_IMAGE = re.compile(r"^(emqx-broker-image-build|emqx\d+|emqx-lb)$")
# What MQTT access and the TLS session tickets added: created on the first `pulumi up` after
# them (nothing moved or renamed).
ADDED_SINCE = re.compile(
    r"^(emqx\d+-access-files|emqx-clients|emqx-mqtt-acl|emqx-api-secret|emqx-mqtt-salt-key|emqx-tls-ticket-key-\d+)$"
)


@pytest.fixture
def deployed_at(
    bin_dir: Path, e2e_host_session: E2eHost, e2e_images: E2eImages, tmp_path: Path
) -> Iterator[Callable[[str], PulumiProject]]:
    """Deploys a dev-like stack with the program as in a commit; destroyed after the test."""
    deployed: list[PulumiProject] = []

    def deploy(commit: str) -> PulumiProject:
        host = e2e_host_session
        ensure_images(host)  # an earlier stack's destroy removed the nginx image, as on a real host
        project = PulumiProject.create(tmp_path / "project", bin_dir, commit=commit, stack="old", netns=host.netns_path)
        project.init_stack(before_access(dev_like(host, tmp_path)))
        deployed.append(project)
        project.up()
        return project

    yield deploy
    for project in deployed:
        project.destroy()


def test_first_layout_upgrades_without_replacing_or_deleting_anything(
    deployed_at: Callable[[str], PulumiProject], e2e_host_session: E2eHost
) -> None:
    project = deployed_at(FIRST_LAYOUT)
    urns_before = {r["urn"] for r in project.resources()}
    project.switch_to(None)

    ops = step_ops(project.preview())
    moved_or_kept = {name: op for name, op in ops.items() if not FOLLOWS_A_NEW_IMAGE.match(name)}
    assert {
        name: op for name, op in moved_or_kept.items() if set(op) - {"same", "update"} and not ADDED_SINCE.match(name)
    } == {}
    assert not [name for name, op in ops.items() if "delete" in op]
    created = [name for name, op in ops.items() if "create" in op]
    assert created and all(ADDED_SINCE.match(name) for name in created), created
    project.up()
    # Same resources, now under their new URNs (the old ones were aliases), and the new ones.
    assert len({r["urn"] for r in project.resources()}) == len(urns_before) + len(created)
    project.up("--expect-no-changes")
    assert cluster_status(e2e_host_session, "emqx1")["running_nodes"] == [f"emqx{i}@127.0.0.1" for i in (1, 2, 3)]


def test_host_commands_move_to_stdin_in_place_without_restarting_a_node(
    deployed_at: Callable[[str], PulumiProject], e2e_host_session: E2eHost, tmp_path: Path
) -> None:
    """The scripts' move to stdin and the restructure change the commands' inputs only: every
    command is updated in place (its idempotent script runs once more), nothing is created,
    deleted or replaced, no container restarts, and the sysctl values saved at the first apply
    stay the ones restored on destroy."""
    project, host = deployed_at(BEFORE_STDIN_SCRIPTS), e2e_host_session
    containers = ("emqx1", "emqx2", "emqx3", "emqx-lb")
    started = host.docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *containers).stdout
    saved = tmp_path / "sysctl.d" / "60-emqx-cluster.conf.before"
    saved_before = saved.read_text()
    project.switch_to(AFTER_STDIN_SCRIPTS)

    preview = project.preview()
    assert in_place_only(preview) == {}, in_place_only(preview)
    project.up()
    assert host.docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *containers).stdout == started
    assert saved.read_text() == saved_before
    project.up("--expect-no-changes")
    assert cluster_status(host, "emqx1")["running_nodes"] == [f"emqx{i}@127.0.0.1" for i in (1, 2, 3)]
