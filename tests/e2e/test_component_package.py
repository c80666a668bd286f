"""The component package as another program uses it, with the real engine: `pulumi package add`
of this folder from the YAML example (examples/yaml), which deploys a three-node cluster on the
e2e host that its generated client publishes through, then destroys it; two clusters in one
program that would share a Docker host are refused at preview, before anything is touched.

The example's properties are kept; the test adds what this e2e host needs (its engine's socket,
throwaway paths, the nofile limits of these machines, sysctls it cannot set), as a user adds
their host's values."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.e2e.cluster_probe import client_context, cluster_status, container_names, round_trip
from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import E2eImages, ensure_images
from tests.support.e2e.pulumi_cli import REPO, PulumiProject, created, package_checkout
from tests.support.e2e.stacks import GLOBAL_SYSCTLS_LEFT_ALONE, KERNEL_REFUSES, host_paths

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "yaml" / "Pulumi.yaml"


def e2e_host_properties(host: E2eHost, root: Path) -> dict[str, Any]:
    """What this host needs beyond the example's properties (tests/support/e2e/stacks.py)."""
    return {
        "dockerHost": host.docker_host,
        # Clients come from this machine over the veth, and check the certificate's address.
        "publicHostname": host.address,
        **host_paths(root),
        # "null" leaves a key alone; a YAML null does not reach the component (seen here).
        "sysctls": {**dict.fromkeys(GLOBAL_SYSCTLS_LEFT_ALONE, "null"), **KERNEL_REFUSES},
    }


@pytest.fixture(scope="module")
def package(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_checkout(tmp_path_factory.mktemp("package") / "emqx-cluster", bin_dir)


def yaml_program(bin_dir: Path, root: Path, document: dict[str, Any]) -> PulumiProject:
    """A Pulumi YAML project in `root` with `document` as its Pulumi.yaml, as a user starts one:
    without the `packages` entry that `pulumi package add` writes."""
    root.mkdir(parents=True)
    for sub in ("state", "home"):
        (root / sub).mkdir()
    (root / "Pulumi.yaml").write_text(yaml.safe_dump({k: v for k, v in document.items() if k != "packages"}))
    return PulumiProject(directory=root, bin_dir=bin_dir, stack="e2e")


@pytest.fixture(scope="module")
def example(
    bin_dir: Path,
    package: Path,
    e2e_host_session: E2eHost,
    e2e_images: E2eImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PulumiProject]:
    ensure_images(e2e_host_session)  # an earlier stack's destroy removed the nginx image
    root = tmp_path_factory.mktemp("yaml-example")
    document = yaml.safe_load(EXAMPLE.read_text())
    document["resources"]["cluster"]["properties"].update(e2e_host_properties(e2e_host_session, root))
    project = yaml_program(bin_dir, root / "project", document)
    # Outside the host's namespace (nothing is reachable in there); the stack then runs in it.
    project.run("package", "add", str(package))
    project.init_stack({})
    project = dataclasses.replace(project, netns=e2e_host_session.netns_path)
    yield project
    if project.resources():
        project.destroy()


def test_1_package_add_names_this_folder_in_the_example(example: PulumiProject, package: Path) -> None:
    document = yaml.safe_load((example.directory / "Pulumi.yaml").read_text())
    assert Path(document["packages"]["emqx-cluster"]).resolve() == package.resolve()


def test_2_the_example_previews_a_cluster_of_three_nodes(example: PulumiProject) -> None:
    planned = created(example.preview())
    assert planned["cluster"]["type"] == "emqx-cluster:index:EmqxCluster"
    containers = sorted(name for name, state in planned.items() if state["type"] == "docker:index/container:Container")
    assert containers == ["cluster-emqx1", "cluster-emqx2", "cluster-emqx3", "cluster-lb"]


def test_3_the_example_deploys_and_its_client_publishes_through_the_load_balancer(
    example: PulumiProject, e2e_host_session: E2eHost
) -> None:
    host = e2e_host_session
    example.up()
    assert cluster_status(host, "emqx1") == {
        "running_nodes": [f"emqx{i}@127.0.0.1" for i in (1, 2, 3)],
        "stopped_nodes": [],
    }
    outputs = example.outputs()
    client = outputs["mqttClient"]
    context = client_context(outputs["tlsCertificate"])
    round_trip(host.address, 8884, context, username=client["username"], password=client["password"], topic="app/hello")
    assert example.run("up", "--stack", example.stack, "--yes", "--expect-no-changes").returncode == 0


def test_4_destroy_leaves_no_container(example: PulumiProject, e2e_host_session: E2eHost) -> None:
    example.destroy()
    assert container_names(e2e_host_session) == []
    assert container_names(e2e_host_session, "io.emqx-cluster.role") == []


def test_5_two_clusters_on_one_docker_host_are_refused_at_preview(
    bin_dir: Path, package: Path, e2e_host_session: E2eHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("two-clusters")
    document = yaml.safe_load(EXAMPLE.read_text())
    first = document["resources"]["cluster"]
    first["properties"].update(e2e_host_properties(e2e_host_session, root))
    document["resources"]["edge"] = {"type": first["type"], "properties": {**first["properties"], "nodes": 2}}
    project = yaml_program(bin_dir, root / "project", document)
    project.run("package", "add", str(package))
    project.init_stack({})
    project = dataclasses.replace(project, netns=e2e_host_session.netns_path)
    refused = project.run("preview", "--stack", project.stack, check=False)
    assert refused.returncode != 0
    # Whichever the provider constructs second is refused, naming the other (the order varies).
    assert re.search(r"EmqxCluster '(edge|cluster)' and EmqxCluster '(cluster|edge)' both take", refused.output)
    assert "emqx1" in refused.output and "8884" in refused.output, refused.output
    assert project.resources() == []
